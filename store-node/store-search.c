/* store-search.c: store-search.h. */
#include "store-search.h"

#include "mail-error.h"
#include "mailsearch.h"
#include "mime.h"
#include "store-structure.h"
#include "xalloc.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- the message view ----------------------------------------------------- */

struct view {
	mailstore *s;
	const char *user;
	const char *mailbox;
	const struct mailstore_meta *meta;
	struct store_structure st;   /* views into meta->structure */
	int have_st;
	uint8_t *header;             /* the message header (heap) */
	size_t header_len;
	uint8_t *body;               /* the whole message (heap) */
	size_t body_len;
	uint64_t *bytes;             /* read so far in this call */
};

static void view_deinit(struct view *v)
{
	free(v->header);
	free(v->body);
	v->header = v->body = NULL;
}

static int view_body(struct view *v)
{
	if (v->body != NULL)
		return 0;
	struct mailstore_message_info mi;
	void *body;
	size_t len;
	int ret = mailstore_fetch(v->s, v->user, v->mailbox, v->meta->info.uid, &mi, &body, &len);
	if (ret != MAIL_OK)
		return -1;
	mailstore_message_info_free(&mi);
	v->body = body;
	v->body_len = len;
	*v->bytes += len;
	return 0;
}

/* The header bytes: a range read of the header alone (its length from the
 * part table), or the body when it was read already. */
static int view_header(struct view *v, const uint8_t **hdr_r, size_t *len_r)
{
	if (v->body != NULL) {
		*hdr_r = v->body;
		*len_r = v->body_len;   /* mime_header_foreach stops at the blank line */
		return 0;
	}
	if (v->header == NULL) {
		struct mime_part_loc root;
		uint32_t path[1] = { 0 };
		uint64_t want = 0;
		if (v->have_st && mime_parts_find(v->st.parts, v->st.parts_len, path, 0, &root) == 1)
			want = root.hdr_off + root.hdr_len;
		if (want == 0) {
			/* no part table: the whole message */
			if (view_body(v) < 0)
				return -1;
			*hdr_r = v->body;
			*len_r = v->body_len;
			return 0;
		}
		struct mailstore_message_info mi;
		void *bytes;
		size_t len;
		uint64_t total;
		if (mailstore_fetch_range(v->s, v->user, v->mailbox, v->meta->info.uid, 0, want, &mi,
					  &bytes, &len, &total) != MAIL_OK)
			return -1;
		mailstore_message_info_free(&mi);
		v->header = bytes;
		v->header_len = len;
		*v->bytes += len;
	}
	*hdr_r = v->header;
	*len_r = v->header_len;
	return 0;
}

struct field_walk {
	const char *name;
	mailsearch_text_cb *cb;
	void *arg;
	buf text;
	buf fname;
};

static int field_cb(const char *name, size_t name_len, const char *value, size_t value_len,
		    void *arg)
{
	struct field_walk *fw = arg;
	if (fw->name != NULL &&
	    (strlen(fw->name) != name_len || strncasecmp(fw->name, name, name_len) != 0))
		return 0;
	buf_reset(&fw->text);
	/* the value without its leading white space, unfolded and decoded */
	while (value_len > 0 && (*value == ' ' || *value == '\t')) {
		value++;
		value_len--;
	}
	mime_header_decode(value, value_len, &fw->text);
	buf_reset(&fw->fname);
	buf_append(&fw->fname, name, name_len);
	buf_append(&fw->fname, "", 1);
	const char *text = fw->text.data != NULL ? (const char *)fw->text.data : "";
	return fw->cb(fw->arg, (const char *)fw->fname.data, text, fw->text.len) == 1 ? 1 : 0;
}

static int view_header_cb(void *ctx, const char *name, mailsearch_text_cb *cb, void *arg)
{
	struct view *v = ctx;
	const uint8_t *hdr;
	size_t len;
	if (view_header(v, &hdr, &len) < 0)
		return -1;
	struct field_walk fw = { .name = name, .cb = cb, .arg = arg };
	buf_init(&fw.text);
	buf_init(&fw.fname);
	(void)mime_header_foreach(hdr, len, field_cb, &fw);
	buf_deinit(&fw.text);
	buf_deinit(&fw.fname);
	return 0;
}

