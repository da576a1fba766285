/* cidr.c: see cidr.h. */
#include "cidr.h"

#include "xalloc.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

/* One entry from text[0..len). 0 or -1. */
static int cidr__entry(const char *text, size_t len, struct cidr_entry *e)
{
	char tmp[64];
	if (len == 0 || len >= sizeof tmp)
		return -1;
	memcpy(tmp, text, len);
	tmp[len] = '\0';
	char *slash = strchr(tmp, '/');
	long prefix = -1;
	if (slash != NULL) {
		*slash = '\0';
		char *end;
		if (slash[1] == '\0')
			return -1;
		prefix = strtol(slash + 1, &end, 10);
		if (*end != '\0' || prefix < 0)
			return -1;
	}
	memset(e, 0, sizeof *e);
	if (inet_pton(AF_INET, tmp, e->addr) == 1) {
		e->family = AF_INET;
		if (prefix > 32)
			return -1;
		e->prefix = prefix < 0 ? 32 : (unsigned)prefix;
	} else if (inet_pton(AF_INET6, tmp, e->addr) == 1) {
		e->family = AF_INET6;
		if (prefix > 128)
			return -1;
		e->prefix = prefix < 0 ? 128 : (unsigned)prefix;
	} else {
		return -1;
	}
	return 0;
}

int cidr_list_parse(const char *text, struct cidr_list *list_r, const char **error_r)
{
	struct cidr_list l = { NULL, 0 };
	const char *p = text != NULL ? text : "";
	while (*p != '\0') {
		while (*p == ' ' || *p == ',')
			p++;
		size_t len = strcspn(p, ", ");
		if (len == 0)
			break;
		if (l.n == CIDR_MAX_ENTRIES) {
			*error_r = "too many networks in the list";
			cidr_list_free(&l);
			return -1;
		}
		l.entries = xrealloc(l.entries, (l.n + 1) * sizeof *l.entries);
		if (cidr__entry(p, len, &l.entries[l.n]) < 0) {
			*error_r = "not a network (ADDRESS or ADDRESS/BITS)";
			cidr_list_free(&l);
			return -1;
		}
		l.n++;
		p += len;
	}
	*list_r = l;
	return 0;
}

void cidr_list_free(struct cidr_list *list)
{
	free(list->entries);
	list->entries = NULL;
	list->n = 0;
}

static int cidr__prefix_eq(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	unsigned full = bits / 8, rest = bits % 8;
	if (memcmp(a, b, full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (a[full] & mask) == (b[full] & mask);
}

static int cidr__match_bytes(const struct cidr_list *list, int family, const uint8_t *addr)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	if (family == AF_INET6 && memcmp(addr, mapped, 12) == 0) {
		family = AF_INET;
		addr += 12;
	}
	for (size_t k = 0; k < list->n; k++) {
		const struct cidr_entry *e = &list->entries[k];
		if (e->family == family && cidr__prefix_eq(e->addr, addr, e->prefix))
			return 1;
	}
	return 0;
}

int cidr_match(const struct cidr_list *list, const struct sockaddr *sa)
{
	if (list == NULL || sa == NULL)
		return 0;
	if (sa->sa_family == AF_INET)
		return cidr__match_bytes(list, AF_INET,
					 (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr);
	if (sa->sa_family == AF_INET6)
		return cidr__match_bytes(
			list, AF_INET6,
			(const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr);
	return 0;
}

int cidr_match_text(const struct cidr_list *list, const char *ip)
{
	uint8_t addr[16];
	if (list == NULL || ip == NULL)
		return 0;
	if (inet_pton(AF_INET, ip, addr) == 1)
		return cidr__match_bytes(list, AF_INET, addr);
	if (inet_pton(AF_INET6, ip, addr) == 1)
		return cidr__match_bytes(list, AF_INET6, addr);
	return 0;
}

int cidr_is_loopback_text(const char *ip)
{
	struct cidr_entry e[2] = {
		{ AF_INET, { 127 }, 8 },
		{ AF_INET6, { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 }, 128 },
	};
	struct cidr_list loopback = { e, 2 };
	return cidr_match_text(&loopback, ip);
}
