/* main.c: the queue-node daemon on the skeleton (lib/daemon-main.h). It
 * opens the queue store, serves the "queue" RPC service, holds its
 * partitions of the queue ring (lib/daemon-node.h) and delivers the
 * messages of those it leads to the store tier. SIGTERM or SIGINT leaves
 * the ring and drops the deliveries in flight (they stay queued, on every
 * replica); exit 0. No storage or protocol logic here. */
#include "daemon-main.h"
#include "daemon-node.h"
#include "delivery.h"
#include "dns.h"
#include "log.h"
#include "outbound.h"
#include "queue-config.h"
#include "queue-dkim.h"
#include "queue-repl.h"
#include "queue-service.h"
#include "queue-store.h"
#include "scheduler.h"
#include "store-client.h"

#include <stdlib.h>

#define LOG_SVC "queue"

/* Queue entries carry whole messages that leave the queue within seconds,
 * so the logs stay short and a replica that falls further behind gets a
 * snapshot (the messages still queued: small): at most 64 x 5/4 x 4 MiB =
 * 320 MiB of log per node with 64 partitions (docs/replication.md). */
#define QUEUE_LOG_KEEP_DEFAULT 2000
#define QUEUE_LOG_KEEP_MIB_DEFAULT 4
/* How long a queue node keeps an MX answer (docs/dns.md "The answer cache"). */
#define QUEUE_MX_CACHE_MS 60000u

struct queue_node_settings {
	struct daemon_node_settings node; /* first (lib/daemon-node.h) */
	struct queue_sched_settings sched;
	/* The port of remote MXs (issue 10's test interface; 25 in service):
	 * outbound delivery connects there. */
	unsigned smtp_out_port;
	const char *hostname;        /* EHLO name, DSNs' Reporting-MTA */
	const char *retry_schedule;  /* "60,300,..." seconds */
	unsigned expiry_s;
	unsigned delay_warning_s;
	unsigned out_timeout_s;      /* 0: RFC 5321's timeouts */
	unsigned out_max_conns;
	unsigned config_refresh_ms;  /* relays, transports, DKIM keys from etcd */
};

struct queue_node {
	struct daemon_tls tls;   /* both NULL without node TLS */
	queue_store *store;
	queue_repl *repl;
	store_client *store_client;
	queue_delivery *delivery;
	queue_service *service;
	dns_resolver *dns;
	outbound *outbound;
	queue_config *config;
	queue_dkim *dkim;
};

/* Offsets are within struct queue_node_settings. */
#define QUEUE(field) offsetof(struct queue_node_settings, field)

