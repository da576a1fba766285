/* queue-store.h: the queue node's durable message store (bytes on LevelDB).
 *
 * Storage only: this module knows nothing of delivery, retries or time. The
 * scheduler (scheduler.h) never calls it; delivery.c is the one place that
 * joins the two (STYLE.md rule 4).
 *
 * Key schema (every key starts with the schema version byte 0x01; keys with
 * another first byte are skipped with a warning, so a newer layout can be
 * introduced beside this one during a rolling upgrade):
 *
 *   0x01 'm' <queue id>                      -> Queue__QueuedMessage (protobuf)
 *        the message record: envelope (with the body), delivered flags all
 *        false, attempts, next_attempt_at, exactly as given to put.
 *   0x01 'd' <queue id> 0x00 <index u32 BE>  -> "" (empty value)
 *        recipient <index> of <queue id> is done (delivered, or failed
 *        permanently). One small key per recipient, so recording progress
 *        never rewrites the body.
 *   0x01 's' <queue id>                      -> Queue__MessageState (protobuf)
 *        the delivery state (attempts, next attempt, held, each
 *        recipient's last outcome), written by LogEntry.state; beside the
 *        record so that an attempt's outcome never rewrites the body.
 *        queue_store_get fills QueuedMessage.state from it.
 *   0x01 'A' <partition u32 BE>              -> applied index u64 BE
 *        the replicated mode: the last log index of the partition applied
 *        here (queue_store_apply), written in the same batch as the change.
 *
 * Queue ids are 1..QUEUE_ID_MAX (64) chars of [0-9a-zA-Z] (queue-id.h;
 * checked by queue_store_id_valid; every function here requires a valid
 * id), so they never contain 0x00 and "<queue id> 0x00" is an unambiguous
 * prefix.
 *
 * Every write uses sync=true: it has reached the disk (fsync) when the call
 * returns 0, which is what lets the service acknowledge an enqueue.
 *
 * Threading: one thread at a time (the node calls it from the loop thread).
 * Errors: functions return < 0 and set *error_r to static text; the LevelDB
 * detail is logged (svc=queue event=store_error) because it may name paths.
 */
#ifndef MAIL_QUEUE_STORE_H
#define MAIL_QUEUE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "queue-id.h"
#include "queue.pb-c.h"

#define QUEUE_STORE_KEY_VERSION 0x01

typedef struct queue_store queue_store;

/* 1 when id is 1..QUEUE_ID_MAX chars of [0-9a-zA-Z], else 0. */
int queue_store_id_valid(const char *id);

/* Open (creating if missing) the LevelDB directory dir. The directory is
 * locked by LevelDB: a second open of it fails. Returns 0 with *store_r, or
 * -1 with *error_r. */
int queue_store_open(const char *dir, queue_store **store_r, const char **error_r);
/* Close and free. NULLs *store. */
void queue_store_close(queue_store **store);

/* Store msg under msg->envelope->queue_id, durably (sync). Idempotent: when
 * a record with that queue id exists already nothing is written and the
 * stored copy (with its progress) is kept. Returns 0 when written, 1 when it
 * was already there, -1 on error (bad id, no envelope, write failure).
 * msg stays owned by the caller. */
int queue_store_put(queue_store *store, const Queue__QueuedMessage *msg,
		    const char **error_r);

/* Read the record of queue_id. Its delivered array is rebuilt from the
 * per-recipient keys and always has n_delivered == envelope->n_rcpt_to.
 * Returns 1 with *msg_r (free with queue_store_message_free), 0 when there
 * is no such message, -1 on error. */
int queue_store_get(queue_store *store, const char *queue_id, Queue__QueuedMessage **msg_r,
		    const char **error_r);

/* Record durably (sync) that recipient rcpt_index of queue_id is done.
 * Idempotent. Returns 0 or -1. */
int queue_store_mark_delivered(queue_store *store, const char *queue_id, uint32_t rcpt_index,
			       const char **error_r);

/* Delete the record and its recipient keys in one durable (sync) batch.
 * Deleting a missing message is not an error. Returns 0 or -1. */
int queue_store_delete(queue_store *store, const char *queue_id, const char **error_r);

/* Called once per stored message, in queue id order; msg is as from
 * queue_store_get() and is freed when the callback returns. */
typedef void queue_store_load_cb(const Queue__QueuedMessage *msg, void *arg);

/* Visit every stored message (recovery at start). Records that fail to
 * decode are logged and skipped. Returns the number visited, or -1. */
