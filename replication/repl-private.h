/* repl-private.h: internals of mailrepl shared by its .c files.
 *
 * LevelDB key schema (one directory per node, all partitions), version byte
 * REPL_KEY_VERSION first so the layout can evolve:
 *   0x01 'E' <partition u32 BE> <index u64 BE> -> <epoch u64 BE> <kind u8> <payload>
 *   0x01 'M' <partition u32 BE> <index u64 BE> -> <epoch u64 BE> <payload length u32 BE>
 *   0x01 'S' <partition u32 BE>                -> <epoch> <last> <commit> <applied>
 *                                                 <base> <base epoch> (6 x u64 BE;
 *                                                 4 x u64 while base is 0, which
 *                                                 binaries from before compaction
 *                                                 also read)
 * The state record is written in the same batch as the entries it
 * describes, so last_index always matches the log on disk, and base_index
 * (the last index compacted away) matches the entries deleted with it: the
 * log holds exactly base_index+1 .. last_index.
 *
 * The 'M' record is an entry's side record, written and deleted in the
 * same batch as the entry: what compaction, byte counting and epoch
 * checks need, readable without the entry's value (a message body that
 * LevelDB would decompress). 'M' keys sort apart from 'E' keys, so a scan
 * of side records touches small blocks only. Entries written by a binary
 * from before side records existed have none; every reader then falls back
 * to the entry itself (counted in repl_log_value_bytes_read), until
 * compaction has deleted those entries.
 */
#ifndef MAIL_REPL_PRIVATE_H
#define MAIL_REPL_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "buf.h"

#define REPL_KEY_VERSION 0x01
#define REPL_KIND_DATA 0
#define REPL_KIND_BARRIER 1

typedef struct repl_log repl_log;

struct repl_log_state {
	uint64_t epoch;
	uint64_t last_index;
	uint64_t commit_index;
	uint64_t applied_index;
	uint64_t base_index;    /* entries <= base_index are compacted away */
	uint64_t base_epoch;    /* epoch of the entry at base_index (0 if 0) */
};

/* One entry as read from or written to the log. payload points into
 * storage owned by whoever filled it. */
struct repl_log_entry {
	uint64_t epoch;
	int kind;
	const uint8_t *payload;
	size_t len;
};

/* ---- repl-log.c: storage only, no loop ----------------------------- */

int repl_log_open(const char *dir, repl_log **log_r, const char **error_r);
void repl_log_close(repl_log **log);
/* Number of sync writes so far. */
uint64_t repl_log_sync_writes(const repl_log *log);
/* Bytes of entry values (header and payload) read so far: by the entry
 * readers below, and by a side-record reader that had to fall back to an
 * entry without one. Compaction and byte counting read none. */
uint64_t repl_log_value_bytes_read(const repl_log *log);

/* 1 with *state_r, 0 when the partition has no state yet, -1 on error. */
int repl_log_state_load(repl_log *log, uint32_t partition, struct repl_log_state *state_r);
/* Entry at index: 1 (payload appended to out if not NULL), 0 none, -1 error. */
int repl_log_entry_get(repl_log *log, uint32_t partition, uint64_t index, uint64_t *epoch_r,
		       int *kind_r, buf *out);
/* Epoch of the entry at index (from its side record), 0 for index 0; -1
 * on error or missing. */
int repl_log_entry_epoch(repl_log *log, uint32_t partition, uint64_t index, uint64_t *epoch_r);

/* Read entries from index `from` while index <= last, at most max_entries,
 * stopping once max_bytes of payload are reached (at least one entry).
 * Each entry's payload is copied into a separate heap block in
 * entries_r[i].payload (free with repl_log_entries_free). Returns the count
 * (>= 0) or -1 (a gap in the log counts as an error). */
int repl_log_read(repl_log *log, uint32_t partition, uint64_t from, uint64_t last,
		  size_t max_entries, size_t max_bytes, struct repl_log_entry *entries_r);
void repl_log_entries_free(struct repl_log_entry *entries, size_t n);

/* Epoch and payload size of one entry, without its payload. */
struct repl_log_meta {
	uint64_t epoch;
	size_t len;
};
/* Like repl_log_read, without payloads and without a byte bound:
 * metadata of the entries from..last, at most max_entries, from their side
 * records (no entry value is read unless an entry has none). Returns the
 * count (>= 0) or -1 (storage error, or a gap). */
int repl_log_read_meta(repl_log *log, uint32_t partition, uint64_t from, uint64_t last,
		       size_t max_entries, struct repl_log_meta *meta_r);

/* A write batch: entries, truncation and state, then one write. */
typedef struct repl_log_batch repl_log_batch;
repl_log_batch *repl_log_batch_create(repl_log *log, uint32_t partition);
void repl_log_batch_put_entry(repl_log_batch *b, uint64_t index, uint64_t epoch, int kind,
			      const void *payload, size_t len);
