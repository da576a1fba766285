/* mailstore-mailbox.c: mailboxes as a whole (issue 9): create (parents,
 * INBOX's special-use mailboxes), delete (and the purge of what a deleted
 * mailbox leaves), rename, subscriptions, STATUS and LIST. */
#include "mailstore-private.h"

#include "log.h"
#include "mail-error.h"
#include "util.h"
#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

/* What every new user gets beside INBOX (RFC 6154), subscribed. */
static const struct {
	const char *name;
	unsigned attrs;
} special_boxes[] = {
	{ "Sent", MAILSTORE_MBOX_SENT },   { "Drafts", MAILSTORE_MBOX_DRAFTS },
	{ "Trash", MAILSTORE_MBOX_TRASH }, { "Junk", MAILSTORE_MBOX_JUNK },
	{ "Archive", MAILSTORE_MBOX_ARCHIVE },
};
#define N_SPECIAL (sizeof special_boxes / sizeof special_boxes[0])

/* ---- taking mailbox ids and UIDVALIDITYs --------------------------------- */

/* The counters for the mailboxes one batch creates. */
struct creator {
	uint64_t next_id;
	uint32_t uidvalidity;   /* every mailbox of the batch gets it */
	size_t made;
};

static int creator_begin(mailstore *s, const char *user, struct creator *cr)
{
	uint32_t last_uidvalidity;
	int ret = mailstore__counters_get(s, user, &cr->next_id, &last_uidvalidity);
	if (ret != MAIL_OK)
		return ret;
	/* Seconds since the epoch, but above every value handed out before, so
	 * a mailbox re-created with an old name never repeats its UIDVALIDITY. */
	int64_t now_s = mailstore__store_now_ms(s) / 1000;
	uint32_t uidvalidity = now_s > 0 && now_s < UINT32_MAX ? (uint32_t)now_s : 1;
	/* Replicated: the primary's clock only, so every replica computes the
	 * same value (the counter is per node, its partitions differ). */
	if (uidvalidity <= last_uidvalidity && !s->applying)
		uidvalidity = last_uidvalidity + 1;
	if (uidvalidity == 0)
		uidvalidity = 1;
	cr->uidvalidity = uidvalidity;
	cr->made = 0;
	return MAIL_OK;
}

/* A new empty mailbox record into *m (not written). */
static void creator_new(struct creator *cr, unsigned attrs, struct mbox *m)
{
	*m = (struct mbox){ .id = cr->next_id++, .uidvalidity = cr->uidvalidity, .uidnext = 1,
			    .attrs = attrs };
	cr->made++;
}

static void creator_end(struct creator *cr, leveldb_writebatch_t *wb)
{
	mailstore__batch_put_counters(wb, cr->next_id, cr->uidvalidity);
}

/* ---- small reads ----------------------------------------------------------- */

/* Keys starting with prefix, counted up to max + 1 (a bound, not a scan
 * of everything): MAIL_OK or INTERNAL. */
static int count_prefix(mailstore *s, const buf *prefix, size_t max, size_t *n_r)
{
	*n_r = 0;
	leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ropts);
	for (leveldb_iter_seek(it, (const char *)prefix->data, prefix->len);
	     leveldb_iter_valid(it) && *n_r <= max; leveldb_iter_next(it)) {
		size_t klen;
		const char *key = leveldb_iter_key(it, &klen);
		if (klen < prefix->len || memcmp(key, prefix->data, prefix->len) != 0)
			break;
		(*n_r)++;
	}
	return mailstore__db_iter_close(it);
}

/* 1 when user has a mailbox below name (name/...), 0 when not, -1 on a
 * read error. */
static int has_children(mailstore *s, const char *user, const char *name)
{
	buf prefix;
	buf_init(&prefix);
	key_mailbox(&prefix, user, name);
	buf_append(&prefix, "/", 1);
	size_t n;
	int ret = count_prefix(s, &prefix, 0, &n);
	buf_deinit(&prefix);
	return ret != MAIL_OK ? -1 : n > 0;
}

static int subscribed(mailstore *s, const char *user, const char *name)
{
	buf k;
	buf_init(&k);
	key_user_prefix(&k, KIND_SUBSCRIPTION, user);
	buf_append_str(&k, name);
	char *val;
	size_t len;
	int got = mailstore__db_get(s, &k, &val, &len);
	buf_deinit(&k);
	if (got == 1)
		leveldb_free(val);
	return got;
}

static void batch_subscription(leveldb_writebatch_t *wb, buf *k, const char *user,
			       const char *name, int on)
{
	key_user_prefix(k, KIND_SUBSCRIPTION, user);
	buf_append_str(k, name);
	uint8_t ver = VALUE_VERSION;
	if (on)
		leveldb_writebatch_put(wb, (const char *)k->data, k->len, (const char *)&ver, 1);
	else
		leveldb_writebatch_delete(wb, (const char *)k->data, k->len);
}

