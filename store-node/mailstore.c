/* mailstore.c: mailboxes on LevelDB. The key schema is documented in
 * mailstore.h; this file keeps to it byte for byte. */
#include "mailstore-private.h"

#include "store-structure.h"

#include "bodystore.h"
#include "buf.h"
#include "log.h"
#include "mail-error.h"
#include "util.h"
#include "xalloc.h"

#include <leveldb/c.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static const char *const system_flags[] = {
	"\\Answered", "\\Deleted", "\\Draft", "\\Flagged", "\\Seen",
};

void mailstore_limits_default(struct mailstore_limits *limits_r)
{
	limits_r->max_message_size = 64u * 1024u * 1024u;
	limits_r->max_flags = 64;
	limits_r->max_flag_len = 128;
	limits_r->max_mailbox_name = 255;
	limits_r->max_user_len = 254;
	limits_r->max_delivery_id = 255;
	limits_r->delivery_keep_ms = MAILSTORE_DELIVERY_KEEP_DEFAULT_MS;
	limits_r->body_segment_size = 64u * 1024u * 1024u;
	limits_r->body_collect_live_pct = 50;
	limits_r->body_collect_step = 1024u * 1024u;
	limits_r->body_open_segments = 64;
	limits_r->body_inline_max = 16u * 1024u;
	limits_r->max_mailboxes = 1000;
	limits_r->max_subscriptions = 1000;
	limits_r->max_mailbox_keywords = 128;
	limits_r->max_tombstones = 65536;
	limits_r->max_append_messages = 1000;
	limits_r->max_append_bytes = 64u * 1024u * 1024u;
	limits_r->max_copy_messages = 10000;
	limits_r->max_copy_bytes = 256u * 1024u * 1024u;
	limits_r->page_scan_keys = 20000;
	limits_r->page_max_messages = 1000;
	limits_r->page_max_bytes = 4u * 1024u * 1024u;
	limits_r->purge_step_keys = 5000;
}

/* ---- encoding -------------------------------------------------------- */

/* 'Z' (a message flagged \Deleted) to wb: put when on, else delete. The
 * key is the message's 'I' key with another kind byte. */
void mailstore__batch_mark_deleted(leveldb_writebatch_t *wb, buf *k, const char *user,
			       uint64_t mbox_id, uint32_t uid, int on)
{
	key_message(k, KIND_DELETED, user, mbox_id, uid);
	if (on) {
		uint8_t ver = VALUE_VERSION;
		leveldb_writebatch_put(wb, (const char *)k->data, k->len, (const char *)&ver, 1);
	} else {
		leveldb_writebatch_delete(wb, (const char *)k->data, k->len);
	}
}

/* The 'Z' record of the message whose 'I' key is key (same layout, other
 * kind byte) to wb. */
void mailstore__batch_put_deleted_of_meta(leveldb_writebatch_t *wb, const void *key, size_t klen)
{
	uint8_t *z = xmalloc(klen);
	memcpy(z, key, klen);
	z[1] = KIND_DELETED;
	uint8_t ver = VALUE_VERSION;
	leveldb_writebatch_put(wb, (const char *)z, klen, (const char *)&ver, 1);
	free(z);
}

void mailstore__meta_encode(buf *v, const struct mailstore_message_info *mi)
{
	buf_reset(v);
	uint8_t ver = VALUE_VERSION;
	buf_append(v, &ver, 1);
	put_u64(v, mi->size);
	put_u64(v, (uint64_t)mi->internal_date);
	put_u64(v, mi->modseq);
	put_u16(v, (uint16_t)mi->n_flags);
	for (size_t i = 0; i < mi->n_flags; i++) {
		size_t fl = strlen(mi->flags[i]);
		put_u16(v, (uint16_t)fl);
		buf_append(v, mi->flags[i], fl);
	}
}

int mailstore__meta_decode(const uint8_t *p, size_t len, uint32_t uid,
		       struct mailstore_message_info *mi)
{
	memset(mi, 0, sizeof *mi);
	if (len < META_FIXED_LEN || p[0] != VALUE_VERSION)
		return -1;
	mi->uid = uid;
	mi->size = get_u64(p + 1);
	mi->internal_date = (int64_t)get_u64(p + 9);
	mi->modseq = get_u64(p + 17);
	size_t off = META_FIXED_LEN;
	if (mailstore__strlist_decode(p, len, &off, get_u16(p + 25), &mi->flags, &mi->n_flags) < 0) {
		mailstore_message_info_free(mi);
		return -1;
	}
	return 0;
}

int mailstore__strlist_decode(const uint8_t *p, size_t len, size_t *off_r, size_t n,
			      char ***v_r, size_t *n_r)
{
	size_t off = *off_r;
	*v_r = n > 0 ? xcalloc(n, sizeof **v_r) : NULL;
	for (size_t i = 0; i < n; i++) {
		if (len - off < 2)
			return -1;
		size_t sl = get_u16(p + off);
		off += 2;
		if (len - off < sl)
			return -1;
		(*v_r)[i] = xstrndup((const char *)p + off, sl);
		(*n_r)++;
		off += sl;
	}
	*off_r = off;
	return 0;
}

/* ---- validation ------------------------------------------------------- */

/* user is len bytes (not NUL-terminated): see mailstore__user_valid(). */
int mailstore__user_valid_len(const mailstore *s, const char *user, size_t len)
{
	if (len == 0 || len > s->limits.max_user_len)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)user[i];
		if (c <= 0x20 || c == 0x7f)
			return 0;
	}
	return 1;
}

int mailstore__user_valid(const mailstore *s, const char *user)
{
	return mailstore__user_valid_len(s, user, strlen(user));
}

/* The stored name of mailbox, or NULL when it is not a valid name. */
const char *mailstore__mailbox_name(const mailstore *s, const char *name, buf *tmp)
{
	size_t len = strlen(name);
	if (len == 0 || strcasecmp(name, MAILSTORE_INBOX) == 0)
		return MAILSTORE_INBOX;
	if (len > s->limits.max_mailbox_name)
		return NULL;
	if (name[0] == '/' || name[len - 1] == '/' || strstr(name, "//") != NULL)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c < 0x20 || c == 0x7f || c == '*' || c == '%')
			return NULL;
	}
	/* INBOX's children: INBOX/x whatever the case of the prefix */
	if (len > 6 && strncasecmp(name, "INBOX/", 6) == 0 && strncmp(name, "INBOX/", 6) != 0) {
		buf_reset(tmp);
		buf_append_str(tmp, "INBOX/");
		buf_append_str(tmp, name + 6);
		return (const char *)tmp->data;
	}
	return name;
}

static int keyword_char_ok(unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return 0;
	return strchr("(){%*\"\\]", c) == NULL;
}

static int flag_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void mailstore__flags_free(char **flags, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(flags[i]);
	free(flags);
}

/* Sort and drop duplicates in place (freeing them). */
void mailstore__flags_sort_unique(char **flags, size_t *n)
{
	if (*n < 2)
		return;
	qsort(flags, *n, sizeof *flags, flag_cmp);
	size_t o = 1;
	for (size_t i = 1; i < *n; i++) {
		if (strcmp(flags[i], flags[o - 1]) == 0)
			free(flags[i]);
		else
			flags[o++] = flags[i];
	}
	*n = o;
}

/* Validate and canonicalise caller flags into a sorted, unique heap array
 * (NULL when empty). */
int mailstore__flags_normalize(const mailstore *s, const char *const *in, size_t n_in,
			   char ***out_r, size_t *n_r)
{
	*out_r = NULL;
	*n_r = 0;
	if (n_in > s->limits.max_flags)
		return MAIL_ERR_LIMIT;
	if (n_in == 0)
		return MAIL_OK;
	char **out = xcalloc(n_in, sizeof *out);
	size_t n = 0;
	for (size_t i = 0; i < n_in; i++) {
		const char *f = in[i];
		size_t len = f != NULL ? strlen(f) : 0;
		int ret = MAIL_OK;
		if (len == 0)
			ret = MAIL_ERR_PARAMS;
		else if (len > s->limits.max_flag_len)
			ret = MAIL_ERR_LIMIT;
		if (ret != MAIL_OK) {
			mailstore__flags_free(out, n);
			return ret;
		}
		if (f[0] == '\\') {
			if (strcasecmp(f, "\\Recent") == 0)
				continue;
			const char *canon = NULL;
			for (size_t j = 0; j < sizeof system_flags / sizeof *system_flags; j++) {
				if (strcasecmp(f, system_flags[j]) == 0)
					canon = system_flags[j];
			}
			if (canon == NULL) {
				mailstore__flags_free(out, n);
				return MAIL_ERR_PARAMS;
			}
			out[n++] = xstrdup(canon);
			continue;
		}
		for (size_t j = 0; j < len; j++) {
			if (!keyword_char_ok((unsigned char)f[j])) {
				mailstore__flags_free(out, n);
				return MAIL_ERR_PARAMS;
			}
		}
		out[n++] = xstrdup(f);
	}
	mailstore__flags_sort_unique(out, &n);
	if (n == 0) {
		free(out);
		out = NULL;
	}
	*out_r = out;
	*n_r = n;
	return MAIL_OK;
}

