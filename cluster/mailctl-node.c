/* mailctl-node.c: `mailctl node ...` and `mailctl partitions` (the cluster
 * map in etcd: router.h, ring.h). Reads and writes etcd directly; the
 * controller (router/controller.h) does the moving.
 *
 * Replication lag comes from the status key of each partition's primary
 * (router/node-status.h): it lists the partitions the node leads, with
 * their epochs, and the peers more than NODE_STATUS_LAG_SLACK entries
 * behind (rounded to two significant digits); a peer not listed is in sync
 * (lag 0). A lag is unknown ("?") when the primary's node has no alive key
 * (its status may be stale), no status, or does not claim the partition at
 * the map's epoch (a failover or an epoch change not yet published).
 *
 * The reading of one role (mailctl_view_*, declared in mailctl-private.h)
 * is shared with `mailctl status` (mailctl-status.c).
 */
#include "mailctl-private.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "etcd.h"
#include "mail-error.h"
#include "node-status.h"
#include "ring.h"
#include "router.h"
#include "util.h"
#include "xalloc.h"

#define NODE_KEY "/mail/v1/nodes/"
#define ALIVE_KEY "/mail/v1/alive/"
#define RING_KEY "/mail/v1/ring/"
#define STATUS_KEY NODE_STATUS_KEY

void mailctl_view_free(mailctl_view *v)
{
	ring_map_free(&v->map);
	for (size_t k = 0; v->status_leads != NULL && k < v->n_status; k++)
		free(v->status_leads[k]);
	free(v->status_leads);
	free(v->status_n);
	etcd_kvs_free(v->nodes, v->n_nodes);
	etcd_kvs_free(v->alive, v->n_alive);
	etcd_kvs_free(v->status, v->n_status);
	memset(v, 0, sizeof *v);
}

const char *mailctl_key_id(const char *key)
{
	const char *slash = strrchr(key, '/');
	return slash != NULL ? slash + 1 : key;
}

const etcd_kv *mailctl_view_alive(const mailctl_view *v, const char *id)
{
	for (size_t k = 0; k < v->n_alive; k++) {
		if (strcmp(mailctl_key_id(v->alive[k].key), id) == 0)
			return &v->alive[k];
	}
	return NULL;
}

int mailctl_alive_load(etcd_client *c, enum router_role role, etcd_kv **alive_r, size_t *n_r)
{
	char *k_alive = xasprintf(ALIVE_KEY "%s/", router_role_name(role));
	int err = etcd_kv_range_prefix(c, k_alive, 0, alive_r, n_r, NULL);
	free(k_alive);
	return err;
}

int mailctl_view_load(etcd_client *c, enum router_role role, mailctl_view *v)
{
	const char *name = router_role_name(role);
	char *k_ring = xasprintf(RING_KEY "%s", name);
	char *k_nodes = xasprintf(NODE_KEY "%s/", name);
	char *k_status = xasprintf(STATUS_KEY "%s/", name);
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
		err = mailctl_alive_load(c, role, &v->alive, &v->n_alive);
	if (err == MAIL_OK)
		err = etcd_kv_range_prefix(c, k_status, 0, &v->status, &v->n_status, NULL);
	if (err == MAIL_OK) {
		v->status_leads = xcalloc(v->n_status + 1, sizeof *v->status_leads);
		v->status_n = xcalloc(v->n_status + 1, sizeof *v->status_n);
		for (size_t k = 0; k < v->n_status; k++) {
			/* a status counts only while its node is alive: a dead
			 * node's key is what it last wrote */
			if (mailctl_view_alive(v, mailctl_key_id(v->status[k].key)) == NULL ||
			    node_status_decode(v->status[k].value, v->status[k].value_len,
					       &v->status_leads[k], &v->status_n[k]) < 0)
				v->status_n[k] = 0;
		}
	}
	free(k_ring);
	free(k_nodes);
	free(k_status);
	if (err != MAIL_OK)
		mailctl_view_free(v);
	return err;
}

