/* directory.h: the tenant directory in etcd (public contract).
 *
 *   /mail/v1/tenants/<domain>           {"created":<ms>, "outbound_per_hour":N,
 *                                        "delay_warning":bool}
 *   /mail/v1/users/<domain>/<local>     {"hash":"$argon2id$...","created":<ms>,
 *                                        "scram":{"salt":b64,"i":4096,
 *                                                 "stored":b64,"server":b64}}
 *
 * Domains and addresses are normalised (lowercase, util_address_normalize())
 * before use. Passwords are stored only as argon2id hashes from libsodium's
 * crypto_pwhash_str (interactive limits) and as SCRAM-SHA-256 StoredKey and
 * ServerKey (RFC 5802, lib/sasl.h: a random 16-byte salt per password,
 * SASL_SCRAM_ITERATIONS); plaintext is wiped after use. Records written
 * before SCRAM have no "scram" object until the next passwd.
 *
 * A tenant record's settings are optional fields (absent: the default);
 * readers ignore fields they do not know, and writers keep them, so a
 * record written by a newer mailctl still reads here and survives a set.
 *
 * Every call blocks on etcd (and, for passwords, on ~100 ms of hashing):
 * daemons call them from the libuv thread pool, never from the loop thread.
 * A directory object is thread-safe (an internal mutex serialises its
 * etcd handle).
 *
 * Returns: enum mail_error values (lib/mail-error.h), 0 = MAIL_OK;
 * MAIL_ERR_UNAVAILABLE when etcd cannot be reached.
 */
#ifndef MAIL_DIRECTORY_H
#define MAIL_DIRECTORY_H

#include <stddef.h>
#include <stdint.h>

struct sasl_scram_keys;
typedef struct directory directory;

struct etcd_conf;
/* A directory on etcd (conf: how to reach it and as whom; copied). */
directory *directory_create(const struct etcd_conf *etcd);
void directory_destroy(directory **dir);
/* Count this directory's etcd writes in stats (etcd.h; borrowed, must
 * outlive dir; NULL: not counted). Call before any other use. */
struct etcd_stats;
void directory_set_etcd_stats(directory *dir, struct etcd_stats *stats);

/* MAIL_ERR_PARAMS for an invalid domain, MAIL_ERR_EXISTS if present. */
int directory_tenant_add(directory *dir, const char *domain);
/* Sorted domains; the caller frees each string and the array. */
int directory_tenant_list(directory *dir, char ***domains_r, size_t *n_r);
/* MAIL_OK if the domain is a tenant, MAIL_ERR_NOT_FOUND if not. */
int directory_tenant_exists(directory *dir, const char *domain);

/* A tenant's settings (docs/rate-limits.md, docs/dsn.md). */
#define DIRECTORY_OUTBOUND_PER_HOUR_MAX 1000000u
struct directory_tenant_settings {
	/* Messages with at least one recipient outside our tenants that one
	 * authenticated user may submit per sliding hour; 0: no limit, else
	 * 1..DIRECTORY_OUTBOUND_PER_HOUR_MAX. Default 0. */
	unsigned outbound_per_hour;
	/* 1: a "delayed" DSN once a submitted message is still undelivered
	 * after the delay-warning time (EnqueueRequest.delay_warning). Default 0. */
	int delay_warning;
	/* When the tenant was added (ms since the epoch; 0 if unknown). Read
	 * only: _set ignores it. */
	int64_t created_ms;
};
/* Which fields directory_tenant_settings_set() writes. */
enum directory_tenant_field {
	DIRECTORY_TENANT_OUTBOUND_PER_HOUR = 1u << 0,
	DIRECTORY_TENANT_DELAY_WARNING = 1u << 1,
};
/* The settings of tenant domain into *settings_r: defaults for absent
 * fields; a field of the wrong type or out of range is logged
 * (event=tenant_setting_bad) and read as its default. MAIL_OK;
 * MAIL_ERR_NOT_FOUND for an invalid or unknown domain; MAIL_ERR_INTERNAL
 * when the record is not a JSON object (logged). */
int directory_tenant_settings_get(directory *dir, const char *domain,
				  struct directory_tenant_settings *settings_r);
/* Write the fields of settings named in fields (enum directory_tenant_field
 * bits) into the tenant's record, keeping every other field (a
 * compare-and-swap: a concurrent writer's change is not lost). MAIL_OK;
 * MAIL_ERR_PARAMS for outbound_per_hour over the maximum or no fields;
 * MAIL_ERR_NOT_FOUND for an invalid or unknown domain; MAIL_ERR_TEMP when
 * the record kept changing under us. */
int directory_tenant_settings_set(directory *dir, const char *domain,
				  const struct directory_tenant_settings *settings,
				  unsigned fields);

/* MAIL_ERR_PARAMS (bad address or empty password), MAIL_ERR_NOT_FOUND (no
 * such tenant), MAIL_ERR_EXISTS (duplicate user). Stores the argon2id
 * hash and the SCRAM keys. */
int directory_user_add(directory *dir, const char *address, const char *password);
/* MAIL_ERR_NOT_FOUND when the user does not exist. Replaces the hash and
 * the SCRAM keys (a new salt), keeping "created". */
int directory_user_passwd(directory *dir, const char *address, const char *password);
int directory_user_del(directory *dir, const char *address);
/* Sorted full addresses of the tenant's users; MAIL_ERR_NOT_FOUND for an
 * unknown tenant. The caller frees each string and the array. */
int directory_user_list(directory *dir, const char *domain, char ***addresses_r, size_t *n_r);
/* Does this (normalised) address name an existing user? MAIL_OK or
 * MAIL_ERR_NOT_FOUND. */
int directory_user_exists(directory *dir, const char *address);
/* MAIL_OK when the password matches, MAIL_ERR_PERM when the user does not
 * exist or the password is wrong (indistinguishable on purpose). */
int directory_authenticate(directory *dir, const char *address, const char *password);
/* The user's stored SCRAM-SHA-256 keys into *keys_r (struct of lib/sasl.h,
 * for sasl_server_scram_keys()). MAIL_OK; MAIL_ERR_NOT_FOUND for an invalid
 * address, an unknown user, or a user without SCRAM keys (added before
 * they were stored: the next directory_user_passwd() adds them); either
 * way the caller goes on with sasl_server_scram_unknown(), so a client
 * cannot tell. MAIL_ERR_INTERNAL for a malformed record (logged). */
int directory_user_scram(directory *dir, const char *address, struct sasl_scram_keys *keys_r);

#endif
