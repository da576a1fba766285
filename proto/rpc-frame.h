/* rpc-frame.h: the RPC frame codec (pure: no libuv, no sockets, no protobuf).
 *
 * ---- Frame format (version 1) -------------------------------------------
 *
 * Every frame on an RPC connection is, all integers big-endian:
 *
 *   offset size field
 *   0      4    length       bytes that follow this field (header + payload),
 *                            20 <= length <= the receiver's max_frame
 *   4      1    version      frame format version, RPC_FRAME_VERSION (1)
 *   5      1    kind         1 HELLO, 2 REQUEST, 3 RESPONSE
 *   6      2    method       method id (REQUEST, echoed in RESPONSE; 0 in HELLO)
 *   8      4    status       enum mail_error (RESPONSE; 0 elsewhere)
 *   12     8    request_id   chosen by the client, unique per connection,
 *                            echoed in the RESPONSE (0 in HELLO)
 *   20     4    deadline_ms  REQUEST: how long the caller waits, in ms
 *                            (0 in RESPONSE and HELLO)
 *   24     ...  payload      length - 20 bytes: a protobuf message
 *                            (REQUEST, RESPONSE with status 0), or empty
 *                            (RESPONSE with an error status), or the HELLO
 *                            payload below
 *
 * The receiver checks length against its limit as soon as the 4 length
 * bytes are in, before it allocates anything, and rejects a frame whose
 * version or kind it does not know as soon as that byte arrives. A rejected
 * frame is fatal for the connection (the stream cannot be resynchronised):
 * the receiver logs `event=rpc_bad_frame` and closes it.
 *
 * ---- HELLO ---------------------------------------------------------------
 *
 * The first frame each way is a HELLO; the client sends first, without
 * waiting (it may pipeline requests right behind it). Its payload is:
 *
 *   offset size    field
 *   0      1       n       length of the service name, 1..RPC_SERVICE_MAX
 *   1      n       service ASCII service name ("store", "queue")
 *   1+n    2       major   protocol major (RPC_PROTO_MAJOR in rpc.h)
 *   3+n    2       minor   protocol minor
 *   5+n    ...     (ignored: room for fields added by later minors)
 *
 * The server answers with its own HELLO. Either side closes the connection
 * (with a log line) when the service name or the major differ; minors may
 * differ (a newer minor only adds methods and fields). Until a side has
 * received the peer's HELLO it decodes with the tighter limit
 * RPC_HELLO_FRAME_MAX, then raises it to RPC_FRAME_MAX.
 *
 * Field numbers and method ids are never reused; the frame version changes
 * only if this layout changes.
 */
#ifndef MAIL_RPC_FRAME_H
#define MAIL_RPC_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define RPC_FRAME_VERSION 1
/* Size of the length prefix and of the fixed header after it. */
#define RPC_FRAME_PREFIX_LEN 4u
#define RPC_FRAME_HEADER_LEN 20u
/* The largest frame accepted (length field value) before the peer's HELLO. */
#define RPC_HELLO_FRAME_MAX 4096u
/* Longest service name in a HELLO. */
#define RPC_SERVICE_MAX 32u

#ifndef RPC_FRAME_MAX
#define RPC_FRAME_MAX (72u * 1024u * 1024u) /* same value as in rpc.h */
#endif

enum rpc_frame_kind {
	RPC_KIND_HELLO = 1,
	RPC_KIND_REQUEST = 2,
	RPC_KIND_RESPONSE = 3,
};

/* One decoded frame (or one to encode). */
struct rpc_frame {
	uint8_t version;
	uint8_t kind;          /* enum rpc_frame_kind */
	uint16_t method;
	uint32_t status;       /* enum mail_error */
	uint64_t request_id;
	uint32_t deadline_ms;
	/* Decoded: points into the data given to rpc_frame_decoder_feed() or
	 * into the decoder; valid until the next feed or deinit, and no longer
	 * than that data. Encoding: the bytes to append. */
	const uint8_t *payload;
	size_t payload_len;
};

