/* ring.c: consistent-hash placement of partitions (see ring.h). */
#include "ring.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "util.h"
#include "xalloc.h"

#define RING_JSON_VERSION 1

typedef struct ring__vnode {
	uint64_t point;
	uint32_t node;
} ring__vnode;

static int ring__vnode_cmp(const void *a, const void *b)
{
	const ring__vnode *x = a, *y = b;
	if (x->point != y->point)
		return x->point < y->point ? -1 : 1;
	/* equal points (astronomically unlikely): order by node, so the
	 * result does not depend on qsort's stability */
	return x->node < y->node ? -1 : x->node > y->node;
}

static int ring__str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Copy, sort and dedupe ids into map->nodes. */
static void ring__set_nodes(ring_map *map, const char *const *ids, size_t n)
{
	map->nodes = xcalloc(n + 1, sizeof *map->nodes);
	for (size_t i = 0; i < n; i++)
		map->nodes[i] = xstrdup(ids[i]);
	qsort(map->nodes, n, sizeof *map->nodes, ring__str_cmp);
	size_t out = 0;
	for (size_t i = 0; i < n; i++) {
		if (out > 0 && strcmp(map->nodes[out - 1], map->nodes[i]) == 0) {
			free(map->nodes[i]);
			continue;
		}
		map->nodes[out++] = map->nodes[i];
	}
	map->n_nodes = out;
}

static uint64_t ring__partition_point(uint32_t p)
{
	char tmp[32];
	int len = snprintf(tmp, sizeof tmp, "partition#%u", p);
	return util_hash64(tmp, (size_t)len);
}

/* The ring of vnodes of a sorted distinct node list. */
typedef struct ring__ring {
	ring__vnode *vn;
	size_t n_vnodes;
} ring__ring;

static void ring__ring_build(ring__ring *ring, char *const *nodes, size_t n_nodes)
{
	ring->n_vnodes = n_nodes * RING_VNODES;
	ring->vn = xmalloc((ring->n_vnodes + 1) * sizeof *ring->vn);
	for (size_t n = 0; n < n_nodes; n++) {
		for (uint32_t i = 0; i < RING_VNODES; i++) {
			char *name = xasprintf("%s#%u", nodes[n], i);
			ring->vn[n * RING_VNODES + i].point = util_hash64(name, strlen(name));
			ring->vn[n * RING_VNODES + i].node = (uint32_t)n;
			free(name);
		}
	}
	qsort(ring->vn, ring->n_vnodes, sizeof *ring->vn, ring__vnode_cmp);
}

/* The first `want` distinct nodes clockwise from partition p's point, as
 * indexes into the node list; returns how many. */
static uint32_t ring__ring_walk(const ring__ring *ring, uint32_t p, uint32_t want, uint32_t *out)
{
	if (ring->n_vnodes == 0)
		return 0;
	uint64_t point = ring__partition_point(p);
	/* first vnode with vn.point >= point */
	size_t lo = 0, hi = ring->n_vnodes;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (ring->vn[mid].point < point)
			lo = mid + 1;
		else
			hi = mid;
	}
	uint32_t got = 0;
	for (size_t k = 0; k < ring->n_vnodes && got < want; k++) {
		uint32_t node = ring->vn[(lo + k) % ring->n_vnodes].node;
		int dup = 0;
		for (uint32_t j = 0; j < got; j++)
			dup |= out[j] == node;
		if (!dup)
			out[got++] = node;
	}
	return got;
}

static uint32_t ring__min_r(uint32_t want, size_t n_nodes)
{
	return want < n_nodes ? want : (uint32_t)n_nodes;
}

