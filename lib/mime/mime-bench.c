/* mime-bench: lib/mime against GMime 3 on a generated corpus.
 *
 *   mime-bench [-n MESSAGES] [-r ROUNDS] [-s SEED]
 *       generates a corpus of realistic shapes (plain text, quoted-
 *       printable, html+text alternative, multipart/mixed with base64
 *       attachments of 100 KB..5 MB (log-uniform), nested
 *       mixed/alternative/related, multipart/digest of message/rfc822,
 *       RFC 2047 headers, RFC 2231 file names) and parses it with each
 *       parser, printing messages/s, MB/s and heap per message (peak
 *       bytes allocated during one message's parse above what was
 *       allocated before it, from a counting malloc: median and max).
 *   mime-bench -d FILE...
 *       prints what lib/mime makes of each message (ENVELOPE,
 *       BODYSTRUCTURE, BODY, flags, the part table), for comparing with
 *       another server (lib/mime/dovecot-oracle.py).
 *
 * Not a test: it never fails on timing. Build it with
 * `cmake --build build --target mime-bench`; GMime is measured when
 * pkg-config found gmime-3.0 (Debian libgmime-3.0-dev).
 *
 * What each side does per message:
 *   lib/mime: mime_analyze(): ENVELOPE, BODYSTRUCTURE, BODY strings and
 *     the part table (sizes, line counts, offsets), everything FETCH
 *     needs, from the bytes in memory (no copy).
 *   GMime: a memory stream over the message, g_mime_parser_construct_message,
 *     then a walk of the tree reading what BODYSTRUCTURE and ENVELOPE
 *     need (types, parameters, disposition, encoding, id, description,
 *     content length, addresses, subject, date, message-id). No IMAP
 *     strings and no line counts: GMime does less than lib/mime here.
 */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "mime.h"
#include "xalloc.h"

#ifdef HAVE_GMIME
#include <gmime/gmime.h>
#endif

/* ---- a counting allocator (interposes malloc for the whole process) ---- */

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static size_t heap_now, heap_peak;

static void heap_add(void *p)
{
	if (p == NULL)
		return;
	size_t n = __atomic_add_fetch(&heap_now, malloc_usable_size(p), __ATOMIC_RELAXED);
	if (n > heap_peak)
		heap_peak = n;
}

static void heap_sub(void *p)
{
	if (p != NULL)
		__atomic_sub_fetch(&heap_now, malloc_usable_size(p), __ATOMIC_RELAXED);
}

void *malloc(size_t n)
{
	void *p = __libc_malloc(n);
	heap_add(p);
	return p;
}

void *calloc(size_t n, size_t s)
{
	void *p = __libc_calloc(n, s);
	heap_add(p);
	return p;
}

void *realloc(void *old, size_t n)
{
	heap_sub(old);
	void *p = __libc_realloc(old, n);
	heap_add(p != NULL ? p : (n > 0 ? old : NULL));
	return p;
}

void free(void *p)
{
	heap_sub(p);
	__libc_free(p);
}

int posix_memalign(void **r, size_t align, size_t n)
{
	void *p = __libc_memalign(align, n);
	if (p == NULL)
		return 12; /* ENOMEM */
	heap_add(p);
	*r = p;
	return 0;
}

void *aligned_alloc(size_t align, size_t n)
{
	void *p = __libc_memalign(align, n);
	heap_add(p);
	return p;
}

void *memalign(size_t align, size_t n)
{
	void *p = __libc_memalign(align, n);
	heap_add(p);
	return p;
}

/* ---- the corpus ---- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static size_t rnd_range(size_t lo, size_t hi)
{
	return lo + (size_t)(rnd() % (hi - lo + 1));
}

/* x^(1/2), Newton (no libm) */
static double sqrt_newton(double x)
{
	double g = x > 1 ? x / 2 : 1;
	for (int i = 0; i < 60; i++)
		g = 0.5 * (g + x / g);
	return g;
}

/* log-uniform in [lo, hi], in 64 steps: lo * (hi/lo)^(k/64) */
static size_t rnd_log(size_t lo, size_t hi)
{
	double root = (double)hi / (double)lo;
	for (int i = 0; i < 6; i++)
		root = sqrt_newton(root);
	double v = (double)lo;
	for (size_t k = rnd() % 65; k > 0; k--)
		v *= root;
	size_t out = (size_t)v;
	return out < lo ? lo : out > hi ? hi : out;
}

