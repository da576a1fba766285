/* dns.h: the DNS resolver of outbound mail and of the inbound checks
 * (public contract; library `maildns`, docs/dns.md).
 *
 * A resolver lives on one libuv loop and asks one DNS server (settings'
 * server, or those of /etc/resolv.conf) through c-ares, which builds and
 * parses the packets: no DNS byte is parsed here. The lookups:
 *
 *   dns_resolve_host()  A and AAAA of a name: its addresses
 *   dns_resolve_txt()   TXT: each record's strings joined (SPF, DKIM, DMARC)
 *   dns_resolve_ptr()   PTR of an address: its names
 *   dns_resolve_srv()   SRV of a service name (RFC 2782, RFC 6186)
 *   dns_resolve_cname() the CNAME of a name: its target
 *   dns_resolve_mx()    where mail for a domain goes (RFC 5321 5.1): the
 *                       mail exchangers in the order to try, each with its
 *                       addresses
 *
 * Every lookup returns a request handle and later calls its callback once,
 * with a status (below) and, on DNS_OK, a result. The callback never runs
 * inside the call that started the lookup: it runs from the loop, after
 * that call has returned (even when the answer is known at once, like a
 * name too long to ask). dns_request_cancel() withdraws a lookup: its
 * callback is then never called.
 *
 * Results are borrowed: valid until the callback returns. Copy what you
 * keep (dns_mx_result_dup() for the MX routing of a delivery).
 *
 * Everything runs on the loop's thread; a resolver keeps no state outside
 * itself (its random source for MX order included), so any number may
 * live in one process. c-ares needs no ares_library_init() on Linux (it
 * does nothing there), so none is called.
 */
#ifndef MAIL_DNS_H
#define MAIL_DNS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>

/* How a lookup ended. One table in dns.c maps c-ares' codes to these. */
enum dns_status {
	DNS_OK = 0,
	/* Permanent: the name does not exist (rcode NXDOMAIN). */
	DNS_NXDOMAIN,
	/* Permanent: the name exists, with no records of the type asked for
	 * (NOERROR with an empty answer). For dns_resolve_host: neither A nor
	 * AAAA. For dns_resolve_mx: no mail exchanger has an address. */
	DNS_NODATA,
	/* Temporary, never permanent: SERVFAIL, REFUSED, no answer within the
	 * timeout, the server unreachable, a malformed answer, anything
	 * c-ares reports that is not one of the others. */
	DNS_TEMP,
	/* dns_resolve_mx only, permanent: the domain publishes a null MX
	 * (RFC 7505: its one MX is "." with preference 0): it accepts no
	 * mail. Bounce at once. */
	DNS_NULL_MX,
	/* Permanent: what was asked is no DNS name (empty, longer than 253
	 * bytes, a label over 63). */
	DNS_BADNAME,
	/* The resolver was destroyed with the lookup pending
	 * (dns_resolver_destroy). */
	DNS_CANCELLED,
};

/* "ok", "nxdomain", "nodata", "temp", "null_mx", "badname", "cancelled"
 * (for logs and metrics); never NULL. */
const char *dns_status_name(enum dns_status status);
/* 1 when the same lookup will give the same answer (NXDOMAIN, NODATA,
 * NULL_MX, BADNAME): the caller may fail the message for good. 0 for OK,
 * TEMP and CANCELLED. */
int dns_status_permanent(enum dns_status status);

/* Bounds on the work of one lookup. A field left 0 takes its default. */
struct dns_limits {
	/* dns_resolve_mx: mail exchangers kept (after ordering), each looked
	 * up; the rest are dropped. */
	unsigned mx_hosts_max;
#define DNS_MX_HOSTS_MAX_DEFAULT 16
	/* Addresses kept per host (A and AAAA together; when both have more,
	 * each family keeps at least half). */
	unsigned addrs_max;
#define DNS_ADDRS_MAX_DEFAULT 16
};

