/* spf-check.c: the checker on the loop (spf-check.h): settings, the queue
 * in front of libuv's thread pool, each check's timer, the cache
 * generations, and destroy with checks in flight.
 *
 * A query lives in one of these states (loop thread only):
 *
 *   READY    decided without DNS (no domain to check, no client address,
 *            the queue full): its timer fires on the next loop turn and
 *            delivers the result;
 *   WAITING  in c->waiting for a worker slot (workers_max);
 *   RUNNING  in the pool (in_pool): uv_queue_work's after-callback is due;
 *   DONE     its callback has run, or it was cancelled.
 *
 * Every query has a uv_timer_t armed for its deadline (timeout_ms), or
 * for 0 ms when READY. When the deadline passes first, the callback gets
 * SPF_TEMPERROR at once and the query sets its abandon flag: the pool
 * thread stops asking DNS at its next lookup (spf-dns.c) and its outcome
 * is dropped. A query's memory goes when both its timer has closed and
 * the pool has given it back (spf__query_release); the checker's goes
 * when it is destroyed and its last query is gone, so a pool thread
 * never reads freed memory.
 *
 * Cache generations: libspf2's cache has no size bound and no purge, so a
 * generation (cache + resolver) is replaced by a new one once its
 * resolver has fetched cache_entries_max answers; running queries keep
 * theirs (refs) and the last one out frees it.
 */
#include "spf-private.h"

#include "log.h"
#include "util.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <spf2/spf_dns_cache.h>

struct spf__gen {
	SPF_dns_server_t *top; /* the cache over the resolver */
	unsigned refs;         /* RUNNING queries that use it */
	atomic_uint inserts;   /* answers the resolver gave the cache */
	struct spf__gen *next; /* retired generations still in use */
};

enum spf__state { SPF__READY, SPF__WAITING, SPF__RUNNING, SPF__DONE };

struct spf_query {
	spf_checker *c;
	enum spf__state state;
	spf_cb *cb;
	void *arg;
	struct spf__input in;
	struct spf__outcome out;
	uint64_t start_ms, deadline_ms;
	struct spf__gen *gen;  /* RUNNING */
	atomic_int abandon;    /* the pool thread stops asking DNS */
	int in_pool;           /* after_work_cb still to come */
	int timer_closed;
	uv_work_t work;
	uv_timer_t timer;
	spf_query *prev, *next; /* in c->waiting or c->active */
};

struct spf__list {
	spf_query *head, *tail;
	size_t count;
};

struct spf_checker {
	uv_loop_t *loop;
	/* immutable after create: pool threads read them */
	char *receiver;
	struct spf__limits limits;
	unsigned timeout_ms, workers_max, queue_max, cache_entries_max;
	struct spf__resolver_conf rconf;
	/* loop thread */
	struct spf__list waiting; /* WAITING, in arrival order */
	struct spf__list active;  /* READY and RUNNING */
	unsigned running;
	size_t queries;           /* allocated, DONE ones included */
	struct spf__gen *gen;     /* where new checks go */
	struct spf__gen *retired;
	int destroyed;
	/* stats; the pool threads add to lookups and dns_queries */
	uint64_t checks, evaluated, timeouts, busy, caches;
	atomic_uint_fast64_t lookups, dns_queries;
};

static void spf__list_append(struct spf__list *l, spf_query *q)
{
	q->prev = l->tail;
	q->next = NULL;
	if (l->tail != NULL)
		l->tail->next = q;
	else
		l->head = q;
	l->tail = q;
	l->count++;
}

static void spf__list_remove(struct spf__list *l, spf_query *q)
{
	if (q->prev != NULL)
		q->prev->next = q->next;
	else
		l->head = q->next;
	if (q->next != NULL)
		q->next->prev = q->prev;
	else
		l->tail = q->prev;
	q->prev = q->next = NULL;
	l->count--;
}

/* ---- cache generations ---- */

