/* mailstore-sync.c: reading a mailbox in pages (issue 9): the uids of
 * SELECT, fetch_meta, a range of a body, and what changed since a MODSEQ
 * (RFC 7162). Every page is a short scan under the store lock: at most
 * limits.page_scan_keys keys visited. */
#include "mailstore-private.h"

#include "mail-error.h"
#include "store-structure.h"
#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

/* ---- uid ranges ------------------------------------------------------------ */

struct ranges {
	struct search_uid_range *r;
	size_t n, cap;
};

static void ranges_add(struct ranges *rs, uint32_t first, uint32_t last)
{
	if (rs->n > 0 && rs->r[rs->n - 1].last != UINT32_MAX &&
	    rs->r[rs->n - 1].last + 1 == first) {
		rs->r[rs->n - 1].last = last;
		return;
	}
	if (rs->n == rs->cap) {
		rs->cap = rs->cap > 0 ? rs->cap * 2 : 8;
		rs->r = xrealloc(rs->r, rs->cap * sizeof *rs->r);
	}
	rs->r[rs->n++] = (struct search_uid_range){ first, last };
}

/* ranges: ascending, disjoint, 1 <= first <= last. */
static int ranges_valid(const struct search_uid_range *r, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (r[i].first == 0 || r[i].first > r[i].last)
			return 0;
		if (i > 0 && r[i].first <= r[i - 1].last)
			return 0;
	}
	return 1;
}

static int ranges_contain(const struct search_uid_range *r, size_t n, uint32_t uid)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (uid < r[mid].first)
			hi = mid;
		else if (uid > r[mid].last)
			lo = mid + 1;
		else
			return 1;
	}
	return 0;
}

static int u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* The uid of an 'I', 'W' key whose prefix (01 kind <user> 00 <mbox>) is
 * plen bytes: 0 when key is not one of them. */
static uint32_t key_uid(const char *key, size_t klen, const buf *prefix)
{
	if (klen != prefix->len + 4 || memcmp(key, prefix->data, prefix->len) != 0)
		return 0;
	return get_u32((const uint8_t *)key + prefix->len);
}

/* ---- SELECT's uids ------------------------------------------------------------ */

static int first_unseen(mailstore *s, const char *user, const struct mbox *m, uint32_t *uid_r)
{
	*uid_r = 0;
	buf prefix;
	buf_init(&prefix);
	key_mbox_prefix(&prefix, KIND_UNSEEN, user, m->id);
	buf k;
	buf_init(&k);
	key_message(&k, KIND_UNSEEN, user, m->id, m->uid_floor);
	leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ropts);
	leveldb_iter_seek(it, (const char *)k.data, k.len);
	buf_deinit(&k);
	if (leveldb_iter_valid(it)) {
		size_t klen;
		const char *key = leveldb_iter_key(it, &klen);
		*uid_r = key_uid(key, klen, &prefix);
	}
	buf_deinit(&prefix);
	return mailstore__db_iter_close(it);
}

static int uids_locked(mailstore *s, const char *user, const char *name, uint32_t after_uid,
		       uint32_t below_uid, struct ranges *rs, uint32_t *next_after_r,
		       uint32_t *first_unseen_r, struct mailstore_mailbox_info *info_r)
{
	struct mbox m = { 0 };
	int ret = mailstore__mbox_open(s, user, name, &m);
	if (ret != MAIL_OK)
		return ret;
	if (after_uid == 0) {
		ret = first_unseen(s, user, &m, first_unseen_r);
		mailstore__mbox_info_fill(info_r, name, &m);
		info_r->keywords = m.keywords;
		info_r->n_keywords = m.n_keywords;
		m.keywords = NULL;
		m.n_keywords = 0;
	}
	buf prefix, k;
	buf_init(&prefix);
	buf_init(&k);
	key_mbox_prefix(&prefix, KIND_META, user, m.id);
	key_message(&k, KIND_META, user, m.id, mbox_seek_uid(&m, after_uid + 1));
	size_t visited = 0;
	uint32_t last = 0;
	leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ropts);
	for (leveldb_iter_seek(it, (const char *)k.data, k.len);
	     ret == MAIL_OK && leveldb_iter_valid(it); leveldb_iter_next(it)) {
		size_t klen;
		const char *key = leveldb_iter_key(it, &klen);
		uint32_t uid = key_uid(key, klen, &prefix);
		if (uid == 0 || (below_uid != 0 && uid >= below_uid)) {
			last = 0;
			break;
		}
		if (visited == s->limits.page_scan_keys)
			break;   /* last stays the last uid taken: more follow */
		ranges_add(rs, uid, uid);
		visited++;
		last = uid;
	}
	if (!leveldb_iter_valid(it))
		last = 0;
	if (mailstore__db_iter_close(it) != MAIL_OK)
		ret = MAIL_ERR_INTERNAL;
	*next_after_r = last;
	buf_deinit(&prefix);
	buf_deinit(&k);
	mailstore__mbox_deinit(&m);
	return ret;
}

