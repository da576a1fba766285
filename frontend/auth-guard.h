/* auth-guard.h: authentication failure penalties and the cluster-wide
 * block list, as Dovecot's auth_penalty and fail2ban do.
 *
 * Per client address, over a sliding window (window_ms, default 10 min):
 *   - after n failed authentications, each further attempt from that
 *     address waits min(2^n s, max_delay_ms) before it is even checked
 *     (2, 4, 8, 15, 15 ... s); a success does not clear the count (an
 *     attacker with one account must not reset it);
 *   - the block_after-th failure (default 20) blocks the address for
 *     block_ttl_s (default 1 h) on every frontend: a key
 *     /mail/v1/blocks/<ip> {"reason":"auth_failures","by":<node>,"at":<ms>}
 *     under an etcd lease of that TTL, written from the thread pool.
 * Every frontend reads /mail/v1/blocks/ every AUTH_GUARD_POLL_MS and
 * refuses blocked addresses at connect. `mailctl block add|list|remove`
 * edits the same keys (an operator's block may have no lease: permanent).
 * Trusted networks are never exempt from any of this.
 *
 * The failure table is bounded (AUTH_GUARD_SETS x AUTH_GUARD_WAYS
 * addresses; the stalest entry of a full set is replaced).
 *
 * Loop thread only (the etcd calls run on the loop's thread pool).
 */
#ifndef MAIL_AUTH_GUARD_H
#define MAIL_AUTH_GUARD_H

#include <stdint.h>

#include <uv.h>

#include "security-keys.h"

#define AUTH_GUARD_KEY_PREFIX BLOCK_KEY_PREFIX
#define AUTH_GUARD_POLL_MS 2000u
#define AUTH_GUARD_SETS 4096u
#define AUTH_GUARD_WAYS 4u
#define AUTH_GUARD_MAX_DELAY_MS 15000u
#define AUTH_GUARD_WINDOW_MS 600000u
#define AUTH_GUARD_BLOCK_AFTER 20u
#define AUTH_GUARD_BLOCK_TTL_S 3600u

struct etcd_conf;
struct etcd_stats;

struct auth_guard_settings {
	const struct etcd_conf *etcd; /* NULL: local penalties only, no blocks (copied) */
	const char *node_id;       /* "by" of the blocks it writes */
	unsigned max_delay_ms;     /* 0: AUTH_GUARD_MAX_DELAY_MS */
	unsigned window_ms;        /* 0: AUTH_GUARD_WINDOW_MS */
	unsigned block_after;      /* 0: AUTH_GUARD_BLOCK_AFTER */
	unsigned block_ttl_s;      /* 0: AUTH_GUARD_BLOCK_TTL_S */
	struct etcd_stats *stats;  /* count etcd writes (borrowed; may be NULL) */
};

typedef struct auth_guard auth_guard;

auth_guard *auth_guard_start(uv_loop_t *loop, const struct auth_guard_settings *set);
/* Stop polling; memory goes once the pool's jobs are done (keep running
 * the loop). NULLs *g. */
void auth_guard_stop(auth_guard **g);

/* 1 when ip is blocked (cluster-wide, as last read, or by this frontend). */
int auth_guard_blocked(const auth_guard *g, const char *ip);
/* How long to hold an authentication attempt from ip before checking it. */
unsigned auth_guard_delay_ms(auth_guard *g, const char *ip);
/* An attempt from ip failed: counts, and may block the address. */
void auth_guard_failure(auth_guard *g, const char *ip);
/* Failures of ip in the current window (tests, logs). */
unsigned auth_guard_failures(auth_guard *g, const char *ip);
/* Number of addresses blocked as last read (metrics). */
unsigned auth_guard_blocked_count(const auth_guard *g);
/* Tests: the clock in ms (0: the loop's). */
void auth_guard_set_now(auth_guard *g, uint64_t now_ms);

#endif
