/* srs.h: the Sender Rewriting Scheme for mail we forward (public
 * contract; library `mailsrs`).
 *
 * Why: a message forwarded with its original reverse-path reaches the
 * next MTA from our address, which the sender's SPF record does not
 * list: it fails SPF there. SRS gives it a reverse-path in our domain
 * that still carries the original one, signed, so that a bounce sent
 * back to it can be returned to the original sender, and only for
 * addresses we made (no open bounce relay).
 *
 * The format is the de-facto one of Shevek's SRS paper as libsrs2 and
 * postsrsd write it:
 *
 *   alice@example.org
 *     -> SRS0=HHHH=TT=example.org=alice@our.domain
 *
 *   TT    the day of signing: days since the epoch mod 1024, as two
 *         characters of base32 ("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", high
 *         5 bits first); read case-insensitively.
 *   HHHH  the first 4 characters of the base64 (RFC 4648, "+/") of
 *         HMAC-SHA256(secret, lowercase(TT + domain + local)). libsrs2
 *         uses HMAC-SHA1 here: an address of ours cannot be read by a
 *         libsrs2 forwarder's reverse (and needs not be: only the domain
 *         that made an address reverses it). Compared case-insensitively,
 *         because some MTAs lowercase local parts on the way back.
 *
 * A sender that is already SRS0 (we are the second forwarder) keeps the
 * first forwarder's address and gets SRS1, so the bounce goes straight
 * back to the first forwarder, who holds the original:
 *
 *   SRS0=HHHH=TT=example.org=alice@first.hop
 *     -> SRS1=GGGG=first.hop==HHHH=TT=example.org=alice@our.domain
 *
 *   GGGG  the first 4 base64 characters of HMAC-SHA256(secret,
 *         lowercase(first.hop + "=HHHH=TT=example.org=alice")): what
 *         follows "SRS0" in the first hop's local part, its separator
 *         included.
 *
 * and an SRS1 sender (a third forwarder) keeps its first hop and its
 * SRS0 part, with a new GGGG over them. Reversing an SRS1 gives the SRS0
 * address at the first hop ("SRS0" + that part + "@first.hop"); its day
 * is the first hop's to check.
 *
 * Reading (srs_reverse) accepts '=', '+' or '-' after the SRS0/SRS1 tag
 * (libsrs2's separators; we write '=') and the tag in any case. The
 * domain after the last '@' of the address is not looked at: the caller
 * decides which of its domains take SRS addresses.
 *
 * What forward accepts (so that the result is a valid address and
 * reverse gives back exactly what went in): a sender local@domain of at
 * most SRS_ADDRESS_MAX bytes whose local part is atext (RFC 5322 3.2.3:
 * letters, digits, !#$%&'*+-/=?^_`{|}~), dots or UTF-8 bytes (>= 0x80,
 * RFC 6531), and whose domain is a DNS name (letters, digits, '-', '_',
 * labels of 1..63 bytes, at most 253, no trailing dot: RFC 5321's Domain);
 * our_domain too. A
 * quoted local part or an address literal cannot be rewritten
 * (SRS_ERR_MALFORMED: forward unrewritten or refuse, the caller's
 * choice). The result, too, is at most SRS_ADDRESS_MAX bytes (longer:
 * SRS_ERR_TOO_LONG), which is why reverse can refuse anything longer.
 * Local parts and domains keep their case; only the hash input is
 * lowercased.
 *
 * Time is the caller's (now_s: seconds since the epoch), so that tests
 * and fuzzing are repeatable; the library reads no clock.
 *
 * Threads: a struct srs is immutable after srs_create(); any number of
 * threads may call srs_forward() and srs_reverse() on one at once.
 * Nothing here blocks or does I/O.
 */
#ifndef MAIL_SRS_H
#define MAIL_SRS_H

#include <stddef.h>
#include <stdint.h>

/* The longest address read or written, in bytes, without the NUL: a
 * reverse-path of RFC 5321 4.5.3.1.3 (256) with room for the local part
 * SRS adds to it. A buffer of SRS_ADDRESS_MAX + 1 holds any result. */
#define SRS_ADDRESS_MAX 320u
/* Characters of HHHH and of TT. */
#define SRS_HASH_LEN 4u
#define SRS_STAMP_LEN 2u

/* ---- settings (every row: default, min, max; 0 takes the default) ---- */

