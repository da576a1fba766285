/* cidr.h: lists of networks ("127.0.0.0/8,::1/128,10.1.2.3"), matched
 * against peer addresses (trusted networks, loopback checks).
 *
 * A list is parsed once (cidr_list_parse) and read-only afterwards. An
 * address without a prefix length is a single host. IPv4-mapped IPv6
 * peers (::ffff:a.b.c.d) match IPv4 entries.
 */
#ifndef MAIL_CIDR_H
#define MAIL_CIDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define CIDR_MAX_ENTRIES 256u

struct cidr_entry {
	int family;         /* AF_INET or AF_INET6 */
	uint8_t addr[16];   /* network bytes (4 used for AF_INET) */
	unsigned prefix;    /* bits */
};

struct cidr_list {
	struct cidr_entry *entries;
	size_t n;
};

/* Parse a comma-separated list (spaces allowed; "" is the empty list).
 * 0, or -1 with *error_r (static text) and nothing allocated. */
int cidr_list_parse(const char *text, struct cidr_list *list_r, const char **error_r);
void cidr_list_free(struct cidr_list *list);
/* 1 when sa (AF_INET or AF_INET6) is inside one of the networks. */
int cidr_match(const struct cidr_list *list, const struct sockaddr *sa);
/* The same for an address in text ("127.0.0.1", "::1"); 0 if unparsable. */
int cidr_match_text(const struct cidr_list *list, const char *ip);
/* 1 for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104. */
int cidr_is_loopback_text(const char *ip);

#endif
