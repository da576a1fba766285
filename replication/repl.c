/* repl.c: the replicated log (repl.h): node, partitions, the primary's
 * group commit and replication, the replica's AppendEntries handler.
 *
 * Ordering rules that the code below relies on:
 *  - the primary writes (sync) before it ships: its own durable log counts
 *    as one vote, so its match index is always last_index;
 *  - a replica replies only after its sync write: a success reply means
 *    durable there;
 *  - a higher epoch is made durable before anything is answered under it,
 *    so a replica that restarts still fences the old primary;
 *  - commit only advances over entries of the primary's own epoch (the
 *    BARRIER it wrote when it took over, and later ones); entries of older
 *    epochs commit with them, never by being counted (Raft, section 5.4.2);
 *  - on_apply runs in index order for index <= commit only, then the
 *    proposal callbacks of those indexes fire;
 *  - compaction deletes only entries <= the applied index and <= the index
 *    of every snapshot being sent (the replica continues from the log
 *    after it), and moves the base in the same batch as the deletes;
 *  - a replica that started installing a snapshot (the owner dropped its
 *    state) accepts nothing else until the install ends; if it is
 *    abandoned, the owner's state is treated as empty (applied 0).
 */
#include "repl.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "repl-private.h"
#include "repl.pb-c.h"
#include "rpc.h"
#include "util.h"
#include "xalloc.h"

#define REPL_LOG_SVC "repl"
/* Entries per AppendEntries, besides the byte bound. */
#define REPL_BATCH_MAX_ENTRIES 4096u
/* Entries applied per LevelDB read while catching up the state machine. */
#define REPL_APPLY_CHUNK 256u
/* Entries compacted per heartbeat at most (bounded work per loop turn). */
#define REPL_COMPACT_STEP 4096u
/* Entries whose sizes are read per LevelDB read when counting bytes. */
#define REPL_META_CHUNK 1024u
/* Recent entries kept in memory per partition (repl_tail) beyond those
 * still needed (not applied here, not yet acknowledged by a replica) and
 * those not yet durable here: a replica that lags further is read from
 * the log. */
#define REPL_TAIL_KEEP_ENTRIES 256u
#define REPL_TAIL_KEEP_BYTES (256u * 1024u)
/* Entries of a primary whose write failed, kept to be written again (the
 * replicas may hold them): once more than this wait, it steps down. */
#define REPL_UNWRITTEN_MAX 4096u

struct repl_peer {
	char *node_id;
	char *host;
	int port;
	uint64_t next_index;    /* next entry to send */
	uint64_t match_index;   /* highest index known durable there */
	uint64_t sent_commit;   /* commit index it was last told */
	uint64_t last_sent_ms;
	uint64_t retry_at_ms;   /* after a failure: not before */
	int in_flight;
	uint64_t in_flight_call; /* the call in flight (repl_call_ctx.call): only
				  * its reply ends it. A reply to a call made
				  * before this peer was set up again (a role or
				  * map change) must not, or a second call would
				  * go while one is in flight: a snapshot chunk
				  * sent twice with one seq restarted the
				  * replica's install on the next chunk's data */
	int in_sync;            /* counted by the commit rule */
	int down;               /* last call failed (for logging transitions) */
	/* A snapshot being sent (one chunk in flight at most), or snap NULL. */
	void *snap;
	uint64_t snap_index;    /* the snapshot's index and epoch */
	uint64_t snap_epoch;
	uint64_t snap_transfer; /* this transfer's id */
	uint64_t snap_seq;      /* the next chunk's number */
};

struct repl_queued {
	uint8_t *payload;
	size_t len;
	repl_propose_cb *cb;
	void *arg;
};

struct repl_pending {
	uint64_t index;
	uint64_t deadline_ms;
	repl_propose_cb *cb;
	void *arg;
};

struct repl_partition {
	repl_node *node;         /* NULL once closed */
	uint32_t id;
	struct repl_callbacks cb;
	struct repl_snapshot_callbacks scb;   /* all NULL: no snapshots */
	void *arg;
	struct repl_log_state st;
	uint64_t last_epoch;     /* epoch of the entry at st.last_index */
	uint64_t applied;        /* in memory; st.applied_index mirrors it */
	uint64_t epoch_start;    /* primary: index of its BARRIER */
	enum repl_role role;
	size_t n_members;        /* size of the replica set, self included */
	struct repl_peer **peers;
	size_t n_peers;
	struct repl_queued *queued;      /* proposals not yet written */
	size_t n_queued, cap_queued;
	struct repl_pending *pending;    /* written, not committed; FIFO */
	size_t pending_head, n_pending, cap_pending;
	uv_idle_t idle;
	uv_timer_t timer;
	int handles_open;
	int inflight_rpcs;
	int closing;
	/* repl_partition_close() waits for p's write in flight: what that
	 * write completes must not commit nor apply (the owner let go). */
	int close_settling;
	int caught_up;
	int fenced;              /* a replica refused st.epoch: it is over */
	uint64_t log_bytes;      /* payload bytes of entries base+1..last */
	/* The log went over a high-water mark: the heartbeat deletes down to
	 * the keep bounds, then this clears (repl__compact_due). */
	int compacting;
	int compact_more;        /* one more step at the next loop turn */
	/* Replica: a snapshot install started (the owner's state was dropped)
	 * and has not ended. */
	int installing;
	/* Group commit (repl__group_*): queued proposals wait in the node's
	 * flush list; a replica's AppendEntries is in the node's group until
	 * the check phase writes it (its state is not p->st until then). */
	int flush_listed;
	/* Batches of p in the group or in the write in flight (proposals and
	 * AppendEntries): while > 0, p->st is not what the log will hold, so
	 * nothing else writes p's state record (repl__settle first). */
	int group_pending;
	int barrier_listed;      /* applied since the node's last apply barrier */
	int barrier_inflight;    /* in the apply barrier in flight */
	uint64_t barrier_mark;   /* p->applied when that barrier was started */
	/* With an apply barrier: the owner holds entries up to here durably
	 * (the proposals they answer may complete, compaction may delete). */
	uint64_t barrier_done;
	int compact_blocked;     /* a compaction step waited for a write */
	uint64_t inst_transfer;
	uint64_t inst_index;
	uint64_t inst_epoch;
	uint64_t inst_next_seq;
	uint64_t sync_writes;
	uint64_t proposals;
	uint64_t snapshots_sent;
	uint64_t snapshots_installed;
	uint64_t compacted_entries;
	/* The most recent entries, as in the log or being written to it
	 * (repl-private.h). A primary ships from here, as soon as it hands
	 * its proposals to the writer; entries past st.last_index are that
	 * write in flight, or a write that failed, to be written again. */
	struct repl_tail tail;
	repl_partition *next;
};

/* The methods of the "repl" service, and who may call them by default. */
#define REPL__N_METHODS 2
#define REPL__PEER_ROLES_DEFAULT (RPC_ROLE_STORE | RPC_ROLE_QUEUE)

struct repl_node {
	uv_loop_t *loop;
	char *node_id;
	uint32_t propose_timeout_ms;
	uint32_t heartbeat_ms;
	uint32_t rpc_timeout_ms;
	uint32_t batch_max_bytes;
	uint64_t keep_entries;
	uint64_t keep_bytes;
	uint64_t transfer_ids;   /* last snapshot transfer id handed out */
	uint64_t call_ids;       /* last replication call id handed out */
	repl_log *log;
	rpc_server *server;      /* own listener (repl_node_listen), or NULL */
	int attached;            /* served by the owner's server instead */
	rpc_pool *pool;
	tls_server *server_tls;  /* repl_node_listen(): borrowed, or NULL */
	/* repl__methods with this node's peer roles: the server's table, so
	 * it lives as long as the node (which outlives the server). */
	rpc_method methods[REPL__N_METHODS];
	repl_partition *partitions;
	struct repl_node_counters counters;
	/* Group commit across partitions: everything one loop turn writes to
	 * the log for proposals and for AppendEntries, of every partition of
	 * the node, goes in ONE LevelDB write (one fsync) in the loop's check
	 * phase, right after the turn's I/O callbacks (repl__group_commit). */
	struct repl_group_handles *gh;
	repl_log_batch *group;         /* NULL when empty */
	int group_sync;
	struct repl_group_done *group_done;
	size_t n_group_done, cap_group_done;
	/* The writer thread (repl-writer.c) and its job in flight: the group
	 * it writes (w_done: the group's completions) and the partitions
	 * whose applies its barrier covers. At most one job at a time: the
	 * next turns' work gathers in group / flush_list / barrier_list. */
	repl_writer *writer;
	struct repl_group_done *w_done;
	size_t n_w_done;
	repl_partition **w_barrier;
	size_t n_w_barrier;
	repl_partition **flush_list;   /* partitions with queued proposals */
	size_t n_flush, cap_flush;
	/* The owner's apply barrier (repl_settings.apply_barrier), and the
	 * partitions that applied since it last ran: their proposals wait. */
	int (*apply_barrier)(void *arg);
	void *apply_barrier_arg;
	repl_partition **barrier_list;
	size_t n_barrier, cap_barrier;
	uint64_t barrier_last_ms;      /* when the last barrier started */
	unsigned test_fail_writes;     /* repl_node_test_fail_writes() */
};

/* What a write of the group does once written (status 0) or not (-1), in
 * two passes over the group: phase 1 only brings the partition's state in
 * line with the log (no callbacks), phase 2 has the effects (commit,
 * shipping, replies, applies, the proposers' callbacks) and frees ctx. So
 * when any callback runs, every partition's state matches its log. */
typedef void repl_group_done_fn(void *ctx, int status, int phase);
struct repl_group_done {
	repl_group_done_fn *fn;
	void *ctx;
};

/* The node's loop handles, apart so that repl_node_destroy() can free the
 * node at once while they close. */
struct repl_group_handles {
	uv_check_t check;
	uv_idle_t idle;      /* keeps the poll from blocking until check ran */
	int open;
	repl_node *node;     /* NULL once the node is gone */
};

/* One AppendEntries or InstallSnapshot in flight. */
struct repl_call_ctx {
	repl_partition *p;
	char *peer_id;
	uint64_t epoch;
	uint64_t commit;
	uint64_t transfer;   /* InstallSnapshot: transfer id and last flag */
	int last;
	uint64_t call;       /* this call's id (repl_peer.in_flight_call) */
};

static void repl__replicate_all(repl_partition *p);
static void repl__advance_commit(repl_partition *p);
static void repl__compact_continue(repl_partition *p);
static void repl__flush(repl_partition *p);
static void repl__group_check_cb(uv_check_t *h);
static void repl__group_idle_cb(uv_idle_t *h);
static void repl__barrier_run(repl_node *n);

/* ---- group commit ---------------------------------------------------- */

/* Make the check phase run this loop turn: the check handle, and the idle
 * one so that the poll does not block before it. */
static void repl__group_start(repl_node *n)
{
	if (n->gh == NULL)
		return;
	if (!uv_is_active((uv_handle_t *)&n->gh->check))
		uv_check_start(&n->gh->check, repl__group_check_cb);
	if (!uv_is_active((uv_handle_t *)&n->gh->idle))
		uv_idle_start(&n->gh->idle, repl__group_idle_cb);
}

/* Run a written group's completions (both phases) and free the list. */
static void repl__group_done_run(struct repl_group_done *done, size_t n_done, int status)
{
	for (size_t i = 0; i < n_done; i++)
		done[i].fn(done[i].ctx, status, 1);
	for (size_t i = 0; i < n_done; i++)
		done[i].fn(done[i].ctx, status, 2);
	free(done);
}

static void repl__pending_complete(repl_partition *p, uint64_t upto);
static void repl__compact_continue(repl_partition *p);

/* The apply barrier only bounds compaction (the log holds every entry
 * applied since, and a restart re-applies them); proposals do not wait
 * for it. It runs with the next write once this long after the last one
 * (or from the partitions' timers when nothing else is written). */
