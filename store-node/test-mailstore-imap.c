/* test-mailstore-imap.c: the mailstore operations of issue 9 on a real
 * LevelDB: counters, special-use mailboxes, create/delete/rename,
 * subscriptions, paged uids, fetch_meta, ranges, changes since a MODSEQ
 * (tombstones and their bound), APPEND, COPY/MOVE, the level-3 upgrade,
 * snapshots of the new kinds, replicated determinism, tenant isolation. */
#include "mailstore.h"

#include "buf.h"
#include "mail-error.h"
#include "store-structure.h"
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

#define U "ann@example.org"
#define V "bob@example.net"

struct fixture {
	char *dir;
	mailstore *store;
	char *dir_b;
	mailstore *b;
	/* changes seen by the change callback */
	char last_box[256];
	uint64_t last_modseq;
	int last_gone;
	int n_changes;
};

static mailstore *open_with(const char *dir, const struct mailstore_limits *lim)
{
	mailstore *s = NULL;
	const char *error = NULL;
	assert_int_equal(mailstore_open(dir, lim, &s, &error), MAIL_OK);
	return s;
}

static void change_cb(const struct mailstore_change *c, void *arg)
{
	struct fixture *f = arg;
	snprintf(f->last_box, sizeof f->last_box, "%s", c->mailbox);
	f->last_modseq = c->highest_modseq;
	f->last_gone = c->gone;
	f->n_changes++;
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof *f);
	f->dir = test_tmpdir_create("mailstore-imap");
	f->store = open_with(f->dir, NULL);
	mailstore_set_change_cb(f->store, change_cb, f);
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

static uint32_t put(mailstore *s, const char *user, const char *box, const char *body,
		    const char *flag)
{
	struct mailstore_deliver_result r;
	const char *flags[1] = { flag };
	assert_int_equal(mailstore_deliver(s, user, box, "", body, strlen(body), 1700000000000,
					   flags, flag != NULL ? 1 : 0, &r),
			 MAIL_OK);
	return r.uid;
}

static void status(mailstore *s, const char *user, const char *box,
		   struct mailstore_mailbox_info *info)
{
	assert_int_equal(mailstore_status(s, user, box, info), MAIL_OK);
}

static void set_flags(mailstore *s, const char *user, const char *box, uint32_t uid,
		      enum mailstore_flag_mode mode, const char *flag, int expect)
{
	struct mailstore_message_info *msgs;
	size_t n;
	assert_int_equal(mailstore_store_flags(s, user, box, &uid, 1, mode, &flag, 1, &msgs, &n),
			 expect);
	mailstore_message_infos_free(msgs, n);
}

static size_t expunge(mailstore *s, const char *user, const char *box)
{
	uint32_t *gone;
	size_t n;
	assert_int_equal(mailstore_expunge(s, user, box, NULL, 0, &gone, &n), MAIL_OK);
	free(gone);
	return n;
}

/* ---- counters and keywords -------------------------------------------------- */

static void test_counters(void **state)
{
	struct fixture *f = *state;
	put(f->store, U, "", "12345\r\n", NULL);        /* 7 bytes, unseen */
	put(f->store, U, "", "123\r\n", "\\Seen");      /* 5, seen */
	uint32_t u3 = put(f->store, U, "", "1\r\n", "$Work"); /* 3, unseen */
	struct mailstore_mailbox_info info;
	status(f->store, U, "INBOX", &info);
	assert_int_equal(info.exists, 3);
	assert_int_equal(info.unseen, 2);
	assert_int_equal(info.deleted, 0);
	assert_int_equal(info.size, 15);
	assert_int_equal(info.n_keywords, 1);
	assert_string_equal(info.keywords[0], "$Work");
	assert_true(info.attrs & MAILSTORE_MBOX_SUBSCRIBED);
	mailstore_mailbox_info_free(&info);

	set_flags(f->store, U, "", 1, MAILSTORE_FLAGS_ADD, "\\Seen", MAIL_OK);
	set_flags(f->store, U, "", u3, MAILSTORE_FLAGS_ADD, "\\Deleted", MAIL_OK);
	set_flags(f->store, U, "", 2, MAILSTORE_FLAGS_ADD, "$Alpha", MAIL_OK);
	status(f->store, U, "INBOX", &info);
	assert_int_equal(info.unseen, 1);
	assert_int_equal(info.deleted, 1);
	assert_int_equal(info.n_keywords, 2);
	assert_string_equal(info.keywords[0], "$Alpha");
	mailstore_mailbox_info_free(&info);

	assert_int_equal(expunge(f->store, U, ""), 1);
	status(f->store, U, "INBOX", &info);
	assert_int_equal(info.exists, 2);
	assert_int_equal(info.unseen, 0);
	assert_int_equal(info.deleted, 0);
	assert_int_equal(info.size, 12);
	/* keywords stay once used (FLAGS keeps offering them) */
	assert_int_equal(info.n_keywords, 2);
	mailstore_mailbox_info_free(&info);

	/* the counters survive a reopen (they are in the record) */
	mailstore_close(&f->store);
	f->store = open_with(f->dir, NULL);
	status(f->store, U, "INBOX", &info);
	assert_int_equal(info.exists, 2);
	assert_int_equal(info.size, 12);
	mailstore_mailbox_info_free(&info);
}

static void test_keywords_bound(void **state)
{
	struct fixture *f = *state;
	mailstore_close(&f->store);
	struct mailstore_limits lim;
	mailstore_limits_default(&lim);
	lim.max_mailbox_keywords = 2;
	f->store = open_with(f->dir, &lim);
	uint32_t u1 = put(f->store, U, "", "a\r\n", "$A");
	set_flags(f->store, U, "", u1, MAILSTORE_FLAGS_ADD, "$B", MAIL_OK);
	/* a third keyword: refused, nothing written */
	set_flags(f->store, U, "", u1, MAILSTORE_FLAGS_ADD, "$C", MAIL_ERR_LIMIT);
	/* a delivery is not refused: the keyword that does not fit goes */
	uint32_t u2 = put(f->store, U, "", "b\r\n", "$D");
	struct mailstore_message_info mi;
	void *body;
	size_t len;
	assert_int_equal(mailstore_fetch(f->store, U, "", u2, &mi, &body, &len), MAIL_OK);
	assert_int_equal(mi.n_flags, 0);
	free(body);
	mailstore_message_info_free(&mi);
	struct mailstore_mailbox_info info;
	status(f->store, U, "", &info);
	assert_int_equal(info.n_keywords, 2);
	mailstore_mailbox_info_free(&info);
	/* APPEND with a new keyword: LIMIT */
	const char *kw = "$E";
	struct mailstore_msg_in in = { .body = "x\r\n", .body_len = 3, .flags = &kw,
				       .n_flags = 1 };
	uint32_t uv, *uids;
	assert_int_equal(mailstore_append(f->store, U, "", &in, 1, &uv, &uids), MAIL_ERR_LIMIT);
	assert_null(uids);
}

/* ---- mailboxes ---------------------------------------------------------------- */

static void test_new_user_special_use(void **state)
{
	struct fixture *f = *state;
	struct mailstore_mailbox_info *boxes;
	size_t n;
	assert_int_equal(mailstore_list(f->store, U, &boxes, &n), MAIL_OK);
	static const struct {
		const char *name;
		unsigned attrs;
	} want[] = {
		{ "Archive", MAILSTORE_MBOX_ARCHIVE }, { "Drafts", MAILSTORE_MBOX_DRAFTS },
		{ "INBOX", 0 },			       { "Junk", MAILSTORE_MBOX_JUNK },
		{ "Sent", MAILSTORE_MBOX_SENT },       { "Trash", MAILSTORE_MBOX_TRASH },
	};
	assert_int_equal(n, 6);
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(boxes[i].name, want[i].name);
		assert_int_equal(boxes[i].attrs, want[i].attrs | MAILSTORE_MBOX_SUBSCRIBED);
		assert_true(boxes[i].uidvalidity > 0);
	}
	mailstore_mailbox_infos_free(boxes, n);
	char **subs;
	assert_int_equal(mailstore_subscriptions(f->store, U, &subs, &n), MAIL_OK);
	assert_int_equal(n, 6);
	mailstore_names_free(subs, n);
	/* a new user's first call may name a special-use mailbox */
	struct mailstore_mailbox_info info;
	status(f->store, V, "Trash", &info);
	assert_int_equal(info.attrs & MAILSTORE_MBOX_SPECIAL_MASK, MAILSTORE_MBOX_TRASH);
	mailstore_mailbox_info_free(&info);
	status(f->store, V, "INBOX", &info);
	mailstore_mailbox_info_free(&info);
}

