/* libFuzzer target: lib/dmarc's evaluation (libopendmarc's record parser
 * under it) on arbitrary policy records, and the organizational domain of
 * arbitrary names.
 *
 * Input: byte 0 picks the SPF and DKIM results and whether the record was
 * found at the From domain or its organizational domain; the rest is the
 * record (also read as a domain name, up to its first ';').
 *
 * Checked: the outcome is one of the results, its reason is set, the
 * disposition is none unless the result is fail and never stricter than
 * the policy, pct is -1 (no record) or 0..100, sampled_out only under
 * pct < 100, alignment flags only on pass; dmarc_org_domain() either
 * refuses a name or gives a lowercase suffix of it at a label boundary.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dmarc.h"
#include "mail-error.h"
#include "xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                               \
	do {                                                                                   \
		if (!(x))                                                                      \
			__builtin_trap();                                                      \
	} while (0)

/* made on the first input and kept (a harness: the PSL load is slow) */
static dmarc_checker *fuzz_checker;

static void fuzz_org(const char *name)
{
	char org[DMARC_DOMAIN_MAX + 1];
	if (dmarc_org_domain(name, org) < 0)
		return;
	size_t n = strlen(name), o = strlen(org);
	if (n > 0 && name[n - 1] == '.')
		n--;
	CHECK(o > 0 && o <= n);
	CHECK(strncasecmp(name + n - o, org, o) == 0);
	CHECK(o == n || name[n - o - 1] == '.');
	for (size_t i = 0; i < o; i++)
		CHECK(!(org[i] >= 'A' && org[i] <= 'Z'));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (fuzz_checker == NULL) {
		struct dmarc_settings set = dmarc_settings_default();
		set.seed = 42;
		const char *error;
		/* no DNS: only dmarc_evaluate() is used */
		CHECK(dmarc_checker_create(NULL, NULL, &set, &fuzz_checker, &error) == MAIL_OK);
	}
	if (size == 0)
		return 0;
	uint8_t flags = data[0];
	const char *record = (const char *)data + 1;
	size_t len = size - 1;

	static const enum dmarc_auth auths[] = { DMARC_AUTH_NONE, DMARC_AUTH_PASS,
						 DMARC_AUTH_FAIL, DMARC_AUTH_TEMPERROR };
	struct dmarc_dkim dkim[2] = {
		{ "mail.example.co.uk", auths[(flags >> 2) & 3] },
		{ "other.example", auths[(flags >> 4) & 3] },
	};
	struct dmarc_request req = {
		.from_domain = "news.example.co.uk",
		.spf = auths[flags & 3],
		.spf_domain = (flags & 0x40) ? "bounce.example.co.uk" : "example.co.uk",
		.dkim = dkim,
		.n_dkim = 2,
	};
	struct dmarc_outcome o;
	dmarc_evaluate(fuzz_checker, &req, record, len,
		       (flags & 0x80) ? "example.co.uk" : "news.example.co.uk", &o);
	CHECK(o.result <= DMARC_RESULT_PERMERROR && o.reason != NULL);
	CHECK(o.disposition == DMARC_DISP_NONE || o.result == DMARC_RESULT_FAIL);
	CHECK(o.disposition <= o.policy);
	CHECK(o.pct >= -1 && o.pct <= 100);
	CHECK(!o.sampled_out || (o.pct < 100 && o.result == DMARC_RESULT_FAIL));
	CHECK(o.result == DMARC_RESULT_PASS || (!o.dkim_aligned && !o.spf_aligned));
	CHECK(strcmp(o.from_domain, "news.example.co.uk") == 0);
	CHECK(strcmp(o.org_domain, "example.co.uk") == 0);

	/* the record as a name */
	char *name = xstrndup(record, len);
	char *semi = strchr(name, ';');
	if (semi != NULL)
		*semi = '\0';
	fuzz_org(name);
	free(name);
	return 0;
}
