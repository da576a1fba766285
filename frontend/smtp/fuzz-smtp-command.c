/* fuzz-smtp-command.c: the command parser must give the same results fed
 * whole and in chunks, never hold more than max_line, and only answer with
 * its documented error codes. The first input byte picks the chunk size. */
#include "smtp-parser.h"

#include "buf.h"

#include <stdlib.h>
#include <string.h>

static void run(const uint8_t *data, size_t len, size_t chunk, buf *out)
{
	struct smtp_limits lim;
	smtp_limits_init_default(&lim);
	lim.max_line = 128; /* small, so the fuzzer reaches it */
	smtp_command_parser p;
	smtp_command_parser_init(&p, &lim);
	size_t off = 0;
	while (off < len) {
		size_t n = len - off < chunk ? len - off : chunk;
		size_t pos = 0;
		while (pos < n) {
			struct smtp_command cmd;
			size_t used;
			int ret = smtp_command_parser_feed(&p, data + off + pos, n - pos, &used,
							   &cmd);
			if (used > n - pos || p.line.len > lim.max_line)
				abort();
			if (ret == 0 && used != n - pos)
				abort();
			pos += used;
			if (ret < 0) {
				if (cmd.error.code != 500 && cmd.error.code != 501 &&
				    cmd.error.code != 555)
					abort();
				buf_printf(out, "E%d%s|", cmd.error.code, cmd.error.enh);
			} else if (ret > 0) {
				const char *arg = cmd.arg != NULL ? cmd.arg : "(null)";
				buf_printf(out, "C%d:%s:%d:%llu:%d|", (int)cmd.kind, arg,
					   cmd.params.has_size,
					   (unsigned long long)cmd.params.size,
					   (int)cmd.params.body);
			}
		}
		off += n;
	}
	smtp_command_parser_deinit(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	if (len < 1)
		return 0;
	size_t chunk = (size_t)(data[0] % 16) + 1;
	buf a, b;
	buf_init(&a);
	buf_init(&b);
	run(data + 1, len - 1, len, &a);
	run(data + 1, len - 1, chunk, &b);
	if (a.len != b.len || (a.len > 0 && memcmp(a.data, b.data, a.len) != 0))
		abort();
	buf_deinit(&a);
	buf_deinit(&b);
	return 0;
}
