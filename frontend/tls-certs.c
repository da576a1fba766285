/* tls-certs.c: see tls-certs.h. */
#include "tls-certs.h"

#include "etcd.h"
#include "log.h"
#include "mail-error.h"
#include "security-keys.h"
#include "xalloc.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TLS_CERTS_SVC "tls"

struct applied {
	char *domain;
	int64_t rev;
};

struct tls_certs {
	uv_loop_t *loop;
	tls_server *tls;
	etcd_conf *etcd;
	etcd_pool *pool;   /* one client, its connection kept between polls */
	char *cert_file, *key_file;
	struct etcd_stats *stats;
	uv_timer_t *timer;
	int stopped, busy;
	struct stat cert_st, key_st;
	struct applied *applied;
	size_t n_applied;
};

struct certs_job {
	uv_work_t work;
	tls_certs *c;
	etcd_kv *kvs;
	size_t n;
	int status;
};

static void certs_maybe_free(tls_certs *c)
{
	if (!c->stopped || c->busy || c->timer != NULL)
		return;
	for (size_t k = 0; k < c->n_applied; k++)
		free(c->applied[k].domain);
	free(c->applied);
	etcd_pool_destroy(&c->pool);
	etcd_conf_free(&c->etcd);
	free(c->cert_file);
	free(c->key_file);
	free(c);
}

static void certs_work(uv_work_t *w)
{
	struct certs_job *j = w->data;
	etcd_client *e = etcd_pool_take(j->c->pool);
	j->status = etcd_kv_range_prefix(e, TLS_CERT_KEY_PREFIX, 0, &j->kvs, &j->n, NULL);
	etcd_pool_give(j->c->pool, &e);
}

static struct applied *certs_find(tls_certs *c, const char *domain)
{
	for (size_t k = 0; k < c->n_applied; k++) {
		if (strcmp(c->applied[k].domain, domain) == 0)
			return &c->applied[k];
	}
	return NULL;
}

/* Apply one key: set the domain when new or changed. */
static void certs_apply(tls_certs *c, const etcd_kv *kv)
{
	const char *domain = kv->key + strlen(TLS_CERT_KEY_PREFIX);
	struct applied *a = certs_find(c, domain);
	if (a != NULL && a->rev == kv->mod_revision)
		return;
	json_t *j = json_loadb(kv->value, kv->value_len, 0, NULL);
	const char *cert = json_string_value(json_object_get(j, "cert"));
	const char *key = json_string_value(json_object_get(j, "key"));
	const char *error = "not a certificate record";
	int ok = cert != NULL && key != NULL &&
		 tls_server_set_domain(c->tls, domain, cert, strlen(cert), key, strlen(key),
				       &error) == 0;
	json_decref(j);
	if (!ok) {
		log_event(LOG_WARN, TLS_CERTS_SVC, "event=domain_certificate_refused domain=%s "
			  "error=\"%s\"", domain, error);
	} else {
		log_event(LOG_INFO, TLS_CERTS_SVC, "event=certificate_loaded domain=%s", domain);
	}
	if (a == NULL) {
		c->applied = xrealloc(c->applied, (c->n_applied + 1) * sizeof *c->applied);
		a = &c->applied[c->n_applied++];
		a->domain = xstrdup(domain);
	}
	a->rev = kv->mod_revision; /* a refused one is not retried until it changes */
}

static void certs_after(uv_work_t *w, int status)
{
	struct certs_job *j = w->data;
	tls_certs *c = j->c;
	c->busy = 0;
	if (status == 0 && j->status == MAIL_OK && !c->stopped) {
		for (size_t k = 0; k < j->n; k++)
			certs_apply(c, &j->kvs[k]);
		/* removed domains */
		for (size_t k = 0; k < c->n_applied;) {
			int present = 0;
			for (size_t i = 0; i < j->n && !present; i++)
				present = strcmp(j->kvs[i].key + strlen(TLS_CERT_KEY_PREFIX),
						 c->applied[k].domain) == 0;
			if (present) {
				k++;
				continue;
			}
			const char *error = NULL;
			tls_server_set_domain(c->tls, c->applied[k].domain, NULL, 0, NULL, 0, &error);
			log_event(LOG_INFO, TLS_CERTS_SVC, "event=certificate_removed domain=%s",
				  c->applied[k].domain);
			free(c->applied[k].domain);
			c->applied[k] = c->applied[--c->n_applied];
		}
	}
	etcd_kvs_free(j->kvs, j->n);
	free(j);
	certs_maybe_free(c);
}

static int certs_changed(const struct stat *old, const struct stat *now)
{
	return old->st_mtim.tv_sec != now->st_mtim.tv_sec ||
	       old->st_mtim.tv_nsec != now->st_mtim.tv_nsec || old->st_size != now->st_size ||
	       old->st_ino != now->st_ino;
}

static void certs_files(tls_certs *c)
{
	struct stat cs, ks;
	if (c->cert_file == NULL || stat(c->cert_file, &cs) < 0 || stat(c->key_file, &ks) < 0)
		return;
	if (!certs_changed(&c->cert_st, &cs) && !certs_changed(&c->key_st, &ks))
		return;
	const char *error = NULL;
	if (tls_server_load_default(c->tls, c->cert_file, c->key_file, &error) < 0)
		log_event(LOG_WARN, TLS_CERTS_SVC, "event=reload_failed file=%s error=\"%s\"",
			  c->cert_file, error);
	/* remembered either way: a bad pair is retried when it changes again */
	c->cert_st = cs;
	c->key_st = ks;
}

static void certs_timer_cb(uv_timer_t *t)
{
	tls_certs *c = t->data;
	certs_files(c);
	if (c->etcd == NULL || c->busy)
		return;
	struct certs_job *j = xcalloc(1, sizeof *j);
	j->work.data = j;
	j->c = c;
	c->busy = 1;
	uv_queue_work(c->loop, &j->work, certs_work, certs_after);
}

tls_certs *tls_certs_start(uv_loop_t *loop, tls_server *tls, const etcd_conf *etcd,
			   struct etcd_stats *stats, const char *cert_file, const char *key_file)
{
	tls_certs *c = xcalloc(1, sizeof *c);
	c->loop = loop;
	c->tls = tls;
	c->stats = stats;
	c->etcd = etcd_conf_dup(etcd);
	if (c->etcd != NULL)
		c->pool = etcd_pool_create(c->etcd, stats, 1);
	if (cert_file != NULL && key_file != NULL) {
		c->cert_file = xstrdup(cert_file);
		c->key_file = xstrdup(key_file);
		/* what the server loaded at its start */
		stat(cert_file, &c->cert_st);
		stat(key_file, &c->key_st);
	}
	c->timer = xcalloc(1, sizeof *c->timer);
	uv_timer_init(loop, c->timer);
	c->timer->data = c;
	uv_timer_start(c->timer, certs_timer_cb, 0, TLS_CERTS_POLL_MS);
	return c;
}

static void certs_timer_closed(uv_handle_t *h)
{
	tls_certs *c = h->data;
	free(h);
	c->timer = NULL;
	certs_maybe_free(c);
}

void tls_certs_stop(tls_certs **cp)
{
	tls_certs *c = *cp;
	if (c == NULL)
		return;
	*cp = NULL;
	c->stopped = 1;
	uv_close((uv_handle_t *)c->timer, certs_timer_closed);
}

size_t tls_certs_domains(const tls_certs *c)
{
	return c->n_applied;
}
