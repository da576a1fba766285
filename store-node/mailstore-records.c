/* mailstore-records.c: the records every write keeps in step (issue 9):
 * the mailbox record's counters and keywords, a message's derived records
 * ('N' by modseq, 'W' without \Seen, 'Z' with \Deleted), its structure
 * record ('E'), expunge tombstones ('T') and their bound, the change
 * notifications, and the level-3 schema upgrade that fills all of it for a
 * store written before. */
#include "mailstore-private.h"

#include "log.h"
#include "mail-error.h"
#include "store-structure.h"
#include "util.h"
#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

/* ---- the mailbox record ------------------------------------------------ */

void mailstore__mbox_deinit(struct mbox *m)
{
	mailstore__flags_free(m->keywords, m->n_keywords);
	m->keywords = NULL;
	m->n_keywords = 0;
}

void mailstore__mbox_copy(struct mbox *dst, const struct mbox *src)
{
	*dst = *src;
	dst->keywords = src->n_keywords > 0 ? xcalloc(src->n_keywords, sizeof *dst->keywords)
					    : NULL;
	for (size_t i = 0; i < src->n_keywords; i++)
		dst->keywords[i] = xstrdup(src->keywords[i]);
}

void mailstore__mbox_encode(buf *v, const struct mbox *m)
{
	buf_reset(v);
	uint8_t ver = VALUE_VERSION;
	buf_append(v, &ver, 1);
	put_u64(v, m->id);
	put_u32(v, m->uidvalidity);
	put_u32(v, m->uidnext);
	put_u64(v, m->highest_modseq);
	put_u32(v, m->exists);
	put_u32(v, m->unseen);
	put_u32(v, m->deleted);
	put_u64(v, m->size);
	put_u32(v, m->attrs);
	put_u64(v, m->expunge_floor);
	put_u32(v, m->n_tombstones);
	put_u16(v, (uint16_t)m->n_keywords);
	for (size_t i = 0; i < m->n_keywords; i++) {
		size_t kl = strlen(m->keywords[i]);
		put_u16(v, (uint16_t)kl);
		buf_append(v, m->keywords[i], kl);
	}
	put_u32(v, m->uid_floor);
}

/* The record of the versions before the counters is MBOX_VALUE_LEN bytes:
 * it decodes with legacy = 1 and zero counters (mailstore__mbox_recount
 * fills them). */
int mailstore__mbox_decode(const uint8_t *p, size_t len, struct mbox *m)
{
	memset(m, 0, sizeof *m);
	if (len < MBOX_VALUE_LEN || p[0] != VALUE_VERSION)
		return -1;
	m->id = get_u64(p + 1);
	m->uidvalidity = get_u32(p + 9);
	m->uidnext = get_u32(p + 13);
	m->highest_modseq = get_u64(p + 17);
	m->exists = get_u32(p + 25);
	if (len == MBOX_VALUE_LEN) {
		m->legacy = 1;
		m->expunge_floor = m->highest_modseq;
		return 0;
	}
	if (len < MBOX_VALUE_FIXED_LEN)
		return -1;
	const uint8_t *q = p + MBOX_VALUE_LEN;
	m->unseen = get_u32(q);
	m->deleted = get_u32(q + 4);
	m->size = get_u64(q + 8);
	m->attrs = get_u32(q + 16);
	m->expunge_floor = get_u64(q + 20);
	m->n_tombstones = get_u32(q + 28);
	size_t off = MBOX_VALUE_FIXED_LEN;
	if (mailstore__strlist_decode(p, len, &off, get_u16(q + 32), &m->keywords,
				      &m->n_keywords) < 0) {
		mailstore__mbox_deinit(m);
		return -1;
	}
	if (off + 4 == len) {
		m->uid_floor = get_u32(p + off);
		off += 4;
	}
	if (off != len) {
		mailstore__mbox_deinit(m);
		return -1;
	}
	return 0;
}

static int is_keyword(const char *flag)
{
	return flag[0] != '\\';
}

