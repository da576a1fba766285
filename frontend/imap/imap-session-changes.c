/* imap-session-changes.c: what others (and the session itself) change in
 * the selected mailbox, told to the client (RFC 3501 7.4.1, RFC 2177 IDLE,
 * RFC 7162 CONDSTORE/QRESYNC; issue 9 item 3).
 *
 * The session watches its mailbox (backend->watch). The watch only says
 * "the highest modseq is now at least M": the session notes M. When M is
 * above what the client has been told (s->highest_modseq), or when the
 * running command changed the mailbox itself, the changes are fetched
 * (backend->changes since s->highest_modseq) and told before the command's
 * tagged reply; under IDLE they are fetched and told at once.
 *
 * Sequence numbers stay consistent because only this file and the
 * session's own EXPUNGE change the uid map, always in the same step as the
 * untagged reply that tells the client. Expunges learnt during FETCH,
 * STORE or SEARCH (which must not send EXPUNGE) stay in the map and in
 * s->expunge_pending until a command that may tell them ends.
 *
 * The session's own changes are not told twice: its EXPUNGE removed the
 * uids from the map already (an expunge of a uid not in the map is
 * ignored), its STORE and FETCH's \Seen left their uids in s->sync_skip
 * for the sync that ends the command.
 */
#include "imap-server-private.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "mail-error.h"
#include "xalloc.h"

/* ---- the watch -------------------------------------------------------- */

static void imap_idle_synced(struct imap_session *s);

static int imap_idle_expired(struct imap_session *s)
{
	uint64_t now = uv_now(s->server->loop);
	if (now - s->idle_start_ms <= s->server->set.conn.idle_timeout_ms)
		return 0;
	imap_session_bye(s, "IDLE for too long", "idle-too-long");
	return 1;
}

static void imap_watch_cb(uint64_t highest_modseq, void *arg)
{
	struct imap_session *s = arg;
	if (conn_is_closed(&s->conn))
		return;
	if (highest_modseq > s->watch_modseq)
		s->watch_modseq = highest_modseq;
	if (s->idling && !s->syncing && imap_session_sync_wanted(s) && !imap_idle_expired(s))
		imap_session_sync(s, 1, imap_idle_synced);
}

void imap_session_watch_start(struct imap_session *s)
{
	s->watch_modseq = s->highest_modseq;
	s->watch = s->server->backend->watch(s->server->backend_ctx, s->user, s->mailbox,
					     s->highest_modseq, imap_watch_cb, s);
}

void imap_session_watch_stop(struct imap_session *s)
{
	if (s->watch != NULL)
		s->server->backend->unwatch(s->server->backend_ctx, s->watch);
	s->watch = NULL;
}

int imap_session_sync_wanted(const struct imap_session *s)
{
	return s->state == IMAP_STATE_SELECTED && s->mailbox != NULL &&
	       (s->sync_self || s->watch_modseq > s->highest_modseq);
}

/* ---- telling ---------------------------------------------------------- */

void imap_session_send_flags(struct imap_session *s, uint32_t seq,
			     const struct imap_msg_meta *m)
{
	conn_printf(&s->conn, "* %u FETCH (", seq);
	if (s->cmd_uid || (s->enabled & IMAP_ENABLED_QRESYNC))
		conn_printf(&s->conn, "UID %u ", m->uid);
	conn_append(&s->conn, "FLAGS ", 6);
	imap_session_append_flags(s, m->flags, m->n_flags);
	if (s->enabled & IMAP_ENABLED_CONDSTORE)
		conn_printf(&s->conn, " MODSEQ (%llu)", (unsigned long long)m->modseq);
	conn_append(&s->conn, ")\r\n", 3);
}

/* Drop from s->expunge_pending what is no longer in the view. */
static void imap_expunge_pending_prune(struct imap_session *s)
{
	struct imap_range_list l = { 0 };
	for (size_t i = 0; i < s->n_expunge_pending; i++) {
		for (uint64_t u = s->expunge_pending[i].first; u <= s->expunge_pending[i].last; u++) {
			if (imap_session_seq_of(s, (uint32_t)u) != 0)
				imap_range_list_add(&l, (uint32_t)u, (uint32_t)u);
		}
	}
	free(s->expunge_pending);
	s->expunge_pending = l.r;
	s->n_expunge_pending = l.n;
}

