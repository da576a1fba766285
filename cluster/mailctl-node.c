/* mailctl-node.c: `mailctl node ...` and `mailctl partitions` (the cluster
 * map in etcd: router.h, ring.h). Reads and writes etcd directly; the
 * controller (router/controller.h) does the moving.
 */
#include "mailctl-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "etcd.h"
#include "mail-error.h"
#include "ring.h"
#include "router.h"
#include "xalloc.h"

#define NODE_KEY "/mail/v1/nodes/"
#define ALIVE_KEY "/mail/v1/alive/"
#define RING_KEY "/mail/v1/ring/"

/* One role's view: map, records, alive keys. */
typedef struct mailctl_view {
	ring_map *map; /* NULL: no map yet */
	etcd_kv *nodes, *alive;
	size_t n_nodes, n_alive;
} mailctl_view;

static void mailctl_view_free(mailctl_view *v)
{
	ring_map_free(&v->map);
	etcd_kvs_free(v->nodes, v->n_nodes);
	etcd_kvs_free(v->alive, v->n_alive);
	memset(v, 0, sizeof *v);
}

static int mailctl_view_load(etcd_client *c, enum router_role role, mailctl_view *v)
{
	const char *name = router_role_name(role);
	char *k_ring = xasprintf(RING_KEY "%s", name);
	char *k_nodes = xasprintf(NODE_KEY "%s/", name);
	char *k_alive = xasprintf(ALIVE_KEY "%s/", name);
	char *value = NULL;
	size_t len;
	memset(v, 0, sizeof *v);
	int err = etcd_kv_get(c, k_ring, &value, &len, NULL, NULL);
	if (err == MAIL_OK) {
		const char *error;
		if (ring_map_from_json(value, len, &v->map, &error) < 0)
			err = MAIL_ERR_INTERNAL;
	} else if (err == MAIL_ERR_NOT_FOUND) {
		err = MAIL_OK;
	}
	free(value);
	if (err == MAIL_OK)
		err = etcd_kv_range_prefix(c, k_nodes, 0, &v->nodes, &v->n_nodes, NULL);
	if (err == MAIL_OK)
		err = etcd_kv_range_prefix(c, k_alive, 0, &v->alive, &v->n_alive, NULL);
	free(k_ring);
	free(k_nodes);
	free(k_alive);
	if (err != MAIL_OK)
		mailctl_view_free(v);
	return err;
}

static const char *mailctl_key_id(const char *key)
{
	const char *slash = strrchr(key, '/');
	return slash != NULL ? slash + 1 : key;
}

static const etcd_kv *mailctl_view_alive(const mailctl_view *v, const char *id)
{
	for (size_t k = 0; k < v->n_alive; k++) {
		if (strcmp(mailctl_key_id(v->alive[k].key), id) == 0)
			return &v->alive[k];
	}
	return NULL;
}

/* How many partitions list id in "r", and how many have it as primary. */
static void mailctl_view_count(const mailctl_view *v, const char *id, unsigned *replicas_r,
			       unsigned *primaries_r)
{
	*replicas_r = *primaries_r = 0;
	for (uint32_t p = 0; v->map != NULL && p < v->map->n_partitions; p++) {
		if (ring_map_has_replica(v->map, p, id))
			(*replicas_r)++;
		const char *r0 = ring_map_replica(v->map, p, 0);
		if (r0 != NULL && strcmp(r0, id) == 0)
			(*primaries_r)++;
	}
}

static int mailctl_record_draining(const etcd_kv *kv)
{
	json_t *rec = json_loadb(kv->value, kv->value_len, 0, NULL);
	int draining = json_is_true(json_object_get(rec, "draining"));
	json_decref(rec);
	return draining;
}

/* --role R: -1 for both, or the role; -2 when the name is unknown. */
static int mailctl_role_arg(const char *name)
{
	if (name == NULL)
		return -1;
	for (int r = 0; r < ROUTER_ROLE_COUNT_; r++) {
		if (strcmp(name, router_role_name((enum router_role)r)) == 0)
			return r;
	}
	return -2;
}

/* ---- node list --------------------------------------------------------------- */

static int mailctl_node_list(mailctl *ctl, etcd_client *c, int role)
{
	printf("%-6s %-20s %-22s %-5s %-8s %9s %8s\n", "ROLE", "ID", "ADDRESS", "STATE",
	       "DRAINING", "PRIMARIES", "REPLICAS");
	for (int r = 0; r < ROUTER_ROLE_COUNT_; r++) {
		if (role >= 0 && r != role)
			continue;
		mailctl_view v;
		int err = mailctl_view_load(c, (enum router_role)r, &v);
		if (err != MAIL_OK)
			return mailctl_error(ctl, err, "map", router_role_name((enum router_role)r));
		for (size_t k = 0; k < v.n_nodes; k++) {
			const char *id = mailctl_key_id(v.nodes[k].key);
			const etcd_kv *a = mailctl_view_alive(&v, id);
			unsigned reps, prims;
			mailctl_view_count(&v, id, &reps, &prims);
			printf("%-6s %-20s %-22s %-5s %-8s %9u %8u\n",
			       router_role_name((enum router_role)r), id, a != NULL ? a->value : "-",
			       a != NULL ? "alive" : "dead",
			       mailctl_record_draining(&v.nodes[k]) ? "yes" : "no", prims, reps);
		}
		mailctl_view_free(&v);
	}
	return fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
}

