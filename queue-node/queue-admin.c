/* queue-admin.c: LIST, SHOW and ACTION of the "queue" service (contract in
 * queue-admin.h).
 *
 * Responses are built on the heap field by field (every string copied) so
 * that one protobuf_c_message_free_unpacked() frees them: the message a
 * load callback sees is freed when the callback returns.
 *
 * A bulk ACTION first collects the matching queue ids (one pass over the
 * store), then acts on them a few at a time: each action is a proposal to
 * the partition's log, and thousands at once would only queue up there.
 */
#include "queue-admin.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "mail-error.h"
#include "util.h"
#include "xalloc.h"

/* One bulk (or single) action in progress. */
struct admin_bulk {
	queue_admin *admin;              /* NULL once detached (queue_admin_destroy) */
	struct admin_bulk *prev, *next;  /* admin->bulks */
	Queue__QueueAction action;
	int single;                      /* one queue id: its status is the result */
	char **qids;
	size_t n, next_i;
	unsigned inflight;
	int pumping;                     /* inside admin__bulk_pump's loop */
	uint32_t affected;
	int status;                      /* single: the status; bulk: the first error */
	queue_admin_action_cb *cb;
	void *arg;
};

/* One action of a bulk, in flight. */
struct admin_step {
	struct admin_bulk *bulk;
	size_t index;
};

struct queue_admin {
	queue_store *store;
	const struct queue_admin_ops *ops;
	void *ctx;
	char *node_id;
	struct admin_bulk *bulks;
};

queue_admin *queue_admin_create(queue_store *store, const struct queue_admin_ops *ops,
				void *ctx, const char *node_id)
{
	queue_admin *a = xcalloc(1, sizeof *a);
	a->store = store;
	a->ops = ops;
	a->ctx = ctx;
	a->node_id = xstrdup(node_id != NULL ? node_id : "");
	return a;
}

void queue_admin_destroy(queue_admin **admin)
{
	queue_admin *a = *admin;
	if (a == NULL)
		return;
	for (struct admin_bulk *b = a->bulks, *next; b != NULL; b = next) {
		next = b->next;
		b->admin = NULL;
		b->prev = b->next = NULL;
	}
	free(a->node_id);
	free(a);
	*admin = NULL;
}

static const char *admin__action_name(Queue__QueueAction action)
{
	switch (action) {
	case QUEUE__QUEUE_ACTION__ACTION_RETRY:
		return "retry";
	case QUEUE__QUEUE_ACTION__ACTION_HOLD:
		return "hold";
	case QUEUE__QUEUE_ACTION__ACTION_RELEASE:
		return "release";
	case QUEUE__QUEUE_ACTION__ACTION_DELETE:
		return "delete";
	case QUEUE__QUEUE_ACTION__ACTION_DELETE_BOUNCE:
		return "delete_bounce";
	default:
		return NULL;
	}
}

/* ---- reading a message ---------------------------------------------------- */

int queue_admin_rcpt_done(const Queue__QueuedMessage *msg, size_t i)
{
	if (i < msg->n_delivered && msg->delivered[i])
		return 1;
	const Queue__MessageState *st = msg->state;
	for (size_t k = 0; st != NULL && k < st->n_rcpts; k++) {
		const Queue__RcptOutcome *o = st->rcpts[k];
		if (o->index == i)
			return o->status == QUEUE__RCPT_STATUS__RCPT_DELIVERED ||
			       o->status == QUEUE__RCPT_STATUS__RCPT_FAILED;
	}
	return 0;
}

static uint32_t admin__attempts(const Queue__QueuedMessage *msg)
{
	return msg->state != NULL ? msg->state->attempts : msg->attempts;
}

static int64_t admin__next_attempt(const Queue__QueuedMessage *msg)
{
	return msg->state != NULL ? msg->state->next_attempt_at : msg->next_attempt_at;
}

