/* mailctl-dns.c: `mailctl dns ...`, the DNS records a tenant publishes
 * (issue 12 item 2; docs/dns.md, "What a tenant publishes").
 *
 *   dns DOMAIN [--json]      every record DOMAIN must publish, zone-file form
 *   dns check DOMAIN [--dns HOST[:PORT]] [--json]
 *                            look each one up and say OK, MISSING, WRONG or
 *                            ERROR with the expected value
 *   dns platform set KEY=VALUE...   the platform's own names (what the
 *                            tenants' records point at); VALUE empty: unset
 *   dns platform show [--json]
 *
 * The platform's names are one etcd key, MAILCTL_DNS_PLATFORM_KEY, a JSON
 * object of the settings below (unknown keys are kept on write, so a newer
 * mailctl's settings survive an older one's `set`). It sorts after
 * /mail/v1/ring0, outside the range every router reads and watches: no
 * daemon needs it, and writing it wakes none of them.
 *
 * `check` runs lib/dns's resolver (the platform's one resolver code path)
 * on a private libuv loop: every lookup is started at once and the loop
 * runs until the last has answered or timed out, so a dead server costs
 * one timeout (lib/dns: timeout_ms * (2^tries - 1)), not one per record.
 *
 * Exit codes of check: 0 when every required record is OK and no lookup
 * failed; 5 when a required record is MISSING or WRONG; else 4 when a
 * lookup failed (ERROR: the DNS server did not answer, SERVFAIL...).
 * Optional records (SRV, autoconfig, MTA-STS, TLS-RPT, inactive DKIM keys)
 * are reported but only an ERROR of theirs changes the exit code.
 */
#include "mailctl-private.h"

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <arpa/inet.h>
#include <jansson.h>
#include <uv.h>

#include "buf.h"
#include "dkim-keys.h"
#include "dns.h"
#include "etcd.h"
#include "mail-error.h"
#include "util.h"
#include "xalloc.h"

#define MAILCTL_DNS_PLATFORM_KEY "/mail/v1/settings/platform"
/* compare-and-swap attempts of `platform set` before giving up */
#define MAILCTL_DNS_CAS_TRIES 8
/* bytes of a text setting (SPF terms, report URIs) */
#define MAILCTL_DNS_TEXT_MAX 400
/* what DNS gave, kept per record for the report: values and their bytes */
#define MAILCTL_DNS_FOUND_MAX 8
#define MAILCTL_DNS_FOUND_LEN 512
/* the text report shortens a found value to this many bytes */
#define MAILCTL_DNS_SHOW_LEN 120
/* the MX preference printed */
#define MAILCTL_DNS_MX_PREFERENCE 10
/* RFC 6186 3.4 and RFC 8314 5.1: a client takes the lowest priority among
 * a service's STARTTLS and implicit-TLS records, so implicit TLS first */
#define MAILCTL_DNS_SRV_PRIO_TLS 0
#define MAILCTL_DNS_SRV_PRIO_STARTTLS 10

/* ---- the platform settings ------------------------------------------------ */

enum mailctl_dns_kind_setting {
	MAILCTL_DNS_HOST,        /* a host name */
	MAILCTL_DNS_HOST_OR_NONE, /* a host name, or "none": not offered */
	MAILCTL_DNS_PORT,        /* 1..65535 */
	MAILCTL_DNS_TTL,         /* MAILCTL_DNS_TTL_MIN..MAX */
	MAILCTL_DNS_SPF,         /* SPF terms */
	MAILCTL_DNS_POLICY,      /* none|quarantine|reject */
	MAILCTL_DNS_MAILTO,      /* mailto:ADDRESS[,mailto:...] */
	MAILCTL_DNS_RPT_URI,     /* mailto: or https: URIs, comma-separated */
	MAILCTL_DNS_STS_ID,      /* 1..32 of [A-Za-z0-9] (RFC 8461 3.1) */
};
#define MAILCTL_DNS_TTL_MIN 60
#define MAILCTL_DNS_TTL_MAX 604800

/* Indexes into mailctl_dns_settings (same order). */
enum mailctl_dns_setting_id {
	S_MX, S_IMAP, S_POP3, S_SUBMISSION, S_IMAPS_PORT, S_IMAP_PORT, S_POP3S_PORT,
	S_POP3_PORT, S_SUBMISSIONS_PORT, S_SUBMISSION_PORT, S_SPF, S_DMARC_POLICY,
	S_DMARC_RUA, S_AUTOCONFIG, S_MTA_STS, S_MTA_STS_ID, S_TLS_RPT, S_TTL, S__COUNT
};

struct mailctl_dns_setting {
	const char *name;
	enum mailctl_dns_kind_setting kind;
	/* the value when unset: NULL none (the record is not published, or
	 * for mx: the command refuses), "=mx" the mx setting's value */
	const char *def;
	const char *doc;
};

static const struct mailctl_dns_setting mailctl_dns_settings[S__COUNT] = {
	{ "mx", MAILCTL_DNS_HOST, NULL, "the MX host every tenant's MX names (required)" },
	{ "imap", MAILCTL_DNS_HOST_OR_NONE, "=mx", "IMAP host of the SRV records (none: not offered)" },
	{ "pop3", MAILCTL_DNS_HOST_OR_NONE, "=mx", "POP3 host (none: not offered)" },
	{ "submission", MAILCTL_DNS_HOST_OR_NONE, "=mx", "submission host (none: not offered)" },
	{ "imaps_port", MAILCTL_DNS_PORT, "993", "_imaps._tcp port (implicit TLS)" },
	{ "imap_port", MAILCTL_DNS_PORT, "143", "_imap._tcp port (STARTTLS)" },
	{ "pop3s_port", MAILCTL_DNS_PORT, "995", "_pop3s._tcp port" },
	{ "pop3_port", MAILCTL_DNS_PORT, "110", "_pop3._tcp port" },
	{ "submissions_port", MAILCTL_DNS_PORT, "465", "_submissions._tcp port" },
	{ "submission_port", MAILCTL_DNS_PORT, "587", "_submission._tcp port" },
	{ "spf", MAILCTL_DNS_SPF, "mx", "SPF terms a tenant's record must hold" },
	{ "dmarc_policy", MAILCTL_DNS_POLICY, "none", "p= of the DMARC record printed" },
	{ "dmarc_rua", MAILCTL_DNS_MAILTO, NULL, "rua= of the DMARC record printed" },
	{ "autoconfig", MAILCTL_DNS_HOST, NULL, "autoconfig/autodiscover CNAME target" },
	{ "mta_sts", MAILCTL_DNS_HOST, NULL, "mta-sts CNAME target (the policy's web host)" },
	{ "mta_sts_id", MAILCTL_DNS_STS_ID, NULL, "id= of _mta-sts (set when mta_sts or mx changes)" },
	{ "tls_rpt", MAILCTL_DNS_RPT_URI, NULL, "rua= of _smtp._tls (TLS-RPT)" },
	{ "ttl", MAILCTL_DNS_TTL, "3600", "TTL of the records printed" },
};

/* The settings as stored (obj) and their effective values (v: the stored
 * value, else the default, else NULL). */
typedef struct mailctl_dns_platform {
	json_t *obj;
	int64_t mod;             /* the key's mod_revision, 0: absent */
	char *v[S__COUNT];
	int set[S__COUNT];       /* stored, not defaulted */
} mailctl_dns_platform;

static void mailctl_dns_platform_free(mailctl_dns_platform *p)
{
	json_decref(p->obj);
	for (int i = 0; i < S__COUNT; i++)
		free(p->v[i]);
	memset(p, 0, sizeof *p);
}

