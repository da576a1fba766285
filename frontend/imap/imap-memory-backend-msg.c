/* imap-memory-backend-msg.c: the memory backend's calls of issue 9 (see
 * imap-backend.h): open, fetch_meta, fetch_range, copy, changes,
 * watch/unwatch, search, sort, thread. Tests only: every call is a
 * linear scan. SEARCH, SORT and THREAD are the store node's own
 * evaluator (store-node/mailsearch.h) on text decoded by lib/mime, as
 * the store's glue does it. */
#include "imap-memory-backend-private.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "buf.h"
#include "mail-error.h"
#include "mailsearch.h"
#include "xalloc.h"

/* ---- helpers ---------------------------------------------------------- */

static int mem_in_ranges(const struct search_uid_range *r, size_t n, uint32_t uid)
{
	for (size_t i = 0; i < n; i++) {
		if (uid >= r[i].first && uid <= r[i].last)
			return 1;
	}
	return 0;
}

/* Ranges of uids (ascending) into *out, merging neighbours. */
static void mem_ranges_add(struct search_uid_range **out, size_t *n, size_t *cap, uint32_t uid)
{
	if (*n > 0 && (*out)[*n - 1].last + 1u == uid) {
		(*out)[*n - 1].last = uid;
		return;
	}
	if (*n == *cap) {
		*cap = *cap == 0 ? 8 : *cap * 2;
		*out = xrealloc(*out, *cap * sizeof(**out));
	}
	(*out)[(*n)++] = (struct search_uid_range){ uid, uid };
}

static void mem_op_set_ranges(struct mem_op *op, const struct search_uid_range *r, size_t n)
{
	op->ranges = xcalloc(n + 1, sizeof(*r));
	if (n > 0)
		memcpy(op->ranges, r, n * sizeof(*r));
	op->n_ranges = n;
}

static struct mem_op *mem_op_msg(void *ctx, const char *user, const char *mailbox, void *cb,
				 void *arg, void (*run)(struct mem_op *op))
{
	struct mem_op *op = mem_op_new(ctx, MEM_CALL, user, mailbox, cb, arg);
	op->run = run;
	return op;
}

static struct mem_box *mem_op_box(struct mem_op *op)
{
	return mem_box_find(op->mb, op->user, op->mailbox, strcmp(op->mailbox, "INBOX") == 0);
}

/* ---- search programs -------------------------------------------------- */

struct mem_key {
	struct search_key key;
};

static void mem_key_copy_into(struct search_key *dst, const struct search_key *src)
{
	*dst = *src;
	dst->str = src->str != NULL ? xstrdup(src->str) : NULL;
	dst->str2 = src->str2 != NULL ? xstrdup(src->str2) : NULL;
	if (src->n_ranges > 0) {
		struct search_uid_range *r = xcalloc(src->n_ranges, sizeof(*r));
		memcpy(r, src->ranges, src->n_ranges * sizeof(*r));
		dst->ranges = r;
	}
	if (src->n_children > 0) {
		struct search_key *c = xcalloc(src->n_children, sizeof(*c));
		for (size_t i = 0; i < src->n_children; i++)
			mem_key_copy_into(&c[i], &src->children[i]);
		dst->children = c;
	}
}

static void mem_key_free_inner(struct search_key *k)
{
	free((void *)k->str);
	free((void *)k->str2);
	free((void *)k->ranges);
	for (size_t i = 0; i < k->n_children; i++)
		mem_key_free_inner((struct search_key *)&k->children[i]);
	free((void *)k->children);
}

static struct mem_key *mem_key_copy(const struct search_key *k)
{
	struct mem_key *mk = xcalloc(1, sizeof(*mk));
	mem_key_copy_into(&mk->key, k);
	return mk;
}

