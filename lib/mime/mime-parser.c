/* mime-parser.c: the incremental MIME parser (RFC 2045, 2046) and what it
 * builds at the end: ENVELOPE, BODYSTRUCTURE, BODY and the part table.
 *
 * The message is a tree of entities: the message, each part of a
 * multipart, and the message inside each message/rfc822 part. Entities
 * are kept in an array in the order they start (depth-first); each
 * keeps only its offsets and what its header said (struct
 * mime__content), never its bytes. Only the header of the entity being
 * read is buffered (p->hdr, at most max_header_bytes).
 *
 * The body is scanned line by line for the boundaries of the open
 * multiparts (innermost first, prefix match, as Dovecot and GMime do).
 * A line start that does not fit in the current chunk is kept in p->pend
 * (at most 2 + longest boundary + 2 bytes) until it can be decided, so
 * any chunking gives the same result. Where a part ends: before the line
 * break that precedes its boundary line (RFC 2046 5.1.1), except that a
 * boundary line right after a multipart's close-delimiter line leaves
 * that line's break to the multipart (Dovecot does so; sizes match
 * its).
 */
#include <stdlib.h>
#include <string.h>

#include "mime-private.h"
#include "xalloc.h"

#define NONE UINT32_MAX

enum ent_kind {
	ENT_LEAF = 0,
	ENT_MULTIPART, /* with an active or closed boundary; children are its parts */
	ENT_MESSAGE,   /* message/rfc822 with its message as the one child */
};

struct ent {
	uint32_t parent, first_child, last_child, next_sibling;
	uint8_t kind;
	uint8_t is_msg;   /* a message header: the root, or a message/rfc822's child */
	uint8_t in_body;  /* the header has ended */
	uint8_t closed;   /* multipart: its close delimiter was seen */
	uint8_t digest;   /* child of a multipart/digest: default message/rfc822 */
	uint8_t depth;
	uint64_t hdr_off, hdr_len, body_off, body_len;
	uint64_t body_lf; /* LFs before body_off */
	uint64_t lines;
	uint64_t epi_off; /* closed multipart: just after its close-delimiter line */
	struct mime__content c;
};

enum after_skip { AFTER_NOTHING = 0, AFTER_NEW_CHILD };

struct mime_parser {
	struct mime_limits lim;
	struct mime__strs strs;
	struct ent *ents;
	size_t n_ents, cap_ents;
	uint32_t cur; /* the innermost open entity */
	int finished;

	uint64_t off;     /* bytes fed so far */
	uint64_t n_lf;    /* LFs among them */
	uint64_t prev_eol;    /* where the last line break began (its CR or LF) */
	uint64_t prev_eol_lf; /* LFs before it */
	uint64_t line_off;    /* where the current line began */
	uint8_t last_byte;
	int at_line_start;

	/* open multiparts whose close delimiter has not been seen, outermost
	 * first */
	uint32_t bstack[MIME_DEPTH_MAX + 2];
	unsigned nb;
	int no_boundaries; /* the part limit was reached: none are recognised */

	uint8_t *pend; /* a line start being decided */
	size_t pend_len, pend_max;

	int skipping; /* the rest of a boundary line */
	enum after_skip after;

	buf hdr;               /* the header being read */
	size_t hdr_line_start; /* where its current line starts in hdr */
	unsigned hdr_fields;

	unsigned flags;
};

struct mime_limits mime_limits_default(void)
{
	struct mime_limits l = {
		.max_depth = 32,
		.max_parts = 1000,
		.max_header_bytes = 256 * 1024,
		.max_header_fields = 2000,
		.max_boundary_len = 70,
		.max_params = 64,
		.max_value_bytes = 16 * 1024,
		.max_addresses = 1000,
	};
	return l;
}

static struct mime_limits limits_fix(const struct mime_limits *in)
{
	struct mime_limits d = mime_limits_default();
	if (in == NULL)
		return d;
	struct mime_limits l = *in;
	if (l.max_depth == 0)
		l.max_depth = d.max_depth;
	if (l.max_depth > MIME_DEPTH_MAX)
		l.max_depth = MIME_DEPTH_MAX;
	if (l.max_parts == 0)
		l.max_parts = d.max_parts;
	if (l.max_header_bytes == 0)
		l.max_header_bytes = d.max_header_bytes;
	if (l.max_header_fields == 0)
		l.max_header_fields = d.max_header_fields;
	if (l.max_boundary_len == 0)
		l.max_boundary_len = d.max_boundary_len;
	if (l.max_boundary_len > MIME_BOUNDARY_MAX)
		l.max_boundary_len = MIME_BOUNDARY_MAX;
	if (l.max_params == 0)
		l.max_params = d.max_params;
	if (l.max_value_bytes == 0)
		l.max_value_bytes = d.max_value_bytes;
	if (l.max_addresses == 0)
		l.max_addresses = d.max_addresses;
	return l;
}

/* ---- entities ---- */

