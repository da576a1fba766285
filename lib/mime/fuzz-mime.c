/* libFuzzer target: lib/mime's parser, part table and decoders.
 *
 * Input: one control byte, then a message.
 *   bits 0-2  chunk size for feeding: 0 the whole message at once, else
 *             1, 2, 3, 7, 64, 509, 4096 bytes
 *   bit 3     tight limits (depth 4, 12 parts, 512-byte headers, 8
 *             fields, 16-byte boundaries, 2 params, 24-byte values, 3
 *             addresses)
 *   bit 4     also decode every part's body and its charset, and the
 *             message header's fields (RFC 2047)
 *   bit 5     flip the byte of the part table at (control byte * 7) and
 *             decode that (it must be refused or stay in range)
 *
 * Checked: the chunked result equals the one-shot result; ENVELOPE,
 * BODYSTRUCTURE and BODY are well-formed IMAP (mime-check.h); the part
 * table decodes, has n_parts entries, the root first, every region
 * within the message, paths unique and found again by mime_parts_find;
 * a non-root entry's MIME header precedes its body; text parts decode.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "mime-check.h"
#include "mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const size_t chunks[8] = {0, 1, 2, 3, 7, 64, 509, 4096};

#define CHECK(x)                                                                               \
	do {                                                                                   \
		if (!(x))                                                                      \
			__builtin_trap();                                                      \
	} while (0)

static int header_cb(const char *name, size_t name_len, const char *value, size_t value_len,
		     void *arg)
{
	buf *b = arg;
	(void)name;
	(void)name_len;
	buf_reset(b);
	mime_header_decode(value, value_len, b);
	return 0;
}

static int text_cb(const char *utf8, size_t len, void *arg)
{
	(void)utf8;
	(void)len;
	(void)arg;
	return 0;
}

static void check_table(const uint8_t *msg, size_t size, const struct mime_result *r)
{
	struct mime_part_loc *locs;
	uint64_t msg_size;
	int n = mime_parts_decode(r->parts, r->parts_len, &locs, &msg_size);
	CHECK(n >= 1 && (unsigned)n == r->n_parts && msg_size == size);
	CHECK(locs[0].depth == 0 && locs[0].body_off == 0 && locs[0].body_len == size);
	for (int i = 0; i < n; i++) {
		const struct mime_part_loc *l = &locs[i];
		CHECK(l->mime_off + l->mime_len <= size && l->body_off + l->body_len <= size);
		CHECK(l->hdr_off + l->hdr_len <= size && l->text_off + l->text_len <= size);
		if (i > 0)
			CHECK(l->mime_off + l->mime_len <= l->body_off);
		struct mime_part_loc found;
		CHECK(mime_parts_find(r->parts, r->parts_len, l->path, l->depth, &found) == 1);
		CHECK(found.body_off == l->body_off && found.body_len == l->body_len &&
		      found.mime_off == l->mime_off);
		(void)msg;
	}
	free(locs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	uint8_t control = data[0];
	const uint8_t *msg = data + 1;
	size_t len = size - 1;
	struct mime_limits lim = mime_limits_default();
	if (control & 0x08) {
		lim.max_depth = 4;
		lim.max_parts = 12;
		lim.max_header_bytes = 512;
		lim.max_header_fields = 8;
		lim.max_boundary_len = 16;
		lim.max_params = 2;
		lim.max_value_bytes = 24;
		lim.max_addresses = 3;
	}
	struct mime_result *one, *r;
	mime_analyze(msg, len, &lim, &one);
	size_t chunk = chunks[control & 7];
	if (chunk > 0) {
		mime_parser *p = mime_parser_create(&lim);
		for (size_t off = 0; off < len; off += chunk)
			mime_parser_feed(p, msg + off, len - off < chunk ? len - off : chunk);
		mime_parser_finish(p, &r);
		mime_parser_destroy(&p);
		CHECK(strcmp(one->envelope, r->envelope) == 0);
		CHECK(strcmp(one->bodystructure, r->bodystructure) == 0);
		CHECK(strcmp(one->body, r->body) == 0);
		CHECK(one->parts_len == r->parts_len &&
		      memcmp(one->parts, r->parts, r->parts_len) == 0);
		CHECK(one->flags == r->flags);
		mime_result_free(&r);
	}
	CHECK(mime_check_sexp(one->envelope, one->envelope_len));
	CHECK(mime_check_sexp(one->bodystructure, one->bodystructure_len));
	CHECK(mime_check_sexp(one->body, one->body_len));
	CHECK(strlen(one->envelope) == one->envelope_len);
	CHECK(strlen(one->bodystructure) == one->bodystructure_len);
	CHECK(one->size == len);
	check_table(msg, len, one);

	if (control & 0x10) {
		struct mime_part_loc root;
		CHECK(mime_parts_find(one->parts, one->parts_len, NULL, 0, &root) == 1);
		buf b;
		buf_init(&b);
		mime_header_foreach(msg + root.hdr_off, (size_t)root.hdr_len, header_cb, &b);
		CHECK(mime_text_foreach(msg, len, one->parts, one->parts_len, text_cb, NULL) == 0);
		struct mime_part_loc *locs;
		int n = mime_parts_decode(one->parts, one->parts_len, &locs, NULL);
		for (int i = 0; i < n; i++) {
			buf_reset(&b);
			int rc = mime_decode_transfer(locs[i].encoding, msg + locs[i].body_off,
						      (size_t)locs[i].body_len, &b);
			CHECK(rc == 0 || locs[i].encoding == MIME_ENC_UNKNOWN);
			static const char *const names[] = {"subject", "content-type"};
			buf_reset(&b);
			mime_header_filter(msg + locs[i].mime_off, (size_t)locs[i].mime_len, names, 2,
					   i & 1, &b);
			CHECK(b.len >= 2 && b.data[b.len - 2] == '\r' && b.data[b.len - 1] == '\n');
		}
		free(locs);
		buf_deinit(&b);
	}

	if ((control & 0x20) && one->parts_len > 0) {
		uint8_t *bad = malloc(one->parts_len);
		memcpy(bad, one->parts, one->parts_len);
		bad[((size_t)control * 7) % one->parts_len] ^= (uint8_t)(control | 1);
		struct mime_part_loc *locs;
		uint64_t msg_size;
		int n = mime_parts_decode(bad, one->parts_len, &locs, &msg_size);
		for (int i = 0; i < n; i++)
			CHECK(locs[i].body_off + locs[i].body_len <= msg_size &&
			      locs[i].depth <= MIME_PATH_MAX);
		free(locs);
		uint32_t path[2] = {1, 1};
		struct mime_part_loc loc;
		(void)mime_parts_find(bad, one->parts_len, path, 2, &loc);
		free(bad);
	}
	mime_result_free(&one);
	return 0;
}
