/* Unit tests for queue-store.c on a real LevelDB in a temp dir: what is put
 * survives a reopen, put is idempotent, "done" flags persist, delete removes
 * everything, bad ids and a second open are refused; the replicated mode:
 * log entries applied with their index, partition snapshots exported and
 * installed, bad chunks refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <ftw.h>
#include <leveldb/c.h>
#include <unistd.h>

#include "queue-dsn.h"
#include "queue-store.h"
#include "router.h"
#include "util.h"

struct fixture {
	char dir[64];
	queue_store *store;
};

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	strcpy(f->dir, "/tmp/queue_store_XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	const char *error;
	assert_int_equal(queue_store_open(f->dir, &f->store, &error), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	queue_store_close(&f->store);
	nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static void reopen(struct fixture *f)
{
	const char *error;
	queue_store_close(&f->store);
	assert_null(f->store);
	assert_int_equal(queue_store_open(f->dir, &f->store, &error), 0);
}

/* A message with n recipients and a body containing NUL and CRLF bytes. */
struct sample {
	Queue__EnqueueRequest env;
	Queue__QueuedMessage msg;
	char *rcpts[3];
	uint8_t body[16];
};

static void sample_init(struct sample *s, const char *qid, size_t n_rcpt)
{
	static const char *const addrs[3] = { "a@x.test", "b@x.test", "c@y.test" };
	queue__enqueue_request__init(&s->env);
	queue__queued_message__init(&s->msg);
	for (size_t i = 0; i < 3; i++)
		s->rcpts[i] = (char *)addrs[i];
	memcpy(s->body, "Subj\0ect: x\r\n\r\nhi", sizeof s->body);
	s->env.queue_id = (char *)qid;
	s->env.mail_from = "sender@z.test";
	s->env.rcpt_to = s->rcpts;
	s->env.n_rcpt_to = n_rcpt;
	s->env.body.data = s->body;
	s->env.body.len = sizeof s->body;
	s->env.received_at = 1700000000123;
	s->msg.envelope = &s->env;
	s->msg.next_attempt_at = 42;
}

static void assert_sample(const Queue__QueuedMessage *m, const struct sample *s)
{
	assert_non_null(m->envelope);
	assert_string_equal(m->envelope->queue_id, s->env.queue_id);
	assert_string_equal(m->envelope->mail_from, "sender@z.test");
	assert_int_equal(m->envelope->n_rcpt_to, s->env.n_rcpt_to);
	for (size_t i = 0; i < s->env.n_rcpt_to; i++)
		assert_string_equal(m->envelope->rcpt_to[i], s->rcpts[i]);
	assert_int_equal(m->envelope->body.len, sizeof s->body);
	assert_memory_equal(m->envelope->body.data, s->body, sizeof s->body);
	assert_int_equal(m->envelope->received_at, 1700000000123);
	assert_int_equal(m->n_delivered, s->env.n_rcpt_to);
}

/* ---- the replicated mode ---- */

static int apply_put(queue_store *qs, uint32_t partition, uint64_t index, const char *qid,
		     struct sample *smp)
{
	sample_init(smp, qid, 2);
	Queue__LogEntry e = QUEUE__LOG_ENTRY__INIT;
	e.put = &smp->msg;
	const char *error;
	return queue_store_apply(qs, partition, index, &e, &error);
}

static void test_apply(void **state)
{
	struct fixture *f = *state;
	struct sample smp;
	const char *error;
	uint64_t applied;
	assert_int_equal(queue_store_applied_index(f->store, 3, &applied, &error), 0);
	assert_int_equal(applied, 0);
	assert_int_equal(apply_put(f->store, 3, 1, "qA", &smp), 0);
	assert_int_equal(apply_put(f->store, 3, 2, "qA", &smp), 1); /* known id: kept */
	assert_int_equal(apply_put(f->store, 3, 2, "qB", &smp), 1); /* index <= applied */
	Queue__LogEntry done = QUEUE__LOG_ENTRY__INIT;
	uint32_t idx = 1;
	done.queue_id = "qA";
	done.done = &idx;
	done.n_done = 1;
	assert_int_equal(queue_store_apply(f->store, 3, 3, &done, &error), 0);
	Queue__LogEntry bad = QUEUE__LOG_ENTRY__INIT; /* no queue id */
	assert_int_equal(queue_store_apply(f->store, 3, 4, &bad, &error), 2);
	reopen(f);
	assert_int_equal(queue_store_applied_index(f->store, 3, &applied, &error), 0);
	assert_int_equal(applied, 4);
	assert_int_equal(queue_store_applied_index(f->store, 4, &applied, &error), 0);
	assert_int_equal(applied, 0);
	Queue__QueuedMessage *m = NULL;
	assert_int_equal(queue_store_get(f->store, "qA", &m, &error), 1);
	assert_false(m->delivered[0]);
	assert_true(m->delivered[1]);
	queue_store_message_free(&m);
	assert_int_equal(queue_store_get(f->store, "qB", &m, &error), 0);
	assert_int_equal(queue_store_count(f->store), 1);
	Queue__LogEntry rm = QUEUE__LOG_ENTRY__INIT;
	rm.queue_id = "qA";
	rm.remove = 1;
	assert_int_equal(queue_store_apply(f->store, 3, 5, &rm, &error), 0);
	assert_int_equal(queue_store_get(f->store, "qA", &m, &error), 0);
	assert_int_equal(queue_store_count(f->store), 0);
}

