/* test-mailstore-quota.c: quota usage and the quota check (issue 12) on a
 * real LevelDB: usage stays exact through deliver, APPEND, COPY, MOVE,
 * EXPUNGE, DELETE of a mailbox and user purge, across a restart and a
 * partition snapshot installed on another store; deliver, APPEND and COPY
 * refuse past the limits (a duplicate delivery and a MOVE never are), and
 * deleting works at and over quota. */
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

#define U "ann@example.org"
#define V "bob@example.net"

struct fixture {
	char *dir, *dir_b;
	mailstore *store, *b;
};

static mailstore *open_at(const char *dir)
{
	mailstore *s = NULL;
	const char *error = NULL;
	assert_int_equal(mailstore_open(dir, NULL, &s, &error), MAIL_OK);
	return s;
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof *f);
	f->dir = test_tmpdir_create("mailstore-quota");
	f->store = open_at(f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	mailstore_close(&f->store);
	mailstore_close(&f->b);
	test_tmpdir_remove(&f->dir);
	test_tmpdir_remove(&f->dir_b);
	free(f);
	return 0;
}

static void assert_usage(mailstore *s, const char *user, uint64_t bytes, uint64_t messages)
{
	struct mailstore_usage u;
	assert_int_equal(mailstore_usage(s, user, &u), MAIL_OK);
	assert_int_equal(u.bytes, bytes);
	assert_int_equal(u.messages, messages);
}

static int deliver(mailstore *s, const char *user, const char *box, const char *id,
		   const char *body, const char *flag, uint32_t *uid_r)
{
	struct mailstore_deliver_result r;
	const char *flags[1] = { flag };
	int ret = mailstore_deliver(s, user, box, id, body, strlen(body), 0, flags,
				    flag != NULL ? 1 : 0, &r);
	if (uid_r != NULL)
		*uid_r = r.uid;
	return ret;
}

static int append(mailstore *s, const char *user, const char *box, const char *b1,
		  const char *b2)
{
	struct mailstore_msg_in m[2] = {
		{ .body = b1, .body_len = strlen(b1) },
		{ .body = b2, .body_len = b2 != NULL ? strlen(b2) : 0 },
	};
	uint32_t uv, *uids = NULL;
	int ret = mailstore_append(s, user, box, m, b2 != NULL ? 2 : 1, &uv, &uids);
	free(uids);
	return ret;
}

static int copy(mailstore *s, const char *user, const char *from, const char *to, int move)
{
	struct search_uid_range all = { 1, UINT32_MAX - 1 };
	uint32_t uv, *src = NULL, *dst = NULL;
	size_t n;
	int ret = mailstore_copy(s, user, from, &all, 1, to, move, &uv, &src, &dst, &n);
	free(src);
	free(dst);
	return ret;
}

#define M1 "Subject: one\r\n\r\nhello\r\n"         /* 23 bytes */
#define M2 "Subject: two\r\n\r\nhello again\r\n"   /* 29 bytes */

/* Every operation that adds or removes messages moves usage exactly. */
static void test_usage_exact(void **state)
{
	struct fixture *f = *state;
	mailstore *s = f->store;
	assert_int_equal(strlen(M1), 23);
	assert_int_equal(strlen(M2), 29);
	assert_usage(s, U, 0, 0); /* no mailbox yet: zeros, nothing created */
	int exists = 1;
	assert_int_equal(mailstore_mailbox_exists(s, U, "INBOX", &exists), MAIL_OK);
	assert_int_equal(exists, 0);

	assert_int_equal(deliver(s, U, "", "q1/0", M1, NULL, NULL), MAIL_OK);
	assert_usage(s, U, 23, 1);
	/* a duplicate delivery adds nothing */
	assert_int_equal(deliver(s, U, "", "q1/0", M1, NULL, NULL), MAIL_OK);
	assert_usage(s, U, 23, 1);
	assert_int_equal(deliver(s, U, "", "q2/0", M2, "\\Deleted", NULL), MAIL_OK);
	assert_usage(s, U, 52, 2); /* \Deleted counts until expunged */
	assert_int_equal(append(s, U, "Archive", M1, M2), MAIL_OK);
	assert_usage(s, U, 104, 4);
	/* COPY adds, MOVE does not */
	assert_int_equal(copy(s, U, "Archive", "Trash", 0), MAIL_OK);
	assert_usage(s, U, 156, 6);
	assert_int_equal(copy(s, U, "Trash", "Junk", 1), MAIL_OK);
	assert_usage(s, U, 156, 6);
	/* EXPUNGE of INBOX's \Deleted one */
	uint32_t *uids = NULL;
	size_t n = 0;
	assert_int_equal(mailstore_expunge(s, U, "INBOX", NULL, 0, &uids, &n), MAIL_OK);
	assert_int_equal(n, 1);
	free(uids);
	assert_usage(s, U, 127, 5);
	/* DELETE of a mailbox with two messages */
	assert_int_equal(mailstore_mailbox_delete(s, U, "Junk"), MAIL_OK);
	assert_usage(s, U, 75, 3);
	/* another user is apart */
	assert_int_equal(deliver(s, V, "", "q3/0", M2, NULL, NULL), MAIL_OK);
	assert_usage(s, V, 29, 1);
	assert_usage(s, U, 75, 3);

	/* a restart keeps it (nothing in memory) */
	mailstore_close(&f->store);
	f->store = s = open_at(f->dir);
	assert_usage(s, U, 75, 3);

	/* a snapshot of the partition on another store: the same figures */
	f->dir_b = test_tmpdir_create("mailstore-quota-b");
	f->b = open_at(f->dir_b);
	mailstore_snapshot *snap;
	uint64_t applied;
	assert_int_equal(mailstore_snapshot_open(s, 0, 1, &snap, &applied), MAIL_OK);
	assert_int_equal(mailstore_snapshot_install_begin(f->b, 0, 1), MAIL_OK);
	buf c;
	buf_init(&c);
	int ret;
	while ((ret = mailstore_snapshot_next(snap, &c, 200)) == 1) {
		assert_int_equal(mailstore_snapshot_install_chunk(f->b, 0, 1, c.data, c.len),
				 MAIL_OK);
		buf_reset(&c);
	}
	assert_int_equal(ret, 0);
	buf_deinit(&c);
	mailstore_snapshot_close(&snap);
	assert_int_equal(mailstore_snapshot_install_end(f->b, 0, applied), MAIL_OK);
	assert_usage(f->b, U, 75, 3);
	assert_usage(f->b, V, 29, 1);

	/* user purge: nothing left */
	struct mailstore_purge_stats st;
	assert_int_equal(mailstore_user_purge(s, U, &st), MAIL_OK);
	assert_int_equal(st.messages, 3);
	assert_int_equal(st.bytes, 75);
	assert_usage(s, U, 0, 0);
	assert_usage(s, V, 29, 1);
}