/* MAIL_OK when user may have `adding` more mailboxes, LIMIT when not. */
static int mailboxes_room(mailstore *s, const char *user, size_t adding)
{
	buf prefix;
	buf_init(&prefix);
	key_user_prefix(&prefix, KIND_MAILBOX, user);
	size_t n;
	int ret = count_prefix(s, &prefix, s->limits.max_mailboxes, &n);
	buf_deinit(&prefix);
	if (ret == MAIL_OK && n + adding > s->limits.max_mailboxes)
		ret = MAIL_ERR_LIMIT;
	return ret;
}

/* The missing ancestors of name (shortest first) into *names_r (heap
 * strings; caller frees each and the array). */
static int missing_parents(mailstore *s, const char *user, const char *name, char ***names_r,
			   size_t *n_r)
{
	*names_r = NULL;
	*n_r = 0;
	for (const char *p = strchr(name, '/'); p != NULL; p = strchr(p + 1, '/')) {
		char *parent = xstrndup(name, (size_t)(p - name));
		struct mbox pm;
		int ret = mailstore__mbox_get(s, user, parent, &pm);
		if (ret == MAIL_OK) {
			mailstore__mbox_deinit(&pm);
			free(parent);
			continue;
		}
		if (ret != MAIL_ERR_NOT_FOUND) {
			free(parent);
			mailstore__flags_free(*names_r, *n_r);
			*names_r = NULL;
			*n_r = 0;
			return ret;
		}
		*names_r = xrealloc(*names_r, (*n_r + 1) * sizeof **names_r);
		(*names_r)[(*n_r)++] = parent;
	}
	return MAIL_OK;
}

/* ---- create ------------------------------------------------------------------ */

int mailstore__mbox_create(mailstore *s, const char *user, const char *name, unsigned attrs,
			   struct mbox *m)
{
	int inbox = strcmp(name, MAILSTORE_INBOX) == 0;
	char **parents = NULL;
	size_t n_parents = 0;
	int ret = missing_parents(s, user, name, &parents, &n_parents);
	if (ret == MAIL_OK && !inbox)
		ret = mailboxes_room(s, user, 1 + n_parents);
	struct creator cr;
	if (ret == MAIL_OK)
		ret = creator_begin(s, user, &cr);
	if (ret != MAIL_OK) {
		mailstore__flags_free(parents, n_parents);
		return ret;
	}
	leveldb_writebatch_t *wb = leveldb_writebatch_create();
	buf k, v;
	buf_init(&k);
	buf_init(&v);
	struct mbox pm;
	for (size_t i = 0; i < n_parents; i++) {
		creator_new(&cr, 0, &pm);
		mailstore__batch_put_mbox(wb, &k, &v, user, parents[i], &pm);
	}
	creator_new(&cr, attrs, m);
	mailstore__batch_put_mbox(wb, &k, &v, user, name, m);
	if (inbox) {
		/* a new user: the special-use mailboxes come with INBOX */
		batch_subscription(wb, &k, user, MAILSTORE_INBOX, 1);
		for (size_t i = 0; i < N_SPECIAL && ret == MAIL_OK; i++) {
			ret = mailstore__mbox_get(s, user, special_boxes[i].name, &pm);
			if (ret == MAIL_OK) {
				mailstore__mbox_deinit(&pm);
				continue;
			}
			if (ret != MAIL_ERR_NOT_FOUND)
				break;
			ret = MAIL_OK;
			creator_new(&cr, special_boxes[i].attrs, &pm);
			mailstore__batch_put_mbox(wb, &k, &v, user, special_boxes[i].name, &pm);
			batch_subscription(wb, &k, user, special_boxes[i].name, 1);
		}
	}
	creator_end(&cr, wb);
	if (ret == MAIL_OK)
		ret = mailstore__db_write(s, wb, "mailbox_create");
	else
		leveldb_writebatch_destroy(wb);
	if (ret == MAIL_OK) {
		mailstore__note_change(s, user, name, m->highest_modseq, 0);
		log_event(LOG_DEBUG, LOG_SVC, "event=mailbox_created mailboxes=%zu", cr.made);
	}
	buf_deinit(&k);
	buf_deinit(&v);
	mailstore__flags_free(parents, n_parents);
	return ret;
}

static int special_use_valid(unsigned su)
{
	/* 0 or exactly one special-use bit */
	return (su & ~MAILSTORE_MBOX_SPECIAL_MASK) == 0 && (su & (su - 1)) == 0;
}

