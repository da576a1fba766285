/* Tests of rspamd.h and rspamd-response.h.
 *
 * Against a real rspamd 3.4 (tests/support/rspamd.py through
 * test-rspamd-fixture.h, started once for the group): GTUBE is refused,
 * a plain message passes, a CR/LF smuggled into a header value stays in
 * it (a raw request with the same bytes shows rspamd would have obeyed
 * the smuggled header), the cost of a check; last, rspamd stopped.
 *
 * Against sockets of the test's own: a closed port, a listener that never
 * accepts (the timeout), and a small HTTP server on the test's loop
 * ("fake") that records requests and gives canned answers, for the exact
 * request bytes, HTTP errors, oversize answers, max_inflight, the queue,
 * cancel and destroy in flight.
 *
 * Each test has its own loop and client and checks that the loop closes
 * with no handle left; ASan (the MAIL_FUZZ build) finds leaks of cancel
 * and destroy. The answer parser gets the captured answers of
 * lib/rspamd/fuzz/ and hostile ones.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "rspamd.h"
#include "test-rspamd-fixture.h"
#include "util.h"

#define CORPUS MAIL_SOURCE_DIR "/lib/rspamd/fuzz/corpus-rspamd-response/"
#define GTUBE "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
/* the longest a test runs its loop for one outcome */
#define RUN_MAX_MS 20000

static const char msg_gtube[] = "From: alice@example.com\r\n"
				"To: bob@example.net\r\n"
				"Subject: test\r\n"
				"Message-ID: <1@example.com>\r\n"
				"Date: Thu, 03 Dec 2026 00:00:00 +0000\r\n"
				"\r\n" GTUBE "\r\n";

static const char msg_ham[] = "From: Alice <alice@example.com>\r\n"
			      "To: Bob <bob@example.net>\r\n"
			      "Subject: lunch tomorrow\r\n"
			      "Message-ID: <2@example.com>\r\n"
			      "Date: Thu, 03 Dec 2026 00:00:00 +0000\r\n"
			      "MIME-Version: 1.0\r\n"
			      "Content-Type: text/plain; charset=utf-8\r\n"
			      "\r\n"
			      "Hi Bob,\r\n\r\n"
			      "shall we have lunch tomorrow at noon?\r\n\r\n"
			      "Alice\r\n";

static const char *const rcpt_bob[] = { "bob@example.net" };

static mailtest_rspamd *rspamd;

static int group_setup(void **state)
{
	(void)state;
	return mailtest_rspamd_start(&rspamd);
}

static int group_teardown(void **state)
{
	(void)state;
	mailtest_rspamd_stop(&rspamd);
	return 0;
}

/* ---- one outcome, copied ---- */

struct got {
	int called;
	enum rspamd_status status;
	enum rspamd_action action;
	double score, required;
	char symbols[RSPAMD_SYMBOLS_LEN_MAX + 1];
	char message[RSPAMD_MESSAGE_LEN_MAX + 1];
	char subject[RSPAMD_SUBJECT_LEN_MAX + 1];
	char problem[300];
	unsigned elapsed_ms;
	uint64_t at_ms; /* when the callback ran */
};

static void got_cb(const struct rspamd_result *r, void *arg)
{
	struct got *g = arg;
	g->called++;
	g->status = r->status;
	g->action = r->action;
	g->score = r->score;
	g->required = r->required_score;
	snprintf(g->symbols, sizeof g->symbols, "%s", r->symbols);
	snprintf(g->message, sizeof g->message, "%s", r->message != NULL ? r->message : "");
	snprintf(g->subject, sizeof g->subject, "%s", r->subject != NULL ? r->subject : "");
	snprintf(g->problem, sizeof g->problem, "%s", r->problem != NULL ? r->problem : "");
	g->elapsed_ms = r->elapsed_ms;
	g->at_ms = util_now_mono_ms();
	/* a problem exactly when there is no verdict */
	assert_int_equal(r->problem != NULL, r->status != RSPAMD_OK);
	assert_non_null(r->symbols);
}

struct t {
	uv_loop_t loop;
	rspamd_client *c;
};

static void t_start(struct t *t, const struct rspamd_settings *s)
{
	const char *error = NULL;
	assert_int_equal(uv_loop_init(&t->loop), 0);
	if (rspamd_client_create(&t->loop, s, &t->c, &error) < 0)
		fail_msg("rspamd_client_create: %s", error);
}

/* Destroy, let the handles close: the loop must then close cleanly. */
static void t_end(struct t *t)
{
	rspamd_client_destroy(&t->c);
	assert_null(t->c);
	uv_run(&t->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&t->loop), 0);
}

static void tick_cb(uv_timer_t *timer)
{
	(void)timer;
}

/* Run the loop until *count reaches want (or RUN_MAX_MS: a failure). A
 * ticking timer wakes the loop to look at the clock: a listening fake
 * server keeps it from ever running out. */
static void run_until(struct t *t, const int *count, int want)
{
	uint64_t deadline = util_now_mono_ms() + RUN_MAX_MS;
	uv_timer_t tick;
	uv_timer_init(&t->loop, &tick);
	uv_timer_start(&tick, tick_cb, 100, 100);
	while (*count < want) {
		if (util_now_mono_ms() > deadline)
			fail_msg("still %d of %d after %d ms", *count, want, RUN_MAX_MS);
		uv_run(&t->loop, UV_RUN_ONCE);
	}
	uv_close((uv_handle_t *)&tick, NULL);
	uv_run(&t->loop, UV_RUN_NOWAIT);
}

static void flag_cb(uv_timer_t *timer)
{
	*(int *)timer->data = 1;
}

/* Run the loop for ms milliseconds. */
static void run_for(struct t *t, unsigned ms)
{
	uv_timer_t timer;
	int done = 0;
	uv_timer_init(&t->loop, &timer);
	timer.data = &done;
	uv_update_time(&t->loop);
	uv_timer_start(&timer, flag_cb, ms, 0);
	while (!done)
		uv_run(&t->loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&timer, NULL);
	uv_run(&t->loop, UV_RUN_NOWAIT);
}

/* ---- sockets of our own ---- */

/* A port nothing listens on (bound, then closed: refused). */
static int closed_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof a;
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

/* A listener that is never accepted from: the kernel completes the
 * connection (backlog) and takes the request; no answer ever comes. */
static int silent_listener(int *port_r)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof a;
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(fd, 64), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*port_r = ntohs(a.sin_port);
	return fd;
}

/* Connections waiting in fd's backlog (accepts them to count). */
static int backlog_count(int fd)
{
	int n = 0;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 0) != 1)
			return n;
		int conn = accept(fd, NULL, NULL);
		if (conn < 0)
			return n;
		close(conn);
		n++;
	}
}

static void url_of(char *out, size_t size, int port)
{
	snprintf(out, size, "http://127.0.0.1:%d", port);
}

/* A small HTTP server on the test's loop: reads each request whole
 * (headers, then Content-Length bytes), keeps the last one, and answers
 * after delay_ms (or never, silent) with status and body; counts
 * connections open at once. */
struct fake_conn;

struct fake {
	uv_tcp_t listener;
	int port;
	int silent;
	const char *status; /* "200 OK" */
	const char *body;
	unsigned delay_ms;
	unsigned accepted, open, max_open, requests;
	buf last; /* the last request, whole */
	struct fake_conn *conns;
	int handles;
};

struct fake_conn {
	struct fake *f;
	uv_tcp_t tcp;
	uv_timer_t delay;
	uv_write_t wr;
	buf in, out;
	int handles, answered;
	struct fake_conn *next;
	char space[65536];
};

static void fake_conn_close_cb(uv_handle_t *h)
{
	struct fake_conn *fc = h->data;
	if (--fc->handles > 0)
		return;
	struct fake *f = fc->f;
	for (struct fake_conn **pp = &f->conns; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == fc) {
			*pp = fc->next;
			break;
		}
	}
	buf_deinit(&fc->in);
	buf_deinit(&fc->out);
	free(fc);
	f->open--;
}

static void fake_conn_close(struct fake_conn *fc)
{
	if (!uv_is_closing((uv_handle_t *)&fc->tcp)) {
		uv_close((uv_handle_t *)&fc->tcp, fake_conn_close_cb);
		uv_close((uv_handle_t *)&fc->delay, fake_conn_close_cb);
	}
}

static void fake_write_cb(uv_write_t *wr, int status)
{
	(void)status;
	fake_conn_close(wr->data);
}

