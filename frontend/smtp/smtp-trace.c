/* smtp-trace.c: Received:, Date: and Message-ID: for accepted messages
 * (smtp-trace.h). */
#include "smtp-trace.h"

#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define TRACE_ITEM_MAX 255

void smtp_trace_date(char *out, size_t size, int64_t now_ms)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t t = (time_t)(now_ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	/* names by hand: strftime's %a and %b follow the locale */
	snprintf(out, size, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday % 7],
		 tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
		 tm.tm_sec);
}

/* item, made safe for a Received: clause and cut at TRACE_ITEM_MAX. */
static void trace_append_item(buf *out, const char *item)
{
	size_t n = strnlen(item, TRACE_ITEM_MAX);
	/* an address literal ("[192.0.2.1]", "[IPv6:2001:db8::1]", RFC 5321
	 * 4.1.3) is a valid HELO and stays as it is */
	if (n > 2 && item[0] == '[' && item[n - 1] == ']' &&
	    strspn(item + 1, "0123456789abcdefABCDEF:.IPv") == n - 2) {
		buf_append(out, item, n);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)item[i];
		if (c <= ' ' || c >= 0x7f || c == '(' || c == ')' || c == '[' || c == ']' ||
		    c == '<' || c == '>' || c == ';' || c == '\\' || c == '"')
			c = '?';
		buf_append(out, &c, 1);
	}
}

void smtp_trace_received(buf *out, const struct smtp_trace_info *ti)
{
	char date[40];
	smtp_trace_date(date, sizeof date, ti->now_ms);
	/* IPv6 literals carry the tag (RFC 5321 4.1.3) */
	const char *tag = strchr(ti->peer_ip, ':') != NULL ? "IPv6:" : "";
	buf_append_str(out, "Received: from ");
	if (ti->helo != NULL && ti->helo[0] != '\0') {
		trace_append_item(out, ti->helo);
		buf_append_str(out, " ([");
	} else {
		buf_append_str(out, "([");   /* no HELO: the address alone */
	}
	buf_append_str(out, tag);
	trace_append_item(out, ti->peer_ip);
	buf_append_str(out, "])\r\n\tby ");
	trace_append_item(out, ti->by);
	buf_append_str(out, " with ESMTP");
	if (ti->tls)
		buf_append_str(out, "S");
	if (ti->authenticated)
		buf_append_str(out, "A");
	buf_append_str(out, " id ");
	trace_append_item(out, ti->queue_id);
	if (ti->for_rcpt != NULL) {
		buf_append_str(out, "\r\n\tfor <");
		trace_append_item(out, ti->for_rcpt);
		buf_append_str(out, ">");
	}
	buf_append_str(out, "; ");
	buf_append_str(out, date);
	buf_append_str(out, "\r\n");
}

/* Call fn for the first line of every field called name in the header
 * section (at most SMTP_TRACE_SCAN_MAX bytes), with the value on that line
 * (after the colon, white space skipped; continuation lines are not
 * joined). fn returns 0 to go on, else the scan stops with that value. */
static int trace_fields(const uint8_t *msg, size_t len, const char *name,
			int (*fn)(const char *value, size_t vlen, void *arg), void *arg)
{
	size_t nlen = strlen(name);
	if (len > SMTP_TRACE_SCAN_MAX)
		len = SMTP_TRACE_SCAN_MAX;
	size_t at = 0;
	while (at < len) {
		const uint8_t *eol = memchr(msg + at, '\n', len - at);
		size_t end = eol != NULL ? (size_t)(eol - msg) : len;
		size_t line = end - at;
		if (line > 0 && msg[end - 1] == '\r')
			line--;
		if (line == 0)
			return 0;   /* the empty line: the header section is over */
		/* a continuation line (starts with WSP) names no field */
		if (line > nlen && msg[at] != ' ' && msg[at] != '\t' &&
		    strncasecmp((const char *)msg + at, name, nlen) == 0) {
			size_t k = at + nlen;
			while (k < at + line && (msg[k] == ' ' || msg[k] == '\t'))
				k++;
			if (k < at + line && msg[k] == ':') {
				k++;
				while (k < at + line && (msg[k] == ' ' || msg[k] == '\t'))
					k++;
				int r = fn((const char *)msg + k, at + line - k, arg);
				if (r != 0)
					return r;
			}
		}
		if (eol == NULL)
			break;
		at = end + 1;
	}
	return 0;
}

static int trace_found(const char *value, size_t vlen, void *arg)
{
	(void)value;
	(void)vlen;
	(void)arg;
	return 1;
}

int smtp_trace_has_field(const uint8_t *msg, size_t len, const char *name)
{
	return trace_fields(msg, len, name, trace_found, NULL);
}

static int trace_count(const char *value, size_t vlen, void *arg)
{
	(void)value;
	(void)vlen;
	(*(unsigned *)arg)++;
	return 0;
}

unsigned smtp_trace_hops(const uint8_t *msg, size_t len)
{
	unsigned n = 0;
	(void)trace_fields(msg, len, "Received", trace_count, &n);
	return n;
}

struct trace_delivered {
	const char *const *addresses;
	size_t n;
};

static int trace_delivered_to(const char *value, size_t vlen, void *arg)
{
	const struct trace_delivered *d = arg;
	/* "<a@b>" or "a@b", bounded like any address */
	if (vlen > 0 && value[0] == '<') {
		value++;
		vlen--;
		const char *gt = memchr(value, '>', vlen);
		if (gt != NULL)
			vlen = (size_t)(gt - value);
	}
	while (vlen > 0 && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
		vlen--;
	if (vlen == 0 || vlen > SMTP_TRACE_ADDRESS_MAX)
		return 0;
	char *a = util_address_normalize(value, vlen);
	int found = 0;
	for (size_t i = 0; a != NULL && i < d->n && !found; i++)
		found = strcmp(a, d->addresses[i]) == 0 ? (int)i + 1 : 0;
	free(a);
	return found;
}

int smtp_trace_delivered_to(const uint8_t *msg, size_t len, const char *const *addresses,
			    size_t n)
{
	struct trace_delivered d = { .addresses = addresses, .n = n };
	return trace_fields(msg, len, "Delivered-To", trace_delivered_to, &d);
}

void smtp_trace_submission_fields(buf *out, const uint8_t *msg, size_t len, const char *by,
				  const char *random_hex, int64_t now_ms)
{
	if (!smtp_trace_has_field(msg, len, "Date")) {
		char date[40];
		smtp_trace_date(date, sizeof date, now_ms);
		buf_append_str(out, "Date: ");
		buf_append_str(out, date);
		buf_append_str(out, "\r\n");
	}
	if (!smtp_trace_has_field(msg, len, "Message-ID")) {
		buf_append_str(out, "Message-ID: <");
		buf_append_str(out, random_hex);
		buf_append_str(out, "@");
		trace_append_item(out, by);
		buf_append_str(out, ">\r\n");
	}
}
