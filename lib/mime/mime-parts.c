/* mime-parts.c: the part table's encoding.
 *
 * Version 1, all integers unsigned LEB128 varints (at most 10 bytes):
 *   'M' 'P' 0x01
 *   msg_size, n_entries
 *   n_entries times:
 *     depth, depth path components (each >= 1, < 2^32)
 *     flags (one byte, MIME_PART_* only), encoding (one byte)
 *     mime_off mime_len body_off body_len
 *     MIME_PART_MESSAGE: hdr_off hdr_len text_off text_len
 *     charset length (one byte, <= MIME_CHARSET_MAX), its bytes
 *       (printable ASCII, no space)
 * The first entry is the root (depth 0); nothing follows the last.
 * Every region must lie within msg_size. A reader refuses anything else:
 * the table comes from another node and may be from a newer version
 * (a new version gets a new version byte).
 */
#include <stdlib.h>
#include <string.h>

#include "mime-private.h"
#include "xalloc.h"

#define PARTS_MAGIC0 'M'
#define PARTS_MAGIC1 'P'
#define PARTS_VERSION 1
#define PARTS_ENTRIES_MAX (1u << 20)
#define PARTS_FLAGS_ALL (MIME_PART_MULTIPART | MIME_PART_MESSAGE | MIME_PART_TEXT | MIME_PART_HTML)

static void put_varint(buf *b, uint64_t v)
{
	uint8_t tmp[10];
	size_t n = 0;
	do {
		uint8_t c = v & 0x7f;
		v >>= 7;
		tmp[n++] = v ? (uint8_t)(c | 0x80) : c;
	} while (v);
	buf_append(b, tmp, n);
}

void mime__parts_begin(struct mime__parts_writer *w, uint64_t msg_size)
{
	buf_init(&w->out);
	w->n = 0;
	static const uint8_t head[3] = {PARTS_MAGIC0, PARTS_MAGIC1, PARTS_VERSION};
	buf_append(&w->out, head, sizeof head);
	put_varint(&w->out, msg_size);
	w->count_pos = w->out.len;
}

void mime__parts_add(struct mime__parts_writer *w, const struct mime_part_loc *loc)
{
	buf *b = &w->out;
	put_varint(b, loc->depth);
	for (unsigned i = 0; i < loc->depth; i++)
		put_varint(b, loc->path[i]);
	uint8_t fe[2] = {(uint8_t)loc->flags, (uint8_t)loc->encoding};
	buf_append(b, fe, 2);
	put_varint(b, loc->mime_off);
	put_varint(b, loc->mime_len);
	put_varint(b, loc->body_off);
	put_varint(b, loc->body_len);
	if (loc->flags & MIME_PART_MESSAGE) {
		put_varint(b, loc->hdr_off);
		put_varint(b, loc->hdr_len);
		put_varint(b, loc->text_off);
		put_varint(b, loc->text_len);
	}
	uint8_t cl = (uint8_t)strnlen(loc->charset, MIME_CHARSET_MAX);
	buf_append(b, &cl, 1);
	buf_append(b, loc->charset, cl);
	w->n++;
}

void mime__parts_end(struct mime__parts_writer *w)
{
	/* the count goes after msg_size: move the entries up to make room */
	buf count;
	buf_init(&count);
	put_varint(&count, w->n);
	buf_reserve(&w->out, count.len);
	memmove(w->out.data + w->count_pos + count.len, w->out.data + w->count_pos,
		w->out.len - w->count_pos);
	memcpy(w->out.data + w->count_pos, count.data, count.len);
	w->out.len += count.len;
	buf_deinit(&count);
}

/* ---- reading ---- */

struct rd {
	const uint8_t *p;
	size_t len, pos;
	int bad;
};

static uint64_t get_varint(struct rd *r)
{
	uint64_t v = 0;
	for (unsigned shift = 0; shift < 70; shift += 7) {
		if (r->pos >= r->len) {
			r->bad = 1;
			return 0;
		}
		uint8_t c = r->p[r->pos++];
		if (shift == 63 && (c & 0x7e) != 0) {
			r->bad = 1; /* more than 64 bits */
			return 0;
		}
		v |= (uint64_t)(c & 0x7f) << shift;
		if (!(c & 0x80))
			return v;
	}
	r->bad = 1;
	return 0;
}

static uint8_t get_byte(struct rd *r)
{
	if (r->pos >= r->len) {
		r->bad = 1;
		return 0;
	}
	return r->p[r->pos++];
}