int mailstore__flags_has(char *const *flags, size_t n, const char *flag)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(flags[i], flag) == 0)
			return 1;
	}
	return 0;
}

int mailstore__flags_equal(char *const *a, size_t na, char *const *b, size_t nb)
{
	if (na != nb)
		return 0;
	for (size_t i = 0; i < na; i++) {
		if (strcmp(a[i], b[i]) != 0)
			return 0;
	}
	return 1;
}

/* old (sorted) combined with req (sorted) by mode, into a new heap array. */
void mailstore__flags_apply(char *const *old, size_t n_old, char *const *req, size_t n_req,
			enum mailstore_flag_mode mode, char ***out_r, size_t *n_r)
{
	size_t cap = n_old + n_req;
	char **out = cap > 0 ? xcalloc(cap, sizeof *out) : NULL;
	size_t n = 0;
	if (mode == MAILSTORE_FLAGS_SET) {
		for (size_t i = 0; i < n_req; i++)
			out[n++] = xstrdup(req[i]);
	} else if (mode == MAILSTORE_FLAGS_ADD) {
		for (size_t i = 0; i < n_old; i++)
			out[n++] = xstrdup(old[i]);
		for (size_t i = 0; i < n_req; i++)
			out[n++] = xstrdup(req[i]);
		mailstore__flags_sort_unique(out, &n);
	} else {
		for (size_t i = 0; i < n_old; i++) {
			if (!mailstore__flags_has(req, n_req, old[i]))
				out[n++] = xstrdup(old[i]);
		}
	}
	*out_r = out;
	*n_r = n;
}

static int uid_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* A sorted, unique heap copy of uids. */
uint32_t *mailstore__uids_sorted(const uint32_t *uids, size_t n, size_t *n_r)
{
	*n_r = 0;
	if (n == 0)
		return NULL;
	uint32_t *out = xmalloc(n * sizeof *out);
	memcpy(out, uids, n * sizeof *out);
	qsort(out, n, sizeof *out, uid_cmp);
	size_t o = 1;
	for (size_t i = 1; i < n; i++) {
		if (out[i] != out[o - 1])
			out[o++] = out[i];
	}
	*n_r = o;
	return out;
}

/* ---- LevelDB access --------------------------------------------------- */

void mailstore__batch_put_applied(leveldb_writebatch_t *wb, uint32_t partition, uint64_t index)
{
	buf k, v;
	buf_init(&k);
	buf_init(&v);
	key_applied(&k, partition);
	uint8_t ver = VALUE_VERSION;
	buf_append(&v, &ver, 1);
	put_u64(&v, index);
	leveldb_writebatch_put(wb, (const char *)k.data, k.len, (const char *)v.data, v.len);
	buf_deinit(&k);
	buf_deinit(&v);
}

/* Write wb (sync, unless applying with deferred syncs: then the apply
 * barrier syncs it) and destroy it. what names the operation in the log. */
int mailstore__db_commit(mailstore *s, leveldb_writebatch_t *wb, const char *what)
{
	char *err = NULL;
	int defer = s->applying && s->apply_defer_sync;
	leveldb_write(s->db, defer ? s->wopts_nosync : s->wopts, wb, &err);
	if (defer)
		s->apply_unsynced = 1;
	leveldb_writebatch_destroy(wb);
	if (err != NULL) {
		char q[256];
		log_event(LOG_ERROR, LOG_SVC, "event=db_write_failed op=%s error=%s", what,
			  log_quote(q, sizeof q, err, strlen(err)));
		leveldb_free(err);
		return MAIL_ERR_INTERNAL;
	}
	return MAIL_OK;
}

/* mailstore__db_commit; while a replicated entry is applied, its index goes in the
 * same batch as the change. */
int mailstore__db_write(mailstore *s, leveldb_writebatch_t *wb, const char *what)
{
	if (s->applying)
		mailstore__batch_put_applied(wb, s->apply.partition, s->apply.index);
	return mailstore__db_commit(s, wb, what);
}

/* mailstore__db_write (apply = 1) or mailstore__db_commit of a batch built inside a bodystore
 * write (bodystore_txn_begin): the appended bodies are made durable before
 * the batch that points at them, and the bodystore learns whether the
 * batch was written. Destroys wb. */
int mailstore__bodies_write(mailstore *s, leveldb_writebatch_t *wb, int apply, const char *what)
{
	int ret;
	if (bodystore_txn_prepare(s->bodies) < 0) {
		leveldb_writebatch_destroy(wb);
		ret = MAIL_ERR_INTERNAL;
	} else {
		ret = apply ? mailstore__db_write(s, wb, what) : mailstore__db_commit(s, wb, what);
	}
	bodystore_txn_end(s->bodies, ret == MAIL_OK);
	return ret;
}

/* Give up a batch built inside a bodystore write: what was appended is
 * garbage. */
void mailstore__bodies_abandon(mailstore *s, leveldb_writebatch_t *wb)
{
	leveldb_writebatch_destroy(wb);
	bodystore_txn_end(s->bodies, 0);
}

/* After a write: one bounded collection step when a segment waits for
 * one (limits.body_collect_step bytes at most, its own sync batch). A
 * failure is logged and does not fail the write. Under lock. */
void mailstore__bodies_collect_after_write(mailstore *s)
{
	if (bodystore_collect_pending(s->bodies))
		(void)bodystore_collect_step(s->bodies);
}

/* Log a LevelDB read error and free it. */
void mailstore__db_read_failed(char *err)
{
	char q[256];
	log_event(LOG_ERROR, LOG_SVC, "event=mailstore__db_read_failed error=%s",
		  log_quote(q, sizeof q, err, strlen(err)));
	leveldb_free(err);
}

/* Destroy an iterator after a scan: MAIL_OK, or MAIL_ERR_INTERNAL (logged)
 * when the scan stopped on a read error rather than at the end. */
int mailstore__db_iter_close(leveldb_iterator_t *it)
{
	char *err = NULL;
	leveldb_iter_get_error(it, &err);
	leveldb_iter_destroy(it);
	if (err == NULL)
		return MAIL_OK;
	mailstore__db_read_failed(err);
	return MAIL_ERR_INTERNAL;
}

/* Returns 1 with *val_r (leveldb_free it), 0 when missing, <0 on error. */
int mailstore__db_get(mailstore *s, const buf *key, char **val_r, size_t *len_r)
{
	char *err = NULL;
	*val_r = leveldb_get(s->db, s->ropts, (const char *)key->data, key->len, len_r, &err);
	if (err != NULL) {
		mailstore__db_read_failed(err);
		return -1;
	}
	return *val_r != NULL;
}

void mailstore__log_corrupt(const char *what, const char *user)
{
	char q[300];
	log_event(LOG_ERROR, LOG_SVC, "event=db_corrupt record=%s user=%s", what,
		  log_quote(q, sizeof q, user, strlen(user)));
}

int mailstore__mbox_get(mailstore *s, const char *user, const char *name, struct mbox *m)
{
	buf k;
	buf_init(&k);
	key_mailbox(&k, user, name);
	char *val;
	size_t len;
	int ret = mailstore__db_get(s, &k, &val, &len);
	buf_deinit(&k);
	if (ret < 0)
		return MAIL_ERR_INTERNAL;
	if (ret == 0)
		return MAIL_ERR_NOT_FOUND;
	ret = mailstore__mbox_decode((const uint8_t *)val, len, m);
	leveldb_free(val);
	if (ret < 0) {
		mailstore__log_corrupt("mailbox", user);
		return MAIL_ERR_INTERNAL;
	}
	/* written by a version before the counters (a downgrade, or a
	 * snapshot of an older exporter): count them now, the next write of
	 * the mailbox stores them */
	if (m->legacy && mailstore__mbox_recount(s, user, m) != MAIL_OK) {
		mailstore__mbox_deinit(m);
		return MAIL_ERR_INTERNAL;
	}
	return MAIL_OK;
}

