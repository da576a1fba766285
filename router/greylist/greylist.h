/* greylist.h: greylisting kept cluster-wide in etcd (public contract;
 * library `mailgreylist`, issue 11 item 5).
 *
 * A triplet is (client network, envelope sender, recipient). Its first
 * attempt is deferred (451 4.7.1); a retry after the tenant's delay and
 * within the retry window passes, and the triplet then passes at once for
 * passed_ttl_s after its last pass. State lives in etcd, so every SMTP
 * frontend agrees and a frontend restart forgets nothing.
 *
 * Decisions
 *
 * - Keys. Everything sits under GREYLIST_KEY_PREFIX, "/mail/v1/smtp/
 *   greylist/", not "/mail/v1/greylist/": every router and controller
 *   watches [/mail/v1/alive/, /mail/v1/ring0) (router-private.h), and a
 *   key starting "greylist" would sort inside it, so every triplet written
 *   by any MX would be streamed to every node of the cluster. "smtp/"
 *   sorts after "ring0". One prefix also makes one etcd role permission
 *   (the frontend user needs readwrite on it: docs/security.md).
 *     triplets/<64 hex>       {"first":ms,"passed":ms-or-0}
 *     domains/<domain>        {"noted":ms}
 *     leases/<ttl_s>/<start>  "<lease id>" (the shared leases, below)
 *   Values are JSON objects; readers ignore fields they do not know.
 *
 * - The triplet is SHA-256 over net NUL sender NUL rcpt, in hex. No
 *   address is stored in clear. NUL separates because '|' is legal in a
 *   local part (RFC 5321 atext): "a|b"+"c" and "a"+"b|c" must differ.
 *   net is the client's /24 (IPv4, also IPv4-mapped IPv6) or /64 (IPv6),
 *   written "192.0.2.0/24", "2001:db8::/64": a sender's farm of outgoing
 *   hosts in one network retries from another address of it. Addresses
 *   are lowercased. The sender (never the recipient) is also normalised as
 *   postgrey does, so that a mailing list's per-message envelope does not
 *   make every message a new triplet: a BATV tag ("prvs=TAG=local") and a
 *   "+extension" are removed from its local part, and each run of digits
 *   standing alone between non-word characters becomes '#'
 *   ("bounce-1234-x@l.test" -> "bounce-#-x@l.test"). The null sender is "".
 *
 * - Decision per triplet (now is the caller's wall clock, ms):
 *     unknown                          -> created (a create-if-absent, so two
 *                                         frontends racing agree) -> DEFER new
 *     pending, younger than delay      -> DEFER early (the remaining time)
 *     pending, within the retry window -> PASS retried, marked passed
 *     pending, older than the window   -> started over (first = now),
 *                                         DEFER expired
 *     passed within passed_ttl_s       -> PASS known (refreshed: below)
 *     passed longer ago                -> started over, DEFER expired
 *   The retry window runs from the first attempt for retry_window_s, but
 *   never ends sooner than GREYLIST_RETRY_SPAN_MIN_S after the delay (a
 *   tenant may set a delay of up to a day). Writes after a read are plain
 *   puts: two frontends reading the same record decide the same way and
 *   write the same kind of record, so the last one winning changes nothing.
 *   A pass is written again (a "refresh", which also moves the key to the
 *   current lease) at most once per UTC day per triplet: a busy sender
 *   costs etcd one write a day, not one per message.
 *
 * - Expiry by etcd leases, one lease per time bucket, never one per key:
 *     pending triplets  bucket 1 h, TTL = window_max + 1 h (26 h by default;
 *                       window_max = max(retry_window_s, GREYLIST_DELAY_MAX
 *                       + GREYLIST_RETRY_SPAN_MIN_S)): a key written in
 *                       the bucket lives between 25 h and 26 h.
 *     passed triplets   bucket 1 day, TTL = passed_ttl_s + 1 day (36 d):
 *     and known domains a key lives 35 to 36 days after its last refresh.
 *   The lease of a bucket is shared by the whole cluster, not only by one
 *   greylist object: the first frontend needing it grants it and registers
 *   it under leases/<ttl_s>/<bucket start, s> (that key under the lease
 *   itself, so it goes with it); the others read it there. So a frontend
 *   that restarts in a loop does not leave a 36-day lease behind per
 *   restart, and the cluster holds about 26 + 36 leases whatever its size.
 *   Each object caches its current two leases (mutex-protected); a put
 *   that etcd refuses for an unknown lease (revoked, expired) drops the
 *   cached one, resolves the bucket again and is retried once.
 *   etcd 3.4 without lease checkpointing gives every lease its full TTL
 *   again when a leader takes over (a restart included), so keys may live
 *   longer than the above: the decision compares the stored times itself
 *   and never trusts a key's mere existence. Frontends' clocks are
 *   assumed NTP-synced; a skew of minutes only eats into the buckets'
 *   hour of slack.
 *
 * - Known domains: a domain that once passed greylisting with an SPF or
 *   DKIM pass for it (the caller notes it, greylist_domain_note) lets
 *   later senders authenticated for that domain skip greylisting
 *   (greylist_domain_known). Domains are stored in clear: they are not
 *   personal data, and an operator can read and delete them.
 *
 * - A cache of passes in each object (triplets that passed, known
 *   domains; bounded by cache_entries, each entry kept cache_ttl_s), so a
 *   busy sender does not cost an etcd read per recipient. Pending
 *   triplets and unknown domains are never cached: another frontend may
 *   pass or note them at any moment.
 *
 * - An etcd outage never blocks mail: every call that cannot get an
 *   answer returns MAIL_ERR_UNAVAILABLE (the caller lets the message
 *   through and logs it), and after such a failure the object does not
 *   ask etcd again for unavailable_backoff_ms, so an etcd that hangs costs
 *   one request timeout (etcd.h: 3 s) per backoff period, not one per
 *   recipient. Cached passes still answer meanwhile.
 *
 * etcd round trips per call (the lease lookup aside, which costs 1 (read
 * the registry) or 3 (read, grant, register) per bucket and object):
 *   check, cached pass                0
 *   check, new triplet                2 (get, create)
 *   check, early retry                1 (get)
 *   check, first pass                 2 (get, put)
 *   check, known pass, not cached     1 (get), +1 put once a day
 *   domain_known                      0 cached, else 1
 *   domain_note                       0 cached today, else 1 (get), +1 put
 *                                     once a day
 *
 * Threads: every call blocks on etcd (the libuv thread pool, never the
 * loop thread). A greylist object is thread-safe: a pool of etcd clients
 * (one per call in flight), mutexes around the cache and the leases,
 * atomic counters.
 *
 * Returns: enum mail_error (lib/mail-error.h). Every etcd failure of any
 * kind (unreachable, timeout, permission, garbage) is logged
 * (svc=greylist event=greylist_etcd_failed) and returned as
 * MAIL_ERR_UNAVAILABLE.
 */
