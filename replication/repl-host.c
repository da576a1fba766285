/* repl-host.c: a node's replicated partitions driven by the map (repl-host.h). */
#include "repl-host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "controller.h"
#include "etcd.h"
#include "log.h"
#include "mail-error.h"
#include "node-status.h"
#include "repl.h"
#include "router.h"
#include "util.h"
#include "xalloc.h"

#define LOG_SVC "repl"
#define RECONCILE_MS 200
/* A proposal not committed by then fails UNAVAILABLE (clients retry within
 * their own deadline). */
#define PROPOSE_TIMEOUT_MS 3000
#define PROGRESS_ATTEMPTS 3
#define PROGRESS_RETRY_MS 500

/* What applying one index computed, kept on the primary until the
 * proposal's callback takes it. */
struct part_result {
	uint64_t index;
	int status;
	buf resp;
};

struct part {
	repl_host *h;
	uint32_t id;
	repl_partition *p;
	char *sig;                  /* the map entry last given to set_role */
	int primary;
	uint64_t epoch;
	int waiting;                /* proposals of this node not yet done */
	int leading;                /* on_leading(id, 1) was the last call */
	int installing;             /* a snapshot install began, not ended */
	struct part_result *results;
	size_t n_results, cap_results;
};

struct repl_host {
	uv_loop_t *loop;
	enum router_role role;
	const struct repl_host_ops *ops;
	void *owner;
	char *node_id;
	router *router;
	router_member *member;
	router_controller *ctl;
	repl_node *repl;
	uv_timer_t *timer;          /* reconcile; freed by its close callback */
	node_status_publisher *status; /* this node's status key */
	struct progress_reporter *progress; /* this node's progress reports */
	etcd_stats *etcd_stats;     /* the owner's; may be NULL */
	int stopping;               /* no more on_leading calls */
	struct part **parts;        /* by partition id; NULL when not held */
	uint32_t n_parts;
	struct repl_callbacks cbs;
	struct repl_snapshot_callbacks snap_cbs;
};

struct propose_ctx {
	struct part *part;
	repl_host_done_cb *cb;
	void *arg;
};

/* ---- results ----------------------------------------------------------- */

static void results_drop_upto(struct part *pt, uint64_t index)
{
	size_t k = 0;
	while (k < pt->n_results && pt->results[k].index <= index)
		buf_deinit(&pt->results[k++].resp);
	if (k == 0)
		return; /* also covers results == NULL: no pointer arithmetic on it */
	memmove(pt->results, pt->results + k, (pt->n_results - k) * sizeof *pt->results);
	pt->n_results -= k;
}

static void on_apply(repl_partition *p, uint64_t index, const uint8_t *payload, size_t len,
		     void *arg)
{
	(void)p;
	struct part *pt = arg;
	buf out;
	buf_init(&out);
	repl_host *h = pt->h;
	if (pt->installing) {
		/* The install was abandoned and the log applies from index 1
		 * again: the chunks taken so far go first. */
		pt->installing = 0;
		h->ops->snapshot_install(h->owner, pt->id, h->n_parts, 1, 0, NULL, 0, 0);
	}
	int status = h->ops->apply(h->owner, pt->id, index, payload, len, &out);
	if (pt->waiting == 0) {
		buf_deinit(&out);
		return;
	}
	if (pt->n_results == pt->cap_results) {
		pt->cap_results = pt->cap_results ? pt->cap_results * 2 : 16;
		pt->results = xrealloc(pt->results, pt->cap_results * sizeof *pt->results);
	}
	pt->results[pt->n_results++] = (struct part_result){ index, status, out };
}

static void propose_cb(int status, uint64_t index, void *arg)
{
	struct propose_ctx *ctx = arg;
	struct part *pt = ctx->part;
	pt->waiting--;
	struct part_result *r = NULL;
	for (size_t k = 0; status == MAIL_OK && k < pt->n_results; k++)
		if (pt->results[k].index == index)
			r = &pt->results[k];
	if (status == MAIL_OK && r == NULL)
		status = MAIL_ERR_INTERNAL;
	if (r != NULL)
		ctx->cb(MAIL_OK, r->status, r->resp.data, r->resp.len, ctx->arg);
	else
		ctx->cb(status, status, NULL, 0, ctx->arg);
	if (status == MAIL_OK)
		results_drop_upto(pt, index);
	if (pt->waiting == 0)
		results_drop_upto(pt, UINT64_MAX);
	free(ctx);
}

