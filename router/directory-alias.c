/* directory-alias.c: the addresses a tenant receives on (directory.h):
 * aliases and lists, catch-alls, domain aliases, and the resolution of a
 * recipient to where its mail goes.
 *
 * Resolution order for local@domain (docs/inbound.md):
 *   1. domain: a tenant, or a domain alias of one (then the tenant's);
 *   2. the user local@tenant;
 *   3. the alias local@tenant (an alias never hides a user: a user is
 *      what the tenant made on purpose, and the user lookup is the common
 *      case, one read);
 *   4. local = base+tag: steps 2 and 3 for base, the route's folder tag;
 *   5. local = postmaster: the tenant's postmaster= address, else its
 *      first user (RFC 5321 4.5.1: postmaster must be accepted);
 *   6. the catch-all @tenant.
 * Alias targets are resolved again the same way (a local target that
 * resolves to nothing is dropped with a log line, so one stale member does
 * not refuse mail to a whole list); outside targets are routes as they are.
 */
#include "directory-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "log.h"
#include "mail-error.h"
#include "util.h"
#include "xalloc.h"

/* ---- alias names and records -------------------------------------------- */

/* An alias as given ("local@domain" or "@domain") into its normalised
 * domain (*domain_r) and local part (*local_r, "@" for the catch-all). 0,
 * or -1 when it is neither. */
static int alias_split(const char *alias, char **domain_r, char **local_r)
{
	if (alias[0] == '@') {
		*domain_r = directory__domain(alias + 1);
		*local_r = xstrdup("@");
		if (*domain_r != NULL)
			return 0;
		free(*local_r);
		return -1;
	}
	char *a = util_address_normalize(alias, strlen(alias));
	if (a == NULL)
		return -1;
	const char *d = util_address_domain(a);
	*domain_r = xstrdup(d);
	*local_r = xstrndup(a, (size_t)(d - 1 - a));
	free(a);
	return 0;
}

static char *alias_key(const char *domain, const char *local)
{
	return xasprintf(DIRECTORY_KEY_ALIASES "%s/%s", domain, local);
}

/* The targets of an alias record into a new JSON array (NULL when the
 * record is not {"targets":[strings]}). */
static json_t *alias_targets_parse(const char *value, size_t len)
{
	json_t *j = json_loadb(value, len, 0, NULL);
	json_t *t = json_object_get(j, "targets");
	json_t *out = NULL;
	if (json_is_array(t)) {
		out = json_array();
		size_t i;
		json_t *v;
		json_array_foreach(t, i, v)
		{
			if (json_is_string(v))
				json_array_append(out, v);
		}
	}
	json_decref(j);
	return out;
}

static int array_has(json_t *a, const char *s)
{
	size_t i;
	json_t *v;
	json_array_foreach(a, i, v)
	{
		if (strcmp(json_string_value(v), s) == 0)
			return 1;
	}
	return 0;
}

