/* test-mailctl.c: the mailctl binary against a real etcd. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "directory.h"
#include "etcd-fixture.h"
#include "mail-error.h"

typedef struct result {
	int code;
	char out[4096];
	char err[4096];
} result;

typedef struct fixture {
	mailtest_etcd *etcd;
	char *tmp;
	char bin[PATH_MAX];
	result res; /* the last run's outcome */
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof *f);
	const char *dir = getenv("MAIL_BIN_DIR");
	if (dir != NULL) {
		snprintf(f->bin, sizeof f->bin, "%s/mailctl", dir);
	} else {
		/* next to this test binary */
		ssize_t n = readlink("/proc/self/exe", f->bin, sizeof f->bin - 16);
		if (n < 0)
			return -1;
		f->bin[n] = '\0';
		strcpy(strrchr(f->bin, '/') + 1, "mailctl");
	}
	if (access(f->bin, X_OK) != 0) {
		fprintf(stderr, "mailctl binary not found at %s\n", f->bin);
		return -1;
	}
	if (mailtest_etcd_start(&f->etcd) < 0)
		return -1;
	f->tmp = mailtest_tmpdir("mailctl-test");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	mailtest_etcd_stop(&f->etcd);
	mailtest_rmrf(f->tmp);
	free(f->tmp);
	free(f);
	return 0;
}

static void slurp(const char *path, char *out, size_t size)
{
	FILE *fp = fopen(path, "r");
	size_t n = fp != NULL ? fread(out, 1, size - 1, fp) : 0;
	out[n] = '\0';
	if (fp != NULL)
		fclose(fp);
}

/* Run mailctl with args (NULL-terminated), stdin_text as its standard input
 * and env_etcd as $MAIL_ETCD (NULL: unset). */
static result *run(fixture *f, const char *stdin_text, const char *env_etcd, ...)
{
	result *res = &f->res;
	char in[PATH_MAX], out[PATH_MAX], err[PATH_MAX];
	snprintf(in, sizeof in, "%s/in", f->tmp);
	snprintf(out, sizeof out, "%s/out", f->tmp);
	snprintf(err, sizeof err, "%s/err", f->tmp);
	FILE *fp = fopen(in, "w");
	fputs(stdin_text != NULL ? stdin_text : "", fp);
	fclose(fp);

	char *argv[16] = { "mailctl" };
	int argc = 1;
	va_list ap;
	va_start(ap, env_etcd);
	const char *a;
	while ((a = va_arg(ap, const char *)) != NULL && argc < 15)
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;

	char envbuf[256];
	char *envp[3] = { "PATH=/usr/bin:/bin", NULL, NULL };
	if (env_etcd != NULL) {
		snprintf(envbuf, sizeof envbuf, "MAIL_ETCD=%s", env_etcd);
		envp[1] = envbuf;
	}
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, in, O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, out, O_WRONLY | O_CREAT | O_TRUNC,
					 0600);
	posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, err, O_WRONLY | O_CREAT | O_TRUNC,
					 0600);
	pid_t pid;
	assert_int_equal(posix_spawn(&pid, f->bin, &fa, NULL, argv, envp), 0);
	posix_spawn_file_actions_destroy(&fa);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	res->code = WEXITSTATUS(status);
	slurp(out, res->out, sizeof res->out);
	slurp(err, res->err, sizeof res->err);
	return res;
}

/* Exactly one line on stderr, containing what. */
static void assert_one_line_error(const result *r, const char *what)
{
	int lines = 0;
	for (const char *p = r->err; *p != '\0'; p++)
		lines += *p == '\n';
	assert_non_null(strstr(r->err, what));
	assert_int_equal(lines, 1);
	assert_memory_equal(r->err, "mailctl: ", 9);
}

static void test_usage(void **state)
{
	fixture *f = *state;
	result *r = run(f, NULL, NULL, "--help", NULL);
	assert_int_equal(r->code, 0);
	assert_non_null(strstr(r->out, "usage: mailctl"));
	assert_non_null(strstr(r->out, "user passwd ADDRESS"));
	assert_int_equal(run(f, NULL, NULL, NULL)->code, 1);
	assert_int_equal(run(f, NULL, NULL, "frobnicate", NULL)->code, 1);
	assert_int_equal(run(f, NULL, NULL, "tenant", NULL)->code, 1);
	assert_int_equal(run(f, NULL, NULL, "tenant", "add", NULL)->code, 1);
	assert_int_equal(run(f, NULL, NULL, "user", "rename", "a@b.test", NULL)->code, 1);
	r = run(f, NULL, NULL, "--bogus", "tenant", "list", NULL);
	assert_int_equal(r->code, 1);
	assert_non_null(strstr(r->err, "unknown option --bogus"));
}

