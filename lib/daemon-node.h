/* daemon-node.h: what the partitioned nodes (store-node, queue-node) share
 * on top of daemon-main.h: their option rows, the checks on them, their RPC
 * server's limits and TLS, and the replication host's settings built from
 * them (public contract).
 *
 * A node's settings struct begins with struct daemon_node_settings (which
 * begins with struct daemon_settings), lists daemon_node_options and
 * daemon_tls_options (at the offset of its `tls` member) among its option
 * groups, judges them with daemon_node_check(), prepares its RPC server
 * with daemon_node_rpc_setup() and builds its repl_host_settings with
 * daemon_node_repl_settings(): one place, one default per setting. A role
 * whose log bounds differ from repl.h's says so with daemon_option_default
 * rows on its daemon_node_options group.
 */
#ifndef MAIL_DAEMON_NODE_H
#define MAIL_DAEMON_NODE_H

#include "daemon-main.h"
#include "daemon-options.h"
#include "daemon-tls.h"
#include "repl-host.h"
#include "router.h"
#include "rpc.h"

struct daemon_node_settings {
	struct daemon_settings daemon; /* first (daemon-main.h); id from --id */
	struct daemon_listen listen;   /* --listen: the RPC address (port 0: any) */
	const char *advertise;         /* --advertise: NULL = the listen host */
	const char *data;              /* --data: the node's directory */
	unsigned partitions;           /* --partitions of a new ring */
	unsigned replicas;             /* --replicas of a new ring */
	unsigned lease_ttl;            /* --lease-ttl, seconds */
	/* The log bounds of each partition (repl.h: a log is cut back to both
	 * once it passes 5/4 of either; older entries travel as snapshots). */
	unsigned log_keep;             /* --log-keep: entries */
	unsigned log_keep_mib;         /* --log-keep-mib: payload MiB */
	/* --repl-write-thread: 1 the logs' sync writes run on a writer
	 * thread, 0 on the loop (repl.h repl_settings.write_on_loop) */
	unsigned repl_write_thread;
	/* The RPC server's limits (proto/rpc.h struct rpc_server_limits;
	 * defaults RPC_SERVER_LIMITS_DEFAULT). */
	unsigned rpc_max_conns;        /* --rpc-max-conns */
	unsigned rpc_idle_timeout_s;   /* --rpc-idle-timeout, seconds */
	unsigned rpc_max_inflight;     /* --rpc-max-inflight, per connection */
	unsigned rpc_max_queued_mib;   /* --rpc-max-queued-mib, per connection */
	/* --node-cert --node-key --cluster-ca (daemon_tls_options' group) */
	struct daemon_tls_settings tls;
};

/* --id --listen --data --advertise --partitions --replicas --lease-ttl
 * --log-keep --log-keep-mib --repl-write-thread --rpc-max-conns --rpc-idle-timeout
 * --rpc-max-inflight --rpc-max-queued-mib (rows of struct
 * daemon_node_settings; the TLS rows are daemon_tls_options'). */
extern const struct daemon_option daemon_node_options[];

/* For the node's def->check: node TLS all or nothing, and a --listen off
 * loopback only with node TLS (plaintext RPC stays on loopback: unit tests
 * and development). Returns 0, or -1 with *error_r (static text). */
int daemon_node_check(const struct daemon_node_settings *set, const char **error_r);

/* The limits of set into *limits_r. */
void daemon_node_rpc_limits(const struct daemon_node_settings *set,
			    struct rpc_server_limits *limits_r);
/* Before server listens: the node's limits, and TLS when tls is not NULL
 * (daemon_tls_init()'s server side; borrowed, must outlive server). */
void daemon_node_rpc_setup(const struct daemon_node_settings *set, rpc_server *server,
			   tls_server *tls);

/* Fill *hs_r for role from set: node id, etcd (borrowed: daemon_etcd_conf),
 * the advertised host (--advertise, else the listen host), port (the one
 * the node's RPC server got), partitions, replicas, lease, log bounds, stats and tls (both
 * borrowed, as repl-host.h says; tls NULL = plaintext to the peers).
 * hs_r->repl_dir is "<data>/repl", heap in *repl_dir_r: the caller frees
 * it once repl_host_start() has returned. */
void daemon_node_repl_settings(const struct daemon_node_settings *set, enum router_role role,
			       int port, const etcd_conf *etcd, etcd_stats *stats,
			       tls_client *tls, struct repl_host_settings *hs_r,
			       char **repl_dir_r);

#endif
