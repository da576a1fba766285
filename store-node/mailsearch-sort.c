/* mailsearch-sort.c: SORT (RFC 5256 section 3, RFC 5957 DISPLAYFROM and
 * DISPLAYTO): the fields of one message, then the order of many.
 */
#include "mailsearch-private.h"

#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

/* The first value of a header field, cut to max bytes. */
struct first_value {
	buf *out;
	size_t max;
	int seen;
};

static int first_value_cb(void *arg, const char *name, const char *text, size_t len)
{
	(void)name;
	struct first_value *fv = arg;
	size_t n = len;
	if (n > fv->max)
		n = mailsearch__utf8_cut(text, fv->max);
	buf_append(fv->out, text, n);
	fv->seen = 1;
	return 1;
}

/* The first `name` field's value into out (cut to max); 1 when there is
 * one, 0 when none, -1 when the message cannot be read. */
static int header_first(const struct mailsearch_msg *msg, const char *name, size_t max, buf *out)
{
	struct first_value fv = {.out = out, .max = max, .seen = 0};
	if (msg->header == NULL || msg->header(msg->ctx, name, first_value_cb, &fv) < 0)
		return -1;
	return fv.seen;
}

enum sort_str { STR_SUBJECT, STR_FROM, STR_TO, STR_CC, STR_DFROM, STR_DTO, STR_COUNT_ };

/* Mailbox or display string of the first address of field name. */
static int address_field(const struct mailsearch_msg *msg, const char *name, buf *mailbox_out,
			 buf *display_out)
{
	buf value, mailbox, host, display;
	buf_init(&value);
	int r = header_first(msg, name, MAILSEARCH_HEADER_MAX, &value);
	if (r <= 0) {
		buf_deinit(&value);
		return r;
	}
	buf_init(&mailbox);
	buf_init(&host);
	buf_init(&display);
	mailsearch__address_first(mailsearch__buf_text(&value), value.len, &mailbox, &host, &display);
	if (mailbox_out != NULL)
		buf_append(mailbox_out, mailbox.data, mailbox.len);
	if (display_out != NULL) {
		if (display.len > 0) {
			buf_append(display_out, display.data, display.len);
		} else {
			/* RFC 5957: no display name: mailbox@host */
			buf_append(display_out, mailbox.data, mailbox.len);
			if (host.len > 0) {
				buf_append(display_out, "@", 1);
				buf_append(display_out, host.data, host.len);
			}
			if (display_out->len > MAILSEARCH_SORT_TEXT_MAX)
				display_out->len = mailsearch__utf8_cut(
					mailsearch__buf_text(display_out), MAILSEARCH_SORT_TEXT_MAX);
		}
	}
	buf_deinit(&value);
	buf_deinit(&mailbox);
	buf_deinit(&host);
	buf_deinit(&display);
	return 0;
}

static int sort_fields_strings(const struct mailsearch_msg *msg, const struct search_sort *crit,
			       size_t n_crit, buf *strs, int64_t *sent_ms)
{
	for (size_t i = 0; i < n_crit; i++) {
		int r = 0;
		switch (crit[i].key) {
		case SEARCH_SORT_SUBJECT:
			if (strs[STR_SUBJECT].len == 0) {
				buf value;
				buf_init(&value);
				r = header_first(msg, "Subject", MAILSEARCH_HEADER_MAX, &value);
				if (r > 0) {
					mailsearch_base_subject(mailsearch__buf_text(&value), value.len,
								&strs[STR_SUBJECT], NULL);
					if (strs[STR_SUBJECT].len > MAILSEARCH_SORT_TEXT_MAX)
						strs[STR_SUBJECT].len = mailsearch__utf8_cut(
							mailsearch__buf_text(&strs[STR_SUBJECT]),
							MAILSEARCH_SORT_TEXT_MAX);
				}
				buf_deinit(&value);
			}
			break;
		case SEARCH_SORT_FROM:
			if (strs[STR_FROM].len == 0)
				r = address_field(msg, "From", &strs[STR_FROM], NULL);
			break;
		case SEARCH_SORT_TO:
			if (strs[STR_TO].len == 0)
				r = address_field(msg, "To", &strs[STR_TO], NULL);
			break;
		case SEARCH_SORT_CC:
			if (strs[STR_CC].len == 0)
				r = address_field(msg, "Cc", &strs[STR_CC], NULL);
			break;
		case SEARCH_SORT_DISPLAYFROM:
			if (strs[STR_DFROM].len == 0)
				r = address_field(msg, "From", NULL, &strs[STR_DFROM]);
			break;
		case SEARCH_SORT_DISPLAYTO:
			if (strs[STR_DTO].len == 0)
				r = address_field(msg, "To", NULL, &strs[STR_DTO]);
			break;
		case SEARCH_SORT_DATE: {
			buf value;
			buf_init(&value);
			r = header_first(msg, "Date", MAILSEARCH_DATE_MAX + 1, &value);
			if (r > 0)
				mailsearch_date_parse(mailsearch__buf_text(&value), value.len, sent_ms,
						      NULL);
			buf_deinit(&value);
			break;
		}
		default:
			break;
		}
		if (r < 0)
			return -1;
	}
	return 0;
}

