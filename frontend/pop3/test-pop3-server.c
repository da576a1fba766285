/* Tests of the POP3 engine over real loopback TCP, with the in-memory
 * backend: the server runs its own libuv loop in a thread, the test talks
 * to it with a plain blocking socket like any client would (and, for STLS
 * and POP3S, OpenSSL over that socket with the development CA). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/socket.h>

#include <cmocka.h>
#include <openssl/ssl.h>

#include "budget.h"
#include "imap-memory-backend.h"
#include "line-client.h"
#include "maildrop-lock.h"
#include "test-engine-fixture.h"
#include "mail-error.h"
#include "pop3-server.h"
#include "sasl.h"
#include "scram-client.h"
#include "tls.h"

#define USER "demo@example.test"
#define PASS "s3cret pass"
#define UIDVALIDITY "1700000000"

static const char msg1[] = "From: a@example.test\r\nSubject: one\r\n\r\nHello\r\n";
/* lines that start with a dot, and line ends of every kind */
static const char msg2[] = "Subject: dots\r\n\r\n.leading dot\r\n..two\r\nbare\nlf\rcr\r\n.\r\nend";
static const char msg2_sent[] = "Subject: dots\r\n\r\n..leading dot\r\n...two\r\nbare\r\nlf\r\n"
				"cr\r\n..\r\nend\r\n.\r\n";
static const char msg3[] = "Subject: three\r\n\r\nthird\r\n";

struct fixture {
	struct engine_fixture e; /* first */
	pop3_server *server;
	struct pop3_settings set;
	struct mem_budget budget;
	unsigned guard_delay_ms;
	int guard_failures;      /* written by the loop thread */
	int guard_block;         /* read by the loop thread */
	int with_locks;          /* maildrop locks (in-process table) */
	maildrop_locks *locks;   /* made on the loop thread, freed after it */
};

static void fixture_fill(struct engine_fixture *e)
{
	imap_memory_backend_add_user(e->mb, USER, PASS);
	imap_memory_backend_add_user(e->mb, "other@example.test", "x");
	imap_memory_backend_add_message(e->mb, USER, "INBOX", msg1, sizeof(msg1) - 1, "", 0);
	imap_memory_backend_add_message(e->mb, USER, "INBOX", msg2, sizeof(msg2) - 1, "", 0);
	imap_memory_backend_add_message(e->mb, USER, "INBOX", msg3, sizeof(msg3) - 1, "\\Seen", 0);
	imap_memory_backend_add_message(e->mb, USER, "Archive", msg1, sizeof(msg1) - 1, "", 0);
	imap_memory_backend_add_message(e->mb, "other@example.test", "INBOX", msg3,
					sizeof(msg3) - 1, "", 0);
}

static int fixture_server_start(struct engine_fixture *e, uv_loop_t *loop)
{
	struct fixture *f = (struct fixture *)e;
	const char *error;
	if (f->with_locks) {
		struct maildrop_locks_settings ls = { .holder = "test" };
		f->locks = maildrop_locks_start(loop, &ls);
		f->set.locks = f->locks;
	}
	if (pop3_server_start(loop, &f->set, &imap_memory_backend_vfuncs, e->mb, &f->server,
			      &error) < 0)
		return -1;
	return pop3_server_port(f->server);
}

static void fixture_server_stop(struct engine_fixture *e)
{
	pop3_server_stop(&((struct fixture *)e)->server);
}

/* tls: 0 none; 1 STLS; 2 POP3S. With TLS, credentials only over it. */
static struct fixture *fixture_start_tls(void (*tune)(struct fixture *), uint64_t delay_ms,
					 int tls)
{
	struct fixture *f = calloc(1, sizeof(*f));
	pop3_settings_init(&f->set);
	f->set.conn.port = 0;
	f->set.conn.access.allow_plaintext_login = !tls;
	if (tls) {
		engine_fixture_tls(&f->e);
		f->set.conn.access.tls = f->e.tls;
		f->set.conn.access.implicit_tls = tls > 1;
	}
	if (tune != NULL)
		tune(f);
	f->e.fill = fixture_fill;
	f->e.start = fixture_server_start;
	f->e.stop = fixture_server_stop;
	f->e.delay_ms = delay_ms;
	engine_fixture_start(&f->e);
	return f;
}

static struct fixture *fixture_start(void (*tune)(struct fixture *), uint64_t delay_ms)
{
	return fixture_start_tls(tune, delay_ms, 0);
}

