/* controller.c: election and map upkeep (controller.h).
 *
 * Two threads, each with its own etcd handle:
 *   main:  grant/renew the lease; campaign (create-if-absent of the
 *          controller key under it); when active, reconcile every role's
 *          map on each wake-up. Sleeps on `cond` until the next renewal or
 *          resync, or until the watch marks the state dirty.
 *   watch: watches [alive/, ring0) (alive/, controller, nodes/, progress/,
 *          ring/) from now; any event sets `dirty`. After a lost watch it
 *          marks dirty too (the resync reads everything anyway).
 *
 * Why the rules keep the invariants is written at ring_map_reconcile
 * (ring.h, ring-reconcile.c); here the point is that a map is only ever
 * written as old -> reconcile(old) with a compare-and-swap on old's
 * mod_revision, so a write computed from a stale map cannot land.
 */
#include "controller-private.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "etcd.h"
#include "log.h"
#include "mail-error.h"
#include "ring.h"
#include "router-private.h"
#include "util.h"
#include "xalloc.h"

#define CTL_KEY ROUTER_KEY_ROOT "controller"
#define CTL_KEY_PROGRESS ROUTER_KEY_ROOT "progress/"
#define CTL_CAS_ATTEMPTS 16
#define CTL_RETRY_MS 500

struct router_controller {
	uv_loop_t *loop; /* unused today: see controller.h */
	char id[ROUTER_ID_MAX];
	int ttl_s;
	router__controller_hooks hooks;
	etcd_client *etcd;  /* main thread */
	etcd_client *wetcd; /* watch thread */
	pthread_t main_thread, watch_thread;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int dirty;    /* under mu */
	int stopping; /* under mu; also read atomically by the watch */
	int active;   /* atomic */
	int64_t lease; /* main thread (and stop, after the join) */
	int resync_ms;
	/* main thread: no rebalancing pass (ring.h rule 6) for a role before
	 * this time (monotonic ms): a resync interval after our last write */
	uint64_t next_rebalance[ROUTER_ROLE_COUNT_];
};

static uint64_t ctl__now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void ctl__mark_dirty(router_controller *c)
{
	pthread_mutex_lock(&c->mu);
	c->dirty = 1;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->mu);
}

/* ---- watch thread ------------------------------------------------------ */

static int ctl__event_cb(const etcd_event *ev, void *arg)
{
	(void)ev;
	ctl__mark_dirty(arg);
	return 0;
}

static void *ctl__watch_main(void *arg)
{
	router_controller *c = arg;
	while (!__atomic_load_n(&c->stopping, __ATOMIC_SEQ_CST)) {
		int err = etcd_watch(c->wetcd, ROUTER_KEY_ALIVE, ROUTER_WATCH_END, 0,
				     ctl__event_cb, c, &c->stopping);
		if (err == MAIL_OK)
			continue;
		ctl__mark_dirty(c);
		/* sleep a little; stop is noticed through the flag */
		for (int i = 0; i < CTL_RETRY_MS / 50; i++) {
			if (__atomic_load_n(&c->stopping, __ATOMIC_SEQ_CST))
				break;
			nanosleep(&(struct timespec){ .tv_nsec = 50000000L }, NULL);
		}
	}
	return NULL;
}

/* ---- reconcile one role --------------------------------------------------- */

static char *ctl__list(const ring_map *map, const uint32_t *idx, uint32_t n)
{
	size_t len = 1;
	for (uint32_t k = 0; k < n; k++)
		len += strlen(map->nodes[idx[k]]) + 1;
	char *s = xmalloc(len), *w = s;
	*w = '\0';
	for (uint32_t k = 0; k < n; k++)
		w += sprintf(w, "%s%s", k > 0 ? "," : "", map->nodes[idx[k]]);
	return s;
}

static void ctl__log_changes(enum router_role role, const ring_map *map,
			     const ring_change *changes, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		const ring_part *part = &map->parts[changes[k].partition];
		char *r = ctl__list(map, part->r, part->n_r), *in = ctl__list(map, part->i, part->n_i);
		char why[64];
		log_event(LOG_INFO, "controller",
			  "event=partition_changed role=%s partition=%u epoch=%llu primary=%s "
			  "replicas=%s insync=%s reason=%s",
			  router_role_name(role), changes[k].partition,
			  (unsigned long long)part->epoch,
			  part->n_r > 0 ? map->nodes[part->r[0]] : "-", r[0] ? r : "-",
			  in[0] ? in : "-", ring_reason_names(changes[k].reasons, why, sizeof why));
		free(r);
		free(in);
	}
}

