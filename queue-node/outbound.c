/* outbound.c: routes, MX fallback and the session pool (outbound.h).
 *
 * A job is one message; its recipients are split into groups, one per
 * route (a relay or transport URL, or a recipient domain's MX). A group
 * resolves its targets (addresses in the order to try), then takes a
 * session to the current target from the pool (an idle one, or a new one
 * when the destination has fewer than max_conns, or it waits in the
 * destination's FIFO), runs one transaction, and either finishes or moves
 * on to the next target. The job's callback runs once every group is
 * done, always from the loop (a timer), never inside outbound_deliver.
 */
#include "outbound.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "log.h"
#include "tls.h"
#include "util.h"
#include "xalloc.h"

#define OB_HOST_MAX 254u
#define OB_KEY_MAX (OB_HOST_MAX + OUTBOUND_USER_MAX + 96u)

struct ob_target {
	struct sockaddr_storage addr;
	char host[OB_HOST_MAX]; /* the name we looked up (SNI, Remote-MTA) */
};

struct ob_dest;
struct ob_conn;

struct ob_group {
	outbound_job *job;
	struct ob_group *next;    /* job->groups */
	struct ob_group *wnext;   /* dest->waiters */
	size_t *idx;              /* indexes into job->msg->rcpts */
	size_t n;
	int routed;               /* route is set (not the MX) */
	struct outbound_route route;
	char domain[OB_HOST_MAX]; /* the recipients' domain (MX routing) */
	dns_request *dns;
	struct ob_target *targets;
	size_t n_targets, cur;
	enum smtpc_tls_policy tls;
	int implicit_tls;         /* smtps:// */
	struct smtpc_message m;
	struct smtpc_rcpt *srcpts;
	struct ob_conn *conn;     /* carrying the transaction, or connecting for it */
	struct ob_dest *waiting;  /* in this dest's FIFO */
	struct smtpc_result last; /* why the last target failed */
	int fresh_retry;          /* the reused session died: one fresh try, same target */
	int done;
};

struct ob_conn {
	struct ob_dest *dest;
	struct ob_conn *next;     /* dest->conns */
	smtpc *c;
	struct ob_group *group;
	int ready;
	unsigned msgs;
	uv_timer_t idle;
};

struct ob_dest {
	outbound *ob;
	struct ob_dest *next;
	char key[OB_KEY_MAX];
	struct ob_conn *conns;
	size_t n_conns;
	struct ob_group *wait_head, *wait_tail;
};

struct outbound_job {
	outbound *ob;
	outbound_job *prev, *next;
	struct outbound_msg *msg;
	outbound_done_cb *cb;
	void *arg;
	struct ob_group *groups;
	uv_timer_t *finish;       /* armed once every group is done */
};

struct outbound {
	uv_loop_t *loop;
	struct outbound_settings set;
	char *helo;
	dns_resolver *resolver;
	outbound_route_fn *route;
	outbound_policy_fn *policy;
	void *route_arg;
	tls_client *tls_unverified;
	tls_client *tls_verify;   /* NULL when the system CA file is missing */
	struct ob_dest *dests;
	outbound_job *jobs;
	size_t sessions;
	unsigned next_log_id;
};

void outbound_settings_default(struct outbound_settings *set)
{
	memset(set, 0, sizeof *set);
	set->mx_port = 25;
	set->max_conns = OUTBOUND_MAX_CONNS_DEFAULT;
	set->max_msgs_per_conn = OUTBOUND_MSGS_PER_CONN_DEFAULT;
	set->idle_ms = OUTBOUND_IDLE_MS_DEFAULT;
	set->tls = SMTPC_TLS_MAY;
}

static void ob__result(struct smtpc_result *r, enum smtpc_status status, enum smtpc_stage stage,
		       const char *enh, const char *text)
{
	memset(r, 0, sizeof *r);
	r->status = status;
	r->stage = stage;
	snprintf(r->enh, sizeof r->enh, "%s", enh);
	snprintf(r->text, sizeof r->text, "%s", text);
}

/* ---- finishing ---------------------------------------------------------- */

static void ob__job_free(outbound_job *job);

static void ob__finish_cb(uv_timer_t *t)
{
	outbound_job *job = t->data;
	outbound_done_cb *cb = job->cb;
	void *arg = job->arg;
	struct outbound_msg *msg = job->msg;
	ob__job_free(job);
	cb(msg, arg);
}

