/* test-mailctl-dns.c: `mailctl dns` (cluster/mailctl-dns.c) as an operator
 * runs it: the mailctl binary against a real etcd, and `dns check` against
 * a real DNS server (tests/support/dnszone.py) serving the records that
 * `mailctl dns --json` printed (so the zone lines load into a server), or
 * those records broken, or a server that never answers. */
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
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include <jansson.h>

#include "buf.h"
#include "dns-fixture.h"
#include "etcd-fixture.h"
#include "xalloc.h"

typedef struct result {
	int code;
	char out[65536]; /* a check's JSON with a DKIM key per record */
	char err[4096];
} result;

typedef struct fixture {
	mailtest_etcd *etcd;
	char *tmp;
	char bin[PATH_MAX];
	result res;
	char *zone; /* the right records, as `mailctl dns --json` gave them */
} fixture;

static void slurp(const char *path, char *out, size_t size)
{
	FILE *fp = fopen(path, "r");
	size_t n = fp != NULL ? fread(out, 1, size - 1, fp) : 0;
	out[n] = '\0';
	if (fp != NULL)
		fclose(fp);
}

/* Run mailctl --etcd URL with the NULL-terminated args to its end (at most
 * 60 s); stdout and stderr go through files in f->tmp. */
static result *run(fixture *f, ...)
{
	char out[PATH_MAX], err[PATH_MAX];
	snprintf(out, sizeof out, "%s/out", f->tmp);
	snprintf(err, sizeof err, "%s/err", f->tmp);
	char *argv[24] = { "mailctl", "--etcd", (char *)mailtest_etcd_url(f->etcd) };
	int argc = 3;
	va_list ap;
	va_start(ap, f);
	const char *a;
	while ((a = va_arg(ap, const char *)) != NULL && argc < 23)
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;
	char *envp[] = { "PATH=/usr/bin:/bin", NULL };
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, out, O_WRONLY | O_CREAT | O_TRUNC,
					 0600);
	posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, err, O_WRONLY | O_CREAT | O_TRUNC,
					 0600);
	pid_t pid;
	assert_int_equal(posix_spawn(&pid, f->bin, &fa, NULL, argv, envp), 0);
	posix_spawn_file_actions_destroy(&fa);
	int status = 0;
	pid_t got = 0;
	for (int waited = 0; got == 0; waited += 20) {
		got = waitpid(pid, &status, WNOHANG);
		if (got == 0 && waited >= 60000) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			fail_msg("mailctl still running after 60 s");
		}
		if (got == 0)
			mailtest_sleep_ms(20);
	}
	assert_true(WIFEXITED(status));
	f->res.code = WEXITSTATUS(status);
	slurp(out, f->res.out, sizeof f->res.out);
	slurp(err, f->res.err, sizeof f->res.err);
	return &f->res;
}

/* Exactly one line on stderr, "mailctl: ..." containing what. */
static void assert_one_line_error(const result *r, const char *what)
{
	int lines = 0;
	for (const char *p = r->err; *p != '\0'; p++)
		lines += *p == '\n';
	if (strstr(r->err, what) == NULL || lines != 1)
		fail_msg("want one line with \"%s\", got: %s", what, r->err);
	assert_memory_equal(r->err, "mailctl: ", 9);
}

/* The line of out starting with prefix, into line (no newline); 1 when
 * there is one. */
static int find_line(const char *out, const char *prefix, char *line, size_t size)
{
	size_t n = strlen(prefix);
	for (const char *p = out; *p != '\0';) {
		const char *nl = strchr(p, '\n');
		size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);
		if (len >= n && strncmp(p, prefix, n) == 0) {
			snprintf(line, size, "%.*s", (int)len, p);
			return 1;
		}
		p += len + (nl != NULL);
	}
	return 0;
}

static void assert_has_line(const char *out, const char *want)
{
	char line[4096];
	if (!find_line(out, want, line, sizeof line) || strcmp(line, want) != 0)
		fail_msg("no line \"%s\" in:\n%s", want, out);
}

static json_t *parse_json(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, 0, &e);
	if (j == NULL)
		fail_msg("not JSON (%s): %s", e.text, text);
	return j;
}

