/* smtp-inbound.c: SPF, DKIM, DMARC and Authentication-Results for the MX
 * (smtp-inbound.h).
 *
 * A transaction is reference-counted: the caller holds one until
 * inbound_txn_release(), each check in flight (two SPF queries, the DKIM
 * job, the DMARC check) one. The DATA pipeline is strip -> DKIM -> (wait
 * for SPF) -> DMARC -> compose; each step starts from the previous one's
 * callback.
 */
#include "smtp-inbound.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth-results.h"
#include "conncheck.h"
#include "dkim-from.h"
#include "dkim-verify.h"
#include "dns.h"
#include "log.h"
#include "mail-error.h"
#include "xalloc.h"

/* The header section the From domain is looked for in (a bigger one has
 * no usable From: DMARC none). */
#define INBOUND_HEADER_MAX (1024u * 1024u)
/* How long a TXT answer (DKIM key, DMARC record) is kept (lib/dns). */
#define SMTP_INBOUND_TXT_CACHE_MS 60000u

struct smtp_inbound {
	uv_loop_t *loop;
	dns_resolver *dns;
	spf_checker *spf;
	dkim_verifier *dkim;
	dmarc_checker *dmarc;
	conncheck_checker *conn;
	rspamd_client *rspamd;    /* NULL: no spam verdicts */
	int rspamd_fail_closed;
	char *authserv_id;
	int aborted;              /* stopping: everything ends at once */
	unsigned refs;            /* the owner's, each user's (an MX), each
				   * transaction's and connection check's */
	struct inbound_txn *txns; /* alive (the list of abort) */
	struct conn_job *jobs;    /* connection checks in flight */
	size_t n_txns, n_jobs;
};

/* A connection check in flight (smtp_inbound_client_check). */
struct conn_job {
	smtp_inbound *in;
	struct conn_job *prev, *next;
	conncheck_job *job;
	void (*client_cb)(const struct conncheck_client_result *r, void *arg);
	void (*rhsbl_cb)(const struct conncheck_rhsbl_result *r, void *arg);
	void *arg;
};

/* One SPF query's outcome, copied from its callback. */
struct spf_part {
	spf_query *q;
	int done;
	enum spf_status status;
	enum spf_identity identity;
	char *sender;         /* as checked */
	char *domain;
	char *received_spf;   /* the whole field, CRLF-terminated */
};

struct inbound_txn {
	smtp_inbound *in;
	struct inbound_txn *prev, *next; /* in->txns */
	unsigned refs;
	char sid[40];
	struct spf_part from, helo;
	inbound_spf_cb *wait_cb;
	void *wait_arg;
	/* DATA */
	inbound_data_cb *data_cb;
	void *data_arg;
	int data_waits_spf;   /* DKIM is done: DMARC waits for from */
	uint8_t *msg;         /* the stripped copy */
	size_t msg_len;
	struct dkim_verify_sig *sigs;
	size_t n_sigs;
	int dkim_error;       /* the verifier refused the message (too big...) */
	dkim_verify_job *dkim_job; /* in flight */
	dmarc_check *dmarc_chk;    /* in flight */
	rspamd_check *spam_chk;    /* in flight */
	int spam_wanted;
	char *client_ip, *helo_name, *mail_from;
	const char *const *rcpts;  /* borrowed for rspamd */
	size_t n_rcpts;
	int spam_checked;
	struct rspamd_reply spam;
	buf spam_fields;
	char iprev[16];       /* "" until inbound_txn_iprev() */
	char iprev_ip[48];
	char iprev_name[256];
	char from_domain[DKIM_DOMAIN_MAX + 1];
	struct dmarc_outcome dmarc;
};

/* ---- the object ------------------------------------------------------------- */

