/* imap-uidmap.c: see imap-uidmap.h.
 *
 * Both shapes keep count, max_uid and n_runs (the number of runs of
 * consecutive UIDs), so the size of the other shape is known at any time
 * without a scan: runs cost 8 bytes a run, the bitmap (max - min + 1) / 8
 * bytes plus 4 bytes a block. The shape changes when the other one is at
 * most half as large (the factor keeps a map that sits near the balance
 * from being converted back and forth).
 */
#include "imap-uidmap.h"

#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

#define UIDMAP_WORDS_PER_BLOCK (IMAP_UIDMAP_BLOCK_BITS / 64u)

struct uidmap_run {
	uint32_t uid; /* first UID of the run */
	uint32_t seq; /* its sequence number */
};

struct imap_uidmap {
	uint32_t count;
	uint32_t max_uid;
	uint32_t n_runs;
	int bitmap;
	/* runs shape */
	struct uidmap_run *runs;
	uint32_t runs_cap;
	/* bitmap shape: bit i is UID base + i; nbits = max_uid - base + 1 */
	uint32_t base;
	uint32_t nbits;
	uint64_t *words;
	uint32_t *rank; /* per block: set bits before it */
	size_t words_cap;
};

static size_t uidmap_words_for(uint64_t nbits)
{
	return (size_t)((nbits + 63u) / 64u);
}

static size_t uidmap_blocks_for(uint64_t nbits)
{
	return (size_t)((nbits + IMAP_UIDMAP_BLOCK_BITS - 1u) / IMAP_UIDMAP_BLOCK_BITS);
}

static uint64_t uidmap_runs_bytes(uint32_t n_runs)
{
	return (uint64_t)n_runs * sizeof(struct uidmap_run);
}

static uint64_t uidmap_bitmap_bytes(uint64_t span)
{
	return uidmap_words_for(span) * 8u + uidmap_blocks_for(span) * 4u;
}

imap_uidmap *imap_uidmap_create(void)
{
	return xcalloc(1, sizeof(struct imap_uidmap));
}

static void uidmap_clear(imap_uidmap *map)
{
	free(map->runs);
	free(map->words);
	free(map->rank);
	memset(map, 0, sizeof(*map));
}

void imap_uidmap_destroy(imap_uidmap **mapp)
{
	imap_uidmap *map = *mapp;
	if (map == NULL)
		return;
	uidmap_clear(map);
	free(map);
	*mapp = NULL;
}

uint32_t imap_uidmap_count(const imap_uidmap *map)
{
	return map->count;
}

uint32_t imap_uidmap_max_uid(const imap_uidmap *map)
{
	return map->max_uid;
}

int imap_uidmap_is_bitmap(const imap_uidmap *map)
{
	return map->bitmap;
}

size_t imap_uidmap_memory(const imap_uidmap *map)
{
	size_t n = sizeof(*map) + (size_t)map->runs_cap * sizeof(struct uidmap_run);
	if (map->words != NULL)
		n += map->words_cap * 8u + uidmap_blocks_for((uint64_t)map->words_cap * 64u) * 4u;
	return n;
}

/* ---- bitmap helpers --------------------------------------------------- */

static uint32_t uidmap_popcount(uint64_t w)
{
	return (uint32_t)__builtin_popcountll(w);
}

/* Recompute the rank index (after removals or a build). */
static void uidmap_rank_rebuild(imap_uidmap *map)
{
	size_t blocks = uidmap_blocks_for(map->nbits);
	size_t words = uidmap_words_for(map->nbits);
	uint32_t total = 0;
	for (size_t b = 0; b < blocks; b++) {
		map->rank[b] = total;
		for (size_t w = b * UIDMAP_WORDS_PER_BLOCK;
		     w < (b + 1) * UIDMAP_WORDS_PER_BLOCK && w < words; w++)
			total += uidmap_popcount(map->words[w]);
	}
}

/* Room for nbits bits (words zeroed past the old end, rank sized too). */
static void uidmap_bitmap_reserve(imap_uidmap *map, uint64_t nbits, int exact)
{
	size_t need = uidmap_words_for(nbits);
	if (need <= map->words_cap)
		return;
	size_t cap = map->words_cap == 0 ? UIDMAP_WORDS_PER_BLOCK : map->words_cap;
	while (cap < need)
		cap = exact ? need : cap * 2;
	/* whole blocks, so the rank array matches */
	cap = (cap + UIDMAP_WORDS_PER_BLOCK - 1) / UIDMAP_WORDS_PER_BLOCK * UIDMAP_WORDS_PER_BLOCK;
	map->words = xrealloc(map->words, cap * 8u);
	memset(map->words + map->words_cap, 0, (cap - map->words_cap) * 8u);
	map->rank = xrealloc(map->rank, cap / UIDMAP_WORDS_PER_BLOCK * 4u);
	map->words_cap = cap;
}

