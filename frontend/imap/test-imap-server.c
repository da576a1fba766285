/* Tests of the IMAP engine over real loopback TCP, with the in-memory
 * backend: the server runs its own libuv loop in a thread, the test talks
 * to it with a plain blocking socket like any client would. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "imap-memory-backend.h"
#include "imap-server.h"
#include "line-client.h"
#include "test-engine-fixture.h"
#include "mail-error.h"

#define USER "demo@example.test"
#define PASS "s3cret pass"

static const char msg1[] = "From: a@example.test\r\nSubject: one\r\n\r\nHello\r\n";
static const char msg2[] = "Subject: two\r\n\r\nbinary \x80\xff\xfe\x01\x7f\xc3\xa9 bytes\r\n";
static const char msg3[] = "Subject: three\r\n\r\nthird\r\n";

struct fixture {
	struct engine_fixture e; /* first */
	imap_server *server;
	struct imap_settings set;
};

static void fixture_fill(struct engine_fixture *e)
{
	imap_memory_backend_add_user(e->mb, USER, PASS);
	imap_memory_backend_add_user(e->mb, "other@example.test", "x");
	imap_memory_backend_add_message(e->mb, USER, "INBOX", msg1, sizeof(msg1) - 1, "",
					1700000000000LL);
	imap_memory_backend_add_message(e->mb, USER, "INBOX", msg2, sizeof(msg2) - 1, "",
					1700000001000LL);
	imap_memory_backend_add_message(e->mb, USER, "INBOX", msg3, sizeof(msg3) - 1, "\\Seen",
					1700000002000LL);
	imap_memory_backend_add_message(e->mb, USER, "Archive/2026", msg1, sizeof(msg1) - 1, "",
					0);
	imap_memory_backend_add_message(e->mb, "other@example.test", "Secret", msg1,
					sizeof(msg1) - 1, "", 0);
}

static int fixture_server_start(struct engine_fixture *e, uv_loop_t *loop)
{
	struct fixture *f = (struct fixture *)e;
	const char *error;
	if (imap_server_start(loop, &f->set, &imap_memory_backend_vfuncs, e->mb, &f->server,
			      &error) < 0)
		return -1;
	return imap_server_port(f->server);
}

static void fixture_server_stop(struct engine_fixture *e)
{
	imap_server_stop(&((struct fixture *)e)->server);
}

static struct fixture *fixture_start(void (*tune)(struct imap_settings *), uint64_t delay_ms)
{
	struct fixture *f = calloc(1, sizeof(*f));
	imap_settings_init(&f->set);
	f->set.conn.port = 0;
	f->set.conn.access.allow_plaintext_login = 1;
	if (tune != NULL)
		tune(&f->set);
	f->e = (struct engine_fixture){ .fill = fixture_fill, .start = fixture_server_start,
					.stop = fixture_server_stop, .delay_ms = delay_ms };
	engine_fixture_start(&f->e);
	return f;
}

static void fixture_stop(struct fixture *f)
{
	engine_fixture_stop(&f->e);
	free(f);
}


static struct client *client_login(struct fixture *f)
{
	struct client *c = client_connect(f->e.port);
	free(client_until(c, "* OK"));
	client_tagged_check(c, "L1", "LOGIN \"" USER "\" \"" PASS "\"", "L1 OK");
	return c;
}

/* ---- tests ----------------------------------------------------------- */

static void test_greeting_capability(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL, 0);
	struct client *c = client_connect(f->e.port);
	char *greeting = client_until(c, "* OK");
	assert_non_null(greeting);
	assert_contains(greeting, "* OK [CAPABILITY IMAP4rev1 LITERAL+");
	assert_not_contains(greeting, "LOGINDISABLED");
	assert_contains(greeting, "AUTH=PLAIN AUTH=LOGIN AUTH=SCRAM-SHA-256 SASL-IR");
	free(greeting);
	char *out = client_tagged(c, "a1", "CAPABILITY");
	assert_contains(out, "* CAPABILITY IMAP4rev1 LITERAL+");
	assert_contains(out, "a1 OK");
	free(out);
	client_tagged_check(c, "a2", "NOOP", "a2 OK");
	client_tagged_check(c, "a3", "CAPABILITY extra", "a3 BAD");
	out = client_tagged(c, "a4", "LOGOUT");
	assert_contains(out, "* BYE");
	free(out);
	assert_int_equal(client_fill(c), 0); /* closed by the server */
	client_close(c);
	fixture_stop(f);
}

static void tune_no_plaintext(struct imap_settings *set)
{
	set->conn.access.allow_plaintext_login = 0;
}

static void test_login(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL, 0);
	struct client *c = client_connect(f->e.port);
	free(client_until(c, "* OK"));
	/* commands of later states are refused before LOGIN */
	client_tagged_check(c, "b1", "SELECT INBOX", "b1 BAD Not authenticated");
	client_tagged_check(c, "b2", "FETCH 1 FLAGS", "b2 BAD Not authenticated");
	client_tagged_check(c, "b3", "LIST \"\" *", "b3 BAD Not authenticated");
	client_tagged_check(c, "b4", "LOGIN " USER " wrong", "b4 NO [AUTHENTICATIONFAILED]");
	client_tagged_check(c, "b5", "LOGIN nobody@example.test x", "b5 NO [AUTHENTICATIONFAILED]");
	client_tagged_check(c, "b6", "LOGIN onlyone", "b6 BAD");
	/* synchronising literals: "+" before the bytes */
	client_sendf(c, "b7 LOGIN {%zu}\r\n", strlen(USER));
	free(client_until(c, "+ "));
	client_sendf(c, "%s {%zu}\r\n", USER, strlen(PASS));
	free(client_until(c, "+ "));
	client_sendf(c, "%s\r\n", PASS);
	char *out = client_until(c, "b7 ");
	assert_contains(out, "b7 OK [CAPABILITY");
	free(out);
	client_tagged_check(c, "b8", "LOGIN " USER " x", "b8 BAD Already authenticated");
	client_tagged_check(c, "b9", "FETCH 1 FLAGS", "b9 BAD No mailbox selected");
	client_close(c);

	/* LITERAL+ */
	c = client_connect(f->e.port);
	free(client_until(c, "* OK"));
	client_sendf(c, "c1 LOGIN {%zu+}\r\n%s \"%s\"\r\n", strlen(USER), USER, PASS);
	out = client_until(c, "c1 ");
	assert_contains(out, "c1 OK");
	assert_not_contains(out, "+ Ready");
	free(out);
	client_close(c);

	/* too many failures: BYE */
	c = client_connect(f->e.port);
	free(client_until(c, "* OK"));
	client_tagged_check(c, "d1", "LOGIN a@b.test x", "d1 NO");
	client_tagged_check(c, "d2", "LOGIN a@b.test x", "d2 NO");
	out = client_tagged(c, "d3", "LOGIN a@b.test x");
	free(out);
	out = client_until(c, "* BYE");
	assert_non_null(out);
	free(out);
	client_close(c);
	fixture_stop(f);

	f = fixture_start(tune_no_plaintext, 0);
	c = client_connect(f->e.port);
	out = client_until(c, "* OK");
	assert_contains(out, "LOGINDISABLED");
	free(out);
	client_tagged_check(c, "e1", "LOGIN " USER " \"" PASS "\"", "e1 NO [PRIVACYREQUIRED]");
	client_close(c);
	fixture_stop(f);
}

static void test_list(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL, 0);
	struct client *c = client_login(f);
	char *out = client_tagged(c, "l1", "LIST \"\" *");
	assert_contains(out, "* LIST (\\HasNoChildren) \"/\" INBOX\r\n");
	assert_contains(out, "* LIST (\\HasNoChildren) \"/\" Archive/2026\r\n");
	assert_not_contains(out, "Secret"); /* another user's mailbox */
	assert_contains(out, "l1 OK");
	free(out);
	out = client_tagged(c, "l2", "LIST \"\" %");
	assert_contains(out, "INBOX");
	assert_not_contains(out, "Archive/2026");
	free(out);
	out = client_tagged(c, "l3", "LIST \"\" inbox");
	assert_contains(out, "\"/\" INBOX");
	free(out);
	client_tagged_check(c, "l4", "LIST \"\" \"\"", "* LIST (\\Noselect) \"/\" \"\"");
	out = client_tagged(c, "l5", "LIST Archive/ *");
	assert_contains(out, "Archive/2026");
	assert_not_contains(out, "INBOX");
	free(out);
	client_tagged_check(c, "l6", "LIST \"\"", "l6 BAD");
	client_close(c);
	fixture_stop(f);
}

