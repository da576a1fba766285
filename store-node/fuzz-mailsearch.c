/* fuzz-mailsearch.c: libFuzzer target for what mailsearch reads from
 * messages: Date: values, subjects, address lists, message-ids and the
 * References they make up, body text cut into chunks, and search programs
 * evaluated against such messages.
 *
 * Input: one control byte, then the data. control % 7 picks the mode:
 *   0 date      the data is a Date: value; checked: a parsed date's
 *               instant lies within 100 hours of its day's midnight
 *   1 subject   the data is a Subject:; checked: the base subject is no
 *               longer than it, and is its own base subject (no marker
 *               left to remove)
 *   2 address   the data is an address list; checked: every part within
 *               MAILSEARCH_SORT_TEXT_MAX
 *   3 body      first line a needle, the rest a body; checked: BODY gives
 *               the same answer for chunks of 1, 2, 7, 64 bytes and the
 *               whole, and the answer of a naive search on folded code
 *               points
 *   4 thread    lines "message-id TAB in-reply-to TAB references TAB
 *               subject TAB date", uids 1..n; checked for both algorithms:
 *               parentheses balance, no "()", every uid exactly once
 *   5 sort      header lines ("Name: value") of up to 8 messages split by
 *               an empty line; SORT by every criterion must be a
 *               permutation of the uids
 *   6 program   bytes build a search program (bounded), evaluated on a
 *               message made of the rest (headers, empty line, body);
 *               checked: the phased evaluation equals evaluating every
 *               leaf alone and combining them, and the body is read at
 *               most once
 */
#include "mailsearch-private.h"

#include "xalloc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(c)                                                                  \
	do {                                                                           \
		if (!(c))                                                              \
			__builtin_trap();                                              \
	} while (0)

/* An exactly-sized heap copy, so ASan sees any read past the end. */
static char *copy(const uint8_t *data, size_t size)
{
	char *p = xmalloc(size ? size : 1);
	if (size)
		memcpy(p, data, size);
	return p;
}

static void fuzz_date(const uint8_t *data, size_t size)
{
	char *s = copy(data, size);
	int64_t ms, day;
	if (mailsearch_date_parse(s, size, &ms, &day) == 0) {
		int64_t mid = day * 86400000;
		FUZZ_CHECK(ms > mid - (int64_t)100 * 3600000 && ms < mid + (int64_t)124 * 3600000);
		FUZZ_CHECK(day >= -25567 && day <= 2932896); /* 1900 .. 9999 */
	}
	free(s);
}

static void fuzz_subject(const uint8_t *data, size_t size)
{
	char *s = copy(data, size);
	buf out, again;
	buf_init(&out);
	buf_init(&again);
	int reply;
	mailsearch_base_subject(s, size, &out, &reply);
	FUZZ_CHECK(out.len <= size);
	FUZZ_CHECK(reply == 0 || reply == 1);
	char *b = copy(out.data, out.len);
	mailsearch_base_subject(b, out.len, &again, &reply);
	FUZZ_CHECK(again.len == out.len && (out.len == 0 || memcmp(again.data, out.data, out.len) == 0));
	FUZZ_CHECK(reply == 0);
	free(b);
	free(s);
	buf_deinit(&out);
	buf_deinit(&again);
}

static void fuzz_address(const uint8_t *data, size_t size)
{
	char *s = copy(data, size);
	buf mb, host, disp;
	buf_init(&mb);
	buf_init(&host);
	buf_init(&disp);
	mailsearch__address_first(s, size, &mb, &host, &disp);
	FUZZ_CHECK(mb.len <= MAILSEARCH_SORT_TEXT_MAX && host.len <= MAILSEARCH_SORT_TEXT_MAX &&
		   disp.len <= MAILSEARCH_SORT_TEXT_MAX);
	buf_deinit(&mb);
	buf_deinit(&host);
	buf_deinit(&disp);
	free(s);
}

/* ---- a message over a byte range ---- */

struct fmsg {
	const char *headers; /* "Name: value" lines */
	size_t headers_len;
	const char *body;
	size_t body_len;
	size_t chunk;
	int body_calls;
	struct mailsearch_msg msg;
};

