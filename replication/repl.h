/* repl.h: the per-partition replicated log (public contract).
 *
 * Think "Raft log replication without elections, with the epoch as the term".
 * Leadership is managed outside: the partition map in etcd says who is the
 * primary of a partition and at which epoch, and the owner (store node,
 * queue node) calls repl_partition_set_role() whenever the map changes.
 * There is no election here and this library never talks to etcd.
 *
 * One repl_node per process: one LevelDB directory holds the logs of all of
 * the process's partitions, one RPC server answers the service "repl" (its
 * own listening socket with repl_node_listen(), or registered on the
 * owner's rpc_server with repl_node_attach(): one port then serves both,
 * the HELLO picks the service), and one rpc_pool reaches the peers.
 *
 * The primary appends proposals to its log (all proposals of one loop turn
 * in ONE sync LevelDB write, shared with every other partition of the node
 * and every AppendEntries the node took in that turn: group commit; the
 * turns that pass while a write is in flight go in the next one), ships
 * them to every replica in one AppendEntries RPC, and reports a proposal
 * committed under the ISR rule: once EVERY in-sync member of the replica set (itself included) has
 * it durably, and only while the in-sync members are at least a majority
 * of the whole set (n/2+1). Members outside the in-sync set are shipped the
 * same entries (they catch up) but are never waited for. So an acknowledged
 * write is on every in-sync replica (promoting any alive in-sync replica
 * keeps it) and on a majority. Committed entries are
 * applied, in index order, through on_apply on every member. Replicas refuse
 * anything from an epoch lower than theirs (fencing), so a primary that the
 * map has replaced can never again gather a majority once a majority has
 * seen the new epoch; the primary that gets such a refusal steps down.
 * See docs/replication.md for the invariants.
 *
 * Threading: everything here runs on the one uv loop given to
 * repl_node_create(), and every callback runs on it, never from inside the
 * call that caused it, with two exceptions, like rpc_client_destroy():
 * repl_partition_close()/repl_node_destroy() and a repl_partition_set_role()
 * that ends this node's primacy fail the pending proposals from inside the
 * call. Callbacks may propose, but may not close the partition or destroy
 * the node. The exception is repl_settings.apply_barrier, which runs on
 * the node's writer thread.
 *
 * The writer thread: each node has one (unless
 * repl_settings.write_on_loop). The group's sync LevelDB write
 * (and the owner's apply barrier) run there, one job at a time, so an
 * fsync does not stall the loop; the completions (an entry counted durable,
 * a replica's reply, applies, the proposers' callbacks) run on the loop
 * once the write is done, in the group's order. A partition's log state
 * (repl_status.last_index, what is shipped and applied) moves only then.
 * A few calls wait, blocking the loop, for the write in flight when it
 * holds a batch of their partition, since nothing else may write that
 * partition's state meanwhile: repl_partition_set_role(),
 * repl_partition_close(), repl_partition_compact(), an AppendEntries or
 * InstallSnapshot for a partition being written, and repl_node_destroy()
 * (which then joins the thread). Counted in repl_node_counters.loop_waits.
 * Such a call runs the completions of the write it waited for (the
 * callbacks of any partition in it) from inside the call, as it ran the
 * turn's group before the writer thread existed.
 * Rare sync writes stay on the loop: a new epoch and a new primary's
 * BARRIER (repl_partition_set_role), an adopted epoch and the end of a
 * snapshot install.
 *
 * Compaction and snapshots: when the owner implements the snapshot
 * callbacks (struct repl_snapshot_callbacks), every member (primary and replicas)
 * deletes applied entries beyond the keep bounds (repl_settings
 * log_keep_entries / log_keep_bytes), remembering the last deleted one as
 * the log's base. It runs from the heartbeat timer, never from a proposal
 * or an apply, with hysteresis: once the log is a quarter over a bound it
 * is cut back to the bound in bulk. It reads each entry's epoch and size
 * from a small side record, never the entry's value (a message body); a replica that needs an entry the primary no longer has
 * (a new replica, one that was down too long) is sent a snapshot of the
 * owner's state in chunks (InstallSnapshot), then the log from there.
 * Without snapshot_open the whole log is kept, as before.
 */
