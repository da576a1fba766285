/* smtp-server.c: the SMTP engine: connections, the command table, the
 * state machine, pipelining, DATA and the asynchronous completions.
 *
 * Ownership and lifetime:
 *  - A session lives inside the server's list from accept until it is
 *    freed, which happens when (a) its three handles (tcp, idle timer, kick
 *    timer) have all reached their close_cb and (b) no user callback is
 *    pending. So a late smtp_session_complete() always finds the session.
 *  - The server is freed when its listener is closed and its last session
 *    is gone (smtp_server_stop() starts that).
 *  - Each uv_write owns its buffer (struct smtp__write) until write_cb.
 *
 * Pipelining: all input is appended to s->in and processed in order by
 * smtp__session_process(); a command with a user callback sets s->pending,
 * which stops processing until the completion; then a zero-delay "kick"
 * timer resumes processing on a fresh stack (no callback runs inside the
 * user's call to smtp_session_complete()). Replies accumulate in s->out and
 * are written in one uv_write whenever processing stops.
 */
#include "smtp-server.h"

#include "budget.h"
#include "cidr.h"
#include "log.h"
#include "mail-error.h"
#include "sasl.h"
#include "tls.h"
#include "util.h"
#include "xalloc.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SMTP__READ_BUF 65536

enum smtp__phase { SMTP__PHASE_COMMAND = 0, SMTP__PHASE_DATA, SMTP__PHASE_AUTH };

/* RFC 4954 4: an AUTH response line may be 12288 octets long. */
#define SMTP__AUTH_LINE_MAX 12288u

struct smtp_server {
	uv_loop_t *loop;
	uv_tcp_t listener;
	struct smtp_server_settings set;
	char *host, *hostname, *log_svc; /* owned copies behind set's pointers */
	struct smtp_server_callbacks cb;
	void *ctx;
	int port;
	int stopping;
	int listener_closed;
	size_t n_sessions;
	smtp_session *sessions; /* doubly linked */
	/* One loop thread: read_cb copies out of it before the next alloc_cb. */
	char readbuf[SMTP__READ_BUF];
};

struct smtp_session {
	smtp_server *server;
	smtp_session *prev, *next;
	uv_tcp_t tcp;
	uv_timer_t idle;
	uv_timer_t kick;
	uv_shutdown_t shutdown_req;
	int handles_open;
	int closing;         /* close started: no more replies, no callbacks */
	int handles_closing; /* uv_close called on the handles */
	int reading;
	int in_process;
	int pending;         /* a user callback awaits smtp_session_complete() */
	enum smtp_command_kind pending_cmd;
	char *pending_arg;   /* MAIL/RCPT argument, kept for the completion */
	struct smtp_mail_params pending_params;
	struct smtp_rcpt_params pending_rcpt_params;
	char id[17];
	char peer_ip[INET6_ADDRSTRLEN];
	int peer_port;
	char *helo;
	int esmtp;
	unsigned errors;
	unsigned messages;
	enum smtp__phase phase;
	/* The transaction. */
	int in_mail;
	char *mail_from;
	struct smtp_mail_params params;
	char **rcpts;
	struct smtp_rcpt_params *rcpt_params; /* parallel to rcpts */
	size_t n_rcpts;
	struct smtp_transaction txn; /* filled for on_data */
	tls_conn *tls;       /* the TLS layer, once STARTTLS (or at accept) */
	int discard_input;   /* STARTTLS: what follows it in s->in is dropped */
	int output_full;     /* reading paused until the client reads replies */
	uint64_t data_start; /* uv_now() when DATA began */
	size_t reserved;     /* of the server's budget, for s->data.body */
	sasl_server *sasl;   /* the AUTH exchange in progress */
	int auth_final;      /* SCRAM's server-final sent: an empty line ends it */
	enum smtp_auth_kind auth_kind; /* what on_auth was asked */
	char *auth_user;     /* authenticated as */
	smtp_command_parser parser;
	smtp_data_reader data;
	buf in;
	buf out;
	void *user_data;     /* the callbacks' own, smtp_session_set_data() */
};

struct smtp__write {
	uv_write_t req;
	smtp_session *s;
	uint8_t *data;
};

/* ---- the command table (STYLE rule 12) ------------------------------- */

enum {
	SMTP__F_HELO = 1 << 0,    /* needs HELO/EHLO first */
	SMTP__F_NO_MAIL = 1 << 1, /* not inside a transaction */
	SMTP__F_MAIL = 1 << 2,    /* needs MAIL first */
	SMTP__F_RCPT = 1 << 3,    /* needs an accepted RCPT */
	SMTP__F_TLS = 1 << 4,     /* only where TLS is configured (else 502) */
	SMTP__F_AUTH = 1 << 5,    /* only where AUTH is configured (else 502) */
};

typedef void smtp__handler(smtp_session *s, const struct smtp_command *cmd);

struct smtp__cmd_def {
	smtp__handler *handler;
	unsigned flags;
	const char *ehlo; /* EHLO keyword this command brings, or NULL */
};

static smtp__handler smtp__cmd_ehlo, smtp__cmd_mail, smtp__cmd_rcpt, smtp__cmd_data,
	smtp__cmd_rset, smtp__cmd_noop, smtp__cmd_quit, smtp__cmd_vrfy, smtp__cmd_expn,
	smtp__cmd_help, smtp__cmd_starttls, smtp__cmd_auth;

static const struct smtp__cmd_def smtp__cmds[SMTP_CMD_COUNT_] = {
	[SMTP_CMD_EHLO] = { smtp__cmd_ehlo, 0, NULL },
	[SMTP_CMD_HELO] = { smtp__cmd_ehlo, 0, NULL },
	[SMTP_CMD_MAIL] = { smtp__cmd_mail, SMTP__F_HELO | SMTP__F_NO_MAIL, "8BITMIME" },
	[SMTP_CMD_RCPT] = { smtp__cmd_rcpt, SMTP__F_HELO | SMTP__F_MAIL, NULL },
	[SMTP_CMD_DATA] = { smtp__cmd_data, SMTP__F_HELO | SMTP__F_MAIL | SMTP__F_RCPT, NULL },
	[SMTP_CMD_RSET] = { smtp__cmd_rset, 0, NULL },
	[SMTP_CMD_NOOP] = { smtp__cmd_noop, 0, NULL },
	[SMTP_CMD_QUIT] = { smtp__cmd_quit, 0, NULL },
	[SMTP_CMD_VRFY] = { smtp__cmd_vrfy, 0, NULL },
	[SMTP_CMD_EXPN] = { smtp__cmd_expn, 0, NULL },
	[SMTP_CMD_HELP] = { smtp__cmd_help, 0, NULL },
	[SMTP_CMD_STARTTLS] = { smtp__cmd_starttls, SMTP__F_HELO | SMTP__F_TLS, "STARTTLS" },
	[SMTP_CMD_AUTH] = { smtp__cmd_auth, SMTP__F_HELO | SMTP__F_NO_MAIL | SMTP__F_AUTH, NULL },
};