static int mailctl_dns_setting_find(const char *name, size_t len)
{
	for (int i = 0; i < S__COUNT; i++) {
		if (strlen(mailctl_dns_settings[i].name) == len &&
		    strncmp(mailctl_dns_settings[i].name, name, len) == 0)
			return i;
	}
	return -1;
}

/* Fill p->v and p->set from p->obj. */
static void mailctl_dns_platform_resolve(mailctl_dns_platform *p)
{
	for (int i = 0; i < S__COUNT; i++) {
		free(p->v[i]);
		p->v[i] = NULL;
		json_t *j = json_object_get(p->obj, mailctl_dns_settings[i].name);
		p->set[i] = j != NULL;
		if (json_is_string(j))
			p->v[i] = xstrdup(json_string_value(j));
		else if (json_is_integer(j))
			p->v[i] = xasprintf("%lld", (long long)json_integer_value(j));
		else
			p->set[i] = 0;
	}
	for (int i = 0; i < S__COUNT; i++) {
		const char *def = mailctl_dns_settings[i].def;
		if (p->v[i] != NULL || def == NULL)
			continue;
		if (strcmp(def, "=mx") == 0)
			p->v[i] = p->v[S_MX] != NULL ? xstrdup(p->v[S_MX]) : NULL;
		else
			p->v[i] = xstrdup(def);
	}
}

/* Read the settings (an absent key is none set). An enum mail_error. */
static int mailctl_dns_platform_load(etcd_client *c, mailctl_dns_platform *p)
{
	memset(p, 0, sizeof *p);
	char *value = NULL;
	size_t len = 0;
	int err = etcd_kv_get(c, MAILCTL_DNS_PLATFORM_KEY, &value, &len, &p->mod, NULL);
	if (err == MAIL_ERR_NOT_FOUND) {
		p->mod = 0;
		p->obj = json_object();
		err = MAIL_OK;
	} else if (err == MAIL_OK) {
		p->obj = json_loadb(value, len, 0, NULL);
		if (!json_is_object(p->obj)) {
			/* a value we cannot read (written by hand): treat it
			 * as none set rather than refuse every command; the
			 * next `set` replaces it */
			json_decref(p->obj);
			p->obj = json_object();
		}
	}
	free(value);
	if (err == MAIL_OK)
		mailctl_dns_platform_resolve(p);
	return err;
}