static const char *const words[] = {
	"the", "report", "meeting", "budget", "quarter", "server", "cluster", "mailbox",
	"please", "review", "attached", "thanks", "regards", "tomorrow", "deadline", "update",
	"project", "customer", "invoice", "schedule", "team", "release", "question", "answer",
};

static void put_words(buf *b, size_t bytes, int line_len)
{
	size_t start = b->len, col = 0;
	while (b->len - start < bytes) {
		const char *w = words[rnd() % (sizeof words / sizeof *words)];
		size_t wl = strlen(w);
		if (col + wl + 1 > (size_t)line_len) {
			buf_append(b, "\r\n", 2);
			col = 0;
		} else if (col > 0) {
			buf_append(b, " ", 1);
			col++;
		}
		buf_append(b, w, wl);
		col += wl;
	}
	buf_append(b, "\r\n", 2);
}

static void put_qp_words(buf *b, size_t bytes)
{
	size_t start = b->len, col = 0;
	while (b->len - start < bytes) {
		const char *w = rnd() % 8 == 0 ? "=C3=A9t=C3=A9" : words[rnd() % 24];
		size_t wl = strlen(w);
		if (col + wl + 1 > 74) {
			buf_append(b, "=\r\n", 3);
			col = 0;
		}
		buf_append(b, w, wl);
		buf_append(b, " ", 1);
		col += wl + 1;
	}
	buf_append(b, "\r\n", 2);
}

