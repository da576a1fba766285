/* test-mailstore-bodies.c: message bodies in segment files (bodystore.c
 * through the mailstore API), on a real LevelDB and real files in a temp
 * dir: round trip, rollover, corruption, crash leftovers, the append point,
 * collection, stores of the version before segments, snapshots. */
#include "mailstore.h"

#include "buf.h"
#include "mail-error.h"
#include "router.h"
#include "test-util.h"
#include "xalloc.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <leveldb/c.h>

#define RECORD_HEADER 16
#define PARTS 8

struct fixture {
	char *dir;
	mailstore *store;
	char *dir_b;
	mailstore *b;
};

static mailstore *open_store_lim(const char *dir, uint64_t segment_size, size_t inline_max)
{
	struct mailstore_limits lim;
	mailstore_limits_default(&lim);
	if (segment_size > 0)
		lim.body_segment_size = segment_size;
	lim.body_collect_step = 2048;
	lim.body_inline_max = inline_max;
	mailstore *s = NULL;
	const char *error = NULL;
	assert_int_equal(mailstore_open(dir, &lim, &s, &error), MAIL_OK);
	assert_non_null(s);
	return s;
}

/* Every body in segments: most tests here are about them. */
static mailstore *open_store_seg(const char *dir, uint64_t segment_size)
{
	return open_store_lim(dir, segment_size, 0);
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof *f);
	f->dir = test_tmpdir_create("bodies");
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

/* A body of len bytes that differs with seed (and contains NULs). */
static uint8_t *make_body(unsigned seed, size_t len)
{
	uint8_t *b = xmalloc(len > 0 ? len : 1);
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		b[i] = (uint8_t)(x >> 16);
	}
	return b;
}

static uint32_t deliver(mailstore *s, const char *user, const char *did, const void *body,
			size_t len)
{
	struct mailstore_deliver_result r;
	assert_int_equal(mailstore_deliver(s, user, "", did, body, len, 1700000000000, NULL, 0,
					   &r),
			 MAIL_OK);
	assert_int_equal(r.duplicate, 0);
	return r.uid;
}

/* The body of uid is exactly body. */
static void fetch_same(mailstore *s, const char *user, uint32_t uid, const void *body,
		       size_t len)
{
	struct mailstore_message_info mi;
	void *got;
	size_t got_len;
	assert_int_equal(mailstore_fetch(s, user, "", uid, &mi, &got, &got_len), MAIL_OK);
	assert_int_equal(got_len, len);
	if (len > 0)
		assert_memory_equal(got, body, len);
	assert_int_equal(mi.size, len);
	free(got);
	mailstore_message_info_free(&mi);
}

static int fetch_status(mailstore *s, const char *user, uint32_t uid)
{
	struct mailstore_message_info mi;
	void *got = (void *)1;
	size_t got_len;
	int ret = mailstore_fetch(s, user, "", uid, &mi, &got, &got_len);
	if (ret == MAIL_OK) {
		free(got);
		mailstore_message_info_free(&mi);
	} else {
		assert_null(got);
	}
	return ret;
}

static void expunge_uids(mailstore *s, const char *user, const uint32_t *uids, size_t n)
{
	const char *del = "\\Deleted";
	struct mailstore_message_info *msgs;
	size_t n_msgs;
	assert_int_equal(mailstore_store_flags(s, user, "", uids, n, MAILSTORE_FLAGS_ADD, &del, 1,
					       &msgs, &n_msgs),
			 MAIL_OK);
	mailstore_message_infos_free(msgs, n_msgs);
	uint32_t *gone;
	size_t n_gone;
	assert_int_equal(mailstore_expunge(s, user, "", uids, n, &gone, &n_gone), MAIL_OK);
	assert_int_equal(n_gone, n);
	free(gone);
}

static char *seg_path(const char *dir, uint32_t id)
{
	return xasprintf("%s/bodies/%08x.seg", dir, (unsigned)id);
}

/* Size of segment id, -1 when there is no such file. */
static long long seg_size(const char *dir, uint32_t id)
{
	char *p = seg_path(dir, id);
	struct stat st;
	long long ret = stat(p, &st) == 0 ? (long long)st.st_size : -1;
	free(p);
	return ret;
}

/* Segment files in dir/bodies and their total size. */
static size_t seg_files(const char *dir, long long *bytes_r)
{
	char *p = xasprintf("%s/bodies", dir);
	DIR *d = opendir(p);
	assert_non_null(d);
	size_t n = 0;
	long long bytes = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);
		if (l < 4 || strcmp(de->d_name + l - 4, ".seg") != 0)
			continue;
		char *fp = xasprintf("%s/%s", p, de->d_name);
		struct stat st;
		assert_int_equal(stat(fp, &st), 0);
		bytes += st.st_size;
		free(fp);
		n++;
	}
	closedir(d);
	free(p);
	if (bytes_r != NULL)
		*bytes_r = bytes;
	return n;
}

/* Keys of the closed store at dir starting with prefix. */
static size_t raw_count(const char *dir, const char *prefix, size_t plen)
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

/* Overwrite (or append, at == -1) bytes of segment id. */
static void seg_write(const char *dir, uint32_t id, long long at, const void *data, size_t len)
{
	char *p = seg_path(dir, id);
	int fd = open(p, O_WRONLY | (at < 0 ? O_APPEND : 0));
	assert_true(fd >= 0);
	ssize_t w = at < 0 ? write(fd, data, len) : pwrite(fd, data, len, (off_t)at);
	assert_int_equal(w, (ssize_t)len);
	close(fd);
	free(p);
}

/* The record header at off of segment id: its body length, or -1 when
 * there is no record header there. */