/* Add keyword kw to m's sorted set (it is not there). */
static void keywords_insert(struct mbox *m, const char *kw)
{
	size_t at = 0;
	while (at < m->n_keywords && strcmp(m->keywords[at], kw) < 0)
		at++;
	m->keywords = xrealloc(m->keywords, (m->n_keywords + 1) * sizeof *m->keywords);
	memmove(m->keywords + at + 1, m->keywords + at,
		(m->n_keywords - at) * sizeof *m->keywords);
	m->keywords[at] = xstrdup(kw);
	m->n_keywords++;
}

static int keywords_has(const struct mbox *m, const char *kw)
{
	return mailstore__flags_has(m->keywords, m->n_keywords, kw);
}

int mailstore__keywords_merge(const mailstore *s, struct mbox *m, char **flags, size_t *n_flags,
			      int drop)
{
	size_t room = s->limits.max_mailbox_keywords > m->n_keywords
			      ? s->limits.max_mailbox_keywords - m->n_keywords
			      : 0;
	size_t new_kw = 0;
	for (size_t i = 0; i < *n_flags; i++)
		new_kw += is_keyword(flags[i]) && !keywords_has(m, flags[i]);
	if (new_kw > room && !drop)
		return MAIL_ERR_LIMIT;
	size_t o = 0;
	for (size_t i = 0; i < *n_flags; i++) {
		if (is_keyword(flags[i]) && !keywords_has(m, flags[i])) {
			if (room == 0) {
				free(flags[i]);
				continue;
			}
			keywords_insert(m, flags[i]);
			room--;
		}
		flags[o++] = flags[i];
	}
	*n_flags = o;
	return MAIL_OK;
}

/* ---- a message's records ------------------------------------------------ */

void mailstore__msg_index(leveldb_writebatch_t *wb, buf *k, const char *user, uint64_t mbox_id,
			  const struct mailstore_message_info *mi, int on)
{
	uint8_t ver = VALUE_VERSION;
	key_modseq(k, KIND_MODSEQ, user, mbox_id, mi->modseq, mi->uid);
	if (on)
		leveldb_writebatch_put(wb, (const char *)k->data, k->len, (const char *)&ver, 1);
	else
		leveldb_writebatch_delete(wb, (const char *)k->data, k->len);
	if (!mailstore__flags_has(mi->flags, mi->n_flags, "\\Seen")) {
		key_message(k, KIND_UNSEEN, user, mbox_id, mi->uid);
		if (on)
			leveldb_writebatch_put(wb, (const char *)k->data, k->len, (const char *)&ver,
					       1);
		else
			leveldb_writebatch_delete(wb, (const char *)k->data, k->len);
	}
	if (mailstore__flags_has(mi->flags, mi->n_flags, "\\Deleted"))
		mailstore__batch_mark_deleted(wb, k, user, mbox_id, mi->uid, on);
}

/* Add (sign 1) or take away (-1) mi from m's counters. */
static void mbox_account(struct mbox *m, const struct mailstore_message_info *mi, int sign)
{
	int unseen = !mailstore__flags_has(mi->flags, mi->n_flags, "\\Seen");
	int deleted = mailstore__flags_has(mi->flags, mi->n_flags, "\\Deleted");
	if (sign > 0) {
		m->exists++;
		m->unseen += (uint32_t)unseen;
		m->deleted += (uint32_t)deleted;
		m->size += mi->size;
	} else {
		m->exists -= m->exists > 0;
		m->unseen -= (uint32_t)(unseen && m->unseen > 0);
		m->deleted -= (uint32_t)(deleted && m->deleted > 0);
		m->size = m->size >= mi->size ? m->size - mi->size : 0;
	}
}

void mailstore__msg_put(leveldb_writebatch_t *wb, buf *k, buf *v, const char *user,
			struct mbox *m, const struct mailstore_message_info *old,
			const struct mailstore_message_info *mi)
{
	if (old != NULL) {
		mailstore__msg_index(wb, k, user, m->id, old, 0);
		mbox_account(m, old, -1);
	}
	key_message(k, KIND_META, user, m->id, mi->uid);
	mailstore__meta_encode(v, mi);
	leveldb_writebatch_put(wb, (const char *)k->data, k->len, (const char *)v->data, v->len);
	mailstore__msg_index(wb, k, user, m->id, mi, 1);
	mbox_account(m, mi, 1);
}

