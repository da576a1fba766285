/* queue-service.c: RPC service "queue", method ENQUEUE. */
#include "queue-service.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mail-error.h"
#include "queue-dsn.h"
#include "rpc.h"
#include "util.h"
#include "xalloc.h"

struct queue_service {
	uv_loop_t *loop;
	struct queue_service_settings set;
	queue_store *store;
	queue_delivery *delivery;
	queue_repl *repl;           /* NULL: standalone */
	rpc_server *server;
};

/* An enqueue waiting for its partition's log. */
struct enqueue_wait {
	rpc_call *call;
	char qid[QUEUE_ID_MAX + 1];
};

void queue_service_settings_default(struct queue_service_settings *set)
{
	set->max_rcpts = 1000;
	set->max_body = 50u * 1024u * 1024u;
}

int queue_service_settings_check(const struct queue_service_settings *set,
				 const char **error_r)
{
	if (set->max_rcpts < 1 || set->max_rcpts > 100000) {
		*error_r = "max_rcpts out of range 1..100000";
		return -1;
	}
	if (set->max_body < 1 || set->max_body > 64u * 1024u * 1024u) {
		*error_r = "max_body out of range 1..67108864";
		return -1;
	}
	return 0;
}

int queue_service_validate(const struct queue_service_settings *set,
			   const Queue__EnqueueRequest *req, const char **why_r)
{
	if (!queue_store_id_valid(req->queue_id)) {
		*why_r = "bad queue id";
		return MAIL_ERR_PARAMS;
	}
	if (req->n_rcpt_to == 0) {
		*why_r = "no recipient";
		return MAIL_ERR_PARAMS;
	}
	if (req->n_rcpt_to > set->max_rcpts) {
		*why_r = "too many recipients";
		return MAIL_ERR_LIMIT;
	}
	if (req->body.len > set->max_body) {
		*why_r = "body too big";
		return MAIL_ERR_TOO_BIG;
	}
	if (queue_dsn_check(req, why_r) < 0)
		return MAIL_ERR_PARAMS;
	for (size_t i = 0; i < req->n_rcpt_to; i++) {
		const char *r = req->rcpt_to[i];
		char *norm = util_address_normalize(r, strlen(r));
		if (norm == NULL) {
			*why_r = "bad recipient";
			return MAIL_ERR_PARAMS;
		}
		free(norm);
	}
	*why_r = "ok";
	return MAIL_OK;
}

static void service__log_enqueued(rpc_call *call, const Queue__EnqueueRequest *req,
				  int duplicate)
{
	char q[160];
	if (duplicate) {
		log_event(LOG_INFO, "queue", "event=enqueue_duplicate qid=%s peer=%s",
			  req->queue_id, rpc_call_peer(call));
	} else {
		char dsn[320];
		log_event(LOG_INFO, "queue", "event=enqueued qid=%s from=%s rcpts=%zu size=%zu "
			  "session=%s%s", req->queue_id,
			  log_quote(q, sizeof q, req->mail_from, strlen(req->mail_from)),
			  req->n_rcpt_to, req->body.len,
			  req->session_id[0] ? req->session_id : "-",
			  queue_dsn_log_fields(req, dsn, sizeof dsn));
	}
}

static void service__committed_cb(int status, int duplicate, void *arg)
{
	struct enqueue_wait *w = arg;
	if (status != MAIL_OK) {
		log_event(LOG_WARN, "queue", "event=enqueue_failed qid=%s status=%s", w->qid,
			  mail_error_info(status)->name);
		/* Unknown outcome: the client retries with the same queue id. */
		rpc_call_reply(w->call, mail_error_info(status)->temporary ? status
								     : MAIL_ERR_TEMP, NULL);
	} else {
		log_event(LOG_INFO, "queue", "event=%s qid=%s replicated=1",
			  duplicate ? "enqueue_duplicate" : "enqueued", w->qid);
		Queue__EnqueueResponse resp = QUEUE__ENQUEUE_RESPONSE__INIT;
		resp.queue_id = w->qid;
		rpc_call_reply(w->call, MAIL_OK, &resp.base);
	}
	free(w);
}

/* The replicated ENQUEUE: through the partition's log; delivery is
 * scheduled by the apply on the partition's leader (queue-repl.c). */
