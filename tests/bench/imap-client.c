/* imap-client.c: the benchmarks' IMAP client (see imap-client.h).
 *
 * Ordering inside a read: the bytes are fed to the reader one response at a
 * time and each response is dispatched before the next is read, so a
 * callback that destroys the connection stops the rest (state C_DEAD is
 * checked after every dispatch). The struct is freed only in close_cb. */
#include "imap-client.h"

#include "xalloc.h"

#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- reader --------------------------------------------------------------- */

void imapc_reader_init(struct imapc_reader *r, const struct imapc_limits *limits)
{
	memset(r, 0, sizeof(*r));
	r->limits.max_line = IMAPC_DEFAULT_MAX_LINE;
	r->limits.max_literal = IMAPC_DEFAULT_MAX_LITERAL;
	if (limits != NULL && limits->max_line != 0)
		r->limits.max_line = limits->max_line;
	if (limits != NULL && limits->max_literal != 0)
		r->limits.max_literal = limits->max_literal;
	r->state = IMAPC_READ_LINE;
	buf_init(&r->text);
}

void imapc_reader_deinit(struct imapc_reader *r)
{
	buf_deinit(&r->text);
}

/* The literal size announced at the end of text[0..len) ("... {123}" or
 * "{123+}"), or -1 when the text does not end with one. */
static int64_t reader_literal_size(const uint8_t *text, size_t len)
{
	if (len < 3 || text[len - 1] != '}')
		return -1;
	size_t i = len - 1;
	if (i > 0 && text[i - 1] == '+')
		i--;
	size_t end = i;
	while (i > 0 && text[i - 1] >= '0' && text[i - 1] <= '9')
		i--;
	if (i == end || i == 0 || text[i - 1] != '{' || end - i > 18)
		return -1;
	int64_t n = 0;
	for (size_t k = i; k < end; k++)
		n = n * 10 + (text[k] - '0');
	return n;
}

int imapc_reader_read(struct imapc_reader *r, const uint8_t *data, size_t len,
		      size_t *used_r, struct imapc_response *resp_r, const char **error_r)
{
	size_t pos = 0;
	*used_r = 0;
	if (r->state == IMAPC_READ_FAILED) {
		*error_r = "reader failed earlier";
		return -1;
	}
	if (r->complete) {
		buf_reset(&r->text);
		r->scan = 0;
		r->literal_bytes = 0;
		r->complete = false;
	}
	while (pos < len) {
		if (r->state == IMAPC_READ_LITERAL) {
			size_t n = len - pos;
			if ((uint64_t)n > r->literal_left)
				n = (size_t)r->literal_left;
			pos += n;
			r->literal_left -= n;
			if (r->literal_left == 0)
				r->state = IMAPC_READ_LINE;
			continue;
		}
		const uint8_t *lf = memchr(data + pos, '\n', len - pos);
		size_t chunk = lf != NULL ? (size_t)(lf - (data + pos)) + 1 : len - pos;
		/* the limit is checked before the bytes are kept (+2: the CRLF,
		 * which is dropped again) */
		if (r->text.len + chunk > r->limits.max_line + 2) {
			r->state = IMAPC_READ_FAILED;
			*used_r = pos;
			*error_r = "response line too long";
			return -1;
		}
		buf_append(&r->text, data + pos, chunk);
		pos += chunk;
		if (lf == NULL)
			break;
		/* a line ended: drop its CRLF (or bare LF) */
		size_t end = r->text.len - 1;
		if (end > r->scan && r->text.data[end - 1] == '\r')
			end--;
		r->text.len = end;
		if (end > r->limits.max_line) {  /* a bare LF let one byte more in */
			r->state = IMAPC_READ_FAILED;
			*used_r = pos;
			*error_r = "response line too long";
			return -1;
		}
		int64_t lit = reader_literal_size(r->text.data + r->scan, end - r->scan);
		if (lit >= 0) {
			if ((uint64_t)lit > r->limits.max_literal) {
				r->state = IMAPC_READ_FAILED;
				*used_r = pos;
				*error_r = "literal too large";
				return -1;
			}
			r->literal_left = (uint64_t)lit;
			r->literal_bytes += (uint64_t)lit;
			r->scan = r->text.len;
			if (lit > 0)
				r->state = IMAPC_READ_LITERAL;
			continue;
		}
		buf_reserve(&r->text, 1);
		r->text.data[r->text.len] = '\0';
		r->complete = true;
		resp_r->text = (const char *)r->text.data;
		resp_r->len = r->text.len;
		resp_r->literal_bytes = r->literal_bytes;
		*used_r = pos;
		return 1;
	}
	*used_r = pos;
	return 0;
}

