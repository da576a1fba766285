/* dsn-report.c: composing delivery status notifications (RFC 3464, RFC
 * 6522, RFC 6533) and the policy of when to send them. See dsn-report.h.
 *
 * The three parts are built in their own buffers first, so the boundary
 * can be checked against everything it will enclose before the message is
 * assembled into the caller's buffer. */
#include "dsn-report.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "dsn-private.h"
#include "util.h"

/* RFC 5322 2.1.1: at most 998 octets a line, 78 recommended. */
#define LINE_MAX_OCTETS 998u
#define LINE_WANT 78u
/* The width of the human-readable text. */
#define TEXT_WIDTH 76u
/* Octets of the original's Message-ID we repeat in In-Reply-To. */
#define MSGID_MAX 250u
/* Octets of a Final-Log-ID we write. */
#define LOG_ID_MAX 128u
/* Octets of r->unique used (boundary = "=_dsn_" unique ["_" n] <= 70). */
#define UNIQUE_MAX 48u

struct dsn_report_limits dsn_report_limits_default(void)
{
	struct dsn_report_limits l = {
		.max_full = DSN_MAX_FULL_DEFAULT,
		.max_headers = DSN_MAX_HEADERS_DEFAULT,
		.max_diagnostic = DSN_MAX_DIAGNOSTIC_DEFAULT,
		.never_full = 0,
	};
	return l;
}

static size_t clamp(size_t v, size_t def, size_t min, size_t max)
{
	if (v == 0)
		return def;
	return v < min ? min : v > max ? max : v;
}

static struct dsn_report_limits limits_get(const struct dsn_report_limits *in)
{
	struct dsn_report_limits l = dsn_report_limits_default();
	if (in == NULL)
		return l;
	l.max_full = in->never_full ? 0 : clamp(in->max_full, DSN_MAX_FULL_DEFAULT, 1,
						 DSN_MAX_FULL_MAX);
	l.max_headers = clamp(in->max_headers, DSN_MAX_HEADERS_DEFAULT, DSN_MAX_HEADERS_MIN,
			      DSN_MAX_HEADERS_MAX);
	l.max_diagnostic = clamp(in->max_diagnostic, DSN_MAX_DIAGNOSTIC_DEFAULT,
				 DSN_MAX_DIAGNOSTIC_MIN, DSN_MAX_DIAGNOSTIC_MAX);
	l.never_full = in->never_full;
	return l;
}

/* ---- names and policy ------------------------------------------------------ */

const char *dsn_action_name(enum dsn_action action)
{
	switch (action) {
	case DSN_ACTION_FAILED:
		return "failed";
	case DSN_ACTION_DELAYED:
		return "delayed";
	case DSN_ACTION_DELIVERED:
		return "delivered";
	case DSN_ACTION_RELAYED:
		return "relayed";
	case DSN_ACTION_EXPANDED:
		return "expanded";
	}
	return NULL;
}

enum dsn_event dsn_action_event(enum dsn_action action)
{
	if (action == DSN_ACTION_FAILED)
		return DSN_EVENT_FAILURE;
	if (action == DSN_ACTION_DELAYED)
		return DSN_EVENT_DELAY;
	return DSN_EVENT_SUCCESS;
}

int dsn_should_send(const char *envelope_sender, unsigned notify, enum dsn_event event)
{
	if (envelope_sender == NULL || envelope_sender[0] == '\0' ||
	    strcmp(envelope_sender, "<>") == 0)
		return 0;
	return dsn_notify_wants(notify, event);
}

struct dsn_timing dsn_timing_default(void)
{
	struct dsn_timing t = {
		.delay_warning = DSN_DELAY_WARNING_DEFAULT,
		.max_lifetime = DSN_MAX_LIFETIME_DEFAULT,
	};
	return t;
}

static int64_t lifetime(const struct dsn_timing *t)
{
	int64_t v = t->max_lifetime;
	return v < DSN_MAX_LIFETIME_MIN ? DSN_MAX_LIFETIME_MIN
	       : v > DSN_MAX_LIFETIME_MAX ? DSN_MAX_LIFETIME_MAX
					  : v;
}

