/* fuzz-smtp-data.c: the DATA reader fed whole and in chunks must agree on
 * where the message ends, its size and its body, and never store more than
 * the limit. Byte 0 picks the chunk size, byte 1 the size limit. */
#include "smtp-parser.h"

#include <stdlib.h>
#include <string.h>

struct result {
	int done;
	size_t consumed, size, body_len;
	int too_big;
	uint8_t *body;
};

static void run(const uint8_t *data, size_t len, size_t chunk, size_t max, struct result *res)
{
	smtp_data_reader r;
	smtp_data_reader_init(&r, max);
	size_t off = 0;
	int done = 0;
	while (off < len && !done) {
		size_t n = len - off < chunk ? len - off : chunk;
		size_t used;
		done = smtp_data_reader_feed(&r, data + off, n, &used);
		if (used > n || (!done && used != n) || r.body.len > max)
			abort();
		off += used;
	}
	res->done = done;
	res->consumed = off;
	res->size = r.size;
	res->too_big = r.too_big;
	res->body_len = r.body.len;
	res->body = r.body.len > 0 ? malloc(r.body.len) : NULL;
	if (r.body.len > 0)
		memcpy(res->body, r.body.data, r.body.len);
	if (!r.too_big && r.size != r.body.len)
		abort();
	smtp_data_reader_deinit(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	if (len < 2)
		return 0;
	size_t chunk = (size_t)(data[0] % 16) + 1;
	size_t max = (size_t)data[1] * 4;
	struct result a, b;
	run(data + 2, len - 2, len, max, &a);
	run(data + 2, len - 2, chunk, max, &b);
	if (a.done != b.done || a.consumed != b.consumed || a.size != b.size ||
	    a.too_big != b.too_big || a.body_len != b.body_len ||
	    (a.body_len > 0 && memcmp(a.body, b.body, a.body_len) != 0))
		abort();
	free(a.body);
	free(b.body);
	return 0;
}
