/* mailstore-private.h: what the mailstore's source files share (the
 * store object, the record codecs, LevelDB helpers). Internal to
 * store-node/mailstore*.c: nothing else includes it. The key schema is
 * documented in mailstore.h; the files keep to it byte for byte.
 *
 * Locking: functions named *_locked, and every mailstore__ helper that
 * touches the database, run under store->lock unless they say otherwise.
 */
#ifndef MAIL_MAILSTORE_PRIVATE_H
#define MAIL_MAILSTORE_PRIVATE_H

#include "mailstore.h"

#include "bodystore.h"
#include "buf.h"

#include <leveldb/c.h>

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define LOG_SVC "store"

/* Key kinds (second key byte). */
#define KIND_COUNTERS 'C'
#define KIND_MAILBOX 'M'
#define KIND_META 'I'
#define KIND_BODY 'B'
#define KIND_BODY_PTR 'P'
#define KIND_DELIVERY 'D'
#define KIND_APPLIED 'A'
#define KIND_DELIVERY_AGE 'X'
#define KIND_SCHEMA 'V'
#define KIND_DELETED 'Z'
/* issue 9 (mailstore.h, key schema) */
#define KIND_MODSEQ 'N'       /* derived: message by modseq */
#define KIND_UNSEEN 'W'       /* derived: message without \Seen */
#define KIND_TOMBSTONE 'T'    /* expunged uid by modseq (exported) */
#define KIND_STRUCTURE 'E'    /* a message's structure record (exported) */
#define KIND_SUBSCRIPTION 'U' /* a subscribed name (exported) */
#define KIND_GARBAGE 'G'      /* node-local: a deleted mailbox's keys to purge */

/* The store's data level ('V' record): 1 = every delivery record has its
 * 'X' age record; 2 = every message flagged \Deleted has its 'Z' record;
 * 3 = every message has its 'N' record (and 'W' when not \Seen) and every
 * mailbox record carries its counters (mailstore_open brings older stores
 * up, once). */
#define SCHEMA_LEVEL 3

/* Expired delivery records dropped per delivery at most: more than the one
 * a delivery adds, so a backlog (a store that was down, a lowered keep
 * time) drains, while a delivery never pays for more than a few. */
#define DELIVERY_EXPIRE_PER_WRITE 4
/* Slots of the per-user expiry hints (struct expiry_hint). */
#define EXPIRY_HINT_SLOTS 256

/* LevelDB shape. Until the body segments (bodystore.c) LevelDB held the
 * bodies, and its compaction rewrote them once per level as the store
 * grew; with the defaults (4 MiB memtable, 2 MiB tables, 4 KiB blocks) the
 * CPU per delivery nearly tripled over 100,000 deliveries (mailstore_bench:
 * 223 -> 627 us); 32 MiB memtable and tables, 64 KiB blocks made that 183
 * -> 280 us. Now LevelDB holds only small records (about 300 bytes a
 * message), and a 32 MiB memtable took 90,000 deliveries to fill: RSS
 * rose all that while (18 -> 57 MiB over 200,000). An 8 MiB one fills in
 * a fifth of that and stays lower (15 -> 33 MiB) for about 5 % more CPU
 * (mean 212-218 -> 223-231 us, random bodies, two runs each); 4 MiB cost
 * more (169 -> 236 us). docs/replication.md, "What grows with time". */
#define MAILSTORE_LEVELDB_WRITE_BUFFER (8u * 1024 * 1024)
#define MAILSTORE_LEVELDB_FILE_SIZE (32u * 1024 * 1024)
#define MAILSTORE_LEVELDB_BLOCK_SIZE (64u * 1024)

/* Format version of every value (first value byte). */
#define VALUE_VERSION 0x01

/* The mailbox record of the versions before issue 9, and the fixed part
 * of this one (counters, attributes, tombstone floor and count, the
 * keyword count; the keywords follow). */
