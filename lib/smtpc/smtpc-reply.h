/* smtpc-reply.h: the SMTP client's reply parser and EHLO capability
 * reader (library mailsmtpc; RFC 5321 4.2, RFC 3463, RFC 2034).
 * Pure: no I/O, no loop, no logging; fuzzed by fuzz_smtpc_reply.
 *
 * The parser is incremental: feed it whatever bytes arrived, in chunks of
 * any size (the replies do not depend on how the input was split), and it
 * says how many bytes it used. Memory is bounded by struct
 * smtpc_reply_limits; every limit is checked before a byte is stored.
 *
 * Decisions (docs/smtp-client.md):
 *  - A reply is one or more lines "ddd-text" ending with "ddd text" (or a
 *    bare "ddd"). The first digit is 2..5, the second 0..5, the third
 *    0..9; every line of a reply carries the same code.
 *  - A line ends in CRLF; a bare LF is accepted too (we are the client:
 *    reading a lenient server's reply cannot smuggle anything). A CR
 *    anywhere else, NUL, and any control byte other than HT is a protocol
 *    error. 8-bit bytes are kept (SMTPUTF8 servers may send UTF-8).
 *  - Enhanced status codes (RFC 3463) are parsed when present, whether or
 *    not the server announced ENHANCEDSTATUSCODES: "c.sss.ddd" at the start
 *    of the first line's text, followed by a space or the end of the
 *    line, whose class c equals the reply's first digit (a "2.0.0" on a
 *    550 is just text). It is removed from the text of every line that
 *    starts with the same code.
 *  - Any limit exceeded is a protocol error: the session ends; nothing is
 *    discarded silently and no partial reply is returned.
 *  - After an error the parser is dead until smtpc_reply_parser_reset().
 */
#ifndef MAIL_SMTPC_REPLY_H
#define MAIL_SMTPC_REPLY_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Defaults of struct smtpc_reply_limits. */
#define SMTPC_REPLY_DEFAULT_MAX_LINE 2048u        /* octets per line incl. CRLF */
#define SMTPC_REPLY_DEFAULT_MAX_LINES 100u        /* lines per reply */
#define SMTPC_REPLY_DEFAULT_MAX_BYTES (64u * 1024) /* octets per reply, as received */
/* Settings below these are raised to them. */
#define SMTPC_REPLY_MIN_MAX_LINE 64u
#define SMTPC_REPLY_MIN_MAX_BYTES 512u

/* "5.123.456" and its NUL */
#define SMTPC_ENH_MAX 10u

struct smtpc_reply_limits {
	size_t max_line;  /* octets of one line, terminator included; 2048 */
	size_t max_lines; /* lines of one reply; 100 */
	size_t max_bytes; /* octets of one reply as received; 64 KiB */
};

void smtpc_reply_limits_init_default(struct smtpc_reply_limits *l);

/* One complete reply. text holds each line's text (after "ddd-"/"ddd ",
 * enhanced code removed) joined by '\n', NUL-terminated, no final '\n';
 * "" when the reply had no text. Points into the parser: valid until the
 * next feed, reset or deinit. */
struct smtpc_reply {
	int code;                 /* 200..559 */
	char enh[SMTPC_ENH_MAX];  /* "5.1.1", "" when none */
	const char *text;
	size_t text_len;
	size_t lines;
};

enum smtpc_reply_parser_state {
	SMTPC_REPLY_PARSER_LINE = 0, /* collecting a line */
	SMTPC_REPLY_PARSER_ERROR,    /* a protocol error was returned */
};

typedef struct smtpc_reply_parser {
	struct smtpc_reply_limits limits;
	enum smtpc_reply_parser_state state;
	int code;          /* of the reply in progress, 0 before its first line */
	char enh[SMTPC_ENH_MAX];
	size_t lines;      /* complete lines of the reply in progress */
	size_t bytes;      /* octets of the reply in progress, as received */
	buf line;          /* the current line, never more than max_line */
	buf text;          /* the reply's text so far */
	int text_ready;    /* text holds a returned reply: drop it on next feed */
} smtpc_reply_parser;

/* Embedded; limits is copied (NULL: defaults). */
void smtpc_reply_parser_init(smtpc_reply_parser *p, const struct smtpc_reply_limits *limits);
void smtpc_reply_parser_deinit(smtpc_reply_parser *p);
/* Forget any partial reply and any error. */
void smtpc_reply_parser_reset(smtpc_reply_parser *p);
/* 1 when part of a reply was received and not yet completed. */
int smtpc_reply_parser_pending(const smtpc_reply_parser *p);

/* Feed up to len bytes; stops after the first complete reply.
 *  1: a reply was parsed into *reply_r;
 *  0: all len bytes consumed, no complete reply yet;
 * -1: protocol error, *error_r (static text); the parser stays in error.
 * *consumed_r is always set (on 1, up to and including the reply's last
 * line terminator); feed the rest again. */
int smtpc_reply_parser_feed(smtpc_reply_parser *p, const uint8_t *data, size_t len,
			    size_t *consumed_r, struct smtpc_reply *reply_r,
			    const char **error_r);

/* ---- EHLO capabilities -------------------------------------------------- */

#define SMTPC_CAP_PIPELINING 0x0001u
#define SMTPC_CAP_SIZE 0x0002u
#define SMTPC_CAP_8BITMIME 0x0004u
#define SMTPC_CAP_SMTPUTF8 0x0008u
#define SMTPC_CAP_STARTTLS 0x0010u
#define SMTPC_CAP_AUTH 0x0020u
#define SMTPC_CAP_ENHANCEDSTATUSCODES 0x0040u
#define SMTPC_CAP_DSN 0x0080u
#define SMTPC_CAP_CHUNKING 0x0100u

/* AUTH mechanisms we can use (others are ignored). */
#define SMTPC_AUTH_PLAIN 0x01u
#define SMTPC_AUTH_LOGIN 0x02u

struct smtpc_caps {
	unsigned flags;     /* SMTPC_CAP_* */
	uint64_t size_max;  /* SIZE n; 0 = SIZE without a limit (or none);
			       UINT64_MAX when n overflows */
	unsigned auth;      /* SMTPC_AUTH_*: from "AUTH m..." and "AUTH=m..." */
};

/* The capabilities of a 250 reply to EHLO (its first line is the
 * greeting and is skipped). Keywords and mechanisms are case-insensitive;
 * unknown keywords are ignored. Never fails. */
void smtpc_caps_parse(const struct smtpc_reply *reply, struct smtpc_caps *caps_r);

#endif
