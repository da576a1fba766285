/* etcd.h: a small synchronous etcd v3 client (the JSON gateway, /v3/...).
 *
 * One etcd_client owns one libcurl easy handle with a kept-alive connection.
 * Every call blocks: connect timeout 1 s, request timeout 3 s (the watch
 * stream has no overall timeout, but its first answer must come within
 * 3 s). Keys and values travel base64-encoded; this module hides that, and
 * the gateway's quirks (int64 fields as JSON strings, default-valued
 * fields omitted).
 *
 * Security (docs/security.md, "etcd"): an etcd_conf names the CA that
 * signed etcd's certificate (https URLs), the client certificate etcd's
 * --client-cert-auth asks for, and an etcd user. With a user, the client
 * authenticates (POST /v3/auth/authenticate) before its first request and
 * sends the token as "Authorization: <token>"; a token etcd no longer
 * knows (it expired, or etcd restarted: simple tokens live in etcd's
 * memory) is replaced once per request by authenticating again; a
 * request refused because etcd's users or roles changed while it was in
 * flight is sent again as it is. Tokens are shared through an etcd_tokens
 * object, so a daemon's many clients cost etcd one authentication (a
 * bcrypt check and a raft entry), not one per client; an authentication
 * may take 10 s, and after etcd refused the user or password the calls
 * fail at once for 5 s before it is asked again.
 *
 * Thread safety: NONE per handle. A handle may move between threads but
 * must never be used by two threads at once; use one handle per thread (or
 * a mutex around a shared one). An etcd_tokens is thread-safe.
 *
 * Return convention: enum mail_error (lib/mail-error.h):
 *   MAIL_OK               success
 *   MAIL_ERR_UNAVAILABLE  etcd unreachable, timed out, TLS failed, or
 *                         answered 5xx
 *   MAIL_ERR_NOT_FOUND    no such key / nothing deleted / unknown lease
 *   MAIL_ERR_EXISTS       a compare-and-swap failed
 *   MAIL_ERR_PERM         etcd refused our user or password, wants a user
 *                         we do not have, or our user may not touch that key
 *   MAIL_ERR_PARAMS       etcd rejected the request (HTTP 4xx)
 *   MAIL_ERR_INTERNAL     etcd answered something we cannot parse
 * Details of every failure are logged (svc=etcd), and the last one is kept
 * as one line (etcd_client_last_error).
 */
#ifndef MAIL_ETCD_H
#define MAIL_ETCD_H

#include <stddef.h>
#include <stdint.h>

typedef struct etcd_client etcd_client;

/* Counters shared by every client of one process (or of one daemon): the
 * owner (the daemon's context) keeps it, hands it to each client with
 * etcd_client_set_stats(), and reads it with etcd_stats_writes() from any
 * thread. Clients on any thread update it atomically; it must outlive
 * every client it was given to. Zero-initialise it. */
typedef struct etcd_stats {
	uint64_t writes; /* successful puts, deletes that deleted, successful
			  * txns: each made one etcd revision. Atomic: use
			  * etcd_stats_writes(). */
} etcd_stats;

/* The current count (atomic load; any thread). */
uint64_t etcd_stats_writes(const etcd_stats *stats);

/* The token of one etcd user, shared by every client of a process that
 * connects as that user (the daemon's context owns it). Thread-safe. */
typedef struct etcd_tokens etcd_tokens;

etcd_tokens *etcd_tokens_create(void);
/* Wipes the token. Every client given t must be destroyed first. NULLs
 * *t; NULL is fine. */
void etcd_tokens_destroy(etcd_tokens **t);
/* Authentications made through t so far (any thread). */
uint64_t etcd_tokens_authentications(const etcd_tokens *t);

/* How to reach etcd and who to be there. The strings are borrowed by the
 * call that takes the conf (etcd_client_create copies them). */
typedef struct etcd_conf {
	const char *url;       /* "https://127.0.0.1:23790", or several members
				* of one cluster separated by commas */
	const char *ca_file;   /* PEM CAs for etcd's server certificate (https);
				* NULL: the system's */
	const char *cert_file; /* client certificate (PEM; etcd's
				* --client-cert-auth), NULL: none. It must
				* carry no CN: the gateway refuses those */
	const char *key_file;  /* its private key (PEM), with cert_file */
	const char *user;      /* etcd user; NULL: no authentication */
	const char *password;  /* its password, with user */
	etcd_tokens *tokens;   /* borrowed, shared by the clients of this conf;
				* NULL: each client authenticates on its own */
} etcd_conf;

