/* mime-header.c: header fields, the structured MIME fields (RFC 2045
 * Content-Type and Content-Transfer-Encoding, RFC 2183 Content-Disposition,
 * RFC 3282 Content-Language, RFC 2231 parameters), header iteration and
 * filtering for FETCH and SEARCH. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mime-private.h"
#include "xalloc.h"

/* ---- the string arena ---- */

const uint8_t *mime__str_ptr(const struct mime__strs *s, struct mime__str str)
{
	return str.off == MIME__NIL ? NULL : s->arena.data + str.off;
}

struct mime__str mime__str_add(struct mime__strs *s, const void *data, size_t len)
{
	struct mime__str r = {s->arena.len, len};
	buf_reserve(&s->arena, len + 1);
	if (len > 0)
		memcpy(s->arena.data + s->arena.len, data, len);
	s->arena.len += len;
	s->arena.data[s->arena.len] = 0;
	return r;
}

static uint8_t lower(uint8_t c)
{
	return c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c;
}

struct mime__str mime__str_add_lower(struct mime__strs *s, const void *data, size_t len)
{
	struct mime__str r = mime__str_add(s, data, len);
	for (size_t i = 0; i < len; i++)
		s->arena.data[r.off + i] = lower(s->arena.data[r.off + i]);
	return r;
}

size_t mime__param_add(struct mime__strs *s, struct mime__str name, struct mime__str value)
{
	if (s->n_params == s->cap_params) {
		s->cap_params = s->cap_params ? s->cap_params * 2 : 16;
		s->params = xrealloc(s->params, s->cap_params * sizeof *s->params);
	}
	s->params[s->n_params].name = name;
	s->params[s->n_params].value = value;
	return s->n_params++;
}

size_t mime__list_add(struct mime__strs *s, struct mime__str str)
{
	if (s->n_list == s->cap_list) {
		s->cap_list = s->cap_list ? s->cap_list * 2 : 8;
		s->list = xrealloc(s->list, s->cap_list * sizeof *s->list);
	}
	s->list[s->n_list] = str;
	return s->n_list++;
}

void mime__strs_deinit(struct mime__strs *s)
{
	buf_deinit(&s->arena);
	free(s->params);
	free(s->list);
	memset(s, 0, sizeof *s);
}

/* ---- fields ---- */

static int is_wsp(uint8_t c)
{
	return c == ' ' || c == '\t';
}

int mime__name_is(const uint8_t *name, size_t len, const char *lit)
{
	return strlen(lit) == len && strncasecmp((const char *)name, lit, len) == 0;
}

int mime__field_next(const uint8_t *h, size_t len, size_t *pos, struct mime__field *f)
{
	size_t p = *pos;
	if (p >= len || h[p] == '\n' || (h[p] == '\r' && p + 1 < len && h[p + 1] == '\n'))
		return 0;
	/* the field's end: after the line break of its last line, where the
	 * next line does not start with white space */
	size_t end = p;
	for (;;) {
		const uint8_t *nl = memchr(h + end, '\n', len - end);
		if (nl == NULL) {
			end = len;
			break;
		}
		end = (size_t)(nl - h) + 1;
		if (end >= len || !is_wsp(h[end]))
			break;
	}
	size_t vend = end;
	if (vend > p && h[vend - 1] == '\n') {
		vend--;
		if (vend > p && h[vend - 1] == '\r')
			vend--;
	}
	f->start = h + p;
	f->total_len = end - p;
	const uint8_t *colon = memchr(h + p, ':', vend - p);
	if (colon == NULL) {
		f->name = NULL;
		f->name_len = 0;
		f->value = h + p;
		f->value_len = vend - p;
	} else {
		size_t nlen = (size_t)(colon - (h + p));
		while (nlen > 0 && is_wsp(h[p + nlen - 1]))
			nlen--;
		f->name = h + p;
		f->name_len = nlen;
		size_t v = (size_t)(colon - h) + 1;
		while (v < vend && is_wsp(h[v]))
			v++;
		f->value = h + v;
		f->value_len = vend - v;
	}
	*pos = end;
	return 1;
}

