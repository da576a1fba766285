/* auth-pool.c: see auth-pool.h. */
#include "auth-pool.h"

#include "log.h"
#include "mail-error.h"
#include "util.h"
#include "xalloc.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define AUTH_POOL_SVC "auth-pool"
#define AUTH_POOL_USER_MAX 320

/* JOB_ACTIVE: a password the cache knows; still, the user may have been
 * disabled, deleted or its tenant suspended since (two etcd reads, no
 * hashing). */
enum job_kind { JOB_PASSWORD, JOB_SCRAM, JOB_ACTIVE };

struct job {
	struct job *next;
	enum job_kind kind;
	char *user;
	char *password;        /* JOB_PASSWORD; wiped after use */
	uint8_t digest[32];    /* the cache key of (user, password) */
	int app;               /* an app password: never cached */
	int status;
	char *canonical;
	struct sasl_scram_keys keys;
	auth_pool_cb *cb;
	void *arg;
};

struct cache_entry {
	uint8_t digest[32];
	uint64_t expires;      /* uv_now() ms; 0: empty */
	char user[AUTH_POOL_USER_MAX + 1];
};

struct auth_pool {
	uv_loop_t *loop;
	directory *dir;
	uint8_t key[32];
	unsigned ttl_ms;
	uv_async_t *async;
	pthread_t threads[AUTH_POOL_THREADS];
	size_t n_threads;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	struct job *todo, *todo_tail; /* under mu */
	size_t n_todo;
	struct job *done;             /* under mu */
	int stopping;                 /* under mu */
	struct cache_entry *cache;    /* loop thread */
	struct auth_pool_stats stats; /* loop thread (checks: under mu) */
};

static void job_free(struct job *j)
{
	if (j->password != NULL) {
		OPENSSL_cleanse(j->password, strlen(j->password));
		free(j->password);
	}
	OPENSSL_cleanse(&j->keys, sizeof j->keys);
	free(j->user);
	free(j->canonical);
	free(j);
}

/* ---- the threads ------------------------------------------------------------ */

static void job_run(auth_pool *p, struct job *j)
{
	char *addr = util_address_normalize(j->user, strlen(j->user));
	if (addr == NULL)
		j->status = MAIL_ERR_PERM;
	else if (j->kind == JOB_PASSWORD)
		j->status = directory_authenticate(p->dir, addr, j->password);
	else if (j->kind == JOB_ACTIVE)
		j->status = directory_user_active(p->dir, addr);
	else
		j->status = directory_user_scram(p->dir, addr, &j->keys);
	if (j->status == MAIL_ERR_NOT_FOUND)
		j->status = MAIL_ERR_PERM;
	j->canonical = addr;
	if (j->password != NULL) {
		OPENSSL_cleanse(j->password, strlen(j->password));
		free(j->password);
		j->password = NULL;
	}
}