#define REPL_BARRIER_INTERVAL_MS 50u

static int repl__barrier_due(const repl_node *n)
{
	return n->n_barrier > 0 &&
	       util_now_mono_ms() >= n->barrier_last_ms + REPL_BARRIER_INTERVAL_MS;
}

/* A job is in flight on the writer thread (never without one). */
static int repl__writer_busy(const repl_node *n)
{
	return n->writer != NULL && repl_writer_busy(n->writer);
}

/* Hand over what the writer finished (wait: block the loop until the
 * whole job is done) and run its completions, on the loop. The job's
 * lists leave the node before any completion runs: a completion may
 * start the next job's work (propose) or settle a partition. */
static void repl__writer_collect(repl_node *n, int wait)
{
	struct repl_writer_result r;
	repl_writer_poll(n->writer, wait, &r);
	if (r.barrier_done) {
		repl_partition **list = n->w_barrier;
		size_t count = n->n_w_barrier;
		n->w_barrier = NULL;
		n->n_w_barrier = 0;
		if (r.barrier_status < 0)
			log_event(LOG_ERROR, REPL_LOG_SVC, "event=apply_barrier_failed "
				  "partitions=%zu", count);
		/* A failed barrier still counts (see repl__barrier_run). */
		for (size_t i = 0; i < count; i++) {
			list[i]->barrier_inflight = 0;
			if (list[i]->barrier_mark > list[i]->barrier_done)
				list[i]->barrier_done = list[i]->barrier_mark;
		}
		free(list);
	}
	if (r.log_done) {
		struct repl_group_done *done = n->w_done;
		size_t n_done = n->n_w_done;
		n->w_done = NULL;
		n->n_w_done = 0;
		n->counters.group_writes++;
		n->counters.group_write_us += r.log_us;
		if (r.log_us > n->counters.group_write_max_us)
			n->counters.group_write_max_us = r.log_us;
		if (r.log_us >= 100000u)
			log_event(LOG_WARN, REPL_LOG_SVC, "event=slow_log_write us=%llu entries=%zu",
				  (unsigned long long)r.log_us, n_done);
		repl__group_done_run(done, n_done, r.log_status);
		/* compaction steps that waited for this write */
		for (repl_partition *p = n->partitions; p != NULL; p = p->next)
			if (p->compact_blocked && p->group_pending == 0) {
				p->compact_blocked = 0;
				repl__compact_continue(p);
			}
	}
	if (r.idle && (n->n_flush > 0 || n->group != NULL || n->n_barrier > 0))
		repl__group_start(n);   /* the next job, in this turn's check phase */
}

/* The writer finished a part (its eventfd, on the loop). */
static void repl__writer_notify(void *arg)
{
	repl_node *n = arg;
	repl__writer_collect(n, 0);
}

/* Wait for the job in flight, if any, and run its completions. This
 * blocks the loop: only for what must not overlap a write (a role change,
 * a partition's close, the rare request for a partition whose batch is
 * in flight, the node's end). */
static void repl__writer_drain(repl_node *n)
{
	if (repl__writer_busy(n)) {
		n->counters.loop_waits++;
		repl__writer_collect(n, 1);
	}
}

/* Tests: the turn's group fails as a write that failed would (its
 * completions see -1), without being written. 1 when it did. */
static int repl__group_fail_maybe(repl_node *n)
{
	if (n->test_fail_writes == 0 || n->group == NULL)
		return 0;
	n->test_fail_writes--;
	struct repl_group_done *done = n->group_done;
	size_t n_done = n->n_group_done;
	repl_log_batch_discard(n->group);
	n->group = NULL;
	n->group_sync = 0;
	n->group_done = NULL;
	n->n_group_done = n->cap_group_done = 0;
	log_event(LOG_WARN, REPL_LOG_SVC, "event=test_write_failed batches=%zu", n_done);
	repl__group_done_run(done, n_done, -1);
	return 1;
}

/* Start the next job: the turn's group and apply barrier, on the writer
 * thread. Not while one is in flight. */
static void repl__writer_start(repl_node *n)
{
	if (!repl__writer_busy(n))
		(void)repl__group_fail_maybe(n);
	int barrier = repl__barrier_due(n);
	if (repl__writer_busy(n) || (n->group == NULL && !barrier))
		return;
	repl_log_batch *g = n->group;
	int sync = n->group_sync;
	n->group = NULL;
	n->group_sync = 0;
	n->w_done = n->group_done;
	n->n_w_done = n->n_group_done;
	n->group_done = NULL;
	n->n_group_done = n->cap_group_done = 0;
	if (barrier) {
		n->barrier_last_ms = util_now_mono_ms();
		n->w_barrier = n->barrier_list;
		n->n_w_barrier = n->n_barrier;
		n->barrier_list = NULL;
		n->n_barrier = n->cap_barrier = 0;
	}
	for (size_t i = 0; i < n->n_w_barrier; i++) {
		repl_partition *p = n->w_barrier[i];
		p->barrier_listed = 0;
		p->barrier_inflight = 1;
		p->barrier_mark = p->applied;
	}
	repl_writer_submit(n->writer, g, sync, barrier ? n->apply_barrier : NULL,
			   n->apply_barrier_arg);
}

/* Write the group now, on the loop, after the job in flight (which it
 * waits for), and run its completions (both phases). */
static void repl__group_commit(repl_node *n)
{
	repl__writer_drain(n);
	if (n->group == NULL || repl__group_fail_maybe(n))
		return;
	repl_log_batch *g = n->group;
	int sync = n->group_sync;
	struct repl_group_done *done = n->group_done;
	size_t n_done = n->n_group_done;
	n->group = NULL;
	n->group_sync = 0;
	n->group_done = NULL;
	n->n_group_done = n->cap_group_done = 0;
	int status = repl_log_batch_commit(g, sync) < 0 ? -1 : 0;
	repl__group_done_run(done, n_done, status);
}

/* Add b (freed) to the turn's group; fn(ctx, ...) runs once it is written. */
static void repl__group_add(repl_node *n, repl_log_batch *b, int sync, repl_group_done_fn *fn,
			    void *ctx)
{
	if (n->group == NULL)
		n->group = repl_log_batch_create(n->log, UINT32_MAX);
	repl_log_batch_merge(n->group, b);
	n->group_sync |= sync;
	if (n->n_group_done == n->cap_group_done) {
		n->cap_group_done = n->cap_group_done ? n->cap_group_done * 2 : 16;
		n->group_done = xrealloc(n->group_done, n->cap_group_done * sizeof *n->group_done);
	}
	n->group_done[n->n_group_done++] = (struct repl_group_done){ fn, ctx };
	repl__group_start(n);
}

/* Before anything reads or writes p's log state outside the turn's
 * group: finish the write in flight and write the group (p's batches in
 * them become p->st). Blocks the loop when p has a batch in flight. */
static void repl__settle(repl_partition *p)
{
	if (p->group_pending > 0 && p->node != NULL)
		repl__group_commit(p->node);
}

/* The check phase, after the turn's I/O: every partition's queued
 * proposals go in the group, and the group is written. */
static void repl__group_check_cb(uv_check_t *h)
{
	struct repl_group_handles *gh = h->data;
	repl_node *n = gh->node;
	if (n == NULL)
		return;
	if (repl__writer_busy(n)) {
		/* One job at a time: this turn's work waits in the lists, and
		 * the job's completion starts these handles again. */
		uv_idle_stop(&gh->idle);
		uv_check_stop(h);
		return;
	}
	repl_partition **fl = n->flush_list;
	size_t nf = n->n_flush;
	n->flush_list = NULL;
	n->n_flush = n->cap_flush = 0;
	for (size_t i = 0; i < nf; i++) {
		fl[i]->flush_listed = 0;
		if (!fl[i]->closing)
			repl__flush(fl[i]);
	}
	free(fl);
	if (n->writer == NULL) {
		/* repl_settings.write_on_loop: write here, as before the
		 * writer thread; callbacks may have proposed: they are written
		 * next turn, without the poll blocking first */
		repl__group_commit(n);
		if (repl__barrier_due(n))
			repl__barrier_run(n);
		if (n->n_flush > 0 || n->group != NULL) {
			uv_idle_start(&gh->idle, repl__group_idle_cb);
		} else {
			uv_idle_stop(&gh->idle);
			uv_check_stop(h);
		}
		return;
	}
	repl__writer_start(n);
	/* everything gathered is in the job now; the job's completion starts
	 * the handles again if more came meanwhile */
	uv_idle_stop(&gh->idle);
	uv_check_stop(h);
}

/* Only there so that the poll does not block before the check phase ran
 * (work added in the timer or idle phase); the check stops it. */
static void repl__group_idle_cb(uv_idle_t *h)
{
	(void)h;
}

static void repl__group_handle_close_cb(uv_handle_t *h)
{
	struct repl_group_handles *gh = h->data;
	if (--gh->open == 0)
		free(gh);
}

static void repl__flush_list_add(repl_partition *p)
{
	repl_node *n = p->node;
	if (p->flush_listed || n == NULL)
		return;
	if (n->n_flush == n->cap_flush) {
		n->cap_flush = n->cap_flush ? n->cap_flush * 2 : 16;
		n->flush_list = xrealloc(n->flush_list, n->cap_flush * sizeof *n->flush_list);
	}
	n->flush_list[n->n_flush++] = p;
	p->flush_listed = 1;
	repl__group_start(n);
}

/* p applied entries: the next apply barrier covers them (compaction
 * keeps them in the log until then). */
static void repl__barrier_add(repl_partition *p)
{
	repl_node *n = p->node;
	if (p->barrier_listed || n == NULL)
		return;
	if (n->n_barrier == n->cap_barrier) {
		n->cap_barrier = n->cap_barrier ? n->cap_barrier * 2 : 16;
		n->barrier_list = xrealloc(n->barrier_list, n->cap_barrier * sizeof *n->barrier_list);
	}
	n->barrier_list[n->n_barrier++] = p;
	p->barrier_listed = 1;
	if (repl__barrier_due(n))
		repl__group_start(n);   /* else a later write or timer takes it */
}

/* Run the owner's apply barrier now, on the loop (after the one in
 * flight, which it waits for), for the listed partitions. Where it cannot
 * wait for the writer (a partition's close or compaction, the node's
 * end, the writer-less mode's check phase); the turns' barriers run on
 * the writer thread (repl__writer_start). A failed barrier is logged and
 * still counts: the log holds the entries durably, and a restart
 * re-applies what the owner lost. */
static void repl__barrier_run(repl_node *n)
{
	repl__writer_drain(n);
	if (n->n_barrier == 0)
		return;
	repl_partition **list = n->barrier_list;
	size_t count = n->n_barrier;
	n->barrier_list = NULL;
	n->n_barrier = n->cap_barrier = 0;
	n->barrier_last_ms = util_now_mono_ms();
	if (n->apply_barrier(n->apply_barrier_arg) < 0)
		log_event(LOG_ERROR, REPL_LOG_SVC, "event=apply_barrier_failed partitions=%zu",
			  count);
	for (size_t i = 0; i < count; i++) {
		list[i]->barrier_listed = 0;
		list[i]->barrier_done = list[i]->applied;
	}
	free(list);
}

static uint32_t repl__clamp(uint32_t v, uint32_t def, uint32_t min, uint32_t max)
{
	if (v == 0)
		return def;
	return v < min ? min : v > max ? max : v;
}

static uint64_t repl__clamp64(uint64_t v, uint64_t def, uint64_t min, uint64_t max)
{
	if (v == 0)
		return def;
	return v < min ? min : v > max ? max : v;
}

/* Epoch of the entry at index: the base's and the last entry's are kept
 * in memory, others are read. 0, or -1 (compacted away, storage error). */