int repl_host_propose(repl_host *h, uint32_t partition, const void *payload, size_t len,
		      repl_host_done_cb *cb, void *arg)
{
	if (partition >= h->n_parts || h->parts[partition] == NULL)
		return MAIL_ERR_NOT_PRIMARY;
	struct part *pt = h->parts[partition];
	struct propose_ctx *ctx = xcalloc(1, sizeof *ctx);
	*ctx = (struct propose_ctx){ pt, cb, arg };
	int ret = repl_partition_propose(pt->p, payload, len, propose_cb, ctx);
	if (ret != MAIL_OK) {
		free(ctx);
		return ret;
	}
	pt->waiting++;
	return MAIL_OK;
}

int repl_host_partition_of(repl_host *h, const void *key, size_t len,
			   uint32_t *partition_r)
{
	uint32_t n = router_partition_count(h->router, h->role);
	if (n == 0)
		return MAIL_ERR_UNAVAILABLE;
	*partition_r = router_partition_of(key, len, n);
	return MAIL_OK;
}

int repl_host_primary_of(repl_host *h, const void *key, size_t len, int read,
			 uint32_t *partition_r)
{
	uint32_t partition;
	if (repl_host_partition_of(h, key, len, &partition) != MAIL_OK)
		return MAIL_ERR_NOT_PRIMARY;
	if (partition >= h->n_parts || h->parts[partition] == NULL ||
	    !h->parts[partition]->primary)
		return MAIL_ERR_NOT_PRIMARY;
	struct repl_status st;
	repl_partition_status(h->parts[partition]->p, &st);
	if (st.role != REPL_ROLE_PRIMARY)
		return MAIL_ERR_NOT_PRIMARY;
	/* A new primary answers reads once it has applied everything up to
	 * its barrier (every write acknowledged before it took over). */
	if (read && st.applied_index < st.epoch_start)
		return MAIL_ERR_UNAVAILABLE;
	/* ... and only while its own lease surely holds: a primary cut off
	 * from etcd could otherwise answer from a state that a promoted
	 * replica has since moved past (writes need no such check: they
	 * cannot commit without the replicas, which fence the old epoch). */
	if (read && util_now_mono_ms() >= router_member_lease_valid_until(h->member))
		return MAIL_ERR_UNAVAILABLE;
	*partition_r = partition;
	return MAIL_OK;
}

/* ---- progress reports (thread pool) ------------------------------------ */

/* One report per partition is in flight at a time, and it carries the
 * newest epoch this node caught up at: reports racing on the pool could
 * otherwise land out of order, leaving an older epoch in the key for good
 * (the controller then never sees this node current, and a drain or a
 * move that needs it waits forever). A report that failed every attempt
 * is sent again from the reconcile timer. The reporter outlives its host
 * while jobs are in flight (refs). */
struct progress_slot {
	uint64_t want;   /* newest epoch caught up at (0: none) */
	uint64_t stored; /* epoch etcd holds for us */
	int inflight;
};

struct progress_reporter {
	int refs;
	int dead;        /* the host is gone: finish, send nothing more */
	etcd_conf *etcd;
	etcd_stats *stats;
	etcd_pool *pool; /* the jobs' clients: one connection per job at once,
			  * not one per report */
	const char *role;
	char *node_id;
	uv_loop_t *loop;
	struct progress_slot *slots;
	uint32_t n_slots;
};

struct progress_job {
	uv_work_t work;
	struct progress_reporter *r;
	uint32_t partition;
	uint64_t epoch;
	char key[160];
	char value[64];
	int status;
};

static struct progress_reporter *progress_reporter_new(uv_loop_t *loop, const etcd_conf *etcd,
							etcd_stats *stats, const char *role,
							const char *node_id)
{
	struct progress_reporter *r = xcalloc(1, sizeof *r);
	r->refs = 1;
	r->loop = loop;
	r->etcd = etcd_conf_dup(etcd);
	r->stats = stats;
	r->pool = etcd_pool_create(etcd, stats, 4);
	r->role = role;
	r->node_id = xstrdup(node_id);
	return r;
}

static void progress_reporter_unref(struct progress_reporter **rp)
{
	struct progress_reporter *r = *rp;
	*rp = NULL;
	if (r == NULL || --r->refs > 0)
		return;
	free(r->slots);
	etcd_pool_destroy(&r->pool);
	etcd_conf_free(&r->etcd);
	free(r->node_id);
	free(r);
}

