/* greylist.c: the greylist object, the decision per triplet, known domains,
 * and the shared leases in etcd (greylist.h says what and why).
 *
 * Ordering constraints:
 * - The cache is asked before etcd and before the outage backoff: a
 *   sender that passed keeps passing while etcd is away.
 * - The lease of a write is looked up just before the write, under
 *   lease_mu, so one thread resolves a new bucket while the others wait
 *   for its answer instead of each granting a lease of its own.
 * - A triplet enters the cache only after etcd holds its pass (the write
 *   succeeded, or the record read said so): a frontend never passes from
 *   memory what the cluster has not recorded.
 */
#include "greylist-private.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "etcd.h"
#include "log.h"
#include "mail-error.h"
#include "util.h"
#include "xalloc.h"

#define GREYLIST__HOUR_S 3600
#define GREYLIST__DAY_S 86400
#define GREYLIST__DAY_MS ((int64_t)GREYLIST__DAY_S * 1000)
/* Reads of a triplet that another frontend created, or that vanished
 * (its lease ran out) between our read and our create, before giving up. */
#define GREYLIST__CREATE_ATTEMPTS 3
/* Rounds of the lease registry (read, grant, register) per bucket. */
#define GREYLIST__LEASE_ATTEMPTS 3
/* Longest record read (bytes): ours are ~40; room for a newer writer's
 * fields, and a bound on what a tampered key makes us parse. */
#define GREYLIST__VALUE_MAX 4096u
/* Longest key we write: the triplets' prefix and 64 hex digits, or the
 * domains' prefix and 253 bytes. */
#define GREYLIST__KEY_MAX 320u

enum greylist__lease_kind {
	GREYLIST__LEASE_PENDING = 0, /* pending triplets */
	GREYLIST__LEASE_LONG = 1,    /* passed triplets, known domains */
	GREYLIST__LEASE_KINDS
};

struct greylist__lease_conf {
	int64_t width_ms; /* one lease per bucket this wide */
	int ttl_s;        /* the lease's TTL: the life a key needs + one bucket */
};

struct greylist__lease_slot {
	int64_t bucket; /* now_ms / width_ms of the cached lease */
	int64_t id;     /* 0: none cached */
};

struct greylist {
	struct greylist_settings set; /* every row in range */
	etcd_pool *pool;
	struct greylist__lease_conf lease_conf[GREYLIST__LEASE_KINDS];

	pthread_mutex_t lease_mu; /* guards lease[], and is held across the
				   * etcd calls that resolve a bucket */
	struct greylist__lease_slot lease[GREYLIST__LEASE_KINDS];

	struct greylist__cache cache;

	uint64_t unavailable_until_ms; /* monotonic; atomic */
	struct greylist_stats stats;   /* each field atomic */
};

/* A triplet's record: {"first":ms,"passed":ms-or-0}. */
struct greylist__record {
	int64_t first_ms;
	int64_t passed_ms;
};

static void greylist__count(uint64_t *counter)
{
	__atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
}

static int64_t greylist__day(int64_t ms)
{
	return ms / GREYLIST__DAY_MS;
}

/* ---- settings ------------------------------------------------------------ */

