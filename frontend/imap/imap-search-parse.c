/* imap-search-parse.c: see imap-search.h.
 *
 * Recursive descent over the command parser's arguments (already split
 * into atoms, strings and lists), one key at a time. Recursion is
 * bounded by max_depth (NOT, OR and parenthesised lists nest), the size
 * of the tree by max_keys. Every allocation of a program is recorded in
 * prog->allocs and freed in one call.
 */
#include "imap-search.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "xalloc.h"

void imap_search_limits_default(struct imap_search_limits *limits)
{
	limits->max_depth = IMAP_SEARCH_DEFAULT_MAX_DEPTH;
	limits->max_keys = IMAP_SEARCH_DEFAULT_MAX_KEYS;
}

struct search_parser {
	const struct imap_arg *args;
	size_t n, pos;
	const struct imap_search_view *view;
	const struct imap_search_limits *limits;
	struct imap_search_program *prog;
	size_t keys;
	const char *error;
};

static void *sp_alloc(struct search_parser *p, size_t size)
{
	struct imap_search_program *prog = p->prog;
	if (prog->n_allocs == prog->cap_allocs) {
		prog->cap_allocs = prog->cap_allocs == 0 ? 16 : prog->cap_allocs * 2;
		prog->allocs = xrealloc(prog->allocs, prog->cap_allocs * sizeof(*prog->allocs));
	}
	void *mem = xcalloc(1, size > 0 ? size : 1);
	prog->allocs[prog->n_allocs++] = mem;
	return mem;
}

static const char *sp_strdup(struct search_parser *p, const char *s)
{
	size_t len = strlen(s);
	char *d = sp_alloc(p, len + 1);
	memcpy(d, s, len);
	return d;
}

void imap_search_program_free(struct imap_search_program **progp)
{
	struct imap_search_program *prog = *progp;
	if (prog == NULL)
		return;
	for (size_t i = 0; i < prog->n_allocs; i++)
		free(prog->allocs[i]);
	free(prog->allocs);
	free(prog);
	*progp = NULL;
}

/* ---- dates ------------------------------------------------------------ */

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian). */
static int64_t sp_days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

int imap_search_date_parse(const char *s, int64_t *days_r)
{
	static const char months[12][4] = { "jan", "feb", "mar", "apr", "may", "jun",
					    "jul", "aug", "sep", "oct", "nov", "dec" };
	static const unsigned mdays[12] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	unsigned day = 0, month = 0, year = 0;
	size_t i = 0;
	while (s[i] >= '0' && s[i] <= '9' && i < 2)
		day = day * 10 + (unsigned)(s[i++] - '0');
	if (i == 0 || s[i] != '-')
		return -1;
	s += i + 1;
	for (month = 0; month < 12; month++) {
		if (strncasecmp(s, months[month], 3) == 0)
			break;
	}
	if (month == 12 || s[3] != '-')
		return -1;
	s += 4;
	for (i = 0; i < 4; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		year = year * 10 + (unsigned)(s[i] - '0');
	}
	if (s[4] != '\0' || day == 0 || day > mdays[month])
		return -1;
	int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
	if (month == 1 && day == 29 && !leap)
		return -1;
	*days_r = sp_days_from_civil(year, month + 1, day);
	return 0;
}

/* ---- arguments -------------------------------------------------------- */

static const struct imap_arg *sp_next(struct search_parser *p)
{
	return p->pos < p->n ? &p->args[p->pos++] : NULL;
}

/* An astring without NUL bytes. */
static const char *sp_astring(struct search_parser *p)
{
	const struct imap_arg *a = sp_next(p);
	const char *s;
	if (a == NULL || !imap_arg_get_astring(a, &s) || strlen(s) != a->len) {
		p->error = "Search key needs a string";
		return NULL;
	}
	return s;
}