Queue__QueueFilter queue_admin_state_of(const Queue__QueuedMessage *msg, int running,
					int64_t now_ms)
{
	if (msg->state != NULL && msg->state->held)
		return QUEUE__QUEUE_FILTER__FILTER_HELD;
	if (running || admin__next_attempt(msg) <= now_ms)
		return QUEUE__QUEUE_FILTER__FILTER_ACTIVE;
	return QUEUE__QUEUE_FILTER__FILTER_DEFERRED;
}

/* The domain of address a ("" when it has no '@'). */
static const char *admin__domain(const char *a)
{
	const char *at = strrchr(a, '@');
	return at != NULL ? at + 1 : "";
}

static int admin__pending_in(const Queue__QueuedMessage *msg, const char *domain)
{
	const Queue__EnqueueRequest *env = msg->envelope;
	for (size_t i = 0; i < env->n_rcpt_to; i++) {
		if (!queue_admin_rcpt_done(msg, i) &&
		    strcasecmp(admin__domain(env->rcpt_to[i]), domain) == 0)
			return 1;
	}
	return 0;
}

/* "451 4.3.0 text" of the recipient deferred last, heap; "" when none. */
static char *admin__last_error(const Queue__QueuedMessage *msg)
{
	const Queue__RcptOutcome *last = NULL;
	const Queue__MessageState *st = msg->state;
	for (size_t k = 0; st != NULL && k < st->n_rcpts; k++) {
		const Queue__RcptOutcome *o = st->rcpts[k];
		if (o->status == QUEUE__RCPT_STATUS__RCPT_DEFERRED &&
		    (last == NULL || o->at >= last->at))
			last = o;
	}
	if (last == NULL)
		return xstrdup("");
	char code[16] = "";
	if (last->code != 0)
		snprintf(code, sizeof code, "%u ", last->code);
	return xasprintf("%s%s%s%s", code, last->enh, last->enh[0] != '\0' ? " " : "",
			 last->text);
}

static int admin__cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The pending recipients' domains, lower-cased, sorted, each once. */
static void admin__domains(const Queue__QueuedMessage *msg, Queue__QueueSummary *s)
{
	const Queue__EnqueueRequest *env = msg->envelope;
	char **d = xcalloc(env->n_rcpt_to + 1, sizeof *d);
	size_t n = 0;
	for (size_t i = 0; i < env->n_rcpt_to; i++) {
		if (queue_admin_rcpt_done(msg, i))
			continue;
		char *dom = xstrdup(admin__domain(env->rcpt_to[i]));
		for (char *p = dom; *p != '\0'; p++)
			*p = (char)tolower((unsigned char)*p);
		d[n++] = dom;
	}
	qsort(d, n, sizeof *d, admin__cmp_str);
	size_t w = 0;
	for (size_t i = 0; i < n; i++) {
		if (w > 0 && strcmp(d[w - 1], d[i]) == 0)
			free(d[i]);
		else
			d[w++] = d[i];
	}
	s->domains = d;
	s->n_domains = w;
}

static Queue__QueueSummary *admin__summary(queue_admin *a, const Queue__QueuedMessage *msg,
					   int running, int64_t now_ms)
{
	const Queue__EnqueueRequest *env = msg->envelope;
	Queue__QueueSummary *s = xmalloc(sizeof *s);
	queue__queue_summary__init(s);
	s->queue_id = xstrdup(env->queue_id);
	s->mail_from = xstrdup(env->mail_from);
	s->rcpts = (uint32_t)env->n_rcpt_to;
	for (size_t i = 0; i < env->n_rcpt_to; i++)
		s->pending += !queue_admin_rcpt_done(msg, i);
	s->size = env->body.len;
	s->received_at = env->received_at;
	s->attempts = admin__attempts(msg);
	s->next_attempt_at = admin__next_attempt(msg);
	s->state = queue_admin_state_of(msg, running, now_ms);
	s->last_error = admin__last_error(msg);
	admin__domains(msg, s);
	s->node = xstrdup(a->node_id);
	return s;
}

