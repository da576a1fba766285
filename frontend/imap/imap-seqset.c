/* imap-seqset.c: RFC 3501 sequence sets (see imap-parser.h). */
#include "imap-parser.h"

#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

/* One seq-number: nz-number (1..2^32-1, no leading zero) or '*'.
 * Returns the number of bytes used, 0 on a syntax error. */
static size_t imap_seq_number_parse(const char *s, uint32_t *n_r)
{
	if (s[0] == '*') {
		*n_r = IMAP_SEQ_STAR;
		return 1;
	}
	if (s[0] < '1' || s[0] > '9')
		return 0;
	uint64_t n = 0;
	size_t i = 0;
	while (s[i] >= '0' && s[i] <= '9') {
		n = n * 10 + (uint64_t)(s[i] - '0');
		if (n > UINT32_MAX)
			return 0;
		i++;
	}
	*n_r = (uint32_t)n;
	return i;
}

int imap_seqset_parse(const char *s, size_t max_ranges, struct imap_seqset *set_r,
		      const char **error_r)
{
	size_t cap = 0;

	memset(set_r, 0, sizeof(*set_r));
	for (;;) {
		struct imap_seq_range r;
		size_t used = imap_seq_number_parse(s, &r.lo);
		if (used == 0)
			goto bad;
		s += used;
		r.hi = r.lo;
		if (*s == ':') {
			used = imap_seq_number_parse(s + 1, &r.hi);
			if (used == 0)
				goto bad;
			s += 1 + used;
		}
		if (set_r->count >= max_ranges) {
			imap_seqset_deinit(set_r);
			*error_r = "Too many ranges in sequence set";
			return -1;
		}
		if (set_r->count == cap) {
			cap = cap == 0 ? 4 : cap * 2;
			set_r->ranges = xrealloc(set_r->ranges, cap * sizeof(*set_r->ranges));
		}
		set_r->ranges[set_r->count++] = r;
		if (*s == '\0')
			return 0;
		if (*s != ',')
			goto bad;
		s++;
	}
bad:
	imap_seqset_deinit(set_r);
	*error_r = "Invalid sequence set";
	return -1;
}

void imap_seqset_deinit(struct imap_seqset *set)
{
	free(set->ranges);
	set->ranges = NULL;
	set->count = 0;
}

static int imap_seq_range_cmp(const void *a, const void *b)
{
	const struct imap_seq_range *x = a, *y = b;
	return x->lo < y->lo ? -1 : x->lo > y->lo ? 1 : 0;
}

void imap_seqset_resolve(struct imap_seqset *set, uint32_t star)
{
	for (size_t i = 0; i < set->count; i++) {
		struct imap_seq_range *r = &set->ranges[i];
		if (r->lo == IMAP_SEQ_STAR)
			r->lo = star;
		if (r->hi == IMAP_SEQ_STAR)
			r->hi = star;
		if (r->lo > r->hi) {
			uint32_t t = r->lo;
			r->lo = r->hi;
			r->hi = t;
		}
	}
	if (set->count < 2)
		return;
	qsort(set->ranges, set->count, sizeof(*set->ranges), imap_seq_range_cmp);
	size_t out = 0;
	for (size_t i = 1; i < set->count; i++) {
		struct imap_seq_range *last = &set->ranges[out];
		const struct imap_seq_range *r = &set->ranges[i];
		if (r->lo <= last->hi || (last->hi != UINT32_MAX && r->lo == last->hi + 1)) {
			if (r->hi > last->hi)
				last->hi = r->hi;
		} else {
			set->ranges[++out] = *r;
		}
	}
	set->count = out + 1;
}

int imap_seqset_contains(const struct imap_seqset *set, uint32_t n)
{
	size_t lo = 0, hi = set->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct imap_seq_range *r = &set->ranges[mid];
		if (n < r->lo)
			hi = mid;
		else if (n > r->hi)
			lo = mid + 1;
		else
			return 1;
	}
	return 0;
}

uint32_t imap_seqset_max(const struct imap_seqset *set)
{
	return set->count == 0 ? 0 : set->ranges[set->count - 1].hi;
}