static void mem_key_dump(buf *b, const struct search_key *k)
{
	static const char *const names[] = {
		"ALL", "NONE", "AND", "OR", "NOT", "UID", "FLAG", "HEADER", "BODY", "TEXT",
		"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE", "LARGER",
		"SMALLER", "MODSEQ", "OLDER", "YOUNGER",
	};
	const char *name = (size_t)k->op < sizeof(names) / sizeof(names[0]) ? names[k->op] : "?";
	switch (k->op) {
	case SEARCH_ALL:
	case SEARCH_NONE:
		buf_append_str(b, name);
		return;
	case SEARCH_AND:
	case SEARCH_OR:
	case SEARCH_NOT:
		buf_printf(b, "(%s", name);
		for (size_t i = 0; i < k->n_children; i++) {
			buf_append(b, " ", 1);
			mem_key_dump(b, &k->children[i]);
		}
		buf_append(b, ")", 1);
		return;
	case SEARCH_UID:
		buf_printf(b, "(UID ");
		for (size_t i = 0; i < k->n_ranges; i++) {
			if (k->ranges[i].first == k->ranges[i].last)
				buf_printf(b, "%s%u", i ? "," : "", k->ranges[i].first);
			else
				buf_printf(b, "%s%u:%u", i ? "," : "", k->ranges[i].first,
					   k->ranges[i].last);
		}
		buf_append(b, ")", 1);
		return;
	case SEARCH_FLAG:
		buf_printf(b, "(FLAG %s)", k->str);
		return;
	case SEARCH_HEADER:
		buf_printf(b, "(HEADER %s \"%s\")", k->str, k->str2);
		return;
	case SEARCH_BODY:
	case SEARCH_TEXT:
		buf_printf(b, "(%s \"%s\")", name, k->str);
		return;
	default:
		buf_printf(b, "(%s %llu)", name, (unsigned long long)k->num);
		return;
	}
}

/* ---- mailsearch glue: decoded header fields and body text ------------- */

struct mem_header_walk {
	const char *name;
	mailsearch_text_cb *cb;
	void *arg;
	int stopped;
};

static int mem_header_field_cb(const char *name, size_t name_len, const char *value,
			       size_t value_len, void *arg)
{
	struct mem_header_walk *w = arg;
	if (w->name != NULL && (strlen(w->name) != name_len ||
				strncasecmp(w->name, name, name_len) != 0))
		return 0;
	char field[256];
	size_t n = name_len < sizeof(field) - 1 ? name_len : sizeof(field) - 1;
	memcpy(field, name, n);
	field[n] = '\0';
	buf v;
	buf_init(&v);
	mime_header_decode(value, value_len, &v);
	size_t start = 0;
	while (start < v.len && (v.data[start] == ' ' || v.data[start] == '\t'))
		start++;
	int r = w->cb(w->arg, field, v.len > start ? (const char *)v.data + start : "",
		      v.len - start);
	buf_deinit(&v);
	if (r != 0)
		w->stopped = 1;
	return r;
}

static size_t mem_header_len(const struct mem_msg *m)
{
	for (size_t i = 0; i + 1 < m->len; i++) {
		if (m->body[i] == '\n' && (m->body[i + 1] == '\n' ||
					   (m->body[i + 1] == '\r' && i + 2 < m->len &&
					    m->body[i + 2] == '\n')))
			return i + 1;
	}
	return m->len;
}

static int mem_search_header(void *ctx, const char *name, mailsearch_text_cb *cb, void *arg)
{
	const struct mem_msg *m = ctx;
	struct mem_header_walk w = { name, cb, arg, 0 };
	(void)mime_header_foreach(m->body, mem_header_len(m), mem_header_field_cb, &w);
	return 0;
}

struct mem_text_walk {
	mailsearch_text_cb *cb;
	void *arg;
	int parts;
};

static int mem_text_part_cb(const char *utf8, size_t len, void *arg)
{
	struct mem_text_walk *w = arg;
	if (w->parts++ > 0 && w->cb(w->arg, NULL, "\n", 1) != 0)
		return 1;
	return w->cb(w->arg, NULL, utf8, len) != 0;
}