static void put_base64(buf *b, size_t bytes)
{
	static const char alpha[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t chars = (bytes + 2) / 3 * 4;
	buf_reserve(b, chars + chars / 76 * 2 + 4);
	size_t col = 0;
	for (size_t i = 0; i < chars; i++) {
		b->data[b->len++] = (uint8_t)alpha[rnd() & 63];
		if (++col == 76) {
			b->data[b->len++] = '\r';
			b->data[b->len++] = '\n';
			col = 0;
		}
	}
	b->data[b->len++] = '\r';
	b->data[b->len++] = '\n';
	b->data[b->len] = 0;
}

static unsigned msg_counter;

static void put_headers(buf *b, const char *extra)
{
	unsigned n = ++msg_counter;
	buf_printf(b, "Return-Path: <sender%u@example.org>\r\n", n);
	buf_printf(b,
		   "Received: from mx%u.example.org (mx%u.example.org [192.0.2.%u])\r\n"
		   "\tby mail.example.com with ESMTPS id %08X\r\n"
		   "\tfor <user@example.com>; Mon, 4 Mar 2024 10:%02u:00 +0000\r\n",
		   n % 7, n % 7, n % 250, n * 2654435761u, n % 60);
	buf_printf(b, "Date: Mon, 4 Mar 2024 10:%02u:%02u +0100\r\n", n % 60, (n * 7) % 60);
	if (n % 3 == 0)
		buf_append_str(b, "From: =?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <joerg@example.de>\r\n");
	else
		buf_printf(b, "From: \"Sender Number %u\" <sender%u@example.org>\r\n", n, n);
	buf_append_str(b, "To: User One <user@example.com>, \"Two, Second\" <two@example.com>,\r\n"
			  " three@example.com\r\n");
	if (n % 4 == 0)
		buf_append_str(b, "Cc: team: a@example.com, b@example.com;\r\n");
	if (n % 2 == 0)
		buf_append_str(b, "Subject: =?ISO-8859-1?Q?R=E9union_du_comit=E9?= =?UTF-8?B?"
				  "w6l0w6k=?= planning\r\n");
	else
		buf_printf(b, "Subject: Re: the quarterly report number %u\r\n", n);
	buf_printf(b, "Message-ID: <%u.%08X@example.org>\r\n", n, n * 40503u);
	if (n % 3 == 1)
		buf_printf(b, "In-Reply-To: <%u.parent@example.org>\r\n", n);
	buf_append_str(b, "MIME-Version: 1.0\r\n");
	buf_append_str(b, extra);
	buf_append_str(b, "\r\n");
}

static void gen_text_part(buf *b, size_t bytes, int html)
{
	if (rnd() % 3 == 0) {
		buf_printf(b, "Content-Type: text/%s; charset=\"utf-8\"\r\n"
			      "Content-Transfer-Encoding: quoted-printable\r\n\r\n",
			   html ? "html" : "plain");
		put_qp_words(b, bytes);
	} else {
		buf_printf(b, "Content-Type: text/%s; charset=us-ascii\r\n\r\n",
			   html ? "html" : "plain");
		if (html)
			buf_append_str(b, "<html><body><p>\r\n");
		put_words(b, bytes, 72);
		if (html)
			buf_append_str(b, "</p></body></html>\r\n");
	}
}

static void gen_attachment(buf *b, size_t bytes)
{
	unsigned n = msg_counter;
	if (n % 2 == 0)
		buf_printf(b, "Content-Type: application/pdf; name=\"report-%u.pdf\"\r\n"
			      "Content-Disposition: attachment; filename=\"report-%u.pdf\"\r\n",
			   n, n);
	else
		buf_append_str(b, "Content-Type: application/octet-stream\r\n"
				  "Content-Disposition: attachment;\r\n"
				  " filename*=utf-8''%E2%82%AC%20Rechnung%20M%C3%A4rz.xlsx\r\n");
	buf_append_str(b, "Content-Transfer-Encoding: base64\r\n\r\n");
	put_base64(b, bytes);
}

static void gen_alternative(buf *b, const char *bnd, size_t bytes)
{
	buf_printf(b, "--%s\r\n", bnd);
	gen_text_part(b, bytes, 0);
	buf_printf(b, "--%s\r\n", bnd);
	gen_text_part(b, bytes * 2, 1);
	buf_printf(b, "--%s--\r\n", bnd);
}

static void gen_message(buf *b)
{
	unsigned kind = (unsigned)(rnd() % 100);
	char extra[256];
	if (kind < 30) { /* plain */
		put_headers(b, rnd() % 2 ? "Content-Type: text/plain; charset=us-ascii\r\n" : "");
		put_words(b, rnd_range(2000, 30000), 72);
	} else if (kind < 55) { /* alternative */
		snprintf(extra, sizeof extra,
			 "Content-Type: multipart/alternative;\r\n"
			 "\tboundary=\"----=_Part_%u_%u.1709546400\"\r\n",
			 msg_counter, msg_counter * 31);
		put_headers(b, extra);
		char bnd[64];
		snprintf(bnd, sizeof bnd, "----=_Part_%u_%u.1709546400", msg_counter - 1 + 1,
			 (msg_counter) * 31);
		buf_append_str(b, "This is a multi-part message in MIME format.\r\n\r\n");
		gen_alternative(b, bnd, rnd_range(2000, 20000));
	} else if (kind < 70) { /* mixed with attachments */
		put_headers(b, "Content-Type: multipart/mixed; boundary=\"==MIX==\"\r\n");
		buf_append_str(b, "--==MIX==\r\n");
		gen_text_part(b, rnd_range(500, 5000), 0);
		unsigned n = 1 + (unsigned)(rnd() % 3);
		for (unsigned i = 0; i < n; i++) {
			buf_append_str(b, "--==MIX==\r\n");
			gen_attachment(b, rnd_log(100 * 1000, 5 * 1000 * 1000));
		}
		buf_append_str(b, "--==MIX==--\r\n");
	} else if (kind < 85) { /* nested: mixed(alternative(text, related(html, image)), att) */
		put_headers(b, "Content-Type: multipart/mixed; boundary=\"outer-b\"\r\n");
		buf_append_str(b, "--outer-b\r\n"
				  "Content-Type: multipart/alternative; boundary=\"alt-b\"\r\n\r\n"
				  "--alt-b\r\n");
		gen_text_part(b, rnd_range(1000, 8000), 0);
		buf_append_str(b, "--alt-b\r\n"
				  "Content-Type: multipart/related; boundary=\"rel-b\"\r\n\r\n"
				  "--rel-b\r\n");
		gen_text_part(b, rnd_range(2000, 16000), 1);
		buf_append_str(b, "--rel-b\r\n"
				  "Content-Type: image/png; name=\"logo.png\"\r\n"
				  "Content-ID: <logo@example.org>\r\n"
				  "Content-Disposition: inline; filename=\"logo.png\"\r\n"
				  "Content-Transfer-Encoding: base64\r\n\r\n");
		put_base64(b, rnd_range(20000, 200000));
		buf_append_str(b, "--rel-b--\r\n--alt-b--\r\n--outer-b\r\n");
		gen_attachment(b, rnd_log(100 * 1000, 2 * 1000 * 1000));
		buf_append_str(b, "--outer-b--\r\n");
	} else { /* digest of messages */
		put_headers(b, "Content-Type: multipart/digest; boundary=\"digest-b\"\r\n");
		unsigned n = 3 + (unsigned)(rnd() % 8);
		for (unsigned i = 0; i < n; i++) {
			buf_append_str(b, "--digest-b\r\n\r\n");
			if (i % 2 == 0) {
				put_headers(b, "");
				put_words(b, rnd_range(500, 4000), 72);
			} else {
				put_headers(b, "Content-Type: multipart/alternative; boundary=in-b\r\n");
				gen_alternative(b, "in-b", rnd_range(500, 3000));
			}
		}
		buf_append_str(b, "--digest-b--\r\n");
	}
}

struct corpus {
	uint8_t **msg;
	size_t *len;
	size_t n, bytes;
};

static void corpus_make(struct corpus *c, size_t n)
{
	c->msg = xcalloc(n, sizeof *c->msg);
	c->len = xcalloc(n, sizeof *c->len);
	c->n = n;
	c->bytes = 0;
	for (size_t i = 0; i < n; i++) {
		buf b;
		buf_init(&b);
		gen_message(&b);
		c->msg[i] = buf_steal(&b, &c->len[i]);
		c->bytes += c->len[i];
	}
}

/* ---- measuring ---- */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return x < y ? -1 : x > y;
}

