/* conncheck.c: the checker on the loop (conncheck.h): a check's lookups,
 * its deadline, its one callback, cancel and destroy with lookups in
 * flight.
 *
 * A check (conncheck_job) starts all the lookups it can at once and
 * counts them (pending). Each lib/dns callback records its answer and may
 * start more (the forward lookups of PTR names, the TXT of a listing).
 * The check's timer is armed for the deadline; when pending reaches 0 it
 * is re-armed for 0 ms. Either way the check ends in the timer's callback,
 * which cancels what is still open and calls the user's callback: so that
 * callback never runs inside a start call, nor inside lib/dns (where a
 * resolver being destroyed cancels its lookups: dns.h forbids new
 * lookups there, and a user callback that destroyed the checker there
 * would pull the check out from under lib/dns).
 *
 * What a lookup never answered means is written into the result before
 * it is asked (a zone TEMPERROR "timed out", the PTR TEMPERROR, a PTR
 * name's forward lookup temporary), so the deadline only cancels.
 *
 * Memory: a check is unlinked from its checker when it finishes (callback
 * due, cancelled, checker destroyed); its timer then closes and the
 * close callback frees it. So the check outlives the user's callback,
 * and nothing of the checker is touched after unlinking: the checker can
 * be freed at once by its destroy.
 */
#include "conncheck-private.h"

#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

enum conncheck__kind { CONNCHECK__CLIENT, CONNCHECK__RHSBL };

/* The forward lookup of one PTR name. */
enum conncheck__fwd { CONNCHECK__FWD_TEMP = 0, CONNCHECK__FWD_MATCH, CONNCHECK__FWD_NO_MATCH };

/* One lib/dns lookup of a check: its callback's arg. */
struct conncheck__lookup {
	conncheck_job *job;
	dns_request *req; /* in flight; NULL when answered or never asked */
	size_t index;     /* of the PTR name or the zone */
};

struct conncheck_job {
	conncheck_checker *c; /* NULL once finished */
	enum conncheck__kind kind;
	union {
		conncheck_client_cb *client;
		conncheck_rhsbl_cb *rhsbl;
	} cb;
	void *arg;
	uv_timer_t timer;
	unsigned pending;            /* lookups in flight */
	conncheck_job *prev, *next;  /* in c->jobs while running */

	/* CLIENT */
	struct sockaddr_storage client; /* ss_family 0: no usable address */
	char ip[INET6_ADDRSTRLEN];
	enum conncheck_ptr_status ptr;
	struct conncheck__lookup ptr_lookup;
	char (*names)[CONNCHECK_NAME_MAX + 1]; /* usable PTR names, at most
						* CONNCHECK_PTR_NAMES_MAX */
	size_t nnames;
	struct conncheck__lookup fwd_lookup[CONNCHECK_PTR_NAMES_MAX];
	enum conncheck__fwd fwd[CONNCHECK_PTR_NAMES_MAX];

	/* RHSBL */
	char domain[CONNCHECK_NAME_MAX + 1];

	/* the list zones */
	struct conncheck_bl_zone *zones;
	struct conncheck__lookup *bl_lookup;
	size_t nzones, zones_dropped;
};

struct conncheck_checker {
	uv_loop_t *loop;
	dns_resolver *resolver;
	struct conncheck_settings set;
	conncheck_job *jobs; /* running, newest first */
};

const char *conncheck_ptr_status_name(enum conncheck_ptr_status status)
{
	switch (status) {
	case CONNCHECK_PTR_FOUND:
		return "found";
	case CONNCHECK_PTR_NONE:
		return "none";
	case CONNCHECK_PTR_TEMPERROR:
		return "temperror";
	}
	return "unknown";
}

const char *conncheck_fcrdns_status_name(enum conncheck_fcrdns_status status)
{
	switch (status) {
	case CONNCHECK_FCRDNS_PASS:
		return "pass";
	case CONNCHECK_FCRDNS_FAIL:
		return "fail";
	case CONNCHECK_FCRDNS_TEMPERROR:
		return "temperror";
	}
	return "unknown";
}

