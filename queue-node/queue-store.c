/* queue-store.c: the queue's LevelDB store; key schema in queue-store.h. */
#include "queue-store.h"

#include <stdlib.h>
#include <string.h>

#include <leveldb/c.h>

#include "kvchunk.h"
#include "log.h"
#include "util.h"
#include "xalloc.h"

#define KIND_MESSAGE 'm'
#define KIND_DONE 'd'
#define KIND_APPLIED 'A'
#define KIND_STATE 's'
/* version + kind + id + 0x00 + u32 */
#define KEY_MAX (2 + QUEUE_ID_MAX + 1 + 4)

struct queue_store {
	leveldb_t *db;
	leveldb_options_t *options;
	/* Bloom filters: every put first looks its (new, so absent) queue id
	 * up; without them each miss reads a block of every table that may
	 * hold it. */
	leveldb_filterpolicy_t *filter;
	leveldb_readoptions_t *read;
	leveldb_writeoptions_t *write_sync;
	leveldb_writeoptions_t *write_async;
};

int queue_store_id_valid(const char *id)
{
	size_t n = 0;
	for (; id[n] != '\0'; n++) {
		char c = id[n];
		if (n >= QUEUE_ID_MAX)
			return 0;
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
			return 0;
	}
	return n > 0;
}

/* 0x01 'm' <id> */
static size_t store__key_message(char *key, const char *id)
{
	size_t n = strlen(id);
	key[0] = QUEUE_STORE_KEY_VERSION;
	key[1] = KIND_MESSAGE;
	memcpy(key + 2, id, n);
	return n + 2;
}

/* 0x01 's' <id> */
static size_t store__key_state(char *key, const char *id)
{
	size_t n = store__key_message(key, id);
	key[1] = KIND_STATE;
	return n;
}

/* 0x01 'd' <id> 0x00: the prefix of every recipient key of id. */
static size_t store__key_done_prefix(char *key, const char *id)
{
	size_t n = strlen(id);
	key[0] = QUEUE_STORE_KEY_VERSION;
	key[1] = KIND_DONE;
	memcpy(key + 2, id, n);
	key[2 + n] = '\0';
	return n + 3;
}

static size_t store__key_done(char *key, const char *id, uint32_t index)
{
	size_t n = store__key_done_prefix(key, id);
	key[n++] = (char)(index >> 24);
	key[n++] = (char)(index >> 16);
	key[n++] = (char)(index >> 8);
	key[n++] = (char)index;
	return n;
}

/* Log LevelDB's (malloc'd) error text and free it. */
static void store__log_error(const char *op, char *err)
{
	char q[512];
	log_event(LOG_ERROR, "queue", "event=store_error op=%s error=%s", op,
		  log_quote(q, sizeof q, err, strlen(err)));
	leveldb_free(err);
}

int queue_store_open(const char *dir, queue_store **store_r, const char **error_r)
{
	queue_store *s = xcalloc(1, sizeof *s);
	char *err = NULL;
	s->options = leveldb_options_create();
	leveldb_options_set_create_if_missing(s->options, 1);
	s->filter = leveldb_filterpolicy_create_bloom(10);
	leveldb_options_set_filter_policy(s->options, s->filter);
	s->db = leveldb_open(s->options, dir, &err);
	if (err != NULL) {
		store__log_error("open", err);
		leveldb_options_destroy(s->options);
		leveldb_filterpolicy_destroy(s->filter);
		free(s);
		*error_r = "cannot open the queue store (see the log)";
		return -1;
	}
	s->read = leveldb_readoptions_create();
	s->write_sync = leveldb_writeoptions_create();
	leveldb_writeoptions_set_sync(s->write_sync, 1);
	s->write_async = leveldb_writeoptions_create();
	*store_r = s;
	return 0;
}

void queue_store_close(queue_store **store)
{
	queue_store *s = *store;
	if (s == NULL)
		return;
	leveldb_close(s->db);
	leveldb_readoptions_destroy(s->read);
	leveldb_writeoptions_destroy(s->write_sync);
	leveldb_writeoptions_destroy(s->write_async);
	leveldb_options_destroy(s->options);
	leveldb_filterpolicy_destroy(s->filter);
	free(s);
	*store = NULL;
}

