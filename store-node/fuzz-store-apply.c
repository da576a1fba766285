/* fuzz-store-apply.c: libFuzzer target for store_service_apply(), which
 * decodes log entries that arrive from the primary over the network
 * (AppendEntries): a version byte, a method, a timestamp and a packed
 * request. Any input must give a status (never a crash), and no response
 * bytes with an error status.
 *
 * Input: the entry's payload as is. The store opened in
 * LLVMFuzzerInitialize lives in a file-scope variable (libFuzzer's C
 * interface has no context pointer): a test-harness-only exception to the
 * no-globals rule.
 */
#include "store-service.h"

#include "buf.h"
#include "mail-error.h"
#include "xalloc.h"

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static mailstore *fuzz_store;
static char *fuzz_dir;
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
	mailstore_close(&fuzz_store);
	nftw(fuzz_dir, remove_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(fuzz_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_dir = xstrdup("/tmp/mail-fuzz-store-apply-XXXXXX");
	if (mkdtemp(fuzz_dir) == NULL)
		abort();
	struct mailstore_limits lim;
	mailstore_limits_default(&lim);
	lim.max_message_size = 4096;
	const char *error;
	if (mailstore_open(fuzz_dir, &lim, &fuzz_store, &error) != MAIL_OK)
		abort();
	atexit(fuzz_cleanup);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	buf out;
	buf_init(&out);
	int status = store_service_apply(fuzz_store, 3, ++fuzz_index, data, size, &out);
	if (status != MAIL_OK && out.len != 0)
		abort();   /* no response with an error */
	buf_deinit(&out);
	return 0;
}