int mailstore__msg_remove(mailstore *s, leveldb_writebatch_t *wb, buf *k, const char *user,
			  struct mbox *m, const struct mailstore_message_info *mi, uint64_t modseq,
			  int tombstone)
{
	key_message(k, KIND_META, user, m->id, mi->uid);
	leveldb_writebatch_delete(wb, (const char *)k->data, k->len);
	mailstore__msg_index(wb, k, user, m->id, mi, 0);
	key_message(k, KIND_STRUCTURE, user, m->id, mi->uid);
	leveldb_writebatch_delete(wb, (const char *)k->data, k->len);
	/* the pointer (its bytes stop being live), or the body of an older
	 * store */
	key_message(k, KIND_BODY_PTR, user, m->id, mi->uid);
	if (bodystore_delete(s->bodies, k->data, k->len) < 0)
		return -1;
	key_message(k, KIND_BODY, user, m->id, mi->uid);
	leveldb_writebatch_delete(wb, (const char *)k->data, k->len);
	if (tombstone) {
		uint8_t ver = VALUE_VERSION;
		key_modseq(k, KIND_TOMBSTONE, user, m->id, modseq, mi->uid);
		leveldb_writebatch_put(wb, (const char *)k->data, k->len, (const char *)&ver, 1);
		m->n_tombstones++;
	}
	mbox_account(m, mi, -1);
	return 0;
}

int mailstore__tombstones_make_room(mailstore *s, leveldb_writebatch_t *wb, const char *user,
				    struct mbox *m, size_t adding, uint64_t new_modseq,
				    int *keep_r)
{
	uint32_t max = s->limits.max_tombstones;
	*keep_r = adding <= max;
	size_t drop;
	if (!*keep_r)
		drop = m->n_tombstones;
	else if ((uint64_t)m->n_tombstones + adding > max)
		drop = m->n_tombstones + adding - max;
	else
		drop = 0;
	if (!*keep_r)
		m->expunge_floor = new_modseq;
	if (drop == 0)
		return MAIL_OK;
	buf prefix;
	buf_init(&prefix);
	key_mbox_prefix(&prefix, KIND_TOMBSTONE, user, m->id);
	leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ropts);
	size_t n = 0;
	for (leveldb_iter_seek(it, (const char *)prefix.data, prefix.len);
	     leveldb_iter_valid(it) && n < drop; leveldb_iter_next(it)) {
		size_t klen;
		const char *key = leveldb_iter_key(it, &klen);
		if (klen != prefix.len + 12 || memcmp(key, prefix.data, prefix.len) != 0)
			break;
		uint64_t ms = get_u64((const uint8_t *)key + prefix.len);
		if (ms > m->expunge_floor)
			m->expunge_floor = ms;
		leveldb_writebatch_delete(wb, key, klen);
		n++;
	}
	int ret = mailstore__db_iter_close(it);
	buf_deinit(&prefix);
	m->n_tombstones = m->n_tombstones >= n ? m->n_tombstones - (uint32_t)n : 0;
	return ret;
}

static int uid_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* After msgs (n of them) leave m in this batch: m->uid_floor becomes the
 * lowest uid left (m->uidnext when none is), found by a seek from the
 * old floor that steps over the leaving ones. */
static int uid_floor_raise(mailstore *s, const char *user, struct mbox *m,
			   const struct mailstore_message_info *msgs, size_t n)
{
	if (n == 0)
		return MAIL_OK;
	uint32_t *gone = xmalloc(n * sizeof *gone);
	for (size_t i = 0; i < n; i++)
		gone[i] = msgs[i].uid;
	qsort(gone, n, sizeof *gone, uid_cmp);
	if (gone[0] > m->uid_floor) {
		free(gone);   /* the lowest message stays: so does the floor */
		return MAIL_OK;
	}
	buf prefix, k;
	buf_init(&prefix);
	buf_init(&k);
	key_mbox_prefix(&prefix, KIND_META, user, m->id);
	key_message(&k, KIND_META, user, m->id, m->uid_floor);
	uint32_t floor = m->uidnext;
	leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ropts);
	for (leveldb_iter_seek(it, (const char *)k.data, k.len); leveldb_iter_valid(it);
	     leveldb_iter_next(it)) {
		size_t klen;
		const char *key = leveldb_iter_key(it, &klen);
		if (klen != prefix.len + 4 || memcmp(key, prefix.data, prefix.len) != 0)
			break;
		uint32_t uid = get_u32((const uint8_t *)key + prefix.len);
		if (bsearch(&uid, gone, n, sizeof *gone, uid_cmp) == NULL) {
			floor = uid;
			break;
		}
	}
	int ret = mailstore__db_iter_close(it);
	if (ret == MAIL_OK)
		m->uid_floor = floor;
	buf_deinit(&prefix);
	buf_deinit(&k);
	free(gone);
	return ret;
}

