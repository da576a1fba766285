/* line-client.c: see line-client.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "line-client.h"

struct client *client_connect(int port)
{
	struct client *c = calloc(1, sizeof(*c));
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	struct timeval tv = { 5, 0 };
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	assert_int_equal(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return c;
}

void client_close(struct client *c)
{
	close(c->fd);
	free(c);
}

void client_send(struct client *c, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
		assert_true(n > 0);
		p += n;
		len -= (size_t)n;
	}
}

void client_sendf(struct client *c, const char *fmt, ...)
{
	char line[4096];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	client_send(c, line, (size_t)n);
}

/* Read more bytes; returns 0 on EOF/timeout. */
int client_fill(struct client *c)
{
	assert_true(c->len < sizeof(c->buf) - 1);
	ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
	if (n <= 0)
		return 0;
	c->len += (size_t)n;
	c->buf[c->len] = '\0';
	return 1;
}

/* Everything up to and including the first line that starts with prefix;
 * the caller frees it. NULL on EOF/timeout. */
char *client_until(struct client *c, const char *prefix)
{
	size_t plen = strlen(prefix);
	for (;;) {
		size_t pos = 0;
		while (pos < c->len) {
			if (pos + plen <= c->len && memcmp(c->buf + pos, prefix, plen) == 0) {
				char *eol = memmem(c->buf + pos, c->len - pos, "\r\n", 2);
				if (eol == NULL)
					break;
				size_t end = (size_t)(eol - c->buf) + 2;
				char *out = malloc(end + 1);
				memcpy(out, c->buf, end);
				out[end] = '\0';
				memmove(c->buf, c->buf + end, c->len - end);
				c->len -= end;
				c->buf[c->len] = '\0';
				return out;
			}
			char *nl = memchr(c->buf + pos, '\n', c->len - pos);
			if (nl == NULL)
				break;
			pos = (size_t)(nl - c->buf) + 1;
		}
		if (!client_fill(c))
			return NULL;
	}
}


char *client_tagged(struct client *c, const char *tag, const char *command)
{
	char prefix[64];
	client_sendf(c, "%s %s\r\n", tag, command);
	snprintf(prefix, sizeof(prefix), "%s ", tag);
	char *out = client_until(c, prefix);
	assert_non_null(out);
	return out;
}

void client_tagged_check(struct client *c, const char *tag, const char *command,
			 const char *want)
{
	char *out = client_tagged(c, tag, command);
	assert_contains(out, want);
	free(out);
}