static int mailctl_dns_is_ip(const char *s)
{
	unsigned char b[16];
	return inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

/* A host name as we store it: lowercase, no trailing dot, a valid domain
 * of at least two labels (an MX target must be a name, RFC 5321 5.1; not
 * an IP address). */
static int mailctl_dns_host_ok(char *s)
{
	size_t len = strlen(s);
	if (len > 1 && s[len - 1] == '.')
		s[len - 1] = '\0';
	dkim_name_lower(s);
	return util_domain_valid(s) && strchr(s, '.') != NULL && !mailctl_dns_is_ip(s);
}

/* Printable ASCII without blanks, quotes, backslashes or ';' (they would
 * break the record a value lands in). */
static int mailctl_dns_token_ok(const char *s, const char *extra_ok)
{
	for (; *s != '\0'; s++) {
		if (*s <= ' ' || *s > '~' || *s == '"' || *s == '\\' ||
		    (*s == ';' && strchr(extra_ok, ';') == NULL))
			return 0;
	}
	return 1;
}

/* SPF terms (RFC 7208 4.6.1): mechanisms and modifiers but the record's
 * own "v=spf1" and its "all" (the record printed ends in ~all). */
static int mailctl_dns_spf_ok(const char *s)
{
	static const char *const mech[] = { "a", "mx", "ptr", "include:", "ip4:", "ip6:",
					    "exists:", "a:", "mx:", "a/", "mx/", "redirect=" };
	char *copy = xstrdup(s);
	int ok = copy[0] != '\0';
	for (char *save, *t = strtok_r(copy, " ", &save); ok && t != NULL;
	     t = strtok_r(NULL, " ", &save)) {
		if (*t == '+' || *t == '-' || *t == '~' || *t == '?')
			t++;
		int known = 0;
		for (size_t i = 0; i < sizeof mech / sizeof *mech && !known; i++) {
			size_t n = strlen(mech[i]);
			char last = mech[i][n - 1];
			known = last == ':' || last == '/' || last == '='
					? strncasecmp(t, mech[i], n) == 0 && t[n] != '\0'
					: strcasecmp(t, mech[i]) == 0;
		}
		ok = known && mailctl_dns_token_ok(t, "");
	}
	free(copy);
	return ok;
}

/* Comma-separated URIs, each starting with one of the schemes. */
static int mailctl_dns_uris_ok(const char *s, int https_ok)
{
	char *copy = xstrdup(s);
	int ok = copy[0] != '\0' && mailctl_dns_token_ok(copy, "");
	for (char *save, *u = strtok_r(copy, ",", &save); ok && u != NULL;
	     u = strtok_r(NULL, ",", &save)) {
		if (strncasecmp(u, "mailto:", 7) == 0)
			ok = strchr(u + 7, '@') != NULL && u[7] != '@';
		else
			ok = https_ok && strncasecmp(u, "https://", 8) == 0 && u[8] != '\0';
	}
	free(copy);
	return ok;
}

static int mailctl_dns_uint_ok(const char *s, unsigned long min, unsigned long max)
{
	char *end;
	errno = 0;
	unsigned long n = strtoul(s, &end, 10);
	return s[0] >= '0' && s[0] <= '9' && *end == '\0' && errno == 0 && n >= min && n <= max;
}

/* Check (and normalise, in place) value for setting i. NULL when good,
 * else what it must be. */
static const char *mailctl_dns_setting_check(int i, char *value)
{
	switch (mailctl_dns_settings[i].kind) {
	case MAILCTL_DNS_HOST:
		return mailctl_dns_host_ok(value) ? NULL : "a host name (mx.example.net)";
	case MAILCTL_DNS_HOST_OR_NONE:
		if (strcasecmp(value, "none") == 0) {
			strcpy(value, "none");
			return NULL;
		}
		return mailctl_dns_host_ok(value) ? NULL : "a host name, or none (not offered)";
	case MAILCTL_DNS_PORT:
		return mailctl_dns_uint_ok(value, 1, 65535) ? NULL : "a port, 1..65535";
	case MAILCTL_DNS_TTL:
		return mailctl_dns_uint_ok(value, MAILCTL_DNS_TTL_MIN, MAILCTL_DNS_TTL_MAX)
			       ? NULL : "seconds, 60..604800";
	case MAILCTL_DNS_SPF:
		return mailctl_dns_spf_ok(value) ? NULL
						 : "SPF terms without v=spf1 and all (mx, "
						   "include:_spf.example.net, ip4:192.0.2.0/24...)";
	case MAILCTL_DNS_POLICY:
		dkim_name_lower(value);
		return strcmp(value, "none") == 0 || strcmp(value, "quarantine") == 0 ||
				       strcmp(value, "reject") == 0
			       ? NULL : "none, quarantine or reject";
	case MAILCTL_DNS_MAILTO:
		return mailctl_dns_uris_ok(value, 0) ? NULL : "mailto:ADDRESS[,mailto:ADDRESS]";
	case MAILCTL_DNS_RPT_URI:
		return mailctl_dns_uris_ok(value, 1) ? NULL
						     : "mailto:ADDRESS or https://URL, comma-separated";
	case MAILCTL_DNS_STS_ID: {
		size_t n = strlen(value);
		for (size_t k = 0; k < n; k++) {
			if (!isalnum((unsigned char)value[k]))
				return "1 to 32 letters and digits";
		}
		return n >= 1 && n <= 32 ? NULL : "1 to 32 letters and digits";
	}
	}
	return "valid";
}

/* A fresh MTA-STS policy id: the time, as operators write them. */
static json_t *mailctl_dns_sts_id_new(void)
{
	time_t t = (time_t)(util_now_wall_ms() / 1000);
	struct tm tm;
	char id[32];
	gmtime_r(&t, &tm);
	strftime(id, sizeof id, "%Y%m%d%H%M%S", &tm);
	return json_string(id);
}

/* ---- records ----------------------------------------------------------------- */

enum mailctl_dns_what {
	W_MX, W_SPF, W_DKIM, W_DMARC, W_SRV, W_CNAME, W_MTA_STS, W_TLS_RPT
};
static const char *const mailctl_dns_what_name[] = {
	"MX", "SPF", "DKIM", "DMARC", "SRV", "CNAME", "MTA-STS", "TLS-RPT"
};

enum mailctl_dns_status { ST_OK, ST_MISSING, ST_WRONG, ST_ERROR, ST__COUNT };
static const char *const mailctl_dns_status_name[] = { "OK", "MISSING", "WRONG", "ERROR" };

/* One record to publish, and (check) what DNS has. */
typedef struct mailctl_dns_record {
	enum mailctl_dns_what what;
	char *name;       /* owner, lowercase, no trailing dot */
	const char *type; /* "MX", "TXT", "SRV", "CNAME" */
	char *value;      /* the data: TXT unquoted; MX/SRV/CNAME with dots */
	int required;
	/* what check compares: the MX/SRV/CNAME target (no dot; SRV "." for
	 * not offered), SPF's terms, DKIM's p=, MTA-STS's id, TLS-RPT's rua */
	char *expect;
	unsigned port;     /* SRV */
	const char *key_k; /* DKIM: k= ("rsa", "ed25519") */
	/* check */
	enum mailctl_dns_status status;
	char *found[MAILCTL_DNS_FOUND_MAX];
	size_t n_found;
	char *why;
} mailctl_dns_record;

typedef struct mailctl_dns_set {
	char domain[DKIM_DOMAIN_MAX + 1];
	unsigned ttl;
	mailctl_dns_record *r;
	size_t n, cap;
	char *note; /* a comment for the listing (no DKIM key...), or NULL */
} mailctl_dns_set;

static mailctl_dns_record *mailctl_dns_add(mailctl_dns_set *s, enum mailctl_dns_what what,
					   char *name, const char *type, char *value,
					   int required, char *expect)
{
	if (s->n == s->cap) {
		s->cap = s->cap == 0 ? 16 : s->cap * 2;
		s->r = xrealloc(s->r, s->cap * sizeof *s->r);
	}
	mailctl_dns_record *r = &s->r[s->n++];
	*r = (mailctl_dns_record){ .what = what, .name = name, .type = type, .value = value,
				   .required = required, .expect = expect };
	return r;
}

static void mailctl_dns_set_free(mailctl_dns_set *s)
{
	for (size_t i = 0; i < s->n; i++) {
		mailctl_dns_record *r = &s->r[i];
		free(r->name);
		free(r->value);
		free(r->expect);
		for (size_t k = 0; k < r->n_found; k++)
			free(r->found[k]);
		free(r->why);
	}
	free(s->r);
	free(s->note);
	memset(s, 0, sizeof *s);
}

/* The public half of every stored DKIM key of domain, as TXT records
 * (active keys required: they sign now; inactive ones optional: a key
 * published ahead of activation, or one kept while signed mail is in
 * flight). Malformed records are skipped (as the queue nodes skip them). */
static int mailctl_dns_dkim_records(etcd_client *c, mailctl_dns_set *s)
{
	char *prefix = dkim_store_domain_prefix(s->domain);
	etcd_kv *kvs = NULL;
	size_t n = 0;
	int err = etcd_kv_range_prefix(c, prefix, 0, &kvs, &n, NULL);
	free(prefix);
	if (err != MAIL_OK)
		return err;
	size_t added = 0;
	for (size_t i = 0; i < n; i++) {
		char domain[DKIM_DOMAIN_MAX + 1], selector[DKIM_SELECTOR_MAX + 1];
		struct dkim_record rec;
		const char *why;
		char *pub = NULL;
		int ok = dkim_store_key_parse(kvs[i].key, domain, selector) == 0 &&
			 dkim_record_parse(kvs[i].value, kvs[i].value_len, &rec, &why) == MAIL_OK;
		/* etcd's copy of the private key: wiped before it is freed */
		dkim_secret_free(kvs[i].value, kvs[i].value_len);
		kvs[i].value = NULL;
		if (!ok)
			continue;
		if (dkim_key_public(rec.alg, rec.pem, rec.pem_len, &pub, &why) == MAIL_OK) {
			mailctl_dns_record *r = mailctl_dns_add(
				s, W_DKIM, xasprintf("%s._domainkey.%s", selector, s->domain), "TXT",
				dkim_txt_value(rec.alg, pub), rec.active, pub);
			r->key_k = rec.alg == DKIM_ALG_ED25519_SHA256 ? "ed25519" : "rsa";
			added++;
		}
		dkim_record_clear(&rec);
	}
	etcd_kvs_free(kvs, n);
	if (added == 0) {
		s->note = xasprintf("no DKIM key: mail from %s goes out unsigned (mailctl dkim "
				    "generate %s)", s->domain, s->domain);
		/* required, and known to be absent: check says MISSING */
		mailctl_dns_record *r = mailctl_dns_add(s, W_DKIM,
							xasprintf("_domainkey.%s", s->domain),
							"TXT", xstrdup(""), 1, NULL);
		r->why = xstrdup("no DKIM key stored: mailctl dkim generate DOMAIN, then publish");
	}
	return MAIL_OK;
}

/* Every record of s->domain from the platform's settings and the stored
 * DKIM keys. */
static int mailctl_dns_records(etcd_client *c, const mailctl_dns_platform *p, mailctl_dns_set *s)
{
	const char *d = s->domain;
	char *const *v = p->v;
	s->ttl = (unsigned)strtoul(v[S_TTL], NULL, 10);
	mailctl_dns_add(s, W_MX, xstrdup(d), "MX",
			xasprintf("%d %s.", MAILCTL_DNS_MX_PREFERENCE, v[S_MX]), 1, xstrdup(v[S_MX]));
	mailctl_dns_add(s, W_SPF, xstrdup(d), "TXT", xasprintf("v=spf1 %s ~all", v[S_SPF]), 1,
			xstrdup(v[S_SPF]));
	int err = mailctl_dns_dkim_records(c, s);
	if (err != MAIL_OK)
		return err;
	mailctl_dns_add(s, W_DMARC, xasprintf("_dmarc.%s", d), "TXT",
			xasprintf("v=DMARC1; p=%s%s%s", v[S_DMARC_POLICY],
				  v[S_DMARC_RUA] != NULL ? "; rua=" : "",
				  v[S_DMARC_RUA] != NULL ? v[S_DMARC_RUA] : ""),
			1, NULL);
	static const struct {
		const char *service;
		int host, port, prio;
	} srv[] = {
		{ "_imaps._tcp", S_IMAP, S_IMAPS_PORT, MAILCTL_DNS_SRV_PRIO_TLS },
		{ "_imap._tcp", S_IMAP, S_IMAP_PORT, MAILCTL_DNS_SRV_PRIO_STARTTLS },
		{ "_pop3s._tcp", S_POP3, S_POP3S_PORT, MAILCTL_DNS_SRV_PRIO_TLS },
		{ "_pop3._tcp", S_POP3, S_POP3_PORT, MAILCTL_DNS_SRV_PRIO_STARTTLS },
		{ "_submissions._tcp", S_SUBMISSION, S_SUBMISSIONS_PORT, MAILCTL_DNS_SRV_PRIO_TLS },
		{ "_submission._tcp", S_SUBMISSION, S_SUBMISSION_PORT, MAILCTL_DNS_SRV_PRIO_STARTTLS },
	};
	for (size_t i = 0; i < sizeof srv / sizeof *srv; i++) {
		const char *host = v[srv[i].host];
		int none = strcmp(host, "none") == 0;
		unsigned port = none ? 0 : (unsigned)strtoul(v[srv[i].port], NULL, 10);
		/* RFC 2782: target "." means decidedly not offered here */
		mailctl_dns_record *r = mailctl_dns_add(
			s, W_SRV, xasprintf("%s.%s", srv[i].service, d), "SRV",
			none ? xstrdup("0 0 0 .")
			     : xasprintf("%d 1 %u %s.", srv[i].prio, port, host),
			0, xstrdup(none ? "." : host));
		r->port = port;
	}
	if (v[S_AUTOCONFIG] != NULL) {
		/* Thunderbird's autoconfig.DOMAIN, Outlook's autodiscover.DOMAIN */
		mailctl_dns_add(s, W_CNAME, xasprintf("autoconfig.%s", d), "CNAME",
				xasprintf("%s.", v[S_AUTOCONFIG]), 0, xstrdup(v[S_AUTOCONFIG]));
		mailctl_dns_add(s, W_CNAME, xasprintf("autodiscover.%s", d), "CNAME",
				xasprintf("%s.", v[S_AUTOCONFIG]), 0, xstrdup(v[S_AUTOCONFIG]));
	}
	if (v[S_MTA_STS] != NULL) {
		/* RFC 8461: the policy at https://mta-sts.DOMAIN/.well-known/
		 * mta-sts.txt, the id telling senders when to fetch it again */
		const char *id = v[S_MTA_STS_ID] != NULL ? v[S_MTA_STS_ID] : "1";
		mailctl_dns_add(s, W_CNAME, xasprintf("mta-sts.%s", d), "CNAME",
				xasprintf("%s.", v[S_MTA_STS]), 0, xstrdup(v[S_MTA_STS]));
		mailctl_dns_add(s, W_MTA_STS, xasprintf("_mta-sts.%s", d), "TXT",
				xasprintf("v=STSv1; id=%s", id), 0, xstrdup(id));
	}
	if (v[S_TLS_RPT] != NULL)
		mailctl_dns_add(s, W_TLS_RPT, xasprintf("_smtp._tls.%s", d), "TXT",
				xasprintf("v=TLSRPTv1; rua=%s", v[S_TLS_RPT]), 0,
				xstrdup(v[S_TLS_RPT]));
	return MAIL_OK;
}

/* The record's data as a zone file writes it: a TXT value in quoted
 * character-strings of at most DKIM_TXT_STRING_MAX bytes each (RFC 1035
 * 3.3.14; resolvers join them), '"' and '\' escaped. */
static void mailctl_dns_rdata(buf *b, const mailctl_dns_record *r)
{
	if (strcmp(r->type, "TXT") != 0) {
		buf_append_str(b, r->value);
		return;
	}
	const char *s = r->value;
	size_t len = strlen(s);
	do {
		size_t n = len > DKIM_TXT_STRING_MAX ? DKIM_TXT_STRING_MAX : len;
		buf_append_str(b, s == r->value ? "\"" : " \"");
		for (size_t i = 0; i < n; i++) {
			if (s[i] == '"' || s[i] == '\\')
				buf_append(b, "\\", 1);
			buf_append(b, &s[i], 1);
		}
		buf_append(b, "\"", 1);
		s += n;
		len -= n;
	} while (len > 0);
}

/* "<name>. <ttl> IN <type> <rdata>" (no newline; heap). */
static char *mailctl_dns_zone_line(const mailctl_dns_set *s, const mailctl_dns_record *r)
{
	buf b;
	buf_init(&b);
	buf_printf(&b, "%s. %u IN %s ", r->name, s->ttl, r->type);
	mailctl_dns_rdata(&b, r);
	buf_append(&b, "", 1);
	return (char *)buf_steal(&b, NULL);
}

/* ---- checking ---------------------------------------------------------------- */

static void mailctl_dns_found(mailctl_dns_record *r, const char *data, size_t len)
{
	if (r->n_found == MAILCTL_DNS_FOUND_MAX)
		return;
	if (len > MAILCTL_DNS_FOUND_LEN)
		len = MAILCTL_DNS_FOUND_LEN;
	char *copy = xstrndup(data, len);
	/* a TXT record may hold any byte: keep the report one line */
	for (char *p = copy; *p != '\0'; p++)
		if ((unsigned char)*p < ' ' || (unsigned char)*p > '~')
			*p = '?';
	r->found[r->n_found++] = copy;
}

static void mailctl_dns_verdict(mailctl_dns_record *r, enum mailctl_dns_status st,
				const char *why)
{
	r->status = st;
	free(r->why);
	r->why = why != NULL ? xstrdup(why) : NULL;
}

/* A lookup without a result: MISSING for names or records that are not
 * there, ERROR for a failed lookup. */
static void mailctl_dns_failed(mailctl_dns_record *r, enum dns_status status)
{
	if (status == DNS_NXDOMAIN)
		mailctl_dns_verdict(r, ST_MISSING, "no such name");
	else if (status == DNS_NODATA)
		mailctl_dns_verdict(r, ST_MISSING, NULL);
	else {
		char why[64];
		snprintf(why, sizeof why, "lookup failed (%s)", dns_status_name(status));
		mailctl_dns_verdict(r, ST_ERROR, why);
	}
}

/* Same DNS name: case-insensitive, trailing dots ignored. */
static int mailctl_dns_name_eq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 1 && a[la - 1] == '.')
		la--;
	if (lb > 1 && b[lb - 1] == '.')
		lb--;
	return la == lb && strncasecmp(a, b, la) == 0;
}

