#include "metrics.h"
#include "log.h"
#include "util.h"
#include "xalloc.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define METRICS_READ_TIMEOUT_MS 5000

struct metrics_collector {
	metrics_collect_fn *fn;
	void *arg;
};

struct metrics {
	uv_loop_t *loop;
	uv_tcp_t listener;
	int listening;
	char labels[256];
	struct metrics_collector *collectors;
	size_t n_collectors;
	uint64_t started_ms;
	unsigned open_conns;
	int destroyed;
};

struct metrics_conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	metrics *m;
	char head[METRICS_MAX_REQUEST];
	size_t len;
	int responded;
	int closing_handles;
	uv_write_t write;
	buf out;
};

static void metrics__maybe_free(metrics *m)
{
	if (m->destroyed && m->open_conns == 0 && !m->listening) {
		free(m->collectors);
		free(m);
	}
}

metrics *metrics_create(uv_loop_t *loop, const char *svc, const char *node_id)
{
	metrics *m = xcalloc(1, sizeof *m);
	m->loop = loop;
	snprintf(m->labels, sizeof m->labels, "svc=\"%s\",node=\"%s\"", svc, node_id);
	m->started_ms = util_now_mono_ms();
	return m;
}

void metrics_add_collector(metrics *m, metrics_collect_fn *fn, void *arg)
{
	m->collectors = xrealloc(m->collectors, (m->n_collectors + 1) * sizeof *m->collectors);
	m->collectors[m->n_collectors++] = (struct metrics_collector){ fn, arg };
}

int metrics_request_check(const char *data, size_t len, int *status_r)
{
	const char *end = NULL;
	for (size_t i = 0; i + 1 < len; i++) {
		if (data[i] == '\n' && data[i + 1] == '\n') {
			end = data + i;
			break;
		}
		if (i + 3 < len && memcmp(data + i, "\r\n\r\n", 4) == 0) {
			end = data + i;
			break;
		}
	}
	if (end == NULL)
		return len >= METRICS_MAX_REQUEST ? -1 : 0;
	const char *eol = memchr(data, '\n', (size_t)(end - data) + 1);
	size_t line = eol ? (size_t)(eol - data) : (size_t)(end - data);
	if (line > 0 && data[line - 1] == '\r')
		line--;
	/* request line: METHOD SP PATH SP VERSION */
	const char *sp1 = memchr(data, ' ', line);
	const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', line - (size_t)(sp1 + 1 - data)) : NULL;
	if (sp1 == NULL || sp2 == NULL || sp1 == data || sp2 == sp1 + 1 ||
	    line - (size_t)(sp2 + 1 - data) < 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0) {
		*status_r = 400;
		return 1;
	}
	size_t mlen = (size_t)(sp1 - data);
	size_t plen = (size_t)(sp2 - sp1 - 1);
	if (!(mlen == 3 && memcmp(data, "GET", 3) == 0)) {
		*status_r = 405;
		return 1;
	}
	const char *path = sp1 + 1;
	if ((plen == 8 && memcmp(path, "/metrics", 8) == 0) ||
	    (plen > 8 && memcmp(path, "/metrics?", 9) == 0))
		*status_r = 200;
	else
		*status_r = 404;
	return 1;
}

void metrics_collect_process(buf *out, const char *labels, void *arg)
{
	metrics *m = arg;
	long rss_pages = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f != NULL) {
		long size;
		if (fscanf(f, "%ld %ld", &size, &rss_pages) != 2)
			rss_pages = 0;
		fclose(f);
	}
	unsigned fds = 0;
	DIR *d = opendir("/proc/self/fd");
	if (d != NULL) {
		while (readdir(d) != NULL)
			fds++;
		closedir(d);
		fds = fds >= 2 ? fds - 2 : 0;
	}
	buf_printf(out,
		   "# TYPE mail_process_uptime_seconds gauge\n"
		   "mail_process_uptime_seconds{%s} %.3f\n"
		   "# TYPE mail_process_resident_memory_bytes gauge\n"
		   "mail_process_resident_memory_bytes{%s} %ld\n"
		   "# TYPE mail_process_open_fds gauge\n"
		   "mail_process_open_fds{%s} %u\n",
		   labels, (double)(util_now_mono_ms() - m->started_ms) / 1000.0, labels,
		   rss_pages * sysconf(_SC_PAGESIZE), labels, fds);
}

static void metrics__conn_closed_cb(uv_handle_t *handle)
{
	struct metrics_conn *c = handle->data;
	if (--c->closing_handles > 0)
		return;
	metrics *m = c->m;
	buf_deinit(&c->out);
	free(c);
	m->open_conns--;
	metrics__maybe_free(m);
}

static void metrics__conn_close(struct metrics_conn *c)
{
	if (c->closing_handles > 0)
		return;
	c->closing_handles = 2;
	uv_close((uv_handle_t *)&c->tcp, metrics__conn_closed_cb);
	uv_close((uv_handle_t *)&c->timer, metrics__conn_closed_cb);
}

