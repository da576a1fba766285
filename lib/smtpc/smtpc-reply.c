/* smtpc-reply.c: the reply parser and EHLO capabilities (smtpc-reply.h). */
#include "smtpc-reply.h"

#include <string.h>

void smtpc_reply_limits_init_default(struct smtpc_reply_limits *l)
{
	l->max_line = SMTPC_REPLY_DEFAULT_MAX_LINE;
	l->max_lines = SMTPC_REPLY_DEFAULT_MAX_LINES;
	l->max_bytes = SMTPC_REPLY_DEFAULT_MAX_BYTES;
}

void smtpc_reply_parser_init(smtpc_reply_parser *p, const struct smtpc_reply_limits *limits)
{
	memset(p, 0, sizeof *p);
	if (limits != NULL)
		p->limits = *limits;
	else
		smtpc_reply_limits_init_default(&p->limits);
	if (p->limits.max_line < SMTPC_REPLY_MIN_MAX_LINE)
		p->limits.max_line = SMTPC_REPLY_MIN_MAX_LINE;
	if (p->limits.max_lines < 1)
		p->limits.max_lines = 1;
	if (p->limits.max_bytes < SMTPC_REPLY_MIN_MAX_BYTES)
		p->limits.max_bytes = SMTPC_REPLY_MIN_MAX_BYTES;
	buf_init(&p->line);
	buf_init(&p->text);
}

void smtpc_reply_parser_deinit(smtpc_reply_parser *p)
{
	buf_deinit(&p->line);
	buf_deinit(&p->text);
}

static void smtpc_reply__clear(smtpc_reply_parser *p)
{
	p->code = 0;
	p->enh[0] = '\0';
	p->lines = 0;
	p->bytes = 0;
	buf_reset(&p->line);
	buf_reset(&p->text);
	p->text_ready = 0;
}

void smtpc_reply_parser_reset(smtpc_reply_parser *p)
{
	smtpc_reply__clear(p);
	p->state = SMTPC_REPLY_PARSER_LINE;
}

int smtpc_reply_parser_pending(const smtpc_reply_parser *p)
{
	return p->state == SMTPC_REPLY_PARSER_LINE && (p->code != 0 || p->line.len > 0);
}

/* Length of an RFC 3463 code "c.sss.ddd" at s (len bytes) whose class is
 * cls and that ends at len or before a space; 0 when there is none. */
