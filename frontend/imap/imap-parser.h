/* imap-parser.h: the IMAP4rev1 (RFC 3501) command parser, plus the helpers
 * that give meaning to argument strings: sequence sets and FETCH attributes.
 *
 * Pure: no I/O, no loop, no global state; one parser per connection, used by
 * one thread at a time. Library `mailimap`.
 *
 * The parser is incremental: feed it whatever bytes arrived, it consumes up
 * to the first event (a whole command, a synchronising literal that needs a
 * "+ " continuation, or an error) and says how much it used. Every limit is
 * in struct imap_parser_limits and is checked before a byte is stored; the
 * parser never buffers more than the limits allow:
 *   - a command line (all its non-literal bytes) longer than max_line is
 *     discarded up to the next LF and reported as "Line too long";
 *   - a literal larger than max_literal (or literals adding up to more than
 *     max_literal in one command), or a non-synchronising one larger than
 *     max_nonsync_literal (when not 0: LITERAL-, RFC 7888 4), is refused:
 *     a synchronising literal {n} is answered at once (the client must not
 *     send the bytes, RFC 3501 7.5), a non-synchronising one {n+}
 *     (LITERAL+, RFC 7888) is skipped without being stored and so is the
 *     rest of its command (its later {n+} literals included), then the
 *     error is reported;
 *   - with literal_events set, such a literal is instead reported as
 *     IMAP_PARSE_LITERAL and the caller decides: accept it (it is stored
 *     whole, outside max_literal: the caller bounds it, e.g. by
 *     APPENDLIMIT, and the memory grows with the bytes that arrived, never
 *     ahead of them beyond doubling) or refuse it (the caller answers the
 *     command itself; its bytes and the rest of the command are dropped,
 *     and IMAP_PARSE_DROPPED marks where it ended);
 *   - more than max_args arguments or lists nested deeper than max_depth
 *     fail the command.
 * After any error the parser resynchronises at the end of the command:
 * the next LF that does not end a "{n+}" literal header (whose bytes are
 * skipped, RFC 7888 3); its state is then ready for the next command.
 *
 * Grammar accepted (a little more lenient than RFC 3501 where that is safe):
 *   command  = tag SP name *(SP arg) [CR] LF
 *   arg      = atom / quoted / literal / "(" [arg *(SP arg)] ")" / NIL
 *   atom     = 1*(any CHAR except SP CTL ( ) { " ) with "[...]" sections
 *              taken whole, so BODY[HEADER.FIELDS (FROM TO)]<0.100> is one
 *              atom; '*', '%' and '\' are allowed (sequence sets, LIST
 *              wildcards, flags)
 *   quoted   = DQUOTE *(char except CR LF NUL, with \\ and \" escapes) DQUOTE
 *   literal  = ["~"] "{" number ["+"] "}" CRLF *OCTET
 *              ("~": literal8 of RFC 3516 BINARY, for APPEND; NUL allowed)
 * Runs of spaces between arguments are accepted. An empty line is ignored.
 */
#ifndef MAIL_IMAP_PARSER_H
#define MAIL_IMAP_PARSER_H

#include <stddef.h>
#include <stdint.h>

/* ---- limits ---------------------------------------------------------- */

/* Defaults (rows: name, default before / after authentication, why):
 *   max_line     8 KiB / 64 KiB  all non-literal bytes of one command
 *   max_literal  8 KiB / 64 KiB  one literal, and all literals of a command
 *                                (no APPEND yet: literals carry only names
 *                                and credentials)
 *   max_args     64 / 4096       arguments counted over every nesting level
 *   max_depth    4 / 16          parenthesised list nesting (and "[" in atoms)
 *   max_nonsync_literal  0 / 0   0: any size (LITERAL+); the engine sets
 *                                4096 for LITERAL-
 *   literal_events       0 / 0   1: over-limit literals become
 *                                IMAP_PARSE_LITERAL (the engine sets it)
 *   atom_utf8            0 / 0   1: 8-bit bytes in atoms (the engine sets
 *                                it once UTF-8 names are enabled: clients
 *                                such as Python's imaplib then send them
 *                                unquoted; the name decoder checks UTF-8)
 * Hard bounds: max_line >= 64, max_depth <= IMAP_PARSER_DEPTH_MAX. */