static void metrics__write_cb(uv_write_t *req, int status)
{
	(void)status;
	metrics__conn_close(req->data);
}

static void metrics__respond(struct metrics_conn *c, int status)
{
	static const struct {
		int code;
		const char *text;
	} reasons[] = { { 200, "OK" },
			{ 400, "Bad Request" },
			{ 404, "Not Found" },
			{ 405, "Method Not Allowed" },
			{ 431, "Request Header Fields Too Large" } };
	const char *reason = "Error";
	for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
		if (reasons[i].code == status)
			reason = reasons[i].text;
	buf body;
	buf_init(&body);
	if (status == 200) {
		for (size_t i = 0; i < c->m->n_collectors; i++)
			c->m->collectors[i].fn(&body, c->m->labels, c->m->collectors[i].arg);
	} else {
		buf_printf(&body, "%d %s\n", status, reason);
	}
	buf_printf(&c->out,
		   "HTTP/1.0 %d %s\r\nContent-Type: text/plain; version=0.0.4\r\n"
		   "Content-Length: %zu\r\nConnection: close\r\n\r\n",
		   status, reason, body.len);
	buf_append(&c->out, body.data, body.len);
	buf_deinit(&body);
	c->responded = 1;
	uv_read_stop((uv_stream_t *)&c->tcp);
	uv_timer_stop(&c->timer);
	uv_buf_t b = uv_buf_init((char *)c->out.data, (unsigned)c->out.len);
	c->write.data = c;
	if (uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, metrics__write_cb) != 0)
		metrics__conn_close(c);
}

static void metrics__alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *b)
{
	(void)suggested;
	struct metrics_conn *c = handle->data;
	b->base = c->head + c->len;
	b->len = sizeof c->head - c->len;
}

static void metrics__read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b)
{
	(void)b;
	struct metrics_conn *c = stream->data;
	if (nread < 0) {
		metrics__conn_close(c);
		return;
	}
	c->len += (size_t)nread;
	int status;
	int r = metrics_request_check(c->head, c->len, &status);
	if (r < 0)
		metrics__respond(c, 431);
	else if (r > 0)
		metrics__respond(c, status);
}

static void metrics__timeout_cb(uv_timer_t *timer)
{
	metrics__conn_close(timer->data);
}

static void metrics__connection_cb(uv_stream_t *server, int status)
{
	metrics *m = server->data;
	if (status < 0)
		return;
	struct metrics_conn *c = xcalloc(1, sizeof *c);
	c->m = m;
	buf_init(&c->out);
	uv_tcp_init(m->loop, &c->tcp);
	uv_timer_init(m->loop, &c->timer);
	c->tcp.data = c;
	c->timer.data = c;
	m->open_conns++;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
		metrics__conn_close(c);
		return;
	}
	uv_timer_start(&c->timer, metrics__timeout_cb, METRICS_READ_TIMEOUT_MS, 0);
	uv_read_start((uv_stream_t *)&c->tcp, metrics__alloc_cb, metrics__read_cb);
}

int metrics_listen(metrics *m, const char *host, int port, int *port_r, const char **error_r)
{
	struct sockaddr_storage ss;
	if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
	    uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0) {
		*error_r = "metrics: listen host must be an IP literal";
		return -1;
	}
	uv_tcp_init(m->loop, &m->listener);
	m->listener.data = m;
	m->listening = 1;
	if (uv_tcp_bind(&m->listener, (struct sockaddr *)&ss, 0) != 0 ||
	    uv_listen((uv_stream_t *)&m->listener, 64, metrics__connection_cb) != 0) {
		*error_r = "metrics: cannot listen (address in use?)";
		return -1;
	}
	if (port_r != NULL) {
		struct sockaddr_storage bound;
		int len = sizeof bound;
		uv_tcp_getsockname(&m->listener, (struct sockaddr *)&bound, &len);
		*port_r = ntohs(bound.ss_family == AF_INET6
					? ((struct sockaddr_in6 *)&bound)->sin6_port
					: ((struct sockaddr_in *)&bound)->sin_port);
	}
	return 0;
}

static void metrics__listener_closed_cb(uv_handle_t *handle)
{
	metrics *m = handle->data;
	m->listening = 0;
	metrics__maybe_free(m);
}

void metrics_destroy(metrics **mp)
{
	metrics *m = *mp;
	*mp = NULL;
	if (m == NULL)
		return;
	/* open connections finish on their own (response written, or the read
	 * timeout); the object is freed when the last one and the listener are
	 * closed */
	m->destroyed = 1;
	if (m->listening && !uv_is_closing((uv_handle_t *)&m->listener))
		uv_close((uv_handle_t *)&m->listener, metrics__listener_closed_cb);
	else
		metrics__maybe_free(m);
}
