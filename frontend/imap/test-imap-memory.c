/* The memory of a session (issue 9 item 4): 1,000 sessions, each logged
 * in and with a 10,000-message mailbox selected, then each IDLE, on the
 * in-memory backend in this process. The heap in use (mallinfo2) is read
 * before the sessions connect and once they are all at rest; the
 * difference per session is printed and must stay within 8 KiB. The
 * clients are raw sockets with stack buffers (no heap of their own), so
 * the difference is the server's: session struct, connection, parser,
 * uid map, the watch, buffers at rest. TLS is measured apart
 * (test_tls_memory prints what a server TLS connection holds).
 * Then the same with a mailbox whose every third message was expunged
 * (the uid map becomes a bitmap). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "imap-memory-backend.h"
#include "imap-server.h"
#include "test-engine-fixture.h"
#include "tls.h"

#define USER "demo@example.test"
#define PASS "pw"
#define SESSIONS 1000
#define MESSAGES 10000
#define BUDGET_PER_SESSION 8192

static const char body[] = "From: a@example.test\r\nSubject: hello\r\n\r\nHello\r\n";

struct fixture {
	struct engine_fixture e; /* first */
	imap_server *server;
	int holes;
};

static void fill(struct engine_fixture *e)
{
	struct fixture *f = (struct fixture *)e;
	imap_memory_backend_add_user(e->mb, USER, PASS);
	for (int i = 1; i <= MESSAGES; i++)
		imap_memory_backend_add_message(e->mb, USER, "INBOX", body, sizeof(body) - 1,
						f->holes && i % 3 == 0 ? "\\Deleted" : "",
						1700000000000LL);
}

static int start(struct engine_fixture *e, uv_loop_t *loop)
{
	struct fixture *f = (struct fixture *)e;
	struct imap_settings set;
	const char *error;
	imap_settings_init(&set);
	set.conn.port = 0;
	set.conn.access.allow_plaintext_login = 1;
	set.conn.max_sessions = SESSIONS + 10;
	set.conn.max_sessions_per_ip = SESSIONS + 10;
	if (imap_server_start(loop, &set, &imap_memory_backend_vfuncs, e->mb, &f->server,
			      &error) < 0)
		return -1;
	return imap_server_port(f->server);
}

static void stop(struct engine_fixture *e)
{
	imap_server_stop(&((struct fixture *)e)->server);
}

/* Read from fd until a line starting with want has arrived. */
static void read_until(int fd, const char *want)
{
	char buf[8192];
	size_t len = 0;
	for (;;) {
		ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
		assert_true(n > 0);
		len += (size_t)n;
		buf[len] = '\0';
		char *line = buf;
		for (char *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
			if (strncmp(line, want, strlen(want)) == 0)
				return;
		}
		/* keep the last partial line */
		len = strlen(line);
		memmove(buf, line, len);
	}
}

static void say(int fd, const char *s)
{
	assert_int_equal(send(fd, s, strlen(s), 0), (ssize_t)strlen(s));
}

static size_t heap_in_use(void)
{
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
}

static void measure(int holes)
{
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < 2 * SESSIONS + 64) {
		print_message("skipped: only %llu file descriptors\n",
			      (unsigned long long)rl.rlim_cur);
		return;
	}
	struct fixture *f = calloc(1, sizeof(*f));
	f->holes = holes;
	f->e = (struct engine_fixture){ .fill = fill, .start = start, .stop = stop };
	engine_fixture_start(&f->e);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)f->e.port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int *fds = calloc(SESSIONS, sizeof(*fds));
	if (holes) {
		/* one session expunges every third message */
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		read_until(fd, "* OK");
		say(fd, "a LOGIN " USER " " PASS "\r\nb SELECT INBOX\r\nc EXPUNGE\r\nd LOGOUT\r\n");
		read_until(fd, "d OK");
		close(fd);
		usleep(100 * 1000);
	}
	malloc_trim(0);
	size_t before = heap_in_use();
	for (int i = 0; i < SESSIONS; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM, 0);
		assert_int_equal(connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
		read_until(fds[i], "* OK");
		/* one command at a time: two replies in a row would wait for
		 * the client's delayed ACK (the server does not set
		 * TCP_NODELAY) */
		say(fds[i], "a LOGIN " USER " " PASS "\r\n");
		read_until(fds[i], "a OK");
		say(fds[i], "b SELECT INBOX\r\n");
		read_until(fds[i], "b OK");
	}
	usleep(100 * 1000);
	size_t selected = heap_in_use();
	for (int i = 0; i < SESSIONS; i++) {
		say(fds[i], "c IDLE\r\n");
		read_until(fds[i], "+ idling");
	}
	usleep(100 * 1000);
	size_t idle = heap_in_use();
	double per_selected = ((double)selected - (double)before) / SESSIONS;
	double per_idle = ((double)idle - (double)before) / SESSIONS;
	print_message("session memory (%s uid map, %d messages): %.0f bytes selected, "
		      "%.0f bytes IDLE, per session (%d sessions; heap %zu -> %zu -> %zu)\n",
		      holes ? "bitmap" : "one-run", holes ? MESSAGES - MESSAGES / 3 : MESSAGES,
		      per_selected, per_idle, SESSIONS, before, selected, idle);
	assert_true(per_selected <= BUDGET_PER_SESSION);
	assert_true(per_idle <= BUDGET_PER_SESSION);
	for (int i = 0; i < SESSIONS; i++)
		close(fds[i]);
	free(fds);
	engine_fixture_stop(&f->e);
	free(f);
}

