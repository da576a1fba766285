/* conncheck.h: the MX's checks of a connecting client and of a sender
 * domain in DNS (public contract; library `mailconncheck`).
 *
 * Two checks, each one call and one callback, every lookup through
 * lib/dns (c-ares on the loop: nothing blocks):
 *
 *   conncheck_client_start()  the client's address:
 *     - PTR: the names of its reverse zone (in-addr.arpa or ip6.arpa);
 *     - FCrDNS (forward-confirmed reverse DNS): the A/AAAA of each PTR
 *       name (the first CONNCHECK_PTR_NAMES_MAX of them, in parallel);
 *       it passes when one name has the client's address;
 *     - DNSBL (RFC 5782) in each zone given: A of the reversed address
 *       under the zone ("2.0.0.127.zone"; IPv6: 32 reversed nibbles,
 *       RFC 5782 2.4), TXT of the same name when listed.
 *   conncheck_rhsbl_start()  a domain (MAIL FROM's, HELO's): A of
 *     "domain.zone" in each RHSBL zone given (RFC 5782 2.3), TXT when
 *     listed.
 * All lookups of a check run at once; the callback comes when the last
 * one has answered or the check's deadline (timeout_ms) has passed.
 *
 * What an A answer of a list zone means:
 *   127.0.0.0/8          listed (the addresses are kept: zones code the
 *                        reason in them, 127.0.0.2 is the test entry);
 *                        but 127.255.255.0/24 is what zones (Spamhaus)
 *                        answer for a refused query (a public resolver,
 *                        over quota): IGNORED, not listed;
 *   NXDOMAIN, no A       not listed;
 *   anything else        (SERVFAIL, REFUSED, no answer in time) TEMPERROR:
 *                        the MX never rejects because of it;
 *   addresses outside 127.0.0.0/8 only: IGNORED (a broken zone, or a
 *                        hijacked or wildcarding resolver, RFC 5782 5):
 *                        treated as not listed.
 * The TXT (the zone's reason text) is optional: its failure leaves the
 * listing as it is, with an empty text.
 *
 * Names. Zones and domains are read as DNS names: one trailing dot is
 * dropped, ASCII is lowercased, labels are 1..63 bytes of letters,
 * digits, '-' and '_' (no '-' first or last), at least two labels, at
 * most 253 bytes with what is put before them (conncheck_name_normalize).
 * A zone or domain that is not one, or a name too long together, is not
 * asked: that zone is UNCHECKED. Internationalized domains must come as
 * A-labels. PTR names that are not such names (one label is enough for
 * them) are skipped, as if absent.
 *
 * Client addresses: AF_INET or AF_INET6; an IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d, what a dual-stack listener gives) is checked as the
 * IPv4 address it is. Another family: no PTR (CONNCHECK_PTR_NONE), FCrDNS
 * fails, every zone UNCHECKED.
 *
 * Queries: lib/dns's host lookup asks A and AAAA of each name, so each
 * list zone gets an AAAA query beside the A it needs (dns.h has no A-only
 * lookup); AAAA answers of a list zone are ignored. A zone server that
 * never answers AAAA makes its zone TEMPERROR at the deadline even when
 * its A said listed (lib/dns settles a lookup when both have answered).
 *
 * Nothing is logged here: the result carries what the caller's one log
 * line per check needs (each zone's detail, the names, the statuses).
 *
 * Threads and lifetimes. A checker belongs to one loop: create, destroy,
 * start and cancel on its thread; callbacks run there, from the loop
 * (never inside a start call, never inside another callback of this
 * library or of lib/dns). Each check owns a timer: memory is released
 * when its handle closes, so run the loop after destroying a checker or
 * cancelling a check, before uv_loop_close(). The resolver is borrowed:
 * destroy the checker first (a resolver destroyed first turns every
 * pending lookup into a temporary failure; the callbacks still come).
 * Nothing global: any number of checkers may live in one process.
 */
#ifndef MAIL_CONNCHECK_H
#define MAIL_CONNCHECK_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <uv.h>

#include "dns.h"

/* A DNS name without its trailing dot, and the NUL. */
#define CONNCHECK_NAME_MAX 253u
/* PTR names looked at (the rest of a PTR answer is dropped): a PTR set
 * of hundreds of names would else cost as many lookups. */