struct srs_settings {
	/* The secrets, first one signs, every one verifies: to rotate, put
	 * the new secret first and keep the old one second until
	 * max_age_days have passed. Each 1..SRS_SECRET_MAX bytes; 1..
	 * SRS_SECRETS_MAX of them. Copied (and wiped when destroyed). */
	const char *const *secrets;
	size_t nsecrets;
#define SRS_SECRETS_MAX 8u
#define SRS_SECRET_MAX 1024u
	/* Days an SRS0 address stays valid after the day it was made (a
	 * bounce may come days later: a queue's retry time). Older:
	 * SRS_ERR_EXPIRED. The day is counted mod 1024, so the maximum is
	 * well below that. */
	unsigned max_age_days;
#define SRS_MAX_AGE_DAYS_DEFAULT 21u
#define SRS_MAX_AGE_DAYS_MIN 1u
#define SRS_MAX_AGE_DAYS_MAX 365u
};

/* ---- results ---- */

/* What srs_forward and srs_reverse return below 0. */
enum srs_error {
	/* reverse: SRS-tagged but not in its format (a field missing or
	 * empty, TT not base32, a hash of the wrong length, a domain that is
	 * no DNS name, characters forward never writes); forward: the sender
	 * or our_domain cannot be rewritten (see the top). */
	SRS_ERR_MALFORMED = -1,
	/* reverse: no secret makes this hash: not made here, or tampered. */
	SRS_ERR_HASH = -2,
	/* reverse: SRS0 older than max_age_days (or signed "in the future",
	 * which mod-1024 arithmetic cannot tell from very old). */
	SRS_ERR_EXPIRED = -3,
	/* an input or the result over SRS_ADDRESS_MAX bytes */
	SRS_ERR_TOO_LONG = -4,
	/* the result does not fit the caller's buffer */
	SRS_ERR_SPACE = -5,
};

/* "malformed", "bad_hash", "expired", "too_long", "space" for the values
 * above, "ok" for 0 and 1, "unknown" else (logs and metrics); never
 * NULL. */
const char *srs_error_name(int ret);

/* ---- the object ---- */

struct srs;

/* An SRS signer/verifier with settings (copied). Returns 0 and *srs_r, or
 * -1 with a static line in *error_r (no secret, too many, one empty or
 * over SRS_SECRET_MAX, max_age_days out of range). Any thread. */
int srs_create(const struct srs_settings *settings, struct srs **srs_r, const char **error_r);
/* Wipe the secrets, free *srs and NULL it; NULL is fine. No call on it
 * may be running. */
void srs_destroy(struct srs **srs);

/* Rewrite sender (NUL-terminated, without <>) for mail we forward from
 * our_domain (a DNS name) on day now_s / 86400. Returns:
 *    1  out holds the rewritten address (SRS0, or SRS1 for an SRS0 or
 *       SRS1 sender: see the top);
 *    0  sender is the null reverse-path ("" or "<>"): it is never
 *       rewritten (a bounce must stay a bounce); out is "";
 *   <0  enum srs_error: MALFORMED, TOO_LONG (sender or result), SPACE;
 *       out is "" (when size > 0).
 * out (size bytes, SRS_ADDRESS_MAX + 1 always do) is the caller's. An
 * SRS1-tagged sender that is not in SRS1's format is treated as an
 * ordinary local part (SRS0), so it still comes back unchanged. */
int srs_forward(const struct srs *srs, const char *sender, const char *our_domain, int64_t now_s,
		char *out, size_t size);

/* Undo the rewriting of address (the recipient of a bounce: local@domain,
 * or a bare local part), on day now_s / 86400. Returns:
 *    1  out holds the original sender (SRS0) or the first forwarder's
 *       SRS0 address (SRS1);
 *    0  address is not an SRS address (its local part does not start
 *       with SRS0 or SRS1 and a separator): an ordinary recipient; out
 *       is "";
 *   <0  enum srs_error: MALFORMED, HASH, EXPIRED (SRS0 only), TOO_LONG
 *       (address over SRS_ADDRESS_MAX bytes, SRS or not), SPACE; out is
 *       "" (when size > 0).
 * The hash is checked before the day, so EXPIRED means "ours, but old".
 * out (size bytes) is the caller's. */
int srs_reverse(const struct srs *srs, const char *address, int64_t now_s, char *out,
		size_t size);

#endif
