/* dns.c: the resolver (dns.h): c-ares on a libuv loop, the status table,
 * and the life of a request (dns-private.h). The lookups themselves are
 * dns-lookup.c.
 *
 * c-ares on the loop: c-ares tells which sockets it wants watched through
 * its sock-state callback; each gets a uv_poll_t whose events go back to
 * ares_process_fd(). c-ares' timeouts fire only when it is called, so a
 * uv_timer set to ares_timeout() calls ares_process_fd(BAD, BAD). Without
 * ARES_FLAG_STAYOPEN c-ares closes its sockets once no query is pending,
 * so an idle resolver holds no active handle and does not keep the loop
 * alive.
 */
#include "dns-private.h"

#include "log.h"
#include "util.h"
#include "xalloc.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* The one mapping from c-ares' codes to ours. Not listed: DNS_TEMP.
 * c-ares retries a SERVFAIL or REFUSED answer on the next server and, once
 * every try is spent, reports ARES_ECONNREFUSED ("Could not contact DNS
 * servers") or the answer's own code: all temporary. */
static const struct {
	int ares;
	enum dns_status status;
} dns__status_table[] = {
	{ ARES_SUCCESS, DNS_OK },
	{ ARES_ENOTFOUND, DNS_NXDOMAIN },
	{ ARES_ENODATA, DNS_NODATA },
	{ ARES_EBADNAME, DNS_BADNAME },
	{ ARES_EDESTRUCTION, DNS_CANCELLED },
	{ ARES_ECANCELLED, DNS_CANCELLED },
	{ ARES_ESERVFAIL, DNS_TEMP },
	{ ARES_EREFUSED, DNS_TEMP },
	{ ARES_ECONNREFUSED, DNS_TEMP },
	{ ARES_ETIMEOUT, DNS_TEMP },
	{ ARES_EFORMERR, DNS_TEMP },
	{ ARES_ENOTIMP, DNS_TEMP },
	{ ARES_EBADRESP, DNS_TEMP },
	{ ARES_ENOMEM, DNS_TEMP },
};

enum dns_status dns__status(int ares_status)
{
	for (size_t i = 0; i < sizeof dns__status_table / sizeof dns__status_table[0]; i++) {
		if (dns__status_table[i].ares == ares_status)
			return dns__status_table[i].status;
	}
	return DNS_TEMP;
}

static const char *const dns__status_names[] = {
	[DNS_OK] = "ok",           [DNS_NXDOMAIN] = "nxdomain", [DNS_NODATA] = "nodata",
	[DNS_TEMP] = "temp",       [DNS_NULL_MX] = "null_mx",   [DNS_BADNAME] = "badname",
	[DNS_CANCELLED] = "cancelled",
};

const char *dns_status_name(enum dns_status status)
{
	if ((size_t)status >= sizeof dns__status_names / sizeof dns__status_names[0])
		return "unknown";
	return dns__status_names[status];
}

int dns_status_permanent(enum dns_status status)
{
	return status == DNS_NXDOMAIN || status == DNS_NODATA || status == DNS_NULL_MX ||
	       status == DNS_BADNAME;
}

/* splitmix64: small, fast, and good enough to shuffle equal MX preferences
 * (not a secret). */
uint64_t dns__random(dns_resolver *r)
{
	uint64_t z = (r->rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* ---- request lists ---- */

static void dns__list_append(struct dns__list *l, dns_request *req)
{
	req->prev = l->tail;
	req->next = NULL;
	if (l->tail != NULL)
		l->tail->next = req;
	else
		l->head = req;
	l->tail = req;
}

static void dns__list_remove(struct dns__list *l, dns_request *req)
{
	if (req->prev != NULL)
		req->prev->next = req->next;
	else
		l->head = req->next;
	if (req->next != NULL)
		req->next->prev = req->prev;
	else
		l->tail = req->prev;
	req->prev = req->next = NULL;
}

/* ---- c-ares on the loop ---- */

struct dns__poll {
	uv_poll_t handle;
	dns_resolver *r;
	ares_socket_t fd;
	struct dns__poll *next;
};

static void dns__free_if_closed(dns_resolver *r)
{
	if (r->destroyed && r->handles == 0) {
		dns__cache_clear(r);
		free(r->cache_buckets);
		free(r);
	}
}

static void dns__handle_close_cb(uv_handle_t *handle)
{
	dns_resolver *r = handle->data;
	r->handles--;
	dns__free_if_closed(r);
}

static void dns__poll_close_cb(uv_handle_t *handle)
{
	struct dns__poll *p = handle->data;
	dns_resolver *r = p->r;
	free(p);
	r->handles--;
	dns__free_if_closed(r);
}

static void dns__timer_cb(uv_timer_t *timer);

/* Re-arm the timer for c-ares' next timeout, or stop it when no query is
 * pending. Called after every ares_process_fd() and after a lookup has
 * started its queries (never inside c-ares). */
static void dns__timer_update(dns_resolver *r)
{
	struct timeval tv;
	if (r->destroyed)
		return;
	if (ares_timeout(r->channel, NULL, &tv) == NULL) {
		uv_timer_stop(&r->timer);
		return;
	}
	/* rounded up: a timer that fires early only costs one more turn */
	uint64_t ms = (uint64_t)tv.tv_sec * 1000 + ((uint64_t)tv.tv_usec + 999) / 1000;
	uv_timer_start(&r->timer, dns__timer_cb, ms, 0);
}

static void dns__timer_cb(uv_timer_t *timer)
{
	dns_resolver *r = timer->data;
	ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	dns__timer_update(r);
}

static void dns__poll_cb(uv_poll_t *handle, int status, int events)
{
	struct dns__poll *p = handle->data;
	dns_resolver *r = p->r;
	ares_socket_t rfd = ARES_SOCKET_BAD, wfd = ARES_SOCKET_BAD;
	if (status < 0) {
		/* an error on the socket: c-ares finds it when it reads */
		rfd = wfd = p->fd;
	} else {
		if (events & UV_READABLE)
			rfd = p->fd;
		if (events & UV_WRITABLE)
			wfd = p->fd;
	}
	/* may close this poll (the sock-state callback): p stays allocated
	 * until its close callback */
	ares_process_fd(r->channel, rfd, wfd);
	dns__timer_update(r);
}

/* c-ares' sock-state callback: watch fd for what it wants, or stop (both
 * 0: c-ares is about to close it). The poll leaves r->polls at once, so a
 * new socket that reuses the number gets a poll of its own. */
static void dns__sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
	dns_resolver *r = data;
	struct dns__poll **pp = &r->polls;
	while (*pp != NULL && (*pp)->fd != fd)
		pp = &(*pp)->next;
	struct dns__poll *p = *pp;
	if (!readable && !writable) {
		if (p != NULL) {
			*pp = p->next;
			uv_poll_stop(&p->handle);
			uv_close((uv_handle_t *)&p->handle, dns__poll_close_cb);
		}
		return;
	}
	if (p == NULL) {
		p = xcalloc(1, sizeof *p);
		int e = uv_poll_init_socket(r->loop, &p->handle, fd);
		if (e < 0) {
			/* the query on it times out (the timer still runs) */
			log_event(LOG_ERROR, "dns", "event=poll_failed fd=%d error=%s", (int)fd,
				  uv_err_name(e));
			free(p);
			return;
		}
		p->r = r;
		p->fd = fd;
		p->handle.data = p;
		p->next = r->polls;
		r->polls = p;
		r->handles++;
	}
	uv_poll_start(&p->handle, (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0),
		      dns__poll_cb);
}

/* ---- requests ---- */

static void dns__query_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	(void)timeouts;
	struct dns__query *q = arg;
	dns_request *req = q->req;
	/* a cancelled request's answers are not read; after destroy every
	 * query ends with ARES_EDESTRUCTION and nothing new may start */
	if (!req->cancelled && !req->r->destroyed)
		dns__lookup_answer(q, status, abuf, alen);
	free(q);
	if (--req->queries == 0)
		dns__settle(req);
}

void dns__query_start(dns_request *req, struct dns__host *host, const char *name, int type)
{
	struct dns__query *q = xmalloc(sizeof *q);
	*q = (struct dns__query){ .req = req, .host = host, .type = type };
	req->queries++;
	/* c-ares may call back at once (a name it cannot encode): the
	 * request's own hold (dns__request_start) keeps it from settling
	 * before its caller is done with it */
	ares_query(req->r->channel, name, ns_c_in, type, dns__query_cb, q);
}

static void dns__idle_cb(uv_idle_t *idle);

void dns__settle(dns_request *req)
{
	dns_resolver *r = req->r;
	if (req->cancelled) {
		dns__request_free(req);
		return;
	}
	if (r->destroyed)
		req->status = DNS_CANCELLED;
	else
		dns__lookup_settle(req);
	dns__list_remove(&r->pending, req);
	dns__list_append(&r->done, req);
	r->ndone++;
	req->settled = 1;
	if (!r->destroyed)
		uv_idle_start(&r->idle, dns__idle_cb);
}

dns_request *dns__request_start(dns_resolver *r, enum dns__kind kind, const char *name,
				void *arg)
{
	if (r->destroyed) {
		log_event(LOG_ERROR, "dns", "event=bug reason=\"a lookup on a destroyed resolver\"");
		abort();
	}
	dns_request *req = xcalloc(1, sizeof *req);
	req->r = r;
	req->kind = kind;
	req->name = xstrdup(name);
	req->arg = arg;
	req->queries = 1; /* the hold, until dns__request_started */
	dns__list_append(&r->pending, req);
	r->npending++;
	return req;
}

void dns__request_started(dns_request *req)
{
	dns_resolver *r = req->r;
	if (--req->queries == 0)
		dns__settle(req);
	dns__timer_update(r);
}

static void dns__deliver(dns_request *req)
{
	enum dns_status st = req->status;
	switch (req->kind) {
	case DNS__HOST:
		req->cb.host(st, st == DNS_OK ? &req->addrs : NULL, req->arg);
		return;
	case DNS__TXT: {
		struct dns_txt_result res = { .records = req->txt, .count = req->ntxt };
		req->cb.txt(st, st == DNS_OK ? &res : NULL, req->arg);
		return;
	}
	case DNS__PTR:
	case DNS__CNAME: {
		struct dns_names res = { .names = (const char *const *)req->names,
					 .count = req->nnames };
		req->cb.names(st, st == DNS_OK ? &res : NULL, req->arg);
		return;
	}
	case DNS__SRV: {
		struct dns_srv_result res = { .records = req->srv, .count = req->nsrv };
		req->cb.srv(st, st == DNS_OK ? &res : NULL, req->arg);
		return;
	}
	case DNS__MX: {
		const struct dns_mx_result *res =
			req->mx_cached != NULL ? req->mx_cached : req->mx.count > 0 ? &req->mx : NULL;
		req->cb.mx(st, st != DNS_CANCELLED ? res : NULL, req->arg);
		return;
	}
	}
}

/* Deliver what was settled when this turn began: callbacks may settle
 * more (a lookup of a bad name), which wait for the next turn, so a
 * callback that starts such a lookup each time cannot hold the loop. */
static void dns__idle_cb(uv_idle_t *idle)
{
	dns_resolver *r = idle->data;
	size_t n = r->ndone;
	while (n-- > 0 && !r->destroyed && r->done.head != NULL) {
		dns_request *req = r->done.head;
		dns__list_remove(&r->done, req);
		r->ndone--;
		r->npending--;
		dns__deliver(req);
		dns__request_free(req);
	}
	if (!r->destroyed && r->done.head == NULL)
		uv_idle_stop(idle);
}

void dns_request_cancel(dns_request **request)
{
	dns_request *req = *request;
	if (req == NULL)
		return;
	*request = NULL;
	dns_resolver *r = req->r;
	r->npending--;
	if (req->settled) {
		dns__list_remove(&r->done, req);
		r->ndone--;
		dns__request_free(req);
		return;
	}
	/* c-ares has no cancel for one query: its queries run to their end
	 * (or to ares_destroy) and the last one frees the request */
	dns__list_remove(&r->pending, req);
	req->cancelled = 1;
}

size_t dns_resolver_pending(const dns_resolver *resolver)
{
	return resolver->npending;
}

/* ---- the resolver ---- */

static int dns__set_server(dns_resolver *r, const char *server, const char **error_r)
{
	struct sockaddr_storage ss;
	if (util_ipport_parse(server, &ss, error_r) < 0)
		return -1;
	struct ares_addr_port_node node = { .next = NULL, .family = ss.ss_family };
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
		node.addr.addr4 = sin->sin_addr;
		node.udp_port = node.tcp_port = ntohs(sin->sin_port);
	} else {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
		memcpy(&node.addr.addr6, &sin6->sin6_addr, sizeof node.addr.addr6);
		node.udp_port = node.tcp_port = ntohs(sin6->sin6_port);
	}
	int e = ares_set_servers_ports(r->channel, &node);
	if (e != ARES_SUCCESS) {
		*error_r = ares_strerror(e);
		return -1;
	}
	return 0;
}

