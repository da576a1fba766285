/* smtp-mx.c: the MX: recipient validation against the directory and
 * enqueueing to the queue tier, as callbacks of the SMTP engine.
 *
 * Lifetime: the MX is reference-counted. The owner holds one reference
 * (dropped by smtp_mx_stop) and every in-flight directory lookup or
 * enqueue holds one, so a lookup that finishes after stop still finds its
 * MX. The engine keeps a session alive while its callback is pending, so
 * completing a session whose client has gone is always safe (the reply is
 * dropped by the engine).
 */
#include "smtp-mx.h"

#include "quota-client.h"
#include "smtp-inbound.h"
#include "greylist.h"
#include "conncheck.h"
#include "srs.h"
#include "smtp-trace.h"

#include "auth-pool.h"
#include "sasl.h"

#include "log.h"
#include "mail-error.h"
#include "util.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

struct smtp_mx {
	uv_loop_t *loop;
	smtp_server *server;
	directory *dir;
	queue_client *qc;
	char *log_svc;
	char *hostname;   /* ours, in Received: and Message-ID: */
	int port;
	unsigned refs;
	int submission;
	unsigned (*auth_delay_ms)(void *arg, const char *ip);
	void (*auth_failed)(void *arg, const char *ip);
	void *guard_arg;
	auth_pool *auth;
	smtp_rate *rate;  /* submission: borrowed, or owned when rate_owned */
	int rate_owned;
	smtp_inbound *inbound; /* the MX's authentication checks, or NULL */
	greylist *grey;        /* cluster-wide greylisting, or NULL */
	const struct srs *srs; /* forwarding's sender rewriting, or NULL */
	struct quota_client *quota; /* quotas (borrowed), or NULL */
};

/* Per SMTP session (smtp_session_data): the transaction's recipients as
 * resolved (parallel to the engine's accepted RCPTs) and its inbound
 * checks. Held by the session until on_disconnect and by each lookup or
 * DATA in flight. */
/* A DNSBL or RHSBL answer kept for the session: zones (and, for RHSBL,
 * the domain) it was asked with, and the first listing. */
struct mx_bl {
	char *key;                        /* NULL: nothing kept */
	char listed[CONNCHECK_NAME_MAX + 1]; /* "" not listed */
	char txt[CONNCHECK_TXT_MAX + 1];
	/* client checks only */
	enum conncheck_ptr_status ptr;
	enum conncheck_fcrdns_status fcrdns;
	char name[CONNCHECK_NAME_MAX + 1];
};

struct mx_session {
	unsigned refs;
	struct mx_bl client;   /* PTR, FCrDNS, DNSBL: per connection */
	struct mx_bl rhs;      /* RHSBL of the MAIL FROM domain */
	char *mail_from;       /* the MX's MAIL FROM, for checks started later */
	inbound_txn *txn;      /* started by the first recipient that wants them */
	struct directory_rcpt *rcpts;
	size_t n_rcpts, cap;
	/* limits the end of DATA set for a local recipient's copy in place of
	 * its own (its tenant is full: the store refuses that copy) */
	struct mx_quota_cap *caps;
	size_t n_caps;
};

struct mx_quota_cap {
	char *address;
	struct directory_quota quota;
};

/* One AUTH lookup: held back by the penalty, then on the auth pool. */
struct smtp_mx__auth {
	uv_timer_t timer;
	smtp_mx *mx;
	smtp_session *session;
	enum smtp_auth_kind kind;
	char *user;
	char *password;
};

/* One recipient lookup on the thread pool. */
struct smtp_mx__rcpt {
	uv_work_t work;
	smtp_mx *mx;
	smtp_session *session;
	struct mx_session *ms;
	char *address; /* as given ("postmaster" alone included) */
	char *sender;  /* submission: the authenticated user, normalised */
	int err;       /* directory_rcpt_resolve() result */
	struct directory_rcpt resolved;
	int submission;
	struct directory_tenant_settings settings; /* of the sender's tenant */
	int settings_cached; /* from the cache (before the work) */
	int settings_read;   /* read by the work */
	/* the MX's policy steps (smtp_mx__rcpt_policy) */
	enum spf_status spf; /* MAIL FROM's, once waited for */
	int spf_known;
	int grey_err;        /* greylist_check()'s result */
	struct greylist_verdict grey;
	int grey_skipped;    /* a known domain's SPF pass */
	int conn_done, rhs_done;
	int grey_forced;     /* ptr=greylist and no FCrDNS */
};

/* One enqueue in flight. */
struct smtp_mx__enqueue {
	smtp_mx *mx;
	smtp_session *session;
	char qid[32];
	size_t n_rcpts;
	size_t size;
	char *rate_user;  /* counted by smtp_rate_take() at rate_at, or NULL */
	char *rate_tenant; /* its tenant's key, counted with it, or NULL */
	uint64_t rate_at;
	struct smtp_mx__group *group; /* one of several enqueues, or NULL */
};

/* Several enqueues for one DATA (local copies, and forwarded ones under
 * an SRS sender): the reply waits for all; any failure is the reply (a
 * resend is stored once: queue ids come from the content). */
struct smtp_mx__group {
	unsigned pending;
	int status;          /* the first failure, or MAIL_OK */
	char qid[32];        /* the first enqueue's, for the 250 */
};

static void smtp_mx__ref(smtp_mx *mx)
{
	mx->refs++;
}

static void smtp_mx__unref(smtp_mx *mx)
{
	if (--mx->refs > 0)
		return;
	if (mx->rate_owned)
		smtp_rate_destroy(&mx->rate);
	smtp_inbound_unref(&mx->inbound);
	free(mx->log_svc);
	free(mx->hostname);
	free(mx);
}

static struct mx_session *mx_session_get(smtp_session *s)
{
	struct mx_session *ms = smtp_session_data(s);
	if (ms == NULL) {
		ms = xcalloc(1, sizeof *ms);
		ms->refs = 1; /* the session's, dropped by on_disconnect */
		smtp_session_set_data(s, ms);
	}
	return ms;
}

/* The transaction's recipients and checks go (a new MAIL, the end of
 * DATA, the session's end). */
static void mx_session_reset(struct mx_session *ms)
{
	for (size_t i = 0; i < ms->n_rcpts; i++)
		directory_rcpt_free(&ms->rcpts[i]);
	ms->n_rcpts = 0;
	inbound_txn_release(&ms->txn);
	free(ms->mail_from);
	ms->mail_from = NULL;
	free(ms->rhs.key);
	ms->rhs.key = NULL;
	for (size_t i = 0; i < ms->n_caps; i++)
		free(ms->caps[i].address);
	free(ms->caps);
	ms->caps = NULL;
	ms->n_caps = 0;
}

static void mx_session_unref(struct mx_session *ms)
{
	if (--ms->refs > 0)
		return;
	mx_session_reset(ms);
	free(ms->client.key);
	free(ms->rcpts);
	free(ms);
}

/* Keep r (moved: zeroed) as the next accepted recipient. */
static void mx_session_add(struct mx_session *ms, struct directory_rcpt *r)
{
	if (ms->n_rcpts == ms->cap) {
		ms->cap = ms->cap == 0 ? 4 : ms->cap * 2;
		ms->rcpts = xrealloc(ms->rcpts, ms->cap * sizeof *ms->rcpts);
	}
	ms->rcpts[ms->n_rcpts++] = *r;
	memset(r, 0, sizeof *r);
}

void smtp_mx_settings_init_default(struct smtp_mx_settings *set)
{
	memset(set, 0, sizeof *set);
	smtp_server_settings_init_default(&set->server);
	set->server.port = 2525;
	set->server.log_svc = "smtp-mx";
}

/* ---- the outbound rate limit (submission) ---------------------------- */

/* The normalised authenticated user of s, or NULL (the MX; a name that is
 * not an address). The caller frees it. */
static char *smtp_mx__user(const smtp_mx *mx, smtp_session *s)
{
	const char *user = smtp_session_user(s);
	if (!mx->submission || user == NULL)
		return NULL;
	return util_address_normalize(user, strlen(user));
}

static void smtp_mx__rate_limited(smtp_mx *mx, smtp_session *s, const char *user,
				  unsigned limit, const char *at)
{
	log_event(LOG_WARN, mx->log_svc, "event=rate_limited sid=%s user=%s limit=%u at=%s",
		  smtp_session_id(s), user, limit, at);
	smtp_session_complete(s, 451, "4.7.1", "Outbound rate limit exceeded, try again later");
}

/* Thread pool: the settings of user's tenant into *settings_r. A tenant
 * gone, or a record unreadable (logged by the directory), reads as the
 * defaults (no limit) rather than refusing all its users' mail. MAIL_OK,
 * or the directory's error (unavailable). */
static int smtp_mx__settings_read(smtp_mx *mx, const char *user,
				  struct directory_tenant_settings *settings_r)
{
	int err = directory_tenant_settings_get(mx->dir, util_address_domain(user), settings_r);
	if (err == MAIL_ERR_NOT_FOUND || err == MAIL_ERR_INTERNAL) {
		memset(settings_r, 0, sizeof *settings_r);
		err = MAIL_OK;
	}
	return err;
}

/* RCPT of a remote recipient: 1 (said 451 4.7.1) when user is already at
 * the limit of settings (NULL: unknown, the directory failed; the end of
 * DATA decides). Counts nothing: the count is per message, taken at the
 * end of DATA. */
static int smtp_mx__rate_full(smtp_mx *mx, smtp_session *s, const char *user,
			      const struct directory_tenant_settings *settings)
{
	if (user == NULL || settings == NULL)
		return 0;
	uint64_t now = uv_now(mx->loop);
	if (smtp_rate_over(mx->rate, user, settings->outbound_per_hour, now)) {
		smtp_mx__rate_limited(mx, s, user, settings->outbound_per_hour, "rcpt");
		return 1;
	}
	char key[SMTP_RATE_TENANT_KEY_MAX];
	smtp_rate_tenant_key(util_address_domain(user), key, sizeof key);
	if (smtp_rate_over(mx->rate, key, settings->tenant_outbound_per_hour, now)) {
		smtp_mx__rate_limited(mx, s, key, settings->tenant_outbound_per_hour, "rcpt");
		return 1;
	}
	return 0;
}