#define CONNCHECK_PTR_NAMES_MAX 10u
/* List zones per check, whatever max_zones says. */
#define CONNCHECK_ZONES_MAX 16u
/* A-record addresses kept per zone (zones answer one or a few codes). */
#define CONNCHECK_BL_ADDRS_MAX 4u
/* Bytes of a zone's TXT kept (the first record, cut here). */
#define CONNCHECK_TXT_MAX 255u

/* ---- settings (every row: default, min, max; 0 takes the default) ---- */

struct conncheck_settings {
	/* From start to callback, at most; lookups still open then count
	 * as temporary failures (a listing whose TXT is late stays listed,
	 * without text). Above the resolver's own timeout (dns.h: 2000 ms
	 * a try, doubled each retry) a dead server ends a check through
	 * the resolver; below it, through this. */
	unsigned timeout_ms;
#define CONNCHECK_TIMEOUT_MS_DEFAULT 5000u
#define CONNCHECK_TIMEOUT_MS_MIN 10u
#define CONNCHECK_TIMEOUT_MS_MAX 60000u
	/* List zones asked per check: the first max_zones of those given;
	 * the others are counted (zones_dropped), not asked. */
	unsigned max_zones;
#define CONNCHECK_MAX_ZONES_DEFAULT CONNCHECK_ZONES_MAX
#define CONNCHECK_MAX_ZONES_MIN 1u
#define CONNCHECK_MAX_ZONES_MAX CONNCHECK_ZONES_MAX
	/* 1: ask no TXT of a listing (one query less per listed zone; the
	 * text is then always ""). Default 0: ask. */
	int no_txt;
};

/* The defaults above. */
struct conncheck_settings conncheck_settings_default(void);

/* ---- results ---- */

enum conncheck_ptr_status {
	CONNCHECK_PTR_FOUND = 0, /* at least one usable PTR name */
	CONNCHECK_PTR_NONE,      /* NXDOMAIN, no PTR record, no usable name */
	CONNCHECK_PTR_TEMPERROR, /* SERVFAIL, timeout, ...: may exist */
};

enum conncheck_fcrdns_status {
	CONNCHECK_FCRDNS_PASS = 0, /* a PTR name has the client's address */
	CONNCHECK_FCRDNS_FAIL,     /* none has it (or there is no PTR name) */
	CONNCHECK_FCRDNS_TEMPERROR, /* none has it so far, and the PTR or a
				     * name's lookup failed for a temporary
				     * reason */
};

enum conncheck_bl_status {
	CONNCHECK_BL_NOT_LISTED = 0,
	CONNCHECK_BL_LISTED,
	CONNCHECK_BL_TEMPERROR, /* not known: never reject on it */
	CONNCHECK_BL_IGNORED,   /* an answer that is no listing (above):
				 * treated as not listed, worth a log line */
	CONNCHECK_BL_UNCHECKED, /* not asked: no name to ask (above) */
};

/* "found", "none", "temperror"; "pass", "fail", "temperror";
 * "not_listed", "listed", "temperror", "ignored", "unchecked": for logs
 * and headers; "unknown" outside the enums; never NULL. */
const char *conncheck_ptr_status_name(enum conncheck_ptr_status status);
const char *conncheck_fcrdns_status_name(enum conncheck_fcrdns_status status);
const char *conncheck_bl_status_name(enum conncheck_bl_status status);

/* One list zone's answer. */
struct conncheck_bl_zone {
	/* The zone as normalised; when it is no name, as given, cut to
	 * CONNCHECK_NAME_MAX bytes (log it quoted). */
	char zone[CONNCHECK_NAME_MAX + 1];
	/* The name asked ("2.0.0.127.zone"), "" when UNCHECKED. */
	char query[CONNCHECK_NAME_MAX + 1];
	enum conncheck_bl_status status;
	/* Static words for the log line: "listed", "nxdomain", "no A
	 * record", "timed out", "dns failure", "answer outside 127/8",
	 * "zone refused the query", "bad zone", "bad domain", "name too
	 * long", "no client address". Never NULL. */
	const char *detail;
	/* LISTED: the A records in 127.0.0.0/8; IGNORED: those that were
	 * not (IPv4 only); else none. In the server's order, at most
	 * CONNCHECK_BL_ADDRS_MAX. */
	struct in_addr addrs[CONNCHECK_BL_ADDRS_MAX];
	size_t naddrs;
	/* LISTED: the zone's TXT at the same name, its first record, cut to
	 * CONNCHECK_TXT_MAX bytes, every byte outside printable ASCII made
	 * '?' (so it may go into a reply text or a header); "" when none,
	 * not asked or not answered in time. */
	char txt[CONNCHECK_TXT_MAX + 1];
};

