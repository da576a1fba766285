/* smtpc.c: one outbound SMTP session (smtpc.h; docs/smtp-client.md).
 *
 * One uv_tcp_t and one uv_timer_t live in the struct; the struct is freed
 * when both are closed and the caller has destroyed it, so write and
 * connect callbacks (which libuv runs, cancelled, before the handle's
 * close callback) may always look at it. The timer times whatever the
 * session waits for, and, set to 0, delivers what must not run inside
 * the caller's own call (a local refusal, a deferred failure).
 *
 * Replies are matched to commands by order: state says which command the
 * next reply answers; with PIPELINING, MAIL and every RCPT are written at
 * once and msg_replies counts the replies in.
 */
#include "smtpc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "buf.h"
#include "log.h"
#include "xalloc.h"

#define SMTPC_READ_BUF 16384u
#define SMTPC_AUTH_MAX 255u  /* octets of a user name or password */
#define SMTPC_ADDR_MAX 256u  /* RFC 5321 4.5.3.1.3 path */
#define SMTPC_NAME_MAX 255u  /* helo_name, tls_host, log_id */

enum smtpc_state {
	SMTPC_S_INIT = 0,
	SMTPC_S_CONNECTING,
	SMTPC_S_GREETING,
	SMTPC_S_EHLO,
	SMTPC_S_HELO,
	SMTPC_S_STARTTLS,
	SMTPC_S_TLS,             /* handshake running */
	SMTPC_S_AUTH_PLAIN,
	SMTPC_S_AUTH_LOGIN_USER, /* AUTH LOGIN sent, waiting for 334 */
	SMTPC_S_AUTH_LOGIN_PASS, /* user sent */
	SMTPC_S_AUTH_LOGIN_DONE, /* password sent */
	SMTPC_S_IDLE,
	SMTPC_S_MAIL,            /* replies to MAIL and the RCPTs */
	SMTPC_S_DATA_INIT,
	SMTPC_S_DATA_STREAM,
	SMTPC_S_DATA_FINAL,
	SMTPC_S_RSET,
	SMTPC_S_LOCAL_FAIL,      /* a refused message, delivered by the timer */
	SMTPC_S_QUIT,
	SMTPC_S_OVER,
};

struct smtpc {
	uv_loop_t *loop;
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_connect_t connect_req;
	int handles_open;
	int handles_closing;
	int destroyed;
	int cb_depth;

	struct smtpc_callbacks cbs;
	void *ctx;
	char *helo_name, *tls_host, *auth_user, *auth_pass, *log_id;
	enum smtpc_tls_policy policy;
	tls_client *tls_client;
	struct smtpc_timeouts tmo;
	struct smtpc_limits limits;

	enum smtpc_state state;
	enum smtpc_stage wait_stage; /* what the timer is timing */
	smtpc_reply_parser parser;
	size_t input_left;           /* plaintext bytes after the current reply */
	struct smtpc_caps caps;
	tls_conn *tls;
	int tls_up;
	int implicit_tls;   /* TLS from the first byte (smtps) */
	int implicit_wait;  /* that handshake runs: the greeting comes after it */
	int authenticated;
	int ready_sent;
	buf plain_in;                /* TLS: decrypted bytes */
	buf net_out;                 /* bytes for the next write */
	buf scratch;                 /* a command or a stuffed body block */

	int pending_end;             /* the timer ends the session with pending */
	struct smtpc_result pending;

	struct smtpc_message *msg;   /* the transaction, or NULL */
	size_t msg_replies;          /* replies in, MAIL's included */
	size_t rcpt_sent;
	size_t rcpt_ok;
	int mail_failed;
	size_t data_pos;
	int st_bol, st_cr;           /* dot-stuffing: at line start, after CR */

	char read_buf[SMTPC_READ_BUF];
};

struct smtpc_wreq {
	uv_write_t req;
	smtpc *c;
	int data_block;
	size_t len;
	uint8_t data[];
};

static const char *const smtpc_stage_names[] = {
	"none", "connect", "greeting", "ehlo", "starttls", "auth", "mail",
	"rcpt", "data", "data-final", "rset", "quit", "idle",
};

const char *smtpc_stage_name(enum smtpc_stage stage)
{
	if ((size_t)stage >= sizeof smtpc_stage_names / sizeof smtpc_stage_names[0])
		return "unknown";
	return smtpc_stage_names[stage];
}

const char *smtpc_status_name(enum smtpc_status status)
{
	return status == SMTPC_OK ? "ok" : status == SMTPC_TEMP ? "temp" : "perm";
}

void smtpc_timeouts_init_default(struct smtpc_timeouts *t)
{
	t->connect_ms = SMTPC_DEFAULT_CONNECT_MS;
	t->greeting_ms = SMTPC_DEFAULT_GREETING_MS;
	t->ehlo_ms = SMTPC_DEFAULT_EHLO_MS;
	t->tls_ms = SMTPC_DEFAULT_TLS_MS;
	t->mail_ms = SMTPC_DEFAULT_MAIL_MS;
	t->rcpt_ms = SMTPC_DEFAULT_RCPT_MS;
	t->data_init_ms = SMTPC_DEFAULT_DATA_INIT_MS;
	t->data_block_ms = SMTPC_DEFAULT_DATA_BLOCK_MS;
	t->data_final_ms = SMTPC_DEFAULT_DATA_FINAL_MS;
	t->quit_ms = SMTPC_DEFAULT_QUIT_MS;
}

void smtpc_limits_init_default(struct smtpc_limits *l)
{
	smtpc_reply_limits_init_default(&l->reply);
	l->max_rcpts = SMTPC_DEFAULT_MAX_RCPTS;
	l->data_block = SMTPC_DEFAULT_DATA_BLOCK;
}

/* ---- results ------------------------------------------------------------ */

