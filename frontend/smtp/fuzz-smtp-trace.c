/* fuzz-smtp-trace.c: the header scan of smtp-trace.h on any bytes, and the
 * fields built around them: a field is found only where a line of the
 * header section starts with its name and a colon, and what is added is
 * always well-formed header text (CRLF-terminated lines, no NUL). */
#include "smtp-trace.h"

#include <stdlib.h>
#include <string.h>

static void check_fields(const buf *b)
{
	for (size_t i = 0; i < b->len; i++) {
		uint8_t c = b->data[i];
		if (c == 0)
			abort();
		if (c == '\n' && (i == 0 || b->data[i - 1] != '\r'))
			abort();
		if (c == '\r' && (i + 1 >= b->len || b->data[i + 1] != '\n'))
			abort();
	}
	if (b->len > 0 && (b->len < 2 || b->data[b->len - 1] != '\n'))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	int has_date = smtp_trace_has_field(data, len, "Date");
	int has_id = smtp_trace_has_field(data, len, "Message-ID");
	/* the answer never depends on the bytes after the header section */
	const uint8_t *end = NULL;
	for (size_t i = 0; i + 1 < len && end == NULL; i++)
		if (data[i] == '\n' && (data[i + 1] == '\n' ||
					(data[i + 1] == '\r' && i + 2 < len && data[i + 2] == '\n')))
			end = data + i + 1;
	if (end != NULL && (size_t)(end - data) < SMTP_TRACE_SCAN_MAX &&
	    (data[0] != '\n' && !(data[0] == '\r' && len > 1 && data[1] == '\n'))) {
		size_t hlen = (size_t)(end - data);
		if (smtp_trace_has_field(data, hlen, "Date") != has_date ||
		    smtp_trace_has_field(data, hlen, "Message-ID") != has_id)
			abort();
	}
	buf out;
	buf_init(&out);
	/* the bytes as a HELO and a recipient: whatever they hold, one field */
	char item[300];
	size_t n = len < sizeof item - 1 ? len : sizeof item - 1;
	memcpy(item, data, n);
	item[n] = '\0';
	struct smtp_trace_info ti = { item, "192.0.2.1", "mx.example.test", "0123456789abcdef01234567",
				      item, 1, 1, 1700000000000 };
	smtp_trace_received(&out, &ti);
	check_fields(&out);
	if (memcmp(out.data, "Received: ", 10) != 0)
		abort();
	buf_reset(&out);
	smtp_trace_submission_fields(&out, data, len, "mx.example.test",
				     "0123456789abcdef0123456789abcdef", 1700000000000);
	check_fields(&out);
	/* exactly the missing ones were added */
	int added_date = out.len >= 6 && memcmp(out.data, "Date: ", 6) == 0;
	int added_id = out.len > 0 && memmem(out.data, out.len, "Message-ID: <", 13) != NULL;
	if (added_date == has_date || added_id == has_id)
		abort();
	buf_deinit(&out);
	/* loops: a hop count never above the lines scanned; Delivered-To
	 * names one of the addresses or none */
	unsigned hops = smtp_trace_hops(data, len);
	size_t lines = 1;
	for (size_t i = 0; i < len && i < SMTP_TRACE_SCAN_MAX; i++)
		lines += data[i] == '\n';
	if (hops > lines)
		abort();
	static const char *const addrs[] = { "a@example.test", "fwd@b.example" };
	int d = smtp_trace_delivered_to(data, len, addrs, 2);
	if (d < 0 || d > 2 || (d > 0 && !smtp_trace_has_field(data, len, "Delivered-To")))
		abort();
	return 0;
}
