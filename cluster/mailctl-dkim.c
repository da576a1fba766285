/* mailctl-dkim.c: `mailctl dkim ...`, the tenants' DKIM keys
 * (docs/outbound-dkim.md; lib/dkim/dkim-keys.h for the records).
 *
 *   dkim generate DOMAIN [--selector S] [--algorithm A]
 *                  a new key; prints its TXT record. Active when the domain
 *                  has no active key of that algorithm, else stored inactive
 *                  (publish the record first, then `activate`)
 *   dkim list [DOMAIN] [--json]   domain, selector, algorithm, created, active
 *   dkim rotate DOMAIN [--algorithm A]
 *                  a new key under a new selector, active at once; the old
 *                  one stays (inactive, still published) until removed.
 *                  Without --algorithm: every algorithm with an active key
 *   dkim activate DOMAIN SELECTOR  make S the active key of its algorithm
 *   dkim txt DOMAIN [SELECTOR]     the TXT records to publish
 *   dkim remove DOMAIN SELECTOR
 *
 * A is rsa-sha256 (default; RSA 2048) or ed25519-sha256. The default
 * selector is the UTC date, "s20261202", with "-2", "-3"... when taken.
 * Only tenant domains (the directory's) get keys. stdout carries zone-file
 * lines (records, and ";" comments) and the list; errors are one line on
 * stderr.
 *
 * Switching the active key writes the new active record first and then
 * clears the old one's flag (compare-and-swap on its revision): a reader
 * in between sees two active keys and takes the one activated last, so no
 * message goes out unsigned or signed with the key being retired.
 */
#include "mailctl-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "buf.h"
#include "dkim-keys.h"
#include "etcd.h"
#include "mail-error.h"
#include "util.h"
#include "xalloc.h"

/* compare-and-swap attempts on one record before giving up */
#define MAILCTL_DKIM_CAS_TRIES 8
/* "-2" ... "-99" after a dated default selector */
#define MAILCTL_DKIM_SUFFIX_MAX 99

/* One stored key of a domain, as loaded. */
typedef struct mailctl_dkim_entry {
	char domain[DKIM_DOMAIN_MAX + 1];
	char selector[DKIM_SELECTOR_MAX + 1];
	char *key;          /* the etcd key */
	int64_t mod;        /* its mod_revision */
	int ok;             /* the record parsed */
	struct dkim_record r; /* when ok (owns the PEM) */
} mailctl_dkim_entry;

typedef struct mailctl_dkim_set {
	mailctl_dkim_entry *e;
	size_t n;
} mailctl_dkim_set;

static void mailctl_dkim_set_free(mailctl_dkim_set *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->e[i].key);
		dkim_record_clear(&s->e[i].r);
	}
	free(s->e);
	memset(s, 0, sizeof *s);
}

/* Every key under prefix (one domain's, or all). */
static int mailctl_dkim_load(etcd_client *c, const char *prefix, mailctl_dkim_set *s)
{
	etcd_kv *kvs = NULL;
	size_t n = 0;
	memset(s, 0, sizeof *s);
	int err = etcd_kv_range_prefix(c, prefix, 0, &kvs, &n, NULL);
	if (err != MAIL_OK)
		return err;
	s->e = xcalloc(n + 1, sizeof *s->e);
	for (size_t i = 0; i < n; i++) {
		mailctl_dkim_entry *e = &s->e[s->n];
		const char *why;
		if (dkim_store_key_parse(kvs[i].key, e->domain, e->selector) < 0)
			continue;
		e->key = xstrdup(kvs[i].key);
		e->mod = kvs[i].mod_revision;
		e->ok = dkim_record_parse(kvs[i].value, kvs[i].value_len, &e->r, &why) == MAIL_OK;
		s->n++;
		/* etcd's copy of the record: wiped before it is freed */
		dkim_secret_free(kvs[i].value, kvs[i].value_len);
		kvs[i].value = NULL;
	}
	etcd_kvs_free(kvs, n);
	return MAIL_OK;
}

static const mailctl_dkim_entry *mailctl_dkim_find(const mailctl_dkim_set *s,
						   const char *selector)
{
	for (size_t i = 0; i < s->n; i++) {
		if (strcmp(s->e[i].selector, selector) == 0)
			return &s->e[i];
	}
	return NULL;
}

/* Lowercase domain in place and check it is a tenant. An exit code after
 * printing why, or MAILCTL_OK. */