static void test_select_fetch(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL, 0);
	struct client *c = client_login(f);
	char *out = client_tagged(c, "s1", "SELECT inbox");
	assert_contains(out, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n");
	assert_contains(out, "* 3 EXISTS\r\n");
	assert_contains(out, "* 0 RECENT\r\n");
	assert_contains(out, "* OK [UNSEEN 1]");
	assert_contains(out, "* OK [UIDVALIDITY 1700000000]");
	assert_contains(out, "* OK [UIDNEXT 4]");
	assert_contains(out, "* OK [PERMANENTFLAGS (");
	assert_contains(out, "s1 OK [READ-WRITE]");
	free(out);

	out = client_tagged(c, "f1", "FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE)");
	assert_contains(out, "* 1 FETCH (UID 1 FLAGS () RFC822.SIZE 45 "
			     "INTERNALDATE \"14-Nov-2023 22:13:20 +0000\")\r\n");
	assert_contains(out, "* 3 FETCH (UID 3 FLAGS (\\Seen) RFC822.SIZE 25");
	assert_contains(out, "f1 OK");
	free(out);
	/* the exact bytes, 8-bit included; \Seen is set and announced */
	out = client_tagged(c, "f2", "FETCH 2 BODY[]");
	char want[256];
	snprintf(want, sizeof(want), "* 2 FETCH (FLAGS (\\Seen) BODY[] {%zu}\r\n%s)\r\nf2 OK",
		 sizeof(msg2) - 1, msg2);
	assert_contains(out, want);
	free(out);
	assert_int_equal(imap_memory_backend_has_flag(f->e.mb, USER, "INBOX", 2, "\\Seen"), 1);
	/* PEEK leaves \Seen alone */
	out = client_tagged(c, "f3", "FETCH 1 (BODY.PEEK[] BODY.PEEK[HEADER] BODY.PEEK[TEXT]<1.3>)");
	assert_contains(out, "* 1 FETCH (BODY[] {45}\r\nFrom: ");
	assert_contains(out, "BODY[HEADER] {38}\r\nFrom: a@example.test\r\nSubject: one\r\n\r\n");
	assert_contains(out, "BODY[TEXT]<1> {3}\r\nell)");
	assert_not_contains(out, "FLAGS");
	free(out);
	assert_int_equal(imap_memory_backend_has_flag(f->e.mb, USER, "INBOX", 1, "\\Seen"), 0);
	/* UID FETCH answers with UIDs; RFC822 sets \Seen */
	out = client_tagged(c, "f4", "UID FETCH 1:* (RFC822)");
	assert_contains(out, "* 1 FETCH (UID 1 FLAGS (\\Seen) RFC822 {45}\r\n");
	assert_contains(out, "* 3 FETCH (UID 3 RFC822 {25}\r\n");
	free(out);
	client_tagged_check(c, "f5", "UID FETCH 2 FLAGS", "* 2 FETCH (UID 2 FLAGS (\\Seen))");
	out = client_tagged(c, "f6", "UID FETCH 10:20 FLAGS");
	assert_not_contains(out, "FETCH (");
	assert_contains(out, "f6 OK");
	free(out);
	client_tagged_check(c, "f7", "FETCH 4 FLAGS", "f7 BAD Invalid sequence number");
	client_tagged_check(c, "f8", "FETCH 0 FLAGS", "f8 BAD Invalid sequence set");
	client_tagged_check(c, "f9", "FETCH 1 BODY[1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17]",
	      "f9 BAD Section part nested too deeply");
	client_tagged_check(c, "f10", "FETCH 1", "f10 BAD");
	client_tagged_check(c, "f11", "FETCH 1 FAST", "* 1 FETCH (FLAGS (\\Seen) RFC822.SIZE 45 INTERNALDATE");
	client_tagged_check(c, "f12", "SELECT Nonexistent", "f12 NO [NONEXISTENT]");
	client_tagged_check(c, "f13", "FETCH 1 FLAGS", "f13 BAD No mailbox selected");

	/* EXAMINE: read-only, no \Seen, no STORE */
	imap_memory_backend_add_message(f->e.mb, USER, "INBOX", msg1, sizeof(msg1) - 1, "", 0);
	out = client_tagged(c, "x1", "EXAMINE INBOX");
	assert_contains(out, "* 4 EXISTS");
	assert_contains(out, "[PERMANENTFLAGS ()]");
	assert_contains(out, "x1 OK [READ-ONLY]");
	free(out);
	out = client_tagged(c, "x2", "FETCH 4 BODY[]");
	assert_contains(out, "* 4 FETCH (BODY[] {45}");
	assert_not_contains(out, "FLAGS");
	free(out);
	assert_int_equal(imap_memory_backend_has_flag(f->e.mb, USER, "INBOX", 4, "\\Seen"), 0);
	client_tagged_check(c, "x3", "STORE 4 +FLAGS (\\Deleted)", "x3 NO [READ-ONLY]");
	client_tagged_check(c, "x4", "EXPUNGE", "x4 NO [READ-ONLY]");
	client_tagged_check(c, "x5", "CLOSE", "x5 OK");
	client_tagged_check(c, "x6", "NOOP", "x6 OK");
	client_tagged_check(c, "x7", "CLOSE", "x7 BAD No mailbox selected");
	client_close(c);
	fixture_stop(f);
}

