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
#include <strings.h>

#include "dsn-report.h"
#include "log.h"
#include "mail-error.h"
#include "outbound.h"
#include "queue-dsn.h"
#include "util.h"
#include "xalloc.h"

#define RETRY_MAX 32

/* What this attempt found for one recipient (status PENDING: nothing). */
struct fresh {
	Queue__RcptStatus status;
	uint32_t code;
	char enh[SMTPC_ENH_MAX];
	char text[SMTPC_TEXT_MAX];
	char mta[OUTBOUND_MTA_MAX];
	int expired;
};

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
	struct fresh *out;  /* per recipient: this attempt's outcome to record */
	int remote_started; /* the remote recipients were handed to outbound */
	outbound_job *ob_job;
	struct outbound_msg om;
	struct outbound_rcpt *orcpts;
	size_t *orcpt_idx;
	buf params;         /* the DSN parameters of om, NUL-separated */
	/* what conclude recorded, for its callback */
	int pending_after, held_after;
	uint64_t retry_ms;  /* 0: the scheduler's backoff */
	/* an administrator's action asked while the attempt ran */
	Queue__QueueAction action;
	queue_journal_cb *action_cb;
	void *action_arg;
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
	outbound *ob;              /* NULL: remote recipients wait */
	struct queue_outbound_settings oset;
	uint32_t retry[RETRY_MAX];
	char *reporting_mta;
	/* outbound results per destination domain (metrics) */
	struct domain_count {
		char domain[64];
		uint64_t sent, deferred, failed;
	} domains[DELIVERY_DOMAINS_MAX + 1]; /* the last one: "_other" */
	size_t n_domains;
	/* recipients the store refused over quota (issue 12) */
	uint64_t quota_refusals;
};

static void delivery__quota_refused(queue_delivery *d)
{
	d->quota_refusals++;
}

/* The counters of rcpt's domain. */
static struct domain_count *delivery__domain(queue_delivery *d, const char *rcpt)
{
	const char *at = strrchr(rcpt, '@');
	const char *dom = at != NULL ? at + 1 : "";
	for (size_t i = 0; i < d->n_domains; i++)
		if (strcasecmp(d->domains[i].domain, dom) == 0)
			return &d->domains[i];
	if (d->n_domains >= DELIVERY_DOMAINS_MAX || strlen(dom) >= sizeof d->domains[0].domain ||
	    !util_domain_valid(dom)) {
		snprintf(d->domains[DELIVERY_DOMAINS_MAX].domain, sizeof d->domains[0].domain,
			 "_other");
		return &d->domains[DELIVERY_DOMAINS_MAX];
	}
	struct domain_count *c = &d->domains[d->n_domains++];
	for (size_t i = 0; dom[i] && i < sizeof c->domain - 1; i++)
		c->domain[i] = (char)(dom[i] >= 'A' && dom[i] <= 'Z' ? dom[i] - 'A' + 'a' : dom[i]);
	return c;
}

static void delivery__next(struct delivery_job *job);
static void delivery__log_done(struct delivery_job *job);
static void delivery__local_failed(struct delivery_job *job, size_t i, int status);
static void delivery__after_local(struct delivery_job *job);
static void delivery__after_job(queue_delivery *d, const char *qid, Queue__QueueAction action,
				queue_journal_cb *cb, void *arg);

static void delivery__job_free(struct delivery_job *job)
{
	queue_delivery *d = job->d;
	outbound_job_cancel(&job->ob_job);
	/* an administrator's action asked while the attempt ran goes on alone */
	char qid[QUEUE_ID_MAX + 1];
	strcpy(qid, job->qid);
	Queue__QueueAction action = job->action;
	queue_journal_cb *action_cb = job->action_cb;
	void *action_arg = job->action_arg;
	if (job->prev != NULL)
		job->prev->next = job->next;
	else
		d->jobs = job->next;
	if (job->next != NULL)
		job->next->prev = job->prev;
	queue_store_message_free(&job->msg);
	free(job->deferred);
	free(job->out);
	free(job->orcpts);
	free(job->orcpt_idx);
	buf_deinit(&job->params);
	free(job);
	if (action_cb == NULL)
		return;
	if (d->stopping)
		action_cb(MAIL_ERR_UNAVAILABLE, action_arg);
	else
		delivery__after_job(d, qid, action, action_cb, action_arg);
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

/* The ends a journal call's answer can make of the attempt: shutting down
 * (the job is dropped; the message stays), another node leads now (handed
 * over), or not recorded (event=<what>_failed; the next attempt does it
 * again). Returns 1 when it ended the job, 0 on MAIL_OK. */
static int delivery__journal_end(struct delivery_job *job, int status, const char *what)
{
	queue_delivery *d = job->d;
	if (d->stopping) {
		delivery__job_free(job);
		return 1;
	}
	if (status == MAIL_ERR_NOT_PRIMARY) {
		delivery__hand_over(job);
		return 1;
	}
	if (status == MAIL_OK)
		return 0;
	log_event(LOG_ERROR, "queue", "event=%s_failed qid=%s status=%s", what, job->qid,
		  mail_error_info(status)->name);
	queue_sched_done(d->sched, job->qid, QUEUE_SCHED_RETRY);
	delivery__job_free(job);
	return 1;
}

static void delivery__removed_cb(int status, void *arg)
{
	struct delivery_job *job = arg;
	/* A failed removal is retried by the next attempt (and, when it carried
	 * the last recipient's "done", that delivery: deduplicated). */
	if (delivery__journal_end(job, status, "remove"))
		return;
	if (job->fused)
		delivery__log_done(job);
	log_event(LOG_INFO, "queue", "event=removed qid=%s", job->qid);
	queue_sched_done(job->d->sched, job->qid, QUEUE_SCHED_FINISHED);
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
		/* failed for good: recorded with the attempt's outcome, which
		 * queues the DSN (delivery__conclude) */
		log_event(LOG_WARN, "queue", "event=failed qid=%s rcpt=%s status=%s", job->qid,
			  delivery__rcpt(job, i, q, sizeof q), mail_error_info(status)->name);
		delivery__local_failed(job, i, status);
		return;
	}
	job->next_rcpt = i + 1;
	delivery__next(job);
}