static void mailctl_dns_mx_cb(enum dns_status status, const struct dns_mx_result *res, void *arg)
{
	mailctl_dns_record *r = arg;
	if (status == DNS_NULL_MX) {
		mailctl_dns_found(r, ".", 1);
		mailctl_dns_verdict(r, ST_WRONG, "a null MX: the domain says it takes no mail");
		return;
	}
	if (res == NULL) {
		mailctl_dns_failed(r, status);
		return;
	}
	if (res->implicit) {
		mailctl_dns_verdict(r, ST_MISSING, "no MX record");
		return;
	}
	/* the MX names, whatever became of their addresses (a host of ours
	 * without one is the platform's problem, not the tenant's record) */
	int ours = 0;
	for (size_t i = 0; i < res->count; i++) {
		char line[300];
		int n = snprintf(line, sizeof line, "%u %s.", res->hosts[i].preference,
				 res->hosts[i].name);
		mailctl_dns_found(r, line, n > 0 ? (size_t)n : 0);
		ours |= mailctl_dns_name_eq(res->hosts[i].name, r->expect);
	}
	if (ours)
		mailctl_dns_verdict(r, ST_OK, NULL);
	else
		mailctl_dns_verdict(r, ST_WRONG, "the platform's MX host is not among them");
}

/* Does text start with the tag-value "v=<version>" (case-insensitive,
 * then ';', a blank or the end)? */
static int mailctl_dns_is_version(const char *text, const char *version)
{
	size_t n = strlen(version);
	while (*text == ' ' || *text == '\t')
		text++;
	if (strncasecmp(text, version, n) != 0)
		return 0;
	char c = text[n];
	return c == '\0' || c == ';' || c == ' ' || c == '\t';
}

