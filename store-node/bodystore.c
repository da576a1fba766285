/* bodystore.c: message bodies in segment files. The contract, the file
 * format and the LevelDB records are in bodystore.h. */
#include "bodystore.h"

#include "log.h"
#include "xalloc.h"

#include <zlib.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define LOG_SVC "store"

#define KEY_VERSION 0x01
#define VALUE_VERSION 0x01
/* A pointer value holding the body itself: 02 | crc32 u32 | the bytes. */
#define VALUE_INLINE 0x02
#define INLINE_HEADER (1 + 4)
#define RECORD_MAGIC 0x4d424431u /* "MBD1" */
#define SEGMENT_VALUE_LEN (1 + 8 + 8)
#define SEGMENT_KEY_LEN (2 + 4)
#define REVERSE_KEY_LEN (2 + 4 + 8)
/* xxxxxxxx.seg */
#define SEGMENT_NAME_LEN 12
/* The current segment grows by zero-filled steps of this (at most the
 * segment size): an append then overwrites allocated blocks, and its
 * fdatasync writes the data alone, not the file's size too (on the ext4 of
 * the development machines: 97-117 -> 47-77 us of CPU per 5 KiB write and
 * sync). */
#define PREALLOC_STEP (1024u * 1024u)
#define ZERO_CHUNK (64u * 1024u)
/* Reverse records one collection step visits at most (stale ones cost a
 * read each and move nothing: this bounds a step that finds many). */
#define COLLECT_VISIT_MAX 4096

/* Settings bounds (mailstore.h documents them). */
#define SEGMENT_SIZE_MIN 4096ull
#define SEGMENT_SIZE_MAX (1ull << 40)
#define COLLECT_PCT_MAX 90u
#define INLINE_MAX_MAX (1024u * 1024u)

/* Where a body is: a pointer value, decoded. */
struct body_ptr {
	uint32_t seg;
	uint64_t off;
	uint64_t len;
	uint32_t crc;
};

/* One segment, as the owner's thread sees it. */
struct segment {
	uint32_t id;
	uint64_t size;    /* bytes in the file (preallocated zeros included) */
	uint64_t live;    /* bytes of referenced records, headers included */
	uint64_t records; /* referenced records */
	int has_file;     /* 0: an 'S' record without its file (logged at open) */
	int stuck;        /* a record could not be read: not collected again */
};

/* A read descriptor of the bounded cache (under mu). */
struct seg_fd {
	uint32_t id;
	int fd;           /* -1: free slot */
	unsigned pins;    /* reads in progress */
	int doomed;       /* the file is gone: close when unpinned */
	uint64_t size;    /* the file's size when last checked */
	uint64_t used;    /* LRU tick */
};

/* A change of one segment's live bytes within the write in progress. */
struct seg_delta {
	uint32_t id;
	int64_t bytes;
	int64_t records;
	uint64_t new_live;    /* set by prepare */
	uint64_t new_records;
};

struct bodystore {
	leveldb_t *db;
	leveldb_readoptions_t *ropts;
	leveldb_writeoptions_t *wopts; /* sync, for collection batches */
	struct bodystore_settings set;
	char *path;                    /* <dir>/bodies */
	int dirfd;

	/* Owner-serialised from here to mu. Segments ascending by id. */
	struct segment *segs;
	size_t n_segs, cap_segs;
	uint32_t cur;                  /* 0: none yet */
	int cur_fd;                    /* O_RDWR, -1 when none */
	uint64_t cur_off;
	uint64_t cur_alloc;            /* the file's size: zeros from cur_off on */
	int cur_sealed;                /* after an I/O error: start a new one */
	int unsynced;                  /* appended since cur_fd's last fdatasync */
	uint32_t next_id;
	/* the write in progress (wb != NULL between begin and end) */
	leveldb_writebatch_t *wb;
	int txn_sync;
	struct seg_delta *deltas;
	size_t n_deltas, cap_deltas, last_delta;
	/* collection: victim 0 = none picked; from = next reverse offset */
	uint32_t victim;
	uint64_t victim_from;
	uint64_t victim_next_from;     /* from, once the step's batch is in */
	int victim_done;               /* the step's batch removes its last record */
	uint64_t victim_moved;         /* bytes moved out of it so far */
	uint64_t victim_steps;
	int maybe_candidate;
	uint64_t collected;
	uint64_t moved;

	/* Shared with bodystore_read/hold/release. */
	pthread_mutex_t mu;
	struct seg_fd *fds;
	size_t n_fds;
	uint64_t tick;
	unsigned holds;
	uint32_t *doomed;              /* files to delete when holds reaches 0 */
	size_t n_doomed, cap_doomed;
};

/* ---- encoding ---------------------------------------------------------- */