/* Write batch (sync or not); op names it in the log. */
static int store__write(queue_store *s, leveldb_writebatch_t *batch, int sync, const char *op,
			const char **error_r)
{
	char *err = NULL;
	leveldb_write(s->db, sync ? s->write_sync : s->write_async, batch, &err);
	if (err != NULL) {
		store__log_error(op, err);
		*error_r = "queue store write failed";
		return -1;
	}
	return 0;
}

/* The value of key into *val_r (leveldb_free it; NULL when absent): 0, or
 * -1 with *error_r on a read error (logged). */
static int store__get(queue_store *s, const char *key, size_t klen, char **val_r, size_t *len_r,
		      const char **error_r)
{
	char *err = NULL;
	*val_r = leveldb_get(s->db, s->read, key, klen, len_r, &err);
	if (err != NULL) {
		store__log_error("get", err);
		*error_r = "queue store read failed";
		return -1;
	}
	return 0;
}

/* Add msg to batch unless its queue id is stored already: 0 added, 1 there
 * already, -1 error. */
static int store__put_batch(queue_store *s, leveldb_writebatch_t *batch,
			    const Queue__QueuedMessage *msg, const char **error_r)
{
	if (msg->envelope == NULL || !queue_store_id_valid(msg->envelope->queue_id)) {
		*error_r = "message without a valid queue id";
		return -1;
	}
	char key[KEY_MAX];
	size_t klen = store__key_message(key, msg->envelope->queue_id);
	size_t vlen;
	char *old;
	/* Idempotence: the first durable copy wins. Reading it back costs a
	 * read of the value, paid only by this check; single-threaded use makes
	 * the check-then-write safe. */
	if (store__get(s, key, klen, &old, &vlen, error_r) < 0)
		return -1;
	if (old != NULL) {
		leveldb_free(old);
		return 1;
	}
	size_t len = queue__queued_message__get_packed_size(msg);
	uint8_t *val = xmalloc(len ? len : 1);
	queue__queued_message__pack(msg, val);
	leveldb_writebatch_put(batch, key, klen, (const char *)val, len);
	free(val);
	return 0;
}

int queue_store_put(queue_store *s, const Queue__QueuedMessage *msg, const char **error_r)
{
	leveldb_writebatch_t *batch = leveldb_writebatch_create();
	int ret = store__put_batch(s, batch, msg, error_r);
	if (ret == 0 && store__write(s, batch, 1, "put", error_r) < 0)
		ret = -1;
	leveldb_writebatch_destroy(batch);
	return ret;
}

/* The message's state (its 's' key) into msg->state; NULL when none. A
 * state that does not decode is logged and dropped (the message is then
 * attempted as if new: safe, recipients done stay done). */
static int store__merge_state(queue_store *s, Queue__QueuedMessage *msg, const char **error_r)
{
	char key[KEY_MAX];
	size_t klen = store__key_state(key, msg->envelope->queue_id);
	size_t vlen;
	char *val;
	if (store__get(s, key, klen, &val, &vlen, error_r) < 0)
		return -1;
	if (msg->state != NULL)
		queue__message_state__free_unpacked(msg->state, NULL);
	msg->state = NULL;
	if (val == NULL)
		return 0;
	msg->state = queue__message_state__unpack(NULL, vlen, (const uint8_t *)val);
	leveldb_free(val);
	if (msg->state == NULL)
		log_event(LOG_ERROR, "queue", "event=store_corrupt qid=%s what=state",
			  msg->envelope->queue_id);
	return 0;
}