#define IMAP_PARSER_PREAUTH_MAX_LINE (8u * 1024u)
#define IMAP_PARSER_PREAUTH_MAX_LITERAL (8u * 1024u)
#define IMAP_PARSER_PREAUTH_MAX_ARGS 64u
#define IMAP_PARSER_PREAUTH_MAX_DEPTH 4u
#define IMAP_PARSER_AUTH_MAX_LINE (64u * 1024u)
#define IMAP_PARSER_AUTH_MAX_LITERAL (64u * 1024u)
#define IMAP_PARSER_AUTH_MAX_ARGS 4096u
#define IMAP_PARSER_AUTH_MAX_DEPTH 16u
#define IMAP_PARSER_DEPTH_MAX 32u

struct imap_parser_limits {
	size_t max_line;
	size_t max_literal;
	size_t max_args;
	unsigned max_depth;
	size_t max_nonsync_literal;
	int literal_events;
	int atom_utf8; /* bytes >= 0x80 are atom characters too */
};

/* Fill *limits with the defaults above for the given state. */
void imap_parser_limits_default(struct imap_parser_limits *limits, int authenticated);

/* ---- parsed commands ------------------------------------------------- */

enum imap_arg_type {
	IMAP_ARG_NIL,     /* the atom NIL (any case) */
	IMAP_ARG_ATOM,
	IMAP_ARG_QUOTED,
	IMAP_ARG_LITERAL, /* may contain NUL bytes: use len */
	IMAP_ARG_LIST,
};

struct imap_arg_list;

struct imap_arg {
	enum imap_arg_type type;
	/* ATOM, QUOTED, LITERAL (and NIL: "NIL"): the bytes, NUL-terminated. */
	char *str;
	size_t len;
	int literal8; /* LITERAL written ~{n} (RFC 3516) */
	/* LIST only. */
	struct imap_arg_list *list;
};

struct imap_arg_list {
	struct imap_arg *args;
	size_t count;
	size_t cap;
};

struct imap_command {
	char *tag;  /* NULL only in an error result when no tag could be read */
	char *name; /* upper-cased; NULL in an error result before the name */
	struct imap_arg_list args;
};

/* Is arg an astring (atom, quoted or literal)? If so and s_r is not NULL,
 * point *s_r at its bytes. Returns 1 or 0. */
int imap_arg_get_astring(const struct imap_arg *arg, const char **s_r);
/* Is arg an atom? Returns 1 or 0 (and *s_r as above). */
int imap_arg_get_atom(const struct imap_arg *arg, const char **s_r);

/* ---- the parser ------------------------------------------------------ */

typedef struct imap_parser imap_parser;

/* Results of imap_parser_feed(). */
#define IMAP_PARSE_ERROR (-1)       /* *cmd_r has tag/name (maybe NULL), *error_r */
#define IMAP_PARSE_NEED_MORE 0      /* every byte was used; feed more */
#define IMAP_PARSE_COMMAND 1        /* *cmd_r is a whole command */
#define IMAP_PARSE_CONTINUATION 2   /* a {n} literal: send "+ ..." then feed on */
#define IMAP_PARSE_LITERAL 3        /* literal_events: a literal over the limits;
				     * *cmd_r has the tag, name and the arguments
				     * so far (read only); see
				     * imap_parser_literal_get(), then call
				     * imap_parser_literal_accept() or
				     * imap_parser_literal_refuse() before the
				     * next feed */
#define IMAP_PARSE_DROPPED 4        /* the rest of a command refused with
				     * imap_parser_literal_refuse() was read and
				     * dropped (nothing to answer): the parser
				     * stops there so the caller sees the end */

/* limits is copied. Never NULL. */
imap_parser *imap_parser_create(const struct imap_parser_limits *limits);
/* Frees the parser and its last command. NULLs *parser. */
void imap_parser_destroy(imap_parser **parser);
/* New limits take effect from the next byte; meant to be called between
 * commands (after LOGIN). Limits are clamped to their hard bounds. */
void imap_parser_set_limits(imap_parser *parser, const struct imap_parser_limits *limits);

/* Consume bytes of data[0..len) up to the first event; *consumed_r says how
 * many were used (the caller keeps the rest for the next call).
 * Returns IMAP_PARSE_* above. With IMAP_PARSE_COMMAND, *cmd_r is owned by
 * the parser and valid until the next feed/destroy. With IMAP_PARSE_ERROR,
 * *cmd_r holds what was read of the tag and name (for "tag BAD ...") and
 * *error_r a static, client-safe text. Strings of a finished command are
 * wiped when it is freed (they may hold passwords). */
