/* log.h: one line per event, key=value pairs, on stderr.
 *
 * Lines look like
 *   ts=2026-11-23T09:41:02.123Z level=info svc=queue event=enqueued qid=Q1 size=812
 * The leading key after svc= is the event; the id that joins lines across
 * nodes (session id, queue id) comes next by convention. Values that may hold
 * spaces or quotes must be passed through log_quote().
 * Safe to call from any thread (one fprintf per line).
 */
#ifndef MAIL_LOG_H
#define MAIL_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* svc is the daemon or library name; fmt is the rest of the line. */
void log_event(enum log_level level, const char *svc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Quote s for a log value into out (size outsz): printable ASCII without
 * spaces passes through, anything else becomes a "..."-quoted string with
 * \xNN escapes. Truncates with "..." when out is too small. Returns out. */
const char *log_quote(char *out, size_t outsz, const char *s, size_t len);

#endif