static int mailctl_dkim_tenant(mailctl *ctl, char *domain)
{
	dkim_name_lower(domain);
	if (!util_domain_valid(domain)) {
		mailctl_fail(ctl, "%s is not a domain", domain);
		return MAILCTL_USAGE;
	}
	int err = directory_tenant_exists(ctl->dir, domain);
	if (err == MAIL_ERR_NOT_FOUND) {
		mailctl_fail(ctl, "tenant %s: not found (DKIM keys are for hosted domains; "
			     "mailctl tenant add %s)", domain, domain);
		return MAILCTL_NOT_FOUND;
	}
	return mailctl_error(ctl, err, "tenant", domain);
}

static void mailctl_dkim_iso(int64_t ms, char *out, size_t size)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	if (ms <= 0 || gmtime_r(&t, &tm) == NULL)
		snprintf(out, size, "-");
	else
		strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The default selector: "sYYYYMMDD", then "-2", "-3"... until one is
 * free in s and not in taken (a selector this run already used). */
static int mailctl_dkim_default_selector(const mailctl_dkim_set *s, const char *taken,
					 char *out, size_t size)
{
	time_t t = (time_t)(util_now_wall_ms() / 1000);
	struct tm tm;
	char day[16];
	gmtime_r(&t, &tm);
	strftime(day, sizeof day, "s%Y%m%d", &tm);
	for (int k = 1; k <= MAILCTL_DKIM_SUFFIX_MAX; k++) {
		if (k == 1)
			snprintf(out, size, "%s", day);
		else
			snprintf(out, size, "%s-%d", day, k);
		if (mailctl_dkim_find(s, out) == NULL && (taken == NULL || strcmp(taken, out) != 0))
			return 0;
	}
	return -1;
}

/* Read key, set "active" (and "activated" = now when turning it on), and
 * write it back with a compare-and-swap on its revision, again when
 * another writer got in between. *alg_r (may be NULL) gets its algorithm.
 * MAIL_ERR_NOT_FOUND when the key is gone, MAIL_ERR_PARAMS when its record
 * does not parse. */
static int mailctl_dkim_set_active(etcd_client *c, const char *key, int active,
				   enum dkim_alg *alg_r)
{
	for (int attempt = 0; attempt < MAILCTL_DKIM_CAS_TRIES; attempt++) {
		char *value = NULL;
		size_t len = 0;
		int64_t mod = 0;
		int err = etcd_kv_get(c, key, &value, &len, &mod, NULL);
		if (err != MAIL_OK)
			return err;
		struct dkim_record r;
		const char *why;
		err = dkim_record_parse(value, len, &r, &why);
		dkim_secret_free(value, len);
		if (err != MAIL_OK)
			return err;
		if (alg_r != NULL)
			*alg_r = r.alg;
		if (r.active == active) {
			dkim_record_clear(&r);
			return MAIL_OK;
		}
		r.active = active;
		if (active)
			r.activated = util_now_wall_ms();
		char *json = dkim_record_format(&r, &len);
		dkim_record_clear(&r);
		err = etcd_kv_put_if_mod(c, key, json, len, mod, NULL);
		dkim_secret_free(json, len);
		if (err != MAIL_ERR_EXISTS)
			return err;
	}
	return MAIL_ERR_TEMP;
}

/* Clear "active" on every record of alg in domain but keep_selector; the
 * selectors cleared go to cleared (", "-separated). */
static int mailctl_dkim_deactivate_others(etcd_client *c, const char *domain, enum dkim_alg alg,
					  const char *keep_selector, buf *cleared)
{
	char *prefix = dkim_store_domain_prefix(domain);
	mailctl_dkim_set s;
	int err = mailctl_dkim_load(c, prefix, &s);
	free(prefix);
	for (size_t i = 0; err == MAIL_OK && i < s.n; i++) {
		const mailctl_dkim_entry *e = &s.e[i];
		if (!e->ok || e->r.alg != alg || !e->r.active ||
		    strcmp(e->selector, keep_selector) == 0)
			continue;
		err = mailctl_dkim_set_active(c, e->key, 0, NULL);
		if (err == MAIL_ERR_NOT_FOUND)
			err = MAIL_OK; /* removed meanwhile: nothing to clear */
		else if (err == MAIL_OK)
			buf_printf(cleared, "%s%s", cleared->len > 0 ? ", " : "", e->selector);
	}
	mailctl_dkim_set_free(&s);
	return err;
}