#ifndef MAIL_REPL_H
#define MAIL_REPL_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "mail-error.h"
#include "tls.h"

/* Service name in the RPC HELLO. */
#define REPL_SERVICE "repl"

typedef struct repl_node repl_node;
typedef struct repl_partition repl_partition;

/* ---- node ------------------------------------------------------------ */

/* Tunables (0 = default). */
struct repl_settings {
	/* This node's id as it appears in replica lists (required, copied). */
	const char *node_id;
	/* LevelDB directory of every partition log of this node (required,
	 * created if missing). Only one process may open it. */
	const char *dir;
	/* A proposal not committed after this long fails with
	 * MAIL_ERR_UNAVAILABLE. Default 5000, min 10, max 600000. */
	uint32_t propose_timeout_ms;
	/* The primary contacts an idle replica at least this often (commit
	 * index, retries, catch-up). Default 100, min 5, max 10000. */
	uint32_t heartbeat_ms;
	/* Deadline of one AppendEntries RPC. Default 2000, min 10, max 60000. */
	uint32_t rpc_timeout_ms;
	/* Bound on the payload bytes of one AppendEntries (at least one entry
	 * is always sent). Default 1 MiB, min 1 KiB, max 32 MiB. */
	uint32_t batch_max_bytes;
	/* Compaction (only for partitions whose owner has snapshot_open):
	 * once the log holds a quarter more than log_keep_entries entries or
	 * log_keep_bytes payload bytes (the high-water mark), applied entries
	 * are deleted from its front until it holds at most both bounds (the
	 * low-water mark): the log stays between the bounds and 5/4 of them. Entries above the applied index are
	 * never deleted, whatever their number. A replica that falls further
	 * behind than the primary's log reaches is sent a snapshot.
	 * log_keep_entries: default 10000, min 1, max 2^31.
	 * log_keep_bytes: default 64 MiB, min 1, max 2^40. */
	uint64_t log_keep_entries;
	uint64_t log_keep_bytes;
	/* Mutual TLS (lib/daemon-tls.h), both borrowed: they must outlive the
	 * node. peer_tls: the peers are reached over TLS (rpc_pool_set_tls);
	 * NULL = plaintext. server_tls: repl_node_listen() serves TLS
	 * (rpc_server_set_tls); an attached node speaks whatever the owner's
	 * server speaks. */
	tls_client *peer_tls;
	tls_server *server_tls;
	/* With TLS: the roles (proto/rpc.h enum rpc_role bits) whose
	 * certificates may call AppendEntries and InstallSnapshot on this
	 * node: the nodes of its own tier (a store's partitions replicate to
	 * stores only). 0 = store and queue nodes. */
	uint32_t peer_roles;
	/* Optional: the owner's state machine does not sync each apply, and
	 * this makes everything it applied so far durable (0, or -1: logged,
	 * tried again after the next apply). Called after a loop turn's
	 * applies, for every partition of the node at once, ON THE NODE'S
	 * WRITER THREAD (never twice at once; on_apply may run on the loop
	 * meanwhile: it must cover at least every apply that returned before
	 * it started, so it must be thread-safe against on_apply). It runs
	 * on the loop only from repl_partition_close(),
	 * repl_partition_compact() and repl_node_destroy(), with the writer
	 * idle. It runs at most every 50 ms while applies come (with the
	 * next log write, or from the partitions' timers); proposals do not
	 * wait for it (committed means durable in the log of every in-sync
	 * replica, and a restart re-applies from the log what the owner
	 * lost), but no entry applied since the last finished call is
	 * compacted away. */
	int (*apply_barrier)(void *arg);
	void *apply_barrier_arg;
	/* Tests only: the writer thread sleeps this long before each log
	 * write (a slow disk). 0 = none. */
	uint32_t test_write_delay_ms;
	/* 1: no writer thread; the group write and the apply barrier run on
	 * the loop in the check phase, as before the writer thread existed
	 * (an fsync then stalls the loop, but no thread hop is paid: on a
	 * small machine where CPU, not the disk, is the bound, that can be
	 * the faster trade; docs/replication.md "The writer thread").
	 * 0 (default): the writer thread. */
	int write_on_loop;
};

