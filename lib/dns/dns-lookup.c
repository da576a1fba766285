/* dns-lookup.c: the lookups of dns.h: which queries each asks, how
 * an answer is read (c-ares parses the packet; what we do with its
 * records is here), and the result each builds when it settles.
 *
 * An address lookup (struct dns__host) asks AAAA and A at once. A CNAME
 * is followed by the recursive server, which answers the whole chain and
 * the target's records; ares_parse_a_reply and ares_parse_aaaa_reply walk
 * that chain inside the answer (checked in test-dns.c). A server that
 * answers the CNAME alone gives NODATA: we ask no second time. Each
 * family keeps at most addrs_max addresses: ares_parse_*_reply fills only
 * as many as it is given room for, so no count read from the packet sizes
 * anything here.
 */
#include "dns-private.h"

#include "xalloc.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A name we may ask: 1..253 bytes (one trailing dot besides), labels of
 * 1..63 bytes. Anything else is DNS_BADNAME without a query. */
static int dns__name_ok(const char *name)
{
	size_t len = strlen(name);
	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len > 253)
		return 0;
	size_t label = 0;
	for (size_t i = 0; i < len; i++) {
		if (name[i] == '.') {
			if (label == 0)
				return 0;
			label = 0;
		} else if (++label > 63) {
			return 0;
		}
	}
	return label > 0;
}

/* Same DNS name: case-insensitive, a trailing dot ignored. */
static int dns__name_eq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 0 && a[la - 1] == '.')
		la--;
	if (lb > 0 && b[lb - 1] == '.')
		lb--;
	return la == lb && strncasecmp(a, b, la) == 0;
}

/* ---- addresses of one name ---- */

static void dns__host_init(dns_resolver *r, struct dns__host *h, const char *name,
			   unsigned preference)
{
	h->name = xstrdup(name);
	h->preference = preference;
	h->status6 = h->status4 = h->status = DNS_TEMP;
	h->addrs6 = xcalloc(r->limits.addrs_max, sizeof *h->addrs6);
	h->addrs4 = xcalloc(r->limits.addrs_max, sizeof *h->addrs4);
}

static void dns__host_deinit(struct dns__host *h)
{
	free(h->name);
	free(h->addrs6);
	free(h->addrs4);
	free(h->addrs);
}

static void dns__host_start(dns_request *req, struct dns__host *h)
{
	if (!dns__name_ok(h->name)) {
		h->status6 = h->status4 = DNS_BADNAME;
		return;
	}
	dns__query_start(req, h, h->name, ns_t_aaaa);
	dns__query_start(req, h, h->name, ns_t_a);
}

/* Read one family's answer into h: its addresses and status. */
static void dns__host_read(dns_resolver *r, struct dns__host *h, int type, int status,
			   const unsigned char *abuf, int alen)
{
	int v6 = type == ns_t_aaaa;
	int room = (int)r->limits.addrs_max, n = room;
	int e = status;
	if (e == ARES_SUCCESS && v6) {
		struct ares_addr6ttl *t = xcalloc((size_t)room, sizeof *t);
		e = ares_parse_aaaa_reply(abuf, alen, NULL, t, &n);
		for (int i = 0; e == ARES_SUCCESS && i < n && i < room; i++) {
			struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&h->addrs6[i];
			sin6->sin6_family = AF_INET6;
			memcpy(&sin6->sin6_addr, &t[i].ip6addr, sizeof sin6->sin6_addr);
			h->n6++;
		}
		free(t);
	} else if (e == ARES_SUCCESS) {
		struct ares_addrttl *t = xcalloc((size_t)room, sizeof *t);
		e = ares_parse_a_reply(abuf, alen, NULL, t, &n);
		for (int i = 0; e == ARES_SUCCESS && i < n && i < room; i++) {
			struct sockaddr_in *sin = (struct sockaddr_in *)&h->addrs4[i];
			sin->sin_family = AF_INET;
			sin->sin_addr = t[i].ipaddr;
			h->n4++;
		}
		free(t);
	}
	/* a CNAME chain without addresses at its end parses as success with
	 * none: NODATA; a malformed answer (ARES_EBADRESP) is temporary */
	enum dns_status st = e != ARES_SUCCESS ? dns__status(e) : n > 0 ? DNS_OK : DNS_NODATA;
	if (v6)
		h->status6 = st;
	else
		h->status4 = st;
}

