/* libFuzzer target over the RPC frame decoder (rpc-frame.h).
 *
 * Input layout: byte 0 picks the limit (even: RPC_FRAME_MAX, odd: the
 * pre-HELLO RPC_HELLO_FRAME_MAX); bytes 1..8 are chunk sizes used in turn
 * (0 means 1), so the same frames get fed in many different splits; the
 * rest is the byte stream. Every decoded frame is re-encoded and must give
 * back exactly the bytes it was decoded from; HELLO payloads are parsed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "rpc-frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 9)
		return 0;
	struct rpc_frame_limits lim = {
		.max_frame = (data[0] & 1) ? RPC_HELLO_FRAME_MAX : RPC_FRAME_MAX,
	};
	const uint8_t *chunks = data + 1;
	const uint8_t *p = data + 9;
	size_t left = size - 9;
	const uint8_t *frame_start = p;
	struct rpc_frame_decoder dec;
	buf re;
	rpc_frame_decoder_init(&dec, &lim);
	buf_init(&re);
	for (size_t turn = 0; left > 0; turn++) {
		size_t n = chunks[turn % 8] ? chunks[turn % 8] : 1;
		if (n > left)
			n = left;
		const uint8_t *c = p;
		size_t cl = n;
		p += n;
		left -= n;
		while (cl > 0) {
			struct rpc_frame f;
			size_t used;
			const char *error;
			int r = rpc_frame_decoder_feed(&dec, c, cl, &used, &f, &error);
			if (used > cl)
				abort();
			c += used;
			cl -= used;
			if (r < 0) {
				if (error == NULL)
					abort();
				goto out;
			}
			if (r == 0) {
				if (cl != 0)
					abort();
				break;
			}
			if (f.payload_len + RPC_FRAME_HEADER_LEN > lim.max_frame)
				abort();
			buf_reset(&re);
			if (rpc_frame_encode(&re, &f) < 0)
				abort();
			if (re.len != (size_t)(c - frame_start) ||
			    memcmp(re.data, frame_start, re.len) != 0)
				abort();
			frame_start = c;
			if (f.kind == RPC_KIND_HELLO) {
				struct rpc_hello h;
				if (rpc_hello_parse(f.payload, f.payload_len, &h, &error) == 0 &&
				    strlen(h.service) > RPC_SERVICE_MAX)
					abort();
			}
		}
	}
out:
	rpc_frame_decoder_deinit(&dec);
	buf_deinit(&re);
	return 0;
}