/* ---- node drain / remove ------------------------------------------------------ */

/* Set "draining": true on the record (compare-and-swap on its revision). */
static int mailctl_mark_draining(etcd_client *c, const char *key)
{
	for (int attempt = 0; attempt < 8; attempt++) {
		char *value;
		size_t len;
		int64_t mod;
		int err = etcd_kv_get(c, key, &value, &len, &mod, NULL);
		if (err != MAIL_OK)
			return err;
		json_t *rec = json_loadb(value, len, 0, NULL);
		free(value);
		if (!json_is_object(rec)) {
			json_decref(rec);
			rec = json_object();
		}
		json_object_set_new(rec, "draining", json_true());
		char *json = json_dumps(rec, JSON_COMPACT);
		json_decref(rec);
		err = etcd_kv_put_if_mod(c, key, json, strlen(json), mod, NULL);
		free(json);
		if (err != MAIL_ERR_EXISTS)
			return err;
	}
	return MAIL_ERR_TEMP;
}

/* Roles (bits) where node id has a record; <0 on etcd error. */
static int mailctl_node_roles(etcd_client *c, const char *id, int role)
{
	int found = 0;
	for (int r = 0; r < ROUTER_ROLE_COUNT_; r++) {
		if (role >= 0 && r != role)
			continue;
		char *key = xasprintf(NODE_KEY "%s/%s", router_role_name((enum router_role)r), id);
		char *value = NULL;
		size_t len;
		int err = etcd_kv_get(c, key, &value, &len, NULL, NULL);
		free(key);
		free(value);
		if (err == MAIL_OK)
			found |= 1 << r;
		else if (err != MAIL_ERR_NOT_FOUND)
			return -err;
	}
	return found;
}

/* Partitions (and primaries) still listing id on the roles in mask. */
static int mailctl_node_holds(etcd_client *c, const char *id, int mask, unsigned *reps_r,
			      unsigned *prims_r)
{
	*reps_r = *prims_r = 0;
	for (int r = 0; r < ROUTER_ROLE_COUNT_; r++) {
		if ((mask & (1 << r)) == 0)
			continue;
		mailctl_view v;
		int err = mailctl_view_load(c, (enum router_role)r, &v);
		if (err != MAIL_OK)
			return err;
		unsigned reps, prims;
		mailctl_view_count(&v, id, &reps, &prims);
		*reps_r += reps;
		*prims_r += prims;
		mailctl_view_free(&v);
	}
	return MAIL_OK;
}

static int mailctl_node_drain(mailctl *ctl, etcd_client *c, const char *id, int role,
			      int wait, int timeout_s)
{
	int mask = mailctl_node_roles(c, id, role);
	if (mask < 0)
		return mailctl_error(ctl, -mask, "node", id);
	if (mask == 0)
		return mailctl_error(ctl, MAIL_ERR_NOT_FOUND, "node", id);
	for (int r = 0; r < ROUTER_ROLE_COUNT_; r++) {
		if ((mask & (1 << r)) == 0)
			continue;
		char *key = xasprintf(NODE_KEY "%s/%s", router_role_name((enum router_role)r), id);
		int err = mailctl_mark_draining(c, key);
		free(key);
		if (err != MAIL_OK)
			return mailctl_error(ctl, err, "node", id);
	}
	printf("node %s: draining\n", id);
	time_t start = time(NULL);
	for (;;) {
		unsigned reps, prims;
		int err = mailctl_node_holds(c, id, mask, &reps, &prims);
		if (err != MAIL_OK)
			return mailctl_error(ctl, err, "node", id);
		if (reps == 0) {
			printf("node %s: drained (no partitions left)\n", id);
			break;
		}
		printf("node %s: %u partitions left (%u as primary)\n", id, reps, prims);
		fflush(stdout);
		if (!wait)
			break;
		if (timeout_s > 0 && time(NULL) - start >= timeout_s) {
			mailctl_fail(ctl, "node %s: still holds %u partitions after %d s "
				     "(is a controller running?)", id, reps, timeout_s);
			return MAILCTL_OTHER;
		}
		nanosleep(&(struct timespec){ .tv_sec = 1 }, NULL);
	}
	return fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
}

