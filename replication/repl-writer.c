/* repl-writer.c: the node's writer thread (repl-private.h). One job at a
 * time: the owner's apply barrier first (its completion is reported at
 * once, so the proposals it answers need not wait for the log's fsync),
 * then the log's group write. The loop learns of each part through an
 * eventfd it polls (not a uv_async: libuv 1.44's uv_async_send makes the
 * loop busy-wait while the sending thread is between its two steps, which
 * on a loaded 2-core machine cost about 15% of repl_bench's CPU);
 * repl_writer_poll() hands the results over, or waits for them.
 *
 * Memory: the job's batch belongs to the thread from submit until it is
 * written (repl_log_batch_commit frees it). Everything else in struct
 * repl_writer is shared and guarded by mu, except `notify`/`arg`/`poll`
 * (loop only, immutable after create), `efd` (written by the thread, read
 * by the loop, closed once the thread is joined) and `delay_ms`
 * (immutable). */
#include "repl-private.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <uv.h>

#include "util.h"
#include "xalloc.h"

struct repl_writer {
	uv_thread_t thread;
	uv_mutex_t mu;
	uv_cond_t cond;          /* a job came / a part finished / stop */
	int efd;                 /* eventfd: a part finished, wake the loop */
	uv_poll_t poll;          /* the loop's watch on efd */
	void (*notify)(void *arg);
	void *arg;
	uint32_t delay_ms;       /* tests: sleep before each log write */
	int stop;
	/* the job (busy from submit until both parts were polled) */
	int busy, started;
	repl_log_batch *batch;   /* NULL: no log part */
	int sync;
	int (*barrier)(void *);  /* NULL: no barrier part */
	void *barrier_arg;
	/* results: done = finished, told = handed over by poll */
	int barrier_done, barrier_told, barrier_status;
	int log_done, log_told, log_status;
	uint64_t log_us;
};

static void writer__wake(repl_writer *w)
{
	uint64_t one = 1;
	/* an eventfd write only fails once the counter nears 2^64 */
	while (write(w->efd, &one, sizeof one) < 0 && errno == EINTR)
		;
}

static void writer__thread(void *arg)
{
	repl_writer *w = arg;
	uv_mutex_lock(&w->mu);
	for (;;) {
		while (!w->stop && !(w->busy && !w->started))
			uv_cond_wait(&w->cond, &w->mu);
		if (!(w->busy && !w->started))
			break;   /* stop, and no job left */
		w->started = 1;
		int (*barrier)(void *) = w->barrier;
		void *barrier_arg = w->barrier_arg;
		repl_log_batch *batch = w->batch;
		int sync = w->sync;
		w->batch = NULL;
		uv_mutex_unlock(&w->mu);

		if (barrier != NULL) {
			int r = barrier(barrier_arg);
			uv_mutex_lock(&w->mu);
			w->barrier_done = 1;
			w->barrier_status = r < 0 ? -1 : 0;
			uv_cond_broadcast(&w->cond);
			uv_mutex_unlock(&w->mu);
			writer__wake(w);
		}
		if (batch != NULL) {
			uint64_t t0 = uv_hrtime();   /* the test delay counts: a slow disk */
			if (w->delay_ms > 0)
				uv_sleep(w->delay_ms);
			int r = repl_log_batch_commit(batch, sync);
			uint64_t us = (uv_hrtime() - t0) / 1000u;
			uv_mutex_lock(&w->mu);
			w->log_done = 1;
			w->log_status = r < 0 ? -1 : 0;
			w->log_us = us;
			uv_cond_broadcast(&w->cond);
			uv_mutex_unlock(&w->mu);
			writer__wake(w);
		}
		uv_mutex_lock(&w->mu);
	}
	uv_mutex_unlock(&w->mu);
}

