/* dsn-params.c: RFC 3461's SMTP parameters (NOTIFY, ORCPT, RET, ENVID),
 * xtext and RFC 6533's utf-8 address forms. See dsn-params.h. */
#include "dsn-params.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "dsn-private.h"

static const char hexdigits[] = "0123456789ABCDEF";

void dsn_mail_params_init(struct dsn_mail_params *p)
{
	memset(p, 0, sizeof(*p));
}

void dsn_rcpt_params_init(struct dsn_rcpt_params *p)
{
	memset(p, 0, sizeof(*p));
}

/* ---- UTF-8 -------------------------------------------------------------- */

size_t dsn__utf8_char(const uint8_t *s, size_t len, uint32_t *cp_r)
{
	if (len == 0)
		return 0;
	uint8_t c = s[0];
	if (c < 0x80) {
		*cp_r = c;
		return 1;
	}
	size_t n;
	uint32_t cp, min;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2, cp = c & 0x1fu, min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3, cp = c & 0x0fu, min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4, cp = c & 0x07u, min = 0x10000;
	} else {
		return 0;
	}
	if (len < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3fu);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	*cp_r = cp;
	return n;
}

int dsn__is_ascii(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] >= 0x80)
			return 0;
	return 1;
}

static void utf8_append(buf *out, uint32_t cp)
{
	uint8_t u[4];
	size_t n;
	if (cp < 0x80) {
		u[0] = (uint8_t)cp, n = 1;
	} else if (cp < 0x800) {
		u[0] = (uint8_t)(0xc0 | (cp >> 6));
		u[1] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (uint8_t)(0xe0 | (cp >> 12));
		u[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (uint8_t)(0xf0 | (cp >> 18));
		u[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 4;
	}
	buf_append(out, u, n);
}

/* ---- xtext (RFC 3461 4) ---------------------------------------------------- */

static int upper_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int any_hex(char c)
{
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return upper_hex(c);
}

int dsn_xtext_decode(const char *in, size_t len, buf *out, const char **error_r)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c == '+') {
			if (len - i < 3) {
				*error_r = "Truncated +XX in xtext";
				return -1;
			}
			int hi = upper_hex(in[i + 1]);
			int lo = upper_hex(in[i + 2]);
			if (hi < 0 || lo < 0) {
				*error_r = "Bad +XX in xtext (two upper-case hex digits)";
				return -1;
			}
			uint8_t o = (uint8_t)(hi * 16 + lo);
			buf_append(out, &o, 1);
			i += 2;
		} else if (c >= '!' && c <= '~' && c != '=') {
			buf_append(out, &c, 1);
		} else {
			*error_r = "Invalid character in xtext";
			return -1;
		}
	}
	return 0;
}

void dsn_xtext_encode(const void *in, size_t len, buf *out)
{
	const uint8_t *s = in;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = s[i];
		if (c >= '!' && c <= '~' && c != '+' && c != '=') {
			buf_append(out, &c, 1);
		} else {
			char h[3] = {'+', hexdigits[c >> 4], hexdigits[c & 15]};
			buf_append(out, h, 3);
		}
	}
}

/* ---- utf-8-addr-xtext / -unitext (RFC 6533 3) ------------------------------ */

/* QCHAR: printable ASCII except SP, "\", "+", "=". */
static int is_qchar(unsigned char c)
{
	return c >= 0x21 && c <= 0x7e && c != '\\' && c != '+' && c != '=';
}

/* May code point cp be written as \x{...}? The xtext specials (controls,
 * SP, "+", "=", DEL), "\" and everything outside ASCII but surrogates. */
static int escapable(uint32_t cp)
{
	if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return cp < 0x21 || cp == '+' || cp == '=' || cp == '\\' || cp >= 0x7f;
}

/* Digits HEXPOINT must have for cp: the shortest form, at least two. */
static size_t hexpoint_digits(uint32_t cp)
{
	size_t n = 2;
	while (n < 6 && (cp >> (4 * n)) != 0)
		n++;
	return n;
}