/* Both families answered: the addresses (IPv6 first) and the status. */
static void dns__host_settle(dns_resolver *r, struct dns__host *h)
{
	size_t max = r->limits.addrs_max, k6 = h->n6, k4 = h->n4;
	if (k6 + k4 > max) {
		size_t half6 = max / 2, half4 = max - half6;
		if (k6 <= half6)
			k4 = max - k6;
		else if (k4 <= half4)
			k6 = max - k4;
		else {
			k6 = half6;
			k4 = half4;
		}
	}
	h->count = k6 + k4;
	if (h->count > 0) {
		h->addrs = xcalloc(h->count, sizeof *h->addrs);
		memcpy(h->addrs, h->addrs6, k6 * sizeof *h->addrs);
		memcpy(h->addrs + k6, h->addrs4, k4 * sizeof *h->addrs);
		h->status = DNS_OK;
	} else if (h->status6 == DNS_TEMP || h->status4 == DNS_TEMP) {
		h->status = DNS_TEMP; /* an address may exist */
	} else if (h->status6 == DNS_BADNAME || h->status4 == DNS_BADNAME) {
		h->status = DNS_BADNAME;
	} else if (h->status6 == DNS_NXDOMAIN && h->status4 == DNS_NXDOMAIN) {
		h->status = DNS_NXDOMAIN;
	} else {
		h->status = DNS_NODATA;
	}
}

dns_request *dns_resolve_host(dns_resolver *resolver, const char *name, dns_host_cb *cb,
			      void *arg)
{
	dns_request *req = dns__request_start(resolver, DNS__HOST, name, arg);
	req->cb.host = cb;
	req->hosts = xcalloc(1, sizeof *req->hosts);
	req->nhosts = 1;
	dns__host_init(resolver, &req->hosts[0], name, 0);
	dns__host_start(req, &req->hosts[0]);
	dns__request_started(req);
	return req;
}

/* ---- TXT ---- */

/* c-ares gives each character-string as one chunk, record_start set on a
 * record's first: join each record's chunks. Lengths are those of the
 * chunks c-ares copied out of the packet (at most 255 each, within one
 * answer), never a count read from the wire. */
static enum dns_status dns__txt_read(dns_request *req, const unsigned char *abuf, int alen)
{
	struct ares_txt_ext *txt = NULL;
	int e = ares_parse_txt_reply_ext(abuf, alen, &txt);
	if (e != ARES_SUCCESS || txt == NULL) {
		if (txt != NULL)
			ares_free_data(txt);
		return e == ARES_SUCCESS || e == ARES_ENODATA ? DNS_NODATA : dns__status(e);
	}
	size_t n = 0;
	for (struct ares_txt_ext *t = txt; t != NULL; t = t->next)
		n += t->record_start || t == txt;
	req->txt = xcalloc(n, sizeof *req->txt);
	req->ntxt = n;
	struct ares_txt_ext *t = txt;
	for (size_t i = 0; i < n; i++) {
		/* this record: t and the chunks after it up to the next start */
		size_t len = 0;
		struct ares_txt_ext *end = t;
		do {
			len += end->length;
			end = end->next;
		} while (end != NULL && !end->record_start);
		char *data = xmalloc(len + 1);
		size_t off = 0;
		for (; t != end; t = t->next) {
			memcpy(data + off, t->txt, t->length);
			off += t->length;
		}
		data[len] = '\0';
		req->txt[i] = (struct dns_txt){ .data = data, .len = len };
	}
	ares_free_data(txt);
	return DNS_OK;
}

/* ---- the answer cache (TXT, MX) ---- */

static size_t dns__cache_hash(const dns_resolver *r, enum dns__kind kind, const char *name)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)kind; /* FNV-1a */
	for (const char *p = name; *p != '\0'; p++) {
		h ^= (uint8_t)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
		h *= 1099511628211ull;
	}
	return (size_t)(h % r->cache_nbuckets);
}

static void dns__txt_copy(struct dns_txt **dst, size_t *ndst, const struct dns_txt *src,
			  size_t n)
{
	*dst = n > 0 ? xcalloc(n, sizeof **dst) : NULL;
	*ndst = n;
	for (size_t i = 0; i < n; i++) {
		char *d = xmalloc(src[i].len + 1);
		memcpy(d, src[i].data, src[i].len + 1);
		(*dst)[i] = (struct dns_txt){ .data = d, .len = src[i].len };
	}
}

