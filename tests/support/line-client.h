/* line-client.h: a blocking TCP client for tests of line protocols (the
 * IMAP and POP3 engine tests): connect to 127.0.0.1, send, and read up to
 * a line that starts with a prefix. Failures are cmocka assertions.
 * Library `mailtestsupport`. */
#ifndef MAIL_TEST_LINE_CLIENT_H
#define MAIL_TEST_LINE_CLIENT_H

#include <stddef.h>

struct client {
	int fd;
	char buf[4 << 20];
	size_t len;
};

/* Connect (5 s receive timeout); the caller closes. */
struct client *client_connect(int port);
void client_close(struct client *c);
void client_send(struct client *c, const void *data, size_t len);
void client_sendf(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Read more bytes; returns 0 on EOF/timeout. */
int client_fill(struct client *c);
/* Everything up to and including the first line that starts with prefix
 * ("" : the next line); the caller frees it. NULL on EOF/timeout. */
char *client_until(struct client *c, const char *prefix);
/* IMAP: send "tag command" and return the whole answer through the tagged
 * line (the caller frees it); fails the test on EOF/timeout. */
char *client_tagged(struct client *c, const char *tag, const char *command);
/* client_tagged(), and the answer must contain want. */
void client_tagged_check(struct client *c, const char *tag, const char *command,
			 const char *want);

#define assert_contains(hay, needle)                                                   \
	do {                                                                           \
		if (strstr((hay), (needle)) == NULL)                                   \
			fail_msg("missing \"%s\" in:\n%s", (needle), (hay));           \
	} while (0)
#define assert_not_contains(hay, needle)                                               \
	do {                                                                           \
		if (strstr((hay), (needle)) != NULL)                                   \
			fail_msg("unexpected \"%s\" in:\n%s", (needle), (hay));        \
	} while (0)

#endif
