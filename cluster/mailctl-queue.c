/* mailctl-queue.c: `mailctl queue ...`, the mail queue of every queue node
 * (queue.proto LIST, SHOW, ACTION; docs/outbound.md "Queue
 * administration").
 *
 *   queue list [--domain D] [--state deferred|active|held] [--limit N] [--json]
 *   queue show QID [--json]
 *   queue retry QID | --all | --domain D
 *   queue hold QID | queue release QID
 *   queue delete QID [--bounce]
 *   queue stats [--json]
 *
 * Each queue node answers only for the partitions it leads, so every
 * command asks every alive queue node (/mail/v1/alive/queue/<id> =
 * "host:port", its RPC address) at once, on a private uv loop, and merges:
 * a message shows up once (by queue id, should two nodes claim it during a
 * failover), the oldest first. Asking a node that does not lead a
 * message's partition to act on it changes nothing (it answers not found
 * or not primary), so a single-message command goes to all of them too.
 *
 * Node RPC runs over mutual TLS in a real cluster: mailctl then needs a
 * certificate with role admin (--node-cert, --node-key, --cluster-ca, or
 * the settings file's lines of the same names); without them it speaks
 * plaintext (development clusters started with node TLS off).
 *
 * A node that cannot be asked is named on stderr and makes the exit code 4
 * (unreachable) or 5, after what the others said was printed: a partial
 * listing is still worth seeing, but a script must not take it for the
 * whole queue.
 */
#include "mailctl-private.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <uv.h>

#include "etcd.h"
#include "mail-error.h"
#include "queue-id.h"
#include "queue.pb-c.h"
#include "router.h"
#include "rpc.h"
#include "tls.h"
#include "util.h"
#include "xalloc.h"

/* How long a node may take to answer (a LIST reads its whole queue). */
#define MAILCTL_QUEUE_DEADLINE_MS 30000u
/* `queue list --limit`: default and most, per node (the node's own cap). */
#define MAILCTL_QUEUE_LIST_DEFAULT 1000u
#define MAILCTL_QUEUE_LIST_MAX 100000u
/* How long a command waits for the partitions nobody leads this moment
 * (a failover, a rebalancing move: a moment each) to be led again,
 * asking again every step. */
#define MAILCTL_QUEUE_SETTLE_MS 15000
#define MAILCTL_QUEUE_SETTLE_STEP_MS 250
/* `queue stats`: the top destination domains shown. */
#define MAILCTL_QUEUE_TOP_DOMAINS 10

/* One alive queue node and its answer. */
struct mq_node {
	char *id;
	char *addr;               /* "host:port" */
	rpc_client *client;
	int done;
	int status;               /* enum mail_error */
	ProtobufCMessage *resp;   /* a copy (MAIL_OK only), freed by mq_close */
};

typedef struct mq {
	mailctl *ctl;
	uv_loop_t loop;
	int loop_open;
	tls_client *tls;          /* NULL: plaintext */
	struct mq_node *nodes;
	size_t n_nodes;
	size_t pending;
	int64_t now_ms;
} mq;

/* ---- asking every queue node ------------------------------------------------ */

static void mq_close(mq *q)
{
	for (size_t i = 0; i < q->n_nodes; i++) {
		struct mq_node *n = &q->nodes[i];
		rpc_client_destroy(&n->client);
		if (n->resp != NULL)
			protobuf_c_message_free_unpacked(n->resp, NULL);
		free(n->id);
		free(n->addr);
	}
	free(q->nodes);
	q->nodes = NULL;
	q->n_nodes = 0;
	if (q->loop_open) {
		uv_run(&q->loop, UV_RUN_DEFAULT);   /* the clients' handles close */
		uv_loop_close(&q->loop);
		q->loop_open = 0;
	}
	tls_client_destroy(&q->tls);
}

/* The alive queue nodes from etcd, the TLS client. An exit code. */
static int mq_open(mailctl *ctl, mq *q)
{
	memset(q, 0, sizeof *q);
	q->ctl = ctl;
	q->now_ms = util_now_wall_ms();
	etcd_client *c = etcd_client_create(&ctl->etcd);
	etcd_kv *alive = NULL;
	size_t n_alive = 0;
	int err = mailctl_alive_load(c, ROUTER_ROLE_QUEUE, &alive, &n_alive);
	etcd_client_destroy(&c);
	if (err != MAIL_OK)
		return mailctl_error(ctl, err, "queue nodes", "(alive keys)");
	if (n_alive == 0) {
		mailctl_fail(ctl, "no alive queue node");
		return MAILCTL_UNREACHABLE;
	}
	q->nodes = xcalloc(n_alive, sizeof *q->nodes);
	for (size_t i = 0; i < n_alive; i++) {
		struct mq_node *n = &q->nodes[q->n_nodes++];
		n->id = xstrdup(mailctl_key_id(alive[i].key));
		n->addr = xstrndup(alive[i].value, alive[i].value_len);
	}
	etcd_kvs_free(alive, n_alive);
	if (ctl->node_cert != NULL) {
		struct tls_client_settings set = { ctl->cluster_ca, ctl->node_cert, ctl->node_key };
		const char *error;
		if (tls_client_create(&set, &q->tls, &error) < 0) {
			mailctl_fail(ctl, "node TLS (--node-cert %s, --node-key, --cluster-ca %s): %s",
				     ctl->node_cert, ctl->cluster_ca, error);
			return MAILCTL_USAGE;
		}
	}
	uv_loop_init(&q->loop);
	q->loop_open = 1;
	return MAILCTL_OK;
}

/* A copy of m that outlives the reply callback. */
static ProtobufCMessage *mq_copy(const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = xmalloc(len + 1);
	protobuf_c_message_pack(m, buf);
	ProtobufCMessage *c = protobuf_c_message_unpack(m->descriptor, NULL, len, buf);
	free(buf);
	return c;
}

static void mq_reply_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	struct mq_node *n = arg;
	n->status = status;
	if (status == MAIL_OK && resp != NULL) {
		n->resp = mq_copy(resp);
		if (n->resp == NULL)
			n->status = MAIL_ERR_INTERNAL;
	}
	n->done = 1;
}

