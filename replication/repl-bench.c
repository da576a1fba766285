/* repl_bench: commits/s and commit latency (p50/p99) of the replicated log
 * on loopback, for R=1 and R=3, with 1 and 64 proposals in flight, and
 * with 64 in flight while compaction keeps 1000 entries (the state machine
 * is empty: its snapshot has no bytes); then 5 KiB payloads (a message
 * body) with and without compaction, printing the entry-value bytes each
 * commit costs the primary (applying it, shipping it to two replicas:
 * about 3 payloads; compaction adds nothing). Not a test: run it by hand
 * (`build/bin/repl_bench [seconds-per-case] [--tls CERT KEY CA]`; with
 * --tls every node serves and calls over mutual TLS with that node
 * certificate, as the daemons do with --node-cert: cluster/dev-ca DIR node
 * NAME store makes one). loop_lag_*: how late a 1 ms timer on the
 * nodes' loop fired (p99, max): what a session of the node would wait
 * behind the replication work (sync writes on the loop, say). Uses LevelDB directories under /tmp, removed at
 * the end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "repl.h"
#include "xalloc.h"

#define PART 1u
#define MAX_NODES 3
#define PAYLOAD_LEN 512
#define PAYLOAD_MAX 5120

struct bench;

struct slot {
	struct bench *b;
	uint64_t start_ns;
};

/* Mutual TLS of every node, or both NULL (plaintext). */
struct bench_tls {
	tls_server *server;
	tls_client *client;
};

struct bench {
	uv_loop_t loop;
	repl_node *node[MAX_NODES];
	repl_partition *p[MAX_NODES];
	char dir[MAX_NODES][64];
	int port[MAX_NODES];
	int r;
	uint8_t payload[PAYLOAD_MAX];
	size_t payload_len;
	uint64_t end_ns;
	uint64_t *lat;
	size_t n_lat, cap_lat;
	int failed;
	int in_flight;
	/* Loop lag: a 1 ms repeating timer records how late each firing is
	 * (what every other session of a node would wait). */
	uv_timer_t lag_timer;
	uint64_t lag_prev_ns;
	uint64_t *lag;
	size_t n_lag, cap_lag;
};

static void apply_cb(repl_partition *p, uint64_t index, const uint8_t *payload, size_t len,
		     void *arg)
{
	(void)p, (void)index, (void)payload, (void)len, (void)arg;
}

static const struct repl_callbacks callbacks = { apply_cb, NULL };

/* An empty state machine's snapshot: no bytes, as of the applied index. */
static int snap_open(repl_partition *p, uint32_t partition, void *arg, void **snap_r,
		     uint64_t *index_r)
{
	(void)partition, (void)arg;
	struct repl_status st;
	repl_partition_status(p, &st);
	*index_r = st.applied_index;
	*snap_r = p;
	return 0;
}

static int snap_next(void *snap, struct buf *out, size_t max_bytes)
{
	(void)snap, (void)out, (void)max_bytes;
	return 0;
}

static void snap_close(void *snap)
{
	(void)snap;
}

static int snap_install(repl_partition *p, uint32_t partition, void *arg, int first, int last,
			const uint8_t *chunk, size_t len, uint64_t index)
{
	(void)p, (void)partition, (void)arg, (void)first, (void)last, (void)chunk, (void)len;
	(void)index;
	return 0;
}

static const struct repl_snapshot_callbacks snap_callbacks = {
	snap_open, snap_next, snap_close, snap_install
};

static void submit(struct slot *s);

static void done_cb(int status, uint64_t index, void *arg)
{
	(void)index;
	struct slot *s = arg;
	struct bench *b = s->b;
	uint64_t now = uv_hrtime();
	b->in_flight--;
	if (status != MAIL_OK) {
		b->failed++;
	} else {
		if (b->n_lat == b->cap_lat) {
			b->cap_lat = b->cap_lat ? b->cap_lat * 2 : 4096;
			b->lat = xrealloc(b->lat, b->cap_lat * sizeof *b->lat);
		}
		b->lat[b->n_lat++] = now - s->start_ns;
	}
	if (now < b->end_ns)
		submit(s);
}

static void submit(struct slot *s)
{
	struct bench *b = s->b;
	s->start_ns = uv_hrtime();
	if (repl_partition_propose(b->p[0], b->payload, b->payload_len, done_cb, s) == MAIL_OK)
		b->in_flight++;
	else
		b->failed++;
}

