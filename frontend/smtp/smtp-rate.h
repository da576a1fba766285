/* smtp-rate.h: the submission's per-user outbound rate limit, and the
 * short cache of tenant settings it reads the limit from (docs/rate-limits.md).
 * Library mailsmtpmx.
 *
 * What is counted: each message an authenticated user submits with at
 * least one recipient outside our tenants, against the tenant's
 * outbound_per_hour (router/directory.h), over a sliding hour of one-minute
 * buckets: a message stops counting 59 to 60 minutes after it was taken.
 *
 * Where the counts live: in this object, i.e. in one frontend's memory.
 * Frontends share nothing per message (an etcd write per message would
 * cost more than the message), so each enforces the limit on what it
 * accepts: a user whose sessions are spread over F frontends can send up
 * to F times the limit. The frontend daemon owns one smtp_rate for all its
 * submission listeners (587 and 465 count together).
 *
 * Memory is bounded: at most max_users users (each ~350 bytes) and
 * max_tenants cached tenants; a new one replaces the least recently used.
 * A user replaced loses its counts (counted in evicted_active when any
 * were still in the window): only the max_users-th most recent sender of
 * this frontend can be forgotten early.
 *
 * Loop thread only (no locks). Every call takes the time in ms from a
 * monotonic clock (uv_now()), so tests drive the clock. Users and domains
 * are compared byte for byte: the caller normalises them.
 */
#ifndef MAIL_SMTP_RATE_H
#define MAIL_SMTP_RATE_H

#include <stddef.h>
#include <stdint.h>

#include "directory.h"

/* Users tracked at once (min, default, max). */
#define SMTP_RATE_USERS_MIN 16u
#define SMTP_RATE_USERS_DEFAULT 32768u
#define SMTP_RATE_USERS_MAX 1048576u
/* Tenants whose settings are cached at once. */
#define SMTP_RATE_TENANTS_DEFAULT 4096u
/* How long cached tenant settings are used before the directory is read
 * again: a `mailctl tenant set` takes effect within this long. */
#define SMTP_RATE_TENANT_TTL_MS 30000u
/* The window: this many buckets of a minute. */
#define SMTP_RATE_WINDOW_MINUTES 60u

struct smtp_rate_settings {
	unsigned max_users;     /* 0: SMTP_RATE_USERS_DEFAULT; else clamped to min..max */
	unsigned max_tenants;   /* 0: SMTP_RATE_TENANTS_DEFAULT */
	unsigned tenant_ttl_ms; /* 0: SMTP_RATE_TENANT_TTL_MS */
};

struct smtp_rate_stats {
	unsigned users;          /* tracked now */
	unsigned tenants;        /* cached now (fresh or not) */
	uint64_t limited;        /* messages refused by smtp_rate_take() */
	uint64_t evicted_active; /* users replaced while they had counts */
};

typedef struct smtp_rate smtp_rate;

/* A new, empty limiter (set may be NULL: every default). */
smtp_rate *smtp_rate_create(const struct smtp_rate_settings *set);
/* Free it and NULL *rate. */
void smtp_rate_destroy(smtp_rate **rate);

/* Messages of user counted in the window ending at now_ms. */
unsigned smtp_rate_count(smtp_rate *rate, const char *user, uint64_t now_ms);
/* 1 when user has limit messages or more in the window (one more would
 * be over it), else 0. Counts nothing; limit 0 (no limit): 0. */
int smtp_rate_over(smtp_rate *rate, const char *user, unsigned limit, uint64_t now_ms);
/* Count one message of user at now_ms, unless that would make more than
 * limit in the window. Returns 1 counted, 0 refused (nothing counted).
 * limit 0: nothing counted, 1. */
int smtp_rate_take(smtp_rate *rate, const char *user, unsigned limit, uint64_t now_ms);
/* Un-count the message smtp_rate_take() counted at taken_ms (the queue
 * did not accept it). Nothing when it left the window or the user was
 * replaced meanwhile. */
void smtp_rate_give_back(smtp_rate *rate, const char *user, uint64_t taken_ms, uint64_t now_ms);

/* The tenant-wide count (directory.h tenant_outbound_per_hour) is kept in
 * the users' table under the key "@<domain>", which no normalised address
 * can be: all of the tenant's users on this frontend count together, and
 * a message counts against both its user's and its tenant's limit. */
#define SMTP_RATE_TENANT_KEY_MAX 258u
/* "@" domain into key (size bytes, at least SMTP_RATE_TENANT_KEY_MAX). */
void smtp_rate_tenant_key(const char *domain, char *key, size_t size);

/* The cached settings of domain into *settings_r: 1 when they were put
 * less than the TTL before now_ms, else 0 (read the directory). */
int smtp_rate_tenant_get(smtp_rate *rate, const char *domain, uint64_t now_ms,
			 struct directory_tenant_settings *settings_r);
/* Cache domain's settings as read at now_ms (copied). */
void smtp_rate_tenant_put(smtp_rate *rate, const char *domain,
			  const struct directory_tenant_settings *settings, uint64_t now_ms);

void smtp_rate_stats_get(const smtp_rate *rate, struct smtp_rate_stats *stats_r);

#endif