/* Extensions that are not a command of their own, in EHLO order. */
enum { SMTP__EXT_SIZE = 1, SMTP__EXT_DSN = 2 /* only with settings.dsn */ };
static const struct {
	const char *keyword;
	unsigned flags;
} smtp__exts[] = {
	{ "PIPELINING", 0 },
	{ "SIZE", SMTP__EXT_SIZE },
	{ "ENHANCEDSTATUSCODES", 0 },
	{ "DSN", SMTP__EXT_DSN },
};

/* ---- small helpers --------------------------------------------------- */

static void smtp__session_close(smtp_session *s, const char *reason, int graceful);
static void smtp__session_process(smtp_session *s);
static int smtp__auth_allowed(const smtp_session *s);
static void smtp__session_resume_after(smtp_session *s);
static void smtp__session_maybe_free(smtp_session *s);

static const char *smtp__svc(const smtp_session *s)
{
	return s->server->set.log_svc;
}

/* Append one reply line ("code[-| ]enh text"). last=0 for a continuation
 * line of a multi-line reply. */
static void smtp__reply_line(smtp_session *s, int code, const char *enh, const char *text,
			     int last)
{
	buf_printf(&s->out, "%03d%c", code, last ? ' ' : '-');
	if (enh != NULL && enh[0] != '\0')
		buf_printf(&s->out, "%s ", enh);
	size_t start = s->out.len;
	buf_append_str(&s->out, text != NULL ? text : "");
	for (size_t i = start; i < s->out.len; i++) {
		if (s->out.data[i] < 0x20 || s->out.data[i] == 0x7f)
			s->out.data[i] = ' ';
	}
	buf_append(&s->out, "\r\n", 2);
}

/* A complete reply; counts errors and ends the session after too many. */
static void smtp__reply(smtp_session *s, int code, const char *enh, const char *text)
{
	if (s->closing)
		return;
	smtp__reply_line(s, code, enh, text, 1);
	if (code >= 400 && code != 421 && ++s->errors >= s->server->set.max_errors) {
		smtp__reply_line(s, 421, "4.7.0", "Too many errors, closing connection", 1);
		smtp__session_close(s, "too_many_errors", 1);
	}
}

static void smtp__kick_cb(uv_timer_t *t);

/* Replies waiting for the client to read them. */
static size_t smtp__output_queued(const smtp_session *s)
{
	if (s->handles_closing)
		return 0;
	return uv_stream_get_write_queue_size((const uv_stream_t *)&s->tcp) + s->out.len;
}

static void smtp__write_cb(uv_write_t *req, int status)
{
	struct smtp__write *w = (struct smtp__write *)req;
	smtp_session *s = w->s;
	free(w->data);
	free(w);
	if (status < 0 && !s->closing) {
		smtp__session_close(s, "write_error", 0);
		return;
	}
	if (s->output_full && !s->closing &&
	    smtp__output_queued(s) < s->server->set.max_output / 2) {
		s->output_full = 0;
		uv_timer_start(&s->kick, smtp__kick_cb, 0, 0); /* resume input */
	}
}

/* Write the bytes of b (taken, b is left empty) as one uv_write. */
static void smtp__write_raw(smtp_session *s, buf *out)
{
	if (out->len == 0 || s->handles_closing) {
		buf_reset(out);
		return;
	}
	struct smtp__write *w = xcalloc(1, sizeof *w);
	size_t len;
	w->s = s;
	w->data = buf_steal(out, &len);
	uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)len);
	int ret = uv_write(&w->req, (uv_stream_t *)&s->tcp, &b, 1, smtp__write_cb);
	if (ret < 0) {
		free(w->data);
		free(w);
		smtp__session_close(s, "write_error", 0);
	}
}

/* Write everything in s->out, through TLS when it is on. */
static void smtp__session_flush(smtp_session *s)
{
	if (s->out.len == 0 || s->tls == NULL) {
		smtp__write_raw(s, &s->out);
		return;
	}
	buf net;
	buf_init(&net);
	int ret = tls_conn_write(s->tls, s->out.data, s->out.len, &net);
	buf_reset(&s->out);
	smtp__write_raw(s, &net);
	buf_deinit(&net);
	if (ret < 0)
		smtp__session_close(s, "tls_error", 0);
}

/* Give the body's share of the budget back. */
static void smtp__budget_release(smtp_session *s)
{
	if (s->server->set.budget != NULL && s->reserved > 0)
		mem_budget_give(s->server->set.budget, s->reserved);
	s->reserved = 0;
}

/* Cover the body's buffer with the budget; when it does not fit, the body
 * is dropped (and the message refused at its end). */
static void smtp__budget_track(smtp_session *s)
{
	struct mem_budget *b = s->server->set.budget;
	if (b == NULL || s->data.dropped || s->data.body.cap <= s->reserved)
		return;
	size_t more = s->data.body.cap - s->reserved;
	if (mem_budget_take(b, more) == 0) {
		s->reserved += more;
		return;
	}
	log_event(LOG_WARN, smtp__svc(s),
		  "event=body_budget_full sid=%s peer=%s size=%zu in_flight=%zu limit=%zu", s->id,
		  s->peer_ip, s->data.body.len, b->used, b->limit);
	smtp_data_reader_drop(&s->data);
	smtp__budget_release(s);
}

static void smtp__txn_reset(smtp_session *s)
{
	free(s->mail_from);
	s->mail_from = NULL;
	for (size_t i = 0; i < s->n_rcpts; i++)
		free(s->rcpts[i]);
	free(s->rcpts);
	s->rcpts = NULL;
	free(s->rcpt_params);
	s->rcpt_params = NULL;
	s->n_rcpts = 0;
	s->in_mail = 0;
	memset(&s->params, 0, sizeof s->params);
	memset(&s->txn, 0, sizeof s->txn);
	smtp_data_reader_reset(&s->data);
	smtp__budget_release(s);
}

/* ---- lifetime -------------------------------------------------------- */

static void smtp__server_maybe_free(smtp_server *srv)
{
	if (!srv->listener_closed || srv->n_sessions > 0)
		return;
	free(srv->host);
	free(srv->hostname);
	free(srv->log_svc);
	free(srv);
}