/* LogEntry.state: the state key is read back with the message (and after
 * a reopen), DELIVERED and FAILED recipients become done, a DSN put rides
 * in the same entry, the state of a removed message is gone with it, and
 * a state that leaves nothing pending removes the message. */
static void test_state_entry(void **state)
{
	struct fixture *f = *state;
	struct sample smp, dsn;
	const char *error;
	sample_init(&smp, "qS", 3);
	Queue__LogEntry put = QUEUE__LOG_ENTRY__INIT;
	put.put = &smp.msg;
	assert_int_equal(queue_store_apply(f->store, 1, 1, &put, &error), 0);

	Queue__RcptOutcome o[2] = { QUEUE__RCPT_OUTCOME__INIT, QUEUE__RCPT_OUTCOME__INIT };
	Queue__RcptOutcome *op[2] = { &o[0], &o[1] };
	o[0].index = 0;
	o[0].status = QUEUE__RCPT_STATUS__RCPT_FAILED;
	o[0].code = 550;
	o[0].enh = "5.1.1";
	o[0].text = "no such user";
	o[1].index = 2;
	o[1].status = QUEUE__RCPT_STATUS__RCPT_DEFERRED;
	o[1].code = 451;
	Queue__MessageState st = QUEUE__MESSAGE_STATE__INIT;
	st.attempts = 1;
	st.next_attempt_at = 1700000060000;
	st.rcpts = op;
	st.n_rcpts = 2;
	sample_init(&dsn, "qSdsn", 1);
	Queue__LogEntry e = QUEUE__LOG_ENTRY__INIT;
	e.queue_id = "qS";
	e.state = &st;
	e.put = &dsn.msg;
	assert_int_equal(queue_store_apply(f->store, 1, 2, &e, &error), 0);
	/* a state and a put of the SAME id: refused as a bad entry */
	Queue__LogEntry same = QUEUE__LOG_ENTRY__INIT;
	same.queue_id = "qSdsn";
	same.state = &st;
	same.put = &dsn.msg;
	assert_int_equal(queue_store_apply(f->store, 1, 3, &same, &error), 2);
	reopen(f);
	Queue__QueuedMessage *m = NULL;
	assert_int_equal(queue_store_get(f->store, "qS", &m, &error), 1);
	assert_non_null(m->state);
	assert_int_equal(m->state->attempts, 1);
	assert_int_equal(m->state->next_attempt_at, 1700000060000);
	assert_int_equal(m->state->n_rcpts, 2);
	assert_string_equal(m->state->rcpts[0]->enh, "5.1.1");
	assert_true(m->delivered[0]);   /* failed: done */
	assert_false(m->delivered[1]);
	assert_false(m->delivered[2]);  /* deferred: pending */
	queue_store_message_free(&m);
	assert_int_equal(queue_store_get(f->store, "qSdsn", &m, &error), 1);
	assert_null(m->state);
	queue_store_message_free(&m);

	/* a snapshot carries the state: export all (1 partition), install */
	queue_store_snapshot *snap;
	uint64_t applied;
	buf chunks[8];
	size_t n_chunks = 0;
	assert_int_equal(queue_store_snapshot_open(f->store, 0, 1, &snap, &applied, &error), 0);
	for (;;) {
		buf_init(&chunks[n_chunks]);
		int r = queue_store_snapshot_next(snap, &chunks[n_chunks], 1 << 20);
		assert_true(r >= 0);
		if (r == 0) {
			buf_deinit(&chunks[n_chunks]);
			break;
		}
		assert_true(++n_chunks < 8);
	}
	queue_store_snapshot_close(&snap);
	assert_int_equal(queue_store_snapshot_install_begin(f->store, 0, 1, &error), 0);
	assert_int_equal(queue_store_count(f->store), 0);
	for (size_t i = 0; i < n_chunks; i++) {
		assert_int_equal(queue_store_snapshot_install_chunk(f->store, 0, 1, chunks[i].data,
								    chunks[i].len, &error), 0);
		buf_deinit(&chunks[i]);
	}
	assert_int_equal(queue_store_snapshot_install_end(f->store, 0, applied, &error), 0);
	assert_int_equal(queue_store_get(f->store, "qS", &m, &error), 1);
	assert_non_null(m->state);
	assert_int_equal(m->state->attempts, 1);
	assert_true(m->delivered[0]);
	queue_store_message_free(&m);

	/* the rest delivered: the message and its state go */
	o[0].index = 1;
	o[0].status = QUEUE__RCPT_STATUS__RCPT_DELIVERED;
	o[1].status = QUEUE__RCPT_STATUS__RCPT_DELIVERED;
	Queue__LogEntry fin = QUEUE__LOG_ENTRY__INIT;
	fin.queue_id = "qS";
	fin.state = &st;
	assert_int_equal(queue_store_apply(f->store, 1, 4, &fin, &error), 0);
	assert_int_equal(queue_store_get(f->store, "qS", &m, &error), 0);
	/* a state for a message no longer there writes nothing */
	assert_int_equal(queue_store_apply(f->store, 1, 5, &fin, &error), 0);
	assert_int_equal(queue_store_get(f->store, "qS", &m, &error), 0);
	assert_int_equal(queue_store_count(f->store), 1);
	/* the standalone mode's record: the same, synced */
	o[0].status = QUEUE__RCPT_STATUS__RCPT_DEFERRED;
	st.n_rcpts = 1;
	assert_int_equal(queue_store_record(f->store, "qSdsn", &st, 0, NULL, &error), 0);
	assert_int_equal(queue_store_get(f->store, "qSdsn", &m, &error), 1);
	assert_non_null(m->state);
	queue_store_message_free(&m);
	assert_int_equal(queue_store_record(f->store, "qSdsn", NULL, 1, NULL, &error), 0);
	assert_int_equal(queue_store_count(f->store), 0);
}

