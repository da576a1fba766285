/* rpc-common.c: pieces shared by the RPC server and client: the output
 * queue, packing a protobuf message into a frame, counters. */
#include "rpc-private.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rpc__out_init(struct rpc__out *out)
{
	memset(out, 0, sizeof *out);
	buf_init(&out->pending);
	buf_init(&out->inflight);
	buf_init(&out->sealed);
}

void rpc__out_deinit(struct rpc__out *out)
{
	buf_deinit(&out->pending);
	buf_deinit(&out->inflight);
	buf_deinit(&out->sealed);
	tls_conn_free(&out->tls);
}

int rpc__out_tls_in(struct rpc__out *out, const void *data, size_t len, buf *plain,
		    const char **error_r)
{
	enum tls_feed_result r = tls_conn_feed(out->tls, data, len, plain, &out->sealed);
	if (r == TLS_FEED_OK)
		return 0;
	*error_r = r == TLS_FEED_CLOSED ? "tls closed by peer" : tls_conn_error(out->tls);
	if (**error_r == '\0')
		*error_r = "tls failed";
	return -1;
}

uint32_t rpc_role_parse(const char *name)
{
	static const struct {
		const char *name;
		uint32_t bit;
	} roles[] = {
		{ "store", RPC_ROLE_STORE },
		{ "queue", RPC_ROLE_QUEUE },
		{ "frontend", RPC_ROLE_FRONTEND },
		{ "admin", RPC_ROLE_ADMIN },
	};
	for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
		if (strcmp(name, roles[i].name) == 0)
			return roles[i].bit;
	return 0;
}

int rpc__out_flush(struct rpc__out *out, uv_stream_t *stream, uv_write_cb cb,
		   struct rpc_counters *counters)
{
	if (out->tls != NULL && out->pending.len > 0) {
		/* held inside the engine until the handshake is done */
		if (tls_conn_write(out->tls, out->pending.data, out->pending.len,
				   &out->sealed) < 0)
			return UV_EPROTO;
		buf_reset(&out->pending);
	}
	buf *ready = out->tls != NULL ? &out->sealed : &out->pending;
	if (out->writing || ready->len == 0)
		return 0;
	/* swap: what was ready is now in flight, and the old in-flight
	 * buffer (already written) is reused for the next batch */
	buf tmp = out->inflight;
	out->inflight = *ready;
	*ready = tmp;
	buf_reset(ready);
	if (counters != NULL)
		counters->frames_out += out->frames_pending;
	out->frames_pending = 0;
	uv_buf_t b = uv_buf_init((char *)out->inflight.data, (unsigned int)out->inflight.len);
	int r = uv_write(&out->req, stream, &b, 1, cb);
	if (r < 0)
		return r;
	out->writing = 1;
	return 0;
}

void rpc__out_done(struct rpc__out *out)
{
	out->writing = 0;
	/* do not keep a huge buffer around after one big message */
	if (out->inflight.cap > 4 * RPC_READ_CHUNK)
		buf_deinit(&out->inflight);
	buf_reset(&out->inflight);
}

size_t rpc__out_queued(const struct rpc__out *out)
{
	return out->pending.len + out->sealed.len + (out->writing ? out->inflight.len : 0);
}

int rpc__frame_pack(buf *out, const struct rpc_frame *f, const ProtobufCMessage *msg)
{
	size_t n = msg != NULL ? protobuf_c_message_get_packed_size(msg) : 0;
	if (rpc_frame_encode_header(out, f, n) < 0)
		return -1;
	if (n > 0) {
		buf_reserve(out, n);
		size_t packed = protobuf_c_message_pack(msg, out->data + out->len);
		out->len += packed;
	}
	return 0;
}

int rpc__frame_pack_raw(buf *out, const struct rpc_frame *f, const uint8_t *data, size_t n)
{
	if (rpc_frame_encode_header(out, f, n) < 0)
		return -1;
	buf_append(out, data, n);
	return 0;
}

void rpc__count_status(struct rpc_counters *c, int status)
{
	if (status < 0 || status >= MAIL_ERR_COUNT_)
		status = MAIL_ERR_COUNT_;
	c->calls_by_status[status]++;
}

void rpc__peer_name(const uv_tcp_t *tcp, char *out, size_t outsz)
{
	struct sockaddr_storage ss;
	int len = sizeof ss;
	char ip[64];
	snprintf(out, outsz, "unknown");
	if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) != 0)
		return;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
		uv_ip4_name(sin, ip, sizeof ip);
		snprintf(out, outsz, "%s:%d", ip, ntohs(sin->sin_port));
	} else if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
		uv_ip6_name(sin6, ip, sizeof ip);
		snprintf(out, outsz, "[%s]:%d", ip, ntohs(sin6->sin6_port));
	}
}

void rpc__alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *b)
{
	(void)handle;
	(void)suggested;
	b->base = xmalloc(RPC_READ_CHUNK);
	b->len = RPC_READ_CHUNK;
}
