/* mailstore_bench: does the store's apply path stay flat as mailboxes fill
 * and deliveries accumulate? Applies N deliveries (a body of SIZE bytes,
 * delivery id "<queue id>/0") to the INBOXes of USERS users, as replicated
 * entries (mailstore_apply_begin: each user's partition of 4, a log index,
 * the primary's clock advancing STEP ms per message); every 10th delivery
 * is followed by a flag change (\Seen) of that message, every 100th by a
 * \Deleted flag on the oldest message of the mailbox and a UID EXPUNGE of
 * it. Every 1000th message also runs an EXPUNGE without uids (IMAP
 * CLOSE/EXPUNGE: all \Deleted messages) and a SELECT of that mailbox,
 * timed apart: those read the whole mailbox by design. With SHARE > 0,
 * SHARE % of the messages (picked by a hash of their number) are also
 * flagged \Deleted and UID-EXPUNGEd LAG messages after their delivery, so
 * that body segments fall under the collection threshold and collection
 * runs (from the write path, as in production). BODY "pattern" (the
 * default) delivers one repeating byte pattern, which LevelDB's snappy
 * compresses about 12-fold; "random" delivers base64-like text of
 * pseudo-random bytes in 76-character lines (an attachment), which snappy
 * does not compress: the cost of storing real bodies. BODY "mime" makes
 * each message a real one: a header (From, To, Subject, Date,
 * Message-ID), a multipart/mixed body with a text part and a base64
 * attachment of random bytes filling SIZE: lib/mime's analysis (the
 * structure record every delivery stores) has work to do. With
 * MAILSTORE_BENCH_STRUCTURE=given in the environment the deliveries carry
 * a structure record made once (as replicated entries do, the primary
 * having analysed the message): the difference between the two runs is
 * the analysis' cost per message. MAILSTORE_BENCH_INLINE=BYTES sets
 * limits.body_inline_max (default: the store's, 16 KiB; 0 puts every body
 * in segments). MAILSTORE_BENCH_BARRIER=K applies as a replicated store
 * node does: the applies' syncs deferred (mailstore_apply_defer_sync), an
 * apply barrier after every K messages (default 0: each apply synced).
 *
 * Prints, per 10 % of N: wall and CPU time per message (delivery + its
 * share of flag changes and UID EXPUNGEs, collection included; the timed
 * EXPUNGEs without uids and SELECTs left out of both) and the part of
 * that CPU spent by other threads (LevelDB's background compaction), the mean
 * time of one EXPUNGE without uids and of one SELECT, the RSS, the size of
 * the LevelDB files, and of the body segment files (<dir>/bodies) with the
 * part of them still live; at the end the keys left in the database by
 * kind ('D' are the delivery records) and what collection did. Not a test
 * (it asserts nothing about time):
 *   build/bin/mailstore_bench [N [SIZE [USERS [STEP [SHARE [LAG [BODY]]]]]]]
 *   (defaults 200000 5120 4 1000 0 20000 pattern)
 * The store directory is under /tmp and is removed at the end. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-util.h"
#include "mail-error.h"
#include "mailstore.h"
#include "store-structure.h"
#include "util.h"
#include "xalloc.h"

#define BENCH_PARTS 4u
#define BENCH_MAX_USERS 64

struct bench {
	mailstore *store;
	size_t users;
	unsigned share;   /* % of messages expunged LAG messages later */
	size_t lag;
	uint32_t *uid_of; /* message number -> uid (SHARE > 0) */
	int random_body;
	int mime_body;
	uint8_t *structure;     /* MAILSTORE_BENCH_STRUCTURE=given */
	size_t structure_len;
	int64_t t0_ms;
	uint64_t step_ms;
	uint64_t next_index[BENCH_PARTS];
	uint32_t oldest[BENCH_MAX_USERS]; /* lowest uid not yet expunged */
	char user[BENCH_MAX_USERS][32];
};

static void bench_check(int ret, const char *what, size_t i)
{
	if (ret != MAIL_OK) {
		fprintf(stderr, "%s failed at message %zu: %s\n", what, i,
			mail_error_info(ret)->name);
		exit(1);
	}
}

/* The next entry of user u's partition, at message i's time. */
static void bench_entry(struct bench *b, size_t u, size_t i)
{
	const char *user = b->user[u];
	uint32_t p = (uint32_t)(util_hash64(user, strlen(user)) % BENCH_PARTS);
	struct mailstore_apply a = { p, ++b->next_index[p],
				     b->t0_ms + (int64_t)(i * b->step_ms) };
	mailstore_apply_begin(b->store, &a);
}

