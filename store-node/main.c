/* main.c: the store-node daemon. Parses options, opens the mailstore,
 * serves the "store" RPC service and registers on the store ring; SIGTERM
 * or SIGINT leaves the ring, closes the server and the store, exits 0. */
#include "daemon-options.h"
#include "daemon.h"
#include "etcd-monitor.h"
#include "log.h"
#include "mailstore.h"
#include "metrics.h"
#include "repl-host.h"
#include "router.h"
#include "xalloc.h"
#include "store-service.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#define LOG_SVC "store"

/* Payload MiB kept in each partition log: with 64 partitions held, at most
 * 64 x 5/4 x 16 MiB = 1.25 GiB of log per node (docs/replication.md). */
#define STORE_LOG_KEEP_MIB_DEFAULT 16

struct store_settings {
	const char *id;
	const char *listen;
	const char *advertise; /* host others dial; default: the listen host */
	const char *data;
	const char *etcd;      /* NULL: standalone, no ring registration */
	unsigned partitions;
	unsigned lease_ttl;
	unsigned replicas;
	unsigned log_keep;     /* entries kept in each partition log (0 = default) */
	unsigned log_keep_mib; /* payload MiB kept in each partition log (0 = default) */
	const char *metrics;   /* HOST:PORT of /metrics, NULL = off */
	uint64_t etcd_quota;   /* etcd's --quota-backend-bytes, for the warning */
};

struct store_node {
	uv_loop_t loop;
	mailstore *store;
	store_service *service;
	repl_host *parts;
	metrics *metrics;
	etcd_stats etcd_stats;     /* this process's etcd writes (every client) */
	etcd_monitor *etcd_monitor;
	struct daemon_signals signals;
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: store-node --id ID --listen HOST:PORT --data DIR [--etcd URL]\n"
		"                  [--advertise HOST] [--partitions N] [--replicas R]\n"
		"                  [--lease-ttl S]\n"
		"  --listen      RPC address; port 0 picks a free port (logged at ready)\n"
		"  --advertise   host put in the ring (default: the listen host)\n"
		"  --data        LevelDB directory (created if missing)\n"
		"  --etcd        etcd client URL; without it the node runs standalone\n"
		"  --partitions  partitions of a new ring (default %d)\n"
		"  --replicas    replicas per partition of a new ring (default %d)\n"
		"  --lease-ttl   membership lease in seconds (default %d)\n"
		"  --log-keep N  applied entries kept in each partition log before it is\n"
		"                compacted (default 10000; older ones travel as snapshots)\n"
		"  --log-keep-mib N  payload MiB kept in each partition log (default %d): the\n"
		"                log of each partition held stays under 5/4 of the smaller bound\n"
		"  --metrics     HOST:PORT serving Prometheus /metrics (default: off)\n"
		"  --etcd-quota-bytes N  etcd's --quota-backend-bytes: warn at 80%% of it\n"
		"                (default 2147483648, etcd's default)\n",
		ROUTER_DEFAULT_PARTITIONS, ROUTER_DEFAULT_REPLICAS, ROUTER_DEFAULT_LEASE_TTL_S,
		STORE_LOG_KEEP_MIB_DEFAULT);
}

static int settings_parse(int argc, char **argv, struct store_settings *set)
{
	static const struct option opts[] = {
		{ "id", required_argument, NULL, 'i' },
		{ "listen", required_argument, NULL, 'l' },
		{ "advertise", required_argument, NULL, 'a' },
		{ "data", required_argument, NULL, 'd' },
		{ "etcd", required_argument, NULL, 'e' },
		{ "partitions", required_argument, NULL, 'p' },
		{ "lease-ttl", required_argument, NULL, 't' },
		{ "replicas", required_argument, NULL, 'r' },
		{ "metrics", required_argument, NULL, 'M' },
		{ "log-keep", required_argument, NULL, 'k' },
		{ "log-keep-mib", required_argument, NULL, 'K' },
		{ "etcd-quota-bytes", required_argument, NULL, 'Q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	*set = (struct store_settings){ .partitions = ROUTER_DEFAULT_PARTITIONS,
					.lease_ttl = ROUTER_DEFAULT_LEASE_TTL_S,
					.replicas = ROUTER_DEFAULT_REPLICAS,
					.etcd_quota = ETCD_MONITOR_DEFAULT_QUOTA };
	int c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'i': set->id = optarg; break;
		case 'l': set->listen = optarg; break;
		case 'a': set->advertise = optarg; break;
		case 'd': set->data = optarg; break;
		case 'e': set->etcd = optarg; break;
		case 'M': set->metrics = optarg; break;
		case 'p':
			if (daemon_options_parse_uint(optarg, 1, 65536, &set->partitions) < 0)
				return -1;
			break;
		case 'r':
			if (daemon_options_parse_uint(optarg, 1, 8, &set->replicas) < 0)
				return -1;
			break;
		case 't':
			if (daemon_options_parse_uint(optarg, 1, 3600, &set->lease_ttl) < 0)
				return -1;
			break;
		case 'k':
			if (daemon_options_parse_uint(optarg, 1, 1u << 30, &set->log_keep) < 0)
				return -1;
			break;
		case 'K':
			if (daemon_options_parse_uint(optarg, 1, 1u << 20, &set->log_keep_mib) < 0)
				return -1;
			break;
		case 'Q':
			if (daemon_options_parse_u64(optarg, 1, UINT64_MAX / 100, &set->etcd_quota) < 0)
				return -1;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			return -1;
		}
	}
	if (optind != argc || set->id == NULL || set->listen == NULL || set->data == NULL)
		return -1;
	return 0;
}

