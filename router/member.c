/* member.c: a node's membership in etcd (router_member_* of router.h).
 *
 * Start-up (blocking, before the loop runs): lease, node record, alive key
 * under the lease, then make the role's ring include this node by
 * compare-and-swap on the ring key's mod_revision.
 *
 * Renewal: a thread of its own (the keeper) sends a keepalive every ttl/3,
 * so a loop stalled behind a slow disk or a busy CPU does not lose the
 * node's lease and set off a failover that only adds work; it renews only
 * while the loop's timer has run within MEMBER_LOOP_GRACE_TTLS TTLs, so a
 * wedged loop still lets the lease lapse. The etcd handle is used by the
 * start-up code, then only by the keeper, then by router_member_stop once
 * the keeper has been joined: never by two threads at once.
 */
#include "router-private.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "etcd.h"
#include "log.h"
#include "mail-error.h"
#include "ring.h"
#include "util.h"
#include "xalloc.h"

/* CAS attempts on the ring before giving up (each loses only to another
 * node's successful write, so this is plenty). */
#define MEMBER_RING_ATTEMPTS 32
/* The keeper renews while the loop turned within this many TTLs. */
#define MEMBER_LOOP_GRACE_TTLS 3

struct router_member {
	uv_loop_t *loop;
	uv_timer_t timer;
	etcd_client *etcd;
	enum router_role role;
	char id[ROUTER_ID_MAX];
	char *alive_key;
	char *alive_value;
	int ttl_s;
	int64_t lease; /* 0 while we hold none (keeper thread, once it runs) */
	/* Monotonic ms before which our alive key surely still exists: the
	 * send time of the last keepalive (or grant) etcd confirmed, plus 3/4
	 * of the TTL (etcd counts the TTL from when it got the request, later
	 * than we sent it; the quarter covers clock rate differences).
	 * Written by the keeper, read by the loop (atomic). */
	uint64_t valid_until;
	/* When the loop timer last ran (atomic): the keeper renews only while
	 * that is within grace_ms. */
	uint64_t loop_tick;

	uv_thread_t keeper;
	uv_mutex_t mu;   /* guards the fields below */
	uv_cond_t cond;  /* stop */
	int stopping;
	uint64_t period_ms, grace_ms, next_at;
	/* reported by the keeper, logged and cleared by the loop timer */
	unsigned r_lost, r_renewed, r_failed, r_skipped;
	int r_err;
	int64_t r_lease;
};

/* What one renewal found (keeper thread). */
struct member__renewal {
	int err;
	int lost;
	int renewed;
	uint64_t sent;    /* when it started talking to etcd */
	int confirmed;    /* etcd confirmed a lease from then on */
};

static uint64_t member__valid_until(const router_member *m, uint64_t sent)
{
	return sent + (uint64_t)m->ttl_s * 1000 * 3 / 4;
}

int router__role_parse(const char *s, const char **rest_r)
{
	for (int r = 0; r < ROUTER_ROLE_COUNT_; r++) {
		const char *name = router_role_name((enum router_role)r);
		size_t len = strlen(name);
		if (strncmp(s, name, len) == 0 && (s[len] == '\0' || s[len] == '/')) {
			*rest_r = s + len + (s[len] == '/');
			return r;
		}
	}
	return -1;
}

