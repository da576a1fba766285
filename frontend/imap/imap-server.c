/* imap-server.c: the server on the shared connection layer (conn.h),
 * sessions and the command dispatcher.
 *
 * Input flows conn -> s->conn.in -> imap_parser_feed() -> dispatch, one
 * command at a time: while a command waits for the backend (s->busy), new
 * input only accumulates in s->conn.in (reading pauses at max_input).
 * Replies are gathered in s->conn.out and written in one step
 * (conn_flush).
 */
#include "imap-server-private.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "budget.h"
#include "log.h"
#include "mail-error.h"
#include "xalloc.h"

#include <openssl/crypto.h>

#define IMAP_LOG_SVC "imap"

/* Bytes of input buffer a session keeps between commands; a larger one
 * (grown by a long command or an APPEND) is given back once empty. */
#define IMAP_SESSION_IN_KEEP 1024u

/* The command table (STYLE rule 12): the dispatcher checks the state
 * flags, CAPABILITY is built from the capability column. */
const struct imap_command_def imap_commands[] = {
	{ "CAPABILITY", imap_cmd_capability, IMAP_CMD_ANY, NULL },
	{ "NOOP", imap_cmd_noop, IMAP_CMD_ANY, NULL },
	{ "LOGOUT", imap_cmd_logout, IMAP_CMD_ANY | IMAP_CMD_NO_SYNC, NULL },
	{ "LOGIN", imap_cmd_login, IMAP_CMD_NOT_AUTH, NULL },
	{ "STARTTLS", imap_cmd_starttls, IMAP_CMD_NOT_AUTH, NULL }, /* see capability */
	{ "AUTHENTICATE", imap_cmd_authenticate, IMAP_CMD_NOT_AUTH, NULL },
	{ "LIST", imap_cmd_list, IMAP_CMD_AUTH | IMAP_CMD_SELECTED, NULL },
	{ "SELECT", imap_cmd_select, IMAP_CMD_AUTH | IMAP_CMD_SELECTED | IMAP_CMD_NO_SYNC, NULL },
	{ "EXAMINE", imap_cmd_examine, IMAP_CMD_AUTH | IMAP_CMD_SELECTED | IMAP_CMD_NO_SYNC, NULL },
	{ "CLOSE", imap_cmd_close, IMAP_CMD_SELECTED | IMAP_CMD_NO_SYNC, NULL },
	{ "UNSELECT", imap_cmd_unselect, IMAP_CMD_SELECTED | IMAP_CMD_NO_SYNC, NULL },
	{ "EXPUNGE", imap_cmd_expunge, IMAP_CMD_SELECTED, NULL },
	{ "UID EXPUNGE", imap_cmd_uid_expunge, IMAP_CMD_SELECTED | IMAP_CMD_UID, NULL },
	{ "FETCH", imap_cmd_fetch, IMAP_CMD_SELECTED | IMAP_CMD_NO_EXPUNGE, NULL },
	{ "UID FETCH", imap_cmd_fetch, IMAP_CMD_SELECTED | IMAP_CMD_UID, NULL },
	{ "STORE", imap_cmd_store, IMAP_CMD_SELECTED | IMAP_CMD_NO_EXPUNGE, NULL },
	{ "UID STORE", imap_cmd_store, IMAP_CMD_SELECTED | IMAP_CMD_UID, NULL },
	{ "COPY", imap_cmd_copy, IMAP_CMD_SELECTED, NULL },
	{ "UID COPY", imap_cmd_copy, IMAP_CMD_SELECTED | IMAP_CMD_UID, NULL },
	{ "MOVE", imap_cmd_move, IMAP_CMD_SELECTED, NULL },
	{ "UID MOVE", imap_cmd_move, IMAP_CMD_SELECTED | IMAP_CMD_UID, NULL },
	{ "IDLE", imap_cmd_idle, IMAP_CMD_AUTH | IMAP_CMD_SELECTED | IMAP_CMD_NO_SYNC, NULL },
	{ "SEARCH", imap_cmd_search, IMAP_CMD_SELECTED | IMAP_CMD_NO_EXPUNGE, NULL },
	{ "UID SEARCH", imap_cmd_search, IMAP_CMD_SELECTED | IMAP_CMD_UID, NULL },
	{ "SORT", imap_cmd_sort, IMAP_CMD_SELECTED | IMAP_CMD_NO_EXPUNGE, NULL },
	{ "UID SORT", imap_cmd_sort, IMAP_CMD_SELECTED | IMAP_CMD_UID, NULL },
	{ "THREAD", imap_cmd_thread, IMAP_CMD_SELECTED | IMAP_CMD_NO_EXPUNGE, NULL },
	{ "UID THREAD", imap_cmd_thread, IMAP_CMD_SELECTED | IMAP_CMD_UID, NULL },
	{ "ID", imap_cmd_id, IMAP_CMD_ANY, NULL },
	{ "ENABLE", imap_cmd_enable, IMAP_CMD_AUTH | IMAP_CMD_SELECTED, NULL },
	{ "COMPRESS", imap_cmd_compress, IMAP_CMD_AUTH | IMAP_CMD_SELECTED | IMAP_CMD_NO_SYNC, NULL },
	/* mailboxes (imap-cmd-mbox.c) */
	{ "CREATE", imap_cmd_create, IMAP_CMD_AUTH | IMAP_CMD_SELECTED, NULL },
	{ "DELETE", imap_cmd_delete, IMAP_CMD_AUTH | IMAP_CMD_SELECTED, NULL },
	{ "RENAME", imap_cmd_rename, IMAP_CMD_AUTH | IMAP_CMD_SELECTED, NULL },
	{ "SUBSCRIBE", imap_cmd_subscribe, IMAP_CMD_AUTH | IMAP_CMD_SELECTED, NULL },
	{ "UNSUBSCRIBE", imap_cmd_unsubscribe, IMAP_CMD_AUTH | IMAP_CMD_SELECTED, NULL },
	{ "LSUB", imap_cmd_lsub, IMAP_CMD_AUTH | IMAP_CMD_SELECTED, NULL },
	{ "STATUS", imap_cmd_status, IMAP_CMD_AUTH | IMAP_CMD_SELECTED, NULL },
	{ "NAMESPACE", imap_cmd_namespace, IMAP_CMD_AUTH | IMAP_CMD_SELECTED, NULL },
	{ "CHECK", imap_cmd_check, IMAP_CMD_SELECTED, NULL },
	{ "APPEND", imap_cmd_append, IMAP_CMD_AUTH | IMAP_CMD_SELECTED, NULL },
	/* RFC 9208 (the capabilities are in the table below) */
	{ "GETQUOTAROOT", imap_cmd_getquotaroot, IMAP_CMD_AUTH | IMAP_CMD_SELECTED, NULL },
	{ "GETQUOTA", imap_cmd_getquota, IMAP_CMD_AUTH | IMAP_CMD_SELECTED, NULL },
	{ "SETQUOTA", imap_cmd_setquota, IMAP_CMD_AUTH | IMAP_CMD_SELECTED, NULL },
};
const size_t imap_commands_count = sizeof(imap_commands) / sizeof(imap_commands[0]);

