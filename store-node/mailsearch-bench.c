/* mailsearch-bench.c: what mailsearch costs per message, on a synthetic
 * mailbox held in memory (not a test: it prints figures and never fails
 * on timing).
 *
 *   build/bin/mailsearch_bench [N [BODY_BYTES]]    (default 10000 4096)
 *
 * Each message has From, To, Subject (a third are replies), Date,
 * Message-ID, References (a thread of up to 8), 5 flags at most, and a
 * body of BODY_BYTES of generated words (a few with UTF-8 letters). The
 * callbacks hand out headers from memory and the body in 4 KiB chunks,
 * so the figures are mailsearch's own cost, not I/O or MIME decoding.
 * Printed: messages evaluated per CPU second and matches per program,
 * body MB per CPU second for the body scans, and the CPU time of SORT and
 * THREAD of all N.
 */
#include "mailsearch.h"

#include "buf.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct bmsg {
	char *headers; /* "Name: value\n" lines */
	char *body;
	size_t body_len;
	const char *flags[5];
	size_t n_flags;
	struct mailsearch_msg msg;
};

/* CPU time of this thread: other load on a shared box does not skew it
 * (the library does no I/O, so CPU time is its whole cost). */
static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int bmsg_header(void *ctx, const char *name, mailsearch_text_cb *cb, void *arg)
{
	struct bmsg *m = ctx;
	const char *p = m->headers;
	while (*p != '\0') {
		const char *eol = strchr(p, '\n');
		const char *colon = memchr(p, ':', (size_t)(eol - p));
		char field[64];
		size_t flen = (size_t)(colon - p);
		memcpy(field, p, flen);
		field[flen] = '\0';
		if (name == NULL || strcasecmp(name, field) == 0) {
			const char *v = colon + 2;
			if (cb(arg, field, v, (size_t)(eol - v)) != 0)
				return 0;
		}
		p = eol + 1;
	}
	return 0;
}

static int bmsg_body(void *ctx, mailsearch_text_cb *cb, void *arg)
{
	struct bmsg *m = ctx;
	for (size_t off = 0; off < m->body_len; off += 4096) {
		size_t n = m->body_len - off < 4096 ? m->body_len - off : 4096;
		if (cb(arg, NULL, m->body + off, n) != 0)
			break;
	}
	return 0;
}

static const char *const words[] = {
	"the", "quarterly", "report", "is", "attached", "please", "review", "numbers",
	"before", "friday", "meeting", "budget", "\xc3\xa9t\xc3\xa9", "gr\303\274\303\237e",
	"\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82", "and", "of", "to", "in", "project"};
#define N_WORDS (sizeof(words) / sizeof(words[0]))

static void make_mailbox(struct bmsg *msgs, size_t n, size_t body_bytes)
{
	static const char *const all_flags[] = {"\\Seen", "\\Answered", "\\Flagged", "$Work",
						"$Later"};
	uint64_t rnd = 88172645463325252ull;
	buf b;
	buf_init(&b);
	for (size_t i = 0; i < n; i++) {
		struct bmsg *m = &msgs[i];
		size_t thread = i / 8, pos = i % 8;
		buf_reset(&b);
		buf_printf(&b, "From: User %zu <user%zu@example.com>\n", i % 97, i % 97);
		buf_printf(&b, "To: team%zu@example.org, boss@example.org\n", i % 13);
		buf_printf(&b, "Subject: %sTopic number %zu\n", pos ? "Re: " : "", thread);
		buf_printf(&b, "Date: Mon, %zu Jan 2024 %02zu:%02zu:00 +0100\n", 1 + i % 28,
			   i % 24, i % 60);
		buf_printf(&b, "Message-ID: <m%zu@example.com>\n", i);
		if (pos > 0) {
			buf_append_str(&b, "References:");
			for (size_t r = i - pos; r < i; r++)
				buf_printf(&b, " <m%zu@example.com>", r);
			buf_append_str(&b, "\n");
		}
		m->headers = xstrndup((const char *)b.data, b.len);
		buf_reset(&b);
		while (b.len < body_bytes) {
			rnd ^= rnd << 13;
			rnd ^= rnd >> 7;
			rnd ^= rnd << 17;
			buf_append_str(&b, words[rnd % N_WORDS]);
			buf_append_str(&b, (rnd >> 20) % 12 ? " " : ".\n");
		}
		if (i % 100 == 0)
			buf_append_str(&b, "the secret needle word\n");
		m->body_len = b.len;
		m->body = xstrndup((const char *)b.data, b.len);
		m->n_flags = i % 6;
		for (size_t f = 0; f < m->n_flags && f < 5; f++)
			m->flags[f] = all_flags[(i + f) % 5];
		m->msg = (struct mailsearch_msg){
			.uid = (uint32_t)i + 1,
			.size = b.len + 300,
			.internal_date_ms = 1704067200000 + (int64_t)i * 60000,
			.modseq = i + 1,
			.flags = m->flags,
			.n_flags = m->n_flags,
			.ctx = m,
			.header = bmsg_header,
			.body_text = bmsg_body,
		};
	}
	buf_deinit(&b);
}

