/* Integration tests of the replicated log (repl.h): three repl_nodes, each
 * with its own LevelDB directory and RPC server on 127.0.0.1, all in one uv
 * loop. Nodes are "killed" by destroying them and "restarted" by reopening
 * their directory on the same port. The state machine is the list of
 * applied payloads (with their indexes); with fx->snapshots it also
 * implements the snapshot callbacks (the list, serialised), and the tests
 * of compaction and snapshot transfer use it. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "repl.h"
#include "repl.pb-c.h"
#include "rpc.h"
#include "util.h"
#include "xalloc.h"

#define N_NODES 3
#define PART 42u

struct applied {
	uint64_t index;
	char payload[32];
};

struct tnode {
	struct fx *fx;
	int i;
	char id[8];
	char dir[64];
	int port;
	repl_node *node;
	rpc_server *shared;        /* n2: "store" and "repl" on one port */
	repl_partition *p;
	struct applied *applied;
	size_t n_applied, cap_applied;
	int caught_up;             /* on_caught_up calls */
	uint64_t caught_up_epoch;
	/* The owner's applied index: the last on_apply, or the index of the
	 * last snapshot installed; 0 after an install dropped the state. */
	uint64_t owner_applied;
	int no_snap;               /* start without snapshot callbacks */
	uint32_t write_delay_ms;   /* repl_settings.test_write_delay_ms */
	int write_on_loop;         /* repl_settings.write_on_loop */
	/* snapshot install (replica side) */
	buf inst;                  /* the bytes received so far */
	int installing;            /* first chunk taken, last not yet */
	int install_calls;
	int installs_done;
	int installs_abandoned;    /* on_apply came during an install */
	int install_fail_at;       /* refuse this install call (1-based), once */
	int snap_opens;            /* snapshot_open calls (primary side) */
};

struct fx {
	uv_loop_t loop;
	uv_timer_t ticker;         /* keeps uv_run(ONCE) from blocking long */
	struct tnode n[N_NODES];
	uint32_t propose_timeout_ms;
	/* proposals */
	int ok, unavailable, not_primary, other;
	uint64_t last_ok_index;
	int done_target;           /* proposals to wait for */
	int window_left;           /* test_commit_500 */
	int applied_primary;       /* cond_all_applied */
	/* node settings and the snapshot state machine (setup_snap) */
	int snapshots;
	uint64_t keep_entries, keep_bytes;
	uint32_t batch_max_bytes;
	int watch;                 /* cond_install_chunks: node and count */
	int watch_chunks;
	int fence_done, fence_status, fence_success;   /* send_snapshot_chunk */
	int extra_ok;              /* test_group_commit_partitions */
	int barrier_on;            /* nodes start with an apply barrier */
	int barrier_calls[N_NODES];
	uint64_t applied_at_barrier[N_NODES]; /* owner_applied at the last call */
	int caught_node, caught_before;       /* cond_caught_reported */
	int barrier_at_first_ok;   /* node 0's calls when the first proposal completed */
};

static void on_apply(repl_partition *p, uint64_t index, const uint8_t *payload, size_t len,
		     void *arg)
{
	struct tnode *t = arg;
	assert_ptr_equal(p, t->p);
	/* Strictly increasing, once each. */
	assert_true(index > t->owner_applied);
	if (t->installing) {
		/* An install abandoned (repl.h): its partial bytes go; the
		 * state it dropped stays empty, and entries come from 1. */
		assert_int_equal(t->n_applied, 0);
		buf_reset(&t->inst);
		t->installing = 0;
		t->installs_abandoned++;
	}
	if (t->n_applied == t->cap_applied) {
		t->cap_applied = t->cap_applied ? t->cap_applied * 2 : 256;
		t->applied = xrealloc(t->applied, t->cap_applied * sizeof *t->applied);
	}
	struct applied *a = &t->applied[t->n_applied++];
	a->index = index;
	assert_true(len < sizeof a->payload);
	memcpy(a->payload, payload, len);
	a->payload[len] = '\0';
	__atomic_store_n(&t->owner_applied, index, __ATOMIC_SEQ_CST);   /* barrier_cb reads it */
}

static void on_caught_up(repl_partition *p, uint32_t partition, uint64_t epoch, void *arg)
{
	struct tnode *t = arg;
	assert_ptr_equal(p, t->p);
	assert_int_equal(partition, PART);
	t->caught_up++;
	t->caught_up_epoch = epoch;
}

static const struct repl_callbacks callbacks = { on_apply, on_caught_up };

/* ---- the snapshot state machine ------------------------------------- */

/* A snapshot: the applied list serialised as records <index u64 LE>
 * <len u8> <payload>, handed out in chunks. */
struct snap_view {
	uint8_t *data;
	size_t len, off;
};

static int snap_open(repl_partition *p, uint32_t partition, void *arg, void **snap_r,
		     uint64_t *index_r)
{
	struct tnode *t = arg;
	assert_ptr_equal(p, t->p);
	assert_int_equal(partition, PART);
	buf b;
	buf_init(&b);
	for (size_t k = 0; k < t->n_applied; k++) {
		uint8_t hdr[9];
		for (int i = 0; i < 8; i++)
			hdr[i] = (uint8_t)(t->applied[k].index >> (8 * i));
		hdr[8] = (uint8_t)strlen(t->applied[k].payload);
		buf_append(&b, hdr, sizeof hdr);
		buf_append(&b, t->applied[k].payload, hdr[8]);
	}
	struct snap_view *v = xcalloc(1, sizeof *v);
	v->data = buf_steal(&b, &v->len);
	/* The list holds every entry up to the node's applied index now. */
	struct repl_status st;
	repl_partition_status(p, &st);
	*index_r = st.applied_index;
	*snap_r = v;
	t->snap_opens++;
	return 0;
}

static int snap_next(void *snap, struct buf *out, size_t max_bytes)
{
	struct snap_view *v = snap;
	size_t n = v->len - v->off;
	if (n == 0)
		return 0;
	if (n > max_bytes)
		n = max_bytes;
	buf_append(out, v->data + v->off, n);
	v->off += n;
	return 1;
}

static void snap_close(void *snap)
{
	struct snap_view *v = snap;
	free(v->data);
	free(v);
}

static int snap_install(repl_partition *p, uint32_t partition, void *arg, int first, int last,
			const uint8_t *chunk, size_t len, uint64_t index)
{
	struct tnode *t = arg;
	assert_ptr_equal(p, t->p);
	assert_int_equal(partition, PART);
	if (++t->install_calls == t->install_fail_at) {
		t->install_fail_at = 0;
		return -1;
	}
	if (first) {
		/* Drop the state, applied 0: "one durable batch". */
		t->n_applied = 0;
		t->owner_applied = 0;
		buf_reset(&t->inst);
		t->installing = 1;
	}
	assert_true(t->installing);
	buf_append(&t->inst, chunk, len);
	if (!last)
		return 0;
	const uint8_t *d = t->inst.data;
	size_t off = 0;
	while (off < t->inst.len) {
		assert_true(off + 9 <= t->inst.len);
		uint64_t idx = 0;
		for (int i = 7; i >= 0; i--)
			idx = (idx << 8) | d[off + i];
		size_t plen = d[off + 8];
		assert_true(off + 9 + plen <= t->inst.len);
		assert_true(idx <= index);
		if (t->n_applied == t->cap_applied) {
			t->cap_applied = t->cap_applied ? t->cap_applied * 2 : 256;
			t->applied = xrealloc(t->applied, t->cap_applied * sizeof *t->applied);
		}
		struct applied *a = &t->applied[t->n_applied++];
		a->index = idx;
		memcpy(a->payload, d + off + 9, plen);
		a->payload[plen] = '\0';
		off += 9 + plen;
	}
	t->owner_applied = index;
	t->installing = 0;
	t->installs_done++;
	return 0;
}

static const struct repl_snapshot_callbacks snap_callbacks = {
	snap_open, snap_next, snap_close, snap_install
};

static void ticker_cb(uv_timer_t *t)
{
	(void)t;
}

/* Runs on the node's writer thread (repl.h): what it shares with the
 * loop is read and written atomically. */
static int barrier_cb(void *arg)
{
	struct tnode *t = arg;
	__atomic_fetch_add(&t->fx->barrier_calls[t->i], 1, __ATOMIC_SEQ_CST);
	__atomic_store_n(&t->fx->applied_at_barrier[t->i],
			 __atomic_load_n(&t->owner_applied, __ATOMIC_SEQ_CST), __ATOMIC_SEQ_CST);
	return 0;
}

static int barrier_calls(struct fx *fx, int i)
{
	return __atomic_load_n(&fx->barrier_calls[i], __ATOMIC_SEQ_CST);
}

static uint64_t applied_at_barrier(struct fx *fx, int i)
{
	return __atomic_load_n(&fx->applied_at_barrier[i], __ATOMIC_SEQ_CST);
}

static void node_start(struct fx *fx, int i)
{
	struct tnode *t = &fx->n[i];
	struct repl_settings s = {
		.node_id = t->id,
		.dir = t->dir,
		.propose_timeout_ms = fx->propose_timeout_ms,
		.heartbeat_ms = 20,
		.rpc_timeout_ms = 1000,
		.batch_max_bytes = fx->batch_max_bytes,
		.log_keep_entries = fx->keep_entries,
		.log_keep_bytes = fx->keep_bytes,
		.apply_barrier = fx->barrier_on ? barrier_cb : NULL,
		.apply_barrier_arg = t,
		.test_write_delay_ms = t->write_delay_ms,
		.write_on_loop = t->write_on_loop,
	};
	const char *err;
	assert_int_equal(repl_node_create(&fx->loop, &s, &t->node, &err), 0);
	int port = 0;
	int rc = -1;
	if (i == 2) {
		/* Node 2 serves "repl" on its owner's server, which also serves
		 * "store" (no methods here). */
		rpc_server_create(&fx->loop, "store", NULL, 0, NULL, &t->shared);
		assert_int_equal(repl_node_attach(t->node, t->shared, &err), 0);
		assert_int_equal(repl_node_attach(t->node, t->shared, &err), -1);
		assert_int_equal(repl_node_listen(t->node, "127.0.0.1", 0, &port, &err), -1);
	}
	for (int tries = 0; tries < 50 && rc < 0; tries++) {
		if (t->shared != NULL)
			rc = rpc_server_listen(t->shared, "127.0.0.1", t->port, &port, &err);
		else
			rc = repl_node_listen(t->node, "127.0.0.1", t->port, &port, &err);
		if (rc < 0)
			uv_run(&fx->loop, UV_RUN_ONCE);   /* old socket still closing */
	}
	assert_int_equal(rc, 0);
	t->port = port;
	/* The owner's applied index: what on_apply (or an install) recorded
	 * so far. A node stopped mid-install comes back with its state
	 * dropped: applied 0. */
	t->installing = 0;
	assert_int_equal(repl_partition_open(t->node, PART, &callbacks, t, t->owner_applied,
					     &t->p, &err), 0);
	if (fx->snapshots && !t->no_snap)
		repl_partition_set_snapshot_callbacks(t->p, &snap_callbacks);
}