static void fake_answer_cb(uv_timer_t *timer)
{
	struct fake_conn *fc = timer->data;
	struct fake *f = fc->f;
	buf_printf(&fc->out,
		   "HTTP/1.1 %s\r\nConnection: close\r\nContent-Type: application/json\r\n"
		   "Content-Length: %zu\r\n\r\n%s",
		   f->status, strlen(f->body), f->body);
	uv_buf_t b = uv_buf_init((char *)fc->out.data, (unsigned)fc->out.len);
	fc->wr.data = fc;
	if (uv_write(&fc->wr, (uv_stream_t *)&fc->tcp, &b, 1, fake_write_cb) < 0)
		fake_conn_close(fc);
}

static void fake_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	struct fake_conn *fc = h->data;
	(void)hint;
	*b = uv_buf_init(fc->space, sizeof fc->space);
}

/* Is the request in in whole? */
static int fake_request_done(const buf *in)
{
	const char *p = memmem(in->data, in->len, "\r\n\r\n", 4);
	if (p == NULL)
		return 0;
	size_t head = (size_t)(p - (const char *)in->data) + 4;
	size_t body = 0;
	const char *cl = memmem(in->data, head, "Content-Length: ", 16);
	if (cl != NULL)
		body = strtoul(cl + 16, NULL, 10);
	return in->len >= head + body;
}

static void fake_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct fake_conn *fc = s->data;
	struct fake *f = fc->f;
	if (n < 0) {
		fake_conn_close(fc);
		return;
	}
	buf_append(&fc->in, b->base, (size_t)n);
	if (fc->answered || !fake_request_done(&fc->in))
		return;
	fc->answered = 1;
	f->requests++;
	buf_reset(&f->last);
	buf_append(&f->last, fc->in.data, fc->in.len);
	if (!f->silent)
		uv_timer_start(&fc->delay, fake_answer_cb, f->delay_ms, 0);
}

static void fake_accept_cb(uv_stream_t *server, int status)
{
	struct fake *f = server->data;
	if (status < 0)
		return;
	struct fake_conn *fc = calloc(1, sizeof *fc);
	fc->f = f;
	buf_init(&fc->in);
	buf_init(&fc->out);
	uv_tcp_init(server->loop, &fc->tcp);
	uv_timer_init(server->loop, &fc->delay);
	fc->tcp.data = fc->delay.data = fc;
	fc->handles = 2;
	fc->next = f->conns;
	f->conns = fc;
	f->accepted++;
	if (++f->open > f->max_open)
		f->max_open = f->open;
	if (uv_accept(server, (uv_stream_t *)&fc->tcp) < 0) {
		fake_conn_close(fc);
		return;
	}
	uv_read_start((uv_stream_t *)&fc->tcp, fake_alloc_cb, fake_read_cb);
}

static void fake_start(struct fake *f, uv_loop_t *loop)
{
	if (f->status == NULL)
		f->status = "200 OK";
	if (f->body == NULL)
		f->body = "{\"action\":\"no action\",\"score\":1.5,\"required_score\":15.0,"
			  "\"symbols\":{\"A\":{\"score\":1.5}}}";
	buf_init(&f->last);
	struct sockaddr_in a;
	uv_ip4_addr("127.0.0.1", 0, &a);
	assert_int_equal(uv_tcp_init(loop, &f->listener), 0);
	assert_int_equal(uv_tcp_bind(&f->listener, (struct sockaddr *)&a, 0), 0);
	f->listener.data = f;
	assert_int_equal(uv_listen((uv_stream_t *)&f->listener, 128, fake_accept_cb), 0);
	struct sockaddr_in got;
	int len = sizeof got;
	uv_tcp_getsockname(&f->listener, (struct sockaddr *)&got, &len);
	f->port = ntohs(got.sin_port);
}

static void fake_stop(struct fake *f)
{
	uv_close((uv_handle_t *)&f->listener, NULL);
	for (struct fake_conn *fc = f->conns; fc != NULL; fc = fc->next)
		fake_conn_close(fc);
	while (f->conns != NULL)
		uv_run(f->listener.loop, UV_RUN_ONCE);
	buf_deinit(&f->last);
}

/* ---- a raw request, for the positive control of the injection test ---- */

/* POST /checkv2 with head (header lines, each ending CRLF) and body to
 * port; the answer's body into out. Blocking. */
static void raw_post(int port, const char *head, const char *body, buf *out)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
	buf req;
	buf_init(&req);
	buf_printf(&req,
		   "POST /checkv2 HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Length: %zu\r\n\r\n%s",
		   head, strlen(body), body);
	assert_int_equal(write(fd, req.data, req.len), (ssize_t)req.len);
	buf_deinit(&req);
	buf all;
	buf_init(&all);
	char chunk[4096];
	ssize_t n;
	while ((n = read(fd, chunk, sizeof chunk)) > 0) /* rspamd closes */
		buf_append(&all, chunk, (size_t)n);
	close(fd);
	const char *p = memmem(all.data, all.len, "\r\n\r\n", 4);
	assert_non_null(p);
	size_t off = (size_t)(p + 4 - (const char *)all.data);
	buf_append(out, all.data + off, all.len - off);
	buf_append(out, "", 1);
	buf_deinit(&all);
}

/* ---- the answer parser ---- */

static void read_corpus(const char *name, buf *out)
{
	char path[512];
	snprintf(path, sizeof path, "%s%s", CORPUS, name);
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		fail_msg("cannot open %s", path);
	char chunk[4096];
	size_t n;
	buf_reset(out);
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		buf_append(out, chunk, n);
	fclose(f);
}

static int parse_str(const char *json, struct rspamd_parsed *p)
{
	return rspamd_parse_response(json, strlen(json), p);
}

static void expect_parse_error(const char *json, const char *error_prefix)
{
	struct rspamd_parsed p;
	assert_int_equal(parse_str(json, &p), -1);
	if (strncmp(p.error, error_prefix, strlen(error_prefix)) != 0)
		fail_msg("%s: error \"%s\", want \"%s...\"", json, p.error, error_prefix);
	assert_string_equal(p.symbols, "");
}

/* Real answers of rspamd 3.4 (captured into lib/rspamd/fuzz/). */
static void test_parse_corpus(void **state)
{
	(void)state;
	buf b;
	buf_init(&b);
	struct rspamd_parsed p;

	read_corpus("gtube-reject.json", &b);
	assert_int_equal(rspamd_parse_response((const char *)b.data, b.len, &p), 0);
	assert_int_equal(p.action, RSPAMD_ACTION_REJECT);
	assert_true(p.score == 15.0 && p.required_score == 15.0);
	assert_string_equal(p.symbols, "GTUBE(0.00)");
	assert_string_equal(p.message, "Gtube pattern");
	assert_string_equal(p.subject, "");
	assert_int_equal(p.n_symbols, 1);

	read_corpus("ham-no-action.json", &b);
	assert_int_equal(rspamd_parse_response((const char *)b.data, b.len, &p), 0);
	assert_int_equal(p.action, RSPAMD_ACTION_NO_ACTION);
	assert_true(p.score > 3.69 && p.score < 3.71);
	assert_int_equal(p.n_symbols, 17);
	static const char ham_first[] = "HFILTER_FROMHOST_NORES_A_OR_MX(1.50),AUTH_NA(1.00),"
					"HFILTER_HELO_IP_A(1.00),HFILTER_HELO_NORES_A_OR_MX(0.30),"
					"ARC_NA(0.00),";
	assert_int_equal(strncmp(p.symbols, ham_first, sizeof ham_first - 1), 0);
	/* negative scores last */
	assert_non_null(strstr(p.symbols, ",MIME_GOOD(-0.10)"));
	assert_string_equal(p.symbols + strlen(p.symbols) - strlen("MIME_GOOD(-0.10)"),
			    "MIME_GOOD(-0.10)");

	static const struct {
		const char *file;
		enum rspamd_action action;
		const char *message, *subject, *first;
	} rows[] = {
		{ "add-header.json", RSPAMD_ACTION_ADD_HEADER, "", "",
		  "HFILTER_FROMHOST_NORES_A_OR_MX(1.50)," },
		{ "rewrite-subject.json", RSPAMD_ACTION_REWRITE_SUBJECT, "",
		  "[SPAM] lunch tomorrow", "HFILTER_FROMHOST_NORES_A_OR_MX(1.50)," },
		{ "greylist.json", RSPAMD_ACTION_GREYLIST, "", "", "HFILTER_FROMHOST" },
		{ "soft-reject-edited.json", RSPAMD_ACTION_SOFT_REJECT, "Try again later", "",
		  "HFILTER_FROMHOST" },
		{ "phish-html.json", RSPAMD_ACTION_REJECT, "", "",
		  "HFILTER_HELO_5(3.00),R_UNDISC_RCPT(3.00),HFILTER_HOSTNAME_UNKNOWN(2.50)," },
		{ "authenticated.json", RSPAMD_ACTION_NO_ACTION, "", "", "ARC_NA(0.00)," },
		{ "ham-loopback.json", RSPAMD_ACTION_NO_ACTION, "", "", "" },
		{ "empty-message.json", RSPAMD_ACTION_NO_ACTION, "", "", "" },
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		read_corpus(rows[i].file, &b);
		if (rspamd_parse_response((const char *)b.data, b.len, &p) < 0)
			fail_msg("%s: %s", rows[i].file, p.error);
		assert_int_equal(p.action, rows[i].action);
		assert_string_equal(p.message, rows[i].message);
		assert_string_equal(p.subject, rows[i].subject);
		assert_int_equal(strncmp(p.symbols, rows[i].first, strlen(rows[i].first)), 0);
		assert_int_equal(p.n_unseen, 0);
	}
	read_corpus("empty-message.json", &b);
	assert_int_equal(rspamd_parse_response((const char *)b.data, b.len, &p), 0);
	assert_string_equal(p.symbols, "");
	assert_int_equal(p.n_symbols, 0);

	/* what rspamd says to a request it cannot handle */
	read_corpus("error-invalid-command.json", &b);
	assert_int_equal(rspamd_parse_response((const char *)b.data, b.len, &p), -1);
	assert_string_equal(p.error, "rspamd error: invalid command");

	/* every proper prefix of real answers is refused, never half read */
	static const char *const whole[] = { "gtube-reject.json", "phish-html.json" };
	for (size_t w = 0; w < 2; w++) {
		read_corpus(whole[w], &b);
		size_t len = b.len;
		while (len > 0 && (b.data[len - 1] == '\n' || b.data[len - 1] == ' '))
			len--;
		for (size_t n = 0; n < len; n++) {
			if (rspamd_parse_response((const char *)b.data, n, &p) != -1)
				fail_msg("%s: the first %zu bytes parsed", whole[w], n);
			assert_string_equal(p.symbols, "");
		}
		assert_int_equal(rspamd_parse_response((const char *)b.data, len, &p), 0);
	}
	buf_deinit(&b);
}