void mailctl_view_count(const mailctl_view *v, const char *id, unsigned *replicas_r,
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

int mailctl_record_draining(const etcd_kv *kv)
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
	time_t start = time(NULL), shown = 0;
	unsigned last_reps = UINT_MAX, last_prims = UINT_MAX;
	for (;;) {
		unsigned reps, prims;
		int err = mailctl_node_holds(c, id, mask, &reps, &prims);
		if (err != MAIL_OK)
			return mailctl_error(ctl, err, "node", id);
		if (reps == 0) {
			printf("node %s: drained (no partitions left)\n", id);
			break;
		}
		/* a line when the count moves, else one every 30 s */
		if (reps != last_reps || prims != last_prims || time(NULL) - shown >= 30) {
			printf("node %s: %u partitions left (%u as primary)\n", id, reps, prims);
			fflush(stdout);
			last_reps = reps;
			last_prims = prims;
			shown = time(NULL);
		}
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

int mailctl_view_lag(const mailctl_view *v, uint32_t p, uint32_t k, uint64_t *lag_r)
{
	const char *primary = ring_map_replica(v->map, p, 0);
	const char *id = ring_map_replica(v->map, p, k);
	if (primary == NULL || id == NULL)
		return 0;
	for (size_t s = 0; s < v->n_status; s++) {
		if (strcmp(mailctl_key_id(v->status[s].key), primary) != 0)
			continue;
		return node_status_lag_of(v->status_leads[s], v->status_n[s], p,
					  v->map->parts[p].epoch, id, lag_r);
	}
	return 0;
}

uint32_t mailctl_view_want(const mailctl_view *v)
{
	size_t placeable = 0;
	for (size_t k = 0; k < v->n_nodes; k++)
		placeable += !mailctl_record_draining(&v->nodes[k]);
	return v->map->want_replicas < placeable ? v->map->want_replicas : (uint32_t)placeable;
}

uint32_t mailctl_view_live_insync(const mailctl_view *v, uint32_t p)
{
	const ring_part *part = &v->map->parts[p];
	uint32_t n = 0;
	for (uint32_t k = 0; k < part->n_i; k++)
		n += mailctl_view_alive(v, v->map->nodes[part->i[k]]) != NULL;
	return n;
}

/* Fully in sync: every replica is in "i" and alive, and there are as many
 * as the ring aims at. */
static int mailctl_view_in_sync(const mailctl_view *v, uint32_t p, uint32_t want)
{
	const ring_part *part = &v->map->parts[p];
	uint32_t live = mailctl_view_live_insync(v, p);
	return part->n_r == part->n_i && live == part->n_i && live >= want;
}

/* One role's sync state, for the summary line. */
typedef struct mailctl_sync {
	unsigned in_sync, catching_up, unknown;
	int lag_known;
	uint64_t max_lag;
} mailctl_sync;

static void mailctl_sync_count(const mailctl_view *v, uint32_t want, mailctl_sync *s)
{
	memset(s, 0, sizeof *s);
	for (uint32_t p = 0; p < v->map->n_partitions; p++) {
		const ring_part *part = &v->map->parts[p];
		s->in_sync += (unsigned)mailctl_view_in_sync(v, p, want);
		for (uint32_t k = 0; k < part->n_r; k++) {
			const char *id = v->map->nodes[part->r[k]];
			uint64_t lag;
			if (!ring_map_is_insync(v->map, p, id) && mailctl_view_alive(v, id) != NULL)
				s->catching_up++;
			if (!mailctl_view_lag(v, p, k, &lag)) {
				s->unknown++;
			} else if (!s->lag_known || lag > s->max_lag) {
				s->lag_known = 1;
				s->max_lag = lag;
			}
		}
	}
}

static const char *mailctl_plural(unsigned n)
{
	return n == 1 ? "" : "s";
}

static void mailctl_sync_print(const char *name, const mailctl_view *v, const mailctl_sync *s)
{
	printf("%s: %u/%u partitions in sync, %u replica%s catching up, max lag ", name,
	       s->in_sync, v->map->n_partitions, s->catching_up, mailctl_plural(s->catching_up));
	if (s->lag_known)
		printf("%llu entries", (unsigned long long)s->max_lag);
	else
		fputs("?", stdout);
	if (s->unknown > 0)
		printf(" (%u replica%s with unknown lag)", s->unknown,
		       mailctl_plural(s->unknown));
	putchar('\n');
}

static void mailctl_print_ids(const ring_map *m, const uint32_t *idx, uint32_t n)
{
	if (n == 0)
		fputs("-", stdout);
	for (uint32_t k = 0; k < n; k++)
		printf("%s%s", k > 0 ? "," : "", m->nodes[idx[k]]);
}

int mailctl_view_primary_live(const mailctl_view *v, uint32_t p)
{
	const char *r0 = ring_map_replica(v->map, p, 0);
	return r0 != NULL && mailctl_view_alive(v, r0) != NULL &&
	       ring_map_is_insync(v->map, p, r0);
}

int mailctl_part_print(const mailctl_view *v, const char *name, uint32_t p)
{
	const ring_part *part = &v->map->parts[p];
	const char *r0 = ring_map_replica(v->map, p, 0);
	int live = mailctl_view_primary_live(v, p);
	printf("%s %u epoch=%llu primary=%s%s replicas=", name, p,
	       (unsigned long long)part->epoch, r0 != NULL ? r0 : "-", live ? "" : "(down)");
	mailctl_print_ids(v->map, part->r, part->n_r);
	fputs(" insync=", stdout);
	mailctl_print_ids(v->map, part->i, part->n_i);
	fputs(" lag=", stdout);
	if (part->n_r == 0)
		fputs("-", stdout);
	for (uint32_t k = 0; k < part->n_r; k++) {
		uint64_t lag;
		printf("%s%s:", k > 0 ? "," : "", v->map->nodes[part->r[k]]);
		if (mailctl_view_lag(v, p, k, &lag))
			printf("%llu", (unsigned long long)lag);
		else
			fputs("?", stdout);
	}
	putchar('\n');
	return live;
}

/* One pass over the roles (role < 0: all): each partition's line (only
 * those not in sync when unsynced_only), the role's totals (not when
 * unsynced_only) and its sync summary. *settled_r = 1 when every partition
 * of every shown role is in sync. Returns MAILCTL_OK or an error. */
static int mailctl_partitions_pass(mailctl *ctl, etcd_client *c, int role, int unsynced_only,
				   int *settled_r)
{
	*settled_r = 1;
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
			mailctl_view_free(&v);
			continue;
		}
		uint32_t want = mailctl_view_want(&v);
		unsigned no_primary = 0, under = 0;
		for (uint32_t p = 0; p < v.map->n_partitions; p++) {
			if (unsynced_only && mailctl_view_in_sync(&v, p, want))
				continue;
			no_primary += !mailctl_part_print(&v, name, p);
			under += mailctl_view_live_insync(&v, p) < want;
		}
		if (!unsynced_only)
			printf("%s: %u partitions, R=%u, map epoch %llu, %u without a live "
			       "primary, %u under-replicated\n",
			       name, v.map->n_partitions, v.map->want_replicas,
			       (unsigned long long)v.map->epoch, no_primary, under);
		mailctl_sync sync;
		mailctl_sync_count(&v, want, &sync);
		mailctl_sync_print(name, &v, &sync);
		*settled_r &= sync.in_sync == v.map->n_partitions;
		mailctl_view_free(&v);
	}
	return fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
}