static void test_create(void **state)
{
	struct fixture *f = *state;
	struct mailstore_mailbox_info info;
	assert_int_equal(mailstore_mailbox_create(f->store, U, "Work/2026/Q1", 0, &info),
			 MAIL_OK);
	assert_string_equal(info.name, "Work/2026/Q1");
	assert_int_equal(info.exists, 0);
	assert_int_equal(info.uidnext, 1);
	mailstore_mailbox_info_free(&info);
	/* the parents came with it */
	status(f->store, U, "Work", &info);
	mailstore_mailbox_info_free(&info);
	status(f->store, U, "Work/2026", &info);
	mailstore_mailbox_info_free(&info);
	assert_int_equal(mailstore_mailbox_create(f->store, U, "Work/2026", 0, &info),
			 MAIL_ERR_EXISTS);
	assert_int_equal(mailstore_mailbox_create(f->store, U, "inbox", 0, &info),
			 MAIL_ERR_EXISTS);
	/* CREATE-SPECIAL-USE */
	assert_int_equal(mailstore_mailbox_create(f->store, U, "Bin", MAILSTORE_MBOX_TRASH, &info),
			 MAIL_OK);
	assert_int_equal(info.attrs, MAILSTORE_MBOX_TRASH);
	mailstore_mailbox_info_free(&info);
	assert_int_equal(mailstore_mailbox_create(f->store, U, "Two",
						  MAILSTORE_MBOX_TRASH | MAILSTORE_MBOX_JUNK, &info),
			 MAIL_ERR_PARAMS);
	assert_int_equal(mailstore_mailbox_create(f->store, U, "Bad", 0x4, &info),
			 MAIL_ERR_PARAMS);
	assert_int_equal(mailstore_mailbox_create(f->store, U, "a//b", 0, &info),
			 MAIL_ERR_PARAMS);
	/* INBOX/ children keep INBOX's spelling whatever the client's */
	assert_int_equal(mailstore_mailbox_create(f->store, U, "inbox/Lists", 0, &info),
			 MAIL_OK);
	assert_string_equal(info.name, "INBOX/Lists");
	mailstore_mailbox_info_free(&info);
	status(f->store, U, "INBOX/Lists", &info);
	mailstore_mailbox_info_free(&info);
	/* the change callback heard of the creation */
	assert_true(f->n_changes > 0);
}

static void test_mailbox_limit(void **state)
{
	struct fixture *f = *state;
	mailstore_close(&f->store);
	struct mailstore_limits lim;
	mailstore_limits_default(&lim);
	lim.max_mailboxes = 8;   /* INBOX + 5 specials + 2 */
	f->store = open_with(f->dir, &lim);
	struct mailstore_mailbox_info info;
	status(f->store, U, "", &info);
	mailstore_mailbox_info_free(&info);
	assert_int_equal(mailstore_mailbox_create(f->store, U, "A", 0, &info), MAIL_OK);
	mailstore_mailbox_info_free(&info);
	/* two more (B and its parent) do not fit */
	assert_int_equal(mailstore_mailbox_create(f->store, U, "P/B", 0, &info), MAIL_ERR_LIMIT);
	assert_int_equal(mailstore_mailbox_exists(f->store, U, "P", &(int){ 0 }), MAIL_OK);
	int exists = 1;
	assert_int_equal(mailstore_mailbox_exists(f->store, U, "P", &exists), MAIL_OK);
	assert_int_equal(exists, 0);
	assert_int_equal(mailstore_mailbox_create(f->store, U, "B", 0, &info), MAIL_OK);
	mailstore_mailbox_info_free(&info);
	assert_int_equal(mailstore_mailbox_create(f->store, U, "C", 0, &info), MAIL_ERR_LIMIT);
}

/* Keys of the store in dir (closed) that start with prefix. */
static size_t raw_count(const char *dir, const void *prefix, size_t plen)
{
	leveldb_options_t *o = leveldb_options_create();
	char *err = NULL;
	leveldb_t *db = leveldb_open(o, dir, &err);
	assert_null(err);
	leveldb_readoptions_t *ro = leveldb_readoptions_create();
	leveldb_iterator_t *it = leveldb_create_iterator(db, ro);
	size_t n = 0;
	for (leveldb_iter_seek(it, prefix, plen); leveldb_iter_valid(it); leveldb_iter_next(it)) {
		size_t klen;
		const char *k = leveldb_iter_key(it, &klen);
		if (klen < plen || memcmp(k, prefix, plen) != 0)
			break;
		n++;
	}
	leveldb_iter_destroy(it);
	leveldb_readoptions_destroy(ro);
	leveldb_close(db);
	leveldb_options_destroy(o);
	return n;
}

static void test_delete(void **state)
{
	struct fixture *f = *state;
	mailstore_close(&f->store);
	struct mailstore_limits lim;
	mailstore_limits_default(&lim);
	lim.purge_step_keys = 3;   /* several steps */
	f->store = open_with(f->dir, &lim);
	mailstore_set_change_cb(f->store, change_cb, f);
	struct mailstore_mailbox_info info;
	assert_int_equal(mailstore_mailbox_create(f->store, U, "Old", 0, &info), MAIL_OK);
	uint32_t old_uidvalidity = info.uidvalidity;
	mailstore_mailbox_info_free(&info);
	for (int i = 0; i < 5; i++)
		put(f->store, U, "Old", "old message body\r\n", i % 2 ? "\\Deleted" : NULL);
	assert_int_equal(mailstore_mailbox_create(f->store, U, "Old/Child", 0, &info), MAIL_OK);
	mailstore_mailbox_info_free(&info);

	assert_int_equal(mailstore_mailbox_delete(f->store, U, "INBOX"), MAIL_ERR_PERM);
	assert_int_equal(mailstore_mailbox_delete(f->store, U, "inbox"), MAIL_ERR_PERM);
	assert_int_equal(mailstore_mailbox_delete(f->store, U, "Nope"), MAIL_ERR_NOT_FOUND);
	assert_int_equal(mailstore_mailbox_delete(f->store, U, "Old"), MAIL_ERR_EXISTS);
	/* another user cannot delete it */
	assert_int_equal(mailstore_mailbox_delete(f->store, V, "Old/Child"), MAIL_ERR_NOT_FOUND);
	assert_int_equal(mailstore_mailbox_delete(f->store, U, "Old/Child"), MAIL_OK);
	assert_int_equal(mailstore_subscribe(f->store, U, "Old", 1), MAIL_OK);
	f->n_changes = 0;
	assert_int_equal(mailstore_mailbox_delete(f->store, U, "Old"), MAIL_OK);
	assert_int_equal(f->n_changes, 1);
	assert_string_equal(f->last_box, "Old");
	assert_int_equal(f->last_gone, 1);
	assert_int_equal(mailstore_status(f->store, U, "Old", &info), MAIL_ERR_NOT_FOUND);
	/* re-created: empty, a new UIDVALIDITY, none of the old messages */
	assert_int_equal(mailstore_mailbox_create(f->store, U, "Old", 0, &info), MAIL_OK);
	assert_int_equal(info.exists, 0);
	assert_true(info.uidvalidity > old_uidvalidity);
	mailstore_mailbox_info_free(&info);
	struct mailstore_message_info mi;
	void *body;
	size_t len;
	assert_int_equal(mailstore_fetch(f->store, U, "Old", 1, &mi, &body, &len),
			 MAIL_ERR_NOT_FOUND);
	/* its subscription stays (RFC 3501 6.3.4) */
	char **subs;
	size_t n;
	assert_int_equal(mailstore_subscriptions(f->store, U, &subs, &n), MAIL_OK);
	int found = 0;
	for (size_t i = 0; i < n; i++)
		found |= strcmp(subs[i], "Old") == 0;
	mailstore_names_free(subs, n);
	assert_true(found);
	/* the purge finishes in steps; then nothing of the old mailbox is
	 * left and its bodies are garbage */
	int more = 1;
	for (int i = 0; i < 100 && more; i++)
		assert_int_equal(mailstore_maintain(f->store, &more), MAIL_OK);
	assert_int_equal(more, 0);
	mailstore_close(&f->store);
	static const char gkey[] = "\x01G";
	assert_int_equal(raw_count(f->dir, gkey, 2), 0);
	char iprefix[64];
	int il = snprintf(iprefix, sizeof iprefix, "\x01I%s", U);
	/* only INBOX-less user U: no message keys at all (the new Old is
	 * empty) */
	assert_int_equal(raw_count(f->dir, iprefix, (size_t)il + 1), 0);
	f->store = open_with(f->dir, NULL);
}

/* A deleted account (mailctl user del): everything of the user goes, the
 * other user keeps everything, and the user created again starts empty. */
