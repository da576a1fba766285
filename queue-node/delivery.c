/* delivery.c: one delivery attempt per message, recipient by recipient.
 *
 * Ordering that makes delivery exactly-once (STYLE.md rule 14):
 *   1. the store tier acknowledges recipient i (its write is durable there);
 *   2. we record "i done" durably (the journal: a sync write, or a commit
 *      of the partition's replicated log);
 *   3. only then do we move to recipient i+1, and remove the message
 *      (journal) after the last one.
 * A crash between 1 and 2 makes the next attempt deliver recipient i again
 * with the same delivery_id "<queue id>/<i>", which the store recognises and
 * answers with the first uid (duplicate=1): the duplicate window between the
 * store's commit and our flag is closed by the store's idempotency, not by
 * timing. The same holds across nodes: a new leader of the partition that
 * delivers recipient i again (the old one died between 1 and 2) uses the
 * same delivery_id.
 */
#include "delivery.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mail-error.h"
#include "xalloc.h"

struct delivery_job {
	queue_delivery *d;
	struct delivery_job *prev, *next; /* d->jobs */
	Queue__QueuedMessage *msg;
	size_t next_rcpt;   /* first index not yet looked at in this attempt */
	size_t current;     /* index of the RPC in flight */
	int *deferred;      /* per recipient: 0, or the temporary status */
	size_t n_deferred;
	Store__DeliverResponse result; /* of recipient current (uid, duplicate) */
	int bounced;        /* recipient current failed permanently */
	int fused;          /* current was the last one: "done" rides on the removal */
	char qid[QUEUE_ID_MAX + 1];
};

struct queue_delivery {
	uv_loop_t *loop;
	queue_store *store;
	store_client *client;
	queue_sched *sched;
	struct queue_sched_ops ops;
	const struct queue_journal *journal;
	void *journal_ctx;
	struct delivery_job *jobs; /* attempts running */
	int stopping;
};

static void delivery__next(struct delivery_job *job);
static void delivery__log_done(struct delivery_job *job);

static void delivery__job_free(struct delivery_job *job)
{
	queue_delivery *d = job->d;
	if (job->prev != NULL)
		job->prev->next = job->next;
	else
		d->jobs = job->next;
	if (job->next != NULL)
		job->next->prev = job->prev;
	queue_store_message_free(&job->msg);
	free(job->deferred);
	free(job);
}

static const char *delivery__rcpt(const struct delivery_job *job, size_t i, char *q, size_t qsz)
{
	const char *r = job->msg->envelope->rcpt_to[i];
	return log_quote(q, qsz, r, strlen(r));
}

/* The journal says another node leads the message's partition now: stop
 * here; its leader delivers what is left (same delivery ids). */
static void delivery__hand_over(struct delivery_job *job)
{
	log_event(LOG_INFO, "queue", "event=handed_over qid=%s", job->qid);
	queue_sched_done(job->d->sched, job->qid, QUEUE_SCHED_FINISHED);
	delivery__job_free(job);
}

static void delivery__removed_cb(int status, void *arg)
{
	struct delivery_job *job = arg;
	queue_delivery *d = job->d;
	if (d->stopping) {
		delivery__job_free(job);
		return;
	}
	if (status == MAIL_ERR_NOT_PRIMARY) {
		delivery__hand_over(job);
		return;
	}
	if (status != MAIL_OK) {
		/* The next attempt retries this removal (and, when it carried
		 * the last recipient's "done", that delivery: deduplicated). */
		log_event(LOG_ERROR, "queue", "event=remove_failed qid=%s status=%s", job->qid,
			  mail_error_info(status)->name);
		queue_sched_done(d->sched, job->qid, QUEUE_SCHED_RETRY);
	} else {
		if (job->fused)
			delivery__log_done(job);
		log_event(LOG_INFO, "queue", "event=removed qid=%s", job->qid);
		queue_sched_done(d->sched, job->qid, QUEUE_SCHED_FINISHED);
	}
	delivery__job_free(job);
}

/* The attempt is over: remove the message if nothing is left, else ask the
 * scheduler for the next attempt. */
static void delivery__finish(struct delivery_job *job)
{
	queue_delivery *d = job->d;
	if (job->n_deferred == 0) {
		d->journal->remove(d->journal_ctx, job->qid, delivery__removed_cb, job);
		return;
	}
	int64_t next_in = queue_sched_done(d->sched, job->qid, QUEUE_SCHED_RETRY);
	for (size_t i = 0; i < job->msg->envelope->n_rcpt_to; i++) {
		if (job->deferred[i] == 0)
			continue;
		char q[300];
		log_event(LOG_INFO, "queue",
			  "event=deferred qid=%s rcpt=%s status=%s next_in_ms=%lld",
			  job->qid, delivery__rcpt(job, i, q, sizeof q),
			  mail_error_info(job->deferred[i])->name, (long long)next_in);
	}
	delivery__job_free(job);
}