enum dsn_due dsn_timing_due(const struct dsn_timing *t, int64_t arrival, int64_t now,
			    int warned)
{
	int64_t age = now - arrival;
	if (age >= lifetime(t))
		return DSN_DUE_EXPIRED;
	if (!warned && t->delay_warning > 0 && t->delay_warning < lifetime(t) &&
	    age >= t->delay_warning)
		return DSN_DUE_DELAY_WARNING;
	return DSN_DUE_NONE;
}

int64_t dsn_timing_retry_until(const struct dsn_timing *t, int64_t arrival)
{
	return arrival + lifetime(t);
}

/* ---- checks ---------------------------------------------------------------------- */

/* A DNS name or an address literal, as far as a header can tell. */
static int host_ok(const char *s)
{
	size_t len = s == NULL ? 0 : strlen(s);
	if (len == 0 || len > 255)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '-' || c == '_' || c == ':' || c == '[' || c == ']'))
			return 0;
	}
	return 1;
}

/* 1..DSN_ADDRESS_MAX octets of valid UTF-8 without controls; *ascii_r
 * says whether all of it is ASCII. */
static int address_ok(const char *s, int *ascii_r)
{
	size_t len = s == NULL ? 0 : strlen(s);
	if (len == 0 || len > DSN_ADDRESS_MAX)
		return 0;
	*ascii_r = 1;
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t n = dsn__utf8_char((const uint8_t *)s + i, len - i, &cp);
		if (n == 0 || cp < 0x20 || cp == 0x7f)
			return 0;
		if (n > 1)
			*ascii_r = 0;
		i += n;
	}
	return 1;
}