int directory_alias_add(directory *dir, const char *alias, const char *const *targets,
			size_t n)
{
	if (n == 0 || n > DIRECTORY_ALIAS_TARGETS_MAX)
		return MAIL_ERR_PARAMS;
	char *domain, *local;
	if (alias_split(alias, &domain, &local) < 0)
		return MAIL_ERR_PARAMS;
	json_t *add = json_array();
	int err = MAIL_OK;
	for (size_t i = 0; i < n && err == MAIL_OK; i++) {
		char *t = util_address_normalize(targets[i], strlen(targets[i]));
		if (t == NULL || strlen(t) > DIRECTORY_ADDRESS_MAX)
			err = MAIL_ERR_PARAMS;
		else if (!array_has(add, t))
			json_array_append_new(add, json_string(t));
		free(t);
	}
	char *tkey = xasprintf(DIRECTORY_KEY_TENANTS "%s", domain);
	if (err == MAIL_OK)
		err = directory__exists(dir, tkey);
	char *key = alias_key(domain, local);
	for (int attempt = 0; err == MAIL_OK && attempt < DIRECTORY_CAS_ATTEMPTS; attempt++) {
		char *old = NULL;
		size_t len = 0;
		int64_t mod = 0;
		err = directory__get(dir, key, &old, &len, &mod);
		json_t *cur = err == MAIL_OK ? alias_targets_parse(old, len) : NULL;
		free(old);
		if (err == MAIL_ERR_NOT_FOUND) {
			err = MAIL_OK;
			mod = 0;
		}
		if (err != MAIL_OK)
			break;
		if (cur == NULL)
			cur = json_array(); /* a bad record is replaced */
		size_t i;
		json_t *v;
		json_array_foreach(add, i, v)
		{
			if (!array_has(cur, json_string_value(v)))
				json_array_append(cur, v);
		}
		if (json_array_size(cur) > DIRECTORY_ALIAS_TARGETS_MAX) {
			json_decref(cur);
			err = MAIL_ERR_PARAMS;
			break;
		}
		json_t *rec = json_pack("{s:o}", "targets", cur);
		char *value = json_dumps(rec, JSON_COMPACT);
		json_decref(rec);
		pthread_mutex_lock(&dir->mu);
		err = etcd_kv_put_if_mod(dir->etcd, key, value, strlen(value), mod, NULL);
		pthread_mutex_unlock(&dir->mu);
		free(value);
		if (err != MAIL_ERR_EXISTS)
			break;
		err = MAIL_ERR_TEMP;
	}
	if (err == MAIL_OK)
		log_event(LOG_INFO, "directory", "event=alias_added alias=%s@%s targets=%zu",
			  strcmp(local, "@") == 0 ? "" : local, domain, json_array_size(add));
	json_decref(add);
	free(key);
	free(tkey);
	free(domain);
	free(local);
	return err;
}

int directory_alias_del(directory *dir, const char *alias, const char *target)
{
	char *domain, *local;
	if (alias_split(alias, &domain, &local) < 0)
		return MAIL_ERR_PARAMS;
	char *key = alias_key(domain, local);
	char *t = target != NULL ? util_address_normalize(target, strlen(target)) : NULL;
	int err = MAIL_OK;
	if (target != NULL && t == NULL)
		err = MAIL_ERR_PARAMS;
	for (int attempt = 0; err == MAIL_OK && attempt < DIRECTORY_CAS_ATTEMPTS; attempt++) {
		if (t == NULL) {
			pthread_mutex_lock(&dir->mu);
			err = etcd_kv_delete(dir->etcd, key);
			pthread_mutex_unlock(&dir->mu);
			break;
		}
		char *old = NULL;
		size_t len = 0;
		int64_t mod = 0;
		err = directory__get(dir, key, &old, &len, &mod);
		json_t *cur = err == MAIL_OK ? alias_targets_parse(old, len) : NULL;
		free(old);
		if (err != MAIL_OK)
			break;
		json_t *keep = json_array();
		int found = 0;
		size_t i;
		json_t *v;
		json_array_foreach(cur, i, v)
		{
			if (strcmp(json_string_value(v), t) == 0)
				found = 1;
			else
				json_array_append(keep, v);
		}
		json_decref(cur);
		if (!found) {
			json_decref(keep);
			err = MAIL_ERR_NOT_FOUND;
			break;
		}
		pthread_mutex_lock(&dir->mu);
		if (json_array_size(keep) == 0) {
			/* the last target: the alias goes (a change between our
			 * read and this delete is lost; mailctl is the only writer) */
			err = etcd_kv_delete(dir->etcd, key);
		} else {
			json_t *rec = json_pack("{s:O}", "targets", keep);
			char *value = json_dumps(rec, JSON_COMPACT);
			json_decref(rec);
			err = etcd_kv_put_if_mod(dir->etcd, key, value, strlen(value), mod, NULL);
			free(value);
		}
		pthread_mutex_unlock(&dir->mu);
		json_decref(keep);
		if (err != MAIL_ERR_EXISTS)
			break;
		err = MAIL_ERR_TEMP;
	}
	if (err == MAIL_OK)
		log_event(LOG_INFO, "directory", "event=alias_removed alias=%s@%s target=%s",
			  strcmp(local, "@") == 0 ? "" : local, domain, t != NULL ? t : "*");
	free(t);
	free(key);
	free(domain);
	free(local);
	return err;
}

