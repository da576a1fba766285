/* Tests of the IMAP engine's mailbox commands over real loopback TCP with
 * the in-memory backend: CREATE/DELETE/RENAME, SUBSCRIBE/LSUB, LIST with
 * LIST-EXTENDED, LIST-STATUS and SPECIAL-USE, STATUS, NAMESPACE, ID,
 * ENABLE, CHECK, modified UTF-7 and UTF8=ACCEPT names, APPEND with
 * MULTIAPPEND, APPENDLIMIT and LITERAL+/-, and COMPRESS=DEFLATE. The RFCs'
 * examples are here as they are written, adapted only where our
 * hierarchy differs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "budget.h"
#include "imap-memory-backend.h"
#include "imap-server.h"
#include "line-client.h"
#include "mail-error.h"
#include "test-engine-fixture.h"

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifndef TEST_ASAN
#define TEST_ASAN 0
#endif

#define USER "demo@example.test"
#define PASS "s3cret pass"

static const char msg1[] = "From: a@example.test\r\nSubject: one\r\n\r\nHello\r\n";
static const char msg2[] = "Subject: two\r\n\r\nsecond\r\n";
static const char msg3[] = "Subject: three\r\n\r\nthird\r\n";

struct fixture {
	struct engine_fixture e; /* first */
	imap_server *server;
	struct imap_settings set;
	struct mem_budget budget; /* the body budget (no limit unless tuned) */
};

static void fixture_fill(struct engine_fixture *e)
{
	imap_memory_backend_add_user(e->mb, USER, PASS);
	imap_memory_backend_add_user(e->mb, "other@example.test", "x");
	imap_memory_backend_add_message(e->mb, USER, "INBOX", msg1, sizeof(msg1) - 1, "",
					1700000000000LL);
	imap_memory_backend_add_message(e->mb, USER, "INBOX", msg2, sizeof(msg2) - 1,
					"\\Deleted", 1700000001000LL);
	imap_memory_backend_add_message(e->mb, USER, "INBOX", msg3, sizeof(msg3) - 1, "\\Seen",
					1700000002000LL);
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

static struct fixture *fixture_start(void (*tune)(struct imap_settings *))
{
	struct fixture *f = calloc(1, sizeof(*f));
	imap_settings_init(&f->set);
	f->set.conn.port = 0;
	f->set.conn.access.allow_plaintext_login = 1;
	f->set.conn.access.body_budget = &f->budget;
	if (tune != NULL)
		tune(&f->set);
	f->e = (struct engine_fixture){ .fill = fixture_fill, .start = fixture_server_start,
					.stop = fixture_server_stop };
	engine_fixture_start(&f->e);
	return f;
}

static void fixture_stop(struct fixture *f)
{
	engine_fixture_stop(&f->e);
	free(f);
}


/* The answer must be exactly want (untagged lines and the tagged one). */
static void check_exact(struct client *c, const char *tag, const char *command,
			const char *want)
{
	char *out = client_tagged(c, tag, command);
	if (strcmp(out, want) != 0)
		fail_msg("%s %s:\nwant:\n%s\ngot:\n%s", tag, command, want, out);
	free(out);
}

static struct client *client_login(struct fixture *f)
{
	struct client *c = client_connect(f->e.port);
	free(client_until(c, "* OK"));
	client_tagged_check(c, "L1", "LOGIN \"" USER "\" \"" PASS "\"", "L1 OK");
	return c;
}

/* ---- CREATE / DELETE / RENAME ---------------------------------------- */

static void test_create_delete(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL);
	struct client *c = client_login(f);
	client_tagged_check(c, "c1", "CREATE owatagusiam/", "c1 OK"); /* RFC 3501 6.3.3 */
	client_tagged_check(c, "c2", "CREATE owatagusiam/blurdybloop", "c2 OK");
	client_tagged_check(c, "c3", "CREATE owatagusiam", "c3 NO [ALREADYEXISTS]");
	client_tagged_check(c, "c4", "CREATE inbox", "c4 NO [ALREADYEXISTS]");
	client_tagged_check(c, "c5", "CREATE a/b/c", "c5 OK"); /* parents made too */
	check_exact(c, "c6", "LIST \"\" a*",
		    "* LIST (\\HasChildren) \"/\" a\r\n"
		    "* LIST (\\HasChildren) \"/\" a/b\r\n"
		    "* LIST (\\HasNoChildren) \"/\" a/b/c\r\n"
		    "c6 OK List completed\r\n");
	assert_int_equal(imap_memory_backend_count(f->e.mb, USER, "owatagusiam"), 0);
	/* invalid names: NO [CANNOT]; wrong use: BAD */
	client_tagged_check(c, "c7", "CREATE x//y", "c7 NO [CANNOT]");
	client_tagged_check(c, "c8", "CREATE /x", "c8 NO [CANNOT]");
	client_tagged_check(c, "c9", "CREATE x*", "c9 NO [CANNOT]");
	client_tagged_check(c, "c10", "CREATE x%y", "c10 NO [CANNOT]");
	client_tagged_check(c, "c11", "CREATE \"\"", "c11 NO [CANNOT]");
	client_tagged_check(c, "c12", "CREATE", "c12 BAD");
	client_tagged_check(c, "c13", "CREATE a b", "c13 BAD");
	char longname[300];
	memset(longname, 'n', 256);
	longname[256] = '\0';
	char line[400];
	snprintf(line, sizeof(line), "CREATE %s", longname);
	client_tagged_check(c, "c14", line, "c14 NO [CANNOT] Mailbox name too long");
	client_tagged_check(c, "c15", "CREATE {3}\r\na\001b", "c15 BAD"); /* raw control byte */

	/* DELETE: INBOX never, children first, absent names */
	client_tagged_check(c, "d1", "DELETE INBOX", "d1 NO [CANNOT]");
	client_tagged_check(c, "d2", "DELETE inbox", "d2 NO [CANNOT]");
	client_tagged_check(c, "d3", "DELETE a", "d3 NO [HASCHILDREN]");
	client_tagged_check(c, "d4", "DELETE nosuch", "d4 NO [NONEXISTENT]");
	client_tagged_check(c, "d5", "DELETE a/b/c", "d5 OK");
	client_tagged_check(c, "d6", "DELETE a/b", "d6 OK");
	client_tagged_check(c, "d7", "DELETE a", "d7 OK");
	client_tagged_check(c, "d8", "DELETE a", "d8 NO [NONEXISTENT]");
	client_tagged_check(c, "d9", "DELETE", "d9 BAD");
	check_exact(c, "d10", "LIST \"\" a*", "d10 OK List completed\r\n");
	/* a deleted name comes back with a new UIDVALIDITY (RFC 3501 2.3.1.1) */
	uint32_t v1 = imap_memory_backend_uidvalidity(f->e.mb, USER, "owatagusiam/blurdybloop");
	client_tagged_check(c, "d11", "DELETE owatagusiam/blurdybloop", "d11 OK");
	client_tagged_check(c, "d12", "CREATE owatagusiam/blurdybloop", "d12 OK");
	uint32_t v2 = imap_memory_backend_uidvalidity(f->e.mb, USER, "owatagusiam/blurdybloop");
	assert_true(v1 != 0 && v2 != 0 && v1 != v2);
	/* before login: BAD */
	client_close(c);
	c = client_connect(f->e.port);
	free(client_until(c, "* OK"));
	client_tagged_check(c, "n1", "CREATE x", "n1 BAD Not authenticated");
	client_tagged_check(c, "n2", "DELETE x", "n2 BAD Not authenticated");
	client_close(c);
	fixture_stop(f);
}

static void test_create_special_use(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL);
	struct client *c = client_login(f);
	/* RFC 6154 5.2's example, and the others */
	client_tagged_check(c, "t1", "CREATE MySpecial (USE (\\Drafts \\Sent))", "t1 NO [USEATTR]");
	client_tagged_check(c, "t2", "CREATE MySpecial (USE (\\Drafts))", "t2 OK");
	client_tagged_check(c, "t3", "CREATE Sent (USE (\\Sent))", "t3 OK");
	client_tagged_check(c, "t4", "CREATE Junk (USE (\\junk))", "t4 OK");
	client_tagged_check(c, "t5", "CREATE Trash (USE (\\Trash))", "t5 OK");
	client_tagged_check(c, "t6", "CREATE Archive (USE (\\Archive))", "t6 OK");
	client_tagged_check(c, "t7", "CREATE Everything (USE (\\All))", "t7 NO [USEATTR]");
	client_tagged_check(c, "t8", "CREATE Plain (USE ())", "t8 OK");
	client_tagged_check(c, "t9", "CREATE Odd (FOO (\\Sent))", "t9 BAD");
	client_tagged_check(c, "t10", "CREATE Odd (USE \\Sent)", "t10 BAD");
	client_tagged_check(c, "t11", "CREATE Odd (USE (Sent))", "t11 BAD");
	/* attributes in every LIST; SPECIAL-USE selection */
	client_tagged_check(c, "l1", "LIST \"\" %", "* LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\n");
	check_exact(c, "l2", "LIST (SPECIAL-USE) \"\" *",
		    "* LIST (\\HasNoChildren \\Archive) \"/\" Archive\r\n"
		    "* LIST (\\HasNoChildren \\Junk) \"/\" Junk\r\n"
		    "* LIST (\\HasNoChildren \\Drafts) \"/\" MySpecial\r\n"
		    "* LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\n"
		    "* LIST (\\HasNoChildren \\Trash) \"/\" Trash\r\n"
		    "l2 OK List completed\r\n");
	check_exact(c, "l3", "LIST \"\" Sent RETURN (SPECIAL-USE)",
		    "* LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\nl3 OK List completed\r\n");
	/* RECURSIVEMATCH with SPECIAL-USE: a parent with a special child */
	client_tagged_check(c, "l4", "CREATE stuff/important (USE (\\Archive))", "l4 OK");
	client_tagged_check(c, "l5", "LIST (SPECIAL-USE RECURSIVEMATCH) \"\" %",
	      "* LIST (\\HasChildren) \"/\" stuff (\"CHILDINFO\" (\"SPECIAL-USE\"))\r\n");
	client_close(c);
	fixture_stop(f);
}

