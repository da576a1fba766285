/* mime-envelope.c: IMAP strings and the ENVELOPE (RFC 3501 7.4.2, RFC
 * 9051 7.5.2) with an RFC 5322 address parser (obsolete forms included:
 * routes, phrases with dots, comments as names), shaped like Dovecot's
 * answers so clients see what they are used to. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "mime-private.h"

/* ---- IMAP strings ---- */

void mime__imap_string(buf *out, const uint8_t *s, size_t len)
{
	int literal = 0;
	for (size_t i = 0; i < len && !literal; i++)
		literal = s[i] >= 0x80 || s[i] == '\r' || s[i] == '\n' || s[i] == 0;
	if (literal) {
		buf_printf(out, "{%zu}\r\n", len);
		size_t start = out->len;
		buf_append(out, s, len);
		for (size_t i = start; i < out->len; i++)
			if (out->data[i] == 0)
				out->data[i] = ' ';
		return;
	}
	buf_reserve(out, len * 2 + 2);
	out->data[out->len++] = '"';
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			out->data[out->len++] = '\\';
		out->data[out->len++] = s[i];
	}
	out->data[out->len++] = '"';
	out->data[out->len] = 0;
}

void mime__imap_string_upper(buf *out, const uint8_t *s, size_t len)
{
	size_t start = out->len;
	mime__imap_string(out, s, len);
	for (size_t i = start; i < out->len; i++)
		if (out->data[i] >= 'a' && out->data[i] <= 'z')
			out->data[i] = (uint8_t)(out->data[i] - 32);
}

void mime__imap_nstring(buf *out, const struct mime__strs *s, struct mime__str str)
{
	if (str.off == MIME__NIL)
		buf_append_str(out, "NIL");
	else
		mime__imap_string(out, mime__str_ptr(s, str), str.len);
}

/* ---- ENVELOPE fields ---- */

static const char *const env_names[MIME__ENV_COUNT] = {
	"date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc", "in-reply-to",
	"message-id",
};

int mime__env_field_index(const uint8_t *name, size_t len)
{
	for (int i = 0; i < MIME__ENV_COUNT; i++)
		if (mime__name_is(name, len, env_names[i]))
			return i;
	return -1;
}

/* ---- addresses (RFC 5322 3.4, 4.4) ---- */

enum tok_type { TOK_END = 0, TOK_ATOM, TOK_QSTR, TOK_DLIT, TOK_SPECIAL };

struct tok {
	enum tok_type type;
	const uint8_t *p; /* ATOM, DLIT: the text; QSTR: inside the quotes */
	size_t len;
	uint8_t ch;       /* SPECIAL */
	int ws_before;    /* white space or a comment came before it */
};

struct addr_lex {
	const uint8_t *s;
	size_t len, pos;
	const uint8_t *comment; /* the first comment since addr_lex_mark() */
	size_t comment_len;
	struct tok peeked;
	int have_peek;
};

