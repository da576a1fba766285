/* test-engine-fixture.c: see test-engine-fixture.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "test-engine-fixture.h"

static int engine_fixture_setup(uv_loop_t *loop, void *arg)
{
	struct engine_fixture *e = arg;
	e->mb = imap_memory_backend_create(loop);
	e->fill(e);
	imap_memory_backend_set_delay(e->mb, e->delay_ms);
	return e->start(e, loop);
}

static void engine_fixture_server_stop(void *arg)
{
	struct engine_fixture *e = arg;
	e->stop(e);
}

static void engine_fixture_teardown(void *arg)
{
	struct engine_fixture *e = arg;
	imap_memory_backend_destroy(&e->mb);
}

void engine_fixture_tls(struct engine_fixture *e)
{
	snprintf(e->tls_dir, sizeof e->tls_dir, "/tmp/test-engine-XXXXXX");
	assert_non_null(mkdtemp(e->tls_dir));
	char cmd[256], cert[128], key[128];
	snprintf(cmd, sizeof cmd, "%s/cluster/dev-ca %s >/dev/null", MAIL_SOURCE_DIR, e->tls_dir);
	assert_int_equal(system(cmd), 0);
	snprintf(cert, sizeof cert, "%s/frontend.pem", e->tls_dir);
	snprintf(key, sizeof key, "%s/frontend.key", e->tls_dir);
	struct tls_server_settings ts = { cert, key, 0 };
	const char *error;
	assert_int_equal(tls_server_create(&ts, &e->tls, &error), 0);
}

void engine_fixture_start(struct engine_fixture *e)
{
	e->lt.setup = engine_fixture_setup;
	e->lt.stop = engine_fixture_server_stop;
	e->lt.teardown = engine_fixture_teardown;
	e->lt.arg = e;
	loop_thread_start(&e->lt);
	e->port = e->lt.port;
	assert_true(e->port > 0);
}

void engine_fixture_stop(struct engine_fixture *e)
{
	loop_thread_stop(&e->lt);
	assert_int_equal(e->lt.loop_close_status, 0);
	if (e->tls != NULL) {
		tls_server_destroy(&e->tls);
		char cmd[128];
		snprintf(cmd, sizeof cmd, "rm -rf %s", e->tls_dir);
		assert_int_equal(system(cmd), 0);
	}
}