/* ---- outcomes: failures, remote delivery, the state entry, DSNs ---------- */

static void fresh_set(struct fresh *f, Queue__RcptStatus status, uint32_t code, const char *enh,
		      const char *text, const char *mta)
{
	f->status = status;
	f->code = code;
	snprintf(f->enh, sizeof f->enh, "%s", enh);
	snprintf(f->text, sizeof f->text, "%s", text);
	snprintf(f->mta, sizeof f->mta, "%s", mta != NULL ? mta : "");
}

/* The store refused local recipient i for good. */
static void delivery__local_failed(struct delivery_job *job, size_t i, int status)
{
	const char *enh = "5.0.0", *text = mail_error_info(status)->name;
	uint32_t code = 550;
	switch (status) {
	case MAIL_ERR_NOT_FOUND:
		enh = "5.1.1";
		text = "no such mailbox here";
		break;
	case MAIL_ERR_TOO_BIG:
		code = 552;
		enh = "5.3.4";
		text = "message too big for the mailbox";
		break;
	case MAIL_ERR_LIMIT:
		code = 552;
		enh = "5.2.2";
		text = "mailbox full";
		break;
	case MAIL_ERR_QUOTA:
		/* the mailbox filled between the frontend's 250 and this
		 * delivery: bounced at once (docs/operations.md, "Quotas") */
		code = 552;
		enh = "5.2.2";
		text = "mailbox full (over quota)";
		delivery__quota_refused(job->d);
		break;
	default:
		break;
	}
	fresh_set(&job->out[i], QUEUE__RCPT_STATUS__RCPT_FAILED, code, enh, text, NULL);
	job->next_rcpt = i + 1;
	delivery__next(job);
}

static void delivery__conclude(struct delivery_job *job);

static void delivery__ob_cb(struct outbound_msg *om, void *arg)
{
	struct delivery_job *job = arg;
	job->ob_job = NULL;
	for (size_t k = 0; k < om->n_rcpts; k++) {
		const struct outbound_rcpt *or = &om->rcpts[k];
		const struct smtpc_result *r = &or->result;
		Queue__RcptStatus st = r->status == SMTPC_OK ? QUEUE__RCPT_STATUS__RCPT_DELIVERED
				       : r->status == SMTPC_PERM ? QUEUE__RCPT_STATUS__RCPT_FAILED
				       : QUEUE__RCPT_STATUS__RCPT_DEFERRED;
		const char *enh = r->enh[0] ? r->enh
				  : st == QUEUE__RCPT_STATUS__RCPT_DELIVERED ? "2.0.0"
				  : st == QUEUE__RCPT_STATUS__RCPT_FAILED ? "5.0.0" : "4.0.0";
		fresh_set(&job->out[job->orcpt_idx[k]], st, (uint32_t)r->code, enh, r->text,
			  or->remote_mta);
		struct domain_count *dc = delivery__domain(job->d, or->addr);
		if (st == QUEUE__RCPT_STATUS__RCPT_DELIVERED)
			dc->sent++;
		else if (st == QUEUE__RCPT_STATUS__RCPT_FAILED)
			dc->failed++;
		else
			dc->deferred++;
		char q[300], t[600];
		log_event(st == QUEUE__RCPT_STATUS__RCPT_DELIVERED ? LOG_INFO : LOG_WARN, "queue",
			  "event=%s qid=%s rcpt=%s relay=%s stage=%s code=%d enh=%s text=%s",
			  st == QUEUE__RCPT_STATUS__RCPT_DELIVERED ? "sent"
			  : st == QUEUE__RCPT_STATUS__RCPT_FAILED ? "failed" : "deferred_remote",
			  job->qid, delivery__rcpt(job, job->orcpt_idx[k], q, sizeof q),
			  or->remote_mta[0] ? or->remote_mta : "-", smtpc_stage_name(r->stage),
			  r->code, enh, log_quote(t, sizeof t, r->text, strlen(r->text)));
	}
	delivery__conclude(job);
}

static int delivery__ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return 0;
	return 1;
}

