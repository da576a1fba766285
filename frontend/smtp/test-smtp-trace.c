/* test-smtp-trace.c: Received:, Date: and Message-ID: (smtp-trace.h). */
#include "smtp-trace.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static const char *str(buf *b)
{
	buf_append(b, "", 1);
	b->len--;
	return (const char *)b->data;
}

static void test_received(void **state)
{
	(void)state;
	buf b;
	buf_init(&b);
	struct smtp_trace_info ti = { "client.example.org", "192.0.2.7", "mx1.example.test",
				      "0123456789abcdef01234567", "bob@example.test", 1, 1,
				      1796224059000 };
	smtp_trace_received(&b, &ti);
	assert_string_equal(str(&b),
			    "Received: from client.example.org ([192.0.2.7])\r\n"
			    "\tby mx1.example.test with ESMTPSA id 0123456789abcdef01234567\r\n"
			    "\tfor <bob@example.test>; Wed, 02 Dec 2026 15:07:39 +0000\r\n");
	/* several recipients: no for clause; plaintext, no AUTH: ESMTP; IPv6 */
	buf_reset(&b);
	ti.for_rcpt = NULL;
	ti.tls = ti.authenticated = 0;
	ti.peer_ip = "2001:db8::5";
	smtp_trace_received(&b, &ti);
	assert_string_equal(str(&b),
			    "Received: from client.example.org ([IPv6:2001:db8::5])\r\n"
			    "\tby mx1.example.test with ESMTP id 0123456789abcdef01234567; "
			    "Wed, 02 Dec 2026 15:07:39 +0000\r\n");
	/* a HELO that would break the field is defused; TLS only: ESMTPS */
	buf_reset(&b);
	ti.helo = "evil\r\nX-Injected: 1 (a) [b];";
	ti.tls = 1;
	smtp_trace_received(&b, &ti);
	assert_non_null(strstr(str(&b), "from evil??X-Injected:?1??a???b?? ([IPv6:2001:db8::5])"));
	assert_non_null(strstr(str(&b), " with ESMTPS id "));
	assert_null(strstr(str(&b), "\r\nX-Injected"));
	/* an address literal HELO (RFC 5321 4.1.3) stays as it is; brackets
	 * anywhere else are defused */
	buf_reset(&b);
	ti.helo = "[192.0.2.7]";
	smtp_trace_received(&b, &ti);
	assert_non_null(strstr(str(&b), "Received: from [192.0.2.7] ("));
	buf_reset(&b);
	ti.helo = "[IPv6:2001:db8::5]";
	smtp_trace_received(&b, &ti);
	assert_non_null(strstr(str(&b), "Received: from [IPv6:2001:db8::5] ("));
	buf_reset(&b);
	ti.helo = "[1.2.3.4] x";
	smtp_trace_received(&b, &ti);
	assert_non_null(strstr(str(&b), "Received: from ?1.2.3.4??x ("));
	/* no HELO at all */
	buf_reset(&b);
	ti.helo = "";
	ti.peer_ip = "192.0.2.7";
	smtp_trace_received(&b, &ti);
	assert_non_null(strstr(str(&b), "Received: from ([192.0.2.7])\r\n"));
	buf_deinit(&b);
}

static int has(const char *msg, const char *name)
{
	return smtp_trace_has_field((const uint8_t *)msg, strlen(msg), name);
}

static void test_has_field(void **state)
{
	(void)state;
	assert_true(has("From: a\r\nDate: x\r\n\r\nbody", "Date"));
	assert_true(has("From: a\r\nDATE : x\r\n\r\n", "Date"));
	assert_true(has("From: a\nmessage-id: <x@y>\n\nbody", "Message-ID"));
	/* only in the body, in a folded line, or a longer name: not there */
	assert_false(has("From: a\r\n\r\nDate: x\r\n", "Date"));
	assert_false(has("Subject: a\r\n Date: x\r\n\r\n", "Date"));
	assert_false(has("Dated: x\r\n\r\n", "Date"));
	assert_false(has("Date x\r\n\r\n", "Date"));
	assert_false(has("", "Date"));
	/* no empty line: all of it is header */
	assert_true(has("From: a\r\nDate: x", "Date"));
}

static void test_loops(void **state)
{
	(void)state;
	static const char msg[] = "Received: a\r\nreceived : b\r\n\tReceived: not a field\r\n"
				  "Delivered-To: <Fwd@B.Example>\r\nSubject: x\r\n\r\n"
				  "Received: in the body\r\nDelivered-To: a@example.test\r\n";
	const uint8_t *m = (const uint8_t *)msg;
	assert_int_equal(smtp_trace_hops(m, sizeof msg - 1), 2);
	static const char *const addrs[] = { "a@example.test", "fwd@b.example" };
	assert_int_equal(smtp_trace_delivered_to(m, sizeof msg - 1, addrs, 2), 2);
	assert_int_equal(smtp_trace_delivered_to(m, sizeof msg - 1, addrs, 1), 0);
	static const char bare[] = "Delivered-To: a@example.test\n\n";
	assert_int_equal(smtp_trace_delivered_to((const uint8_t *)bare, sizeof bare - 1, addrs, 2), 1);
	assert_int_equal(smtp_trace_hops((const uint8_t *)"", 0), 0);
}

static void test_submission_fields(void **state)
{
	(void)state;
	buf b;
	buf_init(&b);
	const char *none = "From: a@example.test\r\n\r\nhi\r\n";
	smtp_trace_submission_fields(&b, (const uint8_t *)none, strlen(none), "mx1.example.test",
				     "00112233445566778899aabbccddeeff", 1796224059000);
	assert_string_equal(str(&b), "Date: Wed, 02 Dec 2026 15:07:39 +0000\r\n"
				     "Message-ID: <00112233445566778899aabbccddeeff@mx1.example.test>\r\n");
	buf_reset(&b);
	const char *both = "Message-Id: <m@x>\r\nDate: Tue, 1 Dec 2026 10:00:00 +0100\r\n\r\n";
	smtp_trace_submission_fields(&b, (const uint8_t *)both, strlen(both), "mx1.example.test",
				     "00112233445566778899aabbccddeeff", 1796224059000);
	assert_int_equal(b.len, 0);
	buf_reset(&b);
	const char *date = "Date: Tue, 1 Dec 2026 10:00:00 +0100\r\n\r\n";
	smtp_trace_submission_fields(&b, (const uint8_t *)date, strlen(date), "h",
				     "00112233445566778899aabbccddeeff", 1796224059000);
	assert_string_equal(str(&b), "Message-ID: <00112233445566778899aabbccddeeff@h>\r\n");
	buf_deinit(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_received),
		cmocka_unit_test(test_has_field),
		cmocka_unit_test(test_loops),
		cmocka_unit_test(test_submission_fields),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
