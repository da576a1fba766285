/* Unit tests of the replication log storage (repl-log.c): append, read,
 * truncate, state, reopen, partitions kept apart, the base of a compacted
 * log, entry sizes from side records (no value read), entries of the
 * older format without one, state records of the older format. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <leveldb/c.h>

#include "buf.h"
#include "repl-private.h"

struct fx {
	char dir[64];
	repl_log *log;
};

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof *fx);
	snprintf(fx->dir, sizeof fx->dir, "/tmp/repl-log-XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	const char *err;
	assert_int_equal(repl_log_open(fx->dir, &fx->log, &err), 0);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;
	repl_log_close(&fx->log);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", fx->dir);
	assert_int_equal(system(cmd), 0);
	free(fx);
	return 0;
}

static void append_n(repl_log *log, uint32_t part, uint64_t from, uint64_t n, uint64_t epoch,
		     struct repl_log_state *st)
{
	repl_log_batch *b = repl_log_batch_create(log, part);
	char payload[32];
	for (uint64_t i = from; i < from + n; i++) {
		int len = snprintf(payload, sizeof payload, "p%u-e%llu-%llu", part,
				   (unsigned long long)epoch, (unsigned long long)i);
		repl_log_batch_put_entry(b, i, epoch, REPL_KIND_DATA, payload, (size_t)len);
	}
	st->epoch = epoch;
	st->last_index = from + n - 1;
	repl_log_batch_put_state(b, st);
	assert_int_equal(repl_log_batch_commit(b, 1), 0);
}

static void test_append_read(void **state)
{
	struct fx *fx = *state;
	struct repl_log_state st = { 0 };
	assert_int_equal(repl_log_state_load(fx->log, 7, &st), 0);
	uint64_t before = repl_log_sync_writes(fx->log);
	append_n(fx->log, 7, 1, 10, 3, &st);
	assert_int_equal(repl_log_sync_writes(fx->log), before + 1);

	uint64_t epoch;
	int kind;
	buf b;
	buf_init(&b);
	assert_int_equal(repl_log_entry_get(fx->log, 7, 4, &epoch, &kind, &b), 1);
	assert_int_equal(epoch, 3);
	assert_int_equal(kind, REPL_KIND_DATA);
	assert_int_equal(b.len, strlen("p7-e3-4"));
	assert_memory_equal(b.data, "p7-e3-4", b.len);
	buf_deinit(&b);
	assert_int_equal(repl_log_entry_get(fx->log, 7, 11, &epoch, &kind, NULL), 0);
	assert_int_equal(repl_log_entry_get(fx->log, 8, 1, &epoch, &kind, NULL), 0);

	struct repl_log_entry ents[16];
	int n = repl_log_read(fx->log, 7, 3, 10, 16, 1 << 20, ents);
	assert_int_equal(n, 8);
	assert_memory_equal(ents[0].payload, "p7-e3-3", ents[0].len);
	assert_memory_equal(ents[7].payload, "p7-e3-10", ents[7].len);
	repl_log_entries_free(ents, (size_t)n);
	/* Bounded by entries and by bytes (at least one entry). */
	n = repl_log_read(fx->log, 7, 1, 10, 4, 1 << 20, ents);
	assert_int_equal(n, 4);
	repl_log_entries_free(ents, (size_t)n);
	n = repl_log_read(fx->log, 7, 1, 10, 16, 1, ents);
	assert_int_equal(n, 1);
	repl_log_entries_free(ents, (size_t)n);
	n = repl_log_read(fx->log, 7, 1, 10, 16, 15, ents);
	assert_int_equal(n, 3);   /* 7 + 7 < 15, 7 + 7 + 7 >= 15 */
	repl_log_entries_free(ents, (size_t)n);
	/* Reading where there is nothing is an error (a gap). */
	assert_int_equal(repl_log_read(fx->log, 7, 11, 20, 16, 1 << 20, ents), -1);
	assert_int_equal(repl_log_read(fx->log, 7, 5, 4, 16, 1 << 20, ents), 0);
}

