/* queue_store_bench: does the queue's apply path stay flat as messages go
 * through? Applies N put entries (a body of SIZE bytes, 1 recipient, or 2
 * for every fourth message) through queue_store_apply(), spread over 4
 * partitions; each message is read back (queue_store_get, as an attempt
 * does) and removed (a remove entry, which carries the last "done"), and
 * the second recipient of a two-recipient message gets a "done" entry
 * first. Removal lags PENDING messages behind the puts, so about PENDING
 * messages are queued at any time, like a queue that keeps up.
 *
 * Prints, per 10 % of N: wall time and CPU time of the slice (per message),
 * the RSS and the size of the LevelDB directory; at the end the number of
 * keys left in the database by kind. Not a test (it asserts nothing about
 * time): run it by hand,
 *   build/bin/queue_store_bench [N [SIZE [PENDING]]]   (200000 5120 1000)
 * The LevelDB directory is under /tmp and is removed at the end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-util.h"
#include "queue-store.h"
#include "xalloc.h"

#define BENCH_PARTS 4u

static void bench_qid(char *out, size_t i)
{
	/* spread like the real ids (content hashes), not in put order */
	unsigned long long h = (unsigned long long)i * 0x9E3779B97F4A7C15ull;
	snprintf(out, QUEUE_ID_MAX, "%016llx%08zx", h, i);
}

static uint32_t bench_part(size_t i)
{
	return (uint32_t)(i % BENCH_PARTS);
}

/* The partitions' next log indexes. */
struct bench_log {
	uint64_t next[BENCH_PARTS];
};

static void bench_apply(queue_store *s, struct bench_log *log, size_t i,
			const Queue__LogEntry *e)
{
	const char *error;
	uint32_t p = bench_part(i);
	if (queue_store_apply(s, p, ++log->next[p], e, &error) < 0) {
		fprintf(stderr, "apply failed: %s\n", error);
		exit(1);
	}
}

static void bench_put(queue_store *s, struct bench_log *log, size_t i, uint8_t *body,
		      size_t size)
{
	static char *const rcpts[2] = { "a@x.test", "b@x.test" };
	char qid[QUEUE_ID_MAX];
	bench_qid(qid, i);
	Queue__EnqueueRequest env = QUEUE__ENQUEUE_REQUEST__INIT;
	env.queue_id = qid;
	env.mail_from = "sender@z.test";
	env.rcpt_to = (char **)rcpts;
	env.n_rcpt_to = i % 4 == 0 ? 2 : 1;
	memcpy(body, &i, sizeof i); /* distinct bodies: no compression luck */
	env.body.data = body;
	env.body.len = size;
	Queue__QueuedMessage msg = QUEUE__QUEUED_MESSAGE__INIT;
	msg.envelope = &env;
	Queue__LogEntry e = QUEUE__LOG_ENTRY__INIT;
	e.put = &msg;
	bench_apply(s, log, i, &e);
}

/* What delivery does for message i: read it, mark recipient 1 done when it
 * has two, remove it (the removal records the last recipient). */
static void bench_deliver(queue_store *s, struct bench_log *log, size_t i)
{
	char qid[QUEUE_ID_MAX];
	bench_qid(qid, i);
	const char *error;
	Queue__QueuedMessage *msg;
	if (queue_store_get(s, qid, &msg, &error) != 1) {
		fprintf(stderr, "message %zu missing\n", i);
		exit(1);
	}
	size_t n_rcpt = msg->envelope->n_rcpt_to;
	queue_store_message_free(&msg);
	Queue__LogEntry e = QUEUE__LOG_ENTRY__INIT;
	e.queue_id = qid;
	if (n_rcpt == 2) {
		uint32_t done = 1;
		e.n_done = 1;
		e.done = &done;
		bench_apply(s, log, i, &e);
		e.n_done = 0;
		e.done = NULL;
	}
	e.remove = 1;
	bench_apply(s, log, i, &e);
}

int main(int argc, char **argv)
{
	size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
	size_t size = argc > 2 ? strtoul(argv[2], NULL, 10) : 5120;
	size_t pending = argc > 3 ? strtoul(argv[3], NULL, 10) : 1000;
	if (n < 10 || size < sizeof(size_t)) {
		fprintf(stderr, "usage: queue_store_bench [N>=10 [SIZE>=8 [PENDING]]]\n");
		return 2;
	}
	char dir[] = "/tmp/queue_store_bench_XXXXXX";
	if (mkdtemp(dir) == NULL)
		return 1;
	queue_store *s;
	const char *error;
	if (queue_store_open(dir, &s, &error) < 0) {
		fprintf(stderr, "open: %s\n", error);
		return 1;
	}
	uint8_t *body = xmalloc(size);
	for (size_t i = 0; i < size; i++)
		body[i] = (uint8_t)(i * 131 + 7);
	struct bench_log log = { { 0 } };
	printf("queue_store_bench: %zu messages of %zu bytes, %zu pending, %u partitions\n", n,
	       size, pending, BENCH_PARTS);
	printf("%6s %10s %12s %12s %9s %11s\n", "slice", "messages", "wall us/msg", "cpu us/msg",
	       "rss MiB", "disk MiB");
	size_t slice = n / 10, delivered = 0;
	double w0 = bench_now(CLOCK_MONOTONIC), c0 = bench_now(CLOCK_PROCESS_CPUTIME_ID);
	for (size_t i = 0; i < n; i++) {
		bench_put(s, &log, i, body, size);
		if (i >= pending)
			bench_deliver(s, &log, delivered++);
		if ((i + 1) % slice == 0) {
			double w1 = bench_now(CLOCK_MONOTONIC);
			double c1 = bench_now(CLOCK_PROCESS_CPUTIME_ID);
			printf("%5zu%% %10zu %12.1f %12.1f %9.1f %11.1f\n", (i + 1) * 100 / n, i + 1,
			       (w1 - w0) * 1e6 / (double)slice, (c1 - c0) * 1e6 / (double)slice,
			       (double)bench_rss_kib() / 1024.0,
			       (double)bench_dir_bytes(dir) / 1048576.0);
			fflush(stdout);
			w0 = w1;
			c0 = c1;
		}
	}
	double w = bench_now(CLOCK_MONOTONIC);
	while (delivered < n)
		bench_deliver(s, &log, delivered++);
	printf("drain of the last %zu: %.1f us/msg; messages left: %ld\n", pending,
	       (bench_now(CLOCK_MONOTONIC) - w) * 1e6 / (double)(pending ? pending : 1),
	       queue_store_count(s));
	queue_store_close(&s);
	bench_count_keys(dir, "keys left");
	printf("disk after close: %.1f MiB\n", (double)bench_dir_bytes(dir) / 1048576.0);
	free(body);
	bench_rm_rf(dir);
	return 0;
}