static long long seg_record_at(const char *dir, uint32_t id, long long off)
{
	char *p = seg_path(dir, id);
	int fd = open(p, O_RDONLY);
	free(p);
	assert_true(fd >= 0);
	uint8_t h[RECORD_HEADER];
	ssize_t r = pread(fd, h, sizeof h, (off_t)off);
	close(fd);
	if (r != (ssize_t)sizeof h || memcmp(h, "MBD1", 4) != 0)
		return -1;
	long long len = 0;
	for (int i = 4; i < 12; i++)
		len = len << 8 | h[i];
	return len;
}

/* ---- round trip, rollover -------------------------------------------------- */

static void test_bodies_round_trip(void **state)
{
	struct fixture *f = *state;
	f->store = open_store_seg(f->dir, 0);
	const char *u = "rt@x.test";
	size_t lens[] = { 0, 1, 5000, 70000 };
	uint8_t *bodies[4];
	uint32_t uids[4];
	long long expect = 0;
	for (int i = 0; i < 4; i++) {
		bodies[i] = make_body((unsigned)i, lens[i]);
		char did[16];
		snprintf(did, sizeof did, "rt%d", i);
		uids[i] = deliver(f->store, u, did, bodies[i], lens[i]);
		expect += RECORD_HEADER + (long long)lens[i];
	}
	for (int i = 0; i < 4; i++)
		fetch_same(f->store, u, uids[i], bodies[i], lens[i]);
	/* one segment: the records one after the other (then the zeros of
	 * the current segment's preallocation) */
	long long off = 0;
	for (int i = 0; i < 4; i++) {
		assert_int_equal(seg_record_at(f->dir, 1, off), lens[i]);
		off += RECORD_HEADER + (long long)lens[i];
	}
	assert_true(seg_size(f->dir, 1) >= expect);
	struct mailstore_body_stats st;
	mailstore_body_stats(f->store, &st);
	assert_int_equal(st.segments, 1);
	assert_int_equal(st.disk_bytes, seg_size(f->dir, 1));
	assert_int_equal(st.live_bytes, expect);
	mailstore_close(&f->store);
	/* bodies are not in LevelDB: a pointer, a reverse record each */
	assert_int_equal(raw_count(f->dir, "\x01" "B", 2), 0);
	assert_int_equal(raw_count(f->dir, "\x01" "P", 2), 4);
	assert_int_equal(raw_count(f->dir, "\x01" "R", 2), 4);
	assert_int_equal(raw_count(f->dir, "\x01" "S", 2), 1);
	f->store = open_store_seg(f->dir, 0);
	for (int i = 0; i < 4; i++) {
		fetch_same(f->store, u, uids[i], bodies[i], lens[i]);
		free(bodies[i]);
	}
	assert_int_equal(fetch_status(f->store, u, 99), MAIL_ERR_NOT_FOUND);
}

static void test_bodies_segment_rollover(void **state)
{
	struct fixture *f = *state;
	f->store = open_store_seg(f->dir, 4096);
	const char *u = "roll@x.test";
	enum { N = 21 };
	uint8_t *bodies[N];
	size_t lens[N];
	uint32_t uids[N];
	for (int i = 0; i < N; i++) {
		/* 20 of 1000 bytes (4 records of 1016 per 4096), then one
		 * bigger than a segment */
		lens[i] = i < 20 ? 1000 : 10000;
		bodies[i] = make_body(100u + (unsigned)i, lens[i]);
		char did[16];
		snprintf(did, sizeof did, "r%d", i);
		uids[i] = deliver(f->store, u, did, bodies[i], lens[i]);
	}
	/* sealed segments are cut to their last record */
	for (uint32_t id = 1; id <= 5; id++)
		assert_int_equal(seg_size(f->dir, id), 4 * (RECORD_HEADER + 1000));
	assert_int_equal(seg_size(f->dir, 6), RECORD_HEADER + 10000);
	assert_int_equal(seg_files(f->dir, NULL), 6);
	for (int i = 0; i < N; i++)
		fetch_same(f->store, u, uids[i], bodies[i], lens[i]);
	/* after a reopen: same files, same bodies; the next body starts a
	 * new segment (the current one is past the size) */
	mailstore_close(&f->store);
	f->store = open_store_seg(f->dir, 4096);
	for (int i = 0; i < N; i++)
		fetch_same(f->store, u, uids[i], bodies[i], lens[i]);
	uint8_t *more = make_body(999, 100);
	uint32_t uid = deliver(f->store, u, "more", more, 100);
	assert_int_equal(seg_size(f->dir, 6), RECORD_HEADER + 10000);
	assert_int_equal(seg_record_at(f->dir, 7, 0), 100);
	fetch_same(f->store, u, uid, more, 100);
	free(more);
	for (int i = 0; i < N; i++)
		free(bodies[i]);
}

/* ---- corruption, crashes, the append point ------------------------------------ */