/* Back off a cut at max bytes to the start of a UTF-8 sequence. */
static size_t utf8_cut(const uint8_t *s, size_t len, size_t max)
{
	if (len <= max)
		return len;
	size_t n = max;
	while (n > 0 && (s[n] & 0xC0) == 0x80 && max - n < 4)
		n--;
	return n;
}

void mime__unfold(const uint8_t *value, size_t len, size_t max, int collapse, buf *out,
		  int *cut_r)
{
	size_t start = out->len;
	size_t i = 0;
	while (i < len && (is_wsp(value[i]) || value[i] == '\r' || value[i] == '\n'))
		i++;
	buf_reserve(out, len - i + 1);
	int pending_space = 0;
	while (i < len) {
		uint8_t c = value[i];
		if (c == '\r' || c == '\n') {
			while (i < len && (value[i] == '\r' || value[i] == '\n' || is_wsp(value[i])))
				i++;
			pending_space = 1;
			continue;
		}
		if (collapse && (is_wsp(c) || c == 0)) {
			pending_space = 1;
			i++;
			continue;
		}
		if (pending_space) {
			out->data[out->len++] = ' ';
			pending_space = 0;
		}
		out->data[out->len++] = c == 0 ? ' ' : c;
		i++;
	}
	while (out->len > start && is_wsp(out->data[out->len - 1]))
		out->len--;
	size_t n = out->len - start;
	size_t keep = utf8_cut(out->data + start, n, max);
	if (cut_r != NULL && keep < n)
		*cut_r = 1;
	out->len = start + keep;
	out->data[out->len] = 0;
}

/* ---- structured MIME fields (RFC 2045 section 5.1 with RFC 822 comments) ---- */

struct lex {
	const uint8_t *s;
	size_t len, pos;
};

static void lex_skip_cfws(struct lex *l)
{
	int depth = 0;
	while (l->pos < l->len) {
		uint8_t c = l->s[l->pos];
		if (depth > 0) {
			if (c == '\\')
				l->pos++;
			else if (c == '(')
				depth++;
			else if (c == ')')
				depth--;
			l->pos++;
		} else if (c == '(') {
			depth = 1;
			l->pos++;
		} else if (is_wsp(c) || c == '\r' || c == '\n') {
			l->pos++;
		} else {
			break;
		}
	}
	if (l->pos > l->len)
		l->pos = l->len;
}