/* The one list of capabilities (STYLE rule 12): CAPABILITY and the
 * greeting say them in this order (LITERAL+ or LITERAL- by the settings,
 * APPENDLIMIT with its value; STARTTLS, LOGINDISABLED and AUTH= come from
 * the session), ENABLE accepts the rows with an enable bit. A row marked
 * IMAP_CAP_PENDING names an extension whose commands are being written
 * on branch engmsg (the selected state): it is neither advertised nor
 * ENABLE-able until that work is merged and tested; drop the mark then. */
#define IMAP_CAP_PENDING 0x01u
const struct imap_capability_def imap_capabilities[] = {
	{ "IMAP4rev2", IMAP_ENABLED_IMAP4REV2, 0 },       /* RFC 9051 */
	{ "ID", 0, 0 },                                   /* RFC 2971 */
	{ "ENABLE", 0, 0 },                               /* RFC 5161 */
	{ "NAMESPACE", 0, 0 },                            /* RFC 2342 */
	{ "UNSELECT", 0, 0 },                             /* RFC 3691 */
	{ "CHILDREN", 0, 0 },                             /* RFC 3348 */
	{ "LIST-EXTENDED", 0, 0 },                        /* RFC 5258 */
	{ "LIST-STATUS", 0, 0 },                          /* RFC 5819 */
	{ "SPECIAL-USE", 0, 0 },                          /* RFC 6154 */
	{ "CREATE-SPECIAL-USE", 0, 0 },                   /* RFC 6154 */
	{ "STATUS=SIZE", 0, 0 },                          /* RFC 8438 */
	{ "MULTIAPPEND", 0, 0 },                          /* RFC 3502 */
	{ "APPENDLIMIT", 0, 0 },                          /* RFC 7889 (=n) */
	{ "UTF8=ACCEPT", IMAP_ENABLED_UTF8, 0 },          /* RFC 6855 */
	{ "COMPRESS=DEFLATE", 0, 0 },      /* RFC 4978 */
	{ "UIDPLUS", 0, 0 },               /* RFC 4315: COPYUID, UID EXPUNGE */
	{ "IDLE", 0, 0 },                  /* RFC 2177 */
	{ "MOVE", 0, 0 },                  /* RFC 6851 */
	{ "CONDSTORE", IMAP_ENABLED_CONDSTORE, 0 },                        /* RFC 7162 */
	{ "QRESYNC", IMAP_ENABLED_QRESYNC | IMAP_ENABLED_CONDSTORE, 0 },   /* RFC 7162 */
	{ "ESEARCH", 0, 0 },               /* RFC 4731 */
	{ "SEARCHRES", 0, 0 },             /* RFC 5182 */
	{ "SORT", 0, 0 },                  /* RFC 5256 */
	{ "SORT=DISPLAY", 0, 0 },          /* RFC 5957 */
	{ "THREAD=REFERENCES", 0, 0 },     /* RFC 5256 */
	{ "THREAD=ORDEREDSUBJECT", 0, 0 }, /* RFC 5256 */
	{ "BINARY", 0, 0 },                /* RFC 3516 */
	{ "QUOTA", 0, 0 },                 /* RFC 9208 */
	{ "QUOTA=RES-STORAGE", 0, 0 },     /* RFC 9208 5.1 */
	{ "QUOTA=RES-MESSAGE", 0, 0 },     /* RFC 9208 5.2 */
};
const size_t imap_capabilities_count = sizeof(imap_capabilities) / sizeof(imap_capabilities[0]);

