/* imap-cmd-mailbox.c: SELECT, EXAMINE, CLOSE, UNSELECT, EXPUNGE and
 * the session's snapshot of the selected mailbox.
 *
 * The snapshot (s->msgs, ascending UIDs) is taken at SELECT and is this
 * session's sequence-number <-> UID map: only this session's EXPUNGE
 * changes it, and then in the same step as the untagged EXPUNGE replies
 * that tell the client, so both sides always agree on numbering.
 */
#include "imap-server-private.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "mail-error.h"
#include "xalloc.h"

static const char imap_system_flags[] = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";

/* ---- the selected mailbox ------------------------------------------- */

int imap_flags_have(const char *const *flags, size_t n_flags, const char *flag)
{
	for (size_t i = 0; i < n_flags; i++) {
		if (strcasecmp(flags[i], flag) == 0)
			return 1;
	}
	return 0;
}

void imap_session_append_flags(struct imap_session *s, const char *const *flags,
			       size_t n_flags)
{
	conn_append(&s->conn, "(", 1);
	for (size_t i = 0; i < n_flags; i++) {
		if (i > 0)
			conn_append(&s->conn, " ", 1);
		conn_append(&s->conn, flags[i], strlen(flags[i]));
	}
	conn_append(&s->conn, ")", 1);
}

void imap_session_mailbox_clear(struct imap_session *s)
{
	imap_session_watch_stop(s);
	imap_uidmap_destroy(&s->uidmap);
	free(s->expunge_pending);
	s->expunge_pending = NULL;
	s->n_expunge_pending = 0;
	free(s->searchres);
	s->searchres = NULL;
	s->n_searchres = 0;
	free(s->mailbox);
	s->mailbox = NULL;
	s->read_only = 0;
	s->uidvalidity = 0;
	s->uidnext = 0;
	s->highest_modseq = 0;
	s->watch_modseq = 0;
	s->sync_self = 0;
	if (s->state == IMAP_STATE_SELECTED)
		s->state = IMAP_STATE_AUTH;
}

uint32_t imap_session_seq_of(const struct imap_session *s, uint32_t uid)
{
	return s->uidmap != NULL ? imap_uidmap_seq_of(s->uidmap, uid) : 0;
}

int imap_session_is_selected(const struct imap_session *s, const char *name)
{
	if (s->state != IMAP_STATE_SELECTED || s->mailbox == NULL)
		return 0;
	if (strcasecmp(name, "INBOX") == 0)
		return strcmp(s->mailbox, "INBOX") == 0;
	return strcmp(s->mailbox, name) == 0;
}

void imap_session_mailbox_touched(struct imap_session *s)
{
	if (s->state == IMAP_STATE_SELECTED)
		s->sync_self = 1;
}

/* ---- SELECT / EXAMINE ------------------------------------------------ */

/* What SELECT's parameters asked for (RFC 7162 3.1.8, 3.2.5). */
struct imap_select_ctx {
	int qresync;
	uint32_t q_uidvalidity;
	uint64_t q_modseq;
	struct search_uid_range *known; /* known-uids, NULL: all */
	size_t n_known;
};

static void imap_select_ctx_free(void *p)
{
	struct imap_select_ctx *ctx = p;
	free(ctx->known);
	free(ctx);
}

static void imap_select_finish(struct imap_session *s)
{
	log_event(LOG_INFO, "imap", "event=select sid=%s exists=%u read_only=%d", s->conn.id,
		  imap_uidmap_count(s->uidmap), s->read_only);
	imap_cmd_done(s, "OK", s->read_only ? "READ-ONLY" : "READ-WRITE",
		      s->read_only ? "Examine completed" : "Select completed");
}

/* QRESYNC: what changed since the client's modseq. Expunges of messages
 * still in the view (expunged between open and now) are told as plain
 * VANISHED, since EXISTS counted them. */
