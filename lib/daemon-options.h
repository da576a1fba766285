/* daemon-options.h: option parsing helpers for daemon main()s. Pure
 * functions, no state. */
#ifndef MAIL_DAEMON_OPTIONS_H
#define MAIL_DAEMON_OPTIONS_H

#include <stdint.h>

/* Parse a decimal in [min, max]. Returns 0, or -1. */
int daemon_options_parse_uint(const char *s, unsigned min, unsigned max, unsigned *value_r);
/* Parse a decimal in [min, max] into 64 bits. Returns 0, or -1. */
int daemon_options_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *value_r);
/* Parse a listen address "host:port" or "[v6]:port", port 0..65535 (0 = any
 * free port). *host_r is heap (caller frees). Returns 0, or -1 with *error_r
 * (static text). */
int daemon_options_parse_listen(const char *s, char **host_r, int *port_r,
				const char **error_r);

#endif
