/* pop3-server.c: the server on the shared connection layer (conn.h),
 * sessions, replies and the command dispatcher.
 *
 * Input flows conn -> s->conn.in -> pop3_parser_feed() -> dispatch, one
 * command at a time: while a command waits for the backend or for the
 * client to read (s->busy), new input only accumulates in s->conn.in
 * (reading pauses at max_input). During a SASL exchange the parser reads
 * the client's response lines instead (its SASL mode).
 */
#include "pop3-server-private.h"
#include "maildrop-lock.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mail-error.h"
#include "xalloc.h"

/* The command table (STYLE rule 12): the dispatcher checks the state
 * flags and argument counts; CAPA is built from the capa column. A name
 * may have a row per state (QUIT). */
const struct pop3_command_def pop3_commands[] = {
	{ "CAPA", pop3_cmd_capa, POP3_CMD_ANY, 0, 0, "CAPA", NULL },
	{ "STLS", pop3_cmd_stls, POP3_CMD_AUTHORIZATION, 0, 0, "STLS", "STLS" },
	{ "USER", pop3_cmd_user, POP3_CMD_AUTHORIZATION | POP3_CMD_CREDENTIALS, 1, 1,
	  "USER <name>", "USER" },
	{ "PASS", pop3_cmd_pass,
	  POP3_CMD_AUTHORIZATION | POP3_CMD_CREDENTIALS | POP3_CMD_REST, 1, 1,
	  "PASS <password>", NULL },
	{ "AUTH", pop3_cmd_auth, POP3_CMD_AUTHORIZATION | POP3_CMD_CREDENTIALS, 0, 2,
	  "AUTH <mechanism> [<initial-response>]", "SASL" },
	{ "QUIT", pop3_cmd_quit_authorization, POP3_CMD_AUTHORIZATION, 0, 0, "QUIT", NULL },
	{ "STAT", pop3_cmd_stat, POP3_CMD_TRANSACTION, 0, 0, "STAT", NULL },
	{ "LIST", pop3_cmd_list, POP3_CMD_TRANSACTION, 0, 1, "LIST [<msg>]", NULL },
	{ "UIDL", pop3_cmd_uidl, POP3_CMD_TRANSACTION, 0, 1, "UIDL [<msg>]", "UIDL" },
	{ "RETR", pop3_cmd_retr, POP3_CMD_TRANSACTION, 1, 1, "RETR <msg>", NULL },
	{ "TOP", pop3_cmd_top, POP3_CMD_TRANSACTION, 2, 2, "TOP <msg> <lines>", "TOP" },
	{ "DELE", pop3_cmd_dele, POP3_CMD_TRANSACTION, 1, 1, "DELE <msg>", NULL },
	{ "RSET", pop3_cmd_rset, POP3_CMD_TRANSACTION, 0, 0, "RSET", NULL },
	{ "NOOP", pop3_cmd_noop, POP3_CMD_TRANSACTION, 0, 0, "NOOP", NULL },
	{ "QUIT", pop3_cmd_quit_transaction, POP3_CMD_TRANSACTION, 0, 0, "QUIT", NULL },
};
const size_t pop3_commands_count = sizeof(pop3_commands) / sizeof(pop3_commands[0]);

void pop3_settings_init(struct pop3_settings *set)
{
	memset(set, 0, sizeof(*set));
	set->conn = (struct conn_settings){
		.host = POP3_DEFAULT_LISTEN_HOST,
		.port = POP3_DEFAULT_LISTEN_PORT,
		.idle_timeout_ms = POP3_DEFAULT_IDLE_TIMEOUT_MS,
		.preauth_timeout_ms = POP3_DEFAULT_PREAUTH_TIMEOUT_MS,
		.max_sessions = POP3_DEFAULT_MAX_SESSIONS,
		.max_sessions_per_ip = POP3_DEFAULT_MAX_SESSIONS_PER_IP,
		.max_input = POP3_DEFAULT_MAX_INPUT,
		.max_output = POP3_DEFAULT_MAX_OUTPUT,
		.max_bad_commands = POP3_DEFAULT_MAX_BAD_COMMANDS,
		.max_auth_failures = POP3_DEFAULT_MAX_AUTH_FAILURES,
	};
	set->mark_seen = POP3_DEFAULT_MARK_SEEN;
	set->implementation = POP3_DEFAULT_IMPLEMENTATION;
	pop3_parser_limits_default(&set->limits);
}

