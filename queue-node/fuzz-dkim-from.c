/* fuzz-dkim-from.c: libFuzzer target for the From: parser that picks the
 * DKIM signing domain of a submitted message (queue_dkim_from_domain,
 * queue-dkim.h): the header section comes from the network (a user's
 * client, through SMTP). Checked on every input: the call returns -1, 0
 * or 1; on 1 the domain is a NUL-terminated, non-empty, lowercase string
 * of at most DKIM_DOMAIN_MAX bytes. ASan/UBSan check the rest. */
#include "queue-dkim.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char domain[DKIM_DOMAIN_MAX + 1];
	memset(domain, 'x', sizeof domain);
	int ret = queue_dkim_from_domain(data, size, domain);
	if (ret < -1 || ret > 1)
		abort();
	if (ret == 1) {
		size_t n = strnlen(domain, sizeof domain);
		if (n == 0 || n > DKIM_DOMAIN_MAX)
			abort();
		for (size_t i = 0; i < n; i++)
			if (domain[i] >= 'A' && domain[i] <= 'Z')
				abort();
	}
	return 0;
}
