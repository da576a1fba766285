/* imap-server-private.h: what the engine's .c files share (not a contract).
 *
 * Ownership: the server owns its sessions' handles; a session is freed when
 * its handles are closed AND no backend call holds a reference to it
 * (imap_session_ref/unref). Backend callbacks must check
 * imap_session_is_closed() first and then only finish and unref.
 */
#ifndef MAIL_IMAP_SERVER_PRIVATE_H
#define MAIL_IMAP_SERVER_PRIVATE_H

#include "buf.h"
#include "imap-server.h"

enum imap_session_state {
	IMAP_STATE_NOT_AUTH = 0,
	IMAP_STATE_AUTH = 1,
	IMAP_STATE_SELECTED = 2,
};

/* Command flags: the states a command is allowed in, and its kind. The
 * dispatcher enforces them; handlers never re-check the state. */
#define IMAP_CMD_NOT_AUTH 0x01u
#define IMAP_CMD_AUTH 0x02u
#define IMAP_CMD_SELECTED 0x04u
#define IMAP_CMD_ANY (IMAP_CMD_NOT_AUTH | IMAP_CMD_AUTH | IMAP_CMD_SELECTED)
#define IMAP_CMD_UID 0x08u /* "UID <name>": numbers are UIDs */

struct imap_session;

/* A handler ends its command with imap_cmd_done() (now, or from the
 * callback of the backend call it started). */
typedef void imap_cmd_func(struct imap_session *s, const struct imap_arg *args, size_t n_args);

struct imap_command_def {
	const char *name;       /* "FETCH", "UID FETCH" */
	imap_cmd_func *func;
	unsigned flags;
	const char *capability; /* added to CAPABILITY, or NULL */
};

extern const struct imap_command_def imap_commands[];
extern const size_t imap_commands_count;

/* One message of the selected mailbox, as this session sees it. */
struct imap_msg {
	uint32_t uid;
	uint64_t size;
	int64_t internal_date_ms;
	char **flags;
	size_t n_flags;
};

struct imap_server {
	uv_loop_t *loop;
	struct imap_settings set;
	char *listen_host;
	const struct imap_backend *backend;
	void *backend_ctx;
	uv_tcp_t listener;
	int port;
	int stopping;
	int listener_closed;
	struct imap_session *sessions; /* open sessions (handles not yet closed) */
	unsigned n_sessions;
	char *capability;              /* "IMAP4rev1 LITERAL+ ..." */
};

struct imap_session {
	struct imap_server *server;    /* valid until the handles are closed */
	struct imap_session *prev, *next;
	uv_tcp_t tcp;
	uv_timer_t idle;
	uv_shutdown_t shutdown_req;
	unsigned refcount;
	int closed;                    /* no more commands, replies or callbacks */
	int handles_closing;
	unsigned handles_open;
	char id[13];
	char peer[64];
	char peer_ip[48];

	imap_parser *parser;
	struct tls_conn *tls;          /* the TLS layer (STARTTLS, or from accept) */
	int discard_input;             /* STARTTLS: drop what was pipelined after it */
	buf in;                        /* received, not yet parsed */
	buf out;                       /* replies not yet handed to uv_write */
	int reading;

	enum imap_session_state state;
	char *user;
	struct sasl_server *sasl;      /* AUTHENTICATE in progress */
	struct imap_penalty *penalty;  /* an attempt held back (auth penalty) */
	char *login_user, *login_password; /* LOGIN held back by a penalty */
	int auth_reading;              /* waiting for the client's next line */
	int auth_final;                /* SCRAM's server-final sent */
	char *auth_canon;              /* canonical user of a SCRAM exchange */
	unsigned bad_count;
	unsigned auth_failures;

	/* the command running (one at a time) */
	int busy;
	char *tag;
	int cmd_uid;
	void *cmd_ctx;                 /* per-command state, owned by the handler */
	void (*cmd_ctx_free)(void *ctx);
	void (*on_drain)(struct imap_session *s); /* resume when output drains */

	/* the selected mailbox */
	char *mailbox;
	int read_only;
	uint32_t uidvalidity;
	uint32_t uidnext;
	struct imap_msg *msgs;
	size_t n_msgs;
};

/* ---- imap-server.c --------------------------------------------------- */

void imap_session_ref(struct imap_session *s);
void imap_session_unref(struct imap_session *s);
int imap_session_is_closed(const struct imap_session *s);
/* LOGIN succeeded: the normal idle timeout from now on. */
void imap_session_authenticated(struct imap_session *s);
/* After an async completion: send queued replies and go on with input. */
void imap_session_resume(struct imap_session *s);
/* Say "* BYE text", then close once it is written. */
void imap_session_bye(struct imap_session *s, const char *text, const char *reason);
/* Send what is queued, then close (no more commands meanwhile). */
void imap_session_close_after_write(struct imap_session *s, const char *reason);

void imap_session_append(struct imap_session *s, const void *data, size_t len);
/* The capabilities this session has now (heap; the caller frees):
 * STARTTLS before TLS where TLS is configured, LOGINDISABLED while a
 * plaintext login is refused. */
char *imap_session_capability(const struct imap_session *s);
/* 1 when LOGIN may be used: over TLS, or in the loopback development mode. */
int imap_session_login_allowed(const struct imap_session *s);
void imap_session_printf(struct imap_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* An IMAP string: atom when safe, else quoted, else a literal. */
void imap_session_append_string(struct imap_session *s, const char *str, size_t len);
void imap_session_flush(struct imap_session *s);
/* Bytes handed to libuv and not yet written, plus s->out. */
size_t imap_session_output_pending(const struct imap_session *s);

/* End the running command: "tag STATUS [code] text". code may be NULL.
 * status is "OK", "NO" or "BAD". */
void imap_cmd_done(struct imap_session *s, const char *status, const char *code,
		   const char *text);
/* End it with the NO (or BAD for MAIL_ERR_PARAMS) row of a mail_error. */
void imap_cmd_fail(struct imap_session *s, int mail_error);

/* ---- the selected mailbox (imap-cmd-mailbox.c) ----------------------- */

void imap_session_mailbox_clear(struct imap_session *s);
/* Sequence number of uid, 0 when not in the snapshot. */
uint32_t imap_session_seq_of(const struct imap_session *s, uint32_t uid);
void imap_msg_set_flags(struct imap_msg *msg, const char *const *flags, size_t n_flags);
int imap_msg_has_flag(const struct imap_msg *msg, const char *flag);
void imap_session_append_flags(struct imap_session *s, const struct imap_msg *msg);

/* ---- handlers -------------------------------------------------------- */

imap_cmd_func imap_cmd_capability;
imap_cmd_func imap_cmd_authenticate;
/* A line of an AUTHENTICATE exchange (without CRLF). */
void imap_auth_line(struct imap_session *s, const char *line, size_t len);
/* Run fn(s) after the penalty delay of s's address (now when none). */
void imap_session_after_penalty(struct imap_session *s, void (*fn)(struct imap_session *s));
imap_cmd_func imap_cmd_starttls;
imap_cmd_func imap_cmd_noop;
imap_cmd_func imap_cmd_logout;
imap_cmd_func imap_cmd_login;
imap_cmd_func imap_cmd_list;
imap_cmd_func imap_cmd_select;
imap_cmd_func imap_cmd_examine;
imap_cmd_func imap_cmd_close;
imap_cmd_func imap_cmd_unselect;
imap_cmd_func imap_cmd_expunge;
imap_cmd_func imap_cmd_fetch;
imap_cmd_func imap_cmd_store;

#endif