static int fmsg_header(void *ctx, const char *name, mailsearch_text_cb *cb, void *arg)
{
	struct fmsg *f = ctx;
	const char *p = f->headers, *end = f->headers + f->headers_len;
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		if (eol == NULL)
			eol = end;
		const char *colon = memchr(p, ':', (size_t)(eol - p));
		if (colon != NULL && colon > p && colon - p < 64) {
			char field[64];
			memcpy(field, p, (size_t)(colon - p));
			field[colon - p] = '\0';
			if (strlen(field) == (size_t)(colon - p) &&
			    (name == NULL || strcasecmp(field, name) == 0)) {
				const char *v = colon + 1;
				while (v < eol && *v == ' ')
					v++;
				char *val = copy((const uint8_t *)v, (size_t)(eol - v));
				int r = cb(arg, field, val, (size_t)(eol - v));
				free(val);
				if (r != 0)
					return 0;
			}
		}
		p = eol + 1;
	}
	return 0;
}

static int fmsg_body(void *ctx, mailsearch_text_cb *cb, void *arg)
{
	struct fmsg *f = ctx;
	f->body_calls++;
	size_t step = f->chunk ? f->chunk : (f->body_len ? f->body_len : 1);
	for (size_t off = 0; off < f->body_len; off += step) {
		size_t n = f->body_len - off < step ? f->body_len - off : step;
		char *c = copy((const uint8_t *)f->body + off, n);
		int r = cb(arg, NULL, c, n);
		free(c);
		if (r != 0)
			break;
	}
	return 0;
}

static void fmsg_init(struct fmsg *f, const char *headers, size_t hlen, const char *body,
		      size_t blen)
{
	memset(f, 0, sizeof(*f));
	f->headers = headers;
	f->headers_len = hlen;
	f->body = body;
	f->body_len = blen;
	f->msg.uid = 1;
	f->msg.ctx = f;
	f->msg.header = fmsg_header;
	f->msg.body_text = fmsg_body;
}

static void fuzz_body(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	size_t nlen = nl ? (size_t)(nl - data) : size;
	const char *body = nl ? (const char *)nl + 1 : "";
	size_t blen = nl ? size - nlen - 1 : 0;
	char *needle = xmalloc(nlen + 1);
	memcpy(needle, data, nlen);
	needle[nlen] = '\0';
	nlen = strlen(needle); /* a NUL ends the needle */
	struct search_key key = {.op = SEARCH_BODY, .str = needle};

	/* the oracle: fold both, then look naively */
	struct mailsearch__needle nd, hay;
	mailsearch__needle_init(&nd, needle, nlen);
	mailsearch__needle_init(&hay, body, blen);
	int want = nd.n == 0;
	for (size_t i = 0; !want && i + nd.n <= hay.n; i++)
		want = memcmp(hay.cp + i, nd.cp, nd.n * sizeof(*nd.cp)) == 0;
	mailsearch__needle_deinit(&nd);
	mailsearch__needle_deinit(&hay);

	static const size_t chunks[] = {0, 1, 2, 7, 64};
	for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
		struct fmsg f;
		fmsg_init(&f, "", 0, body, blen);
		f.chunk = chunks[i];
		FUZZ_CHECK(mailsearch_match(&key, &f.msg, 0) == want);
		FUZZ_CHECK(f.body_calls <= 1);
	}
	free(needle);
}

/* ---- threads ---- */

#define FUZZ_MAX_MSGS 64

/* Check the syntax loosely and that each uid 1..n appears exactly once. */
static void check_threads(const buf *out, size_t n)
{
	uint8_t seen[FUZZ_MAX_MSGS + 1] = {0};
	long depth = 0;
	for (size_t i = 0; i < out->len; i++) {
		char c = (char)out->data[i];
		if (c == '(') {
			FUZZ_CHECK(i + 1 < out->len && out->data[i + 1] != ')');
			depth++;
		} else if (c == ')') {
			depth--;
			FUZZ_CHECK(depth >= 0);
		} else if (c >= '1' && c <= '9') {
			unsigned long v = 0;
			while (i < out->len && out->data[i] >= '0' && out->data[i] <= '9')
				v = v * 10 + (out->data[i++] - '0');
			i--;
			FUZZ_CHECK(v >= 1 && v <= n && !seen[v]);
			seen[v] = 1;
		} else {
			FUZZ_CHECK(c == ' ');
		}
	}
	FUZZ_CHECK(depth == 0);
	for (size_t v = 1; v <= n; v++)
		FUZZ_CHECK(seen[v]);
}