/* Rebuild msg->delivered from the recipient keys (see the schema). */
static int store__merge_done(queue_store *s, Queue__QueuedMessage *msg, const char **error_r)
{
	size_t n = msg->envelope->n_rcpt_to;
	protobuf_c_boolean *done = xcalloc(n ? n : 1, sizeof *done);
	for (size_t i = 0; i < n && i < msg->n_delivered; i++)
		done[i] = msg->delivered[i];
	char prefix[KEY_MAX];
	size_t plen = store__key_done_prefix(prefix, msg->envelope->queue_id);
	leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->read);
	for (leveldb_iter_seek(it, prefix, plen); leveldb_iter_valid(it); leveldb_iter_next(it)) {
		size_t klen;
		const char *k = leveldb_iter_key(it, &klen);
		if (klen < plen || memcmp(k, prefix, plen) != 0)
			break;
		if (klen != plen + 4)
			continue;
		const unsigned char *u = (const unsigned char *)k + plen;
		uint32_t index = (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 |
				 (uint32_t)u[2] << 8 | u[3];
		if (index < n)
			done[index] = 1;
	}
	char *err = NULL;
	leveldb_iter_get_error(it, &err);
	leveldb_iter_destroy(it);
	/* The unpacked message uses the system allocator, so free() matches. */
	free(msg->delivered);
	msg->delivered = done;
	msg->n_delivered = n;
	if (err != NULL) {
		store__log_error("scan", err);
		*error_r = "queue store read failed";
		return -1;
	}
	return store__merge_state(s, msg, error_r);
}

/* Decode a record value; NULL (logged) when it is not a usable message. */
static Queue__QueuedMessage *store__decode(const char *id, const char *val, size_t len)
{
	Queue__QueuedMessage *msg = queue__queued_message__unpack(NULL, len, (const uint8_t *)val);
	if (msg != NULL && msg->envelope != NULL && strcmp(msg->envelope->queue_id, id) == 0)
		return msg;
	if (msg != NULL)
		queue__queued_message__free_unpacked(msg, NULL);
	log_event(LOG_ERROR, "queue", "event=store_corrupt qid=%s len=%zu", id, len);
	return NULL;
}

int queue_store_get(queue_store *s, const char *queue_id, Queue__QueuedMessage **msg_r,
		    const char **error_r)
{
	if (!queue_store_id_valid(queue_id)) {
		*error_r = "invalid queue id";
		return -1;
	}
	char key[KEY_MAX];
	size_t klen = store__key_message(key, queue_id);
	size_t vlen;
	char *val;
	if (store__get(s, key, klen, &val, &vlen, error_r) < 0)
		return -1;
	if (val == NULL)
		return 0;
	Queue__QueuedMessage *msg = store__decode(queue_id, val, vlen);
	leveldb_free(val);
	if (msg == NULL) {
		*error_r = "corrupt queue record";
		return -1;
	}
	if (store__merge_done(s, msg, error_r) < 0) {
		queue_store_message_free(&msg);
		return -1;
	}
	*msg_r = msg;
	return 1;
}

int queue_store_mark_delivered(queue_store *s, const char *queue_id, uint32_t rcpt_index,
			       const char **error_r)
{
	if (!queue_store_id_valid(queue_id)) {
		*error_r = "invalid queue id";
		return -1;
	}
	leveldb_writebatch_t *batch = leveldb_writebatch_create();
	char key[KEY_MAX];
	size_t klen = store__key_done(key, queue_id, rcpt_index);
	leveldb_writebatch_put(batch, key, klen, "", 0);
	int ret = store__write(s, batch, 1, "mark", error_r);
	leveldb_writebatch_destroy(batch);
	return ret;
}

/* Add the deletion of queue_id and its recipient keys to batch. */
static int store__delete_batch(queue_store *s, leveldb_writebatch_t *batch,
			       const char *queue_id, const char **error_r)
{
	char key[KEY_MAX];
	size_t klen = store__key_message(key, queue_id);
	leveldb_writebatch_delete(batch, key, klen);
	leveldb_writebatch_delete(batch, key, store__key_state(key, queue_id));
	char prefix[KEY_MAX];
	size_t plen = store__key_done_prefix(prefix, queue_id);
	leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->read);
	for (leveldb_iter_seek(it, prefix, plen); leveldb_iter_valid(it); leveldb_iter_next(it)) {
		size_t kl;
		const char *k = leveldb_iter_key(it, &kl);
		if (kl < plen || memcmp(k, prefix, plen) != 0)
			break;
		leveldb_writebatch_delete(batch, k, kl);
	}
	char *err = NULL;
	leveldb_iter_get_error(it, &err);
	leveldb_iter_destroy(it);
	if (err != NULL) {
		store__log_error("delete", err);
		*error_r = "queue store read failed";
		return -1;
	}
	return 0;
}

