/* greylist-cache.c: the passes an object saw recently (greylist-private.h).
 *
 * Why set-associative rather than a hash table with an LRU list: the
 * size is fixed at create, a lookup touches one set of four slots, and a
 * sender flooding new triplets can only push out entries of the sets its
 * ids fall in (SHA-256: it cannot choose them). Losing an entry costs one
 * etcd read, never a wrong answer: the cache only ever says "passed".
 */
#include "greylist-private.h"

#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

void greylist__cache_init(struct greylist__cache *cache, unsigned entries, unsigned ttl_s)
{
	pthread_mutex_init(&cache->mu, NULL);
	cache->n_sets = (entries + GREYLIST__CACHE_WAYS - 1) / GREYLIST__CACHE_WAYS;
	if (cache->n_sets == 0)
		cache->n_sets = 1;
	cache->slots = xcalloc(cache->n_sets * GREYLIST__CACHE_WAYS, sizeof *cache->slots);
	cache->ttl_ms = (int64_t)ttl_s * 1000;
}

void greylist__cache_deinit(struct greylist__cache *cache)
{
	free(cache->slots);
	cache->slots = NULL;
	pthread_mutex_destroy(&cache->mu);
}

static struct greylist__cache_slot *greylist__cache_set(struct greylist__cache *cache,
							 const uint8_t *id)
{
	uint64_t h;
	memcpy(&h, id, sizeof h); /* uniform bytes: any eight will do */
	return &cache->slots[(h % cache->n_sets) * GREYLIST__CACHE_WAYS];
}

/* Live at now: put less than ttl ago, and not in the future (a clock
 * that went back must not stretch an entry's life). */
static int greylist__cache_live(const struct greylist__cache *cache,
				const struct greylist__cache_slot *s, int64_t now_ms)
{
	return s->expires_ms != 0 && now_ms < s->expires_ms &&
	       now_ms >= s->expires_ms - cache->ttl_ms;
}

int greylist__cache_get(struct greylist__cache *cache, const uint8_t *id, int64_t now_ms,
			int64_t *stamp_r)
{
	int hit = 0;
	pthread_mutex_lock(&cache->mu);
	struct greylist__cache_slot *set = greylist__cache_set(cache, id);
	for (unsigned i = 0; i < GREYLIST__CACHE_WAYS; i++) {
		struct greylist__cache_slot *s = &set[i];
		if (memcmp(s->id, id, GREYLIST__CACHE_ID_LEN) != 0 || s->expires_ms == 0)
			continue;
		if (greylist__cache_live(cache, s, now_ms)) {
			hit = 1;
			if (stamp_r != NULL)
				*stamp_r = s->stamp_ms;
		} else {
			s->expires_ms = 0;
		}
		break;
	}
	pthread_mutex_unlock(&cache->mu);
	return hit;
}

void greylist__cache_put(struct greylist__cache *cache, const uint8_t *id, int64_t now_ms,
			 int64_t stamp_ms)
{
	pthread_mutex_lock(&cache->mu);
	struct greylist__cache_slot *set = greylist__cache_set(cache, id);
	struct greylist__cache_slot *victim = NULL;
	for (unsigned i = 0; i < GREYLIST__CACHE_WAYS; i++) {
		struct greylist__cache_slot *s = &set[i];
		if (s->expires_ms != 0 && memcmp(s->id, id, GREYLIST__CACHE_ID_LEN) == 0) {
			victim = s; /* the same id: renewed in place */
			break;
		}
		if (!greylist__cache_live(cache, s, now_ms)) {
			if (victim == NULL || greylist__cache_live(cache, victim, now_ms))
				victim = s;
		} else if (victim == NULL || (greylist__cache_live(cache, victim, now_ms) &&
					      s->expires_ms < victim->expires_ms)) {
			victim = s;
		}
	}
	memcpy(victim->id, id, GREYLIST__CACHE_ID_LEN);
	victim->expires_ms = now_ms + cache->ttl_ms;
	victim->stamp_ms = stamp_ms;
	pthread_mutex_unlock(&cache->mu);
}

void greylist__cache_forget(struct greylist__cache *cache, const uint8_t *id)
{
	pthread_mutex_lock(&cache->mu);
	struct greylist__cache_slot *set = greylist__cache_set(cache, id);
	for (unsigned i = 0; i < GREYLIST__CACHE_WAYS; i++) {
		if (memcmp(set[i].id, id, GREYLIST__CACHE_ID_LEN) == 0)
			set[i].expires_ms = 0;
	}
	pthread_mutex_unlock(&cache->mu);
}