static void test_rename(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL);
	struct client *c = client_login(f);
	/* RFC 3501 6.3.5's example: children move along */
	client_tagged_check(c, "r0", "CREATE blurdybloop", "r0 OK");
	client_tagged_check(c, "r1", "CREATE foo/bar/zap", "r1 OK");
	client_tagged_check(c, "r2", "RENAME blurdybloop sarasoop", "r2 OK");
	client_tagged_check(c, "r3", "RENAME foo zowie", "r3 OK");
	check_exact(c, "r4", "LIST \"\" *",
		    "* LIST (\\HasNoChildren) \"/\" INBOX\r\n"
		    "* LIST (\\HasNoChildren) \"/\" sarasoop\r\n"
		    "* LIST (\\HasChildren) \"/\" zowie\r\n"
		    "* LIST (\\HasChildren) \"/\" zowie/bar\r\n"
		    "* LIST (\\HasNoChildren) \"/\" zowie/bar/zap\r\n"
		    "r4 OK List completed\r\n");
	client_tagged_check(c, "r5", "RENAME foo bar", "r5 NO [NONEXISTENT]");
	client_tagged_check(c, "r6", "RENAME sarasoop zowie", "r6 NO [ALREADYEXISTS]");
	client_tagged_check(c, "r7", "RENAME sarasoop INBOX", "r7 NO [ALREADYEXISTS]");
	client_tagged_check(c, "r8", "RENAME sarasoop sarasoop", "r8 NO [ALREADYEXISTS]");
	client_tagged_check(c, "r9", "RENAME zowie zowie/inner", "r9 NO [CANNOT]");
	client_tagged_check(c, "r10", "RENAME zowie", "r10 BAD");
	client_tagged_check(c, "r11", "RENAME zowie x//y", "r11 NO [CANNOT]");
	client_tagged_check(c, "r12", "RENAME sarasoop new/parent/", "r12 OK"); /* trailing '/' */
	assert_int_equal(imap_memory_backend_count(f->e.mb, USER, "new/parent"), 0);
	/* INBOX: the messages move to a new mailbox, INBOX stays, empty */
	client_tagged_check(c, "i1", "CREATE INBOX/child", "i1 OK");
	client_tagged_check(c, "i2", "RENAME inbox old-mail", "i2 OK");
	client_tagged_check(c, "i3", "STATUS INBOX (MESSAGES)", "* STATUS INBOX (MESSAGES 0)");
	client_tagged_check(c, "i4", "STATUS old-mail (MESSAGES UIDNEXT)", "* STATUS old-mail (MESSAGES 3 UIDNEXT 4)");
	client_tagged_check(c, "i5", "STATUS INBOX/child (MESSAGES)", "i5 OK"); /* children stay */
	/* the selected mailbox follows a rename */
	client_tagged_check(c, "s1", "SELECT old-mail", "s1 OK");
	client_tagged_check(c, "s2", "RENAME old-mail older", "s2 OK");
	client_tagged_check(c, "s3", "FETCH 1 (UID)", "* 1 FETCH (UID 1)");
	client_tagged_check(c, "s4", "CREATE old-mail", "s4 OK"); /* a new one, not the selected */
	client_tagged_check(c, "s5", "FETCH 3 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])", "Subject: three");
	client_close(c);
	fixture_stop(f);
}

/* ---- SUBSCRIBE / LSUB ------------------------------------------------- */

static void test_subscribe_lsub(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL);
	struct client *c = client_login(f);
	client_tagged_check(c, "a0", "CREATE news/comp/mail/mime", "a0 OK");
	client_tagged_check(c, "a1", "SUBSCRIBE news/comp/mail/mime", "a1 OK");
	client_tagged_check(c, "a2", "SUBSCRIBE news/comp/mail/misc", "a2 OK"); /* need not exist */
	client_tagged_check(c, "a3", "SUBSCRIBE news/comp/mail/misc", "a3 OK");
	/* RFC 3501 6.3.9, with '/' for '.' */
	check_exact(c, "a4", "LSUB \"news/\" \"comp/mail/*\"",
		    "* LSUB () \"/\" news/comp/mail/mime\r\n"
		    "* LSUB () \"/\" news/comp/mail/misc\r\n"
		    "a4 OK Lsub completed\r\n");
	check_exact(c, "a5", "LSUB \"news/\" \"comp/%\"",
		    "* LSUB (\\Noselect) \"/\" news/comp/mail\r\na5 OK Lsub completed\r\n");
	check_exact(c, "a6", "LSUB \"\" \"%\"",
		    "* LSUB (\\Noselect) \"/\" news\r\na6 OK Lsub completed\r\n");
	check_exact(c, "a7", "LSUB \"\" \"\"",
		    "* LSUB (\\Noselect) \"/\" \"\"\r\na7 OK Lsub completed\r\n");
	client_tagged_check(c, "a8", "UNSUBSCRIBE news/comp/mail/misc", "a8 OK");
	client_tagged_check(c, "a9", "UNSUBSCRIBE news/comp/mail/misc", "a9 NO");
	check_exact(c, "a10", "LSUB \"\" *",
		    "* LSUB () \"/\" news/comp/mail/mime\r\na10 OK Lsub completed\r\n");
	client_tagged_check(c, "a11", "SUBSCRIBE", "a11 BAD");
	client_tagged_check(c, "a12", "LSUB \"\"", "a12 BAD");
	client_tagged_check(c, "a13", "SUBSCRIBE a//b", "a13 NO [CANNOT]");
	/* subscriptions are the user's own */
	client_close(c);
	c = client_connect(f->e.port);
	free(client_until(c, "* OK"));
	client_tagged_check(c, "o1", "LOGIN other@example.test x", "o1 OK");
	check_exact(c, "o2", "LSUB \"\" *", "o2 OK Lsub completed\r\n");
	client_close(c);
	fixture_stop(f);
}

/* ---- LIST ----------------------------------------------------------- */

static void test_list_basic(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL);
	imap_memory_backend_add_message(f->e.mb, USER, "Archive/2026", msg1, sizeof(msg1) - 1, "",
					0);
	struct client *c = client_login(f);
	/* RFC 3501 6.3.8 */
	check_exact(c, "l1", "LIST \"\" \"\"",
		    "* LIST (\\Noselect) \"/\" \"\"\r\nl1 OK List completed\r\n");
	check_exact(c, "l2", "LIST \"Archive/\" \"\"",
		    "* LIST (\\Noselect) \"/\" \"\"\r\nl2 OK List completed\r\n");
	/* "Archive" does not exist: '%' lists it as a \Noselect level */
	check_exact(c, "l3", "LIST \"\" %",
		    "* LIST (\\HasNoChildren) \"/\" INBOX\r\n"
		    "* LIST (\\Noselect \\HasChildren) \"/\" Archive\r\n"
		    "l3 OK List completed\r\n");
	check_exact(c, "l4", "LIST \"\" *",
		    "* LIST (\\HasNoChildren) \"/\" INBOX\r\n"
		    "* LIST (\\HasNoChildren) \"/\" Archive/2026\r\n"
		    "l4 OK List completed\r\n");
	check_exact(c, "l5", "LIST Archive/ %",
		    "* LIST (\\HasNoChildren) \"/\" Archive/2026\r\nl5 OK List completed\r\n");
	check_exact(c, "l6", "LIST \"\" inBOX",
		    "* LIST (\\HasNoChildren) \"/\" INBOX\r\nl6 OK List completed\r\n");
	check_exact(c, "l7", "LIST \"\" nosuch", "l7 OK List completed\r\n");
	client_tagged_check(c, "l8", "LIST \"\"", "l8 BAD");
	client_tagged_check(c, "l9", "LIST \"\" % extra", "l9 BAD");
	client_tagged_check(c, "l10", "LIST \"\" \"&Jjo\"", "l10 BAD"); /* malformed modified UTF-7 */
	/* another user's mailboxes are never seen; a name the backend
	 * holds that is not UTF-8 is left out, the answer stays valid */
	imap_memory_backend_add_message(f->e.mb, USER, "Bad\xff", msg1, sizeof(msg1) - 1, "", 0);
	char *out = client_tagged(c, "l11", "LIST \"\" *");
	assert_not_contains(out, "Secret");
	assert_not_contains(out, "Bad");
	assert_contains(out, "* LIST (\\HasNoChildren) \"/\" Archive/2026\r\n");
	free(out);
	/* the backend fails: NO with its code */
	imap_memory_backend_set_failure(f->e.mb, MAIL_ERR_UNAVAILABLE);
	client_tagged_check(c, "l12", "LIST \"\" *", "l12 NO [UNAVAILABLE]");
	client_tagged_check(c, "l13", "CREATE x", "l13 NO [UNAVAILABLE]");
	client_tagged_check(c, "l14", "STATUS INBOX (MESSAGES)", "l14 NO [UNAVAILABLE]");
	imap_memory_backend_set_failure(f->e.mb, MAIL_OK);
	client_close(c);
	fixture_stop(f);
}