int dsn_utf8_addr_decode(const char *in, size_t len, unsigned flags, buf *out,
			 const char **error_r)
{
	const uint8_t *s = (const uint8_t *)in;
	size_t i = 0;
	if (len == 0) {
		*error_r = "Empty utf-8 address";
		return -1;
	}
	while (i < len) {
		uint8_t c = s[i];
		if (c == '\\') {
			/* EmbeddedUnicodeChar = "\x{" HEXPOINT "}" */
			if (len - i < 6 || s[i + 1] != 'x' || s[i + 2] != '{') {
				*error_r = "Bad \\x{...} in utf-8 address";
				return -1;
			}
			size_t j = i + 3;
			uint32_t cp = 0;
			size_t digits = 0;
			while (j < len && s[j] != '}' && digits < 7) {
				int v = any_hex((char)s[j]);
				if (v < 0)
					break;
				cp = cp * 16 + (uint32_t)v;
				digits++, j++;
			}
			if (j >= len || s[j] != '}' || digits < 2 || digits > 6 ||
			    digits != hexpoint_digits(cp) || !escapable(cp)) {
				*error_r = "Bad \\x{...} in utf-8 address";
				return -1;
			}
			if (cp < 0x20 || cp == 0x7f) {
				*error_r = "Control character in utf-8 address";
				return -1;
			}
			utf8_append(out, cp);
			i = j + 1;
		} else if (is_qchar(c)) {
			buf_append(out, &c, 1);
			i++;
		} else if (c >= 0x80 && (flags & DSN_PARSE_SMTPUTF8)) {
			uint32_t cp;
			size_t n = dsn__utf8_char(s + i, len - i, &cp);
			if (n == 0) {
				*error_r = "Invalid UTF-8 in utf-8 address";
				return -1;
			}
			buf_append(out, s + i, n);
			i += n;
		} else {
			*error_r = c >= 0x80 ? "8-bit utf-8 address without SMTPUTF8"
					     : "Invalid character in utf-8 address";
			return -1;
		}
	}
	return 0;
}

void dsn_utf8_addr_encode(const char *in, size_t len, int unitext, buf *out)
{
	const uint8_t *s = (const uint8_t *)in;
	size_t i = 0;
	while (i < len) {
		uint32_t cp;
		size_t n = dsn__utf8_char(s + i, len - i, &cp);
		if (n == 0) {
			cp = 0xfffd, n = 1;
		} else if (n == 1 && is_qchar(s[i])) {
			buf_append(out, s + i, 1);
			i++;
			continue;
		} else if (n > 1 && unitext) {
			buf_append(out, s + i, n);
			i += n;
			continue;
		}
		if (cp == 0)
			cp = 0xfffd; /* NUL cannot be written; never in an address */
		size_t digits = hexpoint_digits(cp);
		char e[12];
		size_t k = 0;
		e[k++] = '\\', e[k++] = 'x', e[k++] = '{';
		for (size_t d = digits; d > 0; d--)
			e[k++] = hexdigits[(cp >> (4 * (d - 1))) & 15];
		e[k++] = '}';
		buf_append(out, e, k);
		i += n;
	}
}

/* ---- parameters ------------------------------------------------------------- */

static int key_is(const char *key, size_t key_len, const char *name)
{
	size_t n = strlen(name);
	return key_len == n && strncasecmp(key, name, n) == 0;
}

/* Printable US-ASCII and white space (RFC 3461's "printable (graphic and
 * white space) characters from the US-ASCII repertoire"). */
static int printable(const uint8_t *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 0x20 && s[i] <= 0x7e) || s[i] == '\t'))
			return 0;
	return 1;
}

/* Decode an xtext value that must be printable text into dst (room for
 * max + 1 octets; the value, as sent, is at most max octets). */
static int decode_printable(const char *value, size_t len, size_t max, char *dst,
			    const char **error_r)
{
	buf b;
	buf_init(&b);
	int ret = dsn_xtext_decode(value, len, &b, error_r);
	if (ret == 0 && !printable(b.data, b.len)) {
		*error_r = "Decoded value is not printable US-ASCII";
		ret = -1;
	}
	if (ret == 0) {
		/* xtext never decodes to more octets than it has */
		if (b.len > max)
			b.len = max;
		if (b.len > 0)
			memcpy(dst, b.data, b.len);
		dst[b.len] = '\0';
	}
	buf_deinit(&b);
	return ret;
}

static int parse_ret(struct dsn_mail_params *p, const char *value, size_t len,
		     const char **error_r)
{
	if (p->ret != DSN_RET_UNSPECIFIED) {
		*error_r = "Duplicate RET parameter";
		return -1;
	}
	if (value != NULL && key_is(value, len, "FULL")) {
		p->ret = DSN_RET_FULL;
	} else if (value != NULL && key_is(value, len, "HDRS")) {
		p->ret = DSN_RET_HDRS;
	} else {
		*error_r = "Bad RET parameter (FULL or HDRS)";
		return -1;
	}
	return 1;
}

static int parse_envid(struct dsn_mail_params *p, const char *value, size_t len,
		       const char **error_r)
{
	if (p->has_envid) {
		*error_r = "Duplicate ENVID parameter";
		return -1;
	}
	if (value == NULL || len == 0) {
		*error_r = "Missing ENVID value";
		return -1;
	}
	if (len > DSN_ENVID_MAX) {
		*error_r = "ENVID too long (at most 100 characters)";
		return -1;
	}
	char tmp[DSN_ENVID_MAX + 1];
	if (decode_printable(value, len, DSN_ENVID_MAX, tmp, error_r) < 0)
		return -1;
	memcpy(p->envid, tmp, sizeof(tmp));
	p->has_envid = 1;
	return 1;
}