/* ---- RCPT ------------------------------------------------------------- */

/* The domain "postmaster" without one means (RFC 5321 4.5.1): our host
 * name's, or the nearest parent of it, when that is a tenant; else the
 * first tenant (a cluster serving one tenant answers for it). Thread
 * pool. NULL: none. */
static char *smtp_mx__postmaster_domain(smtp_mx *mx)
{
	for (const char *d = mx->hostname; d != NULL; d = strchr(d, '.')) {
		if (*d == '.')
			d++;
		if (directory_tenant_exists(mx->dir, d) == MAIL_OK)
			return xstrdup(d);
	}
	char **names = NULL;
	size_t n = 0;
	char *first = NULL;
	if (directory_tenant_list(mx->dir, &names, &n) == MAIL_OK && n > 0)
		first = xstrdup(names[0]);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return first;
}

/* Thread pool: an SRS address at one of our tenants (a bounce of mail we
 * forwarded): 1 when it was one (r->err and r->resolved say where it
 * goes: back to the original sender, or 550 5.1.1 when it is not ours,
 * tampered with or too old). */
static int smtp_mx__srs_rcpt(struct smtp_mx__rcpt *r)
{
	if (r->mx->srs == NULL || r->submission || strncasecmp(r->address, "srs", 3) != 0 ||
	    (r->address[3] != '0' && r->address[3] != '1'))
		return 0;
	char *a = util_address_normalize(r->address, strlen(r->address));
	if (a == NULL)
		return 0;
	char orig[SRS_ADDRESS_MAX + 1];
	int ret = srs_reverse(r->mx->srs, r->address, util_now_wall_ms() / 1000, orig, sizeof orig);
	if (ret == 0) {
		free(a);
		return 0;
	}
	const char *domain = util_address_domain(a);
	r->err = directory_tenant_settings_get(r->mx->dir, domain, &r->resolved.settings);
	if (r->err == MAIL_OK || r->err == MAIL_ERR_INTERNAL) {
		r->resolved.tenant = xstrdup(domain);
		r->err = MAIL_ERR_NOT_FOUND;
	}
	if (ret == 1 && r->resolved.tenant != NULL) {
		r->resolved.routes = xcalloc(1, sizeof *r->resolved.routes);
		r->resolved.routes[0].address = xstrdup(orig);
		r->resolved.routes[0].external = 1;
		r->resolved.n_routes = 1;
		r->resolved.via_alias = 1;
		r->err = MAIL_OK;
	} else if (ret < 0) {
		log_event(LOG_INFO, r->mx->log_svc, "event=srs_refused address=%s error=%s", a,
			  srs_error_name(ret));
	}
	free(a);
	return 1;
}

/* Thread pool: the blocking directory calls, nothing else. */
static void smtp_mx__rcpt_work(uv_work_t *w)
{
	struct smtp_mx__rcpt *r = w->data;
	if (smtp_mx__srs_rcpt(r))
		return;
	char *pm = strchr(r->address, '@') == NULL ? smtp_mx__postmaster_domain(r->mx) : NULL;
	r->err = directory_rcpt_resolve(r->mx->dir, r->address, pm, &r->resolved);
	free(pm);
	/* a remote recipient of submission: is the sender at its limit? */
	if (r->err == MAIL_ERR_NOT_FOUND && r->resolved.tenant == NULL && r->submission &&
	    r->sender != NULL && !r->settings_cached)
		r->settings_read = smtp_mx__settings_read(r->mx, r->sender, &r->settings) == MAIL_OK;
}

static void smtp_mx__rcpt_free(struct smtp_mx__rcpt *r)
{
	smtp_mx *mx = r->mx;
	directory_rcpt_free(&r->resolved);
	mx_session_unref(r->ms);
	free(r->address);
	free(r->sender);
	free(r);
	smtp_mx__unref(mx);
}

/* The recipient is accepted: kept with its routes, 250. */
static void smtp_mx__rcpt_accept(struct smtp_mx__rcpt *r, const char *text)
{
	mx_session_add(r->ms, &r->resolved);
	smtp_session_complete(r->session, 250, "2.1.5", text);
	smtp_mx__rcpt_free(r);
}

/* The transaction's checks, started by the first recipient whose tenant
 * acts on SPF or DMARC (a transaction of tenants that turned both off
 * costs no DNS). 1 when they run. */
static int smtp_mx__checks(smtp_mx *mx, smtp_session *s, struct mx_session *ms,
			   const struct directory_tenant_settings *ts)
{
	if (ms->txn == NULL && mx->inbound != NULL && ms->mail_from != NULL &&
	    !smtp_session_is_closed(s) &&
	    (ts->spf != DIRECTORY_SPF_OFF || ts->dmarc != DIRECTORY_DMARC_OFF || ts->spam))
		ms->txn = inbound_txn_start(mx->inbound, smtp_session_id(s), smtp_session_peer_ip(s),
					    smtp_session_helo(s), ms->mail_from);
	return ms->txn != NULL;
}

/* ---- the MX's policy steps for an existing recipient -------------------------
 *
 * In this order, each only when the recipient's tenant asks for it:
 *   1. SPF: the MAIL FROM result is waited for (spf=reject: a fail is
 *      550 5.7.23; greylisting: a pass of a known domain skips it);
 *   2. greylisting (greylisting=on): the triplet in etcd, on the pool;
 *      DEFER is 451 4.7.1; etcd unavailable lets the mail through.
 * Then the recipient is accepted. */

static void smtp_mx__rcpt_policy(struct smtp_mx__rcpt *r);

static void smtp_mx__rcpt_spf(enum spf_status status, void *arg)
{
	struct smtp_mx__rcpt *r = arg;
	r->spf = status;
	r->spf_known = 1;
	smtp_mx__rcpt_policy(r);
}

/* The domain of the MAIL FROM (the sender greylisting knows), or "". */
static const char *smtp_mx__sender_domain(const struct mx_session *ms)
{
	const char *at = ms->mail_from != NULL ? strrchr(ms->mail_from, '@') : NULL;
	return at != NULL ? at + 1 : "";
}

/* Thread pool: greylisting's etcd calls. */
static void smtp_mx__grey_work(uv_work_t *w)
{
	struct smtp_mx__rcpt *r = w->data;
	int64_t now = util_now_wall_ms();
	const char *domain = smtp_mx__sender_domain(r->ms);
	/* an SPF pass for a domain that passed greylisting before */
	if (r->spf_known && r->spf == SPF_PASS && domain[0] != '\0' &&
	    greylist_domain_known(r->mx->grey, domain, now) == MAIL_OK) {
		r->grey_skipped = 1;
		r->grey_err = MAIL_OK;
		r->grey.action = GREYLIST_PASS;
		return;
	}
	r->grey_err = greylist_check(r->mx->grey, smtp_session_peer_ip(r->session),
				     r->ms->mail_from != NULL ? r->ms->mail_from : "", r->address,
				     r->resolved.settings.greylist_delay, now, &r->grey);
	if (r->grey_err == MAIL_OK && r->grey.action == GREYLIST_PASS && r->spf_known &&
	    r->spf == SPF_PASS && domain[0] != '\0')
		(void)greylist_domain_note(r->mx->grey, domain, now);
}

static void smtp_mx__grey_done(uv_work_t *w, int status)
{
	struct smtp_mx__rcpt *r = w->data;
	smtp_mx *mx = r->mx;
	const char *sid = smtp_session_id(r->session);
	if (status < 0 || r->grey_err != MAIL_OK) {
		/* an etcd outage never blocks mail */
		log_event(LOG_WARN, mx->log_svc, "event=greylist_unavailable sid=%s error=%s", sid,
			  mail_error_info(status < 0 ? MAIL_ERR_INTERNAL : r->grey_err)->name);
	} else if (r->grey.action == GREYLIST_DEFER) {
		log_event(LOG_INFO, mx->log_svc,
			  "event=greylisted sid=%s triplet=%.16s reason=%s retry_after=%u", sid,
			  r->grey.triplet, greylist_reason_name(r->grey.reason),
			  r->grey.retry_after_s);
		char text[96];
		snprintf(text, sizeof text, "Greylisted, try again in %u seconds",
			 r->grey.retry_after_s);
		smtp_session_complete(r->session, 451, "4.7.1", text);
		smtp_mx__rcpt_free(r);
		return;
	} else {
		log_event(LOG_INFO, mx->log_svc, "event=greylist_passed sid=%s reason=%s", sid,
			  r->grey_skipped ? "known_domain" : greylist_reason_name(r->grey.reason));
	}
	smtp_mx__rcpt_accept(r, "Ok");
}

static void smtp_mx__rcpt_refuse(struct smtp_mx__rcpt *r, int code, const char *enh,
				 const char *text)
{
	smtp_session_complete(r->session, code, enh, text);
	smtp_mx__rcpt_free(r);
}