static void test_bodies_corrupt_byte(void **state)
{
	struct fixture *f = *state;
	f->store = open_store_seg(f->dir, 0);
	const char *u = "bad@x.test";
	uint8_t *a = make_body(1, 3000), *b = make_body(2, 3000);
	uint32_t ua = deliver(f->store, u, "a", a, 3000);
	uint32_t ub = deliver(f->store, u, "b", b, 3000);
	/* a at 0, b behind it */
	const long long b_at = RECORD_HEADER + 3000, b_mid = b_at + RECORD_HEADER + 1500;
	assert_int_equal(seg_record_at(f->dir, 1, b_at), 3000);

	/* one byte in the middle of b's body: b is refused, a still reads */
	uint8_t flip = (uint8_t)(b[1500] ^ 0x20);
	seg_write(f->dir, 1, b_mid, &flip, 1);
	assert_int_equal(fetch_status(f->store, u, ub), MAIL_ERR_INTERNAL);
	fetch_same(f->store, u, ua, a, 3000);
	/* the export of the partition fails rather than carry wrong bytes */
	uint32_t p = router_partition_of(u, strlen(u), PARTS);
	mailstore_snapshot *snap;
	uint64_t applied;
	assert_int_equal(mailstore_snapshot_open(f->store, p, PARTS, &snap, &applied), MAIL_OK);
	buf c;
	buf_init(&c);
	int ret;
	while ((ret = mailstore_snapshot_next(snap, &c, 1 << 20)) == 1)
		buf_reset(&c);
	assert_int_equal(ret, -MAIL_ERR_INTERNAL);
	buf_deinit(&c);
	mailstore_snapshot_close(&snap);

	/* a's header (the magic), then the flipped byte put back */
	uint8_t zero = 0;
	seg_write(f->dir, 1, 0, &zero, 1);
	assert_int_equal(fetch_status(f->store, u, ua), MAIL_ERR_INTERNAL);
	/* and a header whose length disagrees with the pointer */
	uint8_t magic = 'M';
	seg_write(f->dir, 1, 0, &magic, 1);
	fetch_same(f->store, u, ua, a, 3000);
	seg_write(f->dir, 1, 4 + 7, "\x01", 1);
	assert_int_equal(fetch_status(f->store, u, ua), MAIL_ERR_INTERNAL);
	seg_write(f->dir, 1, b_mid, &b[1500], 1);
	fetch_same(f->store, u, ub, b, 3000);
	/* a truncated segment: the record past the end is refused */
	mailstore_close(&f->store);
	char *path = seg_path(f->dir, 1);
	assert_int_equal(truncate(path, b_at + RECORD_HEADER + 3000 - 10), 0);
	free(path);
	f->store = open_store_seg(f->dir, 0);
	assert_int_equal(fetch_status(f->store, u, ub), MAIL_ERR_INTERNAL);
	free(a);
	free(b);
}

/* Bytes appended without a batch (a crash between the append and the
 * LevelDB write), here garbage that even looks like a record: never
 * served, never overwritten, and later appends go behind them. */
static void test_bodies_crash_garbage_tail(void **state)
{
	struct fixture *f = *state;
	f->store = open_store_seg(f->dir, 0);
	const char *u = "crash@x.test";
	uint8_t *a = make_body(3, 2000);
	uint32_t ua = deliver(f->store, u, "a", a, 2000);
	mailstore_close(&f->store);

	buf g;
	buf_init(&g);
	uint8_t hdr[RECORD_HEADER] = { 'M', 'B', 'D', '1', 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0 };
	buf_append(&g, hdr, sizeof hdr);
	buf_append(&g, "fake!", 5);
	uint8_t *junk = make_body(4, 777);
	buf_append(&g, junk, 777); /* and a torn record: a header cut short */
	buf_append(&g, hdr, 7);
	long long before = seg_size(f->dir, 1);
	seg_write(f->dir, 1, -1, g.data, g.len);

	f->store = open_store_seg(f->dir, 0);
	fetch_same(f->store, u, ua, a, 2000);
	/* the next uid is a new message, its body behind the garbage */
	uint8_t *b = make_body(5, 1234);
	uint32_t ub = deliver(f->store, u, "b", b, 1234);
	assert_int_equal(ub, ua + 1);
	assert_int_equal(seg_record_at(f->dir, 1, before + (long long)g.len), 1234);
	fetch_same(f->store, u, ua, a, 2000);
	fetch_same(f->store, u, ub, b, 1234);
	struct mailstore_mailbox_info info;
	struct mailstore_message_info *msgs;
	size_t n;
	assert_int_equal(mailstore_select(f->store, u, "", &info, &msgs, &n), MAIL_OK);
	assert_int_equal(n, 2);
	mailstore_message_infos_free(msgs, n);
	mailstore_mailbox_info_free(&info);
	/* the garbage is not live */
	struct mailstore_body_stats st;
	mailstore_body_stats(f->store, &st);
	assert_int_equal(st.live_bytes, 2 * RECORD_HEADER + 2000 + 1234);
	assert_int_equal(st.disk_bytes, seg_size(f->dir, 1));
	assert_true(st.disk_bytes >= st.live_bytes + g.len);
	buf_deinit(&g);
	free(junk);
	free(a);
	free(b);
}

/* Each open appends at the end of the current file: earlier bodies are
 * never overwritten, and reopening starts no new segment. */
static void test_bodies_reopen_append_point(void **state)
{
	struct fixture *f = *state;
	const char *u = "reopen@x.test";
	enum { ROUNDS = 5 };
	uint8_t *bodies[ROUNDS];
	uint32_t uids[ROUNDS];
	for (int i = 0; i < ROUNDS; i++) {
		/* the end of the file, zeros of a preallocation included */
		long long end = i == 0 ? 0 : seg_size(f->dir, 1);
		f->store = open_store_seg(f->dir, 0);
		size_t len = 100 + 37 * (size_t)i;
		bodies[i] = make_body(10u + (unsigned)i, len);
		char did[16];
		snprintf(did, sizeof did, "o%d", i);
		uids[i] = deliver(f->store, u, did, bodies[i], len);
		assert_int_equal(seg_record_at(f->dir, 1, end), len);
		for (int j = 0; j <= i; j++)
			fetch_same(f->store, u, uids[j], bodies[j], 100 + 37 * (size_t)j);
		mailstore_close(&f->store);
	}
	assert_int_equal(seg_files(f->dir, NULL), 1);
	for (int i = 0; i < ROUNDS; i++)
		free(bodies[i]);
}

/* ---- collection ------------------------------------------------------------------ */

static void maintain_all(mailstore *s)
{
	int more = 1;
	for (int i = 0; more && i < 10000; i++)
		assert_int_equal(mailstore_maintain(s, &more), MAIL_OK);
	assert_int_equal(more, 0);
}

/* Expunge until segments fall under the threshold: collection moves their
 * live bodies, deletes them, and every remaining message reads the same. */
