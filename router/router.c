/* router.c: the lookup side of router.h.
 *
 * One router holds, per role, the parsed ring and the alive set, behind a
 * mutex. A thread of its own keeps them current:
 *
 *   load:  range ring/ (revision R), then alive/ at revision R, swap in
 *   watch: [alive/, ring0) from R+1, apply each event under the mutex
 *   error: back off (100 ms doubling to 5 s), load again, watch again
 *
 * router_refresh() and router_destroy() set `wake`, which the watch polls
 * (etcd_watch's stop flag), so the thread notices within about a second.
 */
#include "router-private.h"

#include <errno.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "etcd.h"
#include "log.h"
#include "mail-error.h"
#include "ring.h"
#include "util.h"
#include "xalloc.h"

#define ROUTER_BACKOFF_MIN_MS 100
#define ROUTER_BACKOFF_MAX_MS 5000

typedef struct router__alive {
	char id[ROUTER_ID_MAX];
	char host[ROUTER_HOST_MAX];
	int port;
} router__alive;

typedef struct router__role_state {
	ring_map *ring; /* NULL: no ring yet */
	router__alive *alive;
	size_t n_alive, cap_alive;
} router__role_state;

struct router {
	etcd_client *etcd; /* the thread's (and router_create's first load) */
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cond;

	/* under mu */
	router__role_state roles[ROUTER_ROLE_COUNT_];
	int stopping;
	int reload;

	/* set by other threads to end the current watch (atomic) */
	int wake;
	/* thread only: the revision the state reflects */
	int64_t revision;
};

static const char *const router__role_names[ROUTER_ROLE_COUNT_] = {
	[ROUTER_ROLE_QUEUE] = "queue",
	[ROUTER_ROLE_STORE] = "store",
};

const char *router_role_name(enum router_role role)
{
	if ((int)role < 0 || role >= ROUTER_ROLE_COUNT_)
		return "unknown";
	return router__role_names[role];
}

uint32_t router_partition_of(const void *key, size_t len, uint32_t n_partitions)
{
	if (n_partitions == 0)
		return 0;
	return (uint32_t)(util_hash64(key, len) % n_partitions);
}

/* ---- state updates (callers hold mu) --------------------------------- */

static void router__role_state_clear(router__role_state *st)
{
	ring_map_free(&st->ring);
	free(st->alive);
	memset(st, 0, sizeof *st);
}

static router__alive *router__alive_find(router__role_state *st, const char *id)
{
	for (size_t i = 0; i < st->n_alive; i++) {
		if (strcmp(st->alive[i].id, id) == 0)
			return &st->alive[i];
	}
	return NULL;
}

/* Parse "host:port" into a; 0 or -1. */
static int router__alive_parse(router__alive *a, const char *id, const char *value)
{
	char *host;
	int port;
	const char *error;
	if (strlen(id) >= ROUTER_ID_MAX || util_hostport_parse(value, &host, &port, &error) < 0)
		return -1;
	if (strlen(host) >= ROUTER_HOST_MAX || port == 0) {
		free(host);
		return -1;
	}
	memset(a, 0, sizeof *a);
	strcpy(a->id, id);
	strcpy(a->host, host);
	a->port = port;
	free(host);
	return 0;
}

static void router__alive_set(router__role_state *st, const router__alive *a)
{
	router__alive *old = router__alive_find(st, a->id);
	if (old != NULL) {
		*old = *a;
		return;
	}
	if (st->n_alive == st->cap_alive) {
		st->cap_alive = st->cap_alive == 0 ? 8 : st->cap_alive * 2;
		st->alive = xrealloc(st->alive, st->cap_alive * sizeof *st->alive);
	}
	st->alive[st->n_alive++] = *a;
}

static void router__alive_del(router__role_state *st, const char *id)
{
	router__alive *a = router__alive_find(st, id);
	if (a != NULL)
		*a = st->alive[--st->n_alive];
}

/* ---- load and watch (router thread, or router_create before it) ------ */

static ring_map *router__ring_parse(const char *key, const char *value, size_t len)
{
	ring_map *map;
	const char *error;
	if (ring_map_from_json(value, len, &map, &error) < 0) {
		log_event(LOG_ERROR, "router", "event=ring_invalid key=%s error=\"%s\"", key,
			  error);
		return NULL;
	}
	return map;
}

