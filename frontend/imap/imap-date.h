/* imap-date.h: the date-time of APPEND (RFC 3501 9: date-time).
 *
 *   date-time = DQUOTE date-day-fixed "-" date-month "-" date-year
 *               SP time SP zone DQUOTE
 * e.g. " 7-Feb-1994 21:52:25 -0800" (the quotes are the parser's). The
 * day is " d", "dd" or (leniently) "d"; the month is case-insensitive;
 * years 1000..9999; the time 00:00:00..23:59:60 (a leap second is read
 * as :59); the zone -2359..+2359 with minutes below 60.
 *
 * Pure: no I/O, no state, no locale or time zone of the process. Part of
 * library `mailimap`.
 */
#ifndef MAIL_IMAP_DATE_H
#define MAIL_IMAP_DATE_H

#include <stddef.h>
#include <stdint.h>

/* Parse str[0..len) into ms since the epoch (UTC). Returns 0 with *ms_r,
 * or -1 when it is not a valid date-time. */
int imap_date_time_parse(const char *str, size_t len, int64_t *ms_r);

#endif
