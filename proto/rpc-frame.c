/* rpc-frame.c: the frame codec; the format is documented in rpc-frame.h. */
#include "rpc-frame.h"

#include <string.h>

/* Keep at most this much payload capacity between frames, so one large
 * message does not pin its buffer for the life of the connection. */
#define RPC_FRAME_KEEP_CAP (64u * 1024u)

static uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get_be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint64_t get_be64(const uint8_t *p)
{
	return ((uint64_t)get_be32(p) << 32) | get_be32(p + 4);
}

static void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}

void rpc_frame_decoder_init(struct rpc_frame_decoder *dec, const struct rpc_frame_limits *limits)
{
	memset(dec, 0, sizeof *dec);
	dec->state = RPC_FRAME_S_LENGTH;
	dec->limits = limits != NULL ? *limits : RPC_FRAME_LIMITS_DEFAULT;
	buf_init(&dec->payload);
}

void rpc_frame_decoder_deinit(struct rpc_frame_decoder *dec)
{
	buf_deinit(&dec->payload);
}

static int decoder_fail(struct rpc_frame_decoder *dec, const char *error, const char **error_r)
{
	dec->state = RPC_FRAME_S_ERROR;
	dec->error = error;
	*error_r = error;
	return -1;
}

/* Validate the head byte that was just stored at index i. The order of the
 * checks is the order of the bytes, so a bad frame is refused as early as
 * its first wrong byte. */
static const char *head_check(const struct rpc_frame_decoder *dec, size_t i)
{
	if (i == RPC_FRAME_PREFIX_LEN - 1) {
		uint32_t length = get_be32(dec->head);
		if (length < RPC_FRAME_HEADER_LEN)
			return "frame length below header size";
		if (length > dec->limits.max_frame)
			return "frame length over limit";
	} else if (i == RPC_FRAME_PREFIX_LEN) {
		if (dec->head[i] != RPC_FRAME_VERSION)
			return "bad version";
	} else if (i == RPC_FRAME_PREFIX_LEN + 1) {
		uint8_t kind = dec->head[i];
		if (kind < RPC_KIND_HELLO || kind > RPC_KIND_RESPONSE)
			return "bad kind";
	}
	return NULL;
}

static void frame_from_head(const struct rpc_frame_decoder *dec, struct rpc_frame *f)
{
	const uint8_t *h = dec->head + RPC_FRAME_PREFIX_LEN;
	f->version = h[0];
	f->kind = h[1];
	f->method = get_be16(h + 2);
	f->status = get_be32(h + 4);
	f->request_id = get_be64(h + 8);
	f->deadline_ms = get_be32(h + 16);
	f->payload = NULL;
	f->payload_len = 0;
}

int rpc_frame_decoder_feed(struct rpc_frame_decoder *dec, const uint8_t *data, size_t len,
			   size_t *consumed_r, struct rpc_frame *frame_r, const char **error_r)
{
	size_t pos = 0;

	*consumed_r = 0;
	if (dec->state == RPC_FRAME_S_ERROR) {
		*error_r = dec->error;
		return -1;
	}
	if (dec->delivered) {
		/* the previous frame's payload may live here: drop it now */
		dec->delivered = 0;
		if (dec->payload.cap > RPC_FRAME_KEEP_CAP)
			buf_deinit(&dec->payload);
		buf_reset(&dec->payload);
	}
	while (dec->state != RPC_FRAME_S_PAYLOAD) {
		if (pos == len)
			return 0;
		size_t i = dec->head_have;
		dec->head[i] = data[pos++];
		dec->head_have++;
		*consumed_r = pos;
		const char *error = head_check(dec, i);
		if (error != NULL)
			return decoder_fail(dec, error, error_r);
		if (dec->head_have == RPC_FRAME_PREFIX_LEN) {
			dec->length = get_be32(dec->head);
			dec->state = RPC_FRAME_S_HEADER;
		} else if (dec->head_have == sizeof dec->head) {
			dec->state = RPC_FRAME_S_PAYLOAD;
		}
	}

	size_t want = dec->length - RPC_FRAME_HEADER_LEN;
	size_t have = dec->payload.len;
	size_t avail = len - pos;
	frame_from_head(dec, frame_r);
	if (have == 0 && avail >= want) {
		/* the whole payload is in this chunk: hand it out without a copy */
		frame_r->payload = data + pos;
		pos += want;
	} else {
		size_t take = want - have < avail ? want - have : avail;
		/* grows with what arrived, never to the declared size up front */
		buf_append(&dec->payload, data + pos, take);
		pos += take;
		if (dec->payload.len < want) {
			*consumed_r = pos;
			return 0;
		}
		frame_r->payload = dec->payload.data;
	}
	frame_r->payload_len = want;
	*consumed_r = pos;
	dec->state = RPC_FRAME_S_LENGTH;
	dec->head_have = 0;
	dec->delivered = 1;
	return 1;
}

int rpc_frame_encode_header(buf *out, const struct rpc_frame *frame, size_t payload_len)
{
	if (payload_len > RPC_FRAME_MAX - RPC_FRAME_HEADER_LEN)
		return -1;
	uint8_t h[RPC_FRAME_PREFIX_LEN + RPC_FRAME_HEADER_LEN];
	put_be32(h, (uint32_t)(RPC_FRAME_HEADER_LEN + payload_len));
	h[4] = RPC_FRAME_VERSION;
	h[5] = frame->kind;
	put_be16(h + 6, frame->method);
	put_be32(h + 8, frame->status);
	put_be64(h + 12, frame->request_id);
	put_be32(h + 20, frame->deadline_ms);
	buf_append(out, h, sizeof h);
	return 0;
}

int rpc_frame_encode(buf *out, const struct rpc_frame *frame)
{
	if (rpc_frame_encode_header(out, frame, frame->payload_len) < 0)
		return -1;
	buf_append(out, frame->payload, frame->payload_len);
	return 0;
}

int rpc_hello_encode(buf *out, const char *service, uint16_t major, uint16_t minor)
{
	size_t n = strlen(service);
	if (n == 0 || n > RPC_SERVICE_MAX)
		return -1;
	uint8_t p[1 + RPC_SERVICE_MAX + 4];
	p[0] = (uint8_t)n;
	memcpy(p + 1, service, n);
	put_be16(p + 1 + n, major);
	put_be16(p + 3 + n, minor);
	struct rpc_frame f = {
		.kind = RPC_KIND_HELLO,
		.payload = p,
		.payload_len = n + 5,
	};
	return rpc_frame_encode(out, &f);
}

int rpc_hello_parse(const uint8_t *payload, size_t len, struct rpc_hello *hello_r,
		    const char **error_r)
{
	if (len < 1) {
		*error_r = "hello too short";
		return -1;
	}
	size_t n = payload[0];
	if (n == 0 || n > RPC_SERVICE_MAX) {
		*error_r = "hello service name length out of range";
		return -1;
	}
	if (len < 1 + n + 4) {
		*error_r = "hello too short";
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (payload[1 + i] <= 0x20 || payload[1 + i] >= 0x7f) {
			*error_r = "hello service name not printable";
			return -1;
		}
	}
	memcpy(hello_r->service, payload + 1, n);
	hello_r->service[n] = '\0';
	hello_r->major = get_be16(payload + 1 + n);
	hello_r->minor = get_be16(payload + 3 + n);
	return 0;
}