static int mem_search_body(void *ctx, mailsearch_text_cb *cb, void *arg)
{
	struct mem_msg *m = ctx;
	if (m->mime == NULL)
		(void)mime_analyze(m->body, m->len, NULL, &m->mime);
	struct mem_text_walk w = { cb, arg, 0 };
	int r = mime_text_foreach(m->body, m->len, m->mime->parts, m->mime->parts_len,
				  mem_text_part_cb, &w);
	return r < 0 ? -1 : 0;
}

static void mem_search_msg(struct mem_msg *m, struct mailsearch_msg *sm)
{
	*sm = (struct mailsearch_msg){
		.uid = m->uid,
		.size = m->len,
		.internal_date_ms = m->date,
		.modseq = m->modseq,
		.flags = (const char *const *)m->flags,
		.n_flags = m->n_flags,
		.ctx = m,
		.header = mem_search_header,
		.body_text = mem_search_body,
	};
}

static int64_t mem_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The uids of b matching the op's program (ascending); *n_r of them. -1
 * when the program is refused. */
static int mem_search_uids(struct mem_op *op, struct mem_box *b, uint32_t **uids_r, size_t *n_r,
			   uint64_t *highest_r)
{
	mailsearch_prog *prog;
	const char *error;
	if (mailsearch_prog_create(&op->key->key, &prog, &error) < 0)
		return -1;
	uint32_t *uids = xcalloc(b->n_msgs + 1, sizeof(*uids));
	size_t n = 0;
	uint64_t highest = 0;
	int64_t now = mem_now_ms();
	for (size_t i = 0; i < b->n_msgs; i++) {
		struct mailsearch_msg sm;
		mem_search_msg(&b->msgs[i], &sm);
		if (mailsearch_prog_match(prog, &sm, now) == 1) {
			uids[n++] = b->msgs[i].uid;
			if (b->msgs[i].modseq > highest)
				highest = b->msgs[i].modseq;
		}
	}
	mailsearch_prog_destroy(&prog);
	*uids_r = uids;
	*n_r = n;
	if (highest_r != NULL)
		*highest_r = highest;
	return 0;
}

static void mem_key_record(imap_memory_backend *mb, const struct search_key *key)
{
	buf b;
	buf_init(&b);
	mem_key_dump(&b, key);
	buf_append(&b, "", 1);
	free(mb->last_search);
	mb->last_search = (char *)buf_steal(&b, NULL);
}

void mem_op_free_extra(struct mem_op *op)
{
	free(op->ranges);
	if (op->key != NULL) {
		mem_key_free_inner(&op->key->key);
		free(op->key);
	}
	free(op->sort);
}

/* ---- open ------------------------------------------------------------- */

static void mem_open_run(struct mem_op *op)
{
	imap_backend_open_cb *cb = op->cb;
	struct mem_box *b = mem_op_box(op);
	if (op->mb->failure != MAIL_OK || b == NULL) {
		cb(op->mb->failure != MAIL_OK ? op->mb->failure : MAIL_ERR_NOT_FOUND, NULL, NULL, 0,
		   NULL, 0, 0, op->arg);
		return;
	}
	struct search_uid_range *r = NULL;
	size_t n = 0, cap = 0, n_kw = 0;
	const char **kw = xcalloc(1, sizeof(*kw));
	uint32_t first_unseen = 0, unseen = 0, deleted = 0;
	uint64_t size = 0;
	for (size_t i = 0; i < b->n_msgs; i++) {
		const struct mem_msg *m = &b->msgs[i];
		mem_ranges_add(&r, &n, &cap, m->uid);
		size += m->len;
		if (mem_msg_flag_index(m, "\\Seen") < 0) {
			unseen++;
			if (first_unseen == 0)
				first_unseen = m->uid;
		}
		deleted += mem_msg_flag_index(m, "\\Deleted") >= 0;
		for (size_t f = 0; f < m->n_flags; f++) {
			if (m->flags[f][0] == '\\')
				continue;
			size_t k = 0;
			while (k < n_kw && strcasecmp(kw[k], m->flags[f]) != 0)
				k++;
			if (k == n_kw) {
				kw = xrealloc(kw, (n_kw + 1) * sizeof(*kw));
				kw[n_kw++] = m->flags[f];
			}
		}
	}
	struct imap_mailbox_info box = { .name = b->name,
					 .uidvalidity = b->uidvalidity,
					 .uidnext = b->uidnext,
					 .exists = (uint32_t)b->n_msgs,
					 .highest_modseq = b->highest_modseq,
					 .unseen = unseen,
					 .deleted = deleted,
					 .size = size };
	cb(MAIL_OK, &box, r, n, kw, n_kw, first_unseen, op->arg);
	free(r);
	free(kw);
}

