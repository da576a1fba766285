#include "util.h"
#include "xalloc.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

void util_mono_deadline(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

uint64_t util_now_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int64_t util_now_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int util_hostport_parse(const char *s, char **host_r, int *port_r, const char **error_r)
{
	const char *colon;
	const char *host = s;
	size_t hostlen;
	if (s[0] == '[') {
		const char *end = strchr(s, ']');
		if (end == NULL || end[1] != ':') {
			*error_r = "bad [ipv6]:port";
			return -1;
		}
		host = s + 1;
		hostlen = (size_t)(end - host);
		colon = end + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL) {
			*error_r = "missing :port";
			return -1;
		}
		hostlen = (size_t)(colon - s);
	}
	if (hostlen == 0) {
		*error_r = "empty host";
		return -1;
	}
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535) {
		*error_r = "bad port";
		return -1;
	}
	*host_r = xstrndup(host, hostlen);
	*port_r = (int)port;
	return 0;
}

int util_ipport_parse(const char *s, struct sockaddr_storage *addr_r, const char **error_r)
{
	char host[INET6_ADDRSTRLEN];
	const char *port_text;
	int v6 = s[0] == '[';
	if (v6) {
		const char *end = strchr(s, ']');
		if (end == NULL || end[1] != ':' || (size_t)(end - s - 1) >= sizeof host) {
			*error_r = "expected [IPv6]:PORT";
			return -1;
		}
		memcpy(host, s + 1, (size_t)(end - s - 1));
		host[end - s - 1] = '\0';
		port_text = end + 2;
	} else {
		const char *colon = strchr(s, ':');
		if (colon == NULL || (size_t)(colon - s) >= sizeof host) {
			*error_r = "expected IPv4:PORT or [IPv6]:PORT";
			return -1;
		}
		memcpy(host, s, (size_t)(colon - s));
		host[colon - s] = '\0';
		port_text = colon + 1;
	}
	char *end;
	long port = strtol(port_text, &end, 10);
	if (*port_text < '0' || *port_text > '9' || *end != '\0' || port < 1 || port > 65535) {
		*error_r = "port must be 1..65535";
		return -1;
	}
	memset(addr_r, 0, sizeof *addr_r);
	if (v6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)addr_r;
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
			*error_r = "not an IPv6 address";
			return -1;
		}
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)addr_r;
		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
			*error_r = "not an IPv4 address (an IPv6 one goes in [])";
			return -1;
		}
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
	}
	return 0;
}

void util_random_hex(char *out, size_t nbytes)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char raw[64];
	size_t o = 0;
	while (nbytes > 0) {
		size_t n = nbytes < sizeof raw ? nbytes : sizeof raw;
		if (RAND_bytes(raw, (int)n) != 1)
			abort();
		for (size_t i = 0; i < n; i++) {
			out[o++] = hex[raw[i] >> 4];
			out[o++] = hex[raw[i] & 15];
		}
		nbytes -= n;
	}
	out[o] = '\0';
}

uint64_t util_hash64(const void *data, size_t len)
{
	const unsigned char *p = data;
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	/* final avalanche (splitmix64) so nearby keys spread over the ring */
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebULL;
	h ^= h >> 31;
	return h;
}

int util_domain_valid(const char *s)
{
	size_t len = strlen(s);
	if (len == 0 || len > 253 || s[0] == '.' || s[len - 1] == '.')
		return 0;
	size_t label = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return 0;
			label = 0;
			continue;
		}
		if (!(isalnum(c) || c == '-'))
			return 0;
		if (label == 0 && c == '-')
			return 0;
		if (++label > 63)
			return 0;
	}
	return 1;
}

char *util_address_normalize(const char *addr, size_t len)
{
	if (len == 0 || len > 254)
		return NULL;
	const char *at = memrchr(addr, '@', len);
	if (at == NULL || at == addr || at == addr + len - 1)
		return NULL;
	size_t local_len = (size_t)(at - addr);
	if (local_len > 64)
		return NULL;
	char *out = xmalloc(len + 1);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)addr[i];
		if (c <= 0x20 || c >= 0x7f || c == '<' || c == '>' || c == '"' ||
		    c == '\\' || c == ',' || c == ';' || c == '(' || c == ')' ||
		    (c == '@' && addr + i != at)) {
			free(out);
			return NULL;
		}
		out[i] = (char)tolower(c);
	}
	out[len] = '\0';
	if (!util_domain_valid(out + local_len + 1) || out[0] == '.' ||
	    out[local_len - 1] == '.' || strstr(out, "..") != NULL) {
		free(out);
		return NULL;
	}
	return out;
}

const char *util_address_domain(const char *normalized)
{
	const char *at = strrchr(normalized, '@');
	return at ? at + 1 : normalized;
}
