/* libFuzzer target: the SMTP client's reply parser and EHLO capabilities
 * (smtpc-reply.h).
 *
 * Input: one control byte, then server output.
 *   bits 0-3  chunk size for the second pass (1..16)
 *   bit 4     tight limits (max_line 64, max_lines 3, max_bytes 512)
 *
 * The input is parsed whole and then in chunks; the two passes must give
 * the same replies (code, enhanced code, text, lines) and the same error at
 * the same offset. Checked for each reply: code 200..559, the text within
 * max_bytes and NUL-free, an enhanced code whose class is the code's first
 * digit; the capability reader runs over every reply.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "buf.h"
#include "smtpc-reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                               \
	do {                                                                                   \
		if (!(x))                                                                      \
			__builtin_trap();                                                      \
	} while (0)

/* Every reply appended to log as "code|enh|lines|text\0"; the error offset
 * (or -1) returned. */
static long run(const struct smtpc_reply_limits *lim, const uint8_t *d, size_t n, size_t chunk,
		buf *log)
{
	smtpc_reply_parser p;
	smtpc_reply_parser_init(&p, lim);
	size_t pos = 0;
	long err_at = -1;
	while (pos < n && err_at < 0) {
		size_t end = pos + chunk < n ? pos + chunk : n;
		size_t off = pos;
		while (off < end) {
			size_t used = 0;
			struct smtpc_reply r;
			const char *error = NULL;
			int ret = smtpc_reply_parser_feed(&p, d + off, end - off, &used, &r, &error);
			CHECK(used <= end - off);
			off += used;
			if (ret < 0) {
				CHECK(error != NULL);
				err_at = (long)off;
				break;
			}
			if (ret == 0) {
				CHECK(off == end);
				break;
			}
			CHECK(r.code >= 200 && r.code <= 559);
			CHECK(r.lines >= 1 && r.lines <= p.limits.max_lines);
			CHECK(r.text_len <= p.limits.max_bytes);
			CHECK(strlen(r.text) == r.text_len);
			CHECK(r.enh[0] == '\0' || r.enh[0] == (char)('0' + r.code / 100));
			struct smtpc_caps caps;
			smtpc_caps_parse(&r, &caps);
			CHECK(r.code == 250 || caps.flags == 0);
			buf_printf(log, "%d|%s|%zu|", r.code, r.enh, r.lines);
			buf_append(log, r.text, r.text_len + 1);
		}
		pos = end;
	}
	smtpc_reply_parser_deinit(&p);
	return err_at;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t ctl = data[0];
	data++;
	size--;
	struct smtpc_reply_limits lim;
	smtpc_reply_limits_init_default(&lim);
	if (ctl & 0x10) {
		lim.max_line = 64;
		lim.max_lines = 3;
		lim.max_bytes = 512;
	}
	buf whole, chunked;
	buf_init(&whole);
	buf_init(&chunked);
	long e1 = run(&lim, data, size, size > 0 ? size : 1, &whole);
	long e2 = run(&lim, data, size, (size_t)(ctl & 0x0f) + 1, &chunked);
	CHECK(e1 == e2);
	CHECK(whole.len == chunked.len);
	CHECK(whole.len == 0 || memcmp(whole.data, chunked.data, whole.len) == 0);
	buf_deinit(&whole);
	buf_deinit(&chunked);
	return 0;
}