/* Set bits before bit i (i < nbits). */
static uint32_t uidmap_bitmap_rank(const imap_uidmap *map, uint32_t i)
{
	uint32_t block = i / IMAP_UIDMAP_BLOCK_BITS;
	uint32_t r = map->rank[block];
	uint32_t w = block * UIDMAP_WORDS_PER_BLOCK;
	for (; w < i / 64u; w++)
		r += uidmap_popcount(map->words[w]);
	if (i % 64u != 0)
		r += uidmap_popcount(map->words[w] & ((UINT64_C(1) << (i % 64u)) - 1u));
	return r;
}

static int uidmap_bit(const imap_uidmap *map, uint32_t i)
{
	return (map->words[i / 64u] >> (i % 64u)) & 1u;
}

/* ---- shape changes ---------------------------------------------------- */

/* Runs -> bitmap (map->runs describe the content). */
static void uidmap_to_bitmap(imap_uidmap *map)
{
	uint32_t base = map->runs[0].uid;
	map->base = base;
	map->nbits = map->max_uid - base + 1u;
	map->words_cap = 0;
	uidmap_bitmap_reserve(map, map->nbits, 1);
	for (uint32_t r = 0; r < map->n_runs; r++) {
		uint32_t len = (r + 1 < map->n_runs ? map->runs[r + 1].seq : map->count + 1u) -
			       map->runs[r].seq;
		uint32_t bit = map->runs[r].uid - base;
		for (uint32_t k = 0; k < len; k++, bit++)
			map->words[bit / 64u] |= UINT64_C(1) << (bit % 64u);
	}
	uidmap_rank_rebuild(map);
	free(map->runs);
	map->runs = NULL;
	map->runs_cap = 0;
	map->bitmap = 1;
}

/* Bitmap -> runs. */
static void uidmap_to_runs(imap_uidmap *map)
{
	struct uidmap_run *runs = xcalloc(map->n_runs > 0 ? map->n_runs : 1, sizeof(*runs));
	uint32_t n = 0, seq = 1;
	int prev = 0;
	for (uint32_t i = 0; i < map->nbits; i++) {
		int set = uidmap_bit(map, i);
		if (set && !prev && n < map->n_runs)
			runs[n++] = (struct uidmap_run){ map->base + i, seq };
		seq += (uint32_t)set;
		prev = set;
	}
	free(map->words);
	free(map->rank);
	map->words = NULL;
	map->rank = NULL;
	map->words_cap = 0;
	map->nbits = 0;
	map->base = 0;
	map->runs = runs;
	map->runs_cap = map->n_runs > 0 ? map->n_runs : 1;
	map->n_runs = n;
	map->bitmap = 0;
}

/* Pick the smaller shape (see the file comment). */
static void uidmap_rebalance(imap_uidmap *map)
{
	if (map->count == 0) {
		uidmap_clear(map);
		return;
	}
	uint64_t runs = uidmap_runs_bytes(map->n_runs);
	uint64_t min = map->bitmap ? map->base : map->runs[0].uid;
	uint64_t bitmap = uidmap_bitmap_bytes((uint64_t)map->max_uid - min + 1u);
	if (!map->bitmap && bitmap * 2u <= runs)
		uidmap_to_bitmap(map);
	else if (map->bitmap && runs * 2u <= bitmap)
		uidmap_to_runs(map);
}

/* ---- building --------------------------------------------------------- */

int imap_uidmap_set(imap_uidmap *map, const struct search_uid_range *ranges, size_t n)
{
	uint64_t count = 0;
	uidmap_clear(map);
	for (size_t i = 0; i < n; i++) {
		if (ranges[i].first == 0 || ranges[i].first > ranges[i].last ||
		    (i > 0 && ranges[i].first <= ranges[i - 1].last))
			return -1;
		count += (uint64_t)ranges[i].last - ranges[i].first + 1u;
	}
	if (count > UINT32_MAX - 1u)
		return -1;
	if (n == 0)
		return 0;
	/* adjacent ranges ([1,3],[4,6]) make one run */
	size_t runs = 1;
	for (size_t i = 1; i < n; i++)
		runs += ranges[i].first != ranges[i - 1].last + 1u;
	map->runs = xcalloc(runs, sizeof(*map->runs));
	map->runs_cap = (uint32_t)runs;
	uint32_t seq = 1;
	for (size_t i = 0; i < n; i++) {
		if (i == 0 || ranges[i].first != ranges[i - 1].last + 1u)
			map->runs[map->n_runs++] = (struct uidmap_run){ ranges[i].first, seq };
		seq += ranges[i].last - ranges[i].first + 1u;
	}
	map->count = (uint32_t)count;
	map->max_uid = ranges[n - 1].last;
	uidmap_rebalance(map);
	return 0;
}

