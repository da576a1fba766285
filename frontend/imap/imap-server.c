/* imap-server.c: listener, sessions, I/O and the command dispatcher.
 *
 * Input flows read_cb -> s->in -> imap_parser_feed() -> dispatch, one
 * command at a time: while a command waits for the backend (s->busy), new
 * input only accumulates in s->in, and reading pauses once s->in holds
 * max_input bytes. Replies are gathered in s->out and handed to libuv in
 * one uv_write per step (imap_session_flush).
 */
#include "imap-server-private.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cidr.h"
#include "log.h"
#include "sasl.h"

#include <openssl/crypto.h>
#include "mail-error.h"
#include "tls.h"
#include "util.h"
#include "xalloc.h"

#define IMAP_LOG_SVC "imap"

struct imap_penalty {
	uv_timer_t timer;
	struct imap_session *s;
	void (*fn)(struct imap_session *s);
};

static void imap_penalty_close_cb(uv_handle_t *h)
{
	free(h->data);
}

/* The command table (STYLE rule 12): the dispatcher checks the state
 * flags, CAPABILITY is built from the capability column. */
const struct imap_command_def imap_commands[] = {
	{ "CAPABILITY", imap_cmd_capability, IMAP_CMD_ANY, NULL },
	{ "NOOP", imap_cmd_noop, IMAP_CMD_ANY, NULL },
	{ "LOGOUT", imap_cmd_logout, IMAP_CMD_ANY, NULL },
	{ "LOGIN", imap_cmd_login, IMAP_CMD_NOT_AUTH, NULL },
	{ "STARTTLS", imap_cmd_starttls, IMAP_CMD_NOT_AUTH, NULL }, /* see capability */
	{ "AUTHENTICATE", imap_cmd_authenticate, IMAP_CMD_NOT_AUTH, NULL },
	{ "LIST", imap_cmd_list, IMAP_CMD_AUTH | IMAP_CMD_SELECTED, NULL },
	{ "SELECT", imap_cmd_select, IMAP_CMD_AUTH | IMAP_CMD_SELECTED, NULL },
	{ "EXAMINE", imap_cmd_examine, IMAP_CMD_AUTH | IMAP_CMD_SELECTED, NULL },
	{ "CLOSE", imap_cmd_close, IMAP_CMD_SELECTED, NULL },
	{ "UNSELECT", imap_cmd_unselect, IMAP_CMD_SELECTED, "UNSELECT" },
	{ "EXPUNGE", imap_cmd_expunge, IMAP_CMD_SELECTED, NULL },
	{ "FETCH", imap_cmd_fetch, IMAP_CMD_SELECTED, NULL },
	{ "UID FETCH", imap_cmd_fetch, IMAP_CMD_SELECTED | IMAP_CMD_UID, NULL },
	{ "STORE", imap_cmd_store, IMAP_CMD_SELECTED, NULL },
	{ "UID STORE", imap_cmd_store, IMAP_CMD_SELECTED | IMAP_CMD_UID, NULL },
};
const size_t imap_commands_count = sizeof(imap_commands) / sizeof(imap_commands[0]);

void imap_settings_init(struct imap_settings *set)
{
	memset(set, 0, sizeof(*set));
	set->listen_host = IMAP_DEFAULT_LISTEN_HOST;
	set->listen_port = IMAP_DEFAULT_LISTEN_PORT;
	set->allow_plaintext_login = 0;
	set->idle_timeout_ms = IMAP_DEFAULT_IDLE_TIMEOUT_MS;
	set->max_sessions = IMAP_DEFAULT_MAX_SESSIONS;
	set->max_sessions_per_ip = IMAP_DEFAULT_MAX_SESSIONS_PER_IP;
	set->preauth_timeout_ms = IMAP_DEFAULT_PREAUTH_TIMEOUT_MS;
	set->max_bad_commands = IMAP_DEFAULT_MAX_BAD_COMMANDS;
	set->max_auth_failures = IMAP_DEFAULT_MAX_AUTH_FAILURES;
	set->max_input = IMAP_DEFAULT_MAX_INPUT;
	set->max_output = IMAP_DEFAULT_MAX_OUTPUT;
	imap_parser_limits_default(&set->limits_preauth, 0);
	imap_parser_limits_default(&set->limits_auth, 1);
}

