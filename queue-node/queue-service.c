/* queue-service.c: RPC service "queue": ENQUEUE; LIST, SHOW and ACTION are
 * queue-admin.c's, wired here to the delivery side. */
#include "queue-service.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mail-error.h"
#include "queue-admin.h"
#include "queue-dkim.h"
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
	queue_admin *admin;         /* NULL until queue_service_set_admin */
	queue_dkim *dkim;           /* NULL: nothing is signed */
	const queue_config *config;
	struct sign_wait *signing;  /* messages being signed */
	rpc_server *server;
};

/* A submitted message being signed before it is proposed. */
struct sign_wait {
	queue_service *svc;
	struct sign_wait *prev, *next; /* svc->signing */
	rpc_call *call;
	const Queue__EnqueueRequest *req; /* lives until the reply */
};

static void service__sign_unlink(struct sign_wait *w)
{
	if (w->prev != NULL)
		w->prev->next = w->next;
	else
		w->svc->signing = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
}

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

static void service__signed_cb(int status, const uint8_t *signed_body, size_t signed_len,
			       const char *domain, void *arg)
{
	struct sign_wait *w = arg;
	service__sign_unlink(w);
	Queue__EnqueueRequest env = *w->req;
	if (status != MAIL_OK)
		/* never lose mail for a signature: it goes unsigned (logged) */
		log_event(LOG_WARN, "queue", "event=dkim_unsigned qid=%s domain=%s status=%s",
			  env.queue_id, domain != NULL ? domain : "-",
			  mail_error_info(status)->name);
	if (signed_body != NULL) {
		env.body.data = (uint8_t *)signed_body;
		env.body.len = signed_len;
		env.dkim_signed = 1;
	}
	Queue__QueuedMessage rec = QUEUE__QUEUED_MESSAGE__INIT;
	rec.envelope = &env;
	rec.next_attempt_at = util_now_wall_ms();
	/* packed before it returns: signed_body may go with this callback */
	service__enqueue_repl(w->svc, w->call, &rec);
	free(w);
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
	if (svc->repl != NULL && svc->dkim != NULL && req->auth_user[0] != '\0' &&
	    !req->dkim_signed) {
		/* submitted by one of our users: signed once, here, so the
		 * log replicates (and every retry sends) the signed bytes */
		struct sign_wait *w = xcalloc(1, sizeof *w);
		*w = (struct sign_wait){ svc, NULL, svc->signing, call, req };
		if (svc->signing != NULL)
			svc->signing->prev = w;
		svc->signing = w;
		queue_dkim_sign(svc->dkim, svc->loop, svc->config, req->queue_id, req->body.data,
				req->body.len, service__signed_cb, w);
		return;
	}
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

/* queue-admin.h's view of the delivery (ctx: the queue_delivery). */
static int service__admin_leads(void *ctx, const char *queue_id)
{
	return queue_delivery_leads(ctx, queue_id);
}

static int service__admin_running(void *ctx, const char *queue_id)
{
	return queue_delivery_running(ctx, queue_id);
}

static void service__admin_action(void *ctx, const char *queue_id, Queue__QueueAction action,
				  queue_admin_done_cb *cb, void *arg)
{
	queue_delivery_action(ctx, queue_id, action, cb, arg);
}

static uint32_t service__admin_partitions(void *ctx)
{
	void *jctx;
	const struct queue_journal *j = queue_delivery_journal(ctx, &jctx);
	return j->partitions(jctx);
}

static int service__admin_leads_partition(void *ctx, uint32_t p)
{
	void *jctx;
	const struct queue_journal *j = queue_delivery_journal(ctx, &jctx);
	return j->leads_partition(jctx, p);
}

static int service__admin_partition_of(void *ctx, const char *queue_id, uint32_t *p_r)
{
	void *jctx;
	const struct queue_journal *j = queue_delivery_journal(ctx, &jctx);
	return j->partition_of(jctx, queue_id, p_r);
}

static const struct queue_admin_ops service_admin_ops = {
	.leads = service__admin_leads,
	.running = service__admin_running,
	.action = service__admin_action,
	.partitions = service__admin_partitions,
	.leads_partition = service__admin_leads_partition,
	.partition_of = service__admin_partition_of,
};

static void service__list(rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	queue_service *svc = ctx;
	queue_admin_rpc_list(svc->admin, call, msg);
}

static void service__show(rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	queue_service *svc = ctx;
	queue_admin_rpc_show(svc->admin, call, msg);
}

static void service__action(rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	queue_service *svc = ctx;
	queue_admin_rpc_action(svc->admin, call, msg);
}

static const rpc_method service_methods[] = {
	/* with TLS: frontends (SMTP), queue nodes (bounces), admin tools */
	{ QUEUE__METHOD__ENQUEUE, "enqueue", &queue__enqueue_request__descriptor,
	  service__enqueue, RPC_ROLE_FRONTEND | RPC_ROLE_QUEUE | RPC_ROLE_ADMIN },
	/* mailctl queue: operators only */
	{ QUEUE__METHOD__LIST, "list", &queue__queue_list_request__descriptor,
	  service__list, RPC_ROLE_ADMIN },
	{ QUEUE__METHOD__SHOW, "show", &queue__queue_show_request__descriptor,
	  service__show, RPC_ROLE_ADMIN },
	{ QUEUE__METHOD__ACTION, "action", &queue__queue_action_request__descriptor,
	  service__action, RPC_ROLE_ADMIN },
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

void queue_service_set_dkim(queue_service *service, queue_dkim *qd, const queue_config *cfg)
{
	service->dkim = qd;
	service->config = cfg;
}

void queue_service_set_repl(queue_service *service, queue_repl *qr, queue_delivery *d)
{
	service->repl = qr;
	service->delivery = d;
}

void queue_service_set_admin(queue_service *service, const char *node_id)
{
	queue_admin_destroy(&service->admin);
	if (service->delivery == NULL)
		return;  /* not started: the methods stay unavailable */
	service->admin = queue_admin_create(service->store, &service_admin_ops,
					    service->delivery, node_id);
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
	/* the signer is gone first (its callbacks will not come) */
	while (svc->signing != NULL) {
		struct sign_wait *w = svc->signing;
		service__sign_unlink(w);
		free(w);
	}
	rpc_server_destroy(&svc->server);
	queue_admin_destroy(&svc->admin);
	free(svc);
	*service = NULL;
}

void queue_service_counters(const queue_service *service, struct rpc_counters *counters_r)
{
	rpc_server_counters(service->server, counters_r);
}
