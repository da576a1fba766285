/* directory.c: tenants and users in etcd (see directory.h).
 *
 * The etcd handle is serialised by `mu`; password hashing (~100 ms, 64 MiB
 * each) runs outside it, at most DIRECTORY_HASH_SLOTS at a time so a burst
 * of logins cannot take the node's memory. The SCRAM keys stored beside
 * the hash (PBKDF2, a few ms) are derived outside both.
 */
#include "directory.h"
#include "directory-private.h"
#include "directory-cache.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "etcd.h"
#include "log.h"
#include "mail-error.h"
#include "sasl.h"
#include "util.h"
#include "xalloc.h"

/* Concurrent argon2id computations per directory object. */
#define DIRECTORY_HASH_SLOTS 4
/* Longest password accepted (bytes); argon2 takes any, we bound the work. */
#define DIRECTORY_PASSWORD_MAX 1024

/* Verified against when the user does not exist, so a miss costs the same
 * time as a wrong password (no user enumeration by timing). */
static const char directory__dummy_hash[] =
	"$argon2id$v=19$m=65536,t=2,p=1$z/ilb0SNcR4nXbr1sdx8Tw"
	"$trbs7fFjpuvXa7bHHChBsi8FD/LZyiUsKajwAklNQQk";


directory *directory_create(const etcd_conf *etcd)
{
	if (sodium_init() < 0)
		abort();
	directory *dir = xcalloc(1, sizeof *dir);
	pthread_mutex_init(&dir->mu, NULL);
	pthread_mutex_init(&dir->hash_mu, NULL);
	pthread_cond_init(&dir->hash_cond, NULL);
	dir->hash_free = DIRECTORY_HASH_SLOTS;
	dir->etcd = etcd_client_create(etcd);
	dir->conf = etcd_conf_dup(etcd);
	return dir;
}

void directory_set_etcd_stats(directory *dir, struct etcd_stats *stats)
{
	dir->stats = stats;
	etcd_client_set_stats(dir->etcd, stats);
}

void directory_cache_start(directory *dir, unsigned check_ms, unsigned resync_ms)
{
	if (dir->cache != NULL)
		return;
	dir->uncached = directory_create(dir->conf);
	directory_set_etcd_stats(dir->uncached, dir->stats);
	dir->cache = directory_cache_create(dir->conf, dir->stats, check_ms, resync_ms);
}

int directory_cache_stats(directory *dir, struct directory_cache_stats *st)
{
	memset(st, 0, sizeof *st);
	if (dir->cache == NULL)
		return -1;
	directory_cache_stats_get(dir->cache, st);
	return 0;
}

int directory__confirm(directory *dir, int err)
{
	if (dir->uncached == NULL || err == MAIL_OK || err == MAIL_ERR_UNAVAILABLE ||
	    err == MAIL_ERR_INTERNAL)
		return 0;
	directory_cache_count_confirm(dir->cache);
	return 1;
}

void directory_destroy(directory **dirp)
{
	directory *dir = *dirp;
	if (dir == NULL)
		return;
	*dirp = NULL;
	directory_cache_destroy(&dir->cache);
	directory_destroy(&dir->uncached);
	etcd_client_destroy(&dir->etcd);
	etcd_conf_free(&dir->conf);
	pthread_mutex_destroy(&dir->mu);
	pthread_mutex_destroy(&dir->hash_mu);
	pthread_cond_destroy(&dir->hash_cond);
	free(dir);
}

/* ---- helpers ------------------------------------------------------------- */

static void directory__hash_enter(directory *dir)
{
	pthread_mutex_lock(&dir->hash_mu);
	while (dir->hash_free == 0)
		pthread_cond_wait(&dir->hash_cond, &dir->hash_mu);
	dir->hash_free--;
	pthread_mutex_unlock(&dir->hash_mu);
}

static void directory__hash_leave(directory *dir)
{
	pthread_mutex_lock(&dir->hash_mu);
	dir->hash_free++;
	pthread_cond_signal(&dir->hash_cond);
	pthread_mutex_unlock(&dir->hash_mu);
}

/* argon2id of password into out. MAIL_OK or MAIL_ERR_PARAMS/INTERNAL. */
static int directory__hash(directory *dir, const char *password, char out[crypto_pwhash_STRBYTES])
{
	size_t len = strlen(password);
	if (len == 0 || len > DIRECTORY_PASSWORD_MAX)
		return MAIL_ERR_PARAMS;
	directory__hash_enter(dir);
	int r = crypto_pwhash_str(out, password, len, crypto_pwhash_OPSLIMIT_INTERACTIVE,
				  crypto_pwhash_MEMLIMIT_INTERACTIVE);
	directory__hash_leave(dir);
	return r == 0 ? MAIL_OK : MAIL_ERR_INTERNAL;
}

static int directory__verify(directory *dir, const char *hash, const char *password)
{
	size_t len = strlen(password);
	if (len > DIRECTORY_PASSWORD_MAX)
		len = DIRECTORY_PASSWORD_MAX; /* still spend the time */
	directory__hash_enter(dir);
	int r = crypto_pwhash_str_verify(hash, password, len);
	directory__hash_leave(dir);
	return r == 0;
}

/* Lowercased copy of a valid domain, or NULL. */
char *directory__domain(const char *domain)
{
	char *d = xstrdup(domain);
	for (char *p = d; *p != '\0'; p++) {
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	}
	if (!util_domain_valid(d)) {
		free(d);
		return NULL;
	}
	return d;
}

/* "/mail/v1/users/<domain>/<local>" for a normalised address. */
char *directory__user_key(const char *address)
{
	const char *domain = util_address_domain(address);
	int local_len = (int)(domain - 1 - address);
	return xasprintf(DIRECTORY_KEY_USERS "%s/%.*s", domain, local_len, address);
}

/* The SCRAM-SHA-256 keys of password under a fresh random salt. */
static int directory__scram_derive(const char *password, struct sasl_scram_keys *keys_r)
{
	uint8_t salt[SASL_SCRAM_SALT_LEN];
	randombytes_buf(salt, sizeof salt);
	if (sasl_scram_keys_derive(password, strlen(password), salt, sizeof salt,
				   SASL_SCRAM_ITERATIONS, keys_r) < 0)
		return MAIL_ERR_INTERNAL;
	return MAIL_OK;
}