int queue_store_delete(queue_store *s, const char *queue_id, const char **error_r)
{
	if (!queue_store_id_valid(queue_id)) {
		*error_r = "invalid queue id";
		return -1;
	}
	leveldb_writebatch_t *batch = leveldb_writebatch_create();
	int ret = store__delete_batch(s, batch, queue_id, error_r);
	if (ret == 0)
		ret = store__write(s, batch, 1, "delete", error_r);
	leveldb_writebatch_destroy(batch);
	return ret;
}

/* ---- the replicated mode ------------------------------------------------ */

/* Add the state change of a LogEntry.state to batch: the state key, the
 * done keys of its DELIVERED and FAILED recipients, or, when that leaves
 * no recipient pending, the message's removal. A message no longer stored
 * (removed by an earlier entry) gets nothing: 0 either way, -1 on error. */
static int store__state_batch(queue_store *s, leveldb_writebatch_t *batch, const char *qid,
			      const Queue__MessageState *st, const char **error_r)
{
	Queue__QueuedMessage *msg = NULL;
	int ret = queue_store_get(s, qid, &msg, error_r);
	if (ret <= 0)
		return ret;
	size_t n = msg->envelope->n_rcpt_to, pending = 0;
	for (size_t i = 0; i < st->n_rcpts; i++) {
		const Queue__RcptOutcome *o = st->rcpts[i];
		if (o->index < n && (o->status == QUEUE__RCPT_STATUS__RCPT_DELIVERED ||
				     o->status == QUEUE__RCPT_STATUS__RCPT_FAILED))
			msg->delivered[o->index] = 1;
	}
	for (size_t i = 0; i < n; i++)
		pending += !msg->delivered[i];
	if (pending == 0) {
		ret = store__delete_batch(s, batch, qid, error_r);
	} else {
		char key[KEY_MAX];
		for (size_t i = 0; i < st->n_rcpts; i++) {
			const Queue__RcptOutcome *o = st->rcpts[i];
			if (o->index < n && msg->delivered[o->index])
				leveldb_writebatch_put(batch, key,
						       store__key_done(key, qid, o->index), "", 0);
		}
		size_t len = queue__message_state__get_packed_size(st);
		uint8_t *val = xmalloc(len ? len : 1);
		queue__message_state__pack(st, val);
		leveldb_writebatch_put(batch, key, store__key_state(key, qid), (const char *)val,
				       len);
		free(val);
		ret = 0;
	}
	queue_store_message_free(&msg);
	return ret;
}

/* 0x01 'A' <partition u32> */
static size_t store__key_applied(char *key, uint32_t partition)
{
	key[0] = QUEUE_STORE_KEY_VERSION;
	key[1] = KIND_APPLIED;
	for (int i = 0; i < 4; i++)
		key[2 + i] = (char)(partition >> (24 - 8 * i));
	return 6;
}

/* The applied index of partition as read with read (the store's current
 * state, or a snapshot's). */
static int store__applied_get(queue_store *s, const leveldb_readoptions_t *read,
			      uint32_t partition, uint64_t *index_r, const char **error_r)
{
	char key[KEY_MAX];
	size_t klen = store__key_applied(key, partition);
	char *err = NULL;
	size_t vlen;
	char *val = leveldb_get(s->db, read, key, klen, &vlen, &err);
	if (err != NULL) {
		store__log_error("get", err);
		*error_r = "queue store read failed";
		return -1;
	}
	*index_r = 0;
	if (val == NULL)
		return 0;
	if (vlen != 8) {
		leveldb_free(val);
		*error_r = "corrupt applied index";
		return -1;
	}
	for (int i = 0; i < 8; i++)
		*index_r = *index_r << 8 | (uint8_t)val[i];
	leveldb_free(val);
	return 0;
}

