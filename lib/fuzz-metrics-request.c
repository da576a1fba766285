/* libFuzzer target: the metrics HTTP request-head check on any prefix. */
#include <stddef.h>
#include <stdint.h>

#include "metrics.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int status;
	if (size > METRICS_MAX_REQUEST + 16)
		size = METRICS_MAX_REQUEST + 16;
	for (size_t len = 0; len <= size; len += 1 + len / 4) {
		int r = metrics_request_check((const char *)data, len, &status);
		if (r == 1 && status != 200 && status != 400 && status != 404 && status != 405)
			__builtin_trap();
	}
	return 0;
}
