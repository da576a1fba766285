/* queue-config.c: the etcd cache of relays, transports and DKIM keys. See
 * queue-config.h for the contract.
 *
 * Ownership. A snapshot is built whole by the refresh job (thread pool) and
 * never changed afterwards; the loop swaps it in and frees the old one, and
 * lookups read the current one. The etcd client and its conf (struct
 * qc_fetch) belong to whoever runs the read: the cache holds them between
 * jobs and lends them to the one running job, which gives them back when
 * it ends, or frees them when the cache was destroyed meanwhile. So the
 * loop never touches the client while a pool thread uses it.
 */
#include "queue-config.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "log.h"
#include "mail-error.h"
#include "smtpc.h"
#include "util.h"
#include "xalloc.h"

#define QC_SVC "queue"
/* the default relay and the tenants' relays, in one read */
#define QC_RELAY_PREFIX "/mail/v1/secrets/relay/"

/* A relay (default or a tenant's) or a transport, parsed. */
struct qc_hop {
	char *domain;          /* tenant or destination; NULL for the default relay */
	struct smtpc_url url;
	char *user;            /* NULL: no AUTH (always NULL for a transport) */
	char *password;        /* with user; wiped when freed */
	size_t password_len;
};

/* One domain's DKIM records, as etcd gave them (for dkim_store_select). */
struct qc_dkim_domain {
	char *domain;
	struct dkim_stored *recs; /* key and value owned; values wiped when freed */
	size_t n;
};

/* A record skipped as malformed: logged when it is new (by key and mod
 * revision) compared with the previous snapshot. */
struct qc_skipped {
	char *key;
	int64_t mod_revision;
	const char *why; /* static */
};

/* A destination's TLS policy (mailctl tls-policy). */
struct qc_policy {
	char *domain;
	enum smtpc_tls_policy policy;
};

struct qc_snapshot {
	int64_t revision;     /* the etcd revision of the four reads */
	uint64_t fingerprint; /* of every key and its mod revision: "did it change" */
	int has_default;
	struct qc_hop default_relay;
	struct qc_hop *tenants;    /* sorted by domain */
	size_t n_tenants;
	struct qc_hop *transports; /* sorted by domain */
	size_t n_transports;
	struct qc_policy *policies;  /* sorted by domain */
	size_t n_policies;
	struct qc_dkim_domain *dkim; /* sorted by domain */
	size_t n_dkim, n_dkim_recs;
	struct qc_skipped *skipped;
	size_t n_skipped;
};

/* The job side: see the top of this file. */
struct qc_fetch {
	etcd_conf *conf;
	etcd_client *client; /* made by the first job */
};

struct qc_waiter {
	queue_config_refresh_cb *cb;
	void *arg;
	struct qc_waiter *next;
};

struct qc_job {
	uv_work_t work;
	queue_config *cfg;        /* NULL once the cache is destroyed */
	struct qc_fetch *fetch;   /* lent by the cache for the job's time */
	struct qc_snapshot *snap; /* the result, when status is MAIL_OK */
	int status;
	char detail[256];         /* etcd's last error line, when it failed */
	struct qc_waiter *waiters; /* answered when this job ends, in order */
};

struct queue_config {
	uv_loop_t *loop;
	struct queue_config_settings set;
	uv_timer_t timer;          /* the next refresh, armed while no job runs */
	struct qc_fetch *fetch;    /* NULL while the job holds it */
	struct qc_job *job;        /* the running job, or NULL */
	/* refresh_now callers waiting for the read after the running one */
	struct qc_waiter *next_head, *next_tail;
	int again;                 /* a refresh_now came while the job ran */
	struct qc_snapshot *snap;  /* current; NULL until the first load */
	uint32_t failures;         /* failed refreshes in a row */
	int destroyed;
};

void queue_config_settings_default(struct queue_config_settings *set)
{
	set->refresh_ms = QUEUE_CONFIG_REFRESH_MS_DEFAULT;
}

int queue_config_settings_check(const struct queue_config_settings *set, const char **error_r)
{
	if (set->refresh_ms < QUEUE_CONFIG_REFRESH_MS_MIN ||
	    set->refresh_ms > QUEUE_CONFIG_REFRESH_MS_MAX) {
		*error_r = "refresh_ms out of range 100..3600000";
		return -1;
	}
	return 0;
}

