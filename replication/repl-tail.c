/* repl-tail.c: a partition's most recent log entries in memory (the
 * contract is in repl-private.h). A ring of entries whose indexes follow
 * each other: first, first + 1, ... first + n - 1. */
#include "repl-private.h"

#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

void repl_tail_init(struct repl_tail *t)
{
	memset(t, 0, sizeof *t);
}

static struct repl_tail_entry *tail_slot(const struct repl_tail *t, size_t i)
{
	return &t->ring[(t->head + i) & (t->cap - 1)];
}

void repl_tail_clear(struct repl_tail *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(tail_slot(t, i)->payload);
	t->head = t->n = 0;
	t->bytes = 0;
	t->first = 0;
}

void repl_tail_deinit(struct repl_tail *t)
{
	repl_tail_clear(t);
	free(t->ring);
	t->ring = NULL;
	t->cap = 0;
}

uint64_t repl_tail_last(const struct repl_tail *t)
{
	return t->n > 0 ? t->first + t->n - 1 : 0;
}

const struct repl_tail_entry *repl_tail_at(const struct repl_tail *t, uint64_t index)
{
	if (t->n == 0 || index < t->first || index - t->first >= t->n)
		return NULL;
	return tail_slot(t, (size_t)(index - t->first));
}

/* Drop the first entry. */
static void tail_pop_front(struct repl_tail *t)
{
	struct repl_tail_entry *e = tail_slot(t, 0);
	t->bytes -= e->len;
	free(e->payload);
	e->payload = NULL;
	t->head = (t->head + 1) & (t->cap - 1);
	t->first++;
	if (--t->n == 0)
		t->head = 0;
}

void repl_tail_drop_from(struct repl_tail *t, uint64_t index)
{
	if (t->n == 0 || index > repl_tail_last(t))
		return;
	if (index <= t->first) {
		repl_tail_clear(t);
		return;
	}
	while (repl_tail_last(t) >= index) {
		struct repl_tail_entry *e = tail_slot(t, t->n - 1);
		t->bytes -= e->len;
		free(e->payload);
		e->payload = NULL;
		t->n--;
	}
}

void repl_tail_push(struct repl_tail *t, uint64_t index, uint64_t epoch, int kind,
		    uint8_t *payload, size_t len)
{
	if (t->n > 0 && index != repl_tail_last(t) + 1) {
		if (index > t->first && index <= repl_tail_last(t))
			repl_tail_drop_from(t, index);   /* overwritten from there on */
		else
			repl_tail_clear(t);              /* a gap, or before the first */
	}
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		struct repl_tail_entry *ring = xcalloc(cap, sizeof *ring);
		for (size_t i = 0; i < t->n; i++)
			ring[i] = *tail_slot(t, i);
		free(t->ring);
		t->ring = ring;
		t->cap = cap;
		t->head = 0;
	}
	if (t->n == 0)
		t->first = index;
	struct repl_tail_entry *e = tail_slot(t, t->n);
	*e = (struct repl_tail_entry){ .epoch = epoch, .kind = kind, .payload = payload, .len = len };
	t->n++;
	t->bytes += len;
}

void repl_tail_trim(struct repl_tail *t, uint64_t upto, uint64_t keep_from, size_t max_entries,
		    size_t max_bytes)
{
	while (t->n > 0 && t->first <= upto &&
	       (t->first < keep_from || t->n > max_entries || t->bytes > max_bytes))
		tail_pop_front(t);
}
