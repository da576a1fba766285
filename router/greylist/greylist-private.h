/* greylist-private.h: what greylist.c (the object, the decision, etcd and
 * its leases), greylist-key.c (a triplet's name from client, sender and
 * recipient) and greylist-cache.c (the cache of passes) share, and what
 * the tests and the fuzzer reach. Not for callers: greylist.h is the
 * contract.
 */
#ifndef MAIL_GREYLIST_PRIVATE_H
#define MAIL_GREYLIST_PRIVATE_H

#include "greylist.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define GREYLIST__DIGEST_LEN 32u
/* INET6_ADDRSTRLEN (46, with its NUL) and "/64" fit. */
#define GREYLIST__NET_MAX 64u

/* ---- greylist-key.c: naming a triplet ------------------------------------ */

/* The network of client_ip as the triplet uses it ("192.0.2.0/24",
 * "2001:db8:1:2::/64") into net_r (GREYLIST__NET_MAX bytes). 0, or -1 for
 * an unparsable address. */
int greylist__net(const char *client_ip, char net_r[GREYLIST__NET_MAX]);

/* The sender as the triplet uses it (lowercased, BATV tag and +extension
 * removed, lone digit runs as '#'; greylist.h) into out_r
 * (GREYLIST_ADDRESS_MAX + 1 bytes; never longer than the input). 0, or -1
 * when sender is over GREYLIST_ADDRESS_MAX or holds a control character. */
int greylist__sender_normalize(const char *sender, char out_r[GREYLIST_ADDRESS_MAX + 1]);

/* SHA-256 over net NUL sender NUL rcpt (each normalised) into digest_r,
 * and its lowercase hex into hex_r. 0, or -1 (MAIL_ERR_PARAMS material:
 * bad address, empty rcpt, too long, control characters). */
int greylist__triplet(const char *client_ip, const char *sender, const char *rcpt,
		      uint8_t digest_r[GREYLIST__DIGEST_LEN],
		      char hex_r[GREYLIST_TRIPLET_HEX_LEN + 1]);

/* The lowercased copy of a valid domain into out_r (254 bytes), and its
 * cache id (SHA-256 over NUL "domain" NUL domain: no triplet starts with
 * NUL, so the two never meet in the cache). 0, or -1 for an invalid one. */
#define GREYLIST__DOMAIN_MAX 253u
int greylist__domain(const char *domain, char out_r[GREYLIST__DOMAIN_MAX + 1],
		     uint8_t digest_r[GREYLIST__DIGEST_LEN]);

/* ---- greylist-cache.c: passes seen recently -------------------------------
 * A set-associative table: an id (the first bytes of a SHA-256, uniform)
 * picks a set of GREYLIST__CACHE_WAYS slots; a new entry takes a free or
 * timed-out slot of its set, else the one closest to timing out. Fixed
 * size from create on: no allocation afterwards, O(1) per call. Times are
 * the caller's clock (the now_ms of the calls). Thread-safe (a mutex). */
#define GREYLIST__CACHE_WAYS 4u
#define GREYLIST__CACHE_ID_LEN 16u

struct greylist__cache_slot {
	uint8_t id[GREYLIST__CACHE_ID_LEN];
	int64_t expires_ms; /* 0: free */
	int64_t stamp_ms;   /* the caller's datum: when it passed, was noted */
};

struct greylist__cache {
	pthread_mutex_t mu;
	struct greylist__cache_slot *slots; /* n_sets * WAYS */
	size_t n_sets;
	int64_t ttl_ms;
};

/* Room for at least entries passes (rounded up to whole sets). */
void greylist__cache_init(struct greylist__cache *cache, unsigned entries, unsigned ttl_s);
void greylist__cache_deinit(struct greylist__cache *cache);
/* 1 and *stamp_r (may be NULL) when id was put less than ttl ago (and not
 * in the caller's future), else 0. */
int greylist__cache_get(struct greylist__cache *cache, const uint8_t *id, int64_t now_ms,
			int64_t *stamp_r);
void greylist__cache_put(struct greylist__cache *cache, const uint8_t *id, int64_t now_ms,
			 int64_t stamp_ms);
void greylist__cache_forget(struct greylist__cache *cache, const uint8_t *id);

#endif