static int sp_number(struct search_parser *p, uint64_t max, uint64_t *n_r)
{
	const struct imap_arg *a = sp_next(p);
	const char *s;
	uint64_t n = 0;
	if (a == NULL || !imap_arg_get_atom(a, &s) || s[0] == '\0') {
		p->error = "Search key needs a number";
		return -1;
	}
	for (size_t i = 0; s[i] != '\0'; i++) {
		if (s[i] < '0' || s[i] > '9' || n > (max - (uint64_t)(s[i] - '0')) / 10) {
			p->error = "Invalid number in search";
			return -1;
		}
		n = n * 10 + (uint64_t)(s[i] - '0');
	}
	*n_r = n;
	return 0;
}

static int sp_date(struct search_parser *p, uint64_t *days_r)
{
	const struct imap_arg *a = sp_next(p);
	const char *s;
	int64_t days;
	if (a == NULL || !imap_arg_get_astring(a, &s) || imap_search_date_parse(s, &days) < 0 ||
	    days < 0) {
		p->error = "Invalid search date";
		return -1;
	}
	*days_r = (uint64_t)days;
	return 0;
}

/* A flag keyword (KEYWORD, UNKEYWORD): an atom without \ and specials. */
static const char *sp_keyword(struct search_parser *p)
{
	const struct imap_arg *a = sp_next(p);
	const char *s;
	if (a == NULL || !imap_arg_get_atom(a, &s) || s[0] == '\\' ||
	    strpbrk(s, "*%]\\[") != NULL) {
		p->error = "Invalid keyword in search";
		return NULL;
	}
	return s;
}

/* Is s a sequence set ("1:3,*", "$")? */
static int sp_is_seqset(const char *s)
{
	if (strcmp(s, "$") == 0)
		return 1;
	if (!((s[0] >= '0' && s[0] <= '9') || s[0] == '*'))
		return 0;
	for (; *s != '\0'; s++) {
		if (!((*s >= '0' && *s <= '9') || *s == '*' || *s == ':' || *s == ','))
			return 0;
	}
	return 1;
}

/* A range list of the program, from an imap_range_list-like buffer. */
struct sp_ranges {
	struct search_uid_range *r;
	size_t n, cap;
};

static void sp_ranges_add(struct sp_ranges *l, uint32_t first, uint32_t last)
{
	if (l->n > 0 && l->r[l->n - 1].last != UINT32_MAX && first <= l->r[l->n - 1].last + 1u) {
		if (last > l->r[l->n - 1].last)
			l->r[l->n - 1].last = last;
		return;
	}
	if (l->n == l->cap) {
		l->cap = l->cap == 0 ? 8 : l->cap * 2;
		l->r = xrealloc(l->r, l->cap * sizeof(*l->r));
	}
	l->r[l->n++] = (struct search_uid_range){ first, last };
}

/* A sequence set (uid = 0) or uid set (uid = 1) as a UID key. */
static int sp_set_key(struct search_parser *p, const char *s, int uid, struct search_key *k)
{
	struct sp_ranges l = { 0 };
	const imap_uidmap *map = p->view->map;
	k->op = SEARCH_UID;
	if (strcmp(s, "$") == 0) {
		for (size_t i = 0; i < p->view->n_saved; i++)
			sp_ranges_add(&l, p->view->saved[i].first, p->view->saved[i].last);
	} else {
		struct imap_seqset set;
		const char *error;
		if (imap_seqset_parse(s, 16384, &set, &error) < 0) {
			p->error = error;
			return -1;
		}
		uint32_t count = map != NULL ? imap_uidmap_count(map) : 0;
		imap_seqset_resolve(&set, uid ? (map != NULL ? imap_uidmap_max_uid(map) : 0) : count);
		for (size_t i = 0; i < set.count; i++) {
			uint32_t lo = set.ranges[i].lo > 0 ? set.ranges[i].lo : 1;
			uint32_t hi = set.ranges[i].hi;
			if (lo > hi)
				continue;
			if (uid) {
				sp_ranges_add(&l, lo, hi);
				continue;
			}
			/* sequence numbers past the end match nothing */
			if (lo > count)
				continue;
			if (hi > count)
				hi = count;
			sp_ranges_add(&l, imap_uidmap_uid_of(map, lo), imap_uidmap_uid_of(map, hi));
		}
		imap_seqset_deinit(&set);
	}
	if (l.n == 0) {
		free(l.r);
		k->op = SEARCH_NONE;
		return 0;
	}
	struct search_uid_range *r = sp_alloc(p, l.n * sizeof(*r));
	memcpy(r, l.r, l.n * sizeof(*r));
	free(l.r);
	k->ranges = r;
	k->n_ranges = l.n;
	return 0;
}

