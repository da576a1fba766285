/* mailctl-private.h: shared by mailctl.c, mailctl-conf.c, mailctl-node.c,
 * mailctl-security.c, mailctl-dkim.c, mailctl-relay.c, mailctl-queue.c and
 * mailctl-status.c. */
#ifndef MAIL_MAILCTL_PRIVATE_H
#define MAIL_MAILCTL_PRIVATE_H

#include <stdint.h>
#include <stdio.h>

#include "directory.h"
#include "etcd.h"
#include "node-status.h"
#include "ring.h"
#include "router.h"
#include "store-client.h"
#include "tls.h"

#include <uv.h>

#define MAILCTL_DEFAULT_ETCD "http://127.0.0.1:23790"

enum mailctl_exit {
	MAILCTL_OK = 0,
	MAILCTL_USAGE = 1,
	MAILCTL_NOT_FOUND = 2,
	MAILCTL_EXISTS = 3,
	MAILCTL_UNREACHABLE = 4,
	MAILCTL_OTHER = 5,
};

typedef struct mailctl {
	etcd_conf etcd;     /* where etcd is, as whom (mailctl_conf_load) */
	FILE *err; /* the real stderr (fd 2 may point at /dev/null) */
	directory *dir;
	/* what etcd points into */
	char **owned;       /* values read from the settings file */
	size_t n_owned;
	char *etcd_password;
	etcd_tokens *etcd_tokens;
	/* mutual TLS to the nodes' RPC (mailctl queue): all three, or all NULL
	 * (plaintext: development clusters with node TLS off) */
	const char *node_cert, *node_key, *cluster_ca;
} mailctl;

/* The etcd and node TLS settings given on the command line (NULL: not
 * given), in the order of the options: --etcd, --etcd-ca, --etcd-cert,
 * --etcd-key, --etcd-user, --etcd-password-file, --node-cert, --node-key,
 * --cluster-ca. */
#define MAILCTL_ETCD_OPTS 9
struct mailctl_etcd_opts {
	const char *v[MAILCTL_ETCD_OPTS];
};

/* Set the option called name (without "--") to value (borrowed). Returns
 * 0, or -1 when no etcd or node TLS option has that name. */
int mailctl_conf_option(struct mailctl_etcd_opts *opts, const char *name, const char *value);
/* Fill ctl->etcd from cli, $MAIL_ETCD, the settings file ($MAIL_ETCD_CONF,
 * else ./state/mailctl.conf when present) and the defaults, in that order
 * of precedence (mailctl-conf.c); reads the password file. Returns 0, or
 * -1 after printing one line why. */
int mailctl_conf_load(mailctl *ctl, const struct mailctl_etcd_opts *cli);
/* Free what mailctl_conf_load kept (wipes the password). */
void mailctl_conf_free(mailctl *ctl);