/* RFC 5258 5's hierarchy. */
static void list_fill_rfc5258(struct client *c)
{
	static const char *const creates[] = { "Fruit", "Fruit/Apple", "Fruit/Banana", "Tofu",
					       "Vegetable", "Vegetable/Broccoli",
					       "Vegetable/Corn" };
	static const char *const subs[] = { "INBOX", "Fruit/Banana", "Fruit/Peach", "Vegetable",
					    "Vegetable/Broccoli" };
	for (size_t i = 0; i < sizeof(creates) / sizeof(creates[0]); i++) {
		char line[64];
		snprintf(line, sizeof(line), "CREATE %s", creates[i]);
		client_tagged_check(c, "f", line, "f OK");
	}
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		char line[64];
		snprintf(line, sizeof(line), "SUBSCRIBE %s", subs[i]);
		client_tagged_check(c, "s", line, "s OK");
	}
}

static void test_list_extended(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL);
	struct client *c = client_login(f);
	list_fill_rfc5258(c);
	/* 5.1 (\HasChildren and \HasNoChildren always: CHILDREN) */
	check_exact(c, "A101", "LIST \"\" \"*\"",
		    "* LIST (\\HasNoChildren) \"/\" INBOX\r\n"
		    "* LIST (\\HasChildren) \"/\" Fruit\r\n"
		    "* LIST (\\HasNoChildren) \"/\" Fruit/Apple\r\n"
		    "* LIST (\\HasNoChildren) \"/\" Fruit/Banana\r\n"
		    "* LIST (\\HasNoChildren) \"/\" Tofu\r\n"
		    "* LIST (\\HasChildren) \"/\" Vegetable\r\n"
		    "* LIST (\\HasNoChildren) \"/\" Vegetable/Broccoli\r\n"
		    "* LIST (\\HasNoChildren) \"/\" Vegetable/Corn\r\n"
		    "A101 OK List completed\r\n");
	/* 5.2 */
	check_exact(c, "A102", "LIST (SUBSCRIBED) \"\" \"*\"",
		    "* LIST (\\HasNoChildren \\Subscribed) \"/\" INBOX\r\n"
		    "* LIST (\\HasNoChildren \\Subscribed) \"/\" Fruit/Banana\r\n"
		    "* LIST (\\NonExistent \\HasNoChildren \\Subscribed) \"/\" Fruit/Peach\r\n"
		    "* LIST (\\HasChildren \\Subscribed) \"/\" Vegetable\r\n"
		    "* LIST (\\HasNoChildren \\Subscribed) \"/\" Vegetable/Broccoli\r\n"
		    "A102 OK List completed\r\n");
	/* 5.3 */
	check_exact(c, "A103", "LIST () \"\" \"%\" RETURN (CHILDREN)",
		    "* LIST (\\HasNoChildren) \"/\" INBOX\r\n"
		    "* LIST (\\HasChildren) \"/\" Fruit\r\n"
		    "* LIST (\\HasNoChildren) \"/\" Tofu\r\n"
		    "* LIST (\\HasChildren) \"/\" Vegetable\r\n"
		    "A103 OK List completed\r\n");
	/* 5.5: REMOTE (no remote mailboxes here) */
	client_tagged_check(c, "A104", "LIST (REMOTE) \"\" \"%\" RETURN (CHILDREN)", "\"/\" Tofu\r\n");
	/* 5.6 */
	check_exact(c, "A105", "LIST (REMOTE) \"\" \"*\" RETURN (SUBSCRIBED)",
		    "* LIST (\\HasNoChildren \\Subscribed) \"/\" INBOX\r\n"
		    "* LIST (\\HasChildren) \"/\" Fruit\r\n"
		    "* LIST (\\HasNoChildren) \"/\" Fruit/Apple\r\n"
		    "* LIST (\\HasNoChildren \\Subscribed) \"/\" Fruit/Banana\r\n"
		    "* LIST (\\HasNoChildren) \"/\" Tofu\r\n"
		    "* LIST (\\HasChildren \\Subscribed) \"/\" Vegetable\r\n"
		    "* LIST (\\HasNoChildren \\Subscribed) \"/\" Vegetable/Broccoli\r\n"
		    "* LIST (\\HasNoChildren) \"/\" Vegetable/Corn\r\n"
		    "A105 OK List completed\r\n");
	/* 5.7: several patterns */
	check_exact(c, "A106", "LIST \"\" (\"INBOX\" \"Vegetable\" \"Fruit/%\")",
		    "* LIST (\\HasNoChildren) \"/\" INBOX\r\n"
		    "* LIST (\\HasNoChildren) \"/\" Fruit/Apple\r\n"
		    "* LIST (\\HasNoChildren) \"/\" Fruit/Banana\r\n"
		    "* LIST (\\HasChildren) \"/\" Vegetable\r\n"
		    "A106 OK List completed\r\n");
	/* wrong use: BAD (RFC 5258 3: unknown options, RECURSIVEMATCH alone) */
	client_tagged_check(c, "b1", "LIST (RECURSIVEMATCH) \"\" %", "b1 BAD");
	client_tagged_check(c, "b2", "LIST (REMOTE RECURSIVEMATCH) \"\" %", "b2 BAD");
	client_tagged_check(c, "b3", "LIST (FOO) \"\" %", "b3 BAD");
	client_tagged_check(c, "b4", "LIST \"\" % RETURN (FOO)", "b4 BAD");
	client_tagged_check(c, "b5", "LIST \"\" % RETURN", "b5 BAD");
	client_tagged_check(c, "b6", "LIST \"\" % FOO (CHILDREN)", "b6 BAD");
	client_tagged_check(c, "b7", "LIST \"\" ()", "b7 BAD");
	client_tagged_check(c, "b8", "LIST \"\" % RETURN (STATUS)", "b8 BAD");
	client_tagged_check(c, "b9", "LIST \"\" % RETURN (STATUS (FOO))", "b9 BAD");
	client_tagged_check(c, "b10", "LSUB (SUBSCRIBED) \"\" %", "b10 BAD");
	client_close(c);
	fixture_stop(f);
}

/* RFC 5258 5.8 and 5.9: RECURSIVEMATCH and CHILDINFO. */
static void test_list_recursivematch(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL);
	struct client *c = client_login(f);
	client_tagged_check(c, "c1", "CREATE Foo/Bar", "c1 OK");
	client_tagged_check(c, "c2", "CREATE Foo/Baz", "c2 OK");
	client_tagged_check(c, "c3", "CREATE Moo", "c3 OK");
	client_tagged_check(c, "c4", "SUBSCRIBE Foo/Baz", "c4 OK");
	/* 5.8 a */
	check_exact(c, "C1", "LIST (SUBSCRIBED) \"\" \"*\"",
		    "* LIST (\\HasNoChildren \\Subscribed) \"/\" Foo/Baz\r\nC1 OK List completed\r\n");
	check_exact(c, "C2", "LIST (SUBSCRIBED) \"\" \"%\"", "C2 OK List completed\r\n");
	check_exact(c, "C3", "LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\"",
		    "* LIST (\\HasChildren) \"/\" Foo (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n"
		    "C3 OK List completed\r\n");
	/* 5.8 a1: Foo subscribed too */
	client_tagged_check(c, "c5", "SUBSCRIBE Foo", "c5 OK");
	check_exact(c, "C4", "LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\"",
		    "* LIST (\\HasChildren \\Subscribed) \"/\" Foo (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n"
		    "C4 OK List completed\r\n");
	/* 5.8 a2: a subscription below a name that does not exist */
	client_tagged_check(c, "c6", "UNSUBSCRIBE Foo", "c6 OK");
	client_tagged_check(c, "c7", "UNSUBSCRIBE Foo/Baz", "c7 OK");
	client_tagged_check(c, "c8", "SUBSCRIBE Xyzzy/Plugh", "c8 OK");
	check_exact(c, "C5", "LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\"",
		    "* LIST (\\NonExistent \\HasNoChildren) \"/\" Xyzzy (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n"
		    "C5 OK List completed\r\n");
	/* 5.8 b */
	client_tagged_check(c, "c9", "UNSUBSCRIBE Xyzzy/Plugh", "c9 OK");
	check_exact(c, "C6", "LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\"",
		    "C6 OK List completed\r\n");
	/* 5.8 c */
	client_tagged_check(c, "c10", "SUBSCRIBE Foo", "c10 OK");
	client_tagged_check(c, "c11", "SUBSCRIBE Moo", "c11 OK");
	check_exact(c, "C7", "LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\" RETURN (CHILDREN)",
		    "* LIST (\\HasChildren \\Subscribed) \"/\" Foo\r\n"
		    "* LIST (\\HasNoChildren \\Subscribed) \"/\" Moo\r\n"
		    "C7 OK List completed\r\n");
	client_close(c);
	fixture_stop(f);

	/* 5.9 */
	f = fixture_start(NULL);
	c = client_login(f);
	static const char *const creates[] = { "foo2/bar1", "foo2/bar2", "baz2/bar2", "baz2/bar22",
					       "baz2/bar222", "eps2/mamba" };
	static const char *const subs[] = { "foo2/bar1", "foo2/bar2", "baz2/bar2", "baz2/bar22",
					    "baz2/bar222", "eps2", "eps2/mamba", "qux2/bar2" };
	for (size_t i = 0; i < sizeof(creates) / sizeof(creates[0]); i++) {
		char line[64];
		snprintf(line, sizeof(line), "CREATE %s", creates[i]);
		client_tagged_check(c, "f", line, "f OK");
	}
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		char line[64];
		snprintf(line, sizeof(line), "SUBSCRIBE %s", subs[i]);
		client_tagged_check(c, "s", line, "s OK");
	}
	check_exact(c, "D1", "LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"*2\"",
		    "* LIST (\\HasNoChildren \\Subscribed) \"/\" baz2/bar2\r\n"
		    "* LIST (\\HasNoChildren \\Subscribed) \"/\" baz2/bar22\r\n"
		    "* LIST (\\HasNoChildren \\Subscribed) \"/\" baz2/bar222\r\n"
		    "* LIST (\\HasChildren \\Subscribed) \"/\" eps2 (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n"
		    "* LIST (\\HasChildren) \"/\" foo2 (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n"
		    "* LIST (\\HasNoChildren \\Subscribed) \"/\" foo2/bar2\r\n"
		    "* LIST (\\NonExistent \\HasNoChildren \\Subscribed) \"/\" qux2/bar2\r\n"
		    "D1 OK List completed\r\n");
	client_close(c);
	fixture_stop(f);
}