static void test_commands(void **state)
{
	fixture *f = *state;
	const char *url = mailtest_etcd_url(f->etcd);
	result *r;

	r = run(f, NULL, NULL, "--etcd", url, "tenant", "add", "Example.test", NULL);
	assert_int_equal(r->code, 0);
	assert_string_equal(r->err, ""); /* no log noise */
	r = run(f, NULL, NULL, "--etcd", url, "tenant", "add", "example.test", NULL);
	assert_int_equal(r->code, 3);
	assert_one_line_error(r, "already exists");
	/* $MAIL_ETCD when there is no --etcd; --etcd=URL works too */
	assert_int_equal(run(f, NULL, url, "tenant", "add", "a.test", NULL)->code, 0);
	r = run(f, NULL, url, "tenant", "add", "bad..domain", NULL);
	assert_int_equal(r->code, 1);
	assert_one_line_error(r, "invalid");
	char opt[128];
	snprintf(opt, sizeof opt, "--etcd=%s", url);
	r = run(f, NULL, NULL, opt, "tenant", "list", NULL);
	assert_int_equal(r->code, 0);
	assert_string_equal(r->out, "a.test\nexample.test\n");

	/* passwords on standard input */
	r = run(f, "secret\n", url, "user", "add", "Alice@Example.test", NULL);
	assert_int_equal(r->code, 0);
	assert_string_equal(r->err, "");
	r = run(f, "secret\n", url, "user", "add", "alice@example.test", NULL);
	assert_int_equal(r->code, 3);
	assert_one_line_error(r, "already exists");
	r = run(f, "secret\n", url, "user", "add", "x@unknown.test", NULL);
	assert_int_equal(r->code, 2);
	assert_one_line_error(r, "unknown.test: not found");
	r = run(f, "", url, "user", "add", "bob@example.test", NULL);
	assert_int_equal(r->code, 1);
	assert_one_line_error(r, "empty password");
	r = run(f, "pw\n", url, "user", "add", "not-an-address", NULL);
	assert_int_equal(r->code, 1);
	/* no trailing newline, CRLF: both fine */
	assert_int_equal(run(f, "bobpw", url, "user", "add", "bob@example.test", NULL)->code, 0);
	assert_int_equal(run(f, "carolpw\r\n", url, "user", "add", "carol@a.test", NULL)->code,
			 0);

	r = run(f, NULL, url, "user", "list", "example.test", NULL);
	assert_int_equal(r->code, 0);
	assert_string_equal(r->out, "alice@example.test\nbob@example.test\n");
	r = run(f, NULL, url, "user", "list", "unknown.test", NULL);
	assert_int_equal(r->code, 2);
	assert_one_line_error(r, "not found");

	directory *dir = directory_create(url);
	assert_int_equal(directory_authenticate(dir, "alice@example.test", "secret"), MAIL_OK);
	assert_int_equal(directory_authenticate(dir, "bob@example.test", "bobpw"), MAIL_OK);
	assert_int_equal(directory_authenticate(dir, "carol@a.test", "carolpw"), MAIL_OK);

	r = run(f, "changed\nignored\n", url, "user", "passwd", "alice@example.test", NULL);
	assert_int_equal(r->code, 0);
	assert_int_equal(directory_authenticate(dir, "alice@example.test", "secret"),
			 MAIL_ERR_PERM);
	assert_int_equal(directory_authenticate(dir, "alice@example.test", "changed"), MAIL_OK);
	r = run(f, "x\n", url, "user", "passwd", "nobody@example.test", NULL);
	assert_int_equal(r->code, 2);
	assert_one_line_error(r, "not found");

	assert_int_equal(run(f, NULL, url, "user", "del", "bob@example.test", NULL)->code, 0);
	r = run(f, NULL, url, "user", "del", "bob@example.test", NULL);
	assert_int_equal(r->code, 2);
	assert_one_line_error(r, "not found");
	assert_int_equal(directory_user_exists(dir, "bob@example.test"), MAIL_ERR_NOT_FOUND);
	directory_destroy(&dir);

	/* --verbose lets the library's log lines through */
	r = run(f, NULL, url, "--verbose", "tenant", "add", "v.test", NULL);
	assert_int_equal(r->code, 0);
	assert_non_null(strstr(r->err, "event=tenant_added"));
}

static void test_unreachable(void **state)
{
	fixture *f = *state;
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d", mailtest_free_port());
	result *r = run(f, NULL, NULL, "--etcd", url, "tenant", "list", NULL);
	assert_int_equal(r->code, 4);
	assert_one_line_error(r, "etcd unreachable");
	r = run(f, "pw\n", url, "user", "add", "a@a.test", NULL);
	assert_int_equal(r->code, 4);
	assert_one_line_error(r, "etcd unreachable");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_usage),
		cmocka_unit_test(test_commands),
		cmocka_unit_test(test_unreachable),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