/* The walks' filter: arg is a struct admin_list or admin_collect, whose
 * first member is the admin. */
static int admin__keep_cb(const char *queue_id, void *arg)
{
	queue_admin *a = *(queue_admin **)arg;
	return a->ops->leads(a->ctx, queue_id);
}

/* The partitions this node leads now, those of only[0..n_only) when
 * n_only > 0, into a new array *led_r (the caller frees it), and how many
 * partitions there are. Returns the count led. */
static size_t admin__led(queue_admin *a, const uint32_t *only, size_t n_only, uint32_t **led_r,
			 uint32_t *total_r)
{
	uint32_t total = a->ops->partitions(a->ctx);
	uint32_t *led = xcalloc((size_t)total + 1, sizeof *led);
	size_t n = 0;
	for (uint32_t p = 0; p < total; p++) {
		int asked = n_only == 0;
		for (size_t k = 0; !asked && k < n_only; k++)
			asked = only[k] == p;
		if (asked && a->ops->leads_partition(a->ctx, p))
			led[n++] = p;
	}
	*led_r = led;
	*total_r = total;
	return n;
}

/* ---- LIST ------------------------------------------------------------------ */

struct admin_list {
	queue_admin *admin;   /* first (admin__keep_cb) */
	const Queue__QueueListRequest *req;
	uint32_t limit;
	int64_t now_ms;
	Queue__QueueListResponse *resp;
	size_t cap;
};

static void admin__list_cb(const Queue__QueuedMessage *msg, void *arg)
{
	struct admin_list *l = arg;
	const Queue__QueueListRequest *req = l->req;
	if (req->domain[0] != '\0' && !admin__pending_in(msg, req->domain))
		return;
	const char *qid = msg->envelope->queue_id;
	int running = l->admin->ops->running(l->admin->ctx, qid);
	Queue__QueueFilter state = queue_admin_state_of(msg, running, l->now_ms);
	if (req->state != QUEUE__QUEUE_FILTER__FILTER_ALL && req->state != state)
		return;
	Queue__QueueListResponse *resp = l->resp;
	if (resp->n_messages >= l->limit) {
		resp->truncated = 1;
		return;
	}
	if (resp->n_messages == l->cap) {
		l->cap = l->cap != 0 ? l->cap * 2 : 16;
		resp->messages = xrealloc(resp->messages, l->cap * sizeof *resp->messages);
	}
	resp->messages[resp->n_messages++] = admin__summary(l->admin, msg, running, l->now_ms);
}

int queue_admin_list(queue_admin *a, const Queue__QueueListRequest *req,
		     Queue__QueueListResponse **resp_r)
{
	struct admin_list l = { .admin = a, .req = req, .now_ms = util_now_wall_ms() };
	l.limit = req->limit == 0 ? QUEUE_ADMIN_LIST_DEFAULT
		  : req->limit > QUEUE_ADMIN_LIST_MAX ? QUEUE_ADMIN_LIST_MAX : req->limit;
	l.resp = xmalloc(sizeof *l.resp);
	queue__queue_list_response__init(l.resp);
	const char *error;
	if (queue_store_load_if(a->store, admin__keep_cb, admin__list_cb, &l, &error) < 0) {
		log_event(LOG_ERROR, "queue", "event=admin_list_failed error=\"%s\"", error);
		protobuf_c_message_free_unpacked(&l.resp->base, NULL);
		*resp_r = NULL;
		return MAIL_ERR_TEMP;
	}
	/* the walk and this run in one turn of the loop: the same leadership */
	l.resp->n_led = admin__led(a, NULL, 0, &l.resp->led, &l.resp->partitions);
	*resp_r = l.resp;
	return MAIL_OK;
}

/* ---- SHOW ------------------------------------------------------------------ */