bool imapc_untagged_number(const struct imapc_response *resp, const char *word, uint64_t *n_r)
{
	const char *p = resp->text;
	if (resp->len < 4 || p[0] != '*' || p[1] != ' ' || p[2] < '0' || p[2] > '9')
		return false;
	char *end;
	unsigned long long n = strtoull(p + 2, &end, 10);
	if (*end != ' ')
		return false;
	size_t wl = strlen(word);
	if (strncasecmp(end + 1, word, wl) != 0 || (end[1 + wl] != '\0' && end[1 + wl] != ' '))
		return false;
	*n_r = n;
	return true;
}

/* ---- connection ------------------------------------------------------------- */

enum conn_state { C_NEW, C_CONNECTING, C_GREETING, C_OPEN, C_DEAD };

struct imapc_conn {
	uv_tcp_t tcp;
	uv_connect_t connect_req;
	struct imapc_shared *shared;
	struct imapc_callbacks cb;
	void *ctx;
	struct imapc_reader reader;
	enum conn_state state;
	SSL *ssl;
	BIO *rbio, *wbio;   /* owned by ssl */
	bool in_flight;
	unsigned tag_seq;
	char tag[16];
	size_t tag_len;
	uint8_t *literal;   /* APPEND's literal, until the continuation */
	size_t literal_len;
	bool bye;           /* the server said BYE */
};

struct write_req {
	uv_write_t req;
	size_t len;
	uint8_t data[];
};

struct imapc_conn *imapc_conn_create(uv_loop_t *loop, struct imapc_shared *shared,
				     const struct imapc_settings *set,
				     const struct imapc_callbacks *cb, void *ctx)
{
	struct imapc_conn *c = xcalloc(1, sizeof(*c));
	c->shared = shared;
	c->cb = *cb;
	c->ctx = ctx;
	c->state = C_NEW;
	imapc_reader_init(&c->reader, &set->limits);
	uv_tcp_init(loop, &c->tcp);
	c->tcp.data = c;
	if (set->ssl_ctx != NULL) {
		c->ssl = SSL_new(set->ssl_ctx);
		c->rbio = BIO_new(BIO_s_mem());
		c->wbio = BIO_new(BIO_s_mem());
		if (c->ssl == NULL || c->rbio == NULL || c->wbio == NULL)
			abort();
		SSL_set_bio(c->ssl, c->rbio, c->wbio);
		SSL_set_connect_state(c->ssl);
		if (set->sni != NULL) {
			SSL_set_tlsext_host_name(c->ssl, set->sni);
			SSL_set1_host(c->ssl, set->sni);  /* checked when the ctx verifies */
		}
	}
	return c;
}

void *imapc_conn_context(const struct imapc_conn *c)
{
	return c->ctx;
}

bool imapc_conn_busy(const struct imapc_conn *c)
{
	return c->in_flight;
}

static void conn_close_cb(uv_handle_t *h)
{
	struct imapc_conn *c = h->data;
	imapc_reader_deinit(&c->reader);
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	free(c->literal);
	free(c);
}

void imapc_conn_destroy(struct imapc_conn **cp)
{
	struct imapc_conn *c = *cp;
	if (c == NULL)
		return;
	*cp = NULL;
	c->state = C_DEAD;
	memset(&c->cb, 0, sizeof(c->cb));
	if (!uv_is_closing((uv_handle_t *)&c->tcp))
		uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
}

/* The connection ended: tell whoever waits (the command in flight, the
 * greeting, or on_closed) once; the owner still destroys it. */
static void conn_fail(struct imapc_conn *c, enum imapc_status st, const char *text)
{
	if (c->state == C_DEAD)
		return;
	enum conn_state was = c->state;
	c->state = C_DEAD;
	uv_read_stop((uv_stream_t *)&c->tcp);
	if (c->in_flight) {
		c->in_flight = false;
		if (c->cb.on_done != NULL)
			c->cb.on_done(c, st, text);
	} else if (was == C_CONNECTING || was == C_GREETING) {
		if (c->cb.on_ready != NULL)
			c->cb.on_ready(c, st, text);
	} else if (c->cb.on_closed != NULL) {
		c->cb.on_closed(c, st, text);
	}
}

