/* rpc-metrics.c: RPC counters in the Prometheus text format. */
#include "buf.h"
#include "mail-error.h"
#include "rpc.h"

#include <string.h>

void rpc_counters_format(struct buf *out, const char *labels, const char *role,
			 const char *service, const struct rpc_counters *c)
{
	buf_printf(out,
		   "# TYPE mail_rpc_frames_in_total counter\n"
		   "mail_rpc_frames_in_total{%s,role=\"%s\",service=\"%s\"} %llu\n"
		   "# TYPE mail_rpc_frames_out_total counter\n"
		   "mail_rpc_frames_out_total{%s,role=\"%s\",service=\"%s\"} %llu\n"
		   "# TYPE mail_rpc_bad_frames_total counter\n"
		   "mail_rpc_bad_frames_total{%s,role=\"%s\",service=\"%s\"} %llu\n"
		   "# TYPE mail_rpc_connections_total counter\n"
		   "mail_rpc_connections_total{%s,role=\"%s\",service=\"%s\"} %llu\n",
		   labels, role, service, (unsigned long long)c->frames_in, labels, role, service,
		   (unsigned long long)c->frames_out, labels, role, service,
		   (unsigned long long)c->bad_frames, labels, role, service,
		   (unsigned long long)c->connections);
	if (strcmp(role, "server") == 0)
		buf_printf(out,
			   "# TYPE mail_rpc_refused_connections_total counter\n"
			   "mail_rpc_refused_connections_total{%s,role=\"%s\",service=\"%s\"} %llu\n"
			   "# TYPE mail_rpc_idle_closed_total counter\n"
			   "mail_rpc_idle_closed_total{%s,role=\"%s\",service=\"%s\"} %llu\n"
			   "# TYPE mail_rpc_read_pauses_total counter\n"
			   "mail_rpc_read_pauses_total{%s,role=\"%s\",service=\"%s\"} %llu\n"
			   "# TYPE mail_rpc_out_peak_bytes gauge\n"
			   "mail_rpc_out_peak_bytes{%s,role=\"%s\",service=\"%s\"} %llu\n",
			   labels, role, service, (unsigned long long)c->refused, labels, role,
			   service, (unsigned long long)c->idle_closed, labels, role, service,
			   (unsigned long long)c->read_pauses, labels, role, service,
			   (unsigned long long)c->out_peak_bytes);
	/* each metric's samples right after its TYPE line (one group) */
	buf_printf(out, "# TYPE mail_rpc_calls_total counter\n");
	for (int st = 0; st <= MAIL_ERR_COUNT_; st++) {
		if (c->calls_by_status[st] == 0)
			continue;
		const char *name = st < MAIL_ERR_COUNT_ ? mail_error_info(st)->name : "unknown";
		buf_printf(out, "mail_rpc_calls_total{%s,role=\"%s\",service=\"%s\",status=\"%s\"} %llu\n",
			   labels, role, service, name, (unsigned long long)c->calls_by_status[st]);
	}
}