static void ob__job_check(outbound_job *job)
{
	for (struct ob_group *g = job->groups; g != NULL; g = g->next)
		if (!g->done)
			return;
	if (!uv_is_active((uv_handle_t *)job->finish))
		uv_timer_start(job->finish, ob__finish_cb, 0, 0);
}

/* Every recipient of g without a result gets r; g is done. */
static void ob__group_fail(struct ob_group *g, const struct smtpc_result *r)
{
	for (size_t i = 0; i < g->n; i++) {
		struct outbound_rcpt *or = &g->job->msg->rcpts[g->idx[i]];
		or->result = *r;
		if (g->cur < g->n_targets)
			snprintf(or->remote_mta, sizeof or->remote_mta, "%s",
				 g->targets[g->cur].host);
	}
	g->done = 1;
	ob__job_check(g->job);
}

/* ---- the pool ------------------------------------------------------------- */

static struct ob_dest *ob__dest(outbound *ob, const struct ob_group *g)
{
	const struct ob_target *t = &g->targets[g->cur];
	char ip[INET6_ADDRSTRLEN] = "?";
	unsigned port;
	if (t->addr.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&t->addr;
		inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
		port = ntohs(a->sin6_port);
	} else {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&t->addr;
		inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
		port = ntohs(a->sin_port);
	}
	char key[OB_KEY_MAX];
	snprintf(key, sizeof key, "%s|%u|%d%s|%s|%s", ip, port, (int)g->tls,
		 g->implicit_tls ? "i" : "", t->host, g->routed ? g->route.user : "");
	for (struct ob_dest *d = ob->dests; d != NULL; d = d->next)
		if (strcmp(d->key, key) == 0)
			return d;
	struct ob_dest *d = xcalloc(1, sizeof *d);
	d->ob = ob;
	snprintf(d->key, sizeof d->key, "%s", key);
	d->next = ob->dests;
	ob->dests = d;
	return d;
}

static void ob__conn_closed_cb(uv_handle_t *h)
{
	free(h->data);
}

/* Unlink conn from its dest and free it (the smtpc too). */
static void ob__conn_free(struct ob_conn *conn)
{
	struct ob_dest *d = conn->dest;
	for (struct ob_conn **p = &d->conns; *p != NULL; p = &(*p)->next) {
		if (*p == conn) {
			*p = conn->next;
			break;
		}
	}
	d->n_conns--;
	d->ob->sessions--;
	smtpc_destroy(&conn->c);
	uv_close((uv_handle_t *)&conn->idle, ob__conn_closed_cb);
}

static void ob__group_try(struct ob_group *g);
static void ob__send(struct ob_conn *conn);
static void ob__conn_new(struct ob_dest *d, struct ob_group *g);

/* Unlink and free d: it has no session and no waiter left (a destination
 * is kept only while it is in use, so the pool never grows with every MX
 * ever seen). */
static void ob__dest_drop(struct ob_dest *d)
{
	for (struct ob_dest **p = &d->ob->dests; *p != NULL; p = &(*p)->next) {
		if (*p == d) {
			*p = d->next;
			break;
		}
	}
	free(d);
}

/* d has room or an idle session: give it to the first waiter; drop d when
 * nothing uses it any more. */
static void ob__dest_serve(struct ob_dest *d)
{
	if (d->n_conns == 0 && d->wait_head == NULL) {
		ob__dest_drop(d);
		return;
	}
	while (d->wait_head != NULL) {
		struct ob_conn *idle = NULL;
		for (struct ob_conn *c = d->conns; c != NULL; c = c->next)
			if (c->ready && c->group == NULL && smtpc_idle(c->c))
				idle = c;
		if (idle == NULL && d->n_conns >= d->ob->set.max_conns)
			return;
		struct ob_group *g = d->wait_head;
		d->wait_head = g->wnext;
		if (d->wait_head == NULL)
			d->wait_tail = NULL;
		g->wnext = NULL;
		g->waiting = NULL;
		if (idle != NULL) {
			uv_timer_stop(&idle->idle);
			idle->group = g;
			g->conn = idle;
			ob__send(idle);
		} else {
			ob__conn_new(d, g);
		}
	}
}