/* base64 of n bytes as a new JSON string. */
static json_t *directory__json_b64(const uint8_t *data, size_t n)
{
	buf b;
	buf_init(&b);
	sasl_b64_encode(data, n, &b);
	json_t *j = json_stringn(b.len > 0 ? (const char *)b.data : "", b.len);
	buf_deinit(&b);
	return j;
}

/* {"hash":..,"created":..,"scram":{"salt":b64,"i":n,"stored":b64,"server":b64}} */
static char *directory__user_record(const char *hash, json_int_t created,
				    const struct sasl_scram_keys *keys)
{
	json_t *j = json_pack("{s:s,s:I,s:{s:o,s:I,s:o,s:o}}", "hash", hash, "created", created,
			      "scram", "salt", directory__json_b64(keys->salt, keys->salt_len),
			      "i", (json_int_t)keys->iterations, "stored",
			      directory__json_b64(keys->stored_key, sizeof keys->stored_key),
			      "server",
			      directory__json_b64(keys->server_key, sizeof keys->server_key));
	char *s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	return s;
}

/* Decode the base64 JSON string v into dst of exactly len bytes (or, when
 * len_r is not NULL, 1..len bytes with the count in *len_r). 0 or -1. */
static int directory__b64_field(json_t *v, uint8_t *dst, size_t len, size_t *len_r)
{
	const char *s = json_string_value(v);
	if (s == NULL)
		return -1;
	buf b;
	buf_init(&b);
	int ok = sasl_b64_decode(s, json_string_length(v), len, &b) == 0 && b.len > 0 &&
		 (len_r != NULL || b.len == len);
	if (ok) {
		memcpy(dst, b.data, b.len);
		if (len_r != NULL)
			*len_r = b.len;
	}
	if (b.data != NULL)
		sodium_memzero(b.data, b.cap);
	buf_deinit(&b);
	return ok ? 0 : -1;
}

/* The "scram" object of a user record into keys_r. 0 or -1 (malformed). */
static int directory__scram_parse(json_t *scram, struct sasl_scram_keys *keys_r)
{
	json_t *i = json_object_get(scram, "i");
	if (!json_is_integer(i) || json_integer_value(i) < 1 ||
	    json_integer_value(i) > (json_int_t)INT32_MAX)
		return -1;
	keys_r->iterations = (unsigned)json_integer_value(i);
	if (directory__b64_field(json_object_get(scram, "salt"), keys_r->salt,
				 sizeof keys_r->salt, &keys_r->salt_len) < 0 ||
	    directory__b64_field(json_object_get(scram, "stored"), keys_r->stored_key,
				 sizeof keys_r->stored_key, NULL) < 0 ||
	    directory__b64_field(json_object_get(scram, "server"), keys_r->server_key,
				 sizeof keys_r->server_key, NULL) < 0)
		return -1;
	return 0;
}

int directory__get(directory *dir, const char *key, char **value_r, size_t *len_r,
			  int64_t *mod_r)
{
	if (dir->cache != NULL && mod_r == NULL) {
		int found = directory_cache_get(dir->cache, key, value_r, len_r);
		if (found >= 0)
			return found ? MAIL_OK : MAIL_ERR_NOT_FOUND;
	}
	pthread_mutex_lock(&dir->mu);
	int err = etcd_kv_get(dir->etcd, key, value_r, len_r, mod_r, NULL);
	pthread_mutex_unlock(&dir->mu);
	return err;
}

int directory__exists(directory *dir, const char *key)
{
	char *value = NULL;
	size_t len;
	int err = directory__get(dir, key, &value, &len, NULL);
	free(value);
	return err;
}

int directory__str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names after prefix of every key under it, sorted; with suffix
 * (may be NULL) appended to each. */
int directory__list(directory *dir, const char *prefix, const char *suffix,
			   char ***names_r, size_t *n_r)
{
	etcd_kv *kvs;
	size_t n;
	pthread_mutex_lock(&dir->mu);
	int err = etcd_kv_range_prefix(dir->etcd, prefix, 0, &kvs, &n, NULL);
	pthread_mutex_unlock(&dir->mu);
	if (err != MAIL_OK)
		return err;
	char **names = xcalloc(n + 1, sizeof *names);
	size_t plen = strlen(prefix);
	for (size_t i = 0; i < n; i++)
		names[i] = xasprintf("%s%s", kvs[i].key + plen, suffix != NULL ? suffix : "");
	etcd_kvs_free(kvs, n);
	qsort(names, n, sizeof *names, directory__str_cmp);
	*names_r = names;
	*n_r = n;
	return MAIL_OK;
}

/* ---- tenants -------------------------------------------------------------- */

int directory_tenant_add(directory *dir, const char *domain)
{
	char *d = directory__domain(domain);
	if (d == NULL)
		return MAIL_ERR_PARAMS;
	char *key = xasprintf(DIRECTORY_KEY_TENANTS "%s", d);
	char *value = xasprintf("{\"created\":%lld}", (long long)util_now_wall_ms());
	pthread_mutex_lock(&dir->mu);
	int err = etcd_kv_create(dir->etcd, key, value, strlen(value), 0);
	pthread_mutex_unlock(&dir->mu);
	if (err == MAIL_OK)
		log_event(LOG_INFO, "directory", "event=tenant_added domain=%s", d);
	free(value);
	free(key);
	free(d);
	return err;
}

int directory_tenant_list(directory *dir, char ***domains_r, size_t *n_r)
{
	return directory__list(dir, DIRECTORY_KEY_TENANTS, NULL, domains_r, n_r);
}

int directory_tenant_exists(directory *dir, const char *domain)
{
	char *d = directory__domain(domain);
	if (d == NULL)
		return MAIL_ERR_NOT_FOUND;
	char *key = xasprintf(DIRECTORY_KEY_TENANTS "%s", d);
	int err = directory__exists(dir, key);
	free(key);
	free(d);
	return err;
}

/* ---- tenant settings: one table for the record, KEY=VALUE and show ---- */

enum setting_kind { SET_UINT, SET_BOOL, SET_ENUM, SET_ZONES, SET_ADDRESS, SET_SIZE };

