/* queue-repl.c: the queue store on the partition logs (queue-repl.h). */
#include "queue-repl.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mail-error.h"
#include "xalloc.h"

struct queue_repl {
	repl_host *host;
	queue_store *store;
	queue_delivery *delivery;   /* NULL until set */
};

/* One proposal in flight: an enqueue or a journal call. */
struct pending {
	queue_repl_enqueue_cb *enqueue_cb;
	queue_journal_cb *journal_cb;
	void *arg;
};

/* ---- the state machine --------------------------------------------------- */

static int repl__apply(void *owner, uint32_t partition, uint64_t index, const uint8_t *payload,
		       size_t len, buf *resp)
{
	queue_repl *qr = owner;
	(void)resp;
	Queue__LogEntry *e = queue__log_entry__unpack(NULL, len, payload);
	Queue__LogEntry empty = QUEUE__LOG_ENTRY__INIT;
	const char *error = "";
	/* An undecodable entry still records its index (the bad-entry path of
	 * queue_store_apply): every replica skips it alike. */
	int ret = queue_store_apply(qr->store, partition, index, e != NULL ? e : &empty, &error);
	int status = MAIL_OK;
	if (ret < 0 || ret == 2) {
		log_event(LOG_ERROR, "queue", "event=apply_failed partition=%u index=%llu "
			  "error=\"%s\"", partition, (unsigned long long)index, error);
		status = ret < 0 ? MAIL_ERR_INTERNAL : MAIL_ERR_PARAMS;
	} else if (e->put != NULL) {
		status = ret == 1 ? MAIL_ERR_EXISTS : MAIL_OK;
		/* A leader delivers what is enqueued from now on; a node that
		 * starts leading later finds it in the store (take-over). */
		if (ret == 0 && qr->delivery != NULL && repl_host_leading(qr->host, partition))
			queue_delivery_enqueued(qr->delivery, e->put->envelope->queue_id);
	}
	if (e != NULL)
		queue__log_entry__free_unpacked(e, NULL);
	return status;
}

static int repl__applied_index(void *owner, uint32_t partition, uint64_t *index_r)
{
	queue_repl *qr = owner;
	const char *error;
	if (queue_store_applied_index(qr->store, partition, index_r, &error) < 0) {
		log_event(LOG_ERROR, "queue", "event=applied_index_failed partition=%u "
			  "error=\"%s\"", partition, error);
		return MAIL_ERR_INTERNAL;
	}
	return MAIL_OK;
}

struct take_over {
	queue_repl *qr;
	uint32_t partition;
};

static int repl__mine(const char *queue_id, void *arg)
{
	struct take_over *t = arg;
	uint32_t partition;
	return repl_host_partition_of(t->qr->host, queue_id, strlen(queue_id), &partition) ==
		       MAIL_OK && partition == t->partition;
}

static void repl__on_leading(void *owner, uint32_t partition, int leading)
{
	queue_repl *qr = owner;
	if (qr->delivery == NULL)
		return;
	struct take_over t = { qr, partition };
	if (!leading) {
		/* Running attempts stop at their next journal call; waiting
		 * ones are dropped now. */
		size_t n = queue_delivery_release(qr->delivery, repl__mine, &t);
		log_event(LOG_INFO, "queue", "event=released partition=%u scheduled=%zu",
			  partition, n);
		return;
	}
	const char *error;
	int n = queue_delivery_take_over(qr->delivery, repl__mine, &t, &error);
	if (n < 0)
		log_event(LOG_ERROR, "queue", "event=take_over_failed partition=%u error=\"%s\"",
			  partition, error);
	else
		log_event(LOG_INFO, "queue", "event=take_over partition=%u scheduled=%d",
			  partition, n);
}

static int repl__snapshot_open(void *owner, uint32_t partition, uint32_t n_partitions,
			       void **snap_r)
{
	queue_repl *qr = owner;
	queue_store_snapshot *snap;
	uint64_t applied;
	const char *error;
	if (queue_store_snapshot_open(qr->store, partition, n_partitions, &snap, &applied,
				      &error) < 0)
		return -1;
	*snap_r = snap;
	return 0;
}