typedef size_t parse_fn(const uint8_t *msg, size_t len, void *prepared);
typedef void *prepare_fn(const uint8_t *msg, size_t len);

struct figures {
	double msgs_s, mb_s;
	size_t heap_median, heap_max;
	size_t checksum;
};

static void measure(const char *name, const struct corpus *c, int rounds, prepare_fn *prep,
		    parse_fn *parse, struct figures *f)
{
	size_t *peaks = xcalloc(c->n, sizeof *peaks);
	double best = 1e30;
	for (int r = 0; r < rounds; r++) {
		double total = 0;
		size_t sum = 0;
		for (size_t i = 0; i < c->n; i++) {
			void *prepared = prep != NULL ? prep(c->msg[i], c->len[i]) : NULL;
			size_t base = heap_now;
			heap_peak = base;
			double t0 = now_s();
			sum += parse(c->msg[i], c->len[i], prepared);
			total += now_s() - t0;
			size_t peak = heap_peak - base;
			if (r == 0 || peak > peaks[i])
				peaks[i] = peak;
		}
		if (total < best)
			best = total;
		f->checksum = sum;
	}
	size_t max = 0;
	for (size_t i = 0; i < c->n; i++)
		if (peaks[i] > max)
			max = peaks[i];
	qsort(peaks, c->n, sizeof *peaks, cmp_size);
	f->msgs_s = (double)c->n / best;
	f->mb_s = (double)c->bytes / 1e6 / best;
	f->heap_median = peaks[c->n / 2];
	f->heap_max = max;
	printf("%-22s %10.0f msg/s %9.1f MB/s   heap/msg median %8zu B  max %9zu B\n", name,
	       f->msgs_s, f->mb_s, f->heap_median, f->heap_max);
	free(peaks);
}

static size_t ours_parse(const uint8_t *msg, size_t len, void *prepared)
{
	(void)prepared;
	struct mime_result *r;
	mime_analyze(msg, len, NULL, &r);
	size_t n = r->bodystructure_len + r->parts_len;
	mime_result_free(&r);
	return n;
}

/* fed in 4 KiB chunks, as a network read would */
static size_t ours_parse_chunked(const uint8_t *msg, size_t len, void *prepared)
{
	(void)prepared;
	struct mime_result *r;
	mime_parser *p = mime_parser_create(NULL);
	for (size_t off = 0; off < len; off += 4096)
		mime_parser_feed(p, msg + off, len - off < 4096 ? len - off : 4096);
	mime_parser_finish(p, &r);
	mime_parser_destroy(&p);
	size_t n = r->bodystructure_len + r->parts_len;
	mime_result_free(&r);
	return n;
}

#ifdef HAVE_GMIME
static void *gmime_prepare(const uint8_t *msg, size_t len)
{
	/* the stream's copy of the message is made before the measurement
	 * (lib/mime reads the caller's bytes in place) */
	return g_byte_array_new_take(g_memdup2(msg, len), len);
}

static size_t gmime_walk(GMimeObject *o, int depth);

