/* mailctl-status.c: `mailctl status`, the cluster on one screen (issue 12
 * item 6; docs/status.md).
 *
 *   status [--json] [--watch [SECONDS]]
 *
 * One pass reads everything first, then prints it all at once (so a
 * --watch screen is cleared only when the next one is ready):
 *   1. per role (store, queue) the map, node records, alive keys and
 *      status keys (mailctl_view_load, what `node list` and `partitions`
 *      read), and from them each node's partitions led and held and its
 *      worst lag, and the unhealthy partitions: no live primary,
 *      under-replicated (fewer live in-sync members than the ring aims
 *      at), lagging (a replica's lag is known and not 0);
 *   2. the elected controller;
 *   3. the queue: every alive queue node over node RPC, as `queue stats`
 *      asks them (mailctl_queue_depth), within MS_QUEUE_BUDGET_MS;
 *   4. the tenants and each one's user count (the directory), at most
 *      MS_TENANTS_MAX of them.
 * Every etcd call is bounded by the etcd client (1 s connect, 3 s per
 * request). Once one fails the pass reads nothing more from etcd: the rest
 * would fail the same way, each after its timeout.
 *
 * The exit code (ms_exit): 5 when some partition has no live primary;
 * else 4 when etcd could not be read, a registered node has no alive key
 * (dead), or the queue nodes could not all be asked; else 0. Partitions
 * that are only under-replicated or lagging show (health "degraded") but
 * leave it 0: a move or a catch-up makes them for a moment, and a dead
 * node, their lasting cause, already makes it 4.
 *
 * --watch: every SECONDS a new screen (one JSON object per line with
 * --json) until SIGINT, which ends it with exit 0. SIGINT is blocked for
 * the whole command and taken with sigtimedwait() between passes, so no
 * handler and no global flag are needed; one pressed during a pass ends
 * the command right after that pass's screen.
 */
#include "mailctl-private.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "etcd.h"
#include "mail-error.h"
#include "ring.h"
#include "router.h"
#include "util.h"
#include "xalloc.h"

/* The elected controller's node id (router.h), under its lease. */
#define MS_CONTROLLER_KEY "/mail/v1/controller"
/* How long the queue nodes may take, failover retries included. */
#define MS_QUEUE_BUDGET_MS 5000u
/* Tenants whose users are counted (one etcd read each), and the most the
 * text screen lists (--json lists every one counted). */
#define MS_TENANTS_MAX 1000u
#define MS_TENANTS_SHOWN 20u
/* Unhealthy partitions the text screen lists per role. */
#define MS_PARTS_SHOWN 8u
/* The version of the --json object (docs/status.md). */
#define MS_JSON_VERSION 1

/* One node of a role. */
struct ms_node {
	const char *id;         /* borrowed from the view */
	const char *addr;       /* its alive key's value; NULL: dead */
	int draining;
	unsigned led, held;
	unsigned lag_known;     /* its replicas whose lag the primary told */
	unsigned lag_unknown;   /* and those it did not */
	uint64_t max_lag;       /* the worst of those known (entries) */
};

/* An unhealthy partition and why. */
struct ms_part {
	uint32_t p;
	int no_primary, under, lagging;
};

struct ms_role {
	int read;               /* v was read (else etcd failed first) */
	mailctl_view v;
	struct ms_node *nodes;
	size_t n_nodes, n_dead;
	struct ms_part *bad;    /* the unhealthy partitions, in order */
	size_t n_bad;
	unsigned no_primary, under, lagging;
};

struct ms_tenant {
	char *domain;
	size_t users;
};

/* What one pass read; ms_pass_free frees it. */
typedef struct ms_pass {
	int64_t now_ms;
	char *etcd_error;       /* NULL: every etcd read answered */
	char *controller;       /* NULL: none elected, or not read */
	struct ms_role roles[ROUTER_ROLE_COUNT_];
	int queue_read;         /* the queue nodes were asked */
	int queue_rc;           /* mailctl_queue_depth's exit code */
	struct mailctl_queue_depth queue;
	char *queue_error;      /* its lines, or NULL */
	int tenants_read;
	struct ms_tenant *tenants;
	size_t n_tenants;       /* counted: at most MS_TENANTS_MAX */
	size_t n_tenants_all;
} ms_pass;

