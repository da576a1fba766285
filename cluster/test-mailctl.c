/* test-mailctl.c: the mailctl binary against a real etcd. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <jansson.h>

#include "controller.h"
#include "dkim-keys.h"
#include "dkim-sign.h"
#include "directory.h"
#include "etcd.h"
#include "node-status.h"
#include "ring.h"
#include "etcd-fixture.h"
#include "mail-error.h"
#include "router.h"
#include "test-dkim-verify.h"
#include "util.h"
#include "xalloc.h"

typedef struct result {
	int code;
	char out[16384]; /* --help is longer than 4 KiB */
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

/* Start mailctl with args (NULL-terminated in ap), stdin_text as its
 * standard input and env_etcd as $MAIL_ETCD (NULL: unset); its output goes
 * to files in f->tmp. Returns its PID. */
static pid_t run_startv(fixture *f, const char *stdin_text, const char *env_etcd, va_list ap)
{
	char in[PATH_MAX], out[PATH_MAX], err[PATH_MAX];
	snprintf(in, sizeof in, "%s/in", f->tmp);
	snprintf(out, sizeof out, "%s/out", f->tmp);
	snprintf(err, sizeof err, "%s/err", f->tmp);
	FILE *fp = fopen(in, "w");
	fputs(stdin_text != NULL ? stdin_text : "", fp);
	fclose(fp);

	char *argv[16] = { "mailctl" };
	int argc = 1;
	const char *a;
	while ((a = va_arg(ap, const char *)) != NULL && argc < 15)
		argv[argc++] = (char *)a;
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
	return pid;
}

static pid_t run_start(fixture *f, const char *stdin_text, const char *env_etcd, ...)
{
	va_list ap;
	va_start(ap, env_etcd);
	pid_t pid = run_startv(f, stdin_text, env_etcd, ap);
	va_end(ap);
	return pid;
}

/* Wait (at most timeout_ms; then SIGKILL it and fail) for the mailctl that
 * run_start started, and read what it printed. */
static result *run_finish(fixture *f, pid_t pid, int timeout_ms)
{
	result *res = &f->res;
	int status = 0;
	pid_t got = 0;
	for (int waited = 0; got == 0; waited += 20) {
		got = waitpid(pid, &status, WNOHANG);
		if (got == 0 && waited >= timeout_ms) {
			kill(pid, SIGKILL);
			assert_int_equal(waitpid(pid, &status, 0), pid);
			fail_msg("mailctl still running after %d ms", timeout_ms);
		}
		if (got == 0)
			mailtest_sleep_ms(20);
	}
	assert_int_equal(got, pid);
	assert_true(WIFEXITED(status));
	res->code = WEXITSTATUS(status);
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/out", f->tmp);
	slurp(path, res->out, sizeof res->out);
	snprintf(path, sizeof path, "%s/err", f->tmp);
	slurp(path, res->err, sizeof res->err);
	return res;
}

/* Run mailctl with args (NULL-terminated) to its end; see run_startv. */
static result *run(fixture *f, const char *stdin_text, const char *env_etcd, ...)
{
	va_list ap;
	va_start(ap, env_etcd);
	pid_t pid = run_startv(f, stdin_text, env_etcd, ap);
	va_end(ap);
	return run_finish(f, pid, 60000);
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
	assert_non_null(strstr(r->out, "tenant set DOMAIN [--outbound-per-hour N]"));
	assert_non_null(strstr(r->out, "tenant show DOMAIN [--json]"));
	assert_non_null(strstr(r->out, "node drain ID"));
	assert_non_null(strstr(r->out, "partitions [--role R] [--watch [SECONDS]]"));
	assert_non_null(strstr(r->out, "dkim generate DOMAIN [--selector S] [--algorithm A]"));
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

	directory *dir = directory_create(mailtest_etcd_conf(f->etcd));
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

	/* no store tier here: the mailbox cannot be erased, so the user stays,
	 * disabled ("deleting"), and the error says how to finish (the whole
	 * path: tests/e2e_lifecycle.py) */
	r = run(f, NULL, url, "user", "del", "bob@example.test", NULL);
	assert_int_equal(r->code, 4);
	assert_non_null(strstr(r->err, "stays disabled"));
	assert_int_equal(directory_user_exists(dir, "bob@example.test"), MAIL_OK);
	assert_int_equal(directory_authenticate(dir, "bob@example.test", "bobpw"), MAIL_ERR_PERM);
	r = run(f, NULL, url, "user", "show", "bob@example.test", NULL);
	assert_int_equal(r->code, 0);
	assert_non_null(strstr(r->out, "state:    deleting"));
	r = run(f, NULL, url, "user", "del", "nobody@example.test", NULL);
	assert_int_equal(r->code, 2);
	assert_one_line_error(r, "not found");
	directory_destroy(&dir);

	/* --verbose lets the library's log lines through */
	r = run(f, NULL, url, "--verbose", "tenant", "add", "v.test", NULL);
	assert_int_equal(r->code, 0);
	assert_non_null(strstr(r->err, "event=tenant_added"));
}

/* `tenant set|show`: the settings reach the record (other fields kept),
 * show prints them as text and JSON; bad values, unknown tenants and a
 * set without options refused. */