/* Send req as method to every node and wait for every answer (each ends
 * by the deadline at the latest). */
static void mq_call_all(mq *q, uint16_t method, const ProtobufCMessage *req,
			const ProtobufCMessageDescriptor *resp_desc)
{
	for (size_t i = 0; i < q->n_nodes; i++) {
		struct mq_node *n = &q->nodes[i];
		char *host;
		int port;
		const char *error;
		n->done = 0;
		if (n->resp != NULL)
			protobuf_c_message_free_unpacked(n->resp, NULL);
		n->resp = NULL;
		if (n->client == NULL) {
			if (util_hostport_parse(n->addr, &host, &port, &error) < 0) {
				n->status = MAIL_ERR_UNAVAILABLE;
				n->done = 1;
				continue;
			}
			rpc_client_create(&q->loop, "queue", host, port, &n->client);
			free(host);
			if (q->tls != NULL)
				rpc_client_set_tls(n->client, q->tls);
		}
		rpc_client_call(n->client, method, req, resp_desc, MAILCTL_QUEUE_DEADLINE_MS,
				mq_reply_cb, n);
	}
	for (;;) {
		size_t waiting = 0;
		for (size_t i = 0; i < q->n_nodes; i++)
			waiting += !q->nodes[i].done;
		if (waiting == 0)
			break;
		uv_run(&q->loop, UV_RUN_ONCE);
	}
}

/* ---- partitions nobody led ------------------------------------------------------ */

/* Some partitions were led by no node that answered: a primary moves
 * (rebalancing) or fails over, and for that moment its messages are
 * nobody's. LIST and bulk ACTION answers say which partitions the node
 * led (queue.proto); a command asks again for those missing. */
struct mq_cover {
	uint32_t total;     /* partitions (0: not known, nothing to wait for) */
	uint8_t *led;       /* [total]: some node led it */
	uint32_t missing;
};

static void mq_cover_free(struct mq_cover *cv)
{
	free(cv->led);
	memset(cv, 0, sizeof *cv);
}

/* Add a node's answer (partitions, led[n_led]) to cv. */
static void mq_cover_add(struct mq_cover *cv, uint32_t partitions, const uint32_t *led,
			 size_t n_led)
{
	if (partitions == 0)
		return;
	if (cv->total == 0) {
		cv->total = partitions;
		cv->led = xcalloc(partitions + 1, 1);
	}
	for (size_t k = 0; k < n_led; k++)
		if (led[k] < cv->total)
			cv->led[led[k]] = 1;
}

/* The partitions not led, among asked[0..n_asked) (n_asked 0: all), into
 * cv->missing. */
static void mq_cover_count(struct mq_cover *cv, const uint32_t *asked, size_t n_asked)
{
	cv->missing = 0;
	for (uint32_t p = 0; p < cv->total; p++) {
		int want = n_asked == 0;
		for (size_t k = 0; !want && k < n_asked; k++)
			want = asked[k] == p;
		cv->missing += want && !cv->led[p];
	}
}

static void mq_pause(void)
{
	struct timespec ts = { 0, MAILCTL_QUEUE_SETTLE_STEP_MS * 1000000L };
	nanosleep(&ts, NULL);
}

/* Say which partitions nobody led; MAILCTL_UNREACHABLE (a partial
 * answer), or MAILCTL_OK when none. */
static int mq_cover_report(mq *q, const struct mq_cover *cv, const char *what)
{
	if (cv->missing == 0)
		return MAILCTL_OK;
	mailctl_fail(q->ctl, "%u queue partition%s had no primary for %d s (a failover or a "
		     "move in progress): %s",
		     cv->missing, cv->missing == 1 ? "" : "s", MAILCTL_QUEUE_SETTLE_MS / 1000,
		     what);
	return MAILCTL_UNREACHABLE;
}

/* LIST to every node until every partition was answered for (or the
 * settle time is over): cv says what was covered. */
static void mq_list_settled(mq *q, const Queue__QueueListRequest *req, struct mq_cover *cv)
{
	uint64_t deadline = util_now_mono_ms() + MAILCTL_QUEUE_SETTLE_MS;
	for (;;) {
		mq_call_all(q, QUEUE__METHOD__LIST, &req->base,
			    &queue__queue_list_response__descriptor);
		mq_cover_free(cv);
		for (size_t i = 0; i < q->n_nodes; i++) {
			const Queue__QueueListResponse *r = (const void *)q->nodes[i].resp;
			if (r != NULL)
				mq_cover_add(cv, r->partitions, r->led, r->n_led);
		}
		mq_cover_count(cv, NULL, 0);
		if (cv->missing == 0 || util_now_mono_ms() >= deadline)
			return;
		mq_pause();
	}
}

/* 1 when every node said "not the primary" (or could not be reached) of
 * a single message's partition: nobody leads it this moment. */
static int mq_nobody_leads(const mq *q)
{
	int primary_said = 0;
	for (size_t i = 0; i < q->n_nodes; i++) {
		int st = q->nodes[i].status;
		if (st != MAIL_ERR_NOT_PRIMARY && st != MAIL_ERR_UNAVAILABLE)
			return 0;
		primary_said |= st == MAIL_ERR_NOT_PRIMARY;
	}
	return primary_said;
}

/* Say what went wrong with each node whose status is not MAIL_OK nor one
 * of the expected ones (ok1, ok2: e.g. not found; -1: none). Returns the
 * exit code they add up to: MAILCTL_OK when none. */