/* The platform's own hosts, with addresses (as a real zone would have). */
static const char platform_zone[] =
	"mx.platform.test. 300 IN A 127.0.0.10\n"
	"imap.platform.test. 300 IN A 127.0.0.11\n"
	"config.platform.test. 300 IN A 127.0.0.12\n"
	"sts.platform.test. 300 IN A 127.0.0.13\n";

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof *f);
	const char *dir = getenv("MAIL_BIN_DIR");
	if (dir != NULL) {
		snprintf(f->bin, sizeof f->bin, "%s/mailctl", dir);
	} else {
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
	f->tmp = mailtest_tmpdir("mailctl-dns-test");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	mailtest_etcd_stop(&f->etcd);
	mailtest_rmrf(f->tmp);
	free(f->tmp);
	free(f->zone);
	free(f);
	return 0;
}

/* Before the platform's names are set, and the settings themselves. */
static void test_platform(void **state)
{
	fixture *f = *state;
	assert_int_equal(run(f, "tenant", "add", "example.test", NULL)->code, 0);
	result *r = run(f, "dns", "example.test", NULL);
	assert_int_equal(r->code, 2);
	assert_one_line_error(r, "mailctl dns platform set mx=HOST");
	r = run(f, "dns", "nosuch.test", NULL);
	assert_int_equal(r->code, 2);
	assert_one_line_error(r, "tenant nosuch.test: not found");

	r = run(f, "dns", "platform", "set", "mx=192.0.2.1", NULL);
	assert_int_equal(r->code, 1);
	assert_one_line_error(r, "mx must be a host name");
	r = run(f, "dns", "platform", "set", "nosuch=1", NULL);
	assert_int_equal(r->code, 1);
	assert_one_line_error(r, "nosuch=1: not KEY=VALUE");
	r = run(f, "dns", "platform", "set", "spf=v=spf1 -all", NULL);
	assert_int_equal(r->code, 1);
	assert_one_line_error(r, "spf must be SPF terms");
	r = run(f, "dns", "platform", "set", "imaps_port=70000", NULL);
	assert_int_equal(r->code, 1);

	r = run(f, "dns", "platform", "set", "mx=MX.Platform.test.", NULL);
	assert_int_equal(r->code, 0);
	r = run(f, "dns", "platform", "show", "--json", NULL);
	assert_int_equal(r->code, 0);
	json_t *j = parse_json(r->out);
	assert_string_equal(json_string_value(json_object_get(j, "mx")), "mx.platform.test");
	/* the services default to the MX host, the ports to the IANA ones */
	assert_string_equal(json_string_value(json_object_get(j, "imap")), "mx.platform.test");
	assert_int_equal(json_integer_value(json_object_get(j, "imaps_port")), 993);
	assert_string_equal(json_string_value(json_object_get(j, "spf")), "mx");
	assert_true(json_is_null(json_object_get(j, "mta_sts")));
	json_t *def = json_object_get(j, "defaulted");
	int imap_defaulted = 0, mx_defaulted = 0;
	for (size_t i = 0; i < json_array_size(def); i++) {
		const char *n = json_string_value(json_array_get(def, i));
		imap_defaulted |= strcmp(n, "imap") == 0;
		mx_defaulted |= strcmp(n, "mx") == 0;
	}
	assert_true(imap_defaulted);
	assert_false(mx_defaulted);
	json_decref(j);

	r = run(f, "dns", "platform", "set", "imap=imap.platform.test", "pop3=none",
		"spf=include:_spf.platform.test", "dmarc_rua=mailto:dmarc@platform.test",
		"autoconfig=config.platform.test", "mta_sts=sts.platform.test",
		"tls_rpt=mailto:tlsrpt@platform.test", NULL);
	assert_int_equal(r->code, 0);
	assert_non_null(strstr(r->out, "mta_sts_id"));
	/* an MTA-STS id was made for the policy */
	r = run(f, "dns", "platform", "show", "--json", NULL);
	j = parse_json(r->out);
	const char *id = json_string_value(json_object_get(j, "mta_sts_id"));
	assert_non_null(id);
	assert_int_equal(strlen(id), 14);
	json_decref(j);
	/* an empty value: back to the default */
	assert_int_equal(run(f, "dns", "platform", "set", "ttl=600", NULL)->code, 0);
	assert_int_equal(run(f, "dns", "platform", "set", "ttl=", NULL)->code, 0);
	r = run(f, "dns", "platform", "show", NULL);
	char line[256];
	assert_true(find_line(r->out, "ttl ", line, sizeof line));
	assert_non_null(strstr(line, "3600"));
	assert_non_null(strstr(line, "(default)"));
	/* usage */
	assert_int_equal(run(f, "dns", NULL)->code, 1);
	assert_int_equal(run(f, "dns", "platform", "show", "extra", NULL)->code, 1);
	assert_int_equal(run(f, "dns", "example.test", "--dns", "127.0.0.1:53", NULL)->code, 1);
}

