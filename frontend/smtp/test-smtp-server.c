/* test-smtp-server.c: the SMTP engine over real loopback TCP, in process.
 *
 * The server runs on a libuv loop in a second thread; the test thread is
 * the client, with blocking sockets. The test callbacks complete every
 * MAIL/RCPT/DATA asynchronously from a timer, like a real service would:
 *   MAIL from "reject@..."  -> 550 5.7.1
 *   RCPT "nouser@..."       -> 550 5.1.1
 *   RCPT "slow@..."         -> completes after 400 ms
 *   DATA                    -> 250 2.0.0 Ok: queued as TEST, body recorded
 *
 * With --serve, the binary instead runs that server on 127.0.0.1:0, prints
 * "PORT <n>" and one "DATA rcpts=<n> size=<n>" line per message, and runs
 * until killed (test-smtplib.py drives it with Python's smtplib). With
 * "--serve --tls CERT KEY" that listener offers STARTTLS, and a second
 * one, printed as "TLSPORT <n>", speaks TLS from the first byte.
 */
#include "budget.h"
#include "cidr.h"
#include "mail-error.h"
#include "sasl.h"
#include "scram-client.h"
#include "smtp-server.h"
#include "tls.h"

#include <fcntl.h>

#include "xalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "test-smtp-client.h"

struct env {
	uv_loop_t loop;
	uv_async_t stop_async;
	pthread_t thread;
	smtp_server *server;
	int port;
	int serve_mode;
	pthread_mutex_t mu;
	int messages;         /* on_data calls */
	size_t last_rcpts;
	char *last_body;
	size_t last_body_len;
	int completions_after_close;
	char last_mail_dsn[160];  /* on_mail's DSN values, "ret=R envid=E" */
	char last_rcpt_dsn[600];  /* on_rcpt's, "notify=N orcpt=T;A" */
	char last_txn_dsn[2048];  /* on_data's, the mail's then each recipient's */
};

struct op {
	uv_timer_t timer;
	struct env *env;
	smtp_session *s;
	int code;
	char enh[16];
	char text[128];
};

static void op_close_cb(uv_handle_t *h)
{
	free(h->data);
}

static void op_timer_cb(uv_timer_t *t)
{
	struct op *op = t->data;
	if (smtp_session_is_closed(op->s)) {
		pthread_mutex_lock(&op->env->mu);
		op->env->completions_after_close++;
		pthread_mutex_unlock(&op->env->mu);
	}
	smtp_session_complete(op->s, op->code, op->enh, op->text);
	uv_close((uv_handle_t *)&op->timer, op_close_cb);
}

static void complete_later(struct env *env, smtp_session *s, unsigned ms, int code,
			   const char *enh, const char *text)
{
	struct op *op = xcalloc(1, sizeof *op);
	op->env = env;
	op->s = s;
	op->code = code;
	snprintf(op->enh, sizeof op->enh, "%s", enh);
	snprintf(op->text, sizeof op->text, "%s", text);
	uv_timer_init(&env->loop, &op->timer);
	op->timer.data = op;
	uv_timer_start(&op->timer, op_timer_cb, ms, 0);
}

static void dsn_mail_text(char *out, size_t size, const struct dsn_mail_params *m)
{
	snprintf(out, size, "ret=%d envid=%s", (int)m->ret, m->has_envid ? m->envid : "-");
}

static void dsn_rcpt_text(char *out, size_t size, const struct dsn_rcpt_params *r)
{
	snprintf(out, size, "notify=%u orcpt=%s;%s", r->notify, r->orcpt.type, r->orcpt.addr);
}

static void t_on_mail(smtp_session *s, const char *from, const struct smtp_mail_params *p,
		      void *ctx)
{
	struct env *env = ctx;
	pthread_mutex_lock(&env->mu);
	dsn_mail_text(env->last_mail_dsn, sizeof env->last_mail_dsn, &p->dsn);
	pthread_mutex_unlock(&env->mu);
	if (strncmp(from, "reject@", 7) == 0)
		complete_later(ctx, s, 5, 550, "5.7.1", "Sender rejected");
	else
		complete_later(ctx, s, 5, 250, "2.1.0", "Ok");
}

static void t_on_rcpt(smtp_session *s, const char *rcpt, const struct smtp_rcpt_params *p,
		      void *ctx)
{
	struct env *env = ctx;
	pthread_mutex_lock(&env->mu);
	dsn_rcpt_text(env->last_rcpt_dsn, sizeof env->last_rcpt_dsn, &p->dsn);
	pthread_mutex_unlock(&env->mu);
	if (strncmp(rcpt, "nouser@", 7) == 0)
		complete_later(ctx, s, 5, 550, "5.1.1", "No such user");
	else if (strncmp(rcpt, "slow@", 5) == 0)
		complete_later(ctx, s, 400, 250, "2.1.5", "Ok");
	else
		complete_later(ctx, s, 5, 250, "2.1.5", "Ok");
}

