/* test-dkim-verify.c: see test-dkim-verify.h. */
#include "test-dkim-verify.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DKIMTEST_PYTHON "/usr/bin/python3"
#define DKIMTEST_TIMEOUT_MS 60000

int dkimtest_verify(const char *dir, const void *msg, size_t len, const char *const *names,
		    const char *const *values, size_t n, char *out, size_t out_size)
{
	char mpath[PATH_MAX], kpath[PATH_MAX], opath[PATH_MAX];
	snprintf(mpath, sizeof mpath, "%s/message.eml", dir);
	snprintf(kpath, sizeof kpath, "%s/keys.txt", dir);
	snprintf(opath, sizeof opath, "%s/verify.out", dir);
	out[0] = '\0';
	FILE *f = fopen(mpath, "wb");
	if (f == NULL || fwrite(msg, 1, len, f) != len || fclose(f) != 0)
		return -1;
	f = fopen(kpath, "w");
	if (f == NULL)
		return -1;
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%s %s\n", names[i], values[i]);
	if (fclose(f) != 0)
		return -1;

	char *argv[] = { DKIMTEST_PYTHON, MAIL_SOURCE_DIR "/lib/dkim/dkim-verify.py", mpath,
			 kpath, NULL };
	char *envp[] = { "PATH=/usr/bin:/bin", "LC_ALL=C.UTF-8", NULL };
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, opath, O_WRONLY | O_CREAT | O_TRUNC,
					 0600);
	posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
	pid_t pid;
	int rc = posix_spawn(&pid, DKIMTEST_PYTHON, &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0)
		return -1;
	int status = 0;
	pid_t got = 0;
	for (int waited = 0; got == 0; waited += 20) {
		got = waitpid(pid, &status, WNOHANG);
		if (got == 0 && waited >= DKIMTEST_TIMEOUT_MS) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return -1;
		}
		if (got == 0)
			nanosleep(&(struct timespec){ 0, 20 * 1000 * 1000 }, NULL);
	}
	f = fopen(opath, "r");
	size_t got_n = f != NULL ? fread(out, 1, out_size - 1, f) : 0;
	out[got_n] = '\0';
	if (f != NULL)
		fclose(f);
	return got == pid && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