int queue_store_applied_index(queue_store *s, uint32_t partition, uint64_t *index_r,
			      const char **error_r)
{
	return store__applied_get(s, s->read, partition, index_r, error_r);
}

static int store__entry_batch(queue_store *s, leveldb_writebatch_t *batch,
			      const Queue__LogEntry *e, const char **error_r);

int queue_store_apply(queue_store *s, uint32_t partition, uint64_t index,
		      const Queue__LogEntry *e, const char **error_r)
{
	uint64_t applied;
	if (queue_store_applied_index(s, partition, &applied, error_r) < 0)
		return -1;
	if (index <= applied)
		return 1;
	leveldb_writebatch_t *batch = leveldb_writebatch_create();
	int ret = store__entry_batch(s, batch, e, error_r);
	if (ret >= 0) {
		char key[KEY_MAX], val[8];
		for (int i = 0; i < 8; i++)
			val[i] = (char)(index >> (56 - 8 * i));
		leveldb_writebatch_put(batch, key, store__key_applied(key, partition), val, 8);
		/* Not synced: the partition's log holds the entry durably, and the
		 * applied index moves in this same batch, so a write lost with
		 * the machine is simply applied again from the log. */
		if (store__write(s, batch, 0, "apply", error_r) < 0)
			ret = -1;
	}
	leveldb_writebatch_destroy(batch);
	return ret;
}

int queue_store_record(queue_store *s, const char *queue_id, const Queue__MessageState *st,
		       int remove, const Queue__QueuedMessage *dsn, const char **error_r)
{
	Queue__LogEntry e = QUEUE__LOG_ENTRY__INIT;
	e.queue_id = (char *)queue_id;
	e.state = (Queue__MessageState *)st;
	e.remove = remove;
	e.put = (Queue__QueuedMessage *)dsn;
	leveldb_writebatch_t *batch = leveldb_writebatch_create();
	int ret = store__entry_batch(s, batch, &e, error_r);
	if (ret == 2)
		ret = -1;
	if (ret >= 0 && store__write(s, batch, 1, "record", error_r) < 0)
		ret = -1;
	leveldb_writebatch_destroy(batch);
	return ret < 0 ? -1 : 0;
}

/* Add what e changes to batch: 0 (1: a put of a stored queue id, nothing
 * added), 2 bad entry (nothing added), -1 error. */
static int store__entry_batch(queue_store *s, leveldb_writebatch_t *batch,
			      const Queue__LogEntry *e, const char **error_r)
{
	int ret = 0;
	int with_put = e->put != NULL && (e->state != NULL || e->remove);
	const char *qid = e->put != NULL && !with_put && e->put->envelope != NULL ?
			  e->put->envelope->queue_id : e->queue_id;
	if (!queue_store_id_valid(qid) ||
	    (with_put && (e->put->envelope == NULL ||
			  !queue_store_id_valid(e->put->envelope->queue_id) ||
			  strcmp(e->put->envelope->queue_id, qid) == 0))) {
		/* Recorded as applied all the same: the log must move on. */
		*error_r = "log entry without a valid queue id";
		ret = 2;
	} else if (e->put != NULL && !with_put) {
		ret = store__put_batch(s, batch, e->put, error_r);
	} else if (e->state != NULL || e->remove) {
		/* the DSN first: a put of a known id writes nothing */
		if (with_put && store__put_batch(s, batch, e->put, error_r) < 0)
			ret = -1;
		else if (e->remove)
			ret = store__delete_batch(s, batch, qid, error_r);
		else
			ret = store__state_batch(s, batch, qid, e->state, error_r);
	} else {
		char key[KEY_MAX];
		for (size_t i = 0; i < e->n_done; i++)
			leveldb_writebatch_put(batch, key, store__key_done(key, qid, e->done[i]),
					       "", 0);
	}
	return ret;
}

static int store__keep_all(const char *queue_id, void *arg)
{
	(void)queue_id;
	(void)arg;
	return 1;
}

int queue_store_load_all(queue_store *s, queue_store_load_cb *cb, void *arg,
			 const char **error_r)
{
	return queue_store_load_if(s, store__keep_all, cb, arg, error_r);
}

