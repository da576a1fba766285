/* auth-results.c: composing Authentication-Results and finding the ones
 * that claim our authserv-id (auth-results.h).
 *
 * The scanner is a byte-at-a-time state machine over the header section:
 * it never looks back at earlier input, so any split of the stream gives
 * the same fields. It keeps nothing of a field but its offset, whether its
 * name is Authentication-Results, and (for those) the first max_id_scan
 * bytes of the value, from which the authserv-id is read when the field
 * ends.
 */
#include "auth-results.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "mail-error.h"
#include "xalloc.h"

#define AUTHRES_NAME "authentication-results"
#define AUTHRES_NAME_LEN (sizeof AUTHRES_NAME - 1)
#define AUTHRES_ID_MAX 255u

/* ---- character classes ---------------------------------------------------- */

static int authres__lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static int authres__is_wsp(int c)
{
	return c == ' ' || c == '\t';
}

/* RFC 2045 token: CHAR except SPACE, CTLs and tspecials */
static int authres__is_token(int c)
{
	return c > 32 && c < 127 && strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

/* RFC 5322 atext */
static int authres__is_atext(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

static int authres__is_keyword(const char *s)
{
	if (s == NULL || *s == '\0')
		return 0;
	for (; *s != '\0'; s++) {
		int c = (unsigned char)*s;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return 0;
	}
	return 1;
}

static int authres__all_token(const char *s, size_t n)
{
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (!authres__is_token((unsigned char)s[i]))
			return 0;
	}
	return 1;
}

/* local-part@domain with a dot-atom (or empty) local part and an LDH
 * domain: a pvalue that needs no quotes (RFC 8601 2.2). */
static int authres__is_addr(const char *s, size_t n)
{
	const char *at = NULL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '@')
			at = s + i;
	}
	if (at == NULL)
		return 0;
	size_t local = (size_t)(at - s), dom = n - local - 1;
	for (size_t i = 0; i < local; i++) {
		int c = (unsigned char)s[i];
		int dot_ok = c == '.' && i > 0 && i + 1 < local && s[i - 1] != '.';
		if (!authres__is_atext(c) && !dot_ok)
			return 0;
	}
	if (dom == 0 || at[1] == '.' || s[n - 1] == '.')
		return 0;
	for (size_t i = 0; i < dom; i++) {
		int c = (unsigned char)at[1 + i];
		int ldh = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '-' || c == '_';
		if (!ldh && !(c == '.' && at[i] != '.'))
			return 0;
	}
	return 1;
}

/* How many bytes of s to write: at most AUTHRES_VALUE_MAX, cut back to
 * the start of a UTF-8 sequence so a cut never splits a character. */
static size_t authres__cut(const char *s)
{
	size_t n = strlen(s);
	if (n <= AUTHRES_VALUE_MAX)
		return n;
	n = AUTHRES_VALUE_MAX;
	while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	return n;
}

/* Append s[0..n) escaping the bytes in special with a backslash, every
 * control character as '?'. */
static void authres__append_escaped(buf *b, const char *s, size_t n, const char *special)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 32 || c == 127) {
			buf_append(b, "?", 1);
			continue;
		}
		if (strchr(special, c) != NULL)
			buf_append(b, "\\", 1);
		buf_append(b, &s[i], 1);
	}
}

/* value as a pvalue: bare when it can be, else a quoted-string */
static void authres__append_value(buf *b, const char *value)
{
	size_t n = authres__cut(value);
	if (authres__all_token(value, n) || authres__is_addr(value, n)) {
		buf_append(b, value, n);
		return;
	}
	buf_append(b, "\"", 1);
	authres__append_escaped(b, value, n, "\"\\");
	buf_append(b, "\"", 1);
}

/* ---- composing ---------------------------------------------------------------- */

/* Append unit[0..n) to out on the current line after a space, or on a new
 * folded line when it would pass AUTHRES_LINE_FOLD; *line is the length
 * of the current line. */
