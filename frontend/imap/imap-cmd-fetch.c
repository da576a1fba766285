/* imap-cmd-fetch.c: FETCH, UID FETCH, STORE and UID STORE.
 *
 * FETCH answers what the snapshot knows (FLAGS UID RFC822.SIZE
 * INTERNALDATE) at once; body items fetch one message at a time from the
 * backend, in sequence order, pausing while more than max_output reply
 * bytes wait for the client. Before any body is read, the messages whose
 * body is fetched without PEEK in a read-write mailbox get \Seen in one
 * store call; their FETCH replies then carry the new FLAGS (RFC 3501 6.4.5).
 */
#include "imap-server-private.h"

#include "budget.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "mail-error.h"
#include "xalloc.h"

/* Ranges accepted in one sequence set (the line limit bounds it too). */
#define IMAP_SEQSET_MAX_RANGES 16384u

/* Body sections go out in chunks of this size, each only once the
 * session's queued output is under max_output: a client that does not read
 * holds one chunk, not a message times its sections. */
#define IMAP_FETCH_CHUNK (64u * 1024u)

struct imap_fetch_ctx {
	struct imap_fetch_attrs attrs;
	uint32_t *uids;         /* to answer, in sequence order */
	uint8_t *send_flags;    /* per uid: flags changed by this FETCH */
	size_t n_uids;
	size_t next;
	/* the message being sent (between its body callback and its ")") */
	uint8_t *body;
	size_t body_len;
	size_t section;         /* next index in attrs.bodies */
	int in_literal;         /* a literal of section - 1 is being sent */
	const uint8_t *src;     /* its bytes: body, or fields */
	size_t off, end;
	buf fields;             /* HEADER.FIELDS[.NOT] of the section */
	struct mem_budget *budget; /* body_reserved is taken from it */
	size_t body_reserved;
};

static void imap_fetch_body_release(struct imap_fetch_ctx *ctx)
{
	free(ctx->body);
	ctx->body = NULL;
	if (ctx->body_reserved > 0)
		mem_budget_give(ctx->budget, ctx->body_reserved);
	ctx->body_reserved = 0;
}

static void imap_fetch_ctx_free(void *p)
{
	struct imap_fetch_ctx *ctx = p;
	imap_fetch_attrs_deinit(&ctx->attrs);
	free(ctx->uids);
	free(ctx->send_flags);
	imap_fetch_body_release(ctx);
	buf_deinit(&ctx->fields);
	free(ctx);
}

/* Resolve the set argument against the snapshot: the UIDs it names, in
 * sequence order. Returns 0, or -1 with *error_r for a BAD reply. */
static int imap_session_seqset_uids(struct imap_session *s, const struct imap_arg *arg,
				    uint32_t **uids_r, size_t *n_r, const char **error_r)
{
	struct imap_seqset set;
	const char *str;

	if (!imap_arg_get_atom(arg, &str)) {
		*error_r = "Invalid sequence set";
		return -1;
	}
	if (imap_seqset_parse(str, IMAP_SEQSET_MAX_RANGES, &set, error_r) < 0)
		return -1;
	if (s->cmd_uid) {
		imap_seqset_resolve(&set, s->n_msgs > 0 ? s->msgs[s->n_msgs - 1].uid : 0);
	} else {
		imap_seqset_resolve(&set, (uint32_t)s->n_msgs);
		if (imap_seqset_max(&set) > s->n_msgs) {
			imap_seqset_deinit(&set);
			*error_r = "Invalid sequence number";
			return -1;
		}
	}
	uint32_t *uids = NULL;
	size_t n = 0;
	for (size_t i = 0; i < s->n_msgs; i++) {
		uint32_t key = s->cmd_uid ? s->msgs[i].uid : (uint32_t)(i + 1);
		if (!imap_seqset_contains(&set, key))
			continue;
		if (uids == NULL)
			uids = xcalloc(s->n_msgs, sizeof(*uids));
		uids[n++] = s->msgs[i].uid;
	}
	imap_seqset_deinit(&set);
	*uids_r = uids;
	*n_r = n;
	return 0;
}

/* ---- FETCH replies --------------------------------------------------- */

static void imap_append_internaldate(struct imap_session *s, int64_t ms)
{
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t t = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
	struct tm tm;
	if (gmtime_r(&t, &tm) == NULL)
		memset(&tm, 0, sizeof(tm));
	conn_printf(&s->conn, "INTERNALDATE \"%2d-%s-%04d %02d:%02d:%02d +0000\"", tm.tm_mday,
			    months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
			    tm.tm_sec);
}