/* `mailctl dns DOMAIN`: the zone lines, and the same in JSON. */
static void test_print(void **state)
{
	fixture *f = *state;
	result *r = run(f, "dns", "example.test", NULL);
	assert_int_equal(r->code, 0);
	/* no key yet: said, not invented */
	assert_non_null(strstr(r->out, "; no DKIM key: mail from example.test goes out unsigned"));
	assert_int_equal(run(f, "dkim", "generate", "example.test", "--selector", "sel1", NULL)->code,
			 0);
	assert_int_equal(run(f, "dkim", "generate", "example.test", "--selector", "ed1",
			     "--algorithm", "ed25519-sha256", NULL)->code, 0);
	/* a second RSA key: stored inactive (pre-published) */
	assert_int_equal(run(f, "dkim", "generate", "example.test", "--selector", "next", NULL)->code,
			 0);

	r = run(f, "dns", "Example.Test.", NULL);
	assert_int_equal(r->code, 0);
	assert_has_line(r->out, "example.test. 3600 IN MX 10 mx.platform.test.");
	assert_has_line(r->out, "example.test. 3600 IN TXT \"v=spf1 include:_spf.platform.test ~all\"");
	assert_has_line(r->out, "_dmarc.example.test. 3600 IN TXT \"v=DMARC1; p=none; "
				"rua=mailto:dmarc@platform.test\"");
	assert_has_line(r->out, "_imaps._tcp.example.test. 3600 IN SRV 0 1 993 imap.platform.test.");
	assert_has_line(r->out, "_imap._tcp.example.test. 3600 IN SRV 10 1 143 imap.platform.test.");
	assert_has_line(r->out, "_pop3s._tcp.example.test. 3600 IN SRV 0 0 0 .");
	assert_has_line(r->out, "_pop3._tcp.example.test. 3600 IN SRV 0 0 0 .");
	assert_has_line(r->out, "_submissions._tcp.example.test. 3600 IN SRV 0 1 465 mx.platform.test.");
	assert_has_line(r->out, "_submission._tcp.example.test. 3600 IN SRV 10 1 587 mx.platform.test.");
	assert_has_line(r->out, "autoconfig.example.test. 3600 IN CNAME config.platform.test.");
	assert_has_line(r->out, "autodiscover.example.test. 3600 IN CNAME config.platform.test.");
	assert_has_line(r->out, "mta-sts.example.test. 3600 IN CNAME sts.platform.test.");
	assert_has_line(r->out, "_smtp._tls.example.test. 3600 IN TXT \"v=TLSRPTv1; "
				"rua=mailto:tlsrpt@platform.test\"");
	char line[4096];
	assert_true(find_line(r->out, "_mta-sts.example.test. 3600 IN TXT \"v=STSv1; id=", line,
			      sizeof line));
	/* the DKIM records: what `dkim txt` publishes, in 255-byte strings */
	assert_true(find_line(r->out, "sel1._domainkey.example.test. 3600 IN TXT \"v=DKIM1; k=rsa; p=",
			      line, sizeof line));
	assert_non_null(strstr(line, "\" \""));
	assert_null(strstr(line, "inactive"));
	assert_true(find_line(r->out, "next._domainkey.example.test. 3600 IN TXT ", line,
			      sizeof line));
	assert_non_null(strstr(line, "; inactive key: optional"));
	assert_true(find_line(r->out, "ed1._domainkey.example.test. 3600 IN TXT \"v=DKIM1; "
				      "k=ed25519; p=", line, sizeof line));
	result *txt = run(f, "dkim", "txt", "example.test", "sel1", NULL);
	assert_int_equal(txt->code, 0);
	char *nl = strchr(txt->out, '\n');
	*nl = '\0';
	char dkim_data[4096]; /* run() reuses txt's buffer */
	snprintf(dkim_data, sizeof dkim_data, "%s", strstr(txt->out, " IN TXT ") + 8);
	r = run(f, "dns", "example.test", NULL);
	assert_true(find_line(r->out, "sel1._domainkey.", line, sizeof line));
	assert_string_equal(strstr(line, " IN TXT ") + 8, dkim_data);

	/* JSON: each record with its zone line; the zone lines make a zone */
	r = run(f, "dns", "example.test", "--json", NULL);
	assert_int_equal(r->code, 0);
	json_t *j = parse_json(r->out);
	assert_string_equal(json_string_value(json_object_get(j, "domain")), "example.test");
	json_t *recs = json_object_get(j, "records");
	assert_int_equal(json_array_size(recs), 17); /* MX SPF 3xDKIM DMARC 6xSRV 3xCNAME 2xTXT */
	buf zone;
	buf_init(&zone);
	buf_append_str(&zone, platform_zone);
	int required = 0;
	for (size_t i = 0; i < json_array_size(recs); i++) {
		json_t *rec = json_array_get(recs, i);
		required += json_is_true(json_object_get(rec, "required"));
		buf_printf(&zone, "%s\n", json_string_value(json_object_get(rec, "zone")));
	}
	/* MX, SPF, DMARC and the two active DKIM keys */
	assert_int_equal(required, 5);
	json_t *mx = json_array_get(recs, 0);
	assert_string_equal(json_string_value(json_object_get(mx, "record")), "MX");
	assert_string_equal(json_string_value(json_object_get(mx, "name")), "example.test.");
	assert_string_equal(json_string_value(json_object_get(mx, "value")), "10 mx.platform.test.");
	assert_int_equal(json_integer_value(json_object_get(mx, "ttl")), 3600);
	json_decref(j);
	buf_append(&zone, "", 1);
	f->zone = (char *)buf_steal(&zone, NULL);
}

