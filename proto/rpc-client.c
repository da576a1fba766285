/* rpc-client.c: the RPC client and the client pool (contract in rpc.h).
 *
 * One client talks to one peer over at most one connection at a time. A
 * call is packed at once into the connection's output queue (behind the
 * HELLO while the connection is being made) and kept, until its answer, in
 * a hash table keyed by request id.
 *
 * Callbacks never run from inside rpc_client_call() nor from the socket
 * callbacks: a finished call moves to the `done` list and a uv_idle handle
 * runs the callbacks from the loop (rpc_client_destroy() runs the rest).
 * That way user code may call or destroy the client from a callback without
 * pulling the connection from under a read in progress.
 *
 * Reconnection: the first call after a failure connects again, but not
 * before `next_attempt`. A failure to connect (or a refused HELLO) doubles
 * the wait from RPC_BACKOFF_MIN_MS up to RPC_BACKOFF_MAX_MS; calls made
 * while waiting fail at once with MAIL_ERR_UNAVAILABLE, so callers can try
 * another replica. A connection that worked and then broke may be made
 * again immediately (the peer probably restarted).
 */
#include "log.h"
#include "rpc-private.h"
#include "util.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RPC_BACKOFF_MIN_MS 100u
#define RPC_BACKOFF_MAX_MS 2000u
#define RPC_TABLE_MIN 64u

struct rpc_pending {
	uint64_t id;
	const ProtobufCMessageDescriptor *resp_desc;
	rpc_reply_cb *cb;
	void *arg;
	uint64_t deadline;           /* monotonic ms */
	int status;                  /* once done */
	ProtobufCMessage *resp;      /* once done, MAIL_OK only */
	struct rpc_pending *next;    /* hash chain, then the done list */
};

struct rpc_cconn {
	rpc_client *client;          /* NULL once detached (closing) */
	uv_tcp_t tcp;
	uv_connect_t connect_req;
	struct rpc_frame_decoder dec;
	struct rpc__out out;
	int connected;
	int hello_done;
};

struct rpc_client {
	uv_loop_t *loop;
	char *service;
	char peer[80];
	char host[64];               /* what the server's certificate must name */
	tls_client *tls;             /* borrowed; NULL = plaintext */
	struct sockaddr_storage addr;
	int addr_ok;

	struct rpc_cconn *conn;      /* connecting or connected, or NULL */
	uint64_t next_id;
	uint64_t next_attempt;       /* no connect before this (monotonic ms) */
	uint32_t backoff_ms;

	struct rpc_pending **table;  /* in flight, by id */
	size_t table_size;           /* a power of two */
	size_t n_inflight;

	struct rpc_pending *done_head, *done_tail;
	uv_idle_t idle;
	int idle_active;

	uv_timer_t timer;            /* the earliest deadline in flight */
	uint64_t timer_due;          /* 0: not armed */

	int destroyed;
	int handles_open;
	struct rpc_counters counters;
};

static void cconn_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b);

/* ---- the in-flight table ---- */

static size_t table_slot(const rpc_client *c, uint64_t id)
{
	return (size_t)(id & (c->table_size - 1));
}

static void table_insert(rpc_client *c, struct rpc_pending *p)
{
	if (c->n_inflight >= c->table_size) {
		size_t size = c->table_size * 2;
		struct rpc_pending **t = xcalloc(size, sizeof *t);
		for (size_t i = 0; i < c->table_size; i++) {
			struct rpc_pending *q = c->table[i];
			while (q != NULL) {
				struct rpc_pending *next = q->next;
				q->next = t[q->id & (size - 1)];
				t[q->id & (size - 1)] = q;
				q = next;
			}
		}
		free(c->table);
		c->table = t;
		c->table_size = size;
	}
	size_t i = table_slot(c, p->id);
	p->next = c->table[i];
	c->table[i] = p;
	c->n_inflight++;
}

/* Remove and return the call with this id, or NULL. */
static struct rpc_pending *table_take(rpc_client *c, uint64_t id)
{
	struct rpc_pending **pp = &c->table[table_slot(c, id)];
	for (; *pp != NULL; pp = &(*pp)->next) {
		struct rpc_pending *p = *pp;
		if (p->id == id) {
			*pp = p->next;
			p->next = NULL;
			c->n_inflight--;
			return p;
		}
	}
	return NULL;
}

/* ---- finishing calls ---- */

static void client_idle_cb(uv_idle_t *idle);