static int greylist__settings_check(struct greylist_settings *s)
{
	static const struct {
		size_t off;
		unsigned def, min, max;
		const char *name;
	} rows[] = {
#define GREYLIST__ROW(field, NAME)                                                              \
	{ offsetof(struct greylist_settings, field), GREYLIST_##NAME##_DEFAULT,                 \
	  GREYLIST_##NAME##_MIN, GREYLIST_##NAME##_MAX, #field }
		GREYLIST__ROW(retry_window_s, RETRY_WINDOW_S),
		GREYLIST__ROW(passed_ttl_s, PASSED_TTL_S),
		GREYLIST__ROW(cache_entries, CACHE_ENTRIES),
		GREYLIST__ROW(cache_ttl_s, CACHE_TTL_S),
		GREYLIST__ROW(unavailable_backoff_ms, UNAVAILABLE_BACKOFF_MS),
		GREYLIST__ROW(etcd_clients, ETCD_CLIENTS),
#undef GREYLIST__ROW
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		unsigned *v = (unsigned *)((char *)s + rows[i].off);
		if (*v == 0)
			*v = rows[i].def;
		if (*v < rows[i].min || *v > rows[i].max) {
			log_event(LOG_ERROR, "greylist",
				  "event=greylist_setting_invalid setting=%s value=%u min=%u max=%u",
				  rows[i].name, *v, rows[i].min, rows[i].max);
			return -1;
		}
	}
	return 0;
}

/* The longest a pending triplet must last: the window, or the longest
 * delay plus the least span a retry gets after it (greylist.h). */
static unsigned greylist__window_max_s(const struct greylist_settings *s)
{
	unsigned by_delay = GREYLIST_DELAY_MAX + GREYLIST_RETRY_SPAN_MIN_S;
	return s->retry_window_s > by_delay ? s->retry_window_s : by_delay;
}

greylist *greylist_create(const etcd_conf *conf, const struct greylist_settings *s)
{
	struct greylist_settings set = { 0 };
	if (s != NULL)
		set = *s;
	if (greylist__settings_check(&set) < 0)
		return NULL;
	if (sodium_init() < 0)
		abort();
	greylist *gl = xcalloc(1, sizeof *gl);
	gl->set = set;
	gl->pool = etcd_pool_create(conf, set.etcd_stats, set.etcd_clients);
	/* a key written anywhere in a bucket must last its full life: the
	 * TTL is that life plus the bucket's width */
	gl->lease_conf[GREYLIST__LEASE_PENDING] = (struct greylist__lease_conf){
		.width_ms = (int64_t)GREYLIST__HOUR_S * 1000,
		.ttl_s = (int)(greylist__window_max_s(&set) + GREYLIST__HOUR_S),
	};
	gl->lease_conf[GREYLIST__LEASE_LONG] = (struct greylist__lease_conf){
		.width_ms = GREYLIST__DAY_MS,
		.ttl_s = (int)(set.passed_ttl_s + GREYLIST__DAY_S),
	};
	pthread_mutex_init(&gl->lease_mu, NULL);
	greylist__cache_init(&gl->cache, set.cache_entries, set.cache_ttl_s);
	return gl;
}

void greylist_destroy(greylist **glp)
{
	greylist *gl = *glp;
	if (gl == NULL)
		return;
	*glp = NULL;
	etcd_pool_destroy(&gl->pool);
	greylist__cache_deinit(&gl->cache);
	pthread_mutex_destroy(&gl->lease_mu);
	free(gl);
}

void greylist_stats_get(const greylist *gl, struct greylist_stats *stats_r)
{
	stats_r->checks = __atomic_load_n(&gl->stats.checks, __ATOMIC_RELAXED);
	stats_r->deferred = __atomic_load_n(&gl->stats.deferred, __ATOMIC_RELAXED);
	stats_r->passed = __atomic_load_n(&gl->stats.passed, __ATOMIC_RELAXED);
	stats_r->errors = __atomic_load_n(&gl->stats.errors, __ATOMIC_RELAXED);
	stats_r->cache_hits = __atomic_load_n(&gl->stats.cache_hits, __ATOMIC_RELAXED);
	stats_r->etcd_requests = __atomic_load_n(&gl->stats.etcd_requests, __ATOMIC_RELAXED);
	stats_r->etcd_failures = __atomic_load_n(&gl->stats.etcd_failures, __ATOMIC_RELAXED);
	stats_r->leases_granted = __atomic_load_n(&gl->stats.leases_granted, __ATOMIC_RELAXED);
}

static const char *const greylist__reason_names[] = {
	[GREYLIST_REASON_NEW] = "new",         [GREYLIST_REASON_EARLY] = "early",
	[GREYLIST_REASON_EXPIRED] = "expired", [GREYLIST_REASON_RETRIED] = "retried",
	[GREYLIST_REASON_KNOWN] = "known",
};

const char *greylist_reason_name(enum greylist_reason reason)
{
	if ((unsigned)reason >= sizeof greylist__reason_names / sizeof greylist__reason_names[0])
		return "unknown";
	return greylist__reason_names[reason];
}

/* ---- etcd round trips ------------------------------------------------------ */

/* etcd failed us: log it (once per backoff period: later calls fail
 * before asking etcd), start the backoff, and give the caller
 * MAIL_ERR_UNAVAILABLE whatever the failure was. */
static int greylist__fail(greylist *gl, const char *op, int err, const char *detail)
{
	greylist__count(&gl->stats.etcd_failures);
	uint64_t until = util_now_mono_ms() + gl->set.unavailable_backoff_ms;
	__atomic_store_n(&gl->unavailable_until_ms, until, __ATOMIC_RELAXED);
	char q[512];
	log_event(LOG_WARN, "greylist",
		  "event=greylist_etcd_failed op=%s error=%s backoff_ms=%u detail=%s", op,
		  mail_error_info(err)->name, gl->set.unavailable_backoff_ms,
		  log_quote(q, sizeof q, detail, strlen(detail)));
	return MAIL_ERR_UNAVAILABLE;
}

/* Count one round trip. The answers callers act on (OK, absent, exists)
 * come back as they are; anything else is a failure (greylist__fail). */
static int greylist__etcd(greylist *gl, etcd_client *c, const char *op, int err)
{
	greylist__count(&gl->stats.etcd_requests);
	if (err == MAIL_OK || err == MAIL_ERR_NOT_FOUND || err == MAIL_ERR_EXISTS)
		return err;
	return greylist__fail(gl, op, err, etcd_client_last_error(c));
}

/* 1 while a recent failure says etcd is away (greylist.h, "outage"). */
static int greylist__backing_off(greylist *gl)
{
	uint64_t until = __atomic_load_n(&gl->unavailable_until_ms, __ATOMIC_RELAXED);
	return until != 0 && util_now_mono_ms() < until;
}

/* ---- shared leases ----------------------------------------------------------- */

/* The lease registered for kind's bucket, or a new one granted and
 * registered (greylist.h, "Expiry"). Called with lease_mu held. MAIL_OK
 * with *id_r, or MAIL_ERR_UNAVAILABLE. */
static int greylist__lease_resolve(greylist *gl, etcd_client *c, enum greylist__lease_kind kind,
				   int64_t bucket, int64_t *id_r)
{
	const struct greylist__lease_conf *lc = &gl->lease_conf[kind];
	char key[128];
	/* the TTL is part of the key: frontends configured differently do
	 * not hand each other leases of the wrong length */
	snprintf(key, sizeof key, GREYLIST_KEY_LEASES "%d/%" PRId64, lc->ttl_s,
		 bucket * (lc->width_ms / 1000));
	for (int attempt = 0; attempt < GREYLIST__LEASE_ATTEMPTS; attempt++) {
		char *value = NULL;
		size_t len = 0;
		int err = greylist__etcd(gl, c, "lease_get",
					 etcd_kv_get(c, key, &value, &len, NULL, NULL));
		int replace = 0;
		if (err == MAIL_OK) {
			char *end;
			long long id = strtoll(value, &end, 10);
			int ok = len > 0 && *end == '\0' && id > 0;
			free(value);
			if (ok) {
				*id_r = id;
				return MAIL_OK;
			}
			/* only the create below writes these: someone else's
			 * hand was here. Replaced, or greylisting would fail
			 * for the whole bucket */
			char q[160];
			log_event(LOG_WARN, "greylist", "event=greylist_lease_key_bad key=%s",
				  log_quote(q, sizeof q, key, strlen(key)));
			replace = 1;
		} else if (err != MAIL_ERR_NOT_FOUND) {
			return err;
		}

		int64_t id;
		err = etcd_lease_grant(c, lc->ttl_s, &id);
		greylist__count(&gl->stats.etcd_requests);
		if (err != MAIL_OK)
			return greylist__fail(gl, "lease_grant", err, etcd_client_last_error(c));
		greylist__count(&gl->stats.leases_granted);
		char text[24];
		int text_len = snprintf(text, sizeof text, "%" PRId64, id);
		/* the registry key under the lease itself: it goes when the
		 * lease goes, so a registered lease is always a live one */
		err = replace ? etcd_kv_put(c, key, text, (size_t)text_len, id)
			      : etcd_kv_create(c, key, text, (size_t)text_len, id);
		err = greylist__etcd(gl, c, "lease_register", err);
		if (err == MAIL_OK) {
			log_event(LOG_INFO, "greylist", "event=greylist_lease_granted lease=%" PRId64
				  " ttl_s=%d bucket=%" PRId64, id, lc->ttl_s, bucket);
			*id_r = id;
			return MAIL_OK;
		}
		if (err == MAIL_ERR_NOT_FOUND)
			return greylist__fail(gl, "lease_register", err,
					      "a lease granted a moment ago is gone");
		if (err != MAIL_ERR_EXISTS)
			return err; /* etcd failed: no revoke, it would wait again */
		/* another frontend registered first: use theirs (next round);
		 * ours would only sit in etcd, unused, until its TTL */
		greylist__count(&gl->stats.etcd_requests);
		(void)etcd_lease_revoke(c, id);
	}
	return greylist__fail(gl, "lease_get", MAIL_ERR_TEMP, "the lease registry kept changing");
}

/* The lease for a write of kind at now_ms. A cached lease of a later
 * bucket also serves (threads whose clocks were read a moment apart, on
 * both sides of an hour): it only makes a key live up to one bucket
 * longer. MAIL_OK with *id_r, or MAIL_ERR_UNAVAILABLE. */
static int greylist__lease(greylist *gl, etcd_client *c, enum greylist__lease_kind kind,
			   int64_t now_ms, int64_t *id_r)
{
	int64_t bucket = now_ms / gl->lease_conf[kind].width_ms;
	int err = MAIL_OK;
	pthread_mutex_lock(&gl->lease_mu);
	struct greylist__lease_slot *slot = &gl->lease[kind];
	if (slot->id == 0 || bucket > slot->bucket) {
		int64_t id = 0;
		/* threads that queued on the mutex behind a resolve that just
		 * timed out must not each wait for a timeout of their own */
		if (greylist__backing_off(gl))
			err = MAIL_ERR_UNAVAILABLE;
		else
			err = greylist__lease_resolve(gl, c, kind, bucket, &id);
		if (err == MAIL_OK) {
			slot->bucket = bucket;
			slot->id = id;
		}
	}
	*id_r = slot->id;
	pthread_mutex_unlock(&gl->lease_mu);
	return err;
}

/* etcd no longer knows lease id (revoked, or expired): forget it unless
 * another thread already replaced it. */
static void greylist__lease_drop(greylist *gl, enum greylist__lease_kind kind, int64_t id)
{
	pthread_mutex_lock(&gl->lease_mu);
	if (gl->lease[kind].id == id)
		gl->lease[kind].id = 0;
	pthread_mutex_unlock(&gl->lease_mu);
	log_event(LOG_INFO, "greylist", "event=greylist_lease_gone lease=%" PRId64, id);
}

/* key = value under kind's lease for now_ms; with create, only if key is
 * absent. A lease etcd no longer knows is replaced and the write tried
 * once more. MAIL_OK, MAIL_ERR_EXISTS (create: someone was first), or
 * MAIL_ERR_UNAVAILABLE. */
static int greylist__write(greylist *gl, etcd_client *c, const char *key, const char *value,
			   enum greylist__lease_kind kind, int64_t now_ms, int create)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		int64_t lease;
		int err = greylist__lease(gl, c, kind, now_ms, &lease);
		if (err != MAIL_OK)
			return err;
		size_t len = strlen(value);
		err = create ? etcd_kv_create(c, key, value, len, lease)
			     : etcd_kv_put(c, key, value, len, lease);
		err = greylist__etcd(gl, c, create ? "create" : "put", err);
		if (err != MAIL_ERR_NOT_FOUND) /* NOT_FOUND: the lease is unknown */
			return err;
		greylist__lease_drop(gl, kind, lease);
	}
	return greylist__fail(gl, create ? "create" : "put", MAIL_ERR_NOT_FOUND,
			      "a fresh lease was unknown too");
}

