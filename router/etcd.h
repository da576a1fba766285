/* etcd.h: a small synchronous etcd v3 client (the JSON gateway, /v3/...).
 *
 * One etcd_client owns one libcurl easy handle with a kept-alive connection.
 * Every call blocks: connect timeout 1 s, request timeout 3 s (the watch
 * stream has no request timeout). Keys and values travel base64-encoded;
 * this module hides that, and the gateway's quirks (int64 fields as JSON
 * strings, default-valued fields omitted).
 *
 * Thread safety: NONE per handle. A handle may move between threads but
 * must never be used by two threads at once; use one handle per thread (or
 * a mutex around a shared one).
 *
 * Return convention: enum mail_error (lib/mail-error.h):
 *   MAIL_OK               success
 *   MAIL_ERR_UNAVAILABLE  etcd unreachable, timed out, or answered 5xx
 *   MAIL_ERR_NOT_FOUND    no such key / nothing deleted / unknown lease
 *   MAIL_ERR_EXISTS       a compare-and-swap failed
 *   MAIL_ERR_PARAMS       etcd rejected the request (HTTP 4xx)
 *   MAIL_ERR_INTERNAL     etcd answered something we cannot parse
 * Details of every failure are logged (svc=etcd).
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

/* url: "http://127.0.0.1:23790" (no trailing slash needed), or several
 * members of one etcd cluster separated by commas; a request that cannot
 * reach the member in use is retried on the next one. Never fails;
 * nothing touches the network until the first call. Free with
 * etcd_client_destroy(), which NULLs *client. */
etcd_client *etcd_client_create(const char *url);
void etcd_client_destroy(etcd_client **client);
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
 *   - the connection fails or etcd closes it  -> MAIL_ERR_UNAVAILABLE
 *   - etcd cancels the watch (e.g. start_revision was compacted)
 *                                             -> MAIL_ERR_NOT_FOUND
 * Meant to run on a thread of its own, with a handle of its own. */
int etcd_watch(etcd_client *c, const char *key, const char *range_end, int64_t start_revision,
	       etcd_watch_cb *cb, void *arg, const int *stop);

#endif
