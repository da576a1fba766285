/* fuzz-greylist-key.c: libFuzzer target for the naming of triplets and
 * domains (greylist-key.c), whose inputs are what SMTP clients send: the
 * input is "ip NUL sender NUL rcpt" (missing parts are ""). Checks what
 * the rest of greylist.c relies on: a normalised sender is never longer
 * than the input, is idempotent, and is lowercase; a named triplet's name
 * is 64 lowercase hex digits, the same for the input in upper case. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "greylist-private.h"

#define FUZZ_PART_MAX 1024

/* The next NUL-terminated part of data into out (truncated), advancing. */
static void fuzz_part(const uint8_t **data, size_t *size, char out[FUZZ_PART_MAX + 1])
{
	const uint8_t *end = memchr(*data, '\0', *size);
	size_t n = end != NULL ? (size_t)(end - *data) : *size;
	size_t copy = n > FUZZ_PART_MAX ? FUZZ_PART_MAX : n;
	memcpy(out, *data, copy);
	out[copy] = '\0';
	size_t used = end != NULL ? n + 1 : n;
	*data += used;
	*size -= used;
}

static void fuzz_upper(const char *s, char *out)
{
	size_t i = 0;
	for (; s[i] != '\0'; i++)
		out[i] = s[i] >= 'a' && s[i] <= 'z' ? (char)(s[i] - 'a' + 'A') : s[i];
	out[i] = '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char ip[FUZZ_PART_MAX + 1], sender[FUZZ_PART_MAX + 1], rcpt[FUZZ_PART_MAX + 1];
	fuzz_part(&data, &size, ip);
	fuzz_part(&data, &size, sender);
	fuzz_part(&data, &size, rcpt);

	char norm[GREYLIST_ADDRESS_MAX + 1], again[GREYLIST_ADDRESS_MAX + 1];
	if (greylist__sender_normalize(sender, norm) == 0) {
		if (strlen(norm) > strlen(sender))
			abort();
		for (const char *p = norm; *p != '\0'; p++) {
			if (*p >= 'A' && *p <= 'Z')
				abort();
		}
		/* the rules applied twice change nothing more, except that a
		 * second "prvs=" or "+" may now lead: only check the length */
		if (greylist__sender_normalize(norm, again) != 0 || strlen(again) > strlen(norm))
			abort();
	}

	char net[GREYLIST__NET_MAX];
	(void)greylist__net(ip, net);

	uint8_t digest[GREYLIST__DIGEST_LEN], digest2[GREYLIST__DIGEST_LEN];
	char hex[GREYLIST_TRIPLET_HEX_LEN + 1], hex2[GREYLIST_TRIPLET_HEX_LEN + 1];
	if (greylist__triplet(ip, sender, rcpt, digest, hex) == 0) {
		if (strlen(hex) != GREYLIST_TRIPLET_HEX_LEN ||
		    strspn(hex, "0123456789abcdef") != GREYLIST_TRIPLET_HEX_LEN)
			abort();
		char up_sender[FUZZ_PART_MAX + 1], up_rcpt[FUZZ_PART_MAX + 1];
		fuzz_upper(sender, up_sender);
		fuzz_upper(rcpt, up_rcpt);
		if (greylist__triplet(ip, up_sender, up_rcpt, digest2, hex2) != 0 ||
		    memcmp(digest, digest2, sizeof digest) != 0)
			abort();
	}

	char domain[GREYLIST__DOMAIN_MAX + 1];
	(void)greylist__domain(rcpt, domain, digest);
	return 0;
}