/* ---- records ----------------------------------------------------------------- */

/* The JSON object stored under key. MAIL_OK with *obj_r (caller decrefs),
 * MAIL_ERR_NOT_FOUND, MAIL_ERR_INTERNAL (not a JSON object of at most
 * GREYLIST__VALUE_MAX bytes: logged), or MAIL_ERR_UNAVAILABLE. */
static int greylist__read(greylist *gl, etcd_client *c, const char *key, json_t **obj_r)
{
	char *value = NULL;
	size_t len = 0;
	int err = greylist__etcd(gl, c, "get", etcd_kv_get(c, key, &value, &len, NULL, NULL));
	if (err != MAIL_OK)
		return err;
	json_t *obj = len <= GREYLIST__VALUE_MAX ? json_loadb(value, len, 0, NULL) : NULL;
	free(value);
	if (!json_is_object(obj)) {
		json_decref(obj);
		char q[GREYLIST__KEY_MAX + 16];
		log_event(LOG_WARN, "greylist", "event=greylist_record_bad key=%s",
			  log_quote(q, sizeof q, key, strlen(key)));
		return MAIL_ERR_INTERNAL;
	}
	*obj_r = obj;
	return MAIL_OK;
}

/* An integer field >= min, or -1 when absent or not one. */
static int64_t greylist__field(json_t *obj, const char *name, int64_t min)
{
	json_t *v = json_object_get(obj, name);
	if (!json_is_integer(v) || json_integer_value(v) < min)
		return -1;
	return json_integer_value(v);
}

