/* imap-cmd-fetch.c: FETCH and UID FETCH (RFC 3501 6.4.5, RFC 9051 6.4.5,
 * RFC 3516 BINARY, RFC 7162 MODSEQ / CHANGEDSINCE / VANISHED).
 *
 * The session holds nothing per message, so FETCH asks the backend:
 * the messages named go in chunks of IMAP_FETCH_META_CHUNK to
 * backend->fetch_meta (flags, size, date, modseq; the stored ENVELOPE,
 * BODYSTRUCTURE and part table only when an item needs them), and the
 * next chunk is asked for only once the client has read what the last
 * one produced (on_drain). Within a chunk:
 *   - when a body section is fetched without PEEK in a read-write
 *     mailbox, the chunk's messages without \Seen get it in one
 *     store_flags call first, and their replies carry the new FLAGS;
 *   - a message's reply is written item by item; a section of raw bytes
 *     (BODY[], RFC822, BODY[]<o.n>) is streamed from backend->fetch_range
 *     IMAP_FETCH_RANGE_CHUNK bytes at a time, so a large message never
 *     sits whole in memory; other sections (HEADER, TEXT, fields, parts,
 *     BINARY) need the message's bytes, which count against the body
 *     budget when large;
 *   - output pauses whenever more than max_output waits for the client.
 * The \Seen this FETCH sets is the session's own change: its uids go to
 * s->sync_skip so the changes told at the end do not repeat them.
 */
#include "imap-server-private.h"

#include "budget.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "mail-error.h"
#include "mime.h"
#include "xalloc.h"

/* Messages asked of fetch_meta at once (bounded memory per FETCH: their
 * metadata, ENVELOPE and BODYSTRUCTURE strings included). */
#define IMAP_FETCH_META_CHUNK 256u
/* Literal bytes appended between two checks of the output queue. */
#define IMAP_FETCH_CHUNK (64u * 1024u)
/* Bytes asked of fetch_range at once for a streamed section. */
#define IMAP_FETCH_RANGE_CHUNK (256u * 1024u)

/* How a section is answered: from which bytes of the message, and
 * whether they go out as they are (streamed) or transformed first. */
struct imap_section_plan {
	int nil;                /* no such part (or not a message part): NIL */
	int transform;          /* needs the bytes: HEADER.FIELDS, BINARY decoding,
				 * or cut here (no part table) */
	int whole;              /* no part table: the region is the whole
				 * message and the section is cut from it here */
	uint64_t off, len;      /* the region */
	enum mime_encoding enc; /* BINARY: the region's transfer encoding */
};

/* A message of the chunk, copied from fetch_meta's page. */
struct imap_fetch_msg {
	uint32_t uid;
	uint64_t size;
	int64_t date;
	uint64_t modseq;
	char **flags;
	size_t n_flags;
	char *envelope;
	char *bodystructure;
	char *body;
	uint8_t *parts;
	size_t parts_len;
	uint8_t *content;  /* the whole message when the meta brought it, else NULL */
	size_t content_len;
	int flags_changed; /* \Seen set by this FETCH: FLAGS are told */
};

struct imap_fetch_ctx {
	struct imap_fetch_attrs attrs;
	unsigned what;             /* IMAP_META_* */
	uint64_t changed_since;    /* CHANGEDSINCE, 0: none */
	int vanished;              /* VANISHED modifier */
	struct search_uid_range *req; /* the uid set as asked (VANISHED) */
	size_t n_req;
	int set_seen;              /* some section sets \Seen */
	/* the uids to answer and where the next chunk starts */
	struct search_uid_range *ranges;
	size_t n_ranges;
	size_t range_i;
	uint64_t cursor;
	/* the chunk */
	struct imap_fetch_msg *msgs;
	size_t n_msgs, cap;
	size_t cur;
	/* the current message */
	uint8_t *body;             /* its bytes, when a section needs them */
	size_t body_len;
	size_t section;            /* next index in attrs.bodies */
	int in_literal;            /* a literal is being sent from src */
	const uint8_t *src;
	size_t off, end;
	int streaming;             /* a literal is being sent from fetch_range */
	uint64_t stream_off, stream_end;
	buf fields;                /* the bytes of a transformed section */
	struct mem_budget *budget; /* body_reserved is taken from it */
	size_t body_reserved;
	int head_items;            /* an item precedes the first section */
	int called;                /* a backend call was made (not in dispatch) */
	struct imap_section_plan plan; /* of the section being answered */
};

static void imap_fetch_body_release(struct imap_fetch_ctx *ctx)
{
	free(ctx->body);
	ctx->body = NULL;
	ctx->body_len = 0;
	if (ctx->body_reserved > 0)
		mem_budget_give(ctx->budget, ctx->body_reserved);
	ctx->body_reserved = 0;
}

static void imap_fetch_msg_free(struct imap_fetch_msg *m)
{
	for (size_t i = 0; i < m->n_flags; i++)
		free(m->flags[i]);
	free(m->flags);
	free(m->envelope);
	free(m->bodystructure);
	free(m->body);
	free(m->parts);
	free(m->content);
	memset(m, 0, sizeof(*m));
}

