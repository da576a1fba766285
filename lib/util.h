/* util.h: small helpers shared by every daemon. Thread-safe, no state. */
#ifndef MAIL_UTIL_H
#define MAIL_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Milliseconds of CLOCK_MONOTONIC (for deadlines) and of the wall clock. */
uint64_t util_now_mono_ms(void);
int64_t util_now_wall_ms(void);

struct timespec;
/* *ts = CLOCK_MONOTONIC now + ms: the deadline of a pthread_cond_timedwait
 * on a condition variable set to that clock. */
void util_mono_deadline(struct timespec *ts, unsigned ms);

/* Parse "host:port" (IPv4 literal or name, port 1..65535; "[v6]:port" too)
 * into host_r (caller frees) and port_r. Returns 0, or -1 with *error_r set
 * to a static string. */
int util_hostport_parse(const char *s, char **host_r, int *port_r, const char **error_r);

/* Parse an IP literal and a port, "A.B.C.D:PORT" or "[V6]:PORT" (port
 * 1..65535; no name: where a name cannot be resolved yet, like the DNS
 * server itself), into *addr_r (AF_INET or AF_INET6, port set). Returns
 * 0, or -1 with *error_r set to a static string. */
struct sockaddr_storage;
int util_ipport_parse(const char *s, struct sockaddr_storage *addr_r, const char **error_r);

/* Fill out with 2*nbytes lowercase hex chars of CSPRNG output + NUL
 * (out must hold 2*nbytes+1). */
void util_random_hex(char *out, size_t nbytes);

/* 64-bit FNV-1a: stable across builds and machines (it places keys on the
 * ring, so it must never change). */
uint64_t util_hash64(const void *data, size_t len);

/* Normalise a mail address in place-free fashion: returns a new heap string
 * "local@domain" with the domain lowercased and the local part lowercased
 * (hosted mailboxes are case-insensitive, docs/architecture.md), or NULL when
 * the address is not a plausible addr-spec (no '@', empty parts, spaces,
 * control characters, longer than 254 bytes). */
char *util_address_normalize(const char *addr, size_t len);
/* Points at the domain part of a normalised address (after '@'). */
const char *util_address_domain(const char *normalized);

/* Is s a plausible domain name (LDH labels, dots, 1..253 bytes)? */
int util_domain_valid(const char *s);

#endif