int imap_uidmap_append(imap_uidmap *map, uint32_t uid)
{
	if (uid == 0 || uid <= map->max_uid || map->count == UINT32_MAX - 1u)
		return -1;
	int new_run = map->count == 0 || uid != map->max_uid + 1u;
	if (map->bitmap) {
		uint32_t bit = uid - map->base;
		uint32_t old_blocks = (uint32_t)uidmap_blocks_for(map->nbits);
		uidmap_bitmap_reserve(map, (uint64_t)bit + 1u, 0);
		map->nbits = bit + 1u;
		/* blocks that start after the old end have everything before them */
		for (uint32_t b = old_blocks; b < uidmap_blocks_for(map->nbits); b++)
			map->rank[b] = map->count;
		map->words[bit / 64u] |= UINT64_C(1) << (bit % 64u);
	} else {
		if (new_run) {
			if (map->n_runs == map->runs_cap) {
				map->runs_cap = map->runs_cap == 0 ? 4 : map->runs_cap * 2u;
				map->runs = xrealloc(map->runs, map->runs_cap * sizeof(*map->runs));
			}
			map->runs[map->n_runs] = (struct uidmap_run){ uid, map->count + 1u };
		}
	}
	map->n_runs += (uint32_t)new_run;
	map->count++;
	map->max_uid = uid;
	if (new_run)
		uidmap_rebalance(map);
	return 0;
}

uint32_t imap_uidmap_remove(imap_uidmap *map, const uint32_t *uids, size_t n)
{
	uint32_t removed = 0;
	if (n == 0 || map->count == 0)
		return 0;
	if (map->bitmap) {
		for (size_t i = 0; i < n; i++) {
			if (uids[i] < map->base || uids[i] - map->base >= map->nbits)
				continue;
			uint32_t bit = uids[i] - map->base;
			if (!uidmap_bit(map, bit))
				continue;
			map->words[bit / 64u] &= ~(UINT64_C(1) << (bit % 64u));
			removed++;
		}
		if (removed == 0)
			return 0;
		map->count -= removed;
		if (map->count == 0) {
			uidmap_clear(map);
			return removed;
		}
		/* trim both ends, recount runs */
		uint32_t lo = 0, hi = map->nbits;
		while (!uidmap_bit(map, lo))
			lo++;
		while (!uidmap_bit(map, hi - 1u))
			hi--;
		if (lo > 0) {
			/* shift down by whole words only; keep base aligned to lo's word */
			uint32_t shift_words = lo / 64u;
			size_t words = uidmap_words_for(hi);
			memmove(map->words, map->words + shift_words, (words - shift_words) * 8u);
			memset(map->words + (words - shift_words), 0,
			       (map->words_cap - (words - shift_words)) * 8u);
			map->base += shift_words * 64u;
			hi -= shift_words * 64u;
		}
		map->nbits = hi;
		map->max_uid = map->base + hi - 1u;
		size_t words = uidmap_words_for(hi);
		if (hi % 64u != 0)
			map->words[words - 1] &= (UINT64_C(1) << (hi % 64u)) - 1u;
		if (words < map->words_cap)
			memset(map->words + words, 0, (map->words_cap - words) * 8u);
		uint32_t runs = 0;
		int prev = 0;
		for (uint32_t i = 0; i < map->nbits; i++) {
			int set = uidmap_bit(map, i);
			runs += (uint32_t)(set && !prev);
			prev = set;
		}
		map->n_runs = runs;
		uidmap_rank_rebuild(map);
		uidmap_rebalance(map);
		return removed;
	}
	/* runs: rebuild in one pass (each removal can split a run) */
	struct uidmap_run *out = xcalloc((size_t)map->n_runs + n + 1u, sizeof(*out));
	uint32_t n_out = 0, seq = 1;
	size_t k = 0;
	for (uint32_t r = 0; r < map->n_runs; r++) {
		uint32_t first = map->runs[r].uid;
		uint32_t len = (r + 1 < map->n_runs ? map->runs[r + 1].seq : map->count + 1u) -
			       map->runs[r].seq;
		uint64_t last = (uint64_t)first + len - 1u;
		uint64_t cur = first; /* next UID of this run not yet placed */
		while (k < n && uids[k] < cur)
			k++;
		while (k < n && uids[k] <= last) {
			if (uids[k] > cur) {
				out[n_out++] = (struct uidmap_run){ (uint32_t)cur, seq };
				seq += (uint32_t)(uids[k] - cur);
			}
			removed++;
			cur = (uint64_t)uids[k] + 1u;
			k++;
			while (k < n && uids[k] < cur) /* duplicates */
				k++;
		}
		if (cur <= last) {
			out[n_out++] = (struct uidmap_run){ (uint32_t)cur, seq };
			seq += (uint32_t)(last - cur + 1u);
		}
	}
	free(map->runs);
	map->runs = out;
	map->n_runs = n_out;
	map->runs_cap = (uint32_t)map->n_runs + (uint32_t)n + 1u;
	map->count -= removed;
	if (map->count == 0) {
		uidmap_clear(map);
		return removed;
	}
	/* give the spare room back */
	map->runs = xrealloc(map->runs, n_out * sizeof(*map->runs));
	map->runs_cap = n_out;
	uint32_t r = n_out - 1u;
	map->max_uid = map->runs[r].uid + (map->count - map->runs[r].seq);
	uidmap_rebalance(map);
	return removed;
}