static void dns__cache_entry_free(struct dns__cache_entry *e)
{
	for (size_t i = 0; i < e->ntxt; i++)
		free((char *)e->txt[i].data);
	free(e->txt);
	dns_mx_result_free(&e->mx);
	free(e->name);
	free(e);
}

void dns__cache_clear(dns_resolver *r)
{
	for (size_t b = 0; b < r->cache_nbuckets; b++) {
		for (struct dns__cache_entry *e = r->cache_buckets[b], *next; e != NULL; e = next) {
			next = e->next;
			dns__cache_entry_free(e);
		}
		r->cache_buckets[b] = NULL;
	}
	r->cache_entries = 0;
}

/* The fresh entry of that kind for name, or NULL (an expired one is
 * dropped). */
static struct dns__cache_entry *dns__cache_get(dns_resolver *r, enum dns__kind kind,
					       const char *name)
{
	if (r->cache_buckets == NULL || (kind == DNS__TXT ? r->txt_cache_ms : r->mx_cache_ms) == 0)
		return NULL;
	uint64_t now = uv_now(r->loop);
	for (struct dns__cache_entry **pe = &r->cache_buckets[dns__cache_hash(r, kind, name)];
	     *pe != NULL; pe = &(*pe)->next) {
		struct dns__cache_entry *e = *pe;
		if (e->kind != kind || strcasecmp(e->name, name) != 0)
			continue;
		if (e->expires > now)
			return e;
		*pe = e->next;
		dns__cache_entry_free(e);
		r->cache_entries--;
		return NULL;
	}
	return NULL;
}

/* A new entry for req's settled answer (the caller fills its result), or
 * NULL when there is no cache of req's kind or it already holds one. */
static struct dns__cache_entry *dns__cache_add(dns_request *req)
{
	dns_resolver *r = req->r;
	uint64_t ms = req->kind == DNS__TXT ? r->txt_cache_ms : r->mx_cache_ms;
	if (r->cache_buckets == NULL || ms == 0 || req->cancelled ||
	    dns__cache_get(r, req->kind, req->name) != NULL)
		return NULL;
	if (r->cache_entries >= r->cache_entries_max)
		dns__cache_clear(r);
	struct dns__cache_entry *e = xcalloc(1, sizeof *e);
	e->kind = req->kind;
	e->name = xstrdup(req->name);
	e->status = req->status;
	e->expires = uv_now(r->loop) + ms;
	size_t b = dns__cache_hash(r, e->kind, e->name);
	e->next = r->cache_buckets[b];
	r->cache_buckets[b] = e;
	r->cache_entries++;
	return e;
}

/* Keep req's settled TXT answer, when it is one to keep. */
static void dns__txt_cache_put(dns_request *req)
{
	if (req->status != DNS_OK && req->status != DNS_NXDOMAIN && req->status != DNS_NODATA)
		return;
	struct dns__cache_entry *e = dns__cache_add(req);
	if (e != NULL && req->status == DNS_OK)
		dns__txt_copy(&e->txt, &e->ntxt, req->txt, req->ntxt);
}

dns_request *dns_resolve_txt(dns_resolver *resolver, const char *name, dns_txt_cb *cb,
			     void *arg)
{
	dns_request *req = dns__request_start(resolver, DNS__TXT, name, arg);
	req->cb.txt = cb;
	struct dns__cache_entry *hit =
		dns__name_ok(name) ? dns__cache_get(resolver, DNS__TXT, name) : NULL;
	if (hit != NULL) {
		/* answered from the cache: settled like any other, later */
		req->status = hit->status;
		dns__txt_copy(&req->txt, &req->ntxt, hit->txt, hit->ntxt);
	} else if (dns__name_ok(name)) {
		dns__query_start(req, NULL, name, ns_t_txt);
	} else {
		req->status = DNS_BADNAME;
	}
	dns__request_started(req);
	return req;
}

/* ---- PTR ---- */

