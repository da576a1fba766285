/* mailstore-dump.c: print the mailboxes of the given users of one stopped
 * store node's mailstore, in a form two replicas can be compared by (tests
 * only; not installed).
 *
 *   mailstore-dump DIR USER...
 *
 * DIR is a store node's --data directory (the mailstore's LevelDB); the
 * node must be stopped (LevelDB allows one opener). mailstore has no "list
 * users" call, so the caller names them. Output, users in the order given,
 * mailboxes by name, messages by uid:
 *   user <u> none                         (the user has no INBOX here)
 *   mailbox <u> <name> uidvalidity=V uidnext=N exists=E highest_modseq=M
 *   message <u> <name> uid=U size=S date=D modseq=M flags=F id=ID
 * F is the flags joined with ',' ("-" when none); ID is the body's
 * X-Delivery-Id header (store-writer puts it there; "-" when absent).
 * Nothing in the output names the node or its paths.
 *
 * The dump never creates anything: a user without an INBOX is printed as
 * "none" rather than selected (select would create it).
 * Exit 0; 1 when the store cannot be opened or read; 2 on bad usage.
 */
#include "mail-error.h"
#include "mailstore.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ID_HEADER "X-Delivery-Id:"

/* Print the X-Delivery-Id value of the header block of body, or "-". */
static void print_delivery_id(const char *body, size_t len)
{
	size_t hlen = strlen(ID_HEADER);
	size_t pos = 0;
	while (pos < len) {
		const char *line = body + pos;
		const char *nl = memchr(line, '\n', len - pos);
		size_t line_len = nl != NULL ? (size_t)(nl - line) : len - pos;
		size_t text_len = line_len > 0 && line[line_len - 1] == '\r' ? line_len - 1
									     : line_len;
		if (text_len == 0)
			break; /* end of the header block */
		if (text_len > hlen && strncasecmp(line, ID_HEADER, hlen) == 0) {
			const char *v = line + hlen;
			size_t vlen = text_len - hlen;
			while (vlen > 0 && *v == ' ') {
				v++;
				vlen--;
			}
			printf(" id=%.*s\n", (int)vlen, v);
			return;
		}
		pos += line_len + 1;
	}
	printf(" id=-\n");
}

static int dump_message(mailstore *store, const char *user, const char *box,
			const struct mailstore_message_info *m)
{
	printf("message %s %s uid=%u size=%llu date=%lld modseq=%llu flags=", user, box,
	       m->uid, (unsigned long long)m->size, (long long)m->internal_date,
	       (unsigned long long)m->modseq);
	if (m->n_flags == 0)
		printf("-");
	for (size_t f = 0; f < m->n_flags; f++)
		printf("%s%s", f > 0 ? "," : "", m->flags[f]);
	struct mailstore_message_info info;
	void *body = NULL;
	size_t body_len = 0;
	int ret = mailstore_fetch(store, user, box, m->uid, &info, &body, &body_len);
	if (ret != MAIL_OK) {
		printf("\n");
		fprintf(stderr, "mailstore-dump: fetch %s %s %u: %s\n", user, box, m->uid,
			mail_error_info(ret)->name);
		return -1;
	}
	print_delivery_id(body, body_len);
	mailstore_message_info_free(&info);
	free(body);
	return 0;
}

static int dump_mailbox(mailstore *store, const char *user, const char *box)
{
	struct mailstore_mailbox_info info;
	struct mailstore_message_info *msgs = NULL;
	size_t n = 0;
	int ret = mailstore_select(store, user, box, &info, &msgs, &n);
	if (ret != MAIL_OK) {
		fprintf(stderr, "mailstore-dump: select %s %s: %s\n", user, box,
			mail_error_info(ret)->name);
		return -1;
	}
	printf("mailbox %s %s uidvalidity=%u uidnext=%u exists=%u highest_modseq=%llu\n", user,
	       info.name, info.uidvalidity, info.uidnext, info.exists,
	       (unsigned long long)info.highest_modseq);
	int result = 0;
	for (size_t k = 0; k < n && result == 0; k++)
		result = dump_message(store, user, box, &msgs[k]);
	mailstore_message_infos_free(msgs, n);
	mailstore_mailbox_info_free(&info);
	return result;
}

static int dump_user(mailstore *store, const char *user)
{
	int exists = 0;
	int ret = mailstore_mailbox_exists(store, user, MAILSTORE_INBOX, &exists);
	if (ret != MAIL_OK) {
		fprintf(stderr, "mailstore-dump: %s: %s\n", user, mail_error_info(ret)->name);
		return -1;
	}
	if (!exists) {
		printf("user %s none\n", user);
		return 0;
	}
	struct mailstore_mailbox_info *boxes = NULL;
	size_t n = 0;
	ret = mailstore_list(store, user, &boxes, &n);
	if (ret != MAIL_OK) {
		fprintf(stderr, "mailstore-dump: list %s: %s\n", user, mail_error_info(ret)->name);
		return -1;
	}
	int result = 0;
	for (size_t k = 0; k < n && result == 0; k++)
		result = dump_mailbox(store, user, boxes[k].name);
	mailstore_mailbox_infos_free(boxes, n);
	return result;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: mailstore-dump DIR USER...\n");
		return 2;
	}
	mailstore *store;
	const char *error;
	if (mailstore_open(argv[1], NULL, &store, &error) != MAIL_OK) {
		fprintf(stderr, "mailstore-dump: %s: %s\n", argv[1], error);
		return 1;
	}
	int result = 0;
	for (int k = 2; k < argc && result == 0; k++)
		result = dump_user(store, argv[k]);
	mailstore_close(&store);
	return result == 0 ? 0 : 1;
}