/* ---- snapshots -------------------------------------------------------------- */

static void qc__hop_clear(struct qc_hop *h)
{
	free(h->domain);
	free(h->user);
	xfree_secret(h->password, h->password_len);
	memset(h, 0, sizeof *h);
}

static void qc__snapshot_free(struct qc_snapshot **sp)
{
	struct qc_snapshot *s = *sp;
	if (s == NULL)
		return;
	qc__hop_clear(&s->default_relay);
	for (size_t i = 0; i < s->n_tenants; i++)
		qc__hop_clear(&s->tenants[i]);
	free(s->tenants);
	for (size_t i = 0; i < s->n_transports; i++)
		qc__hop_clear(&s->transports[i]);
	free(s->transports);
	for (size_t i = 0; i < s->n_policies; i++)
		free(s->policies[i].domain);
	free(s->policies);
	for (size_t i = 0; i < s->n_dkim; i++) {
		struct qc_dkim_domain *d = &s->dkim[i];
		for (size_t k = 0; k < d->n; k++) {
			free((char *)d->recs[k].key);
			dkim_secret_free((void *)d->recs[k].value, d->recs[k].value_len);
		}
		free(d->recs);
		free(d->domain);
	}
	free(s->dkim);
	for (size_t i = 0; i < s->n_skipped; i++)
		free(s->skipped[i].key);
	free(s->skipped);
	free(s);
	*sp = NULL;
}

static void qc__skip(struct qc_snapshot *s, const etcd_kv *kv, const char *why)
{
	s->skipped = xrealloc(s->skipped, (s->n_skipped + 1) * sizeof *s->skipped);
	s->skipped[s->n_skipped++] = (struct qc_skipped){ .key = xstrdup(kv->key),
							  .mod_revision = kv->mod_revision,
							  .why = why };
}

/* A domain as mailctl stores it in a key: valid and lowercase. */
static int qc__domain_ok(const char *d)
{
	if (!util_domain_valid(d))
		return 0;
	for (; *d != '\0'; d++) {
		if (*d >= 'A' && *d <= 'Z')
			return 0;
	}
	return 1;
}

/* A JSON string member of j that holds no NUL, else NULL. */
static const char *qc__json_str(json_t *j, const char *name, size_t *len_r)
{
	json_t *v = json_object_get(j, name);
	const char *s = json_string_value(v);
	if (s == NULL || strlen(s) != json_string_length(v))
		return NULL;
	*len_r = json_string_length(v);
	return s;
}

/* Parse a relay (with_auth) or transport value into h (whose domain the
 * caller sets). NULL when it is well formed, else why not (static). */
static const char *qc__hop_parse(const etcd_kv *kv, int with_auth, struct qc_hop *h)
{
	json_t *j = json_loadb(kv->value, kv->value_len, JSON_REJECT_DUPLICATES, NULL);
	const char *why = NULL, *url_why;
	size_t url_len, user_len = 0, pw_len = 0;
	const char *url = json_is_object(j) ? qc__json_str(j, "url", &url_len) : NULL;
	const char *user = with_auth ? qc__json_str(j, "user", &user_len) : NULL;
	const char *pw = with_auth ? qc__json_str(j, "password", &pw_len) : NULL;
	int has_user = with_auth && json_object_get(j, "user") != NULL;
	int has_pw = with_auth && json_object_get(j, "password") != NULL;
	if (!json_is_object(j))
		why = "not a JSON object";
	else if (url == NULL)
		why = "no url string";
	else if (smtpc_url_parse(url, &h->url, &url_why) < 0)
		why = url_why;
	else if (has_user != has_pw)
		why = "a user without a password or the reverse";
	else if (has_user && (user == NULL || user_len == 0 || user_len > QUEUE_ROUTE_USER_MAX))
		why = "the user is not a string of 1..255 bytes";
	else if (has_pw && (pw == NULL || pw_len == 0 || pw_len > QUEUE_ROUTE_PASSWORD_MAX))
		why = "the password is not a string of 1..1024 bytes";
	if (why == NULL && has_user) {
		h->user = xstrdup(user);
		h->password = xmalloc(pw_len + 1);
		memcpy(h->password, pw, pw_len + 1);
		h->password_len = pw_len;
	}
	/* jansson's copy of the password is not ours to wipe (queue-config.h) */
	json_decref(j);
	return why;
}

