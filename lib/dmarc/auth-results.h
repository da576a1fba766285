/* auth-results.h: the Authentication-Results header field (RFC 8601):
 * composing ours, and finding the incoming ones that claim our
 * authserv-id so the MX can drop them (RFC 8601 5). Library
 * `mailauthres` (lib/dmarc/CMakeLists.txt); no state outside the objects
 * below, no I/O, no logging.
 *
 * Composing. authres_compose() writes one whole field from a list of
 * method results (spf, dkim (one per signature), dmarc, ...), each with
 * its properties:
 *
 *   Authentication-Results: mx.example.net;
 *   	spf=pass smtp.mailfrom=alice@example.org;
 *   	dkim=pass header.d=example.org header.s=s1 header.a=rsa-sha256
 *   	 header.b="AbC/dEf+";
 *   	dmarc=pass (p=reject dis=none) header.from=example.org
 *
 * Every value that reaches the field may come from the network (a d=, a
 * From domain, an envelope address): it is written bare only when it is a
 * token or local-part@domain (RFC 8601 2.2 pvalue), else as a
 * quoted-string; control characters (CR, LF among them) become '?', so no
 * value can end the field or start another. Values and comments are cut at
 * AUTHRES_VALUE_MAX bytes, so no line exceeds RFC 5322's 998.
 *
 * Finding ours. An authres_scanner reads a message's header section
 * incrementally (any split of the bytes gives the same answers) and reports
 * each header field with its offset and length, and whether it is an
 * Authentication-Results field that claims our authserv-id. A field
 * "claims ours" when its authserv-id equals ours ignoring ASCII case and one
 * trailing dot, and also when its authserv-id cannot be read within the
 * limits (a comment or quoted-string that does not end, more than
 * max_id_scan bytes of comments before the id, an empty id): nobody
 * downstream can tell such a field from ours, so it goes too. Other
 * servers' fields (and ARC-Authentication-Results) are left alone.
 * authres_strip_ours() does the whole job on a message in memory.
 *
 * Threads: every object belongs to its creator's thread; different objects
 * may be used on different threads at once.
 */
#ifndef MAIL_AUTH_RESULTS_H
#define MAIL_AUTH_RESULTS_H

#include <stddef.h>
#include <stdint.h>

/* ---- composing ------------------------------------------------------------ */

/* Properties per method, most. */
#define AUTHRES_PROPS_MAX 8u
/* Longest value or comment written, in bytes (longer ones are cut). */
#define AUTHRES_VALUE_MAX 256u
/* Fold before a property that would take a line past this many bytes. */
#define AUTHRES_LINE_FOLD 78u

/* One property: ptype.property=value, e.g. "header", "d", "example.org".
 * ptype and property are keywords (letters, digits, '-', '_'; the
 * caller's constants); value is any bytes, NUL-terminated. A NULL or empty
 * value leaves the property out. */
struct authres_prop {
	const char *ptype;
	const char *property;
	const char *value;
};

/* One method result: method=result [(comment)] props... e.g. "dkim",
 * "fail", "bad body hash". method and result are keywords; comment (NULL:
 * none) is free text. All borrowed for the call. */
struct authres_method {
	const char *method;
	const char *result;
	const char *comment;
	struct authres_prop props[AUTHRES_PROPS_MAX];
	size_t n_props;
};

/* The field "Authentication-Results: <authserv_id>; m1; m2...\r\n" for
 * methods[0..n) in that order, each on its own folded line, or
 * "Authentication-Results: <authserv_id>; none\r\n" when n is 0 (RFC
 * 8601 2.2 no-result). Returns MAIL_OK with *field_r (heap,
 * NUL-terminated, caller frees; CRLF line ends, continuation lines start
 * with a TAB) and *len_r; MAIL_ERR_PARAMS with *error_r (static) when
 * authserv_id is empty or not a valid value, or a method, result, ptype or
 * property is not a keyword, or n_props > AUTHRES_PROPS_MAX (caller bugs,
 * never the network's input). */
int authres_compose(const char *authserv_id, const struct authres_method *methods, size_t n,
		    char **field_r, size_t *len_r, const char **error_r);

/* ---- finding the fields that claim our authserv-id ------------------------- */

