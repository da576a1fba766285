/* test-mailstore.c: the mailstore on a real LevelDB in a temp dir. */
#include "mailstore.h"

#include "buf.h"
#include "mail-error.h"
#include "router.h"
#include "test-util.h"
#include "util.h"
#include "xalloc.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <leveldb/c.h>

struct fixture {
	char *dir;
	mailstore *store;
	char *dir_b; /* a second store, for the snapshot tests (store_b) */
	mailstore *b;
};

static mailstore *open_store(const char *dir)
{
	mailstore *s = NULL;
	const char *error = NULL;
	assert_int_equal(mailstore_open(dir, NULL, &s, &error), MAIL_OK);
	assert_non_null(s);
	return s;
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof *f);
	f->dir = test_tmpdir_create("mailstore");
	f->store = open_store(f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	mailstore_close(&f->store);
	test_tmpdir_remove(&f->dir);
	mailstore_close(&f->b);
	test_tmpdir_remove(&f->dir_b);
	free(f);
	return 0;
}

static struct mailstore_deliver_result deliver_ok(mailstore *s, const char *user,
						  const char *did, const char *body)
{
	struct mailstore_deliver_result r;
	assert_int_equal(mailstore_deliver(s, user, "", did, body, strlen(body), 1000, NULL, 0,
					   &r),
			 MAIL_OK);
	return r;
}

static void test_deliver_select_fetch(void **state)
{
	struct fixture *f = *state;
	static const char body[] = "From: a@x\r\nSubject: hi\r\n\r\nbody \0 with nul\r\n";
	size_t body_len = sizeof body - 1;
	const char *flags[] = { "\\seen", "$Label1" };
	struct mailstore_deliver_result r;
	assert_int_equal(mailstore_deliver(f->store, "bob@example.com", "", "q1/0", body, body_len,
					   1700000000123, flags, 2, &r),
			 MAIL_OK);
	assert_int_equal(r.uid, 1);
	assert_true(r.uidvalidity > 0);
	assert_int_equal(r.duplicate, 0);

	struct mailstore_mailbox_info info;
	struct mailstore_message_info *msgs;
	size_t n;
	assert_int_equal(mailstore_select(f->store, "bob@example.com", "inbox", &info, &msgs, &n),
			 MAIL_OK);
	assert_string_equal(info.name, "INBOX");
	assert_int_equal(info.exists, 1);
	assert_int_equal(info.uidnext, 2);
	assert_int_equal(info.uidvalidity, r.uidvalidity);
	assert_int_equal(n, 1);
	assert_int_equal(msgs[0].uid, 1);
	assert_int_equal(msgs[0].size, body_len);
	assert_int_equal(msgs[0].internal_date, 1700000000123);
	assert_int_equal(msgs[0].n_flags, 2);
	assert_string_equal(msgs[0].flags[0], "$Label1");
	assert_string_equal(msgs[0].flags[1], "\\Seen");
	assert_int_equal(msgs[0].modseq, info.highest_modseq);
	mailstore_message_infos_free(msgs, n);
	mailstore_mailbox_info_free(&info);

	struct mailstore_message_info mi;
	void *got;
	size_t got_len;
	assert_int_equal(mailstore_fetch(f->store, "bob@example.com", "INBOX", 1, &mi, &got,
					 &got_len),
			 MAIL_OK);
	assert_int_equal(got_len, body_len);
	assert_memory_equal(got, body, body_len);
	assert_int_equal(mi.uid, 1);
	free(got);
	mailstore_message_info_free(&mi);

	assert_int_equal(mailstore_fetch(f->store, "bob@example.com", "INBOX", 2, &mi, &got,
					 &got_len),
			 MAIL_ERR_NOT_FOUND);
	assert_null(got);
}

static void test_uids_increase_and_survive_reopen(void **state)
{
	struct fixture *f = *state;
	uint32_t last = 0, uidvalidity = 0;
	for (int i = 0; i < 5; i++) {
		char did[32];
		snprintf(did, sizeof did, "q%d/0", i);
		struct mailstore_deliver_result r = deliver_ok(f->store, "u@x.org", did, "m\r\n");
		assert_true(r.uid > last);
		last = r.uid;
		if (uidvalidity == 0)
			uidvalidity = r.uidvalidity;
		assert_int_equal(r.uidvalidity, uidvalidity);
	}
	/* expunge the newest: its uid must never come back */
	uint32_t u = last;
	struct mailstore_message_info *msgs;
	size_t n;
	const char *del[] = { "\\Deleted" };
	assert_int_equal(mailstore_store_flags(f->store, "u@x.org", "", &u, 1, MAILSTORE_FLAGS_ADD,
					       del, 1, &msgs, &n),
			 MAIL_OK);
	mailstore_message_infos_free(msgs, n);
	uint32_t *gone;
	assert_int_equal(mailstore_expunge(f->store, "u@x.org", "", NULL, 0, &gone, &n), MAIL_OK);
	assert_int_equal(n, 1);
	assert_int_equal(gone[0], last);
	free(gone);

	mailstore_close(&f->store);
	f->store = open_store(f->dir);

	struct mailstore_mailbox_info info;
	assert_int_equal(mailstore_select(f->store, "u@x.org", "", &info, &msgs, &n), MAIL_OK);
	assert_int_equal(info.uidvalidity, uidvalidity);
	assert_int_equal(info.uidnext, last + 1);
	assert_int_equal(info.exists, 4);
	assert_int_equal(n, 4);
	for (size_t i = 1; i < n; i++)
		assert_true(msgs[i].uid > msgs[i - 1].uid);
	mailstore_message_infos_free(msgs, n);
	mailstore_mailbox_info_free(&info);

	struct mailstore_deliver_result r = deliver_ok(f->store, "u@x.org", "after", "x\r\n");
	assert_int_equal(r.uid, last + 1);
	assert_int_equal(r.uidvalidity, uidvalidity);
}

static void test_idempotent_deliver(void **state)
{
	struct fixture *f = *state;
	struct mailstore_deliver_result a = deliver_ok(f->store, "u@x.org", "Q42/1", "one\r\n");
	struct mailstore_deliver_result b = deliver_ok(f->store, "u@x.org", "Q42/1", "one\r\n");
	assert_int_equal(a.duplicate, 0);
	assert_int_equal(b.duplicate, 1);
	assert_int_equal(b.uid, a.uid);
	assert_int_equal(b.uidvalidity, a.uidvalidity);

	/* also after a reopen */
	mailstore_close(&f->store);
	f->store = open_store(f->dir);
	b = deliver_ok(f->store, "u@x.org", "Q42/1", "one\r\n");
	assert_int_equal(b.duplicate, 1);
	assert_int_equal(b.uid, a.uid);

	struct mailstore_mailbox_info info;
	struct mailstore_message_info *msgs;
	size_t n;
	assert_int_equal(mailstore_select(f->store, "u@x.org", "", &info, &msgs, &n), MAIL_OK);
	assert_int_equal(info.exists, 1);
	assert_int_equal(n, 1);
	assert_int_equal(info.uidnext, a.uid + 1);
	mailstore_message_infos_free(msgs, n);
	mailstore_mailbox_info_free(&info);

	/* the same delivery id for another user is another delivery */
	struct mailstore_deliver_result c = deliver_ok(f->store, "v@x.org", "Q42/1", "one\r\n");
	assert_int_equal(c.duplicate, 0);
}

static uint64_t highest_modseq(mailstore *s, const char *user)
{
	struct mailstore_mailbox_info info;
	struct mailstore_message_info *msgs;
	size_t n;
	assert_int_equal(mailstore_select(s, user, "", &info, &msgs, &n), MAIL_OK);
	uint64_t v = info.highest_modseq;
	mailstore_message_infos_free(msgs, n);
	mailstore_mailbox_info_free(&info);
	return v;
}

static void test_flags_and_modseq(void **state)
{
	struct fixture *f = *state;
	const char *u = "flags@x.org";
	deliver_ok(f->store, u, "d1", "1\r\n");
	deliver_ok(f->store, u, "d2", "2\r\n");
	uint64_t m0 = highest_modseq(f->store, u);
	assert_int_equal(m0, 2);

	uint32_t uids[] = { 2, 1, 2, 99 }; /* unsorted, duplicate, missing */
	const char *add[] = { "\\SEEN", "\\Recent", "$Work", "\\seen" };
	struct mailstore_message_info *msgs;
	size_t n;
	assert_int_equal(mailstore_store_flags(f->store, u, "", uids, 4, MAILSTORE_FLAGS_ADD, add,
					       4, &msgs, &n),
			 MAIL_OK);
	assert_int_equal(n, 2);
	assert_int_equal(msgs[0].uid, 1);
	assert_int_equal(msgs[1].uid, 2);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(msgs[i].n_flags, 2);
		assert_string_equal(msgs[i].flags[0], "$Work");
		assert_string_equal(msgs[i].flags[1], "\\Seen");
		assert_int_equal(msgs[i].modseq, m0 + 1);
	}
	mailstore_message_infos_free(msgs, n);
	assert_int_equal(highest_modseq(f->store, u), m0 + 1);

	/* adding what is there changes nothing: no modseq bump */
	const char *seen[] = { "\\Seen" };
	assert_int_equal(mailstore_store_flags(f->store, u, "", uids, 2, MAILSTORE_FLAGS_ADD, seen,
					       1, &msgs, &n),
			 MAIL_OK);
	assert_int_equal(msgs[0].modseq, m0 + 1);
	mailstore_message_infos_free(msgs, n);
	assert_int_equal(highest_modseq(f->store, u), m0 + 1);

	/* remove from uid 1 only: only it changes */
	uint32_t one = 1;
	assert_int_equal(mailstore_store_flags(f->store, u, "", &one, 1, MAILSTORE_FLAGS_REMOVE,
					       seen, 1, &msgs, &n),
			 MAIL_OK);
	assert_int_equal(n, 1);
	assert_int_equal(msgs[0].n_flags, 1);
	assert_string_equal(msgs[0].flags[0], "$Work");
	assert_int_equal(msgs[0].modseq, m0 + 2);
	mailstore_message_infos_free(msgs, n);

	/* set replaces */
	const char *set[] = { "\\Flagged", "\\Answered" };
	assert_int_equal(mailstore_store_flags(f->store, u, "", uids, 2, MAILSTORE_FLAGS_SET, set,
					       2, &msgs, &n),
			 MAIL_OK);
	assert_int_equal(n, 2);
	assert_int_equal(msgs[1].n_flags, 2);
	assert_string_equal(msgs[1].flags[0], "\\Answered");
	assert_string_equal(msgs[1].flags[1], "\\Flagged");
	mailstore_message_infos_free(msgs, n);
	uint64_t m3 = highest_modseq(f->store, u);
	assert_int_equal(m3, m0 + 3);

	/* bad flags */
	const char *bad[] = { "\\Bogus" };
	assert_int_equal(mailstore_store_flags(f->store, u, "", uids, 2, MAILSTORE_FLAGS_ADD, bad,
					       1, &msgs, &n),
			 MAIL_ERR_PARAMS);
	const char *space[] = { "two words" };
	assert_int_equal(mailstore_store_flags(f->store, u, "", uids, 2, MAILSTORE_FLAGS_ADD,
					       space, 1, &msgs, &n),
			 MAIL_ERR_PARAMS);
	/* unknown mailbox */
	assert_int_equal(mailstore_store_flags(f->store, u, "Nope", uids, 2, MAILSTORE_FLAGS_ADD,
					       seen, 1, &msgs, &n),
			 MAIL_ERR_NOT_FOUND);
	assert_int_equal(highest_modseq(f->store, u), m3);
}

