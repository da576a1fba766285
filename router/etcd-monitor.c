/* etcd-monitor.c: etcd's size and our write rate as metrics (etcd-monitor.h). */
#include "etcd-monitor.h"

#include <inttypes.h>
#include <stdlib.h>

#include "log.h"
#include "mail-error.h"
#include "util.h"
#include "xalloc.h"

#define LOG_SVC "etcd"

struct poll_job {
	uv_work_t work;
	etcd_monitor *mon;      /* NULL once the monitor is gone */
	etcd_conf *etcd;
	etcd_member_status status;
	int err;
};

struct etcd_monitor {
	uv_loop_t *loop;
	uv_timer_t *timer;      /* freed by its close callback */
	etcd_conf *etcd;
	uint64_t quota;
	etcd_stats *stats;
	struct poll_job *job;   /* in the thread pool, or NULL */
	int have_status;
	etcd_member_status last;
	uint64_t errors;
	uint64_t last_warn_ms;  /* 0: never warned */
};

static void poll_work_cb(uv_work_t *w)
{
	struct poll_job *j = w->data;
	/* a client per poll: a pool thread may run it, and one request every
	 * 30 s does not need a kept-alive connection */
	etcd_client *etcd = etcd_client_create(j->etcd);
	j->err = etcd_maintenance_status(etcd, &j->status);
	etcd_client_destroy(&etcd);
}

static void monitor_check_size(etcd_monitor *mon)
{
	uint64_t size = (uint64_t)mon->last.db_size;
	if (size * 100 < mon->quota * ETCD_MONITOR_WARN_PERCENT)
		return;
	uint64_t now = util_now_mono_ms();
	if (mon->last_warn_ms != 0 && now < mon->last_warn_ms + ETCD_MONITOR_WARN_EVERY_MS)
		return;
	mon->last_warn_ms = now;
	log_event(LOG_WARN, LOG_SVC, "event=etcd_db_large size=%" PRIu64 " in_use=%" PRId64
		  " quota=%" PRIu64 " hint=\"compact and defragment etcd (docs/deploy.md)\"",
		  size, mon->last.db_size_in_use, mon->quota);
}

static void poll_done_cb(uv_work_t *w, int status)
{
	struct poll_job *j = w->data;
	etcd_monitor *mon = j->mon;
	if (mon != NULL) {
		mon->job = NULL;
		if (status == 0 && j->err == MAIL_OK) {
			mon->last = j->status;
			mon->have_status = 1;
			monitor_check_size(mon);
		} else {
			mon->errors++;
		}
	}
	etcd_conf_free(&j->etcd);
	free(j);
}

static void poll_timer_cb(uv_timer_t *t)
{
	etcd_monitor *mon = t->data;
	if (mon->job != NULL)
		return; /* the last poll still waits on etcd */
	struct poll_job *j = xcalloc(1, sizeof *j);
	j->work.data = j;
	j->mon = mon;
	j->etcd = etcd_conf_dup(mon->etcd);
	mon->job = j;
	uv_queue_work(mon->loop, &j->work, poll_work_cb, poll_done_cb);
}

etcd_monitor *etcd_monitor_start(uv_loop_t *loop, const etcd_monitor_settings *set)
{
	etcd_monitor *mon = xcalloc(1, sizeof *mon);
	mon->loop = loop;
	mon->etcd = etcd_conf_dup(set->etcd);
	mon->quota = set->quota_bytes ? set->quota_bytes : ETCD_MONITOR_DEFAULT_QUOTA;
	mon->stats = set->stats;
	mon->timer = xcalloc(1, sizeof *mon->timer);
	uv_timer_init(loop, mon->timer);
	mon->timer->data = mon;
	uv_timer_start(mon->timer, poll_timer_cb, 0,
		       set->period_ms ? set->period_ms : ETCD_MONITOR_PERIOD_MS);
	return mon;
}

int etcd_monitor_last(const etcd_monitor *mon, etcd_member_status *status_r)
{
	if (!mon->have_status)
		return 0;
	*status_r = mon->last;
	return 1;
}

void etcd_monitor_collect(buf *out, const char *labels, void *arg)
{
	etcd_monitor *mon = arg;
	if (mon->have_status) {
		buf_printf(out, "# TYPE mail_etcd_db_size_bytes gauge\n"
			   "mail_etcd_db_size_bytes{%s} %" PRId64 "\n", labels, mon->last.db_size);
		buf_printf(out, "# TYPE mail_etcd_db_size_in_use_bytes gauge\n"
			   "mail_etcd_db_size_in_use_bytes{%s} %" PRId64 "\n", labels,
			   mon->last.db_size_in_use);
		buf_printf(out, "# TYPE mail_etcd_revision gauge\n"
			   "mail_etcd_revision{%s} %" PRId64 "\n", labels, mon->last.revision);
	}
	buf_printf(out, "# TYPE mail_etcd_quota_bytes gauge\n"
		   "mail_etcd_quota_bytes{%s} %" PRIu64 "\n", labels, mon->quota);
	if (mon->stats != NULL)
		buf_printf(out, "# TYPE mail_etcd_writes_total counter\n"
			   "mail_etcd_writes_total{%s} %" PRIu64 "\n", labels,
			   etcd_stats_writes(mon->stats));
	buf_printf(out, "# TYPE mail_etcd_status_errors_total counter\n"
		   "mail_etcd_status_errors_total{%s} %" PRIu64 "\n", labels, mon->errors);
}

static void monitor_timer_close_cb(uv_handle_t *h)
{
	free(h);
}

void etcd_monitor_destroy(etcd_monitor **monp)
{
	etcd_monitor *mon = *monp;
	if (mon == NULL)
		return;
	*monp = NULL;
	uv_close((uv_handle_t *)mon->timer, monitor_timer_close_cb);
	if (mon->job != NULL)
		mon->job->mon = NULL; /* it finishes after us */
	etcd_conf_free(&mon->etcd);
	free(mon);
}
