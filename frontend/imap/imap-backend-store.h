/* imap-backend-store.h: the frontend daemon's struct imap_backend (library
 * `mailimapstore`), used by its IMAP and POP3 servers alike: logins and
 * SCRAM keys through the auth pool (frontend/auth-pool.h: threads of its
 * own, a cache, the tenant directory behind it), mailboxes through the
 * store client (client/store-client.h). Every member of struct
 * imap_backend is served by the store nodes: large mailboxes are read in
 * pages (open, fetch_meta, changes), watch() shares one WATCH long poll per
 * (user, mailbox) among the sessions of this frontend and re-issues it
 * after each answer and after failures (to the new primary after a
 * failover, with the last modseq seen). SEARCH, SORT and THREAD are
 * evaluated on the store node (the program sent as store.proto's
 * SearchKey; SEARCH's pages gathered before the callback).
 *
 * Loop thread only.
 */
#ifndef MAIL_IMAP_BACKEND_STORE_H
#define MAIL_IMAP_BACKEND_STORE_H

#include "imap-backend.h"
#include "store-client.h"

struct auth_pool;

typedef struct imap_store_backend imap_store_backend;

/* The function table to give imap_server_start()/pop3_server_start() with
 * an imap_store_backend as its ctx. */
extern const struct imap_backend imap_store_backend_vfuncs;

/* auth and sc are borrowed: they must outlive the backend and the calls it
 * started (pending calls hold no pointer to the backend object, so it can
 * be destroyed while some are still in flight). Never NULL. */
imap_store_backend *imap_store_backend_create(struct auth_pool *auth, store_client *sc);
/* Quotas (issue 12): APPEND and COPY check the user's usage against its
 * and its tenant's limits and hand the store the limits that apply; the
 * QUOTA extension reports them. qc is borrowed and must outlive the
 * calls (client/quota-client.h). Without it: no quotas. */
struct quota_client;
void imap_store_backend_set_quota(imap_store_backend *b, struct quota_client *qc);
/* Watches still registered are dropped (unwatch them first); a WATCH
 * call still out completes later and frees its group. Every watch must be
 * unwatched before the store client is destroyed: a group that still has
 * sessions re-issues its call after a failure. NULLs *b. */
void imap_store_backend_destroy(imap_store_backend **b);
/* Mailboxes watched now (one store long poll each, shared by every
 * session of this frontend watching it): tests and metrics. */
size_t imap_store_backend_watch_groups(const imap_store_backend *b);

#endif