static void authres__append_unit(buf *out, size_t *line, const uint8_t *unit, size_t n)
{
	if (*line + 1 + n > AUTHRES_LINE_FOLD) {
		buf_append(out, "\r\n\t", 3);
		*line = 1;
	} else {
		buf_append(out, " ", 1);
		*line += 1;
	}
	buf_append(out, unit, n);
	*line += n;
}

int authres_compose(const char *authserv_id, const struct authres_method *methods, size_t n,
		    char **field_r, size_t *len_r, const char **error_r)
{
	*field_r = NULL;
	*len_r = 0;
	if (authserv_id == NULL || !authres__all_token(authserv_id, strlen(authserv_id)) ||
	    strlen(authserv_id) > AUTHRES_ID_MAX) {
		*error_r = "authserv-id is not a token of 1..255 bytes";
		return MAIL_ERR_PARAMS;
	}
	for (size_t i = 0; i < n; i++) {
		const struct authres_method *m = &methods[i];
		if (!authres__is_keyword(m->method) || !authres__is_keyword(m->result) ||
		    m->n_props > AUTHRES_PROPS_MAX) {
			*error_r = "a method or result is not a keyword, or too many properties";
			return MAIL_ERR_PARAMS;
		}
		for (size_t p = 0; p < m->n_props; p++) {
			if (!authres__is_keyword(m->props[p].ptype) ||
			    !authres__is_keyword(m->props[p].property)) {
				*error_r = "a property's ptype or name is not a keyword";
				return MAIL_ERR_PARAMS;
			}
		}
	}

	buf out, unit;
	buf_init(&out);
	buf_init(&unit);
	buf_printf(&out, "Authentication-Results: %s;", authserv_id);
	if (n == 0)
		buf_append_str(&out, " none");
	for (size_t i = 0; i < n; i++) {
		const struct authres_method *m = &methods[i];
		size_t line = 1;
		buf_append(&out, "\r\n\t", 3);
		buf_printf(&out, "%s=%s", m->method, m->result);
		line += strlen(m->method) + 1 + strlen(m->result);
		if (m->comment != NULL && m->comment[0] != '\0') {
			buf_reset(&unit);
			buf_append(&unit, "(", 1);
			authres__append_escaped(&unit, m->comment, authres__cut(m->comment),
						"()\\");
			buf_append(&unit, ")", 1);
			authres__append_unit(&out, &line, unit.data, unit.len);
		}
		for (size_t p = 0; p < m->n_props; p++) {
			const struct authres_prop *pr = &m->props[p];
			if (pr->value == NULL || pr->value[0] == '\0')
				continue;
			buf_reset(&unit);
			buf_printf(&unit, "%s.%s=", pr->ptype, pr->property);
			authres__append_value(&unit, pr->value);
			authres__append_unit(&out, &line, unit.data, unit.len);
		}
		if (i + 1 < n)
			buf_append(&out, ";", 1);
	}
	buf_append(&out, "\r\n", 3); /* with the NUL */
	buf_deinit(&unit);
	size_t len;
	*field_r = (char *)buf_steal(&out, &len);
	*len_r = len - 1;
	return MAIL_OK;
}

/* ---- reading an authserv-id ----------------------------------------------------- */

/* Does v[0..len) (the start of an Authentication-Results value; cut short
 * when truncated) claim id[0..id_len) (lowercase, no trailing dot)? See
 * the top of auth-results.h: an id that cannot be read claims ours. */