static int repl__epoch_at(repl_partition *p, uint64_t index, uint64_t *epoch_r)
{
	const struct repl_tail_entry *te = repl_tail_at(&p->tail, index);
	if (te != NULL && index > p->st.base_index) {
		*epoch_r = te->epoch;
		return 0;
	}
	if (index == p->st.base_index) {
		*epoch_r = p->st.base_epoch;
		return 0;
	}
	if (index == p->st.last_index) {
		*epoch_r = p->last_epoch;
		return 0;
	}
	if (index < p->st.base_index)
		return -1;
	return repl_log_entry_epoch(p->node->log, p->id, index, epoch_r);
}

/* Payload bytes of the entries from..to. 0, or -1 (logged). */
static int repl__log_bytes(repl_log *log, uint32_t partition, uint64_t from, uint64_t to,
			   uint64_t *bytes_r)
{
	struct repl_log_meta *meta = xmalloc(REPL_META_CHUNK * sizeof *meta);
	uint64_t bytes = 0;
	while (from <= to) {
		int got = repl_log_read_meta(log, partition, from, to, REPL_META_CHUNK, meta);
		if (got <= 0) {
			free(meta);
			return -1;
		}
		for (int i = 0; i < got; i++)
			bytes += meta[i].len;
		from += (uint64_t)got;
	}
	free(meta);
	*bytes_r = bytes;
	return 0;
}

/* ---- lifetime -------------------------------------------------------- */

/* Close the snapshot being sent to peer, if any: the next transfer starts
 * again from a new view and chunk 0. */
static void repl__snap_abort(repl_partition *p, struct repl_peer *peer)
{
	if (peer->snap == NULL)
		return;
	p->scb.snapshot_close(peer->snap);
	peer->snap = NULL;
}

static void repl__peer_free(repl_partition *p, struct repl_peer *peer)
{
	repl__snap_abort(p, peer);
	free(peer->node_id);
	free(peer->host);
	free(peer);
}

static void repl__partition_free_maybe(repl_partition *p)
{
	if (!p->closing || p->handles_open > 0 || p->inflight_rpcs > 0)
		return;
	for (size_t i = 0; i < p->n_peers; i++)
		repl__peer_free(p, p->peers[i]);
	free(p->peers);
	free(p->queued);
	free(p->pending);
	repl_tail_deinit(&p->tail);
	free(p);
}

static void repl__handle_close_cb(uv_handle_t *h)
{
	repl_partition *p = h->data;
	p->handles_open--;
	repl__partition_free_maybe(p);
}

/* Fail every queued and pending proposal with status (outcome unknown for
 * the pending ones; the queued ones were never written). */
static void repl__fail_proposals(repl_partition *p, int status)
{
	while (p->n_queued > 0) {
		struct repl_queued q = p->queued[0];
		memmove(p->queued, p->queued + 1, --p->n_queued * sizeof *p->queued);
		free(q.payload);
		q.cb(status, 0, q.arg);
	}
	while (p->n_pending > 0) {
		struct repl_pending e = p->pending[p->pending_head++];
		p->n_pending--;
		e.cb(status, 0, e.arg);
	}
	p->pending_head = 0;
}

/* Entries past st.last_index that no write in flight will make durable
 * (a write of this primary that failed) go: the next primary settles
 * what replicas may hold of them. Not while a batch of p is in flight. */
static void repl__tail_drop_unwritten(repl_partition *p)
{
	if (p->group_pending == 0)
		repl_tail_drop_from(&p->tail, p->st.last_index + 1);
}

/* Drop the recent entries no one needs from memory: applied here and,
 * on a primary, acknowledged by every replica (or over the bounds);
 * never one not yet durable here. */
static void repl__tail_trim(repl_partition *p)
{
	uint64_t keep_from = p->applied + 1;
	if (p->role == REPL_ROLE_PRIMARY)
		for (size_t i = 0; i < p->n_peers; i++)
			if (p->peers[i]->match_index + 1 < keep_from)
				keep_from = p->peers[i]->match_index + 1;
	repl_tail_trim(&p->tail, p->st.last_index, keep_from, REPL_TAIL_KEEP_ENTRIES,
		       REPL_TAIL_KEEP_BYTES);
}

static void repl__step_down(repl_partition *p, const char *reason)
{
	if (p->role != REPL_ROLE_PRIMARY)
		return;
	log_event(LOG_WARN, REPL_LOG_SVC, "event=step_down partition=%u epoch=%llu reason=%s "
		  "last=%llu commit=%llu", p->id, (unsigned long long)p->st.epoch, reason,
		  (unsigned long long)p->st.last_index, (unsigned long long)p->st.commit_index);
	p->role = REPL_ROLE_REPLICA;
	for (size_t i = 0; i < p->n_peers; i++)
		repl__snap_abort(p, p->peers[i]);
	repl__fail_proposals(p, MAIL_ERR_NOT_PRIMARY);
	repl__tail_drop_unwritten(p);
}

/* ---- applying committed entries -------------------------------------- */

/* Complete the proposals up to index upto (applied). */
static void repl__pending_complete(repl_partition *p, uint64_t upto)
{
	if (upto > p->applied)
		upto = p->applied;
	while (p->n_pending > 0 && p->pending[p->pending_head].index <= upto) {
		struct repl_pending e = p->pending[p->pending_head++];
		if (--p->n_pending == 0)
			p->pending_head = 0;
		e.cb(MAIL_OK, e.index, e.arg);
	}
}

/* Apply entries applied+1..commit in order, then record the progress
 * (not synced: losing it only means re-applying, which the contract
 * allows), then complete the proposals they answer. */
static void repl__apply(repl_partition *p)
{
	repl_node *n = p->node;
	struct repl_log_entry ents[REPL_APPLY_CHUNK];
	uint64_t before = p->applied;
	/* Never onto a state an install is replacing, never across a gap. */
	while (!p->closing && !p->close_settling && !p->installing &&
	       p->applied < p->st.commit_index && p->applied >= p->st.base_index) {
		const struct repl_tail_entry *te = repl_tail_at(&p->tail, p->applied + 1);
		if (te != NULL) {
			/* in memory: no read of the log */
			uint64_t index = p->applied + 1;
			if (te->kind == REPL_KIND_DATA)
				p->cb.on_apply(p, index, te->payload, te->len, p->arg);
			p->applied = index;
			continue;
		}
		uint64_t to = p->st.commit_index;
		if (p->tail.n > 0 && p->tail.first > p->applied + 1 && p->tail.first - 1 < to)
			to = p->tail.first - 1;
		int got = repl_log_read(n->log, p->id, p->applied + 1, to, REPL_APPLY_CHUNK,
					SIZE_MAX, ents);
		if (got <= 0)
			break;   /* logged; retried at the next commit */
		for (int i = 0; i < got; i++) {
			uint64_t index = p->applied + 1;
			if (ents[i].kind == REPL_KIND_DATA)
				p->cb.on_apply(p, index, ents[i].payload, ents[i].len, p->arg);
			p->applied = index;
		}
		repl_log_entries_free(ents, (size_t)got);
	}
	if (p->applied != before) {
		p->st.applied_index = p->applied;
		/* Recorded now only when nothing else is being written: with a
		 * batch of p in the group or in flight, its state record would
		 * come after this one, or race it; and any write on the loop
		 * while the writer thread's sync write is in LevelDB waits for
		 * that fsync. Otherwise the next write of p's state records it
		 * (losing it only means re-applying, which the contract allows). */
		if (p->group_pending == 0 && !repl__writer_busy(n)) {
			repl_log_batch *b = repl_log_batch_create(n->log, p->id);
			repl_log_batch_put_state(b, &p->st);
			repl_log_batch_commit(b, 0);
		}
	}
	/* Committed means in the log of every in-sync replica, durably: the
	 * answer need not wait for the owner's barrier, which only bounds
	 * compaction (a restart re-applies from the log what it lost). */
	if (n->apply_barrier != NULL && p->applied != before)
		repl__barrier_add(p);
	if (p->applied != before)
		repl__tail_trim(p);
	repl__pending_complete(p, p->applied);
}

/* ---- primary: group commit ------------------------------------------- */

/* A flush in the turn's group: the proposals it wrote. */
struct repl_flush_ctx {
	repl_partition *p;
	struct repl_log_state st;   /* p->st once written */
	uint64_t bytes;             /* payload bytes of its entries */
	struct repl_queued *queued; /* the proposals after the entries written again */
	size_t n_queued;
	uint64_t deadline;
	int stepped_down;           /* phase 1 found p no longer primary */
};

static void repl__flush_done(void *arg, int status, int phase)
{
	struct repl_flush_ctx *c = arg;
	repl_partition *p = c->p;
	if (phase == 1) {
		p->group_pending--;
		if (status < 0)
			return;
		p->sync_writes++;
		/* Only what this batch changed: commit and applied moved on
		 * while it was written (replies, applies); epoch and base
		 * cannot have (repl__settle, repl__compact_step). */
		p->st.last_index = c->st.last_index;
		p->last_epoch = c->st.epoch;
		uint64_t first = c->st.last_index - c->n_queued + 1;
		p->log_bytes += c->bytes;
		if (p->role != REPL_ROLE_PRIMARY || p->closing || p->st.epoch != c->st.epoch) {
			/* stepped down while it was written: written, outcome
			 * unknown, like the pending ones it failed (phase 2) */
			c->stepped_down = 1;
			return;
		}
		if (p->n_pending + p->pending_head + c->n_queued > p->cap_pending) {
			if (p->n_pending > 0)
				memmove(p->pending, p->pending + p->pending_head,
					p->n_pending * sizeof *p->pending);
			p->pending_head = 0;
			if (p->n_pending + c->n_queued > p->cap_pending) {
				p->cap_pending = (p->n_pending + c->n_queued) * 2;
				p->pending = xrealloc(p->pending,
						      p->cap_pending * sizeof *p->pending);
			}
		}
		for (size_t i = 0; i < c->n_queued; i++) {
			struct repl_pending *e = &p->pending[p->pending_head + p->n_pending++];
			e->index = first + i;
			e->deadline_ms = c->deadline;
			e->cb = c->queued[i].cb;
			e->arg = c->queued[i].arg;
		}
		return;
	}
	if (status < 0 || c->stepped_down) {
		/* Not written here, or written by a primary that stepped down
		 * meanwhile: outcome unknown either way (the entries were
		 * shipped as the write began: a replica may hold them). Not
		 * written: they stay in the tail, past st.last_index, and the
		 * next flush writes them again, at the same indexes, before
		 * anything new (repl__flush), so that this log never holds
		 * other entries there than the replicas may. */
		for (size_t i = 0; i < c->n_queued; i++)
			c->queued[i].cb(status < 0 ? MAIL_ERR_INTERNAL : MAIL_ERR_NOT_PRIMARY, 0,
					c->queued[i].arg);
		if (status < 0) {
			log_event(LOG_ERROR, REPL_LOG_SVC, "event=log_write_failed partition=%u "
				  "unwritten=%llu", p->id,
				  (unsigned long long)(repl_tail_last(&p->tail) - p->st.last_index));
			if (p->role != REPL_ROLE_PRIMARY || p->closing)
				repl__tail_drop_unwritten(p);
			else if (repl_tail_last(&p->tail) > p->st.last_index + REPL_UNWRITTEN_MAX)
				repl__step_down(p, "log_write_failed");
			/* else written again with the next proposals, or from
			 * the timer (repl__timer_cb) */
		}
	} else if (!p->closing && p->role == REPL_ROLE_PRIMARY) {
		repl__advance_commit(p);
		repl__replicate_all(p);
	}
	free(c->queued);
	free(c);
}

/* The queued proposals into the turn's group, as one batch: entries and
 * the state that names them; p->st follows once it is written. */