static int mailctl_partitions(mailctl *ctl, etcd_client *c, int role)
{
	int settled;
	return mailctl_partitions_pass(ctl, c, role, 0, &settled);
}

/* partitions --watch: every interval_s, the partitions not in sync and the
 * sync summary per role, until every partition is in sync (0) or an error.
 * Interrupting it (SIGINT) ends it as usual. */
static int mailctl_partitions_watch(mailctl *ctl, etcd_client *c, int role, int interval_s)
{
	for (;;) {
		time_t now = time(NULL);
		struct tm tm;
		char stamp[16];
		strftime(stamp, sizeof stamp, "%H:%M:%S", localtime_r(&now, &tm));
		printf("-- %s\n", stamp);
		int settled;
		int rc = mailctl_partitions_pass(ctl, c, role, 1, &settled);
		if (rc != MAILCTL_OK)
			return rc;
		if (settled) {
			puts("all partitions in sync");
			break;
		}
		nanosleep(&(struct timespec){ .tv_sec = interval_s }, NULL);
	}
	return fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
}

/* ---- dispatch ------------------------------------------------------------------- */

int mailctl_watch_arg(int argc, char **argv, int *i)
{
	if (*i + 1 >= argc || argv[*i + 1][0] < '0' || argv[*i + 1][0] > '9')
		return MAILCTL_WATCH_DEFAULT_S;
	char *end;
	long s = strtol(argv[++*i], &end, 10);
	if (*end != '\0' || s < 1 || s > MAILCTL_WATCH_MAX_S)
		return -1;
	return (int)s;
}

int mailctl_cluster(mailctl *ctl, int argc, char **argv)
{
	/* argv[0] is "node" or "partitions" */
	const char *role_name = NULL, *id = NULL, *sub = NULL;
	int no_wait = 0, force = 0, timeout_s = 0, watch_s = 0;
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
		else if (partitions && strcmp(a, "--watch") == 0)
			watch_s = mailctl_watch_arg(argc, argv, &i);
		else if (a[0] == '-')
			return -1;
		else if (!partitions && sub == NULL)
			sub = a;
		else if (!partitions && id == NULL)
			id = a;
		else
			return -1;
	}
	if (watch_s < 0) {
		mailctl_fail(ctl, "--watch SECONDS: 1..%d", MAILCTL_WATCH_MAX_S);
		return MAILCTL_USAGE;
	}
	int role = mailctl_role_arg(role_name);
	if (role == -2) {
		mailctl_fail(ctl, "unknown role %s (queue or store)", role_name);
		return MAILCTL_USAGE;
	}
	etcd_client *c = etcd_client_create(&ctl->etcd);
	int rc = -1;
	if (partitions && watch_s > 0)
		rc = mailctl_partitions_watch(ctl, c, role, watch_s);
	else if (partitions)
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