/* The roles in the order shown. */
static const enum router_role ms_roles[] = { ROUTER_ROLE_STORE, ROUTER_ROLE_QUEUE };
#define MS_N_ROLES (sizeof ms_roles / sizeof ms_roles[0])

static void ms_pass_free(ms_pass *s)
{
	for (size_t r = 0; r < ROUTER_ROLE_COUNT_; r++) {
		mailctl_view_free(&s->roles[r].v);
		free(s->roles[r].nodes);
		free(s->roles[r].bad);
	}
	for (size_t t = 0; t < s->n_tenants; t++)
		free(s->tenants[t].domain);
	free(s->tenants);
	free(s->etcd_error);
	free(s->controller);
	free(s->queue_error);
	memset(s, 0, sizeof *s);
}

/* ---- reading ----------------------------------------------------------------- */

/* Note the first etcd failure (err, an enum mail_error; c: the client that
 * failed, for its last error line, or NULL). */
static void ms_etcd_failed(ms_pass *s, const etcd_client *c, int err)
{
	if (s->etcd_error != NULL)
		return;
	const char *why = c != NULL ? etcd_client_last_error(c) : "";
	s->etcd_error = xasprintf("%s%s%s%s", mail_error_info(err)->name,
				  why[0] != '\0' ? " (" : "", why, why[0] != '\0' ? ")" : "");
}

static struct ms_node *ms_node_find(struct ms_role *role, const char *id)
{
	for (size_t k = 0; k < role->n_nodes; k++) {
		if (strcmp(role->nodes[k].id, id) == 0)
			return &role->nodes[k];
	}
	return NULL;
}

/* Partition p of role's map: its problems, and its replicas' lags into
 * their nodes. */
static void ms_part_read(struct ms_role *role, uint32_t want, uint32_t p)
{
	const mailctl_view *v = &role->v;
	const ring_part *part = &v->map->parts[p];
	struct ms_part bp = { .p = p };
	bp.no_primary = !mailctl_view_primary_live(v, p);
	bp.under = mailctl_view_live_insync(v, p) < want;
	for (uint32_t k = 0; k < part->n_r; k++) {
		struct ms_node *n = ms_node_find(role, v->map->nodes[part->r[k]]);
		uint64_t lag;
		if (!mailctl_view_lag(v, p, k, &lag)) {
			if (n != NULL)
				n->lag_unknown++;
			continue;
		}
		bp.lagging |= lag > 0;
		if (n != NULL && (n->lag_known++ == 0 || lag > n->max_lag))
			n->max_lag = lag;
	}
	role->no_primary += (unsigned)bp.no_primary;
	role->under += (unsigned)bp.under;
	role->lagging += (unsigned)bp.lagging;
	if (bp.no_primary || bp.under || bp.lagging)
		role->bad[role->n_bad++] = bp;
}

static void ms_role_read(etcd_client *c, enum router_role r, ms_pass *s)
{
	struct ms_role *role = &s->roles[r];
	int err = mailctl_view_load(c, r, &role->v);
	if (err != MAIL_OK) {
		ms_etcd_failed(s, c, err);
		return;
	}
	role->read = 1;
	const mailctl_view *v = &role->v;
	role->nodes = xcalloc(v->n_nodes + 1, sizeof *role->nodes);
	for (size_t k = 0; k < v->n_nodes; k++) {
		struct ms_node *n = &role->nodes[role->n_nodes++];
		n->id = mailctl_key_id(v->nodes[k].key);
		const etcd_kv *alive = mailctl_view_alive(v, n->id);
		n->addr = alive != NULL ? alive->value : NULL;
		role->n_dead += alive == NULL;
		n->draining = mailctl_record_draining(&v->nodes[k]);
		mailctl_view_count(v, n->id, &n->held, &n->led);
	}
	if (v->map == NULL)
		return;
	uint32_t want = mailctl_view_want(v);
	role->bad = xcalloc(v->map->n_partitions + 1, sizeof *role->bad);
	for (uint32_t p = 0; p < v->map->n_partitions; p++)
		ms_part_read(role, want, p);
}

static void ms_controller_read(etcd_client *c, ms_pass *s)
{
	char *value = NULL;
	size_t len;
	int err = etcd_kv_get(c, MS_CONTROLLER_KEY, &value, &len, NULL, NULL);
	if (err == MAIL_OK)
		s->controller = value;
	else if (err != MAIL_ERR_NOT_FOUND)
		ms_etcd_failed(s, c, err);
	else
		free(value);
}

