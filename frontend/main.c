/* main.c: the frontend daemon on the skeleton (lib/daemon-main.h). It
 * reaches etcd (directory and router), starts the SMTP MX, IMAP and POP3
 * services on the queue and store clients. SIGTERM or SIGINT stops the listeners and
 * closes the sessions (an SMTP command waiting on the queue or the
 * directory gets its answer first); the calls still in flight to the queue
 * and store tiers get FRONTEND_DRAIN_MS, then the process exits 0. Holds no
 * state that matters: kill it and clients reconnect. */
#include "auth-guard.h"
#include "auth-pool.h"
#include "budget.h"
#include "cidr.h"
#include "daemon-main.h"
#include "daemon-tls.h"
#include "directory.h"
#include "imap-backend-store.h"
#include "imap-server.h"
#include "log.h"
#include "maildrop-lock.h"
#include "pop3-server.h"
#include "queue-client.h"
#include "router.h"
#include "smtp-mx.h"
#include "smtp-inbound.h"
#include "greylist.h"
#include "srs.h"
#include "mail-error.h"
#include "store-client.h"
#include "quota-client.h"
#include "tls-certs.h"
#include "tls.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#define LOG_SVC "frontend"
/* After SIGTERM, calls in flight to the queue and store tiers get this
 * long to finish (an SMTP DATA waiting on the queue's commit, say); then
 * they fail and the frontend exits. Within the 10 s an operator's stop
 * waits before SIGKILL. */
#define FRONTEND_DRAIN_MS 8000
/* Message bodies all SMTP sessions may hold at once, and large bodies all
 * IMAP FETCHes and POP3 RETRs may hold at once (each its own budget;
 * docs/security.md). */
#define FRONTEND_BODY_BUDGET (128u << 20)
#define FRONTEND_SECRET_MAX 64

struct frontend_settings {
	struct daemon_settings daemon; /* first (lib/daemon-main.h) */
	struct daemon_listen smtp;     /* the SMTP MX listener */
	struct daemon_listen submission; /* SMTP submission, STARTTLS (587) */
	struct daemon_listen submissions; /* SMTP submission, implicit TLS (465) */
	struct daemon_listen imap;     /* the IMAP listener */
	struct daemon_listen imaps;    /* IMAP, implicit TLS (993) */
	struct daemon_listen pop3;     /* POP3, STLS (110) */
	struct daemon_listen pop3s;    /* POP3, implicit TLS (995) */
	const char *hostname;          /* SMTP greeting name */
	const char *tls_cert, *tls_key; /* the default certificate */
	const char *secret_file;       /* shared by every frontend */
	const char *trusted;           /* networks exempt from connection caps */
	unsigned pop3_lock_ttl_s;      /* the maildrop locks' lease (maildrop-lock.h) */
	unsigned auth_delay_max_ms;    /* the auth guard's longest penalty (auth-guard.h) */
	const char *rspamd;            /* rspamd's URL: spam verdicts (docs/inbound.md) */
	int rspamd_fail_closed;        /* no verdict: 451 rather than unchecked */
	struct daemon_tls_settings node_tls; /* mutual TLS to the queue and store tiers */
};

struct frontend {
	directory *dir;
	router *router;
	queue_client *queue;
	store_client *store;
	quota_client *quota;           /* quota usage and refusals (quota-client.h) */
	smtp_mx *mx;
	smtp_mx *submission;
	smtp_mx *submissions;
	smtp_inbound *inbound;         /* the MX's SPF, DKIM, DMARC */
	greylist *grey;                /* the MX's greylisting (etcd) */
	struct srs *srs;               /* the MX's forwarding (SRS) */
	imap_store_backend *mail;      /* the IMAP and POP3 servers' backend */
	imap_server *imap;
	imap_server *imaps;
	pop3_server *pop3;
	pop3_server *pop3s;
	tls_server *tls;
	struct daemon_tls node_tls;    /* .client: RPC to the nodes; NULL = plaintext */
	tls_certs *certs;
	auth_guard *guard;
	maildrop_locks *locks;         /* POP3's maildrop locks */
	auth_pool *auth;
	smtp_rate *rate;               /* submission's per-user outbound counts (smtp-rate.h) */
	struct cidr_list trusted;
	struct mem_budget budget;      /* SMTP message bodies in flight */
	struct mem_budget imap_budget; /* large bodies held by IMAP FETCH, POP3 RETR */
	uint8_t secret[FRONTEND_SECRET_MAX];
	size_t secret_len;
	uint8_t sasl_secret[32];
};

