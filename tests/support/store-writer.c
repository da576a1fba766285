/* store-writer.c: a steady stream of deliveries to the store tier, for the
 * fault tests (tests/e2e_partition.py). Not installed.
 *
 *   store-writer --etcd URL --prefix P --users U1,U2,... [--interval-ms N]
 *                [--deadline-ms N] [--retry-ms N] [--reads]
 *                [--node-cert FILE --node-key FILE --cluster-ca FILE]
 *
 * With the three TLS options it speaks mutual TLS to the store nodes (the
 * certificate's role must be allowed Deliver and Select: admin).
 * Every --interval-ms (default 50) it starts one delivery, round robin over
 * the users, for a user that has none in flight (so each user's writes are
 * sequential). The delivery id is "<prefix>-<n>"; the body carries it in an
 * X-Delivery-Id header, so an offline dump (mailstore-dump) can name every
 * message. A write that fails is retried later (after --retry-ms, default
 * 1000) with the SAME delivery id, as the queue does, until it succeeds or
 * the writer stops. Each write may take --deadline-ms in all (default 3000,
 * the store client's own retries included). With --reads, every tick also
 * selects the INBOX of the next user with no select in flight (reads are
 * never retried by the writer).
 *
 * stdout: one line per finished attempt, flushed at once:
 *   ok <delivery_id> <uid> user=<u> uidvalidity=<v> dup=<0|1> start=<ms> end=<ms>
 *   err <delivery_id> <status name> user=<u> start=<ms> end=<ms>
 *   read <user> <status name> exists=<n> uidnext=<n> uidvalidity=<v> start=<ms> end=<ms>
 * (exists, uidnext and uidvalidity are 0 unless status is ok).
 * start/end: wall clock, ms since the epoch, when the attempt was started
 * and when its answer came. Logs (the libraries') go to stderr.
 *
 * SIGTERM/SIGINT: no new attempts; attempts in flight end as
 * "err ... unavailable"; exit 0. Exit 2 on bad options, 1 when etcd cannot
 * be reached at start (it tries for 20 s).
 */
#include "daemon-options.h"
#include "daemon.h"
#include "log.h"
#include "mail-error.h"
#include "router.h"
#include "store-client.h"
#include "util.h"
#include "xalloc.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOG_SVC "store-writer"
#define ROUTER_START_TRIES 200
#define ROUTER_START_WAIT_US 100000

struct writer_settings {
	const char *etcd;
	const char *etcd_ca, *etcd_cert, *etcd_key;  /* etcd's TLS (optional) */
	const char *etcd_user, *etcd_password_file;  /* its credentials (optional) */
	const char *prefix;
	const char *users;      /* comma-separated */
	unsigned interval_ms;
	unsigned deadline_ms;
	unsigned retry_ms;
	int reads;
	struct tls_client_settings tls;  /* ca_file NULL: plaintext */
};

/* A delivery that failed: tried again after `after` (monotonic ms). */
struct failed_write {
	char *id;
	uint64_t after;
};

struct writer_user {
	char *name;
	int busy;               /* an attempt is in flight */
	int reading;            /* a select is in flight */
	struct failed_write *failed;
	size_t n_failed, cap_failed;
};

struct writer {
	uv_loop_t loop;
	router *router;
	tls_client *tls;
	store_client *client;
	uv_timer_t tick;
	struct daemon_signals signals;
	struct writer_settings set;
	struct writer_user *users;
	size_t n_users;
	size_t next_user;       /* round robin */
	size_t next_reader;     /* round robin of --reads */
	uint64_t next_seq;
	int stopping;
};

struct write_ctx {
	struct writer *w;
	struct writer_user *user;
	char *id;
	int64_t start;          /* wall ms */
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: store-writer --etcd URL --prefix P --users U1,U2,...\n"
		"                    [--etcd-ca F --etcd-cert F --etcd-key F]\n"
		"                    [--etcd-user NAME --etcd-password-file F]\n"
		"                    [--interval-ms N] [--deadline-ms N] [--retry-ms N]\n"
		"                    [--reads]\n"
		"                    [--node-cert FILE --node-key FILE --cluster-ca FILE]\n");
}

