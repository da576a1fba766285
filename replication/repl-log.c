/* repl-log.c: the LevelDB storage of the replicated logs (schema in
 * repl-private.h). No loop, no network: unit-tested by test-repl-log.c. */
#include "repl-private.h"

#include <stdlib.h>
#include <string.h>

#include <leveldb/c.h>

#include "log.h"
#include "xalloc.h"

#define KIND_ENTRY 'E'
#define KIND_STATE 'S'
#define KIND_META 'M'
#define ENTRY_KEY_LEN (2 + 4 + 8)
#define STATE_KEY_LEN (2 + 4)
#define ENTRY_HDR_LEN (8 + 1)
#define STATE_VAL_LEN (6 * 8)
#define STATE_VAL_LEN_V1 (4 * 8)   /* before compaction: no base */
#define META_VAL_LEN (8 + 4)

struct repl_log {
	leveldb_t *db;
	leveldb_options_t *options;
	leveldb_readoptions_t *read;
	leveldb_writeoptions_t *write_sync;
	leveldb_writeoptions_t *write_nosync;
	uint64_t sync_writes;
	uint64_t value_bytes_read;
};

struct repl_log_batch {
	repl_log *log;
	uint32_t partition;
	leveldb_writebatch_t *wb;
};

static void log__put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static void log__put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint32_t log__get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t log__get_u64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

static void log__index_key(uint8_t *key, int kind, uint32_t partition, uint64_t index)
{
	key[0] = REPL_KEY_VERSION;
	key[1] = (uint8_t)kind;
	log__put_u32(key + 2, partition);
	log__put_u64(key + 6, index);
}

static void log__entry_key(uint8_t *key, uint32_t partition, uint64_t index)
{
	log__index_key(key, KIND_ENTRY, partition, index);
}

static void log__meta_key(uint8_t *key, uint32_t partition, uint64_t index)
{
	log__index_key(key, KIND_META, partition, index);
}

static void log__state_key(uint8_t *key, uint32_t partition)
{
	key[0] = REPL_KEY_VERSION;
	key[1] = KIND_STATE;
	log__put_u32(key + 2, partition);
}

/* Log LevelDB's (malloc'd) error text and free it. */
static void log__error(const char *op, char *err)
{
	char q[512];
	log_event(LOG_ERROR, "repl", "event=log_error op=%s error=%s", op,
		  log_quote(q, sizeof q, err, strlen(err)));
	leveldb_free(err);
}

int repl_log_open(const char *dir, repl_log **log_r, const char **error_r)
{
	repl_log *l = xcalloc(1, sizeof *l);
	char *err = NULL;
	l->options = leveldb_options_create();
	leveldb_options_set_create_if_missing(l->options, 1);
	l->db = leveldb_open(l->options, dir, &err);
	if (err != NULL) {
		log__error("open", err);
		leveldb_options_destroy(l->options);
		free(l);
		*error_r = "cannot open the replication log (see the log)";
		return -1;
	}
	l->read = leveldb_readoptions_create();
	l->write_sync = leveldb_writeoptions_create();
	leveldb_writeoptions_set_sync(l->write_sync, 1);
	l->write_nosync = leveldb_writeoptions_create();
	*log_r = l;
	return 0;
}

void repl_log_close(repl_log **log)
{
	repl_log *l = *log;
	if (l == NULL)
		return;
	leveldb_close(l->db);
	leveldb_readoptions_destroy(l->read);
	leveldb_writeoptions_destroy(l->write_sync);
	leveldb_writeoptions_destroy(l->write_nosync);
	leveldb_options_destroy(l->options);
	free(l);
	*log = NULL;
}

uint64_t repl_log_sync_writes(const repl_log *log)
{
	return __atomic_load_n(&log->sync_writes, __ATOMIC_RELAXED);
}

uint64_t repl_log_value_bytes_read(const repl_log *log)
{
	return log->value_bytes_read;
}

