/* imap-cmd-copy.c: COPY, UID COPY (RFC 3501 6.4.7, UIDPLUS RFC 4315
 * COPYUID), MOVE and UID MOVE (RFC 6851).
 *
 * One backend->copy call does the whole command (MOVE: copy and expunge
 * in one atomic step on the store). MOVE tells COPYUID in an untagged OK
 * before the EXPUNGE (or VANISHED) replies, as RFC 6851 3.3 asks; the
 * expunged uids leave the view in the same step, so the changes told
 * later do not repeat them. A copy into the selected mailbox itself is
 * told as EXISTS by the changes that end the command.
 */
#include "imap-server-private.h"

#include <stdlib.h>
#include <string.h>

#include "mail-error.h"
#include "xalloc.h"

struct imap_copy_ctx {
	int move;
	char *to;
};

static void imap_copy_ctx_free(void *p)
{
	struct imap_copy_ctx *ctx = p;
	free(ctx->to);
	free(ctx);
}

/* uids in their order as a uid-set ("3:5,9"): runs of +1 become ranges. */
static void imap_uid_list_append(buf *b, const uint32_t *uids, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j + 1 < n && uids[j + 1] == uids[j] + 1u)
			j++;
		if (j == i)
			buf_printf(b, "%s%u", i > 0 ? "," : "", uids[i]);
		else
			buf_printf(b, "%s%u:%u", i > 0 ? "," : "", uids[i], uids[j]);
		i = j + 1;
	}
}

static void imap_copy_cb(int status, uint32_t dst_uidvalidity, const uint32_t *src_uids,
			 const uint32_t *dst_uids, size_t n, void *arg)
{
	struct imap_session *s = arg;
	if (conn_is_closed(&s->conn)) {
		conn_unref(&s->conn);
		return;
	}
	struct imap_copy_ctx *ctx = s->cmd_ctx;
	if (status == MAIL_ERR_NOT_FOUND) {
		imap_cmd_done(s, "NO", "TRYCREATE", "No such destination mailbox");
	} else if (status != MAIL_OK) {
		imap_cmd_fail(s, status);
	} else {
		char *code = NULL;
		if (n > 0) {
			buf b;
			buf_init(&b);
			buf_printf(&b, "COPYUID %u ", dst_uidvalidity);
			imap_uid_list_append(&b, src_uids, n);
			buf_append(&b, " ", 1);
			imap_uid_list_append(&b, dst_uids, n);
			buf_append(&b, "", 1);
			code = (char *)buf_steal(&b, NULL);
		}
		if (imap_session_is_selected(s, ctx->to))
			imap_session_mailbox_touched(s);
		if (ctx->move) {
			if (code != NULL)
				conn_printf(&s->conn, "* OK [%s] Moved\r\n", code);
			imap_session_report_expunge_pending(s);
			/* src_uids are ascending (imap-backend.h) */
			imap_session_expunged(s, src_uids, n);
			imap_session_mailbox_touched(s);
			imap_cmd_done(s, "OK", NULL, n > 0 ? "Move completed" : "No messages moved");
		} else {
			imap_cmd_done(s, "OK", code, n > 0 ? "Copy completed" : "No messages copied");
		}
		free(code);
	}
	conn_process(&s->conn);
	conn_unref(&s->conn);
}

static void imap_cmd_copy_common(struct imap_session *s, const struct imap_arg *args,
				 size_t n_args, int move)
{
	const char *error;
	char *to;
	struct search_uid_range *ranges;
	size_t n_ranges;

	if (n_args != 2) {
		imap_cmd_done(s, "BAD", NULL,
			      move ? "MOVE needs a sequence set and a mailbox"
				   : "COPY needs a sequence set and a mailbox");
		return;
	}
	if (imap_session_seqset_ranges(s, &args[0], s->cmd_uid, &ranges, &n_ranges, &error) < 0) {
		imap_cmd_done(s, "BAD", NULL, error);
		return;
	}
	if (imap_cmd_mailbox_arg(s, &args[1], 0, &to) < 0) {
		free(ranges);
		return;
	}
	if (move && s->read_only) {
		free(ranges);
		free(to);
		imap_cmd_done(s, "NO", "READ-ONLY", "Mailbox is read-only");
		return;
	}
	struct imap_copy_ctx *ctx = xcalloc(1, sizeof(*ctx));
	ctx->move = move;
	ctx->to = to;
	s->cmd_ctx = ctx;
	s->cmd_ctx_free = imap_copy_ctx_free;
	/* an empty set still checks the destination (TRYCREATE) */
	conn_ref(&s->conn);
	s->server->backend->copy(s->server->backend_ctx, s->user, s->mailbox, ranges, n_ranges,
				 to, move, imap_copy_cb, s);
	free(ranges);
}

void imap_cmd_copy(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	imap_cmd_copy_common(s, args, n_args, 0);
}

void imap_cmd_move(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	imap_cmd_copy_common(s, args, n_args, 1);
}