static int repl__snapshot_next(void *snap, buf *out, size_t max_bytes)
{
	return queue_store_snapshot_next(snap, out, max_bytes);
}

static void repl__snapshot_close(void *snap)
{
	queue_store_snapshot *s = snap;
	queue_store_snapshot_close(&s);
}

static int repl__snapshot_install(void *owner, uint32_t partition, uint32_t n_partitions,
				  int first, int last, const uint8_t *chunk, size_t len,
				  uint64_t index)
{
	queue_repl *qr = owner;
	const char *error = "";
	int ret = 0;
	if (first)
		ret = queue_store_snapshot_install_begin(qr->store, partition, n_partitions,
							 &error);
	if (ret == 0 && len > 0)
		ret = queue_store_snapshot_install_chunk(qr->store, partition, n_partitions, chunk,
							 len, &error);
	if (ret == 0 && last)
		ret = queue_store_snapshot_install_end(qr->store, partition, index, &error);
	if (ret < 0)
		log_event(LOG_ERROR, "queue", "event=snapshot_install_failed partition=%u "
			  "error=\"%s\"", partition, error);
	return ret;
}

static const struct repl_host_ops queue_repl_ops = {
	repl__apply, repl__applied_index, repl__on_leading,
	repl__snapshot_open, repl__snapshot_next, repl__snapshot_close, repl__snapshot_install,
	NULL,   /* the queue's applies sync each write */
};

/* ---- proposals ------------------------------------------------------------ */

static void repl__done_cb(int status, int op_status, const uint8_t *resp, size_t len, void *arg)
{
	struct pending *p = arg;
	(void)resp;
	(void)len;
	if (status == MAIL_OK && op_status != MAIL_OK && op_status != MAIL_ERR_EXISTS)
		status = op_status;
	if (p->enqueue_cb != NULL)
		p->enqueue_cb(status, op_status == MAIL_ERR_EXISTS, p->arg);
	else
		p->journal_cb(status, p->arg);
	free(p);
}

/* Propose e on the partition of queue_id. Returns MAIL_OK (p is then
 * owned by the callback) or NOT_PRIMARY (p is freed). */
static int repl__propose(queue_repl *qr, const char *queue_id, const Queue__LogEntry *e,
			 struct pending *p)
{
	uint32_t partition;
	int ret = repl_host_primary_of(qr->host, queue_id, strlen(queue_id), 0, &partition);
	if (ret == MAIL_OK) {
		size_t len = queue__log_entry__get_packed_size(e);
		uint8_t *data = xmalloc(len ? len : 1);
		queue__log_entry__pack(e, data);
		ret = repl_host_propose(qr->host, partition, data, len, repl__done_cb, p);
		free(data);
	}
	if (ret != MAIL_OK)
		free(p);
	return ret;
}

int queue_repl_enqueue(queue_repl *qr, const Queue__QueuedMessage *rec,
		       queue_repl_enqueue_cb *cb, void *arg)
{
	Queue__LogEntry e = QUEUE__LOG_ENTRY__INIT;
	e.put = (Queue__QueuedMessage *)rec;
	struct pending *p = xcalloc(1, sizeof *p);
	*p = (struct pending){ cb, NULL, arg };
	return repl__propose(qr, rec->envelope->queue_id, &e, p);
}

/* ---- the delivery journal --------------------------------------------------- */

static void journal__propose(queue_repl *qr, const char *queue_id, Queue__LogEntry *e,
			     queue_journal_cb *cb, void *arg)
{
	struct pending *p = xcalloc(1, sizeof *p);
	*p = (struct pending){ NULL, cb, arg };
	e->queue_id = (char *)queue_id;
	if (repl__propose(qr, queue_id, e, p) != MAIL_OK)
		cb(MAIL_ERR_NOT_PRIMARY, arg);
}