const char *conncheck_bl_status_name(enum conncheck_bl_status status)
{
	switch (status) {
	case CONNCHECK_BL_NOT_LISTED:
		return "not_listed";
	case CONNCHECK_BL_LISTED:
		return "listed";
	case CONNCHECK_BL_TEMPERROR:
		return "temperror";
	case CONNCHECK_BL_IGNORED:
		return "ignored";
	case CONNCHECK_BL_UNCHECKED:
		return "unchecked";
	}
	return "unknown";
}

struct conncheck_settings conncheck_settings_default(void)
{
	return (struct conncheck_settings){
		.timeout_ms = CONNCHECK_TIMEOUT_MS_DEFAULT,
		.max_zones = CONNCHECK_MAX_ZONES_DEFAULT,
		.no_txt = 0,
	};
}

/* ---- the life of a check ---- */

static void conncheck__close_cb(uv_handle_t *handle)
{
	conncheck_job *job = handle->data;
	free(job->names);
	free(job->zones);
	free(job->bl_lookup);
	free(job);
}

static void conncheck__cancel_lookup(struct conncheck__lookup *l)
{
	if (l->req == NULL)
		return;
	dns_request_cancel(&l->req);
	l->job->pending--;
}

/* Withdraw every lookup still open: their answers, as written before
 * they were asked, stand. */
static void conncheck__cancel_lookups(conncheck_job *job)
{
	conncheck__cancel_lookup(&job->ptr_lookup);
	for (size_t i = 0; i < job->nnames; i++)
		conncheck__cancel_lookup(&job->fwd_lookup[i]);
	for (size_t i = 0; i < job->nzones; i++)
		conncheck__cancel_lookup(&job->bl_lookup[i]);
}

/* Out of the checker, lookups cancelled, the timer closing: no callback
 * after this; the memory goes in conncheck__close_cb. */
static void conncheck__finish(conncheck_job *job)
{
	conncheck_checker *c = job->c;
	if (job->prev != NULL)
		job->prev->next = job->next;
	else
		c->jobs = job->next;
	if (job->next != NULL)
		job->next->prev = job->prev;
	job->prev = job->next = NULL;
	job->c = NULL;
	conncheck__cancel_lookups(job);
	uv_close((uv_handle_t *)&job->timer, conncheck__close_cb);
}

static void conncheck__bl_result(conncheck_job *job, struct conncheck_bl_result *r)
{
	*r = (struct conncheck_bl_result){ .zones = job->zones,
					   .count = job->nzones,
					   .zones_dropped = job->zones_dropped };
	for (size_t i = 0; i < job->nzones; i++) {
		r->listed += job->zones[i].status == CONNCHECK_BL_LISTED;
		r->temperror += job->zones[i].status == CONNCHECK_BL_TEMPERROR;
	}
}

/* FCrDNS from the forward lookups: the first name (in PTR order) that
 * matched; else temporary when the PTR or one name's lookup was. */
static enum conncheck_fcrdns_status conncheck__fcrdns(const conncheck_job *job, size_t *name_r)
{
	if (job->ptr == CONNCHECK_PTR_TEMPERROR)
		return CONNCHECK_FCRDNS_TEMPERROR;
	int temp = 0;
	for (size_t i = 0; i < job->nnames; i++) {
		if (job->fwd[i] == CONNCHECK__FWD_MATCH) {
			*name_r = i;
			return CONNCHECK_FCRDNS_PASS;
		}
		temp |= job->fwd[i] == CONNCHECK__FWD_TEMP;
	}
	return temp ? CONNCHECK_FCRDNS_TEMPERROR : CONNCHECK_FCRDNS_FAIL;
}

static void conncheck__timer_cb(uv_timer_t *timer)
{
	conncheck_job *job = timer->data;
	/* unlinked and closing before the callback: it may destroy the
	 * checker or start checks; job stays allocated until the close */
	conncheck__finish(job);
	if (job->kind == CONNCHECK__RHSBL) {
		struct conncheck_rhsbl_result r = { .domain = job->domain };
		conncheck__bl_result(job, &r.rhsbl);
		job->cb.rhsbl(&r, job->arg);
		return;
	}
	size_t name = 0;
	struct conncheck_client_result r = {
		.ptr = job->ptr,
		.ptr_name = job->ptr == CONNCHECK_PTR_FOUND ? job->names[0] : "",
		.fcrdns = conncheck__fcrdns(job, &name),
		.ip = job->ip,
	};
	r.fcrdns_name = r.fcrdns == CONNCHECK_FCRDNS_PASS ? job->names[name] : "";
	conncheck__bl_result(job, &r.dnsbl);
	job->cb.client(&r, job->arg);
}