int mailstore_mailbox_create(mailstore *s, const char *user, const char *mailbox,
			     unsigned special_use, struct mailstore_mailbox_info *info_r)
{
	memset(info_r, 0, sizeof *info_r);
	buf tmp;
	buf_init(&tmp);
	const char *name = mailstore__mailbox_name(s, mailbox, &tmp);
	int ret = MAIL_ERR_PARAMS;
	if (mailstore__user_valid(s, user) && name != NULL && special_use_valid(special_use)) {
		pthread_mutex_lock(&s->lock);
		struct mbox m = { 0 };
		ret = mailstore__mbox_get(s, user, name, &m);
		if (ret == MAIL_OK) {
			ret = MAIL_ERR_EXISTS;
		} else if (ret == MAIL_ERR_NOT_FOUND && strcmp(name, MAILSTORE_INBOX) != 0) {
			/* a new user: INBOX and the special-use mailboxes first;
			 * one of those asked for is then made by this call */
			struct mbox in;
			ret = mailstore__mbox_get(s, user, MAILSTORE_INBOX, &in);
			if (ret == MAIL_OK) {
				mailstore__mbox_deinit(&in);
				ret = MAIL_ERR_NOT_FOUND;
			} else if (ret == MAIL_ERR_NOT_FOUND) {
				ret = mailstore__user_init(s, user);
				if (ret == MAIL_OK)
					ret = mailstore__mbox_get(s, user, name, &m);
				if (ret == MAIL_OK)
					mailstore__mbox_info_fill(info_r, name, &m);
			}
		}
		if (ret == MAIL_ERR_NOT_FOUND) {
			memset(&m, 0, sizeof m);
			ret = mailstore__mbox_create(s, user, name, special_use, &m);
			if (ret == MAIL_OK)
				mailstore__mbox_info_fill(info_r, name, &m);
		}
		mailstore__mbox_deinit(&m);
		mailstore__unlock(s);
	}
	buf_deinit(&tmp);
	return ret;
}

/* ---- delete and purge ------------------------------------------------------ */

static void key_garbage(buf *k, const char *user, uint64_t mbox_id)
{
	key_user_prefix(k, KIND_GARBAGE, user);
	put_u64(k, mbox_id);
}

static int delete_locked(mailstore *s, const char *user, const char *name)
{
	struct mbox m;
	int ret = mailstore__mbox_get(s, user, name, &m);
	if (ret != MAIL_OK)
		return ret;
	int children = has_children(s, user, name);
	if (children != 0) {
		mailstore__mbox_deinit(&m);
		return children < 0 ? MAIL_ERR_INTERNAL : MAIL_ERR_EXISTS;
	}
	leveldb_writebatch_t *wb = leveldb_writebatch_create();
	buf k;
	buf_init(&k);
	key_mailbox(&k, user, name);
	leveldb_writebatch_delete(wb, (const char *)k.data, k.len);
	key_garbage(&k, user, m.id);
	uint8_t ver = VALUE_VERSION;
	leveldb_writebatch_put(wb, (const char *)k.data, k.len, (const char *)&ver, 1);
	ret = mailstore__db_write(s, wb, "mailbox_delete");
	buf_deinit(&k);
	if (ret == MAIL_OK) {
		s->purge_pending = 1;
		mailstore__note_change(s, user, name, m.highest_modseq + 1, 1);
		log_event(LOG_INFO, LOG_SVC, "event=mailbox_deleted messages=%u", m.exists);
	}
	mailstore__mbox_deinit(&m);
	return ret;
}

int mailstore_mailbox_delete(mailstore *s, const char *user, const char *mailbox)
{
	buf tmp;
	buf_init(&tmp);
	const char *name = mailstore__mailbox_name(s, mailbox, &tmp);
	int ret = MAIL_ERR_PARAMS;
	if (mailstore__user_valid(s, user) && name != NULL) {
		if (strcmp(name, MAILSTORE_INBOX) == 0) {
			ret = MAIL_ERR_PERM;
		} else {
			pthread_mutex_lock(&s->lock);
			ret = mailstore__user_init(s, user);
			if (ret == MAIL_OK)
				ret = delete_locked(s, user, name);
			if (ret == MAIL_OK) {
				int did;
				(void)mailstore__purge_step(s, &did);
			}
			mailstore__unlock(s);
		}
	}
	buf_deinit(&tmp);
	return ret;
}

/* Delete every key of user's with prefix 01 kind <user> 00 into wb. */
static int purge_user_kind(mailstore *s, leveldb_writebatch_t *wb, const char *user, char kind)
{
	buf prefix;
	buf_init(&prefix);
	key_user_prefix(&prefix, kind, user);
	leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ropts);
	for (leveldb_iter_seek(it, (const char *)prefix.data, prefix.len); leveldb_iter_valid(it);
	     leveldb_iter_next(it)) {
		size_t klen;
		const char *key = leveldb_iter_key(it, &klen);
		if (klen < prefix.len || memcmp(key, prefix.data, prefix.len) != 0)
			break;
		leveldb_writebatch_delete(wb, key, klen);
	}
	buf_deinit(&prefix);
	return mailstore__db_iter_close(it);
}