static int is_wsp(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int is_special(uint8_t c)
{
	return strchr("()<>[]:;@\\,.\"", c) != NULL;
}

static struct tok addr_next_raw(struct addr_lex *l)
{
	struct tok t = {TOK_END, NULL, 0, 0, 0};
	for (;;) {
		while (l->pos < l->len && is_wsp(l->s[l->pos])) {
			l->pos++;
			t.ws_before = 1;
		}
		if (l->pos >= l->len || l->s[l->pos] != '(')
			break;
		/* a comment: nested, quoted-pairs */
		size_t start = ++l->pos;
		int depth = 1;
		while (l->pos < l->len && depth > 0) {
			uint8_t c = l->s[l->pos];
			if (c == '\\')
				l->pos++;
			else if (c == '(')
				depth++;
			else if (c == ')')
				depth--;
			l->pos++;
		}
		if (l->pos > l->len)
			l->pos = l->len;
		size_t end = depth == 0 ? l->pos - 1 : l->pos;
		if (l->comment == NULL && end > start) {
			l->comment = l->s + start;
			l->comment_len = end - start;
		}
		t.ws_before = 1;
	}
	if (l->pos >= l->len)
		return t;
	uint8_t c = l->s[l->pos];
	if (c == '"') {
		size_t start = ++l->pos;
		while (l->pos < l->len && l->s[l->pos] != '"') {
			if (l->s[l->pos] == '\\')
				l->pos++;
			l->pos++;
		}
		if (l->pos > l->len)
			l->pos = l->len;
		t.type = TOK_QSTR;
		t.p = l->s + start;
		t.len = l->pos - start;
		if (l->pos < l->len)
			l->pos++;
	} else if (c == '[') {
		size_t start = l->pos;
		while (l->pos < l->len && l->s[l->pos] != ']') {
			if (l->s[l->pos] == '\\')
				l->pos++;
			l->pos++;
		}
		if (l->pos < l->len)
			l->pos++;
		if (l->pos > l->len)
			l->pos = l->len;
		t.type = TOK_DLIT;
		t.p = l->s + start;
		t.len = l->pos - start;
	} else if (is_special(c)) {
		t.type = TOK_SPECIAL;
		t.ch = c;
		t.p = l->s + l->pos;
		t.len = 1;
		l->pos++;
	} else {
		size_t start = l->pos;
		while (l->pos < l->len && !is_wsp(l->s[l->pos]) && !is_special(l->s[l->pos]))
			l->pos++;
		t.type = TOK_ATOM;
		t.p = l->s + start;
		t.len = l->pos - start;
	}
	return t;
}

static struct tok addr_peek(struct addr_lex *l)
{
	if (!l->have_peek) {
		l->peeked = addr_next_raw(l);
		l->have_peek = 1;
	}
	return l->peeked;
}

static struct tok addr_take(struct addr_lex *l)
{
	struct tok t = addr_peek(l);
	l->have_peek = 0;
	return t;
}

static int tok_is(struct tok t, uint8_t ch)
{
	return t.type == TOK_SPECIAL && t.ch == ch;
}

/* Append a token's text: a quoted string unquoted. */
static void tok_append(buf *b, struct tok t)
{
	if (t.type != TOK_QSTR) {
		buf_append(b, t.p, t.len);
		return;
	}
	for (size_t i = 0; i < t.len; i++) {
		if (t.p[i] == '\\' && i + 1 < t.len)
			i++;
		if (t.p[i] != '\r' && t.p[i] != '\n')
			buf_append(b, &t.p[i], 1);
	}
}

struct env_ctx {
	buf *out;
	const struct mime_limits *lim;
	unsigned n_addr;
	int *truncated;
	buf name, adl, mailbox, host;
};

/* An nstring from b (NULL: NIL), cut to the value limit; collapse: as
 * mime__unfold() does (names). */
static void put_nstring(struct env_ctx *e, const buf *b, int collapse)
{
	if (b == NULL) {
		buf_append_str(e->out, "NIL");
		return;
	}
	buf tmp;
	buf_init(&tmp);
	mime__unfold(b->data, b->len, e->lim->max_value_bytes, collapse, &tmp, e->truncated);
	mime__imap_string(e->out, tmp.data != NULL ? tmp.data : (const uint8_t *)"", tmp.len);
	buf_deinit(&tmp);
}

/* (name adl mailbox host); a NULL buffer is NIL. */
static void put_addr(struct env_ctx *e, const buf *name, const buf *adl, const buf *mailbox,
		     const buf *host)
{
	if (e->n_addr >= e->lim->max_addresses) {
		*e->truncated = 1;
		return;
	}
	e->n_addr++;
	buf_append(e->out, "(", 1);
	put_nstring(e, name, 1);
	buf_append(e->out, " ", 1);
	put_nstring(e, adl, 0);
	buf_append(e->out, " ", 1);
	put_nstring(e, mailbox, 0);
	buf_append(e->out, " ", 1);
	put_nstring(e, host, 0);
	buf_append(e->out, ")", 1);
}

/* Phrase tokens joined as a display name: a space where the source had
 * white space. */
static void phrase_append(buf *b, struct tok t)
{
	if (t.ws_before && b->len > 0)
		buf_append(b, " ", 1);
	tok_append(b, t);
}

/* domain = dot-atom / domain-literal / obs-domain; appended to host. */
static void parse_domain(struct addr_lex *l, buf *host)
{
	for (;;) {
		struct tok t = addr_peek(l);
		if (t.type == TOK_ATOM || t.type == TOK_DLIT || t.type == TOK_QSTR || tok_is(t, '.'))
			tok_append(host, addr_take(l));
		else
			break;
	}
}

static const buf missing_mailbox = {(uint8_t *)"MISSING_MAILBOX", 15, 0};
static const buf missing_domain = {(uint8_t *)"MISSING_DOMAIN", 14, 0};

static void put_mailbox(struct env_ctx *e, const buf *name)
{
	put_addr(e, name != NULL && name->len > 0 ? name : NULL, e->adl.len > 0 ? &e->adl : NULL,
		 e->mailbox.len > 0 ? &e->mailbox : &missing_mailbox,
		 e->host.len > 0 ? &e->host : &missing_domain);
}

/* angle-addr after its '<': [obs-route] addr-spec '>' */
static void parse_angle(struct env_ctx *e, struct addr_lex *l)
{
	/* obs-route: "@a,@b:" (kept as "@a,@b"); "<@x>" has no ':' and is
	 * an addr-spec without a local part: back up and read it as one */
	if (tok_is(addr_peek(l), '@')) {
		struct addr_lex saved = *l;
		while (!tok_is(addr_peek(l), ':') && !tok_is(addr_peek(l), '>') &&
		       addr_peek(l).type != TOK_END)
			tok_append(&e->adl, addr_take(l));
		if (tok_is(addr_peek(l), ':')) {
			addr_take(l);
		} else {
			buf_reset(&e->adl);
			*l = saved;
		}
	}
	for (;;) {
		struct tok t = addr_peek(l);
		if (t.type == TOK_ATOM || t.type == TOK_QSTR || tok_is(t, '.'))
			tok_append(&e->mailbox, addr_take(l));
		else
			break;
	}
	if (tok_is(addr_peek(l), '@')) {
		addr_take(l);
		parse_domain(l, &e->host);
	}
	/* whatever is left up to '>' is junk */
	while (addr_peek(l).type != TOK_END && !tok_is(addr_peek(l), '>'))
		addr_take(l);
	if (tok_is(addr_peek(l), '>'))
		addr_take(l);
}

static void parse_list(struct env_ctx *e, struct addr_lex *l, int in_group);

/* One address (a mailbox or, outside a group, a group). */
static void parse_address(struct env_ctx *e, struct addr_lex *l, int in_group)
{
	buf_reset(&e->name);
	buf_reset(&e->adl);
	buf_reset(&e->mailbox);
	buf_reset(&e->host);
	l->comment = NULL;
	l->comment_len = 0;
	/* the words before '<', ':' or '@': a display name or a local part */
	buf_reset(&e->mailbox);
	int words = 0;
	for (;;) {
		struct tok t = addr_peek(l);
		if (t.type != TOK_ATOM && t.type != TOK_QSTR && !tok_is(t, '.'))
			break;
		addr_take(l);
		phrase_append(&e->name, t);
		tok_append(&e->mailbox, t);
		words++;
	}
	struct tok t = addr_peek(l);
	if (tok_is(t, '<')) {
		addr_take(l);
		buf_reset(&e->mailbox);
		parse_angle(e, l);
		put_mailbox(e, &e->name);
	} else if (tok_is(t, ':') && !in_group) {
		addr_take(l);
		/* group start: (NIL NIL "name" NIL) */
		buf group;
		buf_init(&group);
		buf_append(&group, e->name.data, e->name.len);
		put_addr(e, NULL, NULL, &group, NULL);
		buf_deinit(&group);
		parse_list(e, l, 1);
		if (tok_is(addr_peek(l), ';'))
			addr_take(l);
		put_addr(e, NULL, NULL, NULL, NULL);
	} else if (tok_is(t, '@')) {
		addr_take(l);
		buf_reset(&e->name);
		parse_domain(l, &e->host);
		/* a route-less addr-spec: a comment names it ("a@b (Real Name)");
		 * comments may also follow before the ',' */
		(void)addr_peek(l);
		if (l->comment != NULL)
			buf_append(&e->name, l->comment, l->comment_len);
		put_mailbox(e, &e->name);
	} else if (words > 0) {
		/* a local part alone ("user") */
		buf_reset(&e->name);
		if (l->comment != NULL)
			buf_append(&e->name, l->comment, l->comment_len);
		put_mailbox(e, &e->name);
	} else if (t.type != TOK_END && !tok_is(t, ',') && !(in_group && tok_is(t, ';'))) {
		addr_take(l); /* junk: skip it, so every round makes progress */
	}
}

static void parse_list(struct env_ctx *e, struct addr_lex *l, int in_group)
{
	for (;;) {
		struct tok t = addr_peek(l);
		if (t.type == TOK_END)
			return;
		if (tok_is(t, ',')) {
			addr_take(l);
			continue;
		}
		if (in_group && tok_is(t, ';'))
			return;
		if (!in_group && tok_is(t, ';')) {
			addr_take(l);
			continue;
		}
		parse_address(e, l, in_group);
	}
}

/* An address field: NIL when it holds no address. */
static void put_address_list(struct env_ctx *e, const uint8_t *v, size_t len)
{
	if (v == NULL) {
		buf_append_str(e->out, "NIL");
		return;
	}
	buf unfolded;
	buf_init(&unfolded);
	mime__unfold(v, len, SIZE_MAX, 0, &unfolded, NULL);
	struct addr_lex l = {unfolded.data, unfolded.len, 0, NULL, 0, {0}, 0};
	size_t start = e->out->len;
	buf_append(e->out, "(", 1);
	e->n_addr = 0;
	parse_list(e, &l, 0);
	if (e->n_addr == 0) {
		e->out->len = start;
		buf_append_str(e->out, "NIL");
	} else {
		buf_append(e->out, ")", 1);
	}
	buf_deinit(&unfolded);
}

static void put_unfolded(struct env_ctx *e, const uint8_t *v, size_t len, int collapse)
{
	if (v == NULL) {
		buf_append_str(e->out, "NIL");
		return;
	}
	buf tmp;
	buf_init(&tmp);
	mime__unfold(v, len, e->lim->max_value_bytes, collapse, &tmp, e->truncated);
	mime__imap_string(e->out, tmp.data != NULL ? tmp.data : (const uint8_t *)"", tmp.len);
	buf_deinit(&tmp);
}

void mime__envelope_write(buf *out, const struct mime__env_fields *f,
			  const struct mime_limits *lim, int *truncated_r)
{
	struct env_ctx e = {out, lim, 0, truncated_r, {0}, {0}, {0}, {0}};
	buf_append(out, "(", 1);
	put_unfolded(&e, f->value[MIME__ENV_DATE], f->len[MIME__ENV_DATE], 0);
	buf_append(out, " ", 1);
	put_unfolded(&e, f->value[MIME__ENV_SUBJECT], f->len[MIME__ENV_SUBJECT], 1);
	buf_append(out, " ", 1);
	size_t from_start = out->len;
	put_address_list(&e, f->value[MIME__ENV_FROM], f->len[MIME__ENV_FROM]);
	size_t from_len = out->len - from_start;
	/* Sender and Reply-To absent or empty: the From value (RFC 3501) */
	for (int i = MIME__ENV_SENDER; i <= MIME__ENV_REPLY_TO; i++) {
		buf_append(out, " ", 1);
		size_t start = out->len;
		put_address_list(&e, f->value[i], f->len[i]);
		if (out->len - start == 3 && memcmp(out->data + start, "NIL", 3) == 0) {
			out->len = start;
			buf_reserve(out, from_len);
			memcpy(out->data + out->len, out->data + from_start, from_len);
			out->len += from_len;
			out->data[out->len] = 0;
		}
	}
	for (int i = MIME__ENV_TO; i <= MIME__ENV_BCC; i++) {
		buf_append(out, " ", 1);
		put_address_list(&e, f->value[i], f->len[i]);
	}
	buf_append(out, " ", 1);
	put_unfolded(&e, f->value[MIME__ENV_IN_REPLY_TO], f->len[MIME__ENV_IN_REPLY_TO], 0);
	buf_append(out, " ", 1);
	put_unfolded(&e, f->value[MIME__ENV_MESSAGE_ID], f->len[MIME__ENV_MESSAGE_ID], 0);
	buf_append(out, ")", 1);
	buf_deinit(&e.name);
	buf_deinit(&e.adl);
	buf_deinit(&e.mailbox);
	buf_deinit(&e.host);
}