static void progress_work_cb(uv_work_t *w)
{
	struct progress_job *j = w->data;
	etcd_client *etcd = etcd_pool_take(j->r->pool);
	for (int attempt = 0; attempt < PROGRESS_ATTEMPTS; attempt++) {
		if (attempt > 0)
			uv_sleep(PROGRESS_RETRY_MS);
		j->status = etcd_kv_put(etcd, j->key, j->value, strlen(j->value), 0);
		if (j->status == MAIL_OK)
			break;
	}
	etcd_pool_give(j->r->pool, &etcd);
}

static void progress_send(struct progress_reporter *r, uint32_t partition);

static void progress_done_cb(uv_work_t *w, int status)
{
	struct progress_job *j = w->data;
	struct progress_reporter *r = j->r;
	struct progress_slot *slot = &r->slots[j->partition];
	slot->inflight = 0;
	if (status == 0 && j->status == MAIL_OK) {
		slot->stored = j->epoch;
		log_event(LOG_INFO, LOG_SVC, "event=progress_reported key=%s value=%s", j->key,
			  j->value);
	} else {
		log_event(LOG_WARN, LOG_SVC, "event=progress_report_failed key=%s status=%d",
			  j->key, j->status);
	}
	if (!r->dead && j->status == MAIL_OK)
		progress_send(r, j->partition); /* a newer epoch may wait */
	free(j);
	progress_reporter_unref(&r);
}

/* Start a report for partition when one is due and none is in flight. */
static void progress_send(struct progress_reporter *r, uint32_t partition)
{
	struct progress_slot *slot = &r->slots[partition];
	if (slot->inflight || slot->want == 0 || slot->want == slot->stored)
		return;
	struct progress_job *j = xcalloc(1, sizeof *j);
	j->work.data = j;
	j->r = r;
	j->partition = partition;
	j->epoch = slot->want;
	snprintf(j->key, sizeof j->key, "/mail/v1/progress/%s/%u/%s", r->role, partition,
		 r->node_id);
	snprintf(j->value, sizeof j->value, "{\"epoch\":%llu}", (unsigned long long)j->epoch);
	slot->inflight = 1;
	r->refs++;
	uv_queue_work(r->loop, &j->work, progress_work_cb, progress_done_cb);
}

/* This node caught up with partition at epoch: report it (newest wins). */
static void progress_caught_up(struct progress_reporter *r, uint32_t partition, uint64_t epoch)
{
	if (partition >= r->n_slots) {
		uint32_t n = partition + 1;
		r->slots = xrealloc(r->slots, n * sizeof *r->slots);
		memset(r->slots + r->n_slots, 0, (n - r->n_slots) * sizeof *r->slots);
		r->n_slots = n;
	}
	if (epoch > r->slots[partition].want)
		r->slots[partition].want = epoch;
	progress_send(r, partition);
}

/* Resend what failed (reconcile timer). */
static void progress_retry(struct progress_reporter *r)
{
	for (uint32_t p = 0; p < r->n_slots; p++)
		progress_send(r, p);
}

static void on_caught_up(repl_partition *p, uint32_t partition, uint64_t epoch, void *arg)
{
	(void)p;
	struct part *pt = arg;
	progress_caught_up(pt->h->progress, partition, epoch);
}

/* ---- status publishing ------------------------------------------------- */

/* What node-status.h publishes for this node: the partitions it leads and,
 * per partition, the peers behind by more than the slack. Nothing here
 * moves while every replica keeps up, so the publisher writes only on a
 * change (a new primary, a new epoch, a replica falling behind or catching
 * up). */
static void status_collect_cb(buf *out, void *arg)
{
	repl_host *h = arg;
	node_status_lead *leads = xcalloc(h->n_parts + 1, sizeof *leads);
	size_t n = 0;
	for (uint32_t id = 0; id < h->n_parts; id++) {
		if (h->parts[id] == NULL || !h->parts[id]->primary)
			continue;
		struct repl_status st;
		repl_partition_status(h->parts[id]->p, &st);
		if (st.role != REPL_ROLE_PRIMARY)
			continue;
		node_status_lead *l = &leads[n++];
		l->partition = id;
		l->epoch = st.epoch;
		for (size_t k = 0; k < st.n_peers && k < NODE_STATUS_PEERS_MAX; k++) {
			const struct repl_peer_status *peer = &st.peers[k];
			uint64_t behind = st.last_index > peer->match_index
						  ? st.last_index - peer->match_index : 0;
			uint64_t lag = node_status_lag_round(behind);
			if (lag == 0)
				continue;
			node_status_lag *g = &l->lagging[l->n_lagging++];
			snprintf(g->id, sizeof g->id, "%s", peer->node_id);
			g->lag = lag;
		}
	}
	node_status_encode(leads, n, out);
	free(leads);
}