#define REPL_DEFAULT_PROPOSE_TIMEOUT_MS 5000u
#define REPL_DEFAULT_HEARTBEAT_MS 100u
#define REPL_DEFAULT_RPC_TIMEOUT_MS 2000u
#define REPL_DEFAULT_BATCH_MAX_BYTES (1024u * 1024u)
#define REPL_DEFAULT_LOG_KEEP_ENTRIES 10000u
#define REPL_DEFAULT_LOG_KEEP_BYTES (64u * 1024u * 1024u)

/* Open the LevelDB directory and create the node (not listening yet).
 * Returns 0, or -1 with *error_r (static text; details in the log). */
int repl_node_create(uv_loop_t *loop, const struct repl_settings *settings,
		     repl_node **node_r, const char **error_r);
/* Serve the "repl" service on host:port (port 0 = any, reported in
 * *port_r). Returns 0, or -1 with *error_r (static text). */
int repl_node_listen(repl_node *node, const char *host, int port, int *port_r,
		     const char **error_r);
/* Serve the "repl" service on the owner's existing rpc_server instead (one
 * port for "store" and "repl": rpc_server_add_service). Call it instead of
 * repl_node_listen(), once. The owner must destroy that server BEFORE
 * repl_node_destroy() (requests go to the node until then). Returns 0, or
 * -1 with *error_r (static text). */
struct rpc_server;
int repl_node_attach(repl_node *node, struct rpc_server *server, const char **error_r);
/* Close every partition still open (their pending proposals fail with
 * MAIL_ERR_UNAVAILABLE; outcome unknown), the server, the peer clients and
 * the LevelDB directory; free. NULLs *node. Handles close asynchronously:
 * run the loop once more before uv_loop_close(). */
void repl_node_destroy(repl_node **node);

/* Node-wide counters (monotonic). */
struct repl_node_counters {
	uint64_t sync_writes;      /* LevelDB writes with sync=1 */
	uint64_t append_rpcs_out;  /* AppendEntries sent */
	uint64_t append_rpcs_in;   /* AppendEntries served */
	uint64_t snapshot_rpcs_out;   /* InstallSnapshot chunks sent */
	uint64_t snapshot_rpcs_in;    /* InstallSnapshot chunks served */
	/* Bytes of log entry values read back (applying, shipping to
	 * replicas, reading an older entry without a side record); log
	 * compaction and byte counting read none. */
	uint64_t log_value_bytes_read;
	/* The writer thread's group writes (one LevelDB write each, sync
	 * when it holds entries or an epoch), their total and longest
	 * duration in microseconds. */
	uint64_t group_writes;
	uint64_t group_write_us;
	uint64_t group_write_max_us;
	/* Times the loop waited for the write in flight (repl.h Threading):
	 * role changes, closes, a request for a partition being written. */
	uint64_t loop_waits;
};
void repl_node_counters(const repl_node *node, struct repl_node_counters *counters_r);

/* ---- partition ------------------------------------------------------- */

/* Called for every committed DATA entry, in strictly increasing index
 * order, once per index per process lifetime, on the primary and on the
 * replicas (a snapshot install, which replaces the owner's state, starts
 * the sequence again after its index). payload is valid only during the
 * call.
 *
 * Restart contract: after a restart the node re-applies every committed
 * entry above the applied_index given to repl_partition_open(). So:
 *   - store the index you are given ATOMICALLY with the state change it
 *     causes (same LevelDB batch), and pass the stored value back at open;
 *   - make the state machine idempotent per index anyway (skip an index
 *     <= your stored one): that makes any re-delivery harmless.
 * Indexes of BARRIER entries (written by a new primary) are skipped: the
 * index sequence seen by on_apply may have gaps. */