static void ob__idle_cb(uv_timer_t *t)
{
	struct ob_conn *conn = t->data;
	smtpc_quit(conn->c); /* closed_cb frees it */
}

/* conn finished a transaction: keep it for the next one or close it. */
static void ob__conn_release(struct ob_conn *conn)
{
	outbound *ob = conn->dest->ob;
	conn->group = NULL;
	if (!smtpc_idle(conn->c) || conn->msgs >= ob->set.max_msgs_per_conn) {
		smtpc_quit(conn->c);
		return;
	}
	if (conn->dest->wait_head != NULL) {
		ob__dest_serve(conn->dest);
		return;
	}
	uv_timer_start(&conn->idle, ob__idle_cb, ob->set.idle_ms, 0);
}

/* ---- one transaction ---------------------------------------------------------- */

static void ob__send(struct ob_conn *conn)
{
	struct ob_group *g = conn->group;
	const char *error;
	if (smtpc_send(conn->c, &g->m, &error) < 0) {
		/* an address or parameter smtpc will not send: permanent */
		struct smtpc_result r;
		ob__result(&r, SMTPC_PERM, SMTPC_STAGE_MAIL, "5.1.3", error);
		g->conn = NULL;
		ob__conn_release(conn);
		ob__group_fail(g, &r);
	}
}

/* Was r a failure of the session or the server as a whole (try the next
 * target), rather than an answer about this message? */
static int ob__target_failed(const struct smtpc_result *r)
{
	if (r->status == SMTPC_OK)
		return 0;
	switch (r->stage) {
	case SMTPC_STAGE_CONNECT:
	case SMTPC_STAGE_GREETING:
	case SMTPC_STAGE_EHLO:
	case SMTPC_STAGE_STARTTLS:
	case SMTPC_STAGE_AUTH:
	case SMTPC_STAGE_IDLE:
		return 1;
	case SMTPC_STAGE_MAIL:
		/* a 4xx to MAIL, or the session lost there; not a 5xx
		 * answer nor our own refusal of the message (code 0, PERM) */
		return r->status == SMTPC_TEMP;
	default:
		return 0;
	}
}

static void ob__done_cb(smtpc *c, struct smtpc_message *msg, void *ctx)
{
	struct ob_conn *conn = ctx;
	struct ob_group *g = conn->group;
	(void)c;
	conn->msgs++;
	if (g == NULL) {
		ob__conn_release(conn);
		return;
	}
	g->conn = NULL;
	int reused = conn->msgs > 1;
	if (ob__target_failed(&msg->result)) {
		g->last = msg->result;
		ob__conn_release(conn);
		if (reused && msg->result.code == 0 && !g->fresh_retry) {
			/* a pooled session the server had closed: once more,
			 * same target, on a new session */
			g->fresh_retry = 1;
		} else {
			g->fresh_retry = 0;
			g->cur++;
		}
		ob__group_try(g);
		return;
	}
	const char *host = g->targets[g->cur].host;
	for (size_t i = 0; i < g->n; i++) {
		struct outbound_rcpt *or = &g->job->msg->rcpts[g->idx[i]];
		or->result = g->srcpts[i].result;
		if (or->result.stage == SMTPC_STAGE_NONE)
			or->result = msg->result;
		snprintf(or->remote_mta, sizeof or->remote_mta, "%s", host);
	}
	g->done = 1;
	ob__conn_release(conn);
	ob__job_check(g->job);
}

static void ob__ready_cb(smtpc *c, void *ctx)
{
	struct ob_conn *conn = ctx;
	(void)c;
	conn->ready = 1;
	if (conn->group != NULL)
		ob__send(conn);
	else
		ob__conn_release(conn);
}

static void ob__closed_cb(smtpc *c, const struct smtpc_result *why, void *ctx)
{
	struct ob_conn *conn = ctx;
	struct ob_dest *d = conn->dest;
	struct ob_group *g = conn->group;
	(void)c;
	ob__conn_free(conn);
	if (g != NULL) {
		/* never got to a transaction: connect, greeting, EHLO, TLS, AUTH */
		g->conn = NULL;
		g->last = *why;
		g->cur++;
		ob__group_try(g);
	}
	ob__dest_serve(d);
}