/* Fill map->parts (r = i = the ring's placement) from map->nodes. */
static void ring__compute(ring_map *map)
{
	ring__ring ring;
	map->n_replicas = ring__min_r(map->want_replicas, map->n_nodes);
	map->parts = xcalloc((size_t)map->n_partitions + 1, sizeof *map->parts);
	ring__ring_build(&ring, map->nodes, map->n_nodes);
	for (uint32_t p = 0; p < map->n_partitions; p++) {
		ring_part *part = &map->parts[p];
		part->n_r = ring__ring_walk(&ring, p, map->n_replicas, part->r);
		part->n_i = part->n_r;
		memcpy(part->i, part->r, sizeof part->i);
	}
	free(ring.vn);
}

uint32_t ring_target(const char *const *nodes, size_t n_nodes, uint32_t replicas, uint32_t p,
		     const char **out_r)
{
	ring_map tmp;
	memset(&tmp, 0, sizeof tmp);
	ring__set_nodes(&tmp, nodes, n_nodes);
	ring__ring ring;
	ring__ring_build(&ring, tmp.nodes, tmp.n_nodes);
	uint32_t idx[RING_REPLICAS_MAX];
	uint32_t want = replicas > RING_REPLICAS_MAX ? RING_REPLICAS_MAX : replicas;
	uint32_t n = ring__ring_walk(&ring, p, ring__min_r(want, tmp.n_nodes), idx);
	/* map back to the caller's pointers */
	for (uint32_t k = 0; k < n; k++) {
		for (size_t j = 0; j < n_nodes; j++) {
			if (strcmp(nodes[j], tmp.nodes[idx[k]]) == 0) {
				out_r[k] = nodes[j];
				break;
			}
		}
	}
	free(ring.vn);
	for (size_t i = 0; i < tmp.n_nodes; i++)
		free(tmp.nodes[i]);
	free(tmp.nodes);
	return n;
}

/* Are partition p's "r" and "i" the same (by id) in a and b? */
static int ring__same_partition(const ring_map *a, const ring_map *b, uint32_t p)
{
	const ring_part *x = &a->parts[p], *y = &b->parts[p];
	if (x->n_r != y->n_r || x->n_i != y->n_i)
		return 0;
	for (uint32_t k = 0; k < x->n_r; k++) {
		if (strcmp(a->nodes[x->r[k]], b->nodes[y->r[k]]) != 0)
			return 0;
	}
	for (uint32_t k = 0; k < x->n_i; k++) {
		if (strcmp(a->nodes[x->i[k]], b->nodes[y->i[k]]) != 0)
			return 0;
	}
	return 1;
}

ring_map *ring_map_place(const ring_map *old, const char *const *nodes, size_t n_nodes,
			 uint32_t n_partitions, uint32_t replicas, int *changed_r)
{
	ring_map *map = xcalloc(1, sizeof *map);
	map->n_partitions = old != NULL ? old->n_partitions : n_partitions;
	map->want_replicas = old != NULL ? old->want_replicas : replicas;
	if (map->n_partitions == 0 || map->n_partitions > RING_PARTITIONS_MAX)
		abort(); /* caller bug */
	if (map->want_replicas == 0 || map->want_replicas > RING_REPLICAS_MAX)
		abort();
	ring__set_nodes(map, nodes, n_nodes);
	ring__compute(map);

	if (old == NULL) {
		map->epoch = 1;
		for (uint32_t p = 0; p < map->n_partitions; p++)
			map->parts[p].epoch = 1;
		*changed_r = 1;
		return map;
	}
	int changed = old->n_nodes != map->n_nodes;
	for (size_t i = 0; !changed && i < map->n_nodes; i++)
		changed = strcmp(old->nodes[i], map->nodes[i]) != 0;
	uint64_t epoch = old->epoch + 1;
	for (uint32_t p = 0; p < map->n_partitions; p++) {
		if (ring__same_partition(old, map, p)) {
			map->parts[p].epoch = old->parts[p].epoch;
		} else {
			map->parts[p].epoch = epoch;
			changed = 1;
		}
	}
	map->epoch = changed ? epoch : old->epoch;
	*changed_r = changed;
	return map;
}

