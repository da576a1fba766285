/* loop-thread.h: a libuv loop on a thread of its own, for tests that talk
 * to a server over real loopback sockets with blocking clients (the IMAP
 * and POP3 engine tests). Library `mailtestsupport`. */
#ifndef MAIL_TEST_LOOP_THREAD_H
#define MAIL_TEST_LOOP_THREAD_H

#include <pthread.h>

#include <uv.h>

struct loop_thread {
	/* Set by the test before loop_thread_start(); all run on the loop
	 * thread. setup starts the server (before the loop runs) and
	 * returns its port, or -1; stop stops it, at loop_thread_stop(), so
	 * that the loop runs out; teardown frees what setup made, after. */
	int (*setup)(uv_loop_t *loop, void *arg);
	void (*stop)(void *arg);
	void (*teardown)(void *arg);
	void *arg;
	/* Results: the port setup returned; uv_loop_close()'s status (0 when
	 * every handle was closed). */
	int port;
	int loop_close_status;
	/* Internal. */
	pthread_t thread;
	pthread_mutex_t mutex;
	pthread_cond_t cond;
	int ready;
	uv_loop_t loop;
	uv_async_t async;
};

/* Start the thread and wait until setup has run. */
void loop_thread_start(struct loop_thread *t);
/* Run stop on the loop, wait for the loop to run out and the thread to end. */
void loop_thread_stop(struct loop_thread *t);

#endif