static void ob__conn_new(struct ob_dest *d, struct ob_group *g)
{
	outbound *ob = d->ob;
	const struct ob_target *t = &g->targets[g->cur];
	struct smtpc_settings set;
	memset(&set, 0, sizeof set);
	set.helo_name = ob->helo;
	set.tls = g->tls;
	set.tls_client = g->tls == SMTPC_TLS_VERIFY ? ob->tls_verify
			 : g->tls == SMTPC_TLS_NONE ? NULL : ob->tls_unverified;
	set.tls_host = t->host;
	set.implicit_tls = g->implicit_tls;
	if (g->routed && g->route.user[0] != '\0') {
		set.auth_user = g->route.user;
		set.auth_pass = g->route.password;
	}
	set.timeouts = ob->set.timeouts;
	char log_id[96];
	snprintf(log_id, sizeof log_id, "%s.%u", g->job->msg->queue_id, ++ob->next_log_id);
	set.log_id = log_id;
	static const struct smtpc_callbacks cbs = { ob__ready_cb, ob__done_cb, ob__closed_cb };
	struct ob_conn *conn = xcalloc(1, sizeof *conn);
	conn->dest = d;
	conn->group = g;
	g->conn = conn;
	uv_timer_init(ob->loop, &conn->idle);
	conn->idle.data = conn;
	const char *error;
	struct smtpc_result r;
	if (set.tls == SMTPC_TLS_VERIFY && set.tls_client == NULL) {
		ob__result(&r, SMTPC_TEMP, SMTPC_STAGE_STARTTLS, "4.7.5",
			   "no CA file to verify certificates with");
	} else if (smtpc_create(ob->loop, &set, &cbs, conn, &conn->c, &error) < 0) {
		ob__result(&r, SMTPC_TEMP, SMTPC_STAGE_CONNECT, "4.3.0", error);
	} else if (smtpc_connect(conn->c, (const struct sockaddr *)&t->addr, &error) < 0) {
		smtpc_destroy(&conn->c);
		ob__result(&r, SMTPC_TEMP, SMTPC_STAGE_CONNECT, "4.4.1", error);
	} else {
		conn->next = d->conns;
		d->conns = conn;
		d->n_conns++;
		ob->sessions++;
		return;
	}
	g->conn = NULL;
	uv_close((uv_handle_t *)&conn->idle, ob__conn_closed_cb);
	if (d->n_conns == 0 && d->wait_head == NULL)
		ob__dest_drop(d);
	g->last = r;
	g->cur++;
	ob__group_try(g);
}

/* Start the transaction of g on its current target, or fail it when no
 * target is left. */
static void ob__group_try(struct ob_group *g)
{
	if (g->cur >= g->n_targets) {
		struct smtpc_result r = g->last;
		if (r.status == SMTPC_OK || r.text[0] == '\0')
			ob__result(&r, SMTPC_TEMP, SMTPC_STAGE_CONNECT, "4.4.1", "no usable address");
		/* every target failed as a whole: try again later, whatever the
		 * last one said (a 5xx greeting is not an answer about the mail) */
		if (r.status == SMTPC_PERM && r.stage != SMTPC_STAGE_MAIL)
			r.status = SMTPC_TEMP;
		g->cur = g->n_targets;
		ob__group_fail(g, &r);
		return;
	}
	for (size_t i = 0; i < g->n; i++)
		memset(&g->srcpts[i].result, 0, sizeof g->srcpts[i].result);
	memset(&g->m.result, 0, sizeof g->m.result);
	struct ob_dest *d = ob__dest(g->job->ob, g);
	if (!g->fresh_retry) {
		for (struct ob_conn *c = d->conns; c != NULL; c = c->next) {
			if (c->ready && c->group == NULL && smtpc_idle(c->c)) {
				uv_timer_stop(&c->idle);
				c->group = g;
				g->conn = c;
				ob__send(c);
				return;
			}
		}
	}
	if (d->n_conns < d->ob->set.max_conns) {
		ob__conn_new(d, g);
		return;
	}
	g->waiting = d;
	if (d->wait_tail != NULL)
		d->wait_tail->wnext = g;
	else
		d->wait_head = g;
	d->wait_tail = g;
}

/* ---- targets ------------------------------------------------------------------ */

