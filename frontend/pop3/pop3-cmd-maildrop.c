/* pop3-cmd-maildrop.c: the TRANSACTION state (STAT LIST UIDL RETR TOP DELE
 * RSET NOOP) and QUIT's UPDATE.
 *
 * Message numbers index the session's snapshot of INBOX taken at login
 * (s->msgs, ascending UIDs); only this session's DELE marks change what
 * it lists, and nothing reaches the store before QUIT.
 *
 * Multi-line answers go out a step at a time and pause (on_drain) while
 * more than max_output bytes wait for the client, so a client that does
 * not read holds one chunk, not its whole maildrop. RETR and TOP hold the
 * one body they send (counted against the body budget when large).
 */
#include "pop3-server-private.h"

#include <stdlib.h>
#include <string.h>

#include "budget.h"
#include "log.h"
#include "mail-error.h"
#include "xalloc.h"

/* Output produced per step before the client's progress is checked. */
#define POP3_CHUNK (64u * 1024u)
/* LIST/UIDL lines per step. */
#define POP3_LIST_STEP 1024u

/* A decimal number of 1 to 10 digits that fits 32 bits. */
static int pop3_number(const char *str, uint32_t *n_r)
{
	uint64_t n = 0;
	size_t i = 0;
	for (; str[i] >= '0' && str[i] <= '9'; i++) {
		if (i == 10)
			return 0;
		n = n * 10 + (uint64_t)(str[i] - '0');
	}
	if (i == 0 || str[i] != '\0' || n > UINT32_MAX)
		return 0;
	*n_r = (uint32_t)n;
	return 1;
}

/* The message an argument names: its index, or -1 after the -ERR. */
static int pop3_msg_arg(struct pop3_session *s, const char *arg, size_t *idx_r)
{
	uint32_t n;
	if (!pop3_number(arg, &n)) {
		pop3_cmd_bad(s, "Invalid message number");
		return -1;
	}
	if (n == 0 || n > s->n_msgs) {
		pop3_cmd_err(s, NULL, "No such message");
		return -1;
	}
	if (s->msgs[n - 1].deleted) {
		pop3_cmd_err(s, NULL, "Message is deleted");
		return -1;
	}
	*idx_r = n - 1;
	return 0;
}

/* Messages not marked deleted, and their octets. */
static size_t pop3_maildrop_count(const struct pop3_session *s, uint64_t *octets_r)
{
	size_t n = 0;
	uint64_t octets = 0;
	for (size_t i = 0; i < s->n_msgs; i++) {
		if (!s->msgs[i].deleted) {
			n++;
			octets += s->msgs[i].size;
		}
	}
	*octets_r = octets;
	return n;
}

void pop3_cmd_stat(struct pop3_session *s, const struct pop3_command *cmd)
{
	(void)cmd;
	uint64_t octets;
	size_t n = pop3_maildrop_count(s, &octets);
	pop3_cmd_ok(s, "%zu %llu", n, (unsigned long long)octets);
}

void pop3_cmd_noop(struct pop3_session *s, const struct pop3_command *cmd)
{
	(void)cmd;
	pop3_cmd_ok(s, "Nothing to do");
}

void pop3_cmd_dele(struct pop3_session *s, const struct pop3_command *cmd)
{
	size_t i;
	if (pop3_msg_arg(s, cmd->args[0], &i) < 0)
		return;
	s->msgs[i].deleted = 1;
	pop3_cmd_ok(s, "Message %zu deleted", i + 1);
}

void pop3_cmd_rset(struct pop3_session *s, const struct pop3_command *cmd)
{
	(void)cmd;
	for (size_t i = 0; i < s->n_msgs; i++)
		s->msgs[i].deleted = 0;
	uint64_t octets;
	size_t n = pop3_maildrop_count(s, &octets);
	pop3_cmd_ok(s, "Maildrop has %zu messages (%llu octets)", n, (unsigned long long)octets);
}

/* ---- LIST and UIDL ---------------------------------------------------- */

/* RFC 1939 7: a unique-id is 1 to 70 characters 0x21..0x7E. UIDVALIDITY
 * and UID together stay the same for a message across sessions (neither
 * changes for an existing message: the platform's promise 2). */
static void pop3_append_listing(struct pop3_session *s, size_t i, int uidl)
{
	if (uidl)
		conn_printf(&s->conn, "%zu %u.%u\r\n", i + 1, s->uidvalidity, s->msgs[i].uid);
	else
		conn_printf(&s->conn, "%zu %llu\r\n", i + 1, (unsigned long long)s->msgs[i].size);
}

