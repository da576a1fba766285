/* dkim-verify-run.c: one message through libopendkim in steps
 * (dkim-verify-private.h); no threads, no DNS here.
 *
 * libopendkim 2.11.0~beta2 facts this relies on (lib/dkim/test-dkim-verifier.c
 * shows each):
 *   - dkim_header() refuses a DKIM-Signature field missing a required tag
 *     (DKIM_STAT_SYNTAX) and leaves it out of the signature list, but the
 *     handle goes on: the other signatures still verify. dkim_chunk()
 *     would stop at it, so fields are cut and fed here.
 *   - with DKIM_LIBFLAGS_DELAYSIGPROC no key is asked for before
 *     dkim_eom(); dkim_eoh() has already parsed every signature (bad a=,
 *     c=, h= without From... are in dkim_sig_geterror() then).
 *   - its key callback answering DKIM_CBSTAT_TRYAGAIN or _ERROR makes the
 *     whole handle fail (every signature lost): failed lookups are never
 *     given to it, their signatures are dkim_sig_ignore()d instead.
 *   - a body hash mismatch leaves DKIM_SIGFLAG_PASSED set (the header
 *     signature verified) with dkim_sig_getbh() MISMATCH, and the error
 *     BADSIG: both are read to tell body from signature.
 */
#include "dkim-verify-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "log.h"
#include "mail-error.h"
#include "xalloc.h"

/* body bytes handed to libopendkim per call, after LF -> CRLF */
#define DKIM__BODY_CHUNK (64u * 1024u)
#define DKIM__SIG_NAME "dkim-signature"

/* ---- names -------------------------------------------------------------------- */

const char *dkim_verify_status_name(enum dkim_verify_status status)
{
	static const char *const names[] = { "pass",      "fail",      "neutral",
					     "temperror", "permerror", "policy" };
	return (unsigned)status < sizeof names / sizeof names[0] ? names[status] : "permerror";
}

const char *dkim_verify_reason_text(enum dkim_verify_reason reason)
{
	static const char *const texts[DKIM_VERIFY_REASON_COUNT_] = {
		[DKIM_VERIFY_OK] = "",
		[DKIM_VERIFY_BODY_HASH] = "bad body hash",
		[DKIM_VERIFY_SIGNATURE] = "bad signature",
		[DKIM_VERIFY_BODY_LENGTH] = "l= longer than the body",
		[DKIM_VERIFY_EXPIRED] = "signature expired",
		[DKIM_VERIFY_FUTURE] = "signature in the future",
		[DKIM_VERIFY_DNS] = "key lookup failed temporarily",
		[DKIM_VERIFY_NO_KEY] = "no key",
		[DKIM_VERIFY_KEY_REVOKED] = "key revoked",
		[DKIM_VERIFY_BAD_KEY] = "bad key record",
		[DKIM_VERIFY_SYNTAX] = "bad signature field",
		[DKIM_VERIFY_MESSAGE] = "message not verifiable",
		[DKIM_VERIFY_KEY_TOO_SMALL] = "key too small",
		[DKIM_VERIFY_ALGORITHM] = "rsa-sha1 not accepted",
		[DKIM_VERIFY_TESTING] = "key in testing mode",
		[DKIM_VERIFY_PARTIAL_BODY] = "body partly unsigned",
	};
	return (unsigned)reason < DKIM_VERIFY_REASON_COUNT_ ? texts[reason] : "?";
}

/* ---- the library handle --------------------------------------------------------- */

static DKIM_CBSTAT dkim__key_cb(DKIM *d, DKIM_SIGINFO *si, u_char *buf, size_t len);

DKIM_LIB *dkim__lib_new(const struct dkim_verify_settings *set)
{
	DKIM_LIB *lib = dkim_init(NULL, NULL);
	if (lib == NULL)
		return NULL;
	uint32_t flags = DKIM_LIBFLAGS_DELAYSIGPROC;
	u_int bits = set->min_rsa_bits;
	/* no DKIM_OPTS_FIXEDTIME: libopendkim 2.11 reads the clock itself for
	 * t= and x= when verifying */
	if (!dkim_libfeature(lib, DKIM_FEATURE_SHA256) ||
	    !dkim_libfeature(lib, DKIM_FEATURE_ED25519) ||
	    dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, sizeof flags) !=
		    DKIM_STAT_OK ||
	    dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_MINKEYBITS, &bits, sizeof bits) !=
		    DKIM_STAT_OK ||
	    dkim_set_key_lookup(lib, dkim__key_cb) != DKIM_STAT_OK) {
		dkim_close(lib);
		return NULL;
	}
	return lib;
}