static int qc__hop_cmp(const void *a, const void *b)
{
	return strcmp(((const struct qc_hop *)a)->domain, ((const struct qc_hop *)b)->domain);
}

static int qc__dkim_cmp(const void *a, const void *b)
{
	return strcmp(((const struct qc_dkim_domain *)a)->domain,
		      ((const struct qc_dkim_domain *)b)->domain);
}

/* The relays: QC_RELAY_PREFIX "default" and "tenants/<domain>"; other keys
 * there are not ours (a newer mailctl's) and are passed over silently. */
static void qc__build_relays(struct qc_snapshot *s, const etcd_kv *kvs, size_t n)
{
	size_t tlen = strlen(QUEUE_CONFIG_RELAY_TENANTS_PREFIX);
	s->tenants = xcalloc(n + 1, sizeof *s->tenants);
	for (size_t i = 0; i < n; i++) {
		const etcd_kv *kv = &kvs[i];
		struct qc_hop h = { 0 };
		const char *why;
		if (strcmp(kv->key, QUEUE_CONFIG_RELAY_DEFAULT_KEY) == 0) {
			if ((why = qc__hop_parse(kv, 1, &h)) != NULL) {
				qc__skip(s, kv, why);
				continue;
			}
			s->default_relay = h;
			s->has_default = 1;
		} else if (strncmp(kv->key, QUEUE_CONFIG_RELAY_TENANTS_PREFIX, tlen) == 0) {
			const char *domain = kv->key + tlen;
			if (!qc__domain_ok(domain)) {
				qc__skip(s, kv, "the tenant is not a lowercase domain");
				continue;
			}
			if ((why = qc__hop_parse(kv, 1, &h)) != NULL) {
				qc__hop_clear(&h);
				qc__skip(s, kv, why);
				continue;
			}
			h.domain = xstrdup(domain);
			s->tenants[s->n_tenants++] = h;
		}
	}
	qsort(s->tenants, s->n_tenants, sizeof *s->tenants, qc__hop_cmp);
}

static void qc__build_transports(struct qc_snapshot *s, const etcd_kv *kvs, size_t n)
{
	size_t plen = strlen(QUEUE_CONFIG_TRANSPORT_PREFIX);
	s->transports = xcalloc(n + 1, sizeof *s->transports);
	for (size_t i = 0; i < n; i++) {
		const etcd_kv *kv = &kvs[i];
		const char *domain = kv->key + plen, *why;
		struct qc_hop h = { 0 };
		if (!qc__domain_ok(domain)) {
			qc__skip(s, kv, "the destination is not a lowercase domain");
			continue;
		}
		if ((why = qc__hop_parse(kv, 0, &h)) != NULL) {
			qc__skip(s, kv, why);
			continue;
		}
		h.domain = xstrdup(domain);
		s->transports[s->n_transports++] = h;
	}
	qsort(s->transports, s->n_transports, sizeof *s->transports, qc__hop_cmp);
}

static int qc__policy_cmp(const void *a, const void *b)
{
	return strcmp(((const struct qc_policy *)a)->domain,
		      ((const struct qc_policy *)b)->domain);
}

/* The TLS policies: {"policy":"none"|"may"|"encrypt"|"verify",...}. */
static void qc__build_policies(struct qc_snapshot *s, const etcd_kv *kvs, size_t n)
{
	static const char *const names[] = { "none", "may", "encrypt", "verify" };
	size_t plen = strlen(QUEUE_CONFIG_TLS_POLICY_PREFIX);
	s->policies = xcalloc(n + 1, sizeof *s->policies);
	for (size_t i = 0; i < n; i++) {
		const etcd_kv *kv = &kvs[i];
		const char *domain = kv->key + plen;
		if (!qc__domain_ok(domain)) {
			qc__skip(s, kv, "the destination is not a lowercase domain");
			continue;
		}
		json_t *j = json_loadb(kv->value, kv->value_len, JSON_REJECT_DUPLICATES, NULL);
		size_t len;
		const char *p = json_is_object(j) ? qc__json_str(j, "policy", &len) : NULL;
		int found = -1;
		for (int k = 0; p != NULL && k < 4; k++)
			if (strcmp(p, names[k]) == 0)
				found = k;
		json_decref(j);
		if (found < 0) {
			qc__skip(s, kv, "no policy none, may, encrypt or verify");
			continue;
		}
		s->policies[s->n_policies].domain = xstrdup(domain);
		s->policies[s->n_policies++].policy = (enum smtpc_tls_policy)found;
	}
	qsort(s->policies, s->n_policies, sizeof *s->policies, qc__policy_cmp);
}

