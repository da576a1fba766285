/* pop3-parser.h: the POP3 command-line parser (library `mailpop3`).
 *
 * Pure: no I/O, no loop, no global state; one parser per connection.
 * Fuzzed by fuzz_pop3_command.
 *
 * Incremental: feed it whatever bytes arrived, in chunks of any size (the
 * result does not depend on how the input was split); it consumes up to
 * the first event (a whole line, or an error) and says how much it used.
 * It never stores more than the limits allow; the length is checked
 * before a byte is stored.
 *
 * Decisions:
 *  - A line ends in CRLF; a bare LF is accepted too (a CR just before the
 *    LF is stripped). Any other control byte (NUL, CR, TAB, DEL...) makes
 *    the line an error. Bytes >= 0x80 are allowed: user names and
 *    passwords may be UTF-8.
 *  - A command line is at most max_line octets including its CRLF (RFC
 *    2449 section 4: 255). An AUTH command line (the initial response of
 *    RFC 5034 can be long) and, in SASL mode, a client's response line may
 *    be max_auth_line octets (RFC 4954's 12288 plus CRLF). A longer line is
 *    reported as "Line too long" as soon as it passes the limit, and the
 *    rest of it is discarded up to the next LF, never stored.
 *  - command = keyword *(SP arg): the keyword is 1 to 4 ASCII letters,
 *    case-insensitive (RFC 1939 3: three or four characters; others get
 *    "Unknown command" from the dispatcher); arguments are separated by
 *    runs of spaces, at most max_args of them. rest is the line after the
 *    keyword and its one separating space, as sent: PASS takes it whole
 *    (a password may contain spaces).
 *  - An empty line is an error ("Empty command").
 */
#ifndef MAIL_POP3_PARSER_H
#define MAIL_POP3_PARSER_H

#include <stddef.h>
#include <stdint.h>

/* Defaults (rows: name, default, why):
 *   max_line       255     octets of a command line incl. CRLF (RFC 2449)
 *   max_auth_line  12290   an AUTH line or SASL response incl. CRLF
 *   max_args       4       arguments (TOP msg n and AUTH mech ir take 2)
 * Bounds: max_line >= POP3_PARSER_MIN_LINE, max_auth_line >= max_line,
 * 1 <= max_args <= POP3_PARSER_ARGS_MAX (out-of-range values are moved
 * to the nearest bound). */
#define POP3_PARSER_MAX_LINE 255u
#define POP3_PARSER_MAX_AUTH_LINE (12288u + 2u)
#define POP3_PARSER_MAX_ARGS 4u
#define POP3_PARSER_MIN_LINE 16u
#define POP3_PARSER_ARGS_MAX 16u

struct pop3_parser_limits {
	size_t max_line;
	size_t max_auth_line;
	size_t max_args;
};

/* Fill *limits with the defaults above. */
void pop3_parser_limits_default(struct pop3_parser_limits *limits);

struct pop3_command {
	/* Command lines: the keyword upper-cased ("RETR"), its arguments
	 * (NUL-terminated, never empty) and rest (see above). In SASL mode
	 * name is "" and n_args 0. */
	char name[5];
	const char *args[POP3_PARSER_ARGS_MAX];
	size_t n_args;
	const char *rest;
	/* The whole line without its line end (NUL-terminated). */
	const char *line;
	size_t line_len;
};

enum pop3_parse_result {
	POP3_PARSE_ERROR = -1,     /* *error_r says what (static text) */
	POP3_PARSE_NEED_MORE = 0,  /* every byte given was used */
	POP3_PARSE_COMMAND = 1,    /* *cmd_r is a line */
};

typedef struct pop3_parser pop3_parser;

/* A parser with *limits (copied). Never NULL. */
pop3_parser *pop3_parser_create(const struct pop3_parser_limits *limits);
/* NULLs *p. */
void pop3_parser_destroy(pop3_parser **p);

/* SASL mode on (1) or off (0): lines are a client's SASL responses, up to
 * max_auth_line, not split into a keyword and arguments. Takes effect
 * with the next line. */
void pop3_parser_set_sasl(pop3_parser *p, int on);

/* Consume from data[0..len): *used_r gets the bytes used. Returns
 * POP3_PARSE_COMMAND with *cmd_r (owned by the parser, valid until the
 * next call), POP3_PARSE_ERROR with *error_r (the parser is ready for the
 * next line, or discards up to it), or POP3_PARSE_NEED_MORE. */
int pop3_parser_feed(pop3_parser *p, const uint8_t *data, size_t len, size_t *used_r,
		     struct pop3_command **cmd_r, const char **error_r);

#endif
