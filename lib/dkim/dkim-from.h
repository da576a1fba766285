/* dkim-from.h: the author domain of a message (library maildkim), for the
 * DKIM signer (its key signs) and DMARC (its policy applies).
 *
 * The header section (up to the first empty line, at most header_max
 * bytes) must hold exactly one From field (name matched
 * case-insensitively; folded lines unfolded). Its value is read as RFC
 * 5322 mailboxes: display names, quoted strings, comments (nested), angle
 * brackets, a source route inside them, group syntax. Each mailbox's
 * domain is the part after the last '@' of its addr-spec, lowercased.
 * Several mailboxes count only when they all have the same domain. No
 * From, two or more, an address that does not parse, a domain literal,
 * domains that differ: no domain. The value comes from the network: every
 * buffer is bounded, nothing is read past len. Pure, thread-safe.
 */
#ifndef MAIL_DKIM_FROM_H
#define MAIL_DKIM_FROM_H

#include <stddef.h>
#include <stdint.h>

#include "dkim-keys.h"

/* The From domain of msg[0..len) lowercased into
 * domain_r[DKIM_DOMAIN_MAX + 1]. 1 found, 0 none, -1 the header section
 * is longer than header_max. */
int dkim_from_domain(const uint8_t *msg, size_t len, size_t header_max, char *domain_r);

#endif