static int authres__claims(const uint8_t *v, size_t len, int truncated, const char *id,
			   size_t id_len)
{
	size_t i = 0;
	/* CFWS: white space, folding, nested comments with quoted-pairs */
	for (;;) {
		while (i < len && (authres__is_wsp(v[i]) || v[i] == '\r' || v[i] == '\n'))
			i++;
		if (i >= len || v[i] != '(')
			break;
		unsigned depth = 0;
		for (; i < len; i++) {
			if (v[i] == '\\') {
				i++;
			} else if (v[i] == '(') {
				depth++;
			} else if (v[i] == ')' && --depth == 0) {
				i++;
				break;
			}
		}
		if (depth != 0)
			return 1; /* the comment does not end (here) */
	}
	if (i >= len)
		return 1; /* no id */

	char got[AUTHRES_ID_MAX + 2];
	size_t n = 0;
	int complete = 0;
	if (v[i] == '"') {
		for (i++; i < len; i++) {
			uint8_t c = v[i];
			if (c == '"') {
				complete = 1;
				break;
			}
			if (c == '\\' && i + 1 < len)
				c = v[++i];
			else if (c == '\r' || c == '\n')
				continue; /* unfolding */
			if (n < sizeof got)
				got[n] = (char)authres__lower(c);
			n++;
		}
		if (!complete) /* cut short: ours unless already longer; else malformed */
			return truncated && n > id_len + 1 ? 0 : 1;
	} else {
		for (; i < len && authres__is_token(v[i]); i++) {
			if (n < sizeof got)
				got[n] = (char)authres__lower(v[i]);
			n++;
		}
		complete = i < len || !truncated;
		if (!complete)
			return n > id_len + 1 ? 0 : 1; /* it may go on past the cut */
	}
	if (n == 0)
		return 1; /* an empty id: malformed */
	if (n > sizeof got)
		return 0; /* longer than any id of ours */
	if (got[n - 1] == '.')
		n--;
	return n == id_len && memcmp(got, id, n) == 0;
}

/* id lowercased, one trailing dot dropped (heap) */
static char *authres__norm_id(const char *id, size_t *len_r)
{
	size_t n = strlen(id);
	char *s = xstrndup(id, n);
	for (size_t i = 0; i < n; i++)
		s[i] = (char)authres__lower((unsigned char)s[i]);
	if (n > 0 && s[n - 1] == '.')
		s[--n] = '\0';
	*len_r = n;
	return s;
}

int authres_value_claims(const char *value, size_t len, const char *authserv_id,
			 size_t max_id_scan)
{
	size_t id_len;
	char *id = authres__norm_id(authserv_id != NULL ? authserv_id : "", &id_len);
	int truncated = len > max_id_scan;
	int r = authres__claims((const uint8_t *)value, truncated ? max_id_scan : len, truncated,
				id, id_len);
	free(id);
	return r;
}

/* ---- the scanner ------------------------------------------------------------------ */

struct authres_limits authres_limits_default(void)
{
	return (struct authres_limits){
		.max_id_scan = AUTHRES_ID_SCAN_DEFAULT,
		.max_header_bytes = AUTHRES_HEADER_DEFAULT,
	};
}

enum authres__state {
	AUTHRES_S_LINE_START, /* at the first byte of a header line */
	AUTHRES_S_NAME,       /* in a field name, before the colon */
	AUTHRES_S_VALUE,      /* after the colon, up to the line's LF */
	AUTHRES_S_LINE_CR,    /* a CR first on a line: the empty line, or not */
	AUTHRES_S_BODY,       /* the header ended: the rest is not read */
	AUTHRES_S_FINISHED,   /* authres_scanner_finish() was called */
	AUTHRES_S_FAILED,     /* over max_header_bytes */
};

struct authres_scanner {
	char *id; /* normalised (authres__norm_id) */
	size_t id_len;
	struct authres_limits lim;
	enum authres__state state;
	uint64_t pos;     /* stream offset of the next byte */
	uint64_t cr_off;  /* AUTHRES_S_LINE_CR: where that CR is */
	int open;         /* a field is open (started, not yet reported) */
	uint64_t field_off;
	size_t name_len;  /* name bytes seen */
	int name_match;   /* the name so far is a prefix of AUTHRES_NAME */
	int name_wsp;     /* white space after the name, before the colon */
	int is_authres;   /* the colon came after exactly AUTHRES_NAME */
	uint8_t *prefix;  /* the value's first max_id_scan bytes */
	size_t prefix_len;
	int prefix_full;  /* more value bytes came than prefix holds */
};

