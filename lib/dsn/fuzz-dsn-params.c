/* libFuzzer target: lib/dsn's SMTP parameter parser and its encodings
 * (dsn-params.h).
 *
 * Input: one control byte, then the parameter text of a MAIL or RCPT
 * line (what follows the path).
 *   bit 0  RCPT (NOTIFY, ORCPT), else MAIL (RET, ENVID)
 *   bit 1  the transaction is SMTPUTF8 (DSN_PARSE_SMTPUTF8)
 *   bit 2  format for a hop with SMTPUTF8 (DSN_FORMAT_SMTPUTF8)
 *   bit 3  also run the text through the xtext and utf-8 address
 *          decoders and encoders
 *
 * Checked: what parses is within its limits and holds no control
 * character (ENVID and non-utf-8 ORCPT: printable US-ASCII; utf-8 ORCPT:
 * valid UTF-8); formatting it gives parameters that parse back to the
 * same values; encode then decode is the identity for any octets
 * (xtext) and any decoded address (utf-8); a decoded value re-encodes to
 * text that decodes to it again.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "buf.h"
#include "dsn-params.h"
#include "dsn-private.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                               \
	do {                                                                                   \
		if (!(x))                                                                      \
			__builtin_trap();                                                      \
	} while (0)

static int printable(const char *s, int allow_tab)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (!((c >= 0x20 && c < 0x7f) || (allow_tab && c == '\t')))
			return 0;
	}
	return 1;
}

static int valid_utf8_no_controls(const char *s)
{
	size_t len = strlen(s);
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t n = dsn__utf8_char((const uint8_t *)s + i, len - i, &cp);
		if (n == 0 || cp < 0x20 || cp == 0x7f)
			return 0;
		i += n;
	}
	return 1;
}

static void check_mail(const struct dsn_mail_params *m)
{
	CHECK(m->ret == DSN_RET_UNSPECIFIED || m->ret == DSN_RET_FULL || m->ret == DSN_RET_HDRS);
	if (m->has_envid) {
		CHECK(strnlen(m->envid, sizeof(m->envid)) < sizeof(m->envid));
		CHECK(m->envid[0] != '\0' && printable(m->envid, 1));
	} else {
		CHECK(m->envid[0] == '\0');
	}
	buf b;
	buf_init(&b);
	dsn_mail_params_format(m, &b);
	for (size_t i = 0; i < b.len; i++)
		CHECK(b.data[i] >= 0x20 && b.data[i] < 0x7f);
	struct dsn_mail_params again;
	dsn_mail_params_init(&again);
	const char *err;
	int n = dsn_mail_params_parse(&again, (const char *)b.data, b.len, 0, &err);
	CHECK(n == (m->ret != DSN_RET_UNSPECIFIED) + (m->has_envid != 0));
	CHECK(again.ret == m->ret && again.has_envid == m->has_envid);
	CHECK(strcmp(again.envid, m->envid) == 0);
	buf_deinit(&b);
}

static void check_rcpt(const struct dsn_rcpt_params *r, unsigned fflags)
{
	unsigned bits = DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE | DSN_NOTIFY_DELAY;
	CHECK(r->notify == 0 || r->notify == DSN_NOTIFY_NEVER || (r->notify & ~bits) == 0);
	const struct dsn_orcpt *o = &r->orcpt;
	if (o->kind != DSN_ADDR_NONE) {
		CHECK(o->type[0] != '\0' && strlen(o->type) <= DSN_ADDR_TYPE_MAX);
		CHECK(o->addr[0] != '\0' && strlen(o->addr) <= DSN_ORCPT_MAX);
		CHECK((o->kind == DSN_ADDR_UTF8) == (strcmp(o->type, "utf-8") == 0));
		CHECK((o->kind == DSN_ADDR_RFC822) == (strcmp(o->type, "rfc822") == 0));
		if (o->kind == DSN_ADDR_UTF8)
			CHECK(valid_utf8_no_controls(o->addr));
		else
			CHECK(printable(o->addr, 0));
	}
	buf b;
	buf_init(&b);
	int fret = dsn_rcpt_params_format(r, fflags, &b);
	CHECK(fret == 0 || fret == -1);
	if (!(fflags & DSN_FORMAT_SMTPUTF8))
		for (size_t i = 0; i < b.len; i++)
			CHECK(b.data[i] >= 0x20 && b.data[i] < 0x7f);
	struct dsn_rcpt_params again;
	dsn_rcpt_params_init(&again);
	const char *err;
	unsigned pflags = (fflags & DSN_FORMAT_SMTPUTF8) ? DSN_PARSE_SMTPUTF8 : 0;
	int n = dsn_rcpt_params_parse(&again, (const char *)b.data, b.len, pflags, &err);
	CHECK(n >= 0);
	CHECK(again.notify == r->notify);
	if (fret == 0) {
		CHECK(again.orcpt.kind == o->kind);
		CHECK(strcmp(again.orcpt.type, o->type) == 0);
		CHECK(strcmp(again.orcpt.addr, o->addr) == 0);
	} else {
		CHECK(again.orcpt.kind == DSN_ADDR_NONE);
	}
	buf_deinit(&b);
}

static void encodings(const uint8_t *s, size_t len, unsigned pflags)
{
	buf e, d, d2;
	buf_init(&e);
	buf_init(&d);
	buf_init(&d2);
	const char *err;
	/* any octets: encode, decode, identity */
	dsn_xtext_encode(s, len, &e);
	CHECK(dsn_xtext_decode((const char *)e.data, e.len, &d, &err) == 0);
	CHECK(d.len == len && (len == 0 || memcmp(d.data, s, len) == 0));
	/* the text as xtext: if it decodes, its canonical form decodes alike */
	buf_reset(&d);
	if (dsn_xtext_decode((const char *)s, len, &d, &err) == 0) {
		CHECK(d.len <= len);
		buf_reset(&e);
		dsn_xtext_encode(d.data, d.len, &e);
		CHECK(dsn_xtext_decode((const char *)e.data, e.len, &d2, &err) == 0);
		CHECK(d2.len == d.len && (d.len == 0 || memcmp(d2.data, d.data, d.len) == 0));
	}
	/* the text as a utf-8 address */
	buf_reset(&d);
	if (dsn_utf8_addr_decode((const char *)s, len, pflags, &d, &err) == 0) {
		CHECK(d.len > 0 && d.len <= len);
		buf_append(&d, "", 1);
		CHECK(valid_utf8_no_controls((const char *)d.data));
		for (int unitext = 0; unitext < 2; unitext++) {
			buf_reset(&e);
			buf_reset(&d2);
			dsn_utf8_addr_encode((const char *)d.data, d.len - 1, unitext, &e);
			if (!unitext)
				for (size_t i = 0; i < e.len; i++)
					CHECK(e.data[i] > 0x20 && e.data[i] < 0x7f);
			CHECK(dsn_utf8_addr_decode((const char *)e.data, e.len,
						   unitext ? DSN_PARSE_SMTPUTF8 : 0, &d2, &err) == 0);
			CHECK(d2.len == d.len - 1 && memcmp(d2.data, d.data, d2.len) == 0);
		}
	}
	/* any octets as a "utf-8 address": the xtext form is 7-bit graphic */
	buf_reset(&e);
	dsn_utf8_addr_encode((const char *)s, len, 0, &e);
	for (size_t i = 0; i < e.len; i++)
		CHECK(e.data[i] > 0x20 && e.data[i] < 0x7f);
	buf_deinit(&e);
	buf_deinit(&d);
	buf_deinit(&d2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	uint8_t control = data[0];
	const char *text = (const char *)data + 1;
	size_t len = size - 1;
	unsigned pflags = (control & 0x02) ? DSN_PARSE_SMTPUTF8 : 0;
	unsigned fflags = (control & 0x04) ? DSN_FORMAT_SMTPUTF8 : 0;
	const char *err = NULL;
	if (control & 0x01) {
		struct dsn_rcpt_params r;
		dsn_rcpt_params_init(&r);
		int n = dsn_rcpt_params_parse(&r, text, len, pflags, &err);
		CHECK(n >= -1);
		if (n < 0)
			CHECK(err != NULL && err[0] != '\0');
		else
			check_rcpt(&r, fflags);
	} else {
		struct dsn_mail_params m;
		dsn_mail_params_init(&m);
		int n = dsn_mail_params_parse(&m, text, len, pflags, &err);
		CHECK(n >= -1);
		if (n < 0)
			CHECK(err != NULL && err[0] != '\0');
		else
			check_mail(&m);
	}
	if (control & 0x08)
		encodings((const uint8_t *)text, len, pflags);
	return 0;
}