static void journal__mark_done(void *ctx, const char *queue_id, uint32_t rcpt_index,
			       queue_journal_cb *cb, void *arg)
{
	Queue__LogEntry e = QUEUE__LOG_ENTRY__INIT;
	e.n_done = 1;
	e.done = &rcpt_index;
	journal__propose(ctx, queue_id, &e, cb, arg);
}

static void journal__remove(void *ctx, const char *queue_id, queue_journal_cb *cb, void *arg)
{
	Queue__LogEntry e = QUEUE__LOG_ENTRY__INIT;
	e.remove = 1;
	journal__propose(ctx, queue_id, &e, cb, arg);
}

static int journal__may_deliver(void *ctx, const char *queue_id)
{
	queue_repl *qr = ctx;
	uint32_t partition;
	return repl_host_partition_of(qr->host, queue_id, strlen(queue_id), &partition) ==
		       MAIL_OK && repl_host_leading(qr->host, partition);
}

static void journal__record(void *ctx, const char *queue_id, const Queue__MessageState *st,
			    int remove, const Queue__QueuedMessage *dsn, queue_journal_cb *cb,
			    void *arg)
{
	Queue__LogEntry e = QUEUE__LOG_ENTRY__INIT;
	e.state = (Queue__MessageState *)st;
	e.remove = remove;
	e.put = (Queue__QueuedMessage *)dsn;
	journal__propose(ctx, queue_id, &e, cb, arg);
}

static int journal__same_partition(void *ctx, const char *a, const char *b)
{
	queue_repl *qr = ctx;
	uint32_t pa, pb;
	return repl_host_partition_of(qr->host, a, strlen(a), &pa) == MAIL_OK &&
	       repl_host_partition_of(qr->host, b, strlen(b), &pb) == MAIL_OK && pa == pb;
}

static uint32_t journal__partitions(void *ctx)
{
	queue_repl *qr = ctx;
	return repl_host_partition_count(qr->host);
}

static int journal__leads_partition(void *ctx, uint32_t p)
{
	queue_repl *qr = ctx;
	return repl_host_leading(qr->host, p);
}

static int journal__partition_of(void *ctx, const char *queue_id, uint32_t *p_r)
{
	queue_repl *qr = ctx;
	return repl_host_partition_of(qr->host, queue_id, strlen(queue_id), p_r) == MAIL_OK ? 0
											     : -1;
}

static const struct queue_journal queue_repl_journal_ops = {
	journal__mark_done, journal__remove, journal__may_deliver, journal__record,
	journal__same_partition, journal__partitions, journal__leads_partition,
	journal__partition_of
};

const struct queue_journal *queue_repl_journal(void)
{
	return &queue_repl_journal_ops;
}

/* ---- lifetime ----------------------------------------------------------------- */

int queue_repl_start(uv_loop_t *loop, rpc_server *server, const struct repl_host_settings *set,
		     queue_store *store, queue_repl **qr_r, const char **error_r)
{
	queue_repl *qr = xcalloc(1, sizeof *qr);
	qr->store = store;
	*qr_r = qr;
	return repl_host_start(loop, server, set, &queue_repl_ops, qr, &qr->host, error_r);
}

void queue_repl_metrics(queue_repl *qr, buf *out, const char *labels)
{
	repl_host_metrics(qr->host, out, labels);
}

router *queue_repl_router(queue_repl *qr)
{
	return repl_host_router(qr->host);
}

void queue_repl_set_delivery(queue_repl *qr, queue_delivery *d)
{
	qr->delivery = d;
}

void queue_repl_stop(queue_repl *qr)
{
	if (qr != NULL)
		repl_host_stop(qr->host);
}

void queue_repl_destroy(queue_repl **qrp)
{
	queue_repl *qr = *qrp;
	if (qr == NULL)
		return;
	*qrp = NULL;
	repl_host_destroy(&qr->host);
	free(qr);
}
