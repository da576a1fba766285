/* mailctl-quota.c: storage and message quotas (docs/operations.md,
 * "Quotas"; issue 12).
 *
 *   quota set ADDRESS|DOMAIN [--storage SIZE] [--messages N]
 *   quota show ADDRESS|DOMAIN [--json]
 *
 * A user's limits live in its directory record ("quota"), a tenant's in
 * its settings (quota_storage, quota_messages). SIZE: octets, or with a
 * K, M, G or T suffix (1024-based), 0 or "unlimited" removes the limit.
 * Usage comes from the store: one USAGE call per user (on the user's
 * partition primary, all in flight at once); a tenant's usage is the sum
 * over its users, exact as of the moment each primary answered.
 */
#include "mailctl-private.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "mail-error.h"
#include "store.pb-c.h"
#include "util.h"
#include "xalloc.h"

/* How long the store may take to answer one user's usage (failover
 * included). */
#define MAILCTL_USAGE_DEADLINE_MS 10000u

struct mq_usage {
	const char *user;
	int done;
	int status;
	uint64_t bytes, messages;
};

static void mq_usage_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	struct mq_usage *u = arg;
	u->status = status;
	if (status == MAIL_OK) {
		const Store__UsageResponse *r = (const void *)resp;
		u->bytes = r->bytes;
		u->messages = r->messages;
	}
	u->done = 1;
}

/* The usage of the n users of u (all asked at once). An exit code; one
 * line printed on error. */
static int mq_usage_get(mailctl *ctl, struct mq_usage *u, size_t n)
{
	if (n == 0)
		return MAILCTL_OK;
	struct mailctl_store st = { 0 };
	int rc = mailctl_store_open(ctl, &st);
	if (rc != MAILCTL_OK) {
		mailctl_store_close(&st);
		return rc;
	}
	store_client_set_deadline(st.client, MAILCTL_USAGE_DEADLINE_MS);
	for (size_t i = 0; i < n; i++) {
		Store__UsageRequest req = STORE__USAGE_REQUEST__INIT;
		req.user = (char *)u[i].user;
		store_client_usage(st.client, &req, mq_usage_cb, &u[i]);
	}
	for (size_t i = 0; i < n; i++)
		while (!u[i].done)
			uv_run(&st.loop, UV_RUN_ONCE);
	mailctl_store_close(&st);
	for (size_t i = 0; i < n; i++) {
		if (u[i].status == MAIL_OK)
			continue;
		mailctl_fail(ctl, "user %s: its usage could not be read from the store (%s%s)",
			     u[i].user, mail_error_info(u[i].status)->name,
			     u[i].status == MAIL_ERR_PERM
				     ? ": the store needs a node certificate (--node-cert)"
				     : "");
		return u[i].status == MAIL_ERR_PERM ? MAILCTL_OTHER : MAILCTL_UNREACHABLE;
	}
	return MAILCTL_OK;
}

static json_t *mq_limit_json(uint64_t v)
{
	return v > 0 ? json_integer((json_int_t)v) : json_null();
}

static json_t *mq_limits_json(const struct directory_quota *q)
{
	return json_pack("{s:o, s:o}", "storage", mq_limit_json(q->storage), "messages",
			 mq_limit_json(q->messages));
}

static json_t *mq_usage_json(uint64_t bytes, uint64_t messages)
{
	return json_pack("{s:I, s:I}", "bytes", (json_int_t)bytes, "messages",
			 (json_int_t)messages);
}

static const char *mq_limit_text(char *buf, size_t size, uint64_t v)
{
	if (v == 0)
		return "unlimited";
	snprintf(buf, size, "%llu", (unsigned long long)v);
	return buf;
}

static void mq_print_line(const char *what, uint64_t used, uint64_t limit, const char *unit)
{
	char l[32];
	printf("%-9s %llu%s used of %s%s", what, (unsigned long long)used, unit,
	       mq_limit_text(l, sizeof l, limit), limit > 0 ? unit : "");
	if (limit > 0)
		printf(" (%.1f%%)", 100.0 * (double)used / (double)limit);
	putchar('\n');
}

static int mq_print_json(json_t *v)
{
	int ok = json_dumpf(v, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) == 0;
	json_decref(v);
	putchar('\n');
	return ok && fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
}

static int mq_show_user(mailctl *ctl, const char *addr, int json)
{
	struct directory_quota uq, tq;
	int err = directory_quota_get(ctl->dir, addr, &uq, &tq);
	if (err != MAIL_OK)
		return mailctl_error(ctl, err, "user", addr);
	struct mq_usage u = { .user = addr };
	int rc = mq_usage_get(ctl, &u, 1);
	if (rc != MAILCTL_OK)
		return rc;
	const char *domain = util_address_domain(addr);
	if (json)
		return mq_print_json(json_pack("{s:s, s:o, s:o, s:{s:s, s:o}}", "address", addr,
					       "limits", mq_limits_json(&uq), "usage",
					       mq_usage_json(u.bytes, u.messages), "tenant",
					       "domain", domain, "limits", mq_limits_json(&tq)));
	printf("address:  %s\n", addr);
	mq_print_line("storage:", u.bytes, uq.storage, " B");
	mq_print_line("messages:", u.messages, uq.messages, "");
	char a[32], b[32];
	printf("tenant:   %s (storage %s, messages %s for all its users)\n", domain,
	       mq_limit_text(a, sizeof a, tq.storage), mq_limit_text(b, sizeof b, tq.messages));
	return fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
}

