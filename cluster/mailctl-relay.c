/* mailctl-relay.c: `mailctl relay ...` and `mailctl transport ...`, where
 * outbound mail goes (docs/outbound.md; the queue nodes read these).
 *
 *   relay set [--tenant DOMAIN] URL [--user USER]
 *                         every remote recipient (of DOMAIN's users) goes
 *                         through URL; with --user, AUTH over TLS with the
 *                         password read from standard input
 *   relay show [--json]   the relays: scope, URL, user, whether a password
 *                         is set (never the password)
 *   relay remove [--tenant DOMAIN]
 *   transport set DOMAIN URL
 *                         mail for DOMAIN (a destination, any domain) goes
 *                         to URL instead of DOMAIN's MX
 *   transport list [--json]
 *   transport remove DOMAIN
 *   tls-policy set DOMAIN none|may|encrypt|verify
 *                         the TLS policy toward DOMAIN's MXs (default may)
 *   tls-policy list [--json]
 *   tls-policy remove DOMAIN
 *
 * URL: smtp://, smtp+starttls:// or smtps:// HOST[:PORT] (lib/smtpc/
 * smtpc-url.h), stored normalised. Keys: /mail/v1/secrets/relay/default and
 * /mail/v1/secrets/relay/tenants/<domain> {"url","user","password","at"}
 * (secrets: queue nodes read, only admin writes), /mail/v1/transport/<domain>
 * {"url","at"}.
 */
#include "mailctl-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "etcd.h"
#include "mail-error.h"
#include "smtpc-url.h"
#include "util.h"
#include "xalloc.h"

#define RELAY_KEY_DEFAULT "/mail/v1/secrets/relay/default"
#define RELAY_KEY_TENANTS "/mail/v1/secrets/relay/tenants/"
#define TRANSPORT_KEY_PREFIX "/mail/v1/transport/"
#define TLS_POLICY_KEY_PREFIX "/mail/v1/tls-policy/"

/* The normalised URL of url into buf, or -1 after saying why. */
static int mailctl_url(mailctl *ctl, const char *url, char *buf, size_t size)
{
	struct smtpc_url u;
	const char *why;
	if (smtpc_url_parse(url, &u, &why) < 0) {
		mailctl_fail(ctl, "%s: %s", url, why);
		return -1;
	}
	smtpc_url_format(&u, buf, size);
	return 0;
}

/* "domain" lower-cased into buf when it is a domain, else -1 (said). */
static int mailctl_domain(mailctl *ctl, const char *domain, char *buf, size_t size)
{
	if (!util_domain_valid(domain) || strlen(domain) >= size) {
		mailctl_fail(ctl, "%s is not a domain", domain);
		return -1;
	}
	for (size_t i = 0; domain[i] != '\0'; i++)
		buf[i] = (char)(domain[i] >= 'A' && domain[i] <= 'Z' ? domain[i] + 32 : domain[i]);
	buf[strlen(domain)] = '\0';
	return 0;
}

static int mailctl_put_json(mailctl *ctl, etcd_client *c, const char *key, json_t *v,
			    const char *what, const char *name)
{
	char *text = json_dumps(v, JSON_COMPACT);
	int err = etcd_kv_put(c, key, text, strlen(text), 0);
	size_t len = strlen(text);
	xfree_secret(text, len);   /* may hold a password */
	return err == MAIL_OK ? MAILCTL_OK : mailctl_error(ctl, err, what, name);
}

/* ---- relay ------------------------------------------------------------------ */