/* RFC 5819: STATUS after each selectable mailbox's LIST line. */
static void test_list_status(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL);
	imap_memory_backend_add_message(f->e.mb, USER, "Archive/2026", msg1, sizeof(msg1) - 1, "",
					0);
	struct client *c = client_login(f);
	check_exact(c, "A01", "LIST \"\" % RETURN (STATUS (MESSAGES UNSEEN))",
		    "* LIST (\\HasNoChildren) \"/\" INBOX\r\n"
		    "* STATUS INBOX (MESSAGES 3 UNSEEN 2)\r\n"
		    "* LIST (\\NonExistent \\HasChildren) \"/\" Archive\r\n"
		    "A01 OK List completed\r\n");
	check_exact(c, "A02", "LIST \"\" \"Archive/%\" RETURN (STATUS (MESSAGES SIZE DELETED))",
		    "* LIST (\\HasNoChildren) \"/\" Archive/2026\r\n"
		    "* STATUS Archive/2026 (MESSAGES 1 DELETED 0 SIZE 45)\r\n"
		    "A02 OK List completed\r\n");
	/* with a selection option: \NonExistent, and still no STATUS for it */
	client_tagged_check(c, "s1", "SUBSCRIBE Gone", "s1 OK");
	check_exact(c, "A03", "LIST (SUBSCRIBED) \"\" * RETURN (STATUS (MESSAGES))",
		    "* LIST (\\NonExistent \\HasNoChildren \\Subscribed) \"/\" Gone\r\n"
		    "A03 OK List completed\r\n");
	client_close(c);
	fixture_stop(f);
}

/* ---- STATUS, NAMESPACE, CHECK ----------------------------------------- */

static void test_status(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL);
	struct client *c = client_login(f);
	/* RFC 3501 6.3.10 */
	check_exact(c, "A042", "STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)",
		    "* STATUS INBOX (MESSAGES 3 RECENT 0 UIDNEXT 4 UIDVALIDITY 1700000000 UNSEEN 2)\r\n"
		    "A042 OK Status completed\r\n");
	/* RFC 8438 SIZE, RFC 9051 DELETED, RFC 7162 HIGHESTMODSEQ (one per message added), RFC 7889 */
	char want[160];
	snprintf(want, sizeof(want),
		 "* STATUS INBOX (DELETED 1 SIZE %zu HIGHESTMODSEQ 3 APPENDLIMIT 33554432)\r\n",
		 sizeof(msg1) + sizeof(msg2) + sizeof(msg3) - 3);
	client_tagged_check(c, "s1", "STATUS inbox (size deleted HIGHESTMODSEQ APPENDLIMIT)", want);
	client_tagged_check(c, "s2", "STATUS nosuch (MESSAGES)", "s2 NO [NONEXISTENT]");
	client_tagged_check(c, "s3", "STATUS INBOX ()", "s3 BAD");
	client_tagged_check(c, "s4", "STATUS INBOX (FOO)", "s4 BAD");
	client_tagged_check(c, "s5", "STATUS INBOX", "s5 BAD");
	client_tagged_check(c, "s6", "STATUS INBOX MESSAGES", "s6 BAD");
	client_tagged_check(c, "s7", "STATUS Secret (MESSAGES)", "s7 NO [NONEXISTENT]"); /* other's */
	/* NAMESPACE (RFC 2342 5) */
	check_exact(c, "A001", "NAMESPACE",
		    "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\nA001 OK Namespace completed\r\n");
	client_tagged_check(c, "n2", "NAMESPACE x", "n2 BAD");
	/* CHECK: selected state only */
	client_tagged_check(c, "k1", "CHECK", "k1 BAD");
	client_tagged_check(c, "k2", "SELECT INBOX", "k2 OK");
	client_tagged_check(c, "FXXZ", "CHECK", "FXXZ OK");
	client_tagged_check(c, "k3", "CHECK now", "k3 BAD");
	client_close(c);
	fixture_stop(f);
}

/* ---- QUOTA (RFC 9208; issue 12) ------------------------------------ */

static void test_quota(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL);
	struct client *c = client_login(f);
	client_tagged_check(c, "c1", "CAPABILITY", " QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE");
	/* no limit: no root (4.3), GETQUOTA "" is NO */
	check_exact(c, "q1", "GETQUOTAROOT INBOX", "* QUOTAROOT INBOX\r\nq1 OK Getquotaroot completed\r\n");
	client_tagged_check(c, "q2", "GETQUOTA \"\"", "q2 NO");
	/* limits: STORAGE in KiB (usage rounded up, limit down), MESSAGE */
	struct imap_quota q = { .has_storage = 1, .has_messages = 1, .storage_used = 1025,
				.storage_limit = 10 * 1024 + 1023, .messages_used = 3,
				.messages_limit = 100 };
	imap_memory_backend_set_quota(f->e.mb, &q);
	check_exact(c, "q3", "GETQUOTAROOT inbox",
		    "* QUOTAROOT INBOX \"\"\r\n* QUOTA \"\" (STORAGE 2 10 MESSAGE 3 100)\r\n"
		    "q3 OK Getquotaroot completed\r\n");
	check_exact(c, "q4", "GETQUOTA \"\"",
		    "* QUOTA \"\" (STORAGE 2 10 MESSAGE 3 100)\r\nq4 OK Getquota completed\r\n");
	/* one resource only */
	q.has_messages = 0;
	imap_memory_backend_set_quota(f->e.mb, &q);
	check_exact(c, "q5", "GETQUOTA \"\"",
		    "* QUOTA \"\" (STORAGE 2 10)\r\nq5 OK Getquota completed\r\n");
	client_tagged_check(c, "q6", "GETQUOTA \"other\"", "q6 NO");
	client_tagged_check(c, "q7", "GETQUOTA", "q7 BAD");
	client_tagged_check(c, "q8", "GETQUOTAROOT", "q8 BAD");
	/* users never set their quota */
	client_tagged_check(c, "q9", "SETQUOTA \"\" (STORAGE 512)", "q9 NO [NOPERM]");
	client_tagged_check(c, "qa", "SETQUOTA \"\"", "qa BAD");
	/* the backend's error: its row */
	imap_memory_backend_set_failure(f->e.mb, MAIL_ERR_UNAVAILABLE);
	client_tagged_check(c, "qb", "GETQUOTAROOT INBOX", "qb NO");
	imap_memory_backend_set_failure(f->e.mb, MAIL_OK);
	imap_memory_backend_set_quota(f->e.mb, NULL);
	client_close(c);
	/* before login: BAD */
	c = client_connect(f->e.port);
	free(client_until(c, "* OK"));
	client_tagged_check(c, "n1", "GETQUOTAROOT INBOX", "n1 BAD");
	client_close(c);
	fixture_stop(f);
}

/* ---- ID, ENABLE ------------------------------------------------------ */

static void test_id_enable(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL);
	struct client *c = client_connect(f->e.port);
	char *greeting = client_until(c, "* OK");
	assert_contains(greeting, " ID ENABLE NAMESPACE ");
	free(greeting);
	/* RFC 2971 3.3's example; ID works before login */
	client_tagged_check(c, "a023",
	      "ID (\"name\" \"sodr\" \"version\" \"19.34\" \"vendor\" \"Pink Floyd Music Limited\")",
	      "* ID (\"name\" \"mail-platform\" \"version\" \"1.0\")\r\na023 OK");
	client_tagged_check(c, "i1", "ID NIL", "i1 OK");
	client_tagged_check(c, "i2", "ID (\"name\" NIL)", "i2 OK");
	client_tagged_check(c, "i3", "ID", "i3 BAD");
	client_tagged_check(c, "i4", "ID (\"name\")", "i4 BAD");
	client_tagged_check(c, "i5", "ID \"name\"", "i5 BAD");
	client_tagged_check(c, "i6", "ID (\"a-field-name-longer-than-thirty\" \"x\")", "i6 BAD");
	char line[2048];
	size_t n = (size_t)snprintf(line, sizeof(line), "ID (");
	for (int i = 0; i < 31; i++)
		n += (size_t)snprintf(line + n, sizeof(line) - n, "%s\"f%d\" \"v\"", i ? " " : "", i);
	snprintf(line + n, sizeof(line) - n, ")");
	client_tagged_check(c, "i7", line, "i7 BAD");
	char value[1100];
	memset(value, 'v', 1025);
	value[1025] = '\0';
	snprintf(line, sizeof(line), "ID (\"name\" \"%s\")", value);
	client_tagged_check(c, "i8", line, "i8 BAD");
	client_tagged_check(c, "i9", "ID ((\"name\") \"x\")", "i9 BAD");
	/* ENABLE: authenticated state only */
	client_tagged_check(c, "e0", "ENABLE UTF8=ACCEPT", "e0 BAD Not authenticated");
	client_tagged_check(c, "L1", "LOGIN \"" USER "\" \"" PASS "\"", "L1 OK");
	/* RFC 5161 4: unknown and not-enableable names are ignored */
	check_exact(c, "t1", "ENABLE X-GOOD-IDEA NAMESPACE",
		    "* ENABLED\r\nt1 OK Enabled\r\n");
	check_exact(c, "t2", "ENABLE utf8=accept X-GOOD-IDEA",
		    "* ENABLED UTF8=ACCEPT\r\nt2 OK Enabled\r\n");
	check_exact(c, "t3", "ENABLE UTF8=ACCEPT", "* ENABLED\r\nt3 OK Enabled\r\n");
	check_exact(c, "t4", "ENABLE IMAP4rev2 UTF8=ACCEPT",
		    "* ENABLED IMAP4rev2\r\nt4 OK Enabled\r\n");
	client_tagged_check(c, "t5", "ENABLE", "t5 BAD");
	client_tagged_check(c, "t6", "ENABLE (CONDSTORE)", "t6 BAD");
	client_tagged_check(c, "t7", "SELECT INBOX", "t7 OK");
	client_tagged_check(c, "t8", "ENABLE UTF8=ACCEPT", "t8 OK"); /* allowed when selected too */
	client_close(c);
	fixture_stop(f);
}

