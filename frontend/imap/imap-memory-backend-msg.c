/* imap-memory-backend-msg.c: the memory backend's calls of issue 9 (see
 * imap-backend.h): open, fetch_meta, fetch_range, copy, changes,
 * watch/unwatch, search, sort, thread. Tests only: every call is a
 * linear scan, SEARCH matches raw bytes (no MIME decoding) and THREAD
 * groups by subject only; the store node's own implementations
 * (store-node/mailsearch.h, lib/mime) are what users get. */
#include "imap-memory-backend-private.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "buf.h"
#include "mail-error.h"
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

/* Case-insensitive substring (ASCII), in len bytes. */
static int mem_contains(const uint8_t *hay, size_t len, const char *needle)
{
	size_t n = strlen(needle);
	if (n == 0)
		return 1;
	for (size_t i = 0; i + n <= len; i++) {
		if (strncasecmp((const char *)hay + i, needle, n) == 0)
			return 1;
	}
	return 0;
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

/* The raw value of header field name (first one, unfolded lines kept), in
 * a static-free heap string, or NULL. */
static char *mem_header_get(const struct mem_msg *m, const char *name)
{
	size_t hl = mem_header_len(m), n = strlen(name), pos = 0;
	while (pos < hl) {
		const uint8_t *line = m->body + pos;
		const uint8_t *nl = memchr(line, '\n', hl - pos);
		size_t end = nl != NULL ? (size_t)(nl - m->body) + 1 : hl;
		if (end - pos > n && strncasecmp((const char *)line, name, n) == 0 && line[n] == ':') {
			size_t vstart = pos + n + 1, vend = end;
			while (vend < hl && (m->body[vend] == ' ' || m->body[vend] == '\t')) {
				const uint8_t *nl2 = memchr(m->body + vend, '\n', hl - vend);
				vend = nl2 != NULL ? (size_t)(nl2 - m->body) + 1 : hl;
			}
			while (vstart < vend && isspace(m->body[vstart]))
				vstart++;
			while (vend > vstart && isspace(m->body[vend - 1]))
				vend--;
			char *v = xmalloc(vend - vstart + 1);
			memcpy(v, m->body + vstart, vend - vstart);
			v[vend - vstart] = '\0';
			return v;
		}
		pos = end;
	}
	return NULL;
}

static int mem_key_match(const struct search_key *k, const struct mem_msg *m)
{
	int64_t day = m->date >= 0 ? m->date / 86400000 : (m->date - 86399999) / 86400000;
	int64_t age = (int64_t)time(NULL) - m->date / 1000;
	switch (k->op) {
	case SEARCH_ALL:
		return 1;
	case SEARCH_NONE:
		return 0;
	case SEARCH_AND:
		for (size_t i = 0; i < k->n_children; i++) {
			if (!mem_key_match(&k->children[i], m))
				return 0;
		}
		return 1;
	case SEARCH_OR:
		for (size_t i = 0; i < k->n_children; i++) {
			if (mem_key_match(&k->children[i], m))
				return 1;
		}
		return 0;
	case SEARCH_NOT:
		return !mem_key_match(&k->children[0], m);
	case SEARCH_UID:
		return mem_in_ranges(k->ranges, k->n_ranges, m->uid);
	case SEARCH_FLAG:
		return mem_msg_flag_index(m, k->str) >= 0;
	case SEARCH_HEADER: {
		char *v = mem_header_get(m, k->str);
		int r = v != NULL && mem_contains((const uint8_t *)v, strlen(v), k->str2);
		free(v);
		return r;
	}
	case SEARCH_BODY: {
		size_t hl = mem_header_len(m);
		return mem_contains(m->body + hl, m->len - hl, k->str);
	}
	case SEARCH_TEXT:
		return mem_contains(m->body, m->len, k->str);
	case SEARCH_BEFORE:
	case SEARCH_SENTBEFORE:
		return day < (int64_t)k->num;
	case SEARCH_ON:
	case SEARCH_SENTON:
		return day == (int64_t)k->num;
	case SEARCH_SINCE:
	case SEARCH_SENTSINCE:
		return day >= (int64_t)k->num;
	case SEARCH_LARGER:
		return m->len > k->num;
	case SEARCH_SMALLER:
		return m->len < k->num;
	case SEARCH_MODSEQ:
		return m->modseq >= k->num;
	case SEARCH_OLDER:
		return age > (int64_t)k->num;
	case SEARCH_YOUNGER:
		return age <= (int64_t)k->num;
	}
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
	if (op->mb->failure != MAIL_OK || b == NULL) {
		cb(op->mb->failure != MAIL_OK ? op->mb->failure : MAIL_ERR_NOT_FOUND, NULL, 0, 0,
		   op->arg);
		return;
	}
	uint32_t *uids = xcalloc(b->n_msgs + 1, sizeof(*uids));
	size_t n = 0;
	uint64_t highest = 0;
	for (size_t i = 0; i < b->n_msgs; i++) {
		if (mem_key_match(&op->key->key, &b->msgs[i])) {
			uids[n++] = b->msgs[i].uid;
			if (b->msgs[i].modseq > highest)
				highest = b->msgs[i].modseq;
		}
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

struct mem_sort_item {
	const struct mem_msg *m;
	const struct mem_op *op;
};

static int mem_sort_cmp(const void *a, const void *b)
{
	const struct mem_sort_item *x = a, *y = b;
	for (size_t i = 0; i < x->op->n_sort; i++) {
		const struct search_sort *c = &x->op->sort[i];
		int r = 0;
		const char *field = NULL;
		switch (c->key) {
		case SEARCH_SORT_ARRIVAL:
		case SEARCH_SORT_DATE:
			r = x->m->date < y->m->date ? -1 : x->m->date > y->m->date;
			break;
		case SEARCH_SORT_SIZE:
			r = x->m->len < y->m->len ? -1 : x->m->len > y->m->len;
			break;
		case SEARCH_SORT_SUBJECT:
			field = "Subject";
			break;
		case SEARCH_SORT_FROM:
		case SEARCH_SORT_DISPLAYFROM:
			field = "From";
			break;
		case SEARCH_SORT_TO:
		case SEARCH_SORT_DISPLAYTO:
			field = "To";
			break;
		case SEARCH_SORT_CC:
			field = "Cc";
			break;
		}
		if (field != NULL) {
			char *vx = mem_header_get(x->m, field), *vy = mem_header_get(y->m, field);
			r = strcasecmp(vx != NULL ? vx : "", vy != NULL ? vy : "");
			free(vx);
			free(vy);
		}
		if (r != 0)
			return c->reverse ? -r : r;
	}
	return x->m->uid < y->m->uid ? -1 : x->m->uid > y->m->uid;
}

static void mem_sort_run(struct mem_op *op)
{
	imap_backend_sort_cb *cb = op->cb;
	struct mem_box *b = mem_op_box(op);
	if (op->mb->failure != MAIL_OK || b == NULL) {
		cb(op->mb->failure != MAIL_OK ? op->mb->failure : MAIL_ERR_NOT_FOUND, NULL, 0,
		   op->arg);
		return;
	}
	struct mem_sort_item *items = xcalloc(b->n_msgs + 1, sizeof(*items));
	size_t n = 0;
	for (size_t i = 0; i < b->n_msgs; i++) {
		if (mem_key_match(&op->key->key, &b->msgs[i]))
			items[n++] = (struct mem_sort_item){ &b->msgs[i], op };
	}
	qsort(items, n, sizeof(*items), mem_sort_cmp);
	uint32_t *uids = xcalloc(n + 1, sizeof(*uids));
	for (size_t i = 0; i < n; i++)
		uids[i] = items[i].m->uid;
	cb(MAIL_OK, uids, n, op->arg);
	free(uids);
	free(items);
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

/* Threads by subject ("Re: " prefixes dropped), in uid order. */
static void mem_thread_run(struct mem_op *op)
{
	imap_backend_thread_cb *cb = op->cb;
	struct mem_box *b = mem_op_box(op);
	if (op->mb->failure != MAIL_OK || b == NULL) {
		cb(op->mb->failure != MAIL_OK ? op->mb->failure : MAIL_ERR_NOT_FOUND, NULL, op->arg);
		return;
	}
	size_t n = 0;
	char **subj = xcalloc(b->n_msgs + 1, sizeof(*subj));
	const struct mem_msg **msgs = xcalloc(b->n_msgs + 1, sizeof(*msgs));
	for (size_t i = 0; i < b->n_msgs; i++) {
		if (!mem_key_match(&op->key->key, &b->msgs[i]))
			continue;
		char *v = mem_header_get(&b->msgs[i], "Subject");
		const char *p = v != NULL ? v : "";
		while (strncasecmp(p, "Re:", 3) == 0 || strncasecmp(p, "Fwd:", 4) == 0) {
			p += p[2] == ':' ? 3 : 4;
			while (*p == ' ')
				p++;
		}
		subj[n] = xstrdup(p);
		msgs[n++] = &b->msgs[i];
		free(v);
	}
	buf out;
	buf_init(&out);
	int *done = xcalloc(n + 1, sizeof(*done));
	for (size_t i = 0; i < n; i++) {
		if (done[i])
			continue;
		size_t group[64] = { 0 }, k = 0;
		for (size_t j = i; j < n && k < 64; j++) {
			if (!done[j] && strcasecmp(subj[i], subj[j]) == 0) {
				group[k++] = j;
				done[j] = 1;
			}
		}
		buf_printf(&out, "(%u", msgs[group[0]]->uid);
		if (k == 2)
			buf_printf(&out, " %u", msgs[group[1]]->uid);
		else
			for (size_t j = 1; j < k; j++)
				buf_printf(&out, "%s(%u)", j == 1 ? " " : "", msgs[group[j]]->uid);
		buf_append(&out, ")", 1);
	}
	buf_append(&out, "", 1);
	cb(MAIL_OK, (const char *)out.data, op->arg);
	buf_deinit(&out);
	for (size_t i = 0; i < n; i++)
		free(subj[i]);
	free(subj);
	free(msgs);
	free(done);
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
