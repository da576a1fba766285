/* controller.h: the partition-map controller (public contract).
 *
 * Any node may run one; exactly one at a time is ACTIVE. Election: each
 * controller holds a lease of its own (ttl_s) and tries to create
 * /mail/v1/controller = <node id> under it if absent; losers watch the key
 * and campaign again when it disappears (the winner stopped, or its lease
 * expired: within ttl_s of a crash). Every few seconds each controller also
 * re-checks (missed watch events cannot stall it).
 *
 * The active controller keeps /mail/v1/ring/<role> (ring.h) for every role
 * that has a map, reacting to changes under nodes/, alive/, progress/ (and
 * a resync every 2 s) with the rules of ring_map_reconcile():
 *   - a dead primary is replaced by the first alive in-sync replica (never
 *     by an out-of-sync one: with none alive the partition stays without a
 *     primary); a dead replica leaves the in-sync set;
 *   - new or drained nodes: new replicas join "r" but enter "i" only after
 *     the data plane reports them caught up (router.h, progress key); a
 *     leaving node stays until the partition has R in-sync placed replicas;
 *   - rebalancing: once every partition is settled (all its placed nodes
 *     alive and in sync) and nothing else changes, primaries move back to
 *     each partition's preferred node (the first of its ring placement),
 *     at most max(1, partitions/16) per pass, and only once the map has
 *     not been written for a resync interval (so one batch per interval),
 *     so a node that joined or came back leads its share again.
 * Each change bumps the partition's epoch to the new map epoch, and each
 * map write is ONE compare-and-swap on the map key's mod_revision (on
 * conflict: re-read, recompute), so two controllers can never both win.
 * One log line per changed partition:
 *   event=partition_changed role=.. partition=.. epoch=.. primary=..
 *   replicas=a,b,c insync=a,b reason=promote|drop|join|drain|insync|rebalance[,..]
 * Members must then run with controller_managed = 1 (router.h).
 *
 * Threads: the controller runs two threads of its own (one campaigns,
 * renews its lease and writes the map; one watches etcd), each with its own
 * etcd handle. No call below blocks on etcd.
 */
#ifndef MAIL_ROUTER_CONTROLLER_H
#define MAIL_ROUTER_CONTROLLER_H

#include <uv.h>

#include "etcd.h"
#include "router.h"

#define ROUTER_CONTROLLER_RESYNC_MS 2000

typedef struct router_controller router_controller;

/* Start campaigning. etcd: how to reach etcd (copied). loop: the caller's loop (may be NULL; no handle is
 * put on it: the controller lives on its own threads). node_id names this
 * controller in /mail/v1/controller (1..63 bytes, no '/' or spaces); ttl_s
 * its lease TTL (0: ROUTER_DEFAULT_LEASE_TTL_S); stats (borrowed, may be
 * NULL; must outlive the controller) counts its etcd writes. Returns 0 with *ctl_r, or
 * -1 with *error_r (static text) on bad arguments. etcd being unreachable
 * is not an error: it keeps trying. Any thread. */
int router_controller_start(uv_loop_t *loop, const etcd_conf *etcd, const char *node_id,
			    int ttl_s, etcd_stats *stats, router_controller **ctl_r,
			    const char **error_r);

/* 1 while this controller is the elected one, else 0. Thread-safe. */
int router_controller_is_active(router_controller *ctl);

/* Stop: end the threads (up to ~1 s), revoke the lease (another controller
 * takes over at once), free. NULLs *ctl; NULL is fine. Not from the
 * controller's own threads. */
void router_controller_stop(router_controller **ctl);

#endif