static void node_stop(struct fx *fx, int i)
{
	/* The owner's server goes first (repl.h). */
	rpc_server_destroy(&fx->n[i].shared);
	repl_node_destroy(&fx->n[i].node);
	fx->n[i].p = NULL;
	for (int k = 0; k < 5; k++)
		uv_run(&fx->loop, UV_RUN_NOWAIT);
}

static int setup_fx(void **state, int snapshots)
{
	struct fx *fx = xcalloc(1, sizeof *fx);
	if (snapshots) {
		/* Small bounds: compaction and multi-chunk transfers happen
		 * with a few hundred entries. */
		fx->snapshots = 1;
		fx->keep_entries = 50;
		fx->batch_max_bytes = 1024;
	}
	uv_loop_init(&fx->loop);
	uv_timer_init(&fx->loop, &fx->ticker);
	uv_timer_start(&fx->ticker, ticker_cb, 5, 5);
	fx->propose_timeout_ms = 5000;
	for (int i = 0; i < N_NODES; i++) {
		struct tnode *t = &fx->n[i];
		t->fx = fx;
		t->i = i;
		snprintf(t->id, sizeof t->id, "n%d", i);
		snprintf(t->dir, sizeof t->dir, "/tmp/repl-cluster-XXXXXX");
		assert_non_null(mkdtemp(t->dir));
		buf_init(&t->inst);
		node_start(fx, i);
	}
	*state = fx;
	return 0;
}

static int setup(void **state)
{
	return setup_fx(state, 0);
}

static int setup_snap(void **state)
{
	return setup_fx(state, 1);
}

static int teardown(void **state)
{
	struct fx *fx = *state;
	for (int i = 0; i < N_NODES; i++) {
		if (fx->n[i].node != NULL)
			node_stop(fx, i);
		char cmd[128];
		snprintf(cmd, sizeof cmd, "rm -rf %s", fx->n[i].dir);
		assert_int_equal(system(cmd), 0);
		free(fx->n[i].applied);
		buf_deinit(&fx->n[i].inst);
	}
	uv_close((uv_handle_t *)&fx->ticker, NULL);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&fx->loop), 0);
	free(fx);
	return 0;
}

/* Run the loop until cond(fx) or timeout_ms; returns cond's last value. */
static int run_until(struct fx *fx, int (*cond)(struct fx *), uint64_t timeout_ms)
{
	uint64_t end = util_now_mono_ms() + timeout_ms;
	while (!cond(fx) && util_now_mono_ms() < end)
		uv_run(&fx->loop, UV_RUN_ONCE);
	return cond(fx);
}

/* The replica fx->caught_node reported caught up again (the report waits
 * for a commit index that covers its log: the next call of the primary,
 * entries or the heartbeat's). */
static int cond_caught_reported(struct fx *fx)
{
	return fx->n[fx->caught_node].caught_up > fx->caught_before;
}

static void wait_caught_reported(struct fx *fx, int node, int before)
{
	fx->caught_node = node;
	fx->caught_before = before;
	assert_true(run_until(fx, cond_caught_reported, 5000));
}

static void run_for(struct fx *fx, uint64_t ms)
{
	uint64_t end = util_now_mono_ms() + ms;
	while (util_now_mono_ms() < end)
		uv_run(&fx->loop, UV_RUN_ONCE);
}

/* The whole set; member i is in sync if bit i of insync is set. */
static void members_isr(struct fx *fx, struct repl_replica *r, unsigned insync)
{
	for (int i = 0; i < N_NODES; i++) {
		r[i].node_id = fx->n[i].id;
		r[i].host = "127.0.0.1";
		r[i].port = fx->n[i].port;
		r[i].in_sync = (insync >> i) & 1;
	}
}

static void members(struct fx *fx, struct repl_replica *r)
{
	members_isr(fx, r, 7);
}

/* Node `primary` leads at epoch with in-sync set `insync` (bit mask); the
 * others are told they are replicas (skipping nodes that are down). */
static void set_roles_isr(struct fx *fx, uint64_t epoch, int primary, unsigned insync)
{
	struct repl_replica r[N_NODES];
	members_isr(fx, r, insync);
	for (int i = 0; i < N_NODES; i++)
		if (fx->n[i].p != NULL)
			assert_int_equal(repl_partition_set_role(fx->n[i].p, epoch, i == primary,
								 r, N_NODES), MAIL_OK);
}

static void set_roles(struct fx *fx, uint64_t epoch, int primary)
{
	set_roles_isr(fx, epoch, primary, 7);
}

static void propose_cb(int status, uint64_t index, void *arg)
{
	struct fx *fx = arg;
	if (status == MAIL_OK && fx->ok == 0)
		fx->barrier_at_first_ok = barrier_calls(fx, 0);
	if (status == MAIL_OK && fx->barrier_on)
		/* applied by the owner when it completes (made durable by a
		 * later barrier: the log holds it meanwhile) */
		assert_true(fx->n[0].owner_applied >= index);
	if (status == MAIL_OK) {
		fx->ok++;
		assert_true(index > fx->last_ok_index);   /* completions in order */
		fx->last_ok_index = index;
	} else if (status == MAIL_ERR_UNAVAILABLE) {
		fx->unavailable++;
	} else if (status == MAIL_ERR_NOT_PRIMARY) {
		fx->not_primary++;
	} else {
		fx->other++;
	}
}

static int propose(struct fx *fx, int i, const char *tag, int k)
{
	char payload[32];
	int len = snprintf(payload, sizeof payload, "%s-%d", tag, k);
	return repl_partition_propose(fx->n[i].p, payload, (size_t)len, propose_cb, fx);
}

static int cond_done(struct fx *fx)
{
	return fx->ok + fx->unavailable + fx->not_primary + fx->other >= fx->done_target;
}

static void propose_wait(struct fx *fx, int i, const char *tag, int n, uint64_t timeout_ms)
{
	fx->ok = fx->unavailable = fx->not_primary = fx->other = 0;
	for (int k = 0; k < n; k++)
		assert_int_equal(propose(fx, i, tag, k), MAIL_OK);
	fx->done_target = n;
	assert_true(run_until(fx, cond_done, timeout_ms));
}

static struct repl_status status_of(struct fx *fx, int i)
{
	struct repl_status s;
	repl_partition_status(fx->n[i].p, &s);
	return s;
}

/* Every live node has applied everything up to the primary's commit. */
static int cond_all_applied(struct fx *fx)
{
	uint64_t c = status_of(fx, fx->applied_primary).commit_index;
	for (int i = 0; i < N_NODES; i++)
		if (fx->n[i].p != NULL && status_of(fx, i).applied_index < c)
			return 0;
	return 1;
}

static void wait_all_applied(struct fx *fx, int primary)
{
	fx->applied_primary = primary;
	assert_true(run_until(fx, cond_all_applied, 10000));
}

static void assert_same_applied(struct fx *fx, int a, int b)
{
	struct tnode *x = &fx->n[a], *y = &fx->n[b];
	assert_int_equal(x->n_applied, y->n_applied);
	for (size_t k = 0; k < x->n_applied; k++) {
		assert_int_equal(x->applied[k].index, y->applied[k].index);
		assert_string_equal(x->applied[k].payload, y->applied[k].payload);
	}
}

static void assert_same_log(struct fx *fx, int a, int b)
{
	struct repl_status sa = status_of(fx, a), sb = status_of(fx, b);
	assert_int_equal(sa.last_index, sb.last_index);
	buf pa, pb;
	buf_init(&pa);
	buf_init(&pb);
	for (uint64_t i = 1; i <= sa.last_index; i++) {
		uint64_t ea, eb;
		int ka, kb;
		buf_reset(&pa);
		buf_reset(&pb);
		assert_int_equal(repl_partition_entry(fx->n[a].p, i, &ea, &ka, &pa), 1);
		assert_int_equal(repl_partition_entry(fx->n[b].p, i, &eb, &kb, &pb), 1);
		assert_int_equal(ea, eb);
		assert_int_equal(ka, kb);
		assert_int_equal(pa.len, pb.len);
		if (pa.len > 0)
			assert_memory_equal(pa.data, pb.data, pa.len);
	}
	buf_deinit(&pa);
	buf_deinit(&pb);
}

static int applied_contains(struct tnode *t, const char *payload)
{
	for (size_t k = 0; k < t->n_applied; k++)
		if (strcmp(t->applied[k].payload, payload) == 0)
			return 1;
	return 0;
}

/* ---- tests ----------------------------------------------------------- */

/* 500 proposals, at most 16 in flight: all commit, and all three nodes
 * apply the same entries in the same order. */
static void window_cb(int status, uint64_t index, void *arg);
static void window_propose(struct fx *fx)
{
	char payload[32];
	int k = 500 - fx->window_left--;
	int len = snprintf(payload, sizeof payload, "w-%d", k);
	assert_int_equal(repl_partition_propose(fx->n[0].p, payload, (size_t)len, window_cb, fx),
			 MAIL_OK);
}

static void window_cb(int status, uint64_t index, void *arg)
{
	struct fx *fx = arg;
	propose_cb(status, index, arg);
	if (fx->window_left > 0)
		window_propose(fx);
}