static char *imap_server_capability_build(void)
{
	buf b;
	buf_init(&b);
	buf_append_str(&b, "IMAP4rev1 LITERAL+");
	for (size_t i = 0; i < imap_commands_count; i++) {
		if (imap_commands[i].capability != NULL)
			buf_printf(&b, " %s", imap_commands[i].capability);
	}
	buf_append(&b, "", 1);
	return (char *)buf_steal(&b, NULL);
}

int imap_session_login_allowed(const struct imap_session *s)
{
	return (s->tls != NULL && tls_conn_handshake_done(s->tls)) ||
	       (s->server->set.allow_plaintext_login && cidr_is_loopback_text(s->peer_ip));
}

char *imap_session_capability(const struct imap_session *s)
{
	const struct imap_server *server = s->server;
	int login = imap_session_login_allowed(s);
	return xasprintf("%s%s%s%s", server->capability,
			 server->set.tls != NULL && s->tls == NULL ? " STARTTLS" : "",
			 !login ? " LOGINDISABLED"
			 : server->backend->scram_keys != NULL
				 ? " AUTH=PLAIN AUTH=LOGIN AUTH=SCRAM-SHA-256 SASL-IR"
				 : " AUTH=PLAIN AUTH=LOGIN SASL-IR",
			 "");
}

/* ---- sessions: lifetime --------------------------------------------- */

void imap_session_ref(struct imap_session *s)
{
	s->refcount++;
}

static void imap_session_cmd_ctx_free(struct imap_session *s)
{
	if (s->cmd_ctx != NULL && s->cmd_ctx_free != NULL)
		s->cmd_ctx_free(s->cmd_ctx);
	s->cmd_ctx = NULL;
	s->cmd_ctx_free = NULL;
}

void imap_session_unref(struct imap_session *s)
{
	if (--s->refcount > 0)
		return;
	imap_session_cmd_ctx_free(s);
	imap_session_mailbox_clear(s);
	imap_parser_destroy(&s->parser);
	tls_conn_free(&s->tls);
	sasl_server_free(&s->sasl);
	free(s->auth_canon);
	if (s->login_password != NULL)
		OPENSSL_cleanse(s->login_password, strlen(s->login_password));
	free(s->login_user);
	free(s->login_password);
	buf_deinit(&s->in);
	buf_deinit(&s->out);
	free(s->user);
	free(s->tag);
	free(s);
}

int imap_session_is_closed(const struct imap_session *s)
{
	return s->closed;
}

static void imap_server_free_if_done(struct imap_server *server)
{
	if (!server->stopping || !server->listener_closed || server->n_sessions > 0)
		return;
	free(server->capability);
	free(server->listen_host);
	free(server);
}

static void imap_session_close_cb(uv_handle_t *handle)
{
	struct imap_session *s = handle->data;
	if (--s->handles_open > 0)
		return;
	struct imap_server *server = s->server;
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		server->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	server->n_sessions--;
	s->server = NULL;
	imap_session_unref(s);
	imap_server_free_if_done(server);
}

static void imap_session_handles_close(struct imap_session *s)
{
	if (s->handles_closing)
		return;
	s->handles_closing = 1;
	uv_close((uv_handle_t *)&s->tcp, imap_session_close_cb);
	uv_close((uv_handle_t *)&s->idle, imap_session_close_cb);
}