static int settings_parse(int argc, char **argv, struct writer_settings *set)
{
	static const struct option opts[] = {
		{ "etcd", required_argument, NULL, 'e' },
		{ "etcd-ca", required_argument, NULL, 'a' },
		{ "etcd-cert", required_argument, NULL, 'c' },
		{ "etcd-key", required_argument, NULL, 'k' },
		{ "etcd-user", required_argument, NULL, 'U' },
		{ "etcd-password-file", required_argument, NULL, 'P' },
		{ "prefix", required_argument, NULL, 'p' },
		{ "users", required_argument, NULL, 'u' },
		{ "interval-ms", required_argument, NULL, 'i' },
		{ "deadline-ms", required_argument, NULL, 'd' },
		{ "retry-ms", required_argument, NULL, 'r' },
		{ "reads", no_argument, NULL, 'R' },
		{ "node-cert", required_argument, NULL, 'C' },
		{ "node-key", required_argument, NULL, 'K' },
		{ "cluster-ca", required_argument, NULL, 'A' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	*set = (struct writer_settings){ .interval_ms = 50, .deadline_ms = 3000,
					 .retry_ms = 1000 };
	int c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'e': set->etcd = optarg; break;
		case 'a': set->etcd_ca = optarg; break;
		case 'c': set->etcd_cert = optarg; break;
		case 'k': set->etcd_key = optarg; break;
		case 'U': set->etcd_user = optarg; break;
		case 'P': set->etcd_password_file = optarg; break;
		case 'p': set->prefix = optarg; break;
		case 'u': set->users = optarg; break;
		case 'i':
			if (daemon_options_parse_uint(optarg, 1, 60000, &set->interval_ms) < 0)
				return -1;
			break;
		case 'd':
			if (daemon_options_parse_uint(optarg, 1, 600000, &set->deadline_ms) < 0)
				return -1;
			break;
		case 'r':
			if (daemon_options_parse_uint(optarg, 0, 600000, &set->retry_ms) < 0)
				return -1;
			break;
		case 'R':
			set->reads = 1;
			break;
		case 'C': set->tls.cert_file = optarg; break;
		case 'K': set->tls.key_file = optarg; break;
		case 'A': set->tls.ca_file = optarg; break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			return -1;
		}
	}
	if (optind != argc || set->etcd == NULL || set->prefix == NULL || set->users == NULL ||
	    set->users[0] == '\0')
		return -1;
	int tls_given = (set->tls.cert_file != NULL) + (set->tls.key_file != NULL) +
			(set->tls.ca_file != NULL);
	if (tls_given != 0 && tls_given != 3)
		return -1;
	return 0;
}

static void writer_users_parse(struct writer *w, const char *list)
{
	char *copy = xstrdup(list);
	char *save = NULL;
	for (char *u = strtok_r(copy, ",", &save); u != NULL; u = strtok_r(NULL, ",", &save)) {
		w->users = xrealloc(w->users, (w->n_users + 1) * sizeof *w->users);
		w->users[w->n_users++] = (struct writer_user){ .name = xstrdup(u) };
	}
	free(copy);
}

static void writer_failed_push(struct writer *w, struct writer_user *u, char *id)
{
	if (u->n_failed == u->cap_failed) {
		u->cap_failed = u->cap_failed ? u->cap_failed * 2 : 8;
		u->failed = xrealloc(u->failed, u->cap_failed * sizeof *u->failed);
	}
	u->failed[u->n_failed++] =
		(struct failed_write){ id, util_now_mono_ms() + w->set.retry_ms };
}

/* The oldest failed id of u that is due, removed from the list; or NULL. */
static char *writer_failed_pop_due(struct writer_user *u)
{
	if (u->n_failed == 0 || u->failed[0].after > util_now_mono_ms())
		return NULL;
	char *id = u->failed[0].id;
	memmove(u->failed, u->failed + 1, (u->n_failed - 1) * sizeof *u->failed);
	u->n_failed--;
	return id;
}

static void deliver_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	struct write_ctx *ctx = arg;
	int64_t end = util_now_wall_ms();
	ctx->user->busy = 0;
	if (status == MAIL_OK) {
		const Store__DeliverResponse *r = (const Store__DeliverResponse *)resp;
		printf("ok %s %u user=%s uidvalidity=%u dup=%d start=%lld end=%lld\n", ctx->id,
		       r->uid, ctx->user->name, r->uidvalidity, r->duplicate ? 1 : 0,
		       (long long)ctx->start, (long long)end);
		free(ctx->id);
	} else {
		printf("err %s %s user=%s start=%lld end=%lld\n", ctx->id,
		       mail_error_info(status)->name, ctx->user->name, (long long)ctx->start,
		       (long long)end);
		writer_failed_push(ctx->w, ctx->user, ctx->id);
	}
	fflush(stdout);
	free(ctx);
}

static void writer_start_one(struct writer *w, struct writer_user *u)
{
	char *id = writer_failed_pop_due(u);
	if (id == NULL)
		id = xasprintf("%s-%llu", w->set.prefix, (unsigned long long)w->next_seq++);
	char *body = xasprintf("From: writer@remote.test\r\nTo: %s\r\nSubject: %s\r\n"
			       "X-Delivery-Id: %s\r\n\r\nbody %s\r\n", u->name, id, id, id);
	Store__DeliverRequest req = STORE__DELIVER_REQUEST__INIT;
	req.user = u->name;
	req.delivery_id = id;
	req.body.data = (uint8_t *)body;
	req.body.len = strlen(body);
	struct write_ctx *ctx = xcalloc(1, sizeof *ctx);
	*ctx = (struct write_ctx){ w, u, id, util_now_wall_ms() };
	u->busy = 1;
	/* the request is packed before the call returns: body may go now */
	store_client_deliver(w->client, &req, deliver_cb, ctx);
	free(body);
}