static void t_on_data(smtp_session *s, const struct smtp_transaction *t, void *ctx)
{
	struct env *env = ctx;
	pthread_mutex_lock(&env->mu);
	env->messages++;
	env->last_rcpts = t->n_rcpts;
	free(env->last_body);
	env->last_body = xmalloc(t->body_len + 1);
	memcpy(env->last_body, t->body, t->body_len);
	env->last_body[t->body_len] = '\0';
	env->last_body_len = t->body_len;
	dsn_mail_text(env->last_txn_dsn, sizeof env->last_txn_dsn, &t->params.dsn);
	for (size_t i = 0; i < t->n_rcpts; i++) {
		char one[600];
		dsn_rcpt_text(one, sizeof one, &t->rcpt_params[i].dsn);
		size_t n = strlen(env->last_txn_dsn);
		snprintf(env->last_txn_dsn + n, sizeof env->last_txn_dsn - n, "|%s %s",
			 t->rcpts[i], one);
	}
	pthread_mutex_unlock(&env->mu);
	if (env->serve_mode) {
		printf("DATA rcpts=%zu size=%zu\n", t->n_rcpts, t->body_len);
		fflush(stdout);
	}
	complete_later(env, s, 5, 250, "2.0.0", "Ok: queued as TEST");
}

/* AUTH: "user" with "pencil"; SCRAM keys derived from it. */
static void t_on_auth(smtp_session *s, const struct smtp_auth_request *req, void *ctx)
{
	(void)ctx;
	if (strcmp(req->user, "user") != 0) {
		smtp_session_auth_complete(s, MAIL_ERR_PERM, NULL);
		return;
	}
	if (req->kind == SMTP_AUTH_PASSWORD) {
		smtp_session_auth_complete(s, strcmp(req->password, "pencil") == 0 ? MAIL_OK
										 : MAIL_ERR_PERM,
					   NULL);
		return;
	}
	struct sasl_scram_keys keys;
	const uint8_t salt[] = "0123456789abcdef";
	assert_int_equal(sasl_scram_keys_derive("pencil", 6, salt, 16, 4096, &keys), 0);
	smtp_session_auth_complete(s, MAIL_OK, &keys);
}

static const struct smtp_server_callbacks test_callbacks = {
	.on_mail = t_on_mail,
	.on_rcpt = t_on_rcpt,
	.on_data = t_on_data,
	.on_auth = t_on_auth,
};

static void stop_async_cb(uv_async_t *a)
{
	struct env *env = a->data;
	smtp_server_stop(&env->server);
	uv_close((uv_handle_t *)a, NULL);
}

static void *loop_thread(void *arg)
{
	struct env *env = arg;
	uv_run(&env->loop, UV_RUN_DEFAULT);
	return NULL;
}

static void test_settings(struct smtp_server_settings *set)
{
	smtp_server_settings_init_default(set);
	set->port = 0;
	set->hostname = "mx.test";
	set->log_svc = "smtp-test";
	set->limits.max_message_size = 1000;
	set->limits.max_recipients = 3;
}

static struct env *env_start(const struct smtp_server_settings *set)
{
	struct env *env = xcalloc(1, sizeof *env);
	pthread_mutex_init(&env->mu, NULL);
	assert_int_equal(uv_loop_init(&env->loop), 0);
	uv_async_init(&env->loop, &env->stop_async, stop_async_cb);
	env->stop_async.data = env;
	const char *err = NULL;
	assert_int_equal(smtp_server_start(&env->loop, set, &test_callbacks, env, &env->server,
					   &err), 0);
	env->port = smtp_server_port(env->server);
	assert_true(env->port > 0);
	assert_int_equal(pthread_create(&env->thread, NULL, loop_thread, env), 0);
	return env;
}

static void env_stop(struct env *env)
{
	uv_async_send(&env->stop_async);
	pthread_join(env->thread, NULL);
	/* Everything (sessions, server, timers) must be closed by now. */
	assert_int_equal(uv_loop_close(&env->loop), 0);
	free(env->last_body);
	pthread_mutex_destroy(&env->mu);
	free(env);
}

static void greet(struct client *c)
{
	expect_reply(c, "220 mx.test ESMTP");
	client_sends(c, "EHLO client.test\r\n");
	expect_reply(c, "250 ");
}

static int messages(struct env *env)
{
	pthread_mutex_lock(&env->mu);
	int n = env->messages;
	pthread_mutex_unlock(&env->mu);
	return n;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
}

/* ---- tests ---- */

static void test_full_transaction(void **state)
{
	(void)state;
	struct smtp_server_settings set;
	test_settings(&set);
	struct env *env = env_start(&set);
	struct client *c = client_connect(env->port);
	expect_reply(c, "220 mx.test ESMTP");
	client_sends(c, "EHLO client.test\r\n");
	const char *r = expect_reply(c, "250 ");
	assert_non_null(strstr(r, "250-mx.test\n"));
	assert_non_null(strstr(r, "PIPELINING\n"));
	assert_non_null(strstr(r, "SIZE 1000\n"));
	assert_non_null(strstr(r, "8BITMIME\n"));
	assert_non_null(strstr(r, "ENHANCEDSTATUSCODES\n"));
	assert_null(strstr(r, "STARTTLS"));
	client_sends(c, "MAIL FROM:<a@b.test> SIZE=100 BODY=8BITMIME\r\n");
	expect_reply(c, "250 2.1.0 Ok");
	client_sends(c, "RCPT TO:<u@c.test>\r\n");
	expect_reply(c, "250 2.1.5 Ok");
	client_sends(c, "DATA\r\n");
	expect_reply(c, "354 ");
	client_sends(c, "Subject: hi\r\n\r\n..leading dot\r\nbare\nlf\r\n.\r\n");
	expect_reply(c, "250 2.0.0 Ok: queued as TEST");
	assert_int_equal(messages(env), 1);
	assert_string_equal(env->last_body, "Subject: hi\r\n\r\n.leading dot\r\nbare\nlf\r\n");
	assert_int_equal(env->last_rcpts, 1);
	/* The transaction ended: RCPT needs a new MAIL. */
	client_sends(c, "RCPT TO:<u@c.test>\r\n");
	expect_reply(c, "503 5.5.1");
	client_sends(c, "NOOP\r\nVRFY bob\r\nHELP\r\nEXPN x\r\nSTARTTLS\r\n");
	expect_reply(c, "250 2.0.0");
	expect_reply(c, "252 ");
	expect_reply(c, "214 2.0.0 Commands:");
	expect_reply(c, "502 5.5.1");
	expect_reply(c, "502 5.5.1");
	client_sends(c, "QUIT\r\n");
	expect_reply(c, "221 2.0.0");
	expect_eof(c);
	client_close(c);
	env_stop(env);
}