const struct imap_capability_def *imap_capability_find(const char *name)
{
	for (size_t i = 0; i < imap_capabilities_count; i++) {
		if ((imap_capabilities[i].flags & IMAP_CAP_PENDING) == 0 &&
		    strcasecmp(imap_capabilities[i].name, name) == 0)
			return &imap_capabilities[i];
	}
	return NULL;
}

void imap_settings_init(struct imap_settings *set)
{
	memset(set, 0, sizeof(*set));
	set->conn = (struct conn_settings){
		.host = IMAP_DEFAULT_LISTEN_HOST,
		.port = IMAP_DEFAULT_LISTEN_PORT,
		.idle_timeout_ms = IMAP_DEFAULT_IDLE_TIMEOUT_MS,
		.preauth_timeout_ms = IMAP_DEFAULT_PREAUTH_TIMEOUT_MS,
		.max_sessions = IMAP_DEFAULT_MAX_SESSIONS,
		.max_sessions_per_ip = IMAP_DEFAULT_MAX_SESSIONS_PER_IP,
		.max_input = IMAP_DEFAULT_MAX_INPUT,
		.max_output = IMAP_DEFAULT_MAX_OUTPUT,
		.max_bad_commands = IMAP_DEFAULT_MAX_BAD_COMMANDS,
		.max_auth_failures = IMAP_DEFAULT_MAX_AUTH_FAILURES,
	};
	set->append_limit = IMAP_DEFAULT_APPEND_LIMIT;
	set->append_max_total = IMAP_DEFAULT_APPEND_MAX_TOTAL;
	imap_parser_limits_default(&set->limits_preauth, 0);
	imap_parser_limits_default(&set->limits_auth, 1);
}