/* The value of tag in a tag=value list (DKIM, DMARC, MTA-STS, TLS-RPT:
 * "t=v; t=v"), blanks around it trimmed, into out. 1 when found. */
static int mailctl_dns_tag(const char *text, const char *tag, char *out, size_t size)
{
	size_t tlen = strlen(tag);
	for (const char *p = text; *p != '\0';) {
		const char *end = strchr(p, ';');
		if (end == NULL)
			end = p + strlen(p);
		while (p < end && isspace((unsigned char)*p))
			p++;
		const char *eq = memchr(p, '=', (size_t)(end - p));
		if (eq != NULL) {
			const char *kend = eq;
			while (kend > p && isspace((unsigned char)kend[-1]))
				kend--;
			if ((size_t)(kend - p) == tlen && strncasecmp(p, tag, tlen) == 0) {
				const char *v = eq + 1, *vend = end;
				while (v < vend && isspace((unsigned char)*v))
					v++;
				while (vend > v && isspace((unsigned char)vend[-1]))
					vend--;
				snprintf(out, size, "%.*s", (int)(vend - v), v);
				return 1;
			}
		}
		p = *end == ';' ? end + 1 : end;
	}
	return 0;
}

/* SPF: exactly one v=spf1 record (two is RFC 7208's permerror), holding
 * every term of the platform's spf setting ("+" or no qualifier). */
static void mailctl_dns_spf_check(mailctl_dns_record *r, const struct dns_txt_result *res)
{
	const struct dns_txt *spf = NULL;
	size_t count = 0;
	for (size_t i = 0; i < res->count; i++) {
		if (!mailctl_dns_is_version(res->records[i].data, "v=spf1"))
			continue;
		mailctl_dns_found(r, res->records[i].data, res->records[i].len);
		spf = &res->records[i];
		count++;
	}
	if (count == 0) {
		mailctl_dns_verdict(r, ST_MISSING, "no v=spf1 record");
		return;
	}
	if (count > 1) {
		mailctl_dns_verdict(r, ST_WRONG, "more than one v=spf1 record (RFC 7208: "
					       "permerror); merge them");
		return;
	}
	char *want = xstrdup(r->expect), *have = xstrndup(spf->data, spf->len);
	char missing[MAILCTL_DNS_TEXT_MAX + 64] = "";
	for (char *s1, *t = strtok_r(want, " ", &s1); t != NULL; t = strtok_r(NULL, " ", &s1)) {
		const char *w = *t == '+' ? t + 1 : t;
		int found = 0;
		char *copy = xstrdup(have);
		for (char *s2, *h = strtok_r(copy, " \t", &s2); h != NULL && !found;
		     h = strtok_r(NULL, " \t", &s2))
			found = strcasecmp(*h == '+' ? h + 1 : h, w) == 0;
		free(copy);
		if (!found) {
			size_t o = strlen(missing);
			snprintf(missing + o, sizeof missing - o, "%s%s", o > 0 ? " " : "", w);
		}
	}
	free(want);
	free(have);
	if (missing[0] == '\0') {
		mailctl_dns_verdict(r, ST_OK, NULL);
	} else {
		char why[sizeof missing + 32];
		snprintf(why, sizeof why, "lacks %s", missing);
		mailctl_dns_verdict(r, ST_WRONG, why);
	}
}

/* DKIM: a record at the selector whose p= (blanks removed: RFC 6376
 * 3.6.1 allows folding) and k= are ours. */
static void mailctl_dns_dkim_check(mailctl_dns_record *r, const struct dns_txt_result *res)
{
	int dkim_like = 0;
	for (size_t i = 0; i < res->count; i++) {
		const char *text = res->records[i].data;
		mailctl_dns_found(r, text, res->records[i].len);
		char *p = xmalloc(res->records[i].len + 1), k[32] = "rsa", v[32] = "DKIM1";
		if (!mailctl_dns_tag(text, "p", p, res->records[i].len + 1)) {
			free(p);
			continue;
		}
		mailctl_dns_tag(text, "k", k, sizeof k);
		mailctl_dns_tag(text, "v", v, sizeof v);
		dkim_like = 1;
		size_t o = 0;
		for (const char *c = p; *c != '\0'; c++)
			if (!isspace((unsigned char)*c))
				p[o++] = *c;
		p[o] = '\0';
		int same = strcmp(p, r->expect) == 0 && strcasecmp(k, r->key_k) == 0 &&
			   strcmp(v, "DKIM1") == 0;
		free(p);
		if (same) {
			mailctl_dns_verdict(r, ST_OK, NULL);
			return;
		}
	}
	mailctl_dns_verdict(r, ST_WRONG, dkim_like ? "p= is not this selector's public key"
						   : "no DKIM key record (no p=)");
}

/* DMARC: exactly one v=DMARC1 record with a policy RFC 7489 6.3 knows
 * (p=, and sp= when given); the rest is the tenant's choice. */
static void mailctl_dns_dmarc_check(mailctl_dns_record *r, const struct dns_txt_result *res)
{
	const char *rec = NULL;
	size_t count = 0;
	for (size_t i = 0; i < res->count; i++) {
		if (!mailctl_dns_is_version(res->records[i].data, "v=DMARC1"))
			continue;
		mailctl_dns_found(r, res->records[i].data, res->records[i].len);
		rec = res->records[i].data;
		count++;
	}
	if (count == 0) {
		mailctl_dns_verdict(r, ST_MISSING, "no v=DMARC1 record");
		return;
	}
	if (count > 1) {
		mailctl_dns_verdict(r, ST_WRONG, "more than one v=DMARC1 record (receivers "
					       "ignore them all)");
		return;
	}
	char p[32], sp[32];
	int has_p = mailctl_dns_tag(rec, "p", p, sizeof p);
	int bad_p = !has_p || (strcasecmp(p, "none") != 0 && strcasecmp(p, "quarantine") != 0 &&
			       strcasecmp(p, "reject") != 0);
	int bad_sp = mailctl_dns_tag(rec, "sp", sp, sizeof sp) && strcasecmp(sp, "none") != 0 &&
		     strcasecmp(sp, "quarantine") != 0 && strcasecmp(sp, "reject") != 0;
	if (bad_p)
		mailctl_dns_verdict(r, ST_WRONG, has_p ? "p= is not none, quarantine or reject"
						       : "no p= policy");
	else if (bad_sp)
		mailctl_dns_verdict(r, ST_WRONG, "sp= is not none, quarantine or reject");
	else
		mailctl_dns_verdict(r, ST_OK, NULL);
}

/* MTA-STS (RFC 8461 3.1) and TLS-RPT (RFC 8460 3): exactly one record of
 * the version, whose id= is ours (senders fetch the policy again only
 * when it changes) or whose rua= holds our URI. */
static void mailctl_dns_tagged_check(mailctl_dns_record *r, const struct dns_txt_result *res,
				     const char *version, const char *tag)
{
	const char *rec = NULL;
	size_t count = 0;
	for (size_t i = 0; i < res->count; i++) {
		if (!mailctl_dns_is_version(res->records[i].data, version))
			continue;
		mailctl_dns_found(r, res->records[i].data, res->records[i].len);
		rec = res->records[i].data;
		count++;
	}
	char why[128];
	if (count != 1) {
		snprintf(why, sizeof why, count == 0 ? "no %s record" : "more than one %s record",
			 version);
		mailctl_dns_verdict(r, count == 0 ? ST_MISSING : ST_WRONG, why);
		return;
	}
	char value[MAILCTL_DNS_FOUND_LEN + 1];
	int ok = mailctl_dns_tag(rec, tag, value, sizeof value);
	if (ok && strcmp(tag, "rua") == 0) {
		/* one of its comma-separated URIs */
		int hit = 0;
		for (char *s, *u = strtok_r(value, ",", &s); u != NULL && !hit;
		     u = strtok_r(NULL, ",", &s)) {
			while (isspace((unsigned char)*u))
				u++;
			hit = strcasecmp(u, r->expect) == 0;
		}
		ok = hit;
	} else if (ok) {
		ok = strcmp(value, r->expect) == 0;
	}
	snprintf(why, sizeof why, "%s= is not %s", tag, r->expect);
	mailctl_dns_verdict(r, ok ? ST_OK : ST_WRONG, ok ? NULL : why);
}

