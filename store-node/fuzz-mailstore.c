/* fuzz-mailstore.c: libFuzzer target driving a mailstore with what a peer
 * can put in store.proto requests (users, mailbox names, delivery ids,
 * flags, uids) and checking the IMAP invariants after each select.
 *
 * Input: lines; the first byte names the operation, the rest are fields
 * separated by TAB. Lower-case ops act as user "u1@x.test", upper-case ones
 * as "u2@x.test".
 *   d mailbox id flag...     deliver (the line is the body)
 *   c mailbox                create
 *   s mailbox                select (invariants checked)
 *   f mailbox uid            fetch
 *   a|r|= mailbox uid flag... store flags add / remove / set
 *   x mailbox uid...         expunge (no uid: every \Deleted)
 *   l                        list
 *   k mailbox                delete
 *   n mailbox to             rename
 *   u mailbox [0]            subscribe (unsubscribe with 0)
 *   p mailbox flag...        append (the line is the body)
 *   o|m mailbox to uid       copy | move that uid
 *   g mailbox modseq uidnext changes since modseq (every page)
 * After each line the select of the mailbox checks the IMAP invariants
 * and that the mailbox record's counters (exists, unseen, deleted, size)
 * are what its messages add up to.
 *
 * libFuzzer's C interface leaves no place for a context pointer, so the
 * store opened in LLVMFuzzerInitialize lives in a file-scope variable; this
 * is the one exception to the no-globals rule, in a test harness only.
 */
#include "mailstore.h"

#include "mail-error.h"
#include "xalloc.h"

#include <ctype.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FIELDS 16

static mailstore *fuzz_store;
static char *fuzz_dir;

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

/* libFuzzer ends with exit(): close the store and remove its directory. */
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
	char *dir = xstrdup("/tmp/mail-fuzz-mailstore-XXXXXX");
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
	return 0;
}

static void check_select(const char *user, const char *mailbox)
{
	struct mailstore_mailbox_info info;
	struct mailstore_message_info *msgs;
	size_t n;
	if (mailstore_select(fuzz_store, user, mailbox, &info, &msgs, &n) != MAIL_OK)
		return;
	if (info.exists != n || info.uidvalidity == 0)
		abort();
	/* the counters every batch keeps agree with the messages */
	struct mailstore_mailbox_info st;
	if (mailstore_status(fuzz_store, user, mailbox, &st) != MAIL_OK)
		abort();
	uint32_t unseen = 0, deleted = 0;
	uint64_t size = 0;
	for (size_t i = 0; i < n; i++) {
		int seen = 0, del = 0;
		for (size_t j = 0; j < msgs[i].n_flags; j++) {
			seen |= strcmp(msgs[i].flags[j], "\\Seen") == 0;
			del |= strcmp(msgs[i].flags[j], "\\Deleted") == 0;
		}
		unseen += !seen;
		deleted += del;
		size += msgs[i].size;
	}
	if (st.exists != n || st.unseen != unseen || st.deleted != deleted || st.size != size ||
	    st.highest_modseq != info.highest_modseq)
		abort();
	mailstore_mailbox_info_free(&st);
	for (size_t i = 0; i < n; i++) {
		if (msgs[i].uid == 0 || msgs[i].uid >= info.uidnext)
			abort();
		if (i > 0 && msgs[i].uid <= msgs[i - 1].uid)
			abort();
		if (msgs[i].modseq == 0 || msgs[i].modseq > info.highest_modseq)
			abort();
		for (size_t j = 1; j < msgs[i].n_flags; j++) {
			if (strcmp(msgs[i].flags[j - 1], msgs[i].flags[j]) >= 0)
				abort();
		}
	}
	mailstore_message_infos_free(msgs, n);
	mailstore_mailbox_info_free(&info);
}