static int status_ok(const char *s)
{
	if (s == NULL || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return 0;
	s += 2;
	for (int part = 0; part < 2; part++) {
		size_t n = 0;
		while (s[n] >= '0' && s[n] <= '9')
			n++;
		if (n < 1 || n > 3)
			return 0;
		s += n;
		if (part == 0 && *s++ != '.')
			return 0;
	}
	return *s == '\0';
}

static int orcpt_ok(const struct dsn_orcpt *o, int *ascii_r)
{
	*ascii_r = 1;
	if (o == NULL || o->kind == DSN_ADDR_NONE)
		return 1;
	size_t tl = strnlen(o->type, sizeof(o->type));
	if (tl == 0 || tl >= sizeof(o->type) || strnlen(o->addr, sizeof(o->addr)) >= sizeof(o->addr))
		return 0;
	for (size_t i = 0; i < tl; i++) {
		unsigned char c = (unsigned char)o->type[i];
		if (c <= 0x20 || c >= 0x7f || c == ';')
			return 0;
	}
	if (!address_ok(o->addr, ascii_r))
		return 0;
	/* only utf-8 may carry non-ASCII */
	return o->kind == DSN_ADDR_UTF8 || *ascii_r;
}

/* ---- writing helpers ------------------------------------------------------------ */

static void date_append(buf *b, int64_t t)
{
	static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	if (t < 0)
		t = 0;
	if (t > 253402300799) /* 9999-12-31T23:59:59Z */
		t = 253402300799;
	time_t tt = (time_t)t;
	struct tm tm;
	if (gmtime_r(&tt, &tm) == NULL) {
		tt = 0;
		gmtime_r(&tt, &tm);
	}
	buf_printf(b, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday % 7], tm.tm_mday,
		   months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Append "Name: value" CRLF, folding before spaces so that lines stay
 * within 78 octets where the words allow; a word that would pass 998 is
 * broken with CRLF SP (never happens with the limits above: a guard). */
static void field_append(buf *out, const char *name, const char *value, size_t len)
{
	size_t col = strlen(name) + 2;
	buf_append_str(out, name);
	buf_append(out, ": ", 2);
	size_t i = 0;
	while (i < len) {
		/* a segment: optional leading space(s), then a word */
		size_t j = i;
		while (j < len && value[j] == ' ')
			j++;
		size_t word = j;
		while (j < len && value[j] != ' ')
			j++;
		size_t seg = j - i;
		/* fold before the spaces of a word (never leaving a line of
		 * white space only) */
		if (i > 0 && value[i] == ' ' && j > word && col + seg > LINE_WANT &&
		    col > strlen(name) + 2) {
			buf_append(out, "\r\n", 2);
			col = 0;
		}
		while (col + seg > LINE_MAX_OCTETS) {
			size_t take = LINE_MAX_OCTETS - col;
			buf_append(out, value + i, take);
			buf_append(out, "\r\n ", 3);
			col = 1;
			i += take;
			seg -= take;
		}
		buf_append(out, value + i, seg);
		col += seg;
		i = j;
	}
	buf_append(out, "\r\n", 2);
}

static void field_str(buf *out, const char *name, const char *value)
{
	field_append(out, name, value, strlen(value));
}

/* Append text wrapped to TEXT_WIDTH, each line starting with indent;
 * words longer than a line are broken at 900 octets. */
static void text_wrap(buf *out, const char *indent, const char *text)
{
	size_t ind = strlen(indent);
	size_t len = strlen(text);
	size_t col = 0;
	size_t i = 0;
	while (i < len) {
		while (i < len && text[i] == ' ')
			i++;
		size_t j = i;
		while (j < len && text[j] != ' ')
			j++;
		if (j == i)
			break;
		size_t w = j - i;
		if (col > 0 && col + 1 + w > TEXT_WIDTH) {
			buf_append(out, "\r\n", 2);
			col = 0;
		}
		if (col == 0) {
			buf_append(out, indent, ind);
			col = ind;
		} else {
			buf_append(out, " ", 1);
			col++;
		}
		while (w > 900) {
			buf_append(out, text + i, 900);
			buf_append(out, "\r\n", 2);
			buf_append(out, indent, ind);
			col = ind;
			i += 900;
			w -= 900;
		}
		buf_append(out, text + i, w);
		col += w;
		i = j;
	}
	if (col > 0)
		buf_append(out, "\r\n", 2);
}

/* Printable ASCII copy of s cut to max octets: controls and 8-bit octets
 * become "?", CR, LF and TAB a space. */
static void sanitize_ascii(buf *out, const char *s, size_t max)
{
	size_t len = strlen(s);
	if (len > max)
		len = max;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\r' || c == '\n' || c == '\t')
			c = ' ';
		else if (c < 0x20 || c >= 0x7f)
			c = '?';
		buf_append(out, &c, 1);
	}
	/* no trailing spaces (they would make an odd folded line) */
	while (out->len > 0 && out->data[out->len - 1] == ' ')
		out->len--;
}

/* "rfc822; a@b" or "utf-8; ..." for an address (RFC 3464 2.3.2, RFC 6533
 * 3): raw UTF-8 in a global report, else utf-8-addr-xtext. */
static void typed_address(buf *out, const char *addr, int global)
{
	int ascii = dsn__is_ascii(addr, strlen(addr));
	if (ascii) {
		buf_append_str(out, "rfc822; ");
		buf_append_str(out, addr);
	} else {
		buf_append_str(out, "utf-8; ");
		if (global)
			buf_append_str(out, addr);
		else
			dsn_utf8_addr_encode(addr, strlen(addr), 0, out);
	}
}

static void orcpt_address(buf *out, const struct dsn_orcpt *o, int global)
{
	buf_append_str(out, o->type);
	buf_append_str(out, "; ");
	if (o->kind == DSN_ADDR_UTF8 && !global)
		dsn_utf8_addr_encode(o->addr, strlen(o->addr), 0, out);
	else
		buf_append_str(out, o->addr);
}

/* An address as a person reads it: raw in a global report, escaped in a
 * 7-bit one. */
static void display_address(buf *out, const char *addr, int global)
{
	if (global || dsn__is_ascii(addr, strlen(addr)))
		buf_append_str(out, addr);
	else
		dsn_utf8_addr_encode(addr, strlen(addr), 0, out);
}

/* Append p (len octets) with every line ending CRLF (bare LF and bare CR
 * too) and no line over 998 octets: longer ones are broken, with CRLF SP
 * in a header section (the rest stays part of the field), plain CRLF in
 * a body. A last line without its end gets one. */
static void lines_append(buf *out, const uint8_t *p, size_t len, int header)
{
	size_t col = 0;
	size_t run = 0; /* start of bytes not yet copied */
	for (size_t i = 0; i < len; i++) {
		uint8_t c = p[i];
		if (c == '\r' || c == '\n') {
			buf_append(out, p + run, i - run);
			buf_append(out, "\r\n", 2);
			if (c == '\r' && i + 1 < len && p[i + 1] == '\n')
				i++;
			run = i + 1;
			col = 0;
			continue;
		}
		if (col == LINE_MAX_OCTETS) {
			buf_append(out, p + run, i - run);
			buf_append(out, header ? "\r\n " : "\r\n", header ? 3 : 2);
			run = i;
			col = header ? 1 : 0;
		}
		col++;
	}
	buf_append(out, p + run, len - run);
	if (col > 0)
		buf_append(out, "\r\n", 2);
}

static int has_8bit(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] >= 0x80)
			return 1;
	return 0;
}