static void smtpc__result_set(struct smtpc_result *r, enum smtpc_status status,
			      enum smtpc_stage stage, int code, const char *enh, const char *text)
{
	memset(r, 0, sizeof *r);
	r->status = status;
	r->stage = stage;
	r->code = code;
	snprintf(r->enh, sizeof r->enh, "%s", enh != NULL ? enh : "");
	snprintf(r->text, sizeof r->text, "%s", text != NULL ? text : "");
}

static enum smtpc_status smtpc__classify(int code)
{
	if (code >= 200 && code < 300)
		return SMTPC_OK;
	if (code >= 500)
		return SMTPC_PERM;
	return SMTPC_TEMP; /* 4xx, and a 3xx where none belongs */
}

static void smtpc__result_reply(struct smtpc_result *r, enum smtpc_stage stage,
				const struct smtpc_reply *rep)
{
	smtpc__result_set(r, smtpc__classify(rep->code), stage, rep->code, rep->enh, NULL);
	size_t n = rep->text_len < sizeof r->text - 1 ? rep->text_len : sizeof r->text - 1;
	for (size_t i = 0; i < n; i++)
		r->text[i] = rep->text[i] == '\n' ? ' ' : rep->text[i];
	r->text[n] = '\0';
}

/* ---- callbacks and lifetime -------------------------------------------- */

static void smtpc__free(smtpc *c)
{
	smtpc_reply_parser_deinit(&c->parser);
	tls_conn_free(&c->tls);
	buf_deinit(&c->plain_in);
	buf_deinit(&c->net_out);
	buf_deinit(&c->scratch);
	if (c->auth_pass != NULL)
		OPENSSL_cleanse(c->auth_pass, strlen(c->auth_pass));
	free(c->helo_name);
	free(c->tls_host);
	free(c->auth_user);
	free(c->auth_pass);
	free(c->log_id);
	free(c);
}

static void smtpc__close_cb(uv_handle_t *h)
{
	smtpc *c = h->data;
	c->handles_open--;
	if (c->handles_open == 0 && c->destroyed && c->cb_depth == 0)
		smtpc__free(c);
}

static void smtpc__close_handles(smtpc *c)
{
	if (c->handles_closing)
		return;
	c->handles_closing = 1;
	uv_close((uv_handle_t *)&c->tcp, smtpc__close_cb);
	uv_close((uv_handle_t *)&c->timer, smtpc__close_cb);
}

/* Around every call into the caller: -1 when it destroyed the session
 * (the memory stays until the handles' close callbacks, so the caller's
 * callers may still look at c->destroyed). */
static void smtpc__enter(smtpc *c)
{
	c->cb_depth++;
}

static int smtpc__leave(smtpc *c)
{
	c->cb_depth--;
	return c->destroyed ? -1 : 0;
}

static void smtpc__log_result(smtpc *c, const char *event, const struct smtpc_result *r)
{
	char q[SMTPC_TEXT_MAX * 2];
	log_event(r->status == SMTPC_OK ? LOG_INFO : LOG_WARN, "smtpc",
		  "event=%s sid=%s status=%s stage=%s code=%d enh=%s text=%s", event, c->log_id,
		  smtpc_status_name(r->status), smtpc_stage_name(r->stage), r->code,
		  r->enh[0] ? r->enh : "-", log_quote(q, sizeof q, r->text, strlen(r->text)));
}

/* The transaction is over (msg->result set): back to idle, done_cb.
 * -1 when the caller destroyed the session. */
static int smtpc__txn_done(smtpc *c)
{
	struct smtpc_message *msg = c->msg;
	c->msg = NULL;
	if (c->state != SMTPC_S_OVER)
		c->state = SMTPC_S_IDLE;
	if (!c->pending_end)
		uv_timer_stop(&c->timer);
	smtpc__log_result(c, "txn", &msg->result);
	if (c->cbs.done_cb == NULL)
		return 0;
	smtpc__enter(c);
	c->cbs.done_cb(c, msg, c->ctx);
	return smtpc__leave(c);
}

/* The session is over: close, finish a transaction in progress with why,
 * closed_cb. */
static void smtpc__end(smtpc *c, const struct smtpc_result *why)
{
	if (c->state == SMTPC_S_OVER || c->destroyed)
		return;
	c->state = SMTPC_S_OVER;
	smtpc__close_handles(c);
	if (c->tls != NULL && c->tls_up) {
		/* no close_notify: the socket is going; nothing waits for it */
	}
	smtpc__log_result(c, "closed", why);
	if (c->msg != NULL) {
		struct smtpc_message *msg = c->msg;
		/* unanswered, or accepted at RCPT with the message not
		 * yet accepted: both still to do */
		for (size_t i = 0; i < msg->rcpt_count; i++) {
			struct smtpc_result *rr = &msg->rcpts[i].result;
			if (rr->stage == SMTPC_STAGE_NONE ||
			    (rr->stage == SMTPC_STAGE_RCPT && rr->status == SMTPC_OK))
				*rr = *why;
		}
		if (msg->result.stage == SMTPC_STAGE_NONE)
			msg->result = *why;
		if (smtpc__txn_done(c) < 0)
			return;
	}
	if (c->cbs.closed_cb != NULL) {
		smtpc__enter(c);
		c->cbs.closed_cb(c, why, c->ctx);
		(void)smtpc__leave(c);
	}
}

static void smtpc__end_temp(smtpc *c, enum smtpc_stage stage, const char *enh, const char *text)
{
	struct smtpc_result r;
	smtpc__result_set(&r, SMTPC_TEMP, stage, 0, enh, text);
	smtpc__end(c, &r);
}

/* Deliver why from the loop (never inside the caller's own call). */
static void smtpc__timer_cb(uv_timer_t *t);

static void smtpc__end_later(smtpc *c, const struct smtpc_result *why)
{
	if (c->pending_end || c->state == SMTPC_S_OVER)
		return;
	c->pending_end = 1;
	c->pending = *why;
	uv_timer_start(&c->timer, smtpc__timer_cb, 0, 0);
}