/* Every record published as printed: all OK, exit 0. */
static void test_check_ok(void **state)
{
	fixture *f = *state;
	assert_non_null(f->zone); /* test_print made it */
	mailtest_dns *dns;
	assert_int_equal(mailtest_dns_start(f->zone, NULL, &dns), 0);
	result *r = run(f, "dns", "check", "example.test", "--dns", mailtest_dns_server(dns), NULL);
	if (r->code != 0)
		fail_msg("exit %d\n%s%s", r->code, r->out, r->err);
	assert_string_equal(r->err, "");
	int lines = 0;
	for (const char *p = r->out; (p = strchr(p, '\n')) != NULL; p++)
		lines++;
	assert_int_equal(lines, 18); /* 17 records and the summary */
	assert_non_null(strstr(r->out, "; 17 OK, 0 MISSING, 0 WRONG, 0 ERROR"));
	char line[4096];
	assert_true(find_line(r->out, "OK       MX       required example.test. MX 10 "
				      "mx.platform.test.", line, sizeof line));
	assert_true(find_line(r->out, "OK       SRV      optional _pop3._tcp.example.test. SRV "
				      "0 0 0 .", line, sizeof line));

	r = run(f, "dns", "check", "example.test", "--json", "--dns", mailtest_dns_server(dns), NULL);
	assert_int_equal(r->code, 0);
	json_t *j = parse_json(r->out);
	assert_true(json_is_true(json_object_get(j, "ok")));
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "counts"), "OK")), 17);
	json_t *recs = json_object_get(j, "records");
	for (size_t i = 0; i < json_array_size(recs); i++)
		assert_string_equal(json_string_value(json_object_get(json_array_get(recs, i),
									  "status")), "OK");
	json_decref(j);
	mailtest_dns_stop(&dns);
}