/* The limits of mailstore_quota_begin: refusals write nothing; deleting
 * and moving always work. */
static void test_quota_check(void **state)
{
	struct fixture *f = *state;
	mailstore *s = f->store;
	struct mailstore_quota q = { .storage = 60, .messages = 0 };
	mailstore_quota_begin(s, &q);
	assert_int_equal(deliver(s, U, "", "a/0", M1, NULL, NULL), MAIL_OK);      /* 23 */
	assert_int_equal(deliver(s, U, "", "a/1", M2, "\\Deleted", NULL), MAIL_OK); /* 52 */
	/* 52 + 23 > 60: refused, nothing written */
	assert_int_equal(deliver(s, U, "", "a/2", M1, NULL, NULL), MAIL_ERR_QUOTA);
	assert_usage(s, U, 52, 2);
	/* a retry of a delivery made is still its duplicate */
	assert_int_equal(deliver(s, U, "", "a/0", M1, NULL, NULL), MAIL_OK);
	assert_int_equal(append(s, U, "Archive", M1, NULL), MAIL_ERR_QUOTA);
	assert_int_equal(copy(s, U, "INBOX", "Archive", 0), MAIL_ERR_QUOTA);
	assert_usage(s, U, 52, 2);
	/* MOVE changes no usage: allowed at the limit */
	assert_int_equal(copy(s, U, "INBOX", "Archive", 1), MAIL_OK);
	assert_usage(s, U, 52, 2);
	/* expunge works at quota and frees room */
	uint32_t *uids = NULL;
	size_t n = 0;
	assert_int_equal(mailstore_expunge(s, U, "Archive", NULL, 0, &uids, &n), MAIL_OK);
	assert_int_equal(n, 1);
	free(uids);
	assert_usage(s, U, 23, 1);
	assert_int_equal(deliver(s, U, "", "a/3", M2, NULL, NULL), MAIL_OK);
	assert_usage(s, U, 52, 2);
	/* a message limit */
	q = (struct mailstore_quota){ .storage = 0, .messages = 2 };
	mailstore_quota_begin(s, &q);
	assert_int_equal(deliver(s, U, "", "a/4", "x", NULL, NULL), MAIL_ERR_QUOTA);
	/* exactly at the limit is allowed: 52 + 8 = 60 */
	q = (struct mailstore_quota){ .storage = 60, .messages = 3 };
	mailstore_quota_begin(s, &q);
	assert_int_equal(deliver(s, U, "", "a/5", "abcdefgh", NULL, NULL), MAIL_OK);
	assert_usage(s, U, 60, 3);
	/* over it (the limit lowered): deleting a mailbox still works */
	q = (struct mailstore_quota){ .storage = 10, .messages = 1 };
	mailstore_quota_begin(s, &q);
	assert_int_equal(mailstore_mailbox_delete(s, U, "Archive"), MAIL_OK);
	struct mailstore_purge_stats st;
	assert_int_equal(mailstore_user_purge(s, U, &st), MAIL_OK);
	assert_usage(s, U, 0, 0);
	/* no limits: nothing is checked */
	mailstore_quota_begin(s, NULL);
	assert_int_equal(deliver(s, U, "", "a/6", M2, NULL, NULL), MAIL_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_usage_exact, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quota_check, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
