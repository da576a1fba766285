/* maildrop-lock.c: see maildrop-lock.h.
 *
 * Ordering: operations are answered in the order they were queued, and a
 * job carries a prefix of the queue, so a release queued before an acquire
 * of the same user reaches etcd first. The set of held users lives on the
 * loop thread; the lease id and the etcd client belong to whichever job is
 * in flight (one at a time), so the worker never shares them.
 */
#include "maildrop-lock.h"

#include "log.h"
#include "mail-error.h"
#include "util.h"
#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

#define LOCK_SVC "pop3-lock"

enum lock_op_kind {
	LOCK_OP_ACQUIRE = 1,
	LOCK_OP_RELEASE = 2,
};

struct lock_op {
	enum lock_op_kind kind;
	char *user;
	char *value;             /* acquire: what the key holds */
	maildrop_lock_cb *cb;
	void *arg;
	int status;
};

struct lock_job {
	uv_work_t work;
	maildrop_locks *l;
	struct lock_op *ops;
	size_t n_ops;
	int keepalive;           /* renew the lease */
	int revoke;              /* the last job: revoke the lease */
	int64_t lease;           /* in: the lease (0 none); out: the lease now */
	char **reassert;         /* in: every held user, when the lease may go */
	size_t n_reassert;
	char **lost;             /* out: held users whose key another took */
	size_t n_lost;
};

struct maildrop_locks {
	uv_loop_t *loop;
	etcd_conf *etcd;
	struct etcd_stats *stats;
	char *holder;
	unsigned ttl_s;
	etcd_client *client;     /* the in-flight job's (created by the first) */
	int64_t lease;
	char **held;             /* sorted */
	size_t n_held;
	struct lock_op *queue;
	size_t n_queue;
	int keepalive_due;
	struct lock_job *job;    /* in flight */
	uv_timer_t *timer;
	int stopped;
	int revoked;
};

