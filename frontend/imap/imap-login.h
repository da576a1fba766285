/* imap-login.h: checking a client's credentials against a struct
 * imap_backend, shared by the IMAP and POP3 engines (library
 * `mailimapserver`): a password (IMAP LOGIN, POP3 USER/PASS) or a SASL
 * exchange (IMAP AUTHENTICATE, POP3 AUTH: PLAIN, LOGIN, and SCRAM-SHA-256
 * when the backend gives keys), each only after the auth guard's penalty
 * for the client's address (conn_after_penalty).
 *
 * A SASL challenge goes out as "+ <base64>\r\n", the form IMAP (RFC 3501
 * 7.5) and POP3 (RFC 5034 4) share; while imap_login_reading() the engine
 * hands each client line to imap_login_line(). SCRAM's server-final
 * message goes out as one more challenge, answered by an empty line (IMAP
 * could carry it with the OK; one form serves both). "*" cancels.
 *
 * The outcome is logged (event=login, login_error; login_failed is
 * conn_auth_failed's) and comes once, through done:
 *   MAIL_OK          user: the canonical name from the backend;
 *   MAIL_ERR_PERM    bad credentials (the engine counts it and tells the
 *                    guard, conn_auth_failed);
 *   MAIL_ERR_PARAMS  malformed input, cancelled: text says what, for the
 *                    client (BAD / -ERR);
 *   anything else    a temporary failure of the backend.
 * done may run inside the start call. It runs as the login's last act: the
 * engine frees the login there (imap_login_free) or later, and only then
 * goes on (the engine may start the next login from done).
 *
 * Ownership: the engine owns the login (one at a time per connection) and
 * frees it in done or, if the connection closes first, when it destroys
 * the session: a login whose connection closed never calls done. Secrets
 * are copied, and wiped when no longer needed.
 *
 * Loop thread only.
 */
#ifndef MAIL_IMAP_LOGIN_H
#define MAIL_IMAP_LOGIN_H

#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "imap-backend.h"
#include "sasl.h"

struct imap_login_backend {
	const struct imap_backend *backend;
	void *backend_ctx;
	const uint8_t *sasl_secret;   /* conn_access.sasl_secret */
	size_t sasl_secret_len;
};

typedef struct imap_login imap_login;

typedef void imap_login_done_cb(struct conn *c, int status, const char *user,
				const char *text);

/* A login for c (lb is borrowed: it must outlive the login). */
imap_login *imap_login_create(struct conn *c, const struct imap_login_backend *lb,
			      imap_login_done_cb *done);
void imap_login_free(imap_login **login);

/* Check user and password (copied). */
void imap_login_password(imap_login *login, const char *user, const char *password);
/* Start a SASL exchange with mech (imap_login_mech_offered() must say
 * yes); ir: the initial response as the client sent it, base64 (NULL:
 * none; "=" is the empty response). */
void imap_login_sasl(imap_login *login, enum sasl_mech mech, const char *ir);
/* 1 while the exchange waits for the client's next line. */
int imap_login_reading(const imap_login *login);
/* The client's line (without CRLF) while reading. */
void imap_login_line(imap_login *login, const char *line, size_t len);

/* 1 when mech can be used with lb's backend. */
int imap_login_mech_offered(const struct imap_login_backend *lb, enum sasl_mech mech);
/* The mechanisms offered, space-separated ("PLAIN LOGIN SCRAM-SHA-256"). */
const char *imap_login_mechs(const struct imap_login_backend *lb);

#endif
