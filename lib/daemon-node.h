/* daemon-node.h: what the partitioned nodes (store-node, queue-node) share
 * on top of daemon-main.h: their option rows and the replication host's
 * settings built from them (public contract).
 *
 * A node's settings struct begins with struct daemon_node_settings (which
 * begins with struct daemon_settings), lists daemon_node_options among its
 * option groups, and builds its repl_host_settings with
 * daemon_node_repl_settings(): one place, one default per setting. A role
 * whose log bounds differ from repl.h's says so with daemon_option_default
 * rows on its daemon_node_options group.
 */
#ifndef MAIL_DAEMON_NODE_H
#define MAIL_DAEMON_NODE_H

#include "daemon-main.h"
#include "daemon-options.h"
#include "repl-host.h"
#include "router.h"

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
};

/* --id --listen --data --advertise --partitions --replicas --lease-ttl
 * --log-keep --log-keep-mib (rows of struct daemon_node_settings). */
extern const struct daemon_option daemon_node_options[];

/* Fill *hs_r for role from set: node id, etcd (borrowed: daemon_etcd_conf), the advertised host
 * (--advertise, else the listen host), port (the one the node's RPC server
 * got), partitions, replicas, lease, log bounds, stats (borrowed, as
 * repl-host.h says). hs_r->repl_dir is "<data>/repl", heap in *repl_dir_r:
 * the caller frees it once repl_host_start() has returned. */
void daemon_node_repl_settings(const struct daemon_node_settings *set, enum router_role role,
			       int port, const etcd_conf *etcd, etcd_stats *stats,
			       struct repl_host_settings *hs_r,
			       char **repl_dir_r);

#endif
