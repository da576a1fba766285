/* imap-cmd-append.c: APPEND (RFC 3501 6.3.11) with MULTIAPPEND (RFC
 * 3502: every message in one backend call, all or nothing), APPENDUID
 * (UIDPLUS, RFC 4315), [TRYCREATE], APPENDLIMIT (RFC 7889), literal8
 * bodies (BINARY, RFC 3516) and the UTF8 data item (RFC 6855 4).
 *
 * The messages arrive as literals the parser stores whole; literals over
 * the parser's normal limit were let in by imap-server.c (bounded by
 * append_limit per message, append_max_total per command and the body
 * budget overall), so by the time this handler runs the bytes are in
 * memory and only their form and sizes are left to check.
 *
 * The session learns of its own APPEND into the selected mailbox the
 * way it learns of any other change: the backend's append bumps the
 * mailbox's modseq, which the selected-state code reports.
 */
#include "imap-server-private.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap-date.h"
#include "log.h"
#include "mail-error.h"
#include "xalloc.h"

/* Bounds on one APPEND (STYLE rule 11); the store keeps at most 64 flags
 * of 128 bytes per message. */
#define IMAP_APPEND_MSGS_MAX 1000u
#define IMAP_APPEND_FLAGS_MAX 64u
#define IMAP_APPEND_FLAG_LEN_MAX 128u

struct imap_append_cmd {
	char *mailbox;
	size_t n_msgs;
	uint64_t bytes;
};

static void imap_append_cmd_free(void *ctx)
{
	struct imap_append_cmd *a = ctx;
	free(a->mailbox);
	free(a);
}

/* A flag of APPEND: a system flag other than \Recent (in its canonical
 * spelling) or a keyword atom. NULL when invalid. */
static const char *imap_append_flag(const struct imap_arg *arg)
{
	static const char *const system_flags[] = { "\\Answered", "\\Flagged", "\\Deleted",
						    "\\Seen", "\\Draft" };
	const char *s;
	if (!imap_arg_get_atom(arg, &s) || arg->len > IMAP_APPEND_FLAG_LEN_MAX)
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

/* "n", "n:m,k" of ascending uids. */
static void imap_append_uid_set(buf *b, const uint32_t *uids, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j + 1 < n && uids[j + 1] == uids[j] + 1)
			j++;
		buf_printf(b, "%s%u", i > 0 ? "," : "", uids[i]);
		if (j > i)
			buf_printf(b, ":%u", uids[j]);
		i = j + 1;
	}
}

static void imap_cmd_append_cb(int status, uint32_t uidvalidity, const uint32_t *uids,
			       size_t n_uids, uint64_t highest_modseq, void *arg)
{
	struct imap_session *s = arg;
	if (conn_is_closed(&s->conn)) {
		conn_unref(&s->conn);
		return;
	}
	struct imap_append_cmd *a = s->cmd_ctx;
	log_event(LOG_INFO, "imap", "event=append sid=%s messages=%zu bytes=%llu status=%s",
		  s->conn.id, a->n_msgs, (unsigned long long)a->bytes,
		  mail_error_info(status)->name);
	if (status == MAIL_OK) {
		buf code;
		buf_init(&code);
		buf_printf(&code, "APPENDUID %u ", uidvalidity);
		imap_append_uid_set(&code, uids, n_uids);
		buf_append(&code, "", 1);
		/* into the selected mailbox: EXISTS before the OK (RFC 3501
		 * 6.3.11), at once when this APPEND is the mailbox's only
		 * change, else through the session's changes */
		if (imap_session_is_selected(s, a->mailbox))
			imap_session_own_change(s, uidvalidity == s->uidvalidity ? highest_modseq : 0,
						uids, n_uids);
		imap_cmd_done(s, "OK", (const char *)code.data, "Append completed");
		buf_deinit(&code);
	} else if (status == MAIL_ERR_NOT_FOUND) {
		imap_cmd_done(s, "NO", "TRYCREATE", "Mailbox does not exist");
	} else if (status == MAIL_ERR_TOO_BIG) {
		imap_cmd_done(s, "NO", "TOOBIG", "Message too large");
	} else {
		imap_cmd_fail(s, status);
	}
	conn_process(&s->conn);
	conn_unref(&s->conn);
}

/* The messages in args[1..n): [flag-list] [date-time] (literal /
 * "UTF8" "(" literal8 ")"), repeated. Fills msgs (pointing into args)
 * and flags. Returns the number of messages, or 0 once the command is
 * ended. */
