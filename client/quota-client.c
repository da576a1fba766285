/* quota-client.c: see quota-client.h. */
#include "quota-client.h"

#include "log.h"
#include "mail-error.h"
#include "util.h"
#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

struct tenant_entry {
	char domain[256];          /* "" empty */
	struct quota_usage usage;
	uint64_t at_ms;            /* uv_now when summed */
};

struct quota_client {
	uv_loop_t *loop;
	store_client *store;
	directory *dir;
	struct tenant_entry tenants[QUOTA_TENANT_CACHE];
	unsigned next_slot;        /* round robin when all are taken */
	uint64_t refused[QUOTA_WHERE_N];
};

/* One quota_client_get. */
struct quota_op {
	uv_work_t work;
	quota_client *qc;
	char *user;
	int have_limits;
	int status;                /* the directory's */
	struct quota_view view;
	quota_client_cb *cb;
	void *arg;
	/* the tenant sum */
	char **users;
	size_t n_users;
	int list_err;
	size_t pending;            /* store calls in flight */
	struct quota_usage sum;
	int sum_failed;
};

quota_client *quota_client_create(uv_loop_t *loop, store_client *store, directory *dir)
{
	quota_client *qc = xcalloc(1, sizeof *qc);
	qc->loop = loop;
	qc->store = store;
	qc->dir = dir;
	return qc;
}

void quota_client_destroy(quota_client **qc)
{
	if (*qc == NULL)
		return;
	free(*qc);
	*qc = NULL;
}

static struct tenant_entry *tenant_find(quota_client *qc, const char *domain)
{
	for (unsigned i = 0; i < QUOTA_TENANT_CACHE; i++)
		if (strcmp(qc->tenants[i].domain, domain) == 0)
			return &qc->tenants[i];
	return NULL;
}

static void tenant_store(quota_client *qc, const char *domain, const struct quota_usage *u)
{
	struct tenant_entry *e = tenant_find(qc, domain);
	if (e == NULL) {
		e = &qc->tenants[qc->next_slot];
		qc->next_slot = (qc->next_slot + 1) % QUOTA_TENANT_CACHE;
	}
	snprintf(e->domain, sizeof e->domain, "%s", domain);
	e->usage = *u;
	e->at_ms = uv_now(qc->loop);
}

static void op_finish(struct quota_op *op)
{
	op->cb(op->status, &op->view, op->arg);
	for (size_t i = 0; i < op->n_users; i++)
		free(op->users[i]);
	free(op->users);
	free(op->user);
	free(op);
}

static void op_tenant(struct quota_op *op);

static void user_usage_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	struct quota_op *op = arg;
	if (status == MAIL_OK) {
		const Store__UsageResponse *r = (const void *)resp;
		op->view.user.bytes = r->bytes;
		op->view.user.messages = r->messages;
		op->view.user_known = 1;
	} else {
		log_event(LOG_WARN, "quota", "event=usage_unavailable user=%s error=%s", op->user,
			  mail_error_info(status)->name);
	}
	op_tenant(op);
}

static void op_usage(struct quota_op *op)
{
	const struct directory_quota *u = &op->view.user_limit, *t = &op->view.tenant_limit;
	if (u->storage == 0 && u->messages == 0 && t->storage == 0 && t->messages == 0) {
		op_finish(op);
		return;
	}
	Store__UsageRequest req = STORE__USAGE_REQUEST__INIT;
	req.user = op->user;
	store_client_usage(op->qc->store, &req, user_usage_cb, op);
}

static void tenant_usage_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	struct quota_op *op = arg;
	if (status == MAIL_OK) {
		const Store__UsageResponse *r = (const void *)resp;
		op->sum.bytes += r->bytes;
		op->sum.messages += r->messages;
	} else {
		op->sum_failed = 1;
	}
	if (--op->pending > 0)
		return;
	const char *domain = util_address_domain(op->user);
	if (!op->sum_failed) {
		op->view.tenant = op->sum;
		op->view.tenant_known = 1;
		tenant_store(op->qc, domain, &op->sum);
	} else {
		log_event(LOG_WARN, "quota", "event=tenant_usage_unavailable tenant=%s", domain);
	}
	op_finish(op);
}

static void tenant_list_work(uv_work_t *w)
{
	struct quota_op *op = w->data;
	op->list_err = directory_user_list(op->qc->dir, util_address_domain(op->user), &op->users,
					   &op->n_users);
}

static void tenant_list_done(uv_work_t *w, int status)
{
	struct quota_op *op = w->data;
	const char *domain = util_address_domain(op->user);
	if (status < 0 || op->list_err != MAIL_OK || op->n_users > QUOTA_TENANT_USERS_MAX) {
		log_event(LOG_WARN, "quota", "event=tenant_usage_unavailable tenant=%s users=%zu "
			  "error=%s", domain, op->n_users,
			  status < 0 ? "cancelled"
			  : op->list_err != MAIL_OK ? mail_error_info(op->list_err)->name
						    : "too_many_users");
		op_finish(op);
		return;
	}
	if (op->n_users == 0) {
		op->view.tenant_known = 1;
		tenant_store(op->qc, domain, &op->sum);
		op_finish(op);
		return;
	}
	op->pending = op->n_users;
	for (size_t i = 0; i < op->n_users; i++) {
		Store__UsageRequest req = STORE__USAGE_REQUEST__INIT;
		req.user = op->users[i];
		store_client_usage(op->qc->store, &req, tenant_usage_cb, op);
	}
}

