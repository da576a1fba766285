/* spf-eval.c: one evaluation with libspf2 (in a pool thread), the result
 * classes of RFC 7208 from what libspf2 says, and the texts of a result
 * (comment, Received-SPF, Authentication-Results).
 *
 * libspf2 objects are made per check: an SPF_server_t holds its DNS layer
 * (our per-check limits layer), so it cannot be shared between threads;
 * libspf2 keeps no other mutable global state (its only globals are the
 * log handlers), so checks on different threads do not meet. Making them
 * costs a few microseconds (docs/inbound.md, "cost").
 */
#include "spf-private.h"

#include "buf.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* libspf2's default explanation names a dead web site and is expanded on
 * every fail; ours has no macro, so it costs nothing and asks no DNS. */
#define SPF__EXPLANATION "not permitted by SPF"

int spf__domain_usable(const char *s, size_t len)
{
	if (len > 0 && s[len - 1] == '.')
		len--;
	if (len == 0 || len > 253)
		return 0;
	size_t label = 0, labels = 1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
			labels++;
			continue;
		}
		if (c <= ' ' || c >= 0x7f || strchr("[]()<>@,;:\\\"", c) != NULL)
			return 0;
		if (++label > 63)
			return 0;
	}
	return label > 0 && labels >= 2;
}

/* Printable ASCII of s into out (size > 0), other bytes as '?', cut. */
static void spf__printable(char *out, size_t size, const char *s)
{
	size_t o = 0;
	for (; *s != '\0' && o + 1 < size; s++)
		out[o++] = (*s >= ' ' && *s < 0x7f) ? *s : '?';
	out[o] = '\0';
}

/* The first error libspf2 recorded other than "no SPF record", or NULL. */
static const char *spf__first_error(SPF_response_t *resp)
{
	for (int i = 0; i < SPF_response_messages(resp); i++) {
		SPF_error_t *e = SPF_response_message(resp, i);
		if (SPF_error_errorp(e) && SPF_error_code(e) != SPF_E_NOT_SPF)
			return SPF_error_message(e);
	}
	return NULL;
}

/* What libspf2 concluded, as RFC 7208 names it. SPF_server_get_record()
 * fails without setting a result in three cases: a temporary DNS failure
 * (SPF_E_DNS_ERROR), a record that does not compile (its syntax error
 * among the messages, then "Failed to compile"), and TXT records none of
 * which is SPF (no other error): temperror, permerror, none. */
static void spf__classify(SPF_response_t *resp, SPF_errcode_t err, struct spf__eval *ev,
			  struct spf__outcome *out)
{
	const char *why = NULL;
	char buf[SPF__PROBLEM_MAX + 1];
	switch (SPF_response_result(resp)) {
	case SPF_RESULT_PASS:
		out->status = SPF_PASS;
		return;
	case SPF_RESULT_FAIL:
		out->status = SPF_FAIL;
		return;
	case SPF_RESULT_SOFTFAIL:
		out->status = SPF_SOFTFAIL;
		return;
	case SPF_RESULT_NEUTRAL:
		out->status = SPF_NEUTRAL;
		return;
	case SPF_RESULT_NONE:
		out->status = SPF_NONE;
		return;
	case SPF_RESULT_TEMPERROR:
		out->status = SPF_TEMPERROR;
		break;
	case SPF_RESULT_PERMERROR:
		out->status = SPF_PERMERROR;
		why = spf__first_error(resp);
		break;
	default: /* SPF_RESULT_INVALID: get_record failed */
		if (err == SPF_E_DNS_ERROR) {
			out->status = SPF_TEMPERROR;
		} else if ((why = spf__first_error(resp)) != NULL) {
			out->status = SPF_PERMERROR;
		} else {
			out->status = SPF_NONE;
			return;
		}
		break;
	}
	if (out->status == SPF_TEMPERROR && ev->temp_name[0] != '\0') {
		snprintf(buf, sizeof buf, "DNS lookup of %.170s failed", ev->temp_name);
		why = buf;
	}
	if (why == NULL)
		why = SPF_strerror(SPF_response_errcode(resp) != SPF_E_SUCCESS
					   ? SPF_response_errcode(resp)
					   : err);
	spf__printable(out->problem, sizeof out->problem, why);
}