void mem_open(void *ctx, const char *user, const char *mailbox, imap_backend_open_cb *cb,
	      void *arg)
{
	mem_op_start(mem_op_msg(ctx, user, mailbox, cb, arg, mem_open_run));
}

/* ---- fetch_meta, fetch_range ----------------------------------------- */

static void mem_fetch_meta_run(struct mem_op *op)
{
	imap_backend_meta_cb *cb = op->cb;
	struct mem_box *b = mem_op_box(op);
	if (op->mb->failure != MAIL_OK || b == NULL) {
		cb(op->mb->failure != MAIL_OK ? op->mb->failure : MAIL_ERR_NOT_FOUND, NULL, 0, 0,
		   op->arg);
		return;
	}
	size_t page = op->mb->meta_page > 0 ? op->mb->meta_page : 100;
	struct imap_msg_meta *metas = xcalloc(page, sizeof(*metas));
	size_t n = 0;
	/* b->msgs is in ascending uid order */
	for (size_t i = 0; i < b->n_msgs; i++) {
		const struct mem_msg *m = &b->msgs[i];
		if (!mem_in_ranges(op->ranges, op->n_ranges, m->uid) || m->modseq <= op->since)
			continue;
		if (n == page) {
			cb(MAIL_OK, metas, n, 1, op->arg);
			n = 0;
		}
		metas[n++] = (struct imap_msg_meta){
			.uid = m->uid,
			.size = m->len,
			.internal_date_ms = m->date,
			.modseq = m->modseq,
			.flags = (const char *const *)m->flags,
			.n_flags = m->n_flags,
		};
		if (op->what & IMAP_META_STRUCTURE) {
			/* as the store keeps them, computed once (lib/mime) */
			struct mem_msg *mm = (struct mem_msg *)m;
			if (mm->mime == NULL)
				(void)mime_analyze(mm->body, mm->len, NULL, &mm->mime);
			metas[n - 1].envelope = mm->mime->envelope;
			metas[n - 1].bodystructure = mm->mime->bodystructure;
			metas[n - 1].body = mm->mime->body;
			metas[n - 1].parts = mm->mime->parts;
			metas[n - 1].parts_len = mm->mime->parts_len;
		}
	}
	cb(MAIL_OK, metas, n, 0, op->arg);
	free(metas);
}

void mem_fetch_meta(void *ctx, const char *user, const char *mailbox,
		    const struct search_uid_range *uids, size_t n_ranges, unsigned what,
		    uint64_t changed_since, imap_backend_meta_cb *cb, void *arg)
{
	struct mem_op *op = mem_op_msg(ctx, user, mailbox, cb, arg, mem_fetch_meta_run);
	mem_op_set_ranges(op, uids, n_ranges);
	op->what = what;
	op->since = changed_since;
	mem_op_start(op);
}

