/* imap-utf7.h: mailbox names between the client's encoding and UTF-8.
 *
 * IMAP4rev1 clients send and expect mailbox names in modified UTF-7
 * (RFC 3501 5.1.3); the backend and the store know them as UTF-8 only
 * (imap-backend.h). After ENABLE UTF8=ACCEPT (RFC 6855) or ENABLE
 * IMAP4rev2 (RFC 9051) names travel as UTF-8 and only need checking.
 *
 * Pure: no I/O, no state. Part of library `mailimap`.
 *
 * Modified UTF-7, as this decoder accepts it (strict: exactly what a
 * correct encoder produces, so that a name has one spelling only):
 *   - printable US-ASCII 0x20..0x7e other than '&' stands for itself;
 *   - "&-" is '&';
 *   - "&" 1*B64 "-" is a run of UTF-16BE code units in base64 with the
 *     alphabet A-Z a-z 0-9 + , (',' for '/') and no padding; the run must
 *     hold whole code units, its unused low bits must be zero, surrogates
 *     must pair, it must not encode a character that stands for itself
 *     (0x20..0x7e) nor U+0000, and two runs must not touch ("-&" in the
 *     middle of a run of encoded characters is a null shift);
 *   - nothing else: control bytes, bytes >= 0x80 and an unterminated run
 *     are errors.
 */
#ifndef MAIL_IMAP_UTF7_H
#define MAIL_IMAP_UTF7_H

#include <stddef.h>

#include "buf.h"

/* Decode the modified UTF-7 in[0..len) and append its UTF-8 to out.
 * Returns 0, or -1 with *error_r (static, client-safe text); on error
 * out->len is what it was before the call. */
int imap_utf7_to_utf8(const char *in, size_t len, buf *out, const char **error_r);

/* Encode the UTF-8 in[0..len) as modified UTF-7, appended to out.
 * Returns 0, or -1 when in is not valid UTF-8 (see imap_utf8_valid) or
 * holds U+0000; on error out->len is what it was before the call. */
int imap_utf8_to_utf7(const char *in, size_t len, buf *out);

/* Is in[0..len) valid UTF-8: shortest forms only, no surrogates
 * (U+D800..U+DFFF), nothing above U+10FFFF? Returns 1 or 0. */
int imap_utf8_valid(const char *in, size_t len);

#endif
