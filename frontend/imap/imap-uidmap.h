/* imap-uidmap.h: a selected mailbox's sequence number <-> UID map, held
 * compactly (library `mailimap`, pure: no I/O, no globals).
 *
 * This is all a session keeps per message (issue 9, item 4): flags, sizes
 * and dates come from the backend when a command needs them. The map is
 * one of two shapes, whichever is smaller, re-chosen after each change:
 *   - runs: ascending runs of consecutive UIDs, 8 bytes a run (a mailbox
 *     that never had an expunge is one run, whatever its size);
 *   - bitmap: one bit per UID in [min, max], with a rank index (the count
 *     of set bits before every block of IMAP_UIDMAP_BLOCK_BITS bits), for
 *     mailboxes with many scattered holes.
 * seq_of and uid_of are O(log n) in both; appending a UID above the
 * highest is amortised O(1); removing UIDs is O(size of the map) per
 * batch (expunges are rare and come in batches).
 *
 * UIDs are 1..2^32-1, sequence numbers 1..count; 0 means "none" in both.
 * A map is owned by its creator (a session) and used by one thread.
 */
#ifndef MAIL_IMAP_UIDMAP_H
#define MAIL_IMAP_UIDMAP_H

#include <stddef.h>
#include <stdint.h>

#include "search-key.h"

/* Bits per rank-index block: 512 bits = 64 bytes of bitmap per 4-byte
 * rank entry (6% overhead), and at most 8 popcounts per lookup. */
#define IMAP_UIDMAP_BLOCK_BITS 512u

typedef struct imap_uidmap imap_uidmap;

/* An empty map. Never NULL. */
imap_uidmap *imap_uidmap_create(void);
/* Frees; NULLs *map. NULL is fine. */
void imap_uidmap_destroy(imap_uidmap **map);

/* Replace the content by the UIDs of ranges (ascending, disjoint, each
 * first <= last; as backend->open gives them). Returns 0, or -1 when the
 * ranges are not ascending and disjoint, or would count more than 2^32-1
 * messages (the map is left empty). */
int imap_uidmap_set(imap_uidmap *map, const struct search_uid_range *ranges, size_t n);
/* Add uid, which must be above every UID in the map. Returns 0, or -1
 * (nothing changed) when it is not. */
int imap_uidmap_append(imap_uidmap *map, uint32_t uid);
/* Remove uids (ascending; UIDs not in the map are ignored). Returns how
 * many were removed. */
uint32_t imap_uidmap_remove(imap_uidmap *map, const uint32_t *uids, size_t n);

/* Number of messages. */
uint32_t imap_uidmap_count(const imap_uidmap *map);
/* Highest UID (0 when empty). */
uint32_t imap_uidmap_max_uid(const imap_uidmap *map);
/* UID of sequence number seq, 0 when seq is 0 or above count. */
uint32_t imap_uidmap_uid_of(const imap_uidmap *map, uint32_t seq);
/* Sequence number of uid, 0 when uid is not in the map. */
uint32_t imap_uidmap_seq_of(const imap_uidmap *map, uint32_t uid);
/* Sequence number of the lowest UID >= uid; count + 1 when none. */
uint32_t imap_uidmap_seq_ceil(const imap_uidmap *map, uint32_t uid);

/* Bytes of heap the map holds (for the memory figures), struct included. */
size_t imap_uidmap_memory(const imap_uidmap *map);
/* 1 when the map is a bitmap now (tests). */
int imap_uidmap_is_bitmap(const imap_uidmap *map);

#endif
