/* pop3-server.h: the POP3 protocol engine on libuv (library
 * `mailpop3server`): RFC 1939, CAPA and response codes (RFC 2449, 3206),
 * STLS (RFC 2595), AUTH (RFC 5034).
 *
 * Listens on TCP through the shared connection layer (conn.h: TLS, session
 * caps, the auth guard, buffered I/O), greets, parses command lines
 * (pop3-parser.h), enforces the session state (AUTHORIZATION, TRANSACTION,
 * UPDATE) from one command table, and reaches users and mail only through
 * a struct imap_backend (imap-backend.h), the same one the IMAP engine
 * uses. Commands of a session run one at a time in arrival order
 * (PIPELINING); pipelined input is buffered (bounded) meanwhile.
 *
 * The maildrop is the user's INBOX as it was at login: message numbers and
 * sizes are that snapshot's. DELE marks a message in the session only;
 * QUIT in TRANSACTION enters UPDATE, which adds \Deleted to the marked
 * messages and expunges exactly those (messages other sessions marked
 * \Deleted are left alone), and with mark_seen adds \Seen to the messages
 * RETR sent in full. A session that ends without QUIT changes nothing.
 * docs/pop3.md has the decisions.
 *
 * Everything here runs on the loop thread.
 */
#ifndef MAIL_POP3_SERVER_H
#define MAIL_POP3_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "conn.h"
#include "imap-backend.h"
#include "pop3-parser.h"

/* Settings (rows: name, default, range, doc). */
#define POP3_DEFAULT_LISTEN_HOST "127.0.0.1"
#define POP3_DEFAULT_LISTEN_PORT 2110            /* 0..65535; 0 = any free port */
#define POP3_DEFAULT_IDLE_TIMEOUT_MS (10u * 60u * 1000u) /* >= 1000; RFC 1939 3:
							 * at least 10 minutes */
#define POP3_DEFAULT_PREAUTH_TIMEOUT_MS 60000u   /* idle before login: 1 min */
#define POP3_DEFAULT_MAX_SESSIONS 1000u          /* 1..; more get -ERR [SYS/TEMP] */
#define POP3_DEFAULT_MAX_SESSIONS_PER_IP 20u     /* 1..; per client address */
#define POP3_DEFAULT_MAX_BAD_COMMANDS 10u        /* 1..; consecutive, then close */
#define POP3_DEFAULT_MAX_AUTH_FAILURES 3u        /* 1..; failed logins, then close */
#define POP3_DEFAULT_MAX_INPUT (64u * 1024u)     /* >= max_auth_line: unprocessed
						  * input before reading pauses */
#define POP3_DEFAULT_MAX_OUTPUT (1024u * 1024u)  /* queued reply bytes before RETR,
						  * TOP, LIST, UIDL wait */
#define POP3_BODY_BUDGET_MIN (1024u * 1024u)     /* bodies this large need budget */
#define POP3_DEFAULT_MARK_SEEN 1                 /* 0/1: RETR'd messages get \Seen
						  * at QUIT (Dovecot's default) */
#define POP3_DEFAULT_IMPLEMENTATION "mail-frontend" /* CAPA IMPLEMENTATION; NULL: none */

struct pop3_settings {
	/* The listener (conn.h): address, TLS (STLS offered, or POP3S with
	 * implicit_tls), credentials over plaintext (USER and SASL are not
	 * offered and are refused with -ERR [AUTH] until TLS, loopback
	 * development mode excepted), trusted networks, SASL's secret, the
	 * auth guard, the body budget (a body of POP3_BODY_BUDGET_MIN bytes
	 * or more that does not fit fails its RETR/TOP with -ERR [SYS/TEMP]),
	 * timeouts, session caps, input and output bounds. */
	struct conn_settings conn;
	int mark_seen;
	/* The maildrop lock (maildrop-lock.h), borrowed: it must outlive the
	 * server and its sessions' close. NULL: no lock (several POP3
	 * sessions may share a maildrop). A session takes the lock after
	 * authenticating (another holder: -ERR [IN-USE], still in
	 * AUTHORIZATION; etcd unreachable: logged, the session goes on
	 * without it) and gives it back when it ends (QUIT after UPDATE, or
	 * any disconnect). */
	struct maildrop_locks *locks;
	const char *implementation;  /* static or outliving the server */
	struct pop3_parser_limits limits;
};

/* Fill *set with the defaults above. */
void pop3_settings_init(struct pop3_settings *set);

typedef struct pop3_server pop3_server;

/* Bind and listen. backend and backend_ctx are borrowed and must outlive
 * the server (including the loop iterations after pop3_server_stop() that
 * close its handles). Returns 0, or -1 with *error_r (static text). */
int pop3_server_start(uv_loop_t *loop, const struct pop3_settings *set,
		      const struct imap_backend *backend, void *backend_ctx,
		      pop3_server **server_r, const char **error_r);
/* The port bound (useful with listen_port 0); the sessions open. */
int pop3_server_port(const pop3_server *server);
unsigned pop3_server_session_count(const pop3_server *server);
/* Stop listening and close every session ("-ERR [SYS/TEMP] Server
 * shutting down"; nothing is expunged). Memory is released by close
 * callbacks: run the loop afterwards until it has no more handles.
 * NULLs *server. */
void pop3_server_stop(pop3_server **server);

#endif