static conncheck_job *conncheck__job_new(conncheck_checker *c, enum conncheck__kind kind,
					 void *arg)
{
	conncheck_job *job = xcalloc(1, sizeof *job);
	job->c = c;
	job->kind = kind;
	job->arg = arg;
	job->ptr_lookup.job = job;
	uv_timer_init(c->loop, &job->timer);
	job->timer.data = job;
	job->next = c->jobs;
	if (c->jobs != NULL)
		c->jobs->prev = job;
	c->jobs = job;
	return job;
}

/* One lookup fewer in flight: when none is left, the check ends on the
 * next loop turn (from its timer, never from here: see the top). */
static void conncheck__lookup_done(conncheck_job *job)
{
	if (--job->pending == 0)
		uv_timer_start(&job->timer, conncheck__timer_cb, 0, 0);
}

/* Every lookup asked: arm the deadline, or end on the next turn when
 * nothing was asked. The loop's clock is refreshed first: it is as old
 * as this loop turn, and a check started late in a long turn would else
 * get less than timeout_ms. */
static void conncheck__job_armed(conncheck_job *job)
{
	uv_update_time(job->c->loop);
	uv_timer_start(&job->timer, conncheck__timer_cb,
		       job->pending > 0 ? job->c->set.timeout_ms : 0, 0);
}

/* ---- list zones ---- */

static void conncheck__txt_cb(enum dns_status status, const struct dns_txt_result *result,
			      void *arg)
{
	struct conncheck__lookup *l = arg;
	l->req = NULL;
	if (status == DNS_OK)
		conncheck__txt_clean(result->records[0].data, result->records[0].len,
				     l->job->zones[l->index].txt,
				     sizeof l->job->zones[l->index].txt);
	conncheck__lookup_done(l->job);
}

static void conncheck__bl_cb(enum dns_status status, const struct dns_addrs *result, void *arg)
{
	struct conncheck__lookup *l = arg;
	conncheck_job *job = l->job;
	struct conncheck_bl_zone *z = &job->zones[l->index];
	l->req = NULL;
	switch (status) {
	case DNS_OK:
		conncheck__bl_classify(result->addrs, result->count, z);
		break;
	case DNS_NXDOMAIN:
		z->status = CONNCHECK_BL_NOT_LISTED;
		z->detail = "nxdomain";
		break;
	case DNS_NODATA:
		z->status = CONNCHECK_BL_NOT_LISTED;
		z->detail = "no A record";
		break;
	case DNS_BADNAME: /* checked before asking: cannot happen */
		z->status = CONNCHECK_BL_UNCHECKED;
		z->detail = "name too long";
		break;
	default: /* TEMP; CANCELLED: the resolver is being destroyed */
		z->status = CONNCHECK_BL_TEMPERROR;
		z->detail = "dns failure";
		break;
	}
	/* the TXT is asked only of a listing: most answers are not, and
	 * asking it beside every A would double the queries */
	if (z->status == CONNCHECK_BL_LISTED && !job->c->set.no_txt) {
		l->req = dns_resolve_txt(job->c->resolver, z->query, conncheck__txt_cb, l);
		job->pending++;
	}
	conncheck__lookup_done(job);
}

/* zones[0..n) into the check, each UNCHECKED until conncheck__bl_ask;
 * detail "bad zone" for a zone that is no name, else NULL: the caller
 * says why it asks nothing, or asks. */