static void writer__poll_cb(uv_poll_t *h, int status, int events)
{
	(void)status, (void)events;
	repl_writer *w = h->data;
	uint64_t v;
	while (read(w->efd, &v, sizeof v) < 0 && errno == EINTR)
		;   /* EAGAIN: nothing new; the results are under mu anyway */
	if (w->notify != NULL)
		w->notify(w->arg);
}

static void writer__close_cb(uv_handle_t *h)
{
	repl_writer *w = h->data;
	close(w->efd);
	uv_cond_destroy(&w->cond);
	uv_mutex_destroy(&w->mu);
	free(w);
}

int repl_writer_create(uv_loop_t *loop, uint32_t delay_ms, void (*notify)(void *arg), void *arg,
		       repl_writer **w_r)
{
	repl_writer *w = xcalloc(1, sizeof *w);
	w->notify = notify;
	w->arg = arg;
	w->delay_ms = delay_ms;
	if (uv_mutex_init(&w->mu) != 0) {
		free(w);
		return -1;
	}
	if (uv_cond_init(&w->cond) != 0) {
		uv_mutex_destroy(&w->mu);
		free(w);
		return -1;
	}
	w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->efd < 0 || uv_poll_init(loop, &w->poll, w->efd) != 0) {
		if (w->efd >= 0)
			close(w->efd);
		uv_cond_destroy(&w->cond);
		uv_mutex_destroy(&w->mu);
		free(w);
		return -1;
	}
	w->poll.data = w;
	if (uv_poll_start(&w->poll, UV_READABLE, writer__poll_cb) != 0 ||
	    uv_thread_create(&w->thread, writer__thread, w) != 0) {
		uv_close((uv_handle_t *)&w->poll, writer__close_cb);
		return -1;
	}
	*w_r = w;
	return 0;
}

int repl_writer_busy(const repl_writer *w)
{
	/* busy is only changed by the loop (submit, poll): no lock needed to
	 * read it there */
	return w->busy;
}

void repl_writer_submit(repl_writer *w, repl_log_batch *batch, int sync,
			int (*barrier)(void *arg), void *barrier_arg)
{
	uv_mutex_lock(&w->mu);
	w->busy = 1;
	w->started = 0;
	w->batch = batch;
	w->sync = sync;
	w->barrier = barrier;
	w->barrier_arg = barrier_arg;
	w->barrier_done = w->barrier_told = barrier == NULL;
	w->log_done = w->log_told = batch == NULL;
	w->barrier_status = w->log_status = 0;
	w->log_us = 0;
	uv_cond_broadcast(&w->cond);
	uv_mutex_unlock(&w->mu);
}

void repl_writer_poll(repl_writer *w, int wait, struct repl_writer_result *r)
{
	*r = (struct repl_writer_result){ 0 };
	if (!w->busy)
		return;
	uv_mutex_lock(&w->mu);
	while (wait && !(w->barrier_done && w->log_done))
		uv_cond_wait(&w->cond, &w->mu);
	if (w->barrier_done && !w->barrier_told) {
		w->barrier_told = 1;
		r->barrier_done = 1;
		r->barrier_status = w->barrier_status;
	}
	if (w->log_done && !w->log_told) {
		w->log_told = 1;
		r->log_done = 1;
		r->log_status = w->log_status;
		r->log_us = w->log_us;
	}
	if (w->barrier_told && w->log_told) {
		w->busy = 0;
		r->idle = 1;
	}
	uv_mutex_unlock(&w->mu);
}

void repl_writer_destroy(repl_writer **wp)
{
	repl_writer *w = *wp;
	if (w == NULL)
		return;
	*wp = NULL;
	uv_mutex_lock(&w->mu);
	w->stop = 1;
	uv_cond_broadcast(&w->cond);
	uv_mutex_unlock(&w->mu);
	uv_thread_join(&w->thread);   /* it finishes a job in flight first */
	w->notify = NULL;
	uv_close((uv_handle_t *)&w->poll, writer__close_cb);   /* closes efd */
}
