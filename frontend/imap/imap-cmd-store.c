/* imap-cmd-store.c: STORE and UID STORE (RFC 3501 6.4.6, RFC 7162
 * UNCHANGEDSINCE and MODSEQ).
 *
 * UNCHANGEDSINCE: the backend's store_flags has no condition, so the
 * modseqs are read first (fetch_meta) and only the messages not modified
 * since go to store_flags; the others are named in [MODIFIED ...]. A
 * change by another session between the two calls is not caught (a
 * window of one round trip; the store's own conditional write would
 * close it). Under CONDSTORE the untagged FETCH replies carry MODSEQ,
 * read after the store. The uids stored go to s->sync_skip: the changes
 * told at the end of the command do not repeat them.
 */
#include "imap-server-private.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mail-error.h"
#include "xalloc.h"

struct imap_store_ctx {
	int silent;
	enum imap_flag_mode mode;
	char **flags;
	size_t n_flags;
	uint64_t unchanged_since; /* 0: unconditional */
	int conditional;
	uint32_t *uids;           /* to store */
	size_t n_uids;
	struct imap_range_list modified; /* MODIFIED: failed the condition */
	/* what store_flags answered, kept for the MODSEQ read after it */
	struct imap_range_list stored;
};

static void imap_store_ctx_free(void *p)
{
	struct imap_store_ctx *ctx = p;
	for (size_t i = 0; i < ctx->n_flags; i++)
		free(ctx->flags[i]);
	free(ctx->flags);
	free(ctx->uids);
	free(ctx->modified.r);
	free(ctx->stored.r);
	free(ctx);
}

static void imap_store_finish(struct imap_session *s, struct imap_store_ctx *ctx)
{
	if (ctx->modified.n > 0) {
		/* RFC 7162 3.1.3: sequence numbers, or uids for UID STORE */
		buf b;
		buf_init(&b);
		buf_append_str(&b, "MODIFIED ");
		for (size_t i = 0; i < ctx->modified.n; i++) {
			uint32_t a = ctx->modified.r[i].first, z = ctx->modified.r[i].last;
			if (!s->cmd_uid) {
				a = imap_session_seq_of(s, a);
				z = imap_session_seq_of(s, z);
			}
			if (a == z)
				buf_printf(&b, "%s%u", i > 0 ? "," : "", a);
			else
				buf_printf(&b, "%s%u:%u", i > 0 ? "," : "", a, z);
		}
		buf_append(&b, "", 1);
		imap_cmd_done(s, "OK", (const char *)b.data, "Conditional STORE failed");
		buf_deinit(&b);
	} else {
		imap_cmd_done(s, "OK", NULL, "Store completed");
	}
}

/* CONDSTORE: the stored messages with their modseq now. */
static void imap_store_modseq_cb(int status, const struct imap_msg_meta *msgs, size_t n,
				 int more, void *arg)
{
	struct imap_session *s = arg;
	if (conn_is_closed(&s->conn)) {
		if (!more || status != MAIL_OK)
			conn_unref(&s->conn);
		return;
	}
	struct imap_store_ctx *ctx = s->cmd_ctx;
	if (status != MAIL_OK) {
		/* the flags are stored: say so without MODSEQ */
		imap_store_finish(s, ctx);
		conn_process(&s->conn);
		conn_unref(&s->conn);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		uint32_t seq = imap_session_seq_of(s, msgs[i].uid);
		if (seq != 0)
			imap_session_send_flags(s, seq, &msgs[i]);
	}
	if (more)
		return;
	imap_store_finish(s, ctx);
	conn_process(&s->conn);
	conn_unref(&s->conn);
}

