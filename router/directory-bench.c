/* directory_bench: what TLS and credentials to etcd cost on the directory
 * lookup path (the frontend's RCPT TO check and logins read one user record
 * from etcd). Runs the same lookups against two real etcds started by the
 * test fixture: plain http without auth, then https with client
 * certificates and auth on (the frontend's role: read /mail/v1/users/ and
 * tenants/).
 *
 * Per mode it prints, for N directory_user_exists() calls on one directory
 * (one kept-alive connection, as a frontend's directory has): wall time per
 * lookup (p50, p99), this process's CPU per lookup, etcd's CPU per lookup
 * (/proc/PID/stat); then the same for N/10 lookups each on a fresh client
 * (a new TCP connection, and with TLS a full handshake, as the thread-pool
 * jobs that poll blocks and certificates make; the token is shared, so no
 * authentication). Not a test (it asserts nothing about time):
 *   build/bin/directory_bench [N]   (default 5000)
 * The etcd data dirs are under /tmp and removed at the end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "directory.h"
#include "etcd-fixture.h"
#include "etcd.h"
#include "mail-error.h"
#include "xalloc.h"

#define BENCH_USER "bench@bench.test"

static uint64_t bench_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static double bench_cpu_self_ms(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000.0 +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000.0;
}

/* utime + stime of pid in ms (/proc/PID/stat fields 14 and 15). */
static double bench_cpu_pid_ms(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	size_t n = f != NULL ? fread(buf, 1, sizeof buf - 1, f) : 0;
	if (f != NULL)
		fclose(f);
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	unsigned long long ut = 0, st = 0;
	if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
				&ut, &st) != 2)
		return 0;
	return (double)(ut + st) * 1000.0 / (double)sysconf(_SC_CLK_TCK);
}

static int bench_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void bench_report(const char *mode, const char *what, double *lat, size_t n,
			 double self_ms, double etcd_ms)
{
	qsort(lat, n, sizeof *lat, bench_cmp);
	printf("%-10s %-24s %6zu lookups  p50 %6.3f ms  p99 %6.3f ms  cpu here %6.3f ms"
	       "  etcd %6.3f ms per lookup\n",
	       mode, what, n, lat[n / 2], lat[n * 99 / 100], self_ms / (double)n,
	       etcd_ms / (double)n);
}

/* The users, roles and auth of the TLS mode (etcdctl as root). */
static int bench_secure_setup(const mailtest_etcd *e)
{
	return mailtest_etcdctl(e, NULL, NULL, "user", "add", "root:root-pw",
				"--interactive=false", NULL) != 0 ||
	       mailtest_etcdctl(e, NULL, NULL, "user", "add", "admin:admin-pw",
				"--interactive=false", NULL) != 0 ||
	       mailtest_etcdctl(e, NULL, NULL, "user", "add", "frontend:frontend-pw",
				"--interactive=false", NULL) != 0 ||
	       mailtest_etcdctl(e, NULL, NULL, "role", "add", "admin", NULL) != 0 ||
	       mailtest_etcdctl(e, NULL, NULL, "role", "add", "frontend", NULL) != 0 ||
	       mailtest_etcdctl(e, NULL, NULL, "role", "grant-permission", "admin",
				"--prefix=true", "readwrite", "/mail/v1/", NULL) != 0 ||
	       mailtest_etcdctl(e, NULL, NULL, "role", "grant-permission", "frontend",
				"--prefix=true", "read", "/mail/v1/users/", NULL) != 0 ||
	       mailtest_etcdctl(e, NULL, NULL, "role", "grant-permission", "frontend",
				"--prefix=true", "read", "/mail/v1/tenants/", NULL) != 0 ||
	       mailtest_etcdctl(e, NULL, NULL, "user", "grant-role", "admin", "admin",
				NULL) != 0 ||
	       mailtest_etcdctl(e, NULL, NULL, "user", "grant-role", "frontend", "frontend",
				NULL) != 0 ||
	       mailtest_etcdctl(e, NULL, NULL, "auth", "enable", NULL) != 0
		       ? -1
		       : 0;
}

static int bench_mode(int secure, size_t n)
{
	const char *mode = secure ? "https+auth" : "http";
	mailtest_etcd *e;
	if ((secure ? mailtest_etcd_start_tls(&e) : mailtest_etcd_start(&e)) < 0 ||
	    (secure && bench_secure_setup(e) < 0)) {
		fprintf(stderr, "directory_bench: cannot start etcd (%s)\n", mode);
		return -1;
	}
	etcd_tokens *tokens = etcd_tokens_create();
	etcd_conf admin = *mailtest_etcd_conf(e), fe = admin;
	if (secure) {
		admin.user = "admin";
		admin.password = "admin-pw";
		fe.user = "frontend";
		fe.password = "frontend-pw";
		fe.tokens = tokens;
	}
	directory *dir = directory_create(&admin);
	if (directory_tenant_add(dir, "bench.test") != MAIL_OK ||
	    directory_user_add(dir, BENCH_USER, "bench-pw") != MAIL_OK) {
		fprintf(stderr, "directory_bench: cannot add the user (%s)\n", mode);
		directory_destroy(&dir);
		etcd_tokens_destroy(&tokens);
		mailtest_etcd_stop(&e);
		return -1;
	}
	directory_destroy(&dir);

	/* one directory, one kept-alive connection (the first lookup, with
	 * the connection and the authentication, is not counted) */
	double *lat = xcalloc(n, sizeof *lat);
	dir = directory_create(&fe);
	directory_user_exists(dir, BENCH_USER);
	double self0 = bench_cpu_self_ms(), etcd0 = bench_cpu_pid_ms(mailtest_etcd_pid(e));
	for (size_t i = 0; i < n; i++) {
		uint64_t t0 = bench_now_us();
		if (directory_user_exists(dir, BENCH_USER) != MAIL_OK)
			fprintf(stderr, "directory_bench: lookup failed (%s)\n", mode);
		lat[i] = (double)(bench_now_us() - t0) / 1000.0;
	}
	bench_report(mode, "kept-alive connection", lat, n, bench_cpu_self_ms() - self0,
		     bench_cpu_pid_ms(mailtest_etcd_pid(e)) - etcd0);
	directory_destroy(&dir);

	/* a new client per lookup: connect (+ TLS handshake) each time */
	size_t m = n / 10 > 0 ? n / 10 : 1;
	self0 = bench_cpu_self_ms();
	etcd0 = bench_cpu_pid_ms(mailtest_etcd_pid(e));
	for (size_t i = 0; i < m; i++) {
		uint64_t t0 = bench_now_us();
		etcd_client *c = etcd_client_create(&fe);
		char *v = NULL;
		if (etcd_kv_get(c, "/mail/v1/users/bench.test/bench", &v, NULL, NULL, NULL) !=
		    MAIL_OK)
			fprintf(stderr, "directory_bench: get failed (%s)\n", mode);
		free(v);
		etcd_client_destroy(&c);
		lat[i] = (double)(bench_now_us() - t0) / 1000.0;
	}
	bench_report(mode, "new connection each", lat, m, bench_cpu_self_ms() - self0,
		     bench_cpu_pid_ms(mailtest_etcd_pid(e)) - etcd0);
	free(lat);
	etcd_tokens_destroy(&tokens);
	mailtest_etcd_stop(&e);
	return 0;
}

int main(int argc, char **argv)
{
	size_t n = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 5000;
	if (n < 10)
		n = 10;
	if (bench_mode(0, n) < 0 || bench_mode(1, n) < 0)
		return 1;
	return 0;
}