/* BODY[HEADER.FIELDS (...)] and .NOT, exact bytes (RFC 3501 6.4.5). */
static void test_fetch_header_fields(void **state)
{
	(void)state;
	static const char folded[] = "From: a@example.test\r\nTo: b@example.test,\r\n"
				     " c@example.test\r\nSubject: folded\r\n\tsecond line\r\n"
				     "X-Spam: yes\r\n\r\nBody text\r\nFrom: not a header\r\n";
	static const char no_body[] = "Subject: only header\r\nFrom: x@example.test\r\n\r\n";
	static const char no_blank[] = "From: y@example.test\r\nsubject : no blank";
	struct fixture *f = fixture_start(NULL, 0);
	imap_memory_backend_add_message(f->e.mb, USER, "Headers", folded, sizeof(folded) - 1, "", 0);
	imap_memory_backend_add_message(f->e.mb, USER, "Headers", no_body, sizeof(no_body) - 1, "",
					0);
	imap_memory_backend_add_message(f->e.mb, USER, "Headers", no_blank, sizeof(no_blank) - 1, "",
					0);
	struct client *c = client_login(f);
	client_tagged_check(c, "h0", "SELECT Headers", "h0 OK [READ-WRITE]");

	/* names are upper-cased in the answer; lines come in message order
	 * with their folded continuations, then the blank line */
	char *out = client_tagged(c, "h1", "FETCH 1 BODY.PEEK[HEADER.FIELDS (subject From)]");
	assert_contains(out, "* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT FROM)] {55}\r\n"
			     "From: a@example.test\r\nSubject: folded\r\n\tsecond line\r\n\r\n)\r\n"
			     "h1 OK");
	free(out);
	out = client_tagged(c, "h2", "FETCH 1 BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT x-spam)]");
	assert_contains(out, "* 1 FETCH (BODY[HEADER.FIELDS.NOT (SUBJECT X-SPAM)] {62}\r\n"
			     "From: a@example.test\r\nTo: b@example.test,\r\n c@example.test\r\n"
			     "\r\n)\r\nh2 OK");
	free(out);
	/* partial: on the selected lines, named with its origin */
	out = client_tagged(c, "h3", "FETCH 1 (BODY.PEEK[HEADER.FIELDS (FROM)]<6.10> "
			   "BODY.PEEK[HEADER.FIELDS (FROM)]<20.100>)");
	assert_contains(out, "* 1 FETCH (BODY[HEADER.FIELDS (FROM)]<6> {10}\r\na@example. "
			     "BODY[HEADER.FIELDS (FROM)]<20> {4}\r\n\r\n\r\n)\r\nh3 OK");
	free(out);
	/* no field matches: only the blank line */
	client_tagged_check(c, "h4", "FETCH 1 BODY.PEEK[HEADER.FIELDS (CC)]",
	      "* 1 FETCH (BODY[HEADER.FIELDS (CC)] {2}\r\n\r\n)\r\n");
	/* PEEK kept \Seen off; BODY[HEADER.FIELDS] sets and announces it */
	assert_int_equal(imap_memory_backend_has_flag(f->e.mb, USER, "Headers", 1, "\\Seen"), 0);
	out = client_tagged(c, "h5", "FETCH 1 BODY[HEADER.FIELDS (FROM)]");
	assert_contains(out, "* 1 FETCH (FLAGS (\\Seen) BODY[HEADER.FIELDS (FROM)] {24}\r\n"
			     "From: a@example.test\r\n\r\n)\r\nh5 OK");
	free(out);
	assert_int_equal(imap_memory_backend_has_flag(f->e.mb, USER, "Headers", 1, "\\Seen"), 1);

	/* a header without a body */
	client_tagged_check(c, "h6", "FETCH 2 (BODY.PEEK[HEADER.FIELDS (FROM)] BODY.PEEK[TEXT])",
	      "* 2 FETCH (BODY[HEADER.FIELDS (FROM)] {24}\r\nFrom: x@example.test\r\n\r\n "
	      "BODY[TEXT] {0}\r\n)\r\n");
	/* a message without a blank line (and without a last line end): all
	 * header; "subject :" names Subject; the answer still ends a header */
	client_tagged_check(c, "h7", "FETCH 3 BODY.PEEK[HEADER.FIELDS (SUBJECT)]",
	      "* 3 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {22}\r\nsubject : no blank\r\n\r\n)\r\n");
	client_tagged_check(c, "h8", "FETCH 3 BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT)]",
	      "* 3 FETCH (BODY[HEADER.FIELDS.NOT (SUBJECT)] {24}\r\nFrom: y@example.test\r\n\r\n)");
	assert_int_equal(imap_memory_backend_has_flag(f->e.mb, USER, "Headers", 2, "\\Seen"), 0);
	assert_int_equal(imap_memory_backend_has_flag(f->e.mb, USER, "Headers", 3, "\\Seen"), 0);

	/* limits and what is not supported: BAD, and the session goes on */
	char line[1024];
	size_t n = (size_t)snprintf(line, sizeof(line), "FETCH 1 BODY.PEEK[HEADER.FIELDS (");
	for (unsigned i = 0; i <= IMAP_FETCH_FIELDS_MAX; i++)
		n += (size_t)snprintf(line + n, sizeof(line) - n, "%sF%u", i ? " " : "", i);
	snprintf(line + n, sizeof(line) - n, ")]");
	client_tagged_check(c, "b1", line, "b1 BAD Too many header fields");
	client_tagged_check(c, "b2", "FETCH 1 BODY[HEADER.FIELDS ()]", "b2 BAD");
	client_tagged_check(c, "b3", "FETCH 1 BODY[HEADER.X]", "b3 BAD Unsupported BODY[] section");
	client_tagged_check(c, "b4", "FETCH 1 BODY[0]", "b4 BAD Unsupported BODY[] section");
	client_tagged_check(c, "b6", "FETCH 1 BINARY[HEADER]", "b6 BAD BINARY takes only a part number");
	client_tagged_check(c, "b7", "FETCH 1 BODY[MIME]", "b7 BAD Unsupported BODY[] section");
	client_tagged_check(c, "b8", "FETCH 1 BODY[1.]", "b8 BAD");
	client_tagged_check(c, "b5", "FETCH 2 FLAGS", "* 2 FETCH (FLAGS ())");
	client_close(c);
	fixture_stop(f);
}

static void test_store_expunge(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL, 0);
	imap_memory_backend_add_message(f->e.mb, USER, "INBOX", msg1, sizeof(msg1) - 1, "", 0);
	struct client *c = client_login(f);
	free(client_tagged(c, "s1", "SELECT INBOX"));
	client_tagged_check(c, "t1", "STORE 1 +FLAGS (\\Flagged $Work)", "* 1 FETCH (FLAGS (\\Flagged $Work))");
	client_tagged_check(c, "t2", "STORE 1 -FLAGS \\Flagged", "* 1 FETCH (FLAGS ($Work))");
	client_tagged_check(c, "t3", "STORE 1 FLAGS (\\Answered)", "* 1 FETCH (FLAGS (\\Answered))");
	client_tagged_check(c, "t4", "UID STORE 2 +FLAGS (\\seen)", "* 2 FETCH (UID 2 FLAGS (\\Seen))");
	char *out = client_tagged(c, "t5", "STORE 1,3:4 +FLAGS.SILENT (\\Deleted)");
	assert_not_contains(out, "FETCH");
	assert_contains(out, "t5 OK");
	free(out);
	client_tagged_check(c, "t6", "STORE 1 +FLAGS (\\Recent)", "t6 BAD Invalid flag");
	client_tagged_check(c, "t7", "STORE 1 +FOO (\\Seen)", "t7 BAD");
	client_tagged_check(c, "t8", "STORE 9 +FLAGS (\\Seen)", "t8 BAD Invalid sequence number");
	/* expunge 1, 3 and 4: announced from the highest number down */
	out = client_tagged(c, "t9", "EXPUNGE");
	assert_contains(out, "* 4 EXPUNGE\r\n* 3 EXPUNGE\r\n* 1 EXPUNGE\r\nt9 OK");
	free(out);
	assert_int_equal(imap_memory_backend_count(f->e.mb, USER, "INBOX"), 1);
	client_tagged_check(c, "t10", "FETCH 1:* UID", "* 1 FETCH (UID 2)\r\nt10 OK");
	/* CLOSE expunges without telling */
	free(client_tagged(c, "t11", "STORE 1 +FLAGS.SILENT (\\Deleted)"));
	out = client_tagged(c, "t12", "CLOSE");
	assert_not_contains(out, "EXPUNGE");
	assert_contains(out, "t12 OK");
	free(out);
	assert_int_equal(imap_memory_backend_count(f->e.mb, USER, "INBOX"), 0);
	out = client_tagged(c, "t13", "SELECT INBOX");
	assert_contains(out, "* 0 EXISTS");
	free(out);
	client_tagged_check(c, "t14", "FETCH 1:* FLAGS", "t14 BAD Invalid sequence number");
	client_tagged_check(c, "t15", "UID FETCH 1:* FLAGS", "t15 OK");
	client_tagged_check(c, "t16", "UNSELECT", "t16 OK");
	client_close(c);
	fixture_stop(f);
}

static void test_backend_failure(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL, 0);
	struct client *c = client_login(f);
	free(client_tagged(c, "s1", "SELECT INBOX"));
	imap_memory_backend_set_failure(f->e.mb, MAIL_ERR_UNAVAILABLE);
	client_tagged_check(c, "u1", "FETCH 1 BODY.PEEK[]", "u1 NO [UNAVAILABLE]");
	client_tagged_check(c, "u2", "LIST \"\" *", "u2 NO [UNAVAILABLE]");
	client_tagged_check(c, "u3", "SELECT INBOX", "u3 NO [UNAVAILABLE]");
	client_tagged_check(c, "u4", "FETCH 1 FLAGS", "u4 BAD No mailbox selected");
	imap_memory_backend_set_failure(f->e.mb, MAIL_OK);
	client_tagged_check(c, "u5", "SELECT INBOX", "u5 OK");
	client_close(c);
	fixture_stop(f);
}