static void test_tenant_settings(void **state)
{
	fixture *f = *state;
	const char *url = mailtest_etcd_url(f->etcd);
	result *r;
	assert_int_equal(run(f, NULL, url, "tenant", "add", "limits.test", NULL)->code, 0);
	r = run(f, NULL, url, "tenant", "show", "limits.test", NULL);
	assert_int_equal(r->code, 0);
	assert_non_null(strstr(r->out, "outbound-per-hour  unlimited\n"));
	assert_non_null(strstr(r->out, "delay-warning      off\n"));
	r = run(f, NULL, url, "tenant", "set", "Limits.TEST", "--outbound-per-hour", "3", NULL);
	assert_int_equal(r->code, 0);
	assert_string_equal(r->err, "");
	assert_non_null(strstr(r->out, "tenant             limits.test\n"));
	assert_non_null(strstr(r->out, "outbound-per-hour  3 per hour\n"));
	r = run(f, NULL, url, "tenant", "set", "limits.test", "--delay-warning", "on", NULL);
	assert_int_equal(r->code, 0);
	assert_non_null(strstr(r->out, "outbound-per-hour  3 per hour\n")); /* kept */
	assert_non_null(strstr(r->out, "delay-warning      on\n"));
	r = run(f, NULL, url, "tenant", "show", "limits.test", "--json", NULL);
	assert_int_equal(r->code, 0);
	json_t *j = json_loads(r->out, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "domain")), "limits.test");
	assert_int_equal(json_integer_value(json_object_get(j, "outbound_per_hour")), 3);
	assert_true(json_is_true(json_object_get(j, "delay_warning")));
	assert_true(json_integer_value(json_object_get(j, "created")) > 0);
	json_decref(j);

	/* the record: "created" and a field of a newer writer survive a set */
	etcd_client *c = etcd_client_create(mailtest_etcd_conf(f->etcd));
	char *value = NULL;
	size_t len = 0;
	assert_int_equal(etcd_kv_get(c, "/mail/v1/tenants/limits.test", &value, &len, NULL, NULL),
			 MAIL_OK);
	j = json_loadb(value, len, 0, NULL);
	free(value);
	json_object_set_new(j, "future_field", json_string("kept"));
	value = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	assert_int_equal(etcd_kv_put(c, "/mail/v1/tenants/limits.test", value, strlen(value), 0),
			 MAIL_OK);
	free(value);
	r = run(f, NULL, url, "tenant", "set", "limits.test", "--outbound-per-hour", "0",
		"--delay-warning", "off", NULL);
	assert_int_equal(r->code, 0);
	assert_non_null(strstr(r->out, "outbound-per-hour  unlimited\n"));
	assert_int_equal(etcd_kv_get(c, "/mail/v1/tenants/limits.test", &value, &len, NULL, NULL),
			 MAIL_OK);
	j = json_loadb(value, len, 0, NULL);
	free(value);
	assert_string_equal(json_string_value(json_object_get(j, "future_field")), "kept");
	assert_true(json_integer_value(json_object_get(j, "created")) > 0);
	assert_int_equal(json_integer_value(json_object_get(j, "outbound_per_hour")), 0);
	assert_true(json_is_false(json_object_get(j, "delay_warning")));
	json_decref(j);
	/* a value out of range in the record reads as the default */
	const char *bad = "{\"created\":1,\"outbound_per_hour\":-5,\"delay_warning\":\"yes\"}";
	assert_int_equal(etcd_kv_put(c, "/mail/v1/tenants/limits.test", bad, strlen(bad), 0),
			 MAIL_OK);
	directory *dir = directory_create(mailtest_etcd_conf(f->etcd));
	struct directory_tenant_settings ts;
	assert_int_equal(directory_tenant_settings_get(dir, "limits.test", &ts), MAIL_OK);
	assert_int_equal(ts.outbound_per_hour, 0);
	assert_int_equal(ts.delay_warning, 0);
	assert_int_equal(directory_tenant_settings_get(dir, "nope.test", &ts), MAIL_ERR_NOT_FOUND);
	ts.outbound_per_hour = DIRECTORY_OUTBOUND_PER_HOUR_MAX + 1;
	assert_int_equal(directory_tenant_settings_set(dir, "limits.test", &ts,
						       DIRECTORY_TENANT_OUTBOUND_PER_HOUR),
			 MAIL_ERR_PARAMS);
	assert_int_equal(directory_tenant_settings_set(dir, "limits.test", &ts, 0), MAIL_ERR_PARAMS);
	directory_destroy(&dir);
	etcd_client_destroy(&c);

	/* refused, one line each */
	r = run(f, NULL, url, "tenant", "set", "limits.test", "--outbound-per-hour", "1000001",
		NULL);
	assert_int_equal(r->code, 1);
	assert_one_line_error(r, "--outbound-per-hour takes 0 (no limit) to 1000000");
	r = run(f, NULL, url, "tenant", "set", "limits.test", "--outbound-per-hour", "-1", NULL);
	assert_int_equal(r->code, 1);
	r = run(f, NULL, url, "tenant", "set", "limits.test", "--delay-warning", "maybe", NULL);
	assert_int_equal(r->code, 1);
	assert_one_line_error(r, "--delay-warning takes on or off");
	r = run(f, NULL, url, "tenant", "set", "nope.test", "--delay-warning", "on", NULL);
	assert_int_equal(r->code, 2);
	assert_one_line_error(r, "tenant nope.test: not found");
	r = run(f, NULL, url, "tenant", "show", "nope.test", NULL);
	assert_int_equal(r->code, 2);
	assert_one_line_error(r, "tenant nope.test: not found");
	assert_int_equal(run(f, NULL, url, "tenant", "set", "limits.test", NULL)->code, 1);
	assert_int_equal(run(f, NULL, url, "tenant", "set", "limits.test", "--outbound-per-hour",
			     NULL)->code, 1);
	assert_int_equal(run(f, NULL, url, "tenant", "set", "limits.test", "--bogus", "1",
			     NULL)->code, 1);
	assert_int_equal(run(f, NULL, url, "tenant", "show", NULL)->code, 1);
}

static const char *const cl_nodes[] = { "s1", "s2", "s3", "s4" };

static ring_map *cl_ring(etcd_client *c)
{
	char *v;
	size_t len;
	ring_map *m;
	const char *error;
	assert_int_equal(etcd_kv_get(c, "/mail/v1/ring/store", &v, &len, NULL, NULL), MAIL_OK);
	assert_int_equal(ring_map_from_json(v, len, &m, &error), 0);
	free(v);
	return m;
}

static int cl_holds(const ring_map *m, const char *id)
{
	for (uint32_t p = 0; p < m->n_partitions; p++) {
		if (ring_map_has_replica(m, p, id))
			return 1;
	}
	return 0;
}

