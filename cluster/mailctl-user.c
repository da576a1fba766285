/* mailctl-user.c: the lives of users and tenants (docs/operations.md
 * "Tenant lifecycle").
 *
 *   user add ADDRESS | user passwd ADDRESS     (the password from stdin)
 *   user list DOMAIN [--json] | user show ADDRESS [--json]
 *   user disable ADDRESS | user enable ADDRESS
 *   user del ADDRESS                           (erases the mailbox)
 *   user app-password add ADDRESS --name NAME  (prints it, once)
 *   user app-password list ADDRESS [--json] | user app-password revoke ADDRESS ID|NAME
 *   tenant suspend DOMAIN | tenant resume DOMAIN
 *   tenant del DOMAIN [--purge]
 *
 * Deleting a user erases its mail before its name can be taken again: the
 * record is marked "deleting" first (no login, mail to it refused), then
 * the store partition that holds the mailbox erases it (store.proto
 * USER_PURGE, replicated like every write, asked as the admin over node
 * TLS), and only then does the record go. A failure on the way leaves the
 * user disabled and says so; `user del` again finishes the job.
 */
#include "mailctl-private.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>
#include <uv.h>

#include "mail-error.h"
#include "router.h"
#include "store-client.h"
#include "store.pb-c.h"
#include "tls.h"
#include "util.h"
#include "xalloc.h"

/* How long the store may take to erase one mailbox, retries included (the
 * call writes the mailbox records only: the messages' keys go in the
 * store's background steps; the time covers a failover). */
#define MAILCTL_PURGE_DEADLINE_MS 20000u

static int mu_print_json(json_t *v)
{
	int ok = json_dumpf(v, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) == 0;
	json_decref(v);
	putchar('\n');
	return ok && fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
}

/* "2026-12-02 19:01:46 UTC" of ms since the epoch ("-" for 0). */
static const char *mu_time(char *buf, size_t size, int64_t ms)
{
	if (ms <= 0)
		return "-";
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	strftime(buf, size, "%Y-%m-%d %H:%M:%S UTC", gmtime_r(&t, &tm));
	return buf;
}

/* "812 B", "4.1 KiB", "2.3 MiB", "1.2 GiB" */
static const char *mu_size(char *buf, size_t size, uint64_t n)
{
	if (n < 1024)
		snprintf(buf, size, "%llu B", (unsigned long long)n);
	else if (n < 1024 * 1024)
		snprintf(buf, size, "%.1f KiB", (double)n / 1024);
	else if (n < 1024ull * 1024 * 1024)
		snprintf(buf, size, "%.1f MiB", (double)n / (1024 * 1024));
	else
		snprintf(buf, size, "%.1f GiB", (double)n / (1024.0 * 1024 * 1024));
	return buf;
}

/* ---- erasing mailboxes ------------------------------------------------------ */


struct mu_purge {
	int done;
	int status;
	uint32_t mailboxes;
	uint64_t messages, bytes;
};

void mailctl_store_close(struct mailctl_store *st)
{
	store_client_destroy(&st->client);
	if (st->loop_open) {
		uv_run(&st->loop, UV_RUN_DEFAULT); /* the client's handles close */
		uv_loop_close(&st->loop);
		st->loop_open = 0;
	}
	tls_client_destroy(&st->tls);
	router_destroy(&st->router);
}

int mailctl_store_open(mailctl *ctl, struct mailctl_store *st)
{
	if (st->client != NULL)
		return MAILCTL_OK;
	const char *error;
	if (router_create(&ctl->etcd, &st->router, &error) < 0) {
		mailctl_fail(ctl, "the store tier's map (etcd): %s", error);
		return MAILCTL_UNREACHABLE;
	}
	router_partition part;
	if (!router_lookup_partition(st->router, ROUTER_ROLE_STORE, 0, &part)) {
		mailctl_fail(ctl, "no store tier (no store partition map in etcd)");
		return MAILCTL_UNREACHABLE;
	}
	if (ctl->node_cert != NULL) {
		struct tls_client_settings set = { ctl->cluster_ca, ctl->node_cert, ctl->node_key };
		if (tls_client_create(&set, &st->tls, &error) < 0) {
			mailctl_fail(ctl, "node TLS (--node-cert %s, --node-key, --cluster-ca %s): %s",
				     ctl->node_cert, ctl->cluster_ca, error);
			return MAILCTL_USAGE;
		}
	}
	uv_loop_init(&st->loop);
	st->loop_open = 1;
	st->client = store_client_create(&st->loop, st->router);
	if (st->tls != NULL)
		store_client_set_tls(st->client, st->tls);
	store_client_set_deadline(st->client, MAILCTL_PURGE_DEADLINE_MS);
	return MAILCTL_OK;
}