static void test_bad_input(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL, 0);
	struct client *c = client_connect(f->e.port);
	free(client_until(c, "* OK"));
	client_tagged_check(c, "g1", "FROBNICATE", "g1 BAD Unknown command");
	client_tagged_check(c, "g2", "UID FROB 1", "g2 BAD Unknown command");
	client_send(c, "\x01\x02garbage\r\n", 11);
	char *out = client_until(c, "* BAD");
	assert_non_null(out);
	free(out);
	client_tagged_check(c, "g3", "NOOP (", "g3 BAD Missing ')'");
	/* an overlong line before login: discarded, answered, session lives */
	size_t big = 20000;
	char *line = malloc(big);
	memset(line, 'x', big);
	memcpy(line, "g4 NOOP ", 8);
	memcpy(line + big - 2, "\r\n", 2);
	client_send(c, line, big);
	free(line);
	out = client_until(c, "g4 ");
	assert_contains(out, "g4 BAD Line too long");
	free(out);
	/* a literal too large before login: refused, no "+" */
	client_sendf(c, "g5 LOGIN {100000}\r\n");
	out = client_until(c, "g5 ");
	assert_contains(out, "g5 BAD Literal too large");
	assert_not_contains(out, "+ ");
	free(out);
	/* pipelined commands are answered in order */
	client_sendf(c, "p1 NOOP\r\np2 CAPABILITY\r\np3 LOGIN %s \"%s\"\r\np4 SELECT INBOX\r\n"
		     "p5 FETCH 3 UID\r\n", USER, PASS);
	out = client_until(c, "p5 ");
	char *p1 = strstr(out, "p1 OK"), *p2 = strstr(out, "p2 OK"), *p3 = strstr(out, "p3 OK");
	char *p4 = strstr(out, "p4 OK"), *p5 = strstr(out, "* 3 FETCH (UID 3)\r\np5 OK");
	assert_true(p1 && p2 && p3 && p4 && p5);
	assert_true(p1 < p2 && p2 < p3 && p3 < p4 && p4 < p5);
	free(out);
	client_tagged_check(c, "g6", "NOOP", "g6 OK");
	client_close(c);

	/* too many invalid commands in a row: BYE */
	c = client_connect(f->e.port);
	free(client_until(c, "* OK"));
	/* in one send: the server closes after the 20th, and a later send of
	 * our own could fail with a reset */
	char bogus[25 * 16] = "";
	for (int i = 0; i < 25; i++)
		snprintf(bogus + strlen(bogus), sizeof bogus - strlen(bogus), "h%d BOGUS\r\n", i);
	client_send(c, bogus, strlen(bogus));
	out = client_until(c, "* BYE");
	assert_non_null(out);
	assert_contains(out, "h19 BAD");
	assert_not_contains(out, "h20 ");
	free(out);
	assert_int_equal(client_fill(c), 0);
	client_close(c);
	fixture_stop(f);
}

static void test_disconnect_pending(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL, 300);
	/* disconnect while LOGIN waits for the backend */
	struct client *c = client_connect(f->e.port);
	free(client_until(c, "* OK"));
	client_sendf(c, "a LOGIN " USER " \"" PASS "\"\r\n");
	client_close(c);
	/* and while a FETCH waits */
	c = client_login(f);
	free(client_tagged(c, "s", "SELECT INBOX"));
	client_sendf(c, "b FETCH 1:* BODY[]\r\nc NOOP\r\n");
	client_close(c);
	usleep(800 * 1000);
	/* the server still serves */
	c = client_login(f);
	client_tagged_check(c, "d", "NOOP", "d OK");
	client_close(c);
	/* stop the server while a call is pending */
	c = client_login(f);
	client_sendf(c, "e SELECT INBOX\r\n");
	usleep(50 * 1000);
	fixture_stop(f);
	client_close(c);
}

static void tune_idle(struct imap_settings *set)
{
	set->conn.idle_timeout_ms = 1000;
}

static void test_idle_timeout(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(tune_idle, 0);
	struct client *c = client_connect(f->e.port);
	free(client_until(c, "* OK"));
	char *out = client_until(c, "* BYE");
	assert_non_null(out);
	assert_contains(out, "Autologout");
	free(out);
	assert_int_equal(client_fill(c), 0);
	client_close(c);
	fixture_stop(f);
}

static void tune_preauth(struct imap_settings *set)
{
	set->conn.idle_timeout_ms = 4000;
	set->conn.preauth_timeout_ms = 1000;
}

/* Before LOGIN the short timeout applies; after it, the normal one. */
static void test_preauth_timeout(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(tune_preauth, 0);
	struct client *c = client_connect(f->e.port);
	free(client_until(c, "* OK"));
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	char *out = client_until(c, "* BYE");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_non_null(out);
	free(out);
	assert_true(t1.tv_sec - t0.tv_sec < 3); /* not the 4 s idle timeout */
	client_close(c);
	c = client_login(f);
	usleep(1500 * 1000); /* past the pre-auth timeout: still served */
	client_tagged_check(c, "n", "NOOP", "n OK");
	client_close(c);
	fixture_stop(f);
}


static int count_of(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle))
		n++;
	return n;
}

/* Two sessions on one mailbox: each sees the other's changes at NOOP and
 * at the end of commands that may tell them, its own once; EXPUNGE waits
 * during FETCH (RFC 3501 7.4.1) and numbers stay right. */
static void test_two_sessions(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL, 0);
	struct client *a = client_login(f), *b = client_login(f);
	free(client_tagged(a, "a1", "SELECT INBOX"));
	free(client_tagged(b, "b1", "SELECT INBOX"));
	/* B's own change: told once */
	char *out = client_tagged(b, "b2", "STORE 1 +FLAGS (\\Flagged)");
	assert_int_equal(count_of(out, "FETCH"), 1);
	assert_contains(out, "* 1 FETCH (FLAGS (\\Flagged))\r\nb2 OK");
	free(out);
	out = client_tagged(b, "b3", "NOOP");
	assert_not_contains(out, "FETCH");
	free(out);
	/* A learns it at NOOP, once */
	client_tagged_check(a, "a2", "NOOP", "* 1 FETCH (FLAGS (\\Flagged))\r\na2 OK");
	out = client_tagged(a, "a3", "NOOP");
	assert_not_contains(out, "FETCH");
	free(out);
	/* APPEND into the selected mailbox: EXISTS before its OK, once */
	client_sendf(b, "ba APPEND INBOX {%zu+}\r\n%s\r\n", sizeof(msg3) - 1, msg3);
	out = client_until(b, "ba ");
	assert_contains(out, "* 4 EXISTS\r\nba OK [APPENDUID 1700000000 4]");
	assert_int_equal(count_of(out, "EXISTS"), 1);
	free(out);
	free(client_tagged(b, "bb", "STORE 4 +FLAGS.SILENT (\\Deleted)"));
	free(client_tagged(b, "bc", "UID EXPUNGE 4"));
	/* A never heard of it: a message that came and went says nothing */
	out = client_tagged(a, "aa", "NOOP");
	assert_not_contains(out, "EXISTS");
	assert_not_contains(out, "EXPUNGE");
	free(out);
	/* a copy into the mailbox: EXISTS for both */
	out = client_tagged(b, "b4", "COPY 2 INBOX");
	assert_contains(out, "* 4 EXISTS\r\nb4 OK [COPYUID 1700000000 2 5]");
	free(out);
	client_tagged_check(a, "a4", "NOOP", "* 4 EXISTS\r\na4 OK");
	/* B expunges 1: A's FETCH must not say EXPUNGE, its NOOP does */
	free(client_tagged(b, "b5", "STORE 1 +FLAGS.SILENT (\\Deleted)"));
	out = client_tagged(b, "b6", "EXPUNGE");
	assert_int_equal(count_of(out, "EXPUNGE\r\n"), 1);
	assert_contains(out, "* 1 EXPUNGE\r\nb6 OK");
	free(out);
	out = client_tagged(a, "a5", "FETCH 1:* UID");
	assert_not_contains(out, "EXPUNGE");
	assert_contains(out, "* 2 FETCH (UID 2)\r\n* 3 FETCH (UID 3)\r\n* 4 FETCH (UID 5)\r\na5 OK");
	free(out);
	out = client_tagged(a, "a6", "NOOP");
	assert_contains(out, "* 1 EXPUNGE\r\na6 OK");
	assert_not_contains(out, "FETCH");
	free(out);
	client_tagged_check(a, "a7", "FETCH 1 UID", "* 1 FETCH (UID 2)\r\na7 OK");
	/* UID commands may tell expunges at their end */
	free(client_tagged(b, "b7", "STORE 1 +FLAGS.SILENT (\\Deleted)"));
	free(client_tagged(b, "b8", "EXPUNGE"));
	out = client_tagged(a, "a8", "UID FETCH 1:* FLAGS");
	assert_contains(out, "* 1 EXPUNGE\r\na8 OK");
	free(out);
	client_tagged_check(a, "a9", "FETCH 1:* UID", "* 1 FETCH (UID 3)\r\n* 2 FETCH (UID 5)\r\na9 OK");
	client_close(a);
	client_close(b);
	fixture_stop(f);
}

/* A STORE that was the mailbox's only change since the session's last
 * sync needs no changes round trip; one that came after another
 * session's change still tells that change before its OK, and a change
 * made after it is told at the next NOOP. */
