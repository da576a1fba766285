/* daemon-node.c: daemon-node.h. */
#include "daemon-node.h"

#include "cidr.h"
#include "repl.h"
#include "xalloc.h"

#include <string.h>

/* Offsets are within struct daemon_node_settings. */
#define NODE(field) offsetof(struct daemon_node_settings, field)

const struct daemon_option daemon_node_options[] = {
	{ .name = "id", .kind = DAEMON_OPTION_STRING, .offset = NODE(daemon.id), .value_name = "ID",
	  .required = 1, .help = "node id: its name in the ring, etcd and the logs" },
	{ .name = "listen", .kind = DAEMON_OPTION_LISTEN, .offset = NODE(listen),
	  .value_name = "HOST:PORT", .required = 1,
	  .help = "RPC address (port 0: a free one, logged at ready)" },
	{ .name = "data", .kind = DAEMON_OPTION_STRING, .offset = NODE(data), .value_name = "DIR",
	  .required = 1, .help = "LevelDB directory (created if missing)" },
	{ .name = "advertise", .kind = DAEMON_OPTION_STRING, .offset = NODE(advertise),
	  .value_name = "HOST", .help = "host put in the ring (default: the listen host)" },
	{ .name = "partitions", .kind = DAEMON_OPTION_UINT, .offset = NODE(partitions),
	  .value_name = "N", .min = 1, .max = 65536, .def = ROUTER_DEFAULT_PARTITIONS,
	  .help = "partitions of a new ring" },
	{ .name = "replicas", .kind = DAEMON_OPTION_UINT, .offset = NODE(replicas), .value_name = "R",
	  .min = 1, .max = 8, .def = ROUTER_DEFAULT_REPLICAS,
	  .help = "replicas per partition of a new ring" },
	{ .name = "lease-ttl", .kind = DAEMON_OPTION_UINT, .offset = NODE(lease_ttl), .value_name = "S",
	  .min = 1, .max = 3600, .def = ROUTER_DEFAULT_LEASE_TTL_S,
	  .help = "membership lease in seconds" },
	{ .name = "log-keep", .kind = DAEMON_OPTION_UINT, .offset = NODE(log_keep), .value_name = "N",
	  .min = 1, .max = 1u << 30, .def = REPL_DEFAULT_LOG_KEEP_ENTRIES,
	  .help = "entries kept per partition log (then snapshots)" },
	{ .name = "log-keep-mib", .kind = DAEMON_OPTION_UINT, .offset = NODE(log_keep_mib),
	  .value_name = "N", .min = 1, .max = 1u << 20, .def = REPL_DEFAULT_LOG_KEEP_BYTES >> 20,
	  .help = "payload MiB kept per partition log" },
	{ .name = "repl-write-thread", .kind = DAEMON_OPTION_UINT, .offset = NODE(repl_write_thread),
	  .value_name = "0|1", .min = 0, .max = 1, .def = 1,
	  .help = "1: the partition logs' sync writes run on a writer thread; 0: on the loop" },
	{ .name = "rpc-max-conns", .kind = DAEMON_OPTION_UINT, .offset = NODE(rpc_max_conns),
	  .value_name = "N", .min = 1, .max = 1000000, .def = RPC_SERVER_MAX_CONNECTIONS_DEFAULT,
	  .help = "RPC connections at once (more are closed at accept)" },
	{ .name = "rpc-idle-timeout", .kind = DAEMON_OPTION_UINT, .offset = NODE(rpc_idle_timeout_s),
	  .value_name = "S", .min = 1, .max = 86400,
	  .def = RPC_SERVER_IDLE_TIMEOUT_MS_DEFAULT / 1000,
	  .help = "idle RPC connection (nothing in flight) closed after S s" },
	{ .name = "rpc-max-inflight", .kind = DAEMON_OPTION_UINT, .offset = NODE(rpc_max_inflight),
	  .value_name = "N", .min = 1, .max = 65536, .def = RPC_SERVER_MAX_INFLIGHT_DEFAULT,
	  .help = "RPC calls in flight per connection (then it is not read)" },
	{ .name = "rpc-max-queued-mib", .kind = DAEMON_OPTION_UINT,
	  .offset = NODE(rpc_max_queued_mib), .value_name = "N", .min = 1, .max = 4096,
	  .def = RPC_SERVER_MAX_OUT_BYTES_DEFAULT >> 20,
	  .help = "RPC reply MiB queued per connection (then it is not read)" },
	{ .name = NULL },
};

int daemon_node_check(const struct daemon_node_settings *set, const char **error_r)
{
	if (daemon_tls_check(&set->tls, error_r) < 0)
		return -1;
	const char *host = set->listen.host;
	int loopback = strcmp(host, "localhost") == 0 || cidr_is_loopback_text(host);
	if (!loopback && !daemon_tls_enabled(&set->tls)) {
		*error_r = "--listen off loopback needs --node-cert, --node-key and --cluster-ca "
			   "(node RPC is plaintext only on loopback)";
		return -1;
	}
	return 0;
}

void daemon_node_rpc_limits(const struct daemon_node_settings *set,
			    struct rpc_server_limits *limits_r)
{
	*limits_r = (struct rpc_server_limits){
		.max_connections = set->rpc_max_conns,
		.idle_timeout_ms = set->rpc_idle_timeout_s * 1000u,
		.max_inflight = set->rpc_max_inflight,
		.max_out_bytes = (size_t)set->rpc_max_queued_mib << 20,
	};
}

void daemon_node_rpc_setup(const struct daemon_node_settings *set, rpc_server *server,
			   tls_server *tls)
{
	struct rpc_server_limits limits;
	daemon_node_rpc_limits(set, &limits);
	rpc_server_set_limits(server, &limits);
	if (tls != NULL)
		rpc_server_set_tls(server, tls);
}

void daemon_node_repl_settings(const struct daemon_node_settings *set, enum router_role role,
			       int port, const etcd_conf *etcd, etcd_stats *stats,
			       tls_client *tls, struct repl_host_settings *hs_r,
			       char **repl_dir_r)
{
	*repl_dir_r = xasprintf("%s/repl", set->data);
	*hs_r = (struct repl_host_settings){
		.role = role,
		.node_id = set->daemon.id,
		.etcd = etcd,
		.host = set->advertise != NULL ? set->advertise : set->listen.host,
		.port = port,
		.repl_dir = *repl_dir_r,
		.n_partitions = set->partitions,
		.n_replicas = set->replicas,
		.ttl_s = (int)set->lease_ttl,
		.log_keep_entries = set->log_keep,
		.log_keep_bytes = (uint64_t)set->log_keep_mib << 20,
		.write_on_loop = set->repl_write_thread == 0,
		.etcd_stats = stats,
		.tls = tls,
	};
}