int mailstore_uids(mailstore *s, const char *user, const char *mailbox, uint32_t after_uid,
		   uint32_t below_uid, struct search_uid_range **ranges_r, size_t *n_r,
		   uint32_t *next_after_r, uint32_t *first_unseen_r,
		   struct mailstore_mailbox_info *info_r)
{
	*ranges_r = NULL;
	*n_r = 0;
	*next_after_r = 0;
	*first_unseen_r = 0;
	memset(info_r, 0, sizeof *info_r);
	buf tmp;
	buf_init(&tmp);
	const char *name = mailstore__mailbox_name(s, mailbox, &tmp);
	int ret = MAIL_ERR_PARAMS;
	if (mailstore__user_valid(s, user) && name != NULL && after_uid != UINT32_MAX) {
		struct ranges rs = { 0 };
		pthread_mutex_lock(&s->lock);
		ret = uids_locked(s, user, name, after_uid, below_uid, &rs, next_after_r,
				  first_unseen_r, info_r);
		mailstore__unlock(s);
		if (ret == MAIL_OK) {
			*ranges_r = rs.r;
			*n_r = rs.n;
		} else {
			free(rs.r);
			mailstore_mailbox_info_free(info_r);
			*next_after_r = 0;
		}
	}
	buf_deinit(&tmp);
	return ret;
}

/* ---- fetch_meta ------------------------------------------------------------------ */

void mailstore_metas_free(struct mailstore_meta *msgs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		mailstore_message_info_free(&msgs[i].info);
		free(msgs[i].structure);
		free(msgs[i].content);
	}
	free(msgs);
}

struct metas {
	struct mailstore_meta *m;
	size_t n, cap;
	uint64_t bytes;
};

/* The structure record of a message into *st_r (heap): stored, or computed
 * from the body of a message older than the records. */
static int structure_get(mailstore *s, const char *user, uint64_t mbox_id, uint32_t uid,
			 uint8_t **st_r, size_t *len_r)
{
	buf k;
	buf_init(&k);
	key_message(&k, KIND_STRUCTURE, user, mbox_id, uid);
	char *val;
	size_t len;
	int got = mailstore__db_get(s, &k, &val, &len);
	buf_deinit(&k);
	if (got < 0)
		return MAIL_ERR_INTERNAL;
	if (got == 1) {
		*st_r = xmalloc(len > 0 ? len : 1);
		memcpy(*st_r, val, len);
		*len_r = len;
		leveldb_free(val);
		return MAIL_OK;
	}
	void *body;
	size_t blen;
	int ret = mailstore__body_get(s, user, mbox_id, uid, &body, &blen);
	if (ret != MAIL_OK)
		return ret;
	buf out;
	buf_init(&out);
	store_structure_compute(body, blen, &out);
	free(body);
	*st_r = buf_steal(&out, len_r);
	return MAIL_OK;
}

/* Add mi (taken) to ms, with its structure when asked. */
static int metas_add(mailstore *s, const char *user, uint64_t mbox_id, struct metas *ms,
		     struct mailstore_message_info *mi, int with_structure)
{
	if (ms->n == ms->cap) {
		ms->cap = ms->cap > 0 ? ms->cap * 2 : 16;
		ms->m = xrealloc(ms->m, ms->cap * sizeof *ms->m);
	}
	struct mailstore_meta *out = &ms->m[ms->n];
	memset(out, 0, sizeof *out);
	if (with_structure) {
		int ret = structure_get(s, user, mbox_id, mi->uid, &out->structure,
					&out->structure_len);
		if (ret != MAIL_OK) {
			mailstore_message_info_free(mi);
			return ret;
		}
	}
	out->info = *mi;
	ms->n++;
	ms->bytes += 64 + out->structure_len;
	for (size_t i = 0; i < mi->n_flags; i++)
		ms->bytes += strlen(mi->flags[i]) + 2;
	return MAIL_OK;
}

