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

/* Fill map->replicas from map->nodes. */
static void ring__compute(ring_map *map)
{
	size_t n_vnodes = map->n_nodes * RING_VNODES;
	map->n_replicas = map->want_replicas < map->n_nodes ? map->want_replicas
							    : (uint32_t)map->n_nodes;
	map->replicas = xcalloc((size_t)map->n_partitions * map->n_replicas + 1,
				sizeof *map->replicas);
	if (n_vnodes == 0)
		return;
	ring__vnode *vn = xmalloc(n_vnodes * sizeof *vn);
	for (size_t n = 0; n < map->n_nodes; n++) {
		for (uint32_t i = 0; i < RING_VNODES; i++) {
			char *name = xasprintf("%s#%u", map->nodes[n], i);
			vn[n * RING_VNODES + i].point = util_hash64(name, strlen(name));
			vn[n * RING_VNODES + i].node = (uint32_t)n;
			free(name);
		}
	}
	qsort(vn, n_vnodes, sizeof *vn, ring__vnode_cmp);

	for (uint32_t p = 0; p < map->n_partitions; p++) {
		uint64_t point = ring__partition_point(p);
		/* first vnode with vn.point >= point */
		size_t lo = 0, hi = n_vnodes;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (vn[mid].point < point)
				lo = mid + 1;
			else
				hi = mid;
		}
		uint32_t *out = &map->replicas[(size_t)p * map->n_replicas];
		uint32_t got = 0;
		for (size_t k = 0; k < n_vnodes && got < map->n_replicas; k++) {
			uint32_t node = vn[(lo + k) % n_vnodes].node;
			int dup = 0;
			for (uint32_t j = 0; j < got; j++)
				dup |= out[j] == node;
			if (!dup)
				out[got++] = node;
		}
	}
	free(vn);
}

/* Is partition p's replica list the same (by id) in a and b? */
static int ring__same_partition(const ring_map *a, const ring_map *b, uint32_t p)
{
	if (a->n_replicas != b->n_replicas)
		return 0;
	for (uint32_t i = 0; i < a->n_replicas; i++) {
		if (strcmp(ring_map_replica(a, p, i), ring_map_replica(b, p, i)) != 0)
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
	map->part_epoch = xcalloc(map->n_partitions, sizeof *map->part_epoch);

	if (old == NULL) {
		map->epoch = 1;
		for (uint32_t p = 0; p < map->n_partitions; p++)
			map->part_epoch[p] = 1;
		*changed_r = 1;
		return map;
	}
	int changed = old->n_nodes != map->n_nodes;
	for (size_t i = 0; !changed && i < map->n_nodes; i++)
		changed = strcmp(old->nodes[i], map->nodes[i]) != 0;
	uint64_t epoch = old->epoch + 1;
	for (uint32_t p = 0; p < map->n_partitions; p++) {
		if (ring__same_partition(old, map, p)) {
			map->part_epoch[p] = old->part_epoch[p];
		} else {
			map->part_epoch[p] = epoch;
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
	free(map->replicas);
	free(map->part_epoch);
	free(map);
}

const char *ring_map_replica(const ring_map *map, uint32_t p, uint32_t i)
{
	if (p >= map->n_partitions || i >= map->n_replicas)
		return NULL;
	return map->nodes[map->replicas[(size_t)p * map->n_replicas + i]];
}

uint64_t ring_map_partition_epoch(const ring_map *map, uint32_t p)
{
	return p < map->n_partitions ? map->part_epoch[p] : 0;
}

char *ring_map_to_json(const ring_map *map)
{
	json_t *nodes = json_array();
	for (size_t i = 0; i < map->n_nodes; i++)
		json_array_append_new(nodes, json_string(map->nodes[i]));
	json_t *parts = json_array();
	for (uint32_t p = 0; p < map->n_partitions; p++) {
		json_t *r = json_array();
		for (uint32_t i = 0; i < map->n_replicas; i++)
			json_array_append_new(r, json_string(ring_map_replica(map, p, i)));
		json_array_append_new(parts, json_pack("{s:o,s:I}", "r", r, "e",
						       (json_int_t)map->part_epoch[p]));
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
	map->n_replicas = map->want_replicas < n_nodes ? map->want_replicas : (uint32_t)n_nodes;
	map->replicas = xcalloc((size_t)map->n_partitions * map->n_replicas + 1,
				sizeof *map->replicas);
	map->part_epoch = xcalloc(map->n_partitions, sizeof *map->part_epoch);
	for (uint32_t p = 0; p < map->n_partitions; p++) {
		json_t *part = json_array_get(parts, p), *r;
		json_int_t e;
		if (json_unpack_ex(part, &jerr, JSON_STRICT, "{s:o,s:I}", "r", &r, "e", &e) < 0 ||
		    !json_is_array(r) || json_array_size(r) != map->n_replicas || e < 0 ||
		    e > epoch) {
			*error_r = "ring: bad partition entry";
			return -1;
		}
		map->part_epoch[p] = (uint64_t)e;
		uint32_t *out = &map->replicas[(size_t)p * map->n_replicas];
		for (uint32_t i = 0; i < map->n_replicas; i++) {
			const char *id = json_string_value(json_array_get(r, i));
			if (id == NULL || ring__node_index(map, id, &out[i]) < 0) {
				*error_r = "ring: replica names an unknown node";
				return -1;
			}
			for (uint32_t j = 0; j < i; j++) {
				if (out[j] == out[i]) {
					*error_r = "ring: duplicate replica";
					return -1;
				}
			}
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