/* Play the data plane: every out-of-sync replica reports caught up. */
static void cl_report(etcd_client *c, const ring_map *m)
{
	for (uint32_t p = 0; p < m->n_partitions; p++) {
		for (uint32_t k = 0; k < m->parts[p].n_r; k++) {
			const char *id = ring_map_replica(m, p, k);
			if (ring_map_is_insync(m, p, id))
				continue;
			char *key = xasprintf("/mail/v1/progress/store/%u/%s", p, id);
			char *val = xasprintf("{\"epoch\":%llu}",
					      (unsigned long long)m->parts[p].epoch);
			assert_int_equal(etcd_kv_put(c, key, val, strlen(val), 0), MAIL_OK);
			free(key);
			free(val);
		}
	}
}

static void test_cluster(void **state)
{
	fixture *f = *state;
	const char *url = mailtest_etcd_url(f->etcd);
	etcd_client *c = etcd_client_create(mailtest_etcd_conf(f->etcd));
	int64_t lease;
	assert_int_equal(etcd_lease_grant(c, 60, &lease), MAIL_OK);
	for (int k = 0; k < 4; k++) {
		char *key = xasprintf("/mail/v1/nodes/store/%s", cl_nodes[k]);
		char *val = xasprintf("{\"id\":\"%s\",\"addr\":\"127.0.0.1:%d\",\"created\":1}",
				      cl_nodes[k], 41000 + k);
		assert_int_equal(etcd_kv_put(c, key, val, strlen(val), 0), MAIL_OK);
		free(key);
		free(val);
		key = xasprintf("/mail/v1/alive/store/%s", cl_nodes[k]);
		val = xasprintf("127.0.0.1:%d", 41000 + k);
		assert_int_equal(etcd_kv_put(c, key, val, strlen(val), lease), MAIL_OK);
		free(key);
		free(val);
	}
	int changed;
	ring_map *m = ring_map_place(NULL, cl_nodes, 4, 8, 3, &changed);
	char *json = ring_map_to_json(m);
	assert_int_equal(etcd_kv_put(c, "/mail/v1/ring/store", json, strlen(json), 0), MAIL_OK);
	free(json);
	ring_map_free(&m);

	result *r = run(f, NULL, url, "node", "list", NULL);
	assert_int_equal(r->code, 0);
	assert_non_null(strstr(r->out, "ROLE"));
	assert_non_null(strstr(r->out, "127.0.0.1:41001"));
	assert_non_null(strstr(r->out, "alive"));
	assert_null(strstr(r->out, "dead"));
	r = run(f, NULL, url, "partitions", "--role", "store", NULL);
	assert_int_equal(r->code, 0);
	assert_non_null(strstr(r->out, "store 7 epoch=1 primary="));
	assert_non_null(strstr(r->out, "insync="));
	assert_non_null(strstr(r->out, "8 partitions, R=3, map epoch 1, 0 without a live "
				       "primary, 0 under-replicated"));
	r = run(f, NULL, url, "partitions", NULL);
	assert_non_null(strstr(r->out, "queue: no partition map yet"));
	assert_int_equal(run(f, NULL, url, "partitions", "--role", "bogus", NULL)->code, 1);
	assert_int_equal(run(f, NULL, url, "node", "frob", NULL)->code, 1);
	assert_int_equal(run(f, NULL, url, "node", "drain", NULL)->code, 1);
	r = run(f, NULL, url, "node", "remove", "nope", NULL);
	assert_int_equal(r->code, 2);
	assert_one_line_error(r, "not found");

	/* remove is refused while s2 holds partitions */
	r = run(f, NULL, url, "node", "remove", "s2", NULL);
	assert_int_equal(r->code, 5);
	assert_one_line_error(r, "still holds");

	/* drain with a controller running; this test plays the data plane */
	router_controller *ctl;
	const char *error;
	assert_int_equal(router_controller_start(NULL, mailtest_etcd_conf(f->etcd), "ctl", 2, NULL, &ctl, &error), 0);
	r = run(f, NULL, url, "node", "drain", "s2", "--no-wait", NULL);
	assert_int_equal(r->code, 0);
	assert_non_null(strstr(r->out, "node s2: draining"));
	assert_non_null(strstr(r->out, "partitions left"));
	r = run(f, NULL, url, "node", "list", NULL);
	assert_non_null(strstr(r->out, "yes"));
	int gone = 0;
	for (int i = 0; i < 150 && !gone; i++) {
		m = cl_ring(c);
		gone = !cl_holds(m, "s2");
		cl_report(c, m);
		ring_map_free(&m);
		mailtest_sleep_ms(100);
	}
	assert_true(gone);
	r = run(f, NULL, url, "node", "drain", "s2", NULL);
	assert_int_equal(r->code, 0);
	assert_non_null(strstr(r->out, "drained"));
	r = run(f, NULL, url, "partitions", "--role", "store", NULL);
	assert_null(strstr(r->out, "s2"));
	r = run(f, NULL, url, "node", "remove", "s2", NULL);
	assert_int_equal(r->code, 0);
	r = run(f, NULL, url, "node", "list", NULL);
	assert_null(strstr(r->out, "s2"));
	/* --force drops a node that still holds partitions */
	r = run(f, NULL, url, "node", "remove", "s3", "--force", NULL);
	assert_int_equal(r->code, 0);
	router_controller_stop(&ctl);
	etcd_client_destroy(&c);
}

/* Status key of node id (router/node-status.h) as its primary role in m
 * makes it: every partition whose r[0] is id, at the map's epoch, and on
 * partition lag_p (if id leads it) the replica lag_id behind by lag. */