/* Where the header of a message ends: after its first empty line (CRLF,
 * or a bare LF), which belongs to the header (RFC 3501 6.4.5: "the blank
 * line between the header and the body is included"). *fields_end_r is
 * where that empty line starts. A message without one is all header:
 * both are len. */
static size_t imap_header_end(const uint8_t *body, size_t len, size_t *fields_end_r)
{
	size_t pos = 0;
	while (pos < len) {
		if (body[pos] == '\n') {
			*fields_end_r = pos;
			return pos + 1;
		}
		if (body[pos] == '\r' && pos + 1 < len && body[pos + 1] == '\n') {
			*fields_end_r = pos;
			return pos + 2;
		}
		const uint8_t *nl = memchr(body + pos, '\n', len - pos);
		if (nl == NULL)
			break;
		pos = (size_t)(nl - body) + 1;
	}
	*fields_end_r = len;
	return len;
}

/* BODY[HEADER.FIELDS[.NOT] (...)]: the top-level header lines whose field
 * name is (or, NOT, is not) in the list, each with its folded continuation
 * lines, in message order, then the empty line that ends a header. A kept
 * last line that lacks its line end gets CRLF, so the answer stays a
 * header. Lines before the first field name, or without a ':', have no
 * name: NOT keeps the latter, neither keeps the former. */
static void imap_header_fields(const struct imap_fetch_body *b, const uint8_t *body, size_t len,
			       buf *out)
{
	size_t fields_end, pos = 0;
	int keep = 0;

	(void)imap_header_end(body, len, &fields_end);
	while (pos < fields_end) {
		const uint8_t *nl = memchr(body + pos, '\n', fields_end - pos);
		size_t next = nl != NULL ? (size_t)(nl - body) + 1 : fields_end;
		if (body[pos] != ' ' && body[pos] != '\t') {
			const uint8_t *colon = memchr(body + pos, ':', next - pos);
			size_t n = colon != NULL ? (size_t)(colon - (body + pos)) : 0;
			/* "Subject :" (RFC 5322 obs-optional) names Subject */
			while (n > 0 && (body[pos + n - 1] == ' ' || body[pos + n - 1] == '\t'))
				n--;
			int match = imap_fetch_body_field_match(b, (const char *)body + pos, n);
			keep = b->section == IMAP_SECTION_HEADER_FIELDS ? match : !match;
		}
		if (keep) {
			buf_append(out, body + pos, next - pos);
			if (body[next - 1] != '\n')
				buf_append(out, "\r\n", 2);
		}
		pos = next;
	}
	buf_append(out, "\r\n", 2);
}

/* Start a body section: its name and literal length go out; ctx->src,
 * off and end then say what the literal holds (sent by imap_fetch_emit). */
static void imap_begin_body(struct imap_session *s, struct imap_fetch_ctx *ctx,
			    const struct imap_fetch_body *b)
{
	static const char *const rfc822_names[] = { "RFC822", "RFC822.HEADER", "RFC822.TEXT" };
	static const char *const body_names[] = { "BODY[]", "BODY[HEADER]", "BODY[TEXT]" };
	const uint8_t *body = ctx->body;
	size_t len = ctx->body_len;
	size_t start = 0, end = len, fields_end;
	buf *fields = &ctx->fields;

	buf_reset(fields);
	switch (b->section) {
	case IMAP_SECTION_ALL:
		break;
	case IMAP_SECTION_HEADER:
		end = imap_header_end(body, len, &fields_end);
		break;
	case IMAP_SECTION_TEXT:
		start = imap_header_end(body, len, &fields_end);
		break;
	case IMAP_SECTION_HEADER_FIELDS:
	case IMAP_SECTION_HEADER_FIELDS_NOT:
		imap_header_fields(b, body, len, fields);
		body = fields->data;
		end = fields->len;
		break;
	}
	if (b->partial) {
		size_t slice = end - start;
		size_t off = b->offset < slice ? b->offset : slice;
		start += off;
		if (end - start > b->count)
			end = start + b->count;
	}
	if (b->section == IMAP_SECTION_HEADER_FIELDS)
		conn_printf(&s->conn, "BODY[HEADER.FIELDS (%s)]", b->fields);
	else if (b->section == IMAP_SECTION_HEADER_FIELDS_NOT)
		conn_printf(&s->conn, "BODY[HEADER.FIELDS.NOT (%s)]", b->fields);
	else if (b->rfc822)
		conn_printf(&s->conn, "%s", rfc822_names[b->section]);
	else
		conn_printf(&s->conn, "%s", body_names[b->section]);
	if (b->partial)
		conn_printf(&s->conn, "<%u>", b->offset);
	conn_printf(&s->conn, " {%zu}\r\n", end - start);
	ctx->src = body;
	ctx->off = start;
	ctx->end = end;
	ctx->in_literal = 1;
}