static int mq_show_tenant(mailctl *ctl, const char *domain, int json)
{
	struct directory_tenant_settings ts;
	int err = directory_tenant_settings_get(ctl->dir, domain, &ts);
	if (err != MAIL_OK)
		return mailctl_error(ctl, err, "tenant", domain);
	char **names = NULL;
	size_t n = 0;
	err = directory_user_list(ctl->dir, domain, &names, &n);
	if (err != MAIL_OK)
		return mailctl_error(ctl, err, "tenant", domain);
	struct mq_usage *u = n > 0 ? xcalloc(n, sizeof *u) : NULL;
	for (size_t i = 0; i < n; i++)
		u[i].user = names[i];
	int rc = mq_usage_get(ctl, u, n);
	uint64_t bytes = 0, messages = 0;
	for (size_t i = 0; i < n && rc == MAILCTL_OK; i++) {
		bytes += u[i].bytes;
		messages += u[i].messages;
	}
	struct directory_quota tq = { ts.quota_storage, ts.quota_messages };
	if (rc == MAILCTL_OK && json) {
		json_t *users = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(users,
					      json_pack("{s:s, s:I, s:I}", "address", names[i],
							"bytes", (json_int_t)u[i].bytes, "messages",
							(json_int_t)u[i].messages));
		rc = mq_print_json(json_pack("{s:s, s:o, s:o, s:o}", "domain", domain, "limits",
					     mq_limits_json(&tq), "usage",
					     mq_usage_json(bytes, messages), "users", users));
	} else if (rc == MAILCTL_OK) {
		printf("tenant:   %s (%zu user%s)\n", domain, n, n == 1 ? "" : "s");
		mq_print_line("storage:", bytes, tq.storage, " B");
		mq_print_line("messages:", messages, tq.messages, "");
		rc = fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(u);
	return rc;
}

/* --messages N: 0..DIRECTORY_QUOTA_MESSAGES_MAX, or "unlimited". */
static int mq_count_parse(const char *v, uint64_t *n_r)
{
	*n_r = 0;
	if (strcmp(v, "unlimited") == 0)
		return 0;
	if (v[0] < '0' || v[0] > '9')
		return -1;
	char *end;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 10);
	if (*end != '\0' || errno != 0 || n > DIRECTORY_QUOTA_MESSAGES_MAX)
		return -1;
	*n_r = n;
	return 0;
}

static int mq_set(mailctl *ctl, const char *target, int argc, char **argv)
{
	struct directory_quota q = { 0 };
	unsigned fields = 0;
	for (int i = 0; i < argc; i += 2) {
		if (i + 1 >= argc)
			return -1;
		const char *v = argv[i + 1];
		if (strcmp(argv[i], "--storage") == 0) {
			if (directory_size_parse(v, &q.storage) < 0) {
				mailctl_fail(ctl, "--storage %s: not a size (bytes, or with a K, M, G "
					     "or T suffix, 1024-based; 0 or unlimited: no limit)", v);
				return MAILCTL_USAGE;
			}
			fields |= DIRECTORY_QUOTA_STORAGE;
		} else if (strcmp(argv[i], "--messages") == 0) {
			if (mq_count_parse(v, &q.messages) < 0) {
				mailctl_fail(ctl, "--messages %s: not a number of messages (0..%u; 0 or "
					     "unlimited: no limit)", v, DIRECTORY_QUOTA_MESSAGES_MAX);
				return MAILCTL_USAGE;
			}
			fields |= DIRECTORY_QUOTA_MESSAGES;
		} else {
			return -1;
		}
	}
	if (fields == 0)
		return -1;
	int err;
	if (strchr(target, '@') != NULL) {
		err = directory_user_quota_set(ctl->dir, target, &q, fields);
		if (err != MAIL_OK)
			return mailctl_error(ctl, err, "user", target);
	} else {
		struct directory_tenant_settings ts = { 0 };
		unsigned tf = 0;
		ts.quota_storage = q.storage;
		ts.quota_messages = (unsigned)q.messages;
		if (fields & DIRECTORY_QUOTA_STORAGE)
			tf |= DIRECTORY_TENANT_QUOTA_STORAGE;
		if (fields & DIRECTORY_QUOTA_MESSAGES)
			tf |= DIRECTORY_TENANT_QUOTA_MESSAGES;
		err = directory_tenant_settings_set(ctl->dir, target, &ts, tf);
		if (err != MAIL_OK)
			return mailctl_error(ctl, err, "tenant", target);
	}
	char a[32], b[32];
	printf("%s: quota", target);
	if (fields & DIRECTORY_QUOTA_STORAGE)
		printf(" storage %s", mq_limit_text(a, sizeof a, q.storage));
	if (fields & DIRECTORY_QUOTA_MESSAGES)
		printf(" messages %s", mq_limit_text(b, sizeof b, q.messages));
	putchar('\n');
	return fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
}

int mailctl_quota(mailctl *ctl, int argc, char **argv)
{
	/* argv[0] is "quota" */
	if (argc >= 4 && strcmp(argv[1], "set") == 0)
		return mq_set(ctl, argv[2], argc - 3, argv + 3);
	int json = argc == 4 && strcmp(argv[3], "--json") == 0;
	if ((argc == 3 || json) && strcmp(argv[1], "show") == 0) {
		const char *target = argv[2];
		if (strchr(target, '@') == NULL)
			return mq_show_tenant(ctl, target, json);
		char *addr = util_address_normalize(target, strlen(target));
		if (addr == NULL)
			return mailctl_error(ctl, MAIL_ERR_NOT_FOUND, "user", target);
		int rc = mq_show_user(ctl, addr, json);
		free(addr);
		return rc;
	}
	return -1;
}
