/* scheduler.c: per-message timers, a FIFO of due messages and a bound on
 * running attempts. See scheduler.h for the states. */
#include "scheduler.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "xalloc.h"

#define SCHED_ID_MAX 64

enum sched_state { SCHED_WAITING, SCHED_READY, SCHED_RUNNING };

struct sched_entry {
	queue_sched *sched;
	struct sched_entry *hnext; /* hash chain */
	struct sched_entry *rnext; /* ready FIFO */
	uv_timer_t timer;          /* next attempt (state WAITING) */
	enum sched_state state;
	uint32_t failures;         /* failed attempts in a row */
	uint32_t attempts;         /* attempts started */
	int64_t born;              /* received, ms (0: unknown) */
	char id[SCHED_ID_MAX + 1];
};

struct queue_sched {
	uv_loop_t *loop;
	struct queue_sched_settings set;
	const struct queue_sched_ops *ops;
	void *ctx;
	/* entries by queue id: chained hash, power-of-two buckets */
	struct sched_entry **buckets;
	size_t n_buckets;
	size_t count;
	struct sched_entry *ready_head, *ready_tail;
	size_t inflight;
	/* Refills free slots on the next loop iteration, so no ops->deliver
	 * call ever happens inside queue_sched_add() or queue_sched_done(). */
	uv_timer_t pump;
};

void queue_sched_settings_default(struct queue_sched_settings *set)
{
	set->retry_initial_ms = QUEUE_SCHED_RETRY_INITIAL_MS_DEFAULT;
	set->retry_max_ms = QUEUE_SCHED_RETRY_MAX_MS_DEFAULT;
	set->max_inflight = QUEUE_SCHED_MAX_INFLIGHT_DEFAULT;
}

int queue_sched_settings_check(const struct queue_sched_settings *set, const char **error_r)
{
	if (set->retry_initial_ms < 1 || set->retry_initial_ms > QUEUE_SCHED_RETRY_INITIAL_MS_MAX) {
		*error_r = "retry_initial_ms out of range 1..3600000";
		return -1;
	}
	if (set->retry_max_ms < set->retry_initial_ms ||
	    set->retry_max_ms > QUEUE_SCHED_RETRY_MAX_MS_MAX) {
		*error_r = "retry_max_ms out of range retry_initial_ms..86400000";
		return -1;
	}
	if (set->max_inflight < 1 || set->max_inflight > QUEUE_SCHED_MAX_INFLIGHT_MAX) {
		*error_r = "max_inflight out of range 1..100000";
		return -1;
	}
	return 0;
}

uint64_t queue_sched_backoff_ms(const struct queue_sched_settings *set, uint32_t failures)
{
	uint64_t d = set->retry_initial_ms;
	for (uint32_t i = 1; i < failures && d < set->retry_max_ms; i++)
		d *= 2;
	return d < set->retry_max_ms ? d : set->retry_max_ms;
}

static struct sched_entry **sched__slot(queue_sched *s, const char *id)
{
	uint64_t h = util_hash64(id, strlen(id));
	struct sched_entry **p = &s->buckets[h & (s->n_buckets - 1)];
	while (*p != NULL && strcmp((*p)->id, id) != 0)
		p = &(*p)->hnext;
	return p;
}

static void sched__grow(queue_sched *s)
{
	size_t old_n = s->n_buckets;
	struct sched_entry **old = s->buckets;
	s->n_buckets = old_n * 2;
	s->buckets = xcalloc(s->n_buckets, sizeof *s->buckets);
	for (size_t i = 0; i < old_n; i++) {
		struct sched_entry *e = old[i];
		while (e != NULL) {
			struct sched_entry *next = e->hnext;
			uint64_t h = util_hash64(e->id, strlen(e->id));
			struct sched_entry **b = &s->buckets[h & (s->n_buckets - 1)];
			e->hnext = *b;
			*b = e;
			e = next;
		}
	}
	free(old);
}

static void sched__pump_cb(uv_timer_t *timer);

static void sched__kick(queue_sched *s)
{
	if (s->ready_head != NULL && s->inflight < s->set.max_inflight &&
	    !uv_is_active((uv_handle_t *)&s->pump))
		uv_timer_start(&s->pump, sched__pump_cb, 0, 0);
}

static void sched__pump(queue_sched *s)
{
	while (s->ready_head != NULL && s->inflight < s->set.max_inflight) {
		struct sched_entry *e = s->ready_head;
		s->ready_head = e->rnext;
		if (s->ready_head == NULL)
			s->ready_tail = NULL;
		e->rnext = NULL;
		e->state = SCHED_RUNNING;
		e->attempts++;
		s->inflight++;
		/* e may be finished (and closing) when this returns: do not
		 * touch it again. */
		s->ops->deliver(s->ctx, e->id, e->attempts);
	}
}

static void sched__pump_cb(uv_timer_t *timer)
{
	sched__pump(timer->data);
}

static void sched__make_ready(queue_sched *s, struct sched_entry *e)
{
	e->state = SCHED_READY;
	e->rnext = NULL;
	if (s->ready_tail != NULL)
		s->ready_tail->rnext = e;
	else
		s->ready_head = e;
	s->ready_tail = e;
}

static void sched__due_cb(uv_timer_t *timer)
{
	struct sched_entry *e = timer->data;
	queue_sched *s = e->sched;
	sched__make_ready(s, e);
	sched__pump(s);
}