static void bench_flag(struct bench *b, size_t u, size_t i, uint32_t uid, const char *flag)
{
	struct mailstore_message_info *msgs;
	size_t n;
	bench_entry(b, u, i);
	bench_check(mailstore_store_flags(b->store, b->user[u], "", &uid, 1, MAILSTORE_FLAGS_ADD,
					  &flag, 1, &msgs, &n),
		    "store_flags", i);
	mailstore_apply_begin(b->store, NULL);
	mailstore_message_infos_free(msgs, n);
}

static void bench_expunge(struct bench *b, size_t u, size_t i, const uint32_t *uids,
			  size_t n_uids)
{
	uint32_t *gone;
	size_t n;
	bench_entry(b, u, i);
	bench_check(mailstore_expunge(b->store, b->user[u], "", uids, n_uids, &gone, &n),
		    "expunge", i);
	mailstore_apply_begin(b->store, NULL);
	free(gone);
}

/* Base64-like text of pseudo-random bytes, CRLF every 76 characters. */
static void bench_random_body(uint8_t *body, size_t size, size_t i)
{
	static const char b64[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	uint64_t x = i * 0x9E3779B97F4A7C15ull + 1;
	for (size_t k = 0; k < size; k++) {
		if (k % 78 == 76) {
			body[k] = '\r';
		} else if (k % 78 == 77) {
			body[k] = '\n';
		} else {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			body[k] = (uint8_t)b64[x & 63];
		}
	}
}

/* A real message of size bytes (at least 600): header, text part, base64
 * attachment of pseudo-random bytes, close delimiter. */
static void bench_mime_body(uint8_t *body, size_t size, size_t i)
{
	char head[600];
	int hl = snprintf(head, sizeof head,
			  "From: Sender %zu <sender%zu@example.org>\r\n"
			  "To: Someone <someone@example.net>\r\n"
			  "Subject: =?utf-8?q?Report_n=C2=B0_%zu?=\r\n"
			  "Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
			  "Message-ID: <%zu.bench@example.org>\r\n"
			  "MIME-Version: 1.0\r\n"
			  "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
			  "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
			  "Here is the report.\r\n"
			  "--b1\r\nContent-Type: application/pdf; name=\"r.pdf\"\r\n"
			  "Content-Transfer-Encoding: base64\r\n\r\n",
			  i, i, i, i);
	static const char tail[] = "\r\n--b1--\r\n";
	size_t tl = sizeof tail - 1;
	memcpy(body, head, (size_t)hl);
	bench_random_body(body + hl, size - (size_t)hl - tl, i);
	memcpy(body + size - tl, tail, tl);
}

/* Message i: its delivery and its share of flag changes and expunges. */
static void bench_message(struct bench *b, size_t i, uint8_t *body, size_t size)
{
	size_t u = i % b->users;
	char did[64];
	unsigned long long h = (unsigned long long)i * 0x9E3779B97F4A7C15ull;
	snprintf(did, sizeof did, "%016llx%08zx/0", h, i);
	if (b->mime_body)
		bench_mime_body(body, size, i);
	else if (b->random_body)
		bench_random_body(body, size, i);
	else
		memcpy(body, &i, sizeof i);
	struct mailstore_deliver_result r;
	bench_entry(b, u, i);
	struct mailstore_msg_in msg = { .body = body, .body_len = size,
					.structure = b->structure,
					.structure_len = b->structure_len };
	bench_check(mailstore_deliver_msg(b->store, b->user[u], "", did, &msg, &r), "deliver", i);
	mailstore_apply_begin(b->store, NULL);
	if (r.duplicate) {
		fprintf(stderr, "delivery %zu taken for a duplicate\n", i);
		exit(1);
	}
	if (i % 10 == 0)
		bench_flag(b, u, i, r.uid, "\\Seen");
	if (i % 100 == 0) {
		uint32_t old = b->oldest[u]++;
		bench_flag(b, u, i, old, "\\Deleted");
		bench_expunge(b, u, i, &old, 1);
	}
	if (b->share == 0)
		return;
	b->uid_of[i] = r.uid;
	if (i < b->lag)
		return;
	size_t j = i - b->lag;
	if ((j * 0x9E3779B97F4A7C15ull >> 32) % 100 < b->share) {
		size_t uj = j % b->users;
		bench_flag(b, uj, i, b->uid_of[j], "\\Deleted");
		bench_expunge(b, uj, i, &b->uid_of[j], 1);
	}
}

/* The body segment files: total and live MiB. */
static void bench_bodies(struct bench *b, double *disk_r, double *live_r)
{
	struct mailstore_body_stats st;
	mailstore_body_stats(b->store, &st);
	*disk_r = (double)st.disk_bytes / 1048576.0;
	*live_r = (double)st.live_bytes / 1048576.0;
}

static void bench_bodies_summary(struct bench *b)
{
	struct mailstore_body_stats st;
	mailstore_body_stats(b->store, &st);
	printf("bodies: %u segment files, %.1f MiB (%.1f MiB live), %llu segments collected, "
	       "%.1f MiB copied by collection\n", (unsigned)st.segments,
	       (double)st.disk_bytes / 1048576.0, (double)st.live_bytes / 1048576.0,
	       (unsigned long long)st.collected, (double)st.moved_bytes / 1048576.0);
}

int main(int argc, char **argv)
{
	size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
	size_t size = argc > 2 ? strtoul(argv[2], NULL, 10) : 5120;
	size_t users = argc > 3 ? strtoul(argv[3], NULL, 10) : 4;
	uint64_t step = argc > 4 ? strtoull(argv[4], NULL, 10) : 1000;
	unsigned long share = argc > 5 ? strtoul(argv[5], NULL, 10) : 0;
	size_t lag = argc > 6 ? strtoul(argv[6], NULL, 10) : 20000;
	const char *body_kind = argc > 7 ? argv[7] : "pattern";
	int random_body = strcmp(body_kind, "random") == 0;
	int mime_body = strcmp(body_kind, "mime") == 0;
	if (n < 1000 || size < sizeof(size_t) || users < 1 || users > BENCH_MAX_USERS ||
	    share > 100 || lag < 1 || (mime_body && size < 600) ||
	    (!random_body && !mime_body && strcmp(body_kind, "pattern") != 0)) {
		fprintf(stderr, "usage: mailstore_bench [N>=1000 [SIZE>=8 [USERS 1..64 "
				"[STEP ms [SHARE %% [LAG>=1 [pattern|random|mime]]]]]]]\n");
		return 2;
	}
	char dir[] = "/tmp/mailstore_bench_XXXXXX";
	if (mkdtemp(dir) == NULL)
		return 1;
	struct bench b = { .users = users, .t0_ms = 1700000000000, .step_ms = step,
			   .share = (unsigned)share, .lag = lag, .random_body = random_body,
			   .mime_body = mime_body };
	if (share > 0)
		b.uid_of = xcalloc(n, sizeof *b.uid_of);
	const char *error;
	struct mailstore_limits limits;
	mailstore_limits_default(&limits);
	const char *inl = getenv("MAILSTORE_BENCH_INLINE");
	if (inl != NULL && *inl != '\0')
		limits.body_inline_max = strtoul(inl, NULL, 10);
	const char *bar = getenv("MAILSTORE_BENCH_BARRIER");
	size_t barrier_every = bar != NULL ? strtoul(bar, NULL, 10) : 0;
	if (mailstore_open(dir, &limits, &b.store, &error) != MAIL_OK) {
		fprintf(stderr, "open: %s\n", error);
		return 1;
	}
	if (barrier_every > 0)
		mailstore_apply_defer_sync(b.store, 1);
	for (size_t u = 0; u < users; u++) {
		snprintf(b.user[u], sizeof b.user[u], "user%zu@bench.test", u);
		b.oldest[u] = 1;
	}
	uint8_t *body = xmalloc(size);
	for (size_t i = 0; i < size; i++)
		body[i] = (uint8_t)(i * 131 + 7);
	const char *given = getenv("MAILSTORE_BENCH_STRUCTURE");
	buf st;
	buf_init(&st);
	if (given != NULL && strcmp(given, "given") == 0) {
		/* the record of message 0, given with every delivery */
		if (mime_body)
			bench_mime_body(body, size, 0);
		store_structure_compute(body, size, &st);
		b.structure = st.data;
		b.structure_len = st.len;
	}
	printf("mailstore_bench: %zu deliveries of %zu bytes to %zu users, clock step %" PRIu64
	       " ms, %lu %% expunged %zu messages later, %s bodies, inline up to %zu bytes, "
	       "%s\n", n, size, users, step, share, lag, body_kind, limits.body_inline_max,
	       barrier_every > 0 ? "deferred syncs" : "synced applies");
	printf("%6s %9s %12s %11s %10s %11s %10s %8s %8s %8s %8s\n", "slice", "messages",
	       "wall us/msg", "cpu us/msg", "bg us/msg", "expunge ms", "select ms", "rss MiB",
	       "ldb MiB", "seg MiB", "live MiB");
	size_t slice = n / 10;
	double w0 = bench_now(CLOCK_MONOTONIC), c0 = bench_now(CLOCK_PROCESS_CPUTIME_ID);
	double m0 = bench_now(CLOCK_THREAD_CPUTIME_ID);
	double scan_s = 0, scan_cpu_s = 0, exp_s = 0, sel_s = 0;
	size_t n_scans = 0;
	for (size_t i = 0; i < n; i++) {
		bench_message(&b, i, body, size);
		if (barrier_every > 0 && i % barrier_every == barrier_every - 1)
			bench_check(mailstore_apply_barrier(b.store), "barrier", i);
		if (i % 1000 == 999) {
			size_t u = i % users;
			double t = bench_now(CLOCK_MONOTONIC);
			double tc = bench_now(CLOCK_PROCESS_CPUTIME_ID);
			bench_expunge(&b, u, i, NULL, 0);
			double t1 = bench_now(CLOCK_MONOTONIC);
			struct mailstore_mailbox_info info;
			struct mailstore_message_info *msgs;
			size_t n_msgs;
			bench_check(mailstore_select(b.store, b.user[u], "", &info, &msgs, &n_msgs),
				    "select", i);
			mailstore_message_infos_free(msgs, n_msgs);
			mailstore_mailbox_info_free(&info);
			double t2 = bench_now(CLOCK_MONOTONIC);
			exp_s += t1 - t;
			sel_s += t2 - t1;
			scan_s += t2 - t;
			scan_cpu_s += bench_now(CLOCK_PROCESS_CPUTIME_ID) - tc;
			n_scans++;
		}
		if ((i + 1) % slice == 0) {
			double w1 = bench_now(CLOCK_MONOTONIC);
			double c1 = bench_now(CLOCK_PROCESS_CPUTIME_ID);
			double m1 = bench_now(CLOCK_THREAD_CPUTIME_ID);
			/* other threads than this one: LevelDB's compaction */
			double bg = (c1 - c0) - (m1 - m0);
			double k = n_scans ? 1e3 / (double)n_scans : 0;
			double seg, live;
			bench_bodies(&b, &seg, &live);
			printf("%5zu%% %9zu %12.1f %11.1f %10.1f %11.2f %10.2f %8.1f %8.1f %8.1f %8.1f\n",
			       (i + 1) * 100 / n, i + 1, (w1 - w0 - scan_s) * 1e6 / (double)slice,
			       (c1 - c0 - scan_cpu_s) * 1e6 / (double)slice, bg * 1e6 / (double)slice,
			       exp_s * k, sel_s * k,
			       (double)bench_rss_kib() / 1024.0,
			       (double)bench_dir_bytes(dir) / 1048576.0, seg, live);
			fflush(stdout);
			w0 = w1;
			c0 = c1;
			m0 = m1;
			scan_s = scan_cpu_s = exp_s = sel_s = 0;
			n_scans = 0;
		}
	}
	bench_bodies_summary(&b);
	mailstore_close(&b.store);
	bench_count_keys(dir, "keys left");
	free(b.uid_of);
	/* the analysis alone (what a delivery without a given record pays) */
	if (mime_body)
		bench_mime_body(body, size, 0);
	double a0 = bench_now(CLOCK_PROCESS_CPUTIME_ID);
	for (int k = 0; k < 1000; k++) {
		buf a;
		buf_init(&a);
		store_structure_compute(body, size, &a);
		buf_deinit(&a);
	}
	printf("structure record (lib/mime analysis) alone: %.1f us CPU per message\n",
	       (bench_now(CLOCK_PROCESS_CPUTIME_ID) - a0) * 1e6 / 1000.0);
	free(body);
	buf_deinit(&st);
	bench_rm_rf(dir);
	return 0;
}