static uint64_t dns__seed(uint64_t given)
{
	uint64_t seed = given;
	while (seed == 0) {
		if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed)
			seed = util_now_mono_ms() ^ ((uint64_t)(uintptr_t)&seed << 16);
	}
	return seed;
}

/* A cache lifetime, at most DNS_TXT_CACHE_MS_MAX. */
static uint64_t dns__cache_ms(unsigned ms)
{
	return ms < DNS_TXT_CACHE_MS_MAX ? ms : DNS_TXT_CACHE_MS_MAX;
}

int dns_resolver_create(uv_loop_t *loop, const struct dns_settings *settings,
			dns_resolver **resolver_r, const char **error_r)
{
	dns_resolver *r = xcalloc(1, sizeof *r);
	r->loop = loop;
	r->limits = settings->limits;
	if (r->limits.mx_hosts_max == 0)
		r->limits.mx_hosts_max = DNS_MX_HOSTS_MAX_DEFAULT;
	if (r->limits.addrs_max == 0)
		r->limits.addrs_max = DNS_ADDRS_MAX_DEFAULT;
	r->rng = dns__seed(settings->seed);
	if (settings->txt_cache_ms > 0 || settings->mx_cache_ms > 0) {
		r->txt_cache_ms = dns__cache_ms(settings->txt_cache_ms);
		r->mx_cache_ms = dns__cache_ms(settings->mx_cache_ms);
		r->cache_entries_max = settings->txt_cache_entries != 0
					     ? settings->txt_cache_entries
					     : DNS_TXT_CACHE_ENTRIES_DEFAULT;
		r->cache_nbuckets = r->cache_entries_max / 4 + 1;
		r->cache_buckets = xcalloc(r->cache_nbuckets, sizeof *r->cache_buckets);
	}

	struct ares_options o = {
		/* ares_query never applies search domains; said all the same */
		.flags = ARES_FLAG_NOSEARCH,
		.timeout = (int)(settings->timeout_ms != 0 ? settings->timeout_ms
							   : DNS_TIMEOUT_MS_DEFAULT),
		.tries = (int)(settings->tries != 0 ? settings->tries : DNS_TRIES_DEFAULT),
		.sock_state_cb = dns__sock_state_cb,
		.sock_state_cb_data = r,
	};
	int mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB;
	int e = ares_init_options(&r->channel, &o, mask);
	if (e != ARES_SUCCESS) {
		*error_r = ares_strerror(e);
		free(r->cache_buckets);
		free(r);
		return -1;
	}
	if (settings->server != NULL && dns__set_server(r, settings->server, error_r) < 0) {
		ares_destroy(r->channel);
		free(r->cache_buckets);
		free(r);
		return -1;
	}
	uv_timer_init(loop, &r->timer);
	uv_idle_init(loop, &r->idle);
	r->timer.data = r->idle.data = r;
	r->handles = 2;
	*resolver_r = r;
	return 0;
}

void dns_resolver_destroy(dns_resolver **resolver)
{
	dns_resolver *r = *resolver;
	if (r == NULL)
		return;
	*resolver = NULL;
	if (r->destroyed)
		return;
	r->destroyed = 1;
	/* every query ends now with ARES_EDESTRUCTION: its request settles
	 * as DNS_CANCELLED onto done (a cancelled one is freed); c-ares then
	 * closes its sockets, which closes their polls */
	ares_destroy(r->channel);
	while (r->done.head != NULL) {
		dns_request *req = r->done.head;
		dns__list_remove(&r->done, req);
		r->ndone--;
		r->npending--;
		req->status = DNS_CANCELLED;
		dns__deliver(req);
		dns__request_free(req);
	}
	while (r->polls != NULL) {
		struct dns__poll *p = r->polls;
		r->polls = p->next;
		uv_close((uv_handle_t *)&p->handle, dns__poll_close_cb);
	}
	uv_close((uv_handle_t *)&r->timer, dns__handle_close_cb);
	uv_close((uv_handle_t *)&r->idle, dns__handle_close_cb);
}