int queue_store_load_if(queue_store *s, int (*keep)(const char *queue_id, void *arg),
			queue_store_load_cb *cb, void *arg, const char **error_r)
{
	const char prefix[2] = { QUEUE_STORE_KEY_VERSION, KIND_MESSAGE };
	int count = 0;
	leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->read);
	for (leveldb_iter_seek(it, prefix, 2); leveldb_iter_valid(it); leveldb_iter_next(it)) {
		size_t klen, vlen;
		const char *k = leveldb_iter_key(it, &klen);
		if (klen < 2 || memcmp(k, prefix, 2) != 0)
			break;
		char id[QUEUE_ID_MAX + 1];
		if (klen - 2 > QUEUE_ID_MAX) {
			log_event(LOG_ERROR, "queue", "event=store_corrupt key_len=%zu", klen);
			continue;
		}
		memcpy(id, k + 2, klen - 2);
		id[klen - 2] = '\0';
		if (!keep(id, arg))
			continue;
		const char *v = leveldb_iter_value(it, &vlen);
		Queue__QueuedMessage *msg = store__decode(id, v, vlen);
		if (msg == NULL)
			continue;
		if (store__merge_done(s, msg, error_r) < 0) {
			queue_store_message_free(&msg);
			leveldb_iter_destroy(it);
			return -1;
		}
		cb(msg, arg);
		queue_store_message_free(&msg);
		count++;
	}
	char *err = NULL;
	leveldb_iter_get_error(it, &err);
	leveldb_iter_destroy(it);
	if (err != NULL) {
		store__log_error("load", err);
		*error_r = "queue store read failed";
		return -1;
	}
	return count;
}

void queue_store_message_free(Queue__QueuedMessage **msg)
{
	if (*msg == NULL)
		return;
	queue__queued_message__free_unpacked(*msg, NULL);
	*msg = NULL;
}

/* ---- partition snapshots ------------------------------------------------ */

/* The queue id a 'm' or 'd' key is about (copied into id), or 0 when the
 * key is neither or malformed. */
static int store__key_qid(const char *key, size_t klen, char id[QUEUE_ID_MAX + 1])
{
	if (klen < 3 || key[0] != QUEUE_STORE_KEY_VERSION)
		return 0;
	size_t n;
	if (key[1] == KIND_MESSAGE || key[1] == KIND_STATE) {
		n = klen - 2;
	} else if (key[1] == KIND_DONE) {
		const char *nul = memchr(key + 2, '\0', klen - 2);
		if (nul == NULL || (size_t)(key + klen - nul) != 1 + 4)
			return 0;
		n = (size_t)(nul - (key + 2));
	} else {
		return 0;
	}
	if (n == 0 || n > QUEUE_ID_MAX)
		return 0;
	memcpy(id, key + 2, n);
	id[n] = '\0';
	return queue_store_id_valid(id);
}

static uint32_t store__partition_of(const char *id, uint32_t n_partitions)
{
	return (uint32_t)(util_hash64(id, strlen(id)) % n_partitions);
}

/* Walks the 'd', 'm' and 's' keys (in that key order) of one partition. */
struct part_walk {
	leveldb_iterator_t *it;
	uint32_t partition, n_partitions;
};

/* Settle on the next key of the partition at or after the iterator: 1 on
 * one, 0 at the end, -1 on a read error (logged). */
static int store__walk_settle(struct part_walk *w)
{
	for (; leveldb_iter_valid(w->it); leveldb_iter_next(w->it)) {
		size_t klen;
		const char *k = leveldb_iter_key(w->it, &klen);
		if (klen < 2 || k[0] != QUEUE_STORE_KEY_VERSION || k[1] > KIND_STATE)
			break;
		char id[QUEUE_ID_MAX + 1];
		if (store__key_qid(k, klen, id) &&
		    store__partition_of(id, w->n_partitions) == w->partition)
			return 1;
	}
	char *err = NULL;
	leveldb_iter_get_error(w->it, &err);
	if (err != NULL) {
		store__log_error("snapshot_scan", err);
		return -1;
	}
	return 0;
}