/* The local recipients are done with: hand the remote ones to outbound. */
static void delivery__after_local(struct delivery_job *job)
{
	queue_delivery *d = job->d;
	const Queue__EnqueueRequest *env = job->msg->envelope;
	size_t n = 0;
	for (size_t i = 0; d->ob != NULL && i < env->n_rcpt_to && i < env->n_rcpt_remote; i++)
		n += env->rcpt_remote[i] && !job->msg->delivered[i];
	if (n == 0 || job->remote_started) {
		delivery__conclude(job);
		return;
	}
	if (!d->journal->may_deliver(d->journal_ctx, job->qid)) {
		/* the lead moved while the local recipients were delivered:
		 * the new primary sends the remote ones (never both of us) */
		delivery__hand_over(job);
		return;
	}
	job->remote_started = 1;
	job->orcpts = xcalloc(n, sizeof *job->orcpts);
	job->orcpt_idx = xcalloc(n, sizeof *job->orcpt_idx);
	/* the parameters first (the buffer may move while it grows) */
	struct dsn_mail_params mp;
	queue_dsn_mail(env, &mp);
	dsn_mail_params_format(&mp, &job->params);
	size_t mail_len = job->params.len;
	buf_append(&job->params, "", 1);
	size_t *offs = xcalloc(n, sizeof *offs);
	int utf8 = !delivery__ascii(env->mail_from);
	size_t k = 0;
	for (size_t i = 0; i < env->n_rcpt_to && i < env->n_rcpt_remote; i++) {
		if (!env->rcpt_remote[i] || job->msg->delivered[i])
			continue;
		utf8 |= !delivery__ascii(env->rcpt_to[i]);
		struct dsn_rcpt_params rp;
		queue_dsn_rcpt(env, i, &rp);
		offs[k] = job->params.len;
		(void)dsn_rcpt_params_format(&rp, 0, &job->params);
		buf_append(&job->params, "", 1);
		job->orcpt_idx[k] = i;
		job->orcpts[k].addr = env->rcpt_to[i];
		k++;
	}
	const char *base = (const char *)job->params.data;
	for (k = 0; k < n; k++)
		job->orcpts[k].dsn_params = base[offs[k]] == ' ' ? base + offs[k] + 1 : NULL;
	free(offs);
	int eight_bit = 0;
	for (size_t b = 0; b < env->body.len && !eight_bit; b++)
		eight_bit = env->body.data[b] >= 0x80;
	const char *sender = env->auth_user[0] ? env->auth_user : env->mail_from;
	const char *at = strrchr(sender, '@');
	job->om = (struct outbound_msg){
		.queue_id = job->qid,
		.mail_from = env->mail_from,
		.mail_params = mail_len > 0 ? base + 1 : NULL,
		.sender_domain = at != NULL ? at + 1 : "",
		.body = env->body.data,
		.body_len = env->body.len,
		.eight_bit = eight_bit,
		.smtputf8 = utf8,
		.rcpts = job->orcpts,
		.n_rcpts = n,
	};
	job->ob_job = outbound_deliver(d->ob, &job->om, delivery__ob_cb, job);
}

/* A queue id for a DSN about job's message, in the same partition (so the
 * entry that records the outcome can store it), derived from the queue id
 * and the attempt: the same attempt recorded again makes the same id, which
 * the store keeps once. */
static void delivery__dsn_id(struct delivery_job *job, uint32_t attempt, enum dsn_action action,
			     char *out, size_t size)
{
	queue_delivery *d = job->d;
	for (uint32_t k = 0;; k++) {
		char seed[QUEUE_ID_MAX + 48];
		int n = snprintf(seed, sizeof seed, "%s/dsn/%u/%d/%u", job->qid, attempt,
				 (int)action, k);
		uint64_t h1 = util_hash64(seed, (size_t)n);
		uint64_t h2 = util_hash64(&h1, sizeof h1);
		snprintf(out, size, "D%016llx%016llx", (unsigned long long)h1,
			 (unsigned long long)h2);
		if (d->journal->same_partition(d->journal_ctx, out, job->qid) || k >= 100000)
			return;
	}
}

/* The DSN "failed" for the recipients of st marked in which[] (NULL when
 * none is due), as a message to queue: null sender, to the envelope
 * sender. Its fields point into job and buffers the caller frees:
 * *body_r (a buf) and the envelope's arrays. */
struct dsn_out {
	Queue__QueuedMessage rec;
	Queue__EnqueueRequest env;
	char *rcpt;
	protobuf_c_boolean remote;
	buf body;
	char id[40];
};