/* Make the role's ring contain exactly the nodes that have records. */
static int member__ring_ensure(etcd_client *etcd, enum router_role role,
			       const router_member_settings *set, const char **error_r)
{
	const char *role_name = router_role_name(role);
	uint32_t n_partitions = set->n_partitions;
	char *ring_key = xasprintf(ROUTER_KEY_RING "%s", role_name);
	char *nodes_prefix = xasprintf(ROUTER_KEY_NODES "%s/", role_name);
	int ret = -1;
	*error_r = "ring update kept conflicting";

	for (int attempt = 0; attempt < MEMBER_RING_ATTEMPTS; attempt++) {
		char *value = NULL;
		size_t len = 0;
		int64_t mod = 0;
		ring_map *old = NULL;
		int err = etcd_kv_get(etcd, ring_key, &value, &len, &mod, NULL);
		if (err == MAIL_ERR_NOT_FOUND) {
			mod = 0;
		} else if (err != MAIL_OK) {
			*error_r = "cannot read the ring from etcd";
			break;
		} else if (ring_map_from_json(value, len, &old, error_r) < 0) {
			/* never overwrite a ring we do not understand: an
			 * operator (or a newer version) must look at it */
			free(value);
			break;
		}
		free(value);
		if (old != NULL && set->controller_managed) {
			/* the controller places us */
			ring_map_free(&old);
			ret = 0;
			break;
		}

		etcd_kv *kvs = NULL;
		size_t n = 0;
		err = etcd_kv_range_prefix(etcd, nodes_prefix, 0, &kvs, &n, NULL);
		if (err != MAIL_OK) {
			ring_map_free(&old);
			*error_r = "cannot list node records in etcd";
			break;
		}
		const char **ids = xcalloc(n + 1, sizeof *ids);
		size_t n_ids = 0;
		for (size_t i = 0; i < n; i++) {
			/* draining nodes are not placed */
			json_t *rec = json_loadb(kvs[i].value, kvs[i].value_len, 0, NULL);
			int draining = json_is_true(json_object_get(rec, "draining"));
			json_decref(rec);
			if (!draining)
				ids[n_ids++] = kvs[i].key + strlen(nodes_prefix);
		}
		if (old != NULL && old->n_partitions != n_partitions)
			log_event(LOG_WARN, "router",
				  "event=ring_partitions_mismatch role=%s ring=%u wanted=%u",
				  role_name, old->n_partitions, n_partitions);
		int changed;
		ring_map *map = ring_map_place(old, ids, n_ids, n_partitions, set->n_replicas,
					       &changed);
		free(ids);
		etcd_kvs_free(kvs, n);
		if (!changed && old != NULL) {
			ring_map_free(&old);
			ring_map_free(&map);
			ret = 0;
			break;
		}
		char *json = ring_map_to_json(map);
		err = etcd_kv_put_if_mod(etcd, ring_key, json, strlen(json), mod, NULL);
		free(json);
		if (err == MAIL_OK)
			log_event(LOG_INFO, "router",
				  "event=ring_updated role=%s epoch=%llu nodes=%zu", role_name,
				  (unsigned long long)map->epoch, map->n_nodes);
		ring_map_free(&old);
		ring_map_free(&map);
		if (err == MAIL_OK) {
			ret = 0;
			break;
		}
		if (err != MAIL_ERR_EXISTS) {
			*error_r = "cannot write the ring to etcd";
			break;
		}
		/* someone else wrote the ring meanwhile: read it again */
	}
	free(ring_key);
	free(nodes_prefix);
	return ret;
}

/* Write the node record, keeping "created" and "draining" from an earlier
 * record. */
static int member__record_put(router_member *m)
{
	char *key = xasprintf(ROUTER_KEY_NODES "%s/%s", router_role_name(m->role), m->id);
	char *old = NULL;
	size_t len;
	json_int_t created = util_now_wall_ms();
	int draining = 0;
	int err = etcd_kv_get(m->etcd, key, &old, &len, NULL, NULL);
	if (err == MAIL_OK) {
		json_t *j = json_loadb(old, len, 0, NULL);
		json_t *c = json_object_get(j, "created");
		if (json_is_integer(c))
			created = json_integer_value(c);
		draining = json_is_true(json_object_get(j, "draining"));
		json_decref(j);
		free(old);
	} else if (err != MAIL_ERR_NOT_FOUND) {
		free(key);
		return err;
	}
	json_t *rec = json_pack("{s:s,s:s,s:I}", "id", m->id, "addr", m->alive_value, "created",
				created);
	if (draining)
		json_object_set_new(rec, "draining", json_true());
	char *value = json_dumps(rec, JSON_COMPACT);
	json_decref(rec);
	err = etcd_kv_put(m->etcd, key, value, strlen(value), 0);
	free(value);
	free(key);
	return err;
}

static void member__free(router_member *m)
{
	etcd_client_destroy(&m->etcd);
	free(m->alive_key);
	free(m->alive_value);
	free(m);
}

/* ---- renewal ------------------------------------------------------------- */

/* One renewal (keeper thread): keep the lease alive, or, once etcd has
 * expired it, register again under a new one. */
static void member__renew(router_member *m, struct member__renewal *r)
{
	*r = (struct member__renewal){ .err = MAIL_OK, .sent = util_now_mono_ms() };
	if (m->lease != 0) {
		int64_t ttl = 0;
		int err = etcd_lease_keepalive(m->etcd, m->lease, &ttl);
		if (err == MAIL_OK && ttl > 0) {
			r->confirmed = 1;
			return;
		}
		if (err != MAIL_OK && err != MAIL_ERR_NOT_FOUND) {
			r->err = err;
			return;
		}
		/* expired: etcd already deleted our alive key */
		m->lease = 0;
		r->lost = 1;
	}
	int64_t lease;
	int err = etcd_lease_grant(m->etcd, m->ttl_s, &lease);
	if (err == MAIL_OK) {
		err = etcd_kv_put(m->etcd, m->alive_key, m->alive_value,
				  strlen(m->alive_value), lease);
		if (err != MAIL_OK)
			(void)etcd_lease_revoke(m->etcd, lease);
	}
	if (err != MAIL_OK) {
		r->err = err;
		return;
	}
	m->lease = lease;
	r->renewed = 1;
	r->confirmed = 1;
}

