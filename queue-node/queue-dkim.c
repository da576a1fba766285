/* queue-dkim.c: see queue-dkim.h.
 *
 * A job is one queue_dkim_sign(). It answers in one of two ways:
 *   - signed on the pool: work (qd__work) then completion (qd__after);
 *   - not signed or refused before any signing (no single From, no key,
 *     header too long): a zero timer of its own (qd__timer_cb), so the
 *     callback never runs from inside queue_dkim_sign().
 * Every job holds a reference on the queue_dkim (the mutex it shares with
 * destroy lives there, and the signer). destroy marks every job dropped
 * under the mutex and waits for the one signing now: after it, no job
 * reads its body again (see the order of state changes in qd__work).
 */
#include "queue-dkim.h"
#include "dkim-from.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "mail-error.h"
#include "util.h"
#include "xalloc.h"

#define QD_SVC "queue"
/* queue ids are at most 64 chars (client/queue-id.h QUEUE_ID_MAX); a
 * longer one is cut in log lines */
#define QD_QID_MAX 64

struct queue_dkim {
	dkim_signer *signer;
	unsigned refs;           /* the owner's (until destroy) and one per job */
	pthread_mutex_t lock;    /* job states and dropped flags */
	pthread_cond_t stopped;  /* a job left QD_RUNNING */
	struct qd_job *jobs;     /* in flight; the loop's list */
};

enum qd_state {
	QD_WAITING, /* queued on the pool (or answering by timer) */
	QD_RUNNING, /* reading its body on a pool thread */
	QD_DONE,    /* never reads its body again */
};

struct qd_job {
	uv_work_t work;
	uv_timer_t timer;        /* only for the answers without signing */
	queue_dkim *qd;
	struct qd_job *prev, *next;
	queue_dkim_cb *cb;
	void *arg;
	const uint8_t *body;     /* borrowed */
	size_t len;
	char qid[QD_QID_MAX + 1];
	char domain[DKIM_DOMAIN_MAX + 1]; /* "" none */
	char selectors[DKIM_ALG_COUNT_ * (DKIM_SELECTOR_MAX + 1)]; /* for the log */
	struct dkim_key keys[DKIM_ALG_COUNT_]; /* wiped by the pool thread */
	size_t n_keys;
	/* under qd->lock */
	enum qd_state state;
	int dropped;             /* queue_dkim_destroy ran: no callback */
	/* the result: written before QD_DONE (or on the loop), read on the loop */
	int status;
	const char *error;       /* static */
	uint8_t *out;
	size_t out_len;
};

/* ---- the From domain ---------------------------------------------------------- */

int queue_dkim_from_domain(const uint8_t *msg, size_t len, char *domain_r)
{
	return dkim_from_domain(msg, len, QUEUE_DKIM_HEADER_MAX, domain_r);
}

/* ---- the signer and its jobs ------------------------------------------------- */

int queue_dkim_create(const struct dkim_sign_settings *set, queue_dkim **qd_r,
		      const char **error_r)
{
	dkim_signer *signer;
	*qd_r = NULL;
	int err = dkim_signer_create(set, &signer, error_r);
	if (err != MAIL_OK)
		return err;
	queue_dkim *qd = xcalloc(1, sizeof *qd);
	qd->signer = signer;
	qd->refs = 1;
	pthread_mutex_init(&qd->lock, NULL);
	pthread_cond_init(&qd->stopped, NULL);
	*qd_r = qd;
	return MAIL_OK;
}

static void qd__unref(queue_dkim *qd)
{
	if (--qd->refs > 0)
		return;
	dkim_signer_destroy(&qd->signer);
	pthread_cond_destroy(&qd->stopped);
	pthread_mutex_destroy(&qd->lock);
	free(qd);
}

void queue_dkim_destroy(queue_dkim **qdp)
{
	queue_dkim *qd = *qdp;
	if (qd == NULL)
		return;
	*qdp = NULL;
	pthread_mutex_lock(&qd->lock);
	for (struct qd_job *j = qd->jobs; j != NULL; j = j->next) {
		j->dropped = 1;
		/* the one signing now is still reading its body */
		while (j->state == QD_RUNNING)
			pthread_cond_wait(&qd->stopped, &qd->lock);
	}
	pthread_mutex_unlock(&qd->lock);
	qd__unref(qd);
}

static void qd__unlink(struct qd_job *j)
{
	queue_dkim *qd = j->qd;
	if (j->prev != NULL)
		j->prev->next = j->next;
	else
		qd->jobs = j->next;
	if (j->next != NULL)
		j->next->prev = j->prev;
	j->prev = j->next = NULL;
}

static void qd__clear_keys(struct qd_job *j)
{
	for (size_t i = 0; i < j->n_keys; i++)
		dkim_key_clear(&j->keys[i]);
	j->n_keys = 0;
}