static void select_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	struct write_ctx *ctx = arg;
	const Store__SelectResponse *r = (const Store__SelectResponse *)resp;
	const Store__MailboxInfo *box = status == MAIL_OK ? r->mailbox : NULL;
	ctx->user->reading = 0;
	printf("read %s %s exists=%u uidnext=%u uidvalidity=%u start=%lld end=%lld\n",
	       ctx->user->name, mail_error_info(status)->name, box != NULL ? box->exists : 0,
	       box != NULL ? box->uidnext : 0, box != NULL ? box->uidvalidity : 0,
	       (long long)ctx->start, (long long)util_now_wall_ms());
	fflush(stdout);
	free(ctx);
}

static void writer_read_next(struct writer *w)
{
	for (size_t k = 0; k < w->n_users; k++) {
		struct writer_user *u = &w->users[w->next_reader];
		w->next_reader = (w->next_reader + 1) % w->n_users;
		if (u->reading)
			continue;
		Store__SelectRequest req = STORE__SELECT_REQUEST__INIT;
		req.user = u->name;
		req.mailbox = "";
		struct write_ctx *ctx = xcalloc(1, sizeof *ctx);
		*ctx = (struct write_ctx){ w, u, NULL, util_now_wall_ms() };
		u->reading = 1;
		store_client_select(w->client, &req, select_cb, ctx);
		return;
	}
}

static void tick_cb(uv_timer_t *t)
{
	struct writer *w = t->data;
	if (w->set.reads)
		writer_read_next(w);
	for (size_t k = 0; k < w->n_users; k++) {
		struct writer_user *u = &w->users[w->next_user];
		w->next_user = (w->next_user + 1) % w->n_users;
		if (!u->busy) {
			writer_start_one(w, u);
			return;
		}
	}
}

static void writer_stop_cb(void *arg)
{
	struct writer *w = arg;
	w->stopping = 1;
	uv_timer_stop(&w->tick);
	uv_close((uv_handle_t *)&w->tick, NULL);
	/* attempts in flight end here, through deliver_cb, as "unavailable" */
	store_client_destroy(&w->client);
	daemon_signals_deinit(&w->signals);
}

int main(int argc, char **argv)
{
	struct writer w = { 0 };
	if (settings_parse(argc, argv, &w.set) < 0) {
		usage(stderr);
		return 2;
	}
	writer_users_parse(&w, w.set.users);
	const char *error = NULL;
	char *password = NULL;
	if (w.set.etcd_user != NULL &&
	    (w.set.etcd_password_file == NULL ||
	     etcd_conf_read_password(w.set.etcd_password_file, &password, &error) < 0)) {
		fprintf(stderr, "store-writer: --etcd-password-file: %s\n",
			error != NULL ? error : "missing");
		return 2;
	}
	etcd_tokens *tokens = etcd_tokens_create();
	etcd_conf conf = { .url = w.set.etcd, .ca_file = w.set.etcd_ca,
			   .cert_file = w.set.etcd_cert, .key_file = w.set.etcd_key,
			   .user = w.set.etcd_user, .password = password, .tokens = tokens };
	int tries = 0;
	while (router_create(&conf, &w.router, &error) < 0) {
		if (++tries >= ROUTER_START_TRIES) {
			log_event(LOG_ERROR, LOG_SVC, "event=startup_failed error=\"%s\"", error);
			return 1;
		}
		usleep(ROUTER_START_WAIT_US);
	}
	if (w.set.tls.ca_file != NULL && tls_client_create(&w.set.tls, &w.tls, &error) < 0) {
		log_event(LOG_ERROR, LOG_SVC, "event=startup_failed error=\"%s\"", error);
		router_destroy(&w.router);
		return 2;
	}
	uv_loop_init(&w.loop);
	w.client = store_client_create(&w.loop, w.router);
	if (w.tls != NULL)
		store_client_set_tls(w.client, w.tls);
	store_client_set_deadline(w.client, w.set.deadline_ms);
	uv_timer_init(&w.loop, &w.tick);
	w.tick.data = &w;
	uv_timer_start(&w.tick, tick_cb, 0, w.set.interval_ms);
	daemon_signals_init(&w.loop, &w.signals, writer_stop_cb, &w);
	log_event(LOG_INFO, LOG_SVC, "event=ready prefix=%s users=%zu", w.set.prefix, w.n_users);
	uv_run(&w.loop, UV_RUN_DEFAULT);

	daemon_loop_finish(&w.loop);
	router_destroy(&w.router);
	etcd_tokens_destroy(&tokens);
	if (password != NULL)
		xfree_secret(password, strlen(password));
	tls_client_destroy(&w.tls);
	for (size_t k = 0; k < w.n_users; k++) {
		for (size_t f = 0; f < w.users[k].n_failed; f++)
			free(w.users[k].failed[f].id);
		free(w.users[k].failed);
		free(w.users[k].name);
	}
	free(w.users);
	log_event(LOG_INFO, LOG_SVC, "event=stopped next_seq=%llu",
		  (unsigned long long)w.next_seq);
	return 0;
}
