/* fuzz-pop3-command.c: libFuzzer target for the POP3 command parser.
 *
 * The input is fed twice: whole, then in chunks whose sizes come from the
 * input itself, with tight limits so the limit paths are reached. SASL
 * mode follows the commands as the server switches it (after "AUTH mech"
 * without an initial response, for one line). Every produced command is
 * checked: a 1-4 letter upper-case name, arguments that are non-empty,
 * NUL-terminated and inside the line, nothing longer than its limit. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pop3-parser.h"

static void fuzz_check(const struct pop3_parser_limits *l, const struct pop3_command *cmd,
		       int sasl)
{
	size_t max = sasl || strcmp(cmd->name, "AUTH") == 0 ? l->max_auth_line : l->max_line;
	if (cmd->line[cmd->line_len] != '\0' || cmd->line_len + 1 > max)
		__builtin_trap();
	if (sasl) {
		if (cmd->name[0] != '\0' || cmd->n_args != 0)
			__builtin_trap();
		return;
	}
	size_t k = strlen(cmd->name);
	if (k < 1 || k > 4 || cmd->n_args > l->max_args)
		__builtin_trap();
	for (size_t i = 0; i < k; i++) {
		if (cmd->name[i] < 'A' || cmd->name[i] > 'Z')
			__builtin_trap();
	}
	for (size_t i = 0; i < cmd->n_args; i++) {
		size_t n = strlen(cmd->args[i]);
		if (n == 0 || n > cmd->line_len || memchr(cmd->args[i], ' ', n) != NULL)
			__builtin_trap();
	}
	if (strlen(cmd->rest) > cmd->line_len)
		__builtin_trap();
}

static void fuzz_feed(const struct pop3_parser_limits *l, const uint8_t *data, size_t size,
		      size_t chunk)
{
	pop3_parser *p = pop3_parser_create(l);
	int sasl = 0;
	size_t off = 0;
	while (off < size) {
		size_t n = size - off < chunk ? size - off : chunk;
		const uint8_t *d = data + off;
		while (n > 0) {
			struct pop3_command *cmd;
			const char *error;
			size_t used;
			pop3_parser_set_sasl(p, sasl);
			int ret = pop3_parser_feed(p, d, n, &used, &cmd, &error);
			if (used > n)
				__builtin_trap();
			if (ret == POP3_PARSE_COMMAND) {
				fuzz_check(l, cmd, sasl);
				sasl = !sasl && strcmp(cmd->name, "AUTH") == 0 && cmd->n_args == 1;
			} else if (ret == POP3_PARSE_ERROR) {
				if (error == NULL)
					__builtin_trap();
				sasl = 0;
			} else if (used != n) {
				__builtin_trap();
			}
			d += used;
			n -= used;
			off += used;
		}
	}
	pop3_parser_destroy(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pop3_parser_limits limits = { 32, 96, 3 };
	fuzz_feed(&limits, data, size, size > 0 ? size : 1);
	size_t chunk = size > 0 ? (size_t)(data[0] % 7) + 1 : 1;
	fuzz_feed(&limits, data, size, chunk);
	return 0;
}