static void test_commit_500(void **state)
{
	struct fx *fx = *state;
	/* Not primary yet: refused at once, nothing written. */
	assert_int_equal(propose(fx, 0, "x", 0), MAIL_ERR_NOT_PRIMARY);
	set_roles(fx, 1, 0);
	fx->window_left = 500;
	for (int k = 0; k < 16; k++)
		window_propose(fx);
	fx->done_target = 500;
	assert_true(run_until(fx, cond_done, 30000));
	assert_int_equal(fx->ok, 500);
	wait_all_applied(fx, 0);
	assert_int_equal(fx->n[0].n_applied, 500);
	for (int k = 0; k < 500; k++) {
		char want[32];
		snprintf(want, sizeof want, "w-%d", k);
		assert_string_equal(fx->n[0].applied[k].payload, want);
	}
	assert_same_applied(fx, 0, 1);
	assert_same_applied(fx, 0, 2);
	assert_same_log(fx, 0, 1);
	assert_same_log(fx, 0, 2);
	struct repl_status s = status_of(fx, 0);
	assert_int_equal(s.role, REPL_ROLE_PRIMARY);
	assert_int_equal(s.epoch, 1);
	assert_int_equal(s.last_index, 501);       /* the barrier + 500 */
	assert_int_equal(s.commit_index, 501);
	assert_int_equal(s.n_peers, 2);
	assert_int_equal(s.peers[0].match_index, 501);
	assert_int_equal(s.peers[1].match_index, 501);
	assert_true(fx->n[1].caught_up >= 1);
	assert_int_equal(fx->n[1].caught_up_epoch, 1);
	/* A replica refuses proposals; a lower epoch is refused. */
	assert_int_equal(propose(fx, 1, "x", 0), MAIL_ERR_NOT_PRIMARY);
	struct repl_replica r[N_NODES];
	members(fx, r);
	assert_int_equal(repl_partition_set_role(fx->n[1].p, 0, 1, r, N_NODES),
			 MAIL_ERR_STALE_EPOCH);
	assert_int_equal(repl_partition_set_role(fx->n[1].p, 1, 1, r + 1, 0), MAIL_ERR_PARAMS);
	assert_int_equal(repl_partition_set_role(fx->n[1].p, 1, 1, r + 2, 1), MAIL_ERR_PARAMS);
}

static int cond_n1_caught_up(struct fx *fx)
{
	return fx->n[1].p != NULL && status_of(fx, 1).applied_index ==
	       status_of(fx, 0).commit_index && status_of(fx, 0).commit_index ==
	       status_of(fx, 0).last_index;
}

static void test_replica_loss(void **state)
{
	struct fx *fx = *state;
	fx->propose_timeout_ms = 300;
	node_stop(fx, 0);
	node_start(fx, 0);          /* with the short proposal deadline */
	set_roles(fx, 1, 0);
	propose_wait(fx, 0, "a", 20, 5000);
	assert_int_equal(fx->ok, 20);

	/* One replica down: while it is still in sync, commits wait for it
	 * (and fail at the deadline); once the map drops it from the in-sync
	 * set, 2 of 3 in sync is a majority and commits resume (the entries
	 * that timed out commit with them). */
	node_stop(fx, 2);
	propose_wait(fx, 0, "w", 2, 5000);
	assert_int_equal(fx->unavailable, 2);
	set_roles_isr(fx, 1, 0, 3);
	propose_wait(fx, 0, "b", 20, 5000);
	assert_int_equal(fx->ok, 20);
	assert_true(applied_contains(&fx->n[0], "w-1"));

	/* The in-sync n1 down too: UNAVAILABLE after the deadline, nothing
	 * applied beyond the commit index. */
	node_stop(fx, 1);
	struct repl_status before = status_of(fx, 0);
	uint64_t t0 = util_now_mono_ms();
	propose_wait(fx, 0, "c", 5, 5000);
	uint64_t waited = util_now_mono_ms() - t0;
	assert_int_equal(fx->unavailable, 5);
	assert_true(waited >= 250);
	struct repl_status s = status_of(fx, 0);
	assert_int_equal(s.commit_index, before.commit_index);
	assert_int_equal(s.applied_index, before.commit_index);
	assert_int_equal(s.last_index, before.last_index + 5);
	assert_false(applied_contains(&fx->n[0], "c-0"));

	/* One comes back on its directory: it catches up, the "unknown"
	 * entries commit after all, and proposals commit again. */
	int caught_before = fx->n[1].caught_up;
	node_start(fx, 1);
	set_roles_isr(fx, 1, 0, 3);
	assert_true(run_until(fx, cond_n1_caught_up, 10000));
	assert_true(applied_contains(&fx->n[0], "c-4"));
	wait_caught_reported(fx, 1, caught_before);
	propose_wait(fx, 0, "d", 20, 5000);
	assert_int_equal(fx->ok, 20);
	assert_true(run_until(fx, cond_n1_caught_up, 5000));
	assert_same_applied(fx, 0, 1);
	assert_same_log(fx, 0, 1);
}

static int cond_n1_committed(struct fx *fx)
{
	struct repl_status s = status_of(fx, 1);
	return s.commit_index == s.last_index;
}

/* A new primary at epoch 2 fences the old one, which steps down; told it
 * is a replica, it converges to the new primary's log. */
static void test_new_primary_fences_old(void **state)
{
	struct fx *fx = *state;
	set_roles(fx, 1, 0);
	propose_wait(fx, 0, "a", 10, 5000);
	assert_int_equal(fx->ok, 10);

	/* The map moves the primary to n1 at epoch 2; n0 is cut off (n1
	 * cannot reach it: a dead port) and not told. */
	struct repl_replica r[N_NODES];
	members_isr(fx, r, 6);
	r[0].port = 1;
	assert_int_equal(repl_partition_set_role(fx->n[1].p, 2, 1, r, N_NODES), MAIL_OK);
	members(fx, r);
	assert_true(run_until(fx, cond_n1_committed, 5000));
	assert_int_equal(status_of(fx, 2).epoch, 2);   /* learnt from AppendEntries */

	/* n0 still thinks it leads, unless the answer to one of its
	 * heartbeats already told it (a slow run): its entry is refused
	 * either way, and it steps down. */
	fx->ok = fx->unavailable = fx->not_primary = fx->other = 0;
	int first = propose(fx, 0, "old", 0);
	if (first == MAIL_OK) {
		fx->done_target = 1;
		assert_true(run_until(fx, cond_done, 5000));
		assert_int_equal(fx->not_primary, 1);
	} else {
		assert_int_equal(first, MAIL_ERR_NOT_PRIMARY);
	}
	assert_int_equal(status_of(fx, 0).role, REPL_ROLE_REPLICA);
	assert_int_equal(propose(fx, 0, "old", 2), MAIL_ERR_NOT_PRIMARY);
	assert_false(applied_contains(&fx->n[0], "old-0"));
	assert_int_equal(repl_partition_set_role(fx->n[0].p, 1, 1, r, N_NODES),
			 MAIL_ERR_STALE_EPOCH);

	/* Healed and told the new map, n0 drops its tail and follows. */
	assert_int_equal(repl_partition_set_role(fx->n[0].p, 2, 0, r, N_NODES), MAIL_OK);
	assert_int_equal(repl_partition_set_role(fx->n[1].p, 2, 1, r, N_NODES), MAIL_OK);
	propose_wait(fx, 1, "new", 10, 5000);
	assert_int_equal(fx->ok, 10);
	wait_all_applied(fx, 1);
	assert_same_log(fx, 1, 0);
	assert_same_log(fx, 1, 2);
	assert_same_applied(fx, 1, 0);
	assert_same_applied(fx, 1, 2);
	assert_false(applied_contains(&fx->n[0], "old-0"));
	assert_true(applied_contains(&fx->n[0], "new-9"));
}

/* An old primary that appended a tail no one else has (its replicas were
 * down), then died; a new primary at epoch 2 writes on; the old one
 * restarts as a replica: its tail is truncated, logs end equal. */
static void test_old_primary_tail_truncated(void **state)
{
	struct fx *fx = *state;
	fx->propose_timeout_ms = 200;
	node_stop(fx, 0);
	node_start(fx, 0);
	set_roles(fx, 1, 0);
	propose_wait(fx, 0, "a", 10, 5000);
	assert_int_equal(fx->ok, 10);
	wait_all_applied(fx, 0);
	node_stop(fx, 1);
	node_stop(fx, 2);
	propose_wait(fx, 0, "tail", 7, 5000);
	assert_int_equal(fx->unavailable, 7);
	uint64_t old_last = status_of(fx, 0).last_index;
	node_stop(fx, 0);

	node_start(fx, 1);
	node_start(fx, 2);
	set_roles_isr(fx, 2, 1, 6);   /* the controller dropped the dead n0 */
	propose_wait(fx, 1, "b", 3, 5000);
	assert_int_equal(fx->ok, 3);
	/* The new log is shorter than the old primary's tail. */
	assert_true(status_of(fx, 1).last_index < old_last);

	node_start(fx, 0);
	assert_int_equal(status_of(fx, 0).last_index, old_last);
	set_roles(fx, 2, 1);
	propose_wait(fx, 1, "c", 5, 5000);
	assert_int_equal(fx->ok, 5);
	wait_all_applied(fx, 1);
	assert_same_log(fx, 1, 0);
	assert_same_log(fx, 1, 2);
	assert_false(applied_contains(&fx->n[0], "tail-0"));
	assert_true(applied_contains(&fx->n[0], "c-4"));
	assert_true(applied_contains(&fx->n[0], "b-0"));
}

static int cond_n2_caught_up(struct fx *fx)
{
	return fx->n[2].p != NULL && status_of(fx, 2).applied_index ==
	       status_of(fx, 0).commit_index && status_of(fx, 0).commit_index ==
	       status_of(fx, 0).last_index;
}

/* The ISR commit rule: a lagging replica outside the in-sync set does not
 * block commits but still catches up; with fewer in-sync members than a
 * majority nothing commits, even with every replica answering. */
