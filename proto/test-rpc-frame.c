/* Unit tests for the RPC frame codec (rpc-frame.h): round trips fed whole
 * and one byte at a time, several frames per feed, malformed input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rpc-frame.h"

static const uint8_t payload_a[] = "\x0a\x05alice\x12\x05INBOX\x18\x07";

static struct rpc_frame frame_a(void)
{
	return (struct rpc_frame){
		.kind = RPC_KIND_REQUEST,
		.method = 0x1234,
		.status = 0,
		.request_id = 0x0102030405060708ull,
		.deadline_ms = 2500,
		.payload = payload_a,
		.payload_len = sizeof payload_a - 1,
	};
}

static void check_same(const struct rpc_frame *want, const struct rpc_frame *got)
{
	assert_int_equal(got->version, RPC_FRAME_VERSION);
	assert_int_equal(got->kind, want->kind);
	assert_int_equal(got->method, want->method);
	assert_int_equal(got->status, want->status);
	assert_true(got->request_id == want->request_id);
	assert_int_equal(got->deadline_ms, want->deadline_ms);
	assert_int_equal(got->payload_len, want->payload_len);
	if (want->payload_len > 0)
		assert_memory_equal(got->payload, want->payload, want->payload_len);
}

static void test_layout(void **state)
{
	(void)state;
	buf b;
	buf_init(&b);
	struct rpc_frame f = frame_a();
	assert_int_equal(rpc_frame_encode(&b, &f), 0);
	assert_int_equal(b.len, 24 + f.payload_len);
	static const uint8_t head[] = {
		0, 0, 0, 20 + sizeof payload_a - 1, 1, 2, 0x12, 0x34, 0, 0, 0, 0,
		1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0x09, 0xc4,
	};
	assert_memory_equal(b.data, head, sizeof head);
	buf_deinit(&b);
}

static void test_round_trip_whole(void **state)
{
	(void)state;
	buf b;
	buf_init(&b);
	struct rpc_frame f = frame_a();
	rpc_frame_encode(&b, &f);
	struct rpc_frame_decoder dec;
	rpc_frame_decoder_init(&dec, NULL);
	struct rpc_frame got;
	size_t used;
	const char *error;
	assert_int_equal(rpc_frame_decoder_feed(&dec, b.data, b.len, &used, &got, &error), 1);
	assert_int_equal(used, b.len);
	check_same(&f, &got);
	/* nothing more: need more */
	assert_int_equal(rpc_frame_decoder_feed(&dec, b.data, 0, &used, &got, &error), 0);
	rpc_frame_decoder_deinit(&dec);
	buf_deinit(&b);
}

static void test_round_trip_bytewise(void **state)
{
	(void)state;
	buf b;
	buf_init(&b);
	struct rpc_frame f = frame_a();
	rpc_frame_encode(&b, &f);
	struct rpc_frame empty = { .kind = RPC_KIND_RESPONSE, .status = 9, .request_id = 7 };
	rpc_frame_encode(&b, &empty);
	struct rpc_frame_decoder dec;
	rpc_frame_decoder_init(&dec, NULL);
	int frames = 0;
	for (size_t i = 0; i < b.len; i++) {
		struct rpc_frame got;
		size_t used;
		const char *error;
		int r = rpc_frame_decoder_feed(&dec, b.data + i, 1, &used, &got, &error);
		assert_int_equal(used, 1);
		if (i == 24 + f.payload_len - 1) {
			assert_int_equal(r, 1);
			check_same(&f, &got);
			frames++;
		} else if (i == b.len - 1) {
			assert_int_equal(r, 1);
			check_same(&empty, &got);
			frames++;
		} else {
			assert_int_equal(r, 0);
		}
	}
	assert_int_equal(frames, 2);
	rpc_frame_decoder_deinit(&dec);
	buf_deinit(&b);
}