static void content_init(struct mime__content *c)
{
	struct mime__str nil = {MIME__NIL, 0};
	memset(c, 0, sizeof *c);
	c->type = c->subtype = nil;
	c->id = c->desc = c->md5 = c->loc = c->enc_name = nil;
	c->disp = c->charset = c->boundary = c->envelope = nil;
	c->enc = MIME_ENC_7BIT;
}

static uint32_t ent_new(mime_parser *p, uint32_t parent, uint64_t off)
{
	if (p->n_ents == p->cap_ents) {
		p->cap_ents = p->cap_ents ? p->cap_ents * 2 : 8;
		p->ents = xrealloc(p->ents, p->cap_ents * sizeof *p->ents);
	}
	uint32_t i = (uint32_t)p->n_ents++;
	struct ent *e = &p->ents[i];
	memset(e, 0, sizeof *e);
	content_init(&e->c);
	e->parent = parent;
	e->first_child = e->last_child = e->next_sibling = NONE;
	e->hdr_off = off;
	if (parent != NONE) {
		struct ent *pe = &p->ents[parent];
		e->depth = (uint8_t)(pe->depth + 1);
		if (pe->last_child == NONE)
			pe->first_child = i;
		else
			p->ents[pe->last_child].next_sibling = i;
		pe->last_child = i;
	}
	return i;
}

static int str_is(const mime_parser *p, struct mime__str s, const char *lit)
{
	return s.off != MIME__NIL && mime__name_is(mime__str_ptr(&p->strs, s), s.len, lit);
}

static void set_type(mime_parser *p, struct mime__content *c, const char *type,
		     const char *subtype)
{
	c->type = mime__str_add(&p->strs, type, strlen(type));
	c->subtype = mime__str_add(&p->strs, subtype, strlen(subtype));
	c->params = p->strs.n_params;
	c->n_params = 0;
	c->boundary.off = MIME__NIL;
	c->charset.off = MIME__NIL;
}

/* Text types: "charset" defaults to us-ascii (RFC 2045 5.2), added as a
 * parameter as Dovecot does; the part table gets it lower-cased. Must
 * run right after the Content-Type parameters were added. */
static void text_defaults(mime_parser *p, struct mime__content *c)
{
	if (!str_is(p, c->type, "text"))
		return;
	if (c->charset.off == MIME__NIL) {
		int has_ext = 0;
		for (size_t i = c->params; i < c->params + c->n_params; i++)
			has_ext |= str_is(p, p->strs.params[i].name, "charset*");
		if (!has_ext) {
			mime__param_add(&p->strs, mime__str_add(&p->strs, "charset", 7),
					mime__str_add(&p->strs, "us-ascii", 8));
			c->n_params++;
		}
		c->charset = mime__str_add(&p->strs, "us-ascii", 8);
	}
}

/* A part the parser cannot or may not descend into becomes opaque
 * text/plain (its other fields stay). */
static void degrade_to_text(mime_parser *p, struct ent *e)
{
	set_type(p, &e->c, "text", "plain");
	text_defaults(p, &e->c);
	e->kind = ENT_LEAF;
}

/* Parse the header bytes hdr (n) of e into e->c (and its ENVELOPE). */
static void header_parse(mime_parser *p, struct ent *e, const uint8_t *hdr, size_t n)
{
	const struct mime__field *ct = NULL, *disp = NULL, *lang = NULL;
	struct mime__field fields[3];
	struct mime__env_fields env;
	memset(&env, 0, sizeof env);
	struct mime__str *simple[4] = {&e->c.id, &e->c.desc, &e->c.md5, &e->c.loc};
	static const char *const simple_names[4] = {"content-id", "content-description",
						    "content-md5", "content-location"};
	int truncated = 0;
	size_t pos = 0;
	struct mime__field f;
	buf tmp;
	buf_init(&tmp);
	for (size_t i = 0; i < n; i++)
		if (hdr[i] >= 0x80) {
			p->flags |= MIME_RESULT_8BIT_HEADER;
			break;
		}
	while (mime__field_next(hdr, n, &pos, &f)) {
		if (f.name == NULL)
			continue;
		if (f.name_len > 8 && mime__name_is(f.name, 8, "content-")) {
			if (ct == NULL && mime__name_is(f.name, f.name_len, "content-type")) {
				fields[0] = f;
				ct = &fields[0];
			} else if (disp == NULL &&
				   mime__name_is(f.name, f.name_len, "content-disposition")) {
				fields[1] = f;
				disp = &fields[1];
			} else if (lang == NULL &&
				   mime__name_is(f.name, f.name_len, "content-language")) {
				fields[2] = f;
				lang = &fields[2];
			} else if (e->c.enc_name.off == MIME__NIL &&
				   mime__name_is(f.name, f.name_len, "content-transfer-encoding")) {
				const uint8_t *tok;
				size_t tlen;
				e->c.enc = mime__parse_encoding(f.value, f.value_len, &tlen, &tok);
				if (tlen > 0)
					e->c.enc_name = mime__str_add_lower(
						&p->strs, tok,
						tlen > p->lim.max_value_bytes ? p->lim.max_value_bytes
									      : tlen);
			} else {
				for (int k = 0; k < 4; k++) {
					if (simple[k]->off == MIME__NIL &&
					    mime__name_is(f.name, f.name_len, simple_names[k])) {
						buf_reset(&tmp);
						mime__unfold(f.value, f.value_len,
							     p->lim.max_value_bytes, 0, &tmp,
							     &truncated);
						*simple[k] = mime__str_add(&p->strs, tmp.data, tmp.len);
					}
				}
			}
		} else if (e->is_msg) {
			int k = mime__env_field_index(f.name, f.name_len);
			if (k >= 0 && env.value[k] == NULL) {
				/* an empty value is "" (never NULL): present */
				env.value[k] = f.value_len > 0 ? f.value : (const uint8_t *)"";
				env.len[k] = f.value_len;
			}
		}
	}
	/* Content-Type first, so its parameters are contiguous and the
	 * default charset can follow them */
	if (ct == NULL || mime__parse_content_type(&p->strs, ct->value, ct->value_len, &p->lim,
						   &e->c, &truncated) < 0) {
		/* none, or syntactically invalid: the default (RFC 2045 5.2,
		 * RFC 2046 5.1.5 for digests) */
		if (e->digest)
			set_type(p, &e->c, "message", "rfc822");
		else
			set_type(p, &e->c, "text", "plain");
	}
	text_defaults(p, &e->c);
	if (disp != NULL)
		mime__parse_disposition(&p->strs, disp->value, disp->value_len, &p->lim, &e->c,
					&truncated);
	if (lang != NULL)
		mime__parse_language(&p->strs, lang->value, lang->value_len, &p->lim, &e->c,
				     &truncated);
	if (e->is_msg) {
		buf_reset(&tmp);
		mime__envelope_write(&tmp, &env, &p->lim, &truncated);
		e->c.envelope = mime__str_add(&p->strs, tmp.data, tmp.len);
	}
	if (truncated)
		p->flags |= MIME_RESULT_TRUNCATED;
	buf_deinit(&tmp);
}