/* DSN (RFC 3461): advertised, values parsed and handed to on_mail,
 * on_rcpt and (per recipient, in order) on_data; bad values 501 5.5.4;
 * with settings.dsn = 0 not advertised and unknown (555). */
static void test_dsn(void **state)
{
	(void)state;
	struct smtp_server_settings set;
	test_settings(&set);
	set.limits.max_recipients = 5;
	struct env *env = env_start(&set);
	struct client *c = client_connect(env->port);
	expect_reply(c, "220 ");
	client_sends(c, "EHLO client.test\r\n");
	const char *r = expect_reply(c, "250 ");
	assert_non_null(strstr(r, "DSN\n"));
	client_sends(c, "MAIL FROM:<a@b.test> RET=FULL ENVID=QQ+2B1\r\n");
	expect_reply(c, "250 2.1.0");
	pthread_mutex_lock(&env->mu);
	assert_string_equal(env->last_mail_dsn, "ret=1 envid=QQ+1");
	pthread_mutex_unlock(&env->mu);
	client_sends(c, "RCPT TO:<u@c.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;U@C.test\r\n");
	expect_reply(c, "250 2.1.5");
	pthread_mutex_lock(&env->mu);
	assert_string_equal(env->last_rcpt_dsn, "notify=3 orcpt=rfc822;U@C.test");
	pthread_mutex_unlock(&env->mu);
	/* Pipelined: a bad value, an unknown one, a refused recipient, one
	 * without parameters, a duplicate (its parameters are dropped), one
	 * with NEVER. */
	client_sends(c, "RCPT TO:<v@c.test> NOTIFY=NEVER,DELAY\r\n"
			"RCPT TO:<v@c.test> FOO=1\r\n"
			"RCPT TO:<nouser@c.test> NOTIFY=DELAY\r\n"
			"RCPT TO:<w@c.test>\r\n"
			"RCPT TO:<U@c.test> NOTIFY=NEVER\r\n"
			"RCPT TO:<x@c.test> NOTIFY=never ORCPT=utf-8;x\\x{E9}@c.test\r\n"
			"DATA\r\n");
	expect_reply(c, "501 5.5.4 NOTIFY=NEVER cannot be combined with other values");
	expect_reply(c, "555 5.5.4 Unsupported parameter");
	expect_reply(c, "550 5.1.1");
	expect_reply(c, "250 2.1.5");
	expect_reply(c, "250 2.1.5 Ok (duplicate recipient)");
	expect_reply(c, "250 2.1.5");
	expect_reply(c, "354 ");
	client_sends(c, "x\r\n.\r\n");
	expect_reply(c, "250 2.0.0");
	pthread_mutex_lock(&env->mu);
	assert_string_equal(env->last_txn_dsn,
			    "ret=1 envid=QQ+1"
			    "|u@c.test notify=3 orcpt=rfc822;U@C.test"
			    "|w@c.test notify=0 orcpt=;"
			    "|x@c.test notify=8 orcpt=utf-8;x\xc3\xa9@c.test");
	pthread_mutex_unlock(&env->mu);
	/* MAIL's errors, and a new transaction starts without DSN values. */
	client_sends(c, "MAIL FROM:<a@b.test> RET=NONE\r\n"
			"MAIL FROM:<a@b.test> ENVID=a+2b\r\n"
			"MAIL FROM:<a@b.test> NOTIFY=NEVER\r\n"
			"MAIL FROM:<a@b.test>\r\nRCPT TO:<u@c.test>\r\nDATA\r\n");
	expect_reply(c, "501 5.5.4 Bad RET parameter (FULL or HDRS)");
	expect_reply(c, "501 5.5.4 Bad +XX in xtext (two upper-case hex digits)");
	expect_reply(c, "555 5.5.4 Unsupported parameter");
	expect_reply(c, "250 2.1.0");
	expect_reply(c, "250 2.1.5");
	expect_reply(c, "354 ");
	client_sends(c, "y\r\n.\r\nQUIT\r\n");
	expect_reply(c, "250 2.0.0");
	expect_reply(c, "221 ");
	pthread_mutex_lock(&env->mu);
	assert_string_equal(env->last_txn_dsn, "ret=0 envid=-|u@c.test notify=0 orcpt=;");
	pthread_mutex_unlock(&env->mu);
	client_close(c);
	env_stop(env);

	/* DSN off: not advertised, the parameters are unknown. */
	test_settings(&set);
	set.dsn = 0;
	env = env_start(&set);
	c = client_connect(env->port);
	expect_reply(c, "220 ");
	client_sends(c, "EHLO client.test\r\n");
	r = expect_reply(c, "250 ");
	assert_null(strstr(r, "DSN"));
	client_sends(c, "MAIL FROM:<a@b.test> RET=FULL\r\nMAIL FROM:<a@b.test>\r\n"
			"RCPT TO:<u@c.test> NOTIFY=NEVER\r\nQUIT\r\n");
	expect_reply(c, "555 5.5.4 Unsupported parameter");
	expect_reply(c, "250 2.1.0");
	expect_reply(c, "555 5.5.4 Unsupported parameter");
	expect_reply(c, "221 ");
	client_close(c);
	env_stop(env);
}