static void ob__targets_add(struct ob_group *g, const struct dns_addrs *a, const char *host,
			    unsigned port)
{
	g->targets = xrealloc(g->targets, (g->n_targets + a->count) * sizeof *g->targets);
	for (size_t i = 0; i < a->count; i++) {
		struct ob_target *t = &g->targets[g->n_targets++];
		memset(t, 0, sizeof *t);
		t->addr = a->addrs[i];
		if (t->addr.ss_family == AF_INET6)
			((struct sockaddr_in6 *)&t->addr)->sin6_port = htons((uint16_t)port);
		else
			((struct sockaddr_in *)&t->addr)->sin_port = htons((uint16_t)port);
		snprintf(t->host, sizeof t->host, "%s", host);
	}
}

static void ob__mx_cb(enum dns_status status, const struct dns_mx_result *res, void *arg)
{
	struct ob_group *g = arg;
	g->dns = NULL;
	struct smtpc_result r;
	switch (status) {
	case DNS_OK:
		for (size_t i = 0; i < res->count; i++)
			if (res->hosts[i].status == DNS_OK)
				ob__targets_add(g, &res->hosts[i].addrs, res->hosts[i].name,
						g->job->ob->set.mx_port);
		ob__group_try(g);
		return;
	case DNS_NULL_MX:
		ob__result(&r, SMTPC_PERM, SMTPC_STAGE_NONE, "5.1.10",
			   "the recipient's domain accepts no mail (null MX)");
		break;
	case DNS_NXDOMAIN:
	case DNS_BADNAME:
		ob__result(&r, SMTPC_PERM, SMTPC_STAGE_NONE, "5.1.2",
			   "the recipient's domain does not exist");
		break;
	case DNS_NODATA:
		ob__result(&r, SMTPC_PERM, SMTPC_STAGE_NONE, "5.4.4",
			   "no mail exchanger of the recipient's domain has an address");
		break;
	default:
		ob__result(&r, SMTPC_TEMP, SMTPC_STAGE_NONE, "4.4.3",
			   "DNS lookup of the recipient's domain failed; will retry");
		break;
	}
	ob__group_fail(g, &r);
}

static void ob__host_cb(enum dns_status status, const struct dns_addrs *res, void *arg)
{
	struct ob_group *g = arg;
	g->dns = NULL;
	if (status == DNS_OK) {
		ob__targets_add(g, res, g->route.url.host, g->route.url.port);
		ob__group_try(g);
		return;
	}
	/* the relay's name is ours to fix: never a bounce */
	struct smtpc_result r;
	char why[SMTPC_TEXT_MAX];
	snprintf(why, sizeof why, "cannot resolve the %s %s (%s)", g->route.rule,
		 g->route.url.host, dns_status_name(status));
	ob__result(&r, SMTPC_TEMP, SMTPC_STAGE_NONE, "4.4.3", why);
	ob__group_fail(g, &r);
}

static void ob__group_start(struct ob_group *g)
{
	outbound *ob = g->job->ob;
	if (g->routed && g->route.rule == NULL) {
		struct smtpc_result r;
		ob__result(&r, SMTPC_TEMP, SMTPC_STAGE_NONE, "4.3.0",
			   "routing settings not loaded yet; will retry");
		ob__group_fail(g, &r);
		return;
	}
	if (!g->routed) {
		int p = ob->policy != NULL ? ob->policy(ob->route_arg, g->domain) : -1;
		g->tls = p >= 0 ? (enum smtpc_tls_policy)p : ob->set.tls;
		g->dns = dns_resolve_mx(ob->resolver, g->domain, ob__mx_cb, g);
		return;
	}
	g->tls = g->route.url.scheme == SMTPC_URL_SMTP ? SMTPC_TLS_MAY : SMTPC_TLS_ENCRYPT;
	g->implicit_tls = g->route.url.scheme == SMTPC_URL_SMTPS;
	if (g->route.url.host_is_ip) {
		struct sockaddr_storage ss;
		memset(&ss, 0, sizeof ss);
		struct dns_addrs a = { &ss, 1 };
		struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
		struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
		if (inet_pton(AF_INET, g->route.url.host, &v4->sin_addr) == 1) {
			v4->sin_family = AF_INET;
		} else if (inet_pton(AF_INET6, g->route.url.host, &v6->sin6_addr) == 1) {
			v6->sin6_family = AF_INET6;
		} else {
			struct smtpc_result r;
			ob__result(&r, SMTPC_TEMP, SMTPC_STAGE_CONNECT, "4.4.1",
				   "bad address in the route");
			ob__group_fail(g, &r);
			return;
		}
		ob__targets_add(g, &a, g->route.url.host, g->route.url.port);
		/* from the loop, like every other path */
		ob__group_try(g);
		return;
	}
	g->dns = dns_resolve_host(ob->resolver, g->route.url.host, ob__host_cb, g);
}