static void mem_fetch_range_run(struct mem_op *op)
{
	imap_backend_fetch_cb *cb = op->cb;
	struct mem_box *b = mem_op_box(op);
	struct mem_msg *m = b == NULL ? NULL : mem_msg_find(b, op->uid);
	if (op->mb->failure != MAIL_OK || m == NULL) {
		cb(op->mb->failure != MAIL_OK ? op->mb->failure : MAIL_ERR_NOT_FOUND, NULL, NULL, 0,
		   op->arg);
		return;
	}
	struct imap_msg_info info;
	mem_msg_info(m, &info);
	uint64_t off = op->offset < m->len ? op->offset : m->len;
	uint64_t len = m->len - off;
	if (op->length > 0 && op->length < len)
		len = op->length;
	cb(MAIL_OK, &info, m->body + off, (size_t)len, op->arg);
}

void mem_fetch_range(void *ctx, const char *user, const char *mailbox, uint32_t uid,
		     uint64_t offset, uint64_t length, imap_backend_fetch_cb *cb, void *arg)
{
	struct mem_op *op = mem_op_msg(ctx, user, mailbox, cb, arg, mem_fetch_range_run);
	op->uid = uid;
	op->offset = offset;
	op->length = length;
	mem_op_start(op);
}

/* ---- copy / move ------------------------------------------------------ */

static void mem_copy_run(struct mem_op *op)
{
	imap_backend_copy_cb *cb = op->cb;
	imap_memory_backend *mb = op->mb;
	struct mem_box *src = mem_op_box(op);
	struct mem_box *dst = mem_box_find(mb, op->user, op->to, strcmp(op->to, "INBOX") == 0);
	if (mb->failure != MAIL_OK || src == NULL || dst == NULL) {
		cb(mb->failure != MAIL_OK ? mb->failure : MAIL_ERR_NOT_FOUND, 0, NULL, NULL, 0,
		   op->arg);
		return;
	}
	uint32_t *from = xcalloc(src->n_msgs + 1, sizeof(*from));
	uint32_t *to = xcalloc(src->n_msgs + 1, sizeof(*to));
	size_t n = 0;
	for (size_t i = 0; i < src->n_msgs; i++) {
		if (mem_in_ranges(op->ranges, op->n_ranges, src->msgs[i].uid))
			from[n++] = src->msgs[i].uid;
	}
	if (n > 0) {
		uint64_t modseq = mem_box_bump(dst);
		for (size_t i = 0; i < n; i++) {
			const struct mem_msg *m = mem_msg_find(src, from[i]);
			if (dst->n_msgs == dst->cap) {
				dst->cap = dst->cap == 0 ? 8 : dst->cap * 2;
				dst->msgs = xrealloc(dst->msgs, dst->cap * sizeof(*dst->msgs));
			}
			struct mem_msg *c = &dst->msgs[dst->n_msgs++];
			memset(c, 0, sizeof(*c));
			c->uid = dst->uidnext++;
			c->body = xmalloc(m->len > 0 ? m->len : 1);
			memcpy(c->body, m->body, m->len);
			c->len = m->len;
			c->date = m->date;
			c->modseq = modseq;
			for (size_t f = 0; f < m->n_flags; f++)
				mem_msg_flag_add(c, m->flags[f]);
			to[i] = c->uid;
		}
	}
	if (op->move && n > 0) {
		uint64_t modseq = mem_box_bump(src);
		size_t out = 0, k = 0;
		for (size_t i = 0; i < src->n_msgs; i++) {
			if (k < n && src->msgs[i].uid == from[k]) {
				mem_box_log_expunge(src, from[k], modseq);
				mem_msg_free(&src->msgs[i]);
				k++;
			} else {
				src->msgs[out++] = src->msgs[i];
			}
		}
		src->n_msgs = out;
	}
	cb(MAIL_OK, dst->uidvalidity, from, to, n, op->arg);
	free(from);
	free(to);
}