/* The DKIM records, grouped by domain. The key and value of each kept
 * record move from kvs into the snapshot (kvs[i] loses them). A record
 * that does not parse is dropped here, so dkim_store_select() never logs
 * it again per message. */
static void qc__build_dkim(struct qc_snapshot *s, etcd_kv *kvs, size_t n)
{
	s->dkim = xcalloc(n + 1, sizeof *s->dkim);
	for (size_t i = 0; i < n; i++) {
		etcd_kv *kv = &kvs[i];
		char domain[DKIM_DOMAIN_MAX + 1], selector[DKIM_SELECTOR_MAX + 1];
		struct dkim_record r;
		const char *why;
		if (dkim_store_key_parse(kv->key, domain, selector) < 0 || !qc__domain_ok(domain)) {
			qc__skip(s, kv, "not <lowercase domain>/<selector>");
			continue;
		}
		if (dkim_record_parse(kv->value, kv->value_len, &r, &why) != MAIL_OK) {
			qc__skip(s, kv, why);
			continue;
		}
		dkim_record_clear(&r);
		/* etcd sorts by key and a domain holds no '/': one domain's keys
		 * are next to each other */
		struct qc_dkim_domain *d = s->n_dkim > 0 ? &s->dkim[s->n_dkim - 1] : NULL;
		if (d == NULL || strcmp(d->domain, domain) != 0) {
			d = &s->dkim[s->n_dkim++];
			d->domain = xstrdup(domain);
		}
		d->recs = xrealloc(d->recs, (d->n + 1) * sizeof *d->recs);
		d->recs[d->n++] = (struct dkim_stored){ .key = kv->key, .value = kv->value,
							.value_len = kv->value_len };
		kv->key = NULL;
		kv->value = NULL;
		kv->value_len = 0;
		s->n_dkim_recs++;
	}
	qsort(s->dkim, s->n_dkim, sizeof *s->dkim, qc__dkim_cmp);
}

static uint64_t qc__fingerprint(uint64_t h, const etcd_kv *kvs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h = (h ^ util_hash64(kvs[i].key, strlen(kvs[i].key))) * 1099511628211ull;
		h = (h ^ (uint64_t)kvs[i].mod_revision) * 1099511628211ull;
	}
	return (h ^ n) * 1099511628211ull;
}

/* Free kvs, wiping every value first (relay passwords, DKIM keys). */
static void qc__kvs_free(etcd_kv *kvs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		xfree_secret(kvs[i].value, kvs[i].value_len);
		kvs[i].value = NULL;
	}
	etcd_kvs_free(kvs, n);
}

/* ---- the refresh job (thread pool) ------------------------------------------ */

enum { QC_READ_RELAY, QC_READ_TRANSPORT, QC_READ_DKIM, QC_READ_TLS, QC_READS_ };

static const char *const qc_prefixes[QC_READS_] = {
	[QC_READ_RELAY] = QC_RELAY_PREFIX,
	[QC_READ_TRANSPORT] = QUEUE_CONFIG_TRANSPORT_PREFIX,
	[QC_READ_DKIM] = DKIM_STORE_PREFIX,
	[QC_READ_TLS] = QUEUE_CONFIG_TLS_POLICY_PREFIX,
};