static struct spf__gen *spf__gen_new(spf_checker *c)
{
	struct spf__gen *g = xcalloc(1, sizeof *g);
	struct spf__resolver_conf conf = c->rconf;
	conf.inserts = &g->inserts;
	SPF_dns_server_t *resolver = spf__resolver_new(&conf);
	/* buckets: the next power of two over entries/2, 2^6..2^16 */
	int bits = 6;
	while (bits < 16 && (1u << bits) < c->cache_entries_max / 2)
		bits++;
	g->top = SPF_dns_cache_new(resolver, "mailspf-cache", 0, bits);
	if (g->top == NULL)
		abort();
	/* TTLs are the resolver's (spf__dns_read): no floors. libspf2's are
	 * 30 s for everything and 30 min for TXT and for errors, temporary
	 * ones included: a SERVFAIL would stick for half an hour. */
	SPF_dns_cache_set_ttl(g->top, 0, 0, 0, 0);
	/* lookups libspf2 marks not worth caching (exists:) stay out */
	SPF_dns_set_conserve_cache(g->top, 1);
	c->caches++;
	return g;
}

/* Frees the cache, then the resolver under it (SPF_dns_free). */
static void spf__gen_free(struct spf__gen *g)
{
	SPF_dns_free(g->top);
	free(g);
}

static struct spf__gen *spf__gen_acquire(spf_checker *c)
{
	if (c->gen != NULL && atomic_load(&c->gen->inserts) >= c->cache_entries_max) {
		if (c->gen->refs == 0) {
			spf__gen_free(c->gen);
		} else {
			c->gen->next = c->retired;
			c->retired = c->gen;
		}
		c->gen = NULL;
	}
	if (c->gen == NULL)
		c->gen = spf__gen_new(c);
	c->gen->refs++;
	return c->gen;
}

static void spf__gen_release(spf_checker *c, struct spf__gen *g)
{
	if (--g->refs > 0 || g == c->gen)
		return;
	for (struct spf__gen **pp = &c->retired; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == g) {
			*pp = g->next;
			break;
		}
	}
	spf__gen_free(g);
}

/* ---- queries ---- */

static void spf__input_free(struct spf__input *in)
{
	free(in->helo);
	free(in->mail_from);
	free(in->sender);
	free(in->domain);
	free(in->id);
}

static void spf__checker_free(spf_checker *c)
{
	if (c->gen != NULL)
		spf__gen_free(c->gen);
	while (c->retired != NULL) {
		struct spf__gen *g = c->retired;
		c->retired = g->next;
		spf__gen_free(g);
	}
	free(c->receiver);
	free(c);
}

/* Free q once its timer has closed and the pool has given it back; then
 * the checker, when it was destroyed and q was its last query. */
static void spf__query_release(spf_query *q)
{
	if (q->in_pool || !q->timer_closed)
		return;
	spf_checker *c = q->c;
	spf__input_free(&q->in);
	free(q);
	if (--c->queries == 0 && c->destroyed)
		spf__checker_free(c);
}

static void spf__timer_close_cb(uv_handle_t *handle)
{
	spf_query *q = handle->data;
	q->timer_closed = 1;
	spf__query_release(q);
}

/* q leaves the lists and its timer closes: after this its callback is
 * never called (the caller calls it first, when due). */
static void spf__query_finish(spf_query *q)
{
	spf_checker *c = q->c;
	if (q->state == SPF__WAITING)
		spf__list_remove(&c->waiting, q);
	else if (q->state == SPF__READY || q->state == SPF__RUNNING)
		spf__list_remove(&c->active, q);
	q->state = SPF__DONE;
	atomic_store(&q->abandon, 1);
	/* a check not yet picked up by a pool thread never starts */
	if (q->in_pool)
		uv_cancel((uv_req_t *)&q->work);
	uv_close((uv_handle_t *)&q->timer, spf__timer_close_cb);
}

