/* Unit tests for lib/: buffers, address normalisation, host:port, hashing,
 * the error table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "budget.h"
#include "buf.h"
#include "cidr.h"
#include "log.h"
#include "mail-error.h"
#include "util.h"
#include "xalloc.h"

static void test_buf(void **state)
{
	(void)state;
	buf b;
	buf_init(&b);
	for (int i = 0; i < 1000; i++)
		buf_append(&b, "abc", 3);
	assert_int_equal(b.len, 3000);
	buf_consume(&b, 2999);
	assert_int_equal(b.len, 1);
	assert_int_equal(b.data[0], 'c');
	buf_printf(&b, "%d-%s", 42, "x");
	assert_memory_equal(b.data, "c42-x", 5);
	size_t len;
	uint8_t *d = buf_steal(&b, &len);
	assert_int_equal(len, 5);
	assert_null(b.data);
	free(d);
	buf_deinit(&b);
}

static void test_address(void **state)
{
	(void)state;
	char *a = util_address_normalize("Demo@Example.TEST", 17);
	assert_string_equal(a, "demo@example.test");
	assert_string_equal(util_address_domain(a), "example.test");
	free(a);
	const char *bad[] = { "", "nodomain", "@x.test", "a@", "a b@x.test", "a@x..test",
			      "a@-x.test", "a@b@c.test", "a@x.test.", ".a@x.test", "a<@x.test" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_null(util_address_normalize(bad[i], strlen(bad[i])));
	char longlocal[80];
	memset(longlocal, 'a', 65);
	strcpy(longlocal + 65, "@x.test");
	assert_null(util_address_normalize(longlocal, strlen(longlocal)));
}

static void test_hostport(void **state)
{
	(void)state;
	char *host;
	int port;
	const char *err;
	assert_int_equal(util_hostport_parse("127.0.0.1:2525", &host, &port, &err), 0);
	assert_string_equal(host, "127.0.0.1");
	assert_int_equal(port, 2525);
	free(host);
	assert_int_equal(util_hostport_parse("[::1]:25", &host, &port, &err), 0);
	assert_string_equal(host, "::1");
	free(host);
	assert_int_equal(util_hostport_parse("nohost", &host, &port, &err), -1);
	assert_int_equal(util_hostport_parse(":25", &host, &port, &err), -1);
	assert_int_equal(util_hostport_parse("h:99999", &host, &port, &err), -1);
	assert_int_equal(util_hostport_parse("h:2x", &host, &port, &err), -1);
}

/* IP literals only, port 1..65535, into a sockaddr. */
static void test_ipport(void **state)
{
	(void)state;
	struct sockaddr_storage ss;
	const char *err;
	assert_int_equal(util_ipport_parse("127.0.0.1:53", &ss, &err), 0);
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(ntohs(sin->sin_port), 53);
	assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x7f000001);
	assert_int_equal(util_ipport_parse("[2001:db8::1]:65535", &ss, &err), 0);
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
	assert_int_equal(sin6->sin6_family, AF_INET6);
	assert_int_equal(ntohs(sin6->sin6_port), 65535);
	assert_int_equal(sin6->sin6_addr.s6_addr[15], 1);
	static const char *const bad[] = {
		"localhost:53", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:+53",
		"127.0.0.1: 53", "::1:53", "[::1]", "[::1]:", "[::1]x:53", "[1.2.3.4]:53",
		"1.2.3.4:99999999999999999999", "",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err = NULL;
		if (util_ipport_parse(bad[i], &ss, &err) != -1 || err == NULL)
			fail_msg("\"%s\" accepted", bad[i]);
	}
}

static void test_hash_and_ids(void **state)
{
	(void)state;
	/* The ring depends on this value never changing. */
	assert_int_equal(util_hash64("a", 1), util_hash64("a", 1));
	assert_int_not_equal(util_hash64("a", 1), util_hash64("b", 1));
	char id1[25], id2[25];
	util_random_hex(id1, 12);
	util_random_hex(id2, 12);
	assert_int_equal(strlen(id1), 24);
	assert_string_not_equal(id1, id2);
}