static size_t gmime_message(GMimeMessage *m, int depth)
{
	size_t n = 0;
	InternetAddressList *lists[3] = {g_mime_message_get_from(m), g_mime_message_get_to(m),
					 g_mime_message_get_cc(m)};
	for (int k = 0; k < 3; k++) {
		if (lists[k] == NULL)
			continue;
		int len = internet_address_list_length(lists[k]);
		for (int i = 0; i < len; i++) {
			InternetAddress *a = internet_address_list_get_address(lists[k], i);
			const char *name = internet_address_get_name(a);
			n += name != NULL ? strlen(name) : 0;
		}
	}
	const char *subject = g_mime_message_get_subject(m);
	n += subject != NULL ? strlen(subject) : 0;
	const char *id = g_mime_message_get_message_id(m);
	n += id != NULL ? strlen(id) : 0;
	GDateTime *date = g_mime_message_get_date(m);
	n += date != NULL ? 1 : 0;
	GMimeObject *body = g_mime_message_get_mime_part(m);
	if (body != NULL)
		n += gmime_walk(body, depth + 1);
	return n;
}

static size_t gmime_walk(GMimeObject *o, int depth)
{
	size_t n = 1;
	GMimeContentType *ct = g_mime_object_get_content_type(o);
	n += strlen(g_mime_content_type_get_media_type(ct));
	n += strlen(g_mime_content_type_get_media_subtype(ct));
	const char *cs = g_mime_content_type_get_parameter(ct, "charset");
	n += cs != NULL ? strlen(cs) : 0;
	GMimeContentDisposition *d = g_mime_object_get_content_disposition(o);
	if (d != NULL) {
		const char *fn = g_mime_content_disposition_get_parameter(d, "filename");
		n += fn != NULL ? strlen(fn) : 0;
	}
	if (GMIME_IS_MULTIPART(o)) {
		int count = g_mime_multipart_get_count(GMIME_MULTIPART(o));
		for (int i = 0; i < count; i++)
			n += gmime_walk(g_mime_multipart_get_part(GMIME_MULTIPART(o), i), depth + 1);
	} else if (GMIME_IS_MESSAGE_PART(o)) {
		GMimeMessage *m = g_mime_message_part_get_message(GMIME_MESSAGE_PART(o));
		if (m != NULL)
			n += gmime_message(m, depth + 1);
	} else if (GMIME_IS_PART(o)) {
		GMimePart *part = GMIME_PART(o);
		n += (size_t)g_mime_part_get_content_encoding(part);
		const char *cid = g_mime_part_get_content_id(part);
		n += cid != NULL ? strlen(cid) : 0;
		const char *desc = g_mime_part_get_content_description(part);
		n += desc != NULL ? strlen(desc) : 0;
		GMimeDataWrapper *w = g_mime_part_get_content(part);
		if (w != NULL) {
			gint64 l = g_mime_stream_length(g_mime_data_wrapper_get_stream(w));
			n += l > 0 ? (size_t)l : 0;
		}
	}
	return n;
}

static size_t gmime_parse(const uint8_t *msg, size_t len, void *prepared)
{
	(void)msg;
	(void)len;
	GMimeStream *stream = g_mime_stream_mem_new_with_byte_array(prepared);
	GMimeParser *parser = g_mime_parser_new_with_stream(stream);
	GMimeMessage *m = g_mime_parser_construct_message(parser, NULL);
	size_t n = m != NULL ? gmime_message(m, 0) : 0;
	if (m != NULL)
		g_object_unref(m);
	g_object_unref(parser);
	g_object_unref(stream);
	return n;
}
#endif

/* ---- dump ---- */

static int dump(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		perror(path);
		return 1;
	}
	buf b;
	buf_init(&b);
	uint8_t tmp[65536];
	size_t n;
	while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
		buf_append(&b, tmp, n);
	fclose(f);
	struct mime_result *r;
	mime_analyze(b.data, b.len, NULL, &r);
	printf("== %s (%zu bytes) flags=%u part table %zu bytes\nENVELOPE %s\nBODYSTRUCTURE %s\n"
	       "BODY %s\n",
	       path, b.len, r->flags, r->parts_len, r->envelope, r->bodystructure, r->body);
	struct mime_part_loc *locs;
	int count = mime_parts_decode(r->parts, r->parts_len, &locs, NULL);
	for (int i = 0; i < count; i++) {
		const struct mime_part_loc *l = &locs[i];
		printf("part ");
		for (unsigned k = 0; k < l->depth; k++)
			printf("%s%u", k ? "." : "", l->path[k]);
		if (l->depth == 0)
			printf("(root)");
		printf(" flags=%u enc=%d charset=%s mime=%llu+%llu body=%llu+%llu", l->flags,
		       (int)l->encoding, l->charset, (unsigned long long)l->mime_off,
		       (unsigned long long)l->mime_len, (unsigned long long)l->body_off,
		       (unsigned long long)l->body_len);
		if (l->flags & MIME_PART_MESSAGE)
			printf(" hdr=%llu+%llu text=%llu+%llu", (unsigned long long)l->hdr_off,
			       (unsigned long long)l->hdr_len, (unsigned long long)l->text_off,
			       (unsigned long long)l->text_len);
		printf("\n");
	}
	free(locs);
	mime_result_free(&r);
	buf_deinit(&b);
	return 0;
}

