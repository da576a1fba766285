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

typedef struct directory_cache directory_cache;

struct directory {
	pthread_mutex_t mu; /* guards etcd */
	etcd_client *etcd;
	etcd_conf *conf;
	struct etcd_stats *stats;
	/* directory_cache_start(): the copy lookups read, and a directory
	 * without one that reads negative answers again; both NULL
	 * otherwise */
	directory_cache *cache;
	directory *uncached;
	pthread_mutex_t hash_mu;
	pthread_cond_t hash_cond;
	int hash_free;
};

/* Lowercased copy of a valid domain, or NULL. */
char *directory__domain(const char *domain);
/* "/mail/v1/users/<domain>/<local>" for a normalised address. */
char *directory__user_key(const char *address);
/* The value of key: from the cache when there is one, it is live and
 * mod_r is NULL (a read that is not the start of a compare-and-swap);
 * else etcd_kv_get under the lock. */
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
/* 1 when err, an answer read through the cache, is a negative one to
 * read again from dir->uncached (and counts it). */
int directory__confirm(directory *dir, int err);
/* qsort comparator of char * */
int directory__str_cmp(const void *a, const void *b);

#endif