/* Run q's callback with out (NULL: destroyed, the callback gets NULL),
 * then finish q. out is q->out only when no pool thread writes it (READY,
 * or back from the pool); a timeout brings its own. The callback may
 * cancel other queries, start checks, or destroy the checker: q and c
 * stay allocated until q is released. */
static void spf__deliver(spf_query *q, const struct spf__outcome *out)
{
	spf_checker *c = q->c;
	spf_cb *cb = q->cb;
	void *arg = q->arg;
	/* DONE before the callback: q is no longer the caller's */
	spf__query_finish(q);
	if (out == NULL) {
		cb(NULL, arg);
		return;
	}
	uint64_t elapsed = util_now_mono_ms() - q->start_ms;
	struct spf__texts t;
	spf__texts_build(&q->in, out, c->receiver, &t);
	struct spf_result r = {
		.status = out->status,
		.identity = q->in.identity,
		.sender = q->in.sender,
		.domain = q->in.domain,
		.comment = t.comment,
		.problem = out->problem[0] != '\0' ? out->problem : NULL,
		.received_spf = t.received_spf,
		.auth_results = t.auth_results,
		.dns_terms = out->terms,
		.void_lookups = out->voids,
		.elapsed_ms = elapsed,
	};
	/* the verdict goes into the caller's own log line; the errors say
	 * something about DNS or the sender's records: one line each */
	char domain[80], problem[120];
	if (r.status == SPF_TEMPERROR || r.status == SPF_PERMERROR)
		log_event(LOG_INFO, "spf",
			  "event=spf_error id=%s result=%s identity=%s domain=%s ip=%s terms=%u "
			  "voids=%u ms=%llu problem=%s",
			  q->in.id, spf_status_name(r.status), spf_identity_name(r.identity),
			  log_quote(domain, sizeof domain, r.domain, strlen(r.domain)), q->in.ip,
			  r.dns_terms, r.void_lookups, (unsigned long long)elapsed,
			  log_quote(problem, sizeof problem, out->problem, strlen(out->problem)));
	cb(&r, arg);
	spf__texts_free(&t);
}

/* ---- the pool ---- */

static void spf__work_cb(uv_work_t *work)
{
	spf_query *q = work->data;
	spf_checker *c = q->c; /* its immutable part only: this is a pool thread */
	struct spf__eval ev;
	spf__eval_init(&ev, q->gen->top, &c->limits, q->deadline_ms, &q->abandon, &c->lookups);
	spf__evaluate(&ev, c->receiver, &q->in, &q->out);
	spf__eval_deinit(&ev);
}

static void spf__pump(spf_checker *c);

static void spf__after_work_cb(uv_work_t *work, int status)
{
	spf_query *q = work->data;
	spf_checker *c = q->c;
	q->in_pool = 0;
	c->running--;
	spf__gen_release(c, q->gen);
	q->gen = NULL;
	if (status == 0)
		c->evaluated++;
	if (q->state == SPF__RUNNING)
		spf__deliver(q, &q->out);
	if (!c->destroyed)
		spf__pump(c);
	spf__query_release(q);
}

static void spf__start(spf_checker *c, spf_query *q)
{
	q->state = SPF__RUNNING;
	spf__list_append(&c->active, q);
	q->gen = spf__gen_acquire(c);
	q->in_pool = 1;
	c->running++;
	q->work.data = q;
	int e = uv_queue_work(c->loop, &q->work, spf__work_cb, spf__after_work_cb);
	if (e < 0) /* only for a NULL callback: our bug */
		abort();
}

/* Start waiting checks while workers are free. */
static void spf__pump(spf_checker *c)
{
	while (c->running < c->workers_max && c->waiting.head != NULL) {
		spf_query *q = c->waiting.head;
		spf__list_remove(&c->waiting, q);
		spf__start(c, q);
	}
}