/* p is out of the table: queue its callback for the idle handle. */
static void client_finish(rpc_client *c, struct rpc_pending *p, int status,
			  ProtobufCMessage *resp)
{
	p->status = status;
	p->resp = resp;
	p->next = NULL;
	if (c->n_inflight == 0 && c->timer_due != 0) {
		/* nothing left to time out: do not hold the loop open */
		uv_timer_stop(&c->timer);
		c->timer_due = 0;
	}
	if (c->done_tail != NULL)
		c->done_tail->next = p;
	else
		c->done_head = p;
	c->done_tail = p;
	if (!c->idle_active && !c->destroyed) {
		uv_idle_start(&c->idle, client_idle_cb);
		c->idle_active = 1;
	}
}

static void pending_deliver(rpc_client *c, struct rpc_pending *p)
{
	rpc__count_status(&c->counters, p->status);
	p->cb(p->status, p->resp, p->arg);
	if (p->resp != NULL)
		protobuf_c_message_free_unpacked(p->resp, NULL);
	free(p);
}

static struct rpc_pending *done_pop(rpc_client *c)
{
	struct rpc_pending *p = c->done_head;
	if (p != NULL) {
		c->done_head = p->next;
		if (c->done_head == NULL)
			c->done_tail = NULL;
	}
	return p;
}

static void client_idle_cb(uv_idle_t *idle)
{
	rpc_client *c = idle->data;
	/* only what is done now: calls a callback makes wait for the next turn */
	size_t n = 0;
	for (struct rpc_pending *p = c->done_head; p != NULL; p = p->next)
		n++;
	while (n-- > 0 && !c->destroyed) {
		/* the client may be destroyed by this callback; its memory stays
		 * until the handles close, so the check above is safe */
		pending_deliver(c, done_pop(c));
	}
	if (!c->destroyed && c->done_head == NULL) {
		uv_idle_stop(&c->idle);
		c->idle_active = 0;
	}
}

/* Every call in flight fails with status. */
static void client_fail_all(rpc_client *c, int status)
{
	for (size_t i = 0; i < c->table_size; i++) {
		while (c->table[i] != NULL) {
			struct rpc_pending *p = c->table[i];
			c->table[i] = p->next;
			c->n_inflight--;
			client_finish(c, p, status, NULL);
		}
	}
}

/* ---- deadlines ---- */

static void client_timer_cb(uv_timer_t *timer);

static void client_timer_arm(rpc_client *c, uint64_t due)
{
	if (c->timer_due != 0 && c->timer_due <= due)
		return;
	uint64_t now = util_now_mono_ms();
	uv_timer_start(&c->timer, client_timer_cb, due > now ? due - now : 0, 0);
	c->timer_due = due;
}

static void client_timer_cb(uv_timer_t *timer)
{
	rpc_client *c = timer->data;
	uint64_t now = util_now_mono_ms();
	uint64_t next = 0;
	c->timer_due = 0;
	for (size_t i = 0; i < c->table_size; i++) {
		struct rpc_pending **pp = &c->table[i];
		while (*pp != NULL) {
			struct rpc_pending *p = *pp;
			if (p->deadline <= now) {
				*pp = p->next;
				c->n_inflight--;
				client_finish(c, p, MAIL_ERR_DEADLINE, NULL);
				continue;
			}
			if (next == 0 || p->deadline < next)
				next = p->deadline;
			pp = &p->next;
		}
	}
	if (next != 0)
		client_timer_arm(c, next);
}

/* ---- the connection ---- */

static void cconn_close_cb(uv_handle_t *handle)
{
	struct rpc_cconn *conn = handle->data;
	rpc_frame_decoder_deinit(&conn->dec);
	rpc__out_deinit(&conn->out);
	free(conn);
}

/* Detach conn from its client and close it; nothing else. */
static void cconn_detach(struct rpc_cconn *conn)
{
	if (conn->client != NULL && conn->client->conn == conn)
		conn->client->conn = NULL;
	conn->client = NULL;
	uv_close((uv_handle_t *)&conn->tcp, cconn_close_cb);
}

/* The connection failed or broke: close it, fail what is in flight, and
 * decide when the next attempt may be made. */