int smtp_inbound_create(uv_loop_t *loop, const struct smtp_inbound_settings *set,
			smtp_inbound **in_r, const char **error_r)
{
	smtp_inbound *in = xcalloc(1, sizeof *in);
	in->loop = loop;
	in->refs = 1;
	in->authserv_id = xstrdup(set->authserv_id != NULL ? set->authserv_id : "localhost");
	/* DKIM keys and DMARC records of a busy sender are asked once a
	 * minute, not per message */
	struct dns_settings ds = { .server = set->dns_server,
				   .txt_cache_ms = SMTP_INBOUND_TXT_CACHE_MS };
	struct spf_settings ss = spf_settings_default();
	ss.dns_server = set->dns_server;
	ss.receiver = in->authserv_id;
	ss.timeout_ms = set->spf_timeout_ms != 0 ? set->spf_timeout_ms
						 : SMTP_INBOUND_SPF_TIMEOUT_DEFAULT;
	int err = MAIL_OK;
	if (dns_resolver_create(loop, &ds, &in->dns, error_r) < 0)
		err = MAIL_ERR_PARAMS;
	if (err == MAIL_OK)
		err = spf_checker_create(loop, &ss, &in->spf, error_r);
	if (err == MAIL_OK)
		err = dkim_verifier_create(loop, in->dns, NULL, &in->dkim, error_r);
	if (err == MAIL_OK)
		err = dmarc_checker_create(loop, in->dns, NULL, &in->dmarc, error_r);
	if (err == MAIL_OK && conncheck_checker_create(loop, in->dns, NULL, &in->conn, error_r) < 0)
		err = MAIL_ERR_PARAMS;
	if (err == MAIL_OK && set->rspamd_url != NULL) {
		struct rspamd_settings rs = rspamd_settings_default();
		rs.url = set->rspamd_url;
		err = rspamd_client_create(loop, &rs, &in->rspamd, error_r);
		in->rspamd_fail_closed = set->rspamd_fail_closed;
	}
	if (err != MAIL_OK) {
		smtp_inbound_destroy(&in);
		return err;
	}
	*in_r = in;
	return MAIL_OK;
}

smtp_inbound *smtp_inbound_ref(smtp_inbound *in)
{
	in->refs++;
	return in;
}

/* The last reference: whatever is in flight was aborted and has ended
 * (each transaction and check holds a reference). */
static void inbound_free(smtp_inbound *in)
{
	smtp_inbound_abort(in);
	rspamd_client_destroy(&in->rspamd);
	conncheck_checker_destroy(&in->conn);
	dmarc_checker_destroy(&in->dmarc);
	dkim_verifier_destroy(&in->dkim);
	spf_checker_destroy(&in->spf);
	dns_resolver_destroy(&in->dns);
	free(in->authserv_id);
	free(in);
}

void smtp_inbound_unref(smtp_inbound **inp)
{
	smtp_inbound *in = *inp;
	if (in == NULL)
		return;
	*inp = NULL;
	if (--in->refs == 0)
		inbound_free(in);
}

void smtp_inbound_destroy(smtp_inbound **inp)
{
	if (*inp == NULL)
		return;
	smtp_inbound_abort(*inp);
	smtp_inbound_unref(inp);
}

struct dns_resolver *smtp_inbound_resolver(smtp_inbound *in)
{
	return in->dns;
}

struct conncheck_checker *smtp_inbound_conncheck(smtp_inbound *in)
{
	return in->conn;
}

void inbound_txn_iprev(inbound_txn *t, const char *result, const char *ip, const char *name)
{
	snprintf(t->iprev, sizeof t->iprev, "%s", result);
	snprintf(t->iprev_ip, sizeof t->iprev_ip, "%s", ip);
	snprintf(t->iprev_name, sizeof t->iprev_name, "%s", name);
}

/* ---- the transaction ---------------------------------------------------------- */

static void spf_part_free(struct spf_part *p)
{
	free(p->sender);
	free(p->domain);
	free(p->received_spf);
}

static void txn_unref(inbound_txn *t)
{
	if (--t->refs > 0)
		return;
	smtp_inbound *in = t->in;
	if (t->prev != NULL)
		t->prev->next = t->next;
	else
		in->txns = t->next;
	if (t->next != NULL)
		t->next->prev = t->prev;
	in->n_txns--;
	spf_part_free(&t->from);
	spf_part_free(&t->helo);
	free(t->msg);
	free(t->sigs);
	buf_deinit(&t->spam_fields);
	free(t->client_ip);
	free(t->helo_name);
	free(t->mail_from);
	free(t);
	smtp_inbound_unref(&in);
}

