/* store-structure.c: store-structure.h.
 *
 * Until lib/mime's analyser lands (mime_analyze), compute gives every
 * message the structure RFC 3501 assigns a message without MIME headers:
 * an ENVELOPE of its Date, Subject and Message-ID (when they are plain
 * printable ASCII; NIL otherwise, addresses NIL) and a text/plain
 * BODYSTRUCTURE with the body's size and lines. */
#include "store-structure.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static void put_u32(buf *b, uint32_t v)
{
	uint8_t d[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
	buf_append(b, d, sizeof d);
}

static uint32_t get_u32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

void store_structure_encode(buf *out, const struct store_structure *st)
{
	uint8_t ver = STORE_STRUCTURE_VERSION;
	buf_append(out, &ver, 1);
	put_u32(out, (uint32_t)st->envelope_len);
	buf_append(out, st->envelope, st->envelope_len);
	put_u32(out, (uint32_t)st->bodystructure_len);
	buf_append(out, st->bodystructure, st->bodystructure_len);
	put_u32(out, (uint32_t)st->body_len);
	buf_append(out, st->body, st->body_len);
	put_u32(out, (uint32_t)st->parts_len);
	buf_append(out, st->parts, st->parts_len);
}

/* One length-prefixed field at *off: NULL when it does not fit. */
static const uint8_t *field(const uint8_t *p, size_t len, size_t *off, size_t *flen_r)
{
	if (len - *off < 4)
		return NULL;
	size_t flen = get_u32(p + *off);
	*off += 4;
	if (flen > len - *off)
		return NULL;
	const uint8_t *f = p + *off;
	*off += flen;
	*flen_r = flen;
	return f;
}

int store_structure_decode(const void *data, size_t len, struct store_structure *st_r)
{
	const uint8_t *p = data;
	memset(st_r, 0, sizeof *st_r);
	if (len < 1 || len > STORE_STRUCTURE_MAX || p[0] != STORE_STRUCTURE_VERSION)
		return -1;
	size_t off = 1;
	const uint8_t *f[4];
	size_t fl[4];
	for (int i = 0; i < 4; i++) {
		f[i] = field(p, len, &off, &fl[i]);
		if (f[i] == NULL)
			return -1;
		if (i < 3 && memchr(f[i], '\0', fl[i]) != NULL)
			return -1;
	}
	if (off != len)
		return -1;
	st_r->envelope = (const char *)f[0];
	st_r->envelope_len = fl[0];
	st_r->bodystructure = (const char *)f[1];
	st_r->bodystructure_len = fl[1];
	st_r->body = (const char *)f[2];
	st_r->body_len = fl[2];
	st_r->parts = f[3];
	st_r->parts_len = fl[3];
	return 0;
}

/* The value of header `name` (unfolded, first occurrence) in the header
 * block hdr as a quoted IMAP string into out, or NIL. */
static void header_quoted(const char *hdr, size_t hlen, const char *name, buf *out)
{
	size_t nlen = strlen(name);
	size_t i = 0;
	while (i < hlen) {
		size_t eol = i;
		while (eol < hlen && hdr[eol] != '\n')
			eol++;
		if (eol - i > nlen && strncasecmp(hdr + i, name, nlen) == 0 &&
		    hdr[i + nlen] == ':') {
			size_t v = i + nlen + 1;
			buf val;
			buf_init(&val);
			size_t end = eol;
			/* continuation lines */
			for (;;) {
				for (size_t j = v; j < end; j++) {
					char c = hdr[j];
					if (c == '\r')
						continue;
					buf_append(&val, &c, 1);
				}
				if (end + 1 < hlen && (hdr[end + 1] == ' ' || hdr[end + 1] == '\t')) {
					v = end + 1;
					end = v;
					while (end < hlen && hdr[end] != '\n')
						end++;
					continue;
				}
				break;
			}
			size_t a = 0, b = val.len;
			while (a < b && (val.data[a] == ' ' || val.data[a] == '\t'))
				a++;
			while (b > a && (val.data[b - 1] == ' ' || val.data[b - 1] == '\t'))
				b--;
			int ok = b > a;
			for (size_t j = a; j < b && ok; j++) {
				uint8_t c = val.data[j];
				if (c < 0x20 || c > 0x7e || c == '"' || c == '\\')
					ok = 0;
			}
			if (ok) {
				buf_append(out, "\"", 1);
				buf_append(out, val.data + a, b - a);
				buf_append(out, "\"", 1);
			} else {
				buf_append_str(out, "NIL");
			}
			buf_deinit(&val);
			return;
		}
		i = eol + 1;
	}
	buf_append_str(out, "NIL");
}

void store_structure_compute(const void *message, size_t len, buf *out)
{
	const char *m = message;
	/* the header ends at the first empty line */
	size_t hlen = len, body_at = len;
	for (size_t i = 0; i < len; i++) {
		if (m[i] != '\n')
			continue;
		if (i + 1 < len && m[i + 1] == '\n') {
			hlen = i + 1;
			body_at = i + 2;
			break;
		}
		if (i + 2 < len && m[i + 1] == '\r' && m[i + 2] == '\n') {
			hlen = i + 1;
			body_at = i + 3;
			break;
		}
	}
	size_t blen = len - body_at;
	size_t lines = 0;
	for (size_t i = body_at; i < len; i++)
		lines += m[i] == '\n';
	buf env, bs, body;
	buf_init(&env);
	buf_init(&bs);
	buf_init(&body);
	buf_append_str(&env, "(");
	header_quoted(m, hlen, "Date", &env);
	buf_append_str(&env, " ");
	header_quoted(m, hlen, "Subject", &env);
	buf_append_str(&env, " NIL NIL NIL NIL NIL NIL ");
	header_quoted(m, hlen, "In-Reply-To", &env);
	buf_append_str(&env, " ");
	header_quoted(m, hlen, "Message-ID", &env);
	buf_append_str(&env, ")");
	buf_printf(&body, "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" %zu %zu)",
		   blen, lines);
	buf_printf(&bs, "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" %zu %zu "
		   "NIL NIL NIL NIL)", blen, lines);
	struct store_structure st = {
		.envelope = (const char *)env.data, .envelope_len = env.len,
		.bodystructure = (const char *)bs.data, .bodystructure_len = bs.len,
		.body = (const char *)body.data, .body_len = body.len,
		.parts = NULL, .parts_len = 0,
	};
	store_structure_encode(out, &st);
	buf_deinit(&env);
	buf_deinit(&bs);
	buf_deinit(&body);
}
