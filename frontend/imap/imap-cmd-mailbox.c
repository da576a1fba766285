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

/* ---- snapshot -------------------------------------------------------- */

static void imap_msg_flags_free(struct imap_msg *msg)
{
	for (size_t i = 0; i < msg->n_flags; i++)
		free(msg->flags[i]);
	free(msg->flags);
	msg->flags = NULL;
	msg->n_flags = 0;
}

void imap_msg_set_flags(struct imap_msg *msg, const char *const *flags, size_t n_flags)
{
	imap_msg_flags_free(msg);
	if (n_flags == 0)
		return;
	msg->flags = xcalloc(n_flags, sizeof(*msg->flags));
	for (size_t i = 0; i < n_flags; i++)
		msg->flags[i] = xstrdup(flags[i]);
	msg->n_flags = n_flags;
}

int imap_msg_has_flag(const struct imap_msg *msg, const char *flag)
{
	for (size_t i = 0; i < msg->n_flags; i++) {
		if (strcasecmp(msg->flags[i], flag) == 0)
			return 1;
	}
	return 0;
}

void imap_session_append_flags(struct imap_session *s, const struct imap_msg *msg)
{
	conn_append(&s->conn, "(", 1);
	for (size_t i = 0; i < msg->n_flags; i++) {
		if (i > 0)
			conn_append(&s->conn, " ", 1);
		conn_append(&s->conn, msg->flags[i], strlen(msg->flags[i]));
	}
	conn_append(&s->conn, ")", 1);
}

void imap_session_mailbox_clear(struct imap_session *s)
{
	for (size_t i = 0; i < s->n_msgs; i++)
		imap_msg_flags_free(&s->msgs[i]);
	free(s->msgs);
	s->msgs = NULL;
	s->n_msgs = 0;
	free(s->mailbox);
	s->mailbox = NULL;
	s->read_only = 0;
	if (s->state == IMAP_STATE_SELECTED)
		s->state = IMAP_STATE_AUTH;
}

uint32_t imap_session_seq_of(const struct imap_session *s, uint32_t uid)
{
	size_t lo = 0, hi = s->n_msgs;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->msgs[mid].uid < uid)
			lo = mid + 1;
		else if (s->msgs[mid].uid > uid)
			hi = mid;
		else
			return (uint32_t)(mid + 1);
	}
	return 0;
}

static int imap_msg_uid_cmp(const void *a, const void *b)
{
	const struct imap_msg *x = a, *y = b;
	return x->uid < y->uid ? -1 : x->uid > y->uid ? 1 : 0;
}

/* ---- SELECT / EXAMINE ------------------------------------------------ */

static void imap_cmd_select_cb(int status, const struct imap_mailbox_info *box,
			       const struct imap_msg_info *msgs, size_t n_msgs, void *arg)
{
	struct imap_session *s = arg;
	if (conn_is_closed(&s->conn)) {
		conn_unref(&s->conn);
		return;
	}
	if (status != MAIL_OK) {
		imap_session_mailbox_clear(s);
		imap_cmd_fail(s, status);
		conn_process(&s->conn);
		conn_unref(&s->conn);
		return;
	}
	int sorted = 1;
	s->msgs = n_msgs > 0 ? xcalloc(n_msgs, sizeof(*s->msgs)) : NULL;
	s->n_msgs = n_msgs;
	for (size_t i = 0; i < n_msgs; i++) {
		struct imap_msg *m = &s->msgs[i];
		m->uid = msgs[i].uid;
		m->size = msgs[i].size;
		m->internal_date_ms = msgs[i].internal_date_ms;
		imap_msg_set_flags(m, msgs[i].flags, msgs[i].n_flags);
		if (i > 0 && m->uid <= s->msgs[i - 1].uid)
			sorted = 0;
	}
	if (!sorted)
		qsort(s->msgs, s->n_msgs, sizeof(*s->msgs), imap_msg_uid_cmp);
	s->uidvalidity = box->uidvalidity;
	s->uidnext = box->uidnext;
	s->state = IMAP_STATE_SELECTED;

	conn_printf(&s->conn, "* FLAGS (%s)\r\n", imap_system_flags);
	conn_printf(&s->conn, "* %zu EXISTS\r\n* 0 RECENT\r\n", s->n_msgs);
	for (size_t i = 0; i < s->n_msgs; i++) {
		if (!imap_msg_has_flag(&s->msgs[i], "\\Seen")) {
			conn_printf(&s->conn, "* OK [UNSEEN %zu] First unseen.\r\n", i + 1);
			break;
		}
	}
	conn_printf(&s->conn, "* OK [UIDVALIDITY %u] UIDs valid\r\n", s->uidvalidity);
	conn_printf(&s->conn, "* OK [UIDNEXT %u] Predicted next UID\r\n", s->uidnext);
	if (s->read_only)
		conn_printf(&s->conn, "* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n");
	else
		conn_printf(&s->conn, "* OK [PERMANENTFLAGS (%s \\*)] Flags permitted.\r\n",
				    imap_system_flags);
	log_event(LOG_INFO, "imap", "event=select sid=%s exists=%zu read_only=%d", s->conn.id,
		  s->n_msgs, s->read_only);
	imap_cmd_done(s, "OK", s->read_only ? "READ-ONLY" : "READ-WRITE",
		      s->read_only ? "Examine completed" : "Select completed");
	conn_process(&s->conn);
	conn_unref(&s->conn);
}