/* CHANGEDSINCE through the modseq index: when no more than a page of
 * messages changed after changed_since, all of them in one page (*done_r =
 * 1); else nothing (*done_r = 0: scan instead). */
static int meta_by_modseq(mailstore *s, const char *user, const struct mbox *m,
			  const struct search_uid_range *ranges, size_t n_ranges,
			  uint64_t changed_since, int with_structure, struct metas *ms,
			  int *done_r)
{
	*done_r = 0;
	size_t max = s->limits.page_max_messages;
	uint32_t *uids = xmalloc((max + 1) * sizeof *uids);
	size_t n = 0;
	buf prefix, k;
	buf_init(&prefix);
	buf_init(&k);
	key_mbox_prefix(&prefix, KIND_MODSEQ, user, m->id);
	key_modseq(&k, KIND_MODSEQ, user, m->id, changed_since + 1, 0);
	int ret;
	leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ropts);
	for (leveldb_iter_seek(it, (const char *)k.data, k.len); leveldb_iter_valid(it);
	     leveldb_iter_next(it)) {
		size_t klen;
		const char *key = leveldb_iter_key(it, &klen);
		if (klen != prefix.len + 12 || memcmp(key, prefix.data, prefix.len) != 0)
			break;
		if (n == max + 1)
			break;
		uids[n++] = get_u32((const uint8_t *)key + prefix.len + 8);
	}
	ret = mailstore__db_iter_close(it);
	if (ret == MAIL_OK && n <= max) {
		*done_r = 1;
		qsort(uids, n, sizeof *uids, u32_cmp);
		for (size_t i = 0; i < n && ret == MAIL_OK; i++) {
			if (!ranges_contain(ranges, n_ranges, uids[i]))
				continue;
			struct mailstore_message_info mi;
			ret = mailstore__meta_get(s, user, m, uids[i], &mi);
			if (ret == MAIL_ERR_NOT_FOUND) {
				ret = MAIL_OK;   /* the index is in the same batch: never */
				continue;
			}
			if (ret == MAIL_OK && mi.modseq > changed_since)
				ret = metas_add(s, user, m->id, ms, &mi, with_structure);
			else if (ret == MAIL_OK)
				mailstore_message_info_free(&mi);
		}
	}
	free(uids);
	buf_deinit(&prefix);
	buf_deinit(&k);
	return ret;
}

static int meta_scan_page(mailstore *s, const char *user, const struct mbox *m,
			  const struct search_uid_range *ranges, size_t n_ranges,
			  uint64_t changed_since, int with_structure, uint32_t after_uid,
			  struct metas *ms, uint32_t *next_after_r)
{
	*next_after_r = 0;
	buf prefix, k;
	buf_init(&prefix);
	buf_init(&k);
	key_mbox_prefix(&prefix, KIND_META, user, m->id);
	size_t visited = 0;
	int ret = MAIL_OK;
	int full = 0;
	leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ropts);
	for (size_t r = 0; r < n_ranges && !full && ret == MAIL_OK; r++) {
		if (ranges[r].last <= after_uid)
			continue;
		uint32_t from = ranges[r].first > after_uid ? ranges[r].first : after_uid + 1;
		key_message(&k, KIND_META, user, m->id, mbox_seek_uid(m, from));
		for (leveldb_iter_seek(it, (const char *)k.data, k.len); leveldb_iter_valid(it);
		     leveldb_iter_next(it)) {
			size_t klen, vlen;
			const char *key = leveldb_iter_key(it, &klen);
			uint32_t uid = key_uid(key, klen, &prefix);
			if (uid == 0 || uid > ranges[r].last)
				break;
			if (visited == s->limits.page_scan_keys || ms->n == s->limits.page_max_messages ||
			    ms->bytes >= s->limits.page_max_bytes) {
				full = 1;
				break;
			}
			visited++;
			*next_after_r = uid;
			const char *val = leveldb_iter_value(it, &vlen);
			struct mailstore_message_info mi;
			if (mailstore__meta_decode((const uint8_t *)val, vlen, uid, &mi) < 0) {
				mailstore__log_corrupt("message", user);
				ret = MAIL_ERR_INTERNAL;
				break;
			}
			if (mi.modseq > changed_since)
				ret = metas_add(s, user, m->id, ms, &mi, with_structure);
			else
				mailstore_message_info_free(&mi);
			if (ret != MAIL_OK)
				break;
		}
	}
	if (mailstore__db_iter_close(it) != MAIL_OK)
		ret = MAIL_ERR_INTERNAL;
	if (!full)
		*next_after_r = 0;
	buf_deinit(&prefix);
	buf_deinit(&k);
	return ret;
}

