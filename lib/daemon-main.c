/* daemon-main.c: daemon-main.h. The struct daemon, the settings and the
 * daemon's context are on the heap for the whole run (the etcd monitor's
 * and the daemon's thread-pool jobs count writes in etcd_stats until the
 * loop's last run). */
#include "daemon-main.h"

#include "daemon.h"
#include "etcd-monitor.h"
#include "log.h"
#include "util.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

struct daemon {
	uv_loop_t loop;
	const struct daemon_def *def;
	const struct daemon_settings *set;
	void *ctx;
	metrics *metrics;
	etcd_stats etcd_stats;
	etcd_conf etcd;            /* url NULL: no --etcd */
	char *etcd_password;       /* from --etcd-password-file; wiped at exit */
	etcd_tokens *etcd_tokens;  /* shared by every etcd client of the daemon */
	etcd_monitor *etcd_monitor;
	struct daemon_signals signals;
	uv_timer_t drain;          /* after stop, while def->pending() > 0 */
	uint64_t drain_deadline;   /* monotonic ms */
};

const struct daemon_option daemon_options[] = {
	{ .name = "metrics", .kind = DAEMON_OPTION_LISTEN,
	  .offset = offsetof(struct daemon_settings, metrics), .value_name = "HOST:PORT",
	  .help = "Prometheus /metrics address (off when not given)" },
	{ .name = "etcd-quota-bytes", .kind = DAEMON_OPTION_U64,
	  .offset = offsetof(struct daemon_settings, etcd_quota), .value_name = "N",
	  .min = 1, .max = UINT64_MAX / 100, .def = ETCD_MONITOR_DEFAULT_QUOTA,
	  .help = "etcd's --quota-backend-bytes: warn at 80% of it" },
	{ .name = "etcd-ca", .kind = DAEMON_OPTION_STRING,
	  .offset = offsetof(struct daemon_settings, etcd_ca), .value_name = "FILE",
	  .help = "CA of etcd's server certificate (PEM; https URLs)" },
	{ .name = "etcd-cert", .kind = DAEMON_OPTION_STRING,
	  .offset = offsetof(struct daemon_settings, etcd_cert), .value_name = "FILE",
	  .help = "client certificate for etcd (PEM, no CN), with --etcd-key" },
	{ .name = "etcd-key", .kind = DAEMON_OPTION_STRING,
	  .offset = offsetof(struct daemon_settings, etcd_key), .value_name = "FILE",
	  .help = "its private key (PEM)" },
	{ .name = "etcd-user", .kind = DAEMON_OPTION_STRING,
	  .offset = offsetof(struct daemon_settings, etcd_user), .value_name = "NAME",
	  .help = "etcd user (with --etcd-password-file); none: no etcd auth" },
	{ .name = "etcd-password-file", .kind = DAEMON_OPTION_STRING,
	  .offset = offsetof(struct daemon_settings, etcd_password_file), .value_name = "FILE",
	  .help = "file whose first line is the etcd user's password (not o+r)" },
	{ .name = "dns", .kind = DAEMON_OPTION_ADDRESS,
	  .offset = offsetof(struct daemon_settings, dns), .value_name = "IP:PORT",
	  .env = "MAIL_DNS",
	  .help = "DNS server of every lookup ([V6]:PORT too); none: /etc/resolv.conf" },
	{ .name = NULL },
};

int daemon_start_failed(struct daemon *d, const char *step, const char *reason)
{
	char quoted[512];
	log_event(LOG_ERROR, d->def->svc, "event=start_failed step=%s reason=%s", step,
		  log_quote(quoted, sizeof quoted, reason, strlen(reason)));
	return -1;
}

uv_loop_t *daemon_loop(struct daemon *d)
{
	return &d->loop;
}

etcd_stats *daemon_etcd_stats(struct daemon *d)
{
	return &d->etcd_stats;
}

const etcd_conf *daemon_etcd_conf(struct daemon *d)
{
	return d->etcd.url != NULL ? &d->etcd : NULL;
}

/* The etcd options that go in pairs. Returns 0, or -1 with *error_r. */
static int daemon__check_etcd(const struct daemon_settings *set, const char **error_r)
{
	if ((set->etcd_cert == NULL) != (set->etcd_key == NULL)) {
		*error_r = "--etcd-cert and --etcd-key go together";
		return -1;
	}
	if ((set->etcd_user == NULL) != (set->etcd_password_file == NULL)) {
		*error_r = "--etcd-user and --etcd-password-file go together";
		return -1;
	}
	return 0;
}

/* d->etcd from the settings: the files are only named here (the clients
 * open them), the password is read now. Returns 0, or -1 with one line in
 * error (naming the file). */
static int daemon__etcd_conf(struct daemon *d, char *error, size_t size)
{
	const struct daemon_settings *set = d->set;
	const char *why;
	if (set->etcd == NULL)
		return 0;
	if (set->etcd_user != NULL &&
	    etcd_conf_read_password(set->etcd_password_file, &d->etcd_password, &why) < 0) {
		snprintf(error, size, "--etcd-password-file %s: %s", set->etcd_password_file, why);
		return -1;
	}
	d->etcd_tokens = etcd_tokens_create();
	d->etcd = (etcd_conf){
		.url = set->etcd, .ca_file = set->etcd_ca, .cert_file = set->etcd_cert,
		.key_file = set->etcd_key, .user = set->etcd_user,
		.password = d->etcd_password, .tokens = d->etcd_tokens,
	};
	return 0;
}

