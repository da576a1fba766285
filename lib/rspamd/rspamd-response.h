/* rspamd-response.h: rspamd's answer to POST /checkv2, read (library
 * `mailrspamd`; the client, rspamd.h, uses it; fuzz_rspamd_response
 * feeds it).
 *
 * The body is one JSON object (rspamd 3.4; lib/rspamd/fuzz/ has real
 * ones):
 *
 *   {"is_skipped":false,"score":7.3,"required_score":15.0,
 *    "action":"add header","subject":"...",
 *    "symbols":{"RDNS_NONE":{"name":"RDNS_NONE","score":1.0,...},...},
 *    "messages":{"smtp_message":"..."},"message-id":"...",...}
 *
 * Read here: "action" (required), "score" (required), "required_score",
 * "symbols" (each member's key and "score"), "messages"."smtp_message" and
 * "subject"; everything else is ignored. A body with "error" and no action
 * (rspamd's answer to a request it could not handle) fails with that
 * error's text.
 *
 * Bounds: the body at most RSPAMD_RESPONSE_BYTES_MAX (the client stops
 * reading at its own, smaller max_response_bytes); jansson limits nesting
 * (2048 levels) and rejects invalid UTF-8, NUL in strings and numbers out
 * of a double's range; at most RSPAMD_PARSE_SYMBOLS_MAX members of
 * "symbols" are looked at (the rest are counted as unseen); scores are
 * clamped to +-RSPAMD_SCORE_ABS_MAX so that "%.2f" stays short.
 *
 * Everything that comes out is safe to put in a header field or a log
 * line as it is: symbol names keep [A-Za-z0-9_.-] (other bytes become
 * '_', names are cut at RSPAMD_SYMBOL_NAME_MAX bytes), the message and
 * the subject lose every control byte (CR, LF, TAB... become a space) and
 * are cut at a UTF-8 boundary.
 *
 * Pure: no allocation survives the call, no global state; any thread.
 */
#ifndef MAIL_RSPAMD_RESPONSE_H
#define MAIL_RSPAMD_RESPONSE_H

#include <stddef.h>

/* rspamd's actions, mildest first. rspamd's "discard" reads as REJECT
 * (this platform refuses rather than silently drops), "quarantine" as
 * ADD_HEADER (delivered into Junk, the user's quarantine); any other
 * name (a custom action) is an error. */
enum rspamd_action {
	RSPAMD_ACTION_NO_ACTION = 0,
	RSPAMD_ACTION_GREYLIST,
	RSPAMD_ACTION_ADD_HEADER,
	RSPAMD_ACTION_REWRITE_SUBJECT,
	RSPAMD_ACTION_SOFT_REJECT,
	RSPAMD_ACTION_REJECT,
};

/* rspamd's words: "no action", "greylist", "add header", "rewrite
 * subject", "soft reject", "reject". Never NULL ("unknown" outside the
 * enum). */
const char *rspamd_action_name(enum rspamd_action action);

/* Hard bound on a body, whatever the client's max_response_bytes. */
#define RSPAMD_RESPONSE_BYTES_MAX (16u * 1024 * 1024)
/* Members of "symbols" looked at; rspamd reports a few dozen. */
#define RSPAMD_PARSE_SYMBOLS_MAX 1024u
/* A symbol name in the list, and the list: "NAME(1.00),NAME(-0.50)",
 * highest score first (ties by name), as many as fit. */
#define RSPAMD_SYMBOL_NAME_MAX 64u
#define RSPAMD_SYMBOLS_LEN_MAX 512u
/* rspamd's smtp_message (for logs; the SMTP reply text is ours) and the
 * Subject of "rewrite subject" (room for "Subject: " and CRLF in 998). */
#define RSPAMD_MESSAGE_LEN_MAX 200u
#define RSPAMD_SUBJECT_LEN_MAX 900u
/* Scores beyond this are clamped (rspamd's are within +-100). */
#define RSPAMD_SCORE_ABS_MAX 1000000.0

struct rspamd_parsed {
	enum rspamd_action action;
	double score;
	double required_score; /* 0 when absent */
	unsigned n_symbols;    /* members of "symbols" */
	unsigned n_unseen;     /* of them, past RSPAMD_PARSE_SYMBOLS_MAX */
	char symbols[RSPAMD_SYMBOLS_LEN_MAX + 1];  /* "" when none */
	char message[RSPAMD_MESSAGE_LEN_MAX + 1];  /* "" when none */
	char subject[RSPAMD_SUBJECT_LEN_MAX + 1];  /* "" when none */
	char error[160]; /* set when the call fails: printable ASCII */
};

/* Read body (len bytes, not NUL-terminated) into *out. Returns 0, or -1
 * with out->error set ("not JSON: ...", "no action", "unknown action
 * \"x\"", "rspamd error: ...", "over N bytes"...). out is always fully
 * written. */
int rspamd_parse_response(const char *body, size_t len, struct rspamd_parsed *out);

#endif
