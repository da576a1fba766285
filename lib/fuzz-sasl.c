/* libFuzzer target: lib/sasl's exchanges and its base64 decoder.
 *
 * Input: one control byte, then the client's responses separated by
 * "\r\n" (decoded bytes, as sasl_server_step() gets them).
 *   bits 0-1  0 PLAIN, 1 LOGIN, 2 SCRAM-SHA-256, 3 base64: the rest of the
 *             input goes to sasl_b64_decode() instead (max from bits 2-7)
 *   bit 2     the first response is an initial response
 *   bit 3     CHECK_PASSWORD is answered "ok"
 *   bit 4     NEED_SCRAM is answered as an unknown user
 *   bit 5     misbehave: answer CHECK_PASSWORD and NEED_SCRAM with a step
 * SCRAM gets the RFC 7677 keys ("pencil") and server nonce, so the seed
 * exchange from the RFC reaches DONE.
 *
 * Checked: DONE only when the answer allowed it; after DONE or FAIL every
 * call fails; FAIL appends nothing to out and leaves a reason; a strict
 * decode re-encodes to its input.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "buf.h"
#include "sasl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t fuzz_secret[] = "fuzz-secret-of-at-least-16-bytes";

/* sasl_scram_keys_derive("pencil", RFC 7677 salt, 4096), precomputed:
 * 4096 rounds of PBKDF2 per input would slow the fuzzer down. */
static const struct sasl_scram_keys fuzz_keys = {
	.salt = {0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e, 0xec, 0xa0, 0x4b, 0x14, 0x12,
		 0x36, 0xfa, 0x81},
	.salt_len = 16,
	.iterations = 4096,
	.stored_key = {0x58, 0x6e, 0x5d, 0xf2, 0x83, 0xe6, 0xdc, 0xeb, 0x5c, 0x3e, 0x79,
		       0x1d, 0x8b, 0x85, 0x28, 0xec, 0x19, 0x1e, 0x66, 0x40, 0x45, 0xce,
		       0x97, 0x17, 0x92, 0xe2, 0xe6, 0xb5, 0xbb, 0x13, 0xe2, 0xa6},
	.server_key = {0xc1, 0xf3, 0xcb, 0xc1, 0xc1, 0x3a, 0x9d, 0x35, 0xa1, 0x4c, 0x09,
		       0x90, 0xee, 0xd9, 0x76, 0x29, 0xea, 0x22, 0x58, 0x63, 0xe5, 0x66,
		       0xa4, 0x31, 0x4a, 0xb9, 0x9f, 0x3f, 0x00, 0xe5, 0xd9, 0xd5},
};

#define FUZZ_MECH_MASK 0x03u
#define FUZZ_B64 3u
#define FUZZ_INITIAL 0x04u
#define FUZZ_CHECK_OK 0x08u
#define FUZZ_UNKNOWN 0x10u
#define FUZZ_MISBEHAVE 0x20u
#define FUZZ_MAX_STEPS 16

static void fuzz_b64(const uint8_t *data, size_t size, size_t max)
{
	buf out, again;
	buf_init(&out);
	buf_init(&again);
	buf_append_str(&out, "x");
	if (sasl_b64_decode((const char *)data, size, max, &out) < 0) {
		if (out.len != 1)
			__builtin_trap();
	} else {
		if (out.len - 1 > max)
			__builtin_trap();
		sasl_b64_encode(out.data + 1, out.len - 1, &again);
		int empty = size == 1 && data[0] == '=';
		if (empty ? again.len != 0
			  : again.len != size || (size > 0 && memcmp(again.data, data, size) != 0))
			__builtin_trap();
	}
	buf_deinit(&again);
	buf_deinit(&out);
}

/* The client's responses: the input after the control byte. */
typedef struct fuzz_input {
	const uint8_t *data;
	size_t size;
	size_t pos;
	int spent; /* the last response was taken */
} fuzz_input;

/* The next response (up to "\r\n" or the end). 1, or 0 when none is
 * left. */
static int fuzz_next(fuzz_input *in, const uint8_t **resp_r, size_t *len_r)
{
	if (in->spent)
		return 0;
	size_t end = in->pos;
	while (end < in->size && !(in->data[end] == '\r' && end + 1 < in->size &&
				   in->data[end + 1] == '\n'))
		end++;
	*resp_r = in->data + in->pos;
	*len_r = end - in->pos;
	if (end == in->size)
		in->spent = 1;
	else
		in->pos = end + 2;
	return 1;
}

static void fuzz_exchange(uint8_t control, fuzz_input *in)
{
	enum sasl_mech mech = (enum sasl_mech)(control & FUZZ_MECH_MASK);
	sasl_server *s = sasl_server_new(mech, fuzz_secret, sizeof fuzz_secret - 1);
	if (mech == SASL_MECH_SCRAM_SHA_256)
		sasl_server_set_nonce(s, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
	buf out;
	buf_init(&out);
	const uint8_t *resp = NULL;
	size_t len = 0;
	int have = (control & FUZZ_INITIAL) != 0 && fuzz_next(in, &resp, &len);
	enum sasl_step step = sasl_server_step(s, resp, len, have, &out);
	int finished = 0;
	for (int i = 0; i < FUZZ_MAX_STEPS; i++) {
		size_t before = out.len;
		int misbehave = (control & FUZZ_MISBEHAVE) != 0;
		if (finished && step != SASL_STEP_FAIL)
			__builtin_trap(); /* nothing may follow DONE or FAIL */
		if (step == SASL_STEP_DONE || step == SASL_STEP_FAIL)
			finished = 1;
		if (step == SASL_STEP_FAIL && sasl_server_error(s)[0] == '\0')
			__builtin_trap();
		if (step == SASL_STEP_CHECK_PASSWORD && !misbehave) {
			step = sasl_server_checked(s, (control & FUZZ_CHECK_OK) != 0);
			if (step == SASL_STEP_DONE && (control & FUZZ_CHECK_OK) == 0)
				__builtin_trap();
		} else if (step == SASL_STEP_NEED_SCRAM && !misbehave) {
			step = (control & FUZZ_UNKNOWN) != 0 ? sasl_server_scram_unknown(s, &out)
							     : sasl_server_scram_keys(s, &fuzz_keys, &out);
		} else if (fuzz_next(in, &resp, &len)) {
			step = sasl_server_step(s, resp, len, 1, &out);
			if (step == SASL_STEP_DONE && mech == SASL_MECH_SCRAM_SHA_256 &&
			    (control & FUZZ_UNKNOWN) != 0)
				__builtin_trap();
		} else {
			break;
		}
		if (step == SASL_STEP_FAIL && out.len != before)
			__builtin_trap();
	}
	/* whatever state it is in, these answer */
	(void)sasl_server_user(s);
	(void)sasl_server_password(s);
	(void)sasl_server_error_is_syntax(s);
	buf_deinit(&out);
	sasl_server_free(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	uint8_t control = data[0];
	if ((control & FUZZ_MECH_MASK) == FUZZ_B64) {
		fuzz_b64(data + 1, size - 1, (size_t)(control >> 2) * 64);
	} else {
		fuzz_input in = {data + 1, size - 1, 0, 0};
		fuzz_exchange(control, &in);
	}
	return 0;
}