/* The inputs of ring_map_reconcile, read from etcd. */
typedef struct ctl__inputs {
	etcd_kv *nodes, *alive, *progress;
	size_t n_nodes, n_alive, n_progress;
	ring_node_info *infos;
	const char **alive_ids;
	ring_progress *reports;
	size_t n_reports;
} ctl__inputs;

static void ctl__inputs_free(ctl__inputs *in)
{
	etcd_kvs_free(in->nodes, in->n_nodes);
	etcd_kvs_free(in->alive, in->n_alive);
	etcd_kvs_free(in->progress, in->n_progress);
	free(in->infos);
	free(in->alive_ids);
	free(in->reports);
	memset(in, 0, sizeof *in);
}

static int ctl__inputs_read(etcd_client *etcd, const char *role, ctl__inputs *in)
{
	char *p_nodes = xasprintf(ROUTER_KEY_NODES "%s/", role);
	char *p_alive = xasprintf(ROUTER_KEY_ALIVE "%s/", role);
	char *p_prog = xasprintf(CTL_KEY_PROGRESS "%s/", role);
	memset(in, 0, sizeof *in);
	int err = etcd_kv_range_prefix(etcd, p_nodes, 0, &in->nodes, &in->n_nodes, NULL);
	if (err == MAIL_OK)
		err = etcd_kv_range_prefix(etcd, p_alive, 0, &in->alive, &in->n_alive, NULL);
	if (err == MAIL_OK)
		err = etcd_kv_range_prefix(etcd, p_prog, 0, &in->progress, &in->n_progress, NULL);
	if (err == MAIL_OK) {
		in->infos = xcalloc(in->n_nodes + 1, sizeof *in->infos);
		for (size_t k = 0; k < in->n_nodes; k++) {
			json_t *rec = json_loadb(in->nodes[k].value, in->nodes[k].value_len, 0,
						 NULL);
			in->infos[k].id = in->nodes[k].key + strlen(p_nodes);
			in->infos[k].draining = json_is_true(json_object_get(rec, "draining"));
			json_decref(rec);
		}
		in->alive_ids = xcalloc(in->n_alive + 1, sizeof *in->alive_ids);
		for (size_t k = 0; k < in->n_alive; k++)
			in->alive_ids[k] = in->alive[k].key + strlen(p_alive);
		in->reports = xcalloc(in->n_progress + 1, sizeof *in->reports);
		for (size_t k = 0; k < in->n_progress; k++) {
			/* <partition>/<node-id> = {"epoch":E} */
			const char *rest = in->progress[k].key + strlen(p_prog);
			char *end;
			unsigned long part = strtoul(rest, &end, 10);
			json_t *v = json_loadb(in->progress[k].value, in->progress[k].value_len, 0,
					       NULL);
			json_t *e = json_object_get(v, "epoch");
			if (end != rest && *end == '/' && end[1] != '\0' && json_is_integer(e) &&
			    json_integer_value(e) > 0 && part < RING_PARTITIONS_MAX) {
				ring_progress *r = &in->reports[in->n_reports++];
				r->partition = (uint32_t)part;
				r->node = end + 1;
				r->epoch = (uint64_t)json_integer_value(e);
			}
			json_decref(v);
		}
	}
	free(p_nodes);
	free(p_alive);
	free(p_prog);
	if (err != MAIL_OK)
		ctl__inputs_free(in);
	return err;
}