/* The zones of one check, in the order given. */
struct conncheck_bl_result {
	const struct conncheck_bl_zone *zones; /* NULL when count is 0 */
	size_t count;         /* min(zones given, max_zones) */
	size_t zones_dropped; /* given beyond max_zones: not asked */
	size_t listed;        /* of count, LISTED */
	size_t temperror;     /* of count, TEMPERROR */
};

/* Strings are NUL-terminated and owned by the check: valid until the
 * callback returns. Copy what you keep. */
struct conncheck_client_result {
	enum conncheck_ptr_status ptr;
	/* FOUND: the first usable PTR name (lowercase, no trailing dot), for
	 * Received's "(name [ip])"; else "". Not verified: see fcrdns. */
	const char *ptr_name;
	enum conncheck_fcrdns_status fcrdns;
	/* PASS: the PTR name that resolved back (the first in the PTR
	 * answer's order that did), what rspamd's Hostname wants; else "". */
	const char *fcrdns_name;
	/* The client as checked (IPv4-mapped made IPv4), text. */
	const char *ip;
	struct conncheck_bl_result dnsbl;
};

struct conncheck_rhsbl_result {
	/* The domain as normalised; "" when it is no DNS name (then every
	 * zone is UNCHECKED, "bad domain"). */
	const char *domain;
	struct conncheck_bl_result rhsbl;
};

/* ---- the checker ---- */

typedef struct conncheck_checker conncheck_checker;
typedef struct conncheck_job conncheck_job;

/* A checker on loop asking resolver (borrowed, see the top) with settings
 * (copied; NULL: the defaults). Returns 0 and *checker_r, or -1 with a
 * static line in *error_r for a setting out of range. Loop thread. */
int conncheck_checker_create(uv_loop_t *loop, dns_resolver *resolver,
			     const struct conncheck_settings *settings,
			     conncheck_checker **checker_r, const char **error_r);

/* Destroy *checker and NULL it (NULL is fine). Every check still running
 * is cancelled as by conncheck_cancel(): no callback runs after this. May
 * be called from a callback of this checker. Run the loop afterwards
 * (the checks' timers close there). Loop thread. */
void conncheck_checker_destroy(conncheck_checker **checker);

/* result is borrowed (valid during the call). The job handle is invalid
 * from the call on. The callback may start checks, cancel others and
 * destroy the checker. */
typedef void conncheck_client_cb(const struct conncheck_client_result *result, void *arg);
typedef void conncheck_rhsbl_cb(const struct conncheck_rhsbl_result *result, void *arg);

/* Check client (copied; its port is ignored): PTR, FCrDNS, and DNSBL in
 * zones[0..n) (strings copied; NULL with n 0 for none). cb runs exactly
 * once, later, unless the check is cancelled or the checker destroyed
 * first. Returns the job (never NULL). Loop thread. */
conncheck_job *conncheck_client_start(conncheck_checker *checker, const struct sockaddr *client,
				      const char *const *zones, size_t n,
				      conncheck_client_cb *cb, void *arg);

/* Check domain (copied; normalised as at the top) in the RHSBL zones[0..n)
 * (copied). As conncheck_client_start otherwise. */
conncheck_job *conncheck_rhsbl_start(conncheck_checker *checker, const char *domain,
				     const char *const *zones, size_t n, conncheck_rhsbl_cb *cb,
				     void *arg);

/* Withdraw a check and NULL *job (NULL is fine): its callback never runs.
 * Only before the callback has started. Loop thread. */
void conncheck_cancel(conncheck_job **job);

/* ---- names (pure: no DNS, any thread) ---- */

/* name as a list zone or RHSBL domain is asked (see the top): into out
 * (size bytes; CONNCHECK_NAME_MAX + 1 always do). Returns 0, or -1 when
 * it is no such name or out is too small. Validates configured zones
 * too. */
int conncheck_name_normalize(const char *name, char *out, size_t size);

/* The DNSBL name of addr under zone: "d.c.b.a.zone" for IPv4 (also an
 * IPv4-mapped IPv6 address), 32 nibbles "x.x....zone" for IPv6 (RFC 5782
 * 2.1, 2.4), zone normalised as conncheck_name_normalize does. Into out
 * (size bytes). Returns 0, or -1 for another family, a zone that is no
 * name, a name over 253 bytes or out too small (then out is "" when size
 * > 0). */
int conncheck_reverse_name(const struct sockaddr *addr, const char *zone, char *out, size_t size);

#endif