static int mailctl_relay_set(mailctl *ctl, etcd_client *c, const char *tenant, const char *url,
			     const char *user)
{
	char norm[SMTPC_URL_HOST_MAX + 32], key[320], dom[256];
	if (mailctl_url(ctl, url, norm, sizeof norm) < 0)
		return MAILCTL_USAGE;
	if (tenant != NULL) {
		if (mailctl_domain(ctl, tenant, dom, sizeof dom) < 0)
			return MAILCTL_USAGE;
		int err = directory_tenant_exists(ctl->dir, dom);
		if (err != MAIL_OK)
			return mailctl_error(ctl, err, "tenant", dom);
		snprintf(key, sizeof key, RELAY_KEY_TENANTS "%s", dom);
	} else {
		snprintf(key, sizeof key, RELAY_KEY_DEFAULT);
	}
	if (user != NULL && (user[0] == '\0' || strlen(user) > 255)) {
		mailctl_fail(ctl, "--user must be 1 to 255 bytes");
		return MAILCTL_USAGE;
	}
	json_t *v = json_pack("{s:s,s:I}", "url", norm, "at", (json_int_t)util_now_wall_ms());
	if (user != NULL) {
		size_t cap = 0;
		char *pw = mailctl_password(ctl, &cap);
		if (pw == NULL) {
			json_decref(v);
			return MAILCTL_USAGE;
		}
		json_object_set_new(v, "user", json_string(user));
		json_object_set_new(v, "password", json_string(pw));
		xfree_secret(pw, cap);
	}
	const char *scope = tenant != NULL ? dom : "every tenant";
	int rc = mailctl_put_json(ctl, c, key, v, "relay", scope);
	json_decref(v);
	if (rc == MAILCTL_OK)
		printf("relay for %s: %s%s%s\n", scope, norm, user != NULL ? " as " : "",
		       user != NULL ? user : "");
	return rc;
}

/* One relay record to stdout (a table row or a JSON array element). */
static void mailctl_relay_row(const char *scope, const char *value, size_t len, json_t *array)
{
	json_t *j = json_loadb(value, len, 0, NULL);
	const char *url = json_string_value(json_object_get(j, "url"));
	const char *user = json_string_value(json_object_get(j, "user"));
	int has_pw = json_string_value(json_object_get(j, "password")) != NULL;
	if (array != NULL) {
		json_array_append_new(array, json_pack("{s:s?,s:s,s:s?,s:b}", "tenant", scope, "url",
						       url != NULL ? url : "?", "user", user,
						       "password_set", has_pw));
	} else {
		printf("%-28s %-44s %-20s %s\n", scope != NULL ? scope : "(every tenant)",
		       url != NULL ? url : "?", user != NULL ? user : "-", has_pw ? "set" : "-");
	}
	json_decref(j);
}