static void test_user_purge(void **state)
{
	struct fixture *f = *state;
	struct mailstore_mailbox_info info;
	put(f->store, U, "INBOX", "first\r\n", NULL);
	put(f->store, U, "INBOX", "second message\r\n", "\\Seen");
	assert_int_equal(mailstore_mailbox_create(f->store, U, "Work", 0, &info), MAIL_OK);
	mailstore_mailbox_info_free(&info);
	put(f->store, U, "Work", "work\r\n", NULL);
	assert_int_equal(mailstore_subscribe(f->store, U, "Work", 1), MAIL_OK);
	put(f->store, V, "INBOX", "v's\r\n", NULL);
	status(f->store, U, "INBOX", &info);
	uint32_t old_uv = info.uidvalidity;
	mailstore_mailbox_info_free(&info);
	size_t boxes_before;
	char **names;
	assert_int_equal(mailstore_subscriptions(f->store, U, &names, &boxes_before), MAIL_OK);
	mailstore_names_free(names, boxes_before);

	struct mailstore_purge_stats st;
	f->n_changes = 0;
	assert_int_equal(mailstore_user_purge(f->store, U, &st), MAIL_OK);
	/* INBOX, Work and the special-use mailboxes made for a new user */
	assert_true(st.mailboxes >= 2);
	assert_int_equal(st.messages, 3);
	assert_int_equal(st.bytes, strlen("first\r\n") + strlen("second message\r\n") +
				       strlen("work\r\n"));
	assert_true(f->n_changes >= 2);            /* sessions see them go */
	assert_int_equal(f->last_gone, 1);
	assert_int_equal(mailstore_status(f->store, U, "Work", &info), MAIL_ERR_NOT_FOUND);
	/* what is read now is a new user's: the special-use mailboxes made
	 * again, subscribed; Work's subscription is gone */
	size_t n;
	assert_int_equal(mailstore_subscriptions(f->store, U, &names, &n), MAIL_OK);
	for (size_t i = 0; i < n; i++)
		assert_string_not_equal(names[i], "Work");
	mailstore_names_free(names, n);
	status(f->store, U, "INBOX", &info);
	assert_int_equal(info.exists, 0);
	mailstore_mailbox_info_free(&info);
	/* V is untouched */
	status(f->store, V, "INBOX", &info);
	assert_int_equal(info.exists, 1);
	mailstore_mailbox_info_free(&info);
	/* a second purge finds no message; a bad user is refused */
	assert_int_equal(mailstore_user_purge(f->store, U, &st), MAIL_OK);
	assert_int_equal(st.messages, 0);
	assert_int_equal(mailstore_user_purge(f->store, "", &st), MAIL_ERR_PARAMS);
	/* the user again: an empty INBOX with a new UIDVALIDITY, and the old
	 * message ids are not duplicates any more (delivery records gone) */
	put(f->store, U, "INBOX", "new life\r\n", NULL);
	status(f->store, U, "INBOX", &info);
	assert_int_equal(info.exists, 1);
	assert_true(info.uidvalidity > old_uv);
	mailstore_mailbox_info_free(&info);
	int more = 1;
	for (int i = 0; i < 100 && more; i++)
		assert_int_equal(mailstore_maintain(f->store, &more), MAIL_OK);
	mailstore_close(&f->store);
	static const char gkey[] = "\x01G";
	assert_int_equal(raw_count(f->dir, gkey, 2), 0);
	f->store = open_with(f->dir, NULL);
}

static void test_rename(void **state)
{
	struct fixture *f = *state;
	struct mailstore_mailbox_info info;
	assert_int_equal(mailstore_mailbox_create(f->store, U, "Proj/Sub", 0, &info), MAIL_OK);
	mailstore_mailbox_info_free(&info);
	uint32_t a = put(f->store, U, "Proj", "in proj\r\n", NULL);
	uint32_t b = put(f->store, U, "Proj/Sub", "in sub\r\n", "\\Seen");
	status(f->store, U, "Proj", &info);
	uint32_t old_uv = info.uidvalidity;
	mailstore_mailbox_info_free(&info);
	assert_int_equal(mailstore_subscribe(f->store, U, "Proj/Sub", 1), MAIL_OK);

	assert_int_equal(mailstore_mailbox_rename(f->store, U, "Nope", "X"), MAIL_ERR_NOT_FOUND);
	assert_int_equal(mailstore_mailbox_rename(f->store, U, "Proj", "Sent"), MAIL_ERR_EXISTS);
	assert_int_equal(mailstore_mailbox_rename(f->store, U, "Proj", "Proj/Sub/Deeper"),
			 MAIL_ERR_PARAMS);
	assert_int_equal(mailstore_mailbox_rename(f->store, U, "Proj", "INBOX"), MAIL_ERR_EXISTS);
	assert_int_equal(mailstore_mailbox_rename(f->store, V, "Proj", "Mine"),
			 MAIL_ERR_NOT_FOUND);
	/* a child's target that exists: nothing moves */
	assert_int_equal(mailstore_mailbox_create(f->store, U, "Done/Sub", 0, &info), MAIL_OK);
	mailstore_mailbox_info_free(&info);
	assert_int_equal(mailstore_mailbox_delete(f->store, U, "Done/Sub"), MAIL_OK);
	assert_int_equal(mailstore_mailbox_delete(f->store, U, "Done"), MAIL_OK);

	assert_int_equal(mailstore_mailbox_rename(f->store, U, "Proj", "Archive/2026/Proj"),
			 MAIL_OK);
	assert_int_equal(mailstore_status(f->store, U, "Proj", &info), MAIL_ERR_NOT_FOUND);
	assert_int_equal(mailstore_status(f->store, U, "Proj/Sub", &info), MAIL_ERR_NOT_FOUND);
	status(f->store, U, "Archive/2026", &info);   /* the missing parent */
	mailstore_mailbox_info_free(&info);
	status(f->store, U, "Archive/2026/Proj", &info);
	assert_int_equal(info.exists, 1);
	assert_true(info.uidvalidity != old_uv);
	mailstore_mailbox_info_free(&info);
	status(f->store, U, "Archive/2026/Proj/Sub", &info);
	assert_int_equal(info.exists, 1);
	assert_int_equal(info.unseen, 0);
	assert_true(info.attrs & MAILSTORE_MBOX_SUBSCRIBED);
	mailstore_mailbox_info_free(&info);
	struct mailstore_message_info mi;
	void *body;
	size_t len;
	assert_int_equal(mailstore_fetch(f->store, U, "Archive/2026/Proj", a, &mi, &body, &len),
			 MAIL_OK);
	assert_memory_equal(body, "in proj\r\n", len);
	free(body);
	mailstore_message_info_free(&mi);
	assert_int_equal(mailstore_fetch(f->store, U, "Archive/2026/Proj/Sub", b, &mi, &body, &len),
			 MAIL_OK);
	free(body);
	mailstore_message_info_free(&mi);
	/* the old name's subscription moved */
	char **subs;
	size_t n;
	assert_int_equal(mailstore_subscriptions(f->store, U, &subs, &n), MAIL_OK);
	for (size_t i = 0; i < n; i++)
		assert_string_not_equal(subs[i], "Proj/Sub");
	mailstore_names_free(subs, n);
}

static void test_rename_inbox(void **state)
{
	struct fixture *f = *state;
	uint32_t u1 = put(f->store, U, "", "one\r\n", NULL);
	put(f->store, U, "", "two\r\n", "\\Seen");
	struct mailstore_mailbox_info in;
	status(f->store, U, "INBOX", &in);
	assert_int_equal(mailstore_mailbox_rename(f->store, U, "INBOX", "Old Mail"), MAIL_OK);
	struct mailstore_mailbox_info after, moved;
	status(f->store, U, "INBOX", &after);
	assert_int_equal(after.exists, 0);
	assert_int_equal(after.unseen, 0);
	assert_int_equal(after.uidvalidity, in.uidvalidity);
	assert_int_equal(after.uidnext, in.uidnext);
	assert_true(after.highest_modseq > in.highest_modseq);
	status(f->store, U, "Old Mail", &moved);
	assert_int_equal(moved.exists, 2);
	assert_int_equal(moved.unseen, 1);
	assert_true(moved.uidvalidity != in.uidvalidity);
	struct mailstore_message_info mi;
	void *body;
	size_t len;
	assert_int_equal(mailstore_fetch(f->store, U, "Old Mail", u1, &mi, &body, &len), MAIL_OK);
	assert_memory_equal(body, "one\r\n", len);
	free(body);
	mailstore_message_info_free(&mi);
	/* INBOX's old uids never come back */
	uint32_t u3 = put(f->store, U, "", "three\r\n", NULL);
	assert_int_equal(u3, in.uidnext);
	/* a client that knew INBOX: its expunges are no longer exact */
	struct mailstore_changes_cursor cur = { 0 };
	struct mailstore_changes ch;
	assert_int_equal(mailstore_changes(f->store, U, "INBOX", in.highest_modseq, in.uidnext, &cur,
					   &ch),
			 MAIL_OK);
	assert_int_equal(cur.phase, MAILSTORE_CHANGES_DONE);
	assert_int_equal(ch.expunged_exact, 0);
	assert_int_equal(ch.n_expunged, 1);
	assert_int_equal(ch.expunged[0].first, 1);
	assert_int_equal(ch.expunged[0].last, in.uidnext - 1);
	assert_int_equal(ch.n_added, 1);
	assert_int_equal(ch.added[0].first, u3);
	mailstore_changes_free(&ch);
	mailstore_mailbox_info_free(&in);
	mailstore_mailbox_info_free(&after);
	mailstore_mailbox_info_free(&moved);
}

static void test_subscriptions(void **state)
{
	struct fixture *f = *state;
	mailstore_close(&f->store);
	struct mailstore_limits lim;
	mailstore_limits_default(&lim);
	lim.max_subscriptions = 8;
	f->store = open_with(f->dir, &lim);
	/* a name that does not exist may be subscribed */
	assert_int_equal(mailstore_subscribe(f->store, U, "Ghost", 1), MAIL_OK);
	assert_int_equal(mailstore_subscribe(f->store, U, "Ghost", 1), MAIL_OK);
	assert_int_equal(mailstore_subscribe(f->store, U, "bad%name", 1), MAIL_ERR_PARAMS);
	char **subs;
	size_t n;
	assert_int_equal(mailstore_subscriptions(f->store, U, &subs, &n), MAIL_OK);
	assert_int_equal(n, 1);
	assert_string_equal(subs[0], "Ghost");
	mailstore_names_free(subs, n);
	/* the user's INBOX and specials come subscribed: 7 */
	struct mailstore_mailbox_info info;
	status(f->store, U, "", &info);
	mailstore_mailbox_info_free(&info);
	assert_int_equal(mailstore_subscribe(f->store, U, "Two", 1), MAIL_OK);
	assert_int_equal(mailstore_subscribe(f->store, U, "Three", 1), MAIL_ERR_LIMIT);
	assert_int_equal(mailstore_subscribe(f->store, U, "Ghost", 0), MAIL_OK);
	assert_int_equal(mailstore_subscribe(f->store, U, "Three", 1), MAIL_OK);
	/* another user's list is their own */
	assert_int_equal(mailstore_subscriptions(f->store, V, &subs, &n), MAIL_OK);
	assert_int_equal(n, 0);
	mailstore_names_free(subs, n);
}

