/* mailsearch.h: IMAP SEARCH, SORT and THREAD evaluated on the store node.
 *
 * A pure library: no I/O, no MIME decoding, no global state, no logging.
 * The caller (the mailstore glue) describes one message at a time with a
 * struct mailsearch_msg whose callbacks hand over ALREADY DECODED UTF-8
 * text (header values unfolded and RFC 2047-decoded, body parts decoded
 * from their transfer encoding and charset). This library decides what
 * matches (RFC 3501 / RFC 9051 6.4.4, RFC 7162 MODSEQ, RFC 5032
 * OLDER/YOUNGER), in what order messages sort (RFC 5256, RFC 5957) and how
 * they thread (RFC 5256 ORDEREDSUBJECT and REFERENCES).
 *
 * Threads: every function is reentrant; objects (a mailsearch_prog, a
 * fields struct) are used by one thread at a time.
 *
 * Limits (fixed, not tunables: they bound work per message, not policy):
 *   MAILSEARCH_MAX_DEPTH     nesting of a search program; deeper: error
 *   MAILSEARCH_MAX_NODES     keys in one search program; more: error
 *   MAILSEARCH_HEADER_MAX    bytes of one header value looked at (search,
 *                            sort, thread); the rest of a longer value is
 *                            ignored
 *   MAILSEARCH_DATE_MAX      a Date: value longer than this is unparsable
 *   MAILSEARCH_SORT_TEXT_MAX bytes kept of each sort string (subject,
 *                            address, display name); longer ones compare
 *                            by their first bytes
 *   MAILSEARCH_MSGID_MAX     a message-id longer than this is invalid
 *   MAILSEARCH_REFS_MAX      message-ids used from one References header
 *                            (the last ones: the nearest ancestors)
 *
 * Text matching (SEARCH HEADER, BODY, TEXT, FROM, SUBJECT...): substring,
 * case-insensitive by simple Unicode case folding (CaseFolding.txt status
 * C and S) for ASCII, Latin-1 Supplement, Latin Extended-A and -B (the
 * regular pairs), Latin Extended Additional, Greek and Coptic (final sigma
 * folds to sigma), Cyrillic and Cyrillic Supplement, Armenian, and the
 * Kelvin, Angstrom and Ohm signs. No normalisation (a precomposed letter
 * does not match its decomposed form) and no full folding (German sharp s
 * does not match "ss"). Bytes that are not valid UTF-8 match only
 * themselves, byte for byte.
 *
 * SORT and THREAD compare strings with i;ascii-casemap (RFC 4790: a-z
 * upper-cased, then octet order), as RFC 5256 requires.
 */
#ifndef MAIL_MAILSEARCH_H
#define MAIL_MAILSEARCH_H

#include "buf.h"
#include "search-key.h"

#include <stddef.h>
#include <stdint.h>

#define MAILSEARCH_MAX_DEPTH 100
#define MAILSEARCH_MAX_NODES 10000
#define MAILSEARCH_HEADER_MAX 65536
#define MAILSEARCH_DATE_MAX 512
#define MAILSEARCH_SORT_TEXT_MAX 256
#define MAILSEARCH_MSGID_MAX 250
#define MAILSEARCH_REFS_MAX 100

/* ---- the message, as the caller describes it ------------------------------ */

/* Receives text: a header field (name: its name as in the message, text:
 * its decoded value) or a chunk of body text (name NULL). text is UTF-8
 * (not necessarily NUL-terminated), valid during the call only. Returns 0
 * to get more, 1 when it has seen enough (the provider then stops calling
 * and returns 0). */
typedef int mailsearch_text_cb(void *arg, const char *name, const char *text, size_t len);

