/* bench-util.h: what the storage benchmarks (store-node/mailstore-bench.c,
 * queue-node/queue-store-bench.c) print beside their timings. Benchmarks
 * only: nothing here is linked into a daemon. Any thread. */
#ifndef MAIL_BENCH_UTIL_H
#define MAIL_BENCH_UTIL_H

#include <time.h>

/* Seconds on clock (CLOCK_MONOTONIC for wall time,
 * CLOCK_PROCESS_CPUTIME_ID for the CPU time of the process). */
double bench_now(clockid_t clock);
/* The resident set size of this process in KiB (/proc/self/status), 0 when
 * unknown. */
long bench_rss_kib(void);
/* Bytes of the regular files directly in dir (a LevelDB directory has no
 * subdirectories), -1 when dir cannot be read. */
long long bench_dir_bytes(const char *dir);
/* Remove dir and everything under it. Returns 0 or -1. */
int bench_rm_rf(const char *dir);
/* Print, on one line led by label, how many keys of the closed LevelDB
 * database at dir have each second byte (the key kind of our schemas).
 * Exits the process when the database cannot be opened. */
void bench_count_keys(const char *dir, const char *label);

#endif