/* The line for recipient current, once it is recorded done. */
static void delivery__log_done(struct delivery_job *job)
{
	char q[300];
	if (!job->bounced)
		log_event(LOG_INFO, "queue",
			  "event=delivered qid=%s rcpt=%s uid=%u uidvalidity=%u duplicate=%d",
			  job->qid, delivery__rcpt(job, job->current, q, sizeof q),
			  job->result.uid, job->result.uidvalidity, job->result.duplicate);
}

/* Recipient current is recorded done (or not). On failure it counts as
 * deferred: delivering it again later is safe (delivery_id). */
static void delivery__marked_cb(int status, void *arg)
{
	struct delivery_job *job = arg;
	if (job->d->stopping) {
		delivery__job_free(job);
		return;
	}
	if (status == MAIL_ERR_NOT_PRIMARY) {
		delivery__hand_over(job);
		return;
	}
	size_t i = job->current;
	if (status != MAIL_OK) {
		log_event(LOG_ERROR, "queue", "event=mark_failed qid=%s rcpt_index=%zu status=%s",
			  job->qid, i, mail_error_info(status)->name);
		job->deferred[i] = MAIL_ERR_INTERNAL;
		job->n_deferred++;
	} else {
		job->msg->delivered[i] = 1;
		delivery__log_done(job);
	}
	job->next_rcpt = i + 1;
	delivery__next(job);
}

static void delivery__mark_done(struct delivery_job *job)
{
	queue_delivery *d = job->d;
	size_t left = 0;
	for (size_t i = 0; i < job->msg->envelope->n_rcpt_to; i++)
		left += !job->msg->delivered[i];
	if (left == 1 && job->n_deferred == 0) {
		/* The last recipient: removing the message records it done too
		 * (one journal write instead of two). */
		job->fused = 1;
		d->journal->remove(d->journal_ctx, job->qid, delivery__removed_cb, job);
		return;
	}
	d->journal->mark_done(d->journal_ctx, job->qid, (uint32_t)job->current,
			      delivery__marked_cb, job);
}

static void delivery__deliver_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	struct delivery_job *job = arg;
	if (job->d->stopping) {
		/* Shutting down: the message stays queued; recovery at the
		 * next start picks it up (and the store deduplicates it if
		 * this answer was an OK we did not record). */
		delivery__job_free(job);
		return;
	}
	size_t i = job->current;
	char q[300];
	job->bounced = 0;
	if (status == MAIL_OK) {
		const Store__DeliverResponse *r = (const Store__DeliverResponse *)resp;
		job->result = (Store__DeliverResponse)STORE__DELIVER_RESPONSE__INIT;
		if (r != NULL) {
			job->result.uid = r->uid;
			job->result.uidvalidity = r->uidvalidity;
			job->result.duplicate = r->duplicate;
		}
		delivery__mark_done(job);
		return;
	} else if (mail_error_info(status)->temporary) {
		job->deferred[i] = status;
		job->n_deferred++;
	} else {
		/* TODO(dsn): generate a bounce (RFC 3464) to the envelope sender;
		 * for now the recipient is logged and recorded done. */
		log_event(LOG_WARN, "queue",
			  "event=bounce_needed qid=%s rcpt=%s status=%s from=%s",
			  job->qid, delivery__rcpt(job, i, q, sizeof q),
			  mail_error_info(status)->name,
			  job->msg->envelope->mail_from[0] ? "set" : "null");
		job->bounced = 1;
		delivery__mark_done(job);
		return;
	}
	job->next_rcpt = i + 1;
	delivery__next(job);
}