static void test_pipelining(void **state)
{
	(void)state;
	struct smtp_server_settings set;
	test_settings(&set);
	struct env *env = env_start(&set);
	struct client *c = client_connect(env->port);
	expect_reply(c, "220 ");
	/* Everything in one write, bare LF for one line too. */
	client_sends(c, "EHLO client.test\r\nMAIL FROM:<>\r\nRCPT TO:<x@c.test>\r\n"
			"RCPT TO:<nouser@c.test>\nRCPT TO:<slow@c.test>\r\nDATA\r\n");
	expect_reply(c, "250 ");
	expect_reply(c, "250 2.1.0");
	expect_reply(c, "250 2.1.5");
	expect_reply(c, "550 5.1.1 No such user");
	expect_reply(c, "250 2.1.5");
	expect_reply(c, "354 ");
	client_sends(c, "body\r\n.\r\nMAIL FROM:<reject@b.test>\r\nRSET\r\nQUIT\r\n");
	expect_reply(c, "250 2.0.0 Ok: queued as TEST");
	expect_reply(c, "550 5.7.1 Sender rejected");
	expect_reply(c, "250 2.0.0 Ok");
	expect_reply(c, "221 ");
	expect_eof(c);
	assert_int_equal(env->last_rcpts, 2);
	assert_string_equal(env->last_body, "body\r\n");
	client_close(c);
	env_stop(env);
}

/* More pipelined input than max_pending_input while a callback waits: the
 * engine stops reading, then resumes, and every reply comes in order. */
static void test_pipelining_backpressure(void **state)
{
	(void)state;
	struct smtp_server_settings set;
	test_settings(&set);
	set.max_pending_input = 4096;
	struct env *env = env_start(&set);
	struct client *c = client_connect(env->port);
	greet(c);
	client_sends(c, "MAIL FROM:<a@b.test>\r\nRCPT TO:<slow@c.test>\r\n");
	char line[80];
	memset(line, 'n', sizeof line);
	memcpy(line, "NOOP ", 5);
	memcpy(line + 78, "\r\n", 2);
	for (int i = 0; i < 2000; i++)
		client_send(c, line, sizeof line);
	client_sends(c, "QUIT\r\n");
	expect_reply(c, "250 2.1.0");
	expect_reply(c, "250 2.1.5");
	for (int i = 0; i < 2000; i++)
		expect_reply(c, "250 2.0.0 Ok");
	expect_reply(c, "221 ");
	expect_eof(c);
	client_close(c);
	env_stop(env);
}

static void test_bad_sequence(void **state)
{
	(void)state;
	struct smtp_server_settings set;
	test_settings(&set);
	struct env *env = env_start(&set);
	struct client *c = client_connect(env->port);
	expect_reply(c, "220 ");
	client_sends(c, "MAIL FROM:<a@b.test>\r\n");
	expect_reply(c, "503 5.5.1 Error: send HELO/EHLO first");
	client_sends(c, "HELO client.test\r\n");
	expect_reply(c, "250 mx.test");
	client_sends(c, "RCPT TO:<u@c.test>\r\n");
	expect_reply(c, "503 5.5.1 Error: need MAIL command");
	client_sends(c, "DATA\r\n");
	expect_reply(c, "503 5.5.1");
	client_sends(c, "MAIL FROM:<a@b.test>\r\n");
	expect_reply(c, "250 ");
	client_sends(c, "MAIL FROM:<a@b.test>\r\n");
	expect_reply(c, "503 5.5.1 Error: nested MAIL command");
	client_sends(c, "DATA\r\n");
	expect_reply(c, "554 5.5.1 Error: no valid recipients");
	client_sends(c, "RSET\r\nRCPT TO:<u@c.test>\r\n");
	expect_reply(c, "250 2.0.0");
	expect_reply(c, "503 5.5.1");
	client_sends(c, "MAIL FROM:<a@b.test> SIZE=5000\r\n");
	expect_reply(c, "552 5.3.4");
	client_sends(c, "QUIT\r\n");
	expect_reply(c, "221 ");
	client_close(c);
	env_stop(env);
}