/* Stop everything now; replies not yet written are dropped. */
static void imap_session_close(struct imap_session *s, const char *reason)
{
	if (s->penalty != NULL) {
		/* a held-back attempt must not hold the loop (SIGTERM) */
		struct imap_penalty *p = s->penalty;
		s->penalty = NULL;
		uv_timer_stop(&p->timer);
		uv_close((uv_handle_t *)&p->timer, imap_penalty_close_cb);
		imap_session_unref(s);
	}
	if (!s->closed) {
		s->closed = 1;
		log_event(LOG_INFO, IMAP_LOG_SVC, "event=disconnect sid=%s reason=%s", s->id,
			  reason);
	}
	imap_session_handles_close(s);
}

static void imap_session_shutdown_cb(uv_shutdown_t *req, int status)
{
	(void)status;
	imap_session_handles_close(req->data);
}

void imap_session_bye(struct imap_session *s, const char *text, const char *reason)
{
	if (s->closed)
		return;
	imap_session_printf(s, "* BYE %s\r\n", text);
	imap_session_close_after_write(s, reason);
}

void imap_session_close_after_write(struct imap_session *s, const char *reason)
{
	if (s->closed)
		return;
	imap_session_flush(s);
	s->closed = 1;
	log_event(LOG_INFO, IMAP_LOG_SVC, "event=disconnect sid=%s reason=%s", s->id, reason);
	uv_read_stop((uv_stream_t *)&s->tcp);
	uv_timer_stop(&s->idle);
	s->shutdown_req.data = s;
	if (uv_shutdown(&s->shutdown_req, (uv_stream_t *)&s->tcp, imap_session_shutdown_cb) < 0)
		imap_session_handles_close(s);
}

/* ---- sessions: output ------------------------------------------------ */

struct imap_write_req {
	uv_write_t req;
	uint8_t *data;
};

void imap_session_append(struct imap_session *s, const void *data, size_t len)
{
	buf_append(&s->out, data, len);
}

void imap_session_printf(struct imap_session *s, const char *fmt, ...)
{
	char small[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(small)) {
		buf_append(&s->out, small, (size_t)n);
		return;
	}
	char *big = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	buf_append(&s->out, big, (size_t)n);
	free(big);
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
		imap_session_append(s, str, len);
	} else if (quotable) {
		imap_session_append(s, "\"", 1);
		for (size_t i = 0; i < len; i++) {
			if (str[i] == '"' || str[i] == '\\')
				imap_session_append(s, "\\", 1);
			imap_session_append(s, &str[i], 1);
		}
		imap_session_append(s, "\"", 1);
	} else {
		imap_session_printf(s, "{%zu}\r\n", len);
		imap_session_append(s, str, len);
	}
}

static void imap_session_write_cb(uv_write_t *req, int status)
{
	struct imap_write_req *wr = (struct imap_write_req *)req;
	struct imap_session *s = req->data;
	free(wr->data);
	free(wr);
	if (status < 0) {
		if (status != UV_ECANCELED)
			imap_session_close(s, "write-error");
		return;
	}
	if (s->on_drain != NULL && !s->closed &&
	    imap_session_output_pending(s) < s->server->set.max_output / 2) {
		void (*resume)(struct imap_session *) = s->on_drain;
		s->on_drain = NULL;
		resume(s);
	}
}

/* One uv_write of the bytes in out (taken: out is left empty). */
static void imap_session_write_raw(struct imap_session *s, buf *out)
{
	if (out->len == 0)
		return;
	if (s->handles_closing) {
		buf_reset(out);
		return;
	}
	struct imap_write_req *wr = xcalloc(1, sizeof(*wr));
	size_t len;
	wr->data = buf_steal(out, &len);
	wr->req.data = s;
	uv_buf_t b = uv_buf_init((char *)wr->data, (unsigned int)len);
	if (uv_write(&wr->req, (uv_stream_t *)&s->tcp, &b, 1, imap_session_write_cb) < 0) {
		free(wr->data);
		free(wr);
		imap_session_close(s, "write-error");
	}
}