/* Send the next recipient not yet done, or finish the attempt. */
static void delivery__next(struct delivery_job *job)
{
	const Queue__EnqueueRequest *env = job->msg->envelope;
	size_t i = job->next_rcpt;
	while (i < env->n_rcpt_to && job->msg->delivered[i])
		i++;
	while (i < env->n_rcpt_to && i < env->n_rcpt_remote && env->rcpt_remote[i] &&
	       !job->msg->delivered[i]) {
		/* outbound delivery does not exist yet: the recipient waits,
		 * deferred and visible in the queue (docs/security.md) */
		char q[300];
		job->deferred[i] = MAIL_ERR_UNAVAILABLE;
		job->n_deferred++;
		log_event(LOG_INFO, "queue", "event=outbound_waiting qid=%s rcpt=%s", job->qid,
			  delivery__rcpt(job, i, q, sizeof q));
		i++;
		while (i < env->n_rcpt_to && job->msg->delivered[i])
			i++;
	}
	if (i >= env->n_rcpt_to) {
		delivery__finish(job);
		return;
	}
	job->current = i;
	char delivery_id[QUEUE_ID_MAX + 24];
	snprintf(delivery_id, sizeof delivery_id, "%s/%zu", job->qid, i);
	Store__DeliverRequest req = STORE__DELIVER_REQUEST__INIT;
	req.user = env->rcpt_to[i];
	req.mailbox = "";
	req.delivery_id = delivery_id;
	req.body = env->body;
	req.internal_date = env->received_at;
	store_client_deliver(job->d->client, &req, delivery__deliver_cb, job);
}

/* queue_sched_ops.deliver */
static void delivery__start(void *ctx, const char *queue_id, uint32_t attempt)
{
	queue_delivery *d = ctx;
	const char *error;
	if (!d->journal->may_deliver(d->journal_ctx, queue_id)) {
		/* Another node leads its partition now (or none yet: the
		 * leader's take-over schedules it again). */
		queue_sched_done(d->sched, queue_id, QUEUE_SCHED_FINISHED);
		return;
	}
	Queue__QueuedMessage *msg = NULL;
	int ret = queue_store_get(d->store, queue_id, &msg, &error);
	if (ret <= 0) {
		if (ret == 0) {
			/* Nothing stored under this id (already removed). */
			queue_sched_done(d->sched, queue_id, QUEUE_SCHED_FINISHED);
			return;
		}
		int64_t next_in = queue_sched_done(d->sched, queue_id, QUEUE_SCHED_RETRY);
		log_event(LOG_ERROR, "queue", "event=deferred qid=%s status=internal "
			  "error=\"%s\" next_in_ms=%lld", queue_id, error, (long long)next_in);
		return;
	}
	struct delivery_job *job = xcalloc(1, sizeof *job);
	job->d = d;
	job->msg = msg;
	job->deferred = xcalloc(msg->envelope->n_rcpt_to + 1, sizeof *job->deferred);
	strcpy(job->qid, queue_id);
	job->next = d->jobs;
	if (d->jobs != NULL)
		d->jobs->prev = job;
	d->jobs = job;
	if (attempt > 1)
		log_event(LOG_DEBUG, "queue", "event=attempt qid=%s attempt=%u", queue_id,
			  attempt);
	delivery__next(job);
}

/* ---- the direct journal: sync writes to the queue store ---------------- */

static void direct__mark_done(void *ctx, const char *queue_id, uint32_t rcpt_index,
			      queue_journal_cb *cb, void *arg)
{
	queue_delivery *d = ctx;
	const char *error;
	int ret = queue_store_mark_delivered(d->store, queue_id, rcpt_index, &error);
	if (ret < 0)
		log_event(LOG_ERROR, "queue", "event=store_write_failed qid=%s error=\"%s\"",
			  queue_id, error);
	cb(ret < 0 ? MAIL_ERR_INTERNAL : MAIL_OK, arg);
}

static void direct__remove(void *ctx, const char *queue_id, queue_journal_cb *cb, void *arg)
{
	queue_delivery *d = ctx;
	const char *error;
	int ret = queue_store_delete(d->store, queue_id, &error);
	if (ret < 0)
		log_event(LOG_ERROR, "queue", "event=store_write_failed qid=%s error=\"%s\"",
			  queue_id, error);
	cb(ret < 0 ? MAIL_ERR_INTERNAL : MAIL_OK, arg);
}

static int direct__may_deliver(void *ctx, const char *queue_id)
{
	(void)ctx;
	(void)queue_id;
	return 1;
}

static const struct queue_journal direct_journal = {
	direct__mark_done, direct__remove, direct__may_deliver
};

queue_delivery *queue_delivery_create(uv_loop_t *loop, const struct queue_sched_settings *set,
				      queue_store *store, store_client *client,
				      const struct queue_journal *journal, void *journal_ctx)
{
	queue_delivery *d = xcalloc(1, sizeof *d);
	d->loop = loop;
	d->store = store;
	d->client = client;
	d->journal = journal != NULL ? journal : &direct_journal;
	d->journal_ctx = journal != NULL ? journal_ctx : d;
	d->ops.deliver = delivery__start;
	d->sched = queue_sched_create(loop, set, &d->ops, d);
	return d;
}