static void qc__work(uv_work_t *w)
{
	struct qc_job *j = w->data;
	if (j->fetch->client == NULL)
		j->fetch->client = etcd_client_create(j->fetch->conf);
	etcd_client *c = j->fetch->client;
	etcd_kv *kvs[QC_READS_] = { NULL };
	size_t n[QC_READS_] = { 0 };
	int64_t revision = 0;
	j->status = MAIL_OK;
	/* the first read fixes the revision the other two read at */
	for (int r = 0; r < QC_READS_ && j->status == MAIL_OK; r++)
		j->status = etcd_kv_range_prefix(c, qc_prefixes[r], revision, &kvs[r], &n[r],
						 r == 0 ? &revision : NULL);
	if (j->status != MAIL_OK) {
		snprintf(j->detail, sizeof j->detail, "%s", etcd_client_last_error(c));
	} else {
		struct qc_snapshot *s = xcalloc(1, sizeof *s);
		s->revision = revision;
		uint64_t h = 14695981039346656037ull;
		for (int r = 0; r < QC_READS_; r++)
			h = qc__fingerprint(h, kvs[r], n[r]);
		s->fingerprint = h;
		qc__build_relays(s, kvs[QC_READ_RELAY], n[QC_READ_RELAY]);
		qc__build_transports(s, kvs[QC_READ_TRANSPORT], n[QC_READ_TRANSPORT]);
		qc__build_policies(s, kvs[QC_READ_TLS], n[QC_READ_TLS]);
		qc__build_dkim(s, kvs[QC_READ_DKIM], n[QC_READ_DKIM]);
		j->snap = s;
	}
	for (int r = 0; r < QC_READS_; r++)
		qc__kvs_free(kvs[r], n[r]);
}

/* ---- the loop side ------------------------------------------------------------ */

static void qc__fetch_free(struct qc_fetch **fp)
{
	struct qc_fetch *f = *fp;
	if (f == NULL)
		return;
	etcd_client_destroy(&f->client);
	etcd_conf_free(&f->conf);
	free(f);
	*fp = NULL;
}

static void qc__waiters_free(struct qc_waiter *w)
{
	while (w != NULL) {
		struct qc_waiter *next = w->next;
		free(w);
		w = next;
	}
}

static int qc__skipped_before(const struct qc_snapshot *old, const struct qc_skipped *k)
{
	for (size_t i = 0; old != NULL && i < old->n_skipped; i++) {
		if (old->skipped[i].mod_revision == k->mod_revision &&
		    strcmp(old->skipped[i].key, k->key) == 0)
			return 1;
	}
	return 0;
}

/* Make s the current snapshot; log what is new about it. */
static void qc__apply(queue_config *cfg, struct qc_snapshot *s)
{
	struct qc_snapshot *old = cfg->snap;
	if (cfg->failures > 0)
		log_event(LOG_INFO, QC_SVC, "event=config_refresh_recovered failures=%u",
			  cfg->failures);
	cfg->failures = 0;
	for (size_t i = 0; i < s->n_skipped; i++) {
		const struct qc_skipped *k = &s->skipped[i];
		if (qc__skipped_before(old, k))
			continue;
		char qk[300], qw[160];
		log_event(LOG_WARN, QC_SVC, "event=config_record_skipped key=%s error=%s",
			  log_quote(qk, sizeof qk, k->key, strlen(k->key)),
			  log_quote(qw, sizeof qw, k->why, strlen(k->why)));
	}
	if (old == NULL || old->fingerprint != s->fingerprint)
		log_event(LOG_INFO, QC_SVC, "event=config_loaded revision=%lld default_relay=%s "
			  "tenant_relays=%zu transports=%zu dkim_domains=%zu dkim_records=%zu "
			  "skipped=%zu", (long long)s->revision, s->has_default ? "yes" : "no",
			  s->n_tenants, s->n_transports, s->n_dkim, s->n_dkim_recs, s->n_skipped);
	cfg->snap = s;
	qc__snapshot_free(&old);
}

static void qc__failed(queue_config *cfg, int status, const char *detail)
{
	if (cfg->failures++ > 0)
		return; /* once per streak */
	char q[300];
	log_event(LOG_WARN, QC_SVC, "event=config_refresh_failed error=%s detail=%s keeping=%s",
		  mail_error_info(status)->name, log_quote(q, sizeof q, detail, strlen(detail)),
		  cfg->snap != NULL ? "last_snapshot" : "nothing");
}