static void smtp_mx__client_cb(const struct conncheck_client_result *res, void *arg)
{
	struct smtp_mx__rcpt *r = arg;
	struct mx_bl *b = &r->ms->client;
	if (res == NULL) {
		/* stopping: nothing known, nothing refused */
		b->ptr = CONNCHECK_PTR_TEMPERROR;
		b->fcrdns = CONNCHECK_FCRDNS_TEMPERROR;
		b->name[0] = b->listed[0] = b->txt[0] = '\0';
		r->conn_done = 1;
		smtp_mx__rcpt_policy(r);
		return;
	}
	b->ptr = res->ptr;
	b->fcrdns = res->fcrdns;
	snprintf(b->name, sizeof b->name, "%s",
		 res->fcrdns_name[0] != '\0' ? res->fcrdns_name : res->ptr_name);
	b->listed[0] = b->txt[0] = '\0';
	for (size_t i = 0; i < res->dnsbl.count; i++) {
		const struct conncheck_bl_zone *z = &res->dnsbl.zones[i];
		if (z->status == CONNCHECK_BL_LISTED && b->listed[0] == '\0') {
			snprintf(b->listed, sizeof b->listed, "%s", z->zone);
			snprintf(b->txt, sizeof b->txt, "%s", z->txt);
		}
		if (z->status == CONNCHECK_BL_TEMPERROR)
			log_event(LOG_WARN, r->mx->log_svc, "event=dnsbl_temperror sid=%s zone=%s",
				  smtp_session_id(r->session), z->zone);
	}
	log_event(LOG_INFO, r->mx->log_svc, "event=client_checked sid=%s ptr=%s fcrdns=%s name=%s "
		  "dnsbl_listed=%zu", smtp_session_id(r->session),
		  conncheck_ptr_status_name(res->ptr), conncheck_fcrdns_status_name(res->fcrdns),
		  b->name[0] != '\0' ? b->name : "-", res->dnsbl.listed);
	r->conn_done = 1;
	smtp_mx__rcpt_policy(r);
}

static void smtp_mx__rhs_cb(const struct conncheck_rhsbl_result *res, void *arg)
{
	struct smtp_mx__rcpt *r = arg;
	struct mx_bl *b = &r->ms->rhs;
	b->listed[0] = b->txt[0] = '\0';
	for (size_t i = 0; res != NULL && i < res->rhsbl.count; i++) {
		const struct conncheck_bl_zone *z = &res->rhsbl.zones[i];
		if (z->status == CONNCHECK_BL_LISTED && b->listed[0] == '\0') {
			snprintf(b->listed, sizeof b->listed, "%s", z->zone);
			snprintf(b->txt, sizeof b->txt, "%s", z->txt);
		}
	}
	r->rhs_done = 1;
	smtp_mx__rcpt_policy(r);
}

/* The zones of a comma-separated list into zones[] (pointing into copy,
 * which the caller frees). */
static size_t smtp_mx__zones(const char *list, char **copy, const char *zones[])
{
	size_t n = 0;
	*copy = xstrdup(list);
	for (char *save = NULL, *z = strtok_r(*copy, ",", &save);
	     z != NULL && n < DIRECTORY_DNSBL_ZONES_MAX; z = strtok_r(NULL, ",", &save))
		zones[n++] = z;
	return n;
}

/* Step 0: the client (PTR, FCrDNS, the tenant's DNSBL zones), once per
 * connection and zone list. 1 when r waits for it. */
static int smtp_mx__client_step(struct smtp_mx__rcpt *r, int checks)
{
	smtp_mx *mx = r->mx;
	const struct directory_tenant_settings *ts = &r->resolved.settings;
	struct mx_bl *b = &r->ms->client;
	int wanted = mx->inbound != NULL &&
		     (checks || ts->dnsbl[0] != '\0' || ts->ptr != DIRECTORY_PTR_RECORD);
	if (!wanted || r->conn_done)
		return 0;
	if (b->key != NULL && strcmp(b->key, ts->dnsbl) == 0) {
		r->conn_done = 1;
		return 0;
	}
	struct sockaddr_storage sa;
	const char *ip = smtp_session_peer_ip(r->session);
	if (uv_ip4_addr(ip, 0, (struct sockaddr_in *)&sa) != 0 &&
	    uv_ip6_addr(ip, 0, (struct sockaddr_in6 *)&sa) != 0) {
		r->conn_done = 1;
		return 0;
	}
	free(b->key);
	b->key = xstrdup(ts->dnsbl);
	char *copy;
	const char *zones[DIRECTORY_DNSBL_ZONES_MAX];
	size_t n = smtp_mx__zones(ts->dnsbl, &copy, zones);
	smtp_inbound_client_check(mx->inbound, (struct sockaddr *)&sa, zones, n, smtp_mx__client_cb,
				  r);
	free(copy);
	return 1;
}

/* Step 1: RHSBL of the MAIL FROM domain in the tenant's zones. 1 when r
 * waits for it. */
static int smtp_mx__rhs_step(struct smtp_mx__rcpt *r)
{
	smtp_mx *mx = r->mx;
	const struct directory_tenant_settings *ts = &r->resolved.settings;
	const char *domain = smtp_mx__sender_domain(r->ms);
	if (mx->inbound == NULL || r->rhs_done || ts->rhsbl[0] == '\0' || domain[0] == '\0')
		return 0;
	struct mx_bl *b = &r->ms->rhs;
	char *key = xasprintf("%s|%s", ts->rhsbl, domain);
	if (b->key != NULL && strcmp(b->key, key) == 0) {
		free(key);
		r->rhs_done = 1;
		return 0;
	}
	free(b->key);
	b->key = key;
	char *copy;
	const char *zones[DIRECTORY_DNSBL_ZONES_MAX];
	size_t n = smtp_mx__zones(ts->rhsbl, &copy, zones);
	smtp_inbound_rhsbl_check(mx->inbound, domain, zones, n, smtp_mx__rhs_cb, r);
	free(copy);
	return 1;
}

static void smtp_mx__rcpt_policy(struct smtp_mx__rcpt *r)
{
	smtp_mx *mx = r->mx;
	const struct directory_tenant_settings *ts = &r->resolved.settings;
	const int checks = smtp_mx__checks(mx, r->session, r->ms, ts);
	const char *ip = smtp_session_peer_ip(r->session);
	char text[600];
	if (smtp_mx__client_step(r, checks))
		return;
	const struct mx_bl *cl = &r->ms->client;
	if (r->conn_done && cl->key != NULL) {
		if (r->ms->txn != NULL)
			inbound_txn_iprev(r->ms->txn,
					  cl->fcrdns == CONNCHECK_FCRDNS_PASS	     ? "pass"
					  : cl->fcrdns == CONNCHECK_FCRDNS_TEMPERROR ? "temperror"
										     : "fail",
					  ip, cl->name);
		if (cl->listed[0] != '\0' && ts->dnsbl[0] != '\0') {
			log_event(LOG_INFO, mx->log_svc, "event=dnsbl_rejected sid=%s zone=%s",
				  smtp_session_id(r->session), cl->listed);
			snprintf(text, sizeof text, "Service unavailable; client [%s] blocked using %s%s%s",
				 ip, cl->listed, cl->txt[0] != '\0' ? ": " : "", cl->txt);
			smtp_mx__rcpt_refuse(r, 554, "5.7.1", text);
			return;
		}
		if (cl->fcrdns == CONNCHECK_FCRDNS_FAIL && ts->ptr == DIRECTORY_PTR_REJECT) {
			snprintf(text, sizeof text,
				 "Client [%s] has no forward-confirmed reverse DNS", ip);
			smtp_mx__rcpt_refuse(r, 550, "5.7.25", text);
			return;
		}
		r->grey_forced = cl->fcrdns == CONNCHECK_FCRDNS_FAIL &&
				 ts->ptr == DIRECTORY_PTR_GREYLIST;
	}
	if (smtp_mx__rhs_step(r))
		return;
	if (r->rhs_done && r->ms->rhs.listed[0] != '\0') {
		log_event(LOG_INFO, mx->log_svc, "event=rhsbl_rejected sid=%s zone=%s",
			  smtp_session_id(r->session), r->ms->rhs.listed);
		snprintf(text, sizeof text, "Service unavailable; sender domain %s blocked using %s",
			 smtp_mx__sender_domain(r->ms), r->ms->rhs.listed);
		smtp_mx__rcpt_refuse(r, 554, "5.7.1", text);
		return;
	}
	const int grey = (ts->greylisting || r->grey_forced) && mx->grey != NULL;
	if (!r->spf_known && checks && (ts->spf == DIRECTORY_SPF_REJECT || grey)) {
		inbound_txn_spf_wait(r->ms->txn, smtp_mx__rcpt_spf, r);
		return;
	}
	if (r->spf_known && r->spf == SPF_FAIL && ts->spf == DIRECTORY_SPF_REJECT) {
		log_event(LOG_INFO, mx->log_svc, "event=spf_rejected sid=%s rcpt_domain=%s",
			  smtp_session_id(r->session), r->resolved.tenant);
		smtp_mx__rcpt_refuse(r, 550, "5.7.23",
				     "SPF validation failed: the sender's domain does not "
				     "authorize this host");
		return;
	}
	if (grey) {
		if (uv_queue_work(mx->loop, &r->work, smtp_mx__grey_work, smtp_mx__grey_done) < 0)
			smtp_mx__grey_done(&r->work, -1);
		return;
	}
	smtp_mx__rcpt_accept(r, "Ok");
}

/* ---- quotas (issue 12) --------------------------------------------------- */

/* The tenant limits that apply to route address of r: its tenant's when
 * the route is in r's tenant (else unknown here: none). */
static struct directory_quota smtp_mx__tenant_limit(const struct directory_rcpt *r,
						    const char *address)
{
	struct directory_quota q = { 0, 0 };
	if (r->tenant != NULL && strcmp(util_address_domain(address), r->tenant) == 0) {
		q.storage = r->settings.quota_storage;
		q.messages = r->settings.quota_messages;
	}
	return q;
}

static int smtp_mx__limited(const struct directory_quota *u, const struct directory_quota *t)
{
	return u->storage > 0 || u->messages > 0 || t->storage > 0 || t->messages > 0;
}