void queue_delivery_enqueued(queue_delivery *d, const char *queue_id)
{
	if (!d->stopping)
		queue_sched_add(d->sched, queue_id, 0);
}

static void delivery__recover_cb(const Queue__QueuedMessage *msg, void *arg)
{
	void **args = arg;
	queue_delivery *d = args[0];
	int *count = args[1];
	const char *qid = msg->envelope->queue_id;
	size_t pending = 0;
	for (size_t i = 0; i < msg->n_delivered; i++)
		pending += !msg->delivered[i];
	if (pending == 0) {
		/* Crashed after the last "done" flag, before the delete. */
		const char *error;
		if (queue_store_delete(d->store, qid, &error) == 0) {
			log_event(LOG_INFO, "queue", "event=removed qid=%s reason=recovered", qid);
			return;
		}
		log_event(LOG_ERROR, "queue", "event=remove_failed qid=%s error=%s", qid, error);
	}
	log_event(LOG_INFO, "queue", "event=recovered qid=%s rcpts=%zu pending=%zu", qid,
		  msg->envelope->n_rcpt_to, pending);
	queue_sched_add(d->sched, qid, 0);
	(*count)++;
}

/* Recovery at start (Postfix's qmgr_post_init in spirit).
 *
 * Why every stored message is rescheduled at once: a message leaves the store
 * only after all its recipients are done, so every message found here is
 * undelivered to at least one recipient (or crashed between its last flag
 * and its delete: that one is deleted now). Recipients whose done flag is set
 * are skipped by the attempt. A recipient whose delivery reached the store
 * but whose flag was not written yet (crash in between, or an answer lost
 * with the connection) is delivered again with the same delivery_id and
 * deduplicated by the store, so that duplicate window is closed by
 * idempotency. Attempt counters restart at zero: backoff state is not worth
 * a sync write per failure. */
int queue_recover(queue_delivery *d, const char **error_r)
{
	int count = 0;
	void *args[2] = { d, &count };
	if (queue_store_load_all(d->store, delivery__recover_cb, args, error_r) < 0)
		return -1;
	log_event(LOG_INFO, "queue", "event=recovery_done scheduled=%d", count);
	return count;
}

struct take_over_ctx {
	queue_delivery *d;
	queue_delivery_filter *mine;
	void *arg;
	int count;
};

static int delivery__take_over_keep(const char *queue_id, void *arg)
{
	struct take_over_ctx *t = arg;
	return t->mine(queue_id, t->arg);
}

static void delivery__take_over_cb(const Queue__QueuedMessage *msg, void *arg)
{
	struct take_over_ctx *t = arg;
	const char *qid = msg->envelope->queue_id;
	if (queue_sched_add(t->d->sched, qid, 0) != 1)
		return;
	size_t pending = 0;
	for (size_t i = 0; i < msg->n_delivered; i++)
		pending += !msg->delivered[i];
	log_event(LOG_INFO, "queue", "event=recovered qid=%s rcpts=%zu pending=%zu reason=take_over",
		  qid, msg->envelope->n_rcpt_to, pending);
	t->count++;
}

/* A node that takes a partition over finds its undelivered messages in its
 * own store: it applied every committed entry (that is what leading
 * means), so the store holds every acknowledged message not yet removed.
 * Recipients already done are skipped by the attempt; one delivered by the
 * old leader but not yet recorded is deduplicated by the store. */
int queue_delivery_take_over(queue_delivery *d, queue_delivery_filter *mine, void *arg,
			     const char **error_r)
{
	struct take_over_ctx t = { d, mine, arg, 0 };
	if (d->stopping)
		return 0;
	if (queue_store_load_if(d->store, delivery__take_over_keep, delivery__take_over_cb, &t,
				error_r) < 0)
		return -1;
	return t.count;
}

size_t queue_delivery_release(queue_delivery *d, queue_delivery_filter *mine, void *arg)
{
	return d->stopping ? 0 : queue_sched_expedite(d->sched, mine, arg);
}

void queue_delivery_stop(queue_delivery *d)
{
	d->stopping = 1;
}

void queue_delivery_destroy(queue_delivery **dp)
{
	queue_delivery *d = *dp;
	if (d == NULL)
		return;
	/* Jobs whose answer never came (the client is gone): the messages
	 * stay in the store for the next start. */
	while (d->jobs != NULL)
		delivery__job_free(d->jobs);
	queue_sched_destroy(&d->sched);
	free(d);
	*dp = NULL;
}

size_t queue_delivery_pending(const queue_delivery *d)
{
	return queue_sched_count(d->sched);
}
