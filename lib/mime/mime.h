/* mime.h: one bounded MIME parser for IMAP (RFC 2045, 2046, 2047, 2231,
 * RFC 5322; RFC 3501 and RFC 9051 for what it produces).
 *
 * The store node runs it once per message, at delivery or APPEND, and
 * keeps what it gives beside the message's metadata:
 *   - the ENVELOPE, BODYSTRUCTURE and BODY strings exactly as FETCH sends
 *     them (so FETCH never parses a message), and
 *   - the part table: a compact, versioned binary list of every part's
 *     byte offsets, with which BODY[1.2], [1.MIME], [2.HEADER], [2.TEXT],
 *     partials and BINARY are served by slicing the stored bytes
 *     (mime_parts_find()). It crosses the network: every reader validates
 *     it (a corrupt table is an error, never a wild read).
 * It also gives what SEARCH needs on the store: transfer decoding
 * (base64, quoted-printable), charset conversion to UTF-8 through iconv,
 * RFC 2047 header decoding, header iteration and the decoded text of
 * every text part.
 *
 * The parser is incremental (feed any chunking; results do not depend on
 * it), never copies the body (only the header of the part being parsed is
 * buffered, up to a limit) and is bounded by struct mime_limits. A limit
 * never makes parsing fail: the parser degrades (the part where the limit
 * was hit becomes opaque text/plain, or the rest of the message belongs
 * to the part that is open) and sets MIME_RESULT_TRUNCATED. Broken input
 * (a missing close delimiter, a part header cut by a boundary...) is
 * parsed the way Dovecot does and sets MIME_RESULT_BROKEN.
 *
 * Decisions (docs/mime.md says why):
 *   - Type, subtype, encoding, disposition and parameter names are sent
 *     upper-case ("TEXT" "PLAIN" ("CHARSET" "us-ascii")), as RFC 3501's
 *     examples do; parameter values keep their case.
 *   - RFC 2231: continuations are joined (name*0, name*1 -> "NAME");
 *     a value with a charset stays in its RFC 2231 form under "NAME*"
 *     ("utf-8''%E2%82%AC.txt"), as Dovecot sends it: BODYSTRUCTURE is
 *     7-bit, and clients decode RFC 2231 themselves.
 *   - ENVELOPE strings are the raw header values, unfolded (a line break
 *     and the white space after it become one space), RFC 2047 words not
 *     decoded (as RFC 3501 wants); a value with 8-bit bytes, CR, LF or NUL
 *     is sent as a literal {n}\r\n... with its bytes as they are (NUL
 *     becomes a space). Addresses follow Dovecot: a missing local part or
 *     domain is "MISSING_MAILBOX" / "MISSING_DOMAIN", a comment after a
 *     bare addr-spec is the name, groups use RFC 3501's NIL-host form.
 *   - Offsets and sizes are of the stored bytes as they are (a message
 *     with bare LFs is not counted as if it had CRLFs); "lines" is the
 *     number of LF bytes in the part's body, as Dovecot counts.
 *
 * No I/O, no threads, no global state; every call may run on any thread
 * with its own objects. Allocation aborts on failure (xalloc.h).
 */
#ifndef MAIL_MIME_H
#define MAIL_MIME_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* ---- limits ---------------------------------------------------------- */

/* Hard ceilings on the settable limits (a larger setting is clamped). */
#define MIME_DEPTH_MAX 60u      /* nesting of multiparts and messages */
#define MIME_PATH_MAX 64u       /* components of a section path */
#define MIME_BOUNDARY_MAX 1024u /* bytes of a boundary */
#define MIME_CHARSET_MAX 63u    /* bytes of a charset name in the part table */

struct mime_limits {
	/* Nesting of multiparts and message/rfc822 parts: an entity this
	 * deep is a text/plain leaf. Default 32, at most MIME_DEPTH_MAX. */
	unsigned max_depth;
	/* Entities (the message, every part, every encapsulated message).
	 * When reached, no boundary is recognised any more: the rest of the
	 * message belongs to the parts that are open. Default 1000. */
	unsigned max_parts;
	/* Bytes of one header (the message's or a part's). Beyond it the
	 * header ends at the last whole line and the rest of the part is its
	 * text/plain body. Default 256 KiB. */
	size_t max_header_bytes;
	/* Fields (lines not starting with white space) of one header; beyond
	 * it, as for max_header_bytes. Default 2000. */
	unsigned max_header_fields;
	/* A boundary longer than this makes its multipart a text/plain leaf.
	 * Default 70 (RFC 2046 5.1.1), at most MIME_BOUNDARY_MAX. */
	unsigned max_boundary_len;
	/* Parameters kept per Content-Type / Content-Disposition (after
	 * RFC 2231 joining); the rest are dropped. Default 64. */
	unsigned max_params;
	/* Bytes of one string in ENVELOPE or BODYSTRUCTURE (a subject, a
	 * parameter value, a display name...); longer ones are cut. Default
	 * 16 KiB. */
	size_t max_value_bytes;
	/* Addresses (group markers included) kept per ENVELOPE address
	 * field. Default 1000. */
	unsigned max_addresses;
};