/* Offsets are within struct frontend_settings. */
#define FRONTEND(field) offsetof(struct frontend_settings, field)

static const struct daemon_option frontend_options[] = {
	{ .name = "id", .kind = DAEMON_OPTION_STRING, .offset = FRONTEND(daemon.id),
	  .value_name = "ID", .def_text = "frontend-1",
	  .help = "name in the logs and metrics" },
	{ .name = "etcd", .kind = DAEMON_OPTION_STRING, .offset = FRONTEND(daemon.etcd),
	  .value_name = "URL", .def_text = "http://127.0.0.1:23790",
	  .help = "etcd client URL (directory and rings)" },
	{ .name = "smtp", .kind = DAEMON_OPTION_LISTEN, .offset = FRONTEND(smtp),
	  .value_name = "HOST:PORT", .def_text = "127.0.0.1:2525", .help = "SMTP MX listener" },
	{ .name = "submission", .kind = DAEMON_OPTION_LISTEN, .offset = FRONTEND(submission),
	  .value_name = "HOST:PORT", .def_text = "127.0.0.1:2587",
	  .help = "SMTP submission listener (STARTTLS, AUTH)" },
	{ .name = "submissions", .kind = DAEMON_OPTION_LISTEN, .offset = FRONTEND(submissions),
	  .value_name = "HOST:PORT", .def_text = "127.0.0.1:2465",
	  .help = "SMTP submission over implicit TLS (needs --tls-cert)" },
	{ .name = "imap", .kind = DAEMON_OPTION_LISTEN, .offset = FRONTEND(imap),
	  .value_name = "HOST:PORT", .def_text = "127.0.0.1:2143", .help = "IMAP listener" },
	{ .name = "imaps", .kind = DAEMON_OPTION_LISTEN, .offset = FRONTEND(imaps),
	  .value_name = "HOST:PORT", .def_text = "127.0.0.1:2993",
	  .help = "IMAP over implicit TLS (needs --tls-cert)" },
	{ .name = "pop3", .kind = DAEMON_OPTION_LISTEN, .offset = FRONTEND(pop3),
	  .value_name = "HOST:PORT", .def_text = "127.0.0.1:2110", .help = "POP3 listener (STLS)" },
	{ .name = "pop3s", .kind = DAEMON_OPTION_LISTEN, .offset = FRONTEND(pop3s),
	  .value_name = "HOST:PORT", .def_text = "127.0.0.1:2995",
	  .help = "POP3 over implicit TLS (needs --tls-cert)" },
	{ .name = "tls-cert", .kind = DAEMON_OPTION_STRING, .offset = FRONTEND(tls_cert),
	  .value_name = "FILE", .help = "default certificate chain (PEM); none: no TLS" },
	{ .name = "tls-key", .kind = DAEMON_OPTION_STRING, .offset = FRONTEND(tls_key),
	  .value_name = "FILE", .help = "its private key (PEM)" },
	{ .name = "secret-file", .kind = DAEMON_OPTION_STRING, .offset = FRONTEND(secret_file),
	  .value_name = "FILE",
	  .help = "secret shared by all frontends (TLS tickets, SASL); none: per process" },
	{ .name = "trusted-networks", .kind = DAEMON_OPTION_STRING, .offset = FRONTEND(trusted),
	  .value_name = "CIDRS", .help = "networks exempt from connection caps (a,b,...)" },
	{ .name = "hostname", .kind = DAEMON_OPTION_STRING, .offset = FRONTEND(hostname),
	  .value_name = "NAME", .def_text = "localhost", .help = "name in the SMTP greeting" },
	{ .name = "rspamd", .kind = DAEMON_OPTION_STRING, .offset = FRONTEND(rspamd),
	  .value_name = "URL",
	  .help = "rspamd's normal worker (http://HOST:PORT) for tenants with spam=on; none: no "
		  "spam verdicts" },
	{ .name = "rspamd-fail-closed", .kind = DAEMON_OPTION_FLAG,
	  .offset = FRONTEND(rspamd_fail_closed),
	  .help = "when rspamd cannot answer, 451 4.7.1 instead of taking the message unchecked" },
	{ .name = "pop3-lock-ttl", .kind = DAEMON_OPTION_UINT, .offset = FRONTEND(pop3_lock_ttl_s),
	  .value_name = "S", .min = 2, .max = 3600, .def = MAILDROP_LOCK_TTL_S,
	  .help = "seconds a dead frontend's POP3 maildrop locks outlive it" },
	{ .name = "auth-failure-delay-max", .kind = DAEMON_OPTION_UINT,
	  .offset = FRONTEND(auth_delay_max_ms), .value_name = "MS", .min = 1, .max = 600000,
	  .def = AUTH_GUARD_MAX_DELAY_MS,
	  .help = "longest wait before an address's next login after failed ones (2, 4, 8 s ...)" },
	{ .name = NULL },
};