static void mailctl_dns_txt_cb(enum dns_status status, const struct dns_txt_result *res, void *arg)
{
	mailctl_dns_record *r = arg;
	if (res == NULL) {
		mailctl_dns_failed(r, status);
		return;
	}
	switch (r->what) {
	case W_SPF:
		mailctl_dns_spf_check(r, res);
		return;
	case W_DKIM:
		mailctl_dns_dkim_check(r, res);
		return;
	case W_DMARC:
		mailctl_dns_dmarc_check(r, res);
		return;
	case W_MTA_STS:
		mailctl_dns_tagged_check(r, res, "v=STSv1", "id");
		return;
	case W_TLS_RPT:
		mailctl_dns_tagged_check(r, res, "v=TLSRPTv1", "rua");
		return;
	case W_MX:
	case W_SRV:
	case W_CNAME:
		break;
	}
	mailctl_dns_verdict(r, ST_ERROR, "internal: a TXT answer for another record");
}

/* SRV: a record naming our host and port (priority and weight are the
 * tenant's to choose); for a service not offered, the "." record. */
static void mailctl_dns_srv_cb(enum dns_status status, const struct dns_srv_result *res, void *arg)
{
	mailctl_dns_record *r = arg;
	if (res == NULL) {
		mailctl_dns_failed(r, status);
		return;
	}
	int ok = 0;
	for (size_t i = 0; i < res->count; i++) {
		const struct dns_srv *s = &res->records[i];
		char line[300];
		int n = snprintf(line, sizeof line, "%u %u %u %s%s", s->priority, s->weight,
				 s->port, s->target, strcmp(s->target, ".") == 0 ? "" : ".");
		mailctl_dns_found(r, line, n > 0 ? (size_t)n : 0);
		ok |= mailctl_dns_name_eq(s->target, r->expect) &&
		      (strcmp(r->expect, ".") == 0 || s->port == r->port);
	}
	mailctl_dns_verdict(r, ok ? ST_OK : ST_WRONG,
			    ok ? NULL : strcmp(r->expect, ".") == 0
						? "the service is not offered here: target \".\""
						: "no record names this host and port");
}

static void mailctl_dns_cname_cb(enum dns_status status, const struct dns_names *res, void *arg)
{
	mailctl_dns_record *r = arg;
	if (status == DNS_NODATA) {
		/* the name exists with other records (an A record, say) */
		mailctl_dns_verdict(r, ST_WRONG, "not a CNAME");
		return;
	}
	if (res == NULL) {
		mailctl_dns_failed(r, status);
		return;
	}
	char line[300];
	int n = snprintf(line, sizeof line, "%s.", res->names[0]);
	mailctl_dns_found(r, line, n > 0 ? (size_t)n : 0);
	int ok = mailctl_dns_name_eq(res->names[0], r->expect);
	mailctl_dns_verdict(r, ok ? ST_OK : ST_WRONG, ok ? NULL : "points elsewhere");
}

/* --dns HOST[:PORT] as lib/dns takes it ("IP:PORT", "[IPv6]:PORT") into
 * out: a host name is resolved here, by the system's resolver (mailctl
 * may block), so an operator can ask a zone's authoritative server by
 * name. Port 53 when none is given. NULL, or why not. */
static const char *mailctl_dns_server(const char *arg, char *out, size_t size)
{
	char host[256];
	const char *port = "53";
	const char *colon = strrchr(arg, ':');
	if (arg[0] == '[') {
		const char *close = strchr(arg, ']');
		if (close == NULL || (close[1] != '\0' && close[1] != ':'))
			return "an IPv6 address goes in []";
		snprintf(host, sizeof host, "%.*s", (int)(close - arg - 1), arg + 1);
		if (close[1] == ':')
			port = close + 2;
	} else if (colon != NULL && strchr(arg, ':') == colon) {
		snprintf(host, sizeof host, "%.*s", (int)(colon - arg), arg);
		port = colon + 1;
	} else {
		snprintf(host, sizeof host, "%s", arg); /* a name, or a bare IPv6 */
	}
	if (!mailctl_dns_uint_ok(port, 1, 65535))
		return "the port must be 1..65535";
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM }, *ai = NULL;
	if (host[0] == '\0' || getaddrinfo(host, NULL, &hints, &ai) != 0 || ai == NULL)
		return "no such host";
	char ip[INET6_ADDRSTRLEN] = "";
	if (ai->ai_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, ip, sizeof ip);
	else
		inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, ip, sizeof ip);
	snprintf(out, size, ai->ai_family == AF_INET6 ? "[%s]:%s" : "%s:%s", ip, port);
	freeaddrinfo(ai);
	return NULL;
}