struct text_walk {
	mailsearch_text_cb *cb;
	void *arg;
	int parts;
};

static int text_cb(const char *utf8, size_t len, void *arg)
{
	struct text_walk *tw = arg;
	if (tw->parts++ > 0 && tw->cb(tw->arg, NULL, "\n", 1) == 1)
		return 1;
	return tw->cb(tw->arg, NULL, utf8, len) == 1 ? 1 : 0;
}

static int view_body_cb(void *ctx, mailsearch_text_cb *cb, void *arg)
{
	struct view *v = ctx;
	if (view_body(v) < 0)
		return -1;
	struct text_walk tw = { cb, arg, 0 };
	if (v->have_st) {
		int ret = mime_text_foreach(v->body, v->body_len, v->st.parts, v->st.parts_len,
					    text_cb, &tw);
		return ret < 0 ? -1 : 0;
	}
	/* no part table: the bytes after the header, as they are */
	const uint8_t *p = v->body;
	size_t n = v->body_len, at = 0;
	for (size_t i = 0; i + 1 < n; i++) {
		if (p[i] == '\n' && (p[i + 1] == '\n' || (p[i + 1] == '\r' && i + 2 < n &&
							  p[i + 2] == '\n'))) {
			at = i + (p[i + 1] == '\n' ? 2 : 3);
			break;
		}
	}
	(void)text_cb((const char *)p + at, n - at, &tw);
	return 0;
}

static void view_init(struct view *v, mailstore *s, const char *user, const char *mailbox,
		      const struct mailstore_meta *meta, uint64_t *bytes,
		      struct mailsearch_msg *msg)
{
	memset(v, 0, sizeof *v);
	v->s = s;
	v->user = user;
	v->mailbox = mailbox;
	v->meta = meta;
	v->bytes = bytes;
	v->have_st = meta->structure != NULL &&
		     store_structure_decode(meta->structure, meta->structure_len, &v->st) == 0;
	*msg = (struct mailsearch_msg){
		.uid = meta->info.uid, .size = meta->info.size,
		.internal_date_ms = meta->info.internal_date, .modseq = meta->info.modseq,
		.flags = (const char *const *)meta->info.flags, .n_flags = meta->info.n_flags,
		.ctx = v, .header = view_header_cb, .body_text = view_body_cb,
	};
}

/* ---- walking the mailbox --------------------------------------------------- */

/* The uids a program can only match (its top-level UID key, or one in a
 * top-level AND): the ranges to read, else everything. */
static void key_ranges(const struct search_key *key, const struct search_uid_range **r_r,
		       size_t *n_r)
{
	static const struct search_uid_range all = { 1, UINT32_MAX };
	*r_r = &all;
	*n_r = 1;
	if (key->op == SEARCH_UID && key->n_ranges > 0) {
		*r_r = key->ranges;
		*n_r = key->n_ranges;
		return;
	}
	if (key->op == SEARCH_AND) {
		for (size_t i = 0; i < key->n_children; i++) {
			const struct search_key *c = &key->children[i];
			if (c->op == SEARCH_UID && c->n_ranges > 0) {
				*r_r = c->ranges;
				*n_r = c->n_ranges;
				return;
			}
		}
	}
}

/* Called for each matching message (the view still open): 0 to go on,
 * else an error to stop with. */
typedef int match_fn(const struct mailsearch_msg *msg, void *arg);

/* Evaluate prog on the messages after after_uid until done, or until
 * max_msgs were looked at / max_bytes read (then *next_after_r is the last
 * uid looked at). */