/* ---- lookups ---------------------------------------------------------- */

/* Runs: index of the last run whose first UID is <= uid (-1: none). */
static long uidmap_run_by_uid(const imap_uidmap *map, uint32_t uid)
{
	long lo = 0, hi = (long)map->n_runs - 1, found = -1;
	while (lo <= hi) {
		long mid = lo + (hi - lo) / 2;
		if (map->runs[mid].uid <= uid) {
			found = mid;
			lo = mid + 1;
		} else {
			hi = mid - 1;
		}
	}
	return found;
}

static uint32_t uidmap_run_len(const imap_uidmap *map, uint32_t r)
{
	return (r + 1 < map->n_runs ? map->runs[r + 1].seq : map->count + 1u) - map->runs[r].seq;
}

uint32_t imap_uidmap_uid_of(const imap_uidmap *map, uint32_t seq)
{
	if (seq == 0 || seq > map->count)
		return 0;
	if (!map->bitmap) {
		long lo = 0, hi = (long)map->n_runs - 1, found = 0;
		while (lo <= hi) {
			long mid = lo + (hi - lo) / 2;
			if (map->runs[mid].seq <= seq) {
				found = mid;
				lo = mid + 1;
			} else {
				hi = mid - 1;
			}
		}
		return map->runs[found].uid + (seq - map->runs[found].seq);
	}
	/* the last block with fewer than seq bits before it */
	long lo = 0, hi = (long)uidmap_blocks_for(map->nbits) - 1, block = 0;
	while (lo <= hi) {
		long mid = lo + (hi - lo) / 2;
		if (map->rank[mid] < seq) {
			block = mid;
			lo = mid + 1;
		} else {
			hi = mid - 1;
		}
	}
	uint32_t left = seq - map->rank[block]; /* the left-th set bit from here */
	size_t w = (size_t)block * UIDMAP_WORDS_PER_BLOCK;
	for (;; w++) {
		uint32_t c = uidmap_popcount(map->words[w]);
		if (c >= left)
			break;
		left -= c;
	}
	uint64_t word = map->words[w];
	for (uint32_t k = 1; k < left; k++)
		word &= word - 1u; /* drop the lowest set bit */
	return map->base + (uint32_t)(w * 64u) + (uint32_t)__builtin_ctzll(word);
}

uint32_t imap_uidmap_seq_of(const imap_uidmap *map, uint32_t uid)
{
	if (uid == 0 || map->count == 0 || uid > map->max_uid)
		return 0;
	if (!map->bitmap) {
		long r = uidmap_run_by_uid(map, uid);
		if (r < 0 || uid - map->runs[r].uid >= uidmap_run_len(map, (uint32_t)r))
			return 0;
		return map->runs[r].seq + (uid - map->runs[r].uid);
	}
	if (uid < map->base)
		return 0;
	uint32_t bit = uid - map->base;
	if (!uidmap_bit(map, bit))
		return 0;
	return uidmap_bitmap_rank(map, bit) + 1u;
}

uint32_t imap_uidmap_seq_ceil(const imap_uidmap *map, uint32_t uid)
{
	if (map->count == 0 || uid > map->max_uid)
		return map->count + 1u;
	if (!map->bitmap) {
		long r = uidmap_run_by_uid(map, uid);
		if (r < 0)
			return 1;
		uint32_t off = uid - map->runs[r].uid;
		uint32_t len = uidmap_run_len(map, (uint32_t)r);
		return off < len ? map->runs[r].seq + off : map->runs[r].seq + len;
	}
	if (uid <= map->base)
		return 1;
	return uidmap_bitmap_rank(map, uid - map->base) + 1u;
}