static void conn_write_cb(uv_write_t *req, int status)
{
	(void)status;  /* a failed write shows up as a read error too */
	free(req);
}

static void conn_write_wire(struct imapc_conn *c, const void *data, size_t len)
{
	struct write_req *w = xmalloc(sizeof(*w) + len);
	memcpy(w->data, data, len);
	w->len = len;
	uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)len);
	if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, conn_write_cb) < 0) {
		free(w);
		conn_fail(c, IMAPC_ERROR, "write failed");
	}
}

/* Move what OpenSSL wrote into its memory BIO to the socket. */
static void conn_flush_tls(struct imapc_conn *c)
{
	uint8_t tmp[16384];
	int n;
	while ((n = BIO_read(c->wbio, tmp, sizeof(tmp))) > 0)
		conn_write_wire(c, tmp, (size_t)n);
}

static void conn_write(struct imapc_conn *c, const void *data, size_t len)
{
	if (c->ssl == NULL) {
		conn_write_wire(c, data, len);
		return;
	}
	const uint8_t *p = data;
	while (len > 0) {
		size_t n = len > (1u << 30) ? (1u << 30) : len;
		int w = SSL_write(c->ssl, p, (int)n);
		if (w <= 0) {
			conn_fail(c, IMAPC_ERROR, "TLS write failed");
			return;
		}
		p += w;
		len -= (size_t)w;
	}
	conn_flush_tls(c);
}

static enum imapc_status status_of(const char *word)
{
	if (strncasecmp(word, "OK", 2) == 0 && (word[2] == ' ' || word[2] == '\0'))
		return IMAPC_OK;
	if (strncasecmp(word, "NO", 2) == 0 && (word[2] == ' ' || word[2] == '\0'))
		return IMAPC_NO;
	return IMAPC_BAD;
}

static void conn_dispatch(struct imapc_conn *c, const struct imapc_response *resp)
{
	const char *t = resp->text;
	if (c->state == C_GREETING) {
		if (strncasecmp(t, "* OK", 4) == 0 || strncasecmp(t, "* PREAUTH", 9) == 0) {
			c->state = C_OPEN;
			if (c->cb.on_ready != NULL)
				c->cb.on_ready(c, IMAPC_OK, t);
		} else {
			conn_fail(c, strncasecmp(t, "* BYE", 5) == 0 ? IMAPC_BYE : IMAPC_ERROR, t);
		}
		return;
	}
	if (t[0] == '+') {
		const char *rest = t[1] == ' ' ? t + 2 : t + 1;
		if (c->literal != NULL) {
			uint8_t *lit = c->literal;
			size_t len = c->literal_len;
			c->literal = NULL;
			conn_write(c, lit, len);
			free(lit);
			conn_write(c, "\r\n", 2);
		} else if (c->cb.on_continue != NULL) {
			c->cb.on_continue(c, rest);
		}
		return;
	}
	if (t[0] == '*') {
		if (strncasecmp(t, "* BYE", 5) == 0)
			c->bye = true;
		if (c->cb.on_untagged != NULL)
			c->cb.on_untagged(c, resp);
		return;
	}
	if (c->in_flight && resp->len > c->tag_len && strncmp(t, c->tag, c->tag_len) == 0 &&
	    t[c->tag_len] == ' ') {
		c->in_flight = false;
		free(c->literal);  /* refused before the continuation */
		c->literal = NULL;
		const char *rest = t + c->tag_len + 1;
		if (c->cb.on_done != NULL)
			c->cb.on_done(c, status_of(rest), rest);
		return;
	}
	conn_fail(c, IMAPC_ERROR, "unexpected response");
}

static void conn_process(struct imapc_conn *c, const uint8_t *data, size_t len)
{
	while (len > 0 && c->state != C_DEAD) {
		size_t used;
		struct imapc_response resp;
		const char *error;
		int ret = imapc_reader_read(&c->reader, data, len, &used, &resp, &error);
		if (ret < 0) {
			conn_fail(c, IMAPC_ERROR, error);
			return;
		}
		data += used;
		len -= used;
		if (ret == 1)
			conn_dispatch(c, &resp);
	}
}