#ifndef MAIL_GREYLIST_H
#define MAIL_GREYLIST_H

#include <stdint.h>

/* Where the keys live (see above). */
#define GREYLIST_KEY_PREFIX "/mail/v1/smtp/greylist/"
#define GREYLIST_KEY_TRIPLETS GREYLIST_KEY_PREFIX "triplets/"
#define GREYLIST_KEY_DOMAINS GREYLIST_KEY_PREFIX "domains/"
#define GREYLIST_KEY_LEASES GREYLIST_KEY_PREFIX "leases/"

/* The delay a call may ask for, seconds (the tenant setting
 * greylist_delay, router/directory.h, has the same range). */
#define GREYLIST_DELAY_MIN 1u
#define GREYLIST_DELAY_MAX 86400u
/* A retry window never ends sooner than this after the delay. */
#define GREYLIST_RETRY_SPAN_MIN_S 3600u
/* Longest sender or recipient taken (bytes; RFC 5321 4.5.3.1: 64 local +
 * 255 domain + '@'); longer is MAIL_ERR_PARAMS. */
#define GREYLIST_ADDRESS_MAX 320u
/* Hex digits of a triplet's name (SHA-256). */
#define GREYLIST_TRIPLET_HEX_LEN 64u

typedef struct greylist greylist;