static void smtpc__arm(smtpc *c, unsigned ms, enum smtpc_stage stage)
{
	if (c->pending_end)
		return;
	c->wait_stage = stage;
	uv_timer_start(&c->timer, smtpc__timer_cb, ms, 0);
}

/* ---- writing -------------------------------------------------------------- */

static void smtpc__data_next(smtpc *c);

static void smtpc__write_cb(uv_write_t *req, int status)
{
	struct smtpc_wreq *w = (struct smtpc_wreq *)req;
	smtpc *c = w->c;
	int data_block = w->data_block;
	free(w);
	if (c->destroyed || c->state == SMTPC_S_OVER)
		return;
	if (status < 0) {
		char why[128];
		snprintf(why, sizeof why, "write failed: %s", uv_strerror(status));
		smtpc__end_temp(c, c->wait_stage, "4.4.2", why);
		return;
	}
	if (data_block && c->state == SMTPC_S_DATA_STREAM)
		smtpc__data_next(c);
}

/* Write out net_out. -1 when the write could not start (the session then
 * ends from the loop). */
static int smtpc__flush(smtpc *c, int data_block)
{
	if (c->net_out.len == 0)
		return 0;
	struct smtpc_wreq *w = xmalloc(sizeof *w + c->net_out.len);
	w->c = c;
	w->data_block = data_block;
	w->len = c->net_out.len;
	memcpy(w->data, c->net_out.data, c->net_out.len);
	buf_reset(&c->net_out);
	uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)w->len);
	int r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, smtpc__write_cb);
	if (r < 0) {
		free(w);
		struct smtpc_result why;
		smtpc__result_set(&why, SMTPC_TEMP, c->wait_stage, 0, "4.4.2", "write failed");
		smtpc__end_later(c, &why);
		return -1;
	}
	return 0;
}

/* Send plaintext (through TLS once it is up). */
static int smtpc__send(smtpc *c, const void *data, size_t len, int data_block)
{
	if (c->tls_up) {
		if (tls_conn_write(c->tls, data, len, &c->net_out) < 0) {
			struct smtpc_result why;
			smtpc__result_set(&why, SMTPC_TEMP, c->wait_stage, 0, "4.7.0",
					  "TLS write failed");
			smtpc__end_later(c, &why);
			return -1;
		}
	} else {
		buf_append(&c->net_out, data, len);
	}
	return smtpc__flush(c, data_block);
}

static int smtpc__cmd(smtpc *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int smtpc__cmd(smtpc *c, const char *fmt, ...)
{
	char line[2 * SMTPC_MAX_PARAMS + 2 * SMTPC_ADDR_MAX];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof line - 2)
		abort(); /* inputs are checked against their limits first */
	memcpy(line + n, "\r\n", 2);
	int r = smtpc__send(c, line, (size_t)n + 2, 0);
	OPENSSL_cleanse(line, sizeof line); /* it may have held AUTH data */
	return r;
}

/* ---- DATA: dot-stuffing and CRLF, block by block ------------------------- */

/* Stuff in[0..len) into out: a bare LF or bare CR becomes CRLF, a "." at
 * the start of a line becomes "..". Output is at most 2*len + 2 bytes. */
static void smtpc__stuff(smtpc *c, const uint8_t *in, size_t len, buf *out)
{
	buf_reserve(out, 2 * len + 2);
	uint8_t *o = out->data + out->len;
	for (size_t i = 0; i < len; i++) {
		uint8_t b = in[i];
		if (c->st_cr) {
			c->st_cr = 0;
			*o++ = '\r';
			*o++ = '\n';
			c->st_bol = 1;
			if (b == '\n')
				continue;
		}
		if (b == '\r') {
			c->st_cr = 1;
		} else if (b == '\n') {
			*o++ = '\r';
			*o++ = '\n';
			c->st_bol = 1;
		} else {
			if (c->st_bol && b == '.')
				*o++ = '.';
			*o++ = b;
			c->st_bol = 0;
		}
	}
	out->len = (size_t)(o - out->data);
}

static void smtpc__data_next(smtpc *c)
{
	struct smtpc_message *msg = c->msg;
	size_t left = msg->body_len - c->data_pos;
	size_t n = left < c->limits.data_block ? left : c->limits.data_block;
	buf_reset(&c->scratch);
	smtpc__stuff(c, msg->body + c->data_pos, n, &c->scratch);
	c->data_pos += n;
	int last = c->data_pos == msg->body_len;
	if (last) {
		if (c->st_cr || !c->st_bol)
			buf_append(&c->scratch, "\r\n", 2);
		c->st_cr = 0;
		buf_append(&c->scratch, ".\r\n", 3);
		c->state = SMTPC_S_DATA_FINAL;
		smtpc__arm(c, c->tmo.data_final_ms, SMTPC_STAGE_DATA_FINAL);
	} else {
		smtpc__arm(c, c->tmo.data_block_ms, SMTPC_STAGE_DATA);
	}
	(void)smtpc__send(c, c->scratch.data, c->scratch.len, !last);
	buf_reset(&c->scratch);
}

/* ---- the protocol ------------------------------------------------------- */

static void smtpc__ready(smtpc *c)
{
	c->state = SMTPC_S_IDLE;
	uv_timer_stop(&c->timer);
	c->wait_stage = SMTPC_STAGE_IDLE;
	log_event(LOG_INFO, "smtpc", "event=ready sid=%s tls=%s auth=%s caps=0x%x", c->log_id,
		  c->tls_up ? tls_conn_version(c->tls) : "none", c->authenticated ? "yes" : "no",
		  c->caps.flags);
	if (c->ready_sent || c->cbs.ready_cb == NULL)
		return;
	c->ready_sent = 1;
	smtpc__enter(c);
	c->cbs.ready_cb(c, c->ctx);
	(void)smtpc__leave(c);
}