struct setting_def {
	const char *key;     /* in the record and in KEY=VALUE */
	unsigned field;      /* enum directory_tenant_field */
	enum setting_kind kind;
	size_t offset;       /* in struct directory_tenant_settings */
	unsigned min, max;   /* SET_UINT */
	const char *const *names; /* SET_ENUM: value i is names[i] */
	size_t size;         /* SET_ZONES, SET_ADDRESS: the buffer */
};

static const char *const spf_names[] = { "record", "off", "reject", NULL };
static const char *const dmarc_names[] = { "record", "off", "enforce", NULL };
static const char *const ptr_names[] = { "record", "reject", "greylist", NULL };

#define TS_OFF(f) offsetof(struct directory_tenant_settings, f)
#define TS_SIZE(f) sizeof(((struct directory_tenant_settings *)0)->f)
static const struct setting_def setting_defs[] = {
	{ "outbound_per_hour", DIRECTORY_TENANT_OUTBOUND_PER_HOUR, SET_UINT,
	  TS_OFF(outbound_per_hour), 0, DIRECTORY_OUTBOUND_PER_HOUR_MAX, NULL, 0 },
	{ "delay_warning", DIRECTORY_TENANT_DELAY_WARNING, SET_BOOL, TS_OFF(delay_warning), 0, 0,
	  NULL, 0 },
	{ "spf", DIRECTORY_TENANT_SPF, SET_ENUM, TS_OFF(spf), 0, 0, spf_names, 0 },
	{ "dmarc", DIRECTORY_TENANT_DMARC, SET_ENUM, TS_OFF(dmarc), 0, 0, dmarc_names, 0 },
	{ "ptr", DIRECTORY_TENANT_PTR, SET_ENUM, TS_OFF(ptr), 0, 0, ptr_names, 0 },
	{ "greylisting", DIRECTORY_TENANT_GREYLISTING, SET_BOOL, TS_OFF(greylisting), 0, 0, NULL,
	  0 },
	{ "greylist_delay", DIRECTORY_TENANT_GREYLIST_DELAY, SET_UINT, TS_OFF(greylist_delay),
	  DIRECTORY_GREYLIST_DELAY_MIN, DIRECTORY_GREYLIST_DELAY_MAX, NULL, 0 },
	{ "dnsbl", DIRECTORY_TENANT_DNSBL, SET_ZONES, TS_OFF(dnsbl), 0, 0, NULL, TS_SIZE(dnsbl) },
	{ "rhsbl", DIRECTORY_TENANT_RHSBL, SET_ZONES, TS_OFF(rhsbl), 0, 0, NULL, TS_SIZE(rhsbl) },
	{ "spam", DIRECTORY_TENANT_SPAM, SET_BOOL, TS_OFF(spam), 0, 0, NULL, 0 },
	{ "postmaster", DIRECTORY_TENANT_POSTMASTER, SET_ADDRESS, TS_OFF(postmaster), 0, 0, NULL,
	  TS_SIZE(postmaster) },
	{ "suspended", DIRECTORY_TENANT_SUSPENDED, SET_BOOL, TS_OFF(suspended), 0, 0, NULL, 0 },
	{ "max_users", DIRECTORY_TENANT_MAX_USERS, SET_UINT, TS_OFF(max_users), 0,
	  DIRECTORY_MAX_USERS_MAX, NULL, 0 },
	{ "quota_storage", DIRECTORY_TENANT_QUOTA_STORAGE, SET_SIZE, TS_OFF(quota_storage), 0, 0,
	  NULL, 0 },
	{ "quota_messages", DIRECTORY_TENANT_QUOTA_MESSAGES, SET_UINT, TS_OFF(quota_messages), 0,
	  DIRECTORY_QUOTA_MESSAGES_MAX, NULL, 0 },
	{ "tenant_outbound_per_hour", DIRECTORY_TENANT_OUTBOUND_TENANT, SET_UINT,
	  TS_OFF(tenant_outbound_per_hour), 0, DIRECTORY_TENANT_OUTBOUND_PER_HOUR_MAX, NULL, 0 },
};
#define N_SETTINGS (sizeof setting_defs / sizeof setting_defs[0])
#define ALL_FIELDS ((1u << N_SETTINGS) - 1)

const char *directory_spf_policy_name(enum directory_spf_policy p)
{
	return (unsigned)p < 3 ? spf_names[p] : "?";
}

const char *directory_dmarc_policy_name(enum directory_dmarc_policy p)
{
	return (unsigned)p < 3 ? dmarc_names[p] : "?";
}

const char *directory_ptr_policy_name(enum directory_ptr_policy p)
{
	return (unsigned)p < 3 ? ptr_names[p] : "?";
}

/* "a.example,b.example": each a valid domain, at most
 * DIRECTORY_DNSBL_ZONES_MAX, lowercased into out; "" is no zone. */
static int zones_normalize(const char *v, char *out, size_t size)
{
	size_t len = strlen(v);
	if (len >= size)
		return -1;
	unsigned zones = 0;
	size_t o = 0;
	const char *p = v;
	while (*p != '\0') {
		const char *end = strchr(p, ',');
		size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
		char zone[256];
		if (n == 0 || n >= sizeof zone || ++zones > DIRECTORY_DNSBL_ZONES_MAX)
			return -1;
		memcpy(zone, p, n);
		zone[n] = '\0';
		for (char *c = zone; *c != '\0'; c++)
			*c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
		if (!util_domain_valid(zone))
			return -1;
		o += (size_t)snprintf(out + o, size - o, "%s%s", o > 0 ? "," : "", zone);
		p += n;
		if (*p == ',')
			p++;
	}
	out[o] = '\0';
	return 0;
}

int directory_size_parse(const char *text, uint64_t *bytes_r)
{
	*bytes_r = 0;
	if (strcmp(text, "unlimited") == 0)
		return 0;
	if (text[0] < '0' || text[0] > '9')
		return -1;
	char *end;
	errno = 0;
	unsigned long long n = strtoull(text, &end, 10);
	if (errno != 0)
		return -1;
	unsigned shift = 0;
	if (*end != '\0') {
		static const char units[] = "kmgt";
		const char *u = strchr(units, *end >= 'A' && *end <= 'Z' ? *end + 32 : *end);
		if (u == NULL || *end == '\0' || end[1] != '\0')
			return -1;
		shift = 10u * (unsigned)(u - units + 1);
	}
	if (n > (DIRECTORY_QUOTA_STORAGE_MAX >> shift))
		return -1;
	*bytes_r = (uint64_t)n << shift;
	return 0;
}