/* ---- replies --------------------------------------------------------- */

static void pop3_session_cmd_ctx_free(struct pop3_session *s)
{
	if (s->cmd_ctx != NULL && s->cmd_ctx_free != NULL)
		s->cmd_ctx_free(s->cmd_ctx);
	s->cmd_ctx = NULL;
	s->cmd_ctx_free = NULL;
}

static void pop3_cmd_end(struct pop3_session *s, int bad)
{
	s->busy = 0;
	s->on_drain = NULL;
	pop3_session_cmd_ctx_free(s);
	if (conn_command_ended(&s->conn, bad))
		conn_close_after_write(&s->conn, "too-many-bad");
}

void pop3_cmd_finish(struct pop3_session *s)
{
	pop3_cmd_end(s, 0);
}

void pop3_cmd_ok(struct pop3_session *s, const char *fmt, ...)
{
	char text[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	conn_printf(&s->conn, "+OK %s\r\n", text);
	pop3_cmd_end(s, 0);
}

void pop3_cmd_err(struct pop3_session *s, const char *code, const char *text)
{
	if (code != NULL)
		conn_printf(&s->conn, "-ERR [%s] %s\r\n", code, text);
	else
		conn_printf(&s->conn, "-ERR %s\r\n", text);
	pop3_cmd_end(s, 0);
}

void pop3_cmd_bad(struct pop3_session *s, const char *text)
{
	conn_printf(&s->conn, "-ERR %s\r\n", text);
	pop3_cmd_end(s, 1);
}

void pop3_cmd_fail(struct pop3_session *s, int mail_error)
{
	const struct mail_error_info *info = mail_error_info(mail_error);
	pop3_cmd_err(s, info->temporary ? "SYS/TEMP" : "SYS/PERM", info->text);
}

static void pop3_session_drained(struct conn *c)
{
	struct pop3_session *s = (struct pop3_session *)c;
	if (s->on_drain != NULL) {
		void (*resume)(struct pop3_session *) = s->on_drain;
		s->on_drain = NULL;
		resume(s);
	}
}

/* ---- dispatch -------------------------------------------------------- */

static unsigned pop3_state_flag(enum pop3_state state)
{
	switch (state) {
	case POP3_STATE_AUTHORIZATION:
		return POP3_CMD_AUTHORIZATION;
	case POP3_STATE_TRANSACTION:
		return POP3_CMD_TRANSACTION;
	case POP3_STATE_UPDATE:
		return 0;
	}
	return 0;
}

static void pop3_session_dispatch(struct pop3_session *s, const struct pop3_command *cmd)
{
	const struct pop3_command_def *def = NULL;
	int known = 0;
	for (size_t i = 0; i < pop3_commands_count && def == NULL; i++) {
		if (strcmp(pop3_commands[i].name, cmd->name) != 0)
			continue;
		known = 1;
		if (pop3_commands[i].flags & pop3_state_flag(s->state))
			def = &pop3_commands[i];
	}
	s->busy = 1;
	if (def == NULL) {
		pop3_cmd_bad(s, !known ? "Unknown command"
				: s->state == POP3_STATE_AUTHORIZATION ? "Not logged in"
								       : "Already logged in");
		return;
	}
	size_t n = (def->flags & POP3_CMD_REST) ? (cmd->rest[0] != '\0') : cmd->n_args;
	if (n < def->min_args || n > def->max_args) {
		char text[96];
		snprintf(text, sizeof(text), "Usage: %s", def->usage);
		pop3_cmd_bad(s, text);
		return;
	}
	if ((def->flags & POP3_CMD_CREDENTIALS) && !conn_credentials_allowed(&s->conn)) {
		pop3_cmd_err(s, "AUTH",
			     "Plaintext authentication disallowed on non-secure connection");
		return;
	}
	def->func(s, cmd);
}

/* ---- input ----------------------------------------------------------- */

int pop3_session_auth_reading(const struct pop3_session *s)
{
	return s->login != NULL && imap_login_reading(s->login);
}

static void pop3_session_input(struct conn *c)
{
	struct pop3_session *s = (struct pop3_session *)c;
	while ((!s->busy || pop3_session_auth_reading(s)) && !c->closed && c->in.len > 0) {
		int sasl = pop3_session_auth_reading(s);
		struct pop3_command *cmd;
		const char *error;
		size_t used = 0;
		pop3_parser_set_sasl(s->parser, sasl);
		int ret = pop3_parser_feed(s->parser, c->in.data, c->in.len, &used, &cmd, &error);
		buf_consume(&c->in, used);
		if (ret == POP3_PARSE_NEED_MORE)
			break;
		if (ret == POP3_PARSE_ERROR) {
			/* a SASL exchange waiting for this line ends with it (no
			 * backend call is pending while it waits) */
			imap_login_free(&s->login);
			s->busy = 1;
			pop3_cmd_bad(s, error);
		} else if (sasl) {
			imap_login_line(s->login, cmd->line, cmd->line_len);
		} else {
			pop3_session_dispatch(s, cmd);
		}
	}
}

/* ---- sessions -------------------------------------------------------- */

void pop3_session_unlock(struct pop3_session *s)
{
	if (s->lock_user == NULL)
		return;
	maildrop_lock_release(s->server->set.locks, s->lock_user);
	free(s->lock_user);
	s->lock_user = NULL;
}

static void pop3_session_destroy(struct conn *c)
{
	struct pop3_session *s = (struct pop3_session *)c;
	pop3_session_cmd_ctx_free(s);
	pop3_session_maildrop_clear(s);
	pop3_session_unlock(s);
	pop3_parser_destroy(&s->parser);
	imap_login_free(&s->login);
	free(s->user);
}

static void pop3_session_idle(struct conn *c)
{
	/* RFC 1939 3 says to close without a word; a line helps debugging
	 * and a client with no command outstanding ignores it */
	conn_printf(c, "-ERR Disconnected for inactivity\r\n");
	conn_close_after_write(c, "idle-timeout");
}

static void pop3_session_accepted(struct conn *c)
{
	struct pop3_session *s = (struct pop3_session *)c;
	s->server = conn_server_ctx(c->server);
	s->parser = pop3_parser_create(&s->server->set.limits);
	conn_printf(c, "+OK POP3 ready\r\n");
}

/* ---- the server ------------------------------------------------------ */

static void pop3_server_done(void *ctx)
{
	free(ctx);
}

static const struct conn_ops pop3_conn_ops = {
	.log_svc = POP3_LOG_SVC,
	.session_size = sizeof(struct pop3_session),
	.accepted = pop3_session_accepted,
	.input = pop3_session_input,
	.drained = pop3_session_drained,
	.idle = pop3_session_idle,
	.destroy = pop3_session_destroy,
	.server_done = pop3_server_done,
	.refused_reply = "-ERR [SYS/TEMP] Too many connections, try again later\r\n",
	.shutdown_reply = "-ERR [SYS/TEMP] Server shutting down\r\n",
};

int pop3_server_start(uv_loop_t *loop, const struct pop3_settings *set,
		      const struct imap_backend *backend, void *backend_ctx,
		      pop3_server **server_r, const char **error_r)
{
	struct pop3_server *server = xcalloc(1, sizeof(*server));
	struct pop3_settings *ss = &server->set;
	server->loop = loop;
	*ss = *set;
	if (ss->conn.host == NULL)
		ss->conn.host = POP3_DEFAULT_LISTEN_HOST;
	if (ss->conn.max_input < ss->limits.max_auth_line)
		ss->conn.max_input = ss->limits.max_auth_line;
	server->backend = backend;
	server->backend_ctx = backend_ctx;
	server->login = (struct imap_login_backend){ backend, backend_ctx,
						     set->conn.access.sasl_secret,
						     set->conn.access.sasl_secret_len };
	if (conn_server_start(loop, &ss->conn, &pop3_conn_ops, server, &server->conns,
			      error_r) < 0) {
		free(server);
		return -1;
	}
	ss->conn.host = NULL; /* the caller's: conn keeps a copy */
	*server_r = server;
	return 0;
}

int pop3_server_port(const pop3_server *server)
{
	return conn_server_port(server->conns);
}

unsigned pop3_server_session_count(const pop3_server *server)
{
	return conn_server_count(server->conns);
}

void pop3_server_stop(pop3_server **serverp)
{
	struct pop3_server *server = *serverp;
	if (server == NULL)
		return;
	*serverp = NULL;
	/* server is freed by pop3_server_done, once the last session is */
	conn_server_stop(&server->conns);
}
