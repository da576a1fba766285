/* conncheck-private.h: the pure parts of lib/conncheck (conncheck-names.c)
 * that the checker (conncheck.c), the tests and the fuzz target share.
 * Not for callers: conncheck.h is the contract.
 *
 * Everything here reads only its arguments, writes only its outputs
 * (bounded by their sizes) and never fails by allocation: what comes from
 * DNS (PTR names, A records, TXT) is read here and nowhere else.
 */
#ifndef MAIL_CONNCHECK_PRIVATE_H
#define MAIL_CONNCHECK_PRIVATE_H

#include "conncheck.h"

#include <arpa/inet.h>

/* name as a DNS name of at least min_labels labels (conncheck.h "Names"):
 * lowercase, one trailing dot dropped, into out. Returns 0, or -1 (out
 * "" when size > 0). */
int conncheck__name(const char *name, size_t min_labels, char *out, size_t size);

/* The client as checked: AF_INET or AF_INET6 copied, an IPv4-mapped IPv6
 * address as AF_INET. Returns 0, or -1 for another family (or NULL). */
int conncheck__client_addr(const struct sockaddr *addr, struct sockaddr_storage *out);

/* The DNSBL name of addr (as conncheck__client_addr gave it) under zone
 * (already normalised). Returns 0, or -1 when over 253 bytes or out is
 * too small (out "" when size > 0). */
int conncheck__reverse_name(const struct sockaddr_storage *addr, const char *zone, char *out,
			    size_t size);

/* The A answer of a list zone into z: status, detail and addrs
 * (conncheck.h: LISTED, IGNORED, or NOT_LISTED when it holds no IPv4
 * address). addrs as dns_addrs gives them. */
void conncheck__bl_classify(const struct sockaddr_storage *addrs, size_t count,
			    struct conncheck_bl_zone *z);

/* data[0..len) (a TXT record) as the zone's reason text: cut to
 * CONNCHECK_TXT_MAX bytes (and to size - 1), bytes outside printable
 * ASCII made '?', NUL-terminated. size > 0. */
void conncheck__txt_clean(const char *data, size_t len, char *out, size_t size);

/* Does one of addrs[0..count) equal client (family and address)? */
int conncheck__addr_match(const struct sockaddr_storage *client,
			  const struct sockaddr_storage *addrs, size_t count);

#endif