/* Set def's field of s from the text v. 0 or -1. */
static int setting_from_text(const struct setting_def *def, const char *v,
			     struct directory_tenant_settings *s)
{
	char *field = (char *)s + def->offset;
	switch (def->kind) {
	case SET_UINT: {
		char *end;
		errno = 0;
		unsigned long n = strtoul(v, &end, 10);
		if (v[0] < '0' || v[0] > '9' || *end != '\0' || errno != 0 || n < def->min ||
		    n > def->max)
			return -1;
		*(unsigned *)(void *)field = (unsigned)n;
		return 0;
	}
	case SET_SIZE:
		return directory_size_parse(v, (uint64_t *)(void *)field);
	case SET_BOOL:
		if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0)
			return -1;
		*(int *)(void *)field = strcmp(v, "on") == 0;
		return 0;
	case SET_ENUM:
		for (int i = 0; def->names[i] != NULL; i++) {
			if (strcmp(v, def->names[i]) == 0) {
				*(int *)(void *)field = i;
				return 0;
			}
		}
		return -1;
	case SET_ZONES:
		return zones_normalize(v, field, def->size);
	case SET_ADDRESS: {
		if (v[0] == '\0') {
			field[0] = '\0';
			return 0;
		}
		char *a = util_address_normalize(v, strlen(v));
		int ok = a != NULL && strlen(a) < def->size;
		if (ok)
			memcpy(field, a, strlen(a) + 1);
		free(a);
		return ok ? 0 : -1;
	}
	}
	return -1;
}

/* def's field of s as JSON. */
static json_t *setting_to_json(const struct setting_def *def,
			       const struct directory_tenant_settings *s)
{
	const char *field = (const char *)s + def->offset;
	switch (def->kind) {
	case SET_UINT:
		return json_integer((json_int_t) * (const unsigned *)(const void *)field);
	case SET_SIZE:
		return json_integer((json_int_t) * (const uint64_t *)(const void *)field);
	case SET_BOOL:
		return json_boolean(*(const int *)(const void *)field);
	case SET_ENUM:
		return json_string(def->names[*(const int *)(const void *)field]);
	case SET_ZONES:
	case SET_ADDRESS:
		return json_string(field);
	}
	return json_null();
}

/* def's field of s from the record's value v: 0, or -1 (wrong type or out
 * of range: the caller logs it, the field keeps its default). */
static int setting_from_json(const struct setting_def *def, json_t *v,
			     struct directory_tenant_settings *s)
{
	char text[DIRECTORY_DNSBL_MAX + 1];
	if (def->kind == SET_UINT && json_is_integer(v) && json_integer_value(v) >= 0 &&
	    json_integer_value(v) <= (json_int_t)UINT32_MAX)
		snprintf(text, sizeof text, "%lld", (long long)json_integer_value(v));
	else if (def->kind == SET_SIZE && json_is_integer(v) && json_integer_value(v) >= 0)
		snprintf(text, sizeof text, "%lld", (long long)json_integer_value(v));
	else if (def->kind == SET_BOOL && json_is_boolean(v))
		snprintf(text, sizeof text, "%s", json_is_true(v) ? "on" : "off");
	else if (def->kind != SET_UINT && def->kind != SET_BOOL && def->kind != SET_SIZE &&
		 json_is_string(v) &&
		 json_string_length(v) < sizeof text)
		snprintf(text, sizeof text, "%s", json_string_value(v));
	else
		return -1;
	return setting_from_text(def, text, s);
}

int directory_tenant_setting_parse(const char *kv, struct directory_tenant_settings *settings,
				   unsigned *fields, const char **error_r)
{
	const char *eq = strchr(kv, '=');
	if (eq == NULL) {
		*error_r = "expected KEY=VALUE";
		return -1;
	}
	size_t klen = (size_t)(eq - kv);
	for (size_t i = 0; i < N_SETTINGS; i++) {
		const struct setting_def *def = &setting_defs[i];
		if (strlen(def->key) != klen || strncmp(def->key, kv, klen) != 0)
			continue;
		struct directory_tenant_settings t = *settings; /* untouched on error */
		if (setting_from_text(def, eq + 1, &t) < 0) {
			static const char *const why[] = {
				[SET_UINT] = "a number out of range",
				[SET_BOOL] = "not on or off",
				[SET_ENUM] = "not one of the values",
				[SET_ZONES] = "not a list of up to 8 DNS zones",
				[SET_ADDRESS] = "not an address",
				[SET_SIZE] = "not a size (bytes, or with K, M, G or T)",
			};
			*error_r = why[def->kind];
			return -1;
		}
		*settings = t;
		*fields |= def->field;
		return 0;
	}
	*error_r = "unknown setting";
	return -1;
}

char *directory_tenant_settings_format(const struct directory_tenant_settings *settings)
{
	buf b;
	buf_init(&b);
	for (size_t i = 0; i < N_SETTINGS; i++) {
		const struct setting_def *def = &setting_defs[i];
		const char *field = (const char *)settings + def->offset;
		char text[DIRECTORY_DNSBL_MAX + 32];
		switch (def->kind) {
		case SET_UINT:
			snprintf(text, sizeof text, "%u", *(const unsigned *)(const void *)field);
			break;
		case SET_SIZE:
			snprintf(text, sizeof text, "%llu",
				 (unsigned long long)*(const uint64_t *)(const void *)field);
			break;
		case SET_BOOL:
			snprintf(text, sizeof text, "%s",
				 *(const int *)(const void *)field ? "on" : "off");
			break;
		case SET_ENUM:
			snprintf(text, sizeof text, "%s",
				 def->names[*(const int *)(const void *)field]);
			break;
		case SET_ZONES:
		case SET_ADDRESS:
			snprintf(text, sizeof text, "%s", field);
			break;
		}
		buf_printf(&b, "%s=%s\n", def->key, text);
	}
	buf_append(&b, "", 1);
	return (char *)b.data;
}

