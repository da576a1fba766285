/* rpc.h: the framed, multiplexed RPC between nodes (public contract).
 *
 * Wire: every frame is a 4-byte big-endian length followed by a 20-byte
 * header (version, kind, method, status, request id, deadline) and a
 * protobuf payload; see rpc-frame.h and docs/architecture.md. A connection
 * opens with a HELLO exchange carrying the service name ("store", "queue")
 * and the protocol major/minor; a peer naming a service the server does not
 * serve (one listener may serve several: rpc_server_add_service) or another
 * major is disconnected with a log line. Many requests share one connection;
 * responses come back in any order, matched by request id.
 *
 * Threading: every function here must be called on the thread that runs the
 * uv loop the object was created with. Callbacks run on that loop too.
 *
 * Errors: statuses are enum mail_error values (lib/mail-error.h).
 */
#ifndef MAIL_RPC_H
#define MAIL_RPC_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>
#include <uv.h>

#include "mail-error.h"
#include "tls.h"

#define RPC_PROTO_MAJOR 1
#define RPC_PROTO_MINOR 0
/* Largest frame either side accepts (checked before any allocation). It
 * bounds the largest message body that can cross the cluster. */
#define RPC_FRAME_MAX (72u * 1024u * 1024u)
/* Deadline used when a caller passes 0. */
#define RPC_DEFAULT_DEADLINE_MS 10000u

/* ---- counters ---------------------------------------------------------- */

/* Monotonic counters of one server or client, for metrics. calls_by_status
 * counts finished calls by status: for a server the replies it sent, for a
 * client the callbacks it made; statuses >= MAIL_ERR_COUNT_ land in the last
 * slot. */
struct rpc_counters {
	uint64_t frames_in;
	uint64_t frames_out;
	uint64_t bad_frames;      /* malformed frames and failed HELLOs */
	uint64_t connections;     /* accepted (server) or established (client) */
	/* server only (rpc_server_limits): */
	uint64_t refused;         /* closed at accept: max_connections reached */
	uint64_t idle_closed;     /* closed after idle_timeout_ms with nothing in flight */
	uint64_t read_pauses;     /* a connection stopped being read (max_inflight
	                           * or max_out_bytes reached) */
	uint64_t out_peak_bytes;  /* gauge: the most reply bytes ever queued on
	                           * one connection (userspace, not the kernel's) */
	uint64_t calls_by_status[MAIL_ERR_COUNT_ + 1];
};

/* ---- server ---------------------------------------------------------- */

typedef struct rpc_server rpc_server;
/* One request being served. Owned by the rpc layer; valid from the handler
 * call until rpc_call_reply(), which must be called exactly once (possibly
 * later, from another callback on the same loop). If the connection dies
 * first, the reply is silently dropped, but it must still be made. */
typedef struct rpc_call rpc_call;

/* req was unpacked with the method's descriptor and stays valid until the
 * reply. ctx is the pointer given to rpc_server_create(). */
typedef void rpc_handler_fn(rpc_call *call, const ProtobufCMessage *req, void *ctx);

/* Roles of peers, named by their certificates (tls_conn_peer_role(): SAN
 * URI mail-role:<role>), as bits of rpc_method.roles. */
enum rpc_role {
	RPC_ROLE_STORE = 1u << 0,     /* "store" */
	RPC_ROLE_QUEUE = 1u << 1,     /* "queue" */
	RPC_ROLE_FRONTEND = 1u << 2,  /* "frontend" */
	RPC_ROLE_ADMIN = 1u << 3,     /* "admin" */
};
/* What rpc_method.roles == 0 means: the cluster's nodes and admin tools,
 * never a frontend (a method frontends may call says so). */
#define RPC_ROLES_NODES (RPC_ROLE_STORE | RPC_ROLE_QUEUE | RPC_ROLE_ADMIN)
/* The role bit of a role name; 0 for "" or an unknown name. */
uint32_t rpc_role_parse(const char *name);

typedef struct rpc_method {
	uint16_t id;                                  /* never reused */
	const char *name;                             /* for logs and metrics */
	const ProtobufCMessageDescriptor *request;    /* how to unpack */
	rpc_handler_fn *handler;
	/* With TLS (rpc_server_set_tls): the roles that may call it; 0 =
	 * RPC_ROLES_NODES. A caller of another role gets MAIL_ERR_PERM and
	 * the handler is not called. Without TLS nothing is checked. */
	uint32_t roles;
} rpc_method;