/* ---- modified UTF-7 and UTF8=ACCEPT ---------------------------------- */

static void test_utf7_names(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL);
	struct client *c = client_login(f);
	/* RFC 3501 5.1.3: the backend gets UTF-8 */
	client_tagged_check(c, "u1", "CREATE \"~peter/mail/&U,BTFw-/&ZeVnLIqe-\"", "u1 OK");
	assert_int_equal(imap_memory_backend_count(f->e.mb, USER,
						   "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/"
						   "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"),
			 0);
	check_exact(c, "u2", "LIST \"~peter/mail/\" \"*\"",
		    "* LIST (\\HasChildren) \"/\" ~peter/mail/&U,BTFw-\r\n"
		    "* LIST (\\HasNoChildren) \"/\" ~peter/mail/&U,BTFw-/&ZeVnLIqe-\r\n"
		    "u2 OK List completed\r\n");
	/* names that need quoting come back quoted, exactly */
	client_tagged_check(c, "q1", "CREATE \"say \\\"hi\\\" [now]\"", "q1 OK");
	client_tagged_check(c, "q2", "CREATE nil", "q2 OK");
	check_exact(c, "q3", "LIST \"\" \"s*\"",
		    "* LIST (\\HasNoChildren) \"/\" \"say \\\"hi\\\" [now]\"\r\n"
		    "q3 OK List completed\r\n");
	client_tagged_check(c, "q4", "LIST \"\" n*", "* LIST (\\HasNoChildren) \"/\" \"nil\"\r\n");
	assert_int_equal(imap_memory_backend_count(f->e.mb, USER, "say \"hi\" [now]"), 0);
	client_tagged_check(c, "u3", "CREATE A&-B", "u3 OK");
	assert_int_equal(imap_memory_backend_count(f->e.mb, USER, "A&B"), 0);
	client_tagged_check(c, "u4", "LIST \"\" A*", "* LIST (\\HasNoChildren) \"/\" A&-B\r\n");
	/* malformed: BAD; never reaches the backend */
	client_tagged_check(c, "b1", "CREATE &Jjo", "b1 BAD");
	client_tagged_check(c, "b2", "CREATE &AGE-", "b2 BAD");
	client_tagged_check(c, "b3", "CREATE \"a&AOQ-&AOQ-\"", "b3 BAD");
	client_tagged_check(c, "b4", "CREATE \"\xc3\xa4\"", "b4 BAD"); /* raw UTF-8 before UTF8=ACCEPT */
	client_tagged_check(c, "b6", "STATUS &AOR- (MESSAGES)", "b6 BAD");
	client_tagged_check(c, "b7", "RENAME A&-B &", "b7 BAD");
	client_tagged_check(c, "b8", "CREATE &AAE-", "b8 NO [CANNOT]"); /* U+0001: valid, not a name */
	/* STATUS and SELECT reach the same mailbox */
	client_tagged_check(c, "s1", "STATUS \"~peter/mail/&U,BTFw-/&ZeVnLIqe-\" (MESSAGES)",
	      "* STATUS ~peter/mail/&U,BTFw-/&ZeVnLIqe- (MESSAGES 0)");

	/* UTF8=ACCEPT (RFC 6855 3): UTF-8 both ways, quoted */
	client_tagged_check(c, "e1", "ENABLE UTF8=ACCEPT", "* ENABLED UTF8=ACCEPT");
	check_exact(c, "u5", "LIST \"~peter/mail/\" \"*\"",
		    "* LIST (\\HasChildren) \"/\" \"~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97\"\r\n"
		    "* LIST (\\HasNoChildren) \"/\" \"~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/"
		    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\"\r\n"
		    "u5 OK List completed\r\n");
	client_tagged_check(c, "u6", "CREATE \"\xc3\x9cn\xc3\xaf\"", "u6 OK");
	assert_int_equal(imap_memory_backend_count(f->e.mb, USER, "\xc3\x9cn\xc3\xaf"), 0);
	client_tagged_check(c, "u7", "CREATE &-x", "u7 OK"); /* no decoding now: a name with "&-" */
	assert_int_equal(imap_memory_backend_count(f->e.mb, USER, "&-x"), 0);
	client_tagged_check(c, "u8", "CREATE \"\xc3\"", "u8 BAD"); /* not UTF-8 */
	client_tagged_check(c, "u10", "CREATE \xc3\xa9t\xc3\xa9", "u10 OK"); /* an atom, as imaplib sends */
	assert_int_equal(imap_memory_backend_count(f->e.mb, USER, "\xc3\xa9t\xc3\xa9"), 0);
	client_tagged_check(c, "u11", "CREATE \xc3", "u11 BAD");
	client_tagged_check(c, "u9", "STATUS \"\xc3\x9cn\xc3\xaf\" (MESSAGES)",
	      "* STATUS \"\xc3\x9cn\xc3\xaf\" (MESSAGES 0)");
	client_close(c);
	fixture_stop(f);
}

/* RFC 9051 after ENABLE IMAP4rev2: UTF-8 names, \NonExistent for levels
 * that are not mailboxes, no RECENT. */
static void test_imap4rev2(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL);
	imap_memory_backend_add_message(f->e.mb, USER, "\xc3\x84rchiv/2026", msg1,
					sizeof(msg1) - 1, "", 0);
	struct client *c = client_login(f);
	/* before: modified UTF-7, \Noselect, RECENT */
	check_exact(c, "a1", "LIST \"\" %",
		    "* LIST (\\HasNoChildren) \"/\" INBOX\r\n"
		    "* LIST (\\Noselect \\HasChildren) \"/\" &AMQ-rchiv\r\n"
		    "a1 OK List completed\r\n");
	client_tagged_check(c, "a2", "STATUS INBOX (MESSAGES RECENT)", "* STATUS INBOX (MESSAGES 3 RECENT 0)");
	check_exact(c, "a3", "ENABLE IMAP4rev2", "* ENABLED IMAP4rev2\r\na3 OK Enabled\r\n");
	check_exact(c, "b1", "LIST \"\" %",
		    "* LIST (\\HasNoChildren) \"/\" INBOX\r\n"
		    "* LIST (\\NonExistent \\HasChildren) \"/\" \"\xc3\x84rchiv\"\r\n"
		    "b1 OK List completed\r\n");
	check_exact(c, "b2", "STATUS INBOX (MESSAGES RECENT)",
		    "* STATUS INBOX (MESSAGES 3)\r\nb2 OK Status completed\r\n");
	client_tagged_check(c, "b3", "STATUS \"\xc3\x84rchiv/2026\" (MESSAGES)",
	      "* STATUS \"\xc3\x84rchiv/2026\" (MESSAGES 1)");
	client_tagged_check(c, "b4", "CREATE \"\xc3\x84rchiv/2027\"", "b4 OK");
	client_tagged_check(c, "b5", "CREATE \"&AMQ-\"", "b5 OK"); /* no decoding: the name "&AMQ-" */
	assert_int_equal(imap_memory_backend_count(f->e.mb, USER, "&AMQ-"), 0);
	client_tagged_check(c, "b6", "DELETE \"\xc3\x84rchiv/2027\"", "b6 OK");
	client_close(c);
	fixture_stop(f);
}

/* ---- APPEND ---------------------------------------------------------- */

/* RFC 3501 6.3.11's message. */
static const char rfc_msg[] =
	"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n"
	"From: Fred Foobar <foobar@Blurdybloop.example.COM>\r\n"
	"Subject: afternoon meeting\r\n"
	"To: mooch@owatagu.siam.edu\r\n"
	"Message-Id: <B27397-0100000@Blurdybloop.example.COM>\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
	"\r\n"
	"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n";

/* Send "tag APPEND box args {n}" (or {n+}), the bytes after "+" for a
 * synchronising literal, then CRLF; the answer through the tagged line. */
static char *append(struct client *c, const char *tag, const char *box_args, const void *msg,
		    size_t len, int nonsync)
{
	client_sendf(c, "%s APPEND %s {%zu%s}\r\n", tag, box_args, len, nonsync ? "+" : "");
	char *out = NULL;
	if (!nonsync) {
		out = client_until(c, "+ ");
		assert_non_null(out);
		free(out);
	}
	client_send(c, msg, len);
	client_send(c, "\r\n", 2);
	char prefix[32];
	snprintf(prefix, sizeof(prefix), "%s ", tag);
	out = client_until(c, prefix);
	assert_non_null(out);
	return out;
}

static void check_stored(struct fixture *f, const char *box, uint32_t uid, const void *msg,
			 size_t len, int64_t date)
{
	const void *data;
	size_t n;
	int64_t when;
	assert_int_equal(imap_memory_backend_message(f->e.mb, USER, box, uid, &data, &n, &when), 0);
	assert_int_equal(n, len);
	assert_memory_equal(data, msg, len);
	if (date != 0)
		assert_int_equal(when, date);
}

