/* directory-cache.h: the directory in memory, fed by etcd watches (private
 * to router/; the public switch is directory_cache_start() in directory.h).
 *
 * The cache mirrors every key under the four directory prefixes (tenants/,
 * users/, aliases/, domain-aliases/). It is "live" while it holds a
 * consistent copy: loaded at one revision R, then kept current by one watch
 * per prefix from R+1. A supervisor thread loads, starts the watchers, and
 * checks once per check_ms that the copy still matches etcd (the revision
 * check below); anything wrong (a watch lost, a mismatch that does not
 * heal) makes it not live, and it loads again. While not live, readers are
 * told so and read etcd themselves.
 *
 * The revision check: one read-only transaction gives the number of keys
 * under each prefix (from etcd's index: cheap). A live stream makes it
 * agree with the copy within a few ms; a difference seen on two checks in
 * a row while no event arrived on that prefix in between means the watch
 * lags (a stalled stream, a member cut from its cluster), and so do
 * DC_CHECK_FAILURES failed checks in a row: the copy is not live and is
 * loaded again. A stall that loses only changes of existing keys keeps
 * the counts: the periodic resync (every resync_ms, the copy staying
 * live) bounds how long such a change can be missed. etcd offers no cheap
 * "modified since" (its count ignores mod-revision filters).
 *
 * Thread-safe: directory_cache_get() from any thread.
 */
#ifndef MAIL_DIRECTORY_CACHE_H
#define MAIL_DIRECTORY_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "directory.h"

struct etcd_conf;
struct etcd_stats;
typedef struct directory_cache directory_cache;

/* Start the threads; the first load happens on the supervisor thread (the
 * cache is not live until it is done). conf is copied; stats (may be NULL)
 * is borrowed and must outlive the cache. check_ms 0: 1000; resync_ms
 * 0: 300000 (5 min). */
directory_cache *directory_cache_create(const struct etcd_conf *conf, struct etcd_stats *stats,
					unsigned check_ms, unsigned resync_ms);
/* Stops and joins the threads (up to about a second: the watches poll
 * their stop flag). */
void directory_cache_destroy(directory_cache **c);

/* The value of key: 1 found (*value_r a NUL-terminated copy the caller
 * frees, *len_r its length; len_r may be NULL), 0 not there, -1 the cache
 * is not live (read etcd). */
int directory_cache_get(directory_cache *c, const char *key, char **value_r, size_t *len_r);

/* Counters and gauges (struct in directory.h). */
void directory_cache_stats_get(directory_cache *c, struct directory_cache_stats *st);
/* A negative answer was read again from etcd (directory.c counts it). */
void directory_cache_count_confirm(directory_cache *c);

/* Tests only: while on, watch events are read but not applied, as a
 * stalled watch would; the revision check must find it out. */
void directory_cache_test_drop_events(directory_cache *c, int on);

#endif
