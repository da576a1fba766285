#include "test-pb-util.h"

#include "util.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void test_result_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	struct test_result *r = arg;
	r->done = 1;
	r->status = status;
	r->resp = NULL;
	if (resp == NULL)
		return;
	size_t len = protobuf_c_message_get_packed_size(resp);
	uint8_t *b = xmalloc(len + 1);
	protobuf_c_message_pack(resp, b);
	r->resp = protobuf_c_message_unpack(resp->descriptor, NULL, len, b);
	free(b);
}

static void wake_cb(uv_timer_t *t)
{
	(void)t;
}

void test_result_wait(uv_loop_t *loop, struct test_result *r, unsigned timeout_ms)
{
	uint64_t end = util_now_mono_ms() + timeout_ms;
	/* a timer keeps uv_run from returning early with nothing to do */
	uv_timer_t tick;
	uv_timer_init(loop, &tick);
	uv_timer_start(&tick, wake_cb, 50, 50);
	while (!r->done) {
		if (util_now_mono_ms() > end) {
			fprintf(stderr, "test_result_wait: no answer in %u ms\n", timeout_ms);
			abort();
		}
		uv_run(loop, UV_RUN_ONCE);
	}
	uv_close((uv_handle_t *)&tick, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
}

void test_result_reset(struct test_result *r)
{
	if (r->resp != NULL)
		protobuf_c_message_free_unpacked(r->resp, NULL);
	memset(r, 0, sizeof *r);
}