static void smtp__session_maybe_free(smtp_session *s)
{
	if (s->handles_open > 0 || s->pending)
		return;
	smtp_server *srv = s->server;
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		srv->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	srv->n_sessions--;
	smtp__txn_reset(s);
	smtp_data_reader_deinit(&s->data);
	smtp_command_parser_deinit(&s->parser);
	buf_deinit(&s->in);
	buf_deinit(&s->out);
	free(s->pending_arg);
	free(s->helo);
	free(s->auth_user);
	sasl_server_free(&s->sasl);
	tls_conn_free(&s->tls);
	free(s);
	smtp__server_maybe_free(srv);
}

static void smtp__handle_close_cb(uv_handle_t *h)
{
	smtp_session *s = h->data;
	s->handles_open--;
	smtp__session_maybe_free(s);
}

static void smtp__session_close_handles(smtp_session *s)
{
	if (s->handles_closing)
		return;
	s->handles_closing = 1;
	uv_close((uv_handle_t *)&s->tcp, smtp__handle_close_cb);
	uv_close((uv_handle_t *)&s->idle, smtp__handle_close_cb);
	uv_close((uv_handle_t *)&s->kick, smtp__handle_close_cb);
}

static void smtp__shutdown_cb(uv_shutdown_t *req, int status)
{
	(void)status;
	smtp__session_close_handles(req->data);
}

/* Start closing: no more input, replies or callbacks. graceful: write what
 * is in s->out, then shut the write side down, then close. */
static void smtp__session_close(smtp_session *s, const char *reason, int graceful)
{
	if (s->closing)
		return;
	s->closing = 1;
	log_event(LOG_INFO, smtp__svc(s),
		  "event=disconnect sid=%s peer=%s reason=%s errors=%u messages=%u", s->id,
		  s->peer_ip, reason, s->errors, s->messages);
	if (s->server->cb.on_disconnect != NULL)
		s->server->cb.on_disconnect(s, s->server->ctx);
	uv_read_stop((uv_stream_t *)&s->tcp);
	uv_timer_stop(&s->idle);
	uv_timer_stop(&s->kick);
	if (graceful) {
		smtp__session_flush(s);
		if (s->tls != NULL) {
			buf net;
			buf_init(&net);
			tls_conn_close_notify(s->tls, &net);
			smtp__write_raw(s, &net);
			buf_deinit(&net);
		}
		s->shutdown_req.data = s;
		if (!s->handles_closing &&
		    uv_shutdown(&s->shutdown_req, (uv_stream_t *)&s->tcp, smtp__shutdown_cb) == 0)
			return;
	}
	smtp__session_close_handles(s);
}

/* ---- command handlers ------------------------------------------------ */

static void smtp__cmd_ehlo(smtp_session *s, const struct smtp_command *cmd)
{
	const smtp_server *srv = s->server;
	smtp__txn_reset(s);
	free(s->helo);
	s->helo = xstrdup(cmd->arg);
	s->esmtp = cmd->kind == SMTP_CMD_EHLO;
	if (!s->esmtp) {
		smtp__reply_line(s, 250, NULL, srv->hostname, 1);
		return;
	}
	/* Keywords: the extension rows, then the commands that bring one. */
	const char *kw[SMTP_CMD_COUNT_ + sizeof smtp__exts / sizeof smtp__exts[0] + 1];
	size_t n = 0;
	for (size_t i = 0; i < sizeof smtp__exts / sizeof smtp__exts[0]; i++) {
		if ((smtp__exts[i].flags & SMTP__EXT_DSN) && !srv->set.dsn)
			continue;
		kw[n++] = smtp__exts[i].keyword;
	}
	for (int k = 0; k < SMTP_CMD_COUNT_; k++) {
		if (smtp__cmds[k].ehlo == NULL)
			continue;
		if ((smtp__cmds[k].flags & SMTP__F_TLS) && (srv->set.tls == NULL || s->tls != NULL))
			continue;
		kw[n++] = smtp__cmds[k].ehlo;
	}
	char auth_line[80] = "AUTH";
	if (srv->set.auth_mechs != 0 && smtp__auth_allowed(s)) {
		for (int m = 0; m < SASL_MECH_COUNT_; m++) {
			if (srv->set.auth_mechs & (1u << m)) {
				strncat(auth_line, " ", sizeof auth_line - strlen(auth_line) - 1);
				strncat(auth_line, sasl_mech_name((enum sasl_mech)m),
					sizeof auth_line - strlen(auth_line) - 1);
			}
		}
		kw[n++] = auth_line;
	}
	smtp__reply_line(s, 250, NULL, srv->hostname, n == 0);
	for (size_t i = 0; i < n; i++) {
		char line[96];
		if (strcmp(kw[i], "SIZE") == 0)
			snprintf(line, sizeof line, "SIZE %zu", srv->set.limits.max_message_size);
		else
			snprintf(line, sizeof line, "%s", kw[i]);
		smtp__reply_line(s, 250, NULL, line, i + 1 == n);
	}
}

/* Hand cmd to the user: processing stops until smtp_session_complete(). */
static void smtp__pending_start(smtp_session *s, const struct smtp_command *cmd)
{
	s->pending = 1;
	s->pending_cmd = cmd->kind;
	free(s->pending_arg);
	s->pending_arg = cmd->arg != NULL ? xstrdup(cmd->arg) : NULL;
	s->pending_params = cmd->params;
	s->pending_rcpt_params = cmd->rcpt_params;
}

static void smtp__cmd_mail(smtp_session *s, const struct smtp_command *cmd)
{
	const smtp_server *srv = s->server;
	if (srv->set.auth_required && s->auth_user == NULL) {
		smtp__reply(s, 530, "5.7.0", "Authentication required");
		return;
	}
	if (cmd->params.has_size && cmd->params.size > srv->set.limits.max_message_size) {
		smtp__reply(s, 552, "5.3.4", "Message size exceeds fixed maximum message size");
		return;
	}
	smtp__pending_start(s, cmd);
	if (srv->cb.on_mail != NULL)
		srv->cb.on_mail(s, cmd->arg, &cmd->params, srv->ctx);
	else
		smtp_session_complete(s, 250, "2.1.0", "Ok");
}

/* 1 when rcpt is already a recipient of the transaction (addresses
 * compared without case: a duplicate counts once and is delivered once). */
static int smtp__rcpt_known(const smtp_session *s, const char *rcpt)
{
	for (size_t i = 0; i < s->n_rcpts; i++) {
		if (strcasecmp(s->rcpts[i], rcpt) == 0)
			return 1;
	}
	return 0;
}