static void smtp_mx__rcpt_quota_cb(int status, const struct quota_view *v, void *arg)
{
	struct smtp_mx__rcpt *r = arg;
	smtp_mx *mx = r->mx;
	int over = status == MAIL_OK ? quota_view_over(v, 1, 1) : 0;
	if (over) {
		/* RFC 3463 4.2.2, temporary: the sender retries, the user may
		 * make room meanwhile */
		log_event(LOG_INFO, mx->log_svc, "event=quota_refused sid=%s rcpt=%s where=rcpt "
			  "limit=%s", smtp_session_id(r->session), r->resolved.routes[0].address,
			  over == 1 ? "user" : "tenant");
		quota_client_refused(mx->quota, QUOTA_WHERE_RCPT);
		smtp_mx__rcpt_refuse(r, 452, "4.2.2", "Mailbox full, try again later");
		return;
	}
	if (!r->submission)
		smtp_mx__rcpt_policy(r);
	else
		smtp_mx__rcpt_accept(r, "Ok");
}

/* RCPT: a recipient that is one user of ours with a limit is checked
 * against its usage (an alias of several is not: each copy meets the
 * store's check at delivery). 1 when the check runs (its callback goes
 * on), 0 to go on at once. */
static int smtp_mx__rcpt_quota(struct smtp_mx__rcpt *r)
{
	const struct directory_rcpt *d = &r->resolved;
	if (r->mx->quota == NULL || d->n_routes != 1 || d->routes[0].external)
		return 0;
	const struct directory_route *rt = &d->routes[0];
	struct directory_quota t = smtp_mx__tenant_limit(d, rt->address);
	if (!smtp_mx__limited(&rt->quota, &t))
		return 0;
	quota_client_get(r->mx->quota, rt->address, &rt->quota, &t, smtp_mx__rcpt_quota_cb, r);
	return 1;
}

/* The limits the queue hands the store with address's copy: a cap set at
 * the end of DATA, else the user's own (0: none). */
static struct directory_quota smtp_mx__copy_quota(const struct mx_session *ms,
						  const char *address)
{
	struct directory_quota q = { 0, 0 };
	if (ms == NULL)
		return q;
	for (size_t i = 0; i < ms->n_caps; i++)
		if (strcmp(ms->caps[i].address, address) == 0)
			return ms->caps[i].quota;
	for (size_t i = 0; i < ms->n_rcpts; i++)
		for (size_t k = 0; k < ms->rcpts[i].n_routes; k++)
			if (!ms->rcpts[i].routes[k].external &&
			    strcmp(ms->rcpts[i].routes[k].address, address) == 0)
				return ms->rcpts[i].routes[k].quota;
	return q;
}

static void smtp_mx__rcpt_done(uv_work_t *w, int status)
{
	struct smtp_mx__rcpt *r = w->data;
	smtp_mx *mx = r->mx;
	int err = status < 0 ? MAIL_ERR_INTERNAL : r->err; /* cancelled: only when stopping */
	const int remote = status >= 0 && err == MAIL_ERR_NOT_FOUND && r->resolved.tenant == NULL;

	if (status >= 0 && r->settings_read)
		smtp_rate_tenant_put(mx->rate, util_address_domain(r->sender), &r->settings,
				     uv_now(mx->loop));
	if (remote && r->submission) {
		const int known = r->settings_cached || r->settings_read;
		if (!smtp_mx__rate_full(mx, r->session, r->sender, known ? &r->settings : NULL)) {
			/* outside our tenants: one route, the address itself */
			r->resolved.routes = xcalloc(1, sizeof *r->resolved.routes);
			r->resolved.routes[0].address = util_address_normalize(r->address,
									       strlen(r->address));
			r->resolved.routes[0].external = 1;
			r->resolved.n_routes = 1;
			smtp_mx__rcpt_accept(r, "Ok (outbound)");
			return;
		}
	} else if (remote) {
		smtp_session_complete(r->session, 550, "5.7.1", "Relaying denied");
	} else if (status >= 0 && err == MAIL_ERR_NOT_FOUND) {
		smtp_session_complete(r->session, 550, "5.1.1", "No such user");
	} else if (status >= 0 && err == MAIL_ERR_LIMIT) {
		smtp_session_complete(r->session, 550, "5.4.6",
				      "Routing loop or too many addresses in an alias");
	} else if (status >= 0 && err == MAIL_ERR_PERM) {
		/* mailctl user disable (docs/operations.md) */
		smtp_session_complete(r->session, 550, "5.2.1", "Mailbox disabled");
	} else if (status >= 0 && err == MAIL_ERR_TEMP && r->resolved.tenant != NULL) {
		/* mailctl tenant suspend: the sender retries until it resumes */
		smtp_session_complete(r->session, 450, "4.2.1",
				      "Mailbox temporarily disabled, try again later");
	} else if (err == MAIL_OK && smtp_mx__rcpt_quota(r)) {
		return; /* smtp_mx__rcpt_quota_cb goes on */
	} else if (err == MAIL_OK && !r->submission) {
		smtp_mx__rcpt_policy(r);
		return;
	} else if (err == MAIL_OK) {
		smtp_mx__rcpt_accept(r, "Ok");
		return;
	} else {
		const struct mail_error_info *info = mail_error_info(err);
		log_event(LOG_WARN, mx->log_svc, "event=directory_failed sid=%s error=%s",
			  smtp_session_id(r->session), info->name);
		/* The directory failing is always worth a retry by the sender. */
		smtp_session_complete(r->session, 451, "4.3.0",
				      "Temporary directory failure, try again later");
	}
	smtp_mx__rcpt_free(r);
}

static void smtp_mx__on_rcpt(smtp_session *s, const char *rcpt,
			     const struct smtp_rcpt_params *params, void *ctx)
{
	smtp_mx *mx = ctx;
	(void)params; /* kept by the engine with the recipient (on_data) */
	char *address = util_address_normalize(rcpt, strlen(rcpt));
	if (address == NULL && strcasecmp(rcpt, "postmaster") != 0) {
		smtp_session_complete(s, 501, "5.1.3", "Bad recipient address syntax");
		return;
	}
	free(address);
	struct smtp_mx__rcpt *r = xcalloc(1, sizeof *r);
	r->work.data = r;
	r->mx = mx;
	r->session = s;
	r->ms = mx_session_get(s);
	r->ms->refs++;
	r->address = xstrdup(rcpt);
	r->sender = smtp_mx__user(mx, s);
	r->submission = mx->submission;
	r->settings_cached = r->sender != NULL &&
			     smtp_rate_tenant_get(mx->rate, util_address_domain(r->sender),
						  uv_now(mx->loop), &r->settings);
	smtp_mx__ref(mx);
	if (uv_queue_work(mx->loop, &r->work, smtp_mx__rcpt_work, smtp_mx__rcpt_done) < 0) {
		smtp_session_complete(s, 451, "4.3.0", "Temporary failure, try again later");
		smtp_mx__rcpt_free(r);
	}
}

/* ---- DATA ------------------------------------------------------------- */

/* The queue record stores lib/dsn's values as they are (queue.proto). */
_Static_assert(DSN_NOTIFY_SUCCESS == 1 && DSN_NOTIFY_FAILURE == 2 && DSN_NOTIFY_DELAY == 4 &&
		       DSN_NOTIFY_NEVER == 8,
	       "queue.proto's notify bits are lib/dsn's");
_Static_assert((int)DSN_RET_UNSPECIFIED == (int)QUEUE__DSN_RET__RET_UNSPECIFIED &&
		       (int)DSN_RET_FULL == (int)QUEUE__DSN_RET__RET_FULL &&
		       (int)DSN_RET_HDRS == (int)QUEUE__DSN_RET__RET_HDRS,
	       "queue.proto's DsnRet is lib/dsn's enum dsn_ret");

/* Where a transaction's mail goes: one entry per route of each accepted
 * recipient (an alias expands to its targets). */
struct mx_plan {
	size_t n;
	char **rcpts;                 /* normalised addresses (owned) */
	protobuf_c_boolean *remote;   /* outside our tenants */
	char **mailbox;               /* "" INBOX, "Junk", a subaddress folder */
	size_t *orig;                 /* the t->rcpts index it came from */
	int any_mailbox;
	/* the MX's fields to put after Received: (Authentication-Results),
	 * and the message to queue instead of t->body (ours stripped) */
	const char *fields;
	size_t fields_len;
	const uint8_t *body;
	size_t body_len;
	/* the envelope sender instead of the transaction's (an SRS address
	 * for forwarded copies), or NULL */
	const char *mail_from;
};

/* Which routes a plan takes. */
enum mx_routes { MX_ROUTES_ALL, MX_ROUTES_LOCAL, MX_ROUTES_FORWARD };

static void mx_plan_add(struct mx_plan *p, size_t *cap, const char *address, int remote,
			const char *mailbox, size_t orig)
{
	if (p->n == *cap) {
		*cap = *cap == 0 ? 8 : *cap * 2;
		p->rcpts = xrealloc(p->rcpts, *cap * sizeof *p->rcpts);
		p->remote = xrealloc(p->remote, *cap * sizeof *p->remote);
		p->mailbox = xrealloc(p->mailbox, *cap * sizeof *p->mailbox);
		p->orig = xrealloc(p->orig, *cap * sizeof *p->orig);
	}
	p->rcpts[p->n] = xstrdup(address);
	p->remote[p->n] = remote != 0;
	p->mailbox[p->n] = xstrdup(mailbox != NULL ? mailbox : "");
	p->any_mailbox |= mailbox != NULL && mailbox[0] != '\0';
	p->orig[p->n] = orig;
	p->n++;
}

/* The plan of t: the routes kept in ms when there is one per accepted
 * RCPT, else (no resolution kept) each recipient as it is. junk[i]: the
 * copies of recipient i go to Junk. */