int mailstore__msgs_expunge(mailstore *s, leveldb_writebatch_t *wb, buf *k, const char *user,
			    struct mbox *m, const struct mailstore_message_info *msgs, size_t n)
{
	int keep;
	if (mailstore__tombstones_make_room(s, wb, user, m, n, m->highest_modseq, &keep) !=
	    MAIL_OK)
		return MAIL_ERR_INTERNAL;
	for (size_t i = 0; i < n; i++) {
		if (mailstore__msg_remove(s, wb, k, user, m, &msgs[i], m->highest_modseq, keep) < 0)
			return MAIL_ERR_INTERNAL;
	}
	return uid_floor_raise(s, user, m, msgs, n);
}

int mailstore__batch_put_derived_of_meta(leveldb_writebatch_t *wb, const void *key, size_t klen,
					 const void *val, size_t vlen)
{
	/* 01 'I' <user> 00 <mbox u64> <uid u32> */
	const uint8_t *kp = key;
	if (klen < 3 + MSG_KEY_TAIL)
		return -1;
	const uint8_t *nul = memchr(kp + 2, '\0', klen - 2);
	if (nul == NULL || (size_t)(kp + klen - (nul + 1)) != MSG_KEY_TAIL)
		return -1;
	struct mailstore_message_info mi;
	uint32_t uid = get_u32(kp + klen - 4);
	if (mailstore__meta_decode(val, vlen, uid, &mi) < 0)
		return -1;
	char *user = xstrndup((const char *)kp + 2, (size_t)(nul - (kp + 2)));
	buf k;
	buf_init(&k);
	mailstore__msg_index(wb, &k, user, get_u64(nul + 1), &mi, 1);
	buf_deinit(&k);
	free(user);
	mailstore_message_info_free(&mi);
	return 0;
}

void mailstore__structure_put(leveldb_writebatch_t *wb, buf *k, const char *user,
			      uint64_t mbox_id, uint32_t uid, const void *structure,
			      size_t structure_len, const void *body, size_t body_len)
{
	buf v;
	buf_init(&v);
	if (structure == NULL) {
		store_structure_compute(body, body_len, &v);
		structure = v.data;
		structure_len = v.len;
	}
	key_message(k, KIND_STRUCTURE, user, mbox_id, uid);
	leveldb_writebatch_put(wb, (const char *)k->data, k->len, structure, structure_len);
	buf_deinit(&v);
}

/* ---- change notifications ------------------------------------------------ */

void mailstore__note_change(mailstore *s, const char *user, const char *mailbox,
			    uint64_t highest_modseq, int gone)
{
	s->last_modseq = gone ? 0 : highest_modseq;
	if (s->change_cb == NULL)
		return;
	for (size_t i = 0; i < s->n_changes; i++) {
		struct mailstore_change *c = &s->changes[i];
		if (strcmp(c->user, user) == 0 && strcmp(c->mailbox, mailbox) == 0) {
			c->highest_modseq = highest_modseq;
			c->gone = gone;
			return;
		}
	}
	if (s->n_changes == s->cap_changes) {
		s->cap_changes = s->cap_changes > 0 ? s->cap_changes * 2 : 4;
		s->changes = xrealloc(s->changes, s->cap_changes * sizeof *s->changes);
	}
	s->changes[s->n_changes++] = (struct mailstore_change){
		.user = xstrdup(user), .mailbox = xstrdup(mailbox),
		.highest_modseq = highest_modseq, .gone = gone,
	};
}

void mailstore_last_modseq_reset(mailstore *s)
{
	s->last_modseq = 0;
}

