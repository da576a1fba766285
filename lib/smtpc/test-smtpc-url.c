/* test-smtpc-url.c: next-hop URLs (smtpc-url.h). */
#include "smtpc-url.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static void good(const char *url, enum smtpc_url_scheme scheme, const char *host, unsigned port,
		 int is_ip, const char *normal)
{
	struct smtpc_url u;
	const char *err = NULL;
	assert_int_equal(smtpc_url_parse(url, &u, &err), 0);
	assert_int_equal(u.scheme, scheme);
	assert_string_equal(u.host, host);
	assert_int_equal(u.port, port);
	assert_int_equal(u.host_is_ip, is_ip);
	char buf[SMTPC_URL_HOST_MAX + 32];
	smtpc_url_format(&u, buf, sizeof buf);
	assert_string_equal(buf, normal);
}

static void bad(const char *url, const char *want)
{
	struct smtpc_url u;
	const char *err = NULL;
	assert_int_equal(smtpc_url_parse(url, &u, &err), -1);
	assert_non_null(strstr(err, want));
}

static void test_urls(void **state)
{
	(void)state;
	good("smtp://mx.example.org", SMTPC_URL_SMTP, "mx.example.org", 25, 0,
	     "smtp://mx.example.org:25");
	good("smtp+starttls://relay.provider.example:587", SMTPC_URL_SMTP_STARTTLS,
	     "relay.provider.example", 587, 0, "smtp+starttls://relay.provider.example:587");
	good("SMTPS://relay.provider.example/", SMTPC_URL_SMTPS, "relay.provider.example", 465, 0,
	     "smtps://relay.provider.example:465");
	good("smtp://10.0.0.5:2525", SMTPC_URL_SMTP, "10.0.0.5", 2525, 1, "smtp://10.0.0.5:2525");
	good("smtp+starttls://[2001:db8::25]", SMTPC_URL_SMTP_STARTTLS, "2001:db8::25", 587, 1,
	     "smtp+starttls://[2001:db8::25]:587");
	bad("http://mx.example.org", "must start with");
	bad("smtp://", "no host");
	bad("smtp://user:secret@relay.example:587", "no credentials");
	bad("smtp://relay.example:0", "1..65535");
	bad("smtp://relay.example:70000", "1..65535");
	bad("smtp://relay.example:25x", "nothing may follow");
	bad("smtp://relay.example/path", "nothing may follow");
	bad("smtp://[2001:db8::1", "closing ]");
	bad("smtp://[not-v6]", "IPv6");
	bad("smtp://bad_host!", "not a domain");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_urls),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