static void test_store_after_others(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL, 0);
	struct client *a = client_login(f), *b = client_login(f);
	free(client_tagged(a, "a1", "SELECT INBOX"));
	free(client_tagged(b, "b1", "SELECT INBOX"));
	/* alone: only its own FETCH */
	char *out = client_tagged(a, "a2", "STORE 1 +FLAGS (\\Seen)");
	assert_int_equal(count_of(out, "FETCH"), 1);
	assert_contains(out, "* 1 FETCH (FLAGS (\\Seen))\r\na2 OK");
	free(out);
	/* B changes 2, then A stores 3: A hears of 2 before its OK */
	free(client_tagged(b, "b2", "STORE 2 +FLAGS (\\Flagged)"));
	out = client_tagged(a, "a3", "STORE 3 +FLAGS (\\Seen)");
	assert_contains(out, "* 3 FETCH (FLAGS (\\Seen))");
	assert_contains(out, "* 2 FETCH (FLAGS (\\Flagged))");
	assert_int_equal(count_of(out, "FETCH"), 2);
	free(out);
	/* A alone again, then B: A's NOOP tells B's change, once */
	free(client_tagged(a, "a4", "STORE 1 -FLAGS.SILENT (\\Seen)"));
	/* (B's STORE comes after A's: it hears A's change of 3 first) */
	client_tagged_check(b, "b3", "STORE 1 +FLAGS.SILENT (\\Answered)",
			    "* 3 FETCH (FLAGS (\\Seen))\r\nb3 OK");
	client_tagged_check(a, "a5", "NOOP", "* 1 FETCH (FLAGS (\\Answered))\r\na5 OK");
	out = client_tagged(a, "a6", "NOOP");
	assert_not_contains(out, "FETCH");
	free(out);
	out = client_tagged(b, "b4", "NOOP");
	assert_not_contains(out, "FETCH");
	free(out);
	client_close(a);
	client_close(b);
	fixture_stop(f);
}

/* IDLE (RFC 2177): changes of another session arrive without a command. */
static void test_idle(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL, 0);
	struct client *a = client_login(f), *b = client_login(f);
	free(client_tagged(a, "a1", "SELECT INBOX"));
	free(client_tagged(b, "b1", "SELECT INBOX"));
	client_sendf(a, "a2 IDLE\r\n");
	free(client_until(a, "+ idling"));
	free(client_tagged(b, "b2", "STORE 2 +FLAGS (\\Answered)"));
	char *out = client_until(a, "* 2 FETCH");
	assert_contains(out, "* 2 FETCH (FLAGS (\\Answered))");
	free(out);
	free(client_tagged(b, "b3", "COPY 1 INBOX"));
	free(client_until(a, "* 4 EXISTS"));
	free(client_tagged(b, "b4", "STORE 3 +FLAGS.SILENT (\\Deleted)"));
	free(client_tagged(b, "b5", "EXPUNGE"));
	out = client_until(a, "* 3 EXPUNGE");
	free(out);
	client_sendf(a, "done\r\n");
	out = client_until(a, "a2 ");
	assert_contains(out, "a2 OK Idle completed");
	free(out);
	client_tagged_check(a, "a3", "FETCH 1:* UID", "* 3 FETCH (UID 4)\r\na3 OK");
	/* anything but DONE ends IDLE with BAD */
	client_sendf(a, "a4 IDLE\r\n");
	free(client_until(a, "+ idling"));
	client_sendf(a, "a5 NOOP\r\n");
	client_tagged_check(a, "a6", "NOOP", "a4 BAD Expected DONE");
	/* IDLE without a mailbox is allowed, and quiet */
	client_tagged_check(b, "b6", "UNSELECT", "b6 OK");
	client_sendf(b, "b7 IDLE\r\n");
	free(client_until(b, "+ idling"));
	client_sendf(b, "DONE\r\n");
	client_tagged_check(b, "b8", "NOOP", "b7 OK Idle completed");
	client_close(a);
	client_close(b);
	fixture_stop(f);
}

/* The store forgot old expunges (expunged_exact = 0): the session still
 * learns what left its view, and only that. */
static void test_changes_resync(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL, 0);
	struct client *a = client_login(f), *b = client_login(f);
	free(client_tagged(a, "a1", "SELECT INBOX"));
	free(client_tagged(b, "b1", "SELECT INBOX"));
	free(client_tagged(b, "b2", "STORE 2 +FLAGS.SILENT (\\Deleted)"));
	free(client_tagged(b, "b3", "EXPUNGE"));
	imap_memory_backend_forget_expunges(f->e.mb);
	char *out = client_tagged(a, "a2", "NOOP");
	assert_int_equal(count_of(out, "EXPUNGE\r\n"), 1);
	assert_contains(out, "* 2 EXPUNGE\r\n");
	free(out);
	client_tagged_check(a, "a3", "FETCH 1:* UID", "* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 3)\r\na3 OK");
	client_close(a);
	client_close(b);
	fixture_stop(f);
}

/* COPY, MOVE (RFC 6851), UID EXPUNGE (RFC 4315). */
static void test_copy_move(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL, 0);
	struct client *c = client_login(f);
	free(client_tagged(c, "s1", "SELECT INBOX"));
	client_tagged_check(c, "c1", "COPY 1:2 Archive/2026", "c1 OK [COPYUID 1700000000 1:2 2:3] Copy completed");
	assert_int_equal(imap_memory_backend_count(f->e.mb, USER, "Archive/2026"), 3);
	client_tagged_check(c, "c2", "COPY 1 Nowhere", "c2 NO [TRYCREATE]");
	client_tagged_check(c, "c3", "COPY 1", "c3 BAD");
	client_tagged_check(c, "c4", "COPY 9 Archive/2026", "c4 BAD Invalid sequence number");
	client_tagged_check(c, "c5", "UID COPY 3:9 Archive/2026", "c5 OK [COPYUID 1700000000 3 4]");
	/* MOVE: COPYUID untagged, before the EXPUNGE */
	char *out = client_tagged(c, "m1", "MOVE 2 Archive/2026");
	assert_contains(out, "* OK [COPYUID 1700000000 2 5] Moved\r\n* 2 EXPUNGE\r\nm1 OK");
	free(out);
	out = client_tagged(c, "m2", "UID MOVE 3 Archive/2026");
	assert_contains(out, "* OK [COPYUID 1700000000 3 6] Moved\r\n* 2 EXPUNGE\r\nm2 OK");
	free(out);
	client_tagged_check(c, "m3", "MOVE 1 Nowhere", "m3 NO [TRYCREATE]");
	assert_int_equal(imap_memory_backend_count(f->e.mb, USER, "INBOX"), 1);
	/* UID EXPUNGE leaves the other \Deleted alone */
	free(client_tagged(c, "m4", "COPY 1 INBOX"));
	free(client_tagged(c, "m5", "COPY 1 INBOX"));
	client_tagged_check(c, "u1", "STORE 1:3 +FLAGS.SILENT (\\Deleted)", "u1 OK");
	out = client_tagged(c, "u2", "UID EXPUNGE 4:5");
	assert_contains(out, "* 3 EXPUNGE\r\n* 2 EXPUNGE\r\nu2 OK");
	free(out);
	client_tagged_check(c, "u3", "UID FETCH 1:* FLAGS", "* 1 FETCH (UID 1 FLAGS (\\Deleted))");
	client_tagged_check(c, "u4", "UID EXPUNGE", "u4 BAD");
	/* read-only: COPY out is fine, MOVE is not */
	free(client_tagged(c, "e1", "EXAMINE INBOX"));
	client_tagged_check(c, "e2", "COPY 1 Archive/2026", "e2 OK [COPYUID");
	client_tagged_check(c, "e3", "MOVE 1 Archive/2026", "e3 NO [READ-ONLY]");
	client_tagged_check(c, "e4", "UID EXPUNGE 1", "e4 NO [READ-ONLY]");
	client_close(c);
	fixture_stop(f);
}

