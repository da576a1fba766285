/* imap-server.h: the IMAP4rev1 protocol engine on libuv (library
 * `mailimapserver`).
 *
 * Listens on TCP, greets, parses commands (imap-parser.h), enforces the
 * session state (not authenticated / authenticated / selected) from one
 * command table, and reaches users and mail only through a struct
 * imap_backend (imap-backend.h). Commands of a session run one at a time
 * in arrival order; pipelined input is buffered (bounded) meanwhile.
 *
 * The commands are the table in imap-server.c (CAPABILITY lists what it
 * serves). A selected session holds no per-message state but its
 * sequence <-> uid map (imap-uidmap.h); it watches its mailbox and tells
 * the changes of any session or delivery before each tagged reply that
 * may carry them (RFC 3501 7.4.1), at once under IDLE (RFC 2177), as
 * EXPUNGE or, under QRESYNC, VANISHED. Connections, TLS and the session
 * caps are the shared layer's (conn.h).
 *
 * Everything here runs on the loop thread.
 */
#ifndef MAIL_IMAP_SERVER_H
#define MAIL_IMAP_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "conn.h"
#include "imap-backend.h"
#include "imap-parser.h"

/* Settings (rows: name, default, range, doc). */
#define IMAP_DEFAULT_LISTEN_HOST "127.0.0.1"
#define IMAP_DEFAULT_LISTEN_PORT 2143           /* 0..65535; 0 = any free port */
#define IMAP_DEFAULT_IDLE_TIMEOUT_MS (30u * 60u * 1000u) /* >= 1000; RFC 3501: 30 min */
#define IMAP_DEFAULT_MAX_SESSIONS 20000u        /* 1..; more get "* BYE" at once (IDLE
                                                 * sessions are cheap: docs/imap.md) */
#define IMAP_DEFAULT_MAX_SESSIONS_PER_IP 20u    /* 1..; per client address */
#define IMAP_DEFAULT_PREAUTH_TIMEOUT_MS 60000u  /* idle before LOGIN: 1 min */
#define IMAP_DEFAULT_MAX_BAD_COMMANDS 20u       /* 1..; consecutive BADs, then BYE */
#define IMAP_DEFAULT_MAX_AUTH_FAILURES 3u       /* 1..; failed LOGINs, then BYE */
#define IMAP_DEFAULT_MAX_INPUT (256u * 1024u)   /* >= max_line: unprocessed input
						 * buffered before reading pauses */
#define IMAP_DEFAULT_MAX_OUTPUT (1024u * 1024u) /* queued reply bytes before a
						 * FETCH waits for the client */
#define IMAP_BODY_BUDGET_MIN (1024u * 1024u)    /* bodies this large need budget */
#define IMAP_DEFAULT_APPEND_LIMIT (32u * 1024u * 1024u) /* APPENDLIMIT, RFC 7889:
						 * 1 KiB .. IMAP_APPEND_TOTAL_MAX;
						 * the SMTP side's message size */
#define IMAP_DEFAULT_APPEND_MAX_TOTAL (64u * 1024u * 1024u) /* all messages of one
						 * (MULTI)APPEND: append_limit ..
						 * IMAP_APPEND_TOTAL_MAX */
#define IMAP_APPEND_TOTAL_MAX (64u * 1024u * 1024u) /* one backend call, one RPC
						 * frame (RPC_FRAME_MAX 72 MiB) */
#define IMAP_LITERAL_MINUS_MAX 4096u            /* RFC 7888 4: LITERAL- */

struct imap_settings {
	/* The listener (conn.h): address, TLS, credentials over plaintext,
	 * trusted networks, SASL's secret, the auth guard, the body budget,
	 * timeouts, session caps, input and output bounds. With TLS,
	 * STARTTLS is offered (RFC 3501 6.2.1) or, with implicit_tls, IMAPS
	 * (RFC 8314); LOGINDISABLED is advertised while credentials are
	 * refused. Message bodies of IMAP_BODY_BUDGET_MIN bytes or more held
	 * by FETCH count against the body budget; one that does not fit
	 * fails that FETCH with NO [UNAVAILABLE] (the client retries)
	 * instead of growing memory. */
	struct conn_settings conn;
	struct imap_parser_limits limits_preauth;
	struct imap_parser_limits limits_auth;
	/* APPEND (RFC 3501 6.3.11, MULTIAPPEND RFC 3502): a message over
	 * append_limit is refused with NO [TOOBIG] (before its literal is
	 * read when the client waits for "+", else after it was read and
	 * dropped); one APPEND's messages together at most append_max_total
	 * (NO [LIMIT]). Literals of an APPEND are held in memory until the
	 * backend took them: they count against conn.access.body_budget
	 * (NO [UNAVAILABLE] when it is spent: the client retries). */
	uint64_t append_limit;
	uint64_t append_max_total;
	/* 0 (default): LITERAL+ (RFC 7888: non-synchronising literals of
	 * any size). 1: LITERAL- (only up to IMAP_LITERAL_MINUS_MAX bytes;
	 * a larger one gets BAD [TOOBIG] and the connection is closed, as
	 * the client sends its bytes regardless). */
	int literal_minus;
};

/* Fill *set with the defaults above. */
void imap_settings_init(struct imap_settings *set);

typedef struct imap_server imap_server;

/* Bind and listen. backend and backend_ctx are borrowed and must outlive the
 * server (including the loop iterations after imap_server_stop() that close
 * its handles). Returns 0, or -1 with *error_r (static text). */
int imap_server_start(uv_loop_t *loop, const struct imap_settings *set,
		      const struct imap_backend *backend, void *backend_ctx,
		      imap_server **server_r, const char **error_r);
/* The port actually bound (useful with listen_port 0). */
int imap_server_port(const imap_server *server);
/* Number of open sessions. */
unsigned imap_server_session_count(const imap_server *server);
/* Stop listening and close every session ("* BYE Server shutting down").
 * Memory is released by close callbacks: run the loop afterwards until it
 * has no more handles. Backend calls still pending complete into closed
 * sessions harmlessly. NULLs *server. */
void imap_server_stop(imap_server **server);

#endif