static void *pool_thread(void *arg)
{
	auth_pool *p = arg;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (p->todo == NULL && !p->stopping)
			pthread_cond_wait(&p->cond, &p->mu);
		if (p->todo == NULL)
			break; /* stopping, nothing left */
		struct job *j = p->todo;
		p->todo = j->next;
		if (p->todo == NULL)
			p->todo_tail = NULL;
		p->n_todo--;
		int stopping = p->stopping;
		pthread_mutex_unlock(&p->mu);
		if (stopping)
			j->status = MAIL_ERR_UNAVAILABLE;
		else
			job_run(p, j);
		pthread_mutex_lock(&p->mu);
		p->stats.checks += !stopping && j->kind != JOB_ACTIVE; /* hashing ones */
		j->next = p->done;
		p->done = j;
		uv_async_send(p->async);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* ---- the cache (loop thread) ---------------------------------------------- */

static void cache_digest(const auth_pool *p, const char *user, const char *password,
			 uint8_t out[32])
{
	size_t ul = strlen(user), pl = strlen(password);
	uint8_t *msg = xmalloc(ul + 1 + pl + 1);
	memcpy(msg, user, ul);
	msg[ul] = 0;
	memcpy(msg + ul + 1, password, pl);
	unsigned int n = 32;
	HMAC(EVP_sha256(), p->key, sizeof p->key, msg, ul + 1 + pl, out, &n);
	OPENSSL_cleanse(msg, ul + 1 + pl);
	free(msg);
}

static struct cache_entry *cache_slot(auth_pool *p, const uint8_t digest[32])
{
	uint32_t h = (uint32_t)digest[0] | (uint32_t)digest[1] << 8 | (uint32_t)digest[2] << 16;
	return &p->cache[h % AUTH_POOL_CACHE];
}

/* ---- the loop side --------------------------------------------------------------- */

static void pool_deliver(auth_pool *p, struct job *j)
{
	if (j->kind == JOB_PASSWORD && j->status == MAIL_OK && !j->app &&
	    j->canonical != NULL && strlen(j->canonical) <= AUTH_POOL_USER_MAX) {
		struct cache_entry *e = cache_slot(p, j->digest);
		memcpy(e->digest, j->digest, 32);
		e->expires = uv_now(p->loop) + p->ttl_ms;
		snprintf(e->user, sizeof e->user, "%s", j->canonical);
	}
	j->cb(j->status, j->status == MAIL_OK ? j->canonical : NULL,
	      j->kind == JOB_SCRAM && j->status == MAIL_OK ? &j->keys : NULL, j->arg);
	job_free(j);
}

static void pool_async_cb(uv_async_t *a)
{
	auth_pool *p = a->data;
	pthread_mutex_lock(&p->mu);
	struct job *list = p->done;
	p->done = NULL;
	pthread_mutex_unlock(&p->mu);
	/* oldest first */
	struct job *rev = NULL;
	while (list != NULL) {
		struct job *n = list->next;
		list->next = rev;
		rev = list;
		list = n;
	}
	while (rev != NULL) {
		struct job *n = rev->next;
		pool_deliver(p, rev);
		rev = n;
	}
}

static void pool_submit(auth_pool *p, struct job *j)
{
	pthread_mutex_lock(&p->mu);
	if (p->n_todo >= AUTH_POOL_QUEUE_MAX) {
		j->status = MAIL_ERR_UNAVAILABLE;
		p->stats.refused++;
		j->next = p->done; /* answered on the next loop turn */
		p->done = j;
		uv_async_send(p->async);
	} else {
		if (p->todo_tail != NULL)
			p->todo_tail->next = j;
		else
			p->todo = j;
		p->todo_tail = j;
		p->n_todo++;
		pthread_cond_signal(&p->cond);
	}
	pthread_mutex_unlock(&p->mu);
}

void auth_pool_password(auth_pool *p, const char *user, const char *password,
			auth_pool_cb *cb, void *arg)
{
	struct job *j = xcalloc(1, sizeof *j);
	j->kind = JOB_PASSWORD;
	j->user = xstrdup(user);
	j->cb = cb;
	j->arg = arg;
	cache_digest(p, user, password, j->digest);
	struct cache_entry *e = cache_slot(p, j->digest);
	/* an app password is checked each time: it costs no argon2id, and a
	 * revoked one must stop at once */
	int app = directory_app_password_shaped(password);
	if (!app && e->expires > uv_now(p->loop) && CRYPTO_memcmp(e->digest, j->digest, 32) == 0) {
		j->kind = JOB_ACTIVE;
		free(j->user);
		j->user = xstrdup(e->user);
		p->stats.cache_hits++;
	} else {
		j->password = xstrdup(password);
		j->app = app;
	}
	pool_submit(p, j);
}

void auth_pool_scram(auth_pool *p, const char *user, auth_pool_cb *cb, void *arg)
{
	struct job *j = xcalloc(1, sizeof *j);
	j->kind = JOB_SCRAM;
	j->user = xstrdup(user);
	j->cb = cb;
	j->arg = arg;
	pool_submit(p, j);
}

auth_pool *auth_pool_start(uv_loop_t *loop, directory *dir, const uint8_t *key, size_t key_len,
			   unsigned ttl_ms)
{
	auth_pool *p = xcalloc(1, sizeof *p);
	p->loop = loop;
	p->dir = dir;
	p->ttl_ms = ttl_ms != 0 ? ttl_ms : AUTH_POOL_TTL_MS;
	unsigned int n = 32;
	/* the cache's own key, derived: never the secret itself */
	HMAC(EVP_sha256(), key, (int)key_len, (const uint8_t *)"auth cache", 10, p->key, &n);
	p->cache = xcalloc(AUTH_POOL_CACHE, sizeof *p->cache);
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->async = xcalloc(1, sizeof *p->async);
	uv_async_init(loop, p->async, pool_async_cb);
	p->async->data = p;
	for (size_t k = 0; k < AUTH_POOL_THREADS; k++) {
		if (pthread_create(&p->threads[k], NULL, pool_thread, p) != 0)
			break;
		p->n_threads++;
	}
	return p;
}

static void pool_async_closed(uv_handle_t *h)
{
	free(h);
}

void auth_pool_stop(auth_pool **pp)
{
	auth_pool *p = *pp;
	if (p == NULL)
		return;
	*pp = NULL;
	pthread_mutex_lock(&p->mu);
	p->stopping = 1;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->mu);
	for (size_t k = 0; k < p->n_threads; k++)
		pthread_join(p->threads[k], NULL);
	pool_async_cb(p->async); /* what finished or was refused */
	uv_close((uv_handle_t *)p->async, pool_async_closed);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cond);
	OPENSSL_cleanse(p->cache, AUTH_POOL_CACHE * sizeof *p->cache);
	free(p->cache);
	OPENSSL_cleanse(p->key, sizeof p->key);
	free(p);
}

void auth_pool_get_stats(const auth_pool *p, struct auth_pool_stats *stats_r)
{
	*stats_r = p->stats;
}