/* Print the TXT line publishing public_b64 (alg) for selector, domain. */
static void mailctl_dkim_print_txt(const char *domain, const char *selector, enum dkim_alg alg,
				   const char *public_b64)
{
	char *value = dkim_txt_value(alg, public_b64);
	char *line = dkim_txt_record(selector, domain, value);
	puts(line);
	free(line);
	free(value);
}

/* Make and store one key under selector (which must be free: the create
 * is refused otherwise). active: store it active, then clear the others of
 * its algorithm (their selectors into cleared). Prints the TXT line. */
static int mailctl_dkim_make(mailctl *ctl, etcd_client *c, const char *domain,
			     const char *selector, enum dkim_alg alg, int active, buf *cleared)
{
	char *pem, *pub;
	size_t pem_len;
	const char *why;
	int err = dkim_key_generate(alg, DKIM_RSA_BITS_DEFAULT, &pem, &pem_len, &pub, &why);
	if (err != MAIL_OK) {
		mailctl_fail(ctl, "dkim %s: %s", domain, why);
		return MAILCTL_OTHER;
	}
	int64_t now = util_now_wall_ms();
	struct dkim_record r = { .alg = alg, .pem = pem, .pem_len = pem_len, .created = now,
				 .active = active, .activated = active ? now : 0 };
	size_t len;
	char *json = dkim_record_format(&r, &len);
	dkim_secret_free(pem, pem_len);
	char *key = dkim_store_key(domain, selector);
	err = etcd_kv_create(c, key, json, len, 0);
	dkim_secret_free(json, len);
	free(key);
	if (err == MAIL_OK && active)
		err = mailctl_dkim_deactivate_others(c, domain, alg, selector, cleared);
	if (err == MAIL_ERR_EXISTS) {
		mailctl_fail(ctl, "dkim %s: selector %s already exists", domain, selector);
		free(pub);
		return MAILCTL_EXISTS;
	}
	if (err != MAIL_OK) {
		free(pub);
		return mailctl_error(ctl, err, "dkim", domain);
	}
	mailctl_dkim_print_txt(domain, selector, alg, pub);
	free(pub);
	return MAILCTL_OK;
}

static int mailctl_dkim_has_active(const mailctl_dkim_set *s, enum dkim_alg alg)
{
	for (size_t i = 0; i < s->n; i++) {
		if (s->e[i].ok && s->e[i].r.alg == alg && s->e[i].r.active)
			return 1;
	}
	return 0;
}

/* ---- commands --------------------------------------------------------------- */

static int mailctl_dkim_generate(mailctl *ctl, etcd_client *c, char *domain, char *selector,
				 enum dkim_alg alg)
{
	int rc = mailctl_dkim_tenant(ctl, domain);
	if (rc != MAILCTL_OK)
		return rc;
	char sel[DKIM_SELECTOR_MAX + 1];
	char *prefix = dkim_store_domain_prefix(domain);
	mailctl_dkim_set s;
	int err = mailctl_dkim_load(c, prefix, &s);
	free(prefix);
	if (err != MAIL_OK)
		return mailctl_error(ctl, err, "dkim", domain);
	if (selector != NULL) {
		snprintf(sel, sizeof sel, "%s", dkim_name_lower(selector));
		if (mailctl_dkim_find(&s, sel) != NULL) {
			mailctl_dkim_set_free(&s);
			mailctl_fail(ctl, "dkim %s: selector %s already exists", domain, sel);
			return MAILCTL_EXISTS;
		}
	} else if (mailctl_dkim_default_selector(&s, NULL, sel, sizeof sel) < 0) {
		mailctl_dkim_set_free(&s);
		mailctl_fail(ctl, "dkim %s: every dated selector of today is taken (--selector)",
			     domain);
		return MAILCTL_EXISTS;
	}
	int active = !mailctl_dkim_has_active(&s, alg);
	mailctl_dkim_set_free(&s);
	buf cleared;
	buf_init(&cleared);
	rc = mailctl_dkim_make(ctl, c, domain, sel, alg, active, &cleared);
	buf_deinit(&cleared);
	if (rc == MAILCTL_OK && active)
		printf("; %s: %s key %s is active: mail from %s is signed with it now\n", domain,
		       dkim_alg_name(alg), sel, domain);
	else if (rc == MAILCTL_OK)
		printf("; %s: %s key %s is stored inactive (the domain has an active one): "
		       "publish the record, then mailctl dkim activate %s %s\n", domain,
		       dkim_alg_name(alg), sel, domain, sel);
	return rc == MAILCTL_OK && fflush(stdout) != 0 ? MAILCTL_OTHER : rc;
}