static int router__load(router *r)
{
	etcd_kv *rings = NULL, *alive = NULL;
	size_t n_rings = 0, n_alive = 0;
	int64_t revision;
	int err = etcd_kv_range_prefix(r->etcd, ROUTER_KEY_RING, 0, &rings, &n_rings, &revision);
	if (err == MAIL_OK)
		err = etcd_kv_range_prefix(r->etcd, ROUTER_KEY_ALIVE, revision, &alive, &n_alive,
					   NULL);
	if (err != MAIL_OK) {
		etcd_kvs_free(rings, n_rings);
		return err;
	}
	router__role_state fresh[ROUTER_ROLE_COUNT_];
	memset(fresh, 0, sizeof fresh);
	for (size_t i = 0; i < n_rings; i++) {
		const char *rest;
		int role = router__role_parse(rings[i].key + strlen(ROUTER_KEY_RING), &rest);
		if (role < 0 || rest[0] != '\0')
			continue;
		ring_map_free(&fresh[role].ring);
		fresh[role].ring = router__ring_parse(rings[i].key, rings[i].value,
						      rings[i].value_len);
	}
	for (size_t i = 0; i < n_alive; i++) {
		const char *id;
		router__alive a;
		int role = router__role_parse(alive[i].key + strlen(ROUTER_KEY_ALIVE), &id);
		if (role >= 0 && router__alive_parse(&a, id, alive[i].value) == 0)
			router__alive_set(&fresh[role], &a);
	}
	etcd_kvs_free(rings, n_rings);
	etcd_kvs_free(alive, n_alive);

	pthread_mutex_lock(&r->mu);
	for (int i = 0; i < ROUTER_ROLE_COUNT_; i++) {
		router__role_state_clear(&r->roles[i]);
		r->roles[i] = fresh[i];
	}
	pthread_mutex_unlock(&r->mu);
	r->revision = revision;
	return MAIL_OK;
}

static int router__event_cb(const etcd_event *ev, void *arg)
{
	router *r = arg;
	const char *rest;
	if (ev->mod_revision > r->revision)
		r->revision = ev->mod_revision;
	if (strncmp(ev->key, ROUTER_KEY_RING, strlen(ROUTER_KEY_RING)) == 0) {
		int role = router__role_parse(ev->key + strlen(ROUTER_KEY_RING), &rest);
		if (role < 0 || rest[0] != '\0')
			return 0;
		ring_map *map = NULL;
		if (ev->type == ETCD_EVENT_PUT)
			map = router__ring_parse(ev->key, ev->value, ev->value_len);
		pthread_mutex_lock(&r->mu);
		ring_map_free(&r->roles[role].ring);
		r->roles[role].ring = map;
		pthread_mutex_unlock(&r->mu);
		log_event(LOG_INFO, "router", "event=ring_changed role=%s epoch=%llu",
			  router_role_name((enum router_role)role),
			  map != NULL ? (unsigned long long)map->epoch : 0ULL);
	} else if (strncmp(ev->key, ROUTER_KEY_ALIVE, strlen(ROUTER_KEY_ALIVE)) == 0) {
		int role = router__role_parse(ev->key + strlen(ROUTER_KEY_ALIVE), &rest);
		router__alive a;
		if (role < 0)
			return 0;
		pthread_mutex_lock(&r->mu);
		if (ev->type == ETCD_EVENT_DELETE)
			router__alive_del(&r->roles[role], rest);
		else if (router__alive_parse(&a, rest, ev->value) == 0)
			router__alive_set(&r->roles[role], &a);
		pthread_mutex_unlock(&r->mu);
	}
	return 0;
}

/* Sleep ms unless stopping; returns 1 when stopping. */
static int router__sleep(router *r, int ms)
{
	struct timespec ts;
	util_mono_deadline(&ts, (unsigned)ms);
	pthread_mutex_lock(&r->mu);
	while (!r->stopping && pthread_cond_timedwait(&r->cond, &r->mu, &ts) != ETIMEDOUT)
		;
	int stopping = r->stopping;
	pthread_mutex_unlock(&r->mu);
	return stopping;
}

static void *router__thread_main(void *arg)
{
	router *r = arg;
	int backoff = ROUTER_BACKOFF_MIN_MS;
	for (;;) {
		/* clear wake before reading the flags: a refresh that lands
		 * after this point will end the watch below */
		__atomic_store_n(&r->wake, 0, __ATOMIC_SEQ_CST);
		pthread_mutex_lock(&r->mu);
		int stopping = r->stopping, reload = r->reload;
		r->reload = 0;
		pthread_mutex_unlock(&r->mu);
		if (stopping)
			break;
		if (reload && router__load(r) != MAIL_OK) {
			log_event(LOG_WARN, "router", "event=reload_failed retry_ms=%d", backoff);
			pthread_mutex_lock(&r->mu);
			r->reload = 1;
			pthread_mutex_unlock(&r->mu);
			if (router__sleep(r, backoff))
				break;
			backoff = backoff * 2 > ROUTER_BACKOFF_MAX_MS ? ROUTER_BACKOFF_MAX_MS
								      : backoff * 2;
			continue;
		}
		int err = etcd_watch(r->etcd, ROUTER_KEY_ALIVE, ROUTER_WATCH_END, r->revision + 1,
				     router__event_cb, r, &r->wake);
		if (err == MAIL_OK) {
			backoff = ROUTER_BACKOFF_MIN_MS;
			continue; /* woken: stop or refresh */
		}
		log_event(LOG_WARN, "router", "event=watch_lost err=%s retry_ms=%d",
			  mail_error_info(err)->name, backoff);
		pthread_mutex_lock(&r->mu);
		r->reload = 1;
		pthread_mutex_unlock(&r->mu);
		if (router__sleep(r, backoff))
			break;
		backoff = backoff * 2 > ROUTER_BACKOFF_MAX_MS ? ROUTER_BACKOFF_MAX_MS
							      : backoff * 2;
	}
	return NULL;
}

