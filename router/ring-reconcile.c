/* ring-reconcile.c: the controller's rules over one map (ring_map_reconcile
 * in ring.h). Pure: the controller (controller.c) reads etcd, calls this,
 * and writes the result with one compare-and-swap.
 *
 * Rules 1-5 run per partition (ring__partition); rule 6, rebalancing, runs
 * over the whole map afterwards, because it looks at every partition first.
 *
 * Each partition is worked on as lists of node ids (pointers into old's
 * node table or the caller's records, both outliving the call), then the
 * new map's node table is rebuilt from every id still named.
 */
#include "ring.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

typedef struct ring__work {
	const char *r[RING_SLOTS_MAX];
	const char *i[RING_SLOTS_MAX];
	uint32_t n_r, n_i;
} ring__work;

typedef struct ring__ctx {
	const ring_node_info *nodes;
	size_t n_nodes;
	const char *const *alive;
	size_t n_alive;
} ring__ctx;

/* in bit order of enum ring_reason */
static const char *const ring__reason_table[] = {
	"promote", "drop", "join", "drain", "insync", "rebalance",
};

const char *ring_reason_names(unsigned reasons, char *buf, size_t size)
{
	size_t len = 0;
	buf[0] = '\0';
	for (size_t k = 0; k < sizeof ring__reason_table / sizeof ring__reason_table[0]; k++) {
		if ((reasons & (1u << k)) == 0)
			continue;
		int n = snprintf(buf + len, size - len, "%s%s", len > 0 ? "," : "",
				 ring__reason_table[k]);
		if (n < 0 || (size_t)n >= size - len)
			break;
		len += (size_t)n;
	}
	return buf;
}

static int ring__in(const char *const *list, uint32_t n, const char *id)
{
	for (uint32_t k = 0; k < n; k++) {
		if (strcmp(list[k], id) == 0)
			return 1;
	}
	return 0;
}

static void ring__remove(const char **list, uint32_t *n, const char *id)
{
	for (uint32_t k = 0; k < *n; k++) {
		if (strcmp(list[k], id) == 0) {
			memmove(&list[k], &list[k + 1], (*n - k - 1) * sizeof *list);
			(*n)--;
			return;
		}
	}
}

static const ring_node_info *ring__record(const ring__ctx *ctx, const char *id)
{
	for (size_t k = 0; k < ctx->n_nodes; k++) {
		if (strcmp(ctx->nodes[k].id, id) == 0)
			return &ctx->nodes[k];
	}
	return NULL;
}

static int ring__alive(const ring__ctx *ctx, const char *id)
{
	for (size_t k = 0; k < ctx->n_alive; k++) {
		if (strcmp(ctx->alive[k], id) == 0)
			return 1;
	}
	return 0;
}

/* Usable: has a record and an alive key. */
static int ring__up(const ring__ctx *ctx, const char *id)
{
	return ring__record(ctx, id) != NULL && ring__alive(ctx, id);
}

/* 1 when node reported being caught up at epoch on partition p: its log
 * then matched the primary's commit at that epoch, and every later commit
 * at that epoch needed its ack, so it holds every acknowledged write. A
 * member of "i" without such a report may have joined "i" so recently
 * that the primary, still at the older epoch, committed entries without
 * it: only such a report makes a planned move to it safe. */
static int ring__current(const ring_progress *progress, size_t n_progress, uint32_t p,
			 const char *node, uint64_t epoch)
{
	for (size_t k = 0; k < n_progress; k++) {
		if (progress[k].partition == p && progress[k].epoch == epoch &&
		    strcmp(progress[k].node, node) == 0)
			return 1;
	}
	return 0;
}

/* ring__current for a node that was in "i" of the old map (i0): only its
 * report proves it holds every write acknowledged at that epoch. A node
 * that entered "i" in this very pass (rule 2, on a report it made while
 * outside "i") was not needed for the commits that followed its report:
 * the old primary may have committed entries it lacks, and as primary its
 * barrier would conflict with them on every replica (the partition would
 * commit nothing again). It becomes eligible at the next epoch, once it
 * reports caught up as a member. */
static int ring__current_member(const ring_progress *progress, size_t n_progress, uint32_t p,
				const char *node, uint64_t epoch, const char *const *i0,
				uint32_t n_i0)
{
	return ring__in(i0, n_i0, node) && ring__current(progress, n_progress, p, node, epoch);
}

