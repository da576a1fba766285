/* test-dkim-verify.h: tests only. Runs the independent verifier
 * (lib/dkim/dkim-verify.py, dkimpy under /usr/bin/python3) on a message.
 * Needs MAIL_SOURCE_DIR defined for the test target. */
#ifndef MAIL_TEST_DKIM_VERIFY_H
#define MAIL_TEST_DKIM_VERIFY_H

#include <stddef.h>

/* Write msg[0..len) and the TXT records (names[i] like
 * "s1._domainkey.example.test", values[i] "v=DKIM1; k=...; p=...") into
 * files under dir, run the verifier on them (at most 60 s) and copy what
 * it printed into out (NUL-terminated). Returns its exit status (0: every
 * signature passed), or -1 when it could not be run. */
int dkimtest_verify(const char *dir, const void *msg, size_t len, const char *const *names,
		    const char *const *values, size_t n, char *out, size_t out_size);

#endif
