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
/* one mailbox's addr-spec while the From value is read */
#define QD_ADDR_MAX 1024

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

/* The From value's parse state (queue-dkim.h lists what it accepts). */
struct qd_from {
	char angle[QD_ADDR_MAX];  /* inside <...> */
	char plain[QD_ADDR_MAX];  /* outside: the addr-spec when there is no <> */
	size_t angle_len, plain_len;
	int plain_over;           /* plain overflowed (a long display name) */
	int in_angle, saw_angle, in_group;
	int bad;                  /* not an address we can read */
	char domain[DKIM_DOMAIN_MAX + 1]; /* "" until the first mailbox */
};

static void qd__from_put(struct qd_from *f, char c)
{
	if (f->in_angle) {
		if (f->angle_len + 1 >= sizeof f->angle)
			f->bad = 1;
		else
			f->angle[f->angle_len++] = c;
	} else if (f->saw_angle) {
		f->bad = 1; /* text after the angle-addr */
	} else if (f->plain_len + 1 >= sizeof f->plain) {
		f->plain_over = 1;
	} else {
		f->plain[f->plain_len++] = c;
	}
}

/* One mailbox (or an empty list element) ends. */
static void qd__from_mailbox(struct qd_from *f)
{
	const char *addr = f->saw_angle ? f->angle : f->plain;
	size_t len = f->saw_angle ? f->angle_len : f->plain_len;
	int over = !f->saw_angle && f->plain_over;
	f->angle_len = f->plain_len = 0;
	f->plain_over = f->saw_angle = 0;
	if (len == 0 && !over)
		return; /* "<>", ",,", an empty group */
	const char *at = NULL;
	for (size_t i = 0; i < len; i++) {
		if (addr[i] == '@')
			at = addr + i;
	}
	size_t dlen = at != NULL ? len - (size_t)(at + 1 - addr) : 0;
	if (over || at == NULL || at == addr || dlen == 0 || dlen > DKIM_DOMAIN_MAX) {
		f->bad = 1;
		return;
	}
	char d[DKIM_DOMAIN_MAX + 1];
	for (size_t i = 0; i < dlen; i++)
		d[i] = (char)(at[1 + i] >= 'A' && at[1 + i] <= 'Z' ? at[1 + i] + 32 : at[1 + i]);
	d[dlen] = '\0';
	if (!util_domain_valid(d)) /* also a [literal] */
		f->bad = 1;
	else if (f->domain[0] == '\0')
		memcpy(f->domain, d, dlen + 1);
	else if (strcmp(f->domain, d) != 0)
		f->bad = 1; /* authors of several domains: whose key? */
}

/* Read the value v[0..n) of the From field (line ends and all). */
static void qd__from_parse(struct qd_from *f, const uint8_t *v, size_t n)
{
	int quote = 0, depth = 0;
	for (size_t i = 0; i < n && !f->bad; i++) {
		char c = (char)v[i];
		if (quote || depth > 0) {
			if (c == '\\')
				i++; /* quoted-pair */
			else if (quote && c == '"')
				quote = 0;
			else if (!quote && c == '(')
				depth++;
			else if (!quote && c == ')')
				depth--;
			continue;
		}
		switch (c) {
		case '"':
			quote = 1;
			qd__from_put(f, 'q'); /* stands for the quoted local part */
			break;
		case '(':
			depth = 1;
			break;
		case ' ': case '\t': case '\r': case '\n':
			break;
		case '<':
			if (f->in_angle || f->saw_angle)
				f->bad = 1;
			f->in_angle = f->saw_angle = 1;
			break;
		case '>':
			if (!f->in_angle)
				f->bad = 1;
			f->in_angle = 0;
			break;
		case ':':
			if (f->in_angle) {
				f->angle_len = 0; /* the end of an obsolete source route */
			} else if (f->saw_angle || f->in_group) {
				f->bad = 1;
			} else {
				f->in_group = 1; /* what came before is the group's name */
				f->plain_len = 0;
				f->plain_over = 0;
			}
			break;
		case ';':
			if (f->in_angle || !f->in_group)
				f->bad = 1;
			qd__from_mailbox(f);
			f->in_group = 0;
			break;
		case ',':
			if (f->in_angle)
				qd__from_put(f, c); /* within a source route */
			else
				qd__from_mailbox(f);
			break;
		default:
			qd__from_put(f, c);
			break;
		}
	}
	if (quote || depth > 0 || f->in_angle)
		f->bad = 1;
	if (!f->bad)
		qd__from_mailbox(f);
}

/* 1 when line[0..len) starts a From field ("From" in any case, optional
 * white space (obsolete syntax), ':'); *value_r is the offset after ':'. */
static int qd__is_from(const uint8_t *line, size_t len, size_t *value_r)
{
	if (len < 5 || strncasecmp((const char *)line, "from", 4) != 0)
		return 0;
	size_t i = 4;
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	if (i >= len || line[i] != ':')
		return 0;
	*value_r = i + 1;
	return 1;
}

int queue_dkim_from_domain(const uint8_t *msg, size_t len, char *domain_r)
{
	/* never look further than the limit and one line end */
	size_t window = len < QUEUE_DKIM_HEADER_MAX + 2 ? len : QUEUE_DKIM_HEADER_MAX + 2;
	size_t pos = 0, from_start = 0, from_end = 0;
	unsigned froms = 0;
	int in_from = 0;
	domain_r[0] = '\0';
	while (pos < len) {
		if (pos > QUEUE_DKIM_HEADER_MAX)
			return -1;
		const uint8_t *nl = memchr(msg + pos, '\n', window - pos);
		if (nl == NULL && window < len)
			return -1;
		size_t line_end = nl != NULL ? (size_t)(nl - msg) : len;
		size_t next = nl != NULL ? line_end + 1 : len;
		size_t content_end = line_end;
		if (content_end > pos && msg[content_end - 1] == '\r')
			content_end--;
		if (content_end == pos)
			break; /* the empty line: the body follows */
		size_t value;
		if (msg[pos] == ' ' || msg[pos] == '\t') {
			if (in_from)
				from_end = content_end; /* folded: the field goes on */
		} else if (qd__is_from(msg + pos, content_end - pos, &value)) {
			froms++;
			in_from = 1;
			from_start = pos + value;
			from_end = content_end;
		} else {
			in_from = 0;
		}
		pos = next;
	}
	if (froms != 1)
		return 0;
	struct qd_from *f = xcalloc(1, sizeof *f);
	qd__from_parse(f, msg + from_start, from_end - from_start);
	int found = !f->bad && f->domain[0] != '\0';
	if (found)
		memcpy(domain_r, f->domain, strlen(f->domain) + 1);
	free(f);
	return found;
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
