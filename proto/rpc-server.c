/* rpc-server.c: the RPC server on a libuv loop (contract in rpc.h).
 *
 * Ownership: the server owns its listener and a list of connections. A
 * connection is reference counted: one reference for its open handle and
 * one per call handed to a handler and not yet replied to, so a handler may
 * reply after the connection (or the whole server) is gone; the reply is
 * then dropped. Once the server is destroyed, connections still alive only
 * for their calls have conn->server == NULL and never touch the server.
 *
 * Back-pressure (rpc_server_limits): a connection is read only while it
 * has fewer than max_inflight calls unanswered and at most max_out_bytes of
 * replies queued. When it reaches either bound in the middle of a read
 * chunk, the rest of the chunk waits in conn->held, undecoded, and
 * uv_read_stop() leaves the rest in the kernel, so the peer's writes block.
 * Resuming is deferred to the server's resume timer (0 ms): decoding the
 * held bytes runs handlers, and those must not run from inside another
 * handler's rpc_call_reply().
 *
 * Idle connections are found by one sweep timer per server, not a timer
 * per connection.
 */
#include "log.h"
#include "rpc-private.h"
#include "util.h"
#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

/* One service served by the listener (the HELLO picks it). */
struct rpc_service {
	char *name;
	const rpc_method *methods;
	size_t n_methods;
	void *ctx;
};

struct rpc_sconn {
	rpc_server *server;          /* NULL once the server is destroyed */
	size_t service;              /* index in server->services, after HELLO */
	uv_tcp_t tcp;
	struct rpc_frame_decoder dec;
	struct rpc__out out;
	unsigned int refs;           /* open handle + unanswered calls */
	int closing;
	int hello_done;
	int reading;                 /* uv_read_start()ed (see back-pressure) */
	int resume_pending;          /* the resume timer will decode `held` */
	unsigned int calls;          /* handed to handlers, not replied to */
	buf held;                    /* read but not decoded while blocked */
	size_t held_off;             /* decoded up to here */
	uint32_t role;               /* TLS: the peer's rpc_role bit, once known */
	uint64_t last_active;        /* monotonic ms: accept, a frame in, a reply */
	char peer[64];
	struct rpc_sconn *prev, *next;
};

struct rpc_call {
	struct rpc_sconn *conn;
	uint16_t method;
	uint64_t request_id;
	uint64_t deadline;
	ProtobufCMessage *req;
};

struct rpc_server {
	uv_loop_t *loop;
	char *service;               /* the first service's name, for logs */
	struct rpc_service *services;
	size_t n_services;
	uv_tcp_t listener;
	int listener_open;
	struct rpc_sconn *conns;
	size_t n_conns;
	struct rpc_server_limits limits;
	uv_timer_t sweep;            /* idle connections, while listening */
	uv_timer_t resume;           /* decodes the held input of resumed conns */
	int timers_open;
	int handles_open;            /* listener + timers still to close */
	tls_server *tls;             /* borrowed; NULL = plaintext */
	struct rpc_counters counters;
};

static void sconn_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b);
static void sconn_update_reading(struct rpc_sconn *conn);
static void server_resume_cb(uv_timer_t *timer);

int rpc_server_create(uv_loop_t *loop, const char *service, const rpc_method *methods,
		      size_t n_methods, void *ctx, rpc_server **server_r)
{
	rpc_server *s = xcalloc(1, sizeof *s);
	s->loop = loop;
	s->service = xstrdup(service);
	s->limits = RPC_SERVER_LIMITS_DEFAULT;
	*server_r = s;
	rpc_server_add_service(s, service, methods, n_methods, ctx);
	return 0;
}

int rpc_server_add_service(rpc_server *s, const char *service, const rpc_method *methods,
			   size_t n_methods, void *ctx)
{
	for (size_t i = 0; i < s->n_services; i++)
		if (strcmp(s->services[i].name, service) == 0)
			return -1;
	s->services = xrealloc(s->services, (s->n_services + 1) * sizeof *s->services);
	struct rpc_service *svc = &s->services[s->n_services++];
	svc->name = xstrdup(service);
	svc->methods = methods;
	svc->n_methods = n_methods;
	svc->ctx = ctx;
	return 0;
}

void rpc_server_set_tls(rpc_server *server, tls_server *tls)
{
	server->tls = tls;
}

