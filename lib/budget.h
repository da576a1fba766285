/* budget.h: a byte budget shared by the sessions of one daemon (message
 * bodies in flight in a frontend). Loop thread only; embedded in the
 * daemon's context. limit 0 = no limit (still counted). */
#ifndef MAIL_BUDGET_H
#define MAIL_BUDGET_H

#include <stddef.h>
#include <stdint.h>

struct mem_budget {
	size_t limit;
	size_t used;
	size_t peak;
	uint64_t refused; /* takes refused */
};

/* Take n bytes: 0, or -1 (over the limit; nothing taken). */
static inline int mem_budget_take(struct mem_budget *b, size_t n)
{
	if (b->limit != 0 && (n > b->limit || b->used > b->limit - n)) {
		b->refused++;
		return -1;
	}
	b->used += n;
	if (b->used > b->peak)
		b->peak = b->used;
	return 0;
}

static inline void mem_budget_give(struct mem_budget *b, size_t n)
{
	b->used = n > b->used ? 0 : b->used - n;
}

#endif
