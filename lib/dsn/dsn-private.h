/* dsn-private.h: helpers shared by lib/dsn's files; not part of the
 * contract. */
#ifndef MAIL_DSN_PRIVATE_H
#define MAIL_DSN_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

/* The length (1..4) of the well-formed UTF-8 character (RFC 3629: no
 * overlong form, no surrogate, at most U+10FFFF) at s (len octets
 * available), its code point in *cp_r; 0 when the octets there are not
 * one. */
size_t dsn__utf8_char(const uint8_t *s, size_t len, uint32_t *cp_r);

/* 1 when every octet of s is US-ASCII (< 0x80). */
int dsn__is_ascii(const char *s, size_t len);

#endif