static int mailctl_relay_show(mailctl *ctl, etcd_client *c, int json)
{
	char *value = NULL;
	size_t len = 0;
	int err = etcd_kv_get(c, RELAY_KEY_DEFAULT, &value, &len, NULL, NULL);
	if (err != MAIL_OK && err != MAIL_ERR_NOT_FOUND)
		return mailctl_error(ctl, err, "relay", "show");
	etcd_kv *kvs = NULL;
	size_t n = 0;
	int err2 = etcd_kv_range_prefix(c, RELAY_KEY_TENANTS, 0, &kvs, &n, NULL);
	if (err2 != MAIL_OK) {
		if (value != NULL)
			xfree_secret(value, len);
		return mailctl_error(ctl, err2, "relay", "show");
	}
	json_t *array = json ? json_array() : NULL;
	if (!json)
		printf("%-28s %-44s %-20s %s\n", "SCOPE", "URL", "USER", "PASSWORD");
	if (value != NULL) {
		mailctl_relay_row(NULL, value, len, array);
		xfree_secret(value, len);
	}
	for (size_t k = 0; k < n; k++) {
		mailctl_relay_row(kvs[k].key + strlen(RELAY_KEY_TENANTS), kvs[k].value,
				  kvs[k].value_len, array);
		xfree_secret(kvs[k].value, kvs[k].value_len);
		kvs[k].value = NULL;
	}
	etcd_kvs_free(kvs, n);
	if (json) {
		json_dumpf(array, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(array);
	} else if (value == NULL && n == 0) {
		printf("(none: mail goes to each recipient domain's MX)\n");
	}
	return fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
}

static int mailctl_relay_remove(mailctl *ctl, etcd_client *c, const char *tenant)
{
	char key[320], dom[256];
	if (tenant != NULL) {
		if (mailctl_domain(ctl, tenant, dom, sizeof dom) < 0)
			return MAILCTL_USAGE;
		snprintf(key, sizeof key, RELAY_KEY_TENANTS "%s", dom);
	} else {
		snprintf(key, sizeof key, RELAY_KEY_DEFAULT);
	}
	const char *scope = tenant != NULL ? dom : "every tenant";
	char *value = NULL;
	size_t len = 0;
	int err = etcd_kv_get(c, key, &value, &len, NULL, NULL);
	if (value != NULL)
		xfree_secret(value, len);
	if (err == MAIL_OK)
		err = etcd_kv_delete(c, key);
	if (err != MAIL_OK)
		return mailctl_error(ctl, err, "relay", scope);
	printf("relay for %s removed\n", scope);
	return MAILCTL_OK;
}

static int mailctl_relay_cmd(mailctl *ctl, etcd_client *c, int argc, char **argv)
{
	if (argc == 1 && strcmp(argv[0], "show") == 0)
		return mailctl_relay_show(ctl, c, 0);
	if (argc == 2 && strcmp(argv[0], "show") == 0 && strcmp(argv[1], "--json") == 0)
		return mailctl_relay_show(ctl, c, 1);
	const char *tenant = NULL, *user = NULL, *url = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--tenant") == 0 && i + 1 < argc)
			tenant = argv[++i];
		else if (strcmp(argv[i], "--user") == 0 && i + 1 < argc)
			user = argv[++i];
		else if (argv[i][0] != '-' && url == NULL)
			url = argv[i];
		else
			return -1;
	}
	if (strcmp(argv[0], "set") == 0 && url != NULL)
		return mailctl_relay_set(ctl, c, tenant, url, user);
	if (strcmp(argv[0], "remove") == 0 && url == NULL && user == NULL)
		return mailctl_relay_remove(ctl, c, tenant);
	return -1;
}

/* ---- transport ---------------------------------------------------------------- */

static int mailctl_transport_set(mailctl *ctl, etcd_client *c, const char *domain,
				 const char *url)
{
	char norm[SMTPC_URL_HOST_MAX + 32], key[320], dom[256];
	if (mailctl_domain(ctl, domain, dom, sizeof dom) < 0 ||
	    mailctl_url(ctl, url, norm, sizeof norm) < 0)
		return MAILCTL_USAGE;
	snprintf(key, sizeof key, TRANSPORT_KEY_PREFIX "%s", dom);
	json_t *v = json_pack("{s:s,s:I}", "url", norm, "at", (json_int_t)util_now_wall_ms());
	int rc = mailctl_put_json(ctl, c, key, v, "transport", dom);
	json_decref(v);
	if (rc == MAILCTL_OK)
		printf("transport for %s: %s\n", dom, norm);
	return rc;
}

/* Every record under prefix as "DOMAIN FIELD" lines (or JSON objects
 * {"domain", field}); what = the command, for errors. */
