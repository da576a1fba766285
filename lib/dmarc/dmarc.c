/* dmarc.c: DMARC policy discovery on lib/dns, record parsing by
 * libopendmarc, alignment and the policy here (dmarc.h says why).
 */
#include "dmarc.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <unistd.h>

#include <opendmarc/dmarc.h>

#include "auth-results.h"
#include "log.h"
#include "mail-error.h"
#include "xalloc.h"

/* libopendmarc exports it but leaves it out of dmarc.h (1.4.2): the
 * organizational domain of domain from the loaded PSL, "" when no rule
 * matches. */
int opendmarc_get_tld(u_char *domain, u_char *tld, size_t tld_len);

#define DMARC__PREFIX "_dmarc."
/* any address: libopendmarc wants one per context and never uses it for
 * the policy */
#define DMARC__ANY_IP "192.0.2.0"

/* ---- libopendmarc's one PSL per process ------------------------------------------- */

static pthread_mutex_t dmarc__lib_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned dmarc__lib_refs;
static OPENDMARC_LIB_T dmarc__lib;

/* Load path on the first call; later calls must name the same file. */
static int dmarc__lib_ref(const char *path, const char **error_r)
{
	int err = MAIL_OK;
	pthread_mutex_lock(&dmarc__lib_lock);
	if (dmarc__lib_refs > 0) {
		if (strcmp((const char *)dmarc__lib.tld_source_file, path) != 0) {
			*error_r = "libopendmarc holds one PSL per process: another file is loaded";
			err = MAIL_ERR_PARAMS;
		}
	} else if (strlen(path) >= sizeof dmarc__lib.tld_source_file) {
		*error_r = "psl_path too long";
		err = MAIL_ERR_PARAMS;
	} else if (access(path, R_OK) != 0) {
		/* libopendmarc 1.4.2 reports success for a file it cannot
		 * open (and then finds no suffix at all) */
		log_event(LOG_ERROR, "dmarc", "event=dmarc_psl_failed path=%s errno=%d", path,
			  errno);
		*error_r = "cannot read the public suffix list";
		err = MAIL_ERR_INTERNAL;
	} else {
		memset(&dmarc__lib, 0, sizeof dmarc__lib);
		dmarc__lib.tld_type = OPENDMARC_TLD_TYPE_MOZILLA;
		memcpy(dmarc__lib.tld_source_file, path, strlen(path) + 1);
		int st = opendmarc_policy_library_init(&dmarc__lib);
		if (st != DMARC_PARSE_OKAY) {
			log_event(LOG_ERROR, "dmarc", "event=dmarc_psl_failed path=%s status=%d",
				  path, st);
			opendmarc_policy_library_shutdown(&dmarc__lib);
			*error_r = "libopendmarc could not load the public suffix list";
			err = MAIL_ERR_INTERNAL;
		}
	}
	if (err == MAIL_OK)
		dmarc__lib_refs++;
	pthread_mutex_unlock(&dmarc__lib_lock);
	return err;
}

static void dmarc__lib_unref(void)
{
	pthread_mutex_lock(&dmarc__lib_lock);
	if (--dmarc__lib_refs == 0)
		opendmarc_policy_library_shutdown(&dmarc__lib);
	pthread_mutex_unlock(&dmarc__lib_lock);
}

/* ---- names ----------------------------------------------------------------------- */

const char *dmarc_result_name(enum dmarc_result result)
{
	static const char *const names[] = { "none", "pass", "fail", "temperror", "permerror" };
	return (unsigned)result < sizeof names / sizeof names[0] ? names[result] : "permerror";
}

const char *dmarc_disp_name(enum dmarc_disp disp)
{
	static const char *const names[] = { "none", "quarantine", "reject" };
	return (unsigned)disp < sizeof names / sizeof names[0] ? names[disp] : "none";
}