static void run_line(char *line, size_t len)
{
	if (len == 0)
		return;
	char op = line[0];
	const char *user = islower((unsigned char)op) ? "u1@x.test" : "u2@x.test";
	char *fields[MAX_FIELDS];
	size_t n = 0;
	char *p = line + 1;
	while (n < MAX_FIELDS) {
		fields[n++] = p;
		char *tab = strchr(p, '\t');
		if (tab == NULL)
			break;
		*tab = '\0';
		p = tab + 1;
	}
	const char *mailbox = fields[0];
	uint32_t uids[MAX_FIELDS];
	size_t n_uids = 0;
	for (size_t i = 1; i < n; i++)
		uids[n_uids++] = (uint32_t)strtoul(fields[i], NULL, 10);

	switch (tolower((unsigned char)op)) {
	case 'd': {
		struct mailstore_deliver_result r;
		const char *id = n > 1 ? fields[1] : "";
		mailstore_deliver(fuzz_store, user, mailbox, id, line, len, 0,
				  (const char *const *)fields + (n > 2 ? 2 : n), n > 2 ? n - 2 : 0,
				  &r);
		break;
	}
	case 'c': {
		struct mailstore_mailbox_info info;
		if (mailstore_mailbox_create(fuzz_store, user, mailbox, 0, &info) == MAIL_OK)
			mailstore_mailbox_info_free(&info);
		break;
	}
	case 's':
		check_select(user, mailbox);
		break;
	case 'f': {
		struct mailstore_message_info info;
		void *body;
		size_t blen;
		if (mailstore_fetch(fuzz_store, user, mailbox, n_uids > 0 ? uids[0] : 1, &info,
				    &body, &blen) == MAIL_OK) {
			free(body);
			mailstore_message_info_free(&info);
		}
		break;
	}
	case 'a':
	case 'r':
	case '=': {
		enum mailstore_flag_mode mode = op == 'a' || op == 'A' ? MAILSTORE_FLAGS_ADD
					      : op == '=' ? MAILSTORE_FLAGS_SET
							   : MAILSTORE_FLAGS_REMOVE;
		struct mailstore_message_info *msgs;
		size_t nm;
		uint32_t uid = n_uids > 0 ? uids[0] : 1;
		if (mailstore_store_flags(fuzz_store, user, mailbox, &uid, 1, mode,
					  (const char *const *)fields + (n > 2 ? 2 : n),
					  n > 2 ? n - 2 : 0, &msgs, &nm) == MAIL_OK)
			mailstore_message_infos_free(msgs, nm);
		break;
	}
	case 'x': {
		uint32_t *gone;
		size_t ng;
		if (mailstore_expunge(fuzz_store, user, mailbox, uids, n_uids, &gone, &ng) ==
		    MAIL_OK)
			free(gone);
		break;
	}
	case 'l': {
		struct mailstore_mailbox_info *boxes;
		size_t nb;
		if (mailstore_list(fuzz_store, user, &boxes, &nb) == MAIL_OK)
			mailstore_mailbox_infos_free(boxes, nb);
		break;
	}
	case 'k':
		(void)mailstore_mailbox_delete(fuzz_store, user, mailbox);
		break;
	case 'n':
		(void)mailstore_mailbox_rename(fuzz_store, user, mailbox, n > 1 ? fields[1] : "");
		break;
	case 'u':
		(void)mailstore_subscribe(fuzz_store, user, mailbox,
					  !(n > 1 && strcmp(fields[1], "0") == 0));
		break;
	case 'p': {
		struct mailstore_msg_in in = {
			.body = line, .body_len = len,
			.flags = (const char *const *)fields + (n > 1 ? 1 : n),
			.n_flags = n > 1 ? n - 1 : 0,
		};
		uint32_t uv, *got;
		if (mailstore_append(fuzz_store, user, mailbox, &in, 1, &uv, &got) == MAIL_OK)
			free(got);
		break;
	}
	case 'o':
	case 'm': {
		uint32_t uid = n > 2 ? (uint32_t)strtoul(fields[2], NULL, 10) : 1;
		struct search_uid_range r = { uid > 0 ? uid : 1, uid > 0 ? uid : 1 };
		uint32_t uv, *src, *dst;
		size_t nc;
		if (mailstore_copy(fuzz_store, user, mailbox, &r, 1, n > 1 ? fields[1] : "",
				   tolower((unsigned char)op) == 'm', &uv, &src, &dst, &nc) ==
		    MAIL_OK) {
			free(src);
			free(dst);
		}
		if (n > 1)
			check_select(user, fields[1]);
		break;
	}
	case 'g': {
		struct mailstore_changes_cursor cur = { 0 };
		uint64_t since = n > 1 ? strtoull(fields[1], NULL, 10) : 0;
		uint32_t next = n > 2 ? (uint32_t)strtoul(fields[2], NULL, 10) : 1;
		for (int pages = 0; cur.phase != MAILSTORE_CHANGES_DONE; pages++) {
			struct mailstore_changes ch;
			if (mailstore_changes(fuzz_store, user, mailbox, since, next, &cur, &ch) !=
			    MAIL_OK)
				break;
			for (size_t i = 0; i < ch.n_added; i++)
				if (ch.added[i].first < next || ch.added[i].first > ch.added[i].last)
					abort();
			mailstore_changes_free(&ch);
			if (pages > 100000)
				abort();   /* a cursor that does not move */
		}
		break;
	}
	default:
		break;
	}
	check_select(user, mailbox);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* a NUL-terminated copy; an embedded NUL ends its line early (the
	 * store's C-string API cannot see past one either) */
	char *copy = xmalloc(size + 1);
	memcpy(copy, data, size);
	copy[size] = '\0';
	char *line = copy;
	int ops = 0;
	while (line < copy + size && ops++ < 32) {
		char *nl = memchr(line, '\n', (size_t)(copy + size - line));
		size_t len = nl != NULL ? (size_t)(nl - line) : strlen(line);
		line[len] = '\0';
		run_line(line, strlen(line));
		if (nl == NULL)
			break;
		line = nl + 1;
	}
	free(copy);
	return 0;
}
