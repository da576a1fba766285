/* partitions.c: a store node's replicated partitions (partitions.h). */
#include "partitions.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "controller.h"
#include "etcd.h"
#include "log.h"
#include "mail-error.h"
#include "repl.h"
#include "router.h"
#include "store-service.h"
#include "xalloc.h"

#define LOG_SVC "store"
#define RECONCILE_MS 200
/* A proposal not committed by then fails UNAVAILABLE (the store client
 * retries within its own deadline). */
#define PROPOSE_TIMEOUT_MS 3000
#define PROGRESS_ATTEMPTS 10
#define PROGRESS_RETRY_MS 500

/* What applying one index computed, kept on the primary until the
 * proposal's callback takes it. */
struct part_result {
	uint64_t index;
	int status;
	buf resp;
};

struct part {
	store_partitions *sp;
	uint32_t id;
	repl_partition *p;
	char *sig;                  /* the map entry last given to set_role */
	int primary;
	uint64_t epoch;
	int waiting;                /* proposals of this node not yet done */
	struct part_result *results;
	size_t n_results, cap_results;
};

struct store_partitions {
	uv_loop_t *loop;
	mailstore *store;
	char *node_id;
	char *etcd_url;
	router *router;
	router_member *member;
	router_controller *ctl;
	repl_node *repl;
	uv_timer_t *timer;          /* freed by its close callback */
	struct part **parts;        /* by partition id; NULL when not held */
	uint32_t n_parts;
	struct repl_callbacks cbs;
};