static void smtpc__ehlo(smtpc *c)
{
	c->state = SMTPC_S_EHLO;
	smtpc__arm(c, c->tmo.ehlo_ms, SMTPC_STAGE_EHLO);
	smtpc__cmd(c, "EHLO %s", c->helo_name);
}

static void smtpc__b64(const char *in, size_t len, char *out)
{
	EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)in, (int)len);
}

static void smtpc__auth(smtpc *c)
{
	if (!c->tls_up) {
		smtpc__end_temp(c, SMTPC_STAGE_AUTH, "4.7.0",
				"refusing to send credentials without TLS");
		return;
	}
	if (!(c->caps.auth & (SMTPC_AUTH_PLAIN | SMTPC_AUTH_LOGIN))) {
		smtpc__end_temp(c, SMTPC_STAGE_AUTH, "4.7.0",
				"server offers no AUTH mechanism we use (PLAIN, LOGIN)");
		return;
	}
	smtpc__arm(c, c->tmo.ehlo_ms, SMTPC_STAGE_AUTH);
	if (c->caps.auth & SMTPC_AUTH_PLAIN) {
		size_t ul = strlen(c->auth_user), pl = strlen(c->auth_pass);
		char raw[2 * SMTPC_AUTH_MAX + 2];
		char b64[4 * ((sizeof raw + 2) / 3) + 1];
		raw[0] = '\0';
		memcpy(raw + 1, c->auth_user, ul);
		raw[1 + ul] = '\0';
		memcpy(raw + 2 + ul, c->auth_pass, pl);
		smtpc__b64(raw, 2 + ul + pl, b64);
		c->state = SMTPC_S_AUTH_PLAIN;
		smtpc__cmd(c, "AUTH PLAIN %s", b64);
		OPENSSL_cleanse(raw, sizeof raw);
		OPENSSL_cleanse(b64, sizeof b64);
	} else {
		c->state = SMTPC_S_AUTH_LOGIN_USER;
		smtpc__cmd(c, "AUTH LOGIN");
	}
}

static void smtpc__auth_login_step(smtpc *c, const char *secret, enum smtpc_state next)
{
	char b64[4 * ((SMTPC_AUTH_MAX + 2) / 3) + 1];
	smtpc__b64(secret, strlen(secret), b64);
	c->state = next;
	smtpc__arm(c, c->tmo.ehlo_ms, SMTPC_STAGE_AUTH);
	smtpc__cmd(c, "%s", b64);
	OPENSSL_cleanse(b64, sizeof b64);
}

/* EHLO/HELO done: STARTTLS, AUTH or ready, per policy. */
static void smtpc__after_ehlo(smtpc *c)
{
	if (!c->tls_up && c->policy != SMTPC_TLS_NONE) {
		if (c->caps.flags & SMTPC_CAP_STARTTLS) {
			c->state = SMTPC_S_STARTTLS;
			smtpc__arm(c, c->tmo.ehlo_ms, SMTPC_STAGE_STARTTLS);
			smtpc__cmd(c, "STARTTLS");
			return;
		}
		if (c->policy != SMTPC_TLS_MAY) {
			smtpc__end_temp(c, SMTPC_STAGE_STARTTLS, "4.7.4",
					"TLS required by policy but STARTTLS not offered");
			return;
		}
	}
	if (c->auth_user != NULL && !c->authenticated) {
		smtpc__auth(c);
		return;
	}
	smtpc__ready(c);
}

static void smtpc__start_tls(smtpc *c)
{
	if (c->input_left > 0) {
		/* CVE-2011-0411 style injection: nothing may follow the 220 */
		smtpc__end_temp(c, SMTPC_STAGE_STARTTLS, "4.7.0",
				"plaintext after the STARTTLS reply");
		return;
	}
	c->tls = tls_conn_new_client(c->tls_client, c->tls_host);
	c->state = SMTPC_S_TLS;
	smtpc__arm(c, c->tmo.tls_ms, SMTPC_STAGE_STARTTLS);
	buf plain;
	buf_init(&plain);
	enum tls_feed_result fr = tls_conn_feed(c->tls, NULL, 0, &plain, &c->net_out);
	buf_deinit(&plain);
	if (fr == TLS_FEED_ERROR) {
		smtpc__end_temp(c, SMTPC_STAGE_STARTTLS, "4.7.5", "TLS handshake failed");
		return;
	}
	smtpc__flush(c, 0);
}

/* The whole transaction failed before DATA (MAIL, all RCPTs, DATA's
 * reply): RSET, done_cb on its reply. */
static void smtpc__rset(smtpc *c)
{
	c->state = SMTPC_S_RSET;
	smtpc__arm(c, c->tmo.ehlo_ms, SMTPC_STAGE_RSET);
	smtpc__cmd(c, "RSET");
}

static void smtpc__send_rcpt(smtpc *c)
{
	struct smtpc_rcpt *r = &c->msg->rcpts[c->rcpt_sent++];
	int dsn = (c->caps.flags & SMTPC_CAP_DSN) && r->dsn_params != NULL && r->dsn_params[0];
	smtpc__cmd(c, "RCPT TO:<%s>%s%s", r->addr, dsn ? " " : "", dsn ? r->dsn_params : "");
}

static void smtpc__after_rcpts(smtpc *c)
{
	struct smtpc_message *msg = c->msg;
	if (c->mail_failed) {
		smtpc__rset(c);
		return;
	}
	if (c->rcpt_ok == 0) {
		int any_temp = 0;
		for (size_t i = 0; i < msg->rcpt_count; i++)
			any_temp |= msg->rcpts[i].result.status == SMTPC_TEMP;
		smtpc__result_set(&msg->result, any_temp ? SMTPC_TEMP : SMTPC_PERM,
				  SMTPC_STAGE_RCPT, 0, any_temp ? "4.0.0" : "5.0.0",
				  "all recipients failed");
		smtpc__rset(c);
		return;
	}
	c->state = SMTPC_S_DATA_INIT;
	smtpc__arm(c, c->tmo.data_init_ms, SMTPC_STAGE_DATA);
	smtpc__cmd(c, "DATA");
}