void imap_session_flush(struct imap_session *s)
{
	if (s->out.len == 0 || s->tls == NULL) {
		imap_session_write_raw(s, &s->out);
		return;
	}
	buf net;
	buf_init(&net);
	int ret = tls_conn_write(s->tls, s->out.data, s->out.len, &net);
	buf_reset(&s->out);
	imap_session_write_raw(s, &net);
	buf_deinit(&net);
	if (ret < 0)
		imap_session_close(s, "tls-error");
}

size_t imap_session_output_pending(const struct imap_session *s)
{
	size_t queued = 0;
	if (!s->handles_closing)
		queued = uv_stream_get_write_queue_size((const uv_stream_t *)&s->tcp);
	return queued + s->out.len;
}

/* ---- commands -------------------------------------------------------- */

void imap_cmd_done(struct imap_session *s, const char *status, const char *code,
		   const char *text)
{
	if (code != NULL)
		imap_session_printf(s, "%s %s [%s] %s\r\n", s->tag, status, code, text);
	else
		imap_session_printf(s, "%s %s %s\r\n", s->tag, status, text);
	free(s->tag);
	s->tag = NULL;
	s->busy = 0;
	s->cmd_uid = 0;
	s->on_drain = NULL;
	imap_session_cmd_ctx_free(s);
	if (strcmp(status, "BAD") == 0) {
		if (++s->bad_count >= s->server->set.max_bad_commands)
			imap_session_bye(s, "Too many invalid commands", "too-many-bad");
	} else {
		s->bad_count = 0;
	}
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
	def->func(s, args, n_args);
}

/* ---- sessions: input ------------------------------------------------- */

static void imap_session_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *b)
{
	(void)handle;
	if (suggested > 65536)
		suggested = 65536;
	b->base = xmalloc(suggested);
	b->len = suggested;
}

static void imap_session_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b);

static void imap_session_input_process(struct imap_session *s)
{
	while ((!s->busy || s->auth_reading) && !s->closed && s->in.len > 0) {
		if (s->auth_reading) {
			/* RFC 4959/4954: a response line may be 12288 octets */
			const uint8_t *nl = memchr(s->in.data, '\n', s->in.len);
			if (nl == NULL) {
				if (s->in.len > 12290)
					imap_session_bye(s, "Authentication line too long",
							 "auth-line-too-long");
				break;
			}
			size_t len = (size_t)(nl - s->in.data);
			char *line = xmalloc(len + 1);
			memcpy(line, s->in.data, len);
			line[len] = '\0';
			buf_consume(&s->in, len + 1);
			if (len > 0 && line[len - 1] == '\r')
				len--;
			s->auth_reading = 0;
			imap_auth_line(s, line, len);
			OPENSSL_cleanse(line, len);
			free(line);
			continue;
		}
		struct imap_command *cmd;
		const char *error;
		size_t used = 0;
		int ret = imap_parser_feed(s->parser, s->in.data, s->in.len, &used, &cmd, &error);
		buf_consume(&s->in, used);
		if (ret == IMAP_PARSE_NEED_MORE)
			break;
		if (ret == IMAP_PARSE_CONTINUATION) {
			imap_session_append(s, "+ Ready for literal data\r\n", 26);
			continue;
		}
		if (ret == IMAP_PARSE_ERROR) {
			s->tag = xstrdup(cmd->tag != NULL ? cmd->tag : "*");
			s->busy = 1;
			imap_cmd_done(s, "BAD", NULL, error);
			continue;
		}
		imap_session_dispatch(s, cmd);
		if (s->discard_input) {
			if (s->in.len > 0)
				log_event(LOG_WARN, IMAP_LOG_SVC,
					  "event=starttls_pipelined sid=%s peer=%s dropped=%zu", s->id,
					  s->peer, s->in.len);
			buf_reset(&s->in);
			s->discard_input = 0;
		}
	}
	imap_session_flush(s);
	if (s->closed)
		return;
	if (s->reading && s->in.len >= s->server->set.max_input) {
		uv_read_stop((uv_stream_t *)&s->tcp);
		s->reading = 0;
	} else if (!s->reading && s->in.len < s->server->set.max_input) {
		if (uv_read_start((uv_stream_t *)&s->tcp, imap_session_alloc_cb,
				  imap_session_read_cb) == 0)
			s->reading = 1;
	}
}

