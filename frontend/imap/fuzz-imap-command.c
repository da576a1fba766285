/* fuzz-imap-command.c: libFuzzer target for the IMAP command parser.
 *
 * The input is fed twice: whole, then in chunks whose sizes come from the
 * input itself, with tight limits so the limit paths are reached. Every
 * produced command is walked (args, sequence sets, FETCH attributes). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "imap-parser.h"

static void fuzz_walk(const struct imap_arg_list *list, unsigned depth)
{
	for (size_t i = 0; i < list->count; i++) {
		const struct imap_arg *arg = &list->args[i];
		if (arg->type == IMAP_ARG_LIST) {
			fuzz_walk(arg->list, depth + 1);
			continue;
		}
		if (arg->str[arg->len] != '\0')
			__builtin_trap();
		struct imap_seqset set;
		const char *error;
		if (imap_seqset_parse(arg->str, 64, &set, &error) == 0) {
			imap_seqset_resolve(&set, 10);
			(void)imap_seqset_contains(&set, 5);
			if (imap_seqset_max(&set) > 10 && set.count > 0 &&
			    set.ranges[set.count - 1].hi != imap_seqset_max(&set))
				__builtin_trap();
			imap_seqset_deinit(&set);
		}
		struct imap_fetch_attrs attrs;
		(void)imap_fetch_attrs_parse(arg, &attrs, &error);
		imap_fetch_attrs_deinit(&attrs);
	}
}

static void fuzz_feed(imap_parser *p, const uint8_t *data, size_t size, size_t chunk)
{
	size_t off = 0;
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
				fuzz_walk(&cmd->args, 0);
				if (cmd->args.count > 1) {
					struct imap_fetch_attrs attrs;
					(void)imap_fetch_attrs_parse(&cmd->args.args[1], &attrs,
								     &error);
					imap_fetch_attrs_deinit(&attrs);
				}
			} else if (ret == IMAP_PARSE_ERROR && error == NULL) {
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
	struct imap_parser_limits limits = { .max_line = 256, .max_literal = 128, .max_args = 32,
					     .max_depth = 4 };
	imap_parser *p = imap_parser_create(&limits);
	fuzz_feed(p, data, size, size > 0 ? size : 1);
	imap_parser_destroy(&p);

	p = imap_parser_create(&limits);
	size_t chunk = size > 0 ? (size_t)(data[0] % 7) + 1 : 1;
	fuzz_feed(p, data, size, chunk);
	imap_parser_destroy(&p);
	return 0;
}