static struct dsn_out *delivery__dsn(struct delivery_job *job, const int *which,
				     uint32_t attempt, int64_t now, enum dsn_action action)
{
	queue_delivery *d = job->d;
	const Queue__EnqueueRequest *env = job->msg->envelope;
	size_t n = 0;
	for (size_t i = 0; i < env->n_rcpt_to; i++)
		n += which[i];
	if (n == 0)
		return NULL;
	struct dsn_recipient *rs = xcalloc(n, sizeof *rs);
	struct dsn_rcpt_params *rps = xcalloc(n, sizeof *rps);
	char (*status)[SMTPC_ENH_MAX] = xcalloc(n, sizeof *status);
	char (*diag)[SMTPC_TEXT_MAX + 16] = xcalloc(n, sizeof *diag);
	size_t k = 0;
	for (size_t i = 0; i < env->n_rcpt_to; i++) {
		if (!which[i])
			continue;
		const struct fresh *f = &job->out[i];
		queue_dsn_rcpt(env, i, &rps[k]);
		snprintf(status[k], sizeof status[k], "%s",
			 f->enh[0] == '5' || f->enh[0] == '4' ? f->enh
			 : action == DSN_ACTION_DELAYED ? "4.0.0" : "5.0.0");
		if (f->code != 0)
			snprintf(diag[k], sizeof diag[k], "%u %s %.*s", f->code, f->enh,
				 (int)(sizeof diag[k] - 32), f->text);
		rs[k] = (struct dsn_recipient){
			.final_recipient = env->rcpt_to[i],
			.orcpt = &rps[k].orcpt,
			.action = action,
			.status = status[k],
			.remote_mta = f->mta[0] ? f->mta : NULL,
			.diagnostic = f->code != 0 ? diag[k] : NULL,
			.last_attempt = now / 1000,
			.will_retry_until = action == DSN_ACTION_DELAYED
						    ? (env->received_at / 1000 + d->oset.expiry_s)
						    : 0,
			.final_log_id = job->qid,
		};
		k++;
	}
	struct dsn_mail_params mp;
	queue_dsn_mail(env, &mp);
	struct dsn_out *o = xcalloc(1, sizeof *o);
	buf_init(&o->body);
	char received[200];
	int64_t when = now / 1000;
	delivery__dsn_id(job, attempt, action, o->id, sizeof o->id);
	/* a Received: of our own, like every message we accept */
	struct tm tm;
	time_t tt = (time_t)when;
	gmtime_r(&tt, &tm);
	strftime(received, sizeof received, "%a, %d %b %Y %H:%M:%S +0000", &tm);
	buf_printf(&o->body, "Received: by %s (mail queue) id %s; %s\r\n", d->reporting_mta, o->id,
		   received);
	size_t head = o->body.len;
	struct dsn_report r = {
		.reporting_mta = d->reporting_mta,
		.envelope_sender = env->mail_from,
		.mail_params = &mp,
		.smtputf8 = !delivery__ascii(env->mail_from),
		.arrival_date = env->received_at / 1000,
		.date = when,
		.rcpts = rs,
		.n_rcpts = n,
		.original = env->body.data,
		.original_len = env->body.len,
		.unique = o->id,
	};
	unsigned flags = 0;
	const char *error;
	int ret = dsn_report_compose(&r, NULL, &o->body, &flags, &error);
	free(rs);
	free(rps);
	free(status);
	free(diag);
	if (ret < 0 || o->body.len == head) {
		log_event(LOG_ERROR, "queue", "event=dsn_failed qid=%s error=\"%s\"", job->qid,
			  ret < 0 ? error : "empty");
		buf_deinit(&o->body);
		free(o);
		return NULL;
	}
	o->rcpt = xstrdup(env->mail_from);
	/* the sender is ours when the frontend said so (or, for records
	 * older than that, when it authenticated) */
	o->remote = !(env->sender_local || env->auth_user[0] != '\0');
	queue__enqueue_request__init(&o->env);
	o->env.queue_id = o->id;
	o->env.mail_from = "";
	o->env.n_rcpt_to = 1;
	o->env.rcpt_to = &o->rcpt;
	o->env.n_rcpt_remote = 1;
	o->env.rcpt_remote = &o->remote;
	o->env.body.data = o->body.data;
	o->env.body.len = o->body.len;
	o->env.received_at = now;
	o->env.helo = "";
	o->env.client_addr = "";
	o->env.session_id = job->qid;
	o->env.auth_user = "";
	o->env.envid = "";
	o->env.sender_local = !o->remote;
	queue__queued_message__init(&o->rec);
	o->rec.envelope = &o->env;
	o->rec.next_attempt_at = now;
	log_event(LOG_INFO, "queue", "event=dsn qid=%s dsn=%s action=%s rcpts=%zu to=%s", job->qid,
		  o->id, dsn_action_name(action), n, o->remote ? "remote" : "local");
	return o;
}

static void delivery__dsn_free(struct dsn_out **o)
{
	if (*o == NULL)
		return;
	buf_deinit(&(*o)->body);
	free((*o)->rcpt);
	free(*o);
	*o = NULL;
}

static void delivery__recorded_cb(int status, void *arg)
{
	struct delivery_job *job = arg;
	queue_delivery *d = job->d;
	/* not recorded: the next attempt does it again (remote recipients
	 * accepted meanwhile get the message twice: the window
	 * docs/outbound.md describes) */
	if (delivery__journal_end(job, status, "record"))
		return;
	if (job->pending_after == 0) {
		log_event(LOG_INFO, "queue", "event=removed qid=%s", job->qid);
		queue_sched_done(d->sched, job->qid, QUEUE_SCHED_FINISHED);
	} else if (job->held_after) {
		queue_sched_done(d->sched, job->qid, QUEUE_SCHED_FINISHED);
	} else if (job->retry_ms > 0) {
		queue_sched_retry_in(d->sched, job->qid, job->retry_ms);
		log_event(LOG_INFO, "queue", "event=deferred qid=%s pending=%d next_in_ms=%llu",
			  job->qid, job->pending_after, (unsigned long long)job->retry_ms);
	} else {
		queue_sched_done(d->sched, job->qid, QUEUE_SCHED_RETRY);
	}
	delivery__job_free(job);
}

