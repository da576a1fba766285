/* mailstore-quota.c: a user's usage (the sum of the mailbox records'
 * counters) and the quota check of deliver, APPEND and COPY (issue 12).
 * mailstore.h, "quotas", says why usage is read from the mailbox records
 * and not kept in a counter of its own. */
#include "mailstore-private.h"

#include "log.h"
#include "mail-error.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static int usage_add(void *arg, const char *name, struct mbox *m)
{
	struct mailstore_usage *u = arg;
	(void)name;
	u->bytes += m->size;
	u->messages += m->exists;
	mailstore__mbox_deinit(m);
	return MAIL_OK;
}

int mailstore__usage_locked(mailstore *s, const char *user, struct mailstore_usage *usage_r)
{
	memset(usage_r, 0, sizeof *usage_r);
	buf prefix;
	buf_init(&prefix);
	key_user_prefix(&prefix, KIND_MAILBOX, user);
	int ret = mailstore__mbox_walk_locked(s, user, &prefix, prefix.len, usage_add, usage_r);
	buf_deinit(&prefix);
	if (ret != MAIL_OK)
		memset(usage_r, 0, sizeof *usage_r);
	return ret;
}

int mailstore_usage(mailstore *s, const char *user, struct mailstore_usage *usage_r)
{
	memset(usage_r, 0, sizeof *usage_r);
	if (!mailstore__user_valid(s, user))
		return MAIL_ERR_PARAMS;
	pthread_mutex_lock(&s->lock);
	int ret = mailstore__usage_locked(s, user, usage_r);
	mailstore__unlock(s);
	return ret;
}

void mailstore_quota_begin(mailstore *s, const struct mailstore_quota *quota)
{
	s->quota_on = quota != NULL && (quota->storage > 0 || quota->messages > 0);
	if (quota != NULL)
		s->quota = *quota;
	else
		memset(&s->quota, 0, sizeof s->quota);
}

/* used + add > limit, without overflow; limit 0 is no limit. */
static int over(uint64_t used, uint64_t add, uint64_t limit)
{
	return limit > 0 && (add > limit || used > limit - add);
}

int mailstore__quota_check_locked(mailstore *s, const char *user, uint64_t bytes,
				  uint64_t messages)
{
	if (!s->quota_on)
		return MAIL_OK;
	struct mailstore_usage u;
	if (mailstore__usage_locked(s, user, &u) != MAIL_OK)
		return MAIL_ERR_INTERNAL;
	if (!over(u.bytes, bytes, s->quota.storage) && !over(u.messages, messages, s->quota.messages))
		return MAIL_OK;
	char quser[300];
	log_event(LOG_INFO, LOG_SVC,
		  "event=quota_refused user=%s used_bytes=%" PRIu64 " used_messages=%" PRIu64
		  " add_bytes=%" PRIu64 " add_messages=%" PRIu64 " limit_bytes=%" PRIu64
		  " limit_messages=%" PRIu64,
		  log_quote(quser, sizeof quser, user, strlen(user)), u.bytes, u.messages, bytes,
		  messages, s->quota.storage, s->quota.messages);
	return MAIL_ERR_QUOTA;
}