/* A heap copy of conf in one allocation (tokens stays borrowed). Free with
 * etcd_conf_free(), which wipes the password and NULLs *conf. NULL in, NULL
 * out. */
etcd_conf *etcd_conf_dup(const etcd_conf *conf);
void etcd_conf_free(etcd_conf **conf);

/* Read an etcd password from path: its first line, without the newline.
 * Refuses an empty one and a file that others may read (mode o+r). Returns
 * 0 and *password_r (heap; wipe with xfree_secret(p, strlen(p))), or -1
 * with *error_r (static text). */
int etcd_conf_read_password(const char *path, char **password_r, const char **error_r);

/* A client for conf (copied; conf->tokens must outlive the client). A
 * request that cannot reach the member in use is retried on the next one.
 * Never fails; nothing touches the network until the first call. Free
 * with etcd_client_destroy(), which NULLs *client. */
etcd_client *etcd_client_create(const etcd_conf *conf);
void etcd_client_destroy(etcd_client **client);
/* Check that etcd is reachable over the conf's TLS and takes its user and
 * password (authenticates now when there is a user; else reads etcd's
 * status). MAIL_OK, or an error with *error_r = the client's last error
 * line (valid until the next call on c). */
int etcd_client_check(etcd_client *c, const char **error_r);
/* One line on the last failed call ("" when none failed): what etcd or
 * the transport said, e.g. "https://127.0.0.1:23790/v3/auth/authenticate:
 * etcd refused user \"frontend\" (wrong user name or password)". Valid until
 * the next call. */
const char *etcd_client_last_error(const etcd_client *c);
/* Count c's writes in stats (borrowed; NULL: count nothing, the default).
 * Call before the first request, from the thread that uses c. */
void etcd_client_set_stats(etcd_client *c, etcd_stats *stats);

/* One key-value pair. key and value are heap copies, NUL-terminated (the
 * value may also hold NULs: value_len is authoritative). */
typedef struct etcd_kv {
	char *key;
	char *value;
	size_t value_len;
	int64_t create_revision;
	int64_t mod_revision;
	int64_t lease;
} etcd_kv;

/* Free an array of n kvs returned by etcd_kv_range_prefix(). NULL is fine. */
void etcd_kvs_free(etcd_kv *kvs, size_t n);

/* Put key = value. lease = 0 for none, else a lease ID from
 * etcd_lease_grant() (MAIL_ERR_NOT_FOUND if that lease is gone). */
int etcd_kv_put(etcd_client *c, const char *key, const void *value, size_t len, int64_t lease);

/* Get one key. On MAIL_OK *value_r is a NUL-terminated heap copy (caller
 * frees) with its length in *len_r; mod_revision_r / create_revision_r may be
 * NULL. MAIL_ERR_NOT_FOUND when absent. */
int etcd_kv_get(etcd_client *c, const char *key, char **value_r, size_t *len_r,
		int64_t *mod_revision_r, int64_t *create_revision_r);

/* Every key starting with prefix, sorted by key, read at one consistent
 * revision (paged internally, 500 keys per request). at_revision = 0 reads
 * the latest; otherwise that revision (MAIL_ERR_NOT_FOUND if compacted).
 * On MAIL_OK *kvs_r (free with etcd_kvs_free; NULL when *n_r is 0), *n_r and
 * *revision_r (the store revision the read saw; may be NULL) are set. */
int etcd_kv_range_prefix(etcd_client *c, const char *prefix, int64_t at_revision,
			 etcd_kv **kvs_r, size_t *n_r, int64_t *revision_r);

/* For each of the n prefixes, in one read-only transaction (one
 * revision, counted from etcd's index: cheap whatever the values' size):
 * count_r[i] = the keys under prefixes[i]; *revision_r (may be NULL) =
 * that revision. count_r is the caller's, n long. (etcd's count ignores
 * min/max_mod_revision filters, so there is no cheap "modified since".) */
int etcd_kv_prefix_counts(etcd_client *c, const char *const *prefixes, size_t n,
			  int64_t *count_r, int64_t *revision_r);

/* Delete one key. MAIL_ERR_NOT_FOUND when it did not exist. */
int etcd_kv_delete(etcd_client *c, const char *key);
/* Delete every key under prefix; *deleted_r (may be NULL) gets the count.
 * MAIL_OK even when nothing matched. */
int etcd_kv_delete_prefix(etcd_client *c, const char *prefix, int64_t *deleted_r);

/* Compare-and-swap: put key = value only if key does not exist.
 * MAIL_ERR_EXISTS when it does. lease as in etcd_kv_put. */
