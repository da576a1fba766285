/* fuzz-queue-log.c: libFuzzer target for what a queue replica reads from
 * the network: a partition log entry (queue.proto LogEntry, unpacked and
 * applied with queue_store_apply()) and a partition snapshot chunk
 * (queue_store_snapshot_install_chunk()).
 *
 * Input: the first byte picks the path (even: log entry, odd: snapshot
 * chunk of partition FUZZ_PARTITION of FUZZ_PARTS after install_begin),
 * the rest is the bytes. Checked on every input:
 *   - a log entry is applied or refused, and the applied index always
 *     moves to the entry's index (a replica never wedges on an entry);
 *   - a refused chunk writes nothing: the partition exports as empty;
 *   - an accepted chunk's partition exports again, and what it exports is
 *     accepted by install_chunk (export and install agree on the format).
 *
 * The store opened in LLVMFuzzerInitialize lives in file-scope variables
 * (libFuzzer's C interface has no context pointer): a test-harness-only
 * exception to the no-globals rule.
 */
#include "queue-store.h"

#include "buf.h"

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_PARTS 4
#define FUZZ_PARTITION 1
#define FUZZ_CHUNK_MAX 256

static queue_store *fuzz_store;
static char fuzz_dir[64];
static uint64_t fuzz_index;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int remove_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void fuzz_cleanup(void)
{
	queue_store_close(&fuzz_store);
	nftw(fuzz_dir, remove_cb, 16, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	strcpy(fuzz_dir, "/tmp/mail-fuzz-queue-XXXXXX");
	const char *error;
	if (mkdtemp(fuzz_dir) == NULL || queue_store_open(fuzz_dir, &fuzz_store, &error) < 0)
		abort();
	atexit(fuzz_cleanup);
	return 0;
}

/* Export the fuzzed partition into chunks; returns how many were made. */
static size_t export_all(buf *chunks, size_t max)
{
	queue_store_snapshot *sn;
	uint64_t applied;
	const char *error;
	if (queue_store_snapshot_open(fuzz_store, FUZZ_PARTITION, FUZZ_PARTS, &sn, &applied,
				      &error) < 0)
		abort();
	size_t n = 0;
	for (;;) {
		if (n == max)
			abort();
		buf_init(&chunks[n]);
		int r = queue_store_snapshot_next(sn, &chunks[n], FUZZ_CHUNK_MAX);
		if (r < 0)
			abort();
		if (r == 0) {
			buf_deinit(&chunks[n]);
			break;
		}
		n++;
	}
	queue_store_snapshot_close(&sn);
	return n;
}

static void fuzz_log_entry(const uint8_t *data, size_t size)
{
	const char *error;
	Queue__LogEntry *e = queue__log_entry__unpack(NULL, size, data);
	Queue__LogEntry empty = QUEUE__LOG_ENTRY__INIT;
	uint64_t index = ++fuzz_index;
	int r = queue_store_apply(fuzz_store, 0, index, e != NULL ? e : &empty, &error);
	if (r < 0)
		abort();
	uint64_t applied;
	if (queue_store_applied_index(fuzz_store, 0, &applied, &error) < 0 || applied != index)
		abort();
	if (e != NULL)
		queue__log_entry__free_unpacked(e, NULL);
}

static void fuzz_chunk(const uint8_t *data, size_t size)
{
	const char *error;
	if (queue_store_snapshot_install_begin(fuzz_store, FUZZ_PARTITION, FUZZ_PARTS,
					       &error) < 0)
		abort();
	int r = queue_store_snapshot_install_chunk(fuzz_store, FUZZ_PARTITION, FUZZ_PARTS, data,
						   size, &error);
	buf chunks[64];
	size_t n = export_all(chunks, 64);
	if (r < 0 && n != 0)
		abort(); /* a refused chunk wrote something */
	if (queue_store_snapshot_install_begin(fuzz_store, FUZZ_PARTITION, FUZZ_PARTS,
					       &error) < 0)
		abort();
	for (size_t i = 0; i < n; i++) {
		if (queue_store_snapshot_install_chunk(fuzz_store, FUZZ_PARTITION, FUZZ_PARTS,
						       chunks[i].data, chunks[i].len, &error) < 0)
			abort(); /* our own export refused */
		buf_deinit(&chunks[i]);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	if (data[0] % 2 == 0)
		fuzz_log_entry(data + 1, size - 1);
	else
		fuzz_chunk(data + 1, size - 1);
	return 0;
}