static void conncheck__bl_init(conncheck_job *job, const char *const *zones, size_t n)
{
	if (zones == NULL)
		n = 0;
	size_t keep = n < job->c->set.max_zones ? n : job->c->set.max_zones;
	job->zones_dropped = n - keep;
	job->nzones = keep;
	if (keep == 0)
		return;
	job->zones = xcalloc(keep, sizeof *job->zones);
	job->bl_lookup = xcalloc(keep, sizeof *job->bl_lookup);
	for (size_t i = 0; i < keep; i++) {
		struct conncheck_bl_zone *z = &job->zones[i];
		job->bl_lookup[i] = (struct conncheck__lookup){ .job = job, .index = i };
		z->status = CONNCHECK_BL_UNCHECKED;
		const char *given = zones[i] != NULL ? zones[i] : "";
		if (conncheck__name(given, 2, z->zone, sizeof z->zone) < 0) {
			size_t len = strnlen(given, CONNCHECK_NAME_MAX);
			memcpy(z->zone, given, len);
			z->zone[len] = '\0';
			z->detail = "bad zone";
		}
	}
}

/* Ask zone i for z->query, unless it is already UNCHECKED by its name. */
static void conncheck__bl_ask(conncheck_job *job, size_t i)
{
	struct conncheck_bl_zone *z = &job->zones[i];
	struct conncheck__lookup *l = &job->bl_lookup[i];
	z->status = CONNCHECK_BL_TEMPERROR;
	z->detail = "timed out";
	l->req = dns_resolve_host(job->c->resolver, z->query, conncheck__bl_cb, l);
	job->pending++;
}

/* ---- the client: PTR, FCrDNS ---- */

static void conncheck__fwd_cb(enum dns_status status, const struct dns_addrs *result, void *arg)
{
	struct conncheck__lookup *l = arg;
	conncheck_job *job = l->job;
	l->req = NULL;
	if (status == DNS_OK && conncheck__addr_match(&job->client, result->addrs, result->count)) {
		job->fwd[l->index] = CONNCHECK__FWD_MATCH;
		/* decided, unless a name before this one matches too: the
		 * result names the first that does, so later ones may go */
		for (size_t i = l->index + 1; i < job->nnames; i++)
			conncheck__cancel_lookup(&job->fwd_lookup[i]);
	} else if (status == DNS_OK || dns_status_permanent(status)) {
		job->fwd[l->index] = CONNCHECK__FWD_NO_MATCH;
	}
	conncheck__lookup_done(job);
}

static void conncheck__ptr_cb(enum dns_status status, const struct dns_names *result, void *arg)
{
	struct conncheck__lookup *l = arg;
	conncheck_job *job = l->job;
	l->req = NULL;
	if (status == DNS_OK) {
		size_t n = result->count < CONNCHECK_PTR_NAMES_MAX ? result->count
								   : CONNCHECK_PTR_NAMES_MAX;
		job->names = xcalloc(n, sizeof *job->names);
		for (size_t i = 0; i < n; i++) {
			if (conncheck__name(result->names[i], 1, job->names[job->nnames],
					    sizeof job->names[0]) == 0)
				job->nnames++;
		}
	}
	if (status == DNS_OK && job->nnames > 0) {
		job->ptr = CONNCHECK_PTR_FOUND;
		for (size_t i = 0; i < job->nnames; i++) {
			/* fwd[i] is CONNCHECK__FWD_TEMP until answered */
			job->fwd_lookup[i] = (struct conncheck__lookup){ .job = job, .index = i };
			job->fwd_lookup[i].req = dns_resolve_host(job->c->resolver, job->names[i],
								  conncheck__fwd_cb,
								  &job->fwd_lookup[i]);
			job->pending++;
		}
	} else if (status == DNS_OK || dns_status_permanent(status)) {
		job->ptr = CONNCHECK_PTR_NONE;
	}
	/* else TEMP or CANCELLED: stays CONNCHECK_PTR_TEMPERROR */
	conncheck__lookup_done(job);
}