/* CONDSTORE (RFC 7162 3.1): MODSEQ, CHANGEDSINCE, UNCHANGEDSINCE. */
static void test_condstore(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL, 0);
	struct client *c = client_login(f);
	char *out = client_tagged(c, "s1", "SELECT INBOX (CONDSTORE)");
	assert_contains(out, "* OK [HIGHESTMODSEQ 3]");
	assert_contains(out, "s1 OK [READ-WRITE]");
	free(out);
	client_tagged_check(c, "m1", "FETCH 1:* (MODSEQ)",
	      "* 1 FETCH (MODSEQ (1))\r\n* 2 FETCH (MODSEQ (2))\r\n* 3 FETCH (MODSEQ (3))\r\nm1 OK");
	out = client_tagged(c, "m2", "STORE 1:2 (UNCHANGEDSINCE 1) +FLAGS (\\Seen)");
	assert_contains(out, "* 1 FETCH (FLAGS (\\Seen) MODSEQ (4))\r\nm2 OK [MODIFIED 2]");
	free(out);
	client_tagged_check(c, "m3", "UID STORE 2 (UNCHANGEDSINCE 1) +FLAGS (\\Seen)", "m3 OK [MODIFIED 2]");
	client_tagged_check(c, "m4", "FETCH 1:* (FLAGS) (CHANGEDSINCE 3)",
	      "* 1 FETCH (FLAGS (\\Seen) MODSEQ (4))\r\nm4 OK");
	/* \Seen set by FETCH: the new MODSEQ with the FLAGS */
	client_tagged_check(c, "m4b", "FETCH 2 (BODY[TEXT] MODSEQ)",
	      "* 2 FETCH (FLAGS (\\Seen) MODSEQ (5) BODY[TEXT] {");
	client_tagged_check(c, "m5", "STORE 1 (UNCHANGEDSINCE x) +FLAGS (\\Seen)", "m5 BAD");
	client_tagged_check(c, "m6", "FETCH 1 FLAGS (CHANGEDSINCE)", "m6 BAD");
	client_tagged_check(c, "m7", "UID FETCH 1 FLAGS (CHANGEDSINCE 1 VANISHED)", "m7 BAD");
	client_tagged_check(c, "m8", "SELECT INBOX (QRESYNC (1 1))", "m8 BAD QRESYNC is not enabled");
	client_tagged_check(c, "m9", "SELECT INBOX (FOO)", "m9 BAD");
	client_close(c);
	fixture_stop(f);
}

/* A large body is streamed from fetch_range in pieces; partials; the
 * metadata comes in pages. */
static void test_fetch_stream(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL, 0);
	size_t big_len = 3u * 1024u * 1024u + 17u;
	char *big = malloc(big_len);
	memcpy(big, "Subject: big\r\n\r\n", 16);
	for (size_t i = 16; i < big_len; i++)
		big[i] = (char)('a' + i % 26);
	imap_memory_backend_add_message(f->e.mb, USER, "Big", big, big_len, "", 0);
	for (int i = 0; i < 7; i++)
		imap_memory_backend_add_message(f->e.mb, USER, "Big", msg3, sizeof(msg3) - 1, "", 0);
	imap_memory_backend_set_meta_page(f->e.mb, 2);
	struct client *c = client_login(f);
	free(client_tagged(c, "s1", "SELECT Big"));
	client_sendf(c, "f1 FETCH 1 BODY.PEEK[]\r\n");
	char *out = client_until(c, "f1 ");
	char want[64];
	snprintf(want, sizeof(want), "* 1 FETCH (BODY[] {%zu}\r\n", big_len);
	assert_contains(out, want);
	char *lit = strstr(out, want) + strlen(want);
	assert_memory_equal(lit, big, big_len);
	assert_contains(lit + big_len, ")\r\nf1 OK");
	free(out);
	client_tagged_check(c, "f2", "FETCH 1 BODY.PEEK[]<3145720.100>",
	      "* 1 FETCH (BODY[]<3145720> {25}\r\nghijklmnopqrstuvwxyzabcde)\r\nf2 OK");
	client_tagged_check(c, "f3", "FETCH 1 BODY.PEEK[]<3145745.100>", "* 1 FETCH (BODY[]<3145745> {0}\r\n)");
	out = client_tagged(c, "f4", "FETCH 1:* (UID RFC822.SIZE)");
	assert_int_equal(count_of(out, " FETCH (UID "), 8);
	assert_contains(out, "* 8 FETCH (UID 8 RFC822.SIZE 25)\r\nf4 OK");
	free(out);
	free(big);
	client_close(c);
	fixture_stop(f);
}

/* SEARCH (RFC 3501 6.4.4 and its examples), ESEARCH (RFC 4731),
 * SEARCHRES (RFC 5182), MODSEQ (RFC 7162): the tree the backend gets,
 * and the answers. */
static void test_search(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL, 0);
	struct client *c = client_login(f);
	free(client_tagged(c, "s0", "SELECT INBOX"));
	client_tagged_check(c, "s1", "SEARCH ALL", "* SEARCH 1 2 3\r\ns1 OK");
	client_tagged_check(c, "s2", "SEARCH UNSEEN", "* SEARCH 1 2\r\ns2 OK");
	/* RFC 3501's example: the program as the store gets it */
	client_tagged_check(c, "s3", "SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"", "* SEARCH\r\ns3 OK");
	assert_string_equal(imap_memory_backend_last_search(f->e.mb),
			    "(AND (FLAG \\Flagged) (SINCE 8797) (NOT (HEADER From \"Smith\")))");
	client_tagged_check(c, "s4", "SEARCH OR SUBJECT one SUBJECT three", "* SEARCH 1 3\r\ns4 OK");
	client_tagged_check(c, "s5", "SEARCH 2:*", "* SEARCH 2 3\r\ns5 OK");
	assert_string_equal(imap_memory_backend_last_search(f->e.mb), "(UID 2:3)");
	client_tagged_check(c, "s6", "UID SEARCH UID 2:9 NOT DELETED", "* SEARCH 2 3\r\ns6 OK");
	client_tagged_check(c, "s7", "SEARCH CHARSET UTF-8 TEXT hello", "* SEARCH 1\r\ns7 OK");
	client_tagged_check(c, "s8", "SEARCH (SEEN) (OR NEW OLD) LARGER 10 SMALLER 100000",
	      "* SEARCH 3\r\ns8 OK");
	assert_string_equal(imap_memory_backend_last_search(f->e.mb),
			    "(AND (FLAG \\Seen) (OR NONE ALL) (LARGER 10) (SMALLER 100000))");
	client_tagged_check(c, "s9", "SEARCH HEADER Subject tw KEYWORD $Work UNKEYWORD $x", "* SEARCH\r\ns9 OK");
	assert_string_equal(imap_memory_backend_last_search(f->e.mb),
			    "(AND (HEADER Subject \"tw\") (FLAG $Work) (NOT (FLAG $x)))");
	client_tagged_check(c, "s10", "SEARCH BEFORE 1-Jan-1970 ON 29-Feb-2000 SENTSINCE 01-mar-2024 OLDER 5",
	      "s10 OK");
	assert_string_equal(imap_memory_backend_last_search(f->e.mb),
			    "(AND (BEFORE 0) (ON 11016) (SENTSINCE 19783) (OLDER 5))");
	/* failures */
	client_tagged_check(c, "b1", "SEARCH CHARSET KOI8-R TEXT x", "b1 NO [BADCHARSET (US-ASCII UTF-8)]");
	client_tagged_check(c, "b2", "SEARCH", "b2 BAD");
	client_tagged_check(c, "b3", "SEARCH FROBNICATE", "b3 BAD Unknown search key");
	client_tagged_check(c, "b4", "SEARCH BEFORE 30-Feb-2000", "b4 BAD Invalid search date");
	client_tagged_check(c, "b5", "SEARCH OR SEEN", "b5 BAD Missing search key");
	client_tagged_check(c, "b6", "SEARCH LARGER 99999999999", "b6 BAD Invalid number in search");
	client_tagged_check(c, "b7", "SEARCH UID x", "b7 BAD UID needs a UID set");
	client_tagged_check(c, "b8", "SEARCH RETURN (FOO) ALL", "b8 BAD Unknown RETURN option");
	char deep[400] = "SEARCH";
	for (int i = 0; i < 40; i++)
		strcat(deep, " NOT");
	strcat(deep, " ALL");
	client_tagged_check(c, "b9", deep, "b9 BAD Search too complex");
	client_tagged_check(c, "b10", "SEARCH HEADER \"a b\" x", "b10 BAD Invalid header field name");
	client_tagged_check(c, "b11", "SEARCH 0", "b11 BAD");
	/* ESEARCH */
	client_tagged_check(c, "e1", "SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN",
	      "* ESEARCH (TAG \"e1\") MIN 1 MAX 2 COUNT 2 ALL 1:2\r\ne1 OK");
	client_tagged_check(c, "e2", "UID SEARCH RETURN () ALL", "* ESEARCH (TAG \"e2\") UID ALL 1:3\r\ne2 OK");
	client_tagged_check(c, "e3", "SEARCH RETURN (COUNT) DELETED", "* ESEARCH (TAG \"e3\") COUNT 0\r\ne3 OK");
	/* SEARCHRES */
	char *out = client_tagged(c, "r1", "SEARCH RETURN (SAVE) SUBJECT two");
	assert_not_contains(out, "ESEARCH");
	assert_contains(out, "r1 OK");
	free(out);
	client_tagged_check(c, "r2", "FETCH $ UID", "* 2 FETCH (UID 2)\r\nr2 OK");
	client_tagged_check(c, "r3", "SEARCH $", "* SEARCH 2\r\nr3 OK");
	client_tagged_check(c, "r4", "UID SEARCH OR UID $ 3", "* SEARCH 2 3\r\nr4 OK");
	client_tagged_check(c, "r5", "SEARCH RETURN (SAVE MIN) ALL", "* ESEARCH (TAG \"r5\") MIN 1\r\nr5 OK");
	client_tagged_check(c, "r6", "UID FETCH $ UID", "* 1 FETCH (UID 1)\r\nr6 OK");
	/* MODSEQ (RFC 7162 3.1.5) */
	client_tagged_check(c, "m1", "SEARCH MODSEQ 2", "* SEARCH 2 3 (MODSEQ 3)\r\nm1 OK");
	client_tagged_check(c, "m2", "SEARCH MODSEQ \"/flags/\\\\draft\" all 3", "* SEARCH 3 (MODSEQ 3)\r\nm2 OK");
	client_tagged_check(c, "m3", "SEARCH MODSEQ 9", "* SEARCH\r\nm3 OK");
	/* IMAP4rev2 (RFC 9051 6.4.4): ESEARCH instead of SEARCH */
	client_tagged_check(c, "v1", "ENABLE IMAP4rev2", "* ENABLED IMAP4rev2");
	client_tagged_check(c, "v2", "SEARCH UNSEEN", "* ESEARCH (TAG \"v2\") ALL 1:2\r\nv2 OK");
	client_tagged_check(c, "v3", "UID SEARCH DELETED", "* ESEARCH (TAG \"v3\") UID\r\nv3 OK");
	client_close(c);
	fixture_stop(f);
}