/* The 'C' counters (1 and 0 when there are none yet): MAIL_OK, or
 * MAIL_ERR_INTERNAL (logged, naming user) on a read error or a corrupt
 * record. */
int mailstore__counters_get(mailstore *s, const char *user, uint64_t *next_id_r,
			uint32_t *last_uidvalidity_r)
{
	*next_id_r = 1;
	*last_uidvalidity_r = 0;
	buf k;
	buf_init(&k);
	key_counters(&k);
	char *val;
	size_t len;
	int ret = mailstore__db_get(s, &k, &val, &len);
	buf_deinit(&k);
	if (ret < 0)
		return MAIL_ERR_INTERNAL;
	if (ret == 0)
		return MAIL_OK;
	const uint8_t *p = (const uint8_t *)val;
	int ok = len >= COUNTERS_VALUE_LEN && p[0] == VALUE_VERSION;
	if (ok) {
		*next_id_r = get_u64(p + 1);
		*last_uidvalidity_r = get_u32(p + 9);
	}
	leveldb_free(val);
	if (!ok) {
		mailstore__log_corrupt("counters", user);
		return MAIL_ERR_INTERNAL;
	}
	return MAIL_OK;
}

void mailstore__batch_put_counters(leveldb_writebatch_t *wb, uint64_t next_id,
			       uint32_t last_uidvalidity)
{
	buf k, v;
	buf_init(&k);
	buf_init(&v);
	key_counters(&k);
	uint8_t ver = VALUE_VERSION;
	buf_append(&v, &ver, 1);
	put_u64(&v, next_id);
	put_u32(&v, last_uidvalidity);
	leveldb_writebatch_put(wb, (const char *)k.data, k.len, (const char *)v.data, v.len);
	buf_deinit(&k);
	buf_deinit(&v);
}

/* The mailbox, creating INBOX on first use. */
int mailstore__mbox_open(mailstore *s, const char *user, const char *name, struct mbox *m)
{
	int ret = mailstore__mbox_get(s, user, name, m);
	if (ret != MAIL_ERR_NOT_FOUND)
		return ret;
	if (strcmp(name, MAILSTORE_INBOX) == 0)
		return mailstore__mbox_create(s, user, name, 0, m);
	/* a new user's first call names another mailbox (APPEND to Sent):
	 * INBOX and the special-use mailboxes come first */
	ret = mailstore__user_init(s, user);
	if (ret == MAIL_OK)
		ret = mailstore__mbox_get(s, user, name, m);
	return ret;
}

int mailstore__user_init(mailstore *s, const char *user)
{
	struct mbox in;
	int ret = mailstore__mbox_get(s, user, MAILSTORE_INBOX, &in);
	if (ret == MAIL_ERR_NOT_FOUND)
		ret = mailstore__mbox_create(s, user, MAILSTORE_INBOX, 0, &in);
	if (ret == MAIL_OK)
		mailstore__mbox_deinit(&in);
	return ret;
}

void mailstore__batch_put_mbox(leveldb_writebatch_t *wb, buf *k, buf *v, const char *user,
			   const char *name, const struct mbox *m)
{
	key_mailbox(k, user, name);
	mailstore__mbox_encode(v, m);
	leveldb_writebatch_put(wb, (const char *)k->data, k->len, (const char *)v->data, v->len);
}

/* Meta of one message: MAIL_OK, NOT_FOUND or INTERNAL. */
int mailstore__meta_get(mailstore *s, const char *user, const struct mbox *m, uint32_t uid,
		    struct mailstore_message_info *mi)
{
	buf k;
	buf_init(&k);
	key_message(&k, KIND_META, user, m->id, uid);
	char *val;
	size_t len;
	int ret = mailstore__db_get(s, &k, &val, &len);
	buf_deinit(&k);
	if (ret < 0)
		return MAIL_ERR_INTERNAL;
	if (ret == 0)
		return MAIL_ERR_NOT_FOUND;
	ret = mailstore__meta_decode((const uint8_t *)val, len, uid, mi);
	leveldb_free(val);
	if (ret < 0) {
		mailstore__log_corrupt("message", user);
		return MAIL_ERR_INTERNAL;
	}
	return MAIL_OK;
}

/* Every message of mailbox m ascending by uid. */
static int meta_scan(mailstore *s, const char *user, const struct mbox *m,
		     struct mailstore_message_info **msgs_r, size_t *n_r)
{
	buf prefix;
	buf_init(&prefix);
	key_user_prefix(&prefix, KIND_META, user);
	put_u64(&prefix, m->id);
	struct mailstore_message_info *msgs = NULL;
	size_t n = 0, cap = 0;
	int ret = MAIL_OK;
	buf k;
	buf_init(&k);
	key_message(&k, KIND_META, user, m->id, m->uid_floor);
	leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ropts);
	leveldb_iter_seek(it, (const char *)k.data, k.len);
	buf_deinit(&k);
	for (; leveldb_iter_valid(it);
	     leveldb_iter_next(it)) {
		size_t klen, vlen;
		const char *key = leveldb_iter_key(it, &klen);
		if (klen != prefix.len + 4 || memcmp(key, prefix.data, prefix.len) != 0)
			break;
		const char *val = leveldb_iter_value(it, &vlen);
		if (n == cap) {
			cap = cap > 0 ? cap * 2 : 16;
			msgs = xrealloc(msgs, cap * sizeof *msgs);
		}
		uint32_t uid = get_u32((const uint8_t *)key + prefix.len);
		if (mailstore__meta_decode((const uint8_t *)val, vlen, uid, &msgs[n]) < 0) {
			mailstore__log_corrupt("message", user);
			ret = MAIL_ERR_INTERNAL;
			break;
		}
		n++;
	}
	if (mailstore__db_iter_close(it) != MAIL_OK)
		ret = MAIL_ERR_INTERNAL;
	buf_deinit(&prefix);
	if (ret != MAIL_OK) {
		mailstore_message_infos_free(msgs, n);
		return ret;
	}
	*msgs_r = msgs;
	*n_r = n;
	return MAIL_OK;
}

/* The uids of mailbox m's messages flagged \Deleted ('Z' records),
 * ascending; *uids_r NULL when there are none. */
static int deleted_scan(mailstore *s, const char *user, const struct mbox *m,
			uint32_t **uids_r, size_t *n_r)
{
	buf prefix;
	buf_init(&prefix);
	key_user_prefix(&prefix, KIND_DELETED, user);
	put_u64(&prefix, m->id);
	uint32_t *uids = NULL;
	size_t n = 0, cap = 0;
	*uids_r = NULL;
	*n_r = 0;
	if (m->deleted == 0 && !m->legacy) {
		buf_deinit(&prefix);
		return MAIL_OK;
	}
	buf k;
	buf_init(&k);
	key_message(&k, KIND_DELETED, user, m->id, m->uid_floor);
	leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ropts);
	leveldb_iter_seek(it, (const char *)k.data, k.len);
	buf_deinit(&k);
	for (; leveldb_iter_valid(it);
	     leveldb_iter_next(it)) {
		size_t klen;
		const char *key = leveldb_iter_key(it, &klen);
		if (klen != prefix.len + 4 || memcmp(key, prefix.data, prefix.len) != 0)
			break;
		if (n == cap) {
			cap = cap > 0 ? cap * 2 : 16;
			uids = xrealloc(uids, cap * sizeof *uids);
		}
		uids[n++] = get_u32((const uint8_t *)key + prefix.len);
	}
	int ret = mailstore__db_iter_close(it);
	buf_deinit(&prefix);
	if (ret != MAIL_OK) {
		free(uids);
		return ret;
	}
	*uids_r = uids;
	*n_r = n;
	return MAIL_OK;
}

void mailstore__mbox_info_fill(struct mailstore_mailbox_info *info, const char *name,
			       const struct mbox *m)
{
	info->name = xstrdup(name);
	info->uidvalidity = m->uidvalidity;
	info->uidnext = m->uidnext;
	info->exists = m->exists;
	info->highest_modseq = m->highest_modseq;
	info->unseen = m->unseen;
	info->deleted = m->deleted;
	info->size = m->size;
	info->attrs = m->attrs;
}

/* The partition of a user: router_partition_of() (router/router.h), which
 * this library cannot link; test-mailstore.c checks that the two agree. */
uint32_t mailstore__user_partition(const void *user, size_t len, uint32_t n_partitions)
{
	return (uint32_t)(util_hash64(user, len) % n_partitions);
}

