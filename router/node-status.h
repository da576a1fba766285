/* node-status.h: the replication status a node keeps in etcd, and its
 * publisher (public contract).
 *
 * One key per replicated node, /mail/v1/status/<role>/<node id>. It says
 * what `mailctl partitions` needs for the lag column and nothing that moves
 * while the cluster is healthy, so in a steady state it is never rewritten:
 *   - the partitions this node leads (is primary of, in the log), each with
 *     its epoch (a reader ignores an entry whose epoch is not the map's:
 *     the map moved on);
 *   - per led partition, only the peers whose log is more than
 *     NODE_STATUS_LAG_SLACK entries behind the primary's last index, with
 *     that lag rounded by node_status_lag_round(). A peer of the partition
 *     not listed is in sync (lag 0).
 * No timestamp: a status is current while its node's alive key (lease)
 * exists; mailctl checks that. Encoding (JSON, versioned; unknown members
 * are ignored by readers):
 *   {"v":2,"e":{"<partition>":<epoch>,..},"lag":{"<partition>":{"<id>":N,..},..}}
 * "lag" is omitted when no peer lags.
 *
 * The publisher writes that value when it differs from the last value
 * written successfully, at most once per min_interval_ms (a failed write
 * is retried at that pace), from the thread pool.
 */
#ifndef MAIL_NODE_STATUS_H
#define MAIL_NODE_STATUS_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "buf.h"
#include "etcd.h"
#include "router.h"

#define NODE_STATUS_KEY "/mail/v1/status/"
#define NODE_STATUS_VERSION 2
/* A peer at most this many entries behind the primary counts as in sync
 * (entries in flight under a steady stream would otherwise change the
 * value at every write). */
#define NODE_STATUS_LAG_SLACK 32
#define NODE_STATUS_PEERS_MAX 8
/* Default pacing of the publisher: look every check_ms, write at most
 * every min_interval_ms. */
#define NODE_STATUS_CHECK_MS 1000
#define NODE_STATUS_MIN_INTERVAL_MS 5000

typedef struct node_status_lag {
	char id[ROUTER_ID_MAX];
	uint64_t lag; /* entries, as published (rounded) */
} node_status_lag;

/* One partition the node leads. */
typedef struct node_status_lead {
	uint32_t partition;
	uint64_t epoch;
	uint32_t n_lagging;
	node_status_lag lagging[NODE_STATUS_PEERS_MAX];
} node_status_lead;

/* The lag as published: 0 up to NODE_STATUS_LAG_SLACK, else rounded down
 * to two significant digits (60, 1200, 980000), so a replica catching up
 * changes the value every few percent, not at every entry. */
uint64_t node_status_lag_round(uint64_t lag);

/* Append the encoding of leads[0..n) to out (leads in any order; each
 * lagging[] entry with lag 0 is left out). Pure. */
void node_status_encode(const node_status_lead *leads, size_t n, buf *out);

/* Parse a status value. Returns 0 with *leads_r (heap, free() it; NULL
 * when *n_r is 0) and *n_r, or -1 when the value is not a version-2 status
 * (an older or malformed one: the caller treats its lag as unknown). */
int node_status_decode(const char *value, size_t len, node_status_lead **leads_r,
		       size_t *n_r);

/* The lag of peer id on partition p per a decoded status of p's primary
 * whose map epoch is epoch: 1 and *lag_r (0: in sync), or 0 when the status
 * does not say (p not led there, or led at another epoch). Pure. */
int node_status_lag_of(const node_status_lead *leads, size_t n, uint32_t p, uint64_t epoch,
		       const char *id, uint64_t *lag_r);

/* Whether to write value now: it differs from written (the last value
 * written successfully; NULL: none yet) and min_interval_ms have passed
 * since last_attempt_ms (0: never tried). Pure. */
int node_status_due(const char *written, const char *value, uint64_t now_ms,
		    uint64_t last_attempt_ms, uint64_t min_interval_ms);

/* ---- the publisher -------------------------------------------------------- */

typedef struct node_status_publisher node_status_publisher;

/* Fill out with the current value (node_status_encode). Loop thread. */
typedef void node_status_collect_fn(buf *out, void *arg);

typedef struct node_status_settings {
	const etcd_conf *etcd;      /* copied */
	const char *key;            /* e.g. NODE_STATUS_KEY "store/store-1" */
	etcd_stats *stats;          /* borrowed, may be NULL; outlives the pool
				     * jobs (the daemon's context) */
	uint32_t check_ms;          /* 0: NODE_STATUS_CHECK_MS */
	uint32_t min_interval_ms;   /* 0: NODE_STATUS_MIN_INTERVAL_MS */
} node_status_settings;

/* Start: every check_ms, collect(out, arg) on the loop thread, and a write
 * of the result from the thread pool when node_status_due() says so (one
 * write in flight at most). Strings of set are copied; collect and arg
 * are borrowed until destroy. */
node_status_publisher *node_status_publisher_start(uv_loop_t *loop,
						   const node_status_settings *set,
						   node_status_collect_fn *collect, void *arg);
/* Writes that succeeded so far (loop thread). */
uint64_t node_status_publisher_writes(const node_status_publisher *pub);
/* Stop and free (a write in flight finishes on its own and frees itself;
 * its result is dropped). Loop thread; run the loop afterwards for the
 * timer's close callback. NULLs *pub; NULL is fine. */
void node_status_publisher_destroy(node_status_publisher **pub);

#endif