/* A triplet's record: MAIL_OK with *rec, MAIL_ERR_NOT_FOUND, MAIL_ERR_INTERNAL
 * (malformed, logged), or MAIL_ERR_UNAVAILABLE. */
static int greylist__record_read(greylist *gl, etcd_client *c, const char *key,
				 struct greylist__record *rec)
{
	json_t *obj;
	int err = greylist__read(gl, c, key, &obj);
	if (err != MAIL_OK)
		return err;
	rec->first_ms = greylist__field(obj, "first", 1);
	rec->passed_ms = json_object_get(obj, "passed") == NULL ? 0
								: greylist__field(obj, "passed", 0);
	json_decref(obj);
	if (rec->first_ms < 0 || rec->passed_ms < 0) {
		char q[GREYLIST__KEY_MAX + 16];
		log_event(LOG_WARN, "greylist", "event=greylist_record_bad key=%s",
			  log_quote(q, sizeof q, key, strlen(key)));
		return MAIL_ERR_INTERNAL;
	}
	return MAIL_OK;
}

static int greylist__record_write(greylist *gl, etcd_client *c, const char *key,
				  const struct greylist__record *rec, int64_t now_ms, int create)
{
	char value[64];
	snprintf(value, sizeof value, "{\"first\":%" PRId64 ",\"passed\":%" PRId64 "}",
		 rec->first_ms, rec->passed_ms);
	enum greylist__lease_kind kind =
		rec->passed_ms != 0 ? GREYLIST__LEASE_LONG : GREYLIST__LEASE_PENDING;
	return greylist__write(gl, c, key, value, kind, now_ms, create);
}

