/* loop-thread.c: see loop-thread.h. */
#include "loop-thread.h"

static void loop_thread_async_cb(uv_async_t *async)
{
	struct loop_thread *t = async->data;
	t->stop(t->arg);
	uv_close((uv_handle_t *)async, NULL);
}

static void *loop_thread_main(void *arg)
{
	struct loop_thread *t = arg;
	uv_loop_init(&t->loop);
	uv_async_init(&t->loop, &t->async, loop_thread_async_cb);
	t->async.data = t;
	int port = t->setup(&t->loop, t->arg);
	pthread_mutex_lock(&t->mutex);
	t->port = port;
	t->ready = 1;
	pthread_cond_signal(&t->cond);
	pthread_mutex_unlock(&t->mutex);
	uv_run(&t->loop, UV_RUN_DEFAULT);
	if (t->teardown != NULL)
		t->teardown(t->arg);
	t->loop_close_status = uv_loop_close(&t->loop);
	return NULL;
}

void loop_thread_start(struct loop_thread *t)
{
	pthread_mutex_init(&t->mutex, NULL);
	pthread_cond_init(&t->cond, NULL);
	t->ready = 0;
	pthread_create(&t->thread, NULL, loop_thread_main, t);
	pthread_mutex_lock(&t->mutex);
	while (!t->ready)
		pthread_cond_wait(&t->cond, &t->mutex);
	pthread_mutex_unlock(&t->mutex);
}

void loop_thread_stop(struct loop_thread *t)
{
	uv_async_send(&t->async);
	pthread_join(t->thread, NULL);
	pthread_mutex_destroy(&t->mutex);
	pthread_cond_destroy(&t->cond);
}