static void ms_tenants_read(mailctl *ctl, ms_pass *s)
{
	char **names = NULL;
	size_t n = 0;
	int err = directory_tenant_list(ctl->dir, &names, &n);
	if (err != MAIL_OK) {
		ms_etcd_failed(s, NULL, err);
		return;
	}
	s->n_tenants_all = n;
	s->tenants = xcalloc((n < MS_TENANTS_MAX ? n : MS_TENANTS_MAX) + 1, sizeof *s->tenants);
	for (size_t t = 0; t < n; t++) {
		if (t >= MS_TENANTS_MAX || err != MAIL_OK) {
			free(names[t]);
			continue;
		}
		char **users = NULL;
		size_t n_users = 0;
		err = directory_user_list(ctl->dir, names[t], &users, &n_users);
		if (err == MAIL_ERR_NOT_FOUND)   /* deleted since the listing */
			err = MAIL_OK;
		for (size_t u = 0; u < n_users; u++)
			free(users[u]);
		free(users);
		s->tenants[s->n_tenants++] = (struct ms_tenant){ names[t], n_users };
	}
	free(names);
	if (err != MAIL_OK)
		ms_etcd_failed(s, NULL, err);
	else
		s->tenants_read = 1;
}

static void ms_pass_read(mailctl *ctl, etcd_client *c, ms_pass *s)
{
	memset(s, 0, sizeof *s);
	s->now_ms = util_now_wall_ms();
	for (size_t r = 0; r < MS_N_ROLES && s->etcd_error == NULL; r++)
		ms_role_read(c, ms_roles[r], s);
	if (s->etcd_error == NULL)
		ms_controller_read(c, s);
	if (s->etcd_error == NULL) {
		s->queue_read = 1;
		s->queue_rc = mailctl_queue_depth(ctl, MS_QUEUE_BUDGET_MS, &s->queue,
						  &s->queue_error);
	}
	if (s->etcd_error == NULL)
		ms_tenants_read(ctl, s);
}

/* ---- judging ------------------------------------------------------------------- */

static unsigned ms_no_primary(const ms_pass *s)
{
	unsigned n = 0;
	for (size_t r = 0; r < ROUTER_ROLE_COUNT_; r++)
		n += s->roles[r].no_primary;
	return n;
}

static size_t ms_dead(const ms_pass *s)
{
	size_t n = 0;
	for (size_t r = 0; r < ROUTER_ROLE_COUNT_; r++)
		n += s->roles[r].n_dead;
	return n;
}

static size_t ms_unhealthy(const ms_pass *s)
{
	size_t n = 0;
	for (size_t r = 0; r < ROUTER_ROLE_COUNT_; r++)
		n += s->roles[r].n_bad;
	return n;
}

static int ms_exit(const ms_pass *s)
{
	if (ms_no_primary(s) > 0)
		return MAILCTL_OTHER;
	if (s->etcd_error != NULL || ms_dead(s) > 0 ||
	    (s->queue_read && s->queue_rc != MAILCTL_OK))
		return MAILCTL_UNREACHABLE;
	return MAILCTL_OK;
}

/* "ok", "degraded", "unreachable" or "no_primary" (docs/status.md). */
static const char *ms_health(const ms_pass *s, int rc)
{
	if (rc == MAILCTL_OTHER)
		return "no_primary";
	if (rc == MAILCTL_UNREACHABLE)
		return "unreachable";
	return ms_unhealthy(s) > 0 ? "degraded" : "ok";
}

/* One line each on stderr (a one-shot run, for scripts and logs): the
 * partitions without a live primary, the dead nodes, what could not be
 * read. */