struct propose_ctx {
	struct part *part;
	store_partitions_done_cb *cb;
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
	int status = store_service_apply(pt->sp->store, pt->id, index, payload, len, &out);
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

int store_partitions_propose(store_partitions *sp, uint32_t partition, const void *payload,
			     size_t len, store_partitions_done_cb *cb, void *arg)
{
	if (partition >= sp->n_parts || sp->parts[partition] == NULL)
		return MAIL_ERR_NOT_PRIMARY;
	struct part *pt = sp->parts[partition];
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

int store_partitions_primary(store_partitions *sp, const char *user, int read,
			     uint32_t *partition_r)
{
	uint32_t n = router_partition_count(sp->router, ROUTER_ROLE_STORE);
	if (n == 0)
		return MAIL_ERR_NOT_PRIMARY;
	uint32_t partition = router_partition_of(user, strlen(user), n);
	if (partition >= sp->n_parts || sp->parts[partition] == NULL ||
	    !sp->parts[partition]->primary)
		return MAIL_ERR_NOT_PRIMARY;
	struct repl_status st;
	repl_partition_status(sp->parts[partition]->p, &st);
	if (st.role != REPL_ROLE_PRIMARY)
		return MAIL_ERR_NOT_PRIMARY;
	/* A new primary answers reads once it has applied everything up to
	 * its barrier (every write acknowledged before it took over). */
	if (read && st.applied_index < st.epoch_start)
		return MAIL_ERR_UNAVAILABLE;
	*partition_r = partition;
	return MAIL_OK;
}

/* ---- progress reports (thread pool) ------------------------------------ */

struct progress_job {
	uv_work_t work;
	char *etcd_url;
	char key[160];
	char value[64];
	int status;
};

static void progress_work_cb(uv_work_t *w)
{
	struct progress_job *j = w->data;
	etcd_client *etcd = etcd_client_create(j->etcd_url);
	/* A lost report would keep the replica out of the in-sync set until
	 * the next epoch: retry a few times (this is a pool thread). */
	for (int attempt = 0; attempt < PROGRESS_ATTEMPTS; attempt++) {
		if (attempt > 0)
			uv_sleep(PROGRESS_RETRY_MS);
		j->status = etcd_kv_put(etcd, j->key, j->value, strlen(j->value), 0);
		if (j->status == MAIL_OK)
			break;
	}
	etcd_client_destroy(&etcd);
}

static void progress_done_cb(uv_work_t *w, int status)
{
	struct progress_job *j = w->data;
	if (status == 0 && j->status == MAIL_OK)
		log_event(LOG_INFO, LOG_SVC, "event=progress_reported key=%s value=%s", j->key,
			  j->value);
	else
		log_event(LOG_WARN, LOG_SVC, "event=progress_report_failed key=%s status=%d",
			  j->key, j->status);
	free(j->etcd_url);
	free(j);
}

static void on_caught_up(repl_partition *p, uint32_t partition, uint64_t epoch, void *arg)
{
	(void)p;
	struct part *pt = arg;
	store_partitions *sp = pt->sp;
	struct progress_job *j = xcalloc(1, sizeof *j);
	j->work.data = j;
	j->etcd_url = xstrdup(sp->etcd_url);
	snprintf(j->key, sizeof j->key, "/mail/v1/progress/store/%u/%s", partition, sp->node_id);
	snprintf(j->value, sizeof j->value, "{\"epoch\":%llu}", (unsigned long long)epoch);
	uv_queue_work(sp->loop, &j->work, progress_work_cb, progress_done_cb);
}

/* ---- reconcile with the map ---------------------------------------------- */

static void part_close(store_partitions *sp, uint32_t id)
{
	struct part *pt = sp->parts[id];
	if (pt == NULL)
		return;
	sp->parts[id] = NULL;
	log_event(LOG_INFO, LOG_SVC, "event=partition_closed partition=%u", id);
	repl_partition_close(&pt->p);   /* fails pending proposals from here */
	results_drop_upto(pt, UINT64_MAX);
	free(pt->results);
	free(pt->sig);
	free(pt);
}

static struct part *part_open(store_partitions *sp, uint32_t id)
{
	uint64_t applied;
	if (mailstore_applied_index(sp->store, id, &applied) != MAIL_OK)
		return NULL;
	struct part *pt = xcalloc(1, sizeof *pt);
	pt->sp = sp;
	pt->id = id;
	const char *error;
	if (repl_partition_open(sp->repl, id, &sp->cbs, pt, applied, &pt->p, &error) < 0) {
		log_event(LOG_ERROR, LOG_SVC, "event=partition_open_failed partition=%u error=\"%s\"",
			  id, error);
		free(pt);
		return NULL;
	}
	sp->parts[id] = pt;
	return pt;
}

static void reconcile_partition(store_partitions *sp, const router_partition *rp)
{
	int mine = 0;
	for (uint32_t k = 0; k < rp->n_replicas; k++)
		if (strcmp(rp->replicas[k].id, sp->node_id) == 0)
			mine = 1;
	uint32_t id = rp->partition;
	if (!mine) {
		part_close(sp, id);
		return;
	}
	struct part *pt = sp->parts[id];
	if (pt == NULL && (pt = part_open(sp, id)) == NULL)
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
	if (pt->sig != NULL && strcmp(pt->sig, (const char *)sig.data) == 0) {
		buf_deinit(&sig);
		return;
	}
	int primary = strcmp(rp->replicas[0].id, sp->node_id) == 0;
	int ret = repl_partition_set_role(pt->p, rp->epoch, primary, reps, rp->n_replicas);
	if (ret == MAIL_OK) {
		if (primary != pt->primary || rp->epoch != pt->epoch)
			log_event(LOG_INFO, LOG_SVC, "event=partition_role partition=%u epoch=%llu "
				  "role=%s map=\"%s\"", id, (unsigned long long)rp->epoch,
				  primary ? "primary" : "replica", (const char *)sig.data);
		pt->primary = primary;
		pt->epoch = rp->epoch;
		free(pt->sig);
		pt->sig = xstrdup((const char *)sig.data);
	} else if (ret != MAIL_ERR_STALE_EPOCH) {
		log_event(LOG_WARN, LOG_SVC, "event=set_role_failed partition=%u status=%s", id,
			  mail_error_info(ret)->name);
	}
	buf_deinit(&sig);
}

static void reconcile_cb(uv_timer_t *t)
{
	store_partitions *sp = t->data;
	uint32_t n = router_partition_count(sp->router, ROUTER_ROLE_STORE);
	if (n == 0)
		return;
	if (n != sp->n_parts) {
		for (uint32_t id = n; id < sp->n_parts; id++)
			part_close(sp, id);
		sp->parts = xrealloc(sp->parts, n * sizeof *sp->parts);
		for (uint32_t id = sp->n_parts; id < n; id++)
			sp->parts[id] = NULL;
		sp->n_parts = n;
	}
	router_partition rp;
	for (uint32_t id = 0; id < n; id++)
		if (router_lookup_partition(sp->router, ROUTER_ROLE_STORE, id, &rp) == 1)
			reconcile_partition(sp, &rp);
}

/* ---- lifetime ------------------------------------------------------------ */

int store_partitions_start(uv_loop_t *loop, mailstore *store, rpc_server *server,
			   const struct store_partitions_settings *set, store_partitions **sp_r,
			   const char **error_r)
{
	store_partitions *sp = xcalloc(1, sizeof *sp);
	sp->loop = loop;
	sp->store = store;
	sp->node_id = xstrdup(set->node_id);
	sp->etcd_url = xstrdup(set->etcd_url);
	sp->cbs = (struct repl_callbacks){ on_apply, on_caught_up };
	struct repl_settings rs = {
		.node_id = set->node_id,
		.dir = set->repl_dir,
		.propose_timeout_ms = PROPOSE_TIMEOUT_MS,
	};
	*sp_r = sp;
	if (repl_node_create(loop, &rs, &sp->repl, error_r) < 0 ||
	    repl_node_attach(sp->repl, server, error_r) < 0)
		return -1;
	router_member_settings ms = {
		.ttl_s = set->ttl_s,
		.n_partitions = set->n_partitions,
		.n_replicas = set->n_replicas,
		.controller_managed = 1,
	};
	if (router_member_start_ex(loop, set->etcd_url, ROUTER_ROLE_STORE, set->node_id,
				   set->host, set->port, &ms, &sp->member, error_r) < 0)
		return -1;
	if (router_create(set->etcd_url, &sp->router, error_r) < 0)
		return -1;
	if (router_controller_start(loop, set->etcd_url, set->node_id, set->ttl_s, &sp->ctl,
				    error_r) < 0)
		return -1;
	sp->timer = xcalloc(1, sizeof *sp->timer);
	uv_timer_init(loop, sp->timer);
	sp->timer->data = sp;
	uv_timer_start(sp->timer, reconcile_cb, 0, RECONCILE_MS);
	return 0;
}

static void timer_close_cb(uv_handle_t *h)
{
	free(h);
}

void store_partitions_stop(store_partitions *sp)
{
	if (sp == NULL)
		return;
	router_controller_stop(&sp->ctl);
	router_member_stop(&sp->member);
	if (sp->timer != NULL) {
		uv_close((uv_handle_t *)sp->timer, timer_close_cb);
		sp->timer = NULL;
	}
}

void store_partitions_destroy(store_partitions **spp)
{
	store_partitions *sp = *spp;
	if (sp == NULL)
		return;
	*spp = NULL;
	store_partitions_stop(sp);
	for (uint32_t id = 0; id < sp->n_parts; id++)
		part_close(sp, id);
	free(sp->parts);
	repl_node_destroy(&sp->repl);
	router_destroy(&sp->router);
	free(sp->node_id);
	free(sp->etcd_url);
	free(sp);
}