static void test_several_in_one_feed(void **state)
{
	(void)state;
	buf b;
	buf_init(&b);
	struct rpc_frame f = frame_a();
	for (int i = 0; i < 5; i++) {
		f.request_id = (uint64_t)i;
		rpc_frame_encode(&b, &f);
	}
	/* and half of a sixth */
	size_t whole = b.len;
	rpc_frame_encode(&b, &f);
	size_t half = whole + 10;
	struct rpc_frame_decoder dec;
	rpc_frame_decoder_init(&dec, NULL);
	const uint8_t *p = b.data;
	size_t left = half;
	for (int i = 0; i < 5; i++) {
		struct rpc_frame got;
		size_t used;
		const char *error;
		assert_int_equal(rpc_frame_decoder_feed(&dec, p, left, &used, &got, &error), 1);
		assert_true(got.request_id == (uint64_t)i);
		p += used;
		left -= used;
	}
	struct rpc_frame got;
	size_t used;
	const char *error;
	assert_int_equal(rpc_frame_decoder_feed(&dec, p, left, &used, &got, &error), 0);
	assert_int_equal(used, left);
	/* the truncated frame completes with the rest */
	assert_int_equal(rpc_frame_decoder_feed(&dec, b.data + half, b.len - half, &used, &got,
						&error), 1);
	assert_int_equal(used, b.len - half);
	f.request_id = 4;
	check_same(&f, &got);
	rpc_frame_decoder_deinit(&dec);
	buf_deinit(&b);
}

/* Feed bytes one at a time; return the result of the last feed and how many
 * bytes were fed. */
static int feed_bytes(struct rpc_frame_decoder *dec, const uint8_t *d, size_t len,
		      size_t *fed_r, const char **error_r)
{
	int r = 0;
	size_t i;
	for (i = 0; i < len; i++) {
		struct rpc_frame got;
		size_t used;
		r = rpc_frame_decoder_feed(dec, d + i, 1, &used, &got, error_r);
		if (r != 0)
			break;
	}
	*fed_r = i + 1;
	return r;
}

static void expect_error_at(const uint8_t *d, size_t len, size_t at, const char *error,
			    uint32_t max)
{
	struct rpc_frame_limits lim = { .max_frame = max };
	struct rpc_frame_decoder dec;
	const char *err = NULL;
	size_t fed;
	rpc_frame_decoder_init(&dec, &lim);
	assert_int_equal(feed_bytes(&dec, d, len, &fed, &err), -1);
	assert_int_equal(fed, at);
	assert_string_equal(err, error);
	assert_int_equal(dec.state, RPC_FRAME_S_ERROR);
	/* stays failed */
	struct rpc_frame got;
	size_t used;
	assert_int_equal(rpc_frame_decoder_feed(&dec, d, len, &used, &got, &err), -1);
	rpc_frame_decoder_deinit(&dec);

	/* the same input fed whole fails the same way */
	rpc_frame_decoder_init(&dec, &lim);
	assert_int_equal(rpc_frame_decoder_feed(&dec, d, len, &used, &got, &err), -1);
	assert_int_equal(used, at);
	assert_string_equal(err, error);
	rpc_frame_decoder_deinit(&dec);
}

static void test_malformed(void **state)
{
	(void)state;
	buf b;
	buf_init(&b);
	struct rpc_frame f = frame_a();
	rpc_frame_encode(&b, &f);

	uint8_t *d = malloc(b.len);
	memcpy(d, b.data, b.len);
	d[4] = 2;
	expect_error_at(d, b.len, 5, "bad version", RPC_FRAME_MAX);
	memcpy(d, b.data, b.len);
	d[5] = 0;
	expect_error_at(d, b.len, 6, "bad kind", RPC_FRAME_MAX);
	d[5] = 4;
	expect_error_at(d, b.len, 6, "bad kind", RPC_FRAME_MAX);
	memcpy(d, b.data, b.len);
	d[3] = 19;
	expect_error_at(d, b.len, 4, "frame length below header size", RPC_FRAME_MAX);
	/* oversize: refused after the 4 length bytes, with no allocation */
	static const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xff, 1, 2 };
	expect_error_at(huge, sizeof huge, 4, "frame length over limit", RPC_FRAME_MAX);
	static const uint8_t over[] = { 0x04, 0x80, 0x00, 0x01, 1, 2 };
	expect_error_at(over, sizeof over, 4, "frame length over limit", RPC_FRAME_MAX);
	/* a tighter limit (before HELLO) */
	static const uint8_t k5[] = { 0, 0, 0x10, 0x01, 1, 1 };
	expect_error_at(k5, sizeof k5, 4, "frame length over limit", RPC_HELLO_FRAME_MAX);
	free(d);

	/* exactly the limit is fine, and the decoder has not allocated the
	 * declared size up front */
	struct rpc_frame_decoder dec;
	struct rpc_frame got;
	size_t used;
	const char *err;
	rpc_frame_decoder_init(&dec, NULL);
	uint8_t maxhead[24] = { 0x04, 0x80, 0x00, 0x00, 1, 2 };
	assert_int_equal(rpc_frame_decoder_feed(&dec, maxhead, sizeof maxhead, &used, &got, &err),
			 0);
	assert_int_equal(rpc_frame_decoder_feed(&dec, payload_a, 10, &used, &got, &err), 0);
	assert_true(dec.payload.cap < 4096);
	rpc_frame_decoder_deinit(&dec);
	buf_deinit(&b);
}