/* The new state of msg: st_old's, with the recipients of fresh[] replaced. */
static void delivery__state_init(Queue__MessageState *st, const Queue__MessageState *old,
				 Queue__RcptOutcome **slots, Queue__RcptOutcome *space, size_t n,
				 const struct fresh *fresh, int64_t now)
{
	queue__message_state__init(st);
	st->rcpts = slots;
	if (old != NULL) {
		st->attempts = old->attempts;
		st->next_attempt_at = old->next_attempt_at;
		st->held = old->held;
		st->delay_warned = old->delay_warned;
		for (size_t i = 0; i < old->n_rcpts; i++) {
			const Queue__RcptOutcome *o = old->rcpts[i];
			if (o->index < n && (fresh == NULL ||
					     fresh[o->index].status == QUEUE__RCPT_STATUS__RCPT_PENDING))
				st->rcpts[st->n_rcpts++] = (Queue__RcptOutcome *)o;
		}
	}
	for (size_t i = 0; fresh != NULL && i < n; i++) {
		const struct fresh *f = &fresh[i];
		if (f->status == QUEUE__RCPT_STATUS__RCPT_PENDING)
			continue;
		Queue__RcptOutcome *o = &space[i];
		queue__rcpt_outcome__init(o);
		o->index = (uint32_t)i;
		o->status = f->status;
		o->code = f->code;
		o->enh = (char *)f->enh;
		o->text = (char *)f->text;
		o->remote_mta = (char *)f->mta;
		o->at = now;
		st->rcpts[st->n_rcpts++] = o;
	}
}

/* The attempt is over. With nothing new to record (local recipients only,
 * delivered or deferred) it ends as before; else one entry records every
 * recipient's outcome, the attempt count, the next attempt, and the DSN of
 * the recipients that failed. */
static void delivery__conclude(struct delivery_job *job)
{
	queue_delivery *d = job->d;
	const Queue__EnqueueRequest *env = job->msg->envelope;
	size_t n = env->n_rcpt_to;
	int fresh_any = 0;
	for (size_t i = 0; i < n; i++)
		fresh_any |= job->out[i].status != QUEUE__RCPT_STATUS__RCPT_PENDING;
	if (!fresh_any) {
		delivery__finish(job);
		return;
	}
	int64_t now = util_now_wall_ms();
	int expired = d->oset.expiry_s > 0 &&
		      now - env->received_at >= (int64_t)d->oset.expiry_s * 1000;
	int remote_deferred = 0;
	int *which = xcalloc(n + 1, sizeof *which);
	for (size_t i = 0; i < n; i++) {
		struct fresh *f = &job->out[i];
		if (f->status == QUEUE__RCPT_STATUS__RCPT_DEFERRED && expired) {
			char text[SMTPC_TEXT_MAX];
			snprintf(text, sizeof text, "delivery time expired; last error: %.*s",
				 (int)(sizeof text - 48), f->text);
			snprintf(f->text, sizeof f->text, "%s", text);
			if (f->enh[0] != '4')
				snprintf(f->enh, sizeof f->enh, "4.4.7");
			f->status = QUEUE__RCPT_STATUS__RCPT_FAILED;
			f->expired = 1;
		}
		remote_deferred |= f->status == QUEUE__RCPT_STATUS__RCPT_DEFERRED;
		if (f->status == QUEUE__RCPT_STATUS__RCPT_FAILED) {
			struct dsn_rcpt_params rp;
			queue_dsn_rcpt(env, i, &rp);
			which[i] = dsn_should_send(env->mail_from, rp.notify, DSN_EVENT_FAILURE);
		}
	}
	Queue__RcptOutcome **slots = xcalloc(2 * n + 1, sizeof *slots);
	Queue__RcptOutcome *space = xcalloc(n + 1, sizeof *space);
	Queue__MessageState st;
	delivery__state_init(&st, job->msg->state, slots, space, n, job->out, now);
	if (job->remote_started)
		st.attempts++;
	job->pending_after = 0;
	for (size_t i = 0; i < n; i++)
		job->pending_after += !job->msg->delivered[i] &&
				      job->out[i].status != QUEUE__RCPT_STATUS__RCPT_DELIVERED &&
				      job->out[i].status != QUEUE__RCPT_STATUS__RCPT_FAILED;
	job->retry_ms = 0;
	if (remote_deferred) {
		uint32_t a = st.attempts > 0 ? st.attempts : 1;
		size_t slot = a - 1 < d->oset.n_retry ? a - 1 : d->oset.n_retry - 1;
		job->retry_ms = (uint64_t)d->retry[slot] * 1000;
	}
	st.next_attempt_at = job->retry_ms > 0 ? now + (int64_t)job->retry_ms : 0;
	job->held_after = st.held;
	struct dsn_out *dsn = delivery__dsn(job, which, st.attempts, now, DSN_ACTION_FAILED);
	if (dsn == NULL && remote_deferred && env->delay_warning && !st.delay_warned &&
	    d->oset.delay_warning_s > 0 &&
	    now - env->received_at >= (int64_t)d->oset.delay_warning_s * 1000) {
		/* the tenant's one "delayed" report (RFC 3464 Action: delayed),
		 * for the recipients still deferred that want it */
		for (size_t i = 0; i < n; i++) {
			struct dsn_rcpt_params rp;
			queue_dsn_rcpt(env, i, &rp);
			which[i] = job->out[i].status == QUEUE__RCPT_STATUS__RCPT_DEFERRED &&
				   dsn_should_send(env->mail_from, rp.notify, DSN_EVENT_DELAY);
		}
		dsn = delivery__dsn(job, which, st.attempts, now, DSN_ACTION_DELAYED);
		st.delay_warned = 1; /* asked once, even when no recipient wanted it */
	}
	free(which);
	d->journal->record(d->journal_ctx, job->qid, &st, 0, dsn != NULL ? &dsn->rec : NULL,
			   delivery__recorded_cb, job);
	delivery__dsn_free(&dsn);
	free(slots);
	free(space);
}

