/* fuzz-ring.c: libFuzzer target for ring_map_from_json (the ring map is read
 * from etcd, where any writer could have put anything). A map that parses
 * must serialise back to JSON that parses to the same map. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ring.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ring_map *map;
	const char *error;
	if (ring_map_from_json((const char *)data, size, &map, &error) < 0)
		return 0;
	char *json = ring_map_to_json(map);
	ring_map *back;
	if (ring_map_from_json(json, strlen(json), &back, &error) < 0)
		abort();
	char *again = ring_map_to_json(back);
	if (strcmp(json, again) != 0)
		abort();
	for (uint32_t p = 0; p < map->n_partitions; p++)
		(void)ring_map_replica(map, p, 0);
	free(again);
	free(json);
	ring_map_free(&back);
	ring_map_free(&map);
	return 0;
}