/* ---- pages ------------------------------------------------------------------ */

static void test_uids_pages(void **state)
{
	struct fixture *f = *state;
	mailstore_close(&f->store);
	struct mailstore_limits lim;
	mailstore_limits_default(&lim);
	lim.page_scan_keys = 4;
	f->store = open_with(f->dir, &lim);
	for (int i = 0; i < 10; i++)
		put(f->store, U, "", "m\r\n", i < 3 ? "\\Seen" : NULL);
	uint32_t del[] = { 2, 5, 6 };
	for (size_t i = 0; i < 3; i++)
		set_flags(f->store, U, "", del[i], MAILSTORE_FLAGS_ADD, "\\Deleted", MAIL_OK);
	assert_int_equal(expunge(f->store, U, ""), 3);
	/* left: 1 3 4 7 8 9 10; first unseen 4 */
	uint32_t after = 0, unseen = 0;
	struct mailstore_mailbox_info info;
	struct search_uid_range *r;
	size_t n;
	uint32_t got[16];
	size_t n_got = 0;
	int pages = 0;
	do {
		assert_int_equal(mailstore_uids(f->store, U, "", after, 0, &r, &n, &after, &unseen,
						&info),
				 MAIL_OK);
		if (pages == 0) {
			assert_int_equal(unseen, 4);
			assert_int_equal(info.exists, 7);
			assert_int_equal(info.uidnext, 11);
		}
		for (size_t i = 0; i < n; i++)
			for (uint32_t u = r[i].first; u <= r[i].last; u++)
				got[n_got++] = u;
		free(r);
		mailstore_mailbox_info_free(&info);
		pages++;
	} while (after != 0 && pages < 10);
	assert_int_equal(pages, 2);
	static const uint32_t want[] = { 1, 3, 4, 7, 8, 9, 10 };
	assert_int_equal(n_got, 7);
	assert_memory_equal(got, want, sizeof want);
	/* below_uid bounds the listing */
	assert_int_equal(mailstore_uids(f->store, U, "", 0, 8, &r, &n, &after, &unseen, &info),
			 MAIL_OK);
	assert_int_equal(n, 3);   /* 1, 3-4, 7 */
	assert_int_equal(r[2].first, 7);
	assert_int_equal(r[2].last, 7);
	assert_int_equal(after, 0);
	free(r);
	mailstore_mailbox_info_free(&info);
	assert_int_equal(mailstore_uids(f->store, U, "Nope", 0, 0, &r, &n, &after, &unseen, &info),
			 MAIL_ERR_NOT_FOUND);
	assert_int_equal(mailstore_uids(f->store, V, "", 0, 0, &r, &n, &after, &unseen, &info),
			 MAIL_OK);
	assert_int_equal(n, 0);   /* V's own new INBOX */
	mailstore_mailbox_info_free(&info);
}

static void uids_are(mailstore *s, const char *user, const char *box, const uint32_t *want,
		     size_t n_want)
{
	uint32_t after = 0, unseen = 0, got[64];
	size_t n_got = 0;
	do {
		struct search_uid_range *r;
		size_t n;
		struct mailstore_mailbox_info info;
		assert_int_equal(mailstore_uids(s, user, box, after, 0, &r, &n, &after, &unseen,
						&info),
				 MAIL_OK);
		for (size_t i = 0; i < n; i++)
			for (uint32_t u = r[i].first; u <= r[i].last && n_got < 64; u++)
				got[n_got++] = u;
		free(r);
		mailstore_mailbox_info_free(&info);
	} while (after != 0);
	assert_int_equal(n_got, n_want);
	if (n_want > 0)
		assert_memory_equal(got, want, n_want * sizeof *want);
}

/* The scans seek from the mailbox's lowest uid (its floor), which moves up
 * as the lowest messages leave, whichever way they leave, and never past a
 * message that is still there. */
static void test_uid_floor(void **state)
{
	struct fixture *f = *state;
	for (int i = 0; i < 8; i++)
		put(f->store, U, "", "m\r\n", NULL);
	/* the lowest two go: the floor moves to 3 */
	set_flags(f->store, U, "", 1, MAILSTORE_FLAGS_ADD, "\\Deleted", MAIL_OK);
	set_flags(f->store, U, "", 2, MAILSTORE_FLAGS_ADD, "\\Deleted", MAIL_OK);
	assert_int_equal(expunge(f->store, U, ""), 2);
	uids_are(f->store, U, "", (const uint32_t[]){ 3, 4, 5, 6, 7, 8 }, 6);
	/* one in the middle: the floor stays */
	set_flags(f->store, U, "", 5, MAILSTORE_FLAGS_ADD, "\\Deleted", MAIL_OK);
	assert_int_equal(expunge(f->store, U, ""), 1);
	/* the lowest and the one above it at once, with a gap between */
	set_flags(f->store, U, "", 3, MAILSTORE_FLAGS_ADD, "\\Deleted", MAIL_OK);
	set_flags(f->store, U, "", 4, MAILSTORE_FLAGS_ADD, "\\Deleted", MAIL_OK);
	assert_int_equal(expunge(f->store, U, ""), 2);
	uids_are(f->store, U, "", (const uint32_t[]){ 6, 7, 8 }, 3);
	/* \Deleted set then cleared: EXPUNGE finds nothing, then finds 8 */
	set_flags(f->store, U, "", 7, MAILSTORE_FLAGS_ADD, "\\Deleted", MAIL_OK);
	set_flags(f->store, U, "", 7, MAILSTORE_FLAGS_REMOVE, "\\Deleted", MAIL_OK);
	assert_int_equal(expunge(f->store, U, ""), 0);
	set_flags(f->store, U, "", 8, MAILSTORE_FLAGS_ADD, "\\Deleted", MAIL_OK);
	assert_int_equal(expunge(f->store, U, ""), 1);
	/* the lowest leaves by MOVE */
	struct search_uid_range six = { 6, 6 };
	uint32_t uv, *src, *dst;
	size_t n;
	assert_int_equal(mailstore_copy(f->store, U, "INBOX", &six, 1, "Archive", 1, &uv, &src,
					&dst, &n),
			 MAIL_OK);
	assert_int_equal(n, 1);
	free(src);
	free(dst);
	uids_are(f->store, U, "", (const uint32_t[]){ 7 }, 1);
	/* emptied: the floor is uidnext, and the next delivery is above it */
	set_flags(f->store, U, "", 7, MAILSTORE_FLAGS_ADD, "\\Deleted", MAIL_OK);
	assert_int_equal(expunge(f->store, U, ""), 1);
	uids_are(f->store, U, "", NULL, 0);
	assert_int_equal(put(f->store, U, "", "m\r\n", "\\Deleted"), 9);
	uids_are(f->store, U, "", (const uint32_t[]){ 9 }, 1);
	struct mailstore_mailbox_info info;
	status(f->store, U, "", &info);
	assert_int_equal(info.exists, 1);
	assert_int_equal(info.deleted, 1);
	mailstore_mailbox_info_free(&info);
	assert_int_equal(expunge(f->store, U, ""), 1);
	/* and the floor survives a reopen */
	mailstore_close(&f->store);
	f->store = open_with(f->dir, NULL);
	put(f->store, U, "", "m\r\n", NULL);
	uids_are(f->store, U, "", (const uint32_t[]){ 10 }, 1);
}