static void data_dmarc(inbound_txn *t);
static void data_aborted(inbound_txn *t);

static void spf_done(struct spf_part *p, const struct spf_result *r)
{
	p->q = NULL;
	p->done = 1;
	p->status = r != NULL ? r->status : SPF_TEMPERROR;
	if (r != NULL) {
		p->identity = r->identity;
		p->sender = xstrdup(r->sender);
		p->domain = xstrdup(r->domain);
		p->received_spf = xstrdup(r->received_spf);
	}
}

static void spf_from_cb(const struct spf_result *r, void *arg)
{
	inbound_txn *t = arg;
	spf_done(&t->from, r);
	if (t->wait_cb != NULL) {
		inbound_spf_cb *cb = t->wait_cb;
		t->wait_cb = NULL;
		cb(t->from.status, t->wait_arg);
	}
	if (t->data_waits_spf) {
		t->data_waits_spf = 0;
		data_dmarc(t);
	}
	txn_unref(t);
}

static void spf_helo_cb(const struct spf_result *r, void *arg)
{
	inbound_txn *t = arg;
	spf_done(&t->helo, r);
	txn_unref(t);
}

inbound_txn *inbound_txn_start(smtp_inbound *in, const char *sid, const char *client_ip,
			       const char *helo, const char *mail_from)
{
	inbound_txn *t = xcalloc(1, sizeof *t);
	t->in = smtp_inbound_ref(in);
	buf_init(&t->spam_fields);
	t->client_ip = xstrdup(client_ip);
	t->helo_name = xstrdup(helo != NULL ? helo : "");
	t->mail_from = xstrdup(mail_from != NULL ? mail_from : "");
	t->next = in->txns;
	if (in->txns != NULL)
		in->txns->prev = t;
	in->txns = t;
	in->n_txns++;
	snprintf(t->sid, sizeof t->sid, "%s", sid);
	if (in->aborted) {
		/* stopping: no DNS; SPF is temperror at once */
		t->refs = 1;
		t->from.done = t->helo.done = 1;
		t->from.status = t->helo.status = SPF_TEMPERROR;
		return t;
	}
	t->refs = 3; /* the caller's, and one per SPF query */
	struct spf_request req = {
		.client_ip = client_ip, .helo = helo, .mail_from = mail_from,
		.identity = SPF_IDENTITY_MAILFROM, .id = t->sid,
	};
	t->from.q = spf_check(in->spf, &req, spf_from_cb, t);
	req.identity = SPF_IDENTITY_HELO;
	t->helo.q = spf_check(in->spf, &req, spf_helo_cb, t);
	return t;
}

void inbound_txn_release(inbound_txn **tp)
{
	inbound_txn *t = *tp;
	if (t == NULL)
		return;
	*tp = NULL;
	txn_unref(t);
}

/* Answers a wait on a later turn of the loop when SPF is already done:
 * the contract says never inside the call. */
struct spf_later {
	uv_idle_t idle;
	inbound_txn *t;
	inbound_spf_cb *cb;
	void *arg;
};

static void spf_later_closed(uv_handle_t *h)
{
	struct spf_later *l = h->data;
	l->cb(l->t->from.status, l->arg);
	txn_unref(l->t);
	free(l);
}

static void spf_later_cb(uv_idle_t *h)
{
	uv_idle_stop(h);
	uv_close((uv_handle_t *)h, spf_later_closed);
}

void inbound_txn_spf_wait(inbound_txn *t, inbound_spf_cb *cb, void *arg)
{
	if (!t->from.done) {
		t->wait_cb = cb;
		t->wait_arg = arg;
		return;
	}
	struct spf_later *l = xcalloc(1, sizeof *l);
	l->t = t;
	l->cb = cb;
	l->arg = arg;
	t->refs++;
	uv_idle_init(t->in->loop, &l->idle);
	l->idle.data = l;
	uv_idle_start(&l->idle, spf_later_cb);
}

