/* mailstore-snapshot.c: partition snapshots (mailstore.h, "partition
 * snapshots"): export over a LevelDB snapshot, validated install. */
#include "mailstore-private.h"

#include "store-structure.h"

#include "log.h"
#include "mail-error.h"
#include "util.h"
#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

/* ---- partition snapshots ------------------------------------------------ */

/* The kinds of per-user key a partition snapshot carries. A body pointer
 * ('P') goes out as the old 'B' pair (key with kind 'B', the body bytes as
 * value): pointers are node-local, bodies are not. */
static const char snap_kinds[] = { KIND_BODY,	   KIND_DELIVERY,     KIND_STRUCTURE,
				   KIND_META,	   KIND_MAILBOX,      KIND_TOMBSTONE,
				   KIND_SUBSCRIPTION, KIND_DELIVERY_AGE, KIND_BODY_PTR };
#define SNAP_N_KINDS (sizeof snap_kinds / sizeof *snap_kinds)
/* The kinds an install drops first: the exported ones, the 'Z', 'W' and
 * 'N' indexes, which are never exported (the installer derives them from
 * the 'I' keys, so the snapshot of an exporter without them is complete),
 * and the node-local 'G' records (the keys they point at are dropped with
 * the rest). */
static const char drop_kinds[] = { KIND_BODY,	  KIND_DELIVERY,     KIND_STRUCTURE,
				   KIND_META,	  KIND_MAILBOX,      KIND_TOMBSTONE,
				   KIND_SUBSCRIPTION, KIND_DELIVERY_AGE, KIND_DELETED,
				   KIND_UNSEEN,	  KIND_MODSEQ,	     KIND_GARBAGE,
				   KIND_BODY_PTR };
#define DROP_N_KINDS (sizeof drop_kinds / sizeof *drop_kinds)

/* Chunk framing: a u32 length before each key and each value. */
#define SNAP_LEN_BYTES 4
#define SNAP_MSG_KEY_TAIL MSG_KEY_TAIL

static int partition_args_valid(uint32_t partition, uint32_t n_partitions)
{
	return n_partitions > 0 && partition < n_partitions;
}

/* Walks the keys of one partition over an iterator: for each kind of
 * kinds (snap_kinds or drop_kinds), the keys of the users in the partition. A user of another
 * partition costs one seek, past all of its keys of that kind. */
struct part_scan {
	leveldb_iterator_t *it;
	uint32_t partition;
	uint32_t n_partitions;
	const char *kinds;
	size_t n_kinds;
	size_t kind_i;
	buf seek_key;
};

static void part_scan_seek_kind(struct part_scan *sc)
{
	uint8_t head[2] = { MAILSTORE_KEY_VERSION, (uint8_t)sc->kinds[sc->kind_i] };
	leveldb_iter_seek(sc->it, (const char *)head, sizeof head);
}

/* Move to the first key of the partition at or after the iterator's
 * position. Returns 1 when the iterator is on one, 0 when the walk is over,
 * -1 on a read error or a key without its NUL (logged). */
static int part_scan_settle(struct part_scan *sc)
{
	while (sc->kind_i < sc->n_kinds) {
		size_t klen = 0;
		const char *key = NULL;
		if (leveldb_iter_valid(sc->it))
			key = leveldb_iter_key(sc->it, &klen);
		if (key == NULL || klen < 2 || (uint8_t)key[0] != MAILSTORE_KEY_VERSION ||
		    key[1] != sc->kinds[sc->kind_i]) {
			/* a read error also ends a scan: never take it for the end */
			char *err = NULL;
			leveldb_iter_get_error(sc->it, &err);
			if (err != NULL) {
				mailstore__db_read_failed(err);
				return -1;
			}
			if (++sc->kind_i < sc->n_kinds)
				part_scan_seek_kind(sc);
			continue;
		}
		const char *nul = memchr(key + 2, '\0', klen - 2);
		if (nul == NULL) {
			mailstore__log_corrupt("key", "");
			return -1;
		}
		size_t ulen = (size_t)(nul - (key + 2));
		if (mailstore__user_partition(key + 2, ulen, sc->n_partitions) == sc->partition)
			return 1;
		/* 01 kind <user> 01 sorts after every 01 kind <user> 00 ... key */
		buf_reset(&sc->seek_key);
		buf_append(&sc->seek_key, key, 2 + ulen);
		uint8_t past = 0x01;
		buf_append(&sc->seek_key, &past, 1);
		leveldb_iter_seek(sc->it, (const char *)sc->seek_key.data, sc->seek_key.len);
	}
	return 0;
}