/* The original's header section: *hdr_len_r octets (without the empty
 * line that ends it); the whole message when it has no empty line. */
static size_t header_length(const uint8_t *p, size_t len)
{
	size_t i = 0;
	while (i < len) {
		if (p[i] == '\n' || (p[i] == '\r' && i + 1 < len && p[i + 1] == '\n'))
			return i;
		const uint8_t *nl = memchr(p + i, '\n', len - i);
		if (nl == NULL)
			return len;
		i = (size_t)(nl - p) + 1;
	}
	return len;
}

/* The original's Message-ID ("<...>", printable ASCII without spaces,
 * at most MSGID_MAX octets) into out; 0 when it has none such. */
static int original_msgid(const uint8_t *h, size_t len, buf *out)
{
	size_t i = 0;
	while (i < len) {
		const uint8_t *nl = memchr(h + i, '\n', len - i);
		size_t end = nl ? (size_t)(nl - h) : len;
		if (end - i >= 11 && strncasecmp((const char *)h + i, "message-id:", 11) == 0) {
			/* the value, with its continuation lines, minus white space */
			buf v;
			buf_init(&v);
			size_t k = i + 11;
			int ok = 1;
			for (;;) {
				for (; k < end; k++) {
					uint8_t c = h[k];
					if (c == ' ' || c == '\t' || c == '\r')
						continue;
					if (c < 0x21 || c > 0x7e || v.len >= MSGID_MAX) {
						ok = 0;
						break;
					}
					buf_append(&v, &c, 1);
				}
				if (!ok || end >= len || end + 1 >= len ||
				    (h[end + 1] != ' ' && h[end + 1] != '\t'))
					break;
				k = end + 1;
				nl = memchr(h + k, '\n', len - k);
				end = nl ? (size_t)(nl - h) : len;
			}
			int good = ok && v.len >= 5 && v.data[0] == '<' && v.data[v.len - 1] == '>' &&
				   memchr(v.data + 1, '<', v.len - 2) == NULL &&
				   memchr(v.data + 1, '>', v.len - 2) == NULL &&
				   memchr(v.data, '@', v.len) != NULL;
			if (good)
				buf_append(out, v.data, v.len);
			buf_deinit(&v);
			return good;
		}
		i = end + 1;
	}
	return 0;
}

/* ---- the parts ------------------------------------------------------------------ */

struct plan {
	int any_failed, any_delayed;
	int global;
	int full;          /* the whole original goes back */
	size_t hdr_len;    /* of the original's header section */
	size_t hdr_take;   /* octets of it returned */
	int64_t retry_until;
};

