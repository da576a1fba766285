/* mailsearch.c: search programs (struct search_key trees) evaluated against
 * one message at a time.
 *
 * A program is copied into a flat array of nodes once (needles folded,
 * KMP tables built, ranges copied), then each message is evaluated in
 * three phases with three-valued logic (no, yes, unknown):
 *   1. metadata keys everywhere; header and body keys are "unknown";
 *   2. where the root is still unknown: header keys, AND/OR cutting short
 *      (a node known after phase 1 is never entered again);
 *   3. where the root is still unknown: one pass over the body feeding
 *      every BODY/TEXT needle of the subtrees still unknown, then a last
 *      evaluation with everything known.
 * A node's value is stored in the node, so no key is evaluated twice for
 * a message. An AND or OR is unknown after a phase only if none of its
 * children decided it, so every child of an unknown node was evaluated in
 * that phase: the next phase never reads a stale value.
 * Recursion follows the tree, whose depth is checked at creation
 * (MAILSEARCH_MAX_DEPTH).
 */
#include "mailsearch-private.h"

#include "xalloc.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum node_kind {
	KIND_META,   /* decided by metadata */
	KIND_HEADER, /* HEADER, SENT* */
	KIND_BODY,   /* BODY */
	KIND_TEXT,   /* TEXT: header, then body */
	KIND_INNER,  /* AND, OR, NOT */
};

enum { VAL_NO = 0, VAL_YES = 1, VAL_UNKNOWN = 2, VAL_ERROR = 3 };

struct node {
	enum search_op op;
	enum node_kind kind;
	uint32_t first_kid; /* index into prog->kids */
	uint32_t n_kids;
	char *str; /* FLAG: the flag; HEADER: the field name */
	int system_flag;
	struct mailsearch__needle needle; /* HEADER, BODY, TEXT */
	uint64_t num;
	struct search_uid_range *ranges;
	size_t n_ranges;
	/* per message */
	uint8_t val;
};

struct mailsearch_prog {
	struct node *nodes; /* nodes[0] is the root */
	uint32_t n_nodes;
	uint32_t *kids;
	uint32_t n_kids;
	unsigned needs;
	/* per message: the parsed Date: (0 not yet, 1 ok, 2 none) */
	int sent_state;
	int64_t sent_day;
	/* scratch for the body pass, n_nodes entries each */
	const struct mailsearch__needle **scan_needles;
	uint32_t *scan_nodes;
	size_t *scan_state;
	uint8_t *scan_found;
};

/* ---- creation --------------------------------------------------------------- */

/* Count the nodes under key, checking depth and shape. */
static int prog_check(const struct search_key *key, unsigned depth, uint32_t *count,
		      const char **error_r)
{
	if (depth > MAILSEARCH_MAX_DEPTH) {
		*error_r = "search program nested too deeply";
		return -1;
	}
	if (++*count > MAILSEARCH_MAX_NODES) {
		*error_r = "search program too large";
		return -1;
	}
	switch (key->op) {
	case SEARCH_AND:
		if (key->n_children < 1 || key->children == NULL) {
			*error_r = "AND without children";
			return -1;
		}
		break;
	case SEARCH_OR:
		if (key->n_children != 2 || key->children == NULL) {
			*error_r = "OR needs two children";
			return -1;
		}
		break;
	case SEARCH_NOT:
		if (key->n_children != 1 || key->children == NULL) {
			*error_r = "NOT needs one child";
			return -1;
		}
		break;
	case SEARCH_UID:
		if (key->n_ranges > 0 && key->ranges == NULL) {
			*error_r = "UID without ranges";
			return -1;
		}
		for (size_t i = 0; i < key->n_ranges; i++) {
			if (key->ranges[i].first > key->ranges[i].last ||
			    (i > 0 && key->ranges[i].first <= key->ranges[i - 1].last)) {
				*error_r = "UID ranges not ascending and disjoint";
				return -1;
			}
		}
		return 0;
	case SEARCH_FLAG:
	case SEARCH_BODY:
	case SEARCH_TEXT:
		if (key->str == NULL) {
			*error_r = "search key without its string";
			return -1;
		}
		return 0;
	case SEARCH_HEADER:
		if (key->str == NULL || key->str2 == NULL) {
			*error_r = "HEADER without field name or value";
			return -1;
		}
		return 0;
	case SEARCH_ALL: case SEARCH_NONE: case SEARCH_BEFORE: case SEARCH_ON:
	case SEARCH_SINCE: case SEARCH_SENTBEFORE: case SEARCH_SENTON:
	case SEARCH_SENTSINCE: case SEARCH_LARGER: case SEARCH_SMALLER:
	case SEARCH_MODSEQ: case SEARCH_OLDER: case SEARCH_YOUNGER:
		return 0;
	default:
		*error_r = "unknown search key";
		return -1;
	}
	for (size_t i = 0; i < key->n_children; i++)
		if (prog_check(&key->children[i], depth + 1, count, error_r) < 0)
			return -1;
	return 0;
}

