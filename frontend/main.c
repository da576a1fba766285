/* main.c: the frontend daemon. Parses options, connects to etcd (directory
 * and router), starts the SMTP MX and IMAP services, runs the loop. SIGTERM
 * or SIGINT stops the listeners and closes the sessions (an SMTP command
 * waiting on the queue or the directory gets its answer first), waits for
 * the calls still in flight to the queue and store tiers (at most
 * FRONTEND_DRAIN_MS), then exits 0. Holds no state that matters: kill it
 * and clients reconnect. */
#include "daemon-options.h"
#include "daemon.h"
#include "directory.h"
#include "etcd-monitor.h"
#include "imap-service.h"
#include "log.h"
#include "queue-client.h"
#include "router.h"
#include "smtp-mx.h"
#include "store-client.h"
#include "util.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#define LOG_SVC "frontend"
/* After SIGTERM, calls in flight to the queue and store tiers get this
 * long to finish (an SMTP DATA waiting on the queue's commit, say); then
 * they fail and the frontend exits. Within the 10 s an operator's stop
 * waits before SIGKILL. */
#define FRONTEND_DRAIN_MS 8000
#define FRONTEND_DRAIN_POLL_MS 20

struct frontend_settings {
	const char *id;
	const char *etcd;
	const char *smtp;     /* HOST:PORT of the MX listener, NULL = off */
	const char *imap;     /* HOST:PORT of the IMAP listener, NULL = off */
	const char *hostname; /* SMTP greeting name */
	const char *metrics;  /* HOST:PORT of /metrics, NULL = off */
	uint64_t etcd_quota;  /* etcd's --quota-backend-bytes, for the warning */
};

struct frontend {
	uv_loop_t loop;
	directory *dir;
	router *router;
	queue_client *queue;
	store_client *store;
	smtp_mx *mx;
	imap_service *imap;
	metrics *metrics;
	etcd_stats etcd_stats;     /* this process's etcd writes */
	etcd_monitor *etcd_monitor;
	struct daemon_signals signals;
	uv_timer_t drain;          /* after stop: waits for calls in flight */
	uint64_t drain_deadline;   /* monotonic ms */
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: frontend --id ID --etcd URL [--smtp HOST:PORT] [--imap HOST:PORT]\n"
		"                [--hostname NAME]\n"
		"  --smtp      SMTP MX listener (default 127.0.0.1:2525)\n"
		"  --imap      IMAP listener (default 127.0.0.1:2143)\n"
		"  --hostname  name in the SMTP greeting (default localhost)\n"
		"  --metrics   HOST:PORT serving Prometheus /metrics (default: off)\n"
		"  --etcd-quota-bytes N  etcd's --quota-backend-bytes: warn at 80%% of it\n"
		"              (default 2147483648, etcd's default)\n");
}

static int settings_parse(int argc, char **argv, struct frontend_settings *set)
{
	static const struct option opts[] = {
		{ "id", required_argument, NULL, 'i' },
		{ "etcd", required_argument, NULL, 'e' },
		{ "smtp", required_argument, NULL, 's' },
		{ "imap", required_argument, NULL, 'm' },
		{ "hostname", required_argument, NULL, 'n' },
		{ "metrics", required_argument, NULL, 'M' },
		{ "etcd-quota-bytes", required_argument, NULL, 'Q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	*set = (struct frontend_settings){ .id = "frontend-1",
					   .etcd = "http://127.0.0.1:23790",
					   .smtp = "127.0.0.1:2525",
					   .imap = "127.0.0.1:2143",
					   .hostname = "localhost",
					   .etcd_quota = ETCD_MONITOR_DEFAULT_QUOTA };
	int c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'i': set->id = optarg; break;
		case 'e': set->etcd = optarg; break;
		case 's': set->smtp = optarg; break;
		case 'm': set->imap = optarg; break;
		case 'n': set->hostname = optarg; break;
		case 'M': set->metrics = optarg; break;
		case 'Q':
			if (daemon_options_parse_u64(optarg, 1, UINT64_MAX / 100, &set->etcd_quota) < 0)
				return -1;
			break;
		case 'h': usage(stdout); exit(0);
		default: return -1;
		}
	}
	return optind == argc ? 0 : -1;
}

/* The drain: once no call to the queue or store tier is in flight (or at
 * the deadline, failing those that are), the clients go; their connections
 * were the last handles keeping the loop running. */
static void frontend_drain_cb(uv_timer_t *t)
{
	struct frontend *fe = t->data;
	size_t pending = (fe->queue != NULL ? queue_client_pending(fe->queue) : 0) +
			 (fe->store != NULL ? store_client_pending(fe->store) : 0);
	if (pending > 0 && util_now_mono_ms() < fe->drain_deadline)
		return;
	log_event(pending > 0 ? LOG_WARN : LOG_INFO, LOG_SVC, "event=drained calls_failed=%zu",
		  pending);
	uv_close((uv_handle_t *)t, NULL);
	queue_client_destroy(&fe->queue);
	store_client_destroy(&fe->store);
}

