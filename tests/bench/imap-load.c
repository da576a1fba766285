/* imap-load.c: an IMAP load generator (a benchmark, not a test; never run
 * by ctest). It runs, per client, the mix of the common IMAP stress tools
 * (imaptest, the Cyrus and Mstone IMAP loads):
 *
 *   connect, LOGIN, SELECT mailbox, then --rounds times:
 *     FETCH lo:hi (FLAGS ENVELOPE)   the --fetch-window newest messages (0: 1:*)
 *     FETCH n BODY.PEEK[]            --bodies times, n at random
 *     STORE n +FLAGS/-FLAGS (\Flagged)   n at random
 *     APPEND mailbox (\Seen) {size}  a --message-size message (sync literal)
 *     STORE 1 +FLAGS.SILENT (\Deleted), EXPUNGE
 *                                    only while the mailbox holds more than
 *                                    --min-messages (so APPEND and EXPUNGE
 *                                    keep its size steady)
 *   LOGOUT, and a new connection.
 *
 * --clients clients (default 20) run at once for --duration seconds
 * (default 30), against --host:--port (plaintext, or implicit TLS with
 * --tls), one command in flight per client (no pipelining), no think time.
 * Client i logs in as user i mod U, from --users FILE ("user password" per
 * line) or --user-pattern 'bench%d@example.test' --password PW
 * --user-count U (default: --clients; --user-first, default 1).
 * --mix names the per-round steps to run (default
 * fetch-env,fetch-body,store,append,expunge): leave out what a server does
 * not implement. A NO or BAD answer is counted as that command's error and
 * the client goes on with its next step.
 *
 * Prints, per command and in total: operations completed within the
 * duration, operations/s, latency p50/p99 (ms, from sending the command to
 * its tagged answer), errors (with the first answer of each kind); with
 * --machine also one "result ..." line per command for scripts. Never
 * fails on timing: exit 0 after a run, 2 on bad options, 1 when no client
 * ever got past LOGIN.
 */
#include "imap-client.h"
#include "xalloc.h"

#include <getopt.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum op {
	OP_CONNECT, OP_LOGIN, OP_SELECT, OP_FETCH_ENV, OP_FETCH_BODY, OP_STORE, OP_APPEND,
	OP_EXPUNGE, OP_LOGOUT, OP_COUNT
};

static const char *const op_names[OP_COUNT] = {
	"connect", "LOGIN", "SELECT", "FETCH-env", "FETCH-body", "STORE", "APPEND", "EXPUNGE",
	"LOGOUT",
};

/* the per-round steps --mix chooses from */
enum step {
	STEP_FETCH_ENV, STEP_FETCH_BODY, STEP_STORE, STEP_APPEND, STEP_EXPUNGE, STEP_COUNT
};
static const char *const step_names[STEP_COUNT] = {
	"fetch-env", "fetch-body", "store", "append", "expunge",
};

struct settings {
	const char *host;
	int port;
	bool tls;
	const char *cafile;
	unsigned clients;
	double duration;
	const char *users_file;
	const char *user_pattern;
	const char *password;
	unsigned user_count, user_first;
	const char *mailbox;
	bool steps[STEP_COUNT];
	unsigned rounds;
	unsigned fetch_window;
	const char *fetch_items;
	unsigned bodies;
	size_t message_size;
	unsigned min_messages;
	unsigned seed;
	bool machine;
};

struct samples {
	uint32_t *us;
	size_t n, cap;
	uint64_t errors;
	char first_error[160];
};

struct client;

struct run {
	struct settings set;
	uv_loop_t *loop;
	struct imapc_shared shared;
	struct imapc_settings conn_set;
	SSL_CTX *ssl_ctx;
	struct sockaddr_in addr;
	char **user, **pass;
	unsigned n_users;
	struct client *clients;
	struct samples ops[OP_COUNT];
	uint64_t start_ns, deadline_ns;
	bool stopping;
	unsigned live;      /* clients not finished */
	unsigned logged_in; /* successful LOGINs */
	uv_timer_t stop_timer, grace_timer;
	uv_signal_t sigint;
	char *message;      /* the APPEND body */
	size_t message_len;
};

enum client_state { CL_IDLE_WAIT, CL_CONNECTING, CL_COMMAND, CL_DONE };

