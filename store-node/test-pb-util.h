/* test-pb-util.h: waiting for one RPC-style callback in the store-node
 * tests (not installed). */
#ifndef MAIL_STORE_TEST_PB_UTIL_H
#define MAIL_STORE_TEST_PB_UTIL_H

#include <protobuf-c/protobuf-c.h>
#include <uv.h>

struct test_result {
	int done;
	int status;
	ProtobufCMessage *resp; /* an owned copy; free with test_result_reset() */
};

/* A callback (rpc_reply_cb and store_client_cb shape) filling a test_result
 * given as arg. */
void test_result_cb(int status, const ProtobufCMessage *resp, void *arg);
/* Run loop until r->done; abort()s after timeout_ms. */
void test_result_wait(uv_loop_t *loop, struct test_result *r, unsigned timeout_ms);
void test_result_reset(struct test_result *r);

#endif