static void test_append(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL);
	struct client *c = client_login(f);
	client_tagged_check(c, "c0", "CREATE saved-messages", "c0 OK");
	uint32_t v = imap_memory_backend_uidvalidity(f->e.mb, USER, "saved-messages");
	char want[128];
	/* RFC 3501 6.3.11 (with a date-time) */
	char *out = append(c, "A003", "saved-messages (\\Seen) \" 7-Feb-1994 21:52:25 -0800\"",
			   rfc_msg, sizeof(rfc_msg) - 1, 0);
	snprintf(want, sizeof(want), "A003 OK [APPENDUID %u 1] Append completed\r\n", v);
	assert_contains(out, want);
	free(out);
	check_stored(f, "saved-messages", 1, rfc_msg, sizeof(rfc_msg) - 1, 760686745000LL);
	assert_int_equal(imap_memory_backend_has_flag(f->e.mb, USER, "saved-messages", 1, "\\Seen"),
			 1);
	/* LITERAL+, keywords, no date: now */
	out = append(c, "a2", "INBOX ($Work \\flagged)", msg1, sizeof(msg1) - 1, 1);
	assert_contains(out, "a2 OK [APPENDUID 1700000000 4] Append completed");
	assert_not_contains(out, "+ ");
	free(out);
	assert_int_equal(imap_memory_backend_has_flag(f->e.mb, USER, "INBOX", 4, "$Work"), 1);
	assert_int_equal(imap_memory_backend_has_flag(f->e.mb, USER, "INBOX", 4, "\\Flagged"), 1);
	/* a day of one digit without the space; no flag list */
	out = append(c, "a3", "INBOX \"1-Aug-2002 22:00:00 -0700\"", msg2, sizeof(msg2) - 1, 1);
	assert_contains(out, "a3 OK [APPENDUID 1700000000 5]");
	free(out);
	check_stored(f, "INBOX", 5, msg2, sizeof(msg2) - 1, 1028264400000LL);
	/* failures: [TRYCREATE]; wrong use: BAD */
	out = append(c, "b1", "nosuch", msg1, sizeof(msg1) - 1, 1);
	assert_contains(out, "b1 NO [TRYCREATE]");
	free(out);
	out = append(c, "b2", "INBOX (\\Recent)", msg1, sizeof(msg1) - 1, 1);
	assert_contains(out, "b2 BAD Invalid flag");
	free(out);
	out = append(c, "b3", "INBOX \"31-Feb-2020 00:00:00 +0000\"", msg1, sizeof(msg1) - 1, 1);
	assert_contains(out, "b3 BAD Invalid date-time");
	free(out);
	out = append(c, "b4", "INBOX \"1-Jan-2020 00:00:00\"", msg1, sizeof(msg1) - 1, 1);
	assert_contains(out, "b4 BAD Invalid date-time");
	free(out);
	client_tagged_check(c, "b5", "APPEND INBOX", "b5 BAD");
	client_tagged_check(c, "b6", "APPEND INBOX \"not a literal\"", "b6 BAD");
	client_tagged_check(c, "b7", "APPEND INBOX (\\Seen)", "b7 BAD");
	client_tagged_check(c, "b8", "APPEND INBOX {0+}\r\n", "b8 NO [CANNOT]");
	out = append(c, "b9", "&Jjo", msg1, sizeof(msg1) - 1, 1);
	assert_contains(out, "b9 BAD");
	free(out);
	assert_int_equal(imap_memory_backend_count(f->e.mb, USER, "INBOX"), 5);
	/* literal8 (BINARY) and the UTF8 data item (RFC 6855 4) */
	static const char bin[] = "Subject: bin\r\n\r\n\0\x01\x02\r\n";
	client_sendf(c, "u1 APPEND INBOX ~{%zu+}\r\n", sizeof(bin) - 1);
	client_send(c, bin, sizeof(bin) - 1);
	client_send(c, "\r\n", 2);
	out = client_until(c, "u1 ");
	assert_contains(out, "u1 OK [APPENDUID 1700000000 6]");
	free(out);
	check_stored(f, "INBOX", 6, bin, sizeof(bin) - 1, 0);
	client_sendf(c, "u2 APPEND INBOX UTF8 (~{%zu+}\r\n", sizeof(msg3) - 1);
	client_send(c, msg3, sizeof(msg3) - 1);
	client_send(c, ")\r\n", 3);
	out = client_until(c, "u2 ");
	assert_contains(out, "u2 OK [APPENDUID 1700000000 7]");
	free(out);
	/* the backend fails: its code */
	imap_memory_backend_set_failure(f->e.mb, MAIL_ERR_QUOTA);
	out = append(c, "q1", "INBOX", msg1, sizeof(msg1) - 1, 1);
	assert_contains(out, "q1 NO [OVERQUOTA]");
	free(out);
	imap_memory_backend_set_failure(f->e.mb, MAIL_OK);
	client_close(c);

	/* before login: BAD, and no large literal */
	c = client_connect(f->e.port);
	free(client_until(c, "* OK"));
	out = append(c, "n1", "INBOX", msg1, sizeof(msg1) - 1, 1);
	assert_contains(out, "n1 BAD Not authenticated");
	free(out);
	client_sendf(c, "n2 APPEND INBOX {100000}\r\n");
	out = client_until(c, "n2 ");
	assert_contains(out, "n2 BAD Literal too large");
	assert_not_contains(out, "+ ");
	free(out);
	client_tagged_check(c, "n3", "NOOP", "n3 OK");
	client_close(c);
	fixture_stop(f);
}

/* RFC 3502: several messages in one APPEND, all or nothing. */
static void test_multiappend(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL);
	struct client *c = client_login(f);
	client_tagged_check(c, "c0", "CREATE saved-messages", "c0 OK");
	uint32_t v = imap_memory_backend_uidvalidity(f->e.mb, USER, "saved-messages");
	/* RFC 3502 3's example, both literals synchronising */
	client_sendf(c, "A003 APPEND saved-messages (\\Seen) {%zu}\r\n", sizeof(rfc_msg) - 1);
	free(client_until(c, "+ "));
	client_send(c, rfc_msg, sizeof(rfc_msg) - 1);
	client_sendf(c, " (\\Seen) \" 1-Aug-2002 22:00:00 -0700\" {%zu}\r\n", sizeof(msg2) - 1);
	free(client_until(c, "+ "));
	client_send(c, msg2, sizeof(msg2) - 1);
	client_send(c, "\r\n", 2);
	char *out = client_until(c, "A003 ");
	char want[128];
	snprintf(want, sizeof(want), "A003 OK [APPENDUID %u 1:2] Append completed", v);
	assert_contains(out, want);
	free(out);
	check_stored(f, "saved-messages", 1, rfc_msg, sizeof(rfc_msg) - 1, 0);
	check_stored(f, "saved-messages", 2, msg2, sizeof(msg2) - 1, 1028264400000LL);
	/* three with LITERAL+ */
	client_sendf(c, "m2 APPEND saved-messages {%zu+}\r\n%s () {%zu+}\r\n%s {%zu+}\r\n%s\r\n",
		     sizeof(msg1) - 1, msg1, sizeof(msg2) - 1, msg2, sizeof(msg3) - 1, msg3);
	out = client_until(c, "m2 ");
	snprintf(want, sizeof(want), "m2 OK [APPENDUID %u 3:5]", v);
	assert_contains(out, want);
	free(out);
	assert_int_equal(imap_memory_backend_count(f->e.mb, USER, "saved-messages"), 5);
	/* atomic: a bad second message stores nothing */
	client_sendf(c, "m3 APPEND saved-messages {%zu+}\r\n%s (\\Recent) {%zu+}\r\n%s\r\n",
		     sizeof(msg1) - 1, msg1, sizeof(msg2) - 1, msg2);
	out = client_until(c, "m3 ");
	assert_contains(out, "m3 BAD Invalid flag");
	free(out);
	client_sendf(c, "m4 APPEND saved-messages {%zu+}\r\n%s \"bad date\" {%zu+}\r\n%s\r\n",
		     sizeof(msg1) - 1, msg1, sizeof(msg2) - 1, msg2);
	out = client_until(c, "m4 ");
	assert_contains(out, "m4 BAD Invalid date-time");
	free(out);
	/* ... and so does the backend refusing one of them */
	imap_memory_backend_set_max_message_size(f->e.mb, sizeof(msg1) - 2);
	client_sendf(c, "m5 APPEND saved-messages {%zu+}\r\n%s {%zu+}\r\n%s\r\n",
		     sizeof(msg2) - 1, msg2, sizeof(msg1) - 1, msg1);
	out = client_until(c, "m5 ");
	assert_contains(out, "m5 NO [TOOBIG]");
	free(out);
	imap_memory_backend_set_max_message_size(f->e.mb, 0);
	assert_int_equal(imap_memory_backend_count(f->e.mb, USER, "saved-messages"), 5);
	/* into a mailbox that does not exist: nothing, [TRYCREATE] */
	client_sendf(c, "m6 APPEND nosuch {%zu+}\r\n%s {%zu+}\r\n%s\r\n", sizeof(msg2) - 1, msg2,
		     sizeof(msg1) - 1, msg1);
	out = client_until(c, "m6 ");
	assert_contains(out, "m6 NO [TRYCREATE]");
	free(out);
	client_tagged_check(c, "m7", "NOOP", "m7 OK");
	client_close(c);
	fixture_stop(f);
}

static void tune_appendlimit(struct imap_settings *set)
{
	set->append_limit = 200 * 1024;
	set->append_max_total = 300 * 1024;
}

/* RFC 7889: over the limit, NO [TOOBIG] before the bytes when the client
 * waits for "+", after them (dropped) when it does not; every message
 * held counts against the body budget and goes back after. */