int mailstore_fetch_meta(mailstore *s, const char *user, const char *mailbox,
			 const struct search_uid_range *ranges, size_t n_ranges,
			 uint64_t changed_since, int with_structure, uint32_t after_uid,
			 struct mailstore_meta **msgs_r, size_t *n_r, uint32_t *next_after_r)
{
	*msgs_r = NULL;
	*n_r = 0;
	*next_after_r = 0;
	buf tmp;
	buf_init(&tmp);
	const char *name = mailstore__mailbox_name(s, mailbox, &tmp);
	int ret = MAIL_ERR_PARAMS;
	struct metas ms = { 0 };
	if (mailstore__user_valid(s, user) && name != NULL && ranges_valid(ranges, n_ranges)) {
		pthread_mutex_lock(&s->lock);
		struct mbox m = { 0 };
		ret = mailstore__mbox_get(s, user, name, &m);
		int done = 0;
		if (ret == MAIL_OK && changed_since > 0 && after_uid == 0)
			ret = meta_by_modseq(s, user, &m, ranges, n_ranges, changed_since,
					     with_structure, &ms, &done);
		if (ret == MAIL_OK && !done)
			ret = meta_scan_page(s, user, &m, ranges, n_ranges, changed_since,
					     with_structure, after_uid, &ms, next_after_r);
		mailstore__mbox_deinit(&m);
		pthread_mutex_unlock(&s->lock);
	}
	if (ret == MAIL_OK) {
		*msgs_r = ms.m;
		*n_r = ms.n;
	} else {
		mailstore_metas_free(ms.m, ms.n);
		*next_after_r = 0;
	}
	buf_deinit(&tmp);
	return ret;
}

int mailstore_fetch_meta_content(mailstore *s, const char *user, const char *mailbox,
				 struct mailstore_meta *msgs, size_t n, uint64_t budget)
{
	buf tmp;
	buf_init(&tmp);
	const char *name = mailstore__mailbox_name(s, mailbox, &tmp);
	int ret = MAIL_ERR_PARAMS;
	if (mailstore__user_valid(s, user) && name != NULL) {
		pthread_mutex_lock(&s->lock);
		struct mbox m = { 0 };
		ret = mailstore__mbox_get(s, user, name, &m);
		for (size_t i = 0; ret == MAIL_OK && i < n; i++) {
			if (msgs[i].content != NULL || msgs[i].info.size > budget)
				continue;
			void *body;
			size_t len;
			if (mailstore__body_get(s, user, m.id, msgs[i].info.uid, &body, &len) !=
			    MAIL_OK)
				continue;   /* expunged since, or unreadable (logged) */
			if (len != msgs[i].info.size) {
				free(body);   /* not the message the meta names */
				continue;
			}
			msgs[i].content = body;
			msgs[i].content_len = len;
			budget -= len;
		}
		mailstore__mbox_deinit(&m);
		pthread_mutex_unlock(&s->lock);
	}
	buf_deinit(&tmp);
	return ret;
}

/* ---- a range of a body -------------------------------------------------------------- */