void spf__evaluate(struct spf__eval *ev, const char *receiver, const struct spf__input *in,
		   struct spf__outcome *out)
{
	memset(out, 0, sizeof *out);
	SPF_server_t *server = SPF_server_new_dns(&ev->top, 0);
	SPF_response_t *scratch = NULL;
	SPF_request_t *req = server != NULL ? SPF_request_new(server) : NULL;
	if (req == NULL)
		abort(); /* out of memory: as xmalloc */
	if (SPF_server_set_rec_dom(server, receiver) != SPF_E_SUCCESS ||
	    SPF_server_set_explanation(server, SPF__EXPLANATION, &scratch) != SPF_E_SUCCESS)
		abort();
	SPF_response_free(scratch);
	/* libspf2's own check (per include level, after the 11th); ours in
	 * the limits layer counts across the whole evaluation */
	SPF_server_set_max_dns_mech(server, (int)ev->lim.terms_max);

	if (in->family == AF_INET)
		SPF_request_set_ipv4(req, in->ip4);
	else
		SPF_request_set_ipv6(req, in->ip6);
	/* %{h} without a HELO: libspf2 would fail the expansion */
	SPF_request_set_helo_dom(req, in->helo[0] != '\0' ? in->helo : "unknown");
	SPF_request_set_env_from(req, in->sender);
	/* what SPF_request_query_mailfrom() does, without its free pass for
	 * loopback clients: cur_dom is the domain the identity names */
	req->use_helo = in->identity == SPF_IDENTITY_HELO;
	req->cur_dom = in->domain;

	SPF_response_t *resp = SPF_response_new(req);
	SPF_record_t *record = NULL;
	if (resp == NULL)
		abort();
	SPF_errcode_t err = SPF_server_get_record(server, req, resp, &record);
	if (err == SPF_E_SUCCESS) {
		resp->spf_record_exp = record;
		err = SPF_record_interpret(record, req, resp, 0);
	}
	if (record != NULL)
		SPF_record_free(record);

	switch (ev->stop) {
	case SPF__STOP_TERMS:
		out->status = SPF_PERMERROR;
		snprintf(out->problem, sizeof out->problem,
			 "more than %u DNS-querying terms (RFC 7208 4.6.4)", ev->lim.terms_max);
		break;
	case SPF__STOP_VOIDS:
		out->status = SPF_PERMERROR;
		snprintf(out->problem, sizeof out->problem,
			 "more than %u void DNS lookups (RFC 7208 4.6.4)", ev->lim.voids_max);
		break;
	case SPF__STOP_DEADLINE:
	case SPF__STOP_ABANDON:
		out->status = SPF_TEMPERROR;
		snprintf(out->problem, sizeof out->problem, "timed out");
		break;
	case SPF__STOP_NONE:
		spf__classify(resp, err, ev, out);
		break;
	}
	/* the term over the limit was refused, not evaluated; the void
	 * lookup over it was made */
	out->terms = ev->terms < ev->lim.terms_max ? ev->terms : ev->lim.terms_max;
	out->voids = ev->voids;
	SPF_response_free(resp);
	SPF_request_free(req);
	/* the server does not free a layer it was given (libspf2 1.2.10's
	 * destroy_resolver is 0 for SPF_server_new_dns), and ours has no
	 * destroy anyway */
	SPF_server_free(server);
}

/* ---- texts ---- */

static const char *const spf__status_names[] = {
	[SPF_NONE] = "none",           [SPF_NEUTRAL] = "neutral",
	[SPF_PASS] = "pass",           [SPF_FAIL] = "fail",
	[SPF_SOFTFAIL] = "softfail",   [SPF_TEMPERROR] = "temperror",
	[SPF_PERMERROR] = "permerror",
};