struct pop3_listing_ctx {
	int uidl;
	size_t next;
};

static void pop3_listing_emit(struct pop3_session *s)
{
	struct pop3_listing_ctx *x = s->cmd_ctx;
	for (;;) {
		size_t stop = x->next + POP3_LIST_STEP;
		for (; x->next < s->n_msgs && x->next < stop; x->next++) {
			if (!s->msgs[x->next].deleted)
				pop3_append_listing(s, x->next, x->uidl);
		}
		if (x->next == s->n_msgs) {
			conn_printf(&s->conn, ".\r\n");
			pop3_cmd_finish(s);
			conn_process(&s->conn);
			return;
		}
		if (conn_flush_must_wait(&s->conn)) {
			s->on_drain = pop3_listing_emit; /* the write callback resumes */
			return;
		}
	}
}

static void pop3_listing(struct pop3_session *s, const struct pop3_command *cmd, int uidl)
{
	size_t i;
	if (cmd->n_args == 1) {
		if (pop3_msg_arg(s, cmd->args[0], &i) < 0)
			return;
		if (uidl)
			pop3_cmd_ok(s, "%zu %u.%u", i + 1, s->uidvalidity, s->msgs[i].uid);
		else
			pop3_cmd_ok(s, "%zu %llu", i + 1, (unsigned long long)s->msgs[i].size);
		return;
	}
	uint64_t octets;
	size_t n = pop3_maildrop_count(s, &octets);
	if (uidl)
		conn_printf(&s->conn, "+OK Unique-ID listing follows\r\n");
	else
		conn_printf(&s->conn, "+OK %zu messages (%llu octets)\r\n", n,
			    (unsigned long long)octets);
	struct pop3_listing_ctx *x = xcalloc(1, sizeof(*x));
	x->uidl = uidl;
	s->cmd_ctx = x;
	s->cmd_ctx_free = free;
	pop3_listing_emit(s);
}

void pop3_cmd_list(struct pop3_session *s, const struct pop3_command *cmd)
{
	pop3_listing(s, cmd, 0);
}

void pop3_cmd_uidl(struct pop3_session *s, const struct pop3_command *cmd)
{
	pop3_listing(s, cmd, 1);
}

/* ---- RETR and TOP ----------------------------------------------------- */

struct pop3_retr_ctx {
	size_t idx;
	int top;                 /* TOP: the header and top_lines body lines */
	uint32_t top_lines;
	uint8_t *body;
	size_t len, off;
	/* the transformation's state between steps */
	int cr;                  /* the last byte was a CR (its line is ended) */
	size_t line_len;         /* bytes of the current line so far */
	int in_header;
	uint32_t body_lines;     /* body lines sent */
	struct mem_budget *budget;
	size_t reserved;         /* of the budget, for body */
};

static void pop3_retr_ctx_free(void *p)
{
	struct pop3_retr_ctx *x = p;
	free(x->body);
	if (x->reserved > 0)
		mem_budget_give(x->budget, x->reserved);
	free(x);
}

/* Append the next step of the message: dot-stuffed (RFC 1939 3), with
 * every line end (CRLF, a bare LF, a bare CR) sent as CRLF. Returns 1 when
 * all of it (TOP: the header, the blank line and top_lines lines of the
 * body) is out, the last line ended. */
static int pop3_retr_step(struct pop3_session *s, struct pop3_retr_ctx *x)
{
	buf *out = &s->conn.out;
	size_t start = out->len;
	while (out->len - start < POP3_CHUNK) {
		if (x->top && !x->in_header && x->body_lines >= x->top_lines)
			return 1;
		if (x->off == x->len) {
			if (x->line_len > 0)
				buf_append(out, "\r\n", 2);
			return 1;
		}
		const uint8_t *p = x->body + x->off;
		if (x->cr) {
			x->cr = 0;
			if (*p == '\n') {
				x->off++;
				continue;
			}
		}
		if (*p == '\r' || *p == '\n') {
			buf_append(out, "\r\n", 2);
			x->cr = *p == '\r';
			x->off++;
			if (!x->in_header)
				x->body_lines++;
			else if (x->line_len == 0)
				x->in_header = 0; /* the blank line ends the header */
			x->line_len = 0;
			continue;
		}
		if (x->line_len == 0 && *p == '.')
			buf_append(out, ".", 1);
		size_t run = 0, max = x->len - x->off;
		if (max > POP3_CHUNK)
			max = POP3_CHUNK;
		while (run < max && p[run] != '\r' && p[run] != '\n')
			run++;
		buf_append(out, p, run);
		x->off += run;
		x->line_len += run;
	}
	return 0;
}