int authres_scanner_create(const char *authserv_id, const struct authres_limits *limits,
			   authres_scanner **scanner_r, const char **error_r)
{
	*scanner_r = NULL;
	struct authres_limits lim = limits != NULL ? *limits : authres_limits_default();
	if (authserv_id == NULL || authserv_id[0] == '\0' ||
	    strlen(authserv_id) > AUTHRES_ID_MAX) {
		*error_r = "authserv-id empty or longer than 255 bytes";
		return MAIL_ERR_PARAMS;
	}
	if (lim.max_id_scan < AUTHRES_ID_SCAN_MIN || lim.max_id_scan > AUTHRES_ID_SCAN_MAX ||
	    lim.max_header_bytes < AUTHRES_HEADER_MIN ||
	    lim.max_header_bytes > AUTHRES_HEADER_MAX) {
		*error_r = "authres limits out of range";
		return MAIL_ERR_PARAMS;
	}
	authres_scanner *s = xcalloc(1, sizeof *s);
	s->id = authres__norm_id(authserv_id, &s->id_len);
	s->lim = lim;
	s->prefix = xmalloc(lim.max_id_scan);
	s->state = AUTHRES_S_LINE_START;
	*scanner_r = s;
	return MAIL_OK;
}

void authres_scanner_destroy(authres_scanner **scanner)
{
	authres_scanner *s = *scanner;
	if (s == NULL)
		return;
	free(s->id);
	free(s->prefix);
	free(s);
	*scanner = NULL;
}

int authres_scanner_header_done(const authres_scanner *s)
{
	return s->state == AUTHRES_S_BODY;
}

static void authres__open(authres_scanner *s, uint64_t off)
{
	s->open = 1;
	s->field_off = off;
	s->name_len = 0;
	s->name_match = 1;
	s->name_wsp = 0;
	s->is_authres = 0;
	s->prefix_len = 0;
	s->prefix_full = 0;
}

/* Close the open field, ending at end: fill *f. */
static void authres__report(authres_scanner *s, uint64_t end, struct authres_field *f)
{
	f->offset = s->field_off;
	f->length = end - s->field_off;
	f->is_authres = s->is_authres;
	f->ours = s->is_authres &&
		  authres__claims(s->prefix, s->prefix_len, s->prefix_full, s->id, s->id_len);
	s->open = 0;
}

/* One byte of a field name. */
static void authres__name_byte(authres_scanner *s, uint8_t c)
{
	if (authres__is_wsp(c)) {
		s->name_wsp = 1;
	} else if (s->name_wsp || s->name_len >= AUTHRES_NAME_LEN ||
		   authres__lower(c) != AUTHRES_NAME[s->name_len]) {
		s->name_match = 0;
	}
	if (!authres__is_wsp(c))
		s->name_len++;
}

static void authres__value_byte(authres_scanner *s, uint8_t c)
{
	if (!s->is_authres)
		return;
	if (s->prefix_len < s->lim.max_id_scan)
		s->prefix[s->prefix_len++] = c;
	else
		s->prefix_full = 1;
}