/* CPU time (user + system) of the process so far, in microseconds: every
 * node of a case runs in this process, so a case's delta divided by its
 * commits is what a commit costs the whole replica set (a figure the
 * machine's load disturbs far less than the rates). */
static uint64_t cpu_us(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
	       (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static void lag_cb(uv_timer_t *t)
{
	struct bench *b = t->data;
	uint64_t now = uv_hrtime();
	if (b->lag_prev_ns != 0) {
		uint64_t gap = now - b->lag_prev_ns;
		uint64_t late = gap > 1000000u ? gap - 1000000u : 0;
		if (b->n_lag == b->cap_lag) {
			b->cap_lag = b->cap_lag ? b->cap_lag * 2 : 4096;
			b->lag = xrealloc(b->lag, b->cap_lag * sizeof *b->lag);
		}
		b->lag[b->n_lag++] = late;
	}
	b->lag_prev_ns = now;
}

static int cmp_u64(const void *a, const void *c)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)c;
	return x < y ? -1 : x > y;
}

/* keep > 0: snapshot callbacks on, compaction keeps `keep` entries. */
static void run_case(const struct bench_tls *tls, int r, int window, double seconds, uint64_t keep,
		     size_t payload_len)
{
	struct bench *b = xcalloc(1, sizeof *b);
	uv_loop_init(&b->loop);
	b->r = r;
	b->payload_len = payload_len;
	memset(b->payload, 'x', sizeof b->payload);
	for (size_t k = 0; k < sizeof b->payload; k++)   /* not all one byte */
		b->payload[k] = (uint8_t)('a' + (k * 7919) % 26);
	struct repl_replica members[MAX_NODES];
	char ids[MAX_NODES][16];
	for (int i = 0; i < r; i++) {
		snprintf(b->dir[i], sizeof b->dir[i], "/tmp/repl-bench-XXXXXX");
		if (mkdtemp(b->dir[i]) == NULL) {
			perror("mkdtemp");
			exit(1);
		}
		snprintf(ids[i], sizeof ids[i], "b%d", i);
		struct repl_settings s = { .node_id = ids[i], .dir = b->dir[i],
					   .log_keep_entries = keep, .peer_tls = tls->client,
					   .server_tls = tls->server };
		const char *err;
		if (repl_node_create(&b->loop, &s, &b->node[i], &err) < 0 ||
		    repl_node_listen(b->node[i], "127.0.0.1", 0, &b->port[i], &err) < 0 ||
		    repl_partition_open(b->node[i], PART, &callbacks, NULL, 0, &b->p[i], &err) < 0) {
			fprintf(stderr, "repl_bench: %s\n", err);
			exit(1);
		}
		if (keep > 0)
			repl_partition_set_snapshot_callbacks(b->p[i], &snap_callbacks);
		members[i].node_id = ids[i];
		members[i].host = "127.0.0.1";
		members[i].port = b->port[i];
		members[i].in_sync = 1;
	}
	for (int i = 0; i < r; i++)
		repl_partition_set_role(b->p[i], 1, i == 0, members, (size_t)r);
	/* Warm-up: connections, first AppendEntries. */
	uint64_t warm_end = uv_hrtime() + 200000000ull;
	while (uv_hrtime() < warm_end)
		uv_run(&b->loop, UV_RUN_NOWAIT);

	struct slot *slots = xcalloc((size_t)window, sizeof *slots);
	uint64_t start = uv_hrtime();
	uint64_t cpu_start = cpu_us();
	b->end_ns = start + (uint64_t)(seconds * 1e9);
	uv_timer_init(&b->loop, &b->lag_timer);
	b->lag_timer.data = b;
	uv_timer_start(&b->lag_timer, lag_cb, 1, 1);
	for (int k = 0; k < window; k++) {
		slots[k].b = b;
		submit(&slots[k]);
	}
	while (b->in_flight > 0)
		uv_run(&b->loop, UV_RUN_ONCE);
	double elapsed = (double)(uv_hrtime() - start) / 1e9;
	double cpu = (double)(cpu_us() - cpu_start);
	uv_timer_stop(&b->lag_timer);
	uv_close((uv_handle_t *)&b->lag_timer, NULL);
	qsort(b->lag, b->n_lag, sizeof *b->lag, cmp_u64);
	double lag99 = b->n_lag ? (double)b->lag[b->n_lag * 99 / 100] / 1e6 : 0;
	double lagmax = b->n_lag ? (double)b->lag[b->n_lag - 1] / 1e6 : 0;
	qsort(b->lat, b->n_lat, sizeof *b->lat, cmp_u64);
	double p50 = b->n_lat ? (double)b->lat[b->n_lat / 2] / 1e6 : 0;
	double p99 = b->n_lat ? (double)b->lat[b->n_lat * 99 / 100] / 1e6 : 0;
	struct repl_status st;
	repl_partition_status(b->p[0], &st);
	struct repl_node_counters ctr;
	repl_node_counters(b->node[0], &ctr);
	printf("R=%d in_flight=%-3d payload=%-5zu commits=%-7zu commits/s=%-8.0f p50_ms=%.3f "
	       "p99_ms=%.3f failed=%d cpu_us/commit=%.1f value_bytes_read/commit=%.0f", r,
	       window, payload_len, b->n_lat, (double)b->n_lat / elapsed, p50, p99, b->failed,
	       b->n_lat ? cpu / (double)b->n_lat : 0.0,
	       b->n_lat ? (double)ctr.log_value_bytes_read / (double)b->n_lat : 0.0);
	printf(" loop_lag_p99_ms=%.3f loop_lag_max_ms=%.3f", lag99, lagmax);
	if (keep > 0)
		printf(" keep=%llu log_entries=%llu compacted=%llu",
		       (unsigned long long)keep, (unsigned long long)(st.last_index - st.base),
		       (unsigned long long)st.compacted_entries);
	printf("\n");
	fflush(stdout);

	for (int i = 0; i < r; i++) {
		repl_node_destroy(&b->node[i]);
		char cmd[128];
		snprintf(cmd, sizeof cmd, "rm -rf %s", b->dir[i]);
		if (system(cmd) != 0)
			fprintf(stderr, "repl_bench: cannot remove %s\n", b->dir[i]);
	}
	uv_run(&b->loop, UV_RUN_DEFAULT);
	uv_loop_close(&b->loop);
	free(slots);
	free(b->lat);
	free(b->lag);
	free(b);
}