/* ---- snapshots (the owner's ops behind repl.h's callbacks) ---------------- */

static int snap_open_cb(repl_partition *p, uint32_t partition, void *arg, void **snap_r,
			uint64_t *index_r)
{
	struct part *pt = arg;
	repl_host *h = pt->h;
	/* The view is taken now, on the loop that applies: it holds exactly
	 * what the log has applied (barriers included). */
	struct repl_status st;
	repl_partition_status(p, &st);
	if (h->ops->snapshot_open(h->owner, partition, h->n_parts, snap_r) < 0)
		return -1;
	*index_r = st.applied_index;
	return 0;
}

static int snap_install_cb(repl_partition *p, uint32_t partition, void *arg, int first,
			   int last, const uint8_t *chunk, size_t len, uint64_t index)
{
	(void)p;
	struct part *pt = arg;
	repl_host *h = pt->h;
	pt->installing = !last;
	int ret = h->ops->snapshot_install(h->owner, partition, h->n_parts, first, last, chunk,
					   len, index);
	if (last && ret == 0)
		log_event(LOG_INFO, LOG_SVC, "event=snapshot_installed role=%s partition=%u "
			  "index=%llu", router_role_name(h->role), partition,
			  (unsigned long long)index);
	return ret;
}

/* ---- reconcile with the map ---------------------------------------------- */

static void part_set_leading(repl_host *h, struct part *pt, int leading)
{
	if (pt->leading == leading)
		return;
	pt->leading = leading;
	log_event(LOG_INFO, LOG_SVC, "event=partition_leading role=%s partition=%u "
		  "epoch=%llu leading=%d", router_role_name(h->role), pt->id,
		  (unsigned long long)pt->epoch, leading);
	if (h->ops->on_leading != NULL && !h->stopping)
		h->ops->on_leading(h->owner, pt->id, leading);
}

static void part_close(repl_host *h, uint32_t id)
{
	struct part *pt = h->parts[id];
	if (pt == NULL)
		return;
	part_set_leading(h, pt, 0);
	h->parts[id] = NULL;
	log_event(LOG_INFO, LOG_SVC, "event=partition_closed role=%s partition=%u",
		  router_role_name(h->role), id);
	repl_partition_close(&pt->p);   /* fails pending proposals from here */
	results_drop_upto(pt, UINT64_MAX);
	free(pt->results);
	free(pt->sig);
	free(pt);
}

static struct part *part_open(repl_host *h, uint32_t id)
{
	uint64_t applied;
	if (h->ops->applied_index(h->owner, id, &applied) != MAIL_OK)
		return NULL;
	/* Applied 0 with data would be what an install cut short by a crash
	 * leaves (it started by dropping the state): drop the rest too. */
	if (applied == 0 && h->ops->snapshot_install != NULL &&
	    h->ops->snapshot_install(h->owner, id, h->n_parts, 1, 0, NULL, 0, 0) < 0)
		return NULL;
	struct part *pt = xcalloc(1, sizeof *pt);
	pt->h = h;
	pt->id = id;
	const char *error;
	if (repl_partition_open(h->repl, id, &h->cbs, pt, applied, &pt->p, &error) < 0) {
		log_event(LOG_ERROR, LOG_SVC, "event=partition_open_failed partition=%u error=\"%s\"",
			  id, error);
		free(pt);
		return NULL;
	}
	if (h->ops->snapshot_open != NULL)
		repl_partition_set_snapshot_callbacks(pt->p, &h->snap_cbs);
	h->parts[id] = pt;
	return pt;
}