static void test_bodies_collect(void **state)
{
	struct fixture *f = *state;
	f->store = open_store_seg(f->dir, 4096);
	const char *u = "gc@x.test";
	enum { N = 40, LEN = 900 }; /* 4 records (3664 bytes) per segment */
	uint8_t *bodies[N];
	uint32_t uids[N];
	for (int i = 0; i < N; i++) {
		bodies[i] = make_body(200u + (unsigned)i, LEN);
		char did[16];
		snprintf(did, sizeof did, "g%d", i);
		uids[i] = deliver(f->store, u, did, bodies[i], LEN);
	}
	assert_int_equal(seg_files(f->dir, NULL), 10);
	long long disk_before;
	seg_files(f->dir, &disk_before);

	/* segments 1-8: 3 of 4 messages go (25 % live); segment 9: all go
	 * (deleted at once); segment 10 is the current one */
	uint32_t gone[N];
	size_t n_gone = 0;
	int alive[N];
	for (int i = 0; i < N; i++) {
		alive[i] = 1;
		if ((i < 32 && i % 4 != 0) || (i >= 32 && i < 36)) {
			gone[n_gone++] = uids[i];
			alive[i] = 0;
		}
	}
	/* segment 9 first, alone: no collection has to run for it */
	expunge_uids(f->store, u, gone + n_gone - 4, 4);
	assert_int_equal(seg_size(f->dir, 9), -1);
	expunge_uids(f->store, u, gone, n_gone - 4);
	maintain_all(f->store);

	for (uint32_t id = 1; id <= 9; id++)
		assert_int_equal(seg_size(f->dir, id), -1);
	for (int i = 0; i < N; i++) {
		if (alive[i])
			fetch_same(f->store, u, uids[i], bodies[i], LEN);
		else
			assert_int_equal(fetch_status(f->store, u, uids[i]), MAIL_ERR_NOT_FOUND);
	}
	long long disk_after;
	size_t files = seg_files(f->dir, &disk_after);
	assert_true(disk_after < disk_before);
	/* 12 live bodies of 916 bytes: 3 segments' worth, in about that */
	assert_true(disk_after <= 4 * 4096);
	assert_true(files <= 4);
	struct mailstore_body_stats st;
	mailstore_body_stats(f->store, &st);
	assert_int_equal(st.live_bytes, 12 * (RECORD_HEADER + LEN));
	assert_int_equal(st.disk_bytes, disk_after);
	assert_true(st.collected >= 9);
	assert_true(st.moved_bytes >= 8 * (RECORD_HEADER + LEN));

	/* the records agree after a reopen: one pointer and one reverse
	 * record per message, a live record per file */
	mailstore_close(&f->store);
	assert_int_equal(raw_count(f->dir, "\x01" "P", 2), 12);
	assert_int_equal(raw_count(f->dir, "\x01" "R", 2), 12);
	assert_int_equal(raw_count(f->dir, "\x01" "S", 2), files);
	f->store = open_store_seg(f->dir, 4096);
	for (int i = 0; i < N; i++) {
		if (alive[i])
			fetch_same(f->store, u, uids[i], bodies[i], LEN);
		free(bodies[i]);
	}
	/* nothing more to do */
	int more;
	assert_int_equal(mailstore_maintain(f->store, &more), MAIL_OK);
	assert_int_equal(more, 0);
}

/* The write path collects by itself (no mailstore_maintain call), one
 * bounded step per write. */
static void test_bodies_collect_on_writes(void **state)
{
	struct fixture *f = *state;
	f->store = open_store_seg(f->dir, 4096);
	const char *u = "gcw@x.test";
	enum { N = 24, LEN = 900 };
	uint8_t *body = make_body(7, LEN);
	uint32_t uids[N];
	for (int i = 0; i < N; i++) {
		char did[16];
		snprintf(did, sizeof did, "w%d", i);
		uids[i] = deliver(f->store, u, did, body, LEN);
	}
	uint32_t gone[N];
	size_t n_gone = 0;
	for (int i = 0; i < 16; i++) {
		if (i % 4 != 0)
			gone[n_gone++] = uids[i];
	}
	expunge_uids(f->store, u, gone, n_gone);
	for (int i = 0; i < 20; i++) {
		char did[16];
		snprintf(did, sizeof did, "x%d", i);
		deliver(f->store, u, did, body, LEN);
	}
	for (uint32_t id = 1; id <= 4; id++)
		assert_int_equal(seg_size(f->dir, id), -1);
	for (int i = 0; i < N; i++) {
		if (i >= 16 || i % 4 == 0)
			fetch_same(f->store, u, uids[i], body, LEN);
	}
	free(body);
}

/* ---- stores of the version before segments ---------------------------------------- */

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

static void raw_put(leveldb_t *db, const buf *k, const buf *v)
{
	leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
	char *err = NULL;
	leveldb_put(db, wo, (const char *)k->data, k->len, (const char *)v->data, v->len, &err);
	assert_null(err);
	leveldb_writeoptions_destroy(wo);
}

/* 01 kind <user> 00 */
static void key_user(buf *k, char kind, const char *user)
{
	buf_reset(k);
	uint8_t head[2] = { 0x01, (uint8_t)kind };
	buf_append(k, head, 2);
	buf_append(k, user, strlen(user) + 1);
}

/* Write, as the previous version did, user's INBOX (mailbox id 1) with
 * messages 1..n whose bodies are raw 'B' values. */
