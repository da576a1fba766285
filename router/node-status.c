/* node-status.c: a node's replication status in etcd (node-status.h). */
#include "node-status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "log.h"
#include "mail-error.h"
#include "util.h"
#include "xalloc.h"

#define LOG_SVC "router"

/* ---- the value ------------------------------------------------------------ */

uint64_t node_status_lag_round(uint64_t lag)
{
	if (lag <= NODE_STATUS_LAG_SLACK)
		return 0;
	uint64_t unit = 1;
	while (lag / unit >= 100)
		unit *= 10;
	return lag / unit * unit;
}

void node_status_encode(const node_status_lead *leads, size_t n, buf *out)
{
	json_t *epochs = json_object(), *lags = json_object();
	for (size_t k = 0; k < n; k++) {
		char name[16];
		snprintf(name, sizeof name, "%u", leads[k].partition);
		json_object_set_new(epochs, name, json_integer((json_int_t)leads[k].epoch));
		json_t *peers = json_object();
		for (uint32_t j = 0; j < leads[k].n_lagging && j < NODE_STATUS_PEERS_MAX; j++)
			if (leads[k].lagging[j].lag > 0)
				json_object_set_new(peers, leads[k].lagging[j].id,
						    json_integer((json_int_t)
								 leads[k].lagging[j].lag));
		if (json_object_size(peers) > 0)
			json_object_set_new(lags, name, peers);
		else
			json_decref(peers);
	}
	json_t *root = json_pack("{s:i,s:o}", "v", NODE_STATUS_VERSION, "e", epochs);
	if (json_object_size(lags) > 0)
		json_object_set_new(root, "lag", lags);
	else
		json_decref(lags);
	/* sorted keys: the same state always encodes to the same bytes, which
	 * is what the publisher compares */
	char *s = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(root);
	buf_append(out, s, strlen(s));
	free(s);
}

int node_status_decode(const char *value, size_t len, node_status_lead **leads_r, size_t *n_r)
{
	json_t *root = json_loadb(value, len, 0, NULL);
	json_t *v = json_object_get(root, "v"), *epochs = json_object_get(root, "e");
	json_t *lags = json_object_get(root, "lag");
	if (!json_is_integer(v) || json_integer_value(v) != NODE_STATUS_VERSION ||
	    !json_is_object(epochs)) {
		json_decref(root);
		return -1;
	}
	node_status_lead *leads = xcalloc(json_object_size(epochs) + 1, sizeof *leads);
	size_t n = 0;
	const char *name;
	json_t *e;
	json_object_foreach(epochs, name, e) {
		char *end;
		unsigned long p = strtoul(name, &end, 10);
		if (end == name || *end != '\0' || p > UINT32_MAX || !json_is_integer(e) ||
		    json_integer_value(e) < 0)
			continue;
		node_status_lead *l = &leads[n++];
		l->partition = (uint32_t)p;
		l->epoch = (uint64_t)json_integer_value(e);
		const char *id;
		json_t *lag;
		json_object_foreach(json_object_get(lags, name), id, lag) {
			if (l->n_lagging == NODE_STATUS_PEERS_MAX || !json_is_integer(lag) ||
			    json_integer_value(lag) < 0 || strlen(id) >= ROUTER_ID_MAX)
				continue;
			node_status_lag *g = &l->lagging[l->n_lagging++];
			snprintf(g->id, sizeof g->id, "%s", id);
			g->lag = (uint64_t)json_integer_value(lag);
		}
	}
	json_decref(root);
	if (n == 0) {
		free(leads);
		leads = NULL;
	}
	*leads_r = leads;
	*n_r = n;
	return 0;
}

int node_status_lag_of(const node_status_lead *leads, size_t n, uint32_t p, uint64_t epoch,
		       const char *id, uint64_t *lag_r)
{
	for (size_t k = 0; k < n; k++) {
		if (leads[k].partition != p)
			continue;
		if (leads[k].epoch != epoch)
			return 0;
		*lag_r = 0;
		for (uint32_t j = 0; j < leads[k].n_lagging; j++)
			if (strcmp(leads[k].lagging[j].id, id) == 0)
				*lag_r = leads[k].lagging[j].lag;
		return 1;
	}
	return 0;
}

int node_status_due(const char *written, const char *value, uint64_t now_ms,
		    uint64_t last_attempt_ms, uint64_t min_interval_ms)
{
	if (written != NULL && strcmp(written, value) == 0)
		return 0;
	return last_attempt_ms == 0 || now_ms >= last_attempt_ms + min_interval_ms;
}

