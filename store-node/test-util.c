#include "test-util.h"

#include "xalloc.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

char *test_tmpdir_create(const char *tag)
{
	const char *base = getenv("TMPDIR");
	char *path = xasprintf("%s/mail-%s-XXXXXX", base != NULL ? base : "/tmp", tag);
	if (mkdtemp(path) == NULL) {
		perror("mkdtemp");
		abort();
	}
	return path;
}

static int remove_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

void test_tmpdir_remove(char **dir)
{
	if (*dir == NULL)
		return;
	nftw(*dir, remove_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(*dir);
	*dir = NULL;
}