/* ---- DATA -------------------------------------------------------------------------- */

static enum dmarc_auth spf_to_dmarc(enum spf_status s)
{
	switch (s) {
	case SPF_PASS:
		return DMARC_AUTH_PASS;
	case SPF_FAIL:
	case SPF_SOFTFAIL:
		return DMARC_AUTH_FAIL;
	case SPF_TEMPERROR:
		return DMARC_AUTH_TEMPERROR;
	case SPF_PERMERROR:
		return DMARC_AUTH_PERMERROR;
	default:
		return DMARC_AUTH_NONE;
	}
}

static enum dmarc_auth dkim_to_dmarc(enum dkim_verify_status s)
{
	switch (s) {
	case DKIM_VERIFY_PASS:
		return DMARC_AUTH_PASS;
	case DKIM_VERIFY_TEMPERROR:
		return DMARC_AUTH_TEMPERROR;
	case DKIM_VERIFY_PERMERROR:
		return DMARC_AUTH_PERMERROR;
	default:
		return DMARC_AUTH_FAIL;
	}
}

/* An spf method of Authentication-Results for part p. */
static void spf_method(const struct spf_part *p, struct authres_method *m)
{
	memset(m, 0, sizeof *m);
	m->method = "spf";
	m->result = spf_status_name(p->status);
	if (p->sender == NULL)
		return;
	if (p->identity == SPF_IDENTITY_HELO)
		m->props[m->n_props++] = (struct authres_prop){ "smtp", "helo", p->domain };
	else
		m->props[m->n_props++] = (struct authres_prop){ "smtp", "mailfrom", p->sender };
}

static void data_finish(inbound_txn *t)
{
	smtp_inbound *in = t->in;
	/* spf (MAIL FROM, and HELO unless <> made HELO the MAIL FROM
	 * identity), one dkim per signature (or dkim=none), dmarc */
	size_t n_max = 4 + (t->n_sigs > 0 ? t->n_sigs : 1);
	struct authres_method *m = xcalloc(n_max, sizeof *m);
	char (*comments)[64] = xcalloc(n_max, sizeof *comments);
	size_t n = 0;
	spf_method(&t->from, &m[n++]);
	if (t->from.identity != SPF_IDENTITY_HELO && t->helo.done && t->helo.sender != NULL)
		spf_method(&t->helo, &m[n++]);
	if (t->n_sigs == 0) {
		dkim_verify_sig_authres(NULL, &m[n], comments[n], sizeof comments[n]);
		if (t->dkim_error)
			m[n].result = "permerror"; /* the message could not be read */
		n++;
	}
	for (size_t i = 0; i < t->n_sigs; i++, n++)
		dkim_verify_sig_authres(&t->sigs[i], &m[n], comments[n], sizeof comments[n]);
	if (t->from_domain[0] != '\0') {
		dmarc_outcome_authres(&t->dmarc, &m[n], comments[n], sizeof comments[n]);
		n++;
	}
	if (t->iprev[0] != '\0') {
		m[n] = (struct authres_method){ .method = "iprev", .result = t->iprev,
						.comment = t->iprev_name[0] != '\0' ? t->iprev_name
										    : NULL };
		m[n].props[m[n].n_props++] = (struct authres_prop){ "policy", "iprev", t->iprev_ip };
		n++;
	}
	char *ar = NULL;
	size_t ar_len = 0;
	const char *error;
	if (authres_compose(in->authserv_id, m, n, &ar, &ar_len, &error) != MAIL_OK) {
		/* a bug of ours, not the network's: keep a field that says so */
		log_event(LOG_ERROR, "smtp-mx", "event=authres_failed sid=%s error=\"%s\"", t->sid,
			  error);
		ar = xasprintf("Authentication-Results: %s; none\r\n", in->authserv_id);
		ar_len = strlen(ar);
	}
	const char *rspf = t->from.received_spf != NULL ? t->from.received_spf : "";
	char *fields = xasprintf("%s%s", ar, rspf);
	size_t dkim_pass = 0;
	for (size_t i = 0; i < t->n_sigs; i++)
		dkim_pass += t->sigs[i].status == DKIM_VERIFY_PASS;
	buf_append(&t->spam_fields, "", 1);
	struct inbound_verdict v = {
		.spam_checked = t->spam_checked,
		.spam = t->spam,
		.spam_fields = (const char *)t->spam_fields.data,
		.spf = t->from.status,
		.dmarc = t->dmarc,
		.dkim_pass = dkim_pass,
		.fields = fields,
		.fields_len = strlen(fields),
		.body = t->msg,
		.body_len = t->msg_len,
	};
	log_event(LOG_INFO, "smtp-mx",
		  "event=authenticated sid=%s spf=%s helo_spf=%s dkim=%zu/%zu dmarc=%s from=%s "
		  "disposition=%s",
		  t->sid, spf_status_name(t->from.status),
		  t->helo.done ? spf_status_name(t->helo.status) : "-", dkim_pass, t->n_sigs,
		  dmarc_result_name(t->dmarc.result),
		  t->from_domain[0] != '\0' ? t->from_domain : "-",
		  dmarc_disp_name(t->dmarc.disposition));
	inbound_data_cb *cb = t->data_cb;
	t->data_cb = NULL;
	cb(&v, t->data_arg);
	free(fields);
	free(ar);
	free(comments);
	free(m);
	txn_unref(t);
}