/* ---- the publisher ---------------------------------------------------------- */

struct publish_job {
	uv_work_t work;
	node_status_publisher *pub; /* NULL once the publisher is gone */
	etcd_conf *etcd;
	char *key;
	char *value;
	etcd_stats *stats;
	int status;
};

struct node_status_publisher {
	uv_loop_t *loop;
	uv_timer_t *timer;          /* freed by its close callback */
	etcd_conf *etcd;
	char *key;
	etcd_stats *stats;
	uint32_t min_interval_ms;
	node_status_collect_fn *collect;
	void *arg;
	char *written;              /* the last value written successfully */
	uint64_t last_attempt_ms;
	uint64_t writes;
	struct publish_job *job;    /* in the thread pool, or NULL */
};

static void publish_work_cb(uv_work_t *w)
{
	struct publish_job *j = w->data;
	etcd_client *etcd = etcd_client_create(j->etcd);
	etcd_client_set_stats(etcd, j->stats);
	j->status = etcd_kv_put(etcd, j->key, j->value, strlen(j->value), 0);
	etcd_client_destroy(&etcd);
}

static void publish_done_cb(uv_work_t *w, int status)
{
	struct publish_job *j = w->data;
	node_status_publisher *pub = j->pub;
	if (pub != NULL) {
		pub->job = NULL;
		if (status == 0 && j->status == MAIL_OK) {
			free(pub->written);
			pub->written = j->value;
			j->value = NULL;
			pub->writes++;
		} else {
			log_event(LOG_WARN, LOG_SVC, "event=status_publish_failed key=%s "
				  "status=%s", j->key, mail_error_info(j->status)->name);
		}
	}
	etcd_conf_free(&j->etcd);
	free(j->key);
	free(j->value);
	free(j);
}

static void publish_timer_cb(uv_timer_t *t)
{
	node_status_publisher *pub = t->data;
	if (pub->job != NULL)
		return;
	buf value;
	buf_init(&value);
	pub->collect(&value, pub->arg);
	buf_append(&value, "", 1);
	uint64_t now = util_now_mono_ms();
	if (!node_status_due(pub->written, (const char *)value.data, now, pub->last_attempt_ms,
			     pub->min_interval_ms)) {
		buf_deinit(&value);
		return;
	}
	pub->last_attempt_ms = now;
	struct publish_job *j = xcalloc(1, sizeof *j);
	j->work.data = j;
	j->pub = pub;
	j->etcd = etcd_conf_dup(pub->etcd);
	j->key = xstrdup(pub->key);
	j->value = xstrdup((const char *)value.data);
	j->stats = pub->stats;
	buf_deinit(&value);
	pub->job = j;
	uv_queue_work(pub->loop, &j->work, publish_work_cb, publish_done_cb);
}

node_status_publisher *node_status_publisher_start(uv_loop_t *loop,
						   const node_status_settings *set,
						   node_status_collect_fn *collect, void *arg)
{
	node_status_publisher *pub = xcalloc(1, sizeof *pub);
	pub->loop = loop;
	pub->etcd = etcd_conf_dup(set->etcd);
	pub->key = xstrdup(set->key);
	pub->stats = set->stats;
	pub->min_interval_ms = set->min_interval_ms ? set->min_interval_ms
						    : NODE_STATUS_MIN_INTERVAL_MS;
	pub->collect = collect;
	pub->arg = arg;
	pub->timer = xcalloc(1, sizeof *pub->timer);
	uv_timer_init(loop, pub->timer);
	pub->timer->data = pub;
	uint32_t check = set->check_ms ? set->check_ms : NODE_STATUS_CHECK_MS;
	uv_timer_start(pub->timer, publish_timer_cb, check, check);
	return pub;
}

uint64_t node_status_publisher_writes(const node_status_publisher *pub)
{
	return pub->writes;
}

static void publish_timer_close_cb(uv_handle_t *h)
{
	free(h);
}

void node_status_publisher_destroy(node_status_publisher **pubp)
{
	node_status_publisher *pub = *pubp;
	if (pub == NULL)
		return;
	*pubp = NULL;
	uv_close((uv_handle_t *)pub->timer, publish_timer_close_cb);
	if (pub->job != NULL)
		pub->job->pub = NULL; /* it finishes after us */
	etcd_conf_free(&pub->etcd);
	free(pub->key);
	free(pub->written);
	free(pub);
}
