/* fuzz-imapc-reader.c: libFuzzer target of the benchmarks' IMAP response
 * reader (imap-client.h, imapc_reader_read). The input is fed whole, then
 * again in pieces whose sizes come from the input's first byte; both runs
 * must give the same responses. Small limits, so the limit paths run. */
#include "imap-client.h"

#include <stdlib.h>
#include <string.h>

static size_t feed(const uint8_t *data, size_t size, size_t step, uint64_t *sum_r)
{
	struct imapc_limits lim = {.max_line = 512, .max_literal = 4096};
	struct imapc_reader r;
	imapc_reader_init(&r, &lim);
	size_t pos = 0, n = 0;
	*sum_r = 0;
	while (pos < size) {
		size_t len = size - pos < step ? size - pos : step;
		size_t off = 0;
		while (off < len) {
			size_t used;
			struct imapc_response resp;
			const char *error;
			int ret = imapc_reader_read(&r, data + pos + off, len - off, &used, &resp,
						    &error);
			if (ret < 0)
				goto out;
			if (used > len - off)
				abort();
			off += used;
			if (ret == 1) {
				if (resp.len > lim.max_line || strlen(resp.text) > resp.len)
					abort();
				n++;
				*sum_r += resp.len * 31 + resp.literal_bytes;
			} else if (off != len) {
				abort();  /* 0 means everything was consumed */
			}
		}
		pos += len;
	}
out:
	imapc_reader_deinit(&r);
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t step = (size_t)data[0] % 17 + 1;
	uint64_t s1, s2;
	size_t a = feed(data + 1, size - 1, size, &s1);
	size_t b = feed(data + 1, size - 1, step, &s2);
	(void)a;
	(void)b;
	/* a reader that failed stops early in one run and maybe later in the
	 * other (the limit is met at a different byte): compare only whole
	 * runs' prefixes by count */
	if (a == b && s1 != s2)
		abort();
	return 0;
}
