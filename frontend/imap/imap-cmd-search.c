/* imap-cmd-search.c: SEARCH and UID SEARCH (RFC 3501 6.4.4, RFC 4731
 * ESEARCH, RFC 5182 SEARCHRES, RFC 7162 MODSEQ), SORT and THREAD (RFC
 * 5256), each with its UID form.
 *
 * The program is parsed here (imap-search.h), sent to the backend, which
 * evaluates it where the messages are, and the uids that come back are
 * turned into this session's sequence numbers (uids the client was not
 * told of yet are left out).
 */
#include "imap-server-private.h"

#include <stdlib.h>
#include <string.h>

#include "imap-search.h"
#include "mail-error.h"
#include "xalloc.h"

struct imap_search_ctx {
	struct imap_search_program *prog;
};

static void imap_search_ctx_free(void *p)
{
	struct imap_search_ctx *ctx = p;
	imap_search_program_free(&ctx->prog);
	free(ctx);
}

/* Parse for a command of kind; on failure the command is answered. */
static struct imap_search_ctx *imap_search_begin(struct imap_session *s,
						 const struct imap_arg *args, size_t n_args,
						 enum imap_search_kind kind)
{
	struct imap_search_view view = { s->uidmap, s->searchres, s->n_searchres };
	struct imap_search_limits limits;
	struct imap_search_program *prog;
	const char *error;
	imap_search_limits_default(&limits);
	int ret = imap_search_parse(args, n_args, kind, &view, &limits, &prog, &error);
	if (ret == IMAP_SEARCH_BADCHARSET) {
		imap_cmd_done(s, "NO", "BADCHARSET (US-ASCII UTF-8)", error);
		return NULL;
	}
	if (ret < 0) {
		imap_cmd_done(s, "BAD", NULL, error);
		return NULL;
	}
	if (prog->uses_modseq)
		s->enabled |= IMAP_ENABLED_CONDSTORE; /* RFC 7162 3.1 */
	if (kind == IMAP_SEARCH_CMD_SEARCH && !prog->esearch &&
	    (s->enabled & IMAP_ENABLED_IMAP4REV2)) {
		/* RFC 9051 6.4.4: no SEARCH response in IMAP4rev2, ESEARCH
		 * with ALL unless RETURN says otherwise */
		prog->esearch = 1;
		prog->ret = IMAP_SEARCH_RET_ALL;
	}
	struct imap_search_ctx *ctx = xcalloc(1, sizeof(*ctx));
	ctx->prog = prog;
	s->cmd_ctx = ctx;
	s->cmd_ctx_free = imap_search_ctx_free;
	return ctx;
}

/* The number the client knows a uid by (seq, or the uid under UID), 0
 * when not in its view. */
static uint32_t imap_search_number(const struct imap_session *s, uint32_t uid)
{
	uint32_t seq = imap_session_seq_of(s, uid);
	return seq == 0 ? 0 : s->cmd_uid ? uid : seq;
}

static void imap_search_save(struct imap_session *s, const uint32_t *uids, size_t n,
			     unsigned ret)
{
	struct imap_range_list l = { 0 };
	int only_minmax = (ret & (IMAP_SEARCH_RET_ALL | IMAP_SEARCH_RET_COUNT)) == 0 &&
			  (ret & (IMAP_SEARCH_RET_MIN | IMAP_SEARCH_RET_MAX)) != 0;
	for (size_t i = 0; i < n; i++) {
		/* RFC 5182 2.1: with MIN or MAX alone only those are saved */
		if (only_minmax && !((ret & IMAP_SEARCH_RET_MIN) && i == 0) &&
		    !((ret & IMAP_SEARCH_RET_MAX) && i == n - 1))
			continue;
		imap_range_list_add(&l, uids[i], uids[i]);
	}
	free(s->searchres);
	s->searchres = l.r;
	s->n_searchres = l.n;
}

static void imap_search_cb(int status, const uint32_t *uids, size_t n, uint64_t highest_modseq,
			   void *arg)
{
	struct imap_session *s = arg;
	if (conn_is_closed(&s->conn)) {
		conn_unref(&s->conn);
		return;
	}
	struct imap_search_ctx *ctx = s->cmd_ctx;
	const struct imap_search_program *prog = ctx->prog;
	if (status != MAIL_OK) {
		if (prog->ret & IMAP_SEARCH_RET_SAVE) {
			/* RFC 5182 2.1: a failed SAVE empties $ */
			free(s->searchres);
			s->searchres = NULL;
			s->n_searchres = 0;
		}
		imap_cmd_fail(s, status);
		conn_process(&s->conn);
		conn_unref(&s->conn);
		return;
	}
	/* the client's view only, ascending */
	uint32_t *in_view = xcalloc(n + 1, sizeof(*in_view));
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (imap_session_seq_of(s, uids[i]) != 0)
			in_view[k++] = uids[i];
	}
	if (prog->ret & IMAP_SEARCH_RET_SAVE)
		imap_search_save(s, in_view, k, prog->ret);
	if (!prog->esearch) {
		conn_append(&s->conn, "* SEARCH", 8);
		for (size_t i = 0; i < k; i++)
			conn_printf(&s->conn, " %u", imap_search_number(s, in_view[i]));
		if (prog->uses_modseq && k > 0)
			conn_printf(&s->conn, " (MODSEQ %llu)", (unsigned long long)highest_modseq);
		conn_append(&s->conn, "\r\n", 2);
	} else if (prog->ret != IMAP_SEARCH_RET_SAVE) {
		/* RFC 4731 3.1 */
		conn_printf(&s->conn, "* ESEARCH (TAG \"%s\")%s", s->tag, s->cmd_uid ? " UID" : "");
		if ((prog->ret & IMAP_SEARCH_RET_MIN) && k > 0)
			conn_printf(&s->conn, " MIN %u", imap_search_number(s, in_view[0]));
		if ((prog->ret & IMAP_SEARCH_RET_MAX) && k > 0)
			conn_printf(&s->conn, " MAX %u", imap_search_number(s, in_view[k - 1]));
		if (prog->ret & IMAP_SEARCH_RET_COUNT)
			conn_printf(&s->conn, " COUNT %zu", k);
		if ((prog->ret & IMAP_SEARCH_RET_ALL) && k > 0) {
			struct imap_range_list l = { 0 };
			for (size_t i = 0; i < k; i++) {
				uint32_t num = imap_search_number(s, in_view[i]);
				imap_range_list_add(&l, num, num);
			}
			conn_append(&s->conn, " ALL ", 5);
			imap_session_append_uid_ranges(s, l.r, l.n);
			free(l.r);
		}
		if (prog->uses_modseq && k > 0)
			conn_printf(&s->conn, " MODSEQ %llu", (unsigned long long)highest_modseq);
		conn_append(&s->conn, "\r\n", 2);
	}
	free(in_view);
	imap_cmd_done(s, "OK", NULL, "Search completed");
	conn_process(&s->conn);
	conn_unref(&s->conn);
}