static void write_old_store(const char *dir, const char *user, uint8_t **bodies,
			    const size_t *lens, uint32_t n)
{
	leveldb_options_t *o = leveldb_options_create();
	leveldb_options_set_create_if_missing(o, 1);
	char *err = NULL;
	leveldb_t *db = leveldb_open(o, dir, &err);
	assert_null(err);
	buf k, v;
	buf_init(&k);
	buf_init(&v);
	uint8_t ver = 0x01;
	/* data level 2: no upgrade pass at open */
	buf_append(&k, "\x01" "V", 2);
	buf_append(&v, "\x01\x02", 2);
	raw_put(db, &k, &v);
	buf_reset(&k);
	buf_reset(&v);
	buf_append(&k, "\x01" "C", 2);
	buf_append(&v, &ver, 1);
	put_be64(&v, 2);
	put_be32(&v, 1600000000);
	raw_put(db, &k, &v);
	key_user(&k, 'M', user);
	buf_append_str(&k, "INBOX");
	buf_reset(&v);
	buf_append(&v, &ver, 1);
	put_be64(&v, 1);
	put_be32(&v, 1600000000);
	put_be32(&v, n + 1);
	put_be64(&v, n);
	put_be32(&v, n);
	raw_put(db, &k, &v);
	for (uint32_t uid = 1; uid <= n; uid++) {
		key_user(&k, 'I', user);
		put_be64(&k, 1);
		put_be32(&k, uid);
		buf_reset(&v);
		buf_append(&v, &ver, 1);
		put_be64(&v, lens[uid - 1]);
		put_be64(&v, 1600000000000);
		put_be64(&v, uid);
		uint8_t no_flags[2] = { 0, 0 };
		buf_append(&v, no_flags, sizeof no_flags);
		raw_put(db, &k, &v);
		key_user(&k, 'B', user);
		put_be64(&k, 1);
		put_be32(&k, uid);
		buf_reset(&v);
		buf_append(&v, bodies[uid - 1], lens[uid - 1]);
		raw_put(db, &k, &v);
	}
	buf_deinit(&k);
	buf_deinit(&v);
	leveldb_close(db);
	leveldb_options_destroy(o);
}

/* Export partition p of s into one buffer of chunks (each chunk's bytes
 * one after the other, for searching) and a list, to install. */
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
	memset(ch, 0, sizeof *ch);
}

static void chunks_read(mailstore_snapshot *snap, size_t max_bytes, struct chunks *ch)
{
	for (;;) {
		buf b;
		buf_init(&b);
		int ret = mailstore_snapshot_next(snap, &b, max_bytes);
		assert_true(ret == 0 || ret == 1);
		if (ret == 0) {
			buf_deinit(&b);
			return;
		}
		ch->c = xrealloc(ch->c, (ch->n + 1) * sizeof *ch->c);
		ch->c[ch->n++] = b;
	}
}

static void snap_export(mailstore *s, uint32_t p, size_t max_bytes, struct chunks *ch)
{
	memset(ch, 0, sizeof *ch);
	mailstore_snapshot *snap;
	assert_int_equal(mailstore_snapshot_open(s, p, PARTS, &snap, &ch->applied), MAIL_OK);
	chunks_read(snap, max_bytes, ch);
	mailstore_snapshot_close(&snap);
}

static void snap_install(mailstore *s, uint32_t p, const struct chunks *ch)
{
	assert_int_equal(mailstore_snapshot_install_begin(s, p, PARTS), MAIL_OK);
	for (size_t i = 0; i < ch->n; i++)
		assert_int_equal(mailstore_snapshot_install_chunk(s, p, PARTS, ch->c[i].data,
								  ch->c[i].len),
				 MAIL_OK);
	assert_int_equal(mailstore_snapshot_install_end(s, p, ch->applied), MAIL_OK);
}

/* Count the keys of each kind in the chunks (walking the format). */
static void chunks_kinds(const struct chunks *ch, size_t counts[256])
{
	memset(counts, 0, 256 * sizeof *counts);
	for (size_t i = 0; i < ch->n; i++) {
		const uint8_t *c = ch->c[i].data;
		size_t len = ch->c[i].len, off = 1;
		while (off < len) {
			size_t kl = ((size_t)c[off] << 24) | ((size_t)c[off + 1] << 16) |
				    ((size_t)c[off + 2] << 8) | c[off + 3];
			off += 4;
			assert_true(kl >= 2);
			counts[c[off + 1]]++;
			off += kl;
			size_t vl = ((size_t)c[off] << 24) | ((size_t)c[off + 1] << 16) |
				    ((size_t)c[off + 2] << 8) | c[off + 3];
			off += 4 + vl;
		}
	}
}

static int chunks_contain(const struct chunks *ch, const void *needle, size_t len)
{
	for (size_t i = 0; i < ch->n; i++) {
		if (memmem(ch->c[i].data, ch->c[i].len, needle, len) != NULL)
			return 1;
	}
	return 0;
}

/* A store written before segments: its 'B' bodies read, expunge and
 * export as before; new bodies go to segments beside them; an install
 * puts every body into segments. */
static void test_bodies_legacy_b_keys(void **state)
{
	struct fixture *f = *state;
	const char *u = "old@x.test";
	size_t lens[3] = { 300, 0, 4000 };
	uint8_t *bodies[3];
	for (int i = 0; i < 3; i++)
		bodies[i] = make_body(50u + (unsigned)i, lens[i]);
	write_old_store(f->dir, u, bodies, lens, 3);
	f->store = open_store_seg(f->dir, 0);
	for (uint32_t uid = 1; uid <= 3; uid++)
		fetch_same(f->store, u, uid, bodies[uid - 1], lens[uid - 1]);
	uint8_t *nb = make_body(60, 2500);
	uint32_t un = deliver(f->store, u, "new", nb, 2500);
	assert_int_equal(un, 4);
	fetch_same(f->store, u, un, nb, 2500);
	uint32_t one = 1;
	expunge_uids(f->store, u, &one, 1);
	assert_int_equal(fetch_status(f->store, u, 1), MAIL_ERR_NOT_FOUND);
	fetch_same(f->store, u, 3, bodies[2], lens[2]);

	/* export: old and new bodies alike as 'B' pairs with their bytes */
	uint32_t p = router_partition_of(u, strlen(u), PARTS);
	struct chunks ch;
	snap_export(f->store, p, 1000, &ch);
	size_t kinds[256];
	chunks_kinds(&ch, kinds);
	assert_int_equal(kinds['B'], 3);
	assert_int_equal(kinds['P'] + kinds['R'] + kinds['S'] + kinds['Z'], 0);
	assert_true(chunks_contain(&ch, bodies[2], lens[2]));
	assert_true(chunks_contain(&ch, nb, 2500));

	f->dir_b = test_tmpdir_create("bodies-b");
	f->b = open_store_seg(f->dir_b, 0);
	snap_install(f->b, p, &ch);
	chunks_free(&ch);
	for (uint32_t uid = 2; uid <= 3; uid++)
		fetch_same(f->b, u, uid, bodies[uid - 1], lens[uid - 1]);
	fetch_same(f->b, u, un, nb, 2500);

	mailstore_close(&f->store);
	mailstore_close(&f->b);
	/* the old store: 'B' of uid 1 went with it, 2 and 3 stay in LevelDB */
	assert_int_equal(raw_count(f->dir, "\x01" "B", 2), 2);
	assert_int_equal(raw_count(f->dir, "\x01" "P", 2), 1);
	/* the installed replica: every body in a segment */
	assert_int_equal(raw_count(f->dir_b, "\x01" "B", 2), 0);
	assert_int_equal(raw_count(f->dir_b, "\x01" "P", 2), 3);
	assert_int_equal(raw_count(f->dir_b, "\x01" "R", 2), 3);
	f->store = open_store_seg(f->dir, 0);
	uint32_t rest[] = { 2, 3, 4 };
	expunge_uids(f->store, u, rest, 3);
	mailstore_close(&f->store);
	assert_int_equal(raw_count(f->dir, "\x01" "B", 2), 0);
	assert_int_equal(raw_count(f->dir, "\x01" "P", 2), 0);
	assert_int_equal(raw_count(f->dir, "\x01" "R", 2), 0);
	for (int i = 0; i < 3; i++)
		free(bodies[i]);
	free(nb);
}

