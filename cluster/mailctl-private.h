/* mailctl-private.h: shared between mailctl.c and mailctl-node.c. */
#ifndef MAIL_MAILCTL_PRIVATE_H
#define MAIL_MAILCTL_PRIVATE_H

#include <stdio.h>

#include "directory.h"

#define MAILCTL_DEFAULT_ETCD "http://127.0.0.1:23790"

enum mailctl_exit {
	MAILCTL_OK = 0,
	MAILCTL_USAGE = 1,
	MAILCTL_NOT_FOUND = 2,
	MAILCTL_EXISTS = 3,
	MAILCTL_UNREACHABLE = 4,
	MAILCTL_OTHER = 5,
};

typedef struct mailctl {
	const char *etcd_url;
	FILE *err; /* the real stderr (fd 2 may point at /dev/null) */
	directory *dir;
} mailctl;

/* Print "mailctl: <message>" on ctl->err. */
void mailctl_fail(mailctl *ctl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Map an enum mail_error to an exit code, printing what went wrong. */
int mailctl_error(mailctl *ctl, int err, const char *what, const char *name);

/* `node ...` and `partitions ...`: argv[0] is "node" or "partitions".
 * Returns an exit code, or -1 for a usage error. */
int mailctl_cluster(mailctl *ctl, int argc, char **argv);
/* `block ...` and `tls ...` (mailctl-security.c): argv[0] is the command.
 * An exit code, or -1 for a usage error. */
int mailctl_security(mailctl *ctl, int argc, char **argv);

#endif