/* ---- jobs ----------------------------------------------------------------------- */

static const char *ob__domain(const char *addr)
{
	const char *at = strrchr(addr, '@');
	return at != NULL ? at + 1 : "";
}

static void ob__group_free(struct ob_group *g)
{
	dns_request_cancel(&g->dns);
	if (g->waiting != NULL) {
		struct ob_dest *d = g->waiting;
		struct ob_group *prev = NULL;
		for (struct ob_group *w = d->wait_head; w != NULL; prev = w, w = w->wnext) {
			if (w != g)
				continue;
			if (prev != NULL)
				prev->wnext = w->wnext;
			else
				d->wait_head = w->wnext;
			if (d->wait_tail == w)
				d->wait_tail = prev;
			break;
		}
	}
	if (g->conn != NULL) {
		/* mid-transaction: the session cannot be reused */
		struct ob_conn *conn = g->conn;
		struct ob_dest *d = conn->dest;
		conn->group = NULL;
		ob__conn_free(conn);
		ob__dest_serve(d);
	}
	OPENSSL_cleanse(&g->route, sizeof g->route);
	free(g->idx);
	free(g->srcpts);
	free(g->targets);
	free(g);
}

static void ob__timer_free_cb(uv_handle_t *h)
{
	free(h);
}

static void ob__job_free(outbound_job *job)
{
	outbound *ob = job->ob;
	while (job->groups != NULL) {
		struct ob_group *g = job->groups;
		job->groups = g->next;
		ob__group_free(g);
	}
	if (job->prev != NULL)
		job->prev->next = job->next;
	else
		ob->jobs = job->next;
	if (job->next != NULL)
		job->next->prev = job->prev;
	uv_close((uv_handle_t *)job->finish, ob__timer_free_cb);
	free(job);
}

static int ob__same_route(const struct ob_group *g, int routed, const struct outbound_route *r,
			  const char *domain)
{
	if (g->routed != routed || g->n >= SMTPC_DEFAULT_MAX_RCPTS)
		return 0;
	if (!routed)
		return strcmp(g->domain, domain) == 0;
	return g->route.url.scheme == r->url.scheme && g->route.url.port == r->url.port &&
	       strcmp(g->route.url.host, r->url.host) == 0 &&
	       strcmp(g->route.user, r->user) == 0;
}