/* Start a walk over it (owned by sc from now on). Same returns as
 * part_scan_settle(). */
static int part_scan_start(struct part_scan *sc, leveldb_iterator_t *it, uint32_t partition,
			   uint32_t n_partitions, const char *kinds, size_t n_kinds)
{
	*sc = (struct part_scan){ .it = it, .partition = partition, .n_partitions = n_partitions,
				  .kinds = kinds, .n_kinds = n_kinds };
	buf_init(&sc->seek_key);
	part_scan_seek_kind(sc);
	return part_scan_settle(sc);
}

static int part_scan_next(struct part_scan *sc)
{
	leveldb_iter_next(sc->it);
	return part_scan_settle(sc);
}

static void part_scan_deinit(struct part_scan *sc)
{
	if (sc->it != NULL)
		leveldb_iter_destroy(sc->it);
	sc->it = NULL;
	buf_deinit(&sc->seek_key);
}

struct mailstore_snapshot {
	mailstore *store;
	const leveldb_snapshot_t *snap;
	leveldb_readoptions_t *ropts; /* reads at snap */
	struct part_scan scan;
	int pos; /* 1 on a pair not sent yet, 0 done, -1 failed */
	/* the last mailbox looked up for a 'G' record: its keys of a deleted
	 * mailbox are not exported (they wait for their purge) */
	buf dead_user;
	uint64_t dead_id;
	int dead;
	uint32_t partition;
	uint64_t pairs;
	uint64_t bytes;
};

void mailstore_snapshot_close(mailstore_snapshot **snap)
{
	mailstore_snapshot *sn = *snap;
	if (sn == NULL)
		return;
	*snap = NULL;
	/* the iterator reads at the snapshot: it goes first */
	part_scan_deinit(&sn->scan);
	leveldb_readoptions_destroy(sn->ropts);
	leveldb_release_snapshot(sn->store->db, sn->snap);
	buf_deinit(&sn->dead_user);
	bodystore_release(sn->store->bodies);
	free(sn);
}

int mailstore_snapshot_open(mailstore *s, uint32_t partition, uint32_t n_partitions,
			    mailstore_snapshot **snap_r, uint64_t *applied_r)
{
	*snap_r = NULL;
	*applied_r = 0;
	if (!partition_args_valid(partition, n_partitions))
		return MAIL_ERR_PARAMS;
	mailstore_snapshot *sn = xcalloc(1, sizeof *sn);
	sn->store = s;
	sn->partition = partition;
	/* Under the lock, so the view falls between two operations (each is
	 * one batch anyway; this keeps the rule of the header). */
	pthread_mutex_lock(&s->lock);
	sn->snap = leveldb_create_snapshot(s->db);
	/* the view's pointers stay readable: no segment file goes until
	 * close */
	bodystore_hold(s->bodies);
	pthread_mutex_unlock(&s->lock);
	sn->ropts = leveldb_readoptions_create();
	leveldb_readoptions_set_snapshot(sn->ropts, sn->snap);
	/* a bulk read: do not push the working set out of the block cache */
	leveldb_readoptions_set_fill_cache(sn->ropts, 0);
	int ret = mailstore__applied_get(s, sn->ropts, partition, applied_r);
	if (ret == MAIL_OK) {
		sn->pos = part_scan_start(&sn->scan, leveldb_create_iterator(s->db, sn->ropts),
					  partition, n_partitions, snap_kinds, SNAP_N_KINDS);
		if (sn->pos < 0)
			ret = MAIL_ERR_INTERNAL;
	}
	if (ret != MAIL_OK) {
		*applied_r = 0;
		mailstore_snapshot_close(&sn);
		return ret;
	}
	log_event(LOG_INFO, LOG_SVC, "event=snapshot_open partition=%u applied=%llu",
		  (unsigned)partition, (unsigned long long)*applied_r);
	*snap_r = sn;
	return MAIL_OK;
}

/* 1 when key (of the partition) belongs to a deleted mailbox, 0 when not,
 * -1 on a read error. */