static char *imap_server_capability_build(const struct imap_settings *set)
{
	buf b;
	buf_init(&b);
	buf_append_str(&b, set->literal_minus ? "IMAP4rev1 LITERAL-" : "IMAP4rev1 LITERAL+");
	for (size_t i = 0; i < imap_capabilities_count; i++) {
		const struct imap_capability_def *cap = &imap_capabilities[i];
		if ((cap->flags & IMAP_CAP_PENDING) != 0)
			continue;
		if (strcmp(cap->name, "APPENDLIMIT") == 0)
			buf_printf(&b, " APPENDLIMIT=%llu", (unsigned long long)set->append_limit);
		else
			buf_printf(&b, " %s", cap->name);
	}
	/* a command row may name its capability too (once) */
	for (size_t i = 0; i < imap_commands_count; i++) {
		const char *name = imap_commands[i].capability;
		if (name != NULL && imap_capability_find(name) == NULL)
			buf_printf(&b, " %s", name);
	}
	buf_append(&b, "", 1);
	return (char *)buf_steal(&b, NULL);
}

char *imap_session_capability(const struct imap_session *s)
{
	const struct imap_server *server = s->server;
	const char *auth = imap_login_mechs(&server->login);
	return xasprintf("%s%s%s%s", server->capability,
			 server->set.conn.access.tls != NULL && s->conn.tls == NULL ? " STARTTLS" : "",
			 !conn_credentials_allowed(&s->conn) ? " LOGINDISABLED"
			 : strcmp(auth, "PLAIN LOGIN") == 0
				 ? " AUTH=PLAIN AUTH=LOGIN SASL-IR"
				 : " AUTH=PLAIN AUTH=LOGIN AUTH=SCRAM-SHA-256 SASL-IR",
			 "");
}

/* ---- sessions -------------------------------------------------------- */

static void imap_session_cmd_ctx_free(struct imap_session *s)
{
	if (s->cmd_ctx != NULL && s->cmd_ctx_free != NULL)
		s->cmd_ctx_free(s->cmd_ctx);
	s->cmd_ctx = NULL;
	s->cmd_ctx_free = NULL;
}

/* The command being read or run ended: its literals' budget goes back. */
static void imap_session_literals_release(struct imap_session *s)
{
	/* the budget, not s->server: a closed session may outlive its
	 * server (a backend call still pending) */
	if (s->literal_budget > 0)
		mem_budget_give(s->literal_budget_pool, s->literal_budget);
	s->literal_budget = 0;
	s->literal_held = 0;
}

static void imap_session_destroy(struct conn *c)
{
	struct imap_session *s = (struct imap_session *)c;
	imap_session_literals_release(s);
	imap_session_cmd_ctx_free(s);
	imap_session_mailbox_clear(s);
	free(s->sync_skip.r);
	free(s->done_code);
	free(s->done_text);
	imap_parser_destroy(&s->parser);
	imap_login_free(&s->login);
	free(s->user);
	free(s->tag);
}

void imap_session_bye(struct imap_session *s, const char *text, const char *reason)
{
	if (conn_is_closed(&s->conn))
		return;
	conn_printf(&s->conn, "* BYE %s\r\n", text);
	conn_close_after_write(&s->conn, reason);
}

