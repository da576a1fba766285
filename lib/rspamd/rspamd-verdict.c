/* rspamd-verdict.c: what a result means for the message (rspamd.h): the
 * X-Spam fields and the one table from outcome to SMTP reply and
 * delivery flags. */
#include "rspamd.h"

#include <math.h>
#include <string.h>

const char *rspamd_status_name(enum rspamd_status status)
{
	switch (status) {
	case RSPAMD_OK:
		return "ok";
	case RSPAMD_UNAVAILABLE:
		return "unavailable";
	case RSPAMD_SKIPPED:
		return "skipped";
	case RSPAMD_BUSY:
		return "busy";
	}
	return "unknown";
}

/* Header fields are folded for readability well before RFC 5322's
 * 78-byte recommendation; the hard limit (998) cannot be reached since
 * the whole list is at most RSPAMD_SYMBOLS_LEN_MAX. */
#define RSPAMD__FOLD_AT 78u

static int rspamd__header_char(unsigned char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       ch == '_' || ch == '.' || ch == '-' || ch == '(' || ch == ')' || ch == ',';
}

/* A score as "%.2f" of a bounded value (a caller's struct may hold
 * anything: no 300-digit numbers, no "nan"). */
static double rspamd__printable(double v)
{
	if (!isfinite(v))
		return 0;
	if (v > RSPAMD_SCORE_ABS_MAX)
		return RSPAMD_SCORE_ABS_MAX;
	if (v < -RSPAMD_SCORE_ABS_MAX)
		return -RSPAMD_SCORE_ABS_MAX;
	return v;
}

int rspamd_spam_headers(const struct rspamd_result *r, buf *out)
{
	if (r->status != RSPAMD_OK)
		return -1;
	int flag = r->action == RSPAMD_ACTION_ADD_HEADER ||
		   r->action == RSPAMD_ACTION_REWRITE_SUBJECT || r->action == RSPAMD_ACTION_REJECT;
	buf_printf(out, "X-Spam-Flag: %s\r\n", flag ? "YES" : "NO");
	buf_printf(out, "X-Spam-Score: %.2f / %.2f\r\n", rspamd__printable(r->score),
		   rspamd__printable(r->required_score));
	buf_printf(out, "X-Spam-Action: %s\r\n", rspamd_action_name(r->action));

	/* the safe bytes of r->symbols, bounded */
	char syms[RSPAMD_SYMBOLS_LEN_MAX + 1];
	size_t n = 0;
	for (const char *p = r->symbols != NULL ? r->symbols : "";
	     *p != '\0' && n < RSPAMD_SYMBOLS_LEN_MAX; p++) {
		if (rspamd__header_char((unsigned char)*p))
			syms[n++] = *p;
	}
	syms[n] = '\0';
	if (n == 0)
		return 0;
	static const char name[] = "X-Spam-Symbols: ";
	buf_append_str(out, name);
	size_t line = sizeof name - 1;
	/* one item ("NAME(1.00)," with its comma) at a time; a fold goes
	 * before an item that would pass the column */
	for (size_t i = 0; i < n;) {
		const char *comma = memchr(syms + i, ',', n - i);
		size_t item = comma != NULL ? (size_t)(comma - (syms + i)) + 1 : n - i;
		if (line > 1 && line + item > RSPAMD__FOLD_AT) {
			buf_append_str(out, "\r\n\t");
			line = 1;
		}
		buf_append(out, syms + i, item);
		line += item;
		i += item;
	}
	buf_append_str(out, "\r\n");
	return 0;
}

enum {
	RSPAMD__TAKE,
	RSPAMD__GREYLIST,
	RSPAMD__JUNK,
	RSPAMD__JUNK_SUBJECT,
	RSPAMD__SOFT_REJECT,
	RSPAMD__REJECT,
	RSPAMD__UNCHECKED,
	RSPAMD__FAIL_CLOSED,
};

static const struct rspamd_reply rspamd__replies[] = {
	[RSPAMD__TAKE] = { 0, NULL, NULL, 0 },
	[RSPAMD__GREYLIST] = { 0, NULL, NULL, RSPAMD_REPLY_GREYLIST },
	[RSPAMD__JUNK] = { 0, NULL, NULL, RSPAMD_REPLY_HEADERS | RSPAMD_REPLY_JUNK },
	[RSPAMD__JUNK_SUBJECT] = { 0, NULL, NULL,
				   RSPAMD_REPLY_HEADERS | RSPAMD_REPLY_JUNK |
					   RSPAMD_REPLY_SUBJECT },
	[RSPAMD__SOFT_REJECT] = { 451, "4.7.1", "Try again later", 0 },
	[RSPAMD__REJECT] = { 550, "5.7.1", "Message rejected as spam", 0 },
	[RSPAMD__UNCHECKED] = { 0, NULL, NULL, RSPAMD_REPLY_UNCHECKED },
	[RSPAMD__FAIL_CLOSED] = { 451, "4.7.1", "Spam filter unavailable, try again later",
				  RSPAMD_REPLY_UNCHECKED },
};

const struct rspamd_reply *rspamd_result_reply(const struct rspamd_result *r, int fail_closed)
{
	switch (r->status) {
	case RSPAMD_OK:
		break;
	case RSPAMD_SKIPPED:
		return &rspamd__replies[RSPAMD__UNCHECKED];
	case RSPAMD_UNAVAILABLE:
	case RSPAMD_BUSY:
	default:
		return &rspamd__replies[fail_closed ? RSPAMD__FAIL_CLOSED : RSPAMD__UNCHECKED];
	}
	switch (r->action) {
	case RSPAMD_ACTION_NO_ACTION:
		return &rspamd__replies[RSPAMD__TAKE];
	case RSPAMD_ACTION_GREYLIST:
		return &rspamd__replies[RSPAMD__GREYLIST];
	case RSPAMD_ACTION_ADD_HEADER:
		return &rspamd__replies[RSPAMD__JUNK];
	case RSPAMD_ACTION_REWRITE_SUBJECT:
		return &rspamd__replies[r->subject != NULL && r->subject[0] != '\0'
						? RSPAMD__JUNK_SUBJECT
						: RSPAMD__JUNK];
	case RSPAMD_ACTION_SOFT_REJECT:
		return &rspamd__replies[RSPAMD__SOFT_REJECT];
	case RSPAMD_ACTION_REJECT:
		return &rspamd__replies[RSPAMD__REJECT];
	}
	/* an action outside the enum (a caller's struct): the safe side */
	return &rspamd__replies[RSPAMD__SOFT_REJECT];
}