int repl_log_state_load(repl_log *log, uint32_t partition, struct repl_log_state *state_r)
{
	uint8_t key[STATE_KEY_LEN];
	log__state_key(key, partition);
	char *err = NULL;
	size_t vlen;
	char *v = leveldb_get(log->db, log->read, (const char *)key, sizeof key, &vlen, &err);
	if (err != NULL) {
		log__error("state_load", err);
		return -1;
	}
	if (v == NULL) {
		memset(state_r, 0, sizeof *state_r);
		return 0;
	}
	if (vlen != STATE_VAL_LEN && vlen != STATE_VAL_LEN_V1) {
		log_event(LOG_ERROR, "repl", "event=log_corrupt partition=%u what=state len=%zu",
			  partition, vlen);
		leveldb_free(v);
		return -1;
	}
	const uint8_t *p = (const uint8_t *)v;
	state_r->epoch = log__get_u64(p);
	state_r->last_index = log__get_u64(p + 8);
	state_r->commit_index = log__get_u64(p + 16);
	state_r->applied_index = log__get_u64(p + 24);
	state_r->base_index = vlen == STATE_VAL_LEN ? log__get_u64(p + 32) : 0;
	state_r->base_epoch = vlen == STATE_VAL_LEN ? log__get_u64(p + 40) : 0;
	leveldb_free(v);
	return 1;
}

/* The value of an entry ('E', counted in value_bytes_read) or of its side
 * record ('M') at index, checked for length: 1 with *v_r (free it with
 * leveldb_free), 0 when there is none, -1 on a storage error or a damaged
 * value (logged). */
static int log__index_get(repl_log *log, int kind, uint32_t partition, uint64_t index,
			  char **v_r, size_t *vlen_r)
{
	uint8_t key[ENTRY_KEY_LEN];
	log__index_key(key, kind, partition, index);
	char *err = NULL;
	size_t vlen;
	char *v = leveldb_get(log->db, log->read, (const char *)key, sizeof key, &vlen, &err);
	if (err != NULL) {
		log__error(kind == KIND_ENTRY ? "entry_get" : "meta_get", err);
		return -1;
	}
	if (v == NULL)
		return 0;
	if (kind == KIND_ENTRY)
		log->value_bytes_read += vlen;
	if (kind == KIND_ENTRY ? vlen < ENTRY_HDR_LEN : vlen != META_VAL_LEN) {
		log_event(LOG_ERROR, "repl", "event=log_corrupt partition=%u index=%llu what=%c "
			  "len=%zu", partition, (unsigned long long)index, kind, vlen);
		leveldb_free(v);
		return -1;
	}
	*v_r = v;
	*vlen_r = vlen;
	return 1;
}

int repl_log_entry_get(repl_log *log, uint32_t partition, uint64_t index, uint64_t *epoch_r,
		       int *kind_r, buf *out)
{
	char *v;
	size_t vlen;
	int r = log__index_get(log, KIND_ENTRY, partition, index, &v, &vlen);
	if (r != 1)
		return r;
	const uint8_t *p = (const uint8_t *)v;
	*epoch_r = log__get_u64(p);
	*kind_r = p[8];
	if (out != NULL)
		buf_append(out, p + ENTRY_HDR_LEN, vlen - ENTRY_HDR_LEN);
	leveldb_free(v);
	return 1;
}

/* Metadata of one entry: from its side record, or, for an entry written
 * before side records existed, from the entry itself (its value is read:
 * counted in value_bytes_read). 1, 0 none, -1 error. */
static int log__meta_of(repl_log *log, uint32_t partition, uint64_t index,
			struct repl_log_meta *meta_r)
{
	char *v;
	size_t vlen;
	int r = log__index_get(log, KIND_META, partition, index, &v, &vlen);
	if (r == 1) {
		meta_r->len = log__get_u32((const uint8_t *)v + 8);
	} else if (r == 0) {
		r = log__index_get(log, KIND_ENTRY, partition, index, &v, &vlen);
		if (r == 1)
			meta_r->len = vlen - ENTRY_HDR_LEN;
	}
	if (r != 1)
		return r;
	meta_r->epoch = log__get_u64((const uint8_t *)v);
	leveldb_free(v);
	return 1;
}

int repl_log_entry_epoch(repl_log *log, uint32_t partition, uint64_t index, uint64_t *epoch_r)
{
	if (index == 0) {
		*epoch_r = 0;
		return 0;
	}
	struct repl_log_meta m;
	if (log__meta_of(log, partition, index, &m) != 1)
		return -1;
	*epoch_r = m.epoch;
	return 0;
}