int dsn_mail_param_parse(struct dsn_mail_params *p, const char *key, size_t key_len,
			 const char *value, size_t value_len, unsigned flags,
			 const char **error_r)
{
	(void)flags;
	if (key_is(key, key_len, "RET"))
		return parse_ret(p, value, value_len, error_r);
	if (key_is(key, key_len, "ENVID"))
		return parse_envid(p, value, value_len, error_r);
	return 0;
}

static int parse_notify(struct dsn_rcpt_params *p, const char *value, size_t len,
			const char **error_r)
{
	static const struct {
		const char *name;
		unsigned bit;
	} words[] = {
		{"NEVER", DSN_NOTIFY_NEVER},
		{"SUCCESS", DSN_NOTIFY_SUCCESS},
		{"FAILURE", DSN_NOTIFY_FAILURE},
		{"DELAY", DSN_NOTIFY_DELAY},
	};
	if (p->notify != 0) {
		*error_r = "Duplicate NOTIFY parameter";
		return -1;
	}
	if (value == NULL || len == 0) {
		*error_r = "Missing NOTIFY value";
		return -1;
	}
	unsigned bits = 0;
	size_t i = 0;
	for (;;) {
		size_t start = i;
		while (i < len && value[i] != ',')
			i++;
		unsigned bit = 0;
		for (size_t w = 0; w < sizeof(words) / sizeof(words[0]); w++)
			if (key_is(value + start, i - start, words[w].name))
				bit = words[w].bit;
		if (bit == 0) {
			*error_r = "Bad NOTIFY parameter (NEVER or SUCCESS,FAILURE,DELAY)";
			return -1;
		}
		if (bits & bit) {
			*error_r = "Duplicate value in NOTIFY parameter";
			return -1;
		}
		bits |= bit;
		if (i == len)
			break;
		i++; /* the comma; an empty element after it is an error above */
	}
	if ((bits & DSN_NOTIFY_NEVER) && bits != DSN_NOTIFY_NEVER) {
		*error_r = "NOTIFY=NEVER cannot be combined with other values";
		return -1;
	}
	p->notify = bits;
	return 1;
}