static enum dns_status dns__ptr_read(dns_request *req, const unsigned char *abuf, int alen)
{
	struct hostent *he = NULL;
	int e = ares_parse_ptr_reply(abuf, alen, NULL, 0, AF_UNSPEC, &he);
	if (e != ARES_SUCCESS)
		return dns__status(e);
	/* h_aliases holds every PTR name of the answer, in order; h_name is
	 * the last of them */
	size_t n = 0;
	while (he->h_aliases != NULL && he->h_aliases[n] != NULL)
		n++;
	if (n == 0) {
		ares_free_hostent(he);
		return DNS_NODATA;
	}
	req->names = xcalloc(n, sizeof *req->names);
	for (size_t i = 0; i < n; i++) {
		const char *s = he->h_aliases[i];
		size_t len = strlen(s);
		req->names[i] = xstrndup(s, len > 1 && s[len - 1] == '.' ? len - 1 : len);
	}
	req->nnames = n;
	ares_free_hostent(he);
	return DNS_OK;
}

/* The reverse name of addr into out (room for the 72 bytes of an IPv6
 * one). Returns 0, or -1 for another family. */
static int dns__reverse_name(const struct sockaddr *addr, char *out, size_t size)
{
	if (addr->sa_family == AF_INET) {
		const uint8_t *b = (const uint8_t *)&((const struct sockaddr_in *)addr)->sin_addr;
		snprintf(out, size, "%u.%u.%u.%u.in-addr.arpa", b[3], b[2], b[1], b[0]);
		return 0;
	}
	if (addr->sa_family == AF_INET6) {
		static const char hex[] = "0123456789abcdef";
		const uint8_t *b = (const uint8_t *)&((const struct sockaddr_in6 *)addr)->sin6_addr;
		size_t o = 0;
		for (int i = 15; i >= 0 && o + 4 < size; i--) {
			out[o++] = hex[b[i] & 0xf];
			out[o++] = '.';
			out[o++] = hex[b[i] >> 4];
			out[o++] = '.';
		}
		snprintf(out + o, size - o, "ip6.arpa");
		return 0;
	}
	return -1;
}

dns_request *dns_resolve_ptr(dns_resolver *resolver, const struct sockaddr *addr,
			     dns_names_cb *cb, void *arg)
{
	char name[80];
	int ok = dns__reverse_name(addr, name, sizeof name) == 0;
	dns_request *req = dns__request_start(resolver, DNS__PTR, ok ? name : "", arg);
	req->cb.names = cb;
	if (ok)
		dns__query_start(req, NULL, name, ns_t_ptr);
	else
		req->status = DNS_BADNAME;
	dns__request_started(req);
	return req;
}

/* ---- SRV ---- */

/* ares_parse_srv_reply gives the records in wire order, "." as "". At
 * most DNS_SRV_RECORDS_MAX are kept. */
static enum dns_status dns__srv_read(dns_request *req, const unsigned char *abuf, int alen)
{
	struct ares_srv_reply *srv = NULL;
	int e = ares_parse_srv_reply(abuf, alen, &srv);
	if (e != ARES_SUCCESS || srv == NULL) {
		if (srv != NULL)
			ares_free_data(srv);
		return e == ARES_SUCCESS || e == ARES_ENODATA ? DNS_NODATA : dns__status(e);
	}
	size_t n = 0;
	for (struct ares_srv_reply *s = srv; s != NULL && n < DNS_SRV_RECORDS_MAX; s = s->next)
		n++;
	req->srv = xcalloc(n, sizeof *req->srv);
	struct ares_srv_reply *s = srv;
	for (size_t i = 0; i < n; i++, s = s->next) {
		size_t len = strlen(s->host);
		if (len > 1 && s->host[len - 1] == '.')
			len--;
		req->srv[i] = (struct dns_srv){
			.target = len == 0 ? xstrdup(".") : xstrndup(s->host, len),
			.priority = s->priority, .weight = s->weight, .port = s->port,
		};
	}
	req->nsrv = n;
	ares_free_data(srv);
	return DNS_OK;
}

dns_request *dns_resolve_srv(dns_resolver *resolver, const char *name, dns_srv_cb *cb,
			     void *arg)
{
	dns_request *req = dns__request_start(resolver, DNS__SRV, name, arg);
	req->cb.srv = cb;
	if (dns__name_ok(name))
		dns__query_start(req, NULL, name, ns_t_srv);
	else
		req->status = DNS_BADNAME;
	dns__request_started(req);
	return req;
}

/* ---- CNAME ---- */

/* c-ares has no CNAME parser of its own; ares_parse_a_reply walks the
 * CNAME records of any answer (the chain it follows for an A query) and
 * names the last target h_name, which for a CNAME query is the one link
 * the server gave. An answer without a CNAME for the name is NODATA.
 * (Checked against c-ares 1.18 in test-dns.c: a newer c-ares that
 * answered ENODATA for an answer without addresses would fail there.) */