static void smtp__cmd_rcpt(smtp_session *s, const struct smtp_command *cmd)
{
	const smtp_server *srv = s->server;
	if (smtp__rcpt_known(s, cmd->arg)) {
		smtp__reply(s, 250, "2.1.5", "Ok (duplicate recipient)");
		return;
	}
	if (s->n_rcpts >= srv->set.limits.max_recipients) {
		smtp__reply(s, 452, "4.5.3", "Error: too many recipients");
		return;
	}
	smtp__pending_start(s, cmd);
	if (srv->cb.on_rcpt != NULL)
		srv->cb.on_rcpt(s, cmd->arg, &cmd->rcpt_params, srv->ctx);
	else
		smtp_session_complete(s, 250, "2.1.5", "Ok");
}

static void smtp__cmd_data(smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	smtp_data_reader_reset(&s->data);
	smtp__budget_release(s);
	s->phase = SMTP__PHASE_DATA;
	s->data_start = uv_now(s->server->loop);
	smtp__reply(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
}

/* The end of DATA: 552 when too big, else the user's on_data. */
static void smtp__data_end(smtp_session *s)
{
	const smtp_server *srv = s->server;
	s->phase = SMTP__PHASE_COMMAND;
	if (s->data.too_big) {
		log_event(LOG_INFO, smtp__svc(s),
			  "event=rejected sid=%s cmd=DATA code=552 enh=5.3.4 size=%zu", s->id,
			  s->data.size);
		smtp__txn_reset(s);
		smtp__reply(s, 552, "5.3.4", "Message size exceeds fixed maximum message size");
		return;
	}
	if (s->data.dropped) {
		log_event(LOG_INFO, smtp__svc(s),
			  "event=rejected sid=%s cmd=DATA code=451 enh=4.3.1 size=%zu", s->id,
			  s->data.size);
		smtp__txn_reset(s);
		smtp__reply(s, 451, "4.3.1", "Insufficient system resources, try again later");
		return;
	}
	s->pending = 1;
	s->pending_cmd = SMTP_CMD_DATA;
	s->txn.mail_from = s->mail_from;
	s->txn.params = s->params;
	s->txn.rcpts = (const char *const *)s->rcpts;
	s->txn.rcpt_params = s->rcpt_params;
	s->txn.n_rcpts = s->n_rcpts;
	s->txn.body = s->data.body.data;
	s->txn.body_len = s->data.body.len;
	srv->cb.on_data(s, &s->txn, srv->ctx);
}

static void smtp__cmd_rset(smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	smtp__txn_reset(s);
	smtp__reply(s, 250, "2.0.0", "Ok");
}

static void smtp__cmd_noop(smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	smtp__reply(s, 250, "2.0.0", "Ok");
}

static void smtp__cmd_quit(smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	smtp__reply(s, 221, "2.0.0", "Bye");
	smtp__session_close(s, "quit", 1);
}

static void smtp__cmd_vrfy(smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	/* Never confirm addresses (directory harvesting); RFC 5321 3.5.3. */
	smtp__reply(s, 252, "2.0.0",
		    "Cannot VRFY user, but will accept message and attempt delivery");
}

static void smtp__cmd_expn(smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	smtp__reply(s, 502, "5.5.1", "Error: command not implemented");
}

static void smtp__cmd_help(smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	char text[256] = "Commands:";
	for (int k = SMTP_CMD_UNKNOWN + 1; k < SMTP_CMD_COUNT_; k++) {
		if (smtp__cmds[k].handler != NULL &&
		    (!(smtp__cmds[k].flags & SMTP__F_TLS) || s->server->set.tls != NULL) &&
		    (!(smtp__cmds[k].flags & SMTP__F_AUTH) || s->server->set.auth_mechs != 0)) {
			strncat(text, " ", sizeof text - strlen(text) - 1);
			strncat(text, smtp_command_name(k), sizeof text - strlen(text) - 1);
		}
	}
	smtp__reply(s, 214, "2.0.0", text);
}

/* RFC 3207. The 220 goes out in plaintext; everything the client sent
 * after the command is dropped (a man in the middle could have put it
 * there: the CVE-2011-0411 class), and the session starts over: the client
 * must say EHLO again. */
static void smtp__cmd_starttls(smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	if (s->tls != NULL) {
		smtp__reply(s, 503, "5.5.1", "Error: TLS already active");
		return;
	}
	smtp__reply(s, 220, "2.0.0", "Ready to start TLS");
	smtp__session_flush(s);
	s->tls = tls_conn_new_server(s->server->set.tls);
	s->discard_input = 1;
	smtp__txn_reset(s);
	free(s->helo);
	s->helo = NULL;
	s->esmtp = 0;
	free(s->auth_user);
	s->auth_user = NULL;
	smtp_command_parser_deinit(&s->parser);
	smtp_command_parser_init(&s->parser, &s->server->set.limits);
	smtp_command_parser_set_flags(&s->parser, s->server->set.dsn ? SMTP_PARSER_DSN : 0);
}

/* ---- AUTH (RFC 4954) ------------------------------------------------- */

/* Credentials may be sent: over TLS, or from loopback in development mode. */
static int smtp__auth_allowed(const smtp_session *s)
{
	return smtp_session_tls(s) ||
	       (s->server->set.plaintext_auth && cidr_is_loopback_text(s->peer_ip));
}

/* End the exchange with a reply; ok: 1 success, 0 bad credentials, -1
 * not a verdict on credentials (syntax, cancel, temporary). */
static void smtp__auth_end(smtp_session *s, int code, const char *enh, const char *text, int ok)
{
	const char *user = s->sasl != NULL ? sasl_server_user(s->sasl) : "";
	char q[128];
	if (ok == 1) {
		free(s->auth_user);
		s->auth_user = xstrdup(user);
		log_event(LOG_INFO, smtp__svc(s), "event=auth_ok sid=%s peer=%s user=%s", s->id,
			  s->peer_ip, log_quote(q, sizeof q, user, strlen(user)));
	} else {
		log_event(LOG_INFO, smtp__svc(s), "event=auth_failed sid=%s peer=%s user=%s code=%d why=\"%s\"",
			  s->id, s->peer_ip, log_quote(q, sizeof q, user, strlen(user)), code,
			  s->sasl != NULL ? sasl_server_error(s->sasl) : "");
	}
	if (ok >= 0 && s->server->cb.on_auth_result != NULL)
		s->server->cb.on_auth_result(s, user, ok, s->server->ctx);
	sasl_server_free(&s->sasl);
	s->auth_final = 0;
	s->phase = SMTP__PHASE_COMMAND;
	smtp__reply(s, code, enh, text);
}

/* Act on what a SASL step asked for. */
static void smtp__auth_next(smtp_session *s, enum sasl_step step, buf *out)
{
	const smtp_server *srv = s->server;
	switch (step) {
	case SASL_STEP_CHALLENGE: {
		buf b64;
		buf_init(&b64);
		sasl_b64_encode(out->data, out->len, &b64);
		buf_append(&b64, "", 1);
		s->phase = SMTP__PHASE_AUTH;
		smtp__reply_line(s, 334, NULL, (const char *)b64.data, 1);
		buf_deinit(&b64);
		return;
	}
	case SASL_STEP_CHECK_PASSWORD:
	case SASL_STEP_NEED_SCRAM: {
		struct smtp_auth_request req = {
			.kind = step == SASL_STEP_NEED_SCRAM ? SMTP_AUTH_SCRAM_KEYS
							     : SMTP_AUTH_PASSWORD,
			.user = sasl_server_user(s->sasl),
			.password = step == SASL_STEP_NEED_SCRAM ? NULL
								 : sasl_server_password(s->sasl),
		};
		s->auth_kind = req.kind;
		s->pending = 1;
		s->pending_cmd = SMTP_CMD_AUTH;
		s->phase = SMTP__PHASE_COMMAND;
		srv->cb.on_auth(s, &req, srv->ctx);
		return;
	}
	case SASL_STEP_DONE:
		if (out->len > 0) {
			/* SCRAM's server-final: a 334 the client answers with an
			 * empty line, then the 235 (RFC 4954 4) */
			buf b64;
			buf_init(&b64);
			sasl_b64_encode(out->data, out->len, &b64);
			buf_append(&b64, "", 1);
			s->auth_final = 1;
			s->phase = SMTP__PHASE_AUTH;
			smtp__reply_line(s, 334, NULL, (const char *)b64.data, 1);
			buf_deinit(&b64);
			return;
		}
		smtp__auth_end(s, 235, "2.7.0", "Authentication successful", 1);
		return;
	case SASL_STEP_FAIL:
		if (sasl_server_error_is_syntax(s->sasl))
			smtp__auth_end(s, 501, "5.5.2", "Cannot decode response", -1);
		else
			smtp__auth_end(s, 535, "5.7.8", "Authentication credentials invalid", 0);
		return;
	}
}

/* A line of the exchange (base64, "*" cancels). */
static void smtp__auth_response(smtp_session *s, const char *line, size_t len)
{
	if (len == 1 && line[0] == '*') {
		smtp__auth_end(s, 501, "5.0.0", "Authentication aborted", -1);
		return;
	}
	if (s->auth_final) {
		if (len != 0)
			smtp__auth_end(s, 535, "5.7.8", "Authentication credentials invalid", 0);
		else
			smtp__auth_end(s, 235, "2.7.0", "Authentication successful", 1);
		return;
	}
	buf in, out;
	buf_init(&in);
	buf_init(&out);
	if (sasl_b64_decode(line, len, SASL_MAX_RESPONSE, &in) < 0)
		smtp__auth_end(s, 501, "5.5.2", "Cannot decode response", -1);
	else
		smtp__auth_next(s, sasl_server_step(s->sasl, in.data, in.len, 1, &out), &out);
	buf_deinit(&in);
	buf_deinit(&out);
}

static void smtp__cmd_auth(smtp_session *s, const struct smtp_command *cmd)
{
	const smtp_server *srv = s->server;
	if (s->auth_user != NULL) {
		smtp__reply(s, 503, "5.5.1", "Error: already authenticated");
		return;
	}
	if (!smtp__auth_allowed(s)) {
		smtp__reply(s, 530, "5.7.0", "Must issue a STARTTLS command first");
		return;
	}
	char mech_name[32];
	const char *arg = cmd->arg;
	size_t ml = strcspn(arg, " ");
	enum sasl_mech mech;
	snprintf(mech_name, sizeof mech_name, "%.*s", (int)(ml < 31 ? ml : 31), arg);
	if (ml >= sizeof mech_name || sasl_mech_parse(mech_name, &mech) < 0 ||
	    !(srv->set.auth_mechs & (1u << mech))) {
		smtp__reply(s, 504, "5.5.4", "Unrecognized authentication type");
		return;
	}
	const char *ir = arg[ml] == ' ' ? arg + ml + 1 : NULL;
	buf in, out;
	buf_init(&in);
	buf_init(&out);
	if (ir != NULL && sasl_b64_decode(ir, strlen(ir), SASL_MAX_RESPONSE, &in) < 0) {
		smtp__reply(s, 501, "5.5.2", "Cannot decode response");
	} else {
		s->sasl = sasl_server_new(mech, srv->set.sasl_secret, srv->set.sasl_secret_len);
		smtp__auth_next(s, sasl_server_step(s->sasl, in.data, in.len, ir != NULL, &out),
				&out);
	}
	buf_deinit(&in);
	buf_deinit(&out);
}

void smtp_session_auth_complete(smtp_session *s, int status,
				const struct sasl_scram_keys *keys)
{
	if (!s->pending || s->pending_cmd != SMTP_CMD_AUTH)
		abort(); /* a completion without a pending AUTH is a bug */
	s->pending = 0;
	if (s->closing) {
		sasl_server_free(&s->sasl);
		smtp__session_maybe_free(s);
		return;
	}
	buf out;
	buf_init(&out);
	if (status != MAIL_OK && status != MAIL_ERR_PERM)
		smtp__auth_end(s, 454, "4.7.0", "Temporary authentication failure", -1);
	else if (s->auth_kind == SMTP_AUTH_PASSWORD)
		smtp__auth_next(s, sasl_server_checked(s->sasl, status == MAIL_OK), &out);
	else if (status == MAIL_OK && keys != NULL)
		smtp__auth_next(s, sasl_server_scram_keys(s->sasl, keys, &out), &out);
	else
		smtp__auth_next(s, sasl_server_scram_unknown(s->sasl, &out), &out);
	buf_deinit(&out);
	smtp__session_resume_after(s);
}

/* Enforce the table's flags, then run the handler. */
static void smtp__dispatch(smtp_session *s, const struct smtp_command *cmd)
{
	const struct smtp__cmd_def *def = &smtp__cmds[cmd->kind];
	if (def->handler == NULL || ((def->flags & SMTP__F_TLS) && s->server->set.tls == NULL) ||
	    ((def->flags & SMTP__F_AUTH) && s->server->set.auth_mechs == 0))
		smtp__reply(s, 502, "5.5.1", "Error: command not implemented");
	else if ((def->flags & SMTP__F_HELO) && s->helo == NULL)
		smtp__reply(s, 503, "5.5.1", "Error: send HELO/EHLO first");
	else if ((def->flags & SMTP__F_NO_MAIL) && s->in_mail)
		smtp__reply(s, 503, "5.5.1", "Error: nested MAIL command");
	else if ((def->flags & SMTP__F_MAIL) && !s->in_mail)
		smtp__reply(s, 503, "5.5.1", "Error: need MAIL command");
	else if ((def->flags & SMTP__F_RCPT) && s->n_rcpts == 0)
		smtp__reply(s, 554, "5.5.1", "Error: no valid recipients");
	else
		def->handler(s, cmd);
}

/* ---- input ------------------------------------------------------------ */

static void smtp__session_process(smtp_session *s)
{
	if (s->in_process)
		return;
	s->in_process = 1;
	size_t off = 0;
	while (!s->closing && !s->pending && off < s->in.len && !s->output_full) {
		const uint8_t *p = s->in.data + off;
		size_t n = s->in.len - off, used = 0;
		if (s->phase == SMTP__PHASE_AUTH) {
			const uint8_t *nl = memchr(p, '\n', n);
			if (nl == NULL) {
				if (n > SMTP__AUTH_LINE_MAX + 2) {
					off = s->in.len;
					smtp__auth_end(s, 500, "5.5.6", "Authentication Exchange line is too long", -1);
				}
				break;
			}
			size_t len = (size_t)(nl - p);
			off += len + 1;
			if (len > 0 && p[len - 1] == '\r')
				len--;
			smtp__auth_response(s, (const char *)p, len);
			continue;
		}
		if (s->phase == SMTP__PHASE_DATA) {
			int ret = smtp_data_reader_feed(&s->data, p, n, &used);
			off += used;
			smtp__budget_track(s);
			if (ret == 1)
				smtp__data_end(s);
			continue;
		}
		struct smtp_command cmd;
		int ret = smtp_command_parser_feed(&s->parser, p, n, &used, &cmd);
		off += used;
		if (ret < 0)
			smtp__reply(s, cmd.error.code, cmd.error.enh, cmd.error.text);
		else if (ret > 0)
			smtp__dispatch(s, &cmd);
		if (s->out.len >= s->server->set.max_output)
			smtp__session_flush(s);
		if (smtp__output_queued(s) >= s->server->set.max_output)
			s->output_full = 1; /* resumed by the write callback */
		if (s->discard_input) {
			if (off < s->in.len)
				log_event(LOG_WARN, smtp__svc(s),
					  "event=starttls_pipelined sid=%s peer=%s dropped=%zu", s->id,
					  s->peer_ip, s->in.len - off);
			off = s->in.len;
			s->discard_input = 0;
		}
	}
	buf_consume(&s->in, off);
	s->in_process = 0;
	smtp__session_flush(s);
	if (s->closing)
		return;
	/* Bound what a pipelining client can make us hold, and what a client
	 * that does not read its replies can make us queue. */
	if (s->reading && (s->in.len >= s->server->set.max_pending_input || s->output_full)) {
		uv_read_stop((uv_stream_t *)&s->tcp);
		s->reading = 0;
	}
}

static void smtp__alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	(void)suggested;
	smtp_session *s = h->data;
	b->base = s->server->readbuf;
	b->len = sizeof s->server->readbuf;
}