queue_sched *queue_sched_create(uv_loop_t *loop, const struct queue_sched_settings *set,
				const struct queue_sched_ops *ops, void *ctx)
{
	queue_sched *s = xcalloc(1, sizeof *s);
	s->loop = loop;
	s->set = *set;
	s->ops = ops;
	s->ctx = ctx;
	s->n_buckets = 64;
	s->buckets = xcalloc(s->n_buckets, sizeof *s->buckets);
	uv_timer_init(loop, &s->pump);
	s->pump.data = s;
	return s;
}

static void sched__entry_close_cb(uv_handle_t *h)
{
	free(h->data);
}

static void sched__close_cb(uv_handle_t *h)
{
	queue_sched *s = h->data;
	free(s->buckets);
	free(s);
}

void queue_sched_destroy(queue_sched **sched)
{
	queue_sched *s = *sched;
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->n_buckets; i++) {
		for (struct sched_entry *e = s->buckets[i], *next; e != NULL; e = next) {
			next = e->hnext;
			uv_close((uv_handle_t *)&e->timer, sched__entry_close_cb);
		}
		s->buckets[i] = NULL;
	}
	uv_close((uv_handle_t *)&s->pump, sched__close_cb);
	*sched = NULL;
}

int queue_sched_add(queue_sched *s, const char *queue_id, uint64_t delay_ms)
{
	if (strlen(queue_id) > SCHED_ID_MAX)
		return -1;
	struct sched_entry **slot = sched__slot(s, queue_id);
	if (*slot != NULL)
		return 0;
	struct sched_entry *e = xcalloc(1, sizeof *e);
	e->sched = s;
	strcpy(e->id, queue_id);
	uv_timer_init(s->loop, &e->timer);
	e->timer.data = e;
	*slot = e;
	s->count++;
	if (s->count > s->n_buckets * 2)
		sched__grow(s);
	if (delay_ms == 0) {
		sched__make_ready(s, e);
		sched__kick(s);
	} else {
		e->state = SCHED_WAITING;
		uv_timer_start(&e->timer, sched__due_cb, delay_ms, 0);
	}
	return 1;
}

int64_t queue_sched_done(queue_sched *s, const char *queue_id,
			 enum queue_sched_outcome outcome)
{
	struct sched_entry **slot = sched__slot(s, queue_id);
	struct sched_entry *e = *slot;
	if (e == NULL || e->state != SCHED_RUNNING)
		return -1;
	s->inflight--;
	int64_t delay = 0;
	if (outcome == QUEUE_SCHED_FINISHED) {
		*slot = e->hnext;
		s->count--;
		uv_close((uv_handle_t *)&e->timer, sched__entry_close_cb);
	} else {
		e->failures++;
		delay = (int64_t)queue_sched_backoff_ms(&s->set, e->failures);
		e->state = SCHED_WAITING;
		uv_timer_start(&e->timer, sched__due_cb, (uint64_t)delay, 0);
	}
	sched__kick(s);
	return delay;
}

int64_t queue_sched_retry_in(queue_sched *s, const char *queue_id, uint64_t delay_ms)
{
	struct sched_entry *e = *sched__slot(s, queue_id);
	if (e == NULL || e->state != SCHED_RUNNING)
		return -1;
	s->inflight--;
	e->failures++;
	e->state = SCHED_WAITING;
	uv_timer_start(&e->timer, sched__due_cb, delay_ms, 0);
	sched__kick(s);
	return (int64_t)delay_ms;
}

int queue_sched_forget(queue_sched *s, const char *queue_id)
{
	struct sched_entry **slot = sched__slot(s, queue_id);
	struct sched_entry *e = *slot;
	if (e == NULL)
		return 0;
	if (e->state == SCHED_RUNNING)
		return -1;
	if (e->state == SCHED_READY) {
		struct sched_entry *prev = NULL;
		for (struct sched_entry *r = s->ready_head; r != NULL; prev = r, r = r->rnext) {
			if (r != e)
				continue;
			if (prev != NULL)
				prev->rnext = r->rnext;
			else
				s->ready_head = r->rnext;
			if (s->ready_tail == r)
				s->ready_tail = prev;
			break;
		}
	}
	*slot = e->hnext;
	s->count--;
	uv_close((uv_handle_t *)&e->timer, sched__entry_close_cb);
	return 1;
}

void queue_sched_set_born(queue_sched *s, const char *queue_id, int64_t born_ms)
{
	struct sched_entry *e = *sched__slot(s, queue_id);
	if (e != NULL)
		e->born = born_ms;
}

int64_t queue_sched_oldest_born(const queue_sched *s)
{
	int64_t oldest = 0;
	for (size_t i = 0; i < s->n_buckets; i++)
		for (const struct sched_entry *e = s->buckets[i]; e != NULL; e = e->hnext)
			if (e->born > 0 && (oldest == 0 || e->born < oldest))
				oldest = e->born;
	return oldest;
}

int queue_sched_running(const queue_sched *s, const char *queue_id)
{
	struct sched_entry *e = *sched__slot((queue_sched *)s, queue_id);
	return e != NULL && e->state == SCHED_RUNNING;
}

size_t queue_sched_expedite(queue_sched *s, int (*pred)(const char *queue_id, void *arg),
			    void *arg)
{
	size_t n = 0;
	for (size_t i = 0; i < s->n_buckets; i++) {
		for (struct sched_entry *e = s->buckets[i]; e != NULL; e = e->hnext) {
			if (e->state != SCHED_WAITING || !pred(e->id, arg))
				continue;
			uv_timer_stop(&e->timer);
			sched__make_ready(s, e);
			n++;
		}
	}
	sched__kick(s);
	return n;
}

size_t queue_sched_count(const queue_sched *s)
{
	return s->count;
}

size_t queue_sched_inflight(const queue_sched *s)
{
	return s->inflight;
}