static void repl__flush(repl_partition *p)
{
	repl_node *n = p->node;
	if (p->role != REPL_ROLE_PRIMARY)
		return;
	if (p->group_pending > 0) {
		/* first = st.last_index + 1 needs p's batch in flight done
		 * (never seen: a primary's only batches are its flushes) */
		repl__flush_list_add(p);
		return;
	}
	/* Entries of a write that failed come first, as they were. */
	uint64_t redo_to = repl_tail_last(&p->tail);
	if (redo_to <= p->st.last_index || repl_tail_at(&p->tail, p->st.last_index + 1) == NULL)
		redo_to = p->st.last_index;
	if (p->n_queued == 0 && redo_to == p->st.last_index)
		return;
	repl_log_batch *b = repl_log_batch_create(n->log, p->id);
	struct repl_flush_ctx *c = xcalloc(1, sizeof *c);
	for (uint64_t i = p->st.last_index + 1; i <= redo_to; i++) {
		const struct repl_tail_entry *te = repl_tail_at(&p->tail, i);
		repl_log_batch_put_entry(b, i, te->epoch, te->kind, te->payload, te->len);
		c->bytes += te->len;
	}
	uint64_t first = redo_to + 1;
	for (size_t i = 0; i < p->n_queued; i++) {
		repl_log_batch_put_entry(b, first + i, p->st.epoch, REPL_KIND_DATA,
					 p->queued[i].payload, p->queued[i].len);
		c->bytes += p->queued[i].len;
		/* the payload is the tail's now */
		repl_tail_push(&p->tail, first + i, p->st.epoch, REPL_KIND_DATA,
			       p->queued[i].payload, p->queued[i].len);
		p->queued[i].payload = NULL;
	}
	c->p = p;
	c->st = p->st;
	c->st.last_index = first + p->n_queued - 1;
	c->queued = p->queued;
	c->n_queued = p->n_queued;
	c->deadline = util_now_mono_ms() + n->propose_timeout_ms;
	p->queued = NULL;
	p->n_queued = p->cap_queued = 0;
	repl_log_batch_put_state(b, &c->st);
	p->group_pending++;
	repl__group_add(n, b, 1, repl__flush_done, c);
	/* Shipped now, while this node writes them: a replica's write runs
	 * beside this one instead of after it. Commit still counts this
	 * node's copy only once it is durable (st.last_index, phase 1). */
	repl__replicate_all(p);
}

static void repl__idle_cb(uv_idle_t *h)
{
	repl_partition *p = h->data;
	uv_idle_stop(h);
	if (p->closing)
		return;
	repl__advance_commit(p);
	if (p->applied < p->st.commit_index)
		repl__apply(p);
	if (p->compact_more) {
		p->compact_more = 0;
		repl__compact_continue(p);
	}
}

static void repl__kick(repl_partition *p)
{
	if (!uv_is_active((uv_handle_t *)&p->idle))
		uv_idle_start(&p->idle, repl__idle_cb);
}

int repl_partition_propose(repl_partition *p, const void *payload, size_t len,
			   repl_propose_cb *cb, void *arg)
{
	if (p->closing || p->role != REPL_ROLE_PRIMARY)
		return MAIL_ERR_NOT_PRIMARY;
	if (p->n_queued == p->cap_queued) {
		p->cap_queued = p->cap_queued ? p->cap_queued * 2 : 64;
		p->queued = xrealloc(p->queued, p->cap_queued * sizeof *p->queued);
	}
	struct repl_queued *q = &p->queued[p->n_queued++];
	q->payload = xmalloc(len + 1);
	if (len > 0)
		memcpy(q->payload, payload, len);
	q->len = len;
	q->cb = cb;
	q->arg = arg;
	p->proposals++;
	repl__flush_list_add(p);
	return MAIL_OK;
}

/* Commit (the ISR rule, repl.h): the highest index durable on EVERY
 * in-sync member (this primary included), provided the in-sync members
 * are a majority of the whole set, and it belongs to this primary's epoch.
 * Members that are not in sync are shipped entries but never waited for. */
static void repl__advance_commit(repl_partition *p)
{
	if (p->role != REPL_ROLE_PRIMARY || p->close_settling)
		return;
	uint64_t c = p->st.last_index;
	size_t n_insync = 1;
	for (size_t i = 0; i < p->n_peers; i++) {
		if (!p->peers[i]->in_sync)
			continue;
		n_insync++;
		if (p->peers[i]->match_index < c)
			c = p->peers[i]->match_index;
	}
	if (n_insync < p->n_members / 2 + 1)
		return;
	if (c <= p->st.commit_index || c < p->epoch_start)
		return;
	p->st.commit_index = c;
	repl__apply(p);
}

/* ---- primary: shipping ----------------------------------------------- */

static struct repl_peer *repl__peer_find(repl_partition *p, const char *id)
{
	for (size_t i = 0; i < p->n_peers; i++)
		if (strcmp(p->peers[i]->node_id, id) == 0)
			return p->peers[i];
	return NULL;
}

static void repl__append_reply_cb(int status, const ProtobufCMessage *msg, void *arg)
{
	struct repl_call_ctx *ctx = arg;
	repl_partition *p = ctx->p;
	p->inflight_rpcs--;
	struct repl_peer *peer = p->closing ? NULL : repl__peer_find(p, ctx->peer_id);
	if (peer != NULL && peer->in_flight_call != ctx->call)
		peer = NULL; /* not the call in flight now: stale */
	if (peer != NULL)
		peer->in_flight = 0;
	if (peer == NULL || p->role != REPL_ROLE_PRIMARY || p->st.epoch != ctx->epoch) {
		free(ctx->peer_id);
		free(ctx);
		repl__partition_free_maybe(p);
		return;
	}
	free(ctx->peer_id);
	uint64_t told = ctx->commit;
	free(ctx);
	const Repl__AppendResponse *resp = (const Repl__AppendResponse *)msg;
	if (status == MAIL_ERR_STALE_EPOCH || (status == MAIL_OK && resp->epoch > p->st.epoch)) {
		p->fenced = 1;
		repl__step_down(p, "stale_epoch");
		return;
	}
	if (status != MAIL_OK) {
		if (!peer->down)
			log_event(LOG_WARN, REPL_LOG_SVC, "event=replica_down partition=%u peer=%s "
				  "status=%s", p->id, peer->node_id, mail_error_info(status)->name);
		peer->down = 1;
		peer->retry_at_ms = util_now_mono_ms() + p->node->heartbeat_ms;
		return;
	}
	if (peer->down)
		log_event(LOG_INFO, REPL_LOG_SVC, "event=replica_up partition=%u peer=%s",
			  p->id, peer->node_id);
	peer->down = 0;
	if (resp->success) {
		if (resp->match_index > peer->match_index)
			peer->match_index = resp->match_index;
		peer->next_index = resp->match_index + 1;
		peer->sent_commit = told;
		repl__advance_commit(p);
		repl__tail_trim(p);
	} else {
		/* Back up: at most to the replica's hint, at least one step. */
		uint64_t next = resp->match_index + 1;
		if (next >= peer->next_index)
			next = peer->next_index > 1 ? peer->next_index - 1 : 1;
		peer->next_index = next;
		peer->sent_commit = 0;
		if (resp->match_index < peer->match_index) {
			/* Its log is shorter than it was: it emptied it because its
			 * owner lost state (repl_partition_open). Count what it has
			 * now, not what it had. */
			log_event(LOG_WARN, REPL_LOG_SVC, "event=replica_log_shrank partition=%u "
				  "peer=%s match=%llu now=%llu", p->id, peer->node_id,
				  (unsigned long long)peer->match_index,
				  (unsigned long long)resp->match_index);
			peer->match_index = resp->match_index;
		}
	}
	repl__replicate_all(p);
}

/* ---- primary: snapshot transfer --------------------------------------- */

static void repl__snapshot_reply_cb(int status, const ProtobufCMessage *msg, void *arg)
{
	struct repl_call_ctx *ctx = arg;
	repl_partition *p = ctx->p;
	p->inflight_rpcs--;
	struct repl_peer *peer = p->closing ? NULL : repl__peer_find(p, ctx->peer_id);
	if (peer != NULL && peer->in_flight_call != ctx->call)
		peer = NULL; /* not the call in flight now: stale */
	if (peer != NULL)
		peer->in_flight = 0;
	free(ctx->peer_id);
	uint64_t transfer = ctx->transfer;
	int last = ctx->last;
	int stale = peer == NULL || p->role != REPL_ROLE_PRIMARY || p->st.epoch != ctx->epoch ||
		    peer->snap == NULL || peer->snap_transfer != transfer;
	free(ctx);
	if (stale) {
		repl__partition_free_maybe(p);
		return;
	}
	const Repl__SnapshotResponse *resp = (const Repl__SnapshotResponse *)msg;
	if (status == MAIL_ERR_STALE_EPOCH || (status == MAIL_OK && resp->epoch > p->st.epoch)) {
		p->fenced = 1;
		repl__step_down(p, "stale_epoch");
		return;
	}
	if (status != MAIL_OK || !resp->success) {
		/* Timeout, a refused chunk, or a replica that lost the transfer
		 * (it restarted): start again from chunk 0 of a new view. */
		log_event(LOG_WARN, REPL_LOG_SVC, "event=snapshot_send_restart partition=%u peer=%s "
			  "index=%llu seq=%llu status=%s", p->id, peer->node_id,
			  (unsigned long long)peer->snap_index, (unsigned long long)peer->snap_seq,
			  status == MAIL_OK ? "out_of_order" : mail_error_info(status)->name);
		repl__snap_abort(p, peer);
		if (status != MAIL_OK) {
			peer->down = 1;
			peer->retry_at_ms = util_now_mono_ms() + p->node->heartbeat_ms;
		}
		repl__replicate_all(p);
		return;
	}
	peer->down = 0;
	if (!last) {
		peer->snap_seq++;
		repl__replicate_all(p);
		return;
	}
	/* Installed: the replica's log now ends at the snapshot's index. */
	uint64_t index = peer->snap_index;
	repl__snap_abort(p, peer);
	p->snapshots_sent++;
	log_event(LOG_INFO, REPL_LOG_SVC, "event=snapshot_sent partition=%u peer=%s index=%llu "
		  "chunks=%llu", p->id, peer->node_id, (unsigned long long)index,
		  (unsigned long long)peer->snap_seq + 1);
	peer->next_index = index + 1;
	peer->match_index = index;   /* its log now ends there */
	peer->sent_commit = 0;
	repl__advance_commit(p);
	repl__replicate_all(p);
}

/* The peer needs entries at or below the base: send (the next chunk of) a
 * snapshot. The rule for the owner's index S (repl.h): base <= S <=
 * applied, so entries S+1.. are still in this log; compaction keeps them
 * while the view is open (repl__compact_step). */