char *directory_tenant_settings_json(const struct directory_tenant_settings *settings)
{
	json_t *j = json_object();
	for (size_t i = 0; i < N_SETTINGS; i++)
		json_object_set_new(j, setting_defs[i].key, setting_to_json(&setting_defs[i], settings));
	char *s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	return s;
}

/* The settings in a tenant record j (an object) into s; bad fields are
 * logged and read as their defaults. */
static void directory__tenant_parse(const char *domain, json_t *j,
				    struct directory_tenant_settings *s)
{
	memset(s, 0, sizeof *s);
	s->greylist_delay = DIRECTORY_GREYLIST_DELAY_DEFAULT;
	s->spam = 1; /* rspamd's verdicts wherever the frontends have rspamd */
	json_t *v = json_object_get(j, "created");
	if (json_is_integer(v))
		s->created_ms = json_integer_value(v);
	for (size_t i = 0; i < N_SETTINGS; i++) {
		const struct setting_def *def = &setting_defs[i];
		v = json_object_get(j, def->key);
		if (v == NULL || json_is_null(v))
			continue;
		struct directory_tenant_settings t = *s;
		if (setting_from_json(def, v, &t) == 0)
			*s = t;
		else
			log_event(LOG_WARN, "directory",
				  "event=tenant_setting_bad domain=%s field=%s", domain, def->key);
	}
}

int directory_tenant_settings_get(directory *dir, const char *domain,
				  struct directory_tenant_settings *settings_r)
{
	char *d = directory__domain(domain);
	if (d == NULL)
		return MAIL_ERR_NOT_FOUND;
	char *key = xasprintf(DIRECTORY_KEY_TENANTS "%s", d);
	char *value = NULL;
	size_t len = 0;
	int err = directory__get(dir, key, &value, &len, NULL);
	if (err == MAIL_OK) {
		json_t *j = json_loadb(value, len, 0, NULL);
		if (json_is_object(j)) {
			directory__tenant_parse(d, j, settings_r);
		} else {
			log_event(LOG_ERROR, "directory", "event=tenant_record_bad domain=%s", d);
			err = MAIL_ERR_INTERNAL;
		}
		json_decref(j);
	}
	free(value);
	free(key);
	free(d);
	return err;
}

int directory_tenant_settings_set(directory *dir, const char *domain,
				  const struct directory_tenant_settings *settings,
				  unsigned fields)
{
	if ((fields & ALL_FIELDS) == 0 || (fields & ~ALL_FIELDS) != 0)
		return MAIL_ERR_PARAMS;
	/* every field written must read back as written */
	for (size_t i = 0; i < N_SETTINGS; i++) {
		const struct setting_def *def = &setting_defs[i];
		json_t *v = (fields & def->field) ? setting_to_json(def, settings) : NULL;
		struct directory_tenant_settings t = *settings;
		int bad = v != NULL && setting_from_json(def, v, &t) < 0;
		json_decref(v);
		if (bad)
			return MAIL_ERR_PARAMS;
	}
	char *d = directory__domain(domain);
	if (d == NULL)
		return MAIL_ERR_NOT_FOUND;
	char *key = xasprintf(DIRECTORY_KEY_TENANTS "%s", d);
	int err = MAIL_OK;
	for (int attempt = 0; attempt < DIRECTORY_CAS_ATTEMPTS; attempt++) {
		char *old = NULL;
		size_t len = 0;
		int64_t mod = 0;
		err = directory__get(dir, key, &old, &len, &mod);
		if (err != MAIL_OK)
			break;
		/* every field we do not write stays as it is (unknown ones too) */
		json_t *j = json_loadb(old, len, 0, NULL);
		free(old);
		if (!json_is_object(j)) {
			log_event(LOG_ERROR, "directory", "event=tenant_record_bad domain=%s", d);
			json_decref(j);
			err = MAIL_ERR_INTERNAL;
			break;
		}
		for (size_t i = 0; i < N_SETTINGS; i++) {
			if (fields & setting_defs[i].field)
				json_object_set_new(j, setting_defs[i].key,
						    setting_to_json(&setting_defs[i], settings));
		}
		char *value = json_dumps(j, JSON_COMPACT);
		json_decref(j);
		pthread_mutex_lock(&dir->mu);
		err = etcd_kv_put_if_mod(dir->etcd, key, value, strlen(value), mod, NULL);
		pthread_mutex_unlock(&dir->mu);
		free(value);
		if (err != MAIL_ERR_EXISTS)
			break;
		err = MAIL_ERR_TEMP; /* changed (or deleted) under us: read again */
	}
	if (err == MAIL_OK) {
		buf changed;
		buf_init(&changed);
		for (size_t i = 0; i < N_SETTINGS; i++) {
			if (!(fields & setting_defs[i].field))
				continue;
			json_t *v = setting_to_json(&setting_defs[i], settings);
			char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
			buf_printf(&changed, " %s=%s", setting_defs[i].key, text != NULL ? text : "?");
			free(text);
			json_decref(v);
		}
		buf_append(&changed, "", 1);
		log_event(LOG_INFO, "directory", "event=tenant_settings_set domain=%s%s", d,
			  (const char *)changed.data);
		buf_deinit(&changed);
	}
	free(key);
	free(d);
	return err;
}

/* ---- users ----------------------------------------------------------------- */

int directory_user_add(directory *dir, const char *address, const char *password)
{
	char *addr = util_address_normalize(address, strlen(address));
	if (addr == NULL)
		return MAIL_ERR_PARAMS;
	struct directory_tenant_settings ts;
	int err = directory_tenant_settings_get(dir, util_address_domain(addr), &ts);
	if (err == MAIL_OK && ts.max_users > 0) {
		/* a limit, not a fence: two adds at once may both pass it */
		char **users = NULL;
		size_t n = 0;
		err = directory_user_list(dir, util_address_domain(addr), &users, &n);
		for (size_t i = 0; i < n; i++)
			free(users[i]);
		free(users);
		if (err == MAIL_OK && n >= ts.max_users)
			err = MAIL_ERR_LIMIT;
	}
	char hash[crypto_pwhash_STRBYTES];
	struct sasl_scram_keys keys;
	if (err == MAIL_OK)
		err = directory__hash(dir, password, hash);
	if (err == MAIL_OK)
		err = directory__scram_derive(password, &keys);
	if (err == MAIL_OK) {
		char *key = directory__user_key(addr);
		char *value = directory__user_record(hash, util_now_wall_ms(), &keys);
		pthread_mutex_lock(&dir->mu);
		err = etcd_kv_create(dir->etcd, key, value, strlen(value), 0);
		pthread_mutex_unlock(&dir->mu);
		free(value);
		free(key);
	}
	sodium_memzero(&keys, sizeof keys);
	if (err == MAIL_OK)
		log_event(LOG_INFO, "directory", "event=user_added user=%s", addr);
	free(addr);
	return err;
}