/* Make id the primary (it is already in r). */
static void ring__make_primary(ring__work *w, const char *id)
{
	ring__remove(w->r, &w->n_r, id);
	memmove(&w->r[1], &w->r[0], w->n_r * sizeof *w->r);
	w->r[0] = id;
	w->n_r++;
}

/* Rules 1-5 of ring.h on one partition; returns the reason bits. */
static unsigned ring__partition(const ring__ctx *ctx, ring__work *w, const char *const *target,
				uint32_t n_target, uint64_t epoch, uint32_t p,
				const ring_progress *progress, size_t n_progress)
{
	unsigned reasons = 0;
	/* "i" as the old map has it, before any rule below changes it */
	const char *i0[RING_SLOTS_MAX];
	uint32_t n_i0 = w->n_i;
	memcpy(i0, w->i, n_i0 * sizeof *i0);
	/* 1. a dead replica can no longer acknowledge: the primary must stop
	 * counting on it, so it leaves "i" (the primary itself stays until
	 * someone can take over: it may be the only copy) */
	for (uint32_t k = 0; k < w->n_i;) {
		const char *id = w->i[k];
		if (w->n_r > 0 && strcmp(id, w->r[0]) != 0 && !ring__up(ctx, id)) {
			ring__remove(w->i, &w->n_i, id);
			reasons |= RING_REASON_DROP;
		} else {
			k++;
		}
	}
	/* 2. caught up at the current epoch: nothing changed since */
	for (size_t k = 0; k < n_progress; k++) {
		const ring_progress *pr = &progress[k];
		if (pr->partition != p || pr->epoch != epoch || !ring__in(w->r, w->n_r, pr->node) ||
		    ring__in(w->i, w->n_i, pr->node) || !ring__up(ctx, pr->node))
			continue;
		for (uint32_t j = 0; j < w->n_r; j++) {
			if (strcmp(w->r[j], pr->node) == 0)
				w->i[w->n_i++] = w->r[j];
		}
		reasons |= RING_REASON_INSYNC;
	}
	/* 3. promotion: only an in-sync member holds every acknowledged write */
	if (w->n_r > 0 && (!ring__up(ctx, w->r[0]) || !ring__in(w->i, w->n_i, w->r[0]))) {
		/* prefer a member caught up at this epoch (ring__current); any
		 * alive member of "i" otherwise: the partition must not stay
		 * down, and the others refuse a conflicting log (it then waits) */
		const char *next = NULL, *any = NULL;
		for (uint32_t k = 0; k < w->n_i && next == NULL; k++) {
			if (strcmp(w->i[k], w->r[0]) == 0 || !ring__up(ctx, w->i[k]) ||
			    !ring__in(i0, n_i0, w->i[k]))
				continue;
			if (any == NULL)
				any = w->i[k];
			if (ring__current_member(progress, n_progress, p, w->i[k], epoch, i0,
						 n_i0))
				next = w->i[k];
		}
		if (next == NULL)
			next = any;
		if (next != NULL) {
			const char *old = w->r[0];
			ring__remove(w->i, &w->n_i, old);
			ring__make_primary(w, next);
			reasons |= RING_REASON_PROMOTE;
		}
	}
	/* 4. new placement: join "r" only; "i" waits for the progress report */
	for (uint32_t k = 0; k < n_target; k++) {
		if (!ring__in(w->r, w->n_r, target[k]) && w->n_r < RING_SLOTS_MAX) {
			w->r[w->n_r++] = target[k];
			reasons |= RING_REASON_JOIN;
		}
	}
	/* 5. members the ring no longer wants */
	uint32_t placed_insync = 0;
	for (uint32_t k = 0; k < n_target; k++)
		placed_insync += (uint32_t)ring__in(w->i, w->n_i, target[k]);
	int complete = n_target > 0 && placed_insync == n_target;
	for (uint32_t k = 0; k < w->n_r;) {
		const char *id = w->r[k];
		const ring_node_info *rec = ring__record(ctx, id);
		int wanted = ring__in(target, n_target, id);
		int insync = ring__in(w->i, w->n_i, id);
		int go = 0;
		unsigned why = 0;
		if (!wanted && rec == NULL && k > 0) {
			go = 1; /* removed by the operator */
			why = RING_REASON_DROP;
		} else if (!wanted && !insync && k > 0) {
			go = 1; /* not in sync: nobody counts on its copy */
			why = RING_REASON_DROP;
		} else if (!wanted && complete && (rec == NULL || k > 0 || insync)) {
			go = 1;
			why = rec != NULL && rec->draining ? RING_REASON_DRAIN : RING_REASON_JOIN;
			if (rec == NULL)
				why = RING_REASON_DROP;
		}
		if (!go) {
			k++;
			continue;
		}
		if (k == 0) {
			/* hand the primary role to a placed in-sync node first
			 * (complete: target[0] is one) */
			const char *next = NULL;
			for (uint32_t j = 0; j < n_target && next == NULL; j++) {
				if (ring__up(ctx, target[j]) &&
				    ring__current_member(progress, n_progress, p, target[j], epoch,
							 i0, n_i0))
					next = target[j];
			}
			if (next == NULL) {
				k++;
				continue;
			}
			ring__make_primary(w, next);
			k = 0; /* id moved; rescan */
			ring__remove(w->i, &w->n_i, id);
			ring__remove(w->r, &w->n_r, id);
			reasons |= why;
			continue;
		}
		ring__remove(w->i, &w->n_i, id);
		ring__remove(w->r, &w->n_r, id);
		reasons |= why;
	}
	return reasons;
}

