/* mailctl-private.h: shared by mailctl.c, mailctl-conf.c, mailctl-node.c,
 * mailctl-security.c, mailctl-dkim.c, mailctl-relay.c and mailctl-queue.c. */
#ifndef MAIL_MAILCTL_PRIVATE_H
#define MAIL_MAILCTL_PRIVATE_H

#include <stdio.h>

#include "directory.h"
#include "etcd.h"
#include "router.h"

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
/* `status ...` (mailctl-status.c): argv[0] is "status". An exit code, or
 * -1 for a usage error. */
int mailctl_status(mailctl *ctl, int argc, char **argv);
/* The last path element of an etcd key (a node's id). */
const char *mailctl_key_id(const char *key);
/* The alive keys of role (/mail/v1/alive/<role>/<id> = "host:port", the
 * nodes' RPC addresses) into *alive_r (etcd_kvs_free) and *n_r. An enum
 * mail_error. */
int mailctl_alive_load(etcd_client *c, enum router_role role, etcd_kv **alive_r, size_t *n_r);
/* Delete the etcd key prefix+name: NOT_FOUND (exit 2, said) when absent,
 * else print done (a format with one %s: name). An exit code. */
int mailctl_remove_key(mailctl *ctl, etcd_client *c, const char *prefix, const char *name,
		       const char *what, const char *done);
/* A new password from standard input (prompted twice on a terminal); the
 * caller wipes it with xfree_secret(p, *cap_r). NULL after saying why. */
char *mailctl_password(mailctl *ctl, size_t *cap_r);

#endif
