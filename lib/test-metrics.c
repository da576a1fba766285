/* Unit tests for lib/metrics: the request check, and a real scrape over
 * loopback TCP from a thread while the loop serves. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "metrics.h"

static void test_request_check(void **state)
{
	(void)state;
	int st = 0;
	const char *ok = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
	assert_int_equal(metrics_request_check(ok, strlen(ok), &st), 1);
	assert_int_equal(st, 200);
	/* every prefix needs more */
	for (size_t i = 0; i < strlen(ok) - 1; i++)
		assert_int_equal(metrics_request_check(ok, i, &st), 0);
	const char *lf = "GET /metrics?x=1 HTTP/1.0\n\n";
	assert_int_equal(metrics_request_check(lf, strlen(lf), &st), 1);
	assert_int_equal(st, 200);
	const char *nf = "GET /other HTTP/1.1\r\n\r\n";
	assert_int_equal(metrics_request_check(nf, strlen(nf), &st), 1);
	assert_int_equal(st, 404);
	const char *post = "POST /metrics HTTP/1.1\r\n\r\n";
	assert_int_equal(metrics_request_check(post, strlen(post), &st), 1);
	assert_int_equal(st, 405);
	const char *bad = "garbage\r\n\r\n";
	assert_int_equal(metrics_request_check(bad, strlen(bad), &st), 1);
	assert_int_equal(st, 400);
	char big[METRICS_MAX_REQUEST];
	memset(big, 'a', sizeof big);
	assert_int_equal(metrics_request_check(big, sizeof big, &st), -1);
}

static void collect_test(buf *out, const char *labels, void *arg)
{
	buf_printf(out, "mail_test_total{%s} %d\n", labels, *(int *)arg);
}

struct scrape {
	int port;
	const char *request;
	char response[8192];
	uv_async_t *done;
};

static void *scrape_thread(void *arg)
{
	struct scrape *s = arg;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)s->port) };
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	if (connect(fd, (struct sockaddr *)&sin, sizeof sin) == 0) {
		/* send in two pieces: the server must be incremental */
		size_t half = strlen(s->request) / 2;
		if (write(fd, s->request, half) < 0 ||
		    (usleep(20000), write(fd, s->request + half, strlen(s->request) - half)) < 0)
			s->response[0] = 0;
		size_t got = 0;
		ssize_t n;
		while ((n = read(fd, s->response + got, sizeof s->response - 1 - got)) > 0)
			got += (size_t)n;
		s->response[got] = 0;
	}
	close(fd);
	uv_async_send(s->done);
	return NULL;
}

static void async_cb(uv_async_t *a)
{
	uv_close((uv_handle_t *)a, NULL);
}

static void scrape_once(uv_loop_t *loop, int port, const char *request, char *out, size_t outsz)
{
	uv_async_t done;
	uv_async_init(loop, &done, async_cb);
	struct scrape s = { .port = port, .request = request, .done = &done };
	pthread_t t;
	pthread_create(&t, NULL, scrape_thread, &s);
	uv_run(loop, UV_RUN_DEFAULT);
	pthread_join(t, NULL);
	snprintf(out, outsz, "%s", s.response);
}

static void unref_cb(uv_handle_t *h, void *arg)
{
	(void)arg;
	uv_unref(h);
}

static void test_scrape(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	metrics *m = metrics_create(&loop, "test", "n1");
	int value = 42;
	metrics_add_collector(m, metrics_collect_process, m);
	metrics_add_collector(m, collect_test, &value);
	const char *error = NULL;
	int port = 0;
	assert_int_equal(metrics_listen(m, "127.0.0.1", 0, &port, &error), 0);
	assert_true(port > 0);
	/* the listener would keep uv_run going: unref it for the scrapes */
	char resp[8192];
	uv_walk(&loop, unref_cb, NULL);
	scrape_once(&loop, port, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n", resp, sizeof resp);
	assert_non_null(strstr(resp, "HTTP/1.0 200 OK"));
	assert_non_null(strstr(resp, "mail_test_total{svc=\"test\",node=\"n1\"} 42\n"));
	assert_non_null(strstr(resp, "mail_process_resident_memory_bytes{"));
	scrape_once(&loop, port, "GET /nope HTTP/1.1\r\n\r\n", resp, sizeof resp);
	assert_non_null(strstr(resp, "404"));
	metrics_destroy(&m);
	assert_null(m);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_check),
		cmocka_unit_test(test_scrape),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