static void put_status(etcd_client *c, const ring_map *m, const char *id, uint32_t lag_p,
		       const char *lag_id, uint64_t lag)
{
	node_status_lead leads[16];
	size_t n = 0;
	for (uint32_t p = 0; p < m->n_partitions && n < 16; p++) {
		if (strcmp(ring_map_replica(m, p, 0), id) != 0)
			continue;
		node_status_lead *l = &leads[n++];
		memset(l, 0, sizeof *l);
		l->partition = p;
		l->epoch = m->parts[p].epoch;
		if (p == lag_p && lag_id != NULL) {
			snprintf(l->lagging[0].id, sizeof l->lagging[0].id, "%s", lag_id);
			l->lagging[0].lag = lag;
			l->n_lagging = 1;
		}
	}
	buf value;
	buf_init(&value);
	node_status_encode(leads, n, &value);
	char *key = xasprintf("/mail/v1/status/store/%s", id);
	assert_int_equal(etcd_kv_put(c, key, value.data, value.len, 0), MAIL_OK);
	free(key);
	buf_deinit(&value);
}

static void put_ring(etcd_client *c, const ring_map *m)
{
	char *json = ring_map_to_json(m);
	assert_int_equal(etcd_kv_put(c, "/mail/v1/ring/store", json, strlen(json), 0), MAIL_OK);
	free(json);
}

/* The line of partition p in out ("store P epoch=..."), copied to line. */
static int find_line(const char *out, uint32_t p, char *line, size_t size)
{
	char head[32];
	snprintf(head, sizeof head, "store %u epoch=", p);
	for (const char *at = out; (at = strstr(at, head)) != NULL; at++) {
		if (at != out && at[-1] != '\n')
			continue;
		const char *end = strchr(at, '\n');
		size_t len = end != NULL ? (size_t)(end - at) : strlen(at);
		snprintf(line, size, "%.*s", (int)len, at);
		return 1;
	}
	return 0;
}

static void test_partitions_lag(void **state)
{
	fixture *f = *state;
	const char *url = mailtest_etcd_url(f->etcd);
	etcd_client *c = etcd_client_create(mailtest_etcd_conf(f->etcd));
	int64_t lease;
	assert_int_equal(etcd_lease_grant(c, 60, &lease), MAIL_OK);
	for (int k = 0; k < 3; k++) {
		char *key = xasprintf("/mail/v1/nodes/store/%s", cl_nodes[k]);
		char *val = xasprintf("{\"id\":\"%s\",\"addr\":\"127.0.0.1:%d\"}", cl_nodes[k],
				      42000 + k);
		assert_int_equal(etcd_kv_put(c, key, val, strlen(val), 0), MAIL_OK);
		free(key);
		free(val);
		key = xasprintf("/mail/v1/alive/store/%s", cl_nodes[k]);
		assert_int_equal(etcd_kv_put(c, key, "127.0.0.1:1", 11, lease), MAIL_OK);
		free(key);
	}
	/* 4 partitions on s1..s3, R=3; partition 1's third replica is catching
	 * up (in "r", not in "i") */
	int changed;
	ring_map *m = ring_map_place(NULL, cl_nodes, 3, 4, 3, &changed);
	ring_part *p1 = &m->parts[1];
	const char *slow = m->nodes[p1->r[2]];
	p1->n_i = 2;
	memcpy(p1->i, p1->r, 2 * sizeof p1->i[0]);
	put_ring(c, m);

	/* no status published yet: every lag is unknown */
	result *r = run(f, NULL, url, "partitions", "--role", "store", NULL);
	assert_int_equal(r->code, 0);
	char line[512], want[512];
	assert_true(find_line(r->out, 0, line, sizeof line));
	snprintf(want, sizeof want, "lag=%s:?,%s:?,%s:?", ring_map_replica(m, 0, 0),
		 ring_map_replica(m, 0, 1), ring_map_replica(m, 0, 2));
	assert_non_null(strstr(line, want));
	assert_non_null(strstr(r->out, "store: 3/4 partitions in sync, 1 replica catching up, "
				       "max lag ? (12 replicas with unknown lag)\n"));

	/* every replica in sync, but the slow one 60 entries behind on
	 * partition 1 */
	for (int k = 0; k < 3; k++)
		put_status(c, m, cl_nodes[k], 1, slow, 60);
	r = run(f, NULL, url, "partitions", "--role", "store", NULL);
	assert_int_equal(r->code, 0);
	assert_true(find_line(r->out, 1, line, sizeof line));
	snprintf(want, sizeof want, "insync=%s,%s lag=%s:0,%s:0,%s:60", ring_map_replica(m, 1, 0),
		 ring_map_replica(m, 1, 1), ring_map_replica(m, 1, 0), ring_map_replica(m, 1, 1),
		 slow);
	assert_non_null(strstr(line, want));
	assert_true(find_line(r->out, 2, line, sizeof line));
	assert_non_null(strstr(line, ":0,"));
	assert_null(strstr(line, "?"));
	assert_non_null(strstr(r->out, "store: 3/4 partitions in sync, 1 replica catching up, "
				       "max lag 60 entries\n"));

	/* a primary without an alive key (its status may be stale), or whose
	 * status claims another epoch than the map's, says nothing */
	const char *dead = ring_map_replica(m, 3, 0);
	char *alive_key = xasprintf("/mail/v1/alive/store/%s", dead);
	assert_int_equal(etcd_kv_delete(c, alive_key), MAIL_OK);
	unsigned unknown = 0;
	for (uint32_t p = 0; p < 4; p++)
		unknown += strcmp(ring_map_replica(m, p, 0), dead) == 0 ? 3 : 0;
	r = run(f, NULL, url, "partitions", "--role", "store", NULL);
	assert_true(find_line(r->out, 3, line, sizeof line));
	snprintf(want, sizeof want, "%s:?", dead);
	assert_non_null(strstr(line, want));
	snprintf(want, sizeof want, "(%u replicas with unknown lag)\n", unknown);
	assert_non_null(strstr(r->out, want));
	assert_int_equal(etcd_kv_put(c, alive_key, "127.0.0.1:1", 11, lease), MAIL_OK);
	free(alive_key);
	m->epoch++;
	m->parts[3].epoch = m->epoch;
	put_ring(c, m);
	r = run(f, NULL, url, "partitions", "--role", "store", NULL);
	assert_true(find_line(r->out, 3, line, sizeof line));
	assert_non_null(strstr(line, ":?"));
	put_status(c, m, dead, 1, slow, 60);
	r = run(f, NULL, url, "partitions", "--role", "store", NULL);
	assert_true(find_line(r->out, 3, line, sizeof line));
	assert_null(strstr(line, "?"));

	/* --watch: the partitions not in sync and the summary, until all are */
	assert_int_equal(run(f, NULL, url, "partitions", "--watch", "0", NULL)->code, 1);
	pid_t pid = run_start(f, NULL, url, "partitions", "--role", "store", "--watch", "1",
			      NULL);
	mailtest_sleep_ms(1500);
	int status;
	assert_int_equal(waitpid(pid, &status, WNOHANG), 0); /* still watching */
	/* the slow replica catches up: the controller puts it in "i" (a new
	 * epoch), and the primary publishes it in sync at that epoch */
	p1->n_i = 3;
	memcpy(p1->i, p1->r, 3 * sizeof p1->i[0]);
	m->epoch++;
	p1->epoch = m->epoch;
	put_status(c, m, ring_map_replica(m, 1, 0), 1, NULL, 0);
	put_ring(c, m);
	r = run_finish(f, pid, 10000);
	assert_int_equal(r->code, 0);
	assert_non_null(strstr(r->out, "store: 3/4 partitions in sync, 1 replica catching up, "
				       "max lag 60 entries\n"));
	assert_true(find_line(r->out, 1, line, sizeof line)); /* not in sync: shown */
	assert_false(find_line(r->out, 0, line, sizeof line)); /* in sync: not shown */
	assert_non_null(strstr(r->out, "store: 4/4 partitions in sync, 0 replicas catching up, "
				       "max lag 0 entries\nall partitions in sync\n"));
	assert_string_equal(r->err, "");
	/* already in sync: one summary and done */
	r = run(f, NULL, url, "partitions", "--watch", NULL);
	assert_int_equal(r->code, 0);
	assert_non_null(strstr(r->out, "all partitions in sync"));
	assert_non_null(strstr(r->out, "queue: no partition map yet"));

	ring_map_free(&m);
	assert_int_equal(etcd_kv_delete_prefix(c, "/mail/v1/", NULL), MAIL_OK);
	etcd_client_destroy(&c);
}