static int mailctl_node_remove(mailctl *ctl, etcd_client *c, const char *id, int role, int force)
{
	int mask = mailctl_node_roles(c, id, role);
	if (mask < 0)
		return mailctl_error(ctl, -mask, "node", id);
	if (mask == 0)
		return mailctl_error(ctl, MAIL_ERR_NOT_FOUND, "node", id);
	unsigned reps, prims;
	int err = mailctl_node_holds(c, id, mask, &reps, &prims);
	if (err != MAIL_OK)
		return mailctl_error(ctl, err, "node", id);
	if (reps > 0 && !force) {
		mailctl_fail(ctl, "node %s still holds %u partitions (%u as primary): "
			     "drain it first (mailctl node drain %s), or --force to drop its "
			     "copies", id, reps, prims, id);
		return MAILCTL_OTHER;
	}
	for (int r = 0; r < ROUTER_ROLE_COUNT_; r++) {
		if ((mask & (1 << r)) == 0)
			continue;
		char *key = xasprintf(NODE_KEY "%s/%s", router_role_name((enum router_role)r), id);
		err = etcd_kv_delete(c, key);
		free(key);
		if (err != MAIL_OK && err != MAIL_ERR_NOT_FOUND)
			return mailctl_error(ctl, err, "node", id);
	}
	printf("node %s: removed\n", id);
	return fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
}

/* ---- partitions --------------------------------------------------------------- */

static void mailctl_print_ids(const ring_map *m, const uint32_t *idx, uint32_t n)
{
	if (n == 0)
		fputs("-", stdout);
	for (uint32_t k = 0; k < n; k++)
		printf("%s%s", k > 0 ? "," : "", m->nodes[idx[k]]);
}

static int mailctl_partitions(mailctl *ctl, etcd_client *c, int role)
{
	for (int r = 0; r < ROUTER_ROLE_COUNT_; r++) {
		if (role >= 0 && r != role)
			continue;
		const char *name = router_role_name((enum router_role)r);
		mailctl_view v;
		int err = mailctl_view_load(c, (enum router_role)r, &v);
		if (err != MAIL_OK)
			return mailctl_error(ctl, err, "map", name);
		if (v.map == NULL) {
			printf("%s: no partition map yet\n", name);
			continue;
		}
		size_t placeable = 0;
		for (size_t k = 0; k < v.n_nodes; k++)
			placeable += !mailctl_record_draining(&v.nodes[k]);
		uint32_t want = v.map->want_replicas < placeable ? v.map->want_replicas
								 : (uint32_t)placeable;
		unsigned no_primary = 0, under = 0;
		for (uint32_t p = 0; p < v.map->n_partitions; p++) {
			const ring_part *part = &v.map->parts[p];
			const char *r0 = ring_map_replica(v.map, p, 0);
			int live = r0 != NULL && mailctl_view_alive(&v, r0) != NULL &&
				   ring_map_is_insync(v.map, p, r0);
			uint32_t live_insync = 0;
			for (uint32_t k = 0; k < part->n_i; k++)
				live_insync += mailctl_view_alive(&v, v.map->nodes[part->i[k]]) != NULL;
			no_primary += !live;
			under += live_insync < want;
			printf("%s %u epoch=%llu primary=%s%s replicas=", name, p,
			       (unsigned long long)part->epoch, r0 != NULL ? r0 : "-",
			       live ? "" : "(down)");
			mailctl_print_ids(v.map, part->r, part->n_r);
			fputs(" insync=", stdout);
			mailctl_print_ids(v.map, part->i, part->n_i);
			putchar('\n');
		}
		printf("%s: %u partitions, R=%u, map epoch %llu, %u without a live primary, "
		       "%u under-replicated\n",
		       name, v.map->n_partitions, v.map->want_replicas,
		       (unsigned long long)v.map->epoch, no_primary, under);
		mailctl_view_free(&v);
	}
	return fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
}

/* ---- dispatch ------------------------------------------------------------------- */

int mailctl_cluster(mailctl *ctl, int argc, char **argv)
{
	/* argv[0] is "node" or "partitions" */
	const char *role_name = NULL, *id = NULL, *sub = NULL;
	int no_wait = 0, force = 0, timeout_s = 0;
	int partitions = strcmp(argv[0], "partitions") == 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--role") == 0 && i + 1 < argc)
			role_name = argv[++i];
		else if (strncmp(a, "--role=", 7) == 0)
			role_name = a + 7;
		else if (strcmp(a, "--no-wait") == 0)
			no_wait = 1;
		else if (strcmp(a, "--force") == 0)
			force = 1;
		else if (strcmp(a, "--timeout") == 0 && i + 1 < argc)
			timeout_s = atoi(argv[++i]);
		else if (a[0] == '-')
			return -1;
		else if (!partitions && sub == NULL)
			sub = a;
		else if (!partitions && id == NULL)
			id = a;
		else
			return -1;
	}
	int role = mailctl_role_arg(role_name);
	if (role == -2) {
		mailctl_fail(ctl, "unknown role %s (queue or store)", role_name);
		return MAILCTL_USAGE;
	}
	etcd_client *c = etcd_client_create(ctl->etcd_url);
	int rc = -1;
	if (partitions)
		rc = mailctl_partitions(ctl, c, role);
	else if (sub != NULL && strcmp(sub, "list") == 0 && id == NULL)
		rc = mailctl_node_list(ctl, c, role);
	else if (sub != NULL && strcmp(sub, "drain") == 0 && id != NULL)
		rc = mailctl_node_drain(ctl, c, id, role, !no_wait, timeout_s);
	else if (sub != NULL && strcmp(sub, "remove") == 0 && id != NULL)
		rc = mailctl_node_remove(ctl, c, id, role, force);
	etcd_client_destroy(&c);
	return rc;
}
