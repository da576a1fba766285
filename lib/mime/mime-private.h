/* mime-private.h: what the files of lib/mime share (not a contract). */
#ifndef MAIL_MIME_PRIVATE_H
#define MAIL_MIME_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "mime.h"

/* A string in a parser's arena (struct mime__strs): off/len into
 * arena.data; off == MIME__NIL is NIL. */
#define MIME__NIL SIZE_MAX
struct mime__str {
	size_t off, len;
};

struct mime__param {
	struct mime__str name, value; /* name as written (upper-cased on output) */
};

/* Strings and lists of one parse; everything a finished header leaves
 * behind lives here (the header bytes themselves are not kept). */
struct mime__strs {
	buf arena;
	struct mime__param *params;
	size_t n_params, cap_params;
	struct mime__str *list; /* Content-Language tags */
	size_t n_list, cap_list;
};

/* What a part's header says (RFC 2045, 2183, 3282, 2557, 1864). */
struct mime__content {
	struct mime__str type, subtype; /* lower-cased */
	size_t params, n_params;        /* Content-Type parameters */
	struct mime__str id, desc, md5, loc;
	struct mime__str enc_name;      /* Content-Transfer-Encoding, NIL: 7BIT */
	enum mime_encoding enc;
	struct mime__str disp;          /* disposition type, NIL: no field */
	size_t disp_params, n_disp_params;
	size_t langs, n_langs;          /* n_langs 0: NIL */
	struct mime__str charset;       /* lower-cased, text parts only */
	struct mime__str boundary;      /* multipart only */
	struct mime__str envelope;      /* message headers only: ENVELOPE text */
};

const uint8_t *mime__str_ptr(const struct mime__strs *s, struct mime__str str);
/* Copy bytes into the arena. */
struct mime__str mime__str_add(struct mime__strs *s, const void *data, size_t len);
/* The same, lower-cased. */
struct mime__str mime__str_add_lower(struct mime__strs *s, const void *data, size_t len);
size_t mime__param_add(struct mime__strs *s, struct mime__str name, struct mime__str value);
size_t mime__list_add(struct mime__strs *s, struct mime__str str);
void mime__strs_deinit(struct mime__strs *s);

/* ---- header fields (mime-header.c) ---- */

struct mime__field {
	const uint8_t *name;  /* NULL: a line without a colon */
	size_t name_len;
	const uint8_t *value; /* after the colon and leading white space */
	size_t value_len;     /* up to the final line break (excluded) */
	const uint8_t *start; /* the whole field, line breaks included */
	size_t total_len;
};

/* The field at *pos of header h (len bytes). 1 (f filled, *pos past it)
 * or 0 at the blank line that ends the header, or at len. */
int mime__field_next(const uint8_t *h, size_t len, size_t *pos, struct mime__field *f);
int mime__name_is(const uint8_t *name, size_t len, const char *lit);

/* Append value unfolded: each line break with the white space after it
 * becomes one space, leading and trailing white space go, NUL becomes a
 * space; collapse: every run of white space becomes one space (Dovecot
 * does this to subjects and names, "for humans"). At most max bytes (cut
 * on a UTF-8 boundary); *cut_r set when cut (may be NULL). */
void mime__unfold(const uint8_t *value, size_t len, size_t max, int collapse, buf *out,
		  int *cut_r);

/* Parse a Content-Type value into c (type, subtype, params with RFC 2231
 * joining, charset, boundary). 0, or -1 when the value is not
 * "type/subtype" (c untouched). *truncated_r set when params were
 * dropped or cut. */
int mime__parse_content_type(struct mime__strs *s, const uint8_t *v, size_t len,
			     const struct mime_limits *lim, struct mime__content *c,
			     int *truncated_r);
void mime__parse_disposition(struct mime__strs *s, const uint8_t *v, size_t len,
			     const struct mime_limits *lim, struct mime__content *c,
			     int *truncated_r);
void mime__parse_language(struct mime__strs *s, const uint8_t *v, size_t len,
			  const struct mime_limits *lim, struct mime__content *c, int *truncated_r);
enum mime_encoding mime__parse_encoding(const uint8_t *v, size_t len, size_t *tok_len_r,
					const uint8_t **tok_r);

/* ---- IMAP strings and ENVELOPE (mime-envelope.c) ---- */

/* Append s as an IMAP string: quoted ("..." with \" and \\) when it can
 * be, else a literal {n}\r\n (8-bit, CR, LF); NUL is sent as a space. */
void mime__imap_string(buf *out, const uint8_t *s, size_t len);
/* Upper-cased, quoted (for atoms we produce: type names...). */
void mime__imap_string_upper(buf *out, const uint8_t *s, size_t len);
void mime__imap_nstring(buf *out, const struct mime__strs *s, struct mime__str str);

/* The fields ENVELOPE needs, raw values from one header (NULL: absent). */
enum {
	MIME__ENV_DATE = 0,
	MIME__ENV_SUBJECT,
	MIME__ENV_FROM,
	MIME__ENV_SENDER,
	MIME__ENV_REPLY_TO,
	MIME__ENV_TO,
	MIME__ENV_CC,
	MIME__ENV_BCC,
	MIME__ENV_IN_REPLY_TO,
	MIME__ENV_MESSAGE_ID,
	MIME__ENV_COUNT
};
struct mime__env_fields {
	const uint8_t *value[MIME__ENV_COUNT];
	size_t len[MIME__ENV_COUNT];
};
/* The field index for a header name, or -1. */
int mime__env_field_index(const uint8_t *name, size_t len);
/* Append the ENVELOPE for these fields. *truncated_r set when a limit cut
 * something. */
void mime__envelope_write(buf *out, const struct mime__env_fields *f,
			  const struct mime_limits *lim, int *truncated_r);
/* The ENVELOPE of a message without a header (all NIL). */
#define MIME__ENVELOPE_EMPTY "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"

/* ---- the part table (mime-parts.c) ---- */

struct mime__parts_writer {
	buf out;
	unsigned n;
	size_t count_pos;
};
void mime__parts_begin(struct mime__parts_writer *w, uint64_t msg_size);
void mime__parts_add(struct mime__parts_writer *w, const struct mime_part_loc *loc);
/* Fills in the count; the table is w->out (stolen by the caller). */
void mime__parts_end(struct mime__parts_writer *w);

/* ---- decoding (mime-decode.c) ---- */

/* Append bytes in as UTF-8 with invalid sequences replaced by U+FFFD. */
void mime__utf8_sanitize(const uint8_t *in, size_t len, buf *out);

#endif
