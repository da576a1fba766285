/* queue-node: the durable mail queue daemon. Options -> settings, init in
 * order, run the loop, deinit in reverse. No storage or protocol logic here. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "delivery.h"
#include "log.h"
#include "queue-service.h"
#include "queue-store.h"
#include "router.h"
#include "scheduler.h"
#include "store-client.h"
#include "util.h"

struct queue_node_settings {
	const char *id, *listen, *data, *etcd;
	uint32_t partitions;
	int lease_ttl_s;
	struct queue_sched_settings sched;
	struct queue_service_settings service;
};

static void usage(void)
{
	fprintf(stderr, "usage: queue-node --id ID --listen HOST:PORT --data DIR --etcd URL\n"
		"  [--partitions N (256)] [--lease-ttl S (5)] [--retry-initial-ms MS (1000)]\n"
		"  [--retry-max-ms MS (60000)] [--max-inflight N (64)]\n");
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
		{ "lease-ttl", required_argument, NULL, 't' },
		{ "retry-initial-ms", required_argument, NULL, 'r' },
		{ "retry-max-ms", required_argument, NULL, 'R' },
		{ "max-inflight", required_argument, NULL, 'm' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'i': set->id = optarg; break;
		case 'l': set->listen = optarg; break;
		case 'd': set->data = optarg; break;
		case 'e': set->etcd = optarg; break;
		case 'p': set->partitions = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 't': set->lease_ttl_s = atoi(optarg); break;
		case 'r': set->sched.retry_initial_ms = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'R': set->sched.retry_max_ms = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'm': set->sched.max_inflight = (uint32_t)strtoul(optarg, NULL, 10); break;
		default: usage();
		}
	}
	if (optind != argc || !set->id || !set->listen || !set->data || !set->etcd ||
	    set->partitions < 1 || set->lease_ttl_s < 1)
		usage();
}

static void fatal(const char *what, const char *error)
{
	log_event(LOG_ERROR, "queue", "event=start_failed step=%s error=\"%s\"", what, error);
	exit(1);
}

static void on_signal_cb(uv_signal_t *sig, int signum)
{
	log_event(LOG_INFO, "queue", "event=stopping signal=%d", signum);
	uv_stop(sig->loop);
}

int main(int argc, char **argv)
{
	struct queue_node_settings set = { .partitions = ROUTER_DEFAULT_PARTITIONS,
					   .lease_ttl_s = ROUTER_DEFAULT_LEASE_TTL_S };
	queue_sched_settings_default(&set.sched);
	queue_service_settings_default(&set.service);
	parse_args(argc, argv, &set);
	const char *error;
	if (queue_sched_settings_check(&set.sched, &error) < 0 ||
	    queue_service_settings_check(&set.service, &error) < 0)
		fatal("settings", error);
	char *host;
	int port;
	if (util_hostport_parse(set.listen, &host, &port, &error) < 0)
		fatal("listen", error);
	signal(SIGPIPE, SIG_IGN);

	uv_loop_t loop;
	uv_loop_init(&loop);
	queue_store *store;
	if (queue_store_open(set.data, &store, &error) < 0)
		fatal("queue_store", error);
	router *rt;
	if (router_create(set.etcd, &rt, &error) < 0)
		fatal("router", error);
	store_client *sc = store_client_create(&loop, rt);
	queue_delivery *delivery = queue_delivery_create(&loop, &set.sched, store, sc);
	if (queue_recover(delivery, &error) < 0)
		fatal("recover", error);
	queue_service *service;
	queue_service_create(&loop, &set.service, store, delivery, &service);
	if (queue_service_listen(service, host, port, &port, &error) < 0)
		fatal("rpc_listen", error);
	router_member *member;
	if (router_member_start(&loop, set.etcd, ROUTER_ROLE_QUEUE, set.id, host, port,
				set.lease_ttl_s, set.partitions, &member, &error) < 0)
		fatal("membership", error);
	uv_signal_t sigterm, sigint;
	uv_signal_init(&loop, &sigterm);
	uv_signal_start(&sigterm, on_signal_cb, SIGTERM);
	uv_signal_init(&loop, &sigint);
	uv_signal_start(&sigint, on_signal_cb, SIGINT);
	log_event(LOG_INFO, "queue", "event=ready id=%s listen=%s:%d data=%s pending=%zu",
		  set.id, host, port, set.data, queue_delivery_pending(delivery));

	uv_run(&loop, UV_RUN_DEFAULT);

	/* Reverse order: leave membership, stop taking requests, drop
	 * deliveries in flight (they stay queued on disk), then storage. */
	router_member_stop(&member);
	queue_service_destroy(&service);
	queue_delivery_stop(delivery);
	store_client_destroy(&sc);
	queue_delivery_destroy(&delivery);
	uv_close((uv_handle_t *)&sigterm, NULL);
	uv_close((uv_handle_t *)&sigint, NULL);
	for (int i = 0; i < 10 && uv_run(&loop, UV_RUN_NOWAIT) != 0; i++)
		;
	if (uv_loop_close(&loop) != 0)
		log_event(LOG_WARN, "queue", "event=loop_busy_at_exit");
	router_destroy(&rt);
	queue_store_close(&store);
	free(host);
	log_event(LOG_INFO, "queue", "event=stopped id=%s", set.id);
	return 0;
}