/* "* n FETCH (" and every item but the body sections; 0, or -1 when the
 * message is no longer in the session's view (nothing was written). */
static int imap_fetch_reply_head(struct imap_session *s, const struct imap_fetch_attrs *attrs,
				 uint32_t uid, int send_flags)
{
	uint32_t seq = imap_session_seq_of(s, uid);
	if (seq == 0)
		return -1;
	const struct imap_msg *m = &s->msgs[seq - 1];
	const char *sep = "";

	conn_printf(&s->conn, "* %u FETCH (", seq);
	if (attrs->items & IMAP_FETCH_UID) {
		conn_printf(&s->conn, "UID %u", uid);
		sep = " ";
	}
	if ((attrs->items & IMAP_FETCH_FLAGS) || send_flags) {
		conn_printf(&s->conn, "%sFLAGS ", sep);
		imap_session_append_flags(s, m);
		sep = " ";
	}
	if (attrs->items & IMAP_FETCH_RFC822_SIZE) {
		conn_printf(&s->conn, "%sRFC822.SIZE %llu", sep, (unsigned long long)m->size);
		sep = " ";
	}
	if (attrs->items & IMAP_FETCH_INTERNALDATE) {
		conn_printf(&s->conn, "%s", sep);
		imap_append_internaldate(s, m->internal_date_ms);
		sep = " ";
	}
	(void)sep;
	return 0;
}

static void imap_fetch_reply(struct imap_session *s, const struct imap_fetch_attrs *attrs,
			     uint32_t uid)
{
	if (imap_fetch_reply_head(s, attrs, uid, 0) == 0)
		conn_append(&s->conn, ")\r\n", 3);
}

/* 1 when the item before the next one was written (a space is due). */
static int imap_fetch_head_had_items(const struct imap_fetch_attrs *attrs, int send_flags)
{
	return (attrs->items & (IMAP_FETCH_UID | IMAP_FETCH_FLAGS | IMAP_FETCH_RFC822_SIZE |
				IMAP_FETCH_INTERNALDATE)) != 0 || send_flags;
}

/* ---- FETCH flow ------------------------------------------------------ */

static void imap_fetch_next(struct imap_session *s);

/* The current message is answered (or gone): on to the next one, after the
 * client has read what waits for it. */
static void imap_fetch_advance(struct imap_session *s, struct imap_fetch_ctx *ctx)
{
	imap_fetch_body_release(ctx);
	buf_reset(&ctx->fields);
	ctx->next++;
	if (conn_flush_must_wait(&s->conn))
		s->on_drain = imap_fetch_next; /* the write callback resumes */
	else
		imap_fetch_next(s);
}

/* Send the current message's body sections, a chunk at a time; pause
 * (on_drain) whenever the client is more than max_output behind. */
static void imap_fetch_emit(struct imap_session *s)
{
	struct imap_fetch_ctx *ctx = s->cmd_ctx;
	for (;;) {
		if (ctx->in_literal) {
			size_t n = ctx->end - ctx->off;
			if (n > IMAP_FETCH_CHUNK)
				n = IMAP_FETCH_CHUNK;
			conn_append(&s->conn, ctx->src + ctx->off, n);
			ctx->off += n;
			if (ctx->off == ctx->end)
				ctx->in_literal = 0;
		} else if (ctx->section < ctx->attrs.n_bodies) {
			if (ctx->section > 0 ||
			    imap_fetch_head_had_items(&ctx->attrs, ctx->send_flags[ctx->next]))
				conn_append(&s->conn, " ", 1);
			imap_begin_body(s, ctx, &ctx->attrs.bodies[ctx->section++]);
			continue;
		} else {
			conn_append(&s->conn, ")\r\n", 3);
			imap_fetch_advance(s, ctx);
			return;
		}
		if (conn_flush_must_wait(&s->conn)) {
			s->on_drain = imap_fetch_emit;
			return;
		}
	}
}

