/* main.c: the store-node daemon on the skeleton (lib/daemon-main.h). It
 * opens the mailstore, serves the "store" RPC service (mutual TLS with
 * --node-cert: lib/daemon-tls.h) and, with --etcd, holds its partitions of
 * the store ring (lib/daemon-node.h); SIGTERM or SIGINT leaves the ring,
 * closes the server and the store, exits 0. */
#include "daemon-main.h"
#include "daemon-node.h"
#include "log.h"
#include "mailstore.h"
#include "store-service.h"

#include <stdlib.h>

#define LOG_SVC "store"

/* Payload MiB kept in each partition log: with 64 partitions held, at most
 * 64 x 5/4 x 16 MiB = 1.25 GiB of log per node (docs/replication.md). */
#define STORE_LOG_KEEP_MIB_DEFAULT 16

struct store_settings {
	struct daemon_node_settings node; /* first (lib/daemon-node.h) */
	unsigned body_inline_max;         /* mailstore_limits.body_inline_max */
};

/* An idle store still collects its body segments (deliveries and expunges
 * run collection steps as they go; an expunge burst followed by silence
 * would otherwise leave dead segments on disk): every tick runs a few
 * steps of mailstore_maintain() on the loop, each at most
 * body_collect_step bytes and one sync. */
#define STORE_MAINTAIN_INTERVAL_MS 10000
#define STORE_MAINTAIN_STEPS 4

struct store_node {
	struct daemon_tls tls;   /* both NULL without node TLS */
	mailstore *store;
	store_service *service;
	repl_host *parts;
	uv_timer_t maintain;
	int maintain_on;
};

static const struct daemon_option store_options[] = {
	{ .name = "etcd", .kind = DAEMON_OPTION_STRING,
	  .offset = offsetof(struct store_settings, node.daemon.etcd), .value_name = "URL",
	  .help = "etcd client URL; without it: standalone, no ring" },
	{ .name = "body-inline-max", .kind = DAEMON_OPTION_UINT,
	  .offset = offsetof(struct store_settings, body_inline_max), .value_name = "BYTES",
	  .min = 0, .max = 1024 * 1024, .def = 16 * 1024,
	  .help = "bodies up to this size are kept in their LevelDB record, not in a "
		  "segment file (0: none)" },
	{ .name = NULL },
};

static const struct daemon_option_default store_node_defaults[] = {
	{ .name = "log-keep-mib", .def = STORE_LOG_KEEP_MIB_DEFAULT },
	{ .name = NULL },
};

static int store_check(const void *settings, const char **error_r)
{
	const struct store_settings *set = settings;
	return daemon_node_check(&set->node, error_r);
}

static void store_metrics_cb(buf *out, const char *labels, void *arg)
{
	struct store_node *node = arg;
	struct rpc_counters c;
	store_service_counters(node->service, &c);
	rpc_counters_format(out, labels, "server", "store", &c);
	/* body segments: disk in use against what is still referenced */
	struct mailstore_body_stats b;
	mailstore_body_stats(node->store, &b);
	buf_printf(out,
		   "# TYPE mail_store_body_segments gauge\nmail_store_body_segments{%s} %llu\n"
		   "# TYPE mail_store_body_disk_bytes gauge\nmail_store_body_disk_bytes{%s} %llu\n"
		   "# TYPE mail_store_body_live_bytes gauge\nmail_store_body_live_bytes{%s} %llu\n",
		   labels, (unsigned long long)b.segments, labels,
		   (unsigned long long)b.disk_bytes, labels, (unsigned long long)b.live_bytes);
	if (node->parts != NULL)
		repl_host_metrics(node->parts, out, labels);
}

static void store_maintain_cb(uv_timer_t *t)
{
	struct store_node *node = t->data;
	int more = 1;
	for (int i = 0; i < STORE_MAINTAIN_STEPS && more; i++)
		if (mailstore_maintain(node->store, &more) != MAIL_OK)
			break; /* logged; the next tick tries again */
}

