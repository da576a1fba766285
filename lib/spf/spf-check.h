/* spf-check.h: SPF checks (RFC 7208) for the MX, on a libuv loop (public
 * contract; library `mailspf`, docs/inbound.md "SPF").
 *
 * Decision: Debian's libspf2 (1.2.10) evaluates the records, not code of
 * ours. Its DNS is synchronous, so each check runs in libuv's thread pool
 * (uv_queue_work) and its callback comes back on the loop: the loop never
 * waits for DNS. Under libspf2 sit DNS layers of ours (spf-private.h):
 *
 *   limits (one per check)  counts the DNS-querying terms (RFC 7208 4.6.4:
 *                           at most dns_terms_max across includes and
 *                           redirects) and the void lookups (at most
 *                           void_lookups_max), enforces the deadline, never
 *                           asks for the obsolete SPF RR type (99);
 *   SPF_dns_cache_new       libspf2's cache, one per checker, shared by the
 *                           pool's threads (it locks), bounded (below);
 *   resolver                res_nsend() on a res_state of the check's,
 *                           pointed at settings.dns_server (the daemons'
 *                           --dns IP:PORT), or /etc/resolv.conf's servers.
 *
 * Why not libspf2 alone: its own limit counts the terms of each include
 * separately and lets the 11th through, it has no void-lookup limit, its
 * resolver layer cannot be pointed at a port, and it gives loopback
 * clients (127.0.0.0/8, ::1) a "pass" without looking at DNS: the check
 * here evaluates every client as RFC 7208 says (it calls
 * SPF_server_get_record() and SPF_record_interpret() itself).
 *
 * What a result means (RFC 7208 2.6, 8): see enum spf_status. A DNS
 * timeout, SERVFAIL, REFUSED, an unreachable server, a malformed answer
 * or the check's own timeout give SPF_TEMPERROR, never SPF_FAIL.
 *
 * Identities: the MAIL FROM domain; with a null reverse-path ("") the
 * HELO name instead, as "postmaster@<helo>" (RFC 7208 2.4); or the HELO
 * name when asked (SPF_IDENTITY_HELO, RFC 7208 2.3). A domain that is not
 * a multi-label DNS name (an address literal, one label, a label over 63
 * bytes, over 253 bytes, bytes outside printable ASCII) gives SPF_NONE
 * without DNS (RFC 7208 4.3); internationalized domains are not converted
 * to A-labels here.
 *
 * Not used: the exp= modifier (libspf2 1.2.10 mangles the explanation's
 * macros); result.comment says what happened in our words.
 *
 * Threads: a checker lives on one loop and every call here is made on
 * that loop's thread; the pool threads touch only their own check (and
 * the shared cache, which locks). Several checkers may live in one
 * process (each has its own cache).
 */
#ifndef MAIL_SPF_CHECK_H
#define MAIL_SPF_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>

/* RFC 7208 2.6 results, in the order of RFC 8601's "spf" method. */
enum spf_status {
	SPF_NONE = 0,  /* no record, or no valid domain to check */
	SPF_NEUTRAL,   /* the domain says nothing about the client ("?all") */
	SPF_PASS,      /* the client is authorized */
	SPF_FAIL,      /* the client is not authorized ("-all") */
	SPF_SOFTFAIL,  /* probably not authorized ("~all") */
	SPF_TEMPERROR, /* DNS failed or the check timed out: retry later */
	SPF_PERMERROR, /* the records are broken: two records, a syntax
			* error, over the term or void-lookup limits */
};

/* "none", "neutral", "pass", "fail", "softfail", "temperror",
 * "permerror": the words of Received-SPF and Authentication-Results.
 * Never NULL ("unknown" for a value outside the enum). */
const char *spf_status_name(enum spf_status status);

enum spf_identity {
	SPF_IDENTITY_MAILFROM = 0, /* the MAIL FROM domain (HELO if null) */
	SPF_IDENTITY_HELO,         /* the HELO/EHLO name */
};

/* "mailfrom", "helo" (Received-SPF's identity=). */
const char *spf_identity_name(enum spf_identity identity);

/* ---- settings (every row: default, min, max; 0 takes the default) ---- */