static void fixture_stop(struct fixture *f)
{
	engine_fixture_stop(&f->e);
	maildrop_locks_stop(&f->locks);   /* the loop is gone: no job runs */
	free(f);
}

/* ---- the client side ------------------------------------------------- */

/* Send a command line; its first answer line. */
static char *cmd(struct client *c, const char *line)
{
	client_sendf(c, "%s\r\n", line);
	char *out = client_until(c, "");
	assert_non_null(out);
	return out;
}

static void check(struct client *c, const char *line, const char *want)
{
	char *out = cmd(c, line);
	if (strncmp(out, want, strlen(want)) != 0)
		fail_msg("\"%s\": want \"%s\", got \"%s\"", line, want, out);
	free(out);
}

/* A command answered +OK and a multi-line body: the body through ".". */
static char *multi(struct client *c, const char *line)
{
	check(c, line, "+OK");
	char *out = client_until(c, ".\r\n");
	assert_non_null(out);
	return out;
}

static struct client *client_greeted(struct fixture *f)
{
	struct client *c = client_connect(f->e.port);
	char *greeting = client_until(c, "");
	assert_non_null(greeting);
	assert_string_equal(greeting, "+OK POP3 ready\r\n");
	free(greeting);
	return c;
}

static struct client *client_login(struct fixture *f)
{
	struct client *c = client_greeted(f);
	check(c, "USER " USER, "+OK");
	check(c, "PASS " PASS, "+OK Logged in, maildrop has ");
	return c;
}

/* ---- tests ----------------------------------------------------------- */

static void test_capa(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL, 0);
	struct client *c = client_greeted(f);
	char *out = multi(c, "CAPA");
	assert_string_equal(out, "USER\r\nSASL PLAIN LOGIN SCRAM-SHA-256\r\nUIDL\r\nTOP\r\n"
				 "RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n"
				 "IMPLEMENTATION mail-frontend\r\n.\r\n");
	free(out);
	check(c, "capa extra", "-ERR Usage: CAPA");
	check(c, "STLS", "-ERR TLS is not available");
	check(c, "QUIT", "+OK Logging out");
	assert_int_equal(client_fill(c), 0);
	client_close(c);
	fixture_stop(f);
}

static void tune_no_plaintext(struct fixture *f)
{
	f->set.conn.access.allow_plaintext_login = 0;
}

static void test_user_pass(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL, 0);
	struct client *c = client_greeted(f);
	check(c, "STAT", "-ERR Not logged in");
	check(c, "RETR 1", "-ERR Not logged in");
	check(c, "PASS " PASS, "-ERR No USER given");
	check(c, "USER", "-ERR Usage: USER <name>");
	check(c, "USER " USER, "+OK");
	check(c, "PASS wrong", "-ERR [AUTH] Authentication failed");
	/* after a failure USER is needed again */
	check(c, "PASS " PASS, "-ERR No USER given");
	check(c, "USER nobody@example.test", "+OK");
	check(c, "PASS x", "-ERR [AUTH] Authentication failed");
	check(c, "user " USER, "+OK");
	check(c, "pass " PASS, "+OK Logged in, maildrop has 3 messages (");
	check(c, "USER " USER, "-ERR Already logged in");
	check(c, "AUTH PLAIN", "-ERR Already logged in");
	check(c, "STLS", "-ERR Already logged in");
	check(c, "NOOP", "+OK");
	client_close(c);

	/* too many failures: the session closes */
	c = client_greeted(f);
	for (int i = 0; i < 3; i++) {
		check(c, "USER a@b.test", "+OK");
		check(c, "PASS x", "-ERR [AUTH]");
	}
	assert_int_equal(client_fill(c), 0);
	client_close(c);
	fixture_stop(f);

	/* credentials refused without TLS: not offered, and -ERR [AUTH] */
	f = fixture_start(tune_no_plaintext, 0);
	c = client_greeted(f);
	char *out = multi(c, "CAPA");
	assert_not_contains(out, "USER");
	assert_not_contains(out, "SASL");
	assert_contains(out, "TOP\r\n");
	free(out);
	check(c, "USER " USER,
	      "-ERR [AUTH] Plaintext authentication disallowed on non-secure connection");
	check(c, "PASS " PASS, "-ERR [AUTH] Plaintext authentication disallowed");
	check(c, "AUTH PLAIN AGRlbW9AZXhhbXBsZS50ZXN0AHMzY3JldCBwYXNz", "-ERR [AUTH]");
	client_close(c);
	fixture_stop(f);
}