static void test_appendlimit(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(tune_appendlimit);
	struct client *c = client_connect(f->e.port);
	char *out = client_until(c, "* OK");
	assert_contains(out, " APPENDLIMIT=204800 ");
	free(out);
	client_tagged_check(c, "L1", "LOGIN \"" USER "\" \"" PASS "\"", "L1 OK");
	client_tagged_check(c, "s0", "STATUS INBOX (APPENDLIMIT)", "* STATUS INBOX (APPENDLIMIT 204800)");
	size_t big = 150 * 1024;
	char *msg = malloc(300 * 1024);
	memset(msg, 'x', 300 * 1024);
	memcpy(msg, "Subject: big\r\n\r\n", 17);
	/* under it, synchronising and not, stored exactly */
	out = append(c, "a1", "INBOX", msg, big, 0);
	assert_contains(out, "a1 OK [APPENDUID 1700000000 4]");
	free(out);
	out = append(c, "a2", "INBOX", msg, 200 * 1024, 1);
	assert_contains(out, "a2 OK [APPENDUID 1700000000 5]");
	free(out);
	check_stored(f, "INBOX", 5, msg, 200 * 1024, 0);
	assert_int_equal(f->budget.used, 0);
	assert_true(f->budget.peak >= 200 * 1024);
	/* synchronising, over: refused before the bytes (no "+") */
	client_sendf(c, "t1 APPEND INBOX {%u}\r\n", 200 * 1024 + 1);
	out = client_until(c, "t1 ");
	assert_contains(out, "t1 NO [TOOBIG]");
	assert_not_contains(out, "+ ");
	free(out);
	client_tagged_check(c, "t2", "NOOP", "t2 OK");
	/* non-synchronising, over: read, dropped, refused; the next
	 * command is read from the right place */
	client_sendf(c, "t3 APPEND INBOX {%u+}\r\n", 200 * 1024 + 1);
	client_send(c, msg, 200 * 1024 + 1);
	client_sendf(c, "\r\nt4 NOOP\r\n");
	out = client_until(c, "t4 ");
	assert_contains(out, "t3 NO [TOOBIG]");
	assert_contains(out, "t4 OK");
	free(out);
	/* MULTIAPPEND whose second message is over: nothing stored */
	client_sendf(c, "t5 APPEND INBOX {%zu+}\r\n", big);
	client_send(c, msg, big);
	client_sendf(c, " {%u+}\r\n", 200 * 1024 + 1);
	client_send(c, msg, 200 * 1024 + 1);
	client_sendf(c, "\r\nt6 NOOP\r\n");
	out = client_until(c, "t6 ");
	assert_contains(out, "t5 NO [TOOBIG]");
	assert_contains(out, "t6 OK");
	free(out);
	/* together over append_max_total (300 KiB): [LIMIT] */
	client_sendf(c, "t7 APPEND INBOX {%zu+}\r\n", big);
	client_send(c, msg, big);
	client_sendf(c, " {%zu+}\r\n", big);
	client_send(c, msg, big);
	client_sendf(c, " {%u+}\r\n", 1000);
	client_send(c, msg, 1000);
	client_sendf(c, "\r\nt8 NOOP\r\n");
	out = client_until(c, "t8 ");
	assert_contains(out, "t7 NO [LIMIT]");
	assert_contains(out, "t8 OK");
	free(out);
	assert_int_equal(imap_memory_backend_count(f->e.mb, USER, "INBOX"), 5);
	assert_int_equal(f->budget.used, 0);
	client_close(c);
	free(msg);
	fixture_stop(f);
}

static void tune_small_budget(struct imap_settings *set)
{
	set->conn.access.body_budget->limit = 100 * 1024;
}

/* The body budget the frontend's sessions share bounds APPENDs in
 * progress; a client that goes away mid-literal gives its part back. */
static void test_append_budget(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(tune_small_budget);
	struct client *c = client_login(f);
	size_t big = 80 * 1024;
	char *msg = malloc(big);
	memset(msg, 'y', big);
	memcpy(msg, "Subject: b\r\n\r\n", 15);
	/* one session holds 80 KiB of a literal, not yet finished */
	client_sendf(c, "a1 APPEND INBOX {%zu+}\r\n", big);
	client_send(c, msg, big / 2);
	usleep(100 * 1000);
	assert_int_equal(f->budget.used, big);
	/* a second session cannot take 80 KiB more now */
	struct client *d = client_login(f);
	client_sendf(d, "b1 APPEND INBOX {%zu}\r\n", big);
	char *out = client_until(d, "b1 ");
	assert_contains(out, "b1 NO [UNAVAILABLE]");
	free(out);
	/* the first one finishes; the budget is free again */
	client_send(c, msg + big / 2, big - big / 2);
	client_send(c, "\r\n", 2);
	out = client_until(c, "a1 ");
	assert_contains(out, "a1 OK [APPENDUID");
	free(out);
	assert_int_equal(f->budget.used, 0);
	out = append(d, "b2", "INBOX", msg, big, 0);
	assert_contains(out, "b2 OK [APPENDUID");
	free(out);
	/* a client that closes in the middle of its literal */
	client_sendf(d, "b3 APPEND INBOX {%zu+}\r\n", big);
	client_send(d, msg, 1000);
	usleep(100 * 1000);
	assert_int_equal(f->budget.used, big);
	client_close(d);
	usleep(200 * 1000);
	assert_int_equal(f->budget.used, 0);
	assert_true(f->budget.refused >= 1);
	client_close(c);
	free(msg);
	fixture_stop(f);
}

/* A message of several MiB, in one literal: stored exactly. */
static void test_append_large(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL);
	struct client *c = client_login(f);
	size_t big = 5 * 1024 * 1024 + 3;
	char *msg = malloc(big);
	for (size_t i = 0; i < big; i++)
		msg[i] = (char)('a' + (i * 31 + i / 1000) % 26);
	memcpy(msg, "Subject: large\r\n\r\n", 19);
	char *out = append(c, "a1", "INBOX", msg, big, 0);
	assert_contains(out, "a1 OK [APPENDUID 1700000000 4]");
	free(out);
	check_stored(f, "INBOX", 4, msg, big, 0);
	out = append(c, "a2", "INBOX", msg, big, 1);
	assert_contains(out, "a2 OK [APPENDUID 1700000000 5]");
	free(out);
	assert_int_equal(f->budget.used, 0);
	client_close(c);
	free(msg);
	fixture_stop(f);
}

static void tune_literal_minus(struct imap_settings *set)
{
	set->literal_minus = 1;
}

/* RFC 7888 4: LITERAL- allows {n+} up to 4096 octets. */
static void test_literal_minus(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(tune_literal_minus);
	struct client *c = client_connect(f->e.port);
	char *out = client_until(c, "* OK");
	assert_contains(out, "IMAP4rev1 LITERAL- ");
	assert_not_contains(out, "LITERAL+");
	free(out);
	client_tagged_check(c, "L1", "LOGIN \"" USER "\" \"" PASS "\"", "L1 OK");
	char *msg = malloc(5000);
	memset(msg, 'z', 5000);
	memcpy(msg, "Subject: z\r\n\r\n", 15);
	out = append(c, "a1", "INBOX", msg, 4096, 1);
	assert_contains(out, "a1 OK [APPENDUID");
	free(out);
	out = append(c, "a2", "INBOX", msg, 5000, 0); /* synchronising: fine */
	assert_contains(out, "a2 OK [APPENDUID");
	free(out);
	client_tagged_check(c, "a3", "LOGIN {4097+}", "a3 BAD"); /* after auth: BAD anyway */
	client_close(c);
	c = client_login(f);
	/* in one send: nothing is sent after the server closed */
	char *req = malloc(5000 + 64);
	int n = snprintf(req, 64, "a4 APPEND INBOX {4097+}\r\n");
	memcpy(req + n, msg, 4097);
	memcpy(req + n + 4097, "\r\na5 NOOP\r\n", 12); /* a5 must not run */
	client_send(c, req, (size_t)n + 4109);
	free(req);
	out = client_until(c, "* BYE");
	assert_non_null(out);
	assert_contains(out, "a4 BAD [TOOBIG]");
	assert_not_contains(out, "a5 ");
	free(out);
	assert_int_equal(client_fill(c), 0); /* closed */
	client_close(c);
	assert_int_equal(imap_memory_backend_count(f->e.mb, USER, "INBOX"), 5);
	free(msg);
	fixture_stop(f);
}

/* ---- COMPRESS=DEFLATE (RFC 4978) ------------------------------------ */

/* A client side of COMPRESS: raw deflate both ways over a line client. */
struct zclient {
	struct client *c;
	z_stream in, out;
	char *plain; /* inflated, not yet returned */
	size_t len, cap;
};