static void imap_fetch_body_cb(int status, const struct imap_msg_info *info,
			       const uint8_t *body, size_t len, void *arg)
{
	struct imap_session *s = arg;
	(void)info;
	if (conn_is_closed(&s->conn)) {
		conn_unref(&s->conn);
		return;
	}
	struct imap_fetch_ctx *ctx = s->cmd_ctx;
	if (status != MAIL_OK && status != MAIL_ERR_NOT_FOUND) {
		imap_cmd_fail(s, status);
		conn_process(&s->conn);
	} else if (status == MAIL_OK && imap_fetch_reply_head(s, &ctx->attrs, ctx->uids[ctx->next],
								ctx->send_flags[ctx->next]) == 0) {
		ctx->body = xmalloc(len > 0 ? len : 1);
		memcpy(ctx->body, body, len);
		ctx->body_len = len;
		ctx->section = 0;
		ctx->in_literal = 0;
		imap_fetch_emit(s);
	} else {
		/* expunged by another session meanwhile: nothing to say */
		imap_fetch_advance(s, ctx);
	}
	conn_unref(&s->conn);
}

static void imap_fetch_next(struct imap_session *s)
{
	struct imap_fetch_ctx *ctx = s->cmd_ctx;
	if (ctx->next >= ctx->n_uids) {
		imap_cmd_done(s, "OK", NULL, "Fetch completed");
		conn_process(&s->conn);
		return;
	}
	/* a large body is reserved before it is asked for (its size is in the
	 * session's view): the store's answer itself is held until sent */
	uint32_t seq = imap_session_seq_of(s, ctx->uids[ctx->next]);
	uint64_t size = seq != 0 ? s->msgs[seq - 1].size : 0;
	struct mem_budget *budget = s->server->set.conn.access.body_budget;
	if (budget != NULL && size >= IMAP_BODY_BUDGET_MIN) {
		if (mem_budget_take(budget, (size_t)size) < 0) {
			log_event(LOG_WARN, "imap", "event=body_budget_full sid=%s size=%llu", s->conn.id,
				  (unsigned long long)size);
			imap_cmd_done(s, "NO", "UNAVAILABLE", "Server busy, try the FETCH again later");
			conn_process(&s->conn);
			return;
		}
		ctx->budget = budget;
		ctx->body_reserved = (size_t)size;
	}
	conn_ref(&s->conn);
	s->server->backend->fetch(s->server->backend_ctx, s->user, s->mailbox,
				  ctx->uids[ctx->next], imap_fetch_body_cb, s);
}

static void imap_fetch_seen_cb(int status, const struct imap_msg_info *msgs, size_t n,
			       void *arg)
{
	struct imap_session *s = arg;
	if (conn_is_closed(&s->conn)) {
		conn_unref(&s->conn);
		return;
	}
	if (status != MAIL_OK) {
		imap_cmd_fail(s, status);
		conn_process(&s->conn);
		conn_unref(&s->conn);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		uint32_t seq = imap_session_seq_of(s, msgs[i].uid);
		if (seq != 0)
			imap_msg_set_flags(&s->msgs[seq - 1], msgs[i].flags, msgs[i].n_flags);
	}
	imap_fetch_next(s);
	conn_unref(&s->conn);
}

void imap_cmd_fetch(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	const char *error;
	struct imap_fetch_ctx *ctx;

	if (n_args != 2) {
		imap_cmd_done(s, "BAD", NULL, "FETCH needs a sequence set and attributes");
		return;
	}
	ctx = xcalloc(1, sizeof(*ctx));
	buf_init(&ctx->fields);
	if (imap_fetch_attrs_parse(&args[1], &ctx->attrs, &error) < 0 ||
	    imap_session_seqset_uids(s, &args[0], &ctx->uids, &ctx->n_uids, &error) < 0) {
		imap_fetch_ctx_free(ctx);
		imap_cmd_done(s, "BAD", NULL, error);
		return;
	}
	s->cmd_ctx = ctx;
	s->cmd_ctx_free = imap_fetch_ctx_free;
	if (s->cmd_uid)
		ctx->attrs.items |= IMAP_FETCH_UID;
	if (ctx->attrs.n_bodies == 0) {
		for (size_t i = 0; i < ctx->n_uids; i++)
			imap_fetch_reply(s, &ctx->attrs, ctx->uids[i]);
		imap_cmd_done(s, "OK", NULL, "Fetch completed");
		return;
	}
	ctx->send_flags = xcalloc(ctx->n_uids > 0 ? ctx->n_uids : 1, 1);
	int sets_seen = 0;
	for (size_t i = 0; i < ctx->attrs.n_bodies; i++) {
		if (!ctx->attrs.bodies[i].peek)
			sets_seen = 1;
	}
	uint32_t *unseen = NULL;
	size_t n_unseen = 0;
	if (sets_seen && !s->read_only) {
		for (size_t i = 0; i < ctx->n_uids; i++) {
			uint32_t seq = imap_session_seq_of(s, ctx->uids[i]);
			const struct imap_msg *m = &s->msgs[seq - 1];
			if (imap_msg_has_flag(m, "\\Seen"))
				continue;
			if (unseen == NULL)
				unseen = xcalloc(ctx->n_uids, sizeof(*unseen));
			unseen[n_unseen++] = ctx->uids[i];
			ctx->send_flags[i] = 1;
		}
	}
	if (n_unseen == 0) {
		imap_fetch_next(s);
		return;
	}
	static const char *const seen[] = { "\\Seen" };
	conn_ref(&s->conn);
	s->server->backend->store_flags(s->server->backend_ctx, s->user, s->mailbox, unseen,
					n_unseen, IMAP_FLAGS_ADD, seen, 1, imap_fetch_seen_cb, s);
	free(unseen);
}