/* Settled: every node the ring places the partition on is up and in "i"
 * (nothing is joining, catching up or missing). */
static int ring__settled(const ring__ctx *ctx, const ring__work *w, const char *const *target,
			 uint32_t n_target)
{
	if (n_target == 0)
		return 0;
	for (uint32_t k = 0; k < n_target; k++) {
		if (!ring__in(w->i, w->n_i, target[k]) || !ring__up(ctx, target[k]))
			return 0;
	}
	return 1;
}

/* Rule 6 on one settled partition: move the primary to the preferred node
 * (target[0]). Returns 1 when it moved. */
static int ring__rebalance(const ring__ctx *ctx, ring__work *w, const char *preferred,
			   const ring_progress *progress, size_t n_progress, uint32_t p,
			   uint64_t epoch)
{
	const ring_node_info *rec = ring__record(ctx, preferred);
	if (w->n_r == 0 || strcmp(w->r[0], preferred) == 0)
		return 0;
	/* ring__settled already holds; the checks below are the rule itself,
	 * so that no future change of the caller can move a primary to a node
	 * that may miss an acknowledged write */
	if (rec == NULL || rec->draining || !ring__alive(ctx, preferred) ||
	    !ring__in(w->r, w->n_r, preferred) || !ring__in(w->i, w->n_i, preferred) ||
	    !ring__current(progress, n_progress, p, preferred, epoch))
		return 0;
	ring__make_primary(w, preferred);
	return 1;
}

static int ring__strp_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static uint32_t ring__index(char *const *nodes, size_t n, const char *id)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(nodes[mid], id);
		if (c == 0)
			return (uint32_t)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	abort(); /* every id was put in the table */
}

