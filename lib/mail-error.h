/* mail-error.h: the one error taxonomy of the project.
 *
 * Every fallible operation that crosses a module boundary reports one of
 * these. The same value travels as the RPC status, and one table maps it to
 * the SMTP reply (basic + enhanced code) and the IMAP response code, with a
 * fixed text that is safe to show a client. Details go to the log, never to
 * the client; in particular nothing here reveals whether another tenant's
 * object exists.
 *
 * Values are part of the RPC wire format: never renumber, only append.
 */
#ifndef MAIL_ERROR_H
#define MAIL_ERROR_H

enum mail_error {
	MAIL_OK = 0,
	MAIL_ERR_TEMP = 1,        /* transient failure: try again later */
	MAIL_ERR_UNAVAILABLE = 2, /* the service (or a quorum of it) is down */
	MAIL_ERR_NOT_FOUND = 3,
	MAIL_ERR_EXISTS = 4,
	MAIL_ERR_QUOTA = 5,
	MAIL_ERR_TOO_BIG = 6,
	MAIL_ERR_LIMIT = 7,       /* a configured limit was hit */
	MAIL_ERR_PERM = 8,        /* permission denied */
	MAIL_ERR_PARAMS = 9,      /* malformed request */
	MAIL_ERR_INTERNAL = 10,
	MAIL_ERR_NOT_PRIMARY = 11, /* ask the current primary instead */
	MAIL_ERR_STALE_EPOCH = 12, /* request fenced by a newer epoch */
	MAIL_ERR_DEADLINE = 13,    /* the deadline passed before an answer */
	MAIL_ERR_BAD_METHOD = 14,  /* unknown RPC method (version skew) */
	MAIL_ERR_COUNT_
};

struct mail_error_info {
	const char *name;       /* "temp", "unavailable", ... (for logs, metrics) */
	int smtp_code;          /* 451, 550, ... */
	const char *smtp_enh;   /* "4.3.0" */
	const char *imap_code;  /* "UNAVAILABLE" (the [CODE] of a NO), or NULL */
	const char *text;       /* fixed client-safe text */
	int temporary;          /* 1 when a retry may succeed */
};

/* The row for err; unknown values map to the "internal" row. Never NULL. */
const struct mail_error_info *mail_error_info(int err);

#endif