static void mx_plan_build_routes(struct mx_plan *p, const struct smtp_transaction *t,
				 const struct mx_session *ms, const int *junk, enum mx_routes which)
{
	memset(p, 0, sizeof *p);
	size_t cap = 0;
	for (size_t i = 0; i < ms->n_rcpts && i < t->n_rcpts; i++) {
		const struct directory_rcpt *r = &ms->rcpts[i];
		for (size_t k = 0; k < r->n_routes; k++) {
			const struct directory_route *rt = &r->routes[k];
			if ((which == MX_ROUTES_LOCAL && rt->external) ||
			    (which == MX_ROUTES_FORWARD && !rt->external))
				continue;
			const char *mailbox = junk != NULL && junk[i] && !rt->external ? "Junk"
					      : rt->folder;
			mx_plan_add(p, &cap, rt->address, rt->external, mailbox, i);
		}
	}
}

static void mx_plan_build(struct mx_plan *p, const struct smtp_transaction *t,
			  const struct mx_session *ms, const int *remote, const int *junk)
{
	memset(p, 0, sizeof *p);
	size_t cap = 0;
	int routed = ms != NULL && ms->n_rcpts == t->n_rcpts;
	for (size_t i = 0; i < t->n_rcpts; i++) {
		if (!routed) {
			char *a = util_address_normalize(t->rcpts[i], strlen(t->rcpts[i]));
			mx_plan_add(p, &cap, a != NULL ? a : t->rcpts[i], remote != NULL && remote[i],
				    NULL, i);
			free(a);
			continue;
		}
		const struct directory_rcpt *r = &ms->rcpts[i];
		for (size_t k = 0; k < r->n_routes; k++) {
			const struct directory_route *rt = &r->routes[k];
			const char *mailbox = junk != NULL && junk[i] && !rt->external ? "Junk"
					      : rt->folder;
			mx_plan_add(p, &cap, rt->address, rt->external, mailbox, i);
		}
	}
}

static void mx_plan_free(struct mx_plan *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->rcpts[i]);
		free(p->mailbox[i]);
	}
	free(p->rcpts);
	free(p->remote);
	free(p->mailbox);
	free(p->orig);
}

/* The DSN fields of the queue record (pointing into t and p, valid as long
 * as both; the arrays are the caller's to free with smtp_mx__dsn_free).
 * The per-recipient arrays stay empty when no recipient gave NOTIFY or
 * ORCPT and no alias was expanded, so a plain message is stored as
 * before. An expanded address without ORCPT gets the one given as its
 * ORCPT (RFC 3461 5.2.1: a DSN names what the sender wrote). */
struct smtp_mx__dsn {
	uint32_t *notify;
	Queue__Orcpt *orcpt;
	Queue__Orcpt **orcpt_ptrs;
	char **given;     /* ORCPT values we made */
};

static void smtp_mx__dsn_fill(const struct smtp_transaction *t, const struct mx_plan *p,
			      Queue__EnqueueRequest *req, struct smtp_mx__dsn *d)
{
	memset(d, 0, sizeof *d);
	req->ret = (Queue__DsnRet)t->params.dsn.ret;
	if (t->params.dsn.has_envid)
		req->envid = (char *)t->params.dsn.envid;
	int any_notify = 0, any_orcpt = 0;
	for (size_t i = 0; i < p->n; i++) {
		const struct smtp_rcpt_params *rp = &t->rcpt_params[p->orig[i]];
		any_notify |= rp->dsn.notify != 0;
		any_orcpt |= rp->dsn.orcpt.kind != DSN_ADDR_NONE ||
			     strcasecmp(p->rcpts[i], t->rcpts[p->orig[i]]) != 0;
	}
	if (any_notify) {
		d->notify = xcalloc(p->n, sizeof *d->notify);
		for (size_t i = 0; i < p->n; i++)
			d->notify[i] = t->rcpt_params[p->orig[i]].dsn.notify;
		req->n_notify = p->n;
		req->notify = d->notify;
	}
	if (any_orcpt) {
		d->orcpt = xcalloc(p->n, sizeof *d->orcpt);
		d->orcpt_ptrs = xcalloc(p->n, sizeof *d->orcpt_ptrs);
		d->given = xcalloc(p->n, sizeof *d->given);
		for (size_t i = 0; i < p->n; i++) {
			const struct dsn_orcpt *o = &t->rcpt_params[p->orig[i]].dsn.orcpt;
			queue__orcpt__init(&d->orcpt[i]);
			if (o->kind != DSN_ADDR_NONE) {
				d->orcpt[i].addr_type = (char *)o->type;
				d->orcpt[i].addr = (char *)o->addr;
			} else if (strcasecmp(p->rcpts[i], t->rcpts[p->orig[i]]) != 0) {
				d->given[i] = xstrdup(t->rcpts[p->orig[i]]);
				d->orcpt[i].addr_type = "rfc822";
				d->orcpt[i].addr = d->given[i];
			}
			d->orcpt_ptrs[i] = &d->orcpt[i];
		}
		req->n_orcpt = p->n;
		req->orcpt = d->orcpt_ptrs;
	}
}

static void smtp_mx__dsn_free(struct smtp_mx__dsn *d, size_t n)
{
	for (size_t i = 0; d->given != NULL && i < n; i++)
		free(d->given[i]);
	free(d->given);
	free(d->notify);
	free(d->orcpt);
	free(d->orcpt_ptrs);
}

static void smtp_mx__enqueue_cb(int status, const char *queue_id, void *arg)
{
	struct smtp_mx__enqueue *e = arg;
	smtp_mx *mx = e->mx;
	(void)queue_id;
	struct smtp_mx__group *g = e->group;
	if (g != NULL) {
		log_event(LOG_INFO, mx->log_svc, "event=%s sid=%s qid=%s rcpts=%zu size=%zu",
			  status == MAIL_OK ? "accepted_part" : "enqueue_failed",
			  smtp_session_id(e->session), e->qid, e->n_rcpts, e->size);
		if (g->status == MAIL_OK)
			g->status = status;
		if (--g->pending > 0) {
			free(e->rate_user);
			free(e->rate_tenant);
			free(e);
			smtp_mx__unref(mx);
			return;
		}
		status = g->status;
		memcpy(e->qid, g->qid, sizeof e->qid);
		free(g);
	}
	if (status == MAIL_OK) {
		char text[80];
		snprintf(text, sizeof text, "Ok: queued as %s", e->qid);
		log_event(LOG_INFO, mx->log_svc, "event=accepted sid=%s qid=%s rcpts=%zu size=%zu",
			  smtp_session_id(e->session), e->qid, e->n_rcpts, e->size);
		smtp_session_complete(e->session, 250, "2.0.0", text);
	} else {
		const struct mail_error_info *info = mail_error_info(status);
		log_event(LOG_WARN, mx->log_svc, "event=enqueue_failed sid=%s qid=%s error=%s",
			  smtp_session_id(e->session), e->qid, info->name);
		/* not accepted: not counted against the sender's rate */
		if (e->rate_user != NULL)
			smtp_rate_give_back(mx->rate, e->rate_user, e->rate_at, uv_now(mx->loop));
		if (e->rate_tenant != NULL)
			smtp_rate_give_back(mx->rate, e->rate_tenant, e->rate_at, uv_now(mx->loop));
		smtp_session_complete(e->session, info->smtp_code, info->smtp_enh, info->text);
	}
	free(e->rate_user);
	free(e->rate_tenant);
	free(e);
	smtp_mx__unref(mx);
}

/* What submission adds to the queue record and the enqueue. */
struct smtp_mx__submit {
	int sender_local;   /* a DSN to the sender is delivered locally */
	int delay_warning;  /* the sender's tenant's setting */
	char *counted_user; /* counted against its rate at counted_at (moved
			     * into the enqueue), or NULL */
	char *counted_tenant; /* the tenant's key, counted too (moved), or NULL */
	uint64_t counted_at;
};

/* The envelope as the queue stores it: normalised addresses. A sender that
 * does not normalise (a quoted local part, say) is kept as given. p: the
 * recipients (routes) and what the MX adds. sub: NULL on the MX; its
 * counted_user becomes the enqueue's (NULLed). */
static void smtp_mx__enqueue_part(smtp_mx *mx, smtp_session *s,
				  const struct smtp_transaction *t, const struct mx_plan *p,
				  struct smtp_mx__submit *sub, struct smtp_mx__group *g)
{
	struct smtp_mx__enqueue *e = xcalloc(1, sizeof *e);
	e->mx = mx;
	e->session = s;
	e->group = g;
	e->n_rcpts = p->n;
	e->size = t->body_len;
	if (sub != NULL) {
		e->rate_user = sub->counted_user;
		e->rate_tenant = sub->counted_tenant;
		e->rate_at = sub->counted_at;
		sub->counted_user = NULL;
		sub->counted_tenant = NULL;
	}
	const uint8_t *msg = p->body != NULL ? p->body : t->body;
	size_t msg_len = p->body != NULL ? p->body_len : t->body_len;

	const char *given_from = p->mail_from != NULL ? p->mail_from : t->mail_from;
	char *from = NULL;
	if (p->mail_from != NULL)
		from = xstrdup(p->mail_from); /* ours (SRS): its case is part of it */
	else if (given_from[0] != '\0')
		from = util_address_normalize(given_from, strlen(given_from));
	int64_t now = util_now_wall_ms();
	/* A resend of this very message (our reply was lost) gets this id
	 * again and is stored once (queue-client.h). */
	queue_client_content_id(e->qid, from != NULL ? from : given_from, p->rcpts, p->n,
				(const uint8_t *)t->body, t->body_len, now);
	if (g != NULL && g->qid[0] == '\0')
		memcpy(g->qid, e->qid, sizeof g->qid);
	/* what every accepted message gets (smtp-trace.h): our Received:
	 * and, on submission, a Date: and Message-ID: it lacks, before the
	 * client's bytes (the id above is theirs) */
	buf body;
	buf_init(&body);
	struct smtp_trace_info ti = {
		.helo = smtp_session_helo(s),
		.peer_ip = smtp_session_peer_ip(s),
		.by = mx->hostname,
		.queue_id = e->qid,
		.for_rcpt = t->n_rcpts == 1 && p->n == 1 ? p->rcpts[0] : NULL,
		.tls = smtp_session_tls(s),
		.authenticated = smtp_session_user(s) != NULL,
		.now_ms = now,
	};
	smtp_trace_received(&body, &ti);
	if (p->fields != NULL)
		buf_append(&body, p->fields, p->fields_len);
	if (mx->submission) {
		char hex[33];
		util_random_hex(hex, 16);
		smtp_trace_submission_fields(&body, msg, msg_len, mx->hostname, hex, now);
	}
	buf_append(&body, msg, msg_len);