typedef void repl_apply_cb(repl_partition *p, uint64_t index, const uint8_t *payload,
			   size_t len, void *arg);

/* Fired on a replica when its log matches the primary's commit index at
 * the current epoch (at most once per epoch, again after it fell behind:
 * a restart, a log mismatch). The owner then records its progress in etcd
 * (/mail/v1/progress/<role>/<partition>/<node>). */
typedef void repl_caught_up_cb(repl_partition *p, uint32_t partition, uint64_t epoch,
			       void *arg);

struct buf;

/* ---- snapshots (optional: repl_partition_set_snapshot_callbacks) ----
 *
 * The snapshot's bytes are opaque to this library: the owner produces them
 * on the primary and installs them on the replica. All four run on the
 * loop thread; like on_apply they may not close the partition or destroy
 * the node. snapshot_close may run from inside repl_partition_set_role(),
 * repl_partition_close() and repl_node_destroy() (views still open).
 * Memory: a view may be open per replica being caught up at once (each
 * peer has its own transfer); the library holds one chunk at a time.
 *
 * snapshot_open (primary): open a consistent view of the partition's state
 * as of an index, returned in *index_r. The state the owner holds at the
 * moment of the call reflects every entry up to the node's applied index
 * (repl_status.applied_index, BARRIERs included), so a view taken now may
 * report that index. The index must be <= the node's applied index and >=
 * the log's base (repl_status.base): the replica continues from the log
 * after it, so those entries must still be in the log. The library keeps
 * them (compaction stops at the index of any open snapshot) until the
 * transfer ends. A view outside that range is closed and the transfer is
 * tried again a heartbeat later. Returns 0 with *snap_r (owned by the
 * owner until snapshot_close), or -1 (retried a heartbeat later).
 *
 * snapshot_next: append the next chunk, at most max_bytes and at least one
 * byte, to out. Returns 1 chunk appended, 0 done (nothing appended), -1
 * error (the transfer is abandoned and restarted later from a new view).
 *
 * snapshot_close: release the view (after done, an error, a transfer that
 * broke, the primary stepping down or the partition closing).
 *
 * snapshot_install (replica): called for each chunk, in order. first = 1
 * on the first chunk: the owner drops the partition's state and stores
 * applied index 0 in ONE durable batch (a crash mid-install leaves an
 * empty state, never a mix), then takes the chunk. last = 1 on the final
 * call (len may be 0): the owner stores `index` (the snapshot's index, the
 * same on every call) as its applied index durably before returning. A
 * transfer that breaks (timeout, primary change, a restart of either side)
 * starts again with first = 1. After the last call the log continues at
 * index + 1 and on_apply resumes from there (indexes <= index are then
 * never applied again unless another snapshot comes). If the owner's state
 * is dropped but the install does not finish, on_apply may later be called
 * again from index 1, or another snapshot comes: an install is never
 * resumed, so on_apply or a new first = 1 call tells the owner to discard
 * the chunks it kept. While an install runs, this node refuses to become
 * primary (repl_partition_set_role: MAIL_ERR_UNAVAILABLE). Returns 0, or
 * -1 (the chunk is refused; the primary restarts the transfer). */
typedef int repl_snapshot_open_cb(repl_partition *p, uint32_t partition, void *arg,
				  void **snap_r, uint64_t *index_r);
typedef int repl_snapshot_next_cb(void *snap, struct buf *out, size_t max_bytes);
typedef void repl_snapshot_close_cb(void *snap);
typedef int repl_snapshot_install_cb(repl_partition *p, uint32_t partition, void *arg,
				     int first, int last, const uint8_t *chunk, size_t len,
				     uint64_t index);