/* ---- the run ------------------------------------------------------------------------ */

void dkim__run_init(struct dkim__run *r, DKIM_LIB *lib, const struct dkim_verify_settings *set,
		    const void *msg, size_t len, const char *id)
{
	memset(r, 0, sizeof *r);
	r->lib = lib;
	r->set = set;
	r->msg = msg;
	r->len = len;
	r->body_off = len;
	snprintf(r->id, sizeof r->id, "%s", id != NULL ? id : "-");
}

void dkim__run_clear(struct dkim__run *r)
{
	if (r->d != NULL)
		dkim_free(r->d);
	r->d = NULL;
	for (size_t i = 0; i < r->n_lookups; i++)
		free(r->lookups[i].record);
	free(r->lookups);
	free(r->slots);
	r->lookups = NULL;
	r->slots = NULL;
	r->n_lookups = r->n_slots = 0;
}

static int dkim__begin(struct dkim__run *r)
{
	if (r->read_begin != NULL && !r->read_begin(r->guard)) {
		r->stopped = 1;
		return 0;
	}
	return 1;
}

static void dkim__end(struct dkim__run *r)
{
	if (r->read_end != NULL)
		r->read_end(r->guard);
}

static void dkim__fail(struct dkim__run *r, int status, const char *error)
{
	if (r->status == MAIL_OK) {
		r->status = status;
		r->error = error;
	}
}

static void dkim__decide(struct dkim__slot *s, enum dkim_verify_status status,
			 enum dkim_verify_reason reason, const char *detail)
{
	s->out.status = status;
	s->out.reason = reason;
	s->out.detail = detail != NULL ? detail : "";
	s->decided = 1;
	if (s->si != NULL)
		dkim_sig_ignore(s->si); /* libopendkim must not verify it */
}

/* ---- the tags of a signature field, read here ---------------------------------------- */