static struct ent *cur_ent(mime_parser *p)
{
	return &p->ents[p->cur];
}

static void hdr_reset(mime_parser *p)
{
	buf_reset(&p->hdr);
	p->hdr_line_start = 0;
	p->hdr_fields = 0;
}

/* e's header ended at off (its blank line included); its body starts
 * there. Decide what the body is. */
static void header_done(mime_parser *p, uint64_t off, uint64_t lfs, int degraded)
{
	struct ent *e = cur_ent(p);
	uint32_t idx = p->cur;
	e->hdr_len = off - e->hdr_off;
	e->body_off = off;
	e->body_lf = lfs;
	e->in_body = 1;
	header_parse(p, e, p->hdr.data, (size_t)e->hdr_len < p->hdr.len ? (size_t)e->hdr_len
									 : p->hdr.len);
	hdr_reset(p);
	if (degraded) {
		p->flags |= MIME_RESULT_TRUNCATED;
		degrade_to_text(p, e);
		return;
	}
	int deep = e->depth + 1u >= p->lim.max_depth;
	if (str_is(p, e->c.type, "multipart")) {
		struct mime__str b = e->c.boundary;
		if (b.off == MIME__NIL || b.len == 0 || b.len > p->lim.max_boundary_len) {
			p->flags |= b.off != MIME__NIL && b.len > p->lim.max_boundary_len
					    ? MIME_RESULT_TRUNCATED
					    : MIME_RESULT_BROKEN;
			degrade_to_text(p, e);
		} else if (deep) {
			p->flags |= MIME_RESULT_TRUNCATED;
			degrade_to_text(p, e);
		} else {
			e->kind = ENT_MULTIPART;
			if (!p->no_boundaries)
				p->bstack[p->nb++] = idx;
		}
	} else if (str_is(p, e->c.type, "message") && str_is(p, e->c.subtype, "rfc822") &&
		   (e->c.enc == MIME_ENC_7BIT || e->c.enc == MIME_ENC_8BIT ||
		    e->c.enc == MIME_ENC_BINARY)) {
		if (deep || p->n_ents >= p->lim.max_parts) {
			p->flags |= MIME_RESULT_TRUNCATED;
			degrade_to_text(p, e);
		} else {
			e->kind = ENT_MESSAGE;
			uint32_t m = ent_new(p, idx, off);
			p->ents[m].is_msg = 1;
			p->cur = m;
		}
	}
}

/* The innermost entity ends at end (lfs LFs before it), at a boundary
 * line or at the end of the message. */