static void imap_select_changes_cb(int status, const struct imap_changes *ch, void *arg)
{
	struct imap_session *s = arg;
	if (conn_is_closed(&s->conn)) {
		conn_unref(&s->conn);
		return;
	}
	struct imap_select_ctx *ctx = s->cmd_ctx;
	if (status == MAIL_OK) {
		/* VANISHED (EARLIER): expunged uids the client may know of */
		struct imap_range_list out = { 0 };
		uint32_t *now = NULL;
		size_t n_now = 0, now_cap = 0;
		for (size_t i = 0; i < ch->n_expunged; i++) {
			uint64_t uid = ch->expunged[i].first, last = ch->expunged[i].last;
			while (uid <= last) {
				uint32_t seq = imap_uidmap_seq_ceil(s->uidmap, (uint32_t)uid);
				uint32_t next = imap_uidmap_uid_of(s->uidmap, seq);
				if (next == uid) {
					if (n_now == now_cap) {
						now_cap = now_cap == 0 ? 16 : now_cap * 2;
						now = xrealloc(now, now_cap * sizeof(*now));
					}
					now[n_now++] = (uint32_t)uid++;
					continue;
				}
				uint64_t end = next != 0 && next <= last ? next - 1u : last;
				if (ctx->known == NULL) {
					imap_range_list_add(&out, (uint32_t)uid, (uint32_t)end);
				} else {
					for (size_t k = 0; k < ctx->n_known; k++) {
						uint64_t a = ctx->known[k].first > uid ? ctx->known[k].first
											: uid;
						uint64_t b = ctx->known[k].last < end ? ctx->known[k].last
										       : end;
						if (a <= b)
							imap_range_list_add(&out, (uint32_t)a, (uint32_t)b);
					}
				}
				uid = end + 1u;
			}
		}
		struct search_uid_range *out_r = out.r;
		size_t n_out = out.n;
		if (n_out > 0) {
			conn_append(&s->conn, "* VANISHED (EARLIER) ", 21);
			imap_session_append_uid_ranges(s, out_r, n_out);
			conn_append(&s->conn, "\r\n", 2);
		}
		free(out_r);
		for (size_t i = 0; i < ch->n_changed; i++) {
			uint32_t seq = imap_session_seq_of(s, ch->changed[i].uid);
			if (seq != 0)
				imap_session_send_flags(s, seq, &ch->changed[i]);
		}
		if (n_now > 0)
			imap_session_expunged(s, now, n_now);
		free(now);
	}
	/* a failure here leaves the client to resynchronise by itself */
	imap_select_finish(s);
	conn_process(&s->conn);
	conn_unref(&s->conn);
}

