/* Unit tests for daemon-options.h: defaults (a row's own and a group's
 * override), every kind from argv, values from the environment, the
 * errors and --help's text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "daemon-options.h"

struct shared {
	unsigned count;
	const char *name;
};

struct settings {
	struct shared shared;
	uint64_t bytes;
	struct daemon_listen addr;
	const char *dir;
	int verbose;
	struct daemon_listen dns;
};

static const struct daemon_option shared_rows[] = {
	{ .name = "count", .kind = DAEMON_OPTION_UINT, .offset = offsetof(struct shared, count),
	  .value_name = "N", .min = 1, .max = 10, .def = 3, .help = "how many" },
	{ .name = "name", .kind = DAEMON_OPTION_STRING, .offset = offsetof(struct shared, name),
	  .value_name = "NAME", .def_text = "anon", .help = "what to call it" },
	{ .name = NULL },
};

static const struct daemon_option own_rows[] = {
	{ .name = "bytes", .kind = DAEMON_OPTION_U64, .offset = offsetof(struct settings, bytes),
	  .value_name = "N", .min = 1, .max = UINT64_MAX / 100, .def = 1ull << 31,
	  .help = "a size" },
	{ .name = "addr", .kind = DAEMON_OPTION_LISTEN, .offset = offsetof(struct settings, addr),
	  .value_name = "HOST:PORT", .def_text = "127.0.0.1:25", .help = "where to listen" },
	{ .name = "dir", .kind = DAEMON_OPTION_STRING, .offset = offsetof(struct settings, dir),
	  .value_name = "DIR", .required = 1, .help = "where the data goes" },
	{ .name = "verbose", .kind = DAEMON_OPTION_FLAG,
	  .offset = offsetof(struct settings, verbose), .help = "say more" },
	{ .name = "dns", .kind = DAEMON_OPTION_ADDRESS, .offset = offsetof(struct settings, dns),
	  .value_name = "IP:PORT", .env = "TEST_DNS", .help = "the DNS server" },
	{ .name = NULL },
};

static const struct daemon_option_default shared_defaults[] = {
	{ .name = "count", .def = 7 },
	{ .name = NULL },
};

static const struct daemon_option_group groups[] = {
	{ .rows = shared_rows, .offset = offsetof(struct settings, shared),
	  .defaults = shared_defaults },
	{ .rows = own_rows },
	{ .rows = NULL },
};

static int parse(struct settings *set, char *error, ...)
{
	char *argv[32] = { "prog" };
	int argc = 1;
	va_list ap;
	va_start(ap, error);
	for (char *a = va_arg(ap, char *); a != NULL; a = va_arg(ap, char *))
		argv[argc++] = a;
	va_end(ap);
	memset(set, 0xa5, sizeof *set);
	error[0] = '\0';
	return daemon_options_parse(groups, set, argc, argv, error);
}

/* As parse(), with the environment env (NULL-terminated "NAME=VALUE"). */
static int parse_env(struct settings *set, char *error, char *const *env, ...)
{
	char *argv[32] = { "prog" };
	int argc = 1;
	va_list ap;
	va_start(ap, env);
	for (char *a = va_arg(ap, char *); a != NULL; a = va_arg(ap, char *))
		argv[argc++] = a;
	va_end(ap);
	memset(set, 0xa5, sizeof *set);
	error[0] = '\0';
	return daemon_options_parse_env(groups, set, argc, argv, env, error);
}

static void test_defaults(void **state)
{
	(void)state;
	struct settings set;
	char error[DAEMON_OPTIONS_ERROR_MAX];
	assert_int_equal(parse(&set, error, "--dir", "/d", NULL), 0);
	assert_int_equal(set.shared.count, 7); /* the group's override, not the row's 3 */
	assert_string_equal(set.shared.name, "anon");
	assert_true(set.bytes == 1ull << 31);
	assert_string_equal(set.addr.host, "127.0.0.1");
	assert_int_equal(set.addr.port, 25);
	assert_string_equal(set.addr.text, "127.0.0.1:25");
	assert_string_equal(set.dir, "/d");
	assert_int_equal(set.verbose, 0);
	assert_null(set.dns.text);
}