static int mailctl_dkim_rotate(mailctl *ctl, etcd_client *c, char *domain, int alg)
{
	int rc = mailctl_dkim_tenant(ctl, domain);
	if (rc != MAILCTL_OK)
		return rc;
	char *prefix = dkim_store_domain_prefix(domain);
	mailctl_dkim_set s;
	int err = mailctl_dkim_load(c, prefix, &s);
	free(prefix);
	if (err != MAIL_OK)
		return mailctl_error(ctl, err, "dkim", domain);
	int which[DKIM_ALG_COUNT_] = { 0 }, any = 0;
	for (int a = 0; a < DKIM_ALG_COUNT_; a++) {
		which[a] = alg >= 0 ? a == alg : mailctl_dkim_has_active(&s, (enum dkim_alg)a);
		any |= which[a];
	}
	if (!any) {
		mailctl_dkim_set_free(&s);
		mailctl_fail(ctl, "dkim %s: no active key to rotate (mailctl dkim generate %s)",
			     domain, domain);
		return MAILCTL_NOT_FOUND;
	}
	char prev[DKIM_SELECTOR_MAX + 1] = "";
	for (int a = 0; a < DKIM_ALG_COUNT_ && rc == MAILCTL_OK; a++) {
		if (!which[a])
			continue;
		char sel[DKIM_SELECTOR_MAX + 1];
		if (mailctl_dkim_default_selector(&s, prev[0] != '\0' ? prev : NULL, sel,
						  sizeof sel) < 0) {
			mailctl_fail(ctl, "dkim %s: every dated selector of today is taken", domain);
			rc = MAILCTL_EXISTS;
			break;
		}
		buf cleared;
		buf_init(&cleared);
		rc = mailctl_dkim_make(ctl, c, domain, sel, (enum dkim_alg)a, 1, &cleared);
		if (rc == MAILCTL_OK) {
			buf_append(&cleared, "", 1);
			printf("; %s: %s key %s is active; %s%s\n", domain,
			       dkim_alg_name((enum dkim_alg)a), sel,
			       cleared.len > 1 ? (const char *)cleared.data : "no key",
			       cleared.len > 1 ? " stays published but inactive: remove it once "
						 "mail signed with it is delivered (7 days)"
					       : " was active before");
		}
		buf_deinit(&cleared);
		memcpy(prev, sel, sizeof prev);
	}
	mailctl_dkim_set_free(&s);
	return rc == MAILCTL_OK && fflush(stdout) != 0 ? MAILCTL_OTHER : rc;
}

static int mailctl_dkim_activate(mailctl *ctl, etcd_client *c, char *domain, char *selector)
{
	int rc = mailctl_dkim_tenant(ctl, domain);
	if (rc != MAILCTL_OK)
		return rc;
	dkim_name_lower(selector);
	char *key = dkim_store_key(domain, selector);
	enum dkim_alg alg = DKIM_ALG_RSA_SHA256;
	int err = dkim_selector_valid(selector) ? mailctl_dkim_set_active(c, key, 1, &alg)
						: MAIL_ERR_NOT_FOUND;
	free(key);
	buf cleared;
	buf_init(&cleared);
	if (err == MAIL_OK)
		err = mailctl_dkim_deactivate_others(c, domain, alg, selector, &cleared);
	if (err == MAIL_ERR_NOT_FOUND) {
		mailctl_fail(ctl, "dkim %s: selector %s not found", domain, selector);
		rc = MAILCTL_NOT_FOUND;
	} else if (err == MAIL_ERR_PARAMS) {
		mailctl_fail(ctl, "dkim %s: the record of selector %s is malformed", domain,
			     selector);
		rc = MAILCTL_OTHER;
	} else if (err != MAIL_OK) {
		rc = mailctl_error(ctl, err, "dkim", domain);
	} else {
		buf_append(&cleared, "", 1);
		printf("dkim %s: %s key %s is active%s%s\n", domain, dkim_alg_name(alg), selector,
		       cleared.len > 1 ? "; inactive now: " : "",
		       cleared.len > 1 ? (const char *)cleared.data : "");
	}
	buf_deinit(&cleared);
	return rc;
}