static void imap_store_cb(int status, const struct imap_msg_info *msgs, size_t n, void *arg)
{
	struct imap_session *s = arg;
	if (conn_is_closed(&s->conn)) {
		conn_unref(&s->conn);
		return;
	}
	struct imap_store_ctx *ctx = s->cmd_ctx;
	if (status != MAIL_OK) {
		imap_cmd_fail(s, status);
		conn_process(&s->conn);
		conn_unref(&s->conn);
		return;
	}
	/* When every changed message got the modseq right after the one the
	 * session knows, this STORE is the mailbox's only change since: the
	 * session knows it all, no changes round trip before the tagged OK
	 * (anything later raises the watch's modseq above it). */
	int alone = n > 0 && !s->sync_self && s->watch_modseq <= s->highest_modseq + 1;
	for (size_t i = 0; i < n && alone; i++)
		if (msgs[i].modseq != s->highest_modseq + 1)
			alone = 0;
	if (alone)
		s->highest_modseq++;
	else if (n > 0)
		imap_session_mailbox_touched(s);
	for (size_t i = 0; i < n; i++)
		imap_range_list_add(&s->sync_skip, msgs[i].uid, msgs[i].uid);
	if (!ctx->silent && (s->enabled & IMAP_ENABLED_CONDSTORE) && n > 0) {
		/* the replies need each message's new modseq */
		s->server->backend->fetch_meta(s->server->backend_ctx, s->user, s->mailbox,
					       s->sync_skip.r, s->sync_skip.n, IMAP_META_FLAGS, 0,
					       imap_store_modseq_cb, s);
		return; /* keeps the reference */
	}
	for (size_t i = 0; i < n && !ctx->silent; i++) {
		uint32_t seq = imap_session_seq_of(s, msgs[i].uid);
		if (seq == 0)
			continue;
		conn_printf(&s->conn, "* %u FETCH (", seq);
		if (s->cmd_uid)
			conn_printf(&s->conn, "UID %u ", msgs[i].uid);
		conn_append(&s->conn, "FLAGS ", 6);
		imap_session_append_flags(s, msgs[i].flags, msgs[i].n_flags);
		conn_append(&s->conn, ")\r\n", 3);
	}
	imap_store_finish(s, ctx);
	conn_process(&s->conn);
	conn_unref(&s->conn);
}

static void imap_store_run(struct imap_session *s, struct imap_store_ctx *ctx)
{
	if (ctx->n_uids == 0) {
		imap_store_finish(s, ctx);
		return;
	}
	conn_ref(&s->conn);
	s->server->backend->store_flags(s->server->backend_ctx, s->user, s->mailbox, ctx->uids,
					ctx->n_uids, ctx->mode, (const char *const *)ctx->flags,
					ctx->n_flags, imap_store_cb, s);
}

/* UNCHANGEDSINCE: keep the uids whose modseq is not above it. */
static void imap_store_check_cb(int status, const struct imap_msg_meta *msgs, size_t n,
				int more, void *arg)
{
	struct imap_session *s = arg;
	if (conn_is_closed(&s->conn)) {
		if (!more || status != MAIL_OK)
			conn_unref(&s->conn);
		return;
	}
	struct imap_store_ctx *ctx = s->cmd_ctx;
	if (status != MAIL_OK) {
		imap_cmd_fail(s, status);
		conn_process(&s->conn);
		conn_unref(&s->conn);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (msgs[i].modseq > ctx->unchanged_since)
			imap_range_list_add(&ctx->modified, msgs[i].uid, msgs[i].uid);
	}
	if (more)
		return;
	/* drop the modified from the uids to store (both ascending) */
	size_t out = 0, k = 0;
	for (size_t i = 0; i < ctx->n_uids; i++) {
		uint32_t uid = ctx->uids[i];
		while (k < ctx->modified.n && ctx->modified.r[k].last < uid)
			k++;
		if (k < ctx->modified.n && uid >= ctx->modified.r[k].first)
			continue;
		ctx->uids[out++] = uid;
	}
	ctx->n_uids = out;
	imap_store_run(s, ctx); /* with no uid left, answers (and frees ctx) */
	if (out == 0)
		conn_process(&s->conn);
	conn_unref(&s->conn);
}

/* A flag argument: a system flag (returned in its canonical spelling) or
 * a keyword atom. NULL when invalid. */
static const char *imap_flag_check(const struct imap_arg *arg)
{
	static const char *const system_flags[] = { "\\Answered", "\\Flagged", "\\Deleted",
						    "\\Seen", "\\Draft" };
	const char *s;
	if (!imap_arg_get_atom(arg, &s))
		return NULL;
	if (s[0] == '\\') {
		for (size_t i = 0; i < sizeof(system_flags) / sizeof(system_flags[0]); i++) {
			if (strcasecmp(s, system_flags[i]) == 0)
				return system_flags[i];
		}
		return NULL;
	}
	if (strpbrk(s, "*%]\\[") != NULL)
		return NULL;
	return s;
}