/* ---- snapshots ---------------------------------------------------------------------- */

/* The first n users of partition p (in_p) or of other partitions. */
static void users_pick(const char *tag, uint32_t p, int in_p, char **users, size_t n)
{
	size_t got = 0;
	for (int i = 0; got < n; i++) {
		char *u = xasprintf("%s%d@snap.test", tag, i);
		if ((router_partition_of(u, strlen(u), PARTS) == p) == (in_p != 0))
			users[got++] = u;
		else
			free(u);
	}
}

/* Export/install carries the bodies; what B had of the partition becomes
 * garbage, which collection reclaims; no local record travels. */
static void test_bodies_snapshot_round_trip(void **state)
{
	struct fixture *f = *state;
	const uint32_t P = 4;
	f->store = open_store_seg(f->dir, 4096);
	f->dir_b = test_tmpdir_create("bodies-b");
	f->b = open_store_seg(f->dir_b, 4096);
	char *in[2], *out[1];
	users_pick("bin", P, 1, in, 2);
	users_pick("bout", P, 0, out, 1);
	enum { N = 12, LEN = 700 };
	uint8_t *bodies[N];
	for (int i = 0; i < N; i++) {
		bodies[i] = make_body(300u + (unsigned)i, LEN);
		char did[16];
		snprintf(did, sizeof did, "s%d", i);
		deliver(f->store, in[i % 2], did, bodies[i], LEN);
	}
	/* B: its own copy of P (to be replaced) and another partition */
	uint8_t *old = make_body(400, 3000);
	for (int i = 0; i < 4; i++) {
		char did[16];
		snprintf(did, sizeof did, "old%d", i);
		deliver(f->b, in[0], did, old, 3000);
	}
	uint8_t *other = make_body(401, 500);
	uint32_t uo = deliver(f->b, out[0], "o1", other, 500);
	struct mailstore_body_stats before;
	mailstore_body_stats(f->b, &before);

	struct chunks ch;
	snap_export(f->store, P, 1500, &ch);
	assert_true(ch.n > 3);
	size_t kinds[256];
	chunks_kinds(&ch, kinds);
	assert_int_equal(kinds['B'], N);
	assert_int_equal(kinds['P'] + kinds['R'] + kinds['S'] + kinds['Z'], 0);
	for (int i = 0; i < N; i++)
		assert_true(chunks_contain(&ch, bodies[i], LEN));

	/* install_begin alone: B's bodies of P are garbage, counted so */
	assert_int_equal(mailstore_snapshot_install_begin(f->b, P, PARTS), MAIL_OK);
	struct mailstore_body_stats mid;
	mailstore_body_stats(f->b, &mid);
	assert_int_equal(mid.live_bytes, RECORD_HEADER + 500);
	snap_install(f->b, P, &ch);
	chunks_free(&ch);
	for (int i = 0; i < N; i++) {
		uint32_t uid = (uint32_t)(i / 2 + 1);
		fetch_same(f->b, in[i % 2], uid, bodies[i], LEN);
		fetch_same(f->store, in[i % 2], uid, bodies[i], LEN);
	}
	fetch_same(f->b, out[0], uo, other, 500);
	struct mailstore_body_stats after;
	mailstore_body_stats(f->b, &after);
	assert_int_equal(after.live_bytes, RECORD_HEADER + 500 + N * (RECORD_HEADER + LEN));

	/* the old bodies' segments go once collected */
	maintain_all(f->b);
	mailstore_body_stats(f->b, &after);
	assert_true(after.disk_bytes < before.disk_bytes + N * (RECORD_HEADER + LEN));
	assert_true(after.collected >= 3);
	for (int i = 0; i < N; i++)
		fetch_same(f->b, in[i % 2], (uint32_t)(i / 2 + 1), bodies[i], LEN);
	fetch_same(f->b, out[0], uo, other, 500);

	/* the export of B equals A's */
	struct chunks ca, cb;
	snap_export(f->store, P, 1 << 20, &ca);
	snap_export(f->b, P, 1 << 20, &cb);
	assert_int_equal(ca.n, 1);
	assert_int_equal(cb.n, 1);
	assert_int_equal(ca.c[0].len, cb.c[0].len);
	assert_memory_equal(ca.c[0].data, cb.c[0].data, ca.c[0].len);
	chunks_free(&ca);
	chunks_free(&cb);

	for (int i = 0; i < N; i++)
		free(bodies[i]);
	free(old);
	free(other);
	for (int i = 0; i < 2; i++)
		free(in[i]);
	free(out[0]);
}