/* atext (RFC 5322 3.2.3). */
static int is_atext(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

static int parse_orcpt(struct dsn_rcpt_params *p, const char *value, size_t len,
		       unsigned flags, const char **error_r)
{
	if (p->orcpt.kind != DSN_ADDR_NONE) {
		*error_r = "Duplicate ORCPT parameter";
		return -1;
	}
	if (value == NULL || len == 0) {
		*error_r = "Missing ORCPT value";
		return -1;
	}
	if (len > DSN_ORCPT_MAX) {
		*error_r = "ORCPT too long (at most 500 characters)";
		return -1;
	}
	size_t t = 0;
	while (t < len && value[t] != ';')
		t++;
	if (t == len || t == 0 || t > DSN_ADDR_TYPE_MAX) {
		*error_r = "Bad ORCPT parameter (addr-type;address)";
		return -1;
	}
	struct dsn_orcpt o;
	memset(&o, 0, sizeof(o));
	for (size_t k = 0; k < t; k++) {
		unsigned char c = (unsigned char)value[k];
		if (!is_atext(c)) {
			*error_r = "Bad ORCPT address type";
			return -1;
		}
		o.type[k] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
	}
	o.type[t] = '\0';
	const char *a = value + t + 1;
	size_t alen = len - t - 1;
	if (alen == 0) {
		*error_r = "Empty ORCPT address";
		return -1;
	}
	if (strcmp(o.type, "utf-8") == 0) {
		buf b;
		buf_init(&b);
		int ret = dsn_utf8_addr_decode(a, alen, flags, &b, error_r);
		if (ret == 0) {
			/* never longer than its encoding: fits addr */
			memcpy(o.addr, b.data, b.len);
			o.addr[b.len] = '\0';
		}
		buf_deinit(&b);
		if (ret < 0)
			return -1;
		o.kind = DSN_ADDR_UTF8;
	} else {
		if (decode_printable(a, alen, DSN_ORCPT_MAX, o.addr, error_r) < 0)
			return -1;
		if (memchr(o.addr, '\t', strlen(o.addr)) != NULL) {
			*error_r = "Control character in ORCPT address";
			return -1;
		}
		o.kind = strcmp(o.type, "rfc822") == 0 ? DSN_ADDR_RFC822 : DSN_ADDR_OTHER;
	}
	p->orcpt = o;
	return 1;
}

int dsn_rcpt_param_parse(struct dsn_rcpt_params *p, const char *key, size_t key_len,
			 const char *value, size_t value_len, unsigned flags,
			 const char **error_r)
{
	if (key_is(key, key_len, "NOTIFY"))
		return parse_notify(p, value, value_len, error_r);
	if (key_is(key, key_len, "ORCPT"))
		return parse_orcpt(p, value, value_len, flags, error_r);
	return 0;
}

/* Split text into "KEY[=VALUE]" words as smtp-parser.c does, handing
 * each to one (mail or rcpt). */
static int params_parse(void *p, int rcpt, const char *s, size_t len, unsigned flags,
			const char **error_r)
{
	int found = 0;
	size_t i = 0;
	while (i < len) {
		while (i < len && s[i] == ' ')
			i++;
		if (i >= len)
			break;
		size_t key = i;
		while (i < len && s[i] != ' ' && s[i] != '=')
			i++;
		size_t key_len = i - key;
		const char *val = NULL;
		size_t val_len = 0;
		if (i < len && s[i] == '=') {
			val = s + ++i;
			while (i < len && s[i] != ' ' && s[i] != '=')
				i++;
			val_len = (size_t)(s + i - val);
		}
		if (key_len == 0 || (i < len && s[i] != ' ') || (val != NULL && val_len == 0)) {
			*error_r = "Syntax error in parameters";
			return -1;
		}
		int ret = rcpt ? dsn_rcpt_param_parse(p, s + key, key_len, val, val_len, flags,
						      error_r)
			       : dsn_mail_param_parse(p, s + key, key_len, val, val_len, flags,
						      error_r);
		if (ret < 0)
			return -1;
		found += ret;
	}
	return found;
}

int dsn_mail_params_parse(struct dsn_mail_params *p, const char *text, size_t len,
			  unsigned flags, const char **error_r)
{
	return params_parse(p, 0, text, len, flags, error_r);
}

int dsn_rcpt_params_parse(struct dsn_rcpt_params *p, const char *text, size_t len,
			  unsigned flags, const char **error_r)
{
	return params_parse(p, 1, text, len, flags, error_r);
}

/* ---- formatting ---------------------------------------------------------------- */

void dsn_mail_params_format(const struct dsn_mail_params *p, buf *out)
{
	if (p->ret == DSN_RET_FULL)
		buf_append_str(out, " RET=FULL");
	else if (p->ret == DSN_RET_HDRS)
		buf_append_str(out, " RET=HDRS");
	if (p->has_envid) {
		buf_append_str(out, " ENVID=");
		dsn_xtext_encode(p->envid, strlen(p->envid), out);
	}
}

int dsn_rcpt_params_format(const struct dsn_rcpt_params *p, unsigned flags, buf *out)
{
	if (p->notify & DSN_NOTIFY_NEVER) {
		buf_append_str(out, " NOTIFY=NEVER");
	} else if (p->notify != 0) {
		static const char *const names[] = {"SUCCESS", "FAILURE", "DELAY"};
		static const unsigned bits[] = {DSN_NOTIFY_SUCCESS, DSN_NOTIFY_FAILURE,
						DSN_NOTIFY_DELAY};
		const char *sep = " NOTIFY=";
		for (size_t i = 0; i < 3; i++) {
			if (p->notify & bits[i]) {
				buf_append_str(out, sep);
				buf_append_str(out, names[i]);
				sep = ",";
			}
		}
	}
	if (p->orcpt.kind == DSN_ADDR_NONE)
		return 0;
	buf v;
	buf_init(&v);
	buf_append_str(&v, p->orcpt.type);
	buf_append(&v, ";", 1);
	if (p->orcpt.kind == DSN_ADDR_UTF8)
		dsn_utf8_addr_encode(p->orcpt.addr, strlen(p->orcpt.addr),
				     (flags & DSN_FORMAT_SMTPUTF8) != 0, &v);
	else
		dsn_xtext_encode(p->orcpt.addr, strlen(p->orcpt.addr), &v);
	int ret = 0;
	if (v.len > DSN_ORCPT_MAX) {
		ret = -1;
	} else {
		buf_append_str(out, " ORCPT=");
		buf_append(out, v.data, v.len);
	}
	buf_deinit(&v);
	return ret;
}

/* ---- policy ------------------------------------------------------------------------ */

int dsn_notify_wants(unsigned notify, enum dsn_event event)
{
	if (notify == 0)
		notify = DSN_NOTIFY_FAILURE | DSN_NOTIFY_DELAY;
	if (notify & DSN_NOTIFY_NEVER)
		return 0;
	switch (event) {
	case DSN_EVENT_SUCCESS:
		return (notify & DSN_NOTIFY_SUCCESS) != 0;
	case DSN_EVENT_FAILURE:
		return (notify & DSN_NOTIFY_FAILURE) != 0;
	case DSN_EVENT_DELAY:
		return (notify & DSN_NOTIFY_DELAY) != 0;
	}
	return 0;
}