int imap_parser_feed(imap_parser *parser, const uint8_t *data, size_t len, size_t *consumed_r,
		     struct imap_command **cmd_r, const char **error_r);

/* Is the parser between commands (no partial command buffered)? */
int imap_parser_is_idle(const imap_parser *parser);

/* The literal of an IMAP_PARSE_LITERAL event. */
struct imap_parser_literal {
	uint64_t size;   /* as the client declared it */
	int nonsync;     /* {n+}: its bytes come without a "+" */
	int literal8;    /* ~{n} */
};
void imap_parser_literal_get(const imap_parser *parser, struct imap_parser_literal *lit_r);
/* Store the literal (the caller sends "+ ..." for a synchronising one). */
void imap_parser_literal_accept(imap_parser *parser);
/* Drop it: a synchronising literal ends the command (the caller answers
 * it now, the client sends nothing more of it); a non-synchronising one
 * is skipped with the rest of its command, whose end is reported as
 * IMAP_PARSE_DROPPED (no other event comes for it). */
void imap_parser_literal_refuse(imap_parser *parser);

/* ---- sequence sets (RFC 3501 sequence-set) -------------------------- */

/* '*' before resolution. */
#define IMAP_SEQ_STAR 0u

struct imap_seq_range {
	uint32_t lo;
	uint32_t hi;
};

struct imap_seqset {
	struct imap_seq_range *ranges;
	size_t count;
};

/* Parse "1:*", "3,5:7", "7:3" ... into *set_r (caller frees with
 * imap_seqset_deinit). At most max_ranges ranges. Numbers are 1..2^32-1.
 * Returns 0, or -1 with *error_r (static text) and *set_r empty. */
int imap_seqset_parse(const char *s, size_t max_ranges, struct imap_seqset *set_r,
		      const char **error_r);
void imap_seqset_deinit(struct imap_seqset *set);
/* Replace '*' by star (the highest sequence number or UID in use; 0 for an
 * empty mailbox), order each range lo <= hi, sort and merge the ranges. */
void imap_seqset_resolve(struct imap_seqset *set, uint32_t star);
/* After resolve: is n in the set? 1 or 0. */
int imap_seqset_contains(const struct imap_seqset *set, uint32_t n);
/* After resolve: the largest number in the set (0 when empty). */
uint32_t imap_seqset_max(const struct imap_seqset *set);

/* ---- FETCH attributes ------------------------------------------------ */

#define IMAP_FETCH_FLAGS 0x01u
#define IMAP_FETCH_UID 0x02u
#define IMAP_FETCH_RFC822_SIZE 0x04u
#define IMAP_FETCH_INTERNALDATE 0x08u
#define IMAP_FETCH_MODSEQ 0x10u        /* RFC 7162 */
#define IMAP_FETCH_ENVELOPE 0x20u
#define IMAP_FETCH_BODYSTRUCTURE 0x40u
#define IMAP_FETCH_BODY 0x80u          /* BODY without a section: the
					* non-extensible structure */
/* Items answered from the stored structure (IMAP_META_STRUCTURE). */
#define IMAP_FETCH_STRUCTURE_ITEMS (IMAP_FETCH_ENVELOPE | IMAP_FETCH_BODYSTRUCTURE | IMAP_FETCH_BODY)

enum imap_fetch_section {
	IMAP_SECTION_ALL,               /* BODY[] / RFC822 / BODY[1] */
	IMAP_SECTION_HEADER,            /* BODY[HEADER] / RFC822.HEADER */
	IMAP_SECTION_TEXT,              /* BODY[TEXT] / RFC822.TEXT */
	IMAP_SECTION_HEADER_FIELDS,     /* BODY[HEADER.FIELDS (f1 f2 ...)] */
	IMAP_SECTION_HEADER_FIELDS_NOT, /* BODY[HEADER.FIELDS.NOT (f1 f2 ...)] */
	IMAP_SECTION_MIME,              /* BODY[1.MIME]: a part's MIME header */
};