static int mailctl_dkim_remove(mailctl *ctl, etcd_client *c, char *domain, char *selector)
{
	dkim_name_lower(domain);
	dkim_name_lower(selector);
	if (!util_domain_valid(domain) || !dkim_selector_valid(selector)) {
		mailctl_fail(ctl, "dkim %s: selector %s not found", domain, selector);
		return MAILCTL_NOT_FOUND;
	}
	char *key = dkim_store_key(domain, selector);
	char *value = NULL;
	size_t len = 0;
	int err = etcd_kv_get(c, key, &value, &len, NULL, NULL);
	struct dkim_record r = { 0 };
	const char *why;
	int parsed = err == MAIL_OK && dkim_record_parse(value, len, &r, &why) == MAIL_OK;
	dkim_secret_free(value, len);
	if (err == MAIL_OK)
		err = etcd_kv_delete(c, key);
	free(key);
	int rc = MAILCTL_OK;
	if (err == MAIL_ERR_NOT_FOUND) {
		mailctl_fail(ctl, "dkim %s: selector %s not found", domain, selector);
		rc = MAILCTL_NOT_FOUND;
	} else if (err != MAIL_OK) {
		rc = mailctl_error(ctl, err, "dkim", domain);
	} else if (parsed && r.active) {
		printf("dkim %s: selector %s removed; it was the active %s key: mail from %s is "
		       "no longer signed with %s (delete %s._domainkey.%s once mail signed with "
		       "it is delivered)\n", domain, selector, dkim_alg_name(r.alg), domain,
		       dkim_alg_name(r.alg), selector, domain);
	} else {
		printf("dkim %s: selector %s removed (delete the TXT record %s._domainkey.%s)\n",
		       domain, selector, selector, domain);
	}
	dkim_record_clear(&r);
	return rc;
}

static int mailctl_dkim_list(mailctl *ctl, etcd_client *c, char *domain, int json)
{
	if (domain != NULL) {
		int rc = mailctl_dkim_tenant(ctl, domain);
		if (rc != MAILCTL_OK)
			return rc;
	}
	char *prefix = domain != NULL ? dkim_store_domain_prefix(domain) : xstrdup(DKIM_STORE_PREFIX);
	mailctl_dkim_set s;
	int err = mailctl_dkim_load(c, prefix, &s);
	free(prefix);
	if (err != MAIL_OK)
		return mailctl_error(ctl, err, "dkim", domain != NULL ? domain : "list");
	json_t *arr = json ? json_array() : NULL;
	if (!json)
		printf("%-32s %-24s %-15s %-21s %s\n", "DOMAIN", "SELECTOR", "ALGORITHM", "CREATED",
		       "ACTIVE");
	for (size_t i = 0; i < s.n; i++) {
		const mailctl_dkim_entry *e = &s.e[i];
		const char *alg = e->ok ? dkim_alg_name(e->r.alg) : "(malformed)";
		if (json) {
			json_array_append_new(
				arr, json_pack("{s:s,s:s,s:s,s:I,s:b}", "domain", e->domain,
					       "selector", e->selector, "algorithm", alg, "created",
					       (json_int_t)e->r.created, "active",
					       e->ok && e->r.active));
			continue;
		}
		char created[32];
		mailctl_dkim_iso(e->r.created, created, sizeof created);
		printf("%-32s %-24s %-15s %-21s %s\n", e->domain, e->selector, alg, created,
		       !e->ok ? "-" : e->r.active ? "yes" : "no");
	}
	mailctl_dkim_set_free(&s);
	if (json) {
		char *text = json_dumps(arr, JSON_COMPACT);
		puts(text);
		free(text);
		json_decref(arr);
	}
	return fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
}

static int mailctl_dkim_txt(mailctl *ctl, etcd_client *c, char *domain, char *selector)
{
	int rc = mailctl_dkim_tenant(ctl, domain);
	if (rc != MAILCTL_OK)
		return rc;
	if (selector != NULL)
		dkim_name_lower(selector);
	char *prefix = dkim_store_domain_prefix(domain);
	mailctl_dkim_set s;
	int err = mailctl_dkim_load(c, prefix, &s);
	free(prefix);
	if (err != MAIL_OK)
		return mailctl_error(ctl, err, "dkim", domain);
	size_t shown = 0;
	for (size_t i = 0; i < s.n && rc == MAILCTL_OK; i++) {
		const mailctl_dkim_entry *e = &s.e[i];
		char *pub;
		const char *why;
		if (selector != NULL && strcmp(e->selector, selector) != 0)
			continue;
		if (!e->ok ||
		    dkim_key_public(e->r.alg, e->r.pem, e->r.pem_len, &pub, &why) != MAIL_OK) {
			mailctl_fail(ctl, "dkim %s: the record of selector %s is malformed", domain,
				     e->selector);
			rc = MAILCTL_OTHER;
			break;
		}
		mailctl_dkim_print_txt(domain, e->selector, e->r.alg, pub);
		free(pub);
		shown++;
	}
	mailctl_dkim_set_free(&s);
	if (rc == MAILCTL_OK && selector != NULL && shown == 0) {
		mailctl_fail(ctl, "dkim %s: selector %s not found", domain, selector);
		return MAILCTL_NOT_FOUND;
	}
	return rc == MAILCTL_OK && fflush(stdout) != 0 ? MAILCTL_OTHER : rc;
}

