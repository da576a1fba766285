/* bodystore.h: message bodies in append-only segment files, indexed in the
 * mailstore's LevelDB (key-value separation, as in WiscKey). Internal to
 * store-node: only mailstore.c uses it.
 *
 * Files: <dir>/bodies/<segment u32 as 8 lowercase hex>.seg. A segment is a
 * run of records, each
 *     magic u32 ("MBD1") | body length u64 | crc32 (zlib) of the body u32
 *     | the body bytes
 * (big-endian). Records are only ever appended, at the end of the current
 * (highest) segment; a new segment starts when the current one would pass
 * settings.segment_size (a body bigger than that gets a segment of its
 * own). Nothing in a file is ever overwritten: bytes that no pointer
 * references (a write that failed, a crash between the append and the
 * LevelDB batch, a body that was expunged or moved) are garbage, reclaimed
 * by collection. A file is never parsed from its start: a body is found
 * through its pointer only. The current segment grows by zero-filled steps
 * of 1 MiB ahead of its last record (so that a record's fdatasync need not
 * write the file's size); a segment is cut to its last record when sealed.
 * After a restart appending resumes at the real end of the current file:
 * what a crash left behind the last durable record, and the zeros of a
 * preallocation, are garbage like the rest.
 *
 * A body of at most settings.inline_max bytes is not appended to a segment:
 * it is kept in its pointer's value (inline), written with the owner's
 * batch, so it needs no fdatasync of its own before the batch and no
 * collection (LevelDB's compaction rewrites it instead).
 *
 * LevelDB records (the owner's database; all node-local, never exported):
 *   <pointer key> (chosen by the owner)  -> 01 | segment u32 | offset u64
 *        | length u64 | crc u32: the record at offset holds the body
 *                                        or 02 | crc u32 | the body (inline)
 *   01 'R' <segment u32> <offset u64>    -> 01 | <pointer key>: reverse
 *        index, written and deleted with the pointer, so collecting a
 *        segment reads its own records only
 *   01 'S' <segment u32>                 -> 01 | live bytes u64 | records
 *        u64: what pointers still reference in that segment (header
 *        included), updated in the batch that changes a pointer; absent =
 *        nothing
 *
 * Writes. The owner builds its LevelDB batch between bodystore_txn_begin()
 * and bodystore_txn_prepare(); bodystore adds its puts and deletes to that
 * batch. prepare makes the appended bytes durable (fdatasync, when the
 * write is synced) and adds the live-byte records; only then may the owner
 * write the batch; bodystore_txn_end() says whether it was written. So a
 * durable pointer always refers to durable bytes, and after a crash the
 * append point is the real end of the current file (never inside a record
 * a durable pointer may reference).
 *
 * Collection: a sealed (not current) segment whose live bytes fall under
 * settings.collect_live_pct % of its size is collected in bounded steps
 * (bodystore_collect_step(): at most settings.collect_step bytes copied):
 * its live records are appended to the current segment and their pointers
 * rewritten (one synced batch per step); once none is left the file is
 * deleted. A segment whose last record goes is deleted at once. While a
 * reader holds the store (bodystore_hold(): a snapshot export that reads
 * old pointers) files are not deleted, only queued.
 *
 * Threading: every call except bodystore_read(), bodystore_hold() and
 * bodystore_release() must be serialised by the owner (mailstore's lock);
 * those three may run in any thread at the same time as the others.
 *
 * Returns (STYLE rule 8): < 0 error (logged here), 0 done / nothing, 1 a
 * result.
 */
#ifndef MAIL_BODYSTORE_H
#define MAIL_BODYSTORE_H

#include "buf.h"

#include <leveldb/c.h>

#include <stddef.h>
#include <stdint.h>

/* Kind bytes of bodystore's own keys (after the version byte 01). */
#define BODYSTORE_KIND_REVERSE 'R'
#define BODYSTORE_KIND_SEGMENT 'S'
/* Length of a pointer value. */
#define BODYSTORE_POINTER_LEN (1 + 4 + 8 + 8 + 4)
/* Bytes of a record before its body. */
#define BODYSTORE_RECORD_HEADER 16

struct bodystore_settings {
	uint64_t segment_size;     /* see mailstore_limits.body_segment_size */
	unsigned collect_live_pct; /* see mailstore_limits.body_collect_live_pct */
	uint64_t collect_step;     /* see mailstore_limits.body_collect_step */
	unsigned open_segments;    /* see mailstore_limits.body_open_segments */
	size_t inline_max;         /* see mailstore_limits.body_inline_max */
};