static void mu_purge_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	struct mu_purge *p = arg;
	p->status = status;
	if (status == MAIL_OK) {
		const Store__UserPurgeResponse *r = (const void *)resp;
		p->mailboxes = r->mailboxes;
		p->messages = r->messages;
		p->bytes = r->bytes;
	}
	p->done = 1;
}

/* Erase addr's mailboxes (normalised address). MAIL_OK with *p. */
static int mu_purge_mailbox(mailctl *ctl, struct mailctl_store *st, const char *addr,
			    struct mu_purge *p, int *rc_r)
{
	memset(p, 0, sizeof *p);
	*rc_r = mailctl_store_open(ctl, st);
	if (*rc_r != MAILCTL_OK) {
		mailctl_fail(ctl, "user %s: its mailbox was not erased; the user stays disabled: "
			     "run `mailctl user del %s` again", addr, addr);
		return MAIL_ERR_UNAVAILABLE;
	}
	Store__UserPurgeRequest req = STORE__USER_PURGE_REQUEST__INIT;
	req.user = (char *)addr;
	store_client_user_purge(st->client, &req, mu_purge_cb, p);
	while (!p->done)
		uv_run(&st->loop, UV_RUN_ONCE);
	return p->status;
}

/* Delete one user: disabled ("deleting"), mailbox erased, record gone.
 * Prints one line; an exit code. */
static int mu_user_del(mailctl *ctl, struct mailctl_store *st, const char *address,
		       struct mu_purge *total)
{
	char *addr = util_address_normalize(address, strlen(address));
	if (addr == NULL)
		return mailctl_error(ctl, MAIL_ERR_NOT_FOUND, "user", address);
	int err = directory_user_state_set(ctl->dir, addr, DIRECTORY_USER_DELETING);
	if (err != MAIL_OK) {
		int rc = mailctl_error(ctl, err, "user", addr);
		free(addr);
		return rc;
	}
	struct mu_purge p;
	int rc = MAILCTL_OK;
	err = mu_purge_mailbox(ctl, st, addr, &p, &rc);
	if (err != MAIL_OK) {
		if (rc == MAILCTL_OK) {
			mailctl_fail(ctl, "user %s: its mailbox could not be erased (%s%s); the user "
				     "stays disabled: run `mailctl user del %s` again",
				     addr, mail_error_info(err)->name,
				     err == MAIL_ERR_PERM ? ": the store needs a node certificate "
							    "with role admin (--node-cert)"
							  : "",
				     addr);
			rc = err == MAIL_ERR_PERM ? MAILCTL_OTHER : MAILCTL_UNREACHABLE;
		}
		free(addr);
		return rc;
	}
	err = directory_user_del(ctl->dir, addr);
	if (err != MAIL_OK) {
		rc = mailctl_error(ctl, err, "user", addr);
		free(addr);
		return rc;
	}
	char size[32];
	printf("%s: deleted; %llu message%s (%s) in %u mailbox%s erased\n", addr,
	       (unsigned long long)p.messages, p.messages == 1 ? "" : "s",
	       mu_size(size, sizeof size, p.bytes), p.mailboxes, p.mailboxes == 1 ? "" : "es");
	fflush(stdout);
	if (total != NULL) {
		total->mailboxes += p.mailboxes;
		total->messages += p.messages;
		total->bytes += p.bytes;
	}
	free(addr);
	return MAILCTL_OK;
}

/* ---- user ----------------------------------------------------------------------- */

static json_t *mu_user_json(const char *addr, const struct directory_user_info *info)
{
	return json_pack("{s:s, s:s, s:I, s:b}", "address", addr, "state",
			 directory_user_state_name(info->state), "created_ms",
			 (json_int_t)info->created_ms, "scram", info->scram);
}