static enum dns_status dns__cname_read(dns_request *req, const unsigned char *abuf, int alen)
{
	struct hostent *he = NULL;
	int e = ares_parse_a_reply(abuf, alen, &he, NULL, NULL);
	if (e != ARES_SUCCESS || he == NULL || he->h_name == NULL) {
		if (he != NULL)
			ares_free_hostent(he);
		return e == ARES_SUCCESS || e == ARES_ENODATA ? DNS_NODATA : dns__status(e);
	}
	const char *t = he->h_name;
	size_t len = strlen(t);
	if (len > 1 && t[len - 1] == '.')
		len--;
	enum dns_status st = DNS_NODATA;
	/* no alias: the answer held no CNAME (h_name is the name asked) */
	if (he->h_aliases != NULL && he->h_aliases[0] != NULL && !dns__name_eq(t, req->name)) {
		req->names = xcalloc(1, sizeof *req->names);
		req->names[0] = xstrndup(t, len);
		req->nnames = 1;
		st = DNS_OK;
	}
	ares_free_hostent(he);
	return st;
}

dns_request *dns_resolve_cname(dns_resolver *resolver, const char *name, dns_names_cb *cb,
			       void *arg)
{
	dns_request *req = dns__request_start(resolver, DNS__CNAME, name, arg);
	req->cb.names = cb;
	if (dns__name_ok(name))
		dns__query_start(req, NULL, name, ns_t_cname);
	else
		req->status = DNS_BADNAME;
	dns__request_started(req);
	return req;
}

/* ---- MX ---- */

struct dns__mx_candidate {
	const char *host;
	unsigned preference;
	uint64_t key; /* random: the order among equal preferences */
};

static int dns__mx_cmp(const void *a, const void *b)
{
	const struct dns__mx_candidate *x = a, *y = b;
	if (x->preference != y->preference)
		return x->preference < y->preference ? -1 : 1;
	return x->key < y->key ? -1 : x->key > y->key;
}

/* Start the address lookups of the chosen hosts. */
static void dns__mx_start_hosts(dns_request *req)
{
	for (size_t i = 0; i < req->nhosts; i++)
		dns__host_start(req, &req->hosts[i]);
}

/* No MX records: the domain is its own exchanger (RFC 5321 5.1). */
static void dns__mx_implicit(dns_request *req)
{
	req->hosts = xcalloc(1, sizeof *req->hosts);
	req->nhosts = 1;
	dns__host_init(req->r, &req->hosts[0], req->name, 0);
	req->mx.implicit = 1;
	dns__mx_start_hosts(req);
}

/* The MX answer: the hosts in the order to try (sorted by preference, a
 * random key breaking ties, each name once, at most mx_hosts_max), or a
 * null MX. ares_parse_mx_reply keeps wire order and gives "." as "". */
static void dns__mx_read(dns_request *req, const unsigned char *abuf, int alen)
{
	dns_resolver *r = req->r;
	struct ares_mx_reply *mx = NULL;
	int e = ares_parse_mx_reply(abuf, alen, &mx);
	if ((e == ARES_SUCCESS && mx == NULL) || e == ARES_ENODATA) {
		dns__mx_implicit(req);
		return;
	}
	if (e != ARES_SUCCESS) {
		req->status = dns__status(e);
		return;
	}
	size_t n = 0;
	for (struct ares_mx_reply *m = mx; m != NULL; m = m->next)
		n += m->host[0] != '\0' && strcmp(m->host, ".") != 0;
	if (n == 0) {
		/* every MX is ".": RFC 7505's null MX (which has exactly one,
		 * preference 0; a domain saying it twice means it as much) */
		req->status = DNS_NULL_MX;
		ares_free_data(mx);
		return;
	}
	struct dns__mx_candidate *c = xcalloc(n, sizeof *c);
	size_t i = 0;
	for (struct ares_mx_reply *m = mx; m != NULL; m = m->next) {
		if (m->host[0] == '\0' || strcmp(m->host, ".") == 0)
			continue; /* "." among real hosts: nothing to connect to */
		c[i++] = (struct dns__mx_candidate){ .host = m->host, .preference = m->priority,
						     .key = dns__random(r) };
	}
	qsort(c, n, sizeof *c, dns__mx_cmp);
	size_t max = r->limits.mx_hosts_max;
	req->hosts = xcalloc(n < max ? n : max, sizeof *req->hosts);
	for (i = 0; i < n && req->nhosts < max; i++) {
		size_t k = 0;
		while (k < req->nhosts && !dns__name_eq(req->hosts[k].name, c[i].host))
			k++;
		if (k == req->nhosts)
			dns__host_init(r, &req->hosts[req->nhosts++], c[i].host, c[i].preference);
	}
	req->mx.dropped = n - req->nhosts;
	free(c);
	ares_free_data(mx);
	dns__mx_start_hosts(req);
}