/* Slowloris in DATA: the whole phase too long, or too slow on average
 * after the grace period. Closes the session (1) or not (0). */
static int smtp__data_too_slow(smtp_session *s)
{
	const struct smtp_server_settings *set = &s->server->set;
	uint64_t elapsed = uv_now(s->server->loop) - s->data_start;
	const char *why = NULL;
	if (elapsed > set->data_timeout_ms)
		why = "data_timeout";
	else if (elapsed > set->data_rate_grace_ms &&
		 (uint64_t)s->data.size * 1000 / elapsed < set->data_min_rate)
		why = "data_too_slow";
	if (why == NULL)
		return 0;
	log_event(LOG_INFO, smtp__svc(s), "event=%s sid=%s peer=%s size=%zu ms=%llu", why, s->id,
		  s->peer_ip, s->data.size, (unsigned long long)elapsed);
	smtp__txn_reset(s);
	s->phase = SMTP__PHASE_COMMAND;
	smtp__reply(s, 451, "4.4.2", "Timeout: the message came in too slowly");
	smtp__session_close(s, why, 1);
	return 1;
}

static void smtp__session_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
	smtp_session *s = st->data;
	if (nread < 0) {
		smtp__session_close(s, nread == UV_EOF ? "client_closed" : "read_error", 0);
		return;
	}
	if (nread == 0 || s->closing)
		return;
	if (s->tls != NULL) {
		buf net;
		buf_init(&net);
		enum tls_feed_result r = tls_conn_feed(s->tls, b->base, (size_t)nread, &s->in, &net);
		smtp__write_raw(s, &net);
		buf_deinit(&net);
		if (r == TLS_FEED_ERROR) {
			log_event(LOG_INFO, smtp__svc(s), "event=tls_failed sid=%s peer=%s error=\"%s\"",
				  s->id, s->peer_ip, tls_conn_error(s->tls));
			smtp__session_close(s, "tls_error", 0);
			return;
		}
		tls_conn_log_handshake(s->tls, smtp__svc(s), s->id);
		if (r == TLS_FEED_CLOSED) {
			smtp__session_process(s);
			smtp__session_close(s, "client_closed", 0);
			return;
		}
	} else {
		buf_append(&s->in, b->base, (size_t)nread);
	}
	uv_timer_again(&s->idle);
	if (s->phase == SMTP__PHASE_DATA && smtp__data_too_slow(s))
		return;
	smtp__session_process(s);
}