static size_t smtpc_reply__enh_len(const uint8_t *s, size_t len, char cls)
{
	if (len < 5 || s[0] != (uint8_t)cls || s[1] != '.')
		return 0;
	size_t i = 2;
	for (int part = 0; part < 2; part++) {
		size_t start = i;
		while (i < len && i - start < 4 && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == start || i - start > 3)
			return 0;
		if (part == 0) {
			if (i >= len || s[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < len && s[i] != ' ')
		return 0;
	return i;
}

/* One complete line (terminator removed). 1: the reply is complete, 0:
 * more lines follow, -1: error. */
static int smtpc_reply__line(smtpc_reply_parser *p, const char **error_r)
{
	const uint8_t *s = p->line.data;
	size_t len = p->line.len;
	if (len < 3 || s[0] < '2' || s[0] > '5' || s[1] < '0' || s[1] > '5' || s[2] < '0' ||
	    s[2] > '9') {
		*error_r = "malformed reply code";
		return -1;
	}
	int code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
	if (p->code != 0 && code != p->code) {
		*error_r = "reply code changed inside a multi-line reply";
		return -1;
	}
	int last;
	if (len == 3 || s[3] == ' ')
		last = 1;
	else if (s[3] == '-')
		last = 0;
	else {
		*error_r = "malformed reply line";
		return -1;
	}
	for (size_t i = 4; i < len; i++) {
		if ((s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7f) {
			*error_r = "control character in reply";
			return -1;
		}
	}
	if (p->lines + 1 > p->limits.max_lines) {
		*error_r = "too many lines in reply";
		return -1;
	}
	const uint8_t *t = len > 4 ? s + 4 : s + len;
	size_t tl = len > 4 ? len - 4 : 0;
	if (p->lines == 0) {
		p->code = code;
		size_t el = smtpc_reply__enh_len(t, tl, (char)s[0]);
		if (el > 0 && el < SMTPC_ENH_MAX) {
			memcpy(p->enh, t, el);
			p->enh[el] = '\0';
		}
	}
	size_t elen = strlen(p->enh);
	if (elen > 0 && tl >= elen && memcmp(t, p->enh, elen) == 0 &&
	    (tl == elen || t[elen] == ' ')) {
		t += elen;
		tl -= elen;
		if (tl > 0) {
			t++;
			tl--;
		}
	}
	/* text is bounded by max_bytes: each line's text is shorter than the
	 * bytes it came in, and those were checked against max_bytes */
	if (p->lines > 0)
		buf_append(&p->text, "\n", 1);
	buf_append(&p->text, t, tl);
	p->lines++;
	return last;
}

int smtpc_reply_parser_feed(smtpc_reply_parser *p, const uint8_t *data, size_t len,
			    size_t *consumed_r, struct smtpc_reply *reply_r,
			    const char **error_r)
{
	*consumed_r = 0;
	if (p->state == SMTPC_REPLY_PARSER_ERROR) {
		*error_r = "reply parser in error";
		return -1;
	}
	if (p->text_ready)
		smtpc_reply__clear(p);
	for (size_t i = 0; i < len; i++) {
		uint8_t b = data[i];
		if (p->bytes + 1 > p->limits.max_bytes) {
			*consumed_r = i;
			*error_r = "reply too long";
			p->state = SMTPC_REPLY_PARSER_ERROR;
			return -1;
		}
		p->bytes++;
		if (b != '\n') {
			/* room for the byte, and for the LF that must follow */
			if (p->line.len + 2 > p->limits.max_line) {
				*consumed_r = i + 1;
				*error_r = "reply line too long";
				p->state = SMTPC_REPLY_PARSER_ERROR;
				return -1;
			}
			buf_append(&p->line, &b, 1);
			continue;
		}
		if (p->line.len > 0 && p->line.data[p->line.len - 1] == '\r')
			p->line.len--;
		for (size_t k = 0; k < p->line.len; k++) {
			if (p->line.data[k] == '\r' || p->line.data[k] == '\0') {
				*consumed_r = i + 1;
				*error_r = p->line.data[k] == '\r' ? "bare CR in reply"
								   : "NUL in reply";
				p->state = SMTPC_REPLY_PARSER_ERROR;
				return -1;
			}
		}
		int r = smtpc_reply__line(p, error_r);
		buf_reset(&p->line);
		if (r < 0) {
			*consumed_r = i + 1;
			p->state = SMTPC_REPLY_PARSER_ERROR;
			return -1;
		}
		if (r == 1) {
			*consumed_r = i + 1;
			buf_append(&p->text, "", 1); /* NUL, not counted */
			p->text.len--;
			reply_r->code = p->code;
			memcpy(reply_r->enh, p->enh, sizeof reply_r->enh);
			reply_r->text = (const char *)p->text.data;
			reply_r->text_len = p->text.len;
			reply_r->lines = p->lines;
			p->text_ready = 1;
			return 1;
		}
	}
	*consumed_r = len;
	return 0;
}

/* ---- EHLO capabilities ---------------------------------------------- */

static int smtpc_caps__word_eq(const char *w, size_t wl, const char *kw)
{
	size_t kl = strlen(kw);
	if (wl != kl)
		return 0;
	for (size_t i = 0; i < kl; i++) {
		char c = w[i];
		if (c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		if (c != kw[i])
			return 0;
	}
	return 1;
}

static unsigned smtpc_caps__mech(const char *w, size_t wl)
{
	if (smtpc_caps__word_eq(w, wl, "PLAIN"))
		return SMTPC_AUTH_PLAIN;
	if (smtpc_caps__word_eq(w, wl, "LOGIN"))
		return SMTPC_AUTH_LOGIN;
	return 0;
}

/* One capability line s[0..len). */
static void smtpc_caps__line(const char *s, size_t len, struct smtpc_caps *caps)
{
	size_t i = 0;
	while (i < len && s[i] == ' ')
		i++;
	size_t ks = i;
	while (i < len && s[i] != ' ' && s[i] != '=')
		i++;
	const char *kw = s + ks;
	size_t kl = i - ks;
	int old_auth = i < len && s[i] == '=';
	if (i < len)
		i++;
	static const struct {
		const char *name;
		unsigned flag;
	} simple[] = {
		{"PIPELINING", SMTPC_CAP_PIPELINING}, {"8BITMIME", SMTPC_CAP_8BITMIME},
		{"SMTPUTF8", SMTPC_CAP_SMTPUTF8},     {"STARTTLS", SMTPC_CAP_STARTTLS},
		{"ENHANCEDSTATUSCODES", SMTPC_CAP_ENHANCEDSTATUSCODES},
		{"DSN", SMTPC_CAP_DSN},               {"CHUNKING", SMTPC_CAP_CHUNKING},
	};
	if (old_auth && !smtpc_caps__word_eq(kw, kl, "AUTH"))
		return;
	for (size_t k = 0; k < sizeof simple / sizeof simple[0]; k++) {
		if (smtpc_caps__word_eq(kw, kl, simple[k].name)) {
			caps->flags |= simple[k].flag;
			return;
		}
	}
	if (smtpc_caps__word_eq(kw, kl, "SIZE")) {
		caps->flags |= SMTPC_CAP_SIZE;
		uint64_t n = 0;
		int digits = 0;
		for (; i < len && s[i] >= '0' && s[i] <= '9'; i++, digits++) {
			uint64_t d = (uint64_t)(s[i] - '0');
			n = n > (UINT64_MAX - d) / 10 ? UINT64_MAX : n * 10 + d;
		}
		if (digits > 0 && (i == len || s[i] == ' '))
			caps->size_max = n;
		return;
	}
	if (smtpc_caps__word_eq(kw, kl, "AUTH")) {
		caps->flags |= SMTPC_CAP_AUTH;
		while (i < len) {
			while (i < len && s[i] == ' ')
				i++;
			size_t ws = i;
			while (i < len && s[i] != ' ')
				i++;
			caps->auth |= smtpc_caps__mech(s + ws, i - ws);
		}
	}
}

void smtpc_caps_parse(const struct smtpc_reply *reply, struct smtpc_caps *caps_r)
{
	memset(caps_r, 0, sizeof *caps_r);
	if (reply->code != 250 || reply->text == NULL)
		return;
	const char *s = reply->text;
	size_t len = reply->text_len;
	const char *nl = memchr(s, '\n', len);
	if (nl == NULL)
		return; /* just the greeting line */
	size_t i = (size_t)(nl - s) + 1;
	while (i < len) {
		const char *e = memchr(s + i, '\n', len - i);
		size_t ll = e != NULL ? (size_t)(e - (s + i)) : len - i;
		smtpc_caps__line(s + i, ll, caps_r);
		i += ll + 1;
	}
}