static void test_auth(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL, 0);
	/* PLAIN with the initial response */
	struct client *c = client_greeted(f);
	check(c, "AUTH PLAIN AGRlbW9AZXhhbXBsZS50ZXN0AHMzY3JldCBwYXNz", "+OK Logged in");
	check(c, "STAT", "+OK 3 ");
	client_close(c);
	/* PLAIN without: an empty challenge first */
	c = client_greeted(f);
	check(c, "AUTH PLAIN", "+ \r\n");
	check(c, "AGRlbW9AZXhhbXBsZS50ZXN0AHdyb25n", "-ERR [AUTH] Authentication failed");
	check(c, "AUTH plain", "+ ");
	check(c, "AGRlbW9AZXhhbXBsZS50ZXN0AHMzY3JldCBwYXNz", "+OK Logged in");
	client_close(c);
	/* LOGIN: two challenges */
	c = client_greeted(f);
	check(c, "AUTH LOGIN", "+ VXNlcm5hbWU6\r\n");
	check(c, "ZGVtb0BleGFtcGxlLnRlc3Q=", "+ UGFzc3dvcmQ6\r\n");
	check(c, "czNjcmV0IHBhc3M=", "+OK Logged in");
	client_close(c);
	/* cancelled, bad base64, unknown mechanism, the list */
	c = client_greeted(f);
	check(c, "AUTH LOGIN", "+ ");
	check(c, "*", "-ERR Authentication cancelled");
	check(c, "AUTH PLAIN", "+ ");
	check(c, "not base64!", "-ERR Invalid base64 in the SASL response");
	check(c, "AUTH PLAIN %%%", "-ERR Invalid base64 in the initial response");
	check(c, "AUTH CRAM-MD5", "-ERR Unsupported authentication mechanism");
	check(c, "AUTH PLAIN a b c", "-ERR Usage: AUTH <mechanism> [<initial-response>]");
	char *out = multi(c, "AUTH");
	assert_string_equal(out, "PLAIN\r\nLOGIN\r\nSCRAM-SHA-256\r\n.\r\n");
	free(out);
	/* "=": the empty initial response (RFC 5034); PLAIN fails on it */
	check(c, "AUTH PLAIN =", "-ERR");
	client_close(c);

	/* SCRAM-SHA-256 against an independent client; the server-final
	 * message comes as one more challenge, answered by an empty line */
	c = client_greeted(f);
	const char *first_bare = "n=" USER ",r=rOprNGfwEbeRWgbNEkqO";
	buf b64, raw;
	buf_init(&b64);
	buf_init(&raw);
	char first[128];
	snprintf(first, sizeof first, "n,,%s", first_bare);
	sasl_b64_encode((const uint8_t *)first, strlen(first), &b64);
	buf_append(&b64, "", 1);
	client_sendf(c, "AUTH SCRAM-SHA-256 %s\r\n", (const char *)b64.data);
	out = client_until(c, "");
	assert_int_equal(strncmp(out, "+ ", 2), 0);
	assert_int_equal(sasl_b64_decode(out + 2, strlen(out) - 4, 4096, &raw), 0);
	buf_append(&raw, "", 1);
	free(out);
	char *final, *expect;
	assert_int_equal(mailtest_scram_client_final(PASS, "n,,", first_bare,
						     (const char *)raw.data, &final, &expect),
			 0);
	buf_reset(&b64);
	sasl_b64_encode((const uint8_t *)final, strlen(final), &b64);
	buf_append(&b64, "", 1);
	client_sendf(c, "%s\r\n", (const char *)b64.data);
	out = client_until(c, "");
	buf_reset(&raw);
	assert_int_equal(sasl_b64_decode(out + 2, strlen(out) - 4, 4096, &raw), 0);
	buf_append(&raw, "", 1);
	assert_string_equal((const char *)raw.data, expect);
	free(out);
	check(c, "", "+OK Logged in");
	free(final);
	free(expect);
	buf_deinit(&b64);
	buf_deinit(&raw);
	client_close(c);
	fixture_stop(f);
}