static void imap_cmd_open_cb(int status, const struct imap_mailbox_info *box,
			     const struct search_uid_range *uids, size_t n_ranges,
			     const char *const *keywords, size_t n_keywords,
			     uint32_t first_unseen_uid, void *arg)
{
	struct imap_session *s = arg;
	if (conn_is_closed(&s->conn)) {
		conn_unref(&s->conn);
		return;
	}
	if (status == MAIL_OK) {
		s->uidmap = imap_uidmap_create();
		if (imap_uidmap_set(s->uidmap, uids, n_ranges) < 0) {
			log_event(LOG_ERROR, "imap", "event=select_bad_uids sid=%s", s->conn.id);
			status = MAIL_ERR_INTERNAL;
		}
	}
	if (status != MAIL_OK) {
		imap_session_mailbox_clear(s);
		imap_cmd_fail(s, status);
		conn_process(&s->conn);
		conn_unref(&s->conn);
		return;
	}
	struct imap_select_ctx *ctx = s->cmd_ctx;
	s->uidvalidity = box->uidvalidity;
	s->uidnext = box->uidnext;
	s->highest_modseq = box->highest_modseq;
	s->state = IMAP_STATE_SELECTED;
	uint32_t exists = imap_uidmap_count(s->uidmap);
	int rev2 = (s->enabled & IMAP_ENABLED_IMAP4REV2) != 0;

	conn_printf(&s->conn, "* FLAGS (%s", imap_system_flags);
	for (size_t i = 0; i < n_keywords; i++)
		conn_printf(&s->conn, " %s", keywords[i]);
	conn_append(&s->conn, ")\r\n", 3);
	if (s->read_only) {
		conn_printf(&s->conn, "* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n");
	} else {
		conn_printf(&s->conn, "* OK [PERMANENTFLAGS (%s", imap_system_flags);
		for (size_t i = 0; i < n_keywords; i++)
			conn_printf(&s->conn, " %s", keywords[i]);
		conn_printf(&s->conn, " \\*)] Flags permitted.\r\n");
	}
	conn_printf(&s->conn, "* %u EXISTS\r\n", exists);
	if (!rev2) {
		conn_printf(&s->conn, "* 0 RECENT\r\n");
		uint32_t unseen = first_unseen_uid != 0 ? imap_session_seq_of(s, first_unseen_uid) : 0;
		if (unseen != 0)
			conn_printf(&s->conn, "* OK [UNSEEN %u] First unseen.\r\n", unseen);
	}
	conn_printf(&s->conn, "* OK [UIDVALIDITY %u] UIDs valid\r\n", s->uidvalidity);
	conn_printf(&s->conn, "* OK [UIDNEXT %u] Predicted next UID\r\n", s->uidnext);
	conn_printf(&s->conn, "* OK [HIGHESTMODSEQ %llu] Highest\r\n",
		    (unsigned long long)s->highest_modseq);
	if (rev2) {
		/* RFC 9051 6.3.2: the mailbox name as the server knows it */
		conn_printf(&s->conn, "* LIST () \"/\" ");
		imap_session_append_mailbox(s, s->mailbox);
		conn_append(&s->conn, "\r\n", 2);
	}
	imap_session_watch_start(s);
	if (ctx->qresync && ctx->q_uidvalidity == s->uidvalidity &&
	    ctx->q_modseq < s->highest_modseq) {
		/* every message (known_uidnext = uidnext): nothing is "added" */
		s->server->backend->changes(s->server->backend_ctx, s->user, s->mailbox,
					    ctx->q_modseq, s->uidnext, imap_select_changes_cb, s);
		return; /* keeps the reference */
	}
	imap_select_finish(s);
	conn_process(&s->conn);
	conn_unref(&s->conn);
}

/* (QRESYNC (uidvalidity modseq [known-uids [(seq-set uid-set)]])) */
static int imap_select_qresync_parse(struct imap_session *s, const struct imap_arg *arg,
				     struct imap_select_ctx *ctx, const char **error_r)
{
	const char *str;
	char *end;
	*error_r = "Invalid QRESYNC parameters";
	if (arg->type != IMAP_ARG_LIST || arg->list->count < 2 || arg->list->count > 4)
		return -1;
	const struct imap_arg *a = arg->list->args;
	if (!imap_arg_get_atom(&a[0], &str) || str[0] < '1' || str[0] > '9')
		return -1;
	unsigned long long v = strtoull(str, &end, 10);
	if (*end != '\0' || v > UINT32_MAX)
		return -1;
	ctx->q_uidvalidity = (uint32_t)v;
	if (!imap_arg_get_atom(&a[1], &str) || str[0] < '1' || str[0] > '9')
		return -1;
	v = strtoull(str, &end, 10);
	if (*end != '\0' || v >= (1ULL << 63))
		return -1;
	ctx->q_modseq = v;
	if (arg->list->count >= 3) {
		struct imap_seqset set;
		if (!imap_arg_get_atom(&a[2], &str) ||
		    imap_seqset_parse(str, 16384, &set, error_r) < 0)
			return -1;
		imap_seqset_resolve(&set, UINT32_MAX);
		ctx->known = xcalloc(set.count + 1, sizeof(*ctx->known));
		for (size_t i = 0; i < set.count; i++)
			ctx->known[i] = (struct search_uid_range){ set.ranges[i].lo, set.ranges[i].hi };
		ctx->n_known = set.count;
		imap_seqset_deinit(&set);
	}
	if (arg->list->count == 4) {
		/* the sequence match data only saves bandwidth: checked, unused */
		const struct imap_arg *m = &a[3];
		struct imap_seqset set;
		if (m->type != IMAP_ARG_LIST || m->list->count != 2)
			return -1;
		for (int i = 0; i < 2; i++) {
			if (!imap_arg_get_atom(&m->list->args[i], &str) ||
			    imap_seqset_parse(str, 16384, &set, error_r) < 0)
				return -1;
			imap_seqset_deinit(&set);
		}
	}
	(void)s;
	ctx->qresync = 1;
	return 0;
}