int mailstore_user_purge(mailstore *s, const char *user, struct mailstore_purge_stats *st)
{
	memset(st, 0, sizeof *st);
	if (!mailstore__user_valid(s, user))
		return MAIL_ERR_PARAMS;
	pthread_mutex_lock(&s->lock);
	/* the mailboxes' names first (the batch deletes what it walks) */
	char **names = NULL;
	size_t n = 0, cap = 0;
	buf prefix;
	buf_init(&prefix);
	key_user_prefix(&prefix, KIND_MAILBOX, user);
	leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ropts);
	for (leveldb_iter_seek(it, (const char *)prefix.data, prefix.len); leveldb_iter_valid(it);
	     leveldb_iter_next(it)) {
		size_t klen;
		const char *key = leveldb_iter_key(it, &klen);
		if (klen < prefix.len || memcmp(key, prefix.data, prefix.len) != 0)
			break;
		if (n == cap) {
			cap = cap != 0 ? cap * 2 : 8;
			names = xrealloc(names, cap * sizeof *names);
		}
		names[n++] = xstrndup(key + prefix.len, klen - prefix.len);
	}
	int ret = mailstore__db_iter_close(it);
	leveldb_writebatch_t *wb = leveldb_writebatch_create();
	buf k;
	buf_init(&k);
	uint64_t *modseqs = xcalloc(n + 1, sizeof *modseqs);
	for (size_t i = 0; ret == MAIL_OK && i < n; i++) {
		struct mbox m;
		ret = mailstore__mbox_get(s, user, names[i], &m);
		if (ret != MAIL_OK)
			break;
		key_mailbox(&k, user, names[i]);
		leveldb_writebatch_delete(wb, (const char *)k.data, k.len);
		key_garbage(&k, user, m.id);
		uint8_t ver = VALUE_VERSION;
		leveldb_writebatch_put(wb, (const char *)k.data, k.len, (const char *)&ver, 1);
		st->mailboxes++;
		st->messages += m.exists;
		st->bytes += m.size;
		modseqs[i] = m.highest_modseq + 1;
		mailstore__mbox_deinit(&m);
	}
	static const char kinds[] = { KIND_SUBSCRIPTION, KIND_DELIVERY, KIND_DELIVERY_AGE };
	for (size_t i = 0; ret == MAIL_OK && i < sizeof kinds; i++)
		ret = purge_user_kind(s, wb, user, kinds[i]);
	if (ret == MAIL_OK)
		ret = mailstore__db_write(s, wb, "user_purge"); /* takes wb */
	else
		leveldb_writebatch_destroy(wb);
	if (ret == MAIL_OK) {
		if (n > 0)
			s->purge_pending = 1;
		for (size_t i = 0; i < n; i++)
			mailstore__note_change(s, user, names[i], modseqs[i], 1);
		int did;
		if (n > 0)
			(void)mailstore__purge_step(s, &did);
		log_event(LOG_INFO, LOG_SVC, "event=user_purged mailboxes=%u messages=%llu bytes=%llu",
			  st->mailboxes, (unsigned long long)st->messages,
			  (unsigned long long)st->bytes);
	} else {
		memset(st, 0, sizeof *st);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(modseqs);
	buf_deinit(&k);
	buf_deinit(&prefix);
	mailstore__unlock(s);
	return ret;
}

int mailstore__mbox_dead(mailstore *s, const leveldb_readoptions_t *ropts, const char *user,
			 size_t ulen, uint64_t mbox_id)
{
	buf k;
	buf_init(&k);
	uint8_t head[2] = { MAILSTORE_KEY_VERSION, KIND_GARBAGE };
	buf_append(&k, head, sizeof head);
	buf_append(&k, user, ulen);
	buf_append(&k, "", 1);
	put_u64(&k, mbox_id);
	char *err = NULL;
	size_t len;
	char *val = leveldb_get(s->db, ropts, (const char *)k.data, k.len, &len, &err);
	buf_deinit(&k);
	if (err != NULL) {
		mailstore__db_read_failed(err);
		return -1;
	}
	if (val == NULL)
		return 0;
	leveldb_free(val);
	return 1;
}

/* The kinds of a mailbox's keys a purge deletes (all end in mailbox_id
 * u64 | ...). */
static const char purge_kinds[] = { KIND_META,  KIND_BODY_PTR,  KIND_BODY,      KIND_DELETED,
				    KIND_UNSEEN, KIND_MODSEQ, KIND_TOMBSTONE, KIND_STRUCTURE };