static void dns__mx_answer(dns_request *req, int status, const unsigned char *abuf, int alen)
{
	if (status == ARES_SUCCESS) {
		dns__mx_read(req, abuf, alen);
		return;
	}
	enum dns_status st = dns__status(status);
	if (st == DNS_NODATA)
		dns__mx_implicit(req);
	else
		req->status = st;
}

static void dns__mx_settle(dns_request *req)
{
	if (req->status != DNS_OK || req->nhosts == 0)
		return; /* the MX query failed, a null MX, a bad name */
	int ok = 0, temp = 0;
	req->mx_hosts = xcalloc(req->nhosts, sizeof *req->mx_hosts);
	for (size_t i = 0; i < req->nhosts; i++) {
		struct dns__host *h = &req->hosts[i];
		dns__host_settle(req->r, h);
		ok |= h->status == DNS_OK;
		temp |= h->status == DNS_TEMP;
		req->mx_hosts[i] = (struct dns_mx_host){
			.name = h->name, .preference = h->preference, .status = h->status,
			.addrs = { .addrs = h->addrs, .count = h->count },
		};
	}
	req->mx.hosts = req->mx_hosts;
	req->mx.count = req->nhosts;
	req->status = ok ? DNS_OK : temp ? DNS_TEMP : DNS_NODATA;
}

/* Keep req's settled MX answer, when it is one to keep: a final one
 * (no host's lookup failed for now), not one answered from the cache. */
static void dns__mx_cache_put(dns_request *req)
{
	if (req->mx_cached != NULL ||
	    (req->status != DNS_OK && req->status != DNS_NXDOMAIN && req->status != DNS_NODATA &&
	     req->status != DNS_NULL_MX))
		return;
	for (size_t i = 0; i < req->mx.count; i++)
		if (req->mx.hosts[i].status == DNS_TEMP || req->mx.hosts[i].status == DNS_CANCELLED)
			return;
	struct dns__cache_entry *e = dns__cache_add(req);
	if (e != NULL && req->mx.count > 0)
		e->mx = dns_mx_result_dup(&req->mx);
}

/* A copy of a cached MX result, hosts of equal preference in a new
 * random order (as dns__mx_read orders a fresh answer). */
static struct dns_mx_result *dns__mx_cached_copy(dns_resolver *r, const struct dns_mx_result *mx)
{
	struct dns_mx_result *copy = dns_mx_result_dup(mx);
	struct dns_mx_host *h = (struct dns_mx_host *)copy->hosts; /* the copy's own block */
	for (size_t lo = 0, hi; lo < copy->count; lo = hi) {
		for (hi = lo + 1; hi < copy->count && h[hi].preference == h[lo].preference; hi++)
			;
		for (size_t i = hi - 1; i > lo; i--) { /* Fisher-Yates over lo..hi-1 */
			size_t j = lo + (size_t)(dns__random(r) % (i - lo + 1));
			struct dns_mx_host t = h[i];
			h[i] = h[j];
			h[j] = t;
		}
	}
	return copy;
}

dns_request *dns_resolve_mx(dns_resolver *resolver, const char *domain, dns_mx_cb *cb,
			    void *arg)
{
	dns_request *req = dns__request_start(resolver, DNS__MX, domain, arg);
	req->cb.mx = cb;
	struct dns__cache_entry *hit =
		dns__name_ok(domain) ? dns__cache_get(resolver, DNS__MX, domain) : NULL;
	if (hit != NULL) {
		/* answered from the cache: settled like any other, later */
		req->status = hit->status;
		if (hit->mx != NULL)
			req->mx_cached = dns__mx_cached_copy(resolver, hit->mx);
	} else if (dns__name_ok(domain)) {
		dns__query_start(req, NULL, domain, ns_t_mx);
	} else {
		req->status = DNS_BADNAME;
	}
	dns__request_started(req);
	return req;
}