static void test_truncate_and_state(void **state)
{
	struct fx *fx = *state;
	struct repl_log_state st = { 0 };
	append_n(fx->log, 1, 1, 10, 1, &st);
	/* A new epoch's entries replace the tail from 6 on. */
	repl_log_batch *b = repl_log_batch_create(fx->log, 1);
	repl_log_batch_truncate(b, 6, 10);
	repl_log_batch_put_entry(b, 6, 2, REPL_KIND_BARRIER, NULL, 0);
	st.epoch = 2;
	st.last_index = 6;
	st.commit_index = 5;
	st.applied_index = 4;
	repl_log_batch_put_state(b, &st);
	assert_int_equal(repl_log_batch_commit(b, 0), 0);

	uint64_t epoch;
	int kind;
	assert_int_equal(repl_log_entry_get(fx->log, 1, 6, &epoch, &kind, NULL), 1);
	assert_int_equal(epoch, 2);
	assert_int_equal(kind, REPL_KIND_BARRIER);
	assert_int_equal(repl_log_entry_get(fx->log, 1, 7, &epoch, &kind, NULL), 0);
	assert_int_equal(repl_log_entry_get(fx->log, 1, 10, &epoch, &kind, NULL), 0);
	assert_int_equal(repl_log_entry_epoch(fx->log, 1, 5, &epoch), 0);
	assert_int_equal(epoch, 1);
	assert_int_equal(repl_log_entry_epoch(fx->log, 1, 0, &epoch), 0);
	assert_int_equal(epoch, 0);
	assert_int_equal(repl_log_entry_epoch(fx->log, 1, 9, &epoch), -1);

	struct repl_log_state got;
	assert_int_equal(repl_log_state_load(fx->log, 1, &got), 1);
	assert_int_equal(got.epoch, 2);
	assert_int_equal(got.last_index, 6);
	assert_int_equal(got.commit_index, 5);
	assert_int_equal(got.applied_index, 4);
}

static void test_reopen_and_partitions(void **state)
{
	struct fx *fx = *state;
	struct repl_log_state a = { 0 }, b = { 0 };
	append_n(fx->log, 0xFFFFFFFFu, 1, 300, 9, &a);
	append_n(fx->log, 0, 1, 5, 4, &b);
	repl_log_close(&fx->log);
	const char *err;
	assert_int_equal(repl_log_open(fx->dir, &fx->log, &err), 0);
	/* A second open of the same directory fails (LevelDB's lock). */
	repl_log *second;
	assert_int_equal(repl_log_open(fx->dir, &second, &err), -1);

	struct repl_log_state got;
	assert_int_equal(repl_log_state_load(fx->log, 0xFFFFFFFFu, &got), 1);
	assert_int_equal(got.last_index, 300);
	assert_int_equal(got.epoch, 9);
	assert_int_equal(repl_log_state_load(fx->log, 0, &got), 1);
	assert_int_equal(got.last_index, 5);
	/* Partition 0's read does not run into partition 0xFFFFFFFF. */
	struct repl_log_entry ents[16];
	int n = repl_log_read(fx->log, 0, 1, 100, 16, 1 << 20, ents);
	assert_int_equal(n, 5);
	assert_memory_equal(ents[4].payload, "p0-e4-5", ents[4].len);
	repl_log_entries_free(ents, (size_t)n);
	n = repl_log_read(fx->log, 0xFFFFFFFFu, 256, 300, 16, 1 << 20, ents);
	assert_int_equal(n, 16);
	assert_memory_equal(ents[0].payload, "p4294967295-e9-256", ents[0].len);
	repl_log_entries_free(ents, (size_t)n);
}