static const struct daemon_option queue_options[] = {
	{ .name = "etcd", .kind = DAEMON_OPTION_STRING, .offset = QUEUE(node.daemon.etcd),
	  .value_name = "URL", .required = 1, .help = "etcd client URL" },
	{ .name = "retry-initial-ms", .kind = DAEMON_OPTION_UINT,
	  .offset = QUEUE(sched.retry_initial_ms), .value_name = "MS", .min = 1,
	  .max = QUEUE_SCHED_RETRY_INITIAL_MS_MAX, .def = QUEUE_SCHED_RETRY_INITIAL_MS_DEFAULT,
	  .help = "delay after a failed delivery; doubles each time" },
	{ .name = "retry-max-ms", .kind = DAEMON_OPTION_UINT, .offset = QUEUE(sched.retry_max_ms),
	  .value_name = "MS", .min = 1, .max = QUEUE_SCHED_RETRY_MAX_MS_MAX,
	  .def = QUEUE_SCHED_RETRY_MAX_MS_DEFAULT,
	  .help = "cap of that delay (>= --retry-initial-ms)" },
	{ .name = "max-inflight", .kind = DAEMON_OPTION_UINT, .offset = QUEUE(sched.max_inflight),
	  .value_name = "N", .min = 1, .max = QUEUE_SCHED_MAX_INFLIGHT_MAX,
	  .def = QUEUE_SCHED_MAX_INFLIGHT_DEFAULT,
	  .help = "delivery attempts running at once" },
	{ .name = "smtp-out-port", .kind = DAEMON_OPTION_UINT, .offset = QUEUE(smtp_out_port),
	  .value_name = "N", .min = 1, .max = 65535, .def = 25, .env = "MAIL_SMTP_OUT_PORT",
	  .help = "port of remote MXs for outbound mail (tests: a local one)" },
	{ .name = "hostname", .kind = DAEMON_OPTION_STRING, .offset = QUEUE(hostname),
	  .value_name = "NAME", .def_text = "localhost",
	  .help = "our name in EHLO and in delivery reports" },
	{ .name = "retry-schedule", .kind = DAEMON_OPTION_STRING, .offset = QUEUE(retry_schedule),
	  .value_name = "S,S,...", .def_text = QUEUE_RETRY_SCHEDULE_DEFAULT,
	  .help = "seconds before each retry of remote mail; the last repeats" },
	{ .name = "expiry", .kind = DAEMON_OPTION_UINT, .offset = QUEUE(expiry_s),
	  .value_name = "S", .min = 1, .max = 30u * 86400u, .def = QUEUE_EXPIRY_S_DEFAULT,
	  .help = "seconds after which undeliverable mail bounces" },
	{ .name = "delay-warning", .kind = DAEMON_OPTION_UINT, .offset = QUEUE(delay_warning_s),
	  .value_name = "S", .min = 0, .max = 30u * 86400u, .def = QUEUE_DELAY_WARNING_S_DEFAULT,
	  .help = "seconds before the one \"delayed\" DSN of tenants that want it (0: never)" },
	{ .name = "smtp-out-timeout", .kind = DAEMON_OPTION_UINT, .offset = QUEUE(out_timeout_s),
	  .value_name = "S", .min = 0, .max = 3600, .def = 0,
	  .help = "cap of every outbound SMTP timeout (0: RFC 5321's)" },
	{ .name = "smtp-out-conns", .kind = DAEMON_OPTION_UINT, .offset = QUEUE(out_max_conns),
	  .value_name = "N", .min = 1, .max = OUTBOUND_MAX_CONNS_MAX,
	  .def = OUTBOUND_MAX_CONNS_DEFAULT, .help = "outbound sessions per destination" },
	{ .name = "config-refresh-ms", .kind = DAEMON_OPTION_UINT,
	  .offset = QUEUE(config_refresh_ms), .value_name = "MS",
	  .min = QUEUE_CONFIG_REFRESH_MS_MIN, .max = QUEUE_CONFIG_REFRESH_MS_MAX,
	  .def = QUEUE_CONFIG_REFRESH_MS_DEFAULT,
	  .help = "how often relays, transports and DKIM keys are read from etcd" },
	{ .name = NULL },
};

static const struct daemon_option_default queue_node_defaults[] = {
	{ .name = "log-keep", .def = QUEUE_LOG_KEEP_DEFAULT },
	{ .name = "log-keep-mib", .def = QUEUE_LOG_KEEP_MIB_DEFAULT },
	{ .name = NULL },
};

/* The rows bound each value; this checks them together. */
static int queue_check(const void *settings, const char **error_r)
{
	const struct queue_node_settings *set = settings;
	if (daemon_node_check(&set->node, error_r) < 0)
		return -1;
	uint32_t retry[32];
	if (queue_retry_schedule_parse(set->retry_schedule, retry, 32) < 0) {
		*error_r = "--retry-schedule: 1..32 comma-separated seconds, each 1..86400";
		return -1;
	}
	return queue_sched_settings_check(&set->sched, error_r);
}

static void queue_metrics_cb(buf *out, const char *labels, void *arg)
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
	queue_delivery_metrics(node->delivery, out, labels);
	if (node->repl != NULL)
		queue_repl_metrics(node->repl, out, labels);
}