/* An export open while collection moves bodies and deletes their old
 * segments still reads every body of its view; the files go at close. */
static void test_bodies_export_during_collection(void **state)
{
	struct fixture *f = *state;
	f->store = open_store_seg(f->dir, 4096);
	const uint32_t P = 1;
	char *in[1];
	users_pick("exp", P, 1, in, 1);
	const char *u = in[0];
	enum { N = 16, LEN = 900 };
	uint8_t *bodies[N];
	uint32_t uids[N];
	for (int i = 0; i < N; i++) {
		bodies[i] = make_body(500u + (unsigned)i, LEN);
		char did[16];
		snprintf(did, sizeof did, "e%d", i);
		uids[i] = deliver(f->store, u, did, bodies[i], LEN);
	}
	mailstore_snapshot *snap;
	uint64_t applied;
	assert_int_equal(mailstore_snapshot_open(f->store, P, PARTS, &snap, &applied), MAIL_OK);
	/* segments 1-3 fall to one live body each, and are collected */
	uint32_t gone[N];
	size_t n_gone = 0;
	for (int i = 0; i < 12; i++) {
		if (i % 4 != 0)
			gone[n_gone++] = uids[i];
	}
	expunge_uids(f->store, u, gone, n_gone);
	maintain_all(f->store);
	struct mailstore_body_stats st;
	mailstore_body_stats(f->store, &st);
	assert_true(st.collected >= 3);
	/* not deleted yet: the export's view points into them */
	for (uint32_t id = 1; id <= 3; id++)
		assert_true(seg_size(f->dir, id) > 0);
	struct chunks ch = { 0 };
	chunks_read(snap, 1 << 20, &ch);
	mailstore_snapshot_close(&snap);
	for (uint32_t id = 1; id <= 3; id++)
		assert_int_equal(seg_size(f->dir, id), -1);
	size_t kinds[256];
	chunks_kinds(&ch, kinds);
	assert_int_equal(kinds['B'], N);
	for (int i = 0; i < N; i++)
		assert_true(chunks_contain(&ch, bodies[i], LEN));
	chunks_free(&ch);
	for (int i = 0; i < N; i++) {
		if (i >= 12 || i % 4 == 0)
			fetch_same(f->store, u, uids[i], bodies[i], LEN);
		free(bodies[i]);
	}
	free(in[0]);
}

/* A chunk with two bodies for one message is refused, nothing written. */
static void test_bodies_duplicate_in_chunk(void **state)
{
	struct fixture *f = *state;
	f->store = open_store_seg(f->dir, 0);
	const uint32_t P = 2;
	char *in[1];
	users_pick("dup", P, 1, in, 1);
	uint8_t *body = make_body(1, 100);
	deliver(f->store, in[0], "d1", body, 100);
	struct chunks ch;
	snap_export(f->store, P, 1 << 20, &ch);
	assert_int_equal(ch.n, 1);
	/* the chunk with its pairs twice */
	buf twice;
	buf_init(&twice);
	buf_append(&twice, ch.c[0].data, ch.c[0].len);
	buf_append(&twice, ch.c[0].data + 1, ch.c[0].len - 1);
	f->dir_b = test_tmpdir_create("bodies-b");
	f->b = open_store_seg(f->dir_b, 0);
	assert_int_equal(mailstore_snapshot_install_begin(f->b, P, PARTS), MAIL_OK);
	assert_int_equal(mailstore_snapshot_install_chunk(f->b, P, PARTS, twice.data, twice.len),
			 MAIL_ERR_PARAMS);
	struct mailstore_body_stats st;
	mailstore_body_stats(f->b, &st);
	assert_int_equal(st.disk_bytes, 0);
	/* installing the same chunk twice (no begin between) replaces the
	 * body: the first copy is garbage, not live */
	assert_int_equal(mailstore_snapshot_install_chunk(f->b, P, PARTS, ch.c[0].data,
							  ch.c[0].len),
			 MAIL_OK);
	assert_int_equal(mailstore_snapshot_install_chunk(f->b, P, PARTS, ch.c[0].data,
							  ch.c[0].len),
			 MAIL_OK);
	assert_int_equal(mailstore_snapshot_install_end(f->b, P, ch.applied), MAIL_OK);
	mailstore_body_stats(f->b, &st);
	assert_int_equal(st.live_bytes, RECORD_HEADER + 100);
	assert_int_equal(seg_record_at(f->dir_b, 1, 0), 100);
	assert_int_equal(seg_record_at(f->dir_b, 1, RECORD_HEADER + 100), 100);
	fetch_same(f->b, in[0], 1, body, 100);
	buf_deinit(&twice);
	chunks_free(&ch);
	free(body);
	free(in[0]);
}

/* ---- small bodies inline ------------------------------------------------------ */

/* Flip one byte of the inline body of length len in the closed store at
 * dir (the only 'P' value of that length). */
static void inline_corrupt(const char *dir, size_t len)
{
	leveldb_options_t *o = leveldb_options_create();
	char *err = NULL;
	leveldb_t *db = leveldb_open(o, dir, &err);
	assert_null(err);
	leveldb_readoptions_t *ro = leveldb_readoptions_create();
	leveldb_iterator_t *it = leveldb_create_iterator(db, ro);
	buf k, v;
	buf_init(&k);
	buf_init(&v);
	for (leveldb_iter_seek(it, "\x01" "P", 2); leveldb_iter_valid(it); leveldb_iter_next(it)) {
		size_t klen, vlen;
		const char *kd = leveldb_iter_key(it, &klen);
		const char *vd = leveldb_iter_value(it, &vlen);
		if (klen < 2 || kd[1] != 'P')
			break;
		if (vlen == 5 + len && vd[0] == 0x02) {
			buf_append(&k, kd, klen);
			buf_append(&v, vd, vlen);
			break;
		}
	}
	leveldb_iter_destroy(it);
	assert_true(v.len == 5 + len);
	v.data[5 + len / 2] ^= 0x40;
	raw_put(db, &k, &v);
	buf_deinit(&k);
	buf_deinit(&v);
	leveldb_readoptions_destroy(ro);
	leveldb_close(db);
	leveldb_options_destroy(o);
}