static void imap_session_idle_cb(uv_timer_t *timer);

static void imap_penalty_cb(uv_timer_t *t)
{
	struct imap_penalty *p = t->data;
	struct imap_session *s = p->s;
	s->penalty = NULL;
	if (!imap_session_is_closed(s))
		p->fn(s);
	imap_session_unref(s);
	uv_close((uv_handle_t *)&p->timer, imap_penalty_close_cb);
}

void imap_session_after_penalty(struct imap_session *s, void (*fn)(struct imap_session *s))
{
	const struct imap_settings *set = &s->server->set;
	unsigned ms = set->auth_delay_ms != NULL ? set->auth_delay_ms(set->guard_arg, s->peer_ip)
						 : 0;
	if (ms == 0) {
		fn(s);
		return;
	}
	struct imap_penalty *p = xcalloc(1, sizeof *p);
	p->s = s;
	p->fn = fn;
	s->penalty = p;
	imap_session_ref(s);
	uv_timer_init(s->server->loop, &p->timer);
	p->timer.data = p;
	uv_timer_start(&p->timer, imap_penalty_cb, ms, 0);
}

void imap_session_authenticated(struct imap_session *s)
{
	uint64_t t = s->server->set.idle_timeout_ms;
	uv_timer_start(&s->idle, imap_session_idle_cb, t, t);
}

void imap_session_resume(struct imap_session *s)
{
	if (s->closed)
		return;
	imap_session_input_process(s);
}

static void imap_session_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b)
{
	struct imap_session *s = stream->data;
	if (nread < 0) {
		free(b->base);
		imap_session_close(s, nread == UV_EOF ? "eof" : uv_err_name((int)nread));
		return;
	}
	if (nread > 0 && !s->closed && s->tls != NULL) {
		buf net;
		buf_init(&net);
		enum tls_feed_result r = tls_conn_feed(s->tls, b->base, (size_t)nread, &s->in, &net);
		free(b->base);
		imap_session_write_raw(s, &net);
		buf_deinit(&net);
		if (r == TLS_FEED_ERROR) {
			log_event(LOG_INFO, IMAP_LOG_SVC, "event=tls_failed sid=%s peer=%s error=\"%s\"",
				  s->id, s->peer, tls_conn_error(s->tls));
			imap_session_close(s, "tls-error");
			return;
		}
		tls_conn_log_handshake(s->tls, IMAP_LOG_SVC, s->id);
		if (r == TLS_FEED_CLOSED) {
			imap_session_close(s, "eof");
			return;
		}
		uv_timer_again(&s->idle);
		imap_session_ref(s);
		imap_session_input_process(s);
		imap_session_unref(s);
		return;
	}
	if (nread > 0 && !s->closed) {
		buf_append(&s->in, b->base, (size_t)nread);
		uv_timer_again(&s->idle);
	}
	free(b->base);
	imap_session_ref(s);
	imap_session_input_process(s);
	imap_session_unref(s);
}

static void imap_session_idle_cb(uv_timer_t *timer)
{
	struct imap_session *s = timer->data;
	imap_session_bye(s, "Autologout; idle for too long", "idle-timeout");
}

/* ---- the listener ---------------------------------------------------- */