struct client {
	struct run *run;
	unsigned idx;
	struct imapc_conn *conn;
	uv_timer_t retry;
	enum client_state state;
	enum op op;          /* the command in flight */
	uint64_t sent_ns;
	uint64_t exists;
	unsigned round;
	int step;            /* the next per-round step; -1 before the first */
	unsigned bodies_left;
	bool expunge_pending; /* \Deleted stored; EXPUNGE next */
	uint64_t rng;
};

static uint64_t client_rand(struct client *cl)
{
	/* xorshift64* */
	cl->rng ^= cl->rng >> 12;
	cl->rng ^= cl->rng << 25;
	cl->rng ^= cl->rng >> 27;
	return cl->rng * 2685821657736338717ull;
}

static void samples_add(struct samples *s, uint64_t ns)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 1024;
		s->us = xrealloc(s->us, s->cap * sizeof(*s->us));
	}
	uint64_t us = ns / 1000;
	s->us[s->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static void samples_error(struct samples *s, const char *text)
{
	s->errors++;
	if (s->first_error[0] == '\0')
		snprintf(s->first_error, sizeof(s->first_error), "%s", text);
}

static void client_next(struct client *cl);
static void client_start(struct client *cl);

static void client_finish(struct client *cl)
{
	if (cl->state == CL_DONE)
		return;
	cl->state = CL_DONE;
	imapc_conn_destroy(&cl->conn);
	uv_close((uv_handle_t *)&cl->retry, NULL);
	if (--cl->run->live == 0) {
		uv_close((uv_handle_t *)&cl->run->stop_timer, NULL);
		uv_close((uv_handle_t *)&cl->run->grace_timer, NULL);
		uv_close((uv_handle_t *)&cl->run->sigint, NULL);
	}
}

static void client_retry_cb(uv_timer_t *t)
{
	client_start(t->data);
}

/* The session ended (LOGOUT, or an error): a new one, unless the run is
 * over. After an error wait a little, so a refusing server is not spun on. */
static void client_session_over(struct client *cl, bool error)
{
	imapc_conn_destroy(&cl->conn);
	if (cl->run->stopping) {
		client_finish(cl);
		return;
	}
	cl->state = CL_IDLE_WAIT;
	uv_timer_start(&cl->retry, client_retry_cb, error ? 100 : 0, 0);
}

static void client_send(struct client *cl, enum op op, const char *line, const void *literal,
			size_t literal_len)
{
	cl->op = op;
	cl->state = CL_COMMAND;
	cl->sent_ns = uv_hrtime();
	if (imapc_conn_command(cl->conn, line, literal, literal_len) < 0)
		client_session_over(cl, true);
}

static void quote(char *out, size_t size, const char *s)
{
	size_t o = 0;
	out[o++] = '"';
	for (; *s != '\0' && o + 3 < size; s++) {
		if (*s == '"' || *s == '\\')
			out[o++] = '\\';
		out[o++] = *s;
	}
	out[o++] = '"';
	out[o] = '\0';
}

static void client_on_ready(struct imapc_conn *c, enum imapc_status st, const char *text)
{
	struct client *cl = imapc_conn_context(c);
	struct run *run = cl->run;
	uint64_t now = uv_hrtime();
	if (st != IMAPC_OK) {
		if (now <= run->deadline_ns)
			samples_error(&run->ops[OP_CONNECT], text);
		client_session_over(cl, true);
		return;
	}
	if (now <= run->deadline_ns)
		samples_add(&run->ops[OP_CONNECT], now - cl->sent_ns);
	if (run->stopping) {
		client_session_over(cl, false);
		return;
	}
	unsigned u = cl->idx % run->n_users;
	char user[600], pass[600], line[1300];
	quote(user, sizeof(user), run->user[u]);
	quote(pass, sizeof(pass), run->pass[u]);
	snprintf(line, sizeof(line), "LOGIN %s %s", user, pass);
	client_send(cl, OP_LOGIN, line, NULL, 0);
}

static void client_on_untagged(struct imapc_conn *c, const struct imapc_response *resp)
{
	struct client *cl = imapc_conn_context(c);
	uint64_t n;
	if (imapc_untagged_number(resp, "EXISTS", &n))
		cl->exists = n;
	else if (imapc_untagged_number(resp, "EXPUNGE", &n) && cl->exists > 0)
		cl->exists--;
}

static void client_on_done(struct imapc_conn *c, enum imapc_status st, const char *text)
{
	struct client *cl = imapc_conn_context(c);
	struct run *run = cl->run;
	uint64_t now = uv_hrtime();
	enum op op = cl->op;
	bool counted = now <= run->deadline_ns;
	/* LOGOUT ends in BYE and a close; its tagged OK may or may not come
	 * before the close */
	if (op == OP_LOGOUT && (st == IMAPC_OK || st == IMAPC_BYE)) {
		if (counted)
			samples_add(&run->ops[op], now - cl->sent_ns);
		client_session_over(cl, false);
		return;
	}
	if (st == IMAPC_OK) {
		if (counted)
			samples_add(&run->ops[op], now - cl->sent_ns);
	} else if (counted) {
		samples_error(&run->ops[op], text);
	}
	if (st == IMAPC_BYE || st == IMAPC_ERROR) {
		client_session_over(cl, true);
		return;
	}
	if (op == OP_LOGIN) {
		if (st != IMAPC_OK) {
			client_session_over(cl, true);
			return;
		}
		run->logged_in++;
	}
	if (op == OP_SELECT && st != IMAPC_OK) {
		client_session_over(cl, true);
		return;
	}
	client_next(cl);
}

static void client_on_closed(struct imapc_conn *c, enum imapc_status st, const char *text)
{
	struct client *cl = imapc_conn_context(c);
	(void)st;
	if (uv_hrtime() <= cl->run->deadline_ns)
		samples_error(&cl->run->ops[OP_CONNECT], text);
	client_session_over(cl, true);
}

static const struct imapc_callbacks client_callbacks = {
	.on_ready = client_on_ready,
	.on_done = client_on_done,
	.on_untagged = client_on_untagged,
	.on_closed = client_on_closed,
};

/* Send the next command of the session. */
static void client_next(struct client *cl)
{
	struct run *run = cl->run;
	const struct settings *set = &run->set;
	char line[512];
	if (run->stopping) {
		client_session_over(cl, false);
		return;
	}
	if (cl->op == OP_LOGIN) {
		char box[300];
		quote(box, sizeof(box), set->mailbox);
		snprintf(line, sizeof(line), "SELECT %s", box);
		cl->round = 0;
		cl->step = -1;
		cl->exists = 0;
		client_send(cl, OP_SELECT, line, NULL, 0);
		return;
	}
	if (cl->expunge_pending) {
		cl->expunge_pending = false;
		client_send(cl, OP_EXPUNGE, "EXPUNGE", NULL, 0);
		return;
	}
	if (cl->bodies_left > 0 && cl->exists > 0) {
		cl->bodies_left--;
		snprintf(line, sizeof(line), "FETCH %llu BODY.PEEK[]",
			 (unsigned long long)(client_rand(cl) % cl->exists + 1));
		client_send(cl, OP_FETCH_BODY, line, NULL, 0);
		return;
	}
	for (;;) {
		cl->step++;
		if (cl->step >= STEP_COUNT) {
			cl->step = 0;
			cl->round++;
		}
		if (cl->round >= set->rounds) {
			client_send(cl, OP_LOGOUT, "LOGOUT", NULL, 0);
			return;
		}
		if (!set->steps[cl->step])
			continue;
		switch ((enum step)cl->step) {
		case STEP_FETCH_ENV:
			if (cl->exists == 0)
				continue;
			if (set->fetch_window == 0 || cl->exists <= set->fetch_window)
				snprintf(line, sizeof(line), "FETCH 1:* (%s)", set->fetch_items);
			else
				snprintf(line, sizeof(line), "FETCH %llu:%llu (%s)",
					 (unsigned long long)(cl->exists - set->fetch_window + 1),
					 (unsigned long long)cl->exists, set->fetch_items);
			client_send(cl, OP_FETCH_ENV, line, NULL, 0);
			return;
		case STEP_FETCH_BODY:
			if (cl->exists == 0 || set->bodies == 0)
				continue;
			cl->bodies_left = set->bodies - 1;
			snprintf(line, sizeof(line), "FETCH %llu BODY.PEEK[]",
				 (unsigned long long)(client_rand(cl) % cl->exists + 1));
			client_send(cl, OP_FETCH_BODY, line, NULL, 0);
			return;
		case STEP_STORE:
			if (cl->exists == 0)
				continue;
			snprintf(line, sizeof(line), "STORE %llu %cFLAGS (\\Flagged)",
				 (unsigned long long)(client_rand(cl) % cl->exists + 1),
				 client_rand(cl) & 1 ? '+' : '-');
			client_send(cl, OP_STORE, line, NULL, 0);
			return;
		case STEP_APPEND: {
			char box[300];
			quote(box, sizeof(box), set->mailbox);
			snprintf(line, sizeof(line), "APPEND %s (\\Seen) {%zu}", box,
				 run->message_len);
			client_send(cl, OP_APPEND, line, run->message, run->message_len);
			return;
		}
		case STEP_EXPUNGE:
			if (cl->exists <= set->min_messages)
				continue;
			cl->expunge_pending = true;
			client_send(cl, OP_STORE, "STORE 1 +FLAGS.SILENT (\\Deleted)", NULL, 0);
			return;
		case STEP_COUNT:
			break;
		}
	}
}

static void client_start(struct client *cl)
{
	struct run *run = cl->run;
	if (run->stopping) {
		client_finish(cl);
		return;
	}
	cl->conn = imapc_conn_create(run->loop, &run->shared, &run->conn_set, &client_callbacks,
				     cl);
	cl->state = CL_CONNECTING;
	cl->op = OP_CONNECT;
	cl->expunge_pending = false;
	cl->bodies_left = 0;
	cl->sent_ns = uv_hrtime();
	int r = imapc_conn_connect(cl->conn, (const struct sockaddr *)&run->addr);
	if (r < 0) {
		samples_error(&run->ops[OP_CONNECT], uv_strerror(r));
		client_session_over(cl, true);
	}
}

static void run_grace_cb(uv_timer_t *t)
{
	/* clients whose command did not finish within the grace period */
	struct run *run = t->data;
	for (unsigned i = 0; i < run->set.clients; i++)
		client_finish(&run->clients[i]);
}

static void run_stop(struct run *run)
{
	if (run->stopping)
		return;
	run->stopping = true;
	for (unsigned i = 0; i < run->set.clients; i++) {
		struct client *cl = &run->clients[i];
		if (cl->state == CL_IDLE_WAIT) {
			uv_timer_stop(&cl->retry);
			client_finish(cl);
		}
	}
	if (run->live > 0)
		uv_timer_start(&run->grace_timer, run_grace_cb, 10000, 0);
}

static void run_stop_cb(uv_timer_t *t)
{
	run_stop(t->data);
}

static void run_sigint_cb(uv_signal_t *s, int signum)
{
	struct run *run = s->data;
	(void)signum;
	run->deadline_ns = uv_hrtime();
	run_stop(run);
}

/* ---- options, users, report --------------------------------------------------- */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: imap-load --port PORT [--host 127.0.0.1] [--tls [--cafile CA]]\n"
		"         [--clients 20] [--duration 30]\n"
		"         (--users FILE | --user-pattern 'user%%d@domain' --password PW\n"
		"          [--user-count N] [--user-first 1])\n"
		"         [--mailbox INBOX] [--mix fetch-env,fetch-body,store,append,expunge]\n"
		"         [--rounds 10] [--fetch-window 50] [--fetch-items 'FLAGS ENVELOPE']\n"
		"         [--bodies 3] [--message-size 4096] [--min-messages 20] [--seed N]\n"
		"         [--machine]\n");
}