static void test_isr_rule(void **state)
{
	struct fx *fx = *state;
	fx->propose_timeout_ms = 300;
	node_stop(fx, 0);
	node_start(fx, 0);
	set_roles_isr(fx, 1, 0, 3);
	/* n2 is alive but not in sync; it lags (down) meanwhile. */
	node_stop(fx, 2);
	propose_wait(fx, 0, "a", 20, 5000);
	assert_int_equal(fx->ok, 20);
	int caught_before = fx->n[2].caught_up;
	node_start(fx, 2);
	set_roles_isr(fx, 1, 0, 3);
	assert_true(run_until(fx, cond_n2_caught_up, 10000));
	wait_caught_reported(fx, 2, caught_before);
	assert_true(applied_contains(&fx->n[2], "a-19"));
	propose_wait(fx, 0, "b", 10, 5000);
	assert_int_equal(fx->ok, 10);

	/* Only the primary in sync (1 < 2 of 3): UNAVAILABLE, though both
	 * replicas have the entries durably. */
	set_roles_isr(fx, 1, 0, 1);
	struct repl_status before = status_of(fx, 0);
	propose_wait(fx, 0, "c", 3, 5000);
	assert_int_equal(fx->unavailable, 3);
	assert_int_equal(status_of(fx, 0).commit_index, before.commit_index);
	assert_false(applied_contains(&fx->n[0], "c-0"));

	/* The map moves to epoch 2, same primary, all in sync: proposals
	 * pending meanwhile are kept and commit (no NOT_PRIMARY). */
	fx->propose_timeout_ms = 300;
	fx->ok = fx->unavailable = fx->not_primary = fx->other = 0;
	for (int k = 0; k < 3; k++)
		assert_int_equal(propose(fx, 0, "e", k), MAIL_OK);
	run_for(fx, 30);
	set_roles_isr(fx, 2, 0, 7);
	fx->done_target = 3;
	assert_true(run_until(fx, cond_done, 5000));
	assert_int_equal(fx->ok, 3);
	assert_int_equal(status_of(fx, 0).epoch, 2);
	set_roles_isr(fx, 2, 0, 1);

	/* A replica re-enters the in-sync set: the entries commit. */
	set_roles_isr(fx, 2, 0, 5);
	propose_wait(fx, 0, "d", 3, 5000);
	assert_int_equal(fx->ok, 3);
	assert_true(applied_contains(&fx->n[0], "c-2"));
	struct repl_status s = status_of(fx, 0);
	assert_int_equal(s.n_peers, 2);
	assert_int_equal(s.peers[0].in_sync + s.peers[1].in_sync, 1);
}

/* Extra partitions for test_group_commit_partitions: they count. */
#define EXTRA_PARTS 4
static void extra_apply(repl_partition *p, uint64_t index, const uint8_t *payload, size_t len,
			void *arg)
{
	(void)p, (void)index, (void)payload, (void)len;
	(*(int *)arg)++;
}

static void extra_propose_cb(int status, uint64_t index, void *arg)
{
	(void)index;
	if (status == MAIL_OK)
		(*(int *)arg)++;
}

static int cond_extra_done(struct fx *fx)
{
	return fx->extra_ok >= EXTRA_PARTS;
}

/* Proposals to several partitions of a node in one loop turn share ONE
 * sync write (the node's group commit), and so do the AppendEntries that
 * reach a replica together. */
static void test_group_commit_partitions(void **state)
{
	struct fx *fx = *state;
	static const struct repl_callbacks extra_cb = { extra_apply, NULL };
	repl_partition *xp[N_NODES][EXTRA_PARTS];
	int applied[N_NODES] = { 0 };
	struct repl_replica r[N_NODES];
	members_isr(fx, r, 7);
	const char *err;
	for (int i = 0; i < N_NODES; i++)
		for (int k = 0; k < EXTRA_PARTS; k++) {
			assert_int_equal(repl_partition_open(fx->n[i].node, PART + 1 + (uint32_t)k,
							     &extra_cb, &applied[i], 0, &xp[i][k],
							     &err),
					 0);
			assert_int_equal(repl_partition_set_role(xp[i][k], 1, i == 0, r, N_NODES),
					 MAIL_OK);
		}
	fx->extra_ok = 0;
	for (int k = 0; k < EXTRA_PARTS; k++)
		assert_int_equal(repl_partition_propose(xp[0][k], "w", 1, extra_propose_cb,
							&fx->extra_ok),
				 MAIL_OK);
	assert_true(run_until(fx, cond_extra_done, 5000));
	run_for(fx, 100);   /* the heartbeats settle */
	struct repl_node_counters p0, r0, p1, r1;
	repl_node_counters(fx->n[0].node, &p0);
	repl_node_counters(fx->n[1].node, &r0);
	fx->extra_ok = 0;
	for (int k = 0; k < EXTRA_PARTS; k++)
		assert_int_equal(repl_partition_propose(xp[0][k], "g", 1, extra_propose_cb,
							&fx->extra_ok),
				 MAIL_OK);
	assert_true(run_until(fx, cond_extra_done, 5000));
	repl_node_counters(fx->n[0].node, &p1);
	repl_node_counters(fx->n[1].node, &r1);
	print_message("group commit across %d partitions: primary sync writes %llu, "
		      "replica %llu\n", EXTRA_PARTS,
		      (unsigned long long)(p1.sync_writes - p0.sync_writes),
		      (unsigned long long)(r1.sync_writes - r0.sync_writes));
	assert_int_equal(p1.sync_writes - p0.sync_writes, 1);
	assert_true(r1.sync_writes - r0.sync_writes < EXTRA_PARTS);
	assert_true(run_until(fx, cond_extra_done, 5000));
	for (int i = 0; i < N_NODES; i++)
		for (int k = 0; k < EXTRA_PARTS; k++)
			repl_partition_close(&xp[i][k]);
}

/* With an apply barrier, the proposals complete only once the barrier ran
 * after their apply (propose_cb checks it for every one), once per turn
 * for many proposals; the replicas call theirs too. */
static void test_apply_barrier(void **state)
{
	struct fx *fx = *state;
	for (int i = 0; i < N_NODES; i++)
		node_stop(fx, i);
	fx->barrier_on = 1;
	for (int i = 0; i < N_NODES; i++)
		node_start(fx, i);
	set_roles(fx, 1, 0);
	propose_wait(fx, 0, "warm", 1, 5000);
	run_for(fx, 200);
	int before = barrier_calls(fx, 0);
	propose_wait(fx, 0, "b", 50, 5000);
	assert_int_equal(fx->ok, 50);
	print_message("apply barrier: 50 proposals, %d barrier calls on the primary before "
		      "the first answer, %d in all\n", fx->barrier_at_first_ok - before,
		      barrier_calls(fx, 0) - before);
	assert_true(barrier_calls(fx, 0) - before <= 3);
	fx->applied_primary = 0;
	assert_true(run_until(fx, cond_all_applied, 5000));
	/* with nothing more written, the partitions' timers run the barrier
	 * that covers the last applies, on every node */
	run_for(fx, 300);
	for (int i = 0; i < N_NODES; i++)
		assert_true(barrier_calls(fx, i) > 0 &&
			    applied_at_barrier(fx, i) == fx->n[i].owner_applied);
}

/* 200 proposals issued in one loop turn share a handful of sync writes. */
static void test_group_commit(void **state)
{
	struct fx *fx = *state;
	set_roles(fx, 1, 0);
	propose_wait(fx, 0, "warm", 1, 5000);
	struct repl_status p0 = status_of(fx, 0), r0 = status_of(fx, 1);
	struct repl_node_counters c0;
	repl_node_counters(fx->n[0].node, &c0);
	propose_wait(fx, 0, "g", 200, 10000);
	assert_int_equal(fx->ok, 200);
	struct repl_status p1 = status_of(fx, 0), r1 = status_of(fx, 1);
	struct repl_node_counters c1;
	repl_node_counters(fx->n[0].node, &c1);
	print_message("group commit: 200 proposals, primary sync writes %llu, replica %llu, "
		      "append rpcs %llu\n",
		      (unsigned long long)(p1.sync_writes - p0.sync_writes),
		      (unsigned long long)(r1.sync_writes - r0.sync_writes),
		      (unsigned long long)(c1.append_rpcs_out - c0.append_rpcs_out));
	assert_int_equal(p1.sync_writes - p0.sync_writes, 1);
	assert_true(r1.sync_writes - r0.sync_writes <= 2);
	assert_int_equal(c1.sync_writes - c0.sync_writes, 1);
	assert_true(c1.append_rpcs_out - c0.append_rpcs_out < 20);
	assert_int_equal(p1.proposals - p0.proposals, 200);
}

/* Closing a partition fails its pending proposals (unknown outcome). */
static void test_close_with_pending(void **state)
{
	struct fx *fx = *state;
	set_roles(fx, 1, 0);
	fx->ok = fx->unavailable = 0;
	for (int k = 0; k < 5; k++)
		assert_int_equal(propose(fx, 0, "z", k), MAIL_OK);
	repl_partition_close(&fx->n[0].p);
	assert_null(fx->n[0].p);
	assert_int_equal(fx->unavailable, 5);
	run_for(fx, 50);
	/* Reopen on the same node: nothing was written, epoch kept. */
	const char *err;
	assert_int_equal(repl_partition_open(fx->n[0].node, PART, &callbacks, &fx->n[0], 0,
					     &fx->n[0].p, &err), 0);
	struct repl_status s = status_of(fx, 0);
	assert_int_equal(s.epoch, 1);
	assert_int_equal(s.last_index, 1);
	repl_partition *dup;
	assert_int_equal(repl_partition_open(fx->n[0].node, PART, &callbacks, &fx->n[0], 0, &dup,
					     &err), -1);
}

/* ---- compaction and snapshots (setup_snap) --------------------------- */

/* Node i's log: nothing at or below its base (1..base answer 0), every
 * entry above it there; returns the payload bytes still in it. */
static uint64_t check_log_bounds(struct fx *fx, int i)
{
	struct repl_status s = status_of(fx, i);
	uint64_t e, bytes = 0;
	int k;
	buf b;
	buf_init(&b);
	assert_true(s.base <= s.applied_index);
	if (s.base > 0) {
		assert_int_equal(repl_partition_entry(fx->n[i].p, 1, &e, &k, NULL), 0);
		assert_int_equal(repl_partition_entry(fx->n[i].p, s.base, &e, &k, NULL), 0);
	}
	for (uint64_t x = s.base + 1; x <= s.last_index; x++) {
		buf_reset(&b);
		assert_int_equal(repl_partition_entry(fx->n[i].p, x, &e, &k, &b), 1);
		bytes += b.len;
	}
	buf_deinit(&b);
	return bytes;
}

