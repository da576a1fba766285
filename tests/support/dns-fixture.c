/* dns-fixture.c: tests/support/dnszone.py as a child process (see
 * dns-fixture.h). The server picks its own free port (it binds port 0 for
 * UDP, then TCP on the same number) and writes it to a file by rename,
 * so no port is chosen here that another process could take first. The
 * server gets SIGKILL when the test process dies (PR_SET_PDEATHSIG), so
 * a crashed test leaves none behind. */
#include "dns-fixture.h"

#include "etcd-fixture.h" /* mailtest_tmpdir, mailtest_rmrf, mailtest_sleep_ms */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAILTEST_DNS_PYTHON "/usr/bin/python3"
#define MAILTEST_DNS_SCRIPT MAIL_SOURCE_DIR "/tests/support/dnszone.py"
#define MAILTEST_DNS_READY_MS 10000
#define MAILTEST_DNS_STOP_MS 5000
#define MAILTEST_DNS_ARGS_MAX 32

struct mailtest_dns {
	pid_t pid;
	int port;
	char *dir;
	char server[32];
};

static long mailtest_dns__now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static int mailtest_dns__write(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return -1;
	int ok = fputs(text, f) >= 0;
	return fclose(f) == 0 && ok ? 0 : -1;
}

/* The port from the port file once it is there, or 0. */
static int mailtest_dns__read_port(const char *path)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return 0;
	int port = 0;
	if (fscanf(f, "%d", &port) != 1)
		port = 0;
	fclose(f);
	return port;
}

static void mailtest_dns__kill(mailtest_dns *d)
{
	if (d->pid <= 0)
		return;
	kill(d->pid, SIGTERM);
	long deadline = mailtest_dns__now_ms() + MAILTEST_DNS_STOP_MS;
	for (;;) {
		pid_t r = waitpid(d->pid, NULL, WNOHANG);
		if (r == d->pid || (r < 0 && errno != EINTR))
			break;
		if (mailtest_dns__now_ms() > deadline) {
			kill(d->pid, SIGKILL);
			waitpid(d->pid, NULL, 0);
			break;
		}
		mailtest_sleep_ms(20);
	}
	d->pid = 0;
}

int mailtest_dns_start(const char *zone, const char *const *args, mailtest_dns **dns_r)
{
	mailtest_dns *d = calloc(1, sizeof *d);
	char zone_path[512], port_path[512];
	if (d == NULL || (d->dir = mailtest_tmpdir("mailtest-dns")) == NULL) {
		fprintf(stderr, "dns-fixture: no temp dir\n");
		free(d);
		return -1;
	}
	snprintf(zone_path, sizeof zone_path, "%s/zone.txt", d->dir);
	snprintf(port_path, sizeof port_path, "%s/port", d->dir);
	if (mailtest_dns__write(zone_path, zone) < 0) {
		fprintf(stderr, "dns-fixture: cannot write %s\n", zone_path);
		goto fail;
	}
	const char *argv[MAILTEST_DNS_ARGS_MAX + 8] = {
		MAILTEST_DNS_PYTHON, MAILTEST_DNS_SCRIPT, "--zone", zone_path,
		"--port-file", port_path,
	};
	size_t argc = 6;
	for (size_t i = 0; args != NULL && args[i] != NULL && i < MAILTEST_DNS_ARGS_MAX; i++)
		argv[argc++] = args[i];
	argv[argc] = NULL;
	pid_t parent = getpid();
	d->pid = fork();
	if (d->pid < 0)
		goto fail;
	if (d->pid == 0) {
		/* a test that dies (an assert, a sanitizer, a timeout) takes the
		 * server with it */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		/* a mask inherited from the test's runner (ctest blocks
		 * SIGTERM, say) must not keep the server from stopping */
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGTERM, SIG_DFL);
		int null = open("/dev/null", O_RDWR);
		if (null >= 0) {
			dup2(null, STDIN_FILENO);
			dup2(null, STDOUT_FILENO);
		}
		execv(MAILTEST_DNS_PYTHON, (char *const *)argv);
		_exit(127);
	}
	long deadline = mailtest_dns__now_ms() + MAILTEST_DNS_READY_MS;
	while ((d->port = mailtest_dns__read_port(port_path)) == 0) {
		int status;
		if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
			d->pid = 0;
			fprintf(stderr, "dns-fixture: dnszone.py exited (status %d): is "
					"python3-dnslib installed?\n", status);
			goto fail;
		}
		if (mailtest_dns__now_ms() > deadline) {
			fprintf(stderr, "dns-fixture: dnszone.py not listening after %d ms\n",
				MAILTEST_DNS_READY_MS);
			goto fail;
		}
		mailtest_sleep_ms(20);
	}
	snprintf(d->server, sizeof d->server, "127.0.0.1:%d", d->port);
	*dns_r = d;
	return 0;
fail:
	mailtest_dns__kill(d);
	mailtest_rmrf(d->dir);
	free(d->dir);
	free(d);
	return -1;
}

const char *mailtest_dns_server(const mailtest_dns *dns)
{
	return dns->server;
}

int mailtest_dns_port(const mailtest_dns *dns)
{
	return dns->port;
}

pid_t mailtest_dns_pid(const mailtest_dns *dns)
{
	return dns->pid;
}

void mailtest_dns_stop(mailtest_dns **dns)
{
	mailtest_dns *d = *dns;
	if (d == NULL)
		return;
	*dns = NULL;
	mailtest_dns__kill(d);
	mailtest_rmrf(d->dir);
	free(d->dir);
	free(d);
}
