/* auth-guard.c: see auth-guard.h. */
#include "auth-guard.h"

#include "etcd.h"
#include "log.h"
#include "mail-error.h"
#include "util.h"
#include "xalloc.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define AUTH_GUARD_SVC "auth-guard"
#define AUTH_GUARD_IP_MAX 46 /* INET6_ADDRSTRLEN */

struct guard_entry {
	char ip[AUTH_GUARD_IP_MAX];
	unsigned failures;
	uint64_t first_ms;   /* first failure of the window */
	uint64_t last_ms;    /* latest failure */
};

/* A block to write, or the blocks read (pool jobs). */
struct guard_job {
	uv_work_t work;
	auth_guard *g;
	etcd_conf *etcd;
	struct etcd_stats *stats;
	int is_poll;
	/* write */
	char ip[AUTH_GUARD_IP_MAX];
	char *value;
	unsigned ttl_s;
	/* poll result: sorted IPs */
	char **ips;
	size_t n_ips;
	int status;
};

struct auth_guard {
	uv_loop_t *loop;
	struct auth_guard_settings set;
	etcd_conf *etcd;
	etcd_pool *pool;     /* the jobs' clients (connections kept) */
	char *node_id;
	uv_timer_t *timer;
	int stopped;
	int jobs;            /* in flight; the guard is freed when 0 after stop */
	int polling;
	uint64_t now_override;
	struct guard_entry *table; /* AUTH_GUARD_SETS * AUTH_GUARD_WAYS */
	char **blocked;      /* sorted, as last read */
	size_t n_blocked;
	char **local;        /* blocked here and not yet seen in a read */
	size_t n_local;
};

static uint64_t guard_now(const auth_guard *g)
{
	return g->now_override != 0 ? g->now_override : uv_now(g->loop);
}

static void strv_free(char **v, size_t n)
{
	for (size_t k = 0; k < n; k++)
		free(v[k]);
	free(v);
}

static int strp_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---- the failure table ---------------------------------------------------- */

/* The entry of ip, or NULL; with create, a fresh or recycled one. */
static struct guard_entry *guard_entry(auth_guard *g, const char *ip, int create)
{
	size_t set = (size_t)(util_hash64(ip, strlen(ip)) % AUTH_GUARD_SETS);
	struct guard_entry *ways = &g->table[set * AUTH_GUARD_WAYS];
	uint64_t now = guard_now(g);
	struct guard_entry *victim = &ways[0];
	for (unsigned k = 0; k < AUTH_GUARD_WAYS; k++) {
		struct guard_entry *e = &ways[k];
		if (e->ip[0] != '\0' && strcmp(e->ip, ip) == 0) {
			if (now - e->first_ms > g->set.window_ms) {
				e->failures = 0; /* the window passed */
				e->first_ms = now;
			}
			return e;
		}
		if (e->ip[0] == '\0' || e->last_ms < victim->last_ms)
			victim = e;
	}
	if (!create)
		return NULL;
	memset(victim, 0, sizeof *victim);
	snprintf(victim->ip, sizeof victim->ip, "%s", ip);
	victim->first_ms = now;
	return victim;
}

unsigned auth_guard_failures(auth_guard *g, const char *ip)
{
	struct guard_entry *e = guard_entry(g, ip, 0);
	return e != NULL ? e->failures : 0;
}

unsigned auth_guard_delay_ms(auth_guard *g, const char *ip)
{
	unsigned n = auth_guard_failures(g, ip);
	if (n == 0)
		return 0;
	uint64_t d = n >= 20 ? UINT64_MAX : (1000ull << n);
	return d > g->set.max_delay_ms ? g->set.max_delay_ms : (unsigned)d;
}

/* ---- blocks ------------------------------------------------------------------ */

static int guard_in(char *const *v, size_t n, const char *ip)
{
	return n > 0 && bsearch(&ip, v, n, sizeof *v, strp_cmp) != NULL;
}

int auth_guard_blocked(const auth_guard *g, const char *ip)
{
	if (guard_in(g->blocked, g->n_blocked, ip))
		return 1;
	for (size_t k = 0; k < g->n_local; k++) {
		if (strcmp(g->local[k], ip) == 0)
			return 1;
	}
	return 0;
}

unsigned auth_guard_blocked_count(const auth_guard *g)
{
	return (unsigned)g->n_blocked;
}

static void guard_maybe_free(auth_guard *g)
{
	if (!g->stopped || g->jobs > 0 || g->timer != NULL)
		return;
	strv_free(g->blocked, g->n_blocked);
	strv_free(g->local, g->n_local);
	free(g->table);
	etcd_pool_destroy(&g->pool);
	etcd_conf_free(&g->etcd);
	free(g->node_id);
	free(g);
}

static void guard_work_cb(uv_work_t *w)
{
	struct guard_job *j = w->data;
	etcd_client *etcd = etcd_pool_take(j->g->pool);
	if (j->is_poll) {
		etcd_kv *kvs = NULL;
		size_t n = 0;
		j->status = etcd_kv_range_prefix(etcd, AUTH_GUARD_KEY_PREFIX, 0, &kvs, &n, NULL);
		if (j->status == MAIL_OK) {
			j->ips = xcalloc(n + 1, sizeof *j->ips);
			for (size_t k = 0; k < n; k++) {
				const char *ip = kvs[k].key + strlen(AUTH_GUARD_KEY_PREFIX);
				if (strlen(ip) < AUTH_GUARD_IP_MAX)
					j->ips[j->n_ips++] = xstrdup(ip);
			}
			qsort(j->ips, j->n_ips, sizeof *j->ips, strp_cmp);
			etcd_kvs_free(kvs, n);
		}
	} else {
		int64_t lease = 0;
		char key[128];
		snprintf(key, sizeof key, AUTH_GUARD_KEY_PREFIX "%s", j->ip);
		j->status = etcd_lease_grant(etcd, (int)j->ttl_s, &lease);
		if (j->status == MAIL_OK)
			j->status = etcd_kv_put(etcd, key, j->value, strlen(j->value), lease);
	}
	etcd_pool_give(j->g->pool, &etcd);
}