static void test_transaction(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL, 0);
	struct client *c = client_login(f);
	size_t total = sizeof(msg1) + sizeof(msg2) + sizeof(msg3) - 3;
	char want[512];
	snprintf(want, sizeof want, "+OK 3 %zu\r\n", total);
	check(c, "STAT", want);
	char *out = multi(c, "LIST");
	snprintf(want, sizeof want, "1 %zu\r\n2 %zu\r\n3 %zu\r\n.\r\n", sizeof(msg1) - 1,
		 sizeof(msg2) - 1, sizeof(msg3) - 1);
	assert_string_equal(out, want);
	free(out);
	snprintf(want, sizeof want, "+OK 2 %zu\r\n", sizeof(msg2) - 1);
	check(c, "LIST 2", want);
	out = multi(c, "UIDL");
	assert_string_equal(out, "1 " UIDVALIDITY ".1\r\n2 " UIDVALIDITY ".2\r\n3 " UIDVALIDITY
				 ".3\r\n.\r\n");
	free(out);
	check(c, "UIDL 3", "+OK 3 " UIDVALIDITY ".3\r\n");
	/* RETR: the bytes, then "." */
	out = multi(c, "RETR 1");
	snprintf(want, sizeof want, "%s.\r\n", msg1);
	assert_string_equal(out, want);
	free(out);
	/* dot-stuffed, every line end CRLF, a last line ended */
	out = multi(c, "RETR 2");
	assert_string_equal(out, msg2_sent);
	free(out);
	out = multi(c, "TOP 2 0");
	assert_string_equal(out, "Subject: dots\r\n\r\n.\r\n");
	free(out);
	out = multi(c, "TOP 2 2");
	assert_string_equal(out, "Subject: dots\r\n\r\n..leading dot\r\n...two\r\n.\r\n");
	free(out);
	out = multi(c, "TOP 1 100");
	snprintf(want, sizeof want, "%s.\r\n", msg1);
	assert_string_equal(out, want);
	free(out);
	check(c, "RETR 4", "-ERR No such message");
	check(c, "RETR 0", "-ERR No such message");
	check(c, "RETR x", "-ERR Invalid message number");
	check(c, "RETR -1", "-ERR Invalid message number");
	check(c, "RETR 99999999999", "-ERR Invalid message number");
	check(c, "RETR", "-ERR Usage: RETR <msg>");
	check(c, "TOP 1", "-ERR Usage: TOP <msg> <lines>");
	check(c, "TOP 1 x", "-ERR Invalid number of lines");
	check(c, "LIST 9", "-ERR No such message");
	check(c, "NOOP", "+OK");
	check(c, "FROB", "-ERR Unknown command");
	check(c, "QUIT", "+OK Logging out (0 messages deleted)");
	client_close(c);
	/* TOP and RETR of message 1 read it whole: \Seen at QUIT */
	assert_int_equal(imap_memory_backend_has_flag(f->e.mb, USER, "INBOX", 1, "\\Seen"), 1);
	assert_int_equal(imap_memory_backend_has_flag(f->e.mb, USER, "INBOX", 2, "\\Seen"), 1);
	fixture_stop(f);
}

static void test_dele_rset_quit(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL, 0);
	/* a session that ends without QUIT changes nothing */
	struct client *c = client_login(f);
	check(c, "DELE 1", "+OK Message 1 deleted");
	free(multi(c, "RETR 2"));
	client_close(c);
	usleep(100 * 1000);
	assert_int_equal(imap_memory_backend_count(f->e.mb, USER, "INBOX"), 3);
	assert_int_equal(imap_memory_backend_has_flag(f->e.mb, USER, "INBOX", 2, "\\Seen"), 0);

	c = client_login(f);
	check(c, "DELE 1", "+OK Message 1 deleted");
	check(c, "DELE 1", "-ERR Message is deleted");
	check(c, "RETR 1", "-ERR Message is deleted");
	check(c, "LIST 1", "-ERR Message is deleted");
	char want[64];
	snprintf(want, sizeof want, "+OK 2 %zu\r\n", sizeof(msg2) + sizeof(msg3) - 2);
	check(c, "STAT", want);
	char *out = multi(c, "UIDL");
	assert_string_equal(out, "2 " UIDVALIDITY ".2\r\n3 " UIDVALIDITY ".3\r\n.\r\n");
	free(out);
	check(c, "RSET", "+OK Maildrop has 3 messages");
	check(c, "RETR 1", "+OK");
	free(client_until(c, ".\r\n"));
	check(c, "DELE 2", "+OK");
	check(c, "QUIT", "+OK Logging out (1 messages deleted)");
	assert_int_equal(client_fill(c), 0);
	client_close(c);
	assert_int_equal(imap_memory_backend_count(f->e.mb, USER, "INBOX"), 2);
	assert_int_equal(imap_memory_backend_has_flag(f->e.mb, USER, "INBOX", 1, "\\Seen"), 1);

	/* UIDL is stable across sessions; numbers are the new snapshot's */
	c = client_greeted(f);
	check(c, "USER " USER, "+OK");
	check(c, "PASS " PASS, "+OK Logged in, maildrop has 2 messages");
	out = multi(c, "UIDL");
	assert_string_equal(out, "1 " UIDVALIDITY ".1\r\n2 " UIDVALIDITY ".3\r\n.\r\n");
	free(out);
	client_close(c);

	/* a message an IMAP client marked \Deleted is listed, and POP3's
	 * QUIT leaves it for that client to expunge or undelete */
	uint32_t uid = imap_memory_backend_add_message(f->e.mb, USER, "INBOX", msg1,
						       sizeof(msg1) - 1, "\\Deleted", 0);
	c = client_greeted(f);
	check(c, "USER " USER, "+OK");
	check(c, "PASS " PASS, "+OK Logged in, maildrop has 3 messages");
	check(c, "DELE 1", "+OK");
	check(c, "QUIT", "+OK Logging out (1 messages deleted)");
	client_close(c);
	assert_int_equal(imap_memory_backend_count(f->e.mb, USER, "INBOX"), 2);
	assert_int_equal(imap_memory_backend_has_flag(f->e.mb, USER, "INBOX", uid, "\\Deleted"), 1);
	fixture_stop(f);
}

