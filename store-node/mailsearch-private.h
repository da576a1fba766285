/* mailsearch-private.h: internals shared by the mailsearch*.c files (not a
 * contract: the tests and the fuzzer use them, nothing else should).
 *
 *   mailsearch-text.c    UTF-8 decoding, case folding, the streaming
 *                        substring matcher, dates, base subjects,
 *                        addresses, message-ids
 *   mailsearch.c         search programs
 *   mailsearch-sort.c    SORT
 *   mailsearch-thread.c  THREAD
 */
#ifndef MAIL_MAILSEARCH_PRIVATE_H
#define MAIL_MAILSEARCH_PRIVATE_H

#include "mailsearch.h"

#include <stddef.h>
#include <stdint.h>

/* ---- UTF-8 and case folding ---- */

/* Bytes that are not part of valid UTF-8 decode to 0xDC00 + byte (a
 * surrogate: never the value of valid UTF-8), so they match themselves. */
#define MAILSEARCH__RAW_BYTE 0xDC00u

/* Incremental UTF-8 decoder: bytes in, code points out; a sequence split
 * between two feeds is completed by the second. */
struct mailsearch__utf8 {
	uint8_t pend[4];
	uint8_t n_pend;
};

/* Simple case fold of one code point (see mailsearch.h for the blocks). */
uint32_t mailsearch__fold(uint32_t cp);

/* ---- substring matching on folded code points ---- */

/* A needle: folded code points, its KMP failure table, and the bytes
 * that can begin a match (the ASCII case pair of its first letter, and
 * every byte >= 0x80: a non-ASCII letter may fold to ASCII, as the Kelvin
 * sign does to "k"). */
struct mailsearch__needle {
	uint32_t *cp;
	uint32_t *fail;
	size_t n;
	uint8_t start[256];
};

/* Fold and prepare text (n == 0 for ""). Free with _needle_deinit. */
void mailsearch__needle_init(struct mailsearch__needle *nd, const char *text, size_t len);
void mailsearch__needle_deinit(struct mailsearch__needle *nd);

/* One search of a set of needles through a stream of text. found[i] is set
 * once needle i occurred; the stream may be cut anywhere. */
struct mailsearch__scan {
	const struct mailsearch__needle *const *needles;
	size_t *state; /* per needle: matched prefix length */
	uint8_t *found;
	size_t n, n_found;
	struct mailsearch__utf8 dec;
	int idle;           /* no needle has a partial match */
	uint8_t start[256]; /* union of the needles' start bytes */
};

/* needles, state and found are the caller's arrays of n entries
 * (state and found are zeroed here). */
void mailsearch__scan_init(struct mailsearch__scan *sc,
			   const struct mailsearch__needle *const *needles, size_t n,
			   size_t *state, uint8_t *found);
/* Feed more text; returns 1 once every needle is found, else 0. */
int mailsearch__scan_feed(struct mailsearch__scan *sc, const char *text, size_t len);
/* The stream ended (flushes a dangling partial UTF-8 sequence); then the
 * same as a new stream: state and decoder reset, found kept. Returns 1
 * when every needle is found. */
int mailsearch__scan_end(struct mailsearch__scan *sc);

/* ---- i;ascii-casemap ---- */

int mailsearch__casemap_cmp(const char *a, const char *b);
int mailsearch__casemap_eq(const char *a, const char *b);

/* ---- addresses ---- */

/* The first address of an address-list value: mailbox (local part,
 * unquoted), host ("" when none) and display name (phrase, else the
 * comment after an addr-spec; "" when none). For a group: mailbox and
 * display are the group name, host "". Each out is a buf appended with
 * at most MAILSEARCH_SORT_TEXT_MAX bytes (cut at a UTF-8 boundary).
 * Returns 1 when an address was found, 0 when none. */
int mailsearch__address_first(const char *s, size_t len, buf *mailbox, buf *host, buf *display);

/* ---- message-ids ---- */

/* Find the next valid msg-id at or after *pos in s[0..len): on success
 * copies it (with its angle brackets, folding whitespace outside quoted
 * strings removed) to out (room for MAILSEARCH_MSGID_MAX + 1 bytes, NUL
 * terminated), sets *out_len, advances *pos past it and returns 1; returns
 * 0 at the end. Invalid "<...>" groups are skipped. */
int mailsearch__msgid_next(const char *s, size_t len, size_t *pos, char *out, size_t *out_len);

/* The text of a buf ("" when it never held any: its data is NULL then). */
static inline const char *mailsearch__buf_text(const buf *b)
{
	return b->data != NULL ? (const char *)b->data : "";
}

/* ---- cutting text to a bounded size ---- */

/* The largest n' <= n such that s[0..n') does not end inside a UTF-8
 * sequence that began before it (only valid-looking sequences count). */
size_t mailsearch__utf8_cut(const char *s, size_t n);

#endif
