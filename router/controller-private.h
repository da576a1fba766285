/* controller-private.h: test hooks of the controller (tests only). */
#ifndef MAIL_ROUTER_CONTROLLER_PRIVATE_H
#define MAIL_ROUTER_CONTROLLER_PRIVATE_H

#include "controller.h"

typedef struct router__controller_hooks {
	int resync_ms; /* 0: ROUTER_CONTROLLER_RESYNC_MS */
	/* called on the controller thread after it read the map and computed
	 * a change, just before its compare-and-swap */
	void (*before_cas)(enum router_role role, void *arg);
	void *arg;
} router__controller_hooks;

int router__controller_start_hooked(uv_loop_t *loop, const etcd_conf *etcd, const char *node_id,
				    int ttl_s, etcd_stats *stats, const router__controller_hooks *hooks,
				    router_controller **ctl_r, const char **error_r);

/* Like a crash: end the threads and free, WITHOUT revoking the lease (the
 * election key stays until the lease expires). */
void router__controller_abandon(router_controller **ctl);

#endif