int mailstore__purge_step(mailstore *s, int *did_r)
{
	*did_r = 0;
	uint8_t head[2] = { MAILSTORE_KEY_VERSION, KIND_GARBAGE };
	leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ropts);
	leveldb_iter_seek(it, (const char *)head, sizeof head);
	size_t gklen = 0;
	const char *gkey = leveldb_iter_valid(it) ? leveldb_iter_key(it, &gklen) : NULL;
	if (gkey == NULL || gklen < 2 || memcmp(gkey, head, sizeof head) != 0) {
		int ret = mailstore__db_iter_close(it);
		if (ret == MAIL_OK)
			s->purge_pending = 0;
		return ret;
	}
	buf g;
	buf_init(&g);
	buf_append(&g, gkey, gklen);
	leveldb_iter_destroy(it);
	const char *nul = memchr(g.data + 2, '\0', g.len - 2);
	if (nul == NULL || (size_t)((const char *)g.data + g.len - (nul + 1)) != 8) {
		/* not a key this version wrote: drop it */
		mailstore__log_corrupt("garbage", "");
		leveldb_writebatch_t *wb = leveldb_writebatch_create();
		leveldb_writebatch_delete(wb, (const char *)g.data, g.len);
		int ret = mailstore__db_commit(s, wb, "purge");
		buf_deinit(&g);
		return ret;
	}
	size_t ulen = (size_t)(nul - ((const char *)g.data + 2));
	size_t budget = s->limits.purge_step_keys;
	size_t n = 0;
	int ret = MAIL_OK;
	buf prefix;
	buf_init(&prefix);
	leveldb_writebatch_t *wb = leveldb_writebatch_create();
	bodystore_txn_begin(s->bodies, wb, 1);
	for (size_t i = 0; i < sizeof purge_kinds && n < budget && ret == MAIL_OK; i++) {
		buf_reset(&prefix);
		uint8_t kh[2] = { MAILSTORE_KEY_VERSION, (uint8_t)purge_kinds[i] };
		buf_append(&prefix, kh, sizeof kh);
		buf_append(&prefix, g.data + 2, ulen + 1 + 8);
		it = leveldb_create_iterator(s->db, s->ropts);
		for (leveldb_iter_seek(it, (const char *)prefix.data, prefix.len);
		     leveldb_iter_valid(it) && n < budget; leveldb_iter_next(it)) {
			size_t klen, vlen;
			const char *key = leveldb_iter_key(it, &klen);
			if (klen < prefix.len || memcmp(key, prefix.data, prefix.len) != 0)
				break;
			if (purge_kinds[i] == KIND_BODY_PTR) {
				const char *val = leveldb_iter_value(it, &vlen);
				(void)bodystore_unref_value(s->bodies, val, vlen);
			}
			leveldb_writebatch_delete(wb, key, klen);
			n++;
		}
		ret = mailstore__db_iter_close(it);
	}
	if (ret == MAIL_OK && n < budget)
		leveldb_writebatch_delete(wb, (const char *)g.data, g.len);   /* all gone */
	if (ret == MAIL_OK)
		ret = mailstore__bodies_write(s, wb, 0, "purge");
	else
		mailstore__bodies_abandon(s, wb);
	buf_deinit(&prefix);
	buf_deinit(&g);
	if (ret == MAIL_OK)
		*did_r = 1;
	return ret;
}

/* ---- rename ------------------------------------------------------------------ */

/* One mailbox a rename moves. */
struct move {
	char *from;
	char *to;
	struct mbox m;
};

static void moves_free(struct move *mv, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(mv[i].from);
		free(mv[i].to);
		mailstore__mbox_deinit(&mv[i].m);
	}
	free(mv);
}

struct moves_walk {
	struct move *mv;
	size_t n;
	const char *from, *to;
};

static int moves_add(void *arg, const char *name, struct mbox *m)
{
	struct moves_walk *w = arg;
	w->mv = xrealloc(w->mv, (w->n + 1) * sizeof *w->mv);
	struct move *e = &w->mv[w->n++];
	memset(e, 0, sizeof *e);
	e->m = *m;
	e->from = xstrdup(name);
	e->to = xasprintf("%s%s", w->to, name + strlen(w->from));
	return MAIL_OK;
}

/* from and its children, with their new names under to. */
static int moves_collect(mailstore *s, const char *user, const char *from, const char *to,
			 struct move **mv_r, size_t *n_r)
{
	struct moves_walk w = { xcalloc(1, sizeof *w.mv), 0, from, to };
	int ret = mailstore__mbox_get(s, user, from, &w.mv[0].m);
	if (ret != MAIL_OK) {
		free(w.mv);
		return ret;
	}
	w.mv[0].from = xstrdup(from);
	w.mv[0].to = xstrdup(to);
	w.n = 1;
	buf prefix;
	buf_init(&prefix);
	key_mailbox(&prefix, user, from);
	buf_append(&prefix, "/", 1);
	size_t head = prefix.len - strlen(from) - 1;   /* 01 'M' <user> 00 */
	ret = mailstore__mbox_walk_locked(s, user, &prefix, head, moves_add, &w);
	buf_deinit(&prefix);
	if (ret != MAIL_OK) {
		moves_free(w.mv, w.n);
		return ret;
	}
	*mv_r = w.mv;
	*n_r = w.n;
	return MAIL_OK;
}