static int mq_node_errors(mq *q, int ok1, int ok2)
{
	int rc = MAILCTL_OK;
	for (size_t i = 0; i < q->n_nodes; i++) {
		const struct mq_node *n = &q->nodes[i];
		if (n->status == MAIL_OK || n->status == ok1 || n->status == ok2)
			continue;
		switch (n->status) {
		case MAIL_ERR_UNAVAILABLE:
		case MAIL_ERR_DEADLINE:
			mailctl_fail(q->ctl, "queue node %s (%s): %s%s", n->id, n->addr,
				     n->status == MAIL_ERR_DEADLINE ? "no answer in time"
								    : "unreachable",
				     q->tls == NULL ? " (node TLS on? give --node-cert, --node-key "
						      "and --cluster-ca)" : "");
			if (rc == MAILCTL_OK)
				rc = MAILCTL_UNREACHABLE;
			continue;
		case MAIL_ERR_PERM:
			mailctl_fail(q->ctl, "queue node %s (%s): permission denied (queue "
				     "administration needs a node certificate with role admin)",
				     n->id, n->addr);
			break;
		case MAIL_ERR_BAD_METHOD:
			mailctl_fail(q->ctl, "queue node %s (%s): no queue administration (an "
				     "older version)", n->id, n->addr);
			break;
		default:
			mailctl_fail(q->ctl, "queue node %s (%s): %s", n->id, n->addr,
				     mail_error_info(n->status)->name);
			break;
		}
		rc = MAILCTL_OTHER;
	}
	return rc;
}

/* ---- formatting --------------------------------------------------------------- */

static const char *mq_state_name(Queue__QueueFilter state)
{
	switch (state) {
	case QUEUE__QUEUE_FILTER__FILTER_ACTIVE:
		return "active";
	case QUEUE__QUEUE_FILTER__FILTER_DEFERRED:
		return "deferred";
	case QUEUE__QUEUE_FILTER__FILTER_HELD:
		return "held";
	default:
		return "?";
	}
}

static const char *mq_rcpt_status_name(Queue__RcptStatus status)
{
	switch (status) {
	case QUEUE__RCPT_STATUS__RCPT_PENDING:
		return "pending";
	case QUEUE__RCPT_STATUS__RCPT_DELIVERED:
		return "delivered";
	case QUEUE__RCPT_STATUS__RCPT_FAILED:
		return "failed";
	case QUEUE__RCPT_STATUS__RCPT_DEFERRED:
		return "deferred";
	default:
		return "?";
	}
}

/* A recipient's state: its last outcome's, or "done" for one done before
 * outcomes were recorded (delivered to a mailbox here, or failed: its
 * bounce is in the log). */
static const char *mq_rcpt_name(const Queue__RcptView *v)
{
	Queue__RcptStatus st = v->outcome != NULL ? v->outcome->status
						  : QUEUE__RCPT_STATUS__RCPT_PENDING;
	if (v->done && st == QUEUE__RCPT_STATUS__RCPT_PENDING)
		return "done";
	return mq_rcpt_status_name(st);
}

/* "45s", "12m", "2h05m", "3d04h" of a duration in ms (negative: 0). */
static const char *mq_dur(char *buf, size_t size, int64_t ms)
{
	int64_t s = ms > 0 ? ms / 1000 : 0;
	if (s < 60)
		snprintf(buf, size, "%llds", (long long)s);
	else if (s < 3600)
		snprintf(buf, size, "%lldm", (long long)(s / 60));
	else if (s < 86400)
		snprintf(buf, size, "%lldh%02lldm", (long long)(s / 3600),
			 (long long)(s % 3600 / 60));
	else
		snprintf(buf, size, "%lldd%02lldh", (long long)(s / 86400),
			 (long long)(s % 86400 / 3600));
	return buf;
}

/* "812", "4.1K", "2.3M" */
static const char *mq_size(char *buf, size_t size, uint64_t n)
{
	if (n < 1024)
		snprintf(buf, size, "%llu", (unsigned long long)n);
	else if (n < 1024 * 1024)
		snprintf(buf, size, "%.1fK", (double)n / 1024);
	else
		snprintf(buf, size, "%.1fM", (double)n / (1024 * 1024));
	return buf;
}

/* "2026-12-02 19:01:46 UTC" of ms since the epoch. */
static const char *mq_time(char *buf, size_t size, int64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	strftime(buf, size, "%Y-%m-%d %H:%M:%S UTC", gmtime_r(&t, &tm));
	return buf;
}

/* When the next attempt is: "held", "now", "in 14m". */
static const char *mq_next(char *buf, size_t size, const Queue__QueueSummary *s, int64_t now)
{
	char d[32];
	if (s->state == QUEUE__QUEUE_FILTER__FILTER_HELD)
		snprintf(buf, size, "held");
	else if (s->state == QUEUE__QUEUE_FILTER__FILTER_ACTIVE || s->next_attempt_at <= now)
		snprintf(buf, size, "now");
	else
		snprintf(buf, size, "in %s", mq_dur(d, sizeof d, s->next_attempt_at - now));
	return buf;
}

static const char *mq_sender(const Queue__QueueSummary *s)
{
	return s->mail_from[0] != '\0' ? s->mail_from : "<>";
}

static json_t *mq_summary_json(const Queue__QueueSummary *s, int64_t now)
{
	json_t *domains = json_array();
	for (size_t i = 0; i < s->n_domains; i++)
		json_array_append_new(domains, json_string(s->domains[i]));
	return json_pack("{s:s, s:s, s:s, s:i, s:i, s:I, s:I, s:I, s:i, s:I, s:s, s:o, s:s}",
			 "queue_id", s->queue_id, "state", mq_state_name(s->state),
			 "mail_from", s->mail_from, "rcpts", (int)s->rcpts,
			 "pending", (int)s->pending, "size", (json_int_t)s->size,
			 "received_at", (json_int_t)s->received_at,
			 "age_s", (json_int_t)((now - s->received_at) / 1000),
			 "attempts", (int)s->attempts,
			 "next_attempt_at", (json_int_t)s->next_attempt_at,
			 "last_error", s->last_error, "domains", domains, "node", s->node);
}

static int mq_print_json(json_t *v)
{
	int ok = json_dumpf(v, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) == 0;
	json_decref(v);
	putchar('\n');
	return ok && fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
}

/* ---- list ------------------------------------------------------------------------ */

/* Every node's messages, once each, oldest first (borrowed from the
 * nodes' responses). */
struct mq_merged {
	const Queue__QueueSummary **m;
	size_t n;
	int truncated;
};