static void be32_put(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void be64_put(uint8_t *p, uint64_t v)
{
	be32_put(p, (uint32_t)(v >> 32));
	be32_put(p + 4, (uint32_t)v);
}

static uint32_t be32_get(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint64_t be64_get(const uint8_t *p)
{
	return ((uint64_t)be32_get(p) << 32) | be32_get(p + 4);
}

static uint64_t record_size(uint64_t body_len)
{
	return BODYSTORE_RECORD_HEADER + body_len;
}

static void ptr_encode(uint8_t v[BODYSTORE_POINTER_LEN], const struct body_ptr *p)
{
	v[0] = VALUE_VERSION;
	be32_put(v + 1, p->seg);
	be64_put(v + 5, p->off);
	be64_put(v + 13, p->len);
	be32_put(v + 21, p->crc);
}

static int ptr_decode(const void *val, size_t vlen, struct body_ptr *p)
{
	const uint8_t *v = val;
	if (vlen != BODYSTORE_POINTER_LEN || v[0] != VALUE_VERSION)
		return -1;
	p->seg = be32_get(v + 1);
	p->off = be64_get(v + 5);
	p->len = be64_get(v + 13);
	p->crc = be32_get(v + 21);
	/* a length no record can have: never size an allocation from it */
	if (p->seg == 0 || p->len > SEGMENT_SIZE_MAX || p->off > SEGMENT_SIZE_MAX)
		return -1;
	return 0;
}

/* A pointer value that holds its body: 1 with *body_r and *len_r (inside
 * val), 0 when val is not inline, -1 when it is but is too short. */
static int inline_decode(const void *val, size_t vlen, const uint8_t **body_r, size_t *len_r)
{
	const uint8_t *v = val;
	if (vlen < 1 || v[0] != VALUE_INLINE)
		return 0;
	if (vlen < INLINE_HEADER)
		return -1;
	*body_r = v + INLINE_HEADER;
	*len_r = vlen - INLINE_HEADER;
	return 1;
}

/* An inline body whose CRC does not match is never returned (logged). */
static int inline_check(const void *val, const uint8_t *body, size_t len)
{
	uint32_t crc = be32_get((const uint8_t *)val + 1);
	if (crc32_z(0, body, len) == crc)
		return 0;
	log_event(LOG_ERROR, LOG_SVC, "event=body_corrupt segment=inline length=%zu why=crc", len);
	return -1;
}

static void key_segment(uint8_t k[SEGMENT_KEY_LEN], uint32_t id)
{
	k[0] = KEY_VERSION;
	k[1] = BODYSTORE_KIND_SEGMENT;
	be32_put(k + 2, id);
}

static void key_reverse(uint8_t k[REVERSE_KEY_LEN], uint32_t id, uint64_t off)
{
	k[0] = KEY_VERSION;
	k[1] = BODYSTORE_KIND_REVERSE;
	be32_put(k + 2, id);
	be64_put(k + 6, off);
}

static void segment_name(char name[SEGMENT_NAME_LEN + 1], uint32_t id)
{
	snprintf(name, SEGMENT_NAME_LEN + 1, "%08x.seg", (unsigned)id);
}

/* The id of a segment file name, 0 when name is not one. */
static uint32_t segment_name_parse(const char *name)
{
	if (strlen(name) != SEGMENT_NAME_LEN || strcmp(name + 8, ".seg") != 0)
		return 0;
	uint32_t id = 0;
	for (int i = 0; i < 8; i++) {
		char c = name[i];
		uint32_t d;
		if (c >= '0' && c <= '9')
			d = (uint32_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			d = (uint32_t)(c - 'a' + 10);
		else
			return 0;
		id = id << 4 | d;
	}
	return id;
}

/* ---- the segment table (owner's thread) ---------------------------------- */

static struct segment *seg_find(bodystore *bs, uint32_t id)
{
	size_t lo = 0, hi = bs->n_segs;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (bs->segs[mid].id == id)
			return &bs->segs[mid];
		if (bs->segs[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* The entry of id, added (zeroed) if missing. */
static struct segment *seg_get(bodystore *bs, uint32_t id)
{
	struct segment *sg = seg_find(bs, id);
	if (sg != NULL)
		return sg;
	if (bs->n_segs == bs->cap_segs) {
		bs->cap_segs = bs->cap_segs > 0 ? bs->cap_segs * 2 : 16;
		bs->segs = xrealloc(bs->segs, bs->cap_segs * sizeof *bs->segs);
	}
	size_t i = bs->n_segs;
	while (i > 0 && bs->segs[i - 1].id > id)
		i--;
	memmove(&bs->segs[i + 1], &bs->segs[i], (bs->n_segs - i) * sizeof *bs->segs);
	bs->n_segs++;
	bs->segs[i] = (struct segment){ .id = id };
	return &bs->segs[i];
}

static void seg_forget(bodystore *bs, uint32_t id)
{
	struct segment *sg = seg_find(bs, id);
	if (sg == NULL)
		return;
	size_t i = (size_t)(sg - bs->segs);
	memmove(&bs->segs[i], &bs->segs[i + 1], (bs->n_segs - i - 1) * sizeof *bs->segs);
	bs->n_segs--;
}

/* A sealed segment that collection should take. */
static int seg_is_candidate(const bodystore *bs, const struct segment *sg)
{
	if (sg->id == bs->cur || !sg->has_file || sg->stuck)
		return 0;
	if (sg->records == 0)
		return 1;
	return sg->live * 100 < (uint64_t)bs->set.collect_live_pct * sg->size;
}

/* ---- files ----------------------------------------------------------------- */

static void log_io(const char *event, uint32_t id, int err)
{
	const char *e = err != 0 ? strerror(err) : "end of file";
	char q[128];
	log_event(LOG_ERROR, LOG_SVC, "event=%s segment=%08x error=%s", event, (unsigned)id,
		  log_quote(q, sizeof q, e, strlen(e)));
}

static void log_corrupt(const struct body_ptr *p, const char *why)
{
	log_event(LOG_ERROR, LOG_SVC,
		  "event=body_corrupt segment=%08x offset=%llu length=%llu reason=%s",
		  (unsigned)p->seg, (unsigned long long)p->off, (unsigned long long)p->len, why);
}

/* fsync the bodies directory: a new file's name is durable before any
 * pointer to it is. */
static int dir_sync(bodystore *bs)
{
	if (fsync(bs->dirfd) < 0) {
		log_io("body_dir_sync_failed", 0, errno);
		return -1;
	}
	return 0;
}

/* Read or write all of iov at off (retrying short transfers). */
static int io_full(int fd, struct iovec *iov, int n, uint64_t off, int write)
{
	while (n > 0) {
		ssize_t r = write ? pwritev(fd, iov, n, (off_t)off) : preadv(fd, iov, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0) {
			errno = 0; /* end of file */
			return -1;
		}
		off += (uint64_t)r;
		size_t done = (size_t)r;
		while (n > 0 && done >= iov->iov_len) {
			done -= iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + done;
			iov->iov_len -= done;
		}
	}
	return 0;
}

/* Delete segment file id now, closing cached descriptors (under mu). */
static void file_unlink_locked(bodystore *bs, uint32_t id)
{
	char name[SEGMENT_NAME_LEN + 1];
	segment_name(name, id);
	if (unlinkat(bs->dirfd, name, 0) < 0 && errno != ENOENT)
		log_io("body_segment_unlink_failed", id, errno);
	for (size_t i = 0; i < bs->n_fds; i++) {
		struct seg_fd *f = &bs->fds[i];
		if (f->fd < 0 || f->id != id)
			continue;
		if (f->pins > 0) {
			f->doomed = 1;
		} else {
			close(f->fd);
			f->fd = -1;
		}
	}
}

/* 1 when reverse records of segment id exist, 0 when not, -1 on error. */
static int seg_has_refs(bodystore *bs, uint32_t id)
{
	uint8_t k[REVERSE_KEY_LEN];
	key_reverse(k, id, 0);
	leveldb_iterator_t *it = leveldb_create_iterator(bs->db, bs->ropts);
	leveldb_iter_seek(it, (const char *)k, sizeof k);
	int ret = 0;
	if (leveldb_iter_valid(it)) {
		size_t klen;
		const char *key = leveldb_iter_key(it, &klen);
		ret = klen == REVERSE_KEY_LEN && memcmp(key, k, 6) == 0;
	}
	char *err = NULL;
	leveldb_iter_get_error(it, &err);
	leveldb_iter_destroy(it);
	if (err != NULL) {
		log_event(LOG_ERROR, LOG_SVC, "event=db_read_failed op=body_refs");
		leveldb_free(err);
		return -1;
	}
	return ret;
}

/* Segment id has no record left (the batch saying so is written): delete
 * its file, unless a hold defers it, or unless reverse records remain
 * (then collection looks at it: a count that drifted never deletes a
 * referenced body). */
static void seg_delete(bodystore *bs, uint32_t id, const char *why)
{
	int refs = seg_has_refs(bs, id);
	if (refs != 0) {
		/* walk it again, from its start */
		bs->maybe_candidate = 1;
		if (bs->victim == id)
			bs->victim_from = 0;
		return;
	}
	struct segment *sg = seg_find(bs, id);
	uint64_t size = sg != NULL ? sg->size : 0;
	seg_forget(bs, id);
	if (bs->victim == id)
		bs->victim = 0;
	bs->collected++;
	pthread_mutex_lock(&bs->mu);
	int deferred = bs->holds > 0;
	if (deferred) {
		if (bs->n_doomed == bs->cap_doomed) {
			bs->cap_doomed = bs->cap_doomed > 0 ? bs->cap_doomed * 2 : 8;
			bs->doomed = xrealloc(bs->doomed, bs->cap_doomed * sizeof *bs->doomed);
		}
		bs->doomed[bs->n_doomed++] = id;
	} else {
		file_unlink_locked(bs, id);
	}
	pthread_mutex_unlock(&bs->mu);
	log_event(LOG_INFO, LOG_SVC, "event=body_segment_deleted segment=%08x bytes=%llu "
		  "reason=%s deferred=%d", (unsigned)id, (unsigned long long)size, why, deferred);
}

/* ---- the read descriptor cache (any thread) --------------------------- */

/* Pin a read descriptor of segment id: its slot index, or -1 (logged). */
static int fd_pin(bodystore *bs, uint32_t id)
{
	pthread_mutex_lock(&bs->mu);
	size_t free_slot = bs->n_fds, lru = bs->n_fds;
	for (size_t i = 0; i < bs->n_fds; i++) {
		struct seg_fd *f = &bs->fds[i];
		if (f->fd >= 0 && f->id == id && !f->doomed) {
			f->pins++;
			f->used = ++bs->tick;
			pthread_mutex_unlock(&bs->mu);
			return (int)i;
		}
		if (f->fd < 0 && free_slot == bs->n_fds)
			free_slot = i;
		else if (f->fd >= 0 && f->pins == 0 && (lru == bs->n_fds || f->used < bs->fds[lru].used))
			lru = i;
	}
	size_t victim = free_slot < bs->n_fds ? free_slot : lru;
	if (victim == bs->n_fds) {
		/* every slot is being read: one more, for as long as needed */
		bs->fds = xrealloc(bs->fds, (bs->n_fds + 1) * sizeof *bs->fds);
		bs->fds[bs->n_fds] = (struct seg_fd){ .fd = -1 };
		victim = bs->n_fds++;
	}
	struct seg_fd *f = &bs->fds[victim];
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
	char name[SEGMENT_NAME_LEN + 1];
	segment_name(name, id);
	int fd = openat(bs->dirfd, name, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		int err = errno;
		if (fd >= 0)
			close(fd);
		pthread_mutex_unlock(&bs->mu);
		log_io("body_segment_open_failed", id, err);
		return -1;
	}
	*f = (struct seg_fd){ .id = id, .fd = fd, .pins = 1, .size = (uint64_t)st.st_size,
			      .used = ++bs->tick };
	pthread_mutex_unlock(&bs->mu);
	return (int)victim;
}

static void fd_unpin(bodystore *bs, int slot)
{
	pthread_mutex_lock(&bs->mu);
	struct seg_fd *f = &bs->fds[slot];
	if (--f->pins == 0 && f->doomed) {
		close(f->fd);
		*f = (struct seg_fd){ .fd = -1 };
	}
	pthread_mutex_unlock(&bs->mu);
}

/* Read the record of p into body (p->len bytes) and check it. */
static int record_read(bodystore *bs, const struct body_ptr *p, uint8_t *body)
{
	int slot = fd_pin(bs, p->seg);
	if (slot < 0)
		return -1;
	pthread_mutex_lock(&bs->mu);
	int fd = bs->fds[slot].fd;
	uint64_t size = bs->fds[slot].size;
	pthread_mutex_unlock(&bs->mu);
	uint64_t end = p->off + record_size(p->len);
	if (end > size) {
		/* the current segment grows: look again */
		struct stat st;
		if (fstat(fd, &st) == 0)
			size = (uint64_t)st.st_size;
		pthread_mutex_lock(&bs->mu);
		bs->fds[slot].size = size;
		pthread_mutex_unlock(&bs->mu);
	}
	const char *why = NULL;
	uint8_t hdr[BODYSTORE_RECORD_HEADER];
	if (end > size) {
		why = "past_end";
	} else {
		struct iovec iov[2] = { { hdr, sizeof hdr }, { body, (size_t)p->len } };
		if (io_full(fd, iov, 2, p->off, 0) < 0) {
			log_io("body_read_failed", p->seg, errno);
			fd_unpin(bs, slot);
			return -1;
		}
	}
	fd_unpin(bs, slot);
	if (why == NULL && be32_get(hdr) != RECORD_MAGIC)
		why = "magic";
	else if (why == NULL && be64_get(hdr + 4) != p->len)
		why = "length";
	else if (why == NULL &&
		 (be32_get(hdr + 12) != p->crc || crc32_z(0, body, (size_t)p->len) != p->crc))
		why = "crc";
	if (why != NULL) {
		log_corrupt(p, why);
		return -1;
	}
	return 0;
}

int bodystore_value_length(const void *val, size_t vlen, uint64_t *len_r)
{
	const uint8_t *body = NULL;
	size_t len = 0;
	int in = inline_decode(val, vlen, &body, &len);
	if (in != 0) {
		*len_r = len;
		return in > 0 ? 0 : -1;
	}
	struct body_ptr p;
	if (ptr_decode(val, vlen, &p) < 0)
		return -1;
	*len_r = p.len;
	return 0;
}

int bodystore_read(bodystore *bs, const void *val, size_t vlen, buf *out)
{
	const uint8_t *body = NULL;
	size_t len = 0;
	int in = inline_decode(val, vlen, &body, &len);
	if (in > 0) {
		if (inline_check(val, body, len) < 0)
			return -1;
		buf_append(out, body, len);
		return 0;
	}
	struct body_ptr p;
	if (in < 0 || ptr_decode(val, vlen, &p) < 0) {
		log_event(LOG_ERROR, LOG_SVC, "event=db_corrupt record=body_pointer");
		return -1;
	}
	buf_reserve(out, (size_t)p.len);
	if (record_read(bs, &p, out->data + out->len) < 0)
		return -1;
	out->len += (size_t)p.len;
	return 0;
}

int bodystore_get(bodystore *bs, const void *pkey, size_t pklen, void **body_r, size_t *len_r)
{
	*body_r = NULL;
	*len_r = 0;
	char *err = NULL;
	size_t vlen;
	char *val = leveldb_get(bs->db, bs->ropts, pkey, pklen, &vlen, &err);
	if (err != NULL) {
		log_event(LOG_ERROR, LOG_SVC, "event=db_read_failed op=body_get");
		leveldb_free(err);
		return -1;
	}
	if (val == NULL)
		return 0;
	const uint8_t *ibody;
	size_t ilen;
	int in = inline_decode(val, vlen, &ibody, &ilen);
	if (in > 0) {
		int bad = inline_check(val, ibody, ilen);
		if (bad == 0) {
			*body_r = xmalloc(ilen > 0 ? ilen : 1);
			memcpy(*body_r, ibody, ilen);
			*len_r = ilen;
		}
		leveldb_free(val);
		return bad < 0 ? -1 : 1;
	}
	struct body_ptr p;
	int ret = in < 0 ? -1 : ptr_decode(val, vlen, &p);
	leveldb_free(val);
	if (ret < 0) {
		log_event(LOG_ERROR, LOG_SVC, "event=db_corrupt record=body_pointer");
		return -1;
	}
	uint8_t *body = xmalloc(p.len > 0 ? (size_t)p.len : 1);
	if (record_read(bs, &p, body) < 0) {
		free(body);
		return -1;
	}
	*body_r = body;
	*len_r = (size_t)p.len;
	return 1;
}

/* ---- appending ------------------------------------------------------------- */

/* Seal the current segment (its appends made durable if the write is
 * synced) and start segment next_id. */
static int seg_roll(bodystore *bs)
{
	if (bs->cur_fd >= 0) {
		/* the zeros behind the last record go: nothing ever referenced
		 * them (if a crash undoes this, they are garbage) */
		struct segment *old = seg_find(bs, bs->cur);
		if (bs->cur_alloc > bs->cur_off && !bs->cur_sealed &&
		    ftruncate(bs->cur_fd, (off_t)bs->cur_off) == 0) {
			bs->cur_alloc = bs->cur_off;
			old->size = bs->cur_off;
		}
		/* always synced, also within an unsynced write: a later synced
		 * batch makes every earlier batch durable, so the bytes of its
		 * pointers must be durable by then, and prepare syncs only the
		 * current file */
		if (bs->unsynced && fdatasync(bs->cur_fd) < 0) {
			log_io("body_sync_failed", bs->cur, errno);
			return -1;
		}
		close(bs->cur_fd);
		bs->cur_fd = -1;
		bs->unsynced = 0;
		bs->maybe_candidate = 1;
	}
	if (bs->next_id == 0) {
		log_event(LOG_ERROR, LOG_SVC, "event=body_segment_ids_exhausted");
		return -1;
	}
	uint32_t id = bs->next_id;
	char name[SEGMENT_NAME_LEN + 1];
	segment_name(name, id);
	int fd = openat(bs->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		log_io("body_segment_create_failed", id, errno);
		return -1;
	}
	bs->next_id++;
	if (dir_sync(bs) < 0) {
		close(fd);
		return -1;
	}
	struct segment *sg = seg_get(bs, id);
	sg->has_file = 1;
	sg->size = 0;
	bs->cur = id;
	bs->cur_fd = fd;
	bs->cur_off = 0;
	bs->cur_alloc = 0;
	bs->cur_sealed = 0;
	log_event(LOG_INFO, LOG_SVC, "event=body_segment_created segment=%08x", (unsigned)id);
	return 0;
}

/* Make the current file at least need bytes long, zero-filled up to a
 * step further (never past the segment size unless need is). */
static int seg_prealloc(bodystore *bs, uint64_t need)
{
	if (need <= bs->cur_alloc)
		return 0;
	uint64_t step = bs->set.segment_size < PREALLOC_STEP ? bs->set.segment_size : PREALLOC_STEP;
	uint64_t end = need + step;
	uint64_t cap = need > bs->set.segment_size ? need : bs->set.segment_size;
	if (end > cap)
		end = cap;
	/* [cur_alloc, need) is written by the record itself */
	uint64_t at = need > bs->cur_alloc ? need : bs->cur_alloc;
	uint8_t *zeros = xcalloc(1, ZERO_CHUNK);
	int ret = 0;
	while (at < end && ret == 0) {
		size_t n = end - at < ZERO_CHUNK ? (size_t)(end - at) : ZERO_CHUNK;
		struct iovec iov = { zeros, n };
		ret = io_full(bs->cur_fd, &iov, 1, at, 1);
		at += n;
	}
	int err = errno;
	free(zeros);
	errno = err;
	if (ret < 0)
		return -1;
	bs->cur_alloc = end;
	return 0;
}

/* Append a record of body to the current segment: where, into *p. */
static int seg_append(bodystore *bs, const void *body, size_t len, struct body_ptr *p)
{
	uint64_t rec = record_size(len);
	if (bs->cur_fd < 0 || bs->cur_sealed ||
	    (bs->cur_off > 0 && bs->cur_off + rec > bs->set.segment_size)) {
		if (seg_roll(bs) < 0)
			return -1;
	}
	uint32_t crc = (uint32_t)crc32_z(0, body, len);
	uint8_t hdr[BODYSTORE_RECORD_HEADER];
	be32_put(hdr, RECORD_MAGIC);
	be64_put(hdr + 4, len);
	be32_put(hdr + 12, crc);
	struct iovec iov[2] = { { hdr, sizeof hdr }, { (void *)body, len } };
	struct segment *sg = seg_find(bs, bs->cur);
	if (seg_prealloc(bs, bs->cur_off + rec) < 0 ||
	    io_full(bs->cur_fd, iov, 2, bs->cur_off, 1) < 0) {
		log_io("body_append_failed", bs->cur, errno);
		/* part of it may be there: never append behind it again */
		struct stat st;
		if (fstat(bs->cur_fd, &st) == 0 && (uint64_t)st.st_size > sg->size)
			sg->size = (uint64_t)st.st_size;
		bs->cur_sealed = 1;
		return -1;
	}
	*p = (struct body_ptr){ bs->cur, bs->cur_off, len, crc };
	bs->cur_off += rec;
	sg->size = bs->cur_alloc > bs->cur_off ? bs->cur_alloc : bs->cur_off;
	bs->unsynced = 1;
	return 0;
}

/* ---- writes ---------------------------------------------------------------- */

static struct seg_delta *delta_of(bodystore *bs, uint32_t id)
{
	/* the last one first: a write's pointers mostly share a segment */
	if (bs->last_delta < bs->n_deltas && bs->deltas[bs->last_delta].id == id)
		return &bs->deltas[bs->last_delta];
	for (size_t i = bs->n_deltas; i > 0; i--) {
		if (bs->deltas[i - 1].id == id) {
			bs->last_delta = i - 1;
			return &bs->deltas[i - 1];
		}
	}
	if (bs->n_deltas == bs->cap_deltas) {
		bs->cap_deltas = bs->cap_deltas > 0 ? bs->cap_deltas * 2 : 8;
		bs->deltas = xrealloc(bs->deltas, bs->cap_deltas * sizeof *bs->deltas);
	}
	bs->last_delta = bs->n_deltas;
	struct seg_delta *d = &bs->deltas[bs->n_deltas++];
	*d = (struct seg_delta){ .id = id };
	return d;
}

void bodystore_txn_begin(bodystore *bs, leveldb_writebatch_t *wb, int sync)
{
	bs->wb = wb;
	bs->txn_sync = sync;
	bs->n_deltas = 0;
	bs->victim_done = 0;
	bs->victim_next_from = bs->victim_from;
}

/* Pointer pkey -> p and its reverse record into the batch; p's bytes live. */
static void batch_ref(bodystore *bs, const void *pkey, size_t pklen, const struct body_ptr *p)
{
	uint8_t v[BODYSTORE_POINTER_LEN];
	ptr_encode(v, p);
	leveldb_writebatch_put(bs->wb, pkey, pklen, (const char *)v, sizeof v);
	uint8_t rk[REVERSE_KEY_LEN];
	key_reverse(rk, p->seg, p->off);
	uint8_t *rv = xmalloc(1 + pklen);
	rv[0] = VALUE_VERSION;
	memcpy(rv + 1, pkey, pklen);
	leveldb_writebatch_put(bs->wb, (const char *)rk, sizeof rk, (const char *)rv, 1 + pklen);
	free(rv);
	struct seg_delta *d = delta_of(bs, p->seg);
	d->bytes += (int64_t)record_size(p->len);
	d->records++;
}

/* p's reverse record out of the batch; p's bytes no longer live. */
static void batch_unref(bodystore *bs, const struct body_ptr *p)
{
	uint8_t rk[REVERSE_KEY_LEN];
	key_reverse(rk, p->seg, p->off);
	leveldb_writebatch_delete(bs->wb, (const char *)rk, sizeof rk);
	struct seg_delta *d = delta_of(bs, p->seg);
	d->bytes -= (int64_t)record_size(p->len);
	d->records--;
}

int bodystore_put(bodystore *bs, const void *pkey, size_t pklen, const void *body, size_t len)
{
	if (bs->set.inline_max > 0 && len <= bs->set.inline_max) {
		/* in the pointer's own value: durable with the batch, no
		 * segment append and no fdatasync of its own */
		uint8_t *v = xmalloc(INLINE_HEADER + len);
		v[0] = VALUE_INLINE;
		be32_put(v + 1, (uint32_t)crc32_z(0, body, len));
		if (len > 0)
			memcpy(v + INLINE_HEADER, body, len);
		leveldb_writebatch_put(bs->wb, pkey, pklen, (const char *)v, INLINE_HEADER + len);
		free(v);
		return 0;
	}
	struct body_ptr p;
	if (seg_append(bs, body, len, &p) < 0)
		return -1;
	batch_ref(bs, pkey, pklen, &p);
	return 0;
}

int bodystore_unref_value(bodystore *bs, const void *val, size_t vlen)
{
	const uint8_t *body = NULL;
	size_t len = 0;
	int in = inline_decode(val, vlen, &body, &len);
	if (in > 0)
		return 0; /* nothing outside the value */
	struct body_ptr p;
	if (in < 0 || ptr_decode(val, vlen, &p) < 0) {
		log_event(LOG_ERROR, LOG_SVC, "event=db_corrupt record=body_pointer");
		return -1;
	}
	batch_unref(bs, &p);
	return 0;
}

int bodystore_delete(bodystore *bs, const void *pkey, size_t pklen)
{
	char *err = NULL;
	size_t vlen;
	char *val = leveldb_get(bs->db, bs->ropts, pkey, pklen, &vlen, &err);
	if (err != NULL) {
		log_event(LOG_ERROR, LOG_SVC, "event=db_read_failed op=body_delete");
		leveldb_free(err);
		return -1;
	}
	if (val == NULL)
		return 0;
	(void)bodystore_unref_value(bs, val, vlen);
	leveldb_free(val);
	leveldb_writebatch_delete(bs->wb, pkey, pklen);
	return 1;
}

int bodystore_txn_prepare(bodystore *bs)
{
	if (bs->unsynced && bs->txn_sync) {
		if (fdatasync(bs->cur_fd) < 0) {
			log_io("body_sync_failed", bs->cur, errno);
			bs->cur_sealed = 1;
			return -1;
		}
		bs->unsynced = 0;
	}
	for (size_t i = 0; i < bs->n_deltas; i++) {
		struct seg_delta *d = &bs->deltas[i];
		const struct segment *sg = seg_find(bs, d->id);
		int64_t live = (int64_t)(sg != NULL ? sg->live : 0) + d->bytes;
		int64_t records = (int64_t)(sg != NULL ? sg->records : 0) + d->records;
		if (live < 0 || records < 0 || (records == 0) != (live == 0)) {
			/* a count that drifted: collection's walk of the reverse
			 * records is what decides a file's end, never this */
			log_event(LOG_WARN, LOG_SVC, "event=body_live_drift segment=%08x "
				  "live=%lld records=%lld", (unsigned)d->id, (long long)live,
				  (long long)records);
			if (live < 0)
				live = 0;
			if (records < 0)
				records = 0;
		}
		d->new_live = (uint64_t)live;
		d->new_records = (uint64_t)records;
		uint8_t k[SEGMENT_KEY_LEN];
		key_segment(k, d->id);
		if (records == 0 || (bs->victim_done && d->id == bs->victim)) {
			leveldb_writebatch_delete(bs->wb, (const char *)k, sizeof k);
			continue;
		}
		uint8_t v[SEGMENT_VALUE_LEN];
		v[0] = VALUE_VERSION;
		be64_put(v + 1, (uint64_t)live);
		be64_put(v + 9, (uint64_t)records);
		leveldb_writebatch_put(bs->wb, (const char *)k, sizeof k, (const char *)v, sizeof v);
	}
	return 0;
}

void bodystore_txn_end(bodystore *bs, int committed)
{
	bs->wb = NULL;
	if (!committed) {
		bs->n_deltas = 0;
		bs->victim_done = 0;
		return;
	}
	bs->victim_from = bs->victim_next_from;
	for (size_t i = 0; i < bs->n_deltas; i++) {
		const struct seg_delta *d = &bs->deltas[i];
		struct segment *sg = seg_find(bs, d->id);
		if (sg == NULL)
			continue; /* a pointer into a segment that is gone: logged at open */
		sg->live = d->new_live;
		sg->records = d->new_records;
		if (seg_is_candidate(bs, sg))
			bs->maybe_candidate = 1;
	}
	if (bs->victim_done) {
		struct segment *sg = seg_find(bs, bs->victim);
		if (sg != NULL)
			sg->live = sg->records = 0;
	}
	/* sealed segments left without a record go now (the deltas' order:
	 * ids looked up again, the table may shrink on the way) */
	for (size_t i = 0; i < bs->n_deltas; i++) {
		struct segment *sg = seg_find(bs, bs->deltas[i].id);
		if (sg != NULL && sg->id != bs->cur && sg->records == 0 && sg->has_file)
			seg_delete(bs, sg->id, bs->victim_done && sg->id == bs->victim ?
					       "collected" : "empty");
	}
	if (bs->victim_done && bs->victim != 0)
		seg_delete(bs, bs->victim, "collected");
	bs->n_deltas = 0;
	bs->victim_done = 0;
}

/* ---- collection -------------------------------------------------------------- */

int bodystore_collect_pending(const bodystore *bs)
{
	return bs->victim != 0 || bs->maybe_candidate;
}

/* Pick the candidate with the fewest live bytes per byte of file. */
static int pick_victim(bodystore *bs)
{
	const struct segment *best = NULL;
	for (size_t i = 0; i < bs->n_segs; i++) {
		const struct segment *sg = &bs->segs[i];
		if (!seg_is_candidate(bs, sg))
			continue;
		/* live/size < best live/best size, without division */
		if (best == NULL || (unsigned __int128)sg->live * best->size <
					    (unsigned __int128)best->live * sg->size)
			best = sg;
	}
	bs->maybe_candidate = 0;
	if (best == NULL)
		return 0;
	bs->victim = best->id;
	bs->victim_from = 0;
	bs->victim_moved = 0;
	bs->victim_steps = 0;
	log_event(LOG_INFO, LOG_SVC, "event=body_collect_start segment=%08x size=%llu live=%llu "
		  "records=%llu", (unsigned)best->id, (unsigned long long)best->size,
		  (unsigned long long)best->live, (unsigned long long)best->records);
	return 1;
}

/* Move the record of reverse key rkey (value rval: 01 | pointer key) if
 * its pointer still refers to it; a stale reverse record is dropped. 1
 * moved (*moved_r bytes), 0 dropped, -1 read error, -2 the record cannot
 * be read (corrupt: the victim is stuck). */
static int collect_one(bodystore *bs, uint64_t off, const uint8_t *rval, size_t rvlen,
		       uint8_t **tmp, size_t *tmp_cap, uint64_t *moved_r)
{
	*moved_r = 0;
	uint8_t rk[REVERSE_KEY_LEN];
	key_reverse(rk, bs->victim, off);
	if (rvlen < 2 || rval[0] != VALUE_VERSION) {
		leveldb_writebatch_delete(bs->wb, (const char *)rk, sizeof rk);
		return 0;
	}
	const char *pkey = (const char *)rval + 1;
	size_t pklen = rvlen - 1;
	char *err = NULL;
	size_t vlen;
	char *val = leveldb_get(bs->db, bs->ropts, pkey, pklen, &vlen, &err);
	if (err != NULL) {
		log_event(LOG_ERROR, LOG_SVC, "event=db_read_failed op=body_collect");
		leveldb_free(err);
		return -1;
	}
	struct body_ptr p;
	int live = val != NULL && ptr_decode(val, vlen, &p) == 0 && p.seg == bs->victim &&
		   p.off == off;
	leveldb_free(val);
	if (!live) {
		leveldb_writebatch_delete(bs->wb, (const char *)rk, sizeof rk);
		return 0;
	}
	if (*tmp_cap < p.len || *tmp == NULL) {
		free(*tmp);
		*tmp_cap = p.len > 0 ? (size_t)p.len : 1;
		*tmp = xmalloc(*tmp_cap);
	}
	if (record_read(bs, &p, *tmp) < 0)
		return -2;
	struct body_ptr np;
	if (seg_append(bs, *tmp, (size_t)p.len, &np) < 0)
		return -1;
	batch_unref(bs, &p);
	batch_ref(bs, pkey, pklen, &np);
	*moved_r = record_size(p.len);
	return 1;
}

int bodystore_collect_step(bodystore *bs)
{
	if (bs->victim == 0 && pick_victim(bs) == 0)
		return 0;
	uint32_t victim = bs->victim;
	leveldb_writebatch_t *wb = leveldb_writebatch_create();
	bodystore_txn_begin(bs, wb, 1);
	uint8_t prefix[REVERSE_KEY_LEN];
	key_reverse(prefix, victim, bs->victim_from);
	leveldb_iterator_t *it = leveldb_create_iterator(bs->db, bs->ropts);
	uint64_t moved = 0, visited = 0;
	int ret = 0, stuck = 0, more = 0;
	uint8_t *tmp = NULL;
	size_t tmp_cap = 0;
	for (leveldb_iter_seek(it, (const char *)prefix, sizeof prefix); leveldb_iter_valid(it);
	     leveldb_iter_next(it)) {
		size_t klen, vlen;
		const uint8_t *key = (const uint8_t *)leveldb_iter_key(it, &klen);
		if (klen != REVERSE_KEY_LEN || memcmp(key, prefix, 6) != 0)
			break;
		if (moved >= bs->set.collect_step || visited >= COLLECT_VISIT_MAX) {
			more = 1;
			break;
		}
		uint64_t off = be64_get(key + 6);
		const uint8_t *val = (const uint8_t *)leveldb_iter_value(it, &vlen);
		uint64_t m;
		int r = collect_one(bs, off, val, vlen, &tmp, &tmp_cap, &m);
		visited++;
		if (r == -2) {
			stuck = 1;
			break;
		}
		if (r < 0) {
			ret = -1;
			break;
		}
		moved += m;
		bs->victim_next_from = off + 1;
	}
	free(tmp);
	char *err = NULL;
	leveldb_iter_get_error(it, &err);
	leveldb_iter_destroy(it);
	if (err != NULL) {
		log_event(LOG_ERROR, LOG_SVC, "event=db_read_failed op=body_collect");
		leveldb_free(err);
		ret = -1;
	}
	if (ret == 0 && !stuck && !more)
		bs->victim_done = 1;
	if (ret == 0)
		ret = bodystore_txn_prepare(bs);
	if (ret == 0) {
		leveldb_write(bs->db, bs->wopts, wb, &err);
		if (err != NULL) {
			log_event(LOG_ERROR, LOG_SVC, "event=db_write_failed op=body_collect");
			leveldb_free(err);
			ret = -1;
		}
	}
	leveldb_writebatch_destroy(wb);
	int done = bs->victim_done;
	bodystore_txn_end(bs, ret == 0);
	if (ret == 0) {
		bs->moved += moved;
		bs->victim_moved += moved;
		bs->victim_steps++;
	}
	if (stuck) {
		struct segment *sg = seg_find(bs, victim);
		if (sg != NULL)
			sg->stuck = 1;
		bs->victim = 0;
		bs->maybe_candidate = 1;
		log_event(LOG_ERROR, LOG_SVC, "event=body_collect_stuck segment=%08x",
			  (unsigned)victim);
	}
	/* one line per failed step and per finished segment, not per step */
	if (ret < 0)
		log_event(LOG_ERROR, LOG_SVC, "event=body_collect_step segment=%08x status=failed",
			  (unsigned)victim);
	else if (done)
		log_event(LOG_INFO, LOG_SVC, "event=body_collect_done segment=%08x moved_bytes=%llu "
			  "steps=%llu", (unsigned)victim, (unsigned long long)bs->victim_moved,
			  (unsigned long long)bs->victim_steps);
	return ret < 0 ? -1 : 1;
}

/* ---- holds ------------------------------------------------------------------- */

void bodystore_hold(bodystore *bs)
{
	pthread_mutex_lock(&bs->mu);
	bs->holds++;
	pthread_mutex_unlock(&bs->mu);
}

void bodystore_release(bodystore *bs)
{
	pthread_mutex_lock(&bs->mu);
	if (--bs->holds == 0) {
		for (size_t i = 0; i < bs->n_doomed; i++)
			file_unlink_locked(bs, bs->doomed[i]);
		bs->n_doomed = 0;
	}
	pthread_mutex_unlock(&bs->mu);
}

/* ---- open / close ---------------------------------------------------------- */

/* The 'S' records into the table. */
static int load_live(bodystore *bs)
{
	uint8_t head[2] = { KEY_VERSION, BODYSTORE_KIND_SEGMENT };
	leveldb_iterator_t *it = leveldb_create_iterator(bs->db, bs->ropts);
	for (leveldb_iter_seek(it, (const char *)head, sizeof head); leveldb_iter_valid(it);
	     leveldb_iter_next(it)) {
		size_t klen, vlen;
		const uint8_t *key = (const uint8_t *)leveldb_iter_key(it, &klen);
		if (klen < 2 || memcmp(key, head, 2) != 0)
			break;
		const uint8_t *val = (const uint8_t *)leveldb_iter_value(it, &vlen);
		if (klen != SEGMENT_KEY_LEN || vlen != SEGMENT_VALUE_LEN || val[0] != VALUE_VERSION) {
			log_event(LOG_ERROR, LOG_SVC, "event=db_corrupt record=body_segment");
			continue;
		}
		struct segment *sg = seg_get(bs, be32_get(key + 2));
		sg->live = be64_get(val + 1);
		sg->records = be64_get(val + 9);
	}
	char *err = NULL;
	leveldb_iter_get_error(it, &err);
	leveldb_iter_destroy(it);
	if (err != NULL) {
		log_event(LOG_ERROR, LOG_SVC, "event=db_read_failed op=body_open");
		leveldb_free(err);
		return -1;
	}
	return 0;
}

/* The segment files into the table. */
static int load_files(bodystore *bs)
{
	int fd = dup(bs->dirfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (d == NULL) {
		if (fd >= 0)
			close(fd);
		log_io("body_dir_read_failed", 0, errno);
		return -1;
	}
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		uint32_t id = segment_name_parse(de->d_name);
		struct stat st;
		if (id == 0 || fstatat(bs->dirfd, de->d_name, &st, 0) < 0 || !S_ISREG(st.st_mode))
			continue;
		struct segment *sg = seg_get(bs, id);
		sg->has_file = 1;
		sg->size = (uint64_t)st.st_size;
	}
	closedir(d);
	return 0;
}

/* After a crash: delete sealed files nothing references, pick the current
 * segment and its append point (the file's real end: whatever a crash left
 * behind the last durable record is garbage, never overwritten). */
static int settle(bodystore *bs)
{
	uint32_t max_id = 0, cur = 0;
	for (size_t i = 0; i < bs->n_segs; i++) {
		if (bs->segs[i].id > max_id)
			max_id = bs->segs[i].id;
		if (bs->segs[i].has_file && bs->segs[i].id > cur)
			cur = bs->segs[i].id;
	}
	bs->next_id = max_id + 1; /* 0 after UINT32_MAX: refused by seg_roll */
	bs->cur = cur;
	for (size_t i = 0; i < bs->n_segs;) {
		struct segment *sg = &bs->segs[i];
		if (!sg->has_file) {
			log_event(LOG_ERROR, LOG_SVC, "event=body_segment_missing segment=%08x "
				  "records=%llu", (unsigned)sg->id, (unsigned long long)sg->records);
			i++;
			continue;
		}
		if (sg->id != cur && sg->records == 0 && seg_has_refs(bs, sg->id) == 0) {
			seg_delete(bs, sg->id, "unreferenced");
			continue; /* the table moved down */
		}
		if (seg_is_candidate(bs, sg))
			bs->maybe_candidate = 1;
		i++;
	}
	if (cur == 0)
		return 0;
	char name[SEGMENT_NAME_LEN + 1];
	segment_name(name, cur);
	bs->cur_fd = openat(bs->dirfd, name, O_RDWR | O_CLOEXEC);
	struct stat st;
	if (bs->cur_fd < 0 || fstat(bs->cur_fd, &st) < 0) {
		log_io("body_segment_open_failed", cur, errno);
		return -1;
	}
	/* the real end, zeros of a preallocation included: they are
	 * garbage now, like anything else behind the last record */
	bs->cur_off = (uint64_t)st.st_size;
	bs->cur_alloc = bs->cur_off;
	seg_find(bs, cur)->size = bs->cur_off;
	return 0;
}

int bodystore_open(const char *dir, leveldb_t *db, const struct bodystore_settings *settings,
		   bodystore **bs_r, const char **error_r)
{
	*bs_r = NULL;
	bodystore *bs = xcalloc(1, sizeof *bs);
	bs->db = db;
	bs->set = *settings;
	if (bs->set.segment_size < SEGMENT_SIZE_MIN)
		bs->set.segment_size = SEGMENT_SIZE_MIN;
	if (bs->set.segment_size > SEGMENT_SIZE_MAX)
		bs->set.segment_size = SEGMENT_SIZE_MAX;
	if (bs->set.collect_live_pct > COLLECT_PCT_MAX)
		bs->set.collect_live_pct = COLLECT_PCT_MAX;
	if (bs->set.collect_step == 0)
		bs->set.collect_step = 1;
	if (bs->set.inline_max > INLINE_MAX_MAX)
		bs->set.inline_max = INLINE_MAX_MAX;
	if (bs->set.open_segments == 0)
		bs->set.open_segments = 1;
	bs->ropts = leveldb_readoptions_create();
	bs->wopts = leveldb_writeoptions_create();
	leveldb_writeoptions_set_sync(bs->wopts, 1);
	pthread_mutex_init(&bs->mu, NULL);
	bs->n_fds = bs->set.open_segments;
	bs->fds = xcalloc(bs->n_fds, sizeof *bs->fds);
	for (size_t i = 0; i < bs->n_fds; i++)
		bs->fds[i].fd = -1;
	bs->cur_fd = -1;
	bs->dirfd = -1;
	bs->path = xasprintf("%s/bodies", dir);
	if (mkdir(bs->path, 0700) == 0) {
		/* the new directory's name is durable before anything in it */
		int pfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (pfd >= 0) {
			(void)fsync(pfd);
			close(pfd);
		}
	} else if (errno != EEXIST) {
		log_io("body_dir_create_failed", 0, errno);
	}
	bs->dirfd = open(bs->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int ret = bs->dirfd >= 0 ? 0 : -1;
	if (ret < 0)
		log_io("body_dir_open_failed", 0, errno);
	if (ret == 0)
		ret = load_live(bs);
	if (ret == 0)
		ret = load_files(bs);
	if (ret == 0)
		ret = settle(bs);
	if (ret < 0) {
		bodystore_close(&bs);
		*error_r = "cannot open the bodies directory (see log)";
		return -1;
	}
	struct bodystore_stats st;
	bodystore_stats_get(bs, &st);
	log_event(LOG_INFO, LOG_SVC, "event=bodies_open segments=%u current=%08x append_at=%llu "
		  "disk_bytes=%llu live_bytes=%llu", (unsigned)st.segments, (unsigned)bs->cur,
		  (unsigned long long)bs->cur_off, (unsigned long long)st.disk_bytes,
		  (unsigned long long)st.live_bytes);
	*bs_r = bs;
	return 0;
}

void bodystore_close(bodystore **bsp)
{
	bodystore *bs = *bsp;
	if (bs == NULL)
		return;
	*bsp = NULL;
	if (bs->dirfd >= 0) {
		pthread_mutex_lock(&bs->mu);
		for (size_t i = 0; i < bs->n_doomed; i++)
			file_unlink_locked(bs, bs->doomed[i]);
		pthread_mutex_unlock(&bs->mu);
	}
	for (size_t i = 0; i < bs->n_fds; i++) {
		if (bs->fds[i].fd >= 0)
			close(bs->fds[i].fd);
	}
	if (bs->cur_fd >= 0)
		close(bs->cur_fd);
	if (bs->dirfd >= 0)
		close(bs->dirfd);
	leveldb_readoptions_destroy(bs->ropts);
	leveldb_writeoptions_destroy(bs->wopts);
	pthread_mutex_destroy(&bs->mu);
	free(bs->fds);
	free(bs->doomed);
	free(bs->segs);
	free(bs->deltas);
	free(bs->path);
	free(bs);
}

void bodystore_stats_get(const bodystore *bs, struct bodystore_stats *stats_r)
{
	*stats_r = (struct bodystore_stats){ .current = bs->cur, .collected = bs->collected,
					     .moved_bytes = bs->moved };
	for (size_t i = 0; i < bs->n_segs; i++) {
		const struct segment *sg = &bs->segs[i];
		if (!sg->has_file)
			continue;
		stats_r->segments++;
		stats_r->disk_bytes += sg->size;
		stats_r->live_bytes += sg->live;
	}
}
