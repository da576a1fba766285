/* smtp-parser.h: the SMTP command-line parser and the DATA-phase reader
 * (library mailsmtp). Pure: no I/O, no loop, no logging; fuzzed by
 * fuzz_smtp_command and fuzz_smtp_data.
 *
 * Both parsers are incremental: feed them whatever bytes arrived, in chunks
 * of any size (the result does not depend on how the input was split), and
 * they say how many bytes they used. Memory is bounded by struct smtp_limits;
 * every limit is checked before a byte is stored.
 *
 * Decisions (see also docs/ once written):
 *  - Command lines end in CRLF; a bare LF is accepted as well (many clients
 *    and test scripts send it, and a command line cannot smuggle anything).
 *    A CR just before the LF is stripped; any other control byte, and any
 *    8-bit byte (no SMTPUTF8), makes the line a 501 5.5.2 error.
 *  - A command line may be max_line octets long INCLUDING its terminator
 *    (default 1000, i.e. RFC 5321's 1000-octet text line limit, more lenient
 *    than its 512 for command lines because real clients exceed 512 with
 *    ESMTP parameters). A longer line is discarded up to the next LF, never
 *    buffered, and reported as 500 5.5.6 "Line too long"; the parser is then
 *    ready for the next line.
 *  - In DATA, only CRLF ends a line: the message ends at CRLF "." CRLF and
 *    nothing else, and a leading dot is removed only after CRLF. A bare LF or
 *    bare CR is ordinary data. This is what makes "SMTP smuggling" (a bare-LF
 *    end-of-data that the next hop reads differently) impossible here. The
 *    body is stored exactly as received after dot-unstuffing, including the
 *    CRLF that precedes the final ".".
 */
#ifndef MAIL_SMTP_PARSER_H
#define MAIL_SMTP_PARSER_H

#include "buf.h"
#include "dsn-params.h"

#include <stddef.h>
#include <stdint.h>

/* Defaults of struct smtp_limits. */
#define SMTP_DEFAULT_MAX_LINE 1000u                     /* octets incl. CRLF */
#define SMTP_DEFAULT_MAX_RECIPIENTS 100u                /* per message */
#define SMTP_DEFAULT_MAX_MESSAGE_SIZE (32u * 1024 * 1024) /* octets, unstuffed */
/* Smallest max_line the parser accepts (shorter settings are raised). */
#define SMTP_MIN_MAX_LINE 64u
/* RFC 5321 4.5.3.1.3: a reverse- or forward-path is at most 256 octets. */
#define SMTP_MAX_PATH 256u

struct smtp_limits {
	size_t max_line;         /* command line octets incl. terminator; 1000 */
	size_t max_recipients;   /* accepted RCPTs per transaction; 100 */
	size_t max_message_size; /* DATA octets after unstuffing; 32 MiB */
};

/* Fill l with the defaults above. */
void smtp_limits_init_default(struct smtp_limits *l);

/* A reply: code, enhanced status code ("5.5.2", NULL for none) and a
 * single-line text. The parser's replies point at static strings. */
struct smtp_reply {
	int code;
	const char *enh;
	const char *text;
};

enum smtp_command_kind {
	SMTP_CMD_UNKNOWN = 0,
	SMTP_CMD_EHLO,
	SMTP_CMD_HELO,
	SMTP_CMD_MAIL,
	SMTP_CMD_RCPT,
	SMTP_CMD_DATA,
	SMTP_CMD_RSET,
	SMTP_CMD_NOOP,
	SMTP_CMD_QUIT,
	SMTP_CMD_VRFY,
	SMTP_CMD_EXPN,
	SMTP_CMD_HELP,
	SMTP_CMD_STARTTLS,
	SMTP_CMD_AUTH,
	SMTP_CMD_COUNT_
};

/* The verb of kind ("MAIL"), or "UNKNOWN". */
const char *smtp_command_name(enum smtp_command_kind kind);

enum smtp_body_type { SMTP_BODY_UNSPECIFIED = 0, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME };

/* ESMTP parameters of MAIL FROM. */
struct smtp_mail_params {
	int has_size;
	uint64_t size;           /* SIZE=, as declared (only compared, never used
				    to size anything) */
	enum smtp_body_type body;
	struct dsn_mail_params dsn; /* RET=, ENVID= (RFC 3461; lib/dsn) */
};

/* ESMTP parameters of RCPT TO: only DSN's NOTIFY= and ORCPT= (RFC 3461);
 * any other is 555 5.5.4. */
struct smtp_rcpt_params {
	struct dsn_rcpt_params dsn;
};