/* ---- checks ------------------------------------------------------------------- */

static void greylist__defer(struct greylist_verdict *v, enum greylist_reason reason,
			    int64_t wait_ms)
{
	v->action = GREYLIST_DEFER;
	v->reason = reason;
	/* rounded up: a client that waits exactly this long passes */
	int64_t s = (wait_ms + 999) / 1000;
	v->retry_after_s = s < 1 ? 1 : (unsigned)s;
}

static void greylist__pass(struct greylist_verdict *v, enum greylist_reason reason)
{
	v->action = GREYLIST_PASS;
	v->reason = reason;
	v->retry_after_s = 0;
}

/* The decision on a record read from etcd (greylist.h's table), with the
 * write it calls for. */
static int greylist__evaluate(greylist *gl, etcd_client *c, const char *key,
			      const uint8_t *digest, const struct greylist__record *rec,
			      unsigned delay_s, int64_t now_ms, struct greylist_verdict *v)
{
	int64_t delay_ms = (int64_t)delay_s * 1000;
	unsigned span_s = delay_s + GREYLIST_RETRY_SPAN_MIN_S;
	int64_t window_ms =
		(int64_t)(gl->set.retry_window_s > span_s ? gl->set.retry_window_s : span_s) * 1000;
	int64_t passed_ttl_ms = (int64_t)gl->set.passed_ttl_s * 1000;
	int err;

	if (rec->passed_ms != 0 && now_ms - rec->passed_ms <= passed_ttl_ms) {
		int64_t stamp = rec->passed_ms;
		if (greylist__day(now_ms) > greylist__day(rec->passed_ms)) {
			/* the day's refresh: a new "passed" and today's lease */
			struct greylist__record fresh = { rec->first_ms, now_ms };
			err = greylist__record_write(gl, c, key, &fresh, now_ms, 0);
			if (err != MAIL_OK)
				return err;
			stamp = now_ms;
		}
		greylist__cache_put(&gl->cache, digest, now_ms, stamp);
		greylist__pass(v, GREYLIST_REASON_KNOWN);
		return MAIL_OK;
	}
	if (rec->passed_ms == 0) {
		/* a first attempt "in the future" is another frontend's clock
		 * running ahead: count it as made now */
		int64_t age = now_ms > rec->first_ms ? now_ms - rec->first_ms : 0;
		if (age < delay_ms) {
			greylist__defer(v, GREYLIST_REASON_EARLY, delay_ms - age);
			return MAIL_OK;
		}
		if (age <= window_ms) {
			struct greylist__record passed = { rec->first_ms, now_ms };
			err = greylist__record_write(gl, c, key, &passed, now_ms, 0);
			if (err != MAIL_OK)
				return err;
			greylist__cache_put(&gl->cache, digest, now_ms, now_ms);
			greylist__pass(v, GREYLIST_REASON_RETRIED);
			return MAIL_OK;
		}
	}
	/* never retried within the window, or passed too long ago (the key
	 * outlived its lease: greylist.h, etcd restarts): a first attempt */
	struct greylist__record first = { now_ms, 0 };
	err = greylist__record_write(gl, c, key, &first, now_ms, 0);
	if (err != MAIL_OK)
		return err;
	greylist__defer(v, GREYLIST_REASON_EXPIRED, delay_ms);
	return MAIL_OK;
}