/* Copy key into prog->nodes[idx]; children take the next free slots. */
static void prog_build(mailsearch_prog *prog, const struct search_key *key, uint32_t idx,
		       uint32_t *next_node)
{
	struct node *nd = &prog->nodes[idx];
	memset(nd, 0, sizeof(*nd));
	nd->op = key->op;
	nd->num = key->num;
	switch (key->op) {
	case SEARCH_AND:
	case SEARCH_OR:
	case SEARCH_NOT: {
		nd->kind = KIND_INNER;
		nd->first_kid = prog->n_kids;
		nd->n_kids = (uint32_t)key->n_children;
		uint32_t first = prog->n_kids;
		prog->n_kids += nd->n_kids;
		for (uint32_t i = 0; i < nd->n_kids; i++)
			prog->kids[first + i] = (*next_node)++;
		for (uint32_t i = 0; i < nd->n_kids; i++)
			prog_build(prog, &key->children[i], prog->kids[first + i], next_node);
		return;
	}
	case SEARCH_UID:
		nd->kind = KIND_META;
		nd->n_ranges = key->n_ranges;
		if (key->n_ranges > 0) {
			nd->ranges = xmalloc(key->n_ranges * sizeof(*nd->ranges));
			memcpy(nd->ranges, key->ranges, key->n_ranges * sizeof(*nd->ranges));
		}
		return;
	case SEARCH_FLAG:
		nd->kind = KIND_META;
		nd->str = xstrdup(key->str);
		nd->system_flag = key->str[0] == '\\';
		return;
	case SEARCH_HEADER:
		nd->kind = KIND_HEADER;
		nd->str = xstrdup(key->str);
		mailsearch__needle_init(&nd->needle, key->str2, strlen(key->str2));
		prog->needs |= MAILSEARCH_NEEDS_HEADERS;
		return;
	case SEARCH_BODY:
	case SEARCH_TEXT:
		if (key->str[0] == '\0') {
			/* "" is in every text: no need to read anything */
			nd->op = SEARCH_ALL;
			nd->kind = KIND_META;
			return;
		}
		nd->kind = key->op == SEARCH_BODY ? KIND_BODY : KIND_TEXT;
		mailsearch__needle_init(&nd->needle, key->str, strlen(key->str));
		prog->needs |= MAILSEARCH_NEEDS_BODY;
		if (key->op == SEARCH_TEXT)
			prog->needs |= MAILSEARCH_NEEDS_HEADERS;
		return;
	case SEARCH_SENTBEFORE:
	case SEARCH_SENTON:
	case SEARCH_SENTSINCE:
		nd->kind = KIND_HEADER;
		prog->needs |= MAILSEARCH_NEEDS_HEADERS;
		return;
	default:
		nd->kind = KIND_META;
		return;
	}
}