static int sp_key(struct search_parser *p, struct search_key *k, unsigned depth);

/* NOT k */
static int sp_not(struct search_parser *p, struct search_key *k, unsigned depth)
{
	struct search_key *c = sp_alloc(p, sizeof(*c));
	if (sp_key(p, c, depth + 1) < 0)
		return -1;
	k->op = SEARCH_NOT;
	k->children = c;
	k->n_children = 1;
	return 0;
}

static int sp_flag(struct search_parser *p, struct search_key *k, const char *flag, int negate)
{
	if (!negate) {
		k->op = SEARCH_FLAG;
		k->str = sp_strdup(p, flag);
		return 0;
	}
	struct search_key *c = sp_alloc(p, sizeof(*c));
	c->op = SEARCH_FLAG;
	c->str = sp_strdup(p, flag);
	k->op = SEARCH_NOT;
	k->children = c;
	k->n_children = 1;
	return 0;
}

/* The keys of a list "(k1 k2 ...)" or of the rest of the command: AND. */
static int sp_keys(struct search_parser *p, const struct imap_arg *args, size_t n,
		   struct search_key *k, unsigned depth)
{
	if (n == 0) {
		p->error = "Missing search key";
		return -1;
	}
	const struct imap_arg *saved_args = p->args;
	size_t saved_n = p->n, saved_pos = p->pos;
	p->args = args;
	p->n = n;
	p->pos = 0;
	/* at most n keys: each takes one argument or more */
	struct search_key *c = sp_alloc(p, n * sizeof(*c));
	size_t count = 0;
	int ret = 0;
	while (p->pos < p->n) {
		if (sp_key(p, &c[count], depth) < 0) {
			ret = -1;
			break;
		}
		count++;
	}
	p->args = saved_args;
	p->n = saved_n;
	p->pos = saved_pos;
	if (ret < 0)
		return -1;
	if (count == 1) {
		*k = c[0];
		return 0;
	}
	k->op = SEARCH_AND;
	k->children = c;
	k->n_children = count;
	return 0;
}