struct bodystore_stats {
	uint32_t segments;      /* segment files */
	uint32_t current;       /* the one appended to (0: none yet) */
	uint64_t disk_bytes;    /* their sizes */
	uint64_t live_bytes;    /* what pointers reference, headers included */
	uint64_t collected;     /* segments deleted since open */
	uint64_t moved_bytes;   /* record bytes copied by collection since open */
};

typedef struct bodystore bodystore;

/* Open (creating <dir>/bodies if missing) over db, which the owner keeps
 * open until bodystore_close(). settings is copied (out-of-range values
 * are clamped). Deletes sealed files that nothing references (left by a
 * crash), finds the append point. Returns 0 and *bs_r, or -1 with *error_r
 * (static text; the detail is logged). */
int bodystore_open(const char *dir, leveldb_t *db, const struct bodystore_settings *settings,
		   bodystore **bs_r, const char **error_r);
/* Close files and free. NULLs *bs. No call may be running, no hold left. */
void bodystore_close(bodystore **bs);

/* Start a write whose LevelDB changes go into wb (owned by the caller).
 * sync: the batch will be written with sync=true (the appends are then
 * fdatasync'd by prepare). */
void bodystore_txn_begin(bodystore *bs, leveldb_writebatch_t *wb, int sync);
/* Append body and put the pointer pkey (pklen bytes, copied) and its
 * reverse record into the batch (a body of at most settings.inline_max
 * bytes: only the pointer, holding it). A pointer already stored at pkey must be
 * removed first (bodystore_delete) or its bytes stay counted live. 0 or
 * -1 (the write must be abandoned: bodystore_txn_end(bs, 0)). */
int bodystore_put(bodystore *bs, const void *pkey, size_t pklen, const void *body, size_t len);
/* Delete the pointer at pkey (if any) and its reverse record; its bytes
 * stop being live. 1 when there was one, 0 when not, -1 on a read error.
 * A corrupt pointer is deleted without accounting (logged). */
int bodystore_delete(bodystore *bs, const void *pkey, size_t pklen);
/* The pointer whose value is val is being deleted by the caller (it walks
 * the keys itself): delete its reverse record, its bytes stop being live.
 * 0, or -1 when val is not a pointer (logged; nothing is accounted). */
int bodystore_unref_value(bodystore *bs, const void *val, size_t vlen);
/* Make the appends durable (if sync) and add the live-byte records. 0, or
 * -1 (abandon the write). */
int bodystore_txn_prepare(bodystore *bs);
/* The batch was written (committed = 1) or abandoned (0, appended bytes
 * become garbage). Deletes the sealed segments left without a record. */
void bodystore_txn_end(bodystore *bs, int committed);

/* The body of the pointer at pkey (read through the owner's view of db):
 * 1 with *body_r (heap, caller frees) and *len_r, 0 when there is no
 * pointer, -1 on a read error or a corrupt record (CRC, magic or length
 * mismatch: logged event=body_corrupt; wrong bytes are never returned). */
int bodystore_get(bodystore *bs, const void *pkey, size_t pklen, void **body_r, size_t *len_r);
/* Body length of the pointer value val: 0, or -1 when val is not a
 * pointer. */
int bodystore_value_length(const void *val, size_t vlen, uint64_t *len_r);
/* Append to out the body of pointer value val (from any view: a snapshot's
 * pointers stay readable while it holds the store). 0 or -1 (as _get). */
int bodystore_read(bodystore *bs, const void *val, size_t vlen, buf *out);

/* 1 when a collection step may have work (a candidate or one in
 * progress), else 0. Cheap: a flag. */
int bodystore_collect_pending(const bodystore *bs);
/* One collection step in its own synced batch: copy at most collect_step
 * bytes of the victim's live bodies (at least one), delete the file once
 * none is left. 1 when it did something, 0 when there is nothing to
 * collect, -1 on an error (logged; the step is abandoned, the victim stays
 * intact). */
int bodystore_collect_step(bodystore *bs);

/* While held, no segment file is deleted (deletions are queued); release
 * deletes what was queued once the last hold goes. */
void bodystore_hold(bodystore *bs);
void bodystore_release(bodystore *bs);

void bodystore_stats_get(const bodystore *bs, struct bodystore_stats *stats_r);

#endif