int directory_alias_list(directory *dir, const char *domain, struct directory_alias **aliases_r,
			 size_t *n_r)
{
	*aliases_r = NULL;
	*n_r = 0;
	char *d = directory__domain(domain);
	if (d == NULL)
		return MAIL_ERR_NOT_FOUND;
	char *tkey = xasprintf(DIRECTORY_KEY_TENANTS "%s", d);
	int err = directory__exists(dir, tkey);
	free(tkey);
	char *prefix = xasprintf(DIRECTORY_KEY_ALIASES "%s/", d);
	etcd_kv *kvs = NULL;
	size_t n = 0;
	if (err == MAIL_OK) {
		pthread_mutex_lock(&dir->mu);
		err = etcd_kv_range_prefix(dir->etcd, prefix, 0, &kvs, &n, NULL);
		pthread_mutex_unlock(&dir->mu);
	}
	if (err == MAIL_OK) {
		/* sorted by key: "@" (0x40) sorts before letters, digits do
		 * not; the catch-all is put first by hand */
		struct directory_alias *a = xcalloc(n + 1, sizeof *a);
		size_t plen = strlen(prefix), k = 0;
		for (int pass = 0; pass < 2; pass++) {
			for (size_t i = 0; i < n; i++) {
				const char *local = kvs[i].key + plen;
				int catch_all = strcmp(local, "@") == 0;
				if (catch_all != (pass == 0))
					continue;
				json_t *t = alias_targets_parse(kvs[i].value, kvs[i].value_len);
				a[k].alias = catch_all ? xasprintf("@%s", d)
						       : xasprintf("%s@%s", local, d);
				a[k].n_targets = json_array_size(t);
				a[k].targets = xcalloc(a[k].n_targets + 1, sizeof *a[k].targets);
				for (size_t m = 0; m < a[k].n_targets; m++)
					a[k].targets[m] =
						xstrdup(json_string_value(json_array_get(t, m)));
				json_decref(t);
				k++;
			}
		}
		*aliases_r = a;
		*n_r = k;
	}
	etcd_kvs_free(kvs, n);
	free(prefix);
	free(d);
	return err;
}

void directory_aliases_free(struct directory_alias *aliases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (size_t m = 0; m < aliases[i].n_targets; m++)
			free(aliases[i].targets[m]);
		free(aliases[i].targets);
		free(aliases[i].alias);
	}
	free(aliases);
}

/* ---- domain aliases --------------------------------------------------------- */

int directory_domain_alias_add(directory *dir, const char *alias_domain,
			       const char *target_domain)
{
	char *a = directory__domain(alias_domain), *t = directory__domain(target_domain);
	int err = a != NULL && t != NULL && strcmp(a, t) != 0 ? MAIL_OK : MAIL_ERR_PARAMS;
	char *akey = a != NULL ? xasprintf(DIRECTORY_KEY_TENANTS "%s", a) : NULL;
	char *tkey = t != NULL ? xasprintf(DIRECTORY_KEY_TENANTS "%s", t) : NULL;
	if (err == MAIL_OK)
		err = directory__exists(dir, tkey);
	if (err == MAIL_OK) {
		int e = directory__exists(dir, akey);
		err = e == MAIL_OK ? MAIL_ERR_EXISTS : e == MAIL_ERR_NOT_FOUND ? MAIL_OK : e;
	}
	if (err == MAIL_OK) {
		char *key = xasprintf(DIRECTORY_KEY_DOMAIN_ALIASES "%s", a);
		json_t *rec = json_pack("{s:s,s:I}", "target", t, "created",
					(json_int_t)util_now_wall_ms());
		char *value = json_dumps(rec, JSON_COMPACT);
		json_decref(rec);
		pthread_mutex_lock(&dir->mu);
		err = etcd_kv_create(dir->etcd, key, value, strlen(value), 0);
		pthread_mutex_unlock(&dir->mu);
		free(value);
		free(key);
	}
	if (err == MAIL_OK)
		log_event(LOG_INFO, "directory", "event=domain_alias_added alias=%s target=%s", a,
			  t);
	free(akey);
	free(tkey);
	free(a);
	free(t);
	return err;
}