/* Send the next recipient not yet done, or finish the attempt. */
static void delivery__next(struct delivery_job *job)
{
	const Queue__EnqueueRequest *env = job->msg->envelope;
	size_t i = job->next_rcpt;
	while (i < env->n_rcpt_to && job->msg->delivered[i])
		i++;
	while (job->d->ob != NULL && i < env->n_rcpt_to && i < env->n_rcpt_remote &&
	       (env->rcpt_remote[i] || job->msg->delivered[i])) {
		/* remote ones go together after the local ones */
		i++;
	}
	while (job->d->ob == NULL && i < env->n_rcpt_to && i < env->n_rcpt_remote &&
	       env->rcpt_remote[i] && !job->msg->delivered[i]) {
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
		delivery__after_local(job);
		return;
	}
	job->current = i;
	char delivery_id[QUEUE_ID_MAX + 24];
	snprintf(delivery_id, sizeof delivery_id, "%s/%zu", job->qid, i);
	Store__DeliverRequest req = STORE__DELIVER_REQUEST__INIT;
	req.user = env->rcpt_to[i];
	req.mailbox = "";
	if (i < env->n_rcpt_mailbox && env->rcpt_mailbox[i][0] != '\0') {
		req.mailbox = env->rcpt_mailbox[i];
		req.mailbox_fallback = 1;
	}
	if (i < env->n_rcpt_quota_storage)
		req.quota_storage = env->rcpt_quota_storage[i];
	if (i < env->n_rcpt_quota_messages)
		req.quota_messages = env->rcpt_quota_messages[i];
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
	job->out = xcalloc(msg->envelope->n_rcpt_to + 1, sizeof *job->out);
	buf_init(&job->params);
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

static void direct__record(void *ctx, const char *queue_id, const Queue__MessageState *st,
			   int remove, const Queue__QueuedMessage *dsn, queue_journal_cb *cb,
			   void *arg)
{
	queue_delivery *d = ctx;
	const char *error;
	int ret = queue_store_record(d->store, queue_id, st, remove, dsn, &error);
	if (ret < 0)
		log_event(LOG_ERROR, "queue", "event=store_write_failed qid=%s error=\"%s\"",
			  queue_id, error);
	else if (dsn != NULL)
		queue_delivery_enqueued(d, dsn->envelope->queue_id);
	cb(ret < 0 ? MAIL_ERR_INTERNAL : MAIL_OK, arg);
}

static int direct__same_partition(void *ctx, const char *a, const char *b)
{
	(void)ctx;
	(void)a;
	(void)b;
	return 1;
}

/* Unreplicated: one partition, always led. */
static uint32_t direct__partitions(void *ctx)
{
	(void)ctx;
	return 1;
}

static int direct__leads_partition(void *ctx, uint32_t p)
{
	(void)ctx;
	return p == 0;
}

static int direct__partition_of(void *ctx, const char *queue_id, uint32_t *p_r)
{
	(void)ctx;
	(void)queue_id;
	*p_r = 0;
	return 0;
}

static const struct queue_journal direct_journal = {
	direct__mark_done, direct__remove, direct__may_deliver, direct__record,
	direct__same_partition, direct__partitions, direct__leads_partition,
	direct__partition_of
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
	d->reporting_mta = xstrdup("localhost");
	d->oset.reporting_mta = d->reporting_mta;
	d->oset.n_retry = 1;
	d->retry[0] = 60;
	d->oset.retry_s = d->retry;
	d->oset.expiry_s = QUEUE_EXPIRY_S_DEFAULT;
	d->oset.delay_warning_s = QUEUE_DELAY_WARNING_S_DEFAULT;
	d->sched = queue_sched_create(loop, set, &d->ops, d);
	return d;
}

void queue_delivery_enqueued(queue_delivery *d, const char *queue_id)
{
	if (!d->stopping && queue_sched_add(d->sched, queue_id, 0) == 1)
		queue_sched_set_born(d->sched, queue_id, util_now_wall_ms());
}

void queue_delivery_metrics(const queue_delivery *d, buf *out, const char *labels)
{
	const char *sep = labels[0] ? "," : "";
	buf_printf(out, "# TYPE mail_outbound_rcpts_total counter\n");
	for (size_t i = 0; i <= DELIVERY_DOMAINS_MAX; i++) {
		const struct domain_count *c = &d->domains[i];
		if (i >= d->n_domains && i < DELIVERY_DOMAINS_MAX)
			continue;
		if (c->domain[0] == '\0')
			continue;
		static const char *const names[] = { "sent", "deferred", "failed" };
		const uint64_t v[] = { c->sent, c->deferred, c->failed };
		for (int k = 0; k < 3; k++)
			buf_printf(out, "mail_outbound_rcpts_total{%s%sdomain=\"%s\",result=\"%s\"} "
				   "%llu\n", labels, sep, c->domain, names[k],
				   (unsigned long long)v[k]);
	}
	buf_printf(out, "# TYPE mail_quota_refusals_total counter\n"
		   "mail_quota_refusals_total{%s%swhere=\"delivery\"} %llu\n", labels, sep,
		   (unsigned long long)d->quota_refusals);
	int64_t oldest = queue_sched_oldest_born(d->sched);
	int64_t age = oldest > 0 ? (util_now_wall_ms() - oldest) / 1000 : 0;
	buf_printf(out, "# TYPE mail_queue_oldest_seconds gauge\nmail_queue_oldest_seconds{%s} "
		   "%lld\n", labels, (long long)(age > 0 ? age : 0));
}

/* Schedule a stored message as its replicated state says: not at all when
 * held, else at its next attempt time (now when that has passed). Returns
 * queue_sched_add's result (0 also for held). */
static int delivery__schedule_stored(queue_delivery *d, const Queue__QueuedMessage *msg)
{
	const Queue__MessageState *st = msg->state;
	if (st != NULL && st->held)
		return 0;
	int64_t delay = st != NULL ? st->next_attempt_at - util_now_wall_ms() : 0;
	int ret = queue_sched_add(d->sched, msg->envelope->queue_id,
				  delay > 0 ? (uint64_t)delay : 0);
	if (ret == 1)
		queue_sched_set_born(d->sched, msg->envelope->queue_id, msg->envelope->received_at);
	return ret;
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
	if (delivery__schedule_stored(d, msg) == 1)
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
	if (delivery__schedule_stored(t->d, msg) != 1)
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
	free(d->reporting_mta);
	free(d);
	*dp = NULL;
}

void queue_delivery_set_outbound(queue_delivery *d, outbound *ob,
				 const struct queue_outbound_settings *set)
{
	d->ob = ob;
	d->oset = *set;
	d->oset.n_retry = set->n_retry < RETRY_MAX ? set->n_retry : RETRY_MAX;
	for (size_t i = 0; i < d->oset.n_retry; i++)
		d->retry[i] = set->retry_s[i];
	if (d->oset.n_retry == 0) {
		d->retry[0] = 60;
		d->oset.n_retry = 1;
	}
	d->oset.retry_s = d->retry;
	free(d->reporting_mta);
	d->reporting_mta = xstrdup(set->reporting_mta != NULL ? set->reporting_mta : "localhost");
	d->oset.reporting_mta = d->reporting_mta;
}

int queue_retry_schedule_parse(const char *text, uint32_t *out, size_t max)
{
	size_t n = 0;
	const char *p = text;
	while (*p) {
		char *end;
		unsigned long v = strtoul(p, &end, 10);
		if (end == p || v < 1 || v > 86400 || n >= max || n >= RETRY_MAX)
			return -1;
		out[n++] = (uint32_t)v;
		p = end;
		if (*p == ',')
			p++;
		else if (*p != '\0')
			return -1;
	}
	return n > 0 ? (int)n : -1;
}

/* ---- administration ------------------------------------------------------- */

const struct queue_journal *queue_delivery_journal(const queue_delivery *d, void **ctx_r)
{
	*ctx_r = d->journal_ctx;
	return d->journal;
}

int queue_delivery_leads(queue_delivery *d, const char *queue_id)
{
	return d->journal->may_deliver(d->journal_ctx, queue_id);
}

int queue_delivery_running(const queue_delivery *d, const char *queue_id)
{
	return queue_sched_running(d->sched, queue_id);
}

struct admin_op {
	queue_delivery *d;
	Queue__QueueAction action;
	queue_journal_cb *cb;
	void *arg;
	char qid[QUEUE_ID_MAX + 1];
};

static void delivery__admin_cb(int status, void *arg)
{
	struct admin_op *op = arg;
	queue_delivery *d = op->d;
	if (status == MAIL_OK && !d->stopping) {
		switch (op->action) {
		case QUEUE__QUEUE_ACTION__ACTION_RETRY:
		case QUEUE__QUEUE_ACTION__ACTION_RELEASE:
			if (queue_sched_forget(d->sched, op->qid) >= 0)
				queue_sched_add(d->sched, op->qid, 0);
			break;
		default:
			queue_sched_forget(d->sched, op->qid);
			break;
		}
		log_event(LOG_INFO, "queue", "event=admin qid=%s action=%d", op->qid,
			  (int)op->action);
	}
	op->cb(status, op->arg);
	free(op);
}

/* The action on a message no attempt is running for. */
static void delivery__after_job(queue_delivery *d, const char *qid, Queue__QueueAction action,
				queue_journal_cb *cb, void *arg)
{
	const char *error;
	if (!d->journal->may_deliver(d->journal_ctx, qid)) {
		cb(MAIL_ERR_NOT_PRIMARY, arg);
		return;
	}
	Queue__QueuedMessage *msg = NULL;
	int ret = queue_store_get(d->store, qid, &msg, &error);
	if (ret <= 0) {
		cb(ret == 0 ? MAIL_ERR_NOT_FOUND : MAIL_ERR_INTERNAL, arg);
		return;
	}
	size_t n = msg->envelope->n_rcpt_to;
	Queue__RcptOutcome **slots = xcalloc(2 * n + 1, sizeof *slots);
	Queue__RcptOutcome *space = xcalloc(n + 1, sizeof *space);
	Queue__MessageState st;
	int64_t now = util_now_wall_ms();
	struct delivery_job *fake = NULL;
	struct dsn_out *dsn = NULL;
	int remove = 0;
	switch (action) {
	case QUEUE__QUEUE_ACTION__ACTION_RETRY:
		delivery__state_init(&st, msg->state, slots, space, n, NULL, now);
		st.next_attempt_at = 0;
		break;
	case QUEUE__QUEUE_ACTION__ACTION_HOLD:
		delivery__state_init(&st, msg->state, slots, space, n, NULL, now);
		st.held = 1;
		break;
	case QUEUE__QUEUE_ACTION__ACTION_RELEASE:
		delivery__state_init(&st, msg->state, slots, space, n, NULL, now);
		st.held = 0;
		st.next_attempt_at = 0;
		break;
	case QUEUE__QUEUE_ACTION__ACTION_DELETE:
	case QUEUE__QUEUE_ACTION__ACTION_DELETE_BOUNCE:
		remove = 1;
		delivery__state_init(&st, msg->state, slots, space, n, NULL, now);
		if (action == QUEUE__QUEUE_ACTION__ACTION_DELETE_BOUNCE) {
			/* a job-shaped view of the message for the DSN */
			fake = xcalloc(1, sizeof *fake);
			fake->d = d;
			fake->msg = msg;
			fake->out = xcalloc(n + 1, sizeof *fake->out);
			strcpy(fake->qid, qid);
			int *which = xcalloc(n + 1, sizeof *which);
			for (size_t i = 0; i < n; i++) {
				if (msg->delivered[i])
					continue;
				fresh_set(&fake->out[i], QUEUE__RCPT_STATUS__RCPT_FAILED, 0,
					  "5.3.0", "deleted from the queue by the administrator",
					  NULL);
				struct dsn_rcpt_params rp;
				queue_dsn_rcpt(msg->envelope, i, &rp);
				which[i] = dsn_should_send(msg->envelope->mail_from, rp.notify,
							   DSN_EVENT_FAILURE);
			}
			dsn = delivery__dsn(fake, which, st.attempts + 1000, now,
					    DSN_ACTION_FAILED);
			free(which);
		}
		break;
	default:
		free(slots);
		free(space);
		queue_store_message_free(&msg);
		cb(MAIL_ERR_PARAMS, arg);
		return;
	}
	struct admin_op *op = xcalloc(1, sizeof *op);
	*op = (struct admin_op){ d, action, cb, arg, "" };
	strcpy(op->qid, qid);
	d->journal->record(d->journal_ctx, qid, remove ? NULL : &st, remove,
			   dsn != NULL ? &dsn->rec : NULL, delivery__admin_cb, op);
	delivery__dsn_free(&dsn);
	if (fake != NULL) {
		free(fake->out);
		free(fake);
	}
	free(slots);
	free(space);
	queue_store_message_free(&msg);
}

void queue_delivery_action(queue_delivery *d, const char *queue_id, Queue__QueueAction action,
			   queue_journal_cb *cb, void *arg)
{
	if (d->stopping) {
		cb(MAIL_ERR_UNAVAILABLE, arg);
		return;
	}
	if (!queue_store_id_valid(queue_id)) {
		cb(MAIL_ERR_NOT_FOUND, arg);
		return;
	}
	for (struct delivery_job *job = d->jobs; job != NULL; job = job->next) {
		if (strcmp(job->qid, queue_id) != 0)
			continue;
		if (job->action_cb != NULL) {
			cb(MAIL_ERR_TEMP, arg); /* one at a time */
			return;
		}
		job->action = action;
		job->action_cb = cb;
		job->action_arg = arg;
		return;
	}
	delivery__after_job(d, queue_id, action, cb, arg);
}

size_t queue_delivery_pending(const queue_delivery *d)
{
	return queue_sched_count(d->sched);
}