static void test_long_line_and_limits(void **state)
{
	(void)state;
	struct smtp_server_settings set;
	test_settings(&set);
	struct env *env = env_start(&set);
	struct client *c = client_connect(env->port);
	greet(c);
	char line[1100];
	memset(line, 'x', sizeof line);
	memcpy(line, "NOOP ", 5);
	memcpy(line + 999, "\r\n", 2); /* 1001 octets with CRLF */
	client_send(c, line, 1001);
	expect_reply(c, "500 5.5.6 Line too long");
	client_sends(c, "NOOP\r\n");
	expect_reply(c, "250 2.0.0");
	/* 1000 octets is fine. */
	memcpy(line + 998, "\r\n", 2);
	client_send(c, line, 1000);
	expect_reply(c, "250 2.0.0");
	/* Recipient limit (3). */
	client_sends(c, "MAIL FROM:<a@b.test>\r\nRCPT TO:<a@c.test>\r\nRCPT TO:<b@c.test>\r\n"
			"RCPT TO:<c@c.test>\r\nRCPT TO:<d@c.test>\r\n");
	expect_reply(c, "250 ");
	expect_reply(c, "250 ");
	expect_reply(c, "250 ");
	expect_reply(c, "250 ");
	expect_reply(c, "452 4.5.3");
	/* Oversize DATA: 552, nothing handed over, the session goes on. */
	client_sends(c, "DATA\r\n");
	expect_reply(c, "354 ");
	for (int i = 0; i < 30; i++)
		client_sends(c, "0123456789012345678901234567890123456789012345678\r\n");
	client_sends(c, ".\r\n");
	expect_reply(c, "552 5.3.4");
	assert_int_equal(messages(env), 0);
	client_sends(c, "MAIL FROM:<a@b.test>\r\nRCPT TO:<a@c.test>\r\nDATA\r\n");
	expect_reply(c, "250 ");
	expect_reply(c, "250 ");
	expect_reply(c, "354 ");
	client_sends(c, "small\r\n.\r\n");
	expect_reply(c, "250 2.0.0 Ok: queued as TEST");
	assert_int_equal(messages(env), 1);
	client_close(c);
	env_stop(env);
}

static void test_idle_timeout(void **state)
{
	(void)state;
	struct smtp_server_settings set;
	test_settings(&set);
	set.idle_timeout_ms = 300;
	struct env *env = env_start(&set);
	struct client *c = client_connect(env->port);
	greet(c);
	/* A half-sent command, then silence. */
	client_sends(c, "NOO");
	expect_reply(c, "421 4.4.2 mx.test Error: timeout exceeded");
	expect_eof(c);
	client_close(c);
	env_stop(env);
}

static void test_too_many_errors(void **state)
{
	(void)state;
	struct smtp_server_settings set;
	test_settings(&set);
	set.max_errors = 3;
	struct env *env = env_start(&set);
	struct client *c = client_connect(env->port);
	expect_reply(c, "220 ");
	client_sends(c, "FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n");
	expect_reply(c, "500 5.5.2");
	expect_reply(c, "500 5.5.2");
	expect_reply(c, "500 5.5.2");
	expect_reply(c, "421 4.7.0");
	expect_eof(c);
	client_close(c);
	env_stop(env);
}

static void test_disconnects(void **state)
{
	(void)state;
	struct smtp_server_settings set;
	test_settings(&set);
	struct env *env = env_start(&set);
	/* In the middle of DATA. */
	struct client *c = client_connect(env->port);
	greet(c);
	client_sends(c, "MAIL FROM:<a@b.test>\r\nRCPT TO:<a@c.test>\r\nDATA\r\n");
	expect_reply(c, "250 ");
	expect_reply(c, "250 ");
	expect_reply(c, "354 ");
	client_sends(c, "half a message\r\n.");
	client_close(c);
	/* In the middle of a pending callback (the slow RCPT). */
	c = client_connect(env->port);
	greet(c);
	client_sends(c, "MAIL FROM:<a@b.test>\r\nRCPT TO:<slow@c.test>\r\nNOOP\r\n");
	expect_reply(c, "250 ");
	client_close(c);
	sleep_ms(600);
	pthread_mutex_lock(&env->mu);
	assert_int_equal(env->completions_after_close, 1);
	pthread_mutex_unlock(&env->mu);
	assert_int_equal(messages(env), 0);
	/* The server is fine. */
	c = client_connect(env->port);
	greet(c);
	client_sends(c, "MAIL FROM:<a@b.test>\r\nRCPT TO:<a@c.test>\r\nDATA\r\nx\r\n.\r\n");
	expect_reply(c, "250 ");
	expect_reply(c, "250 ");
	expect_reply(c, "354 ");
	expect_reply(c, "250 2.0.0");
	assert_int_equal(messages(env), 1);
	/* Stop the server while a callback is pending and a client waits. */
	client_sends(c, "MAIL FROM:<a@b.test>\r\nRCPT TO:<slow@c.test>\r\n");
	expect_reply(c, "250 ");
	struct client *idle = client_connect(env->port);
	expect_reply(idle, "220 ");
	env_stop(env); /* returns once everything is closed and freed */
	expect_reply(idle, "421 4.3.2");
	expect_eof(idle);
	client_close(idle);
	client_close(c);
}

/* ---- abuse limits ---- */