static void spf__timer_cb(uv_timer_t *timer)
{
	spf_query *q = timer->data;
	if (q->state == SPF__READY) {
		spf__deliver(q, &q->out);
		return;
	}
	/* the deadline: answer now (a pool thread may still be writing
	 * q->out), let the pool thread run out */
	struct spf__outcome out = { .status = SPF_TEMPERROR };
	snprintf(out.problem, sizeof out.problem, "timed out");
	q->c->timeouts++;
	spf__deliver(q, &out);
}

/* ---- spf_check ---- */

/* The client address into in (IPv4-mapped IPv6 as IPv4, RFC 7208 5.6). */
static void spf__client(struct spf__input *in, const struct spf_request *req)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	if (req->client != NULL) {
		if (req->client->sa_family == AF_INET)
			memcpy(&ss, req->client, sizeof(struct sockaddr_in));
		else if (req->client->sa_family == AF_INET6)
			memcpy(&ss, req->client, sizeof(struct sockaddr_in6));
	} else if (req->client_ip != NULL) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		if (inet_pton(AF_INET, req->client_ip, &s4->sin_addr) == 1)
			s4->sin_family = AF_INET;
		else if (inet_pton(AF_INET6, req->client_ip, &s6->sin6_addr) == 1)
			s6->sin6_family = AF_INET6;
	}
	if (ss.ss_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)&ss)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a)) {
			in->family = AF_INET;
			memcpy(&in->ip4, &a->s6_addr[12], 4);
		} else {
			in->family = AF_INET6;
			in->ip6 = *a;
		}
	} else if (ss.ss_family == AF_INET) {
		in->family = AF_INET;
		in->ip4 = ((const struct sockaddr_in *)&ss)->sin_addr;
	}
	if (in->family == AF_INET)
		inet_ntop(AF_INET, &in->ip4, in->ip, sizeof in->ip);
	else if (in->family == AF_INET6)
		inet_ntop(AF_INET6, &in->ip6, in->ip, sizeof in->ip);
}

/* The identity, <sender> and domain of req (RFC 7208 2.3, 2.4, 4.3).
 * Returns 1 when there is a domain to check. */
static int spf__identity(struct spf__input *in, const struct spf_request *req)
{
	const char *helo = req->helo != NULL ? req->helo : "";
	const char *from = req->mail_from != NULL ? req->mail_from : "";
	size_t helo_len = strlen(helo), from_len = strlen(from);
	in->helo = xstrndup(helo, SPF__HELO_MAX);
	in->mail_from = xstrndup(from, SPF__MAIL_FROM_MAX);
	in->id = xstrdup(req->id != NULL && req->id[0] != '\0' ? req->id : "-");
	if (req->identity == SPF_IDENTITY_HELO || from_len == 0) {
		in->identity = SPF_IDENTITY_HELO;
		in->sender = xasprintf("postmaster@%s", in->helo);
		if (helo_len > SPF__HELO_MAX || !spf__domain_usable(helo, helo_len)) {
			in->domain = xstrdup("");
			return 0;
		}
		in->domain = xstrdup(helo);
		return 1;
	}
	in->identity = SPF_IDENTITY_MAILFROM;
	const char *at = strrchr(in->mail_from, '@');
	const char *dom = at != NULL ? at + 1 : in->mail_from;
	/* no local part: postmaster (RFC 7208 4.3) */
	if (at == NULL || at == in->mail_from)
		in->sender = xasprintf("postmaster@%s", dom);
	else
		in->sender = xstrdup(in->mail_from);
	if (from_len > SPF__MAIL_FROM_MAX || !spf__domain_usable(dom, strlen(dom))) {
		in->domain = xstrdup("");
		return 0;
	}
	in->domain = xstrdup(dom);
	return 1;
}