static void imap_cmd_select_common(struct imap_session *s, const struct imap_arg *args,
				   size_t n_args, int read_only)
{
	const char *error = "SELECT needs a mailbox name";
	struct imap_select_ctx *ctx = xcalloc(1, sizeof(*ctx));
	char *name = NULL;

	if (n_args < 1 || n_args > 2)
		goto bad;
	int ret = imap_mailbox_name_from_client(s, &args[0], &name, &error);
	if (ret == IMAP_NAME_INVALID) {
		imap_select_ctx_free(ctx);
		imap_cmd_done(s, "NO", "CANNOT", error);
		return;
	}
	if (ret < 0)
		goto bad;
	if (n_args == 2) {
		/* RFC 4466 select parameters: CONDSTORE, QRESYNC (...) */
		const struct imap_arg *p = &args[1];
		error = "Invalid SELECT parameters";
		if (p->type != IMAP_ARG_LIST)
			goto bad;
		for (size_t i = 0; i < p->list->count; i++) {
			const char *param;
			if (!imap_arg_get_atom(&p->list->args[i], &param))
				goto bad;
			if (strcasecmp(param, "CONDSTORE") == 0) {
				s->enabled |= IMAP_ENABLED_CONDSTORE;
			} else if (strcasecmp(param, "QRESYNC") == 0 && i + 1 < p->list->count) {
				if ((s->enabled & IMAP_ENABLED_QRESYNC) == 0) {
					error = "QRESYNC is not enabled";
					goto bad;
				}
				if (imap_select_qresync_parse(s, &p->list->args[++i], ctx, &error) < 0)
					goto bad;
			} else {
				goto bad;
			}
		}
	}
	/* RFC 3501 6.3.1: a SELECT, even a failing one, leaves the previous
	 * mailbox unselected; RFC 7162 3.2.11 / RFC 9051: say so. */
	if (s->state == IMAP_STATE_SELECTED &&
	    (s->enabled & (IMAP_ENABLED_QRESYNC | IMAP_ENABLED_IMAP4REV2)) != 0)
		conn_printf(&s->conn, "* OK [CLOSED] Previous mailbox closed\r\n");
	imap_session_mailbox_clear(s);
	s->mailbox = name;
	s->read_only = read_only;
	s->cmd_ctx = ctx;
	s->cmd_ctx_free = imap_select_ctx_free;
	conn_ref(&s->conn);
	s->server->backend->open(s->server->backend_ctx, s->user, s->mailbox, imap_cmd_open_cb,
				 s);
	return;
bad:
	free(name);
	imap_select_ctx_free(ctx);
	imap_cmd_done(s, "BAD", NULL, error);
}

void imap_cmd_select(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	imap_cmd_select_common(s, args, n_args, 0);
}

void imap_cmd_examine(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	imap_cmd_select_common(s, args, n_args, 1);
}

/* ---- EXPUNGE / UID EXPUNGE / CLOSE / UNSELECT ----------------------- */