struct mailsearch_msg {
	uint32_t uid;
	uint64_t size;            /* RFC822.SIZE */
	int64_t internal_date_ms; /* INTERNALDATE, ms since the epoch (UTC) */
	uint64_t modseq;
	const char *const *flags; /* "\\Seen", "$Label1", ... */
	size_t n_flags;
	void *ctx; /* passed to the callbacks */
	/* Call cb for each header field named `name` (case-insensitive), in
	 * message order, with its value unfolded (CRLF + WSP become the WSP)
	 * and RFC 2047-decoded to UTF-8, without the leading whitespace;
	 * name NULL: every field. Stop when cb returns 1. Returns 0, or < 0
	 * when the message cannot be read. May be called several times per
	 * evaluation (once per HEADER key): it should be cheap. */
	int (*header)(void *ctx, const char *name, mailsearch_text_cb *cb, void *arg);
	/* Call cb with the decoded text of the body (every text part, in
	 * order; parts separated by a newline), in chunks of any size (a
	 * word may be split between chunks). Stop when cb returns 1.
	 * Returns 0, or < 0 when the body cannot be read. May be slow: it is
	 * called only when a key needs the body, at most once per
	 * mailsearch_prog_match() (streamed: this library keeps nothing of
	 * it but the matchers' state). May be NULL when no key needs the
	 * body (see mailsearch_prog_needs). */
	int (*body_text)(void *ctx, mailsearch_text_cb *cb, void *arg);
};

/* ---- SEARCH ----------------------------------------------------------------- */

/* A search program prepared for many messages: checked once, needles case
 * folded once, one state array reused for every message. */
typedef struct mailsearch_prog mailsearch_prog;

#define MAILSEARCH_NEEDS_HEADERS 0x1u /* some key reads header fields */
#define MAILSEARCH_NEEDS_BODY 0x2u    /* some key (BODY, TEXT) reads the body */

/* Check key and prepare it. Returns 0 with *prog_r set (free it with
 * mailsearch_prog_destroy), or -1 with *error_r set to a static string
 * when the program is malformed: deeper than MAILSEARCH_MAX_DEPTH, more
 * than MAILSEARCH_MAX_NODES keys, an AND without children, an OR without
 * exactly 2, a NOT without exactly 1, a UID key whose ranges are not
 * ascending and disjoint, a NULL string where the op needs one, an
 * unknown op. key is borrowed for the call only (strings are copied). */
int mailsearch_prog_create(const struct search_key *key, mailsearch_prog **prog_r,
			   const char **error_r);
/* Free *prog (NULL is fine) and set it to NULL. */
void mailsearch_prog_destroy(mailsearch_prog **prog);
/* What the program reads besides the metadata (MAILSEARCH_NEEDS_*): the
 * glue can skip opening a message that is needed for neither. */
unsigned mailsearch_prog_needs(const mailsearch_prog *prog);

/* Does msg match? now_ms is the wall clock for OLDER and YOUNGER.
 * Returns 1 (match), 0 (no match) or < 0 (a callback failed: the
 * message could not be read).
 *
 * Order of work: keys on the metadata (flags, uid, size, internal date,
 * modseq) first, for the whole tree; then header keys, only where the
 * outcome is still open, each evaluated at most once, AND and OR cutting
 * short; then, only if the outcome is still open, ONE pass over the body
 * that feeds every BODY and TEXT needle still needed at once and stops as
 * soon as all of them are found. TEXT looks at the header first (each
 * field as "Name: value"), the body only when the header has no match.
 *
 * Meanings beyond search-key.h: FLAG compares system flags ("\\Seen")
 * case-insensitively, keywords exactly. HEADER matches when some field of
 * that name contains the needle ("" matches when the field exists).
 * SENTBEFORE/SENTON/SENTSINCE use the day of the Date: header as written
 * (its own zone, RFC 3501), first Date: field only; a message without a
 * parsable Date: field matches none of them (so NOT SENTON matches it).
 * Dovecot instead falls back to the internal date; we do not, because
 * RFC 3501 defines these keys on the Date: header only and a client that
 * wants internal dates asks with BEFORE/ON/SINCE. OLDER n: the message
 * is at least n seconds old (now_ms - internal_date_ms >= n * 1000);
 * YOUNGER n: less than n seconds old; each message matches exactly one
 * of OLDER n and YOUNGER n. */