/* ---- dkim ------------------------------------------------------------------ */

/* The TXT record of a zone-file line "NAME. IN TXT "a" "b"": NAME without
 * the dot into name, the strings joined into value (each at most 255
 * bytes). Returns the end of the line. */
static const char *txt_parse(const char *line, char *name, size_t name_size, char *value,
			     size_t value_size)
{
	const char *in = strstr(line, ". IN TXT \"");
	assert_non_null(in);
	assert_true((size_t)(in - line) < name_size);
	memcpy(name, line, (size_t)(in - line));
	name[in - line] = '\0';
	const char *p = in + strlen(". IN TXT ");
	size_t n = 0;
	while (*p == '"') {
		size_t len = 0;
		for (p++; *p != '"'; p++, len++) {
			assert_true(*p != '\0' && *p != '\n' && *p != '\\');
			assert_true(n + 1 < value_size);
			value[n++] = *p;
		}
		assert_true(len <= 255);
		p++;
		if (*p == ' ')
			p++;
	}
	assert_int_equal(*p, '\n');
	value[n] = '\0';
	return p + 1;
}

/* Sign a message with the keys etcd holds for domain (what a queue node
 * will do: range, dkim_store_select, dkim_signer_sign) and verify it with
 * dkimpy against the published records names/values. Returns how many
 * signatures were made; fails the test unless every one passes. */
static size_t dkim_sign_verify(fixture *f, const char *domain, const char *const *names,
			       const char *const *values, size_t n_records, const char *want)
{
	etcd_client *c = etcd_client_create(mailtest_etcd_conf(f->etcd));
	char *prefix = dkim_store_domain_prefix(domain);
	etcd_kv *kvs = NULL;
	size_t n = 0;
	assert_int_equal(etcd_kv_range_prefix(c, prefix, 0, &kvs, &n, NULL), MAIL_OK);
	free(prefix);
	etcd_client_destroy(&c);
	struct dkim_stored stored[16];
	assert_true(n <= 16);
	for (size_t i = 0; i < n; i++)
		stored[i] = (struct dkim_stored){ kvs[i].key, kvs[i].value, kvs[i].value_len };
	struct dkim_key keys[DKIM_ALG_COUNT_];
	size_t n_keys, skipped;
	const char *error;
	assert_int_equal(dkim_store_select(domain, stored, n, keys, &n_keys, &skipped, &error),
			 MAIL_OK);
	assert_int_equal(skipped, 0);
	etcd_kvs_free(kvs, n);

	dkim_signer *s;
	assert_int_equal(dkim_signer_create(NULL, &s, &error), MAIL_OK);
	char *msg = xasprintf("From: ann@%s\r\nTo: bob@remote.test\r\nSubject: keys from etcd\r\n"
			      "\r\nsigned with what mailctl stored\r\n", domain);
	char *fields;
	size_t flen;
	assert_int_equal(dkim_signer_sign(s, msg, strlen(msg), keys, n_keys, "M1", &fields, &flen,
					  &error),
			 MAIL_OK);
	char *signed_msg = xasprintf("%s%s", fields, msg);
	char out[2048];
	int rc = dkimtest_verify(f->tmp, signed_msg, strlen(signed_msg), names, values, n_records,
				 out, sizeof out);
	if (rc != 0)
		fail_msg("dkimpy: %d: %s", rc, out);
	assert_non_null(strstr(out, want));
	free(signed_msg);
	free(fields);
	free(msg);
	dkim_signer_destroy(&s);
	for (size_t i = 0; i < n_keys; i++)
		dkim_key_clear(&keys[i]);
	return n_keys;
}