int mailstore_fetch_range(mailstore *s, const char *user, const char *mailbox, uint32_t uid,
			  uint64_t offset, uint64_t length, struct mailstore_message_info *info_r,
			  void **body_r, size_t *len_r, uint64_t *total_r)
{
	*total_r = 0;
	void *body;
	size_t len;
	int ret = mailstore_fetch(s, user, mailbox, uid, info_r, &body, &len);
	if (ret != MAIL_OK) {
		*body_r = NULL;
		*len_r = 0;
		return ret;
	}
	*total_r = len;
	uint64_t from = offset < len ? offset : len;
	uint64_t n = len - from;
	if (length > 0 && length < n)
		n = length;
	if (from > 0 && n > 0)
		memmove(body, (uint8_t *)body + from, (size_t)n);
	*body_r = body;
	*len_r = (size_t)n;
	return MAIL_OK;
}

/* ---- changes since a MODSEQ ------------------------------------------------------------ */

void mailstore_changes_free(struct mailstore_changes *c)
{
	free(c->added);
	free(c->expunged);
	mailstore_message_infos_free(c->changed, c->n_changed);
	memset(c, 0, sizeof *c);
}

/* The first 'N' or 'T' key after (modseq, uid) in m: its seek key. */
static void key_after(buf *k, char kind, const char *user, uint64_t mbox_id, uint64_t modseq,
		      uint32_t uid)
{
	if (uid == UINT32_MAX)
		key_modseq(k, kind, user, mbox_id, modseq + 1, 0);
	else
		key_modseq(k, kind, user, mbox_id, modseq, uid + 1);
}

struct changes_walk {
	mailstore *s;
	const char *user;
	const struct mbox *m;
	uint64_t since;
	uint32_t known_uidnext;
	struct mailstore_changes_cursor *cur;
	size_t budget;   /* keys left to visit */
	struct mailstore_message_info *changed;
	size_t n_changed, cap_changed;
	uint32_t *tomb_uids;
	size_t n_tomb, cap_tomb;
	struct ranges expunged;
	struct ranges added;
};

/* Phase 1: the modseq index after since. 1 when the phase is over. */
static int walk_changed(struct changes_walk *w, int *over_r)
{
	*over_r = 0;
	buf prefix, k;
	buf_init(&prefix);
	buf_init(&k);
	key_mbox_prefix(&prefix, KIND_MODSEQ, w->user, w->m->id);
	key_after(&k, KIND_MODSEQ, w->user, w->m->id, w->cur->after_modseq, w->cur->after_uid);
	int ret = MAIL_OK;
	*over_r = 1;
	leveldb_iterator_t *it = leveldb_create_iterator(w->s->db, w->s->ropts);
	for (leveldb_iter_seek(it, (const char *)k.data, k.len); leveldb_iter_valid(it);
	     leveldb_iter_next(it)) {
		size_t klen;
		const char *key = leveldb_iter_key(it, &klen);
		if (klen != prefix.len + 12 || memcmp(key, prefix.data, prefix.len) != 0)
			break;
		if (w->budget == 0) {
			*over_r = 0;
			break;
		}
		w->budget--;
		uint64_t modseq = get_u64((const uint8_t *)key + prefix.len);
		uint32_t uid = get_u32((const uint8_t *)key + prefix.len + 8);
		w->cur->after_modseq = modseq;
		w->cur->after_uid = uid;
		if (uid >= w->known_uidnext)
			continue;
		struct mailstore_message_info mi;
		ret = mailstore__meta_get(w->s, w->user, w->m, uid, &mi);
		if (ret == MAIL_ERR_NOT_FOUND) {
			ret = MAIL_OK;
			continue;
		}
		if (ret != MAIL_OK)
			break;
		if (w->n_changed == w->cap_changed) {
			w->cap_changed = w->cap_changed > 0 ? w->cap_changed * 2 : 16;
			w->changed = xrealloc(w->changed, w->cap_changed * sizeof *w->changed);
		}
		w->changed[w->n_changed++] = mi;
	}
	if (mailstore__db_iter_close(it) != MAIL_OK)
		ret = MAIL_ERR_INTERNAL;
	buf_deinit(&prefix);
	buf_deinit(&k);
	return ret;
}