static void human_part(buf *t, const struct dsn_report *r, const struct dsn_report_limits *l,
		       const struct plan *pl)
{
	buf para;
	buf_init(&para);
	buf_printf(t, "This is the mail system at %s.\r\n\r\n", r->reporting_mta);
	if (pl->any_failed) {
		buf_append_str(&para, "Your message could not be delivered to one or more of its "
				      "recipients; the reasons are given below.");
		if (r->original != NULL && r->original_len > 0)
			buf_append_str(&para, pl->full ? " The message is attached."
						       : " The header of the message is attached.");
	} else if (pl->any_delayed) {
		buf_append_str(&para, "Your message has not yet been delivered to one or more of its "
				      "recipients. This is only a warning: delivery is being retried");
		if (pl->retry_until != 0) {
			buf_append_str(&para, " until ");
			date_append(&para, pl->retry_until);
		}
		buf_append_str(&para, ". You do not need to send the message again.");
	} else {
		buf_append_str(&para, "Your message was delivered as described below; you asked "
				      "to be told (a delivery status notification).");
	}
	buf_append(&para, "", 1);
	text_wrap(t, "", (const char *)para.data);
	buf_append(t, "\r\n", 2);

	for (size_t i = 0; i < r->n_rcpts; i++) {
		const struct dsn_recipient *rc = &r->rcpts[i];
		static const char *const what[] = {
			[DSN_ACTION_FAILED] = "delivery failed",
			[DSN_ACTION_DELAYED] = "delivery delayed, still trying",
			[DSN_ACTION_DELIVERED] = "delivered",
			[DSN_ACTION_RELAYED] = "relayed to a system that does not report "
					       "delivery",
			[DSN_ACTION_EXPANDED] = "delivered to a list or alias, which forwards "
						"it",
		};
		buf_reset(&para);
		buf_append(&para, "<", 1);
		display_address(&para, rc->final_recipient, pl->global);
		buf_printf(&para, ">: %s (status %s)", what[rc->action], rc->status);
		if (rc->orcpt != NULL && rc->orcpt->kind != DSN_ADDR_NONE) {
			buf_append_str(&para, "; originally addressed to ");
			if (rc->orcpt->kind == DSN_ADDR_UTF8)
				display_address(&para, rc->orcpt->addr, pl->global);
			else
				buf_append_str(&para, rc->orcpt->addr);
		}
		buf_append(&para, "", 1);
		text_wrap(t, "", (const char *)para.data);
		if (rc->diagnostic != NULL && rc->diagnostic[0] != '\0') {
			buf_reset(&para);
			if (host_ok(rc->remote_mta))
				buf_printf(&para, "The mail server %s answered: ", rc->remote_mta);
			else
				buf_append_str(&para, "The answer was: ");
			sanitize_ascii(&para, rc->diagnostic, l->max_diagnostic);
			buf_append(&para, "", 1);
			text_wrap(t, "    ", (const char *)para.data);
		}
		buf_append(t, "\r\n", 2);
	}
	buf_deinit(&para);
}

