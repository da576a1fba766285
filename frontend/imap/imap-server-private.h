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
#include "imap-uidmap.h"

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
/* Changes of the selected mailbox (imap-session-changes.c) are reported
 * at the end of every command in the selected state unless its row says: */
#define IMAP_CMD_NO_SYNC 0x10u     /* never (SELECT, CLOSE, LOGOUT, IDLE...) */
#define IMAP_CMD_NO_EXPUNGE 0x20u  /* without EXPUNGE/VANISHED (RFC 3501
				    * 7.4.1: FETCH, STORE, SEARCH; RFC 5256:
				    * SORT, THREAD): those wait */

/* A growing list of ascending uid ranges. */
struct imap_range_list {
	struct search_uid_range *r;
	size_t n, cap;
};

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
	unsigned cmd_flags;            /* its row's IMAP_CMD_* */
	/* its tagged reply, held while the changes are fetched first */
	const char *done_status;
	char *done_code;
	char *done_text;
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

	/* the selected mailbox: nothing per message but the uid map */
	char *mailbox;
	int read_only;
	uint32_t uidvalidity;
	uint32_t uidnext;              /* as the client knows it: later uids are new */
	uint64_t highest_modseq;       /* the client has been told everything to here */
	imap_uidmap *uidmap;           /* sequence numbers <-> uids */
	imap_backend_watch *watch;
	uint64_t watch_modseq;         /* the watch said the mailbox reached this */
	int sync_self;                 /* this session changed the mailbox */
	/* uids whose flags the running command told already (its STORE,
	 * FETCH's \\Seen): the changes that follow skip them */
	struct imap_range_list sync_skip;
	int syncing;                   /* a changes() call is out */
	/* expunges learnt while they could not be told (during FETCH, STORE,
	 * SEARCH): still in uidmap, told at the next command that may */
	struct search_uid_range *expunge_pending;
	size_t n_expunge_pending;
	/* IDLE (RFC 2177) */
	int idling;
	int idle_done;                 /* DONE read while a sync was out */
	uint64_t idle_start_ms;
	/* SEARCHRES (RFC 5182): the last SEARCH ... RETURN (SAVE), as uids */
	struct search_uid_range *searchres;
	size_t n_searchres;
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

/* Unselect: unwatch, free the uid map and what goes with it. */
void imap_session_mailbox_clear(struct imap_session *s);
/* Sequence number of uid, 0 when not in the session's view. */
uint32_t imap_session_seq_of(const struct imap_session *s, uint32_t uid);
/* "(\\Seen $Label)" */
void imap_session_append_flags(struct imap_session *s, const char *const *flags,
			       size_t n_flags);
int imap_flags_have(const char *const *flags, size_t n_flags, const char *flag);
/* Is name (UTF-8, as the backend knows it) the selected mailbox? */
int imap_session_is_selected(const struct imap_session *s, const char *name);
/* The running command changed the selected mailbox (APPEND or COPY into
 * it, STORE, EXPUNGE...): its changes are fetched before the tagged reply
 * so the client learns them now, once. */
void imap_session_mailbox_touched(struct imap_session *s);
/* The session's own APPEND (added: the new uids, ascending) or EXPUNGE
 * (added NULL: its uids are out of the view already) changed the selected
 * mailbox to highest_modseq. When that is the modseq right after the one
 * the session knows and the watch has told of nothing later, the write is
 * the mailbox's only change since: the view is brought up to date here
 * (EXISTS for the new uids), with no changes round trip before the tagged
 * reply. Otherwise (or highest_modseq 0: not known) as
 * imap_session_mailbox_touched(). */
void imap_session_own_change(struct imap_session *s, uint64_t highest_modseq,
			     const uint32_t *added, size_t n_added);

/* ---- sequence sets (imap-cmd-fetch.c) ---------------------------------- */

/* Resolve a sequence-set argument (sequence numbers, or uids under UID;
 * "$" for SEARCHRES) against the session's view: the uids it names as
 * ascending disjoint ranges (heap, NULL when none; uids of messages not
 * in the view are left out, and so are uids above it). Returns 0, or -1
 * with *error_r (static text) for a BAD reply. */
int imap_session_seqset_ranges(struct imap_session *s, const struct imap_arg *arg, int uid,
			       struct search_uid_range **ranges_r, size_t *n_r,
			       const char **error_r);
/* Add [first, last] (calls in ascending order), merged with the last
 * range when they touch. */
void imap_range_list_add(struct imap_range_list *l, uint32_t first, uint32_t last);
/* The uids of the view within ranges (ascending), heap (NULL when none). */
uint32_t *imap_session_view_uids(const struct imap_session *s,
				 const struct search_uid_range *ranges, size_t n, size_t *n_r);
/* Number of uids in ranges. */
uint64_t imap_uid_ranges_count(const struct search_uid_range *ranges, size_t n);
/* "1:3,7" of ranges appended to the session's output. */
void imap_session_append_uid_ranges(struct imap_session *s,
				    const struct search_uid_range *ranges, size_t n);

/* ---- changes of the selected mailbox (imap-session-changes.c) -------- */

/* After SELECT: watch the mailbox. */
void imap_session_watch_start(struct imap_session *s);
void imap_session_watch_stop(struct imap_session *s);
/* Does the end of the running command need changes() first? */
int imap_session_sync_wanted(const struct imap_session *s);
/* Fetch and tell the changes, then call done(s) (not from inside this
 * call). allow_expunge: EXPUNGE/VANISHED may be sent now; if not,
 * expunges are kept for later. */
void imap_session_sync(struct imap_session *s, int allow_expunge,
		       void (*done)(struct imap_session *s));
/* Tell the expunges kept for later (no backend call). */
void imap_session_report_expunge_pending(struct imap_session *s);
/* Tell expunged uids (those in the view; ascending): EXPUNGE from the
 * highest sequence number down, or VANISHED under QRESYNC; and drop them
 * from the view. */
void imap_session_expunged(struct imap_session *s, const uint32_t *uids, size_t n);
/* One "* n FETCH (...)" of a message's flags as the changes of others
 * are told (UID under QRESYNC, MODSEQ under CONDSTORE). */
void imap_session_send_flags(struct imap_session *s, uint32_t seq,
			     const struct imap_msg_meta *m);
/* The IDLE line reader: called by the input loop while s->idling. */
void imap_session_idle_input(struct imap_session *s);

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
imap_cmd_func imap_cmd_copy;
imap_cmd_func imap_cmd_move;
imap_cmd_func imap_cmd_uid_expunge;
imap_cmd_func imap_cmd_idle;
imap_cmd_func imap_cmd_search;
imap_cmd_func imap_cmd_sort;
imap_cmd_func imap_cmd_thread;
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
/* RFC 9208 (imap-cmd-quota.c) */
imap_cmd_func imap_cmd_getquotaroot;
imap_cmd_func imap_cmd_getquota;
imap_cmd_func imap_cmd_setquota;
imap_cmd_func imap_cmd_check;
/* imap-cmd-append.c */
imap_cmd_func imap_cmd_append;

#endif
