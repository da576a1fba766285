/* dkim-from.c: the one author domain of a message's From field
 * (dkim-from.h), for the DKIM signer (whose key signs) and for DMARC
 * (whose policy applies). */
#include "dkim-from.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"
#include "xalloc.h"

/* one mailbox's addr-spec while the From value is read */
#define FROM_ADDR_MAX 1024

/* The From value's parse state (dkim-from.h lists what it accepts). */
struct from_state {
	char angle[FROM_ADDR_MAX];  /* inside <...> */
	char plain[FROM_ADDR_MAX];  /* outside: the addr-spec when there is no <> */
	size_t angle_len, plain_len;
	int plain_over;           /* plain overflowed (a long display name) */
	int in_angle, saw_angle, in_group;
	int bad;                  /* not an address we can read */
	char domain[DKIM_DOMAIN_MAX + 1]; /* "" until the first mailbox */
};

static void from__from_put(struct from_state *f, char c)
{
	if (f->in_angle) {
		if (f->angle_len + 1 >= sizeof f->angle)
			f->bad = 1;
		else
			f->angle[f->angle_len++] = c;
	} else if (f->saw_angle) {
		f->bad = 1; /* text after the angle-addr */
	} else if (f->plain_len + 1 >= sizeof f->plain) {
		f->plain_over = 1;
	} else {
		f->plain[f->plain_len++] = c;
	}
}

/* One mailbox (or an empty list element) ends. */
static void from__from_mailbox(struct from_state *f)
{
	const char *addr = f->saw_angle ? f->angle : f->plain;
	size_t len = f->saw_angle ? f->angle_len : f->plain_len;
	int over = !f->saw_angle && f->plain_over;
	f->angle_len = f->plain_len = 0;
	f->plain_over = f->saw_angle = 0;
	if (len == 0 && !over)
		return; /* "<>", ",,", an empty group */
	const char *at = NULL;
	for (size_t i = 0; i < len; i++) {
		if (addr[i] == '@')
			at = addr + i;
	}
	size_t dlen = at != NULL ? len - (size_t)(at + 1 - addr) : 0;
	if (over || at == NULL || at == addr || dlen == 0 || dlen > DKIM_DOMAIN_MAX) {
		f->bad = 1;
		return;
	}
	char d[DKIM_DOMAIN_MAX + 1];
	for (size_t i = 0; i < dlen; i++)
		d[i] = (char)(at[1 + i] >= 'A' && at[1 + i] <= 'Z' ? at[1 + i] + 32 : at[1 + i]);
	d[dlen] = '\0';
	if (!util_domain_valid(d)) /* also a [literal] */
		f->bad = 1;
	else if (f->domain[0] == '\0')
		memcpy(f->domain, d, dlen + 1);
	else if (strcmp(f->domain, d) != 0)
		f->bad = 1; /* authors of several domains: whose key? */
}

/* Read the value v[0..n) of the From field (line ends and all). */
static void from__from_parse(struct from_state *f, const uint8_t *v, size_t n)
{
	int quote = 0, depth = 0;
	for (size_t i = 0; i < n && !f->bad; i++) {
		char c = (char)v[i];
		if (quote || depth > 0) {
			if (c == '\\')
				i++; /* quoted-pair */
			else if (quote && c == '"')
				quote = 0;
			else if (!quote && c == '(')
				depth++;
			else if (!quote && c == ')')
				depth--;
			continue;
		}
		switch (c) {
		case '"':
			quote = 1;
			from__from_put(f, 'q'); /* stands for the quoted local part */
			break;
		case '(':
			depth = 1;
			break;
		case ' ': case '\t': case '\r': case '\n':
			break;
		case '<':
			if (f->in_angle || f->saw_angle)
				f->bad = 1;
			f->in_angle = f->saw_angle = 1;
			break;
		case '>':
			if (!f->in_angle)
				f->bad = 1;
			f->in_angle = 0;
			break;
		case ':':
			if (f->in_angle) {
				f->angle_len = 0; /* the end of an obsolete source route */
			} else if (f->saw_angle || f->in_group) {
				f->bad = 1;
			} else {
				f->in_group = 1; /* what came before is the group's name */
				f->plain_len = 0;
				f->plain_over = 0;
			}
			break;
		case ';':
			if (f->in_angle || !f->in_group)
				f->bad = 1;
			from__from_mailbox(f);
			f->in_group = 0;
			break;
		case ',':
			if (f->in_angle)
				from__from_put(f, c); /* within a source route */
			else
				from__from_mailbox(f);
			break;
		default:
			from__from_put(f, c);
			break;
		}
	}
	if (quote || depth > 0 || f->in_angle)
		f->bad = 1;
	if (!f->bad)
		from__from_mailbox(f);
}

/* 1 when line[0..len) starts a From field ("From" in any case, optional
 * white space (obsolete syntax), ':'); *value_r is the offset after ':'. */
static int from__is_from(const uint8_t *line, size_t len, size_t *value_r)
{
	if (len < 5 || strncasecmp((const char *)line, "from", 4) != 0)
		return 0;
	size_t i = 4;
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	if (i >= len || line[i] != ':')
		return 0;
	*value_r = i + 1;
	return 1;
}

int dkim_from_domain(const uint8_t *msg, size_t len, size_t header_max, char *domain_r)
{
	/* never look further than the limit and one line end */
	size_t window = len < header_max + 2 ? len : header_max + 2;
	size_t pos = 0, from_start = 0, from_end = 0;
	unsigned froms = 0;
	int in_from = 0;
	domain_r[0] = '\0';
	while (pos < len) {
		if (pos > header_max)
			return -1;
		const uint8_t *nl = memchr(msg + pos, '\n', window - pos);
		if (nl == NULL && window < len)
			return -1;
		size_t line_end = nl != NULL ? (size_t)(nl - msg) : len;
		size_t next = nl != NULL ? line_end + 1 : len;
		size_t content_end = line_end;
		if (content_end > pos && msg[content_end - 1] == '\r')
			content_end--;
		if (content_end == pos)
			break; /* the empty line: the body follows */
		size_t value;
		if (msg[pos] == ' ' || msg[pos] == '\t') {
			if (in_from)
				from_end = content_end; /* folded: the field goes on */
		} else if (from__is_from(msg + pos, content_end - pos, &value)) {
			froms++;
			in_from = 1;
			from_start = pos + value;
			from_end = content_end;
		} else {
			in_from = 0;
		}
		pos = next;
	}
	if (froms != 1)
		return 0;
	struct from_state *f = xcalloc(1, sizeof *f);
	from__from_parse(f, msg + from_start, from_end - from_start);
	int found = !f->bad && f->domain[0] != '\0';
	if (found)
		memcpy(domain_r, f->domain, strlen(f->domain) + 1);
	free(f);
	return found;
}
