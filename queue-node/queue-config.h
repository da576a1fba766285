/* queue-config.h: the outbound settings a queue node needs, cached from etcd
 * on its loop (docs/outbound.md, docs/outbound-dkim.md).
 *
 * What is cached (written by mailctl: cluster/mailctl-relay.c,
 * cluster/mailctl-dkim.c):
 *
 *   /mail/v1/secrets/relay/default            {"url","user","password","at"}
 *   /mail/v1/secrets/relay/tenants/<domain>   the same, one tenant's relay
 *   /mail/v1/transport/<domain>               {"url","at"}
 *   /mail/v1/secrets/dkim/<domain>/<selector> DKIM key records (dkim-keys.h)
 *
 * url is an smtpc URL (lib/smtpc/smtpc-url.h); user and password are both
 * there (AUTH) or both absent; "at" and unknown fields are ignored, so the
 * records can grow. A record that does not fit these rules (not JSON, a
 * bad URL, a domain that is not a lowercase domain, a user without a
 * password, a DKIM record dkim_record_parse() refuses, ...) is skipped:
 * lookups behave as if it were absent, and it is logged once per change
 * of that key (svc=queue event=config_record_skipped key=... error=...;
 * never the value: it may hold a password or a private key).
 *
 * Refresh. A job on libuv's thread pool reads the four prefixes
 * (relays, transports, TLS policies, DKIM keys) at one etcd revision (the first read's: one consistent view), parses them
 * there, and the loop swaps the new snapshot in when the job ends. One
 * job at a time; the next one starts refresh_ms after the previous ended
 * (the first at once when created). The job side owns one etcd client,
 * made at the first job and kept for the next ones (its connection and
 * token are reused). A failed refresh keeps the last good
 * snapshot; the first failure of a streak is logged (event=
 * config_refresh_failed error=<mail_error name> detail=<etcd's line>), the
 * end of the streak too (event=config_refresh_recovered failures=N). A
 * snapshot whose content differs from the previous one is logged as
 * event=config_loaded with its counts.
 *
 * Lookups (queue_config_route, queue_config_dkim_keys) are synchronous
 * reads of the current snapshot: they never wait on etcd. What they see
 * may be up to refresh_ms (plus one etcd read) old.
 *
 * Secrets. Relay passwords and DKIM records are kept in buffers that are
 * wiped when freed (OPENSSL_cleanse, dkim_secret_free), and so are the
 * values the etcd client returned to us. Copies we do not own are not
 * wiped: the etcd client's receive buffers and jansson's while it parses a
 * relay record (dkim-keys.h says the same of DKIM records). Passwords are
 * never logged.
 *
 * Threads: every function below is for the loop thread of the loop given
 * to queue_config_create(); only the refresh job runs elsewhere (and
 * touches nothing the loop reads until the loop swaps its result in).
 */
#ifndef MAIL_QUEUE_CONFIG_H
#define MAIL_QUEUE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "dkim-keys.h"
#include "etcd.h"
#include "smtpc-url.h"

#define QUEUE_CONFIG_RELAY_DEFAULT_KEY "/mail/v1/secrets/relay/default"
#define QUEUE_CONFIG_RELAY_TENANTS_PREFIX "/mail/v1/secrets/relay/tenants/"
#define QUEUE_CONFIG_TRANSPORT_PREFIX "/mail/v1/transport/"
/* /mail/v1/tls-policy/<domain> {"policy":"none|may|encrypt|verify","at":ms}:
 * the TLS policy toward that destination's MXs (mailctl tls-policy). */
#define QUEUE_CONFIG_TLS_POLICY_PREFIX "/mail/v1/tls-policy/"
/* (the DKIM prefix is DKIM_STORE_PREFIX, dkim-keys.h) */

/* Tunables (STYLE.md rule 15); queue_config_settings_default() fills the
 * defaults and queue_config_settings_check() enforces the ranges. */
struct queue_config_settings {
	/* Time from the end of one etcd read to the start of the next.
	 * min 100, max 3600000, default 10000 ms. */
	uint32_t refresh_ms;
};

#define QUEUE_CONFIG_REFRESH_MS_DEFAULT 10000u
#define QUEUE_CONFIG_REFRESH_MS_MIN 100u
#define QUEUE_CONFIG_REFRESH_MS_MAX 3600000u

void queue_config_settings_default(struct queue_config_settings *set);
/* Returns 0, or -1 with *error_r (static text naming the bad setting). */
int queue_config_settings_check(const struct queue_config_settings *set, const char **error_r);

typedef struct queue_config queue_config;