static void repl__snapshot_send(repl_partition *p, struct repl_peer *peer, uint64_t now)
{
	repl_node *n = p->node;
	if (p->scb.snapshot_open == NULL) {
		/* A base from an earlier run of an owner that had snapshots. */
		log_event(LOG_ERROR, REPL_LOG_SVC, "event=snapshot_unsupported partition=%u peer=%s "
			  "next=%llu base=%llu", p->id, peer->node_id,
			  (unsigned long long)peer->next_index, (unsigned long long)p->st.base_index);
		peer->retry_at_ms = now + n->heartbeat_ms * 10;
		return;
	}
	if (peer->snap == NULL) {
		void *snap = NULL;
		uint64_t index = 0, epoch = 0;
		if (p->scb.snapshot_open(p, p->id, p->arg, &snap, &index) < 0) {
			log_event(LOG_WARN, REPL_LOG_SVC, "event=snapshot_open_failed partition=%u",
				  p->id);
			peer->retry_at_ms = now + n->heartbeat_ms;
			return;
		}
		if (index < p->st.base_index || index > p->applied ||
		    repl__epoch_at(p, index, &epoch) < 0) {
			log_event(LOG_WARN, REPL_LOG_SVC, "event=snapshot_unusable partition=%u "
				  "index=%llu base=%llu applied=%llu", p->id,
				  (unsigned long long)index, (unsigned long long)p->st.base_index,
				  (unsigned long long)p->applied);
			p->scb.snapshot_close(snap);
			peer->retry_at_ms = now + n->heartbeat_ms;
			return;
		}
		peer->snap = snap;
		peer->snap_index = index;
		peer->snap_epoch = epoch;
		peer->snap_transfer = ++n->transfer_ids;
		peer->snap_seq = 0;
		log_event(LOG_INFO, REPL_LOG_SVC, "event=snapshot_send partition=%u peer=%s "
			  "index=%llu epoch=%llu next=%llu base=%llu", p->id, peer->node_id,
			  (unsigned long long)index, (unsigned long long)epoch,
			  (unsigned long long)peer->next_index, (unsigned long long)p->st.base_index);
	}
	buf chunk;
	buf_init(&chunk);
	int r = p->scb.snapshot_next(peer->snap, &chunk, n->batch_max_bytes);
	if (r < 0 || (r == 1 && (chunk.len == 0 || chunk.len > n->batch_max_bytes))) {
		log_event(LOG_ERROR, REPL_LOG_SVC, "event=snapshot_next_failed partition=%u peer=%s "
			  "ret=%d len=%zu", p->id, peer->node_id, r, chunk.len);
		buf_deinit(&chunk);
		repl__snap_abort(p, peer);
		peer->retry_at_ms = now + n->heartbeat_ms;
		return;
	}
	Repl__SnapshotRequest req = REPL__SNAPSHOT_REQUEST__INIT;
	req.partition = p->id;
	req.epoch = p->st.epoch;
	req.primary_id = n->node_id;
	req.snapshot_index = peer->snap_index;
	req.snapshot_epoch = peer->snap_epoch;
	req.transfer_id = peer->snap_transfer;
	req.seq = peer->snap_seq;
	req.data.data = chunk.data;
	req.data.len = chunk.len;
	req.last = r == 0;

	struct repl_call_ctx *ctx = xcalloc(1, sizeof *ctx);
	ctx->p = p;
	ctx->peer_id = xstrdup(peer->node_id);
	ctx->epoch = p->st.epoch;
	ctx->transfer = peer->snap_transfer;
	ctx->last = r == 0;
	ctx->call = ++n->call_ids;
	peer->in_flight = 1;
	peer->in_flight_call = ctx->call;
	peer->last_sent_ms = now;
	p->inflight_rpcs++;
	n->counters.snapshot_rpcs_out++;
	rpc_client *c = rpc_pool_get(n->pool, peer->host, peer->port);
	rpc_client_call(c, REPL__METHOD__INSTALL_SNAPSHOT, &req.base,
			&repl__snapshot_response__descriptor, n->rpc_timeout_ms,
			repl__snapshot_reply_cb, ctx);
	buf_deinit(&chunk);
}

static void repl__replicate(repl_partition *p, struct repl_peer *peer, uint64_t now)
{
	repl_node *n = p->node;
	if (peer->in_flight || now < peer->retry_at_ms)
		return;
	if (peer->next_index == 0)
		peer->next_index = 1;
	/* Entries at or below the base are gone: a snapshot. But a peer whose
	 * last call failed is first probed with an empty AppendEntries at the
	 * end of the log, so an unreachable replica does not cost a snapshot
	 * view per heartbeat (and one that matches needs none). */
	int probe = 0;
	if (peer->next_index <= p->st.base_index) {
		if (!peer->down) {
			repl__snapshot_send(p, peer, now);
			return;
		}
		probe = 1;
	}
	/* Entries past st.last_index are in memory (being written here). */
	uint64_t hi = repl_tail_last(&p->tail);
	if (hi < p->st.last_index)
		hi = p->st.last_index;
	int has_entries = !probe && peer->next_index <= hi;
	/* Without entries to ship, a call goes out once a heartbeat; a
	 * commit index the replica has not been told yet goes sooner, but
	 * not at once: it rides on the next entries when more writes come
	 * (the usual case under load: one call per write and replica, not
	 * two), else on a call half a heartbeat after the last one. Nothing
	 * waits for it: a write is committed (and answered) on this node;
	 * the replicas apply a little later, and a new primary commits what
	 * it holds under its own epoch anyway. */
	if (!has_entries && now < peer->last_sent_ms + n->heartbeat_ms &&
	    (peer->sent_commit >= p->st.commit_index ||
	     now < peer->last_sent_ms + n->heartbeat_ms / 2))
		return;
	uint64_t prev = probe ? p->st.last_index : peer->next_index - 1, prev_epoch = 0;
	if (repl__epoch_at(p, prev, &prev_epoch) < 0)
		return;    /* logged */
	size_t n_ents = 0;
	struct repl_log_entry *ents = NULL;
	int from_log = 0;
	if (has_entries && repl_tail_at(&p->tail, peer->next_index) != NULL) {
		/* from memory: the payloads stay the tail's (the request is
		 * packed before anything changes it) */
		uint64_t avail = repl_tail_last(&p->tail) - peer->next_index + 1;
		ents = xmalloc((avail < REPL_BATCH_MAX_ENTRIES ? (size_t)avail
							       : REPL_BATCH_MAX_ENTRIES) * sizeof *ents);
		size_t bytes = 0;
		const struct repl_tail_entry *te;
		while (n_ents < avail && n_ents < REPL_BATCH_MAX_ENTRIES &&
		       (n_ents == 0 || bytes < n->batch_max_bytes) &&
		       (te = repl_tail_at(&p->tail, peer->next_index + n_ents)) != NULL) {
			ents[n_ents++] = (struct repl_log_entry){ te->epoch, te->kind, te->payload,
								  te->len };
			bytes += te->len;
		}
	} else if (has_entries && peer->next_index <= p->st.last_index) {
		uint64_t to = p->st.last_index;
		if (p->tail.n > 0 && p->tail.first > peer->next_index && p->tail.first - 1 < to)
			to = p->tail.first - 1;   /* the rest from memory, next time */
		ents = xmalloc(REPL_BATCH_MAX_ENTRIES * sizeof *ents);
		int got = repl_log_read(n->log, p->id, peer->next_index, to,
					REPL_BATCH_MAX_ENTRIES, n->batch_max_bytes, ents);
		if (got < 0) {
			free(ents);
			return;
		}
		n_ents = (size_t)got;
		from_log = 1;
	}
	Repl__Entry *pb = xcalloc(n_ents + 1, sizeof *pb);
	Repl__Entry **pbp = xcalloc(n_ents + 1, sizeof *pbp);
	for (size_t i = 0; i < n_ents; i++) {
		repl__entry__init(&pb[i]);
		pb[i].epoch = ents[i].epoch;
		pb[i].kind = ents[i].kind == REPL_KIND_BARRIER ? REPL__ENTRY_KIND__ENTRY_BARRIER
							       : REPL__ENTRY_KIND__ENTRY_DATA;
		pb[i].payload.data = (uint8_t *)ents[i].payload;
		pb[i].payload.len = ents[i].len;
		pbp[i] = &pb[i];
	}
	Repl__AppendRequest req = REPL__APPEND_REQUEST__INIT;
	req.partition = p->id;
	req.epoch = p->st.epoch;
	req.primary_id = n->node_id;
	req.prev_index = prev;
	req.prev_epoch = prev_epoch;
	req.n_entries = n_ents;
	req.entries = pbp;
	req.commit_index = p->st.commit_index;

	struct repl_call_ctx *ctx = xcalloc(1, sizeof *ctx);
	ctx->p = p;
	ctx->peer_id = xstrdup(peer->node_id);
	ctx->epoch = p->st.epoch;
	ctx->commit = p->st.commit_index;
	ctx->call = ++n->call_ids;
	peer->in_flight = 1;
	peer->in_flight_call = ctx->call;
	peer->last_sent_ms = now;
	p->inflight_rpcs++;
	n->counters.append_rpcs_out++;
	rpc_client *c = rpc_pool_get(n->pool, peer->host, peer->port);
	rpc_client_call(c, REPL__METHOD__APPEND_ENTRIES, &req.base, &repl__append_response__descriptor,
			n->rpc_timeout_ms, repl__append_reply_cb, ctx);
	if (from_log)
		repl_log_entries_free(ents, n_ents);
	free(ents);
	free(pb);
	free(pbp);
}

static void repl__replicate_all(repl_partition *p)
{
	if (p->role != REPL_ROLE_PRIMARY || p->closing)
		return;
	uint64_t now = util_now_mono_ms();
	for (size_t i = 0; i < p->n_peers; i++)
		repl__replicate(p, p->peers[i], now);
}

/* ---- compaction ------------------------------------------------------ */

/* Compaction runs with hysteresis: nothing happens until the log holds a
 * quarter more than a keep bound (the high-water mark), then the heartbeat
 * deletes, in batches of at most REPL_COMPACT_STEP, down to the keep
 * bounds themselves (the low-water mark). So a log under a steady stream
 * is trimmed by about keep/4 entries at a time, never one entry per apply,
 * and never from the proposal path. Returns 1 when this partition should
 * be compacted now. force: down to the bounds whenever over them
 * (repl_partition_compact). */
static int repl__compact_due(repl_partition *p, int force)
{
	repl_node *n = p->node;
	uint64_t count = p->st.last_index - p->st.base_index;
	int over = count > n->keep_entries || p->log_bytes > n->keep_bytes;
	if (!over) {
		p->compacting = 0;
		return 0;
	}
	if (force || p->compacting)
		return 1;
	uint64_t slack_e = n->keep_entries / 4 ? n->keep_entries / 4 : 1;
	uint64_t slack_b = n->keep_bytes / 4 ? n->keep_bytes / 4 : 1;
	if (count > n->keep_entries + slack_e || p->log_bytes > n->keep_bytes + slack_b)
		p->compacting = 1;
	return p->compacting;
}

/* Delete up to max_entries entries from the front of the log: applied
 * ones, not needed by a snapshot being sent, while the log is over a keep
 * bound. Sizes and epochs come from the entries' side records
 * (repl-private.h), never from their values. The base moves in the same
 * batch. Not synced: a crash loses either the whole batch (the entries are
 * back, with the old base) or nothing. Returns 1 deleted some, 0 nothing
 * to do, -1 error (logged). */
