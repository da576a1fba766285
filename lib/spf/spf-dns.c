/* spf-dns.c: the DNS layers under libspf2 (spf-private.h): the limits
 * layer of each check, the resolver (res_nsend() on the check's own
 * res_state, pointed at the configured server) and the reader of its
 * answers.
 *
 * libspf2 calls a layer's lookup() synchronously and frees what it
 * returns; every layer returns a fresh SPF_dns_rr_t, never NULL (libspf2
 * aborts on NULL). Its herrno is what libspf2 reads: NETDB_SUCCESS (with
 * num_rr records, 0 is a void answer), HOST_NOT_FOUND (NXDOMAIN), NO_DATA,
 * TRY_AGAIN (anything temporary: libspf2 makes it a temperror).
 *
 * glibc's stub resolver builds the query (res_nmkquery), sends it (UDP,
 * then TCP when the answer is truncated; it checks the answer's id and
 * question) and splits the answer (ns_initparse, ns_parserr,
 * ns_name_uncompress). What is ours: the rcode's meaning, the TXT
 * character-strings joined, the TTLs, and the bounds on all of it.
 */
#include "spf-private.h"

#include "util.h"
#include "xalloc.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The evaluation running on this thread (spf-private.h says why). */
static __thread struct spf__eval *spf__current;

static SPF_dns_rr_t *spf__rr(SPF_dns_server_t *source, const char *domain, ns_type type,
			     unsigned ttl, int herrno)
{
	SPF_dns_rr_t *rr = SPF_dns_rr_new_init(source, domain, type, (int)ttl, herrno);
	if (rr == NULL)
		abort(); /* out of memory: as xmalloc */
	return rr;
}

/* ---- the reader of answers ---- */

/* RFC 2308 3: a negative answer lives min(SOA TTL, SOA MINIMUM). */
static unsigned spf__negative_ttl(ns_msg *msg)
{
	int n = ns_msg_count(*msg, ns_s_ns);
	for (int i = 0; i < n; i++) {
		ns_rr r;
		if (ns_parserr(msg, ns_s_ns, i, &r) < 0)
			return 0;
		/* MNAME, RNAME (at least 1 byte each), then 5 x 32 bits,
		 * MINIMUM last */
		if (ns_rr_type(r) != ns_t_soa || ns_rr_rdlen(r) < 22)
			continue;
		unsigned long minimum = ns_get32(ns_rr_rdata(r) + ns_rr_rdlen(r) - 4);
		unsigned long ttl = ns_rr_ttl(r);
		return (unsigned)(ttl < minimum ? ttl : minimum);
	}
	return 0;
}

/* One record's data into rr->rr[idx]. Returns 0, or -1 when malformed. */
static int spf__rr_store(SPF_dns_rr_t *rr, int idx, ns_type type, const ns_msg *msg,
			 const ns_rr *r)
{
	const unsigned char *rdata = ns_rr_rdata(*r);
	size_t rdlen = ns_rr_rdlen(*r);
	char name[NS_MAXDNAME];
	switch (type) {
	case ns_t_a:
		if (rdlen != 4)
			return -1;
		if (SPF_dns_rr_buf_realloc(rr, idx, sizeof(struct in_addr)) != SPF_E_SUCCESS)
			abort();
		memcpy(&rr->rr[idx]->a, rdata, 4);
		return 0;
	case ns_t_aaaa:
		if (rdlen != 16)
			return -1;
		if (SPF_dns_rr_buf_realloc(rr, idx, sizeof(struct in6_addr)) != SPF_E_SUCCESS)
			abort();
		memcpy(&rr->rr[idx]->aaaa, rdata, 16);
		return 0;
	case ns_t_mx:
	case ns_t_ptr: {
		size_t skip = type == ns_t_mx ? NS_INT16SZ : 0; /* the preference */
		if (rdlen <= skip)
			return -1;
		if (ns_name_uncompress(ns_msg_base(*msg), ns_msg_end(*msg), rdata + skip, name,
				       sizeof name) < 0)
			return -1;
		size_t len = strlen(name);
		if (SPF_dns_rr_buf_realloc(rr, idx, len + 1) != SPF_E_SUCCESS)
			abort();
		memcpy(type == ns_t_mx ? rr->rr[idx]->mx : rr->rr[idx]->ptr, name, len + 1);
		return 0;
	}
	case ns_t_txt: {
		/* character-strings, each a length byte and that many bytes
		 * (RFC 1035 3.3.14), joined (RFC 7208 3.3); at least one */
		if (rdlen == 0)
			return -1;
		for (size_t p = 0; p < rdlen; p += 1 + (size_t)rdata[p]) {
			if (p + 1 + (size_t)rdata[p] > rdlen)
				return -1;
		}
		/* the joined text is shorter than rdlen (one length byte at
		 * least), so rdlen holds it and its NUL */
		if (SPF_dns_rr_buf_realloc(rr, idx, rdlen) != SPF_E_SUCCESS)
			abort();
		char *out = rr->rr[idx]->txt;
		size_t o = 0;
		for (size_t p = 0; p < rdlen; p += 1 + (size_t)rdata[p]) {
			for (size_t k = 0; k < rdata[p]; k++) {
				unsigned char c = rdata[p + 1 + k];
				out[o++] = c == '\0' ? '\x01' : (char)c;
			}
		}
		out[o] = '\0';
		return 0;
	}
	default:
		return -1;
	}
}