/* A cache on loop, reading etcd through conf (copied, with its strings;
 * conf->tokens stays borrowed and must outlive the cache and its last
 * job). set is copied; NULL: the defaults. The first refresh starts at
 * once (on the next loop iteration). The refresh timer does not keep the
 * loop alive (uv_unref); a running job does, as any uv_work_t.
 * Returns 0 with *cfg_r, or -1 when set fails queue_config_settings_check()
 * (call it for the reason). */
int queue_config_create(uv_loop_t *loop, const etcd_conf *conf,
			const struct queue_config_settings *set, queue_config **cfg_r);

/* Stop refreshing and free; NULLs *cfg (NULL is fine). May be called with
 * a refresh job running, also from a queue_config_refresh_cb: the job
 * finishes on its own and its completion frees what it holds (the etcd
 * client, the snapshot it read). Callbacks of queue_config_refresh_now()
 * not yet called are never called. Run the loop afterwards until it has
 * nothing left (the timer closes asynchronously, the job ends) before
 * uv_loop_close(). */
void queue_config_destroy(queue_config **cfg);

/* status: MAIL_OK when the read succeeded and its snapshot is the current
 * one now; else the etcd error (router/etcd.h; the previous snapshot
 * stays). Called from the loop. */
typedef void queue_config_refresh_cb(int status, void *arg);

/* Refresh now, ahead of the timer: for the first load at start and for
 * tests. The read that answers starts after this call (a job already
 * running is let finish, then another one runs), so a change made in etcd
 * before the call is seen. cb (NULL: none) runs once, later, from the
 * loop, never from inside this call. Several calls while one job runs
 * share the next read. */
void queue_config_refresh_now(queue_config *cfg, queue_config_refresh_cb *cb, void *arg);

/* 1 once a snapshot was loaded (a refresh succeeded at least once), else 0.
 * Until then route answers -1 and no message is signed. */
int queue_config_ready(const queue_config *cfg);

/* Records the current snapshot skipped as malformed (see the top of this
 * file), for tests and metrics. 0 before the first load. */
size_t queue_config_skipped(const queue_config *cfg);

/* ---- routing ------------------------------------------------------------------ */

/* What mailctl accepts: a user of 1..255 bytes, a password of 1..1024. */
#define QUEUE_ROUTE_USER_MAX 255u
#define QUEUE_ROUTE_PASSWORD_MAX 1024u

/* A next hop other than the MX. Self-contained (fixed buffers, no pointer
 * into the cache): it stays valid across refreshes and after the cache is
 * destroyed. The password is a secret: clear the route with
 * queue_route_clear() when done (it wipes it), and never log it. */
struct queue_route {
	struct smtpc_url url;
	char user[QUEUE_ROUTE_USER_MAX + 1];         /* "" no AUTH */
	char password[QUEUE_ROUTE_PASSWORD_MAX + 1]; /* "" no AUTH */
	/* which rule matched: "transport", "tenant_relay" or "relay" (static
	 * strings; for log lines) */
	const char *rule;
};

/* Where mail from sender_domain to rcpt_domain goes; first match wins:
 *   1. the transport of rcpt_domain     (rule "transport"; no AUTH: user
 *                                        and password are "")
 *   2. the relay of sender_domain       (rule "tenant_relay")
 *   3. the cluster's default relay      (rule "relay")
 * Domains are matched exactly, after ASCII lowercasing (no trailing-dot or
 * parent-domain matching); sender_domain may be NULL or "" (the null
 * sender: no tenant relay), rcpt_domain too (no transport).
 * Returns 1 with *r filled, 0 when none applies (*r zeroed: use the MX of
 * rcpt_domain), or -1 when no snapshot was loaded yet (queue_config_ready()
 * is 0: defer, do not guess; *r zeroed). */
int queue_config_route(const queue_config *cfg, const char *sender_domain,
		       const char *rcpt_domain, struct queue_route *r);

/* Wipe r's password and zero r. */
void queue_route_clear(struct queue_route *r);

/* The TLS policy set for destination domain (an enum smtpc_tls_policy), or
 * -1 when none is set (or nothing is loaded yet): the default applies. */
int queue_config_tls_policy(const queue_config *cfg, const char *domain);

/* ---- DKIM ----------------------------------------------------------------------- */

/* The keys that sign mail of domain (ASCII-lowercased first), chosen by
 * dkim_store_select() from the cached records of that domain: at most one
 * per algorithm, RSA first, copied into keys_r[0..n) (room for
 * DKIM_ALG_COUNT_). Returns n; 0 when the domain has no active key, is not
 * a domain, or no snapshot was loaded yet. Each key is the caller's: clear
 * it with dkim_key_clear() (wipes the PEM). */
size_t queue_config_dkim_keys(const queue_config *cfg, const char *domain,
			      struct dkim_key *keys_r);

#endif