static void status_part(buf *s, const struct dsn_report *r, const struct dsn_report_limits *l,
			const struct plan *pl)
{
	buf v;
	buf_init(&v);
	/* per-message fields, in RFC 3464 2.2's order */
	if (r->mail_params != NULL && r->mail_params->has_envid)
		field_append(s, "Original-Envelope-Id", r->mail_params->envid,
			     strnlen(r->mail_params->envid, sizeof(r->mail_params->envid)));
	buf_printf(&v, "dns; %s", r->reporting_mta);
	field_append(s, "Reporting-MTA", (const char *)v.data, v.len);
	if (r->arrival_date != 0) {
		buf_reset(&v);
		date_append(&v, r->arrival_date);
		field_append(s, "Arrival-Date", (const char *)v.data, v.len);
	}
	for (size_t i = 0; i < r->n_rcpts; i++) {
		const struct dsn_recipient *rc = &r->rcpts[i];
		buf_append(s, "\r\n", 2);
		if (rc->orcpt != NULL && rc->orcpt->kind != DSN_ADDR_NONE) {
			buf_reset(&v);
			orcpt_address(&v, rc->orcpt, pl->global);
			field_append(s, "Original-Recipient", (const char *)v.data, v.len);
		}
		buf_reset(&v);
		typed_address(&v, rc->final_recipient, pl->global);
		field_append(s, "Final-Recipient", (const char *)v.data, v.len);
		field_str(s, "Action", dsn_action_name(rc->action));
		field_str(s, "Status", rc->status);
		if (host_ok(rc->remote_mta)) {
			buf_reset(&v);
			buf_printf(&v, "dns; %s", rc->remote_mta);
			field_append(s, "Remote-MTA", (const char *)v.data, v.len);
		}
		if (rc->diagnostic != NULL && rc->diagnostic[0] != '\0') {
			buf_reset(&v);
			buf_append_str(&v, "smtp; ");
			sanitize_ascii(&v, rc->diagnostic, l->max_diagnostic);
			field_append(s, "Diagnostic-Code", (const char *)v.data, v.len);
		}
		if (rc->last_attempt != 0) {
			buf_reset(&v);
			date_append(&v, rc->last_attempt);
			field_append(s, "Last-Attempt-Date", (const char *)v.data, v.len);
		}
		if (rc->final_log_id != NULL && rc->final_log_id[0] != '\0') {
			buf_reset(&v);
			sanitize_ascii(&v, rc->final_log_id, LOG_ID_MAX);
			if (v.len > 0)
				field_append(s, "Final-Log-ID", (const char *)v.data, v.len);
		}
		if (rc->action == DSN_ACTION_DELAYED && rc->will_retry_until != 0) {
			buf_reset(&v);
			date_append(&v, rc->will_retry_until);
			field_append(s, "Will-Retry-Until", (const char *)v.data, v.len);
		}
	}
	buf_deinit(&v);
}

/* ---- composing -------------------------------------------------------------------- */

static int check(const struct dsn_report *r, int *nonascii_addr_r, int *nonascii_orcpt_r,
		 const char **error_r)
{
	int ascii;
	*nonascii_addr_r = 0;
	*nonascii_orcpt_r = 0;
	if (!host_ok(r->reporting_mta) || strchr(r->reporting_mta, '[') != NULL) {
		*error_r = "Reporting MTA is not a host name";
		return -1;
	}
	if (!dsn_should_send(r->envelope_sender, DSN_NOTIFY_FAILURE, DSN_EVENT_FAILURE)) {
		*error_r = "No report to the null sender";
		return -1;
	}
	if (!address_ok(r->envelope_sender, &ascii)) {
		*error_r = "Bad envelope sender";
		return -1;
	}
	*nonascii_addr_r |= !ascii;
	if (r->n_rcpts == 0 || r->rcpts == NULL) {
		*error_r = "No recipients";
		return -1;
	}
	for (size_t i = 0; i < r->n_rcpts; i++) {
		const struct dsn_recipient *rc = &r->rcpts[i];
		if (!address_ok(rc->final_recipient, &ascii)) {
			*error_r = "Bad final recipient";
			return -1;
		}
		*nonascii_addr_r |= !ascii;
		if (dsn_action_name(rc->action) == NULL) {
			*error_r = "Bad action";
			return -1;
		}
		if (!status_ok(rc->status)) {
			*error_r = "Bad status code";
			return -1;
		}
		if (!orcpt_ok(rc->orcpt, &ascii)) {
			*error_r = "Bad original recipient";
			return -1;
		}
		*nonascii_orcpt_r |= !ascii;
	}
	if (r->mail_params != NULL && r->mail_params->has_envid) {
		const char *e = r->mail_params->envid;
		size_t n = strnlen(e, sizeof(r->mail_params->envid));
		if (n == 0 || n >= sizeof(r->mail_params->envid)) {
			*error_r = "Bad envelope id";
			return -1;
		}
		for (size_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)e[i];
			if (!((c >= 0x20 && c < 0x7f) || c == '\t')) {
				*error_r = "Bad envelope id";
				return -1;
			}
		}
	}
	if (r->original == NULL && r->original_len > 0) {
		*error_r = "Original length without original";
		return -1;
	}
	return 0;
}

