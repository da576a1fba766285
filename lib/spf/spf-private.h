/* spf-private.h: what spf-check.c (the checker on the loop: queue, pool,
 * timers, destroy), spf-eval.c (one evaluation with libspf2 in a pool
 * thread, and the texts of its result) and spf-dns.c (the DNS layers under
 * libspf2) share. Not for callers: spf-check.h is the contract.
 *
 * The DNS chain of one check, top to bottom:
 *
 *   struct spf__eval.top   the limits layer, one per check (its hook is the
 *                          spf__eval): counts terms and void lookups,
 *                          checks the deadline and the abandon flag, and
 *                          answers type 99 (SPF RR) NODATA itself;
 *   cache                  SPF_dns_cache_new(), one per cache generation
 *                          of the checker, shared by the pool threads;
 *   resolver               spf__resolver_new(): res_nsend() and
 *                          spf__dns_read(). It sits under the shared cache,
 *                          so it finds its check (res_state, answer
 *                          buffer) through a thread-local pointer that
 *                          spf__eval_init() sets and spf__eval_deinit()
 *                          clears: an evaluation runs on one thread from
 *                          start to end.
 *
 * libspf2 headers need <netinet/in.h> first (DEPS-FACTS.md).
 */
#ifndef MAIL_SPF_PRIVATE_H
#define MAIL_SPF_PRIVATE_H

#include "spf-check.h"

#include <netinet/in.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <resolv.h>
#include <stdatomic.h>

#include <spf2/spf.h>
#include <spf2/spf_dns.h>

/* Longest inputs taken as they are; longer ones make the domain unusable
 * (SPF_NONE) so that no header field grows past what RFC 5322 allows. */
#define SPF__HELO_MAX 255u
#define SPF__MAIL_FROM_MAX 320u /* 64 local part, "@", 255 domain */
#define SPF__PROBLEM_MAX 200u
/* One DNS message at most (TCP's 16-bit length). */
#define SPF__ANSWER_MAX 65536u
/* Names of one MX or PTR answer whose address lookups belong to its term
 * (libspf2 looks at 10 at most: SPF_MAX_DNS_MX, SPF_MAX_DNS_PTR). */
#define SPF__SUB_NAMES_MAX 10u

/* What one check evaluates; built on the loop by spf_check(), read-only
 * in the pool thread. */
struct spf__input {
	int family;             /* AF_INET or AF_INET6; 0: no usable client */
	struct in_addr ip4;
	struct in6_addr ip6;
	char ip[INET6_ADDRSTRLEN];
	char *helo;             /* "" when none */
	char *mail_from;        /* "" for the null reverse-path */
	enum spf_identity identity;
	char *sender;           /* see spf_result.sender */
	char *domain;           /* the domain checked; "" when unusable */
	char *id;               /* for logs, "-" when none */
};

/* Why an evaluation was cut short by the limits layer. */
enum spf__stop {
	SPF__STOP_NONE = 0,
	SPF__STOP_TERMS,    /* more than terms_max DNS-querying terms */
	SPF__STOP_VOIDS,    /* more than voids_max void lookups */
	SPF__STOP_DEADLINE, /* the check's time is up */
	SPF__STOP_ABANDON,  /* cancelled, timed out on the loop, destroyed */
};

/* What an evaluation found (the pool thread writes it, the loop reads it
 * after uv_queue_work's after-callback). */
struct spf__outcome {
	enum spf_status status;
	char problem[SPF__PROBLEM_MAX + 1]; /* "" when none */
	unsigned terms, voids;
};

struct spf__limits {
	unsigned terms_max, voids_max;
};

/* The resolver's configuration (immutable once made). */
struct spf__resolver_conf {
	struct sockaddr_storage server;
	int has_server;         /* 0: the servers of /etc/resolv.conf */
	unsigned timeout_s, tries;
	unsigned ttl_max_s;     /* cap of every cached answer */
	atomic_uint_fast64_t *queries; /* counts queries sent (stats) */
	atomic_uint *inserts;   /* counts answers handed to the cache */
};