static void frontend_stop_cb(void *arg)
{
	struct frontend *fe = arg;
	log_event(LOG_INFO, LOG_SVC, "event=stopping");
	if (fe->mx != NULL)
		smtp_mx_stop(&fe->mx);
	if (fe->imap != NULL)
		imap_service_stop(&fe->imap);
	metrics_destroy(&fe->metrics);
	etcd_monitor_destroy(&fe->etcd_monitor);
	daemon_signals_deinit(&fe->signals);
	fe->drain_deadline = util_now_mono_ms() + FRONTEND_DRAIN_MS;
	uv_timer_init(&fe->loop, &fe->drain);
	fe->drain.data = fe;
	uv_timer_start(&fe->drain, frontend_drain_cb, 0, FRONTEND_DRAIN_POLL_MS);
}

static int frontend_start(struct frontend *fe, const struct frontend_settings *set,
			  char *hosts[2])
{
	const char *error = NULL;
	int port;
	fe->dir = directory_create(set->etcd);
	directory_set_etcd_stats(fe->dir, &fe->etcd_stats);
	etcd_monitor_settings es = { .etcd_url = set->etcd, .quota_bytes = set->etcd_quota,
				     .stats = &fe->etcd_stats };
	fe->etcd_monitor = etcd_monitor_start(&fe->loop, &es);
	if (router_create(set->etcd, &fe->router, &error) < 0) {
		log_event(LOG_ERROR, LOG_SVC, "event=start_failed what=router error=\"%s\"", error);
		return -1;
	}
	fe->queue = queue_client_create(&fe->loop, fe->router);
	fe->store = store_client_create(&fe->loop, fe->router);

	struct smtp_mx_settings mx;
	smtp_mx_settings_init_default(&mx);
	if (daemon_options_parse_listen(set->smtp, &hosts[0], &port, &error) < 0)
		goto bad_listen;
	mx.server.host = hosts[0];
	mx.server.port = port;
	mx.server.hostname = set->hostname;
	if (smtp_mx_start(&fe->loop, &mx, fe->dir, fe->queue, &fe->mx, &error) < 0) {
		log_event(LOG_ERROR, LOG_SVC, "event=start_failed what=smtp error=\"%s\"", error);
		return -1;
	}

	struct imap_settings imap;
	imap_settings_init(&imap);
	if (daemon_options_parse_listen(set->imap, &hosts[1], &port, &error) < 0)
		goto bad_listen;
	imap.listen_host = hosts[1];
	imap.listen_port = port;
	/* Loopback development mode: TLS does not exist yet (docs/architecture.md). */
	imap.allow_plaintext_login = 1;
	if (imap_service_start(&fe->loop, &imap, fe->dir, fe->store, &fe->imap, &error) < 0) {
		log_event(LOG_ERROR, LOG_SVC, "event=start_failed what=imap error=\"%s\"", error);
		return -1;
	}
	if (set->metrics != NULL &&
	    daemon_metrics_start(&fe->loop, LOG_SVC, set->id, set->metrics, &fe->metrics,
				 &error) < 0) {
		log_event(LOG_ERROR, LOG_SVC, "event=start_failed what=metrics error=\"%s\"",
			  error);
		return -1;
	}
	if (fe->metrics != NULL)
		metrics_add_collector(fe->metrics, etcd_monitor_collect, fe->etcd_monitor);
	return 0;
bad_listen:
	log_event(LOG_ERROR, LOG_SVC, "event=start_failed what=listen error=\"%s\"", error);
	return -1;
}

int main(int argc, char **argv)
{
	struct frontend_settings set;
	if (settings_parse(argc, argv, &set) < 0) {
		usage(stderr);
		return 2;
	}
	struct frontend fe = { 0 };
	char *hosts[2] = { NULL, NULL };
	uv_loop_init(&fe.loop);
	daemon_signals_init(&fe.loop, &fe.signals, frontend_stop_cb, &fe);
	int ret = 0;
	if (frontend_start(&fe, &set, hosts) < 0) {
		frontend_stop_cb(&fe);
		ret = 1;
	} else {
		log_event(LOG_INFO, LOG_SVC, "event=ready id=%s smtp=%s imap=%s", set.id, set.smtp,
			  set.imap);
	}
	/* Runs until the drain has destroyed the clients and every session
	 * has closed (frontend_stop_cb). */
	daemon_loop_finish(&fe.loop);
	if (fe.router != NULL)
		router_destroy(&fe.router);
	if (fe.dir != NULL)
		directory_destroy(&fe.dir);
	free(hosts[0]);
	free(hosts[1]);
	log_event(LOG_INFO, LOG_SVC, "event=stopped id=%s", set.id);
	return ret;
}