static void test_base_and_meta(void **state)
{
	struct fx *fx = *state;
	struct repl_log_state st = { 0 };
	append_n(fx->log, 3, 1, 10, 5, &st);
	/* Compaction: 1..4 go, the base moves to 4 in the same batch. */
	repl_log_batch *b = repl_log_batch_create(fx->log, 3);
	repl_log_batch_truncate(b, 1, 4);
	st.base_index = 4;
	st.base_epoch = 5;
	repl_log_batch_put_state(b, &st);
	assert_int_equal(repl_log_batch_commit(b, 0), 0);
	struct repl_log_state got;
	assert_int_equal(repl_log_state_load(fx->log, 3, &got), 1);
	assert_int_equal(got.base_index, 4);
	assert_int_equal(got.base_epoch, 5);
	assert_int_equal(got.last_index, 10);
	uint64_t epoch;
	int kind;
	assert_int_equal(repl_log_entry_get(fx->log, 3, 4, &epoch, &kind, NULL), 0);
	assert_int_equal(repl_log_entry_get(fx->log, 3, 5, &epoch, &kind, NULL), 1);

	/* Sizes without payloads; a compacted index is a gap. */
	struct repl_log_meta meta[16];
	int n = repl_log_read_meta(fx->log, 3, 5, 10, 16, meta);
	assert_int_equal(n, 6);
	assert_int_equal(meta[0].epoch, 5);
	assert_int_equal(meta[0].len, strlen("p3-e5-5"));
	assert_int_equal(meta[5].len, strlen("p3-e5-10"));
	assert_int_equal(repl_log_read_meta(fx->log, 3, 5, 10, 2, meta), 2);
	assert_int_equal(repl_log_read_meta(fx->log, 3, 1, 10, 16, meta), -1);
	assert_int_equal(repl_log_read_meta(fx->log, 3, 9, 12, 16, meta), -1);
	assert_int_equal(repl_log_read_meta(fx->log, 3, 11, 10, 16, meta), 0);
}

/* Entry sizes and epochs come from the side records: reading them reads
 * no entry value, whatever the payload size; a truncate removes the side
 * records with the entries. */
static void test_meta_reads_no_values(void **state)
{
	struct fx *fx = *state;
	repl_log_batch *b = repl_log_batch_create(fx->log, 4);
	size_t big = 64 * 1024;
	char *payload = malloc(big);
	memset(payload, 'x', big);
	for (uint64_t i = 1; i <= 50; i++)
		repl_log_batch_put_entry(b, i, 2 + i / 25, REPL_KIND_DATA, payload, big - i);
	struct repl_log_state st = { .epoch = 4, .last_index = 50 };
	repl_log_batch_put_state(b, &st);
	assert_int_equal(repl_log_batch_commit(b, 1), 0);
	free(payload);

	uint64_t before = repl_log_value_bytes_read(fx->log);
	struct repl_log_meta meta[64];
	assert_int_equal(repl_log_read_meta(fx->log, 4, 1, 50, 64, meta), 50);
	for (int i = 0; i < 50; i++) {
		assert_int_equal(meta[i].len, big - (size_t)(i + 1));
		assert_int_equal(meta[i].epoch, 2 + (uint64_t)(i + 1) / 25);
	}
	uint64_t epoch;
	assert_int_equal(repl_log_entry_epoch(fx->log, 4, 30, &epoch), 0);
	assert_int_equal(epoch, 3);
	assert_int_equal(repl_log_value_bytes_read(fx->log), before);

	/* Reading an entry itself is counted. */
	int kind;
	assert_int_equal(repl_log_entry_get(fx->log, 4, 1, &epoch, &kind, NULL), 1);
	assert_true(repl_log_value_bytes_read(fx->log) >= before + big - 1);

	/* Truncated entries lose their side records too: a gap. */
	b = repl_log_batch_create(fx->log, 4);
	repl_log_batch_truncate(b, 1, 10);
	assert_int_equal(repl_log_batch_commit(b, 0), 0);
	assert_int_equal(repl_log_read_meta(fx->log, 4, 1, 50, 64, meta), -1);
	assert_int_equal(repl_log_entry_epoch(fx->log, 4, 10, &epoch), -1);
	assert_int_equal(repl_log_read_meta(fx->log, 4, 11, 50, 64, meta), 40);
}

/* Write key -> value straight into the log's LevelDB, as an older binary
 * would have (the log is closed around it and reopened). */
static void raw_put(struct fx *fx, const void *key, size_t klen, const void *val, size_t vlen)
{
	repl_log_close(&fx->log);
	leveldb_options_t *o = leveldb_options_create();
	char *err = NULL;
	leveldb_t *db = leveldb_open(o, fx->dir, &err);
	assert_null(err);
	leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
	leveldb_put(db, wo, key, klen, val, vlen, &err);
	assert_null(err);
	leveldb_writeoptions_destroy(wo);
	leveldb_close(db);
	leveldb_options_destroy(o);
	const char *e;
	assert_int_equal(repl_log_open(fx->dir, &fx->log, &e), 0);
}

/* Entries written by a binary from before side records (an 'E' key only)
 * are still measured, by reading them (counted), mixed with newer ones. */