/* ---- delivery record expiry --------------------------------------------
 * Every delivery record ('D') has an age record ('X': user, time, delivery
 * id) written in the same batch. A delivery of user drops, in its own
 * batch, up to DELIVERY_EXPIRE_PER_WRITE of user's delivery records older
 * than delivery_keep_ms, oldest first, found by a seek into user's age
 * records (never by a scan of the delivery records). The time is the
 * entry's (apply->now_ms) when applying, so every replica drops the same
 * records at the same entry. */

static struct expiry_hint *hint_slot(mailstore *s, const char *user)
{
	return &s->hints[util_hash64(user, strlen(user)) % EXPIRY_HINT_SLOTS];
}

/* Where to seek for user's oldest age record (0: the start of its range). */
static uint64_t hint_floor(mailstore *s, const char *user)
{
	const struct expiry_hint *h = hint_slot(s, user);
	return strcmp(h->user, user) == 0 ? h->floor_ms : 0;
}

/* Once a batch is written: no age record of user is older than floor_ms. */
static void hint_set(mailstore *s, const char *user, uint64_t floor_ms)
{
	struct expiry_hint *h = hint_slot(s, user);
	size_t len = strlen(user);
	if (len >= sizeof h->user)
		return;
	memcpy(h->user, user, len + 1);
	h->floor_ms = floor_ms;
}

/* An age record of user at time_ms was written: a clock that went back
 * (a new primary) may put it below the floor. */
static void hint_note_added(mailstore *s, const char *user, uint64_t time_ms)
{
	struct expiry_hint *h = hint_slot(s, user);
	if (strcmp(h->user, user) == 0 && time_ms < h->floor_ms)
		h->floor_ms = time_ms;
}

/* "now" of a write: the entry's clock when applying, else the wall clock. */
int64_t mailstore__store_now_ms(const mailstore *s)
{
	return s->applying ? s->apply.now_ms : util_now_wall_ms();
}

/* Add to wb the deletion of up to DELIVERY_EXPIRE_PER_WRITE of user's
 * delivery records (and their age records) older than now_ms -
 * delivery_keep_ms, oldest first. *floor_r: the hint to set once wb is
 * written; *n_r: records dropped. Returns MAIL_OK or INTERNAL (read
 * error, logged). Call with delivery_keep_ms > 0, under lock. */
static int deliveries_expire(mailstore *s, leveldb_writebatch_t *wb, const char *user,
			     int64_t now_ms, uint64_t *floor_r, size_t *n_r)
{
	uint64_t keep = s->limits.delivery_keep_ms;
	uint64_t now = now_ms > 0 ? (uint64_t)now_ms : 0;
	uint64_t cutoff = now > keep ? now - keep : 0;
	uint64_t floor = hint_floor(s, user);
	*n_r = 0;
	buf prefix, k;
	buf_init(&prefix);
	buf_init(&k);
	key_user_prefix(&prefix, KIND_DELIVERY_AGE, user);
	key_delivery_age(&k, user, floor, NULL);
	leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ropts);
	for (leveldb_iter_seek(it, (const char *)k.data, k.len);
	     leveldb_iter_valid(it) && *n_r < DELIVERY_EXPIRE_PER_WRITE; leveldb_iter_next(it)) {
		size_t klen;
		const char *key = leveldb_iter_key(it, &klen);
		if (klen < prefix.len || memcmp(key, prefix.data, prefix.len) != 0)
			break;
		if (klen <= prefix.len + AGE_TIME_LEN) {
			mailstore__log_corrupt("delivery_age", user);
			continue;
		}
		uint64_t t = get_u64((const uint8_t *)key + prefix.len);
		floor = t;
		if (t >= cutoff)
			break;
		leveldb_writebatch_delete(wb, key, klen);
		key_user_prefix(&k, KIND_DELIVERY, user);
		buf_append(&k, key + prefix.len + AGE_TIME_LEN, klen - prefix.len - AGE_TIME_LEN);
		leveldb_writebatch_delete(wb, (const char *)k.data, k.len);
		(*n_r)++;
	}
	int ret = mailstore__db_iter_close(it);
	buf_deinit(&prefix);
	buf_deinit(&k);
	*floor_r = floor;
	return ret;
}


void mailstore__upgrade_batch_init(struct upgrade_batch *ub, mailstore *s, const char *what)
{
	*ub = (struct upgrade_batch){ .s = s, .what = what, .wb = leveldb_writebatch_create() };
}

/* A put went into ub->wb: commit when the batch is full. 0, or -1 when a
 * commit failed (stop the pass). */
int mailstore__upgrade_batch_added(struct upgrade_batch *ub)
{
	if (++ub->n < UPGRADE_BATCH)
		return 0;
	ub->ret = mailstore__db_commit(ub->s, ub->wb, ub->what);
	ub->wb = leveldb_writebatch_create();
	ub->n = 0;
	return ub->ret == MAIL_OK ? 0 : -1;
}

/* Commit the rest (unless the pass failed: iter_ret or an earlier commit).
 * Returns MAIL_OK or INTERNAL. */
int mailstore__upgrade_batch_finish(struct upgrade_batch *ub, int iter_ret)
{
	if (iter_ret != MAIL_OK)
		ub->ret = MAIL_ERR_INTERNAL;
	if (ub->ret == MAIL_OK)
		return mailstore__db_commit(ub->s, ub->wb, ub->what);
	leveldb_writebatch_destroy(ub->wb);
	return ub->ret;
}

/* Write an age record, dated now (wall clock), for every delivery record:
 * of every user (all = 1) or of partition's users. Used once on a store
 * written before age records existed, and after installing a snapshot
 * from such a store (none of those records has one). Dating them now
 * keeps each at least delivery_keep_ms from here on, never less than it
 * would have been kept. Returns MAIL_OK or INTERNAL. Caller holds the
 * lock (or is mailstore_open). */
int mailstore__deliveries_index(mailstore *s, int all, uint32_t partition, uint32_t n_partitions,
			    const char *what, uint64_t *n_r)
{
	*n_r = 0;
	uint64_t now = (uint64_t)util_now_wall_ms();
	uint8_t head[2] = { MAILSTORE_KEY_VERSION, KIND_DELIVERY };
	struct upgrade_batch ub;
	mailstore__upgrade_batch_init(&ub, s, what);
	buf k;
	buf_init(&k);
	leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ropts);
	for (leveldb_iter_seek(it, (const char *)head, sizeof head); leveldb_iter_valid(it);
	     leveldb_iter_next(it)) {
		size_t klen;
		const char *key = leveldb_iter_key(it, &klen);
		if (klen < 2 || memcmp(key, head, sizeof head) != 0)
			break;
		const char *nul = memchr(key + 2, '\0', klen - 2);
		if (nul == NULL || nul == key + klen - 1)
			continue;
		size_t ulen = (size_t)(nul - (key + 2));
		if (!all && mailstore__user_partition(key + 2, ulen, n_partitions) != partition)
			continue;
		/* 01 'X' <user> 00 <now> <delivery id> */
		buf_reset(&k);
		uint8_t ahead[2] = { MAILSTORE_KEY_VERSION, KIND_DELIVERY_AGE };
		buf_append(&k, ahead, sizeof ahead);
		buf_append(&k, key + 2, ulen + 1);
		put_u64(&k, now);
		buf_append(&k, nul + 1, (size_t)(key + klen - (nul + 1)));
		uint8_t ver = VALUE_VERSION;
		leveldb_writebatch_put(ub.wb, (const char *)k.data, k.len, (const char *)&ver,
				       AGE_VALUE_LEN);
		(*n_r)++;
		if (mailstore__upgrade_batch_added(&ub) < 0)
			break;
	}
	int ret = mailstore__upgrade_batch_finish(&ub, mailstore__db_iter_close(it));
	buf_deinit(&k);
	return ret;
}

/* Write a 'Z' record for every message flagged \Deleted, of every user:
 * once, on a store from before the 'Z' index. Returns MAIL_OK or INTERNAL;
 * *n_r: records written. */