static int frontend_check(const void *settings, const char **error_r)
{
	const struct frontend_settings *set = settings;
	return daemon_tls_check(&set->node_tls, error_r);
}

/* ---- authentication guard hooks ------------------------------------------ */

static unsigned frontend_auth_delay(void *arg, const char *ip)
{
	struct frontend *fe = arg;
	return fe->guard != NULL ? auth_guard_delay_ms(fe->guard, ip) : 0;
}

static void frontend_auth_failed(void *arg, const char *ip)
{
	struct frontend *fe = arg;
	if (fe->guard != NULL)
		auth_guard_failure(fe->guard, ip);
}

static int frontend_ip_refused(void *arg, const char *ip)
{
	struct frontend *fe = arg;
	return fe->guard != NULL && auth_guard_blocked(fe->guard, ip);
}

/* The shared secret: from the file, or random for this process alone. */
static int frontend_secret(struct frontend *fe, const char *path, const char **error_r)
{
	if (path == NULL) {
		fe->secret_len = 32;
		RAND_bytes(fe->secret, (int)fe->secret_len);
	} else {
		FILE *f = fopen(path, "rb");
		if (f == NULL) {
			*error_r = "cannot read --secret-file";
			return -1;
		}
		fe->secret_len = fread(fe->secret, 1, sizeof fe->secret, f);
		fclose(f);
		if (fe->secret_len < TLS_TICKET_SECRET_MIN) {
			*error_r = "--secret-file holds fewer than 16 bytes";
			return -1;
		}
	}
	/* SASL's fake salts get a key of their own */
	unsigned int n = 0;
	EVP_Digest(fe->secret, fe->secret_len, fe->sasl_secret, &n, EVP_sha256(), NULL);
	return 0;
}

static int frontend_loopback(const struct daemon_listen *l)
{
	return l->text == NULL || cidr_is_loopback_text(l->host);
}

/* The MX's inbound checks in /metrics (docs/inbound.md): rspamd's verdicts
 * and its absences, greylisting's decisions. */
