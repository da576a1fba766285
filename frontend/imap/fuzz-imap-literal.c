/* fuzz-imap-literal.c: libFuzzer target for the parser's literal
 * handling as the engine drives it: literal_events on (over-limit
 * literals accepted or refused, by the input's first byte), LITERAL-
 * (max_nonsync_literal) on odd inputs, 8-bit atoms on some, and the
 * APPEND arguments (date-time) of what comes out. Checks: consumed never
 * exceeds what was fed, an accepted literal comes out whole and
 * NUL-terminated, errors carry text, and a refused command never
 * produces an event again. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "imap-date.h"
#include "imap-parser.h"

static void fuzz_walk(const struct imap_arg_list *list)
{
	for (size_t i = 0; i < list->count; i++) {
		const struct imap_arg *arg = &list->args[i];
		if (arg->type == IMAP_ARG_LIST) {
			fuzz_walk(arg->list);
			continue;
		}
		if (arg->str[arg->len] != '\0')
			__builtin_trap();
		if (arg->type == IMAP_ARG_QUOTED) {
			int64_t ms;
			(void)imap_date_time_parse(arg->str, arg->len, &ms);
		}
	}
}

static void fuzz_feed(imap_parser *p, const uint8_t *data, size_t size, size_t chunk,
		      uint8_t decide)
{
	size_t off = 0;
	unsigned events = 0;
	while (off < size) {
		size_t n = size - off < chunk ? size - off : chunk;
		const uint8_t *d = data + off;
		while (n > 0) {
			struct imap_command *cmd;
			const char *error;
			size_t used;
			int ret = imap_parser_feed(p, d, n, &used, &cmd, &error);
			if (used > n)
				__builtin_trap();
			if (ret == IMAP_PARSE_COMMAND) {
				fuzz_walk(&cmd->args);
			} else if (ret == IMAP_PARSE_ERROR && error == NULL) {
				__builtin_trap();
			} else if (ret == IMAP_PARSE_LITERAL) {
				struct imap_parser_literal lit;
				imap_parser_literal_get(p, &lit);
				if (cmd == NULL || cmd->tag == NULL)
					__builtin_trap();
				/* accept small ones when the bit says so */
				if (((decide >> (events++ % 8)) & 1) != 0 && lit.size <= 4096)
					imap_parser_literal_accept(p);
				else
					imap_parser_literal_refuse(p);
			} else if (ret == IMAP_PARSE_DROPPED && !imap_parser_is_idle(p)) {
				__builtin_trap();
			} else if (ret == IMAP_PARSE_NEED_MORE && used != n) {
				__builtin_trap();
			}
			d += used;
			n -= used;
			off += used;
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	struct imap_parser_limits limits = { .max_line = 256,
					     .max_literal = 32,
					     .max_args = 32,
					     .max_depth = 4,
					     .max_nonsync_literal = (data[1] & 1) ? 16 : 0,
					     .literal_events = 1,
					     .atom_utf8 = (data[1] & 2) != 0 };
	imap_parser *p = imap_parser_create(&limits);
	fuzz_feed(p, data + 2, size - 2, size, data[0]);
	imap_parser_destroy(&p);

	p = imap_parser_create(&limits);
	fuzz_feed(p, data + 2, size - 2, (size_t)(data[1] >> 4) + 1, data[0]);
	imap_parser_destroy(&p);
	return 0;
}