int mailsearch_prog_match(mailsearch_prog *prog, const struct mailsearch_msg *msg,
			  int64_t now_ms);

/* One message, one program: mailsearch_prog_create + _match + _destroy.
 * Returns 1, 0, or < 0 (malformed program or unreadable message). */
int mailsearch_match(const struct search_key *key, const struct mailsearch_msg *msg,
		     int64_t now_ms);

/* ---- SORT ------------------------------------------------------------------- */

/* What SORT needs of one message, kept compact: the strings live in one
 * allocation of at most 6 * (MAILSEARCH_SORT_TEXT_MAX + 1) bytes. */
struct mailsearch_sort_fields {
	uint32_t uid;
	uint64_t size;
	int64_t arrival_ms; /* internal date */
	int64_t sent_ms;    /* Date: in UTC, else the internal date (RFC 5256 2.2);
			     * read only when DATE is a criterion */
	/* NUL-terminated, never NULL ("" when absent or not asked for): */
	const char *subject;      /* base subject (RFC 5256 2.1) */
	const char *from;         /* first From address's mailbox (local part) */
	const char *to;           /* first To address's mailbox */
	const char *cc;           /* first Cc address's mailbox */
	const char *display_from; /* RFC 5957: first From's display name, else
				   * its mailbox@host */
	const char *display_to;
	char *strings_; /* owns the strings above */
};

/* Fill *f_r from msg with what crit needs (the other strings are "";
 * uid, size and arrival are always filled, sent_ms is the internal date
 * unless DATE is asked for). Returns 0, or < 0 when a callback failed
 * (*f_r is then empty: deinit is still fine). Release with
 * mailsearch_sort_fields_deinit.
 *
 * Addresses: the first address of the first field of that name. A group
 * ("team: a@x, b@y;") counts as an address whose mailbox and display
 * name are the group's name, as IMAP's ENVELOPE shows it. A mailbox is
 * the local part without quotes; a display name is the phrase before
 * "<...>" (quotes removed, whitespace collapsed), else the comment after
 * an addr-spec ("a@x (Ann)"), else mailbox@host. The values are the
 * decoded text the glue gives: an RFC 2047 word that decodes to a comma
 * or a bracket can mislead the parser; it then still yields some string,
 * never reads out of bounds. */
int mailsearch_sort_fields_get(const struct mailsearch_msg *msg, const struct search_sort *crit,
			       size_t n_crit, struct mailsearch_sort_fields *f_r);
void mailsearch_sort_fields_deinit(struct mailsearch_sort_fields *f);

/* Sort n messages by the criteria (RFC 5256; REVERSE per criterion; ties
 * broken by uid ascending, as sequence numbers would, REVERSE never
 * applying to that) and write their uids, in order, to uids_out (room for
 * n). Strings compare by i;ascii-casemap, dates and sizes as numbers.
 * fields is borrowed. Returns 0, or -1 when a criterion is unknown or
 * n_crit is 0 (uids_out untouched). */
int mailsearch_sort(const struct mailsearch_sort_fields *fields, size_t n,
		    const struct search_sort *crit, size_t n_crit, uint32_t *uids_out);

/* ---- THREAD ----------------------------------------------------------------- */

/* What THREAD needs of one message. Filled by mailsearch_thread_fields_get
 * or by the caller (who then owns the strings and leaves strings_ NULL).
 * message_id, in_reply_to and references are header values as in the
 * message ("<a@b>", "<a@b> <c@d>", comments and folding whitespace
 * allowed), NULL when absent. */