/* ---- settings (every row: default, min, max; 0 takes the default) ---- */

struct etcd_stats;
struct greylist_settings {
	/* How long after the first attempt a retry passes (the end of the
	 * window; it starts after the delay). */
	unsigned retry_window_s;
#define GREYLIST_RETRY_WINDOW_S_DEFAULT 86400u
#define GREYLIST_RETRY_WINDOW_S_MIN 3600u
#define GREYLIST_RETRY_WINDOW_S_MAX (7u * 86400u)
	/* How long a passed triplet keeps passing after its last pass, and a
	 * noted domain stays known after its last note. */
	unsigned passed_ttl_s;
#define GREYLIST_PASSED_TTL_S_DEFAULT (35u * 86400u)
#define GREYLIST_PASSED_TTL_S_MIN 86400u
#define GREYLIST_PASSED_TTL_S_MAX (365u * 86400u)
	/* Passes (triplets and domains) cached in the object; 32 bytes
	 * each, allocated at create (rounded up to sets of 4). */
	unsigned cache_entries;
#define GREYLIST_CACHE_ENTRIES_DEFAULT 10000u
#define GREYLIST_CACHE_ENTRIES_MIN 16u
#define GREYLIST_CACHE_ENTRIES_MAX 1000000u
	/* How long a cached pass answers without etcd. Another frontend's
	 * change is not seen for this long (only a start-over of a triplet
	 * passed over passed_ttl_s ago can be such a change). */
	unsigned cache_ttl_s;
#define GREYLIST_CACHE_TTL_S_DEFAULT 300u
#define GREYLIST_CACHE_TTL_S_MIN 1u
#define GREYLIST_CACHE_TTL_S_MAX 3600u
	/* After a call found etcd unavailable, calls that need etcd fail at
	 * once for this long. */
	unsigned unavailable_backoff_ms;
#define GREYLIST_UNAVAILABLE_BACKOFF_MS_DEFAULT 2000u
#define GREYLIST_UNAVAILABLE_BACKOFF_MS_MIN 1u
#define GREYLIST_UNAVAILABLE_BACKOFF_MS_MAX 60000u
	/* Idle etcd clients kept for the next calls (etcd_pool; calls in
	 * flight beyond it get a client of their own). Match the thread
	 * pool's size (UV_THREADPOOL_SIZE, libuv's default 4). */
	unsigned etcd_clients;
#define GREYLIST_ETCD_CLIENTS_DEFAULT 4u
#define GREYLIST_ETCD_CLIENTS_MIN 1u
#define GREYLIST_ETCD_CLIENTS_MAX 64u
	/* Where the object's etcd writes are counted (etcd.h; borrowed, must
	 * outlive the object); NULL: not counted. */
	struct etcd_stats *etcd_stats;
};

/* A greylist on etcd. conf (how to reach etcd and as whom) is copied, its
 * tokens stay borrowed (etcd.h); s may be NULL (every default). Returns
 * the object, or NULL when a setting is out of its range (logged:
 * event=greylist_setting_invalid names it). Nothing touches etcd until
 * the first call. Free with greylist_destroy(), which NULLs *gl (NULL is
 * fine); no call may be in flight. Destroying revokes nothing: the leases
 * are the cluster's (above). */
struct etcd_conf;
greylist *greylist_create(const struct etcd_conf *conf, const struct greylist_settings *s);
void greylist_destroy(greylist **gl);

/* ---- checks ---------------------------------------------------------- */

enum greylist_action { GREYLIST_PASS = 0, GREYLIST_DEFER = 1 };