static int repl__compact_step(repl_partition *p, size_t max_entries, int force)
{
	repl_node *n = p->node;
	if (p->closing || p->scb.snapshot_open == NULL || p->installing)
		return 0;
	if (!repl__compact_due(p, force))
		return 0;
	if (p->group_pending > 0 || repl__writer_busy(n)) {
		/* a batch of p is in the group or being written: its state
		 * record (with the old base) could land after ours. And our
		 * write would wait in LevelDB behind the writer's fsync. The
		 * step runs once the write in flight is done
		 * (repl__writer_collect). */
		p->compact_blocked = 1;
		return 0;
	}
	uint64_t limit = p->applied < p->st.commit_index ? p->applied : p->st.commit_index;
	/* what was applied since the last apply barrier that completed is
	 * not durable in the owner yet: only the log holds it */
	if (n->apply_barrier != NULL && p->barrier_done < limit)
		limit = p->barrier_done;
	for (size_t i = 0; i < p->n_peers; i++)
		if (p->peers[i]->snap != NULL && p->peers[i]->snap_index < limit)
			limit = p->peers[i]->snap_index;
	uint64_t base = p->st.base_index;
	uint64_t count = p->st.last_index - base;
	if (limit <= base)
		return 0;
	uint64_t want = limit - base;
	if (want > max_entries)
		want = max_entries;
	if (p->log_bytes <= n->keep_bytes && count - n->keep_entries < want)
		want = count - n->keep_entries;   /* over by entries only */
	struct repl_log_meta *meta = xmalloc(want * sizeof *meta);
	int got = repl_log_read_meta(n->log, p->id, base + 1, base + want, want, meta);
	if (got <= 0) {
		free(meta);
		return -1;
	}
	uint64_t bytes = p->log_bytes;
	size_t k = 0;
	while (k < (size_t)got && (count > n->keep_entries || bytes > n->keep_bytes)) {
		bytes -= meta[k].len < bytes ? meta[k].len : bytes;
		count--;
		k++;
	}
	uint64_t base_epoch = k > 0 ? meta[k - 1].epoch : 0;
	free(meta);
	if (k == 0)
		return 0;
	struct repl_log_state st = p->st;
	st.base_index = base + k;
	st.base_epoch = base_epoch;
	repl_log_batch *b = repl_log_batch_create(n->log, p->id);
	repl_log_batch_truncate(b, base + 1, st.base_index);
	repl_log_batch_put_state(b, &st);
	if (repl_log_batch_commit(b, 0) < 0)
		return -1;
	p->st = st;
	p->log_bytes = bytes;
	p->compacted_entries += k;
	if (count <= n->keep_entries && bytes <= n->keep_bytes)
		p->compacting = 0;
	log_event(LOG_DEBUG, REPL_LOG_SVC, "event=compact partition=%u base=%llu deleted=%zu "
		  "last=%llu bytes=%llu", p->id, (unsigned long long)st.base_index, k,
		  (unsigned long long)st.last_index, (unsigned long long)bytes);
	return 1;
}

/* One step of compaction; while it makes progress and the log is still
 * above the keep bounds (a stream faster than one step per heartbeat), the
 * next step runs at the next loop turn, between other events, rather than
 * a heartbeat later. A step that is held back (entries not yet applied, a
 * snapshot being sent) waits for the heartbeat. */
static void repl__compact_continue(repl_partition *p)
{
	if (repl__compact_step(p, REPL_COMPACT_STEP, 0) > 0 && p->compacting) {
		p->compact_more = 1;
		repl__kick(p);
	}
}

int repl_partition_compact(repl_partition *p)
{
	int any = 0, r;
	repl__settle(p);
	repl__writer_drain(p->node);
	if (p->barrier_listed)
		repl__barrier_run(p->node);   /* all it applied, durable first */
	while ((r = repl__compact_step(p, REPL_COMPACT_STEP, 1)) > 0)
		any = 1;
	return r < 0 ? -1 : any;
}

/* Compaction (every role), then, on the primary: heartbeats, retries and
 * proposal deadlines. */
static void repl__timer_cb(uv_timer_t *t)
{
	repl_partition *p = t->data;
	if (p->closing)
		return;
	repl__compact_continue(p);
	if (p->node != NULL && repl__barrier_due(p->node))
		repl__group_start(p->node);   /* a barrier nothing else wrote */
	if (p->role != REPL_ROLE_PRIMARY)
		return;
	if (p->group_pending == 0 && repl_tail_last(&p->tail) > p->st.last_index)
		repl__flush_list_add(p);   /* entries of a write that failed */
	uint64_t now = util_now_mono_ms();
	while (p->n_pending > 0 && p->pending[p->pending_head].deadline_ms <= now &&
	       p->role == REPL_ROLE_PRIMARY) {
		struct repl_pending e = p->pending[p->pending_head++];
		if (--p->n_pending == 0)
			p->pending_head = 0;
		log_event(LOG_WARN, REPL_LOG_SVC, "event=propose_timeout partition=%u index=%llu "
			  "commit=%llu", p->id, (unsigned long long)e.index,
			  (unsigned long long)p->st.commit_index);
		e.cb(MAIL_ERR_UNAVAILABLE, 0, e.arg);
	}
	repl__replicate_all(p);
}

/* ---- replica: AppendEntries ------------------------------------------ */

static repl_partition *repl__partition_find(repl_node *n, uint32_t id)
{
	for (repl_partition *p = n->partitions; p != NULL; p = p->next)
		if (p->id == id)
			return p;
	return NULL;
}

/* Empty the log durably and set it to start after `index` (base = last =
 * commit = applied = index, at `epoch`). An install ends with it (index =
 * the snapshot's); an owner whose state is gone gets index 0. 0 or -1. */
static int repl__log_reset(repl_partition *p, uint64_t index, uint64_t epoch)
{
	repl_node *n = p->node;
	struct repl_log_state st = p->st;
	repl_log_batch *b = repl_log_batch_create(n->log, p->id);
	if (st.last_index > st.base_index)
		repl_log_batch_truncate(b, st.base_index + 1, st.last_index);
	st.base_index = index;
	st.base_epoch = epoch;
	st.last_index = index;
	st.commit_index = index;
	st.applied_index = index;
	repl_log_batch_put_state(b, &st);
	if (repl_log_batch_commit(b, 1) < 0)
		return -1;
	p->sync_writes++;
	p->st = st;
	p->last_epoch = epoch;
	p->applied = index;
	p->barrier_done = index;   /* the owner holds it durably (repl.h) */
	p->log_bytes = 0;
	repl_tail_clear(&p->tail);
	p->caught_up = 0;
	return 0;
}

/* The owner's state is empty (applied 0) while the log says otherwise: an
 * install that was abandoned, or an owner that reopened below the base.
 * With the whole log still here (base 0) the entries are simply applied
 * again from 1; otherwise the log is emptied, so the primary sends a
 * snapshot (or its whole log) and no entry is ever skipped. */
static int repl__owner_lost(repl_partition *p, const char *reason)
{
	log_event(LOG_WARN, REPL_LOG_SVC, "event=owner_state_lost partition=%u reason=%s "
		  "base=%llu last=%llu commit=%llu", p->id, reason,
		  (unsigned long long)p->st.base_index, (unsigned long long)p->st.last_index,
		  (unsigned long long)p->st.commit_index);
	p->installing = 0;
	p->caught_up = 0;
	if (p->st.base_index == 0) {
		p->applied = 0;
		p->barrier_done = 0;
		return 0;
	}
	return repl__log_reset(p, 0, 0);
}

/* A request from a primary at epoch is refused (STALE_EPOCH): an older
 * epoch, or this node's own epoch while it is the primary (two primaries
 * at one epoch). AppendEntries and InstallSnapshot alike. */
static int repl__fenced(const repl_partition *p, uint64_t epoch)
{
	return epoch < p->st.epoch || (epoch == p->st.epoch && p->role == REPL_ROLE_PRIMARY);
}

/* An AppendEntries whose batch is in the turn's group. */
struct repl_append_ctx {
	repl_partition *p;
	rpc_call *call;
	Repl__AppendResponse resp;
	struct repl_log_state st;   /* p->st once written */
	uint64_t last_epoch;
	uint64_t bytes;
	uint64_t req_commit;
	int match;
	int sync;
	int pending;                /* counted in p->group_pending */
};

static void repl__append_done(void *arg, int status, int phase)
{
	struct repl_append_ctx *c = arg;
	repl_partition *p = c->p;
	if (phase == 1) {
		if (c->pending) {
			p->group_pending--;
			c->pending = 0;
		}
		if (status < 0)
			return;
		if (c->sync)
			p->sync_writes++;
		p->st = c->st;
		p->last_epoch = c->last_epoch;
		p->log_bytes = c->bytes;
		return;
	}
	if (status < 0) {
		/* what it had put in the tail was not written */
		if (p->group_pending == 0)
			repl_tail_drop_from(&p->tail, p->st.last_index + 1);
		rpc_call_reply(c->call, MAIL_ERR_INTERNAL, NULL);
		free(c);
		return;
	}
	rpc_call_reply(c->call, MAIL_OK, &c->resp.base);
	if (!p->closing && p->applied < p->st.commit_index)
		repl__apply(p);
	if (!p->closing && c->match && !p->caught_up && c->resp.match_index >= c->req_commit &&
	    p->st.commit_index >= c->req_commit) {
		p->caught_up = 1;
		log_event(LOG_INFO, REPL_LOG_SVC, "event=caught_up partition=%u epoch=%llu "
			  "commit=%llu", p->id, (unsigned long long)p->st.epoch,
			  (unsigned long long)p->st.commit_index);
		if (p->cb.on_caught_up != NULL)
			p->cb.on_caught_up(p, p->id, p->st.epoch, p->arg);
	}
	free(c);
}

static void repl__append_handler(rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	repl_node *n = ctx;
	const Repl__AppendRequest *req = (const Repl__AppendRequest *)msg;
	n->counters.append_rpcs_in++;
	repl_partition *p = repl__partition_find(n, req->partition);
	if (p == NULL) {
		rpc_call_reply(call, MAIL_ERR_NOT_FOUND, NULL);
		return;
	}
	repl__settle(p);
	if (repl__fenced(p, req->epoch)) {
		if (req->epoch == p->st.epoch)
			log_event(LOG_ERROR, REPL_LOG_SVC, "event=two_primaries partition=%u "
				  "epoch=%llu other=%s", p->id, (unsigned long long)req->epoch,
				  req->primary_id);
		rpc_call_reply(call, MAIL_ERR_STALE_EPOCH, NULL);
		return;
	}
	if (p->installing && repl__owner_lost(p, "append_during_install") < 0) {
		rpc_call_reply(call, MAIL_ERR_INTERNAL, NULL);
		return;
	}
	struct repl_log_state st = p->st;
	uint64_t last_epoch = p->last_epoch;
	uint64_t bytes = p->log_bytes;
	int dirty = 0;
	if (req->epoch > st.epoch) {
		repl__step_down(p, "higher_epoch");
		log_event(LOG_INFO, REPL_LOG_SVC, "event=epoch_adopted partition=%u epoch=%llu "
			  "primary=%s", p->id, (unsigned long long)req->epoch, req->primary_id);
		st.epoch = req->epoch;
		p->caught_up = 0;
		p->fenced = 0;
		dirty = 1;
	}
	Repl__AppendResponse resp = REPL__APPEND_RESPONSE__INIT;
	resp.epoch = st.epoch;
	repl_log_batch *b = repl_log_batch_create(n->log, p->id);
	uint64_t prev_epoch = 0;
	int match = 1;
	if (req->prev_index > st.last_index) {
		match = 0;
		resp.match_index = st.last_index;
	} else if (req->prev_index < st.base_index) {
		/* Compacted here, so applied and committed: it matches. */
		prev_epoch = req->prev_epoch;
	} else if (repl__epoch_at(p, req->prev_index, &prev_epoch) < 0) {
		repl_log_batch_discard(b);
		rpc_call_reply(call, MAIL_ERR_INTERNAL, NULL);
		return;
	}
	if (match && prev_epoch != req->prev_epoch) {
		match = 0;
		resp.match_index = req->prev_index - 1;
	}
	uint64_t appended = 0;
	if (match) {
		for (size_t i = 0; i < req->n_entries; i++) {
			const Repl__Entry *e = req->entries[i];
			uint64_t idx = req->prev_index + 1 + i;
			if (idx <= st.base_index)
				continue;    /* committed and compacted here */
			if (idx <= st.last_index) {
				uint64_t have;
				if (repl__epoch_at(p, idx, &have) < 0)
					have = 0;
				if (have == e->epoch)
					continue;
				if (idx <= st.commit_index) {
					log_event(LOG_ERROR, REPL_LOG_SVC, "event=conflict_committed "
						  "partition=%u index=%llu commit=%llu", p->id,
						  (unsigned long long)idx,
						  (unsigned long long)st.commit_index);
					repl_log_batch_discard(b);
					rpc_call_reply(call, MAIL_ERR_INTERNAL, NULL);
					return;
				}
				log_event(LOG_WARN, REPL_LOG_SVC, "event=truncate partition=%u "
					  "from=%llu to=%llu", p->id, (unsigned long long)idx,
					  (unsigned long long)st.last_index);
				uint64_t gone = 0;
				if (repl__log_bytes(n->log, p->id, idx, st.last_index, &gone) < 0) {
					repl_log_batch_discard(b);
					rpc_call_reply(call, MAIL_ERR_INTERNAL, NULL);
					return;
				}
				bytes -= gone < bytes ? gone : bytes;
				repl_log_batch_truncate(b, idx, st.last_index);
				st.last_index = idx - 1;
			}
			int kind = e->kind == REPL__ENTRY_KIND__ENTRY_BARRIER ? REPL_KIND_BARRIER
									     : REPL_KIND_DATA;
			repl_log_batch_put_entry(b, idx, e->epoch, kind, e->payload.data,
						 e->payload.len);
			/* and in memory, for the apply (entries from idx on that
			 * it held are replaced: the truncation above) */
			uint8_t *copy = NULL;
			if (e->payload.len > 0) {
				copy = xmalloc(e->payload.len);
				memcpy(copy, e->payload.data, e->payload.len);
			}
			repl_tail_push(&p->tail, idx, e->epoch, kind, copy, e->payload.len);
			st.last_index = idx;
			last_epoch = e->epoch;
			bytes += e->payload.len;
			appended++;
			dirty = 1;
		}
		resp.success = 1;
		resp.match_index = req->prev_index + req->n_entries;
		if (resp.match_index < st.base_index)
			resp.match_index = st.base_index;
		uint64_t c = req->commit_index < resp.match_index ? req->commit_index
								   : resp.match_index;
		if (c > st.commit_index) {
			st.commit_index = c;
			dirty = 1;
		}
	} else {
		p->caught_up = 0;
	}
	struct repl_append_ctx *c = xcalloc(1, sizeof *c);
	c->p = p;
	c->call = call;
	c->resp = resp;
	c->st = st;
	c->last_epoch = last_epoch;
	c->bytes = bytes;
	c->req_commit = req->commit_index;   /* req is freed by the reply */
	c->match = match;
	if (dirty) {
		repl_log_batch_put_state(b, &st);
		/* Entries and a new epoch must be durable before the reply; a
		 * commit index alone need not be. The turn's group writes them
		 * with the other partitions' (repl__group_commit). */
		c->sync = appended > 0 || st.epoch != p->st.epoch;
		p->group_pending++;
		c->pending = 1;
		repl__group_add(n, b, c->sync, repl__append_done, c);
		return;
	}
	/* nothing to write: no LevelDB write at all (an empty one would
	 * queue behind the writer thread's sync write) */
	repl_log_batch_discard(b);
	repl__append_done(c, 0, 1);
	repl__append_done(c, 0, 2);
}