#define MBOX_VALUE_LEN (1 + 8 + 4 + 4 + 8 + 4)
#define MBOX_VALUE_FIXED_LEN (MBOX_VALUE_LEN + 4 + 4 + 8 + 4 + 8 + 4 + 2)
#define COUNTERS_VALUE_LEN (1 + 8 + 4)
#define DELIVERY_VALUE_LEN (1 + 8 + 4 + 4)
#define META_FIXED_LEN (1 + 8 + 8 + 8 + 2)
#define AGE_VALUE_LEN 1
/* 'I', 'B', 'P', 'Z', 'W' and 'E' keys end in mailbox_id u64 | uid u32;
 * 'N' and 'T' keys in mailbox_id u64 | modseq u64 | uid u32. */
#define MODSEQ_KEY_TAIL (8 + 8 + 4)
#define MSG_KEY_TAIL (8 + 4)
#define AGE_TIME_LEN 8

/* Where a user's oldest live 'X' record is, at the latest: no 'X' key of
 * user sorts before 01 'X' <user> 00 <floor_ms>. The expiry pass seeks
 * there instead of to the start of the user's range, which after a while
 * is a run of deleted keys (LevelDB keeps each until compaction pushes it
 * down to the level of the key it deletes: skipping them made every
 * delivery slower with the number of records ever expired). Only a hint:
 * a slot shared by two users holds the last one, an empty slot means "seek
 * to the start"; which keys expire does not depend on it. */
struct expiry_hint {
	char user[256];      /* "" = empty slot */
	uint64_t floor_ms;
};

struct mailstore {
	leveldb_t *db;
	/* The message bodies ('P' pointers into segment files). */
	bodystore *bodies;
	leveldb_options_t *options;
	/* Bloom filters: a deliver looks up a delivery id that is (nearly
	 * always) absent; without them each miss reads a block of every table
	 * that may hold the key, more of them as the store grows. */
	leveldb_filterpolicy_t *filter;
	leveldb_readoptions_t *ropts;
	leveldb_writeoptions_t *wopts; /* sync = 1 */
	leveldb_writeoptions_t *wopts_nosync;
	char *dir;
	int apply_defer_sync;     /* mailstore_apply_defer_sync() */
	int apply_unsynced;       /* under lock: written unsynced since the barrier */
	struct mailstore_limits limits;
	/* Serialises every operation: read-modify-write of the mailbox record
	 * (uidnext, modseq) must not interleave. */
	pthread_mutex_t lock;
	/* Set by mailstore_apply_begin(): the replicated entry being applied. */
	int applying;
	struct mailstore_apply apply;
	/* Under lock. */
	struct expiry_hint hints[EXPIRY_HINT_SLOTS];
	/* Per partition, during a snapshot install: bit 0 a delivery record
	 * came in, bit 1 an age record did (install_end indexes the records
	 * of an exporter older than the age records). n_install entries. */
	uint8_t *install_seen;
	uint32_t n_install;
	/* Told of every committed change (mailstore_set_change_cb); the
	 * changes of an operation are queued under lock and told after it
	 * (mailstore__unlock). */
	mailstore_change_cb *change_cb;
	void *change_arg;
	/* the highest modseq of the last change noted (mailstore_last_modseq) */
	uint64_t last_modseq;
	struct mailstore_change *changes;
	size_t n_changes, cap_changes;
	/* Set by mailstore_quota_begin(): the limits of the next writes
	 * (quota_on = 0: none). */
	int quota_on;
	struct mailstore_quota quota;
	/* A deleted mailbox waits for its keys to be purged ('G'). */
	int purge_pending;
};

#define INSTALL_SAW_DELIVERY 1
#define INSTALL_SAW_AGE 2