static void test_meta_older_entries(void **state)
{
	struct fx *fx = *state;
	for (uint8_t i = 1; i <= 5; i++) {
		char key[] = { REPL_KEY_VERSION, 'E', 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, (char)i };
		uint8_t v[9 + 100] = { 0 };
		v[7] = 3;   /* epoch */
		raw_put(fx, key, sizeof key, v, 9 + (size_t)i * 10);
	}
	struct repl_log_state st = { .epoch = 4 };
	append_n(fx->log, 6, 6, 5, 4, &st);

	uint64_t before = repl_log_value_bytes_read(fx->log);
	struct repl_log_meta meta[16];
	assert_int_equal(repl_log_read_meta(fx->log, 6, 1, 10, 16, meta), 10);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(meta[i].epoch, 3);
		assert_int_equal(meta[i].len, (size_t)(i + 1) * 10);
		assert_int_equal(meta[5 + i].epoch, 4);
	}
	assert_int_equal(meta[9].len, strlen("p6-e4-10"));
	uint64_t read = repl_log_value_bytes_read(fx->log) - before;
	assert_int_equal(read, 5 * 9 + 150);   /* the five old entries only */
	uint64_t epoch;
	assert_int_equal(repl_log_entry_epoch(fx->log, 6, 2, &epoch), 0);
	assert_int_equal(epoch, 3);
}

/* A state record written before compaction existed (4 fields) reads as
 * base 0, and one is still written while the base is 0. */
static void test_state_v1(void **state)
{
	struct fx *fx = *state;
	const char key[] = { REPL_KEY_VERSION, 'S', 0, 0, 0, 9 };
	uint8_t v[32] = { 0 };
	v[7] = 2;     /* epoch */
	v[15] = 30;   /* last */
	v[23] = 20;   /* commit */
	v[31] = 10;   /* applied */
	raw_put(fx, key, sizeof key, v, sizeof v);
	struct repl_log_state got;
	assert_int_equal(repl_log_state_load(fx->log, 9, &got), 1);
	assert_int_equal(got.epoch, 2);
	assert_int_equal(got.last_index, 30);
	assert_int_equal(got.commit_index, 20);
	assert_int_equal(got.applied_index, 10);
	assert_int_equal(got.base_index, 0);
	assert_int_equal(got.base_epoch, 0);

	/* Written back: still the short record while the base is 0, the long
	 * one once it is not. */
	size_t lens[2];
	for (int k = 0; k < 2; k++) {
		got.base_index = (uint64_t)k * 5;
		got.base_epoch = (uint64_t)k * 2;
		repl_log_batch *b = repl_log_batch_create(fx->log, 9);
		repl_log_batch_put_state(b, &got);
		assert_int_equal(repl_log_batch_commit(b, 0), 0);
		struct repl_log_state again;
		assert_int_equal(repl_log_state_load(fx->log, 9, &again), 1);
		assert_int_equal(again.base_index, got.base_index);
		assert_int_equal(again.base_epoch, got.base_epoch);
		assert_int_equal(again.applied_index, 10);
		repl_log_close(&fx->log);
		leveldb_options_t *o = leveldb_options_create();
		char *err = NULL;
		leveldb_t *db = leveldb_open(o, fx->dir, &err);
		assert_null(err);
		leveldb_readoptions_t *ro = leveldb_readoptions_create();
		char *val = leveldb_get(db, ro, key, sizeof key, &lens[k], &err);
		assert_null(err);
		assert_non_null(val);
		leveldb_free(val);
		leveldb_readoptions_destroy(ro);
		leveldb_close(db);
		leveldb_options_destroy(o);
		const char *e;
		assert_int_equal(repl_log_open(fx->dir, &fx->log, &e), 0);
	}
	assert_int_equal(lens[0], 32);
	assert_int_equal(lens[1], 48);
}

static void test_open_bad_dir(void **state)
{
	(void)state;
	repl_log *log;
	const char *err = NULL;
	assert_int_equal(repl_log_open("/proc/no/such/dir", &log, &err), -1);
	assert_non_null(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_append_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncate_and_state, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_and_partitions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_base_and_meta, setup, teardown),
		cmocka_unit_test_setup_teardown(test_meta_reads_no_values, setup, teardown),
		cmocka_unit_test_setup_teardown(test_meta_older_entries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_v1, setup, teardown),
		cmocka_unit_test(test_open_bad_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