ring_map *ring_map_reconcile(const ring_map *old, const ring_node_info *nodes, size_t n_nodes,
			     const char *const *alive, size_t n_alive,
			     const ring_progress *progress, size_t n_progress,
			     const ring_reconcile_settings *settings, ring_change **changes_r,
			     size_t *n_changes_r)
{
	ring__ctx ctx = { nodes, n_nodes, alive, n_alive };
	const char **placeable = xcalloc(n_nodes + 1, sizeof *placeable);
	size_t n_placeable = 0;
	for (size_t k = 0; k < n_nodes; k++) {
		if (!nodes[k].draining)
			placeable[n_placeable++] = nodes[k].id;
	}
	/* the ring over placeable nodes, built once */
	ring_map *target = NULL;
	int dummy;
	target = ring_map_place(NULL, placeable, n_placeable, old->n_partitions,
				old->want_replicas, &dummy);

	ring__work *work = xcalloc((size_t)old->n_partitions + 1, sizeof *work);
	ring_change *changes = xcalloc((size_t)old->n_partitions + 1, sizeof *changes);
	size_t n_changes = 0;
	int settled = 1;
	for (uint32_t p = 0; p < old->n_partitions; p++) {
		const ring_part *op = &old->parts[p];
		ring__work *w = &work[p];
		w->n_r = op->n_r;
		w->n_i = op->n_i;
		for (uint32_t k = 0; k < op->n_r; k++)
			w->r[k] = old->nodes[op->r[k]];
		for (uint32_t k = 0; k < op->n_i; k++)
			w->i[k] = old->nodes[op->i[k]];
		const char *tgt[RING_REPLICAS_MAX];
		uint32_t n_tgt = target->parts[p].n_r;
		for (uint32_t k = 0; k < n_tgt; k++)
			tgt[k] = target->nodes[target->parts[p].r[k]];
		unsigned reasons = ring__partition(&ctx, w, tgt, n_tgt, op->epoch, p, progress,
						   n_progress);
		settled &= ring__settled(&ctx, w, tgt, n_tgt);
		/* a rule may undo another's change in one pass: compare */
		int same = w->n_r == op->n_r && w->n_i == op->n_i;
		for (uint32_t k = 0; same && k < w->n_r; k++)
			same = strcmp(w->r[k], old->nodes[op->r[k]]) == 0;
		for (uint32_t k = 0; same && k < w->n_i; k++)
			same = strcmp(w->i[k], old->nodes[op->i[k]]) == 0;
		if (!same) {
			changes[n_changes].partition = p;
			changes[n_changes].reasons = reasons;
			n_changes++;
		}
	}
	/* 6. rebalancing: only in a quiet pass of a settled map (see ring.h,
	 * docs/replication.md). A move costs the partition a short write pause
	 * (the old primary's pending proposals fail NOT_PRIMARY, the new one
	 * appends its barrier), so at most rebalance_max move per pass and the
	 * controller paces the passes. */
	int rebalance = n_changes == 0 && settled &&
			(settings == NULL || !settings->rebalance_off);
	uint32_t max_moves = settings != NULL ? settings->rebalance_max : 0;
	if (max_moves == 0) {
		max_moves = old->n_partitions / RING_REBALANCE_DIVISOR;
		if (max_moves == 0)
			max_moves = 1;
	}
	for (uint32_t p = 0; rebalance && p < old->n_partitions && n_changes < max_moves; p++) {
		const char *preferred = target->nodes[target->parts[p].r[0]];
		if (ring__rebalance(&ctx, &work[p], preferred, progress, n_progress, p,
				    old->parts[p].epoch)) {
			changes[n_changes].partition = p;
			changes[n_changes].reasons = RING_REASON_REBALANCE;
			n_changes++;
		}
	}
	if (n_changes == 0) {
		free(work);
		free(changes);
		free(placeable);
		ring_map_free(&target);
		*changes_r = NULL;
		*n_changes_r = 0;
		return NULL;
	}

	/* the node table: every placeable node and every id still named
	 * (strings are copied before target is freed) */
	size_t cap = n_placeable + 1, n_ids = 0;
	const char **ids = xmalloc(cap * sizeof *ids);
	for (size_t k = 0; k < n_placeable; k++)
		ids[n_ids++] = placeable[k];
	for (uint32_t p = 0; p < old->n_partitions; p++) {
		for (uint32_t k = 0; k < work[p].n_r; k++) {
			if (n_ids == cap) {
				cap *= 2;
				ids = xrealloc(ids, cap * sizeof *ids);
			}
			ids[n_ids++] = work[p].r[k];
		}
	}
	qsort(ids, n_ids, sizeof *ids, ring__strp_cmp);
	ring_map *map = xcalloc(1, sizeof *map);
	map->n_partitions = old->n_partitions;
	map->want_replicas = old->want_replicas;
	map->epoch = old->epoch + 1;
	map->nodes = xcalloc(n_ids + 1, sizeof *map->nodes);
	for (size_t k = 0; k < n_ids; k++) {
		if (k > 0 && strcmp(ids[k - 1], ids[k]) == 0)
			continue;
		map->nodes[map->n_nodes++] = xstrdup(ids[k]);
	}
	map->n_replicas = map->want_replicas < n_placeable ? map->want_replicas
							   : (uint32_t)n_placeable;
	map->parts = xcalloc((size_t)map->n_partitions + 1, sizeof *map->parts);
	size_t c = 0;
	for (uint32_t p = 0; p < map->n_partitions; p++) {
		ring_part *part = &map->parts[p];
		const ring__work *w = &work[p];
		int changed = c < n_changes && changes[c].partition == p;
		c += (size_t)changed;
		part->epoch = changed ? map->epoch : old->parts[p].epoch;
		part->n_r = w->n_r;
		part->n_i = w->n_i;
		for (uint32_t k = 0; k < w->n_r; k++)
			part->r[k] = ring__index(map->nodes, map->n_nodes, w->r[k]);
		for (uint32_t k = 0; k < w->n_i; k++)
			part->i[k] = ring__index(map->nodes, map->n_nodes, w->i[k]);
	}
	free(ids);
	free(work);
	free(placeable);
	ring_map_free(&target);
	*changes_r = changes;
	*n_changes_r = n_changes;
	return map;
}
