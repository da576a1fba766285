/* libFuzzer target: lib/dkim's verification steps (dkim-verify-private.h:
 * the header cut into fields, our tag reader, libopendkim's parsing and
 * verifying) on arbitrary messages, without threads or DNS.
 *
 * Input: the message. Key lookups are answered by name: fz._domainkey.
 * example.test has an Ed25519 key (the corpus is signed with it);
 * selectors starting with t fail temporarily, n have no data, r a revoked
 * key, g a garbage key; the rest do not exist.
 *
 * Checked: the run ends with a status of the taxonomy; with MAIL_OK every
 * checked signature (at most max_signatures) has a status and a reason
 * that go together, NUL-terminated strings, and pass only with reason OK;
 * and the message with every bare LF made CRLF gives the same results
 * (the verifier reads it that way).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dkim-verify-private.h"
#include "mail-error.h"
#include "xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                               \
	do {                                                                                   \
		if (!(x))                                                                      \
			__builtin_trap();                                                      \
	} while (0)

/* the public half of the key the corpus was signed with */
#define FUZZ_KEY "v=DKIM1; k=ed25519; p=YtW6kiTH0vqIsImPyTGjE7l9dRy8UofHX9locvS/UMU="

static struct dkim_verify_settings fuzz_set;
static DKIM_LIB *fuzz_lib;

static void fuzz_answer(struct dkim__lookup *lk)
{
	const char *rec = NULL;
	enum dns_status st = DNS_NXDOMAIN;
	if (strcmp(lk->name, "fz._domainkey.example.test") == 0) {
		rec = FUZZ_KEY;
	} else if (lk->name[0] == 't') {
		st = DNS_TEMP;
	} else if (lk->name[0] == 'n') {
		st = DNS_NODATA;
	} else if (lk->name[0] == 'r') {
		rec = "v=DKIM1; k=ed25519; p=";
	} else if (lk->name[0] == 'g') {
		rec = "v=DKIM1; k=rsa; h=sha256; p=QUJDRA==";
	}
	if (rec == NULL) {
		dkim__lookup_answer(lk, st, NULL);
		return;
	}
	struct dns_txt txt = { rec, strlen(rec) };
	struct dns_txt_result res = { &txt, 1 };
	dkim__lookup_answer(lk, DNS_OK, &res);
}

struct fuzz_out {
	int status;
	size_t n, unchecked;
	struct dkim_verify_sig sigs[DKIM_VERIFY_SIGS_MAX];
};

static void fuzz_run(const uint8_t *m, size_t len, struct fuzz_out *o)
{
	struct dkim__run r;
	dkim__run_init(&r, fuzz_lib, &fuzz_set, m, len, "F");
	dkim__run_header(&r);
	if (r.status == MAIL_OK) {
		dkim__run_plan(&r);
		for (size_t i = 0; i < r.n_lookups; i++)
			fuzz_answer(&r.lookups[i]);
		dkim__run_keys(&r);
		if (dkim__run_needs_body(&r))
			dkim__run_body(&r);
	}
	o->status = r.status;
	o->n = r.n_slots;
	o->unchecked = r.unchecked;
	CHECK(r.status == MAIL_OK || r.status == MAIL_ERR_TOO_BIG || r.status == MAIL_ERR_LIMIT ||
	      r.status == MAIL_ERR_PARAMS || r.status == MAIL_ERR_INTERNAL);
	CHECK(r.status != MAIL_OK || r.n_slots <= fuzz_set.max_signatures);
	for (size_t k = 0; r.status == MAIL_OK && k < r.n_slots; k++) {
		const struct dkim_verify_sig *s = &r.slots[k].out;
		CHECK(r.slots[k].decided);
		CHECK(s->status <= DKIM_VERIFY_POLICY && s->reason < DKIM_VERIFY_REASON_COUNT_);
		CHECK((s->status == DKIM_VERIFY_PASS) == (s->reason == DKIM_VERIFY_OK));
		CHECK(s->detail != NULL);
		CHECK(memchr(s->domain, '\0', sizeof s->domain) != NULL);
		CHECK(memchr(s->selector, '\0', sizeof s->selector) != NULL);
		CHECK(memchr(s->algorithm, '\0', sizeof s->algorithm) != NULL);
		CHECK(memchr(s->identity, '\0', sizeof s->identity) != NULL);
		CHECK(strlen(s->b) <= DKIM_VERIFY_B_PREFIX);
		o->sigs[k] = *s;
	}
	dkim__run_clear(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (fuzz_lib == NULL) {
		fuzz_set = dkim_verify_settings_default();
		fuzz_set.max_signatures = 4;
		fuzz_set.max_message_bytes = 1u << 20;
		fuzz_set.max_header_fields = 64;
		fuzz_lib = dkim__lib_new(&fuzz_set);
		CHECK(fuzz_lib != NULL);
	}
	struct fuzz_out *a = xcalloc(2, sizeof *a), *b = a + 1;
	fuzz_run(data, size, a);
	/* every bare LF as CRLF */
	uint8_t *crlf = xmalloc(2 * size + 1);
	size_t n = 0;
	for (size_t i = 0; i < size; i++) {
		if (data[i] == '\n' && (i == 0 || data[i - 1] != '\r'))
			crlf[n++] = '\r';
		crlf[n++] = data[i];
	}
	fuzz_run(crlf, n, b);
	CHECK(a->status == b->status && a->n == b->n && a->unchecked == b->unchecked);
	for (size_t k = 0; a->status == MAIL_OK && k < a->n; k++) {
		const struct dkim_verify_sig *x = &a->sigs[k], *y = &b->sigs[k];
		CHECK(x->status == y->status && x->reason == y->reason);
		CHECK(strcmp(x->domain, y->domain) == 0 && strcmp(x->selector, y->selector) == 0);
		CHECK(strcmp(x->b, y->b) == 0 && x->length == y->length);
		CHECK(x->unsigned_bytes == y->unsigned_bytes);
	}
	free(crlf);
	free(a);
	return 0;
}