static int dkim__is_fws(int c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* value[0..n) without white space into out[size], cut */
static void dkim__tag_copy(char *out, size_t size, const uint8_t *v, size_t n)
{
	size_t o = 0;
	for (size_t i = 0; i < n && o + 1 < size; i++) {
		if (!dkim__is_fws(v[i]))
			out[o++] = (char)v[i];
	}
	out[o] = '\0';
}

/* One tag's value val[0..vlen) into out, for the tags we report. */
static void dkim__tag(struct dkim_verify_sig *out, int tag, const uint8_t *val, size_t vlen)
{
	char num[24];
	char *e;
	long long l;
	switch (tag) {
	case 'd':
		dkim__tag_copy(out->domain, sizeof out->domain, val, vlen);
		break;
	case 's':
		dkim__tag_copy(out->selector, sizeof out->selector, val, vlen);
		break;
	case 'a':
		dkim__tag_copy(out->algorithm, sizeof out->algorithm, val, vlen);
		break;
	case 'i':
		dkim__tag_copy(out->identity, sizeof out->identity, val, vlen);
		break;
	case 'b':
		dkim__tag_copy(out->b, sizeof out->b, val, vlen);
		break;
	case 'l':
		dkim__tag_copy(num, sizeof num, val, vlen);
		l = strtoll(num, &e, 10);
		if (num[0] >= '0' && num[0] <= '9' && *e == '\0' && l >= 0)
			out->length = (ssize_t)l;
		break;
	default:
		break;
	}
}

/* d=, s=, a=, i=, b= (first DKIM_VERIFY_B_PREFIX characters) and l= of a
 * DKIM-Signature field's value v[0..n) (RFC 6376 3.2 tag-list), the first
 * of each; what is missing stays "" (l: -1). For every signature, also
 * those libopendkim refuses. */
static void dkim__tags(const uint8_t *v, size_t n, struct dkim_verify_sig *out)
{
	out->length = -1;
	size_t i = 0;
	uint32_t seen = 0;
	while (i < n) {
		const uint8_t *semi = memchr(v + i, ';', n - i);
		size_t end = semi != NULL ? (size_t)(semi - v) : n;
		size_t k = i;
		while (k < end && dkim__is_fws(v[k]))
			k++;
		size_t name = k;
		while (k < end && !dkim__is_fws(v[k]) && v[k] != '=')
			k++;
		size_t name_len = k - name;
		while (k < end && dkim__is_fws(v[k]))
			k++;
		uint32_t bit = name_len == 1 ? 1u << (v[name] & 31) : 0;
		if (k < end && v[k] == '=' && bit != 0 && (seen & bit) == 0) {
			seen |= bit;
			dkim__tag(out, v[name], v + k + 1, end - k - 1);
		}
		i = end + 1;
	}
}

/* ---- header ----------------------------------------------------------------------------- */

/* Is the field name[0..len) (before the colon) DKIM-Signature? */
static int dkim__is_sig(const uint8_t *name, size_t len)
{
	while (len > 0 && (name[len - 1] == ' ' || name[len - 1] == '\t'))
		len--;
	return len == sizeof DKIM__SIG_NAME - 1 &&
	       strncasecmp((const char *)name, DKIM__SIG_NAME, len) == 0;
}

struct dkim__hdr {
	uint8_t *accepted; /* per DKIM-Signature field: libopendkim took it */
	size_t n_sig, cap;
};

/* Give one whole field f[0..n) (CRLF between its lines, none at the end)
 * to libopendkim. */
static int dkim__field(struct dkim__run *r, struct dkim__hdr *h, const uint8_t *f, size_t n)
{
	const uint8_t *colon = memchr(f, ':', n);
	int is_sig = dkim__is_sig(f, (size_t)(colon - f));
	DKIM_STAT st = dkim_header(r->d, (u_char *)f, n);
	if (!is_sig) {
		if (st == DKIM_STAT_OK)
			return 0;
		dkim__fail(r, st == DKIM_STAT_SYNTAX ? MAIL_ERR_PARAMS : MAIL_ERR_INTERNAL,
			   "libopendkim refused a header field");
		return -1;
	}
	if (st != DKIM_STAT_OK && st != DKIM_STAT_SYNTAX) {
		dkim__fail(r, MAIL_ERR_INTERNAL, "libopendkim failed on a signature field");
		return -1;
	}
	if (h->n_sig == h->cap) {
		h->cap = h->cap != 0 ? 2 * h->cap : 16;
		h->accepted = xrealloc(h->accepted, h->cap);
	}
	h->accepted[h->n_sig++] = st == DKIM_STAT_OK;
	if (r->n_slots >= r->set->max_signatures) {
		r->unchecked++;
		return 0;
	}
	struct dkim__slot *s = &r->slots[r->n_slots++];
	s->lookup = -1;
	dkim__tags(colon + 1, n - (size_t)(colon + 1 - f), &s->out);
	if (st != DKIM_STAT_OK)
		dkim__decide(s, DKIM_VERIFY_PERMERROR, DKIM_VERIFY_SYNTAX,
			     "signature field refused (a required tag missing or bad)");
	return 0;
}

/* Cut the header into fields and feed them; finds body_off. */
static void dkim__headers(struct dkim__run *r, struct dkim__hdr *h)
{
	const uint8_t *m = r->msg;
	size_t len = r->len, pos = 0, fields = 0;
	buf field;
	buf_init(&field);
	int rc = 0;
	while (pos < len && rc == 0) {
		if (!dkim__begin(r)) {
			rc = -1;
			break;
		}
		const uint8_t *nl = memchr(m + pos, '\n', len - pos);
		size_t end = nl != NULL ? (size_t)(nl - m) : len;
		size_t next = nl != NULL ? end + 1 : len;
		size_t clen = end - pos;
		if (clen > 0 && m[pos + clen - 1] == '\r')
			clen--;
		const uint8_t *line = m + pos;
		int ended = 0, cont = 0, start = 0;
		if (memchr(line, '\0', clen) != NULL) {
			dkim__fail(r, MAIL_ERR_PARAMS, "a NUL byte in the header");
			rc = -1;
		} else if (clen == 0) {
			r->body_off = next;
			ended = 1;
		} else if (line[0] == ' ' || line[0] == '\t') {
			if (fields == 0) {
				dkim__fail(r, MAIL_ERR_PARAMS,
					   "the header starts with a continuation line");
				rc = -1;
			}
			cont = 1;
		} else {
			const uint8_t *colon = memchr(line, ':', clen);
			int named = colon != NULL && colon > line;
			for (const uint8_t *p = line; named && p < colon; p++)
				named = (*p > 32 && *p < 127) || *p == ' ' || *p == '\t';
			if (!named) {
				dkim__fail(r, MAIL_ERR_PARAMS,
					   "a header line is not a field (name: value)");
				rc = -1;
			} else if (++fields > r->set->max_header_fields) {
				dkim__fail(r, MAIL_ERR_LIMIT, "too many header fields");
				rc = -1;
			}
			start = 1;
		}
		/* copy what this line adds before the message is let go */
		buf pending;
		buf_init(&pending);
		if (rc == 0 && start) {
			pending = field;
			buf_init(&field);
			buf_append(&field, line, clen);
		} else if (rc == 0 && cont) {
			buf_append(&field, "\r\n", 2);
			buf_append(&field, line, clen);
		}
		dkim__end(r);
		if (rc == 0 && pending.len > 0)
			rc = dkim__field(r, h, pending.data, pending.len);
		buf_deinit(&pending);
		pos = next;
		if (ended)
			break;
	}
	if (rc == 0 && field.len > 0)
		dkim__field(r, h, field.data, field.len);
	buf_deinit(&field);
}

/* The libopendkim verdict of a signature found bad before any key:
 * syntax, mostly. */
static void dkim__early_error(struct dkim__slot *s, int err)
{
	const char *detail = dkim_sig_geterrorstr(err);
	switch (err) {
	case DKIM_SIGERROR_EXPIRED:
		dkim__decide(s, DKIM_VERIFY_NEUTRAL, DKIM_VERIFY_EXPIRED, detail);
		break;
	case DKIM_SIGERROR_FUTURE:
		dkim__decide(s, DKIM_VERIFY_NEUTRAL, DKIM_VERIFY_FUTURE, detail);
		break;
	default:
		dkim__decide(s, DKIM_VERIFY_PERMERROR, DKIM_VERIFY_SYNTAX, detail);
		break;
	}
}

void dkim__run_header(struct dkim__run *r)
{
	const struct dkim_verify_settings *set = r->set;
	if (r->len > set->max_message_bytes) {
		dkim__fail(r, MAIL_ERR_TOO_BIG, "message too big to verify");
		return;
	}
	DKIM_STAT st;
	r->d = dkim_verify(r->lib, (const u_char *)r->id, NULL, &st);
	if (r->d == NULL) {
		log_event(LOG_ERROR, "dkim", "event=dkim_verify_failed id=%s step=start status=%d",
			  r->id, st);
		dkim__fail(r, MAIL_ERR_INTERNAL, "libopendkim could not start");
		return;
	}
	dkim_set_user_context(r->d, r);
	r->slots = xcalloc(set->max_signatures, sizeof *r->slots);
	struct dkim__hdr h = { 0 };
	dkim__headers(r, &h);
	if (r->stopped || r->status != MAIL_OK) {
		free(h.accepted);
		return;
	}
	st = dkim_eoh(r->d);
	DKIM_SIGINFO **sl = NULL;
	int nsl = 0;
	if ((st == DKIM_STAT_OK || st == DKIM_STAT_NOSIG) &&
	    dkim_getsiglist(r->d, &sl, &nsl) != DKIM_STAT_OK)
		nsl = 0;
	size_t n_acc = 0;
	for (size_t k = 0; k < h.n_sig; k++)
		n_acc += h.accepted[k];
	int mismatch = (st == DKIM_STAT_OK || st == DKIM_STAT_NOSIG) && (size_t)nsl != n_acc;
	if (mismatch)
		log_event(LOG_WARN, "dkim", "event=dkim_verify_siglist id=%s fields=%zu listed=%d",
			  r->id, n_acc, nsl);
	const char *why = st == DKIM_STAT_OK || st == DKIM_STAT_NOSIG
				  ? "libopendkim's signatures do not match the fields"
				  : "header not verifiable (no usable From field?)";
	if (mismatch || (st != DKIM_STAT_OK && st != DKIM_STAT_NOSIG)) {
		for (int j = 0; j < nsl; j++)
			dkim_sig_ignore(sl[j]);
		for (size_t k = 0; k < r->n_slots; k++) {
			if (!r->slots[k].decided)
				dkim__decide(&r->slots[k], DKIM_VERIFY_PERMERROR,
					     DKIM_VERIFY_MESSAGE, why);
		}
		free(h.accepted);
		return;
	}
	/* libopendkim lists the fields it accepted, in order */
	for (size_t k = 0, j = 0; k < h.n_sig; k++) {
		if (!h.accepted[k])
			continue;
		DKIM_SIGINFO *si = sl[j++];
		if (k >= r->n_slots) {
			dkim_sig_ignore(si); /* over max_signatures */
			continue;
		}
		struct dkim__slot *s = &r->slots[k];
		s->si = si;
		const char *d = (const char *)dkim_sig_getdomain(si);
		const char *sel = (const char *)dkim_sig_getselector(si);
		if (d != NULL)
			snprintf(s->out.domain, sizeof s->out.domain, "%s", d);
		if (sel != NULL)
			snprintf(s->out.selector, sizeof s->out.selector, "%s", sel);
		int err = dkim_sig_geterror(si);
		dkim_alg_t alg;
		if (err != DKIM_SIGERROR_UNKNOWN && err != DKIM_SIGERROR_OK)
			dkim__early_error(s, err);
		else if (dkim_sig_getsignalg(si, &alg) == DKIM_STAT_OK && alg == DKIM_SIGN_RSASHA1)
			dkim__decide(s, DKIM_VERIFY_POLICY, DKIM_VERIFY_ALGORITHM,
				     "rsa-sha1 (RFC 8301)");
	}
	free(h.accepted);
}

/* ---- keys ------------------------------------------------------------------------------ */

/* "<selector>._domainkey.<domain>", lowercase, into name[DKIM__NAME_MAX];
 * -1 when it does not fit. */
static int dkim__key_name(const char *selector, const char *domain, char *name)
{
	if (selector == NULL || domain == NULL)
		return -1;
	int n = snprintf(name, DKIM__NAME_MAX, "%s._domainkey.%s", selector, domain);
	if (n < 0 || (size_t)n >= DKIM__NAME_MAX)
		return -1;
	for (char *p = name; *p != '\0'; p++) {
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p + 32);
	}
	return 0;
}