static void test_parse_hostile(void **state)
{
	(void)state;
	struct rspamd_parsed p;
	expect_parse_error("", "not JSON");
	expect_parse_error("[]", "not a JSON object");
	expect_parse_error("\"reject\"", "not JSON"); /* jansson wants an array or object */
	expect_parse_error("{}", "no action");
	expect_parse_error("{\"error\":{\"x\":1}}", "no action");
	expect_parse_error("{\"action\":1,\"score\":1}", "action is not a string");
	expect_parse_error("{\"action\":\"explode\",\"score\":1}", "unknown action \"explode\"");
	expect_parse_error("{\"action\":\"no action with a very long name indeed\",\"score\":1}",
			   "unknown action");
	expect_parse_error("{\"action\":\"reject\"}", "no score");
	expect_parse_error("{\"action\":\"reject\",\"score\":\"15\"}", "no score");
	expect_parse_error("{\"action\":\"reject\",\"score\":1e400}", "not JSON");
	expect_parse_error("{\"action\":\"no action\",\"action\":\"reject\",\"score\":1}",
			   "not JSON");
	expect_parse_error("{\"action\":\"reject\",\"score\":1} x", "not JSON");
	expect_parse_error("{\"action\":\"re\\u0000ject\",\"score\":1}", "not JSON");
	expect_parse_error("{\"action\":\"reject\",\"score\":1,\"x\":\"\xff\xfe\"}", "not JSON");
	/* an error text with control bytes comes out printable */
	expect_parse_error("{\"error\":\"a\\r\\nb\"}", "rspamd error: a??b");

	/* rspamd's other actions and spellings */
	assert_int_equal(parse_str("{\"action\":\"discard\",\"score\":1}", &p), 0);
	assert_int_equal(p.action, RSPAMD_ACTION_REJECT);
	assert_int_equal(parse_str("{\"action\":\"quarantine\",\"score\":1}", &p), 0);
	assert_int_equal(p.action, RSPAMD_ACTION_ADD_HEADER);
	assert_int_equal(parse_str("{\"action\":\"soft_reject\",\"score\":1}", &p), 0);
	assert_int_equal(p.action, RSPAMD_ACTION_SOFT_REJECT);
	/* integers are numbers; huge ones are clamped; required_score optional */
	assert_int_equal(parse_str("{\"action\":\"add header\",\"score\":7}", &p), 0);
	assert_true(p.score == 7.0 && p.required_score == 0.0);
	assert_int_equal(parse_str("{\"action\":\"add header\",\"score\":1e300,"
				   "\"required_score\":-1e300}",
				   &p),
			 0);
	assert_true(p.score == RSPAMD_SCORE_ABS_MAX && p.required_score == -RSPAMD_SCORE_ABS_MAX);

	/* symbol names from the network: only safe bytes, cut, none empty;
	 * a score that is no number counts 0 */
	assert_int_equal(parse_str("{\"action\":\"reject\",\"score\":1,\"symbols\":{"
				   "\"A\\r\\nX-Evil: 1\":{\"score\":2},"
				   "\"\xc3\x84\xc3\x96\":{\"score\":1},"
				   "\"\":{\"score\":5},"
				   "\"N\":{\"score\":\"x\"},"
				   "\"M\":5,"
				   "\"L\":{\"score\":-1e300}}}",
				   &p),
			 0);
	assert_string_equal(p.symbols,
			    "A__X-Evil__1(2.00),____(1.00),M(0.00),N(0.00),L(-1000000.00)");
	assert_int_equal(p.n_symbols, 6);
	char json[4096];
	char longname[201];
	memset(longname, 'Q', 200);
	longname[200] = '\0';
	snprintf(json, sizeof json,
		 "{\"action\":\"reject\",\"score\":1,\"symbols\":{\"%s\":{\"score\":1}}}",
		 longname);
	assert_int_equal(parse_str(json, &p), 0);
	assert_int_equal(strlen(p.symbols), RSPAMD_SYMBOL_NAME_MAX + strlen("(1.00)"));

	/* many symbols: RSPAMD_PARSE_SYMBOLS_MAX looked at, the list bounded */
	buf b;
	buf_init(&b);
	buf_append_str(&b, "{\"action\":\"reject\",\"score\":1,\"symbols\":{");
	for (int i = 0; i < 3000; i++)
		buf_printf(&b, "%s\"SYM_%d\":{\"score\":%d.5}", i > 0 ? "," : "", i, i % 100);
	buf_append_str(&b, "}}");
	assert_int_equal(rspamd_parse_response((const char *)b.data, b.len, &p), 0);
	assert_int_equal(p.n_symbols, 3000);
	assert_int_equal(p.n_unseen, 3000 - RSPAMD_PARSE_SYMBOLS_MAX);
	assert_true(strlen(p.symbols) <= RSPAMD_SYMBOLS_LEN_MAX);
	assert_true(strlen(p.symbols) > RSPAMD_SYMBOLS_LEN_MAX - 40);
	assert_int_equal(strncmp(p.symbols, "SYM_199(99.50),SYM_299(99.50),", 30), 0);
	assert_int_not_equal(p.symbols[strlen(p.symbols) - 1], ',');

	/* message and subject: no control bytes, cut at a UTF-8 boundary */
	assert_int_equal(parse_str("{\"action\":\"reject\",\"score\":1,\"messages\":{"
				   "\"smtp_message\":\"spam\\r\\n250 ok\\u0007\"}}",
				   &p),
			 0);
	assert_string_equal(p.message, "spam  250 ok ");
	buf_reset(&b);
	buf_append_str(&b, "{\"action\":\"rewrite subject\",\"score\":9,\"subject\":\"");
	for (int i = 0; i < 1000; i++)
		buf_append_str(&b, "\xc3\xa9"); /* é */
	buf_append_str(&b, "\"}");
	assert_int_equal(rspamd_parse_response((const char *)b.data, b.len, &p), 0);
	assert_int_equal(strlen(p.subject), RSPAMD_SUBJECT_LEN_MAX);
	assert_int_equal(strlen(p.subject) % 2, 0);

	/* nesting deeper than jansson allows; a body over the hard bound */
	buf_reset(&b);
	buf_append_str(&b, "{\"action\":\"reject\",\"score\":1,\"x\":");
	for (int i = 0; i < 100000; i++)
		buf_append(&b, "[", 1);
	assert_int_equal(rspamd_parse_response((const char *)b.data, b.len, &p), -1);
	buf_reset(&b);
	buf_append_str(&b, "{\"action\":\"reject\",\"score\":1,\"x\":\"");
	while (b.len < RSPAMD_RESPONSE_BYTES_MAX)
		buf_append_str(&b, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
	buf_append_str(&b, "\"}");
	assert_int_equal(rspamd_parse_response((const char *)b.data, b.len, &p), -1);
	assert_int_equal(strncmp(p.error, "over ", 5), 0);
	buf_deinit(&b);

	assert_string_equal(rspamd_action_name(RSPAMD_ACTION_ADD_HEADER), "add header");
	assert_string_equal(rspamd_action_name(RSPAMD_ACTION_SOFT_REJECT), "soft reject");
	assert_string_equal(rspamd_action_name((enum rspamd_action)99), "unknown");
}

/* ---- X-Spam fields and the reply table ---- */

static void test_spam_headers(void **state)
{
	(void)state;
	buf b;
	buf_init(&b);
	struct rspamd_result r = { .status = RSPAMD_OK,
				   .action = RSPAMD_ACTION_ADD_HEADER,
				   .score = 7.2,
				   .required_score = 15,
				   .symbols = "A(2.50),B(1.00)" };
	assert_int_equal(rspamd_spam_headers(&r, &b), 0);
	buf_append(&b, "", 1);
	assert_string_equal((const char *)b.data, "X-Spam-Flag: YES\r\n"
						  "X-Spam-Score: 7.20 / 15.00\r\n"
						  "X-Spam-Action: add header\r\n"
						  "X-Spam-Symbols: A(2.50),B(1.00)\r\n");
	/* no symbols: no such line; no action: NO */
	buf_reset(&b);
	r.action = RSPAMD_ACTION_NO_ACTION;
	r.symbols = "";
	r.score = -0.1;
	assert_int_equal(rspamd_spam_headers(&r, &b), 0);
	buf_append(&b, "", 1);
	assert_string_equal((const char *)b.data, "X-Spam-Flag: NO\r\n"
						  "X-Spam-Score: -0.10 / 15.00\r\n"
						  "X-Spam-Action: no action\r\n");
	/* bytes a caller's struct should not hold are dropped; NaN is 0 */
	buf_reset(&b);
	r.symbols = "A(1.00)\r\nX-Evil: yes";
	r.score = NAN;
	assert_int_equal(rspamd_spam_headers(&r, &b), 0);
	buf_append(&b, "", 1);
	assert_non_null(strstr((const char *)b.data, "X-Spam-Symbols: A(1.00)X-Evilyes\r\n"));
	assert_non_null(strstr((const char *)b.data, "X-Spam-Score: 0.00 / 15.00\r\n"));

	/* a real list: folded after commas before column 78; unfolded it is
	 * the list */
	buf json;
	buf_init(&json);
	read_corpus("phish-html.json", &json);
	struct rspamd_parsed p;
	assert_int_equal(rspamd_parse_response((const char *)json.data, json.len, &p), 0);
	buf_deinit(&json);
	r.action = p.action;
	r.score = p.score;
	r.required_score = p.required_score;
	r.symbols = p.symbols;
	buf_reset(&b);
	assert_int_equal(rspamd_spam_headers(&r, &b), 0);
	buf_append(&b, "", 1);
	const char *text = (const char *)b.data;
	static const char top[] = "X-Spam-Flag: YES\r\nX-Spam-Score: 21.50 / 15.00\r\n";
	assert_int_equal(strncmp(text, top, sizeof top - 1), 0);
	int folds = 0;
	for (const char *line = text; *line != '\0';) {
		const char *end = strstr(line, "\r\n");
		assert_non_null(end);
		assert_true(end - line <= 78);
		if (line[0] == '\t') {
			folds++;
			assert_int_equal(line[-3], ','); /* the fold follows a comma */
		}
		line = end + 2;
	}
	assert_true(folds >= 3);
	const char *sym = strstr(text, "X-Spam-Symbols: ") + 16;
	char unfolded[RSPAMD_SYMBOLS_LEN_MAX + 1];
	size_t n = 0;
	for (const char *q = sym; *q != '\0' && !(q[0] == '\r' && q[2] != '\t'); q++) {
		if (*q == '\r' || *q == '\n' || *q == '\t')
			continue;
		unfolded[n++] = *q;
	}
	unfolded[n] = '\0';
	assert_string_equal(unfolded, p.symbols);

	/* no verdict: nothing */
	buf_reset(&b);
	r.status = RSPAMD_UNAVAILABLE;
	assert_int_equal(rspamd_spam_headers(&r, &b), -1);
	assert_int_equal(b.len, 0);
	buf_deinit(&b);
}

static void test_reply_table(void **state)
{
	(void)state;
	struct rspamd_result r = { .status = RSPAMD_OK, .symbols = "" };
	const struct rspamd_reply *rep;
	r.action = RSPAMD_ACTION_REJECT;
	rep = rspamd_result_reply(&r, 0);
	assert_int_equal(rep->smtp_code, 550);
	assert_string_equal(rep->smtp_enh, "5.7.1");
	r.action = RSPAMD_ACTION_SOFT_REJECT;
	rep = rspamd_result_reply(&r, 0);
	assert_int_equal(rep->smtp_code, 451);
	assert_string_equal(rep->smtp_enh, "4.7.1");
	r.action = RSPAMD_ACTION_ADD_HEADER;
	rep = rspamd_result_reply(&r, 1);
	assert_int_equal(rep->smtp_code, 0);
	assert_int_equal(rep->flags, RSPAMD_REPLY_HEADERS | RSPAMD_REPLY_JUNK);
	r.action = RSPAMD_ACTION_REWRITE_SUBJECT;
	assert_int_equal(rspamd_result_reply(&r, 0)->flags,
			 RSPAMD_REPLY_HEADERS | RSPAMD_REPLY_JUNK);
	r.subject = "[SPAM] x";
	assert_int_equal(rspamd_result_reply(&r, 0)->flags,
			 RSPAMD_REPLY_HEADERS | RSPAMD_REPLY_JUNK | RSPAMD_REPLY_SUBJECT);
	r.action = RSPAMD_ACTION_GREYLIST;
	assert_int_equal(rspamd_result_reply(&r, 0)->flags, RSPAMD_REPLY_GREYLIST);
	r.action = RSPAMD_ACTION_NO_ACTION;
	rep = rspamd_result_reply(&r, 1);
	assert_int_equal(rep->smtp_code, 0);
	assert_int_equal(rep->flags, 0);
	/* no verdict: passes, or 451 when fail-closed; too big always passes */
	r.status = RSPAMD_UNAVAILABLE;
	assert_int_equal(rspamd_result_reply(&r, 0)->smtp_code, 0);
	assert_int_equal(rspamd_result_reply(&r, 0)->flags, RSPAMD_REPLY_UNCHECKED);
	assert_int_equal(rspamd_result_reply(&r, 1)->smtp_code, 451);
	assert_string_equal(rspamd_result_reply(&r, 1)->smtp_enh, "4.7.1");
	r.status = RSPAMD_BUSY;
	assert_int_equal(rspamd_result_reply(&r, 1)->smtp_code, 451);
	r.status = RSPAMD_SKIPPED;
	assert_int_equal(rspamd_result_reply(&r, 1)->smtp_code, 0);
	assert_string_equal(rspamd_status_name(RSPAMD_BUSY), "busy");
}

/* ---- settings ---- */

static void test_settings(void **state)
{
	(void)state;
	uv_loop_t loop;
	assert_int_equal(uv_loop_init(&loop), 0);
	rspamd_client *c = NULL;
	const char *error = NULL;
	/* NULL and zeros: the defaults */
	assert_int_equal(rspamd_client_create(&loop, NULL, &c, &error), 0);
	rspamd_client_destroy(&c);
	struct rspamd_settings s = { 0 };
	assert_int_equal(rspamd_client_create(&loop, &s, &c, &error), 0);
	rspamd_client_destroy(&c);
	s = rspamd_settings_default();
	assert_int_equal(s.timeout_ms, 10000);
	assert_int_equal(s.max_inflight, 64);
	assert_int_equal(s.max_message_bytes, 32u * 1024 * 1024);
	assert_int_equal(s.max_response_bytes, 256u * 1024);
	static const struct {
		struct rspamd_settings s;
		const char *error;
	} bad[] = {
		{ { .timeout_ms = 10 }, "rspamd timeout_ms out of range" },
		{ { .timeout_ms = 600001 }, "rspamd timeout_ms out of range" },
		{ { .max_inflight = 4097 }, "rspamd max_inflight out of range" },
		{ { .queue_max = 1000001 }, "rspamd queue_max out of range" },
		{ { .max_message_bytes = 100 }, "rspamd max_message_bytes out of range" },
		{ { .max_response_bytes = 100 }, "rspamd max_response_bytes out of range" },
		{ { .max_response_bytes = RSPAMD_RESPONSE_BYTES_MAX + 1 },
		  "rspamd max_response_bytes out of range" },
		{ { .url = "ftp://127.0.0.1:11333" }, "rspamd url: not http:// or https://" },
		{ { .url = "http://" }, "rspamd url: no host" },
		{ { .url = "http:///" }, "rspamd url: no host" },
		{ { .url = "http://127.0.0.1:11333/\r\nX: y" }, "rspamd url: not printable ASCII" },
		{ { .url = "http://rspamd host" }, "rspamd url: not printable ASCII" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		error = NULL;
		assert_int_equal(rspamd_client_create(&loop, &bad[i].s, &c, &error), -1);
		assert_null(c);
		assert_string_equal(error, bad[i].error);
	}
	s = (struct rspamd_settings){ .url = "https://rspamd.example:11333/" };
	assert_int_equal(rspamd_client_create(&loop, &s, &c, &error), 0);
	rspamd_client_destroy(&c);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- against a real rspamd ---- */

static struct rspamd_settings real_settings(void)
{
	struct rspamd_settings s = rspamd_settings_default();
	s.url = mailtest_rspamd_url(rspamd);
	return s;
}

/* One check of msg with req's envelope; the loop runs until its callback. */
static void check_one(const struct rspamd_settings *s, const struct rspamd_request *req,
		      struct got *g)
{
	struct t t;
	t_start(&t, s);
	memset(g, 0, sizeof *g);
	rspamd_check *chk = rspamd_check_start(t.c, req, got_cb, g);
	assert_non_null(chk);
	assert_int_equal(g->called, 0); /* never inside start */
	run_until(&t, &g->called, 1);
	assert_int_equal(g->called, 1);
	struct rspamd_stats st;
	rspamd_client_stats(t.c, &st);
	assert_int_equal(st.checks, 1);
	assert_int_equal(st.inflight + st.queued, 0);
	t_end(&t);
}

static struct rspamd_request req_of(const char *msg, const char *ip)
{
	struct rspamd_request req = {
		.msg = msg,
		.len = strlen(msg),
		.client_ip = ip,
		.helo = "mail.example.com",
		.mail_from = "alice@example.com",
		.rcpts = rcpt_bob,
		.n_rcpts = 1,
		.queue_id = "T1",
		.hostname = "mail.example.com",
	};
	return req;
}

static void test_gtube(void **state)
{
	(void)state;
	struct rspamd_settings s = real_settings();
	struct rspamd_request req = req_of(msg_gtube, "192.0.2.1");
	struct got g;
	check_one(&s, &req, &g);
	if (g.status != RSPAMD_OK)
		fail_msg("GTUBE: %s: %s", rspamd_status_name(g.status), g.problem);
	assert_int_equal(g.action, RSPAMD_ACTION_REJECT);
	assert_true(g.score >= 15.0);
	assert_non_null(strstr(g.symbols, "GTUBE("));
	assert_string_equal(g.message, "Gtube pattern");
	struct rspamd_result r = { .status = g.status, .action = g.action };
	assert_int_equal(rspamd_result_reply(&r, 0)->smtp_code, 550);
	print_message("gtube: %s score=%.2f/%.2f symbols=%s in %u ms\n",
		      rspamd_action_name(g.action), g.score, g.required, g.symbols, g.elapsed_ms);
	/* from a loopback client and with no envelope at all, too */
	struct rspamd_request bare = { .msg = msg_gtube, .len = strlen(msg_gtube) };
	check_one(&s, &bare, &g);
	assert_int_equal(g.status, RSPAMD_OK);
	assert_int_equal(g.action, RSPAMD_ACTION_REJECT);
}

static void test_ham(void **state)
{
	(void)state;
	struct rspamd_settings s = real_settings();
	/* a loopback client (as the end-to-end tests send): rspamd skips
	 * the checks of the network, the verdict does not depend on the
	 * machine's DNS */
	struct rspamd_request req = req_of(msg_ham, "127.0.0.1");
	struct got g;
	check_one(&s, &req, &g);
	if (g.status != RSPAMD_OK)
		fail_msg("ham: %s: %s", rspamd_status_name(g.status), g.problem);
	assert_int_equal(g.action, RSPAMD_ACTION_NO_ACTION);
	assert_true(g.score < 1.0);
	assert_true(g.required == 15.0);
	struct rspamd_result r = { .status = g.status, .action = g.action };
	assert_int_equal(rspamd_result_reply(&r, 0)->smtp_code, 0);
	assert_int_equal(rspamd_result_reply(&r, 0)->flags, 0);
	print_message("ham (127.0.0.1): %s score=%.2f symbols=%s in %u ms\n",
		      rspamd_action_name(g.action), g.score, g.symbols, g.elapsed_ms);
	/* a remote client: here without working DNS its names do not
	 * resolve (HFILTER_*), which costs points but must not refuse it */
	req = req_of(msg_ham, "192.0.2.1");
	check_one(&s, &req, &g);
	assert_int_equal(g.status, RSPAMD_OK);
	assert_true(g.action < RSPAMD_ACTION_SOFT_REJECT);
	print_message("ham (192.0.2.1): %s score=%.2f symbols=%s in %u ms\n",
		      rspamd_action_name(g.action), g.score, g.symbols, g.elapsed_ms);
	/* an authenticated user, the null reverse-path, two recipients */
	static const char *const two[] = { "bob@example.net", "carol@example.net" };
	req.user = "alice@example.com";
	req.mail_from = "";
	req.rcpts = two;
	req.n_rcpts = 2;
	check_one(&s, &req, &g);
	assert_int_equal(g.status, RSPAMD_OK);
	assert_true(g.action < RSPAMD_ACTION_SOFT_REJECT);

	/* a body over a MiB (libcurl would ask "Expect: 100-continue" and
	 * wait for it; rspamd reads it whole) */
	buf big;
	buf_init(&big);
	buf_append_str(&big, msg_ham);
	while (big.len < 3u * 1024 * 1024)
		buf_append_str(&big, "All work and no play makes Jack a dull boy, said Alice.\r\n");
	req = req_of((const char *)big.data, "127.0.0.1");
	req.len = big.len;
	check_one(&s, &req, &g);
	if (g.status != RSPAMD_OK)
		fail_msg("3 MiB: %s: %s", rspamd_status_name(g.status), g.problem);
	assert_true(g.action < RSPAMD_ACTION_SOFT_REJECT);
	print_message("ham of %zu bytes: %s score=%.2f in %u ms\n", big.len,
		      rspamd_action_name(g.action), g.score, g.elapsed_ms);
	buf_deinit(&big);
}

/* A CR LF in a header value would let the SMTP client add request headers
 * of its own: rspamd obeys "Settings:" (per-message thresholds). The raw
 * request shows it; through the client the bytes stay inside Helo. */
static void test_injection_real(void **state)
{
	(void)state;
	static const char evil[] = "Settings: {\"actions\":{\"reject\":-100}}";
	int port = atoi(strrchr(mailtest_rspamd_url(rspamd), ':') + 1);
	buf head, body;
	buf_init(&head);
	buf_init(&body);
	buf_printf(&head, "IP: 127.0.0.1\r\nHelo: mail.example.com\r\n%s\r\n", evil);
	raw_post(port, (const char *)head.data, msg_ham, &body);
	struct rspamd_parsed p;
	assert_int_equal(rspamd_parse_response((const char *)body.data, body.len - 1, &p), 0);
	assert_int_equal(p.action, RSPAMD_ACTION_REJECT); /* it would have worked */
	buf_deinit(&head);
	buf_deinit(&body);

	struct rspamd_settings s = real_settings();
	struct rspamd_request req = req_of(msg_ham, "127.0.0.1");
	char helo[200], from[200], rcpt[200];
	snprintf(helo, sizeof helo, "mail.example.com\r\n%s", evil);
	snprintf(from, sizeof from, "alice@example.com\n%s", evil);
	snprintf(rcpt, sizeof rcpt, "bob@example.net\r%s", evil);
	const char *rcpts[] = { rcpt };
	req.helo = helo;
	req.mail_from = from;
	req.rcpts = rcpts;
	req.hostname = helo;
	req.user = from;
	req.queue_id = rcpt;
	struct got g;
	check_one(&s, &req, &g);
	assert_int_equal(g.status, RSPAMD_OK);
	/* the thresholds are rspamd's own: no Settings reached it (the odd
	 * names themselves may cost points) */
	if (g.required != 15.0 || g.action == RSPAMD_ACTION_REJECT)
		fail_msg("injected: %s required=%.2f symbols=%s", rspamd_action_name(g.action),
			 g.required, g.symbols);
	print_message("injection attempts: %s score=%.2f/%.2f symbols=%s\n",
		      rspamd_action_name(g.action), g.score, g.required, g.symbols);
}

static void cost_cb(const struct rspamd_result *r, void *arg)
{
	int *done = arg;
	assert_int_equal(r->status, RSPAMD_OK);
	(*done)++;
}

/* What a check costs against the local rspamd (one normal worker): one at
 * a time (latency) and 64 at once (throughput, max_inflight 16).
 * Printed, not asserted (a shared machine). A loopback client without
 * envelope domains costs rspamd no DNS: that is the client and rspamd's
 * CPU. A remote client with HELO and MAIL FROM domains costs ~20 lookups
 * (3 from loopback), whose time is the resolver's (here a sandbox's,
 * which drops a few: rspamd then waits its 1 s DNS timeout), so it is
 * measured one at a time only. */
static void test_cost(void **state)
{
	(void)state;
	struct rspamd_settings s = real_settings();
	s.max_inflight = 16;
	static const struct {
		const char *name, *msg, *ip;
		int envelope, many;
	} kinds[] = {
		{ "ham, loopback client, no DNS", msg_ham, "127.0.0.1", 0, 64 },
		{ "gtube", msg_gtube, "192.0.2.1", 1, 64 },
		{ "ham, remote client, DNS", msg_ham, "192.0.2.1", 1, 0 },
	};
	for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
		struct t t;
		t_start(&t, &s);
		struct rspamd_request req = req_of(kinds[k].msg, kinds[k].ip);
		if (!kinds[k].envelope)
			req.helo = req.mail_from = req.hostname = NULL;
		const int n = 20;
		int done = 0;
		unsigned slowest = 0;
		uint64_t t0 = util_now_mono_ms();
		for (int i = 0; i < n; i++) {
			uint64_t t1 = util_now_mono_ms();
			rspamd_check_start(t.c, &req, cost_cb, &done);
			run_until(&t, &done, i + 1);
			unsigned ms = (unsigned)(util_now_mono_ms() - t1);
			slowest = ms > slowest ? ms : slowest;
		}
		uint64_t one = util_now_mono_ms() - t0;
		print_message("cost: %s: one at a time %.1f ms/check (%d checks, slowest %u ms)\n",
			      kinds[k].name, (double)one / n, n, slowest);
		const int m = kinds[k].many;
		if (m > 0) {
			done = 0;
			t0 = util_now_mono_ms();
			for (int i = 0; i < m; i++)
				rspamd_check_start(t.c, &req, cost_cb, &done);
			run_until(&t, &done, m);
			uint64_t many = util_now_mono_ms() - t0;
			print_message("cost: %s: %d at once (max_inflight 16) in %llu ms: %.2f "
				      "ms/check, %.0f checks/s\n",
				      kinds[k].name, m, (unsigned long long)many, (double)many / m,
				      many > 0 ? 1000.0 * m / (double)many : 0.0);
		}
		t_end(&t);
	}
}

/* Last: rspamd gone, the client answers at once. */
static void test_rspamd_stopped(void **state)
{
	(void)state;
	char url[128];
	snprintf(url, sizeof url, "%s", mailtest_rspamd_url(rspamd));
	mailtest_rspamd_stop(&rspamd);
	struct rspamd_settings s = rspamd_settings_default();
	s.url = url;
	struct rspamd_request req = req_of(msg_ham, "192.0.2.1");
	struct got g;
	check_one(&s, &req, &g);
	assert_int_equal(g.status, RSPAMD_UNAVAILABLE);
	assert_true(g.elapsed_ms < 1000);
	print_message("rspamd stopped: %s in %u ms\n", g.problem, g.elapsed_ms);
}

/* ---- against sockets of our own ---- */

static struct rspamd_settings port_settings(char *url, size_t size, int port)
{
	url_of(url, size, port);
	struct rspamd_settings s = rspamd_settings_default();
	s.url = url;
	return s;
}

/* The lines of the head of f's last request, and its body. */
static int head_has(const buf *req, const char *line)
{
	size_t n = strlen(line);
	const char *p = (const char *)req->data, *end = p + req->len;
	while (p < end) {
		const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
		if (eol == NULL || eol == p)
			return 0; /* the end of the head */
		if ((size_t)(eol - p) == n && memcmp(p, line, n) == 0)
			return 1;
		p = eol + 2;
	}
	return 0;
}

static int head_count(const buf *req, const char *prefix)
{
	int count = 0;
	size_t n = strlen(prefix);
	const char *p = (const char *)req->data, *end = p + req->len;
	while (p < end) {
		const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
		if (eol == NULL || eol == p)
			break;
		if ((size_t)(eol - p) >= n && strncasecmp(p, prefix, n) == 0)
			count++;
		p = eol + 2;
	}
	return count;
}

static const char *body_of(const buf *req)
{
	const char *p = memmem(req->data, req->len, "\r\n\r\n", 4);
	return p != NULL ? p + 4 : "";
}

/* The request's exact bytes: every header, values made safe, the body. */
static void test_request(void **state)
{
	(void)state;
	struct t t;
	struct fake f = { 0 };
	t_start(&t, NULL);
	fake_start(&f, &t.loop);
	rspamd_client_destroy(&t.c);
	char url[64];
	struct rspamd_settings s = port_settings(url, sizeof url, f.port);
	const char *error;
	assert_int_equal(rspamd_client_create(&t.loop, &s, &t.c, &error), 0);

	static const char *const rcpts[] = { "r1@example.net", "r2@example.net\r\n",
					     "r3@example.net" };
	struct rspamd_request req = {
		.msg = msg_ham,
		.len = strlen(msg_ham),
		.client_ip = "2001:db8::25",
		.helo = "evil\r\nSettings: x",
		.mail_from = "a@example.com\nUser: admin",
		.rcpts = rcpts,
		.n_rcpts = 3,
		.queue_id = "Q1",
		.hostname = "h.example\x7f",
		.user = "u@example.com",
	};
	struct got g = { 0 };
	rspamd_check_start(t.c, &req, got_cb, &g);
	run_until(&t, &g.called, 1);
	assert_int_equal(g.status, RSPAMD_OK);
	assert_string_equal(g.symbols, "A(1.50)");
	assert_int_equal(f.requests, 1);
	const buf *r = &f.last;
	assert_int_equal(strncmp((const char *)r->data, "POST /checkv2 HTTP/1.1\r\n", 24), 0);
	assert_true(head_has(r, "IP: 2001:db8::25"));
	assert_true(head_has(r, "Helo: evil??Settings: x"));
	assert_true(head_has(r, "From: a@example.com?User: admin"));
	assert_true(head_has(r, "Rcpt: r1@example.net"));
	assert_true(head_has(r, "Rcpt: r2@example.net??"));
	assert_true(head_has(r, "Rcpt: r3@example.net"));
	assert_true(head_has(r, "Queue-Id: Q1"));
	assert_true(head_has(r, "Hostname: h.example?"));
	assert_true(head_has(r, "User: u@example.com"));
	assert_int_equal(head_count(r, "Settings:"), 0);
	assert_int_equal(head_count(r, "User:"), 1);
	assert_int_equal(head_count(r, "Rcpt:"), 3);
	/* what curl would add on its own is not there */
	assert_int_equal(head_count(r, "Content-Type:"), 0);
	assert_int_equal(head_count(r, "Expect:"), 0);
	char cl[64];
	snprintf(cl, sizeof cl, "Content-Length: %zu", strlen(msg_ham));
	assert_true(head_has(r, cl));
	assert_string_equal(body_of(r), msg_ham);

	/* an address that is no literal is not sent; "" is <>; NULL and ""
	 * fields are not sent; recipients and values bounded */
	char **many = calloc(RSPAMD_RCPTS_MAX + 500, sizeof *many);
	for (size_t i = 0; i < RSPAMD_RCPTS_MAX + 500; i++) {
		many[i] = malloc(32);
		snprintf(many[i], 32, "r%zu@example.net", i);
	}
	char *helo = malloc(5000);
	memset(helo, 'h', 4999);
	helo[4999] = '\0';
	struct rspamd_request req2 = {
		.msg = "",
		.len = 0,
		.client_ip = "192.0.2.1\r\nX: y",
		.helo = helo,
		.mail_from = "",
		.rcpts = (const char *const *)many,
		.n_rcpts = RSPAMD_RCPTS_MAX + 500,
		.queue_id = "",
	};
	memset(&g, 0, sizeof g);
	rspamd_check_start(t.c, &req2, got_cb, &g);
	run_until(&t, &g.called, 1);
	assert_int_equal(g.status, RSPAMD_OK);
	assert_int_equal(head_count(r, "IP:"), 0);
	assert_true(head_has(r, "From: <>"));
	assert_int_equal(head_count(r, "Rcpt:"), (int)RSPAMD_RCPTS_MAX);
	assert_int_equal(head_count(r, "Queue-Id:"), 0);
	assert_int_equal(head_count(r, "Hostname:"), 0);
	assert_int_equal(head_count(r, "User:"), 0);
	assert_true(head_has(r, "Content-Length: 0"));
	char want[RSPAMD_HEADER_VALUE_MAX + 16];
	snprintf(want, sizeof want, "Helo: %.*s", (int)RSPAMD_HEADER_VALUE_MAX, helo);
	assert_true(head_has(r, want));
	/* no mail_from at all: no From */
	req2.mail_from = NULL;
	req2.n_rcpts = 0;
	memset(&g, 0, sizeof g);
	rspamd_check_start(t.c, &req2, got_cb, &g);
	run_until(&t, &g.called, 1);
	assert_int_equal(head_count(r, "From:"), 0);
	for (size_t i = 0; i < RSPAMD_RCPTS_MAX + 500; i++)
		free(many[i]);
	free(many);
	free(helo);

	fake_stop(&f);
	t_end(&t);
}

static void test_closed_port(void **state)
{
	(void)state;
	char url[64];
	struct rspamd_settings s = port_settings(url, sizeof url, closed_port());
	struct rspamd_request req = req_of(msg_ham, "192.0.2.1");
	struct got g;
	check_one(&s, &req, &g);
	assert_int_equal(g.status, RSPAMD_UNAVAILABLE);
	assert_int_equal(g.action, RSPAMD_ACTION_NO_ACTION);
	assert_string_equal(g.symbols, "");
	assert_true(g.elapsed_ms < 1000);
	assert_non_null(strstr(g.problem, "connect"));
	print_message("closed port: %s in %u ms\n", g.problem, g.elapsed_ms);
}

static void test_silent_timeout(void **state)
{
	(void)state;
	int port;
	int fd = silent_listener(&port);
	char url[64];
	struct rspamd_settings s = port_settings(url, sizeof url, port);
	s.timeout_ms = 300;
	struct t t;
	t_start(&t, &s);
	struct rspamd_request req = req_of(msg_ham, "192.0.2.1");
	struct got g = { 0 };
	uint64_t t0 = util_now_mono_ms();
	rspamd_check_start(t.c, &req, got_cb, &g);
	run_until(&t, &g.called, 1);
	uint64_t took = util_now_mono_ms() - t0;
	assert_int_equal(g.status, RSPAMD_UNAVAILABLE);
	assert_string_equal(g.problem, "timed out after 300 ms");
	assert_true(took >= 295 && took < 2000);
	assert_true(g.elapsed_ms >= 295 && g.elapsed_ms < 2000);
	struct rspamd_stats st;
	rspamd_client_stats(t.c, &st);
	assert_int_equal(st.unavailable, 1);
	assert_int_equal(st.timeouts, 1);
	assert_int_equal(backlog_count(fd), 1);
	t_end(&t);
	close(fd);
	print_message("silent listener: %s after %llu ms\n", g.problem, (unsigned long long)took);
}

/* Answers that are no verdict. */
static void test_http_errors(void **state)
{
	(void)state;
	static const struct {
		const char *status, *body, *problem;
	} rows[] = {
		{ "500 invalid command", "{\"error\":\"invalid command\",\"error_domain\":\"x\"}",
		  "HTTP 500: invalid command" },
		{ "404 Not Found", "nothing here", "HTTP 404" },
		{ "200 OK", "<html>proxy error</html>", "bad answer: not JSON" },
		{ "200 OK", "{\"action\":\"explode\",\"score\":1}", "bad answer: unknown action" },
		{ "200 OK", "", "bad answer: not JSON" },
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct t t;
		struct fake f = { .status = rows[i].status, .body = rows[i].body };
		uv_loop_init(&t.loop);
		fake_start(&f, &t.loop);
		char url[64];
		struct rspamd_settings s = port_settings(url, sizeof url, f.port);
		const char *error;
		assert_int_equal(rspamd_client_create(&t.loop, &s, &t.c, &error), 0);
		struct rspamd_request req = req_of(msg_ham, "192.0.2.1");
		struct got g = { 0 };
		rspamd_check_start(t.c, &req, got_cb, &g);
		run_until(&t, &g.called, 1);
		assert_int_equal(g.status, RSPAMD_UNAVAILABLE);
		if (strncmp(g.problem, rows[i].problem, strlen(rows[i].problem)) != 0)
			fail_msg("%s: problem \"%s\", want \"%s...\"", rows[i].status, g.problem,
				 rows[i].problem);
		fake_stop(&f);
		t_end(&t);
	}
	/* an answer over max_response_bytes: by Content-Length, and without
	 * one (chunked would be the same path: the write callback) */
	char *big = malloc(20000);
	memset(big, ' ', 19999);
	big[0] = '{';
	big[19998] = '}';
	big[19999] = '\0';
	struct t t;
	struct fake f = { .body = big };
	uv_loop_init(&t.loop);
	fake_start(&f, &t.loop);
	char url[64];
	struct rspamd_settings s = port_settings(url, sizeof url, f.port);
	s.max_response_bytes = 4096;
	const char *error;
	assert_int_equal(rspamd_client_create(&t.loop, &s, &t.c, &error), 0);
	struct rspamd_request req = req_of(msg_ham, "192.0.2.1");
	struct got g = { 0 };
	rspamd_check_start(t.c, &req, got_cb, &g);
	run_until(&t, &g.called, 1);
	assert_int_equal(g.status, RSPAMD_UNAVAILABLE);
	assert_string_equal(g.problem, "answer over 4096 bytes");
	fake_stop(&f);
	t_end(&t);
	free(big);
}

static void test_skipped(void **state)
{
	(void)state;
	struct t t;
	struct fake f = { 0 };
	uv_loop_init(&t.loop);
	fake_start(&f, &t.loop);
	char url[64];
	struct rspamd_settings s = port_settings(url, sizeof url, f.port);
	s.max_message_bytes = 1024;
	const char *error;
	assert_int_equal(rspamd_client_create(&t.loop, &s, &t.c, &error), 0);
	char *msg = malloc(2000);
	memset(msg, 'x', 2000);
	struct rspamd_request req = { .msg = msg, .len = 2000, .queue_id = "BIG1" };
	struct got g = { 0 };
	rspamd_check_start(t.c, &req, got_cb, &g);
	assert_int_equal(g.called, 0);
	run_until(&t, &g.called, 1);
	assert_int_equal(g.status, RSPAMD_SKIPPED);
	assert_string_equal(g.problem, "message of 2000 bytes over 1024");
	/* exactly the limit is sent */
	req.len = 1024;
	memset(&g, 0, sizeof g);
	rspamd_check_start(t.c, &req, got_cb, &g);
	run_until(&t, &g.called, 1);
	assert_int_equal(g.status, RSPAMD_OK);
	assert_int_equal(f.accepted, 1); /* the skipped one made no request */
	struct rspamd_stats st;
	rspamd_client_stats(t.c, &st);
	assert_int_equal(st.skipped, 1);
	assert_int_equal(st.ok, 1);
	fake_stop(&f);
	t_end(&t);
	free(msg);
}

struct order {
	int done;
	int seq[16];
	enum rspamd_status status[16];
	int n;
};

struct order_arg {
	struct order *o;
	int id;
};

static void order_cb(const struct rspamd_result *r, void *arg)
{
	struct order_arg *a = arg;
	a->o->seq[a->o->n] = a->id;
	a->o->status[a->o->n] = r->status;
	a->o->n++;
	a->o->done++;
}

/* max_inflight requests at once, queue_max waiting, in order; one more
 * is BUSY at once. */
static void test_busy(void **state)
{
	(void)state;
	struct t t;
	struct fake f = { .delay_ms = 150 };
	uv_loop_init(&t.loop);
	fake_start(&f, &t.loop);
	char url[64];
	struct rspamd_settings s = port_settings(url, sizeof url, f.port);
	s.max_inflight = 2;
	s.queue_max = 2;
	const char *error;
	assert_int_equal(rspamd_client_create(&t.loop, &s, &t.c, &error), 0);
	struct order o = { 0 };
	struct order_arg args[5];
	struct rspamd_request req = req_of(msg_ham, "192.0.2.1");
	for (int i = 0; i < 5; i++) {
		args[i] = (struct order_arg){ &o, i };
		rspamd_check_start(t.c, &req, order_cb, &args[i]);
	}
	assert_int_equal(o.done, 0);
	struct rspamd_stats st;
	rspamd_client_stats(t.c, &st);
	assert_int_equal(st.inflight, 2);
	assert_int_equal(st.queued, 2);
	run_until(&t, &o.done, 5);
	/* the refused one first, then in order */
	assert_int_equal(o.seq[0], 4);
	assert_int_equal(o.status[0], RSPAMD_BUSY);
	for (int i = 1; i < 5; i++)
		assert_int_equal(o.status[i], RSPAMD_OK);
	assert_true(o.seq[3] >= 2 && o.seq[4] >= 2); /* the queued ones last */
	assert_int_equal(f.max_open, 2);
	assert_int_equal(f.accepted, 4);
	rspamd_client_stats(t.c, &st);
	assert_int_equal(st.checks, 5);
	assert_int_equal(st.ok, 4);
	assert_int_equal(st.busy, 1);
	fake_stop(&f);
	t_end(&t);
}

/* timeout_ms counts queueing: behind a request that never ends, queued
 * checks are answered by their own deadline. */
static void test_queue_timeout(void **state)
{
	(void)state;
	int port;
	int fd = silent_listener(&port);
	char url[64];
	struct rspamd_settings s = port_settings(url, sizeof url, port);
	s.timeout_ms = 300;
	s.max_inflight = 1;
	struct t t;
	t_start(&t, &s);
	struct got g[3];
	memset(g, 0, sizeof g);
	struct rspamd_request req = req_of(msg_ham, "192.0.2.1");
	uint64_t t0 = util_now_mono_ms();
	for (int i = 0; i < 3; i++)
		rspamd_check_start(t.c, &req, got_cb, &g[i]);
	int all = 0;
	while (all < 3) {
		run_until(&t, &g[all].called, 1);
		all++;
	}
	uint64_t took = util_now_mono_ms() - t0;
	assert_string_equal(g[0].problem, "timed out after 300 ms");
	assert_string_equal(g[1].problem, "timed out in the queue after 300 ms");
	assert_string_equal(g[2].problem, "timed out in the queue after 300 ms");
	for (int i = 0; i < 3; i++)
		assert_true(g[i].elapsed_ms >= 290 && g[i].elapsed_ms < 2000);
	assert_true(took < 2000);
	assert_int_equal(backlog_count(fd), 1); /* the queued ones never went */
	struct rspamd_stats st;
	rspamd_client_stats(t.c, &st);
	assert_int_equal(st.timeouts, 3);
	t_end(&t);
	close(fd);
}

static void never_cb(const struct rspamd_result *r, void *arg)
{
	(void)r;
	(void)arg;
	fail_msg("a callback after cancel or destroy");
}

static void test_cancel(void **state)
{
	(void)state;
	struct t t;
	struct fake f = { .silent = 1 };
	uv_loop_init(&t.loop);
	fake_start(&f, &t.loop);
	char url[64];
	struct rspamd_settings s = port_settings(url, sizeof url, f.port);
	s.max_inflight = 1;
	s.queue_max = 2;
	const char *error;
	assert_int_equal(rspamd_client_create(&t.loop, &s, &t.c, &error), 0);
	struct rspamd_request req = req_of(msg_ham, "192.0.2.1");
	rspamd_check *a = rspamd_check_start(t.c, &req, never_cb, NULL);
	rspamd_check *b = rspamd_check_start(t.c, &req, never_cb, NULL);
	rspamd_check *c = rspamd_check_start(t.c, &req, never_cb, NULL);
	rspamd_check *busy = rspamd_check_start(t.c, &req, never_cb, NULL);
	struct rspamd_request big = { .msg = msg_ham, .len = 64u * 1024 * 1024 };
	rspamd_check *skipped = rspamd_check_start(t.c, &big, never_cb, NULL);
	/* ready ones, before their turn */
	rspamd_check_cancel(&busy);
	rspamd_check_cancel(&skipped);
	assert_null(busy);
	run_for(&t, 50);
	assert_int_equal(f.requests, 1);
	/* a queued one; then the one in flight, so c goes out */
	rspamd_check_cancel(&b);
	rspamd_check_cancel(&a);
	assert_null(a);
	run_for(&t, 100);
	assert_int_equal(f.accepted, 2);
	struct rspamd_stats st;
	rspamd_client_stats(t.c, &st);
	assert_int_equal(st.inflight, 1);
	assert_int_equal(st.queued, 0);
	rspamd_check_cancel(&c);
	rspamd_check_cancel(&c); /* NULL is fine */
	run_for(&t, 50);
	rspamd_client_stats(t.c, &st);
	assert_int_equal(st.cancelled, 5);
	assert_int_equal(st.inflight + st.queued, 0);
	assert_int_equal(st.ok + st.unavailable + st.busy + st.skipped, 0);
	fake_stop(&f);
	t_end(&t);
}

/* Destroy with checks in flight, queued and ready: no callback, and the
 * loop runs out with every handle closed (ASan: nothing leaks). */
static void test_destroy_in_flight(void **state)
{
	(void)state;
	struct t t;
	struct fake f = { .silent = 1 };
	uv_loop_init(&t.loop);
	fake_start(&f, &t.loop);
	char url[64];
	struct rspamd_settings s = port_settings(url, sizeof url, f.port);
	s.max_inflight = 2;
	s.queue_max = 1;
	const char *error;
	assert_int_equal(rspamd_client_create(&t.loop, &s, &t.c, &error), 0);
	struct rspamd_request req = req_of(msg_ham, "192.0.2.1");
	for (int i = 0; i < 3; i++) /* 2 in flight, 1 queued */
		rspamd_check_start(t.c, &req, never_cb, NULL);
	run_for(&t, 100);
	assert_int_equal(f.requests, 2);
	rspamd_check_start(t.c, &req, never_cb, NULL); /* busy, ready */
	rspamd_client_destroy(&t.c);
	assert_null(t.c);
	run_for(&t, 50);
	/* the connections were closed by the client */
	assert_int_equal(f.open, 0);
	fake_stop(&f);
	t_end(&t);
}

/* Callbacks that start, cancel and destroy. */
struct reentry {
	struct t *t;
	int calls;
	rspamd_check *other;
	struct rspamd_request *req;
	int mode; /* 0: destroy; 1: start another; 2: cancel other */
	struct got g;
};

static void reentry_cb(const struct rspamd_result *r, void *arg)
{
	struct reentry *x = arg;
	(void)r;
	x->calls++;
	if (x->mode == 0) {
		rspamd_client_destroy(&x->t->c);
		rspamd_client_destroy(&x->t->c); /* NULL by now */
	} else if (x->mode == 1 && x->calls == 1) {
		rspamd_check_start(x->t->c, x->req, got_cb, &x->g);
	} else if (x->mode == 2) {
		rspamd_check_cancel(&x->other);
	}
}

static void test_callback_reentry(void **state)
{
	(void)state;
	struct rspamd_settings s = rspamd_settings_default();
	s.max_message_bytes = 1024;
	char big[2048];
	memset(big, 'x', sizeof big);
	struct rspamd_request too_big = { .msg = big, .len = sizeof big };

	/* the first of three ready callbacks destroys the client */
	struct t t;
	t_start(&t, &s);
	struct reentry x = { .t = &t, .mode = 0 };
	rspamd_check_start(t.c, &too_big, reentry_cb, &x);
	rspamd_check_start(t.c, &too_big, never_cb, NULL);
	rspamd_check_start(t.c, &too_big, never_cb, NULL);
	uv_run(&t.loop, UV_RUN_DEFAULT);
	assert_int_equal(x.calls, 1);
	assert_null(t.c);
	assert_int_equal(uv_loop_close(&t.loop), 0);

	/* a callback starts a check: it is answered on a later turn */
	t_start(&t, &s);
	x = (struct reentry){ .t = &t, .mode = 1, .req = &too_big };
	rspamd_check_start(t.c, &too_big, reentry_cb, &x);
	run_until(&t, &x.g.called, 1);
	assert_int_equal(x.calls, 1);
	assert_int_equal(x.g.status, RSPAMD_SKIPPED);
	t_end(&t);

	/* a callback cancels a check that is ready in the same turn */
	t_start(&t, &s);
	x = (struct reentry){ .t = &t, .mode = 2 };
	rspamd_check_start(t.c, &too_big, reentry_cb, &x);
	x.other = rspamd_check_start(t.c, &too_big, never_cb, NULL);
	run_for(&t, 20);
	assert_int_equal(x.calls, 1);
	assert_null(x.other);
	t_end(&t);
}

int main(int argc, char **argv)
{
	/* one test by name (a glob), for debugging */
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_settings),
		cmocka_unit_test(test_parse_corpus),
		cmocka_unit_test(test_parse_hostile),
		cmocka_unit_test(test_spam_headers),
		cmocka_unit_test(test_reply_table),
		cmocka_unit_test(test_request),
		cmocka_unit_test(test_closed_port),
		cmocka_unit_test(test_silent_timeout),
		cmocka_unit_test(test_http_errors),
		cmocka_unit_test(test_skipped),
		cmocka_unit_test(test_busy),
		cmocka_unit_test(test_queue_timeout),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_destroy_in_flight),
		cmocka_unit_test(test_callback_reentry),
		cmocka_unit_test(test_gtube),
		cmocka_unit_test(test_ham),
		cmocka_unit_test(test_injection_real),
		cmocka_unit_test(test_cost),
		cmocka_unit_test(test_rspamd_stopped),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