enum imap_fetch_kind {
	IMAP_FETCH_KIND_BODY = 0,   /* BODY[...], BODY.PEEK[...], RFC822* */
	IMAP_FETCH_KIND_BINARY,     /* BINARY[...], BINARY.PEEK[...] (RFC 3516) */
	IMAP_FETCH_KIND_BINARY_SIZE /* BINARY.SIZE[...] */
};

/* Bounds on the field list of HEADER.FIELDS[.NOT] (STYLE.md rule 11); a
 * longer list or name is refused with BAD ("Too many header fields",
 * "Header field name too long"). 64 covers every client seen (Thunderbird
 * asks for about 15); no header field name in use comes near 128 bytes.
 * Part numbers ([1.2.3]) nest at most IMAP_FETCH_PART_DEPTH_MAX deep (the
 * MIME parser's own nesting bound is lower). */
#define IMAP_FETCH_FIELDS_MAX 64u
#define IMAP_FETCH_FIELD_NAME_MAX 128u
#define IMAP_FETCH_PART_DEPTH_MAX 16u

struct imap_fetch_body {
	enum imap_fetch_section section;
	enum imap_fetch_kind kind;
	int peek;      /* BODY.PEEK[...], BINARY.PEEK, BINARY.SIZE or
			* RFC822.HEADER: do not set \Seen */
	int rfc822;    /* answer as RFC822[.HEADER|.TEXT] rather than BODY[...] */
	int partial;   /* <offset.count> given */
	uint32_t offset;
	uint32_t count;
	/* the part number, [2.1] -> {2, 1}; n_part 0: the whole message */
	uint32_t part[IMAP_FETCH_PART_DEPTH_MAX];
	unsigned n_part;
	/* HEADER_FIELDS[_NOT] only (NULL otherwise): the field names,
	 * upper-cased, separated by one space ("FROM SUBJECT"), as the
	 * response names the section. Owned by the imap_fetch_attrs that holds
	 * this body; freed by imap_fetch_attrs_deinit(). */
	char *fields;
	size_t n_fields; /* 1..IMAP_FETCH_FIELDS_MAX names in fields */
};

#define IMAP_FETCH_BODIES_MAX 8u

struct imap_fetch_attrs {
	unsigned items; /* IMAP_FETCH_* bits */
	size_t n_bodies;
	struct imap_fetch_body bodies[IMAP_FETCH_BODIES_MAX];
};

/* Parse the attribute argument of FETCH: one atom (an item or the macros
 * ALL, FAST, FULL) or a list of atoms (RFC 3501 6.4.5, RFC 9051, RFC
 * 3516, RFC 7162): FLAGS UID RFC822.SIZE INTERNALDATE MODSEQ ENVELOPE
 * BODYSTRUCTURE BODY RFC822 RFC822.HEADER RFC822.TEXT, BODY[section]<o.n>,
 * BODY.PEEK[...], BINARY[part]<o.n>, BINARY.PEEK[part], BINARY.SIZE[part].
 * Sections: [], [HEADER], [TEXT], [HEADER.FIELDS (names)],
 * [HEADER.FIELDS.NOT (names)], [n(.n)*] optionally followed by .HEADER,
 * .TEXT, .HEADER.FIELDS[.NOT] (...) or .MIME; each field name an atom of
 * printable ASCII other than ( ) { " \ ] % * :, the list bounded as above.
 * At most IMAP_FETCH_BODIES_MAX sections in one FETCH.
 * *attrs_r is overwritten (not freed first). Returns 0 with *attrs_r
 * owning what it allocated (free with imap_fetch_attrs_deinit()), or -1
 * with *error_r (static, client-safe text) and nothing left to free. */
int imap_fetch_attrs_parse(const struct imap_arg *arg, struct imap_fetch_attrs *attrs_r,
			   const char **error_r);
/* Free what imap_fetch_attrs_parse() allocated and leave *attrs empty.
 * Safe to call again, and on attrs zeroed or left by a failed parse. */
void imap_fetch_attrs_deinit(struct imap_fetch_attrs *attrs);

/* Does the header field name[0..len) (as in a message, before its ':')
 * match one of body->fields? Case-insensitive, as RFC 3501 6.4.5 wants.
 * Returns 1 or 0. */
int imap_fetch_body_field_match(const struct imap_fetch_body *body, const char *name,
				size_t len);
/* Does the FETCH need the message's bytes (some section)? 1 or 0. */
int imap_fetch_attrs_need_body(const struct imap_fetch_attrs *attrs);

#endif