static void tune_locks(struct fixture *f)
{
	f->with_locks = 1;
}

/* Log in until the maildrop lock is free (a closed session gives it back
 * when the loop has destroyed it). */
static struct client *client_login_when_free(struct fixture *f)
{
	for (int i = 0; i < 100; i++) {
		struct client *c = client_greeted(f);
		check(c, "USER " USER, "+OK");
		char *out = cmd(c, "PASS " PASS);
		int ok = strncmp(out, "+OK Logged in", 13) == 0;
		if (!ok && strncmp(out, "-ERR [IN-USE] ", 14) != 0)
			fail_msg("PASS: got \"%s\"", out);
		free(out);
		if (ok)
			return c;
		client_close(c);
		usleep(20 * 1000);
	}
	fail_msg("the maildrop lock was never given back");
	return NULL;
}

/* RFC 1939 8: one POP3 session per maildrop; the lock goes at QUIT and at
 * a disconnect, and a refused session may try again. */
static void test_maildrop_lock(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(tune_locks, 0);
	struct client *a = client_login(f);
	struct client *b = client_greeted(f);
	check(b, "USER " USER, "+OK");
	check(b, "PASS " PASS, "-ERR [IN-USE] Maildrop is locked by another POP3 session");
	check(b, "STAT", "-ERR");           /* still in AUTHORIZATION */
	check(b, "CAPA", "+OK");
	/* another user's maildrop is not locked by it */
	struct client *o = client_greeted(f);
	check(o, "USER other@example.test", "+OK");
	check(o, "PASS x", "+OK Logged in");
	/* A's QUIT (with its UPDATE) gives the lock to B's next try */
	check(a, "DELE 1", "+OK");
	check(a, "QUIT", "+OK Logging out (1 messages deleted)");
	client_close(a);
	client_close(b);
	b = client_login_when_free(f);
	check(b, "STAT", "+OK 2 ");
	/* a disconnect without QUIT gives it back too, and deletes nothing */
	check(b, "DELE 1", "+OK");
	client_close(b);
	a = client_login_when_free(f);
	check(a, "STAT", "+OK 2 ");
	check(a, "QUIT", "+OK");
	client_close(a);
	check(o, "QUIT", "+OK");
	client_close(o);
	fixture_stop(f);
}

static void tune_budget(struct fixture *f)
{
	f->budget.limit = 9u << 20;
	f->set.conn.access.body_budget = &f->budget;
	f->set.conn.max_output = 256u * 1024u;
}

/* A message of size octets in lines of 78 'x', some starting with '.'. */
static char *big_message(size_t size)
{
	char *m = malloc(size + 1);
	size_t off = (size_t)snprintf(m, size, "Subject: big\r\n\r\n");
	while (off + 80 <= size) {
		memset(m + off, 'x', 78);
		if ((off / 80) % 7 == 0)
			m[off] = '.';
		memcpy(m + off + 78, "\r\n", 2);
		off += 80;
	}
	m[off] = '\0';
	return m;
}

