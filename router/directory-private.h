/* directory-private.h: what directory.c and directory-alias.c share. */
#ifndef MAIL_DIRECTORY_PRIVATE_H
#define MAIL_DIRECTORY_PRIVATE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "directory.h"
#include "etcd.h"

#define DIRECTORY_KEY_TENANTS "/mail/v1/tenants/"
#define DIRECTORY_KEY_USERS "/mail/v1/users/"
#define DIRECTORY_KEY_ALIASES "/mail/v1/aliases/"
#define DIRECTORY_KEY_DOMAIN_ALIASES "/mail/v1/domain-aliases/"
#define DIRECTORY_CAS_ATTEMPTS 8

struct directory {
	pthread_mutex_t mu; /* guards etcd */
	etcd_client *etcd;
	pthread_mutex_t hash_mu;
	pthread_cond_t hash_cond;
	int hash_free;
};

/* Lowercased copy of a valid domain, or NULL. */
char *directory__domain(const char *domain);
/* "/mail/v1/users/<domain>/<local>" for a normalised address. */
char *directory__user_key(const char *address);
/* etcd_kv_get under the lock. */
int directory__get(directory *dir, const char *key, char **value_r, size_t *len_r,
		   int64_t *mod_r);
/* MAIL_OK when key exists, MAIL_ERR_NOT_FOUND, or the error. */
int directory__exists(directory *dir, const char *key);
/* The names after prefix of every key under it, sorted; with suffix
 * (may be NULL) appended to each. */
int directory__list(directory *dir, const char *prefix, const char *suffix, char ***names_r,
		    size_t *n_r);
/* pw against the user record's app passwords (directory-apppw.c): 1 when
 * pw is shaped like one and its id is there (*matched_r: the hash too),
 * else 0. */
int directory__app_password_check(json_t *record, const char *pw, int *matched_r);
/* Compare-and-swap edit of a user's record (directory.c). */
int directory__user_update(directory *dir, const char *addr,
			   int (*fn)(json_t *record, void *arg), void *arg, int repair);
/* qsort comparator of char * */
int directory__str_cmp(const void *a, const void *b);

#endif