static void cconn_fail(struct rpc_cconn *conn, const char *event, const char *error)
{
	rpc_client *c = conn->client;
	if (c == NULL)
		return;
	char q[128];
	log_event(LOG_WARN, RPC_LOG_SVC, "event=%s peer=%s service=%s error=%s in_flight=%zu",
		  event, c->peer, c->service, log_quote(q, sizeof q, error, strlen(error)),
		  c->n_inflight);
	uint64_t now = util_now_mono_ms();
	if (conn->hello_done) {
		c->backoff_ms = 0;
		c->next_attempt = now;
	} else {
		c->backoff_ms = c->backoff_ms == 0 ? RPC_BACKOFF_MIN_MS : c->backoff_ms * 2;
		if (c->backoff_ms > RPC_BACKOFF_MAX_MS)
			c->backoff_ms = RPC_BACKOFF_MAX_MS;
		c->next_attempt = now + c->backoff_ms;
	}
	cconn_detach(conn);
	client_fail_all(c, MAIL_ERR_UNAVAILABLE);
}

static void cconn_write_cb(uv_write_t *req, int status)
{
	struct rpc_cconn *conn = req->data;
	rpc__out_done(&conn->out);
	if (conn->client == NULL)
		return;
	if (status < 0) {
		cconn_fail(conn, "rpc_write_failed", uv_strerror(status));
		return;
	}
	int r = rpc__out_flush(&conn->out, (uv_stream_t *)&conn->tcp, cconn_write_cb,
			       &conn->client->counters);
	if (r < 0)
		cconn_fail(conn, "rpc_write_failed", uv_strerror(r));
}

static void cconn_flush(struct rpc_cconn *conn)
{
	if (!conn->connected)
		return;
	int r = rpc__out_flush(&conn->out, (uv_stream_t *)&conn->tcp, cconn_write_cb,
			       &conn->client->counters);
	if (r < 0)
		cconn_fail(conn, "rpc_write_failed", uv_strerror(r));
}

static void cconn_connect_cb(uv_connect_t *req, int status)
{
	struct rpc_cconn *conn = req->data;
	if (conn->client == NULL)
		return;
	if (status < 0) {
		cconn_fail(conn, "rpc_connect_failed", uv_strerror(status));
		return;
	}
	conn->connected = 1;
	uv_tcp_nodelay(&conn->tcp, 1);
	int r = uv_read_start((uv_stream_t *)&conn->tcp, rpc__alloc_cb, cconn_read_cb);
	if (r < 0) {
		cconn_fail(conn, "rpc_connect_failed", uv_strerror(r));
		return;
	}
	if (conn->out.tls != NULL) {
		/* the ClientHello; the HELLO frame waits in the engine */
		const char *error;
		buf none;
		buf_init(&none);
		int tr = rpc__out_tls_in(&conn->out, NULL, 0, &none, &error);
		buf_deinit(&none);
		if (tr < 0) {
			cconn_fail(conn, "rpc_tls_failed", error);
			return;
		}
	}
	cconn_flush(conn);
}

static void cconn_bad_frame(struct rpc_cconn *conn, const char *error)
{
	conn->client->counters.bad_frames++;
	cconn_fail(conn, "rpc_bad_frame", error);
}

static void cconn_hello(struct rpc_cconn *conn, const struct rpc_frame *f)
{
	rpc_client *c = conn->client;
	struct rpc_hello h;
	const char *error;
	if (f->kind != RPC_KIND_HELLO) {
		cconn_bad_frame(conn, "first frame is not a hello");
		return;
	}
	if (rpc_hello_parse(f->payload, f->payload_len, &h, &error) < 0) {
		cconn_bad_frame(conn, error);
		return;
	}
	if (strcmp(h.service, c->service) != 0 || h.major != RPC_PROTO_MAJOR) {
		char q[80];
		log_event(LOG_WARN, RPC_LOG_SVC,
			  "event=rpc_hello_rejected peer=%s service=%s major=%u minor=%u "
			  "want_service=%s want_major=%u", c->peer,
			  log_quote(q, sizeof q, h.service, strlen(h.service)), h.major,
			  h.minor, c->service, RPC_PROTO_MAJOR);
		cconn_bad_frame(conn, "hello mismatch");
		return;
	}
	conn->hello_done = 1;
	conn->dec.limits.max_frame = RPC_FRAME_MAX;
	c->backoff_ms = 0;
	c->next_attempt = 0;
	c->counters.connections++;
}

static void cconn_response(struct rpc_cconn *conn, const struct rpc_frame *f)
{
	rpc_client *c = conn->client;
	if (f->kind != RPC_KIND_RESPONSE) {
		cconn_bad_frame(conn, "unexpected frame kind");
		return;
	}
	struct rpc_pending *p = table_take(c, f->request_id);
	if (p == NULL)
		return;   /* its deadline passed: the caller already has an answer */
	int status = (int)f->status;
	ProtobufCMessage *resp = NULL;
	if (status == MAIL_OK && p->resp_desc != NULL) {
		resp = protobuf_c_message_unpack(p->resp_desc, NULL, f->payload_len, f->payload);
		if (resp == NULL) {
			log_event(LOG_WARN, RPC_LOG_SVC,
				  "event=rpc_bad_response peer=%s method=%u id=%llu len=%zu",
				  c->peer, f->method, (unsigned long long)f->request_id,
				  f->payload_len);
			status = MAIL_ERR_INTERNAL;
		}
	}
	client_finish(c, p, status, resp);
}