static struct zclient *zclient_start(struct client *c)
{
	struct zclient *z = calloc(1, sizeof(*z));
	z->c = c;
	assert_int_equal(inflateInit2(&z->in, -15), Z_OK);
	assert_int_equal(deflateInit2(&z->out, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
	z->cap = 1 << 20;
	z->plain = malloc(z->cap);
	return z;
}

static void zclient_free(struct zclient *z)
{
	inflateEnd(&z->in);
	deflateEnd(&z->out);
	free(z->plain);
	free(z);
}

/* Deflate and send; flush: Z_SYNC_FLUSH (a whole command) or
 * Z_NO_FLUSH (more follows). */
static void zclient_send_flush(struct zclient *z, const void *data, size_t len, int flush)
{
	uint8_t out[16384];
	z->out.next_in = (Bytef *)data;
	z->out.avail_in = (uInt)len;
	do {
		z->out.next_out = out;
		z->out.avail_out = sizeof(out);
		int r = deflate(&z->out, flush);
		assert_true(r == Z_OK || r == Z_BUF_ERROR);
		size_t n = sizeof(out) - z->out.avail_out;
		if (n > 0)
			client_send(z->c, out, n);
	} while (z->out.avail_out == 0 || z->out.avail_in > 0);
}

static void zclient_send(struct zclient *z, const char *line)
{
	zclient_send_flush(z, line, strlen(line), Z_SYNC_FLUSH);
}

/* Inflate the bytes in the line client's buffer (received raw). */
static void zclient_inflate(struct zclient *z)
{
	z->in.next_in = (Bytef *)z->c->buf;
	z->in.avail_in = (uInt)z->c->len;
	while (z->in.avail_in > 0) {
		if (z->cap - z->len < 65536) {
			z->cap *= 2;
			z->plain = realloc(z->plain, z->cap);
		}
		z->in.next_out = (Bytef *)z->plain + z->len;
		z->in.avail_out = (uInt)(z->cap - z->len - 1);
		int r = inflate(&z->in, Z_SYNC_FLUSH);
		assert_true(r == Z_OK || r == Z_BUF_ERROR);
		z->len = z->cap - 1 - z->in.avail_out;
		z->plain[z->len] = '\0';
		if (r == Z_BUF_ERROR)
			break;
	}
	z->c->len = 0;
}

/* Like client_until, on the inflated stream. */
static char *zclient_until(struct zclient *z, const char *prefix)
{
	size_t plen = strlen(prefix);
	for (;;) {
		zclient_inflate(z);
		size_t pos = 0;
		while (pos < z->len) {
			if (pos + plen <= z->len && memcmp(z->plain + pos, prefix, plen) == 0) {
				char *eol = memmem(z->plain + pos, z->len - pos, "\r\n", 2);
				if (eol == NULL)
					break;
				size_t end = (size_t)(eol - z->plain) + 2;
				char *out = malloc(end + 1);
				memcpy(out, z->plain, end);
				out[end] = '\0';
				memmove(z->plain, z->plain + end, z->len - end);
				z->len -= end;
				return out;
			}
			char *nl = memchr(z->plain + pos, '\n', z->len - pos);
			if (nl == NULL)
				break;
			pos = (size_t)(nl - z->plain) + 1;
		}
		if (!client_fill(z->c))
			return NULL;
	}
}

static void zcheck(struct zclient *z, const char *tag, const char *command, const char *want)
{
	char line[512], prefix[64];
	snprintf(line, sizeof(line), "%s %s\r\n", tag, command);
	snprintf(prefix, sizeof(prefix), "%s ", tag);
	zclient_send(z, line);
	char *out = zclient_until(z, prefix);
	assert_non_null(out);
	assert_contains(out, want);
	free(out);
}

static void test_compress(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL);
	struct client *c = client_connect(f->e.port);
	char *out = client_until(c, "* OK");
	assert_contains(out, " COMPRESS=DEFLATE");
	free(out);
	client_tagged_check(c, "p1", "COMPRESS DEFLATE", "p1 BAD Not authenticated");
	client_tagged_check(c, "L1", "LOGIN \"" USER "\" \"" PASS "\"", "L1 OK");
	client_tagged_check(c, "p2", "COMPRESS FOO", "p2 BAD");
	client_tagged_check(c, "p3", "COMPRESS", "p3 BAD");
	check_exact(c, "c1", "COMPRESS DEFLATE", "c1 OK DEFLATE active\r\n");
	struct zclient *z = zclient_start(c);
	zcheck(z, "c2", "NOOP", "c2 OK");
	zcheck(z, "c3", "LIST \"\" *", "* LIST (\\HasNoChildren) \"/\" INBOX\r\nc3 OK");
	zcheck(z, "c4", "COMPRESS DEFLATE", "c4 NO [COMPRESSIONACTIVE]");
	/* a large APPEND through it ("+" comes compressed), and back */
	size_t big = 300 * 1024;
	char *msg = malloc(big);
	for (size_t i = 0; i < big; i++)
		msg[i] = (char)('a' + (i * 7 + i / 97) % 26);
	memcpy(msg, "Subject: zipped\r\n\r\n", 20);
	char line[128];
	snprintf(line, sizeof(line), "c5 APPEND INBOX {%zu}\r\n", big);
	zclient_send(z, line);
	free(zclient_until(z, "+ "));
	zclient_send_flush(z, msg, big, Z_NO_FLUSH);
	zclient_send(z, "\r\n");
	out = zclient_until(z, "c5 ");
	assert_contains(out, "c5 OK [APPENDUID 1700000000 4]");
	free(out);
	check_stored(f, "INBOX", 4, msg, big, 0);
	zcheck(z, "c6", "SELECT INBOX", "c6 OK");
	zclient_send(z, "c7 FETCH 4 BODY.PEEK[]\r\n");
	out = zclient_until(z, "c7 ");
	char head[64];
	snprintf(head, sizeof(head), "* 4 FETCH (BODY[] {%zu}\r\n", big);
	char *at = strstr(out, head);
	assert_non_null(at);
	assert_memory_equal(at + strlen(head), msg, big);
	free(out);
	zclient_send(z, "c8 LOGOUT\r\n");
	out = zclient_until(z, "c8 ");
	assert_contains(out, "* BYE");
	free(out);
	zclient_free(z);
	client_close(c);

	/* pipelined: the command after COMPRESS comes compressed in the
	 * same packet */
	c = client_login(f);
	z = zclient_start(c);
	uint8_t pipe[256];
	memcpy(pipe, "d1 COMPRESS DEFLATE\r\n", 21);
	z->out.next_in = (Bytef *)"d2 NOOP\r\n";
	z->out.avail_in = 9;
	z->out.next_out = pipe + 21;
	z->out.avail_out = sizeof(pipe) - 21;
	assert_int_equal(deflate(&z->out, Z_SYNC_FLUSH), Z_OK);
	client_send(c, pipe, sizeof(pipe) - z->out.avail_out);
	out = client_until(c, "d1 ");
	assert_string_equal(out, "d1 OK DEFLATE active\r\n");
	free(out);
	out = zclient_until(z, "d2 ");
	assert_contains(out, "d2 OK");
	free(out);
	/* not deflate at all: the connection closes */
	client_send(c, "\xff\xff\xff\xff garbage\r\n", 14);
	while (client_fill(c))
		c->len = 0;
	zclient_free(z);
	client_close(c);
	/* the server still serves */
	c = client_login(f);
	client_tagged_check(c, "e1", "NOOP", "e1 OK");
	client_close(c);
	free(msg);
	fixture_stop(f);
}

/* Peak resident memory of this process (the server runs in it) since
 * the last reset, in KiB. */
static long peak_rss_kib(int reset)
{
	if (reset) {
		FILE *fp = fopen("/proc/self/clear_refs", "w");
		if (fp != NULL) {
			fputs("5", fp);
			fclose(fp);
		}
	}
	FILE *fp = fopen("/proc/self/status", "r");
	char line[256];
	long kib = -1;
	while (fp != NULL && fgets(line, sizeof(line), fp) != NULL) {
		if (strncmp(line, "VmHWM:", 6) == 0)
			kib = strtol(line + 6, NULL, 10);
	}
	if (fp != NULL)
		fclose(fp);
	return kib;
}

/* A small compressed stream that inflates to 256 MiB: the server inflates
 * it max_input at a time as the parser drops the overlong line; memory
 * does not follow. */
static void test_compress_bomb(void **state)
{
	(void)state;
	struct fixture *f = fixture_start(NULL);
	struct client *c = client_login(f);
	client_tagged_check(c, "c1", "COMPRESS DEFLATE", "c1 OK");
	struct zclient *z = zclient_start(c);
	zcheck(z, "c2", "NOOP", "c2 OK");
	long before = peak_rss_kib(1);
	char *chunk = malloc(1 << 20);
	memset(chunk, 'x', 1 << 20);
	memcpy(chunk, "b1 NOOP ", 8);
	for (int i = 0; i < 256; i++) {
		zclient_send_flush(z, chunk, 1 << 20, Z_NO_FLUSH);
		memset(chunk, 'x', 8);
	}
	zclient_send(z, "\r\nb2 NOOP\r\n");
	char *out = zclient_until(z, "b2 ");
	assert_non_null(out);
	assert_contains(out, "b1 BAD Line too long");
	assert_contains(out, "b2 OK");
	free(out);
	long grown = peak_rss_kib(0) - before;
	print_message("compress bomb: %zu KiB compressed, 256 MiB inflated, peak RSS +%ld KiB\n",
		      (size_t)(z->out.total_out / 1024), grown);
	assert_true(z->out.total_out < 2 * 1024 * 1024);
	/* under ASan its quarantine keeps what was freed: no bound there */
	if (!TEST_ASAN)
		assert_true(grown < 32 * 1024);
	free(chunk);
	zclient_free(z);
	client_close(c);
	fixture_stop(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_delete),
		cmocka_unit_test(test_create_special_use),
		cmocka_unit_test(test_rename),
		cmocka_unit_test(test_subscribe_lsub),
		cmocka_unit_test(test_list_basic),
		cmocka_unit_test(test_list_extended),
		cmocka_unit_test(test_list_recursivematch),
		cmocka_unit_test(test_list_status),
		cmocka_unit_test(test_status),
		cmocka_unit_test(test_id_enable),
		cmocka_unit_test(test_utf7_names),
		cmocka_unit_test(test_imap4rev2),
		cmocka_unit_test(test_append),
		cmocka_unit_test(test_multiappend),
		cmocka_unit_test(test_appendlimit),
		cmocka_unit_test(test_append_budget),
		cmocka_unit_test(test_append_large),
		cmocka_unit_test(test_literal_minus),
		cmocka_unit_test(test_compress),
		cmocka_unit_test(test_compress_bomb),
		cmocka_unit_test(test_quota),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