void imap_session_expunged(struct imap_session *s, const uint32_t *uids, size_t n)
{
	if (n == 0 || s->uidmap == NULL)
		return;
	if (s->enabled & IMAP_ENABLED_QRESYNC) {
		struct imap_range_list l = { 0 };
		for (size_t i = 0; i < n; i++) {
			if (imap_session_seq_of(s, uids[i]) != 0)
				imap_range_list_add(&l, uids[i], uids[i]);
		}
		if (l.n > 0) {
			conn_append(&s->conn, "* VANISHED ", 11);
			imap_session_append_uid_ranges(s, l.r, l.n);
			conn_append(&s->conn, "\r\n", 2);
		}
		free(l.r);
	} else {
		/* from the highest number down: each stays right as it is read */
		for (size_t i = n; i > 0; i--) {
			uint32_t seq = imap_session_seq_of(s, uids[i - 1]);
			if (seq != 0)
				conn_printf(&s->conn, "* %u EXPUNGE\r\n", seq);
		}
	}
	imap_uidmap_remove(s->uidmap, uids, n);
	if (s->n_expunge_pending > 0)
		imap_expunge_pending_prune(s);
}

void imap_session_report_expunge_pending(struct imap_session *s)
{
	if (s->n_expunge_pending == 0)
		return;
	size_t n;
	uint32_t *uids = imap_session_view_uids(s, s->expunge_pending, s->n_expunge_pending, &n);
	free(s->expunge_pending);
	s->expunge_pending = NULL;
	s->n_expunge_pending = 0;
	imap_session_expunged(s, uids, n);
	free(uids);
}

static int imap_sync_skipped(const struct imap_session *s, uint32_t uid)
{
	const struct imap_range_list *l = &s->sync_skip;
	size_t lo = 0, hi = l->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (uid < l->r[mid].first)
			hi = mid;
		else if (uid > l->r[mid].last)
			lo = mid + 1;
		else
			return 1;
	}
	return 0;
}

/* Tell what ch says and bring the view up to date. */
static void imap_sync_apply(struct imap_session *s, const struct imap_changes *ch,
			    int allow_expunge)
{
	/* 1. expunges of messages in the view (others are ignored: ours,
	 * told already, or uids never seen when expunged_exact is 0) */
	struct imap_range_list gone = { 0 };
	for (size_t i = 0; i < ch->n_expunged; i++) {
		uint64_t uid = ch->expunged[i].first;
		while (uid <= ch->expunged[i].last) {
			uint32_t seq = imap_uidmap_seq_ceil(s->uidmap, (uint32_t)uid);
			uint32_t next = imap_uidmap_uid_of(s->uidmap, seq);
			if (next == 0 || next > ch->expunged[i].last)
				break;
			imap_range_list_add(&gone, next, next);
			uid = (uint64_t)next + 1u;
		}
	}
	if (gone.n > 0) {
		/* merged with what waits already, both ascending */
		struct imap_range_list all = { 0 };
		size_t x = 0, y = 0;
		while (x < s->n_expunge_pending || y < gone.n) {
			const struct search_uid_range *r;
			if (y >= gone.n ||
			    (x < s->n_expunge_pending && s->expunge_pending[x].first < gone.r[y].first))
				r = &s->expunge_pending[x++];
			else
				r = &gone.r[y++];
			imap_range_list_add(&all, r->first, r->last);
		}
		free(s->expunge_pending);
		s->expunge_pending = all.r;
		s->n_expunge_pending = all.n;
	}
	if (allow_expunge)
		imap_session_report_expunge_pending(s);
	free(gone.r);

	/* 2. new messages */
	uint32_t before = imap_uidmap_count(s->uidmap);
	for (size_t i = 0; i < ch->n_added; i++) {
		for (uint64_t u = ch->added[i].first; u <= ch->added[i].last; u++) {
			if (u > imap_uidmap_max_uid(s->uidmap))
				imap_uidmap_append(s->uidmap, (uint32_t)u);
		}
	}
	if (imap_uidmap_count(s->uidmap) != before)
		conn_printf(&s->conn, "* %u EXISTS\r\n", imap_uidmap_count(s->uidmap));
	if (ch->uidnext > s->uidnext)
		s->uidnext = ch->uidnext;

	/* 3. flags */
	for (size_t i = 0; i < ch->n_changed; i++) {
		const struct imap_msg_meta *m = &ch->changed[i];
		uint32_t seq = imap_session_seq_of(s, m->uid);
		if (seq == 0 || imap_sync_skipped(s, m->uid))
			continue;
		int pending = 0;
		for (size_t k = 0; k < s->n_expunge_pending; k++) {
			if (m->uid >= s->expunge_pending[k].first && m->uid <= s->expunge_pending[k].last)
				pending = 1;
		}
		if (!pending)
			imap_session_send_flags(s, seq, m);
	}
	if (ch->highest_modseq > s->highest_modseq)
		s->highest_modseq = ch->highest_modseq;
}