static void ent_end(mime_parser *p, struct ent *e, uint64_t end, uint64_t lfs, int by_boundary)
{
	if (!e->in_body) {
		/* cut inside its header (by a boundary or the end) */
		uint64_t hl = end > e->hdr_off ? end - e->hdr_off : 0;
		e->hdr_len = hl;
		e->body_off = e->hdr_off + hl;
		e->body_lf = lfs;
		e->in_body = 1;
		header_parse(p, e, p->hdr.data, (size_t)hl < p->hdr.len ? (size_t)hl : p->hdr.len);
		hdr_reset(p);
		if (str_is(p, e->c.type, "multipart"))
			degrade_to_text(p, e);
		if (hl > 0 && by_boundary)
			p->flags |= MIME_RESULT_BROKEN;
		e->body_len = 0;
		e->lines = 0;
		return;
	}
	if (end < e->body_off && e->first_child == NONE) {
		/* a boundary right after the header's blank line: that line
		 * break is the boundary's (RFC 2046), the header ends before
		 * it, as Dovecot counts */
		if (end < e->hdr_off) {
			end = e->hdr_off;
			lfs = e->body_lf; /* no LF between: not counted */
		}
		e->hdr_len = end - e->hdr_off;
		e->body_off = end;
		e->body_lf = lfs;
	} else if (end < e->body_off) {
		end = e->body_off;
		lfs = e->body_lf;
	}
	e->body_len = end - e->body_off;
	e->lines = lfs - e->body_lf;
	if (e->kind == ENT_MULTIPART && !e->closed)
		p->flags |= MIME_RESULT_BROKEN;
}

/* ---- boundaries ---- */

enum match { MATCH_NO = 0, MATCH_YES, MATCH_MORE };

/* Is line (n bytes, without its LF; complete: the LF follows) a boundary
 * line of an open multipart? Innermost first. *which_r: its bstack
 * index; *end_r: a close delimiter. */
static enum match boundary_match(const mime_parser *p, const uint8_t *line, size_t n,
				 int complete, unsigned *which_r, int *end_r)
{
	if (n >= 1 && line[0] != '-')
		return MATCH_NO;
	if (n >= 2 && line[1] != '-')
		return MATCH_NO;
	if (n < 2)
		return complete ? MATCH_NO : MATCH_MORE;
	for (unsigned i = p->nb; i-- > 0;) {
		const struct ent *m = &p->ents[p->bstack[i]];
		const uint8_t *b = mime__str_ptr(&p->strs, m->c.boundary);
		size_t bl = m->c.boundary.len;
		if (n < 2 + bl) {
			if (!complete && memcmp(line + 2, b, n - 2) == 0)
				return MATCH_MORE;
			continue;
		}
		if (memcmp(line + 2, b, bl) != 0)
			continue;
		if (n >= 2 + bl + 2)
			*end_r = line[2 + bl] == '-' && line[3 + bl] == '-';
		else if (complete)
			*end_r = 0;
		else
			return MATCH_MORE;
		*which_r = i;
		return MATCH_YES;
	}
	return MATCH_NO;
}

/* Bytes needed to decide any line start. */
static size_t boundary_window(const mime_parser *p)
{
	size_t max = 0;
	for (unsigned i = 0; i < p->nb; i++) {
		size_t bl = p->ents[p->bstack[i]].c.boundary.len;
		if (bl > max)
			max = bl;
	}
	return max + 4;
}

/* A boundary line of bstack[which] starts at p->line_off: end the
 * entities inside that multipart, then start its next part (after the
 * line) or its epilogue. */
static void boundary_found(mime_parser *p, unsigned which, int is_end)
{
	uint32_t target = p->bstack[which];
	uint64_t end = p->prev_eol, lfs = p->prev_eol_lf;
	struct ent *c = cur_ent(p);
	if (c->kind == ENT_MULTIPART && c->closed && c->epi_off == p->line_off) {
		end = p->line_off;
		lfs = p->n_lf;
	}
	while (p->cur != target) {
		struct ent *e = cur_ent(p);
		ent_end(p, e, end, lfs, 1);
		p->cur = e->parent;
	}
	p->nb = which + 1;
	if (is_end) {
		struct ent *t = &p->ents[target];
		t->closed = 1;
		p->nb = which;
		p->after = AFTER_NOTHING;
	} else if (p->n_ents >= p->lim.max_parts) {
		p->flags |= MIME_RESULT_TRUNCATED;
		p->no_boundaries = 1;
		p->nb = 0;
		p->after = AFTER_NOTHING;
	} else {
		p->after = AFTER_NEW_CHILD;
	}
	p->skipping = 1;
}

/* The boundary line has been read through its LF. */
static void boundary_line_done(mime_parser *p)
{
	struct ent *t = cur_ent(p);
	if (p->after == AFTER_NEW_CHILD) {
		uint32_t child = ent_new(p, p->cur, p->off);
		t = &p->ents[p->cur];
		p->ents[child].digest = str_is(p, t->c.subtype, "digest");
		p->cur = child;
		hdr_reset(p);
	} else if (t->kind == ENT_MULTIPART && t->closed) {
		t->epi_off = p->off;
	}
	p->after = AFTER_NOTHING;
	p->skipping = 0;
}

/* ---- feeding ---- */

/* Consume n bytes of data from pos: offsets, line breaks. */
/* The same, when the caller counted the LFs (n_lf) and knows the last
 * one (last_nl, NULL when none). */
