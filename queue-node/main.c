/* queue-node: the durable mail queue daemon. Options -> settings, init in
 * order, run the loop, deinit in reverse. No storage or protocol logic here. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include <uv.h>

#include "daemon-options.h"
#include "daemon.h"
#include "delivery.h"
#include "etcd-monitor.h"
#include "log.h"
#include "queue-repl.h"
#include "queue-service.h"
#include "queue-store.h"
#include "router.h"
#include "scheduler.h"
#include "store-client.h"
#include "xalloc.h"

#define LOG_SVC "queue"
/* Payload MiB kept in each partition log. Queue entries carry whole
 * messages that leave the queue within seconds, so a replica that falls
 * further behind gets a snapshot (the messages still queued: small) rather
 * than a long log: at most 64 x 5/4 x 4 MiB = 320 MiB of log per node with
 * 64 partitions (docs/replication.md). */
#define QUEUE_LOG_KEEP_MIB_DEFAULT 4

struct queue_node_settings {
	const char *id, *listen, *data, *etcd, *metrics;
	const char *advertise;
	unsigned partitions;
	unsigned replicas;
	unsigned log_keep;
	unsigned log_keep_mib; /* payload MiB kept in each partition log (0 = default) */
	unsigned lease_ttl_s;
	uint64_t etcd_quota;   /* etcd's --quota-backend-bytes, for the warning */
	struct queue_sched_settings sched;
	struct queue_service_settings service;
};

struct queue_node {
	uv_loop_t loop;
	queue_store *store;
	queue_repl *repl;
	store_client *store_client;
	queue_delivery *delivery;
	queue_service *service;
	metrics *metrics;
	etcd_stats etcd_stats;     /* this process's etcd writes (every client) */
	etcd_monitor *etcd_monitor;
	struct daemon_signals signals;
};

static void usage(void)
{
	fprintf(stderr, "usage: queue-node --id ID --listen HOST:PORT --data DIR --etcd URL\n"
		"  [--advertise HOST] [--partitions N (256)] [--replicas R (3)]\n"
		"  [--lease-ttl S (5)] [--log-keep N (2000)] [--log-keep-mib N (4)]\n"
		"  [--retry-initial-ms MS (1000)]\n"
		"  [--retry-max-ms MS (60000)] [--max-inflight N (64)]\n"
		"  [--metrics HOST:PORT (Prometheus /metrics; default off)]\n"
		"  [--etcd-quota-bytes N (etcd's quota, 2147483648): warn at 80%% of it]\n");
	exit(2);
}

static void parse_args(int argc, char **argv, struct queue_node_settings *set)
{
	static const struct option opts[] = {
		{ "id", required_argument, NULL, 'i' },
		{ "listen", required_argument, NULL, 'l' },
		{ "data", required_argument, NULL, 'd' },
		{ "etcd", required_argument, NULL, 'e' },
		{ "partitions", required_argument, NULL, 'p' },
		{ "replicas", required_argument, NULL, 'n' },
		{ "advertise", required_argument, NULL, 'a' },
		{ "log-keep", required_argument, NULL, 'k' },
		{ "log-keep-mib", required_argument, NULL, 'K' },
		{ "lease-ttl", required_argument, NULL, 't' },
		{ "retry-initial-ms", required_argument, NULL, 'r' },
		{ "retry-max-ms", required_argument, NULL, 'R' },
		{ "max-inflight", required_argument, NULL, 'm' },
		{ "metrics", required_argument, NULL, 'M' },
		{ "etcd-quota-bytes", required_argument, NULL, 'Q' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned v;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'i': set->id = optarg; break;
		case 'l': set->listen = optarg; break;
		case 'd': set->data = optarg; break;
		case 'e': set->etcd = optarg; break;
		case 'M': set->metrics = optarg; break;
		case 'a': set->advertise = optarg; break;
		case 'n':
			if (daemon_options_parse_uint(optarg, 1, 8, &set->replicas) < 0)
				usage();
			break;
		case 'k':
			if (daemon_options_parse_uint(optarg, 1, 1u << 30, &set->log_keep) < 0)
				usage();
			break;
		case 'K':
			if (daemon_options_parse_uint(optarg, 1, 1u << 20, &set->log_keep_mib) < 0)
				usage();
			break;
		case 'p':
			if (daemon_options_parse_uint(optarg, 1, 65536, &set->partitions) < 0)
				usage();
			break;
		case 't':
			if (daemon_options_parse_uint(optarg, 1, 3600, &set->lease_ttl_s) < 0)
				usage();
			break;
		case 'r':
		case 'R':
		case 'm':
			/* ranges are checked by queue_sched_settings_check() */
			if (daemon_options_parse_uint(optarg, 0, 0xffffffffu, &v) < 0)
				usage();
			if (c == 'r')
				set->sched.retry_initial_ms = v;
			else if (c == 'R')
				set->sched.retry_max_ms = v;
			else
				set->sched.max_inflight = v;
			break;
		case 'Q':
			if (daemon_options_parse_u64(optarg, 1, UINT64_MAX / 100, &set->etcd_quota) < 0)
				usage();
			break;
		default: usage();
		}
	}
	if (optind != argc || !set->id || !set->listen || !set->data || !set->etcd)
		usage();
}

static void fatal(const char *what, const char *error)
{
	log_event(LOG_ERROR, LOG_SVC, "event=start_failed step=%s error=\"%s\"", what, error);
	exit(1);
}

