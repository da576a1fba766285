/* imap-server-private.h: what the engine's .c files share (not a contract).
 *
 * Ownership: a session is a connection of the shared layer (conn.h): it is
 * freed when its handles are closed AND no backend call holds a reference
 * to it (conn_ref/conn_unref). Backend callbacks must check
 * conn_is_closed() first and then only finish and unref.
 */
#ifndef MAIL_IMAP_SERVER_PRIVATE_H
#define MAIL_IMAP_SERVER_PRIVATE_H

#include "buf.h"
#include "budget.h"
#include "conn.h"
#include "imap-login.h"
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

/* What ID (RFC 2971) tells clients. */
#define IMAP_SERVER_NAME "mail-platform"
#define IMAP_SERVER_VERSION "1.0"

/* ENABLE (RFC 5161) extensions; CONDSTORE is also turned on by the first
 * command that uses it (RFC 7162 3.1), QRESYNC implies CONDSTORE. */
#define IMAP_ENABLED_CONDSTORE 0x01u
#define IMAP_ENABLED_QRESYNC 0x02u
#define IMAP_ENABLED_UTF8 0x04u      /* UTF8=ACCEPT (RFC 6855): no modified UTF-7 */
#define IMAP_ENABLED_IMAP4REV2 0x08u /* RFC 9051 behaviour */

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

/* A capability (imap-server.c's table is the one list). */
struct imap_capability_def {
	const char *name;  /* as advertised ("APPENDLIMIT" gets "=n") */
	unsigned enable;   /* IMAP_ENABLED_* that ENABLE name turns on, or 0 */
	unsigned flags;    /* IMAP_CAP_PENDING: not advertised (yet) */
};
extern const struct imap_capability_def imap_capabilities[];
extern const size_t imap_capabilities_count;
/* The advertised capability called name (any case), or NULL. */
const struct imap_capability_def *imap_capability_find(const char *name);

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
	const struct imap_backend *backend;
	void *backend_ctx;
	struct imap_login_backend login; /* the backend, for imap-login.h */
	conn_server *conns;
	char *capability;              /* "IMAP4rev1 LITERAL+ ..." */
};

struct imap_session {
	struct conn conn;              /* first: the connection (conn.h) */
	struct imap_server *server;    /* valid until the session is destroyed */
	imap_parser *parser;

	enum imap_session_state state;
	char *user;
	unsigned enabled;              /* IMAP_ENABLED_*: what ENABLE turned on */
	imap_login *login;             /* LOGIN or AUTHENTICATE in progress */

	/* the command running (one at a time) */
	int busy;
	char *tag;
	int cmd_uid;
	void *cmd_ctx;                 /* per-command state, owned by the handler */
	void (*cmd_ctx_free)(void *ctx);
	void (*on_drain)(struct imap_session *s); /* resume when output drains */
	/* APPEND literals let in over the parser's limits (imap-server.c):
	 * bytes held for the command being read, and the part of them
	 * taken from the body budget; both given back when it ends */
	uint64_t literal_held;
	size_t literal_budget;
	struct mem_budget *literal_budget_pool; /* outlives the server */
	int bye_after_command;         /* close once the refused command's
					* bytes are read (LITERAL-) */

	/* the selected mailbox */
	char *mailbox;
	int read_only;
	uint32_t uidvalidity;
	uint32_t uidnext;
	struct imap_msg *msgs;
	size_t n_msgs;
};

/* ---- imap-server.c --------------------------------------------------- */

/* LOGIN succeeded: the normal idle timeout and parser limits from now on. */
void imap_session_authenticated(struct imap_session *s);
/* Say "* BYE text", then close once it is written. */
void imap_session_bye(struct imap_session *s, const char *text, const char *reason);
/* The capabilities this session has now (heap; the caller frees):
 * STARTTLS before TLS where TLS is configured, LOGINDISABLED while a
 * plaintext login is refused. */
char *imap_session_capability(const struct imap_session *s);
/* An IMAP string: atom when safe, else quoted, else a literal. */
void imap_session_append_string(struct imap_session *s, const char *str, size_t len);