void imap_session_own_change(struct imap_session *s, uint64_t highest_modseq,
			     const uint32_t *added, size_t n_added)
{
	if (s->state != IMAP_STATE_SELECTED || s->uidmap == NULL)
		return;
	if (highest_modseq == 0 || s->sync_self || s->syncing ||
	    highest_modseq != s->highest_modseq + 1 || s->watch_modseq > highest_modseq) {
		imap_session_mailbox_touched(s);
		return;
	}
	if (n_added > 0) {
		struct imap_range_list l = { 0 };
		for (size_t i = 0; i < n_added; i++)
			imap_range_list_add(&l, added[i], added[i]);
		struct imap_changes ch = {
			.highest_modseq = highest_modseq,
			.uidnext = added[n_added - 1] + 1u,
			.added = l.r, .n_added = l.n, .expunged_exact = 1,
		};
		imap_sync_apply(s, &ch, 0);
		free(l.r);
	}
	s->highest_modseq = highest_modseq;
}

/* ---- the sync call ---------------------------------------------------- */

struct imap_sync_call {
	struct imap_session *s;
	int allow_expunge;
	void (*done)(struct imap_session *s);
};

static void imap_sync_cb(int status, const struct imap_changes *ch, void *arg)
{
	struct imap_sync_call *call = arg;
	struct imap_session *s = call->s;
	if (conn_is_closed(&s->conn)) {
		free(call);
		conn_unref(&s->conn);
		return;
	}
	s->syncing = 0;
	if (status == MAIL_OK && s->uidmap != NULL) {
		imap_sync_apply(s, ch, call->allow_expunge);
	} else if (status == MAIL_ERR_NOT_FOUND) {
		/* deleted or renamed by another session */
		imap_session_bye(s, "Selected mailbox was deleted", "mailbox-gone");
	} else if (status != MAIL_OK) {
		log_event(LOG_WARN, "imap", "event=changes_failed sid=%s status=%d", s->conn.id,
			  status);
	}
	call->done(s);
	free(call);
	conn_unref(&s->conn);
}

void imap_session_sync(struct imap_session *s, int allow_expunge,
		       void (*done)(struct imap_session *s))
{
	struct imap_sync_call *call = xcalloc(1, sizeof(*call));
	call->s = s;
	call->allow_expunge = allow_expunge;
	call->done = done;
	s->syncing = 1;
	s->sync_self = 0;
	conn_ref(&s->conn);
	s->server->backend->changes(s->server->backend_ctx, s->user, s->mailbox,
				    s->highest_modseq, s->uidnext, imap_sync_cb, call);
}

/* ---- IDLE (RFC 2177) -------------------------------------------------- */

static void imap_idle_finish(struct imap_session *s)
{
	s->idling = 0;
	s->idle_done = 0;
	imap_cmd_done(s, "OK", NULL, "Idle completed");
}

static void imap_idle_synced(struct imap_session *s)
{
	if (s->idle_done) {
		imap_idle_finish(s);
	} else if (s->idling && imap_session_sync_wanted(s) && !imap_idle_expired(s)) {
		/* more came while the last call was out */
		imap_session_sync(s, 1, imap_idle_synced);
		return;
	}
	conn_process(&s->conn);
}

void imap_cmd_idle(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	(void)args;
	if (n_args != 0) {
		imap_cmd_done(s, "BAD", NULL, "IDLE takes no arguments");
		return;
	}
	s->idling = 1;
	s->idle_done = 0;
	s->idle_start_ms = uv_now(s->server->loop);
	conn_append(&s->conn, "+ idling\r\n", 10);
	if (s->state == IMAP_STATE_SELECTED) {
		imap_session_report_expunge_pending(s);
		if (imap_session_sync_wanted(s))
			imap_session_sync(s, 1, imap_idle_synced);
	}
}

/* The longest line accepted while idling ("DONE" and a little slack). */
#define IMAP_IDLE_LINE_MAX 64u

void imap_session_idle_input(struct imap_session *s)
{
	buf *in = &s->conn.in;
	const uint8_t *nl = memchr(in->data, '\n', in->len);
	if (nl == NULL) {
		if (in->len > IMAP_IDLE_LINE_MAX)
			imap_session_bye(s, "IDLE expects DONE", "idle-line-too-long");
		return;
	}
	size_t len = (size_t)(nl - in->data);
	int done = (len == 4 || (len == 5 && in->data[4] == '\r')) &&
		   strncasecmp((const char *)in->data, "DONE", 4) == 0;
	buf_consume(in, len + 1);
	s->idling = 0;
	if (!done) {
		imap_cmd_done(s, "BAD", NULL, "Expected DONE");
		return;
	}
	if (s->syncing) {
		s->idle_done = 1; /* the sync's end finishes the command */
		return;
	}
	imap_idle_finish(s);
}