static int walk(mailstore *s, const char *user, const char *mailbox,
		const struct search_key *key, mailsearch_prog *prog, int with_structure,
		int64_t now_ms, uint32_t after_uid, size_t max_msgs, uint64_t max_bytes,
		match_fn *fn, void *arg, uint32_t *next_after_r)
{
	*next_after_r = 0;
	const struct search_uid_range *ranges;
	size_t n_ranges;
	key_ranges(key, &ranges, &n_ranges);
	size_t looked = 0;
	uint64_t bytes = 0;
	uint32_t after = after_uid;
	for (;;) {
		struct mailstore_meta *metas;
		size_t n;
		uint32_t next;
		int ret = mailstore_fetch_meta(s, user, mailbox, ranges, n_ranges, 0, with_structure,
					       after, &metas, &n, &next);
		if (ret != MAIL_OK)
			return ret;
		for (size_t i = 0; i < n && ret == MAIL_OK; i++) {
			struct view v;
			struct mailsearch_msg msg;
			view_init(&v, s, user, mailbox, &metas[i], &bytes, &msg);
			int m = mailsearch_prog_match(prog, &msg, now_ms);
			if (m < 0)
				ret = MAIL_ERR_INTERNAL;
			else if (m == 1)
				ret = fn(&msg, arg);
			view_deinit(&v);
			after = metas[i].info.uid;
			looked++;
			if (ret == MAIL_OK && i + 1 < n && (looked >= max_msgs || bytes >= max_bytes)) {
				/* stop inside the page: the rest comes next call */
				mailstore_metas_free(metas, n);
				*next_after_r = after;
				return MAIL_OK;
			}
		}
		mailstore_metas_free(metas, n);
		if (ret != MAIL_OK)
			return ret;
		if (next == 0)
			return MAIL_OK;
		after = next;
		if (looked >= max_msgs || bytes >= max_bytes) {
			*next_after_r = after;
			return MAIL_OK;
		}
	}
}

/* ---- SEARCH ------------------------------------------------------------------ */

struct search_acc {
	uint32_t *uids;
	size_t n, cap;
	uint64_t highest_modseq;
};

static int search_match(const struct mailsearch_msg *msg, void *arg)
{
	struct search_acc *a = arg;
	if (a->n == a->cap) {
		a->cap = a->cap > 0 ? a->cap * 2 : 64;
		a->uids = xrealloc(a->uids, a->cap * sizeof *a->uids);
	}
	a->uids[a->n++] = msg->uid;
	if (msg->modseq > a->highest_modseq)
		a->highest_modseq = msg->modseq;
	return MAIL_OK;
}

int store_search_page(mailstore *s, const char *user, const char *mailbox,
		      const struct search_key *key, uint32_t after_uid, int64_t now_ms,
		      uint32_t **uids_r, size_t *n_r, uint64_t *highest_modseq_r,
		      uint32_t *next_after_r)
{
	*uids_r = NULL;
	*n_r = 0;
	*highest_modseq_r = 0;
	*next_after_r = 0;
	mailsearch_prog *prog;
	const char *error;
	if (mailsearch_prog_create(key, &prog, &error) < 0)
		return MAIL_ERR_PARAMS;
	struct search_acc a = { 0 };
	int ret = walk(s, user, mailbox, key, prog, mailsearch_prog_needs(prog) != 0, now_ms,
		       after_uid, STORE_SEARCH_PAGE_MESSAGES, STORE_SEARCH_PAGE_BYTES, search_match,
		       &a, next_after_r);
	mailsearch_prog_destroy(&prog);
	if (ret != MAIL_OK) {
		free(a.uids);
		*next_after_r = 0;
		return ret;
	}
	*uids_r = a.uids;
	*n_r = a.n;
	*highest_modseq_r = a.highest_modseq;
	return MAIL_OK;
}

/* ---- SORT ---------------------------------------------------------------------- */

struct sort_acc {
	const struct search_sort *crit;
	size_t n_crit;
	struct mailsearch_sort_fields *f;
	size_t n, cap;
};