static int region_ok(uint64_t off, uint64_t len, uint64_t size)
{
	return off <= size && len <= size - off;
}

/* Read and check one entry. 0 or -1. */
static int entry_read(struct rd *r, uint64_t size, struct mime_part_loc *loc)
{
	uint64_t depth = get_varint(r);
	if (r->bad || depth > MIME_PATH_MAX)
		return -1;
	loc->depth = (unsigned)depth;
	for (unsigned i = 0; i < loc->depth; i++) {
		uint64_t c = get_varint(r);
		if (r->bad || c == 0 || c > UINT32_MAX)
			return -1;
		loc->path[i] = (uint32_t)c;
	}
	loc->flags = get_byte(r);
	uint8_t enc = get_byte(r);
	if (r->bad || (loc->flags & ~PARTS_FLAGS_ALL) != 0 || enc > MIME_ENC_UNKNOWN)
		return -1;
	loc->encoding = (enum mime_encoding)enc;
	loc->mime_off = get_varint(r);
	loc->mime_len = get_varint(r);
	loc->body_off = get_varint(r);
	loc->body_len = get_varint(r);
	loc->hdr_off = loc->hdr_len = loc->text_off = loc->text_len = 0;
	if (loc->flags & MIME_PART_MESSAGE) {
		loc->hdr_off = get_varint(r);
		loc->hdr_len = get_varint(r);
		loc->text_off = get_varint(r);
		loc->text_len = get_varint(r);
	}
	if (r->bad || !region_ok(loc->mime_off, loc->mime_len, size) ||
	    !region_ok(loc->body_off, loc->body_len, size) ||
	    !region_ok(loc->hdr_off, loc->hdr_len, size) ||
	    !region_ok(loc->text_off, loc->text_len, size))
		return -1;
	uint8_t cl = get_byte(r);
	if (r->bad || cl > MIME_CHARSET_MAX || r->len - r->pos < cl)
		return -1;
	for (unsigned i = 0; i < cl; i++) {
		uint8_t c = r->p[r->pos + i];
		if (c <= 0x20 || c >= 0x7f)
			return -1;
		loc->charset[i] = (char)c;
	}
	loc->charset[cl] = 0;
	r->pos += cl;
	return 0;
}

/* The header: msg_size and the entry count. 0 or -1. */
static int head_read(struct rd *r, uint64_t *size_r, uint64_t *n_r)
{
	if (r->len < 3 || r->p[0] != PARTS_MAGIC0 || r->p[1] != PARTS_MAGIC1 ||
	    r->p[2] != PARTS_VERSION)
		return -1;
	r->pos = 3;
	*size_r = get_varint(r);
	*n_r = get_varint(r);
	/* an entry takes at least 8 bytes: a count the table cannot hold is
	 * a lie (never size an allocation from it) */
	if (r->bad || *n_r == 0 || *n_r > PARTS_ENTRIES_MAX || *n_r > (r->len - r->pos) / 8)
		return -1;
	return 0;
}

int mime_parts_find(const uint8_t *parts, size_t len, const uint32_t *path, size_t depth,
		    struct mime_part_loc *loc_r)
{
	struct rd r = {parts, len, 0, 0};
	uint64_t size, n;
	if (parts == NULL || head_read(&r, &size, &n) < 0)
		return -1;
	for (uint64_t i = 0; i < n; i++) {
		if (entry_read(&r, size, loc_r) < 0 || (i == 0 && loc_r->depth != 0))
			return -1;
		if (loc_r->depth == depth &&
		    (depth == 0 || memcmp(loc_r->path, path, depth * sizeof *path) == 0))
			return 1;
	}
	return r.pos == r.len ? 0 : -1;
}

int mime_parts_decode(const uint8_t *parts, size_t len, struct mime_part_loc **locs_r,
		      uint64_t *msg_size_r)
{
	struct rd r = {parts, len, 0, 0};
	uint64_t size, n;
	*locs_r = NULL;
	if (parts == NULL || head_read(&r, &size, &n) < 0)
		return -1;
	struct mime_part_loc *locs = xcalloc((size_t)n, sizeof *locs);
	for (uint64_t i = 0; i < n; i++) {
		if (entry_read(&r, size, &locs[i]) < 0 || (i == 0) != (locs[i].depth == 0)) {
			free(locs);
			return -1;
		}
	}
	if (r.pos != r.len) {
		free(locs);
		return -1;
	}
	*locs_r = locs;
	if (msg_size_r != NULL)
		*msg_size_r = size;
	return (int)n;
}