/* The result of a reply for every recipient that RCPT accepted. */
static void smtpc__set_accepted(smtpc *c, const struct smtpc_result *r)
{
	struct smtpc_message *msg = c->msg;
	for (size_t i = 0; i < msg->rcpt_count; i++) {
		if (msg->rcpts[i].result.status == SMTPC_OK &&
		    msg->rcpts[i].result.stage == SMTPC_STAGE_RCPT)
			msg->rcpts[i].result = *r;
	}
}

static void smtpc__reply_mail(smtpc *c, const struct smtpc_reply *rep)
{
	struct smtpc_message *msg = c->msg;
	int pipelining = (c->caps.flags & SMTPC_CAP_PIPELINING) != 0;
	if (c->msg_replies++ == 0) {
		if (rep->code / 100 == 2) {
			if (!pipelining) {
				smtpc__arm(c, c->tmo.rcpt_ms, SMTPC_STAGE_RCPT);
				smtpc__send_rcpt(c);
			}
			return;
		}
		c->mail_failed = 1;
		smtpc__result_reply(&msg->result, SMTPC_STAGE_MAIL, rep);
		if (msg->result.status == SMTPC_OK) /* cannot be: 2xx above */
			msg->result.status = SMTPC_TEMP;
		for (size_t i = 0; i < msg->rcpt_count; i++)
			msg->rcpts[i].result = msg->result;
		if (!pipelining)
			smtpc__after_rcpts(c);
		else
			smtpc__arm(c, c->tmo.rcpt_ms, SMTPC_STAGE_RCPT);
		return;
	}
	size_t idx = c->msg_replies - 2;
	if (!c->mail_failed) {
		smtpc__result_reply(&msg->rcpts[idx].result, SMTPC_STAGE_RCPT, rep);
		if (msg->rcpts[idx].result.status == SMTPC_OK)
			c->rcpt_ok++;
	}
	if (idx + 1 == msg->rcpt_count) {
		smtpc__after_rcpts(c);
		return;
	}
	smtpc__arm(c, c->tmo.rcpt_ms, SMTPC_STAGE_RCPT);
	if (!pipelining)
		smtpc__send_rcpt(c);
}

static void smtpc__reply(smtpc *c, const struct smtpc_reply *rep)
{
	struct smtpc_result r;
	if (rep->code == 421 && c->state != SMTPC_S_QUIT) {
		/* the server is closing the channel, whatever we asked */
		smtpc__result_reply(&r, c->wait_stage, rep);
		smtpc__end(c, &r);
		return;
	}
	int ok = rep->code / 100 == 2;
	switch (c->state) {
	case SMTPC_S_GREETING:
		if (ok) {
			smtpc__ehlo(c);
			return;
		}
		smtpc__result_reply(&r, SMTPC_STAGE_GREETING, rep);
		break;
	case SMTPC_S_EHLO:
		if (ok) {
			smtpc_caps_parse(rep, &c->caps);
			smtpc__after_ehlo(c);
			return;
		}
		if (rep->code / 100 == 5 && !c->tls_up) {
			c->state = SMTPC_S_HELO;
			smtpc__arm(c, c->tmo.ehlo_ms, SMTPC_STAGE_EHLO);
			smtpc__cmd(c, "HELO %s", c->helo_name);
			return;
		}
		smtpc__result_reply(&r, SMTPC_STAGE_EHLO, rep);
		break;
	case SMTPC_S_HELO:
		if (ok) {
			memset(&c->caps, 0, sizeof c->caps);
			smtpc__after_ehlo(c);
			return;
		}
		smtpc__result_reply(&r, SMTPC_STAGE_EHLO, rep);
		break;
	case SMTPC_S_STARTTLS:
		if (rep->code == 220) {
			smtpc__start_tls(c);
			return;
		}
		/* offered, then refused: never plaintext after that */
		smtpc__result_reply(&r, SMTPC_STAGE_STARTTLS, rep);
		r.status = SMTPC_TEMP;
		break;
	case SMTPC_S_AUTH_PLAIN:
	case SMTPC_S_AUTH_LOGIN_DONE:
		if (rep->code == 235) {
			c->authenticated = 1;
			smtpc__ready(c);
			return;
		}
		smtpc__result_reply(&r, SMTPC_STAGE_AUTH, rep);
		r.status = SMTPC_TEMP;
		break;
	case SMTPC_S_AUTH_LOGIN_USER:
	case SMTPC_S_AUTH_LOGIN_PASS:
		if (rep->code == 334) {
			if (c->state == SMTPC_S_AUTH_LOGIN_USER)
				smtpc__auth_login_step(c, c->auth_user, SMTPC_S_AUTH_LOGIN_PASS);
			else
				smtpc__auth_login_step(c, c->auth_pass, SMTPC_S_AUTH_LOGIN_DONE);
			return;
		}
		smtpc__result_reply(&r, SMTPC_STAGE_AUTH, rep);
		r.status = SMTPC_TEMP;
		break;
	case SMTPC_S_MAIL:
		smtpc__reply_mail(c, rep);
		return;
	case SMTPC_S_DATA_INIT:
		if (rep->code == 354) {
			c->state = SMTPC_S_DATA_STREAM;
			c->data_pos = 0;
			c->st_bol = 1;
			c->st_cr = 0;
			smtpc__data_next(c);
			return;
		}
		smtpc__result_reply(&c->msg->result, SMTPC_STAGE_DATA, rep);
		if (c->msg->result.status == SMTPC_OK)
			c->msg->result.status = SMTPC_TEMP;
		smtpc__set_accepted(c, &c->msg->result);
		smtpc__rset(c);
		return;
	case SMTPC_S_DATA_FINAL:
		smtpc__result_reply(&c->msg->result, SMTPC_STAGE_DATA_FINAL, rep);
		smtpc__set_accepted(c, &c->msg->result);
		(void)smtpc__txn_done(c);
		return;
	case SMTPC_S_RSET:
		if (!ok) {
			/* the session is not usable: end it right after done_cb
			 * (pending_end keeps smtpc_idle() false inside it) */
			smtpc__result_reply(&r, SMTPC_STAGE_RSET, rep);
			r.status = SMTPC_TEMP;
			smtpc__end_later(c, &r);
		}
		(void)smtpc__txn_done(c);
		return;
	case SMTPC_S_QUIT:
		smtpc__result_set(&r, SMTPC_OK, SMTPC_STAGE_QUIT, rep->code, rep->enh, "quit");
		smtpc__end(c, &r);
		return;
	default:
		/* a reply nobody asked for (IDLE, DATA_STREAM, TLS, LOCAL_FAIL) */
		smtpc__result_reply(&r, c->wait_stage, rep);
		if (r.status == SMTPC_OK)
			r.status = SMTPC_TEMP;
		break;
	}
	smtpc__end(c, &r);
}