static void test_values(void **state)
{
	(void)state;
	struct settings set;
	char error[DAEMON_OPTIONS_ERROR_MAX];
	assert_int_equal(parse(&set, error, "--count", "10", "--name=x", "--bytes", "5",
			       "--addr", "[::1]:0", "--dir=/d", "--verbose", "--count", "1", NULL),
			 0);
	assert_int_equal(set.shared.count, 1); /* the last one given */
	assert_string_equal(set.shared.name, "x");
	assert_true(set.bytes == 5);
	assert_string_equal(set.addr.host, "::1");
	assert_int_equal(set.addr.port, 0);
	assert_string_equal(set.dir, "/d");
	assert_int_equal(set.verbose, 1);
	assert_int_equal(parse(&set, error, "--dir", "/d", "--count", "0", "--help", NULL), -1);
	assert_int_equal(parse(&set, error, "--dir", "/d", "--help", "--count", "0", NULL), 1);
	assert_int_equal(parse(&set, error, "-h", NULL), 1);
	/* an address: an IP literal (v4, [v6]) and a port 1..65535 */
	assert_int_equal(parse(&set, error, "--dir", "/d", "--dns", "127.0.0.1:5353", NULL), 0);
	assert_string_equal(set.dns.text, "127.0.0.1:5353");
	assert_string_equal(set.dns.host, "127.0.0.1");
	assert_int_equal(set.dns.port, 5353);
	assert_int_equal(parse(&set, error, "--dir", "/d", "--dns=[2001:db8::1]:53", NULL), 0);
	assert_string_equal(set.dns.host, "2001:db8::1");
	assert_int_equal(set.dns.port, 53);
}

/* A row's variable stands in for its default; argv wins over it; an empty
 * one is no value; a bad one names the variable (and --help still works). */
static void test_environment(void **state)
{
	(void)state;
	struct settings set;
	char error[DAEMON_OPTIONS_ERROR_MAX];
	char *env[] = { "PATH=/bin", "TEST_DNSX=1.1.1.1:1", "TEST_DNS=[::1]:5300", NULL };
	assert_int_equal(parse_env(&set, error, env, "--dir", "/d", NULL), 0);
	assert_string_equal(set.dns.text, "[::1]:5300");
	assert_string_equal(set.dns.host, "::1");
	assert_int_equal(set.dns.port, 5300);
	assert_int_equal(parse_env(&set, error, env, "--dir", "/d", "--dns", "10.0.0.1:53", NULL), 0);
	assert_string_equal(set.dns.text, "10.0.0.1:53");
	char *empty[] = { "TEST_DNS=", NULL };
	assert_int_equal(parse_env(&set, error, empty, "--dir", "/d", NULL), 0);
	assert_null(set.dns.text);
	char *unrelated[] = { "TEST_DNSX=1.1.1.1:1", NULL };
	assert_int_equal(parse_env(&set, error, unrelated, "--dir", "/d", NULL), 0);
	assert_null(set.dns.text);
	char *bad[] = { "TEST_DNS=resolver.example:53", NULL };
	assert_int_equal(parse_env(&set, error, bad, "--dir", "/d", NULL), -1);
	if (strstr(error, "--dns must be IPv4:PORT or [IPv6]:PORT") == NULL ||
	    strstr(error, "\"resolver.example:53\"") == NULL ||
	    strstr(error, "(from the environment: TEST_DNS)") == NULL)
		fail_msg("bad environment: \"%s\"", error);
	assert_int_equal(parse_env(&set, error, bad, "--help", NULL), 1);
	/* without an environment (daemon_options_parse) the variable is not read */
	assert_int_equal(parse(&set, error, "--dir", "/d", NULL), 0);
	assert_null(set.dns.text);
}

