/* daemon.h: the plumbing every daemon's main() shares.
 *
 * daemon_signals: SIGTERM/SIGINT on the loop call on_stop once (a second
 * signal exits at once, status 1); SIGPIPE is ignored so a peer closing a
 * socket can never kill the node. Embedded: init on the daemon's context
 * struct, stop before the loop's final run. Loop thread only.
 */
#ifndef MAIL_DAEMON_H
#define MAIL_DAEMON_H

#include <uv.h>

#include "daemon-options.h"
#include "metrics.h"

typedef void daemon_stop_fn(void *arg);

struct daemon_signals {
	uv_signal_t sigterm;
	uv_signal_t sigint;
	daemon_stop_fn *on_stop;
	void *arg;
	int stopping;
};

void daemon_signals_init(uv_loop_t *loop, struct daemon_signals *ds,
			 daemon_stop_fn *on_stop, void *arg);
/* Close both signal handles (asynchronously; run the loop once more). */
void daemon_signals_deinit(struct daemon_signals *ds);

/* Run the loop until no handle is left, then close it; walks and closes any
 * handle still open so uv_loop_close() succeeds. Returns uv_loop_close()'s
 * result. */
int daemon_loop_finish(uv_loop_t *loop);

/* Create the daemon's metrics endpoint on addr (its host an IP literal)
 * with the process collector registered. Returns 0 with *metrics_r, or -1
 * with *error_r (static text) and nothing to free. */
int daemon_metrics_start(uv_loop_t *loop, const char *svc, const char *node_id,
			 const struct daemon_listen *addr, metrics **metrics_r,
			 const char **error_r);

#endif