/* End the running command: "tag STATUS [code] text". code may be NULL.
 * status is "OK", "NO" or "BAD". */
void imap_cmd_done(struct imap_session *s, const char *status, const char *code,
		   const char *text);
/* End it with the NO (or BAD for MAIL_ERR_PARAMS) row of a mail_error. */
void imap_cmd_fail(struct imap_session *s, int mail_error);

/* ---- mailbox names (imap-mbox-name.c) -------------------------------- *
 * The backend knows names as UTF-8 ('/' separated, "INBOX" for INBOX in
 * any case); the client sends and reads them in modified UTF-7 (RFC 3501
 * 5.1.3) unless it enabled UTF8=ACCEPT (RFC 6855) or IMAP4rev2 (RFC
 * 9051), when they are UTF-8 as-is. Every command that takes or shows a
 * mailbox name goes through these (SELECT, EXAMINE, COPY, MOVE too). */

/* Longest name in UTF-8 bytes (the store's max_mailbox_name default). */
#define IMAP_MAILBOX_NAME_MAX 255u

/* Results of the decoders below (both < 0: failures). */
#define IMAP_NAME_BAD (-1)     /* not a valid encoding: "tag BAD error" */
#define IMAP_NAME_INVALID (-2) /* encoded well, not a valid name:
				* "tag NO [CANNOT] error" */
/* Flags of imap_mailbox_name_decode(). */
#define IMAP_NAME_CREATE 0x01u /* a new name (CREATE, RENAME's target): one
				* trailing '/' is dropped, '*' and '%' are
				* refused */

/* 1 when s's names are UTF-8 on the wire, 0 for modified UTF-7. */
int imap_session_utf8_names(const struct imap_session *s);
/* The name in arg (an astring) as the backend knows it: *utf8_r (heap,
 * the caller frees; NULL on failure). Checks: the encoding, 1 ..
 * IMAP_MAILBOX_NAME_MAX bytes, no control characters, no empty level
 * (leading, trailing or double '/'). Returns 0, IMAP_NAME_BAD or
 * IMAP_NAME_INVALID with *error_r (static, client-safe text). */
int imap_mailbox_name_decode(const struct imap_session *s, const struct imap_arg *arg,
			     unsigned flags, char **utf8_r, const char **error_r);
/* The same with flags 0: for SELECT, EXAMINE, STATUS, COPY, MOVE ... */
int imap_mailbox_name_from_client(const struct imap_session *s, const struct imap_arg *arg,
				  char **utf8_r, const char **error_r);
/* For handlers: decode, or end the command with BAD / NO [CANNOT] and
 * return -1. Returns 0 with *utf8_r (heap, the caller frees). */
int imap_cmd_mailbox_arg(struct imap_session *s, const struct imap_arg *arg, unsigned flags,
			 char **utf8_r);
/* Append the backend's name utf8 to out as the client must see it (no
 * quoting). Returns 0, or -1 when utf8 is not valid UTF-8 (nothing
 * appended). */
int imap_mailbox_name_encode(const struct imap_session *s, const char *utf8, buf *out);
/* Append it to the session's output as an astring (atom, quoted or
 * literal). Returns 0, or -1 as above (nothing appended: skip the
 * name). */
int imap_session_append_mailbox(struct imap_session *s, const char *utf8);

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
imap_cmd_func imap_cmd_id;
imap_cmd_func imap_cmd_enable;
imap_cmd_func imap_cmd_compress;
/* imap-cmd-mbox.c */
imap_cmd_func imap_cmd_create;
imap_cmd_func imap_cmd_delete;
imap_cmd_func imap_cmd_rename;
imap_cmd_func imap_cmd_subscribe;
imap_cmd_func imap_cmd_unsubscribe;
imap_cmd_func imap_cmd_lsub;
imap_cmd_func imap_cmd_status;
imap_cmd_func imap_cmd_namespace;
imap_cmd_func imap_cmd_check;
/* imap-cmd-append.c */
imap_cmd_func imap_cmd_append;

#endif