void ring_map_free(ring_map **mapp)
{
	ring_map *map = *mapp;
	if (map == NULL)
		return;
	*mapp = NULL;
	for (size_t i = 0; i < map->n_nodes; i++)
		free(map->nodes[i]);
	free(map->nodes);
	free(map->parts);
	free(map);
}

const char *ring_map_replica(const ring_map *map, uint32_t p, uint32_t i)
{
	if (p >= map->n_partitions || i >= map->parts[p].n_r)
		return NULL;
	return map->nodes[map->parts[p].r[i]];
}

const char *ring_map_insync(const ring_map *map, uint32_t p, uint32_t k)
{
	if (p >= map->n_partitions || k >= map->parts[p].n_i)
		return NULL;
	return map->nodes[map->parts[p].i[k]];
}

int ring_map_has_replica(const ring_map *map, uint32_t p, const char *id)
{
	for (uint32_t k = 0; p < map->n_partitions && k < map->parts[p].n_r; k++) {
		if (strcmp(map->nodes[map->parts[p].r[k]], id) == 0)
			return 1;
	}
	return 0;
}

int ring_map_is_insync(const ring_map *map, uint32_t p, const char *id)
{
	for (uint32_t k = 0; p < map->n_partitions && k < map->parts[p].n_i; k++) {
		if (strcmp(map->nodes[map->parts[p].i[k]], id) == 0)
			return 1;
	}
	return 0;
}

uint64_t ring_map_partition_epoch(const ring_map *map, uint32_t p)
{
	return p < map->n_partitions ? map->parts[p].epoch : 0;
}

char *ring_map_to_json(const ring_map *map)
{
	json_t *nodes = json_array();
	for (size_t i = 0; i < map->n_nodes; i++)
		json_array_append_new(nodes, json_string(map->nodes[i]));
	json_t *parts = json_array();
	for (uint32_t p = 0; p < map->n_partitions; p++) {
		const ring_part *part = &map->parts[p];
		json_t *r = json_array(), *in = json_array();
		for (uint32_t k = 0; k < part->n_r; k++)
			json_array_append_new(r, json_string(map->nodes[part->r[k]]));
		for (uint32_t k = 0; k < part->n_i; k++)
			json_array_append_new(in, json_string(map->nodes[part->i[k]]));
		json_array_append_new(parts, json_pack("{s:o,s:o,s:I}", "r", r, "i", in, "e",
						       (json_int_t)part->epoch));
	}
	json_t *root = json_pack("{s:i,s:I,s:I,s:I,s:o,s:o}", "version", RING_JSON_VERSION,
				 "partitions", (json_int_t)map->n_partitions, "epoch",
				 (json_int_t)map->epoch, "replicas",
				 (json_int_t)map->want_replicas, "nodes", nodes, "map", parts);
	char *s = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	char *out = xstrdup(s);
	free(s);
	return out;
}