/* The mailbox record, decoded. */
struct mbox {
	uint64_t id;
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint64_t highest_modseq;
	uint32_t exists;
	/* the counters every write batch keeps (issue 9) */
	uint32_t unseen;         /* messages without \Seen */
	uint32_t deleted;        /* messages with \Deleted */
	uint64_t size;           /* sum of the messages' sizes */
	uint32_t attrs;          /* MAILSTORE_MBOX_* special use */
	uint64_t expunge_floor;  /* expunges with a modseq <= this may have no
				  * tombstone left (mailstore_changes) */
	uint32_t n_tombstones;   /* 'T' records of the mailbox */
	uint32_t uid_floor;      /* every message's uid is >= this (a bound that
				  * may lag behind, 0 in records written before
				  * it): scans of the uid-keyed records ('M',
				  * 'W', 'Z') seek here, not to uid 0, so they
				  * never step over the deletion markers LevelDB
				  * keeps for expunged messages until it compacts */
	char **keywords;         /* sorted, unique: every keyword ever set */
	size_t n_keywords;
	int legacy;              /* decoded from a record of the version before
				  * the counters: they were recounted */
};

/* A pass that writes many keys (an upgrade): batches of UPGRADE_BATCH,
 * each committed when full. */
#define UPGRADE_BATCH 10000

struct upgrade_batch {
	mailstore *s;
	const char *what;
	leveldb_writebatch_t *wb;
	size_t n;
	int ret;
};

/* ---- encoding (big-endian) and keys ---- */

static inline void put_u16(buf *b, uint16_t v)
{
	uint8_t d[2] = { (uint8_t)(v >> 8), (uint8_t)v };
	buf_append(b, d, sizeof d);
}