/* outbound_route_fn on the cached settings (ctx: the queue_config). */
static int queue_route(void *arg, const char *sender_domain, const char *rcpt_domain,
		       struct outbound_route *r)
{
	struct queue_route qr;
	int ret = queue_config_route(arg, sender_domain, rcpt_domain, &qr);
	if (ret != 1)
		return ret; /* 0: the MX; -1: not loaded yet (defer, never guess) */
	r->url = qr.url;
	snprintf(r->user, sizeof r->user, "%s", qr.user);
	snprintf(r->password, sizeof r->password, "%s", qr.password);
	r->rule = qr.rule;
	queue_route_clear(&qr);
	return 1;
}

/* outbound_policy_fn on the cached settings. */
static int queue_tls_policy(void *arg, const char *rcpt_domain)
{
	return queue_config_tls_policy(arg, rcpt_domain);
}

/* Remote delivery: a resolver (--dns), the SMTP sessions, the schedule;
 * the relays, transports and DKIM keys of etcd, and the signer. */
static int queue_outbound_start(struct queue_node *node, const struct queue_node_settings *set,
				const etcd_conf *etcd, uv_loop_t *loop, const char **error_r)
{
	struct queue_config_settings cs = { set->config_refresh_ms };
	if (queue_config_create(loop, etcd, &cs, &node->config) < 0) {
		*error_r = "cannot start the etcd settings cache";
		return -1;
	}
	if (queue_dkim_create(NULL, &node->dkim, error_r) != 0)
		return -1;
	queue_service_set_dkim(node->service, node->dkim, node->config);
	/* MX answers kept a minute (docs/dns.md "The answer cache"): the
	 * outbound queue asks the same domains for message after message */
	struct dns_settings ds = { .server = set->node.daemon.dns.text,
				   .mx_cache_ms = QUEUE_MX_CACHE_MS };
	if (dns_resolver_create(loop, &ds, &node->dns, error_r) < 0)
		return -1;
	struct outbound_settings os;
	outbound_settings_default(&os);
	os.helo_name = set->hostname;
	os.mx_port = set->smtp_out_port;
	os.max_conns = set->out_max_conns;
	if (set->out_timeout_s > 0) {
		unsigned ms = set->out_timeout_s * 1000;
		os.timeouts = (struct smtpc_timeouts){ ms, ms, ms, ms, ms, ms, ms, ms, ms, ms };
	}
	if (outbound_create(loop, &os, node->dns, queue_route, queue_tls_policy, node->config,
			    &node->outbound, error_r) < 0)
		return -1;
	uint32_t retry[32];
	int n = queue_retry_schedule_parse(set->retry_schedule, retry, 32);
	struct queue_outbound_settings qo = { retry, (size_t)n, set->expiry_s, set->hostname,
					      set->delay_warning_s };
	queue_delivery_set_outbound(node->delivery, node->outbound, &qo);
	return 0;
}