int mailsearch_prog_create(const struct search_key *key, mailsearch_prog **prog_r,
			   const char **error_r)
{
	uint32_t count = 0;
	*prog_r = NULL;
	if (key == NULL) {
		*error_r = "no search program";
		return -1;
	}
	if (prog_check(key, 1, &count, error_r) < 0)
		return -1;
	mailsearch_prog *prog = xcalloc(1, sizeof(*prog));
	prog->n_nodes = count;
	prog->nodes = xcalloc(count, sizeof(*prog->nodes));
	prog->kids = xcalloc(count, sizeof(*prog->kids)); /* at most count - 1 */
	prog->scan_needles = xcalloc(count, sizeof(*prog->scan_needles));
	prog->scan_nodes = xcalloc(count, sizeof(*prog->scan_nodes));
	prog->scan_state = xcalloc(count, sizeof(*prog->scan_state));
	prog->scan_found = xcalloc(count, sizeof(*prog->scan_found));
	uint32_t next = 1;
	prog_build(prog, key, 0, &next);
	*prog_r = prog;
	return 0;
}

void mailsearch_prog_destroy(mailsearch_prog **progp)
{
	mailsearch_prog *prog = *progp;
	if (prog == NULL)
		return;
	for (uint32_t i = 0; i < prog->n_nodes; i++) {
		free(prog->nodes[i].str);
		free(prog->nodes[i].ranges);
		mailsearch__needle_deinit(&prog->nodes[i].needle);
	}
	free(prog->nodes);
	free(prog->kids);
	free(prog->scan_needles);
	free(prog->scan_nodes);
	free(prog->scan_state);
	free(prog->scan_found);
	free(prog);
	*progp = NULL;
}

unsigned mailsearch_prog_needs(const mailsearch_prog *prog)
{
	return prog->needs;
}

/* ---- metadata keys ---------------------------------------------------------- */

static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t num_as_i64(uint64_t v)
{
	return v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
}

static int uid_in_ranges(const struct node *nd, uint32_t uid)
{
	size_t lo = 0, hi = nd->n_ranges;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (uid < nd->ranges[mid].first)
			hi = mid;
		else if (uid > nd->ranges[mid].last)
			lo = mid + 1;
		else
			return 1;
	}
	return 0;
}

static int has_flag(const struct node *nd, const struct mailsearch_msg *msg)
{
	for (size_t i = 0; i < msg->n_flags; i++) {
		const char *f = msg->flags[i];
		if (f == NULL)
			continue;
		if (nd->system_flag ? strcasecmp(f, nd->str) == 0 : strcmp(f, nd->str) == 0)
			return 1;
	}
	return 0;
}

/* Age comparison for OLDER/YOUNGER without overflow. */
static int is_older(const struct mailsearch_msg *msg, uint64_t secs, int64_t now_ms)
{
	int64_t age_ms;
	if (__builtin_sub_overflow(now_ms, msg->internal_date_ms, &age_ms))
		age_ms = now_ms < msg->internal_date_ms ? INT64_MIN : INT64_MAX;
	int64_t limit_ms;
	if (secs > (uint64_t)(INT64_MAX / 1000))
		limit_ms = INT64_MAX;
	else
		limit_ms = (int64_t)secs * 1000;
	return age_ms >= limit_ms;
}

static uint8_t eval_meta(const struct node *nd, const struct mailsearch_msg *msg, int64_t now_ms)
{
	int64_t day = floor_div(msg->internal_date_ms, 86400000);
	int64_t num = num_as_i64(nd->num);
	switch (nd->op) {
	case SEARCH_ALL: return VAL_YES;
	case SEARCH_NONE: return VAL_NO;
	case SEARCH_UID: return (uint8_t)uid_in_ranges(nd, msg->uid);
	case SEARCH_FLAG: return (uint8_t)has_flag(nd, msg);
	case SEARCH_BEFORE: return day < num;
	case SEARCH_ON: return day == num;
	case SEARCH_SINCE: return day >= num;
	case SEARCH_LARGER: return msg->size > nd->num;
	case SEARCH_SMALLER: return msg->size < nd->num;
	case SEARCH_MODSEQ: return msg->modseq >= nd->num;
	case SEARCH_OLDER: return (uint8_t)is_older(msg, nd->num, now_ms);
	case SEARCH_YOUNGER: return (uint8_t)!is_older(msg, nd->num, now_ms);
	default: return VAL_NO;
	}
}

/* ---- header keys ------------------------------------------------------------ */

