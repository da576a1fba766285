/* directory-cache.c: the directory in memory (directory-cache.h).
 *
 * Locks: `lock` (a rwlock) guards the table, `live`, and the per-prefix
 * applied revisions and counts; readers take it shared, the watchers and
 * the supervisor exclusive. `mu` + `cond` carry the supervisor's wakeups
 * (stopping, a watcher ended). Counters are atomics.
 */
#include "directory-cache.h"
#include "directory-private.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "etcd.h"
#include "log.h"
#include "mail-error.h"
#include "util.h"
#include "xalloc.h"

#define DC_PREFIXES 4
#define DC_CHECK_MS_DEFAULT 1000
#define DC_RESYNC_MS_DEFAULT (300 * 1000)
/* failed checks in a row that count as a lag */
#define DC_CHECK_FAILURES 3
#define DC_BACKOFF_MIN_MS 100
#define DC_BACKOFF_MAX_MS 5000

static const char *const dc_prefixes[DC_PREFIXES] = {
	DIRECTORY_KEY_TENANTS,
	DIRECTORY_KEY_USERS,
	DIRECTORY_KEY_ALIASES,
	DIRECTORY_KEY_DOMAIN_ALIASES,
};

/* ---- the table: chained hash of key -> value ----------------------------- */

struct dc_entry {
	struct dc_entry *next;
	uint64_t hash;
	char *value; /* NUL-terminated */
	size_t len;
	char key[];
};

struct dc_table {
	struct dc_entry **slots;
	size_t n_slots; /* a power of two */
	size_t n;
};

static void dc_table_init(struct dc_table *t)
{
	t->n_slots = 64;
	t->slots = xcalloc(t->n_slots, sizeof *t->slots);
	t->n = 0;
}

static void dc_table_deinit(struct dc_table *t)
{
	for (size_t i = 0; i < t->n_slots; i++) {
		for (struct dc_entry *e = t->slots[i], *next; e != NULL; e = next) {
			next = e->next;
			free(e->value);
			free(e);
		}
	}
	free(t->slots);
	t->slots = NULL;
	t->n_slots = t->n = 0;
}

static struct dc_entry **dc_table_slot(const struct dc_table *t, const char *key, uint64_t h)
{
	struct dc_entry **p = &t->slots[h & (t->n_slots - 1)];
	while (*p != NULL && ((*p)->hash != h || strcmp((*p)->key, key) != 0))
		p = &(*p)->next;
	return p;
}

static void dc_table_grow(struct dc_table *t)
{
	size_t n_slots = t->n_slots * 2;
	struct dc_entry **slots = xcalloc(n_slots, sizeof *slots);
	for (size_t i = 0; i < t->n_slots; i++) {
		for (struct dc_entry *e = t->slots[i], *next; e != NULL; e = next) {
			next = e->next;
			e->next = slots[e->hash & (n_slots - 1)];
			slots[e->hash & (n_slots - 1)] = e;
		}
	}
	free(t->slots);
	t->slots = slots;
	t->n_slots = n_slots;
}

/* 1 when key is new, 0 when it replaced a value. */
static int dc_table_put(struct dc_table *t, const char *key, const char *value, size_t len)
{
	uint64_t h = util_hash64(key, strlen(key));
	struct dc_entry **p = dc_table_slot(t, key, h);
	char *v = xmalloc(len + 1);
	memcpy(v, value, len);
	v[len] = '\0';
	if (*p != NULL) {
		free((*p)->value);
		(*p)->value = v;
		(*p)->len = len;
		return 0;
	}
	size_t klen = strlen(key);
	struct dc_entry *e = xmalloc(sizeof *e + klen + 1);
	memcpy(e->key, key, klen + 1);
	e->hash = h;
	e->value = v;
	e->len = len;
	e->next = NULL;
	*p = e;
	if (++t->n > t->n_slots)
		dc_table_grow(t);
	return 1;
}

/* 1 when key was there. */
static int dc_table_del(struct dc_table *t, const char *key)
{
	struct dc_entry **p = dc_table_slot(t, key, util_hash64(key, strlen(key)));
	struct dc_entry *e = *p;
	if (e == NULL)
		return 0;
	*p = e->next;
	free(e->value);
	free(e);
	t->n--;
	return 1;
}