static int content_has(const buf *b, const char *s, size_t len)
{
	return b->len > 0 && memmem(b->data, b->len, s, len) != NULL;
}

int dsn_report_compose(const struct dsn_report *r, const struct dsn_report_limits *limits,
		       buf *out, unsigned *flags_r, const char **error_r)
{
	struct dsn_report_limits l = limits_get(limits);
	int nonascii_addr, nonascii_orcpt;
	if (check(r, &nonascii_addr, &nonascii_orcpt, error_r) < 0)
		return -1;

	const uint8_t *orig = r->original;
	size_t olen = r->original != NULL ? r->original_len : 0;
	struct plan pl;
	memset(&pl, 0, sizeof(pl));
	for (size_t i = 0; i < r->n_rcpts; i++) {
		pl.any_failed |= r->rcpts[i].action == DSN_ACTION_FAILED;
		pl.any_delayed |= r->rcpts[i].action == DSN_ACTION_DELAYED;
		if (r->rcpts[i].action == DSN_ACTION_DELAYED &&
		    r->rcpts[i].will_retry_until > pl.retry_until)
			pl.retry_until = r->rcpts[i].will_retry_until;
	}
	pl.hdr_len = header_length(orig, olen);
	int hdr_8bit = has_8bit(orig, pl.hdr_len);
	pl.global = nonascii_addr || (r->smtputf8 && (nonascii_orcpt || hdr_8bit));
	unsigned flags = pl.global ? DSN_REPORT_SMTPUTF8 : 0;
	int ret_full = r->mail_params != NULL && r->mail_params->ret == DSN_RET_FULL;
	if (ret_full && pl.any_failed && olen > 0) {
		if (olen <= l.max_full) {
			pl.full = 1;
			flags |= DSN_REPORT_FULL;
		} else {
			flags |= DSN_REPORT_FULL_TOO_BIG;
		}
	}
	pl.hdr_take = pl.hdr_len;
	if (!pl.full && pl.hdr_take > l.max_headers) {
		/* cut at the end of the last whole line that fits */
		size_t cut = l.max_headers;
		while (cut > 0 && orig[cut - 1] != '\n')
			cut--;
		pl.hdr_take = cut > 0 ? cut : l.max_headers;
		flags |= DSN_REPORT_HEADERS_CUT;
	}

	/* the parts */
	buf text, status, original;
	buf_init(&text);
	buf_init(&status);
	buf_init(&original);
	human_part(&text, r, &l, &pl);
	status_part(&status, r, &l, &pl);
	if (pl.full) {
		/* header lines are broken as folded lines, body lines plainly */
		lines_append(&original, orig, pl.hdr_len, 1);
		lines_append(&original, orig + pl.hdr_len, olen - pl.hdr_len, 0);
	} else if (pl.hdr_take > 0)
		lines_append(&original, orig, pl.hdr_take, 1);
	int text_8bit = has_8bit(text.data, text.len);
	int status_8bit = has_8bit(status.data, status.len);
	int orig_8bit = has_8bit(original.data, original.len);
	if (text_8bit || status_8bit || orig_8bit)
		flags |= DSN_REPORT_8BIT;

	/* Message-ID and boundary */
	char token[UNIQUE_MAX + 1];
	if (r->unique != NULL && r->unique[0] != '\0') {
		size_t n = 0;
		for (; r->unique[n] != '\0' && n < UNIQUE_MAX; n++) {
			char c = r->unique[n];
			int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				 (c >= '0' && c <= '9') || c == '-' || c == '.';
			token[n] = ok ? c : '-';
		}
		token[n] = '\0';
	} else {
		util_random_hex(token, 12);
	}
	buf boundary;
	buf_init(&boundary);
	for (unsigned n = 0;; n++) {
		buf_reset(&boundary);
		buf_printf(&boundary, "=_dsn_%s", token);
		if (n > 0)
			buf_printf(&boundary, "_%u", n);
		if (!content_has(&text, (const char *)boundary.data, boundary.len) &&
		    !content_has(&status, (const char *)boundary.data, boundary.len) &&
		    !content_has(&original, (const char *)boundary.data, boundary.len))
			break;
	}
	buf_append(&boundary, "", 1);
	const char *bnd = (const char *)boundary.data;

	/* the message header */
	buf v;
	buf_init(&v);
	buf_printf(&v, "Mail Delivery System <MAILER-DAEMON@%s>", r->reporting_mta);
	field_append(out, "From", (const char *)v.data, v.len);
	buf_reset(&v);
	buf_printf(&v, "<%s>", r->envelope_sender);
	field_append(out, "To", (const char *)v.data, v.len);
	field_str(out, "Subject", pl.any_failed    ? "Undelivered Mail Returned to Sender"
				  : pl.any_delayed ? "Delayed Mail (still being retried)"
						   : "Successful Mail Delivery Report");
	buf_reset(&v);
	date_append(&v, r->date);
	field_append(out, "Date", (const char *)v.data, v.len);
	buf_reset(&v);
	buf_printf(&v, "<dsn.%s@%s>", token, r->reporting_mta);
	field_append(out, "Message-ID", (const char *)v.data, v.len);
	buf_reset(&v);
	if (original_msgid(orig, pl.hdr_len, &v)) {
		field_append(out, "In-Reply-To", (const char *)v.data, v.len);
		field_append(out, "References", (const char *)v.data, v.len);
	}
	field_str(out, "Auto-Submitted", "auto-replied");
	field_str(out, "MIME-Version", "1.0");
	buf_printf(out, "Content-Type: multipart/report; report-type=delivery-status;\r\n"
			"\tboundary=\"%s\"\r\n",
		   bnd);
	if (flags & DSN_REPORT_8BIT)
		field_str(out, "Content-Transfer-Encoding", "8bit");
	buf_append_str(out, "\r\nThis is a MIME-encapsulated delivery status notification.\r\n");

	/* 1. for a person */
	buf_printf(out, "\r\n--%s\r\n", bnd);
	buf_printf(out, "Content-Type: text/plain; charset=%s\r\n",
		   text_8bit ? "utf-8" : "us-ascii");
	if (text_8bit)
		field_str(out, "Content-Transfer-Encoding", "8bit");
	field_str(out, "Content-Description", "Notification");
	buf_append(out, "\r\n", 2);
	buf_append(out, text.data, text.len);

	/* 2. for a program */
	buf_printf(out, "\r\n--%s\r\n", bnd);
	field_str(out, "Content-Type",
		  pl.global ? "message/global-delivery-status" : "message/delivery-status");
	if (status_8bit)
		field_str(out, "Content-Transfer-Encoding", "8bit");
	field_str(out, "Content-Description", "Delivery report");
	buf_append(out, "\r\n", 2);
	buf_append(out, status.data, status.len);

	/* 3. the original */
	if (original.len > 0) {
		const char *type;
		const char *desc;
		if (pl.full) {
			type = pl.global && hdr_8bit ? "message/global" : "message/rfc822";
			desc = "Undelivered Message";
		} else {
			type = pl.global && hdr_8bit ? "message/global-headers"
						     : "text/rfc822-headers";
			desc = pl.any_failed ? "Undelivered Message Headers" : "Message Headers";
		}
		buf_printf(out, "\r\n--%s\r\n", bnd);
		field_str(out, "Content-Type", type);
		if (orig_8bit)
			field_str(out, "Content-Transfer-Encoding", "8bit");
		field_str(out, "Content-Description", desc);
		buf_append(out, "\r\n", 2);
		buf_append(out, original.data, original.len);
	}
	buf_printf(out, "\r\n--%s--\r\n", bnd);

	buf_deinit(&v);
	buf_deinit(&boundary);
	buf_deinit(&text);
	buf_deinit(&status);
	buf_deinit(&original);
	if (flags_r != NULL)
		*flags_r = flags;
	return 0;
}