struct hdr_search {
	struct mailsearch__scan scan;
	const struct mailsearch__needle *needle;
	size_t state;
	uint8_t found;
	int with_name; /* TEXT: "Name: value" */
	int exists;    /* HEADER "": any field is enough */
	int seen;      /* a field came */
};

static size_t header_cap(size_t len)
{
	return len > MAILSEARCH_HEADER_MAX ? MAILSEARCH_HEADER_MAX : len;
}

static int hdr_search_cb(void *arg, const char *name, const char *text, size_t len)
{
	struct hdr_search *hs = arg;
	hs->seen = 1;
	if (hs->exists)
		return 1;
	if (hs->with_name && name != NULL) {
		mailsearch__scan_feed(&hs->scan, name, strlen(name));
		mailsearch__scan_feed(&hs->scan, ": ", 2);
	}
	mailsearch__scan_feed(&hs->scan, text, header_cap(len));
	return mailsearch__scan_end(&hs->scan);
}

/* Search header fields (name NULL: all of them, as "Name: value"). */
static int search_headers(const struct mailsearch_msg *msg, const char *name,
			  const struct mailsearch__needle *needle, int exists)
{
	struct hdr_search hs = {.needle = needle, .with_name = name == NULL, .exists = exists};
	mailsearch__scan_init(&hs.scan, &hs.needle, 1, &hs.state, &hs.found);
	if (msg->header == NULL)
		return -1;
	if (msg->header(msg->ctx, name, hdr_search_cb, &hs) < 0)
		return -1;
	/* (an empty needle is "found" before any text: only a field that
	 * came counts) */
	return hs.seen && hs.found;
}

struct date_get {
	int seen;
	int ok;
	int64_t day;
};

static int date_get_cb(void *arg, const char *name, const char *text, size_t len)
{
	(void)name;
	struct date_get *dg = arg;
	dg->seen = 1;
	dg->ok = mailsearch_date_parse(text, len, NULL, &dg->day) == 0;
	return 1; /* the first Date: only */
}

static int sent_day(mailsearch_prog *prog, const struct mailsearch_msg *msg, int64_t *day_r)
{
	if (prog->sent_state == 0) {
		struct date_get dg = {0, 0, 0};
		if (msg->header == NULL || msg->header(msg->ctx, "Date", date_get_cb, &dg) < 0)
			return -1;
		prog->sent_state = dg.ok ? 1 : 2;
		prog->sent_day = dg.day;
	}
	*day_r = prog->sent_day;
	return prog->sent_state == 1;
}

static uint8_t eval_header_leaf(mailsearch_prog *prog, struct node *nd,
				const struct mailsearch_msg *msg)
{
	int r;
	int64_t day;
	switch (nd->op) {
	case SEARCH_HEADER:
		r = search_headers(msg, nd->str, &nd->needle, nd->needle.n == 0);
		break;
	case SEARCH_TEXT:
		r = search_headers(msg, NULL, &nd->needle, 0);
		if (r == 0)
			return VAL_UNKNOWN; /* the body decides */
		break;
	case SEARCH_SENTBEFORE:
	case SEARCH_SENTON:
	case SEARCH_SENTSINCE:
		r = sent_day(prog, msg, &day);
		if (r == 1) {
			int64_t num = num_as_i64(nd->num);
			r = nd->op == SEARCH_SENTBEFORE ? day < num
			    : nd->op == SEARCH_SENTON   ? day == num
							: day >= num;
		}
		break;
	default:
		return VAL_UNKNOWN;
	}
	return r < 0 ? VAL_ERROR : (uint8_t)r;
}

/* ---- evaluation --------------------------------------------------------------- */

enum phase { PHASE_META, PHASE_HEADER, PHASE_FINAL };

/* Evaluate node idx in a phase; returns its value (VAL_ERROR when a
 * callback failed). */
