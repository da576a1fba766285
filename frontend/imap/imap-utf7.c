/* imap-utf7.c: modified UTF-7 <-> UTF-8 (see imap-utf7.h). */
#include "imap-utf7.h"

#include <stdint.h>

static const char imap_utf7_b64[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/* The value of a modified base64 character, or -1. */
static int imap_utf7_b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == ',')
		return 63;
	return -1;
}

static int imap_utf7_printable(uint32_t c)
{
	return c >= 0x20 && c <= 0x7e;
}

static void imap_utf8_put(buf *out, uint32_t cp)
{
	uint8_t b[4];
	size_t n;
	if (cp < 0x80) {
		b[0] = (uint8_t)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (uint8_t)(0xc0 | (cp >> 6));
		b[1] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (uint8_t)(0xe0 | (cp >> 12));
		b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (uint8_t)(0xf0 | (cp >> 18));
		b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 4;
	}
	buf_append(out, b, n);
}

/* One run of modified base64 starting at in[*i] (after the '&'), through
 * its '-'. Returns 0 with *i past the '-', or -1 with *error_r. */
static int imap_utf7_run(const char *in, size_t len, size_t *i, buf *out, const char **error_r)
{
	uint32_t bits = 0, high = 0;
	unsigned nbits = 0;
	size_t units = 0;

	for (;;) {
		if (*i >= len) {
			*error_r = "Unterminated modified BASE64 in mailbox name";
			return -1;
		}
		unsigned char c = (unsigned char)in[(*i)++];
		if (c == '-')
			break;
		int v = imap_utf7_b64_value(c);
		if (v < 0) {
			*error_r = "Invalid modified BASE64 in mailbox name";
			return -1;
		}
		bits = (bits << 6) | (uint32_t)v;
		nbits += 6;
		if (nbits < 16)
			continue;
		nbits -= 16;
		uint32_t u = (bits >> nbits) & 0xffffu;
		bits &= (1u << nbits) - 1u;
		units++;
		uint32_t cp;
		if (high != 0) {
			if (u < 0xdc00 || u > 0xdfff) {
				*error_r = "Unpaired UTF-16 surrogate in mailbox name";
				return -1;
			}
			cp = 0x10000u + ((high - 0xd800u) << 10) + (u - 0xdc00u);
			high = 0;
		} else if (u >= 0xd800 && u <= 0xdbff) {
			high = u;
			continue;
		} else if (u >= 0xdc00 && u <= 0xdfff) {
			*error_r = "Unpaired UTF-16 surrogate in mailbox name";
			return -1;
		} else {
			cp = u;
		}
		if (cp == 0 || imap_utf7_printable(cp)) {
			*error_r = "Needlessly encoded character in mailbox name";
			return -1;
		}
		imap_utf8_put(out, cp);
	}
	/* whole units only: at most 5 padding bits, all zero */
	if (units == 0 || nbits >= 6 || bits != 0 || high != 0) {
		*error_r = units == 0 ? "Empty modified BASE64 in mailbox name"
				      : "Invalid modified BASE64 in mailbox name";
		return -1;
	}
	return 0;
}

int imap_utf7_to_utf8(const char *in, size_t len, buf *out, const char **error_r)
{
	size_t start = out->len, i = 0;
	int after_run = 0;

	while (i < len) {
		unsigned char c = (unsigned char)in[i];
		if (c == '&') {
			if (i + 1 < len && in[i + 1] == '-') {
				buf_append(out, "&", 1);
				i += 2;
				after_run = 0;
				continue;
			}
			if (after_run) {
				*error_r = "Adjacent modified BASE64 runs in mailbox name";
				out->len = start;
				return -1;
			}
			i++;
			if (imap_utf7_run(in, len, &i, out, error_r) < 0) {
				out->len = start;
				return -1;
			}
			after_run = 1;
			continue;
		}
		if (!imap_utf7_printable(c)) {
			*error_r = "8-bit or control character in mailbox name";
			out->len = start;
			return -1;
		}
		buf_append(out, &in[i], 1);
		i++;
		after_run = 0;
	}
	return 0;
}

/* The code point at in[*i] (valid UTF-8 only), *i moved past it; or -1. */
static int32_t imap_utf8_next(const char *in, size_t len, size_t *i)
{
	const unsigned char *s = (const unsigned char *)in;
	unsigned char c = s[*i];
	uint32_t cp, min;
	size_t n;

	if (c < 0x80) {
		(*i)++;
		return c;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		n = 1;
		cp = c & 0x1fu;
		min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 2;
		cp = c & 0x0fu;
		min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 3;
		cp = c & 0x07u;
		min = 0x10000;
	} else {
		return -1;
	}
	if (len - *i <= n)
		return -1;
	for (size_t k = 1; k <= n; k++) {
		unsigned char cc = s[*i + k];
		if ((cc & 0xc0) != 0x80)
			return -1;
		cp = (cp << 6) | (cc & 0x3fu);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return -1;
	*i += n + 1;
	return (int32_t)cp;
}

int imap_utf8_valid(const char *in, size_t len)
{
	size_t i = 0;
	while (i < len) {
		if (imap_utf8_next(in, len, &i) < 0)
			return 0;
	}
	return 1;
}

/* Append 16 bits of a run; bits and nbits carry what is not yet out. */
static void imap_utf7_put_unit(buf *out, uint32_t unit, uint32_t *bits, unsigned *nbits)
{
	*bits = (*bits << 16) | unit;
	*nbits += 16;
	while (*nbits >= 6) {
		*nbits -= 6;
		buf_append(out, &imap_utf7_b64[(*bits >> *nbits) & 0x3f], 1);
	}
	*bits &= (1u << *nbits) - 1u;
}

int imap_utf8_to_utf7(const char *in, size_t len, buf *out)
{
	size_t start = out->len, i = 0;
	int in_run = 0;
	uint32_t bits = 0;
	unsigned nbits = 0;

	while (i < len) {
		int32_t cp = imap_utf8_next(in, len, &i);
		if (cp <= 0) {
			out->len = start;
			return -1;
		}
		if (imap_utf7_printable((uint32_t)cp)) {
			if (in_run) {
				if (nbits > 0)
					buf_append(out, &imap_utf7_b64[(bits << (6 - nbits)) & 0x3f],
						   1);
				buf_append(out, "-", 1);
				in_run = 0;
				bits = 0;
				nbits = 0;
			}
			if (cp == '&')
				buf_append(out, "&-", 2);
			else {
				char ch = (char)cp;
				buf_append(out, &ch, 1);
			}
			continue;
		}
		if (!in_run) {
			buf_append(out, "&", 1);
			in_run = 1;
		}
		if (cp >= 0x10000) {
			uint32_t v = (uint32_t)cp - 0x10000u;
			imap_utf7_put_unit(out, 0xd800u + (v >> 10), &bits, &nbits);
			imap_utf7_put_unit(out, 0xdc00u + (v & 0x3ffu), &bits, &nbits);
		} else {
			imap_utf7_put_unit(out, (uint32_t)cp, &bits, &nbits);
		}
	}
	if (in_run) {
		if (nbits > 0)
			buf_append(out, &imap_utf7_b64[(bits << (6 - nbits)) & 0x3f], 1);
		buf_append(out, "-", 1);
	}
	return 0;
}