static inline void put_u32(buf *b, uint32_t v)
{
	uint8_t d[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
	buf_append(b, d, sizeof d);
}

static inline void put_u64(buf *b, uint64_t v)
{
	put_u32(b, (uint32_t)(v >> 32));
	put_u32(b, (uint32_t)v);
}

static inline uint16_t get_u16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t get_u32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint64_t get_u64(const uint8_t *p)
{
	return ((uint64_t)get_u32(p) << 32) | get_u32(p + 4);
}

/* 01 kind <user> 00: the prefix of every per-user key. */
static inline void key_user_prefix(buf *k, char kind, const char *user)
{
	buf_reset(k);
	uint8_t head[2] = { MAILSTORE_KEY_VERSION, (uint8_t)kind };
	buf_append(k, head, sizeof head);
	buf_append(k, user, strlen(user) + 1);
}

static inline void key_mailbox(buf *k, const char *user, const char *name)
{
	key_user_prefix(k, KIND_MAILBOX, user);
	buf_append_str(k, name);
}

static inline void key_message(buf *k, char kind, const char *user, uint64_t mbox_id, uint32_t uid)
{
	key_user_prefix(k, kind, user);
	put_u64(k, mbox_id);
	put_u32(k, uid);
}

/* Where a scan of m's uid-keyed records that starts at uid should seek. */
static inline uint32_t mbox_seek_uid(const struct mbox *m, uint32_t uid)
{
	return uid > m->uid_floor ? uid : m->uid_floor;
}

/* 01 kind <user> 00 <mbox_id u64> <modseq u64> <uid u32>: 'N' and 'T'. */
static inline void key_modseq(buf *k, char kind, const char *user, uint64_t mbox_id,
			      uint64_t modseq, uint32_t uid)
{
	key_user_prefix(k, kind, user);
	put_u64(k, mbox_id);
	put_u64(k, modseq);
	put_u32(k, uid);
}

/* 01 kind <user> 00 <mbox_id u64>: the prefix of a mailbox's keys of kind. */
static inline void key_mbox_prefix(buf *k, char kind, const char *user, uint64_t mbox_id)
{
	key_user_prefix(k, kind, user);
	put_u64(k, mbox_id);
}

static inline void key_delivery(buf *k, const char *user, const char *delivery_id)
{
	key_user_prefix(k, KIND_DELIVERY, user);
	buf_append_str(k, delivery_id);
}

/* 01 'X' <user> 00 <time_ms u64> [<delivery_id>]: without the id, the
 * first key that can hold time_ms. */
static inline void key_delivery_age(buf *k, const char *user, uint64_t time_ms,
			     const char *delivery_id)
{
	key_user_prefix(k, KIND_DELIVERY_AGE, user);
	put_u64(k, time_ms);
	if (delivery_id != NULL)
		buf_append_str(k, delivery_id);
}

static inline void key_counters(buf *k)
{
	uint8_t head[2] = { MAILSTORE_KEY_VERSION, KIND_COUNTERS };
	buf_reset(k);
	buf_append(k, head, sizeof head);
}

static inline void key_applied(buf *k, uint32_t partition)
{
	uint8_t head[2] = { MAILSTORE_KEY_VERSION, KIND_APPLIED };
	buf_reset(k);
	buf_append(k, head, sizeof head);
	put_u32(k, partition);
}

/* ---- shared helpers (mailstore.c) ---- */

void mailstore__mbox_encode(buf *v, const struct mbox *m);
int mailstore__mbox_decode(const uint8_t *p, size_t len, struct mbox *m);
/* n strings of a record, each u16 length | bytes, from p + *off_r (len:
 * the whole record): *v_r gets a heap array (NULL when n is 0), *n_r
 * counts what was decoded (so the caller frees that many on failure),
 * *off_r moves past them. -1 when a length runs past len. */
int mailstore__strlist_decode(const uint8_t *p, size_t len, size_t *off_r, size_t n,
			      char ***v_r, size_t *n_r);
void mailstore__meta_encode(buf *v, const struct mailstore_message_info *mi);
int mailstore__meta_decode(const uint8_t *p, size_t len, uint32_t uid,
			   struct mailstore_message_info *mi);
int mailstore__user_valid_len(const mailstore *s, const char *user, size_t len);
int mailstore__user_valid(const mailstore *s, const char *user);
/* The stored name of mailbox name: name itself, MAILSTORE_INBOX for any
 * case of INBOX (or ""), or in tmp (valid while tmp is) "INBOX/..." for
 * any case of an INBOX/ prefix. NULL when name is not a valid name. */
const char *mailstore__mailbox_name(const mailstore *s, const char *name, buf *tmp);
void mailstore__flags_free(char **flags, size_t n);
void mailstore__flags_sort_unique(char **flags, size_t *n);
int mailstore__flags_normalize(const mailstore *s, const char *const *in, size_t n_in,
			       char ***out_r, size_t *n_r);
int mailstore__flags_has(char *const *flags, size_t n, const char *flag);
int mailstore__flags_equal(char *const *a, size_t na, char *const *b, size_t nb);
void mailstore__flags_apply(char *const *old, size_t n_old, char *const *req, size_t n_req,
			    enum mailstore_flag_mode mode, char ***out_r, size_t *n_r);
uint32_t *mailstore__uids_sorted(const uint32_t *uids, size_t n, size_t *n_r);
void mailstore__batch_put_applied(leveldb_writebatch_t *wb, uint32_t partition, uint64_t index);
int mailstore__db_commit(mailstore *s, leveldb_writebatch_t *wb, const char *what);
int mailstore__db_write(mailstore *s, leveldb_writebatch_t *wb, const char *what);
int mailstore__bodies_write(mailstore *s, leveldb_writebatch_t *wb, int apply, const char *what);
void mailstore__bodies_abandon(mailstore *s, leveldb_writebatch_t *wb);
void mailstore__bodies_collect_after_write(mailstore *s);
void mailstore__db_read_failed(char *err);
int mailstore__db_iter_close(leveldb_iterator_t *it);
int mailstore__db_get(mailstore *s, const buf *key, char **val_r, size_t *len_r);
void mailstore__log_corrupt(const char *what, const char *user);
int mailstore__mbox_get(mailstore *s, const char *user, const char *name, struct mbox *m);
int mailstore__counters_get(mailstore *s, const char *user, uint64_t *next_id_r,
			    uint32_t *last_uidvalidity_r);
void mailstore__batch_put_counters(leveldb_writebatch_t *wb, uint64_t next_id,
				   uint32_t last_uidvalidity);
int mailstore__mbox_open(mailstore *s, const char *user, const char *name, struct mbox *m);
void mailstore__batch_put_mbox(leveldb_writebatch_t *wb, buf *k, buf *v, const char *user,
			       const char *name, const struct mbox *m);
int mailstore__meta_get(mailstore *s, const char *user, const struct mbox *m, uint32_t uid,
			struct mailstore_message_info *mi);
void mailstore__mbox_info_fill(struct mailstore_mailbox_info *info, const char *name,
			       const struct mbox *m);
uint32_t mailstore__user_partition(const void *user, size_t len, uint32_t n_partitions);
int64_t mailstore__store_now_ms(const mailstore *s);
void mailstore__upgrade_batch_init(struct upgrade_batch *ub, mailstore *s, const char *what);
int mailstore__upgrade_batch_added(struct upgrade_batch *ub);
int mailstore__upgrade_batch_finish(struct upgrade_batch *ub, int iter_ret);
int mailstore__deliveries_index(mailstore *s, int all, uint32_t partition, uint32_t n_partitions,
				const char *what, uint64_t *n_r);
void mailstore__batch_put_deleted_of_meta(leveldb_writebatch_t *wb, const void *key, size_t klen);
int mailstore__applied_get(mailstore *s, const leveldb_readoptions_t *ropts, uint32_t partition,
			   uint64_t *index_r);
void mailstore__batch_mark_deleted(leveldb_writebatch_t *wb, buf *k, const char *user,
				   uint64_t mbox_id, uint32_t uid, int on);

/* The body of a message: MAIL_OK with *body_r (heap), or INTERNAL. */
int mailstore__body_get(mailstore *s, const char *user, uint64_t mbox_id, uint32_t uid,
			void **body_r, size_t *len_r);
/* One message and its body (mailstore_fetch, under lock). */
int mailstore__fetch_locked(mailstore *s, const char *user, const char *name, uint32_t uid,
			    struct mailstore_message_info *info_r, void **body_r, size_t *len_r);

/* MAIL_OK when adding bytes and messages to user's usage stays within
 * the limits of mailstore_quota_begin (always, when none), MAIL_ERR_QUOTA
 * when not (logged event=quota_refused), INTERNAL on a read error. */
int mailstore__quota_check_locked(mailstore *s, const char *user, uint64_t bytes,
				  uint64_t messages);
int mailstore__usage_locked(mailstore *s, const char *user, struct mailstore_usage *usage_r);

/* ---- records (mailstore-records.c) ---- */

/* Free m's keywords (a decoded mailbox owns them). */
void mailstore__mbox_deinit(struct mbox *m);
/* A deep copy of src into dst. */
void mailstore__mbox_copy(struct mbox *dst, const struct mbox *src);
/* Recount a legacy record's counters and keywords from its messages
 * (read only). MAIL_OK or INTERNAL. */
int mailstore__mbox_recount(mailstore *s, const char *user, struct mbox *m);
/* Each of user's mailbox records whose key starts with prefix, in key
 * order, decoded (a legacy record recounted): fn(arg, name, m) gets the
 * name (the key from byte name_at on) and owns *m (keeps it, or
 * mailstore__mbox_deinit()s it); a return other than MAIL_OK stops the
 * walk with it. A record that does not decode is logged: INTERNAL. Under
 * lock. */
typedef int mailstore_mbox_walk_fn(void *arg, const char *name, struct mbox *m);
int mailstore__mbox_walk_locked(mailstore *s, const char *user, const buf *prefix,
				size_t name_at, mailstore_mbox_walk_fn *fn, void *arg);
/* Add the keywords among flags (sorted, canonical) to m's set. With
 * drop = 0: LIMIT (m untouched) when the set would pass
 * limits.max_mailbox_keywords; with drop = 1 the keywords that do not fit
 * are removed from flags instead (*n_flags shrinks, freed), for
 * deliveries, which are never refused for a label. */
int mailstore__keywords_merge(const mailstore *s, struct mbox *m, char **flags, size_t *n_flags,
			      int drop);
/* The derived records of message mi ('N', 'W' when not \Seen, 'Z' when
 * \Deleted): put (on = 1) or delete (on = 0). */
void mailstore__msg_index(leveldb_writebatch_t *wb, buf *k, const char *user, uint64_t mbox_id,
			  const struct mailstore_message_info *mi, int on);
/* Write message mi ('I' and the derived records; old: its previous meta,
 * NULL for a new message) and account it in m (exists, counters; not
 * uidnext or highest_modseq, which the caller sets). */
void mailstore__msg_put(leveldb_writebatch_t *wb, buf *k, buf *v, const char *user,
			struct mbox *m, const struct mailstore_message_info *old,
			const struct mailstore_message_info *mi);
/* Remove message mi from m: its 'I', derived, 'E', 'B' records and body
 * pointer (inside a bodystore write), a tombstone at modseq when
 * tombstone = 1, the counters. 0, or -1 on a bodystore read error. */
int mailstore__msg_remove(mailstore *s, leveldb_writebatch_t *wb, buf *k, const char *user,
			  struct mbox *m, const struct mailstore_message_info *mi, uint64_t modseq,
			  int tombstone);
/* Before removing `adding` messages of m with tombstones: drop the oldest
 * tombstones so that at most limits.max_tombstones remain, raising
 * m->expunge_floor past what is dropped; *keep_r = 0 when `adding` alone
 * is over the bound (then no tombstone is kept: every old one goes and
 * the floor becomes new_modseq). MAIL_OK or INTERNAL. */
int mailstore__tombstones_make_room(mailstore *s, leveldb_writebatch_t *wb, const char *user,
				    struct mbox *m, size_t adding, uint64_t new_modseq,
				    int *keep_r);
/* Expunge the n messages msgs of m (inside a bodystore write) with
 * tombstones at m->highest_modseq (already raised by the caller), making
 * room for them first. MAIL_OK or INTERNAL. */
int mailstore__msgs_expunge(mailstore *s, leveldb_writebatch_t *wb, buf *k, const char *user,
			    struct mbox *m, const struct mailstore_message_info *msgs, size_t n);
/* For an 'I' key and value being installed: its derived records into wb.
 * 0, or -1 when the value does not decode. */
int mailstore__batch_put_derived_of_meta(leveldb_writebatch_t *wb, const void *key, size_t klen,
					 const void *val, size_t vlen);
/* The structure record of a message into wb: the given bytes, or computed
 * from body when structure is NULL. */
void mailstore__structure_put(leveldb_writebatch_t *wb, buf *k, const char *user,
			      uint64_t mbox_id, uint32_t uid, const void *structure,
			      size_t structure_len, const void *body, size_t body_len);
/* Queue a change of user's mailbox for the change callback (under lock). */
void mailstore__note_change(mailstore *s, const char *user, const char *mailbox,
			    uint64_t highest_modseq, int gone);
/* Unlock store->lock, then tell the queued changes. */
void mailstore__unlock(mailstore *s);
/* Level 3 of the schema: derived records and counters for a store of an
 * older level (mailstore_open). *n_r: messages indexed. */
int mailstore__index_messages(mailstore *s, uint64_t *n_r);
int mailstore__count_mailboxes(mailstore *s, uint64_t *n_r);

/* ---- mailboxes (mailstore-mailbox.c) ---- */

/* INBOX (with the special-use mailboxes) created if user has none yet:
 * every operation that names a mailbox runs it first, so that a new
 * user's first APPEND to Sent finds Sent. MAIL_OK or INTERNAL. */
int mailstore__user_init(mailstore *s, const char *user);

/* Create mailbox name of user (absent) with attrs, its missing parents,
 * and, for INBOX, the special-use mailboxes; one batch. *m gets the
 * record of name (caller deinits). */
int mailstore__mbox_create(mailstore *s, const char *user, const char *name, unsigned attrs,
			   struct mbox *m);
/* One step of purging a deleted mailbox's keys (its own sync batch).
 * *did_r = 1 when it found work. MAIL_OK or INTERNAL. */
int mailstore__purge_step(mailstore *s, int *did_r);
/* 1 when user's mailbox mbox_id is deleted and waits for its purge (read
 * through ropts), 0 when not, -1 on a read error. */
int mailstore__mbox_dead(mailstore *s, const leveldb_readoptions_t *ropts, const char *user,
			 size_t ulen, uint64_t mbox_id);

#endif