static void imap_cmd_select_common(struct imap_session *s, const struct imap_arg *args,
				   size_t n_args, int read_only)
{
	const char *name;

	if (n_args != 1 || !imap_arg_get_astring(&args[0], &name) ||
	    strlen(name) != args[0].len || name[0] == '\0') {
		imap_cmd_done(s, "BAD", NULL, "SELECT needs a mailbox name");
		return;
	}
	/* RFC 3501 6.3.1: a SELECT, even a failing one, leaves the previous
	 * mailbox unselected. */
	imap_session_mailbox_clear(s);
	s->mailbox = xstrdup(strcasecmp(name, "INBOX") == 0 ? "INBOX" : name);
	s->read_only = read_only;
	conn_ref(&s->conn);
	s->server->backend->select(s->server->backend_ctx, s->user, s->mailbox,
				   imap_cmd_select_cb, s);
}

void imap_cmd_select(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	imap_cmd_select_common(s, args, n_args, 0);
}

void imap_cmd_examine(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	imap_cmd_select_common(s, args, n_args, 1);
}

/* ---- EXPUNGE / CLOSE / UNSELECT ------------------------------------- */

/* Drop the expunged UIDs from the snapshot; with report, tell the client
 * "* n EXPUNGE" from the highest sequence number down, so that each
 * number is still valid when the client reads it (RFC 3501 7.4.1). */
static void imap_session_expunged(struct imap_session *s, const uint32_t *uids, size_t n,
				  int report)
{
	if (n == 0 || s->n_msgs == 0)
		return;
	uint8_t *gone = xcalloc(s->n_msgs, 1);
	for (size_t i = 0; i < n; i++) {
		uint32_t seq = imap_session_seq_of(s, uids[i]);
		if (seq != 0)
			gone[seq - 1] = 1;
	}
	for (size_t i = s->n_msgs; i > 0; i--) {
		if (gone[i - 1] && report)
			conn_printf(&s->conn, "* %zu EXPUNGE\r\n", i);
	}
	size_t out = 0;
	for (size_t i = 0; i < s->n_msgs; i++) {
		if (gone[i])
			imap_msg_flags_free(&s->msgs[i]);
		else
			s->msgs[out++] = s->msgs[i];
	}
	s->n_msgs = out;
	free(gone);
}

static void imap_cmd_expunge_cb(int status, const uint32_t *uids, size_t n, void *arg)
{
	struct imap_session *s = arg;
	if (conn_is_closed(&s->conn)) {
		conn_unref(&s->conn);
		return;
	}
	if (status != MAIL_OK) {
		imap_cmd_fail(s, status);
	} else {
		imap_session_expunged(s, uids, n, 1);
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

static void imap_cmd_close_cb(int status, const uint32_t *uids, size_t n, void *arg)
{
	struct imap_session *s = arg;
	(void)uids;
	(void)n;
	if (conn_is_closed(&s->conn)) {
		conn_unref(&s->conn);
		return;
	}
	if (status != MAIL_OK) {
		/* the mailbox is closed anyway; the client learns that the
		 * \Deleted messages are still there */
		const struct mail_error_info *info = mail_error_info(status);
		conn_printf(&s->conn, "* NO [%s] %s\r\n",
				    info->imap_code != NULL ? info->imap_code : "SERVERBUG",
				    info->text);
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
