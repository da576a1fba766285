/* dsn-params.h: the SMTP DSN extension's parameters (RFC 3461; RFC 6533
 * for the utf-8 address type), parsed from and formatted to the ESMTP
 * parameter text (library maildsn).
 *
 *   MAIL FROM:<s> RET=FULL|HDRS ENVID=xtext
 *   RCPT TO:<r>   NOTIFY=NEVER|SUCCESS,FAILURE,DELAY ORCPT=addr-type;xtext
 *
 * The values come from the network. The parser is bounded (a value is
 * refused, never stored, when it is longer than its limit below, and every
 * result lives in fixed-size fields of the caller's struct: nothing is
 * allocated) and strict: bad hex, lower-case hex, a NEVER combined with
 * another NOTIFY value, an element or a parameter given twice, a decoded
 * ENVID or ORCPT address that is not printable text... are errors. The
 * SMTP server answers an error with
 *     501 5.5.4 <error text>
 * (the text is a fixed static string, safe to send). Fuzzed by
 * fuzz_dsn_params (lib/dsn/fuzz-dsn-params.c).
 *
 * Decisions (docs/dsn.md says why):
 *  - DSN_ENVID_MAX and DSN_ORCPT_MAX (RFC 3461's 100 and 500 characters)
 *    count the value as sent, after "ENVID=" / "ORCPT=", before any
 *    decoding (the decoded value is never longer).
 *  - hexchar is "+" and two UPPER-case hex digits, as RFC 3461 4 says;
 *    "+2b" is an error.
 *  - ORCPT's addr-type is kept as given (lower-cased); rfc822 and utf-8
 *    are understood, any other atom (x400, unknown...) is kept with its
 *    xtext-decoded address, which must be printable US-ASCII, and is
 *    relayed and reported unchanged.
 *  - utf-8 (RFC 6533 3): the address is utf-8-addr-xtext (7-bit, with
 *    \x{HEX} escapes), or utf-8-addr-unitext (raw UTF-8 too) when the
 *    transaction is SMTPUTF8 (DSN_PARSE_SMTPUTF8). HEXPOINT is checked as
 *    the RFC's ABNF has it (shortest form, no surrogate, at most
 *    10FFFF, no escaped printable ASCII other than "\", "+" and "="),
 *    except that hex letters may be either case (ABNF strings are
 *    case-insensitive) and every control 01-1F may be written (the ABNF
 *    leaves out 0A-0F and 1A-1F by mistake). The decoded address must be
 *    valid UTF-8 without control characters (RFC 6531's Mailbox has
 *    none), so nothing decoded can break a header line.
 *
 * No I/O, no global state; every function may run on any thread with its
 * own objects.
 */
#ifndef MAIL_DSN_PARAMS_H
#define MAIL_DSN_PARAMS_H

#include <stddef.h>

#include "buf.h"

/* ---- limits (RFC 3461 4.2, 4.4) ------------------------------------- */

#define DSN_ENVID_MAX 100u    /* octets of the ENVID value as sent (xtext) */
#define DSN_ORCPT_MAX 500u    /* octets of the ORCPT value as sent
				 (addr-type ";" address) */
#define DSN_ADDR_TYPE_MAX 32u /* octets of ORCPT's addr-type */

/* ---- values ------------------------------------------------------------ */

/* NOTIFY= bits. 0 means "NOTIFY was not given". NEVER is alone. */
#define DSN_NOTIFY_SUCCESS 0x01u
#define DSN_NOTIFY_FAILURE 0x02u
#define DSN_NOTIFY_DELAY 0x04u
#define DSN_NOTIFY_NEVER 0x08u

/* RET= */
enum dsn_ret {
	DSN_RET_UNSPECIFIED = 0, /* not given: headers only (docs/dsn.md) */
	DSN_RET_FULL,
	DSN_RET_HDRS,
};

/* What happened to a recipient, as far as NOTIFY is concerned. */
enum dsn_event {
	DSN_EVENT_SUCCESS = 0, /* delivered, relayed to a non-DSN MTA, expanded */
	DSN_EVENT_FAILURE,
	DSN_EVENT_DELAY,
};

/* ORCPT's address type. */
enum dsn_addr_type {
	DSN_ADDR_NONE = 0, /* no ORCPT */
	DSN_ADDR_RFC822,   /* "rfc822": addr is printable US-ASCII */
	DSN_ADDR_UTF8,     /* "utf-8" (RFC 6533): addr is UTF-8 */
	DSN_ADDR_OTHER,    /* any other atom: addr is printable US-ASCII */
};

/* ORCPT=, decoded. */
struct dsn_orcpt {
	enum dsn_addr_type kind;            /* DSN_ADDR_NONE: not given */
	char type[DSN_ADDR_TYPE_MAX + 1];  /* lower-cased addr-type, "" if none */
	char addr[DSN_ORCPT_MAX + 1];      /* decoded, NUL-terminated, no
					      control characters */
};

/* The DSN parameters of MAIL FROM. Zero-initialise (or
 * dsn_mail_params_init) before the first parameter. */
struct dsn_mail_params {
	enum dsn_ret ret;
	int has_envid;
	char envid[DSN_ENVID_MAX + 1]; /* decoded (printable US-ASCII) */
};