static Queue__RcptOutcome *admin__outcome_copy(const Queue__RcptOutcome *o, uint32_t index)
{
	Queue__RcptOutcome *c = xmalloc(sizeof *c);
	queue__rcpt_outcome__init(c);
	c->index = index;
	if (o != NULL) {
		c->status = o->status;
		c->code = o->code;
		c->enh = xstrdup(o->enh);
		c->text = xstrdup(o->text);
		c->remote_mta = xstrdup(o->remote_mta);
		c->at = o->at;
	}
	return c;
}

static const Queue__RcptOutcome *admin__outcome_of(const Queue__QueuedMessage *msg, size_t i)
{
	const Queue__MessageState *st = msg->state;
	for (size_t k = 0; st != NULL && k < st->n_rcpts; k++) {
		if (st->rcpts[k]->index == i)
			return st->rcpts[k];
	}
	return NULL;
}

int queue_admin_show(queue_admin *a, const char *queue_id, Queue__QueueShowResponse **resp_r)
{
	*resp_r = NULL;
	if (!queue_store_id_valid(queue_id))
		return MAIL_ERR_PARAMS;
	Queue__QueuedMessage *msg = NULL;
	const char *error;
	int ret = queue_store_get(a->store, queue_id, &msg, &error);
	if (ret < 0) {
		log_event(LOG_ERROR, "queue", "event=admin_show_failed qid=%s error=\"%s\"",
			  queue_id, error);
		return MAIL_ERR_TEMP;
	}
	/* only the leader says not found: every node saying not primary
	 * means nobody leads the partition this moment (mailctl asks again) */
	if (!a->ops->leads(a->ctx, queue_id)) {
		if (ret > 0)
			queue_store_message_free(&msg);
		return MAIL_ERR_NOT_PRIMARY;
	}
	if (ret == 0)
		return MAIL_ERR_NOT_FOUND;
	const Queue__EnqueueRequest *env = msg->envelope;
	Queue__QueueShowResponse *resp = xmalloc(sizeof *resp);
	queue__queue_show_response__init(resp);
	resp->summary = admin__summary(a, msg, a->ops->running(a->ctx, queue_id),
				       util_now_wall_ms());
	resp->rcpts = xcalloc(env->n_rcpt_to + 1, sizeof *resp->rcpts);
	for (size_t i = 0; i < env->n_rcpt_to; i++) {
		Queue__RcptView *v = xmalloc(sizeof *v);
		queue__rcpt_view__init(v);
		v->addr = xstrdup(env->rcpt_to[i]);
		v->remote = i < env->n_rcpt_remote && env->rcpt_remote[i];
		v->outcome = admin__outcome_copy(admin__outcome_of(msg, i), (uint32_t)i);
		v->done = queue_admin_rcpt_done(msg, i);
		resp->rcpts[resp->n_rcpts++] = v;
	}
	resp->auth_user = xstrdup(env->auth_user);
	resp->helo = xstrdup(env->helo);
	resp->client_addr = xstrdup(env->client_addr);
	queue_store_message_free(&msg);
	*resp_r = resp;
	return MAIL_OK;
}

/* ---- ACTION ----------------------------------------------------------------- */

static void admin__bulk_pump(struct admin_bulk *b);

static void admin__bulk_finish(struct admin_bulk *b)
{
	if (b->admin != NULL) {
		if (b->prev != NULL)
			b->prev->next = b->next;
		else
			b->admin->bulks = b->next;
		if (b->next != NULL)
			b->next->prev = b->prev;
	}
	int status = b->single ? b->status
		     : b->affected == 0 && b->status != MAIL_OK ? b->status : MAIL_OK;
	b->cb(status, b->affected, b->arg);
	for (size_t i = 0; i < b->n; i++)
		free(b->qids[i]);
	free(b->qids);
	free(b);
}