static void test_truncated(void **state)
{
	(void)state;
	buf b;
	buf_init(&b);
	struct rpc_frame f = frame_a();
	rpc_frame_encode(&b, &f);
	for (size_t cut = 0; cut < b.len; cut++) {
		struct rpc_frame_decoder dec;
		struct rpc_frame got;
		size_t used;
		const char *err;
		rpc_frame_decoder_init(&dec, NULL);
		assert_int_equal(rpc_frame_decoder_feed(&dec, b.data, cut, &used, &got, &err), 0);
		assert_int_equal(used, cut);
		assert_int_equal(rpc_frame_decoder_feed(&dec, b.data + cut, b.len - cut, &used,
							&got, &err), 1);
		check_same(&f, &got);
		rpc_frame_decoder_deinit(&dec);
	}
	buf_deinit(&b);
}

static void test_encode_limits(void **state)
{
	(void)state;
	buf b;
	buf_init(&b);
	struct rpc_frame f = { .kind = RPC_KIND_REQUEST };
	assert_int_equal(rpc_frame_encode_header(&b, &f, RPC_FRAME_MAX - 19), -1);
	assert_int_equal(b.len, 0);
	assert_int_equal(rpc_frame_encode_header(&b, &f, RPC_FRAME_MAX - 20), 0);
	assert_int_equal(b.len, 24);
	buf_deinit(&b);
}

static void test_hello(void **state)
{
	(void)state;
	buf b;
	buf_init(&b);
	assert_int_equal(rpc_hello_encode(&b, "store", 1, 3), 0);
	struct rpc_frame_decoder dec;
	struct rpc_frame_limits lim = { .max_frame = RPC_HELLO_FRAME_MAX };
	rpc_frame_decoder_init(&dec, &lim);
	struct rpc_frame got;
	size_t used;
	const char *err;
	assert_int_equal(rpc_frame_decoder_feed(&dec, b.data, b.len, &used, &got, &err), 1);
	assert_int_equal(got.kind, RPC_KIND_HELLO);
	struct rpc_hello h;
	assert_int_equal(rpc_hello_parse(got.payload, got.payload_len, &h, &err), 0);
	assert_string_equal(h.service, "store");
	assert_int_equal(h.major, 1);
	assert_int_equal(h.minor, 3);
	/* trailing bytes from a later minor are ignored */
	static const uint8_t longer[] = { 3, 'a', 'b', 'c', 0, 2, 0, 9, 0xee, 0xff };
	assert_int_equal(rpc_hello_parse(longer, sizeof longer, &h, &err), 0);
	assert_string_equal(h.service, "abc");
	assert_int_equal(h.major, 2);
	/* bad ones */
	assert_int_equal(rpc_hello_parse(longer, 0, &h, &err), -1);
	assert_int_equal(rpc_hello_parse(longer, 7, &h, &err), -1);
	static const uint8_t zero[] = { 0, 0, 1, 0, 0 };
	assert_int_equal(rpc_hello_parse(zero, sizeof zero, &h, &err), -1);
	static const uint8_t toolong[40] = { 33 };
	assert_int_equal(rpc_hello_parse(toolong, sizeof toolong, &h, &err), -1);
	static const uint8_t ctl[] = { 2, 'a', '\n', 0, 1, 0, 0 };
	assert_int_equal(rpc_hello_parse(ctl, sizeof ctl, &h, &err), -1);
	assert_int_equal(rpc_hello_encode(&b, "", 1, 0), -1);
	assert_int_equal(rpc_hello_encode(&b, "0123456789012345678901234567890123", 1, 0), -1);
	rpc_frame_decoder_deinit(&dec);
	buf_deinit(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_round_trip_whole),
		cmocka_unit_test(test_round_trip_bytewise),
		cmocka_unit_test(test_several_in_one_feed),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_encode_limits),
		cmocka_unit_test(test_hello),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