/* `relay` and `transport`: stored normalised, shown without the password,
 * removed; bad URLs, domains and unknown tenants refused with one line. */
static void test_relay_transport(void **state)
{
	fixture *f = *state;
	const char *url = mailtest_etcd_url(f->etcd);
	result *r;
	assert_int_equal(run(f, NULL, url, "tenant", "add", "relay.test", NULL)->code, 0);
	r = run(f, NULL, url, "relay", "show", NULL);
	assert_int_equal(r->code, 0);
	assert_non_null(strstr(r->out, "(none: mail goes to each recipient domain's MX)"));
	r = run(f, "s3cret-relay-pw\n", url, "relay", "set", "SMTP+STARTTLS://Relay.example",
		"--user", "bob", NULL);
	assert_int_equal(r->code, 0);
	assert_string_equal(r->out, "relay for every tenant: smtp+starttls://Relay.example:587 "
				    "as bob\n");
	r = run(f, NULL, url, "relay", "set", "--tenant", "Relay.TEST", "smtps://[2001:db8::25]",
		NULL);
	assert_int_equal(r->code, 0);
	assert_string_equal(r->out, "relay for relay.test: smtps://[2001:db8::25]:465\n");
	r = run(f, NULL, url, "relay", "show", NULL);
	assert_int_equal(r->code, 0);
	assert_non_null(strstr(r->out, "(every tenant)"));
	assert_non_null(strstr(r->out, "smtp+starttls://Relay.example:587"));
	assert_non_null(strstr(r->out, "relay.test"));
	assert_null(strstr(r->out, "s3cret"));
	r = run(f, NULL, url, "relay", "show", "--json", NULL);
	assert_int_equal(r->code, 0);
	json_t *j = json_loads(r->out, 0, NULL);
	assert_true(json_is_array(j) && json_array_size(j) == 2);
	json_t *d = json_array_get(j, 0);
	assert_true(json_is_null(json_object_get(d, "tenant")));
	assert_string_equal(json_string_value(json_object_get(d, "user")), "bob");
	assert_true(json_is_true(json_object_get(d, "password_set")));
	assert_null(json_object_get(d, "password"));
	assert_true(json_is_false(json_object_get(json_array_get(j, 1), "password_set")));
	json_decref(j);
	/* refused, one line each */
	r = run(f, NULL, url, "relay", "set", "smtp://u:p@relay.example", NULL);
	assert_int_equal(r->code, 1);
	assert_non_null(strstr(r->err, "no credentials in the URL"));
	r = run(f, NULL, url, "relay", "set", "--tenant", "nope.test", "smtp://relay.example", NULL);
	assert_int_equal(r->code, 2);
	r = run(f, "\n", url, "relay", "set", "smtp://relay.example", "--user", "bob", NULL);
	assert_int_equal(r->code, 1);
	assert_non_null(strstr(r->err, "empty password"));
	assert_int_equal(run(f, NULL, url, "relay", "remove", "--tenant", "relay.test", NULL)->code,
			 0);
	assert_int_equal(run(f, NULL, url, "relay", "remove", "--tenant", "relay.test", NULL)->code,
			 2);
	assert_int_equal(run(f, NULL, url, "relay", "remove", NULL)->code, 0);

	r = run(f, NULL, url, "transport", "set", "Example.ORG", "smtp://10.0.0.5", NULL);
	assert_int_equal(r->code, 0);
	assert_string_equal(r->out, "transport for example.org: smtp://10.0.0.5:25\n");
	r = run(f, NULL, url, "transport", "list", NULL);
	assert_int_equal(r->code, 0);
	assert_non_null(strstr(r->out, "example.org"));
	assert_non_null(strstr(r->out, "smtp://10.0.0.5:25"));
	r = run(f, NULL, url, "transport", "list", "--json", NULL);
	j = json_loads(r->out, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(json_array_get(j, 0), "domain")),
			    "example.org");
	json_decref(j);
	r = run(f, NULL, url, "transport", "set", "not a domain", "smtp://10.0.0.5", NULL);
	assert_int_equal(r->code, 1);
	assert_non_null(strstr(r->err, "is not a domain"));
	r = run(f, NULL, url, "transport", "set", "example.net", "ftp://10.0.0.5", NULL);
	assert_int_equal(r->code, 1);
	assert_int_equal(run(f, NULL, url, "transport", "remove", "example.org", NULL)->code, 0);
	assert_int_equal(run(f, NULL, url, "transport", "remove", "example.org", NULL)->code, 2);
	assert_int_equal(run(f, NULL, url, "transport", "bogus", NULL)->code, 1);
}

