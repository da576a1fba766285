/* libFuzzer target: what lib/conncheck makes of names and answers,
 * DNS-free (conncheck-names.c).
 *
 * The first input byte picks the mode, the rest is its input:
 *
 *   0  a zone (the rest as a string) under an address made of the first
 *      16 bytes (IPv4, IPv4-mapped IPv6 or IPv6 by the mode byte's high
 *      bits), with an output buffer of a size the second byte picks.
 *      Checked: on 0 the name fits the buffer and 253 bytes, ends in the
 *      normalised zone, and its prefix reads back to the address (four
 *      decimal labels reversed, or 32 nibbles); on -1 out is "".
 *   1  a name: conncheck_name_normalize(), and the PTR rule (one label).
 *      Checked: on 0 only [a-z0-9_.-], at most 253 bytes, labels 1..63,
 *      normalising again gives the same name; on -1 out is "".
 *   2  TXT bytes: conncheck__txt_clean(). Checked: printable ASCII only,
 *      at most CONNCHECK_TXT_MAX and the buffer, each byte the input's or
 *      '?'.
 *   3  an A/AAAA answer: 5-byte records (family bit + 4 bytes, IPv6 made
 *      from them) into conncheck__bl_classify(). Checked: LISTED exactly
 *      when some A is in 127/8 but not 127.255.255/24, and then only
 *      such addresses are kept; IGNORED only with no listing address and
 *      some A; addrs within CONNCHECK_BL_ADDRS_MAX.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conncheck-private.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                               \
	do {                                                                                   \
		if (!(x))                                                                      \
			__builtin_trap();                                                      \
	} while (0)

/* data[0..size) as a C string (cut at a NUL), at most 600 bytes. */
static char *string_of(const uint8_t *data, size_t size)
{
	size_t n = size > 600 ? 600 : size;
	char *s = malloc(n + 1);
	CHECK(s != NULL);
	memcpy(s, data, n);
	s[n] = '\0';
	return s;
}

static int name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
}

static void check_name(const char *s)
{
	size_t len = strlen(s), label = 0;
	CHECK(len >= 1 && len <= CONNCHECK_NAME_MAX);
	for (size_t i = 0; i < len; i++) {
		CHECK(name_char(s[i]));
		if (s[i] == '.') {
			CHECK(label >= 1);
			label = 0;
		} else {
			CHECK(++label <= 63);
		}
	}
	CHECK(label >= 1);
}

static void fuzz_reverse(uint8_t mode, const uint8_t *data, size_t size)
{
	if (size < 17)
		return;
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	int family = (mode >> 6) % 3; /* 0: IPv4, 1: mapped, 2: IPv6 */
	uint8_t want[16];
	if (family == 0) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, data, 4);
		memcpy(want, data, 4);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		memcpy(&s6->sin6_addr, data, 16);
		if (family == 1) {
			memset(s6->sin6_addr.s6_addr, 0, 10);
			s6->sin6_addr.s6_addr[10] = s6->sin6_addr.s6_addr[11] = 0xff;
			memcpy(want, data + 12, 4);
			family = 0;
		} else if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			memcpy(want, data + 12, 4);
			family = 0;
		} else {
			memcpy(want, data, 16);
		}
	}
	size_t out_size = data[16];
	char *zone = string_of(data + 17, size - 17);
	char *out = malloc(out_size + 1); /* + 1: a size 0 buffer is a pointer too */
	CHECK(out != NULL);
	out[0] = 'x';
	int r = conncheck_reverse_name((const struct sockaddr *)&ss, zone, out, out_size);
	char z[CONNCHECK_NAME_MAX + 1];
	int zone_ok = conncheck_name_normalize(zone, z, sizeof z) == 0;
	if (r < 0) {
		CHECK(out_size == 0 || out[0] == '\0');
	} else {
		CHECK(zone_ok);
		size_t len = strlen(out);
		CHECK(len < out_size && len <= CONNCHECK_NAME_MAX);
		check_name(out);
		size_t zlen = strlen(z);
		CHECK(len > zlen && strcmp(out + len - zlen, z) == 0 && out[len - zlen - 1] == '.');
		if (family == 0) {
			unsigned b[4];
			int used = 0;
			CHECK(sscanf(out, "%u.%u.%u.%u.%n", &b[3], &b[2], &b[1], &b[0], &used) == 4);
			CHECK((size_t)used == len - zlen);
			for (int i = 0; i < 4; i++)
				CHECK(b[i] == want[i]);
		} else {
			CHECK(len - zlen == 64);
			static const char hex[] = "0123456789abcdef";
			for (int i = 0; i < 16; i++) {
				CHECK(out[(15 - i) * 4] == hex[want[i] & 0xf]);
				CHECK(out[(15 - i) * 4 + 2] == hex[want[i] >> 4]);
			}
		}
	}
	/* the answer does not depend on the room given */
	if (zone_ok && r < 0 && out_size > 0) {
		char big[CONNCHECK_NAME_MAX + 1];
		if (conncheck_reverse_name((const struct sockaddr *)&ss, zone, big, sizeof big) == 0)
			CHECK(strlen(big) >= out_size);
	}
	free(out);
	free(zone);
}

