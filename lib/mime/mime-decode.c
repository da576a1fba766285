/* mime-decode.c: content transfer encodings (RFC 2045 6.7, 6.8), charsets
 * to UTF-8 (iconv), RFC 2047 encoded words, and the decoded text of a
 * message's text parts for SEARCH. */
#include <errno.h>
#include <iconv.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mime-private.h"
#include "xalloc.h"

/* ---- transfer encodings ---- */

static int b64_value(uint8_t c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

static void b64_decode(const uint8_t *in, size_t len, buf *out)
{
	buf_reserve(out, len / 4 * 3 + 3);
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < len; i++) {
		if (in[i] == '=')
			break; /* padding: the end of the data (RFC 2045 6.8) */
		int v = b64_value(in[i]);
		if (v < 0)
			continue; /* line breaks and anything else are ignored */
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out->data[out->len++] = (uint8_t)(acc >> bits);
		}
	}
	out->data[out->len] = 0;
}

static int hex_value(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* quoted-printable; rfc2047: the Q encoding ('_' is a space, no line
 * structure). */
static void qp_decode(const uint8_t *in, size_t len, int rfc2047, buf *out)
{
	buf_reserve(out, len + 1);
	size_t i = 0;
	while (i < len) {
		uint8_t c = in[i];
		if (c == '=') {
			int h1 = i + 1 < len ? hex_value(in[i + 1]) : -1;
			int h2 = i + 2 < len ? hex_value(in[i + 2]) : -1;
			if (h1 >= 0 && h2 >= 0) {
				out->data[out->len++] = (uint8_t)(h1 << 4 | h2);
				i += 3;
				continue;
			}
			if (!rfc2047) {
				/* a soft line break: '=', maybe white space, then the
				 * line break (or the end) */
				size_t j = i + 1;
				while (j < len && (in[j] == ' ' || in[j] == '\t'))
					j++;
				if (j == len) {
					i = j;
					continue;
				}
				if (in[j] == '\n' || (in[j] == '\r' && j + 1 < len && in[j + 1] == '\n')) {
					i = j + (in[j] == '\r' ? 2 : 1);
					continue;
				}
			}
			out->data[out->len++] = c; /* malformed: kept as it is */
			i++;
			continue;
		}
		if (rfc2047 && c == '_') {
			out->data[out->len++] = ' ';
			i++;
			continue;
		}
		if (!rfc2047 && (c == ' ' || c == '\t')) {
			/* white space at the end of a line was added in transport */
			size_t j = i;
			while (j < len && (in[j] == ' ' || in[j] == '\t'))
				j++;
			if (j == len || in[j] == '\n' || (in[j] == '\r' && j + 1 < len && in[j + 1] == '\n')) {
				i = j;
				continue;
			}
			memcpy(out->data + out->len, in + i, j - i);
			out->len += j - i;
			i = j;
			continue;
		}
		out->data[out->len++] = c;
		i++;
	}
	out->data[out->len] = 0;
}

int mime_decode_transfer(enum mime_encoding enc, const void *in, size_t len, buf *out)
{
	switch (enc) {
	case MIME_ENC_7BIT:
	case MIME_ENC_8BIT:
	case MIME_ENC_BINARY:
		buf_append(out, in, len);
		return 0;
	case MIME_ENC_BASE64:
		b64_decode(in, len, out);
		return 0;
	case MIME_ENC_QP:
		qp_decode(in, len, 0, out);
		return 0;
	case MIME_ENC_UNKNOWN:
	default:
		return -1;
	}
}

/* ---- charsets ---- */

static const uint8_t replacement[3] = {0xEF, 0xBF, 0xBD}; /* U+FFFD */

/* The length of the valid UTF-8 sequence at s (n bytes), or 0. */
static size_t utf8_seq(const uint8_t *s, size_t n)
{
	uint8_t c = s[0];
	if (c < 0x80)
		return 1;
	size_t len;
	uint32_t min;
	if (c >= 0xC2 && c <= 0xDF) {
		len = 2;
		min = 0x80;
	} else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		min = 0x800;
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		min = 0x10000;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	uint32_t cp = c & (0x7F >> len);
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3F);
	}
	if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return len;
}

