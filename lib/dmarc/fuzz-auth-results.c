/* libFuzzer target: lib/dmarc/auth-results.h on arbitrary input.
 *
 * Input: a message header (and maybe a body). It is scanned for
 * Authentication-Results fields claiming "mx.example.net" fed whole, one
 * byte at a time, and in pieces whose sizes come from the input; then
 * stripped; then its first bytes serve as a hostile value and comment for
 * authres_compose().
 *
 * Checked: the three scans report the same fields; the fields follow each
 * other from offset 0 without gaps, inside the input, each ending in LF
 * but the one finish() reports; stripping removes exactly the bytes of the
 * fields marked ours, and stripping again removes nothing; the composed
 * field has CRLF line ends only, a TAB after each, no line over 998 bytes,
 * and scans as one Authentication-Results field that is ours.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth-results.h"
#include "mail-error.h"
#include "xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                               \
	do {                                                                                   \
		if (!(x))                                                                      \
			__builtin_trap();                                                      \
	} while (0)

#define FUZZ_ID "mx.example.net"
#define FUZZ_FIELDS_MAX 4096

struct fuzz_seen {
	struct authres_field *f;
	size_t n;
	int failed;
};

/* Scan data feeding pieces: step 0 = whole, 1 = bytes, 2 = sizes taken
 * from the data itself (1..16). */
static void fuzz_scan(const uint8_t *data, size_t size, int step, struct fuzz_seen *s)
{
	authres_scanner *sc;
	const char *error;
	struct authres_limits lim = { .max_id_scan = 64, .max_header_bytes = 64 * 1024 };
	CHECK(authres_scanner_create(FUZZ_ID, &lim, &sc, &error) == MAIL_OK);
	s->f = xcalloc(FUZZ_FIELDS_MAX, sizeof *s->f);
	s->n = 0;
	s->failed = 0;
	size_t pos = 0, k = 0;
	while (pos < size && !s->failed) {
		size_t n = size - pos;
		if (step == 1)
			n = 1;
		else if (step == 2 && n > 1 + data[k++ % size] % 16u)
			n = 1 + data[(k - 1) % size] % 16u;
		size_t off = 0;
		while (off < n) {
			size_t used;
			struct authres_field f;
			int r = authres_scanner_feed(sc, data + pos + off, n - off, &used, &f,
						     &error);
			CHECK(used <= n - off);
			off += used;
			if (r < 0) {
				s->failed = 1;
				break;
			}
			if (r == 1) {
				CHECK(s->n < FUZZ_FIELDS_MAX);
				s->f[s->n++] = f;
			} else {
				CHECK(off == n);
			}
		}
		pos += n;
	}
	struct authres_field f;
	if (!s->failed && authres_scanner_finish(sc, &f) == 1) {
		CHECK(s->n < FUZZ_FIELDS_MAX);
		s->f[s->n++] = f;
	}
	authres_scanner_destroy(&sc);
}

static void fuzz_check_composed(const char *field, size_t len)
{
	size_t line = 0;
	for (size_t i = 0; i < len; i++) {
		if (field[i] == '\r') {
			CHECK(i + 1 < len && field[i + 1] == '\n');
			CHECK(line <= 998);
			line = 0;
			i++;
			CHECK(i + 1 == len || field[i + 1] == '\t');
			continue;
		}
		CHECK(field[i] != '\n' && field[i] != '\0');
		line++;
	}
	CHECK(line == 0);
	struct fuzz_seen s;
	fuzz_scan((const uint8_t *)field, len, 0, &s);
	CHECK(!s.failed && s.n == 1 && s.f[0].is_authres && s.f[0].ours && s.f[0].length == len);
	free(s.f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_seen whole, bytes, pieces;
	fuzz_scan(data, size, 0, &whole);
	fuzz_scan(data, size, 1, &bytes);
	fuzz_scan(data, size, 2, &pieces);
	CHECK(whole.failed == bytes.failed && whole.failed == pieces.failed);
	if (!whole.failed) {
		CHECK(whole.n == bytes.n && whole.n == pieces.n);
		CHECK(memcmp(whole.f, bytes.f, whole.n * sizeof *whole.f) == 0);
		CHECK(memcmp(whole.f, pieces.f, whole.n * sizeof *whole.f) == 0);
		uint64_t end = 0, ours = 0;
		for (size_t i = 0; i < whole.n; i++) {
			const struct authres_field *f = &whole.f[i];
			CHECK(f->offset == end && f->length > 0);
			end = f->offset + f->length;
			CHECK(end <= size);
			CHECK(i + 1 == whole.n || data[end - 1] == '\n');
			CHECK(!f->ours || f->is_authres);
			if (f->ours)
				ours += f->length;
		}
		/* strip: the same fields go */
		uint8_t *m = xmalloc(size + 1);
		memcpy(m, data, size);
		size_t len = size, removed;
		const char *error;
		struct authres_limits lim = { .max_id_scan = 64, .max_header_bytes = 64 * 1024 };
		CHECK(authres_strip_ours(m, &len, FUZZ_ID, &lim, &removed, &error) == MAIL_OK);
		CHECK(len == size - ours);
		CHECK(authres_strip_ours(m, &len, FUZZ_ID, &lim, &removed, &error) == MAIL_OK);
		CHECK(removed == 0 && len == size - ours);
		free(m);
	}
	free(whole.f);
	free(bytes.f);
	free(pieces.f);

	/* hostile values and comments */
	size_t vn = size < 300 ? size : 300;
	char *value = xstrndup((const char *)data, vn);
	struct authres_method m = {
		.method = "dkim", .result = "fail", .comment = value,
		.props = { { "header", "d", value }, { "header", "b", value + strlen(value) / 2 } },
		.n_props = 2,
	};
	char *field;
	size_t flen;
	const char *error;
	CHECK(authres_compose(FUZZ_ID, &m, 1, &field, &flen, &error) == MAIL_OK);
	fuzz_check_composed(field, flen);
	free(field);
	free(value);
	return 0;
}
