/* imap-mbox-name.c: mailbox names between a session's client and the
 * backend (modified UTF-7 or UTF-8 on the wire, UTF-8 for the backend). */
#include "imap-server-private.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap-utf7.h"
#include "xalloc.h"

int imap_session_utf8_names(const struct imap_session *s)
{
	return (s->enabled & (IMAP_ENABLED_UTF8 | IMAP_ENABLED_IMAP4REV2)) != 0;
}

/* "INBOX" in any case, as the first level, becomes "INBOX". */
static void imap_mailbox_name_inbox(char *name)
{
	if (strncasecmp(name, "INBOX", 5) == 0 && (name[5] == '\0' || name[5] == '/'))
		memcpy(name, "INBOX", 5);
}

int imap_mailbox_name_decode(const struct imap_session *s, const struct imap_arg *arg,
			     unsigned flags, char **utf8_r, const char **error_r)
{
	const char *in = arg->str;
	*utf8_r = NULL;
	/* an atom "NIL" is an astring here (a mailbox called "nil") */
	if (arg->type != IMAP_ARG_NIL && !imap_arg_get_astring(arg, &in)) {
		*error_r = "Missing mailbox name";
		return IMAP_NAME_BAD;
	}
	size_t len = arg->len;
	if (strlen(in) != len) {
		*error_r = "NUL in mailbox name";
		return IMAP_NAME_BAD;
	}
	buf b;
	buf_init(&b);
	if (imap_session_utf8_names(s)) {
		if (!imap_utf8_valid(in, len)) {
			*error_r = "Mailbox name is not valid UTF-8";
			return IMAP_NAME_BAD;
		}
		buf_append(&b, in, len);
	} else if (imap_utf7_to_utf8(in, len, &b, error_r) < 0) {
		buf_deinit(&b);
		return IMAP_NAME_BAD;
	}
	if ((flags & IMAP_NAME_CREATE) != 0 && b.len > 1 && b.data[b.len - 1] == '/')
		b.len--; /* RFC 3501 6.3.3: a trailing separator is allowed */
	buf_append(&b, "", 1);
	size_t n = b.len - 1;
	char *name = (char *)buf_steal(&b, NULL);
	const char *why = NULL;
	if (n == 0)
		why = "Empty mailbox name";
	else if (n > IMAP_MAILBOX_NAME_MAX)
		why = "Mailbox name too long";
	else if (name[0] == '/' || name[n - 1] == '/' || strstr(name, "//") != NULL)
		why = "Empty level in mailbox name";
	for (size_t i = 0; why == NULL && i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c < 0x20 || c == 0x7f)
			why = "Control character in mailbox name";
		else if ((flags & IMAP_NAME_CREATE) != 0 && (c == '*' || c == '%'))
			why = "Wildcard in mailbox name";
	}
	if (why != NULL) {
		free(name);
		*error_r = why;
		return IMAP_NAME_INVALID;
	}
	imap_mailbox_name_inbox(name);
	*utf8_r = name;
	return 0;
}

int imap_mailbox_name_from_client(const struct imap_session *s, const struct imap_arg *arg,
				  char **utf8_r, const char **error_r)
{
	return imap_mailbox_name_decode(s, arg, 0, utf8_r, error_r);
}

int imap_cmd_mailbox_arg(struct imap_session *s, const struct imap_arg *arg, unsigned flags,
			 char **utf8_r)
{
	const char *error;
	int ret = imap_mailbox_name_decode(s, arg, flags, utf8_r, &error);
	if (ret == IMAP_NAME_BAD)
		imap_cmd_done(s, "BAD", NULL, error);
	else if (ret == IMAP_NAME_INVALID)
		imap_cmd_done(s, "NO", "CANNOT", error);
	return ret < 0 ? -1 : 0;
}

int imap_mailbox_name_encode(const struct imap_session *s, const char *utf8, buf *out)
{
	size_t len = strlen(utf8);
	if (imap_session_utf8_names(s)) {
		if (!imap_utf8_valid(utf8, len))
			return -1;
		buf_append(out, utf8, len);
		return 0;
	}
	return imap_utf8_to_utf7(utf8, len, out);
}

int imap_session_append_mailbox(struct imap_session *s, const char *utf8)
{
	buf b;
	buf_init(&b);
	if (imap_mailbox_name_encode(s, utf8, &b) < 0) {
		buf_deinit(&b);
		return -1;
	}
	int atom = b.len > 0 && !(b.len == 3 && strncasecmp((const char *)b.data, "NIL", 3) == 0);
	int quotable = 1;
	for (size_t i = 0; i < b.len; i++) {
		unsigned char c = b.data[i];
		if (c < 0x20 || c == 0x7f)
			quotable = 0; /* never in a valid name; a literal keeps it exact */
		if (c <= 0x20 || c >= 0x7f || strchr("(){\"\\%*]", c) != NULL)
			atom = 0;
	}
	if (atom) {
		conn_append(&s->conn, b.data, b.len);
	} else if (quotable) {
		/* 8-bit only in UTF-8 mode: RFC 6855 3 allows it quoted */
		conn_append(&s->conn, "\"", 1);
		for (size_t i = 0; i < b.len; i++) {
			if (b.data[i] == '"' || b.data[i] == '\\')
				conn_append(&s->conn, "\\", 1);
			conn_append(&s->conn, &b.data[i], 1);
		}
		conn_append(&s->conn, "\"", 1);
	} else {
		conn_printf(&s->conn, "{%zu}\r\n", b.len);
		conn_append(&s->conn, b.data, b.len);
	}
	buf_deinit(&b);
	return 0;
}