static void qc__after(uv_work_t *w, int status);

static void qc__start(queue_config *cfg)
{
	struct qc_job *j = xcalloc(1, sizeof *j);
	j->work.data = j;
	j->cfg = cfg;
	j->fetch = cfg->fetch;
	cfg->fetch = NULL;
	j->waiters = cfg->next_head;
	cfg->next_head = cfg->next_tail = NULL;
	cfg->again = 0;
	cfg->job = j;
	uv_timer_stop(&cfg->timer);
	uv_queue_work(cfg->loop, &j->work, qc__work, qc__after);
}

static void qc__timer_cb(uv_timer_t *t)
{
	queue_config *cfg = t->data;
	if (cfg->job == NULL)
		qc__start(cfg);
}

static void qc__after(uv_work_t *w, int status)
{
	struct qc_job *j = w->data;
	queue_config *cfg = j->cfg;
	(void)status; /* never canceled: uv_cancel is not used */
	if (cfg == NULL) {
		/* the cache was destroyed while this job ran */
		qc__fetch_free(&j->fetch);
		qc__snapshot_free(&j->snap);
		qc__waiters_free(j->waiters);
		free(j);
		return;
	}
	cfg->job = NULL;
	cfg->fetch = j->fetch;
	int st = j->status;
	if (st == MAIL_OK)
		qc__apply(cfg, j->snap);
	else
		qc__failed(cfg, st, j->detail);
	struct qc_waiter *waiters = j->waiters;
	free(j);
	/* the next read: at once for a refresh_now that came meanwhile, else
	 * refresh_ms from now */
	if (cfg->again)
		qc__start(cfg);
	else
		uv_timer_start(&cfg->timer, qc__timer_cb, cfg->set.refresh_ms, 0);
	/* Last, because a callback may destroy the cache (its memory stays
	 * until the timer's close callback, after this returns). */
	while (waiters != NULL) {
		struct qc_waiter *next = waiters->next;
		if (!cfg->destroyed)
			waiters->cb(st, waiters->arg);
		free(waiters);
		waiters = next;
	}
}

int queue_config_create(uv_loop_t *loop, const etcd_conf *conf,
			const struct queue_config_settings *set, queue_config **cfg_r)
{
	struct queue_config_settings def;
	const char *error;
	if (set == NULL) {
		queue_config_settings_default(&def);
		set = &def;
	}
	*cfg_r = NULL;
	if (queue_config_settings_check(set, &error) < 0)
		return -1;
	queue_config *cfg = xcalloc(1, sizeof *cfg);
	cfg->loop = loop;
	cfg->set = *set;
	cfg->fetch = xcalloc(1, sizeof *cfg->fetch);
	cfg->fetch->conf = etcd_conf_dup(conf);
	uv_timer_init(loop, &cfg->timer);
	cfg->timer.data = cfg;
	uv_unref((uv_handle_t *)&cfg->timer);
	uv_timer_start(&cfg->timer, qc__timer_cb, 0, 0);
	*cfg_r = cfg;
	return 0;
}

static void qc__close_cb(uv_handle_t *h)
{
	queue_config *cfg = h->data;
	qc__fetch_free(&cfg->fetch);
	qc__snapshot_free(&cfg->snap);
	free(cfg);
}

void queue_config_destroy(queue_config **cfgp)
{
	queue_config *cfg = *cfgp;
	if (cfg == NULL)
		return;
	*cfgp = NULL;
	cfg->destroyed = 1;
	if (cfg->job != NULL) {
		cfg->job->cfg = NULL; /* its completion frees what it holds */
		cfg->job = NULL;
	}
	qc__waiters_free(cfg->next_head);
	cfg->next_head = cfg->next_tail = NULL;
	uv_timer_stop(&cfg->timer);
	uv_close((uv_handle_t *)&cfg->timer, qc__close_cb);
}

void queue_config_refresh_now(queue_config *cfg, queue_config_refresh_cb *cb, void *arg)
{
	if (cb != NULL) {
		struct qc_waiter *w = xcalloc(1, sizeof *w);
		w->cb = cb;
		w->arg = arg;
		if (cfg->next_tail != NULL)
			cfg->next_tail->next = w;
		else
			cfg->next_head = w;
		cfg->next_tail = w;
	}
	if (cfg->job == NULL)
		qc__start(cfg);
	else
		cfg->again = 1;
}