static void test_errors(void **state)
{
	(void)state;
	assert_int_equal(mail_error_info(MAIL_ERR_UNAVAILABLE)->smtp_code, 451);
	assert_string_equal(mail_error_info(MAIL_ERR_UNAVAILABLE)->imap_code, "UNAVAILABLE");
	/* a write refused for want of a quorum: 451 4.3.0 and NO [UNAVAILABLE]
	 * whether the last try failed or ran out of time */
	static const int quorum_errors[] = { MAIL_ERR_UNAVAILABLE, MAIL_ERR_DEADLINE,
					     MAIL_ERR_NOT_PRIMARY, MAIL_ERR_STALE_EPOCH };
	for (size_t k = 0; k < sizeof quorum_errors / sizeof quorum_errors[0]; k++) {
		const struct mail_error_info *info = mail_error_info(quorum_errors[k]);
		assert_int_equal(info->smtp_code, 451);
		assert_string_equal(info->smtp_enh, "4.3.0");
		assert_string_equal(info->imap_code, "UNAVAILABLE");
		assert_true(info->temporary);
	}
	assert_string_equal(mail_error_info(9999)->name, "internal");
	assert_string_equal(mail_error_info(-1)->name, "internal");
	for (int i = 0; i < MAIL_ERR_COUNT_; i++)
		assert_non_null(mail_error_info(i)->text);
}

static void test_log_quote(void **state)
{
	(void)state;
	char out[64];
	assert_string_equal(log_quote(out, sizeof out, "plain", 5), "plain");
	assert_string_equal(log_quote(out, sizeof out, "a b", 3), "\"a b\"");
	assert_string_equal(log_quote(out, sizeof out, "\r\n", 2), "\"\\x0d\\x0a\"");
	char big[200];
	memset(big, 'x', sizeof big);
	log_quote(out, sizeof out, big, sizeof big);
	assert_true(strlen(out) < sizeof out);
}

static void test_cidr(void **state)
{
	(void)state;
	struct cidr_list l;
	const char *err = NULL;
	assert_int_equal(cidr_list_parse("127.0.0.0/8, 10.1.2.3,2001:db8::/32 ,::1", &l, &err), 0);
	assert_int_equal(l.n, 4);
	assert_true(cidr_match_text(&l, "127.9.9.9"));
	assert_true(cidr_match_text(&l, "10.1.2.3"));
	assert_false(cidr_match_text(&l, "10.1.2.4"));
	assert_true(cidr_match_text(&l, "2001:db8:1::5"));
	assert_false(cidr_match_text(&l, "2001:db9::5"));
	assert_true(cidr_match_text(&l, "::1"));
	assert_true(cidr_match_text(&l, "::ffff:127.0.0.1")); /* mapped IPv4 */
	assert_false(cidr_match_text(&l, "128.0.0.1"));
	assert_false(cidr_match_text(&l, "not an address"));
	cidr_list_free(&l);
	struct cidr_list odd;
	assert_int_equal(cidr_list_parse("192.0.2.0/23", &odd, &err), 0);
	assert_true(cidr_match_text(&odd, "192.0.3.255"));
	assert_false(cidr_match_text(&odd, "192.0.4.0"));
	cidr_list_free(&odd);
	assert_int_equal(cidr_list_parse("", &l, &err), 0);
	assert_int_equal(l.n, 0);
	assert_false(cidr_match_text(&l, "127.0.0.1"));
	assert_int_equal(cidr_list_parse("10.0.0.0/33", &l, &err), -1);
	assert_int_equal(cidr_list_parse("10.0.0.0/", &l, &err), -1);
	assert_int_equal(cidr_list_parse("example.com", &l, &err), -1);
	assert_int_equal(cidr_list_parse("::/129", &l, &err), -1);
	assert_true(cidr_is_loopback_text("127.0.0.1"));
	assert_true(cidr_is_loopback_text("::1"));
	assert_false(cidr_is_loopback_text("198.51.100.1"));
}

static void test_budget(void **state)
{
	(void)state;
	struct mem_budget b = { .limit = 100 };
	assert_int_equal(mem_budget_take(&b, 60), 0);
	assert_int_equal(mem_budget_take(&b, 41), -1);
	assert_int_equal(b.refused, 1);
	assert_int_equal(mem_budget_take(&b, 40), 0);
	assert_int_equal(b.peak, 100);
	mem_budget_give(&b, 100);
	assert_int_equal(b.used, 0);
	assert_int_equal(mem_budget_take(&b, SIZE_MAX), -1);
	struct mem_budget open = { 0 };
	assert_int_equal(mem_budget_take(&open, SIZE_MAX / 2), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cidr),        cmocka_unit_test(test_budget),
		cmocka_unit_test(test_buf),         cmocka_unit_test(test_address),
		cmocka_unit_test(test_hostport),    cmocka_unit_test(test_ipport),
		cmocka_unit_test(test_hash_and_ids), cmocka_unit_test(test_errors),
		cmocka_unit_test(test_log_quote),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