static void ctl__reconcile(router_controller *c, enum router_role role)
{
	const char *role_name = router_role_name(role);
	/* Pacing: rebalancing (ring.h rule 6) only once our last write of this
	 * map is a resync interval old. Our own write wakes us again at once
	 * (the watch covers ring/), so "K moves per pass" alone would move
	 * every primary within milliseconds; this way clients re-resolve and
	 * the moved partitions' new primaries append their barriers before
	 * the next batch, and after a join, catch-up or failover the map must
	 * stay quiet for an interval before any primary moves (writes retried
	 * right after a change do not meet a second one). The deadline is
	 * taken from the pass's start, so the next resync (scheduled after the
	 * pass) is never early for it. */
	uint64_t start = ctl__now_ms();
	ring_reconcile_settings settings = { .rebalance_off = start < c->next_rebalance[role] };
	char *ring_key = xasprintf(ROUTER_KEY_RING "%s", role_name);
	for (int attempt = 0; attempt < CTL_CAS_ATTEMPTS; attempt++) {
		char *value = NULL;
		size_t len = 0;
		int64_t mod = 0;
		ring_map *old = NULL;
		const char *error;
		int err = etcd_kv_get(c->etcd, ring_key, &value, &len, &mod, NULL);
		if (err != MAIL_OK)
			break; /* no map yet (members create it), or etcd down */
		if (ring_map_from_json(value, len, &old, &error) < 0) {
			log_event(LOG_ERROR, "controller", "event=ring_invalid role=%s error=\"%s\"",
				  role_name, error);
			free(value);
			break;
		}
		free(value);
		ctl__inputs in;
		if (ctl__inputs_read(c->etcd, role_name, &in) != MAIL_OK) {
			ring_map_free(&old);
			break;
		}
		ring_change *changes = NULL;
		size_t n_changes = 0;
		ring_map *map = ring_map_reconcile(old, in.infos, in.n_nodes, in.alive_ids,
						   in.n_alive, in.reports, in.n_reports, &settings,
						   &changes, &n_changes);
		ctl__inputs_free(&in);
		ring_map_free(&old);
		if (map == NULL)
			break;
		if (c->hooks.before_cas != NULL)
			c->hooks.before_cas(role, c->hooks.arg);
		char *json = ring_map_to_json(map);
		err = etcd_kv_put_if_mod(c->etcd, ring_key, json, strlen(json), mod, NULL);
		free(json);
		if (err == MAIL_OK) {
			ctl__log_changes(role, map, changes, n_changes);
			c->next_rebalance[role] = start + (uint64_t)c->resync_ms;
		} else {
			log_event(LOG_INFO, "controller", "event=map_write_failed role=%s err=%s",
				  role_name, mail_error_info(err)->name);
		}
		free(changes);
		ring_map_free(&map);
		if (err != MAIL_ERR_EXISTS)
			break;
		/* someone wrote the map since we read it: read it again */
	}
	free(ring_key);
}

/* ---- main thread ---------------------------------------------------------- */

static void ctl__set_active(router_controller *c, int active, const char *why)
{
	if (__atomic_load_n(&c->active, __ATOMIC_SEQ_CST) == active)
		return;
	__atomic_store_n(&c->active, active, __ATOMIC_SEQ_CST);
	log_event(active ? LOG_INFO : LOG_WARN, "controller", "event=%s node=%s reason=%s",
		  active ? "controller_elected" : "controller_resigned", c->id, why);
}

static void ctl__campaign(router_controller *c)
{
	int err = etcd_kv_create(c->etcd, CTL_KEY, c->id, strlen(c->id), c->lease);
	if (err == MAIL_OK) {
		ctl__set_active(c, 1, "won");
		return;
	}
	if (err == MAIL_ERR_NOT_FOUND)
		c->lease = 0; /* our lease is gone: grant a new one */
}

/* Still the holder? (the key may have been deleted by hand) */
static void ctl__check(router_controller *c)
{
	char *value = NULL;
	size_t len;
	int err = etcd_kv_get(c->etcd, CTL_KEY, &value, &len, NULL, NULL);
	if (err == MAIL_ERR_NOT_FOUND || (err == MAIL_OK && strcmp(value, c->id) != 0))
		ctl__set_active(c, 0, "key_lost");
	free(value);
}

static void *ctl__main(void *arg)
{
	router_controller *c = arg;
	int resync_ms = c->resync_ms;
	uint64_t period = (uint64_t)c->ttl_s * 1000 / 3;
	uint64_t next_renew = 0, next_resync = 0;
	if (period < 100)
		period = 100;
	for (;;) {
		pthread_mutex_lock(&c->mu);
		int stopping = c->stopping, dirty = c->dirty;
		c->dirty = 0;
		pthread_mutex_unlock(&c->mu);
		if (stopping)
			break;
		uint64_t now = ctl__now_ms();
		uint64_t wake = now + CTL_RETRY_MS;
		if (c->lease == 0) {
			ctl__set_active(c, 0, "no_lease");
			if (etcd_lease_grant(c->etcd, c->ttl_s, &c->lease) == MAIL_OK) {
				next_renew = now + period;
				dirty = 1;
			}
		} else if (now >= next_renew) {
			int64_t ttl = 0;
			int err = etcd_lease_keepalive(c->etcd, c->lease, &ttl);
			if (err == MAIL_ERR_NOT_FOUND || (err == MAIL_OK && ttl == 0)) {
				c->lease = 0;
				ctl__set_active(c, 0, "lease_lost");
				continue;
			}
			next_renew = now + (err == MAIL_OK ? period : CTL_RETRY_MS / 2);
		}
		if (c->lease != 0 && (dirty || now >= next_resync)) {
			if (__atomic_load_n(&c->active, __ATOMIC_SEQ_CST))
				ctl__check(c);
			else
				ctl__campaign(c);
			if (__atomic_load_n(&c->active, __ATOMIC_SEQ_CST)) {
				for (int r = 0; r < ROUTER_ROLE_COUNT_; r++)
					ctl__reconcile(c, (enum router_role)r);
			}
			next_resync = ctl__now_ms() + (uint64_t)resync_ms;
		}
		if (c->lease != 0) {
			wake = next_renew < next_resync ? next_renew : next_resync;
		}
		/* sleep until wake, or until the watch or a stop wakes us */
		struct timespec ts;
		ts.tv_sec = (time_t)(wake / 1000);
		ts.tv_nsec = (long)(wake % 1000) * 1000000L;
		pthread_mutex_lock(&c->mu);
		while (!c->stopping && !c->dirty &&
		       pthread_cond_timedwait(&c->cond, &c->mu, &ts) != ETIMEDOUT)
			;
		pthread_mutex_unlock(&c->mu);
	}
	return NULL;
}