static int greylist__decide(greylist *gl, etcd_client *c, const char *key, const uint8_t *digest,
			    unsigned delay_s, int64_t now_ms, struct greylist_verdict *v)
{
	for (int attempt = 0; attempt < GREYLIST__CREATE_ATTEMPTS; attempt++) {
		struct greylist__record rec;
		int err = greylist__record_read(gl, c, key, &rec);
		if (err == MAIL_ERR_INTERNAL) {
			/* unreadable (logged): as one never retried, so the
			 * record is rewritten in our format */
			rec = (struct greylist__record){ .first_ms = 1, .passed_ms = 0 };
			err = MAIL_OK;
		}
		if (err == MAIL_OK)
			return greylist__evaluate(gl, c, key, digest, &rec, delay_s, now_ms, v);
		if (err != MAIL_ERR_NOT_FOUND)
			return err;
		/* create-if-absent: of two frontends seeing the first attempt
		 * (or two recipients' threads), one creates and the other
		 * reads its record */
		struct greylist__record first = { now_ms, 0 };
		err = greylist__record_write(gl, c, key, &first, now_ms, 1);
		if (err == MAIL_OK) {
			greylist__defer(v, GREYLIST_REASON_NEW, (int64_t)delay_s * 1000);
			return MAIL_OK;
		}
		if (err != MAIL_ERR_EXISTS)
			return err;
	}
	return greylist__fail(gl, "create", MAIL_ERR_TEMP, "the record kept changing");
}

int greylist_check(greylist *gl, const char *client_ip, const char *sender, const char *rcpt,
		   unsigned delay_s, int64_t now_ms, struct greylist_verdict *v)
{
	greylist__count(&gl->stats.checks);
	struct greylist_verdict out = { 0 };
	uint8_t digest[GREYLIST__DIGEST_LEN];
	if (v == NULL || delay_s < GREYLIST_DELAY_MIN || delay_s > GREYLIST_DELAY_MAX ||
	    now_ms <= 0 || greylist__triplet(client_ip, sender, rcpt, digest, out.triplet) < 0) {
		greylist__count(&gl->stats.errors);
		return MAIL_ERR_PARAMS;
	}

	int64_t stamp;
	if (greylist__cache_get(&gl->cache, digest, now_ms, &stamp) &&
	    now_ms - stamp <= (int64_t)gl->set.passed_ttl_s * 1000) {
		greylist__pass(&out, GREYLIST_REASON_KNOWN);
		out.cached = 1;
		greylist__count(&gl->stats.cache_hits);
		greylist__count(&gl->stats.passed);
		*v = out;
		return MAIL_OK;
	}
	if (greylist__backing_off(gl)) {
		greylist__count(&gl->stats.errors);
		return MAIL_ERR_UNAVAILABLE;
	}

	char key[GREYLIST__KEY_MAX];
	snprintf(key, sizeof key, GREYLIST_KEY_TRIPLETS "%s", out.triplet);
	etcd_client *c = etcd_pool_take(gl->pool);
	int err = greylist__decide(gl, c, key, digest, delay_s, now_ms, &out);
	etcd_pool_give(gl->pool, &c);
	if (err != MAIL_OK) {
		greylist__count(&gl->stats.errors);
		return err;
	}
	greylist__count(out.action == GREYLIST_PASS ? &gl->stats.passed : &gl->stats.deferred);
	*v = out;
	return MAIL_OK;
}