uint64_t mailstore_last_modseq(const mailstore *s)
{
	return s->last_modseq;
}

void mailstore__unlock(mailstore *s)
{
	struct mailstore_change *changes = s->changes;
	size_t n = s->n_changes;
	mailstore_change_cb *cb = s->change_cb;
	void *arg = s->change_arg;
	s->changes = NULL;
	s->n_changes = s->cap_changes = 0;
	pthread_mutex_unlock(&s->lock);
	for (size_t i = 0; i < n; i++) {
		if (cb != NULL)
			cb(&changes[i], arg);
		free((char *)changes[i].user);
		free((char *)changes[i].mailbox);
	}
	free(changes);
}

void mailstore_set_change_cb(mailstore *s, mailstore_change_cb *cb, void *arg)
{
	pthread_mutex_lock(&s->lock);
	s->change_cb = cb;
	s->change_arg = arg;
	pthread_mutex_unlock(&s->lock);
}

/* ---- walking a user's mailbox records ------------------------------------ */

int mailstore__mbox_walk_locked(mailstore *s, const char *user, const buf *prefix,
				size_t name_at, mailstore_mbox_walk_fn *fn, void *arg)
{
	int ret = MAIL_OK;
	leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ropts);
	for (leveldb_iter_seek(it, (const char *)prefix->data, prefix->len);
	     ret == MAIL_OK && leveldb_iter_valid(it); leveldb_iter_next(it)) {
		size_t klen, vlen;
		const char *key = leveldb_iter_key(it, &klen);
		if (klen < prefix->len || memcmp(key, prefix->data, prefix->len) != 0)
			break;
		const char *val = leveldb_iter_value(it, &vlen);
		struct mbox m;
		if (mailstore__mbox_decode((const uint8_t *)val, vlen, &m) < 0) {
			mailstore__log_corrupt("mailbox", user);
			ret = MAIL_ERR_INTERNAL;
			break;
		}
		/* a record of the versions before the counters: recounted */
		if (m.legacy && mailstore__mbox_recount(s, user, &m) != MAIL_OK) {
			mailstore__mbox_deinit(&m);
			ret = MAIL_ERR_INTERNAL;
			break;
		}
		char *name = xstrndup(key + name_at, klen - name_at);
		ret = fn(arg, name, &m);
		free(name);
	}
	if (mailstore__db_iter_close(it) != MAIL_OK)
		ret = MAIL_ERR_INTERNAL;
	return ret;
}

/* ---- counting a mailbox (legacy records, the upgrade) -------------------- */

int mailstore__mbox_recount(mailstore *s, const char *user, struct mbox *m)
{
	buf prefix;
	buf_init(&prefix);
	key_mbox_prefix(&prefix, KIND_META, user, m->id);
	m->exists = m->unseen = m->deleted = 0;
	m->size = 0;
	mailstore__mbox_deinit(m);
	int ret = MAIL_OK;
	leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ropts);
	for (leveldb_iter_seek(it, (const char *)prefix.data, prefix.len); leveldb_iter_valid(it);
	     leveldb_iter_next(it)) {
		size_t klen, vlen;
		const char *key = leveldb_iter_key(it, &klen);
		if (klen != prefix.len + 4 || memcmp(key, prefix.data, prefix.len) != 0)
			break;
		const char *val = leveldb_iter_value(it, &vlen);
		struct mailstore_message_info mi;
		if (mailstore__meta_decode((const uint8_t *)val, vlen,
					   get_u32((const uint8_t *)key + prefix.len), &mi) < 0) {
			mailstore__log_corrupt("message", user);
			ret = MAIL_ERR_INTERNAL;
			break;
		}
		mbox_account(m, &mi, 1);
		size_t n = mi.n_flags;
		(void)mailstore__keywords_merge(s, m, mi.flags, &n, 1);
		mi.n_flags = n;
		mailstore_message_info_free(&mi);
	}
	if (mailstore__db_iter_close(it) != MAIL_OK)
		ret = MAIL_ERR_INTERNAL;
	buf_deinit(&prefix);
	return ret;
}

/* ---- schema level 3 --------------------------------------------------- */