/* Delete entries from..to (inclusive). */
void repl_log_batch_truncate(repl_log_batch *b, uint64_t from, uint64_t to);
void repl_log_batch_put_state(repl_log_batch *b, const struct repl_log_state *state);
/* Write (sync or not) and free the batch. 0 or -1 (logged). Any thread
 * (the writer thread writes the group; the sync_writes count is atomic);
 * the other functions here are for the loop thread. */
int repl_log_batch_commit(repl_log_batch *b, int sync);
/* Free the batch without writing it. */
void repl_log_batch_discard(repl_log_batch *b);
/* Move src's operations to the end of dst (both of the same log; a batch
 * created for partition UINT32_MAX only gathers others) and free src. */
void repl_log_batch_merge(repl_log_batch *dst, repl_log_batch *src);

/* ---- repl-tail.c: recent entries in memory ------------------------- */

/* A partition's most recent log entries, kept in memory so that shipping
 * them to replicas and applying them need not read them back from the
 * log, and so that a primary can ship its proposals while its own write
 * of them is in flight. The indexes are contiguous: first .. first + n -
 * 1. An entry at index i is what the log holds (or will hold, once the
 * write in flight is done) at i; whoever changes the log otherwise
 * (truncation, reset, a write that failed) drops what no longer matches.
 * Loop thread only. */
struct repl_tail_entry {
	uint64_t epoch;
	int kind;
	uint8_t *payload;   /* owned (heap, may be NULL when len is 0) */
	size_t len;
};
struct repl_tail {
	struct repl_tail_entry *ring;
	size_t cap, head, n;   /* cap: a power of 2 */
	uint64_t first;        /* index of the first entry (n > 0) */
	size_t bytes;          /* payload bytes held */
};
void repl_tail_init(struct repl_tail *t);
/* Free every entry and the ring. */
void repl_tail_deinit(struct repl_tail *t);
/* Index of the last entry, 0 when empty. */
uint64_t repl_tail_last(const struct repl_tail *t);
/* The entry at index, or NULL. Valid until the next change of t. */
const struct repl_tail_entry *repl_tail_at(const struct repl_tail *t, uint64_t index);
/* Append the entry at index (payload: heap, now owned by t). An index
 * that does not follow the last one replaces the entries from there on
 * (an index inside the range) or all of them (a gap). */
void repl_tail_push(struct repl_tail *t, uint64_t index, uint64_t epoch, int kind,
		    uint8_t *payload, size_t len);
/* Drop the entries at index and after. */
void repl_tail_drop_from(struct repl_tail *t, uint64_t index);
void repl_tail_clear(struct repl_tail *t);
/* Drop entries from the front, none past upto: those under keep_from (no
 * longer needed), and more while over max_entries or max_bytes. */
void repl_tail_trim(struct repl_tail *t, uint64_t upto, uint64_t keep_from, size_t max_entries,
		    size_t max_bytes);

/* ---- repl-writer.c: the writer thread ------------------------------- */

/* One job at a time, run on its own thread: the owner's apply barrier (if
 * any) then a log batch (if any). notify(arg) runs on the loop (an
 * eventfd it polls) after a part finished; repl_writer_poll() then hands over
 * what finished. delay_ms: tests only, a sleep before each log write. */
typedef struct repl_writer repl_writer;
struct repl_writer_result {
	int barrier_done, barrier_status;   /* status 0 or -1 */
	int log_done, log_status;
	uint64_t log_us;                     /* the log write's duration */
	int idle;                            /* the job is over: submit again */
};
/* 0, or -1 (no thread; nothing to free). */
int repl_writer_create(uv_loop_t *loop, uint32_t delay_ms, void (*notify)(void *arg), void *arg,
		       repl_writer **w_r);
/* A job is submitted and not yet wholly polled. Loop thread. */
int repl_writer_busy(const repl_writer *w);
/* Start a job (not while busy). batch (may be NULL) is the thread's from
 * now on and freed once written; barrier (may be NULL) runs on the thread
 * before it. Loop thread. */
void repl_writer_submit(repl_writer *w, repl_log_batch *batch, int sync,
			int (*barrier)(void *arg), void *barrier_arg);
/* What finished since the last poll (wait = 1: block the calling loop
 * until the whole job finished). Each part is reported once. */
void repl_writer_poll(repl_writer *w, int wait, struct repl_writer_result *r);
/* Stop the thread after the job in flight (its results are dropped: poll
 * with wait first), close the poll handle and the eventfd (freed from its close_cb: run
 * the loop once more). NULLs *w. */
void repl_writer_destroy(repl_writer **w);

#endif