/* One evaluation's DNS state: the limits layer and what the resolver
 * needs of the check. Lives on the pool thread's stack. */
struct spf__eval {
	SPF_dns_server_t top;   /* lookup, get_exp; destroy NULL (ours) */
	struct spf__limits lim;
	uint64_t deadline_ms;   /* util_now_mono_ms() clock; 0: none */
	const atomic_int *abandon; /* set by the loop; NULL: never */
	atomic_uint_fast64_t *lookups; /* stats, or NULL */
	enum spf__stop stop;
	unsigned terms, voids;
	int first_txt_done;     /* the checked domain's own TXT is no term */
	/* the names of the last MX or PTR answer, looked up next */
	char *sub[SPF__SUB_NAMES_MAX];
	unsigned sub_count, sub_next;
	char temp_name[256];    /* first name whose lookup failed for now */
	/* the resolver's, made on the first query of the check */
	int res_ready;
	struct __res_state res;
	unsigned char *answer;  /* SPF__ANSWER_MAX bytes */
};

/* ---- spf-dns.c ---- */

/* Make the limits layer over below (the cache, the resolver, or a test's
 * zone) and make ev the current evaluation of this thread. */
void spf__eval_init(struct spf__eval *ev, SPF_dns_server_t *below,
		    const struct spf__limits *lim, uint64_t deadline_ms,
		    const atomic_int *abandon, atomic_uint_fast64_t *lookups);
/* Free what the evaluation holds (res_state, buffers), clear the
 * thread's current evaluation. */
void spf__eval_deinit(struct spf__eval *ev);

/* The resolver layer: destroy set (SPF_dns_free() frees it). conf is
 * copied. Never NULL (allocation aborts). */
SPF_dns_server_t *spf__resolver_new(const struct spf__resolver_conf *conf);

/* An answer of res_nsend() as libspf2's record set: the one parser of
 * network bytes here (fuzz-spf.c). len < 0: no answer (TRY_AGAIN). rcode
 * NOERROR: the records of type in the answer section (A, AAAA, MX, PTR,
 * TXT; CNAMEs and other types skipped), NO_DATA when none; NXDOMAIN:
 * HOST_NOT_FOUND; any other rcode, a truncated or malformed message, a
 * record of the type with malformed data: TRY_AGAIN (RFC 7208 5:
 * temperror). TXT character-strings are joined; a NUL in them becomes
 * 0x01 (so a record cannot be cut short: libspf2 reads C strings). TTL:
 * the smallest of the records kept, or for negative answers that of the
 * SOA in the authority section (RFC 2308), 0 without one; at most
 * ttl_max_s. Never NULL. */
SPF_dns_rr_t *spf__dns_read(SPF_dns_server_t *source, const char *domain, ns_type type,
			    const unsigned char *answer, int len, unsigned ttl_max_s);

/* ---- spf-eval.c ---- */

/* Evaluate in with libspf2 over ev's layers: our own top level instead of
 * SPF_request_query_mailfrom() (no free pass for loopback clients; the
 * result classes of RFC 7208 from libspf2's result and messages). */
void spf__evaluate(struct spf__eval *ev, const char *receiver, const struct spf__input *in,
		   struct spf__outcome *out);

/* Is s (len bytes) a domain SPF can check (RFC 7208 4.3)? One trailing dot
 * allowed; 2+ labels of 1..63 bytes; at most 253 bytes; printable ASCII
 * without space and without "[]()<>@,;:\\\"". */
int spf__domain_usable(const char *s, size_t len);

/* The texts of a result (heap strings in t, freed by spf__texts_free). */
struct spf__texts {
	char *comment;
	char *received_spf;
	char *auth_results;
};
void spf__texts_build(const struct spf__input *in, const struct spf__outcome *out,
		      const char *receiver, struct spf__texts *t);
void spf__texts_free(struct spf__texts *t);

#endif
