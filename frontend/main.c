/* main.c: the frontend daemon on the skeleton (lib/daemon-main.h). It
 * reaches etcd (directory and router), starts the SMTP MX and IMAP services
 * on the queue and store clients. SIGTERM or SIGINT stops the listeners and
 * closes the sessions (an SMTP command waiting on the queue or the
 * directory gets its answer first); the calls still in flight to the queue
 * and store tiers get FRONTEND_DRAIN_MS, then the process exits 0. Holds no
 * state that matters: kill it and clients reconnect. */
#include "daemon-main.h"
#include "directory.h"
#include "imap-service.h"
#include "log.h"
#include "queue-client.h"
#include "router.h"
#include "smtp-mx.h"
#include "store-client.h"

#define LOG_SVC "frontend"
/* After SIGTERM, calls in flight to the queue and store tiers get this
 * long to finish (an SMTP DATA waiting on the queue's commit, say); then
 * they fail and the frontend exits. Within the 10 s an operator's stop
 * waits before SIGKILL. */
#define FRONTEND_DRAIN_MS 8000

struct frontend_settings {
	struct daemon_settings daemon; /* first (lib/daemon-main.h) */
	struct daemon_listen smtp;     /* the SMTP MX listener */
	struct daemon_listen imap;     /* the IMAP listener */
	const char *hostname;          /* SMTP greeting name */
};

struct frontend {
	directory *dir;
	router *router;
	queue_client *queue;
	store_client *store;
	smtp_mx *mx;
	imap_service *imap;
};

/* Offsets are within struct frontend_settings. */
#define FRONTEND(field) offsetof(struct frontend_settings, field)

static const struct daemon_option frontend_options[] = {
	{ .name = "id", .kind = DAEMON_OPTION_STRING, .offset = FRONTEND(daemon.id),
	  .value_name = "ID", .def_text = "frontend-1",
	  .help = "name in the logs and metrics" },
	{ .name = "etcd", .kind = DAEMON_OPTION_STRING, .offset = FRONTEND(daemon.etcd),
	  .value_name = "URL", .def_text = "http://127.0.0.1:23790",
	  .help = "etcd client URL (directory and rings)" },
	{ .name = "smtp", .kind = DAEMON_OPTION_LISTEN, .offset = FRONTEND(smtp),
	  .value_name = "HOST:PORT", .def_text = "127.0.0.1:2525", .help = "SMTP MX listener" },
	{ .name = "imap", .kind = DAEMON_OPTION_LISTEN, .offset = FRONTEND(imap),
	  .value_name = "HOST:PORT", .def_text = "127.0.0.1:2143", .help = "IMAP listener" },
	{ .name = "hostname", .kind = DAEMON_OPTION_STRING, .offset = FRONTEND(hostname),
	  .value_name = "NAME", .def_text = "localhost", .help = "name in the SMTP greeting" },
	{ .name = NULL },
};

static int frontend_start(struct daemon *d, const void *settings, void *ctx)
{
	const struct frontend_settings *set = settings;
	struct frontend *fe = ctx;
	uv_loop_t *loop = daemon_loop(d);
	const char *error = NULL;
	fe->dir = directory_create(set->daemon.etcd);
	directory_set_etcd_stats(fe->dir, daemon_etcd_stats(d));
	if (router_create(set->daemon.etcd, &fe->router, &error) < 0)
		return daemon_start_failed(d, "router", error);
	fe->queue = queue_client_create(loop, fe->router);
	fe->store = store_client_create(loop, fe->router);

	struct smtp_mx_settings mx;
	smtp_mx_settings_init_default(&mx);
	mx.server.host = set->smtp.host;
	mx.server.port = set->smtp.port;
	mx.server.hostname = set->hostname;
	if (smtp_mx_start(loop, &mx, fe->dir, fe->queue, &fe->mx, &error) < 0)
		return daemon_start_failed(d, "smtp", error);

	struct imap_settings imap;
	imap_settings_init(&imap);
	imap.listen_host = set->imap.host;
	imap.listen_port = set->imap.port;
	/* Loopback development mode: TLS does not exist yet (docs/architecture.md). */
	imap.allow_plaintext_login = 1;
	if (imap_service_start(loop, &imap, fe->dir, fe->store, &fe->imap, &error) < 0)
		return daemon_start_failed(d, "imap", error);
	log_event(LOG_INFO, LOG_SVC, "event=ready id=%s smtp=%s imap=%s", set->daemon.id,
		  set->smtp.text, set->imap.text);
	return 0;
}

/* The sessions close; the calls they started drain (frontend_pending). */
static void frontend_stop(void *ctx)
{
	struct frontend *fe = ctx;
	if (fe->mx != NULL)
		smtp_mx_stop(&fe->mx);
	if (fe->imap != NULL)
		imap_service_stop(&fe->imap);
}

static size_t frontend_pending(void *ctx)
{
	struct frontend *fe = ctx;
	return (fe->queue != NULL ? queue_client_pending(fe->queue) : 0) +
	       (fe->store != NULL ? store_client_pending(fe->store) : 0);
}

/* The clients' connections were the last handles keeping the loop running. */
static void frontend_drained(void *ctx)
{
	struct frontend *fe = ctx;
	queue_client_destroy(&fe->queue);
	store_client_destroy(&fe->store);
}

static void frontend_deinit(void *ctx)
{
	struct frontend *fe = ctx;
	if (fe->router != NULL)
		router_destroy(&fe->router);
	if (fe->dir != NULL)
		directory_destroy(&fe->dir);
}

static const struct daemon_option_group frontend_option_groups[] = {
	{ .rows = frontend_options },
	{ .rows = NULL },
};

static const struct daemon_def frontend_daemon = {
	.name = "frontend",
	.svc = LOG_SVC,
	.summary = "The frontend: SMTP (MX) and IMAP for every tenant, over the queue and\n"
		   "store tiers. Stateless.",
	.settings_size = sizeof(struct frontend_settings),
	.ctx_size = sizeof(struct frontend),
	.options = frontend_option_groups,
	.start = frontend_start,
	.stop = frontend_stop,
	.pending = frontend_pending,
	.drained = frontend_drained,
	.drain_ms = FRONTEND_DRAIN_MS,
	.deinit = frontend_deinit,
};

int main(int argc, char **argv)
{
	return daemon_main(&frontend_daemon, argc, argv);
}