static void frontend_metrics_cb(buf *out, const char *labels, void *arg)
{
	struct frontend *fe = arg;
	struct directory_cache_stats dc;
	if (fe->dir != NULL && directory_cache_stats(fe->dir, &dc) == 0) {
		buf_printf(out,
			   "# TYPE mail_directory_cache_live gauge\n"
			   "mail_directory_cache_live{%s} %d\n"
			   "# TYPE mail_directory_cache_keys gauge\n"
			   "mail_directory_cache_keys{%s} %llu\n"
			   "# TYPE mail_directory_cache_reads_total counter\n"
			   "mail_directory_cache_reads_total{%s,result=\"hit\"} %llu\n"
			   "mail_directory_cache_reads_total{%s,result=\"fallback\"} %llu\n"
			   "mail_directory_cache_reads_total{%s,result=\"confirm\"} %llu\n"
			   "# TYPE mail_directory_cache_loads_total counter\n"
			   "mail_directory_cache_loads_total{%s} %llu\n"
			   "# TYPE mail_directory_cache_lags_total counter\n"
			   "mail_directory_cache_lags_total{%s} %llu\n"
			   "# TYPE mail_directory_cache_watch_lost_total counter\n"
			   "mail_directory_cache_watch_lost_total{%s} %llu\n",
			   labels, dc.live, labels, (unsigned long long)dc.keys, labels,
			   (unsigned long long)dc.hits, labels, (unsigned long long)dc.fallbacks,
			   labels, (unsigned long long)dc.confirms, labels,
			   (unsigned long long)dc.loads, labels, (unsigned long long)dc.lags, labels,
			   (unsigned long long)dc.watch_lost);
	}
	if (fe->quota != NULL)
		quota_client_metrics(fe->quota, out, labels);
	if (fe->inbound != NULL) {
		struct rspamd_stats rs;
		smtp_inbound_rspamd_stats(fe->inbound, &rs);
		buf_printf(out, "# TYPE mail_spam_checks_total counter\n");
		const struct {
			const char *result;
			uint64_t n;
		} rows[] = { { "ok", rs.ok }, { "unavailable", rs.unavailable },
			     { "skipped", rs.skipped }, { "busy", rs.busy } };
		for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
			buf_printf(out, "mail_spam_checks_total{%s,result=\"%s\"} %llu\n", labels,
				   rows[i].result, (unsigned long long)rows[i].n);
	}
	if (fe->grey != NULL) {
		struct greylist_stats gs;
		greylist_stats_get(fe->grey, &gs);
		buf_printf(out,
			   "# TYPE mail_greylist_checks_total counter\n"
			   "mail_greylist_checks_total{%s,result=\"deferred\"} %llu\n"
			   "mail_greylist_checks_total{%s,result=\"passed\"} %llu\n"
			   "mail_greylist_checks_total{%s,result=\"error\"} %llu\n",
			   labels, (unsigned long long)gs.deferred, labels,
			   (unsigned long long)gs.passed, labels, (unsigned long long)gs.errors);
	}
}

/* SRS (forwarding): its secret is derived from the frontends' shared
 * secret, so every frontend takes back the addresses any other made
 * (docs/inbound.md). 0, or -1 with *error_r. */
static int frontend_srs(struct frontend *fe, const char **error_r)
{
	uint8_t key[32];
	unsigned key_len = sizeof key;
	static const char label[] = "mail srs v1";
	if (HMAC(EVP_sha256(), fe->secret, (int)fe->secret_len, (const uint8_t *)label,
		 sizeof label - 1, key, &key_len) == NULL) {
		*error_r = "cannot derive the SRS secret";
		return -1;
	}
	char hex[sizeof key * 2 + 1];
	for (unsigned i = 0; i < key_len; i++)
		snprintf(hex + 2 * i, 3, "%02x", key[i]);
	const char *secrets[] = { hex };
	struct srs_settings ss = { .secrets = secrets, .nsecrets = 1 };
	int ret = srs_create(&ss, &fe->srs, error_r);
	OPENSSL_cleanse(key, sizeof key);
	OPENSSL_cleanse(hex, sizeof hex);
	return ret == 0 ? 0 : -1;
}

/* Fill the settings every SMTP listener shares. */
static void frontend_smtp_common(struct frontend *fe, const struct frontend_settings *set,
				 struct smtp_mx_settings *mx)
{
	smtp_mx_settings_init_default(mx);
	mx->server.hostname = set->hostname;
	mx->server.tls = fe->tls;
	mx->server.trusted = &fe->trusted;
	mx->server.budget = &fe->budget;
	mx->server.plaintext_auth = 1; /* from loopback peers only: development mode */
	mx->server.sasl_secret = fe->sasl_secret;
	mx->server.sasl_secret_len = sizeof fe->sasl_secret;
	mx->server.ip_refused = frontend_ip_refused;
	mx->server.guard_arg = fe;
	mx->auth_delay_ms = frontend_auth_delay;
	mx->auth_failed = frontend_auth_failed;
	mx->auth = fe->auth;
	mx->rate = fe->rate; /* 587 and 465 count together */
	mx->quota = fe->quota;
}

/* A listener on l (implicit: TLS from the first byte) with what the IMAP
 * and POP3 listeners share (conn.h); the rest stays the engine's default. */
