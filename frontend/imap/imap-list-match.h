/* imap-list-match.h: LIST/LSUB pattern matching (RFC 3501 6.3.8).
 *
 * A pattern is a mailbox name in which '*' matches any run of characters
 * and '%' any run without the hierarchy separator '/'. Names and patterns
 * are UTF-8 here (the engine decodes modified UTF-7 first); '/' and the
 * wildcards are ASCII and never part of a multi-byte sequence, so bytes
 * are compared. "INBOX" as a name's first level is compared without case
 * (RFC 3501 5.1: INBOX is case-insensitive), everything else exactly.
 *
 * Pure: no I/O, no state. Part of library `mailimap`.
 */
#ifndef MAIL_IMAP_LIST_MATCH_H
#define MAIL_IMAP_LIST_MATCH_H

#include <stddef.h>

/* Longest pattern (reference and pattern joined) the engine accepts; the
 * matcher costs O(pattern x name) time per name, O(name) memory. */
#define IMAP_LIST_PATTERN_MAX 1024u

/* Does name match pattern? Returns 1 or 0. Both NUL-terminated. */
int imap_list_match(const char *pattern, const char *name);

#endif
