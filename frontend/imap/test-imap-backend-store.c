/* test-imap-backend-store.c: the frontend's struct imap_backend over a
 * real store-node child (real etcd, router, store client): mailbox calls,
 * APPEND/COPY/MOVE, open and fetch_meta over several pages, changes, and
 * watch: sessions sharing one long poll, woken by a delivery made by
 * another client (as the queue would) within a second. */
#include "imap-backend-store.h"

#include "etcd-fixture.h"
#include "mail-error.h"
#include "util.h"
#include "xalloc.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#define USER "frank@example.com"
#define WAIT_MS 20000

struct fixture {
	mailtest_etcd *etcd;
	char *dir;
	char *data;
	char *log;
	pid_t node;
	uv_loop_t loop;
	router *router;
	store_client *client;
	imap_store_backend *b;
	const struct imap_backend *be;
};

static void node_start(struct fixture *f)
{
	const char *bin = getenv("MAIL_BIN_DIR");
	char *exe = xasprintf("%s/store-node", bin != NULL ? bin : "bin");
	int fd = open(f->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(fd, 2);
		close(fd);
		execl(exe, exe, "--id", "store-b", "--listen", "127.0.0.1:0", "--data", f->data,
		      "--etcd", mailtest_etcd_url(f->etcd), "--partitions", "8", "--lease-ttl",
		      "2", (char *)NULL);
		_exit(127);
	}
	close(fd);
	free(exe);
	f->node = pid;
	uint64_t end = util_now_mono_ms() + 10000;
	for (;;) {
		FILE *in = fopen(f->log, "r");
		char line[1024];
		int ready = 0;
		while (in != NULL && fgets(line, sizeof line, in) != NULL)
			ready |= strstr(line, "event=ready") != NULL;
		if (in != NULL)
			fclose(in);
		if (ready)
			return;
		assert_true(util_now_mono_ms() < end);
		mailtest_sleep_ms(50);
	}
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof *f);
	assert_int_equal(mailtest_etcd_start(&f->etcd), 0);
	f->dir = mailtest_tmpdir("imap-backend-store");
	f->data = xasprintf("%s/data", f->dir);
	f->log = xasprintf("%s/node.log", f->dir);
	node_start(f);
	uv_loop_init(&f->loop);
	const char *error = NULL;
	assert_int_equal(router_create(mailtest_etcd_conf(f->etcd), &f->router, &error), 0);
	f->client = store_client_create(&f->loop, f->router);
	f->b = imap_store_backend_create(NULL, f->client);
	f->be = &imap_store_backend_vfuncs;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	imap_store_backend_destroy(&f->b);
	store_client_destroy(&f->client);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	uv_loop_close(&f->loop);
	router_destroy(&f->router);
	if (f->node > 0) {
		kill(f->node, SIGKILL);
		waitpid(f->node, NULL, 0);
	}
	mailtest_etcd_stop(&f->etcd);
	mailtest_rmrf(f->dir);
	free(f->dir);
	free(f->data);
	free(f->log);
	free(f);
	return 0;
}

static void tick_cb(uv_timer_t *t)
{
	(void)t;
}

/* Run the loop until *done (or fail after WAIT_MS). */
static void wait_for(struct fixture *f, const int *done)
{
	uv_timer_t tick;
	uv_timer_init(&f->loop, &tick);
	uv_timer_start(&tick, tick_cb, 20, 20);
	uint64_t end = util_now_mono_ms() + WAIT_MS;
	while (!*done) {
		assert_true(util_now_mono_ms() < end);
		uv_run(&f->loop, UV_RUN_ONCE);
	}
	uv_close((uv_handle_t *)&tick, NULL);
	uv_run(&f->loop, UV_RUN_NOWAIT);
}

/* ---- one result struct for every callback shape ---- */
struct res {
	int done;
	int status;
	struct imap_mailbox_info box;
	char box_name[256];
	size_t n;             /* boxes, uids, messages, pages */
	unsigned attrs_of_ghost;
	uint32_t uidvalidity;
	uint32_t uids[64];
	uint32_t dst[64];
	uint64_t count;       /* uids in open's ranges */
	size_t n_ranges;
	size_t n_keywords;
	uint32_t first_unseen;
	int pages;
	char envelope[512];
	struct imap_changes ch;
	uint32_t changed_uid;
	uint32_t expunged_first;
	uint32_t added_first, added_last;
};