static void service__enqueue_repl(queue_service *svc, rpc_call *call,
				  const Queue__QueuedMessage *rec)
{
	struct enqueue_wait *w = xcalloc(1, sizeof *w);
	w->call = call;
	strcpy(w->qid, rec->envelope->queue_id);
	int ret = queue_repl_enqueue(svc->repl, rec, service__committed_cb, w);
	if (ret != MAIL_OK) {
		free(w);
		rpc_call_reply(call, ret, NULL);
		return;
	}
	char q[160], dsn[320];
	const Queue__EnqueueRequest *req = rec->envelope;
	log_event(LOG_INFO, "queue", "event=enqueue_proposed qid=%s from=%s rcpts=%zu size=%zu "
		  "session=%s%s", req->queue_id,
		  log_quote(q, sizeof q, req->mail_from, strlen(req->mail_from)),
		  req->n_rcpt_to, req->body.len, req->session_id[0] ? req->session_id : "-",
		  queue_dsn_log_fields(req, dsn, sizeof dsn));
}

static void service__enqueue(rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	queue_service *svc = ctx;
	const Queue__EnqueueRequest *req = (const Queue__EnqueueRequest *)msg;
	const char *why;
	char q[160];
	int status = queue_service_validate(&svc->set, req, &why);
	if (status != MAIL_OK) {
		log_event(LOG_WARN, "queue",
			  "event=enqueue_rejected qid=%s peer=%s status=%s why=\"%s\"",
			  log_quote(q, sizeof q, req->queue_id, strlen(req->queue_id)),
			  rpc_call_peer(call), mail_error_info(status)->name, why);
		rpc_call_reply(call, status, NULL);
		return;
	}
	if (svc->delivery == NULL) {
		rpc_call_reply(call, MAIL_ERR_NOT_PRIMARY, NULL); /* not started yet */
		return;
	}
	Queue__QueuedMessage rec = QUEUE__QUEUED_MESSAGE__INIT;
	rec.envelope = (Queue__EnqueueRequest *)req;
	rec.next_attempt_at = util_now_wall_ms();
	if (svc->repl != NULL) {
		service__enqueue_repl(svc, call, &rec);
		return;
	}
	/* The sync LevelDB write runs on the loop thread: it costs ~0.3 ms on
	 * our disks (DEPS-FACTS section 4) and keeps the ack ordering trivial.
	 * Moving it to uv_queue_work with group commit is the next step when
	 * enqueue throughput matters. */
	int ret = queue_store_put(svc->store, &rec, &why);
	if (ret < 0) {
		log_event(LOG_ERROR, "queue", "event=enqueue_failed qid=%s error=\"%s\"",
			  req->queue_id, why);
		rpc_call_reply(call, MAIL_ERR_TEMP, NULL);
		return;
	}
	/* Durable now: only from here may the client hear MAIL_OK. */
	Queue__EnqueueResponse resp = QUEUE__ENQUEUE_RESPONSE__INIT;
	resp.queue_id = req->queue_id;
	service__log_enqueued(call, req, ret == 1);
	char qid[QUEUE_ID_MAX + 1];
	strcpy(qid, req->queue_id); /* req dies with the reply */
	rpc_call_reply(call, MAIL_OK, &resp.base);
	queue_delivery_enqueued(svc->delivery, qid);
}

static const rpc_method service_methods[] = {
	/* with TLS: frontends (SMTP), queue nodes (bounces), admin tools */
	{ QUEUE__METHOD__ENQUEUE, "enqueue", &queue__enqueue_request__descriptor,
	  service__enqueue, RPC_ROLE_FRONTEND | RPC_ROLE_QUEUE | RPC_ROLE_ADMIN },
};

int queue_service_create(uv_loop_t *loop, const struct queue_service_settings *set,
			 queue_store *store, queue_delivery *delivery,
			 queue_service **service_r)
{
	queue_service *svc = xcalloc(1, sizeof *svc);
	svc->loop = loop;
	svc->set = *set;
	svc->store = store;
	svc->delivery = delivery;
	rpc_server_create(loop, "queue", service_methods,
			  sizeof service_methods / sizeof service_methods[0], svc, &svc->server);
	*service_r = svc;
	return 0;
}

int queue_service_listen(queue_service *svc, const char *host, int port, int *port_r,
			 const char **error_r)
{
	return rpc_server_listen(svc->server, host, port, port_r, error_r);
}

void queue_service_set_repl(queue_service *service, queue_repl *qr, queue_delivery *d)
{
	service->repl = qr;
	service->delivery = d;
}

rpc_server *queue_service_server(queue_service *service)
{
	return service->server;
}

void queue_service_destroy(queue_service **service)
{
	queue_service *svc = *service;
	if (svc == NULL)
		return;
	rpc_server_destroy(&svc->server);
	free(svc);
	*service = NULL;
}

void queue_service_counters(const queue_service *service, struct rpc_counters *counters_r)
{
	rpc_server_counters(service->server, counters_r);
}