const char *spf_status_name(enum spf_status status)
{
	if ((size_t)status >= sizeof spf__status_names / sizeof spf__status_names[0])
		return "unknown";
	return spf__status_names[status];
}

const char *spf_identity_name(enum spf_identity identity)
{
	return identity == SPF_IDENTITY_HELO ? "helo" : "mailfrom";
}

/* RFC 5322 atext */
static int spf__atext(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* RFC 5322 dot-atom-text: atext runs separated by single dots. */
static int spf__dot_atom(const char *s, size_t len)
{
	if (len == 0 || s[0] == '.' || s[len - 1] == '.')
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '.' ? s[i + 1] == '.' : !spf__atext((unsigned char)s[i]))
			return 0;
	}
	return 1;
}

/* s as a dot-atom when it is one, else as a quoted-string: '"' and '\\'
 * escaped, bytes that are not printable ASCII as '?' (a header field is
 * ASCII; nothing the client sent can break the line). */
static void spf__value(buf *b, const char *s)
{
	size_t len = strlen(s);
	if (spf__dot_atom(s, len)) {
		buf_append(b, s, len);
		return;
	}
	buf_append(b, "\"", 1);
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c == '"' || c == '\\')
			buf_append(b, "\\", 1);
		if (c < ' ' || c >= 0x7f)
			c = '?';
		buf_append(b, &c, 1);
	}
	buf_append(b, "\"", 1);
}

/* s for the inside of a comment (RFC 5322 ctext): '(' ')' '\\' escaped,
 * others not printable as '?'. */
static void spf__ctext(buf *b, const char *s)
{
	for (; *s != '\0'; s++) {
		char c = *s;
		if (c == '(' || c == ')' || c == '\\')
			buf_append(b, "\\", 1);
		if (c < ' ' || c >= 0x7f)
			c = '?';
		buf_append(b, &c, 1);
	}
}

/* The comment, printable ASCII, in the words of RFC 7208 9.1's example. */
static void spf__comment(buf *b, const struct spf__input *in, const struct spf__outcome *out,
			 const char *receiver)
{
	char sender[SPF__MAIL_FROM_MAX + 16], ip[INET6_ADDRSTRLEN + 8];
	spf__printable(sender, sizeof sender, in->sender[0] != '\0' ? in->sender : "(none)");
	spf__printable(ip, sizeof ip, in->ip[0] != '\0' ? in->ip : "(no address)");
	buf_printf(b, "%s: ", receiver);
	switch (out->status) {
	case SPF_PASS:
		buf_printf(b, "domain of %s designates %s as permitted sender", sender, ip);
		break;
	case SPF_FAIL:
		buf_printf(b, "domain of %s does not designate %s as permitted sender", sender, ip);
		break;
	case SPF_SOFTFAIL:
		buf_printf(b,
			   "domain of transitioning %s does not designate %s as permitted sender",
			   sender, ip);
		break;
	case SPF_NEUTRAL:
		buf_printf(b, "%s is neither permitted nor denied by domain of %s", ip, sender);
		break;
	case SPF_NONE:
		if (in->domain[0] == '\0')
			buf_printf(b, "%s has no domain SPF can check", sender);
		else
			buf_printf(b, "domain of %s does not provide an SPF record", sender);
		break;
	case SPF_TEMPERROR:
		buf_printf(b, "temporary error in processing domain of %s: %s", sender,
			   out->problem);
		break;
	case SPF_PERMERROR:
		buf_printf(b, "permanent error in processing domain of %s: %s", sender,
			   out->problem);
		break;
	}
}

/* Appends words to a header field, folding (CRLF TAB) before a word that
 * would take the line past 78 columns. */
struct spf__fold {
	buf *b;
	size_t line_start;
};

static void spf__fold_word(struct spf__fold *f, const char *w, size_t len)
{
	size_t col = f->b->len - f->line_start;
	if (col > 0 && col + 1 + len > 78) {
		buf_append(f->b, "\r\n\t", 3);
		f->line_start = f->b->len - 1;
	} else if (col > 0) {
		buf_append(f->b, " ", 1);
	}
	buf_append(f->b, w, len);
}