/* Read-modify-write of a normalised address's record under a compare on
 * its revision: fn edits the JSON object (its MAIL_ error stops the
 * change); read again when it changed meanwhile, MAIL_ERR_TEMP after
 * DIRECTORY_CAS_ATTEMPTS. A record that is not an object is
 * MAIL_ERR_INTERNAL, or with repair a new one ("created": now). */
int directory__user_update(directory *dir, const char *addr,
			   int (*fn)(json_t *record, void *arg), void *arg, int repair)
{
	char *key = directory__user_key(addr);
	int err = MAIL_OK;
	for (int attempt = 0; attempt < DIRECTORY_CAS_ATTEMPTS; attempt++) {
		char *old;
		size_t len;
		int64_t mod;
		err = directory__get(dir, key, &old, &len, &mod);
		if (err != MAIL_OK)
			break;
		json_t *j = json_loadb(old, len, 0, NULL);
		free(old);
		if (!json_is_object(j)) {
			json_decref(j);
			if (!repair) {
				err = MAIL_ERR_INTERNAL;
				break;
			}
			j = json_object();
			json_object_set_new(j, "created", json_integer(util_now_wall_ms()));
		}
		err = fn(j, arg);
		if (err != MAIL_OK) {
			json_decref(j);
			break;
		}
		char *value = json_dumps(j, JSON_COMPACT);
		json_decref(j);
		pthread_mutex_lock(&dir->mu);
		err = etcd_kv_put_if_mod(dir->etcd, key, value, strlen(value), mod, NULL);
		pthread_mutex_unlock(&dir->mu);
		free(value);
		if (err != MAIL_ERR_EXISTS)
			break;
		err = MAIL_ERR_TEMP; /* changed under us: read again */
	}
	free(key);
	return err;
}

/* directory_user_passwd's edit: the new hash and SCRAM keys; the record
 * keeps its other fields ("created", "state", those of a newer version). */
static int directory__passwd_fn(json_t *record, void *arg)
{
	json_t *fresh = arg;
	json_object_set(record, "hash", json_object_get(fresh, "hash"));
	json_object_set(record, "scram", json_object_get(fresh, "scram"));
	return MAIL_OK;
}

int directory_user_passwd(directory *dir, const char *address, const char *password)
{
	char *addr = util_address_normalize(address, strlen(address));
	if (addr == NULL)
		return MAIL_ERR_PARAMS;
	char hash[crypto_pwhash_STRBYTES];
	struct sasl_scram_keys keys;
	int err = directory__hash(dir, password, hash);
	if (err == MAIL_OK)
		err = directory__scram_derive(password, &keys);
	if (err == MAIL_OK) {
		char *text = directory__user_record(hash, 0, &keys);
		json_t *fresh = json_loads(text, 0, NULL);
		sodium_memzero(text, strlen(text));
		free(text);
		err = directory__user_update(dir, addr, directory__passwd_fn, fresh, 1);
		json_decref(fresh);
	}
	sodium_memzero(hash, sizeof hash);
	sodium_memzero(&keys, sizeof keys);
	if (err == MAIL_OK)
		log_event(LOG_INFO, "directory", "event=user_passwd user=%s", addr);
	free(addr);
	return err;
}

static const char *const user_state_names[] = { "active", "disabled", "deleting" };

const char *directory_user_state_name(enum directory_user_state st)
{
	return (unsigned)st < 3 ? user_state_names[st] : "?";
}

/* The state a user record names (absent or unknown: active, so that a
 * newer state never locks out an older reader's user... but "deleting"
 * and "disabled" are known to every version that writes them). */
static enum directory_user_state directory__user_state(json_t *j)
{
	const char *s = json_string_value(json_object_get(j, "state"));
	for (unsigned i = 1; s != NULL && i < 3; i++)
		if (strcmp(s, user_state_names[i]) == 0)
			return (enum directory_user_state)i;
	return DIRECTORY_USER_ACTIVE;
}

int directory_user_info(directory *dir, const char *address, struct directory_user_info *info)
{
	memset(info, 0, sizeof *info);
	char *addr = util_address_normalize(address, strlen(address));
	if (addr == NULL)
		return MAIL_ERR_NOT_FOUND;
	char *key = directory__user_key(addr);
	char *value = NULL;
	size_t len = 0;
	int err = directory__get(dir, key, &value, &len, NULL);
	if (err == MAIL_OK) {
		json_t *j = json_loadb(value, len, 0, NULL);
		if (!json_is_object(j)) {
			err = MAIL_ERR_INTERNAL;
		} else {
			json_t *c = json_object_get(j, "created");
			info->created_ms = json_is_integer(c) ? json_integer_value(c) : 0;
			info->state = directory__user_state(j);
			info->scram = json_object_get(j, "scram") != NULL;
			json_t *q = json_object_get(j, "quota");
			json_t *qs = json_object_get(q, "storage"), *qm = json_object_get(q, "messages");
			if (json_is_integer(qs) && json_integer_value(qs) > 0)
				info->quota.storage = (uint64_t)json_integer_value(qs);
			if (json_is_integer(qm) && json_integer_value(qm) > 0)
				info->quota.messages = (uint64_t)json_integer_value(qm);
		}
		json_decref(j);
	}
	free(value);
	free(key);
	free(addr);
	return err;
}

static int directory__state_fn(json_t *record, void *arg)
{
	enum directory_user_state state = *(const enum directory_user_state *)arg;
	if (state == DIRECTORY_USER_ACTIVE)
		json_object_del(record, "state");
	else
		json_object_set_new(record, "state", json_string(user_state_names[state]));
	return MAIL_OK;
}