static void test_fetch_meta(void **state)
{
	struct fixture *f = *state;
	mailstore_close(&f->store);
	struct mailstore_limits lim;
	mailstore_limits_default(&lim);
	lim.page_max_messages = 3;
	f->store = open_with(f->dir, &lim);
	static const char msg[] = "Subject: hello\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n"
				  "body\r\n";
	for (int i = 0; i < 8; i++)
		put(f->store, U, "", msg, NULL);
	struct mailstore_mailbox_info info;
	status(f->store, U, "", &info);
	uint64_t ms = info.highest_modseq;
	mailstore_mailbox_info_free(&info);
	set_flags(f->store, U, "", 6, MAILSTORE_FLAGS_ADD, "\\Flagged", MAIL_OK);

	struct search_uid_range all = { 1, UINT32_MAX };
	struct mailstore_meta *m;
	size_t n;
	uint32_t after = 0;
	size_t total = 0;
	int pages = 0;
	do {
		assert_int_equal(mailstore_fetch_meta(f->store, U, "", &all, 1, 0, 1, after, &m, &n,
						      &after),
				 MAIL_OK);
		for (size_t i = 0; i < n; i++) {
			struct store_structure st;
			assert_int_equal(m[i].info.uid, total + i + 1);
			assert_int_equal(store_structure_decode(m[i].structure, m[i].structure_len,
								&st),
					 0);
			assert_non_null(memmem(st.envelope, st.envelope_len, "\"hello\"", 7));
			/* lib/mime's analysis: BODYSTRUCTURE and a part table */
			assert_non_null(memmem(st.bodystructure, st.bodystructure_len,
					       "\"TEXT\" \"PLAIN\"", 14));
			assert_true(st.parts_len > 0);
		}
		total += n;
		mailstore_metas_free(m, n);
		pages++;
	} while (after != 0 && pages < 10);
	assert_int_equal(total, 8);
	assert_int_equal(pages, 3);
	/* CHANGEDSINCE: one page from the modseq index */
	assert_int_equal(mailstore_fetch_meta(f->store, U, "", &all, 1, ms, 0, 0, &m, &n, &after),
			 MAIL_OK);
	assert_int_equal(n, 1);
	assert_int_equal(m[0].info.uid, 6);
	assert_null(m[0].structure);
	assert_int_equal(after, 0);
	mailstore_metas_free(m, n);
	/* sparse ranges */
	struct search_uid_range some[] = { { 2, 2 }, { 5, 7 }, { 100, 200 } };
	assert_int_equal(mailstore_fetch_meta(f->store, U, "", some, 3, 0, 0, 0, &m, &n, &after),
			 MAIL_OK);
	assert_int_equal(n, 3);
	assert_int_equal(m[0].info.uid, 2);
	assert_int_equal(m[2].info.uid, 6);
	mailstore_metas_free(m, n);
	assert_int_equal(mailstore_fetch_meta(f->store, U, "", some, 3, 0, 0, after == 0 ? 6 : 6,
					      &m, &n, &after),
			 MAIL_OK);
	assert_int_equal(n, 1);
	assert_int_equal(m[0].info.uid, 7);
	mailstore_metas_free(m, n);
	/* bad ranges */
	struct search_uid_range bad[] = { { 5, 7 }, { 2, 3 } };
	assert_int_equal(mailstore_fetch_meta(f->store, U, "", bad, 2, 0, 0, 0, &m, &n, &after),
			 MAIL_ERR_PARAMS);
	assert_int_equal(mailstore_fetch_meta(f->store, V, "Nope", &all, 1, 0, 0, 0, &m, &n, &after),
			 MAIL_ERR_NOT_FOUND);
}

/* FETCH_META's bytes: in order while they fit the budget, the metas not
 * read again; a message expunged since the metas were read, or one past
 * the budget, gets none (the caller reads those otherwise). */
static void test_fetch_meta_content(void **state)
{
	struct fixture *f = *state;
	static const char *bodies[] = { "Subject: a\r\n\r\none\r\n", "Subject: b\r\n\r\ntwo two\r\n",
					"Subject: c\r\n\r\nthree three three\r\n" };
	for (int i = 0; i < 3; i++)
		put(f->store, U, "", bodies[i], NULL);
	struct search_uid_range all = { 1, UINT32_MAX };
	struct mailstore_meta *m;
	size_t n;
	uint32_t after;
	assert_int_equal(mailstore_fetch_meta(f->store, U, "", &all, 1, 0, 0, 0, &m, &n, &after),
			 MAIL_OK);
	assert_int_equal(n, 3);
	/* the first two fit, the third does not */
	uint64_t budget = strlen(bodies[0]) + strlen(bodies[1]) + 1;
	assert_int_equal(mailstore_fetch_meta_content(f->store, U, "", m, n, budget), MAIL_OK);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(m[i].content_len, strlen(bodies[i]));
		assert_memory_equal(m[i].content, bodies[i], strlen(bodies[i]));
	}
	assert_null(m[2].content);
	mailstore_metas_free(m, n);

	/* uid 2 expunged after its meta was read: no bytes, the others do */
	assert_int_equal(mailstore_fetch_meta(f->store, U, "", &all, 1, 0, 0, 0, &m, &n, &after),
			 MAIL_OK);
	set_flags(f->store, U, "", 2, MAILSTORE_FLAGS_ADD, "\\Deleted", MAIL_OK);
	assert_int_equal(expunge(f->store, U, ""), 1);
	assert_int_equal(mailstore_fetch_meta_content(f->store, U, "", m, n, 1 << 20), MAIL_OK);
	assert_non_null(m[0].content);
	assert_null(m[1].content);
	assert_memory_equal(m[2].content, bodies[2], strlen(bodies[2]));
	mailstore_metas_free(m, n);

	assert_int_equal(mailstore_fetch_meta_content(f->store, V, "Nope", NULL, 0, 1 << 20),
			 MAIL_ERR_NOT_FOUND);
}

static void test_fetch_range(void **state)
{
	struct fixture *f = *state;
	uint32_t uid = put(f->store, U, "", "0123456789", NULL);
	struct mailstore_message_info mi;
	void *body;
	size_t len;
	uint64_t total;
	assert_int_equal(mailstore_fetch_range(f->store, U, "", uid, 2, 3, &mi, &body, &len, &total),
			 MAIL_OK);
	assert_int_equal(total, 10);
	assert_int_equal(len, 3);
	assert_memory_equal(body, "234", 3);
	free(body);
	mailstore_message_info_free(&mi);
	assert_int_equal(mailstore_fetch_range(f->store, U, "", uid, 7, 0, &mi, &body, &len, &total),
			 MAIL_OK);
	assert_int_equal(len, 3);
	assert_memory_equal(body, "789", 3);
	free(body);
	mailstore_message_info_free(&mi);
	assert_int_equal(mailstore_fetch_range(f->store, U, "", uid, 50, 5, &mi, &body, &len,
					       &total),
			 MAIL_OK);
	assert_int_equal(len, 0);
	free(body);
	mailstore_message_info_free(&mi);
	assert_int_equal(mailstore_fetch_range(f->store, V, "", uid, 0, 0, &mi, &body, &len, &total),
			 MAIL_ERR_NOT_FOUND);
}

/* ---- changes since a MODSEQ -------------------------------------------------- */

/* Every page of changes into one (ranges concatenated, changed appended). */
static void changes_all(mailstore *s, const char *user, const char *box, uint64_t since,
			uint32_t known_uidnext, struct mailstore_changes *out, int *pages_r)
{
	memset(out, 0, sizeof *out);
	struct mailstore_changes_cursor cur = { 0 };
	*pages_r = 0;
	while (cur.phase != MAILSTORE_CHANGES_DONE) {
		struct mailstore_changes c;
		assert_int_equal(mailstore_changes(s, user, box, since, known_uidnext, &cur, &c),
				 MAIL_OK);
		(*pages_r)++;
		assert_true(*pages_r < 100);
		out->highest_modseq = c.highest_modseq;
		out->uidnext = c.uidnext;
		out->exists = c.exists;
		out->expunged_exact = c.expunged_exact;
		out->added = xrealloc(out->added, (out->n_added + c.n_added + 1) * sizeof *c.added);
		if (c.n_added > 0)
			memcpy(out->added + out->n_added, c.added, c.n_added * sizeof *c.added);
		out->n_added += c.n_added;
		out->expunged = xrealloc(out->expunged,
					 (out->n_expunged + c.n_expunged + 1) * sizeof *c.expunged);
		if (c.n_expunged > 0)
			memcpy(out->expunged + out->n_expunged, c.expunged, c.n_expunged * sizeof *c.expunged);
		out->n_expunged += c.n_expunged;
		out->changed = xrealloc(out->changed,
					(out->n_changed + c.n_changed + 1) * sizeof *c.changed);
		if (c.n_changed > 0)
			memcpy(out->changed + out->n_changed, c.changed, c.n_changed * sizeof *c.changed);
		out->n_changed += c.n_changed;
		free(c.added);
		free(c.expunged);
		free(c.changed);   /* the flags moved to out */
	}
}

static size_t ranges_count(const struct search_uid_range *r, size_t n)
{
	size_t c = 0;
	for (size_t i = 0; i < n; i++)
		c += r[i].last - r[i].first + 1;
	return c;
}