static int mq_cmp_summary(const void *a, const void *b)
{
	const Queue__QueueSummary *x = *(const Queue__QueueSummary *const *)a;
	const Queue__QueueSummary *y = *(const Queue__QueueSummary *const *)b;
	if (x->received_at != y->received_at)
		return x->received_at < y->received_at ? -1 : 1;
	return strcmp(x->queue_id, y->queue_id);
}

/* How many nodes answered MAIL_OK. */
static size_t mq_answered(const mq *q)
{
	size_t n = 0;
	for (size_t i = 0; i < q->n_nodes; i++)
		n += q->nodes[i].status == MAIL_OK;
	return n;
}

static void mq_merge(const mq *q, struct mq_merged *out)
{
	size_t total = 0;
	memset(out, 0, sizeof *out);
	for (size_t i = 0; i < q->n_nodes; i++) {
		const Queue__QueueListResponse *r = (const void *)q->nodes[i].resp;
		if (r != NULL)
			total += r->n_messages;
	}
	out->m = xcalloc(total + 1, sizeof *out->m);
	for (size_t i = 0; i < q->n_nodes; i++) {
		const Queue__QueueListResponse *r = (const void *)q->nodes[i].resp;
		if (r == NULL)
			continue;
		out->truncated |= r->truncated;
		for (size_t k = 0; k < r->n_messages; k++)
			out->m[out->n++] = r->messages[k];
	}
	qsort(out->m, out->n, sizeof *out->m, mq_cmp_summary);
	/* the same queue id from two nodes (a failover): once; sorted, the
	 * copies are neighbours */
	size_t w = 0;
	for (size_t k = 0; k < out->n; k++) {
		if (w == 0 || mq_cmp_summary(&out->m[w - 1], &out->m[k]) != 0)
			out->m[w++] = out->m[k];
	}
	out->n = w;
}

static void mq_list_text(const struct mq_merged *mm, int64_t now)
{
	char age[32], size[32], next[32];
	printf("%-24s %-8s %6s %6s %5s %-9s %s\n", "QUEUE ID", "STATE", "AGE", "SIZE", "TRIES",
	       "NEXT", "SENDER -> DOMAINS (PENDING/RCPTS)");
	for (size_t k = 0; k < mm->n; k++) {
		const Queue__QueueSummary *s = mm->m[k];
		printf("%-24s %-8s %6s %6s %5u %-9s %s ->", s->queue_id, mq_state_name(s->state),
		       mq_dur(age, sizeof age, now - s->received_at),
		       mq_size(size, sizeof size, s->size), s->attempts,
		       mq_next(next, sizeof next, s, now), mq_sender(s));
		for (size_t i = 0; i < s->n_domains; i++)
			printf("%s%s", i > 0 ? "," : " ", s->domains[i]);
		printf(" (%u/%u)\n", s->pending, s->rcpts);
		if (s->last_error[0] != '\0')
			printf("%-24s last error: %s\n", "", s->last_error);
	}
	printf("-- %zu message%s%s\n", mm->n, mm->n == 1 ? "" : "s",
	       mm->truncated ? " (more not shown: --limit)" : "");
}

static int mq_list(mq *q, const char *domain, Queue__QueueFilter state, uint32_t limit,
		   int json)
{
	Queue__QueueListRequest req = QUEUE__QUEUE_LIST_REQUEST__INIT;
	req.domain = (char *)(domain != NULL ? domain : "");
	req.state = state;
	req.limit = limit;
	struct mq_cover cv = { 0 };
	mq_list_settled(q, &req, &cv);
	if (mq_answered(q) == 0) {
		mq_cover_free(&cv);
		return mq_node_errors(q, -1, -1);
	}
	struct mq_merged mm;
	mq_merge(q, &mm);
	if (mm.n > limit) {   /* the limit is each node's: the merge keeps the oldest */
		mm.n = limit;
		mm.truncated = 1;
	}
	int rc;
	if (json) {
		json_t *a = json_array();
		for (size_t k = 0; k < mm.n; k++)
			json_array_append_new(a, mq_summary_json(mm.m[k], q->now_ms));
		rc = mq_print_json(json_pack("{s:o, s:b}", "messages", a, "truncated",
					     mm.truncated));
	} else {
		mq_list_text(&mm, q->now_ms);
		rc = fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
	}
	free(mm.m);
	int node_rc = mq_node_errors(q, -1, -1);
	int cover_rc = mq_cover_report(q, &cv, "their messages are not in this listing");
	mq_cover_free(&cv);
	return node_rc != MAILCTL_OK ? node_rc : cover_rc != MAILCTL_OK ? cover_rc : rc;
}

/* ---- show -------------------------------------------------------------------------- */

static void mq_show_text(const Queue__QueueShowResponse *r, int64_t now)
{
	const Queue__QueueSummary *s = r->summary;
	char t[48], d[32], size[32], next[32];
	printf("queue id:     %s\n", s->queue_id);
	printf("node:         %s\n", s->node);
	printf("state:        %s\n", mq_state_name(s->state));
	printf("sender:       %s\n", mq_sender(s));
	if (r->auth_user[0] != '\0')
		printf("auth user:    %s\n", r->auth_user);
	if (r->client_addr[0] != '\0' || r->helo[0] != '\0')
		printf("client:       %s (helo %s)\n", r->client_addr[0] ? r->client_addr : "-",
		       r->helo[0] ? r->helo : "-");
	printf("received:     %s (%s ago)\n", mq_time(t, sizeof t, s->received_at),
	       mq_dur(d, sizeof d, now - s->received_at));
	printf("size:         %llu bytes", (unsigned long long)s->size);
	if (s->size >= 1024)
		printf(" (%s)", mq_size(size, sizeof size, s->size));
	putchar('\n');
	printf("attempts:     %u\n", s->attempts);
	printf("next attempt: %s", mq_next(next, sizeof next, s, now));
	if (s->state != QUEUE__QUEUE_FILTER__FILTER_HELD && s->next_attempt_at > now)
		printf(" (%s)", mq_time(t, sizeof t, s->next_attempt_at));
	putchar('\n');
	if (s->last_error[0] != '\0')
		printf("last error:   %s\n", s->last_error);
	printf("recipients:   %u (%u pending)\n", s->rcpts, s->pending);
	for (size_t i = 0; i < r->n_rcpts; i++) {
		const Queue__RcptView *v = r->rcpts[i];
		const Queue__RcptOutcome *o = v->outcome;
		char line[1024];
		int len = snprintf(line, sizeof line, "  %-32s %-6s %-9s", v->addr,
				   v->remote ? "remote" : "local", mq_rcpt_name(v));
		if (o != NULL && o->code != 0)
			len += snprintf(line + len, sizeof line - (size_t)len, " %u", o->code);
		if (o != NULL && o->enh[0] != '\0')
			len += snprintf(line + len, sizeof line - (size_t)len, " %s", o->enh);
		if (o != NULL && o->text[0] != '\0')
			len += snprintf(line + len, sizeof line - (size_t)len, " %s", o->text);
		if (o != NULL && o->remote_mta[0] != '\0')
			len += snprintf(line + len, sizeof line - (size_t)len, " (%s)",
					o->remote_mta);
		if (o != NULL && o->at != 0)
			snprintf(line + len, sizeof line - (size_t)len, " at %s",
				 mq_time(t, sizeof t, o->at));
		size_t end = strlen(line);
		while (end > 0 && line[end - 1] == ' ')
			line[--end] = '\0';
		puts(line);
	}
}