static void cconn_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b)
{
	struct rpc_cconn *conn = stream->data;
	if (nread < 0) {
		cconn_fail(conn, "rpc_conn_lost",
			   nread == UV_EOF ? "closed by peer" : uv_strerror((int)nread));
		free(b->base);
		return;
	}
	const uint8_t *p = (const uint8_t *)b->base;
	size_t left = (size_t)nread;
	buf plain;
	buf_init(&plain);
	if (conn->out.tls != NULL) {
		const char *error;
		if (rpc__out_tls_in(&conn->out, p, left, &plain, &error) < 0) {
			cconn_fail(conn, "rpc_tls_failed", error);
			left = 0;
		} else {
			cconn_flush(conn);
			p = plain.data;
			left = conn->client != NULL ? plain.len : 0;
		}
	}
	while (left > 0 && conn->client != NULL) {
		struct rpc_frame f;
		size_t used;
		const char *error;
		int r = rpc_frame_decoder_feed(&conn->dec, p, left, &used, &f, &error);
		p += used;
		left -= used;
		if (r < 0) {
			cconn_bad_frame(conn, error);
			break;
		}
		if (r == 0)
			break;
		conn->client->counters.frames_in++;
		if (!conn->hello_done)
			cconn_hello(conn, &f);
		else
			cconn_response(conn, &f);
	}
	buf_deinit(&plain);
	free(b->base);
}

/* Start a connection; returns it, or NULL (and sets the backoff) when the
 * connect cannot even be started. */
static struct rpc_cconn *client_connect(rpc_client *c)
{
	struct rpc_cconn *conn = xcalloc(1, sizeof *conn);
	conn->client = c;
	struct rpc_frame_limits lim = { .max_frame = RPC_HELLO_FRAME_MAX };
	rpc_frame_decoder_init(&conn->dec, &lim);
	rpc__out_init(&conn->out);
	conn->out.req.data = conn;
	conn->connect_req.data = conn;
	uv_tcp_init(c->loop, &conn->tcp);
	conn->tcp.data = conn;
	c->conn = conn;
	/* the HELLO goes first; calls queue behind it until connected */
	rpc_hello_encode(&conn->out.pending, c->service, RPC_PROTO_MAJOR, RPC_PROTO_MINOR);
	conn->out.frames_pending++;
	if (c->tls != NULL)
		conn->out.tls = tls_conn_new_client(c->tls, c->host);
	int r = uv_tcp_connect(&conn->connect_req, &conn->tcp, (const struct sockaddr *)&c->addr,
			       cconn_connect_cb);
	if (r < 0) {
		cconn_fail(conn, "rpc_connect_failed", uv_strerror(r));
		return NULL;
	}
	return conn;
}

/* ---- public ---- */