void mem_copy(void *ctx, const char *user, const char *from, const struct search_uid_range *uids,
	      size_t n_ranges, const char *to, int move, imap_backend_copy_cb *cb, void *arg)
{
	struct mem_op *op = mem_op_msg(ctx, user, from, cb, arg, mem_copy_run);
	mem_op_set_ranges(op, uids, n_ranges);
	op->to = xstrdup(to);
	op->move = move;
	mem_op_start(op);
}

/* ---- changes ---------------------------------------------------------- */

static int mem_u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static void mem_changes_run(struct mem_op *op)
{
	imap_backend_changes_cb *cb = op->cb;
	struct mem_box *b = mem_op_box(op);
	if (op->mb->failure != MAIL_OK || b == NULL) {
		cb(op->mb->failure != MAIL_OK ? op->mb->failure : MAIL_ERR_NOT_FOUND, NULL, op->arg);
		return;
	}
	struct imap_changes ch = { .highest_modseq = b->highest_modseq,
				   .uidnext = b->uidnext,
				   .exists = (uint32_t)b->n_msgs,
				   .expunged_exact = op->since >= b->expunge_log_start };
	struct search_uid_range *added = NULL, *gone = NULL;
	size_t n_added = 0, cap_added = 0, n_gone = 0, cap_gone = 0;
	struct imap_msg_meta *changed = xcalloc(b->n_msgs + 1, sizeof(*changed));
	size_t n_changed = 0;
	for (size_t i = 0; i < b->n_msgs; i++) {
		const struct mem_msg *m = &b->msgs[i];
		if (m->uid >= op->known_uidnext) {
			mem_ranges_add(&added, &n_added, &cap_added, m->uid);
		} else if (m->modseq > op->since) {
			changed[n_changed++] = (struct imap_msg_meta){
				.uid = m->uid,
				.size = m->len,
				.internal_date_ms = m->date,
				.modseq = m->modseq,
				.flags = (const char *const *)m->flags,
				.n_flags = m->n_flags,
			};
		}
	}
	if (ch.expunged_exact) {
		uint32_t *u = xcalloc(b->n_expunged + 1, sizeof(*u));
		size_t k = 0;
		for (size_t i = 0; i < b->n_expunged; i++) {
			if (b->expunged[i].modseq > op->since && b->expunged[i].uid < op->known_uidnext)
				u[k++] = b->expunged[i].uid;
		}
		qsort(u, k, sizeof(*u), mem_u32_cmp);
		for (size_t i = 0; i < k; i++)
			mem_ranges_add(&gone, &n_gone, &cap_gone, u[i]);
		free(u);
	} else {
		/* every uid below known_uidnext that is absent now */
		size_t i = 0;
		uint32_t next = 1;
		while (next < op->known_uidnext) {
			while (i < b->n_msgs && b->msgs[i].uid < next)
				i++;
			uint32_t stop = i < b->n_msgs && b->msgs[i].uid < op->known_uidnext
						? b->msgs[i].uid
						: op->known_uidnext;
			if (next < stop) {
				if (n_gone == cap_gone) {
					cap_gone = cap_gone == 0 ? 8 : cap_gone * 2;
					gone = xrealloc(gone, cap_gone * sizeof(*gone));
				}
				gone[n_gone++] = (struct search_uid_range){ next, stop - 1u };
			}
			next = stop + 1u;
		}
	}
	ch.added = added;
	ch.n_added = n_added;
	ch.expunged = gone;
	ch.n_expunged = n_gone;
	ch.changed = changed;
	ch.n_changed = n_changed;
	cb(MAIL_OK, &ch, op->arg);
	free(added);
	free(gone);
	free(changed);
}

void mem_changes(void *ctx, const char *user, const char *mailbox, uint64_t since_modseq,
		 uint32_t known_uidnext, imap_backend_changes_cb *cb, void *arg)
{
	struct mem_op *op = mem_op_msg(ctx, user, mailbox, cb, arg, mem_changes_run);
	op->since = since_modseq;
	op->known_uidnext = known_uidnext;
	mem_op_start(op);
}