struct dmarc_settings dmarc_settings_default(void)
{
	return (struct dmarc_settings){
		.psl_path = NULL,
		.max_record_bytes = DMARC_RECORD_MAX_DEFAULT,
		.seed = 0,
	};
}

/* domain lowercased, one trailing dot dropped, into out[DMARC_DOMAIN_MAX +
 * 1]; -1 when it is no domain name (empty, too long, an empty label, a
 * byte that is no LDH or '_' character). */
static int dmarc__norm(const char *domain, char *out)
{
	size_t n = domain != NULL ? strlen(domain) : 0;
	if (n > 0 && domain[n - 1] == '.')
		n--;
	if (n == 0 || n > DMARC_DOMAIN_MAX)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)domain[i];
		if (c >= 'A' && c <= 'Z')
			c += 32;
		int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
			 (c == '.' && i > 0 && domain[i - 1] != '.');
		if (!ok)
			return -1;
		out[i] = (char)c;
	}
	out[n] = '\0';
	return 0;
}

int dmarc_org_domain(const char *domain, char *out)
{
	char d[DMARC_DOMAIN_MAX + 1];
	u_char tld[DMARC_MAXHOSTNAMELEN + 1] = "";
	if (dmarc__norm(domain, d) < 0)
		return -1;
	size_t n = strlen(d);
	/* libopendmarc's answer, when it is d or a parent of d */
	if (opendmarc_get_tld((u_char *)d, tld, sizeof tld) == 0) {
		size_t t = strlen((const char *)tld);
		if (t > 0 && t <= n && strcmp(d + n - t, (const char *)tld) == 0 &&
		    (t == n || d[n - t - 1] == '.')) {
			memcpy(out, d + n - t, t + 1);
			return 0;
		}
	}
	/* no rule matched: the PSL's default rule "*", the last two labels */
	const char *last = strrchr(d, '.');
	const char *org = d;
	if (last != NULL) {
		for (const char *p = last - 1; p >= d; p--) {
			if (*p == '.') {
				org = p + 1;
				break;
			}
		}
	}
	memcpy(out, org, strlen(org) + 1);
	return 0;
}

/* Is other (any case) aligned with from (normalised) whose organizational
 * domain is from_org, in mode 'r' or 's'? */
static int dmarc__aligned(const char *from, const char *from_org, const char *other, char mode)
{
	char o[DMARC_DOMAIN_MAX + 1], o_org[DMARC_DOMAIN_MAX + 1];
	if (dmarc__norm(other, o) < 0)
		return 0;
	if (strcmp(o, from) == 0)
		return 1;
	if (mode == 's' || dmarc_org_domain(o, o_org) < 0)
		return 0;
	return strcmp(o_org, from_org) == 0;
}

/* Does the record start with the DMARC version tag, "v" *WSP "=" *WSP
 * "DMARC1", followed by the end, white space or ';'? (RFC 7489 6.4; the
 * tag and its value are case-sensitive.) */
static int dmarc__is_record(const char *r, size_t len)
{
	size_t i = 0;
	if (len == 0 || r[0] != 'v')
		return 0;
	for (i = 1; i < len && (r[i] == ' ' || r[i] == '\t'); i++)
		;
	if (i >= len || r[i] != '=')
		return 0;
	for (i++; i < len && (r[i] == ' ' || r[i] == '\t'); i++)
		;
	if (len - i < 6 || memcmp(r + i, "DMARC1", 6) != 0)
		return 0;
	i += 6;
	return i == len || r[i] == ';' || r[i] == ' ' || r[i] == '\t';
}

/* A pct tag, if there is one, has 1..3 digits (libopendmarc reads
 * "pct=abc" as 0, which would sample every message out; over 100 it
 * refuses itself). */