static void imap_session_peer(struct imap_session *s)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	char host[48] = "?";
	int port = 0;
	if (uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
			uv_ip6_name(a, host, sizeof(host));
			port = ntohs(a->sin6_port);
		} else {
			struct sockaddr_in *a = (struct sockaddr_in *)&ss;
			uv_ip4_name(a, host, sizeof(host));
			port = ntohs(a->sin_port);
		}
	}
	snprintf(s->peer, sizeof(s->peer), "%s:%d", host, port);
	snprintf(s->peer_ip, sizeof(s->peer_ip), "%s", host);
}

/* The session cap s is over, or NULL. Trusted networks are exempt. */
static const char *imap_server_over_cap(const struct imap_server *server,
					const struct imap_session *s)
{
	if (cidr_match_text(server->set.trusted, s->peer_ip))
		return NULL;
	if (server->n_sessions > server->set.max_sessions)
		return "max-sessions";
	unsigned same = 0;
	for (const struct imap_session *o = server->sessions; o != NULL; o = o->next)
		same += !o->closed && strcmp(o->peer_ip, s->peer_ip) == 0;
	return same > server->set.max_sessions_per_ip ? "max-sessions-per-ip" : NULL;
}

static void imap_server_connection_cb(uv_stream_t *listener, int status)
{
	struct imap_server *server = listener->data;
	if (status < 0) {
		log_event(LOG_WARN, IMAP_LOG_SVC, "event=accept_error error=%s",
			  uv_err_name(status));
		return;
	}
	struct imap_session *s = xcalloc(1, sizeof(*s));
	s->server = server;
	s->refcount = 1; /* dropped when the handles are closed */
	uv_tcp_init(server->loop, &s->tcp);
	uv_timer_init(server->loop, &s->idle);
	s->tcp.data = s;
	s->idle.data = s;
	s->handles_open = 2;
	s->next = server->sessions;
	if (server->sessions != NULL)
		server->sessions->prev = s;
	server->sessions = s;
	server->n_sessions++;
	buf_init(&s->in);
	buf_init(&s->out);
	s->parser = imap_parser_create(&server->set.limits_preauth);
	util_random_hex(s->id, 6);
	if (uv_accept(listener, (uv_stream_t *)&s->tcp) < 0) {
		imap_session_close(s, "accept-failed");
		return;
	}
	imap_session_peer(s);
	log_event(LOG_INFO, IMAP_LOG_SVC, "event=connect sid=%s peer=%s", s->id, s->peer);
	const char *over = imap_server_over_cap(server, s);
	if (over == NULL && server->set.ip_refused != NULL &&
	    server->set.ip_refused(server->set.guard_arg, s->peer_ip))
		over = "blocked";
	if (over != NULL) {
		if (server->set.implicit_tls) /* no handshake for a client turned away */
			imap_session_close(s, over);
		else
			imap_session_bye(s, "Too many connections, try again later", over);
		return;
	}
	if (server->set.tls != NULL && server->set.implicit_tls)
		s->tls = tls_conn_new_server(server->set.tls); /* the greeting waits for it */
	char *cap = imap_session_capability(s);
	imap_session_printf(s, "* OK [CAPABILITY %s] IMAP4rev1 ready\r\n", cap);
	free(cap);
	imap_session_flush(s);
	/* until LOGIN the shorter pre-authentication timeout applies */
	uv_timer_start(&s->idle, imap_session_idle_cb, server->set.preauth_timeout_ms,
		       server->set.preauth_timeout_ms);
	if (uv_read_start((uv_stream_t *)&s->tcp, imap_session_alloc_cb,
			  imap_session_read_cb) == 0)
		s->reading = 1;
	else
		imap_session_close(s, "read-failed");
}

static void imap_server_listener_close_cb(uv_handle_t *handle)
{
	struct imap_server *server = handle->data;
	server->listener_closed = 1;
	imap_server_free_if_done(server);
}