spf_query *spf_check(spf_checker *c, const struct spf_request *req, spf_cb *cb, void *arg)
{
	if (c->destroyed)
		abort(); /* spf_check from a callback run by destroy: the caller's bug */
	spf_query *q = xcalloc(1, sizeof *q);
	q->c = c;
	q->cb = cb;
	q->arg = arg;
	q->start_ms = util_now_mono_ms();
	q->deadline_ms = q->start_ms + c->timeout_ms;
	atomic_init(&q->abandon, 0);
	c->queries++;
	c->checks++;
	uv_timer_init(c->loop, &q->timer);
	q->timer.data = q;

	spf__client(&q->in, req);
	int has_domain = spf__identity(&q->in, req);
	uint64_t timeout = c->timeout_ms;
	if (q->in.family == 0) {
		q->out.status = SPF_PERMERROR;
		snprintf(q->out.problem, sizeof q->out.problem, "no client address");
	} else if (!has_domain) {
		q->out.status = SPF_NONE;
	} else if (c->running < c->workers_max) {
		spf__start(c, q);
	} else if (c->waiting.count < c->queue_max) {
		q->state = SPF__WAITING;
		spf__list_append(&c->waiting, q);
	} else {
		c->busy++;
		q->out.status = SPF_TEMPERROR;
		snprintf(q->out.problem, sizeof q->out.problem, "busy: %u checks waiting",
			 c->queue_max);
		log_event(LOG_WARN, "spf", "event=spf_busy id=%s waiting=%u", q->in.id,
			  c->queue_max);
	}
	if (q->state == SPF__READY) {
		spf__list_append(&c->active, q);
		timeout = 0;
	}
	/* the loop's clock may be stale (a callback ran long): the deadline
	 * counts from start_ms, so the timer must count from now too */
	uv_update_time(c->loop);
	uv_timer_start(&q->timer, spf__timer_cb, timeout, 0);
	return q;
}

void spf_query_cancel(spf_query **query)
{
	spf_query *q = *query;
	if (q == NULL)
		return;
	*query = NULL;
	if (q->state == SPF__DONE)
		abort(); /* its callback has run: the handle was invalid */
	spf__query_finish(q);
	spf__query_release(q);
}

/* ---- the checker ---- */

/* A setting: 0 takes def, else it must lie in [min, max]. */
static int spf__setting(unsigned *v, unsigned def, unsigned min, unsigned max)
{
	if (*v == 0)
		*v = def;
	return *v >= min && *v <= max ? 0 : -1;
}

struct spf_settings spf_settings_default(void)
{
	struct spf_settings s = {
		.timeout_ms = SPF_CHECK_TIMEOUT_MS_DEFAULT,
		.dns_timeout_s = SPF_CHECK_DNS_TIMEOUT_S_DEFAULT,
		.dns_tries = SPF_CHECK_DNS_TRIES_DEFAULT,
		.dns_terms_max = SPF_CHECK_DNS_TERMS_DEFAULT,
		.void_lookups_max = SPF_CHECK_VOID_LOOKUPS_DEFAULT,
		.workers_max = SPF_CHECK_WORKERS_DEFAULT,
		.queue_max = SPF_CHECK_QUEUE_DEFAULT,
		.cache_entries_max = SPF_CHECK_CACHE_ENTRIES_DEFAULT,
		.cache_ttl_max_s = SPF_CHECK_CACHE_TTL_S_DEFAULT,
	};
	return s;
}