struct mailsearch_thread_msg {
	uint32_t uid;
	int64_t sent_ms;          /* RFC 5256 2.2 sent date, UTC ms */
	const char *base_subject; /* RFC 5256 2.1; never NULL */
	int is_reply;             /* the extraction removed Re:, Fwd:, (fwd) or [fwd: ] */
	const char *message_id;
	const char *in_reply_to;
	const char *references;
	char *strings_; /* owns the strings above when set */
};

/* Fill *t_r from msg (REFERENCES needs the ids; ORDEREDSUBJECT only date
 * and subject, so the ids are left NULL for it). The References value is
 * reduced to its last MAILSEARCH_REFS_MAX valid ids. Returns 0, or < 0
 * when a callback failed (*t_r is then empty). Release with
 * mailsearch_thread_fields_deinit. */
int mailsearch_thread_fields_get(const struct mailsearch_msg *msg, enum search_thread_alg alg,
				 struct mailsearch_thread_msg *t_r);
void mailsearch_thread_fields_deinit(struct mailsearch_thread_msg *t);

/* Thread the n messages (given in ascending uid order: the order of
 * sequence numbers, which RFC 5256 uses to break ties and to pick the
 * owner of a duplicate Message-ID) and append the result to out in RFC
 * 5256's syntax with uids: "(1 2)(3 (4)(5))"; nothing when n is 0.
 * Returns 0, or -1 (out untouched) when alg is unknown or the uids are
 * not strictly ascending or a base_subject is NULL.
 *
 * ORDEREDSUBJECT: RFC 5256 section 3 (sorted by base subject and sent
 * date, split by subject, threads ordered by their first message).
 * REFERENCES: every step of RFC 5256 section 3: message-ids from
 * References (else the first valid one of In-Reply-To), links that never
 * override an existing parent nor make a loop, dummy messages for unknown
 * ids, a unique id for a missing, invalid or duplicate Message-ID,
 * pruning of dummies, grouping of threads by base subject, children
 * sorted by sent date. Message-ids compare case-sensitively; a valid one
 * is "<" left "@" right ">" of at most MAILSEARCH_MSGID_MAX bytes
 * (folding whitespace inside is dropped). Iterative throughout: threads
 * of any depth. Cost O(m log m) for m messages and referenced ids, plus
 * the loop checks, which walk up from the would-be parent only when the
 * would-be child already has children (rare: replies are mostly newer). */
int mailsearch_thread(enum search_thread_alg alg, const struct mailsearch_thread_msg *msgs,
		      size_t n, buf *out);

/* ---- building blocks (exported for the glue, the tests and the fuzzer) ---- */

/* Parse an RFC 5322 date-time, obsolete forms included (RFC 5322 4.3:
 * 2-digit years, 3-digit years, named zones, military zones as -0000,
 * missing seconds, comments anywhere), with the day of the week optional
 * and unchecked, and also the asctime form "Mon Feb  1 23:30:00 1994"
 * (UTC). Unknown alphabetic zones and a missing zone count as UTC. Returns
 * 0 with *utc_ms_r (the instant) and *day_r (days since 1970-01-01 of the
 * date as written, in its own zone), or -1 when unparsable (including
 * impossible dates such as 31 Apr, years before 1900, values longer than
 * MAILSEARCH_DATE_MAX). Either out-pointer may be NULL. */
int mailsearch_date_parse(const char *s, size_t len, int64_t *utc_ms_r, int64_t *day_r);

/* Append the base subject of subject (RFC 5256 2.1: whitespace runs
 * collapsed, then trailers "(fwd)" and whitespace, leaders "Re:",
 * "Fw:", "Fwd:" with optional "[blob]"s, leading "[blob]"s that leave a
 * non-empty rest, and "[fwd: ...]" wrappers removed, repeatedly) to out.
 * *is_reply_r (may be NULL) is set to 1 when a reply or forward marker
 * was removed (RFC 5256 uses it in THREAD REFERENCES), else 0. The base
 * subject is never longer than the subject. */
void mailsearch_base_subject(const char *subject, size_t len, buf *out, int *is_reply_r);

#endif
