/* libFuzzer target: rspamd's /checkv2 answer, read by
 * rspamd_parse_response() (the one parser of network bytes in
 * lib/rspamd), then the X-Spam fields composed from what it read.
 *
 * The input is the HTTP body as rspamd would send it (the corpus holds
 * real ones captured from rspamd 3.4: ham, GTUBE, each action, an error).
 * Checked: the call returns 0 or -1; -1 leaves a printable error and
 * nothing else; 0 gives an action of the enum, finite scores within the
 * clamp, a symbol list of [A-Za-z0-9_.-(),] within its bound, a message
 * and subject without control bytes, n_unseen <= n_symbols. The fields
 * composed from it: CRLF line ends only, every line within 998 bytes, a
 * continuation line starts with TAB, no byte outside printable ASCII.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "buf.h"
#include "rspamd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                               \
	do {                                                                                   \
		if (!(x))                                                                      \
			__builtin_trap();                                                      \
	} while (0)

static void check_text(const char *s, size_t max)
{
	size_t len = strnlen(s, max + 1);
	CHECK(len <= max);
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		CHECK(ch >= 0x20 && ch != 0x7f);
	}
}

static void check_symbols(const char *s)
{
	size_t len = strnlen(s, RSPAMD_SYMBOLS_LEN_MAX + 1);
	CHECK(len <= RSPAMD_SYMBOLS_LEN_MAX);
	for (size_t i = 0; i < len; i++)
		CHECK(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-(),",
			     s[i]) != NULL);
}

static void check_fields(const buf *b)
{
	size_t line = 0;
	int first = 1;
	for (size_t i = 0; i < b->len; i++) {
		uint8_t ch = b->data[i];
		if (ch == '\r') {
			CHECK(i + 1 < b->len && b->data[i + 1] == '\n');
			i++;
			line = 0;
			first = 1;
			continue;
		}
		CHECK(ch != '\n');
		CHECK((ch >= 0x20 && ch < 0x7f) || (ch == '\t' && first));
		first = 0;
		CHECK(++line <= 998);
	}
	CHECK(b->len == 0 || (b->len >= 2 && b->data[b->len - 1] == '\n'));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rspamd_parsed p;
	int r = rspamd_parse_response((const char *)data, size, &p);
	CHECK(r == 0 || r == -1);
	if (r < 0) {
		CHECK(p.error[0] != '\0');
		check_text(p.error, sizeof p.error - 1);
		CHECK(p.symbols[0] == '\0' && p.message[0] == '\0' && p.subject[0] == '\0');
		return 0;
	}
	CHECK(p.error[0] == '\0');
	CHECK((unsigned)p.action <= RSPAMD_ACTION_REJECT);
	CHECK(strcmp(rspamd_action_name(p.action), "unknown") != 0);
	CHECK(isfinite(p.score) && fabs(p.score) <= RSPAMD_SCORE_ABS_MAX);
	CHECK(isfinite(p.required_score) && fabs(p.required_score) <= RSPAMD_SCORE_ABS_MAX);
	CHECK(p.n_unseen <= p.n_symbols);
	check_symbols(p.symbols);
	check_text(p.message, RSPAMD_MESSAGE_LEN_MAX);
	check_text(p.subject, RSPAMD_SUBJECT_LEN_MAX);

	struct rspamd_result res = {
		.status = RSPAMD_OK,
		.action = p.action,
		.score = p.score,
		.required_score = p.required_score,
		.symbols = p.symbols,
		.subject = p.subject[0] != '\0' ? p.subject : NULL,
	};
	buf b;
	buf_init(&b);
	CHECK(rspamd_spam_headers(&res, &b) == 0);
	check_fields(&b);
	buf_deinit(&b);
	const struct rspamd_reply *reply = rspamd_result_reply(&res, 0);
	CHECK(reply != NULL);
	CHECK((reply->smtp_code == 0) == (p.action < RSPAMD_ACTION_SOFT_REJECT));
	return 0;
}