int queue_config_ready(const queue_config *cfg)
{
	return cfg->snap != NULL;
}

size_t queue_config_skipped(const queue_config *cfg)
{
	return cfg->snap != NULL ? cfg->snap->n_skipped : 0;
}

/* ---- lookups ------------------------------------------------------------------ */

/* name lowercased into out[DKIM_DOMAIN_MAX + 1]: 1, or 0 when NULL, empty
 * or too long to be a domain. */
static int qc__lower(const char *name, char *out)
{
	size_t len = name != NULL ? strlen(name) : 0;
	if (len == 0 || len > DKIM_DOMAIN_MAX)
		return 0;
	for (size_t i = 0; i <= len; i++)
		out[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
	return 1;
}

static int qc__hop_key_cmp(const void *key, const void *elem)
{
	return strcmp(key, ((const struct qc_hop *)elem)->domain);
}

static const struct qc_hop *qc__hop_find(const struct qc_hop *hops, size_t n,
					const char *domain)
{
	char d[DKIM_DOMAIN_MAX + 1];
	if (!qc__lower(domain, d))
		return NULL;
	return bsearch(d, hops, n, sizeof *hops, qc__hop_key_cmp);
}

static int qc__route_fill(const struct qc_hop *h, const char *rule, struct queue_route *r)
{
	r->url = h->url;
	r->rule = rule;
	if (h->user != NULL) {
		/* lengths were checked when the record was parsed */
		memcpy(r->user, h->user, strlen(h->user) + 1);
		memcpy(r->password, h->password, h->password_len + 1);
	}
	return 1;
}

int queue_config_route(const queue_config *cfg, const char *sender_domain,
		       const char *rcpt_domain, struct queue_route *r)
{
	memset(r, 0, sizeof *r);
	const struct qc_snapshot *s = cfg->snap;
	if (s == NULL)
		return -1;
	const struct qc_hop *h = qc__hop_find(s->transports, s->n_transports, rcpt_domain);
	if (h != NULL) {
		r->url = h->url;
		r->rule = "transport";
		return 1;
	}
	if ((h = qc__hop_find(s->tenants, s->n_tenants, sender_domain)) != NULL)
		return qc__route_fill(h, "tenant_relay", r);
	if (s->has_default)
		return qc__route_fill(&s->default_relay, "relay", r);
	return 0;
}

static int qc__policy_key_cmp(const void *key, const void *elem)
{
	return strcmp(key, ((const struct qc_policy *)elem)->domain);
}

int queue_config_tls_policy(const queue_config *cfg, const char *domain)
{
	const struct qc_snapshot *s = cfg->snap;
	char d[DKIM_DOMAIN_MAX + 1];
	if (s == NULL || !qc__lower(domain, d))
		return -1;
	const struct qc_policy *p = bsearch(d, s->policies, s->n_policies, sizeof *s->policies,
					    qc__policy_key_cmp);
	return p != NULL ? (int)p->policy : -1;
}

void queue_route_clear(struct queue_route *r)
{
	OPENSSL_cleanse(r, sizeof *r);
}

static int qc__dkim_key_cmp(const void *key, const void *elem)
{
	return strcmp(key, ((const struct qc_dkim_domain *)elem)->domain);
}

size_t queue_config_dkim_keys(const queue_config *cfg, const char *domain,
			      struct dkim_key *keys_r)
{
	const struct qc_snapshot *s = cfg->snap;
	char d[DKIM_DOMAIN_MAX + 1];
	if (s == NULL || !qc__lower(domain, d))
		return 0;
	const struct qc_dkim_domain *dd = bsearch(d, s->dkim, s->n_dkim, sizeof *s->dkim,
						  qc__dkim_key_cmp);
	if (dd == NULL)
		return 0;
	size_t n = 0;
	const char *error;
	if (dkim_store_select(d, dd->recs, dd->n, keys_r, &n, NULL, &error) != MAIL_OK)
		return 0;
	return n;
}
