/* ring.h: placing partitions on nodes by consistent hashing (pure, no I/O).
 *
 * Each node owns RING_VNODES points on a 64-bit ring, at
 * util_hash64("<node-id>#<i>"), i = 0..RING_VNODES-1. Partition p sits at
 * util_hash64("partition#<p>"); its primary is the node of the first vnode
 * clockwise (at or after the partition's point, wrapping), its further
 * replicas the next distinct nodes clockwise. Adding or removing a node thus
 * moves only the partitions that node gains or loses (about 1/N of them).
 *
 * A ring_map is one placement: the partition count (fixed forever for a
 * cluster), the map epoch (bumped whenever the placement changes), the
 * sorted node list and, per partition, its replica list (primary first) and
 * the epoch at which that partition's replica list last changed (what
 * fencing compares). Its JSON form is the value of /mail/v1/ring/<role>:
 *
 *   {"version":1,"partitions":256,"epoch":3,"replicas":1,
 *    "nodes":["q1","q2"],
 *    "map":[{"r":["q2"],"e":3},{"r":["q1"],"e":1},...]}
 *
 * ring_map objects are immutable once built; share them read-only freely.
 */
#ifndef MAIL_RING_H
#define MAIL_RING_H

#include <stddef.h>
#include <stdint.h>

#define RING_VNODES 64
#define RING_PARTITIONS_MAX 65536
#define RING_NODES_MAX 4096
#define RING_REPLICAS_MAX 8

typedef struct ring_map {
	uint32_t n_partitions;
	uint64_t epoch;
	/* replicas per partition: min(requested R, n_nodes) */
	uint32_t n_replicas;
	/* requested R (kept so the JSON round-trips when nodes are few) */
	uint32_t want_replicas;
	char **nodes; /* sorted, distinct */
	size_t n_nodes;
	/* n_partitions * n_replicas indexes into nodes, partition-major */
	uint32_t *replicas;
	/* n_partitions epochs */
	uint64_t *part_epoch;
} ring_map;

/* Place n_partitions partitions (1..RING_PARTITIONS_MAX) on nodes with R
 * replicas (1..RING_REPLICAS_MAX), starting from old (NULL for a new ring;
 * otherwise old's partition count and R are kept and n_partitions/R are
 * ignored). When the placement differs from old's, the result's epoch is
 * old's + 1 and every partition whose replica list changed gets that epoch;
 * otherwise epochs are old's and *changed_r is 0. A new ring starts at epoch
 * 1 (*changed_r = 1). Duplicate node ids are ignored; n_nodes may be 0 (every
 * partition then has no replica). Returns a new map (ring_map_free). */
ring_map *ring_map_place(const ring_map *old, const char *const *nodes, size_t n_nodes,
			 uint32_t n_partitions, uint32_t replicas, int *changed_r);
void ring_map_free(ring_map **map);

/* The i-th replica (0 = primary) of partition p, or NULL when out of range
 * (no nodes). The string belongs to map. */
const char *ring_map_replica(const ring_map *map, uint32_t p, uint32_t i);
/* Partition p's epoch (0 when p is out of range). */
uint64_t ring_map_partition_epoch(const ring_map *map, uint32_t p);

/* The JSON text of map (caller frees). */
char *ring_map_to_json(const ring_map *map);
/* Parse and validate a map (bounds, node indexes, replica lists naming
 * listed nodes, no duplicate replicas in a partition). Returns 0 and
 * *map_r, or -1 with *error_r (static text). */
int ring_map_from_json(const char *json, size_t len, ring_map **map_r, const char **error_r);

#endif
