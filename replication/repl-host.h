/* repl-host.h: a node's replicated partitions, driven by the partition map
 * (public contract). Store nodes and queue nodes are both thin users of it.
 *
 * One repl_host per process. It owns the node's router (map lookups), its
 * membership (controller-managed, R replicas), a controller candidate, and
 * the repl_node whose "repl" service shares the owner's RPC server. Every
 * ~200 ms it reconciles with the map of its role: for each partition whose
 * replica list "r" names this node, the partition's log is open and its
 * role (primary = r[0]), epoch, members and in-sync flags are those of the
 * map; partitions it no longer holds are closed. A replica that caught up
 * reports it in etcd (/mail/v1/progress/<role>/<partition>/<id>, from the
 * thread pool), and the node keeps its status key
 * /mail/v1/status/<role>/<id> current (router/node-status.h: the
 * partitions it leads and the peers lagging behind it, what `mailctl
 * partitions` shows as replication lag), written only when it changes.
 *
 * The owner supplies the state machine through repl_host_ops: committed
 * entries are applied with ops->apply on every replica, in log order; the
 * primary keeps each result until the proposal's callback hands it over.
 *
 * Loop thread only (the router's and the controller's own threads aside).
 */
#ifndef MAIL_REPL_HOST_H
#define MAIL_REPL_HOST_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "buf.h"
#include "etcd.h"
#include "router.h"
#include "rpc.h"

typedef struct repl_host repl_host;

/* The owner's state machine. Every call runs on the loop thread. */
struct repl_host_ops {
	/* Apply the committed entry at index of partition (every replica,
	 * strictly increasing index order, deterministic: from the payload and
	 * the owner's replicated state only). Store index as the partition's
	 * applied index in the same durable write as the change. What the
	 * primary's proposer should get back goes to resp; returns the
	 * operation's status (a mail-error.h code). Required. */
	int (*apply)(void *owner, uint32_t partition, uint64_t index, const uint8_t *payload,
		     size_t len, buf *resp);
	/* The partition's stored applied index (0 when none). Returns MAIL_OK
	 * or an error (the partition is then not opened). Required. */
	int (*applied_index)(void *owner, uint32_t partition, uint64_t *index_r);
	/* Optional. leading = 1 once this node is the primary of partition AND
	 * has applied every entry up to its barrier (it holds every write
	 * acknowledged before it took over: it may serve reads and run the
	 * partition's background work, e.g. deliveries); 0 when it no longer
	 * is (stepped down, partition closed). Called on transitions only,
	 * from the loop, never from inside a host call; repl_host_stop() and
	 * repl_host_destroy() do not call it (the owner is stopping). */
	void (*on_leading)(void *owner, uint32_t partition, int leading);

	/* Optional, all four or none: partition snapshots (repl.h). With them
	 * the partition logs are compacted (repl_host_settings.log_keep_*)
	 * and a replica too far behind is sent a snapshot. n_partitions is
	 * the map's partition count. */
	/* A consistent view of partition's state as it is now (the host
	 * reports the log's applied index for it). Returns 0 / -1. */
	int (*snapshot_open)(void *owner, uint32_t partition, uint32_t n_partitions,
			     void **snap_r);
	/* Append the next chunk (<= max_bytes unless one item alone is
	 * bigger): 1 appended, 0 done, -1 error. */
	int (*snapshot_next)(void *snap, buf *out, size_t max_bytes);
	void (*snapshot_close)(void *snap);
	/* first = 1: drop the partition's state and its applied index (one
	 * durable write) before taking chunk; last = 1: store index as the
	 * applied index (durably). The host also calls it with first = 1,
	 * last = 0, len = 0 just to drop the state: when an install was
	 * abandoned (the log applies from index 1 again), and when a
	 * partition opens at applied index 0 (leftovers of an install a crash
	 * cut short). Returns 0 / -1 (the chunk is refused). */
	int (*snapshot_install)(void *owner, uint32_t partition, uint32_t n_partitions, int first,
				int last, const uint8_t *chunk, size_t len, uint64_t index);
	/* Optional: apply does not sync each write, and this makes all the
	 * owner applied durable (repl.h repl_settings.apply_barrier: after a
	 * loop turn's applies, before the proposals those applies answer
	 * complete; on the node's writer thread, so thread-safe against
	 * apply). Returns 0 / -1. */
	int (*apply_barrier)(void *owner);
};