static void ms_report(mailctl *ctl, const ms_pass *s)
{
	if (s->etcd_error != NULL)
		mailctl_fail(ctl, "etcd at %s: %s", ctl->etcd.url, s->etcd_error);
	for (size_t i = 0; i < MS_N_ROLES; i++) {
		const struct ms_role *role = &s->roles[ms_roles[i]];
		const char *name = router_role_name(ms_roles[i]);
		for (size_t k = 0; k < role->n_nodes; k++) {
			if (role->nodes[k].addr == NULL)
				mailctl_fail(ctl, "%s node %s: dead (no alive key)", name,
					     role->nodes[k].id);
		}
		for (size_t b = 0; b < role->n_bad; b++) {
			if (!role->bad[b].no_primary)
				continue;
			const char *r0 = ring_map_replica(role->v.map, role->bad[b].p, 0);
			mailctl_fail(ctl, "%s partition %u: no live primary (primary %s)", name,
				     role->bad[b].p, r0 != NULL ? r0 : "none");
		}
	}
	if (s->queue_error != NULL)
		fputs(s->queue_error, ctl->err);
}

/* ---- text ------------------------------------------------------------------------ */

static void ms_text_nodes(const ms_pass *s)
{
	printf("%-8s %-20s %-22s %-5s %-8s %5s %5s %s\n", "ROLE", "ID", "ADDRESS", "STATE",
	       "DRAINING", "LED", "HELD", "LAG");
	for (size_t i = 0; i < MS_N_ROLES; i++) {
		const struct ms_role *role = &s->roles[ms_roles[i]];
		const char *name = router_role_name(ms_roles[i]);
		if (!role->read) {
			printf("%-8s %-20s (not read: etcd)\n", name, "-");
			continue;
		}
		if (role->n_nodes == 0)
			printf("%-8s %-20s (no node registered)\n", name, "-");
		for (size_t k = 0; k < role->n_nodes; k++) {
			const struct ms_node *n = &role->nodes[k];
			char lag[32];
			if (n->held == 0)
				snprintf(lag, sizeof lag, "-");
			else if (n->lag_known == 0)
				snprintf(lag, sizeof lag, "?");
			else
				snprintf(lag, sizeof lag, "%llu%s", (unsigned long long)n->max_lag,
					 n->lag_unknown > 0 ? "?" : "");
			printf("%-8s %-20s %-22s %-5s %-8s %5u %5u %s\n", name, n->id,
			       n->addr != NULL ? n->addr : "-", n->addr != NULL ? "alive" : "dead",
			       n->draining ? "yes" : "no", n->led, n->held, lag);
		}
	}
	printf("%-8s %-20s (frontends keep no state and do not register in etcd)\n",
	       "frontend", "-");
}

static void ms_text_partitions(const ms_pass *s)
{
	puts("PARTITIONS");
	for (size_t i = 0; i < MS_N_ROLES; i++) {
		const struct ms_role *role = &s->roles[ms_roles[i]];
		const char *name = router_role_name(ms_roles[i]);
		const ring_map *m = role->v.map;
		if (!role->read) {
			printf("%s: not read (etcd)\n", name);
			continue;
		}
		if (m == NULL) {
			printf("%s: no partition map yet\n", name);
			continue;
		}
		printf("%s: %u partitions, R=%u, map epoch %llu: ", name, m->n_partitions,
		       m->want_replicas, (unsigned long long)m->epoch);
		if (role->n_bad == 0) {
			puts("all healthy");
			continue;
		}
		printf("%zu unhealthy (%u without a live primary, %u under-replicated, %u "
		       "lagging)\n", role->n_bad, role->no_primary, role->under, role->lagging);
		for (size_t b = 0; b < role->n_bad && b < MS_PARTS_SHOWN; b++) {
			const struct ms_part *bp = &role->bad[b];
			printf("  %s%s%s%s%s: ", bp->no_primary ? "no-primary" : "",
			       bp->no_primary && (bp->under || bp->lagging) ? "," : "",
			       bp->under ? "under-replicated" : "", bp->under && bp->lagging ? "," : "",
			       bp->lagging ? "lagging" : "");
			mailctl_part_print(&role->v, name, bp->p);
		}
		if (role->n_bad > MS_PARTS_SHOWN)
			printf("  ... and %zu more (mailctl partitions --role %s)\n",
			       role->n_bad - MS_PARTS_SHOWN, name);
	}
}

/* The next line of text at *text (moved past it), without mailctl_fail's
 * prefix: its start and *len_r, or NULL at the end. */
