/* imap-search.h: the search programs of SEARCH, SORT and THREAD (RFC 3501
 * 6.4.4, RFC 9051 6.4.4, RFC 4731 ESEARCH, RFC 5182 SEARCHRES, RFC 5256
 * SORT/THREAD, RFC 7162 MODSEQ, RFC 5032 OLDER/YOUNGER) parsed from the
 * command's arguments into a struct search_key tree (lib/search-key.h).
 * Library `mailimap`: pure, no I/O, no globals.
 *
 * Network input: every key is checked before it is kept; the tree is
 * bounded by struct imap_search_limits (nesting of NOT/OR/parentheses,
 * number of keys); the command parser's own limits (line, arguments,
 * list depth) come first. Session state is resolved here, so the program
 * means the same on any store node: sequence sets become uid ranges
 * through the session's uid map, $ becomes the saved result, RECENT and
 * NEW match nothing (no \Recent), OLD everything.
 */
#ifndef MAIL_IMAP_SEARCH_H
#define MAIL_IMAP_SEARCH_H

#include <stddef.h>
#include <stdint.h>

#include "imap-parser.h"
#include "imap-uidmap.h"
#include "search-key.h"

/* Limits (rows: name, default, why):
 *   max_depth  32    NOT/OR/"(" nesting; deeper is BAD "Search too complex"
 *                    (clients nest a handful; the evaluator recurses)
 *   max_keys   1024  keys in one program (Thunderbird's filters use tens)
 *   max_sort   16    SORT criteria (there are 9 keys, each may be REVERSE) */
#define IMAP_SEARCH_DEFAULT_MAX_DEPTH 32u
#define IMAP_SEARCH_DEFAULT_MAX_KEYS 1024u
#define IMAP_SEARCH_MAX_SORT 16u

struct imap_search_limits {
	unsigned max_depth;
	size_t max_keys;
};
void imap_search_limits_default(struct imap_search_limits *limits);

/* ESEARCH RETURN options (RFC 4731, RFC 5182). */
#define IMAP_SEARCH_RET_MIN 0x01u
#define IMAP_SEARCH_RET_MAX 0x02u
#define IMAP_SEARCH_RET_ALL 0x04u
#define IMAP_SEARCH_RET_COUNT 0x08u
#define IMAP_SEARCH_RET_SAVE 0x10u

/* Which command's arguments. */
enum imap_search_kind {
	IMAP_SEARCH_CMD_SEARCH = 0, /* [RETURN (...)] [CHARSET x] keys */
	IMAP_SEARCH_CMD_SORT,       /* (criteria) charset keys */
	IMAP_SEARCH_CMD_THREAD,     /* algorithm charset keys */
};

/* What the session knows that a program refers to. */
struct imap_search_view {
	const imap_uidmap *map;                /* NULL: no message */
	const struct search_uid_range *saved;  /* $ (SEARCHRES), ascending */
	size_t n_saved;
};

struct imap_search_program {
	const struct search_key *root;
	int esearch;       /* RETURN (...) was given */
	unsigned ret;      /* IMAP_SEARCH_RET_*; RETURN () means ALL */
	int uses_modseq;   /* a MODSEQ key: results carry (MODSEQ n) */
	struct search_sort sort[IMAP_SEARCH_MAX_SORT]; /* SORT */
	size_t n_sort;
	enum search_thread_alg alg;                    /* THREAD */
	/* the memory of the tree (internal) */
	void **allocs;
	size_t n_allocs, cap_allocs;
};

#define IMAP_SEARCH_OK 0
#define IMAP_SEARCH_BAD (-1)        /* syntax or limits: "tag BAD error" */
#define IMAP_SEARCH_BADCHARSET (-2) /* "tag NO [BADCHARSET (US-ASCII UTF-8)]" */

/* Parse args[0..n) of a command of kind against view. Returns
 * IMAP_SEARCH_OK with *prog_r (free with imap_search_program_free), or a
 * failure above with *error_r (static, client-safe) and nothing to free.
 * uid_cmd: a UID command (sequence sets in keys are still sequence
 * numbers; UID keys are uids either way). */
int imap_search_parse(const struct imap_arg *args, size_t n, enum imap_search_kind kind,
		      const struct imap_search_view *view, const struct imap_search_limits *limits,
		      struct imap_search_program **prog_r, const char **error_r);
/* NULLs *prog. */
void imap_search_program_free(struct imap_search_program **prog);

/* "1-Feb-1994" (day 1 or 2 digits, month in any case, 4-digit year) ->
 * days since 1970-01-01. Returns 0, or -1 when invalid. */
int imap_search_date_parse(const char *s, int64_t *days_r);

#endif