/* Limits of a decoder. Defaults (RPC_FRAME_LIMITS_DEFAULT):
 *   max_frame = RPC_FRAME_MAX: the largest accepted length field, i.e.
 *   header + payload. Must be >= RPC_FRAME_HEADER_LEN. May be changed
 *   between frames (after feed returned 1), e.g. raised after the HELLO. */
struct rpc_frame_limits {
	uint32_t max_frame;
};
#define RPC_FRAME_LIMITS_DEFAULT ((struct rpc_frame_limits){ .max_frame = RPC_FRAME_MAX })

enum rpc_frame_decoder_state {
	RPC_FRAME_S_LENGTH,   /* collecting the 4 length bytes */
	RPC_FRAME_S_HEADER,   /* collecting the 20 header bytes */
	RPC_FRAME_S_PAYLOAD,  /* collecting length - 20 payload bytes */
	RPC_FRAME_S_ERROR,    /* a malformed frame was seen: every feed fails */
};

/* Embedded decoder: rpc_frame_decoder_init / _deinit. Fields are private. */
struct rpc_frame_decoder {
	enum rpc_frame_decoder_state state;
	struct rpc_frame_limits limits;
	uint8_t head[RPC_FRAME_PREFIX_LEN + RPC_FRAME_HEADER_LEN];
	size_t head_have;
	uint32_t length;        /* the length field of the current frame */
	buf payload;            /* payload bytes when they span feeds */
	int delivered;          /* a frame was returned: reset at the next feed */
	const char *error;      /* static text once in RPC_FRAME_S_ERROR */
};

/* limits may be NULL for the defaults. */
void rpc_frame_decoder_init(struct rpc_frame_decoder *dec, const struct rpc_frame_limits *limits);
void rpc_frame_decoder_deinit(struct rpc_frame_decoder *dec);

/* Feed len bytes. Consumes bytes until one frame is complete or data runs
 * out, and sets *consumed_r to the bytes used. Returns
 *    1  a frame is in *frame_r (see the payload lifetime above); the bytes
 *       after *consumed_r are not consumed yet: feed them next;
 *    0  all of data consumed, need more;
 *   -1  malformed input: *error_r is static text ("bad version", ...), and
 *       the decoder stays failed (close the connection).
 * Memory used is bounded by the bytes actually received, never by the
 * length the peer declared. */
int rpc_frame_decoder_feed(struct rpc_frame_decoder *dec, const uint8_t *data, size_t len,
			   size_t *consumed_r, struct rpc_frame *frame_r, const char **error_r);

/* Append frame (header fields + payload; frame->version is ignored and
 * RPC_FRAME_VERSION written) to out. Returns 0, or -1 when the frame would
 * exceed RPC_FRAME_MAX (nothing appended). */
int rpc_frame_encode(buf *out, const struct rpc_frame *frame);
/* Append only the 24 bytes of prefix and header for a frame whose payload
 * of payload_len bytes the caller appends right after (e.g. packing a
 * protobuf message in place). Returns 0, or -1 if too big (nothing appended). */
int rpc_frame_encode_header(buf *out, const struct rpc_frame *frame, size_t payload_len);

/* ---- HELLO payload ---- */

struct rpc_hello {
	char service[RPC_SERVICE_MAX + 1];  /* NUL-terminated */
	uint16_t major;
	uint16_t minor;
};

/* Append a whole HELLO frame. service must be 1..RPC_SERVICE_MAX bytes.
 * Returns 0, or -1 if the name is empty or too long (nothing appended). */
int rpc_hello_encode(buf *out, const char *service, uint16_t major, uint16_t minor);
/* Parse a HELLO frame's payload. Returns 0 with *hello_r filled, or -1 with
 * *error_r (static text) when it is too short, the name is empty, too long
 * or not printable ASCII. */
int rpc_hello_parse(const uint8_t *payload, size_t len, struct rpc_hello *hello_r,
		    const char **error_r);

#endif