	Queue__EnqueueRequest req;
	queue__enqueue_request__init(&req);
	req.queue_id = e->qid;
	req.mail_from = from != NULL ? from : (char *)given_from;
	req.n_rcpt_to = p->n;
	req.rcpt_to = p->rcpts;
	int any_remote = 0;
	for (size_t i = 0; i < p->n; i++)
		any_remote |= p->remote[i];
	if (any_remote) {
		req.n_rcpt_remote = p->n;
		req.rcpt_remote = p->remote;
	}
	if (p->any_mailbox) {
		req.n_rcpt_mailbox = p->n;
		req.rcpt_mailbox = p->mailbox;
	}
	req.body.data = body.data;
	req.body.len = body.len;
	req.helo = (char *)smtp_session_helo(s);
	req.client_addr = (char *)smtp_session_peer_ip(s);
	req.received_at = now;
	req.session_id = (char *)smtp_session_id(s);
	if (smtp_session_user(s) != NULL)
		req.auth_user = (char *)smtp_session_user(s);
	req.sender_local = sub != NULL && sub->sender_local;
	req.delay_warning = sub != NULL && sub->delay_warning;
	/* each local copy's quota, for the store's check at delivery */
	uint64_t *q_storage = xcalloc(p->n + 1, sizeof *q_storage);
	uint64_t *q_messages = xcalloc(p->n + 1, sizeof *q_messages);
	int any_quota = 0;
	for (size_t i = 0; i < p->n; i++) {
		if (p->remote[i])
			continue;
		struct directory_quota q = smtp_mx__copy_quota(smtp_session_data(s), p->rcpts[i]);
		q_storage[i] = q.storage;
		q_messages[i] = q.messages;
		any_quota |= q.storage > 0 || q.messages > 0;
	}
	if (any_quota) {
		req.n_rcpt_quota_storage = p->n;
		req.rcpt_quota_storage = q_storage;
		req.n_rcpt_quota_messages = p->n;
		req.rcpt_quota_messages = q_messages;
	}
	struct smtp_mx__dsn dsn;
	smtp_mx__dsn_fill(t, p, &req, &dsn);

	smtp_mx__ref(mx);
	/* The request is packed before this returns (queue-client.h). */
	queue_client_enqueue(mx->qc, &req, smtp_mx__enqueue_cb, e);
	smtp_mx__dsn_free(&dsn, p->n);
	free(q_storage);
	free(q_messages);
	buf_deinit(&body);
	free(from);
}

static void smtp_mx__enqueue(smtp_mx *mx, smtp_session *s, const struct smtp_transaction *t,
			     const struct mx_plan *p, struct smtp_mx__submit *sub)
{
	smtp_mx__enqueue_part(mx, s, t, p, sub, NULL);
}

/* Submission: which recipients are outside our tenants (thread pool). */
struct smtp_mx__remote {
	uv_work_t work;
	smtp_mx *mx;
	smtp_session *session;
	const struct smtp_transaction *t; /* valid until the DATA completion */
	int *remote;
	int sender_local;
	int status;
	char *user;        /* the authenticated user, normalised (or NULL) */
	struct directory_tenant_settings tenant; /* of user's domain */
	int tenant_cached; /* tenant came from the cache (set before the work) */
	int tenant_read;   /* the work read tenant from the directory */
};

static void smtp_mx__remote_work(uv_work_t *w)
{
	struct smtp_mx__remote *r = w->data;
	for (size_t i = 0; i < r->t->n_rcpts && r->status == MAIL_OK; i++) {
		char *a = util_address_normalize(r->t->rcpts[i], strlen(r->t->rcpts[i]));
		int tenant = a != NULL ? directory_tenant_exists(r->mx->dir, util_address_domain(a))
				       : MAIL_ERR_PARAMS;
		free(a);
		if (tenant == MAIL_ERR_NOT_FOUND)
			r->remote[i] = 1;
		else if (tenant != MAIL_OK)
			r->status = tenant;
	}
	/* a DSN to the sender is delivered locally when it is ours */
	char *from = r->t->mail_from[0] != '\0'
			     ? util_address_normalize(r->t->mail_from, strlen(r->t->mail_from))
			     : NULL;
	r->sender_local = from != NULL && r->status == MAIL_OK &&
			  directory_tenant_exists(r->mx->dir, util_address_domain(from)) == MAIL_OK;
	free(from);
	if (r->user == NULL || r->tenant_cached || r->status != MAIL_OK)
		return;
	r->status = smtp_mx__settings_read(r->mx, r->user, &r->tenant);
	r->tenant_read = r->status == MAIL_OK;
}

/* Loop thread: the rate limit is checked and taken here, so concurrent
 * sessions of one user never both pass the last free place. */
static void smtp_mx__remote_done(uv_work_t *w, int status)
{
	struct smtp_mx__remote *r = w->data;
	smtp_mx *mx = r->mx;
	uint64_t now = uv_now(mx->loop);
	if (status >= 0 && r->tenant_read)
		smtp_rate_tenant_put(mx->rate, util_address_domain(r->user), &r->tenant, now);
	int any_remote = 0;
	for (size_t i = 0; i < r->t->n_rcpts; i++)
		any_remote |= r->remote[i];
	/* only mail that leaves the platform counts */
	unsigned limit = r->user != NULL && any_remote ? r->tenant.outbound_per_hour : 0;
	/* the tenant-wide count (tenant_outbound_per_hour): all its users on
	 * this frontend together, under the key "@domain" */
	unsigned tlimit = r->user != NULL && any_remote ? r->tenant.tenant_outbound_per_hour : 0;
	char tkey[SMTP_RATE_TENANT_KEY_MAX] = "";
	if (r->user != NULL)
		smtp_rate_tenant_key(util_address_domain(r->user), tkey, sizeof tkey);
	struct smtp_mx__submit sub = {
		.sender_local = r->sender_local,
		.delay_warning = r->tenant.delay_warning,
	};
	if (status < 0 || r->status != MAIL_OK) {
		smtp_session_complete(r->session, 451, "4.3.0",
				      "Temporary directory failure, try again later");
	} else if (!smtp_rate_take(mx->rate, r->user, limit, now)) {
		smtp_mx__rate_limited(mx, r->session, r->user, limit, "data");
	} else if (!smtp_rate_take(mx->rate, tkey, tlimit, now)) {
		if (limit > 0)
			smtp_rate_give_back(mx->rate, r->user, now, now);
		smtp_mx__rate_limited(mx, r->session, tkey, tlimit, "data");
	} else {
		sub.counted_at = now;
		if (tlimit > 0)
			sub.counted_tenant = xstrdup(tkey);
		if (limit > 0) {
			sub.counted_user = r->user;
			r->user = NULL;
		}
		struct mx_plan plan;
		mx_plan_build(&plan, r->t, smtp_session_data(r->session), r->remote, NULL);
		smtp_mx__enqueue(mx, r->session, r->t, &plan, &sub);
		mx_plan_free(&plan);
	}
	smtp_mx__unref(mx);
	free(r->user);
	free(r->remote);
	free(r);
}

/* ---- the MX's DATA: authentication, loops, DMARC ------------------------------ */

/* Most Received fields a message may carry (RFC 5321 6.3: a loop). */
#define SMTP_MX_HOPS_MAX 100u

struct smtp_mx__data {
	smtp_mx *mx;
	smtp_session *session;
	const struct smtp_transaction *t; /* valid until the DATA completion */
	struct mx_session *ms;
};

/* The MX's enqueue of a routed transaction: the local copies as the
 * sender sent them; the forwarded ones (alias targets outside our
 * tenants, bounces to an SRS address) under the SRS address of the
 * sender at the recipient's tenant (RFC 7208 does not pass a forward
 * otherwise) and with Delivered-To of the address we took, so they are
 * recognised if they loop back. */
static void smtp_mx__enqueue_routed(smtp_mx *mx, smtp_session *s,
				    const struct smtp_transaction *t, const struct mx_session *ms,
				    const int *junk, const char *fields, size_t fields_len,
				    const uint8_t *body, size_t body_len)
{
	struct mx_plan local, fwd;
	mx_plan_build_routes(&local, t, ms, junk, MX_ROUTES_LOCAL);
	mx_plan_build_routes(&fwd, t, ms, NULL, MX_ROUTES_FORWARD);
	local.fields = fields;
	local.fields_len = fields_len;
	local.body = fwd.body = body;
	local.body_len = fwd.body_len = body_len;
	char srs_from[SRS_ADDRESS_MAX + 1];
	buf fwd_fields;
	buf_init(&fwd_fields);
	if (fwd.n > 0) {
		const char *tenant = ms->rcpts[fwd.orig[0]].tenant;
		char *from = t->mail_from[0] != '\0'
				     ? util_address_normalize(t->mail_from, strlen(t->mail_from))
				     : NULL;
		int ret = from != NULL && mx->srs != NULL && tenant != NULL
				  ? srs_forward(mx->srs, from, tenant, util_now_wall_ms() / 1000,
						srs_from, sizeof srs_from)
				  : 0;
		if (ret == 1)
			fwd.mail_from = srs_from;
		else if (from != NULL)
			log_event(LOG_WARN, mx->log_svc, "event=srs_not_rewritten sid=%s error=%s",
				  smtp_session_id(s), ret < 0 ? srs_error_name(ret) : "no_srs");
		free(from);
		buf_append(&fwd_fields, fields, fields_len);
		for (size_t i = 0; i < fwd.n; i++) {
			if (i > 0 && fwd.orig[i] == fwd.orig[i - 1])
				continue;
			char *a = util_address_normalize(t->rcpts[fwd.orig[i]],
							 strlen(t->rcpts[fwd.orig[i]]));
			if (a != NULL)
				buf_printf(&fwd_fields, "Delivered-To: %s\r\n", a);
			free(a);
		}
		fwd.fields = (const char *)fwd_fields.data;
		fwd.fields_len = fwd_fields.len;
	}
	if (fwd.n == 0 || local.n == 0) {
		smtp_mx__enqueue(mx, s, t, fwd.n > 0 ? &fwd : &local, NULL);
	} else {
		struct smtp_mx__group *g = xcalloc(1, sizeof *g);
		g->pending = 2;
		smtp_mx__enqueue_part(mx, s, t, &local, NULL, g);
		smtp_mx__enqueue_part(mx, s, t, &fwd, NULL, g);
	}
	buf_deinit(&fwd_fields);
	mx_plan_free(&local);
	mx_plan_free(&fwd);
}