static json_t *mq_show_json(const Queue__QueueShowResponse *r, int64_t now)
{
	json_t *rcpts = json_array();
	for (size_t i = 0; i < r->n_rcpts; i++) {
		const Queue__RcptView *v = r->rcpts[i];
		const Queue__RcptOutcome *o = v->outcome;
		Queue__RcptOutcome none = QUEUE__RCPT_OUTCOME__INIT;
		if (o == NULL)
			o = &none;
		json_array_append_new(rcpts, json_pack(
			"{s:s, s:b, s:b, s:s, s:i, s:s, s:s, s:s, s:I}", "addr", v->addr,
			"remote", v->remote, "done", v->done, "status", mq_rcpt_name(v), "code", (int)o->code, "enh", o->enh,
			"text", o->text, "remote_mta", o->remote_mta, "at", (json_int_t)o->at));
	}
	json_t *out = mq_summary_json(r->summary, now);
	json_object_set_new(out, "auth_user", json_string(r->auth_user));
	json_object_set_new(out, "helo", json_string(r->helo));
	json_object_set_new(out, "client_addr", json_string(r->client_addr));
	json_object_set_new(out, "recipients", rcpts);
	return out;
}

/* 1 when id could be a queue id (queue-id.h), else says so. */
static int mq_qid_ok(mailctl *ctl, const char *id)
{
	size_t n = strlen(id);
	int ok = n >= 1 && n <= QUEUE_ID_MAX;
	for (size_t i = 0; ok && i < n; i++)
		ok = isalnum((unsigned char)id[i]) != 0;
	if (!ok)
		mailctl_fail(ctl, "%s is not a queue id (1..%d letters and digits)", id,
			     QUEUE_ID_MAX);
	return ok;
}

static int mq_show(mq *q, const char *qid, int json)
{
	Queue__QueueShowRequest req = QUEUE__QUEUE_SHOW_REQUEST__INIT;
	req.queue_id = (char *)qid;
	uint64_t deadline = util_now_mono_ms() + MAILCTL_QUEUE_SETTLE_MS;
	const Queue__QueueShowResponse *found = NULL;
	for (;;) {
		mq_call_all(q, QUEUE__METHOD__SHOW, &req.base,
			    &queue__queue_show_response__descriptor);
		for (size_t i = 0; i < q->n_nodes && found == NULL; i++)
			found = (const void *)q->nodes[i].resp;
		if (found != NULL || !mq_nobody_leads(q) || util_now_mono_ms() >= deadline)
			break;
		mq_pause();
	}
	if (found == NULL && mq_nobody_leads(q)) {
		mailctl_fail(q->ctl, "queue id %s: no queue node leads its partition now (a "
			     "failover or a move in progress): try again", qid);
		return MAILCTL_UNREACHABLE;
	}
	if (found == NULL) {
		int rc = mq_node_errors(q, MAIL_ERR_NOT_FOUND, MAIL_ERR_NOT_PRIMARY);
		if (rc != MAILCTL_OK)
			return rc;   /* the node that has it may be the one we missed */
		return mailctl_error(q->ctl, MAIL_ERR_NOT_FOUND, "queue id", qid);
	}
	if (json)
		return mq_print_json(mq_show_json(found, q->now_ms));
	mq_show_text(found, q->now_ms);
	return fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
}

/* ---- retry, hold, release, delete --------------------------------------------------- */

static const char *mq_action_done(Queue__QueueAction a)
{
	switch (a) {
	case QUEUE__QUEUE_ACTION__ACTION_RETRY:
		return "retry now";
	case QUEUE__QUEUE_ACTION__ACTION_HOLD:
		return "held";
	case QUEUE__QUEUE_ACTION__ACTION_RELEASE:
		return "released";
	case QUEUE__QUEUE_ACTION__ACTION_DELETE:
		return "deleted";
	case QUEUE__QUEUE_ACTION__ACTION_DELETE_BOUNCE:
		return "deleted, bounce queued";
	default:
		return "?";
	}
}