static void test_connection_caps(void **state)
{
	(void)state;
	struct smtp_server_settings set;
	test_settings(&set);
	set.max_sessions_per_ip = 2;
	struct env *env = env_start(&set);
	struct client *a = client_connect(env->port), *b = client_connect(env->port);
	expect_reply(a, "220 ");
	expect_reply(b, "220 ");
	struct client *c = client_connect(env->port);
	expect_reply(c, "421 4.7.0");
	expect_eof(c);
	client_close(c);
	/* one leaves: there is room again */
	client_sends(a, "QUIT\r\n");
	expect_reply(a, "221 ");
	expect_eof(a);
	client_close(a);
	sleep_ms(100);
	c = client_connect(env->port);
	expect_reply(c, "220 ");
	client_close(c);
	client_close(b);
	env_stop(env);

	/* the global cap, and trusted networks exempt from both */
	test_settings(&set);
	set.max_sessions = 1;
	env = env_start(&set);
	a = client_connect(env->port);
	expect_reply(a, "220 ");
	b = client_connect(env->port);
	expect_reply(b, "421 4.7.0");
	client_close(b);
	client_close(a);
	env_stop(env);

	struct cidr_list trusted;
	const char *err = NULL;
	assert_int_equal(cidr_list_parse("127.0.0.0/8", &trusted, &err), 0);
	test_settings(&set);
	set.max_sessions = 1;
	set.max_sessions_per_ip = 1;
	set.trusted = &trusted;
	env = env_start(&set);
	a = client_connect(env->port);
	b = client_connect(env->port);
	expect_reply(a, "220 ");
	expect_reply(b, "220 ");
	client_close(a);
	client_close(b);
	env_stop(env);
	cidr_list_free(&trusted);
}

static void test_data_slowloris(void **state)
{
	(void)state;
	struct smtp_server_settings set;
	test_settings(&set);
	set.data_timeout_ms = 1500;
	struct env *env = env_start(&set);
	/* too long in total, though never idle */
	struct client *c = client_connect(env->port);
	greet(c);
	client_sends(c, "MAIL FROM:<a@b.test>\r\nRCPT TO:<u@c.test>\r\nDATA\r\n");
	expect_reply(c, "250 ");
	expect_reply(c, "250 ");
	expect_reply(c, "354 ");
	for (int i = 0; i < 4; i++) {
		client_sends(c, "x");
		sleep_ms(500);
	}
	client_sends(c, "x");
	expect_reply(c, "451 4.4.2");
	expect_eof(c);
	client_close(c);
	env_stop(env);

	/* too slow on average after the grace period */
	test_settings(&set);
	set.data_min_rate = 1000;
	set.data_rate_grace_ms = 500;
	env = env_start(&set);
	c = client_connect(env->port);
	greet(c);
	client_sends(c, "MAIL FROM:<a@b.test>\r\nRCPT TO:<u@c.test>\r\nDATA\r\n");
	expect_reply(c, "250 ");
	expect_reply(c, "250 ");
	expect_reply(c, "354 ");
	client_sends(c, "Subject: slow\r\n");
	sleep_ms(700);
	client_sends(c, "x");
	expect_reply(c, "451 4.4.2");
	expect_eof(c);
	client_close(c);
	assert_int_equal(messages(env), 0);
	env_stop(env);
}

static void test_body_budget(void **state)
{
	(void)state;
	struct smtp_server_settings set;
	test_settings(&set);
	struct mem_budget budget = { .limit = 600 };
	set.budget = &budget;
	struct env *env = env_start(&set);
	struct client *c = client_connect(env->port);
	greet(c);
	char body[1100];
	memset(body, 'a', 900);
	memcpy(body + 900, "\r\n.\r\n", 6);
	body[906] = '\0';
	client_sends(c, "MAIL FROM:<a@b.test>\r\nRCPT TO:<u@c.test>\r\nDATA\r\n");
	expect_reply(c, "250 ");
	expect_reply(c, "250 ");
	expect_reply(c, "354 ");
	client_sends(c, body);
	expect_reply(c, "451 4.3.1");
	/* a message that fits goes through on the same session */
	client_sends(c, "MAIL FROM:<a@b.test>\r\nRCPT TO:<u@c.test>\r\nDATA\r\n");
	expect_reply(c, "250 ");
	expect_reply(c, "250 ");
	expect_reply(c, "354 ");
	client_sends(c, "Subject: small\r\n\r\nhi\r\n.\r\n");
	expect_reply(c, "250 2.0.0");
	client_sends(c, "QUIT\r\n");
	expect_reply(c, "221 ");
	client_close(c);
	assert_int_equal(messages(env), 1);
	env_stop(env);
	assert_int_equal(budget.used, 0); /* every reservation given back */
	assert_true(budget.refused >= 1);
}

static void test_output_bounded(void **state)
{
	(void)state;
	struct smtp_server_settings set;
	test_settings(&set);
	set.max_output = 16 * 1024;
	struct env *env = env_start(&set);
	struct client *c = client_connect(env->port);
	greet(c);
	/* pipeline NOOPs and never read: the server must stop reading us
	 * instead of queueing replies without bound */
	int fl = fcntl(c->fd, F_GETFL);
	fcntl(c->fd, F_SETFL, fl | O_NONBLOCK);
	static char noops[6 * 10000];
	for (size_t i = 0; i < sizeof noops; i += 6)
		memcpy(noops + i, "NOOP\r\n", 6);
	size_t sent = 0, limit = 64u << 20;
	int stalled = 0;
	for (int idle = 0; sent < limit && idle < 100;) {
		/* continue the stream where the last partial send left it:
		 * restarting at the buffer's start would glue "NO" to "NOOP" */
		ssize_t n = send(c->fd, noops + sent % 6, sizeof noops - 6, MSG_NOSIGNAL);
		if (n > 0) {
			sent += (size_t)n;
			idle = 0;
		} else {
			idle++;
			sleep_ms(20);
		}
		stalled = idle >= 100;
	}
	/* what is in flight is the kernel's socket buffers (a few MiB on
	 * loopback), the engine's input bound and max_output */
	fprintf(stderr, "output_bounded: %zu bytes of NOOPs sent before the server stopped reading\n",
		sent);
	assert_true(stalled);
	assert_true(sent < 16u << 20);
	fcntl(c->fd, F_SETFL, fl);
	/* reading the replies lets the session go on (a loaded machine may
	 * take a while over a million NOOPs: a longer read timeout) */
	struct timeval tv = { .tv_sec = 60 };
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	size_t want = sent / 6, got = 0;
	char line[512];
	while (got < want && client_line(c, line, sizeof line) == 0)
		got += strncmp(line, "250 2.0.0", 9) == 0;
	assert_int_equal(got, want);
	/* end a NOOP the last partial send cut, or QUIT would be glued to it
	 * ("NOQUIT": 500) */
	if (sent % 6 != 0) {
		client_send(c, &"NOOP\r\n"[sent % 6], 6 - sent % 6);
		expect_reply(c, "250 ");
	}
	client_sends(c, "QUIT\r\n");
	expect_reply(c, "221 ");
	client_close(c);
	env_stop(env);
}