static int snap_key_dead(mailstore_snapshot *sn, const char *key, size_t klen)
{
	char kind = key[1];
	if (kind != KIND_META && kind != KIND_BODY_PTR && kind != KIND_BODY &&
	    kind != KIND_STRUCTURE && kind != KIND_TOMBSTONE)
		return 0;
	const char *nul = memchr(key + 2, '\0', klen - 2);
	if (nul == NULL || (size_t)(key + klen - (nul + 1)) < 8)
		return 0;
	size_t ulen = (size_t)(nul - (key + 2));
	uint64_t id = get_u64((const uint8_t *)nul + 1);
	if (sn->dead_user.len == ulen && memcmp(sn->dead_user.data, key + 2, ulen) == 0 &&
	    sn->dead_id == id)
		return sn->dead;
	int dead = mailstore__mbox_dead(sn->store, sn->ropts, key + 2, ulen, id);
	if (dead < 0)
		return -1;
	buf_reset(&sn->dead_user);
	buf_append(&sn->dead_user, key + 2, ulen);
	sn->dead_id = id;
	sn->dead = dead;
	return dead;
}

int mailstore_snapshot_next(mailstore_snapshot *sn, buf *out, size_t max_bytes)
{
	if (sn->pos < 0)
		return -MAIL_ERR_INTERNAL;
	if (sn->pos == 0)
		return 0;
	uint8_t ver = MAILSTORE_SNAPSHOT_VERSION;
	buf_append(out, &ver, 1);
	size_t used = 1;
	size_t n = 0;
	while (sn->pos == 1) {
		size_t klen, vlen;
		const char *key = leveldb_iter_key(sn->scan.it, &klen);
		int dead = snap_key_dead(sn, key, klen);
		if (dead < 0) {
			sn->pos = -1;
			break;
		}
		if (dead) {
			sn->pos = part_scan_next(&sn->scan);
			continue;
		}
		const char *val = leveldb_iter_value(sn->scan.it, &vlen);
		int pointer = key[1] == KIND_BODY_PTR;
		size_t ptr_len = vlen;
		uint64_t body_len = 0;
		if (pointer && bodystore_value_length(val, vlen, &body_len) < 0) {
			mailstore__log_corrupt("body_pointer", "");
			sn->pos = -1;
			break;
		}
		if (pointer)
			vlen = body_len > SIZE_MAX ? SIZE_MAX : (size_t)body_len;
		if (klen > MAILSTORE_SNAPSHOT_KEY_MAX || vlen > UINT32_MAX) {
			/* the limits keep keys far shorter: the installer would
			 * refuse this one */
			mailstore__log_corrupt("key", "");
			sn->pos = -1;
			break;
		}
		size_t pair = 2 * SNAP_LEN_BYTES + klen + vlen;
		if (n > 0 && used + pair > max_bytes)
			break;
		put_u32(out, (uint32_t)klen);
		size_t key_at = out->len;
		buf_append(out, key, klen);
		put_u32(out, (uint32_t)vlen);
		if (pointer) {
			/* the old 'B' pair: the kind byte, and the bytes */
			out->data[key_at + 1] = KIND_BODY;
			if (bodystore_read(sn->store->bodies, val, ptr_len, out) < 0) {
				sn->pos = -1;
				break;
			}
		} else {
			buf_append(out, val, vlen);
		}
		used += pair;
		n++;
		sn->pos = part_scan_next(&sn->scan);
	}
	if (sn->pos < 0)
		return -MAIL_ERR_INTERNAL;
	sn->pairs += n;
	sn->bytes += used;
	if (sn->pos == 0)
		log_event(LOG_INFO, LOG_SVC,
			  "event=snapshot_exported partition=%u pairs=%llu bytes=%llu",
			  (unsigned)sn->partition, (unsigned long long)sn->pairs,
			  (unsigned long long)sn->bytes);
	return 1;
}