/* ---- the cache --------------------------------------------------------- */

struct dc_watcher {
	directory_cache *c;
	int prefix; /* index in dc_prefixes */
	etcd_client *etcd;
	int64_t from;
	pthread_t thread;
};

struct directory_cache {
	unsigned check_ms;
	unsigned resync_ms;
	etcd_client *etcd; /* the supervisor's: loads and checks */
	pthread_t thread;

	pthread_mutex_t mu;
	pthread_cond_t cond;
	int stopping;       /* under mu */
	int watcher_ended;  /* under mu */

	pthread_rwlock_t lock;
	struct dc_table table;
	int live;
	int64_t applied[DC_PREFIXES]; /* revision of the last event applied */
	int64_t count[DC_PREFIXES];   /* keys held under the prefix */

	struct dc_watcher w[DC_PREFIXES];
	int watch_stop;   /* atomic: ends the watches */
	int drop_events;  /* atomic: tests */

	/* atomic counters */
	uint64_t hits, fallbacks, confirms, loads, lags, watch_lost;
};

static void dc_add(uint64_t *counter)
{
	__atomic_add_fetch(counter, 1, __ATOMIC_RELAXED);
}

static void dc_set_live(directory_cache *c, int live)
{
	pthread_rwlock_wrlock(&c->lock);
	c->live = live;
	pthread_rwlock_unlock(&c->lock);
}

static int dc_event_cb(const etcd_event *ev, void *arg)
{
	struct dc_watcher *w = arg;
	directory_cache *c = w->c;
	if (__atomic_load_n(&c->drop_events, __ATOMIC_ACQUIRE))
		return 0;
	pthread_rwlock_wrlock(&c->lock);
	if (ev->type == ETCD_EVENT_PUT)
		c->count[w->prefix] += dc_table_put(&c->table, ev->key, ev->value, ev->value_len);
	else
		c->count[w->prefix] -= dc_table_del(&c->table, ev->key);
	c->applied[w->prefix] = ev->mod_revision;
	pthread_rwlock_unlock(&c->lock);
	return 0;
}