int imap_server_start(uv_loop_t *loop, const struct imap_settings *set,
		      const struct imap_backend *backend, void *backend_ctx,
		      imap_server **server_r, const char **error_r)
{
	struct sockaddr_storage addr;
	const char *host = set->listen_host != NULL ? set->listen_host : IMAP_DEFAULT_LISTEN_HOST;

	if (uv_ip4_addr(host, set->listen_port, (struct sockaddr_in *)&addr) != 0 &&
	    uv_ip6_addr(host, set->listen_port, (struct sockaddr_in6 *)&addr) != 0) {
		*error_r = "imap: listen address is not an IP literal";
		return -1;
	}
	struct imap_server *server = xcalloc(1, sizeof(*server));
	server->loop = loop;
	server->set = *set;
	server->listen_host = xstrdup(host);
	server->set.listen_host = server->listen_host;
	if (server->set.max_input < server->set.limits_auth.max_line)
		server->set.max_input = server->set.limits_auth.max_line;
	if (server->set.max_bad_commands == 0)
		server->set.max_bad_commands = 1;
	if (server->set.max_auth_failures == 0)
		server->set.max_auth_failures = 1;
	if (server->set.idle_timeout_ms < 1000)
		server->set.idle_timeout_ms = 1000;
	if (server->set.preauth_timeout_ms < 1000 ||
	    server->set.preauth_timeout_ms > server->set.idle_timeout_ms)
		server->set.preauth_timeout_ms = server->set.idle_timeout_ms;
	if (server->set.max_sessions_per_ip == 0)
		server->set.max_sessions_per_ip = IMAP_DEFAULT_MAX_SESSIONS_PER_IP;
	server->backend = backend;
	server->backend_ctx = backend_ctx;
	server->capability = imap_server_capability_build();
	uv_tcp_init(loop, &server->listener);
	server->listener.data = server;
	int ret = uv_tcp_bind(&server->listener, (const struct sockaddr *)&addr, 0);
	if (ret == 0)
		ret = uv_listen((uv_stream_t *)&server->listener, 128, imap_server_connection_cb);
	if (ret < 0) {
		*error_r = ret == UV_EADDRINUSE ? "imap: listen address in use"
						: "imap: cannot listen";
		/* freed by the close callback, on the caller's next loop run */
		server->stopping = 1;
		uv_close((uv_handle_t *)&server->listener, imap_server_listener_close_cb);
		return -1;
	}
	int len = sizeof(addr);
	uv_tcp_getsockname(&server->listener, (struct sockaddr *)&addr, &len);
	server->port = ntohs(((struct sockaddr_in *)&addr)->sin_port);
	log_event(LOG_INFO, IMAP_LOG_SVC, "event=listen host=%s port=%d plaintext_login=%s",
		  host, server->port,
		  set->allow_plaintext_login ? "allowed-loopback-dev-mode" : "disabled");
	*server_r = server;
	return 0;
}

int imap_server_port(const imap_server *server)
{
	return server->port;
}

unsigned imap_server_session_count(const imap_server *server)
{
	return server->n_sessions;
}

void imap_server_stop(imap_server **serverp)
{
	struct imap_server *server = *serverp;
	if (server == NULL)
		return;
	*serverp = NULL;
	server->stopping = 1;
	uv_close((uv_handle_t *)&server->listener, imap_server_listener_close_cb);
	for (struct imap_session *s = server->sessions; s != NULL; s = s->next) {
		if (!s->closed) {
			/* best effort: never wait for a client that does not read */
			static const char bye[] = "* BYE Server shutting down\r\n";
			buf net;
			buf_init(&net);
			if (s->tls == NULL)
				buf_append(&net, bye, sizeof(bye) - 1);
			else if (tls_conn_write(s->tls, bye, sizeof(bye) - 1, &net) == 0)
				tls_conn_close_notify(s->tls, &net);
			uv_buf_t b = uv_buf_init((char *)net.data, (unsigned)net.len);
			if (net.len > 0)
				uv_try_write((uv_stream_t *)&s->tcp, &b, 1);
			buf_deinit(&net);
		}
		imap_session_close(s, "server-stop");
	}
}