struct authres_limits {
	/* Bytes of an Authentication-Results field's value kept to read its
	 * authserv-id (it comes first, after optional comments); a field whose
	 * id is not complete within them claims ours. Default 1024,
	 * 64..65536. */
	size_t max_id_scan;
	/* Bytes of header section scanned; more is MAIL_ERR_LIMIT. Default
	 * 1 MiB, 1 KiB..1 GiB. */
	size_t max_header_bytes;
};

#define AUTHRES_ID_SCAN_DEFAULT 1024u
#define AUTHRES_ID_SCAN_MIN 64u
#define AUTHRES_ID_SCAN_MAX 65536u
#define AUTHRES_HEADER_DEFAULT (1024u * 1024u)
#define AUTHRES_HEADER_MIN 1024u
#define AUTHRES_HEADER_MAX (1024u * 1024u * 1024u)

/* The defaults above. */
struct authres_limits authres_limits_default(void);

/* One header field as the scanner saw it. */
struct authres_field {
	uint64_t offset; /* its first byte, from the start of the stream */
	uint64_t length; /* through the line end of its last line (CRLF or LF) */
	int is_authres;  /* its name is Authentication-Results (any case) */
	int ours;        /* is_authres and it claims our id (see the top) */
};

typedef struct authres_scanner authres_scanner;

/* A scanner for authserv_id (copied; NULL or empty: MAIL_ERR_PARAMS) with
 * limits (copied; NULL: the defaults). MAIL_OK and *scanner_r, or
 * MAIL_ERR_PARAMS with *error_r (static) for an id or limit out of
 * range. */
int authres_scanner_create(const char *authserv_id, const struct authres_limits *limits,
			   authres_scanner **scanner_r, const char **error_r);
/* Free *scanner and NULL it; NULL is fine. */
void authres_scanner_destroy(authres_scanner **scanner);

/* Feed the next data[0..len) of the message (its first bytes first). Reads
 * until one field is complete (known at the first byte of the next line,
 * which is not consumed) or data runs out; *consumed_r says how many bytes
 * it used: feed the rest again.
 *   1  *field_r is a complete field; more may follow in the rest of data.
 *   0  data was all consumed; give more, or call authres_scanner_finish().
 *      Once the empty line ending the header is consumed, the rest (the
 *      body) is consumed without being read and 0 is returned.
 *  -1  more than max_header_bytes of header, or a feed after
 *      authres_scanner_finish() (*error_r, static); every later call
 *      returns -1 too.
 * Lines may end in CRLF or bare LF. A line that is not name:value (no
 * colon) counts as a field that is not Authentication-Results. */
int authres_scanner_feed(authres_scanner *scanner, const void *data, size_t len,
			 size_t *consumed_r, struct authres_field *field_r, const char **error_r);

/* The input ended (no more bytes). 1 with *field_r for the last field
 * when the input ended inside the header (a message without a body, or
 * with a header cut short: the last field's length then ends where the
 * input did); else 0. Later feeds are errors (MAIL_ERR_PARAMS). */
int authres_scanner_finish(authres_scanner *scanner, struct authres_field *field_r);

/* 1 once the empty line ending the header section was consumed. */
int authres_scanner_header_done(const authres_scanner *scanner);

/* Does the value of one Authentication-Results field (what follows the
 * colon, folded as received; value[0..len)) claim authserv_id? 1 yes (or
 * cannot be read within max_id_scan bytes), 0 no. The scanner's rule,
 * for callers that have the field at hand. */
int authres_value_claims(const char *value, size_t len, const char *authserv_id,
			 size_t max_id_scan);

/* Remove from msg[0..*len) (a whole message, or its header section) every
 * field that claims authserv_id, in place: the bytes after each are
 * moved up and *len shrinks. *removed_r (may be NULL) gets how many
 * fields went. MAIL_OK; MAIL_ERR_PARAMS as authres_scanner_create(), or
 * MAIL_ERR_LIMIT for a header over max_header_bytes (then msg is
 * unchanged), with *error_r. */
int authres_strip_ours(uint8_t *msg, size_t *len, const char *authserv_id,
		       const struct authres_limits *limits, size_t *removed_r,
		       const char **error_r);

#endif