/* ---- arguments -------------------------------------------------------------- */

typedef struct mailctl_dkim_args {
	char *pos[2];   /* positional arguments after the command */
	int n_pos;
	char *selector; /* --selector */
	int alg;        /* --algorithm, -1: not given */
	int json;       /* --json */
} mailctl_dkim_args;

/* -1 usage error (printed by the caller), else MAILCTL_OK or an exit code
 * after one line. */
static int mailctl_dkim_parse(mailctl *ctl, int argc, char **argv, mailctl_dkim_args *a)
{
	memset(a, 0, sizeof *a);
	a->alg = -1;
	for (int i = 0; i < argc; i++) {
		const char *s = argv[i];
		if (strcmp(s, "--json") == 0) {
			a->json = 1;
		} else if (strcmp(s, "--selector") == 0 || strcmp(s, "--algorithm") == 0) {
			if (i + 1 >= argc)
				return -1;
			char *v = argv[++i];
			if (s[2] == 's') {
				a->selector = dkim_name_lower(v);
				if (!dkim_selector_valid(v)) {
					mailctl_fail(ctl, "%s is not a selector (DNS labels of a-z, "
						     "0-9, '-'; at most %u bytes)", v,
						     DKIM_SELECTOR_MAX);
					return MAILCTL_USAGE;
				}
			} else if ((a->alg = dkim_alg_parse(v)) < 0) {
				mailctl_fail(ctl, "unknown algorithm %s (rsa-sha256 or "
					     "ed25519-sha256)", v);
				return MAILCTL_USAGE;
			}
		} else if (s[0] == '-' || a->n_pos == 2) {
			return -1;
		} else {
			a->pos[a->n_pos++] = argv[i];
		}
	}
	return MAILCTL_OK;
}

int mailctl_dkim(mailctl *ctl, int argc, char **argv)
{
	/* argv[0] is "dkim" */
	if (argc < 2)
		return -1;
	const char *cmd = argv[1];
	mailctl_dkim_args a;
	int rc = mailctl_dkim_parse(ctl, argc - 2, argv + 2, &a);
	if (rc != MAILCTL_OK)
		return rc;
	/* which options and how many arguments each command takes */
	int sel_ok = 0, alg_ok = 0, json_ok = 0, min = 1, max = 1;
	if (strcmp(cmd, "generate") == 0)
		sel_ok = alg_ok = 1;
	else if (strcmp(cmd, "rotate") == 0)
		alg_ok = 1;
	else if (strcmp(cmd, "list") == 0)
		json_ok = 1, min = 0;
	else if (strcmp(cmd, "txt") == 0)
		max = 2;
	else if (strcmp(cmd, "activate") == 0 || strcmp(cmd, "remove") == 0)
		min = max = 2;
	else
		return -1;
	if (a.n_pos < min || a.n_pos > max || (a.selector && !sel_ok) ||
	    (a.alg >= 0 && !alg_ok) || (a.json && !json_ok))
		return -1;

	etcd_client *c = etcd_client_create(&ctl->etcd);
	if (strcmp(cmd, "generate") == 0)
		rc = mailctl_dkim_generate(ctl, c, a.pos[0], a.selector,
					   a.alg >= 0 ? (enum dkim_alg)a.alg : DKIM_ALG_RSA_SHA256);
	else if (strcmp(cmd, "rotate") == 0)
		rc = mailctl_dkim_rotate(ctl, c, a.pos[0], a.alg);
	else if (strcmp(cmd, "list") == 0)
		rc = mailctl_dkim_list(ctl, c, a.pos[0], a.json);
	else if (strcmp(cmd, "txt") == 0)
		rc = mailctl_dkim_txt(ctl, c, a.pos[0], a.pos[1]);
	else if (strcmp(cmd, "activate") == 0)
		rc = mailctl_dkim_activate(ctl, c, a.pos[0], a.pos[1]);
	else
		rc = mailctl_dkim_remove(ctl, c, a.pos[0], a.pos[1]);
	etcd_client_destroy(&c);
	return rc;
}