static void pop3_retr_emit(struct pop3_session *s)
{
	struct pop3_retr_ctx *x = s->cmd_ctx;
	for (;;) {
		if (pop3_retr_step(s, x)) {
			conn_printf(&s->conn, ".\r\n");
			if (!x->top)
				s->msgs[x->idx].retrieved = 1;
			pop3_cmd_finish(s);
			conn_process(&s->conn);
			return;
		}
		if (conn_flush_must_wait(&s->conn)) {
			s->on_drain = pop3_retr_emit;
			return;
		}
	}
}

static void pop3_retr_body_cb(int status, const struct imap_msg_info *info,
			      const uint8_t *body, size_t len, void *arg)
{
	struct pop3_session *s = arg;
	(void)info;
	if (conn_is_closed(&s->conn)) {
		conn_unref(&s->conn);
		return;
	}
	struct pop3_retr_ctx *x = s->cmd_ctx;
	if (status == MAIL_ERR_NOT_FOUND) {
		pop3_cmd_err(s, NULL, "Message was removed by another session");
		conn_process(&s->conn);
	} else if (status != MAIL_OK) {
		pop3_cmd_fail(s, status);
		conn_process(&s->conn);
	} else {
		x->body = xmalloc(len > 0 ? len : 1);
		memcpy(x->body, body, len);
		x->len = len;
		x->in_header = 1;
		if (x->top)
			conn_printf(&s->conn, "+OK Top of message follows\r\n");
		else
			conn_printf(&s->conn, "+OK %llu octets\r\n",
				    (unsigned long long)s->msgs[x->idx].size);
		pop3_retr_emit(s);
	}
	conn_unref(&s->conn);
}

static void pop3_retr_start(struct pop3_session *s, size_t idx, int top, uint32_t top_lines)
{
	struct pop3_retr_ctx *x = xcalloc(1, sizeof(*x));
	x->idx = idx;
	x->top = top;
	x->top_lines = top_lines;
	s->cmd_ctx = x;
	s->cmd_ctx_free = pop3_retr_ctx_free;
	/* a large body is reserved before it is asked for: the store's
	 * answer is held until sent */
	uint64_t size = s->msgs[idx].size;
	struct mem_budget *budget = s->server->set.conn.access.body_budget;
	if (budget != NULL && size >= POP3_BODY_BUDGET_MIN) {
		if (mem_budget_take(budget, (size_t)size) < 0) {
			log_event(LOG_WARN, POP3_LOG_SVC, "event=body_budget_full sid=%s size=%llu",
				  s->conn.id, (unsigned long long)size);
			pop3_cmd_err(s, "SYS/TEMP", "Server busy, try again later");
			return;
		}
		x->budget = budget;
		x->reserved = (size_t)size;
	}
	conn_ref(&s->conn);
	s->server->backend->fetch(s->server->backend_ctx, s->user, POP3_MAILBOX,
				  s->msgs[idx].uid, pop3_retr_body_cb, s);
}

void pop3_cmd_retr(struct pop3_session *s, const struct pop3_command *cmd)
{
	size_t i;
	if (pop3_msg_arg(s, cmd->args[0], &i) == 0)
		pop3_retr_start(s, i, 0, 0);
}

void pop3_cmd_top(struct pop3_session *s, const struct pop3_command *cmd)
{
	size_t i;
	uint32_t lines;
	if (!pop3_number(cmd->args[1], &lines)) {
		pop3_cmd_bad(s, "Invalid number of lines");
		return;
	}
	if (pop3_msg_arg(s, cmd->args[0], &i) == 0)
		pop3_retr_start(s, i, 1, lines);
}

/* ---- QUIT: the UPDATE state (RFC 1939 6) ------------------------------
 *
 * Once QUIT is read, UPDATE runs to its end even if the client goes away
 * meanwhile (many send QUIT and close without waiting): the steps go on
 * through the backend pointers in the context (they outlive the server,
 * pop3_server_start's contract), and only the answer needs the client. */

struct pop3_update_ctx {
	const struct imap_backend *backend;
	void *backend_ctx;
	uint32_t *uids;          /* marked deleted, ascending */
	size_t n_uids;
	size_t expunged;
};