SPF_dns_rr_t *spf__dns_read(SPF_dns_server_t *source, const char *domain, ns_type type,
			    const unsigned char *answer, int len, unsigned ttl_max_s)
{
	ns_msg msg;
	if (len < 0 || ns_initparse(answer, len, &msg) < 0 || ns_msg_getflag(msg, ns_f_tc))
		return spf__rr(source, domain, type, 0, TRY_AGAIN);
	int rcode = ns_msg_getflag(msg, ns_f_rcode);
	if (rcode == ns_r_nxdomain) {
		unsigned ttl = spf__negative_ttl(&msg);
		return spf__rr(source, domain, type, ttl < ttl_max_s ? ttl : ttl_max_s,
			       HOST_NOT_FOUND);
	}
	if (rcode != ns_r_noerror)
		return spf__rr(source, domain, type, 0, TRY_AGAIN);

	SPF_dns_rr_t *rr = spf__rr(source, domain, type, 0, NETDB_SUCCESS);
	unsigned long ttl = ttl_max_s;
	int n = ns_msg_count(msg, ns_s_an), count = 0;
	for (int i = 0; i < n; i++) {
		ns_rr r;
		if (ns_parserr(&msg, ns_s_an, i, &r) < 0)
			goto malformed;
		/* CNAMEs of the chain (the server gives the target's records
		 * after them), DNSSEC records, anything else: not ours */
		if (ns_rr_class(r) != ns_c_in || ns_rr_type(r) != type)
			continue;
		if (spf__rr_store(rr, count, type, &msg, &r) < 0)
			goto malformed;
		/* a null MX ("." , RFC 7505) names no host */
		if (type == ns_t_mx && strcmp(rr->rr[count]->mx, ".") == 0)
			continue;
		if (ns_rr_ttl(r) < ttl)
			ttl = ns_rr_ttl(r);
		count++;
	}
	rr->num_rr = count;
	if (count == 0) {
		rr->herrno = NO_DATA;
		ttl = spf__negative_ttl(&msg);
		if (ttl > ttl_max_s)
			ttl = ttl_max_s;
	}
	rr->ttl = (time_t)ttl;
	return rr;

malformed:
	SPF_dns_rr_free(rr);
	return spf__rr(source, domain, type, 0, TRY_AGAIN);
}

/* ---- the resolver layer ---- */

struct spf__resolver {
	SPF_dns_server_t layer; /* first: libspf2 frees the struct itself */
	struct spf__resolver_conf conf;
};

/* The check's res_state: resolv.conf's options, our tries and timeout,
 * and the configured server in place of resolv.conf's. An IPv6 server goes
 * where glibc keeps its own (_u._ext.nsaddrs, freed by res_nclose) with
 * nsaddr_list's family 0, as res_ninit leaves one read from resolv.conf. */
