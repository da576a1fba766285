/* metrics.h: Prometheus metrics over HTTP for every daemon.
 *
 * A tiny HTTP/1.0-style server on the daemon's loop: `GET /metrics` answers
 * 200 with the text exposition format (version 0.0.4) built by the
 * registered collectors, anything else 404/405/400, and every connection is
 * closed after one response. Requests are bounded (METRICS_MAX_REQUEST
 * bytes of head, a 5 s read timeout): a metrics port exposed by mistake
 * cannot be used to exhaust the node.
 *
 * Every series carries the label svc="<svc>" and node="<node id>", which
 * the collectors get as a ready-made label prefix.
 *
 * Loop thread only. Collectors run on the loop thread when a scrape arrives.
 */
#ifndef MAIL_METRICS_H
#define MAIL_METRICS_H

#include <stddef.h>

#include <uv.h>

#include "buf.h"

#define METRICS_MAX_REQUEST 4096u

typedef struct metrics metrics;

/* Append exposition lines to out. labels is `svc="..",node=".."` (no
 * braces): use it as the first labels of every series. */
typedef void metrics_collect_fn(buf *out, const char *labels, void *arg);

metrics *metrics_create(uv_loop_t *loop, const char *svc, const char *node_id);
/* Collectors are called in registration order; arg is borrowed. */
void metrics_add_collector(metrics *m, metrics_collect_fn *fn, void *arg);
/* Listen on host:port (port 0 = any; the bound port in *port_r when not
 * NULL). Returns 0, or -1 with *error_r (static text). */
int metrics_listen(metrics *m, const char *host, int port, int *port_r, const char **error_r);
/* Close the listener and open connections; memory is released from close
 * callbacks (run the loop afterwards). NULLs *m. */
void metrics_destroy(metrics **m);

/* The request-head check, pure (fuzzed): given the bytes received so far,
 * returns 0 when more are needed, 1 with *status_r (200, 400, 404, 405)
 * once the head is complete (CRLFCRLF or LFLF), or -1 when len exceeds
 * METRICS_MAX_REQUEST without a complete head. */
int metrics_request_check(const char *data, size_t len, int *status_r);

/* A collector for every daemon: process uptime, resident memory, open fds. */
metrics_collect_fn metrics_collect_process;

#endif
