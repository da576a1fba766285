/* test-engine-fixture.h: what the IMAP and POP3 engine tests share
 * (library `mailenginetest`, tests only): the in-memory backend and the
 * test's server on a loop thread of their own (tests/support/loop-thread.h),
 * and TLS from a development CA made for the fixture.
 *
 * The test embeds struct engine_fixture first in its fixture, sets fill,
 * start and stop (they run on the loop thread), and calls
 * engine_fixture_start(); it then talks to e.port with blocking clients
 * (tests/support/line-client.h). */
#ifndef MAIL_TEST_ENGINE_FIXTURE_H
#define MAIL_TEST_ENGINE_FIXTURE_H

#include <stdint.h>

#include <uv.h>

#include "imap-memory-backend.h"
#include "loop-thread.h"
#include "tls.h"

struct engine_fixture {
	/* the test's */
	void (*fill)(struct engine_fixture *e);  /* users and messages into e->mb */
	int (*start)(struct engine_fixture *e, uv_loop_t *loop); /* its port, or -1 */
	void (*stop)(struct engine_fixture *e);
	uint64_t delay_ms;                        /* the backend's delay per call */
	/* the fixture's */
	struct loop_thread lt;
	imap_memory_backend *mb;
	int port;
	tls_server *tls;                          /* engine_fixture_tls() */
	char tls_dir[64];                         /* its CA: tls_dir/ca.pem */
};

/* A certificate for localhost from a fresh development CA (cluster/dev-ca)
 * in e->tls; call before engine_fixture_start(). */
void engine_fixture_tls(struct engine_fixture *e);
/* Create the backend, fill it, start the server; asserts a port. */
void engine_fixture_start(struct engine_fixture *e);
/* Stop the server, let the loop run out (asserts every handle closed),
 * free the backend and the TLS files. */
void engine_fixture_stop(struct engine_fixture *e);

#endif