/* --tls CERT KEY CA: the server side requires client certificates from
 * CA, the client side presents CERT. Returns 0, or -1 (logged). */
static int bench_tls_init(const char *cert, const char *key, const char *ca,
			  struct bench_tls *tls)
{
	const char *err;
	struct tls_server_settings ss = { cert, key, 0 };
	struct tls_client_settings cs = { ca, cert, key };
	if (tls_server_create(&ss, &tls->server, &err) < 0 ||
	    tls_server_require_client_cert(tls->server, ca, &err) < 0 ||
	    tls_client_create(&cs, &tls->client, &err) < 0) {
		fprintf(stderr, "repl_bench: --tls: %s\n", err);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	double seconds = 3.0;
	struct bench_tls tls = { NULL, NULL };
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--tls") == 0 && i + 3 < argc) {
			if (bench_tls_init(argv[i + 1], argv[i + 2], argv[i + 3], &tls) < 0)
				return 2;
			i += 3;
		} else if ((seconds = atof(argv[i])) <= 0) {
			fprintf(stderr, "usage: repl_bench [seconds-per-case] [--tls CERT KEY CA]\n");
			return 2;
		}
	}
	printf("repl_bench: %.1f s per case, loopback, LevelDB sync writes, RPC %s\n", seconds,
	       tls.server != NULL ? "mutual TLS" : "plaintext");
	static const int rs[] = { 1, 3 };
	static const int windows[] = { 1, 64 };
	for (size_t i = 0; i < 2; i++)
		for (size_t j = 0; j < 2; j++)
			run_case(&tls, rs[i], windows[j], seconds, 0, PAYLOAD_LEN);
	run_case(&tls, 1, 64, seconds, 1000, PAYLOAD_LEN);
	run_case(&tls, 3, 64, seconds, 1000, PAYLOAD_LEN);
	run_case(&tls, 3, 64, seconds, 0, PAYLOAD_MAX);
	run_case(&tls, 3, 64, seconds, 2000, PAYLOAD_MAX);
	tls_server_destroy(&tls.server);
	tls_client_destroy(&tls.client);
	return 0;
}
