/* rpc-server.c: the RPC server on a libuv loop (contract in rpc.h).
 *
 * Ownership: the server owns its listener and a list of connections. A
 * connection is reference counted: one reference for its open handle and
 * one per call handed to a handler and not yet replied to, so a handler may
 * reply after the connection (or the whole server) is gone; the reply is
 * then dropped. Once the server is destroyed, connections still alive only
 * for their calls have conn->server == NULL and never touch the server.
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
	int reading;                 /* 0 while paused by RPC_OUT_HIGH_WATER */
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
	struct rpc_counters counters;
};

static void sconn_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b);

int rpc_server_create(uv_loop_t *loop, const char *service, const rpc_method *methods,
		      size_t n_methods, void *ctx, rpc_server **server_r)
{
	rpc_server *s = xcalloc(1, sizeof *s);
	s->loop = loop;
	s->service = xstrdup(service);
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
	if (!conn->reading && rpc__out_queued(&conn->out) < RPC_OUT_HIGH_WATER / 2) {
		if (uv_read_start((uv_stream_t *)&conn->tcp, rpc__alloc_cb, sconn_read_cb) == 0)
			conn->reading = 1;
	}
}

/* Queue one frame (payload packed from msg) and start writing. */
static void sconn_send(struct rpc_sconn *conn, struct rpc_frame *f, const ProtobufCMessage *msg)
{
	if (rpc__frame_pack(&conn->out.pending, f, msg) < 0) {
		log_event(LOG_WARN, RPC_LOG_SVC,
			  "event=rpc_reply_too_big peer=%s method=%u id=%llu", conn->peer,
			  f->method, (unsigned long long)f->request_id);
		f->status = MAIL_ERR_TOO_BIG;
		rpc__frame_pack(&conn->out.pending, f, NULL);
	}
	conn->out.frames_pending++;
	struct rpc_counters *c = conn->server != NULL ? &conn->server->counters : NULL;
	if (rpc__out_flush(&conn->out, (uv_stream_t *)&conn->tcp, sconn_write_cb, c) < 0) {
		sconn_close(conn);
		return;
	}
	if (conn->reading && rpc__out_queued(&conn->out) > RPC_OUT_HIGH_WATER) {
		uv_read_stop((uv_stream_t *)&conn->tcp);
		conn->reading = 0;
	}
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
	m->handler(call, req, svc->ctx);
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
	const uint8_t *p = (const uint8_t *)b->base;
	size_t left = (size_t)nread;
	/* a handler may destroy the server or the connection: re-check */
	while (left > 0 && !conn->closing) {
		struct rpc_frame f;
		size_t used;
		const char *error;
		int r = rpc_frame_decoder_feed(&conn->dec, p, left, &used, &f, &error);
		p += used;
		left -= used;
		if (r < 0) {
			sconn_bad_frame(conn, error);
			break;
		}
		if (r == 0)
			break;
		conn->server->counters.frames_in++;
		if (!conn->hello_done)
			sconn_hello(conn, &f);
		else
			sconn_request(conn, &f);
	}
	free(b->base);
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
	conn->out.req.data = conn;
	uv_tcp_init(s->loop, &conn->tcp);
	conn->tcp.data = conn;
	/* linked first so that a close below unlinks consistently */
	conn->next = s->conns;
	if (s->conns != NULL)
		s->conns->prev = conn;
	s->conns = conn;
	if (uv_accept(listener, (uv_stream_t *)&conn->tcp) < 0) {
		sconn_close(conn);
		return;
	}
	uv_tcp_nodelay(&conn->tcp, 1);
	rpc__peer_name(&conn->tcp, conn->peer, sizeof conn->peer);
	s->counters.connections++;
	if (uv_read_start((uv_stream_t *)&conn->tcp, rpc__alloc_cb, sconn_read_cb) < 0) {
		sconn_close(conn);
		return;
	}
	conn->reading = 1;
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

static void listener_close_cb(uv_handle_t *handle)
{
	server_free(handle->data);
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
	if (s->listener_open)
		uv_close((uv_handle_t *)&s->listener, listener_close_cb);
	else
		server_free(s);
}

void rpc_call_reply(rpc_call *call, int status, const ProtobufCMessage *resp)
{
	struct rpc_sconn *conn = call->conn;
	if (!conn->closing && conn->server != NULL) {
		struct rpc_frame f = {
			.kind = RPC_KIND_RESPONSE,
			.method = call->method,
			.status = (uint32_t)status,
			.request_id = call->request_id,
		};
		sconn_send(conn, &f, status == MAIL_OK ? resp : NULL);
		rpc__count_status(&conn->server->counters, (int)f.status);
	}
	protobuf_c_message_free_unpacked(call->req, NULL);
	free(call);
	sconn_unref(conn);
}

uint64_t rpc_call_deadline(const rpc_call *call)
{
	return call->deadline;
}

const char *rpc_call_peer(const rpc_call *call)
{
	return call->conn->peer;
}