static int cond_compacted(struct fx *fx)
{
	for (int i = 0; i < N_NODES; i++)
		if (fx->n[i].p != NULL && !fx->n[i].no_snap && status_of(fx, i).base == 0)
			return 0;
	return 1;
}

/* Compaction bounds the log, by bytes and by entries, on the primary and
 * the replicas alike; commits go on; a partition without snapshot
 * callbacks keeps its whole log. */
static void test_compaction_bounds_log(void **state)
{
	struct fx *fx = *state;
	/* The byte bound first: 1000 entries allowed, 512 bytes. */
	fx->keep_entries = 1000;
	fx->keep_bytes = 512;
	for (int i = 0; i < N_NODES; i++) {
		node_stop(fx, i);
		fx->n[i].no_snap = i == 2;
		node_start(fx, i);
	}
	set_roles(fx, 1, 0);
	propose_wait(fx, 0, "c", 300, 10000);
	assert_int_equal(fx->ok, 300);
	wait_all_applied(fx, 0);
	/* The heartbeat compacts by itself. */
	assert_true(run_until(fx, cond_compacted, 5000));
	for (int i = 0; i < 2; i++) {
		assert_int_not_equal(repl_partition_compact(fx->n[i].p), -1);
		struct repl_status s = status_of(fx, i);
		uint64_t bytes = check_log_bounds(fx, i);
		print_message("node %d: base %llu last %llu, %llu payload bytes kept\n", i,
			      (unsigned long long)s.base, (unsigned long long)s.last_index,
			      (unsigned long long)bytes);
		assert_true(bytes <= 512);
		assert_true(bytes > 512 - 8);   /* payloads are at most 5 bytes */
		assert_int_equal(s.compacted_entries, s.base);
		assert_int_equal(repl_partition_compact(fx->n[i].p), 0);
	}
	/* No snapshot callbacks on n2: nothing compacted there. */
	assert_int_equal(status_of(fx, 2).base, 0);
	assert_int_equal(repl_partition_compact(fx->n[2].p), 0);
	assert_int_equal(status_of(fx, 2).compacted_entries, 0);
	check_log_bounds(fx, 2);

	/* Commits continue above the base; logs still match where they
	 * overlap, the state machines are the same. */
	propose_wait(fx, 0, "d", 50, 5000);
	assert_int_equal(fx->ok, 50);
	wait_all_applied(fx, 0);
	assert_same_applied(fx, 0, 1);
	assert_same_applied(fx, 0, 2);

	/* The entry bound: 50 entries (each node restarted: the base and
	 * the byte count survive a reopen). */
	fx->keep_entries = 50;
	fx->keep_bytes = 0;
	for (int i = 0; i < N_NODES; i++) {
		uint64_t base = status_of(fx, i).base;
		node_stop(fx, i);
		fx->n[i].no_snap = 0;
		node_start(fx, i);
		assert_int_equal(status_of(fx, i).base, base);
	}
	set_roles(fx, 2, 1);
	propose_wait(fx, 1, "e", 100, 5000);
	assert_int_equal(fx->ok, 100);
	wait_all_applied(fx, 1);
	for (int i = 0; i < N_NODES; i++) {
		assert_int_not_equal(repl_partition_compact(fx->n[i].p), -1);
		struct repl_status s = status_of(fx, i);
		check_log_bounds(fx, i);
		assert_int_equal(s.last_index - s.base, 50);
	}
	assert_same_applied(fx, 1, 0);
	assert_same_applied(fx, 1, 2);

	/* Never above the applied index: with only the primary in sync
	 * nothing commits, and its new entries all stay. */
	set_roles_isr(fx, 2, 1, 2);
	for (int k = 0; k < 100; k++)
		assert_int_equal(propose(fx, 1, "u", k), MAIL_OK);
	run_for(fx, 200);
	assert_int_not_equal(repl_partition_compact(fx->n[1].p), -1);
	struct repl_status s = status_of(fx, 1);
	check_log_bounds(fx, 1);
	assert_true(s.commit_index < s.last_index);
	assert_true(s.base <= s.applied_index);
	assert_true(s.last_index - s.base >= 100);
}

static uint64_t value_bytes_read(struct fx *fx, int i)
{
	struct repl_node_counters c;
	repl_node_counters(fx->n[i].node, &c);
	return c.log_value_bytes_read;
}

static int cond_all_compacted_to_keep(struct fx *fx)
{
	for (int i = 0; i < N_NODES; i++) {
		struct repl_status s = status_of(fx, i);
		if (s.base == 0 || s.last_index - s.base != fx->keep_entries)
			return 0;
	}
	return 1;
}

/* Compaction waits for the high-water mark (a quarter over the keep
 * bound), then deletes down to the bound in one batch, on the primary and
 * the replicas; it reads no entry value, on its own or when asked. */
static void test_compaction_hysteresis(void **state)
{
	struct fx *fx = *state;
	assert_int_equal(fx->keep_entries, 50);   /* high-water mark 62 */
	set_roles(fx, 1, 0);
	propose_wait(fx, 0, "h", 60, 5000);       /* with the barrier: 61 */
	assert_int_equal(fx->ok, 60);
	wait_all_applied(fx, 0);
	run_for(fx, 200);                         /* ten heartbeats */
	for (int i = 0; i < N_NODES; i++)
		assert_int_equal(status_of(fx, i).base, 0);

	propose_wait(fx, 0, "i", 5, 5000);        /* 66: over the mark */
	assert_int_equal(fx->ok, 5);
	wait_all_applied(fx, 0);
	assert_true(run_until(fx, cond_all_compacted_to_keep, 5000));
	uint64_t before[N_NODES];
	for (int i = 0; i < N_NODES; i++) {
		struct repl_status s = status_of(fx, i);
		assert_int_equal(s.last_index, 66);
		assert_int_equal(s.compacted_entries, 16);   /* one batch */
		check_log_bounds(fx, i);
		before[i] = value_bytes_read(fx, i);
	}
	run_for(fx, 200);
	for (int i = 0; i < N_NODES; i++)
		assert_int_equal(value_bytes_read(fx, i), before[i]);

	/* Under the mark nothing happens by itself; asked, it compacts down
	 * to the bound, reading no value either. */
	propose_wait(fx, 0, "j", 10, 5000);
	assert_int_equal(fx->ok, 10);
	wait_all_applied(fx, 0);
	run_for(fx, 100);
	for (int i = 0; i < N_NODES; i++) {
		struct repl_status s = status_of(fx, i);
		assert_int_equal(s.last_index - s.base, 60);
		before[i] = value_bytes_read(fx, i);
		assert_int_equal(repl_partition_compact(fx->n[i].p), 1);
		s = status_of(fx, i);
		assert_int_equal(s.last_index - s.base, 50);
		assert_int_equal(s.compacted_entries, 26);
		assert_int_equal(value_bytes_read(fx, i), before[i]);
	}
}

static int cond_n2_caught_up_to(struct fx *fx, int primary)
{
	struct repl_status pr = status_of(fx, primary), s2 = status_of(fx, 2);
	return fx->n[2].p != NULL && s2.applied_index == pr.commit_index &&
	       pr.commit_index == pr.last_index && pr.peers[0].match_index == pr.last_index &&
	       pr.peers[1].match_index == pr.last_index;
}

static int cond_n2_caught_up_0(struct fx *fx)
{
	return cond_n2_caught_up_to(fx, 0);
}

static int cond_n2_caught_up_1(struct fx *fx)
{
	return cond_n2_caught_up_to(fx, 1);
}

/* A replica that was down while the primary compacted past its position
 * is caught up by a snapshot and the log tail, ends with exactly the
 * primary's state, and reports caught up. */
static void test_snapshot_lagging_replica(void **state)
{
	struct fx *fx = *state;
	set_roles(fx, 1, 0);
	propose_wait(fx, 0, "a", 30, 5000);
	assert_int_equal(fx->ok, 30);
	wait_all_applied(fx, 0);
	uint64_t n2_last = status_of(fx, 2).last_index;
	node_stop(fx, 2);
	set_roles_isr(fx, 1, 0, 3);
	propose_wait(fx, 0, "b", 300, 10000);
	assert_int_equal(fx->ok, 300);
	assert_int_equal(repl_partition_compact(fx->n[0].p) >= 0, 1);
	struct repl_status p0 = status_of(fx, 0);
	assert_true(p0.base > n2_last);
	assert_int_equal(p0.last_index - p0.base, 50);

	int caught_before = fx->n[2].caught_up;
	node_start(fx, 2);
	set_roles_isr(fx, 1, 0, 3);
	assert_true(run_until(fx, cond_n2_caught_up_0, 10000));
	assert_same_applied(fx, 0, 2);
	assert_true(applied_contains(&fx->n[2], "a-0"));
	assert_true(applied_contains(&fx->n[2], "b-299"));
	assert_int_equal(fx->n[2].installs_done, 1);
	wait_caught_reported(fx, 2, caught_before);
	assert_int_equal(fx->n[2].caught_up_epoch, 1);
	assert_int_equal(status_of(fx, 0).snapshots_sent, 1);
	struct repl_status s2 = status_of(fx, 2);
	assert_int_equal(s2.snapshots_installed, 1);
	assert_true(s2.base >= p0.base);

	/* Normal replication from there on. */
	propose_wait(fx, 0, "c", 20, 5000);
	assert_int_equal(fx->ok, 20);
	assert_true(run_until(fx, cond_n2_caught_up_0, 5000));
	assert_same_applied(fx, 0, 2);
	assert_int_equal(status_of(fx, 0).snapshots_sent, 1);
}