/* The DATA pipeline ends without a verdict (stopping). */
static void data_aborted(inbound_txn *t)
{
	struct inbound_verdict v = { .aborted = 1 };
	inbound_data_cb *cb = t->data_cb;
	t->data_cb = NULL;
	cb(&v, t->data_arg);
	txn_unref(t);
}

static void spam_cb(const struct rspamd_result *r, void *arg)
{
	inbound_txn *t = arg;
	t->spam_chk = NULL;
	const struct rspamd_reply *reply = rspamd_result_reply(r, t->in->rspamd_fail_closed);
	t->spam_checked = 1;
	t->spam = *reply;
	if (reply->flags & RSPAMD_REPLY_HEADERS)
		(void)rspamd_spam_headers(r, &t->spam_fields);
	if (r->status == RSPAMD_OK)
		log_event(LOG_INFO, "smtp-mx",
			  "event=spam_checked sid=%s action=%s score=%.2f required=%.2f symbols=%s "
			  "ms=%u", t->sid, rspamd_action_name(r->action), r->score, r->required_score,
			  r->symbols, r->elapsed_ms);
	else
		log_event(LOG_WARN, "smtp-mx", "event=spam_unchecked sid=%s status=%s problem=\"%s\"",
			  t->sid, rspamd_status_name(r->status),
			  r->problem != NULL ? r->problem : "");
	data_finish(t);
}

/* After DMARC: rspamd, when a recipient's tenant wants its verdict. */
static void data_spam(inbound_txn *t)
{
	if (!t->spam_wanted || t->in->rspamd == NULL) {
		data_finish(t);
		return;
	}
	const char *name = strcmp(t->iprev, "pass") == 0 && t->iprev_name[0] != '\0'
				   ? t->iprev_name
				   : NULL;
	struct rspamd_request req = {
		.msg = t->msg, .len = t->msg_len,
		.client_ip = t->client_ip, .helo = t->helo_name,
		.mail_from = t->mail_from, .rcpts = t->rcpts, .n_rcpts = t->n_rcpts,
		.queue_id = t->sid, .hostname = name,
	};
	t->spam_chk = rspamd_check_start(t->in->rspamd, &req, spam_cb, t);
}

static void dmarc_cb(const struct dmarc_outcome *outcome, void *arg)
{
	inbound_txn *t = arg;
	t->dmarc_chk = NULL;
	t->dmarc = *outcome;
	data_spam(t);
}

