/* imap-session-uids.c: sequence sets against the session's view, and uid
 * range lists (see imap-server-private.h). */
#include "imap-server-private.h"

#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

/* Ranges accepted in one sequence set (the line limit bounds it too). */
#define IMAP_SEQSET_MAX_RANGES 16384u

void imap_range_list_add(struct imap_range_list *l, uint32_t first, uint32_t last)
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

uint64_t imap_uid_ranges_count(const struct search_uid_range *ranges, size_t n)
{
	uint64_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += (uint64_t)ranges[i].last - ranges[i].first + 1u;
	return total;
}

void imap_session_append_uid_ranges(struct imap_session *s,
				    const struct search_uid_range *ranges, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (ranges[i].first == ranges[i].last)
			conn_printf(&s->conn, "%s%u", i > 0 ? "," : "", ranges[i].first);
		else
			conn_printf(&s->conn, "%s%u:%u", i > 0 ? "," : "", ranges[i].first,
				    ranges[i].last);
	}
}

/* The uids of the view within [lo, hi], as one range (the view has no
 * message in its holes: uids are never reused), added to l. */
static void imap_view_clip(const imap_uidmap *map, uint64_t lo, uint64_t hi,
			   struct imap_range_list *l)
{
	if (lo == 0)
		lo = 1;
	if (hi > imap_uidmap_max_uid(map))
		hi = imap_uidmap_max_uid(map);
	if (lo > hi)
		return;
	uint32_t seq_lo = imap_uidmap_seq_ceil(map, (uint32_t)lo);
	uint32_t seq_hi = imap_uidmap_seq_ceil(map, (uint32_t)hi);
	if (imap_uidmap_uid_of(map, seq_hi) != hi)
		seq_hi--;
	if (seq_lo > seq_hi || seq_lo > imap_uidmap_count(map))
		return;
	imap_range_list_add(l, imap_uidmap_uid_of(map, seq_lo), imap_uidmap_uid_of(map, seq_hi));
}

int imap_session_seqset_ranges(struct imap_session *s, const struct imap_arg *arg, int uid,
			       struct search_uid_range **ranges_r, size_t *n_r,
			       const char **error_r)
{
	struct imap_seqset set;
	struct imap_range_list l = { 0 };
	const char *str;
	const imap_uidmap *map = s->uidmap;

	*ranges_r = NULL;
	*n_r = 0;
	if (!imap_arg_get_atom(arg, &str)) {
		*error_r = "Invalid sequence set";
		return -1;
	}
	if (strcmp(str, "$") == 0) {
		/* SEARCHRES (RFC 5182): what the last SEARCH saved */
		for (size_t i = 0; map != NULL && i < s->n_searchres; i++)
			imap_view_clip(map, s->searchres[i].first, s->searchres[i].last, &l);
		*ranges_r = l.r;
		*n_r = l.n;
		return 0;
	}
	if (imap_seqset_parse(str, IMAP_SEQSET_MAX_RANGES, &set, error_r) < 0)
		return -1;
	if (map == NULL) {
		imap_seqset_deinit(&set);
		return 0;
	}
	uint32_t count = imap_uidmap_count(map);
	if (uid) {
		imap_seqset_resolve(&set, imap_uidmap_max_uid(map));
		for (size_t i = 0; i < set.count; i++)
			imap_view_clip(map, set.ranges[i].lo, set.ranges[i].hi, &l);
	} else {
		imap_seqset_resolve(&set, count);
		if (imap_seqset_max(&set) > count) {
			imap_seqset_deinit(&set);
			*error_r = "Invalid sequence number";
			return -1;
		}
		for (size_t i = 0; i < set.count; i++) {
			uint32_t lo = set.ranges[i].lo > 0 ? set.ranges[i].lo : 1;
			uint32_t hi = set.ranges[i].hi;
			if (lo > hi)
				continue;
			imap_range_list_add(&l, imap_uidmap_uid_of(map, lo), imap_uidmap_uid_of(map, hi));
		}
	}
	imap_seqset_deinit(&set);
	*ranges_r = l.r;
	*n_r = l.n;
	return 0;
}

uint32_t *imap_session_view_uids(const struct imap_session *s,
				 const struct search_uid_range *ranges, size_t n, size_t *n_r)
{
	const imap_uidmap *map = s->uidmap;
	uint32_t *uids = NULL;
	size_t k = 0, cap = 0;
	for (size_t i = 0; map != NULL && i < n; i++) {
		for (uint32_t seq = imap_uidmap_seq_ceil(map, ranges[i].first);
		     seq <= imap_uidmap_count(map); seq++) {
			uint32_t uid = imap_uidmap_uid_of(map, seq);
			if (uid > ranges[i].last)
				break;
			if (k == cap) {
				cap = cap == 0 ? 64 : cap * 2;
				uids = xrealloc(uids, cap * sizeof(*uids));
			}
			uids[k++] = uid;
		}
	}
	*n_r = k;
	return uids;
}