void dkim__run_plan(struct dkim__run *r)
{
	if (r->n_slots == 0)
		return;
	r->lookups = xcalloc(r->n_slots, sizeof *r->lookups);
	for (size_t k = 0; k < r->n_slots; k++) {
		struct dkim__slot *s = &r->slots[k];
		char name[DKIM__NAME_MAX];
		if (s->decided || s->si == NULL)
			continue;
		if (dkim__key_name((const char *)dkim_sig_getselector(s->si),
				   (const char *)dkim_sig_getdomain(s->si), name) < 0) {
			dkim__decide(s, DKIM_VERIFY_PERMERROR, DKIM_VERIFY_SYNTAX,
				     "d= and s= make no DNS name");
			continue;
		}
		size_t i = 0;
		while (i < r->n_lookups && strcmp(r->lookups[i].name, name) != 0)
			i++;
		if (i == r->n_lookups) {
			memcpy(r->lookups[i].name, name, strlen(name) + 1);
			r->lookups[i].status = DNS_TEMP;
			r->n_lookups++;
		}
		s->lookup = (int)i;
	}
}

void dkim__lookup_answer(struct dkim__lookup *lk, enum dns_status status,
			 const struct dns_txt_result *result)
{
	lk->status = status;
	free(lk->record);
	lk->record = NULL;
	lk->record_len = 0;
	if (status != DNS_OK || result == NULL || result->count == 0)
		return;
	const struct dns_txt *pick = &result->records[0];
	for (size_t i = 0; i < result->count; i++) {
		if (result->records[i].len >= 7 &&
		    memcmp(result->records[i].data, "v=DKIM1", 7) == 0) {
			pick = &result->records[i];
			break;
		}
	}
	if (pick->len > DKIM_VERIFY_KEY_RECORD_MAX || memchr(pick->data, '\0', pick->len) != NULL)
		return;
	lk->record = xstrndup(pick->data, pick->len);
	lk->record_len = pick->len;
}

