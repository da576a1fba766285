/* smtp-rate.c: see smtp-rate.h.
 *
 * Both tables (users, tenants) are one shape: a chained hash of entries
 * keyed by a string, threaded on a list from least to most recently used;
 * a full table recycles its least recently used entry. The hash has twice
 * as many slots as the table may hold entries, so chains stay short.
 */
#include "smtp-rate.h"

#include "util.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SMTP_RATE_MINUTE_MS 60000u

/* The common head of an entry (first member of each kind). */
struct rate_entry {
	struct rate_entry *chain;         /* next in the hash slot */
	struct rate_entry *older, *newer; /* the use list */
	uint64_t hash;
	char *key;
};

struct rate_table {
	struct rate_entry **slots;
	size_t mask;                      /* slots - 1 (a power of two) */
	unsigned n, max;
	struct rate_entry *oldest, *newest;
};

/* A user's window: buckets[m % 60] holds minute m's count, for the minutes
 * last_min - 59 .. last_min. */
struct rate_user {
	struct rate_entry e;
	uint64_t last_min;
	uint32_t total;
	uint32_t buckets[SMTP_RATE_WINDOW_MINUTES];
};

struct rate_tenant {
	struct rate_entry e;
	uint64_t at_ms;
	struct directory_tenant_settings settings;
};

struct smtp_rate {
	struct rate_table users;
	struct rate_table tenants;
	unsigned tenant_ttl_ms;
	uint64_t limited;
	uint64_t evicted_active;
};

/* ---- the table ------------------------------------------------------------ */

static void rate_table_init(struct rate_table *t, unsigned max)
{
	size_t slots = 16;
	while (slots < (size_t)max * 2)
		slots *= 2;
	memset(t, 0, sizeof *t);
	t->slots = xcalloc(slots, sizeof *t->slots);
	t->mask = slots - 1;
	t->max = max;
}

static void rate_list_unlink(struct rate_table *t, struct rate_entry *e)
{
	if (e->older != NULL)
		e->older->newer = e->newer;
	else
		t->oldest = e->newer;
	if (e->newer != NULL)
		e->newer->older = e->older;
	else
		t->newest = e->older;
	e->older = e->newer = NULL;
}

static void rate_list_push(struct rate_table *t, struct rate_entry *e)
{
	e->older = t->newest;
	e->newer = NULL;
	if (t->newest != NULL)
		t->newest->newer = e;
	else
		t->oldest = e;
	t->newest = e;
}

/* The entry of key, made the most recently used; NULL when absent. */
static struct rate_entry *rate_table_find(struct rate_table *t, const char *key, uint64_t hash)
{
	for (struct rate_entry *e = t->slots[hash & t->mask]; e != NULL; e = e->chain) {
		if (e->hash == hash && strcmp(e->key, key) == 0) {
			rate_list_unlink(t, e);
			rate_list_push(t, e);
			return e;
		}
	}
	return NULL;
}

/* Take e out of the table (its memory stays the caller's). */
static void rate_table_remove(struct rate_table *t, struct rate_entry *e)
{
	struct rate_entry **p = &t->slots[e->hash & t->mask];
	while (*p != e)
		p = &(*p)->chain;
	*p = e->chain;
	rate_list_unlink(t, e);
	t->n--;
}

/* An entry for key (absent from t): the least recently used one, taken out
 * and handed back through *victim_r for the caller to inspect and clear,
 * when t is full; else NULL in *victim_r and the caller allocates. Then
 * rate_table_add() puts it in. */
static void rate_table_make_room(struct rate_table *t, struct rate_entry **victim_r)
{
	*victim_r = NULL;
	if (t->n < t->max)
		return;
	struct rate_entry *v = t->oldest;
	rate_table_remove(t, v);
	free(v->key);
	v->key = NULL;
	*victim_r = v;
}

static void rate_table_add(struct rate_table *t, struct rate_entry *e, const char *key,
			   uint64_t hash)
{
	e->key = xstrdup(key);
	e->hash = hash;
	e->chain = t->slots[hash & t->mask];
	t->slots[hash & t->mask] = e;
	rate_list_push(t, e);
	t->n++;
}

static void rate_table_deinit(struct rate_table *t)
{
	struct rate_entry *e = t->oldest;
	while (e != NULL) {
		struct rate_entry *next = e->newer;
		free(e->key);
		free(e); /* the head is the first member of every kind */
		e = next;
	}
	free(t->slots);
	memset(t, 0, sizeof *t);
}

/* ---- users ---------------------------------------------------------------- */

/* Move u's window to end at minute now_min: minutes that left it are
 * dropped. The clock never goes back (uv_now); if it seemed to, the window
 * stays where it is. */
static void rate_user_advance(struct rate_user *u, uint64_t now_min)
{
	if (now_min <= u->last_min)
		return;
	if (now_min - u->last_min >= SMTP_RATE_WINDOW_MINUTES) {
		memset(u->buckets, 0, sizeof u->buckets);
		u->total = 0;
	} else {
		for (uint64_t m = u->last_min + 1; m <= now_min; m++) {
			uint32_t *b = &u->buckets[m % SMTP_RATE_WINDOW_MINUTES];
			u->total -= *b;
			*b = 0;
		}
	}
	u->last_min = now_min;
}