static int sp_key(struct search_parser *p, struct search_key *k, unsigned depth)
{
	static const struct {
		const char *name;
		const char *flag;
		int negate;
	} flag_keys[] = {
		{ "ANSWERED", "\\Answered", 0 }, { "DELETED", "\\Deleted", 0 },
		{ "DRAFT", "\\Draft", 0 },       { "FLAGGED", "\\Flagged", 0 },
		{ "SEEN", "\\Seen", 0 },         { "UNANSWERED", "\\Answered", 1 },
		{ "UNDELETED", "\\Deleted", 1 }, { "UNDRAFT", "\\Draft", 1 },
		{ "UNFLAGGED", "\\Flagged", 1 }, { "UNSEEN", "\\Seen", 1 },
	};
	static const struct {
		const char *name;
		const char *field;
	} header_keys[] = {
		{ "BCC", "Bcc" }, { "CC", "Cc" }, { "FROM", "From" }, { "SUBJECT", "Subject" },
		{ "TO", "To" },
	};
	static const struct {
		const char *name;
		enum search_op op;
	} date_keys[] = {
		{ "BEFORE", SEARCH_BEFORE },         { "ON", SEARCH_ON },
		{ "SINCE", SEARCH_SINCE },           { "SENTBEFORE", SEARCH_SENTBEFORE },
		{ "SENTON", SEARCH_SENTON },         { "SENTSINCE", SEARCH_SENTSINCE },
	};
	const struct imap_arg *a = sp_next(p);
	const char *name;

	memset(k, 0, sizeof(*k));
	if (a == NULL) {
		p->error = "Missing search key";
		return -1;
	}
	if (depth >= p->limits->max_depth || ++p->keys > p->limits->max_keys) {
		p->error = "Search too complex";
		return -1;
	}
	if (a->type == IMAP_ARG_LIST)
		return sp_keys(p, a->list->args, a->list->count, k, depth + 1);
	if (!imap_arg_get_atom(a, &name)) {
		p->error = "Invalid search key";
		return -1;
	}
	if (sp_is_seqset(name))
		return sp_set_key(p, name, 0, k);
	for (size_t i = 0; i < sizeof(flag_keys) / sizeof(flag_keys[0]); i++) {
		if (strcasecmp(name, flag_keys[i].name) == 0)
			return sp_flag(p, k, flag_keys[i].flag, flag_keys[i].negate);
	}
	for (size_t i = 0; i < sizeof(header_keys) / sizeof(header_keys[0]); i++) {
		if (strcasecmp(name, header_keys[i].name) == 0) {
			const char *v = sp_astring(p);
			if (v == NULL)
				return -1;
			k->op = SEARCH_HEADER;
			k->str = header_keys[i].field;
			k->str2 = sp_strdup(p, v);
			return 0;
		}
	}
	for (size_t i = 0; i < sizeof(date_keys) / sizeof(date_keys[0]); i++) {
		if (strcasecmp(name, date_keys[i].name) == 0) {
			k->op = date_keys[i].op;
			return sp_date(p, &k->num);
		}
	}
	if (strcasecmp(name, "ALL") == 0 || strcasecmp(name, "OLD") == 0) {
		k->op = SEARCH_ALL;
		return 0;
	}
	if (strcasecmp(name, "NEW") == 0 || strcasecmp(name, "RECENT") == 0) {
		k->op = SEARCH_NONE; /* no \Recent (RFC 9051) */
		return 0;
	}
	if (strcasecmp(name, "BODY") == 0 || strcasecmp(name, "TEXT") == 0) {
		const char *v = sp_astring(p);
		if (v == NULL)
			return -1;
		k->op = strcasecmp(name, "BODY") == 0 ? SEARCH_BODY : SEARCH_TEXT;
		k->str = sp_strdup(p, v);
		return 0;
	}
	if (strcasecmp(name, "HEADER") == 0) {
		const char *field = sp_astring(p);
		if (field == NULL)
			return -1;
		if (field[0] == '\0' || strpbrk(field, ": \t") != NULL) {
			p->error = "Invalid header field name";
			return -1;
		}
		const char *v = sp_astring(p);
		if (v == NULL)
			return -1;
		k->op = SEARCH_HEADER;
		k->str = sp_strdup(p, field);
		k->str2 = sp_strdup(p, v);
		return 0;
	}
	if (strcasecmp(name, "KEYWORD") == 0 || strcasecmp(name, "UNKEYWORD") == 0) {
		const char *kw = sp_keyword(p);
		if (kw == NULL)
			return -1;
		return sp_flag(p, k, kw, strcasecmp(name, "UNKEYWORD") == 0);
	}
	if (strcasecmp(name, "LARGER") == 0 || strcasecmp(name, "SMALLER") == 0) {
		k->op = strcasecmp(name, "LARGER") == 0 ? SEARCH_LARGER : SEARCH_SMALLER;
		return sp_number(p, UINT32_MAX, &k->num);
	}
	if (strcasecmp(name, "OLDER") == 0 || strcasecmp(name, "YOUNGER") == 0) {
		k->op = strcasecmp(name, "OLDER") == 0 ? SEARCH_OLDER : SEARCH_YOUNGER;
		if (sp_number(p, UINT32_MAX, &k->num) < 0)
			return -1;
		if (k->num == 0) {
			p->error = "Invalid interval";
			return -1;
		}
		return 0;
	}
	if (strcasecmp(name, "UID") == 0) {
		const struct imap_arg *s = sp_next(p);
		const char *set;
		if (s == NULL || !imap_arg_get_atom(s, &set) || !sp_is_seqset(set)) {
			p->error = "UID needs a UID set";
			return -1;
		}
		if (strcmp(set, "$") == 0)
			return sp_set_key(p, set, 1, k);
		return sp_set_key(p, set, 1, k);
	}
	if (strcasecmp(name, "NOT") == 0)
		return sp_not(p, k, depth);
	if (strcasecmp(name, "OR") == 0) {
		struct search_key *c = sp_alloc(p, 2 * sizeof(*c));
		if (sp_key(p, &c[0], depth + 1) < 0 || sp_key(p, &c[1], depth + 1) < 0)
			return -1;
		k->op = SEARCH_OR;
		k->children = c;
		k->n_children = 2;
		return 0;
	}
	if (strcasecmp(name, "MODSEQ") == 0) {
		/* MODSEQ ["/flags/\\Seen" all|priv|shared] n: the entry only
		 * narrows which flag's modseq; per message there is one */
		if (p->pos + 1 < p->n && p->args[p->pos].type != IMAP_ARG_ATOM) {
			const char *entry = sp_astring(p), *type;
			const struct imap_arg *t = sp_next(p);
			if (entry == NULL || t == NULL || !imap_arg_get_atom(t, &type) ||
			    (strcasecmp(type, "all") != 0 && strcasecmp(type, "priv") != 0 &&
			     strcasecmp(type, "shared") != 0)) {
				p->error = "Invalid MODSEQ entry";
				return -1;
			}
		}
		k->op = SEARCH_MODSEQ;
		p->prog->uses_modseq = 1;
		return sp_number(p, (UINT64_C(1) << 63) - 1u, &k->num);
	}
	p->error = "Unknown search key";
	return -1;
}