int etcd_kv_create(etcd_client *c, const char *key, const void *value, size_t len, int64_t lease);
/* Compare-and-swap: put key = value only if the key's mod_revision equals
 * mod_revision (0: only if the key does not exist). MAIL_ERR_EXISTS when the
 * key changed (or exists, or vanished) since. On MAIL_OK *new_revision_r
 * (may be NULL) gets the key's new mod_revision. */
int etcd_kv_put_if_mod(etcd_client *c, const char *key, const void *value, size_t len,
		       int64_t mod_revision, int64_t *new_revision_r);

/* Grant a lease of ttl_s seconds; *id_r gets its ID (never 0). */
int etcd_lease_grant(etcd_client *c, int ttl_s, int64_t *id_r);
/* Renew a lease once. MAIL_OK with *ttl_r = remaining seconds (> 0), or
 * MAIL_OK with *ttl_r = 0 when the lease has already expired (its keys are
 * gone: grant a new one). */
int etcd_lease_keepalive(etcd_client *c, int64_t id, int64_t *ttl_r);
/* Revoke a lease (its keys are deleted at once). MAIL_ERR_NOT_FOUND when the
 * lease had already expired. */
int etcd_lease_revoke(etcd_client *c, int64_t id);

/* What POST /v3/maintenance/status says about the member answering. */
typedef struct etcd_member_status {
	int64_t revision;        /* the store's current revision */
	int64_t db_size;         /* bytes of the backend file (what the quota
				  * is checked against) */
	int64_t db_size_in_use;  /* bytes holding live data (the rest is free
				  * pages that only a defrag gives back) */
	int64_t raft_index;
} etcd_member_status;

/* Status of the member in use. MAIL_OK with *status_r filled. */
int etcd_maintenance_status(etcd_client *c, etcd_member_status *status_r);

enum etcd_event_type { ETCD_EVENT_PUT = 0, ETCD_EVENT_DELETE = 1 };

typedef struct etcd_event {
	enum etcd_event_type type;
	const char *key;    /* NUL-terminated */
	const char *value;  /* NUL-terminated; "" for deletes */
	size_t value_len;
	int64_t mod_revision; /* for a delete: the revision of the delete */
} etcd_event;

/* Called once per event, in revision order, on the watching thread. The
 * event's strings are valid only during the call. Return 0 to go on, nonzero
 * to end the watch. */
typedef int etcd_watch_cb(const etcd_event *event, void *arg);

/* Watch keys in [key, range_end) (range_end NULL: every key with prefix
 * key) from start_revision (0: from now; otherwise history is replayed from
 * there). Blocks, calling cb per event, until:
 *   - cb returns nonzero                      -> MAIL_OK
 *   - *stop becomes nonzero (stop may be NULL; another thread sets it with
 *     __atomic_store_n; it is polled about once a second, so a stop takes
 *     up to ~1 s)                             -> MAIL_OK
 *   - the connection fails or etcd closes it, or etcd does not confirm
 *     the watch within 3 s                    -> MAIL_ERR_UNAVAILABLE
 *   - etcd cancels the watch because our user may not read the range, or
 *     we have no user and etcd wants one      -> MAIL_ERR_PERM
 *   - etcd cancels it otherwise (start_revision was compacted)
 *                                             -> MAIL_ERR_NOT_FOUND
 * A watch canceled for an unknown token authenticates again and is
 * started once more (nothing was delivered yet).
 * Meant to run on a thread of its own, with a handle of its own. */
int etcd_watch(etcd_client *c, const char *key, const char *range_end, int64_t start_revision,
	       etcd_watch_cb *cb, void *arg, const int *stop);

/* ---- a pool of clients for pool jobs ------------------------------------
 * A job on libuv's thread pool that talks to etcd takes a client here and
 * gives it back, so that its connection (TLS handshake, authentication)
 * serves the next job instead of being made anew each time. Jobs may run
 * at once: each gets a client of its own (the pool makes one when none is
 * idle) and at most `keep` idle clients are kept. Any thread. */
typedef struct etcd_pool etcd_pool;
/* conf is copied; stats borrowed (may be NULL), set on every client. */
etcd_pool *etcd_pool_create(const etcd_conf *conf, etcd_stats *stats, unsigned keep);
/* Destroy the pool and its idle clients; every taken client must have
 * been given back. NULLs *pool; NULL is fine. */
void etcd_pool_destroy(etcd_pool **pool);
etcd_client *etcd_pool_take(etcd_pool *pool);
/* Give c back (NULLs *c): kept for the next take, or destroyed when the
 * pool already keeps `keep` idle ones. */
void etcd_pool_give(etcd_pool *pool, etcd_client **c);

#endif
