/* libFuzzer target: lib/dkim's signer on arbitrary messages.
 *
 * Input: the message. It is signed with an Ed25519 key (made once) under
 * tight limits (64 KiB, 32 header fields), then again after every bare LF
 * was turned into CRLF.
 *
 * Checked: both calls give the same status and, when signed, the same
 * fields (the time is fixed, Ed25519 is deterministic, and the signer
 * signs the CRLF form either way); the fields are one "DKIM-Signature: "
 * field ending in CRLF, every line end a CRLF; a refusal comes with an
 * error text and no fields.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dkim-keys.h"
#include "dkim-sign.h"
#include "mail-error.h"
#include "xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                               \
	do {                                                                                   \
		if (!(x))                                                                      \
			__builtin_trap();                                                      \
	} while (0)

/* made on the first input and kept for the process (a harness, not the
 * library: the library keeps no state) */
static dkim_signer *fuzz_signer;
static struct dkim_key fuzz_key;

static void fuzz_init(void)
{
	struct dkim_sign_settings set = dkim_sign_settings_default();
	set.max_message_bytes = 64 * 1024;
	set.max_header_fields = 32;
	set.fixed_time = 1764700000;
	const char *error;
	char *pub;
	CHECK(dkim_signer_create(&set, &fuzz_signer, &error) == MAIL_OK);
	CHECK(dkim_key_generate(DKIM_ALG_ED25519_SHA256, 0, &fuzz_key.pem, &fuzz_key.pem_len, &pub,
				&error) == MAIL_OK);
	free(pub);
	strcpy(fuzz_key.domain, "example.test");
	strcpy(fuzz_key.selector, "fuzz");
	fuzz_key.alg = DKIM_ALG_ED25519_SHA256;
}

static int fuzz_sign(const uint8_t *m, size_t len, char **fields_r, size_t *flen_r)
{
	const char *error = NULL;
	int err = dkim_signer_sign(fuzz_signer, m, len, &fuzz_key, 1, "F", fields_r, flen_r,
				   &error);
	if (err != MAIL_OK) {
		CHECK(*fields_r == NULL && *flen_r == 0 && error != NULL);
		return err;
	}
	const char *f = *fields_r;
	CHECK(*flen_r == strlen(f) && *flen_r > 18);
	CHECK(memcmp(f, "DKIM-Signature: v=1;", 20) == 0);
	CHECK(memcmp(f + *flen_r - 2, "\r\n", 2) == 0);
	CHECK(strstr(f + 1, "DKIM-Signature:") == NULL);
	for (size_t i = 0; i < *flen_r; i++)
		CHECK(f[i] != '\n' || (i > 0 && f[i - 1] == '\r'));
	return err;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (fuzz_signer == NULL)
		fuzz_init();
	char *a = NULL, *b = NULL;
	size_t al = 0, bl = 0;
	int ea = fuzz_sign(data, size, &a, &al);

	uint8_t *crlf = xmalloc(2 * size + 1);
	size_t n = 0;
	for (size_t i = 0; i < size; i++) {
		if (data[i] == '\n' && (i == 0 || data[i - 1] != '\r'))
			crlf[n++] = '\r';
		crlf[n++] = data[i];
	}
	/* the size limit counts the bytes as given */
	if (n <= 64 * 1024) {
		int eb = fuzz_sign(crlf, n, &b, &bl);
		CHECK(ea == eb || ea == MAIL_ERR_TOO_BIG);
		if (ea == MAIL_OK)
			CHECK(al == bl && memcmp(a, b, al) == 0);
	}
	free(crlf);
	free(a);
	free(b);
	return 0;
}