static void frontend_listener(struct frontend *fe, const struct daemon_listen *l, int implicit,
			      struct conn_settings *set)
{
	set->host = l->host;
	set->port = l->port;
	set->access = (struct conn_access){
		.tls = fe->tls,
		.implicit_tls = implicit,
		.allow_plaintext_login = 1, /* from loopback peers only */
		.trusted = &fe->trusted,
		.sasl_secret = fe->sasl_secret,
		.sasl_secret_len = sizeof fe->sasl_secret,
		.body_budget = &fe->imap_budget,
		.auth_delay_ms = frontend_auth_delay,
		.auth_failed = frontend_auth_failed,
		.ip_refused = frontend_ip_refused,
		.guard_arg = fe,
	};
}

static int frontend_imap_start(struct frontend *fe, uv_loop_t *loop, const struct daemon_listen *l,
			       int implicit, imap_server **server_r, const char **error_r)
{
	struct imap_settings imap;
	imap_settings_init(&imap);
	frontend_listener(fe, l, implicit, &imap.conn);
	return imap_server_start(loop, &imap, &imap_store_backend_vfuncs, fe->mail, server_r,
				 error_r);
}

/* POP3 over the same backend as IMAP. */
static int frontend_pop3_start(struct frontend *fe, uv_loop_t *loop, const struct daemon_listen *l,
			       int implicit, pop3_server **server_r, const char **error_r)
{
	struct pop3_settings pop3;
	pop3_settings_init(&pop3);
	frontend_listener(fe, l, implicit, &pop3.conn);
	pop3.locks = fe->locks;
	return pop3_server_start(loop, &pop3, &imap_store_backend_vfuncs, fe->mail, server_r,
				 error_r);
}