/* ---- watch ------------------------------------------------------------ */

imap_backend_watch *mem_watch(void *ctx, const char *user, const char *mailbox,
			      uint64_t modseq, imap_backend_watch_cb *cb, void *arg)
{
	imap_memory_backend *mb = ctx;
	(void)modseq;
	struct imap_backend_watch *w = xcalloc(1, sizeof(*w));
	w->id = ++mb->watch_ids;
	w->user = xstrdup(user);
	w->mailbox = xstrdup(mailbox);
	w->cb = cb;
	w->arg = arg;
	w->next = mb->watches;
	mb->watches = w;
	return w;
}

void mem_unwatch(void *ctx, imap_backend_watch *w)
{
	imap_memory_backend *mb = ctx;
	for (struct imap_backend_watch **p = &mb->watches; *p != NULL; p = &(*p)->next) {
		if (*p == w) {
			*p = w->next;
			free(w->user);
			free(w->mailbox);
			free(w);
			return;
		}
	}
}

void mem_notify_flush(imap_memory_backend *mb)
{
	for (struct mem_box *b = mb->boxes; b != NULL; b = b->next) {
		if (!b->notify)
			continue;
		b->notify = 0;
		/* the ids first: a callback may unwatch */
		size_t n = 0;
		for (struct imap_backend_watch *w = mb->watches; w != NULL; w = w->next)
			n++;
		uint64_t *ids = xcalloc(n + 1, sizeof(*ids));
		size_t k = 0;
		for (struct imap_backend_watch *w = mb->watches; w != NULL; w = w->next) {
			if (strcmp(w->user, b->user) == 0 && strcmp(w->mailbox, b->name) == 0)
				ids[k++] = w->id;
		}
		for (size_t i = 0; i < k; i++) {
			for (struct imap_backend_watch *w = mb->watches; w != NULL; w = w->next) {
				if (w->id == ids[i]) {
					w->cb(b->highest_modseq, w->arg);
					break;
				}
			}
		}
		free(ids);
	}
}

/* ---- search, sort, thread --------------------------------------------- */

static void mem_search_run(struct mem_op *op)
{
	imap_backend_search_cb *cb = op->cb;
	struct mem_box *b = mem_op_box(op);
	uint32_t *uids;
	size_t n;
	uint64_t highest;
	if (op->mb->failure != MAIL_OK || b == NULL) {
		cb(op->mb->failure != MAIL_OK ? op->mb->failure : MAIL_ERR_NOT_FOUND, NULL, 0, 0,
		   op->arg);
		return;
	}
	if (mem_search_uids(op, b, &uids, &n, &highest) < 0) {
		cb(MAIL_ERR_PARAMS, NULL, 0, 0, op->arg);
		return;
	}
	cb(MAIL_OK, uids, n, highest, op->arg);
	free(uids);
}

void mem_search(void *ctx, const char *user, const char *mailbox, const struct search_key *key,
		imap_backend_search_cb *cb, void *arg)
{
	struct mem_op *op = mem_op_msg(ctx, user, mailbox, cb, arg, mem_search_run);
	op->key = mem_key_copy(key);
	mem_key_record(ctx, key);
	mem_op_start(op);
}