/* INBOX: its messages go to a new mailbox `to` (INBOX's mailbox id, so
 * no message key moves), INBOX takes a new id and stays, empty, with its
 * UIDVALIDITY and uidnext. */
static int rename_inbox(mailstore *s, const char *user, const char *to, char **parents,
			size_t n_parents)
{
	struct mbox in;
	int ret = mailstore__mbox_open(s, user, MAILSTORE_INBOX, &in);
	if (ret != MAIL_OK)
		return ret;
	struct creator cr;
	ret = mailboxes_room(s, user, 1 + n_parents);
	if (ret == MAIL_OK)
		ret = creator_begin(s, user, &cr);
	if (ret != MAIL_OK) {
		mailstore__mbox_deinit(&in);
		return ret;
	}
	leveldb_writebatch_t *wb = leveldb_writebatch_create();
	buf k, v;
	buf_init(&k);
	buf_init(&v);
	struct mbox pm;
	for (size_t i = 0; i < n_parents; i++) {
		creator_new(&cr, 0, &pm);
		mailstore__batch_put_mbox(wb, &k, &v, user, parents[i], &pm);
	}
	struct mbox moved;
	mailstore__mbox_copy(&moved, &in);
	moved.uidvalidity = cr.uidvalidity;
	moved.attrs = 0;
	moved.legacy = 0;
	mailstore__batch_put_mbox(wb, &k, &v, user, to, &moved);
	struct mbox fresh;
	creator_new(&cr, in.attrs, &fresh);
	fresh.uidvalidity = in.uidvalidity;
	fresh.uidnext = in.uidnext;
	fresh.highest_modseq = in.highest_modseq + 1;
	fresh.expunge_floor = fresh.highest_modseq;
	mailstore__batch_put_mbox(wb, &k, &v, user, MAILSTORE_INBOX, &fresh);
	creator_end(&cr, wb);
	ret = mailstore__db_write(s, wb, "mailbox_rename");
	if (ret == MAIL_OK) {
		mailstore__note_change(s, user, MAILSTORE_INBOX, fresh.highest_modseq, 0);
		log_event(LOG_INFO, LOG_SVC, "event=mailbox_renamed inbox=1 messages=%u",
			  moved.exists);
	}
	buf_deinit(&k);
	buf_deinit(&v);
	mailstore__mbox_deinit(&moved);
	mailstore__mbox_deinit(&in);
	return ret;
}

static int rename_locked(mailstore *s, const char *user, const char *from, const char *to)
{
	char **parents = NULL;
	size_t n_parents = 0;
	struct move *mv = NULL;
	size_t n = 0;
	struct mbox tm;
	int ret = mailstore__mbox_get(s, user, to, &tm);
	if (ret == MAIL_OK) {
		mailstore__mbox_deinit(&tm);
		return MAIL_ERR_EXISTS;
	}
	if (ret != MAIL_ERR_NOT_FOUND)
		return ret;
	ret = missing_parents(s, user, to, &parents, &n_parents);
	if (ret != MAIL_OK)
		return ret;
	if (strcmp(from, MAILSTORE_INBOX) == 0) {
		ret = rename_inbox(s, user, to, parents, n_parents);
		mailstore__flags_free(parents, n_parents);
		return ret;
	}
	ret = moves_collect(s, user, from, to, &mv, &n);
	for (size_t i = 0; i < n && ret == MAIL_OK; i++) {
		if (strlen(mv[i].to) > s->limits.max_mailbox_name) {
			ret = MAIL_ERR_PARAMS;
			break;
		}
		if (i == 0)
			continue;
		ret = mailstore__mbox_get(s, user, mv[i].to, &tm);
		if (ret == MAIL_OK) {
			mailstore__mbox_deinit(&tm);
			ret = MAIL_ERR_EXISTS;
		} else if (ret == MAIL_ERR_NOT_FOUND) {
			ret = MAIL_OK;
		}
	}
	/* a missing parent of `to` that is one of the moved names (a/b ->
	 * a/b/c/d is refused earlier: to under from) cannot happen */
	if (ret == MAIL_OK && n_parents > 0)
		ret = mailboxes_room(s, user, n_parents);
	struct creator cr;
	if (ret == MAIL_OK)
		ret = creator_begin(s, user, &cr);
	if (ret != MAIL_OK) {
		moves_free(mv, n);
		mailstore__flags_free(parents, n_parents);
		return ret;
	}
	leveldb_writebatch_t *wb = leveldb_writebatch_create();
	buf k, v;
	buf_init(&k);
	buf_init(&v);
	struct mbox pm;
	for (size_t i = 0; i < n_parents; i++) {
		creator_new(&cr, 0, &pm);
		mailstore__batch_put_mbox(wb, &k, &v, user, parents[i], &pm);
	}
	for (size_t i = 0; i < n && ret == MAIL_OK; i++) {
		key_mailbox(&k, user, mv[i].from);
		leveldb_writebatch_delete(wb, (const char *)k.data, k.len);
		mv[i].m.uidvalidity = cr.uidvalidity;
		mv[i].m.legacy = 0;
		mailstore__batch_put_mbox(wb, &k, &v, user, mv[i].to, &mv[i].m);
		int sub = subscribed(s, user, mv[i].from);
		if (sub < 0) {
			ret = MAIL_ERR_INTERNAL;
		} else if (sub) {
			batch_subscription(wb, &k, user, mv[i].from, 0);
			batch_subscription(wb, &k, user, mv[i].to, 1);
		}
	}
	creator_end(&cr, wb);
	if (ret == MAIL_OK)
		ret = mailstore__db_write(s, wb, "mailbox_rename");
	else
		leveldb_writebatch_destroy(wb);
	if (ret == MAIL_OK) {
		for (size_t i = 0; i < n; i++)
			mailstore__note_change(s, user, mv[i].from, mv[i].m.highest_modseq, 1);
		log_event(LOG_INFO, LOG_SVC, "event=mailbox_renamed inbox=0 mailboxes=%zu", n);
	}
	buf_deinit(&k);
	buf_deinit(&v);
	moves_free(mv, n);
	mailstore__flags_free(parents, n_parents);
	return ret;
}