static const char *ms_line_next(const char **text, size_t *len_r)
{
	static const char prefix[] = "mailctl: ";
	const char *line = *text;
	if (line == NULL || *line == '\0')
		return NULL;
	const char *nl = strchr(line, '\n');
	size_t len = nl != NULL ? (size_t)(nl - line) : strlen(line);
	*text = line + len + (nl != NULL);
	if (len >= sizeof prefix - 1 && strncmp(line, prefix, sizeof prefix - 1) == 0) {
		line += sizeof prefix - 1;
		len -= sizeof prefix - 1;
	}
	*len_r = len;
	return line;
}

static void ms_text_queue(const ms_pass *s)
{
	puts("QUEUE");
	if (!s->queue_read) {
		puts("not read (etcd)");
		return;
	}
	const struct mailctl_queue_depth *d = &s->queue;
	if (d->answered > 0)
		printf("messages %u%s (active %u, deferred %u, held %u), %llu bytes, oldest %s; "
		       "%u of %u queue nodes answered\n", d->messages, d->truncated ? "+" : "",
		       d->active, d->deferred, d->held, (unsigned long long)d->bytes, d->oldest,
		       d->answered, d->nodes);
	else
		puts("not read: no queue node answered");
	const char *rest = s->queue_error, *line;
	size_t len;
	while ((line = ms_line_next(&rest, &len)) != NULL)
		printf("  %.*s\n", (int)len, line);
}

static void ms_text_tenants(const ms_pass *s)
{
	if (!s->tenants_read) {
		puts("TENANTS\nnot read (etcd)");
		return;
	}
	printf("TENANTS (%zu)\n", s->n_tenants_all);
	if (s->n_tenants_all > 0)
		printf("%-40s %8s\n", "DOMAIN", "USERS");
	for (size_t t = 0; t < s->n_tenants && t < MS_TENANTS_SHOWN; t++)
		printf("%-40s %8zu\n", s->tenants[t].domain, s->tenants[t].users);
	if (s->n_tenants_all > MS_TENANTS_SHOWN)
		printf("... and %zu more (mailctl tenant list; status --json counts %zu)\n",
		       s->n_tenants_all - MS_TENANTS_SHOWN, s->n_tenants);
}

/* " (etcd, 2 dead nodes, queue nodes)": what made the exit code 4. */
static void ms_text_unreachable(const ms_pass *s)
{
	const char *sep = " (";
	if (s->etcd_error != NULL) {
		printf("%setcd", sep);
		sep = ", ";
	}
	if (ms_dead(s) > 0) {
		printf("%s%zu dead node%s", sep, ms_dead(s), ms_dead(s) == 1 ? "" : "s");
		sep = ", ";
	}
	if (s->queue_read && s->queue_rc != MAILCTL_OK)
		printf("%squeue nodes", sep);
	putchar(')');
}

static void ms_text(mailctl *ctl, const ms_pass *s, int rc)
{
	char when[32];
	time_t t = (time_t)(s->now_ms / 1000);
	struct tm tm;
	strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime_r(&t, &tm));
	printf("cluster status %s: %s", when, ms_health(s, rc));
	if (rc == MAILCTL_OTHER)
		printf(" (%u partitions without a live primary)", ms_no_primary(s));
	else if (rc == MAILCTL_UNREACHABLE)
		ms_text_unreachable(s);
	else if (ms_unhealthy(s) > 0)
		printf(" (%zu unhealthy partitions)", ms_unhealthy(s));
	printf(", exit %d\n", rc);
	printf("etcd %s: %s", ctl->etcd.url, s->etcd_error != NULL ? s->etcd_error : "ok");
	if (s->etcd_error == NULL)
		printf("; controller %s", s->controller != NULL ? s->controller : "none elected");
	printf("\n\n");
	ms_text_nodes(s);
	putchar('\n');
	ms_text_partitions(s);
	putchar('\n');
	ms_text_queue(s);
	putchar('\n');
	ms_text_tenants(s);
}

/* ---- JSON ------------------------------------------------------------------------ */

static json_t *ms_json_str(const char *v)
{
	return v != NULL ? json_string(v) : json_null();
}

static json_t *ms_json_nodes(const struct ms_role *role)
{
	if (!role->read)
		return json_null();
	json_t *a = json_array();
	for (size_t k = 0; k < role->n_nodes; k++) {
		const struct ms_node *n = &role->nodes[k];
		json_array_append_new(a, json_pack(
			"{s:s, s:o, s:b, s:b, s:i, s:i, s:o, s:i}", "id", n->id, "address",
			ms_json_str(n->addr), "alive", n->addr != NULL, "draining", n->draining,
			"led", (int)n->led, "held", (int)n->held, "max_lag",
			n->lag_known > 0 ? json_integer((json_int_t)n->max_lag) : json_null(),
			"lag_unknown", (int)n->lag_unknown));
	}
	return a;
}