int repl_log_read(repl_log *log, uint32_t partition, uint64_t from, uint64_t last,
		  size_t max_entries, size_t max_bytes, struct repl_log_entry *entries_r)
{
	if (from > last || max_entries == 0)
		return 0;
	uint8_t key[ENTRY_KEY_LEN];
	log__entry_key(key, partition, from);
	leveldb_iterator_t *it = leveldb_create_iterator(log->db, log->read);
	size_t n = 0, bytes = 0;
	uint64_t want = from;
	/* Never step past the last entry wanted: the keys after it may be a
	 * run of deleted ones (the compacted front of the next partition's
	 * log, or of the side records), which LevelDB would walk one by one
	 * until a live key. */
	leveldb_iter_seek(it, (const char *)key, sizeof key);
	for (; want <= last && n < max_entries && (n == 0 || bytes < max_bytes); want++) {
		if (want > from)
			leveldb_iter_next(it);
		if (!leveldb_iter_valid(it))
			break;
		size_t klen, vlen;
		const uint8_t *k = (const uint8_t *)leveldb_iter_key(it, &klen);
		log__entry_key(key, partition, want);
		if (klen != sizeof key || memcmp(k, key, sizeof key) != 0)
			break;    /* a gap: return what is contiguous */
		const uint8_t *v = (const uint8_t *)leveldb_iter_value(it, &vlen);
		if (vlen < ENTRY_HDR_LEN)
			break;
		struct repl_log_entry *e = &entries_r[n++];
		e->epoch = log__get_u64(v);
		e->kind = v[8];
		e->len = vlen - ENTRY_HDR_LEN;
		uint8_t *copy = xmalloc(e->len + 1);
		memcpy(copy, v + ENTRY_HDR_LEN, e->len);
		e->payload = copy;
		bytes += e->len;
		log->value_bytes_read += vlen;
	}
	char *err = NULL;
	leveldb_iter_get_error(it, &err);
	leveldb_iter_destroy(it);
	if (err != NULL)
		log__error("read", err);
	if (err != NULL || n == 0) {
		/* from <= last, so the entry at `from` must exist */
		log_event(LOG_ERROR, "repl", "event=log_gap partition=%u from=%llu last=%llu",
			  partition, (unsigned long long)from, (unsigned long long)last);
		repl_log_entries_free(entries_r, n);
		return -1;
	}
	return (int)n;
}

int repl_log_read_meta(repl_log *log, uint32_t partition, uint64_t from, uint64_t last,
		       size_t max_entries, struct repl_log_meta *meta_r)
{
	if (from > last || max_entries == 0)
		return 0;
	/* The side records only (12-byte values, apart from the payloads);
	 * an entry without one (written by an older binary) is looked up by
	 * itself. */
	uint8_t key[ENTRY_KEY_LEN];
	log__meta_key(key, partition, from);
	leveldb_iterator_t *it = leveldb_create_iterator(log->db, log->read);
	leveldb_iter_seek(it, (const char *)key, sizeof key);
	size_t n = 0;
	uint64_t want = from;
	int bad = 0;
	for (; want <= last && n < max_entries; want++) {
		size_t klen = 0, vlen;
		const uint8_t *k = leveldb_iter_valid(it) ?
				   (const uint8_t *)leveldb_iter_key(it, &klen) : NULL;
		log__meta_key(key, partition, want);
		if (k != NULL && klen == sizeof key && memcmp(k, key, sizeof key) == 0) {
			const uint8_t *v = (const uint8_t *)leveldb_iter_value(it, &vlen);
			if (vlen != META_VAL_LEN) {
				bad = 1;
				break;
			}
			meta_r[n].epoch = log__get_u64(v);
			meta_r[n].len = log__get_u32(v + 8);
			n++;
			/* Not past the last one wanted (see repl_log_read). */
			if (want < last && n < max_entries)
				leveldb_iter_next(it);
			continue;
		}
		/* No side record at this index: an older entry, or a gap. The
		 * iterator stays where it is (at a later record, if any). */
		if (log__meta_of(log, partition, want, &meta_r[n]) != 1) {
			bad = 1;
			break;
		}
		n++;
	}
	char *err = NULL;
	leveldb_iter_get_error(it, &err);
	leveldb_iter_destroy(it);
	if (err != NULL)
		log__error("read_meta", err);
	if (err != NULL || bad) {
		log_event(LOG_ERROR, "repl", "event=log_gap partition=%u from=%llu at=%llu",
			  partition, (unsigned long long)from, (unsigned long long)want);
		return -1;
	}
	return (int)n;
}