/* ---- answers and results ---- */

void dns__lookup_answer(const struct dns__query *q, int status, const unsigned char *abuf,
			int alen)
{
	dns_request *req = q->req;
	if (q->host != NULL) {
		dns__host_read(req->r, q->host, q->type, status, abuf, alen);
		return;
	}
	switch (q->type) {
	case ns_t_txt:
		req->status = status == ARES_SUCCESS ? dns__txt_read(req, abuf, alen)
						     : dns__status(status);
		dns__txt_cache_put(req);
		return;
	case ns_t_ptr:
		req->status = status == ARES_SUCCESS ? dns__ptr_read(req, abuf, alen)
						     : dns__status(status);
		return;
	case ns_t_mx:
		dns__mx_answer(req, status, abuf, alen);
		return;
	case ns_t_srv:
		req->status = status == ARES_SUCCESS ? dns__srv_read(req, abuf, alen)
						     : dns__status(status);
		return;
	case ns_t_cname:
		req->status = status == ARES_SUCCESS ? dns__cname_read(req, abuf, alen)
						     : dns__status(status);
		return;
	}
}

void dns__lookup_settle(dns_request *req)
{
	switch (req->kind) {
	case DNS__HOST: {
		struct dns__host *h = &req->hosts[0];
		dns__host_settle(req->r, h);
		req->status = h->status;
		req->addrs = (struct dns_addrs){ .addrs = h->addrs, .count = h->count };
		return;
	}
	case DNS__MX:
		dns__mx_settle(req);
		dns__mx_cache_put(req);
		return;
	case DNS__TXT:
	case DNS__PTR:
	case DNS__SRV:
	case DNS__CNAME:
		return; /* read when answered */
	}
}

void dns__request_free(dns_request *req)
{
	dns_mx_result_free(&req->mx_cached);
	for (size_t i = 0; i < req->nhosts; i++)
		dns__host_deinit(&req->hosts[i]);
	free(req->hosts);
	for (size_t i = 0; i < req->ntxt; i++)
		free((char *)req->txt[i].data);
	free(req->txt);
	for (size_t i = 0; i < req->nnames; i++)
		free(req->names[i]);
	free(req->names);
	for (size_t i = 0; i < req->nsrv; i++)
		free((char *)req->srv[i].target);
	free(req->srv);
	free(req->mx_hosts);
	free(req->name);
	free(req);
}

/* ---- a copy of an MX result ---- */

static size_t dns__align(size_t n)
{
	size_t a = _Alignof(struct sockaddr_storage);
	return (n + a - 1) / a * a;
}

struct dns_mx_result *dns_mx_result_dup(const struct dns_mx_result *result)
{
	size_t n = result->count, naddrs = 0, names = 0;
	for (size_t i = 0; i < n; i++) {
		naddrs += result->hosts[i].addrs.count;
		names += strlen(result->hosts[i].name) + 1;
	}
	size_t off_hosts = dns__align(sizeof(struct dns_mx_result));
	size_t off_addrs = dns__align(off_hosts + n * sizeof(struct dns_mx_host));
	size_t off_names = off_addrs + naddrs * sizeof(struct sockaddr_storage);
	char *block = xcalloc(1, off_names + names);
	struct dns_mx_result *copy = (struct dns_mx_result *)block;
	struct dns_mx_host *hosts = (struct dns_mx_host *)(block + off_hosts);
	struct sockaddr_storage *addrs = (struct sockaddr_storage *)(block + off_addrs);
	char *name = block + off_names;
	for (size_t i = 0; i < n; i++) {
		const struct dns_mx_host *h = &result->hosts[i];
		size_t len = strlen(h->name) + 1;
		memcpy(name, h->name, len);
		if (h->addrs.count > 0)
			memcpy(addrs, h->addrs.addrs, h->addrs.count * sizeof *addrs);
		hosts[i] = (struct dns_mx_host){ .name = name, .preference = h->preference,
						 .status = h->status,
						 .addrs = { .addrs = addrs, .count = h->addrs.count } };
		name += len;
		addrs += h->addrs.count;
	}
	*copy = (struct dns_mx_result){ .hosts = hosts, .count = n, .implicit = result->implicit,
					.dropped = result->dropped };
	return copy;
}

void dns_mx_result_free(struct dns_mx_result **result)
{
	free(*result);
	*result = NULL;
}