static void status_cb(int status, void *arg)
{
	struct res *r = arg;
	r->status = status;
	r->done = 1;
}

static void mailbox_cb(int status, const struct imap_mailbox_info *box, void *arg)
{
	struct res *r = arg;
	r->status = status;
	if (box != NULL) {
		r->box = *box;
		snprintf(r->box_name, sizeof r->box_name, "%s", box->name);
		r->box.name = r->box_name;
	}
	r->done = 1;
}

static void list_cb(int status, const struct imap_mailbox_info *boxes, size_t n, void *arg)
{
	struct res *r = arg;
	r->status = status;
	r->n = n;
	for (size_t i = 0; i < n; i++)
		if (strcmp(boxes[i].name, "Ghost") == 0)
			r->attrs_of_ghost = boxes[i].attrs;
	r->done = 1;
}

static void append_cb(int status, uint32_t uidvalidity, const uint32_t *uids, size_t n,
		      uint64_t highest_modseq, void *arg)
{
	(void)highest_modseq;
	struct res *r = arg;
	r->status = status;
	r->uidvalidity = uidvalidity;
	r->n = n;
	for (size_t i = 0; i < n && i < 64; i++)
		r->uids[i] = uids[i];
	r->done = 1;
}

static void copy_cb(int status, uint32_t uidvalidity, const uint32_t *src, const uint32_t *dst,
		    size_t n, void *arg)
{
	struct res *r = arg;
	r->status = status;
	r->uidvalidity = uidvalidity;
	r->n = n;
	for (size_t i = 0; i < n && i < 64; i++) {
		r->uids[i] = src[i];
		r->dst[i] = dst[i];
	}
	r->done = 1;
}

static void open_cb(int status, const struct imap_mailbox_info *box,
		    const struct search_uid_range *uids, size_t n_ranges,
		    const char *const *keywords, size_t n_keywords, uint32_t first_unseen,
		    void *arg)
{
	struct res *r = arg;
	r->status = status;
	(void)keywords;
	if (status == MAIL_OK) {
		r->box = *box;
		r->box.name = NULL;
		r->n_ranges = n_ranges;
		r->count = 0;
		for (size_t i = 0; i < n_ranges; i++)
			r->count += uids[i].last - uids[i].first + 1;
		r->n_keywords = n_keywords;
		r->first_unseen = first_unseen;
	}
	r->done = 1;
}

static void meta_cb(int status, const struct imap_msg_meta *msgs, size_t n, int more, void *arg)
{
	struct res *r = arg;
	r->status = status;
	r->pages++;
	r->n += n;
	for (size_t i = 0; i < n && r->envelope[0] == '\0'; i++)
		if (msgs[i].envelope != NULL)
			snprintf(r->envelope, sizeof r->envelope, "%s", msgs[i].envelope);
	if (status != MAIL_OK || !more)
		r->done = 1;
}

static void search_cb(int status, const uint32_t *uids, size_t n, uint64_t highest_modseq,
		      void *arg)
{
	(void)highest_modseq;
	struct res *r = arg;
	r->status = status;
	r->n = n;
	for (size_t i = 0; i < n && i < 64; i++)
		r->uids[i] = uids[i];
	r->done = 1;
}

static void flags_cb(int status, const struct imap_msg_info *msgs, size_t n, void *arg)
{
	(void)msgs;
	struct res *r = arg;
	r->status = status;
	r->n = n;
	r->done = 1;
}

static void changes_cb(int status, const struct imap_changes *ch, void *arg)
{
	struct res *r = arg;
	r->status = status;
	if (status == MAIL_OK) {
		r->ch = *ch;
		r->ch.added = NULL;
		r->ch.expunged = NULL;
		r->ch.changed = NULL;
		r->changed_uid = ch->n_changed > 0 ? ch->changed[0].uid : 0;
		r->expunged_first = ch->n_expunged > 0 ? ch->expunged[0].first : 0;
		r->added_first = ch->n_added > 0 ? ch->added[0].first : 0;
		r->added_last = ch->n_added > 0 ? ch->added[ch->n_added - 1].last : 0;
	}
	r->done = 1;
}