int mailstore_snapshot_install_begin(mailstore *s, uint32_t partition, uint32_t n_partitions)
{
	if (!partition_args_valid(partition, n_partitions))
		return MAIL_ERR_PARAMS;
	leveldb_writebatch_t *wb = leveldb_writebatch_create();
	uint64_t n = 0;
	pthread_mutex_lock(&s->lock);
	/* the partition's age records go: forget where they were */
	memset(s->hints, 0, sizeof s->hints);
	if (s->n_install != n_partitions) {
		free(s->install_seen);
		s->install_seen = xcalloc(n_partitions, sizeof *s->install_seen);
		s->n_install = n_partitions;
	}
	s->install_seen[partition] = 0;
	/* the partition's bodies become garbage, counted as such */
	bodystore_txn_begin(s->bodies, wb, 1);
	struct part_scan sc;
	int pos = part_scan_start(&sc, leveldb_create_iterator(s->db, s->ropts), partition,
				  n_partitions, drop_kinds, DROP_N_KINDS);
	for (; pos == 1; pos = part_scan_next(&sc)) {
		size_t klen, vlen;
		const char *key = leveldb_iter_key(sc.it, &klen);
		if (key[1] == KIND_BODY_PTR) {
			const char *val = leveldb_iter_value(sc.it, &vlen);
			(void)bodystore_unref_value(s->bodies, val, vlen);
		}
		leveldb_writebatch_delete(wb, key, klen);
		n++;
	}
	part_scan_deinit(&sc);
	int ret;
	if (pos < 0) {
		mailstore__bodies_abandon(s, wb);
		ret = MAIL_ERR_INTERNAL;
	} else {
		/* in the same batch: a crash after it leaves "applied 0" */
		buf k;
		buf_init(&k);
		key_applied(&k, partition);
		leveldb_writebatch_delete(wb, (const char *)k.data, k.len);
		buf_deinit(&k);
		ret = mailstore__bodies_write(s, wb, 0, "snapshot_install_begin");
	}
	pthread_mutex_unlock(&s->lock);
	log_event(ret == MAIL_OK ? LOG_INFO : LOG_ERROR, LOG_SVC,
		  "event=snapshot_install_begin partition=%u dropped=%llu status=%s",
		  (unsigned)partition, (unsigned long long)n, mail_error_info(ret)->name);
	return ret;
}

/* What a chunk must keep above: the largest mailbox id and UIDVALIDITY. */
struct snap_ids {
	uint64_t max_mailbox_id;
	uint32_t max_uidvalidity;
	uint8_t seen; /* INSTALL_SAW_* */
};

static void snap_ids_note(struct snap_ids *ids, uint64_t mailbox_id, uint32_t uidvalidity)
{
	if (mailbox_id > ids->max_mailbox_id)
		ids->max_mailbox_id = mailbox_id;
	if (uidvalidity > ids->max_uidvalidity)
		ids->max_uidvalidity = uidvalidity;
}

/* A mailbox id the counter can still be raised above. */
static int snap_mailbox_id_ok(uint64_t id)
{
	return id != 0 && id != UINT64_MAX;
}

/* 'M': rest is the stored (canonical) mailbox name. The value is the
 * record of this version (re-encoding gives the same bytes; counters
 * within exists; keywords canonical, sorted, within this store's bound; at
 * most one special use) or the shorter one of the versions before the
 * counters (recounted on first use). */
static const char *snap_check_mailbox(const mailstore *s, const uint8_t *rest, size_t rlen,
				      const uint8_t *val, size_t vlen, struct snap_ids *ids)
{
	if (rlen == 0 || memchr(rest, '\0', rlen) != NULL)
		return "mailbox_name";
	char *name = xstrndup((const char *)rest, rlen);
	buf tmp;
	buf_init(&tmp);
	const char *canon = mailstore__mailbox_name(s, name, &tmp);
	int ok = canon != NULL && strcmp(canon, name) == 0;
	buf_deinit(&tmp);
	free(name);
	if (!ok)
		return "mailbox_name";
	/* the keyword count is the peer's: check it before it sizes anything */
	if (vlen >= MBOX_VALUE_FIXED_LEN &&
	    get_u16(val + MBOX_VALUE_FIXED_LEN - 2) > s->limits.max_mailbox_keywords)
		return "mailbox_keywords";
	struct mbox m;
	if (mailstore__mbox_decode(val, vlen, &m) < 0)
		return "mailbox_value";
	const char *why = NULL;
	if (!snap_mailbox_id_ok(m.id) || m.uidvalidity == 0 || m.uidnext == 0 ||
	    m.exists >= m.uidnext)
		why = "mailbox_value";
	if (why == NULL && !m.legacy) {
		unsigned su = m.attrs;
		buf again;
		buf_init(&again);
		mailstore__mbox_encode(&again, &m);
		if (again.len != vlen || memcmp(again.data, val, vlen) != 0 ||
		    m.unseen > m.exists || m.deleted > m.exists ||
		    (su & ~MAILSTORE_MBOX_SPECIAL_MASK) != 0 || (su & (su - 1)) != 0 ||
		    m.expunge_floor > m.highest_modseq)
			why = "mailbox_value";
		buf_deinit(&again);
		/* each a canonical keyword (no system flag), strictly ascending */
		for (size_t i = 0; why == NULL && i < m.n_keywords; i++) {
			char **one = NULL;
			size_t n_one = 0;
			const char *kw = m.keywords[i];
			if (kw[0] == '\\' ||
			    mailstore__flags_normalize(s, &kw, 1, &one, &n_one) != MAIL_OK ||
			    n_one != 1 || strcmp(one[0], kw) != 0 ||
			    (i > 0 && strcmp(m.keywords[i - 1], kw) >= 0))
				why = "mailbox_keywords";
			mailstore__flags_free(one, n_one);
		}
	}
	if (why == NULL)
		snap_ids_note(ids, m.id, m.uidvalidity);
	mailstore__mbox_deinit(&m);
	return why;
}