/* The keeper thread: a renewal every period, whatever the loop is doing,
 * as long as the loop has turned within the grace (a loop stalled for a
 * few seconds behind a slow disk keeps its node's lease; a wedged one
 * lets it lapse). */
static void member__keeper(void *arg)
{
	router_member *m = arg;
	uv_mutex_lock(&m->mu);
	for (;;) {
		uint64_t now = util_now_mono_ms();
		uint64_t due = m->next_at;
		while (!m->stopping && now < due) {
			(void)uv_cond_timedwait(&m->cond, &m->mu, (due - now) * 1000000u);
			now = util_now_mono_ms();
		}
		if (m->stopping)
			break;
		m->next_at = now + m->period_ms;
		uint64_t tick = __atomic_load_n(&m->loop_tick, __ATOMIC_RELAXED);
		if (now > tick + m->grace_ms) {
			m->r_skipped++;
			continue;
		}
		uv_mutex_unlock(&m->mu);
		struct member__renewal r;
		member__renew(m, &r);
		uv_mutex_lock(&m->mu);
		if (r.confirmed)
			__atomic_store_n(&m->valid_until, member__valid_until(m, r.sent),
					 __ATOMIC_RELAXED);
		m->r_lost += r.lost;
		if (r.renewed) {
			m->r_renewed++;
			m->r_lease = m->lease;
		}
		if (r.err != MAIL_OK) {
			m->r_failed++;
			m->r_err = r.err;
		}
	}
	uv_mutex_unlock(&m->mu);
}

/* Loop timer: tell the keeper the loop turns, and log what it reported. */
static void member__timer_cb(uv_timer_t *timer)
{
	router_member *m = timer->data;
	__atomic_store_n(&m->loop_tick, util_now_mono_ms(), __ATOMIC_RELAXED);
	uv_mutex_lock(&m->mu);
	unsigned lost = m->r_lost, renewed = m->r_renewed, failed = m->r_failed;
	unsigned skipped = m->r_skipped;
	int err = m->r_err;
	int64_t lease = m->r_lease;
	m->r_lost = m->r_renewed = m->r_failed = m->r_skipped = 0;
	uv_mutex_unlock(&m->mu);
	const char *role = router_role_name(m->role);
	if (skipped > 0)
		log_event(LOG_WARN, "router", "event=keepalive_skipped role=%s node=%s count=%u "
			  "reason=loop_stalled", role, m->id, skipped);
	if (lost > 0)
		log_event(LOG_WARN, "router", "event=lease_lost role=%s node=%s", role, m->id);
	if (renewed > 0)
		log_event(LOG_INFO, "router", "event=lease_renewed role=%s node=%s lease=%llx",
			  role, m->id, (unsigned long long)lease);
	if (failed > 0)
		log_event(LOG_WARN, "router", "event=keepalive_failed role=%s node=%s err=%s "
			  "count=%u", role, m->id, mail_error_info(err)->name, failed);
}

static void member__close_cb(uv_handle_t *handle)
{
	router_member *m = handle->data;
	uv_cond_destroy(&m->cond);
	uv_mutex_destroy(&m->mu);
	member__free(m);
}

/* ---- public -------------------------------------------------------------- */

int router_member_start(uv_loop_t *loop, const etcd_conf *etcd, enum router_role role,
			const char *node_id, const char *host, int port, int ttl_s,
			uint32_t n_partitions, router_member **member_r, const char **error_r)
{
	router_member_settings set = {
		.ttl_s = ttl_s,
		.n_partitions = n_partitions,
		.n_replicas = ROUTER_DEFAULT_REPLICAS,
	};
	if (ttl_s < 1 || n_partitions < 1) {
		*error_r = "bad lease TTL or partition count";
		return -1;
	}
	return router_member_start_ex(loop, etcd, role, node_id, host, port, &set, member_r,
				      error_r);
}