int mailstore__index_messages(mailstore *s, uint64_t *n_r)
{
	*n_r = 0;
	uint8_t head[2] = { MAILSTORE_KEY_VERSION, KIND_META };
	struct upgrade_batch ub;
	mailstore__upgrade_batch_init(&ub, s, "schema_upgrade");
	leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ropts);
	for (leveldb_iter_seek(it, (const char *)head, sizeof head); leveldb_iter_valid(it);
	     leveldb_iter_next(it)) {
		size_t klen, vlen;
		const char *key = leveldb_iter_key(it, &klen);
		if (klen < 2 || memcmp(key, head, sizeof head) != 0)
			break;
		const char *val = leveldb_iter_value(it, &vlen);
		if (mailstore__batch_put_derived_of_meta(ub.wb, key, klen, val, vlen) < 0) {
			mailstore__log_corrupt("message", "");
			continue;
		}
		(*n_r)++;
		if (mailstore__upgrade_batch_added(&ub) < 0)
			break;
	}
	return mailstore__upgrade_batch_finish(&ub, mailstore__db_iter_close(it));
}

int mailstore__count_mailboxes(mailstore *s, uint64_t *n_r)
{
	*n_r = 0;
	uint8_t head[2] = { MAILSTORE_KEY_VERSION, KIND_MAILBOX };
	struct upgrade_batch ub;
	mailstore__upgrade_batch_init(&ub, s, "schema_upgrade");
	buf v;
	buf_init(&v);
	int ret = MAIL_OK;
	leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ropts);
	for (leveldb_iter_seek(it, (const char *)head, sizeof head); leveldb_iter_valid(it);
	     leveldb_iter_next(it)) {
		size_t klen, vlen;
		const char *key = leveldb_iter_key(it, &klen);
		if (klen < 2 || memcmp(key, head, sizeof head) != 0)
			break;
		const char *nul = memchr(key + 2, '\0', klen - 2);
		const char *val = leveldb_iter_value(it, &vlen);
		struct mbox m;
		if (nul == NULL || mailstore__mbox_decode((const uint8_t *)val, vlen, &m) < 0) {
			mailstore__log_corrupt("mailbox", "");
			continue;
		}
		if (!m.legacy)
			continue;
		char *user = xstrndup(key + 2, (size_t)(nul - (key + 2)));
		ret = mailstore__mbox_recount(s, user, &m);
		free(user);
		if (ret != MAIL_OK)
			break;
		mailstore__mbox_encode(&v, &m);
		mailstore__mbox_deinit(&m);
		leveldb_writebatch_put(ub.wb, key, klen, (const char *)v.data, v.len);
		(*n_r)++;
		if (mailstore__upgrade_batch_added(&ub) < 0)
			break;
	}
	buf_deinit(&v);
	int iret = mailstore__db_iter_close(it);
	if (ret != MAIL_OK)
		iret = ret;
	return mailstore__upgrade_batch_finish(&ub, iret);
}

int mailstore_mailbox_canon(mailstore *s, const char *mailbox, buf *out)
{
	buf tmp;
	buf_init(&tmp);
	const char *name = mailstore__mailbox_name(s, mailbox, &tmp);
	buf_reset(out);
	if (name != NULL)
		buf_append(out, name, strlen(name) + 1);
	if (name != NULL)
		out->len--;   /* the NUL stays after the text */
	buf_deinit(&tmp);
	return name != NULL ? 0 : -1;
}

int mailstore_highest_modseq(mailstore *s, const char *user, const char *mailbox,
			     uint64_t *modseq_r)
{
	*modseq_r = 0;
	buf tmp;
	buf_init(&tmp);
	const char *name = mailstore__mailbox_name(s, mailbox, &tmp);
	int ret = MAIL_ERR_PARAMS;
	if (mailstore__user_valid(s, user) && name != NULL) {
		struct mbox m;
		pthread_mutex_lock(&s->lock);
		ret = mailstore__mbox_get(s, user, name, &m);
		pthread_mutex_unlock(&s->lock);
		if (ret == MAIL_OK) {
			*modseq_r = m.highest_modseq;
			mailstore__mbox_deinit(&m);
		}
	}
	buf_deinit(&tmp);
	return ret;
}