static void guard_after_cb(uv_work_t *w, int status)
{
	struct guard_job *j = w->data;
	auth_guard *g = j->g;
	g->jobs--;
	if (j->is_poll) {
		g->polling = 0;
		if (status == 0 && j->status == MAIL_OK && !g->stopped) {
			strv_free(g->blocked, g->n_blocked);
			g->blocked = j->ips;
			g->n_blocked = j->n_ips;
			j->ips = NULL;
			j->n_ips = 0;
			/* local blocks the read already shows are no longer needed */
			size_t keep = 0;
			for (size_t k = 0; k < g->n_local; k++) {
				if (guard_in(g->blocked, g->n_blocked, g->local[k]))
					free(g->local[k]);
				else
					g->local[keep++] = g->local[k];
			}
			g->n_local = keep;
		}
		strv_free(j->ips, j->n_ips);
	} else if (status != 0 || j->status != MAIL_OK) {
		log_event(LOG_WARN, AUTH_GUARD_SVC, "event=block_write_failed ip=%s status=%d",
			  j->ip, j->status);
	}
	free(j->value);
	etcd_conf_free(&j->etcd);
	free(j);
	guard_maybe_free(g);
}

static void guard_queue(auth_guard *g, struct guard_job *j)
{
	j->work.data = j;
	j->g = g;
	j->etcd = etcd_conf_dup(g->etcd);
	j->stats = g->set.stats;
	g->jobs++;
	uv_queue_work(g->loop, &j->work, guard_work_cb, guard_after_cb);
}

void auth_guard_failure(auth_guard *g, const char *ip)
{
	struct guard_entry *e = guard_entry(g, ip, 1);
	e->failures++;
	e->last_ms = guard_now(g);
	if (e->failures != g->set.block_after || auth_guard_blocked(g, ip))
		return;
	log_event(LOG_WARN, AUTH_GUARD_SVC, "event=ip_blocked ip=%s failures=%u ttl_s=%u", ip,
		  e->failures, g->set.block_ttl_s);
	g->local = xrealloc(g->local, (g->n_local + 1) * sizeof *g->local);
	g->local[g->n_local++] = xstrdup(ip);
	if (g->etcd == NULL)
		return;
	struct guard_job *j = xcalloc(1, sizeof *j);
	snprintf(j->ip, sizeof j->ip, "%s", ip);
	j->ttl_s = g->set.block_ttl_s;
	json_t *v = json_pack("{s:s,s:s,s:I}", "reason", "auth_failures", "by",
			      g->node_id != NULL ? g->node_id : "", "at",
			      (json_int_t)util_now_wall_ms());
	j->value = json_dumps(v, JSON_COMPACT);
	json_decref(v);
	guard_queue(g, j);
}

/* ---- lifetime --------------------------------------------------------------- */

static void guard_poll_cb(uv_timer_t *t)
{
	auth_guard *g = t->data;
	if (g->polling || g->etcd == NULL)
		return;
	g->polling = 1;
	struct guard_job *j = xcalloc(1, sizeof *j);
	j->is_poll = 1;
	guard_queue(g, j);
}

auth_guard *auth_guard_start(uv_loop_t *loop, const struct auth_guard_settings *set)
{
	auth_guard *g = xcalloc(1, sizeof *g);
	g->loop = loop;
	g->set = *set;
	if (g->set.max_delay_ms == 0)
		g->set.max_delay_ms = AUTH_GUARD_MAX_DELAY_MS;
	if (g->set.window_ms == 0)
		g->set.window_ms = AUTH_GUARD_WINDOW_MS;
	if (g->set.block_after == 0)
		g->set.block_after = AUTH_GUARD_BLOCK_AFTER;
	if (g->set.block_ttl_s == 0)
		g->set.block_ttl_s = AUTH_GUARD_BLOCK_TTL_S;
	g->etcd = etcd_conf_dup(set->etcd);
	if (g->etcd != NULL)
		g->pool = etcd_pool_create(g->etcd, set->stats, 2);
	g->node_id = set->node_id != NULL ? xstrdup(set->node_id) : NULL;
	g->set.etcd = g->etcd;
	g->set.node_id = g->node_id;
	g->table = xcalloc((size_t)AUTH_GUARD_SETS * AUTH_GUARD_WAYS, sizeof *g->table);
	g->timer = xcalloc(1, sizeof *g->timer);
	uv_timer_init(loop, g->timer);
	g->timer->data = g;
	uv_timer_start(g->timer, guard_poll_cb, 0, AUTH_GUARD_POLL_MS);
	return g;
}

static void guard_timer_close_cb(uv_handle_t *h)
{
	auth_guard *g = h->data;
	free(h);
	g->timer = NULL;
	guard_maybe_free(g);
}

void auth_guard_stop(auth_guard **gp)
{
	auth_guard *g = *gp;
	if (g == NULL)
		return;
	*gp = NULL;
	g->stopped = 1;
	uv_close((uv_handle_t *)g->timer, guard_timer_close_cb);
}

void auth_guard_set_now(auth_guard *g, uint64_t now_ms)
{
	g->now_override = now_ms;
}