static int store__walk_start(struct part_walk *w, leveldb_iterator_t *it, uint32_t partition,
			     uint32_t n_partitions)
{
	*w = (struct part_walk){ it, partition, n_partitions };
	const char first[2] = { QUEUE_STORE_KEY_VERSION, KIND_DONE };
	leveldb_iter_seek(it, first, sizeof first);
	return store__walk_settle(w);
}

static int store__walk_next(struct part_walk *w)
{
	leveldb_iter_next(w->it);
	return store__walk_settle(w);
}

struct queue_store_snapshot {
	queue_store *store;
	const leveldb_snapshot_t *snap;
	leveldb_readoptions_t *read;   /* reads at snap */
	struct part_walk walk;
	int pos;                       /* 1 on a pair not sent yet, 0 done, -1 failed */
};

void queue_store_snapshot_close(queue_store_snapshot **snap)
{
	queue_store_snapshot *sn = *snap;
	if (sn == NULL)
		return;
	*snap = NULL;
	if (sn->walk.it != NULL)
		leveldb_iter_destroy(sn->walk.it); /* it reads at the snapshot: first */
	leveldb_readoptions_destroy(sn->read);
	leveldb_release_snapshot(sn->store->db, sn->snap);
	free(sn);
}

int queue_store_snapshot_open(queue_store *s, uint32_t partition, uint32_t n_partitions,
			      queue_store_snapshot **snap_r, uint64_t *applied_r,
			      const char **error_r)
{
	if (n_partitions == 0 || partition >= n_partitions) {
		*error_r = "bad partition";
		return -1;
	}
	queue_store_snapshot *sn = xcalloc(1, sizeof *sn);
	sn->store = s;
	sn->snap = leveldb_create_snapshot(s->db);
	sn->read = leveldb_readoptions_create();
	leveldb_readoptions_set_snapshot(sn->read, sn->snap);
	leveldb_readoptions_set_fill_cache(sn->read, 0);
	/* the applied index as of the view */
	if (store__applied_get(s, sn->read, partition, applied_r, error_r) < 0) {
		queue_store_snapshot_close(&sn);
		return -1;
	}
	sn->pos = store__walk_start(&sn->walk, leveldb_create_iterator(s->db, sn->read),
				    partition, n_partitions);
	if (sn->pos < 0) {
		queue_store_snapshot_close(&sn);
		*error_r = "queue store read failed";
		return -1;
	}
	*snap_r = sn;
	return 0;
}

int queue_store_snapshot_next(queue_store_snapshot *sn, buf *out, size_t max_bytes)
{
	if (sn->pos <= 0)
		return sn->pos;
	kvchunk_begin(out, QUEUE_STORE_SNAPSHOT_VERSION);
	size_t used = 1, n = 0;
	while (sn->pos == 1) {
		size_t klen, vlen;
		const char *k = leveldb_iter_key(sn->walk.it, &klen);
		const char *v = leveldb_iter_value(sn->walk.it, &vlen);
		size_t pair = kvchunk_pair_size(klen, vlen);
		if (n > 0 && used + pair > max_bytes)
			break;
		kvchunk_put(out, k, klen, v, vlen);
		used += pair;
		n++;
		sn->pos = store__walk_next(&sn->walk);
	}
	return sn->pos < 0 ? -1 : 1;
}

int queue_store_snapshot_install_begin(queue_store *s, uint32_t partition,
				       uint32_t n_partitions, const char **error_r)
{
	if (n_partitions == 0 || partition >= n_partitions) {
		*error_r = "bad partition";
		return -1;
	}
	leveldb_writebatch_t *batch = leveldb_writebatch_create();
	struct part_walk w;
	int pos = store__walk_start(&w, leveldb_create_iterator(s->db, s->read), partition,
				    n_partitions);
	for (; pos == 1; pos = store__walk_next(&w)) {
		size_t klen;
		const char *k = leveldb_iter_key(w.it, &klen);
		leveldb_writebatch_delete(batch, k, klen);
	}
	leveldb_iter_destroy(w.it);
	int ret = -1;
	if (pos < 0) {
		*error_r = "queue store read failed";
	} else {
		/* same batch: a crash after it leaves "applied 0", no mix */
		char key[KEY_MAX];
		leveldb_writebatch_delete(batch, key, store__key_applied(key, partition));
		ret = store__write(s, batch, 1, "snapshot_install_begin", error_r);
	}
	leveldb_writebatch_destroy(batch);
	return ret;
}