int mailsearch_sort_fields_get(const struct mailsearch_msg *msg, const struct search_sort *crit,
			       size_t n_crit, struct mailsearch_sort_fields *f_r)
{
	buf strs[STR_COUNT_];
	for (int i = 0; i < STR_COUNT_; i++)
		buf_init(&strs[i]);
	memset(f_r, 0, sizeof(*f_r));
	f_r->uid = msg->uid;
	f_r->size = msg->size;
	f_r->arrival_ms = msg->internal_date_ms;
	f_r->sent_ms = msg->internal_date_ms;
	int r = sort_fields_strings(msg, crit, n_crit, strs, &f_r->sent_ms);
	size_t total = 0;
	for (int i = 0; i < STR_COUNT_; i++)
		total += (r < 0 ? 0 : strs[i].len) + 1;
	char *p = xmalloc(total);
	f_r->strings_ = p;
	const char **dst[STR_COUNT_] = {&f_r->subject,      &f_r->from, &f_r->to, &f_r->cc,
					&f_r->display_from, &f_r->display_to};
	for (int i = 0; i < STR_COUNT_; i++) {
		size_t n = r < 0 ? 0 : strs[i].len;
		if (n > 0)
			memcpy(p, strs[i].data, n);
		p[n] = '\0';
		*dst[i] = p;
		p += n + 1;
		buf_deinit(&strs[i]);
	}
	if (r < 0)
		f_r->sent_ms = f_r->arrival_ms;
	return r;
}

void mailsearch_sort_fields_deinit(struct mailsearch_sort_fields *f)
{
	free(f->strings_);
	memset(f, 0, sizeof(*f));
}

/* ---- the order ---------------------------------------------------------------- */

struct sort_ctx {
	const struct mailsearch_sort_fields *f;
	const struct search_sort *crit;
	size_t n_crit;
};

static int cmp_i64(int64_t a, int64_t b)
{
	return a < b ? -1 : a > b;
}

static int cmp_u64(uint64_t a, uint64_t b)
{
	return a < b ? -1 : a > b;
}

static int sort_cmp(const void *pa, const void *pb, void *arg)
{
	const struct sort_ctx *ctx = arg;
	size_t ia = *(const size_t *)pa, ib = *(const size_t *)pb;
	const struct mailsearch_sort_fields *a = &ctx->f[ia], *b = &ctx->f[ib];
	for (size_t i = 0; i < ctx->n_crit; i++) {
		int c = 0;
		switch (ctx->crit[i].key) {
		case SEARCH_SORT_ARRIVAL: c = cmp_i64(a->arrival_ms, b->arrival_ms); break;
		case SEARCH_SORT_DATE: c = cmp_i64(a->sent_ms, b->sent_ms); break;
		case SEARCH_SORT_SIZE: c = cmp_u64(a->size, b->size); break;
		case SEARCH_SORT_SUBJECT: c = mailsearch__casemap_cmp(a->subject, b->subject); break;
		case SEARCH_SORT_FROM: c = mailsearch__casemap_cmp(a->from, b->from); break;
		case SEARCH_SORT_TO: c = mailsearch__casemap_cmp(a->to, b->to); break;
		case SEARCH_SORT_CC: c = mailsearch__casemap_cmp(a->cc, b->cc); break;
		case SEARCH_SORT_DISPLAYFROM:
			c = mailsearch__casemap_cmp(a->display_from, b->display_from);
			break;
		case SEARCH_SORT_DISPLAYTO:
			c = mailsearch__casemap_cmp(a->display_to, b->display_to);
			break;
		}
		if (c != 0)
			return ctx->crit[i].reverse ? -c : c;
	}
	/* ties: uid ascending (sequence order), then input order */
	int c = cmp_u64(a->uid, b->uid);
	return c != 0 ? c : (ia < ib ? -1 : ia > ib);
}

int mailsearch_sort(const struct mailsearch_sort_fields *fields, size_t n,
		    const struct search_sort *crit, size_t n_crit, uint32_t *uids_out)
{
	if (n_crit == 0)
		return -1;
	for (size_t i = 0; i < n_crit; i++)
		if (crit[i].key < SEARCH_SORT_ARRIVAL || crit[i].key > SEARCH_SORT_DISPLAYTO)
			return -1;
	if (n == 0)
		return 0;
	size_t *idx = xmalloc(n * sizeof(*idx));
	for (size_t i = 0; i < n; i++)
		idx[i] = i;
	struct sort_ctx ctx = {.f = fields, .crit = crit, .n_crit = n_crit};
	qsort_r(idx, n, sizeof(*idx), sort_cmp, &ctx);
	for (size_t i = 0; i < n; i++)
		uids_out[i] = fields[idx[i]].uid;
	free(idx);
	return 0;
}