static void advance_counted(mime_parser *p, const uint8_t *data, size_t pos, size_t n,
			    uint64_t n_lf, const uint8_t *last_nl)
{
	if (n == 0)
		return;
	const uint8_t *s = data + pos, *end = s + n;
	p->n_lf += n_lf;
	if (last_nl != NULL) {
		uint8_t before = last_nl > s ? last_nl[-1] : p->last_byte;
		uint64_t at = p->off + (uint64_t)(last_nl - s);
		p->prev_eol = before == '\r' && at > 0 ? at - 1 : at;
		p->prev_eol_lf = p->n_lf - 1;
		p->line_off = p->off + (uint64_t)(last_nl - s) + 1;
	}
	p->off += n;
	p->last_byte = end[-1];
}

static void advance(mime_parser *p, const uint8_t *data, size_t pos, size_t n)
{
	if (n == 0)
		return;
	const uint8_t *s = data + pos, *end = s + n;
	const uint8_t *last_nl = NULL;
	uint64_t count = 0;
	for (const uint8_t *q = s; q < end;) {
		const uint8_t *nl = memchr(q, '\n', (size_t)(end - q));
		if (nl == NULL)
			break;
		count++;
		last_nl = nl;
		q = nl + 1;
	}
	advance_counted(p, data, pos, n, count, last_nl);
}

static int line_is_blank(const uint8_t *line, size_t n)
{
	return n == 0 || (n == 1 && line[0] == '\r');
}

/* In a header: consume what is left of data from *pos. */
static void feed_header(mime_parser *p, const uint8_t *data, size_t len, size_t *pos)
{
	const uint8_t *nl = memchr(data + *pos, '\n', len - *pos);
	size_t take = nl ? (size_t)(nl - (data + *pos)) + 1 : len - *pos;
	if (p->hdr.len + take > p->lim.max_header_bytes) {
		/* the header ends at its last whole line; the rest is body.
		 * The start of the cut line may have been read already (it
		 * depends on the chunking): decide it as a body line start
		 * now, as feed_body() would have, so results do not depend on
		 * the chunking. */
		size_t partial = p->hdr.len - p->hdr_line_start;
		size_t n = partial < p->pend_max ? partial : p->pend_max;
		if (p->nb > 0 && n > 0)
			memcpy(p->pend, p->hdr.data + p->hdr_line_start, n);
		header_done(p, p->line_off, p->n_lf, 1);
		p->at_line_start = partial == 0;
		if (p->nb > 0 && partial > 0) {
			unsigned which = 0;
			int is_end = 0;
			enum match m = boundary_match(p, p->pend, n, 0, &which, &is_end);
			if (m == MATCH_MORE) {
				p->pend_len = n;
				p->at_line_start = 1;
			} else if (m == MATCH_YES) {
				boundary_found(p, which, is_end);
			}
		}
		return;
	}
	buf_append(&p->hdr, data + *pos, take);
	if (nl == NULL) {
		advance(p, data, *pos, take);
		*pos += take;
		return;
	}
	const uint8_t *line = p->hdr.data + p->hdr_line_start;
	size_t n = p->hdr.len - p->hdr_line_start - 1; /* without the LF */
	unsigned which;
	int is_end;
	if (p->nb > 0 && boundary_match(p, line, n, 1, &which, &is_end) == MATCH_YES) {
		/* a header cut by a boundary (the part ends before the break
		 * that precedes it) */
		p->hdr.len = p->hdr_line_start;
		boundary_found(p, which, is_end);
		advance(p, data, *pos, take);
		*pos += take;
		boundary_line_done(p);
		p->at_line_start = 1;
		return;
	}
	uint64_t line_off = p->line_off;
	advance(p, data, *pos, take);
	*pos += take;
	p->at_line_start = 1;
	if (line_is_blank(line, n)) {
		header_done(p, p->off, p->n_lf, 0);
		return;
	}
	if (line[0] != ' ' && line[0] != '\t' && ++p->hdr_fields > p->lim.max_header_fields) {
		/* too many fields: the header ends before this line */
		p->hdr.len = p->hdr_line_start;
		header_done(p, line_off, p->n_lf - 1, 1);
		/* that line is body now (not a boundary: checked above) */
		return;
	}
	p->hdr_line_start = p->hdr.len;
}

/* Decide the line start kept in p->pend with more data. */
static void feed_pending(mime_parser *p, const uint8_t *data, size_t len, size_t *pos)
{
	size_t room = p->pend_max - p->pend_len;
	size_t avail = len - *pos;
	size_t take = avail < room ? avail : room;
	const uint8_t *nl = memchr(data + *pos, '\n', take);
	if (nl != NULL)
		take = (size_t)(nl - (data + *pos)) + 1;
	memcpy(p->pend + p->pend_len, data + *pos, take);
	p->pend_len += take;
	size_t n = nl != NULL ? p->pend_len - 1 : p->pend_len;
	unsigned which = 0;
	int is_end = 0;
	enum match m = boundary_match(p, p->pend, n, nl != NULL, &which, &is_end);
	if (m == MATCH_MORE && p->pend_len < p->pend_max) {
		advance(p, data, *pos, take);
		*pos += take;
		return;
	}
	p->pend_len = 0;
	if (m == MATCH_YES) {
		boundary_found(p, which, is_end);
		advance(p, data, *pos, take);
		*pos += take;
		if (nl != NULL)
			boundary_line_done(p);
		p->at_line_start = nl != NULL;
		return;
	}
	advance(p, data, *pos, take);
	*pos += take;
	p->at_line_start = nl != NULL;
}