/* The job's log line and callback, on the loop (not for a dropped job). */
static void qd__answer(struct qd_job *j)
{
	char qq[QD_QID_MAX + 8], qe[160];
	const char *dom = j->domain[0] != '\0' ? j->domain : NULL;
	const char *error = j->error != NULL ? j->error : "?";
	log_quote(qq, sizeof qq, j->qid, strlen(j->qid));
	if (j->status == MAIL_OK && j->out != NULL)
		log_event(LOG_INFO, QD_SVC, "event=dkim_signed qid=%s domain=%s selectors=%s "
			  "size=%zu", qq, j->domain, j->selectors, j->out_len);
	else if (j->status != MAIL_OK)
		log_event(LOG_WARN, QD_SVC, "event=dkim_sign_failed qid=%s domain=%s error=%s "
			  "detail=%s", qq, dom != NULL ? dom : "-",
			  mail_error_info(j->status)->name,
			  log_quote(qe, sizeof qe, error, strlen(error)));
	j->cb(j->status, j->out, j->out_len, dom, j->arg);
}

static void qd__work(uv_work_t *w)
{
	struct qd_job *j = w->data;
	queue_dkim *qd = j->qd;
	pthread_mutex_lock(&qd->lock);
	int dropped = j->dropped;
	j->state = dropped ? QD_DONE : QD_RUNNING;
	pthread_mutex_unlock(&qd->lock);
	if (!dropped) {
		char *fields = NULL;
		size_t flen = 0;
		j->status = dkim_signer_sign(qd->signer, j->body, j->len, j->keys, j->n_keys,
					     j->qid, &fields, &flen, &j->error);
		if (j->status == MAIL_OK) {
			j->out_len = flen + j->len;
			j->out = xmalloc(j->out_len);
			memcpy(j->out, fields, flen);
			memcpy(j->out + flen, j->body, j->len);
			free(fields);
		}
		/* the body is not read after this */
		pthread_mutex_lock(&qd->lock);
		j->state = QD_DONE;
		pthread_cond_broadcast(&qd->stopped);
		pthread_mutex_unlock(&qd->lock);
	}
	qd__clear_keys(j); /* the private keys go as soon as they are used */
}

static void qd__after(uv_work_t *w, int status)
{
	struct qd_job *j = w->data;
	queue_dkim *qd = j->qd;
	(void)status; /* never canceled: uv_cancel is not used */
	qd__unlink(j);
	/* destroy set dropped on this thread: no lock needed to read it */
	if (!j->dropped)
		qd__answer(j); /* may destroy qd: our reference keeps it */
	free(j->out);
	free(j);
	qd__unref(qd);
}

static void qd__timer_closed(uv_handle_t *h)
{
	struct qd_job *j = h->data;
	queue_dkim *qd = j->qd;
	free(j);
	qd__unref(qd);
}

static void qd__timer_cb(uv_timer_t *t)
{
	struct qd_job *j = t->data;
	qd__unlink(j);
	if (!j->dropped)
		qd__answer(j);
	uv_close((uv_handle_t *)&j->timer, qd__timer_closed);
}

/* Answer j on the next loop iteration without signing. */
static void qd__answer_later(struct qd_job *j, uv_loop_t *loop)
{
	j->state = QD_DONE; /* never reads the body (no other thread sees j) */
	uv_timer_init(loop, &j->timer);
	j->timer.data = j;
	uv_timer_start(&j->timer, qd__timer_cb, 0, 0);
}

void queue_dkim_sign(queue_dkim *qd, uv_loop_t *loop, const queue_config *cfg,
		     const char *queue_id, const uint8_t *body, size_t len, queue_dkim_cb *cb,
		     void *arg)
{
	struct qd_job *j = xcalloc(1, sizeof *j);
	j->work.data = j;
	j->qd = qd;
	j->cb = cb;
	j->arg = arg;
	snprintf(j->qid, sizeof j->qid, "%s", queue_id != NULL ? queue_id : "-");
	qd->refs++;
	j->next = qd->jobs;
	if (qd->jobs != NULL)
		qd->jobs->prev = j;
	qd->jobs = j;

	int found = queue_dkim_from_domain(body, len, j->domain);
	if (found < 0) {
		j->status = MAIL_ERR_LIMIT;
		j->error = "header section longer than QUEUE_DKIM_HEADER_MAX";
	}
	if (found > 0 && cfg != NULL)
		j->n_keys = queue_config_dkim_keys(cfg, j->domain, j->keys);
	if (j->n_keys == 0) {
		qd__answer_later(j, loop); /* not signed, or refused above */
		return;
	}
	size_t o = 0;
	for (size_t i = 0; i < j->n_keys; i++)
		o += (size_t)snprintf(j->selectors + o, sizeof j->selectors - o, "%s%s",
				      i > 0 ? "," : "", j->keys[i].selector);
	j->body = body;
	j->len = len;
	uv_queue_work(loop, &j->work, qd__work, qd__after);
}
