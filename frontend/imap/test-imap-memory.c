/* The memory of a session (issue 9 item 4): 1,000 sessions, each logged
 * in and with a 10,000-message mailbox selected, then each IDLE, on the
 * in-memory backend in this process. The heap in use (mallinfo2) is read
 * before the sessions connect and once they are all at rest; the
 * difference per session is printed and must stay within 8 KiB. The
 * clients are raw sockets with stack buffers (no heap of their own), so
 * the difference is the server's: session struct, connection, parser,
 * uid map, the watch, buffers at rest. TLS is not in this figure.
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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