struct spf_settings {
	/* The one DNS server to ask: "A.B.C.D:PORT" or "[V6]:PORT", as --dns
	 * and MAIL_DNS give it (daemon-main.h). NULL: the nameservers of
	 * /etc/resolv.conf. Borrowed during spf_checker_create only. */
	const char *dns_server;
	/* Our host name, for Received-SPF's receiver= and its comment (a DNS
	 * name). NULL: gethostname(). Copied. */
	const char *receiver;
	/* Time from spf_check() to its callback, queueing included; after it
	 * the result is SPF_TEMPERROR ("timed out"). RFC 7208 4.6.4 asks for
	 * at least 20 s when such a limit exists. */
	unsigned timeout_ms;
#define SPF_CHECK_TIMEOUT_MS_DEFAULT 20000u
#define SPF_CHECK_TIMEOUT_MS_MIN 100u
#define SPF_CHECK_TIMEOUT_MS_MAX 120000u
	/* One DNS try, in whole seconds (glibc's resolver counts seconds),
	 * and tries per query. A query that is never answered holds a pool
	 * thread for dns_timeout_s * dns_tries, possibly past timeout_ms
	 * (the callback does not wait for it). */
	unsigned dns_timeout_s;
#define SPF_CHECK_DNS_TIMEOUT_S_DEFAULT 2u
#define SPF_CHECK_DNS_TIMEOUT_S_MIN 1u
#define SPF_CHECK_DNS_TIMEOUT_S_MAX 30u
	unsigned dns_tries;
#define SPF_CHECK_DNS_TRIES_DEFAULT 2u
#define SPF_CHECK_DNS_TRIES_MIN 1u
#define SPF_CHECK_DNS_TRIES_MAX 5u
	/* Terms that query DNS (include, a, mx, ptr, exists, redirect), in
	 * the whole evaluation; one more is SPF_PERMERROR (RFC 7208 4.6.4). */
	unsigned dns_terms_max;
#define SPF_CHECK_DNS_TERMS_DEFAULT 10u
#define SPF_CHECK_DNS_TERMS_MIN 1u
#define SPF_CHECK_DNS_TERMS_MAX 100u
	/* Such terms whose lookup answers NXDOMAIN or no records; one more is
	 * SPF_PERMERROR (RFC 7208 4.6.4). */
	unsigned void_lookups_max;
#define SPF_CHECK_VOID_LOOKUPS_DEFAULT 2u
#define SPF_CHECK_VOID_LOOKUPS_MIN 1u
#define SPF_CHECK_VOID_LOOKUPS_MAX 100u
	/* Checks in libuv's thread pool at once (each holds a thread while it
	 * waits for DNS); the rest wait in our queue. Keep it below the pool's
	 * size (UV_THREADPOOL_SIZE, libuv's default 4) so other work of the
	 * loop (file I/O, recipient lookups) still gets threads. */
	unsigned workers_max;
#define SPF_CHECK_WORKERS_DEFAULT 2u
#define SPF_CHECK_WORKERS_MIN 1u
#define SPF_CHECK_WORKERS_MAX 1024u
	/* Checks waiting for a worker; one more gets SPF_TEMPERROR ("busy")
	 * at once. */
	unsigned queue_max;
#define SPF_CHECK_QUEUE_DEFAULT 4096u
#define SPF_CHECK_QUEUE_MIN 1u
#define SPF_CHECK_QUEUE_MAX 1000000u
	/* DNS answers cached (positive for their TTL, negative for the SOA's
	 * negative TTL, temporary failures for under a second). When this
	 * many have been fetched the cache is replaced by an empty one (the
	 * old one goes when its last check ends): memory stays bounded. */
	unsigned cache_entries_max;
#define SPF_CHECK_CACHE_ENTRIES_DEFAULT 8192u
#define SPF_CHECK_CACHE_ENTRIES_MIN 16u
#define SPF_CHECK_CACHE_ENTRIES_MAX 1000000u
	/* Longest time an answer is cached, whatever its TTL. */
	unsigned cache_ttl_max_s;
#define SPF_CHECK_CACHE_TTL_S_DEFAULT 3600u
#define SPF_CHECK_CACHE_TTL_S_MIN 1u
#define SPF_CHECK_CACHE_TTL_S_MAX 86400u
};

/* ---- a check ---- */

struct spf_request {
	/* The SMTP client: AF_INET or AF_INET6 (an IPv4-mapped IPv6 address
	 * counts as IPv4, RFC 7208 5.6). When NULL, client_ip (text) is read
	 * instead. Neither usable: SPF_PERMERROR ("no client address"). */
	const struct sockaddr *client;
	const char *client_ip;
	/* The HELO/EHLO argument; NULL or "" when none was given. */
	const char *helo;
	/* The MAIL FROM reverse-path without <>; "" (or NULL) for the null
	 * reverse-path, which makes the HELO name the identity. */
	const char *mail_from;
	enum spf_identity identity;
	/* Names the check in log lines (the SMTP session id); may be NULL. */
	const char *id;
};

