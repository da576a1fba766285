/* pop3-server-private.h: what the engine's .c files share (not a contract).
 *
 * Ownership: a session is a connection of the shared layer (conn.h): it is
 * freed when its handles are closed AND no backend call holds a reference
 * to it (conn_ref/conn_unref). Backend callbacks check conn_is_closed()
 * first and then only finish and unref.
 */
#ifndef MAIL_POP3_SERVER_PRIVATE_H
#define MAIL_POP3_SERVER_PRIVATE_H

#include "conn.h"
#include "imap-login.h"
#include "pop3-server.h"

#define POP3_LOG_SVC "pop3"
/* The maildrop: the user's INBOX. */
#define POP3_MAILBOX "INBOX"

enum pop3_state {
	POP3_STATE_AUTHORIZATION = 0,
	POP3_STATE_TRANSACTION = 1,
	POP3_STATE_UPDATE = 2,       /* after QUIT: no more commands */
};

/* Command flags: the states a command is allowed in and what it needs.
 * The dispatcher enforces them (and the argument counts); handlers never
 * re-check. */
#define POP3_CMD_AUTHORIZATION 0x01u
#define POP3_CMD_TRANSACTION 0x02u
#define POP3_CMD_ANY (POP3_CMD_AUTHORIZATION | POP3_CMD_TRANSACTION)
#define POP3_CMD_CREDENTIALS 0x04u /* carries credentials: TLS or loopback dev mode */
#define POP3_CMD_REST 0x08u        /* takes the rest of the line (PASS) */

struct pop3_session;
struct pop3_command;

/* A handler ends its command with pop3_cmd_ok/_err/_bad/_fail or, after a
 * multi-line answer, pop3_cmd_finish (now, or from the callback of the
 * backend call it started). */
typedef void pop3_cmd_func(struct pop3_session *s, const struct pop3_command *cmd);

struct pop3_command_def {
	const char *name;       /* "RETR" */
	pop3_cmd_func *func;
	unsigned flags;
	unsigned min_args, max_args;
	const char *usage;      /* "-ERR Usage: <usage>" on a wrong count */
	const char *capa;       /* its CAPA line, or NULL */
};

extern const struct pop3_command_def pop3_commands[];
extern const size_t pop3_commands_count;

/* One message of the maildrop, as this session sees it. */
struct pop3_msg {
	uint32_t uid;
	uint64_t size;
	uint8_t deleted;    /* DELE in this session */
	uint8_t retrieved;  /* RETR sent it whole */
	uint8_t seen;       /* had \Seen at login */
};

struct pop3_server {
	uv_loop_t *loop;
	struct pop3_settings set;
	const struct imap_backend *backend;
	void *backend_ctx;
	struct imap_login_backend login; /* the backend, for imap-login.h */
	conn_server *conns;
};

struct pop3_session {
	struct conn conn;           /* first: the connection (conn.h) */
	struct pop3_server *server; /* valid until the session is destroyed */
	pop3_parser *parser;

	enum pop3_state state;
	char *user;                 /* USER's name, then the logged-in user */
	char *lock_user;            /* whose maildrop lock it holds, or NULL */
	imap_login *login;          /* PASS or AUTH in progress */

	/* the command running (one at a time) */
	int busy;
	void *cmd_ctx;              /* per-command state, owned by the handler */
	void (*cmd_ctx_free)(void *ctx);
	void (*on_drain)(struct pop3_session *s); /* resume when output drains */

	/* the maildrop (TRANSACTION) */
	uint32_t uidvalidity;
	struct pop3_msg *msgs;
	size_t n_msgs;
};

/* ---- pop3-server.c --------------------------------------------------- */

/* End the running command: "+OK text", "-ERR [code] text" (code may be
 * NULL), "-ERR text" counted as a bad command (conn_command_ended), or the
 * -ERR row of a mail_error ([SYS/TEMP] or [SYS/PERM]). */
void pop3_cmd_ok(struct pop3_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void pop3_cmd_err(struct pop3_session *s, const char *code, const char *text);
void pop3_cmd_bad(struct pop3_session *s, const char *text);
void pop3_cmd_fail(struct pop3_session *s, int mail_error);
/* End a command whose answer is already queued (a multi-line one). */
void pop3_cmd_finish(struct pop3_session *s);

/* Give back the maildrop lock, if held. */
void pop3_session_unlock(struct pop3_session *s);

/* ---- handlers: pop3-cmd-auth.c, pop3-cmd-maildrop.c ------------------ */

pop3_cmd_func pop3_cmd_capa;
pop3_cmd_func pop3_cmd_stls;
pop3_cmd_func pop3_cmd_user;
pop3_cmd_func pop3_cmd_pass;
pop3_cmd_func pop3_cmd_auth;
pop3_cmd_func pop3_cmd_quit_authorization;
pop3_cmd_func pop3_cmd_stat;
pop3_cmd_func pop3_cmd_list;
pop3_cmd_func pop3_cmd_uidl;
pop3_cmd_func pop3_cmd_retr;
pop3_cmd_func pop3_cmd_top;
pop3_cmd_func pop3_cmd_dele;
pop3_cmd_func pop3_cmd_rset;
pop3_cmd_func pop3_cmd_noop;
pop3_cmd_func pop3_cmd_quit_transaction;

/* Free the maildrop snapshot. */
void pop3_session_maildrop_clear(struct pop3_session *s);
/* 1 when a SASL exchange waits for the client's next line. */
int pop3_session_auth_reading(const struct pop3_session *s);

#endif