void rpc_server_set_limits(rpc_server *server, const struct rpc_server_limits *limits)
{
	server->limits = *limits;
}

void rpc_server_counters(const rpc_server *server, struct rpc_counters *counters_r)
{
	*counters_r = server->counters;
}

static void sconn_unref(struct rpc_sconn *conn)
{
	if (--conn->refs > 0)
		return;
	rpc_frame_decoder_deinit(&conn->dec);
	rpc__out_deinit(&conn->out);
	buf_deinit(&conn->held);
	free(conn);
}

static void sconn_close_cb(uv_handle_t *handle)
{
	sconn_unref(handle->data);
}

static void sconn_close(struct rpc_sconn *conn)
{
	if (conn->closing)
		return;
	conn->closing = 1;
	rpc_server *s = conn->server;
	if (s != NULL) {
		if (conn->prev != NULL)
			conn->prev->next = conn->next;
		else
			s->conns = conn->next;
		if (conn->next != NULL)
			conn->next->prev = conn->prev;
		conn->prev = conn->next = NULL;
		s->n_conns--;
	}
	uv_close((uv_handle_t *)&conn->tcp, sconn_close_cb);
}

static void sconn_bad_frame(struct rpc_sconn *conn, const char *error)
{
	char q[128];
	log_event(LOG_WARN, RPC_LOG_SVC, "event=rpc_bad_frame peer=%s error=%s", conn->peer,
		  log_quote(q, sizeof q, error, strlen(error)));
	if (conn->server != NULL)
		conn->server->counters.bad_frames++;
	sconn_close(conn);
}

static void sconn_write_cb(uv_write_t *req, int status)
{
	struct rpc_sconn *conn = req->data;
	rpc__out_done(&conn->out);
	if (conn->closing)
		return;
	if (status < 0) {
		log_event(LOG_INFO, RPC_LOG_SVC, "event=rpc_write_failed peer=%s error=%s",
			  conn->peer, uv_err_name(status));
		sconn_close(conn);
		return;
	}
	struct rpc_counters *c = conn->server != NULL ? &conn->server->counters : NULL;
	int r = rpc__out_flush(&conn->out, (uv_stream_t *)&conn->tcp, sconn_write_cb, c);
	if (r < 0) {
		sconn_close(conn);
		return;
	}
	sconn_update_reading(conn);
}

/* Queue one frame and start writing: its payload packed from msg, or the
 * bytes raw (raw_len) packed already when msg is NULL and raw is not. */
static void sconn_send_any(struct rpc_sconn *conn, struct rpc_frame *f, const ProtobufCMessage *msg,
			   const uint8_t *raw, size_t raw_len)
{
	int r = msg == NULL && raw != NULL ? rpc__frame_pack_raw(&conn->out.pending, f, raw, raw_len)
					   : rpc__frame_pack(&conn->out.pending, f, msg);
	if (r < 0) {
		log_event(LOG_WARN, RPC_LOG_SVC,
			  "event=rpc_reply_too_big peer=%s method=%u id=%llu", conn->peer,
			  f->method, (unsigned long long)f->request_id);
		f->status = MAIL_ERR_TOO_BIG;
		rpc__frame_pack(&conn->out.pending, f, NULL);
	}
	conn->out.frames_pending++;
	struct rpc_counters *c = conn->server != NULL ? &conn->server->counters : NULL;
	size_t queued = rpc__out_queued(&conn->out);
	if (c != NULL && queued > c->out_peak_bytes)
		c->out_peak_bytes = queued;
	if (rpc__out_flush(&conn->out, (uv_stream_t *)&conn->tcp, sconn_write_cb, c) < 0) {
		sconn_close(conn);
		return;
	}
	sconn_update_reading(conn);
}

static void sconn_send(struct rpc_sconn *conn, struct rpc_frame *f, const ProtobufCMessage *msg)
{
	sconn_send_any(conn, f, msg, NULL, 0);
}

static void sconn_reply_status(struct rpc_sconn *conn, const struct rpc_frame *req, int status)
{
	struct rpc_frame f = {
		.kind = RPC_KIND_RESPONSE,
		.method = req->method,
		.status = (uint32_t)status,
		.request_id = req->request_id,
	};
	sconn_send(conn, &f, NULL);
	rpc__count_status(&conn->server->counters, (int)f.status);
}

