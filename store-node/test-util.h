/* test-util.h: helpers shared by the store-node tests (not installed). */
#ifndef MAIL_STORE_TEST_UTIL_H
#define MAIL_STORE_TEST_UTIL_H

/* A fresh directory under $TMPDIR or /tmp; the caller frees the path. */
char *test_tmpdir_create(const char *tag);
/* Remove dir and everything under it, then free the path. NULLs *dir. */
void test_tmpdir_remove(char **dir);

#endif