static int spf__res_open(struct spf__eval *ev, const struct spf__resolver_conf *conf)
{
	memset(&ev->res, 0, sizeof ev->res);
	if (res_ninit(&ev->res) < 0)
		return -1;
	ev->res_ready = 1;
	ev->res.retrans = (int)conf->timeout_s;
	ev->res.retry = (int)conf->tries;
	ev->res.options &= ~(unsigned long)RES_ROTATE;
	if (conf->has_server) {
		for (int i = 0; i < MAXNS; i++) {
			free(ev->res._u._ext.nsaddrs[i]);
			ev->res._u._ext.nsaddrs[i] = NULL;
		}
		ev->res.nscount = 1;
		if (conf->server.ss_family == AF_INET) {
			memcpy(&ev->res.nsaddr_list[0], &conf->server, sizeof(struct sockaddr_in));
		} else {
			memset(&ev->res.nsaddr_list[0], 0, sizeof ev->res.nsaddr_list[0]);
			ev->res._u._ext.nsaddrs[0] = xmalloc(sizeof(struct sockaddr_in6));
			memcpy(ev->res._u._ext.nsaddrs[0], &conf->server,
			       sizeof(struct sockaddr_in6));
		}
	}
	ev->answer = xmalloc(SPF__ANSWER_MAX);
	return 0;
}

static SPF_dns_rr_t *spf__resolver_lookup(SPF_dns_server_t *layer, const char *domain,
					  ns_type type, int should_cache)
{
	(void)should_cache;
	struct spf__resolver *r = layer->hook;
	struct spf__eval *ev = spf__current;
	/* a lookup outside an evaluation would be our bug: answer for now */
	if (ev == NULL || (!ev->res_ready && spf__res_open(ev, &r->conf) < 0))
		return spf__rr(layer, domain, type, 0, TRY_AGAIN);
	unsigned char query[NS_PACKETSZ];
	int qlen = res_nmkquery(&ev->res, ns_o_query, domain, ns_c_in, type, NULL, 0, NULL, query,
				sizeof query);
	/* not a DNS name (a label over 63 bytes, an empty label): no such
	 * name can exist */
	if (qlen < 0)
		return spf__rr(layer, domain, type, 0, HOST_NOT_FOUND);
	atomic_fetch_add(r->conf.queries, 1);
	int n = res_nsend(&ev->res, query, qlen, ev->answer, (int)SPF__ANSWER_MAX);
	atomic_fetch_add(r->conf.inserts, 1);
	return spf__dns_read(layer, domain, type, ev->answer, n, r->conf.ttl_max_s);
}

static void spf__resolver_destroy(SPF_dns_server_t *layer)
{
	free(layer->hook);
}

SPF_dns_server_t *spf__resolver_new(const struct spf__resolver_conf *conf)
{
	struct spf__resolver *r = xcalloc(1, sizeof *r);
	r->conf = *conf;
	r->layer.destroy = spf__resolver_destroy;
	r->layer.lookup = spf__resolver_lookup;
	r->layer.name = "mailspf-resolver";
	r->layer.hook = r;
	return &r->layer;
}

/* ---- the limits layer ---- */

static void spf__sub_clear(struct spf__eval *ev)
{
	for (unsigned i = 0; i < ev->sub_count; i++)
		free(ev->sub[i]);
	ev->sub_count = ev->sub_next = 0;
}

static int spf__stopped(struct spf__eval *ev)
{
	if (ev->stop != SPF__STOP_NONE)
		return 1;
	if (ev->abandon != NULL && atomic_load(ev->abandon))
		ev->stop = SPF__STOP_ABANDON;
	else if (ev->deadline_ms != 0 && util_now_mono_ms() >= ev->deadline_ms)
		ev->stop = SPF__STOP_DEADLINE;
	return ev->stop != SPF__STOP_NONE;
}

static int spf__void(const SPF_dns_rr_t *rr)
{
	return rr->herrno == HOST_NOT_FOUND || rr->herrno == NO_DATA ||
	       (rr->herrno == NETDB_SUCCESS && rr->num_rr == 0);
}

/* Which lookups are terms (RFC 7208 4.6.4): libspf2 asks, in order, the
 * checked domain's TXT (no term), then per term one query (include and
 * redirect: TXT; a and exists: A or AAAA; mx: MX; ptr: PTR), an mx or
 * ptr term followed by the address lookups of the names its answer gave,
 * in that answer's order: those belong to the term (they are bounded by
 * libspf2's max_dns_mx/ptr, 10). A %{p} macro's PTR lookup counts as a
 * term (a stricter reading). Once a limit is passed every lookup answers
 * TRY_AGAIN at once, which ends the evaluation; spf__evaluate() then
 * reports the limit, not the temperror. */