/* A fresh (empty) replica added to the set gets a snapshot. */
static void test_snapshot_fresh_replica(void **state)
{
	struct fx *fx = *state;
	struct repl_replica r[N_NODES];
	members(fx, r);
	/* n0 and n1 only (n2 is open but not in the map). */
	for (int i = 0; i < 2; i++)
		assert_int_equal(repl_partition_set_role(fx->n[i].p, 1, i == 0, r, 2), MAIL_OK);
	propose_wait(fx, 0, "a", 200, 10000);
	assert_int_equal(fx->ok, 200);
	assert_int_equal(repl_partition_compact(fx->n[0].p) >= 0, 1);
	assert_true(status_of(fx, 0).base > 0);
	assert_int_equal(status_of(fx, 2).last_index, 0);

	/* The map adds n2 (not in sync) at epoch 2. */
	set_roles_isr(fx, 2, 0, 3);
	assert_true(run_until(fx, cond_n2_caught_up_0, 10000));
	assert_same_applied(fx, 0, 2);
	assert_true(applied_contains(&fx->n[2], "a-0"));
	assert_int_equal(fx->n[2].installs_done, 1);
	assert_true(fx->n[2].caught_up >= 1);
	assert_int_equal(fx->n[2].caught_up_epoch, 2);
	assert_int_equal(status_of(fx, 2).snapshots_installed, 1);
	assert_int_equal(status_of(fx, 0).snapshots_sent, 1);
}

static int cond_install_chunks(struct fx *fx)
{
	return fx->n[fx->watch].install_calls >= fx->watch_chunks;
}

/* Stop n2, write n entries (the primary compacts past n2), bring n2 back
 * and run until it took `chunks` install calls of the new transfer. */
static void lag_n2_and_start_install(struct fx *fx, int primary, uint64_t epoch, int n,
				     const char *tag, int chunks)
{
	node_stop(fx, 2);
	set_roles_isr(fx, epoch, primary, 3);
	propose_wait(fx, primary, tag, n, 20000);
	assert_int_equal(fx->ok, n);
	assert_int_equal(repl_partition_compact(fx->n[primary].p) >= 0, 1);
	node_start(fx, 2);
	fx->watch = 2;
	fx->watch_chunks = fx->n[2].install_calls + chunks;
	set_roles_isr(fx, epoch, primary, 3);
	assert_true(run_until(fx, cond_install_chunks, 10000));
}

/* A transfer interrupted by a restart of the replica, then one interrupted
 * by a change of primary: each starts again and ends right. */
static void test_snapshot_interrupted(void **state)
{
	struct fx *fx = *state;
	set_roles(fx, 1, 0);
	/* ~1500 records of ~16 bytes: ~24 chunks of 1 KiB. */
	lag_n2_and_start_install(fx, 0, 1, 1500, "a", 3);
	assert_true(fx->n[2].installing);          /* mid-transfer */
	/* Its state is incomplete: it refuses to lead meanwhile. */
	struct repl_replica r[N_NODES];
	members_isr(fx, r, 3);
	assert_int_equal(repl_partition_set_role(fx->n[2].p, 1, 1, r, N_NODES),
			 MAIL_ERR_UNAVAILABLE);
	node_stop(fx, 2);
	node_start(fx, 2);                          /* state dropped: applied 0 */
	set_roles_isr(fx, 1, 0, 3);
	assert_true(run_until(fx, cond_n2_caught_up_0, 20000));
	assert_same_applied(fx, 0, 2);
	assert_true(applied_contains(&fx->n[2], "a-1499"));
	assert_true(fx->n[0].snap_opens >= 2);      /* started again */
	assert_int_equal(status_of(fx, 0).snapshots_sent, 1);

	/* Again, and this time the map moves the primary to n1 at epoch 2
	 * mid-transfer: n0 drops its transfer, n1 (which compacted too)
	 * sends its own snapshot. */
	lag_n2_and_start_install(fx, 0, 1, 1500, "b", 3);
	assert_true(fx->n[2].installing);
	int caught_before = fx->n[2].caught_up;
	int installs_before = fx->n[2].installs_done;
	assert_true(status_of(fx, 1).base > 0);
	set_roles_isr(fx, 2, 1, 3);
	assert_true(run_until(fx, cond_n2_caught_up_1, 20000));
	wait_all_applied(fx, 1);
	assert_same_applied(fx, 1, 2);
	assert_same_applied(fx, 1, 0);
	assert_true(applied_contains(&fx->n[2], "b-1499"));
	assert_int_equal(fx->n[2].installs_done, installs_before + 1);
	wait_caught_reported(fx, 2, caught_before);
	assert_int_equal(fx->n[2].caught_up_epoch, 2);
	assert_int_equal(status_of(fx, 1).snapshots_sent, 1);

	/* An install the owner refuses once: the transfer starts again. */
	int opens_before = fx->n[1].snap_opens;
	fx->n[2].install_fail_at = fx->n[2].install_calls + 2;
	lag_n2_and_start_install(fx, 1, 2, 300, "c", 1);
	assert_true(run_until(fx, cond_n2_caught_up_1, 20000));
	assert_same_applied(fx, 1, 2);
	assert_true(fx->n[1].snap_opens >= opens_before + 2);
	assert_int_equal(fx->n[2].install_fail_at, 0);
}

/* Mid-transfer the map keeps n0 primary at a newer epoch (three times): n0
 * sets its peers up again and starts a new transfer while replies to calls
 * of the old epoch may still be on their way; the replica ends with the
 * primary's whole state. (The race CI found, a stale reply ending the new
 * transfer's call in flight so that a chunk went twice under one seq, needs
 * the stale reply to land inside the new chunk's round trip: this test
 * makes it possible, it does not force it; it passed before the fix too.) */
static void test_snapshot_stale_reply_new_epoch(void **state)
{
	struct fx *fx = *state;
	set_roles(fx, 1, 0);
	for (uint64_t epoch = 2; epoch <= 6; epoch += 2) {
		char tag[8];
		snprintf(tag, sizeof tag, "e%llu", (unsigned long long)epoch);
		int installs_before = fx->n[2].installs_done;
		/* ~1500 records: ~24 chunks; the new epoch lands after 2 */
		lag_n2_and_start_install(fx, 0, epoch - 1, 1500, tag, 2);
		assert_true(fx->n[2].installing);
		set_roles_isr(fx, epoch, 0, 3);
		assert_true(run_until(fx, cond_n2_caught_up_0, 20000));
		wait_all_applied(fx, 0);
		assert_same_applied(fx, 0, 2);
		char last[16];
		snprintf(last, sizeof last, "%s-1499", tag);
		assert_true(applied_contains(&fx->n[2], last));
		assert_true(applied_contains(&fx->n[2], "e2-0"));
		assert_int_equal(fx->n[2].installs_done, installs_before + 1);
		set_roles_isr(fx, epoch + 1, 0, 3);
	}
}

/* A transfer abandoned for the log: mid-install the map makes n1 primary,
 * and n1 keeps its whole log (no snapshot callbacks). The replica, whose
 * state the install dropped, must not append n1's entries onto that empty
 * state: it re-applies from index 1 and ends with n1's state. */
static void test_snapshot_abandoned_for_log(void **state)
{
	struct fx *fx = *state;
	node_stop(fx, 1);
	fx->n[1].no_snap = 1;
	node_start(fx, 1);
	set_roles(fx, 1, 0);
	propose_wait(fx, 0, "a", 30, 5000);
	assert_int_equal(fx->ok, 30);
	wait_all_applied(fx, 0);
	lag_n2_and_start_install(fx, 0, 1, 1500, "b", 2);
	assert_true(fx->n[2].installing);
	assert_int_equal(status_of(fx, 1).base, 0);
	set_roles_isr(fx, 2, 1, 3);
	assert_true(run_until(fx, cond_n2_caught_up_1, 20000));
	wait_all_applied(fx, 1);
	assert_same_applied(fx, 1, 2);
	assert_same_applied(fx, 1, 0);
	assert_true(applied_contains(&fx->n[2], "a-0"));
	assert_true(applied_contains(&fx->n[2], "b-1499"));
	assert_int_equal(fx->n[2].installs_done, 0);
	assert_int_equal(fx->n[2].installs_abandoned, 1);
	assert_int_equal(fx->n[2].caught_up_epoch, 2);
}

/* A crash after the first install chunk: the owner comes back with
 * applied 0 under a log whose base is > 0. The log is emptied and a new
 * snapshot comes; no entry is skipped. */
static void test_snapshot_crash_mid_install(void **state)
{
	struct fx *fx = *state;
	set_roles(fx, 1, 0);
	propose_wait(fx, 0, "a", 100, 5000);
	assert_int_equal(fx->ok, 100);
	wait_all_applied(fx, 0);
	assert_int_equal(repl_partition_compact(fx->n[2].p) >= 0, 1);
	uint64_t n2_base = status_of(fx, 2).base;
	assert_true(n2_base > 0);

	lag_n2_and_start_install(fx, 0, 1, 1500, "b", 2);
	assert_true(fx->n[2].installing);
	assert_int_equal(fx->n[2].owner_applied, 0);
	assert_int_equal(fx->n[2].n_applied, 0);
	int installs_before = fx->n[2].installs_done;
	node_stop(fx, 2);
	/* The crash happened before the log was reset: its base is still
	 * there on disk, with the owner at 0. */
	node_start(fx, 2);
	struct repl_status s2 = status_of(fx, 2);
	assert_int_equal(s2.base, 0);
	assert_int_equal(s2.last_index, 0);
	assert_int_equal(s2.applied_index, 0);
	set_roles_isr(fx, 1, 0, 3);
	assert_true(run_until(fx, cond_n2_caught_up_0, 20000));
	assert_same_applied(fx, 0, 2);
	assert_true(applied_contains(&fx->n[2], "a-0"));
	assert_true(applied_contains(&fx->n[2], "b-1499"));
	assert_int_equal(fx->n[2].installs_done, installs_before + 1);
}

static void fence_reply_cb(int status, const ProtobufCMessage *msg, void *arg)
{
	struct fx *fx = arg;
	fx->fence_done = 1;
	fx->fence_status = status;
	fx->fence_success = msg != NULL && ((const Repl__SnapshotResponse *)msg)->success;
}

static int cond_fence_done(struct fx *fx)
{
	return fx->fence_done;
}