static json_t *ms_json_ids(const ring_map *m, const uint32_t *idx, uint32_t n)
{
	json_t *a = json_array();
	for (uint32_t k = 0; k < n; k++)
		json_array_append_new(a, json_string(m->nodes[idx[k]]));
	return a;
}

static json_t *ms_json_part(const mailctl_view *v, const struct ms_part *bp)
{
	const ring_part *part = &v->map->parts[bp->p];
	json_t *problems = json_array(), *lag = json_object();
	if (bp->no_primary)
		json_array_append_new(problems, json_string("no_primary"));
	if (bp->under)
		json_array_append_new(problems, json_string("under_replicated"));
	if (bp->lagging)
		json_array_append_new(problems, json_string("lagging"));
	for (uint32_t k = 0; k < part->n_r; k++) {
		uint64_t l;
		json_object_set_new(lag, v->map->nodes[part->r[k]],
				    mailctl_view_lag(v, bp->p, k, &l) ? json_integer((json_int_t)l)
								      : json_null());
	}
	return json_pack("{s:i, s:I, s:o, s:b, s:o, s:o, s:o, s:o}", "partition", (int)bp->p,
			 "epoch", (json_int_t)part->epoch, "primary",
			 ms_json_str(ring_map_replica(v->map, bp->p, 0)), "primary_live",
			 !bp->no_primary, "replicas", ms_json_ids(v->map, part->r, part->n_r),
			 "insync", ms_json_ids(v->map, part->i, part->n_i), "lag", lag,
			 "problems", problems);
}

static json_t *ms_json_partitions(const struct ms_role *role)
{
	if (!role->read)
		return json_null();
	const ring_map *m = role->v.map;
	json_t *bad = json_array();
	for (size_t b = 0; b < role->n_bad; b++)
		json_array_append_new(bad, ms_json_part(&role->v, &role->bad[b]));
	uint32_t total = m != NULL ? m->n_partitions : 0;
	return json_pack("{s:b, s:i, s:i, s:I, s:i, s:i, s:i, s:i, s:o}", "map", m != NULL,
			 "partitions", (int)total, "replicas", m != NULL ? (int)m->want_replicas : 0,
			 "epoch", (json_int_t)(m != NULL ? m->epoch : 0), "healthy",
			 (int)(total - role->n_bad), "no_primary", (int)role->no_primary,
			 "under_replicated", (int)role->under, "lagging", (int)role->lagging,
			 "unhealthy", bad);
}

static json_t *ms_json_queue(const ms_pass *s)
{
	if (!s->queue_read)
		return json_null();
	const struct mailctl_queue_depth *d = &s->queue;
	json_t *error = json_null();
	if (s->queue_error != NULL) {
		/* the lines, without mailctl_fail's prefix, joined by "; " */
		char *joined = xmalloc(2 * strlen(s->queue_error) + 1);   /* "\n" -> "; " */
		size_t n = 0, len;
		const char *rest = s->queue_error, *line;
		while ((line = ms_line_next(&rest, &len)) != NULL) {
			if (n > 0)
				n += (size_t)sprintf(joined + n, "; ");
			memcpy(joined + n, line, len);
			n += len;
		}
		joined[n] = '\0';
		error = json_string(joined);
		free(joined);
	}
	return json_pack("{s:b, s:o, s:i, s:i, s:i, s:{s:i, s:i, s:i}, s:I, s:I, s:b, s:i, s:i}",
			 "reachable", s->queue_rc == MAILCTL_OK, "error", error, "nodes",
			 (int)d->nodes, "answered", (int)d->answered, "messages", (int)d->messages,
			 "by_state", "active", (int)d->active, "deferred", (int)d->deferred, "held",
			 (int)d->held, "bytes", (json_int_t)d->bytes, "oldest_age_s",
			 (json_int_t)(d->oldest_age_ms / 1000), "truncated", d->truncated,
			 "partitions", (int)d->partitions, "unled_partitions", (int)d->unled);
}

