#include "daemon.h"
#include "log.h"

#include <signal.h>
#include <stdlib.h>

static void daemon__signal_cb(uv_signal_t *handle, int signum)
{
	struct daemon_signals *ds = handle->data;
	if (ds->stopping) {
		log_event(LOG_WARN, "daemon", "event=forced_exit signal=%d", signum);
		exit(1);
	}
	ds->stopping = 1;
	log_event(LOG_INFO, "daemon", "event=stopping signal=%d", signum);
	ds->on_stop(ds->arg);
}

void daemon_signals_init(uv_loop_t *loop, struct daemon_signals *ds,
			 daemon_stop_fn *on_stop, void *arg)
{
	signal(SIGPIPE, SIG_IGN);
	ds->on_stop = on_stop;
	ds->arg = arg;
	ds->stopping = 0;
	uv_signal_init(loop, &ds->sigterm);
	uv_signal_init(loop, &ds->sigint);
	ds->sigterm.data = ds;
	ds->sigint.data = ds;
	uv_signal_start(&ds->sigterm, daemon__signal_cb, SIGTERM);
	uv_signal_start(&ds->sigint, daemon__signal_cb, SIGINT);
	/* signal handles must not keep a stopping loop alive */
	uv_unref((uv_handle_t *)&ds->sigterm);
	uv_unref((uv_handle_t *)&ds->sigint);
}

void daemon_signals_deinit(struct daemon_signals *ds)
{
	if (!uv_is_closing((uv_handle_t *)&ds->sigterm))
		uv_close((uv_handle_t *)&ds->sigterm, NULL);
	if (!uv_is_closing((uv_handle_t *)&ds->sigint))
		uv_close((uv_handle_t *)&ds->sigint, NULL);
}

static void daemon__close_walk_cb(uv_handle_t *handle, void *arg)
{
	(void)arg;
	if (!uv_is_closing(handle))
		uv_close(handle, NULL);
}

int daemon_loop_finish(uv_loop_t *loop)
{
	uv_run(loop, UV_RUN_DEFAULT);
	uv_walk(loop, daemon__close_walk_cb, NULL);
	uv_run(loop, UV_RUN_DEFAULT);
	return uv_loop_close(loop);
}

int daemon_metrics_start(uv_loop_t *loop, const char *svc, const char *node_id,
			 const struct daemon_listen *addr, metrics **metrics_r,
			 const char **error_r)
{
	metrics *m = metrics_create(loop, svc, node_id);
	metrics_add_collector(m, metrics_collect_process, m);
	int port;
	if (metrics_listen(m, addr->host, addr->port, &port, error_r) < 0) {
		metrics_destroy(&m);
		return -1;
	}
	log_event(LOG_INFO, svc, "event=metrics_listening addr=%s:%d", addr->host, port);
	*metrics_r = m;
	return 0;
}
