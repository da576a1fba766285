/* quota-client.h: a user's and its tenant's quota usage, for the
 * daemons that enforce quotas (frontends: SMTP RCPT and DATA, IMAP APPEND,
 * COPY and the QUOTA extension; issue 12, docs/operations.md "Quotas").
 *
 * Limits live in the directory (the user record's "quota", the tenant's
 * quota_storage and quota_messages); usage lives in the store (USAGE,
 * store.proto: exact as of the user's partition primary). A tenant's
 * usage is the sum of its users' usage: one directory list and one USAGE
 * per user, all in flight at once, then cached here per tenant for
 * QUOTA_TENANT_TTL_MS (so a tenant's figure may be that old, and a burst
 * of deliveries to a tenant costs one sum per TTL per frontend process).
 * A tenant of more than QUOTA_TENANT_USERS_MAX users is not summed here
 * (its tenant limit is then not enforced by this process; logged).
 *
 * Loop thread only. The client borrows its store client and directory,
 * which must outlive it; destroy it after the store client (pending calls
 * end when the store client is destroyed).
 */
#ifndef MAIL_QUOTA_CLIENT_H
#define MAIL_QUOTA_CLIENT_H

#include "directory.h"
#include "store-client.h"

#include "buf.h"

#include <stdint.h>

#include <uv.h>

#define QUOTA_TENANT_TTL_MS 10000u
#define QUOTA_TENANT_CACHE 64u
#define QUOTA_TENANT_USERS_MAX 5000u

typedef struct quota_client quota_client;

struct quota_usage {
	uint64_t bytes;
	uint64_t messages;
};

/* What one quota_client_get() learnt. */
struct quota_view {
	struct directory_quota user_limit;   /* 0: no limit of that kind */
	struct directory_quota tenant_limit;
	struct quota_usage user;             /* valid when user_known */
	struct quota_usage tenant;           /* valid when tenant_known */
	int user_known, tenant_known;
};

/* Where a refusal happened (mail_quota_refusals_total's "where"). */
enum quota_where { QUOTA_WHERE_RCPT, QUOTA_WHERE_DATA, QUOTA_WHERE_APPEND, QUOTA_WHERE_N };

quota_client *quota_client_create(uv_loop_t *loop, store_client *store, directory *dir);
/* NULLs *qc; NULL is fine. */
void quota_client_destroy(quota_client **qc);

/* status: MAIL_OK (view filled as far as limits ask: no usage is read for
 * a kind without limits), or the directory's error (NOT_FOUND: no such
 * user); a store that cannot be asked leaves user_known/tenant_known 0
 * with MAIL_OK (callers let mail through rather than refuse on an
 * outage). view is valid during the call. */
typedef void quota_client_cb(int status, const struct quota_view *view, void *arg);

/* The quota of user (normalised address). user_limit and tenant_limit:
 * the limits when the caller has them (copied), or NULL to read them from
 * the directory first (on the thread pool). The callback runs once, never
 * from inside this call. */
void quota_client_get(quota_client *qc, const char *user, const struct directory_quota *user_limit,
		      const struct directory_quota *tenant_limit, quota_client_cb *cb, void *arg);

/* Would adding add_bytes and add_messages pass a limit of view? 0: no;
 * 1: the user's; 2: the tenant's. Unknown usage never passes. */
int quota_view_over(const struct quota_view *view, uint64_t add_bytes, uint64_t add_messages);

/* The limits to hand the store with a write for this user (DeliverRequest,
 * AppendRequest, CopyRequest quota_*): the user's own, tightened to its
 * usage plus what its tenant has left when the tenant has a limit (so the
 * store refuses what would pass the tenant's too, as of this view); at
 * least 1 where a limit applies (0 means none). */
void quota_view_effective(const struct quota_view *view, struct directory_quota *eff_r);

/* Count a refusal (metrics). */
void quota_client_refused(quota_client *qc, enum quota_where where);
/* mail_quota_refusals_total in Prometheus text (labels: the daemon's). */
void quota_client_metrics(const quota_client *qc, buf *out, const char *labels);

#endif