static void test_expunge_only_deleted(void **state)
{
	struct fixture *f = *state;
	const char *u = "exp@x.org";
	for (int i = 0; i < 4; i++) {
		char did[16];
		snprintf(did, sizeof did, "e%d", i);
		deliver_ok(f->store, u, did, "m\r\n");
	}
	uint32_t del_uids[] = { 1, 2, 4 };
	const char *del[] = { "\\Deleted" };
	struct mailstore_message_info *msgs;
	size_t n;
	assert_int_equal(mailstore_store_flags(f->store, u, "", del_uids, 3, MAILSTORE_FLAGS_ADD,
					       del, 1, &msgs, &n),
			 MAIL_OK);
	mailstore_message_infos_free(msgs, n);

	/* UID EXPUNGE 2:3: only 2 has \Deleted */
	uint32_t want[] = { 3, 2 };
	uint32_t *gone;
	assert_int_equal(mailstore_expunge(f->store, u, "", want, 2, &gone, &n), MAIL_OK);
	assert_int_equal(n, 1);
	assert_int_equal(gone[0], 2);
	free(gone);

	uint64_t before = highest_modseq(f->store, u);
	/* EXPUNGE: the rest of \Deleted, ascending */
	assert_int_equal(mailstore_expunge(f->store, u, "", NULL, 0, &gone, &n), MAIL_OK);
	assert_int_equal(n, 2);
	assert_int_equal(gone[0], 1);
	assert_int_equal(gone[1], 4);
	free(gone);
	assert_true(highest_modseq(f->store, u) > before);

	/* nothing left to expunge */
	assert_int_equal(mailstore_expunge(f->store, u, "", NULL, 0, &gone, &n), MAIL_OK);
	assert_int_equal(n, 0);
	assert_null(gone);

	struct mailstore_mailbox_info info;
	assert_int_equal(mailstore_select(f->store, u, "", &info, &msgs, &n), MAIL_OK);
	assert_int_equal(info.exists, 1);
	assert_int_equal(n, 1);
	assert_int_equal(msgs[0].uid, 3);
	mailstore_message_infos_free(msgs, n);
	mailstore_mailbox_info_free(&info);

	struct mailstore_deliver_result r = deliver_ok(f->store, u, "e-new", "m\r\n");
	assert_int_equal(r.uid, 5);

	/* a retried delivery of an expunged message stays a duplicate */
	r = deliver_ok(f->store, u, "e0", "m\r\n");
	assert_int_equal(r.duplicate, 1);
	assert_int_equal(r.uid, 1);
}

static void test_users_isolated(void **state)
{
	struct fixture *f = *state;
	struct mailstore_mailbox_info info;
	assert_int_equal(mailstore_mailbox_create(f->store, "a@one.org", "Secret", 0, &info),
			 MAIL_OK);
	mailstore_mailbox_info_free(&info);
	struct mailstore_deliver_result r;
	assert_int_equal(mailstore_deliver(f->store, "a@one.org", "Secret", "s1", "hush\r\n", 6, 1,
					   NULL, 0, &r),
			 MAIL_OK);

	struct mailstore_message_info *msgs;
	size_t n;
	assert_int_equal(mailstore_select(f->store, "b@two.org", "Secret", &info, &msgs, &n),
			 MAIL_ERR_NOT_FOUND);
	struct mailstore_message_info mi;
	void *body;
	size_t len;
	assert_int_equal(mailstore_fetch(f->store, "b@two.org", "Secret", r.uid, &mi, &body, &len),
			 MAIL_ERR_NOT_FOUND);
	assert_int_equal(mailstore_fetch(f->store, "b@two.org", "INBOX", r.uid, &mi, &body, &len),
			 MAIL_ERR_NOT_FOUND);
	/* a user whose name is a prefix of another's sees nothing either */
	assert_int_equal(mailstore_select(f->store, "a@one.or", "Secret", &info, &msgs, &n),
			 MAIL_ERR_NOT_FOUND);

	struct mailstore_mailbox_info *boxes;
	/* b: INBOX and the special-use mailboxes every new user gets */
	assert_int_equal(mailstore_list(f->store, "b@two.org", &boxes, &n), MAIL_OK);
	assert_int_equal(n, 6);
	assert_string_equal(boxes[2].name, "INBOX");
	assert_int_equal(boxes[2].exists, 0);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(boxes[i].exists, 0);
	mailstore_mailbox_infos_free(boxes, n);

	assert_int_equal(mailstore_list(f->store, "a@one.org", &boxes, &n), MAIL_OK);
	assert_int_equal(n, 7);
	assert_string_equal(boxes[2].name, "INBOX");
	assert_string_equal(boxes[4].name, "Secret");
	assert_int_equal(boxes[4].exists, 1);
	mailstore_mailbox_infos_free(boxes, n);

	uint32_t *gone;
	assert_int_equal(mailstore_expunge(f->store, "b@two.org", "Secret", NULL, 0, &gone, &n),
			 MAIL_ERR_NOT_FOUND);
	assert_int_equal(mailstore_mailbox_create(f->store, "a@one.org", "Secret", 0, &info),
			 MAIL_ERR_EXISTS);
}