static int mu_user_show(mailctl *ctl, const char *address, int json)
{
	char *addr = util_address_normalize(address, strlen(address));
	struct directory_user_info info;
	int err = addr != NULL ? directory_user_info(ctl->dir, addr, &info) : MAIL_ERR_NOT_FOUND;
	if (err != MAIL_OK) {
		free(addr);
		return mailctl_error(ctl, err, "user", address);
	}
	int rc;
	if (json) {
		rc = mu_print_json(mu_user_json(addr, &info));
	} else {
		char t[64];
		printf("address:  %s\nstate:    %s\ncreated:  %s\nscram:    %s\n", addr,
		       directory_user_state_name(info.state),
		       mu_time(t, sizeof t, info.created_ms),
		       info.scram ? "yes" : "no (set again with user passwd)");
		rc = fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
	}
	free(addr);
	return rc;
}

static int mu_user_list(mailctl *ctl, const char *domain, int json)
{
	char **names = NULL;
	size_t n = 0;
	int err = directory_user_list(ctl->dir, domain, &names, &n);
	if (err != MAIL_OK)
		return mailctl_error(ctl, err, "tenant", domain);
	json_t *a = json ? json_array() : NULL;
	int rc = MAILCTL_OK;
	for (size_t i = 0; i < n; i++) {
		struct directory_user_info info;
		err = directory_user_info(ctl->dir, names[i], &info);
		if (err == MAIL_ERR_NOT_FOUND)
			continue; /* deleted meanwhile */
		if (err != MAIL_OK) {
			rc = mailctl_error(ctl, err, "user", names[i]);
			break;
		}
		if (json)
			json_array_append_new(a, mu_user_json(names[i], &info));
		else if (info.state != DIRECTORY_USER_ACTIVE)
			printf("%s (%s)\n", names[i], directory_user_state_name(info.state));
		else
			printf("%s\n", names[i]);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	if (json) {
		char *d = xstrdup(domain);
		for (char *c = d; *c != '\0'; c++)
			*c = (char)tolower((unsigned char)*c);
		json_t *o = json_pack("{s:s, s:o}", "tenant", d, "users", a);
		free(d);
		return rc == MAILCTL_OK ? mu_print_json(o) : (json_decref(o), rc);
	}
	return rc == MAILCTL_OK && fflush(stdout) != 0 ? MAILCTL_OTHER : rc;
}

/* `user app-password ...`: argv[0] is "app-password". */
static int mu_app_password(mailctl *ctl, int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "add") == 0 && strcmp(argv[3], "--name") == 0) {
		char pw[DIRECTORY_APP_PASSWORD_LEN + 1], id[5];
		int err = directory_app_password_add(ctl->dir, argv[2], argv[4], pw, id);
		if (err == MAIL_ERR_EXISTS) {
			mailctl_fail(ctl, "user %s: an app password called \"%s\" exists (revoke it "
				     "first)", argv[2], argv[4]);
			return MAILCTL_EXISTS;
		}
		if (err == MAIL_ERR_LIMIT) {
			mailctl_fail(ctl, "user %s: already %u app passwords (revoke one)", argv[2],
				     DIRECTORY_APP_PASSWORDS_MAX);
			return MAILCTL_OTHER;
		}
		if (err == MAIL_ERR_PARAMS) {
			mailctl_fail(ctl, "--name: 1..%u printable characters",
				     DIRECTORY_APP_PASSWORD_NAME_MAX);
			return MAILCTL_USAGE;
		}
		if (err != MAIL_OK)
			return mailctl_error(ctl, err, "user", argv[2]);
		/* the password alone on stdout (a script takes it); the rest on
		 * stderr */
		printf("%s\n", pw);
		sodium_memzero(pw, sizeof pw);
		fprintf(ctl->err, "app password %s (\"%s\") of %s: shown once; valid for IMAP, POP3 "
			"and SMTP AUTH (not SCRAM)\n", id, argv[4], argv[2]);
		return fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
	}
	if (argc == 4 && strcmp(argv[1], "revoke") == 0) {
		int err = directory_app_password_revoke(ctl->dir, argv[2], argv[3]);
		if (err == MAIL_ERR_NOT_FOUND && directory_user_exists(ctl->dir, argv[2]) == MAIL_OK)
			return mailctl_error(ctl, err, "app password", argv[3]);
		if (err != MAIL_OK)
			return mailctl_error(ctl, err, "user", argv[2]);
		printf("%s: app password %s revoked\n", argv[2], argv[3]);
		return fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
	}
	int json = argc == 4 && strcmp(argv[3], "--json") == 0;
	if ((argc == 3 || json) && strcmp(argv[1], "list") == 0) {
		struct directory_app_password *list;
		size_t n;
		int err = directory_app_password_list(ctl->dir, argv[2], &list, &n);
		if (err != MAIL_OK)
			return mailctl_error(ctl, err, "user", argv[2]);
		int rc;
		if (json) {
			json_t *a = json_array();
			for (size_t i = 0; i < n; i++)
				json_array_append_new(a, json_pack("{s:s, s:s, s:I}", "id", list[i].id,
								   "name", list[i].name, "created_ms",
								   (json_int_t)list[i].created_ms));
			rc = mu_print_json(json_pack("{s:s, s:o}", "address", argv[2],
						     "app_passwords", a));
		} else {
			char t[64];
			for (size_t i = 0; i < n; i++)
				printf("%s  %-24s created %s\n", list[i].id, list[i].name,
				       mu_time(t, sizeof t, list[i].created_ms));
			rc = fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
		}
		free(list);
		return rc;
	}
	return -1;
}

