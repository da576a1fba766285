/* rpc-private.h: internals shared by rpc-server.c, rpc-client.c and
 * rpc-common.c. Not for users of rpc.h. */
#ifndef MAIL_RPC_PRIVATE_H
#define MAIL_RPC_PRIVATE_H

#include "buf.h"
#include "rpc-frame.h"
#include "rpc.h"

#define RPC_LOG_SVC "rpc"
/* Bytes read from the socket per read callback at most. */
#define RPC_READ_CHUNK (64u * 1024u)

/* The output side of one connection: frames are appended to `pending`
 * while one uv_write of `inflight` is outstanding, then written together.
 * Both buffers live in the connection, which outlives every write_cb
 * (libuv runs write callbacks before the close callback). */
struct rpc__out {
	tls_conn *tls;             /* NULL: plaintext; owned (freed in deinit) */
	buf sealed;                /* TLS records waiting to be written */
	buf pending;
	buf inflight;
	uv_write_t req;
	int writing;
	uint64_t frames_pending;   /* frames in `pending` (for the counters) */
};

void rpc__out_init(struct rpc__out *out);
void rpc__out_deinit(struct rpc__out *out);
/* TLS: feed len bytes read from the socket; plaintext is appended to
 * plain, whatever TLS answers is queued to be written (flush after).
 * Returns 0, or -1 with *error_r (the handshake or a record failed, or the
 * peer closed): close the connection. */
int rpc__out_tls_in(struct rpc__out *out, const void *data, size_t len, buf *plain,
		    const char **error_r);
/* Start a write of everything pending unless one is outstanding. With
 * TLS, pending frames are sealed into records first. cb is the
 * connection's write callback (req.data must point at the connection).
 * Returns 0, or a negative uv error (the caller closes the connection). */
int rpc__out_flush(struct rpc__out *out, uv_stream_t *stream, uv_write_cb cb,
		   struct rpc_counters *counters);
/* From the write callback: the outstanding write finished. */
void rpc__out_done(struct rpc__out *out);
/* Bytes waiting (pending + in flight). */
size_t rpc__out_queued(const struct rpc__out *out);

/* Pack msg (may be NULL: empty payload) as a frame with header fields from
 * f into out. Returns 0, or -1 if it would exceed RPC_FRAME_MAX. */
int rpc__frame_pack(buf *out, const struct rpc_frame *f, const ProtobufCMessage *msg);
/* The same with a payload packed already (data, n). */
int rpc__frame_pack_raw(buf *out, const struct rpc_frame *f, const uint8_t *data, size_t n);

/* Count one finished call under status. */
void rpc__count_status(struct rpc_counters *c, int status);

/* "ip:port" of a socket's peer into out. */
void rpc__peer_name(const uv_tcp_t *tcp, char *out, size_t outsz);

void rpc__alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *b);

#endif