static SPF_dns_rr_t *spf__limits_lookup(SPF_dns_server_t *layer, const char *domain,
					ns_type type, int should_cache)
{
	struct spf__eval *ev = layer->hook;
	/* RFC 7208 3.1: the SPF RR type is not asked (libspf2 asks it first
	 * and falls back to TXT on NODATA) */
	if (type == ns_t_spf)
		return spf__rr(layer, domain, type, 0, NO_DATA);
	if (spf__stopped(ev))
		return spf__rr(layer, domain, type, 0, TRY_AGAIN);

	int term = 0;
	if ((type == ns_t_a || type == ns_t_aaaa) && ev->sub_next < ev->sub_count &&
	    strcasecmp(ev->sub[ev->sub_next], domain) == 0) {
		ev->sub_next++;
	} else {
		spf__sub_clear(ev);
		if (type == ns_t_txt && !ev->first_txt_done) {
			ev->first_txt_done = 1;
		} else {
			term = 1;
			if (++ev->terms > ev->lim.terms_max) {
				ev->stop = SPF__STOP_TERMS;
				return spf__rr(layer, domain, type, 0, TRY_AGAIN);
			}
		}
	}
	if (ev->lookups != NULL)
		atomic_fetch_add(ev->lookups, 1);
	SPF_dns_rr_t *rr = SPF_dns_lookup(layer->layer_below, domain, type, should_cache);
	if (rr->herrno == TRY_AGAIN && ev->temp_name[0] == '\0')
		snprintf(ev->temp_name, sizeof ev->temp_name, "%s", domain);
	if (term && spf__void(rr) && ++ev->voids > ev->lim.voids_max) {
		ev->stop = SPF__STOP_VOIDS;
		SPF_dns_rr_free(rr);
		return spf__rr(layer, domain, type, 0, TRY_AGAIN);
	}
	if ((type == ns_t_mx || type == ns_t_ptr) && rr->herrno == NETDB_SUCCESS) {
		for (int i = 0; i < rr->num_rr && ev->sub_count < SPF__SUB_NAMES_MAX; i++)
			ev->sub[ev->sub_count++] =
				xstrdup(type == ns_t_mx ? rr->rr[i]->mx : rr->rr[i]->ptr);
	}
	return rr;
}

/* libspf2 asks this for the domain of an exp= modifier; the explanation
 * is not used (spf-check.h), so no lookup: a fixed text. */
static SPF_errcode_t spf__limits_get_exp(SPF_server_t *server, const char *domain, char **bufp,
					 size_t *buflenp)
{
	(void)server;
	(void)domain;
	static const char text[] = "not used";
	if (*buflenp < sizeof text) {
		char *p = realloc(*bufp, sizeof text);
		if (p == NULL)
			abort();
		*bufp = p;
		*buflenp = sizeof text;
	}
	memcpy(*bufp, text, sizeof text);
	return SPF_E_SUCCESS;
}

void spf__eval_init(struct spf__eval *ev, SPF_dns_server_t *below,
		    const struct spf__limits *lim, uint64_t deadline_ms,
		    const atomic_int *abandon, atomic_uint_fast64_t *lookups)
{
	memset(ev, 0, sizeof *ev);
	ev->top.destroy = NULL; /* ours: SPF_dns_free() leaves it alone */
	ev->top.lookup = spf__limits_lookup;
	ev->top.get_exp = spf__limits_get_exp;
	ev->top.layer_below = below;
	ev->top.name = "mailspf-limits";
	ev->top.hook = ev;
	ev->lim = *lim;
	ev->deadline_ms = deadline_ms;
	ev->abandon = abandon;
	ev->lookups = lookups;
	spf__current = ev;
}

void spf__eval_deinit(struct spf__eval *ev)
{
	spf__sub_clear(ev);
	if (ev->res_ready)
		res_nclose(&ev->res);
	ev->res_ready = 0;
	free(ev->answer);
	ev->answer = NULL;
	if (spf__current == ev)
		spf__current = NULL;
}