/* ---- replica: InstallSnapshot ---------------------------------------- */

/* A higher epoch from a primary: stored durably before anything is
 * answered under it. 0 or -1. */
static int repl__adopt_epoch(repl_partition *p, uint64_t epoch, const char *primary_id)
{
	repl__step_down(p, "higher_epoch");
	log_event(LOG_INFO, REPL_LOG_SVC, "event=epoch_adopted partition=%u epoch=%llu "
		  "primary=%s", p->id, (unsigned long long)epoch, primary_id);
	struct repl_log_state st = p->st;
	st.epoch = epoch;
	repl_log_batch *b = repl_log_batch_create(p->node->log, p->id);
	repl_log_batch_put_state(b, &st);
	if (repl_log_batch_commit(b, 1) < 0)
		return -1;
	p->sync_writes++;
	p->st = st;
	p->caught_up = 0;
	p->fenced = 0;
	return 0;
}

static void repl__snapshot_handler(rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	repl_node *n = ctx;
	const Repl__SnapshotRequest *req = (const Repl__SnapshotRequest *)msg;
	n->counters.snapshot_rpcs_in++;
	repl_partition *p = repl__partition_find(n, req->partition);
	if (p == NULL) {
		rpc_call_reply(call, MAIL_ERR_NOT_FOUND, NULL);
		return;
	}
	repl__settle(p);
	/* Fencing exactly as for AppendEntries. */
	if (repl__fenced(p, req->epoch)) {
		log_event(LOG_WARN, REPL_LOG_SVC, "event=snapshot_fenced partition=%u epoch=%llu "
			  "ours=%llu other=%s", p->id, (unsigned long long)req->epoch,
			  (unsigned long long)p->st.epoch, req->primary_id);
		rpc_call_reply(call, MAIL_ERR_STALE_EPOCH, NULL);
		return;
	}
	if (req->epoch > p->st.epoch && repl__adopt_epoch(p, req->epoch, req->primary_id) < 0) {
		rpc_call_reply(call, MAIL_ERR_INTERNAL, NULL);
		return;
	}
	if (p->scb.snapshot_install == NULL) {
		log_event(LOG_ERROR, REPL_LOG_SVC, "event=snapshot_unsupported partition=%u "
			  "primary=%s", p->id, req->primary_id);
		rpc_call_reply(call, MAIL_ERR_INTERNAL, NULL);
		return;
	}
	Repl__SnapshotResponse resp = REPL__SNAPSHOT_RESPONSE__INIT;
	resp.epoch = p->st.epoch;
	if (req->seq == 0) {
		/* A transfer starts (or starts again): the owner drops its state
		 * in the first call, so from here on it is installing. */
		log_event(LOG_INFO, REPL_LOG_SVC, "event=snapshot_install partition=%u index=%llu "
			  "epoch=%llu primary=%s last=%llu applied=%llu", p->id,
			  (unsigned long long)req->snapshot_index,
			  (unsigned long long)req->snapshot_epoch, req->primary_id,
			  (unsigned long long)p->st.last_index, (unsigned long long)p->applied);
		p->installing = 1;
		p->caught_up = 0;
		p->inst_transfer = req->transfer_id;
		p->inst_index = req->snapshot_index;
		p->inst_epoch = req->snapshot_epoch;
		p->inst_next_seq = 0;
	} else if (!p->installing || req->transfer_id != p->inst_transfer ||
		   req->seq != p->inst_next_seq || req->snapshot_index != p->inst_index) {
		/* Not the chunk this install expects (this node restarted, or a
		 * late chunk of an abandoned transfer): ask for a restart. */
		rpc_call_reply(call, MAIL_OK, &resp.base);
		return;
	}
	if (p->scb.snapshot_install(p, p->id, p->arg, req->seq == 0, req->last, req->data.data,
				   req->data.len, p->inst_index) < 0) {
		log_event(LOG_ERROR, REPL_LOG_SVC, "event=snapshot_install_failed partition=%u "
			  "index=%llu seq=%llu", p->id, (unsigned long long)p->inst_index,
			  (unsigned long long)req->seq);
		p->inst_next_seq = UINT64_MAX;   /* only a restart continues */
		rpc_call_reply(call, MAIL_ERR_INTERNAL, NULL);
		return;
	}
	p->inst_next_seq++;
	if (req->last) {
		/* The owner holds the state at inst_index durably: the log now
		 * starts after it (old entries dropped with the new base). */
		if (repl__log_reset(p, p->inst_index, p->inst_epoch) < 0) {
			rpc_call_reply(call, MAIL_ERR_INTERNAL, NULL);
			return;
		}
		p->installing = 0;
		p->snapshots_installed++;
		log_event(LOG_INFO, REPL_LOG_SVC, "event=snapshot_installed partition=%u index=%llu "
			  "chunks=%llu", p->id, (unsigned long long)p->inst_index,
			  (unsigned long long)p->inst_next_seq);
	}
	resp.success = 1;
	rpc_call_reply(call, MAIL_OK, &resp.base);
}

/* With TLS only the partitions' peers replicate: the roles are the node's
 * (repl_settings.peer_roles: the nodes of its own tier), filled in by
 * repl_node_create(). */
static const rpc_method repl__methods[REPL__N_METHODS] = {
	{ REPL__METHOD__APPEND_ENTRIES, "append_entries", &repl__append_request__descriptor,
	  repl__append_handler, REPL__PEER_ROLES_DEFAULT },
	{ REPL__METHOD__INSTALL_SNAPSHOT, "install_snapshot", &repl__snapshot_request__descriptor,
	  repl__snapshot_handler, REPL__PEER_ROLES_DEFAULT },
};

/* ---- roles ----------------------------------------------------------- */

static void repl__peers_clear(repl_partition *p)
{
	for (size_t i = 0; i < p->n_peers; i++)
		repl__peer_free(p, p->peers[i]);
	p->n_peers = 0;
}

int repl_partition_set_role(repl_partition *p, uint64_t epoch, int primary,
			    const struct repl_replica *replicas, size_t n)
{
	repl_node *node = p->node;
	if (p->closing)
		return MAIL_ERR_NOT_FOUND;
	repl__settle(p);
	if (epoch < p->st.epoch || (epoch == p->st.epoch && p->fenced && primary))
		return MAIL_ERR_STALE_EPOCH;
	if (epoch > p->st.epoch || !primary)
		repl__tail_drop_unwritten(p);
	int self_in = 0;
	for (size_t i = 0; i < n; i++)
		if (strcmp(replicas[i].node_id, node->node_id) == 0)
			self_in = 1;
	if (n == 0 || (primary && !self_in))
		return MAIL_ERR_PARAMS;
	if (primary && p->installing)
		return MAIL_ERR_UNAVAILABLE;
	int epoch_changed = epoch > p->st.epoch;
	int was_primary = p->role == REPL_ROLE_PRIMARY;
	if (was_primary && !primary) {
		repl__step_down(p, "set_role");
	} else if (was_primary && epoch_changed) {
		/* Still the primary at a newer epoch: a new BARRIER below; the
		 * pending proposals stay, they are in this log before it and
		 * commit with it. */
		log_event(LOG_INFO, REPL_LOG_SVC, "event=primary_new_epoch partition=%u "
			  "epoch=%llu pending=%zu", p->id, (unsigned long long)epoch,
			  p->n_pending + p->n_queued);
		p->role = REPL_ROLE_REPLICA;
	}
	if (epoch_changed) {
		struct repl_log_state st = p->st;
		st.epoch = epoch;
		repl_log_batch *b = repl_log_batch_create(node->log, p->id);
		repl_log_batch_put_state(b, &st);
		if (repl_log_batch_commit(b, 1) < 0)
			return MAIL_ERR_INTERNAL;
		p->sync_writes++;
		p->st = st;
		p->caught_up = 0;
		p->fenced = 0;
	}
	int become = primary && p->role != REPL_ROLE_PRIMARY;
	/* Rebuild the peer list, keeping what we know of members that stay. */
	struct repl_peer **old = p->peers;
	size_t n_old = p->n_peers;
	p->peers = xcalloc(n, sizeof *p->peers);
	p->n_peers = 0;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(replicas[i].node_id, node->node_id) == 0)
			continue;
		struct repl_peer *peer = NULL;
		for (size_t j = 0; j < n_old && !become; j++)
			if (old[j] != NULL && strcmp(old[j]->node_id, replicas[i].node_id) == 0) {
				peer = old[j];
				old[j] = NULL;
			}
		if (peer == NULL) {
			peer = xcalloc(1, sizeof *peer);
			peer->node_id = xstrdup(replicas[i].node_id);
			peer->next_index = p->st.last_index + 1;
		}
		free(peer->host);
		peer->host = xstrdup(replicas[i].host);
		peer->port = replicas[i].port;
		peer->in_sync = replicas[i].in_sync != 0;
		p->peers[p->n_peers++] = peer;
	}
	for (size_t j = 0; j < n_old; j++)
		if (old[j] != NULL)
			repl__peer_free(p, old[j]);
	free(old);
	p->n_members = n;
	if (!primary) {
		p->role = REPL_ROLE_REPLICA;
		return MAIL_OK;
	}
	if (become) {
		/* The BARRIER: the first entry of this primary's epoch. */
		struct repl_log_state st = p->st;
		st.last_index++;
		repl_log_batch *b = repl_log_batch_create(node->log, p->id);
		repl_log_batch_put_entry(b, st.last_index, st.epoch, REPL_KIND_BARRIER, NULL, 0);
		repl_log_batch_put_state(b, &st);
		if (repl_log_batch_commit(b, 1) < 0)
			return MAIL_ERR_INTERNAL;
		p->sync_writes++;
		p->st = st;
		p->last_epoch = st.epoch;
		p->epoch_start = st.last_index;
		for (size_t i = 0; i < p->n_peers; i++)
			p->peers[i]->next_index = st.last_index;
		p->role = REPL_ROLE_PRIMARY;
		log_event(LOG_INFO, REPL_LOG_SVC, "event=primary partition=%u epoch=%llu "
			  "members=%zu last=%llu commit=%llu", p->id, (unsigned long long)epoch, n,
			  (unsigned long long)st.last_index,
			  (unsigned long long)p->st.commit_index);
	}
	/* An R=1 primary commits at once; from the loop, not from here. */
	repl__kick(p);
	repl__replicate_all(p);
	return MAIL_OK;
}