static void fuzz_thread(const uint8_t *data, size_t size)
{
	char *s = xmalloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';
	struct mailsearch_thread_msg msgs[FUZZ_MAX_MSGS];
	char *subjects[FUZZ_MAX_MSGS];
	size_t n = 0;
	char *line = s;
	while (line != NULL && n < FUZZ_MAX_MSGS) {
		char *next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		char *f[5] = {NULL, NULL, NULL, NULL, NULL};
		char *p = line;
		for (int i = 0; i < 5 && p != NULL; i++) {
			f[i] = p;
			p = strchr(p, '\t');
			if (p != NULL)
				*p++ = '\0';
		}
		struct mailsearch_thread_msg *m = &msgs[n];
		memset(m, 0, sizeof(*m));
		m->uid = (uint32_t)n + 1;
		m->message_id = f[0] && *f[0] ? f[0] : NULL;
		m->in_reply_to = f[1] && *f[1] ? f[1] : NULL;
		m->references = f[2] && *f[2] ? f[2] : NULL;
		buf b;
		buf_init(&b);
		if (f[3] != NULL)
			mailsearch_base_subject(f[3], strlen(f[3]), &b, &m->is_reply);
		buf_append(&b, "", 1);
		subjects[n] = (char *)b.data;
		m->base_subject = subjects[n];
		m->sent_ms = (int64_t)n * 1000;
		if (f[4] != NULL)
			mailsearch_date_parse(f[4], strlen(f[4]), &m->sent_ms, NULL);
		n++;
		line = next;
	}
	for (int alg = SEARCH_THREAD_ORDEREDSUBJECT; alg <= SEARCH_THREAD_REFERENCES; alg++) {
		buf out;
		buf_init(&out);
		FUZZ_CHECK(mailsearch_thread((enum search_thread_alg)alg, msgs, n, &out) == 0);
		check_threads(&out, n);
		buf_deinit(&out);
	}
	for (size_t i = 0; i < n; i++)
		free(subjects[i]);
	free(s);
}

/* ---- sort ---- */

static void fuzz_sort(const uint8_t *data, size_t size)
{
	static const struct search_sort crit[] = {
		{SEARCH_SORT_SUBJECT, 0}, {SEARCH_SORT_FROM, 1}, {SEARCH_SORT_TO, 0},
		{SEARCH_SORT_CC, 1},      {SEARCH_SORT_DATE, 0}, {SEARCH_SORT_DISPLAYFROM, 0},
		{SEARCH_SORT_DISPLAYTO, 1}, {SEARCH_SORT_SIZE, 0}, {SEARCH_SORT_ARRIVAL, 1},
	};
	size_t n_crit = sizeof(crit) / sizeof(crit[0]);
	struct mailsearch_sort_fields f[8];
	size_t n = 0, start = 0;
	const char *s = (const char *)data;
	while (start <= size && n < 8) {
		size_t end = start;
		while (end + 1 < size && !(s[end] == '\n' && s[end + 1] == '\n'))
			end++;
		if (end + 1 >= size)
			end = size;
		struct fmsg m;
		fmsg_init(&m, s + start, end - start, "", 0);
		m.msg.uid = (uint32_t)(10 - n);
		m.msg.size = end - start;
		m.msg.internal_date_ms = (int64_t)(n % 3);
		FUZZ_CHECK(mailsearch_sort_fields_get(&m.msg, crit, n_crit, &f[n]) == 0);
		FUZZ_CHECK(strlen(f[n].subject) <= MAILSEARCH_SORT_TEXT_MAX &&
			   strlen(f[n].display_from) <= MAILSEARCH_SORT_TEXT_MAX);
		n++;
		start = end + 2;
	}
	for (size_t c = 0; c < n_crit; c++) {
		uint32_t uids[8];
		FUZZ_CHECK(mailsearch_sort(f, n, &crit[c], n_crit - c, uids) == 0);
		uint32_t mask = 0;
		for (size_t i = 0; i < n; i++) {
			FUZZ_CHECK(uids[i] >= 3 && uids[i] <= 10);
			mask |= 1u << uids[i];
		}
		FUZZ_CHECK((size_t)__builtin_popcount(mask) == n);
	}
	for (size_t i = 0; i < n; i++)
		mailsearch_sort_fields_deinit(&f[i]);
}

/* ---- programs ---- */

#define FUZZ_MAX_KEYS 48

struct prog_build {
	struct search_key keys[FUZZ_MAX_KEYS];
	struct search_key kids[FUZZ_MAX_KEYS][3];
	char strs[FUZZ_MAX_KEYS][8];
	size_t n;
	const uint8_t *p, *end;
};

static const char *const fuzz_fields[] = {"Subject", "From", "To", "X-A"};
static const char *const fuzz_flags[] = {"\\Seen", "\\seen", "$K", "k"};