int mailctl_users(mailctl *ctl, int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "app-password") == 0)
		return mu_app_password(ctl, argc - 1, argv + 1);
	/* argv[0] is "user" */
	int json = argc == 4 && strcmp(argv[3], "--json") == 0;
	if (argc != 3 && !json)
		return -1;
	const char *cmd = argv[1], *arg = argv[2];
	if (strcmp(cmd, "list") == 0)
		return mu_user_list(ctl, arg, json);
	if (strcmp(cmd, "show") == 0)
		return mu_user_show(ctl, arg, json);
	if (json)
		return -1;
	if (strcmp(cmd, "del") == 0) {
		struct mailctl_store st = { 0 };
		int rc = mu_user_del(ctl, &st, arg, NULL);
		mailctl_store_close(&st);
		return rc;
	}
	if (strcmp(cmd, "disable") == 0 || strcmp(cmd, "enable") == 0) {
		int on = strcmp(cmd, "enable") == 0;
		int err = directory_user_state_set(ctl->dir, arg,
						   on ? DIRECTORY_USER_ACTIVE : DIRECTORY_USER_DISABLED);
		if (err != MAIL_OK)
			return mailctl_error(ctl, err, "user", arg);
		printf("%s: %s\n", arg, on ? "enabled" : "disabled");
		return fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
	}
	int add = strcmp(cmd, "add") == 0;
	if (!add && strcmp(cmd, "passwd") != 0)
		return -1;
	size_t cap;
	char *pw = mailctl_password(ctl, &cap);
	if (pw == NULL)
		return MAILCTL_USAGE;
	int err = add ? directory_user_add(ctl->dir, arg, pw)
		      : directory_user_passwd(ctl->dir, arg, pw);
	xfree_secret(pw, cap);
	if (add && err == MAIL_ERR_LIMIT) {
		const char *at = strrchr(arg, '@');
		mailctl_fail(ctl, "tenant %s: its user limit is reached (mailctl tenant set %s "
			     "max_users=N)", at != NULL ? at + 1 : arg, at != NULL ? at + 1 : arg);
		return MAILCTL_OTHER;
	}
	if (add && err == MAIL_ERR_NOT_FOUND) {
		const char *at = strrchr(arg, '@');
		return mailctl_error(ctl, err, "tenant", at != NULL ? at + 1 : arg);
	}
	return mailctl_error(ctl, err, "user", arg);
}

/* ---- tenant ------------------------------------------------------------------------ */

static int mu_tenant_suspend(mailctl *ctl, const char *domain, int on)
{
	struct directory_tenant_settings ts;
	memset(&ts, 0, sizeof ts);
	ts.suspended = on;
	int err = directory_tenant_settings_set(ctl->dir, domain, &ts, DIRECTORY_TENANT_SUSPENDED);
	if (err != MAIL_OK)
		return mailctl_error(ctl, err, "tenant", domain);
	printf("%s: %s\n", domain,
	       on ? "suspended (no login or submission; its mail is deferred with 450)"
		  : "resumed");
	return fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
}