static void fuzz_name(const uint8_t *data, size_t size)
{
	char *s = string_of(data, size);
	char out[CONNCHECK_NAME_MAX + 1], again[CONNCHECK_NAME_MAX + 1];
	for (size_t min_labels = 1; min_labels <= 2; min_labels++) {
		int r = conncheck__name(s, min_labels, out, sizeof out);
		if (r < 0) {
			CHECK(out[0] == '\0');
			continue;
		}
		check_name(out);
		CHECK(min_labels == 1 || strchr(out, '.') != NULL);
		CHECK(conncheck__name(out, min_labels, again, sizeof again) == 0);
		CHECK(strcmp(out, again) == 0);
	}
	free(s);
}

static void fuzz_txt(const uint8_t *data, size_t size)
{
	if (size < 1)
		return;
	size_t out_size = (size_t)data[0] + 1;
	char *out = malloc(out_size);
	CHECK(out != NULL);
	conncheck__txt_clean((const char *)data + 1, size - 1, out, out_size);
	size_t len = strlen(out);
	size_t want = size - 1;
	if (want > CONNCHECK_TXT_MAX)
		want = CONNCHECK_TXT_MAX;
	if (want > out_size - 1)
		want = out_size - 1;
	CHECK(len == want);
	for (size_t i = 0; i < len; i++) {
		CHECK(out[i] >= 0x20 && out[i] < 0x7f);
		CHECK(out[i] == (char)data[1 + i] || out[i] == '?');
	}
	free(out);
}

static void fuzz_classify(const uint8_t *data, size_t size)
{
	size_t count = size / 5;
	if (count > 64)
		count = 64;
	struct sockaddr_storage *addrs = calloc(count + 1, sizeof *addrs);
	CHECK(addrs != NULL);
	int any_a = 0, any_listing = 0;
	for (size_t i = 0; i < count; i++) {
		const uint8_t *rec = data + i * 5;
		if (rec[0] & 1) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&addrs[i];
			s6->sin6_family = AF_INET6;
			memcpy(&s6->sin6_addr.s6_addr[12], rec + 1, 4);
			s6->sin6_addr.s6_addr[0] = 0x20;
		} else {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&addrs[i];
			s4->sin_family = AF_INET;
			memcpy(&s4->sin_addr, rec + 1, 4);
			any_a = 1;
			any_listing |= rec[1] == 127 && !(rec[2] == 255 && rec[3] == 255);
		}
	}
	struct conncheck_bl_zone z;
	memset(&z, 0, sizeof z);
	conncheck__bl_classify(addrs, count, &z);
	CHECK(z.detail != NULL);
	CHECK(z.naddrs <= CONNCHECK_BL_ADDRS_MAX);
	CHECK((z.status == CONNCHECK_BL_LISTED) == any_listing);
	if (z.status == CONNCHECK_BL_LISTED) {
		CHECK(z.naddrs >= 1);
		for (size_t i = 0; i < z.naddrs; i++) {
			const uint8_t *b = (const uint8_t *)&z.addrs[i];
			CHECK(b[0] == 127 && !(b[1] == 255 && b[2] == 255));
		}
	} else if (any_a) {
		CHECK(z.status == CONNCHECK_BL_IGNORED && z.naddrs >= 1);
	} else {
		CHECK(z.status == CONNCHECK_BL_NOT_LISTED && z.naddrs == 0);
	}
	free(addrs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] & 3) {
	case 0:
		fuzz_reverse(data[0], data + 1, size - 1);
		break;
	case 1:
		fuzz_name(data + 1, size - 1);
		break;
	case 2:
		fuzz_txt(data + 1, size - 1);
		break;
	default:
		fuzz_classify(data + 1, size - 1);
		break;
	}
	return 0;
}