static int ring__node_index(const ring_map *map, const char *id, uint32_t *idx_r)
{
	size_t lo = 0, hi = map->n_nodes;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(map->nodes[mid], id);
		if (c == 0) {
			*idx_r = (uint32_t)mid;
			return 0;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static int ring__parse(json_t *root, ring_map *map, const char **error_r)
{
	json_int_t version, partitions, epoch, replicas;
	json_t *nodes, *parts;
	json_error_t jerr;
	if (json_unpack_ex(root, &jerr, JSON_STRICT, "{s:I,s:I,s:I,s:I,s:o,s:o}", "version",
			   &version, "partitions", &partitions, "epoch", &epoch, "replicas",
			   &replicas, "nodes", &nodes, "map", &parts) < 0) {
		*error_r = "ring: missing or unexpected fields";
		return -1;
	}
	if (version != RING_JSON_VERSION) {
		*error_r = "ring: unsupported version";
		return -1;
	}
	if (partitions < 1 || partitions > RING_PARTITIONS_MAX || epoch < 0 || replicas < 1 ||
	    replicas > RING_REPLICAS_MAX) {
		*error_r = "ring: value out of range";
		return -1;
	}
	if (!json_is_array(nodes) || json_array_size(nodes) > RING_NODES_MAX ||
	    !json_is_array(parts) || json_array_size(parts) != (size_t)partitions) {
		*error_r = "ring: bad node list or partition count";
		return -1;
	}
	map->n_partitions = (uint32_t)partitions;
	map->epoch = (uint64_t)epoch;
	map->want_replicas = (uint32_t)replicas;
	size_t n_nodes = json_array_size(nodes);
	map->nodes = xcalloc(n_nodes + 1, sizeof *map->nodes);
	for (size_t i = 0; i < n_nodes; i++) {
		const char *id = json_string_value(json_array_get(nodes, i));
		if (id == NULL || id[0] == '\0' ||
		    (i > 0 && strcmp(map->nodes[i - 1], id) >= 0)) {
			*error_r = "ring: node ids must be sorted distinct strings";
			return -1;
		}
		map->nodes[i] = xstrdup(id);
		map->n_nodes = i + 1;
	}
	map->n_replicas = ring__min_r(map->want_replicas, n_nodes);
	map->parts = xcalloc((size_t)map->n_partitions + 1, sizeof *map->parts);
	for (uint32_t p = 0; p < map->n_partitions; p++) {
		json_t *part = json_array_get(parts, p), *r, *in = NULL;
		json_int_t e;
		ring_part *out = &map->parts[p];
		if (json_unpack_ex(part, &jerr, JSON_STRICT, "{s:o,s?o,s:I}", "r", &r, "i", &in,
				   "e", &e) < 0 ||
		    !json_is_array(r) || json_array_size(r) > RING_SLOTS_MAX ||
		    (in != NULL && (!json_is_array(in) || json_array_size(in) > json_array_size(r))) ||
		    e < 0 || e > epoch) {
			*error_r = "ring: bad partition entry";
			return -1;
		}
		out->epoch = (uint64_t)e;
		out->n_r = (uint32_t)json_array_size(r);
		for (uint32_t k = 0; k < out->n_r; k++) {
			const char *id = json_string_value(json_array_get(r, k));
			if (id == NULL || ring__node_index(map, id, &out->r[k]) < 0) {
				*error_r = "ring: replica names an unknown node";
				return -1;
			}
			for (uint32_t j = 0; j < k; j++) {
				if (out->r[j] == out->r[k]) {
					*error_r = "ring: duplicate replica";
					return -1;
				}
			}
		}
		if (in == NULL) {
			/* a map from before replication: every replica is in sync */
			out->n_i = out->n_r;
			memcpy(out->i, out->r, sizeof out->i);
			continue;
		}
		out->n_i = (uint32_t)json_array_size(in);
		for (uint32_t k = 0; k < out->n_i; k++) {
			const char *id = json_string_value(json_array_get(in, k));
			uint32_t idx;
			int member = 0;
			if (id != NULL && ring__node_index(map, id, &idx) == 0) {
				for (uint32_t j = 0; j < out->n_r; j++)
					member |= out->r[j] == idx;
				for (uint32_t j = 0; j < k; j++)
					member &= out->i[j] != idx;
			}
			if (!member) {
				*error_r = "ring: in-sync member not a distinct replica";
				return -1;
			}
			out->i[k] = idx;
		}
	}
	return 0;
}

int ring_map_from_json(const char *json, size_t len, ring_map **map_r, const char **error_r)
{
	json_error_t jerr;
	json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		*error_r = "ring: not JSON";
		return -1;
	}
	ring_map *map = xcalloc(1, sizeof *map);
	int ret = json_is_object(root) ? ring__parse(root, map, error_r) : -1;
	if (!json_is_object(root))
		*error_r = "ring: not an object";
	json_decref(root);
	if (ret < 0) {
		ring_map_free(&map);
		return -1;
	}
	*map_r = map;
	return 0;
}
