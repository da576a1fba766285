/* etcd-fixture.h: shared helpers for integration tests (library
 * `mailtestsupport`, tests only).
 *
 * mailtest_etcd_start() runs a real single-node etcd (/usr/bin/etcd) on free
 * 127.0.0.1 ports with its data in a fresh temp dir, and waits (at most
 * 10 s) until GET /health answers {"health":"true"}. mailtest_etcd_stop()
 * sends SIGTERM, waits up to 5 s, then SIGKILLs, reaps the process and
 * removes the dir. Each etcd data dir takes ~123 MB: stop what you start.
 *
 *   mailtest_etcd *etcd;
 *   assert_int_equal(mailtest_etcd_start(&etcd), 0);
 *   router_create(mailtest_etcd_conf(etcd), ...);
 *   ...
 *   mailtest_etcd_stop(&etcd);
 *
 * With mailtest_etcd_start_tls() etcd serves https only and wants a client
 * certificate from the fixture's CA (cluster/dev-ca in its dir: ca.pem,
 * etcd-server.pem, and client.pem without a CN); users, roles and
 * `auth enable` are the test's (mailtest_etcdctl).
 *
 * Not thread-safe; call from the test's main thread. The fixture reaps only
 * its own child (waitpid on its PID).
 */
#ifndef MAIL_TEST_ETCD_FIXTURE_H
#define MAIL_TEST_ETCD_FIXTURE_H

#include <sys/types.h>

#include "etcd.h"

typedef struct mailtest_etcd mailtest_etcd;

/* Returns 0 and *etcd_r, or -1 (reason on stderr). */
int mailtest_etcd_start(mailtest_etcd **etcd_r);
/* The same with TLS: https, --client-cert-auth, certificates issued by
 * cluster/dev-ca into the fixture's dir. */
int mailtest_etcd_start_tls(mailtest_etcd **etcd_r);
/* "http://127.0.0.1:PORT" (https with TLS); valid until stop. */
const char *mailtest_etcd_url(const mailtest_etcd *etcd);
/* A client's conf: the URL and, with TLS, the CA and client certificate
 * (no user); valid until stop. Copy it to add a user. */
const etcd_conf *mailtest_etcd_conf(const mailtest_etcd *etcd);
/* The fixture's TLS file NAME ("ca.pem", "client.pem", "client.key", or
 * one of cluster/dev-ca's), as a path into buf. */
const char *mailtest_etcd_file(const mailtest_etcd *etcd, const char *name, char *buf,
			       size_t size);
/* Run etcdctl against it (its TLS files; --user USER:PASSWORD when user
 * is not NULL) with the NULL-terminated arguments, stdin from /dev/null,
 * its output to stderr. Returns etcdctl's exit status, or -1. */
int mailtest_etcdctl(const mailtest_etcd *etcd, const char *user, const char *password, ...)
	__attribute__((sentinel));
/* SIGTERM etcd (by PID), wait for it, start it again on the same ports
 * and data, wait until healthy. 0, or -1. */
int mailtest_etcd_restart(mailtest_etcd *etcd);
int mailtest_etcd_port(const mailtest_etcd *etcd);
pid_t mailtest_etcd_pid(const mailtest_etcd *etcd);
/* Stop (SIGTERM, then SIGKILL after 5 s), reap, remove the data dir, free.
 * NULLs *etcd; NULL is fine. */
void mailtest_etcd_stop(mailtest_etcd **etcd);

/* A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read
 * it, close). Another process may still take it: retry on EADDRINUSE.
 * Returns the port, or -1. */
int mailtest_free_port(void);

/* mkdtemp("/tmp/<prefix>.XXXXXX"); returns a heap path (caller frees) or
 * NULL. mailtest_rmrf() removes a tree (like rm -rf); 0 or -1. */
char *mailtest_tmpdir(const char *prefix);
int mailtest_rmrf(const char *path);

/* Sleep ms milliseconds. */
void mailtest_sleep_ms(int ms);

#endif