static int parse_mix(struct settings *set, const char *mix)
{
	memset(set->steps, 0, sizeof(set->steps));
	char *copy = xstrdup(mix), *save = NULL;
	int ret = 0;
	for (char *t = strtok_r(copy, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
		int found = -1;
		for (int i = 0; i < STEP_COUNT; i++)
			if (strcmp(t, step_names[i]) == 0)
				found = i;
		if (found < 0) {
			fprintf(stderr, "imap-load: --mix: unknown step '%s'\n", t);
			ret = -1;
			break;
		}
		set->steps[found] = true;
	}
	free(copy);
	return ret;
}

static int parse_uint(const char *name, const char *s, unsigned long max, unsigned long *r)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v > max) {
		fprintf(stderr, "imap-load: --%s: bad value '%s'\n", name, s);
		return -1;
	}
	*r = v;
	return 0;
}

static int load_users(struct run *run)
{
	const struct settings *set = &run->set;
	if (set->users_file != NULL) {
		FILE *f = fopen(set->users_file, "r");
		if (f == NULL) {
			perror(set->users_file);
			return -1;
		}
		char line[1024];
		while (fgets(line, sizeof(line), f) != NULL) {
			line[strcspn(line, "\r\n")] = '\0';
			char *sep = line + strcspn(line, " \t:");
			if (line[0] == '#' || line[0] == '\0' || *sep == '\0')
				continue;
			*sep = '\0';
			run->user = xrealloc(run->user, (run->n_users + 1) * sizeof(char *));
			run->pass = xrealloc(run->pass, (run->n_users + 1) * sizeof(char *));
			run->user[run->n_users] = xstrdup(line);
			run->pass[run->n_users] = xstrdup(sep + 1);
			run->n_users++;
		}
		fclose(f);
	} else {
		unsigned n = set->user_count ? set->user_count : set->clients;
		run->user = xcalloc(n, sizeof(char *));
		run->pass = xcalloc(n, sizeof(char *));
		for (unsigned i = 0; i < n; i++) {
			char name[512];
			/* the pattern is the operator's: one %d (or %u) */
			snprintf(name, sizeof(name), set->user_pattern, (int)(set->user_first + i));
			run->user[i] = xstrdup(name);
			run->pass[i] = xstrdup(set->password);
		}
		run->n_users = n;
	}
	if (run->n_users == 0) {
		fprintf(stderr, "imap-load: no users\n");
		return -1;
	}
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static double pct_ms(const struct samples *s, double p)
{
	if (s->n == 0)
		return 0;
	size_t i = (size_t)(p * (double)s->n);
	if (i >= s->n)
		i = s->n - 1;
	return s->us[i] / 1000.0;
}

static void report(struct run *run, double secs)
{
	const struct settings *set = &run->set;
	printf("imap-load: %s:%d%s, %u clients, %.1f s, %u users, rounds %u, window %u, "
	       "bodies %u, message %zu B, mix",
	       set->host, set->port, set->tls ? " (TLS)" : "", set->clients, secs, run->n_users,
	       set->rounds, set->fetch_window, set->bodies, set->message_size);
	for (int i = 0; i < STEP_COUNT; i++)
		if (set->steps[i])
			printf(" %s", step_names[i]);
	printf("\n%-11s %9s %10s %9s %9s %8s\n", "command", "ops", "ops/s", "p50 ms", "p99 ms",
	       "errors");
	uint64_t total = 0, errors = 0;
	struct samples all = {0};
	for (int op = 0; op < OP_COUNT; op++) {
		struct samples *s = &run->ops[op];
		if (s->n > 0)
			qsort(s->us, s->n, sizeof(*s->us), cmp_u32);
		if (op != OP_CONNECT) {
			total += s->n;
			for (size_t i = 0; i < s->n; i++)
				samples_add(&all, (uint64_t)s->us[i] * 1000);
		}
		errors += s->errors;
		printf("%-11s %9zu %10.1f %9.2f %9.2f %8llu\n", op_names[op], s->n,
		       (double)s->n / secs, pct_ms(s, 0.50), pct_ms(s, 0.99),
		       (unsigned long long)s->errors);
	}
	if (all.n > 0)
		qsort(all.us, all.n, sizeof(*all.us), cmp_u32);
	printf("%-11s %9llu %10.1f %9.2f %9.2f %8llu\n", "total", (unsigned long long)total,
	       (double)total / secs, pct_ms(&all, 0.50), pct_ms(&all, 0.99),
	       (unsigned long long)errors);
	printf("(total: the IMAP commands, connects not counted)\n");
	for (int op = 0; op < OP_COUNT; op++)
		if (run->ops[op].errors)
			printf("first %s error: %s\n", op_names[op], run->ops[op].first_error);
	if (set->machine) {
		for (int op = 0; op < OP_COUNT; op++) {
			struct samples *s = &run->ops[op];
			printf("result op=%s ops=%zu rate=%.2f p50_ms=%.3f p99_ms=%.3f errors=%llu\n",
			       op_names[op], s->n, (double)s->n / secs, pct_ms(s, 0.5),
			       pct_ms(s, 0.99), (unsigned long long)s->errors);
		}
		printf("result op=total ops=%llu rate=%.2f p50_ms=%.3f p99_ms=%.3f errors=%llu\n",
		       (unsigned long long)total, (double)total / secs, pct_ms(&all, 0.5),
		       pct_ms(&all, 0.99), (unsigned long long)errors);
	}
	free(all.us);
	fflush(stdout);
}

static char *make_message(size_t size, size_t *len_r)
{
	buf b;
	buf_init(&b);
	buf_append_str(&b, "From: imap-load <load@bench.test>\r\n"
			   "To: bench <bench@bench.test>\r\n"
			   "Subject: imap-load message\r\n"
			   "Date: Mon, 7 Dec 2026 10:00:00 +0000\r\n"
			   "Message-ID: <imap-load@bench.test>\r\n"
			   "MIME-Version: 1.0\r\n"
			   "Content-Type: text/plain; charset=us-ascii\r\n\r\n");
	while (b.len + 2 < size) {
		size_t n = size - b.len - 2;
		if (n > 76)
			n = 76;
		for (size_t i = 0; i < n; i++)
			buf_append(&b, &"abcdefghijklmnopqrstuvwxyz"[(b.len + i) % 26], 1);
		buf_append(&b, "\r\n", 2);
	}
	return (char *)buf_steal(&b, len_r);
}

int main(int argc, char **argv)
{
	static struct run run;  /* large (the shared buffers): not on the stack */
	struct settings *set = &run.set;
	*set = (struct settings){
		.host = "127.0.0.1", .clients = 20, .duration = 30, .mailbox = "INBOX",
		.user_first = 1, .rounds = 10, .fetch_window = 50,
		.fetch_items = "FLAGS ENVELOPE", .bodies = 3, .message_size = 4096,
		.min_messages = 20, .seed = 1,
	};
	parse_mix(set, "fetch-env,fetch-body,store,append,expunge");
	static const struct option longopts[] = {
		{"host", 1, NULL, 'h'}, {"port", 1, NULL, 'p'}, {"tls", 0, NULL, 't'},
		{"cafile", 1, NULL, 'C'}, {"clients", 1, NULL, 'c'}, {"duration", 1, NULL, 'd'},
		{"users", 1, NULL, 'u'}, {"user-pattern", 1, NULL, 'U'},
		{"password", 1, NULL, 'P'}, {"user-count", 1, NULL, 'n'},
		{"user-first", 1, NULL, 'f'}, {"mailbox", 1, NULL, 'm'}, {"mix", 1, NULL, 'x'},
		{"rounds", 1, NULL, 'r'}, {"fetch-window", 1, NULL, 'w'},
		{"fetch-items", 1, NULL, 'i'}, {"bodies", 1, NULL, 'b'},
		{"message-size", 1, NULL, 's'}, {"min-messages", 1, NULL, 'k'},
		{"seed", 1, NULL, 'S'}, {"machine", 0, NULL, 'M'}, {"help", 0, NULL, 'H'},
		{NULL, 0, NULL, 0},
	};
	int o;
	unsigned long v;
	while ((o = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (o) {
		case 'h': set->host = optarg; break;
		case 'p':
			if (parse_uint("port", optarg, 65535, &v) < 0 || v == 0)
				return 2;
			set->port = (int)v;
			break;
		case 't': set->tls = true; break;
		case 'C': set->cafile = optarg; break;
		case 'c':
			if (parse_uint("clients", optarg, 100000, &v) < 0 || v == 0)
				return 2;
			set->clients = (unsigned)v;
			break;
		case 'd':
			set->duration = atof(optarg);
			if (set->duration <= 0) {
				fprintf(stderr, "imap-load: --duration must be positive\n");
				return 2;
			}
			break;
		case 'u': set->users_file = optarg; break;
		case 'U': set->user_pattern = optarg; break;
		case 'P': set->password = optarg; break;
		case 'n':
			if (parse_uint("user-count", optarg, 1000000, &v) < 0)
				return 2;
			set->user_count = (unsigned)v;
			break;
		case 'f':
			if (parse_uint("user-first", optarg, 1000000000, &v) < 0)
				return 2;
			set->user_first = (unsigned)v;
			break;
		case 'm': set->mailbox = optarg; break;
		case 'x':
			if (parse_mix(set, optarg) < 0)
				return 2;
			break;
		case 'r':
			if (parse_uint("rounds", optarg, 1000000, &v) < 0 || v == 0)
				return 2;
			set->rounds = (unsigned)v;
			break;
		case 'w':
			if (parse_uint("fetch-window", optarg, 100000000, &v) < 0)
				return 2;
			set->fetch_window = (unsigned)v;
			break;
		case 'i': set->fetch_items = optarg; break;
		case 'b':
			if (parse_uint("bodies", optarg, 1000, &v) < 0)
				return 2;
			set->bodies = (unsigned)v;
			break;
		case 's':
			if (parse_uint("message-size", optarg, 64u << 20, &v) < 0 || v < 256)
				return 2;
			set->message_size = v;
			break;
		case 'k':
			if (parse_uint("min-messages", optarg, 100000000, &v) < 0)
				return 2;
			set->min_messages = (unsigned)v;
			break;
		case 'S':
			if (parse_uint("seed", optarg, UINT32_MAX, &v) < 0)
				return 2;
			set->seed = (unsigned)v;
			break;
		case 'M': set->machine = true; break;
		case 'H': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (set->port == 0 || (set->users_file == NULL &&
			       (set->user_pattern == NULL || set->password == NULL))) {
		usage(stderr);
		return 2;
	}
	if (uv_ip4_addr(set->host, set->port, &run.addr) != 0) {
		fprintf(stderr, "imap-load: --host must be an IPv4 address\n");
		return 2;
	}
	if (load_users(&run) < 0)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	if (set->tls) {
		run.ssl_ctx = SSL_CTX_new(TLS_client_method());
		if (set->cafile != NULL) {
			if (SSL_CTX_load_verify_locations(run.ssl_ctx, set->cafile, NULL) != 1) {
				fprintf(stderr, "imap-load: cannot load %s\n", set->cafile);
				return 2;
			}
			SSL_CTX_set_verify(run.ssl_ctx, SSL_VERIFY_PEER, NULL);
		}
		run.conn_set.ssl_ctx = run.ssl_ctx;
		run.conn_set.sni = "localhost";
	}
	run.message = make_message(set->message_size, &run.message_len);
	run.loop = uv_default_loop();
	run.clients = xcalloc(set->clients, sizeof(*run.clients));
	run.live = set->clients;
	uv_timer_init(run.loop, &run.stop_timer);
	uv_timer_init(run.loop, &run.grace_timer);
	run.stop_timer.data = run.grace_timer.data = &run;
	uv_signal_init(run.loop, &run.sigint);
	run.sigint.data = &run;
	uv_signal_start(&run.sigint, run_sigint_cb, SIGINT);
	run.start_ns = uv_hrtime();
	run.deadline_ns = run.start_ns + (uint64_t)(set->duration * 1e9);
	uv_timer_start(&run.stop_timer, run_stop_cb, (uint64_t)(set->duration * 1000), 0);
	for (unsigned i = 0; i < set->clients; i++) {
		struct client *cl = &run.clients[i];
		cl->run = &run;
		cl->idx = i;
		cl->rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)set->seed << 32) ^ (i + 1);
		uv_timer_init(run.loop, &cl->retry);
		cl->retry.data = cl;
		client_start(cl);
	}
	uv_run(run.loop, UV_RUN_DEFAULT);
	uint64_t end = run.deadline_ns < uv_hrtime() ? run.deadline_ns : uv_hrtime();
	report(&run, (double)(end - run.start_ns) / 1e9);
	uv_loop_close(run.loop);
	for (int op = 0; op < OP_COUNT; op++)
		free(run.ops[op].us);
	for (unsigned i = 0; i < run.n_users; i++) {
		free(run.user[i]);
		free(run.pass[i]);
	}
	free(run.user);
	free(run.pass);
	free(run.clients);
	free(run.message);
	if (run.ssl_ctx != NULL)
		SSL_CTX_free(run.ssl_ctx);
	return run.logged_in > 0 ? 0 : 1;
}