/* What TLS adds per session (lib/tls, OpenSSL): server connections after
 * a handshake and one exchange, driven in memory against clients of this
 * process; the clients are freed before the heap is read. A figure, not
 * a bound (the TLS layer is not the engine's). */
#define TLS_PAIRS 200

static void pump(tls_conn *from, buf *net, tls_conn *to, buf *back)
{
	buf plain;
	buf_init(&plain);
	if (net->len > 0) {
		(void)tls_conn_feed(to, net->data, net->len, &plain, back);
		buf_reset(net);
	}
	(void)from;
	buf_deinit(&plain);
}

static void test_tls_memory(void **state)
{
	(void)state;
	struct engine_fixture e = { 0 };
	engine_fixture_tls(&e);
	char ca[128];
	snprintf(ca, sizeof(ca), "%s/ca.pem", e.tls_dir);
	struct tls_client_settings cs = { ca, NULL, NULL };
	tls_client *cli;
	const char *error;
	assert_int_equal(tls_client_create(&cs, &cli, &error), 0);
	tls_conn **servers = calloc(TLS_PAIRS, sizeof(*servers));
	tls_conn **clients = calloc(TLS_PAIRS, sizeof(*clients));
	malloc_trim(0);
	size_t before = heap_in_use();
	for (int i = 0; i < TLS_PAIRS; i++) {
		servers[i] = tls_conn_new_server(e.tls);
		clients[i] = tls_conn_new_client(cli, "localhost");
		buf c2s, s2c, plain;
		buf_init(&c2s);
		buf_init(&s2c);
		buf_init(&plain);
		(void)tls_conn_feed(clients[i], NULL, 0, &plain, &c2s);
		(void)tls_conn_write(clients[i], "a NOOP\r\n", 8, &c2s);
		for (int round = 0; round < 10; round++) {
			pump(clients[i], &c2s, servers[i], &s2c);
			pump(servers[i], &s2c, clients[i], &c2s);
		}
		(void)tls_conn_write(servers[i], "a OK\r\n", 6, &s2c);
		pump(servers[i], &s2c, clients[i], &c2s);
		assert_true(tls_conn_handshake_done(servers[i]));
		buf_deinit(&c2s);
		buf_deinit(&s2c);
		buf_deinit(&plain);
	}
	for (int i = 0; i < TLS_PAIRS; i++)
		tls_conn_free(&clients[i]);
	malloc_trim(0);
	size_t after = heap_in_use();
	print_message("TLS adds %.0f bytes per session (%d server connections after a "
		      "handshake, heap %zu -> %zu)\n",
		      ((double)after - (double)before) / TLS_PAIRS, TLS_PAIRS, before, after);
	for (int i = 0; i < TLS_PAIRS; i++)
		tls_conn_free(&servers[i]);
	free(servers);
	free(clients);
	tls_client_destroy(&cli);
	tls_server_destroy(&e.tls);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", e.tls_dir);
	assert_int_equal(system(cmd), 0);
}

static void test_session_memory(void **state)
{
	(void)state;
	measure(0);
}

static void test_session_memory_holes(void **state)
{
	(void)state;
	measure(1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_session_memory),
		cmocka_unit_test(test_session_memory_holes),
		cmocka_unit_test(test_tls_memory),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
