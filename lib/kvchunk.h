/* kvchunk.h: the framing of snapshot chunks (public contract).
 *
 * A chunk is a version byte (the owner's snapshot format), then pairs
 *   key_len u32 BE | key | value_len u32 BE | value
 * up to the end of the chunk. The owners (mailstore, queue store) send
 * LevelDB pairs of one partition this way; the receiving side reads them
 * with kvchunk_next(), which checks every length against what is left of
 * the chunk before it is used (the bytes come from the network).
 * Pure functions; any thread.
 */
#ifndef MAIL_KVCHUNK_H
#define MAIL_KVCHUNK_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define KVCHUNK_LEN_BYTES 4

/* Bytes one pair takes in a chunk. */
size_t kvchunk_pair_size(size_t klen, size_t vlen);
/* Append the version byte that starts a chunk. */
void kvchunk_begin(buf *out, uint8_t version);
/* Append one pair (klen and vlen must fit in u32). */
void kvchunk_put(buf *out, const void *key, size_t klen, const void *val, size_t vlen);

struct kvchunk_reader {
	const uint8_t *data;
	size_t len;
	size_t off;       /* of the next pair (for the log) */
	size_t key_max;   /* longer keys are refused */
};

/* Start reading data[0..len): 0, or -1 when the chunk is empty or its
 * version byte is not version. */
int kvchunk_reader_init(struct kvchunk_reader *r, const uint8_t *data, size_t len,
			uint8_t version, size_t key_max);
/* The next pair (pointers into the chunk): 1, 0 at the end, -1 when the
 * chunk is malformed (*why_r: static text). */
int kvchunk_next(struct kvchunk_reader *r, const uint8_t **key_r, size_t *klen_r,
		 const uint8_t **val_r, size_t *vlen_r, const char **why_r);

#endif
