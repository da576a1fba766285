/* test-rspamd-fixture.c: tests/support/rspamd.py as a child process (see
 * test-rspamd-fixture.h). The script picks the ports and says them on its
 * stdout once rspamd is ready, so nothing here chooses a port another
 * process could take first.
 *
 * A test killed outright (a timeout kills its process group, the script
 * with it) cannot remove its dir, ~90 MB with rspamd's databases. Each
 * dir holds an flock on its .owner file for the life of its test; a
 * start removes the dirs whose lock nobody holds any more. */
#include "test-rspamd-fixture.h"

#include "etcd-fixture.h" /* mailtest_tmpdir, mailtest_rmrf, mailtest_sleep_ms */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAILTEST_RSPAMD_PYTHON "/usr/bin/python3"
#define MAILTEST_RSPAMD_SCRIPT MAIL_SOURCE_DIR "/tests/support/rspamd.py"
/* the first start compiles hyperscan (measured 5-40 s) */
#define MAILTEST_RSPAMD_READY_MS 150000
/* the script waits up to 15 s for rspamd to stop */
#define MAILTEST_RSPAMD_STOP_MS 20000
#define MAILTEST_RSPAMD_LINE_MAX 256
#define MAILTEST_RSPAMD_TMP "/tmp"
#define MAILTEST_RSPAMD_PREFIX "mailtest-rspamd"

struct mailtest_rspamd {
	pid_t script;
	pid_t rspamd;
	char *dir;
	int owner; /* flock held while the test lives */
	char url[128];
};

/* Remove the dirs of tests that died without stopping (see the top). A
 * dir without .owner is skipped: it may be another test's, just made. */
static void mailtest_rspamd__reap_stale(void)
{
	DIR *d = opendir(MAILTEST_RSPAMD_TMP);
	if (d == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		static const char prefix[] = MAILTEST_RSPAMD_PREFIX ".";
		if (strncmp(e->d_name, prefix, sizeof prefix - 1) != 0)
			continue;
		char dir[512], owner[600];
		snprintf(dir, sizeof dir, "%s/%s", MAILTEST_RSPAMD_TMP, e->d_name);
		snprintf(owner, sizeof owner, "%s/.owner", dir);
		int fd = open(owner, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			mailtest_rmrf(dir);
		close(fd);
	}
	closedir(d);
}

static long mailtest_rspamd__now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void mailtest_rspamd__kill(mailtest_rspamd *r)
{
	if (r->script <= 0)
		return;
	kill(r->script, SIGTERM);
	long deadline = mailtest_rspamd__now_ms() + MAILTEST_RSPAMD_STOP_MS;
	for (;;) {
		pid_t w = waitpid(r->script, NULL, WNOHANG);
		if (w == r->script || (w < 0 && errno != EINTR))
			break;
		if (mailtest_rspamd__now_ms() > deadline) {
			/* rspamd gets SIGTERM from its PR_SET_PDEATHSIG */
			kill(r->script, SIGKILL);
			waitpid(r->script, NULL, 0);
			break;
		}
		mailtest_sleep_ms(20);
	}
	r->script = 0;
}

/* The script's first stdout line into line, or -1 (it exited, or the
 * deadline passed). */
static int mailtest_rspamd__read_line(int fd, char *line, size_t size)
{
	size_t len = 0;
	long deadline = mailtest_rspamd__now_ms() + MAILTEST_RSPAMD_READY_MS;
	while (len + 1 < size) {
		long left = deadline - mailtest_rspamd__now_ms();
		if (left <= 0) {
			fprintf(stderr, "rspamd-fixture: not ready after %d ms\n",
				MAILTEST_RSPAMD_READY_MS);
			return -1;
		}
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int n = poll(&p, 1, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			continue;
		ssize_t got = read(fd, line + len, 1);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			fprintf(stderr, "rspamd-fixture: rspamd.py exited before ready\n");
			return -1;
		}
		if (line[len] == '\n') {
			line[len] = '\0';
			return 0;
		}
		len++;
	}
	fprintf(stderr, "rspamd-fixture: line too long\n");
	return -1;
}

int mailtest_rspamd_start(mailtest_rspamd **r_r)
{
	mailtest_rspamd__reap_stale();
	mailtest_rspamd *r = calloc(1, sizeof *r);
	if (r == NULL || (r->dir = mailtest_tmpdir(MAILTEST_RSPAMD_PREFIX)) == NULL) {
		fprintf(stderr, "rspamd-fixture: no temp dir\n");
		free(r);
		return -1;
	}
	char owner[600];
	snprintf(owner, sizeof owner, "%s/.owner", r->dir);
	/* O_CLOEXEC: the lock stays the test's, not the script's */
	r->owner = open(owner, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (r->owner < 0 || flock(r->owner, LOCK_EX) < 0) {
		fprintf(stderr, "rspamd-fixture: cannot lock %s\n", owner);
		goto fail;
	}
	int out[2];
	if (pipe2(out, O_CLOEXEC) < 0)
		goto fail;
	pid_t parent = getpid();
	r->script = fork();
	if (r->script < 0) {
		close(out[0]);
		close(out[1]);
		goto fail;
	}
	if (r->script == 0) {
		/* a test that dies (an assert, a sanitizer, a timeout) takes the
		 * script with it, and the script rspamd */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(1);
		/* a mask inherited from the test's runner must not keep the
		 * script from stopping */
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGTERM, SIG_DFL);
		int null = open("/dev/null", O_RDWR);
		if (null >= 0)
			dup2(null, STDIN_FILENO);
		dup2(out[1], STDOUT_FILENO);
		execl(MAILTEST_RSPAMD_PYTHON, MAILTEST_RSPAMD_PYTHON, MAILTEST_RSPAMD_SCRIPT, "run",
		      r->dir, (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	char line[MAILTEST_RSPAMD_LINE_MAX];
	int ok = mailtest_rspamd__read_line(out[0], line, sizeof line);
	close(out[0]);
	if (ok < 0)
		goto fail;
	int pid = 0;
	if (sscanf(line, "url=%127s pid=%d", r->url, &pid) != 2 ||
	    strncmp(r->url, "http://127.0.0.1:", 17) != 0) {
		fprintf(stderr, "rspamd-fixture: unexpected line \"%s\"\n", line);
		goto fail;
	}
	r->rspamd = pid;
	*r_r = r;
	return 0;
fail:
	mailtest_rspamd__kill(r);
	mailtest_rmrf(r->dir);
	if (r->owner >= 0)
		close(r->owner);
	free(r->dir);
	free(r);
	return -1;
}

const char *mailtest_rspamd_url(const mailtest_rspamd *r)
{
	return r->url;
}

pid_t mailtest_rspamd_pid(const mailtest_rspamd *r)
{
	return r->rspamd;
}

void mailtest_rspamd_stop(mailtest_rspamd **rp)
{
	mailtest_rspamd *r = *rp;
	if (r == NULL)
		return;
	*rp = NULL;
	mailtest_rspamd__kill(r);
	mailtest_rmrf(r->dir);
	close(r->owner);
	free(r->dir);
	free(r);
}