static void reconcile_partition(repl_host *h, const router_partition *rp)
{
	int mine = 0;
	for (uint32_t k = 0; k < rp->n_replicas; k++)
		if (strcmp(rp->replicas[k].id, h->node_id) == 0)
			mine = 1;
	uint32_t id = rp->partition;
	if (!mine) {
		part_close(h, id);
		return;
	}
	struct part *pt = h->parts[id];
	if (pt == NULL && (pt = part_open(h, id)) == NULL)
		return;
	buf sig;
	buf_init(&sig);
	buf_printf(&sig, "%llu", (unsigned long long)rp->epoch);
	struct repl_replica reps[ROUTER_REPLICAS_MAX];
	for (uint32_t k = 0; k < rp->n_replicas; k++) {
		const router_replica *r = &rp->replicas[k];
		buf_printf(&sig, " %s@%s:%d/%d", r->id, r->host, r->port, r->in_sync);
		reps[k] = (struct repl_replica){ r->id, r->host, r->port, r->in_sync };
	}
	buf_append(&sig, "", 1);
	if (pt->sig == NULL || strcmp(pt->sig, (const char *)sig.data) != 0) {
		int primary = strcmp(rp->replicas[0].id, h->node_id) == 0;
		int ret = repl_partition_set_role(pt->p, rp->epoch, primary, reps,
						  rp->n_replicas);
		if (ret == MAIL_OK) {
			if (primary != pt->primary || rp->epoch != pt->epoch)
				log_event(LOG_INFO, LOG_SVC, "event=partition_role role=%s "
					  "partition=%u epoch=%llu is=%s map=\"%s\"",
					  router_role_name(h->role), id,
					  (unsigned long long)rp->epoch,
					  primary ? "primary" : "replica", (const char *)sig.data);
			pt->primary = primary;
			pt->epoch = rp->epoch;
			free(pt->sig);
			pt->sig = xstrdup((const char *)sig.data);
		} else if (ret != MAIL_ERR_STALE_EPOCH) {
			log_event(LOG_WARN, LOG_SVC, "event=set_role_failed partition=%u "
				  "status=%s", id, mail_error_info(ret)->name);
		}
	}
	buf_deinit(&sig);
	/* Leading: primary in the log too, and every entry up to its barrier
	 * applied (it then holds every acknowledged write). */
	struct repl_status st;
	repl_partition_status(pt->p, &st);
	part_set_leading(h, pt, pt->primary && st.role == REPL_ROLE_PRIMARY &&
			 st.applied_index >= st.epoch_start);
}

static void reconcile_cb(uv_timer_t *t)
{
	repl_host *h = t->data;
	uint32_t n = router_partition_count(h->router, h->role);
	if (n == 0)
		return;
	if (n != h->n_parts) {
		for (uint32_t id = n; id < h->n_parts; id++)
			part_close(h, id);
		h->parts = xrealloc(h->parts, n * sizeof *h->parts);
		for (uint32_t id = h->n_parts; id < n; id++)
			h->parts[id] = NULL;
		h->n_parts = n;
	}
	router_partition rp;
	for (uint32_t id = 0; id < n; id++)
		if (router_lookup_partition(h->router, h->role, id, &rp) == 1)
			reconcile_partition(h, &rp);
	progress_retry(h->progress);
}

/* ---- lifetime ------------------------------------------------------------ */

static uv_timer_t *timer_new(uv_loop_t *loop, repl_host *h, uv_timer_cb cb, uint64_t period)
{
	uv_timer_t *t = xcalloc(1, sizeof *t);
	uv_timer_init(loop, t);
	t->data = h;
	uv_timer_start(t, cb, 0, period);
	return t;
}