int router_member_start_ex(uv_loop_t *loop, const etcd_conf *etcd, enum router_role role,
			   const char *node_id, const char *host, int port,
			   const router_member_settings *settings, router_member **member_r,
			   const char **error_r)
{
	router_member_settings set = { 0 };
	if (settings != NULL)
		set = *settings;
	if (set.ttl_s == 0)
		set.ttl_s = ROUTER_DEFAULT_LEASE_TTL_S;
	if (set.n_partitions == 0)
		set.n_partitions = ROUTER_DEFAULT_PARTITIONS;
	if (set.n_replicas == 0)
		set.n_replicas = ROUTER_DEFAULT_REPLICAS;
	int ttl_s = set.ttl_s;
	uint32_t n_partitions = set.n_partitions;
	if (set.n_replicas > RING_REPLICAS_MAX) {
		*error_r = "bad replica count (1..8)";
		return -1;
	}
	if ((int)role < 0 || role >= ROUTER_ROLE_COUNT_) {
		*error_r = "bad role";
		return -1;
	}
	size_t id_len = strlen(node_id);
	if (id_len == 0 || id_len >= ROUTER_ID_MAX || strpbrk(node_id, "/ \t\r\n") != NULL) {
		*error_r = "bad node id (1..63 bytes, no '/' or spaces)";
		return -1;
	}
	if (host[0] == '\0' || strlen(host) >= ROUTER_HOST_MAX || port < 1 || port > 65535) {
		*error_r = "bad host or port";
		return -1;
	}
	if (ttl_s < 1 || n_partitions < 1 || n_partitions > RING_PARTITIONS_MAX) {
		*error_r = "bad lease TTL or partition count";
		return -1;
	}
	router_member *m = xcalloc(1, sizeof *m);
	m->loop = loop;
	m->role = role;
	m->ttl_s = ttl_s;
	memcpy(m->id, node_id, id_len + 1);
	m->etcd = etcd_client_create(etcd);
	etcd_client_set_stats(m->etcd, set.etcd_stats);
	m->alive_key = xasprintf(ROUTER_KEY_ALIVE "%s/%s", router_role_name(role), node_id);
	m->alive_value = strchr(host, ':') != NULL ? xasprintf("[%s]:%d", host, port)
						  : xasprintf("%s:%d", host, port);

	uint64_t sent = util_now_mono_ms();
	int err = etcd_lease_grant(m->etcd, ttl_s, &m->lease);
	if (err == MAIL_OK) {
		m->valid_until = member__valid_until(m, sent);
		err = member__record_put(m);
	}
	if (err == MAIL_OK)
		err = etcd_kv_put(m->etcd, m->alive_key, m->alive_value, strlen(m->alive_value),
				  m->lease);
	if (err != MAIL_OK) {
		*error_r = err == MAIL_ERR_UNAVAILABLE ? "etcd unreachable"
			   : err == MAIL_ERR_PERM     ? "etcd refused our user or its permissions"
						       : "etcd refused the registration";
	} else if (member__ring_ensure(m->etcd, role, &set, error_r) < 0) {
		err = MAIL_ERR_UNAVAILABLE;
	}
	if (err != MAIL_OK) {
		if (m->lease != 0)
			(void)etcd_lease_revoke(m->etcd, m->lease);
		member__free(m);
		return -1;
	}
	log_event(LOG_INFO, "router", "event=member_started role=%s node=%s addr=%s lease=%llx",
		  router_role_name(role), m->id, m->alive_value, (unsigned long long)m->lease);

	uint64_t period = (uint64_t)ttl_s * 1000 / 3;
	if (period < 100)
		period = 100;
	m->period_ms = period;
	m->grace_ms = (uint64_t)ttl_s * 1000 * MEMBER_LOOP_GRACE_TTLS;
	m->next_at = util_now_mono_ms() + period;
	m->loop_tick = util_now_mono_ms();
	if (uv_mutex_init(&m->mu) != 0 || uv_cond_init(&m->cond) != 0)
		abort(); /* out of resources at start-up */
	if (uv_thread_create(&m->keeper, member__keeper, m) != 0) {
		*error_r = "cannot start the lease keeper thread";
		(void)etcd_lease_revoke(m->etcd, m->lease);
		uv_cond_destroy(&m->cond);
		uv_mutex_destroy(&m->mu);
		member__free(m);
		return -1;
	}
	uv_timer_init(loop, &m->timer);
	m->timer.data = m;
	uv_timer_start(&m->timer, member__timer_cb, period, period);
	*member_r = m;
	return 0;
}

void router_member_stop(router_member **member)
{
	router_member *m = *member;
	if (m == NULL)
		return;
	*member = NULL;
	uv_mutex_lock(&m->mu);
	m->stopping = 1;
	uv_cond_signal(&m->cond);
	uv_mutex_unlock(&m->mu);
	/* at most one etcd request in flight (bounded by its timeout) */
	uv_thread_join(&m->keeper);
	if (m->lease != 0) {
		int err = etcd_lease_revoke(m->etcd, m->lease);
		log_event(LOG_INFO, "router", "event=member_stopped role=%s node=%s revoke=%s",
			  router_role_name(m->role), m->id, mail_error_info(err)->name);
		m->lease = 0;
	}
	uv_timer_stop(&m->timer);
	uv_close((uv_handle_t *)&m->timer, member__close_cb);
}

uint64_t router_member_lease_valid_until(const router_member *m)
{
	return m != NULL ? __atomic_load_n(&m->valid_until, __ATOMIC_RELAXED) : 0;
}