/* In a body: consume some of data from *pos. */
static void feed_body(mime_parser *p, const uint8_t *data, size_t len, size_t *pos)
{
	if (p->nb == 0) {
		advance(p, data, *pos, len - *pos);
		p->at_line_start = data[len - 1] == '\n';
		*pos = len;
		return;
	}
	if (p->pend_len > 0) {
		feed_pending(p, data, len, pos);
		return;
	}
	if (p->at_line_start) {
		size_t window = p->pend_max;
		size_t avail = len - *pos;
		if (avail < window)
			window = avail;
		const uint8_t *nl = memchr(data + *pos, '\n', window);
		size_t n = nl != NULL ? (size_t)(nl - (data + *pos)) : window;
		unsigned which = 0;
		int is_end = 0;
		enum match m = boundary_match(p, data + *pos, n, nl != NULL, &which, &is_end);
		if (m == MATCH_MORE) {
			/* only when the chunk ends before the line can be decided */
			memcpy(p->pend, data + *pos, avail);
			p->pend_len = avail;
			advance(p, data, *pos, avail);
			*pos = len;
			return;
		}
		if (m == MATCH_YES) {
			boundary_found(p, which, is_end);
			size_t take = nl != NULL ? n + 1 : n;
			advance(p, data, *pos, take);
			*pos += take;
			if (nl != NULL)
				boundary_line_done(p);
			p->at_line_start = nl != NULL;
			return;
		}
	}
	/* not a boundary line: on to the next line start that may be one
	 * (a line starting with '-', or one whose first byte is in the next
	 * chunk), counting line breaks on the way */
	const uint8_t *s = data + *pos, *end = data + len, *q = s, *last_nl = NULL;
	uint64_t count = 0;
	for (;;) {
		const uint8_t *nl = memchr(q, '\n', (size_t)(end - q));
		if (nl == NULL)
			break;
		count++;
		last_nl = nl;
		q = nl + 1;
		if (q == end || *q == '-')
			break;
	}
	size_t take = last_nl != NULL && q < end && *q == '-' ? (size_t)(q - s)
			: (size_t)(end - s);
	advance_counted(p, data, *pos, take, count, last_nl);
	*pos += take;
	p->at_line_start = last_nl != NULL && last_nl == data + *pos - 1;
}

int mime_parser_feed(mime_parser *p, const void *data, size_t len)
{
	if (p->finished)
		abort();
	const uint8_t *d = data;
	size_t pos = 0;
	while (pos < len) {
		if (p->skipping) {
			const uint8_t *nl = memchr(d + pos, '\n', len - pos);
			size_t take = nl != NULL ? (size_t)(nl - (d + pos)) + 1 : len - pos;
			advance(p, d, pos, take);
			pos += take;
			if (nl != NULL) {
				boundary_line_done(p);
				p->at_line_start = 1;
			}
			continue;
		}
		if (p->nb > 0)
			p->pend_max = boundary_window(p);
		if (!cur_ent(p)->in_body)
			feed_header(p, d, len, &pos);
		else
			feed_body(p, d, len, &pos);
	}
	return 0;
}

/* ---- the parser object ---- */

mime_parser *mime_parser_create(const struct mime_limits *limits)
{
	mime_parser *p = xcalloc(1, sizeof *p);
	p->lim = limits_fix(limits);
	buf_init(&p->hdr);
	p->pend = xmalloc(p->lim.max_boundary_len + 4);
	p->cur = ent_new(p, NONE, 0);
	p->ents[p->cur].is_msg = 1;
	p->at_line_start = 1;
	return p;
}

void mime_parser_destroy(mime_parser **pp)
{
	if (pp == NULL || *pp == NULL)
		return;
	mime_parser *p = *pp;
	mime__strs_deinit(&p->strs);
	free(p->ents);
	free(p->pend);
	buf_deinit(&p->hdr);
	free(p);
	*pp = NULL;
}

/* ---- BODYSTRUCTURE and BODY ---- */

static void put_str(buf *out, const mime_parser *p, struct mime__str s)
{
	mime__imap_nstring(out, &p->strs, s);
}

/* IMAP text made earlier (an ENVELOPE), as it is */
static void put_raw(buf *out, const mime_parser *p, struct mime__str s)
{
	if (s.off == MIME__NIL)
		buf_append_str(out, MIME__ENVELOPE_EMPTY);
	else
		buf_append(out, mime__str_ptr(&p->strs, s), s.len);
}

static void put_upper(buf *out, const mime_parser *p, struct mime__str s)
{
	if (s.off == MIME__NIL)
		buf_append_str(out, "NIL");
	else
		mime__imap_string_upper(out, mime__str_ptr(&p->strs, s), s.len);
}