/* Every string is NUL-terminated, owned by the checker and valid until the
 * callback returns: copy what you keep. */
struct spf_result {
	enum spf_status status;
	enum spf_identity identity; /* the one checked */
	/* The <sender> as checked: the MAIL FROM address, "postmaster@" the
	 * domain when it had no local part, "postmaster@<helo>" for HELO. */
	const char *sender;
	const char *domain; /* the domain checked ("" when none was usable) */
	/* One line, printable ASCII: "<receiver>: domain of <sender>
	 * designates <ip> as permitted sender", and the like per result. */
	const char *comment;
	/* SPF_TEMPERROR and SPF_PERMERROR: why (printable ASCII, from
	 * libspf2's messages or ours); else NULL. For logs. */
	const char *problem;
	/* The header field (RFC 7208 9.1), folded with CRLF TAB, ending CRLF:
	 * "Received-SPF: pass (<comment>) client-ip=192.0.2.1;\r\n\t
	 * envelope-from=\"a@example.test\"; helo=mx.example.test;\r\n\t
	 * receiver=mx.local; identity=mailfrom\r\n" (problem= on errors;
	 * values that are not dot-atoms are quoted, IPv6 included). */
	const char *received_spf;
	/* The resinfo for Authentication-Results (RFC 8601 2.7.2), no CRLF:
	 * "spf=pass smtp.mailfrom=a@example.test" (the domain alone when the
	 * local part is not a dot-atom), "spf=none smtp.helo=mx.example.test"
	 * for HELO, "spf=none" when there is no valid value. */
	const char *auth_results;
	unsigned dns_terms;    /* DNS-querying terms evaluated */
	unsigned void_lookups; /* of them, void */
	uint64_t elapsed_ms;   /* from spf_check() */
};

/* result is NULL only when the checker was destroyed before the check
 * ended (spf_checker_destroy). */
typedef void spf_cb(const struct spf_result *result, void *arg);

typedef struct spf_checker spf_checker;
typedef struct spf_query spf_query;

/* The defaults above, as a struct to start from. */
struct spf_settings spf_settings_default(void);

/* A checker on loop. settings (copied; NULL: the defaults): fields left 0
 * take their default, others must be in range. Returns 0 and *checker_r,
 * or -1 with a static line in *error_r (a setting out of range, a
 * malformed dns_server or receiver). Loop thread only. */
int spf_checker_create(uv_loop_t *loop, const struct spf_settings *settings,
		       spf_checker **checker_r, const char **error_r);

/* Destroy *checker and NULL it; NULL is fine. Safe with checks in
 * flight: every check whose callback is still to come gets it now, inside
 * this call, with result NULL (so each caller frees what its arg holds);
 * such a callback must not call spf_check() on this checker (that
 * aborts). A check already in a pool thread finishes there without
 * asking more DNS (at most one query's dns_timeout_s * dns_tries); the
 * checker's memory (and its cache) is released once the last one is back
 * and its handles have closed: run the loop after this. May be called from
 * a callback. Loop thread only. */
void spf_checker_destroy(spf_checker **checker);

/* Checks whose callback is still to come. */
size_t spf_checker_pending(const spf_checker *checker);

/* Start a check of req (every field copied). cb runs once, on the loop,
 * never inside this call (a check refused at once, "busy", or decided
 * without DNS, is answered on a later loop turn). arg is the caller's.
 * Returns the query (never NULL), valid until the callback starts. Loop
 * thread only. */
spf_query *spf_check(spf_checker *checker, const struct spf_request *req, spf_cb *cb,
		     void *arg);

/* Withdraw a check and NULL *query; NULL is fine. Its callback is then
 * never called; a check already in a pool thread stops asking DNS. Only a
 * query whose callback has not started may be cancelled. */
void spf_query_cancel(spf_query **query);

/* Counters since create (metrics, tests, the cost measurement). */
struct spf_stats {
	uint64_t checks;      /* spf_check calls */
	uint64_t evaluated;   /* checks that ran in the pool */
	uint64_t timeouts;    /* answered SPF_TEMPERROR for timeout_ms */
	uint64_t busy;        /* refused: the queue was full */
	uint64_t lookups;     /* DNS lookups libspf2 asked for */
	uint64_t dns_queries; /* of them, sent to the server (cache misses) */
	uint64_t caches;      /* caches made (1 + replacements) */
};
void spf_checker_get_stats(const spf_checker *checker, struct spf_stats *stats_r);

#endif