/* The defaults above. */
struct mime_limits mime_limits_default(void);

/* ---- the parser -------------------------------------------------------- */

#define MIME_RESULT_TRUNCATED 0x01u /* a limit was hit; the parse degraded */
#define MIME_RESULT_BROKEN 0x02u    /* a multipart without its close delimiter,
				     * without a usable boundary, a header
				     * cut by a boundary or by the end... */
#define MIME_RESULT_8BIT_HEADER 0x04u /* a header has bytes >= 0x80 */

struct mime_result {
	/* NUL-terminated, no NUL inside (literals may hold 8-bit bytes). */
	char *envelope;      /* "(date subject from sender ...)" */
	size_t envelope_len;
	char *bodystructure; /* FETCH BODYSTRUCTURE (extensible form) */
	size_t bodystructure_len;
	char *body;          /* FETCH BODY (non-extensible form) */
	size_t body_len;
	uint8_t *parts;      /* the part table (mime_parts_*) */
	size_t parts_len;
	uint64_t size;       /* bytes of the message */
	unsigned n_parts;    /* entries of the part table */
	unsigned flags;      /* MIME_RESULT_* */
};

/* Free a result and NULL *r (NULL or *r NULL: nothing). */
void mime_result_free(struct mime_result **r);

typedef struct mime_parser mime_parser;

/* A parser for one message. limits NULL means mime_limits_default();
 * they are copied (zero fields take the default). Never NULL; free with
 * mime_parser_destroy(). */
mime_parser *mime_parser_create(const struct mime_limits *limits);
/* Free the parser and NULL *p (NULL or *p NULL: nothing). */
void mime_parser_destroy(mime_parser **p);
/* Feed the next len bytes of the message (data is read during the call
 * only). Any chunking gives the same result. Never fails: 0. Feeding
 * after finish aborts (the caller's bug). */
int mime_parser_feed(mime_parser *p, const void *data, size_t len);
/* The message is complete: build the result (*r, owned by the caller,
 * freed with mime_result_free()). Returns 1. The parser is spent: only
 * mime_parser_destroy() may follow. */
int mime_parser_finish(mime_parser *p, struct mime_result **r);
/* create + feed(msg) + finish + destroy. Returns 1. */
int mime_analyze(const void *msg, size_t len, const struct mime_limits *limits,
		 struct mime_result **r);

/* ---- the part table ---------------------------------------------------- */

enum mime_encoding {
	MIME_ENC_7BIT = 0, /* also: no Content-Transfer-Encoding */
	MIME_ENC_8BIT,
	MIME_ENC_BINARY,
	MIME_ENC_BASE64,
	MIME_ENC_QP,       /* quoted-printable */
	MIME_ENC_UNKNOWN,  /* anything else: BINARY answers [UNKNOWN-CTE] */
};

#define MIME_PART_MULTIPART 0x01u /* any multipart: body holds the subparts */
#define MIME_PART_MESSAGE 0x02u   /* message/rfc822 (and the root): hdr/text valid */
#define MIME_PART_TEXT 0x04u      /* any text type (charset says which) */
#define MIME_PART_HTML 0x08u      /* text/html */

/* One entry of the part table. Offsets are from the start of the
 * message; every region lies within it. */
struct mime_part_loc {
	uint32_t path[MIME_PATH_MAX]; /* section numbers, e.g. 1.2 = {1, 2} */
	unsigned depth;               /* 0: the whole message */
	unsigned flags;               /* MIME_PART_* */
	enum mime_encoding encoding;  /* of body */
	char charset[MIME_CHARSET_MAX + 1]; /* text parts: lower-case, "us-ascii"
					     * by default; "" otherwise */
	/* [n.MIME]: the part's own MIME header, blank line included; for
	 * the root and for the body part of a non-multipart message, the
	 * message header. */
	uint64_t mime_off, mime_len;
	/* [n]: the part's content (for a multipart, its subparts with their
	 * boundaries; depth 0: the whole message). */
	uint64_t body_off, body_len;
	/* MIME_PART_MESSAGE only: the encapsulated message's header
	 * ([n.HEADER], blank line included) and text ([n.TEXT]); for the
	 * root, the message's own. */
	uint64_t hdr_off, hdr_len;
	uint64_t text_off, text_len;
};