static int mu_tenant_del(mailctl *ctl, const char *domain, int purge)
{
	char **users = NULL;
	size_t n = 0;
	int err = directory_user_list(ctl->dir, domain, &users, &n);
	if (err != MAIL_OK)
		return mailctl_error(ctl, err, "tenant", domain);
	int rc = MAILCTL_OK;
	if (n > 0 && !purge) {
		mailctl_fail(ctl, "tenant %s has %zu user%s: `tenant del %s --purge` deletes them "
			     "and erases their mail", domain, n, n == 1 ? "" : "s", domain);
		rc = MAILCTL_OTHER;
	}
	struct mailctl_store st = { 0 };
	struct mu_purge total = { 0 };
	for (size_t i = 0; rc == MAILCTL_OK && i < n; i++) {
		printf("[%zu/%zu] ", i + 1, n);
		rc = mu_user_del(ctl, &st, users[i], &total);
		if (rc != MAILCTL_OK)
			printf("stopped: %s\n", users[i]);
	}
	mailctl_store_close(&st);
	for (size_t i = 0; i < n; i++)
		free(users[i]);
	free(users);
	if (rc != MAILCTL_OK)
		return rc;
	size_t aliases = 0;
	err = directory_tenant_del(ctl->dir, domain, &aliases);
	if (err == MAIL_ERR_EXISTS) {
		mailctl_fail(ctl, "tenant %s: a user was added meanwhile; run it again", domain);
		return MAILCTL_OTHER;
	}
	if (err != MAIL_OK)
		return mailctl_error(ctl, err, "tenant", domain);
	char size[32];
	printf("%s: deleted with %zu user%s and %zu alias%s; %llu message%s (%s) erased\n",
	       domain, n, n == 1 ? "" : "s", aliases, aliases == 1 ? "" : "es",
	       (unsigned long long)total.messages, total.messages == 1 ? "" : "s",
	       mu_size(size, sizeof size, total.bytes));
	return fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
}

static int mu_tenant_list_json(mailctl *ctl)
{
	char **names = NULL;
	size_t n = 0;
	int err = directory_tenant_list(ctl->dir, &names, &n);
	if (err != MAIL_OK)
		return mailctl_error(ctl, err, "tenant", "list");
	json_t *a = json_array();
	int rc = MAILCTL_OK;
	for (size_t i = 0; i < n && rc == MAILCTL_OK; i++) {
		struct directory_tenant_settings ts;
		char **users = NULL;
		size_t n_users = 0;
		err = directory_tenant_settings_get(ctl->dir, names[i], &ts);
		if (err == MAIL_OK)
			err = directory_user_list(ctl->dir, names[i], &users, &n_users);
		for (size_t k = 0; k < n_users; k++)
			free(users[k]);
		free(users);
		if (err == MAIL_ERR_NOT_FOUND)
			continue; /* deleted meanwhile */
		if (err != MAIL_OK) {
			rc = mailctl_error(ctl, err, "tenant", names[i]);
			break;
		}
		json_array_append_new(a, json_pack("{s:s, s:b, s:I, s:I}", "domain", names[i],
						   "suspended", ts.suspended, "users",
						   (json_int_t)n_users, "created_ms",
						   (json_int_t)ts.created_ms));
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	if (rc != MAILCTL_OK) {
		json_decref(a);
		return rc;
	}
	return mu_print_json(json_pack("{s:o}", "tenants", a));
}

int mailctl_tenant_lifecycle(mailctl *ctl, int argc, char **argv)
{
	/* argv[0] is the subcommand of "tenant" */
	if (argc == 2 && strcmp(argv[0], "suspend") == 0)
		return mu_tenant_suspend(ctl, argv[1], 1);
	if (argc == 2 && strcmp(argv[0], "resume") == 0)
		return mu_tenant_suspend(ctl, argv[1], 0);
	if (argc == 2 && strcmp(argv[0], "del") == 0)
		return mu_tenant_del(ctl, argv[1], 0);
	if (argc == 3 && strcmp(argv[0], "del") == 0 && strcmp(argv[2], "--purge") == 0)
		return mu_tenant_del(ctl, argv[1], 1);
	if (argc == 2 && strcmp(argv[0], "list") == 0 && strcmp(argv[1], "--json") == 0)
		return mu_tenant_list_json(ctl);
	return -1;
}
