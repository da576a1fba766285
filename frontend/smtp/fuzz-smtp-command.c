/* fuzz-smtp-command.c: the command parser must give the same results fed
 * whole and in chunks, never hold more than max_line, and only answer with
 * its documented error codes. The first input byte picks the chunk size;
 * its top bit turns the DSN parameters (SMTP_PARSER_DSN) off. Parsed DSN
 * values must be within lib/dsn's bounds. */
#include "smtp-parser.h"

#include "buf.h"

#include <stdlib.h>
#include <string.h>

/* What a parsed DSN value may be (dsn-params.h). */
static void check_dsn(const struct smtp_command *cmd, unsigned flags)
{
	const struct dsn_mail_params *m = &cmd->params.dsn;
	const struct dsn_rcpt_params *r = &cmd->rcpt_params.dsn;
	if (!(flags & SMTP_PARSER_DSN) &&
	    (m->ret != DSN_RET_UNSPECIFIED || m->has_envid || r->notify != 0 ||
	     r->orcpt.kind != DSN_ADDR_NONE))
		abort();
	if (cmd->kind != SMTP_CMD_MAIL && (m->ret != DSN_RET_UNSPECIFIED || m->has_envid))
		abort();
	if (cmd->kind != SMTP_CMD_RCPT && (r->notify != 0 || r->orcpt.kind != DSN_ADDR_NONE))
		abort();
	if (strlen(m->envid) > DSN_ENVID_MAX || (m->has_envid && m->envid[0] == '\0'))
		abort();
	if ((r->notify & DSN_NOTIFY_NEVER) && r->notify != DSN_NOTIFY_NEVER)
		abort();
	if (r->notify & ~0x0fu)
		abort();
	if (strlen(r->orcpt.addr) > DSN_ORCPT_MAX || strlen(r->orcpt.type) > DSN_ADDR_TYPE_MAX)
		abort();
	if ((r->orcpt.kind != DSN_ADDR_NONE) != (r->orcpt.addr[0] != '\0'))
		abort();
}

static void run(const uint8_t *data, size_t len, size_t chunk, unsigned flags, buf *out)
{
	struct smtp_limits lim;
	smtp_limits_init_default(&lim);
	lim.max_line = 128; /* small, so the fuzzer reaches it */
	smtp_command_parser p;
	smtp_command_parser_init(&p, &lim);
	smtp_command_parser_set_flags(&p, flags);
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
				check_dsn(&cmd, flags);
				buf_printf(out, "C%d:%s:%d:%llu:%d:%d:%s:%u:%s;%s|", (int)cmd.kind,
					   arg, cmd.params.has_size,
					   (unsigned long long)cmd.params.size,
					   (int)cmd.params.body, (int)cmd.params.dsn.ret,
					   cmd.params.dsn.envid, cmd.rcpt_params.dsn.notify,
					   cmd.rcpt_params.dsn.orcpt.type,
					   cmd.rcpt_params.dsn.orcpt.addr);
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
	unsigned flags = (data[0] & 0x80) ? 0 : SMTP_PARSER_DSN;
	buf a, b;
	buf_init(&a);
	buf_init(&b);
	run(data + 1, len - 1, len, flags, &a);
	run(data + 1, len - 1, chunk, flags, &b);
	if (a.len != b.len || (a.len > 0 && memcmp(a.data, b.data, a.len) != 0))
		abort();
	buf_deinit(&a);
	buf_deinit(&b);
	return 0;
}