struct repl_callbacks {
	repl_apply_cb *on_apply;         /* required */
	repl_caught_up_cb *on_caught_up; /* may be NULL */
};

/* A separate struct (not more fields above) so that owners written before
 * snapshots existed still compile cleanly with -Wextra. */
struct repl_snapshot_callbacks {
	repl_snapshot_open_cb *snapshot_open;       /* primary side */
	repl_snapshot_next_cb *snapshot_next;
	repl_snapshot_close_cb *snapshot_close;
	repl_snapshot_install_cb *snapshot_install; /* replica side */
};

/* Open (or create) the log of `partition` on this node, as a replica at
 * its stored epoch until repl_partition_set_role(). applied_index: the
 * highest index the owner's state machine has durably applied (0 for a
 * fresh one); committed entries above it are re-applied soon after (from
 * the loop, not inside this call). If applied_index is below the log's
 * base (the owner lost state the log no longer holds: a crash during a
 * snapshot install, or apply writes that were not durable), the log is
 * emptied (durably, epoch kept) so the primary sends a snapshot or the
 * whole log again: entries are never skipped. cb and arg must outlive the
 * partition. Returns 0, or -1 with *error_r (already open, storage error). */
int repl_partition_open(repl_node *node, uint32_t partition, const struct repl_callbacks *cb,
			void *arg, uint64_t applied_index, repl_partition **p_r,
			const char **error_r);
/* Give the partition the owner's snapshot callbacks (copied; they get the
 * arg given to repl_partition_open). Call it right after
 * repl_partition_open(), in the same loop turn, or never: without it (or
 * with snapshot_open NULL) this partition's log is never compacted and it
 * never sends a snapshot, and without snapshot_install it refuses
 * snapshots (MAIL_ERR_INTERNAL). All four are needed to both send and
 * receive. */
void repl_partition_set_snapshot_callbacks(repl_partition *p,
					   const struct repl_snapshot_callbacks *cb);
/* Stop serving the partition: pending proposals fail with
 * MAIL_ERR_UNAVAILABLE (outcome unknown); its log stays on disk. NULLs *p. */
void repl_partition_close(repl_partition **p);

/* One member of a replica set. Strings are copied. */
struct repl_replica {
	const char *node_id;
	const char *host;   /* IP literal or "localhost" */
	int port;           /* its "repl" service port */
	int in_sync;        /* in the in-sync set: waited for by the commit
			     * rule (the primary counts as in sync always) */
};

/* Apply the partition map: at `epoch` this node is the primary or not, and
 * the replica set is replicas[0..n) (the WHOLE set, this node included,
 * primary first by convention; a majority is n/2+1 of it) with each
 * member's in-sync flag (the commit rule above).
 * - epoch lower than the stored epoch: refused, MAIL_ERR_STALE_EPOCH; so
 *   is primary at the stored epoch once a replica has fenced that epoch
 *   (the map has moved on; wait for the newer map).
 * - a higher epoch is stored durably (sync write) before return.
 * - becoming primary: a BARRIER entry at the new epoch is appended; once it
 *   commits, every entry before it is committed too (Raft's rule: a primary
 *   only counts replicas for entries of its own epoch).
 * - ceasing to be primary: pending proposals fail with MAIL_ERR_NOT_PRIMARY
 *   (outcome unknown, see repl_partition_propose). Staying primary at a
 *   higher epoch (the map changed the in-sync set, say): a new BARRIER is
 *   appended and the pending proposals stay (they commit with it).
 * - same epoch and role: updates the replica set (a node added/removed,
 *   in-sync flags changed).
 * Returns MAIL_OK, MAIL_ERR_STALE_EPOCH, MAIL_ERR_PARAMS (n == 0, or primary
 * and this node not in the set), MAIL_ERR_UNAVAILABLE (primary while a
 * snapshot install is half done: this node's state is incomplete), or
 * MAIL_ERR_INTERNAL (storage). */