static void op_tenant(struct quota_op *op)
{
	const struct directory_quota *t = &op->view.tenant_limit;
	if (t->storage == 0 && t->messages == 0) {
		op_finish(op);
		return;
	}
	const char *domain = util_address_domain(op->user);
	struct tenant_entry *e = tenant_find(op->qc, domain);
	if (e != NULL && uv_now(op->qc->loop) - e->at_ms < QUOTA_TENANT_TTL_MS) {
		op->view.tenant = e->usage;
		op->view.tenant_known = 1;
		op_finish(op);
		return;
	}
	if (uv_queue_work(op->qc->loop, &op->work, tenant_list_work, tenant_list_done) < 0)
		op_finish(op);
}

static void limits_work(uv_work_t *w)
{
	struct quota_op *op = w->data;
	op->status = directory_quota_get(op->qc->dir, op->user, &op->view.user_limit,
					 &op->view.tenant_limit);
}

static void limits_done(uv_work_t *w, int status)
{
	struct quota_op *op = w->data;
	if (status < 0)
		op->status = MAIL_ERR_INTERNAL;
	if (op->status != MAIL_OK) {
		op_finish(op);
		return;
	}
	op_usage(op);
}

/* The first step from the loop (never inside quota_client_get's caller). */
static void start_work(uv_work_t *w)
{
	(void)w;
}

static void start_done(uv_work_t *w, int status)
{
	(void)status;
	op_usage(w->data);
}

void quota_client_get(quota_client *qc, const char *user, const struct directory_quota *user_limit,
		      const struct directory_quota *tenant_limit, quota_client_cb *cb, void *arg)
{
	struct quota_op *op = xcalloc(1, sizeof *op);
	op->work.data = op;
	op->qc = qc;
	op->user = xstrdup(user);
	op->cb = cb;
	op->arg = arg;
	if (user_limit != NULL) {
		op->view.user_limit = *user_limit;
		if (tenant_limit != NULL)
			op->view.tenant_limit = *tenant_limit;
		op->have_limits = 1;
	}
	int ret = op->have_limits
			  ? uv_queue_work(qc->loop, &op->work, start_work, start_done)
			  : uv_queue_work(qc->loop, &op->work, limits_work, limits_done);
	if (ret < 0) {
		op->status = MAIL_ERR_INTERNAL;
		op_finish(op);
	}
}

/* used + add > limit without overflow; 0 is no limit. */
static int over(uint64_t used, uint64_t add, uint64_t limit)
{
	return limit > 0 && (add > limit || used > limit - add);
}

int quota_view_over(const struct quota_view *v, uint64_t add_bytes, uint64_t add_messages)
{
	if (v->user_known && (over(v->user.bytes, add_bytes, v->user_limit.storage) ||
			      over(v->user.messages, add_messages, v->user_limit.messages)))
		return 1;
	if (v->tenant_known && (over(v->tenant.bytes, add_bytes, v->tenant_limit.storage) ||
				over(v->tenant.messages, add_messages, v->tenant_limit.messages)))
		return 2;
	return 0;
}

/* The tighter of limit (0: none) and used + room. */
static uint64_t tighter(uint64_t limit, uint64_t used, uint64_t tenant_used, uint64_t tenant_limit)
{
	if (tenant_limit == 0)
		return limit;
	uint64_t room = tenant_used < tenant_limit ? tenant_limit - tenant_used : 0;
	uint64_t cap = used + room;
	if (cap == 0)
		cap = 1;   /* 0 would mean no limit */
	return limit == 0 || cap < limit ? cap : limit;
}

void quota_view_effective(const struct quota_view *v, struct directory_quota *eff_r)
{
	*eff_r = v->user_limit;
	if (!v->tenant_known || !v->user_known)
		return;
	eff_r->storage = tighter(v->user_limit.storage, v->user.bytes, v->tenant.bytes,
				 v->tenant_limit.storage);
	eff_r->messages = tighter(v->user_limit.messages, v->user.messages, v->tenant.messages,
				  v->tenant_limit.messages);
}

void quota_client_refused(quota_client *qc, enum quota_where where)
{
	if ((unsigned)where < QUOTA_WHERE_N)
		qc->refused[where]++;
}

void quota_client_metrics(const quota_client *qc, buf *out, const char *labels)
{
	static const char *const names[QUOTA_WHERE_N] = { "rcpt", "data", "append" };
	buf_printf(out, "# TYPE mail_quota_refusals_total counter\n");
	for (unsigned i = 0; i < QUOTA_WHERE_N; i++)
		buf_printf(out, "mail_quota_refusals_total{%s%swhere=\"%s\"} %llu\n", labels,
			   labels[0] != '\0' ? "," : "", names[i],
			   (unsigned long long)qc->refused[i]);
}