static void conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	struct imapc_conn *c = h->data;
	(void)suggested;
	*b = uv_buf_init((char *)c->shared->rbuf, sizeof(c->shared->rbuf));
}

static void conn_tls_read(struct imapc_conn *c, const uint8_t *data, size_t len)
{
	if (BIO_write(c->rbio, data, (int)len) != (int)len) {
		conn_fail(c, IMAPC_ERROR, "TLS buffer");
		return;
	}
	if (!SSL_is_init_finished(c->ssl)) {
		int r = SSL_do_handshake(c->ssl);
		conn_flush_tls(c);
		if (r <= 0) {
			int e = SSL_get_error(c->ssl, r);
			if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
				char msg[160];
				ERR_error_string_n(ERR_get_error(), msg, sizeof(msg));
				conn_fail(c, IMAPC_ERROR, msg);
			}
			return;
		}
	}
	for (;;) {
		int n = SSL_read(c->ssl, c->shared->plain, sizeof(c->shared->plain));
		if (n <= 0) {
			int e = SSL_get_error(c->ssl, n);
			conn_flush_tls(c);  /* key updates, tickets */
			if (e == SSL_ERROR_ZERO_RETURN)
				conn_fail(c, c->bye ? IMAPC_BYE : IMAPC_ERROR, "TLS closed");
			else if (e != SSL_ERROR_WANT_READ)
				conn_fail(c, IMAPC_ERROR, "TLS read failed");
			return;
		}
		conn_process(c, c->shared->plain, (size_t)n);
		if (c->state == C_DEAD)
			return;
	}
}

static void conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
	struct imapc_conn *c = s->data;
	if (nread < 0) {
		conn_fail(c, c->bye || nread == UV_EOF ? IMAPC_BYE : IMAPC_ERROR,
			  nread == UV_EOF ? "connection closed" : uv_strerror((int)nread));
		return;
	}
	if (nread == 0)
		return;
	if (c->ssl != NULL)
		conn_tls_read(c, (const uint8_t *)b->base, (size_t)nread);
	else
		conn_process(c, (const uint8_t *)b->base, (size_t)nread);
}

static void conn_connect_cb(uv_connect_t *req, int status)
{
	struct imapc_conn *c = req->data;
	if (c->state == C_DEAD)
		return;
	if (status < 0) {
		conn_fail(c, IMAPC_ERROR, uv_strerror(status));
		return;
	}
	c->state = C_GREETING;
	uv_tcp_nodelay(&c->tcp, 1);
	uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb);
	if (c->ssl != NULL) {
		SSL_do_handshake(c->ssl);
		conn_flush_tls(c);
	}
}

int imapc_conn_connect(struct imapc_conn *c, const struct sockaddr *addr)
{
	if (c->state != C_NEW)
		return UV_EINVAL;
	c->connect_req.data = c;
	int r = uv_tcp_connect(&c->connect_req, &c->tcp, addr, conn_connect_cb);
	if (r == 0)
		c->state = C_CONNECTING;
	return r;
}

int imapc_conn_command(struct imapc_conn *c, const char *line, const void *literal,
		       size_t literal_len)
{
	if (c->state != C_OPEN || c->in_flight)
		return -1;
	c->tag_len = (size_t)snprintf(c->tag, sizeof(c->tag), "a%u", ++c->tag_seq);
	size_t ll = strlen(line);
	char *wire = xmalloc(c->tag_len + 1 + ll + 2);
	memcpy(wire, c->tag, c->tag_len);
	wire[c->tag_len] = ' ';
	memcpy(wire + c->tag_len + 1, line, ll);
	memcpy(wire + c->tag_len + 1 + ll, "\r\n", 2);
	if (literal != NULL) {
		c->literal = xmalloc(literal_len ? literal_len : 1);
		memcpy(c->literal, literal, literal_len);
		c->literal_len = literal_len;
	}
	c->in_flight = true;
	conn_write(c, wire, c->tag_len + 1 + ll + 2);
	free(wire);
	return 0;
}

int imapc_conn_send_raw(struct imapc_conn *c, const char *data, size_t len)
{
	if (c->state != C_OPEN)
		return -1;
	conn_write(c, data, len);
	return 0;
}