void repl_log_entries_free(struct repl_log_entry *entries, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free((void *)entries[i].payload);
		entries[i].payload = NULL;
	}
}

repl_log_batch *repl_log_batch_create(repl_log *log, uint32_t partition)
{
	repl_log_batch *b = xcalloc(1, sizeof *b);
	b->log = log;
	b->partition = partition;
	b->wb = leveldb_writebatch_create();
	return b;
}

void repl_log_batch_put_entry(repl_log_batch *b, uint64_t index, uint64_t epoch, int kind,
			      const void *payload, size_t len)
{
	uint8_t key[ENTRY_KEY_LEN];
	log__entry_key(key, b->partition, index);
	uint8_t *v = xmalloc(ENTRY_HDR_LEN + len);
	log__put_u64(v, epoch);
	v[8] = (uint8_t)kind;
	if (len > 0)
		memcpy(v + ENTRY_HDR_LEN, payload, len);
	leveldb_writebatch_put(b->wb, (const char *)key, sizeof key, (const char *)v,
			       ENTRY_HDR_LEN + len);
	free(v);
	uint8_t m[META_VAL_LEN];
	log__meta_key(key, b->partition, index);
	log__put_u64(m, epoch);
	log__put_u32(m + 8, (uint32_t)len);
	leveldb_writebatch_put(b->wb, (const char *)key, sizeof key, (const char *)m, sizeof m);
}

void repl_log_batch_truncate(repl_log_batch *b, uint64_t from, uint64_t to)
{
	uint8_t key[ENTRY_KEY_LEN];
	for (uint64_t i = from; i <= to && i != 0; i++) {
		log__entry_key(key, b->partition, i);
		leveldb_writebatch_delete(b->wb, (const char *)key, sizeof key);
		log__meta_key(key, b->partition, i);
		leveldb_writebatch_delete(b->wb, (const char *)key, sizeof key);
	}
}

void repl_log_batch_put_state(repl_log_batch *b, const struct repl_log_state *st)
{
	uint8_t key[STATE_KEY_LEN], v[STATE_VAL_LEN];
	log__state_key(key, b->partition);
	log__put_u64(v, st->epoch);
	log__put_u64(v + 8, st->last_index);
	log__put_u64(v + 16, st->commit_index);
	log__put_u64(v + 24, st->applied_index);
	log__put_u64(v + 32, st->base_index);
	log__put_u64(v + 40, st->base_epoch);
	/* A log never compacted keeps the older, shorter record, which a
	 * binary from before compaction can still read (a downgrade during a
	 * rolling upgrade). */
	size_t len = st->base_index == 0 && st->base_epoch == 0 ? STATE_VAL_LEN_V1 : sizeof v;
	leveldb_writebatch_put(b->wb, (const char *)key, sizeof key, (const char *)v, len);
}

void repl_log_batch_merge(repl_log_batch *dst, repl_log_batch *src)
{
	leveldb_writebatch_append(dst->wb, src->wb);
	leveldb_writebatch_destroy(src->wb);
	free(src);
}

void repl_log_batch_discard(repl_log_batch *b)
{
	leveldb_writebatch_destroy(b->wb);
	free(b);
}

int repl_log_batch_commit(repl_log_batch *b, int sync)
{
	char *err = NULL;
	repl_log *l = b->log;
	leveldb_write(l->db, sync ? l->write_sync : l->write_nosync, b->wb, &err);
	leveldb_writebatch_destroy(b->wb);
	free(b);
	if (sync)
		__atomic_fetch_add(&l->sync_writes, 1, __ATOMIC_RELAXED);
	if (err != NULL) {
		log__error("write", err);
		return -1;
	}
	return 0;
}
