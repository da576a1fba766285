/* buf.h: a growable byte buffer.
 *
 * Embedded (buf_init/buf_deinit). The data is owned by the buffer; pointers
 * into it are valid until the next call that may grow or consume it.
 * Appends never check limits: callers check their protocol limit *before*
 * appending (see STYLE.md, rule 11).
 */
#ifndef MAIL_BUF_H
#define MAIL_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct buf {
	uint8_t *data;
	size_t len;
	size_t cap;
} buf;

void buf_init(buf *b);
void buf_deinit(buf *b);
void buf_reset(buf *b);
void buf_reserve(buf *b, size_t extra);
void buf_append(buf *b, const void *data, size_t len);
void buf_append_str(buf *b, const char *s);
void buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drop the first n bytes (n <= len). */
void buf_consume(buf *b, size_t n);
/* Hand the data to the caller (who frees it) and leave b empty. */
uint8_t *buf_steal(buf *b, size_t *len_r);

#endif