static void node_metrics_cb(buf *out, const char *labels, void *arg)
{
	struct store_node *node = arg;
	struct rpc_counters c;
	store_service_counters(node->service, &c);
	rpc_counters_format(out, labels, "server", "store", &c);
}

static void node_stop_cb(void *arg)
{
	struct store_node *node = arg;
	/* Leave the ring; the server goes before the repl node it serves. */
	repl_host_stop(node->parts);
	metrics_destroy(&node->metrics);
	etcd_monitor_destroy(&node->etcd_monitor);
	store_service_destroy(&node->service);
	repl_host_destroy(&node->parts);
	daemon_signals_deinit(&node->signals);
}

int main(int argc, char **argv)
{
	struct store_settings set;
	if (settings_parse(argc, argv, &set) < 0) {
		usage(stderr);
		return 2;
	}
	char *host;
	int port;
	const char *error;
	if (daemon_options_parse_listen(set.listen, &host, &port, &error) < 0) {
		log_event(LOG_ERROR, LOG_SVC, "event=bad_option option=listen error=\"%s\"",
			  error);
		return 2;
	}

	struct store_node node = { 0 };
	uv_loop_init(&node.loop);
	if (mailstore_open(set.data, NULL, &node.store, &error) != 0) {
		log_event(LOG_ERROR, LOG_SVC, "event=startup_failed error=\"%s\"", error);
		free(host);
		return 1;
	}
	store_service_create(&node.loop, node.store, &node.service);
	if (store_service_listen(node.service, host, port, &port, &error) < 0) {
		log_event(LOG_ERROR, LOG_SVC, "event=startup_failed error=\"%s\"", error);
		goto fail;
	}
	if (set.etcd != NULL) {
		char *repl_dir = xasprintf("%s/repl", set.data);
		struct repl_host_settings ps = {
			.role = ROUTER_ROLE_STORE,
			.node_id = set.id,
			.etcd_url = set.etcd,
			.host = set.advertise != NULL ? set.advertise : host,
			.port = port,
			.repl_dir = repl_dir,
			.n_partitions = set.partitions,
			.n_replicas = set.replicas,
			.ttl_s = (int)set.lease_ttl,
			.log_keep_entries = set.log_keep,
			.log_keep_bytes = (uint64_t)(set.log_keep_mib ? set.log_keep_mib
								  : STORE_LOG_KEEP_MIB_DEFAULT) << 20,
			.etcd_stats = &node.etcd_stats,
		};
		int r = repl_host_start(&node.loop, store_service_server(node.service), &ps,
					store_service_repl_ops(), node.store, &node.parts,
					&error);
		free(repl_dir);
		if (r < 0) {
			log_event(LOG_ERROR, LOG_SVC, "event=startup_failed error=\"%s\"", error);
			goto fail;
		}
		store_service_set_partitions(node.service, node.parts);
		etcd_monitor_settings es = { .etcd_url = set.etcd, .quota_bytes = set.etcd_quota,
					     .stats = &node.etcd_stats };
		node.etcd_monitor = etcd_monitor_start(&node.loop, &es);
	} else {
		log_event(LOG_WARN, LOG_SVC, "event=standalone reason=no_etcd");
	}
	if (set.metrics != NULL &&
	    daemon_metrics_start(&node.loop, LOG_SVC, set.id, set.metrics, &node.metrics,
				 &error) < 0) {
		log_event(LOG_ERROR, LOG_SVC, "event=startup_failed error=\"%s\"", error);
		goto fail;
	}
	if (node.metrics != NULL)
		metrics_add_collector(node.metrics, node_metrics_cb, &node);
	if (node.metrics != NULL && node.etcd_monitor != NULL)
		metrics_add_collector(node.metrics, etcd_monitor_collect, node.etcd_monitor);
	daemon_signals_init(&node.loop, &node.signals, node_stop_cb, &node);
	log_event(LOG_INFO, LOG_SVC, "event=ready id=%s listen=%s:%d", set.id, host, port);
	uv_run(&node.loop, UV_RUN_DEFAULT);

	daemon_loop_finish(&node.loop);
	mailstore_close(&node.store);
	free(host);
	log_event(LOG_INFO, LOG_SVC, "event=stopped id=%s", set.id);
	return 0;

fail:
	repl_host_stop(node.parts);
	metrics_destroy(&node.metrics);
	etcd_monitor_destroy(&node.etcd_monitor);
	store_service_destroy(&node.service);
	repl_host_destroy(&node.parts);
	daemon_loop_finish(&node.loop);
	mailstore_close(&node.store);
	free(host);
	return 1;
}