/* ---- STORE ----------------------------------------------------------- */

struct imap_store_ctx {
	int silent;
};

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
	} else {
		for (size_t i = 0; i < n; i++) {
			uint32_t seq = imap_session_seq_of(s, msgs[i].uid);
			if (seq == 0)
				continue;
			struct imap_msg *m = &s->msgs[seq - 1];
			imap_msg_set_flags(m, msgs[i].flags, msgs[i].n_flags);
			if (ctx->silent)
				continue;
			conn_printf(&s->conn, "* %u FETCH (", seq);
			if (s->cmd_uid)
				conn_printf(&s->conn, "UID %u ", m->uid);
			conn_append(&s->conn, "FLAGS ", 6);
			imap_session_append_flags(s, m);
			conn_append(&s->conn, ")\r\n", 3);
		}
		imap_cmd_done(s, "OK", NULL, "Store completed");
	}
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

void imap_cmd_store(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	const char *item, *error;
	enum imap_flag_mode mode;
	size_t name_len;

	if (n_args < 3 || !imap_arg_get_atom(&args[1], &item)) {
		imap_cmd_done(s, "BAD", NULL, "STORE needs a sequence set, an item and flags");
		return;
	}
	if (item[0] == '+' || item[0] == '-') {
		mode = item[0] == '+' ? IMAP_FLAGS_ADD : IMAP_FLAGS_REMOVE;
		item++;
	} else {
		mode = IMAP_FLAGS_SET;
	}
	name_len = strlen(item);
	int silent = name_len == 12 && strcasecmp(item, "FLAGS.SILENT") == 0;
	if (!silent && strcasecmp(item, "FLAGS") != 0) {
		imap_cmd_done(s, "BAD", NULL, "Invalid STORE item");
		return;
	}
	/* flags: one parenthesised list, or flags as separate arguments */
	const struct imap_arg *flag_args = &args[2];
	size_t n_flags = n_args - 2;
	if (n_args == 3 && args[2].type == IMAP_ARG_LIST) {
		flag_args = args[2].list->args;
		n_flags = args[2].list->count;
	}
	const char **flags = xcalloc(n_flags > 0 ? n_flags : 1, sizeof(*flags));
	for (size_t i = 0; i < n_flags; i++) {
		flags[i] = imap_flag_check(&flag_args[i]);
		if (flags[i] == NULL) {
			free(flags);
			imap_cmd_done(s, "BAD", NULL, "Invalid flag");
			return;
		}
	}
	if (s->read_only) {
		free(flags);
		imap_cmd_done(s, "NO", "READ-ONLY", "Mailbox is read-only");
		return;
	}
	uint32_t *uids;
	size_t n_uids;
	if (imap_session_seqset_uids(s, &args[0], &uids, &n_uids, &error) < 0) {
		free(flags);
		imap_cmd_done(s, "BAD", NULL, error);
		return;
	}
	if (n_uids == 0) {
		free(flags);
		free(uids);
		imap_cmd_done(s, "OK", NULL, "Store completed");
		return;
	}
	struct imap_store_ctx *ctx = xcalloc(1, sizeof(*ctx));
	ctx->silent = silent;
	s->cmd_ctx = ctx;
	s->cmd_ctx_free = free;
	conn_ref(&s->conn);
	s->server->backend->store_flags(s->server->backend_ctx, s->user, s->mailbox, uids,
					n_uids, mode, flags, n_flags, imap_store_cb, s);
	free(flags);
	free(uids);
}
