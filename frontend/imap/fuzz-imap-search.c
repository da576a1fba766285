/* fuzz-imap-search.c: libFuzzer target for the search program parser
 * (imap-search.h) of SEARCH, SORT and THREAD, and for the uid map it
 * resolves sequence sets through.
 *
 * Each input is a list of command lines ("a SEARCH ...", "a UID SORT
 * ...", "a THREAD ..."), parsed by the command parser with its
 * authenticated limits; each command's arguments go to imap_search_parse
 * against a view whose uid map comes from the input's first byte (its
 * holes make both shapes), with a tight key limit so the limit path is
 * reached. The tree is walked and checked: operators in range, AND/OR/NOT
 * with the right number of children, uid ranges ascending and disjoint. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "imap-parser.h"
#include "imap-search.h"

static void fuzz_check_key(const struct search_key *k, unsigned depth)
{
	if (depth > IMAP_SEARCH_DEFAULT_MAX_DEPTH + 2 || k->op > SEARCH_YOUNGER)
		__builtin_trap();
	if ((k->op == SEARCH_OR && k->n_children != 2) ||
	    (k->op == SEARCH_NOT && k->n_children != 1) ||
	    (k->op == SEARCH_AND && k->n_children < 2))
		__builtin_trap();
	for (size_t i = 0; i < k->n_ranges; i++) {
		if (k->ranges[i].first == 0 || k->ranges[i].first > k->ranges[i].last ||
		    (i > 0 && k->ranges[i].first <= k->ranges[i - 1].last))
			__builtin_trap();
	}
	if ((k->op == SEARCH_FLAG || k->op == SEARCH_BODY || k->op == SEARCH_TEXT) &&
	    k->str == NULL)
		__builtin_trap();
	if (k->op == SEARCH_HEADER && (k->str == NULL || k->str2 == NULL))
		__builtin_trap();
	for (size_t i = 0; i < k->n_children; i++)
		fuzz_check_key(&k->children[i], depth + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	/* the view: uids 1..200 with every (data[0] % 7 + 1)-th missing */
	imap_uidmap *map = imap_uidmap_create();
	unsigned gap = data[0] % 7u + 1u;
	for (uint32_t u = 1; u <= 200; u++) {
		if (gap == 1 || u % gap != 0)
			(void)imap_uidmap_append(map, u);
	}
	uint32_t del[16];
	for (uint32_t i = 0; i < 16; i++)
		del[i] = 3 + i * 11;
	(void)imap_uidmap_remove(map, del, 16);
	struct search_uid_range saved[] = { { 2, 4 }, { 9, 9 } };
	struct imap_search_view view = { map, saved, 2 };
	struct imap_search_limits limits;
	imap_search_limits_default(&limits);
	limits.max_keys = 64;

	struct imap_parser_limits plimits;
	imap_parser_limits_default(&plimits, 1);
	imap_parser *p = imap_parser_create(&plimits);
	const uint8_t *d = data + 1;
	size_t n = size - 1;
	while (n > 0) {
		struct imap_command *cmd;
		const char *error;
		size_t used;
		int ret = imap_parser_feed(p, d, n, &used, &cmd, &error);
		d += used;
		n -= used;
		if (ret == IMAP_PARSE_NEED_MORE)
			break;
		if (ret != IMAP_PARSE_COMMAND)
			continue;
		const struct imap_arg *args = cmd->args.args;
		size_t count = cmd->args.count;
		const char *name = cmd->name;
		if (strcmp(name, "UID") == 0 && count > 0 && args[0].type == IMAP_ARG_ATOM) {
			name = args[0].str;
			args++;
			count--;
		}
		enum imap_search_kind kind = IMAP_SEARCH_CMD_SEARCH;
		if (strcasecmp(name, "SORT") == 0)
			kind = IMAP_SEARCH_CMD_SORT;
		else if (strcasecmp(name, "THREAD") == 0)
			kind = IMAP_SEARCH_CMD_THREAD;
		struct imap_search_program *prog = NULL;
		ret = imap_search_parse(args, count, kind, &view, &limits, &prog, &error);
		if (ret == IMAP_SEARCH_OK) {
			if (prog == NULL || prog->root == NULL)
				__builtin_trap();
			fuzz_check_key(prog->root, 0);
			imap_search_program_free(&prog);
		} else if (error == NULL || prog != NULL) {
			__builtin_trap();
		}
	}
	imap_parser_destroy(&p);
	imap_uidmap_destroy(&map);
	return 0;
}
