/* imap-fetch-attrs.c: the attribute list of FETCH (see imap-parser.h). */
#include "imap-parser.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "xalloc.h"

/* Reads a decimal number of at most 10 digits that fits in 32 bits. */
static const char *imap_fetch_number(const char *s, uint32_t *n_r)
{
	uint64_t n = 0;
	size_t i = 0;
	while (s[i] >= '0' && s[i] <= '9' && i < 10) {
		n = n * 10 + (uint64_t)(s[i] - '0');
		i++;
	}
	if (i == 0 || n > UINT32_MAX)
		return NULL;
	*n_r = (uint32_t)n;
	return s + i;
}

/* A byte of a header field name as FETCH accepts it: an atom char (no
 * CTL, SP, ( ) { " \\ ] % *) that may also name a field (no ':'). */
static int imap_fetch_field_char(char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return 0;
	return strchr("(){\"\\]%*:", c) == NULL;
}

/* "(NAME SP NAME ...)" up to, not including, the ']' at end: the list of
 * HEADER.FIELDS[.NOT]. Copies the names upper-cased into body->fields. */
static int imap_fetch_fields_parse(const char *s, const char *end,
				   struct imap_fetch_body *body, const char **error_r)
{
	size_t n = 0;

	if (s >= end || *s != '(' || end[-1] != ')') {
		*error_r = "Invalid header field list";
		return -1;
	}
	s++;
	end--;
	/* check everything before allocating anything */
	for (const char *p = s; p <= end; n++) {
		const char *name = p;
		while (p < end && imap_fetch_field_char(*p))
			p++;
		if (p == name || (p < end && *p != ' ')) {
			*error_r = "Invalid header field name";
			return -1;
		}
		if ((size_t)(p - name) > IMAP_FETCH_FIELD_NAME_MAX) {
			*error_r = "Header field name too long";
			return -1;
		}
		if (n + 1 > IMAP_FETCH_FIELDS_MAX) {
			*error_r = "Too many header fields";
			return -1;
		}
		p++; /* the SP, or past end */
	}
	size_t len = (size_t)(end - s);
	body->fields = xmalloc(len + 1);
	for (size_t i = 0; i < len; i++)
		body->fields[i] = (char)toupper((unsigned char)s[i]);
	body->fields[len] = '\0';
	body->n_fields = n;
	return 0;
}

/* The part number at the start of a section, "1.2.3", up to what ends it
 * (']' or ".HEADER"...). Returns where it stopped, NULL on error. */
static const char *imap_fetch_part_parse(const char *s, struct imap_fetch_body *body,
					 const char **error_r)
{
	while (*s >= '1' && *s <= '9') {
		uint32_t n;
		const char *e = imap_fetch_number(s, &n);
		if (e == NULL || n == 0) {
			*error_r = "Invalid section part number";
			return NULL;
		}
		if (body->n_part >= IMAP_FETCH_PART_DEPTH_MAX) {
			*error_r = "Section part nested too deeply";
			return NULL;
		}
		body->part[body->n_part++] = n;
		s = e;
		if (*s != '.')
			break;
		s++;
	}
	return s;
}

/* "[section]<o.n>" after BODY, BODY.PEEK, BINARY... On error nothing is
 * left allocated in *body. */