int directory_domain_alias_del(directory *dir, const char *alias_domain)
{
	char *a = directory__domain(alias_domain);
	if (a == NULL)
		return MAIL_ERR_NOT_FOUND;
	char *key = xasprintf(DIRECTORY_KEY_DOMAIN_ALIASES "%s", a);
	pthread_mutex_lock(&dir->mu);
	int err = etcd_kv_delete(dir->etcd, key);
	pthread_mutex_unlock(&dir->mu);
	if (err == MAIL_OK)
		log_event(LOG_INFO, "directory", "event=domain_alias_removed alias=%s", a);
	free(key);
	free(a);
	return err;
}

/* The tenant alias_domain names (a new string), or NULL (MAIL_ERR_*). */
static int domain_alias_target(directory *dir, const char *alias_domain, char **target_r)
{
	*target_r = NULL;
	char *key = xasprintf(DIRECTORY_KEY_DOMAIN_ALIASES "%s", alias_domain);
	char *value = NULL;
	size_t len = 0;
	int err = directory__get(dir, key, &value, &len, NULL);
	free(key);
	if (err == MAIL_OK) {
		json_t *j = json_loadb(value, len, 0, NULL);
		const char *t = json_string_value(json_object_get(j, "target"));
		*target_r = t != NULL ? directory__domain(t) : NULL;
		if (*target_r == NULL) {
			log_event(LOG_ERROR, "directory", "event=domain_alias_bad alias=%s",
				  alias_domain);
			err = MAIL_ERR_NOT_FOUND;
		}
		json_decref(j);
	}
	free(value);
	return err;
}

int directory_domain_alias_list(directory *dir, char ***lines_r, size_t *n_r)
{
	etcd_kv *kvs = NULL;
	size_t n = 0;
	pthread_mutex_lock(&dir->mu);
	int err = etcd_kv_range_prefix(dir->etcd, DIRECTORY_KEY_DOMAIN_ALIASES, 0, &kvs, &n, NULL);
	pthread_mutex_unlock(&dir->mu);
	if (err != MAIL_OK)
		return err;
	char **lines = xcalloc(n + 1, sizeof *lines);
	size_t plen = strlen(DIRECTORY_KEY_DOMAIN_ALIASES);
	for (size_t i = 0; i < n; i++) {
		json_t *j = json_loadb(kvs[i].value, kvs[i].value_len, 0, NULL);
		const char *t = json_string_value(json_object_get(j, "target"));
		lines[i] = xasprintf("%s %s", kvs[i].key + plen, t != NULL ? t : "?");
		json_decref(j);
	}
	etcd_kvs_free(kvs, n);
	qsort(lines, n, sizeof *lines, directory__str_cmp);
	*lines_r = lines;
	*n_r = n;
	return MAIL_OK;
}