outbound_job *outbound_deliver(outbound *ob, struct outbound_msg *msg, outbound_done_cb *cb,
			       void *arg)
{
	outbound_job *job = xcalloc(1, sizeof *job);
	job->ob = ob;
	job->msg = msg;
	job->cb = cb;
	job->arg = arg;
	job->finish = xcalloc(1, sizeof *job->finish);
	uv_timer_init(ob->loop, job->finish);
	job->finish->data = job;
	job->next = ob->jobs;
	if (ob->jobs != NULL)
		ob->jobs->prev = job;
	ob->jobs = job;
	struct ob_group *tail = NULL;
	for (size_t i = 0; i < msg->n_rcpts; i++) {
		struct outbound_rcpt *or = &msg->rcpts[i];
		memset(&or->result, 0, sizeof or->result);
		or->remote_mta[0] = '\0';
		char domain[OB_HOST_MAX];
		snprintf(domain, sizeof domain, "%s", ob__domain(or->addr));
		for (char *p = domain; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
		struct outbound_route route;
		memset(&route, 0, sizeof route);
		int rr = ob->route != NULL ? ob->route(ob->route_arg, msg->sender_domain, domain,
						       &route) : 0;
		int routed = rr == 1;
		if (rr < 0) {
			/* a group of its own that fails at once, deferred */
			routed = 1;
			route.rule = NULL;
			snprintf(route.url.host, sizeof route.url.host, "(unknown)");
		}
		struct ob_group *g = job->groups;
		while (g != NULL && !ob__same_route(g, routed, &route, domain))
			g = g->next;
		if (g == NULL) {
			g = xcalloc(1, sizeof *g);
			g->job = job;
			g->routed = routed;
			if (routed)
				g->route = route;
			snprintf(g->domain, sizeof g->domain, "%s", domain);
			g->idx = xcalloc(msg->n_rcpts, sizeof *g->idx);
			g->srcpts = xcalloc(msg->n_rcpts, sizeof *g->srcpts);
			g->m.mail_from = msg->mail_from;
			g->m.dsn_params = msg->mail_params;
			g->m.body = msg->body;
			g->m.body_len = msg->body_len;
			g->m.eight_bit = msg->eight_bit;
			g->m.smtputf8 = msg->smtputf8;
			g->m.rcpts = g->srcpts;
			if (tail != NULL)
				tail->next = g;
			else
				job->groups = g;
			tail = g;
		}
		OPENSSL_cleanse(&route, sizeof route);
		g->srcpts[g->n].addr = or->addr;
		g->srcpts[g->n].dsn_params = or->dsn_params;
		g->idx[g->n++] = i;
		g->m.rcpt_count = g->n;
	}
	/* Started from the loop (a zero timer per job would do as well; the
	 * group starts only ask DNS or connect, whose answers come later) */
	for (struct ob_group *g = job->groups; g != NULL; g = g->next) {
		log_event(LOG_DEBUG, "queue", "event=outbound_route qid=%s domain=%s route=%s rcpts=%zu",
			  msg->queue_id, g->domain, !g->routed ? "mx" : g->route.rule != NULL ? g->route.rule : "unknown", g->n);
		ob__group_start(g);
	}
	return job;
}

void outbound_job_cancel(outbound_job **jobp)
{
	outbound_job *job = *jobp;
	if (job == NULL)
		return;
	*jobp = NULL;
	ob__job_free(job);
}

/* ---- lifetime ------------------------------------------------------------------ */

int outbound_create(uv_loop_t *loop, const struct outbound_settings *set,
		    dns_resolver *resolver, outbound_route_fn *route, outbound_policy_fn *policy,
		    void *route_arg, outbound **ob_r, const char **error_r)
{
	if (set->helo_name == NULL || set->helo_name[0] == '\0' || set->mx_port < 1 ||
	    set->mx_port > 65535 || set->max_conns < 1 || set->max_conns > OUTBOUND_MAX_CONNS_MAX ||
	    set->max_msgs_per_conn < 1 || set->max_msgs_per_conn > OUTBOUND_MSGS_PER_CONN_MAX ||
	    set->idle_ms > OUTBOUND_IDLE_MS_MAX) {
		*error_r = "outbound settings out of range";
		return -1;
	}
	outbound *ob = xcalloc(1, sizeof *ob);
	ob->loop = loop;
	ob->set = *set;
	ob->helo = xstrdup(set->helo_name);
	ob->set.helo_name = ob->helo;
	ob->resolver = resolver;
	ob->route = route;
	ob->policy = policy;
	ob->route_arg = route_arg;
	if (tls_client_create_unverified(&ob->tls_unverified, error_r) < 0) {
		free(ob->helo);
		free(ob);
		return -1;
	}
	struct tls_client_settings ts = { "/etc/ssl/certs/ca-certificates.crt", NULL, NULL };
	const char *ignored;
	if (tls_client_create(&ts, &ob->tls_verify, &ignored) < 0)
		ob->tls_verify = NULL;
	*ob_r = ob;
	return 0;
}

void outbound_destroy(outbound **obp)
{
	outbound *ob = *obp;
	if (ob == NULL)
		return;
	*obp = NULL;
	while (ob->jobs != NULL)
		ob__job_free(ob->jobs);
	while (ob->dests != NULL) {
		struct ob_dest *d = ob->dests;
		ob->dests = d->next;
		while (d->conns != NULL)
			ob__conn_free(d->conns);
		free(d);
	}
	tls_client_destroy(&ob->tls_unverified);
	tls_client_destroy(&ob->tls_verify);
	free(ob->helo);
	free(ob);
}

size_t outbound_sessions(const outbound *ob)
{
	return ob->sessions;
}