static void test_changes(void **state)
{
	struct fixture *f = *state;
	mailstore_close(&f->store);
	struct mailstore_limits lim;
	mailstore_limits_default(&lim);
	lim.page_scan_keys = 3;
	lim.max_tombstones = 5;
	f->store = open_with(f->dir, &lim);
	for (int i = 0; i < 10; i++)
		put(f->store, U, "", "m\r\n", NULL);
	struct mailstore_mailbox_info info;
	status(f->store, U, "", &info);
	uint64_t m0 = info.highest_modseq;
	uint32_t next0 = info.uidnext;   /* 11 */
	mailstore_mailbox_info_free(&info);

	/* nothing since now */
	struct mailstore_changes ch;
	int pages;
	changes_all(f->store, U, "", m0, next0, &ch, &pages);
	assert_int_equal(ch.n_changed + ch.n_added + ch.n_expunged, 0);
	assert_int_equal(ch.expunged_exact, 1);
	mailstore_changes_free(&ch);

	set_flags(f->store, U, "", 3, MAILSTORE_FLAGS_ADD, "\\Seen", MAIL_OK);
	set_flags(f->store, U, "", 7, MAILSTORE_FLAGS_ADD, "\\Seen", MAIL_OK);
	set_flags(f->store, U, "", 4, MAILSTORE_FLAGS_ADD, "\\Deleted", MAIL_OK);
	set_flags(f->store, U, "", 9, MAILSTORE_FLAGS_ADD, "\\Deleted", MAIL_OK);
	assert_int_equal(expunge(f->store, U, ""), 2);
	uint32_t u11 = put(f->store, U, "", "new\r\n", NULL);
	uint32_t u12 = put(f->store, U, "", "new\r\n", NULL);

	changes_all(f->store, U, "", m0, next0, &ch, &pages);
	assert_true(pages > 1);   /* three keys a page */
	assert_int_equal(ch.expunged_exact, 1);
	assert_int_equal(ch.n_changed, 2);   /* 3 and 7; 4 and 9 are gone */
	assert_int_equal(ch.changed[0].uid, 3);
	assert_int_equal(ch.changed[1].uid, 7);
	assert_string_equal(ch.changed[1].flags[0], "\\Seen");
	assert_int_equal(ranges_count(ch.expunged, ch.n_expunged), 2);
	assert_int_equal(ch.expunged[0].first, 4);
	assert_int_equal(ch.n_added, 1);
	assert_int_equal(ch.added[0].first, u11);
	assert_int_equal(ch.added[0].last, u12);
	assert_int_equal(ch.exists, 10);
	assert_int_equal(ch.uidnext, 13);
	for (size_t i = 0; i < ch.n_changed; i++)
		mailstore_message_info_free(&ch.changed[i]);
	free(ch.changed);
	ch.changed = NULL;
	ch.n_changed = 0;
	mailstore_changes_free(&ch);

	/* more expunges than tombstones are kept: an old MODSEQ gets the
	 * inexact answer, every absent uid below known_uidnext */
	for (uint32_t u = 1; u <= 8; u++)
		set_flags(f->store, U, "", u, MAILSTORE_FLAGS_ADD, "\\Deleted", MAIL_OK);
	assert_int_equal(expunge(f->store, U, ""), 7);   /* 1 2 3 5 6 7 8: more than 5 */
	changes_all(f->store, U, "", m0, next0, &ch, &pages);
	assert_int_equal(ch.expunged_exact, 0);
	/* present below 11: 10 only */
	assert_int_equal(ranges_count(ch.expunged, ch.n_expunged), 9);
	assert_int_equal(ch.expunged[0].first, 1);
	assert_int_equal(ch.expunged[0].last, 9);
	for (size_t i = 0; i < ch.n_changed; i++)
		mailstore_message_info_free(&ch.changed[i]);
	free(ch.changed);
	ch.changed = NULL;
	ch.n_changed = 0;
	mailstore_changes_free(&ch);
	/* a recent MODSEQ is still exact */
	status(f->store, U, "", &info);
	uint64_t m1 = info.highest_modseq;
	mailstore_mailbox_info_free(&info);
	set_flags(f->store, U, "", 10, MAILSTORE_FLAGS_ADD, "\\Deleted", MAIL_OK);
	assert_int_equal(expunge(f->store, U, ""), 1);
	changes_all(f->store, U, "", m1, 13, &ch, &pages);
	assert_int_equal(ch.expunged_exact, 1);
	assert_int_equal(ranges_count(ch.expunged, ch.n_expunged), 1);
	assert_int_equal(ch.expunged[0].first, 10);
	for (size_t i = 0; i < ch.n_changed; i++)
		mailstore_message_info_free(&ch.changed[i]);
	free(ch.changed);
	ch.changed = NULL;
	ch.n_changed = 0;
	mailstore_changes_free(&ch);
	/* the bound holds */
	mailstore_close(&f->store);
	char tprefix[64];
	int tl = snprintf(tprefix, sizeof tprefix, "\x01T%s", U);
	assert_true(raw_count(f->dir, tprefix, (size_t)tl + 1) <= 5);
	f->store = open_with(f->dir, NULL);
	struct mailstore_changes_cursor cur = { 0 };
	assert_int_equal(mailstore_changes(f->store, V, "Nope", 0, 1, &cur, &ch),
			 MAIL_ERR_NOT_FOUND);
}

/* ---- APPEND, COPY, MOVE ----------------------------------------------------------- */

static void test_append(void **state)
{
	struct fixture *f = *state;
	const char *seen[] = { "\\Seen", "$Sent" };
	struct mailstore_msg_in in[3] = {
		{ .body = "Subject: a\r\n\r\na\r\n", .body_len = 17, .flags = seen, .n_flags = 2,
		  .internal_date = 1600000000000 },
		{ .body = "Subject: b\r\n\r\nb\r\n", .body_len = 17 },
		{ .body = "Subject: c\r\n\r\nc\r\n", .body_len = 17 },
	};
	uint32_t uv, *uids;
	assert_int_equal(mailstore_append(f->store, U, "Sent", in, 3, &uv, &uids), MAIL_OK);
	assert_int_equal(uids[0], 1);
	assert_int_equal(uids[2], 3);
	free(uids);
	struct mailstore_mailbox_info info;
	status(f->store, U, "Sent", &info);
	assert_int_equal(info.uidvalidity, uv);
	assert_int_equal(info.exists, 3);
	assert_int_equal(info.unseen, 2);
	assert_int_equal(info.size, 51);
	mailstore_mailbox_info_free(&info);
	struct mailstore_message_info mi;
	void *body;
	size_t len;
	assert_int_equal(mailstore_fetch(f->store, U, "Sent", 1, &mi, &body, &len), MAIL_OK);
	assert_int_equal(mi.internal_date, 1600000000000);
	assert_int_equal(mi.n_flags, 2);
	free(body);
	mailstore_message_info_free(&mi);

	assert_int_equal(mailstore_append(f->store, U, "Nope", in, 1, &uv, &uids),
			 MAIL_ERR_NOT_FOUND);
	assert_int_equal(mailstore_append(f->store, U, "Sent", in, 0, &uv, &uids),
			 MAIL_ERR_PARAMS);
	/* a structure record given by the primary is stored as is; a bad
	 * one is refused */
	buf st;
	buf_init(&st);
	struct store_structure mine = { .envelope = "(NIL)", .envelope_len = 5,
					.bodystructure = "(x)", .bodystructure_len = 3 };
	store_structure_encode(&st, &mine);
	struct mailstore_msg_in given = { .body = "x\r\n", .body_len = 3, .structure = st.data,
					  .structure_len = st.len };
	assert_int_equal(mailstore_append(f->store, U, "Sent", &given, 1, &uv, &uids), MAIL_OK);
	struct search_uid_range r = { uids[0], uids[0] };
	free(uids);
	struct mailstore_meta *m;
	size_t n;
	uint32_t after;
	assert_int_equal(mailstore_fetch_meta(f->store, U, "Sent", &r, 1, 0, 1, 0, &m, &n, &after),
			 MAIL_OK);
	assert_int_equal(n, 1);
	assert_int_equal(m[0].structure_len, st.len);
	assert_memory_equal(m[0].structure, st.data, st.len);
	mailstore_metas_free(m, n);
	given.structure_len = st.len - 1;
	assert_int_equal(mailstore_append(f->store, U, "Sent", &given, 1, &uv, &uids),
			 MAIL_ERR_PARAMS);
	buf_deinit(&st);

	/* limits: APPENDLIMIT, messages per call, bytes per call */
	mailstore_close(&f->store);
	struct mailstore_limits lim;
	mailstore_limits_default(&lim);
	lim.max_message_size = 16;
	lim.max_append_messages = 2;
	lim.max_append_bytes = 20;
	f->store = open_with(f->dir, &lim);
	assert_int_equal(mailstore_append(f->store, U, "Sent", in, 1, &uv, &uids),
			 MAIL_ERR_TOO_BIG);
	struct mailstore_msg_in small[3] = {
		{ .body = "0123456789", .body_len = 10 }, { .body = "0123456789", .body_len = 10 },
		{ .body = "0", .body_len = 1 },
	};
	assert_int_equal(mailstore_append(f->store, U, "Sent", small, 3, &uv, &uids),
			 MAIL_ERR_LIMIT);
	small[1].body_len = 11;
	assert_int_equal(mailstore_append(f->store, U, "Sent", small, 2, &uv, &uids),
			 MAIL_ERR_LIMIT);
	small[1].body_len = 10;
	assert_int_equal(mailstore_append(f->store, U, "Sent", small, 2, &uv, &uids), MAIL_OK);
	free(uids);
	/* nothing of the refused ones was written */
	status(f->store, U, "Sent", &info);
	assert_int_equal(info.exists, 6);
	mailstore_mailbox_info_free(&info);
}

