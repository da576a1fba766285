/* mailstore-append.c: APPEND (MULTIAPPEND) and COPY/MOVE (issue 9), each
 * one sync batch whatever the number of messages (within the limits). */
#include "mailstore-private.h"

#include "log.h"
#include "mail-error.h"
#include "store-structure.h"
#include "util.h"
#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

/* ---- APPEND ---------------------------------------------------------------- */

/* One message of an append, validated. */
struct append_msg {
	const struct mailstore_msg_in *in;
	char **flags;
	size_t n_flags;
	int64_t internal_date;
};

static void append_msgs_free(struct append_msg *am, size_t n)
{
	for (size_t i = 0; i < n; i++)
		mailstore__flags_free(am[i].flags, am[i].n_flags);
	free(am);
}

static int append_locked(mailstore *s, const char *user, const char *name,
			 struct append_msg *am, size_t n, uint32_t *uidvalidity_r,
			 uint32_t *uids)
{
	struct mbox m = { 0 };
	int ret = mailstore__mbox_open(s, user, name, &m);
	if (ret != MAIL_OK)
		return ret;
	if ((uint64_t)m.uidnext + n >= UINT32_MAX)
		ret = MAIL_ERR_LIMIT;   /* uids are 32-bit */
	/* the keywords of every message must fit the mailbox's bound */
	uint64_t add_bytes = 0;
	for (size_t i = 0; i < n; i++)
		add_bytes += am[i].in->body_len;
	if (ret == MAIL_OK)
		ret = mailstore__quota_check_locked(s, user, add_bytes, n);
	for (size_t i = 0; i < n && ret == MAIL_OK; i++)
		ret = mailstore__keywords_merge(s, &m, am[i].flags, &am[i].n_flags, 0);
	if (ret != MAIL_OK) {
		mailstore__mbox_deinit(&m);
		return ret;
	}
	m.highest_modseq++;
	leveldb_writebatch_t *wb = leveldb_writebatch_create();
	bodystore_txn_begin(s->bodies, wb, 1);
	buf k, v;
	buf_init(&k);
	buf_init(&v);
	for (size_t i = 0; i < n && ret == MAIL_OK; i++) {
		const struct mailstore_msg_in *in = am[i].in;
		struct mailstore_message_info mi = {
			.uid = m.uidnext++, .flags = am[i].flags, .n_flags = am[i].n_flags,
			.size = in->body_len, .internal_date = am[i].internal_date,
			.modseq = m.highest_modseq,
		};
		uids[i] = mi.uid;
		mailstore__msg_put(wb, &k, &v, user, &m, NULL, &mi);
		mailstore__structure_put(wb, &k, user, m.id, mi.uid, in->structure,
					 in->structure_len, in->body, in->body_len);
		key_message(&k, KIND_BODY_PTR, user, m.id, mi.uid);
		if (bodystore_put(s->bodies, k.data, k.len, in->body, in->body_len) < 0)
			ret = MAIL_ERR_INTERNAL;
	}
	mailstore__batch_put_mbox(wb, &k, &v, user, name, &m);
	if (ret == MAIL_OK)
		ret = mailstore__bodies_write(s, wb, 1, "append");
	else
		mailstore__bodies_abandon(s, wb);
	if (ret == MAIL_OK) {
		*uidvalidity_r = m.uidvalidity;
		mailstore__note_change(s, user, name, m.highest_modseq, 0);
	}
	buf_deinit(&k);
	buf_deinit(&v);
	mailstore__mbox_deinit(&m);
	return ret;
}