void imap_session_append_string(struct imap_session *s, const char *str, size_t len)
{
	int atom = len > 0 && !(len == 3 && strncasecmp(str, "NIL", 3) == 0);
	int quotable = 1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)str[i];
		if (c == '\0' || c == '\r' || c == '\n' || c >= 0x80)
			quotable = 0;
		if (c <= 0x20 || c >= 0x7f || strchr("(){\"\\%*]", c) != NULL)
			atom = 0;
	}
	if (atom) {
		conn_append(&s->conn, str, len);
	} else if (quotable) {
		conn_append(&s->conn, "\"", 1);
		for (size_t i = 0; i < len; i++) {
			if (str[i] == '"' || str[i] == '\\')
				conn_append(&s->conn, "\\", 1);
			conn_append(&s->conn, &str[i], 1);
		}
		conn_append(&s->conn, "\"", 1);
	} else {
		conn_printf(&s->conn, "{%zu}\r\n", len);
		conn_append(&s->conn, str, len);
	}
}

/* The write callback: a FETCH waiting for the client goes on. */
static void imap_session_drained(struct conn *c)
{
	struct imap_session *s = (struct imap_session *)c;
	if (s->on_drain != NULL) {
		void (*resume)(struct imap_session *) = s->on_drain;
		s->on_drain = NULL;
		resume(s);
	}
}

/* ---- commands -------------------------------------------------------- */

/* The tagged reply and the end of the command. */
static void imap_cmd_reply(struct imap_session *s, const char *status, const char *code,
			   const char *text)
{
	if (code != NULL)
		conn_printf(&s->conn, "%s %s [%s] %s\r\n", s->tag, status, code, text);
	else
		conn_printf(&s->conn, "%s %s %s\r\n", s->tag, status, text);
	free(s->tag);
	s->tag = NULL;
	s->busy = 0;
	s->cmd_uid = 0;
	s->cmd_flags = 0;
	s->on_drain = NULL;
	free(s->sync_skip.r);
	memset(&s->sync_skip, 0, sizeof(s->sync_skip));
	imap_session_cmd_ctx_free(s);
	imap_session_literals_release(s);
	if (conn_command_ended(&s->conn, strcmp(status, "BAD") == 0))
		imap_session_bye(s, "Too many invalid commands", "too-many-bad");
}

/* The changes are told: now the tagged reply held for them. */
static void imap_cmd_done_synced(struct imap_session *s)
{
	char *code = s->done_code, *text = s->done_text;
	const char *status = s->done_status;
	s->done_code = NULL;
	s->done_text = NULL;
	s->done_status = NULL;
	imap_cmd_reply(s, status, code, text);
	free(code);
	free(text);
	conn_process(&s->conn);
}

void imap_cmd_done(struct imap_session *s, const char *status, const char *code,
		   const char *text)
{
	/* Changes of the selected mailbox are told before the tagged reply
	 * (RFC 3501 7.4.1; imap-session-changes.c), expunges only where
	 * the command allows them. */
	if (s->state == IMAP_STATE_SELECTED && strcmp(status, "BAD") != 0 &&
	    (s->cmd_flags & IMAP_CMD_NO_SYNC) == 0 && !s->syncing && s->tag != NULL) {
		int allow = (s->cmd_flags & IMAP_CMD_NO_EXPUNGE) == 0;
		if (allow)
			imap_session_report_expunge_pending(s);
		if (imap_session_sync_wanted(s)) {
			s->done_status = strcmp(status, "OK") == 0 ? "OK" : "NO";
			s->done_code = code != NULL ? xstrdup(code) : NULL;
			s->done_text = xstrdup(text);
			imap_session_sync(s, allow, imap_cmd_done_synced);
			return;
		}
	}
	imap_cmd_reply(s, status, code, text);
}

void imap_cmd_fail(struct imap_session *s, int mail_error)
{
	const struct mail_error_info *info = mail_error_info(mail_error);
	const char *status = mail_error == MAIL_ERR_PARAMS ? "BAD" : "NO";
	imap_cmd_done(s, status, info->imap_code, info->text);
}

static const struct imap_command_def *imap_command_find(const char *name)
{
	for (size_t i = 0; i < imap_commands_count; i++) {
		if (strcmp(imap_commands[i].name, name) == 0)
			return &imap_commands[i];
	}
	return NULL;
}