int main(int argc, char **argv)
{
	size_t n_msgs = 200;
	int rounds = 3;
	uint64_t seed = 20240304;
	if (argc > 1 && strcmp(argv[1], "-d") == 0) {
		int rc = 0;
		for (int i = 2; i < argc; i++)
			rc |= dump(argv[i]);
		return rc;
	}
	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "-n") == 0)
			n_msgs = strtoul(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "-r") == 0)
			rounds = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "-s") == 0)
			seed = strtoull(argv[i + 1], NULL, 10);
	}
	if (n_msgs == 0 || rounds <= 0) {
		fprintf(stderr, "usage: mime-bench [-n MESSAGES] [-r ROUNDS] [-s SEED] | -d FILE...\n");
		return 2;
	}
	rng_state = seed | 1;
	struct corpus c;
	corpus_make(&c, n_msgs);
	size_t max_len = 0;
	for (size_t i = 0; i < c.n; i++)
		if (c.len[i] > max_len)
			max_len = c.len[i];
	printf("corpus: %zu messages, %.1f MB (largest %.1f MB), seed %llu, best of %d rounds\n",
	       c.n, (double)c.bytes / 1e6, (double)max_len / 1e6, (unsigned long long)seed,
	       rounds);
#ifdef HAVE_GMIME
	setenv("G_SLICE", "always-malloc", 1);
	g_mime_init();
#endif
	/* the whole corpus, then small (< 100 KB: text, alternatives,
	 * digests) and large messages (attachments) apart */
	struct corpus views[3];
	const char *view_names[3] = {"all messages", "small (< 100 KB)", "large (>= 100 KB)"};
	views[0] = c;
	for (int v = 1; v < 3; v++) {
		views[v].msg = xcalloc(c.n, sizeof *c.msg);
		views[v].len = xcalloc(c.n, sizeof *c.len);
		views[v].n = views[v].bytes = 0;
		for (size_t i = 0; i < c.n; i++) {
			if ((c.len[i] < 100000) != (v == 1))
				continue;
			views[v].msg[views[v].n] = c.msg[i];
			views[v].len[views[v].n++] = c.len[i];
			views[v].bytes += c.len[i];
		}
	}
	for (int v = 0; v < 3; v++) {
		if (views[v].n == 0)
			continue;
		printf("\n%s: %zu messages, %.1f MB\n", view_names[v], views[v].n,
		       (double)views[v].bytes / 1e6);
		struct figures ours, chunked;
		measure("lib/mime", &views[v], rounds, NULL, ours_parse, &ours);
		measure("lib/mime (4 KiB feed)", &views[v], rounds, NULL, ours_parse_chunked,
			&chunked);
#ifdef HAVE_GMIME
		struct figures gm;
		measure("GMime 3", &views[v], rounds, gmime_prepare, gmime_parse, &gm);
		printf("lib/mime vs GMime: %.1fx the speed, %.1fx less heap (median), %.1fx "
		       "less (max)\n",
		       ours.msgs_s / gm.msgs_s,
		       ours.heap_median ? (double)gm.heap_median / (double)ours.heap_median : 0.0,
		       ours.heap_max ? (double)gm.heap_max / (double)ours.heap_max : 0.0);
#else
		printf("GMime 3: not built (pkg-config gmime-3.0 not found)\n");
#endif
	}
	for (int v = 1; v < 3; v++) {
		free(views[v].msg);
		free(views[v].len);
	}
#ifdef HAVE_GMIME
	g_mime_shutdown();
#endif
	for (size_t i = 0; i < c.n; i++)
		free(c.msg[i]);
	free(c.msg);
	free(c.len);
	return 0;
}