static int dmarc__pct_ok(const char *r)
{
	const char *p = r;
	while (*p != '\0') {
		const char *end = strchr(p, ';');
		size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
		const char *eq = memchr(p, '=', n);
		if (eq != NULL) {
			const char *k = p, *ke = eq, *v = eq + 1, *ve = p + n;
			while (k < ke && (*k == ' ' || *k == '\t'))
				k++;
			while (ke > k && (ke[-1] == ' ' || ke[-1] == '\t'))
				ke--;
			while (v < ve && (*v == ' ' || *v == '\t'))
				v++;
			while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
				ve--;
			if (ke - k == 3 && strncasecmp(k, "pct", 3) == 0) {
				if (ve == v || ve - v > 3)
					return 0;
				for (const char *d = v; d < ve; d++) {
					if (*d < '0' || *d > '9')
						return 0;
				}
			}
		}
		p = end != NULL ? end + 1 : p + n;
	}
	return 1;
}

static enum dmarc_disp dmarc__disp(int p)
{
	switch (p) {
	case DMARC_RECORD_P_REJECT:
		return DMARC_DISP_REJECT;
	case DMARC_RECORD_P_QUARANTINE:
		return DMARC_DISP_QUARANTINE;
	default:
		return DMARC_DISP_NONE;
	}
}

/* ---- the checker ------------------------------------------------------------------ */

struct dmarc__req {
	char from[DMARC_DOMAIN_MAX + 2]; /* as given (cut), for the lookup */
	enum dmarc_auth spf;
	char spf_domain[DMARC_DOMAIN_MAX + 2];
	struct {
		char domain[DMARC_DOMAIN_MAX + 2];
		enum dmarc_auth result;
	} dkim[DMARC_DKIM_MAX];
	size_t n_dkim;
};

struct dmarc_check {
	dmarc_checker *checker;
	dmarc_check_cb *cb;
	void *arg;
	struct dmarc__req req;
	char from[DMARC_DOMAIN_MAX + 1]; /* normalised; "" when invalid */
	char org[DMARC_DOMAIN_MAX + 1];
	int at_org; /* the lookup running is the organizational domain's */
	dns_request *dns;
	dmarc_check *prev, *next;
};

struct dmarc_checker {
	uv_loop_t *loop;
	dns_resolver *resolver;
	struct dmarc_settings set;
	char psl[PATH_MAX];
	uint64_t rng; /* xorshift64 state, never 0 */
	dmarc_check *checks;
};

int dmarc_checker_create(uv_loop_t *loop, dns_resolver *resolver,
			 const struct dmarc_settings *settings, dmarc_checker **checker_r,
			 const char **error_r)
{
	*checker_r = NULL;
	struct dmarc_settings set = settings != NULL ? *settings : dmarc_settings_default();
	if (set.max_record_bytes < DMARC_RECORD_MAX_MIN ||
	    set.max_record_bytes > DMARC_RECORD_MAX_MAX) {
		*error_r = "max_record_bytes out of range (64..4096)";
		return MAIL_ERR_PARAMS;
	}
	const char *psl = set.psl_path != NULL ? set.psl_path : DMARC_PSL_DEFAULT;
	int err = dmarc__lib_ref(psl, error_r);
	if (err != MAIL_OK)
		return err;
	dmarc_checker *c = xcalloc(1, sizeof *c);
	c->loop = loop;
	c->resolver = resolver;
	c->set = set;
	snprintf(c->psl, sizeof c->psl, "%s", psl);
	c->set.psl_path = c->psl;
	c->rng = set.seed;
	while (c->rng == 0 && getrandom(&c->rng, sizeof c->rng, 0) != sizeof c->rng)
		;
	*checker_r = c;
	return MAIL_OK;
}

static void dmarc__unlink(dmarc_check *k)
{
	dmarc_checker *c = k->checker;
	if (k->prev != NULL)
		k->prev->next = k->next;
	else
		c->checks = k->next;
	if (k->next != NULL)
		k->next->prev = k->prev;
}