static unsigned imap_state_flag(enum imap_session_state state)
{
	switch (state) {
	case IMAP_STATE_NOT_AUTH:
		return IMAP_CMD_NOT_AUTH;
	case IMAP_STATE_AUTH:
		return IMAP_CMD_AUTH;
	case IMAP_STATE_SELECTED:
		return IMAP_CMD_SELECTED;
	}
	return 0;
}

static void imap_session_dispatch(struct imap_session *s, struct imap_command *cmd)
{
	const struct imap_arg *args = cmd->args.args;
	size_t n_args = cmd->args.count;
	const struct imap_command_def *def = NULL;
	const char *sub;

	s->tag = xstrdup(cmd->tag);
	s->busy = 1;
	if (strcmp(cmd->name, "UID") == 0) {
		if (n_args > 0 && imap_arg_get_atom(&args[0], &sub) && strlen(sub) < 32) {
			char name[40];
			snprintf(name, sizeof(name), "UID %s", sub);
			for (char *p = name; *p != '\0'; p++) {
				if (*p >= 'a' && *p <= 'z')
					*p = (char)(*p - 'a' + 'A');
			}
			def = imap_command_find(name);
			args++;
			n_args--;
		}
	} else {
		def = imap_command_find(cmd->name);
	}
	if (def == NULL) {
		imap_cmd_done(s, "BAD", NULL, "Unknown command");
		return;
	}
	if ((def->flags & imap_state_flag(s->state)) == 0) {
		const char *text = s->state == IMAP_STATE_NOT_AUTH ? "Not authenticated"
				   : (def->flags & IMAP_CMD_NOT_AUTH) ? "Already authenticated"
								      : "No mailbox selected";
		imap_cmd_done(s, "BAD", NULL, text);
		return;
	}
	s->cmd_uid = (def->flags & IMAP_CMD_UID) != 0;
	s->cmd_flags = def->flags;
	def->func(s, args, n_args);
}

/* ---- input ---------------------------------------------------------- */

/* A line of an AUTHENTICATE exchange: taken from s->conn.in when whole;
 * RFC 4959/4954: a response line may be 12288 octets. */
static void imap_session_auth_line(struct imap_session *s)
{
	buf *in = &s->conn.in;
	const uint8_t *nl = memchr(in->data, '\n', in->len);
	if (nl == NULL) {
		if (in->len > CONN_AUTH_LINE_MAX + 2)
			imap_session_bye(s, "Authentication line too long", "auth-line-too-long");
		return;
	}
	size_t len = (size_t)(nl - in->data);
	char *line = xmalloc(len + 1);
	memcpy(line, in->data, len);
	line[len] = '\0';
	buf_consume(in, len + 1);
	if (len > 0 && line[len - 1] == '\r')
		len--;
	imap_login_line(s->login, line, len);
	OPENSSL_cleanse(line, len);
	free(line);
}

static int imap_session_auth_reading(const struct imap_session *s)
{
	return s->login != NULL && imap_login_reading(s->login);
}

/* The parser met a literal over its limits (IMAP_PARSE_LITERAL). Only an
 * APPEND of an authenticated session may carry one: its messages are
 * bounded by append_limit each (RFC 7889: NO [TOOBIG], before the bytes
 * come when the client waits for "+"), by append_max_total together, and
 * by the body budget the frontend's sessions share (NO [UNAVAILABLE]:
 * the client retries later). Under LITERAL- a non-synchronising literal
 * over 4096 bytes is a protocol error whose bytes are on their way: BAD
 * [TOOBIG], then the connection closes (RFC 7888 4). A refused command is
 * answered now; the parser drops the rest of it. */