static int deleted_index(mailstore *s, uint64_t *n_r)
{
	*n_r = 0;
	uint8_t head[2] = { MAILSTORE_KEY_VERSION, KIND_META };
	struct upgrade_batch ub;
	mailstore__upgrade_batch_init(&ub, s, "deleted_index");
	leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ropts);
	for (leveldb_iter_seek(it, (const char *)head, sizeof head); leveldb_iter_valid(it);
	     leveldb_iter_next(it)) {
		size_t klen, vlen;
		const char *key = leveldb_iter_key(it, &klen);
		if (klen < 2 || memcmp(key, head, sizeof head) != 0)
			break;
		if (klen < 2 + 1 + MSG_KEY_TAIL)
			continue;
		const uint8_t *val = (const uint8_t *)leveldb_iter_value(it, &vlen);
		struct mailstore_message_info mi;
		if (mailstore__meta_decode(val, vlen, get_u32((const uint8_t *)key + klen - 4), &mi) < 0) {
			mailstore__log_corrupt("message", "");
			continue;
		}
		int deleted = mailstore__flags_has(mi.flags, mi.n_flags, "\\Deleted");
		mailstore_message_info_free(&mi);
		if (!deleted)
			continue;
		mailstore__batch_put_deleted_of_meta(ub.wb, key, klen);
		(*n_r)++;
		if (mailstore__upgrade_batch_added(&ub) < 0)
			break;
	}
	return mailstore__upgrade_batch_finish(&ub, mailstore__db_iter_close(it));
}

/* mailstore_open: bring a store of an older data level up ('V' missing or
 * below SCHEMA_LEVEL), once: 'X' age records for its delivery records
 * (level 1), 'Z' records for its messages flagged \Deleted (level 2). */
static int schema_upgrade(mailstore *s)
{
	uint8_t vkey[2] = { MAILSTORE_KEY_VERSION, KIND_SCHEMA };
	buf k;
	buf_init(&k);
	buf_append(&k, vkey, sizeof vkey);
	char *val;
	size_t len;
	int got = mailstore__db_get(s, &k, &val, &len);
	buf_deinit(&k);
	if (got < 0)
		return MAIL_ERR_INTERNAL;
	int level = 0;
	if (got == 1) {
		if (len >= 2 && (uint8_t)val[0] == VALUE_VERSION)
			level = (uint8_t)val[1];
		leveldb_free(val);
	}
	if (level >= SCHEMA_LEVEL)
		return MAIL_OK;
	/* Each step is idempotent: a crash before the level is written runs
	 * it again, harmlessly. */
	uint64_t n = 0, n_deleted = 0;
	int ret = MAIL_OK;
	if (level < 1)
		ret = mailstore__deliveries_index(s, 1, 0, 1, "schema_upgrade", &n);
	if (ret == MAIL_OK && level < 2)
		ret = deleted_index(s, &n_deleted);
	uint64_t n_msgs = 0, n_boxes = 0;
	if (ret == MAIL_OK && level < 3)
		ret = mailstore__index_messages(s, &n_msgs);
	if (ret == MAIL_OK && level < 3)
		ret = mailstore__count_mailboxes(s, &n_boxes);
	if (ret == MAIL_OK) {
		uint8_t vval[2] = { VALUE_VERSION, SCHEMA_LEVEL };
		leveldb_writebatch_t *wb = leveldb_writebatch_create();
		leveldb_writebatch_put(wb, (const char *)vkey, sizeof vkey, (const char *)vval,
				       sizeof vval);
		ret = mailstore__db_commit(s, wb, "schema_upgrade");
	}
	log_event(ret == MAIL_OK ? LOG_INFO : LOG_ERROR, LOG_SVC,
		  "event=schema_upgrade from=%d level=%d delivery_records_indexed=%llu "
		  "deleted_indexed=%llu messages_indexed=%llu mailboxes_counted=%llu status=%s",
		  level, SCHEMA_LEVEL, (unsigned long long)n, (unsigned long long)n_deleted,
		  (unsigned long long)n_msgs, (unsigned long long)n_boxes,
		  mail_error_info(ret)->name);
	return ret;
}

/* ---- open / close ---------------------------------------------------- */

int mailstore_open(const char *dir, const struct mailstore_limits *limits,
		   mailstore **store_r, const char **error_r)
{
	mailstore *s = xcalloc(1, sizeof *s);
	if (limits != NULL)
		s->limits = *limits;
	else
		mailstore_limits_default(&s->limits);
	if (s->limits.max_flag_len > UINT16_MAX)
		s->limits.max_flag_len = UINT16_MAX;
	if (s->limits.max_flags > UINT16_MAX)
		s->limits.max_flags = UINT16_MAX;
	if (s->limits.max_mailbox_keywords > 1024)
		s->limits.max_mailbox_keywords = 1024;
	if (s->limits.page_scan_keys == 0)
		s->limits.page_scan_keys = 1;
	if (s->limits.page_max_messages == 0)
		s->limits.page_max_messages = 1;
	if (s->limits.purge_step_keys == 0)
		s->limits.purge_step_keys = 1;
	s->options = leveldb_options_create();
	leveldb_options_set_create_if_missing(s->options, 1);
	s->filter = leveldb_filterpolicy_create_bloom(10);
	leveldb_options_set_filter_policy(s->options, s->filter);
	leveldb_options_set_write_buffer_size(s->options, MAILSTORE_LEVELDB_WRITE_BUFFER);
	leveldb_options_set_max_file_size(s->options, MAILSTORE_LEVELDB_FILE_SIZE);
	leveldb_options_set_block_size(s->options, MAILSTORE_LEVELDB_BLOCK_SIZE);
	s->ropts = leveldb_readoptions_create();
	s->wopts = leveldb_writeoptions_create();
	leveldb_writeoptions_set_sync(s->wopts, 1);
	s->wopts_nosync = leveldb_writeoptions_create();
	char *err = NULL;
	s->db = leveldb_open(s->options, dir, &err);
	if (err != NULL) {
		char q[512], qd[256];
		log_event(LOG_ERROR, LOG_SVC, "event=db_open_failed dir=%s error=%s",
			  log_quote(qd, sizeof qd, dir, strlen(dir)),
			  log_quote(q, sizeof q, err, strlen(err)));
		leveldb_free(err);
		leveldb_readoptions_destroy(s->ropts);
		leveldb_writeoptions_destroy(s->wopts);
		leveldb_writeoptions_destroy(s->wopts_nosync);
		leveldb_options_destroy(s->options);
		leveldb_filterpolicy_destroy(s->filter);
		free(s);
		*error_r = "cannot open the LevelDB directory (see log)";
		return MAIL_ERR_INTERNAL;
	}
	pthread_mutex_init(&s->lock, NULL);
	s->dir = xstrdup(dir);
	if (schema_upgrade(s) != MAIL_OK) {
		mailstore_close(&s);
		*error_r = "cannot index the delivery records (see log)";
		return MAIL_ERR_INTERNAL;
	}
	struct bodystore_settings bset = {
		.segment_size = s->limits.body_segment_size,
		.collect_live_pct = s->limits.body_collect_live_pct,
		.collect_step = s->limits.body_collect_step,
		.open_segments = s->limits.body_open_segments,
		.inline_max = s->limits.body_inline_max,
	};
	if (bodystore_open(dir, s->db, &bset, &s->bodies, error_r) < 0) {
		mailstore_close(&s);
		return MAIL_ERR_INTERNAL;
	}
	/* a mailbox deleted before a restart may still wait for its purge */
	s->purge_pending = 1;
	*store_r = s;
	return MAIL_OK;
}

void mailstore_close(mailstore **store)
{
	mailstore *s = *store;
	if (s == NULL)
		return;
	*store = NULL;
	bodystore_close(&s->bodies);
	if (s->apply_unsynced)
		(void)mailstore_apply_barrier(s);
	leveldb_close(s->db);
	leveldb_readoptions_destroy(s->ropts);
	leveldb_writeoptions_destroy(s->wopts);
	leveldb_writeoptions_destroy(s->wopts_nosync);
	free(s->dir);
	leveldb_options_destroy(s->options);
	leveldb_filterpolicy_destroy(s->filter);
	pthread_mutex_destroy(&s->lock);
	free(s->install_seen);
	free(s->changes);
	free(s);
}

/* ---- operations ------------------------------------------------------- */