/* 'I' value: decodes exactly (re-encoding gives the same bytes, so no
 * trailing or NUL bytes) and its flags are canonical under this store's
 * limits (what mailstore__flags_normalize() would have stored). */
static const char *snap_check_meta_value(const mailstore *s, uint32_t uid, const uint8_t *val,
					 size_t vlen, int *deleted_r)
{
	/* the flag count is the peer's: check it before it sizes anything */
	if (vlen < META_FIXED_LEN || get_u16(val + META_FIXED_LEN - 2) > s->limits.max_flags)
		return "message_value";
	struct mailstore_message_info mi;
	if (mailstore__meta_decode(val, vlen, uid, &mi) < 0)
		return "message_value";
	const char *why = NULL;
	buf again;
	buf_init(&again);
	mailstore__meta_encode(&again, &mi);
	if (mi.modseq == 0 || again.len != vlen || memcmp(again.data, val, vlen) != 0)
		why = "message_value";
	buf_deinit(&again);
	char **canon = NULL;
	size_t n_canon = 0;
	if (why == NULL &&
	    (mailstore__flags_normalize(s, (const char *const *)mi.flags, mi.n_flags, &canon, &n_canon) !=
		     MAIL_OK ||
	     !mailstore__flags_equal(canon, n_canon, mi.flags, mi.n_flags)))
		why = "message_flags";
	*deleted_r = mailstore__flags_has(mi.flags, mi.n_flags, "\\Deleted");
	mailstore__flags_free(canon, n_canon);
	mailstore_message_info_free(&mi);
	return why;
}

/* 'I' and 'B': rest is mailbox_id u64 | uid u32. *deleted_r: an 'I' of a
 * message flagged \Deleted. */
static const char *snap_check_message(const mailstore *s, char kind, const uint8_t *rest,
				      size_t rlen, const uint8_t *val, size_t vlen,
				      struct snap_ids *ids, int *deleted_r)
{
	if (rlen != SNAP_MSG_KEY_TAIL)
		return "message_key";
	uint64_t mailbox_id = get_u64(rest);
	uint32_t uid = get_u32(rest + 8);
	if (!snap_mailbox_id_ok(mailbox_id) || uid == 0)
		return "message_key";
	snap_ids_note(ids, mailbox_id, 0);
	/* a body is raw bytes: any value is one */
	return kind == KIND_META ? snap_check_meta_value(s, uid, val, vlen, deleted_r) : NULL;
}

/* 'E': rest is mailbox_id u64 | uid u32, the value a structure record. */
static const char *snap_check_structure(const uint8_t *rest, size_t rlen, const uint8_t *val,
					size_t vlen, struct snap_ids *ids)
{
	if (rlen != SNAP_MSG_KEY_TAIL)
		return "structure_key";
	uint64_t mailbox_id = get_u64(rest);
	if (!snap_mailbox_id_ok(mailbox_id) || get_u32(rest + 8) == 0)
		return "structure_key";
	struct store_structure st;
	if (store_structure_decode(val, vlen, &st) < 0)
		return "structure_value";
	snap_ids_note(ids, mailbox_id, 0);
	return NULL;
}

/* 'T': rest is mailbox_id u64 | modseq u64 | uid u32; the value is the
 * version byte. */
static const char *snap_check_tombstone(const uint8_t *rest, size_t rlen, const uint8_t *val,
					size_t vlen, struct snap_ids *ids)
{
	if (rlen != MODSEQ_KEY_TAIL)
		return "tombstone_key";
	uint64_t mailbox_id = get_u64(rest);
	if (!snap_mailbox_id_ok(mailbox_id) || get_u64(rest + 8) == 0 || get_u32(rest + 16) == 0)
		return "tombstone_key";
	if (vlen != 1 || val[0] != VALUE_VERSION)
		return "tombstone_value";
	snap_ids_note(ids, mailbox_id, 0);
	return NULL;
}