static void smtp__session_read_start(smtp_session *s)
{
	if (s->reading || s->closing)
		return;
	if (uv_read_start((uv_stream_t *)&s->tcp, smtp__alloc_cb, smtp__session_read_cb) < 0) {
		smtp__session_close(s, "read_error", 0);
		return;
	}
	s->reading = 1;
}

static void smtp__idle_cb(uv_timer_t *t)
{
	smtp_session *s = t->data;
	if (s->pending)
		return; /* waiting on us, not on the client; rearmed on completion */
	char text[300];
	snprintf(text, sizeof text, "%s Error: timeout exceeded", s->server->hostname);
	smtp__reply(s, 421, "4.4.2", text);
	smtp__session_close(s, "timeout", 1);
}

static void smtp__kick_cb(uv_timer_t *t)
{
	smtp_session *s = t->data;
	smtp__session_process(s);
	if (!s->closing && !s->output_full && s->in.len < s->server->set.max_pending_input)
		smtp__session_read_start(s);
}

void smtp_session_complete(smtp_session *s, int code, const char *enh, const char *text)
{
	if (!s->pending)
		abort(); /* a completion without a pending callback is a bug */
	s->pending = 0;
	char *arg = s->pending_arg;
	s->pending_arg = NULL;
	if (s->closing) {
		free(arg);
		smtp__session_maybe_free(s);
		return;
	}
	int ok = code >= 200 && code < 300;
	switch (s->pending_cmd) {
	case SMTP_CMD_MAIL:
		if (ok) {
			s->in_mail = 1;
			s->mail_from = arg;
			s->params = s->pending_params;
			arg = NULL;
		}
		break;
	case SMTP_CMD_RCPT:
		if (ok && !smtp__rcpt_known(s, arg)) { /* pipelined duplicates */
			s->rcpts = xrealloc(s->rcpts, (s->n_rcpts + 1) * sizeof *s->rcpts);
			s->rcpt_params = xrealloc(s->rcpt_params,
						  (s->n_rcpts + 1) * sizeof *s->rcpt_params);
			s->rcpt_params[s->n_rcpts] = s->pending_rcpt_params;
			s->rcpts[s->n_rcpts++] = arg;
			arg = NULL;
		}
		break;
	case SMTP_CMD_DATA:
		if (ok)
			s->messages++;
		smtp__txn_reset(s);
		break;
	default:
		break;
	}
	if (!ok) {
		char q[128];
		const char *a = arg != NULL ? arg : "";
		log_event(LOG_INFO, smtp__svc(s),
			  "event=rejected sid=%s cmd=%s code=%d enh=%s arg=%s", s->id,
			  smtp_command_name(s->pending_cmd), code, enh != NULL ? enh : "-",
			  log_quote(q, sizeof q, a, strlen(a)));
	}
	free(arg);
	smtp__reply(s, code, enh, text);
	smtp__session_resume_after(s);
}