static int deliver_locked(mailstore *s, const char *user, const char *name,
			  const char *delivery_id, const struct mailstore_msg_in *msg,
			  int64_t internal_date, char **flags, size_t *n_flags,
			  struct mailstore_deliver_result *res)
{
	buf k, v;
	buf_init(&k);
	buf_init(&v);
	struct mbox m = { 0 };
	int ret;
	if (delivery_id[0] != '\0') {
		key_delivery(&k, user, delivery_id);
		char *val;
		size_t len;
		ret = mailstore__db_get(s, &k, &val, &len);
		if (ret == 1) {
			const uint8_t *p = (const uint8_t *)val;
			int ok = len >= DELIVERY_VALUE_LEN && p[0] == VALUE_VERSION;
			if (ok) {
				res->uid = get_u32(p + 9);
				res->uidvalidity = get_u32(p + 13);
				res->duplicate = 1;
			}
			leveldb_free(val);
			if (!ok)
				mailstore__log_corrupt("delivery", user);
			ret = ok ? MAIL_OK : MAIL_ERR_INTERNAL;
			goto out;
		}
		if (ret < 0) {
			ret = MAIL_ERR_INTERNAL;
			goto out;
		}
	}
	ret = mailstore__mbox_open(s, user, name, &m);
	if (ret == MAIL_ERR_NOT_FOUND && msg->inbox_fallback && strcmp(name, "INBOX") != 0) {
		name = "INBOX";
		ret = mailstore__mbox_open(s, user, name, &m);
	}
	if (ret != MAIL_OK)
		goto out;
	if (m.uidnext == UINT32_MAX) {
		/* RFC 3501 uids are 32-bit; this mailbox is full forever. */
		ret = MAIL_ERR_LIMIT;
		goto out;
	}
	/* after the duplicate check: a retry of a delivery made is answered */
	ret = mailstore__quota_check_locked(s, user, msg->body_len, 1);
	if (ret != MAIL_OK)
		goto out;
	/* a delivery is never refused for a label: keywords past the
	 * mailbox's bound are dropped */
	(void)mailstore__keywords_merge(s, &m, flags, n_flags, 1);
	struct mailstore_message_info mi = {
		.uid = m.uidnext, .flags = flags, .n_flags = *n_flags, .size = msg->body_len,
		.internal_date = internal_date, .modseq = m.highest_modseq + 1,
	};
	m.uidnext++;
	m.highest_modseq++;

	leveldb_writebatch_t *wb = leveldb_writebatch_create();
	bodystore_txn_begin(s->bodies, wb, 1);
	mailstore__msg_put(wb, &k, &v, user, &m, NULL, &mi);
	mailstore__batch_put_mbox(wb, &k, &v, user, name, &m);
	mailstore__structure_put(wb, &k, user, m.id, mi.uid, msg->structure, msg->structure_len,
				 msg->body, msg->body_len);
	if (delivery_id[0] != '\0') {
		key_delivery(&k, user, delivery_id);
		buf_reset(&v);
		uint8_t ver = VALUE_VERSION;
		buf_append(&v, &ver, 1);
		put_u64(&v, m.id);
		put_u32(&v, mi.uid);
		put_u32(&v, m.uidvalidity);
		leveldb_writebatch_put(wb, (const char *)k.data, k.len, (const char *)v.data,
				       v.len);
	}
	int64_t now_ms = mailstore__store_now_ms(s);
	uint64_t age_ms = now_ms > 0 ? (uint64_t)now_ms : 0;
	if (delivery_id[0] != '\0') {
		key_delivery_age(&k, user, age_ms, delivery_id);
		uint8_t ver = VALUE_VERSION;
		leveldb_writebatch_put(wb, (const char *)k.data, k.len, (const char *)&ver,
				       AGE_VALUE_LEN);
	}
	uint64_t floor = 0;
	size_t n_expired = 0;
	int expire = s->limits.delivery_keep_ms > 0;
	if (expire && deliveries_expire(s, wb, user, now_ms, &floor, &n_expired) != MAIL_OK) {
		mailstore__bodies_abandon(s, wb);
		ret = MAIL_ERR_INTERNAL;
		goto out;
	}
	/* last: nothing is appended for a delivery that fails before */
	key_message(&k, KIND_BODY_PTR, user, m.id, mi.uid);
	if (bodystore_put(s->bodies, k.data, k.len, msg->body, msg->body_len) < 0) {
		mailstore__bodies_abandon(s, wb);
		ret = MAIL_ERR_INTERNAL;
		goto out;
	}
	ret = mailstore__bodies_write(s, wb, 1, "deliver");
	if (ret == MAIL_OK && expire) {
		/* in this order: the new record may be below the pass's floor */
		hint_set(s, user, floor);
		if (delivery_id[0] != '\0')
			hint_note_added(s, user, age_ms);
	}
	if (ret == MAIL_OK) {
		res->uid = mi.uid;
		res->uidvalidity = m.uidvalidity;
		res->duplicate = 0;
		mailstore__note_change(s, user, name, m.highest_modseq, 0);
	}
out:
	mailstore__mbox_deinit(&m);
	buf_deinit(&k);
	buf_deinit(&v);
	return ret;
}

/* The structure record given with a message: absent, or one that decodes
 * (it comes from a replicated entry, i.e. from the network). */
static int structure_valid(const struct mailstore_msg_in *msg)
{
	struct store_structure st;
	return msg->structure == NULL ||
	       store_structure_decode(msg->structure, msg->structure_len, &st) == 0;
}

int mailstore_deliver_msg(mailstore *s, const char *user, const char *mailbox,
			  const char *delivery_id, const struct mailstore_msg_in *msg,
			  struct mailstore_deliver_result *result_r)
{
	memset(result_r, 0, sizeof *result_r);
	buf tmp;
	buf_init(&tmp);
	const char *name = mailstore__mailbox_name(s, mailbox, &tmp);
	int ret = MAIL_OK;
	char **nflags = NULL;
	size_t n_nflags = 0;
	if (!mailstore__user_valid(s, user) || name == NULL ||
	    strlen(delivery_id) > s->limits.max_delivery_id || !structure_valid(msg))
		ret = MAIL_ERR_PARAMS;
	else if (msg->body_len > s->limits.max_message_size)
		ret = MAIL_ERR_TOO_BIG;
	else
		ret = mailstore__flags_normalize(s, msg->flags, msg->n_flags, &nflags, &n_nflags);
	if (ret == MAIL_OK) {
		int64_t internal_date = msg->internal_date;
		if (internal_date == 0)
			internal_date = s->applying ? s->apply.now_ms : util_now_wall_ms();
		pthread_mutex_lock(&s->lock);
		ret = deliver_locked(s, user, name, delivery_id, msg, internal_date, nflags,
				     &n_nflags, result_r);
		if (ret == MAIL_OK && !result_r->duplicate)
			mailstore__bodies_collect_after_write(s);
		mailstore__unlock(s);
	}
	mailstore__flags_free(nflags, n_nflags);
	buf_deinit(&tmp);
	return ret;
}

int mailstore_deliver(mailstore *s, const char *user, const char *mailbox,
		      const char *delivery_id, const void *body, size_t body_len,
		      int64_t internal_date, const char *const *flags, size_t n_flags,
		      struct mailstore_deliver_result *result_r)
{
	struct mailstore_msg_in msg = {
		.body = body, .body_len = body_len, .internal_date = internal_date,
		.flags = flags, .n_flags = n_flags,
	};
	return mailstore_deliver_msg(s, user, mailbox, delivery_id, &msg, result_r);
}

int mailstore_select(mailstore *s, const char *user, const char *mailbox,
		     struct mailstore_mailbox_info *info_r,
		     struct mailstore_message_info **msgs_r, size_t *n_r)
{
	memset(info_r, 0, sizeof *info_r);
	*msgs_r = NULL;
	*n_r = 0;
	buf tmp;
	buf_init(&tmp);
	const char *name = mailstore__mailbox_name(s, mailbox, &tmp);
	int ret = MAIL_ERR_PARAMS;
	if (mailstore__user_valid(s, user) && name != NULL) {
		pthread_mutex_lock(&s->lock);
		struct mbox m = { 0 };
		ret = mailstore__mbox_open(s, user, name, &m);
		if (ret == MAIL_OK)
			ret = meta_scan(s, user, &m, msgs_r, n_r);
		if (ret == MAIL_OK)
			mailstore__mbox_info_fill(info_r, name, &m);
		mailstore__mbox_deinit(&m);
		mailstore__unlock(s);
	}
	buf_deinit(&tmp);
	return ret;
}

int mailstore__body_get(mailstore *s, const char *user, uint64_t mbox_id, uint32_t uid,
			void **body_r, size_t *len_r)
{
	buf k;
	buf_init(&k);
	key_message(&k, KIND_BODY_PTR, user, mbox_id, uid);
	int got = bodystore_get(s->bodies, k.data, k.len, body_r, len_r);
	if (got == 0) {
		/* a store of the version before segments: the body itself */
		key_message(&k, KIND_BODY, user, mbox_id, uid);
		char *val;
		size_t len;
		got = mailstore__db_get(s, &k, &val, &len);
		if (got == 1) {
			*body_r = xmalloc(len > 0 ? len : 1);
			memcpy(*body_r, val, len);
			*len_r = len;
			leveldb_free(val);
		}
	}
	buf_deinit(&k);
	if (got != 1) {
		/* meta without body: the batch rule makes this impossible */
		if (got == 0)
			mailstore__log_corrupt("body", user);
		return MAIL_ERR_INTERNAL;
	}
	return MAIL_OK;
}