void mime__utf8_sanitize(const uint8_t *in, size_t len, buf *out)
{
	buf_reserve(out, len + 1);
	size_t i = 0;
	while (i < len) {
		/* a run of ASCII at once */
		size_t j = i;
		while (j < len && in[j] < 0x80)
			j++;
		if (j > i) {
			buf_append(out, in + i, j - i);
			i = j;
			continue;
		}
		size_t n = utf8_seq(in + i, len - i);
		if (n == 0) {
			buf_append(out, replacement, 3);
			i++;
		} else {
			buf_append(out, in + i, n);
			i += n;
		}
	}
}

static int charset_is_utf8(const char *cs)
{
	return cs == NULL || cs[0] == 0 || strcasecmp(cs, "utf-8") == 0 ||
	       strcasecmp(cs, "utf8") == 0 || strcasecmp(cs, "us-ascii") == 0 ||
	       strcasecmp(cs, "ascii") == 0;
}

int mime_charset_to_utf8(const char *charset, const void *in, size_t len, buf *out)
{
	if (charset_is_utf8(charset)) {
		mime__utf8_sanitize(in, len, out);
		return 0;
	}
	/* iconv names: the charset as given; "//IGNORE" is not used, we
	 * replace bad input ourselves */
	char name[MIME_CHARSET_MAX + 1];
	size_t cl = strlen(charset);
	if (cl > MIME_CHARSET_MAX || strchr(charset, '/') != NULL) {
		mime__utf8_sanitize(in, len, out);
		return -1;
	}
	memcpy(name, charset, cl + 1);
	iconv_t cd = iconv_open("UTF-8", name);
	if (cd == (iconv_t)-1) {
		mime__utf8_sanitize(in, len, out);
		return -1;
	}
	char *src = (char *)in;
	size_t left = len;
	buf_reserve(out, len * 2 + 16);
	while (left > 0) {
		char *dst = (char *)out->data + out->len;
		size_t room = out->cap - out->len - 1;
		size_t r = iconv(cd, &src, &left, &dst, &room);
		out->len = (size_t)((uint8_t *)dst - out->data);
		if (r != (size_t)-1)
			break;
		if (errno == E2BIG) {
			buf_reserve(out, left * 2 + 16);
		} else {
			/* EILSEQ, or EINVAL (cut at the end): one byte is bad */
			buf_append(out, replacement, 3);
			src++;
			left--;
			buf_reserve(out, left * 2 + 16);
		}
	}
	/* a stateful charset's final shift sequence */
	char *dst = (char *)out->data + out->len;
	size_t room = out->cap - out->len - 1;
	iconv(cd, NULL, NULL, &dst, &room);
	out->len = (size_t)((uint8_t *)dst - out->data);
	out->data[out->len] = 0;
	iconv_close(cd);
	return 0;
}

/* ---- RFC 2047 ---- */

struct eword {
	const uint8_t *charset; /* without an RFC 2231 "*lang" */
	size_t charset_len;
	int b;                  /* 'B' or 'Q' */
	const uint8_t *text;
	size_t text_len;
	size_t total;           /* bytes of "=?...?=" */
};

/* An encoded word "=?charset?e?text?=" at s (n bytes)? */
static int eword_parse(const uint8_t *s, size_t n, struct eword *w)
{
	if (n < 8 || s[0] != '=' || s[1] != '?')
		return 0;
	size_t i = 2;
	while (i < n && s[i] != '?' && s[i] > 0x20 && s[i] < 0x7f)
		i++;
	if (i >= n || s[i] != '?' || i == 2)
		return 0;
	w->charset = s + 2;
	w->charset_len = i - 2;
	const uint8_t *star = memchr(w->charset, '*', w->charset_len);
	if (star != NULL)
		w->charset_len = (size_t)(star - w->charset);
	if (i + 3 > n || s[i + 2] != '?')
		return 0;
	uint8_t e = s[i + 1];
	if (e == 'B' || e == 'b')
		w->b = 1;
	else if (e == 'Q' || e == 'q')
		w->b = 0;
	else
		return 0;
	size_t t = i + 3;
	size_t j = t;
	while (j + 1 < n && !(s[j] == '?' && s[j + 1] == '=')) {
		if (s[j] == ' ' || s[j] == '\t' || s[j] == '\r' || s[j] == '\n')
			return 0; /* no white space inside a word */
		j++;
	}
	if (j + 1 >= n)
		return 0;
	w->text = s + t;
	w->text_len = j - t;
	w->total = j + 2;
	return 1;
}