/* Phase 2, exact: the tombstones after since. */
static int walk_tombstones(struct changes_walk *w, int *over_r)
{
	buf prefix, k;
	buf_init(&prefix);
	buf_init(&k);
	key_mbox_prefix(&prefix, KIND_TOMBSTONE, w->user, w->m->id);
	key_after(&k, KIND_TOMBSTONE, w->user, w->m->id, w->cur->after_modseq, w->cur->after_uid);
	*over_r = 1;
	leveldb_iterator_t *it = leveldb_create_iterator(w->s->db, w->s->ropts);
	for (leveldb_iter_seek(it, (const char *)k.data, k.len); leveldb_iter_valid(it);
	     leveldb_iter_next(it)) {
		size_t klen;
		const char *key = leveldb_iter_key(it, &klen);
		if (klen != prefix.len + 12 || memcmp(key, prefix.data, prefix.len) != 0)
			break;
		if (w->budget == 0) {
			*over_r = 0;
			break;
		}
		w->budget--;
		uint32_t uid = get_u32((const uint8_t *)key + prefix.len + 8);
		w->cur->after_modseq = get_u64((const uint8_t *)key + prefix.len);
		w->cur->after_uid = uid;
		if (uid >= w->known_uidnext)
			continue;
		if (w->n_tomb == w->cap_tomb) {
			w->cap_tomb = w->cap_tomb > 0 ? w->cap_tomb * 2 : 16;
			w->tomb_uids = xrealloc(w->tomb_uids, w->cap_tomb * sizeof *w->tomb_uids);
		}
		w->tomb_uids[w->n_tomb++] = uid;
	}
	int ret = mailstore__db_iter_close(it);
	buf_deinit(&prefix);
	buf_deinit(&k);
	return ret;
}

/* Phase 2, inexact (the tombstones no longer go back to since): every uid
 * below known_uidnext not present, from the gaps between present uids
 * (cursor: the last present uid looked at). */
static int walk_gaps(struct changes_walk *w, int *over_r)
{
	buf prefix, k;
	buf_init(&prefix);
	buf_init(&k);
	key_mbox_prefix(&prefix, KIND_META, w->user, w->m->id);
	uint32_t expect = w->cur->after_uid + 1;
	key_message(&k, KIND_META, w->user, w->m->id, mbox_seek_uid(w->m, expect));
	*over_r = 1;
	leveldb_iterator_t *it = leveldb_create_iterator(w->s->db, w->s->ropts);
	for (leveldb_iter_seek(it, (const char *)k.data, k.len); leveldb_iter_valid(it);
	     leveldb_iter_next(it)) {
		size_t klen;
		const char *key = leveldb_iter_key(it, &klen);
		uint32_t uid = key_uid(key, klen, &prefix);
		if (uid == 0 || uid >= w->known_uidnext)
			break;
		if (w->budget == 0) {
			*over_r = 0;
			break;
		}
		w->budget--;
		if (uid > expect)
			ranges_add(&w->expunged, expect, uid - 1);
		expect = uid + 1;
		w->cur->after_uid = uid;
	}
	if (*over_r && expect < w->known_uidnext)
		ranges_add(&w->expunged, expect, w->known_uidnext - 1);
	int ret = mailstore__db_iter_close(it);
	buf_deinit(&prefix);
	buf_deinit(&k);
	return ret;
}

/* Phase 3: the uids >= known_uidnext. */
static int walk_added(struct changes_walk *w, int *over_r)
{
	buf prefix, k;
	buf_init(&prefix);
	buf_init(&k);
	key_mbox_prefix(&prefix, KIND_META, w->user, w->m->id);
	uint32_t from = w->cur->after_uid + 1;
	if (from < w->known_uidnext)
		from = w->known_uidnext;
	key_message(&k, KIND_META, w->user, w->m->id, from);
	*over_r = 1;
	leveldb_iterator_t *it = leveldb_create_iterator(w->s->db, w->s->ropts);
	for (leveldb_iter_seek(it, (const char *)k.data, k.len); leveldb_iter_valid(it);
	     leveldb_iter_next(it)) {
		size_t klen;
		const char *key = leveldb_iter_key(it, &klen);
		uint32_t uid = key_uid(key, klen, &prefix);
		if (uid == 0)
			break;
		if (w->budget == 0) {
			*over_r = 0;
			break;
		}
		w->budget--;
		ranges_add(&w->added, uid, uid);
		w->cur->after_uid = uid;
	}
	int ret = mailstore__db_iter_close(it);
	buf_deinit(&prefix);
	buf_deinit(&k);
	return ret;
}