static void admin__step_cb(int status, void *arg)
{
	struct admin_step *step = arg;
	struct admin_bulk *b = step->bulk;
	const char *qid = b->qids[step->index];
	free(step);
	b->inflight--;
	log_event(status == MAIL_OK ? LOG_INFO : LOG_WARN, "queue",
		  "event=admin_action qid=%s action=%s status=%s", qid,
		  admin__action_name(b->action), mail_error_info(status)->name);
	if (status == MAIL_OK)
		b->affected++;
	if (b->single)
		b->status = status;
	else if (status != MAIL_OK && status != MAIL_ERR_NOT_FOUND &&
		 status != MAIL_ERR_NOT_PRIMARY && b->status == MAIL_OK)
		b->status = status;  /* gone or handed over meanwhile: skipped */
	admin__bulk_pump(b);
}

/* Start actions up to the bound; finish when none is left to start or in
 * flight. An action's callback may come from inside ops->action (a fake
 * does): the loop then simply goes on. */
static void admin__bulk_pump(struct admin_bulk *b)
{
	if (b->pumping)
		return;
	b->pumping = 1;
	while (b->admin != NULL && b->next_i < b->n && b->inflight < QUEUE_ADMIN_ACTION_INFLIGHT) {
		struct admin_step *step = xmalloc(sizeof *step);
		step->bulk = b;
		step->index = b->next_i++;
		b->inflight++;
		b->admin->ops->action(b->admin->ctx, b->qids[step->index], b->action,
				      admin__step_cb, step);
	}
	b->pumping = 0;
	if (b->inflight == 0 && (b->admin == NULL || b->next_i == b->n))
		admin__bulk_finish(b);
}

struct admin_collect {
	queue_admin *admin;   /* first (admin__keep_cb) */
	struct admin_bulk *bulk;
	const char *domain;   /* NULL: every message */
	const uint32_t *only; /* n_only > 0: only these partitions' messages */
	size_t n_only;
	size_t cap;
};

static void admin__collect_cb(const Queue__QueuedMessage *msg, void *arg)
{
	struct admin_collect *c = arg;
	struct admin_bulk *b = c->bulk;
	if (c->domain != NULL && !admin__pending_in(msg, c->domain))
		return;
	if (c->n_only > 0) {
		uint32_t p;
		int asked = 0;
		if (c->admin->ops->partition_of(c->admin->ctx, msg->envelope->queue_id, &p) == 0)
			for (size_t k = 0; !asked && k < c->n_only; k++)
				asked = c->only[k] == p;
		if (!asked)
			return;
	}
	if (b->n == c->cap) {
		c->cap = c->cap != 0 ? c->cap * 2 : 16;
		b->qids = xrealloc(b->qids, c->cap * sizeof *b->qids);
	}
	b->qids[b->n++] = xstrdup(msg->envelope->queue_id);
}

void queue_admin_action(queue_admin *a, const Queue__QueueActionRequest *req,
			queue_admin_action_cb *cb, void *arg)
{
	int single = req->queue_id[0] != '\0';
	int targets = single + (req->all != 0) + (req->domain[0] != '\0');
	if (admin__action_name(req->action) == NULL || targets != 1 ||
	    (single && !queue_store_id_valid(req->queue_id)) ||
	    (req->domain[0] != '\0' && !util_domain_valid(req->domain))) {
		cb(MAIL_ERR_PARAMS, 0, arg);
		return;
	}
	struct admin_bulk *b = xcalloc(1, sizeof *b);
	b->action = req->action;
	b->single = single;
	b->status = MAIL_OK;
	b->cb = cb;
	b->arg = arg;
	if (single) {
		b->qids = xmalloc(sizeof *b->qids);
		b->qids[b->n++] = xstrdup(req->queue_id);
	} else {
		struct admin_collect c = { a, b, req->all ? NULL : req->domain, req->partitions,
					   req->n_partitions, 0 };
		const char *error;
		if (queue_store_load_if(a->store, admin__keep_cb, admin__collect_cb, &c,
					&error) < 0) {
			log_event(LOG_ERROR, "queue", "event=admin_action_failed action=%s "
				  "error=\"%s\"", admin__action_name(req->action), error);
			b->status = MAIL_ERR_TEMP;
			admin__bulk_finish(b);
			return;
		}
	}
	b->admin = a;
	b->next = a->bulks;
	if (a->bulks != NULL)
		a->bulks->prev = b;
	a->bulks = b;
	admin__bulk_pump(b);
}