void dkim__run_keys(struct dkim__run *r)
{
	for (size_t k = 0; k < r->n_slots; k++) {
		struct dkim__slot *s = &r->slots[k];
		if (s->decided || s->lookup < 0)
			continue;
		const struct dkim__lookup *lk = &r->lookups[s->lookup];
		switch (lk->status) {
		case DNS_OK:
			if (lk->record == NULL)
				dkim__decide(s, DKIM_VERIFY_PERMERROR, DKIM_VERIFY_BAD_KEY,
					     "key record too long or holding a NUL");
			break;
		case DNS_NXDOMAIN:
		case DNS_NODATA:
			dkim__decide(s, DKIM_VERIFY_PERMERROR, DKIM_VERIFY_NO_KEY,
				     "no key record");
			break;
		case DNS_BADNAME:
			dkim__decide(s, DKIM_VERIFY_PERMERROR, DKIM_VERIFY_SYNTAX,
				     "d= and s= make no DNS name");
			break;
		default:
			dkim__decide(s, DKIM_VERIFY_TEMPERROR, DKIM_VERIFY_DNS,
				     dns_status_name(lk->status));
			break;
		}
	}
}

int dkim__run_needs_body(const struct dkim__run *r)
{
	for (size_t k = 0; k < r->n_slots; k++) {
		if (!r->slots[k].decided)
			return 1;
	}
	return 0;
}

