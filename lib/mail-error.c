#include "mail-error.h"

#include <stddef.h>

static const struct mail_error_info table[MAIL_ERR_COUNT_] = {
	[MAIL_OK] = { "ok", 250, "2.0.0", NULL, "OK", 0 },
	[MAIL_ERR_TEMP] = { "temp", 451, "4.3.0", "UNAVAILABLE",
			    "Temporary failure, try again later", 1 },
	[MAIL_ERR_UNAVAILABLE] = { "unavailable", 451, "4.3.0", "UNAVAILABLE",
				   "Service temporarily unavailable", 1 },
	[MAIL_ERR_NOT_FOUND] = { "not-found", 550, "5.1.1", "NONEXISTENT",
				 "No such object", 0 },
	[MAIL_ERR_EXISTS] = { "exists", 550, "5.0.0", "ALREADYEXISTS",
			      "Already exists", 0 },
	[MAIL_ERR_QUOTA] = { "quota", 552, "5.2.2", "OVERQUOTA",
			     "Quota exceeded", 0 },
	[MAIL_ERR_TOO_BIG] = { "too-big", 552, "5.3.4", "LIMIT",
			       "Message too big", 0 },
	[MAIL_ERR_LIMIT] = { "limit", 452, "4.5.3", "LIMIT",
			     "Limit exceeded", 1 },
	[MAIL_ERR_PERM] = { "perm", 550, "5.7.1", "NOPERM",
			    "Permission denied", 0 },
	[MAIL_ERR_PARAMS] = { "params", 501, "5.5.4", "CLIENTBUG",
			      "Invalid parameters", 0 },
	[MAIL_ERR_INTERNAL] = { "internal", 451, "4.3.0", "SERVERBUG",
				"Internal error", 1 },
	[MAIL_ERR_NOT_PRIMARY] = { "not-primary", 451, "4.3.0", "UNAVAILABLE",
				   "Service temporarily unavailable", 1 },
	[MAIL_ERR_STALE_EPOCH] = { "stale-epoch", 451, "4.3.0", "UNAVAILABLE",
				   "Service temporarily unavailable", 1 },
	/* 4.3.0, not 4.4.7: X.4.7 means the message itself expired (RFC
	 * 3463); this is an internal call that ran out of time, e.g. the
	 * queue client's last try cut by its deadline while a quorum is down */
	[MAIL_ERR_DEADLINE] = { "deadline", 451, "4.3.0", "UNAVAILABLE",
				"Timed out, try again later", 1 },
	[MAIL_ERR_BAD_METHOD] = { "bad-method", 451, "4.3.0", "SERVERBUG",
				  "Internal error", 1 },
};

const struct mail_error_info *mail_error_info(int err)
{
	if (err < 0 || err >= MAIL_ERR_COUNT_)
		return &table[MAIL_ERR_INTERNAL];
	return &table[err];
}