int mailstore_append(mailstore *s, const char *user, const char *mailbox,
		     const struct mailstore_msg_in *msgs, size_t n, uint32_t *uidvalidity_r,
		     uint32_t **uids_r)
{
	*uidvalidity_r = 0;
	*uids_r = NULL;
	buf tmp;
	buf_init(&tmp);
	const char *name = mailstore__mailbox_name(s, mailbox, &tmp);
	int ret = MAIL_OK;
	if (!mailstore__user_valid(s, user) || name == NULL || n == 0)
		ret = MAIL_ERR_PARAMS;
	else if (n > s->limits.max_append_messages)
		ret = MAIL_ERR_LIMIT;
	uint64_t total = 0;
	for (size_t i = 0; i < n && ret == MAIL_OK; i++) {
		struct store_structure st;
		if (msgs[i].body_len > s->limits.max_message_size)
			ret = MAIL_ERR_TOO_BIG;
		else if (msgs[i].structure != NULL &&
			 store_structure_decode(msgs[i].structure, msgs[i].structure_len, &st) < 0)
			ret = MAIL_ERR_PARAMS;
		total += msgs[i].body_len;
	}
	if (ret == MAIL_OK && total > s->limits.max_append_bytes)
		ret = MAIL_ERR_LIMIT;
	struct append_msg *am = ret == MAIL_OK ? xcalloc(n, sizeof *am) : NULL;
	int64_t now = s->applying ? s->apply.now_ms : util_now_wall_ms();
	for (size_t i = 0; i < n && ret == MAIL_OK; i++) {
		am[i].in = &msgs[i];
		am[i].internal_date = msgs[i].internal_date != 0 ? msgs[i].internal_date : now;
		ret = mailstore__flags_normalize(s, msgs[i].flags, msgs[i].n_flags, &am[i].flags,
						 &am[i].n_flags);
	}
	if (ret == MAIL_OK) {
		uint32_t *uids = xcalloc(n, sizeof *uids);
		pthread_mutex_lock(&s->lock);
		ret = append_locked(s, user, name, am, n, uidvalidity_r, uids);
		if (ret == MAIL_OK)
			mailstore__bodies_collect_after_write(s);
		mailstore__unlock(s);
		if (ret == MAIL_OK)
			*uids_r = uids;
		else
			free(uids);
	}
	if (am != NULL)
		append_msgs_free(am, n);
	buf_deinit(&tmp);
	return ret;
}

/* ---- COPY and MOVE ------------------------------------------------------------ */

/* The messages of m whose uids are in ranges, ascending: LIMIT past
 * max_copy_messages or max_copy_bytes (the scan stops there). */
static int copy_collect(mailstore *s, const char *user, const struct mbox *m,
			const struct search_uid_range *ranges, size_t n_ranges,
			struct mailstore_message_info **msgs_r, size_t *n_r)
{
	*msgs_r = NULL;
	*n_r = 0;
	struct mailstore_message_info *msgs = NULL;
	size_t n = 0, cap = 0;
	uint64_t bytes = 0;
	int ret = MAIL_OK;
	buf prefix, k;
	buf_init(&prefix);
	buf_init(&k);
	key_mbox_prefix(&prefix, KIND_META, user, m->id);
	leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ropts);
	for (size_t r = 0; r < n_ranges && ret == MAIL_OK; r++) {
		key_message(&k, KIND_META, user, m->id, ranges[r].first);
		for (leveldb_iter_seek(it, (const char *)k.data, k.len); leveldb_iter_valid(it);
		     leveldb_iter_next(it)) {
			size_t klen, vlen;
			const char *key = leveldb_iter_key(it, &klen);
			if (klen != prefix.len + 4 || memcmp(key, prefix.data, prefix.len) != 0)
				break;
			uint32_t uid = get_u32((const uint8_t *)key + prefix.len);
			if (uid > ranges[r].last)
				break;
			if (n == s->limits.max_copy_messages) {
				ret = MAIL_ERR_LIMIT;
				break;
			}
			if (n == cap) {
				cap = cap > 0 ? cap * 2 : 16;
				msgs = xrealloc(msgs, cap * sizeof *msgs);
			}
			const char *val = leveldb_iter_value(it, &vlen);
			if (mailstore__meta_decode((const uint8_t *)val, vlen, uid, &msgs[n]) < 0) {
				mailstore__log_corrupt("message", user);
				ret = MAIL_ERR_INTERNAL;
				break;
			}
			bytes += msgs[n].size;
			n++;
			if (bytes > s->limits.max_copy_bytes) {
				ret = MAIL_ERR_LIMIT;
				break;
			}
		}
	}
	if (mailstore__db_iter_close(it) != MAIL_OK)
		ret = MAIL_ERR_INTERNAL;
	buf_deinit(&prefix);
	buf_deinit(&k);
	if (ret != MAIL_OK) {
		mailstore_message_infos_free(msgs, n);
		return ret;
	}
	*msgs_r = msgs;
	*n_r = n;
	return MAIL_OK;
}