static void test_limits(void **state)
{
	struct fixture *f = *state;
	mailstore_close(&f->store);
	struct mailstore_limits lim;
	mailstore_limits_default(&lim);
	assert_int_equal(lim.max_message_size, 64u * 1024 * 1024);
	lim.max_message_size = 1000;
	lim.max_flags = 3;
	const char *error;
	assert_int_equal(mailstore_open(f->dir, &lim, &f->store, &error), MAIL_OK);

	struct mailstore_deliver_result r;
	char *big = xcalloc(1, 1001);
	memset(big, 'a', 1000);
	assert_int_equal(mailstore_deliver(f->store, "u@x.org", "", "b1", big, 1001, 0, NULL, 0,
					   &r),
			 MAIL_ERR_TOO_BIG);
	assert_int_equal(mailstore_deliver(f->store, "u@x.org", "", "b2", big, 1000, 0, NULL, 0,
					   &r),
			 MAIL_OK);
	free(big);

	const char *four[] = { "a", "b", "c", "d" };
	assert_int_equal(mailstore_deliver(f->store, "u@x.org", "", "f1", "x", 1, 0, four, 4, &r),
			 MAIL_ERR_LIMIT);
	assert_int_equal(mailstore_deliver(f->store, "u@x.org", "", "f2", "x", 1, 0, four, 3, &r),
			 MAIL_OK);
	/* adding a fourth flag to a message with three */
	struct mailstore_message_info *msgs;
	size_t n;
	assert_int_equal(mailstore_store_flags(f->store, "u@x.org", "", &r.uid, 1,
					       MAILSTORE_FLAGS_ADD, four + 3, 1, &msgs, &n),
			 MAIL_ERR_LIMIT);
	char longflag[200];
	memset(longflag, 'k', sizeof longflag - 1);
	longflag[sizeof longflag - 1] = '\0';
	const char *lf[] = { longflag };
	assert_int_equal(mailstore_deliver(f->store, "u@x.org", "", "f3", "x", 1, 0, lf, 1, &r),
			 MAIL_ERR_LIMIT);

	char longname[300];
	memset(longname, 'n', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	const char *bad_names[] = { longname, "a*b", "x%", "/lead", "trail/", "a//b", "tab\tx" };
	struct mailstore_mailbox_info info;
	for (size_t i = 0; i < sizeof bad_names / sizeof *bad_names; i++) {
		assert_int_equal(mailstore_deliver(f->store, "u@x.org", bad_names[i], "n", "x", 1,
						   0, NULL, 0, &r),
				 MAIL_ERR_PARAMS);
		assert_int_equal(mailstore_mailbox_create(f->store, "u@x.org", bad_names[i], 0,
							  &info),
				 MAIL_ERR_PARAMS);
	}
	assert_int_equal(mailstore_deliver(f->store, "", "", "n", "x", 1, 0, NULL, 0, &r),
			 MAIL_ERR_PARAMS);
	assert_int_equal(mailstore_deliver(f->store, "with space@x", "", "n", "x", 1, 0, NULL, 0,
					   &r),
			 MAIL_ERR_PARAMS);
	/* nothing of the refused deliveries was stored */
	assert_int_equal(highest_modseq(f->store, "u@x.org"), 2);
}

static void test_unknown_mailbox(void **state)
{
	struct fixture *f = *state;
	struct mailstore_mailbox_info info;
	struct mailstore_message_info *msgs;
	size_t n;
	assert_int_equal(mailstore_select(f->store, "u@x.org", "Nowhere", &info, &msgs, &n),
			 MAIL_ERR_NOT_FOUND);
	struct mailstore_deliver_result r;
	assert_int_equal(mailstore_deliver(f->store, "u@x.org", "Nowhere", "a", "x", 1, 0, NULL, 0,
					   &r),
			 MAIL_ERR_NOT_FOUND);
	/* INBOX exists for everyone, implicitly */
	assert_int_equal(mailstore_select(f->store, "u@x.org", "", &info, &msgs, &n), MAIL_OK);
	assert_int_equal(n, 0);
	assert_int_equal(info.uidnext, 1);
	assert_true(info.uidvalidity > 0);
	mailstore_mailbox_info_free(&info);
}

static void test_uidvalidity_unique(void **state)
{
	struct fixture *f = *state;
	struct mailstore_mailbox_info a, b;
	assert_int_equal(mailstore_mailbox_create(f->store, "u@x.org", "A", 0, &a), MAIL_OK);
	assert_int_equal(mailstore_mailbox_create(f->store, "u@x.org", "B", 0, &b), MAIL_OK);
	assert_true(b.uidvalidity > a.uidvalidity);
	mailstore_mailbox_info_free(&a);
	mailstore_mailbox_info_free(&b);
}

/* Replicated apply: two stores (two replicas, one of which holds another
 * mailbox already) applying the same entries compute the same UIDVALIDITY
 * and UIDs from the primary's clock, and record the applied index in the
 * write itself; reads never create INBOX through mailbox_exists. */
static void test_apply_deterministic(void **state)
{
	struct fixture *f = *state;
	char *dir2 = test_tmpdir_create("mailstore2");
	mailstore *other = open_store(dir2);
	struct mailstore_mailbox_info x;
	/* The other replica's counter is ahead (a mailbox of another partition
	 * created "later"): it must not change the replicated UIDVALIDITY. */
	assert_int_equal(mailstore_mailbox_create(other, "z@x.org", "Z", 0, &x), MAIL_OK);
	mailstore_mailbox_info_free(&x);
	mailstore *stores[2] = { f->store, other };
	struct mailstore_deliver_result r[2];
	int exists = 1;
	for (int i = 0; i < 2; i++) {
		uint64_t idx;
		assert_int_equal(mailstore_applied_index(stores[i], 7, &idx), MAIL_OK);
		assert_int_equal(idx, 0);
		assert_int_equal(mailstore_mailbox_exists(stores[i], "a@x.org", "", &exists),
				 MAIL_OK);
		assert_false(exists);
		struct mailstore_apply a = { 7, 41, 1000000000000 };
		mailstore_apply_begin(stores[i], &a);
		assert_int_equal(mailstore_deliver(stores[i], "a@x.org", "", "d1", "hi", 2, 0, NULL,
						   0, &r[i]), MAIL_OK);
		mailstore_apply_begin(stores[i], NULL);
		assert_int_equal(mailstore_applied_index(stores[i], 7, &idx), MAIL_OK);
		assert_int_equal(idx, 41);
		assert_int_equal(mailstore_applied_index(stores[i], 8, &idx), MAIL_OK);
		assert_int_equal(idx, 0);
		assert_int_equal(mailstore_mailbox_exists(stores[i], "a@x.org", "INBOX", &exists),
				 MAIL_OK);
		assert_true(exists);
		struct mailstore_message_info info;
		void *body;
		size_t len;
		assert_int_equal(mailstore_fetch(stores[i], "a@x.org", "", r[i].uid, &info, &body,
						 &len), MAIL_OK);
		assert_int_equal(info.internal_date, 1000000000000);
		mailstore_message_info_free(&info);
		free(body);
	}
	assert_int_equal(r[0].uidvalidity, 1000000000);
	assert_int_equal(r[1].uidvalidity, 1000000000);
	assert_int_equal(r[0].uid, r[1].uid);
	mailstore_close(&other);
	test_tmpdir_remove(&dir2);
}

static void test_second_open_fails(void **state)
{
	struct fixture *f = *state;
	mailstore *other = NULL;
	const char *error = NULL;
	assert_int_equal(mailstore_open(f->dir, NULL, &other, &error), MAIL_ERR_INTERNAL);
	assert_null(other);
	assert_non_null(error);
}

/* ---- partition snapshots ------------------------------------------------ */

#define SNAP_PARTS 8

/* The fixture's second, empty store (teardown removes it). */
static mailstore *store_b(struct fixture *f)
{
	f->dir_b = test_tmpdir_create("mailstore-b");
	f->b = open_store(f->dir_b);
	return f->b;
}

/* The first users named "<tag><i>@snap.test" in (in_p != 0) or out of
 * partition p, as the router places them. Caller frees the strings. */
static void users_pick(const char *tag, uint32_t p, uint32_t n_parts, int in_p, char **users,
		       size_t n)
{
	size_t got = 0;
	for (int i = 0; got < n; i++) {
		char *u = xasprintf("%s%d@snap.test", tag, i);
		int in = router_partition_of(u, strlen(u), n_parts) == p;
		if (in == (in_p != 0))
			users[got++] = u;
		else
			free(u);
	}
}

static void users_free(char **users, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(users[i]);
}

/* Pairs in one chunk, walking the documented format; fails the test on a
 * malformed chunk. */
static size_t chunk_pairs(const uint8_t *c, size_t len)
{
	assert_true(len >= 1);
	assert_int_equal(c[0], MAILSTORE_SNAPSHOT_VERSION);
	size_t off = 1, n = 0;
	while (off < len) {
		for (int f = 0; f < 2; f++) {
			assert_true(len - off >= 4);
			size_t fl = ((size_t)c[off] << 24) | ((size_t)c[off + 1] << 16) |
				    ((size_t)c[off + 2] << 8) | c[off + 3];
			off += 4;
			assert_true(fl <= len - off);
			off += fl;
		}
		n++;
	}
	return n;
}

/* Export partition p of s: every chunk (caller frees with chunks_free) and
 * the applied index. Checks the max_bytes rule on each chunk. */
struct chunks {
	buf *c;
	size_t n;
	uint64_t applied;
};

static void chunks_free(struct chunks *ch)
{
	for (size_t i = 0; i < ch->n; i++)
		buf_deinit(&ch->c[i]);
	free(ch->c);
	ch->c = NULL;
	ch->n = 0;
}

static void snap_export(mailstore *s, uint32_t p, uint32_t n_parts, size_t max_bytes,
			struct chunks *ch)
{
	mailstore_snapshot *snap;
	memset(ch, 0, sizeof *ch);
	assert_int_equal(mailstore_snapshot_open(s, p, n_parts, &snap, &ch->applied), MAIL_OK);
	for (;;) {
		buf b;
		buf_init(&b);
		int ret = mailstore_snapshot_next(snap, &b, max_bytes);
		assert_true(ret == 0 || ret == 1);
		if (ret == 0) {
			assert_int_equal(b.len, 0);
			buf_deinit(&b);
			break;
		}
		size_t pairs = chunk_pairs(b.data, b.len);
		assert_true(pairs >= 1);
		/* at most max_bytes, unless one pair alone is bigger */
		assert_true(b.len <= max_bytes || pairs == 1);
		ch->c = xrealloc(ch->c, (ch->n + 1) * sizeof *ch->c);
		ch->c[ch->n++] = b;
	}
	mailstore_snapshot_close(&snap);
	assert_null(snap);
}

static void snap_install(mailstore *s, uint32_t p, uint32_t n_parts, const struct chunks *ch)
{
	assert_int_equal(mailstore_snapshot_install_begin(s, p, n_parts), MAIL_OK);
	for (size_t i = 0; i < ch->n; i++)
		assert_int_equal(mailstore_snapshot_install_chunk(s, p, n_parts, ch->c[i].data,
								  ch->c[i].len),
				 MAIL_OK);
	assert_int_equal(mailstore_snapshot_install_end(s, p, ch->applied), MAIL_OK);
}

/* Every partition of s, exported into one buffer: equal dumps mean equal
 * stores (counters aside). */
static void store_dump(mailstore *s, buf *out)
{
	for (uint32_t p = 0; p < SNAP_PARTS; p++) {
		struct chunks ch;
		snap_export(s, p, SNAP_PARTS, 1 << 20, &ch);
		buf_printf(out, "[%u %llu]", (unsigned)p, (unsigned long long)ch.applied);
		for (size_t i = 0; i < ch.n; i++)
			buf_append(out, ch.c[i].data, ch.c[i].len);
		chunks_free(&ch);
	}
}

static void deliver_to(mailstore *s, const char *user, const char *box, const char *did,
		       const char *body, const char *const *flags, size_t n_flags)
{
	struct mailstore_deliver_result r;
	assert_int_equal(mailstore_deliver(s, user, box, did, body, strlen(body), 1700000000000,
					   flags, n_flags, &r),
			 MAIL_OK);
	assert_int_equal(r.duplicate, 0);
}

static void create_box(mailstore *s, const char *user, const char *box)
{
	struct mailstore_mailbox_info info;
	assert_int_equal(mailstore_mailbox_create(s, user, box, 0, &info), MAIL_OK);
	mailstore_mailbox_info_free(&info);
}

static int box_exists(mailstore *s, const char *user, const char *box)
{
	int exists = -1;
	assert_int_equal(mailstore_mailbox_exists(s, user, box, &exists), MAIL_OK);
	return exists;
}

static uint64_t applied_of(mailstore *s, uint32_t p)
{
	uint64_t idx = 99;
	assert_int_equal(mailstore_applied_index(s, p, &idx), MAIL_OK);
	return idx;
}

/* One replicated-style write, so that partition p gets applied index idx. */
static void deliver_applied(mailstore *s, uint32_t p, uint64_t idx, const char *user,
			    const char *did)
{
	struct mailstore_apply a = { p, idx, 1700000001000 };
	mailstore_apply_begin(s, &a);
	deliver_to(s, user, "", did, "applied\r\n", NULL, 0);
	mailstore_apply_begin(s, NULL);
}

/* Deferred apply syncs: what is applied is visible at once, the barrier
 * (with or without anything to sync) succeeds, and a reopen keeps the
 * applies and their index; writes outside an apply are unaffected. */
static void test_apply_barrier(void **state)
{
	struct fixture *f = *state;
	mailstore_apply_defer_sync(f->store, 1);
	assert_int_equal(mailstore_apply_barrier(f->store), MAIL_OK);   /* nothing yet */
	deliver_applied(f->store, 3, 7, "a@example.test", "d-1");
	deliver_applied(f->store, 3, 8, "a@example.test", "d-2");
	struct mailstore_mailbox_info info;
	assert_int_equal(mailstore_status(f->store, "a@example.test", "INBOX", &info), MAIL_OK);
	assert_int_equal(info.exists, 2);
	mailstore_mailbox_info_free(&info);
	assert_int_equal(applied_of(f->store, 3), 8);
	assert_int_equal(mailstore_apply_barrier(f->store), MAIL_OK);
	assert_int_equal(mailstore_apply_barrier(f->store), MAIL_OK);
	deliver_to(f->store, "a@example.test", "", "d-3", "direct\r\n", NULL, 0);
	deliver_applied(f->store, 3, 9, "a@example.test", "d-4");
	mailstore_close(&f->store);   /* closing runs the barrier for the last one */
	f->store = open_store(f->dir);
	assert_int_equal(applied_of(f->store, 3), 9);
	assert_int_equal(mailstore_status(f->store, "a@example.test", "INBOX", &info), MAIL_OK);
	assert_int_equal(info.exists, 4);
	mailstore_mailbox_info_free(&info);
}

/* user reads back the same on a and b: mailboxes, counters, uids, flags,
 * modseqs, dates, bodies. */
static void assert_user_same(mailstore *a, mailstore *b, const char *user)
{
	struct mailstore_mailbox_info *ba, *bb;
	size_t na, nb;
	assert_int_equal(mailstore_list(a, user, &ba, &na), MAIL_OK);
	assert_int_equal(mailstore_list(b, user, &bb, &nb), MAIL_OK);
	assert_int_equal(na, nb);
	for (size_t i = 0; i < na; i++) {
		assert_string_equal(ba[i].name, bb[i].name);
		assert_int_equal(ba[i].uidvalidity, bb[i].uidvalidity);
		assert_int_equal(ba[i].uidnext, bb[i].uidnext);
		assert_int_equal(ba[i].exists, bb[i].exists);
		assert_int_equal(ba[i].highest_modseq, bb[i].highest_modseq);
		struct mailstore_mailbox_info ia, ib;
		struct mailstore_message_info *ma, *mb;
		size_t nma, nmb;
		assert_int_equal(mailstore_select(a, user, ba[i].name, &ia, &ma, &nma), MAIL_OK);
		assert_int_equal(mailstore_select(b, user, bb[i].name, &ib, &mb, &nmb), MAIL_OK);
		assert_int_equal(nma, nmb);
		for (size_t j = 0; j < nma; j++) {
			assert_int_equal(ma[j].uid, mb[j].uid);
			assert_int_equal(ma[j].size, mb[j].size);
			assert_int_equal(ma[j].internal_date, mb[j].internal_date);
			assert_int_equal(ma[j].modseq, mb[j].modseq);
			assert_int_equal(ma[j].n_flags, mb[j].n_flags);
			for (size_t k = 0; k < ma[j].n_flags; k++)
				assert_string_equal(ma[j].flags[k], mb[j].flags[k]);
			struct mailstore_message_info fa, fb;
			void *body_a, *body_b;
			size_t la, lb;
			assert_int_equal(mailstore_fetch(a, user, ba[i].name, ma[j].uid, &fa,
							 &body_a, &la), MAIL_OK);
			assert_int_equal(mailstore_fetch(b, user, bb[i].name, mb[j].uid, &fb,
							 &body_b, &lb), MAIL_OK);
			assert_int_equal(la, lb);
			assert_memory_equal(body_a, body_b, la);
			free(body_a);
			free(body_b);
			mailstore_message_info_free(&fa);
			mailstore_message_info_free(&fb);
		}
		mailstore_message_infos_free(ma, nma);
		mailstore_message_infos_free(mb, nmb);
		mailstore_mailbox_info_free(&ia);
		mailstore_mailbox_info_free(&ib);
	}
	mailstore_mailbox_infos_free(ba, na);
	mailstore_mailbox_infos_free(bb, nb);
}

/* A long body (over the small max_bytes used below). */
static char *long_body(const char *tag)
{
	buf b;
	buf_init(&b);
	for (int i = 0; i < 20; i++)
		buf_printf(&b, "%s line %d\r\n", tag, i);
	buf_append(&b, "", 1);
	size_t len;
	return (char *)buf_steal(&b, &len);
}

/* Export partition P of A (many small chunks) and install it into B, which
 * holds other partitions' users and older data of P. */
static void test_snapshot_transfer(void **state)
{
	struct fixture *f = *state;
	mailstore *a = f->store;
	mailstore *b = store_b(f);
	const uint32_t P = 3;
	char *in[4], *out[2];
	users_pick("in", P, SNAP_PARTS, 1, in, 4);
	users_pick("out", P, SNAP_PARTS, 0, out, 2);
	uint32_t Q = router_partition_of(out[0], strlen(out[0]), SNAP_PARTS);

	/* A: in[0] has three mailboxes, flags, an expunged message */
	const char *seen[] = { "\\Seen", "$Work" };
	const char *del[] = { "\\Deleted" };
	char *big = long_body("big");
	deliver_to(a, in[0], "", "in0-d1", "one\r\n", seen, 2);
	deliver_to(a, in[0], "", "in0-d2", big, del, 1);
	deliver_to(a, in[0], "", "in0-d3", "three\r\n", NULL, 0);
	uint32_t *gone;
	size_t n;
	assert_int_equal(mailstore_expunge(a, in[0], "", NULL, 0, &gone, &n), MAIL_OK);
	assert_int_equal(n, 1);
	free(gone);
	create_box(a, in[0], "Kept");
	deliver_to(a, in[0], "Kept", "in0-a1", big, NULL, 0);
	deliver_to(a, in[0], "Kept", "in0-a2", "a2\r\n", seen + 1, 1);
	create_box(a, in[0], "Work/Sub");
	deliver_to(a, in[0], "Work/Sub", "", "no delivery id\r\n", NULL, 0);
	uint32_t one = 1;
	struct mailstore_message_info *msgs;
	assert_int_equal(mailstore_store_flags(a, in[0], "Kept", &one, 1, MAILSTORE_FLAGS_ADD,
					       seen, 1, &msgs, &n),
			 MAIL_OK);
	mailstore_message_infos_free(msgs, n);
	/* in[1]: through the replicated path, which gives P applied index 77 */
	deliver_to(a, in[1], "", "in1-d1", big, seen + 1, 1);
	deliver_applied(a, P, 77, in[1], "in1-d2");
	/* in[2]: an empty mailbox besides INBOX */
	create_box(a, in[2], "Empty");
	/* a new user's first mailbox brings INBOX (and the special-use
	 * mailboxes) along */
	assert_int_equal(box_exists(a, in[2], ""), 1);
	/* other partitions on A are not exported */
	deliver_to(a, out[0], "", "out0-a", "A's copy\r\n", NULL, 0);
	deliver_to(a, out[1], "", "out1-a", "A's copy\r\n", NULL, 0);

	/* B: other partitions' users, older data of P, a user of P only here */
	deliver_to(b, out[0], "", "out0-b", "B's own\r\n", NULL, 0);
	deliver_applied(b, Q, 9, out[0], "out0-b2");
	deliver_to(b, in[0], "", "in0-old", "old\r\n", NULL, 0);
	create_box(b, in[0], "OldBox");
	deliver_to(b, in[3], "", "in3-b", "only on B\r\n", NULL, 0);
	deliver_applied(b, P, 5, in[3], "in3-b2");
	struct mailstore_mailbox_info out0_before;
	struct mailstore_message_info *out0_msgs;
	size_t out0_n;
	assert_int_equal(mailstore_select(b, out[0], "", &out0_before, &out0_msgs, &out0_n),
			 MAIL_OK);
	assert_int_equal(out0_n, 2);

	struct chunks ch;
	snap_export(a, P, SNAP_PARTS, 64, &ch);
	assert_int_equal(ch.applied, 77);
	assert_true(ch.n > 10);
	snap_install(b, P, SNAP_PARTS, &ch);
	chunks_free(&ch);

	for (int i = 0; i < 3; i++)
		assert_user_same(a, b, in[i]);
	assert_int_equal(applied_of(b, P), 77);
	assert_int_equal(applied_of(b, Q), 9);
	/* what B had of P alone is gone */
	assert_int_equal(box_exists(b, in[0], "OldBox"), 0);
	assert_int_equal(box_exists(b, in[3], ""), 0);
	/* A's other partitions did not come along */
	assert_int_equal(box_exists(b, out[1], ""), 0);
	/* B's own other partition is untouched */
	struct mailstore_mailbox_info info;
	assert_int_equal(mailstore_select(b, out[0], "", &info, &msgs, &n), MAIL_OK);
	assert_int_equal(n, out0_n);
	assert_int_equal(info.uidvalidity, out0_before.uidvalidity);
	assert_int_equal(info.uidnext, out0_before.uidnext);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(msgs[i].uid, out0_msgs[i].uid);
	void *body;
	size_t len;
	struct mailstore_message_info mi;
	assert_int_equal(mailstore_fetch(b, out[0], "", msgs[0].uid, &mi, &body, &len), MAIL_OK);
	assert_memory_equal(body, "B's own\r\n", len);
	free(body);
	mailstore_message_info_free(&mi);
	mailstore_message_infos_free(msgs, n);
	mailstore_mailbox_info_free(&info);
	mailstore_message_infos_free(out0_msgs, out0_n);
	mailstore_mailbox_info_free(&out0_before);

	/* delivery records came along: retries are duplicates, also of the
	 * expunged message, with the original uid */
	struct mailstore_deliver_result r;
	const char *dids[] = { "in0-d1", "in0-d2", "in0-a2" };
	const uint32_t uids[] = { 1, 2, 2 };
	for (int i = 0; i < 3; i++) {
		assert_int_equal(mailstore_deliver(b, in[0], "", dids[i], "x", 1, 0, NULL, 0, &r),
				 MAIL_OK);
		assert_int_equal(r.duplicate, 1);
		assert_int_equal(r.uid, uids[i]);
	}
	/* and B's old delivery record of P is gone with the rest */
	assert_int_equal(mailstore_deliver(b, in[0], "", "in0-old", "x", 1, 0, NULL, 0, &r),
			 MAIL_OK);
	assert_int_equal(r.duplicate, 0);
	assert_int_equal(r.uid, 4);

	free(big);
	users_free(in, 4);
	users_free(out, 2);
}

/* After an install, new mailboxes on B never take an imported mailbox id
 * (whose messages they would then show) or UIDVALIDITY. */
static void test_snapshot_counters(void **state)
{
	struct fixture *f = *state;
	mailstore *a = f->store;
	mailstore *b = store_b(f);
	const uint32_t P = 5;
	char *in[1], *out[1];
	users_pick("cnt", P, SNAP_PARTS, 1, in, 1);
	users_pick("cnt", P, SNAP_PARTS, 0, out, 1);

	/* A: ten mailboxes of in[0] (UIDVALIDITYs rising by one), one
	 * message each (the first brings INBOX and its special-use mailboxes) */
	uint32_t max_uidvalidity = 0;
	for (int i = 1; i <= 10; i++) {
		char name[16], did[16];
		snprintf(name, sizeof name, "M%d", i);
		snprintf(did, sizeof did, "m%d", i);
		struct mailstore_mailbox_info info;
		assert_int_equal(mailstore_mailbox_create(a, in[0], name, 0, &info), MAIL_OK);
		if (info.uidvalidity > max_uidvalidity)
			max_uidvalidity = info.uidvalidity;
		mailstore_mailbox_info_free(&info);
		deliver_to(a, in[0], name, did, name, NULL, 0);
	}
	/* B: one mailbox of its own, so its counters are far behind A's */
	create_box(b, out[0], "Mine");

	struct chunks ch;
	snap_export(a, P, SNAP_PARTS, 200, &ch);
	snap_install(b, P, SNAP_PARTS, &ch);
	chunks_free(&ch);

	/* new mailbox of the imported user: empty, fresh UIDVALIDITY */
	struct mailstore_mailbox_info info;
	assert_int_equal(mailstore_mailbox_create(b, in[0], "New", 0, &info), MAIL_OK);
	assert_int_equal(info.exists, 0);
	assert_true(info.uidvalidity > max_uidvalidity);
	mailstore_mailbox_info_free(&info);
	struct mailstore_message_info *msgs;
	size_t n;
	assert_int_equal(mailstore_select(b, in[0], "New", &info, &msgs, &n), MAIL_OK);
	assert_int_equal(n, 0);
	assert_int_equal(info.uidnext, 1);
	mailstore_mailbox_info_free(&info);
	deliver_to(b, in[0], "New", "new1", "new\r\n", NULL, 0);
	/* INBOX came with A's first mailbox: imported, its UIDVALIDITY kept */
	deliver_to(b, in[0], "", "inbox1", "inbox\r\n", NULL, 0);
	assert_int_equal(mailstore_select(b, in[0], "", &info, &msgs, &n), MAIL_OK);
	assert_int_equal(n, 1);
	assert_true(info.uidvalidity <= max_uidvalidity);
	mailstore_message_infos_free(msgs, n);
	mailstore_mailbox_info_free(&info);
	/* the imported mailboxes still hold exactly their own message */
	for (int i = 1; i <= 10; i++) {
		char name[16];
		snprintf(name, sizeof name, "M%d", i);
		assert_int_equal(mailstore_select(b, in[0], name, &info, &msgs, &n), MAIL_OK);
		assert_int_equal(n, 1);
		void *body;
		size_t len;
		struct mailstore_message_info mi;
		assert_int_equal(mailstore_fetch(b, in[0], name, msgs[0].uid, &mi, &body, &len),
				 MAIL_OK);
		assert_int_equal(len, strlen(name));
		assert_memory_equal(body, name, len);
		free(body);
		mailstore_message_info_free(&mi);
		mailstore_message_infos_free(msgs, n);
		mailstore_mailbox_info_free(&info);
	}
	/* the counters are per node: other users' new mailboxes too */
	assert_int_equal(mailstore_mailbox_create(b, out[0], "Later", 0, &info), MAIL_OK);
	assert_true(info.uidvalidity > max_uidvalidity);
	mailstore_mailbox_info_free(&info);

	users_free(in, 1);
	users_free(out, 1);
}

/* Writes made after open are not in the export. */
static void test_snapshot_consistent_view(void **state)
{
	struct fixture *f = *state;
	mailstore *a = f->store;
	mailstore *b = store_b(f);
	const uint32_t P = 1;
	char *in[2];
	users_pick("view", P, SNAP_PARTS, 1, in, 2);
	deliver_to(a, in[0], "", "v1", "first\r\n", NULL, 0);
	deliver_applied(a, P, 10, in[0], "v2");

	mailstore_snapshot *snap;
	uint64_t applied;
	assert_int_equal(mailstore_snapshot_open(a, P, SNAP_PARTS, &snap, &applied), MAIL_OK);
	assert_int_equal(applied, 10);
	/* after open: new messages, flags, an expunge, a mailbox, a user, a
	 * newer applied index */
	deliver_applied(a, P, 11, in[0], "v3");
	const char *del[] = { "\\Deleted" };
	uint32_t one = 1;
	struct mailstore_message_info *msgs;
	size_t n;
	assert_int_equal(mailstore_store_flags(a, in[0], "", &one, 1, MAILSTORE_FLAGS_ADD, del, 1,
					       &msgs, &n),
			 MAIL_OK);
	mailstore_message_infos_free(msgs, n);
	uint32_t *gone;
	assert_int_equal(mailstore_expunge(a, in[0], "", NULL, 0, &gone, &n), MAIL_OK);
	assert_int_equal(n, 1);
	free(gone);
	create_box(a, in[0], "Later");
	deliver_to(a, in[1], "", "w1", "later user\r\n", NULL, 0);

	struct chunks ch = { 0 };
	ch.applied = applied;
	for (;;) {
		buf c;
		buf_init(&c);
		int ret = mailstore_snapshot_next(snap, &c, 100);
		if (ret == 0) {
			buf_deinit(&c);
			break;
		}
		assert_int_equal(ret, 1);
		ch.c = xrealloc(ch.c, (ch.n + 1) * sizeof *ch.c);
		ch.c[ch.n++] = c;
	}
	mailstore_snapshot_close(&snap);
	snap_install(b, P, SNAP_PARTS, &ch);
	chunks_free(&ch);

	struct mailstore_mailbox_info info;
	assert_int_equal(mailstore_select(b, in[0], "", &info, &msgs, &n), MAIL_OK);
	assert_int_equal(n, 2);
	assert_int_equal(msgs[0].uid, 1);
	assert_int_equal(msgs[0].n_flags, 0);
	assert_int_equal(msgs[1].uid, 2);
	assert_int_equal(info.uidnext, 3);
	mailstore_message_infos_free(msgs, n);
	mailstore_mailbox_info_free(&info);
	assert_int_equal(box_exists(b, in[0], "Later"), 0);
	assert_int_equal(box_exists(b, in[1], ""), 0);
	assert_int_equal(applied_of(b, P), 10);

	users_free(in, 2);
}

static void put_be32(buf *b, uint32_t v)
{
	uint8_t d[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
	buf_append(b, d, sizeof d);
}

static void put_be64(buf *b, uint64_t v)
{
	put_be32(b, (uint32_t)(v >> 32));
	put_be32(b, (uint32_t)v);
}

/* One pair in chunk format: key 01 kind <user> 00 <tail>, then value. */
static void pair_append(buf *c, char kind, const char *user, const void *tail, size_t tail_len,
			const void *val, size_t val_len)
{
	uint8_t head[2] = { MAILSTORE_KEY_VERSION, (uint8_t)kind };
	size_t ulen = strlen(user) + 1;
	put_be32(c, (uint32_t)(2 + ulen + tail_len));
	buf_append(c, head, 2);
	buf_append(c, user, ulen);
	buf_append(c, tail, tail_len);
	put_be32(c, (uint32_t)val_len);
	buf_append(c, val, val_len);
}

/* Bad chunks are refused with PARAMS and nothing of them is written. */
static void test_snapshot_bad_chunks(void **state)
{
	struct fixture *f = *state;
	mailstore *a = f->store;
	mailstore *b = store_b(f);
	const uint32_t P = 2;
	char *in[2], *out[1];
	users_pick("bad", P, SNAP_PARTS, 1, in, 2);
	users_pick("bad", P, SNAP_PARTS, 0, out, 1);
	uint32_t Q = router_partition_of(out[0], strlen(out[0]), SNAP_PARTS);
	const char *seen[] = { "\\Seen" };
	deliver_to(a, in[0], "", "g1", "good\r\n", seen, 1);
	deliver_to(a, out[0], "", "f1", "foreign\r\n", NULL, 0);
	deliver_to(b, in[1], "", "b1", "B's\r\n", NULL, 0);
	deliver_to(b, out[0], "", "b2", "B's\r\n", NULL, 0);

	struct chunks good, foreign;
	snap_export(a, P, SNAP_PARTS, 1 << 20, &good);
	snap_export(a, Q, SNAP_PARTS, 1 << 20, &foreign);
	assert_int_equal(good.n, 1);
	assert_int_equal(foreign.n, 1);
	const buf *g = &good.c[0];

	buf before, after;
	buf_init(&before);
	buf_init(&after);
	store_dump(b, &before);

	buf bad[16];
	size_t n_bad = 0;
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		buf_init(&bad[i]);
	/* a foreign partition's chunk */
	buf_append(&bad[n_bad++], foreign.c[0].data, foreign.c[0].len);
	/* good pairs, then one foreign pair */
	buf_append(&bad[n_bad], g->data, g->len);
	buf_append(&bad[n_bad++], foreign.c[0].data + 1, foreign.c[0].len - 1);
	/* truncated: in the last value, in a length field, version alone cut */
	buf_append(&bad[n_bad++], g->data, g->len - 1);
	buf_append(&bad[n_bad++], g->data, 3);
	/* bad version */
	buf_append(&bad[n_bad], g->data, g->len);
	bad[n_bad++].data[0] = MAILSTORE_SNAPSHOT_VERSION + 1;
	/* a key length beyond the chunk */
	uint8_t ver = MAILSTORE_SNAPSHOT_VERSION;
	buf_append(&bad[n_bad], &ver, 1);
	put_be32(&bad[n_bad++], 0xffffffffu);
	/* kinds a chunk may not carry: applied index (after good pairs),
	 * counters */
	uint8_t applied_key[] = { MAILSTORE_KEY_VERSION, 'A', 0, 0, 0, (uint8_t)P };
	uint8_t applied_val[9] = { 1, 0, 0, 0, 0, 0, 0, 0, 99 };
	buf_append(&bad[n_bad], g->data, g->len);
	put_be32(&bad[n_bad], sizeof applied_key);
	buf_append(&bad[n_bad], applied_key, sizeof applied_key);
	put_be32(&bad[n_bad], sizeof applied_val);
	buf_append(&bad[n_bad++], applied_val, sizeof applied_val);
	uint8_t counters_key[] = { MAILSTORE_KEY_VERSION, 'C' };
	uint8_t counters_val[13] = { 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1 };
	buf_append(&bad[n_bad], &ver, 1);
	put_be32(&bad[n_bad], sizeof counters_key);
	buf_append(&bad[n_bad], counters_key, sizeof counters_key);
	put_be32(&bad[n_bad], sizeof counters_val);
	buf_append(&bad[n_bad++], counters_val, sizeof counters_val);
	/* a message whose flags are not canonical ("\seen") */
	buf tail, val;
	buf_init(&tail);
	buf_init(&val);
	put_be64(&tail, 1);
	put_be32(&tail, 7);
	buf_append(&val, &ver, 1);
	put_be64(&val, 5);
	put_be64(&val, 1000);
	put_be64(&val, 1);
	uint8_t nflags[] = { 0, 1, 0, 5 };
	buf_append(&val, nflags, sizeof nflags);
	buf_append(&val, "\\seen", 5);
	buf_append(&bad[n_bad], g->data, g->len);
	pair_append(&bad[n_bad++], 'I', in[0], tail.data, tail.len, val.data, val.len);
	/* the same, with trailing bytes after the flags */
	buf_reset(&val);
	buf_append(&val, &ver, 1);
	put_be64(&val, 5);
	put_be64(&val, 1000);
	put_be64(&val, 1);
	uint8_t noflags[] = { 0, 0, 'x' };
	buf_append(&val, noflags, sizeof noflags);
	buf_append(&bad[n_bad], &ver, 1);
	pair_append(&bad[n_bad++], 'I', in[0], tail.data, tail.len, val.data, val.len);
	/* a mailbox record too short, and a mailbox name that is not stored
	 * that way ("inbox") */
	uint8_t short_mbox[] = { 1, 0, 0, 0, 0, 0, 0, 0, 7 };
	buf_append(&bad[n_bad], &ver, 1);
	pair_append(&bad[n_bad++], 'M', in[0], "Box", 3, short_mbox, sizeof short_mbox);
	buf_reset(&val);
	buf_append(&val, &ver, 1);
	put_be64(&val, 3);
	put_be32(&val, 1234);
	put_be32(&val, 1);
	put_be64(&val, 0);
	put_be32(&val, 0);
	buf_append(&bad[n_bad], &ver, 1);
	pair_append(&bad[n_bad++], 'M', in[1], "inbox", 5, val.data, val.len);
	/* the control: that mailbox record under a good name is accepted
	 * below, so the refusal above is the name's */
	buf ok_box;
	buf_init(&ok_box);
	buf_append(&ok_box, &ver, 1);
	pair_append(&ok_box, 'M', in[1], "Box", 3, val.data, val.len);
	/* an invalid user */
	buf_append(&bad[n_bad], &ver, 1);
	pair_append(&bad[n_bad++], 'D', "sp ace", "d", 1, "", 0);
	/* a message key without its uid */
	buf_append(&bad[n_bad], &ver, 1);
	pair_append(&bad[n_bad++], 'B', in[0], tail.data, tail.len - 1, "body", 4);
	/* nothing: not even a version byte */
	n_bad++;

	assert_int_equal(mailstore_snapshot_install_begin(b, P, SNAP_PARTS), MAIL_OK);
	/* the begin dropped B's data of P: the reference for "unchanged" */
	buf_reset(&before);
	store_dump(b, &before);
	for (size_t i = 0; i < n_bad; i++) {
		assert_int_equal(mailstore_snapshot_install_chunk(b, P, SNAP_PARTS, bad[i].data,
								  bad[i].len),
				 MAIL_ERR_PARAMS);
		buf_reset(&after);
		store_dump(b, &after);
		assert_int_equal(after.len, before.len);
		assert_memory_equal(after.data, before.data, before.len);
	}
	assert_int_equal(mailstore_snapshot_install_chunk(b, P + SNAP_PARTS, SNAP_PARTS, g->data,
							  g->len),
			 MAIL_ERR_PARAMS);
	assert_int_equal(mailstore_snapshot_install_chunk(b, P, 0, g->data, g->len),
			 MAIL_ERR_PARAMS);
	/* the controls go in */
	assert_int_equal(mailstore_snapshot_install_chunk(b, P, SNAP_PARTS, g->data, g->len),
			 MAIL_OK);
	assert_int_equal(mailstore_snapshot_install_chunk(b, P, SNAP_PARTS, ok_box.data,
							  ok_box.len),
			 MAIL_OK);
	assert_int_equal(mailstore_snapshot_install_end(b, P, good.applied), MAIL_OK);
	assert_user_same(a, b, in[0]);
	assert_int_equal(box_exists(b, in[1], "Box"), 1);

	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		buf_deinit(&bad[i]);
	buf_deinit(&ok_box);
	buf_deinit(&tail);
	buf_deinit(&val);
	buf_deinit(&before);
	buf_deinit(&after);
	chunks_free(&good);
	chunks_free(&foreign);
	users_free(in, 2);
	users_free(out, 1);
}

/* begin, then a crash (close and reopen without end): the partition is
 * empty and its applied index 0; other partitions are intact. Also with a
 * chunk already written. */
static void test_snapshot_begin_crash(void **state)
{
	struct fixture *f = *state;
	const uint32_t P = 6;
	char *in[2], *out[1];
	users_pick("crash", P, SNAP_PARTS, 1, in, 2);
	users_pick("crash", P, SNAP_PARTS, 0, out, 1);
	uint32_t Q = router_partition_of(out[0], strlen(out[0]), SNAP_PARTS);
	deliver_to(f->store, in[0], "", "c1", "one\r\n", NULL, 0);
	create_box(f->store, in[0], "Other");
	deliver_applied(f->store, P, 12, in[1], "c2");
	deliver_applied(f->store, Q, 13, out[0], "c3");

	struct chunks ch;
	snap_export(f->store, P, SNAP_PARTS, 1 << 20, &ch);
	assert_int_equal(ch.applied, 12);

	for (int round = 0; round < 2; round++) {
		assert_int_equal(mailstore_snapshot_install_begin(f->store, P, SNAP_PARTS),
				 MAIL_OK);
		if (round == 1)
			assert_int_equal(mailstore_snapshot_install_chunk(f->store, P, SNAP_PARTS,
									  ch.c[0].data,
									  ch.c[0].len),
					 MAIL_OK);
		mailstore_close(&f->store);
		f->store = open_store(f->dir);
		assert_int_equal(applied_of(f->store, P), 0);
		assert_int_equal(applied_of(f->store, Q), 13);
		assert_int_equal(box_exists(f->store, out[0], ""), 1);
		if (round == 0) {
			assert_int_equal(box_exists(f->store, in[0], ""), 0);
			assert_int_equal(box_exists(f->store, in[0], "Other"), 0);
			assert_int_equal(box_exists(f->store, in[1], ""), 0);
			struct chunks empty;
			snap_export(f->store, P, SNAP_PARTS, 1 << 20, &empty);
			assert_int_equal(empty.n, 0);
			assert_int_equal(empty.applied, 0);
		}
	}
	/* a complete install after all that */
	snap_install(f->store, P, SNAP_PARTS, &ch);
	assert_int_equal(applied_of(f->store, P), 12);
	assert_int_equal(box_exists(f->store, in[0], "Other"), 1);
	chunks_free(&ch);
	users_free(in, 2);
	users_free(out, 1);
}

/* mailstore places users on partitions exactly as router_partition_of()
 * does (it computes it itself: it does not link the router). Partition by
 * partition into an empty store: after installing p, exactly the users the
 * router puts on partitions <= p are there. */
static void test_snapshot_partition_agrees_with_router(void **state)
{
	struct fixture *f = *state;
	enum { N_USERS = 300, N_PARTS = 7 };
	char *users[N_USERS];
	for (int i = 0; i < N_USERS; i++) {
		users[i] = xasprintf("agree%d.%c@Example-%d.test", i, 'a' + i % 26, i % 11);
		create_box(f->store, users[i], "INBOX");
	}
	mailstore *b = store_b(f);
	size_t total = 0;
	for (uint32_t p = 0; p < N_PARTS; p++) {
		struct chunks ch;
		snap_export(f->store, p, N_PARTS, 4096, &ch);
		snap_install(b, p, N_PARTS, &ch);
		chunks_free(&ch);
		for (int i = 0; i < N_USERS; i++) {
			uint32_t want = router_partition_of(users[i], strlen(users[i]), N_PARTS);
			assert_int_equal(box_exists(b, users[i], ""), want <= p);
			total += want == p;
		}
	}
	assert_int_equal(total, N_USERS);
	for (int i = 0; i < N_USERS; i++)
		free(users[i]);
}

static void test_snapshot_params(void **state)
{
	struct fixture *f = *state;
	mailstore_snapshot *snap = (mailstore_snapshot *)1;
	uint64_t applied = 5;
	assert_int_equal(mailstore_snapshot_open(f->store, 0, 0, &snap, &applied),
			 MAIL_ERR_PARAMS);
	assert_null(snap);
	assert_int_equal(mailstore_snapshot_open(f->store, 4, 4, &snap, &applied),
			 MAIL_ERR_PARAMS);
	assert_int_equal(mailstore_snapshot_install_begin(f->store, 4, 4), MAIL_ERR_PARAMS);
	mailstore_snapshot_close(&snap);
	/* an empty partition: no chunk at all, applied 0 */
	assert_int_equal(mailstore_snapshot_open(f->store, 3, 4, &snap, &applied), MAIL_OK);
	assert_int_equal(applied, 0);
	buf b;
	buf_init(&b);
	assert_int_equal(mailstore_snapshot_next(snap, &b, 100), 0);
	assert_int_equal(mailstore_snapshot_next(snap, &b, 100), 0);
	assert_int_equal(b.len, 0);
	buf_deinit(&b);
	mailstore_snapshot_close(&snap);
}

/* ---- delivery record expiry ---- */

/* Deliver did to user at the entry clock now_ms (replicated apply). */
static struct mailstore_deliver_result deliver_at(mailstore *s, const char *user,
						  const char *did, int64_t now_ms)
{
	static uint64_t index = 0;
	struct mailstore_apply a = { 0, ++index, now_ms };
	struct mailstore_deliver_result r;
	mailstore_apply_begin(s, &a);
	assert_int_equal(mailstore_deliver(s, user, "", did, "m\r\n", 3, 0, NULL, 0, &r), MAIL_OK);
	mailstore_apply_begin(s, NULL);
	return r;
}

static mailstore *open_store_keep(const char *dir, uint64_t keep_ms)
{
	struct mailstore_limits lim;
	mailstore_limits_default(&lim);
	lim.delivery_keep_ms = keep_ms;
	mailstore *s = NULL;
	const char *error = NULL;
	assert_int_equal(mailstore_open(dir, &lim, &s, &error), MAIL_OK);
	return s;
}

/* A delivery into a mailbox that does not exist: NOT_FOUND, or INBOX with
 * inbox_fallback (a subaddress folder, Junk: issue 11). */
static void test_deliver_inbox_fallback(void **state)
{
	struct fixture *f = *state;
	static const char body[] = "Subject: x\r\n\r\nx\r\n";
	struct mailstore_msg_in msg = { .body = body, .body_len = sizeof body - 1 };
	struct mailstore_deliver_result r;
	assert_int_equal(mailstore_deliver_msg(f->store, "u@x.test", "Lists", "f/0", &msg, &r),
			 MAIL_ERR_NOT_FOUND);
	msg.inbox_fallback = 1;
	assert_int_equal(mailstore_deliver_msg(f->store, "u@x.test", "Lists", "f/1", &msg, &r),
			 MAIL_OK);
	struct mailstore_mailbox_info info;
	struct mailstore_message_info *msgs;
	size_t n;
	assert_int_equal(mailstore_select(f->store, "u@x.test", "INBOX", &info, &msgs, &n), MAIL_OK);
	assert_int_equal(n, 1);
	mailstore_message_infos_free(msgs, n);
	mailstore_mailbox_info_free(&info);
	/* Junk exists (made with the user): it is used */
	assert_int_equal(mailstore_deliver_msg(f->store, "u@x.test", "Junk", "f/2", &msg, &r),
			 MAIL_OK);
	assert_int_equal(mailstore_select(f->store, "u@x.test", "Junk", &info, &msgs, &n), MAIL_OK);
	assert_int_equal(n, 1);
	mailstore_message_infos_free(msgs, n);
	mailstore_mailbox_info_free(&info);
}

static void test_delivery_expiry_window(void **state)
{
	struct fixture *f = *state;
	mailstore_close(&f->store);
	f->store = open_store_keep(f->dir, 1000);
	struct mailstore_deliver_result r = deliver_at(f->store, "u@x.org", "q1/0", 10000);
	assert_int_equal(r.duplicate, 0);
	/* a retry within the window is still recognised, also after other
	 * deliveries that ran the expiry */
	deliver_at(f->store, "u@x.org", "q2/0", 10900);
	struct mailstore_deliver_result again = deliver_at(f->store, "u@x.org", "q1/0", 11000);
	assert_int_equal(again.duplicate, 1);
	assert_int_equal(again.uid, r.uid);
	/* past it, the next delivery of the user drops the record: the id is
	 * new again */
	deliver_at(f->store, "u@x.org", "q3/0", 11001);
	again = deliver_at(f->store, "u@x.org", "q1/0", 11002);
	assert_int_equal(again.duplicate, 0);
	assert_true(again.uid > r.uid);
	/* q2 (10900) is still within its window */
	assert_int_equal(deliver_at(f->store, "u@x.org", "q2/0", 11800).duplicate, 1);
	/* another user's records are not touched by u's deliveries */
	deliver_at(f->store, "v@x.org", "q1/0", 10000);
	deliver_at(f->store, "u@x.org", "q4/0", 50000);
	assert_int_equal(deliver_at(f->store, "v@x.org", "q1/0", 10500).duplicate, 1);
}

static void test_delivery_expiry_bounded_oldest_first(void **state)
{
	struct fixture *f = *state;
	mailstore_close(&f->store);
	f->store = open_store_keep(f->dir, 1000);
	char did[16];
	for (int i = 0; i < 10; i++) {
		snprintf(did, sizeof did, "d%d/0", i);
		deliver_at(f->store, "u@x.org", did, 1000 + i);
	}
	/* far later: one delivery drops the 4 oldest, no more */
	deliver_at(f->store, "u@x.org", "new/0", 100000);
	/* duplicates write nothing, so they drop nothing either */
	assert_int_equal(deliver_at(f->store, "u@x.org", "d4/0", 100001).duplicate, 1);
	assert_int_equal(deliver_at(f->store, "u@x.org", "d9/0", 100001).duplicate, 1);
	assert_int_equal(deliver_at(f->store, "u@x.org", "d3/0", 100001).duplicate, 0);
	/* that delivery dropped d4..d7 */
	assert_int_equal(deliver_at(f->store, "u@x.org", "d8/0", 100001).duplicate, 1);
	assert_int_equal(deliver_at(f->store, "u@x.org", "d7/0", 100001).duplicate, 0);
}

/* A new primary whose clock is behind the old one's: its records are
 * older than the expiry hint of the user, and must expire all the same. */
static void test_delivery_expiry_clock_back(void **state)
{
	struct fixture *f = *state;
	mailstore_close(&f->store);
	f->store = open_store_keep(f->dir, 1000);
	deliver_at(f->store, "u@x.org", "a/0", 5000);
	deliver_at(f->store, "u@x.org", "b/0", 7000); /* drops a: hint at 7000 */
	deliver_at(f->store, "u@x.org", "c/0", 3000); /* the clock went back */
	deliver_at(f->store, "u@x.org", "d/0", 9000); /* drops c and b */
	assert_int_equal(deliver_at(f->store, "u@x.org", "c/0", 9001).duplicate, 0);
	assert_int_equal(deliver_at(f->store, "u@x.org", "b/0", 9002).duplicate, 0);
	assert_int_equal(deliver_at(f->store, "u@x.org", "d/0", 9003).duplicate, 1);
}

static void test_delivery_keep_forever(void **state)
{
	struct fixture *f = *state;
	mailstore_close(&f->store);
	f->store = open_store_keep(f->dir, 0);
	deliver_at(f->store, "u@x.org", "a/0", 5000);
	deliver_at(f->store, "u@x.org", "b/0", INT64_C(5000000000000));
	assert_int_equal(deliver_at(f->store, "u@x.org", "a/0", INT64_C(5000000000001)).duplicate,
			 1);
}

/* A store of the version before age records: its delivery records are
 * dated when this version first opens it, and then expire. */
static void test_delivery_records_upgrade(void **state)
{
	struct fixture *f = *state;
	mailstore_close(&f->store);
	leveldb_options_t *o = leveldb_options_create();
	char *err = NULL;
	leveldb_t *db = leveldb_open(o, f->dir, &err);
	assert_null(err);
	leveldb_writeoptions_t *w = leveldb_writeoptions_create();
	/* the old store: no 'V', a 'D' record without its 'X' */
	static const char vkey[2] = { 0x01, 'V' };
	leveldb_delete(db, w, vkey, sizeof vkey, &err);
	assert_null(err);
	static const char dkey[] = "\x01" "Du@x.org\0old/0";
	static const char dval[17] = { 0x01, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 7, 0, 0, 0, 5 };
	leveldb_put(db, w, dkey, sizeof dkey - 1, dval, sizeof dval, &err);
	assert_null(err);
	leveldb_writeoptions_destroy(w);
	leveldb_close(db);
	leveldb_options_destroy(o);

	f->store = open_store_keep(f->dir, 1000);
	int64_t now = util_now_wall_ms();
	struct mailstore_deliver_result r = deliver_at(f->store, "u@x.org", "old/0", now);
	assert_int_equal(r.duplicate, 1);
	assert_int_equal(r.uid, 7);
	/* a second open does not date them again */
	mailstore_close(&f->store);
	f->store = open_store_keep(f->dir, 1000);
	deliver_at(f->store, "u@x.org", "other/0", now + 60000);
	assert_int_equal(deliver_at(f->store, "u@x.org", "old/0", now + 60001).duplicate, 0);
}

/* ---- the \Deleted index ('Z') -------------------------------------------- */

/* Keys of the store in dir (closed) that start with prefix: counted, and
 * deleted when del. */
static size_t raw_prefix(const char *dir, const char *prefix, size_t plen, int del)
{
	leveldb_options_t *o = leveldb_options_create();
	char *err = NULL;
	leveldb_t *db = leveldb_open(o, dir, &err);
	assert_null(err);
	leveldb_readoptions_t *ro = leveldb_readoptions_create();
	leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
	leveldb_iterator_t *it = leveldb_create_iterator(db, ro);
	size_t n = 0;
	for (leveldb_iter_seek(it, prefix, plen); leveldb_iter_valid(it); leveldb_iter_next(it)) {
		size_t klen;
		const char *k = leveldb_iter_key(it, &klen);
		if (klen < plen || memcmp(k, prefix, plen) != 0)
			break;
		if (del) {
			leveldb_delete(db, wo, k, klen, &err);
			assert_null(err);
		}
		n++;
	}
	leveldb_iter_destroy(it);
	leveldb_readoptions_destroy(ro);
	leveldb_writeoptions_destroy(wo);
	leveldb_close(db);
	leveldb_options_destroy(o);
	return n;
}

static void raw_put(const char *dir, const char *key, size_t klen, const char *val, size_t vlen)
{
	leveldb_options_t *o = leveldb_options_create();
	char *err = NULL;
	leveldb_t *db = leveldb_open(o, dir, &err);
	assert_null(err);
	leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
	leveldb_put(db, wo, key, klen, val, vlen, &err);
	assert_null(err);
	leveldb_writeoptions_destroy(wo);
	leveldb_close(db);
	leveldb_options_destroy(o);
}

static void flags_change(mailstore *s, const char *u, uint32_t uid, enum mailstore_flag_mode mode,
			 const char *flag)
{
	struct mailstore_message_info *msgs;
	size_t n;
	assert_int_equal(mailstore_store_flags(s, u, "", &uid, 1, mode, &flag, 1, &msgs, &n),
			 MAIL_OK);
	mailstore_message_infos_free(msgs, n);
}

static size_t expunge_all(mailstore *s, const char *u, uint32_t *first_r)
{
	uint32_t *gone;
	size_t n;
	assert_int_equal(mailstore_expunge(s, u, "", NULL, 0, &gone, &n), MAIL_OK);
	if (first_r != NULL)
		*first_r = n > 0 ? gone[0] : 0;
	free(gone);
	return n;
}

/* EXPUNGE reads the 'Z' records of the messages flagged \Deleted, never the
 * whole mailbox: they follow deliveries with the flag and every flag
 * change; a message whose record is missing (an older store) is left alone
 * by EXPUNGE until the upgrade at open writes the record. */
static void test_expunge_deleted_index(void **state)
{
	struct fixture *f = *state;
	const char *u = "z@x.org";
	static const char zprefix[] = "\x01Zz@x.org";
	const char *del[] = { "\\Deleted" };
	deliver_ok(f->store, u, "z1", "m\r\n");                     /* uid 1 */
	deliver_to(f->store, u, "", "z2", "m\r\n", del, 1);          /* uid 2 */
	deliver_ok(f->store, u, "z3", "m\r\n");                     /* uid 3 */
	deliver_ok(f->store, u, "z4", "m\r\n");                     /* uid 4 */
	flags_change(f->store, u, 3, MAILSTORE_FLAGS_ADD, "\\Deleted");
	flags_change(f->store, u, 4, MAILSTORE_FLAGS_ADD, "\\Deleted");
	flags_change(f->store, u, 4, MAILSTORE_FLAGS_REMOVE, "\\Deleted");
	mailstore_close(&f->store);
	assert_int_equal(raw_prefix(f->dir, zprefix, sizeof zprefix, 0), 2);   /* 2, 3 */
	f->store = open_store(f->dir);
	uint32_t first;
	assert_int_equal(expunge_all(f->store, u, &first), 2);
	assert_int_equal(first, 2);
	mailstore_close(&f->store);
	assert_int_equal(raw_prefix(f->dir, zprefix, sizeof zprefix, 0), 0);
	f->store = open_store(f->dir);

	/* uid 1 flagged, its record removed behind the store's back: EXPUNGE
	 * does not see it (it reads the index), UID EXPUNGE does */
	flags_change(f->store, u, 1, MAILSTORE_FLAGS_SET, "\\Deleted");
	mailstore_close(&f->store);
	assert_int_equal(raw_prefix(f->dir, zprefix, sizeof zprefix, 1), 1);
	f->store = open_store(f->dir);
	assert_int_equal(expunge_all(f->store, u, NULL), 0);

	/* a store of data level 1 (before the index): the open indexes it */
	mailstore_close(&f->store);
	static const char vkey[2] = { 0x01, 'V' };
	static const char level1[2] = { 0x01, 1 };
	raw_put(f->dir, vkey, sizeof vkey, level1, sizeof level1);
	f->store = open_store(f->dir);
	assert_int_equal(expunge_all(f->store, u, &first), 1);
	assert_int_equal(first, 1);
	assert_int_equal(expunge_all(f->store, u, NULL), 0);
}

/* The index is not exported: an install derives it from the messages it
 * takes, and drops the partition's old records with the rest. */
static void test_snapshot_deleted_index(void **state)
{
	struct fixture *f = *state;
	mailstore *a = f->store;
	mailstore *b = store_b(f);
	const uint32_t P = 2;
	char *in[2];
	users_pick("zin", P, SNAP_PARTS, 1, in, 2);
	const char *del[] = { "\\Deleted" };
	/* A: in[0] has uid 1 plain, uid 2 flagged */
	deliver_to(a, in[0], "", "a1", "one\r\n", NULL, 0);
	deliver_to(a, in[0], "", "a2", "two\r\n", del, 1);
	deliver_to(a, in[1], "", "a3", "three\r\n", NULL, 0);
	/* B: in[1] has a flagged message, soon replaced by A's partition */
	deliver_to(b, in[1], "", "b1", "old\r\n", del, 1);

	struct chunks ch;
	snap_export(a, P, SNAP_PARTS, 1 << 20, &ch);
	for (size_t i = 0; i < ch.n; i++)
		assert_null(memmem(ch.c[i].data, ch.c[i].len, "\x01Z", 2));
	snap_install(b, P, SNAP_PARTS, &ch);
	chunks_free(&ch);

	mailstore_close(&f->b);
	char zp1[64];
	int zl1 = snprintf(zp1, sizeof zp1, "\x01Z%s", in[1]);
	assert_int_equal(raw_prefix(f->dir_b, zp1, (size_t)zl1 + 1, 0), 0);
	f->b = b = open_store(f->dir_b);
	uint32_t first;
	assert_int_equal(expunge_all(b, in[0], &first), 1);
	assert_int_equal(first, 2);
	assert_int_equal(expunge_all(b, in[1], NULL), 0);
	for (int i = 0; i < 2; i++)
		free(in[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_deliver_select_fetch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deliver_inbox_fallback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_apply_barrier, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uids_increase_and_survive_reopen, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_idempotent_deliver, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flags_and_modseq, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expunge_only_deleted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expunge_deleted_index, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_deleted_index, setup, teardown),
		cmocka_unit_test_setup_teardown(test_users_isolated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_mailbox, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uidvalidity_unique, setup, teardown),
		cmocka_unit_test_setup_teardown(test_second_open_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_apply_deterministic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_transfer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_counters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_consistent_view, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_bad_chunks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_begin_crash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_partition_agrees_with_router,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_params, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delivery_expiry_window, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delivery_expiry_bounded_oldest_first, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_delivery_expiry_clock_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delivery_keep_forever, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delivery_records_upgrade, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