/* libopendkim asks for the key of si: from the lookups, never DNS. */
static DKIM_CBSTAT dkim__key_cb(DKIM *d, DKIM_SIGINFO *si, u_char *buf, size_t len)
{
	const struct dkim__run *r = dkim_get_user_context(d);
	char name[DKIM__NAME_MAX];
	if (r == NULL || dkim__key_name((const char *)dkim_sig_getselector(si),
					(const char *)dkim_sig_getdomain(si), name) < 0)
		return DKIM_CBSTAT_NOTFOUND;
	for (size_t i = 0; i < r->n_lookups; i++) {
		const struct dkim__lookup *lk = &r->lookups[i];
		if (strcmp(lk->name, name) != 0 || lk->record == NULL || lk->record_len >= len)
			continue;
		memcpy(buf, lk->record, lk->record_len + 1);
		return DKIM_CBSTAT_CONTINUE;
	}
	return DKIM_CBSTAT_NOTFOUND;
}

/* ---- body and the verdicts ----------------------------------------------------------------- */

/* Feed r->msg[body_off..len), every bare LF as CRLF, a CRLF after a last
 * line without one (as lib/dkim's signer signs). */
static void dkim__body(struct dkim__run *r)
{
	const uint8_t *m = r->msg;
	size_t start = r->body_off, len = r->len;
	uint8_t *chunk = xmalloc(DKIM__BODY_CHUNK + 2);
	size_t i = start;
	while (i < len) {
		if (!dkim__begin(r))
			break;
		size_t n = 0;
		for (; i < len && n + 2 <= DKIM__BODY_CHUNK; i++) {
			if (m[i] == '\n' && (i == start || m[i - 1] != '\r'))
				chunk[n++] = '\r';
			chunk[n++] = m[i];
		}
		if (i == len && m[len - 1] != '\n') {
			chunk[n++] = '\r';
			chunk[n++] = '\n';
		}
		dkim__end(r);
		if (dkim_body(r->d, chunk, n) != DKIM_STAT_OK)
			break; /* the verdicts below say what is left */
	}
	free(chunk);
}