struct dns_settings {
	/* The one DNS server to ask: "A.B.C.D:PORT" or "[V6]:PORT" (an IP
	 * literal: a resolver cannot look up its own server; port 1..65535),
	 * as --dns / MAIL_DNS give it (daemon-main.h). NULL: the nameservers
	 * of /etc/resolv.conf. Borrowed during dns_resolver_create only. */
	const char *server;
	/* The timeout of one try (c-ares doubles it for each retry of the
	 * same server, so a dead server fails a lookup after about
	 * timeout_ms * (2^tries - 1)). 0: DNS_TIMEOUT_MS_DEFAULT. */
	unsigned timeout_ms;
#define DNS_TIMEOUT_MS_DEFAULT 2000
	/* Tries per server before a lookup fails with DNS_TEMP. 0:
	 * DNS_TRIES_DEFAULT. */
	unsigned tries;
#define DNS_TRIES_DEFAULT 2
	struct dns_limits limits;
	/* TXT answers (records, NXDOMAIN, NODATA; never a failure) kept this
	 * long and answered without asking again: DKIM keys and DMARC
	 * records of a busy sender. A fixed lifetime, not the records' TTL
	 * (c-ares does not give it for TXT): keep it short. 0: no cache.
	 * At most txt_cache_entries names; when full the cache starts over
	 * (memory stays bounded). 0: DNS_TXT_CACHE_ENTRIES_DEFAULT. */
	unsigned txt_cache_ms;
#define DNS_TXT_CACHE_MS_MAX 3600000u
	unsigned txt_cache_entries;
#define DNS_TXT_CACHE_ENTRIES_DEFAULT 4096u
	/* dns_resolve_mx answers (a result whose every host was answered,
	 * NXDOMAIN, NODATA, a null MX; never a temporary failure, nor a
	 * result with a host whose lookup failed for now) kept this long, in
	 * the same table as TXT (txt_cache_entries bounds both): the
	 * outbound queue asks the same few domains for every message. Hosts
	 * of equal preference are put in a new random order at each hit. A
	 * fixed lifetime, like TXT's (c-ares gives no TTL for MX): keep it
	 * short. 0: no cache. */
	unsigned mx_cache_ms;
	/* Seed of the resolver's random source (the order of MX hosts of
	 * equal preference). 0: seeded from the system's CSPRNG. Tests give
	 * one to repeat an order. */
	uint64_t seed;
};

typedef struct dns_resolver dns_resolver;
typedef struct dns_request dns_request;

/* Make a resolver on loop. Returns 0 and *resolver_r, or -1 with a static
 * line in *error_r (a malformed server; c-ares failing to start). The
 * resolver's handles keep the loop alive only while lookups are pending.
 * Loop thread only. */
int dns_resolver_create(uv_loop_t *loop, const struct dns_settings *settings,
			dns_resolver **resolver_r, const char **error_r);

/* Destroy *resolver and NULL it; NULL is fine. Every lookup still pending
 * gets its callback now, inside this call, with DNS_CANCELLED and no
 * result (so each caller frees what its arg holds); lookups cancelled
 * before get nothing. A callback run there must not start lookups on
 * this resolver (that aborts: a bug in the caller). May be
 * called from a callback of this resolver. The memory is released by the
 * loop once the resolver's handles have closed (run the loop after it).
 * Loop thread only. */
void dns_resolver_destroy(dns_resolver **resolver);

/* Lookups whose callback is still to come (not yet delivered, not
 * cancelled). */
size_t dns_resolver_pending(const dns_resolver *resolver);

/* Withdraw a lookup and NULL *request; NULL is fine. Its callback is then
 * never called. Only a request still pending may be cancelled: the handle
 * is invalid once its callback has started (NULL your copy there). */
void dns_request_cancel(dns_request **request);

/* ---- A and AAAA ---- */

/* Addresses of one name: IPv6 first, then IPv4, each family in the
 * server's order; at most limits.addrs_max. Ports are 0. */
struct dns_addrs {
	const struct sockaddr_storage *addrs;
	size_t count;
};

/* status DNS_OK: result has at least one address. Else result is NULL:
 * DNS_NXDOMAIN (both families), DNS_NODATA (the name exists, neither A
 * nor AAAA), DNS_TEMP (no address, and A or AAAA failed for a temporary
 * reason: an address may exist), DNS_BADNAME, DNS_CANCELLED. An answer
 * with addresses of one family is DNS_OK even when the other family's
 * query failed. */
typedef void dns_host_cb(enum dns_status status, const struct dns_addrs *result, void *arg);

/* A and AAAA of name, both asked at once. A CNAME chain is followed as
 * the server answers it (a recursive server gives the chain and the
 * target's records in one answer; one that gives the CNAME alone makes
 * it DNS_NODATA). name is copied; arg is the caller's. Returns the
 * request (never NULL). */
dns_request *dns_resolve_host(dns_resolver *resolver, const char *name, dns_host_cb *cb,
			      void *arg);

/* ---- TXT ---- */

/* One TXT record: its character-strings (each at most 255 bytes on the
 * wire) joined without separator, as SPF (RFC 7208 3.3), DKIM (RFC 6376
 * 3.6.2.2) and DMARC read them. data holds len bytes and a NUL after
 * them (it may hold NULs of its own). */
struct dns_txt {
	const char *data;
	size_t len;
};

struct dns_txt_result {
	const struct dns_txt *records; /* in the server's order */
	size_t count;                  /* at least 1 */
};

/* status DNS_OK with result, else NULL (NXDOMAIN, NODATA, TEMP, BADNAME,
 * CANCELLED). */
typedef void dns_txt_cb(enum dns_status status, const struct dns_txt_result *result,
			void *arg);

/* The TXT records of name. name is copied. Returns the request. */
dns_request *dns_resolve_txt(dns_resolver *resolver, const char *name, dns_txt_cb *cb,
			     void *arg);