conncheck_job *conncheck_client_start(conncheck_checker *c, const struct sockaddr *client,
				      const char *const *zones, size_t n,
				      conncheck_client_cb *cb, void *arg)
{
	conncheck_job *job = conncheck__job_new(c, CONNCHECK__CLIENT, arg);
	job->cb.client = cb;
	conncheck__bl_init(job, zones, n);
	if (conncheck__client_addr(client, &job->client) < 0) {
		job->ptr = CONNCHECK_PTR_NONE; /* and FCrDNS fails: no names */
		for (size_t i = 0; i < job->nzones; i++) {
			if (job->zones[i].detail == NULL)
				job->zones[i].detail = "no client address";
		}
		conncheck__job_armed(job);
		return job;
	}
	const void *a = job->client.ss_family == AF_INET
				? (const void *)&((struct sockaddr_in *)&job->client)->sin_addr
				: (const void *)&((struct sockaddr_in6 *)&job->client)->sin6_addr;
	inet_ntop(job->client.ss_family, a, job->ip, sizeof job->ip);

	job->ptr = CONNCHECK_PTR_TEMPERROR; /* until the PTR answers */
	job->ptr_lookup.req = dns_resolve_ptr(c->resolver, (const struct sockaddr *)&job->client,
					      conncheck__ptr_cb, &job->ptr_lookup);
	job->pending++;
	for (size_t i = 0; i < job->nzones; i++) {
		struct conncheck_bl_zone *z = &job->zones[i];
		if (z->detail != NULL)
			continue; /* "bad zone" */
		if (conncheck__reverse_name(&job->client, z->zone, z->query, sizeof z->query) < 0) {
			z->detail = "name too long";
			continue;
		}
		conncheck__bl_ask(job, i);
	}
	conncheck__job_armed(job);
	return job;
}

/* ---- RHSBL ---- */

conncheck_job *conncheck_rhsbl_start(conncheck_checker *c, const char *domain,
				     const char *const *zones, size_t n, conncheck_rhsbl_cb *cb,
				     void *arg)
{
	conncheck_job *job = conncheck__job_new(c, CONNCHECK__RHSBL, arg);
	job->cb.rhsbl = cb;
	conncheck__bl_init(job, zones, n);
	int domain_ok = domain != NULL &&
			conncheck__name(domain, 2, job->domain, sizeof job->domain) == 0;
	for (size_t i = 0; i < job->nzones; i++) {
		struct conncheck_bl_zone *z = &job->zones[i];
		if (z->detail != NULL)
			continue; /* "bad zone" */
		if (!domain_ok) {
			z->detail = "bad domain";
			continue;
		}
		size_t dlen = strlen(job->domain), zlen = strlen(z->zone);
		if (dlen + 1 + zlen > CONNCHECK_NAME_MAX) {
			z->detail = "name too long";
			continue;
		}
		memcpy(z->query, job->domain, dlen);
		z->query[dlen] = '.';
		memcpy(z->query + dlen + 1, z->zone, zlen + 1);
		conncheck__bl_ask(job, i);
	}
	conncheck__job_armed(job);
	return job;
}

void conncheck_cancel(conncheck_job **jobp)
{
	conncheck_job *job = *jobp;
	if (job == NULL)
		return;
	*jobp = NULL;
	conncheck__finish(job);
}

/* ---- the checker ---- */

int conncheck_checker_create(uv_loop_t *loop, dns_resolver *resolver,
			     const struct conncheck_settings *settings,
			     conncheck_checker **checker_r, const char **error_r)
{
	*checker_r = NULL;
	struct conncheck_settings set = settings != NULL ? *settings
							 : conncheck_settings_default();
	if (set.timeout_ms == 0)
		set.timeout_ms = CONNCHECK_TIMEOUT_MS_DEFAULT;
	if (set.max_zones == 0)
		set.max_zones = CONNCHECK_MAX_ZONES_DEFAULT;
	set.no_txt = set.no_txt != 0;
	if (set.timeout_ms < CONNCHECK_TIMEOUT_MS_MIN || set.timeout_ms > CONNCHECK_TIMEOUT_MS_MAX) {
		*error_r = "conncheck: timeout_ms out of 10..60000";
		return -1;
	}
	if (set.max_zones < CONNCHECK_MAX_ZONES_MIN || set.max_zones > CONNCHECK_MAX_ZONES_MAX) {
		*error_r = "conncheck: max_zones out of 1..16";
		return -1;
	}
	conncheck_checker *c = xcalloc(1, sizeof *c);
	c->loop = loop;
	c->resolver = resolver;
	c->set = set;
	*checker_r = c;
	return 0;
}

void conncheck_checker_destroy(conncheck_checker **checker)
{
	conncheck_checker *c = *checker;
	if (c == NULL)
		return;
	*checker = NULL;
	while (c->jobs != NULL)
		conncheck__finish(c->jobs);
	free(c);
}