void imap_cmd_search(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	struct imap_search_ctx *ctx = imap_search_begin(s, args, n_args, IMAP_SEARCH_CMD_SEARCH);
	if (ctx == NULL)
		return;
	conn_ref(&s->conn);
	s->server->backend->search(s->server->backend_ctx, s->user, s->mailbox, ctx->prog->root,
				   imap_search_cb, s);
}

/* ---- SORT ------------------------------------------------------------- */

static void imap_sort_cb(int status, const uint32_t *uids, size_t n, void *arg)
{
	struct imap_session *s = arg;
	if (conn_is_closed(&s->conn)) {
		conn_unref(&s->conn);
		return;
	}
	if (status != MAIL_OK) {
		imap_cmd_fail(s, status);
	} else {
		conn_append(&s->conn, "* SORT", 6);
		for (size_t i = 0; i < n; i++) {
			uint32_t num = imap_search_number(s, uids[i]);
			if (num != 0)
				conn_printf(&s->conn, " %u", num);
		}
		conn_append(&s->conn, "\r\n", 2);
		imap_cmd_done(s, "OK", NULL, "Sort completed");
	}
	conn_process(&s->conn);
	conn_unref(&s->conn);
}

void imap_cmd_sort(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	struct imap_search_ctx *ctx = imap_search_begin(s, args, n_args, IMAP_SEARCH_CMD_SORT);
	if (ctx == NULL)
		return;
	conn_ref(&s->conn);
	s->server->backend->sort(s->server->backend_ctx, s->user, s->mailbox, ctx->prog->sort,
				 ctx->prog->n_sort, ctx->prog->root, imap_sort_cb, s);
}

/* ---- THREAD ----------------------------------------------------------- */

/* The backend's thread list (uids) as the client knows the messages:
 * numbers rewritten, those outside the view dropped with what they leave
 * empty. */
static void imap_thread_rewrite(struct imap_session *s, const char *threads, buf *out)
{
	const char *p = threads;
	while (*p != '\0') {
		if (*p >= '0' && *p <= '9') {
			uint64_t uid = 0;
			while (*p >= '0' && *p <= '9') {
				if (uid <= UINT32_MAX)
					uid = uid * 10 + (uint64_t)(*p - '0');
				p++;
			}
			uint32_t num = uid <= UINT32_MAX ? imap_search_number(s, (uint32_t)uid) : 0;
			if (num != 0) {
				if (out->len > 0 && out->data[out->len - 1] != '(')
					buf_append(out, " ", 1);
				buf_printf(out, "%u", num);
			}
			continue;
		}
		if (*p == '(') {
			if (out->len > 0 && out->data[out->len - 1] != '(' &&
			    out->data[out->len - 1] != ')')
				buf_append(out, " ", 1);
			buf_append(out, "(", 1);
		} else if (*p == ')') {
			if (out->len > 0 && out->data[out->len - 1] == '(')
				out->len--; /* "()" left by dropped numbers */
			else
				buf_append(out, ")", 1);
		}
		p++; /* spaces are put back where due */
	}
}

static void imap_thread_cb(int status, const char *threads, void *arg)
{
	struct imap_session *s = arg;
	if (conn_is_closed(&s->conn)) {
		conn_unref(&s->conn);
		return;
	}
	if (status != MAIL_OK) {
		imap_cmd_fail(s, status);
	} else {
		buf out;
		buf_init(&out);
		imap_thread_rewrite(s, threads != NULL ? threads : "", &out);
		conn_append(&s->conn, "* THREAD", 8);
		if (out.len > 0) {
			conn_append(&s->conn, " ", 1);
			conn_append(&s->conn, out.data, out.len);
		}
		conn_append(&s->conn, "\r\n", 2);
		buf_deinit(&out);
		imap_cmd_done(s, "OK", NULL, "Thread completed");
	}
	conn_process(&s->conn);
	conn_unref(&s->conn);
}

void imap_cmd_thread(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	struct imap_search_ctx *ctx = imap_search_begin(s, args, n_args, IMAP_SEARCH_CMD_THREAD);
	if (ctx == NULL)
		return;
	conn_ref(&s->conn);
	s->server->backend->thread(s->server->backend_ctx, s->user, s->mailbox, ctx->prog->alg,
				   ctx->prog->root, imap_thread_cb, s);
}