/* DKIM is done and SPF too: DMARC, when the message has one From domain. */
static void data_dmarc(inbound_txn *t)
{
	if (t->in->aborted) {
		data_aborted(t);
		return;
	}
	memset(&t->dmarc, 0, sizeof t->dmarc);
	if (t->from_domain[0] == '\0') {
		data_spam(t);
		return;
	}
	struct dmarc_dkim dk[DMARC_DKIM_MAX];
	size_t n = 0;
	for (size_t i = 0; i < t->n_sigs && n < DMARC_DKIM_MAX; i++) {
		dk[n].domain = t->sigs[i].domain;
		dk[n].result = dkim_to_dmarc(t->sigs[i].status);
		n++;
	}
	struct dmarc_request req = {
		.from_domain = t->from_domain,
		.spf = spf_to_dmarc(t->from.status),
		.spf_domain = t->from.domain,
		.dkim = dk,
		.n_dkim = n,
	};
	t->dmarc_chk = dmarc_check_start(t->in->dmarc, &req, dmarc_cb, t);
}

static void dkim_cb(int status, const struct dkim_verify_result *result, void *arg)
{
	inbound_txn *t = arg;
	t->dkim_job = NULL;
	if (status == MAIL_OK && result->count > 0) {
		t->sigs = xcalloc(result->count, sizeof *t->sigs);
		memcpy(t->sigs, result->sigs, result->count * sizeof *t->sigs);
		t->n_sigs = result->count;
	} else if (status != MAIL_OK) {
		t->dkim_error = 1;
	}
	if (!t->from.done) {
		t->data_waits_spf = 1; /* spf_from_cb goes on */
		return;
	}
	data_dmarc(t);
}

uint8_t *smtp_inbound_strip(smtp_inbound *in, const uint8_t *body, size_t *len)
{
	uint8_t *msg = xmalloc(*len + 1);
	memcpy(msg, body, *len);
	size_t n = *len, removed = 0;
	const char *error;
	if (authres_strip_ours(msg, &n, in->authserv_id, NULL, &removed, &error) == MAIL_OK)
		*len = n; /* else a header too long to scan: kept as it is */
	if (removed > 0)
		log_event(LOG_INFO, "smtp-mx", "event=authres_removed fields=%zu", removed);
	return msg;
}

void inbound_txn_data(inbound_txn *t, const uint8_t *body, size_t len, int spam,
		      const char *const *rcpts, size_t n_rcpts, inbound_data_cb *cb, void *arg)
{
	t->spam_wanted = spam;
	t->rcpts = rcpts;
	t->n_rcpts = n_rcpts;
	t->data_cb = cb;
	t->data_arg = arg;
	t->refs++; /* the pipeline's, dropped by data_finish */
	t->msg_len = len;
	t->msg = smtp_inbound_strip(t->in, body, &t->msg_len);
	if (dkim_from_domain(t->msg, t->msg_len, INBOUND_HEADER_MAX, t->from_domain) != 1)
		t->from_domain[0] = '\0';
	if (t->in->aborted) {
		data_aborted(t);
		return;
	}
	t->dkim_job = dkim_verify_start(t->in->dkim, t->msg, t->msg_len, t->sid, dkim_cb, t);
}

/* ---- connection checks and stopping -------------------------------------------- */

static void conn_job_unlink(struct conn_job *j)
{
	smtp_inbound *in = j->in;
	if (j->prev != NULL)
		j->prev->next = j->next;
	else
		in->jobs = j->next;
	if (j->next != NULL)
		j->next->prev = j->prev;
	in->n_jobs--;
}

static void conn_job_free(struct conn_job *j)
{
	smtp_inbound *in = j->in;
	free(j);
	smtp_inbound_unref(&in);
}

static struct conn_job *conn_job_new(smtp_inbound *in, void *arg)
{
	struct conn_job *j = xcalloc(1, sizeof *j);
	j->in = smtp_inbound_ref(in);
	j->arg = arg;
	j->next = in->jobs;
	if (in->jobs != NULL)
		in->jobs->prev = j;
	in->jobs = j;
	in->n_jobs++;
	return j;
}