static const rpc_method *server_method(const struct rpc_service *svc, uint16_t id)
{
	for (size_t i = 0; i < svc->n_methods; i++) {
		if (svc->methods[i].id == id)
			return &svc->methods[i];
	}
	return NULL;
}

/* Index of the service named name, or -1. */
static long server_service_find(const rpc_server *s, const char *name)
{
	for (size_t i = 0; i < s->n_services; i++)
		if (strcmp(s->services[i].name, name) == 0)
			return (long)i;
	return -1;
}

static void sconn_hello(struct rpc_sconn *conn, const struct rpc_frame *f)
{
	rpc_server *s = conn->server;
	struct rpc_hello h;
	const char *error;
	if (f->kind != RPC_KIND_HELLO) {
		sconn_bad_frame(conn, "first frame is not a hello");
		return;
	}
	if (rpc_hello_parse(f->payload, f->payload_len, &h, &error) < 0) {
		sconn_bad_frame(conn, error);
		return;
	}
	long svc = server_service_find(s, h.service);
	if (svc < 0 || h.major != RPC_PROTO_MAJOR) {
		char q[80];
		log_event(LOG_WARN, RPC_LOG_SVC,
			  "event=rpc_hello_rejected peer=%s service=%s major=%u minor=%u "
			  "want_service=%s want_major=%u", conn->peer,
			  log_quote(q, sizeof q, h.service, strlen(h.service)), h.major, h.minor,
			  s->service, RPC_PROTO_MAJOR);
		s->counters.bad_frames++;
		sconn_close(conn);
		return;
	}
	conn->hello_done = 1;
	conn->service = (size_t)svc;
	conn->dec.limits.max_frame = RPC_FRAME_MAX;
	rpc_hello_encode(&conn->out.pending, s->services[svc].name, RPC_PROTO_MAJOR,
			 RPC_PROTO_MINOR);
	conn->out.frames_pending++;
	if (rpc__out_flush(&conn->out, (uv_stream_t *)&conn->tcp, sconn_write_cb,
			   &s->counters) < 0)
		sconn_close(conn);
}

static void sconn_request(struct rpc_sconn *conn, const struct rpc_frame *f)
{
	rpc_server *s = conn->server;
	if (f->kind != RPC_KIND_REQUEST) {
		sconn_bad_frame(conn, "unexpected frame kind");
		return;
	}
	const struct rpc_service *svc = &s->services[conn->service];
	const rpc_method *m = server_method(svc, f->method);
	if (m == NULL) {
		log_event(LOG_INFO, RPC_LOG_SVC, "event=rpc_bad_method peer=%s method=%u",
			  conn->peer, f->method);
		sconn_reply_status(conn, f, MAIL_ERR_BAD_METHOD);
		return;
	}
	if (conn->out.tls != NULL) {
		uint32_t allowed = m->roles != 0 ? m->roles : RPC_ROLES_NODES;
		if ((conn->role & allowed) == 0) {
			log_event(LOG_WARN, RPC_LOG_SVC,
				  "event=rpc_denied peer=%s method=%s role=%s", conn->peer,
				  m->name, tls_conn_peer_role(conn->out.tls));
			sconn_reply_status(conn, f, MAIL_ERR_PERM);
			return;
		}
	}
	ProtobufCMessage *req = protobuf_c_message_unpack(m->request, NULL, f->payload_len,
							  f->payload);
	if (req == NULL) {
		log_event(LOG_INFO, RPC_LOG_SVC,
			  "event=rpc_bad_payload peer=%s method=%s id=%llu len=%zu", conn->peer,
			  m->name, (unsigned long long)f->request_id, f->payload_len);
		sconn_reply_status(conn, f, MAIL_ERR_PARAMS);
		return;
	}
	rpc_call *call = xcalloc(1, sizeof *call);
	call->conn = conn;
	call->method = f->method;
	call->request_id = f->request_id;
	uint32_t wait = f->deadline_ms != 0 ? f->deadline_ms : RPC_DEFAULT_DEADLINE_MS;
	call->deadline = util_now_mono_ms() + wait;
	call->req = req;
	conn->refs++;
	conn->calls++;
	m->handler(call, req, svc->ctx);
}

/* Whether the connection must not be read now (see back-pressure above):
 * too many calls in flight, or too many reply bytes queued (with
 * hysteresis: once paused, until they drop below half the bound). */