static void test_big_and_budget(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(tune_budget, 0);
	char *big = big_message(2u << 20), *huge = big_message(8u << 20);
	size_t len = strlen(big);
	imap_memory_backend_add_message(f->e.mb, USER, "INBOX", big, len, "", 0);
	imap_memory_backend_add_message(f->e.mb, USER, "INBOX", huge, strlen(huge), "", 0);
	struct client *c = client_greeted(f);
	check(c, "USER " USER, "+OK");
	check(c, "PASS " PASS, "+OK Logged in, maildrop has 5 messages");
	/* sent in steps (max_output 256 KiB), whole and stuffed */
	char *out = multi(c, "RETR 4");
	size_t dots = 0;
	for (const char *p = strstr(out, "\r\n..xxx"); p != NULL; p = strstr(p + 1, "\r\n..xxx"))
		dots++;
	assert_true(dots > 1000);
	assert_int_equal(strlen(out), len + dots + 3);
	free(out);
	/* a session that does not read holds the budget for its body (8 of
	 * 9 MiB): another large RETR is told to come back */
	struct client *slow = client_greeted(f);
	check(slow, "USER " USER, "+OK");
	check(slow, "PASS " PASS, "+OK");
	client_sendf(slow, "RETR 5\r\n");
	usleep(500 * 1000);
	check(c, "RETR 4", "-ERR [SYS/TEMP] Server busy, try again later");
	check(c, "RETR 1", "+OK");
	free(client_until(c, ".\r\n"));
	client_close(slow);
	usleep(300 * 1000);
	check(c, "RETR 4", "+OK");
	free(client_until(c, ".\r\n"));
	client_close(c);
	free(big);
	free(huge);
	fixture_stop(f);
}

static void test_bad_input(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL, 0);
	struct client *c = client_greeted(f);
	check(c, "FROBNICATE", "-ERR Unknown command");
	check(c, "", "-ERR Empty command");
	client_send(c, "\x01\x02garbage\r\n", 11);
	char *out = client_until(c, "");
	assert_string_equal(out, "-ERR Invalid characters in the command\r\n");
	free(out);
	/* RFC 2449: 255 octets a command line; over it answered, dropped */
	char line[1024];
	memset(line, 'x', sizeof line);
	memcpy(line, "USER ", 5);
	memcpy(line + sizeof line - 3, "\r\n", 3);
	client_send(c, line, strlen(line));
	out = client_until(c, "");
	assert_string_equal(out, "-ERR Line too long\r\n");
	free(out);
	/* pipelined commands are answered in order (PIPELINING) */
	client_sendf(c, "NOOP\r\nUSER %s\r\nPASS %s\r\nSTAT\r\nUIDL 1\r\nLIST 3\r\n", USER, PASS);
	out = client_until(c, "+OK 3 ");
	assert_contains(out, "-ERR Not logged in\r\n+OK Send PASS\r\n+OK Logged in");
	free(out);
	out = client_until(c, "");
	assert_string_equal(out, "+OK 1 " UIDVALIDITY ".1\r\n");
	free(out);
	out = client_until(c, "");
	assert_contains(out, "+OK 3 ");
	free(out);
	check(c, "", "-ERR Empty command");
	client_close(c);

	/* too many invalid commands in a row: closed after the 10th */
	c = client_greeted(f);
	char bogus[15 * 8] = "";
	for (int i = 0; i < 15; i++)
		strcat(bogus, "BOGUS\r\n");
	client_send(c, bogus, strlen(bogus));
	int errs = 0;
	while ((out = client_until(c, "")) != NULL) {
		assert_string_equal(out, "-ERR Unknown command\r\n");
		errs++;
		free(out);
	}
	assert_int_equal(errs, 10);
	client_close(c);
	fixture_stop(f);
}

static void tune_caps(struct fixture *f)
{
	f->set.conn.max_sessions_per_ip = 2;
	f->set.conn.idle_timeout_ms = 4000;
	f->set.conn.preauth_timeout_ms = 1000;
}

static void test_caps_timeouts(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(tune_caps, 0);
	struct client *a = client_greeted(f);
	struct client *b = client_login(f);
	struct client *c = client_connect(f->e.port);
	char *out = client_until(c, "");
	assert_string_equal(out, "-ERR [SYS/TEMP] Too many connections, try again later\r\n");
	free(out);
	assert_int_equal(client_fill(c), 0);
	client_close(c);
	/* before login the short timeout applies; after it, the normal one */
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	out = client_until(a, "");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_string_equal(out, "-ERR Disconnected for inactivity\r\n");
	free(out);
	assert_true(t1.tv_sec - t0.tv_sec < 3);
	assert_int_equal(client_fill(a), 0);
	client_close(a);
	check(b, "NOOP", "+OK");
	client_close(b);
	fixture_stop(f);
}