int directory_tenant_del(directory *dir, const char *domain, size_t *aliases_r)
{
	if (aliases_r != NULL)
		*aliases_r = 0;
	char **users = NULL;
	size_t n_users = 0;
	int err = directory_user_list(dir, domain, &users, &n_users);
	for (size_t i = 0; i < n_users; i++)
		free(users[i]);
	free(users);
	if (err != MAIL_OK)
		return err == MAIL_ERR_PARAMS ? MAIL_ERR_NOT_FOUND : err;
	if (n_users > 0)
		return MAIL_ERR_EXISTS;
	char *d = directory__domain(domain);
	if (d == NULL)
		return MAIL_ERR_NOT_FOUND;
	/* the domain aliases naming it, then its aliases, then the record */
	etcd_kv *kvs = NULL;
	size_t n = 0;
	int64_t gone = 0;
	pthread_mutex_lock(&dir->mu);
	err = etcd_kv_range_prefix(dir->etcd, DIRECTORY_KEY_DOMAIN_ALIASES, 0, &kvs, &n, NULL);
	for (size_t i = 0; err == MAIL_OK && i < n; i++) {
		json_t *j = json_loadb(kvs[i].value, kvs[i].value_len, 0, NULL);
		const char *t = json_string_value(json_object_get(j, "target"));
		if (t != NULL && strcmp(t, d) == 0) {
			err = etcd_kv_delete(dir->etcd, kvs[i].key);
			gone += err == MAIL_OK;
		}
		json_decref(j);
	}
	etcd_kvs_free(kvs, n);
	char *prefix = xasprintf(DIRECTORY_KEY_ALIASES "%s/", d);
	int64_t deleted = 0;
	if (err == MAIL_OK)
		err = etcd_kv_delete_prefix(dir->etcd, prefix, &deleted);
	gone += deleted;
	char *key = xasprintf(DIRECTORY_KEY_TENANTS "%s", d);
	if (err == MAIL_OK)
		err = etcd_kv_delete(dir->etcd, key);
	pthread_mutex_unlock(&dir->mu);
	if (err == MAIL_OK)
		log_event(LOG_INFO, "directory", "event=tenant_deleted domain=%s aliases=%lld", d,
			  (long long)gone);
	if (aliases_r != NULL)
		*aliases_r = (size_t)gone;
	free(key);
	free(prefix);
	free(d);
	return err;
}

/* ---- resolution ------------------------------------------------------------- */

struct resolver {
	directory *dir;
	struct directory_rcpt *r;
	size_t cap;
	int err; /* the first error that stops the resolution */
};

static void route_add(struct resolver *rs, const char *address, int external,
		      const char *folder, const struct directory_quota *quota)
{
	struct directory_rcpt *r = rs->r;
	for (size_t i = 0; i < r->n_routes; i++) {
		if (strcmp(r->routes[i].address, address) == 0)
			return; /* a list member twice, or two lists naming one */
	}
	if (r->n_routes >= DIRECTORY_ALIAS_TARGETS_MAX) {
		rs->err = MAIL_ERR_LIMIT;
		return;
	}
	if (r->n_routes == rs->cap) {
		rs->cap = rs->cap == 0 ? 4 : rs->cap * 2;
		r->routes = xrealloc(r->routes, rs->cap * sizeof *r->routes);
	}
	r->routes[r->n_routes++] = (struct directory_route){
		.address = xstrdup(address),
		.external = external,
		.folder = folder != NULL ? xstrdup(folder) : NULL,
	};
	if (quota != NULL)
		r->routes[r->n_routes - 1].quota = *quota;
}

/* The targets of alias local@domain into *targets_r (a JSON array, NULL
 * when there is no such alias). MAIL_OK, MAIL_ERR_NOT_FOUND or the error. */
static int alias_get(directory *dir, const char *domain, const char *local, json_t **targets_r)
{
	*targets_r = NULL;
	char *key = alias_key(domain, local);
	char *value = NULL;
	size_t len = 0;
	int err = directory__get(dir, key, &value, &len, NULL);
	free(key);
	if (err == MAIL_OK) {
		*targets_r = alias_targets_parse(value, len);
		if (*targets_r == NULL) {
			log_event(LOG_ERROR, "directory", "event=alias_bad alias=%s@%s", local,
				  domain);
			err = MAIL_ERR_NOT_FOUND;
		}
	}
	free(value);
	return err;
}

/* The tenant of domain (itself, or the one it is an alias of) into
 * *tenant_r with its settings. MAIL_OK, MAIL_ERR_NOT_FOUND (not ours), or
 * the error. */