/* The DSN parameters of one RCPT TO. Zero-initialise (or
 * dsn_rcpt_params_init) before the first parameter. */
struct dsn_rcpt_params {
	unsigned notify; /* DSN_NOTIFY_* bits; 0: NOTIFY not given */
	struct dsn_orcpt orcpt;
};

void dsn_mail_params_init(struct dsn_mail_params *p);
void dsn_rcpt_params_init(struct dsn_rcpt_params *p);

/* ---- parsing ------------------------------------------------------------ */

/* Flags of the parse functions. */
#define DSN_PARSE_SMTPUTF8 0x01u /* the transaction is SMTPUTF8: ORCPT
				    utf-8 may carry raw UTF-8 (unitext) */

/* One ESMTP parameter of MAIL FROM: key (key_len octets, any case) and
 * its value (value_len octets after "="; value NULL when the parameter
 * had no "="). Both are read during the call only.
 * Returns 1: a DSN parameter (RET, ENVID), stored in *p;
 *         0: not a DSN parameter of MAIL (the caller handles it, or
 *            answers 555 5.5.4);
 *        -1: a DSN parameter with a bad value, or given twice: *error_r
 *            (static text) for "501 5.5.4 <text>"; *p keeps what it had. */
int dsn_mail_param_parse(struct dsn_mail_params *p, const char *key, size_t key_len,
			 const char *value, size_t value_len, unsigned flags,
			 const char **error_r);
/* The same for RCPT TO (NOTIFY, ORCPT). */
int dsn_rcpt_param_parse(struct dsn_rcpt_params *p, const char *key, size_t key_len,
			 const char *value, size_t value_len, unsigned flags,
			 const char **error_r);

/* A whole parameter text ("RET=HDRS ENVID=x SIZE=10", the part of a MAIL
 * or RCPT line after the path), split as the SMTP engine splits it: words
 * separated by spaces, KEY or KEY=VALUE. The DSN parameters go to *p;
 * other keywords are skipped. Returns the number of DSN parameters found
 * (>= 0), or -1 with *error_r (a malformed word counts as an error). For
 * stored envelopes and tests; the SMTP server calls the per-parameter
 * functions from its own loop. */
int dsn_mail_params_parse(struct dsn_mail_params *p, const char *text, size_t len,
			  unsigned flags, const char **error_r);
int dsn_rcpt_params_parse(struct dsn_rcpt_params *p, const char *text, size_t len,
			  unsigned flags, const char **error_r);

/* ---- formatting (our SMTP client relaying the parameters) ------------- */

/* Flags of the format functions. */
#define DSN_FORMAT_SMTPUTF8 0x01u /* the next hop does SMTPUTF8 and the
				     transaction uses it: an ORCPT utf-8
				     address goes as unitext (raw UTF-8) */

/* Append " RET=..." and " ENVID=..." for what p has (nothing when it has
 * nothing), each preceded by one space. */
void dsn_mail_params_format(const struct dsn_mail_params *p, buf *out);
/* Append " NOTIFY=..." and " ORCPT=...". Returns 0, or -1 when the ORCPT
 * address could not be encoded within DSN_ORCPT_MAX (a unitext address
 * sent to a hop without SMTPUTF8 may grow): the ORCPT parameter is then
 * left out (the rest is appended). */
int dsn_rcpt_params_format(const struct dsn_rcpt_params *p, unsigned flags, buf *out);

/* ---- encodings (RFC 3461 4; RFC 6533 3) --------------------------------- */

/* Decode xtext (in, len octets) and append the octets to out. Returns 0,
 * or -1 with *error_r (a byte outside "!".."~", "=", a "+" not followed by
 * two upper-case hex digits). out may have grown on error. */
int dsn_xtext_decode(const char *in, size_t len, buf *out, const char **error_r);
/* Append the xtext of len octets: "!".."~" except "+" and "=" as they
 * are, every other octet as "+XX". Never fails. */
void dsn_xtext_encode(const void *in, size_t len, buf *out);

/* Decode an RFC 6533 utf-8-addr-xtext (or, with DSN_PARSE_SMTPUTF8,
 * utf-8-addr-unitext) and append the UTF-8 address to out. Returns 0, or
 * -1 with *error_r (see the decisions above). */
int dsn_utf8_addr_decode(const char *in, size_t len, unsigned flags, buf *out,
			 const char **error_r);
/* Append the utf-8-addr-xtext of a UTF-8 string (unitext: the
 * utf-8-addr-unitext, non-ASCII characters raw). Invalid UTF-8 octets are
 * written as \x{FFFD}. Never fails. */
void dsn_utf8_addr_encode(const char *in, size_t len, int unitext, buf *out);

/* ---- policy --------------------------------------------------------------- */

/* Does a recipient whose NOTIFY bits are notify (0: NOTIFY absent) want a
 * DSN for event? NOTIFY absent means FAILURE,DELAY (RFC 3461 4.1 leaves
 * it to the MTA); NEVER means none.
 * Returns 1 or 0. */
int dsn_notify_wants(unsigned notify, enum dsn_event event);

#endif