static void node_metrics_cb(buf *out, const char *labels, void *arg)
{
	struct queue_node *node = arg;
	struct rpc_counters c;
	queue_service_counters(node->service, &c);
	rpc_counters_format(out, labels, "server", "queue", &c);
	buf_printf(out, "# TYPE mail_queue_messages gauge\nmail_queue_messages{%s} %zu\n",
		   labels, queue_delivery_pending(node->delivery));
	/* every replica's copy: 0 everywhere means nothing is left anywhere */
	buf_printf(out, "# TYPE mail_queue_stored gauge\nmail_queue_stored{%s} %ld\n", labels,
		   queue_store_count(node->store));
}

/* SIGTERM/SIGINT: leave membership, stop taking requests, drop deliveries
 * in flight (they stay queued, on every replica); the loop then runs dry.
 * The order is the one delivery.h and repl-host.h ask for. */
static void node_stop_cb(void *arg)
{
	struct queue_node *node = arg;
	queue_repl_stop(node->repl);
	metrics_destroy(&node->metrics);
	etcd_monitor_destroy(&node->etcd_monitor);
	queue_delivery_stop(node->delivery);
	queue_service_destroy(&node->service);
	queue_repl_destroy(&node->repl);
	store_client_destroy(&node->store_client);
	queue_delivery_destroy(&node->delivery);
	daemon_signals_deinit(&node->signals);
}

int main(int argc, char **argv)
{
	struct queue_node_settings set = { .partitions = ROUTER_DEFAULT_PARTITIONS,
					   .replicas = ROUTER_DEFAULT_REPLICAS,
					   .lease_ttl_s = ROUTER_DEFAULT_LEASE_TTL_S,
					   .etcd_quota = ETCD_MONITOR_DEFAULT_QUOTA };
	queue_sched_settings_default(&set.sched);
	queue_service_settings_default(&set.service);
	parse_args(argc, argv, &set);
	const char *error;
	if (queue_sched_settings_check(&set.sched, &error) < 0 ||
	    queue_service_settings_check(&set.service, &error) < 0)
		fatal("settings", error);
	char *host;
	int port;
	if (daemon_options_parse_listen(set.listen, &host, &port, &error) < 0)
		fatal("listen", error);

	struct queue_node node = { 0 };
	uv_loop_init(&node.loop);
	if (queue_store_open(set.data, &node.store, &error) < 0)
		fatal("queue_store", error);
	/* The service listens first (its port goes into the ring); it refuses
	 * requests until the delivery side is set below. */
	queue_service_create(&node.loop, &set.service, node.store, NULL, &node.service);
	if (queue_service_listen(node.service, host, port, &port, &error) < 0)
		fatal("rpc_listen", error);
	char *repl_dir = xasprintf("%s/repl", set.data);
	struct repl_host_settings hs = {
		.role = ROUTER_ROLE_QUEUE,
		.node_id = set.id,
		.etcd_url = set.etcd,
		.host = set.advertise != NULL ? set.advertise : host,
		.port = port,
		.repl_dir = repl_dir,
		.n_partitions = set.partitions,
		.n_replicas = set.replicas,
		.ttl_s = (int)set.lease_ttl_s,
		/* queue entries carry whole messages: keep the logs short */
		.log_keep_entries = set.log_keep ? set.log_keep : 2000,
		.log_keep_bytes = (uint64_t)(set.log_keep_mib ? set.log_keep_mib
							      : QUEUE_LOG_KEEP_MIB_DEFAULT) << 20,
		.etcd_stats = &node.etcd_stats,
	};
	int r = queue_repl_start(&node.loop, queue_service_server(node.service), &hs, node.store,
				 &node.repl, &error);
	free(repl_dir);
	if (r < 0)
		fatal("replication", error);
	node.store_client = store_client_create(&node.loop, queue_repl_router(node.repl));
	node.delivery = queue_delivery_create(&node.loop, &set.sched, node.store,
					      node.store_client, queue_repl_journal(), node.repl);
	queue_repl_set_delivery(node.repl, node.delivery);
	queue_service_set_repl(node.service, node.repl, node.delivery);
	etcd_monitor_settings es = { .etcd_url = set.etcd, .quota_bytes = set.etcd_quota,
				     .stats = &node.etcd_stats };
	node.etcd_monitor = etcd_monitor_start(&node.loop, &es);
	if (set.metrics != NULL) {
		if (daemon_metrics_start(&node.loop, LOG_SVC, set.id, set.metrics, &node.metrics,
					 &error) < 0)
			fatal("metrics", error);
		metrics_add_collector(node.metrics, node_metrics_cb, &node);
		metrics_add_collector(node.metrics, etcd_monitor_collect, node.etcd_monitor);
	}
	daemon_signals_init(&node.loop, &node.signals, node_stop_cb, &node);
	log_event(LOG_INFO, LOG_SVC, "event=ready id=%s listen=%s:%d data=%s pending=%zu",
		  set.id, host, port, set.data, queue_delivery_pending(node.delivery));

	if (daemon_loop_finish(&node.loop) != 0)
		log_event(LOG_WARN, LOG_SVC, "event=loop_busy_at_exit");
	queue_store_close(&node.store);
	free(host);
	log_event(LOG_INFO, LOG_SVC, "event=stopped id=%s", set.id);
	return 0;
}