/* RFC 2045 token characters: not tspecials, not space, not CTL. */
static int is_token(uint8_t c)
{
	if (c <= 0x20 || c == 0x7f)
		return 0;
	return strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

static size_t lex_token(struct lex *l)
{
	size_t start = l->pos;
	while (l->pos < l->len && is_token(l->s[l->pos]))
		l->pos++;
	return l->pos - start;
}

/* A parameter value: a quoted-string (unescaped into tmp) or, tolerant
 * of what mailers write, anything up to ';' or white space (so
 * boundary=----=_Part_1 works unquoted). */
static void lex_value(struct lex *l, buf *tmp)
{
	buf_reset(tmp);
	if (l->pos < l->len && l->s[l->pos] == '"') {
		l->pos++;
		while (l->pos < l->len && l->s[l->pos] != '"') {
			uint8_t c = l->s[l->pos];
			if (c == '\\' && l->pos + 1 < l->len) {
				l->pos++;
				c = l->s[l->pos];
			}
			if (c != '\r' && c != '\n')
				buf_append(tmp, &c, 1);
			l->pos++;
		}
		if (l->pos < l->len)
			l->pos++; /* the closing quote */
		return;
	}
	size_t start = l->pos;
	while (l->pos < l->len) {
		uint8_t c = l->s[l->pos];
		if (c == ';' || c == '"' || c <= 0x20 || c == 0x7f)
			break;
		l->pos++;
	}
	buf_append(tmp, l->s + start, l->pos - start);
}

static void lex_skip_to_semicolon(struct lex *l)
{
	while (l->pos < l->len && l->s[l->pos] != ';') {
		if (l->s[l->pos] == '"') {
			l->pos++;
			while (l->pos < l->len && l->s[l->pos] != '"') {
				if (l->s[l->pos] == '\\')
					l->pos++;
				l->pos++;
			}
		}
		if (l->pos < l->len)
			l->pos++;
	}
}

/* One raw parameter before RFC 2231 joining. */
struct raw_param {
	const uint8_t *name; /* into the field value */
	size_t name_len;
	size_t base_len;     /* the name before its first '*' */
	long section;        /* -1: no section number */
	int extended;        /* a trailing '*': charset'lang'%XX form */
	size_t value_off, value_len; /* into the values buffer */
	int used;
};

#define RAW_PARAMS_MAX 256u /* raw parameters looked at per field */

/* RFC 2231 attribute-char: what may stay unencoded in an extended value. */
static int is_attr_char(uint8_t c)
{
	return is_token(c) && c != '*' && c != '\'' && c != '%';
}

/* Parse the parameters after the value's first token(s) and add them,
 * RFC 2231-joined, to s; *first_r and *n_r say where they are. */
static void parse_params(struct mime__strs *s, struct lex *l, const struct mime_limits *lim,
			 size_t *first_r, size_t *n_r, int *truncated_r)
{
	struct raw_param raw[RAW_PARAMS_MAX];
	size_t n_raw = 0;
	buf values, tmp;
	buf_init(&values);
	buf_init(&tmp);
	buf_reserve(&values, 1); /* never NULL, even when every value is empty */
	buf_reserve(&tmp, 1);
	for (;;) {
		lex_skip_cfws(l);
		if (l->pos >= l->len)
			break;
		if (l->s[l->pos] != ';') {
			/* junk (a missing ';'): resynchronise at the next one */
			lex_skip_to_semicolon(l);
			continue;
		}
		l->pos++;
		lex_skip_cfws(l);
		size_t name_start = l->pos;
		size_t name_len = lex_token(l);
		lex_skip_cfws(l);
		if (name_len == 0 || l->pos >= l->len || l->s[l->pos] != '=') {
			lex_skip_to_semicolon(l);
			continue;
		}
		l->pos++;
		lex_skip_cfws(l);
		lex_value(l, &tmp);
		if (n_raw == RAW_PARAMS_MAX) {
			*truncated_r = 1;
			continue;
		}
		struct raw_param *r = &raw[n_raw++];
		r->name = l->s + name_start;
		r->name_len = name_len;
		r->used = 0;
		const uint8_t *star = memchr(r->name, '*', name_len);
		r->base_len = star ? (size_t)(star - r->name) : name_len;
		r->section = -1;
		r->extended = 0;
		if (star != NULL) {
			size_t i = r->base_len + 1;
			if (i < name_len && r->name[i] >= '0' && r->name[i] <= '9') {
				long sec = 0;
				while (i < name_len && r->name[i] >= '0' && r->name[i] <= '9') {
					if (sec < 100000)
						sec = sec * 10 + (r->name[i] - '0');
					i++;
				}
				r->section = sec;
				if (i < name_len && r->name[i] == '*') {
					r->extended = 1;
					i++;
				}
			} else {
				r->extended = 1;
			}
			if (i != name_len || r->base_len == 0) {
				/* not RFC 2231 after all: a plain (odd) name */
				r->base_len = name_len;
				r->section = -1;
				r->extended = 0;
			}
		}
		r->value_off = values.len;
		r->value_len = tmp.len;
		buf_append(&values, tmp.data, tmp.len);
	}
	size_t first = s->n_params, n = 0;
	for (size_t i = 0; i < n_raw; i++) {
		struct raw_param *r = &raw[i];
		if (r->used)
			continue;
		r->used = 1;
		buf_reset(&tmp);
		int extended = r->extended;
		const uint8_t *vals = values.data;
		if (r->section < 0) {
			buf_append(&tmp, vals + r->value_off, r->value_len);
		} else {
			/* join sections 0, 1, 2... of this base name (RFC 2231 3):
			 * a missing section ends the value */
			int any_ext = 0;
			for (size_t j = i; j < n_raw; j++)
				if (raw[j].section >= 0 && raw[j].base_len == r->base_len &&
				    strncasecmp((const char *)raw[j].name, (const char *)r->name,
						r->base_len) == 0)
					any_ext |= raw[j].extended;
			extended = any_ext;
			for (long sec = 0;; sec++) {
				struct raw_param *seg = NULL;
				for (size_t j = i; j < n_raw; j++) {
					if (raw[j].section == sec && raw[j].base_len == r->base_len &&
					    strncasecmp((const char *)raw[j].name,
							(const char *)r->name, r->base_len) == 0) {
						if (seg == NULL)
							seg = &raw[j];
						raw[j].used = 1;
					}
				}
				if (seg == NULL)
					break;
				const uint8_t *v = vals + seg->value_off;
				if (!extended || seg->extended) {
					if (sec == 0 && extended && !seg->extended)
						buf_append_str(&tmp, "''");
					buf_append(&tmp, v, seg->value_len);
				} else {
					if (sec == 0)
						buf_append_str(&tmp, "''");
					for (size_t k = 0; k < seg->value_len; k++) {
						if (is_attr_char(v[k]))
							buf_append(&tmp, &v[k], 1);
						else
							buf_printf(&tmp, "%%%02X", v[k]);
					}
				}
			}
			/* sections that cannot be joined (no section 0) are left out */
			for (size_t j = i; j < n_raw; j++)
				if (raw[j].section >= 0 && raw[j].base_len == r->base_len &&
				    strncasecmp((const char *)raw[j].name, (const char *)r->name,
						r->base_len) == 0)
					raw[j].used = 1;
			if (tmp.len == 0 && !extended)
				continue;
		}
		/* the output name: base, or base* for a charset'lang' value */
		size_t out_len = r->base_len + (extended ? 1 : 0);
		int seen = 0;
		for (size_t j = first; j < s->n_params; j++) {
			const struct mime__param *pp = &s->params[j];
			if (pp->name.len == out_len &&
			    strncasecmp((const char *)mime__str_ptr(s, pp->name),
					(const char *)r->name, r->base_len) == 0)
				seen = 1;
		}
		if (seen)
			continue;
		if (n == lim->max_params) {
			*truncated_r = 1;
			continue;
		}
		struct mime__str name = mime__str_add(s, r->name, r->base_len);
		if (extended) {
			buf_append(&s->arena, "*", 1);
			name.len++;
		}
		size_t vlen = utf8_cut(tmp.data, tmp.len, lim->max_value_bytes);
		if (vlen < tmp.len)
			*truncated_r = 1;
		mime__param_add(s, name, mime__str_add(s, tmp.data, vlen));
		n++;
	}
	buf_deinit(&values);
	buf_deinit(&tmp);
	*first_r = first;
	*n_r = n;
}

/* The parameter named lit (case-insensitive) among n from first. */
static const struct mime__param *param_find(const struct mime__strs *s, size_t first, size_t n,
					    const char *lit)
{
	for (size_t i = first; i < first + n; i++) {
		const struct mime__param *pp = &s->params[i];
		if (mime__name_is(mime__str_ptr(s, pp->name), pp->name.len, lit))
			return pp;
	}
	return NULL;
}

int mime__parse_content_type(struct mime__strs *s, const uint8_t *v, size_t len,
			     const struct mime_limits *lim, struct mime__content *c,
			     int *truncated_r)
{
	struct lex l = {v, len, 0};
	lex_skip_cfws(&l);
	size_t t0 = l.pos, tlen = lex_token(&l);
	lex_skip_cfws(&l);
	if (tlen == 0 || l.pos >= len || v[l.pos] != '/')
		return -1;
	l.pos++;
	lex_skip_cfws(&l);
	size_t s0 = l.pos, slen = lex_token(&l);
	if (slen == 0)
		return -1;
	c->type = mime__str_add_lower(s, v + t0, tlen);
	c->subtype = mime__str_add_lower(s, v + s0, slen);
	parse_params(s, &l, lim, &c->params, &c->n_params, truncated_r);
	c->charset.off = MIME__NIL;
	c->boundary.off = MIME__NIL;
	const struct mime__param *pp = param_find(s, c->params, c->n_params, "charset");
	if (pp != NULL) {
		/* copy first: the arena may move under pp */
		struct mime__str val = pp->value;
		size_t vlen = val.len;
		char tmp[MIME_CHARSET_MAX + 1];
		if (vlen > MIME_CHARSET_MAX)
			vlen = MIME_CHARSET_MAX;
		memcpy(tmp, mime__str_ptr(s, val), vlen);
		c->charset = mime__str_add_lower(s, tmp, vlen);
	}
	pp = param_find(s, c->params, c->n_params, "boundary");
	if (pp != NULL)
		c->boundary = pp->value;
	return 0;
}

void mime__parse_disposition(struct mime__strs *s, const uint8_t *v, size_t len,
			     const struct mime_limits *lim, struct mime__content *c,
			     int *truncated_r)
{
	struct lex l = {v, len, 0};
	lex_skip_cfws(&l);
	size_t t0 = l.pos, tlen = lex_token(&l);
	if (tlen == 0)
		return;
	c->disp = mime__str_add_lower(s, v + t0, tlen);
	parse_params(s, &l, lim, &c->disp_params, &c->n_disp_params, truncated_r);
}

void mime__parse_language(struct mime__strs *s, const uint8_t *v, size_t len,
			  const struct mime_limits *lim, struct mime__content *c, int *truncated_r)
{
	struct lex l = {v, len, 0};
	c->langs = s->n_list;
	c->n_langs = 0;
	for (;;) {
		lex_skip_cfws(&l);
		if (l.pos >= len)
			break;
		if (v[l.pos] == ',') {
			l.pos++;
			continue;
		}
		size_t t0 = l.pos, tlen = lex_token(&l);
		if (tlen == 0) {
			l.pos++; /* junk */
			continue;
		}
		if (c->n_langs == lim->max_params) {
			*truncated_r = 1;
			continue;
		}
		mime__list_add(s, mime__str_add(s, v + t0, tlen));
		c->n_langs++;
	}
}

enum mime_encoding mime__parse_encoding(const uint8_t *v, size_t len, size_t *tok_len_r,
					const uint8_t **tok_r)
{
	struct lex l = {v, len, 0};
	lex_skip_cfws(&l);
	size_t t0 = l.pos, tlen = lex_token(&l);
	*tok_r = v + t0;
	*tok_len_r = tlen;
	const uint8_t *t = v + t0;
	if (tlen == 0 || mime__name_is(t, tlen, "7bit"))
		return MIME_ENC_7BIT;
	if (mime__name_is(t, tlen, "8bit"))
		return MIME_ENC_8BIT;
	if (mime__name_is(t, tlen, "binary"))
		return MIME_ENC_BINARY;
	if (mime__name_is(t, tlen, "base64"))
		return MIME_ENC_BASE64;
	if (mime__name_is(t, tlen, "quoted-printable"))
		return MIME_ENC_QP;
	return MIME_ENC_UNKNOWN;
}

/* ---- public: iteration and filtering ---- */

int mime_header_foreach(const void *header, size_t len, mime_header_cb *cb, void *arg)
{
	const uint8_t *h = header;
	size_t pos = 0;
	struct mime__field f;
	while (mime__field_next(h, len, &pos, &f)) {
		if (f.name == NULL)
			continue;
		int r = cb((const char *)f.name, f.name_len, (const char *)f.value, f.value_len,
			   arg);
		if (r != 0)
			return r;
	}
	return 0;
}

void mime_header_filter(const void *header, size_t len, const char *const *names, size_t n,
			int negate, buf *out)
{
	const uint8_t *h = header;
	size_t pos = 0;
	struct mime__field f;
	while (mime__field_next(h, len, &pos, &f)) {
		if (f.name == NULL)
			continue;
		int match = 0;
		for (size_t i = 0; i < n && !match; i++)
			match = mime__name_is(f.name, f.name_len, names[i]);
		if (match != negate) {
			buf_append(out, f.start, f.total_len);
			/* a last field without its line break still ends its line */
			if (f.total_len == 0 || f.start[f.total_len - 1] != '\n')
				buf_append(out, "\r\n", 2);
		}
	}
	buf_append(out, "\r\n", 2);
}