/* 'U': rest is a canonical mailbox name; the value is the version byte. */
static const char *snap_check_subscription(const mailstore *s, const uint8_t *rest, size_t rlen,
					   const uint8_t *val, size_t vlen)
{
	if (rlen == 0 || memchr(rest, '\0', rlen) != NULL)
		return "subscription_key";
	char *name = xstrndup((const char *)rest, rlen);
	buf tmp;
	buf_init(&tmp);
	const char *canon = mailstore__mailbox_name(s, name, &tmp);
	int ok = canon != NULL && strcmp(canon, name) == 0;
	buf_deinit(&tmp);
	free(name);
	if (!ok)
		return "subscription_key";
	if (vlen != 1 || val[0] != VALUE_VERSION)
		return "subscription_value";
	return NULL;
}

/* 'D': rest is the delivery id. */
static const char *snap_check_delivery(const mailstore *s, const uint8_t *rest, size_t rlen,
				       const uint8_t *val, size_t vlen, struct snap_ids *ids)
{
	if (rlen == 0 || rlen > s->limits.max_delivery_id || memchr(rest, '\0', rlen) != NULL)
		return "delivery_key";
	if (vlen != DELIVERY_VALUE_LEN || val[0] != VALUE_VERSION)
		return "delivery_value";
	uint64_t mailbox_id = get_u64(val + 1);
	uint32_t uid = get_u32(val + 9);
	uint32_t uidvalidity = get_u32(val + 13);
	if (!snap_mailbox_id_ok(mailbox_id) || uid == 0 || uidvalidity == 0)
		return "delivery_value";
	snap_ids_note(ids, mailbox_id, uidvalidity);
	ids->seen |= INSTALL_SAW_DELIVERY;
	return NULL;
}

/* 'X': rest is time u64 | delivery id; the value is the version byte. */
static const char *snap_check_delivery_age(const mailstore *s, const uint8_t *rest,
					   size_t rlen, const uint8_t *val, size_t vlen,
					   struct snap_ids *ids)
{
	if (rlen <= AGE_TIME_LEN || rlen - AGE_TIME_LEN > s->limits.max_delivery_id ||
	    memchr(rest + AGE_TIME_LEN, '\0', rlen - AGE_TIME_LEN) != NULL)
		return "delivery_age_key";
	if (vlen != AGE_VALUE_LEN || val[0] != VALUE_VERSION)
		return "delivery_age_value";
	ids->seen |= INSTALL_SAW_AGE;
	return NULL;
}

/* NULL when key -> val may be installed into partition, else why not
 * (static text for the log). *deleted_r: the pair is the 'I' key of a
 * message flagged \Deleted (its 'Z' record goes in too). */
static const char *snap_check_pair(const mailstore *s, uint32_t partition,
				   uint32_t n_partitions, const uint8_t *key, size_t klen,
				   const uint8_t *val, size_t vlen, struct snap_ids *ids,
				   int *deleted_r)
{
	*deleted_r = 0;
	if (klen < 3 || key[0] != MAILSTORE_KEY_VERSION)
		return "key_version";
	const uint8_t *user = key + 2;
	const uint8_t *nul = memchr(user, '\0', klen - 2);
	if (nul == NULL)
		return "key_user";
	size_t ulen = (size_t)(nul - user);
	if (!mailstore__user_valid_len(s, (const char *)user, ulen))
		return "key_user";
	if (mailstore__user_partition(user, ulen, n_partitions) != partition)
		return "foreign_partition";
	const uint8_t *rest = nul + 1;
	size_t rlen = klen - 2 - ulen - 1;
	switch (key[1]) {
	case KIND_MAILBOX:
		return snap_check_mailbox(s, rest, rlen, val, vlen, ids);
	case KIND_META:
	case KIND_BODY:
		return snap_check_message(s, (char)key[1], rest, rlen, val, vlen, ids, deleted_r);
	case KIND_DELIVERY:
		return snap_check_delivery(s, rest, rlen, val, vlen, ids);
	case KIND_DELIVERY_AGE:
		return snap_check_delivery_age(s, rest, rlen, val, vlen, ids);
	case KIND_STRUCTURE:
		return snap_check_structure(rest, rlen, val, vlen, ids);
	case KIND_TOMBSTONE:
		return snap_check_tombstone(rest, rlen, val, vlen, ids);
	case KIND_SUBSCRIPTION:
		return snap_check_subscription(s, rest, rlen, val, vlen);
	default:
		/* 'A' included: only install_end sets the applied index */
		return "key_kind";
	}
}

