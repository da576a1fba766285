/* etcd-monitor.h: how big the daemon's etcd is, and how much this process
 * writes to it, as Prometheus metrics (public contract).
 *
 * Every period_ms the monitor asks etcd for its status (POST
 * /v3/maintenance/status, from the thread pool: the loop never waits on
 * etcd) and keeps the last answer. Its collector (a metrics_collect_fn)
 * prints:
 *   mail_etcd_db_size_bytes         gauge   etcd's backend file (what the
 *                                           quota is checked against)
 *   mail_etcd_db_size_in_use_bytes  gauge   the part holding live data
 *   mail_etcd_revision              gauge   etcd's current revision
 *   mail_etcd_quota_bytes           gauge   the quota the daemon was told
 *   mail_etcd_writes_total          counter this process's puts, deletes
 *                                           and txns that made a revision
 *                                           (etcd_stats)
 *   mail_etcd_status_errors_total   counter status polls that failed
 * The size gauges are absent until the first poll has answered. When the
 * database passes ETCD_MONITOR_WARN_PERCENT of the quota it logs
 * `event=etcd_db_large size=.. quota=..` (again on every poll while it
 * stays there, at most once per ETCD_MONITOR_WARN_EVERY_MS).
 *
 * Loop thread only.
 */
#ifndef MAIL_ETCD_MONITOR_H
#define MAIL_ETCD_MONITOR_H

#include <stdint.h>

#include <uv.h>

#include "buf.h"
#include "etcd.h"

/* etcd's own default --quota-backend-bytes (2 GiB). */
#define ETCD_MONITOR_DEFAULT_QUOTA (2ull * 1024 * 1024 * 1024)
#define ETCD_MONITOR_PERIOD_MS 30000
#define ETCD_MONITOR_WARN_PERCENT 80
#define ETCD_MONITOR_WARN_EVERY_MS (10 * 60 * 1000)

typedef struct etcd_monitor etcd_monitor;

typedef struct etcd_monitor_settings {
	const etcd_conf *etcd;  /* copied */
	uint64_t quota_bytes;   /* 0: ETCD_MONITOR_DEFAULT_QUOTA */
	uint32_t period_ms;     /* 0: ETCD_MONITOR_PERIOD_MS */
	etcd_stats *stats;      /* the process's write counter (borrowed, may be
				 * NULL: writes_total is then absent) */
} etcd_monitor_settings;

/* Start polling (the first poll at once). Strings are copied; stats is
 * borrowed until destroy. Never fails. */
etcd_monitor *etcd_monitor_start(uv_loop_t *loop, const etcd_monitor_settings *set);

/* The last answer: 1 and *status_r once a poll has succeeded, else 0. */
int etcd_monitor_last(const etcd_monitor *mon, etcd_member_status *status_r);

/* metrics_collect_fn: arg is the etcd_monitor. */
void etcd_monitor_collect(buf *out, const char *labels, void *arg);

/* Stop and free; a poll in flight finishes on its own and frees itself.
 * Run the loop afterwards for the timer's close callback. NULLs *mon;
 * NULL is fine. */
void etcd_monitor_destroy(etcd_monitor **mon);

#endif