struct repl_host_settings {
	enum router_role role;
	const char *node_id;
	const etcd_conf *etcd;       /* how to reach etcd, as whom (copied) */
	const char *host;            /* advertised host */
	int port;                    /* the owner's RPC port (also serves "repl") */
	const char *repl_dir;        /* LevelDB directory of the logs */
	uint32_t n_partitions;       /* of a new map */
	uint32_t n_replicas;         /* R of a new map */
	int ttl_s;                   /* lease TTL (membership and controller) */
	uint32_t propose_timeout_ms; /* 0 = 3000: an uncommitted proposal then
				      * fails UNAVAILABLE (clients retry) */
	uint64_t log_keep_entries;   /* 0 = repl.h's default (with snapshots) */
	uint64_t log_keep_bytes;     /* 0 = repl.h's default (with snapshots) */
	int write_on_loop;           /* repl.h repl_settings.write_on_loop */
	etcd_stats *etcd_stats;      /* counts the host's etcd writes (borrowed,
				      * may be NULL; thread-pool jobs use it, so
				      * it must outlive the loop's last run) */
	tls_client *tls;             /* mutual TLS to the peers (borrowed, must
				      * outlive the host); NULL = plaintext. The
				      * owner's server decides what it serves;
				      * with TLS, replication methods take only
				      * certificates of this role. */
};

/* Create the repl node on server, join the role's ring (blocks on etcd),
 * start the router, the controller candidate and the reconcile timer.
 * server, ops and owner are borrowed and must outlive the host. Returns 0,
 * or -1 with *error_r (static text); destroy the host either way. */
int repl_host_start(uv_loop_t *loop, rpc_server *server, const struct repl_host_settings *set,
		    const struct repl_host_ops *ops, void *owner, repl_host **host_r,
		    const char **error_r);
/* Leave the ring, stop the controller and the timers. The owner then destroys the RPC
 * server, then calls repl_host_destroy(). */
void repl_host_stop(repl_host *host);
/* Close every partition (pending proposals fail UNAVAILABLE), free.
 * NULLs *host. */
void repl_host_destroy(repl_host **host);

/* Append the node's replication metrics (Prometheus text, docs/metrics.md:
 * the log writer's writes, their duration, the loop's waits for one) with
 * labels to out. Loop thread. */
void repl_host_metrics(repl_host *host, buf *out, const char *labels);

/* The router the host keeps current (borrowed; valid until destroy). */
router *repl_host_router(repl_host *host);

/* The partition of key in the current map, into *partition_r. Returns
 * MAIL_OK, or MAIL_ERR_UNAVAILABLE when the map is not known yet. */
int repl_host_partition_of(repl_host *host, const void *key, size_t len,
			   uint32_t *partition_r);

/* MAIL_OK with *partition_r when this node is the primary of key's
 * partition now, else MAIL_ERR_NOT_PRIMARY. For a read (read = 1), also
 * MAIL_ERR_UNAVAILABLE (temporary: the client retries) while a new primary
 * has not yet applied every write acknowledged before it took over, and
 * once this node's membership lease may have expired
 * (router_member_lease_valid_until: no stale reads from a primary cut off
 * from etcd). */
int repl_host_primary_of(repl_host *host, const void *key, size_t len, int read,
			 uint32_t *partition_r);

/* 1 when on_leading(partition, 1) was the last call for it, else 0. */
int repl_host_leading(const repl_host *host, uint32_t partition);
/* The partitions of the current map (0 while it is not known). */
uint32_t repl_host_partition_count(const repl_host *host);

/* status: the log's (MAIL_OK = committed and applied here); op_status and
 * resp (valid during the call): what ops->apply computed for it. */
typedef void repl_host_done_cb(int status, int op_status, const uint8_t *resp, size_t len,
			       void *arg);
/* Propose payload on partition. MAIL_OK: cb is called once, later; else
 * (NOT_PRIMARY) cb is never called. */
int repl_host_propose(repl_host *host, uint32_t partition, const void *payload, size_t len,
		      repl_host_done_cb *cb, void *arg);

#endif