/* ---- the RPC handlers ----------------------------------------------------- */

void queue_admin_rpc_list(queue_admin *admin, rpc_call *call, const ProtobufCMessage *req)
{
	if (admin == NULL) {
		rpc_call_reply(call, MAIL_ERR_UNAVAILABLE, NULL);
		return;
	}
	Queue__QueueListResponse *resp;
	int status = queue_admin_list(admin, (const Queue__QueueListRequest *)req, &resp);
	rpc_call_reply(call, status, status == MAIL_OK ? &resp->base : NULL);
	if (resp != NULL)
		protobuf_c_message_free_unpacked(&resp->base, NULL);
}

void queue_admin_rpc_show(queue_admin *admin, rpc_call *call, const ProtobufCMessage *req)
{
	if (admin == NULL) {
		rpc_call_reply(call, MAIL_ERR_UNAVAILABLE, NULL);
		return;
	}
	Queue__QueueShowResponse *resp;
	int status = queue_admin_show(admin, ((const Queue__QueueShowRequest *)req)->queue_id,
				      &resp);
	rpc_call_reply(call, status, status == MAIL_OK ? &resp->base : NULL);
	if (resp != NULL)
		protobuf_c_message_free_unpacked(&resp->base, NULL);
}

/* An ACTION call waiting for its actions. */
struct admin_rpc_action {
	rpc_call *call;
	Queue__QueueAction action;
	uint32_t partitions;  /* all or domain: the partitions, those led */
	uint32_t *led;
	size_t n_led;
	char what[QUEUE_ID_MAX + 300]; /* "qid=..." | "all=1" | "domain=..." for the log */
};

static void admin__rpc_action_cb(int status, uint32_t affected, void *arg)
{
	struct admin_rpc_action *w = arg;
	const char *name = admin__action_name(w->action);
	log_event(status == MAIL_OK ? LOG_INFO : LOG_WARN, "queue",
		  "event=admin_request action=%s %s peer=%s status=%s affected=%u",
		  name != NULL ? name : "-", w->what, rpc_call_peer(w->call),
		  mail_error_info(status)->name, affected);
	Queue__QueueActionResponse resp = QUEUE__QUEUE_ACTION_RESPONSE__INIT;
	resp.affected = affected;
	resp.partitions = w->partitions;
	resp.led = w->led;
	resp.n_led = w->n_led;
	rpc_call_reply(w->call, status, &resp.base);
	free(w->led);
	free(w);
}

void queue_admin_rpc_action(queue_admin *admin, rpc_call *call, const ProtobufCMessage *req)
{
	if (admin == NULL) {
		rpc_call_reply(call, MAIL_ERR_UNAVAILABLE, NULL);
		return;
	}
	const Queue__QueueActionRequest *r = (const Queue__QueueActionRequest *)req;
	struct admin_rpc_action *w = xcalloc(1, sizeof *w);
	w->call = call;
	w->action = r->action;
	char q[280];
	if (r->queue_id[0] != '\0')
		snprintf(w->what, sizeof w->what, "qid=%s",
			 log_quote(q, sizeof q, r->queue_id, strlen(r->queue_id)));
	else if (r->domain[0] != '\0')
		snprintf(w->what, sizeof w->what, "domain=%s",
			 log_quote(q, sizeof q, r->domain, strlen(r->domain)));
	else
		snprintf(w->what, sizeof w->what, "all=%d", r->all ? 1 : 0);
	/* a bulk collects its messages inside queue_admin_action, in this
	 * turn of the loop: the partitions led now are those it covered */
	if (r->queue_id[0] == '\0')
		w->n_led = admin__led(admin, r->partitions, r->n_partitions, &w->led,
				      &w->partitions);
	queue_admin_action(admin, r, admin__rpc_action_cb, w);
}