/* ---- public -------------------------------------------------------------- */

int router_create(const etcd_conf *etcd, router **router_r, const char **error_r)
{
	router *r = xcalloc(1, sizeof *r);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&r->mu, NULL);
	r->etcd = etcd_client_create(etcd);
	int err = router__load(r);
	if (err != MAIL_OK) {
		*error_r = err == MAIL_ERR_PERM ? "etcd refused our user or its permissions"
						: "etcd unreachable";
		etcd_client_destroy(&r->etcd);
		pthread_mutex_destroy(&r->mu);
		pthread_cond_destroy(&r->cond);
		free(r);
		return -1;
	}
	if (pthread_create(&r->thread, NULL, router__thread_main, r) != 0)
		abort();
	*router_r = r;
	return 0;
}

void router_destroy(router **routerp)
{
	router *r = *routerp;
	if (r == NULL)
		return;
	*routerp = NULL;
	pthread_mutex_lock(&r->mu);
	r->stopping = 1;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->mu);
	__atomic_store_n(&r->wake, 1, __ATOMIC_SEQ_CST);
	pthread_join(r->thread, NULL);
	for (int i = 0; i < ROUTER_ROLE_COUNT_; i++)
		router__role_state_clear(&r->roles[i]);
	etcd_client_destroy(&r->etcd);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cond);
	free(r);
}

int router_lookup(router *r, enum router_role role, const void *key, size_t len,
		  router_node *node_r)
{
	if ((int)role < 0 || role >= ROUTER_ROLE_COUNT_)
		return 0;
	int found = 0;
	pthread_mutex_lock(&r->mu);
	router__role_state *st = &r->roles[role];
	if (st->ring != NULL) {
		uint32_t p = router_partition_of(key, len, st->ring->n_partitions);
		const char *id = ring_map_replica(st->ring, p, 0);
		router__alive *a = id != NULL ? router__alive_find(st, id) : NULL;
		if (a != NULL) {
			memset(node_r, 0, sizeof *node_r);
			memcpy(node_r->id, a->id, sizeof node_r->id);
			memcpy(node_r->host, a->host, sizeof node_r->host);
			node_r->port = a->port;
			node_r->partition = p;
			node_r->epoch = ring_map_partition_epoch(st->ring, p);
			found = 1;
		}
	}
	pthread_mutex_unlock(&r->mu);
	return found;
}

void router_refresh(router *r)
{
	pthread_mutex_lock(&r->mu);
	r->reload = 1;
	pthread_mutex_unlock(&r->mu);
	__atomic_store_n(&r->wake, 1, __ATOMIC_SEQ_CST);
}

int router_lookup_partition(router *r, enum router_role role, uint32_t partition,
			    router_partition *part_r)
{
	if ((int)role < 0 || role >= ROUTER_ROLE_COUNT_)
		return 0;
	int found = 0;
	pthread_mutex_lock(&r->mu);
	router__role_state *st = &r->roles[role];
	if (st->ring != NULL && partition < st->ring->n_partitions) {
		const ring_map *map = st->ring;
		const ring_part *part = &map->parts[partition];
		memset(part_r, 0, sizeof *part_r);
		part_r->partition = partition;
		part_r->epoch = part->epoch;
		part_r->want_replicas = map->want_replicas;
		part_r->n_insync = part->n_i;
		for (uint32_t k = 0; k < part->n_r && k < ROUTER_REPLICAS_MAX; k++) {
			router_replica *rep = &part_r->replicas[k];
			const char *id = map->nodes[part->r[k]];
			router__alive *a = router__alive_find(st, id);
			snprintf(rep->id, sizeof rep->id, "%s", id);
			if (a != NULL) {
				memcpy(rep->host, a->host, sizeof rep->host);
				rep->port = a->port;
				rep->alive = 1;
			}
			rep->in_sync = ring_map_is_insync(map, partition, id);
			part_r->n_replicas = k + 1;
		}
		found = 1;
	}
	pthread_mutex_unlock(&r->mu);
	return found;
}

uint32_t router_partition_count(router *r, enum router_role role)
{
	if ((int)role < 0 || role >= ROUTER_ROLE_COUNT_)
		return 0;
	pthread_mutex_lock(&r->mu);
	uint32_t n = r->roles[role].ring != NULL ? r->roles[role].ring->n_partitions : 0;
	pthread_mutex_unlock(&r->mu);
	return n;
}

uint64_t router_map_epoch(router *r, enum router_role role)
{
	if ((int)role < 0 || role >= ROUTER_ROLE_COUNT_)
		return 0;
	pthread_mutex_lock(&r->mu);
	uint64_t e = r->roles[role].ring != NULL ? r->roles[role].ring->epoch : 0;
	pthread_mutex_unlock(&r->mu);
	return e;
}