/* The auth guard's hooks (frontend/auth-guard.h in the daemon): a
 * penalty before each check, failures reported, blocked addresses. */
static unsigned guard_delay(void *arg, const char *ip)
{
	(void)ip;
	return ((struct fixture *)arg)->guard_delay_ms;
}

static void guard_failed(void *arg, const char *ip)
{
	(void)ip;
	__atomic_add_fetch(&((struct fixture *)arg)->guard_failures, 1, __ATOMIC_SEQ_CST);
}

static int guard_refused(void *arg, const char *ip)
{
	(void)ip;
	return __atomic_load_n(&((struct fixture *)arg)->guard_block, __ATOMIC_SEQ_CST);
}

static void tune_guard(struct fixture *f)
{
	f->guard_delay_ms = 400;
	f->set.conn.access.auth_delay_ms = guard_delay;
	f->set.conn.access.auth_failed = guard_failed;
	f->set.conn.access.ip_refused = guard_refused;
	f->set.conn.access.guard_arg = f;
}

static void test_guard(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(tune_guard, 0);
	struct client *c = client_greeted(f);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	check(c, "USER " USER, "+OK");
	check(c, "PASS wrong", "-ERR [AUTH] Authentication failed");
	check(c, "AUTH PLAIN AGRlbW9AZXhhbXBsZS50ZXN0AHMzY3JldCBwYXNz", "+OK Logged in");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	/* both attempts were held back by the penalty first */
	long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	assert_true(ms >= 800);
	assert_int_equal(__atomic_load_n(&f->guard_failures, __ATOMIC_SEQ_CST), 1);
	client_close(c);
	/* a blocked address is turned away at connect */
	__atomic_store_n(&f->guard_block, 1, __ATOMIC_SEQ_CST);
	c = client_connect(f->e.port);
	char *out = client_until(c, "");
	assert_string_equal(out, "-ERR [SYS/TEMP] Too many connections, try again later\r\n");
	free(out);
	assert_int_equal(client_fill(c), 0);
	client_close(c);
	/* a session that closes during its penalty: nothing left behind */
	__atomic_store_n(&f->guard_block, 0, __ATOMIC_SEQ_CST);
	c = client_greeted(f);
	client_sendf(c, "USER " USER "\r\nPASS " PASS "\r\n");
	usleep(100 * 1000);
	client_close(c);
	fixture_stop(f);
}

static void test_disconnect_pending(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL, 300);
	/* disconnect while PASS waits for the backend */
	struct client *c = client_greeted(f);
	client_sendf(c, "USER " USER "\r\nPASS " PASS "\r\n");
	client_close(c);
	/* and while RETR and QUIT wait */
	c = client_login(f);
	client_sendf(c, "RETR 1\r\nDELE 2\r\nQUIT\r\n");
	usleep(100 * 1000);
	client_close(c);
	usleep(800 * 1000);
	/* the server still serves; QUIT came too late to reach UPDATE */
	c = client_login(f);
	check(c, "STAT", "+OK 3 ");
	client_close(c);
	/* QUIT then gone at once (many clients do): UPDATE still runs */
	c = client_login(f);
	check(c, "DELE 1", "+OK");
	client_sendf(c, "QUIT\r\n");
	client_close(c);
	usleep(1200 * 1000);
	assert_int_equal(imap_memory_backend_count(f->e.mb, USER, "INBOX"), 2);
	/* a backend failure while logged in */
	c = client_login(f);
	imap_memory_backend_set_failure(f->e.mb, MAIL_ERR_UNAVAILABLE);
	check(c, "RETR 1", "-ERR [SYS/TEMP]");
	check(c, "DELE 1", "+OK");
	check(c, "QUIT", "-ERR [SYS/TEMP] Some deleted messages were not removed");
	client_close(c);
	c = client_greeted(f);
	check(c, "USER " USER, "+OK");
	check(c, "PASS " PASS, "-ERR [SYS/TEMP] Temporary authentication failure");
	imap_memory_backend_set_failure(f->e.mb, MAIL_OK);
	client_close(c);
	/* stop the server while a call is pending */
	c = client_login(f);
	client_sendf(c, "RETR 1\r\n");
	usleep(50 * 1000);
	fixture_stop(f);
	client_close(c);
}

/* ---- TLS: STLS and POP3S --------------------------------------------- */

/* TLS on the client's socket, verified against the fixture's CA as
 * "localhost". Bytes already read must have been consumed. */