/* ---- public --------------------------------------------------------------- */

int router__controller_start_hooked(uv_loop_t *loop, const etcd_conf *etcd, const char *node_id,
				    int ttl_s, etcd_stats *stats, const router__controller_hooks *hooks,
				    router_controller **ctl_r, const char **error_r)
{
	size_t id_len = strlen(node_id);
	if (id_len == 0 || id_len >= ROUTER_ID_MAX || strpbrk(node_id, "/ \t\r\n") != NULL) {
		*error_r = "bad node id (1..63 bytes, no '/' or spaces)";
		return -1;
	}
	if (ttl_s < 0) {
		*error_r = "bad lease TTL";
		return -1;
	}
	router_controller *c = xcalloc(1, sizeof *c);
	c->loop = loop;
	memcpy(c->id, node_id, id_len + 1);
	c->ttl_s = ttl_s > 0 ? ttl_s : ROUTER_DEFAULT_LEASE_TTL_S;
	if (hooks != NULL)
		c->hooks = *hooks;
	c->resync_ms = c->hooks.resync_ms > 0 ? c->hooks.resync_ms : ROUTER_CONTROLLER_RESYNC_MS;
	c->etcd = etcd_client_create(etcd);
	c->wetcd = etcd_client_create(etcd);
	etcd_client_set_stats(c->etcd, stats);
	etcd_client_set_stats(c->wetcd, stats);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&c->mu, NULL);
	if (pthread_create(&c->watch_thread, NULL, ctl__watch_main, c) != 0 ||
	    pthread_create(&c->main_thread, NULL, ctl__main, c) != 0)
		abort();
	log_event(LOG_INFO, "controller", "event=controller_started node=%s ttl=%d", c->id,
		  c->ttl_s);
	*ctl_r = c;
	return 0;
}

int router_controller_start(uv_loop_t *loop, const etcd_conf *etcd, const char *node_id,
			    int ttl_s, etcd_stats *stats, router_controller **ctl_r,
			    const char **error_r)
{
	return router__controller_start_hooked(loop, etcd, node_id, ttl_s, stats, NULL, ctl_r,
					       error_r);
}

int router_controller_is_active(router_controller *c)
{
	return __atomic_load_n(&c->active, __ATOMIC_SEQ_CST);
}

static void ctl__end(router_controller *c, int revoke)
{
	pthread_mutex_lock(&c->mu);
	__atomic_store_n(&c->stopping, 1, __ATOMIC_SEQ_CST);
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->main_thread, NULL);
	pthread_join(c->watch_thread, NULL);
	/* the threads are gone: their handles are ours */
	if (revoke && c->lease != 0)
		(void)etcd_lease_revoke(c->etcd, c->lease);
	log_event(LOG_INFO, "controller", "event=controller_stopped node=%s revoked=%d", c->id,
		  revoke && c->lease != 0);
	etcd_client_destroy(&c->etcd);
	etcd_client_destroy(&c->wetcd);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cond);
	free(c);
}

void router_controller_stop(router_controller **ctl)
{
	router_controller *c = *ctl;
	if (c == NULL)
		return;
	*ctl = NULL;
	ctl__end(c, 1);
}

void router__controller_abandon(router_controller **ctl)
{
	router_controller *c = *ctl;
	if (c == NULL)
		return;
	*ctl = NULL;
	ctl__end(c, 0);
}