/* Copy message mi of src (body, structure) as uid new_uid of dst into wb. */
static int copy_one(mailstore *s, leveldb_writebatch_t *wb, buf *k, buf *v, const char *user,
		    const struct mbox *src, struct mbox *dst,
		    const struct mailstore_message_info *mi, uint32_t new_uid)
{
	void *body;
	size_t blen;
	int ret = mailstore__body_get(s, user, src->id, mi->uid, &body, &blen);
	if (ret != MAIL_OK)
		return ret;
	key_message(k, KIND_STRUCTURE, user, src->id, mi->uid);
	char *st;
	size_t st_len;
	int got = mailstore__db_get(s, k, &st, &st_len);
	if (got < 0) {
		free(body);
		return MAIL_ERR_INTERNAL;
	}
	struct mailstore_message_info ni = *mi;
	ni.uid = new_uid;
	ni.modseq = dst->highest_modseq;
	mailstore__msg_put(wb, k, v, user, dst, NULL, &ni);
	mailstore__structure_put(wb, k, user, dst->id, new_uid, got == 1 ? st : NULL,
				 got == 1 ? st_len : 0, body, blen);
	if (got == 1)
		leveldb_free(st);
	key_message(k, KIND_BODY_PTR, user, dst->id, new_uid);
	if (bodystore_put(s->bodies, k->data, k->len, body, blen) < 0)
		ret = MAIL_ERR_INTERNAL;
	free(body);
	return ret;
}