/* (UNCHANGEDSINCE n): RFC 7162 3.1.3. */
static int imap_store_modifiers_parse(const struct imap_arg *arg, struct imap_store_ctx *ctx)
{
	const char *name, *num;
	char *end;
	if (arg->type != IMAP_ARG_LIST || arg->list->count != 2 ||
	    !imap_arg_get_atom(&arg->list->args[0], &name) ||
	    strcasecmp(name, "UNCHANGEDSINCE") != 0 ||
	    !imap_arg_get_atom(&arg->list->args[1], &num) || num[0] < '0' || num[0] > '9')
		return -1;
	unsigned long long v = strtoull(num, &end, 10);
	if (*end != '\0' || v >= (1ULL << 63))
		return -1;
	ctx->unchanged_since = v;
	ctx->conditional = 1;
	return 0;
}

void imap_cmd_store(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	const char *item, *error;
	struct imap_store_ctx *ctx = xcalloc(1, sizeof(*ctx));
	size_t a = 1;

	if (n_args >= 2 && args[1].type == IMAP_ARG_LIST) {
		if (imap_store_modifiers_parse(&args[1], ctx) < 0) {
			imap_store_ctx_free(ctx);
			imap_cmd_done(s, "BAD", NULL, "Invalid STORE modifiers");
			return;
		}
		a = 2;
	}
	if (n_args < a + 2 || !imap_arg_get_atom(&args[a], &item)) {
		imap_store_ctx_free(ctx);
		imap_cmd_done(s, "BAD", NULL, "STORE needs a sequence set, an item and flags");
		return;
	}
	if (item[0] == '+' || item[0] == '-') {
		ctx->mode = item[0] == '+' ? IMAP_FLAGS_ADD : IMAP_FLAGS_REMOVE;
		item++;
	} else {
		ctx->mode = IMAP_FLAGS_SET;
	}
	ctx->silent = strcasecmp(item, "FLAGS.SILENT") == 0;
	if (!ctx->silent && strcasecmp(item, "FLAGS") != 0) {
		imap_store_ctx_free(ctx);
		imap_cmd_done(s, "BAD", NULL, "Invalid STORE item");
		return;
	}
	/* flags: one parenthesised list, or flags as separate arguments */
	const struct imap_arg *flag_args = &args[a + 1];
	size_t n_flags = n_args - a - 1;
	if (n_flags == 1 && args[a + 1].type == IMAP_ARG_LIST) {
		flag_args = args[a + 1].list->args;
		n_flags = args[a + 1].list->count;
	}
	ctx->flags = xcalloc(n_flags + 1, sizeof(*ctx->flags));
	for (size_t i = 0; i < n_flags; i++) {
		const char *f = imap_flag_check(&flag_args[i]);
		if (f == NULL) {
			imap_store_ctx_free(ctx);
			imap_cmd_done(s, "BAD", NULL, "Invalid flag");
			return;
		}
		ctx->flags[ctx->n_flags++] = xstrdup(f);
	}
	struct search_uid_range *ranges;
	size_t n_ranges;
	if (imap_session_seqset_ranges(s, &args[0], s->cmd_uid, &ranges, &n_ranges, &error) < 0) {
		imap_store_ctx_free(ctx);
		imap_cmd_done(s, "BAD", NULL, error);
		return;
	}
	if (s->read_only) {
		free(ranges);
		imap_store_ctx_free(ctx);
		imap_cmd_done(s, "NO", "READ-ONLY", "Mailbox is read-only");
		return;
	}
	if (ctx->conditional)
		s->enabled |= IMAP_ENABLED_CONDSTORE; /* RFC 7162 3.1 */
	ctx->uids = imap_session_view_uids(s, ranges, n_ranges, &ctx->n_uids);
	s->cmd_ctx = ctx;
	s->cmd_ctx_free = imap_store_ctx_free;
	if (ctx->conditional && n_ranges > 0) {
		conn_ref(&s->conn);
		s->server->backend->fetch_meta(s->server->backend_ctx, s->user, s->mailbox, ranges,
					       n_ranges, IMAP_META_FLAGS, 0, imap_store_check_cb, s);
		free(ranges);
		return;
	}
	free(ranges);
	imap_store_run(s, ctx);
}
