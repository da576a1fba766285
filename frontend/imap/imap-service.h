/* imap-service.h: the IMAP service of the frontend daemon (library
 * `mailimapservice`): the engine (imap-server.h) over the real backend,
 * i.e. logins checked by the tenant directory (router/directory.h) and
 * mailboxes reached through the store client (client/store-client.h).
 *
 * Loop thread only.
 */
#ifndef MAIL_IMAP_SERVICE_H
#define MAIL_IMAP_SERVICE_H

#include <uv.h>

#include "directory.h"
#include "imap-server.h"
#include "store-client.h"

typedef struct imap_service imap_service;

struct auth_pool;

/* Start listening per *set (copied). dir, auth and sc are borrowed: they
 * must outlive the service and the loop iterations after
 * imap_service_stop() (pending store calls complete harmlessly). Password
 * checks and SCRAM lookups go to auth (frontend/auth-pool.h: threads of
 * its own, a cache). Returns 0, or -1 with *error_r (static text). */
int imap_service_start(uv_loop_t *loop, const struct imap_settings *set, directory *dir,
		       struct auth_pool *auth, store_client *sc, imap_service **svc_r,
		       const char **error_r);
/* Stop listening, close every session; handles finish closing on the next
 * loop iterations. NULLs *svc. */
void imap_service_stop(imap_service **svc);

#endif