/* After a completion: the shutdown's 421, or processing on a fresh stack. */
static void smtp__session_resume_after(smtp_session *s)
{
	if (s->server->stopping && !s->closing) {
		/* smtp_server_stop() let this command finish: now the session
		 * ends, after its reply */
		smtp__reply(s, 421, "4.3.2", "Service shutting down");
		smtp__session_close(s, "shutdown", 1);
		return;
	}
	if (!s->in_process && !s->closing) {
		/* Resume on a fresh stack in the next loop iteration. */
		uv_timer_again(&s->idle);
		uv_timer_start(&s->kick, smtp__kick_cb, 0, 0);
	}
}

/* ---- accept ----------------------------------------------------------- */

/* Which cap a new session s is over (NULL: none). Trusted networks are
 * exempt. */
static const char *smtp__over_cap(const smtp_server *srv, const smtp_session *s)
{
	if (cidr_match_text(srv->set.trusted, s->peer_ip))
		return NULL;
	if (srv->n_sessions > srv->set.max_sessions)
		return "max_sessions";
	unsigned same = 0;
	for (const smtp_session *o = srv->sessions; o != NULL; o = o->next)
		same += !o->closing && strcmp(o->peer_ip, s->peer_ip) == 0;
	return same > srv->set.max_sessions_per_ip ? "max_sessions_per_ip" : NULL;
}

static void smtp__on_connection(uv_stream_t *listener, int status)
{
	smtp_server *srv = listener->data;
	if (status < 0 || srv->stopping)
		return;
	smtp_session *s = xcalloc(1, sizeof *s);
	s->server = srv;
	s->next = srv->sessions;
	if (srv->sessions != NULL)
		srv->sessions->prev = s;
	srv->sessions = s;
	srv->n_sessions++;
	util_random_hex(s->id, 8);
	smtp_command_parser_init(&s->parser, &srv->set.limits);
	smtp_command_parser_set_flags(&s->parser, srv->set.dsn ? SMTP_PARSER_DSN : 0);
	smtp_data_reader_init(&s->data, srv->set.limits.max_message_size);
	buf_init(&s->in);
	buf_init(&s->out);
	uv_tcp_init(srv->loop, &s->tcp);
	uv_timer_init(srv->loop, &s->idle);
	uv_timer_init(srv->loop, &s->kick);
	s->tcp.data = s->idle.data = s->kick.data = s;
	s->handles_open = 3;
	if (uv_accept(listener, (uv_stream_t *)&s->tcp) < 0) {
		s->closing = 1;
		smtp__session_close_handles(s);
		return;
	}
	uv_tcp_nodelay(&s->tcp, 1);   /* no delayed-ACK wait between replies */
	struct sockaddr_storage ss;
	int len = sizeof ss;
	strcpy(s->peer_ip, "unknown");
	if (uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *a = (struct sockaddr_in *)&ss;
			uv_ip4_name(a, s->peer_ip, sizeof s->peer_ip);
			s->peer_port = ntohs(a->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
			uv_ip6_name(a, s->peer_ip, sizeof s->peer_ip);
			s->peer_port = ntohs(a->sin6_port);
		}
	}
	log_event(LOG_INFO, srv->log_svc, "event=connect sid=%s peer=%s port=%d", s->id,
		  s->peer_ip, s->peer_port);
	const char *over = smtp__over_cap(srv, s);
	if (over == NULL && srv->set.ip_refused != NULL &&
	    srv->set.ip_refused(srv->set.guard_arg, s->peer_ip)) {
		if (!srv->set.implicit_tls)
			smtp__reply_line(s, 421, "4.7.1", "Access denied, try again later", 1);
		smtp__session_close(s, "blocked", 1);
		return;
	}
	if (over != NULL) {
		/* no TLS handshake for a client we turn away */
		if (!srv->set.implicit_tls)
			smtp__reply_line(s, 421, "4.7.0", "Too many connections, try again later", 1);
		smtp__session_close(s, over, 1);
		return;
	}
	if (srv->set.tls != NULL && srv->set.implicit_tls)
		s->tls = tls_conn_new_server(srv->set.tls); /* the greeting waits for it */
	if (srv->cb.on_connect != NULL)
		srv->cb.on_connect(s, srv->ctx);
	char text[300];
	snprintf(text, sizeof text, "%s ESMTP", srv->hostname);
	smtp__reply_line(s, 220, NULL, text, 1);
	smtp__session_flush(s);
	uv_timer_start(&s->idle, smtp__idle_cb, srv->set.idle_timeout_ms,
		       srv->set.idle_timeout_ms);
	smtp__session_read_start(s);
}