static void bench_program(const char *name, const struct search_key *key, struct bmsg *msgs,
			  size_t n, size_t body_bytes, int reads_body)
{
	mailsearch_prog *prog;
	const char *error;
	if (mailsearch_prog_create(key, &prog, &error) < 0) {
		fprintf(stderr, "%s: %s\n", name, error);
		exit(1);
	}
	size_t matches = 0, rounds = 0;
	double t0 = now_s(), t;
	do {
		for (size_t i = 0; i < n; i++)
			matches += mailsearch_prog_match(prog, &msgs[i].msg, 1706000000000) == 1;
		rounds++;
		t = now_s() - t0;
	} while (t < 0.5);
	double per_s = (double)(n * rounds) / t;
	printf("%-34s %12.0f msg/s  %6zu matches", name, per_s, matches / rounds);
	if (reads_body)
		printf("  %8.1f MB/s of body", per_s * (double)body_bytes / 1e6);
	printf("\n");
	mailsearch_prog_destroy(&prog);
}

#define KEY(...) ((struct search_key){__VA_ARGS__})
#define KEYS(...) ((const struct search_key[]){__VA_ARGS__})

int main(int argc, char **argv)
{
	size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 10000;
	size_t body_bytes = argc > 2 ? strtoul(argv[2], NULL, 10) : 4096;
	if (n == 0)
		n = 1;
	struct bmsg *msgs = xcalloc(n, sizeof(*msgs));
	make_mailbox(msgs, n, body_bytes);
	printf("mailsearch_bench: %zu messages, %zu-byte bodies\n", n, body_bytes);

	struct search_key seen_large = KEY(.op = SEARCH_AND,
					   .children = KEYS(KEY(.op = SEARCH_FLAG, .str = "\\Seen"),
							    KEY(.op = SEARCH_LARGER, .num = 4000)),
					   .n_children = 2);
	bench_program("FLAG \\Seen LARGER 4000", &seen_large, msgs, n, body_bytes, 0);
	struct search_key since = KEY(.op = SEARCH_SINCE, .num = 19726);
	bench_program("SINCE 4-Jan-2024", &since, msgs, n, body_bytes, 0);
	struct search_key from = KEY(.op = SEARCH_HEADER, .str = "From", .str2 = "user42@");
	bench_program("FROM user42@", &from, msgs, n, body_bytes, 0);
	struct search_key subj = KEY(.op = SEARCH_HEADER, .str = "Subject", .str2 = "topic NUMBER 7");
	bench_program("SUBJECT \"topic NUMBER 7\"", &subj, msgs, n, body_bytes, 0);
	struct search_key sent = KEY(.op = SEARCH_SENTSINCE, .num = 19735);
	bench_program("SENTSINCE 13-Jan-2024", &sent, msgs, n, body_bytes, 0);
	struct search_key body = KEY(.op = SEARCH_BODY, .str = "needle");
	bench_program("BODY needle", &body, msgs, n, body_bytes, 1);
	struct search_key body_utf8 = KEY(.op = SEARCH_BODY, .str = "GR\xc3\x9c\xc3\x9f" "E PROJECT");
	bench_program("BODY \"GRÜßE PROJECT\"", &body_utf8, msgs, n, body_bytes, 1);
	struct search_key text = KEY(.op = SEARCH_TEXT, .str = "zebra");
	bench_program("TEXT zebra (absent)", &text, msgs, n, body_bytes, 1);
	struct search_key three = KEY(
		.op = SEARCH_AND,
		.children = KEYS(KEY(.op = SEARCH_BODY, .str = "needle"),
				 KEY(.op = SEARCH_BODY, .str = "secret"),
				 KEY(.op = SEARCH_NOT, .children = KEYS(KEY(.op = SEARCH_BODY, .str = "zebra")),
				     .n_children = 1)),
		.n_children = 3);
	bench_program("BODY x3 (one pass)", &three, msgs, n, body_bytes, 1);
	struct search_key seen_body = KEY(.op = SEARCH_AND,
					  .children = KEYS(KEY(.op = SEARCH_FLAG, .str = "\\Flagged"),
							   KEY(.op = SEARCH_BODY, .str = "needle")),
					  .n_children = 2);
	bench_program("FLAGGED BODY needle", &seen_body, msgs, n, body_bytes, 1);

	/* SORT: fields of all, then the order */
	const struct search_sort crit[] = {{SEARCH_SORT_SUBJECT, 0}, {SEARCH_SORT_DATE, 1}};
	struct mailsearch_sort_fields *f = xcalloc(n, sizeof(*f));
	uint32_t *uids = xmalloc(n * sizeof(*uids));
	double t0 = now_s();
	for (size_t i = 0; i < n; i++)
		mailsearch_sort_fields_get(&msgs[i].msg, crit, 2, &f[i]);
	double t1 = now_s();
	mailsearch_sort(f, n, crit, 2, uids);
	double t2 = now_s();
	printf("SORT (SUBJECT REVERSE DATE)          fields %.1f ms, sort %.1f ms\n",
	       (t1 - t0) * 1e3, (t2 - t1) * 1e3);
	for (size_t i = 0; i < n; i++)
		mailsearch_sort_fields_deinit(&f[i]);
	free(f);
	free(uids);

	/* THREAD: fields of all, then each algorithm */
	struct mailsearch_thread_msg *tm = xcalloc(n, sizeof(*tm));
	t0 = now_s();
	for (size_t i = 0; i < n; i++)
		mailsearch_thread_fields_get(&msgs[i].msg, SEARCH_THREAD_REFERENCES, &tm[i]);
	t1 = now_s();
	buf out;
	buf_init(&out);
	mailsearch_thread(SEARCH_THREAD_REFERENCES, tm, n, &out);
	t2 = now_s();
	size_t ref_len = out.len;
	buf_reset(&out);
	mailsearch_thread(SEARCH_THREAD_ORDEREDSUBJECT, tm, n, &out);
	double t3 = now_s();
	printf("THREAD                               fields %.1f ms, REFERENCES %.1f ms "
	       "(%zu bytes), ORDEREDSUBJECT %.1f ms\n",
	       (t1 - t0) * 1e3, (t2 - t1) * 1e3, ref_len, (t3 - t2) * 1e3);
	buf_deinit(&out);
	for (size_t i = 0; i < n; i++)
		mailsearch_thread_fields_deinit(&tm[i]);
	free(tm);
	for (size_t i = 0; i < n; i++) {
		free(msgs[i].headers);
		free(msgs[i].body);
	}
	free(msgs);
	return 0;
}