/* qid (NULL: all, or those with a pending recipient in domain). */
static int mq_action(mq *q, Queue__QueueAction action, const char *qid, const char *domain)
{
	Queue__QueueActionRequest req = QUEUE__QUEUE_ACTION_REQUEST__INIT;
	req.action = action;
	if (qid != NULL)
		req.queue_id = (char *)qid;
	else if (domain != NULL)
		req.domain = (char *)domain;
	else
		req.all = 1;
	uint64_t deadline = util_now_mono_ms() + MAILCTL_QUEUE_SETTLE_MS;
	uint32_t affected = 0;
	struct mq_cover cv = { 0 };
	uint32_t *asked = NULL;   /* a later pass: the partitions nobody led */
	for (;;) {
		mq_call_all(q, QUEUE__METHOD__ACTION, &req.base,
			    &queue__queue_action_response__descriptor);
		mq_cover_free(&cv);
		for (size_t i = 0; i < q->n_nodes; i++) {
			const Queue__QueueActionResponse *r = (const void *)q->nodes[i].resp;
			if (r == NULL)
				continue;
			affected += r->affected;
			mq_cover_add(&cv, r->partitions, r->led, r->n_led);
		}
		if (qid != NULL) {
			if (affected > 0 || !mq_nobody_leads(q) || util_now_mono_ms() >= deadline)
				break;
			mq_pause();
			continue;
		}
		mq_cover_count(&cv, req.partitions, req.n_partitions);
		if (cv.missing == 0 || util_now_mono_ms() >= deadline)
			break;
		/* again, for the partitions nobody led */
		free(asked);
		asked = xcalloc(cv.missing + 1, sizeof *asked);
		size_t n = 0;
		for (uint32_t p = 0; p < cv.total; p++) {
			int want = req.n_partitions == 0;
			for (size_t k = 0; !want && k < req.n_partitions; k++)
				want = req.partitions[k] == p;
			if (want && !cv.led[p])
				asked[n++] = p;
		}
		req.partitions = asked;
		req.n_partitions = n;
		mq_pause();
	}
	free(asked);
	if (qid != NULL) {
		mq_cover_free(&cv);
		if (affected == 0 && mq_nobody_leads(q)) {
			mailctl_fail(q->ctl, "queue id %s: no queue node leads its partition now (a "
				     "failover or a move in progress): try again", qid);
			return MAILCTL_UNREACHABLE;
		}
		int rc = mq_node_errors(q, MAIL_ERR_NOT_FOUND, MAIL_ERR_NOT_PRIMARY);
		if (affected > 0) {
			printf("%s: %s\n", qid, mq_action_done(action));
			return fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
		}
		return rc != MAILCTL_OK ? rc
					: mailctl_error(q->ctl, MAIL_ERR_NOT_FOUND, "queue id", qid);
	}
	printf("%u message%s: %s\n", affected, affected == 1 ? "" : "s", mq_action_done(action));
	int rc = mq_node_errors(q, -1, -1);
	int cover_rc = mq_cover_report(q, &cv, "their messages were not acted on");
	mq_cover_free(&cv);
	if (rc == MAILCTL_OK)
		rc = cover_rc;
	return rc != MAILCTL_OK ? rc : fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
}

/* ---- stats ---------------------------------------------------------------------------- */

/* Age buckets: the upper bound (seconds) of each but the last. */
static const struct {
	const char *name;
	int64_t below_s;
} mq_age_buckets[] = {
	{ "< 5m", 300 }, { "5m - 1h", 3600 }, { "1h - 4h", 4 * 3600 }, { "4h - 1d", 86400 },
	{ "1d - 3d", 3 * 86400 }, { ">= 3d", 0 },
};
#define MQ_AGE_BUCKETS (sizeof mq_age_buckets / sizeof mq_age_buckets[0])

struct mq_domain_count {
	const char *domain;
	unsigned messages;
};

static int mq_cmp_domain_count(const void *a, const void *b)
{
	const struct mq_domain_count *x = a, *y = b;
	if (x->messages != y->messages)
		return x->messages > y->messages ? -1 : 1;
	return strcmp(x->domain, y->domain);
}

static int mq_stats(mq *q, int json)
{
	Queue__QueueListRequest req = QUEUE__QUEUE_LIST_REQUEST__INIT;
	req.limit = MAILCTL_QUEUE_LIST_MAX;
	struct mq_cover cv = { 0 };
	mq_list_settled(q, &req, &cv);
	if (mq_answered(q) == 0) {
		mq_cover_free(&cv);
		return mq_node_errors(q, -1, -1);
	}
	struct mq_merged mm;
	mq_merge(q, &mm);
	unsigned by_state[4] = { 0 }, ages[MQ_AGE_BUCKETS] = { 0 };
	uint64_t bytes = 0;
	int64_t oldest_ms = 0;
	size_t n_dc = 0, cap_dc = 0;
	struct mq_domain_count *dc = NULL;
	for (size_t k = 0; k < mm.n; k++) {
		const Queue__QueueSummary *s = mm.m[k];
		if ((unsigned)s->state < 4)
			by_state[s->state]++;
		bytes += s->size;
		int64_t age = q->now_ms - s->received_at;
		if (age > oldest_ms)
			oldest_ms = age;
		size_t b = 0;
		while (b + 1 < MQ_AGE_BUCKETS && age / 1000 >= mq_age_buckets[b].below_s)
			b++;
		ages[b]++;
		for (size_t i = 0; i < s->n_domains; i++) {
			size_t j = 0;
			while (j < n_dc && strcmp(dc[j].domain, s->domains[i]) != 0)
				j++;
			if (j == n_dc) {
				if (n_dc == cap_dc) {
					cap_dc = cap_dc ? cap_dc * 2 : 16;
					dc = xrealloc(dc, cap_dc * sizeof *dc);
				}
				dc[n_dc++] = (struct mq_domain_count){ s->domains[i], 0 };
			}
			dc[j].messages++;
		}
	}
	if (n_dc > 0)
		qsort(dc, n_dc, sizeof *dc, mq_cmp_domain_count);
	size_t top = n_dc < MAILCTL_QUEUE_TOP_DOMAINS ? n_dc : MAILCTL_QUEUE_TOP_DOMAINS;
	int rc;
	if (json) {
		json_t *age = json_array(), *domains = json_array();
		for (size_t b = 0; b < MQ_AGE_BUCKETS; b++) {
			int64_t below = mq_age_buckets[b].below_s;
			json_array_append_new(age, json_pack(
				"{s:s, s:I, s:o, s:i}", "bucket", mq_age_buckets[b].name, "from_s",
				(json_int_t)(b > 0 ? mq_age_buckets[b - 1].below_s : 0), "below_s",
				below > 0 ? json_integer(below) : json_null(), "messages",
				(int)ages[b]));
		}
		for (size_t j = 0; j < top; j++)
			json_array_append_new(domains, json_pack("{s:s, s:i}", "domain",
								 dc[j].domain, "messages",
								 (int)dc[j].messages));
		rc = mq_print_json(json_pack(
			"{s:i, s:{s:i, s:i, s:i}, s:I, s:I, s:o, s:o, s:b}", "messages", (int)mm.n,
			"by_state", "active", (int)by_state[QUEUE__QUEUE_FILTER__FILTER_ACTIVE],
			"deferred", (int)by_state[QUEUE__QUEUE_FILTER__FILTER_DEFERRED], "held",
			(int)by_state[QUEUE__QUEUE_FILTER__FILTER_HELD], "bytes", (json_int_t)bytes,
			"oldest_age_s", (json_int_t)(oldest_ms / 1000), "age", age,
			"top_domains", domains, "truncated", mm.truncated));
	} else {
		char d[32];
		printf("messages: %zu%s (active %u, deferred %u, held %u), %llu bytes\n", mm.n,
		       mm.truncated ? "+" : "", by_state[QUEUE__QUEUE_FILTER__FILTER_ACTIVE],
		       by_state[QUEUE__QUEUE_FILTER__FILTER_DEFERRED],
		       by_state[QUEUE__QUEUE_FILTER__FILTER_HELD], (unsigned long long)bytes);
		printf("oldest:   %s\n", mm.n > 0 ? mq_dur(d, sizeof d, oldest_ms) : "-");
		puts("age:");
		for (size_t b = 0; b < MQ_AGE_BUCKETS; b++)
			printf("  %-10s %u\n", mq_age_buckets[b].name, ages[b]);
		puts("top destination domains (messages):");
		for (size_t j = 0; j < top; j++)
			printf("  %-32s %u\n", dc[j].domain, dc[j].messages);
		if (top == 0)
			puts("  -");
		rc = fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
	}
	free(dc);
	free(mm.m);
	int node_rc = mq_node_errors(q, -1, -1);
	int cover_rc = mq_cover_report(q, &cv, "their messages are not counted");
	mq_cover_free(&cv);
	return node_rc != MAILCTL_OK ? node_rc : cover_rc != MAILCTL_OK ? cover_rc : rc;
}

