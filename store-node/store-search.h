/* store-search.h: SEARCH, SORT and THREAD of one mailbox, evaluated on the
 * store node: the message view that store-node/mailsearch.h evaluates
 * over (metadata from the mailstore, header fields decoded with lib/mime's
 * mime_header_decode, body text with mime_text_foreach, both read from the
 * message's bytes through its part table), and the bounds of the work.
 *
 * Bounded work: a call never reads the whole mailbox at once.
 *   - SEARCH goes in pages: one call looks at no more than
 *     STORE_SEARCH_PAGE_MESSAGES messages and reads no more than
 *     STORE_SEARCH_PAGE_BYTES of their bytes (headers and bodies, read only
 *     when a key needs them, headers alone when no key needs the body),
 *     then says where to go on (the caller makes the next call).
 *   - SORT and THREAD need every match at once: they take at most
 *     STORE_SORT_MAX matching messages (LIMIT above) and read headers only.
 * Each read takes the mailstore's lock for one short call (a page of
 * metadata, one message), so other operations interleave; the service
 * runs these calls on the libuv thread pool, never on the loop.
 *
 * Any thread (the mailstore is thread-safe). Returns MAIL_OK or a mail
 * error: PARAMS (a malformed program, unknown criterion), NOT_FOUND (the
 * mailbox), LIMIT (SORT/THREAD past STORE_SORT_MAX), INTERNAL.
 */
#ifndef MAIL_STORE_SEARCH_H
#define MAIL_STORE_SEARCH_H

#include "buf.h"
#include "mailstore.h"
#include "search-key.h"

#include <stddef.h>
#include <stdint.h>

#define STORE_SEARCH_PAGE_MESSAGES 5000u
#define STORE_SEARCH_PAGE_BYTES (16u * 1024u * 1024u)
#define STORE_SORT_MAX 100000u

/* One page of SEARCH: the matching uids above after_uid, ascending
 * (*uids_r heap, NULL when none), the highest modseq among them
 * (*highest_modseq_r, 0 when none), and *next_after_r: the after_uid of
 * the next page, 0 when this was the last. now_ms: the clock of OLDER and
 * YOUNGER. */
int store_search_page(mailstore *store, const char *user, const char *mailbox,
		      const struct search_key *key, uint32_t after_uid, int64_t now_ms,
		      uint32_t **uids_r, size_t *n_r, uint64_t *highest_modseq_r,
		      uint32_t *next_after_r);
/* SORT: the matching uids in the order of crit (*uids_r heap). */
int store_sort(mailstore *store, const char *user, const char *mailbox,
	       const struct search_sort *crit, size_t n_crit, const struct search_key *key,
	       int64_t now_ms, uint32_t **uids_r, size_t *n_r);
/* THREAD: RFC 5256's thread list of the matching messages, appended to
 * out ("" when none match). */
int store_thread(mailstore *store, const char *user, const char *mailbox,
		 enum search_thread_alg alg, const struct search_key *key, int64_t now_ms,
		 buf *out);

#endif