static void test_mailboxes_and_messages(void **state)
{
	struct fixture *f = *state;
	struct res r = { 0 };
	f->be->create(f->b, USER, "Projects/2026", IMAP_MBOX_ARCHIVE, status_cb, &r);
	wait_for(f, &r.done);
	assert_int_equal(r.status, MAIL_OK);
	memset(&r, 0, sizeof r);
	f->be->create(f->b, USER, "Projects/2026", 0, status_cb, &r);
	wait_for(f, &r.done);
	assert_int_equal(r.status, MAIL_ERR_EXISTS);
	memset(&r, 0, sizeof r);
	f->be->subscribe(f->b, USER, "Ghost", 1, status_cb, &r);
	wait_for(f, &r.done);
	assert_int_equal(r.status, MAIL_OK);
	memset(&r, 0, sizeof r);
	f->be->list(f->b, USER, list_cb, &r);
	wait_for(f, &r.done);
	assert_int_equal(r.status, MAIL_OK);
	/* INBOX, 5 special-use, Projects, Projects/2026, the subscribed Ghost */
	assert_int_equal(r.n, 9);
	assert_int_equal(r.attrs_of_ghost, IMAP_MBOX_SUBSCRIBED | IMAP_MBOX_NONEXISTENT);

	/* MULTIAPPEND to Sent */
	const char *seen[] = { "\\Seen" };
	static const char m1[] = "Subject: sent one\r\nFrom: Frank <frank@example.com>\r\n\r\nhi\r\n";
	struct imap_append_msg am[2] = {
		{ (const uint8_t *)m1, sizeof m1 - 1, seen, 1, 1700000000000 },
		{ (const uint8_t *)"x\r\n", 3, NULL, 0, 0 },
	};
	memset(&r, 0, sizeof r);
	f->be->append(f->b, USER, "Sent", am, 2, append_cb, &r);
	wait_for(f, &r.done);
	assert_int_equal(r.status, MAIL_OK);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.uids[0], 1);
	memset(&r, 0, sizeof r);
	f->be->append(f->b, USER, "NoSuchBox", am, 1, append_cb, &r);
	wait_for(f, &r.done);
	assert_int_equal(r.status, MAIL_ERR_NOT_FOUND);

	memset(&r, 0, sizeof r);
	f->be->status(f->b, USER, "Sent", mailbox_cb, &r);
	wait_for(f, &r.done);
	assert_int_equal(r.status, MAIL_OK);
	assert_int_equal(r.box.exists, 2);
	assert_int_equal(r.box.unseen, 1);
	assert_int_equal(r.box.size, sizeof m1 - 1 + 3);
	assert_int_equal(r.box.attrs & IMAP_MBOX_SPECIAL_MASK, IMAP_MBOX_SENT);

	/* MOVE Sent 1 to Projects/2026 (COPYUID pairs) */
	struct search_uid_range one = { 1, 1 };
	memset(&r, 0, sizeof r);
	f->be->copy(f->b, USER, "Sent", &one, 1, "Projects/2026", 1, copy_cb, &r);
	wait_for(f, &r.done);
	assert_int_equal(r.status, MAIL_OK);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.uids[0], 1);
	assert_int_equal(r.dst[0], 1);

	/* fetch_meta with the structure computed at APPEND */
	struct search_uid_range all = { 1, UINT32_MAX };
	memset(&r, 0, sizeof r);
	f->be->fetch_meta(f->b, USER, "Projects/2026", &all, 1, IMAP_META_FLAGS | IMAP_META_STRUCTURE,
			  0, meta_cb, &r);
	wait_for(f, &r.done);
	assert_int_equal(r.status, MAIL_OK);
	assert_int_equal(r.n, 1);
	assert_non_null(strstr(r.envelope, "\"sent one\""));

	memset(&r, 0, sizeof r);
	f->be->rename(f->b, USER, "Projects", "Old", status_cb, &r);
	wait_for(f, &r.done);
	assert_int_equal(r.status, MAIL_OK);
	memset(&r, 0, sizeof r);
	f->be->delete_mailbox(f->b, USER, "Old", status_cb, &r);
	wait_for(f, &r.done);
	assert_int_equal(r.status, MAIL_ERR_EXISTS);
	memset(&r, 0, sizeof r);
	f->be->delete_mailbox(f->b, USER, "INBOX", status_cb, &r);
	wait_for(f, &r.done);
	assert_int_equal(r.status, MAIL_ERR_PERM);
	/* another user sees none of it */
	memset(&r, 0, sizeof r);
	f->be->status(f->b, "eve@example.net", "Old/2026", mailbox_cb, &r);
	wait_for(f, &r.done);
	assert_int_equal(r.status, MAIL_ERR_NOT_FOUND);
}