static void imap_session_literal(struct imap_session *s, const struct imap_command *cmd)
{
	const struct imap_settings *set = &s->server->set;
	struct imap_parser_literal lit;
	imap_parser_literal_get(s->parser, &lit);
	const char *status = "BAD", *code = NULL, *text = "Literal too large";
	int close = 0;
	if (lit.nonsync && set->literal_minus && lit.size > IMAP_LITERAL_MINUS_MAX) {
		code = "TOOBIG";
		text = "Non-synchronizing literal over 4096 octets (LITERAL-)";
		close = 1;
	} else if (cmd->name != NULL && strcmp(cmd->name, "APPEND") == 0 &&
		   s->state != IMAP_STATE_NOT_AUTH) {
		struct mem_budget *budget = set->conn.access.body_budget;
		status = "NO";
		if (lit.size > set->append_limit) {
			code = "TOOBIG";
			text = "Message too large (APPENDLIMIT)";
		} else if (s->literal_held + lit.size > set->append_max_total) {
			code = "LIMIT";
			text = "Messages too large together";
		} else if (budget != NULL && mem_budget_take(budget, (size_t)lit.size) < 0) {
			code = "UNAVAILABLE";
			text = "Server busy, try again later";
		} else {
			if (budget != NULL) {
				s->literal_budget += (size_t)lit.size;
				s->literal_budget_pool = budget;
			}
			s->literal_held += lit.size;
			imap_parser_literal_accept(s->parser);
			if (!lit.nonsync)
				conn_append(&s->conn, "+ Ready for literal data\r\n", 26);
			return;
		}
	}
	log_event(LOG_INFO, IMAP_LOG_SVC,
		  "event=literal_refused sid=%s command=%s size=%llu nonsync=%d code=%s", s->conn.id,
		  cmd->name != NULL ? cmd->name : "-", (unsigned long long)lit.size, lit.nonsync,
		  code != NULL ? code : "-");
	s->tag = xstrdup(cmd->tag != NULL ? cmd->tag : "*");
	s->busy = 1;
	imap_parser_literal_refuse(s->parser); /* cmd is gone from here */
	imap_cmd_done(s, status, code, text);
	/* the bytes the client is sending are read (and dropped) first, so
	 * that it reads the answer rather than a reset connection */
	if (close)
		s->bye_after_command = 1;
}

static void imap_session_input(struct conn *c)
{
	struct imap_session *s = (struct imap_session *)c;
	while ((!s->busy || imap_session_auth_reading(s) || s->idling) && !c->closed &&
	       c->in.len > 0) {
		if (s->idling) {
			size_t before = c->in.len;
			imap_session_idle_input(s);
			if (c->in.len == before)
				break; /* no whole line yet */
			continue;
		}
		if (imap_session_auth_reading(s)) {
			size_t before = c->in.len;
			imap_session_auth_line(s);
			if (c->in.len == before)
				break; /* no whole line yet */
			continue;
		}
		if (s->bye_after_command && imap_parser_is_idle(s->parser))
			break; /* nothing after the refused command runs */
		struct imap_command *cmd;
		const char *error;
		size_t used = 0;
		int ret = imap_parser_feed(s->parser, c->in.data, c->in.len, &used, &cmd, &error);
		buf_consume(&c->in, used);
		if (ret == IMAP_PARSE_NEED_MORE)
			break;
		if (ret == IMAP_PARSE_CONTINUATION) {
			conn_append(c, "+ Ready for literal data\r\n", 26);
			continue;
		}
		if (ret == IMAP_PARSE_LITERAL) {
			imap_session_literal(s, cmd);
			continue;
		}
		if (ret == IMAP_PARSE_DROPPED)
			continue; /* a refused command's end: answered already */
		if (ret == IMAP_PARSE_ERROR) {
			s->tag = xstrdup(cmd->tag != NULL ? cmd->tag : "*");
			s->busy = 1;
			imap_cmd_done(s, "BAD", NULL, error);
			continue;
		}
		imap_session_dispatch(s, cmd);
	}
	if (s->bye_after_command && !c->closed && imap_parser_is_idle(s->parser))
		imap_session_bye(s, "Literal too large", "literal-minus");
	/* a session at rest keeps no input buffer a large command grew
	 * (issue 9 item 4: sessions are many and mostly idle) */
	if (c->in.len == 0 && c->in.cap > IMAP_SESSION_IN_KEEP)
		buf_deinit(&c->in);
}

