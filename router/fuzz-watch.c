/* fuzz-watch.c: libFuzzer target for the etcd watch-stream parser. The first
 * byte picks the chunk size, so line reassembly across chunks is fuzzed
 * too. */
#include <stdint.h>
#include <stdlib.h>

#include "etcd-private.h"

static int count_cb(const etcd_event *ev, void *arg)
{
	(void)ev;
	(*(int *)arg)++;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	size_t chunk = (size_t)data[0] + 1;
	data++, size--;
	etcd_client *c = etcd_client_create(&(etcd_conf){ .url = "http://127.0.0.1:1" });
	int events = 0, result;
	etcd__watch_begin(c, count_cb, &events);
	for (size_t off = 0; off < size; off += chunk) {
		size_t n = size - off < chunk ? size - off : chunk;
		if (!etcd__watch_feed(c, (const char *)data + off, n, &result))
			break;
	}
	etcd_client_destroy(&c);
	return 0;
}