/* Build one key from the bytes; inner keys up to depth 6. */
static void build_key(struct prog_build *b, struct search_key *k, int depth)
{
	memset(k, 0, sizeof(*k));
	uint8_t op = b->p < b->end ? *b->p++ : 0;
	uint8_t arg = b->p < b->end ? *b->p++ : 0;
	size_t me = b->n++;
	int kind = op % 12;
	if (depth >= 6 || b->n + 3 > FUZZ_MAX_KEYS)
		kind = 3 + kind % 9; /* leaves only */
	char *str = b->strs[me];
	/* a short needle from the input: up to 3 bytes */
	size_t sl = arg % 4;
	size_t i = 0;
	for (; i < sl && b->p < b->end; i++)
		str[i] = (char)(*b->p++ ? b->p[-1] : 'a');
	str[i] = '\0';
	switch (kind) {
	case 0: case 1: case 2: {
		k->op = kind == 0 ? SEARCH_AND : kind == 1 ? SEARCH_OR : SEARCH_NOT;
		size_t nk = kind == 1 ? 2 : kind == 2 ? 1 : 1 + arg % 3;
		for (size_t j = 0; j < nk; j++)
			build_key(b, &b->kids[me][j], depth + 1);
		k->children = b->kids[me];
		k->n_children = nk;
		break;
	}
	case 3: k->op = SEARCH_HEADER; k->str = fuzz_fields[arg % 4]; k->str2 = str; break;
	case 4: k->op = SEARCH_BODY; k->str = str; break;
	case 5: k->op = SEARCH_TEXT; k->str = str; break;
	case 6: k->op = SEARCH_FLAG; k->str = fuzz_flags[arg % 4]; break;
	case 7: k->op = SEARCH_SENTBEFORE + arg % 3; k->num = 19000 + arg; break;
	case 8: k->op = SEARCH_LARGER + arg % 2; k->num = arg; break;
	case 9: k->op = SEARCH_MODSEQ; k->num = arg; break;
	case 10: k->op = SEARCH_OLDER + arg % 2; k->num = arg; break;
	default: k->op = arg % 2 ? SEARCH_ALL : SEARCH_NONE; break;
	}
}

/* The oracle: every leaf evaluated alone, combined here. */
static int oracle(const struct search_key *k, const struct mailsearch_msg *m)
{
	switch (k->op) {
	case SEARCH_AND:
		for (size_t i = 0; i < k->n_children; i++)
			if (!oracle(&k->children[i], m))
				return 0;
		return 1;
	case SEARCH_OR:
		return oracle(&k->children[0], m) || oracle(&k->children[1], m);
	case SEARCH_NOT:
		return !oracle(&k->children[0], m);
	default: {
		int r = mailsearch_match(k, m, 500000);
		FUZZ_CHECK(r == 0 || r == 1);
		return r;
	}
	}
}

static void fuzz_program(const uint8_t *data, size_t size)
{
	struct prog_build *b = xcalloc(1, sizeof(*b));
	size_t split = size < 64 ? size / 2 : 32;
	b->p = data;
	b->end = data + split;
	struct search_key root;
	build_key(b, &root, 0);
	/* the message: headers, an empty line, the body */
	const char *s = (const char *)data + split;
	size_t len = size - split, hlen = len;
	for (size_t i = 0; i + 1 < len; i++) {
		if (s[i] == '\n' && s[i + 1] == '\n') {
			hlen = i;
			break;
		}
	}
	const char *body = hlen + 2 <= len ? s + hlen + 2 : "";
	size_t blen = hlen + 2 <= len ? len - hlen - 2 : 0;
	static const char *const flags[] = {"\\SEEN", "$K"};
	struct fmsg f;
	fmsg_init(&f, s, hlen, body, blen);
	f.msg.flags = flags;
	f.msg.n_flags = size % 3;
	f.msg.size = size;
	f.msg.modseq = len;
	f.msg.internal_date_ms = (int64_t)(size % 1000) * 1000;
	f.chunk = size % 5;
	mailsearch_prog *prog;
	const char *error;
	FUZZ_CHECK(mailsearch_prog_create(&root, &prog, &error) == 0);
	int r = mailsearch_prog_match(prog, &f.msg, 500000);
	FUZZ_CHECK(f.body_calls <= 1);
	FUZZ_CHECK(r == oracle(&root, &f.msg));
	/* the same program again on the same message: the same answer */
	FUZZ_CHECK(mailsearch_prog_match(prog, &f.msg, 500000) == r);
	mailsearch_prog_destroy(&prog);
	free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 65536)
		return 0;
	uint8_t control = data[0];
	data++;
	size--;
	switch (control % 7) {
	case 0: fuzz_date(data, size); break;
	case 1: fuzz_subject(data, size); break;
	case 2: fuzz_address(data, size); break;
	case 3: fuzz_body(data, size); break;
	case 4: fuzz_thread(data, size); break;
	case 5: fuzz_sort(data, size); break;
	default: fuzz_program(data, size); break;
	}
	return 0;
}