int authres_scanner_feed(authres_scanner *s, const void *data, size_t len, size_t *consumed_r,
			 struct authres_field *field_r, const char **error_r)
{
	const uint8_t *p = data;
	size_t i = 0;
	int produced = 0;
	*consumed_r = 0;
	if (s->state == AUTHRES_S_FAILED) {
		*error_r = "header section longer than max_header_bytes";
		return -1;
	}
	if (s->state == AUTHRES_S_FINISHED) {
		*error_r = "input fed after authres_scanner_finish()";
		return -1;
	}
	while (i < len && !produced) {
		if (s->state == AUTHRES_S_BODY) {
			i = len;
			break;
		}
		if (s->pos >= s->lim.max_header_bytes) {
			s->state = AUTHRES_S_FAILED;
			*consumed_r = i;
			*error_r = "header section longer than max_header_bytes";
			return -1;
		}
		uint8_t c = p[i];
		int consume = 1;
		switch (s->state) {
		case AUTHRES_S_LINE_START:
			if (authres__is_wsp(c)) {
				if (!s->open)
					authres__open(s, s->pos); /* a header that starts folded */
				s->state = AUTHRES_S_VALUE;
				authres__value_byte(s, c);
			} else if (c == '\r') {
				s->cr_off = s->pos;
				s->state = AUTHRES_S_LINE_CR;
			} else if (c == '\n') {
				s->state = AUTHRES_S_BODY; /* the empty line (bare LF) */
				if (s->open) {
					authres__report(s, s->pos, field_r);
					produced = 1;
				}
			} else if (s->open) {
				authres__report(s, s->pos, field_r); /* c starts the next one */
				produced = 1;
				consume = 0;
			} else {
				authres__open(s, s->pos);
				s->state = AUTHRES_S_NAME;
				consume = 0;
			}
			break;
		case AUTHRES_S_LINE_CR:
			if (c == '\n') {
				s->state = AUTHRES_S_BODY; /* CRLF: the empty line */
				if (s->open) {
					authres__report(s, s->cr_off, field_r);
					produced = 1;
				}
				break;
			}
			/* a stray CR starting a line: the first byte of a
			 * (nameless) field */
			if (s->open) {
				authres__report(s, s->cr_off, field_r);
				produced = 1;
			}
			authres__open(s, s->cr_off);
			authres__name_byte(s, '\r');
			s->state = AUTHRES_S_NAME;
			consume = 0;
			break;
		case AUTHRES_S_NAME:
			if (c == ':') {
				s->is_authres = s->name_match && s->name_len == AUTHRES_NAME_LEN;
				s->state = AUTHRES_S_VALUE;
			} else if (c == '\n') {
				s->state = AUTHRES_S_LINE_START; /* a line without a colon */
			} else {
				authres__name_byte(s, c);
			}
			break;
		case AUTHRES_S_VALUE:
			authres__value_byte(s, c);
			if (c == '\n')
				s->state = AUTHRES_S_LINE_START;
			break;
		default:
			break;
		}
		if (consume) {
			i++;
			s->pos++;
		}
	}
	*consumed_r = i;
	return produced;
}

int authres_scanner_finish(authres_scanner *s, struct authres_field *field_r)
{
	enum authres__state st = s->state;
	s->state = AUTHRES_S_FINISHED;
	if (st == AUTHRES_S_BODY || st == AUTHRES_S_FAILED || st == AUTHRES_S_FINISHED || !s->open)
		return 0;
	authres__report(s, st == AUTHRES_S_LINE_CR ? s->cr_off : s->pos, field_r);
	return 1;
}

/* ---- stripping ---------------------------------------------------------------------- */

struct authres__span {
	size_t off, len;
};

int authres_strip_ours(uint8_t *msg, size_t *len, const char *authserv_id,
		       const struct authres_limits *limits, size_t *removed_r,
		       const char **error_r)
{
	authres_scanner *s;
	if (removed_r != NULL)
		*removed_r = 0;
	int err = authres_scanner_create(authserv_id, limits, &s, error_r);
	if (err != MAIL_OK)
		return err;
	struct authres__span *spans = NULL;
	size_t n = 0, cap = 0, pos = 0;
	struct authres_field f;
	int r = 1;
	while (r > 0) {
		size_t used;
		r = authres_scanner_feed(s, msg + pos, *len - pos, &used, &f, error_r);
		pos += used;
		if (r == 0 && authres_scanner_finish(s, &f) == 0)
			break;
		if (f.ours) {
			if (n == cap) {
				cap = cap != 0 ? 2 * cap : 8;
				spans = xrealloc(spans, cap * sizeof *spans);
			}
			spans[n++] = (struct authres__span){ (size_t)f.offset, (size_t)f.length };
		}
	}
	authres_scanner_destroy(&s);
	if (r < 0) {
		free(spans);
		return MAIL_ERR_LIMIT; /* the only way feed fails here */
	}
	/* the fields are in order and do not overlap: move what lies
	 * between them up */
	size_t w = n > 0 ? spans[0].off : *len;
	for (size_t k = 0; k < n; k++) {
		size_t from = spans[k].off + spans[k].len;
		size_t to = k + 1 < n ? spans[k + 1].off : *len;
		memmove(msg + w, msg + from, to - from);
		w += to - from;
	}
	*len = w;
	if (removed_r != NULL)
		*removed_r = n;
	free(spans);
	return MAIL_OK;
}
