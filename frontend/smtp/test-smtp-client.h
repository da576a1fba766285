/* test-smtp-client.h: a blocking SMTP client for the engine's tests
 * (static functions; include after <cmocka.h>). */
#ifndef MAIL_TEST_SMTP_CLIENT_H
#define MAIL_TEST_SMTP_CLIENT_H

#include "xalloc.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

struct client {
	int fd;
	char buf[65536];
	size_t len;
};

static struct client *client_connect(int port)
{
	struct client *c = xcalloc(1, sizeof *c);
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(c->fd >= 0);
	struct timeval tv = { .tv_sec = 5 };
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	assert_int_equal(connect(c->fd, (struct sockaddr *)&a, sizeof a), 0);
	return c;
}

static void client_close(struct client *c)
{
	close(c->fd);
	free(c);
}

static void client_send(struct client *c, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
		assert_true(n > 0);
		data += n;
		len -= (size_t)n;
	}
}

static void client_sends(struct client *c, const char *s)
{
	client_send(c, s, strlen(s));
}

/* One line without CRLF into out; returns 0, or -1 on EOF/timeout. */
static int client_line(struct client *c, char *out, size_t outsz)
{
	for (;;) {
		char *lf = memchr(c->buf, '\n', c->len);
		if (lf != NULL) {
			size_t n = (size_t)(lf - c->buf) + 1;
			size_t l = n >= 2 && c->buf[n - 2] == '\r' ? n - 2 : n - 1;
			assert_true(l < outsz);
			memcpy(out, c->buf, l);
			out[l] = '\0';
			memmove(c->buf, c->buf + n, c->len - n);
			c->len -= n;
			return 0;
		}
		assert_true(c->len < sizeof c->buf);
		ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
		if (n <= 0)
			return -1;
		c->len += (size_t)n;
	}
}

/* Read one (possibly multi-line) reply and check its last line starts with
 * expect. Returns the whole reply (static buffer). */
static const char *expect_reply(struct client *c, const char *expect)
{
	static char all[8192];
	char line[2048];
	all[0] = '\0';
	for (;;) {
		if (client_line(c, line, sizeof line) < 0)
			fail_msg("no reply, expected \"%s\" (got so far: %s)", expect, all);
		strncat(all, line, sizeof all - strlen(all) - 2);
		strcat(all, "\n");
		if (strlen(line) < 4 || line[3] != '-')
			break;
	}
	const char *last = strrchr(all, '\n');
	while (last > all && last[-1] != '\n')
		last--;
	if (strncmp(last, expect, strlen(expect)) != 0)
		fail_msg("expected \"%s\", got \"%s\"", expect, all);
	return all;
}

static __attribute__((unused)) void expect_eof(struct client *c)
{
	char line[2048];
	int ret = client_line(c, line, sizeof line);
	if (ret == 0)
		fail_msg("expected EOF, got \"%s\"", line);
}

#endif