void dmarc_checker_destroy(dmarc_checker **checker)
{
	dmarc_checker *c = *checker;
	if (c == NULL)
		return;
	while (c->checks != NULL) {
		dmarc_check *k = c->checks;
		dmarc_check_cancel(&k);
	}
	free(c);
	dmarc__lib_unref();
	*checker = NULL;
}

void dmarc_check_cancel(dmarc_check **check)
{
	dmarc_check *k = *check;
	if (k == NULL)
		return;
	dns_request_cancel(&k->dns);
	dmarc__unlink(k);
	free(k);
	*check = NULL;
}

/* a number in 0..99 from the checker's xorshift64 */
static unsigned dmarc__draw(dmarc_checker *c)
{
	uint64_t x = c->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	c->rng = x;
	return (unsigned)((x >> 11) % 100u);
}

/* the request copied, every string cut to its buffer */
static void dmarc__copy_req(struct dmarc__req *d, const struct dmarc_request *req)
{
	memset(d, 0, sizeof *d);
	snprintf(d->from, sizeof d->from, "%s", req->from_domain != NULL ? req->from_domain : "");
	d->spf = req->spf;
	snprintf(d->spf_domain, sizeof d->spf_domain, "%s",
		 req->spf_domain != NULL ? req->spf_domain : "");
	d->n_dkim = req->n_dkim < DMARC_DKIM_MAX ? req->n_dkim : DMARC_DKIM_MAX;
	for (size_t i = 0; i < d->n_dkim; i++) {
		snprintf(d->dkim[i].domain, sizeof d->dkim[i].domain, "%s",
			 req->dkim[i].domain != NULL ? req->dkim[i].domain : "");
		d->dkim[i].result = req->dkim[i].result;
	}
}