static int mailctl_domain_list(mailctl *ctl, etcd_client *c, const char *prefix,
			       const char *field, const char *what, int json)
{
	etcd_kv *kvs = NULL;
	size_t n = 0;
	int err = etcd_kv_range_prefix(c, prefix, 0, &kvs, &n, NULL);
	if (err != MAIL_OK)
		return mailctl_error(ctl, err, what, "list");
	json_t *array = json ? json_array() : NULL;
	if (!json) {
		char head[32];
		snprintf(head, sizeof head, "%s", field);
		for (char *p = head; *p; p++)
			*p = (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
		printf("%-40s %s\n", "DOMAIN", head);
	}
	for (size_t k = 0; k < n; k++) {
		json_t *j = json_loadb(kvs[k].value, kvs[k].value_len, 0, NULL);
		const char *val = json_string_value(json_object_get(j, field));
		const char *dom = kvs[k].key + strlen(prefix);
		if (json)
			json_array_append_new(array, json_pack("{s:s,s:s}", "domain", dom, field,
							       val != NULL ? val : "?"));
		else
			printf("%-40s %s\n", dom, val != NULL ? val : "?");
		json_decref(j);
	}
	etcd_kvs_free(kvs, n);
	if (json) {
		json_dumpf(array, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(array);
	}
	return fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
}

static int mailctl_transport(mailctl *ctl, etcd_client *c, int argc, char **argv)
{
	if (argc == 1 && strcmp(argv[0], "list") == 0)
		return mailctl_domain_list(ctl, c, TRANSPORT_KEY_PREFIX, "url", "transport", 0);
	if (argc == 2 && strcmp(argv[0], "list") == 0 && strcmp(argv[1], "--json") == 0)
		return mailctl_domain_list(ctl, c, TRANSPORT_KEY_PREFIX, "url", "transport", 1);
	if (argc == 3 && strcmp(argv[0], "set") == 0)
		return mailctl_transport_set(ctl, c, argv[1], argv[2]);
	if (argc == 2 && strcmp(argv[0], "remove") == 0) {
		char dom[256];
		if (mailctl_domain(ctl, argv[1], dom, sizeof dom) < 0)
			return MAILCTL_USAGE;
		return mailctl_remove_key(ctl, c, TRANSPORT_KEY_PREFIX, dom, "transport",
					  "transport for %s removed\n");
	}
	return -1;
}

/* ---- tls-policy ---------------------------------------------------------------- */

static int mailctl_tls_policy(mailctl *ctl, etcd_client *c, int argc, char **argv)
{
	if (argc == 1 && strcmp(argv[0], "list") == 0)
		return mailctl_domain_list(ctl, c, TLS_POLICY_KEY_PREFIX, "policy", "tls-policy", 0);
	if (argc == 2 && strcmp(argv[0], "list") == 0 && strcmp(argv[1], "--json") == 0)
		return mailctl_domain_list(ctl, c, TLS_POLICY_KEY_PREFIX, "policy", "tls-policy", 1);
	char dom[256];
	if (argc == 2 && strcmp(argv[0], "remove") == 0) {
		if (mailctl_domain(ctl, argv[1], dom, sizeof dom) < 0)
			return MAILCTL_USAGE;
		return mailctl_remove_key(ctl, c, TLS_POLICY_KEY_PREFIX, dom, "tls-policy",
					  "TLS policy for %s removed\n");
	}
	if (argc != 3 || strcmp(argv[0], "set") != 0)
		return -1;
	const char *p = argv[2];
	if (strcmp(p, "none") != 0 && strcmp(p, "may") != 0 && strcmp(p, "encrypt") != 0 &&
	    strcmp(p, "verify") != 0) {
		mailctl_fail(ctl, "%s: the policy is none, may, encrypt or verify", p);
		return MAILCTL_USAGE;
	}
	if (mailctl_domain(ctl, argv[1], dom, sizeof dom) < 0)
		return MAILCTL_USAGE;
	char key[320];
	snprintf(key, sizeof key, TLS_POLICY_KEY_PREFIX "%s", dom);
	json_t *v = json_pack("{s:s,s:I}", "policy", p, "at", (json_int_t)util_now_wall_ms());
	int rc = mailctl_put_json(ctl, c, key, v, "tls-policy", dom);
	json_decref(v);
	if (rc == MAILCTL_OK)
		printf("TLS policy for %s: %s\n", dom, p);
	return rc;
}

int mailctl_outbound(mailctl *ctl, int argc, char **argv)
{
	if (argc < 2)
		return -1;
	etcd_client *c = etcd_client_create(&ctl->etcd);
	int rc = strcmp(argv[0], "relay") == 0 ? mailctl_relay_cmd(ctl, c, argc - 1, argv + 1)
		 : strcmp(argv[0], "tls-policy") == 0
			 ? mailctl_tls_policy(ctl, c, argc - 1, argv + 1)
			 : mailctl_transport(ctl, c, argc - 1, argv + 1);
	etcd_client_destroy(&c);
	return rc;
}