int mailstore__fetch_locked(mailstore *s, const char *user, const char *name, uint32_t uid,
			    struct mailstore_message_info *info_r, void **body_r, size_t *len_r)
{
	struct mbox m;
	int ret = mailstore__mbox_get(s, user, name, &m);
	if (ret != MAIL_OK)
		return ret;
	ret = mailstore__meta_get(s, user, &m, uid, info_r);
	if (ret == MAIL_OK) {
		ret = mailstore__body_get(s, user, m.id, uid, body_r, len_r);
		if (ret != MAIL_OK)
			mailstore_message_info_free(info_r);
	}
	mailstore__mbox_deinit(&m);
	return ret;
}

int mailstore_fetch(mailstore *s, const char *user, const char *mailbox, uint32_t uid,
		    struct mailstore_message_info *info_r, void **body_r, size_t *body_len_r)
{
	memset(info_r, 0, sizeof *info_r);
	*body_r = NULL;
	*body_len_r = 0;
	buf tmp;
	buf_init(&tmp);
	const char *name = mailstore__mailbox_name(s, mailbox, &tmp);
	int ret;
	if (!mailstore__user_valid(s, user) || name == NULL) {
		ret = MAIL_ERR_PARAMS;
	} else if (uid == 0) {
		ret = MAIL_ERR_NOT_FOUND;
	} else {
		pthread_mutex_lock(&s->lock);
		ret = mailstore__fetch_locked(s, user, name, uid, info_r, body_r, body_len_r);
		pthread_mutex_unlock(&s->lock);
	}
	buf_deinit(&tmp);
	return ret;
}

static int store_flags_locked(mailstore *s, const char *user, const char *name,
			      const uint32_t *uids, size_t n_uids, enum mailstore_flag_mode mode,
			      char *const *req, size_t n_req,
			      struct mailstore_message_info **msgs_r, size_t *n_r)
{
	struct mbox m;
	int ret = mailstore__mbox_get(s, user, name, &m);
	if (ret != MAIL_OK)
		return ret;
	struct mailstore_message_info *msgs = n_uids > 0 ? xcalloc(n_uids, sizeof *msgs) : NULL;
	/* the meta before the change of each changed message (the derived
	 * records and counters follow the difference); flags NULL/0 when the
	 * message did not change */
	struct mailstore_message_info *olds = n_uids > 0 ? xcalloc(n_uids, sizeof *olds) : NULL;
	int *changed = n_uids > 0 ? xcalloc(n_uids, sizeof *changed) : NULL;
	size_t n = 0;
	int any_changed = 0;
	for (size_t i = 0; i < n_uids; i++) {
		struct mailstore_message_info *mi = &msgs[n];
		ret = mailstore__meta_get(s, user, &m, uids[i], mi);
		if (ret == MAIL_ERR_NOT_FOUND) {
			ret = MAIL_OK;
			continue;
		}
		if (ret != MAIL_OK)
			goto fail;
		char **nf;
		size_t n_nf;
		mailstore__flags_apply(mi->flags, mi->n_flags, req, n_req, mode, &nf, &n_nf);
		n++;
		if (n_nf > s->limits.max_flags) {
			mailstore__flags_free(nf, n_nf);
			ret = MAIL_ERR_LIMIT;
			goto fail;
		}
		if (mailstore__flags_equal(mi->flags, mi->n_flags, nf, n_nf)) {
			mailstore__flags_free(nf, n_nf);
			continue;
		}
		olds[n - 1] = *mi;   /* takes the old flags */
		mi->flags = nf;
		mi->n_flags = n_nf;
		mi->modseq = m.highest_modseq + 1;
		changed[n - 1] = 1;
		any_changed = 1;
	}
	if (any_changed && mode != MAILSTORE_FLAGS_REMOVE) {
		size_t n_kw = n_req;
		ret = mailstore__keywords_merge(s, &m, (char **)req, &n_kw, 0);
		if (ret != MAIL_OK)
			goto fail;
	}
	if (any_changed) {
		m.highest_modseq++;
		buf k, v;
		buf_init(&k);
		buf_init(&v);
		leveldb_writebatch_t *wb = leveldb_writebatch_create();
		for (size_t i = 0; i < n; i++) {
			if (changed[i])
				mailstore__msg_put(wb, &k, &v, user, &m, &olds[i], &msgs[i]);
		}
		mailstore__batch_put_mbox(wb, &k, &v, user, name, &m);
		ret = mailstore__db_write(s, wb, "store_flags");
		buf_deinit(&k);
		buf_deinit(&v);
		if (ret != MAIL_OK)
			goto fail;
		mailstore__note_change(s, user, name, m.highest_modseq, 0);
	}
	free(changed);
	mailstore_message_infos_free(olds, n);
	mailstore__mbox_deinit(&m);
	if (n == 0) {
		free(msgs);
		msgs = NULL;
	}
	*msgs_r = msgs;
	*n_r = n;
	return MAIL_OK;
fail:
	free(changed);
	mailstore_message_infos_free(olds, n);
	mailstore_message_infos_free(msgs, n);
	mailstore__mbox_deinit(&m);
	return ret;
}

int mailstore_store_flags(mailstore *s, const char *user, const char *mailbox,
			  const uint32_t *uids, size_t n_uids, enum mailstore_flag_mode mode,
			  const char *const *flags, size_t n_flags,
			  struct mailstore_message_info **msgs_r, size_t *n_r)
{
	*msgs_r = NULL;
	*n_r = 0;
	if (mode != MAILSTORE_FLAGS_SET && mode != MAILSTORE_FLAGS_ADD &&
	    mode != MAILSTORE_FLAGS_REMOVE)
		return MAIL_ERR_PARAMS;
	buf tmp;
	buf_init(&tmp);
	const char *name = mailstore__mailbox_name(s, mailbox, &tmp);
	char **req = NULL;
	size_t n_req = 0;
	int ret = MAIL_ERR_PARAMS;
	if (mailstore__user_valid(s, user) && name != NULL)
		ret = mailstore__flags_normalize(s, flags, n_flags, &req, &n_req);
	if (ret == MAIL_OK) {
		size_t n_sorted;
		uint32_t *sorted = mailstore__uids_sorted(uids, n_uids, &n_sorted);
		pthread_mutex_lock(&s->lock);
		ret = store_flags_locked(s, user, name, sorted, n_sorted, mode, req, n_req, msgs_r,
					 n_r);
		mailstore__unlock(s);
		free(sorted);
	}
	mailstore__flags_free(req, n_req);
	buf_deinit(&tmp);
	return ret;
}

static int expunge_locked(mailstore *s, const char *user, const char *name,
			  const uint32_t *uids, size_t n_uids, uint32_t **uids_r, size_t *n_r)
{
	struct mbox m;
	int ret = mailstore__mbox_get(s, user, name, &m);
	if (ret != MAIL_OK)
		return ret;
	struct mailstore_message_info *msgs = NULL;
	size_t n_msgs = 0;
	uint32_t *flagged = NULL;
	if (n_uids == 0) {
		/* the messages flagged \Deleted, from their 'Z' records: never a
		 * scan of the whole mailbox (each is checked below: a 'Z' whose
		 * message is not \Deleted expunges nothing) */
		ret = deleted_scan(s, user, &m, &flagged, &n_uids);
		if (ret != MAIL_OK) {
			mailstore__mbox_deinit(&m);
			return ret;
		}
		uids = flagged;
	}
	msgs = n_uids > 0 ? xcalloc(n_uids, sizeof *msgs) : NULL;
	for (size_t i = 0; i < n_uids; i++) {
		ret = mailstore__meta_get(s, user, &m, uids[i], &msgs[n_msgs]);
		if (ret == MAIL_OK)
			n_msgs++;
		else if (ret != MAIL_ERR_NOT_FOUND)
			goto out;
	}
	ret = MAIL_OK;
	/* keep the \Deleted ones, in place */
	size_t n_gone = 0;
	for (size_t i = 0; i < n_msgs; i++) {
		if (mailstore__flags_has(msgs[i].flags, msgs[i].n_flags, "\\Deleted")) {
			struct mailstore_message_info t = msgs[n_gone];
			msgs[n_gone++] = msgs[i];
			msgs[i] = t;
		}
	}
	uint32_t *gone = NULL;
	if (n_gone > 0) {
		m.highest_modseq++;
		buf k, v;
		buf_init(&k);
		buf_init(&v);
		leveldb_writebatch_t *wb = leveldb_writebatch_create();
		bodystore_txn_begin(s->bodies, wb, 1);
		ret = mailstore__msgs_expunge(s, wb, &k, user, &m, msgs, n_gone);
		mailstore__batch_put_mbox(wb, &k, &v, user, name, &m);
		if (ret == MAIL_OK)
			ret = mailstore__bodies_write(s, wb, 1, "expunge");
		else
			mailstore__bodies_abandon(s, wb);
		buf_deinit(&k);
		buf_deinit(&v);
		if (ret == MAIL_OK) {
			gone = xmalloc(n_gone * sizeof *gone);
			for (size_t i = 0; i < n_gone; i++)
				gone[i] = msgs[i].uid;
			mailstore__note_change(s, user, name, m.highest_modseq, 0);
		} else {
			n_gone = 0;
		}
	}
	*uids_r = gone;
	*n_r = n_gone;
out:
	free(flagged);
	mailstore_message_infos_free(msgs, n_msgs);
	mailstore__mbox_deinit(&m);
	return ret;
}

