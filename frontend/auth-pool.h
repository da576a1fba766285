/* auth-pool.h: credential checks off the loop's shared thread pool, with a
 * cache, for IMAP LOGIN/AUTHENTICATE and SMTP AUTH.
 *
 * argon2id costs ~100 ms of CPU and 64 MiB per check. The pool runs
 * directory_authenticate() and directory_user_scram() on AUTH_POOL_THREADS
 * threads of its own, so a storm of logins queues here and never delays the
 * loop's libuv pool (recipient lookups, the directory for the MX).
 * Results come back on the loop thread (uv_async), never inside the call.
 *
 * The cache: a successful (user, password) is remembered for ttl_ms
 * (default 60 s) under HMAC-SHA-256(key, user NUL password): never the
 * password. Within the TTL argon2id runs at most once per pair and node; a
 * wrong password is never cached (and the penalties of auth-guard.h slow
 * its repetition). A password change takes effect on other sessions after
 * at most the TTL. A cached password still asks the directory whether the
 * user may log in now (directory_user_active: two reads, no hashing), so
 * a disabled or deleted user, or a suspended tenant, is refused at once.
 * AUTH_POOL_CACHE entries, the oldest of a slot replaced.
 *
 * Loop thread only (the pool's threads touch only their jobs).
 */
#ifndef MAIL_AUTH_POOL_H
#define MAIL_AUTH_POOL_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "directory.h"
#include "sasl.h"

#define AUTH_POOL_THREADS 2u
#define AUTH_POOL_TTL_MS 60000u
#define AUTH_POOL_CACHE 4096u
#define AUTH_POOL_QUEUE_MAX 1024u /* waiting checks; more fail UNAVAILABLE */

/* status: MAIL_OK (user: canonical address; keys for a SCRAM lookup),
 * MAIL_ERR_PERM (wrong password, no such user, no SCRAM keys), else a
 * temporary failure. */
typedef void auth_pool_cb(int status, const char *user, const struct sasl_scram_keys *keys,
			  void *arg);

typedef struct auth_pool auth_pool;

/* key: >= 16 bytes (the frontends' secret); ttl_ms 0: AUTH_POOL_TTL_MS.
 * dir is borrowed and must outlive the pool. */
auth_pool *auth_pool_start(uv_loop_t *loop, directory *dir, const uint8_t *key, size_t key_len,
			   unsigned ttl_ms);
/* Stop the threads (a check in progress finishes first; checks not
 * started fail MAIL_ERR_UNAVAILABLE), then free. Callbacks still due run
 * before this returns. NULLs *pool. */
void auth_pool_stop(auth_pool **pool);

void auth_pool_password(auth_pool *pool, const char *user, const char *password,
			auth_pool_cb *cb, void *arg);
void auth_pool_scram(auth_pool *pool, const char *user, auth_pool_cb *cb, void *arg);

/* Counters (metrics, tests). */
struct auth_pool_stats {
	uint64_t checks;      /* argon2id (or SCRAM key) lookups run */
	uint64_t cache_hits;
	uint64_t refused;     /* the queue was full */
};
void auth_pool_get_stats(const auth_pool *pool, struct auth_pool_stats *stats_r);

#endif