static void test_dkim(void **state)
{
	fixture *f = *state;
	const char *url = mailtest_etcd_url(f->etcd);
	result *r;
	char name[3][128], value[3][1024];
	const char *names[3] = { name[0], name[1], name[2] };
	const char *values[3] = { value[0], value[1], value[2] };

	assert_int_equal(run(f, NULL, url, "tenant", "add", "dkim.test", NULL)->code, 0);
	/* the default: RSA, a dated selector, active */
	r = run(f, NULL, url, "dkim", "generate", "DKIM.test", NULL);
	assert_int_equal(r->code, 0);
	assert_string_equal(r->err, "");
	const char *rest = txt_parse(r->out, name[0], sizeof name[0], value[0], sizeof value[0]);
	char want[160], rsa_old[64], rsa_new[64];
	/* "sYYYYMMDD": the UTC date of the run (read back, not computed, so
	 * that midnight cannot make the test flaky) */
	assert_int_equal(sscanf(name[0], "%63[^.]._domainkey.dkim.tes%1[t]", rsa_old, want), 2);
	assert_int_equal(strlen(rsa_old), 9);
	assert_int_equal(strspn(rsa_old + 1, "0123456789"), 8);
	assert_memory_equal(rsa_old, "s2", 2);
	assert_memory_equal(value[0], "v=DKIM1; k=rsa; p=MII", 21);
	assert_true(strlen(value[0]) > 255); /* so it was cut in two strings */
	assert_non_null(strstr(rest, "; dkim.test: rsa-sha256 key"));
	assert_non_null(strstr(rest, "is active"));

	r = run(f, NULL, url, "dkim", "generate", "dkim.test", "--algorithm", "ed25519-sha256",
		"--selector", "Ed1", NULL);
	assert_int_equal(r->code, 0);
	txt_parse(r->out, name[1], sizeof name[1], value[1], sizeof value[1]);
	assert_string_equal(name[1], "ed1._domainkey.dkim.test");
	assert_memory_equal(value[1], "v=DKIM1; k=ed25519; p=", 22);
	assert_int_equal(strlen(value[1]), 22 + 44);

	r = run(f, NULL, url, "dkim", "list", NULL);
	assert_int_equal(r->code, 0);
	assert_non_null(strstr(r->out, "DOMAIN"));
	assert_non_null(strstr(r->out, "ed1 "));
	assert_non_null(strstr(r->out, "ed25519-sha256"));
	assert_non_null(strstr(r->out, rsa_old));
	assert_null(strstr(r->out, "no\n"));
	assert_null(strstr(r->out, "PRIVATE"));
	r = run(f, NULL, url, "dkim", "list", "dkim.test", "--json", NULL);
	assert_int_equal(r->code, 0);
	assert_null(strstr(r->out, "PRIVATE"));
	json_t *j = json_loads(r->out, 0, NULL);
	assert_true(json_is_array(j));
	assert_int_equal(json_array_size(j), 2);
	for (size_t i = 0; i < 2; i++) {
		json_t *e = json_array_get(j, i);
		assert_string_equal(json_string_value(json_object_get(e, "domain")), "dkim.test");
		assert_true(json_integer_value(json_object_get(e, "created")) > 0);
		assert_true(json_is_true(json_object_get(e, "active")));
		assert_null(json_object_get(e, "key"));
		assert_int_equal(json_object_size(e), 5);
	}
	assert_string_equal(json_string_value(json_object_get(json_array_get(j, 0), "selector")),
			    "ed1");
	json_decref(j);

	/* both keys active: a queue node signs with both, and the printed
	 * records verify them */
	assert_int_equal(dkim_sign_verify(f, "dkim.test", names, values, 2, "pass a=rsa-sha256"),
			 2);
	/* txt prints the same record again, from the stored key */
	r = run(f, NULL, url, "dkim", "txt", "dkim.test", rsa_old, NULL);
	assert_int_equal(r->code, 0);
	txt_parse(r->out, name[2], sizeof name[2], value[2], sizeof value[2]);
	assert_string_equal(value[2], value[0]);

	/* rotate RSA: a new active selector, the old one kept inactive */
	r = run(f, NULL, url, "dkim", "rotate", "dkim.test", "--algorithm", "rsa-sha256", NULL);
	assert_int_equal(r->code, 0);
	assert_string_equal(r->err, "");
	rest = txt_parse(r->out, name[2], sizeof name[2], value[2], sizeof value[2]);
	/* the same day's selector with "-2" (or the next day's) */
	assert_int_equal(sscanf(name[2], "%63[^.]._domainkey.dkim.tes%1[t]", rsa_new, want), 2);
	assert_string_not_equal(rsa_new, rsa_old);
	assert_memory_equal(rsa_new, "s2", 2);
	assert_string_not_equal(value[2], value[0]);
	snprintf(want, sizeof want, "%s stays published but inactive", rsa_old);
	assert_non_null(strstr(rest, want));
	r = run(f, NULL, url, "dkim", "list", "dkim.test", NULL);
	snprintf(want, sizeof want, "%s ", rsa_old);
	const char *old_line = strstr(r->out, want);
	assert_non_null(old_line);
	assert_memory_equal(strchr(old_line, '\n') - 2, "no", 2);
	/* the new RSA key signs now (with the untouched Ed25519 one) */
	names[0] = name[2];
	values[0] = value[2];
	assert_int_equal(dkim_sign_verify(f, "dkim.test", names, values, 2, "pass a=rsa-sha256"),
			 2);

	/* remove the old selector; gone from the list; twice is not found */
	r = run(f, NULL, url, "dkim", "remove", "dkim.test", rsa_old, NULL);
	assert_int_equal(r->code, 0);
	assert_non_null(strstr(r->out, "removed"));
	r = run(f, NULL, url, "dkim", "list", NULL);
	assert_null(strstr(r->out, want));
	assert_non_null(strstr(r->out, "ed1 "));
	r = run(f, NULL, url, "dkim", "remove", "dkim.test", rsa_old, NULL);
	assert_int_equal(r->code, 2);
	assert_one_line_error(r, "not found");

	/* errors: one line and a non-zero status */
	r = run(f, NULL, url, "dkim", "generate", "unknown.test", NULL);
	assert_int_equal(r->code, 2);
	assert_one_line_error(r, "tenant unknown.test: not found");
	r = run(f, NULL, url, "dkim", "generate", "dkim.test", "--selector", "ed1", NULL);
	assert_int_equal(r->code, 3);
	assert_one_line_error(r, "selector ed1 already exists");
	r = run(f, NULL, url, "dkim", "generate", "dkim.test", "--algorithm", "rsa-sha1", NULL);
	assert_int_equal(r->code, 1);
	assert_one_line_error(r, "unknown algorithm rsa-sha1");
	r = run(f, NULL, url, "dkim", "generate", "dkim.test", "--selector", "bad_sel", NULL);
	assert_int_equal(r->code, 1);
	assert_one_line_error(r, "not a selector");
	r = run(f, NULL, url, "dkim", "generate", "bad..domain", NULL);
	assert_int_equal(r->code, 1);
	assert_one_line_error(r, "not a domain");
	r = run(f, NULL, url, "dkim", "activate", "dkim.test", "nope", NULL);
	assert_int_equal(r->code, 2);
	assert_one_line_error(r, "selector nope not found");
	r = run(f, NULL, url, "dkim", "list", "unknown.test", NULL);
	assert_int_equal(r->code, 2);
	assert_one_line_error(r, "not found");
	assert_int_equal(run(f, NULL, url, "tenant", "add", "empty.test", NULL)->code, 0);
	r = run(f, NULL, url, "dkim", "rotate", "empty.test", NULL);
	assert_int_equal(r->code, 2);
	assert_one_line_error(r, "no active key to rotate");
	assert_int_equal(run(f, NULL, url, "dkim", NULL)->code, 1);
	assert_int_equal(run(f, NULL, url, "dkim", "generate", NULL)->code, 1);
	assert_int_equal(run(f, NULL, url, "dkim", "list", "--selector", "x", NULL)->code, 1);
	assert_int_equal(run(f, NULL, url, "dkim", "remove", "dkim.test", NULL)->code, 1);

	/* generate while an RSA key is active: stored inactive; activate
	 * switches, and the switched-off one stays */
	r = run(f, NULL, url, "dkim", "generate", "dkim.test", "--selector", "next", NULL);
	assert_int_equal(r->code, 0);
	assert_non_null(strstr(r->out, "stored inactive"));
	r = run(f, NULL, url, "dkim", "activate", "dkim.test", "next", NULL);
	assert_int_equal(r->code, 0);
	snprintf(want, sizeof want, "rsa-sha256 key next is active; inactive now: %s\n",
		 rsa_new);
	assert_non_null(strstr(r->out, want));
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

/* mailctl queue without queue nodes to ask (tests/e2e_queue_admin.py asks
 * real ones): the arguments checked before anything is asked, no alive
 * queue node, a node that does not answer. */
static void test_queue_cli(void **state)
{
	fixture *f = *state;
	const char *url = mailtest_etcd_url(f->etcd);
	result *r = run(f, NULL, NULL, "--help", NULL);
	assert_non_null(strstr(r->out, "queue list [--domain D] [--state deferred|active|held]"));
	assert_non_null(strstr(r->out, "--node-cert FILE --node-key FILE --cluster-ca FILE"));
	static const char *const usage[][5] = {
		{ "queue" }, { "queue", "frob" }, { "queue", "show" }, { "queue", "retry" },
		{ "queue", "hold", "--all" }, { "queue", "retry", "--all", "abc" },
		{ "queue", "list", "abc" }, { "queue", "hold", "abc", "--bounce" },
		{ "queue", "delete", "--domain", "x.test" }, { "queue", "show", "abc", "def" },
	};
	for (size_t i = 0; i < sizeof usage / sizeof usage[0]; i++) {
		r = run(f, NULL, url, usage[i][0], usage[i][1], usage[i][2], usage[i][3], NULL);
		assert_int_equal(r->code, 1);
		assert_non_null(strstr(r->err, "usage: mailctl"));
	}
	r = run(f, NULL, url, "queue", "show", "a-b", NULL);
	assert_int_equal(r->code, 1);
	assert_one_line_error(r, "a-b is not a queue id");
	r = run(f, NULL, url, "queue", "list", "--state", "stuck", NULL);
	assert_int_equal(r->code, 1);
	assert_one_line_error(r, "--state stuck: deferred, active or held");
	r = run(f, NULL, url, "queue", "list", "--limit", "0", NULL);
	assert_int_equal(r->code, 1);
	r = run(f, NULL, url, "queue", "retry", "--domain", "no domain", NULL);
	assert_int_equal(r->code, 1);
	assert_one_line_error(r, "no domain is not a domain");
	r = run(f, NULL, url, "--node-cert", "/nonexistent.pem", "queue", "list", NULL);
	assert_int_equal(r->code, 1);
	assert_one_line_error(r, "--node-cert, --node-key and --cluster-ca go together");

	r = run(f, NULL, url, "queue", "list", NULL);
	assert_int_equal(r->code, 4);
	assert_one_line_error(r, "no alive queue node");

	/* a queue node whose address answers nothing */
	etcd_client *c = etcd_client_create(mailtest_etcd_conf(f->etcd));
	char *addr = xasprintf("127.0.0.1:%d", mailtest_free_port());
	assert_int_equal(etcd_kv_put(c, "/mail/v1/alive/queue/q-gone", addr, strlen(addr), 0),
			 MAIL_OK);
	r = run(f, NULL, url, "queue", "list", NULL);
	assert_int_equal(r->code, 4);
	char want[128];
	snprintf(want, sizeof want, "queue node q-gone (%s): unreachable", addr);
	assert_one_line_error(r, want);
	assert_string_equal(r->out, "");
	/* it might be the one holding the message: not "not found" */
	r = run(f, NULL, url, "queue", "show", "0123456789abcdef01234567", NULL);
	assert_int_equal(r->code, 4);
	r = run(f, NULL, url, "queue", "hold", "0123456789abcdef01234567", NULL);
	assert_int_equal(r->code, 4);
	/* the node TLS files are read before anything is asked */
	r = run(f, NULL, url, "--node-cert", "/nonexistent.pem", "--node-key", "/nonexistent.key",
		"--cluster-ca", "/nonexistent-ca.pem", "queue", "stats", NULL);
	assert_int_equal(r->code, 1);
	assert_one_line_error(r, "node TLS");
	assert_int_equal(etcd_kv_delete(c, "/mail/v1/alive/queue/q-gone"), MAIL_OK);
	free(addr);
	etcd_client_destroy(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_usage),
		cmocka_unit_test(test_commands),
		cmocka_unit_test(test_tenant_settings),
		cmocka_unit_test(test_unreachable),
		cmocka_unit_test(test_partitions_lag),
		cmocka_unit_test(test_cluster),
		cmocka_unit_test(test_dkim),
		cmocka_unit_test(test_relay_transport),
		cmocka_unit_test(test_queue_cli),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