/* Limits of one server; every connection gets them. Defaults
 * (RPC_SERVER_LIMITS_DEFAULT), each 0 = no limit:
 *   max_connections = 1024: a connection accepted beyond it is closed at
 *       once, before any byte is read, and counted (counters.refused);
 *   idle_timeout_ms = 300000 (5 min): a connection with no call in flight
 *       and no reply waiting to be written that neither received a frame
 *       nor answered a call for this long is closed (counters.idle_closed); clients reconnect on demand;
 *   max_inflight = 256: calls handed to handlers and not yet replied to,
 *       per connection; at the bound the server stops reading that
 *       connection (no frame is decoded, TCP pushes back on the peer) until
 *       a reply brings it below;
 *   max_out_bytes = 8 MiB: replies queued for one connection and not yet
 *       taken by the kernel; above it the server stops reading that
 *       connection until they drain below half of it. Replies to calls
 *       already taken are still queued, so the queue may pass the bound by
 *       the replies of max_inflight calls at most. */
struct rpc_server_limits {
	uint32_t max_connections;
	uint32_t idle_timeout_ms;
	uint32_t max_inflight;
	size_t max_out_bytes;
};
#define RPC_SERVER_MAX_CONNECTIONS_DEFAULT 1024u
#define RPC_SERVER_IDLE_TIMEOUT_MS_DEFAULT (5u * 60u * 1000u)
#define RPC_SERVER_MAX_INFLIGHT_DEFAULT 256u
#define RPC_SERVER_MAX_OUT_BYTES_DEFAULT ((size_t)8u * 1024u * 1024u)
#define RPC_SERVER_LIMITS_DEFAULT ((struct rpc_server_limits){ \
	.max_connections = RPC_SERVER_MAX_CONNECTIONS_DEFAULT, \
	.idle_timeout_ms = RPC_SERVER_IDLE_TIMEOUT_MS_DEFAULT, \
	.max_inflight = RPC_SERVER_MAX_INFLIGHT_DEFAULT, \
	.max_out_bytes = RPC_SERVER_MAX_OUT_BYTES_DEFAULT })

/* methods must outlive the server. The server starts with
 * RPC_SERVER_LIMITS_DEFAULT. Returns 0. */
int rpc_server_create(uv_loop_t *loop, const char *service, const rpc_method *methods,
		      size_t n_methods, void *ctx, rpc_server **server_r);
/* Serve one more service on the same listener: a connection's HELLO names
 * the service it speaks, and its requests go to that service's methods with
 * that service's ctx. Call before or after listening; connections that
 * already said HELLO keep their service. methods must outlive the server,
 * and ctx must stay valid until the server is destroyed (destroy the server
 * before what ctx points at). Returns 0, or -1 if a service of that name is
 * already served. */
int rpc_server_add_service(rpc_server *server, const char *service, const rpc_method *methods,
			   size_t n_methods, void *ctx);
/* Replace the server's limits (copied). Call before rpc_server_listen();
 * connections already open keep reading under the new bounds from their
 * next frame. */
void rpc_server_set_limits(rpc_server *server, const struct rpc_server_limits *limits);
/* Speak TLS on every connection accepted from now on. tls (borrowed: it
 * must outlive the server) must require client certificates
 * (tls_server_require_client_cert): a peer without a valid one fails the
 * handshake and is closed before any frame is read, and each request's
 * method is checked against the role its certificate names. Call before
 * rpc_server_listen(). */
void rpc_server_set_tls(rpc_server *server, tls_server *tls);
/* Listen on host:port, host an IP literal or "localhost" (port 0 = any
 * free port, reported in *port_r).
 * Returns 0, or -1 with *error_r (static text). */
int rpc_server_listen(rpc_server *server, const char *host, int port, int *port_r,
		      const char **error_r);
/* Stop listening, close every connection (pending calls' replies are then
 * dropped), free. NULLs *server. Handles close asynchronously: run the loop
 * once more before uv_loop_close(). */
void rpc_server_destroy(rpc_server **server);
/* A copy of the server's counters. */
void rpc_server_counters(const rpc_server *server, struct rpc_counters *counters_r);