/* NULL when key -> val may be installed into partition, else why not. */
static const char *store__snap_check(uint32_t partition, uint32_t n_partitions,
				     const uint8_t *key, size_t klen, const uint8_t *val,
				     size_t vlen)
{
	char id[QUEUE_ID_MAX + 1];
	if (!store__key_qid((const char *)key, klen, id))
		return "key";
	if (store__partition_of(id, n_partitions) != partition)
		return "foreign_partition";
	if (key[1] == KIND_DONE)
		return vlen == 0 ? NULL : "done_value";
	if (key[1] == KIND_STATE) {
		Queue__MessageState *st =
			queue__message_state__unpack(NULL, vlen, (const uint8_t *)val);
		if (st == NULL)
			return "state_value";
		queue__message_state__free_unpacked(st, NULL);
		return NULL;
	}
	Queue__QueuedMessage *msg = store__decode(id, (const char *)val, vlen);
	if (msg == NULL)
		return "message_value";
	queue__queued_message__free_unpacked(msg, NULL);
	return NULL;
}

int queue_store_snapshot_install_chunk(queue_store *s, uint32_t partition,
				       uint32_t n_partitions, const uint8_t *data, size_t len,
				       const char **error_r)
{
	struct kvchunk_reader r;
	const char *why = "version";
	int ret = n_partitions > 0 && partition < n_partitions ?
		  kvchunk_reader_init(&r, data, len, QUEUE_STORE_SNAPSHOT_VERSION, KEY_MAX) : -1;
	leveldb_writebatch_t *batch = leveldb_writebatch_create();
	const uint8_t *k, *v;
	size_t klen, vlen;
	while (ret == 0 && (ret = kvchunk_next(&r, &k, &klen, &v, &vlen, &why)) == 1) {
		why = store__snap_check(partition, n_partitions, k, klen, v, vlen);
		if (why != NULL) {
			ret = -1;
			break;
		}
		leveldb_writebatch_put(batch, (const char *)k, klen, (const char *)v, vlen);
		ret = 0;
	}
	if (ret < 0) {
		log_event(LOG_WARN, "queue", "event=snapshot_chunk_refused partition=%u "
			  "reason=%s len=%zu", partition, why, len);
		*error_r = "bad snapshot chunk";
	} else {
		/* not synced: install_end's sync write covers it */
		ret = store__write(s, batch, 0, "snapshot_install_chunk", error_r);
	}
	leveldb_writebatch_destroy(batch);
	return ret;
}

int queue_store_snapshot_install_end(queue_store *s, uint32_t partition, uint64_t applied,
				     const char **error_r)
{
	leveldb_writebatch_t *batch = leveldb_writebatch_create();
	char key[KEY_MAX], val[8];
	for (int i = 0; i < 8; i++)
		val[i] = (char)(applied >> (56 - 8 * i));
	leveldb_writebatch_put(batch, key, store__key_applied(key, partition), val, 8);
	int ret = store__write(s, batch, 1, "snapshot_install_end", error_r);
	leveldb_writebatch_destroy(batch);
	return ret;
}

long queue_store_count(queue_store *s)
{
	const char prefix[2] = { QUEUE_STORE_KEY_VERSION, KIND_MESSAGE };
	long n = 0;
	leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->read);
	for (leveldb_iter_seek(it, prefix, 2); leveldb_iter_valid(it); leveldb_iter_next(it)) {
		size_t klen;
		const char *k = leveldb_iter_key(it, &klen);
		if (klen < 2 || memcmp(k, prefix, 2) != 0)
			break;
		n++;
	}
	char *err = NULL;
	leveldb_iter_get_error(it, &err);
	leveldb_iter_destroy(it);
	if (err != NULL) {
		store__log_error("count", err);
		return -1;
	}
	return n;
}