/* Plaintext from the server. */
static void smtpc__input(smtpc *c, const uint8_t *data, size_t len)
{
	size_t off = 0;
	while (off < len && c->state != SMTPC_S_OVER && !c->destroyed) {
		size_t used = 0;
		struct smtpc_reply rep;
		const char *err = NULL;
		int r = smtpc_reply_parser_feed(&c->parser, data + off, len - off, &used, &rep, &err);
		off += used;
		if (r < 0) {
			char why[128];
			snprintf(why, sizeof why, "protocol error: %s", err);
			smtpc__end_temp(c, c->wait_stage, "4.5.0", why);
			return;
		}
		if (r == 0)
			return;
		c->input_left = len - off;
		smtpc__reply(c, &rep);
		if (c->state == SMTPC_S_TLS)
			return; /* input_left was checked: nothing follows */
	}
}

/* ---- libuv callbacks ---------------------------------------------------- */

static void smtpc__timer_cb(uv_timer_t *t)
{
	smtpc *c = t->data;
	if (c->pending_end) {
		c->pending_end = 0;
		struct smtpc_result why = c->pending;
		smtpc__end(c, &why);
		return;
	}
	if (c->state == SMTPC_S_LOCAL_FAIL) {
		(void)smtpc__txn_done(c);
		return;
	}
	if (c->state == SMTPC_S_QUIT) {
		struct smtpc_result r;
		smtpc__result_set(&r, SMTPC_OK, SMTPC_STAGE_QUIT, 0, "", "quit (no reply)");
		smtpc__end(c, &r);
		return;
	}
	char why[96];
	snprintf(why, sizeof why, "timeout waiting at %s", smtpc_stage_name(c->wait_stage));
	smtpc__end_temp(c, c->wait_stage, "4.4.2", why);
}

static void smtpc__alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	(void)suggested;
	smtpc *c = h->data;
	b->base = c->read_buf;
	b->len = sizeof c->read_buf;
}

static void smtpc__tls_input(smtpc *c, const uint8_t *data, size_t len)
{
	enum tls_feed_result fr = tls_conn_feed(c->tls, data, len, &c->plain_in, &c->net_out);
	smtpc__flush(c, 0);
	if (fr == TLS_FEED_ERROR) {
		char why[160];
		snprintf(why, sizeof why, "TLS failed: %s", tls_conn_error(c->tls));
		smtpc__end_temp(c, SMTPC_STAGE_STARTTLS, "4.7.5", why);
		return;
	}
	if (c->state == SMTPC_S_TLS && tls_conn_handshake_done(c->tls)) {
		c->tls_up = 1;
		log_event(LOG_INFO, "smtpc", "event=tls sid=%s version=%s cipher=%s", c->log_id,
			  tls_conn_version(c->tls), tls_conn_cipher(c->tls));
		memset(&c->caps, 0, sizeof c->caps);
		if (c->implicit_wait) {
			/* smtps: now the greeting, in TLS */
			c->implicit_wait = 0;
			c->state = SMTPC_S_GREETING;
			smtpc__arm(c, c->tmo.greeting_ms, SMTPC_STAGE_GREETING);
		} else {
			smtpc__ehlo(c);
		}
	}
	if (c->plain_in.len > 0 && c->state != SMTPC_S_OVER) {
		/* the parser keeps partial lines itself: hand everything over */
		buf in = c->plain_in;
		buf_init(&c->plain_in);
		smtpc__input(c, in.data, in.len);
		buf_deinit(&in);
	}
	if (fr == TLS_FEED_CLOSED && c->state != SMTPC_S_OVER && !c->destroyed) {
		if (c->state == SMTPC_S_QUIT) {
			struct smtpc_result r;
			smtpc__result_set(&r, SMTPC_OK, SMTPC_STAGE_QUIT, 0, "", "quit");
			smtpc__end(c, &r);
		} else {
			smtpc__end_temp(c, c->wait_stage, "4.4.2", "TLS closed by server");
		}
	}
}

static void smtpc__read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
	smtpc *c = s->data;
	if (c->destroyed || c->state == SMTPC_S_OVER || nread == 0)
		return;
	if (nread < 0) {
		if (c->state == SMTPC_S_QUIT) {
			struct smtpc_result r;
			smtpc__result_set(&r, SMTPC_OK, SMTPC_STAGE_QUIT, 0, "", "quit");
			smtpc__end(c, &r);
			return;
		}
		char why[128];
		snprintf(why, sizeof why, "%s",
			 nread == UV_EOF ? "connection closed by server" : uv_strerror((int)nread));
		smtpc__end_temp(c, c->state == SMTPC_S_TLS ? SMTPC_STAGE_STARTTLS : c->wait_stage,
				c->state == SMTPC_S_TLS ? "4.7.5" : "4.4.2", why);
		return;
	}
	if (c->tls != NULL)
		smtpc__tls_input(c, (const uint8_t *)b->base, (size_t)nread);
	else
		smtpc__input(c, (const uint8_t *)b->base, (size_t)nread);
}