static int changes_locked(struct changes_walk *w, struct mailstore_changes *out)
{
	struct mailstore_changes_cursor *cur = w->cur;
	int exact = w->since >= w->m->expunge_floor;
	int ret = MAIL_OK;
	while (ret == MAIL_OK && cur->phase != MAILSTORE_CHANGES_DONE && w->budget > 0) {
		int over = 1;
		switch (cur->phase) {
		case 0:
			cur->phase = 1;
			cur->after_modseq = w->since;
			cur->after_uid = UINT32_MAX;
			continue;
		case 1:
			if (w->since < w->m->highest_modseq)
				ret = walk_changed(w, &over);
			if (over) {
				cur->phase = 2;
				cur->after_modseq = w->since;
				cur->after_uid = exact ? UINT32_MAX : 0;
			}
			break;
		case 2:
			if (exact && w->since < w->m->highest_modseq)
				ret = walk_tombstones(w, &over);
			else if (!exact)
				ret = walk_gaps(w, &over);
			if (over) {
				cur->phase = 3;
				cur->after_modseq = 0;
				cur->after_uid = 0;
			}
			break;
		case 3:
			ret = walk_added(w, &over);
			if (over)
				cur->phase = MAILSTORE_CHANGES_DONE;
			break;
		default:
			ret = MAIL_ERR_PARAMS;
			break;
		}
	}
	if (ret != MAIL_OK)
		return ret;
	if (w->n_tomb > 0) {
		qsort(w->tomb_uids, w->n_tomb, sizeof *w->tomb_uids, u32_cmp);
		for (size_t i = 0; i < w->n_tomb; i++) {
			if (i > 0 && w->tomb_uids[i] == w->tomb_uids[i - 1])
				continue;
			ranges_add(&w->expunged, w->tomb_uids[i], w->tomb_uids[i]);
		}
	}
	out->highest_modseq = w->m->highest_modseq;
	out->uidnext = w->m->uidnext;
	out->exists = w->m->exists;
	out->expunged_exact = exact;
	out->added = w->added.r;
	out->n_added = w->added.n;
	out->expunged = w->expunged.r;
	out->n_expunged = w->expunged.n;
	/* the modseq index gives them by modseq: by uid, as promised */
	if (w->n_changed > 1) {
		for (size_t i = 1; i < w->n_changed; i++) {
			struct mailstore_message_info t = w->changed[i];
			size_t j = i;
			while (j > 0 && w->changed[j - 1].uid > t.uid) {
				w->changed[j] = w->changed[j - 1];
				j--;
			}
			w->changed[j] = t;
		}
	}
	out->changed = w->changed;
	out->n_changed = w->n_changed;
	w->added.r = w->expunged.r = NULL;
	w->changed = NULL;
	w->n_changed = 0;
	return MAIL_OK;
}

int mailstore_changes(mailstore *s, const char *user, const char *mailbox,
		      uint64_t since_modseq, uint32_t known_uidnext,
		      struct mailstore_changes_cursor *cursor, struct mailstore_changes *out)
{
	memset(out, 0, sizeof *out);
	buf tmp;
	buf_init(&tmp);
	const char *name = mailstore__mailbox_name(s, mailbox, &tmp);
	int ret = MAIL_ERR_PARAMS;
	if (mailstore__user_valid(s, user) && name != NULL &&
	    cursor->phase <= MAILSTORE_CHANGES_DONE) {
		pthread_mutex_lock(&s->lock);
		struct mbox m = { 0 };
		ret = mailstore__mbox_get(s, user, name, &m);
		if (ret == MAIL_OK) {
			struct changes_walk w = {
				.s = s, .user = user, .m = &m, .since = since_modseq,
				.known_uidnext = known_uidnext, .cur = cursor,
				.budget = s->limits.page_scan_keys,
			};
			ret = changes_locked(&w, out);
			free(w.added.r);
			free(w.expunged.r);
			free(w.tomb_uids);
			mailstore_message_infos_free(w.changed, w.n_changed);
			mailstore__mbox_deinit(&m);
		}
		pthread_mutex_unlock(&s->lock);
	}
	buf_deinit(&tmp);
	return ret;
}