/* ---- dispatch ---------------------------------------------------------------------------- */

/* domain lower-cased into buf, or NULL after saying it is none. */
static const char *mq_domain_arg(mailctl *ctl, const char *domain, char *buf, size_t size)
{
	if (!util_domain_valid(domain) || strlen(domain) >= size) {
		mailctl_fail(ctl, "%s is not a domain", domain);
		return NULL;
	}
	size_t i = 0;
	for (; domain[i] != '\0'; i++)
		buf[i] = (char)tolower((unsigned char)domain[i]);
	buf[i] = '\0';
	return buf;
}

int mailctl_queue(mailctl *ctl, int argc, char **argv)
{
	/* argv[0] is "queue" */
	if (argc < 2)
		return -1;
	const char *sub = argv[1], *arg = NULL, *domain_arg = NULL, *state_arg = NULL;
	const char *limit_arg = NULL;
	int json = 0, all = 0, bounce = 0;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--json") == 0)
			json = 1;
		else if (strcmp(a, "--all") == 0)
			all = 1;
		else if (strcmp(a, "--bounce") == 0)
			bounce = 1;
		else if (strcmp(a, "--domain") == 0 && i + 1 < argc)
			domain_arg = argv[++i];
		else if (strcmp(a, "--state") == 0 && i + 1 < argc)
			state_arg = argv[++i];
		else if (strcmp(a, "--limit") == 0 && i + 1 < argc)
			limit_arg = argv[++i];
		else if (a[0] == '-' || arg != NULL)
			return -1;
		else
			arg = a;
	}
	int is_list = strcmp(sub, "list") == 0, is_show = strcmp(sub, "show") == 0;
	int is_stats = strcmp(sub, "stats") == 0, is_retry = strcmp(sub, "retry") == 0;
	int is_delete = strcmp(sub, "delete") == 0;
	Queue__QueueAction action = QUEUE__QUEUE_ACTION__ACTION_NONE;
	if (is_retry)
		action = QUEUE__QUEUE_ACTION__ACTION_RETRY;
	else if (strcmp(sub, "hold") == 0)
		action = QUEUE__QUEUE_ACTION__ACTION_HOLD;
	else if (strcmp(sub, "release") == 0)
		action = QUEUE__QUEUE_ACTION__ACTION_RELEASE;
	else if (is_delete)
		action = bounce ? QUEUE__QUEUE_ACTION__ACTION_DELETE_BOUNCE
				: QUEUE__QUEUE_ACTION__ACTION_DELETE;
	int is_action = action != QUEUE__QUEUE_ACTION__ACTION_NONE;
	if (!is_list && !is_show && !is_stats && !is_action)
		return -1;
	/* which options go with which command */
	if ((json && !is_list && !is_show && !is_stats) || (bounce && !is_delete) ||
	    (all && !is_retry) || (state_arg != NULL && !is_list) ||
	    (limit_arg != NULL && !is_list) || (domain_arg != NULL && !is_list && !is_retry))
		return -1;
	if ((is_list || is_stats) && arg != NULL)
		return -1;
	if (is_retry && (arg != NULL) + all + (domain_arg != NULL) != 1)
		return -1;
	if ((is_show || (is_action && !is_retry)) && arg == NULL)
		return -1;
	if (arg != NULL && !mq_qid_ok(ctl, arg))
		return MAILCTL_USAGE;
	char domain_buf[256];
	const char *domain = NULL;
	if (domain_arg != NULL &&
	    (domain = mq_domain_arg(ctl, domain_arg, domain_buf, sizeof domain_buf)) == NULL)
		return MAILCTL_USAGE;
	Queue__QueueFilter state = QUEUE__QUEUE_FILTER__FILTER_ALL;
	if (state_arg != NULL) {
		if (strcmp(state_arg, "active") == 0)
			state = QUEUE__QUEUE_FILTER__FILTER_ACTIVE;
		else if (strcmp(state_arg, "deferred") == 0)
			state = QUEUE__QUEUE_FILTER__FILTER_DEFERRED;
		else if (strcmp(state_arg, "held") == 0)
			state = QUEUE__QUEUE_FILTER__FILTER_HELD;
		else {
			mailctl_fail(ctl, "--state %s: deferred, active or held", state_arg);
			return MAILCTL_USAGE;
		}
	}
	uint32_t limit = MAILCTL_QUEUE_LIST_DEFAULT;
	if (limit_arg != NULL) {
		char *end;
		unsigned long v = strtoul(limit_arg, &end, 10);
		if (*end != '\0' || v < 1 || v > MAILCTL_QUEUE_LIST_MAX) {
			mailctl_fail(ctl, "--limit N: 1..%u", MAILCTL_QUEUE_LIST_MAX);
			return MAILCTL_USAGE;
		}
		limit = (uint32_t)v;
	}

	mq q;
	int rc = mq_open(ctl, &q);
	if (rc == MAILCTL_OK) {
		if (is_list)
			rc = mq_list(&q, domain, state, limit, json);
		else if (is_show)
			rc = mq_show(&q, arg, json);
		else if (is_stats)
			rc = mq_stats(&q, json);
		else
			rc = mq_action(&q, action, arg, domain);
	}
	mq_close(&q);
	return rc;
}