/* CHARSET name: US-ASCII and UTF-8 only. */
static int sp_charset_ok(const char *name)
{
	return strcasecmp(name, "UTF-8") == 0 || strcasecmp(name, "US-ASCII") == 0;
}

static int sp_return_parse(struct search_parser *p, const struct imap_arg *a)
{
	static const struct {
		const char *name;
		unsigned bit;
	} opts[] = {
		{ "MIN", IMAP_SEARCH_RET_MIN },     { "MAX", IMAP_SEARCH_RET_MAX },
		{ "ALL", IMAP_SEARCH_RET_ALL },     { "COUNT", IMAP_SEARCH_RET_COUNT },
		{ "SAVE", IMAP_SEARCH_RET_SAVE },
	};
	if (a == NULL || a->type != IMAP_ARG_LIST) {
		p->error = "RETURN needs a list";
		return -1;
	}
	p->prog->esearch = 1;
	for (size_t i = 0; i < a->list->count; i++) {
		const char *name;
		size_t k = 0;
		if (!imap_arg_get_atom(&a->list->args[i], &name))
			k = sizeof(opts) / sizeof(opts[0]);
		while (k < sizeof(opts) / sizeof(opts[0]) && strcasecmp(name, opts[k].name) != 0)
			k++;
		if (k == sizeof(opts) / sizeof(opts[0])) {
			p->error = "Unknown RETURN option";
			return -1;
		}
		p->prog->ret |= opts[k].bit;
	}
	if (p->prog->ret == 0)
		p->prog->ret = IMAP_SEARCH_RET_ALL; /* RETURN () */
	return 0;
}