/* SORT and THREAD (RFC 5256). */
static void test_sort_thread(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL, 0);
	imap_memory_backend_add_message(f->e.mb, USER, "INBOX", "Subject: Re: one\r\n\r\nx\r\n", 21,
					"", 1700000003000LL);
	struct client *c = client_login(f);
	free(client_tagged(c, "s0", "SELECT INBOX"));
	client_tagged_check(c, "o1", "SORT (SUBJECT) UTF-8 ALL", "* SORT 1 4 3 2\r\no1 OK");
	client_tagged_check(c, "o2", "SORT (REVERSE ARRIVAL) US-ASCII ALL", "* SORT 4 3 2 1\r\no2 OK");
	client_tagged_check(c, "o3", "UID SORT (SIZE) UTF-8 NOT SEEN", "* SORT 4 2 1\r\no3 OK");
	client_tagged_check(c, "o4", "SORT (FOO) UTF-8 ALL", "o4 BAD Invalid sort criterion");
	client_tagged_check(c, "o5", "SORT (SUBJECT) KOI8-R ALL", "o5 NO [BADCHARSET");
	client_tagged_check(c, "o6", "SORT SUBJECT UTF-8 ALL", "o6 BAD");
	client_tagged_check(c, "o7", "SORT (REVERSE) UTF-8 ALL", "o7 BAD");
	client_tagged_check(c, "t1", "THREAD ORDEREDSUBJECT UTF-8 ALL", "* THREAD (1 4)(2)(3)\r\nt1 OK");
	client_tagged_check(c, "t2", "THREAD REFERENCES UTF-8 NOT SUBJECT two", "* THREAD (1 4)(3)\r\nt2 OK");
	client_tagged_check(c, "t3", "THREAD FOO UTF-8 ALL", "t3 BAD Unknown THREAD algorithm");
	client_tagged_check(c, "t4", "THREAD REFERENCES ALL", "t4 NO [BADCHARSET");
	/* non-UID THREAD speaks sequence numbers */
	free(client_tagged(c, "x1", "STORE 1 +FLAGS.SILENT (\\Deleted)"));
	free(client_tagged(c, "x2", "EXPUNGE"));
	client_tagged_check(c, "t5", "THREAD ORDEREDSUBJECT UTF-8 ALL", "* THREAD (1)(2)(3)\r\nt5 OK");
	client_tagged_check(c, "t6", "UID THREAD ORDEREDSUBJECT UTF-8 ALL", "* THREAD (2)(3)(4)\r\nt6 OK");
	client_close(c);
	fixture_stop(f);
}

static const char multi[] =
	"From: a@example.test\r\nSubject: multi\r\nMIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n"
	"preamble\r\n--XX\r\nContent-Type: text/plain\r\n\r\npart one\r\n"
	"--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
	"AAECAwQ=\r\n"
	"--XX\r\nContent-Type: message/rfc822\r\n\r\n"
	"Subject: inner\r\nContent-Type: text/plain\r\n\r\ninner body\r\n"
	"--XX\r\nContent-Type: application/x-odd\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n"
	"zzz\r\n--XX--\r\n";

/* ENVELOPE, BODYSTRUCTURE, BODY from the stored structure; numbered
 * sections, MIME, HEADER/TEXT of a message part, BINARY (RFC 3516). */
static void test_fetch_structure(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL, 0);
	imap_memory_backend_add_message(f->e.mb, USER, "Multi", multi, sizeof(multi) - 1, "", 0);
	struct client *c = client_login(f);
	free(client_tagged(c, "s0", "SELECT Multi"));
	char *out = client_tagged(c, "f1", "FETCH 1 (ENVELOPE BODYSTRUCTURE BODY)");
	assert_contains(out, "* 1 FETCH (ENVELOPE (NIL \"multi\" ((NIL NIL \"a\" \"example.test\"))");
	assert_contains(out, "BODYSTRUCTURE ((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\")");
	assert_contains(out, "\"MIXED\" (\"BOUNDARY\" \"XX\")");
	assert_contains(out, " BODY ((\"TEXT\" \"PLAIN\"");
	free(out);
	client_tagged_check(c, "f2", "FETCH 1 BODY.PEEK[1]", "* 1 FETCH (BODY[1] {8}\r\npart one)\r\nf2 OK");
	client_tagged_check(c, "f3", "FETCH 1 BODY.PEEK[1.MIME]",
	      "* 1 FETCH (BODY[1.MIME] {28}\r\nContent-Type: text/plain\r\n\r\n)\r\nf3 OK");
	client_tagged_check(c, "f4", "FETCH 1 BODY.PEEK[2]", "* 1 FETCH (BODY[2] {8}\r\nAAECAwQ=)\r\nf4 OK");
	out = client_tagged(c, "f5", "FETCH 1 (BINARY.PEEK[2] BINARY.SIZE[2])");
	assert_memory_equal(out, "* 1 FETCH (BINARY[2] ~{5}\r\n\0\1\2\3\4 BINARY.SIZE[2] 5)\r\nf5 OK",
			    45);
	free(out);
	client_tagged_check(c, "f6", "FETCH 1 BODY.PEEK[3.HEADER]",
	      "* 1 FETCH (BODY[3.HEADER] {44}\r\nSubject: inner\r\nContent-Type: text/plain\r\n\r\n)");
	client_tagged_check(c, "f7", "FETCH 1 (BODY.PEEK[3.TEXT] BODY.PEEK[3.1])",
	      "* 1 FETCH (BODY[3.TEXT] {10}\r\ninner body BODY[3.1] {10}\r\ninner body)\r\nf7 OK");
	client_tagged_check(c, "f8", "FETCH 1 BODY.PEEK[3.HEADER.FIELDS (SUBJECT)]",
	      "* 1 FETCH (BODY[3.HEADER.FIELDS (SUBJECT)] {18}\r\nSubject: inner\r\n\r\n)\r\nf8 OK");
	client_tagged_check(c, "f9", "FETCH 1 (BODY.PEEK[1.HEADER] BODY.PEEK[9] BINARY.SIZE[1])",
	      "* 1 FETCH (BODY[1.HEADER] NIL BODY[9] NIL BINARY.SIZE[1] 8)\r\nf9 OK");
	client_tagged_check(c, "f10", "FETCH 1 BINARY.PEEK[4]", "f10 NO [UNKNOWN-CTE]");
	client_tagged_check(c, "f11", "FETCH 1 (BINARY.PEEK[1]<0.4> BODY.PEEK[2]<2.3>)",
	      "* 1 FETCH (BINARY[1]<0> {4}\r\npart BODY[2]<2> {3}\r\nECA)\r\nf11 OK");
	out = client_tagged(c, "f12", "FETCH 1 (BODY.PEEK[HEADER] BODY.PEEK[TEXT]<0.10>)");
	assert_contains(out, "* 1 FETCH (BODY[HEADER] {105}\r\nFrom: a@example.test\r\n");
	assert_contains(out, "BODY[TEXT]<0> {10}\r\npreamble\r\n)\r\nf12 OK");
	free(out);
	/* BODY[1] without PEEK sets \Seen and says so */
	client_tagged_check(c, "f13", "FETCH 1 BODY[1]", "* 1 FETCH (FLAGS (\\Seen) BODY[1] {8}\r\npart one)");
	client_close(c);
	fixture_stop(f);
}