static struct rate_user *rate_user_find(smtp_rate *rate, const char *user, uint64_t now_ms)
{
	struct rate_entry *e = rate_table_find(&rate->users, user, util_hash64(user, strlen(user)));
	if (e == NULL)
		return NULL;
	struct rate_user *u = (struct rate_user *)e;
	rate_user_advance(u, now_ms / SMTP_RATE_MINUTE_MS);
	return u;
}

unsigned smtp_rate_count(smtp_rate *rate, const char *user, uint64_t now_ms)
{
	struct rate_user *u = rate_user_find(rate, user, now_ms);
	return u != NULL ? u->total : 0;
}

int smtp_rate_over(smtp_rate *rate, const char *user, unsigned limit, uint64_t now_ms)
{
	return limit > 0 && smtp_rate_count(rate, user, now_ms) >= limit;
}

int smtp_rate_take(smtp_rate *rate, const char *user, unsigned limit, uint64_t now_ms)
{
	if (limit == 0)
		return 1;
	uint64_t now_min = now_ms / SMTP_RATE_MINUTE_MS;
	struct rate_user *u = rate_user_find(rate, user, now_ms);
	if (u == NULL) {
		struct rate_entry *victim;
		rate_table_make_room(&rate->users, &victim);
		u = (struct rate_user *)victim;
		if (u == NULL) {
			u = xcalloc(1, sizeof *u);
		} else {
			/* a window that still held counts is forgotten early */
			rate_user_advance(u, now_min);
			if (u->total > 0)
				rate->evicted_active++;
			memset(u, 0, sizeof *u);
		}
		u->last_min = now_min;
		rate_table_add(&rate->users, &u->e, user, util_hash64(user, strlen(user)));
	}
	if (u->total >= limit) {
		rate->limited++;
		return 0;
	}
	u->buckets[now_min % SMTP_RATE_WINDOW_MINUTES]++;
	u->total++;
	return 1;
}

void smtp_rate_give_back(smtp_rate *rate, const char *user, uint64_t taken_ms, uint64_t now_ms)
{
	struct rate_user *u = rate_user_find(rate, user, now_ms);
	uint64_t taken_min = taken_ms / SMTP_RATE_MINUTE_MS;
	if (u == NULL || taken_min > u->last_min ||
	    u->last_min - taken_min >= SMTP_RATE_WINDOW_MINUTES)
		return;
	uint32_t *b = &u->buckets[taken_min % SMTP_RATE_WINDOW_MINUTES];
	if (*b > 0) {
		(*b)--;
		u->total--;
	}
}

/* ---- tenants --------------------------------------------------------------- */

void smtp_rate_tenant_key(const char *domain, char *key, size_t size)
{
	snprintf(key, size, "@%s", domain);
}

int smtp_rate_tenant_get(smtp_rate *rate, const char *domain, uint64_t now_ms,
			 struct directory_tenant_settings *settings_r)
{
	struct rate_entry *e =
		rate_table_find(&rate->tenants, domain, util_hash64(domain, strlen(domain)));
	if (e == NULL)
		return 0;
	struct rate_tenant *t = (struct rate_tenant *)e;
	if (now_ms < t->at_ms || now_ms - t->at_ms >= rate->tenant_ttl_ms)
		return 0;
	*settings_r = t->settings;
	return 1;
}

void smtp_rate_tenant_put(smtp_rate *rate, const char *domain,
			  const struct directory_tenant_settings *settings, uint64_t now_ms)
{
	uint64_t hash = util_hash64(domain, strlen(domain));
	struct rate_tenant *t = (struct rate_tenant *)rate_table_find(&rate->tenants, domain, hash);
	if (t == NULL) {
		struct rate_entry *victim;
		rate_table_make_room(&rate->tenants, &victim);
		t = victim != NULL ? (struct rate_tenant *)victim : xmalloc(sizeof *t);
		memset(t, 0, sizeof *t);
		rate_table_add(&rate->tenants, &t->e, domain, hash);
	}
	t->at_ms = now_ms;
	t->settings = *settings;
}

/* ---- lifetime ---------------------------------------------------------------- */

smtp_rate *smtp_rate_create(const struct smtp_rate_settings *set)
{
	struct smtp_rate_settings s = { 0 };
	if (set != NULL)
		s = *set;
	unsigned users = s.max_users != 0 ? s.max_users : SMTP_RATE_USERS_DEFAULT;
	if (users < SMTP_RATE_USERS_MIN)
		users = SMTP_RATE_USERS_MIN;
	if (users > SMTP_RATE_USERS_MAX)
		users = SMTP_RATE_USERS_MAX;
	smtp_rate *rate = xcalloc(1, sizeof *rate);
	rate_table_init(&rate->users, users);
	rate_table_init(&rate->tenants,
			s.max_tenants != 0 ? s.max_tenants : SMTP_RATE_TENANTS_DEFAULT);
	rate->tenant_ttl_ms = s.tenant_ttl_ms != 0 ? s.tenant_ttl_ms : SMTP_RATE_TENANT_TTL_MS;
	return rate;
}

void smtp_rate_destroy(smtp_rate **ratep)
{
	smtp_rate *rate = *ratep;
	if (rate == NULL)
		return;
	*ratep = NULL;
	rate_table_deinit(&rate->users);
	rate_table_deinit(&rate->tenants);
	free(rate);
}

void smtp_rate_stats_get(const smtp_rate *rate, struct smtp_rate_stats *stats_r)
{
	stats_r->users = rate->users.n;
	stats_r->tenants = rate->tenants.n;
	stats_r->limited = rate->limited;
	stats_r->evicted_active = rate->evicted_active;
}