/* ---- partitions ------------------------------------------------------ */

int repl_partition_open(repl_node *node, uint32_t partition, const struct repl_callbacks *cb,
			void *arg, uint64_t applied_index, repl_partition **p_r,
			const char **error_r)
{
	if (repl__partition_find(node, partition) != NULL) {
		*error_r = "partition already open";
		return -1;
	}
	struct repl_log_state st;
	if (repl_log_state_load(node->log, partition, &st) < 0) {
		*error_r = "cannot read the partition state (see the log)";
		return -1;
	}
	uint64_t last_epoch = st.base_epoch, log_bytes = 0;
	if (st.last_index > st.base_index &&
	    (repl_log_entry_epoch(node->log, partition, st.last_index, &last_epoch) < 0 ||
	     repl__log_bytes(node->log, partition, st.base_index + 1, st.last_index,
			     &log_bytes) < 0)) {
		*error_r = "the partition log is damaged (see the log)";
		return -1;
	}
	repl_partition *p = xcalloc(1, sizeof *p);
	p->node = node;
	p->id = partition;
	p->cb = *cb;
	p->arg = arg;
	p->st = st;
	p->last_epoch = last_epoch;
	p->log_bytes = log_bytes;
	p->applied = applied_index < st.commit_index ? applied_index : st.commit_index;
	p->barrier_done = p->applied;   /* the owner's state as it was opened */
	p->role = REPL_ROLE_REPLICA;
	if (applied_index < st.base_index && repl__owner_lost(p, "applied_below_base") < 0) {
		free(p);
		*error_r = "cannot reset the partition log (see the log)";
		return -1;
	}
	uv_idle_init(node->loop, &p->idle);
	p->idle.data = p;
	uv_timer_init(node->loop, &p->timer);
	p->timer.data = p;
	p->handles_open = 2;
	uv_timer_start(&p->timer, repl__timer_cb, node->heartbeat_ms, node->heartbeat_ms);
	p->next = node->partitions;
	node->partitions = p;
	if (p->applied < st.commit_index)
		repl__kick(p);
	log_event(LOG_INFO, REPL_LOG_SVC, "event=partition_open partition=%u epoch=%llu "
		  "last=%llu commit=%llu applied=%llu", partition, (unsigned long long)st.epoch,
		  (unsigned long long)st.last_index, (unsigned long long)st.commit_index,
		  (unsigned long long)p->applied);
	*p_r = p;
	return 0;
}

void repl_partition_set_snapshot_callbacks(repl_partition *p,
					   const struct repl_snapshot_callbacks *cb)
{
	p->scb = *cb;
}

void repl_partition_close(repl_partition **pp)
{
	repl_partition *p = *pp;
	if (p == NULL)
		return;
	*pp = NULL;
	p->close_settling = 1;
	repl__settle(p);
	repl_node *n = p->node;
	for (size_t i = 0; i < n->n_flush; i++)
		if (n->flush_list[i] == p) {
			memmove(n->flush_list + i, n->flush_list + i + 1,
				(--n->n_flush - i) * sizeof *n->flush_list);
			break;
		}
	p->flush_listed = 0;
	if (p->barrier_listed || p->barrier_inflight)
		repl__barrier_run(n);   /* what it applied becomes durable first */
	for (repl_partition **l = &n->partitions; *l != NULL; l = &(*l)->next)
		if (*l == p) {
			*l = p->next;
			break;
		}
	p->closing = 1;
	p->node = NULL;
	p->role = REPL_ROLE_REPLICA;
	repl__fail_proposals(p, MAIL_ERR_UNAVAILABLE);
	repl__peers_clear(p);
	uv_close((uv_handle_t *)&p->idle, repl__handle_close_cb);
	uv_close((uv_handle_t *)&p->timer, repl__handle_close_cb);
}

void repl_partition_status(const repl_partition *p, struct repl_status *s)
{
	memset(s, 0, sizeof *s);
	s->partition = p->id;
	s->role = p->role;
	s->epoch = p->st.epoch;
	s->base = p->st.base_index;
	s->last_index = p->st.last_index;
	s->commit_index = p->st.commit_index;
	s->applied_index = p->applied;
	s->sync_writes = p->sync_writes;
	s->proposals = p->proposals;
	s->snapshots_sent = p->snapshots_sent;
	s->snapshots_installed = p->snapshots_installed;
	s->compacted_entries = p->compacted_entries;
	if (p->role != REPL_ROLE_PRIMARY)
		return;
	s->epoch_start = p->epoch_start;
	for (size_t i = 0; i < p->n_peers && i < REPL_STATUS_PEERS_MAX; i++) {
		struct repl_peer_status *ps = &s->peers[s->n_peers++];
		snprintf(ps->node_id, sizeof ps->node_id, "%s", p->peers[i]->node_id);
		ps->match_index = p->peers[i]->match_index;
		ps->in_flight = p->peers[i]->in_flight;
		ps->in_sync = p->peers[i]->in_sync;
	}
}

int repl_partition_entry(repl_partition *p, uint64_t index, uint64_t *epoch_r, int *kind_r,
			 struct buf *payload)
{
	if (p->closing)
		return -1;
	return repl_log_entry_get(p->node->log, p->id, index, epoch_r, kind_r, payload);
}

/* ---- node ------------------------------------------------------------ */

int repl_node_create(uv_loop_t *loop, const struct repl_settings *s, repl_node **node_r,
		     const char **error_r)
{
	if (s->node_id == NULL || s->node_id[0] == '\0' || s->dir == NULL) {
		*error_r = "node_id and dir are required";
		return -1;
	}
	repl_node *n = xcalloc(1, sizeof *n);
	if (repl_log_open(s->dir, &n->log, error_r) < 0) {
		free(n);
		return -1;
	}
	n->loop = loop;
	n->node_id = xstrdup(s->node_id);
	n->propose_timeout_ms = repl__clamp(s->propose_timeout_ms,
					    REPL_DEFAULT_PROPOSE_TIMEOUT_MS, 10, 600000);
	n->heartbeat_ms = repl__clamp(s->heartbeat_ms, REPL_DEFAULT_HEARTBEAT_MS, 5, 10000);
	n->rpc_timeout_ms = repl__clamp(s->rpc_timeout_ms, REPL_DEFAULT_RPC_TIMEOUT_MS, 10,
					60000);
	n->batch_max_bytes = repl__clamp(s->batch_max_bytes, REPL_DEFAULT_BATCH_MAX_BYTES,
					 1024, 32u * 1024 * 1024);
	n->keep_entries = repl__clamp64(s->log_keep_entries, REPL_DEFAULT_LOG_KEEP_ENTRIES, 1,
					1ull << 31);
	n->keep_bytes = repl__clamp64(s->log_keep_bytes, REPL_DEFAULT_LOG_KEEP_BYTES, 1,
				      1ull << 40);
	/* Transfer ids differ across restarts of this node, so a late chunk
	 * of an older transfer is never taken for one of a newer. */
	n->transfer_ids = (uint64_t)util_now_wall_ms() << 16;
	n->pool = rpc_pool_create(loop, REPL_SERVICE);
	if (s->peer_tls != NULL)
		rpc_pool_set_tls(n->pool, s->peer_tls);
	n->server_tls = s->server_tls;
	memcpy(n->methods, repl__methods, sizeof n->methods);
	for (size_t i = 0; i < REPL__N_METHODS; i++)
		n->methods[i].roles = s->peer_roles != 0 ? s->peer_roles : REPL__PEER_ROLES_DEFAULT;
	n->apply_barrier = s->apply_barrier;
	n->apply_barrier_arg = s->apply_barrier_arg;
	n->gh = xcalloc(1, sizeof *n->gh);
	n->gh->node = n;
	uv_check_init(loop, &n->gh->check);
	uv_idle_init(loop, &n->gh->idle);
	n->gh->check.data = n->gh;
	n->gh->idle.data = n->gh;
	n->gh->open = 2;
	if (!s->write_on_loop &&
	    repl_writer_create(loop, s->test_write_delay_ms, repl__writer_notify, n,
			       &n->writer) < 0) {
		repl_node *tmp = n;
		repl_node_destroy(&tmp);
		*error_r = "cannot start the log writer thread";
		return -1;
	}
	*node_r = n;
	return 0;
}

int repl_node_listen(repl_node *node, const char *host, int port, int *port_r,
		     const char **error_r)
{
	if (node->server != NULL || node->attached) {
		*error_r = "already serving";
		return -1;
	}
	rpc_server_create(node->loop, REPL_SERVICE, node->methods, REPL__N_METHODS, node,
			  &node->server);
	if (node->server_tls != NULL)
		rpc_server_set_tls(node->server, node->server_tls);
	return rpc_server_listen(node->server, host, port, port_r, error_r);
}

int repl_node_attach(repl_node *node, rpc_server *server, const char **error_r)
{
	if (node->server != NULL || node->attached) {
		*error_r = "already serving";
		return -1;
	}
	if (rpc_server_add_service(server, REPL_SERVICE, node->methods, REPL__N_METHODS,
				   node) < 0) {
		*error_r = "the server already serves \"repl\"";
		return -1;
	}
	node->attached = 1;
	return 0;
}

void repl_node_destroy(repl_node **node)
{
	repl_node *n = *node;
	if (n == NULL)
		return;
	*node = NULL;
	/* Order: the server first (no more requests), then every partition
	 * (they stop shipping), then the pool (its pending calls complete
	 * into the closed partitions, which then free themselves), and the
	 * log last. */
	rpc_server_destroy(&n->server);
	repl__group_commit(n);   /* waits for the write in flight first */
	repl__barrier_run(n);
	while (n->partitions != NULL) {
		repl_partition *p = n->partitions;
		repl_partition_close(&p);
	}
	free(n->flush_list);
	n->flush_list = NULL;
	n->n_flush = 0;
	free(n->barrier_list);
	n->barrier_list = NULL;
	n->n_barrier = 0;
	repl_writer_destroy(&n->writer);   /* idle: drained above */
	n->gh->node = NULL;
	uv_close((uv_handle_t *)&n->gh->check, repl__group_handle_close_cb);
	uv_close((uv_handle_t *)&n->gh->idle, repl__group_handle_close_cb);
	n->gh = NULL;
	rpc_pool_destroy(&n->pool);
	repl_log_close(&n->log);
	free(n->node_id);
	free(n);
}

void repl_node_counters(const repl_node *node, struct repl_node_counters *c)
{
	*c = node->counters;
	c->sync_writes = repl_log_sync_writes(node->log);
	c->log_value_bytes_read = repl_log_value_bytes_read(node->log);
}

void repl_node_test_fail_writes(repl_node *n, unsigned count)
{
	n->test_fail_writes = count;
}