static json_t *ms_json_tenants(const ms_pass *s)
{
	if (!s->tenants_read)
		return json_null();
	json_t *a = json_array();
	for (size_t t = 0; t < s->n_tenants; t++)
		json_array_append_new(a, json_pack("{s:s, s:I}", "domain", s->tenants[t].domain,
						   "users", (json_int_t)s->tenants[t].users));
	return a;
}

static json_t *ms_json(mailctl *ctl, const ms_pass *s, int rc)
{
	json_t *nodes = json_object(), *parts = json_object();
	for (size_t i = 0; i < MS_N_ROLES; i++) {
		const struct ms_role *role = &s->roles[ms_roles[i]];
		json_object_set_new(nodes, router_role_name(ms_roles[i]), ms_json_nodes(role));
		json_object_set_new(parts, router_role_name(ms_roles[i]), ms_json_partitions(role));
	}
	/* frontends do not register: always empty, the key kept for when they do */
	json_object_set_new(nodes, "frontend", json_array());
	return json_pack("{s:i, s:I, s:s, s:i, s:{s:s, s:b, s:o}, s:o, s:o, s:o, s:o, s:o, s:o}",
			 "version", MS_JSON_VERSION, "time", (json_int_t)s->now_ms, "health",
			 ms_health(s, rc), "exit", rc, "etcd", "url", ctl->etcd.url, "reachable",
			 s->etcd_error == NULL, "error", ms_json_str(s->etcd_error), "controller",
			 ms_json_str(s->controller), "nodes", nodes, "partitions", parts, "queue",
			 ms_json_queue(s), "tenants", ms_json_tenants(s), "tenants_total",
			 s->tenants_read ? json_integer((json_int_t)s->n_tenants_all)
					 : json_null());
}

/* ---- the command ------------------------------------------------------------------ */

/* Print one pass: text (clear: the screen first) or JSON (one_line: compact,
 * one line). MAILCTL_OK, or MAILCTL_OTHER when stdout failed. */
static int ms_print(mailctl *ctl, const ms_pass *s, int rc, int json, int clear, int one_line)
{
	if (json) {
		json_t *j = ms_json(ctl, s, rc);
		size_t flags = JSON_PRESERVE_ORDER | (one_line ? JSON_COMPACT : JSON_INDENT(2));
		int ok = j != NULL && json_dumpf(j, stdout, flags) == 0;
		json_decref(j);
		putchar('\n');
		if (!ok)
			return MAILCTL_OTHER;
	} else {
		if (clear)
			fputs("\033[H\033[2J", stdout);
		ms_text(ctl, s, rc);
	}
	return fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
}

int mailctl_status(mailctl *ctl, int argc, char **argv)
{
	/* argv[0] is "status" */
	int json = 0, watch_s = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = 1;
		else if (strcmp(argv[i], "--watch") == 0)
			watch_s = mailctl_watch_arg(argc, argv, &i);
		else
			return -1;
	}
	if (watch_s < 0) {
		mailctl_fail(ctl, "--watch SECONDS: 1..%d", MAILCTL_WATCH_MAX_S);
		return MAILCTL_USAGE;
	}
	/* before any thread starts (libcurl's resolver, libuv's pool): they
	 * inherit the mask, so SIGINT stays pending for sigtimedwait */
	sigset_t intr;
	sigemptyset(&intr);
	sigaddset(&intr, SIGINT);
	if (watch_s > 0)
		pthread_sigmask(SIG_BLOCK, &intr, NULL);
	int clear = watch_s > 0 && isatty(STDOUT_FILENO);
	etcd_client *c = etcd_client_create(&ctl->etcd);
	int rc;
	for (;;) {
		ms_pass s;
		ms_pass_read(ctl, c, &s);
		rc = ms_exit(&s);
		if (watch_s == 0)
			ms_report(ctl, &s);
		int out = ms_print(ctl, &s, rc, json, clear, watch_s > 0);
		ms_pass_free(&s);
		if (out != MAILCTL_OK) {
			rc = out;
			break;
		}
		if (watch_s == 0)
			break;
		struct timespec ts = { .tv_sec = watch_s };
		if (sigtimedwait(&intr, NULL, &ts) == SIGINT) {
			rc = MAILCTL_OK;
			break;
		}
	}
	etcd_client_destroy(&c);
	return rc;
}