static void smtpc__connect_cb(uv_connect_t *req, int status)
{
	smtpc *c = req->data;
	if (c->destroyed || c->state == SMTPC_S_OVER)
		return;
	if (status < 0) {
		char why[128];
		snprintf(why, sizeof why, "connect failed: %s", uv_strerror(status));
		smtpc__end_temp(c, SMTPC_STAGE_CONNECT, "4.4.1", why);
		return;
	}
	int r = uv_read_start((uv_stream_t *)&c->tcp, smtpc__alloc_cb, smtpc__read_cb);
	if (r < 0) {
		smtpc__end_temp(c, SMTPC_STAGE_CONNECT, "4.4.1", "read failed");
		return;
	}
	if (c->implicit_tls) {
		c->implicit_wait = 1;
		smtpc__start_tls(c);
		return;
	}
	c->state = SMTPC_S_GREETING;
	smtpc__arm(c, c->tmo.greeting_ms, SMTPC_STAGE_GREETING);
}

/* ---- the public calls ---------------------------------------------------- */

static int smtpc__text_ok(const char *s, size_t max)
{
	size_t n = 0;
	for (; s[n] != '\0'; n++) {
		unsigned char ch = (unsigned char)s[n];
		if (n >= max || ch < 0x20 || ch == 0x7f)
			return 0;
	}
	return 1;
}

/* A mailbox: text, and no < > that would end the path early. */
static int smtpc__addr_ok(const char *s)
{
	return smtpc__text_ok(s, SMTPC_ADDR_MAX) && strpbrk(s, "<>") == NULL;
}