/* QRESYNC (RFC 7162 3.2): SELECT with the client's state gets VANISHED
 * (EARLIER) and the changed flags; expunges are VANISHED afterwards;
 * FETCH (CHANGEDSINCE VANISHED); [CLOSED] when switching mailboxes. */
static void test_qresync(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL, 0);
	for (int i = 0; i < 5; i++)
		imap_memory_backend_add_message(f->e.mb, USER, "INBOX", msg3, sizeof(msg3) - 1, "",
						0);
	struct client *a = client_login(f), *b = client_login(f);
	client_tagged_check(a, "a1", "ENABLE QRESYNC", "* ENABLED QRESYNC");
	char *out = client_tagged(a, "a2", "SELECT INBOX");
	assert_contains(out, "* 8 EXISTS");
	assert_contains(out, "* OK [HIGHESTMODSEQ 8]");
	free(out);
	/* another session: flags on 2, expunges 4 and 6:7 */
	free(client_tagged(b, "b1", "SELECT INBOX"));
	free(client_tagged(b, "b2", "STORE 2 +FLAGS (\\Flagged)"));
	free(client_tagged(b, "b3", "STORE 4,6:7 +FLAGS.SILENT (\\Deleted)"));
	free(client_tagged(b, "b4", "EXPUNGE"));
	/* under QRESYNC, the selected session hears VANISHED, not EXPUNGE */
	out = client_tagged(a, "a3", "NOOP");
	assert_contains(out, "* 2 FETCH (UID 2 FLAGS (\\Flagged) MODSEQ (9))");
	assert_contains(out, "* VANISHED 4,6:7\r\n");
	assert_not_contains(out, "EXPUNGE");
	free(out);
	/* a client that knew modseq 8 and uids 1:8 comes back */
	client_tagged_check(a, "a4", "UNSELECT", "a4 OK");
	out = client_tagged(a, "a5", "SELECT INBOX (QRESYNC (1700000000 8 1:8))");
	assert_contains(out, "* 5 EXISTS");
	assert_contains(out, "* VANISHED (EARLIER) 4,6:7\r\n");
	assert_contains(out, "* 2 FETCH (UID 2 FLAGS (\\Flagged) MODSEQ (9))");
	assert_contains(out, "a5 OK [READ-WRITE]");
	free(out);
	/* known uids narrow VANISHED (EARLIER); a wrong UIDVALIDITY means a
	 * plain SELECT */
	out = client_tagged(a, "a6", "EXAMINE INBOX (QRESYNC (1700000000 8 1:5 (1:3 1:3)))");
	assert_contains(out, "* OK [CLOSED]");
	assert_contains(out, "* VANISHED (EARLIER) 4\r\n");
	free(out);
	out = client_tagged(a, "a7", "SELECT INBOX (QRESYNC (99 1))");
	assert_not_contains(out, "VANISHED");
	assert_not_contains(out, "FETCH");
	free(out);
	client_tagged_check(a, "a8", "SELECT INBOX (QRESYNC (1700000000))", "a8 BAD");
	client_tagged_check(a, "a9", "SELECT INBOX (QRESYNC (1700000000 x))", "a9 BAD");
	free(client_tagged(a, "a10", "SELECT INBOX"));
	/* FETCH (CHANGEDSINCE n VANISHED) */
	client_tagged_check(a, "a11", "UID FETCH 1:* FLAGS (CHANGEDSINCE 8 VANISHED)",
	      "* VANISHED (EARLIER) 4,6:7\r\n* 2 FETCH (UID 2 FLAGS (\\Flagged) MODSEQ (9))\r\na11 OK");
	client_tagged_check(a, "a12", "FETCH 1:* FLAGS (CHANGEDSINCE 8 VANISHED)", "a12 BAD");
	/* the session's own expunge: VANISHED, once */
	free(client_tagged(a, "a13", "STORE 1 +FLAGS.SILENT (\\Deleted)"));
	out = client_tagged(a, "a14", "EXPUNGE");
	assert_int_equal(count_of(out, "VANISHED"), 1);
	assert_contains(out, "* VANISHED 1\r\na14 OK");
	free(out);
	client_close(a);
	client_close(b);
	fixture_stop(f);
}

/* IDLE ends with BYE after the idle limit (RFC 2177: clients re-IDLE
 * within 29 minutes); backend failures give NO with a code, and a failed
 * changes() call leaves the session working. */
static void test_idle_limit_failures(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(tune_idle, 0);
	struct client *c = client_login(f), *b;
	free(client_tagged(c, "s1", "SELECT INBOX"));
	client_sendf(c, "i1 IDLE\r\n");
	free(client_until(c, "+ idling"));
	char *out = client_until(c, "* BYE");
	assert_non_null(out);
	free(out);
	client_close(c);
	fixture_stop(f);

	f = fixture_start(NULL, 0);
	c = client_login(f);
	b = client_login(f);
	free(client_tagged(b, "b1", "SELECT INBOX"));
	free(client_tagged(c, "s2", "SELECT INBOX"));
	free(client_tagged(b, "b2", "STORE 1 +FLAGS (\\Flagged)"));
	imap_memory_backend_set_failure(f->e.mb, MAIL_ERR_UNAVAILABLE);
	client_tagged_check(c, "n1", "NOOP", "n1 OK"); /* the changes wait */
	client_tagged_check(c, "n2", "SEARCH ALL", "n2 NO [UNAVAILABLE]");
	client_tagged_check(c, "n3", "COPY 1 Archive/2026", "n3 NO [UNAVAILABLE]");
	client_tagged_check(c, "n4", "STORE 1 +FLAGS (\\Seen)", "n4 NO [UNAVAILABLE]");
	client_tagged_check(c, "n5", "FETCH 1 FLAGS", "n5 NO [UNAVAILABLE]");
	client_tagged_check(c, "n6", "SORT (DATE) UTF-8 ALL", "n6 NO [UNAVAILABLE]");
	client_tagged_check(c, "n7", "UID EXPUNGE 1", "n7 NO [UNAVAILABLE]");
	imap_memory_backend_set_failure(f->e.mb, MAIL_OK);
	client_tagged_check(c, "n8", "NOOP", "* 1 FETCH (FLAGS (\\Flagged))\r\nn8 OK");
	client_close(c);
	client_close(b);
	fixture_stop(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_greeting_capability),
		cmocka_unit_test(test_login),
		cmocka_unit_test(test_list),
		cmocka_unit_test(test_select_fetch),
		cmocka_unit_test(test_fetch_header_fields),
		cmocka_unit_test(test_store_expunge),
		cmocka_unit_test(test_backend_failure),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_disconnect_pending),
		cmocka_unit_test(test_idle_timeout),
		cmocka_unit_test(test_preauth_timeout),
		cmocka_unit_test(test_two_sessions),
		cmocka_unit_test(test_store_after_others),
		cmocka_unit_test(test_idle),
		cmocka_unit_test(test_changes_resync),
		cmocka_unit_test(test_copy_move),
		cmocka_unit_test(test_condstore),
		cmocka_unit_test(test_fetch_stream),
		cmocka_unit_test(test_search),
		cmocka_unit_test(test_idle_limit_failures),
		cmocka_unit_test(test_qresync),
		cmocka_unit_test(test_fetch_structure),
		cmocka_unit_test(test_sort_thread),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