static int tenant_of(directory *dir, const char *domain, char **tenant_r,
		     struct directory_tenant_settings *settings)
{
	*tenant_r = NULL;
	int err = directory_tenant_settings_get(dir, domain, settings);
	if (err == MAIL_OK) {
		*tenant_r = directory__domain(domain);
		return MAIL_OK;
	}
	if (err != MAIL_ERR_NOT_FOUND)
		return err;
	char *d = directory__domain(domain), *target = NULL;
	err = d != NULL ? domain_alias_target(dir, d, &target) : MAIL_ERR_NOT_FOUND;
	free(d);
	if (err != MAIL_OK)
		return err;
	/* one level: the target must be a tenant itself */
	err = directory_tenant_settings_get(dir, target, settings);
	if (err == MAIL_OK)
		*tenant_r = target;
	else
		free(target);
	return err;
}

static int resolve_address(struct resolver *rs, const char *address, const char *default_domain,
			   unsigned depth, int top);

/* Resolve every target of an alias (a JSON array of addresses). */
static void resolve_targets(struct resolver *rs, json_t *targets, unsigned depth)
{
	size_t i;
	json_t *v;
	rs->r->via_alias = 1;
	json_array_foreach(targets, i, v)
	{
		if (rs->err != MAIL_OK)
			return;
		int err = resolve_address(rs, json_string_value(v), NULL, depth + 1, 0);
		if (err == MAIL_ERR_NOT_FOUND)
			log_event(LOG_WARN, "directory", "event=alias_target_unknown target=%s",
				  json_string_value(v));
		else if (err != MAIL_OK && rs->err == MAIL_OK)
			rs->err = err;
	}
}

/* local@tenant as a user or an alias: MAIL_OK (routes added),
 * MAIL_ERR_NOT_FOUND, or the error. */
static int resolve_local(struct resolver *rs, const char *tenant, const char *local,
			 const char *folder, unsigned depth)
{
	char *addr = xasprintf("%s@%s", local, tenant);
	struct directory_user_info info;
	int err = directory_user_info(rs->dir, addr, &info);
	if (err == MAIL_OK && info.state != DIRECTORY_USER_ACTIVE) {
		/* a disabled user: refused when addressed, skipped as a target */
		log_event(LOG_INFO, "directory", "event=rcpt_disabled user=%s", addr);
		free(addr);
		return depth == 0 ? MAIL_ERR_PERM : MAIL_ERR_NOT_FOUND;
	}
	if (err == MAIL_OK)
		route_add(rs, addr, 0, folder, &info.quota);
	free(addr);
	if (err != MAIL_ERR_NOT_FOUND)
		return err;
	json_t *targets;
	err = alias_get(rs->dir, tenant, local, &targets);
	if (err == MAIL_OK) {
		resolve_targets(rs, targets, depth);
		json_decref(targets);
	}
	return err;
}

