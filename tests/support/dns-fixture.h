/* dns-fixture.h: a real DNS server for integration tests (library
 * `mailtestsupport`, tests only).
 *
 * mailtest_dns_start() writes zone (BIND-style text: $ORIGIN, MX, A,
 * AAAA, CNAME, TXT, PTR...) into a fresh temp dir and runs
 * tests/support/dnszone.py on it (Debian's /usr/bin/python3 with
 * python3-dnslib) on a free 127.0.0.1 port, UDP and TCP, and waits (at
 * most 10 s) until it listens. The server answers like a recursive one:
 * NXDOMAIN vs NODATA, CNAME chains in the answer, UDP answers over 512
 * bytes truncated (TC, so clients retry over TCP). args are more of
 * dnszone.py's options (NULL-terminated, or NULL): "--servfail", NAME;
 * "--refused", NAME; "--drop", NAME (never answered); "--no-chase".
 *
 *   mailtest_dns *dns;
 *   assert_int_equal(mailtest_dns_start(zone, NULL, &dns), 0);
 *   struct dns_settings set = { .server = mailtest_dns_server(dns) };
 *   ...
 *   mailtest_dns_stop(&dns);
 *
 * Not thread-safe; call from the test's main thread. The fixture reaps only
 * its own child (waitpid on its PID).
 */
#ifndef MAIL_TEST_DNS_FIXTURE_H
#define MAIL_TEST_DNS_FIXTURE_H

#include <sys/types.h>

typedef struct mailtest_dns mailtest_dns;

/* Returns 0 and *dns_r, or -1 (reason on stderr). */
int mailtest_dns_start(const char *zone, const char *const *args, mailtest_dns **dns_r);
/* "127.0.0.1:PORT": dns_settings.server, --dns, MAIL_DNS. Valid until stop. */
const char *mailtest_dns_server(const mailtest_dns *dns);
int mailtest_dns_port(const mailtest_dns *dns);
pid_t mailtest_dns_pid(const mailtest_dns *dns);
/* Stop (SIGTERM, then SIGKILL after 5 s), reap, remove the dir, free.
 * NULLs *dns; NULL is fine. */
void mailtest_dns_stop(mailtest_dns **dns);

#endif