/* Send one InstallSnapshot chunk 0 to node i at epoch; returns the status. */
static int send_snapshot_chunk(struct fx *fx, int i, uint64_t epoch, int *success_r)
{
	rpc_client *c;
	assert_int_equal(rpc_client_create(&fx->loop, REPL_SERVICE, "127.0.0.1", fx->n[i].port,
					   &c), 0);
	Repl__SnapshotRequest req = REPL__SNAPSHOT_REQUEST__INIT;
	req.partition = PART;
	req.epoch = epoch;
	req.primary_id = "intruder";
	req.snapshot_index = 7;
	req.snapshot_epoch = epoch;
	req.transfer_id = 1;
	req.seq = 0;
	req.last = 1;
	fx->fence_done = 0;
	rpc_client_call(c, REPL__METHOD__INSTALL_SNAPSHOT, &req.base,
			&repl__snapshot_response__descriptor, 1000, fence_reply_cb, fx);
	assert_true(run_until(fx, cond_fence_done, 5000));
	rpc_client_destroy(&c);
	*success_r = fx->fence_success;
	return fx->fence_status;
}

/* InstallSnapshot from a stale epoch (or a second primary at the current
 * one) is fenced: nothing is installed, the state is untouched. */
static void test_snapshot_stale_epoch(void **state)
{
	struct fx *fx = *state;
	set_roles(fx, 2, 0);
	propose_wait(fx, 0, "a", 10, 5000);
	assert_int_equal(fx->ok, 10);
	wait_all_applied(fx, 0);
	int success;
	assert_int_equal(send_snapshot_chunk(fx, 1, 1, &success), MAIL_ERR_STALE_EPOCH);
	assert_int_equal(send_snapshot_chunk(fx, 0, 2, &success), MAIL_ERR_STALE_EPOCH);
	assert_int_equal(fx->n[1].install_calls, 0);
	assert_int_equal(fx->n[0].install_calls, 0);
	assert_int_equal(status_of(fx, 0).role, REPL_ROLE_PRIMARY);
	assert_same_applied(fx, 0, 1);
	assert_int_equal(fx->n[1].n_applied, 10);
	/* The map still works: commits continue. */
	propose_wait(fx, 0, "b", 5, 5000);
	assert_int_equal(fx->ok, 5);
	assert_int_equal(status_of(fx, 1).epoch, 2);
	/* Control: the same chunk at a higher epoch is taken (the replica
	 * installs the intruder's empty state), so the checks above can
	 * fail. */
	assert_int_equal(send_snapshot_chunk(fx, 2, 3, &success), MAIL_OK);
	assert_true(success);
	assert_int_equal(fx->n[2].installs_done, 1);
	assert_int_equal(status_of(fx, 2).base, 7);
	assert_int_equal(status_of(fx, 2).epoch, 3);
}

/* ---- the writer thread: a slow disk ----------------------------------- */

#define SLOW_WRITE_MS 300

/* Restart every node, node 0's writer sleeping SLOW_WRITE_MS before each
 * log write (a slow fsync), with node 0 the primary. */
static void slow_primary(struct fx *fx)
{
	for (int i = 0; i < N_NODES; i++)
		node_stop(fx, i);
	fx->n[0].write_delay_ms = SLOW_WRITE_MS;
	for (int i = 0; i < N_NODES; i++)
		node_start(fx, i);
	set_roles(fx, 1, 0);
}

struct lag_probe {
	uv_timer_t timer;
	uint64_t last_ms, max_gap_ms;
	int fires;
};

static void lag_probe_cb(uv_timer_t *h)
{
	struct lag_probe *lp = h->data;
	uint64_t now = util_now_mono_ms();
	if (lp->last_ms != 0 && now - lp->last_ms > lp->max_gap_ms)
		lp->max_gap_ms = now - lp->last_ms;
	lp->last_ms = now;
	lp->fires++;
}

static int total_done(struct fx *fx)
{
	return fx->ok + fx->unavailable + fx->not_primary + fx->other;
}

static struct repl_node_counters counters_of(struct fx *fx, int i)
{
	struct repl_node_counters c;
	repl_node_counters(fx->n[i].node, &c);
	return c;
}

/* While the primary's log write takes SLOW_WRITE_MS, its loop still runs
 * every 5 ms (a timer, the other nodes, RPCs); the proposals made
 * meanwhile go in the next write, all of them in one. */
static void test_slow_write_loop_runs(void **state)
{
	struct fx *fx = *state;
	slow_primary(fx);
	propose_wait(fx, 0, "warm", 1, 5000);
	struct repl_node_counters c0 = counters_of(fx, 0);
	struct lag_probe lp = { 0 };
	uv_timer_init(&fx->loop, &lp.timer);
	lp.timer.data = &lp;
	uv_timer_start(&lp.timer, lag_probe_cb, 5, 5);
	fx->ok = fx->unavailable = fx->not_primary = fx->other = 0;
	uint64_t t0 = util_now_mono_ms();
	assert_int_equal(propose(fx, 0, "s", 0), MAIL_OK);
	run_for(fx, 50);          /* the write of s-0 is in flight now */
	assert_int_equal(total_done(fx), 0);
	for (int k = 1; k <= 20; k++)
		assert_int_equal(propose(fx, 0, "s", k), MAIL_OK);
	fx->done_target = 21;
	assert_true(run_until(fx, cond_done, 5000));
	uint64_t elapsed = util_now_mono_ms() - t0;
	assert_int_equal(fx->ok, 21);
	uv_close((uv_handle_t *)&lp.timer, NULL);
	uv_run(&fx->loop, UV_RUN_NOWAIT);   /* closed before lp goes out of scope */
	struct repl_node_counters c1 = counters_of(fx, 0);
	print_message("slow write: 21 proposals in %llu ms, %llu group writes, timer fired %d "
		      "times, longest gap %llu ms, longest write %llu us\n",
		      (unsigned long long)elapsed,
		      (unsigned long long)(c1.group_writes - c0.group_writes), lp.fires,
		      (unsigned long long)lp.max_gap_ms,
		      (unsigned long long)c1.group_write_max_us);
	/* two writes one after the other: s-0, then the 20 gathered meanwhile */
	assert_true(elapsed >= 2 * SLOW_WRITE_MS - 20);
	assert_true(c1.group_writes - c0.group_writes <= 3);
	assert_true(c1.group_write_max_us >= (SLOW_WRITE_MS - 20) * 1000u);
	/* the loop was never held for a write: the timer kept firing */
	assert_true(lp.fires >= (int)(elapsed / 5) / 2);
	assert_true(lp.max_gap_ms < SLOW_WRITE_MS / 2);
	assert_int_equal(c1.loop_waits, c0.loop_waits);
	wait_all_applied(fx, 0);
	assert_same_applied(fx, 0, 1);
	assert_same_log(fx, 0, 2);
}

/* The entry in the write in flight when the primary's node is destroyed:
 * the replicas hold it already (the primary ships an entry as its own
 * write of it begins), the destroy waits for the write, and the proposal
 * completes once: committed, since every copy is durable by then. The
 * entry is in the log after a restart. */
static void test_slow_write_destroy(void **state)
{
	struct fx *fx = *state;
	slow_primary(fx);
	propose_wait(fx, 0, "warm", 1, 5000);
	fx->ok = fx->unavailable = fx->not_primary = fx->other = 0;
	assert_int_equal(propose(fx, 0, "d", 0), MAIL_OK);
	run_for(fx, 50);
	assert_int_equal(total_done(fx), 0);
	uint64_t last = status_of(fx, 0).last_index;
	for (int i = 1; i < N_NODES; i++)
		assert_int_equal(status_of(fx, i).last_index, last + 1);
	uint64_t t0 = util_now_mono_ms();
	node_stop(fx, 0);
	assert_true(util_now_mono_ms() - t0 >= SLOW_WRITE_MS / 2);   /* it waited */
	assert_int_equal(total_done(fx), 1);
	assert_int_equal(fx->ok, 1);
	run_for(fx, SLOW_WRITE_MS);   /* nothing arrives for the destroyed node */
	assert_int_equal(total_done(fx), 1);
	fx->n[0].write_delay_ms = 0;
	node_start(fx, 0);
	struct repl_status s = status_of(fx, 0);
	assert_int_equal(s.last_index, last + 1);
	buf b;
	buf_init(&b);
	uint64_t epoch;
	int kind;
	assert_int_equal(repl_partition_entry(fx->n[0].p, last + 1, &epoch, &kind, &b), 1);
	assert_int_equal(kind, 0);
	assert_int_equal(b.len, 3);
	assert_memory_equal(b.data, "d-0", 3);
	buf_deinit(&b);
}

/* A partition closed, and a role change, while its batch is in flight:
 * both wait for the write (the state record of the batch must land before
 * anything else is written for the partition) and the log holds the
 * entry. The close's proposal fails once (nothing commits nor applies
 * once the owner closed); the role change's commits as the write ends
 * (the replicas held it already), then the node steps down. */
static void test_slow_write_close_and_role(void **state)
{
	struct fx *fx = *state;
	slow_primary(fx);
	propose_wait(fx, 0, "warm", 1, 5000);
	struct repl_node_counters c0 = counters_of(fx, 0);
	/* close */
	fx->ok = fx->unavailable = fx->not_primary = fx->other = 0;
	assert_int_equal(propose(fx, 0, "c", 0), MAIL_OK);
	run_for(fx, 50);
	uint64_t last = status_of(fx, 0).last_index;
	repl_partition_close(&fx->n[0].p);
	assert_int_equal(total_done(fx), 1);
	assert_int_equal(fx->unavailable, 1);
	run_for(fx, SLOW_WRITE_MS);
	assert_int_equal(total_done(fx), 1);
	const char *err;
	assert_int_equal(repl_partition_open(fx->n[0].node, PART, &callbacks, &fx->n[0],
					     fx->n[0].owner_applied, &fx->n[0].p, &err), 0);
	assert_int_equal(status_of(fx, 0).last_index, last + 1);
	assert_int_equal(status_of(fx, 0).epoch, 1);
	/* role change: node 0 at epoch 2 again, then node 0 told it is a
	 * replica at epoch 3 while a proposal's write is in flight */
	set_roles(fx, 2, 0);
	propose_wait(fx, 0, "warm2", 1, 5000);
	assert_int_equal(fx->ok, 1);
	fx->ok = fx->unavailable = fx->not_primary = fx->other = 0;
	assert_int_equal(propose(fx, 0, "r", 0), MAIL_OK);
	run_for(fx, 50);
	last = status_of(fx, 0).last_index;
	struct repl_replica r[N_NODES];
	members(fx, r);
	assert_int_equal(repl_partition_set_role(fx->n[0].p, 3, 0, r, N_NODES), MAIL_OK);
	/* committed at epoch 2 as the write ended: the replicas had it */
	assert_int_equal(total_done(fx), 1);
	assert_int_equal(fx->ok, 1);
	fx->ok = 0;
	struct repl_status s = status_of(fx, 0);
	assert_int_equal(s.epoch, 3);
	assert_int_equal(s.last_index, last + 1);
	assert_int_equal(s.role, REPL_ROLE_REPLICA);
	struct repl_node_counters c1 = counters_of(fx, 0);
	assert_true(c1.loop_waits >= c0.loop_waits + 2);
	/* node 1 takes over at epoch 3; node 0's tail is kept or replaced,
	 * and the three converge */
	for (int i = 1; i < N_NODES; i++)
		assert_int_equal(repl_partition_set_role(fx->n[i].p, 3, i == 1, r, N_NODES),
				 MAIL_OK);
	propose_wait(fx, 1, "after", 3, 5000);
	assert_int_equal(fx->ok, 3);
	wait_all_applied(fx, 1);
	assert_same_log(fx, 0, 1);
	assert_same_applied(fx, 0, 1);
}