int repl_host_start(uv_loop_t *loop, rpc_server *server, const struct repl_host_settings *set,
		    const struct repl_host_ops *ops, void *owner, repl_host **host_r,
		    const char **error_r)
{
	repl_host *h = xcalloc(1, sizeof *h);
	h->loop = loop;
	h->role = set->role;
	h->ops = ops;
	h->owner = owner;
	h->node_id = xstrdup(set->node_id);
	h->etcd_stats = set->etcd_stats;
	h->progress = progress_reporter_new(loop, set->etcd, set->etcd_stats,
					    router_role_name(set->role), set->node_id);
	h->cbs = (struct repl_callbacks){ on_apply, on_caught_up };
	if (ops->snapshot_open != NULL)
		h->snap_cbs = (struct repl_snapshot_callbacks){
			snap_open_cb, ops->snapshot_next, ops->snapshot_close, snap_install_cb
		};
	struct repl_settings rs = {
		.node_id = set->node_id,
		.dir = set->repl_dir,
		.propose_timeout_ms = set->propose_timeout_ms ? set->propose_timeout_ms
							      : PROPOSE_TIMEOUT_MS,
		.log_keep_entries = set->log_keep_entries,
		.log_keep_bytes = set->log_keep_bytes,
		.write_on_loop = set->write_on_loop,
		.peer_tls = set->tls,
		/* a store's partitions replicate to stores, a queue's to queues */
		.peer_roles = rpc_role_parse(router_role_name(set->role)),
		.apply_barrier = ops->apply_barrier,
		.apply_barrier_arg = owner,
	};
	*host_r = h;
	if (repl_node_create(loop, &rs, &h->repl, error_r) < 0 ||
	    repl_node_attach(h->repl, server, error_r) < 0)
		return -1;
	router_member_settings ms = {
		.ttl_s = set->ttl_s,
		.n_partitions = set->n_partitions,
		.n_replicas = set->n_replicas,
		.controller_managed = 1,
		.etcd_stats = set->etcd_stats,
	};
	if (router_member_start_ex(loop, set->etcd, set->role, set->node_id, set->host,
				   set->port, &ms, &h->member, error_r) < 0)
		return -1;
	if (router_create(set->etcd, &h->router, error_r) < 0)
		return -1;
	if (router_controller_start(loop, set->etcd, set->node_id, set->ttl_s,
				    set->etcd_stats, &h->ctl, error_r) < 0)
		return -1;
	h->timer = timer_new(loop, h, reconcile_cb, RECONCILE_MS);
	char *key = xasprintf(NODE_STATUS_KEY "%s/%s", router_role_name(h->role), h->node_id);
	node_status_settings ss = {
		.etcd = set->etcd,
		.key = key,
		.stats = set->etcd_stats,
	};
	h->status = node_status_publisher_start(loop, &ss, status_collect_cb, h);
	free(key);
	return 0;
}

static void timer_close_cb(uv_handle_t *t)
{
	free(t);
}

static void timer_close(uv_timer_t **t)
{
	if (*t != NULL) {
		uv_close((uv_handle_t *)*t, timer_close_cb);
		*t = NULL;
	}
}

void repl_host_stop(repl_host *h)
{
	if (h == NULL)
		return;
	h->stopping = 1;
	router_controller_stop(&h->ctl);
	router_member_stop(&h->member);
	timer_close(&h->timer);
	node_status_publisher_destroy(&h->status);
}

void repl_host_destroy(repl_host **hp)
{
	repl_host *h = *hp;
	if (h == NULL)
		return;
	*hp = NULL;
	repl_host_stop(h);
	for (uint32_t id = 0; id < h->n_parts; id++)
		part_close(h, id);
	free(h->parts);
	h->progress->dead = 1;
	progress_reporter_unref(&h->progress);
	repl_node_destroy(&h->repl);
	router_destroy(&h->router);
	free(h->node_id);
	free(h);
}

void repl_host_metrics(repl_host *h, buf *out, const char *labels)
{
	struct repl_node_counters c;
	repl_node_counters(h->repl, &c);
	buf_printf(out,
		   "# TYPE mail_repl_log_writes_total counter\n"
		   "mail_repl_log_writes_total{%s} %llu\n"
		   "# TYPE mail_repl_log_write_seconds_total counter\n"
		   "mail_repl_log_write_seconds_total{%s} %.6f\n"
		   "# TYPE mail_repl_log_write_max_seconds gauge\n"
		   "mail_repl_log_write_max_seconds{%s} %.6f\n"
		   "# TYPE mail_repl_log_sync_writes_total counter\n"
		   "mail_repl_log_sync_writes_total{%s} %llu\n"
		   "# TYPE mail_repl_loop_waits_total counter\n"
		   "mail_repl_loop_waits_total{%s} %llu\n",
		   labels, (unsigned long long)c.group_writes,
		   labels, (double)c.group_write_us / 1e6,
		   labels, (double)c.group_write_max_us / 1e6,
		   labels, (unsigned long long)c.sync_writes,
		   labels, (unsigned long long)c.loop_waits);
}

router *repl_host_router(repl_host *h)
{
	return h->router;
}

uint32_t repl_host_partition_count(const repl_host *h)
{
	return h->n_parts;
}

int repl_host_leading(const repl_host *h, uint32_t partition)
{
	return partition < h->n_parts && h->parts[partition] != NULL &&
	       h->parts[partition]->leading;
}