/* Read one length-prefixed field at *off. NULL when it does not fit in the
 * chunk or is longer than max. */
static const uint8_t *snap_field(const uint8_t *data, size_t len, size_t *off, size_t max,
				 size_t *flen_r)
{
	if (len - *off < SNAP_LEN_BYTES)
		return NULL;
	size_t flen = get_u32(data + *off);
	*off += SNAP_LEN_BYTES;
	if (flen > max || flen > len - *off)
		return NULL;
	const uint8_t *p = data + *off;
	*off += flen;
	*flen_r = flen;
	return p;
}

/* The 'B' pairs of a chunk: they go to the segment files once the whole
 * chunk is found valid. */
struct snap_body {
	const uint8_t *key;
	size_t klen;
	const uint8_t *val;
	size_t vlen;
};

static int snap_body_cmp(const void *a, const void *b)
{
	const struct snap_body *x = a, *y = b;
	size_t n = x->klen < y->klen ? x->klen : y->klen;
	int c = memcmp(x->key, y->key, n);
	return c != 0 ? c : (x->klen > y->klen) - (x->klen < y->klen);
}

/* Every pair of the chunk but the bodies into wb, the bodies into
 * *bodies_r (heap array; *n_bodies_r; caller frees), the ids it carries
 * into ids. NULL, or why the chunk is refused (static text) with *off_r
 * where. */
static const char *snap_chunk_parse(const mailstore *s, uint32_t partition,
				    uint32_t n_partitions, const uint8_t *data, size_t len,
				    leveldb_writebatch_t *wb, struct snap_ids *ids,
				    struct snap_body **bodies_r, size_t *n_bodies_r,
				    uint64_t *pairs_r, size_t *off_r)
{
	*pairs_r = 0;
	*off_r = 0;
	size_t cap = 0;
	if (len == 0 || data[0] != MAILSTORE_SNAPSHOT_VERSION)
		return "version";
	size_t off = 1;
	while (off < len) {
		*off_r = off;
		size_t klen, vlen;
		const uint8_t *key = snap_field(data, len, &off, MAILSTORE_SNAPSHOT_KEY_MAX, &klen);
		if (key == NULL)
			return "key_length";
		const uint8_t *val = snap_field(data, len, &off, SIZE_MAX, &vlen);
		if (val == NULL)
			return "value_length";
		int deleted;
		const char *why = snap_check_pair(s, partition, n_partitions, key, klen, val,
						  vlen, ids, &deleted);
		if (why != NULL)
			return why;
		(*pairs_r)++;
		if (key[1] == KIND_BODY) {
			if (*n_bodies_r == cap) {
				cap = cap > 0 ? cap * 2 : 16;
				*bodies_r = xrealloc(*bodies_r, cap * sizeof **bodies_r);
			}
			(*bodies_r)[(*n_bodies_r)++] = (struct snap_body){ key, klen, val, vlen };
			continue;
		}
		leveldb_writebatch_put(wb, (const char *)key, klen, (const char *)val, vlen);
		/* the derived records ('Z' when \Deleted, 'W', 'N') */
		(void)deleted;
		if (key[1] == KIND_META)
			(void)mailstore__batch_put_derived_of_meta(wb, key, klen, val, vlen);
	}
	/* one body per message: a second would leave the first's bytes
	 * counted live */
	if (*n_bodies_r > 1) {
		qsort(*bodies_r, *n_bodies_r, sizeof **bodies_r, snap_body_cmp);
		for (size_t i = 1; i < *n_bodies_r; i++) {
			if (snap_body_cmp(&(*bodies_r)[i - 1], &(*bodies_r)[i]) == 0) {
				*off_r = (size_t)((*bodies_r)[i].key - data);
				return "duplicate_body";
			}
		}
	}
	return NULL;
}

/* The bodies of a chunk into the segment files, their pointers into wb
 * (inside a bodystore write), replacing whatever the store had there: an
 * earlier pointer (its bytes become garbage) or an old 'B' body. Under
 * lock. MAIL_OK or INTERNAL. */