static int frontend_start(struct daemon *d, const void *settings, void *ctx)
{
	const struct frontend_settings *set = settings;
	struct frontend *fe = ctx;
	uv_loop_t *loop = daemon_loop(d);
	const char *error = NULL;
	if (cidr_list_parse(set->trusted, &fe->trusted, &error) < 0)
		return daemon_start_failed(d, "trusted-networks", error);
	if (frontend_secret(fe, set->secret_file, &error) < 0)
		return daemon_start_failed(d, "secret", error);
	if ((set->tls_cert == NULL) != (set->tls_key == NULL))
		return daemon_start_failed(d, "tls", "--tls-cert and --tls-key go together");
	if (set->tls_cert != NULL) {
		struct tls_server_settings ts = { set->tls_cert, set->tls_key, 0 };
		if (tls_server_create(&ts, &fe->tls, &error) < 0)
			return daemon_start_failed(d, "tls", error);
		tls_server_set_ticket_secret(fe->tls, fe->secret, fe->secret_len);
		fe->certs = tls_certs_start(loop, fe->tls, daemon_etcd_conf(d), daemon_etcd_stats(d),
					    set->tls_cert, set->tls_key);
	} else if (!frontend_loopback(&set->smtp) || !frontend_loopback(&set->submission) ||
		   !frontend_loopback(&set->imap) || !frontend_loopback(&set->pop3)) {
		/* passwords would cross the network in plaintext */
		return daemon_start_failed(d, "tls", "a listener off loopback needs --tls-cert");
	}
	/* the frontend serves no RPC: the client side only */
	if (daemon_tls_init(&set->node_tls, 0, &fe->node_tls, &error) < 0)
		return daemon_start_failed(d, "node_tls", error);
	fe->budget.limit = FRONTEND_BODY_BUDGET;
	fe->imap_budget.limit = FRONTEND_BODY_BUDGET;
	fe->dir = directory_create(daemon_etcd_conf(d));
	directory_set_etcd_stats(fe->dir, daemon_etcd_stats(d));
	/* RCPT and LOGIN read the directory from memory (docs/directory.md) */
	directory_cache_start(fe->dir, 0, 0);
	if (router_create(daemon_etcd_conf(d), &fe->router, &error) < 0)
		return daemon_start_failed(d, "router", error);
	fe->queue = queue_client_create(loop, fe->router);
	fe->store = store_client_create(loop, fe->router);
	if (fe->node_tls.client != NULL) {
		queue_client_set_tls(fe->queue, fe->node_tls.client);
		store_client_set_tls(fe->store, fe->node_tls.client);
	}
	struct auth_guard_settings gs = {
		.etcd = daemon_etcd_conf(d), .node_id = set->daemon.id,
		.stats = daemon_etcd_stats(d), .max_delay_ms = set->auth_delay_max_ms,
	};
	fe->guard = auth_guard_start(loop, &gs);
	struct maildrop_locks_settings ls = {
		.etcd = daemon_etcd_conf(d), .stats = daemon_etcd_stats(d),
		.holder = set->daemon.id, .ttl_s = set->pop3_lock_ttl_s,
	};
	fe->locks = maildrop_locks_start(loop, &ls);
	fe->auth = auth_pool_start(loop, fe->dir, fe->secret, fe->secret_len, 0);
	fe->quota = quota_client_create(loop, fe->store, fe->dir);
	fe->mail = imap_store_backend_create(fe->auth, fe->store);
	imap_store_backend_set_quota(fe->mail, fe->quota);
	fe->rate = smtp_rate_create(NULL);

	struct smtp_inbound_settings is = {
		.dns_server = set->daemon.dns.text,
		.authserv_id = set->hostname != NULL ? set->hostname : "localhost",
		.rspamd_url = set->rspamd,
		.rspamd_fail_closed = set->rspamd_fail_closed,
	};
	if (smtp_inbound_create(loop, &is, &fe->inbound, &error) != MAIL_OK)
		return daemon_start_failed(d, "inbound checks", error);
	struct smtp_mx_settings mx;
	frontend_smtp_common(fe, set, &mx);
	mx.server.host = set->smtp.host;
	mx.server.port = set->smtp.port;
	mx.inbound = fe->inbound;
	struct greylist_settings gls = { .etcd_stats = daemon_etcd_stats(d) };
	fe->grey = greylist_create(daemon_etcd_conf(d), &gls);
	mx.grey = fe->grey;
	if (frontend_srs(fe, &error) < 0)
		return daemon_start_failed(d, "srs", error);
	mx.srs = fe->srs;
	daemon_add_collector(d, frontend_metrics_cb, fe);
	if (smtp_mx_start(loop, &mx, fe->dir, fe->queue, &fe->mx, &error) < 0)
		return daemon_start_failed(d, "smtp", error);
	if (set->submission.text != NULL) {
		frontend_smtp_common(fe, set, &mx);
		mx.submission = 1;
		mx.server.log_svc = "smtp-submission";
		mx.server.host = set->submission.host;
		mx.server.port = set->submission.port;
		if (smtp_mx_start(loop, &mx, fe->dir, fe->queue, &fe->submission, &error) < 0)
			return daemon_start_failed(d, "submission", error);
	}
	if (set->submissions.text != NULL && fe->tls != NULL) {
		frontend_smtp_common(fe, set, &mx);
		mx.submission = 1;
		mx.server.implicit_tls = 1;
		mx.server.log_svc = "smtp-submissions";
		mx.server.host = set->submissions.host;
		mx.server.port = set->submissions.port;
		if (smtp_mx_start(loop, &mx, fe->dir, fe->queue, &fe->submissions, &error) < 0)
			return daemon_start_failed(d, "submissions", error);
	}

	if (frontend_imap_start(fe, loop, &set->imap, 0, &fe->imap, &error) < 0)
		return daemon_start_failed(d, "imap", error);
	if (set->imaps.text != NULL && fe->tls != NULL &&
	    frontend_imap_start(fe, loop, &set->imaps, 1, &fe->imaps, &error) < 0)
		return daemon_start_failed(d, "imaps", error);
	if (set->pop3.text != NULL &&
	    frontend_pop3_start(fe, loop, &set->pop3, 0, &fe->pop3, &error) < 0)
		return daemon_start_failed(d, "pop3", error);
	if (set->pop3s.text != NULL && fe->tls != NULL &&
	    frontend_pop3_start(fe, loop, &set->pop3s, 1, &fe->pop3s, &error) < 0)
		return daemon_start_failed(d, "pop3s", error);
	if (fe->tls == NULL)
		log_event(LOG_WARN, LOG_SVC, "event=no_tls mode=development "
			  "note=\"loopback listeners only; implicit-TLS ports off\"");
	log_event(LOG_INFO, LOG_SVC, "event=ready id=%s smtp=%s submission=%s submissions=%s "
		  "imap=%s imaps=%s pop3=%s pop3s=%s tls=%s plaintext_auth=loopback-only "
		  "node_tls=%s",
		  set->daemon.id, set->smtp.text, set->submission.text ? set->submission.text : "-",
		  fe->submissions ? set->submissions.text : "-", set->imap.text,
		  fe->imaps ? set->imaps.text : "-", fe->pop3 ? set->pop3.text : "-",
		  fe->pop3s ? set->pop3s.text : "-", fe->tls ? "on" : "off",
		  fe->node_tls.client != NULL ? "on" : "off");
	return 0;
}

