#include "daemon-options.h"

#include "xalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int daemon_options_parse_uint(const char *s, unsigned min, unsigned max, unsigned *value_r)
{
	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*value_r = (unsigned)v;
	return 0;
}

int daemon_options_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *value_r)
{
	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*value_r = (uint64_t)v;
	return 0;
}

int daemon_options_parse_listen(const char *s, char **host_r, int *port_r,
				const char **error_r)
{
	const char *colon = strrchr(s, ':');
	if (colon == NULL || colon == s) {
		*error_r = "expected host:port";
		return -1;
	}
	const char *host = s;
	size_t host_len = (size_t)(colon - s);
	if (host[0] == '[') {
		if (host_len < 3 || host[host_len - 1] != ']') {
			*error_r = "bad [v6] address";
			return -1;
		}
		host++;
		host_len -= 2;
	}
	unsigned port;
	if (daemon_options_parse_uint(colon + 1, 0, 65535, &port) < 0) {
		*error_r = "port must be 0..65535";
		return -1;
	}
	*host_r = xstrndup(host, host_len);
	*port_r = (int)port;
	return 0;
}