/* Decoded bytes of encoded words waiting for conversion: adjacent words
 * of one charset are converted together (a character may be split
 * between them). */
struct pending {
	buf bytes;
	char charset[MIME_CHARSET_MAX + 1];
	int active;
};

static void pending_flush(struct pending *pw, buf *out)
{
	if (!pw->active)
		return;
	mime_charset_to_utf8(pw->charset, pw->bytes.data, pw->bytes.len, out);
	buf_reset(&pw->bytes);
	pw->active = 0;
}

void mime_header_decode(const void *raw, size_t len, buf *utf8)
{
	const uint8_t *s = raw;
	struct pending pw;
	memset(&pw, 0, sizeof pw);
	buf_init(&pw.bytes);
	buf plain;
	buf_init(&plain);
	size_t i = 0;
	/* white space after an encoded word is held back in plain: dropped
	 * if another encoded word follows (RFC 2047 6.2) */
	int after_word = 0;
	while (i < len) {
		uint8_t c = s[i];
		if (c == '\r' || c == '\n') {
			i++; /* unfolding: the line break goes, its white space stays */
			continue;
		}
		struct eword w;
		if (c == '=' && eword_parse(s + i, len - i, &w)) {
			buf_reset(&plain);
			char cs[MIME_CHARSET_MAX + 1];
			size_t cl = w.charset_len > MIME_CHARSET_MAX ? MIME_CHARSET_MAX : w.charset_len;
			memcpy(cs, w.charset, cl);
			cs[cl] = 0;
			if (pw.active && strcasecmp(cs, pw.charset) != 0)
				pending_flush(&pw, utf8);
			if (!pw.active) {
				memcpy(pw.charset, cs, cl + 1);
				pw.active = 1;
			}
			if (w.b)
				b64_decode(w.text, w.text_len, &pw.bytes);
			else
				qp_decode(w.text, w.text_len, 1, &pw.bytes);
			i += w.total;
			after_word = 1;
			continue;
		}
		if (after_word && (c == ' ' || c == '\t')) {
			buf_append(&plain, &c, 1);
			i++;
			continue;
		}
		/* ordinary text: flush what the words gave, then the held space */
		if (after_word) {
			pending_flush(&pw, utf8);
			mime__utf8_sanitize(plain.data, plain.len, utf8);
			buf_reset(&plain);
			after_word = 0;
		}
		size_t j = i;
		while (j < len && s[j] != '=' && s[j] != '\r' && s[j] != '\n')
			j++;
		if (j == i)
			j++; /* a '=' that starts no word */
		mime__utf8_sanitize(s + i, j - i, utf8);
		i = j;
	}
	pending_flush(&pw, utf8);
	if (plain.len > 0)
		mime__utf8_sanitize(plain.data, plain.len, utf8);
	buf_deinit(&plain);
	buf_deinit(&pw.bytes);
	if (utf8->data == NULL) {
		buf_reserve(utf8, 1);
		utf8->data[0] = 0;
	}
}

/* ---- text for SEARCH ---- */

int mime_text_foreach(const void *msg, size_t len, const uint8_t *parts, size_t parts_len,
		      mime_text_cb *cb, void *arg)
{
	struct mime_part_loc *locs;
	uint64_t size;
	int n = mime_parts_decode(parts, parts_len, &locs, &size);
	if (n < 0)
		return -1;
	if (size != len) {
		free(locs);
		return -1;
	}
	const uint8_t *m = msg;
	buf dec, text;
	buf_init(&dec);
	buf_init(&text);
	int ret = 0;
	for (int i = 1; i < n && ret == 0; i++) {
		const struct mime_part_loc *l = &locs[i];
		if (!(l->flags & MIME_PART_TEXT))
			continue;
		buf_reset(&dec);
		if (mime_decode_transfer(l->encoding, m + l->body_off, (size_t)l->body_len, &dec) < 0)
			continue;
		buf_reset(&text);
		mime_charset_to_utf8(l->charset, dec.data, dec.len, &text);
		ret = cb(text.data != NULL ? (const char *)text.data : "", text.len, arg);
	}
	buf_deinit(&dec);
	buf_deinit(&text);
	free(locs);
	return ret;
}