#define SNAP_PARTS 4u

/* A queue id of partition p: "<prefix><k>" for the first k that hashes there. */
static void id_in(char *out, size_t size, const char *prefix, uint32_t p, int *k)
{
	do
		snprintf(out, size, "%s%d", prefix, (*k)++);
	while (router_partition_of(out, strlen(out), SNAP_PARTS) != p);
}

static void test_snapshot(void **state)
{
	struct fixture *f = *state;
	const char *error;
	struct sample smp;
	char qid[32];
	int k = 0;
	/* source: 5 messages of partition 1 (one with a recipient done), 3 of
	 * partition 2 */
	for (uint64_t i = 1; i <= 5; i++) {
		id_in(qid, sizeof qid, "p", 1, &k);
		assert_int_equal(apply_put(f->store, 1, i, qid, &smp), 0);
	}
	assert_int_equal(queue_store_mark_delivered(f->store, qid, 0, &error), 0);
	char last1[32];
	strcpy(last1, qid);
	for (uint64_t i = 1; i <= 3; i++) {
		id_in(qid, sizeof qid, "o", 2, &k);
		assert_int_equal(apply_put(f->store, 2, i, qid, &smp), 0);
	}
	queue_store_snapshot *sn;
	uint64_t applied;
	assert_int_equal(queue_store_snapshot_open(f->store, 1, SNAP_PARTS, &sn, &applied,
						   &error), 0);
	assert_int_equal(applied, 5);
	/* written after the view: not in it */
	id_in(qid, sizeof qid, "late", 1, &k);
	assert_int_equal(apply_put(f->store, 1, 6, qid, &smp), 0);
	buf chunks[16];
	size_t n = 0;
	for (;;) {
		assert_true(n < 16);
		buf_init(&chunks[n]);
		int r = queue_store_snapshot_next(sn, &chunks[n], 64);
		assert_true(r >= 0);
		if (r == 0) {
			buf_deinit(&chunks[n]);
			break;
		}
		n++;
	}
	queue_store_snapshot_close(&sn);
	assert_true(n >= 5); /* one pair per chunk at 64 bytes */

	/* target: holds a stale message of partition 1 and one of partition 2 */
	struct fixture g;
	strcpy(g.dir, "/tmp/queue_store_XXXXXX");
	assert_non_null(mkdtemp(g.dir));
	assert_int_equal(queue_store_open(g.dir, &g.store, &error), 0);
	char stale[32], other[32];
	id_in(stale, sizeof stale, "stale", 1, &k);
	assert_int_equal(apply_put(g.store, 1, 1, stale, &smp), 0);
	id_in(other, sizeof other, "keep", 2, &k);
	assert_int_equal(apply_put(g.store, 2, 1, other, &smp), 0);
	/* a chunk of another partition is refused and writes nothing */
	assert_int_equal(queue_store_snapshot_install_chunk(g.store, 3, SNAP_PARTS,
							     chunks[0].data, chunks[0].len,
							     &error), -1);
	uint8_t junk[] = { QUEUE_STORE_SNAPSHOT_VERSION, 0, 0, 0, 9, 'x' };
	assert_int_equal(queue_store_snapshot_install_chunk(g.store, 1, SNAP_PARTS, junk,
							     sizeof junk, &error), -1);
	assert_int_equal(queue_store_snapshot_install_begin(g.store, 1, SNAP_PARTS, &error), 0);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(queue_store_snapshot_install_chunk(g.store, 1, SNAP_PARTS,
								     chunks[i].data,
								     chunks[i].len, &error), 0);
		buf_deinit(&chunks[i]);
	}
	assert_int_equal(queue_store_snapshot_install_end(g.store, 1, applied, &error), 0);
	Queue__QueuedMessage *m = NULL;
	assert_int_equal(queue_store_get(g.store, stale, &m, &error), 0);   /* dropped */
	assert_int_equal(queue_store_get(g.store, other, &m, &error), 1);   /* untouched */
	queue_store_message_free(&m);
	assert_int_equal(queue_store_get(g.store, qid, &m, &error), 0);     /* after the view */
	assert_int_equal(queue_store_get(g.store, last1, &m, &error), 1);
	sample_init(&smp, last1, 2);
	assert_sample(m, &smp);
	assert_true(m->delivered[0]);                                       /* 'd' key came */
	queue_store_message_free(&m);
	uint64_t got;
	assert_int_equal(queue_store_applied_index(g.store, 1, &got, &error), 0);
	assert_int_equal(got, 5);
	queue_store_close(&g.store);
	nftw(g.dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static int keep_b(const char *queue_id, void *arg)
{
	(void)arg;
	return queue_id[0] == 'b';
}

static void b_count_cb(const Queue__QueuedMessage *msg, void *arg)
{
	assert_int_equal(msg->envelope->queue_id[0], 'b');
	(*(int *)arg)++;
}

/* load_if visits only what keep accepts. */
static void test_load_if(void **state)
{
	struct fixture *f = *state;
	struct sample a, b1, b2;
	const char *error;
	sample_init(&a, "a1", 1);
	sample_init(&b1, "b1", 1);
	sample_init(&b2, "b2", 2);
	assert_int_equal(queue_store_put(f->store, &a.msg, &error), 0);
	assert_int_equal(queue_store_put(f->store, &b1.msg, &error), 0);
	assert_int_equal(queue_store_put(f->store, &b2.msg, &error), 0);
	int n = 0;
	assert_int_equal(queue_store_load_if(f->store, keep_b, b_count_cb, &n, &error), 2);
	assert_int_equal(n, 2);
}

/* The store computes a queue id's partition itself; it must be the
 * router's. */
static void test_partition_agrees_with_router(void **state)
{
	(void)state;
	char qid[32];
	for (int i = 0; i < 500; i++) {
		snprintf(qid, sizeof qid, "Q%dx", i * 7919);
		for (uint32_t n = 1; n <= 64; n *= 4)
			assert_int_equal(router_partition_of(qid, strlen(qid), n),
					 util_hash64(qid, strlen(qid)) % n);
	}
}

static void test_put_get_after_reopen(void **state)
{
	struct fixture *f = *state;
	struct sample s;
	const char *error;
	sample_init(&s, "Q1abc", 3);
	assert_int_equal(queue_store_put(f->store, &s.msg, &error), 0);
	reopen(f);
	Queue__QueuedMessage *m = NULL;
	assert_int_equal(queue_store_get(f->store, "Q1abc", &m, &error), 1);
	assert_sample(m, &s);
	for (size_t i = 0; i < 3; i++)
		assert_false(m->delivered[i]);
	assert_int_equal(m->next_attempt_at, 42);
	queue_store_message_free(&m);
	assert_null(m);
	assert_int_equal(queue_store_get(f->store, "nothere", &m, &error), 0);
}

/* ---- DSN (RFC 3461) fields of the envelope (queue.proto 13..16) ---- */

/* The DSN values our SMTP engine hands over for s's recipients. */
struct dsn_sample {
	uint32_t notify[3];
	Queue__Orcpt orcpt[3];
	Queue__Orcpt *orcpt_ptrs[3];
};

static void dsn_sample_add(struct sample *s, struct dsn_sample *d)
{
	s->env.ret = QUEUE__DSN_RET__RET_HDRS;
	s->env.envid = "QQ314159 x";
	d->notify[0] = DSN_NOTIFY_SUCCESS | DSN_NOTIFY_DELAY;
	d->notify[1] = 0; /* not given */
	d->notify[2] = DSN_NOTIFY_NEVER;
	for (size_t i = 0; i < 3; i++) {
		queue__orcpt__init(&d->orcpt[i]);
		d->orcpt_ptrs[i] = &d->orcpt[i];
	}
	d->orcpt[0].addr_type = "rfc822";
	d->orcpt[0].addr = "A@X.test";
	d->orcpt[2].addr_type = "utf-8";
	d->orcpt[2].addr = "j\xc3\xa9r\xc3\xb4me@y.test";
	s->env.n_notify = s->env.n_rcpt_to;
	s->env.notify = d->notify;
	s->env.n_orcpt = s->env.n_rcpt_to;
	s->env.orcpt = d->orcpt_ptrs;
}

/* What queue-dsn.h reads back from a stored envelope with dsn_sample's. */
static void assert_dsn_sample(const Queue__EnqueueRequest *env)
{
	struct dsn_mail_params m;
	struct dsn_rcpt_params r;
	const char *why;
	assert_int_equal(queue_dsn_check(env, &why), 0);
	queue_dsn_mail(env, &m);
	assert_int_equal(m.ret, DSN_RET_HDRS);
	assert_true(m.has_envid);
	assert_string_equal(m.envid, "QQ314159 x");
	queue_dsn_rcpt(env, 0, &r);
	assert_int_equal(r.notify, DSN_NOTIFY_SUCCESS | DSN_NOTIFY_DELAY);
	assert_int_equal(r.orcpt.kind, DSN_ADDR_RFC822);
	assert_string_equal(r.orcpt.type, "rfc822");
	assert_string_equal(r.orcpt.addr, "A@X.test");
	assert_true(dsn_notify_wants(r.notify, DSN_EVENT_SUCCESS));
	assert_false(dsn_notify_wants(r.notify, DSN_EVENT_FAILURE));
	queue_dsn_rcpt(env, 1, &r);
	assert_int_equal(r.notify, 0);
	assert_int_equal(r.orcpt.kind, DSN_ADDR_NONE);
	assert_true(dsn_notify_wants(r.notify, DSN_EVENT_FAILURE)); /* the default */
	queue_dsn_rcpt(env, 2, &r);
	assert_int_equal(r.notify, DSN_NOTIFY_NEVER);
	assert_int_equal(r.orcpt.kind, DSN_ADDR_UTF8);
	assert_string_equal(r.orcpt.addr, "j\xc3\xa9r\xc3\xb4me@y.test");
	queue_dsn_rcpt(env, 3, &r); /* past the end: defaults */
	assert_int_equal(r.notify, 0);
	assert_int_equal(r.orcpt.kind, DSN_ADDR_NONE);
}

/* Enqueued with DSN values (the standalone put, and a replicated log
 * entry as a replica receives it: packed, unpacked, applied): the same
 * values after the store was closed and opened again. */
static void test_dsn_fields_after_reopen(void **state)
{
	struct fixture *f = *state;
	struct sample s, t;
	struct dsn_sample d, e;
	const char *error;
	sample_init(&s, "dsn1", 3);
	dsn_sample_add(&s, &d);
	assert_int_equal(queue_store_put(f->store, &s.msg, &error), 0);

	sample_init(&t, "dsn2", 3);
	dsn_sample_add(&t, &e);
	Queue__LogEntry le = QUEUE__LOG_ENTRY__INIT;
	le.put = &t.msg;
	size_t len = queue__log_entry__get_packed_size(&le);
	uint8_t *wire = malloc(len);
	queue__log_entry__pack(&le, wire);
	Queue__LogEntry *got = queue__log_entry__unpack(NULL, len, wire);
	assert_non_null(got);
	assert_int_equal(queue_store_apply(f->store, 1, 1, got, &error), 0);
	queue__log_entry__free_unpacked(got, NULL);
	free(wire);

	reopen(f);
	const char *ids[2] = { "dsn1", "dsn2" };
	for (size_t k = 0; k < 2; k++) {
		Queue__QueuedMessage *m = NULL;
		assert_int_equal(queue_store_get(f->store, ids[k], &m, &error), 1);
		assert_sample(m, k == 0 ? &s : &t);
		assert_dsn_sample(m->envelope);
		queue_store_message_free(&m);
	}
}

/* A record written before the DSN fields existed (its bytes as that
 * version packed them: QueuedMessage{envelope{queue_id "old1", mail_from,
 * two rcpt_to, body, helo, received_at}, next_attempt_at 42}) still
 * loads, and reads as "nothing given". */
static void test_dsn_old_record(void **state)
{
	struct fixture *f = *state;
	static const char old[] =
		"\x0a\x39"                            /* 1 envelope, 57 octets */
		"\x0a\x04" "old1"                     /* 1 queue_id */
		"\x12\x08" "s@z.test"                 /* 2 mail_from */
		"\x1a\x08" "a@x.test"                 /* 3 rcpt_to */
		"\x1a\x08" "b@x.test"
		"\x22\x04" "hi\r\n"                   /* 4 body */
		"\x2a\x06" "h.test"                   /* 5 helo */
		"\x38\xfb\xd0\x95\xff\xbc\x31"         /* 7 received_at 1700000000123 */
		"\x20\x2a";                           /* 4 next_attempt_at 42 */
	queue_store_close(&f->store);
	leveldb_options_t *opt = leveldb_options_create();
	leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
	char *err = NULL;
	leveldb_t *db = leveldb_open(opt, f->dir, &err);
	assert_null(err);
	const char key[] = { QUEUE_STORE_KEY_VERSION, 'm', 'o', 'l', 'd', '1' };
	leveldb_put(db, wo, key, sizeof key, old, sizeof old - 1, &err);
	assert_null(err);
	leveldb_close(db);
	leveldb_writeoptions_destroy(wo);
	leveldb_options_destroy(opt);
	reopen(f);

	const char *error;
	Queue__QueuedMessage *m = NULL;
	assert_int_equal(queue_store_get(f->store, "old1", &m, &error), 1);
	const Queue__EnqueueRequest *env = m->envelope;
	assert_string_equal(env->mail_from, "s@z.test");
	assert_int_equal(env->n_rcpt_to, 2);
	assert_string_equal(env->rcpt_to[1], "b@x.test");
	assert_int_equal(env->received_at, 1700000000123);
	assert_int_equal(m->next_attempt_at, 42);
	assert_int_equal(env->ret, QUEUE__DSN_RET__RET_UNSPECIFIED);
	assert_string_equal(env->envid, "");
	assert_int_equal(env->n_notify, 0);
	assert_int_equal(env->n_orcpt, 0);
	assert_int_equal(queue_dsn_check(env, &error), 0);
	struct dsn_mail_params mp;
	struct dsn_rcpt_params rp;
	queue_dsn_mail(env, &mp);
	assert_int_equal(mp.ret, DSN_RET_UNSPECIFIED);
	assert_false(mp.has_envid);
	for (size_t i = 0; i < 2; i++) {
		queue_dsn_rcpt(env, i, &rp);
		assert_int_equal(rp.notify, 0);
		assert_int_equal(rp.orcpt.kind, DSN_ADDR_NONE);
		assert_true(dsn_notify_wants(rp.notify, DSN_EVENT_FAILURE));
		assert_true(dsn_notify_wants(rp.notify, DSN_EVENT_DELAY));
		assert_false(dsn_notify_wants(rp.notify, DSN_EVENT_SUCCESS));
	}
	queue_store_message_free(&m);
}

/* What ENQUEUE refuses (queue_service_validate calls queue_dsn_check). */
static void test_dsn_check(void **state)
{
	(void)state;
	struct sample s;
	struct dsn_sample d;
	const char *why;
	sample_init(&s, "chk", 3);
	dsn_sample_add(&s, &d);
	assert_int_equal(queue_dsn_check(&s.env, &why), 0);
	s.env.n_notify = 2; /* not one per recipient */
	assert_int_equal(queue_dsn_check(&s.env, &why), -1);
	s.env.n_notify = 3;
	d.notify[1] = DSN_NOTIFY_NEVER | DSN_NOTIFY_FAILURE;
	assert_int_equal(queue_dsn_check(&s.env, &why), -1);
	d.notify[1] = 0x10;
	assert_int_equal(queue_dsn_check(&s.env, &why), -1);
	d.notify[1] = 0;
	s.env.ret = (Queue__DsnRet)7;
	assert_int_equal(queue_dsn_check(&s.env, &why), -1);
	s.env.ret = QUEUE__DSN_RET__RET_FULL;
	s.env.envid = "bad\r\nX-Injected: 1";
	assert_int_equal(queue_dsn_check(&s.env, &why), -1);
	s.env.envid = "";
	d.orcpt[1].addr = "x@y.test"; /* an address without a type */
	assert_int_equal(queue_dsn_check(&s.env, &why), -1);
	d.orcpt[1].addr_type = "rfc822";
	assert_int_equal(queue_dsn_check(&s.env, &why), 0);
	d.orcpt[1].addr = "x@y.test\r\nBcc: z";
	assert_int_equal(queue_dsn_check(&s.env, &why), -1);
	d.orcpt[1].addr = "x@y.test";
	s.env.n_orcpt = 1;
	assert_int_equal(queue_dsn_check(&s.env, &why), -1);
	s.env.n_orcpt = 0;
	s.env.n_notify = 0;
	assert_int_equal(queue_dsn_check(&s.env, &why), 0);
}

static void test_put_idempotent(void **state)
{
	struct fixture *f = *state;
	struct sample s;
	const char *error;
	sample_init(&s, "dup1", 2);
	assert_int_equal(queue_store_put(f->store, &s.msg, &error), 0);
	assert_int_equal(queue_store_mark_delivered(f->store, "dup1", 0, &error), 0);
	/* A retried enqueue: acknowledged, not stored twice, progress kept. */
	assert_int_equal(queue_store_put(f->store, &s.msg, &error), 1);
	reopen(f);
	assert_int_equal(queue_store_put(f->store, &s.msg, &error), 1);
	Queue__QueuedMessage *m = NULL;
	assert_int_equal(queue_store_get(f->store, "dup1", &m, &error), 1);
	assert_true(m->delivered[0]);
	assert_false(m->delivered[1]);
	queue_store_message_free(&m);
}

static void count_cb(const Queue__QueuedMessage *msg, void *arg)
{
	char *ids = arg;
	strcat(ids, msg->envelope->queue_id);
	strcat(ids, msg->delivered[0] ? "+" : "-");
	strcat(ids, ",");
}

static void test_mark_delivered_persists(void **state)
{
	struct fixture *f = *state;
	struct sample s;
	const char *error;
	sample_init(&s, "M1", 3);
	assert_int_equal(queue_store_put(f->store, &s.msg, &error), 0);
	assert_int_equal(queue_store_mark_delivered(f->store, "M1", 1, &error), 0);
	assert_int_equal(queue_store_mark_delivered(f->store, "M1", 1, &error), 0);
	/* an index past the recipients is ignored on load */
	assert_int_equal(queue_store_mark_delivered(f->store, "M1", 7, &error), 0);
	/* a neighbour whose id extends M1 must not see M1's flags */
	struct sample s2;
	sample_init(&s2, "M10", 1);
	assert_int_equal(queue_store_put(f->store, &s2.msg, &error), 0);
	reopen(f);
	Queue__QueuedMessage *m = NULL;
	assert_int_equal(queue_store_get(f->store, "M1", &m, &error), 1);
	assert_sample(m, &s);
	assert_false(m->delivered[0]);
	assert_true(m->delivered[1]);
	assert_false(m->delivered[2]);
	queue_store_message_free(&m);
	assert_int_equal(queue_store_get(f->store, "M10", &m, &error), 1);
	assert_false(m->delivered[0]);
	queue_store_message_free(&m);
	char ids[128] = "";
	assert_int_equal(queue_store_load_all(f->store, count_cb, ids, &error), 2);
	assert_string_equal(ids, "M1-,M10-,");
}

static void test_delete(void **state)
{
	struct fixture *f = *state;
	struct sample a, b;
	const char *error;
	sample_init(&a, "D1", 2);
	sample_init(&b, "D2", 1);
	assert_int_equal(queue_store_put(f->store, &a.msg, &error), 0);
	assert_int_equal(queue_store_put(f->store, &b.msg, &error), 0);
	assert_int_equal(queue_store_mark_delivered(f->store, "D1", 0, &error), 0);
	assert_int_equal(queue_store_delete(f->store, "D1", &error), 0);
	assert_int_equal(queue_store_delete(f->store, "D1", &error), 0); /* missing: fine */
	reopen(f);
	Queue__QueuedMessage *m = NULL;
	assert_int_equal(queue_store_get(f->store, "D1", &m, &error), 0);
	char ids[128] = "";
	assert_int_equal(queue_store_load_all(f->store, count_cb, ids, &error), 1);
	assert_string_equal(ids, "D2-,");
	/* The same id stored again after delete starts with no flags left over. */
	assert_int_equal(queue_store_put(f->store, &a.msg, &error), 0);
	assert_int_equal(queue_store_get(f->store, "D1", &m, &error), 1);
	assert_false(m->delivered[0]);
	queue_store_message_free(&m);
}

static void test_bad_input(void **state)
{
	struct fixture *f = *state;
	const char *error = NULL;
	struct sample s;
	char longid[70];
	memset(longid, 'a', 65);
	longid[65] = '\0';
	const char *bad[] = { "", "a/b", "a b", "\xc3\xa9", longid };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_false(queue_store_id_valid(bad[i]));
		sample_init(&s, bad[i], 1);
		assert_int_equal(queue_store_put(f->store, &s.msg, &error), -1);
		assert_non_null(error);
		assert_int_equal(queue_store_mark_delivered(f->store, bad[i], 0, &error), -1);
	}
	longid[64] = '\0';
	assert_true(queue_store_id_valid(longid));
	Queue__QueuedMessage nomsg = QUEUE__QUEUED_MESSAGE__INIT;
	assert_int_equal(queue_store_put(f->store, &nomsg, &error), -1);
	/* LevelDB locks the directory: a second open is refused. */
	queue_store *second = NULL;
	assert_int_equal(queue_store_open(f->dir, &second, &error), -1);
	assert_null(second);
	char ids[16] = "";
	assert_int_equal(queue_store_load_all(f->store, count_cb, ids, &error), 0);
}