static int snap_bodies_put(mailstore *s, const struct snap_body *bodies, size_t n,
			   leveldb_writebatch_t *wb)
{
	buf k;
	buf_init(&k);
	int ret = MAIL_OK;
	for (size_t i = 0; i < n && ret == MAIL_OK; i++) {
		const struct snap_body *b = &bodies[i];
		leveldb_writebatch_delete(wb, (const char *)b->key, b->klen);
		buf_reset(&k);
		buf_append(&k, b->key, b->klen);
		k.data[1] = KIND_BODY_PTR;
		if (bodystore_delete(s->bodies, k.data, k.len) < 0 ||
		    bodystore_put(s->bodies, k.data, k.len, b->val, b->vlen) < 0)
			ret = MAIL_ERR_INTERNAL;
	}
	buf_deinit(&k);
	return ret;
}

int mailstore_snapshot_install_chunk(mailstore *s, uint32_t partition, uint32_t n_partitions,
				     const uint8_t *data, size_t len)
{
	if (!partition_args_valid(partition, n_partitions))
		return MAIL_ERR_PARAMS;
	leveldb_writebatch_t *wb = leveldb_writebatch_create();
	struct snap_ids ids = { 0, 0, 0 };
	uint64_t pairs;
	size_t off;
	struct snap_body *bodies = NULL;
	size_t n_bodies = 0;
	const char *why = snap_chunk_parse(s, partition, n_partitions, data, len, wb, &ids,
					   &bodies, &n_bodies, &pairs, &off);
	if (why != NULL) {
		free(bodies);
		leveldb_writebatch_destroy(wb);
		log_event(LOG_WARN, LOG_SVC,
			  "event=snapshot_chunk_refused partition=%u reason=%s offset=%zu len=%zu",
			  (unsigned)partition, why, off, len);
		return MAIL_ERR_PARAMS;
	}
	if (pairs == 0) {
		leveldb_writebatch_destroy(wb);
		return MAIL_OK;
	}
	pthread_mutex_lock(&s->lock);
	bodystore_txn_begin(s->bodies, wb, 1);
	uint64_t next_id;
	uint32_t last_uidvalidity;
	int ret = mailstore__counters_get(s, "", &next_id, &last_uidvalidity);
	if (ret == MAIL_OK)
		ret = snap_bodies_put(s, bodies, n_bodies, wb);
	free(bodies);
	if (ret == MAIL_OK) {
		/* A mailbox created here later takes next_id and a UIDVALIDITY
		 * above last_uidvalidity: keep both above what came in. */
		if (next_id <= ids.max_mailbox_id)
			next_id = ids.max_mailbox_id + 1;
		if (last_uidvalidity < ids.max_uidvalidity)
			last_uidvalidity = ids.max_uidvalidity;
		mailstore__batch_put_counters(wb, next_id, last_uidvalidity);
		ret = mailstore__bodies_write(s, wb, 0, "snapshot_install_chunk");
		if (ret == MAIL_OK && partition < s->n_install && n_partitions == s->n_install)
			s->install_seen[partition] |= ids.seen;
	} else {
		mailstore__bodies_abandon(s, wb);
	}
	if (ret == MAIL_OK)
		mailstore__bodies_collect_after_write(s);
	pthread_mutex_unlock(&s->lock);
	return ret;
}

int mailstore_snapshot_install_end(mailstore *s, uint32_t partition, uint64_t applied)
{
	leveldb_writebatch_t *wb = leveldb_writebatch_create();
	mailstore__batch_put_applied(wb, partition, applied);
	pthread_mutex_lock(&s->lock);
	int ret = MAIL_OK;
	if (partition < s->n_install &&
	    s->install_seen[partition] == INSTALL_SAW_DELIVERY) {
		/* from a store older than the age records: date them here */
		uint64_t n;
		ret = mailstore__deliveries_index(s, 0, partition, s->n_install, "snapshot_index", &n);
		log_event(LOG_INFO, LOG_SVC, "event=snapshot_delivery_records_indexed "
			  "partition=%u count=%llu", (unsigned)partition, (unsigned long long)n);
	}
	if (partition < s->n_install)
		s->install_seen[partition] = 0;
	if (ret == MAIL_OK)
		ret = mailstore__db_commit(s, wb, "snapshot_install_end");
	else
		leveldb_writebatch_destroy(wb);
	pthread_mutex_unlock(&s->lock);
	log_event(ret == MAIL_OK ? LOG_INFO : LOG_ERROR, LOG_SVC,
		  "event=snapshot_install_end partition=%u applied=%llu status=%s",
		  (unsigned)partition, (unsigned long long)applied, mail_error_info(ret)->name);
	return ret;
}