static void put_params(buf *out, const mime_parser *p, size_t first, size_t n)
{
	if (n == 0) {
		buf_append_str(out, "NIL");
		return;
	}
	buf_append(out, "(", 1);
	for (size_t i = first; i < first + n; i++) {
		if (i > first)
			buf_append(out, " ", 1);
		put_upper(out, p, p->strs.params[i].name);
		buf_append(out, " ", 1);
		put_str(out, p, p->strs.params[i].value);
	}
	buf_append(out, ")", 1);
}

/* body-fld-dsp SP body-fld-lang SP body-fld-loc */
static void put_ext_common(buf *out, const mime_parser *p, const struct mime__content *c)
{
	buf_append(out, " ", 1);
	if (c->disp.off == MIME__NIL) {
		buf_append_str(out, "NIL");
	} else {
		buf_append(out, "(", 1);
		put_upper(out, p, c->disp);
		buf_append(out, " ", 1);
		put_params(out, p, c->disp_params, c->n_disp_params);
		buf_append(out, ")", 1);
	}
	buf_append(out, " ", 1);
	if (c->n_langs == 0) {
		buf_append_str(out, "NIL");
	} else {
		buf_append(out, "(", 1);
		for (size_t i = c->langs; i < c->langs + c->n_langs; i++) {
			if (i > c->langs)
				buf_append(out, " ", 1);
			put_str(out, p, p->strs.list[i]);
		}
		buf_append(out, ")", 1);
	}
	buf_append(out, " ", 1);
	put_str(out, p, c->loc);
}

/* What a multipart without parts, or a message/rfc822 that could not be
 * read, holds: an empty text/plain (as Dovecot sends). */
static void put_empty_text(buf *out, int ext)
{
	buf_append_str(out, "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 0 0");
	if (ext)
		buf_append_str(out, " NIL NIL NIL NIL");
	buf_append(out, ")", 1);
}

static void put_body(buf *out, const mime_parser *p, uint32_t idx, int ext)
{
	const struct ent *e = &p->ents[idx];
	const struct mime__content *c = &e->c;
	buf_append(out, "(", 1);
	if (e->kind == ENT_MULTIPART) {
		if (e->first_child == NONE)
			put_empty_text(out, ext);
		for (uint32_t ch = e->first_child; ch != NONE; ch = p->ents[ch].next_sibling)
			put_body(out, p, ch, ext);
		buf_append(out, " ", 1);
		put_upper(out, p, c->subtype);
		if (ext) {
			buf_append(out, " ", 1);
			put_params(out, p, c->params, c->n_params);
			put_ext_common(out, p, c);
		}
		buf_append(out, ")", 1);
		return;
	}
	put_upper(out, p, c->type);
	buf_append(out, " ", 1);
	put_upper(out, p, c->subtype);
	buf_append(out, " ", 1);
	put_params(out, p, c->params, c->n_params);
	buf_append(out, " ", 1);
	put_str(out, p, c->id);
	buf_append(out, " ", 1);
	put_str(out, p, c->desc);
	buf_append(out, " ", 1);
	if (c->enc_name.off == MIME__NIL)
		buf_append_str(out, "\"7BIT\"");
	else
		put_upper(out, p, c->enc_name);
	buf_printf(out, " %llu", (unsigned long long)e->body_len);
	if (str_is(p, c->type, "message") && str_is(p, c->subtype, "rfc822")) {
		buf_append(out, " ", 1);
		if (e->kind == ENT_MESSAGE) {
			uint32_t m = e->first_child;
			put_raw(out, p, p->ents[m].c.envelope);
			buf_append(out, " ", 1);
			put_body(out, p, m, ext);
		} else {
			buf_append_str(out, MIME__ENVELOPE_EMPTY " ");
			put_empty_text(out, ext);
		}
		buf_printf(out, " %llu", (unsigned long long)e->lines);
	} else if (str_is(p, c->type, "text")) {
		buf_printf(out, " %llu", (unsigned long long)e->lines);
	}
	if (ext) {
		buf_append(out, " ", 1);
		put_str(out, p, c->md5);
		put_ext_common(out, p, c);
	}
	buf_append(out, ")", 1);
}

/* ---- the part table ---- */

static void loc_fill(const mime_parser *p, const struct ent *e, struct mime_part_loc *loc)
{
	loc->flags = 0;
	if (e->kind == ENT_MULTIPART)
		loc->flags |= MIME_PART_MULTIPART;
	loc->encoding = e->c.enc;
	loc->charset[0] = 0;
	if (e->kind == ENT_LEAF && str_is(p, e->c.type, "text")) {
		loc->flags |= MIME_PART_TEXT;
		if (str_is(p, e->c.subtype, "html"))
			loc->flags |= MIME_PART_HTML;
		if (e->c.charset.off != MIME__NIL) {
			/* a name with spaces, controls or 8-bit bytes names no
			 * charset: "" (read as UTF-8) */
			size_t n = e->c.charset.len;
			const uint8_t *cs = mime__str_ptr(&p->strs, e->c.charset);
			for (size_t i = 0; i < n; i++)
				if (cs[i] <= 0x20 || cs[i] >= 0x7f)
					n = 0;
			memcpy(loc->charset, cs, n);
			loc->charset[n] = 0;
		}
	}
	loc->mime_off = e->hdr_off;
	loc->mime_len = e->hdr_len;
	loc->body_off = e->body_off;
	loc->body_len = e->body_len;
	loc->hdr_off = loc->hdr_len = loc->text_off = loc->text_len = 0;
	if (e->kind == ENT_MESSAGE) {
		const struct ent *m = &p->ents[e->first_child];
		loc->flags |= MIME_PART_MESSAGE;
		loc->hdr_off = m->hdr_off;
		loc->hdr_len = m->hdr_len;
		loc->text_off = m->body_off;
		loc->text_len = m->body_len;
	}
}