/* 1 when a Delivered-To field of msg names one of t's recipients: a copy
 * we forwarded came back (a forwarding loop). */
static int smtp_mx__delivered_to_loop(const struct smtp_transaction *t, const uint8_t *msg,
				      size_t len)
{
	char **a = xcalloc(t->n_rcpts + 1, sizeof *a);
	size_t n = 0;
	for (size_t i = 0; i < t->n_rcpts; i++)
		if ((a[n] = util_address_normalize(t->rcpts[i], strlen(t->rcpts[i]))) != NULL)
			n++;
	int loop = smtp_trace_delivered_to(msg, len, (const char *const *)a, n) != 0;
	for (size_t i = 0; i < n; i++)
		free(a[i]);
	free(a);
	return loop;
}

static void smtp_mx__data_verdict(const struct inbound_verdict *v, void *arg)
{
	struct smtp_mx__data *d = arg;
	smtp_mx *mx = d->mx;
	struct mx_session *ms = d->ms;
	if (v->aborted) {
		smtp_session_complete(d->session, 451, "4.3.2", "Shutting down, try again later");
		mx_session_unref(ms);
		free(d);
		smtp_mx__unref(mx);
		return;
	}
	int enforce = 0;
	int *junk = xcalloc(ms->n_rcpts + 1, sizeof *junk);
	const int spam_junk = v->spam_checked && (v->spam.flags & RSPAMD_REPLY_JUNK);
	for (size_t i = 0; i < ms->n_rcpts; i++) {
		int e = ms->rcpts[i].settings.dmarc == DIRECTORY_DMARC_ENFORCE;
		enforce |= e;
		junk[i] = (e && v->dmarc.disposition == DMARC_DISP_QUARANTINE) ||
			  (spam_junk && ms->rcpts[i].settings.spam);
	}
	if (v->spam_checked && v->spam.smtp_code != 0) {
		/* rspamd's reject or soft reject, or fail-closed without it */
		log_event(LOG_INFO, mx->log_svc, "event=spam_refused sid=%s code=%d",
			  smtp_session_id(d->session), v->spam.smtp_code);
		smtp_session_complete(d->session, v->spam.smtp_code, v->spam.smtp_enh, v->spam.text);
	} else if (enforce && v->dmarc.disposition == DMARC_DISP_REJECT) {
		/* refused now, never bounced later (RFC 7489 10.3) */
		char text[DMARC_DOMAIN_MAX + 64];
		snprintf(text, sizeof text, "Message rejected by the DMARC policy of %s",
			 v->dmarc.from_domain);
		log_event(LOG_INFO, mx->log_svc, "event=dmarc_rejected sid=%s from_domain=%s",
			  smtp_session_id(d->session), v->dmarc.from_domain);
		smtp_session_complete(d->session, 550, "5.7.1", text);
	} else {
		char *fields = xasprintf("%s%s", v->fields, v->spam_fields != NULL ? v->spam_fields : "");
		smtp_mx__enqueue_routed(mx, d->session, d->t, ms, junk, fields, strlen(fields),
					v->body, v->body_len);
		free(fields);
	}
	free(junk);
	mx_session_unref(ms);
	free(d);
	smtp_mx__unref(mx);
}

/* The end of DATA's quota check: one entry per distinct local route with
 * a limit. */
struct smtp_mx__qdata {
	smtp_mx *mx;
	smtp_session *session;
	const struct smtp_transaction *t; /* valid until the DATA completion */
	size_t n, pending;
	size_t n_routes;                  /* every route of the transaction */
	struct smtp_mx__qentry {
		const char *address;      /* in the session's routes */
		struct quota_view view;
		int status;
	} *e;
};

static void smtp_mx__on_data_go(smtp_session *s, const struct smtp_transaction *t, smtp_mx *mx);

static void smtp_mx__data_quota_done(struct smtp_mx__qdata *q)
{
	smtp_mx *mx = q->mx;
	struct mx_session *ms = smtp_session_data(q->session);
	size_t n_over = 0;
	int tenant_over = 0;
	for (size_t i = 0; i < q->n; i++) {
		if (q->e[i].status != MAIL_OK)
			continue;
		if (ms != NULL) {
			/* the copy's limits at delivery: its own, tightened to
			 * what its tenant has left (quota_view_effective), so the
			 * store refuses a copy that passes either */
			ms->caps = xrealloc(ms->caps, (ms->n_caps + 1) * sizeof *ms->caps);
			ms->caps[ms->n_caps].address = xstrdup(q->e[i].address);
			quota_view_effective(&q->e[i].view, &ms->caps[ms->n_caps].quota);
			ms->n_caps++;
		}
		int over = quota_view_over(&q->e[i].view, q->t->body_len, 1);
		if (over == 0)
			continue;
		n_over++;
		tenant_over |= over == 2;
		log_event(LOG_INFO, mx->log_svc, "event=quota_over sid=%s rcpt=%s size=%zu limit=%s",
			  smtp_session_id(q->session), q->e[i].address, q->t->body_len,
			  over == 1 ? "user" : "tenant");
	}
	if (n_over > 0 && n_over == q->n_routes) {
		/* it fits no recipient: refused now rather than bounced */
		log_event(LOG_INFO, mx->log_svc, "event=quota_refused sid=%s where=data size=%zu",
			  smtp_session_id(q->session), q->t->body_len);
		quota_client_refused(mx->quota, QUOTA_WHERE_DATA);
		smtp_session_complete(q->session, 552, "5.2.2",
				      tenant_over ? "Mailbox full: the message exceeds the domain's "
						    "storage quota"
						  : "Mailbox full: the message exceeds the "
						    "recipient's storage quota");
	} else {
		smtp_mx__on_data_go(q->session, q->t, mx);
	}
	free(q->e);
	free(q);
	smtp_mx__unref(mx);
}

struct smtp_mx__qwait {
	struct smtp_mx__qdata *q;
	size_t i;
};

static void smtp_mx__data_quota_one(int status, const struct quota_view *v, void *arg)
{
	struct smtp_mx__qwait *w = arg;
	struct smtp_mx__qdata *q = w->q;
	q->e[w->i].status = status;
	q->e[w->i].view = *v;
	free(w);
	if (--q->pending == 0)
		smtp_mx__data_quota_done(q);
}

/* 1 when the check runs (smtp_mx__data_quota_done goes on). */
static int smtp_mx__data_quota(smtp_mx *mx, smtp_session *s, const struct smtp_transaction *t)
{
	struct mx_session *ms = smtp_session_data(s);
	if (mx->quota == NULL || ms == NULL || ms->n_rcpts != t->n_rcpts)
		return 0;
	struct smtp_mx__qdata *q = xcalloc(1, sizeof *q);
	for (size_t i = 0; i < ms->n_rcpts; i++)
		q->n_routes += ms->rcpts[i].n_routes;
	q->e = xcalloc(q->n_routes + 1, sizeof *q->e);
	struct directory_quota *lim = xcalloc(2 * (q->n_routes + 1), sizeof *lim);
	for (size_t i = 0; i < ms->n_rcpts; i++) {
		const struct directory_rcpt *d = &ms->rcpts[i];
		for (size_t k = 0; k < d->n_routes; k++) {
			const struct directory_route *rt = &d->routes[k];
			struct directory_quota tl = smtp_mx__tenant_limit(d, rt->address);
			int dup = 0;
			for (size_t j = 0; j < q->n && !dup; j++)
				dup = strcmp(q->e[j].address, rt->address) == 0;
			if (rt->external || dup || !smtp_mx__limited(&rt->quota, &tl))
				continue;
			lim[2 * q->n] = rt->quota;
			lim[2 * q->n + 1] = tl;
			q->e[q->n++].address = rt->address;
		}
	}
	if (q->n == 0) {
		free(lim);
		free(q->e);
		free(q);
		return 0;
	}
	q->mx = mx;
	q->session = s;
	q->t = t;
	q->pending = q->n;
	smtp_mx__ref(mx);
	for (size_t i = 0; i < q->n; i++) {
		struct smtp_mx__qwait *w = xcalloc(1, sizeof *w);
		w->q = q;
		w->i = i;
		quota_client_get(mx->quota, q->e[i].address, &lim[2 * i], &lim[2 * i + 1],
				 smtp_mx__data_quota_one, w);
	}
	free(lim);
	return 1;
}

static void smtp_mx__on_data(smtp_session *s, const struct smtp_transaction *t, void *ctx)
{
	smtp_mx *mx = ctx;
	if (smtp_mx__data_quota(mx, s, t))
		return;
	smtp_mx__on_data_go(s, t, mx);
}