void imap_session_authenticated(struct imap_session *s)
{
	imap_parser_set_limits(s->parser, &s->server->set.limits_auth);
	conn_authenticated(&s->conn);
}

static void imap_session_idle(struct conn *c)
{
	imap_session_bye((struct imap_session *)c, "Autologout; idle for too long",
			 "idle-timeout");
}

static void imap_session_accepted(struct conn *c)
{
	struct imap_session *s = (struct imap_session *)c;
	s->server = conn_server_ctx(c->server);
	s->parser = imap_parser_create(&s->server->set.limits_preauth);
	char *cap = imap_session_capability(s);
	conn_printf(c, "* OK [CAPABILITY %s] IMAP4rev1 ready\r\n", cap);
	free(cap);
}

/* ---- the server ------------------------------------------------------ */

static void imap_server_done(void *ctx)
{
	struct imap_server *server = ctx;
	free(server->capability);
	free(server);
}

static const struct conn_ops imap_conn_ops = {
	.log_svc = IMAP_LOG_SVC,
	.session_size = sizeof(struct imap_session),
	.accepted = imap_session_accepted,
	.input = imap_session_input,
	.drained = imap_session_drained,
	.idle = imap_session_idle,
	.destroy = imap_session_destroy,
	.server_done = imap_server_done,
	.refused_reply = "* BYE Too many connections, try again later\r\n",
	.shutdown_reply = "* BYE Server shutting down\r\n",
};

int imap_server_start(uv_loop_t *loop, const struct imap_settings *set,
		      const struct imap_backend *backend, void *backend_ctx,
		      imap_server **server_r, const char **error_r)
{
	struct imap_server *server = xcalloc(1, sizeof(*server));
	struct imap_settings *ss = &server->set;
	server->loop = loop;
	*ss = *set;
	if (ss->conn.host == NULL)
		ss->conn.host = IMAP_DEFAULT_LISTEN_HOST;
	if (ss->conn.max_input < ss->limits_auth.max_line)
		ss->conn.max_input = ss->limits_auth.max_line;
	server->backend = backend;
	server->backend_ctx = backend_ctx;
	server->login = (struct imap_login_backend){ backend, backend_ctx,
						     set->conn.access.sasl_secret,
						     set->conn.access.sasl_secret_len };
	if (ss->append_limit < 1024)
		ss->append_limit = 1024;
	if (ss->append_limit > IMAP_APPEND_TOTAL_MAX)
		ss->append_limit = IMAP_APPEND_TOTAL_MAX;
	if (ss->append_max_total < ss->append_limit)
		ss->append_max_total = ss->append_limit;
	if (ss->append_max_total > IMAP_APPEND_TOTAL_MAX)
		ss->append_max_total = IMAP_APPEND_TOTAL_MAX;
	/* the engine decides on over-limit literals (APPEND, LITERAL-) */
	ss->limits_preauth.literal_events = 1;
	ss->limits_auth.literal_events = 1;
	ss->limits_preauth.max_nonsync_literal = ss->literal_minus ? IMAP_LITERAL_MINUS_MAX : 0;
	ss->limits_auth.max_nonsync_literal = ss->literal_minus ? IMAP_LITERAL_MINUS_MAX : 0;
	server->capability = imap_server_capability_build(ss);
	if (conn_server_start(loop, &ss->conn, &imap_conn_ops, server, &server->conns,
			      error_r) < 0) {
		imap_server_done(server);
		return -1;
	}
	ss->conn.host = NULL; /* the caller's: conn keeps a copy */
	*server_r = server;
	return 0;
}

int imap_server_port(const imap_server *server)
{
	return conn_server_port(server->conns);
}

unsigned imap_server_session_count(const imap_server *server)
{
	return conn_server_count(server->conns);
}

void imap_server_stop(imap_server **serverp)
{
	struct imap_server *server = *serverp;
	if (server == NULL)
		return;
	*serverp = NULL;
	/* server is freed by imap_server_done, once the last session is */
	conn_server_stop(&server->conns);
}