static int sort_match(const struct mailsearch_msg *msg, void *arg)
{
	struct sort_acc *a = arg;
	if (a->n == STORE_SORT_MAX)
		return MAIL_ERR_LIMIT;
	if (a->n == a->cap) {
		a->cap = a->cap > 0 ? a->cap * 2 : 64;
		a->f = xrealloc(a->f, a->cap * sizeof *a->f);
	}
	if (mailsearch_sort_fields_get(msg, a->crit, a->n_crit, &a->f[a->n]) < 0) {
		mailsearch_sort_fields_deinit(&a->f[a->n]);
		return MAIL_ERR_INTERNAL;
	}
	a->n++;
	return MAIL_OK;
}

int store_sort(mailstore *s, const char *user, const char *mailbox,
	       const struct search_sort *crit, size_t n_crit, const struct search_key *key,
	       int64_t now_ms, uint32_t **uids_r, size_t *n_r)
{
	*uids_r = NULL;
	*n_r = 0;
	if (n_crit == 0)
		return MAIL_ERR_PARAMS;
	mailsearch_prog *prog;
	const char *error;
	if (mailsearch_prog_create(key, &prog, &error) < 0)
		return MAIL_ERR_PARAMS;
	struct sort_acc a = { .crit = crit, .n_crit = n_crit };
	uint32_t next;
	int ret = walk(s, user, mailbox, key, prog, 1, now_ms, 0, SIZE_MAX, UINT64_MAX, sort_match,
		       &a, &next);
	mailsearch_prog_destroy(&prog);
	uint32_t *uids = NULL;
	if (ret == MAIL_OK && a.n > 0) {
		uids = xcalloc(a.n, sizeof *uids);
		if (mailsearch_sort(a.f, a.n, crit, n_crit, uids) < 0)
			ret = MAIL_ERR_PARAMS;
	}
	for (size_t i = 0; i < a.n; i++)
		mailsearch_sort_fields_deinit(&a.f[i]);
	free(a.f);
	if (ret != MAIL_OK) {
		free(uids);
		return ret;
	}
	*uids_r = uids;
	*n_r = a.n;
	return MAIL_OK;
}

/* ---- THREAD -------------------------------------------------------------------- */

struct thread_acc {
	enum search_thread_alg alg;
	struct mailsearch_thread_msg *t;
	size_t n, cap;
};

static int thread_match(const struct mailsearch_msg *msg, void *arg)
{
	struct thread_acc *a = arg;
	if (a->n == STORE_SORT_MAX)
		return MAIL_ERR_LIMIT;
	if (a->n == a->cap) {
		a->cap = a->cap > 0 ? a->cap * 2 : 64;
		a->t = xrealloc(a->t, a->cap * sizeof *a->t);
	}
	if (mailsearch_thread_fields_get(msg, a->alg, &a->t[a->n]) < 0) {
		mailsearch_thread_fields_deinit(&a->t[a->n]);
		return MAIL_ERR_INTERNAL;
	}
	a->n++;
	return MAIL_OK;
}

int store_thread(mailstore *s, const char *user, const char *mailbox,
		 enum search_thread_alg alg, const struct search_key *key, int64_t now_ms,
		 buf *out)
{
	if (alg != SEARCH_THREAD_ORDEREDSUBJECT && alg != SEARCH_THREAD_REFERENCES)
		return MAIL_ERR_PARAMS;
	mailsearch_prog *prog;
	const char *error;
	if (mailsearch_prog_create(key, &prog, &error) < 0)
		return MAIL_ERR_PARAMS;
	struct thread_acc a = { .alg = alg };
	uint32_t next;
	int ret = walk(s, user, mailbox, key, prog, 1, now_ms, 0, SIZE_MAX, UINT64_MAX,
		       thread_match, &a, &next);
	mailsearch_prog_destroy(&prog);
	if (ret == MAIL_OK && mailsearch_thread(alg, a.t, a.n, out) < 0)
		ret = MAIL_ERR_INTERNAL;
	for (size_t i = 0; i < a.n; i++)
		mailsearch_thread_fields_deinit(&a.t[i]);
	free(a.t);
	return ret;
}
