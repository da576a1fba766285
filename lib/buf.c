#include "buf.h"
#include "xalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void buf_deinit(buf *b)
{
	free(b->data);
	buf_init(b);
}

void buf_reset(buf *b)
{
	b->len = 0;
}

void buf_reserve(buf *b, size_t extra)
{
	if (b->cap - b->len > extra)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap - b->len <= extra)
		cap *= 2;
	b->data = xrealloc(b->data, cap);
	b->cap = cap;
}

void buf_append(buf *b, const void *data, size_t len)
{
	if (len == 0)
		return;
	buf_reserve(b, len);
	memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = 0; /* reserve keeps one spare byte: handy for text */
}

void buf_append_str(buf *b, const char *s)
{
	buf_append(b, s, strlen(s));
}

void buf_printf(buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n <= 0)
		return;
	buf_reserve(b, (size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void buf_consume(buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

uint8_t *buf_steal(buf *b, size_t *len_r)
{
	uint8_t *d = b->data;
	if (len_r != NULL)
		*len_r = b->len;
	buf_init(b);
	return d;
}