static void imap_fetch_chunk_free(struct imap_fetch_ctx *ctx)
{
	for (size_t i = 0; i < ctx->n_msgs; i++)
		imap_fetch_msg_free(&ctx->msgs[i]);
	ctx->n_msgs = 0;
	ctx->cur = 0;
}

static void imap_fetch_ctx_free(void *p)
{
	struct imap_fetch_ctx *ctx = p;
	imap_fetch_attrs_deinit(&ctx->attrs);
	imap_fetch_chunk_free(ctx);
	free(ctx->msgs);
	free(ctx->ranges);
	free(ctx->req);
	imap_fetch_body_release(ctx);
	buf_deinit(&ctx->fields);
	free(ctx);
}

static void imap_fetch_msg_set_flags(struct imap_fetch_msg *m, const char *const *flags,
				     size_t n)
{
	for (size_t i = 0; i < m->n_flags; i++)
		free(m->flags[i]);
	free(m->flags);
	m->flags = n > 0 ? xcalloc(n, sizeof(*m->flags)) : NULL;
	for (size_t i = 0; i < n; i++)
		m->flags[i] = xstrdup(flags[i]);
	m->n_flags = n;
}

/* ---- replies --------------------------------------------------------- */

static void imap_append_internaldate(struct imap_session *s, int64_t ms)
{
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t t = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
	struct tm tm;
	if (gmtime_r(&t, &tm) == NULL)
		memset(&tm, 0, sizeof(tm));
	conn_printf(&s->conn, "INTERNALDATE \"%02d-%s-%04d %02d:%02d:%02d +0000\"", tm.tm_mday,
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

/* A section is raw bytes of the message as stored (streamed). */
static int imap_fetch_body_is_raw(const struct imap_fetch_body *b)
{
	return b->kind == IMAP_FETCH_KIND_BODY && b->section == IMAP_SECTION_ALL && b->n_part == 0;
}

/* The section's name in the reply: "BODY[1.HEADER.FIELDS (FROM)]<0>". */
static void imap_fetch_append_name(struct imap_session *s, const struct imap_fetch_body *b)
{
	static const char *const rfc822_names[] = { "RFC822", "RFC822.HEADER", "RFC822.TEXT" };
	static const char *const section_names[] = { "", "HEADER", "TEXT", "HEADER.FIELDS",
						     "HEADER.FIELDS.NOT", "MIME" };
	if (b->rfc822) {
		conn_printf(&s->conn, "%s", rfc822_names[b->section]);
		return;
	}
	conn_printf(&s->conn, "%s[", b->kind == IMAP_FETCH_KIND_BODY     ? "BODY"
				     : b->kind == IMAP_FETCH_KIND_BINARY ? "BINARY"
									 : "BINARY.SIZE");
	for (unsigned i = 0; i < b->n_part; i++)
		conn_printf(&s->conn, "%s%u", i > 0 ? "." : "", b->part[i]);
	if (b->section != IMAP_SECTION_ALL)
		conn_printf(&s->conn, "%s%s", b->n_part > 0 ? "." : "", section_names[b->section]);
	if (b->fields != NULL)
		conn_printf(&s->conn, " (%s)", b->fields);
	conn_append(&s->conn, "]", 1);
	if (b->partial)
		conn_printf(&s->conn, "<%u>", b->offset);
}

/* start/end of a slice after <offset.count>. */
static void imap_fetch_partial(const struct imap_fetch_body *b, uint64_t *start, uint64_t *end)
{
	if (!b->partial)
		return;
	uint64_t slice = *end - *start;
	uint64_t off = b->offset < slice ? b->offset : slice;
	*start += off;
	if (*end - *start > b->count)
		*end = *start + b->count;
}

/* "* n FETCH (" and every item but the body sections. */
static void imap_fetch_reply_head(struct imap_session *s, struct imap_fetch_ctx *ctx,
				  uint32_t seq, const struct imap_fetch_msg *m)
{
	unsigned items = ctx->attrs.items;
	const char *sep = "";
	conn_printf(&s->conn, "* %u FETCH (", seq);
	if (items & IMAP_FETCH_UID) {
		conn_printf(&s->conn, "UID %u", m->uid);
		sep = " ";
	}
	if ((items & IMAP_FETCH_FLAGS) || m->flags_changed) {
		conn_printf(&s->conn, "%sFLAGS ", sep);
		imap_session_append_flags(s, (const char *const *)m->flags, m->n_flags);
		sep = " ";
	}
	if ((items & IMAP_FETCH_MODSEQ) ||
	    (m->flags_changed && (s->enabled & IMAP_ENABLED_CONDSTORE))) {
		conn_printf(&s->conn, "%sMODSEQ (%llu)", sep, (unsigned long long)m->modseq);
		sep = " ";
	}
	if (items & IMAP_FETCH_RFC822_SIZE) {
		conn_printf(&s->conn, "%sRFC822.SIZE %llu", sep, (unsigned long long)m->size);
		sep = " ";
	}
	if (items & IMAP_FETCH_INTERNALDATE) {
		conn_printf(&s->conn, "%s", sep);
		imap_append_internaldate(s, m->date);
		sep = " ";
	}
	if (items & IMAP_FETCH_ENVELOPE) {
		/* a backend without the stored structure: an empty envelope */
		conn_printf(&s->conn, "%sENVELOPE %s", sep,
			    m->envelope != NULL ? m->envelope
						: "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
		sep = " ";
	}
	if (items & IMAP_FETCH_BODY) {
		conn_printf(&s->conn, "%sBODY %s", sep,
			    m->body != NULL ? m->body : "(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 0 0)");
		sep = " ";
	}
	if (items & IMAP_FETCH_BODYSTRUCTURE) {
		conn_printf(&s->conn, "%sBODYSTRUCTURE %s", sep,
			    m->bodystructure != NULL ? m->bodystructure
						     : "(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 0 0)");
		sep = " ";
	}
	ctx->section = 0;
	ctx->in_literal = 0;
	ctx->streaming = 0;
	/* a space before the first section when an item came before it */
	ctx->head_items = *sep != '\0';
}

/* ---- the flow --------------------------------------------------------- */

static void imap_fetch_next_chunk(struct imap_session *s);
static void imap_fetch_emit(struct imap_session *s);
static void imap_fetch_sections(struct imap_session *s);

static void imap_fetch_fail(struct imap_session *s, int status)
{
	imap_cmd_fail(s, status);
	conn_process(&s->conn);
}

/* The current message is answered: on to the next one. */
static void imap_fetch_msg_done(struct imap_session *s, struct imap_fetch_ctx *ctx)
{
	imap_fetch_body_release(ctx);
	buf_reset(&ctx->fields);
	ctx->cur++;
	if (conn_flush_must_wait(&s->conn))
		s->on_drain = imap_fetch_emit;
	else
		imap_fetch_emit(s);
}

/* A streamed literal: the next bytes arrived. */
static void imap_fetch_range_cb(int status, const struct imap_msg_info *info,
				const uint8_t *data, size_t len, void *arg)
{
	struct imap_session *s = arg;
	(void)info;
	if (conn_is_closed(&s->conn)) {
		conn_unref(&s->conn);
		return;
	}
	struct imap_fetch_ctx *ctx = s->cmd_ctx;
	uint64_t want = ctx->stream_end - ctx->stream_off;
	if (want > IMAP_FETCH_RANGE_CHUNK)
		want = IMAP_FETCH_RANGE_CHUNK;
	if (status != MAIL_OK || len != want) {
		/* the literal's length is out already: the reply cannot be
		 * finished (the message went away meanwhile) */
		log_event(LOG_WARN, "imap", "event=fetch_range_failed sid=%s status=%d", s->conn.id,
			  status);
		imap_session_bye(s, "Message vanished during FETCH", "fetch-range-failed");
		conn_unref(&s->conn);
		return;
	}
	conn_append(&s->conn, data, len);
	ctx->stream_off += len;
	if (ctx->stream_off == ctx->stream_end)
		ctx->streaming = 0;
	if (conn_flush_must_wait(&s->conn))
		s->on_drain = imap_fetch_sections;
	else
		imap_fetch_sections(s);
	conn_unref(&s->conn);
}

static int imap_enc_is_identity(enum mime_encoding enc)
{
	return enc == MIME_ENC_7BIT || enc == MIME_ENC_8BIT || enc == MIME_ENC_BINARY;
}

/* Plan section b of message m (RFC 3501 6.4.5 numbering through the part
 * table, lib/mime). Returns 0, or -1 when the part table is corrupt (the
 * section is then NIL). */
static int imap_fetch_plan(const struct imap_fetch_msg *m, const struct imap_fetch_body *b,
			   struct imap_section_plan *p)
{
	memset(p, 0, sizeof(*p));
	p->enc = MIME_ENC_7BIT;
	if (imap_fetch_body_is_raw(b) || (b->kind != IMAP_FETCH_KIND_BODY && b->n_part == 0)) {
		/* BODY[], RFC822, BINARY[]: the message as stored */
		p->len = m->size;
		return 0;
	}
	if (m->parts == NULL) {
		/* no part table (a message stored without one): the top-level
		 * sections are cut from the whole message here */
		if (b->n_part > 0 || b->kind != IMAP_FETCH_KIND_BODY) {
			p->nil = 1;
			return 0;
		}
		p->whole = 1;
		p->transform = 1;
		p->len = m->size;
		return 0;
	}
	struct mime_part_loc loc;
	int r = mime_parts_find(m->parts, m->parts_len, b->part, b->n_part, &loc);
	if (r <= 0) {
		p->nil = 1;
		return r;
	}
	if (b->kind != IMAP_FETCH_KIND_BODY) {
		p->off = loc.body_off;
		p->len = loc.body_len;
		p->enc = loc.encoding;
		p->transform = !imap_enc_is_identity(loc.encoding);
		return 0;
	}
	switch (b->section) {
	case IMAP_SECTION_ALL:
		p->off = loc.body_off;
		p->len = loc.body_len;
		break;
	case IMAP_SECTION_MIME:
		p->off = loc.mime_off;
		p->len = loc.mime_len;
		break;
	case IMAP_SECTION_HEADER:
	case IMAP_SECTION_HEADER_FIELDS:
	case IMAP_SECTION_HEADER_FIELDS_NOT:
		if ((loc.flags & MIME_PART_MESSAGE) == 0) {
			p->nil = 1;
			break;
		}
		p->off = loc.hdr_off;
		p->len = loc.hdr_len;
		p->transform = b->section != IMAP_SECTION_HEADER;
		break;
	case IMAP_SECTION_TEXT:
		if ((loc.flags & MIME_PART_MESSAGE) == 0) {
			p->nil = 1;
			break;
		}
		p->off = loc.text_off;
		p->len = loc.text_len;
		break;
	}
	return 0;
}

/* The literal of a section whose bytes are src[start, end) (after the
 * partial): its header goes out, the bytes follow from imap_fetch_sections. */
static void imap_fetch_literal(struct imap_session *s, struct imap_fetch_ctx *ctx,
			       const struct imap_fetch_body *b, const uint8_t *src, size_t len)
{
	if (b->kind == IMAP_FETCH_KIND_BINARY_SIZE) {
		conn_printf(&s->conn, " %zu", len);
		return;
	}
	uint64_t start = 0, end = len;
	imap_fetch_partial(b, &start, &end);
	/* RFC 3516: literal8 when the bytes hold a NUL */
	int nul = b->kind == IMAP_FETCH_KIND_BINARY && memchr(src + start, '\0', end - start);
	conn_printf(&s->conn, " %s{%llu}\r\n", nul ? "~" : "", (unsigned long long)(end - start));
	ctx->src = src;
	ctx->off = (size_t)start;
	ctx->end = (size_t)end;
	ctx->in_literal = start < end;
}

/* The region of a transformed section arrived (data, len): transform,
 * then its literal. */
static void imap_fetch_transform(struct imap_session *s, struct imap_fetch_ctx *ctx,
				 const uint8_t *data, size_t len)
{
	const struct imap_fetch_body *b = &ctx->attrs.bodies[ctx->section - 1];
	const struct imap_section_plan *p = &ctx->plan;
	buf *out = &ctx->fields;
	buf_reset(out);
	if (b->kind != IMAP_FETCH_KIND_BODY) {
		(void)mime_decode_transfer(p->enc, data, len, out);
		imap_fetch_literal(s, ctx, b, out->data, out->len);
		return;
	}
	size_t fields_end, start = 0, end = len;
	if (p->whole && b->section == IMAP_SECTION_HEADER)
		end = imap_header_end(data, len, &fields_end);
	else if (p->whole && b->section == IMAP_SECTION_TEXT)
		start = imap_header_end(data, len, &fields_end);
	if (b->section == IMAP_SECTION_HEADER_FIELDS || b->section == IMAP_SECTION_HEADER_FIELDS_NOT) {
		imap_header_fields(b, data, len, out);
		imap_fetch_literal(s, ctx, b, out->data, out->len);
		return;
	}
	buf_append(out, data + start, end - start);
	imap_fetch_literal(s, ctx, b, out->data, out->len);
}

static void imap_fetch_region_cb(int status, const struct imap_msg_info *info,
				 const uint8_t *data, size_t len, void *arg)
{
	struct imap_session *s = arg;
	(void)info;
	if (conn_is_closed(&s->conn)) {
		conn_unref(&s->conn);
		return;
	}
	struct imap_fetch_ctx *ctx = s->cmd_ctx;
	if (status != MAIL_OK || len != ctx->plan.len) {
		log_event(LOG_WARN, "imap", "event=fetch_range_failed sid=%s status=%d", s->conn.id,
			  status);
		imap_session_bye(s, "Message vanished during FETCH", "fetch-range-failed");
		conn_unref(&s->conn);
		return;
	}
	imap_fetch_transform(s, ctx, data, len);
	imap_fetch_sections(s);
	conn_unref(&s->conn);
}

/* Start section b of the current message: its name, then NIL, a size, or
 * a literal whose bytes are streamed, or fetched and transformed first.
 * Returns 1 when a backend call was made (the loop stops), else 0. */
static int imap_fetch_begin_section(struct imap_session *s, struct imap_fetch_ctx *ctx,
				    const struct imap_fetch_body *b)
{
	const struct imap_fetch_msg *m = &ctx->msgs[ctx->cur];
	struct imap_section_plan *p = &ctx->plan;
	imap_fetch_append_name(s, b);
	if (imap_fetch_plan(m, b, p) < 0)
		log_event(LOG_WARN, "imap", "event=part_table_corrupt sid=%s uid=%u", s->conn.id,
			  m->uid);
	if (p->nil) {
		conn_append(&s->conn, " NIL", 4);
		return 0;
	}
	if (!p->transform) {
		if (b->kind == IMAP_FETCH_KIND_BINARY_SIZE) {
			conn_printf(&s->conn, " %llu", (unsigned long long)p->len);
			return 0;
		}
		uint64_t start = 0, end = p->len;
		imap_fetch_partial(b, &start, &end);
		conn_printf(&s->conn, " %s{%llu}\r\n",
			    b->kind == IMAP_FETCH_KIND_BINARY && p->enc == MIME_ENC_BINARY ? "~" : "",
			    (unsigned long long)(end - start));
		ctx->stream_off = p->off + start;
		ctx->stream_end = p->off + end;
		ctx->streaming = start < end;
		return 0;
	}
	if (p->len == 0) {
		imap_fetch_transform(s, ctx, (const uint8_t *)"", 0);
		return 0;
	}
	if (m->content != NULL && p->off <= m->content_len && p->len <= m->content_len - p->off) {
		imap_fetch_transform(s, ctx, m->content + p->off, (size_t)p->len);
		return 0;
	}
	conn_ref(&s->conn);
	s->server->backend->fetch_range(s->server->backend_ctx, s->user, s->mailbox, m->uid,
					p->off, p->len, imap_fetch_region_cb, s);
	return 1;
}

/* Send the current message's sections, a piece at a time; pause (on_drain)
 * whenever the client is more than max_output behind. */
static void imap_fetch_sections(struct imap_session *s)
{
	struct imap_fetch_ctx *ctx = s->cmd_ctx;
	const struct imap_fetch_msg *m = &ctx->msgs[ctx->cur];
	for (;;) {
		if (ctx->streaming && m->content != NULL && ctx->stream_end <= m->content_len) {
			/* the bytes came with the meta */
			uint64_t n = ctx->stream_end - ctx->stream_off;
			if (n > IMAP_FETCH_CHUNK)
				n = IMAP_FETCH_CHUNK;
			conn_append(&s->conn, m->content + ctx->stream_off, (size_t)n);
			ctx->stream_off += n;
			if (ctx->stream_off == ctx->stream_end)
				ctx->streaming = 0;
			if (conn_flush_must_wait(&s->conn)) {
				s->on_drain = imap_fetch_sections;
				return;
			}
			continue;
		}
		if (ctx->streaming) {
			uint64_t n = ctx->stream_end - ctx->stream_off;
			if (n > IMAP_FETCH_RANGE_CHUNK)
				n = IMAP_FETCH_RANGE_CHUNK;
			conn_ref(&s->conn);
			s->server->backend->fetch_range(s->server->backend_ctx, s->user, s->mailbox,
							m->uid, ctx->stream_off, n,
							imap_fetch_range_cb, s);
			return;
		}
		if (ctx->in_literal) {
			size_t n = ctx->end - ctx->off;
			if (n > IMAP_FETCH_CHUNK)
				n = IMAP_FETCH_CHUNK;
			conn_append(&s->conn, ctx->src + ctx->off, n);
			ctx->off += n;
			if (ctx->off == ctx->end)
				ctx->in_literal = 0;
		} else if (ctx->section < ctx->attrs.n_bodies) {
			if (ctx->section > 0 || ctx->head_items)
				conn_append(&s->conn, " ", 1);
			if (imap_fetch_begin_section(s, ctx, &ctx->attrs.bodies[ctx->section++]))
				return; /* imap_fetch_region_cb goes on */
			continue;
		} else {
			conn_append(&s->conn, ")\r\n", 3);
			imap_fetch_msg_done(s, ctx);
			return;
		}
		if (conn_flush_must_wait(&s->conn)) {
			s->on_drain = imap_fetch_sections;
			return;
		}
	}
}

/* Before a message's reply: BINARY of an unknown transfer encoding fails
 * the command (RFC 3516 [UNKNOWN-CTE]); a large region that must be held
 * to be transformed is reserved against the body budget. Returns 0, or -1
 * when the command was answered. */
static int imap_fetch_msg_prepare(struct imap_session *s, struct imap_fetch_ctx *ctx,
				  const struct imap_fetch_msg *m)
{
	uint64_t need = 0;
	for (size_t i = 0; i < ctx->attrs.n_bodies; i++) {
		struct imap_section_plan p;
		const struct imap_fetch_body *b = &ctx->attrs.bodies[i];
		(void)imap_fetch_plan(m, b, &p);
		if (!p.nil && b->kind != IMAP_FETCH_KIND_BODY && p.enc == MIME_ENC_UNKNOWN) {
			imap_cmd_done(s, "NO", "UNKNOWN-CTE", "Unknown Content-Transfer-Encoding");
			conn_process(&s->conn);
			return -1;
		}
		if (!p.nil && p.transform && p.len > need)
			need = p.len;
	}
	struct mem_budget *budget = s->server->set.conn.access.body_budget;
	if (budget != NULL && need >= IMAP_BODY_BUDGET_MIN) {
		if (mem_budget_take(budget, (size_t)need) < 0) {
			log_event(LOG_WARN, "imap", "event=body_budget_full sid=%s size=%llu",
				  s->conn.id, (unsigned long long)need);
			imap_cmd_done(s, "NO", "UNAVAILABLE", "Server busy, try the FETCH again later");
			conn_process(&s->conn);
			return -1;
		}
		ctx->budget = budget;
		ctx->body_reserved = (size_t)need;
	}
	return 0;
}

/* Answer the chunk's messages from ctx->cur on. */
static void imap_fetch_emit(struct imap_session *s)
{
	struct imap_fetch_ctx *ctx = s->cmd_ctx;
	while (ctx->cur < ctx->n_msgs) {
		struct imap_fetch_msg *m = &ctx->msgs[ctx->cur];
		uint32_t seq = imap_session_seq_of(s, m->uid);
		if (seq == 0) {
			ctx->cur++;
			continue;
		}
		if (ctx->attrs.n_bodies == 0) {
			imap_fetch_reply_head(s, ctx, seq, m);
			conn_append(&s->conn, ")\r\n", 3);
			ctx->cur++;
			if (conn_flush_must_wait(&s->conn)) {
				s->on_drain = imap_fetch_emit;
				return;
			}
			continue;
		}
		if (imap_fetch_msg_prepare(s, ctx, m) < 0)
			return;
		imap_fetch_reply_head(s, ctx, seq, m);
		imap_fetch_sections(s);
		return;
	}
	imap_fetch_chunk_free(ctx);
	imap_fetch_next_chunk(s);
}

/* CONDSTORE: the modseqs after this FETCH set \Seen. */
static void imap_fetch_modseq_cb(int status, const struct imap_msg_meta *msgs, size_t n,
				 int more, void *arg)
{
	struct imap_session *s = arg;
	if (conn_is_closed(&s->conn)) {
		if (!more || status != MAIL_OK)
			conn_unref(&s->conn);
		return;
	}
	struct imap_fetch_ctx *ctx = s->cmd_ctx;
	for (size_t i = 0; status == MAIL_OK && i < n; i++) {
		for (size_t k = 0; k < ctx->n_msgs; k++) {
			if (ctx->msgs[k].uid == msgs[i].uid) {
				ctx->msgs[k].modseq = msgs[i].modseq;
				break;
			}
		}
	}
	if (more && status == MAIL_OK)
		return;
	/* a failure here leaves the old modseqs: the flags are stored */
	imap_fetch_emit(s);
	conn_unref(&s->conn);
}

static void imap_fetch_seen_cb(int status, const struct imap_msg_info *msgs, size_t n,
			       void *arg)
{
	struct imap_session *s = arg;
	if (conn_is_closed(&s->conn)) {
		conn_unref(&s->conn);
		return;
	}
	struct imap_fetch_ctx *ctx = s->cmd_ctx;
	if (status != MAIL_OK) {
		imap_fetch_fail(s, status);
		conn_unref(&s->conn);
		return;
	}
	/* both ascending by uid */
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		while (k < ctx->n_msgs && ctx->msgs[k].uid < msgs[i].uid)
			k++;
		if (k == ctx->n_msgs || ctx->msgs[k].uid != msgs[i].uid)
			continue;
		imap_fetch_msg_set_flags(&ctx->msgs[k], msgs[i].flags, msgs[i].n_flags);
		ctx->msgs[k].flags_changed = 1;
		imap_range_list_add(&s->sync_skip, msgs[i].uid, msgs[i].uid);
	}
	imap_session_mailbox_touched(s);
	if ((s->enabled & IMAP_ENABLED_CONDSTORE) && n > 0) {
		/* the replies carry MODSEQ: the new ones (the store's answer
		 * has flags only) */
		s->server->backend->fetch_meta(s->server->backend_ctx, s->user, s->mailbox,
					       s->sync_skip.r, s->sync_skip.n, IMAP_META_FLAGS, 0,
					       imap_fetch_modseq_cb, s);
		return; /* keeps the reference */
	}
	imap_fetch_emit(s);
	conn_unref(&s->conn);
}

/* The chunk's metadata is in: set \Seen where due, then answer. */
static void imap_fetch_chunk_ready(struct imap_session *s, struct imap_fetch_ctx *ctx)
{
	if (ctx->set_seen) {
		uint32_t *unseen = NULL;
		size_t n = 0;
		for (size_t i = 0; i < ctx->n_msgs; i++) {
			const struct imap_fetch_msg *m = &ctx->msgs[i];
			if (imap_flags_have((const char *const *)m->flags, m->n_flags, "\\Seen"))
				continue;
			if (unseen == NULL)
				unseen = xcalloc(ctx->n_msgs, sizeof(*unseen));
			unseen[n++] = m->uid;
		}
		if (n > 0) {
			static const char *const seen[] = { "\\Seen" };
			conn_ref(&s->conn);
			s->server->backend->store_flags(s->server->backend_ctx, s->user, s->mailbox,
							unseen, n, IMAP_FLAGS_ADD, seen, 1,
							imap_fetch_seen_cb, s);
			free(unseen);
			return;
		}
	}
	imap_fetch_emit(s);
}

static void imap_fetch_meta_cb(int status, const struct imap_msg_meta *msgs, size_t n, int more,
			       void *arg)
{
	struct imap_session *s = arg;
	if (conn_is_closed(&s->conn)) {
		if (!more || status != MAIL_OK)
			conn_unref(&s->conn);
		return;
	}
	struct imap_fetch_ctx *ctx = s->cmd_ctx;
	if (status != MAIL_OK) {
		imap_fetch_fail(s, status);
		conn_unref(&s->conn);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (ctx->n_msgs == ctx->cap) {
			ctx->cap = ctx->cap == 0 ? 16 : ctx->cap * 2;
			ctx->msgs = xrealloc(ctx->msgs, ctx->cap * sizeof(*ctx->msgs));
		}
		struct imap_fetch_msg *m = &ctx->msgs[ctx->n_msgs++];
		memset(m, 0, sizeof(*m));
		m->uid = msgs[i].uid;
		m->size = msgs[i].size;
		m->date = msgs[i].internal_date_ms;
		m->modseq = msgs[i].modseq;
		imap_fetch_msg_set_flags(m, msgs[i].flags, msgs[i].n_flags);
		m->envelope = msgs[i].envelope != NULL ? xstrdup(msgs[i].envelope) : NULL;
		m->bodystructure = msgs[i].bodystructure != NULL ? xstrdup(msgs[i].bodystructure)
								 : NULL;
		m->body = msgs[i].body != NULL ? xstrdup(msgs[i].body) : NULL;
		if (msgs[i].parts != NULL && msgs[i].parts_len > 0) {
			m->parts = xmalloc(msgs[i].parts_len);
			memcpy(m->parts, msgs[i].parts, msgs[i].parts_len);
			m->parts_len = msgs[i].parts_len;
		}
		if (msgs[i].content != NULL) {
			m->content = xmalloc(msgs[i].content_len + 1);
			memcpy(m->content, msgs[i].content, msgs[i].content_len);
			m->content_len = msgs[i].content_len;
		}
	}
	if (more)
		return;
	imap_fetch_chunk_ready(s, ctx);
	conn_unref(&s->conn);
}

/* Ask for the next IMAP_FETCH_META_CHUNK messages, or end the command. */
static void imap_fetch_next_chunk(struct imap_session *s)
{
	struct imap_fetch_ctx *ctx = s->cmd_ctx;
	const imap_uidmap *map = s->uidmap;
	while (ctx->range_i < ctx->n_ranges) {
		const struct search_uid_range *r = &ctx->ranges[ctx->range_i];
		if (ctx->cursor < r->first)
			ctx->cursor = r->first;
		uint32_t seq = ctx->cursor <= UINT32_MAX
				       ? imap_uidmap_seq_ceil(map, (uint32_t)ctx->cursor)
				       : imap_uidmap_count(map) + 1u;
		uint32_t first = imap_uidmap_uid_of(map, seq);
		if (first == 0 || first > r->last) {
			ctx->range_i++;
			continue;
		}
		uint64_t seq_last = (uint64_t)seq + IMAP_FETCH_META_CHUNK - 1u;
		if (seq_last > imap_uidmap_count(map))
			seq_last = imap_uidmap_count(map);
		uint32_t last = imap_uidmap_uid_of(map, (uint32_t)seq_last);
		if (last > r->last)
			last = r->last;
		ctx->cursor = (uint64_t)last + 1u;
		struct search_uid_range chunk = { first, last };
		ctx->called = 1;
		conn_ref(&s->conn);
		s->server->backend->fetch_meta(s->server->backend_ctx, s->user, s->mailbox, &chunk,
					       1, ctx->what, ctx->changed_since, imap_fetch_meta_cb, s);
		return;
	}
	int called = ctx->called; /* ctx goes with the command */
	imap_cmd_done(s, "OK", NULL, "Fetch completed");
	if (called)
		conn_process(&s->conn); /* else still inside the dispatch */
}

/* VANISHED (RFC 7162 3.2.6): expunged uids of the set asked for. */
static void imap_fetch_vanished_cb(int status, const struct imap_changes *ch, void *arg)
{
	struct imap_session *s = arg;
	if (conn_is_closed(&s->conn)) {
		conn_unref(&s->conn);
		return;
	}
	struct imap_fetch_ctx *ctx = s->cmd_ctx;
	if (status != MAIL_OK) {
		imap_fetch_fail(s, status);
		conn_unref(&s->conn);
		return;
	}
	struct imap_range_list l = { 0 };
	for (size_t i = 0; i < ch->n_expunged; i++) {
		for (size_t k = 0; k < ctx->n_req; k++) {
			uint32_t a = ch->expunged[i].first > ctx->req[k].first ? ch->expunged[i].first
										 : ctx->req[k].first;
			uint32_t b = ch->expunged[i].last < ctx->req[k].last ? ch->expunged[i].last
									       : ctx->req[k].last;
			if (a <= b)
				imap_range_list_add(&l, a, b);
		}
	}
	if (l.n > 0) {
		conn_append(&s->conn, "* VANISHED (EARLIER) ", 21);
		imap_session_append_uid_ranges(s, l.r, l.n);
		conn_append(&s->conn, "\r\n", 2);
	}
	free(l.r);
	imap_fetch_next_chunk(s);
	conn_unref(&s->conn);
}

/* (CHANGEDSINCE n [VANISHED]) of RFC 7162 3.1.4.1, 3.2.6. */
static int imap_fetch_modifiers_parse(struct imap_session *s, const struct imap_arg *arg,
				      struct imap_fetch_ctx *ctx, const char **error_r)
{
	*error_r = "Invalid FETCH modifiers";
	if (arg->type != IMAP_ARG_LIST || arg->list->count == 0)
		return -1;
	const struct imap_arg *a = arg->list->args;
	for (size_t i = 0; i < arg->list->count; i++) {
		const char *name, *num;
		char *end;
		if (!imap_arg_get_atom(&a[i], &name))
			return -1;
		if (strcasecmp(name, "CHANGEDSINCE") == 0 && i + 1 < arg->list->count &&
		    imap_arg_get_atom(&a[i + 1], &num) && num[0] >= '0' && num[0] <= '9') {
			unsigned long long v = strtoull(num, &end, 10);
			if (*end != '\0' || v >= (1ULL << 63))
				return -1;
			ctx->changed_since = v;
			i++;
		} else if (strcasecmp(name, "VANISHED") == 0) {
			ctx->vanished = 1;
		} else {
			return -1;
		}
	}
	if (ctx->vanished) {
		if (!s->cmd_uid || ctx->changed_since == 0 ||
		    (s->enabled & IMAP_ENABLED_QRESYNC) == 0) {
			*error_r = "VANISHED needs UID FETCH, CHANGEDSINCE and QRESYNC";
			return -1;
		}
	}
	return 0;
}

void imap_cmd_fetch(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	const char *error;
	struct imap_fetch_ctx *ctx;

	if (n_args < 2 || n_args > 3) {
		imap_cmd_done(s, "BAD", NULL, "FETCH needs a sequence set and attributes");
		return;
	}
	ctx = xcalloc(1, sizeof(*ctx));
	buf_init(&ctx->fields);
	if (imap_fetch_attrs_parse(&args[1], &ctx->attrs, &error) < 0 ||
	    (n_args == 3 && imap_fetch_modifiers_parse(s, &args[2], ctx, &error) < 0) ||
	    imap_session_seqset_ranges(s, &args[0], s->cmd_uid, &ctx->ranges, &ctx->n_ranges,
				       &error) < 0) {
		imap_fetch_ctx_free(ctx);
		imap_cmd_done(s, "BAD", NULL, error);
		return;
	}
	s->cmd_ctx = ctx;
	s->cmd_ctx_free = imap_fetch_ctx_free;
	if (s->cmd_uid)
		ctx->attrs.items |= IMAP_FETCH_UID;
	if (ctx->changed_since > 0)
		ctx->attrs.items |= IMAP_FETCH_MODSEQ;
	if (ctx->attrs.items & IMAP_FETCH_MODSEQ)
		s->enabled |= IMAP_ENABLED_CONDSTORE; /* RFC 7162 3.1 */
	ctx->what = IMAP_META_FLAGS;
	if (ctx->attrs.items & IMAP_FETCH_STRUCTURE_ITEMS)
		ctx->what |= IMAP_META_STRUCTURE;
	for (size_t i = 0; i < ctx->attrs.n_bodies; i++) {
		if (!ctx->attrs.bodies[i].peek)
			ctx->set_seen = !s->read_only;
		ctx->what |= IMAP_META_CONTENT; /* small bodies with the meta */
		if (!imap_fetch_body_is_raw(&ctx->attrs.bodies[i]))
			ctx->what |= IMAP_META_STRUCTURE; /* the part table */
	}
	if (ctx->vanished) {
		/* the set as asked, not only what the view has */
		struct imap_seqset set;
		const char *str;
		if (imap_arg_get_atom(&args[0], &str) && strcmp(str, "$") != 0 &&
		    imap_seqset_parse(str, 16384, &set, &error) == 0) {
			imap_seqset_resolve(&set, s->uidnext > 0 ? s->uidnext - 1u : 0);
			ctx->req = xcalloc(set.count + 1, sizeof(*ctx->req));
			for (size_t i = 0; i < set.count; i++)
				ctx->req[i] = (struct search_uid_range){ set.ranges[i].lo > 0
										 ? set.ranges[i].lo
										 : 1,
									 set.ranges[i].hi };
			ctx->n_req = set.count;
			imap_seqset_deinit(&set);
		}
		ctx->called = 1;
		conn_ref(&s->conn);
		s->server->backend->changes(s->server->backend_ctx, s->user, s->mailbox,
					    ctx->changed_since, s->uidnext, imap_fetch_vanished_cb, s);
		return;
	}
	imap_fetch_next_chunk(s);
}
