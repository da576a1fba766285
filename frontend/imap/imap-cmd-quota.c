/* imap-cmd-quota.c: the QUOTA extension (RFC 9208; issue 12).
 *
 * Each user has one quota root, "" (RFC 9208 3.1 lets a server name it
 * as it likes; every mailbox of the user is under it). Its resources are
 * STORAGE (in units of 1024 octets, 5.1: usage rounded up, the limit
 * down) and MESSAGE (5.2), each reported only when a limit applies; with
 * none, GETQUOTAROOT lists no root and GETQUOTA "" is NO. Limits are the
 * administrator's (mailctl quota set): SETQUOTA is always NO.
 */
#include "imap-server-private.h"

#include "mail-error.h"
#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

/* The per-command state: the mailbox of GETQUOTAROOT (NULL for GETQUOTA). */
struct imap_quota_cmd {
	char *mailbox;
};

static void imap_quota_cmd_free(void *ctx)
{
	struct imap_quota_cmd *c = ctx;
	free(c->mailbox);
	free(c);
}

/* "* QUOTA "" (STORAGE u l MESSAGE u l)" */
static void imap_quota_line(struct imap_session *s, const struct imap_quota *q)
{
	conn_printf(&s->conn, "* QUOTA \"\" (");
	const char *sep = "";
	if (q->has_storage) {
		conn_printf(&s->conn, "STORAGE %llu %llu",
			    (unsigned long long)((q->storage_used + 1023) / 1024),
			    (unsigned long long)(q->storage_limit / 1024));
		sep = " ";
	}
	if (q->has_messages)
		conn_printf(&s->conn, "%sMESSAGE %llu %llu", sep,
			    (unsigned long long)q->messages_used,
			    (unsigned long long)q->messages_limit);
	conn_printf(&s->conn, ")\r\n");
}

static void imap_quota_reply(struct imap_session *s, int status, const struct imap_quota *q)
{
	struct imap_quota_cmd *c = s->cmd_ctx;
	int limited = status == MAIL_OK && (q->has_storage || q->has_messages);
	if (status != MAIL_OK) {
		imap_cmd_fail(s, status);
	} else if (c->mailbox != NULL) {
		conn_printf(&s->conn, "* QUOTAROOT ");
		(void)imap_session_append_mailbox(s, c->mailbox);
		conn_printf(&s->conn, "%s\r\n", limited ? " \"\"" : "");
		if (limited)
			imap_quota_line(s, q);
		imap_cmd_done(s, "OK", NULL, "Getquotaroot completed");
	} else if (limited) {
		imap_quota_line(s, q);
		imap_cmd_done(s, "OK", NULL, "Getquota completed");
	} else {
		imap_cmd_done(s, "NO", NULL, "No such quota root");
	}
}

static void imap_quota_cb(int status, const struct imap_quota *q, void *arg)
{
	struct imap_session *s = arg;
	if (conn_is_closed(&s->conn)) {
		conn_unref(&s->conn);
		return;
	}
	imap_quota_reply(s, status, q);
	conn_process(&s->conn);
	conn_unref(&s->conn);
}

static void imap_quota_start(struct imap_session *s, char *mailbox)
{
	struct imap_quota_cmd *c = xcalloc(1, sizeof *c);
	c->mailbox = mailbox;
	s->cmd_ctx = c;
	s->cmd_ctx_free = imap_quota_cmd_free;
	if (s->server->backend->quota == NULL) {
		/* a backend without quotas: no root, nothing limited */
		struct imap_quota none = { 0 };
		imap_quota_reply(s, MAIL_OK, &none);
		return;
	}
	conn_ref(&s->conn);
	s->server->backend->quota(s->server->backend_ctx, s->user, imap_quota_cb, s);
}

void imap_cmd_getquotaroot(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	if (n_args != 1) {
		imap_cmd_done(s, "BAD", NULL, "GETQUOTAROOT needs a mailbox name");
		return;
	}
	char *name;
	if (imap_cmd_mailbox_arg(s, &args[0], 0, &name) < 0)
		return;
	imap_quota_start(s, name);
}

/* RFC 9208 4.2: the root is an astring; ours is "". */
static int imap_quota_root_arg(const struct imap_arg *arg)
{
	return arg->type == IMAP_ARG_ATOM || arg->type == IMAP_ARG_QUOTED ||
	       arg->type == IMAP_ARG_LITERAL;
}

void imap_cmd_getquota(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	if (n_args != 1 || !imap_quota_root_arg(&args[0])) {
		imap_cmd_done(s, "BAD", NULL, "GETQUOTA needs a quota root");
		return;
	}
	if (args[0].len != 0) {
		imap_cmd_done(s, "NO", NULL, "No such quota root");
		return;
	}
	imap_quota_start(s, NULL);
}

void imap_cmd_setquota(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	if (n_args != 2 || !imap_quota_root_arg(&args[0]) || args[1].type != IMAP_ARG_LIST) {
		imap_cmd_done(s, "BAD", NULL, "SETQUOTA needs a quota root and a list of limits");
		return;
	}
	/* RFC 9208 4.1: a server may refuse; ours are set by the operator */
	imap_cmd_done(s, "NO", "NOPERM", "Quotas are set by the administrator");
}