/* Find the part at path (depth components; depth 0 = the whole message)
 * with RFC 3501's numbering: [1] of a non-multipart message is its body;
 * the parts of a message/rfc822 part n are numbered as its message's
 * parts (n.1 is the first part of that message when it is multipart, its
 * body when not). Returns 1 (found, *loc_r filled), 0 (no such part),
 * -1 (the table is corrupt). */
int mime_parts_find(const uint8_t *parts, size_t len, const uint32_t *path, size_t depth,
		    struct mime_part_loc *loc_r);
/* Decode and validate the whole table: *locs_r (caller frees with free())
 * gets every entry in depth-first order, the root first. Returns the
 * number of entries (>= 1), or -1 when the table is corrupt (then
 * *locs_r is NULL). msg_size_r (may be NULL) gets the message size the
 * table was made for. */
int mime_parts_decode(const uint8_t *parts, size_t len, struct mime_part_loc **locs_r,
		      uint64_t *msg_size_r);

/* ---- decoding ------------------------------------------------------------ */

/* Append the decoded bytes of len bytes of content in encoding enc to
 * out. base64 skips every byte outside its alphabet (line breaks,
 * garbage: RFC 2045 6.8) and stops at '='; quoted-printable decodes =XX
 * (either case), drops soft line breaks ("=" at the end of a line, white
 * space allowed before the break) and the white space at the end of
 * lines, and keeps a malformed '=' as it is; 7bit, 8bit and binary are
 * copied. Returns 0, or -1 for MIME_ENC_UNKNOWN (nothing appended). */
int mime_decode_transfer(enum mime_encoding enc, const void *in, size_t len, buf *out);
/* Append in (len bytes in charset) as UTF-8. Names are matched as iconv
 * knows them (case-insensitive); "us-ascii", "utf-8", "utf8" and an empty
 * name are taken as UTF-8. Invalid or unconvertible bytes become U+FFFD.
 * Returns 0, or -1 when the charset is unknown: then in is appended as
 * UTF-8 with invalid bytes replaced (still usable for search). */
int mime_charset_to_utf8(const char *charset, const void *in, size_t len, buf *out);
/* Append a header value (raw, as in the message: folded, RFC 2047 words)
 * as UTF-8: unfolded (line breaks removed), encoded words in any charset
 * decoded (white space between adjacent encoded words dropped, adjacent
 * words of one charset joined before conversion so split characters
 * survive), other bytes taken as UTF-8, invalid ones replaced by U+FFFD.
 * Never fails. */
void mime_header_decode(const void *raw, size_t len, buf *utf8);

/* ---- headers and text for SEARCH ----------------------------------------- */

/* Called for each field of a header: name (without the colon and the
 * white space before it) and its raw value (after the colon, folding and
 * encoded words as they are, without the final line break). Return 0 to
 * go on, anything else to stop (mime_header_foreach returns it). */
typedef int mime_header_cb(const char *name, size_t name_len, const char *value,
			   size_t value_len, void *arg);
/* Iterate the fields of header (len bytes; it ends at its blank line or
 * at len). Lines without a colon are skipped. Returns 0 or what the
 * callback stopped with. */
int mime_header_foreach(const void *header, size_t len, mime_header_cb *cb, void *arg);

/* Called with the decoded UTF-8 text of one text part (the whole part in
 * one call; not NUL-terminated). Return 0 to go on, anything else to
 * stop. */
typedef int mime_text_cb(const char *utf8, size_t len, void *arg);
/* For every text leaf (text/plain, text/html...) of msg, as the part
 * table describes it, in order: decode its transfer encoding and charset
 * and call cb. HTML is passed as it is (tags and entities not stripped);
 * text inside message/rfc822 parts is included. Parts with an unknown
 * transfer encoding are skipped. Work and memory are linear in len.
 * Returns 0, what the callback stopped with, or -1 when the table is
 * corrupt or not made for a message of len bytes. */
int mime_text_foreach(const void *msg, size_t len, const uint8_t *parts, size_t parts_len,
		      mime_text_cb *cb, void *arg);

/* Append to out the fields of header (a message or MIME header, len
 * bytes) whose names are (negate 0) or are not (negate 1) among names
 * (n of them, case-insensitive), whole (continuation lines and line
 * breaks kept as they are), in header order, then the blank line "\r\n"
 * that ends BODY[HEADER.FIELDS (...)] and HEADER.FIELDS.NOT. */
void mime_header_filter(const void *header, size_t len, const char *const *names, size_t n,
			int negate, buf *out);

#endif