/* 25,000 messages: open and fetch_meta need several store pages each
 * (20,000 keys a scan, 1000 messages a fetch_meta page). */
static void test_large_mailbox_pages(void **state)
{
	struct fixture *f = *state;
	enum { PER_APPEND = 1000, N_APPENDS = 25 };
	struct imap_append_msg *am = xcalloc(PER_APPEND, sizeof *am);
	const char *seen[] = { "\\Seen" };
	for (int i = 0; i < PER_APPEND; i++)
		am[i] = (struct imap_append_msg){ (const uint8_t *)"Subject: s\r\n\r\nb\r\n", 17,
						  seen, 1, 1700000000000 };
	for (int a = 0; a < N_APPENDS; a++) {
		struct res r = { 0 };
		f->be->append(f->b, USER, "INBOX", am, PER_APPEND, append_cb, &r);
		wait_for(f, &r.done);
		assert_int_equal(r.status, MAIL_OK);
	}
	free(am);
	/* one unseen message, near the end */
	struct res r = { 0 };
	struct imap_append_msg last = { (const uint8_t *)"new\r\n", 5, NULL, 0, 0 };
	f->be->append(f->b, USER, "INBOX", &last, 1, append_cb, &r);
	wait_for(f, &r.done);
	uint32_t unseen_uid = r.uids[0];

	memset(&r, 0, sizeof r);
	uint64_t t0 = util_now_mono_ms();
	f->be->open(f->b, USER, "INBOX", open_cb, &r);
	wait_for(f, &r.done);
	uint64_t open_ms = util_now_mono_ms() - t0;
	assert_int_equal(r.status, MAIL_OK);
	assert_int_equal(r.count, PER_APPEND * N_APPENDS + 1);
	assert_int_equal(r.box.exists, PER_APPEND * N_APPENDS + 1);
	assert_int_equal(r.n_ranges, 1);
	assert_int_equal(r.first_unseen, unseen_uid);
	uint64_t modseq = r.box.highest_modseq;
	uint32_t uidnext = r.box.uidnext;
	printf("open of %d messages: %llu ms\n", PER_APPEND * N_APPENDS + 1,
	       (unsigned long long)open_ms);

	memset(&r, 0, sizeof r);
	struct search_uid_range all = { 1, UINT32_MAX };
	f->be->fetch_meta(f->b, USER, "INBOX", &all, 1, IMAP_META_FLAGS, 0, meta_cb, &r);
	wait_for(f, &r.done);
	assert_int_equal(r.status, MAIL_OK);
	assert_int_equal(r.n, PER_APPEND * N_APPENDS + 1);
	assert_true(r.pages >= N_APPENDS);

	/* SEARCH over every message: several store pages (5000 a page),
	 * gathered; NOT \Seen finds the one unseen message */
	memset(&r, 0, sizeof r);
	struct search_key allk = { .op = SEARCH_ALL };
	t0 = util_now_mono_ms();
	f->be->search(f->b, USER, "INBOX", &allk, search_cb, &r);
	wait_for(f, &r.done);
	assert_int_equal(r.status, MAIL_OK);
	assert_int_equal(r.n, PER_APPEND * N_APPENDS + 1);
	printf("search ALL of %d messages: %llu ms\n", PER_APPEND * N_APPENDS + 1,
	       (unsigned long long)(util_now_mono_ms() - t0));
	struct search_key seenk = { .op = SEARCH_FLAG, .str = "\\Seen" };
	struct search_key notk = { .op = SEARCH_NOT, .children = &seenk, .n_children = 1 };
	memset(&r, 0, sizeof r);
	f->be->search(f->b, USER, "INBOX", &notk, search_cb, &r);
	wait_for(f, &r.done);
	assert_int_equal(r.status, MAIL_OK);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.uids[0], unseen_uid);
	struct search_key subj = { .op = SEARCH_HEADER, .str = "Subject", .str2 = "S" };
	struct search_uid_range few = { 1, 10 };
	struct search_key uidk = { .op = SEARCH_UID, .ranges = &few, .n_ranges = 1 };
	struct search_key both[2] = { uidk, subj };
	struct search_key andk = { .op = SEARCH_AND, .children = both, .n_children = 2 };
	memset(&r, 0, sizeof r);
	f->be->search(f->b, USER, "INBOX", &andk, search_cb, &r);
	wait_for(f, &r.done);
	assert_int_equal(r.status, MAIL_OK);
	assert_int_equal(r.n, 10);

	/* changes: a flag, an expunge, a new message */
	struct res fr = { 0 };
	uint32_t u = 7;
	const char *del[] = { "\\Deleted" };
	f->be->store_flags(f->b, USER, "INBOX", &u, 1, IMAP_FLAGS_ADD, del, 1, flags_cb, &fr);
	wait_for(f, &fr.done);
	assert_int_equal(fr.status, MAIL_OK);
	memset(&r, 0, sizeof r);
	f->be->changes(f->b, USER, "INBOX", modseq, uidnext, changes_cb, &r);
	wait_for(f, &r.done);
	assert_int_equal(r.status, MAIL_OK);
	assert_int_equal(r.ch.n_changed, 1);
	assert_int_equal(r.changed_uid, 7);
	assert_int_equal(r.ch.expunged_exact, 1);
}