/* ---- known domains ------------------------------------------------------------- */

/* When domain was last noted: MAIL_OK with *noted_r, MAIL_ERR_NOT_FOUND
 * (absent, or unreadable: logged), or MAIL_ERR_UNAVAILABLE. */
static int greylist__domain_read(greylist *gl, etcd_client *c, const char *key,
				 int64_t *noted_r)
{
	json_t *obj;
	int err = greylist__read(gl, c, key, &obj);
	if (err == MAIL_ERR_INTERNAL)
		return MAIL_ERR_NOT_FOUND;
	if (err != MAIL_OK)
		return err;
	*noted_r = greylist__field(obj, "noted", 1);
	json_decref(obj);
	return *noted_r > 0 ? MAIL_OK : MAIL_ERR_NOT_FOUND;
}

int greylist_domain_known(greylist *gl, const char *domain, int64_t now_ms)
{
	char name[GREYLIST__DOMAIN_MAX + 1];
	uint8_t digest[GREYLIST__DIGEST_LEN];
	if (now_ms <= 0 || greylist__domain(domain, name, digest) < 0)
		return MAIL_ERR_PARAMS;
	int64_t ttl_ms = (int64_t)gl->set.passed_ttl_s * 1000;
	int64_t noted;
	if (greylist__cache_get(&gl->cache, digest, now_ms, &noted) && now_ms - noted <= ttl_ms) {
		greylist__count(&gl->stats.cache_hits);
		return MAIL_OK;
	}
	if (greylist__backing_off(gl))
		return MAIL_ERR_UNAVAILABLE;

	char key[GREYLIST__KEY_MAX];
	snprintf(key, sizeof key, GREYLIST_KEY_DOMAINS "%s", name);
	etcd_client *c = etcd_pool_take(gl->pool);
	int err = greylist__domain_read(gl, c, key, &noted);
	etcd_pool_give(gl->pool, &c);
	if (err != MAIL_OK)
		return err;
	/* the key may outlive its lease (etcd restarts): the time decides */
	if (now_ms - noted > ttl_ms)
		return MAIL_ERR_NOT_FOUND;
	greylist__cache_put(&gl->cache, digest, now_ms, noted);
	return MAIL_OK;
}

int greylist_domain_note(greylist *gl, const char *domain, int64_t now_ms)
{
	char name[GREYLIST__DOMAIN_MAX + 1];
	uint8_t digest[GREYLIST__DIGEST_LEN];
	if (now_ms <= 0 || greylist__domain(domain, name, digest) < 0)
		return MAIL_ERR_PARAMS;
	/* written at most once a UTC day per domain: that keeps it known
	 * (its lease is the day's) at one revision a day */
	int64_t noted;
	if (greylist__cache_get(&gl->cache, digest, now_ms, &noted) &&
	    greylist__day(noted) >= greylist__day(now_ms)) {
		greylist__count(&gl->stats.cache_hits);
		return MAIL_OK;
	}
	if (greylist__backing_off(gl))
		return MAIL_ERR_UNAVAILABLE;

	char key[GREYLIST__KEY_MAX];
	snprintf(key, sizeof key, GREYLIST_KEY_DOMAINS "%s", name);
	etcd_client *c = etcd_pool_take(gl->pool);
	int err = greylist__domain_read(gl, c, key, &noted);
	if (err == MAIL_OK && greylist__day(noted) >= greylist__day(now_ms)) {
		/* another frontend (or we, before the cache forgot) noted it
		 * today */
	} else if (err == MAIL_OK || err == MAIL_ERR_NOT_FOUND) {
		char value[48];
		snprintf(value, sizeof value, "{\"noted\":%" PRId64 "}", now_ms);
		err = greylist__write(gl, c, key, value, GREYLIST__LEASE_LONG, now_ms, 0);
		noted = now_ms;
	}
	etcd_pool_give(gl->pool, &c);
	if (err != MAIL_OK)
		return err;
	greylist__cache_put(&gl->cache, digest, now_ms, noted);
	return MAIL_OK;
}