/* Print "mailctl: <message>" on ctl->err. */
void mailctl_fail(mailctl *ctl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Map an enum mail_error to an exit code, printing what went wrong. */
int mailctl_error(mailctl *ctl, int err, const char *what, const char *name);

/* `node ...` and `partitions ...`: argv[0] is "node" or "partitions".
 * Returns an exit code, or -1 for a usage error. */
int mailctl_cluster(mailctl *ctl, int argc, char **argv);
/* `block ...` and `tls ...` (mailctl-security.c): argv[0] is the command.
 * An exit code, or -1 for a usage error. */
int mailctl_security(mailctl *ctl, int argc, char **argv);
/* `dkim ...` (mailctl-dkim.c): argv[0] is "dkim". An exit code, or -1 for
 * a usage error. */
int mailctl_dkim(mailctl *ctl, int argc, char **argv);
/* `dns ...` (mailctl-dns.c): argv[0] is "dns". An exit code, or -1 for
 * usage. */
int mailctl_dns(mailctl *ctl, int argc, char **argv);
/* `relay ...` and `transport ...` (mailctl-relay.c): argv[0] is the
 * command. An exit code, or -1 for a usage error. */
int mailctl_outbound(mailctl *ctl, int argc, char **argv);
/* `queue ...` (mailctl-queue.c): argv[0] is "queue". An exit code, or -1
 * for a usage error. */
int mailctl_queue(mailctl *ctl, int argc, char **argv);
/* The queue in figures, for `mailctl status` (mailctl_queue_depth). */
struct mailctl_queue_depth {
	unsigned nodes, answered;   /* alive queue nodes asked; those that answered */
	uint32_t partitions;        /* queue partitions (0: no node answered) */
	uint32_t unled;             /* of those, led by no node that answered */
	unsigned messages;          /* each once, over the nodes that answered */
	unsigned active, deferred, held;
	uint64_t bytes;
	int64_t oldest_age_ms;      /* 0 when empty */
	char oldest[32];            /* that as `queue stats` prints it ("2h05m"; "-") */
	int truncated;              /* a node had more than it lists: a lower bound */
};
/* Ask every alive queue node for its queue (LIST, as `queue stats` does)
 * and add up *d, within about budget_ms: partitions led by nobody for a
 * moment (a failover) are asked for again until then, and a node that has
 * not answered by then counts as unreachable. Nothing is printed: what
 * `queue stats` would say on stderr goes to *error_r instead (heap, one
 * or more "mailctl: ..." lines; NULL when nothing went wrong; free()).
 * Returns MAILCTL_OK when every node answered for every partition, else
 * MAILCTL_UNREACHABLE (etcd, no alive queue node, a node not answering,
 * partitions nobody led: *d counts what did answer) or MAILCTL_OTHER /
 * MAILCTL_USAGE (a node refused, the node TLS files). Blocks the calling
 * thread (a private uv loop). */
int mailctl_queue_depth(mailctl *ctl, unsigned budget_ms, struct mailctl_queue_depth *d,
			char **error_r);
/* `status ...` (mailctl-status.c): argv[0] is "status". An exit code, or
 * -1 for a usage error. */
int mailctl_status(mailctl *ctl, int argc, char **argv);
/* `user ...` (mailctl-user.c): argv[0] is "user". An exit code, or -1
 * for a usage error. */
int mailctl_users(mailctl *ctl, int argc, char **argv);
/* `tenant suspend|resume|del|list --json` (mailctl-user.c): argv[0] is the
 * subcommand. An exit code, or -1 for a usage error. */
int mailctl_tenant_lifecycle(mailctl *ctl, int argc, char **argv);
/* The store tier for admin calls (mailctl-user.c): opened on first use
 * (the ring from etcd, node TLS when configured), a private uv loop. */
struct mailctl_store {
	uv_loop_t loop;
	int loop_open;
	router *router;
	tls_client *tls;
	store_client *client;
};
/* Open st (a no-op when open). An exit code (one line printed on error). */
int mailctl_store_open(mailctl *ctl, struct mailctl_store *st);
/* Close what mailctl_store_open opened; fine on a zeroed st. */
void mailctl_store_close(struct mailctl_store *st);
/* `quota ...` (mailctl-quota.c): argv[0] is "quota". An exit code, or -1
 * for a usage error. */
int mailctl_quota(mailctl *ctl, int argc, char **argv);
/* The last path element of an etcd key (a node's id). */
const char *mailctl_key_id(const char *key);
/* The alive keys of role (/mail/v1/alive/<role>/<id> = "host:port", the
 * nodes' RPC addresses) into *alive_r (etcd_kvs_free) and *n_r. An enum
 * mail_error. */
int mailctl_alive_load(etcd_client *c, enum router_role role, etcd_kv **alive_r, size_t *n_r);
/* --watch (partitions, status): default and bounds of the interval
 * (seconds) */
#define MAILCTL_WATCH_DEFAULT_S 2
#define MAILCTL_WATCH_MAX_S 3600
/* --watch [SECONDS] at argv[*i]: the interval (consuming SECONDS when the
 * next argument is a number, *i moves past it), or -1 when that number is
 * out of range. */
int mailctl_watch_arg(int argc, char **argv, int *i);

/* ---- one role's cluster map, as etcd has it (mailctl-node.c) ---------------- */

/* The map, node records, alive keys and status keys of one role, read by
 * mailctl_view_load; everything in it is owned by the view. */
typedef struct mailctl_view {
	ring_map *map; /* NULL: no map yet */
	etcd_kv *nodes, *alive, *status;
	size_t n_nodes, n_alive, n_status;
	/* per status key: the decoded status (NULL, 0 when the node is not
	 * alive, or the value is not a version-2 status) */
	node_status_lead **status_leads;
	size_t *status_n;
} mailctl_view;

/* Read role's view into *v (a few etcd reads, each bounded by the etcd
 * client's timeouts). An enum mail_error; on error *v is empty. Free with
 * mailctl_view_free (also fine on an empty view). */
int mailctl_view_load(etcd_client *c, enum router_role role, mailctl_view *v);
void mailctl_view_free(mailctl_view *v);
/* Node id's alive key (its value is the RPC address), or NULL when it has
 * none (dead, or never started). Borrowed from v. */
const etcd_kv *mailctl_view_alive(const mailctl_view *v, const char *id);
/* How many partitions list id in "r" (held), and how many have it as
 * primary (led). */
void mailctl_view_count(const mailctl_view *v, const char *id, unsigned *replicas_r,
			unsigned *primaries_r);
/* 1 when a node record says "draining": true. */
int mailctl_record_draining(const etcd_kv *kv);
/* The rest needs v->map != NULL, p < v->map->n_partitions. */
/* Lag (entries) of the k-th replica of partition p behind its primary,
 * as the primary's status tells it: 1 and *lag_r (0 for the primary and
 * for replicas in sync), or 0 when unknown. */
int mailctl_view_lag(const mailctl_view *v, uint32_t p, uint32_t k, uint64_t *lag_r);
/* The replica count the ring aims at: min(R, nodes not draining). */
uint32_t mailctl_view_want(const mailctl_view *v);
/* In-sync members of partition p with an alive key. */
uint32_t mailctl_view_live_insync(const mailctl_view *v, uint32_t p);
/* 1 when partition p's primary is live: alive and in sync. */
int mailctl_view_primary_live(const mailctl_view *v, uint32_t p);
/* Print partition p's line on stdout, `mailctl partitions` style:
 * "store 3 epoch=5 primary=a replicas=a,b,c insync=a,b lag=a:0,b:0,c:120"
 * (name: the role's); returns mailctl_view_primary_live(v, p). */
int mailctl_part_print(const mailctl_view *v, const char *name, uint32_t p);

/* Delete the etcd key prefix+name: NOT_FOUND (exit 2, said) when absent,
 * else print done (a format with one %s: name). An exit code. */
int mailctl_remove_key(mailctl *ctl, etcd_client *c, const char *prefix, const char *name,
		       const char *what, const char *done);
/* A new password from standard input (prompted twice on a terminal); the
 * caller wipes it with xfree_secret(p, *cap_r). NULL after saying why. */
char *mailctl_password(mailctl *ctl, size_t *cap_r);

#endif