/* Delivered mail leaves the database: after puts, "done" marks and
 * removals of every message, only the applied-index keys are left (disk
 * follows what is still queued, not what went through). */
static void test_keys_gone_after_delivery(void **state)
{
	struct fixture *f = *state;
	const char *error;
	uint64_t index = 0;
	char qid[32];
	struct sample smp;
	for (int i = 0; i < 200; i++) {
		snprintf(qid, sizeof qid, "gone%d", i);
		assert_int_equal(apply_put(f->store, (uint32_t)i % 2, ++index, qid, &smp), 0);
	}
	for (int i = 0; i < 200; i++) {
		snprintf(qid, sizeof qid, "gone%d", i);
		Queue__LogEntry e = QUEUE__LOG_ENTRY__INIT;
		e.queue_id = qid;
		uint32_t done = 0;
		e.done = &done;
		e.n_done = 1;
		assert_int_equal(queue_store_apply(f->store, (uint32_t)i % 2, ++index, &e, &error),
				 0);
		e.done = NULL;
		e.n_done = 0;
		e.remove = 1;
		assert_int_equal(queue_store_apply(f->store, (uint32_t)i % 2, ++index, &e, &error),
				 0);
	}
	queue_store_close(&f->store);
	leveldb_options_t *o = leveldb_options_create();
	char *err = NULL;
	leveldb_t *db = leveldb_open(o, f->dir, &err);
	assert_null(err);
	leveldb_readoptions_t *r = leveldb_readoptions_create();
	leveldb_iterator_t *it = leveldb_create_iterator(db, r);
	size_t n = 0;
	for (leveldb_iter_seek_to_first(it); leveldb_iter_valid(it); leveldb_iter_next(it)) {
		size_t klen;
		const char *k = leveldb_iter_key(it, &klen);
		assert_true(klen == 6 && k[1] == 'A');
		n++;
	}
	assert_int_equal(n, 2);
	leveldb_iter_destroy(it);
	leveldb_readoptions_destroy(r);
	leveldb_close(db);
	leveldb_options_destroy(o);
	assert_int_equal(queue_store_open(f->dir, &f->store, &error), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_get_after_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_idempotent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dsn_fields_after_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dsn_old_record, setup, teardown),
		cmocka_unit_test(test_dsn_check),
		cmocka_unit_test_setup_teardown(test_mark_delivered_persists, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
		cmocka_unit_test_setup_teardown(test_apply, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_entry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot, setup, teardown),
		cmocka_unit_test(test_partition_agrees_with_router),
		cmocka_unit_test_setup_teardown(test_load_if, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keys_gone_after_delivery, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
