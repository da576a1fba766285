/* fuzz-imap-names.c: libFuzzer target for what the engine parses in
 * mailbox names and patterns: modified UTF-7 decoding (imap-utf7.h),
 * UTF-8 checking, LIST pattern matching (imap-list-match.h) and the
 * date-time of APPEND (imap-date.h).
 *
 * The first byte picks the check:
 *   0: decode the rest as modified UTF-7; what decodes must be valid
 *      UTF-8 and encode back to exactly the input (the decoder accepts
 *      one spelling per name);
 *   1: take the rest as UTF-8; what is valid must round-trip through
 *      modified UTF-7;
 *   2: "pattern NUL name": the matcher must agree with a plain
 *      recursive one (short inputs);
 *   3: parse the rest as a date-time; a result must print back and parse
 *      to the same instant. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "buf.h"
#include "imap-date.h"
#include "imap-list-match.h"
#include "imap-utf7.h"

static void fuzz_utf7(const char *in, size_t len)
{
	buf u8, back;
	const char *error;
	buf_init(&u8);
	buf_init(&back);
	if (imap_utf7_to_utf8(in, len, &u8, &error) == 0) {
		if (!imap_utf8_valid((const char *)u8.data, u8.len))
			__builtin_trap();
		if (u8.len > 0 && memchr(u8.data, 0, u8.len) != NULL)
			__builtin_trap();
		if (imap_utf8_to_utf7((const char *)u8.data, u8.len, &back) != 0)
			__builtin_trap();
		if (back.len != len || (len > 0 && memcmp(back.data, in, len) != 0))
			__builtin_trap();
	} else if (u8.len != 0 || error == NULL) {
		__builtin_trap();
	}
	buf_deinit(&u8);
	buf_deinit(&back);
}

static void fuzz_utf8(const char *in, size_t len)
{
	buf u7, back;
	const char *error;
	buf_init(&u7);
	buf_init(&back);
	int valid = imap_utf8_valid(in, len) && memchr(in, 0, len) == NULL;
	if (imap_utf8_to_utf7(in, len, &u7) == 0) {
		if (!valid)
			__builtin_trap();
		for (size_t i = 0; i < u7.len; i++) {
			if (u7.data[i] < 0x20 || u7.data[i] > 0x7e)
				__builtin_trap();
		}
		if (imap_utf7_to_utf8((const char *)u7.data, u7.len, &back, &error) != 0)
			__builtin_trap();
		if (back.len != len || (len > 0 && memcmp(back.data, in, len) != 0))
			__builtin_trap();
	} else if (valid) {
		__builtin_trap();
	}
	buf_deinit(&u7);
	buf_deinit(&back);
}

/* The reference: plain backtracking (exponential, so inputs are short). */
static int ref_match(const char *p, const char *n, const char *name0)
{
	if (*p == '\0')
		return *n == '\0';
	if (*p == '*' || *p == '%') {
		for (const char *k = n;; k++) {
			if (ref_match(p + 1, k, name0))
				return 1;
			if (*k == '\0' || (*p == '%' && *k == '/'))
				return 0;
		}
	}
	if (*n == '\0')
		return 0;
	int icase = (size_t)(n - name0) < 5 && strncasecmp(name0, "INBOX", 5) == 0 &&
		    (name0[5] == '\0' || name0[5] == '/');
	char a = *p, b = *n;
	if (icase) {
		a = (char)(a >= 'a' && a <= 'z' ? a - 32 : a);
		b = (char)(b >= 'a' && b <= 'z' ? b - 32 : b);
	}
	return a == b && ref_match(p + 1, n + 1, name0);
}

static void fuzz_match(const char *in, size_t len)
{
	const char *nul = memchr(in, 0, len);
	if (nul == NULL || len > 48)
		return;
	char pattern[64], name[64];
	size_t plen = (size_t)(nul - in), nlen = len - plen - 1;
	if (memchr(nul + 1, 0, nlen) != NULL)
		return;
	memcpy(pattern, in, plen);
	pattern[plen] = '\0';
	memcpy(name, nul + 1, nlen);
	name[nlen] = '\0';
	/* the reference is exponential in wildcards: keep them few */
	unsigned wild = 0;
	for (size_t i = 0; i < plen; i++)
		wild += pattern[i] == '*' || pattern[i] == '%';
	if (wild > 6)
		return;
	if (imap_list_match(pattern, name) != ref_match(pattern, name, name))
		__builtin_trap();
}

static void fuzz_date(const char *in, size_t len)
{
	int64_t ms, again;
	if (imap_date_time_parse(in, len, &ms) < 0)
		return;
	if (ms % 1000 != 0)
		__builtin_trap();
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	if (gmtime_r(&t, &tm) == NULL)
		return;
	static const char *const mon[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	char out[64];
	int n = snprintf(out, sizeof(out), "%02d-%s-%04d %02d:%02d:%02d +0000", tm.tm_mday,
			 mon[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
	if (tm.tm_year + 1900 < 1000 || tm.tm_year + 1900 > 9999)
		return;
	if (imap_date_time_parse(out, (size_t)n, &again) < 0 || again != ms)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	const char *in = (const char *)data + 1;
	size_t len = size - 1;
	switch (data[0] % 4) {
	case 0:
		fuzz_utf7(in, len);
		break;
	case 1:
		fuzz_utf8(in, len);
		break;
	case 2:
		fuzz_match(in, len);
		break;
	case 3:
		fuzz_date(in, len);
		break;
	}
	return 0;
}
