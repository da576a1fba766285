/* store-structure.c: store-structure.h over lib/mime's analyser
 * (mime_analyze: bounded; a message it cannot parse degrades to opaque
 * text, never an error). */
#include "store-structure.h"

#include "mime.h"

#include <string.h>

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

void store_structure_compute(const void *message, size_t len, buf *out)
{
	struct mime_result *r = NULL;
	(void)mime_analyze(message, len, NULL, &r);
	struct store_structure st = {
		.envelope = r->envelope, .envelope_len = r->envelope_len,
		.bodystructure = r->bodystructure, .bodystructure_len = r->bodystructure_len,
		.body = r->body, .body_len = r->body_len,
		.parts = r->parts, .parts_len = r->parts_len,
	};
	store_structure_encode(out, &st);
	mime_result_free(&r);
}