static int sconn_blocked(const struct rpc_sconn *conn)
{
	const struct rpc_server_limits *lim = &conn->server->limits;
	if (lim->max_inflight != 0 && conn->calls >= lim->max_inflight)
		return 1;
	if (lim->max_out_bytes == 0)
		return 0;
	size_t queued = rpc__out_queued(&conn->out);
	return queued > lim->max_out_bytes ||
		(!conn->reading && queued > lim->max_out_bytes / 2);
}

/* Decode frames from p and dispatch them until the bytes run out, the
 * connection closes or it becomes blocked. Returns the bytes used. */
static size_t sconn_process(struct rpc_sconn *conn, const uint8_t *p, size_t len)
{
	size_t off = 0;
	/* a handler may destroy the server or the connection: re-check */
	while (off < len && !conn->closing && !sconn_blocked(conn)) {
		struct rpc_frame f;
		size_t used;
		const char *error;
		int r = rpc_frame_decoder_feed(&conn->dec, p + off, len - off, &used, &f, &error);
		off += used;
		if (r < 0) {
			sconn_bad_frame(conn, error);
			break;
		}
		if (r == 0)
			break;
		conn->server->counters.frames_in++;
		conn->last_active = util_now_mono_ms();
		if (!conn->hello_done)
			sconn_hello(conn, &f);
		else
			sconn_request(conn, &f);
	}
	return off;
}

/* Stop reading a blocked connection; schedule the resume of one that is
 * no longer blocked. Safe from anywhere (it runs no handler). */
static void sconn_update_reading(struct rpc_sconn *conn)
{
	rpc_server *s = conn->server;
	if (conn->closing || s == NULL)
		return;
	int blocked = sconn_blocked(conn);
	if (blocked && conn->reading) {
		uv_read_stop((uv_stream_t *)&conn->tcp);
		conn->reading = 0;
		s->counters.read_pauses++;
		log_event(LOG_DEBUG, RPC_LOG_SVC,
			  "event=rpc_read_paused peer=%s calls=%u queued=%zu", conn->peer,
			  conn->calls, rpc__out_queued(&conn->out));
	} else if (!blocked && !conn->reading && !conn->resume_pending) {
		conn->resume_pending = 1;
		uv_timer_start(&s->resume, server_resume_cb, 0, 0);
	}
}

/* Decode what was held back, then read again unless blocked anew. */
static void sconn_resume(struct rpc_sconn *conn)
{
	conn->resume_pending = 0;
	if (conn->closing || conn->reading || sconn_blocked(conn))
		return;
	if (conn->held_off < conn->held.len) {
		conn->held_off += sconn_process(conn, conn->held.data + conn->held_off,
						conn->held.len - conn->held_off);
		if (conn->closing || conn->held_off < conn->held.len)
			return;   /* blocked again: a later reply resumes it */
	}
	buf_deinit(&conn->held);
	conn->held_off = 0;
	if (uv_read_start((uv_stream_t *)&conn->tcp, rpc__alloc_cb, sconn_read_cb) < 0) {
		sconn_close(conn);
		return;
	}
	conn->reading = 1;
}

static void server_resume_cb(uv_timer_t *timer)
{
	rpc_server *s = timer->data;
	struct rpc_sconn *next;
	/* a handler may close any connection, or destroy the server: take the
	 * next one first, and stop if the server went away */
	for (struct rpc_sconn *conn = s->conns; conn != NULL && conn->server != NULL;
	     conn = next) {
		next = conn->next;
		if (conn->resume_pending)
			sconn_resume(conn);
		if (conn->server == NULL)
			break;
	}
}