static void mem_sort_run(struct mem_op *op)
{
	imap_backend_sort_cb *cb = op->cb;
	struct mem_box *b = mem_op_box(op);
	uint32_t *uids;
	size_t n;
	if (op->mb->failure != MAIL_OK || b == NULL) {
		cb(op->mb->failure != MAIL_OK ? op->mb->failure : MAIL_ERR_NOT_FOUND, NULL, 0,
		   op->arg);
		return;
	}
	if (mem_search_uids(op, b, &uids, &n, NULL) < 0) {
		cb(MAIL_ERR_PARAMS, NULL, 0, op->arg);
		return;
	}
	struct mailsearch_sort_fields *fields = xcalloc(n + 1, sizeof(*fields));
	for (size_t i = 0; i < n; i++) {
		struct mailsearch_msg sm;
		mem_search_msg(mem_msg_find(b, uids[i]), &sm);
		(void)mailsearch_sort_fields_get(&sm, op->sort, op->n_sort, &fields[i]);
	}
	uint32_t *sorted = xcalloc(n + 1, sizeof(*sorted));
	int r = mailsearch_sort(fields, n, op->sort, op->n_sort, sorted);
	for (size_t i = 0; i < n; i++)
		mailsearch_sort_fields_deinit(&fields[i]);
	free(fields);
	if (r < 0)
		cb(MAIL_ERR_PARAMS, NULL, 0, op->arg);
	else
		cb(MAIL_OK, sorted, n, op->arg);
	free(sorted);
	free(uids);
}

void mem_sort(void *ctx, const char *user, const char *mailbox, const struct search_sort *crit,
	      size_t n_crit, const struct search_key *key, imap_backend_sort_cb *cb, void *arg)
{
	struct mem_op *op = mem_op_msg(ctx, user, mailbox, cb, arg, mem_sort_run);
	op->key = mem_key_copy(key);
	op->sort = xcalloc(n_crit + 1, sizeof(*crit));
	if (n_crit > 0)
		memcpy(op->sort, crit, n_crit * sizeof(*crit));
	op->n_sort = n_crit;
	mem_key_record(ctx, key);
	mem_op_start(op);
}

static void mem_thread_run(struct mem_op *op)
{
	imap_backend_thread_cb *cb = op->cb;
	struct mem_box *b = mem_op_box(op);
	uint32_t *uids;
	size_t n;
	if (op->mb->failure != MAIL_OK || b == NULL) {
		cb(op->mb->failure != MAIL_OK ? op->mb->failure : MAIL_ERR_NOT_FOUND, NULL, op->arg);
		return;
	}
	if (mem_search_uids(op, b, &uids, &n, NULL) < 0) {
		cb(MAIL_ERR_PARAMS, NULL, op->arg);
		return;
	}
	struct mailsearch_thread_msg *msgs = xcalloc(n + 1, sizeof(*msgs));
	for (size_t i = 0; i < n; i++) {
		struct mailsearch_msg sm;
		mem_search_msg(mem_msg_find(b, uids[i]), &sm);
		(void)mailsearch_thread_fields_get(&sm, op->alg, &msgs[i]);
	}
	buf out;
	buf_init(&out);
	int r = mailsearch_thread(op->alg, msgs, n, &out);
	buf_append(&out, "", 1);
	for (size_t i = 0; i < n; i++)
		mailsearch_thread_fields_deinit(&msgs[i]);
	free(msgs);
	if (r < 0)
		cb(MAIL_ERR_PARAMS, NULL, op->arg);
	else
		cb(MAIL_OK, (const char *)out.data, op->arg);
	buf_deinit(&out);
	free(uids);
}

void mem_thread(void *ctx, const char *user, const char *mailbox, enum search_thread_alg alg,
		const struct search_key *key, imap_backend_thread_cb *cb, void *arg)
{
	struct mem_op *op = mem_op_msg(ctx, user, mailbox, cb, arg, mem_thread_run);
	op->key = mem_key_copy(key);
	op->alg = alg;
	mem_key_record(ctx, key);
	mem_op_start(op);
}

/* ---- test knobs ------------------------------------------------------- */

const char *imap_memory_backend_last_search(imap_memory_backend *mb)
{
	return mb->last_search;
}

void imap_memory_backend_forget_expunges(imap_memory_backend *mb)
{
	for (struct mem_box *b = mb->boxes; b != NULL; b = b->next) {
		b->n_expunged = 0;
		b->expunge_log_start = b->highest_modseq;
	}
}

void imap_memory_backend_set_meta_page(imap_memory_backend *mb, size_t n)
{
	mb->meta_page = n;
}