int rpc_client_create(uv_loop_t *loop, const char *service, const char *host, int port,
		      rpc_client **client_r)
{
	rpc_client *c = xcalloc(1, sizeof *c);
	c->loop = loop;
	c->service = xstrdup(service);
	if (strcmp(host, "localhost") == 0)
		host = "127.0.0.1";
	c->addr_ok = port > 0 && port <= 65535 &&
		(uv_ip4_addr(host, port, (struct sockaddr_in *)&c->addr) == 0 ||
		 uv_ip6_addr(host, port, (struct sockaddr_in6 *)&c->addr) == 0);
	snprintf(c->peer, sizeof c->peer, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
	snprintf(c->host, sizeof c->host, "%s", host);
	if (!c->addr_ok)
		log_event(LOG_ERROR, RPC_LOG_SVC,
			  "event=rpc_bad_peer peer=%s service=%s error=\"not an IP address\"",
			  c->peer, service);
	c->table_size = RPC_TABLE_MIN;
	c->table = xcalloc(c->table_size, sizeof *c->table);
	uv_idle_init(loop, &c->idle);
	c->idle.data = c;
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	c->handles_open = 2;
	*client_r = c;
	return 0;
}

void rpc_client_counters(const rpc_client *client, struct rpc_counters *counters_r)
{
	*counters_r = client->counters;
}

void rpc_client_call(rpc_client *client, uint16_t method, const ProtobufCMessage *req,
		     const ProtobufCMessageDescriptor *resp_desc, uint32_t deadline_ms,
		     rpc_reply_cb *cb, void *arg)
{
	rpc_client *c = client;
	struct rpc_pending *p = xcalloc(1, sizeof *p);
	uint64_t now = util_now_mono_ms();
	if (deadline_ms == 0)
		deadline_ms = RPC_DEFAULT_DEADLINE_MS;
	p->id = ++c->next_id;
	p->resp_desc = resp_desc;
	p->cb = cb;
	p->arg = arg;
	p->deadline = now + deadline_ms;

	struct rpc_cconn *conn = c->conn;
	if (conn == NULL) {
		if (!c->addr_ok || now < c->next_attempt) {
			client_finish(c, p, MAIL_ERR_UNAVAILABLE, NULL);
			return;
		}
		conn = client_connect(c);
		if (conn == NULL) {
			client_finish(c, p, MAIL_ERR_UNAVAILABLE, NULL);
			return;
		}
	}
	struct rpc_frame f = {
		.kind = RPC_KIND_REQUEST,
		.method = method,
		.request_id = p->id,
		.deadline_ms = deadline_ms,
	};
	if (rpc__frame_pack(&conn->out.pending, &f, req) < 0) {
		log_event(LOG_WARN, RPC_LOG_SVC, "event=rpc_request_too_big peer=%s method=%u",
			  c->peer, method);
		client_finish(c, p, MAIL_ERR_TOO_BIG, NULL);
		return;
	}
	conn->out.frames_pending++;
	table_insert(c, p);
	client_timer_arm(c, p->deadline);
	cconn_flush(conn);
}

static void client_handle_close_cb(uv_handle_t *handle)
{
	rpc_client *c = handle->data;
	if (--c->handles_open > 0)
		return;
	free(c->table);
	free(c->service);
	free(c);
}

void rpc_client_set_tls(rpc_client *client, tls_client *tls)
{
	client->tls = tls;
}

void rpc_client_destroy(rpc_client **client)
{
	rpc_client *c = *client;
	if (c == NULL)
		return;
	*client = NULL;
	c->destroyed = 1;
	if (c->conn != NULL)
		cconn_detach(c->conn);
	client_fail_all(c, MAIL_ERR_UNAVAILABLE);
	struct rpc_pending *p;
	while ((p = done_pop(c)) != NULL)
		pending_deliver(c, p);
	uv_close((uv_handle_t *)&c->idle, client_handle_close_cb);
	uv_close((uv_handle_t *)&c->timer, client_handle_close_cb);
}

/* ---- pool ---- */

struct rpc_pool_entry {
	char *key;            /* "host:port" */
	rpc_client *client;
};

struct rpc_pool {
	uv_loop_t *loop;
	char *service;
	tls_client *tls;
	struct rpc_pool_entry *v;
	size_t n, cap;
};

rpc_pool *rpc_pool_create(uv_loop_t *loop, const char *service)
{
	rpc_pool *pool = xcalloc(1, sizeof *pool);
	pool->loop = loop;
	pool->service = xstrdup(service);
	return pool;
}

rpc_client *rpc_pool_get(rpc_pool *pool, const char *host, int port)
{
	char *key = xasprintf("%s:%d", host, port);
	for (size_t i = 0; i < pool->n; i++) {
		if (strcmp(pool->v[i].key, key) == 0) {
			free(key);
			return pool->v[i].client;
		}
	}
	if (pool->n == pool->cap) {
		pool->cap = pool->cap ? pool->cap * 2 : 8;
		pool->v = xrealloc(pool->v, pool->cap * sizeof *pool->v);
	}
	struct rpc_pool_entry *e = &pool->v[pool->n++];
	e->key = key;
	rpc_client_create(pool->loop, pool->service, host, port, &e->client);
	if (pool->tls != NULL)
		rpc_client_set_tls(e->client, pool->tls);
	return e->client;
}

void rpc_pool_set_tls(rpc_pool *pool, tls_client *tls)
{
	pool->tls = tls;
}

void rpc_pool_destroy(rpc_pool **pool)
{
	rpc_pool *p = *pool;
	if (p == NULL)
		return;
	*pool = NULL;
	for (size_t i = 0; i < p->n; i++) {
		rpc_client_destroy(&p->v[i].client);
		free(p->v[i].key);
	}
	free(p->v);
	free(p->service);
	free(p);
}