static size_t imap_append_parse(struct imap_session *s, const struct imap_arg *args,
				size_t n_args, struct imap_append_msg *msgs,
				const char **flags)
{
	size_t n = 0, i = 1, n_flags_all = 0;
	while (i < n_args) {
		struct imap_append_msg *m = &msgs[n];
		memset(m, 0, sizeof(*m));
		if (args[i].type == IMAP_ARG_LIST) {
			const struct imap_arg_list *l = args[i].list;
			if (l->count > IMAP_APPEND_FLAGS_MAX) {
				imap_cmd_done(s, "NO", "LIMIT", "Too many flags");
				return 0;
			}
			m->flags = &flags[n_flags_all];
			for (size_t k = 0; k < l->count; k++) {
				const char *f = imap_append_flag(&l->args[k]);
				if (f == NULL) {
					imap_cmd_done(s, "BAD", NULL, "Invalid flag");
					return 0;
				}
				flags[n_flags_all++] = f;
			}
			m->n_flags = l->count;
			i++;
		}
		if (i < n_args && args[i].type == IMAP_ARG_QUOTED) {
			if (imap_date_time_parse(args[i].str, args[i].len, &m->internal_date_ms) < 0) {
				imap_cmd_done(s, "BAD", NULL, "Invalid date-time");
				return 0;
			}
			i++;
		}
		const struct imap_arg *lit = NULL;
		const char *atom;
		if (i < n_args && args[i].type == IMAP_ARG_LITERAL) {
			lit = &args[i++];
		} else if (i + 1 < n_args && imap_arg_get_atom(&args[i], &atom) &&
			   strcasecmp(atom, "UTF8") == 0 && args[i + 1].type == IMAP_ARG_LIST &&
			   args[i + 1].list->count == 1 &&
			   args[i + 1].list->args[0].type == IMAP_ARG_LITERAL &&
			   args[i + 1].list->args[0].literal8) {
			lit = &args[i + 1].list->args[0];
			i += 2;
		}
		if (lit == NULL) {
			imap_cmd_done(s, "BAD", NULL, "APPEND needs a message literal");
			return 0;
		}
		if (lit->len == 0) {
			imap_cmd_done(s, "NO", "CANNOT", "Empty message");
			return 0;
		}
		m->data = (const uint8_t *)lit->str;
		m->len = lit->len;
		n++;
	}
	if (n == 0)
		imap_cmd_done(s, "BAD", NULL, "APPEND needs a message literal");
	return n;
}

void imap_cmd_append(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	char *mailbox;
	if (n_args < 2) {
		imap_cmd_done(s, "BAD", NULL, "APPEND needs a mailbox name and a message");
		return;
	}
	/* at most one message per remaining argument (bounded by the
	 * parser's max_args), flags within them */
	size_t max_msgs = n_args - 1, max_flags = 0;
	for (size_t i = 1; i < n_args; i++) {
		if (args[i].type == IMAP_ARG_LIST)
			max_flags += args[i].list->count;
	}
	struct imap_append_msg *msgs = xcalloc(max_msgs, sizeof(*msgs));
	const char **flags = xcalloc(max_flags + 1, sizeof(*flags));
	size_t n = imap_append_parse(s, args, n_args, msgs, flags);
	uint64_t bytes = 0;
	const char *code = NULL, *text = NULL;
	for (size_t i = 0; i < n; i++) {
		if (msgs[i].len > s->server->set.append_limit) {
			code = "TOOBIG";
			text = "Message too large";
		}
		bytes += msgs[i].len;
	}
	if (n > IMAP_APPEND_MSGS_MAX) {
		code = "LIMIT";
		text = "Too many messages in one APPEND";
	} else if (code == NULL && bytes > s->server->set.append_max_total) {
		code = "LIMIT";
		text = "Messages too large together";
	}
	if (n > 0 && code != NULL)
		imap_cmd_done(s, "NO", code, text);
	if (n == 0 || code != NULL ||
	    imap_cmd_mailbox_arg(s, &args[0], 0, &mailbox) < 0) {
		free(msgs);
		free(flags);
		return;
	}
	struct imap_append_cmd *a = xcalloc(1, sizeof(*a));
	a->mailbox = mailbox;
	a->n_msgs = n;
	a->bytes = bytes;
	s->cmd_ctx = a;
	s->cmd_ctx_free = imap_append_cmd_free;
	conn_ref(&s->conn);
	/* the backend copies what it keeps: msgs and flags may go now */
	s->server->backend->append(s->server->backend_ctx, s->user, mailbox, msgs, n,
				   imap_cmd_append_cb, s);
	free(msgs);
	free(flags);
}
