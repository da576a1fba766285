/* fuzz-snapshot-install.c: libFuzzer target for
 * mailstore_snapshot_install_chunk(), which reads partition snapshot chunks
 * that arrive from another replica over the network.
 *
 * Input: one chunk as is, installed into partition FUZZ_PARTITION of
 * FUZZ_PARTS (the partition of "u1@x.test") after install_begin emptied it.
 * Checked on every input:
 *   - the status is MAIL_OK or MAIL_ERR_PARAMS;
 *   - PARAMS wrote nothing: the partition exports as empty;
 *   - OK: what the partition exports is accepted again by install_chunk
 *     (export and install agree on the format), and the users the corpus
 *     uses can be listed, selected, fetched, paged (uids, fetch_meta with
 *     structure records, changes) without a crash;
 *   - a user of another partition, stored at start-up, is still there.
 *
 * The store opened in LLVMFuzzerInitialize lives in a file-scope variable
 * (libFuzzer's C interface has no context pointer): a test-harness-only
 * exception to the no-globals rule.
 */
#include "mailstore.h"

#include "buf.h"
#include "mail-error.h"
#include "util.h"
#include "xalloc.h"

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_PARTS 4
#define FUZZ_CHUNK_MAX 512
#define FUZZ_USERS 3

static mailstore *fuzz_store;
static char *fuzz_dir;
static uint32_t fuzz_partition;
static char *fuzz_users[FUZZ_USERS]; /* u<i>@x.test of fuzz_partition */
static char *fuzz_foreign;           /* a user of another partition */

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
	for (int i = 0; i < FUZZ_USERS; i++)
		free(fuzz_users[i]);
	free(fuzz_foreign);
}

static uint32_t partition_of(const char *user)
{
	return (uint32_t)(util_hash64(user, strlen(user)) % FUZZ_PARTS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	char *dir = xstrdup("/tmp/mail-fuzz-snapshot-XXXXXX");
	if (mkdtemp(dir) == NULL)
		abort();
	fuzz_dir = dir;
	struct mailstore_limits lim;
	mailstore_limits_default(&lim);
	lim.max_message_size = 4096;
	lim.max_flags = 8;
	lim.max_flag_len = 32;
	const char *error;
	if (mailstore_open(dir, &lim, &fuzz_store, &error) != MAIL_OK)
		abort();
	atexit(fuzz_cleanup);
	fuzz_partition = partition_of("u1@x.test");
	int got = 0;
	for (int i = 1; got < FUZZ_USERS || fuzz_foreign == NULL; i++) {
		char *u = xasprintf("u%d@x.test", i);
		if (partition_of(u) == fuzz_partition && got < FUZZ_USERS)
			fuzz_users[got++] = u;
		else if (partition_of(u) != fuzz_partition && fuzz_foreign == NULL)
			fuzz_foreign = u;
		else
			free(u);
	}
	struct mailstore_deliver_result r;
	if (mailstore_deliver(fuzz_store, fuzz_foreign, "", "f1", "x\r\n", 3, 0, NULL, 0, &r) !=
	    MAIL_OK)
		abort();
	return 0;
}

/* Export the partition; every chunk must install again. Returns the number
 * of chunks. */
static size_t export_reinstall(void)
{
	mailstore_snapshot *snap;
	uint64_t applied;
	if (mailstore_snapshot_open(fuzz_store, fuzz_partition, FUZZ_PARTS, &snap, &applied) !=
	    MAIL_OK)
		abort();
	size_t n = 0;
	int ret;
	buf c;
	buf_init(&c);
	while ((ret = mailstore_snapshot_next(snap, &c, FUZZ_CHUNK_MAX)) == 1) {
		if (mailstore_snapshot_install_chunk(fuzz_store, fuzz_partition, FUZZ_PARTS,
						     c.data, c.len) != MAIL_OK)
			abort();
		buf_reset(&c);
		n++;
	}
	if (ret != 0)
		abort();
	buf_deinit(&c);
	mailstore_snapshot_close(&snap);
	return n;
}

/* The read paths over whatever was imported: errors are fine, crashes and
 * leaks are not. */
static void read_user(const char *user)
{
	struct mailstore_mailbox_info *boxes;
	size_t n_boxes;
	if (mailstore_list(fuzz_store, user, &boxes, &n_boxes) != MAIL_OK)
		return;
	for (size_t i = 0; i < n_boxes; i++) {
		struct mailstore_mailbox_info info;
		struct mailstore_message_info *msgs;
		size_t n;
		if (mailstore_select(fuzz_store, user, boxes[i].name, &info, &msgs, &n) !=
		    MAIL_OK)
			continue;
		for (size_t j = 0; j < n && j < 8; j++) {
			struct mailstore_message_info mi;
			void *body;
			size_t len;
			if (mailstore_fetch(fuzz_store, user, boxes[i].name, msgs[j].uid, &mi,
					    &body, &len) == MAIL_OK) {
				free(body);
				mailstore_message_info_free(&mi);
			}
		}
		mailstore_message_infos_free(msgs, n);
		mailstore_mailbox_info_free(&info);
		/* issue 9's reads over the imported records: counters and
		 * keywords, the indexes the install derived, structure records,
		 * tombstones */
		struct search_uid_range *r;
		size_t n_r;
		uint32_t next, unseen;
		if (mailstore_uids(fuzz_store, user, boxes[i].name, 0, 0, &r, &n_r, &next, &unseen,
				   &info) == MAIL_OK) {
			free(r);
			mailstore_mailbox_info_free(&info);
		}
		struct search_uid_range all = { 1, UINT32_MAX };
		struct mailstore_meta *metas;
		if (mailstore_fetch_meta(fuzz_store, user, boxes[i].name, &all, 1, 0, 1, 0, &metas,
					 &n, &next) == MAIL_OK)
			mailstore_metas_free(metas, n);
		struct mailstore_changes_cursor cur = { 0 };
		struct mailstore_changes ch;
		while (cur.phase != MAILSTORE_CHANGES_DONE &&
		       mailstore_changes(fuzz_store, user, boxes[i].name, 1, 1, &cur, &ch) == MAIL_OK)
			mailstore_changes_free(&ch);
	}
	mailstore_mailbox_infos_free(boxes, n_boxes);
	char **subs;
	if (mailstore_subscriptions(fuzz_store, user, &subs, &n_boxes) == MAIL_OK)
		mailstore_names_free(subs, n_boxes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (mailstore_snapshot_install_begin(fuzz_store, fuzz_partition, FUZZ_PARTS) != MAIL_OK)
		abort();
	int ret = mailstore_snapshot_install_chunk(fuzz_store, fuzz_partition, FUZZ_PARTS, data,
						   size);
	if (ret != MAIL_OK && ret != MAIL_ERR_PARAMS)
		abort();
	size_t chunks = export_reinstall();
	if (ret == MAIL_ERR_PARAMS && chunks != 0)
		abort(); /* a refused chunk wrote something */
	if (ret == MAIL_OK) {
		for (int i = 0; i < FUZZ_USERS; i++)
			read_user(fuzz_users[i]);
	}
	int exists = 0;
	if (mailstore_mailbox_exists(fuzz_store, fuzz_foreign, "", &exists) != MAIL_OK ||
	    !exists)
		abort();
	return 0;
}