static int imap_fetch_body_parse(const char *s, struct imap_fetch_body *body,
				 const char **error_r)
{
	const char *end = strrchr(s, ']');
	if (*s != '[' || end == NULL) {
		*error_r = "Invalid BODY[] section";
		return -1;
	}
	const char *p = s + 1;
	if (*p >= '1' && *p <= '9') {
		p = imap_fetch_part_parse(p, body, error_r);
		if (p == NULL)
			return -1;
		/* "1" ends at ']'; "1.TEXT": the parse stopped after the dot */
		if ((p < end && p[-1] != '.') || (p == end && p[-1] == '.')) {
			*error_r = "Invalid BODY[] section";
			return -1;
		}
	}
	size_t len = (size_t)(end - p);
	if (body->kind != IMAP_FETCH_KIND_BODY && len != 0) {
		*error_r = "BINARY takes only a part number";
		return -1;
	}
	if (len == 0)
		body->section = IMAP_SECTION_ALL;
	else if (len == 6 && strncasecmp(p, "HEADER", 6) == 0)
		body->section = IMAP_SECTION_HEADER;
	else if (len == 4 && strncasecmp(p, "TEXT", 4) == 0)
		body->section = IMAP_SECTION_TEXT;
	else if (len == 4 && strncasecmp(p, "MIME", 4) == 0 && body->n_part > 0)
		body->section = IMAP_SECTION_MIME;
	else if (len > 18 && strncasecmp(p, "HEADER.FIELDS.NOT ", 18) == 0) {
		body->section = IMAP_SECTION_HEADER_FIELDS_NOT;
		if (imap_fetch_fields_parse(p + 18, end, body, error_r) < 0)
			return -1;
	} else if (len > 14 && strncasecmp(p, "HEADER.FIELDS ", 14) == 0) {
		body->section = IMAP_SECTION_HEADER_FIELDS;
		if (imap_fetch_fields_parse(p + 14, end, body, error_r) < 0)
			return -1;
	} else {
		*error_r = "Unsupported BODY[] section";
		return -1;
	}
	s = end + 1;
	if (*s == '\0')
		return 0;
	if (*s != '<' || body->kind == IMAP_FETCH_KIND_BINARY_SIZE)
		goto bad_partial;
	s = imap_fetch_number(s + 1, &body->offset);
	if (s == NULL || *s != '.')
		goto bad_partial;
	s = imap_fetch_number(s + 1, &body->count);
	if (s == NULL || body->count == 0 || s[0] != '>' || s[1] != '\0')
		goto bad_partial;
	body->partial = 1;
	return 0;
bad_partial:
	free(body->fields);
	body->fields = NULL;
	*error_r = "Invalid partial fetch";
	return -1;
}

/* Takes over b->fields, also on error. */
static int imap_fetch_add_body(struct imap_fetch_attrs *attrs, const struct imap_fetch_body *b,
			       const char **error_r)
{
	if (attrs->n_bodies >= IMAP_FETCH_BODIES_MAX) {
		free(b->fields);
		*error_r = "Too many body sections";
		return -1;
	}
	attrs->bodies[attrs->n_bodies++] = *b;
	return 0;
}

static int imap_fetch_item_parse(const char *item, struct imap_fetch_attrs *attrs,
				 const char **error_r)
{
	static const struct {
		const char *name;
		unsigned bit;
	} simple[] = {
		{ "FLAGS", IMAP_FETCH_FLAGS },
		{ "UID", IMAP_FETCH_UID },
		{ "RFC822.SIZE", IMAP_FETCH_RFC822_SIZE },
		{ "INTERNALDATE", IMAP_FETCH_INTERNALDATE },
		{ "MODSEQ", IMAP_FETCH_MODSEQ },
		{ "ENVELOPE", IMAP_FETCH_ENVELOPE },
		{ "BODYSTRUCTURE", IMAP_FETCH_BODYSTRUCTURE },
		{ "BODY", IMAP_FETCH_BODY },
	};
	static const struct {
		const char *prefix;
		size_t len;
		enum imap_fetch_kind kind;
		int peek;
	} sections[] = {
		{ "BODY.PEEK[", 9, IMAP_FETCH_KIND_BODY, 1 },
		{ "BODY[", 4, IMAP_FETCH_KIND_BODY, 0 },
		{ "BINARY.PEEK[", 11, IMAP_FETCH_KIND_BINARY, 1 },
		{ "BINARY.SIZE[", 11, IMAP_FETCH_KIND_BINARY_SIZE, 1 },
		{ "BINARY[", 6, IMAP_FETCH_KIND_BINARY, 0 },
	};
	struct imap_fetch_body body;

	for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
		if (strcasecmp(item, simple[i].name) == 0) {
			attrs->items |= simple[i].bit;
			return 0;
		}
	}
	memset(&body, 0, sizeof(body));
	body.rfc822 = 1;
	if (strcasecmp(item, "RFC822") == 0) {
		body.section = IMAP_SECTION_ALL;
		return imap_fetch_add_body(attrs, &body, error_r);
	}
	if (strcasecmp(item, "RFC822.HEADER") == 0) {
		body.section = IMAP_SECTION_HEADER;
		body.peek = 1;
		return imap_fetch_add_body(attrs, &body, error_r);
	}
	if (strcasecmp(item, "RFC822.TEXT") == 0) {
		body.section = IMAP_SECTION_TEXT;
		return imap_fetch_add_body(attrs, &body, error_r);
	}
	body.rfc822 = 0;
	for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
		if (strncasecmp(item, sections[i].prefix, sections[i].len + 1) != 0)
			continue;
		body.kind = sections[i].kind;
		body.peek = sections[i].peek;
		if (imap_fetch_body_parse(item + sections[i].len, &body, error_r) < 0)
			return -1;
		return imap_fetch_add_body(attrs, &body, error_r);
	}
	*error_r = "Invalid FETCH item";
	return -1;
}