/* ---- the queue in figures, for `mailctl status` ------------------------------------ */

int mailctl_queue_depth(mailctl *ctl, unsigned budget_ms, struct mailctl_queue_depth *d,
			char **error_r)
{
	memset(d, 0, sizeof *d);
	snprintf(d->oldest, sizeof d->oldest, "-");
	*error_r = NULL;
	/* what the mq functions say on ctl->err is the caller's to show: the
	 * same words, into a buffer (a copy of ctl pointing there) */
	char *said = NULL;
	size_t said_len = 0;
	mailctl quiet = *ctl;
	quiet.err = open_memstream(&said, &said_len);
	if (quiet.err == NULL)
		quiet.err = ctl->err;
	mq q;
	int rc = mq_open(&quiet, &q);
	struct mq_cover cv = { 0 };
	if (rc == MAILCTL_OK) {
		Queue__QueueListRequest req = QUEUE__QUEUE_LIST_REQUEST__INIT;
		req.limit = MAILCTL_QUEUE_LIST_MAX;
		uint64_t end = util_now_mono_ms() + budget_ms;
		/* mq_list_settled, within the budget: each pass's calls end by
		 * `end` (mq_call_all's deadline is a listing's 30 s) */
		for (;;) {
			uint64_t now = util_now_mono_ms();
			unsigned deadline_ms = end > now + 100 ? (unsigned)(end - now) : 100;
			for (size_t i = 0; i < q.n_nodes; i++) {
				struct mq_node *n = &q.nodes[i];
				char *host;
				int port;
				const char *error;
				n->done = 0;
				if (n->resp != NULL)
					protobuf_c_message_free_unpacked(n->resp, NULL);
				n->resp = NULL;
				if (n->client == NULL) {
					if (util_hostport_parse(n->addr, &host, &port, &error) < 0) {
						n->status = MAIL_ERR_UNAVAILABLE;
						n->done = 1;
						continue;
					}
					rpc_client_create(&q.loop, "queue", host, port, &n->client);
					free(host);
					if (q.tls != NULL)
						rpc_client_set_tls(n->client, q.tls);
				}
				rpc_client_call(n->client, QUEUE__METHOD__LIST, &req.base,
						&queue__queue_list_response__descriptor, deadline_ms,
						mq_reply_cb, n);
			}
			for (;;) {
				size_t waiting = 0;
				for (size_t i = 0; i < q.n_nodes; i++)
					waiting += !q.nodes[i].done;
				if (waiting == 0)
					break;
				uv_run(&q.loop, UV_RUN_ONCE);
			}
			mq_cover_free(&cv);
			for (size_t i = 0; i < q.n_nodes; i++) {
				const Queue__QueueListResponse *r = (const void *)q.nodes[i].resp;
				if (r != NULL)
					mq_cover_add(&cv, r->partitions, r->led, r->n_led);
			}
			mq_cover_count(&cv, NULL, 0);
			if (cv.missing == 0 || util_now_mono_ms() + MAILCTL_QUEUE_SETTLE_STEP_MS >= end)
				break;
			mq_pause();
		}
		struct mq_merged mm;
		mq_merge(&q, &mm);
		for (size_t k = 0; k < mm.n; k++) {
			const Queue__QueueSummary *s = mm.m[k];
			d->active += s->state == QUEUE__QUEUE_FILTER__FILTER_ACTIVE;
			d->deferred += s->state == QUEUE__QUEUE_FILTER__FILTER_DEFERRED;
			d->held += s->state == QUEUE__QUEUE_FILTER__FILTER_HELD;
			d->bytes += s->size;
			if (q.now_ms - s->received_at > d->oldest_age_ms)
				d->oldest_age_ms = q.now_ms - s->received_at;
		}
		d->messages = (unsigned)mm.n;
		d->truncated = mm.truncated;
		if (mm.n > 0)
			mq_dur(d->oldest, sizeof d->oldest, d->oldest_age_ms);
		free(mm.m);
		d->nodes = (unsigned)q.n_nodes;
		d->answered = (unsigned)mq_answered(&q);
		d->partitions = cv.total;
		d->unled = cv.missing;
		rc = mq_node_errors(&q, -1, -1);
		if (rc == MAILCTL_OK && cv.missing > 0) {
			mailctl_fail(&quiet, "%u queue partition%s led by no node (a failover or a "
				     "move in progress): their messages are not counted", cv.missing,
				     cv.missing == 1 ? "" : "s");
			rc = MAILCTL_UNREACHABLE;
		}
	}
	mq_cover_free(&cv);
	mq_close(&q);
	if (quiet.err != ctl->err)
		fclose(quiet.err);
	if (said != NULL && said_len > 0)
		*error_r = said;
	else
		free(said);
	return rc;
}