void daemon_add_collector(struct daemon *d, metrics_collect_fn *fn, void *arg)
{
	if (d->metrics != NULL)
		metrics_add_collector(d->metrics, fn, arg);
}

/* Returns -1 to run the daemon, else the exit status (--help, bad options). */
static int daemon__parse(const struct daemon_def *def, int argc, char **argv, void *settings)
{
	/* the daemon's groups, then daemon_options at offset 0 */
	size_t n = 0;
	while (def->options[n].rows != NULL)
		n++;
	struct daemon_option_group *groups = xcalloc(n + 2, sizeof *groups);
	memcpy(groups, def->options, n * sizeof *groups);
	groups[n].rows = daemon_options;
	char error[DAEMON_OPTIONS_ERROR_MAX];
	const char *why = error;
	int r = daemon_options_parse_env(groups, settings, argc, argv, environ, error);
	if (r == 1)
		daemon_options_usage(stdout, def->name, def->summary, groups);
	else if (r == 0)
		r = daemon__check_etcd(settings, &why);
	if (r == 0 && def->check != NULL)
		r = def->check(settings, &why);
	free(groups);
	if (r < 0)
		fprintf(stderr, "%s: %s (see %s --help)\n", def->name, why, def->name);
	return r < 0 ? 2 : r == 1 ? 0 : -1;
}

static void daemon__drain_cb(uv_timer_t *t)
{
	struct daemon *d = t->data;
	size_t pending = d->def->pending(d->ctx);
	if (pending > 0 && util_now_mono_ms() < d->drain_deadline)
		return;
	log_event(pending > 0 ? LOG_WARN : LOG_INFO, d->def->svc, "event=drained calls_failed=%zu",
		  pending);
	uv_close((uv_handle_t *)t, NULL);
	d->def->drained(d->ctx);
}

/* The daemon's stop first (it leaves the ring at once), then the
 * skeleton's handles; the drain, if any, keeps the loop until it ends. */
static void daemon__stop_cb(void *arg)
{
	struct daemon *d = arg;
	d->def->stop(d->ctx);
	metrics_destroy(&d->metrics);
	etcd_monitor_destroy(&d->etcd_monitor);
	daemon_signals_deinit(&d->signals);
	if (d->def->pending == NULL)
		return;
	d->drain_deadline = util_now_mono_ms() + d->def->drain_ms;
	uv_timer_init(&d->loop, &d->drain);
	d->drain.data = d;
	uv_timer_start(&d->drain, daemon__drain_cb, 0, DAEMON_DRAIN_POLL_MS);
}

static int daemon__start(struct daemon *d, const void *settings)
{
	const struct daemon_settings *set = d->set;
	const char *error;
	char why[512];
	if (daemon__etcd_conf(d, why, sizeof why) < 0)
		return daemon_start_failed(d, "etcd", why);
	if (set->etcd != NULL) {
		etcd_monitor_settings es = { .etcd = &d->etcd, .quota_bytes = set->etcd_quota,
					     .stats = &d->etcd_stats };
		d->etcd_monitor = etcd_monitor_start(&d->loop, &es);
	}
	if (set->metrics.text != NULL &&
	    daemon_metrics_start(&d->loop, d->def->svc, set->id, &set->metrics, &d->metrics,
				 &error) < 0)
		return daemon_start_failed(d, "metrics", error);
	if (d->etcd_monitor != NULL)
		daemon_add_collector(d, etcd_monitor_collect, d->etcd_monitor);
	return d->def->start(d, settings, d->ctx);
}

/* Open files up to the hard limit: a frontend holds one descriptor per
 * connection (10,000 IMAP IDLE sessions are a normal day) and the usual
 * soft limit, 1024, would refuse most of them at accept(). */
static void daemon__raise_nofile(const char *svc)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max)
		return;
	rlim_t was = rl.rlim_cur;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
		log_event(LOG_INFO, svc, "event=nofile_raised from=%llu to=%llu",
			  (unsigned long long)was, (unsigned long long)rl.rlim_cur);
}

int daemon_main(const struct daemon_def *def, int argc, char **argv)
{
	void *settings = xcalloc(1, def->settings_size);
	int ret = daemon__parse(def, argc, argv, settings);
	if (ret >= 0) {
		free(settings);
		return ret;
	}
	struct daemon *d = xcalloc(1, sizeof *d);
	d->def = def;
	d->set = settings;
	d->ctx = xcalloc(1, def->ctx_size);
	log_event(LOG_INFO, def->svc, "event=starting id=%s pid=%ld", d->set->id, (long)getpid());
	daemon__raise_nofile(def->svc);
	uv_loop_init(&d->loop);
	daemon_signals_init(&d->loop, &d->signals, daemon__stop_cb, d);
	ret = 0;
	if (daemon__start(d, settings) < 0) {
		daemon__stop_cb(d);
		ret = 1;
	}
	if (daemon_loop_finish(&d->loop) != 0)
		log_event(LOG_WARN, def->svc, "event=loop_busy_at_exit");
	if (def->deinit != NULL)
		def->deinit(d->ctx);
	/* every etcd client is gone with the loop and the context */
	etcd_tokens_destroy(&d->etcd_tokens);
	if (d->etcd_password != NULL)
		xfree_secret(d->etcd_password, strlen(d->etcd_password));
	log_event(LOG_INFO, def->svc, "event=stopped id=%s status=%d", d->set->id, ret);
	free(d->ctx);
	free(settings);
	free(d);
	return ret;
}