/* The zone with lines replaced: owner-and-type prefix -> new line (""
 * drops it). */
static char *zone_edit(const char *zone, const char *const *edits, size_t n)
{
	buf z;
	buf_init(&z);
	for (const char *p = zone; *p != '\0';) {
		const char *nl = strchr(p, '\n');
		size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);
		int done = 0;
		for (size_t i = 0; i < n && !done; i += 2) {
			if (strncmp(p, edits[i], strlen(edits[i])) == 0) {
				buf_append_str(&z, edits[i + 1]);
				done = 1;
			}
		}
		if (!done) {
			buf_append(&z, p, len);
			buf_append(&z, "\n", 1);
		}
		p += len + (nl != NULL);
	}
	buf_append(&z, "", 1);
	return (char *)buf_steal(&z, NULL);
}

static const char *check_status(json_t *recs, const char *name, const char **detail_r)
{
	for (size_t i = 0; i < json_array_size(recs); i++) {
		json_t *rec = json_array_get(recs, i);
		if (strcmp(json_string_value(json_object_get(rec, "name")), name) == 0) {
			if (detail_r != NULL)
				*detail_r = json_string_value(json_object_get(rec, "detail"));
			return json_string_value(json_object_get(rec, "status"));
		}
	}
	fail_msg("no record %s", name);
	return NULL;
}

/* A wrong SPF, a wrong DKIM p=, no DMARC, an SRV and a CNAME astray: WRONG
 * and MISSING lines, exit 5. */
