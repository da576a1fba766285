/* dns-private.h: what dns.c (the resolver, c-ares on the loop, the life of
 * a request) and dns-lookup.c (the lookups: queries asked, answers
 * read, results built) share. Not for callers: dns.h is the contract.
 *
 * A request asks one or more c-ares queries; each carries a struct
 * dns__query naming the request, the host and the type it is for. The
 * request counts its queries in flight (queries) and settles when the
 * count reaches 0: dns__settle() builds the result (dns__lookup_settle)
 * and moves it to the resolver's done list, from which the idle handle
 * calls the callback. So no callback runs inside c-ares (nor inside the
 * call that started the lookup), and a callback may cancel, start
 * lookups, or destroy the resolver.
 */
#ifndef MAIL_DNS_PRIVATE_H
#define MAIL_DNS_PRIVATE_H

#include "dns.h"

#include <arpa/nameser.h>
#include <ares.h>

enum dns__kind { DNS__HOST, DNS__TXT, DNS__PTR, DNS__MX, DNS__SRV, DNS__CNAME };

/* A's and AAAA's lookup of one name: a dns_resolve_host's, or one mail
 * exchanger's. The families' addresses are kept apart until settled. */
struct dns__host {
	char *name;
	unsigned preference;                  /* MX */
	enum dns_status status6, status4;
	struct sockaddr_storage *addrs6, *addrs4; /* limits.addrs_max each */
	size_t n6, n4;
	/* settled: IPv6 then IPv4, at most addrs_max (what dns_addrs shows) */
	struct sockaddr_storage *addrs;
	size_t count;
	enum dns_status status;
};

/* One c-ares query in flight: freed by its callback. */
struct dns__query {
	dns_request *req;
	struct dns__host *host; /* NULL: the request's own TXT, PTR or MX query */
	int type;               /* ns_t_a, ns_t_aaaa, ns_t_txt, ns_t_ptr, ns_t_mx,
				 * ns_t_srv, ns_t_cname */
};

struct dns_request {
	dns_resolver *r;
	enum dns__kind kind;
	union {
		dns_host_cb *host;
		dns_txt_cb *txt;
		dns_names_cb *names; /* PTR, CNAME */
		dns_mx_cb *mx;
		dns_srv_cb *srv;
	} cb;
	void *arg;
	char *name;            /* as asked (the domain, for MX) */
	unsigned queries;      /* c-ares queries in flight, plus one while starting */
	int cancelled;         /* by dns_request_cancel: free when queries is 0 */
	int settled;           /* on r->done */
	enum dns_status status; /* of the TXT/PTR/MX query; the result's when settled */
	dns_request *prev, *next; /* in r->pending, then r->done */

	/* HOST: hosts[0]. MX: the exchangers kept, in order. */
	struct dns__host *hosts;
	size_t nhosts;
	/* results, built by dns__lookup_settle (what the callback gets) */
	struct dns_addrs addrs;
	struct dns_txt *txt;
	size_t ntxt;
	char **names;
	size_t nnames;
	struct dns_srv *srv; /* targets owned */
	size_t nsrv;
	struct dns_mx_host *mx_hosts;
	struct dns_mx_result mx;
	/* MX answered from the cache: the callback gets this copy */
	struct dns_mx_result *mx_cached;
};

struct dns__list {
	dns_request *head, *tail;
};

struct dns__poll;

struct dns_resolver {
	uv_loop_t *loop;
	ares_channel channel;
	struct dns_limits limits;
	uint64_t rng;              /* splitmix64 state */
	uv_timer_t timer;          /* ares_process_fd(BAD, BAD) at ares_timeout() */
	uv_idle_t idle;            /* runs while done is not empty */
	struct dns__poll *polls;   /* one per socket c-ares has open */
	struct dns__list pending;  /* started, not settled, not cancelled */
	struct dns__list done;     /* settled: callback not yet called */
	size_t ndone;              /* on done */
	size_t npending;           /* on pending or done */
	unsigned handles;          /* ours still open; the last close frees r */
	int destroyed;
	/* the answer cache (dns_settings.txt_cache_ms, mx_cache_ms): TXT
	 * and MX entries in one table; buckets NULL: none */
	struct dns__cache_entry **cache_buckets;
	size_t cache_nbuckets, cache_entries, cache_entries_max;
	uint64_t txt_cache_ms, mx_cache_ms;
};

/* One cached answer: a TXT lookup's or a dns_resolve_mx's. */
struct dns__cache_entry {
	struct dns__cache_entry *next;
	enum dns__kind kind;      /* DNS__TXT or DNS__MX */
	char *name;               /* as asked (compared without case) */
	enum dns_status status;   /* TXT: OK, NXDOMAIN, NODATA; MX: also NULL_MX */
	struct dns_txt *txt;      /* TXT, DNS_OK: copies */
	size_t ntxt;
	struct dns_mx_result *mx; /* MX, DNS_OK: dns_mx_result_dup() */
	uint64_t expires;         /* uv_now() ms */
};
/* dns-lookup.c: empty the answer cache (the table stays). */
void dns__cache_clear(dns_resolver *r);

/* dns.c */
/* A new request on r->pending, holding itself (one count in queries)
 * until dns__request_started, so that no answer settles it while its
 * queries are being started. */
dns_request *dns__request_start(dns_resolver *r, enum dns__kind kind, const char *name,
				void *arg);
/* Drop that hold (the request may settle now) and arm the timer. */
void dns__request_started(dns_request *req);
/* Ask c-ares one query for req; counts it in req->queries. The answer
 * goes to dns__lookup_answer. */
void dns__query_start(dns_request *req, struct dns__host *host, const char *name, int type);
/* Called when req->queries has reached 0. */
void dns__settle(dns_request *req);
/* The status of a c-ares code (ARES_SUCCESS: DNS_OK). */
enum dns_status dns__status(int ares_status);
/* The next value of the resolver's random source. */
uint64_t dns__random(dns_resolver *r);

/* dns-lookup.c */
/* An answer (or failure) for q; may start more queries. */
void dns__lookup_answer(const struct dns__query *q, int status, const unsigned char *abuf,
			int alen);
/* Build req's result and final status (req->status) from its answers. */
void dns__lookup_settle(dns_request *req);
/* Free what a request holds, and the request. */
void dns__request_free(dns_request *req);

#endif