static void sconn_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b)
{
	struct rpc_sconn *conn = stream->data;
	if (nread < 0) {
		if (nread != UV_EOF)
			log_event(LOG_INFO, RPC_LOG_SVC, "event=rpc_read_failed peer=%s error=%s",
				  conn->peer, uv_err_name((int)nread));
		sconn_close(conn);
		free(b->base);
		return;
	}
	const uint8_t *data = (const uint8_t *)b->base;
	size_t len = (size_t)nread;
	buf plain;
	buf_init(&plain);
	if (conn->out.tls != NULL) {
		/* frames only ever come from verified, decrypted input */
		const char *error;
		int was_done = tls_conn_handshake_done(conn->out.tls);
		int r = rpc__out_tls_in(&conn->out, data, len, &plain, &error);
		struct rpc_counters *c = conn->server != NULL ? &conn->server->counters : NULL;
		if (r == 0 && rpc__out_flush(&conn->out, (uv_stream_t *)&conn->tcp,
					     sconn_write_cb, c) < 0)
			r = -1, error = "write failed";
		if (r < 0) {
			char q[160];
			log_event(LOG_WARN, RPC_LOG_SVC, "event=rpc_tls_failed peer=%s error=%s",
				  conn->peer, log_quote(q, sizeof q, error, strlen(error)));
			sconn_close(conn);
			goto out;
		}
		if (!was_done && tls_conn_handshake_done(conn->out.tls))
			conn->role = rpc_role_parse(tls_conn_peer_role(conn->out.tls));
		data = plain.data;
		len = plain.len;
	}
	size_t used = sconn_process(conn, data, len);
	if (used < len && !conn->closing) {
		/* blocked: keep the rest undecoded (reading => held is empty) */
		buf_append(&conn->held, data + used, len - used);
		sconn_update_reading(conn);
	}
out:
	buf_deinit(&plain);
	free(b->base);
}

/* Close connections idle for limits.idle_timeout_ms with nothing in
 * flight either way. */
static void server_sweep_cb(uv_timer_t *timer)
{
	rpc_server *s = timer->data;
	uint64_t now = util_now_mono_ms();
	struct rpc_sconn *next;
	for (struct rpc_sconn *conn = s->conns; conn != NULL; conn = next) {
		next = conn->next;
		if (conn->calls != 0 || rpc__out_queued(&conn->out) != 0 ||
		    now - conn->last_active < s->limits.idle_timeout_ms)
			continue;
		log_event(LOG_INFO, RPC_LOG_SVC, "event=rpc_idle_closed peer=%s idle_ms=%llu",
			  conn->peer, (unsigned long long)(now - conn->last_active));
		s->counters.idle_closed++;
		sconn_close(conn);
	}
}

static void server_connection_cb(uv_stream_t *listener, int status)
{
	rpc_server *s = listener->data;
	if (status < 0) {
		log_event(LOG_WARN, RPC_LOG_SVC, "event=rpc_accept_failed service=%s error=%s",
			  s->service, uv_err_name(status));
		return;
	}
	struct rpc_sconn *conn = xcalloc(1, sizeof *conn);
	conn->server = s;
	conn->refs = 1;
	struct rpc_frame_limits lim = { .max_frame = RPC_HELLO_FRAME_MAX };
	rpc_frame_decoder_init(&conn->dec, &lim);
	rpc__out_init(&conn->out);
	buf_init(&conn->held);
	conn->out.req.data = conn;
	conn->last_active = util_now_mono_ms();
	uv_tcp_init(s->loop, &conn->tcp);
	conn->tcp.data = conn;
	/* linked first so that a close below unlinks consistently */
	conn->next = s->conns;
	if (s->conns != NULL)
		s->conns->prev = conn;
	s->conns = conn;
	s->n_conns++;
	if (uv_accept(listener, (uv_stream_t *)&conn->tcp) < 0) {
		sconn_close(conn);
		return;
	}
	rpc__peer_name(&conn->tcp, conn->peer, sizeof conn->peer);
	if (s->limits.max_connections != 0 && s->n_conns > s->limits.max_connections) {
		/* accepted only to be closed: the backlog would keep it waiting */
		log_event(LOG_WARN, RPC_LOG_SVC,
			  "event=rpc_connection_refused peer=%s reason=max_connections limit=%u",
			  conn->peer, s->limits.max_connections);
		s->counters.refused++;
		sconn_close(conn);
		return;
	}
	uv_tcp_nodelay(&conn->tcp, 1);
	if (s->tls != NULL)
		conn->out.tls = tls_conn_new_server(s->tls);
	s->counters.connections++;
	if (uv_read_start((uv_stream_t *)&conn->tcp, rpc__alloc_cb, sconn_read_cb) < 0) {
		sconn_close(conn);
		return;
	}
	conn->reading = 1;
}