static void test_check_wrong(void **state)
{
	fixture *f = *state;
	static const char *const edits[] = {
		"example.test. 3600 IN TXT", "example.test. 3600 IN TXT \"v=spf1 ip4:192.0.2.1 -all\"\n",
		"sel1._domainkey.", ("sel1._domainkey.example.test. 3600 IN TXT \"v=DKIM1; k=rsa; "
				     "p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwrong\"\n"),
		"_dmarc.", "",
		"_imaps._tcp.", "_imaps._tcp.example.test. 3600 IN SRV 0 1 993 imap.elsewhere.test.\n",
		"autoconfig.", "autoconfig.example.test. 3600 IN A 192.0.2.7\n",
		"_smtp._tls.", "",
	};
	assert_non_null(f->zone);
	char *zone = zone_edit(f->zone, edits, sizeof edits / sizeof *edits);
	mailtest_dns *dns;
	assert_int_equal(mailtest_dns_start(zone, NULL, &dns), 0);
	free(zone);
	result *r = run(f, "dns", "check", "example.test", "--dns", mailtest_dns_server(dns), NULL);
	assert_int_equal(r->code, 5);
	assert_one_line_error(r, "dns check example.test: 3 required records missing or wrong");
	char line[4096];
	assert_true(find_line(r->out, "WRONG    SPF      required example.test. TXT "
				      "\"v=spf1 include:_spf.platform.test ~all\"", line, sizeof line));
	assert_non_null(strstr(line, "found \"v=spf1 ip4:192.0.2.1 -all\": lacks "
				     "include:_spf.platform.test"));
	assert_true(find_line(r->out, "WRONG    DKIM     required sel1._domainkey.example.test. TXT",
			      line, sizeof line));
	assert_non_null(strstr(line, "p= is not this selector's public key"));
	assert_true(find_line(r->out, "MISSING  DMARC    required _dmarc.example.test. TXT "
				      "\"v=DMARC1; p=none; rua=mailto:dmarc@platform.test\"", line,
			      sizeof line));
	assert_true(find_line(r->out, "WRONG    SRV      optional _imaps._tcp.example.test.", line,
			      sizeof line));
	assert_non_null(strstr(line, "found \"0 1 993 imap.elsewhere.test.\""));
	assert_true(find_line(r->out, "WRONG    CNAME    optional autoconfig.example.test.", line,
			      sizeof line));
	assert_non_null(strstr(line, "not a CNAME"));
	assert_true(find_line(r->out, "MISSING  TLS-RPT  optional", line, sizeof line));
	/* the rest still OK */
	assert_true(find_line(r->out, "OK       MX ", line, sizeof line));
	assert_true(find_line(r->out, "OK       DKIM     required ed1.", line, sizeof line));

	r = run(f, "dns", "check", "example.test", "--json", "--dns", mailtest_dns_server(dns), NULL);
	assert_int_equal(r->code, 5);
	json_t *j = parse_json(r->out);
	assert_false(json_is_true(json_object_get(j, "ok")));
	json_t *recs = json_object_get(j, "records");
	const char *detail;
	assert_string_equal(check_status(recs, "example.test.", NULL), "OK"); /* MX, first */
	assert_string_equal(check_status(recs, "sel1._domainkey.example.test.", &detail), "WRONG");
	assert_string_equal(check_status(recs, "_dmarc.example.test.", NULL), "MISSING");
	assert_string_equal(check_status(recs, "mta-sts.example.test.", NULL), "OK");
	json_t *counts = json_object_get(j, "counts");
	assert_int_equal(json_integer_value(json_object_get(counts, "WRONG")), 4);
	assert_int_equal(json_integer_value(json_object_get(counts, "MISSING")), 2);
	json_decref(j);
	mailtest_dns_stop(&dns);

	/* two SPF records (a permerror), an MX elsewhere, a DMARC without p= */
	static const char *const edits2[] = {
		"example.test. 3600 IN TXT", ("example.test. 3600 IN TXT \"v=spf1 include:"
					      "_spf.platform.test ~all\"\nexample.test. 3600 IN TXT "
					      "\"v=spf1 mx -all\"\n"),
		"example.test. 3600 IN MX", "example.test. 3600 IN MX 10 mx.elsewhere.test.\n",
		"_dmarc.", "_dmarc.example.test. 3600 IN TXT \"v=DMARC1; rua=mailto:x@y.test\"\n",
	};
	zone = zone_edit(f->zone, edits2, sizeof edits2 / sizeof *edits2);
	assert_int_equal(mailtest_dns_start(zone, NULL, &dns), 0);
	free(zone);
	r = run(f, "dns", "check", "example.test", "--dns", mailtest_dns_server(dns), NULL);
	assert_int_equal(r->code, 5);
	assert_true(find_line(r->out, "WRONG    SPF ", line, sizeof line));
	assert_non_null(strstr(line, "more than one v=spf1 record"));
	assert_true(find_line(r->out, "WRONG    MX ", line, sizeof line));
	assert_non_null(strstr(line, "found \"10 mx.elsewhere.test.\""));
	assert_true(find_line(r->out, "WRONG    DMARC ", line, sizeof line));
	assert_non_null(strstr(line, "no p= policy"));
	mailtest_dns_stop(&dns);
}

/* A server that never answers: every record ERROR, exit 4, never OK. A
 * bad --dns: one line, exit 1. */
static void test_check_dead_server(void **state)
{
	fixture *f = *state;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET };
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof sin;
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	char server[64];
	snprintf(server, sizeof server, "127.0.0.1:%u", ntohs(sin.sin_port));
	result *r = run(f, "dns", "check", "example.test", "--dns", server, NULL);
	assert_int_equal(r->code, 4);
	assert_one_line_error(r, "lookups failed");
	assert_null(strstr(r->out, "\nOK "));
	assert_non_null(strstr(r->out, "; 0 OK, 0 MISSING, 0 WRONG, 17 ERROR"));
	char line[4096];
	assert_true(find_line(r->out, "ERROR    MX ", line, sizeof line));
	assert_non_null(strstr(line, "lookup failed (temp)"));
	close(fd);

	r = run(f, "dns", "check", "example.test", "--dns", "127.0.0.1:99999", NULL);
	assert_int_equal(r->code, 1);
	assert_one_line_error(r, "--dns 127.0.0.1:99999: the port must be 1..65535");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_platform),
		cmocka_unit_test(test_print),
		cmocka_unit_test(test_check_ok),
		cmocka_unit_test(test_check_wrong),
		cmocka_unit_test(test_check_dead_server),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