static int imap_fetch_attrs_parse_items(const struct imap_arg *arg,
					struct imap_fetch_attrs *attrs_r, const char **error_r)
{
	const char *s;

	if (imap_arg_get_atom(arg, &s)) {
		/* the macros (RFC 3501 6.4.5) */
		unsigned fast = IMAP_FETCH_FLAGS | IMAP_FETCH_INTERNALDATE | IMAP_FETCH_RFC822_SIZE;
		if (strcasecmp(s, "FAST") == 0) {
			attrs_r->items = fast;
			return 0;
		}
		if (strcasecmp(s, "ALL") == 0) {
			attrs_r->items = fast | IMAP_FETCH_ENVELOPE;
			return 0;
		}
		if (strcasecmp(s, "FULL") == 0) {
			attrs_r->items = fast | IMAP_FETCH_ENVELOPE | IMAP_FETCH_BODY;
			return 0;
		}
		return imap_fetch_item_parse(s, attrs_r, error_r);
	}
	if (arg->type != IMAP_ARG_LIST || arg->list->count == 0) {
		*error_r = "Invalid FETCH attributes";
		return -1;
	}
	for (size_t i = 0; i < arg->list->count; i++) {
		if (!imap_arg_get_atom(&arg->list->args[i], &s)) {
			*error_r = "Invalid FETCH item";
			return -1;
		}
		if (imap_fetch_item_parse(s, attrs_r, error_r) < 0)
			return -1;
	}
	return 0;
}

int imap_fetch_attrs_parse(const struct imap_arg *arg, struct imap_fetch_attrs *attrs_r,
			   const char **error_r)
{
	memset(attrs_r, 0, sizeof(*attrs_r));
	if (imap_fetch_attrs_parse_items(arg, attrs_r, error_r) < 0) {
		imap_fetch_attrs_deinit(attrs_r);
		return -1;
	}
	return 0;
}

void imap_fetch_attrs_deinit(struct imap_fetch_attrs *attrs)
{
	for (size_t i = 0; i < attrs->n_bodies; i++)
		free(attrs->bodies[i].fields);
	memset(attrs, 0, sizeof(*attrs));
}

int imap_fetch_body_field_match(const struct imap_fetch_body *body, const char *name,
				size_t len)
{
	const char *p = body->fields;
	if (p == NULL || len == 0)
		return 0;
	while (*p != '\0') {
		const char *e = strchr(p, ' ');
		size_t n = e != NULL ? (size_t)(e - p) : strlen(p);
		if (n == len && strncasecmp(p, name, len) == 0)
			return 1;
		if (e == NULL)
			break;
		p = e + 1;
	}
	return 0;
}

int imap_fetch_attrs_need_body(const struct imap_fetch_attrs *attrs)
{
	return attrs->n_bodies > 0;
}