static int spf__settings_check(struct spf_settings *s, const char **error_r)
{
	static const struct {
		size_t off;
		unsigned def, min, max;
		const char *error;
	} rows[] = {
#define SPF__ROW(field, NAME, what)                                                             \
	{ offsetof(struct spf_settings, field), SPF_CHECK_##NAME##_DEFAULT,                    \
	  SPF_CHECK_##NAME##_MIN, SPF_CHECK_##NAME##_MAX, what " out of range" }
		SPF__ROW(timeout_ms, TIMEOUT_MS, "spf timeout_ms"),
		SPF__ROW(dns_timeout_s, DNS_TIMEOUT_S, "spf dns_timeout_s"),
		SPF__ROW(dns_tries, DNS_TRIES, "spf dns_tries"),
		SPF__ROW(dns_terms_max, DNS_TERMS, "spf dns_terms_max"),
		SPF__ROW(void_lookups_max, VOID_LOOKUPS, "spf void_lookups_max"),
		SPF__ROW(workers_max, WORKERS, "spf workers_max"),
		SPF__ROW(queue_max, QUEUE, "spf queue_max"),
		SPF__ROW(cache_entries_max, CACHE_ENTRIES, "spf cache_entries_max"),
		SPF__ROW(cache_ttl_max_s, CACHE_TTL_S, "spf cache_ttl_max_s"),
#undef SPF__ROW
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		unsigned *v = (unsigned *)((char *)s + rows[i].off);
		if (spf__setting(v, rows[i].def, rows[i].min, rows[i].max) < 0) {
			*error_r = rows[i].error;
			return -1;
		}
	}
	return 0;
}

int spf_checker_create(uv_loop_t *loop, const struct spf_settings *settings,
		       spf_checker **checker_r, const char **error_r)
{
	*checker_r = NULL;
	struct spf_settings s = settings != NULL ? *settings : spf_settings_default();
	if (spf__settings_check(&s, error_r) < 0)
		return -1;
	struct spf__resolver_conf rconf = {
		.timeout_s = s.dns_timeout_s,
		.tries = s.dns_tries,
		.ttl_max_s = s.cache_ttl_max_s,
	};
	if (s.dns_server != NULL) {
		if (util_ipport_parse(s.dns_server, &rconf.server, error_r) < 0)
			return -1;
		rconf.has_server = 1;
	}
	char host[256];
	const char *receiver = s.receiver;
	if (receiver == NULL) {
		if (gethostname(host, sizeof host) < 0) {
			*error_r = "spf receiver: gethostname failed";
			return -1;
		}
		host[sizeof host - 1] = '\0';
		receiver = host;
	}
	if (receiver[0] == '\0' || strlen(receiver) > 253 ||
	    strspn(receiver, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.") !=
		    strlen(receiver)) {
		*error_r = "spf receiver: not a host name";
		return -1;
	}

	spf_checker *c = xcalloc(1, sizeof *c);
	c->loop = loop;
	c->receiver = xstrdup(receiver);
	c->limits.terms_max = s.dns_terms_max;
	c->limits.voids_max = s.void_lookups_max;
	c->timeout_ms = s.timeout_ms;
	c->workers_max = s.workers_max;
	c->queue_max = s.queue_max;
	c->cache_entries_max = s.cache_entries_max;
	atomic_init(&c->lookups, 0);
	atomic_init(&c->dns_queries, 0);
	c->rconf = rconf;
	c->rconf.queries = &c->dns_queries;
	*checker_r = c;
	return 0;
}

void spf_checker_destroy(spf_checker **checker)
{
	spf_checker *c = *checker;
	if (c == NULL)
		return;
	*checker = NULL;
	if (c->destroyed)
		return; /* again, from a callback run by the first call */
	c->destroyed = 1;
	/* waiting first, then READY and RUNNING: each gets NULL now */
	while (c->waiting.head != NULL)
		spf__deliver(c->waiting.head, NULL);
	while (c->active.head != NULL)
		spf__deliver(c->active.head, NULL);
	if (c->queries == 0)
		spf__checker_free(c);
}

size_t spf_checker_pending(const spf_checker *c)
{
	return c->waiting.count + c->active.count;
}

void spf_checker_get_stats(const spf_checker *c, struct spf_stats *stats_r)
{
	stats_r->checks = c->checks;
	stats_r->evaluated = c->evaluated;
	stats_r->timeouts = c->timeouts;
	stats_r->busy = c->busy;
	stats_r->lookups = atomic_load(&c->lookups);
	stats_r->dns_queries = atomic_load(&c->dns_queries);
	stats_r->caches = c->caches;
}