/* The sessions close; the calls they started drain (frontend_pending). */
static void frontend_stop(void *ctx)
{
	struct frontend *fe = ctx;
	if (fe->mx != NULL)
		smtp_mx_stop(&fe->mx);
	if (fe->submission != NULL)
		smtp_mx_stop(&fe->submission);
	if (fe->submissions != NULL)
		smtp_mx_stop(&fe->submissions);
	/* checks in flight end now: their sessions answer and close */
	if (fe->inbound != NULL)
		smtp_inbound_abort(fe->inbound);
	imap_server_stop(&fe->imap);
	imap_server_stop(&fe->imaps);
	pop3_server_stop(&fe->pop3);
	pop3_server_stop(&fe->pop3s);
	auth_guard_stop(&fe->guard);
	tls_certs_stop(&fe->certs);
	/* its threads finish the check they run; the rest fail over */
	auth_pool_stop(&fe->auth);
}

static size_t frontend_pending(void *ctx)
{
	struct frontend *fe = ctx;
	return (fe->queue != NULL ? queue_client_pending(fe->queue) : 0) +
	       (fe->store != NULL ? store_client_pending(fe->store) : 0) +
	       (fe->inbound != NULL ? smtp_inbound_pending(fe->inbound) : 0);
}

/* The clients' connections were the last handles keeping the loop running. */
static void frontend_drained(void *ctx)
{
	struct frontend *fe = ctx;
	queue_client_destroy(&fe->queue);
	store_client_destroy(&fe->store);
	/* after the store client: its pending calls ended there */
	quota_client_destroy(&fe->quota);
	/* no session is left to check */
	smtp_inbound_destroy(&fe->inbound);
	/* every POP3 session is gone: give back the lease (its locks with it) */
	maildrop_locks_stop(&fe->locks);
}

static void frontend_deinit(void *ctx)
{
	struct frontend *fe = ctx;
	if (fe->router != NULL)
		router_destroy(&fe->router);
	if (fe->dir != NULL)
		directory_destroy(&fe->dir);
	imap_store_backend_destroy(&fe->mail);
	smtp_rate_destroy(&fe->rate);
	greylist_destroy(&fe->grey);
	srs_destroy(&fe->srs);
	tls_server_destroy(&fe->tls);
	daemon_tls_deinit(&fe->node_tls);
	cidr_list_free(&fe->trusted);
}

static const struct daemon_option_group frontend_option_groups[] = {
	{ .rows = frontend_options },
	{ .rows = daemon_tls_options, .offset = FRONTEND(node_tls) },
	{ .rows = NULL },
};

static const struct daemon_def frontend_daemon = {
	.name = "frontend",
	.svc = LOG_SVC,
	.summary = "The frontend: SMTP (MX, submission), IMAP and POP3 for every tenant, with TLS,\n"
		   "over the queue and store tiers. Stateless.",
	.settings_size = sizeof(struct frontend_settings),
	.ctx_size = sizeof(struct frontend),
	.options = frontend_option_groups,
	.check = frontend_check,
	.start = frontend_start,
	.stop = frontend_stop,
	.pending = frontend_pending,
	.drained = frontend_drained,
	.drain_ms = FRONTEND_DRAIN_MS,
	.deinit = frontend_deinit,
};

int main(int argc, char **argv)
{
	return daemon_main(&frontend_daemon, argc, argv);
}