static void imap_cmd_expunge_cb(int status, const uint32_t *uids, size_t n,
				uint64_t highest_modseq, void *arg)
{
	struct imap_session *s = arg;
	if (conn_is_closed(&s->conn)) {
		conn_unref(&s->conn);
		return;
	}
	if (status != MAIL_OK) {
		imap_cmd_fail(s, status);
	} else {
		/* earlier expunges first, so that numbers stay right */
		imap_session_report_expunge_pending(s);
		imap_session_expunged(s, uids, n);
		imap_session_own_change(s, highest_modseq, NULL, 0);
		imap_cmd_done(s, "OK", NULL, "Expunge completed");
	}
	conn_process(&s->conn);
	conn_unref(&s->conn);
}

void imap_cmd_expunge(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	(void)args;
	if (n_args != 0) {
		imap_cmd_done(s, "BAD", NULL, "EXPUNGE takes no arguments");
		return;
	}
	if (s->read_only) {
		imap_cmd_done(s, "NO", "READ-ONLY", "Mailbox is read-only");
		return;
	}
	conn_ref(&s->conn);
	s->server->backend->expunge(s->server->backend_ctx, s->user, s->mailbox, NULL, 0,
				    imap_cmd_expunge_cb, s);
}

/* UID EXPUNGE (RFC 4315 2.1): only the \Deleted among the uids. */
void imap_cmd_uid_expunge(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	struct search_uid_range *ranges;
	size_t n_ranges;
	const char *error;
	if (n_args != 1) {
		imap_cmd_done(s, "BAD", NULL, "UID EXPUNGE needs a UID set");
		return;
	}
	if (imap_session_seqset_ranges(s, &args[0], 1, &ranges, &n_ranges, &error) < 0) {
		imap_cmd_done(s, "BAD", NULL, error);
		return;
	}
	if (s->read_only) {
		free(ranges);
		imap_cmd_done(s, "NO", "READ-ONLY", "Mailbox is read-only");
		return;
	}
	if (n_ranges == 0) {
		imap_cmd_done(s, "OK", NULL, "Expunge completed");
		return;
	}
	size_t k;
	uint32_t *uids = imap_session_view_uids(s, ranges, n_ranges, &k);
	free(ranges);
	conn_ref(&s->conn);
	s->server->backend->expunge(s->server->backend_ctx, s->user, s->mailbox, uids, k,
				    imap_cmd_expunge_cb, s);
	free(uids);
}

static void imap_cmd_close_cb(int status, const uint32_t *uids, size_t n,
			      uint64_t highest_modseq, void *arg)
{
	struct imap_session *s = arg;
	(void)uids;
	(void)n;
	(void)highest_modseq;
	if (conn_is_closed(&s->conn)) {
		conn_unref(&s->conn);
		return;
	}
	if (status != MAIL_OK) {
		/* the mailbox is closed anyway; the client learns that the
		 * \Deleted messages are still there */
		const struct mail_error_info *info = mail_error_info(status);
		conn_printf(&s->conn, "* NO [%s] %s\r\n",
			    info->imap_code != NULL ? info->imap_code : "SERVERBUG", info->text);
	}
	imap_session_mailbox_clear(s);
	imap_cmd_done(s, "OK", NULL, "Close completed");
	conn_process(&s->conn);
	conn_unref(&s->conn);
}

void imap_cmd_close(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	(void)args;
	if (n_args != 0) {
		imap_cmd_done(s, "BAD", NULL, "CLOSE takes no arguments");
		return;
	}
	if (s->read_only) {
		imap_session_mailbox_clear(s);
		imap_cmd_done(s, "OK", NULL, "Close completed");
		return;
	}
	imap_session_watch_stop(s); /* nothing more to tell */
	conn_ref(&s->conn);
	s->server->backend->expunge(s->server->backend_ctx, s->user, s->mailbox, NULL, 0,
				    imap_cmd_close_cb, s);
}

void imap_cmd_unselect(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	(void)args;
	if (n_args != 0) {
		imap_cmd_done(s, "BAD", NULL, "UNSELECT takes no arguments");
		return;
	}
	imap_session_mailbox_clear(s);
	imap_cmd_done(s, "OK", NULL, "Unselect completed");
}