static int copy_locked(mailstore *s, const char *user, const char *from,
		       const struct search_uid_range *ranges, size_t n_ranges, const char *to,
		       int move, uint32_t *dst_uidvalidity_r, uint32_t **src_uids_r,
		       uint32_t **dst_uids_r, size_t *n_r)
{
	int same = strcmp(from, to) == 0;
	struct mbox src = { 0 }, dst_own = { 0 };
	int ret = mailstore__mbox_open(s, user, from, &src);
	if (ret == MAIL_OK && !same)
		ret = mailstore__mbox_open(s, user, to, &dst_own);
	struct mbox *dst = same ? &src : &dst_own;
	struct mailstore_message_info *msgs = NULL;
	size_t n = 0;
	if (ret == MAIL_OK)
		ret = copy_collect(s, user, &src, ranges, n_ranges, &msgs, &n);
	if (ret == MAIL_OK && (uint64_t)dst->uidnext + n >= UINT32_MAX)
		ret = MAIL_ERR_LIMIT;
	if (ret == MAIL_OK && !move && n > 0) {
		/* a MOVE stays within the user: it changes no usage */
		uint64_t add_bytes = 0;
		for (size_t i = 0; i < n; i++)
			add_bytes += msgs[i].size;
		ret = mailstore__quota_check_locked(s, user, add_bytes, n);
	}
	for (size_t i = 0; i < n && ret == MAIL_OK; i++) {
		size_t nf = msgs[i].n_flags;
		ret = mailstore__keywords_merge(s, dst, msgs[i].flags, &nf, 0);
	}
	if (ret != MAIL_OK || n == 0) {
		*dst_uidvalidity_r = ret == MAIL_OK ? dst->uidvalidity : 0;
		mailstore_message_infos_free(msgs, n);
		mailstore__mbox_deinit(&src);
		mailstore__mbox_deinit(&dst_own);
		return ret;
	}
	uint32_t *src_uids = xcalloc(n, sizeof *src_uids);
	uint32_t *dst_uids = xcalloc(n, sizeof *dst_uids);
	dst->highest_modseq++;
	leveldb_writebatch_t *wb = leveldb_writebatch_create();
	bodystore_txn_begin(s->bodies, wb, 1);
	buf k, v;
	buf_init(&k);
	buf_init(&v);
	for (size_t i = 0; i < n && ret == MAIL_OK; i++) {
		src_uids[i] = msgs[i].uid;
		dst_uids[i] = dst->uidnext++;
		ret = copy_one(s, wb, &k, &v, user, &src, dst, &msgs[i], dst_uids[i]);
	}
	if (ret == MAIL_OK && move) {
		src.highest_modseq++;
		ret = mailstore__msgs_expunge(s, wb, &k, user, &src, msgs, n);
	}
	mailstore__batch_put_mbox(wb, &k, &v, user, to, dst);
	if (move)
		mailstore__batch_put_mbox(wb, &k, &v, user, from, &src);
	if (ret == MAIL_OK)
		ret = mailstore__bodies_write(s, wb, 1, move ? "move" : "copy");
	else
		mailstore__bodies_abandon(s, wb);
	if (ret == MAIL_OK) {
		*dst_uidvalidity_r = dst->uidvalidity;
		*src_uids_r = src_uids;
		*dst_uids_r = dst_uids;
		*n_r = n;
		mailstore__note_change(s, user, to, dst->highest_modseq, 0);
		if (move)
			mailstore__note_change(s, user, from, src.highest_modseq, 0);
	} else {
		free(src_uids);
		free(dst_uids);
	}
	buf_deinit(&k);
	buf_deinit(&v);
	mailstore_message_infos_free(msgs, n);
	mailstore__mbox_deinit(&src);
	mailstore__mbox_deinit(&dst_own);
	return ret;
}

int mailstore_copy(mailstore *s, const char *user, const char *from,
		   const struct search_uid_range *ranges, size_t n_ranges, const char *to, int move,
		   uint32_t *dst_uidvalidity_r, uint32_t **src_uids_r, uint32_t **dst_uids_r,
		   size_t *n_r)
{
	*dst_uidvalidity_r = 0;
	*src_uids_r = NULL;
	*dst_uids_r = NULL;
	*n_r = 0;
	buf tmp_from, tmp_to;
	buf_init(&tmp_from);
	buf_init(&tmp_to);
	const char *fname = mailstore__mailbox_name(s, from, &tmp_from);
	const char *tname = mailstore__mailbox_name(s, to, &tmp_to);
	int ret = MAIL_ERR_PARAMS;
	int ranges_ok = 1;
	for (size_t i = 0; i < n_ranges; i++) {
		if (ranges[i].first == 0 || ranges[i].first > ranges[i].last ||
		    (i > 0 && ranges[i].first <= ranges[i - 1].last))
			ranges_ok = 0;
	}
	if (mailstore__user_valid(s, user) && fname != NULL && tname != NULL && ranges_ok &&
	    !(move && strcmp(fname, tname) == 0)) {
		pthread_mutex_lock(&s->lock);
		ret = copy_locked(s, user, fname, ranges, n_ranges, tname, move, dst_uidvalidity_r,
				  src_uids_r, dst_uids_r, n_r);
		if (ret == MAIL_OK && *n_r > 0)
			mailstore__bodies_collect_after_write(s);
		mailstore__unlock(s);
	}
	buf_deinit(&tmp_from);
	buf_deinit(&tmp_to);
	return ret;
}