/* The words of text (split at spaces) */
static void spf__fold_words(struct spf__fold *f, const char *text)
{
	while (*text != '\0') {
		const char *sp = strchr(text, ' ');
		size_t len = sp != NULL ? (size_t)(sp - text) : strlen(text);
		if (len > 0)
			spf__fold_word(f, text, len);
		text += len;
		while (*text == ' ')
			text++;
	}
}

static void spf__fold_pair(struct spf__fold *f, const char *key, const char *value, int last)
{
	buf w;
	buf_init(&w);
	buf_printf(&w, "%s=", key);
	spf__value(&w, value);
	if (!last)
		buf_append(&w, ";", 1);
	spf__fold_word(f, (const char *)w.data, w.len);
	buf_deinit(&w);
}

/* The local part of a mailbox is a dot-atom and its domain usable: then
 * the mailbox goes into Authentication-Results as it is. */
static int spf__mailbox_plain(const char *s)
{
	const char *at = strrchr(s, '@');
	return at != NULL && spf__dot_atom(s, (size_t)(at - s)) &&
	       spf__domain_usable(at + 1, strlen(at + 1));
}

void spf__texts_build(const struct spf__input *in, const struct spf__outcome *out,
		      const char *receiver, struct spf__texts *t)
{
	buf b;
	buf_init(&b);
	spf__comment(&b, in, out, receiver);
	buf_append(&b, "", 1);
	t->comment = xstrdup((const char *)b.data);

	/* Received-SPF: result (comment) key=value; ... (RFC 7208 9.1) */
	buf_reset(&b);
	struct spf__fold f = { &b, 0 };
	spf__fold_word(&f, "Received-SPF:", 13);
	spf__fold_word(&f, spf_status_name(out->status), strlen(spf_status_name(out->status)));
	buf c;
	buf_init(&c);
	buf_append(&c, "(", 1);
	spf__ctext(&c, t->comment);
	buf_append(&c, ")", 2); /* and the NUL */
	spf__fold_words(&f, (const char *)c.data);
	buf_deinit(&c);
	if (in->ip[0] != '\0')
		spf__fold_pair(&f, "client-ip", in->ip, 0);
	if (in->mail_from[0] != '\0')
		spf__fold_pair(&f, "envelope-from", in->mail_from, 0);
	if (in->helo[0] != '\0')
		spf__fold_pair(&f, "helo", in->helo, 0);
	if (out->problem[0] != '\0')
		spf__fold_pair(&f, "problem", out->problem, 0);
	spf__fold_pair(&f, "receiver", receiver, 0);
	spf__fold_pair(&f, "identity", spf_identity_name(in->identity), 1);
	buf_append(&b, "\r\n", 3);
	t->received_spf = xstrdup((const char *)b.data);

	/* spf=RESULT smtp.mailfrom=... / smtp.helo=... (RFC 8601 2.7.2) */
	buf_reset(&b);
	buf_printf(&b, "spf=%s", spf_status_name(out->status));
	if (in->identity == SPF_IDENTITY_HELO) {
		if (in->domain[0] != '\0')
			buf_printf(&b, " smtp.helo=%s", in->domain);
	} else if (spf__mailbox_plain(in->sender) && strncmp(in->sender, "postmaster@", 11) != 0) {
		buf_printf(&b, " smtp.mailfrom=%s", in->sender);
	} else if (in->domain[0] != '\0') {
		buf_printf(&b, " smtp.mailfrom=%s", in->domain);
	}
	buf_append(&b, "", 1);
	t->auth_results = xstrdup((const char *)b.data);
	buf_deinit(&b);
}

void spf__texts_free(struct spf__texts *t)
{
	free(t->comment);
	free(t->received_spf);
	free(t->auth_results);
	memset(t, 0, sizeof *t);
}