/* Look every record of s up on a private loop, until all have answered. */
static int mailctl_dns_lookup_all(mailctl *ctl, mailctl_dns_set *s, const char *server)
{
	uv_loop_t loop;
	if (uv_loop_init(&loop) != 0) {
		mailctl_fail(ctl, "dns check: no event loop");
		return MAILCTL_OTHER;
	}
	/* no TXT cache: every answer is the server's of now */
	struct dns_settings set = { .server = server };
	dns_resolver *res;
	const char *why;
	if (dns_resolver_create(&loop, &set, &res, &why) < 0) {
		uv_loop_close(&loop);
		mailctl_fail(ctl, "dns check: %s", why);
		return MAILCTL_USAGE;
	}
	for (size_t i = 0; i < s->n; i++) {
		mailctl_dns_record *r = &s->r[i];
		if (r->expect == NULL && r->what == W_DKIM) {
			r->status = ST_MISSING; /* no key stored: nothing to look up */
			continue;
		}
		switch (r->what) {
		case W_MX:
			dns_resolve_mx(res, r->name, mailctl_dns_mx_cb, r);
			break;
		case W_SRV:
			dns_resolve_srv(res, r->name, mailctl_dns_srv_cb, r);
			break;
		case W_CNAME:
			dns_resolve_cname(res, r->name, mailctl_dns_cname_cb, r);
			break;
		case W_SPF:
		case W_DKIM:
		case W_DMARC:
		case W_MTA_STS:
		case W_TLS_RPT:
			dns_resolve_txt(res, r->name, mailctl_dns_txt_cb, r);
			break;
		}
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	dns_resolver_destroy(&res);
	uv_run(&loop, UV_RUN_DEFAULT); /* the resolver's handles close */
	uv_loop_close(&loop);
	return MAILCTL_OK;
}

/* ---- commands --------------------------------------------------------------- */

/* Lowercase domain (a trailing dot dropped) and check it is a tenant. An
 * exit code after one line, or MAILCTL_OK. */
static int mailctl_dns_tenant(mailctl *ctl, const char *arg, char *domain, size_t size)
{
	snprintf(domain, size, "%s", arg);
	size_t len = strlen(domain);
	if (len > 1 && domain[len - 1] == '.')
		domain[len - 1] = '\0';
	dkim_name_lower(domain);
	if (strlen(arg) > DKIM_DOMAIN_MAX + 1 || !util_domain_valid(domain)) {
		mailctl_fail(ctl, "%s is not a domain", arg);
		return MAILCTL_USAGE;
	}
	int err = directory_tenant_exists(ctl->dir, domain);
	if (err == MAIL_ERR_NOT_FOUND) {
		mailctl_fail(ctl, "tenant %s: not found (mailctl tenant add %s)", domain, domain);
		return MAILCTL_NOT_FOUND;
	}
	return mailctl_error(ctl, err, "tenant", domain);
}

/* The records of domain into s: the tenant, the platform's names (mx
 * must be set), the DKIM keys. An exit code after one line, or OK. */
static int mailctl_dns_build(mailctl *ctl, etcd_client *c, const char *arg, mailctl_dns_set *s)
{
	memset(s, 0, sizeof *s);
	int rc = mailctl_dns_tenant(ctl, arg, s->domain, sizeof s->domain);
	if (rc != MAILCTL_OK)
		return rc;
	mailctl_dns_platform p;
	int err = mailctl_dns_platform_load(c, &p);
	if (err != MAIL_OK)
		return mailctl_error(ctl, err, "dns", "platform");
	if (p.v[S_MX] == NULL) {
		/* no guess: a record naming the wrong host sends a tenant's
		 * mail nowhere, and the machine mailctl runs on is rarely
		 * the MX (docs/dns.md) */
		mailctl_dns_platform_free(&p);
		mailctl_fail(ctl, "the platform's MX host is not set: mailctl dns platform set "
			     "mx=HOST (docs/dns.md)");
		return MAILCTL_NOT_FOUND;
	}
	err = mailctl_dns_records(c, &p, s);
	mailctl_dns_platform_free(&p);
	if (err != MAIL_OK) {
		mailctl_dns_set_free(s);
		return mailctl_error(ctl, err, "dkim", s->domain);
	}
	return MAILCTL_OK;
}

static json_t *mailctl_dns_record_json(const mailctl_dns_set *s, const mailctl_dns_record *r)
{
	char *zone = mailctl_dns_zone_line(s, r);
	json_t *j = json_pack("{s:s,s:s+,s:I,s:s,s:s,s:s,s:b}", "record",
			      mailctl_dns_what_name[r->what], "name", r->name, ".", "ttl", (json_int_t)s->ttl,
			      "type", r->type, "value", r->value, "zone", zone, "required",
			      r->required);
	free(zone);
	return j;
}

static int mailctl_dns_print(mailctl *ctl, etcd_client *c, const char *arg, int json)
{
	mailctl_dns_set s;
	int rc = mailctl_dns_build(ctl, c, arg, &s);
	if (rc != MAILCTL_OK)
		return rc;
	if (json) {
		json_t *arr = json_array();
		for (size_t i = 0; i < s.n; i++) {
			if (s.r[i].expect != NULL || s.r[i].what != W_DKIM)
				json_array_append_new(arr, mailctl_dns_record_json(&s, &s.r[i]));
		}
		json_t *doc = json_pack("{s:s,s:I,s:o}", "domain", s.domain, "ttl",
					(json_int_t)s.ttl, "records", arr);
		if (s.note != NULL)
			json_object_set_new(doc, "note", json_string(s.note));
		json_dumpf(doc, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(doc);
	} else {
		printf("; the DNS records of %s (mailctl dns check %s looks them up)\n", s.domain,
		       s.domain);
		int optional_said = 0;
		for (size_t i = 0; i < s.n; i++) {
			const mailctl_dns_record *r = &s.r[i];
			if (r->expect == NULL && r->what == W_DKIM) {
				printf("; %s\n", s.note);
				continue;
			}
			if (!r->required && !optional_said && r->what != W_DKIM) {
				printf(";\n; optional: mail clients' setup (RFC 6186, RFC 8314), "
				       "MTA-STS, TLS-RPT\n");
				optional_said = 1;
			}
			char *line = mailctl_dns_zone_line(&s, r);
			printf("%s%s\n", line,
			       r->what == W_DKIM && !r->required ? " ; inactive key: optional" : "");
			free(line);
		}
	}
	mailctl_dns_set_free(&s);
	return fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
}

static int mailctl_dns_check(mailctl *ctl, etcd_client *c, const char *arg, const char *server,
			     int json)
{
	char addr[INET6_ADDRSTRLEN + 16];
	if (server == NULL)
		server = getenv("MAIL_DNS"); /* as the daemons (docs/dns.md) */
	if (server != NULL && server[0] != '\0') {
		const char *why = mailctl_dns_server(server, addr, sizeof addr);
		if (why != NULL) {
			mailctl_fail(ctl, "--dns %s: %s (HOST[:PORT], IP:PORT or [IPv6]:PORT)", server,
				     why);
			return MAILCTL_USAGE;
		}
		server = addr;
	} else {
		server = NULL; /* /etc/resolv.conf */
	}
	mailctl_dns_set s;
	int rc = mailctl_dns_build(ctl, c, arg, &s);
	if (rc != MAILCTL_OK)
		return rc;
	rc = mailctl_dns_lookup_all(ctl, &s, server);
	if (rc != MAILCTL_OK) {
		mailctl_dns_set_free(&s);
		return rc;
	}
	size_t counts[ST__COUNT] = { 0 }, required_bad = 0;
	for (size_t i = 0; i < s.n; i++) {
		counts[s.r[i].status]++;
		required_bad += s.r[i].required &&
				(s.r[i].status == ST_MISSING || s.r[i].status == ST_WRONG);
	}
	json_t *arr = json ? json_array() : NULL;
	for (size_t i = 0; i < s.n; i++) {
		const mailctl_dns_record *r = &s.r[i];
		buf want;
		buf_init(&want);
		if (r->expect != NULL || r->what != W_DKIM)
			mailctl_dns_rdata(&want, r);
		buf_append(&want, "", 1);
		if (json) {
			json_t *found = json_array();
			for (size_t k = 0; k < r->n_found; k++)
				json_array_append_new(found, json_string(r->found[k]));
			json_t *j = json_pack("{s:s,s:s,s:s+,s:s,s:s,s:b,s:o}", "status",
					      mailctl_dns_status_name[r->status], "record",
					      mailctl_dns_what_name[r->what], "name", r->name, ".",
					      "type", r->type, "expected", r->value, "required",
					      r->required, "found", found);
			if (r->why != NULL)
				json_object_set_new(j, "detail", json_string(r->why));
			json_array_append_new(arr, j);
		} else {
			printf("%-8s %-8s %-8s %s. %s %s", mailctl_dns_status_name[r->status],
			       mailctl_dns_what_name[r->what], r->required ? "required" : "optional",
			       r->name, r->type, (const char *)want.data);
			if (r->status != ST_OK) {
				printf("  # ");
				for (size_t k = 0; k < r->n_found; k++)
					printf("%sfound \"%.*s%s\"", k > 0 ? ", " : "",
					       MAILCTL_DNS_SHOW_LEN, r->found[k],
					       strlen(r->found[k]) > MAILCTL_DNS_SHOW_LEN ? "..." : "");
				if (r->why != NULL)
					printf("%s%s", r->n_found > 0 ? ": " : "", r->why);
				else if (r->n_found == 0)
					printf("no record");
			}
			putchar('\n');
		}
		buf_deinit(&want);
	}
	rc = required_bad > 0 ? MAILCTL_OTHER : counts[ST_ERROR] > 0 ? MAILCTL_UNREACHABLE
								     : MAILCTL_OK;
	if (json) {
		json_t *doc = json_pack("{s:s,s:b,s:{s:I,s:I,s:I,s:I},s:o}", "domain", s.domain,
					"ok", rc == MAILCTL_OK, "counts", "OK",
					(json_int_t)counts[ST_OK], "MISSING",
					(json_int_t)counts[ST_MISSING], "WRONG",
					(json_int_t)counts[ST_WRONG], "ERROR",
					(json_int_t)counts[ST_ERROR], "records", arr);
		json_dumpf(doc, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(doc);
	} else {
		printf("; %zu OK, %zu MISSING, %zu WRONG, %zu ERROR\n", counts[ST_OK],
		       counts[ST_MISSING], counts[ST_WRONG], counts[ST_ERROR]);
	}
	if (fflush(stdout) != 0)
		rc = MAILCTL_OTHER;
	if (required_bad > 0)
		mailctl_fail(ctl, "dns check %s: %zu required record%s missing or wrong", s.domain,
			     required_bad, required_bad == 1 ? "" : "s");
	else if (counts[ST_ERROR] > 0)
		mailctl_fail(ctl, "dns check %s: %zu lookup%s failed (is the DNS server %s "
			     "answering?)", s.domain, counts[ST_ERROR],
			     counts[ST_ERROR] == 1 ? "" : "s",
			     server != NULL ? server : "of /etc/resolv.conf");
	mailctl_dns_set_free(&s);
	return rc;
}

static int mailctl_dns_platform_show(mailctl *ctl, etcd_client *c, int json)
{
	mailctl_dns_platform p;
	int err = mailctl_dns_platform_load(c, &p);
	if (err != MAIL_OK)
		return mailctl_error(ctl, err, "dns", "platform");
	json_t *doc = json ? json_object() : NULL, *defaulted = json ? json_array() : NULL;
	for (int i = 0; i < S__COUNT; i++) {
		const struct mailctl_dns_setting *st = &mailctl_dns_settings[i];
		const char *v = p.v[i];
		if (json) {
			int num = st->kind == MAILCTL_DNS_PORT || st->kind == MAILCTL_DNS_TTL;
			json_object_set_new(doc, st->name,
					    v == NULL ? json_null()
					    : num     ? json_integer(strtol(v, NULL, 10))
						      : json_string(v));
			if (!p.set[i])
				json_array_append_new(defaulted, json_string(st->name));
			continue;
		}
		printf("%-17s %-32s %s\n", st->name,
		       v != NULL ? v : i == S_MX ? "(not set: required)" : "(not set)",
		       p.set[i] || v == NULL ? "" : "(default)");
	}
	if (json) {
		json_object_set_new(doc, "defaulted", defaulted);
		json_dumpf(doc, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(doc);
	}
	mailctl_dns_platform_free(&p);
	return fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
}

/* Apply KEY=VALUE... to obj; an exit code after one line, or OK. */
static int mailctl_dns_platform_apply(mailctl *ctl, json_t *obj, int argc, char **argv)
{
	int touched[S__COUNT] = { 0 };
	for (int a = 0; a < argc; a++) {
		const char *eq = strchr(argv[a], '=');
		int i = eq != NULL ? mailctl_dns_setting_find(argv[a], (size_t)(eq - argv[a])) : -1;
		if (i < 0) {
			mailctl_fail(ctl, "%s: not KEY=VALUE with a KEY of mailctl dns platform show",
				     argv[a]);
			return MAILCTL_USAGE;
		}
		const struct mailctl_dns_setting *st = &mailctl_dns_settings[i];
		touched[i] = 1;
		if (eq[1] == '\0') {
			json_object_del(obj, st->name); /* back to the default */
			continue;
		}
		if (strlen(eq + 1) > MAILCTL_DNS_TEXT_MAX) {
			mailctl_fail(ctl, "%s: longer than %d bytes", st->name, MAILCTL_DNS_TEXT_MAX);
			return MAILCTL_USAGE;
		}
		char *value = xstrdup(eq + 1);
		const char *want = mailctl_dns_setting_check(i, value);
		if (want != NULL) {
			mailctl_fail(ctl, "%s=%s: %s must be %s", st->name, eq + 1, st->name, want);
			free(value);
			return MAILCTL_USAGE;
		}
		int num = st->kind == MAILCTL_DNS_PORT || st->kind == MAILCTL_DNS_TTL;
		json_object_set_new(obj, st->name,
				    num ? json_integer(strtol(value, NULL, 10)) : json_string(value));
		free(value);
	}
	/* the MTA-STS policy names the MX hosts: a new policy host or a new
	 * mx is a new policy, and senders fetch it again only for a new id */
	if (!touched[S_MTA_STS_ID] && json_object_get(obj, "mta_sts") != NULL &&
	    (touched[S_MTA_STS] || touched[S_MX] || json_object_get(obj, "mta_sts_id") == NULL))
		json_object_set_new(obj, "mta_sts_id", mailctl_dns_sts_id_new());
	return MAILCTL_OK;
}

static int mailctl_dns_platform_set(mailctl *ctl, etcd_client *c, int argc, char **argv)
{
	for (int attempt = 0; attempt < MAILCTL_DNS_CAS_TRIES; attempt++) {
		mailctl_dns_platform p;
		int err = mailctl_dns_platform_load(c, &p);
		if (err != MAIL_OK)
			return mailctl_error(ctl, err, "dns", "platform");
		int rc = mailctl_dns_platform_apply(ctl, p.obj, argc, argv);
		if (rc != MAILCTL_OK) {
			mailctl_dns_platform_free(&p);
			return rc;
		}
		char *text = json_dumps(p.obj, JSON_COMPACT | JSON_SORT_KEYS);
		/* only over what we read: another admin's write in between is
		 * read again, not lost */
		err = etcd_kv_put_if_mod(c, MAILCTL_DNS_PLATFORM_KEY, text, strlen(text), p.mod,
					 NULL);
		free(text);
		mailctl_dns_platform_free(&p);
		if (err == MAIL_OK)
			return mailctl_dns_platform_show(ctl, c, 0);
		if (err != MAIL_ERR_EXISTS)
			return mailctl_error(ctl, err, "dns", "platform");
	}
	mailctl_fail(ctl, "dns platform: changed by someone else %d times in a row; try again",
		     MAILCTL_DNS_CAS_TRIES);
	return MAILCTL_OTHER;
}

int mailctl_dns(mailctl *ctl, int argc, char **argv)
{
	/* argv[0] is "dns" */
	if (argc < 2)
		return -1;
	const char *cmd = argv[1];
	int rc = -1;
	if (strcmp(cmd, "platform") == 0) {
		if (argc < 3)
			return -1;
		int show = strcmp(argv[2], "show") == 0;
		int json = show && argc == 4 && strcmp(argv[3], "--json") == 0;
		if (show ? argc != 3 + json : strcmp(argv[2], "set") != 0 || argc < 4)
			return -1;
		etcd_client *c = etcd_client_create(&ctl->etcd);
		rc = show ? mailctl_dns_platform_show(ctl, c, json)
			  : mailctl_dns_platform_set(ctl, c, argc - 3, argv + 3);
		etcd_client_destroy(&c);
		return rc;
	}
	int check = strcmp(cmd, "check") == 0, json = 0;
	const char *domain = NULL, *server = NULL;
	for (int i = check ? 2 : 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = 1;
		else if (check && strcmp(argv[i], "--dns") == 0 && i + 1 < argc)
			server = argv[++i];
		else if (check && strncmp(argv[i], "--dns=", 6) == 0)
			server = argv[i] + 6;
		else if (argv[i][0] == '-' || domain != NULL)
			return -1;
		else
			domain = argv[i];
	}
	if (domain == NULL)
		return -1;
	etcd_client *c = etcd_client_create(&ctl->etcd);
	rc = check ? mailctl_dns_check(ctl, c, domain, server, json)
		   : mailctl_dns_print(ctl, c, domain, json);
	etcd_client_destroy(&c);
	return rc;
}
