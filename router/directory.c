/* directory.c: tenants and users in etcd (see directory.h).
 *
 * The etcd handle is serialised by `mu`; password hashing (~100 ms, 64 MiB
 * each) runs outside it, at most DIRECTORY_HASH_SLOTS at a time so a burst
 * of logins cannot take the node's memory. The SCRAM keys stored beside
 * the hash (PBKDF2, a few ms) are derived outside both.
 */
#include "directory.h"

#include <pthread.h>
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

#define DIRECTORY_KEY_TENANTS "/mail/v1/tenants/"
#define DIRECTORY_KEY_USERS "/mail/v1/users/"
/* Concurrent argon2id computations per directory object. */
#define DIRECTORY_HASH_SLOTS 4
/* Longest password accepted (bytes); argon2 takes any, we bound the work. */
#define DIRECTORY_PASSWORD_MAX 1024
#define DIRECTORY_CAS_ATTEMPTS 8

/* Verified against when the user does not exist, so a miss costs the same
 * time as a wrong password (no user enumeration by timing). */
static const char directory__dummy_hash[] =
	"$argon2id$v=19$m=65536,t=2,p=1$z/ilb0SNcR4nXbr1sdx8Tw"
	"$trbs7fFjpuvXa7bHHChBsi8FD/LZyiUsKajwAklNQQk";

struct directory {
	pthread_mutex_t mu; /* guards etcd */
	etcd_client *etcd;
	pthread_mutex_t hash_mu;
	pthread_cond_t hash_cond;
	int hash_free;
};

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
	return dir;
}

void directory_set_etcd_stats(directory *dir, struct etcd_stats *stats)
{
	etcd_client_set_stats(dir->etcd, stats);
}

void directory_destroy(directory **dirp)
{
	directory *dir = *dirp;
	if (dir == NULL)
		return;
	*dirp = NULL;
	etcd_client_destroy(&dir->etcd);
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
static char *directory__domain(const char *domain)
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
static char *directory__user_key(const char *address)
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

static int directory__get(directory *dir, const char *key, char **value_r, size_t *len_r,
			  int64_t *mod_r)
{
	pthread_mutex_lock(&dir->mu);
	int err = etcd_kv_get(dir->etcd, key, value_r, len_r, mod_r, NULL);
	pthread_mutex_unlock(&dir->mu);
	return err;
}

static int directory__exists(directory *dir, const char *key)
{
	char *value = NULL;
	size_t len;
	int err = directory__get(dir, key, &value, &len, NULL);
	free(value);
	return err;
}

static int directory__str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names after prefix of every key under it, sorted; with suffix
 * (may be NULL) appended to each. */
static int directory__list(directory *dir, const char *prefix, const char *suffix,
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

/* The settings in a tenant record j (an object) into s; bad fields are
 * logged and read as their defaults. */
static void directory__tenant_parse(const char *domain, json_t *j,
				    struct directory_tenant_settings *s)
{
	memset(s, 0, sizeof *s);
	json_t *v = json_object_get(j, "created");
	if (json_is_integer(v))
		s->created_ms = json_integer_value(v);
	v = json_object_get(j, "outbound_per_hour");
	if (json_is_integer(v) && json_integer_value(v) >= 0 &&
	    json_integer_value(v) <= (json_int_t)DIRECTORY_OUTBOUND_PER_HOUR_MAX)
		s->outbound_per_hour = (unsigned)json_integer_value(v);
	else if (v != NULL && !json_is_null(v))
		log_event(LOG_WARN, "directory",
			  "event=tenant_setting_bad domain=%s field=outbound_per_hour", domain);
	v = json_object_get(j, "delay_warning");
	if (json_is_boolean(v))
		s->delay_warning = json_is_true(v);
	else if (v != NULL && !json_is_null(v))
		log_event(LOG_WARN, "directory",
			  "event=tenant_setting_bad domain=%s field=delay_warning", domain);
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
	const unsigned known = DIRECTORY_TENANT_OUTBOUND_PER_HOUR | DIRECTORY_TENANT_DELAY_WARNING;
	if ((fields & known) == 0 || (fields & ~known) != 0 ||
	    settings->outbound_per_hour > DIRECTORY_OUTBOUND_PER_HOUR_MAX)
		return MAIL_ERR_PARAMS;
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
		if (fields & DIRECTORY_TENANT_OUTBOUND_PER_HOUR)
			json_object_set_new(j, "outbound_per_hour",
					    json_integer((json_int_t)settings->outbound_per_hour));
		if (fields & DIRECTORY_TENANT_DELAY_WARNING)
			json_object_set_new(j, "delay_warning",
					    json_boolean(settings->delay_warning));
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
		char per_hour[48] = "", warning[24] = "";
		if (fields & DIRECTORY_TENANT_OUTBOUND_PER_HOUR)
			snprintf(per_hour, sizeof per_hour, " outbound_per_hour=%u",
				 settings->outbound_per_hour);
		if (fields & DIRECTORY_TENANT_DELAY_WARNING)
			snprintf(warning, sizeof warning, " delay_warning=%d",
				 settings->delay_warning != 0);
		log_event(LOG_INFO, "directory", "event=tenant_settings_set domain=%s%s%s", d,
			  per_hour, warning);
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
	int err = directory_tenant_exists(dir, util_address_domain(addr));
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
	char *key = directory__user_key(addr);
	for (int attempt = 0; err == MAIL_OK && attempt < DIRECTORY_CAS_ATTEMPTS; attempt++) {
		char *old;
		size_t len;
		int64_t mod;
		err = directory__get(dir, key, &old, &len, &mod);
		if (err != MAIL_OK)
			break;
		/* keep "created" from the record we replace */
		json_t *j = json_loadb(old, len, 0, NULL);
		json_t *c = json_object_get(j, "created");
		json_int_t created = json_is_integer(c) ? json_integer_value(c)
							 : util_now_wall_ms();
		json_decref(j);
		free(old);
		char *value = directory__user_record(hash, created, &keys);
		pthread_mutex_lock(&dir->mu);
		err = etcd_kv_put_if_mod(dir->etcd, key, value, strlen(value), mod, NULL);
		pthread_mutex_unlock(&dir->mu);
		free(value);
		if (err != MAIL_ERR_EXISTS)
			break;
		err = MAIL_OK; /* changed under us: read again */
		if (attempt == DIRECTORY_CAS_ATTEMPTS - 1)
			err = MAIL_ERR_TEMP;
	}
	sodium_memzero(hash, sizeof hash);
	sodium_memzero(&keys, sizeof keys);
	if (err == MAIL_OK)
		log_event(LOG_INFO, "directory", "event=user_passwd user=%s", addr);
	free(key);
	free(addr);
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

int directory_user_exists(directory *dir, const char *address)
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

int directory_authenticate(directory *dir, const char *address, const char *password)
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
	if (err == MAIL_OK) {
		j = json_loadb(value, len, 0, NULL);
		hash = json_string_value(json_object_get(j, "hash"));
	}
	/* an unknown user costs one verification too */
	int ok = directory__verify(dir, hash != NULL ? hash : directory__dummy_hash, password);
	ok = ok && hash != NULL;
	json_decref(j);
	free(value);
	log_event(ok ? LOG_INFO : LOG_WARN, "directory", "event=%s user=%s",
		  ok ? "auth_ok" : "auth_failed", addr != NULL ? addr : "(invalid)");
	free(addr);
	return ok ? MAIL_OK : MAIL_ERR_PERM;
}

int directory_user_scram(directory *dir, const char *address, struct sasl_scram_keys *keys_r)
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
