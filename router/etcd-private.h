/* etcd-private.h: hooks into the watch-stream parser of etcd.c, so tests and
 * the fuzzer can feed it bytes without a network. */
#ifndef MAIL_ETCD_PRIVATE_H
#define MAIL_ETCD_PRIVATE_H

#include "etcd.h"

/* Reset c's watch state as etcd_watch() does before a stream. */
void etcd__watch_begin(etcd_client *c, etcd_watch_cb *cb, void *arg);
/* Feed n bytes of a stream (any chunking). Returns 1 while the stream goes
 * on, 0 when it must end; then *result_r is what etcd_watch() would return
 * (MAIL_OK when cb asked to stop). */
int etcd__watch_feed(etcd_client *c, const char *data, size_t n, int *result_r);

#endif