int directory_user_state_set(directory *dir, const char *address,
			     enum directory_user_state state)
{
	char *addr = util_address_normalize(address, strlen(address));
	if (addr == NULL)
		return MAIL_ERR_NOT_FOUND;
	int err = directory__user_update(dir, addr, directory__state_fn, &state, 0);
	if (err == MAIL_OK)
		log_event(LOG_INFO, "directory", "event=user_state user=%s state=%s", addr,
			  user_state_names[state]);
	free(addr);
	return err;
}

/* directory_user_quota_set's edit of the record's "quota" object. */
struct quota_edit {
	const struct directory_quota *quota;
	unsigned fields;
};

static int directory__quota_fn(json_t *record, void *arg)
{
	const struct quota_edit *e = arg;
	json_t *q = json_object_get(record, "quota");
	if (!json_is_object(q)) {
		q = json_object();
		json_object_set_new(record, "quota", q);
	}
	static const char *const names[] = { "storage", "messages" };
	const uint64_t v[] = { e->quota->storage, e->quota->messages };
	for (unsigned i = 0; i < 2; i++) {
		if (!(e->fields & (1u << i)))
			continue;
		if (v[i] == 0)
			json_object_del(q, names[i]);
		else
			json_object_set_new(q, names[i], json_integer((json_int_t)v[i]));
	}
	if (json_object_size(q) == 0)
		json_object_del(record, "quota");
	return MAIL_OK;
}

int directory_user_quota_set(directory *dir, const char *address,
			     const struct directory_quota *quota, unsigned fields)
{
	char *addr = util_address_normalize(address, strlen(address));
	if (addr == NULL)
		return MAIL_ERR_NOT_FOUND;
	struct quota_edit e = { quota, fields };
	int err = directory__user_update(dir, addr, directory__quota_fn, &e, 0);
	if (err == MAIL_OK)
		log_event(LOG_INFO, "directory",
			  "event=user_quota user=%s storage=%llu messages=%llu fields=%u", addr,
			  (unsigned long long)quota->storage, (unsigned long long)quota->messages,
			  fields);
	free(addr);
	return err;
}

/* address's user record (the directory_user_info() result) and, when
 * there is one, its tenant's settings (*tenant_err_r: that read's result,
 * MAIL_ERR_NOT_FOUND without a user). */
static int directory__user_and_tenant(directory *dir, const char *address,
				      struct directory_user_info *info,
				      struct directory_tenant_settings *ts, int *tenant_err_r)
{
	*tenant_err_r = MAIL_ERR_NOT_FOUND;
	int err = directory_user_info(dir, address, info);
	if (err != MAIL_OK)
		return err;
	char *addr = util_address_normalize(address, strlen(address));
	if (addr != NULL)
		*tenant_err_r = directory_tenant_settings_get(dir, util_address_domain(addr), ts);
	free(addr);
	return MAIL_OK;
}

int directory_quota_get(directory *dir, const char *address, struct directory_quota *user_r,
			struct directory_quota *tenant_r)
{
	memset(user_r, 0, sizeof *user_r);
	memset(tenant_r, 0, sizeof *tenant_r);
	struct directory_user_info info;
	struct directory_tenant_settings ts;
	int terr;
	int err = directory__user_and_tenant(dir, address, &info, &ts, &terr);
	if (err != MAIL_OK)
		return err;
	*user_r = info.quota;
	if (terr == MAIL_ERR_NOT_FOUND)
		return MAIL_OK;   /* a user without a tenant record: its own limits */
	if (terr != MAIL_OK)
		return terr;
	tenant_r->storage = ts.quota_storage;
	tenant_r->messages = ts.quota_messages;
	return MAIL_OK;
}

/* 1 when the tenant of addr is suspended (a read error counts as not:
 * the caller's own read reports etcd down). */
static int directory__suspended(directory *dir, const char *addr)
{
	struct directory_tenant_settings ts;
	return directory_tenant_settings_get(dir, util_address_domain(addr), &ts) == MAIL_OK &&
	       ts.suspended;
}

static int directory__user_active_once(directory *dir, const char *address)
{
	struct directory_user_info info;
	struct directory_tenant_settings ts;
	int terr;
	int err = directory__user_and_tenant(dir, address, &info, &ts, &terr);
	if (err == MAIL_ERR_UNAVAILABLE)
		return err;
	if (err != MAIL_OK || info.state != DIRECTORY_USER_ACTIVE)
		return MAIL_ERR_PERM;
	if (terr == MAIL_ERR_UNAVAILABLE)
		return terr;
	return terr == MAIL_OK && !ts.suspended ? MAIL_OK : MAIL_ERR_PERM;
}

int directory_user_active(directory *dir, const char *address)
{
	int err = directory__user_active_once(dir, address);
	if (directory__confirm(dir, err)) {
		err = directory__user_active_once(dir->uncached, address);
	}
	return err;
}

int directory_user_del(directory *dir, const char *address)
{
	char *addr = util_address_normalize(address, strlen(address));
	if (addr == NULL)
		return MAIL_ERR_NOT_FOUND;
	char *key = directory__user_key(addr);
	pthread_mutex_lock(&dir->mu);
	int err = etcd_kv_delete(dir->etcd, key);
	pthread_mutex_unlock(&dir->mu);
	if (err == MAIL_OK)
		log_event(LOG_INFO, "directory", "event=user_deleted user=%s", addr);
	free(key);
	free(addr);
	return err;
}

int directory_user_list(directory *dir, const char *domain, char ***addresses_r, size_t *n_r)
{
	char *d = directory__domain(domain);
	if (d == NULL)
		return MAIL_ERR_NOT_FOUND;
	int err = directory_tenant_exists(dir, d);
	if (err == MAIL_OK) {
		char *prefix = xasprintf(DIRECTORY_KEY_USERS "%s/", d);
		char *suffix = xasprintf("@%s", d);
		err = directory__list(dir, prefix, suffix, addresses_r, n_r);
		free(suffix);
		free(prefix);
	}
	free(d);
	return err;
}

static int directory__user_exists_once(directory *dir, const char *address)
{
	char *addr = util_address_normalize(address, strlen(address));
	if (addr == NULL)
		return MAIL_ERR_NOT_FOUND;
	char *key = directory__user_key(addr);
	int err = directory__exists(dir, key);
	free(key);
	free(addr);
	return err;
}