/* ---- PTR ---- */

struct dns_names {
	const char *const *names; /* without the trailing dot, server's order */
	size_t count;             /* at least 1 */
};

/* status DNS_OK with result, else NULL. */
typedef void dns_names_cb(enum dns_status status, const struct dns_names *result, void *arg);

/* The PTR names of addr (AF_INET or AF_INET6; its port is ignored):
 * asks d.c.b.a.in-addr.arpa or the nibbles under ip6.arpa. Another
 * family: DNS_BADNAME. addr is copied. Returns the request. */
dns_request *dns_resolve_ptr(dns_resolver *resolver, const struct sockaddr *addr,
			     dns_names_cb *cb, void *arg);

/* ---- SRV ---- */

/* One SRV record (RFC 2782). target is the host without the trailing
 * dot, or "." when the service is decidedly not offered (RFC 2782, RFC
 * 6186 3.4). */
struct dns_srv {
	const char *target;
	unsigned priority, weight, port;
};

struct dns_srv_result {
	const struct dns_srv *records; /* in the server's order */
	size_t count;                  /* 1..DNS_SRV_RECORDS_MAX */
};
/* SRV records kept from one answer (the rest are dropped): a service name
 * with more than a few is a mistake, and no count read from the packet
 * sizes anything of ours. */
#define DNS_SRV_RECORDS_MAX 32

/* status DNS_OK with result, else NULL (NXDOMAIN, NODATA, TEMP, BADNAME,
 * CANCELLED). */
typedef void dns_srv_cb(enum dns_status status, const struct dns_srv_result *result,
			void *arg);

/* The SRV records of name ("_imaps._tcp.example.com"). name is copied.
 * Returns the request. */
dns_request *dns_resolve_srv(dns_resolver *resolver, const char *name, dns_srv_cb *cb,
			     void *arg);

/* ---- CNAME ---- */

/* The CNAME of name: asks type CNAME, so the server gives the one link
 * (not the chain): result->names[0] is its target, without the trailing
 * dot (count is 1). DNS_NODATA when name exists and is not an alias (it
 * has an A record, say); DNS_NXDOMAIN when it does not exist. name is
 * copied. Returns the request. */
dns_request *dns_resolve_cname(dns_resolver *resolver, const char *name, dns_names_cb *cb,
			       void *arg);

/* ---- MX: where mail for a domain goes ---- */

struct dns_mx_host {
	const char *name;       /* the exchanger as the MX names it (no
				 * trailing dot), or the domain (implicit) */
	unsigned preference;
	/* Of this host's address lookup (as dns_resolve_host's): DNS_OK with
	 * addrs, or why it has none (then count is 0). */
	enum dns_status status;
	struct dns_addrs addrs;
};

struct dns_mx_result {
	/* In the order to try: preference ascending, hosts of equal
	 * preference in a random order (the resolver's random source), each
	 * name once; at most limits.mx_hosts_max. A host without addresses
	 * stays in its place with its status: try the next one. */
	const struct dns_mx_host *hosts;
	size_t count;              /* at least 1 */
	/* 1: the domain has no MX records (NODATA), so it is its own mail
	 * exchanger, with preference 0 (RFC 5321 5.1). */
	int implicit;
	/* MX records of the answer not kept: over mx_hosts_max, or naming
	 * a host already kept (at a better or equal preference). */
	size_t dropped;
};

/* status (result NULL unless said):
 *   DNS_OK        result; at least one host has an address.
 *   DNS_TEMP      the MX query failed temporarily; or result is given and
 *                 no host has an address, and at least one host's lookup
 *                 was temporary: retry later.
 *   DNS_NODATA    result is given and no host has an address, none for a
 *                 temporary reason (every host NXDOMAIN or NODATA):
 *                 permanent.
 *   DNS_NXDOMAIN  the domain does not exist: permanent.
 *   DNS_NULL_MX   the domain accepts no mail (RFC 7505): permanent.
 *   DNS_BADNAME, DNS_CANCELLED.
 * A "." among other MX records (not a null MX) is skipped. */
typedef void dns_mx_cb(enum dns_status status, const struct dns_mx_result *result, void *arg);

/* The mail exchangers of domain and their addresses (A and AAAA of every
 * kept host, asked in parallel, as dns_resolve_host: an exchanger that is
 * a CNAME gets its target's addresses). domain is copied. Returns the
 * request. */
dns_request *dns_resolve_mx(dns_resolver *resolver, const char *domain, dns_mx_cb *cb,
			    void *arg);

/* A copy of result that the caller owns (one allocation, no pointer into
 * the resolver), to free with dns_mx_result_free(). */
struct dns_mx_result *dns_mx_result_dup(const struct dns_mx_result *result);
/* Free a copy and NULL *result; NULL is fine. */
void dns_mx_result_free(struct dns_mx_result **result);

#endif
