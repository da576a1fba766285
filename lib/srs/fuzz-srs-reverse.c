/* libFuzzer target: srs_reverse() on arbitrary bytes, and srs_forward() of
 * arbitrary senders with reverse(forward(x)) == x.
 *
 * The first two input bytes pick the day (0..65535, so both sides of the
 * 1024-day wrap); the rest, up to a NUL, is the string. Checked:
 *
 *   reverse(s): a value srs.h names; out "" unless 1; on 1 a result
 *     within SRS_ADDRESS_MAX, with one '@' and only bytes forward would
 *     have accepted;
 *   forward(s): a value srs.h names; on 1 an SRS0 or SRS1 address within
 *     SRS_ADDRESS_MAX, and then
 *       - reverse gives 1, and it gives back s itself (SRS0), or the
 *         first hop's SRS0 address ("SRS0" and what followed the tag of
 *         s, at s's domain) when s was SRS0, or some SRS0 address when s
 *         was SRS1;
 *       - the same after the whole address was lowercased (MTAs do),
 *         against s lowercased (but SRS1 gives "SRS0" as its tag);
 *       - a buffer one byte short gives SRS_ERR_SPACE and "";
 *       - SRS0 read 22 days later is SRS_ERR_EXPIRED (hash first: it is
 *         still ours).
 * Two secrets (the second verifies only), so rotation is on every path.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "srs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                               \
	do {                                                                                   \
		if (!(x))                                                                      \
			__builtin_trap();                                                      \
	} while (0)

#define DAY 86400

static int known(int r)
{
	return r == 0 || r == 1 || r == SRS_ERR_MALFORMED || r == SRS_ERR_HASH ||
	       r == SRS_ERR_EXPIRED || r == SRS_ERR_TOO_LONG || r == SRS_ERR_SPACE;
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* The bytes an address that srs_reverse gives out may hold. */
static int address_ok(const char *s)
{
	const char *at = strchr(s, '@');
	if (at == NULL || at == s || at[1] == '\0' || strchr(at + 1, '@') != NULL)
		return 0;
	for (const char *p = s; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;
		if (c <= ' ' || c == 0x7f || strchr("\"\\()<>[],;:", c) != NULL)
			return 0;
	}
	return 1;
}

static void fuzz_reverse(const struct srs *srs, const char *s, int64_t now)
{
	char out[SRS_ADDRESS_MAX + 1];
	int r = srs_reverse(srs, s, now, out, sizeof out);
	CHECK(known(r));
	if (r != 1) {
		CHECK(out[0] == '\0');
		return;
	}
	CHECK(strlen(out) <= SRS_ADDRESS_MAX);
	CHECK(address_ok(out));
}

static void fuzz_forward(const struct srs *srs, const char *s, int64_t now)
{
	char fwd[SRS_ADDRESS_MAX + 1], back[SRS_ADDRESS_MAX + 1];
	int r = srs_forward(srs, s, "fwd.fuzz.test", now, fwd, sizeof fwd);
	CHECK(known(r) && r != SRS_ERR_HASH && r != SRS_ERR_EXPIRED);
	if (r != 1) {
		CHECK(fwd[0] == '\0');
		CHECK(r != 0 || s[0] == '\0' || strcmp(s, "<>") == 0);
		return;
	}
	size_t len = strlen(fwd);
	CHECK(len <= SRS_ADDRESS_MAX);
	CHECK(memcmp(fwd, "SRS0=", 5) == 0 || memcmp(fwd, "SRS1=", 5) == 0);
	int srs0 = fwd[3] == '0';

	CHECK(srs_reverse(srs, fwd, now, back, sizeof back) == 1);
	const char *at = strrchr(s, '@');
	CHECK(at != NULL);
	if (srs0) {
		CHECK(strcmp(back, s) == 0);
	} else if (s[3] == '0') {
		/* s was SRS0: back is it, with the tag as "SRS0" */
		CHECK(strncasecmp(back, s, 4) == 0 && strcmp(back + 4, s + 4) == 0);
	} else {
		CHECK(memcmp(back, "SRS0", 4) == 0 && address_ok(back));
	}

	/* lowercased on the way back */
	char low[SRS_ADDRESS_MAX + 1], low_back[SRS_ADDRESS_MAX + 1];
	for (size_t i = 0; i <= len; i++)
		low[i] = lower(fwd[i]);
	CHECK(srs_reverse(srs, low, now, low_back, sizeof low_back) == 1);
	CHECK(strlen(low_back) == strlen(back));
	/* (an SRS1's result starts with the tag "SRS0" as written here) */
	for (size_t i = 0; back[i] != '\0'; i++)
		CHECK(low_back[i] == lower(back[i]) ||
		      (!srs0 && i < 4 && lower(low_back[i]) == lower(back[i])));

	/* the caller's buffer, one byte short */
	size_t need = strlen(back) + 1;
	char *tight = malloc(need - 1);
	CHECK(tight != NULL);
	CHECK(srs_reverse(srs, fwd, now, tight, need - 1) == SRS_ERR_SPACE);
	CHECK(tight[0] == '\0');
	free(tight);

	if (srs0)
		CHECK(srs_reverse(srs, fwd, now + 22 * DAY, back, sizeof back) == SRS_ERR_EXPIRED);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	int64_t now = ((int64_t)data[0] << 8 | data[1]) * DAY + 12345;
	/* a string of at most 1 KiB: over SRS_ADDRESS_MAX is a case too */
	size_t n = size - 2 > 1024 ? 1024 : size - 2;
	char *s = malloc(n + 1);
	if (s == NULL)
		return 0;
	memcpy(s, data + 2, n);
	s[n] = '\0';
	/* made per input (no state between inputs; it costs two copies) */
	const char *const secrets[] = { "fuzz-new-secret", "fuzz-old-secret" };
	struct srs_settings set = { .secrets = secrets, .nsecrets = 2 };
	struct srs *srs = NULL;
	const char *error;
	CHECK(srs_create(&set, &srs, &error) == 0);
	fuzz_reverse(srs, s, now);
	fuzz_forward(srs, s, now);
	srs_destroy(&srs);
	free(s);
	return 0;
}