static void smtp_mx__on_data_go(smtp_session *s, const struct smtp_transaction *t, smtp_mx *mx)
{
	if (!mx->submission) {
		if (smtp_trace_hops(t->body, t->body_len) > SMTP_MX_HOPS_MAX) {
			smtp_session_complete(s, 554, "5.4.6", "Too many hops: a mail loop");
			return;
		}
		if (smtp_mx__delivered_to_loop(t, t->body, t->body_len)) {
			smtp_session_complete(s, 554, "5.4.6",
					      "Mail loop: already delivered to a recipient here");
			return;
		}
		struct mx_session *ms = smtp_session_data(s);
		if (ms == NULL || ms->txn == NULL) {
			/* no tenant of the message wants checks (or none are
			 * configured: tests of the engine) */
			if (ms == NULL || ms->n_rcpts != t->n_rcpts) {
				/* no resolution kept (cannot happen on the MX) */
				struct mx_plan plan;
				mx_plan_build(&plan, t, ms, NULL, NULL);
				smtp_mx__enqueue(mx, s, t, &plan, NULL);
				mx_plan_free(&plan);
				return;
			}
			uint8_t *copy = NULL;
			char *none = NULL;
			size_t len = t->body_len;
			if (mx->inbound != NULL) {
				copy = smtp_inbound_strip(mx->inbound, t->body, &len);
				none = xasprintf("Authentication-Results: %s; none\r\n", mx->hostname);
			}
			smtp_mx__enqueue_routed(mx, s, t, ms, NULL, none, none != NULL ? strlen(none) : 0,
						copy != NULL ? copy : t->body, len);
			free(copy);
			free(none);
			return;
		}
		struct smtp_mx__data *d = xcalloc(1, sizeof *d);
		d->mx = mx;
		d->session = s;
		d->t = t;
		d->ms = ms;
		ms->refs++;
		smtp_mx__ref(mx);
		int spam = 0;
		for (size_t i = 0; i < ms->n_rcpts; i++)
			spam |= ms->rcpts[i].settings.spam;
		inbound_txn_data(ms->txn, t->body, t->body_len, spam, t->rcpts, t->n_rcpts,
				 smtp_mx__data_verdict, d);
		return;
	}
	struct smtp_mx__remote *r = xcalloc(1, sizeof *r);
	r->work.data = r;
	r->mx = mx;
	r->session = s;
	r->t = t;
	r->remote = xcalloc(t->n_rcpts + 1, sizeof *r->remote);
	r->user = smtp_mx__user(mx, s);
	r->tenant_cached = r->user != NULL &&
			   smtp_rate_tenant_get(mx->rate, util_address_domain(r->user),
						uv_now(mx->loop), &r->tenant);
	smtp_mx__ref(mx);
	if (uv_queue_work(mx->loop, &r->work, smtp_mx__remote_work, smtp_mx__remote_done) < 0)
		smtp_mx__remote_done(&r->work, -1);
}

/* ---- submission: AUTH and the sender ----------------------------------- */

static void smtp_mx__auth_free(struct smtp_mx__auth *a)
{
	if (a->password != NULL) {
		OPENSSL_cleanse(a->password, strlen(a->password));
		free(a->password);
	}
	free(a->user);
	smtp_mx__unref(a->mx);
	free(a);
}

static void smtp_mx__auth_done(int status, const char *user, const struct sasl_scram_keys *keys,
			       void *arg)
{
	struct smtp_mx__auth *a = arg;
	(void)user;
	smtp_session_auth_complete(a->session, status, keys);
	smtp_mx__auth_free(a);
}

static void smtp_mx__auth_timer_closed(uv_handle_t *h)
{
	struct smtp_mx__auth *a = h->data;
	if (a->kind == SMTP_AUTH_PASSWORD)
		auth_pool_password(a->mx->auth, a->user, a->password, smtp_mx__auth_done, a);
	else
		auth_pool_scram(a->mx->auth, a->user, smtp_mx__auth_done, a);
}

static void smtp_mx__auth_timer_cb(uv_timer_t *t)
{
	uv_close((uv_handle_t *)t, smtp_mx__auth_timer_closed);
}

static void smtp_mx__on_auth(smtp_session *s, const struct smtp_auth_request *req, void *ctx)
{
	smtp_mx *mx = ctx;
	struct smtp_mx__auth *a = xcalloc(1, sizeof *a);
	a->mx = mx;
	a->session = s;
	a->kind = req->kind;
	a->user = xstrdup(req->user);
	if (req->password != NULL)
		a->password = xstrdup(req->password);
	smtp_mx__ref(mx);
	/* the penalty of the client's address holds the attempt back first */
	unsigned delay = mx->auth_delay_ms != NULL
				 ? mx->auth_delay_ms(mx->guard_arg, smtp_session_peer_ip(s))
				 : 0;
	uv_timer_init(mx->loop, &a->timer);
	a->timer.data = a;
	uv_timer_start(&a->timer, smtp_mx__auth_timer_cb, delay, 0);
	uv_unref((uv_handle_t *)&a->timer); /* a held-back attempt never delays a stop */
}

static void smtp_mx__on_auth_result(smtp_session *s, const char *user, int ok, void *ctx)
{
	smtp_mx *mx = ctx;
	(void)user;
	if (!ok && mx->auth_failed != NULL)
		mx->auth_failed(mx->guard_arg, smtp_session_peer_ip(s));
}

/* The MX's MAIL: a new transaction (its checks start with the first
 * recipient that wants them). */
static void smtp_mx__on_mx_mail(smtp_session *s, const char *from,
				const struct smtp_mail_params *params, void *ctx)
{
	smtp_mx *mx = ctx;
	(void)params;
	(void)mx;
	struct mx_session *ms = mx_session_get(s);
	mx_session_reset(ms);
	ms->mail_from = xstrdup(from);
	smtp_session_complete(s, 250, "2.1.0", "Ok");
}

static void smtp_mx__on_disconnect(smtp_session *s, void *ctx)
{
	(void)ctx;
	struct mx_session *ms = smtp_session_data(s);
	if (ms == NULL)
		return;
	smtp_session_set_data(s, NULL);
	inbound_txn_release(&ms->txn);
	mx_session_unref(ms);
}

static void smtp_mx__on_mail(smtp_session *s, const char *from,
			     const struct smtp_mail_params *params, void *ctx)
{
	(void)params;
	(void)ctx;
	mx_session_reset(mx_session_get(s));
	const char *user = smtp_session_user(s);
	char *f = from[0] != '\0' ? util_address_normalize(from, strlen(from)) : NULL;
	char *u = user != NULL ? util_address_normalize(user, strlen(user)) : NULL;
	int own = f != NULL && u != NULL && strcmp(f, u) == 0;
	free(f);
	free(u);
	if (own)
		smtp_session_complete(s, 250, "2.1.0", "Ok");
	else
		smtp_session_complete(s, 553, "5.7.1", "Sender address not owned by the user");
}

/* ---- start / stop ----------------------------------------------------- */

int smtp_mx_start(uv_loop_t *loop, const struct smtp_mx_settings *set, directory *dir,
		  queue_client *qc, smtp_mx **mx_r, const char **error_r)
{
	static const struct smtp_server_callbacks mx_callbacks = {
		.on_disconnect = smtp_mx__on_disconnect,
		.on_mail = smtp_mx__on_mx_mail,
		.on_rcpt = smtp_mx__on_rcpt,
		.on_data = smtp_mx__on_data,
	};
	static const struct smtp_server_callbacks submission_callbacks = {
		.on_disconnect = smtp_mx__on_disconnect,
		.on_mail = smtp_mx__on_mail,
		.on_rcpt = smtp_mx__on_rcpt,
		.on_data = smtp_mx__on_data,
		.on_auth = smtp_mx__on_auth,
		.on_auth_result = smtp_mx__on_auth_result,
	};
	smtp_mx *mx = xcalloc(1, sizeof *mx);
	mx->loop = loop;
	mx->dir = dir;
	mx->qc = qc;
	mx->refs = 1;
	mx->log_svc = xstrdup(set->server.log_svc != NULL ? set->server.log_svc : "smtp-mx");
	mx->hostname = xstrdup(set->server.hostname != NULL ? set->server.hostname : "localhost");
	mx->submission = set->submission;
	mx->auth_delay_ms = set->auth_delay_ms;
	mx->auth_failed = set->auth_failed;
	mx->guard_arg = set->server.guard_arg;
	mx->auth = set->auth;
	mx->rate = set->rate;
	/* a session may finish a command after the frontend drained: the
	 * checks live as long as the MX */
	mx->inbound = set->submission || set->inbound == NULL ? NULL
							      : smtp_inbound_ref(set->inbound);
	mx->grey = set->submission ? NULL : set->grey;
	mx->srs = set->submission ? NULL : set->srs;
	mx->quota = set->quota;
	if (set->submission && mx->rate == NULL) {
		mx->rate = smtp_rate_create(NULL);
		mx->rate_owned = 1;
	}
	if (set->submission && mx->auth == NULL) {
		*error_r = "submission needs an auth pool";
		smtp_mx__unref(mx);
		return -1;
	}
	struct smtp_server_settings server = set->server;
	if (set->submission) {
		server.auth_mechs = (1u << SASL_MECH_PLAIN) | (1u << SASL_MECH_LOGIN) |
				    (1u << SASL_MECH_SCRAM_SHA_256);
		server.auth_required = 1;
	}
	if (smtp_server_start(loop, &server, set->submission ? &submission_callbacks : &mx_callbacks,
			      mx, &mx->server, error_r) < 0) {
		smtp_mx__unref(mx);
		return -1;
	}
	mx->port = smtp_server_port(mx->server);
	*mx_r = mx;
	return 0;
}

int smtp_mx_port(const smtp_mx *mx)
{
	return mx->port;
}

void smtp_mx_stop(smtp_mx **mxp)
{
	smtp_mx *mx = *mxp;
	if (mx == NULL)
		return;
	*mxp = NULL;
	smtp_server_stop(&mx->server);
	smtp_mx__unref(mx);
}