static void test_copy_move(void **state)
{
	struct fixture *f = *state;
	for (int i = 0; i < 5; i++)
		put(f->store, U, "", i == 1 ? "Subject: two\r\n\r\nx\r\n" : "m\r\n",
		    i == 1 ? "$Important" : NULL);
	struct mailstore_mailbox_info info;
	assert_int_equal(mailstore_mailbox_create(f->store, U, "Dest", 0, &info), MAIL_OK);
	mailstore_mailbox_info_free(&info);
	put(f->store, U, "Dest", "already\r\n", NULL);

	struct search_uid_range r[] = { { 2, 3 }, { 5, 9 } };
	uint32_t uv, *src, *dst;
	size_t n;
	assert_int_equal(mailstore_copy(f->store, U, "INBOX", r, 2, "Dest", 0, &uv, &src, &dst, &n),
			 MAIL_OK);
	assert_int_equal(n, 3);
	assert_int_equal(src[0], 2);
	assert_int_equal(src[2], 5);
	assert_int_equal(dst[0], 2);
	assert_int_equal(dst[2], 4);
	free(src);
	free(dst);
	status(f->store, U, "Dest", &info);
	assert_int_equal(info.uidvalidity, uv);
	assert_int_equal(info.exists, 4);
	assert_int_equal(info.n_keywords, 1);
	mailstore_mailbox_info_free(&info);
	struct mailstore_message_info mi;
	void *body;
	size_t len;
	assert_int_equal(mailstore_fetch(f->store, U, "Dest", 2, &mi, &body, &len), MAIL_OK);
	assert_memory_equal(body, "Subject: two\r\n\r\nx\r\n", len);
	assert_string_equal(mi.flags[0], "$Important");
	free(body);
	mailstore_message_info_free(&mi);
	status(f->store, U, "INBOX", &info);
	assert_int_equal(info.exists, 5);
	uint64_t before = info.highest_modseq;
	mailstore_mailbox_info_free(&info);

	/* MOVE: copied and expunged in one step, with tombstones */
	struct search_uid_range one = { 1, 1 };
	assert_int_equal(mailstore_copy(f->store, U, "INBOX", &one, 1, "Dest", 1, &uv, &src, &dst,
					&n),
			 MAIL_OK);
	assert_int_equal(n, 1);
	assert_int_equal(dst[0], 5);
	free(src);
	free(dst);
	status(f->store, U, "INBOX", &info);
	assert_int_equal(info.exists, 4);
	mailstore_mailbox_info_free(&info);
	struct mailstore_changes_cursor cur = { 0 };
	struct mailstore_changes ch;
	assert_int_equal(mailstore_changes(f->store, U, "INBOX", before, 6, &cur, &ch), MAIL_OK);
	assert_int_equal(ch.expunged_exact, 1);
	assert_int_equal(ch.n_expunged, 1);
	assert_int_equal(ch.expunged[0].first, 1);
	mailstore_changes_free(&ch);
	/* the moved message's body reads from its new place */
	assert_int_equal(mailstore_fetch(f->store, U, "Dest", 5, &mi, &body, &len), MAIL_OK);
	assert_memory_equal(body, "m\r\n", len);
	free(body);
	mailstore_message_info_free(&mi);

	/* nothing to copy: fine, no uids */
	struct search_uid_range none = { 100, 200 };
	assert_int_equal(mailstore_copy(f->store, U, "INBOX", &none, 1, "Dest", 0, &uv, &src, &dst,
					&n),
			 MAIL_OK);
	assert_int_equal(n, 0);
	assert_int_equal(mailstore_copy(f->store, U, "INBOX", &one, 1, "Nope", 0, &uv, &src, &dst,
					&n),
			 MAIL_ERR_NOT_FOUND);
	assert_int_equal(mailstore_copy(f->store, U, "INBOX", &one, 1, "inbox", 1, &uv, &src, &dst,
					&n),
			 MAIL_ERR_PARAMS);
	assert_int_equal(mailstore_copy(f->store, V, "INBOX", r, 2, "Dest", 0, &uv, &src, &dst, &n),
			 MAIL_ERR_NOT_FOUND);
	/* COPY within one mailbox */
	struct search_uid_range two = { 2, 2 };
	assert_int_equal(mailstore_copy(f->store, U, "INBOX", &two, 1, "INBOX", 0, &uv, &src, &dst,
					&n),
			 MAIL_OK);
	assert_int_equal(dst[0], 6);
	free(src);
	free(dst);
	/* limits */
	mailstore_close(&f->store);
	struct mailstore_limits lim;
	mailstore_limits_default(&lim);
	lim.max_copy_messages = 2;
	f->store = open_with(f->dir, &lim);
	struct search_uid_range all = { 1, UINT32_MAX };
	assert_int_equal(mailstore_copy(f->store, U, "INBOX", &all, 1, "Dest", 0, &uv, &src, &dst,
					&n),
			 MAIL_ERR_LIMIT);
	status(f->store, U, "Dest", &info);
	assert_int_equal(info.exists, 5);
	mailstore_mailbox_info_free(&info);
}

/* ---- upgrade, snapshots, determinism ----------------------------------------------- */

/* A store whose INBOX record is of the version before the counters, and
 * without the 'N'/'W' records or the 'V' level 3: the open upgrades it. */
static void test_upgrade_level3(void **state)
{
	struct fixture *f = *state;
	put(f->store, U, "", "aaaa\r\n", NULL);
	put(f->store, U, "", "bb\r\n", "\\Seen");
	put(f->store, U, "", "c\r\n", "$Kw");
	mailstore_close(&f->store);
	leveldb_options_t *o = leveldb_options_create();
	char *err = NULL;
	leveldb_t *db = leveldb_open(o, f->dir, &err);
	assert_null(err);
	leveldb_readoptions_t *ro = leveldb_readoptions_create();
	leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
	char mkey[64];
	int ml = snprintf(mkey, sizeof mkey, "\x01M%s", U);
	memcpy(mkey + ml + 1, "INBOX", 5);
	size_t mklen = (size_t)ml + 1 + 5;
	size_t vlen;
	char *val = leveldb_get(db, ro, mkey, mklen, &vlen, &err);
	assert_non_null(val);
	leveldb_put(db, wo, mkey, mklen, val, 29, &err);   /* the old record */
	leveldb_free(val);
	static const char vkey[2] = { 0x01, 'V' };
	static const char level2[2] = { 0x01, 2 };
	leveldb_put(db, wo, vkey, 2, level2, 2, &err);
	const char kinds[] = { 'N', 'W' };
	for (size_t i = 0; i < 2; i++) {
		char p[64];
		int pl = snprintf(p, sizeof p, "\x01%c%s", kinds[i], U);
		leveldb_iterator_t *it = leveldb_create_iterator(db, ro);
		for (leveldb_iter_seek(it, p, (size_t)pl + 1); leveldb_iter_valid(it);
		     leveldb_iter_next(it)) {
			size_t kl;
			const char *k = leveldb_iter_key(it, &kl);
			if (kl < (size_t)pl + 1 || memcmp(k, p, (size_t)pl + 1) != 0)
				break;
			leveldb_delete(db, wo, k, kl, &err);
		}
		leveldb_iter_destroy(it);
	}
	leveldb_readoptions_destroy(ro);
	leveldb_writeoptions_destroy(wo);
	leveldb_close(db);
	leveldb_options_destroy(o);

	f->store = open_with(f->dir, NULL);
	struct mailstore_mailbox_info info;
	status(f->store, U, "", &info);
	assert_int_equal(info.exists, 3);
	assert_int_equal(info.unseen, 2);
	assert_int_equal(info.size, 13);
	assert_int_equal(info.n_keywords, 1);
	uint64_t ms = info.highest_modseq;
	mailstore_mailbox_info_free(&info);
	/* the indexes are back: first unseen and CHANGEDSINCE work */
	struct search_uid_range *r;
	size_t n;
	uint32_t after, unseen;
	assert_int_equal(mailstore_uids(f->store, U, "", 0, 0, &r, &n, &after, &unseen, &info),
			 MAIL_OK);
	assert_int_equal(unseen, 1);
	free(r);
	mailstore_mailbox_info_free(&info);
	set_flags(f->store, U, "", 2, MAILSTORE_FLAGS_ADD, "\\Flagged", MAIL_OK);
	struct search_uid_range all = { 1, UINT32_MAX };
	struct mailstore_meta *m;
	assert_int_equal(mailstore_fetch_meta(f->store, U, "", &all, 1, ms, 0, 0, &m, &n, &after),
			 MAIL_OK);
	assert_int_equal(n, 1);
	assert_int_equal(m[0].info.uid, 2);
	mailstore_metas_free(m, n);
	/* expunges before the upgrade are unknown: inexact */
	struct mailstore_changes_cursor cur = { 0 };
	struct mailstore_changes ch;
	assert_int_equal(mailstore_changes(f->store, U, "", 1, 4, &cur, &ch), MAIL_OK);
	assert_int_equal(ch.expunged_exact, 0);
	mailstore_changes_free(&ch);
}

#define PARTS 4

static void snap_copy(mailstore *a, mailstore *b, uint32_t p)
{
	mailstore_snapshot *snap;
	uint64_t applied;
	assert_int_equal(mailstore_snapshot_open(a, p, PARTS, &snap, &applied), MAIL_OK);
	assert_int_equal(mailstore_snapshot_install_begin(b, p, PARTS), MAIL_OK);
	for (;;) {
		buf c;
		buf_init(&c);
		int ret = mailstore_snapshot_next(snap, &c, 200);
		assert_true(ret == 0 || ret == 1);
		if (ret == 0) {
			buf_deinit(&c);
			break;
		}
		assert_int_equal(mailstore_snapshot_install_chunk(b, p, PARTS, c.data, c.len),
				 MAIL_OK);
		buf_deinit(&c);
	}
	mailstore_snapshot_close(&snap);
	assert_int_equal(mailstore_snapshot_install_end(b, p, applied), MAIL_OK);
}

/* Every partition of s in one buffer: equal dumps, equal stores. */
static void dump(mailstore *s, buf *out)
{
	for (uint32_t p = 0; p < PARTS; p++) {
		mailstore_snapshot *snap;
		uint64_t applied;
		assert_int_equal(mailstore_snapshot_open(s, p, PARTS, &snap, &applied), MAIL_OK);
		buf_printf(out, "[%u %llu]", p, (unsigned long long)applied);
		while (mailstore_snapshot_next(snap, out, 1 << 20) == 1)
			;
		mailstore_snapshot_close(&snap);
	}
}