int queue_store_load_all(queue_store *store, queue_store_load_cb *cb, void *arg,
			 const char **error_r);
/* The same, for the messages whose queue id keep(queue_id, arg) accepts;
 * the others are not even decoded (a new leader takes one partition over
 * without reading the bodies of the rest). */
int queue_store_load_if(queue_store *store, int (*keep)(const char *queue_id, void *arg),
			queue_store_load_cb *cb, void *arg, const char **error_r);

/* ---- the replicated mode (queue-node/queue-repl.c) ----
 * Every replica of a queue partition applies the partition's committed log
 * entries (queue.proto LogEntry) in index order. */

/* The stored applied index of partition (0 when none) into *index_r.
 * Returns 0 or -1. */
int queue_store_applied_index(queue_store *store, uint32_t partition, uint64_t *index_r,
			      const char **error_r);
/* Apply entry e at index of partition: put (idempotent by queue id), done
 * (recipient keys), remove, or state (the 's' key, the done keys of its
 * DELIVERED and FAILED recipients, and the removal of the message when no
 * recipient is left pending; nothing for a message no longer stored); a
 * state or remove may come with the put of another message (a DSN), in the
 * same batch. It records index as the partition's applied
 * index, in ONE batch. Not synced: the log is the durable copy and a lost
 * batch is re-applied from it (the index moves with the change). Returns 0
 * applied, 1 nothing to do (index <= the applied index, or a put of a
 * stored queue id), 2 bad entry (no valid queue id: only the index is
 * recorded, *error_r says why), -1 storage error (nothing written). */
int queue_store_apply(queue_store *store, uint32_t partition, uint64_t index,
		      const Queue__LogEntry *e, const char **error_r);

/* The standalone mode's LogEntry.state / remove (with a DSN put), as
 * queue_store_apply does them, in one durable (sync) batch. 0 or -1. */
int queue_store_record(queue_store *store, const char *queue_id, const Queue__MessageState *st,
		       int remove, const Queue__QueuedMessage *dsn, const char **error_r);

/* ---- partition snapshots (replication/repl.h snapshot callbacks) ----
 * A queue id's partition is util_hash64(id) % n_partitions, the same as
 * router_partition_of() (test-queue-store.c checks they agree). A snapshot
 * carries the 'm' and 'd' keys of the partition's messages (lib/kvchunk.h
 * framing, version QUEUE_STORE_SNAPSHOT_VERSION); the applied index goes
 * beside it, never in it. */
#define QUEUE_STORE_SNAPSHOT_VERSION 0x01
typedef struct queue_store_snapshot queue_store_snapshot;

/* A consistent view (LevelDB snapshot) of partition, its applied index in
 * that view into *applied_r. Returns 0 or -1. The view must be closed
 * before the store. */
int queue_store_snapshot_open(queue_store *store, uint32_t partition, uint32_t n_partitions,
			      queue_store_snapshot **snap_r, uint64_t *applied_r,
			      const char **error_r);
/* Append the next chunk (at most max_bytes unless one pair alone is
 * bigger) to out: 1 appended, 0 done (nothing appended), -1 read error. */
int queue_store_snapshot_next(queue_store_snapshot *snap, buf *out, size_t max_bytes);
void queue_store_snapshot_close(queue_store_snapshot **snap);

/* Install: begin drops every key of the partition and its applied index
 * in one sync batch (a crash mid-install leaves it empty at applied 0);
 * chunk checks every pair (an 'm' or 'd' key of a valid queue id of this
 * partition; an 'm' value must decode as that id's message, a 'd' value is
 * empty) and writes them all or, on a bad one, nothing (-1, "bad snapshot
 * chunk"); end stores the applied index (sync). Return 0 or -1. */
int queue_store_snapshot_install_begin(queue_store *store, uint32_t partition,
				       uint32_t n_partitions, const char **error_r);
int queue_store_snapshot_install_chunk(queue_store *store, uint32_t partition,
				       uint32_t n_partitions, const uint8_t *data, size_t len,
				       const char **error_r);
int queue_store_snapshot_install_end(queue_store *store, uint32_t partition, uint64_t applied,
				     const char **error_r);

/* The number of messages stored (every partition this node holds, as
 * primary or replica), by a scan of the message keys: for metrics and
 * tests, O(messages). Returns it, or -1 on a read error. */
long queue_store_count(queue_store *store);

/* Free a message from queue_store_get(); NULLs *msg. */
void queue_store_message_free(Queue__QueuedMessage **msg);

#endif