static uint8_t eval(mailsearch_prog *prog, uint32_t idx, const struct mailsearch_msg *msg,
		    int64_t now_ms, enum phase phase)
{
	struct node *nd = &prog->nodes[idx];
	if (phase != PHASE_META && nd->val != VAL_UNKNOWN)
		return nd->val;
	switch (nd->kind) {
	case KIND_META:
		nd->val = eval_meta(nd, msg, now_ms);
		return nd->val;
	case KIND_HEADER:
	case KIND_TEXT:
		if (phase == PHASE_META)
			nd->val = VAL_UNKNOWN;
		else if (phase == PHASE_HEADER)
			nd->val = eval_header_leaf(prog, nd, msg);
		/* PHASE_FINAL: the body pass set TEXT; HEADER is known */
		return nd->val;
	case KIND_BODY:
		if (phase == PHASE_META)
			nd->val = VAL_UNKNOWN;
		return nd->val;
	case KIND_INNER:
		break;
	}
	const uint32_t *kids = &prog->kids[nd->first_kid];
	if (nd->op == SEARCH_NOT) {
		uint8_t v = eval(prog, kids[0], msg, now_ms, phase);
		nd->val = v == VAL_YES ? VAL_NO : v == VAL_NO ? VAL_YES : v;
		return nd->val;
	}
	/* AND: the first "no" decides; OR: the first "yes" */
	uint8_t decisive = nd->op == SEARCH_AND ? VAL_NO : VAL_YES;
	int unknown = 0;
	for (uint32_t i = 0; i < nd->n_kids; i++) {
		uint8_t v = eval(prog, kids[i], msg, now_ms, phase);
		if (v == VAL_ERROR || v == decisive) {
			nd->val = v;
			return v;
		}
		if (v == VAL_UNKNOWN)
			unknown = 1;
	}
	nd->val = unknown ? VAL_UNKNOWN : (nd->op == SEARCH_AND ? VAL_YES : VAL_NO);
	return nd->val;
}

/* Gather the BODY and TEXT leaves still unknown under idx. */
static void collect_body(mailsearch_prog *prog, uint32_t idx, size_t *n)
{
	struct node *nd = &prog->nodes[idx];
	if (nd->val != VAL_UNKNOWN)
		return;
	if (nd->kind == KIND_BODY || nd->kind == KIND_TEXT) {
		prog->scan_needles[*n] = &nd->needle;
		prog->scan_nodes[*n] = idx;
		(*n)++;
		return;
	}
	if (nd->kind != KIND_INNER)
		return;
	for (uint32_t i = 0; i < nd->n_kids; i++)
		collect_body(prog, prog->kids[nd->first_kid + i], n);
}

static int body_scan_cb(void *arg, const char *name, const char *text, size_t len)
{
	(void)name;
	return mailsearch__scan_feed(arg, text, len);
}

int mailsearch_prog_match(mailsearch_prog *prog, const struct mailsearch_msg *msg,
			  int64_t now_ms)
{
	prog->sent_state = 0;
	uint8_t v = eval(prog, 0, msg, now_ms, PHASE_META);
	if (v == VAL_UNKNOWN)
		v = eval(prog, 0, msg, now_ms, PHASE_HEADER);
	if (v == VAL_UNKNOWN) {
		size_t n = 0;
		collect_body(prog, 0, &n);
		struct mailsearch__scan sc;
		mailsearch__scan_init(&sc, prog->scan_needles, n, prog->scan_state,
				      prog->scan_found);
		if (msg->body_text == NULL || msg->body_text(msg->ctx, body_scan_cb, &sc) < 0)
			return -1;
		mailsearch__scan_end(&sc);
		for (size_t i = 0; i < n; i++)
			prog->nodes[prog->scan_nodes[i]].val = prog->scan_found[i];
		v = eval(prog, 0, msg, now_ms, PHASE_FINAL);
	}
	if (v == VAL_ERROR)
		return -1;
	return v == VAL_YES;
}

int mailsearch_match(const struct search_key *key, const struct mailsearch_msg *msg,
		     int64_t now_ms)
{
	mailsearch_prog *prog;
	const char *error;
	if (mailsearch_prog_create(key, &prog, &error) < 0)
		return -1;
	int r = mailsearch_prog_match(prog, msg, now_ms);
	mailsearch_prog_destroy(&prog);
	return r;
}