int mailstore_expunge(mailstore *s, const char *user, const char *mailbox,
		      const uint32_t *uids, size_t n_uids, uint32_t **uids_r, size_t *n_r)
{
	*uids_r = NULL;
	*n_r = 0;
	buf tmp;
	buf_init(&tmp);
	const char *name = mailstore__mailbox_name(s, mailbox, &tmp);
	int ret = MAIL_ERR_PARAMS;
	if (mailstore__user_valid(s, user) && name != NULL) {
		size_t n_sorted;
		uint32_t *sorted = mailstore__uids_sorted(uids, n_uids, &n_sorted);
		pthread_mutex_lock(&s->lock);
		ret = expunge_locked(s, user, name, sorted, n_sorted, uids_r, n_r);
		if (ret == MAIL_OK && *n_r > 0)
			mailstore__bodies_collect_after_write(s);
		mailstore__unlock(s);
		free(sorted);
	}
	buf_deinit(&tmp);
	return ret;
}

/* ---- freeing ----------------------------------------------------------- */

void mailstore_mailbox_info_free(struct mailstore_mailbox_info *info)
{
	free(info->name);
	info->name = NULL;
	mailstore__flags_free(info->keywords, info->n_keywords);
	info->keywords = NULL;
	info->n_keywords = 0;
}

void mailstore_mailbox_infos_free(struct mailstore_mailbox_info *boxes, size_t n)
{
	for (size_t i = 0; i < n; i++)
		mailstore_mailbox_info_free(&boxes[i]);
	free(boxes);
}

void mailstore_message_info_free(struct mailstore_message_info *info)
{
	mailstore__flags_free(info->flags, info->n_flags);
	info->flags = NULL;
	info->n_flags = 0;
}

void mailstore_message_infos_free(struct mailstore_message_info *msgs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		mailstore_message_info_free(&msgs[i]);
	free(msgs);
}

/* ---- replication support ----------------------------------------------- */

void mailstore_apply_defer_sync(mailstore *s, int on)
{
	pthread_mutex_lock(&s->lock);
	s->apply_defer_sync = on;
	pthread_mutex_unlock(&s->lock);
}

/* fdatasync every "*.log" file of the LevelDB directory (one vanishing
 * meanwhile is fine: LevelDB deletes a log only once its memtable is in a
 * synced table). 0 or -1 (logged). */
static int sync_dir_logs(const char *dir)
{
	DIR *d = opendir(dir);
	if (d == NULL) {
		log_event(LOG_ERROR, LOG_SVC, "event=apply_barrier_failed op=opendir errno=%d", errno);
		return -1;
	}
	int ret = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		if (n < 5 || strcmp(e->d_name + n - 4, ".log") != 0)
			continue;
		int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			if (errno == ENOENT)
				continue;
			ret = -1;
			continue;
		}
		if (fdatasync(fd) < 0)
			ret = -1;
		close(fd);
	}
	closedir(d);
	if (ret < 0)
		log_event(LOG_ERROR, LOG_SVC, "event=apply_barrier_failed op=fdatasync errno=%d",
			  errno);
	return ret;
}

int mailstore_apply_barrier(mailstore *s)
{
	pthread_mutex_lock(&s->lock);
	int due = s->apply_unsynced;
	s->apply_unsynced = 0;
	pthread_mutex_unlock(&s->lock);
	if (!due)
		return MAIL_OK;
	/* No synced LevelDB write: it would hold LevelDB's writer queue for
	 * its fsync, and the applies the loop writes meanwhile would wait
	 * behind it (the barrier runs on the replication's writer thread).
	 * Every unsynced batch written before this call is in the kernel
	 * already (LevelDB flushes its log buffer at the end of each write)
	 * and in one of the "*.log" files, or in a table LevelDB synced when
	 * it compacted that log away: an fdatasync of every log file covers
	 * them all, the current one included. */
	if (sync_dir_logs(s->dir) < 0) {
		pthread_mutex_lock(&s->lock);
		s->apply_unsynced = 1;
		pthread_mutex_unlock(&s->lock);
		return MAIL_ERR_INTERNAL;
	}
	return MAIL_OK;
}

void mailstore_apply_begin(mailstore *s, const struct mailstore_apply *apply)
{
	s->applying = apply != NULL;
	if (apply != NULL)
		s->apply = *apply;
}

/* The applied index of partition as ropts sees it. */
int mailstore__applied_get(mailstore *s, const leveldb_readoptions_t *ropts, uint32_t partition,
		       uint64_t *index_r)
{
	*index_r = 0;
	buf k;
	buf_init(&k);
	key_applied(&k, partition);
	char *err = NULL;
	size_t len;
	char *val = leveldb_get(s->db, ropts, (const char *)k.data, k.len, &len, &err);
	buf_deinit(&k);
	if (err != NULL) {
		mailstore__db_read_failed(err);
		return MAIL_ERR_INTERNAL;
	}
	if (val == NULL)
		return MAIL_OK;
	const uint8_t *p = (const uint8_t *)val;
	int ok = len >= 9 && p[0] == VALUE_VERSION;
	if (ok)
		*index_r = get_u64(p + 1);
	leveldb_free(val);
	if (!ok) {
		mailstore__log_corrupt("applied", "");
		return MAIL_ERR_INTERNAL;
	}
	return MAIL_OK;
}

int mailstore_applied_index(mailstore *s, uint32_t partition, uint64_t *index_r)
{
	pthread_mutex_lock(&s->lock);
	int ret = mailstore__applied_get(s, s->ropts, partition, index_r);
	pthread_mutex_unlock(&s->lock);
	return ret;
}

int mailstore_mailbox_exists(mailstore *s, const char *user, const char *mailbox,
			     int *exists_r)
{
	*exists_r = 0;
	buf tmp;
	buf_init(&tmp);
	const char *name = mailstore__mailbox_name(s, mailbox, &tmp);
	int ret = MAIL_ERR_PARAMS;
	if (mailstore__user_valid(s, user) && name != NULL) {
		struct mbox m;
		pthread_mutex_lock(&s->lock);
		ret = mailstore__mbox_get(s, user, name, &m);
		pthread_mutex_unlock(&s->lock);
		if (ret == MAIL_OK)
			mailstore__mbox_deinit(&m);
		*exists_r = ret == MAIL_OK;
		if (ret == MAIL_ERR_NOT_FOUND)
			ret = MAIL_OK;
	}
	buf_deinit(&tmp);
	return ret;
}

int mailstore_maintain(mailstore *s, int *more_r)
{
	pthread_mutex_lock(&s->lock);
	int ret = bodystore_collect_step(s->bodies);
	int purged = 0;
	int pret = MAIL_OK;
	if (s->purge_pending)
		pret = mailstore__purge_step(s, &purged);
	*more_r = (ret >= 0 && bodystore_collect_pending(s->bodies)) || s->purge_pending;
	pthread_mutex_unlock(&s->lock);
	return ret < 0 || pret != MAIL_OK ? MAIL_ERR_INTERNAL : MAIL_OK;
}

void mailstore_body_stats(mailstore *s, struct mailstore_body_stats *stats_r)
{
	struct bodystore_stats st;
	pthread_mutex_lock(&s->lock);
	bodystore_stats_get(s->bodies, &st);
	pthread_mutex_unlock(&s->lock);
	*stats_r = (struct mailstore_body_stats){
		.segments = st.segments, .current = st.current, .disk_bytes = st.disk_bytes,
		.live_bytes = st.live_bytes, .collected = st.collected,
		.moved_bytes = st.moved_bytes,
	};
}