/* The same mix of the new operations on s, as replicated entries would
 * apply them (index and clock from the entry). */
static void workload(mailstore *s, int applying)
{
	uint64_t idx = 0;
	struct mailstore_apply a = { 0, 0, 1700000000000 };
#define STEP()                                      \
	do {                                        \
		a.index = ++idx;                    \
		a.now_ms += 1000;                   \
		if (applying)                       \
			mailstore_apply_begin(s, &a); \
	} while (0)
	struct mailstore_mailbox_info info;
	STEP();
	put(s, U, "", "one\r\n", NULL);
	STEP();
	put(s, U, "", "two\r\n", "$Kw");
	STEP();
	assert_int_equal(mailstore_mailbox_create(s, U, "Box/Sub", MAILSTORE_MBOX_ARCHIVE, &info),
			 MAIL_OK);
	mailstore_mailbox_info_free(&info);
	STEP();
	assert_int_equal(mailstore_subscribe(s, U, "Ghost", 1), MAIL_OK);
	STEP();
	struct mailstore_msg_in in[2] = { { .body = "Subject: x\r\n\r\nx\r\n", .body_len = 17 },
					  { .body = "y\r\n", .body_len = 3 } };
	uint32_t uv, *uids;
	assert_int_equal(mailstore_append(s, U, "Box/Sub", in, 2, &uv, &uids), MAIL_OK);
	free(uids);
	STEP();
	struct search_uid_range r = { 1, 2 };
	uint32_t *src, *dst;
	size_t n;
	assert_int_equal(mailstore_copy(s, U, "INBOX", &r, 1, "Box", 1, &uv, &src, &dst, &n),
			 MAIL_OK);
	free(src);
	free(dst);
	STEP();
	assert_int_equal(mailstore_mailbox_rename(s, U, "Box", "Renamed"), MAIL_OK);
	STEP();
	put(s, V, "", "v's\r\n", "\\Deleted");
	STEP();
	assert_int_equal(mailstore_mailbox_delete(s, U, "Trash"), MAIL_OK);
	STEP();
	assert_int_equal(mailstore_mailbox_rename(s, V, "INBOX", "V-Old"), MAIL_OK);
	mailstore_apply_begin(s, NULL);
#undef STEP
}

/* Replicas applying the same entries hold the same state, byte for byte
 * as a snapshot sees it (structure records, tombstones, subscriptions,
 * counters included). */
static void test_replication_deterministic(void **state)
{
	struct fixture *f = *state;
	f->dir_b = test_tmpdir_create("mailstore-imap-b");
	f->b = open_with(f->dir_b, NULL);
	workload(f->store, 1);
	workload(f->b, 1);
	buf da, db;
	buf_init(&da);
	buf_init(&db);
	dump(f->store, &da);
	dump(f->b, &db);
	assert_int_equal(da.len, db.len);
	assert_memory_equal(da.data, db.data, da.len);
	buf_deinit(&da);
	buf_deinit(&db);
}

/* A snapshot carries the new kinds; the installer rebuilds the derived
 * ones: the replica answers the same. */
static void test_snapshot_new_kinds(void **state)
{
	struct fixture *f = *state;
	f->dir_b = test_tmpdir_create("mailstore-imap-b");
	f->b = open_with(f->dir_b, NULL);
	workload(f->store, 0);
	/* B had older data of the same users */
	put(f->b, U, "", "stale\r\n", NULL);
	for (uint32_t p = 0; p < PARTS; p++)
		snap_copy(f->store, f->b, p);
	buf da, db;
	buf_init(&da);
	buf_init(&db);
	dump(f->store, &da);
	dump(f->b, &db);
	assert_int_equal(da.len, db.len);
	assert_memory_equal(da.data, db.data, da.len);
	buf_deinit(&da);
	buf_deinit(&db);
	const char *users[] = { U, V };
	for (int i = 0; i < 2; i++) {
		struct mailstore_mailbox_info *ba, *bb;
		size_t na, nb;
		assert_int_equal(mailstore_list(f->store, users[i], &ba, &na), MAIL_OK);
		assert_int_equal(mailstore_list(f->b, users[i], &bb, &nb), MAIL_OK);
		assert_int_equal(na, nb);
		for (size_t j = 0; j < na; j++) {
			assert_string_equal(ba[j].name, bb[j].name);
			assert_int_equal(ba[j].unseen, bb[j].unseen);
			assert_int_equal(ba[j].attrs, bb[j].attrs);
			/* the derived indexes were rebuilt: first unseen, changes */
			struct search_uid_range *ra, *rb;
			size_t nra, nrb;
			uint32_t aa, ab, ua, ub;
			struct mailstore_mailbox_info ia, ib;
			assert_int_equal(mailstore_uids(f->store, users[i], ba[j].name, 0, 0, &ra, &nra,
							&aa, &ua, &ia),
					 MAIL_OK);
			assert_int_equal(mailstore_uids(f->b, users[i], bb[j].name, 0, 0, &rb, &nrb,
							&ab, &ub, &ib),
					 MAIL_OK);
			assert_int_equal(ua, ub);
			assert_int_equal(nra, nrb);
			assert_int_equal(ia.n_keywords, ib.n_keywords);
			free(ra);
			free(rb);
			mailstore_mailbox_info_free(&ia);
			mailstore_mailbox_info_free(&ib);
			struct mailstore_changes_cursor ca = { 0 }, cb = { 0 };
			struct mailstore_changes cha, chb;
			assert_int_equal(mailstore_changes(f->store, users[i], ba[j].name, 1, 1, &ca,
							   &cha),
					 MAIL_OK);
			assert_int_equal(mailstore_changes(f->b, users[i], bb[j].name, 1, 1, &cb,
							   &chb),
					 MAIL_OK);
			assert_int_equal(cha.n_added, chb.n_added);
			assert_int_equal(cha.n_expunged, chb.n_expunged);
			assert_int_equal(cha.expunged_exact, chb.expunged_exact);
			mailstore_changes_free(&cha);
			mailstore_changes_free(&chb);
		}
		mailstore_mailbox_infos_free(ba, na);
		mailstore_mailbox_infos_free(bb, nb);
		char **sa, **sb;
		assert_int_equal(mailstore_subscriptions(f->store, users[i], &sa, &na), MAIL_OK);
		assert_int_equal(mailstore_subscriptions(f->b, users[i], &sb, &nb), MAIL_OK);
		assert_int_equal(na, nb);
		mailstore_names_free(sa, na);
		mailstore_names_free(sb, nb);
	}
}

/* The installer refuses bad records of the new kinds. */
static void test_snapshot_refuses_bad_new_kinds(void **state)
{
	struct fixture *f = *state;
	/* partition of U */
	uint32_t p = (uint32_t)(util_hash64(U, strlen(U)) % PARTS);
	struct {
		char kind;
		const char *rest;
		size_t rlen;
		const char *val;
		size_t vlen;
	} bad[] = {
		{ 'T', "\0\0\0\0\0\0\0\1\0\0\0\0\0\0\0\0\0\0\0\1", 20, "\1", 1 }, /* modseq 0 */
		{ 'T', "\0\0\0\0\0\0\0\1\0\0\0\0\0\0\0\1\0\0\0\1", 20, "\2", 1 }, /* value */
		{ 'E', "\0\0\0\0\0\0\0\1\0\0\0\1", 12, "\1\0\0", 3 },             /* record */
		{ 'U', "a//b", 4, "\1", 1 },                                       /* name */
		{ 'U', "inbox", 5, "\1", 1 },                                      /* not canonical */
		{ 'M', "X", 1,
		  "\1\0\0\0\0\0\0\0\1\0\0\0\1\0\0\0\2\0\0\0\0\0\0\0\1\0\0\0\1"
		  "\0\0\0\5",
		  33 }, /* neither the old record nor this one */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		buf c;
		buf_init(&c);
		uint8_t ver = MAILSTORE_SNAPSHOT_VERSION;
		buf_append(&c, &ver, 1);
		buf key;
		buf_init(&key);
		uint8_t head[2] = { 0x01, (uint8_t)bad[i].kind };
		buf_append(&key, head, 2);
		buf_append(&key, U, strlen(U) + 1);
		buf_append(&key, bad[i].rest, bad[i].rlen);
		const char *val = bad[i].val;
		size_t vlen = bad[i].vlen;
		uint8_t l[4] = { 0, 0, 0, (uint8_t)key.len };
		buf_append(&c, l, 4);
		buf_append(&c, key.data, key.len);
		uint8_t vl[4] = { 0, 0, 0, (uint8_t)vlen };
		buf_append(&c, vl, 4);
		buf_append(&c, val, vlen);
		assert_int_equal(mailstore_snapshot_install_chunk(f->store, p, PARTS, c.data, c.len),
				 MAIL_ERR_PARAMS);
		buf_deinit(&key);
		buf_deinit(&c);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_counters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keywords_bound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_new_user_special_use, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create, setup, teardown),
		cmocka_unit_test_setup_teardown(test_user_purge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mailbox_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rename, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rename_inbox, setup, teardown),
		cmocka_unit_test_setup_teardown(test_subscriptions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uids_pages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uid_floor, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fetch_meta, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fetch_meta_content, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fetch_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_changes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_append, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_move, setup, teardown),
		cmocka_unit_test_setup_teardown(test_upgrade_level3, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replication_deterministic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_new_kinds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_refuses_bad_new_kinds, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