static void server_timers_start(rpc_server *s)
{
	uv_timer_init(s->loop, &s->sweep);
	uv_timer_init(s->loop, &s->resume);
	s->sweep.data = s->resume.data = s;
	s->timers_open = 1;
	s->handles_open += 2;
	if (s->limits.idle_timeout_ms != 0) {
		/* a connection is closed between 1 and 1.25 timeouts idle */
		uint64_t every = s->limits.idle_timeout_ms / 4;
		if (every < 10)
			every = 10;
		if (every > 10000)
			every = 10000;
		uv_timer_start(&s->sweep, server_sweep_cb, every, every);
	}
	/* the resume timer is armed by sconn_update_reading() */
}

int rpc_server_listen(rpc_server *server, const char *host, int port, int *port_r,
		      const char **error_r)
{
	struct sockaddr_storage ss;
	if (server->listener_open) {
		*error_r = "already listening";
		return -1;
	}
	if (port < 0 || port > 65535) {
		*error_r = "port out of range";
		return -1;
	}
	if (strcmp(host, "localhost") == 0)
		host = "127.0.0.1";
	if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
	    uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0) {
		*error_r = "listen host is not an IP address";
		return -1;
	}
	uv_tcp_init(server->loop, &server->listener);
	server->listener.data = server;
	server->listener_open = 1;
	server->handles_open++;
	server_timers_start(server);
	int r = uv_tcp_bind(&server->listener, (const struct sockaddr *)&ss, 0);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&server->listener, 128, server_connection_cb);
	if (r < 0) {
		*error_r = uv_strerror(r);
		/* leave the handle open: rpc_server_destroy() closes it */
		return -1;
	}
	if (port_r != NULL) {
		int len = sizeof ss;
		uv_tcp_getsockname(&server->listener, (struct sockaddr *)&ss, &len);
		*port_r = ss.ss_family == AF_INET6 ?
			ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) :
			ntohs(((struct sockaddr_in *)&ss)->sin_port);
	}
	log_event(LOG_INFO, RPC_LOG_SVC, "event=rpc_listening service=%s host=%s port=%d",
		  server->service, host,
		  port_r != NULL ? *port_r : port);
	return 0;
}

static void server_free(rpc_server *s)
{
	for (size_t i = 0; i < s->n_services; i++)
		free(s->services[i].name);
	free(s->services);
	free(s->service);
	free(s);
}

static void server_handle_close_cb(uv_handle_t *handle)
{
	rpc_server *s = handle->data;
	if (--s->handles_open == 0)
		server_free(s);
}

void rpc_server_destroy(rpc_server **server)
{
	rpc_server *s = *server;
	if (s == NULL)
		return;
	*server = NULL;
	while (s->conns != NULL) {
		struct rpc_sconn *conn = s->conns;
		sconn_close(conn);   /* unlinks it */
		conn->server = NULL;
	}
	if (s->timers_open) {
		uv_close((uv_handle_t *)&s->sweep, server_handle_close_cb);
		uv_close((uv_handle_t *)&s->resume, server_handle_close_cb);
	}
	if (s->listener_open)
		uv_close((uv_handle_t *)&s->listener, server_handle_close_cb);
	if (s->handles_open == 0)
		server_free(s);
}

static void call_reply_any(rpc_call *call, int status, const ProtobufCMessage *resp,
			   const uint8_t *raw, size_t raw_len)
{
	struct rpc_sconn *conn = call->conn;
	if (!conn->closing && conn->server != NULL) {
		struct rpc_frame f = {
			.kind = RPC_KIND_RESPONSE,
			.method = call->method,
			.status = (uint32_t)status,
			.request_id = call->request_id,
		};
		if (status == MAIL_OK)
			sconn_send_any(conn, &f, resp, raw, raw_len);
		else
			sconn_send(conn, &f, NULL);
		rpc__count_status(&conn->server->counters, (int)f.status);
	}
	protobuf_c_message_free_unpacked(call->req, NULL);
	free(call);
	conn->calls--;
	conn->last_active = util_now_mono_ms();
	sconn_update_reading(conn);
	sconn_unref(conn);
}

void rpc_call_reply(rpc_call *call, int status, const ProtobufCMessage *resp)
{
	call_reply_any(call, status, resp, NULL, 0);
}

void rpc_call_reply_packed(rpc_call *call, int status, const uint8_t *data, size_t len)
{
	call_reply_any(call, status, NULL, data != NULL ? data : (const uint8_t *)"", len);
}

uint64_t rpc_call_deadline(const rpc_call *call)
{
	return call->deadline;
}

const char *rpc_call_peer(const rpc_call *call)
{
	return call->conn->peer;
}