int mailstore_mailbox_rename(mailstore *s, const char *user, const char *from, const char *to)
{
	buf tmp_from, tmp_to;
	buf_init(&tmp_from);
	buf_init(&tmp_to);
	const char *fname = mailstore__mailbox_name(s, from, &tmp_from);
	const char *tname = mailstore__mailbox_name(s, to, &tmp_to);
	int ret = MAIL_ERR_PARAMS;
	size_t flen = fname != NULL ? strlen(fname) : 0;
	if (!mailstore__user_valid(s, user) || fname == NULL || tname == NULL) {
		ret = MAIL_ERR_PARAMS;
	} else if (strcmp(tname, MAILSTORE_INBOX) == 0 || strcmp(fname, tname) == 0) {
		ret = MAIL_ERR_EXISTS;
	} else if (strncmp(tname, fname, flen) == 0 && tname[flen] == '/' &&
		   strcmp(fname, MAILSTORE_INBOX) != 0) {
		ret = MAIL_ERR_PARAMS;   /* under itself */
	} else {
		pthread_mutex_lock(&s->lock);
		ret = mailstore__user_init(s, user);
		if (ret == MAIL_OK)
			ret = rename_locked(s, user, fname, tname);
		mailstore__unlock(s);
	}
	buf_deinit(&tmp_from);
	buf_deinit(&tmp_to);
	return ret;
}

/* ---- subscriptions ------------------------------------------------------------ */

int mailstore_subscribe(mailstore *s, const char *user, const char *mailbox, int on)
{
	buf tmp;
	buf_init(&tmp);
	const char *name = mailstore__mailbox_name(s, mailbox, &tmp);
	int ret = MAIL_ERR_PARAMS;
	if (mailstore__user_valid(s, user) && name != NULL) {
		pthread_mutex_lock(&s->lock);
		int sub = subscribed(s, user, name);
		ret = sub < 0 ? MAIL_ERR_INTERNAL : MAIL_OK;
		if (ret == MAIL_OK && on && !sub) {
			buf prefix;
			buf_init(&prefix);
			key_user_prefix(&prefix, KIND_SUBSCRIPTION, user);
			size_t n;
			ret = count_prefix(s, &prefix, s->limits.max_subscriptions, &n);
			if (ret == MAIL_OK && n >= s->limits.max_subscriptions)
				ret = MAIL_ERR_LIMIT;
			buf_deinit(&prefix);
		}
		/* written even when nothing changes: a replicated entry
		 * records its index */
		if (ret == MAIL_OK) {
			leveldb_writebatch_t *wb = leveldb_writebatch_create();
			buf k;
			buf_init(&k);
			batch_subscription(wb, &k, user, name, on);
			ret = mailstore__db_write(s, wb, "subscribe");
			buf_deinit(&k);
		}
		mailstore__unlock(s);
	}
	buf_deinit(&tmp);
	return ret;
}

/* user's subscribed names, sorted (strcmp, the key order). */
static int subscriptions_locked(mailstore *s, const char *user, char ***names_r, size_t *n_r)
{
	*names_r = NULL;
	*n_r = 0;
	buf prefix;
	buf_init(&prefix);
	key_user_prefix(&prefix, KIND_SUBSCRIPTION, user);
	char **names = NULL;
	size_t n = 0;
	leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ropts);
	for (leveldb_iter_seek(it, (const char *)prefix.data, prefix.len); leveldb_iter_valid(it);
	     leveldb_iter_next(it)) {
		size_t klen;
		const char *key = leveldb_iter_key(it, &klen);
		if (klen <= prefix.len || memcmp(key, prefix.data, prefix.len) != 0)
			break;
		names = xrealloc(names, (n + 1) * sizeof *names);
		names[n++] = xstrndup(key + prefix.len, klen - prefix.len);
	}
	int ret = mailstore__db_iter_close(it);
	buf_deinit(&prefix);
	if (ret != MAIL_OK) {
		mailstore_names_free(names, n);
		return ret;
	}
	*names_r = names;
	*n_r = n;
	return MAIL_OK;
}

