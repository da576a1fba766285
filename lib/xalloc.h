/* xalloc.h: allocation that aborts on failure.
 *
 * Every allocation in the project goes through these; a daemon that cannot
 * allocate cannot keep its promises, so it stops loudly instead of limping.
 * Results are owned by the caller and released with free().
 */
#ifndef MAIL_XALLOC_H
#define MAIL_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
/* Copies of NUL-terminated strings; xstrndup copies at most n bytes and
 * always NUL-terminates. */
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* printf into a fresh heap string. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Overwrite a secret in a way the compiler cannot drop, then free it. */
void xfree_secret(void *p, size_t len);

#endif