static int sp_sort_parse(struct search_parser *p, const struct imap_arg *a)
{
	static const struct {
		const char *name;
		enum search_sort_key key;
	} keys[] = {
		{ "ARRIVAL", SEARCH_SORT_ARRIVAL }, { "CC", SEARCH_SORT_CC },
		{ "DATE", SEARCH_SORT_DATE },       { "FROM", SEARCH_SORT_FROM },
		{ "SIZE", SEARCH_SORT_SIZE },       { "SUBJECT", SEARCH_SORT_SUBJECT },
		{ "TO", SEARCH_SORT_TO },           { "DISPLAYFROM", SEARCH_SORT_DISPLAYFROM },
		{ "DISPLAYTO", SEARCH_SORT_DISPLAYTO },
	};
	if (a == NULL || a->type != IMAP_ARG_LIST || a->list->count == 0) {
		p->error = "SORT needs a list of criteria";
		return -1;
	}
	int reverse = 0;
	for (size_t i = 0; i < a->list->count; i++) {
		const char *name;
		if (!imap_arg_get_atom(&a->list->args[i], &name)) {
			p->error = "Invalid sort criterion";
			return -1;
		}
		if (strcasecmp(name, "REVERSE") == 0 && !reverse) {
			reverse = 1;
			continue;
		}
		size_t k = 0;
		while (k < sizeof(keys) / sizeof(keys[0]) && strcasecmp(name, keys[k].name) != 0)
			k++;
		if (k == sizeof(keys) / sizeof(keys[0]) || p->prog->n_sort >= IMAP_SEARCH_MAX_SORT) {
			p->error = "Invalid sort criterion";
			return -1;
		}
		p->prog->sort[p->prog->n_sort++] = (struct search_sort){ keys[k].key, reverse };
		reverse = 0;
	}
	if (reverse) {
		p->error = "REVERSE needs a criterion";
		return -1;
	}
	return 0;
}

int imap_search_parse(const struct imap_arg *args, size_t n, enum imap_search_kind kind,
		      const struct imap_search_view *view, const struct imap_search_limits *limits,
		      struct imap_search_program **prog_r, const char **error_r)
{
	struct search_parser p = { .args = args, .n = n, .view = view, .limits = limits };
	p.prog = xcalloc(1, sizeof(*p.prog));
	int ret = IMAP_SEARCH_BAD;
	const char *name;

	if (kind == IMAP_SEARCH_CMD_SORT) {
		if (sp_sort_parse(&p, sp_next(&p)) < 0)
			goto fail;
	} else if (kind == IMAP_SEARCH_CMD_THREAD) {
		const struct imap_arg *a = sp_next(&p);
		if (a == NULL || !imap_arg_get_atom(a, &name)) {
			p.error = "THREAD needs an algorithm";
			goto fail;
		}
		if (strcasecmp(name, "REFERENCES") == 0) {
			p.prog->alg = SEARCH_THREAD_REFERENCES;
		} else if (strcasecmp(name, "ORDEREDSUBJECT") == 0) {
			p.prog->alg = SEARCH_THREAD_ORDEREDSUBJECT;
		} else {
			p.error = "Unknown THREAD algorithm";
			goto fail;
		}
	} else if (p.pos < n && imap_arg_get_atom(&args[p.pos], &name) &&
		   strcasecmp(name, "RETURN") == 0) {
		p.pos++;
		if (sp_return_parse(&p, sp_next(&p)) < 0)
			goto fail;
	}
	/* SORT and THREAD: charset required; SEARCH: CHARSET x optional */
	if (kind != IMAP_SEARCH_CMD_SEARCH ||
	    (p.pos < n && imap_arg_get_atom(&args[p.pos], &name) &&
	     strcasecmp(name, "CHARSET") == 0 && ++p.pos)) {
		const struct imap_arg *a = sp_next(&p);
		const char *cs;
		if (a == NULL || !imap_arg_get_astring(a, &cs)) {
			p.error = "Missing charset";
			goto fail;
		}
		if (!sp_charset_ok(cs)) {
			p.error = "Unsupported charset";
			ret = IMAP_SEARCH_BADCHARSET;
			goto fail;
		}
	}
	struct search_key *root = sp_alloc(&p, sizeof(*root));
	if (sp_keys(&p, p.pos < n ? args + p.pos : NULL, n - p.pos, root, 0) < 0)
		goto fail;
	p.prog->root = root;
	*prog_r = p.prog;
	return IMAP_SEARCH_OK;
fail:
	*error_r = p.error != NULL ? p.error : "Invalid search";
	imap_search_program_free(&p.prog);
	return ret;
}