struct watched {
	int calls;
	uint64_t modseq;
	uint64_t at;
};

static void watch_cb(uint64_t modseq, void *arg)
{
	struct watched *w = arg;
	w->calls++;
	w->modseq = modseq;
	w->at = util_now_mono_ms();
}

static void deliver_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	(void)resp;
	struct res *r = arg;
	r->status = status;
	r->done = 1;
}

/* Two sessions watch INBOX through one group; a delivery made through
 * another client (the queue's path) wakes both within a second. */
static void test_watch_shared(void **state)
{
	struct fixture *f = *state;
	struct res r = { 0 };
	f->be->status(f->b, USER, "INBOX", mailbox_cb, &r);
	wait_for(f, &r.done);
	assert_int_equal(r.status, MAIL_OK);
	uint64_t m0 = r.box.highest_modseq;
	struct watched a = { 0 }, b = { 0 }, c = { 0 };
	imap_backend_watch *wa = f->be->watch(f->b, USER, "INBOX", m0, watch_cb, &a);
	imap_backend_watch *wb = f->be->watch(f->b, USER, "inbox", m0, watch_cb, &b);
	assert_int_equal(imap_store_backend_watch_groups(f->b), 1);
	/* nothing changes: nobody is told */
	uint64_t until = util_now_mono_ms() + 500;
	while (util_now_mono_ms() < until)
		uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(a.calls + b.calls, 0);

	store_client *other = store_client_create(&f->loop, f->router);
	Store__DeliverRequest dreq = STORE__DELIVER_REQUEST__INIT;
	dreq.user = USER;
	dreq.delivery_id = "watch/1";
	dreq.body = (ProtobufCBinaryData){ 5, (uint8_t *)"new\r\n" };
	memset(&r, 0, sizeof r);
	uint64_t t0 = util_now_mono_ms();
	store_client_deliver(other, &dreq, deliver_cb, &r);
	wait_for(f, &r.done);
	assert_int_equal(r.status, MAIL_OK);
	until = util_now_mono_ms() + 3000;
	while ((a.calls == 0 || b.calls == 0) && util_now_mono_ms() < until)
		uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(a.calls, 1);
	assert_int_equal(b.calls, 1);
	assert_true(a.modseq > m0);
	uint64_t lat = (a.at > b.at ? a.at : b.at) - t0;
	printf("delivery to both watchers: %llu ms\n", (unsigned long long)lat);
	assert_true(lat < 1000);

	/* a session that watches with an older modseq is told at once (from
	 * the group's timer, not inside watch()) */
	imap_backend_watch *wc = f->be->watch(f->b, USER, "INBOX", m0, watch_cb, &c);
	assert_int_equal(c.calls, 0);
	until = util_now_mono_ms() + 2000;
	while (c.calls == 0 && util_now_mono_ms() < until)
		uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(c.calls, 1);
	assert_int_equal(c.modseq, a.modseq);

	f->be->unwatch(f->b, wa);
	f->be->unwatch(f->b, wb);
	f->be->unwatch(f->b, wc);
	/* the group goes once its call comes back (or at the backend's end) */
	store_client_destroy(&other);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_mailboxes_and_messages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_large_mailbox_pages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watch_shared, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
