/* kvchunk.c: snapshot chunk framing (kvchunk.h). */
#include "kvchunk.h"

static void kvchunk__put_u32(buf *out, uint32_t v)
{
	uint8_t b[KVCHUNK_LEN_BYTES] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16),
					 (uint8_t)(v >> 8), (uint8_t)v };
	buf_append(out, b, sizeof b);
}

size_t kvchunk_pair_size(size_t klen, size_t vlen)
{
	return 2 * KVCHUNK_LEN_BYTES + klen + vlen;
}

void kvchunk_begin(buf *out, uint8_t version)
{
	buf_append(out, &version, 1);
}

void kvchunk_put(buf *out, const void *key, size_t klen, const void *val, size_t vlen)
{
	kvchunk__put_u32(out, (uint32_t)klen);
	buf_append(out, key, klen);
	kvchunk__put_u32(out, (uint32_t)vlen);
	buf_append(out, val, vlen);
}

int kvchunk_reader_init(struct kvchunk_reader *r, const uint8_t *data, size_t len,
			uint8_t version, size_t key_max)
{
	*r = (struct kvchunk_reader){ data, len, 1, key_max };
	return len == 0 || data[0] != version ? -1 : 0;
}

/* One length-prefixed field at r->off, or NULL when it does not fit in
 * what is left or is longer than max. */
static const uint8_t *kvchunk__field(struct kvchunk_reader *r, size_t *off, size_t max,
				     size_t *flen_r)
{
	if (r->len - *off < KVCHUNK_LEN_BYTES)
		return NULL;
	const uint8_t *p = r->data + *off;
	size_t flen = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
	*off += KVCHUNK_LEN_BYTES;
	if (flen > max || flen > r->len - *off)
		return NULL;
	p = r->data + *off;
	*off += flen;
	*flen_r = flen;
	return p;
}

int kvchunk_next(struct kvchunk_reader *r, const uint8_t **key_r, size_t *klen_r,
		 const uint8_t **val_r, size_t *vlen_r, const char **why_r)
{
	if (r->off >= r->len)
		return 0;
	size_t off = r->off;
	*key_r = kvchunk__field(r, &off, r->key_max, klen_r);
	if (*key_r == NULL) {
		*why_r = "key_length";
		return -1;
	}
	*val_r = kvchunk__field(r, &off, SIZE_MAX, vlen_r);
	if (*val_r == NULL) {
		*why_r = "value_length";
		return -1;
	}
	r->off = off;
	return 1;
}