static void lock_strv_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static int lock_held_find(const maildrop_locks *l, const char *user, size_t *pos_r)
{
	size_t lo = 0, hi = l->n_held;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(l->held[mid], user);
		if (c == 0) {
			*pos_r = mid;
			return 1;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*pos_r = lo;
	return 0;
}

static void lock_held_add(maildrop_locks *l, const char *user)
{
	size_t pos;
	if (lock_held_find(l, user, &pos))
		return;
	l->held = xrealloc(l->held, (l->n_held + 1) * sizeof *l->held);
	memmove(l->held + pos + 1, l->held + pos, (l->n_held - pos) * sizeof *l->held);
	l->held[pos] = xstrdup(user);
	l->n_held++;
}

static int lock_held_remove(maildrop_locks *l, const char *user)
{
	size_t pos;
	if (!lock_held_find(l, user, &pos))
		return 0;
	free(l->held[pos]);
	memmove(l->held + pos, l->held + pos + 1, (l->n_held - pos - 1) * sizeof *l->held);
	l->n_held--;
	return 1;
}

static void lock_key(char *key, size_t size, const char *user)
{
	snprintf(key, size, MAILDROP_LOCK_PREFIX "%s", user);
}

/* ---- the worker (a pool thread; touches only the job and l->client) ---- */

/* A lease for the job's creates: the current one, or a new one. */
static int lock_work_lease(struct lock_job *j, etcd_client *c)
{
	if (j->lease != 0)
		return MAIL_OK;
	return etcd_lease_grant(c, (int)j->l->ttl_s, &j->lease);
}

static void lock_work_reassert(struct lock_job *j, etcd_client *c)
{
	j->lost = xcalloc(j->n_reassert + 1, sizeof *j->lost);
	for (size_t i = 0; i < j->n_reassert; i++) {
		char key[600];
		lock_key(key, sizeof key, j->reassert[i]);
		int ret = etcd_kv_create(c, key, j->l->holder, strlen(j->l->holder), j->lease);
		if (ret == MAIL_ERR_EXISTS)
			j->lost[j->n_lost++] = xstrdup(j->reassert[i]);
	}
}

static void lock_work_cb(uv_work_t *w)
{
	struct lock_job *j = w->data;
	maildrop_locks *l = j->l;
	if (l->etcd == NULL)
		return;
	if (l->client == NULL) {
		l->client = etcd_client_create(l->etcd);
		etcd_client_set_stats(l->client, l->stats);
	}
	etcd_client *c = l->client;
	if (j->revoke) {
		if (j->lease != 0)
			etcd_lease_revoke(c, j->lease);
		j->lease = 0;
		return;
	}
	if (j->keepalive && j->lease != 0) {
		int64_t ttl = 0;
		if (etcd_lease_keepalive(c, j->lease, &ttl) == MAIL_OK && ttl == 0) {
			/* expired: the keys went with it; take them again */
			j->lease = 0;
			if (lock_work_lease(j, c) == MAIL_OK)
				lock_work_reassert(j, c);
		}
	}
	for (size_t i = 0; i < j->n_ops; i++) {
		struct lock_op *op = &j->ops[i];
		char key[600];
		lock_key(key, sizeof key, op->user);
		if (op->kind == LOCK_OP_RELEASE) {
			op->status = etcd_kv_delete(c, key);
			continue;
		}
		op->status = lock_work_lease(j, c);
		if (op->status == MAIL_OK)
			op->status = etcd_kv_create(c, key, op->value, strlen(op->value), j->lease);
		if (op->status == MAIL_ERR_NOT_FOUND) {
			/* the lease ran out between two jobs: a new one */
			j->lease = 0;
			op->status = lock_work_lease(j, c);
			if (op->status == MAIL_OK)
				op->status = etcd_kv_create(c, key, op->value, strlen(op->value),
							    j->lease);
		}
		if (op->status != MAIL_OK && op->status != MAIL_ERR_EXISTS)
			op->status = MAIL_ERR_UNAVAILABLE;
	}
}

/* ---- the loop side ---------------------------------------------------- */

static void lock_kick(maildrop_locks *l);

static void lock_maybe_free(maildrop_locks *l)
{
	if (!l->stopped || !l->revoked || l->job != NULL || l->timer != NULL)
		return;
	etcd_client_destroy(&l->client);
	lock_strv_free(l->held, l->n_held);
	free(l->queue);
	etcd_conf_free(&l->etcd);
	free(l->holder);
	free(l);
}

static void lock_op_free(struct lock_op *op)
{
	free(op->user);
	free(op->value);
}

static void lock_after_cb(uv_work_t *w, int status)
{
	struct lock_job *j = w->data;
	maildrop_locks *l = j->l;
	l->job = NULL;
	l->lease = j->lease;
	if (j->revoke)
		l->revoked = 1;
	for (size_t i = 0; i < j->n_lost; i++) {
		if (lock_held_remove(l, j->lost[i]))
			log_event(LOG_WARN, LOCK_SVC, "event=pop3_lock_lost user=%s", j->lost[i]);
	}
	for (size_t i = 0; i < j->n_ops; i++) {
		struct lock_op *op = &j->ops[i];
		if (status != 0)
			op->status = MAIL_ERR_UNAVAILABLE;
		if (l->etcd == NULL && op->kind == LOCK_OP_ACQUIRE) {
			size_t pos;
			op->status = lock_held_find(l, op->user, &pos) ? MAIL_ERR_EXISTS : MAIL_OK;
		}
		if (op->kind == LOCK_OP_ACQUIRE) {
			if (l->stopped && op->status == MAIL_OK)
				op->status = MAIL_ERR_UNAVAILABLE; /* the lease is going */
			if (op->status == MAIL_OK)
				lock_held_add(l, op->user);
			else if (op->status == MAIL_ERR_UNAVAILABLE)
				log_event(LOG_WARN, LOCK_SVC, "event=pop3_lock_unavailable user=%s",
					  op->user);
			op->cb(op->status, op->arg);
		}
		lock_op_free(op);
	}
	free(j->ops);
	lock_strv_free(j->reassert, j->n_reassert);
	lock_strv_free(j->lost, j->n_lost);
	free(j);
	lock_kick(l);
	lock_maybe_free(l);
}

/* Start a job for what is queued (and a due keepalive), unless one runs. */
static void lock_kick(maildrop_locks *l)
{
	if (l->job != NULL)
		return;
	int revoke = l->stopped && !l->revoked;
	if (l->n_queue == 0 && !l->keepalive_due && !revoke)
		return;
	struct lock_job *j = xcalloc(1, sizeof *j);
	j->work.data = j;
	j->l = l;
	j->ops = l->queue;
	j->n_ops = l->n_queue;
	l->queue = NULL;
	l->n_queue = 0;
	j->lease = l->lease;
	j->revoke = revoke && j->n_ops == 0;  /* answer the last ops first */
	j->keepalive = l->keepalive_due && !j->revoke;
	l->keepalive_due = 0;
	if (j->keepalive) {
		j->reassert = xcalloc(l->n_held + 1, sizeof *j->reassert);
		for (size_t i = 0; i < l->n_held; i++)
			j->reassert[j->n_reassert++] = xstrdup(l->held[i]);
	}
	l->job = j;
	uv_queue_work(l->loop, &j->work, lock_work_cb, lock_after_cb);
}

static void lock_queue(maildrop_locks *l, enum lock_op_kind kind, const char *user,
		       const char *value, maildrop_lock_cb *cb, void *arg)
{
	l->queue = xrealloc(l->queue, (l->n_queue + 1) * sizeof *l->queue);
	l->queue[l->n_queue++] = (struct lock_op){ kind, xstrdup(user),
						   value != NULL ? xstrdup(value) : NULL, cb, arg,
						   MAIL_OK };
	lock_kick(l);
}

void maildrop_lock_acquire(maildrop_locks *l, const char *user, const char *session,
			   maildrop_lock_cb *cb, void *arg)
{
	char *value = xasprintf("%s %s", l->holder, session != NULL ? session : "");
	lock_queue(l, LOCK_OP_ACQUIRE, user, value, cb, arg);
	free(value);
}

void maildrop_lock_release(maildrop_locks *l, const char *user)
{
	if (!lock_held_remove(l, user))
		return;   /* never held, or lost */
	if (l->etcd != NULL)
		lock_queue(l, LOCK_OP_RELEASE, user, NULL, NULL, NULL);
}

size_t maildrop_locks_held(const maildrop_locks *l)
{
	return l->n_held;
}

static void lock_timer_cb(uv_timer_t *t)
{
	maildrop_locks *l = t->data;
	if (l->lease == 0 && l->n_held == 0)
		return;   /* nothing to keep */
	l->keepalive_due = 1;
	lock_kick(l);
}

maildrop_locks *maildrop_locks_start(uv_loop_t *loop, const struct maildrop_locks_settings *set)
{
	maildrop_locks *l = xcalloc(1, sizeof *l);
	l->loop = loop;
	l->etcd = set->etcd != NULL ? etcd_conf_dup(set->etcd) : NULL;
	l->stats = set->stats;
	l->holder = xstrdup(set->holder != NULL ? set->holder : "frontend");
	l->ttl_s = set->ttl_s == 0 ? MAILDROP_LOCK_TTL_S : set->ttl_s < 2 ? 2 : set->ttl_s;
	if (l->etcd != NULL) {
		l->timer = xcalloc(1, sizeof *l->timer);
		uv_timer_init(loop, l->timer);
		l->timer->data = l;
		uint64_t every = (uint64_t)l->ttl_s * 1000 / 3;
		uv_timer_start(l->timer, lock_timer_cb, every, every);
	} else {
		l->revoked = 1;   /* no lease to give back */
	}
	return l;
}

static void lock_timer_close_cb(uv_handle_t *h)
{
	maildrop_locks *l = h->data;
	free(h);
	l->timer = NULL;
	lock_maybe_free(l);
}

void maildrop_locks_stop(maildrop_locks **lp)
{
	maildrop_locks *l = *lp;
	if (l == NULL)
		return;
	*lp = NULL;
	l->stopped = 1;
	if (l->timer != NULL)
		uv_close((uv_handle_t *)l->timer, lock_timer_close_cb);
	if (l->lease == 0 && l->job == NULL)
		l->revoked = 1;   /* nothing was ever granted */
	lock_kick(l);
	lock_maybe_free(l);
}