static void test_duplicate_recipients(void **state)
{
	(void)state;
	struct smtp_server_settings set;
	test_settings(&set);
	set.limits.max_recipients = 2;
	struct env *env = env_start(&set);
	struct client *c = client_connect(env->port);
	greet(c);
	client_sends(c, "MAIL FROM:<a@b.test>\r\nRCPT TO:<u@c.test>\r\nRCPT TO:<U@C.test>\r\n"
			"RCPT TO:<u@c.test>\r\nRCPT TO:<v@c.test>\r\nDATA\r\n");
	expect_reply(c, "250 ");
	expect_reply(c, "250 2.1.5 Ok");
	expect_reply(c, "250 2.1.5 Ok (duplicate");
	expect_reply(c, "250 2.1.5 Ok (duplicate");
	expect_reply(c, "250 2.1.5 Ok"); /* counted once: the limit of 2 holds v */
	expect_reply(c, "354 ");
	client_sends(c, "Subject: dup\r\n\r\nx\r\n.\r\n");
	expect_reply(c, "250 2.0.0");
	assert_int_equal(env->last_rcpts, 2);
	client_close(c);
	env_stop(env);
}

/* ---- AUTH ---- */

static const uint8_t test_secret[] = "a secret of 32 bytes, for tests";

static void auth_settings(struct smtp_server_settings *set)
{
	test_settings(set);
	set->auth_mechs = (1u << SASL_MECH_PLAIN) | (1u << SASL_MECH_LOGIN) |
			  (1u << SASL_MECH_SCRAM_SHA_256);
	set->plaintext_auth = 1; /* loopback development mode */
	set->auth_required = 1;
	set->sasl_secret = test_secret;
	set->sasl_secret_len = 32;
}

static void test_auth_plain_login(void **state)
{
	(void)state;
	struct smtp_server_settings set;
	auth_settings(&set);
	struct env *env = env_start(&set);
	struct client *c = client_connect(env->port);
	expect_reply(c, "220 ");
	client_sends(c, "EHLO client.test\r\n");
	const char *r = expect_reply(c, "250 ");
	assert_non_null(strstr(r, "AUTH PLAIN LOGIN SCRAM-SHA-256"));
	/* submission: no MAIL before AUTH */
	client_sends(c, "MAIL FROM:<a@b.test>\r\n");
	expect_reply(c, "530 5.7.0");
	client_sends(c, "AUTH CRAM-MD5\r\n");
	expect_reply(c, "504 5.5.4");
	client_sends(c, "AUTH PLAIN !!!\r\n");
	expect_reply(c, "501 5.5.2");
	/* "\0user\0wrong" */
	client_sends(c, "AUTH PLAIN AHVzZXIAd3Jvbmc=\r\n");
	expect_reply(c, "535 5.7.8");
	/* cancelled */
	client_sends(c, "AUTH LOGIN\r\n");
	expect_reply(c, "334 VXNlcm5hbWU6");
	client_sends(c, "*\r\n");
	expect_reply(c, "501 5.0.0");
	/* LOGIN: user, pencil */
	client_sends(c, "AUTH LOGIN dXNlcg==\r\n");
	expect_reply(c, "334 UGFzc3dvcmQ6");
	client_sends(c, "cGVuY2ls\r\n");
	expect_reply(c, "235 2.7.0");
	client_sends(c, "AUTH PLAIN AHVzZXIAcGVuY2ls\r\n");
	expect_reply(c, "503 5.5.1");
	client_sends(c, "MAIL FROM:<a@b.test>\r\n");
	expect_reply(c, "250 ");
	client_close(c);
	/* PLAIN with the response on its own line */
	c = client_connect(env->port);
	greet(c);
	client_sends(c, "AUTH PLAIN\r\n");
	expect_reply(c, "334 ");
	client_sends(c, "AHVzZXIAcGVuY2ls\r\n");
	expect_reply(c, "235 2.7.0");
	client_close(c);
	env_stop(env);
}