/* Compaction while writes are in flight on every node (a 2 ms disk):
 * steps that meet a batch in flight wait for it, and the logs stay
 * whole (the replicas' too, and after a restart). */
static void test_slow_write_compaction(void **state)
{
	struct fx *fx = *state;
	for (int i = 0; i < N_NODES; i++)
		node_stop(fx, i);
	for (int i = 0; i < N_NODES; i++) {
		fx->n[i].write_delay_ms = 2;
		node_start(fx, i);
	}
	set_roles(fx, 1, 0);
	fx->window_left = 500;
	fx->ok = fx->unavailable = fx->not_primary = fx->other = 0;
	for (int k = 0; k < 16; k++)
		window_propose(fx);
	fx->done_target = 500;
	assert_true(run_until(fx, cond_done, 60000));
	assert_int_equal(fx->ok, 500);
	wait_all_applied(fx, 0);
	run_for(fx, 200);   /* heartbeats: compaction */
	for (int i = 0; i < N_NODES; i++) {
		struct repl_status s = status_of(fx, i);
		assert_true(s.compacted_entries > 0);
		assert_true(s.last_index - s.base <= fx->keep_entries + fx->keep_entries / 4 + 16);
	}
	/* every node restarts cleanly from its log (base, entries, state agree) */
	for (int i = 0; i < N_NODES; i++) {
		node_stop(fx, i);
		fx->n[i].write_delay_ms = 0;
		node_start(fx, i);
	}
	set_roles(fx, 2, 0);
	propose_wait(fx, 0, "x", 5, 5000);
	assert_int_equal(fx->ok, 5);
	wait_all_applied(fx, 0);
	assert_same_applied(fx, 0, 1);
	assert_same_applied(fx, 0, 2);
}

/* repl_settings.write_on_loop: no writer thread, the writes and the apply
 * barrier in the check phase as before it; same results. */
static void test_write_on_loop(void **state)
{
	struct fx *fx = *state;
	for (int i = 0; i < N_NODES; i++)
		node_stop(fx, i);
	fx->barrier_on = 1;
	for (int i = 0; i < N_NODES; i++) {
		fx->n[i].write_on_loop = 1;
		node_start(fx, i);
	}
	set_roles(fx, 1, 0);
	fx->window_left = 500;
	fx->ok = fx->unavailable = fx->not_primary = fx->other = 0;
	for (int k = 0; k < 16; k++)
		window_propose(fx);
	fx->done_target = 500;
	assert_true(run_until(fx, cond_done, 30000));
	assert_int_equal(fx->ok, 500);
	wait_all_applied(fx, 0);
	run_for(fx, 100);
	assert_same_applied(fx, 0, 1);
	assert_same_applied(fx, 0, 2);
	for (int i = 0; i < N_NODES; i++) {
		struct repl_node_counters c = counters_of(fx, i);
		assert_int_equal(c.group_writes, 0);   /* no writer thread */
		assert_true(c.sync_writes > 0);
		assert_true(barrier_calls(fx, i) > 0);
	}
}

/* ---- log writes that fail ------------------------------------------- */

static int cond_applied_everywhere(struct fx *fx, const char *payload)
{
	for (int i = 0; i < N_NODES; i++)
		if (fx->n[i].p != NULL && !applied_contains(&fx->n[i], payload))
			return 0;
	return 1;
}

static int cond_f0_everywhere(struct fx *fx)
{
	return cond_applied_everywhere(fx, "f-0");
}

/* The primary ships an entry as its own write of it begins; when that
 * write fails, the replicas may hold the entry, so the primary keeps it
 * and writes it again, at the same index (from its timer, or with the
 * next proposals), never another entry there. Its proposal's outcome is
 * unknown (an error), and it commits later: every node applies it once,
 * and the logs stay equal. */
static void test_primary_write_fails(void **state)
{
	struct fx *fx = *state;
	set_roles(fx, 1, 0);
	propose_wait(fx, 0, "warm", 3, 5000);
	assert_int_equal(fx->ok, 3);
	uint64_t last = status_of(fx, 0).last_index;
	repl_node_test_fail_writes(fx->n[0].node, 1);
	propose_wait(fx, 0, "f", 1, 5000);
	assert_int_equal(fx->other, 1);   /* MAIL_ERR_INTERNAL: outcome unknown */
	assert_true(run_until(fx, cond_f0_everywhere, 5000));
	propose_wait(fx, 0, "g", 4, 5000);
	assert_int_equal(fx->ok, 4);
	wait_all_applied(fx, 0);
	assert_int_equal(status_of(fx, 0).last_index, last + 5);
	buf b;
	buf_init(&b);
	uint64_t epoch;
	int kind;
	for (int i = 0; i < N_NODES; i++) {
		buf_reset(&b);
		assert_int_equal(repl_partition_entry(fx->n[i].p, last + 1, &epoch, &kind, &b), 1);
		assert_int_equal(b.len, 3);
		assert_memory_equal(b.data, "f-0", 3);
	}
	buf_deinit(&b);
	assert_same_log(fx, 0, 1);
	assert_same_log(fx, 0, 2);
	assert_same_applied(fx, 0, 1);
	assert_same_applied(fx, 0, 2);
	/* and after a restart of the primary, the same */
	node_stop(fx, 0);
	node_start(fx, 0);
	set_roles(fx, 2, 0);
	propose_wait(fx, 0, "h", 2, 5000);
	assert_int_equal(fx->ok, 2);
	wait_all_applied(fx, 0);
	assert_same_log(fx, 0, 1);
	assert_same_log(fx, 0, 2);
}

/* A replica whose write fails answers an error; the primary sends the
 * entries again and the proposal commits. */
static void test_replica_write_fails(void **state)
{
	struct fx *fx = *state;
	set_roles(fx, 1, 0);
	propose_wait(fx, 0, "warm", 2, 5000);
	repl_node_test_fail_writes(fx->n[1].node, 2);
	repl_node_test_fail_writes(fx->n[2].node, 1);
	propose_wait(fx, 0, "r", 5, 10000);
	assert_int_equal(fx->ok, 5);
	wait_all_applied(fx, 0);
	assert_same_log(fx, 0, 1);
	assert_same_log(fx, 0, 2);
	assert_same_applied(fx, 0, 1);
	assert_same_applied(fx, 0, 2);
}

/* A primary whose writes keep failing steps down once more than 4096
 * entries wait to be written again; the next primary (a higher epoch)
 * settles what the replicas hold of them, and the logs converge. */
static void test_primary_write_fails_steps_down(void **state)
{
	struct fx *fx = *state;
	set_roles(fx, 1, 0);
	propose_wait(fx, 0, "warm", 2, 5000);
	repl_node_test_fail_writes(fx->n[0].node, 1000000);
	fx->ok = fx->unavailable = fx->not_primary = fx->other = 0;
	enum { N = 4200 };
	for (int k = 0; k < N; k++)
		assert_int_equal(propose(fx, 0, "x", k), MAIL_OK);
	fx->done_target = N;
	assert_true(run_until(fx, cond_done, 10000));
	assert_int_equal(fx->ok, 0);
	assert_int_equal(status_of(fx, 0).role, REPL_ROLE_REPLICA);
	assert_int_equal(propose(fx, 0, "y", 0), MAIL_ERR_NOT_PRIMARY);
	repl_node_test_fail_writes(fx->n[0].node, 0);
	set_roles(fx, 2, 1);
	propose_wait(fx, 1, "z", 3, 10000);
	assert_int_equal(fx->ok, 3);
	wait_all_applied(fx, 1);
	assert_same_log(fx, 1, 0);
	assert_same_log(fx, 1, 2);
	assert_same_applied(fx, 1, 0);
	assert_same_applied(fx, 1, 2);
}

int main(void)
{
	/* as the daemons do (lib/daemon.c): a write to a node the test just
	 * stopped is an error on that connection, not the end of the run */
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_commit_500, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replica_loss, setup, teardown),
		cmocka_unit_test_setup_teardown(test_isr_rule, setup, teardown),
		cmocka_unit_test_setup_teardown(test_new_primary_fences_old, setup, teardown),
		cmocka_unit_test_setup_teardown(test_old_primary_tail_truncated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_commit_partitions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_apply_barrier, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_with_pending, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slow_write_loop_runs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slow_write_destroy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slow_write_close_and_role, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slow_write_compaction, setup_snap, teardown),
		cmocka_unit_test_setup_teardown(test_write_on_loop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compaction_bounds_log, setup_snap, teardown),
		cmocka_unit_test_setup_teardown(test_compaction_hysteresis, setup_snap, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_lagging_replica, setup_snap, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_fresh_replica, setup_snap, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_interrupted, setup_snap, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_stale_reply_new_epoch, setup_snap,
						teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_abandoned_for_log, setup_snap,
						teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_crash_mid_install, setup_snap,
						teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_stale_epoch, setup_snap, teardown),
		cmocka_unit_test_setup_teardown(test_primary_write_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replica_write_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_primary_write_fails_steps_down, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