/* Each bad command line fails with a line naming the option (needle). */
static void test_errors(void **state)
{
	(void)state;
	static const struct {
		const char *argv[4];
		const char *needle;
	} cases[] = {
		{ { "--count", "11" }, "--count must be a number in 1..10, not \"11\"" },
		{ { "--count", "-1" }, "--count must be a number in 1..10" },
		{ { "--count", "3x" }, "--count must be a number in 1..10" },
		{ { "--bytes", "184467440737095517" }, "--bytes must be a number in 1..184467440737095516" },
		{ { "--addr", "nope" }, "--addr must be HOST:PORT" },
		{ { "--addr", "h:65536" }, "--addr must be HOST:PORT" },
		{ { "--name", "" }, "--name must not be empty" },
		{ { "--verbose=1" }, "--verbose takes no value" },
		{ { "--count" }, "--count needs a value (N)" },
		{ { "--cou", "3" }, "unknown option \"--cou\"" },
		{ { "--dns", "localhost:53" }, "--dns must be IPv4:PORT or [IPv6]:PORT (an IP address, "
					       "a port in 1..65535), not \"localhost:53\"" },
		{ { "--dns", "127.0.0.1:0" }, "--dns must be IPv4:PORT" },
		{ { "--dns", "127.0.0.1" }, "--dns must be IPv4:PORT" },
		{ { "--dns", "::1:53" }, "--dns must be IPv4:PORT" },
		{ { "--dns", "[::1]" }, "--dns must be IPv4:PORT" },
		{ { "--dns", "[::1]:65536" }, "--dns must be IPv4:PORT" },
		{ { "--dns", "[1.2.3.4]:53" }, "--dns must be IPv4:PORT" },
		{ { "stray" }, "unexpected argument \"stray\"" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct settings set;
		char error[DAEMON_OPTIONS_ERROR_MAX];
		const char *const *a = cases[i].argv;
		assert_int_equal(parse(&set, error, "--dir", "/d", a[0], a[1], a[2], NULL), -1);
		if (strstr(error, cases[i].needle) == NULL)
			fail_msg("case %zu: \"%s\" lacks \"%s\"", i, error, cases[i].needle);
	}
	struct settings set;
	char error[DAEMON_OPTIONS_ERROR_MAX];
	assert_int_equal(parse(&set, error, "--count", "2", NULL), -1);
	assert_string_equal(error, "--dir DIR is required");
}

/* Table errors: a default for no row, a default out of range, no help. */
static void test_bad_tables(void **state)
{
	(void)state;
	static const struct daemon_option_default typo[] = { { .name = "cuont", .def = 1 },
							     { .name = NULL } };
	static const struct daemon_option_default too_big[] = { { .name = "count", .def = 11 },
								{ .name = NULL } };
	static const struct daemon_option no_help[] = {
		{ .name = "quiet", .kind = DAEMON_OPTION_FLAG },
		{ .name = NULL },
	};
	static const struct daemon_option flag_env[] = {
		{ .name = "loud", .kind = DAEMON_OPTION_FLAG, .env = "LOUD", .help = "no" },
		{ .name = NULL },
	};
	const struct {
		struct daemon_option_group groups[2];
		const char *needle;
	} cases[] = {
		{ { { .rows = shared_rows, .defaults = typo } }, "--cuont" },
		{ { { .rows = shared_rows, .defaults = too_big } }, "--count" },
		{ { { .rows = no_help } }, "--quiet" },
		{ { { .rows = flag_env } }, "--loud" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct shared set;
		char error[DAEMON_OPTIONS_ERROR_MAX];
		char *argv[] = { "prog" };
		assert_int_equal(daemon_options_parse(cases[i].groups, &set, 1, argv, error), -1);
		if (strstr(error, cases[i].needle) == NULL)
			fail_msg("case %zu: \"%s\" lacks \"%s\"", i, error, cases[i].needle);
	}
}

static void test_usage(void **state)
{
	(void)state;
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	daemon_options_usage(out, "prog", "What prog does.", groups);
	fclose(out);
	static const char *const lines[] = {
		"usage: prog --dir DIR [OPTION...]\n\nWhat prog does.\n",
		"  --count N                how many\n"
		"                           1..10, default 7\n",
		"  --name NAME              what to call it\n"
		"                           default anon\n",
		"  --bytes N                a size\n"
		"                           1..184467440737095516, default 2147483648\n",
		"  --addr HOST:PORT         where to listen\n"
		"                           default 127.0.0.1:25\n",
		"  --dir DIR                where the data goes\n"
		"                           required\n",
		"  --verbose                say more\n",
		"  --dns IP:PORT            the DNS server\n"
		"                           environment: TEST_DNS\n  --help",
	};
	for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
		if (strstr(text, lines[i]) == NULL)
			fail_msg("usage lacks \"%s\":\n%s", lines[i], text);
	}
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults), cmocka_unit_test(test_values),
		cmocka_unit_test(test_errors),   cmocka_unit_test(test_bad_tables),
		cmocka_unit_test(test_usage),    cmocka_unit_test(test_environment),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