/* Parser flags (smtp_command_parser_set_flags). */
#define SMTP_PARSER_DSN 0x01u /* accept the DSN parameters (RET, ENVID on
				 MAIL; NOTIFY, ORCPT on RCPT); without it
				 they are 555 5.5.4 like any unknown one */

/* One parsed command. Strings point into the parser and stay valid until
 * the next smtp_command_parser_feed() or _deinit(). */
struct smtp_command {
	enum smtp_command_kind kind;
	/* EHLO/HELO: the domain or address literal.
	 * MAIL/RCPT: the mailbox between < > without source route, "" for <>
	 *            (MAIL only), quoted local parts as received.
	 * VRFY/HELP/NOOP: the argument or "" ; otherwise NULL. */
	const char *arg;
	struct smtp_mail_params params; /* MAIL only */
	struct smtp_rcpt_params rcpt_params; /* RCPT only */
	struct smtp_reply error;        /* set when feed returned -1 */
};

enum smtp_command_parser_state {
	SMTP_COMMAND_PARSER_LINE = 0, /* collecting a line */
	SMTP_COMMAND_PARSER_DISCARD,  /* line too long: dropping up to LF */
};

typedef struct smtp_command_parser {
	struct smtp_limits limits;
	enum smtp_command_parser_state state;
	unsigned flags; /* SMTP_PARSER_*; 0 after init */
	buf line; /* the current line (never more than limits.max_line) */
} smtp_command_parser;

/* Embedded; limits is copied. deinit frees the line buffer. */
void smtp_command_parser_init(smtp_command_parser *p, const struct smtp_limits *limits);
void smtp_command_parser_deinit(smtp_command_parser *p);
/* Set the SMTP_PARSER_* flags for the lines fed from now on (the server
 * sets SMTP_PARSER_DSN when it advertises DSN). */
void smtp_command_parser_set_flags(smtp_command_parser *p, unsigned flags);

/* Feed up to len bytes. Stops after the first complete line.
 *  1: a command was parsed into *cmd_r;
 * -1: a bad line (syntax error, unknown command, line too long): *cmd_r has
 *     kind (the verb if recognised) and the reply to send in cmd_r->error.
 *     A DSN parameter with a bad value (or given twice) is
 *     501 5.5.4 with lib/dsn's static text (docs/dsn.md); an unknown
 *     parameter 555 5.5.4;
 *  0: all len bytes consumed, no complete line yet.
 * *consumed_r is always set (on 1/-1 it includes the line terminator); the
 * caller feeds the rest again. The parser is ready for the next line after
 * every return. */
int smtp_command_parser_feed(smtp_command_parser *p, const uint8_t *data, size_t len,
			     size_t *consumed_r, struct smtp_command *cmd_r);

enum smtp_data_state {
	SMTP_DATA_BOL = 0, /* at the beginning of a line (after CRLF) */
	SMTP_DATA_DOT,     /* "." at the beginning of a line */
	SMTP_DATA_DOT_CR,  /* "." CR at the beginning of a line */
	SMTP_DATA_TEXT,    /* inside a line */
	SMTP_DATA_CR,      /* CR inside a line */
	SMTP_DATA_DONE,    /* end marker seen */
};

typedef struct smtp_data_reader {
	size_t max_size;
	enum smtp_data_state state;
	size_t size;  /* octets of message seen so far (also past the limit) */
	int too_big;  /* size went over max_size: body is empty from then on */
	int dropped;  /* smtp_data_reader_drop(): body is empty from then on */
	buf body;     /* the unstuffed message while !too_big */
} smtp_data_reader;

/* Embedded. max_size: the message size limit (octets after unstuffing). */
void smtp_data_reader_init(smtp_data_reader *r, size_t max_size);
void smtp_data_reader_deinit(smtp_data_reader *r);
/* Ready for a new message (keeps max_size, frees the body). */
void smtp_data_reader_reset(smtp_data_reader *r);
/* Free the body and keep only counting until the end of the message (the
 * server is out of memory budget for it). */
void smtp_data_reader_drop(smtp_data_reader *r);

/* Feed up to len bytes of the DATA phase.
 *  1: the end marker CRLF.CRLF was seen; *consumed_r counts up to and
 *     including it (the rest belongs to the next command). The message is
 *     r->body (unless r->too_big) and r->size is its size.
 *  0: all len bytes consumed, more needed.
 * Once over max_size the reader stops storing but keeps reading to the end
 * marker, so the session can answer 552 and go on. */
int smtp_data_reader_feed(smtp_data_reader *r, const uint8_t *data, size_t len,
			  size_t *consumed_r);

#endif