static void *dc_watcher_main(void *arg)
{
	struct dc_watcher *w = arg;
	directory_cache *c = w->c;
	int err = etcd_watch(w->etcd, dc_prefixes[w->prefix], NULL, w->from, dc_event_cb, w,
			     &c->watch_stop);
	if (!__atomic_load_n(&c->watch_stop, __ATOMIC_ACQUIRE)) {
		/* not asked to stop: the copy is no longer kept current */
		dc_set_live(c, 0);
		dc_add(&c->watch_lost);
		log_event(LOG_WARN, "directory", "event=cache_watch_lost prefix=%s err=%s",
			  dc_prefixes[w->prefix], mail_error_info(err)->name);
	}
	pthread_mutex_lock(&c->mu);
	c->watcher_ended = 1;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

/* Wait up to ms for stopping or a watcher's end; 1 when either happened. */
static int dc_wait(directory_cache *c, unsigned ms)
{
	struct timespec ts;
	util_mono_deadline(&ts, ms);
	pthread_mutex_lock(&c->mu);
	while (!c->stopping && !c->watcher_ended &&
	       pthread_cond_timedwait(&c->cond, &c->mu, &ts) != ETIMEDOUT)
		;
	int woken = c->stopping || c->watcher_ended;
	pthread_mutex_unlock(&c->mu);
	return woken;
}

static int dc_stopping(directory_cache *c)
{
	pthread_mutex_lock(&c->mu);
	int s = c->stopping;
	pthread_mutex_unlock(&c->mu);
	return s;
}

/* Read every prefix at one revision and swap the copy in (live). */
static int dc_load(directory_cache *c, int64_t *revision_r)
{
	struct dc_table t;
	dc_table_init(&t);
	int64_t rev = 0, count[DC_PREFIXES];
	int err = MAIL_OK;
	for (int p = 0; p < DC_PREFIXES && err == MAIL_OK; p++) {
		etcd_kv *kvs = NULL;
		size_t n = 0;
		err = etcd_kv_range_prefix(c->etcd, dc_prefixes[p], rev, &kvs, &n, &rev);
		for (size_t i = 0; err == MAIL_OK && i < n; i++)
			dc_table_put(&t, kvs[i].key, kvs[i].value, kvs[i].value_len);
		count[p] = (int64_t)n;
		etcd_kvs_free(kvs, n);
	}
	if (err != MAIL_OK) {
		dc_table_deinit(&t);
		return err;
	}
	pthread_rwlock_wrlock(&c->lock);
	struct dc_table old = c->table;
	c->table = t;
	for (int p = 0; p < DC_PREFIXES; p++) {
		c->applied[p] = rev;
		c->count[p] = count[p];
	}
	c->live = 1;
	pthread_rwlock_unlock(&c->lock);
	dc_table_deinit(&old);
	dc_add(&c->loads);
	log_event(LOG_INFO, "directory", "event=cache_loaded revision=%lld keys=%zu",
		  (long long)rev, t.n);
	*revision_r = rev;
	return MAIL_OK;
}

/* Why dc_check_loop() returned. */
enum dc_end { DC_END_WOKEN, DC_END_LAG, DC_END_RESYNC };

/* Check the copy against etcd every check_ms until stopping, a watcher's
 * end, a lag (see the header), or the time of the periodic resync. */
static enum dc_end dc_check_loop(directory_cache *c)
{
	int prev_mismatch[DC_PREFIXES] = { 0 };
	int64_t prev_applied[DC_PREFIXES] = { 0 };
	unsigned failures = 0;
	uint64_t resync_at = util_now_mono_ms() + c->resync_ms;
	while (!dc_wait(c, c->check_ms)) {
		if (util_now_mono_ms() >= resync_at)
			return DC_END_RESYNC;
		int64_t applied[DC_PREFIXES], held[DC_PREFIXES];
		pthread_rwlock_rdlock(&c->lock);
		memcpy(applied, c->applied, sizeof applied);
		memcpy(held, c->count, sizeof held);
		pthread_rwlock_unlock(&c->lock);
		int64_t count[DC_PREFIXES];
		int err = etcd_kv_prefix_counts(c->etcd, dc_prefixes, DC_PREFIXES, count, NULL);
		if (err != MAIL_OK) {
			/* a member cut from its cluster answers no read, and may
			 * keep our watch streams open and silent */
			if (++failures < DC_CHECK_FAILURES)
				continue;
			dc_add(&c->lags);
			log_event(LOG_WARN, "directory", "event=cache_lag reason=check_failed err=%s",
				  mail_error_info(err)->name);
			return DC_END_LAG;
		}
		failures = 0;
		for (int p = 0; p < DC_PREFIXES; p++) {
			int mismatch = count[p] != held[p];
			if (mismatch && prev_mismatch[p] && applied[p] == prev_applied[p]) {
				dc_add(&c->lags);
				log_event(LOG_WARN, "directory",
					  "event=cache_lag prefix=%s keys=%lld held=%lld applied=%lld",
					  dc_prefixes[p], (long long)count[p], (long long)held[p],
					  (long long)applied[p]);
				return DC_END_LAG;
			}
			prev_mismatch[p] = mismatch;
			prev_applied[p] = applied[p];
		}
	}
	return DC_END_WOKEN;
}

static void *dc_main(void *arg)
{
	directory_cache *c = arg;
	unsigned backoff = DC_BACKOFF_MIN_MS;
	while (!dc_stopping(c)) {
		int64_t rev = 0;
		int err = dc_load(c, &rev);
		if (err != MAIL_OK) {
			log_event(LOG_WARN, "directory", "event=cache_load_failed err=%s retry_ms=%u",
				  mail_error_info(err)->name, backoff);
			if (dc_wait(c, backoff) && dc_stopping(c))
				break;
			backoff = backoff * 2 > DC_BACKOFF_MAX_MS ? DC_BACKOFF_MAX_MS : backoff * 2;
			continue;
		}
		backoff = DC_BACKOFF_MIN_MS;
		pthread_mutex_lock(&c->mu);
		c->watcher_ended = 0;
		pthread_mutex_unlock(&c->mu);
		__atomic_store_n(&c->watch_stop, 0, __ATOMIC_RELEASE);
		for (int p = 0; p < DC_PREFIXES; p++) {
			c->w[p].from = rev + 1;
			if (pthread_create(&c->w[p].thread, NULL, dc_watcher_main, &c->w[p]) != 0)
				abort();
		}
		/* a resync keeps the copy live: its answers are as old as the
		 * watches' stop and the load (about a second) */
		if (dc_check_loop(c) != DC_END_RESYNC)
			dc_set_live(c, 0);
		__atomic_store_n(&c->watch_stop, 1, __ATOMIC_RELEASE);
		for (int p = 0; p < DC_PREFIXES; p++)
			pthread_join(c->w[p].thread, NULL);
		pthread_mutex_lock(&c->mu);
		c->watcher_ended = 0; /* or the backoff would not wait */
		pthread_mutex_unlock(&c->mu);
	}
	return NULL;
}

directory_cache *directory_cache_create(const etcd_conf *conf, etcd_stats *stats,
					unsigned check_ms, unsigned resync_ms)
{
	directory_cache *c = xcalloc(1, sizeof *c);
	c->check_ms = check_ms > 0 ? check_ms : DC_CHECK_MS_DEFAULT;
	c->resync_ms = resync_ms > 0 ? resync_ms : DC_RESYNC_MS_DEFAULT;
	c->etcd = etcd_client_create(conf);
	etcd_client_set_stats(c->etcd, stats);
	pthread_mutex_init(&c->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_rwlock_init(&c->lock, NULL);
	dc_table_init(&c->table);
	for (int p = 0; p < DC_PREFIXES; p++) {
		c->w[p].c = c;
		c->w[p].prefix = p;
		c->w[p].etcd = etcd_client_create(conf);
		etcd_client_set_stats(c->w[p].etcd, stats);
	}
	if (pthread_create(&c->thread, NULL, dc_main, c) != 0)
		abort();
	return c;
}

void directory_cache_destroy(directory_cache **cp)
{
	directory_cache *c = *cp;
	if (c == NULL)
		return;
	*cp = NULL;
	pthread_mutex_lock(&c->mu);
	c->stopping = 1;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->mu);
	__atomic_store_n(&c->watch_stop, 1, __ATOMIC_RELEASE);
	pthread_join(c->thread, NULL);
	for (int p = 0; p < DC_PREFIXES; p++)
		etcd_client_destroy(&c->w[p].etcd);
	etcd_client_destroy(&c->etcd);
	dc_table_deinit(&c->table);
	pthread_rwlock_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

int directory_cache_get(directory_cache *c, const char *key, char **value_r, size_t *len_r)
{
	pthread_rwlock_rdlock(&c->lock);
	if (!c->live) {
		pthread_rwlock_unlock(&c->lock);
		dc_add(&c->fallbacks);
		return -1;
	}
	struct dc_entry *e = *dc_table_slot(&c->table, key, util_hash64(key, strlen(key)));
	if (e != NULL) {
		*value_r = xmalloc(e->len + 1);
		memcpy(*value_r, e->value, e->len + 1);
		if (len_r != NULL)
			*len_r = e->len;
	}
	pthread_rwlock_unlock(&c->lock);
	dc_add(&c->hits);
	return e != NULL;
}

void directory_cache_stats_get(directory_cache *c, struct directory_cache_stats *st)
{
	pthread_rwlock_rdlock(&c->lock);
	st->live = c->live;
	st->keys = c->table.n;
	pthread_rwlock_unlock(&c->lock);
	st->hits = __atomic_load_n(&c->hits, __ATOMIC_RELAXED);
	st->fallbacks = __atomic_load_n(&c->fallbacks, __ATOMIC_RELAXED);
	st->confirms = __atomic_load_n(&c->confirms, __ATOMIC_RELAXED);
	st->loads = __atomic_load_n(&c->loads, __ATOMIC_RELAXED);
	st->lags = __atomic_load_n(&c->lags, __ATOMIC_RELAXED);
	st->watch_lost = __atomic_load_n(&c->watch_lost, __ATOMIC_RELAXED);
}

void directory_cache_count_confirm(directory_cache *c)
{
	dc_add(&c->confirms);
}

void directory_cache_test_drop_events(directory_cache *c, int on)
{
	__atomic_store_n(&c->drop_events, on, __ATOMIC_RELEASE);
}