static void test_auth_scram(void **state)
{
	(void)state;
	struct smtp_server_settings set;
	auth_settings(&set);
	struct env *env = env_start(&set);
	for (int wrong = 0; wrong < 2; wrong++) {
		struct client *c = client_connect(env->port);
		greet(c);
		const char *first = "n=user,r=fyko+d2lbbFgONRv9qkxdawL";
		buf b64;
		buf_init(&b64);
		char cf[128];
		snprintf(cf, sizeof cf, "n,,%s", first);
		sasl_b64_encode((const uint8_t *)cf, strlen(cf), &b64);
		buf_append(&b64, "", 1);
		char line[512];
		snprintf(line, sizeof line, "AUTH SCRAM-SHA-256 %s\r\n", (char *)b64.data);
		client_sends(c, line);
		const char *r = expect_reply(c, "334 ");
		char server_first_b64[400];
		snprintf(server_first_b64, sizeof server_first_b64, "%s", r + 4);
		server_first_b64[strcspn(server_first_b64, "\n")] = '\0';
		buf sf;
		buf_init(&sf);
		assert_int_equal(sasl_b64_decode(server_first_b64, strlen(server_first_b64), 1024,
						 &sf), 0);
		buf_append(&sf, "", 1);
		char *final = NULL, *expect = NULL;
		assert_int_equal(mailtest_scram_client_final(wrong ? "pencil2" : "pencil", "n,,",
							     first, (char *)sf.data, &final, &expect),
				 0);
		buf_reset(&b64);
		sasl_b64_encode((const uint8_t *)final, strlen(final), &b64);
		buf_append(&b64, "", 1);
		snprintf(line, sizeof line, "%s\r\n", (char *)b64.data);
		client_sends(c, line);
		if (wrong) {
			expect_reply(c, "535 5.7.8");
		} else {
			r = expect_reply(c, "334 ");
			buf v;
			buf_init(&v);
			const char *vb = r + 4;
			assert_int_equal(sasl_b64_decode(vb, strcspn(vb, "\n"), 256, &v), 0);
			assert_int_equal(v.len, strlen(expect));
			assert_memory_equal(v.data, expect, v.len);
			buf_deinit(&v);
			client_sends(c, "\r\n");
			expect_reply(c, "235 2.7.0");
		}
		free(final);
		free(expect);
		buf_deinit(&sf);
		buf_deinit(&b64);
		client_close(c);
	}
	env_stop(env);
}

static void test_auth_needs_tls(void **state)
{
	(void)state;
	struct smtp_server_settings set;
	auth_settings(&set);
	set.plaintext_auth = 0;
	struct env *env = env_start(&set);
	struct client *c = client_connect(env->port);
	expect_reply(c, "220 ");
	client_sends(c, "EHLO client.test\r\n");
	const char *r = expect_reply(c, "250 ");
	assert_null(strstr(r, "AUTH")); /* not offered in plaintext */
	client_sends(c, "AUTH PLAIN AHVzZXIAcGVuY2ls\r\n");
	expect_reply(c, "530 5.7.0 Must issue a STARTTLS command first");
	client_close(c);
	env_stop(env);
	/* the MX: no AUTH at all */
	test_settings(&set);
	env = env_start(&set);
	c = client_connect(env->port);
	greet(c);
	client_sends(c, "AUTH PLAIN AHVzZXIAcGVuY2ls\r\n");
	expect_reply(c, "502 5.5.1");
	client_close(c);
	env_stop(env);
}

/* ---- --serve mode ---- */

static int serve(int argc, char **argv)
{
	struct env env;
	memset(&env, 0, sizeof env);
	pthread_mutex_init(&env.mu, NULL);
	env.serve_mode = 1;
	uv_loop_init(&env.loop);
	struct smtp_server_settings set;
	smtp_server_settings_init_default(&set);
	set.port = 0;
	set.hostname = "mx.test";
	set.log_svc = "smtp-test";
	const char *err;
	tls_server *tls = NULL;
	if (argc >= 5 && strcmp(argv[2], "--tls") == 0) {
		struct tls_server_settings ts = { argv[3], argv[4], 0 };
		if (tls_server_create(&ts, &tls, &err) < 0) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		set.tls = tls;
	}
	if (smtp_server_start(&env.loop, &set, &test_callbacks, &env, &env.server, &err) < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	printf("PORT %d\n", smtp_server_port(env.server));
	smtp_server *implicit = NULL;
	if (tls != NULL) {
		set.implicit_tls = 1;
		if (smtp_server_start(&env.loop, &set, &test_callbacks, &env, &implicit, &err) < 0) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		printf("TLSPORT %d\n", smtp_server_port(implicit));
	}
	fflush(stdout);
	uv_run(&env.loop, UV_RUN_DEFAULT);
	tls_server_destroy(&tls);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--serve") == 0)
		return serve(argc, argv);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_transaction),
		cmocka_unit_test(test_pipelining),
		cmocka_unit_test(test_dsn),
		cmocka_unit_test(test_pipelining_backpressure),
		cmocka_unit_test(test_bad_sequence),
		cmocka_unit_test(test_long_line_and_limits),
		cmocka_unit_test(test_idle_timeout),
		cmocka_unit_test(test_too_many_errors),
		cmocka_unit_test(test_disconnects),
		cmocka_unit_test(test_connection_caps),
		cmocka_unit_test(test_data_slowloris),
		cmocka_unit_test(test_body_budget),
		cmocka_unit_test(test_output_bounded),
		cmocka_unit_test(test_duplicate_recipients),
		cmocka_unit_test(test_auth_plain_login),
		cmocka_unit_test(test_auth_scram),
		cmocka_unit_test(test_auth_needs_tls),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