static char *smtpc__dup(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

int smtpc_create(uv_loop_t *loop, const struct smtpc_settings *set,
		 const struct smtpc_callbacks *cbs, void *ctx, smtpc **c_r, const char **error_r)
{
	if (set->helo_name == NULL || set->helo_name[0] == '\0' ||
	    !smtpc__text_ok(set->helo_name, SMTPC_NAME_MAX) ||
	    strchr(set->helo_name, ' ') != NULL) {
		*error_r = "smtpc: bad helo_name";
		return -1;
	}
	if (set->tls != SMTPC_TLS_NONE &&
	    (set->tls_client == NULL || set->tls_host == NULL || set->tls_host[0] == '\0' ||
	     !smtpc__text_ok(set->tls_host, SMTPC_NAME_MAX))) {
		*error_r = "smtpc: TLS policy needs tls_client and tls_host";
		return -1;
	}
	if (set->implicit_tls && set->tls != SMTPC_TLS_ENCRYPT && set->tls != SMTPC_TLS_VERIFY) {
		*error_r = "smtpc: implicit TLS needs policy ENCRYPT or VERIFY";
		return -1;
	}
	if ((set->auth_user == NULL) != (set->auth_pass == NULL) ||
	    (set->auth_user != NULL && (strlen(set->auth_user) > SMTPC_AUTH_MAX ||
					strlen(set->auth_pass) > SMTPC_AUTH_MAX))) {
		*error_r = "smtpc: bad AUTH credentials";
		return -1;
	}
	smtpc *c = xcalloc(1, sizeof *c);
	c->loop = loop;
	if (cbs != NULL)
		c->cbs = *cbs;
	c->ctx = ctx;
	c->helo_name = xstrdup(set->helo_name);
	c->tls_host = smtpc__dup(set->tls_host);
	c->auth_user = smtpc__dup(set->auth_user);
	c->auth_pass = smtpc__dup(set->auth_pass);
	c->log_id = xstrdup(set->log_id != NULL && smtpc__text_ok(set->log_id, SMTPC_NAME_MAX)
				    ? set->log_id
				    : "-");
	c->policy = set->tls;
	c->implicit_tls = set->implicit_tls;
	c->tls_client = set->tls != SMTPC_TLS_NONE ? set->tls_client : NULL;
	struct smtpc_timeouts d;
	smtpc_timeouts_init_default(&d);
	c->tmo = set->timeouts;
	unsigned *t = &c->tmo.connect_ms, *dt = &d.connect_ms;
	for (size_t i = 0; i < sizeof c->tmo / sizeof(unsigned); i++)
		if (t[i] == 0)
			t[i] = dt[i];
	struct smtpc_limits dl;
	smtpc_limits_init_default(&dl);
	c->limits = set->limits;
	if (c->limits.reply.max_line == 0)
		c->limits.reply.max_line = dl.reply.max_line;
	if (c->limits.reply.max_lines == 0)
		c->limits.reply.max_lines = dl.reply.max_lines;
	if (c->limits.reply.max_bytes == 0)
		c->limits.reply.max_bytes = dl.reply.max_bytes;
	if (c->limits.max_rcpts == 0)
		c->limits.max_rcpts = dl.max_rcpts;
	if (c->limits.data_block == 0)
		c->limits.data_block = dl.data_block;
	smtpc_reply_parser_init(&c->parser, &c->limits.reply);
	buf_init(&c->plain_in);
	buf_init(&c->net_out);
	buf_init(&c->scratch);
	uv_tcp_init(loop, &c->tcp);
	uv_timer_init(loop, &c->timer);
	c->tcp.data = c;
	c->timer.data = c;
	c->connect_req.data = c;
	c->handles_open = 2;
	c->state = SMTPC_S_INIT;
	*c_r = c;
	return 0;
}

int smtpc_connect(smtpc *c, const struct sockaddr *addr, const char **error_r)
{
	if (c->state != SMTPC_S_INIT) {
		*error_r = "smtpc: already connected";
		return -1;
	}
	int r = uv_tcp_connect(&c->connect_req, &c->tcp, addr, smtpc__connect_cb);
	if (r < 0) {
		*error_r = "smtpc: connect failed to start";
		return -1;
	}
	c->state = SMTPC_S_CONNECTING;
	smtpc__arm(c, c->tmo.connect_ms, SMTPC_STAGE_CONNECT);
	return 0;
}

int smtpc_idle(const smtpc *c)
{
	return c->state == SMTPC_S_IDLE && c->ready_sent && !c->pending_end && !c->destroyed;
}

int smtpc_send(smtpc *c, struct smtpc_message *msg, const char **error_r)
{
	if (!smtpc_idle(c)) {
		*error_r = "smtpc: session not idle";
		return -1;
	}
	if (msg->rcpt_count == 0 || msg->rcpt_count > c->limits.max_rcpts) {
		*error_r = "smtpc: bad number of recipients";
		return -1;
	}
	if (msg->mail_from == NULL || !smtpc__addr_ok(msg->mail_from) ||
	    (msg->dsn_params != NULL && !smtpc__text_ok(msg->dsn_params, SMTPC_MAX_PARAMS))) {
		*error_r = "smtpc: bad sender or parameters";
		return -1;
	}
	for (size_t i = 0; i < msg->rcpt_count; i++) {
		const struct smtpc_rcpt *r = &msg->rcpts[i];
		if (r->addr == NULL || r->addr[0] == '\0' || !smtpc__addr_ok(r->addr) ||
		    (r->dsn_params != NULL && !smtpc__text_ok(r->dsn_params, SMTPC_MAX_PARAMS))) {
			*error_r = "smtpc: bad recipient or parameters";
			return -1;
		}
	}
	if (msg->body == NULL && msg->body_len > 0) {
		*error_r = "smtpc: no body";
		return -1;
	}
	memset(&msg->result, 0, sizeof msg->result);
	for (size_t i = 0; i < msg->rcpt_count; i++)
		memset(&msg->rcpts[i].result, 0, sizeof msg->rcpts[i].result);
	c->msg = msg;
	c->msg_replies = 0;
	c->rcpt_sent = 0;
	c->rcpt_ok = 0;
	c->mail_failed = 0;

	/* local refusals: nothing is sent, the transaction ends from the loop */
	const char *enh = NULL, *why = NULL;
	if (msg->smtputf8 && !(c->caps.flags & SMTPC_CAP_SMTPUTF8)) {
		enh = "5.6.7";
		why = "message needs SMTPUTF8 and the server does not offer it (RFC 6531)";
	} else if (msg->eight_bit && !(c->caps.flags & SMTPC_CAP_8BITMIME)) {
		enh = "5.6.3";
		why = "8-bit message and the server does not offer 8BITMIME (RFC 6152)";
	} else if ((c->caps.flags & SMTPC_CAP_SIZE) && c->caps.size_max > 0 &&
		   msg->body_len > c->caps.size_max) {
		enh = "5.3.4";
		why = "message larger than the server's SIZE limit";
	}
	if (why != NULL) {
		smtpc__result_set(&msg->result, SMTPC_PERM, SMTPC_STAGE_MAIL, 0, enh, why);
		for (size_t i = 0; i < msg->rcpt_count; i++)
			msg->rcpts[i].result = msg->result;
		c->state = SMTPC_S_LOCAL_FAIL;
		uv_timer_start(&c->timer, smtpc__timer_cb, 0, 0);
		return 0;
	}

	char params[96] = "";
	size_t pl = 0;
	if (c->caps.flags & SMTPC_CAP_SIZE)
		pl += (size_t)snprintf(params + pl, sizeof params - pl, " SIZE=%zu", msg->body_len);
	if (msg->eight_bit)
		pl += (size_t)snprintf(params + pl, sizeof params - pl, " BODY=8BITMIME");
	if (msg->smtputf8)
		pl += (size_t)snprintf(params + pl, sizeof params - pl, " SMTPUTF8");
	int dsn = (c->caps.flags & SMTPC_CAP_DSN) && msg->dsn_params != NULL && msg->dsn_params[0];
	c->state = SMTPC_S_MAIL;
	smtpc__arm(c, c->tmo.mail_ms, SMTPC_STAGE_MAIL);
	smtpc__cmd(c, "MAIL FROM:<%s>%s%s%s", msg->mail_from, params, dsn ? " " : "",
		   dsn ? msg->dsn_params : "");
	if (c->caps.flags & SMTPC_CAP_PIPELINING) {
		while (c->rcpt_sent < msg->rcpt_count && !c->pending_end)
			smtpc__send_rcpt(c);
	}
	return 0;
}

void smtpc_quit(smtpc *c)
{
	if (c->state == SMTPC_S_OVER || c->state == SMTPC_S_QUIT || c->pending_end ||
	    c->destroyed)
		return;
	if (c->state == SMTPC_S_IDLE) {
		c->state = SMTPC_S_QUIT;
		smtpc__arm(c, c->tmo.quit_ms, SMTPC_STAGE_QUIT);
		smtpc__cmd(c, "QUIT");
		return;
	}
	struct smtpc_result why;
	smtpc__result_set(&why, SMTPC_TEMP, c->wait_stage, 0, "4.3.0", "session closed by us");
	smtpc__end_later(c, &why);
}

void smtpc_destroy(smtpc **cp)
{
	smtpc *c = *cp;
	if (c == NULL)
		return;
	*cp = NULL;
	c->destroyed = 1;
	smtpc__close_handles(c);
	if (c->handles_open == 0 && c->cb_depth == 0)
		smtpc__free(c);
}

const struct smtpc_caps *smtpc_caps(const smtpc *c)
{
	return &c->caps;
}

int smtpc_tls_active(const smtpc *c)
{
	return c->tls_up;
}

int smtpc_authenticated(const smtpc *c)
{
	return c->authenticated;
}