int directory_user_exists(directory *dir, const char *address)
{
	int err = directory__user_exists_once(dir, address);
	if (directory__confirm(dir, err)) {
		err = directory__user_exists_once(dir->uncached, address);
	}
	return err;
}

static int directory__authenticate_once(directory *dir, const char *address, const char *password)
{
	char *addr = util_address_normalize(address, strlen(address));
	char *value = NULL;
	size_t len = 0;
	int err = MAIL_ERR_NOT_FOUND;
	if (addr != NULL) {
		char *key = directory__user_key(addr);
		err = directory__get(dir, key, &value, &len, NULL);
		free(key);
	}
	if (err == MAIL_ERR_UNAVAILABLE || err == MAIL_ERR_INTERNAL) {
		free(addr);
		return err;
	}
	const char *hash = NULL;
	json_t *j = NULL;
	enum directory_user_state state = DIRECTORY_USER_ACTIVE;
	if (err == MAIL_OK) {
		j = json_loadb(value, len, 0, NULL);
		hash = json_string_value(json_object_get(j, "hash"));
		state = directory__user_state(j);
	}
	/* an app password: no argon2id when it matches; a miss still costs
	 * the account password's check (an unknown user costs one too), so
	 * the time tells nothing */
	int app_match = 0;
	int app = j != NULL && directory__app_password_check(j, password, &app_match);
	int ok = app && app_match;
	if (!ok) {
		ok = directory__verify(dir, hash != NULL ? hash : directory__dummy_hash, password);
		ok = ok && hash != NULL;
	}
	json_decref(j);
	free(value);
	const char *refused = NULL;
	if (ok && state != DIRECTORY_USER_ACTIVE)
		refused = user_state_names[state];
	else if (ok && directory__suspended(dir, addr))
		refused = "tenant_suspended";
	if (refused != NULL) {
		ok = 0;
		log_event(LOG_WARN, "directory", "event=auth_refused user=%s reason=%s", addr,
			  refused);
	} else {
		log_event(ok ? LOG_INFO : LOG_WARN, "directory", "event=%s user=%s",
			  ok ? "auth_ok" : "auth_failed", addr != NULL ? addr : "(invalid)");
	}
	free(addr);
	return ok ? MAIL_OK : MAIL_ERR_PERM;
}

/* A record as a lookup saw it: its value, or none. */
struct directory__seen {
	int err;
	char *value;
	size_t len;
};

static void directory__see(directory *dir, const char *key, struct directory__seen *seen)
{
	seen->value = NULL;
	seen->len = 0;
	seen->err = directory__get(dir, key, &seen->value, &seen->len, NULL);
}

/* 1 when etcd holds what was seen. */
static int directory__still(directory *dir, const char *key, const struct directory__seen *seen)
{
	struct directory__seen now;
	directory__see(dir->uncached, key, &now);
	int same = now.err == seen->err &&
		   (now.err != MAIL_OK ||
		    (now.len == seen->len && memcmp(now.value, seen->value, now.len) == 0));
	free(now.value);
	return same;
}

int directory_authenticate(directory *dir, const char *address, const char *password)
{
	if (dir->cache == NULL)
		return directory__authenticate_once(dir, address, password);
	/* what the copy holds, taken before the check: a refusal is checked
	 * again (argon2id, ~100 ms) only when etcd holds another user or
	 * tenant record than the one the first check may have used */
	char *addr = util_address_normalize(address, strlen(address));
	char *ukey = NULL, *tkey = NULL;
	struct directory__seen user = { MAIL_ERR_NOT_FOUND, NULL, 0 }, tenant = user;
	if (addr != NULL) {
		ukey = directory__user_key(addr);
		tkey = xasprintf(DIRECTORY_KEY_TENANTS "%s", util_address_domain(addr));
		directory__see(dir, ukey, &user);
		directory__see(dir, tkey, &tenant);
	}
	int err = directory__authenticate_once(dir, address, password);
	if (addr != NULL && directory__confirm(dir, err) &&
	    (!directory__still(dir, ukey, &user) || !directory__still(dir, tkey, &tenant)))
		err = directory__authenticate_once(dir->uncached, address, password);
	free(user.value);
	free(tenant.value);
	free(tkey);
	free(ukey);
	free(addr);
	return err;
}

static int directory__user_scram_once(directory *dir, const char *address, struct sasl_scram_keys *keys_r)
{
	char *addr = util_address_normalize(address, strlen(address));
	if (addr == NULL)
		return MAIL_ERR_NOT_FOUND;
	char *key = directory__user_key(addr);
	char *value = NULL;
	size_t len = 0;
	int err = directory__get(dir, key, &value, &len, NULL);
	if (err == MAIL_OK) {
		json_t *j = json_loadb(value, len, 0, NULL);
		json_t *scram = json_object_get(j, "scram");
		if (j == NULL) {
			log_event(LOG_ERROR, "directory", "event=user_record_bad user=%s", addr);
			err = MAIL_ERR_INTERNAL;
		} else if (scram == NULL) {
			err = MAIL_ERR_NOT_FOUND; /* added before SCRAM: keys come with passwd */
		} else if (directory__user_state(j) != DIRECTORY_USER_ACTIVE ||
			   directory__suspended(dir, addr)) {
			log_event(LOG_WARN, "directory", "event=auth_refused user=%s reason=%s", addr,
				  directory__user_state(j) != DIRECTORY_USER_ACTIVE
					  ? user_state_names[directory__user_state(j)]
					  : "tenant_suspended");
			err = MAIL_ERR_NOT_FOUND;
		} else if (directory__scram_parse(scram, keys_r) < 0) {
			log_event(LOG_ERROR, "directory", "event=scram_record_bad user=%s", addr);
			sodium_memzero(keys_r, sizeof *keys_r);
			err = MAIL_ERR_INTERNAL;
		}
		json_decref(j);
	}
	free(value);
	free(key);
	free(addr);
	return err;
}

int directory_user_scram(directory *dir, const char *address, struct sasl_scram_keys *keys_r)
{
	int err = directory__user_scram_once(dir, address, keys_r);
	if (directory__confirm(dir, err)) {
		err = directory__user_scram_once(dir->uncached, address, keys_r);
	}
	return err;
}