static void pop3_update_ctx_free(void *p)
{
	struct pop3_update_ctx *u = p;
	free(u->uids);
	free(u);
}

static void pop3_update_end(struct pop3_session *s, int status)
{
	struct pop3_update_ctx *u = s->cmd_ctx;
	log_event(status == MAIL_OK ? LOG_INFO : LOG_WARN, POP3_LOG_SVC,
		  "event=update sid=%s deleted=%zu expunged=%zu status=%s", s->conn.id, u->n_uids,
		  u->expunged, mail_error_info(status)->name);
	if (conn_is_closed(&s->conn))
		return; /* the context goes with the session */
	if (status == MAIL_OK)
		pop3_cmd_ok(s, "Logging out (%zu messages deleted)", u->expunged);
	else
		pop3_cmd_err(s, "SYS/TEMP", "Some deleted messages were not removed");
	conn_close_after_write(&s->conn, "quit");
}

static void pop3_update_expunge_cb(int status, const uint32_t *uids, size_t n,
				   uint64_t highest_modseq, void *arg)
{
	struct pop3_session *s = arg;
	struct pop3_update_ctx *u = s->cmd_ctx;
	(void)uids;
	(void)highest_modseq;
	u->expunged = status == MAIL_OK ? n : 0;
	pop3_update_end(s, status);
	conn_unref(&s->conn);
}

static void pop3_update_deleted_cb(int status, const struct imap_msg_info *msgs, size_t n,
				   void *arg)
{
	struct pop3_session *s = arg;
	struct pop3_update_ctx *u = s->cmd_ctx;
	(void)msgs;
	(void)n;
	if (status != MAIL_OK) {
		pop3_update_end(s, status);
	} else {
		conn_ref(&s->conn);
		u->backend->expunge(u->backend_ctx, s->user, POP3_MAILBOX, u->uids, u->n_uids,
				    pop3_update_expunge_cb, s);
	}
	conn_unref(&s->conn);
}

/* The deletions: \Deleted on exactly the marked messages, then an expunge
 * of those UIDs only (another session's \Deleted marks stay its own). */
static void pop3_update_delete(struct pop3_session *s)
{
	struct pop3_update_ctx *u = s->cmd_ctx;
	if (u->n_uids == 0) {
		pop3_update_end(s, MAIL_OK);
		return;
	}
	static const char *const deleted[] = { "\\Deleted" };
	conn_ref(&s->conn);
	u->backend->store_flags(u->backend_ctx, s->user, POP3_MAILBOX, u->uids, u->n_uids,
				IMAP_FLAGS_ADD, deleted, 1, pop3_update_deleted_cb, s);
}

static void pop3_update_seen_cb(int status, const struct imap_msg_info *msgs, size_t n,
				void *arg)
{
	struct pop3_session *s = arg;
	(void)msgs;
	(void)n;
	if (status != MAIL_OK) /* not worth failing the deletions for */
		log_event(LOG_WARN, POP3_LOG_SVC, "event=seen_failed sid=%s error=%s", s->conn.id,
			  mail_error_info(status)->name);
	pop3_update_delete(s);
	conn_unref(&s->conn);
}

void pop3_cmd_quit_transaction(struct pop3_session *s, const struct pop3_command *cmd)
{
	(void)cmd;
	struct pop3_update_ctx *u = xcalloc(1, sizeof(*u));
	uint32_t *seen = xcalloc(s->n_msgs + 1, sizeof(*seen));
	size_t n_seen = 0;
	u->backend = s->server->backend;
	u->backend_ctx = s->server->backend_ctx;
	u->uids = xcalloc(s->n_msgs + 1, sizeof(*u->uids));
	for (size_t i = 0; i < s->n_msgs; i++) {
		const struct pop3_msg *m = &s->msgs[i];
		if (m->deleted)
			u->uids[u->n_uids++] = m->uid;
		else if (m->retrieved && !m->seen && s->server->set.mark_seen)
			seen[n_seen++] = m->uid;
	}
	s->state = POP3_STATE_UPDATE;
	s->cmd_ctx = u;
	s->cmd_ctx_free = pop3_update_ctx_free;
	if (n_seen == 0) {
		pop3_update_delete(s);
	} else {
		static const char *const flag_seen[] = { "\\Seen" };
		conn_ref(&s->conn);
		u->backend->store_flags(u->backend_ctx, s->user, POP3_MAILBOX, seen, n_seen,
					IMAP_FLAGS_ADD, flag_seen, 1, pop3_update_seen_cb, s);
	}
	free(seen);
}
