/* imap-cmd-search.c: SEARCH, SORT, THREAD (stub until the parser lands). */
#include "imap-server-private.h"

void imap_cmd_search(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	(void)args;
	(void)n_args;
	imap_cmd_done(s, "BAD", NULL, "Not yet");
}

void imap_cmd_sort(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	(void)args;
	(void)n_args;
	imap_cmd_done(s, "BAD", NULL, "Not yet");
}

void imap_cmd_thread(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	(void)args;
	(void)n_args;
	imap_cmd_done(s, "BAD", NULL, "Not yet");
}