int repl_partition_set_role(repl_partition *p, uint64_t epoch, int primary,
			    const struct repl_replica *replicas, size_t n);

/* status: MAIL_OK = committed at index (every in-sync member, a majority
 * of the set, has it durably, and on_apply for index has already run on
 * this node). Any other status means the outcome is UNKNOWN, like a
 * timeout: MAIL_ERR_UNAVAILABLE (an in-sync member did not confirm, or the
 * in-sync members are fewer than a majority, before the deadline; the
 * entry may still commit later, e.g. when a replica returns),
 * MAIL_ERR_NOT_PRIMARY (stepped down meanwhile; the new
 * primary may or may not have the entry). Callers retry at the current
 * primary with an idempotency key in the payload, so a retry of an entry
 * that did commit is recognised by the state machine. index is 0 unless
 * MAIL_OK. */
typedef void repl_propose_cb(int status, uint64_t index, void *arg);

/* Propose payload (copied) for the log. Returns MAIL_OK: accepted, cb will
 * be called exactly once, later, from the loop; or MAIL_ERR_NOT_PRIMARY
 * (this node is not the primary, or stepped down): refused, nothing was
 * written, cb is never called. */
int repl_partition_propose(repl_partition *p, const void *payload, size_t len,
			   repl_propose_cb *cb, void *arg);

enum repl_role { REPL_ROLE_REPLICA = 0, REPL_ROLE_PRIMARY = 1 };

struct repl_peer_status {
	char node_id[64];      /* truncated if longer */
	uint64_t match_index;  /* highest index known durable there */
	int in_flight;         /* an AppendEntries is outstanding */
	int in_sync;           /* counted by the commit rule */
};

#define REPL_STATUS_PEERS_MAX 8

struct repl_status {
	uint32_t partition;
	enum repl_role role;
	uint64_t epoch;
	uint64_t base;             /* first index still in the log - 1 */
	uint64_t last_index;
	uint64_t commit_index;
	uint64_t applied_index;
	/* primary only: index of its BARRIER. Once applied_index reaches it,
	 * the state machine holds every write acknowledged before this
	 * primary took over (serve reads only then). */
	uint64_t epoch_start;
	uint64_t sync_writes;      /* this partition's sync LevelDB writes */
	uint64_t proposals;        /* accepted proposals */
	uint64_t snapshots_sent;       /* transfers completed as primary */
	uint64_t snapshots_installed;  /* installs completed as replica */
	uint64_t compacted_entries;    /* entries deleted by compaction */
	size_t n_peers;            /* primary only: the other members */
	struct repl_peer_status peers[REPL_STATUS_PEERS_MAX];
};
void repl_partition_status(const repl_partition *p, struct repl_status *status_r);

/* Compact now, as far as the keep bounds allow, without waiting for the
 * high-water mark (the loop does it on its own past the mark, a bounded
 * amount per heartbeat): delete the entries from the
 * front of the log that are applied, beyond log_keep_entries /
 * log_keep_bytes, and not needed by an open snapshot; the base moves to the
 * last one deleted, in the same (unsynced) batch. Does nothing without
 * snapshot_open. Returns 1 entries were deleted, 0 nothing to delete, -1
 * storage error (logged). */
int repl_partition_compact(repl_partition *p);

/* ---- log reading (tests, tools) -------------------------------------- */

/* The entry at index: returns 1 with *epoch_r, *kind_r (0 data, 1 barrier)
 * and the payload appended to *payload (a buf from lib/buf.h, may be NULL),
 * 0 when there is none (also at or below the base), -1 on a storage error. */
int repl_partition_entry(repl_partition *p, uint64_t index, uint64_t *epoch_r, int *kind_r,
			 struct buf *payload);

/* Tests only: the next count log writes of the node (each a loop turn's
 * group: proposals, AppendEntries) fail without being written, as a disk
 * that refuses them would. */
void repl_node_test_fail_writes(repl_node *n, unsigned count);

#endif