int mailstore_subscriptions(mailstore *s, const char *user, char ***names_r, size_t *n_r)
{
	*names_r = NULL;
	*n_r = 0;
	if (!mailstore__user_valid(s, user))
		return MAIL_ERR_PARAMS;
	pthread_mutex_lock(&s->lock);
	int ret = subscriptions_locked(s, user, names_r, n_r);
	pthread_mutex_unlock(&s->lock);
	return ret;
}

void mailstore_names_free(char **names, size_t n)
{
	mailstore__flags_free(names, n);
}

/* ---- STATUS and LIST ------------------------------------------------------------ */

int mailstore_status(mailstore *s, const char *user, const char *mailbox,
		     struct mailstore_mailbox_info *info_r)
{
	memset(info_r, 0, sizeof *info_r);
	buf tmp;
	buf_init(&tmp);
	const char *name = mailstore__mailbox_name(s, mailbox, &tmp);
	int ret = MAIL_ERR_PARAMS;
	if (mailstore__user_valid(s, user) && name != NULL) {
		pthread_mutex_lock(&s->lock);
		struct mbox m = { 0 };
		ret = mailstore__mbox_open(s, user, name, &m);
		if (ret == MAIL_OK) {
			mailstore__mbox_info_fill(info_r, name, &m);
			int sub = subscribed(s, user, name);
			if (sub > 0)
				info_r->attrs |= MAILSTORE_MBOX_SUBSCRIBED;
			/* the record's keywords move to the result */
			info_r->keywords = m.keywords;
			info_r->n_keywords = m.n_keywords;
			m.keywords = NULL;
			m.n_keywords = 0;
		}
		mailstore__mbox_deinit(&m);
		mailstore__unlock(s);
	}
	buf_deinit(&tmp);
	return ret;
}

struct list_walk {
	struct mailstore_mailbox_info *boxes;
	size_t n, cap;
	char **subs;
	size_t n_subs, sub_i;
};

static int list_add(void *arg, const char *name, struct mbox *m)
{
	struct list_walk *w = arg;
	if (w->n == w->cap) {
		w->cap = w->cap > 0 ? w->cap * 2 : 8;
		w->boxes = xrealloc(w->boxes, w->cap * sizeof *w->boxes);
	}
	struct mailstore_mailbox_info *b = &w->boxes[w->n++];
	memset(b, 0, sizeof *b);
	mailstore__mbox_info_fill(b, name, m);
	mailstore__mbox_deinit(m);
	/* both lists are in strcmp order: walk them together */
	while (w->sub_i < w->n_subs && strcmp(w->subs[w->sub_i], name) < 0)
		w->sub_i++;
	if (w->sub_i < w->n_subs && strcmp(w->subs[w->sub_i], name) == 0)
		b->attrs |= MAILSTORE_MBOX_SUBSCRIBED;
	return MAIL_OK;
}

static int list_locked(mailstore *s, const char *user, struct mailstore_mailbox_info **boxes_r,
		       size_t *n_r)
{
	struct mbox m;
	int ret = mailstore__mbox_open(s, user, MAILSTORE_INBOX, &m);
	if (ret != MAIL_OK)
		return ret;
	mailstore__mbox_deinit(&m);
	struct list_walk w = { 0 };
	ret = subscriptions_locked(s, user, &w.subs, &w.n_subs);
	if (ret != MAIL_OK)
		return ret;
	buf prefix;
	buf_init(&prefix);
	key_user_prefix(&prefix, KIND_MAILBOX, user);
	ret = mailstore__mbox_walk_locked(s, user, &prefix, prefix.len, list_add, &w);
	buf_deinit(&prefix);
	mailstore_names_free(w.subs, w.n_subs);
	if (ret != MAIL_OK) {
		mailstore_mailbox_infos_free(w.boxes, w.n);
		return ret;
	}
	*boxes_r = w.boxes;
	*n_r = w.n;
	return MAIL_OK;
}

int mailstore_list(mailstore *s, const char *user, struct mailstore_mailbox_info **boxes_r,
		   size_t *n_r)
{
	*boxes_r = NULL;
	*n_r = 0;
	if (!mailstore__user_valid(s, user))
		return MAIL_ERR_PARAMS;
	pthread_mutex_lock(&s->lock);
	int ret = list_locked(s, user, boxes_r, n_r);
	mailstore__unlock(s);
	return ret;
}
