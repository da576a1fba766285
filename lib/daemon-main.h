/* daemon-main.h: the skeleton every daemon's main() runs (public contract).
 *
 * A daemon describes itself in a const struct daemon_def (its settings
 * and context structs, its option groups, its start and stop) and its
 * main() is one call:
 *
 *	return daemon_main(&store_daemon, argc, argv);
 *
 * daemon_main() then
 *  1. allocates the settings and the context (zeroed), parses argv into
 *     the settings with def->options (daemon-options.h). --help: the usage
 *     on stdout, exit 0. A bad command line: one line on stderr naming the
 *     option and what it accepts, exit 2. def->check, when set, then
 *     judges the settings as a whole, the same way.
 *  2. logs event=starting, makes the loop, catches SIGTERM and SIGINT
 *     (daemon.h), builds the etcd connection settings (daemon_etcd_conf:
 *     --etcd with --etcd-ca, --etcd-cert, --etcd-key, --etcd-user and the
 *     password read from --etcd-password-file), starts the etcd monitor
 *     (when --etcd is set) and the
 *     /metrics endpoint (when --metrics is set: the process and etcd
 *     collectors on it), then calls def->start.
 *     Every daemon resolves DNS through settings.dns (--dns, or the
 *     environment's MAIL_DNS; neither: the nameservers of
 *     /etc/resolv.conf): its .text is what dns_settings.server takes
 *     (lib/dns/dns.h) for every resolver the daemon makes.
 *  3. runs the loop. SIGTERM or SIGINT: def->stop, then the skeleton closes
 *     its own handles; with def->pending, it then waits (at most
 *     def->drain_ms) for the calls still in flight and calls def->drained.
 *     The loop ends when no handle is left.
 *  4. calls def->deinit, logs event=stopped and returns 0.
 * A start that fails (a step of the skeleton's, or def->start returning
 * daemon_start_failed()) logs the one line every daemon writes for it,
 *	svc=<svc> event=start_failed step=<step> reason=<text>
 * then stops as for a signal (def->stop must cope with a start cut short:
 * whatever it did not create is still NULL), finishes the loop, calls
 * def->deinit and returns 1.
 *
 * The daemon's settings struct begins with struct daemon_settings: the
 * skeleton reads it there, and adds daemon_options (after the daemon's
 * own groups) to fill it. Everything runs on the loop thread; nothing here
 * is global.
 */
#ifndef MAIL_DAEMON_MAIN_H
#define MAIL_DAEMON_MAIN_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "daemon-options.h"
#include "etcd.h"
#include "metrics.h"

/* What the skeleton itself uses; the first member of every daemon's
 * settings. id and etcd are each daemon's own rows (their defaults differ:
 * the frontend has some, nodes require --id, a store node may run without
 * etcd); daemon_options fills the rest. */
struct daemon_settings {
	const char *id;               /* --id: the node's name in etcd and the logs */
	const char *etcd;             /* --etcd: client URL; NULL = no etcd */
	struct daemon_listen metrics; /* --metrics: text NULL = no endpoint */
	uint64_t etcd_quota;          /* --etcd-quota-bytes: the monitor's 100% */
	/* etcd's TLS and credentials (docs/security.md, "etcd") */
	const char *etcd_ca;          /* --etcd-ca: CA of etcd's certificate */
	const char *etcd_cert;        /* --etcd-cert: our client certificate */
	const char *etcd_key;         /* --etcd-key: its key */
	const char *etcd_user;        /* --etcd-user: NULL = no authentication */
	const char *etcd_password_file; /* --etcd-password-file (never the
					 * password itself on a command line) */
	struct daemon_listen dns;     /* --dns / MAIL_DNS: IP:PORT of the DNS
				       * server; text NULL = /etc/resolv.conf */
};

/* --metrics, --etcd-quota-bytes, etcd's TLS and credentials and --dns
 * (rows of struct daemon_settings; the skeleton adds them to every
 * daemon's options, and reads the environment for those that name a
 * variable). */
extern const struct daemon_option daemon_options[];

struct daemon;

struct daemon_def {
	const char *name;     /* "store-node": the usage line and option errors */
	const char *svc;      /* "store": svc= of the skeleton's log lines */
	const char *summary;  /* the paragraph under --help's usage line */
	size_t settings_size; /* its settings struct (daemon_settings first) */
	size_t ctx_size;      /* its context: what start creates, stop destroys */
	const struct daemon_option_group *options; /* the daemon's own groups */
	/* Optional: judge the parsed settings as a whole. Returns 0, or -1
	 * with *error_r (static text naming the options): exit 2. */
	int (*check)(const void *settings, const char **error_r);
	/* Start the daemon's services on daemon_loop(d) and log event=ready.
	 * Returns 0, or daemon_start_failed()'s -1. */
	int (*start)(struct daemon *d, const void *settings, void *ctx);
	/* Close listeners, leave the ring, drop what is left to do: after it
	 * the daemon's handles close on their own. Called once: on the first
	 * SIGTERM/SIGINT, or after a failed start. */
	void (*stop)(void *ctx);
	/* Optional (both or neither): the calls still in flight that a stop
	 * waits for, polled every DAEMON_DRAIN_POLL_MS after stop; drained is
	 * called once when none is left or drain_ms have passed (the skeleton
	 * logs how many were still in flight) and must release what keeps the
	 * loop running (the clients, which fail those calls). */
	size_t (*pending)(void *ctx);
	void (*drained)(void *ctx);
	uint32_t drain_ms;
	/* Optional: after the loop has ended (free what the handles used). */
	void (*deinit)(void *ctx);
};

#define DAEMON_DRAIN_POLL_MS 20

/* Run the daemon (above); argv must live until it returns (settings point
 * into it). Returns the exit status: 0, 1 (start failed) or 2 (bad
 * command line). */
int daemon_main(const struct daemon_def *def, int argc, char **argv);

/* For def->start: log the start_failed line with step and reason now.
 * Returns -1, for `return daemon_start_failed(d, "listen", error);`. */
int daemon_start_failed(struct daemon *d, const char *step, const char *reason);

/* The loop every handle of the daemon lives on. */
uv_loop_t *daemon_loop(struct daemon *d);
/* The counter of the process's etcd writes: hand it to every etcd client
 * the daemon makes (valid until daemon_main() returns). */
etcd_stats *daemon_etcd_stats(struct daemon *d);
/* How to reach etcd and as whom (--etcd and the --etcd-* options), for
 * every etcd client the daemon makes: one token is shared by all of them
 * (etcd.h). NULL without --etcd. Valid until daemon_main() returns; the
 * conf itself may be copied (etcd_conf_dup) by whoever needs it longer. */
const etcd_conf *daemon_etcd_conf(struct daemon *d);
/* Add a collector to /metrics; nothing without --metrics. arg is borrowed
 * until def->stop. */
void daemon_add_collector(struct daemon *d, metrics_collect_fn *fn, void *arg);

#endif