enum greylist_reason {
	GREYLIST_REASON_NEW = 0, /* DEFER: first attempt, triplet created */
	GREYLIST_REASON_EARLY,   /* DEFER: retried before the delay ended */
	GREYLIST_REASON_EXPIRED, /* DEFER: not retried within the window, or
				  * last passed over passed_ttl_s ago:
				  * started over as a first attempt */
	GREYLIST_REASON_RETRIED, /* PASS: a retry after the delay (now passed) */
	GREYLIST_REASON_KNOWN,   /* PASS: passed before */
};
/* "new", "early", "expired", "retried", "known" (for log lines and
 * metrics); "unknown" outside the enum. Never NULL. */
const char *greylist_reason_name(enum greylist_reason reason);

struct greylist_verdict {
	enum greylist_action action;
	enum greylist_reason reason;
	/* DEFER: whole seconds until a retry would pass (>= 1); PASS: 0. For
	 * the reply text, not a promise: the delay may change meanwhile. */
	unsigned retry_after_s;
	/* 1: answered by the object's cache, etcd was not asked. */
	int cached;
	/* The triplet's name (lowercase hex; the etcd key ends with it): logs
	 * join on it without showing addresses. */
	char triplet[GREYLIST_TRIPLET_HEX_LEN + 1];
};

/* Greylist one recipient of one transaction. client_ip: the peer's
 * address as text ("192.0.2.7", "2001:db8::1", "::ffff:192.0.2.7");
 * sender: the MAIL FROM address without brackets ("" for the null
 * sender); rcpt: the RCPT TO address (not empty); delay_s: the tenant's
 * delay (GREYLIST_DELAY_MIN..MAX); now_ms: the wall clock (ms since the
 * epoch; tests pass their own). Strings are borrowed for the call.
 * Returns MAIL_OK with *v filled; MAIL_ERR_UNAVAILABLE when etcd did not
 * answer (let the message through; *v is untouched); MAIL_ERR_PARAMS for
 * NULLs, an unparsable address, a string over GREYLIST_ADDRESS_MAX or
 * with control characters, a delay out of range or now_ms <= 0. Blocks
 * (see above); any thread. */
int greylist_check(greylist *gl, const char *client_ip, const char *sender, const char *rcpt,
		   unsigned delay_s, int64_t now_ms, struct greylist_verdict *v);

/* ---- known domains ---------------------------------------------------- */

/* Has domain (any case; a DNS name of at most 253 bytes) been noted within
 * passed_ttl_s? MAIL_OK: yes (a sender that passes SPF, or DKIM with
 * d=domain, may skip greylisting); MAIL_ERR_NOT_FOUND: no;
 * MAIL_ERR_UNAVAILABLE; MAIL_ERR_PARAMS for an invalid domain or
 * now_ms <= 0. Blocks; any thread. */
int greylist_domain_known(greylist *gl, const char *domain, int64_t now_ms);
/* Note that a message authenticated for domain (SPF pass for its MAIL FROM
 * domain, or a DKIM pass with d=domain) passed greylisting. Call it after
 * a GREYLIST_PASS, never after a DEFER: the point is that the domain's
 * mail once proved it retries. DKIM is only known after DATA: an MX that
 * greylists at RCPT can use SPF alone for the skip, and note DKIM domains
 * after DATA for later messages. MAIL_OK, MAIL_ERR_UNAVAILABLE,
 * MAIL_ERR_PARAMS. Blocks; any thread. */
int greylist_domain_note(greylist *gl, const char *domain, int64_t now_ms);

/* ---- metrics ---------------------------------------------------------- */

struct greylist_stats {
	uint64_t checks;         /* greylist_check calls */
	uint64_t deferred;       /* ... that returned DEFER */
	uint64_t passed;         /* ... that returned PASS */
	uint64_t errors;         /* ... that returned an error (so checks =
				  * deferred + passed + errors) */
	uint64_t cache_hits;     /* calls (checks, domain_known, domain_note)
				  * the cache answered without etcd */
	uint64_t etcd_requests;  /* round trips to etcd, of every call */
	uint64_t etcd_failures;  /* ... that failed (unavailable, refused) */
	uint64_t leases_granted; /* leases this object granted */
};
/* A snapshot of the counters (each read atomically; any thread). */
void greylist_stats_get(const greylist *gl, struct greylist_stats *stats_r);

#endif