/* Bodies up to body_inline_max live in their 'P' value: no segment record,
 * no reverse record, no live bytes; bigger ones in segments as before.
 * Both kinds export as 'B' pairs, so a replica that keeps bodies inline
 * and one that does not install each other's snapshots and export the
 * same bytes. A flipped byte of an inline body is never served. */
static void test_bodies_inline(void **state)
{
	struct fixture *f = *state;
	f->store = open_store_lim(f->dir, 0, 4096);
	const char *u = "in@x.test";
	enum { N = 5 };
	size_t lens[N] = { 0, 100, 4096, 4097, 20000 };
	uint8_t *bodies[N];
	uint32_t uids[N];
	for (int i = 0; i < N; i++) {
		bodies[i] = make_body(700u + (unsigned)i, lens[i]);
		char did[16];
		snprintf(did, sizeof did, "in%d", i);
		uids[i] = deliver(f->store, u, did, bodies[i], lens[i]);
	}
	for (int i = 0; i < N; i++)
		fetch_same(f->store, u, uids[i], bodies[i], lens[i]);
	struct mailstore_body_stats st;
	mailstore_body_stats(f->store, &st);
	assert_int_equal(st.segments, 1);
	assert_int_equal(st.live_bytes, 2 * RECORD_HEADER + 4097 + 20000);
	assert_int_equal(seg_record_at(f->dir, 1, 0), 4097);
	assert_int_equal(seg_record_at(f->dir, 1, RECORD_HEADER + 4097), 20000);

	/* snapshots: 'B' pairs whatever the store keeps; into a store that
	 * keeps every body in segments, and back */
	uint32_t p = router_partition_of(u, strlen(u), PARTS);
	struct chunks ca;
	snap_export(f->store, p, 1 << 20, &ca);
	size_t kinds[256];
	chunks_kinds(&ca, kinds);
	assert_int_equal(kinds['B'], N);
	assert_int_equal(kinds['P'] + kinds['R'] + kinds['S'], 0);
	for (int i = 1; i < N; i++)
		assert_true(chunks_contain(&ca, bodies[i], lens[i]));
	f->dir_b = test_tmpdir_create("bodies-b");
	f->b = open_store_seg(f->dir_b, 0);
	snap_install(f->b, p, &ca);
	for (int i = 0; i < N; i++)
		fetch_same(f->b, u, uids[i], bodies[i], lens[i]);
	mailstore_body_stats(f->b, &st);
	long long all = 0;
	for (int i = 0; i < N; i++)
		all += RECORD_HEADER + (long long)lens[i];
	assert_int_equal(st.live_bytes, all);
	struct chunks cb;
	snap_export(f->b, p, 1 << 20, &cb);
	assert_int_equal(ca.n, 1);
	assert_int_equal(cb.n, 1);
	assert_int_equal(ca.c[0].len, cb.c[0].len);
	assert_memory_equal(ca.c[0].data, cb.c[0].data, ca.c[0].len);
	mailstore_close(&f->b);
	f->b = open_store_lim(f->dir_b, 0, 4096);
	assert_int_equal(mailstore_snapshot_install_begin(f->b, p, PARTS), MAIL_OK);
	snap_install(f->b, p, &cb);
	for (int i = 0; i < N; i++)
		fetch_same(f->b, u, uids[i], bodies[i], lens[i]);
	maintain_all(f->b);
	mailstore_body_stats(f->b, &st);
	assert_int_equal(st.live_bytes, 2 * RECORD_HEADER + 4097 + 20000);
	mailstore_close(&f->b);
	chunks_free(&ca);
	chunks_free(&cb);

	/* on disk: five pointers, reverse records for the two in segments */
	mailstore_close(&f->store);
	assert_int_equal(raw_count(f->dir, "\x01" "P", 2), N);
	assert_int_equal(raw_count(f->dir, "\x01" "R", 2), 2);
	assert_int_equal(raw_count(f->dir, "\x01" "B", 2), 0);

	/* expunging an inline body leaves the segments alone */
	f->store = open_store_lim(f->dir, 0, 4096);
	uint32_t gone[2] = { uids[1], uids[3] };
	expunge_uids(f->store, u, gone, 2);
	mailstore_body_stats(f->store, &st);
	assert_int_equal(st.live_bytes, RECORD_HEADER + 20000);
	fetch_same(f->store, u, uids[2], bodies[2], lens[2]);
	fetch_same(f->store, u, uids[4], bodies[4], lens[4]);
	mailstore_close(&f->store);
	assert_int_equal(raw_count(f->dir, "\x01" "P", 2), N - 2);
	assert_int_equal(raw_count(f->dir, "\x01" "R", 2), 1);

	/* a flipped byte: that fetch fails, the others do not */
	inline_corrupt(f->dir, 4096);
	f->store = open_store_lim(f->dir, 0, 4096);
	assert_int_equal(fetch_status(f->store, u, uids[2]), MAIL_ERR_INTERNAL);
	fetch_same(f->store, u, uids[0], bodies[0], lens[0]);
	fetch_same(f->store, u, uids[4], bodies[4], lens[4]);
	for (int i = 0; i < N; i++)
		free(bodies[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bodies_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bodies_segment_rollover, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bodies_corrupt_byte, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bodies_crash_garbage_tail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bodies_reopen_append_point, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bodies_collect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bodies_collect_on_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bodies_legacy_b_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bodies_snapshot_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bodies_export_during_collection, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_bodies_duplicate_in_chunk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bodies_inline, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