static int store_start(struct daemon *d, const void *settings, void *ctx)
{
	const struct store_settings *set = settings;
	struct store_node *node = ctx;
	uv_loop_t *loop = daemon_loop(d);
	const char *error;
	int port;
	if (daemon_tls_init(&set->node.tls, 1, &node->tls, &error) < 0)
		return daemon_start_failed(d, "node_tls", error);
	struct mailstore_limits limits;
	mailstore_limits_default(&limits);
	limits.body_inline_max = set->body_inline_max;
	if (mailstore_open(set->node.data, &limits, &node->store, &error) != 0)
		return daemon_start_failed(d, "mailstore", error);
	store_service_create(loop, node->store, &node->service);
	daemon_node_rpc_setup(&set->node, store_service_server(node->service), node->tls.server);
	if (store_service_listen(node->service, set->node.listen.host, set->node.listen.port, &port,
				 &error) < 0)
		return daemon_start_failed(d, "listen", error);
	if (set->node.daemon.etcd != NULL) {
		struct repl_host_settings hs;
		char *repl_dir;
		daemon_node_repl_settings(&set->node, ROUTER_ROLE_STORE, port, daemon_etcd_conf(d),
					  daemon_etcd_stats(d), node->tls.client, &hs, &repl_dir);
		/* the applies' syncs: one per loop turn (the apply barrier) */
		mailstore_apply_defer_sync(node->store, 1);
		int r = repl_host_start(loop, store_service_server(node->service), &hs,
					store_service_repl_ops(), node->store, &node->parts, &error);
		free(repl_dir);
		if (r < 0)
			return daemon_start_failed(d, "replication", error);
		store_service_set_partitions(node->service, node->parts);
	} else {
		log_event(LOG_WARN, LOG_SVC, "event=standalone reason=no_etcd");
	}
	daemon_add_collector(d, store_metrics_cb, node);
	uv_timer_init(loop, &node->maintain);
	node->maintain.data = node;
	node->maintain_on = 1;
	uv_timer_start(&node->maintain, store_maintain_cb, STORE_MAINTAIN_INTERVAL_MS,
		       STORE_MAINTAIN_INTERVAL_MS);
	if (node->tls.server == NULL)
		log_event(LOG_WARN, LOG_SVC, "event=no_node_tls mode=development "
			  "note=\"plaintext RPC, loopback only\"");
	log_event(LOG_INFO, LOG_SVC, "event=ready id=%s listen=%s:%d node_tls=%s",
		  set->node.daemon.id, set->node.listen.host, port,
		  node->tls.server != NULL ? "on" : "off");
	return 0;
}

/* Leave the ring; the server goes before the repl node it serves. */
static void store_stop(void *ctx)
{
	struct store_node *node = ctx;
	if (node->maintain_on) {
		uv_timer_stop(&node->maintain);
		uv_close((uv_handle_t *)&node->maintain, NULL);
		node->maintain_on = 0;
	}
	repl_host_stop(node->parts);
	store_service_destroy(&node->service);
	repl_host_destroy(&node->parts);
}

static void store_deinit(void *ctx)
{
	struct store_node *node = ctx;
	mailstore_close(&node->store);
	daemon_tls_deinit(&node->tls);
}

static const struct daemon_option_group store_option_groups[] = {
	{ .rows = daemon_node_options, .offset = offsetof(struct store_settings, node),
	  .defaults = store_node_defaults },
	{ .rows = daemon_tls_options, .offset = offsetof(struct store_settings, node.tls) },
	{ .rows = store_options },
	{ .rows = NULL },
};

static const struct daemon_def store_daemon = {
	.name = "store-node",
	.svc = LOG_SVC,
	.summary = "The store node: mailboxes in LevelDB, served over RPC (\"store\"); with\n"
		   "--etcd, the partitions of the store ring this node holds, replicated.",
	.settings_size = sizeof(struct store_settings),
	.ctx_size = sizeof(struct store_node),
	.options = store_option_groups,
	.check = store_check,
	.start = store_start,
	.stop = store_stop,
	.deinit = store_deinit,
};

int main(int argc, char **argv)
{
	return daemon_main(&store_daemon, argc, argv);
}