/* The evaluation of a copied request (dmarc_evaluate). */
static void dmarc__evaluate(dmarc_checker *c, const struct dmarc__req *req, const char *record,
			    size_t len, const char *record_domain, struct dmarc_outcome *out)
{
	memset(out, 0, sizeof *out);
	out->pct = -1;
	if (dmarc__norm(req->from, out->from_domain) < 0) {
		out->from_domain[0] = '\0';
		out->result = DMARC_RESULT_PERMERROR;
		out->reason = "From domain is not a domain name";
		return;
	}
	dmarc_org_domain(out->from_domain, out->org_domain);
	if (record == NULL) {
		out->result = DMARC_RESULT_NONE;
		out->reason = "no record";
		return;
	}
	if (dmarc__norm(record_domain, out->record_domain) < 0)
		snprintf(out->record_domain, sizeof out->record_domain, "%s", out->from_domain);
	if (len > c->set.max_record_bytes || memchr(record, '\0', len) != NULL) {
		out->result = DMARC_RESULT_PERMERROR;
		out->reason = len > c->set.max_record_bytes ? "record too long" : "NUL in record";
		return;
	}
	char *rec = xstrndup(record, len);
	int is_org = strcmp(out->record_domain, out->from_domain) != 0;
	DMARC_POLICY_T *pctx = NULL;
	int st = DMARC_PARSE_ERROR_BAD_VALUE;
	if (dmarc__pct_ok(rec)) {
		pctx = opendmarc_policy_connect_init((u_char *)DMARC__ANY_IP, 0);
		if (pctx == NULL)
			abort(); /* out of memory: as xmalloc */
		u_char *from = (u_char *)out->from_domain;
		/* the org domain only when the record is the org domain's:
		 * libopendmarc would take sp= for any record given one */
		u_char *org = is_org ? (u_char *)out->record_domain : NULL;
		st = opendmarc_policy_store_from_domain(pctx, from);
		if (st == DMARC_PARSE_OKAY)
			st = opendmarc_policy_store_dmarc(pctx, (u_char *)rec, from, org);
	}
	free(rec);
	if (st != DMARC_PARSE_OKAY) {
		opendmarc_policy_connect_shutdown(pctx);
		out->result = DMARC_RESULT_PERMERROR;
		out->reason = "record syntax";
		return;
	}
	int p = 0, sp = 0, adkim = 0, aspf = 0, pct = 100;
	opendmarc_policy_fetch_p(pctx, &p);
	opendmarc_policy_fetch_sp(pctx, &sp);
	opendmarc_policy_fetch_adkim(pctx, &adkim);
	opendmarc_policy_fetch_aspf(pctx, &aspf);
	opendmarc_policy_fetch_pct(pctx, &pct);
	opendmarc_policy_connect_shutdown(pctx);

	out->policy_is_sp = is_org && sp != DMARC_RECORD_P_UNSPECIFIED;
	out->policy = dmarc__disp(out->policy_is_sp ? sp : p);
	out->adkim = adkim == DMARC_RECORD_A_STRICT ? 's' : 'r';
	out->aspf = aspf == DMARC_RECORD_A_STRICT ? 's' : 'r';
	out->pct = pct < 0 || pct > 100 ? 100 : pct;

	int temp = 0;
	for (size_t i = 0; i < req->n_dkim; i++) {
		if (req->dkim[i].result != DMARC_AUTH_PASS &&
		    req->dkim[i].result != DMARC_AUTH_TEMPERROR)
			continue;
		if (!dmarc__aligned(out->from_domain, out->org_domain, req->dkim[i].domain,
				    out->adkim))
			continue;
		if (req->dkim[i].result == DMARC_AUTH_PASS)
			out->dkim_aligned = 1;
		else
			temp = 1;
	}
	if ((req->spf == DMARC_AUTH_PASS || req->spf == DMARC_AUTH_TEMPERROR) &&
	    req->spf_domain[0] != '\0' &&
	    dmarc__aligned(out->from_domain, out->org_domain, req->spf_domain, out->aspf)) {
		if (req->spf == DMARC_AUTH_PASS)
			out->spf_aligned = 1;
		else
			temp = 1;
	}
	if (out->dkim_aligned || out->spf_aligned) {
		out->result = DMARC_RESULT_PASS;
		out->reason = out->dkim_aligned ? "aligned dkim pass" : "aligned spf pass";
		return;
	}
	if (temp) {
		out->result = DMARC_RESULT_TEMPERROR;
		out->reason = "an aligned spf or dkim check failed temporarily";
		return;
	}
	out->result = DMARC_RESULT_FAIL;
	out->reason = "no aligned pass";
	out->disposition = out->policy;
	if (out->pct < 100 && out->policy != DMARC_DISP_NONE &&
	    dmarc__draw(c) >= (unsigned)out->pct) {
		/* not in the sample: the next milder policy (RFC 7489 6.6.4) */
		out->sampled_out = 1;
		out->disposition = out->policy == DMARC_DISP_REJECT ? DMARC_DISP_QUARANTINE
								    : DMARC_DISP_NONE;
	}
}

void dmarc_evaluate(dmarc_checker *c, const struct dmarc_request *req, const char *record,
		    size_t len, const char *record_domain, struct dmarc_outcome *out)
{
	struct dmarc__req r;
	dmarc__copy_req(&r, req);
	dmarc__evaluate(c, &r, record, len, record_domain, out);
}

/* ---- discovery over DNS ----------------------------------------------------------- */

static void dmarc__txt_cb(enum dns_status status, const struct dns_txt_result *result, void *arg);

static void dmarc__ask(dmarc_check *k, const char *domain)
{
	char name[sizeof DMARC__PREFIX + DMARC_DOMAIN_MAX + 1];
	/* "" is no name: dns.h answers DNS_BADNAME, later, from the loop */
	if (domain[0] == '\0')
		name[0] = '\0';
	else
		snprintf(name, sizeof name, DMARC__PREFIX "%s", domain);
	k->dns = dns_resolve_txt(k->checker->resolver, name, dmarc__txt_cb, k);
}

/* Answer k with out (or evaluate the record first) and free k. The
 * callback may destroy the checker: k is gone before it runs. */
