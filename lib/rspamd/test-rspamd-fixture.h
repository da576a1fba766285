/* test-rspamd-fixture.h: a real rspamd for lib/rspamd's test (tests only).
 *
 * mailtest_rspamd_start() runs `/usr/bin/python3 tests/support/rspamd.py
 * run DIR` (DIR a fresh temp dir) and waits for its "url=... pid=..."
 * line: rspamd answers /ping and has its hyperscan database loaded (the
 * first start on a machine compiles it: up to minutes; later ones take
 * about a second, tests/support/rspamd.py says why). The script and, through
 * it, rspamd get SIGTERM when the test process dies (PR_SET_PDEATHSIG at
 * both steps), so a crashed test leaves no rspamd behind; its dir (~90 MB)
 * is removed by the next start (an flock says whose dir is alive).
 *
 *   mailtest_rspamd *r;
 *   assert_int_equal(mailtest_rspamd_start(&r), 0);
 *   settings.url = mailtest_rspamd_url(r);
 *   ...
 *   mailtest_rspamd_stop(&r);
 *
 * Not thread-safe; call from the test's main thread. Reaps only its own
 * child (the script, by PID), which stops and reaps rspamd.
 */
#ifndef MAIL_TEST_RSPAMD_FIXTURE_H
#define MAIL_TEST_RSPAMD_FIXTURE_H

#include <sys/types.h>

typedef struct mailtest_rspamd mailtest_rspamd;

/* Returns 0 and *r_r, or -1 (the reason on stderr). */
int mailtest_rspamd_start(mailtest_rspamd **r_r);
/* "http://127.0.0.1:PORT" of the normal worker; valid until stop. */
const char *mailtest_rspamd_url(const mailtest_rspamd *r);
/* rspamd's main process. */
pid_t mailtest_rspamd_pid(const mailtest_rspamd *r);
/* Stop rspamd (SIGTERM to the script, which stops it by PID; SIGKILL to
 * the script after a while), reap, remove the dir, free. NULLs *r; NULL
 * is fine. */
void mailtest_rspamd_stop(mailtest_rspamd **r);

#endif