/* The verdict on a signature libopendkim processed. */
static void dkim__verdict(struct dkim__run *r, struct dkim__slot *s)
{
	DKIM_SIGINFO *si = s->si;
	unsigned flags = dkim_sig_getflags(si);
	int err = dkim_sig_geterror(si);
	int bh = dkim_sig_getbh(si);
	unsigned bits = 0;
	if (dkim_sig_getkeysize(si, &bits) == DKIM_STAT_OK)
		s->out.key_bits = bits;
	ssize_t msglen = 0, canonlen = 0, signlen = -1;
	if (dkim_sig_getcanonlen(r->d, si, &msglen, &canonlen, &signlen) == DKIM_STAT_OK) {
		s->out.length = signlen;
		s->out.unsigned_bytes =
			signlen >= 0 && msglen > canonlen ? (uint64_t)(msglen - canonlen) : 0;
	}
	const char *detail = err != DKIM_SIGERROR_OK && err != DKIM_SIGERROR_UNKNOWN
				     ? dkim_sig_geterrorstr(err)
				     : NULL;
	if ((flags & DKIM_SIGFLAG_PASSED) != 0 && bh == DKIM_SIGBH_MATCH) {
		if ((flags & DKIM_SIGFLAG_TESTKEY) != 0)
			dkim__decide(s, DKIM_VERIFY_POLICY, DKIM_VERIFY_TESTING, "t=y");
		else if (s->out.unsigned_bytes > 0 && r->set->partial_body_policy)
			dkim__decide(s, DKIM_VERIFY_POLICY, DKIM_VERIFY_PARTIAL_BODY, "l=");
		else
			dkim__decide(s, DKIM_VERIFY_PASS, DKIM_VERIFY_OK, NULL);
		return;
	}
	if ((flags & DKIM_SIGFLAG_PASSED) != 0 && bh == DKIM_SIGBH_MISMATCH) {
		dkim__decide(s, DKIM_VERIFY_FAIL, DKIM_VERIFY_BODY_HASH, "body hash mismatch");
		return;
	}
	switch (err) {
	case DKIM_SIGERROR_BADSIG:
		dkim__decide(s, DKIM_VERIFY_FAIL, DKIM_VERIFY_SIGNATURE, detail);
		break;
	case DKIM_SIGERROR_TOOLARGE_L:
		dkim__decide(s, DKIM_VERIFY_FAIL, DKIM_VERIFY_BODY_LENGTH, detail);
		break;
	case DKIM_SIGERROR_EXPIRED:
	case DKIM_SIGERROR_FUTURE:
		dkim__early_error(s, err);
		break;
	case DKIM_SIGERROR_NOKEY:
		dkim__decide(s, DKIM_VERIFY_PERMERROR, DKIM_VERIFY_NO_KEY, detail);
		break;
	case DKIM_SIGERROR_KEYFAIL:
		dkim__decide(s, DKIM_VERIFY_TEMPERROR, DKIM_VERIFY_DNS, detail);
		break;
	case DKIM_SIGERROR_KEYREVOKED:
		dkim__decide(s, DKIM_VERIFY_PERMERROR, DKIM_VERIFY_KEY_REVOKED, detail);
		break;
	case DKIM_SIGERROR_KEYTOOSMALL:
		dkim__decide(s, DKIM_VERIFY_POLICY, DKIM_VERIFY_KEY_TOO_SMALL, detail);
		break;
	case DKIM_SIGERROR_DNSSYNTAX:
	case DKIM_SIGERROR_MULTIREPLY:
	case DKIM_SIGERROR_KEYVERSION:
	case DKIM_SIGERROR_KEYUNKNOWNHASH:
	case DKIM_SIGERROR_KEYHASHMISMATCH:
	case DKIM_SIGERROR_NOTEMAILKEY:
	case DKIM_SIGERROR_KEYTYPEMISSING:
	case DKIM_SIGERROR_KEYTYPEUNKNOWN:
	case DKIM_SIGERROR_KEYDECODE:
		dkim__decide(s, DKIM_VERIFY_PERMERROR, DKIM_VERIFY_BAD_KEY, detail);
		break;
	case DKIM_SIGERROR_OK:
	case DKIM_SIGERROR_UNKNOWN:
		if ((flags & DKIM_SIGFLAG_PROCESSED) != 0)
			dkim__decide(s, DKIM_VERIFY_FAIL, DKIM_VERIFY_SIGNATURE, "not verified");
		else
			dkim__decide(s, DKIM_VERIFY_PERMERROR, DKIM_VERIFY_MESSAGE,
				     "libopendkim did not process it");
		break;
	default:
		dkim__decide(s, DKIM_VERIFY_PERMERROR, DKIM_VERIFY_SYNTAX, detail);
		break;
	}
}

void dkim__run_body(struct dkim__run *r)
{
	if (r->body_off < r->len)
		dkim__body(r);
	if (r->stopped)
		return;
	DKIM_STAT st = dkim_eom(r->d, NULL);
	(void)st; /* one status for the message: each signature has its own */
	for (size_t k = 0; k < r->n_slots; k++) {
		struct dkim__slot *s = &r->slots[k];
		if (s->decided)
			continue;
		unsigned flags = dkim_sig_getflags(s->si);
		if ((flags & (DKIM_SIGFLAG_PROCESSED | DKIM_SIGFLAG_IGNORE)) == 0)
			(void)dkim_sig_process(r->d, s->si); /* eom stops at the first pass */
		dkim__verdict(r, s);
	}
}