/* ---- server ----------------------------------------------------------- */

void smtp_server_settings_init_default(struct smtp_server_settings *set)
{
	memset(set, 0, sizeof *set);
	set->host = "127.0.0.1";
	set->port = 2525;
	set->hostname = "localhost";
	set->log_svc = "smtp";
	smtp_limits_init_default(&set->limits);
	set->idle_timeout_ms = SMTP_DEFAULT_IDLE_TIMEOUT_MS;
	set->max_errors = SMTP_DEFAULT_MAX_ERRORS;
	set->max_pending_input = SMTP_DEFAULT_MAX_PENDING_INPUT;
	set->dsn = 1;
	set->max_sessions = SMTP_DEFAULT_MAX_SESSIONS;
	set->max_sessions_per_ip = SMTP_DEFAULT_MAX_SESSIONS_PER_IP;
	set->data_timeout_ms = SMTP_DEFAULT_DATA_TIMEOUT_MS;
	set->data_min_rate = SMTP_DEFAULT_DATA_MIN_RATE;
	set->max_output = SMTP_DEFAULT_MAX_OUTPUT;
	set->data_rate_grace_ms = SMTP_DEFAULT_DATA_RATE_GRACE_MS;
}

static void smtp__listener_close_cb(uv_handle_t *h)
{
	smtp_server *srv = h->data;
	srv->listener_closed = 1;
	smtp__server_maybe_free(srv);
}

int smtp_server_start(uv_loop_t *loop, const struct smtp_server_settings *settings,
		      const struct smtp_server_callbacks *callbacks, void *ctx,
		      smtp_server **server_r, const char **error_r)
{
	if (callbacks->on_data == NULL) {
		*error_r = "smtp server: on_data callback is required";
		return -1;
	}
	smtp_server *srv = xcalloc(1, sizeof *srv);
	srv->loop = loop;
	srv->set = *settings;
	srv->host = xstrdup(settings->host);
	srv->hostname = xstrdup(settings->hostname);
	srv->log_svc = xstrdup(settings->log_svc);
	srv->set.host = srv->host;
	srv->set.hostname = srv->hostname;
	srv->set.log_svc = srv->log_svc;
	if (srv->set.max_errors == 0)
		srv->set.max_errors = SMTP_DEFAULT_MAX_ERRORS;
	if (srv->set.idle_timeout_ms == 0)
		srv->set.idle_timeout_ms = SMTP_DEFAULT_IDLE_TIMEOUT_MS;
	if (srv->set.max_pending_input < 2 * srv->set.limits.max_line)
		srv->set.max_pending_input = 2 * srv->set.limits.max_line;
	if (srv->set.max_sessions == 0)
		srv->set.max_sessions = SMTP_DEFAULT_MAX_SESSIONS;
	if (srv->set.max_sessions_per_ip == 0)
		srv->set.max_sessions_per_ip = SMTP_DEFAULT_MAX_SESSIONS_PER_IP;
	if (srv->set.data_timeout_ms == 0)
		srv->set.data_timeout_ms = SMTP_DEFAULT_DATA_TIMEOUT_MS;
	if (srv->set.data_min_rate == 0)
		srv->set.data_min_rate = SMTP_DEFAULT_DATA_MIN_RATE;
	if (srv->set.max_output == 0)
		srv->set.max_output = SMTP_DEFAULT_MAX_OUTPUT;
	if (srv->set.data_rate_grace_ms == 0)
		srv->set.data_rate_grace_ms = SMTP_DEFAULT_DATA_RATE_GRACE_MS;
	srv->cb = *callbacks;
	srv->ctx = ctx;
	uv_tcp_init(loop, &srv->listener);
	srv->listener.data = srv;

	struct sockaddr_storage ss;
	const char *err = NULL;
	if (uv_ip4_addr(settings->host, settings->port, (struct sockaddr_in *)&ss) != 0 &&
	    uv_ip6_addr(settings->host, settings->port, (struct sockaddr_in6 *)&ss) != 0)
		err = "smtp server: listen host is not an IP address";
	else if (uv_tcp_bind(&srv->listener, (const struct sockaddr *)&ss, 0) != 0)
		err = "smtp server: cannot bind the listen address";
	else if (uv_listen((uv_stream_t *)&srv->listener, 128, smtp__on_connection) != 0)
		err = "smtp server: cannot listen (address in use?)";
	if (err != NULL) {
		uv_close((uv_handle_t *)&srv->listener, smtp__listener_close_cb);
		*error_r = err;
		return -1;
	}
	int len = sizeof ss;
	uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &len);
	srv->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
					     : ntohs(((struct sockaddr_in *)&ss)->sin_port);
	log_event(LOG_INFO, srv->log_svc, "event=listen host=%s port=%d", srv->host, srv->port);
	*server_r = srv;
	return 0;
}

int smtp_server_port(const smtp_server *server)
{
	return server->port;
}

void smtp_server_stop(smtp_server **server)
{
	smtp_server *srv = *server;
	if (srv == NULL)
		return;
	*server = NULL;
	srv->stopping = 1;
	/* Closing a session never frees it synchronously, so the walk is safe.
	 * A session waiting on a callback (a recipient lookup, the queue's
	 * answer to DATA) finishes that command first: its reply (the 250 of a
	 * message the queue took) goes out, then the 421
	 * (smtp_session_complete). */
	for (smtp_session *s = srv->sessions; s != NULL; s = s->next) {
		if (s->pending)
			continue;
		smtp__reply(s, 421, "4.3.2", "Service shutting down");
		smtp__session_close(s, "shutdown", 1);
	}
	uv_close((uv_handle_t *)&srv->listener, smtp__listener_close_cb);
}

const char *smtp_session_id(const smtp_session *s)
{
	return s->id;
}

const char *smtp_session_peer_ip(const smtp_session *s)
{
	return s->peer_ip;
}

const char *smtp_session_user(const smtp_session *s)
{
	return s->auth_user;
}

void smtp_session_set_data(smtp_session *s, void *data)
{
	s->user_data = data;
}

void *smtp_session_data(const smtp_session *s)
{
	return s->user_data;
}

const char *smtp_session_helo(const smtp_session *s)
{
	return s->helo != NULL ? s->helo : "";
}

int smtp_session_is_closed(const smtp_session *s)
{
	return s->closing;
}

int smtp_session_tls(const smtp_session *s)
{
	return s->tls != NULL && tls_conn_handshake_done(s->tls);
}