static int resolve_address(struct resolver *rs, const char *address, const char *default_domain,
			   unsigned depth, int top)
{
	if (depth > DIRECTORY_ALIAS_DEPTH_MAX) {
		log_event(LOG_WARN, "directory", "event=alias_loop address=%s", address);
		return MAIL_ERR_LIMIT;
	}
	char *addr = NULL;
	if (default_domain != NULL && strcasecmp(address, "postmaster") == 0) {
		char *full = xasprintf("postmaster@%s", default_domain);
		addr = util_address_normalize(full, strlen(full));
		free(full);
	} else {
		addr = util_address_normalize(address, strlen(address));
	}
	if (addr == NULL)
		return MAIL_ERR_NOT_FOUND;
	const char *domain = util_address_domain(addr);
	char *local = xstrndup(addr, (size_t)(domain - 1 - addr));
	char *tenant = NULL;
	struct directory_tenant_settings settings;
	int err = tenant_of(rs->dir, domain, &tenant, &settings);
	if (err == MAIL_ERR_NOT_FOUND && !top) {
		/* an outside target of an alias: forwarded */
		route_add(rs, addr, 1, NULL, NULL);
		err = MAIL_OK;
		goto out;
	}
	if (err != MAIL_OK)
		goto out;
	if (top) {
		rs->r->tenant = xstrdup(tenant);
		rs->r->settings = settings;
		if (settings.suspended) {
			err = MAIL_ERR_TEMP; /* deferred until it is resumed */
			goto out;
		}
	}
	err = resolve_local(rs, tenant, local, NULL, depth);
	char *plus = strchr(local, '+');
	if (err == MAIL_ERR_NOT_FOUND && plus != NULL && plus != local && plus[1] != '\0') {
		/* the folder as the sender wrote it: IMAP names keep their
		 * case (normalising lowercased the whole address) */
		char *folder = xstrdup(plus + 1);
		const char *at = strrchr(address, '@');
		size_t llen = strlen(local);
		if (at != NULL && (size_t)(at - address) == llen)
			memcpy(folder, address + (plus + 1 - local), llen - (size_t)(plus + 1 - local));
		*plus = '\0';
		err = resolve_local(rs, tenant, local, folder, depth);
		*plus = '+';
		free(folder);
	}
	if (err == MAIL_ERR_NOT_FOUND && strcmp(local, "postmaster") == 0) {
		if (settings.postmaster[0] != '\0') {
			rs->r->via_alias = 1;
			err = resolve_address(rs, settings.postmaster, NULL, depth + 1, 0);
		} else {
			char **users = NULL;
			size_t n = 0;
			err = directory_user_list(rs->dir, tenant, &users, &n);
			if (err == MAIL_OK && n == 0)
				err = MAIL_ERR_NOT_FOUND;
			if (err == MAIL_OK) {
				rs->r->via_alias = 1;
				struct directory_user_info pm;
				int got = directory_user_info(rs->dir, users[0], &pm) == MAIL_OK;
				route_add(rs, users[0], 0, NULL, got ? &pm.quota : NULL);
			}
			for (size_t i = 0; i < n; i++)
				free(users[i]);
			free(users);
		}
	}
	if (err == MAIL_ERR_NOT_FOUND) {
		json_t *targets;
		err = alias_get(rs->dir, tenant, "@", &targets);
		if (err == MAIL_OK) {
			resolve_targets(rs, targets, depth);
			json_decref(targets);
		}
	}
out:
	free(tenant);
	free(local);
	free(addr);
	return err;
}

static int directory__rcpt_resolve_once(directory *dir, const char *address, const char *default_domain,
			   struct directory_rcpt *r)
{
	memset(r, 0, sizeof *r);
	struct resolver rs = { .dir = dir, .r = r, .err = MAIL_OK };
	int err = resolve_address(&rs, address, default_domain, 0, 1);
	if (err == MAIL_OK && rs.err != MAIL_OK)
		err = rs.err;
	if (err == MAIL_OK && r->n_routes == 0)
		err = MAIL_ERR_NOT_FOUND; /* a list whose members are all gone */
	return err;
}

int directory_rcpt_resolve(directory *dir, const char *address, const char *default_domain,
			   struct directory_rcpt *r)
{
	int err = directory__rcpt_resolve_once(dir, address, default_domain, r);
	/* "not one of our domains" is not read again: it is the answer for
	 * every outside recipient of submission (a tenant added a moment ago
	 * is known once the watch brings it, docs/directory.md) */
	int outside = err == MAIL_ERR_NOT_FOUND && r->tenant == NULL;
	if (!outside && directory__confirm(dir, err)) {
		directory_rcpt_free(r);
		err = directory__rcpt_resolve_once(dir->uncached, address, default_domain, r);
	}
	return err;
}

void directory_rcpt_free(struct directory_rcpt *r)
{
	for (size_t i = 0; i < r->n_routes; i++) {
		free(r->routes[i].address);
		free(r->routes[i].folder);
	}
	free(r->routes);
	free(r->tenant);
	memset(r, 0, sizeof *r);
}
