/* test-mailstore.c: the mailstore on a real LevelDB in a temp dir. */
#include "mailstore.h"

#include "mail-error.h"
#include "test-util.h"
#include "xalloc.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

struct fixture {
	char *dir;
	mailstore *store;
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
	assert_int_equal(mailstore_mailbox_create(f->store, "a@one.org", "Secret", &info),
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
	assert_int_equal(mailstore_list(f->store, "b@two.org", &boxes, &n), MAIL_OK);
	assert_int_equal(n, 1);
	assert_string_equal(boxes[0].name, "INBOX");
	assert_int_equal(boxes[0].exists, 0);
	mailstore_mailbox_infos_free(boxes, n);

	assert_int_equal(mailstore_list(f->store, "a@one.org", &boxes, &n), MAIL_OK);
	assert_int_equal(n, 2);
	assert_string_equal(boxes[0].name, "INBOX");
	assert_string_equal(boxes[1].name, "Secret");
	assert_int_equal(boxes[1].exists, 1);
	mailstore_mailbox_infos_free(boxes, n);

	uint32_t *gone;
	assert_int_equal(mailstore_expunge(f->store, "b@two.org", "Secret", NULL, 0, &gone, &n),
			 MAIL_ERR_NOT_FOUND);
	assert_int_equal(mailstore_mailbox_create(f->store, "a@one.org", "Secret", &info),
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
		assert_int_equal(mailstore_mailbox_create(f->store, "u@x.org", bad_names[i],
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
	assert_int_equal(mailstore_select(f->store, "u@x.org", "Archive", &info, &msgs, &n),
			 MAIL_ERR_NOT_FOUND);
	struct mailstore_deliver_result r;
	assert_int_equal(mailstore_deliver(f->store, "u@x.org", "Archive", "a", "x", 1, 0, NULL, 0,
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
	assert_int_equal(mailstore_mailbox_create(f->store, "u@x.org", "A", &a), MAIL_OK);
	assert_int_equal(mailstore_mailbox_create(f->store, "u@x.org", "B", &b), MAIL_OK);
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
	assert_int_equal(mailstore_mailbox_create(other, "z@x.org", "Z", &x), MAIL_OK);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_deliver_select_fetch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uids_increase_and_survive_reopen, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_idempotent_deliver, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flags_and_modseq, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expunge_only_deleted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_users_isolated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_mailbox, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uidvalidity_unique, setup, teardown),
		cmocka_unit_test_setup_teardown(test_second_open_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_apply_deterministic, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