/* Part idx at loc->path (loc->depth components), then its subparts. */
static void parts_emit(const mime_parser *p, struct mime__parts_writer *w, uint32_t idx,
		       struct mime_part_loc *loc)
{
	const struct ent *e = &p->ents[idx];
	loc_fill(p, e, loc);
	mime__parts_add(w, loc);
	uint32_t kids = NONE;
	if (e->kind == ENT_MULTIPART) {
		kids = e->first_child;
	} else if (e->kind == ENT_MESSAGE) {
		const struct ent *m = &p->ents[e->first_child];
		if (m->kind == ENT_MULTIPART) {
			kids = m->first_child;
		} else {
			loc->path[loc->depth++] = 1;
			parts_emit(p, w, e->first_child, loc);
			loc->depth--;
			return;
		}
	}
	uint32_t n = 0;
	for (uint32_t ch = kids; ch != NONE; ch = p->ents[ch].next_sibling) {
		loc->path[loc->depth++] = ++n;
		parts_emit(p, w, ch, loc);
		loc->depth--;
	}
}

static char *steal_str(buf *b, size_t *len_r)
{
	if (b->data == NULL) {
		buf_reserve(b, 1);
		b->data[0] = 0;
	}
	return (char *)buf_steal(b, len_r);
}

int mime_parser_finish(mime_parser *p, struct mime_result **r)
{
	if (p->finished)
		abort();
	if (p->pend_len > 0) {
		/* the last line, without an LF */
		unsigned which = 0;
		int is_end = 0;
		if (boundary_match(p, p->pend, p->pend_len, 1, &which, &is_end) == MATCH_YES)
			boundary_found(p, which, is_end);
		p->pend_len = 0;
	}
	p->finished = 1;
	/* a boundary line at the very end starts no part */
	while (p->cur != NONE) {
		struct ent *e = cur_ent(p);
		ent_end(p, e, p->off, p->n_lf, 0);
		p->cur = e->parent;
	}
	struct ent *root = &p->ents[0];
	struct mime_result *res = xcalloc(1, sizeof *res);
	buf out;
	buf_init(&out);
	put_raw(&out, p, root->c.envelope);
	res->envelope = steal_str(&out, &res->envelope_len);
	put_body(&out, p, 0, 1);
	res->bodystructure = steal_str(&out, &res->bodystructure_len);
	put_body(&out, p, 0, 0);
	res->body = steal_str(&out, &res->body_len);

	struct mime__parts_writer w;
	mime__parts_begin(&w, p->off);
	struct mime_part_loc *loc = xcalloc(1, sizeof *loc);
	loc_fill(p, root, loc);
	loc->flags = MIME_PART_MESSAGE | (root->kind == ENT_MULTIPART ? MIME_PART_MULTIPART : 0);
	loc->charset[0] = 0;
	loc->body_off = 0;
	loc->body_len = p->off;
	loc->hdr_off = root->hdr_off;
	loc->hdr_len = root->hdr_len;
	loc->text_off = root->body_off;
	loc->text_len = root->body_len;
	loc->depth = 0;
	mime__parts_add(&w, loc);
	if (root->kind == ENT_MULTIPART) {
		uint32_t n = 0;
		for (uint32_t ch = root->first_child; ch != NONE; ch = p->ents[ch].next_sibling) {
			loc->depth = 1;
			loc->path[0] = ++n;
			parts_emit(p, &w, ch, loc);
		}
	} else {
		loc->depth = 1;
		loc->path[0] = 1;
		parts_emit(p, &w, 0, loc);
	}
	free(loc);
	mime__parts_end(&w);
	res->n_parts = w.n;
	res->parts = buf_steal(&w.out, &res->parts_len);
	res->size = p->off;
	res->flags = p->flags;
	*r = res;
	return 1;
}

int mime_analyze(const void *msg, size_t len, const struct mime_limits *limits,
		 struct mime_result **r)
{
	mime_parser *p = mime_parser_create(limits);
	mime_parser_feed(p, msg, len);
	int ret = mime_parser_finish(p, r);
	mime_parser_destroy(&p);
	return ret;
}

void mime_result_free(struct mime_result **r)
{
	if (r == NULL || *r == NULL)
		return;
	free((*r)->envelope);
	free((*r)->bodystructure);
	free((*r)->body);
	free((*r)->parts);
	free(*r);
	*r = NULL;
}
