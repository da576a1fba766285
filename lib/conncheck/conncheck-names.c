/* conncheck-names.c: names and answers of lib/conncheck, no DNS
 * (conncheck-private.h): the names asked, what PTR names and list-zone
 * answers are taken to mean, the TXT made safe to show. Fuzzed by
 * fuzz-conncheck.c.
 */
#include "conncheck-private.h"

#include <stdio.h>
#include <string.h>

int conncheck__name(const char *name, size_t min_labels, char *out, size_t size)
{
	if (size > 0)
		out[0] = '\0';
	/* reading stops one byte past the longest name with its dot */
	size_t len = strnlen(name, CONNCHECK_NAME_MAX + 2);
	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len > CONNCHECK_NAME_MAX || len >= size)
		return -1;
	size_t labels = 1, label = 0;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c == '.') {
			/* an empty label, or one ending in '-' */
			if (label == 0 || out[i - 1] == '-')
				goto bad;
			labels++;
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
			   (c == '-' && label > 0)) {
			if (++label > 63)
				goto bad;
		} else {
			goto bad;
		}
		out[i] = c;
	}
	/* "a.b." once its one trailing dot is gone: an empty last label */
	if (label == 0 || out[len - 1] == '-' || labels < min_labels)
		goto bad;
	out[len] = '\0';
	return 0;
bad:
	out[0] = '\0';
	return -1;
}

int conncheck__client_addr(const struct sockaddr *addr, struct sockaddr_storage *out)
{
	memset(out, 0, sizeof *out);
	if (addr == NULL)
		return -1;
	if (addr->sa_family == AF_INET) {
		memcpy(out, addr, sizeof(struct sockaddr_in));
		((struct sockaddr_in *)out)->sin_port = 0;
		return 0;
	}
	if (addr->sa_family != AF_INET6)
		return -1;
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)addr;
	if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
		/* a dual-stack listener's IPv4 client: listed, named and
		 * resolved as IPv4 */
		struct sockaddr_in *s4 = (struct sockaddr_in *)out;
		s4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, &s6->sin6_addr.s6_addr[12], 4);
		return 0;
	}
	struct sockaddr_in6 *o6 = (struct sockaddr_in6 *)out;
	o6->sin6_family = AF_INET6;
	o6->sin6_addr = s6->sin6_addr;
	return 0;
}

int conncheck__reverse_name(const struct sockaddr_storage *addr, const char *zone, char *out,
			    size_t size)
{
	/* the longest prefix: 32 nibbles and their dots */
	char prefix[64 + 1];
	size_t o = 0;
	if (addr->ss_family == AF_INET) {
		const uint8_t *b = (const uint8_t *)&((const struct sockaddr_in *)addr)->sin_addr;
		o = (size_t)snprintf(prefix, sizeof prefix, "%u.%u.%u.%u.", b[3], b[2], b[1], b[0]);
	} else if (addr->ss_family == AF_INET6) {
		static const char hex[] = "0123456789abcdef";
		const uint8_t *b = ((const struct sockaddr_in6 *)addr)->sin6_addr.s6_addr;
		for (int i = 15; i >= 0; i--) {
			prefix[o++] = hex[b[i] & 0xf];
			prefix[o++] = '.';
			prefix[o++] = hex[b[i] >> 4];
			prefix[o++] = '.';
		}
		prefix[o] = '\0';
	}
	size_t zlen = strlen(zone);
	if (o == 0 || o + zlen > CONNCHECK_NAME_MAX || o + zlen >= size) {
		if (size > 0)
			out[0] = '\0';
		return -1;
	}
	memcpy(out, prefix, o);
	memcpy(out + o, zone, zlen + 1);
	return 0;
}

int conncheck_name_normalize(const char *name, char *out, size_t size)
{
	return conncheck__name(name, 2, out, size);
}

int conncheck_reverse_name(const struct sockaddr *addr, const char *zone, char *out, size_t size)
{
	struct sockaddr_storage ss;
	char z[CONNCHECK_NAME_MAX + 1];
	if (conncheck__client_addr(addr, &ss) < 0 || conncheck__name(zone, 2, z, sizeof z) < 0) {
		if (size > 0)
			out[0] = '\0';
		return -1;
	}
	return conncheck__reverse_name(&ss, z, out, size);
}

void conncheck__bl_classify(const struct sockaddr_storage *addrs, size_t count,
			    struct conncheck_bl_zone *z)
{
	struct in_addr listed[CONNCHECK_BL_ADDRS_MAX], other[CONNCHECK_BL_ADDRS_MAX];
	size_t nlisted = 0, nother = 0;
	int refused = 0;
	for (size_t i = 0; i < count; i++) {
		if (addrs[i].ss_family != AF_INET)
			continue; /* list zones answer A; an AAAA says nothing */
		struct in_addr a = ((const struct sockaddr_in *)&addrs[i])->sin_addr;
		uint32_t h = ntohl(a.s_addr);
		if (h >> 24 == 127 && h >> 8 != 0x7fffff) {
			if (nlisted < CONNCHECK_BL_ADDRS_MAX)
				listed[nlisted++] = a;
			continue;
		}
		/* 127.255.255.0/24: the operator's "not answered for you" */
		refused |= h >> 24 == 127;
		if (nother < CONNCHECK_BL_ADDRS_MAX)
			other[nother++] = a;
	}
	if (nlisted > 0) {
		z->status = CONNCHECK_BL_LISTED;
		z->detail = "listed";
		memcpy(z->addrs, listed, nlisted * sizeof listed[0]);
		z->naddrs = nlisted;
	} else if (nother > 0) {
		z->status = CONNCHECK_BL_IGNORED;
		z->detail = refused ? "zone refused the query" : "answer outside 127/8";
		memcpy(z->addrs, other, nother * sizeof other[0]);
		z->naddrs = nother;
	} else {
		z->status = CONNCHECK_BL_NOT_LISTED;
		z->detail = "no A record";
		z->naddrs = 0;
	}
}

void conncheck__txt_clean(const char *data, size_t len, char *out, size_t size)
{
	size_t n = len;
	if (n > CONNCHECK_TXT_MAX)
		n = CONNCHECK_TXT_MAX;
	if (n > size - 1)
		n = size - 1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)data[i];
		/* no CR, LF or NUL can reach a reply line or a header */
		out[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	out[n] = '\0';
}

int conncheck__addr_match(const struct sockaddr_storage *client,
			  const struct sockaddr_storage *addrs, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		if (addrs[i].ss_family != client->ss_family)
			continue;
		if (client->ss_family == AF_INET &&
		    ((const struct sockaddr_in *)&addrs[i])->sin_addr.s_addr ==
			    ((const struct sockaddr_in *)client)->sin_addr.s_addr)
			return 1;
		if (client->ss_family == AF_INET6 &&
		    memcmp(&((const struct sockaddr_in6 *)&addrs[i])->sin6_addr,
			   &((const struct sockaddr_in6 *)client)->sin6_addr,
			   sizeof(struct in6_addr)) == 0)
			return 1;
	}
	return 0;
}