static void dmarc__finish(dmarc_check *k, const char *record, size_t len,
			  const char *record_domain, enum dmarc_result result, const char *reason)
{
	struct dmarc_outcome out;
	dmarc__evaluate(k->checker, &k->req, record, len, record_domain, &out);
	if (record == NULL && out.result == DMARC_RESULT_NONE) {
		out.result = result; /* no record: the discovery's verdict */
		if (reason != NULL)
			out.reason = reason;
	}
	dmarc_check_cb *cb = k->cb;
	void *arg = k->arg;
	dmarc__unlink(k);
	free(k);
	cb(&out, arg);
}

static void dmarc__txt_cb(enum dns_status status, const struct dns_txt_result *result, void *arg)
{
	dmarc_check *k = arg;
	k->dns = NULL;
	const char *domain = k->at_org ? k->org : k->from;
	if (status == DNS_TEMP || status == DNS_CANCELLED) {
		dmarc__finish(k, NULL, 0, NULL, DMARC_RESULT_TEMPERROR, "dns temporary failure");
		return;
	}
	if (status == DNS_BADNAME && k->from[0] == '\0') {
		dmarc__finish(k, NULL, 0, NULL, DMARC_RESULT_PERMERROR,
			      "From domain is not a domain name");
		return;
	}
	const struct dns_txt *found = NULL;
	size_t n = 0;
	for (size_t i = 0; status == DNS_OK && i < result->count; i++) {
		if (dmarc__is_record(result->records[i].data, result->records[i].len)) {
			found = &result->records[i];
			n++;
		}
	}
	if (n > 1) {
		/* RFC 7489 6.6.3: discovery ends, no DMARC */
		dmarc__finish(k, NULL, 0, NULL, DMARC_RESULT_NONE, "more than one record");
		return;
	}
	if (n == 1) {
		dmarc__finish(k, found->data, found->len, domain, DMARC_RESULT_NONE, NULL);
		return;
	}
	if (!k->at_org && strcmp(k->org, k->from) != 0) {
		k->at_org = 1;
		dmarc__ask(k, k->org);
		return;
	}
	dmarc__finish(k, NULL, 0, NULL, DMARC_RESULT_NONE, "no record");
}

dmarc_check *dmarc_check_start(dmarc_checker *c, const struct dmarc_request *req,
			       dmarc_check_cb *cb, void *arg)
{
	dmarc_check *k = xcalloc(1, sizeof *k);
	k->checker = c;
	k->cb = cb;
	k->arg = arg;
	dmarc__copy_req(&k->req, req);
	if (dmarc__norm(k->req.from, k->from) < 0 || dmarc_org_domain(k->from, k->org) < 0)
		k->from[0] = k->org[0] = '\0';
	k->next = c->checks;
	if (c->checks != NULL)
		c->checks->prev = k;
	c->checks = k;
	dmarc__ask(k, k->from);
	return k;
}

/* ---- Authentication-Results ---------------------------------------------------------- */

void dmarc_outcome_authres(const struct dmarc_outcome *o, struct authres_method *m,
			   char *comment_buf, size_t comment_size)
{
	memset(m, 0, sizeof *m);
	m->method = "dmarc";
	m->result = dmarc_result_name(o->result);
	comment_buf[0] = '\0';
	if (o->pct >= 0 && o->result != DMARC_RESULT_PERMERROR) {
		snprintf(comment_buf, comment_size, "p=%s dis=%s%s", dmarc_disp_name(o->policy),
			 dmarc_disp_name(o->disposition), o->sampled_out ? " sampled-out" : "");
		m->comment = comment_buf;
	} else if (o->reason != NULL && o->result != DMARC_RESULT_NONE) {
		snprintf(comment_buf, comment_size, "%s", o->reason);
		m->comment = comment_buf;
	}
	m->props[0] = (struct authres_prop){ "header", "from", o->from_domain };
	m->n_props = 1;
}