static int queue_start(struct daemon *d, const void *settings, void *ctx)
{
	const struct queue_node_settings *set = settings;
	struct queue_node *node = ctx;
	uv_loop_t *loop = daemon_loop(d);
	const char *error;
	int port;
	if (daemon_tls_init(&set->node.tls, 1, &node->tls, &error) < 0)
		return daemon_start_failed(d, "node_tls", error);
	if (queue_store_open(set->node.data, &node->store, &error) < 0)
		return daemon_start_failed(d, "queue_store", error);
	/* The service listens first (its port goes into the ring); it refuses
	 * requests until the delivery side is set below. Its message limits
	 * are the defaults (no options); the RPC server's are the node's. */
	struct queue_service_settings service;
	queue_service_settings_default(&service);
	queue_service_create(loop, &service, node->store, NULL, &node->service);
	daemon_node_rpc_setup(&set->node, queue_service_server(node->service), node->tls.server);
	if (queue_service_listen(node->service, set->node.listen.host, set->node.listen.port, &port,
				 &error) < 0)
		return daemon_start_failed(d, "listen", error);
	struct repl_host_settings hs;
	char *repl_dir;
	daemon_node_repl_settings(&set->node, ROUTER_ROLE_QUEUE, port, daemon_etcd_conf(d),
				  daemon_etcd_stats(d), node->tls.client, &hs, &repl_dir);
	int r = queue_repl_start(loop, queue_service_server(node->service), &hs, node->store,
				 &node->repl, &error);
	free(repl_dir);
	if (r < 0)
		return daemon_start_failed(d, "replication", error);
	node->store_client = store_client_create(loop, queue_repl_router(node->repl));
	if (node->tls.client != NULL)
		store_client_set_tls(node->store_client, node->tls.client);
	node->delivery = queue_delivery_create(loop, &set->sched, node->store, node->store_client,
					       queue_repl_journal(), node->repl);
	queue_repl_set_delivery(node->repl, node->delivery);
	if (queue_outbound_start(node, set, daemon_etcd_conf(d), loop, &error) < 0)
		return daemon_start_failed(d, "outbound", error);
	queue_service_set_repl(node->service, node->repl, node->delivery);
	queue_service_set_admin(node->service, set->node.daemon.id);
	daemon_add_collector(d, queue_metrics_cb, node);
	if (node->tls.server == NULL)
		log_event(LOG_WARN, LOG_SVC, "event=no_node_tls mode=development "
			  "note=\"plaintext RPC, loopback only\"");
	log_event(LOG_INFO, LOG_SVC, "event=ready id=%s listen=%s:%d data=%s pending=%zu "
		  "node_tls=%s", set->node.daemon.id, set->node.listen.host, port, set->node.data,
		  queue_delivery_pending(node->delivery), node->tls.server != NULL ? "on" : "off");
	return 0;
}

/* Leave membership, stop taking requests, drop deliveries in flight; the
 * loop then runs dry. The order is the one delivery.h and repl-host.h ask
 * for. */
static void queue_stop(void *ctx)
{
	struct queue_node *node = ctx;
	queue_repl_stop(node->repl);
	if (node->delivery != NULL)
		queue_delivery_stop(node->delivery);
	/* before the service: signing jobs read request bodies it owns */
	queue_dkim_destroy(&node->dkim);
	queue_service_destroy(&node->service);
	queue_repl_destroy(&node->repl);
	store_client_destroy(&node->store_client);
	queue_delivery_destroy(&node->delivery);
	outbound_destroy(&node->outbound);
	dns_resolver_destroy(&node->dns);
	queue_config_destroy(&node->config);
}

static void queue_deinit(void *ctx)
{
	struct queue_node *node = ctx;
	queue_store_close(&node->store);
	daemon_tls_deinit(&node->tls);
}

static const struct daemon_option_group queue_option_groups[] = {
	{ .rows = daemon_node_options, .offset = QUEUE(node), .defaults = queue_node_defaults },
	{ .rows = daemon_tls_options, .offset = QUEUE(node.tls) },
	{ .rows = queue_options },
	{ .rows = NULL },
};

static const struct daemon_def queue_daemon = {
	.name = "queue-node",
	.svc = LOG_SVC,
	.summary = "The queue node: the durable mail queue. Its partitions of the queue ring,\n"
		   "replicated; the partitions it leads deliver to the store tier.",
	.settings_size = sizeof(struct queue_node_settings),
	.ctx_size = sizeof(struct queue_node),
	.options = queue_option_groups,
	.check = queue_check,
	.start = queue_start,
	.stop = queue_stop,
	.deinit = queue_deinit,
};

int main(int argc, char **argv)
{
	/* libuv's pool runs etcd reads (up to 3 s each), DKIM signing and the
	 * settings refresh: more than its default 4 threads */
	setenv("UV_THREADPOOL_SIZE", "8", 0);
	return daemon_main(&queue_daemon, argc, argv);
}