static SSL *client_tls(struct fixture *f, struct client *c, SSL_CTX **ctx_r)
{
	char ca[128];
	snprintf(ca, sizeof ca, "%s/ca.pem", f->e.tls_dir);
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	assert_int_equal(SSL_CTX_load_verify_locations(ctx, ca, NULL), 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL *ssl = SSL_new(ctx);
	SSL_set_fd(ssl, c->fd);
	SSL_set_tlsext_host_name(ssl, "localhost");
	SSL_set1_host(ssl, "localhost");
	assert_int_equal(SSL_connect(ssl), 1);
	*ctx_r = ctx;
	return ssl;
}

/* Send a line over TLS (NULL: none) and read the answer through the
 * first line that starts with until ("" : the first line, ".\r\n": the
 * end of a multi-line answer). NULL on EOF. */
static char *tls_cmd(SSL *ssl, const char *line, const char *until)
{
	char buf[8192];
	size_t len = 0, scanned = 0;
	if (line != NULL) {
		char out[512];
		int n = snprintf(out, sizeof out, "%s\r\n", line);
		assert_int_equal(SSL_write(ssl, out, n), n);
	}
	for (;;) {
		char *eol;
		while ((eol = memmem(buf + scanned, len - scanned, "\r\n", 2)) != NULL) {
			size_t end = (size_t)(eol - buf) + 2;
			if (strncmp(buf + scanned, until, strlen(until)) == 0)
				return strndup(buf, end);
			scanned = end;
		}
		assert_true(len < sizeof buf - 1);
		int n = SSL_read(ssl, buf + len, (int)(sizeof buf - 1 - len));
		if (n <= 0)
			return NULL;
		len += (size_t)n;
	}
}

static void test_stls(void **state)
{
	(void)state;
	struct fixture *f = fixture_start_tls(NULL, 0, 1);
	struct client *c = client_greeted(f);
	char *out = multi(c, "CAPA");
	assert_contains(out, "STLS\r\n");
	assert_not_contains(out, "USER");
	free(out);
	/* what was pipelined after STLS is dropped, never run */
	client_sendf(c, "STLS\r\nUSER " USER "\r\nPASS " PASS "\r\n");
	out = client_until(c, "");
	assert_string_equal(out, "+OK Begin TLS negotiation now\r\n");
	free(out);
	SSL_CTX *ctx;
	SSL *ssl = client_tls(f, c, &ctx);
	out = tls_cmd(ssl, "STAT", "");
	assert_string_equal(out, "-ERR Not logged in\r\n");
	free(out);
	out = tls_cmd(ssl, "CAPA", ".\r\n");
	assert_contains(out, "USER\r\n");
	assert_contains(out, "SASL PLAIN");
	assert_not_contains(out, "STLS");
	free(out);
	out = tls_cmd(ssl, "STLS", "");
	assert_string_equal(out, "-ERR TLS is already active\r\n");
	free(out);
	free(tls_cmd(ssl, "USER " USER, ""));
	out = tls_cmd(ssl, "PASS " PASS, "");
	assert_contains(out, "+OK Logged in");
	free(out);
	out = tls_cmd(ssl, "RETR 2", ".\r\n");
	assert_string_equal(out + strlen(out) - strlen(msg2_sent), msg2_sent);
	free(out);
	out = tls_cmd(ssl, "QUIT", "");
	assert_contains(out, "+OK Logging out");
	free(out);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	client_close(c);
	fixture_stop(f);

	/* POP3S: TLS from the first byte */
	f = fixture_start_tls(NULL, 0, 2);
	c = client_connect(f->e.port);
	ssl = client_tls(f, c, &ctx);
	out = tls_cmd(ssl, NULL, "");
	assert_string_equal(out, "+OK POP3 ready\r\n");
	free(out);
	out = tls_cmd(ssl, "CAPA", ".\r\n");
	assert_contains(out, "USER\r\n");
	assert_not_contains(out, "STLS");
	free(out);
	out = tls_cmd(ssl, "AUTH PLAIN AGRlbW9AZXhhbXBsZS50ZXN0AHMzY3JldCBwYXNz", "");
	assert_contains(out, "+OK Logged in");
	free(out);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	client_close(c);
	fixture_stop(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_capa),
		cmocka_unit_test(test_user_pass),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_transaction),
		cmocka_unit_test(test_dele_rset_quit),
		cmocka_unit_test(test_big_and_budget),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_maildrop_lock),
		cmocka_unit_test(test_caps_timeouts),
		cmocka_unit_test(test_guard),
		cmocka_unit_test(test_disconnect_pending),
		cmocka_unit_test(test_stls),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
