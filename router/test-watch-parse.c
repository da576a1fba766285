/* test-watch-parse.c: the watch-stream parser of etcd.c, fed without a
 * network: whole, byte by byte, in odd chunks; bad and hostile input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "etcd-private.h"
#include "mail-error.h"
#include "xalloc.h"

/* What etcd 3.4's gateway sends (keys/values base64: "/w/a", "v1", "/w/b"). */
static const char stream[] =
	"{\"result\":{\"header\":{\"cluster_id\":\"1\",\"member_id\":\"2\",\"revision\":\"4\","
	"\"raft_term\":\"2\"},\"created\":true}}\n"
	"{\"result\":{\"header\":{\"revision\":\"5\"},\"events\":[{\"kv\":{\"key\":\"L3cvYQ==\","
	"\"create_revision\":\"5\",\"mod_revision\":\"5\",\"version\":\"1\","
	"\"value\":\"djE=\"}}]}}\n"
	"{\"result\":{\"header\":{\"revision\":\"7\"},\"events\":[{\"kv\":{\"key\":\"L3cvYg==\","
	"\"create_revision\":\"6\",\"mod_revision\":\"7\",\"version\":\"2\"}},"
	"{\"type\":\"DELETE\",\"kv\":{\"key\":\"L3cvYQ==\",\"mod_revision\":\"7\"}}]}}\n";

typedef struct seen {
	int n;
	int stop_after;
	char log[512];
} seen;

static int record_cb(const etcd_event *ev, void *arg)
{
	seen *s = arg;
	size_t len = strlen(s->log);
	snprintf(s->log + len, sizeof s->log - len, "%s %s=%s@%lld;",
		 ev->type == ETCD_EVENT_PUT ? "put" : "del", ev->key, ev->value,
		 (long long)ev->mod_revision);
	s->n++;
	return s->stop_after > 0 && s->n >= s->stop_after;
}

static const char expected[] = "put /w/a=v1@5;put /w/b=@7;del /w/a=@7;";

/* Feed data in chunks of `chunk` bytes (0 = whole); returns 1 if the
 * stream is still open at the end, else 0 with *result_r. */
static int feed(etcd_client *c, const char *data, size_t len, size_t chunk, int *result_r)
{
	if (chunk == 0)
		chunk = len;
	for (size_t off = 0; off < len; off += chunk) {
		size_t n = len - off < chunk ? len - off : chunk;
		if (!etcd__watch_feed(c, data + off, n, result_r))
			return 0;
	}
	return 1;
}

static void test_chunkings(void **state)
{
	(void)state;
	etcd_client *c = etcd_client_create(&(etcd_conf){ .url = "http://127.0.0.1:1" });
	static const size_t chunks[] = { 0, 1, 2, 3, 7, 64, 100 };
	for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
		seen s = { 0 };
		int result = -1;
		etcd__watch_begin(c, record_cb, &s);
		assert_int_equal(feed(c, stream, strlen(stream), chunks[i], &result), 1);
		assert_int_equal(s.n, 3);
		assert_string_equal(s.log, expected);
	}
	etcd_client_destroy(&c);
}

static void test_callback_stops(void **state)
{
	(void)state;
	etcd_client *c = etcd_client_create(&(etcd_conf){ .url = "http://127.0.0.1:1" });
	seen s = { .stop_after = 2 };
	int result = -1;
	etcd__watch_begin(c, record_cb, &s);
	assert_int_equal(feed(c, stream, strlen(stream), 1, &result), 0);
	assert_int_equal(result, MAIL_OK);
	assert_int_equal(s.n, 2);
	etcd_client_destroy(&c);
}

static void test_bad_input(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		int result;
	} cases[] = {
		{ "not json\n", MAIL_ERR_UNAVAILABLE },
		{ "[1,2]\n", MAIL_ERR_UNAVAILABLE },
		{ "{\"error\":{\"grpc_code\":14,\"message\":\"x\"}}\n", MAIL_ERR_UNAVAILABLE },
		{ "{\"result\":{\"canceled\":true,\"compact_revision\":\"9\"}}\n",
		  MAIL_ERR_NOT_FOUND },
		/* etcd cancels (and keeps the stream open) for permission, or
		 * a token it wants from a client that has no user: both end the
		 * stream as PERM */
		{ "{\"result\":{\"watch_id\":\"-1\",\"created\":true,\"canceled\":true,"
		  "\"cancel_reason\":\"rpc error: code = PermissionDenied desc = etcdserver: "
		  "permission denied\"}}\n",
		  MAIL_ERR_PERM },
		{ "{\"result\":{\"created\":true,\"canceled\":true,\"cancel_reason\":\"rpc error: "
		  "code = InvalidArgument desc = etcdserver: user name is empty\"}}\n",
		  MAIL_ERR_PERM },
		/* a key that is not base64 */
		{ "{\"result\":{\"events\":[{\"kv\":{\"key\":\"***\"}}]}}\n",
		  MAIL_ERR_UNAVAILABLE },
		{ "{\"result\":{\"events\":[{\"kv\":{}}]}}\n", MAIL_ERR_UNAVAILABLE },
	};
	etcd_client *c = etcd_client_create(&(etcd_conf){ .url = "http://127.0.0.1:1" });
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		for (size_t chunk = 0; chunk <= 1; chunk++) {
			seen s = { 0 };
			int result = -1;
			etcd__watch_begin(c, record_cb, &s);
			assert_int_equal(feed(c, cases[i].in, strlen(cases[i].in), chunk, &result),
					 0);
			assert_int_equal(result, cases[i].result);
			assert_int_equal(s.n, 0);
		}
	}
	/* blank lines and events-less results are fine */
	seen s = { 0 };
	int result = -1;
	etcd__watch_begin(c, record_cb, &s);
	assert_int_equal(feed(c, "\n\n{\"result\":{}}\n", 16, 0, &result), 1);
	etcd_client_destroy(&c);
}

static void test_line_limit(void **state)
{
	(void)state;
	/* a line that never ends is cut at the limit (16 MiB), not buffered
	 * forever */
	etcd_client *c = etcd_client_create(&(etcd_conf){ .url = "http://127.0.0.1:1" });
	size_t block = 1024 * 1024;
	char *junk = xmalloc(block);
	memset(junk, 'x', block);
	seen s = { 0 };
	int result = -1, open = 1;
	etcd__watch_begin(c, record_cb, &s);
	size_t fed = 0;
	for (int i = 0; i < 32 && open; i++, fed += block)
		open = etcd__watch_feed(c, junk, block, &result);
	assert_int_equal(open, 0);
	assert_int_equal(result, MAIL_ERR_UNAVAILABLE);
	assert_true(fed <= 17 * block);
	free(junk);
	etcd_client_destroy(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chunkings),
		cmocka_unit_test(test_callback_stops),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_line_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
