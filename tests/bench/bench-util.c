/* bench-util.c: see bench-util.h. */
#include "bench-util.h"

#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <leveldb/c.h>

double bench_now(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

long bench_rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	if (f == NULL)
		return 0;
	char line[256];
	long kib = 0;
	while (fgets(line, sizeof line, f) != NULL) {
		if (strncmp(line, "VmRSS:", 6) == 0)
			kib = strtol(line + 6, NULL, 10);
	}
	fclose(f);
	return kib;
}

long long bench_dir_bytes(const char *dir)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return -1;
	long long total = 0;
	struct dirent *de;
	char path[1024];
	while ((de = readdir(d)) != NULL) {
		struct stat st;
		snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
			total += st.st_size;
	}
	closedir(d);
	return total;
}

static int bench__rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(path);
}

int bench_rm_rf(const char *dir)
{
	return nftw(dir, bench__rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

void bench_count_keys(const char *dir, const char *label)
{
	leveldb_options_t *o = leveldb_options_create();
	char *err = NULL;
	leveldb_t *db = leveldb_open(o, dir, &err);
	if (err != NULL) {
		fprintf(stderr, "reopen %s: %s\n", dir, err);
		exit(1);
	}
	leveldb_readoptions_t *r = leveldb_readoptions_create();
	leveldb_readoptions_set_fill_cache(r, 0);
	leveldb_iterator_t *it = leveldb_create_iterator(db, r);
	long counts[256] = { 0 };
	for (leveldb_iter_seek_to_first(it); leveldb_iter_valid(it); leveldb_iter_next(it)) {
		size_t klen;
		const char *k = leveldb_iter_key(it, &klen);
		counts[klen > 1 ? (unsigned char)k[1] : 0]++;
	}
	leveldb_iter_destroy(it);
	printf("%s:", label);
	for (int c = 0; c < 256; c++) {
		if (counts[c] > 0)
			printf(" '%c'=%ld", c >= 0x20 && c < 0x7f ? c : '?', counts[c]);
	}
	printf("\n");
	leveldb_readoptions_destroy(r);
	leveldb_close(db);
	leveldb_options_destroy(o);
}