/* Send the reply and release call. resp may be NULL (an empty payload); it
 * is packed before return, so the caller keeps ownership of it. Status
 * MAIL_OK goes with a response message; any other status carries no payload. */
void rpc_call_reply(rpc_call *call, int status, const ProtobufCMessage *resp);
/* The same with the response packed already (data, len: a message of the
 * method's response type, which the caller vouches for; copied before
 * return; not sent unless status is MAIL_OK). For a server that packed
 * its answer anyway (the store's applies and reads): no unpacking and
 * packing again. */
void rpc_call_reply_packed(rpc_call *call, int status, const uint8_t *data, size_t len);
/* Monotonic ms (util_now_mono_ms()) after which the caller stops waiting. */
uint64_t rpc_call_deadline(const rpc_call *call);
/* "ip:port" of the peer, for logs. Valid until the reply. */
const char *rpc_call_peer(const rpc_call *call);

/* ---- client ---------------------------------------------------------- */

typedef struct rpc_client rpc_client;

/* resp is unpacked with the descriptor given to the call, NULL unless
 * status == MAIL_OK; it is freed when the callback returns. */
typedef void rpc_reply_cb(int status, const ProtobufCMessage *resp, void *arg);

/* A client for one peer "host:port" speaking `service`. host is an IP
 * literal (v4 or v6; "localhost" means 127.0.0.1): names are resolved by the
 * caller (the router), not here; with anything else every call fails with
 * MAIL_ERR_UNAVAILABLE and a log line. Connects lazily on the first call;
 * calls made while connecting are queued behind the HELLO. After a failed
 * connect or a refused HELLO, calls fail at once with MAIL_ERR_UNAVAILABLE
 * for a backoff (100 ms, doubling to 2 s) before the next call tries again;
 * a connection that worked and then broke is retried at the next call at
 * once. Returns 0. */
int rpc_client_create(uv_loop_t *loop, const char *service, const char *host, int port,
		      rpc_client **client_r);
/* Speak TLS on the connections made from now on, verifying the server's
 * certificate against the host given to rpc_client_create() (an IP
 * literal: its IP SANs). tls is borrowed and must outlive the client. A
 * failed handshake fails the calls with MAIL_ERR_UNAVAILABLE and backs
 * off like a refused connect. */
void rpc_client_set_tls(rpc_client *client, tls_client *tls);
/* Fail every pending call with MAIL_ERR_UNAVAILABLE (the callbacks run from
 * inside this call, after the client is detached, so they may not use it),
 * close the connection, free. NULLs *client. */
void rpc_client_destroy(rpc_client **client);
/* A copy of the client's counters. */
void rpc_client_counters(const rpc_client *client, struct rpc_counters *counters_r);

/* Append the counters in Prometheus text format (mail_rpc_* series) to out,
 * labelled with `labels` (see lib/metrics.h), role="server"|"client" and
 * service="<service>". */
struct buf;
void rpc_counters_format(struct buf *out, const char *labels, const char *role,
			 const char *service, const struct rpc_counters *c);

/* Send req as `method`. cb is called exactly once, always from the loop and
 * never from inside this function: with MAIL_OK and the response, with the
 * server's status, with MAIL_ERR_UNAVAILABLE when the connection could not be
 * made or broke with the call in flight, or with MAIL_ERR_DEADLINE when
 * deadline_ms (0 = RPC_DEFAULT_DEADLINE_MS) passed. req is packed before
 * return; the caller keeps ownership. */
void rpc_client_call(rpc_client *client, uint16_t method, const ProtobufCMessage *req,
		     const ProtobufCMessageDescriptor *resp_desc, uint32_t deadline_ms,
		     rpc_reply_cb *cb, void *arg);

/* ---- pool ------------------------------------------------------------ */

/* Clients keyed by "host:port" for one service, created on first use. */
typedef struct rpc_pool rpc_pool;
rpc_pool *rpc_pool_create(uv_loop_t *loop, const char *service);
/* Clients the pool makes from now on use TLS (rpc_client_set_tls). */
void rpc_pool_set_tls(rpc_pool *pool, tls_client *tls);
/* The pool owns the result; valid until rpc_pool_destroy(). */
rpc_client *rpc_pool_get(rpc_pool *pool, const char *host, int port);
void rpc_pool_destroy(rpc_pool **pool);

#endif