static void conn_client_cb(const struct conncheck_client_result *r, void *arg)
{
	struct conn_job *j = arg;
	conn_job_unlink(j);
	j->client_cb(r, j->arg);
	conn_job_free(j);
}

static void conn_rhsbl_cb(const struct conncheck_rhsbl_result *r, void *arg)
{
	struct conn_job *j = arg;
	conn_job_unlink(j);
	j->rhsbl_cb(r, j->arg);
	conn_job_free(j);
}

/* Answers a check asked while stopping, on a later turn of the loop. */
static void conn_later_closed(uv_handle_t *h)
{
	struct conn_job *j = h->data;
	conn_job_unlink(j);
	if (j->client_cb != NULL)
		j->client_cb(NULL, j->arg);
	else
		j->rhsbl_cb(NULL, j->arg);
	free(h);
	conn_job_free(j);
}

static void conn_later_cb(uv_idle_t *h)
{
	uv_idle_stop(h);
	uv_close((uv_handle_t *)h, conn_later_closed);
}

static void conn_later(struct conn_job *j)
{
	uv_idle_t *h = xcalloc(1, sizeof *h);
	h->data = j;
	uv_idle_init(j->in->loop, h);
	uv_idle_start(h, conn_later_cb);
}

void smtp_inbound_client_check(smtp_inbound *in, const struct sockaddr *client,
			       const char *const *zones, size_t n,
			       void (*cb)(const struct conncheck_client_result *r, void *arg),
			       void *arg)
{
	struct conn_job *j = conn_job_new(in, arg);
	j->client_cb = cb;
	if (in->aborted)
		conn_later(j);
	else
		j->job = conncheck_client_start(in->conn, client, zones, n, conn_client_cb, j);
}

void smtp_inbound_rhsbl_check(smtp_inbound *in, const char *domain, const char *const *zones,
			      size_t n,
			      void (*cb)(const struct conncheck_rhsbl_result *r, void *arg),
			      void *arg)
{
	struct conn_job *j = conn_job_new(in, arg);
	j->rhsbl_cb = cb;
	if (in->aborted)
		conn_later(j);
	else
		j->job = conncheck_rhsbl_start(in->conn, domain, zones, n, conn_rhsbl_cb, j);
}

size_t smtp_inbound_pending(const smtp_inbound *in)
{
	return in->n_txns + in->n_jobs;
}

void smtp_inbound_abort(smtp_inbound *in)
{
	if (in->aborted)
		return;
	in->aborted = 1;
	/* connection checks: withdrawn, answered NULL */
	for (struct conn_job *j = in->jobs, *next; j != NULL; j = next) {
		next = j->next;
		if (j->job == NULL)
			continue; /* already answering later */
		conncheck_cancel(&j->job);
		conn_later(j);
	}
	/* transactions: SPF temperror, DATA aborted; each holds a reference
	 * over its own step so the list walk stays valid */
	for (inbound_txn *t = in->txns; t != NULL;) {
		t->refs++;
		if (t->from.q != NULL) {
			spf_query_cancel(&t->from.q);
			spf_from_cb(NULL, t); /* drops the query's reference */
		}
		if (t->helo.q != NULL) {
			spf_query_cancel(&t->helo.q);
			spf_helo_cb(NULL, t);
		}
		if (t->dkim_job != NULL) {
			dkim_verify_cancel(&t->dkim_job);
			data_aborted(t);
		} else if (t->dmarc_chk != NULL) {
			dmarc_check_cancel(&t->dmarc_chk);
			data_aborted(t);
		} else if (t->spam_chk != NULL) {
			rspamd_check_cancel(&t->spam_chk);
			data_aborted(t);
		}
		inbound_txn *next = t->next;
		txn_unref(t);
		t = next;
	}
}

void smtp_inbound_rspamd_stats(const smtp_inbound *in, struct rspamd_stats *stats_r)
{
	memset(stats_r, 0, sizeof *stats_r);
	if (in->rspamd != NULL)
		rspamd_client_stats(in->rspamd, stats_r);
}
