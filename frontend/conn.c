/* conn.c: listener, connections, TLS, compression, buffered I/O, timers
 * (conn.h).
 *
 * Input flows read_cb -> (TLS) -> [zlib->raw -> inflate] -> c->in ->
 * ops->input; reading pauses once c->in (or the compressed bytes waiting
 * to be inflated) holds max_input bytes and resumes when conn_process()
 * finds less. Replies are gathered in c->out and handed to libuv in one
 * uv_write per conn_flush() (deflated, then encrypted, on the way); each
 * write owns its bytes until its callback.
 */
#include "conn.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "cidr.h"
#include "log.h"
#include "tls.h"
#include "util.h"
#include "xalloc.h"

struct conn_server {
	uv_loop_t *loop;
	struct conn_settings set;
	char *host;
	const struct conn_ops *ops;
	void *ctx;
	uv_tcp_t listener;
	int port;
	int stopping;
	int listener_closed;
	struct conn *conns;     /* open connections (handles not yet closed) */
	unsigned n_conns;
	/* connections not yet freed: a closed one may still wait for a call
	 * (a STORE's answer) whose end runs its session's destroy, which
	 * needs the server (ops->server_done waits for the last) */
	unsigned n_alive;
};

struct conn_penalty {
	uv_timer_t timer;
	struct conn *c;
	void (*fn)(struct conn *c, void *arg);
	void *arg;
};

/* The ops of a server that failed to start: nothing to call back. */
static const struct conn_ops conn_ops_none;

struct conn_write_req {
	uv_write_t req;
	uint8_t *data;
};

/* COMPRESS=DEFLATE (conn_start_compress). */
struct conn_zlib {
	z_stream in;   /* inflate, raw (window bits -15) */
	z_stream out;  /* deflate, raw, Z_SYNC_FLUSH per flush */
	buf raw;       /* compressed input not yet inflated */
	int in_more;   /* inflate ran out of room: it may hold more output */
};
/* conn_flush_must_wait() writes once this much output waits (or half of
 * max_output, when that is less). */
#define CONN_FLUSH_BATCH 16384u
/* Inflate and deflate work in slices of this many bytes. */
#define CONN_ZLIB_CHUNK 16384u

static void conn_zlib_free(struct conn_zlib **zp)
{
	struct conn_zlib *z = *zp;
	if (z == NULL)
		return;
	inflateEnd(&z->in);
	deflateEnd(&z->out);
	buf_deinit(&z->raw);
	free(z);
	*zp = NULL;
}

static int conn_zlib_pending(const struct conn_zlib *z)
{
	return z->raw.len > 0 || z->in_more;
}

/* Inflate what waits in zlib->raw into c->in while c->in holds less than
 * max_input. *produced_r: 1 when bytes were added. Returns 0, or -1 when
 * the stream is not valid deflate (or ended: RFC 4978 streams never do). */
static int conn_zlib_inflate(struct conn *c, size_t max_input, int *produced_r)
{
	struct conn_zlib *z = c->zlib;
	z_stream *zs = &z->in;
	*produced_r = 0;
	while (conn_zlib_pending(z) && c->in.len < max_input) {
		size_t room = max_input - c->in.len;
		if (room > CONN_ZLIB_CHUNK)
			room = CONN_ZLIB_CHUNK;
		buf_reserve(&c->in, room);
		zs->next_in = z->raw.data;
		zs->avail_in = (uInt)z->raw.len;
		zs->next_out = c->in.data + c->in.len;
		zs->avail_out = (uInt)room;
		int r = inflate(zs, Z_SYNC_FLUSH);
		size_t used = z->raw.len - zs->avail_in;
		size_t produced = room - zs->avail_out;
		buf_consume(&z->raw, used);
		c->in.len += produced;
		c->in.data[c->in.len] = 0; /* buf's spare byte, as buf_append keeps it */
		z->in_more = zs->avail_out == 0;
		if (produced > 0)
			*produced_r = 1;
		if (r == Z_BUF_ERROR || (r == Z_OK && used == 0 && produced == 0)) {
			z->in_more = 0; /* needs more input */
			break;
		}
		if (r != Z_OK)
			return -1;
	}
	return 0;
}

/* Deflate data[0..len) into out, ending with a sync flush. Returns 0 or
 * -1 (zlib failed). */
static int conn_zlib_deflate(struct conn_zlib *z, const void *data, size_t len, buf *out)
{
	z_stream *zs = &z->out;
	zs->next_in = (Bytef *)data;
	zs->avail_in = (uInt)len;
	do {
		buf_reserve(out, CONN_ZLIB_CHUNK);
		zs->next_out = out->data + out->len;
		zs->avail_out = CONN_ZLIB_CHUNK;
		int r = deflate(zs, Z_SYNC_FLUSH);
		if (r != Z_OK && r != Z_BUF_ERROR)
			return -1;
		out->len += CONN_ZLIB_CHUNK - zs->avail_out;
	} while (zs->avail_out == 0);
	return 0;
}

/* ---- lifetime --------------------------------------------------------- */

void conn_ref(struct conn *c)
{
	c->refcount++;
}

static void conn_server_free_if_done(struct conn_server *server);

void conn_unref(struct conn *c)
{
	if (--c->refcount > 0)
		return;
	conn_server *owner = c->owner;
	c->ops->destroy(c);
	conn_zlib_free(&c->zlib);
	tls_conn_free(&c->tls);
	buf_deinit(&c->in);
	buf_deinit(&c->out);
	free(c);
	if (owner != NULL) {
		owner->n_alive--;
		conn_server_free_if_done(owner);
	}
}

int conn_is_closed(const struct conn *c)
{
	return c->closed;
}

static void conn_server_free_if_done(struct conn_server *server)
{
	if (!server->stopping || !server->listener_closed || server->n_conns > 0 ||
	    server->n_alive > 0)
		return;
	void (*done)(void *ctx) = server->ops->server_done;
	void *ctx = server->ctx;
	free(server->host);
	free(server);
	if (done != NULL)
		done(ctx);
}

static void conn_handle_close_cb(uv_handle_t *handle)
{
	struct conn *c = handle->data;
	if (--c->handles_open > 0)
		return;
	struct conn_server *server = c->server;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		server->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	server->n_conns--;
	c->server = NULL;
	/* the last reference frees the server too, when it is done */
	server->n_alive++;
	conn_unref(c);
	server->n_alive--;
	conn_server_free_if_done(server);
}

static void conn_handles_close(struct conn *c)
{
	if (c->handles_closing)
		return;
	c->handles_closing = 1;
	uv_close((uv_handle_t *)&c->tcp, conn_handle_close_cb);
	uv_close((uv_handle_t *)&c->idle, conn_handle_close_cb);
}

static void conn_penalty_close_cb(uv_handle_t *h)
{
	free(h->data);
}

static void conn_log_disconnect(struct conn *c, const char *reason)
{
	log_event(LOG_INFO, c->server->ops->log_svc, "event=disconnect sid=%s reason=%s", c->id,
		  reason);
}

void conn_close(struct conn *c, const char *reason)
{
	if (c->penalty != NULL) {
		/* a held-back attempt must not hold the loop (SIGTERM) */
		struct conn_penalty *p = c->penalty;
		c->penalty = NULL;
		uv_timer_stop(&p->timer);
		uv_close((uv_handle_t *)&p->timer, conn_penalty_close_cb);
		conn_unref(c);
	}
	if (!c->closed) {
		c->closed = 1;
		conn_log_disconnect(c, reason);
	}
	conn_handles_close(c);
}

static void conn_shutdown_cb(uv_shutdown_t *req, int status)
{
	(void)status;
	conn_handles_close(req->data);
}

void conn_close_after_write(struct conn *c, const char *reason)
{
	if (c->closed)
		return;
	conn_flush(c);
	c->closed = 1;
	conn_log_disconnect(c, reason);
	uv_read_stop((uv_stream_t *)&c->tcp);
	uv_timer_stop(&c->idle);
	c->shutdown_req.data = c;
	if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, conn_shutdown_cb) < 0)
		conn_handles_close(c);
}

/* ---- output ----------------------------------------------------------- */

void conn_append(struct conn *c, const void *data, size_t len)
{
	buf_append(&c->out, data, len);
}

void conn_printf(struct conn *c, const char *fmt, ...)
{
	char small[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(small)) {
		buf_append(&c->out, small, (size_t)n);
		return;
	}
	char *big = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	buf_append(&c->out, big, (size_t)n);
	free(big);
}

static void conn_write_cb(uv_write_t *req, int status)
{
	struct conn_write_req *wr = (struct conn_write_req *)req;
	struct conn *c = req->data;
	free(wr->data);
	free(wr);
	if (status < 0) {
		if (status != UV_ECANCELED)
			conn_close(c, "write-error");
		return;
	}
	if (c->closed)
		return;
	/* a client reading a long answer is not idle */
	uv_timer_again(&c->idle);
	const struct conn_server *server = c->server;
	if (server->ops->drained != NULL && conn_output_pending(c) < server->set.max_output / 2)
		server->ops->drained(c);
}

/* One uv_write of the bytes in out (taken: out is left empty). */
static void conn_write_raw(struct conn *c, buf *out)
{
	if (out->len == 0)
		return;
	if (c->handles_closing) {
		buf_reset(out);
		return;
	}
	struct conn_write_req *wr = xcalloc(1, sizeof(*wr));
	size_t len;
	wr->data = buf_steal(out, &len);
	wr->req.data = c;
	uv_buf_t b = uv_buf_init((char *)wr->data, (unsigned int)len);
	if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, conn_write_cb) < 0) {
		free(wr->data);
		free(wr);
		conn_close(c, "write-error");
	}
}

/* data as it goes on the wire: deflated (COMPRESS), then encrypted
 * (TLS), appended to net. Returns 0, -1 (TLS failed) or -2 (deflate). */
static int conn_encode(struct conn *c, const void *data, size_t len, buf *net)
{
	if (c->zlib == NULL) {
		if (c->tls == NULL) {
			buf_append(net, data, len);
			return 0;
		}
		return tls_conn_write(c->tls, data, len, net) < 0 ? -1 : 0;
	}
	if (c->tls == NULL)
		return conn_zlib_deflate(c->zlib, data, len, net) < 0 ? -2 : 0;
	buf z;
	buf_init(&z);
	int ret = conn_zlib_deflate(c->zlib, data, len, &z) < 0 ? -2 : 0;
	if (ret == 0 && tls_conn_write(c->tls, z.data, z.len, net) < 0)
		ret = -1;
	buf_deinit(&z);
	return ret;
}

void conn_flush(struct conn *c)
{
	if (c->out.len == 0 || (c->tls == NULL && c->zlib == NULL)) {
		conn_write_raw(c, &c->out);
		return;
	}
	buf net;
	buf_init(&net);
	int ret = conn_encode(c, c->out.data, c->out.len, &net);
	buf_reset(&c->out);
	conn_write_raw(c, &net);
	buf_deinit(&net);
	if (ret < 0)
		conn_close(c, ret == -2 ? "deflate-error" : "tls-error");
}

size_t conn_output_pending(const struct conn *c)
{
	size_t queued = 0;
	if (!c->handles_closing)
		queued = uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp);
	return queued + c->out.len;
}

int conn_flush_must_wait(struct conn *c)
{
	if (c->closed)
		return 1;
	/* a long answer goes out in batches: one write (one TLS record) per
	 * CONN_FLUSH_BATCH bytes, not per message; the rest goes with the
	 * command's end (conn_process flushes) */
	size_t batch = c->server->set.max_output / 2;
	if (batch > CONN_FLUSH_BATCH)
		batch = CONN_FLUSH_BATCH;
	if (c->out.len >= batch)
		conn_flush(c);
	return c->closed || conn_output_pending(c) > c->server->set.max_output;
}

/* ---- input ------------------------------------------------------------ */

static void conn_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *b)
{
	(void)handle;
	if (suggested > 65536)
		suggested = 65536;
	b->base = xmalloc(suggested);
	b->len = suggested;
}

static void conn_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b);

void conn_process(struct conn *c)
{
	if (c->closed)
		return;
	conn_ref(c);
	size_t max_input = c->server->set.max_input;
	for (;;) {
		/* under COMPRESS, c->in is refilled from the compressed bytes
		 * as the engine consumes it: max_input at a time */
		int produced = 0;
		if (c->zlib != NULL && conn_zlib_inflate(c, max_input, &produced) < 0) {
			log_event(LOG_INFO, c->ops->log_svc, "event=inflate_failed sid=%s peer=%s",
				  c->id, c->peer);
			conn_close(c, "inflate-error");
			break;
		}
		size_t before = c->in.len;
		c->server->ops->input(c);
		if (c->closed || c->zlib == NULL || !conn_zlib_pending(c->zlib) ||
		    c->in.len >= max_input || (!produced && c->in.len == before))
			break;
	}
	conn_flush(c);
	if (!c->closed) {
		int full = c->in.len >= max_input ||
			   (c->zlib != NULL && c->zlib->raw.len >= max_input);
		if (c->reading && full) {
			uv_read_stop((uv_stream_t *)&c->tcp);
			c->reading = 0;
		} else if (!c->reading && !full) {
			if (uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb) == 0)
				c->reading = 1;
		}
	}
	conn_unref(c);
}

static void conn_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b)
{
	struct conn *c = stream->data;
	if (nread < 0) {
		free(b->base);
		conn_close(c, nread == UV_EOF ? "eof" : uv_err_name((int)nread));
		return;
	}
	if (nread == 0 || c->closed) {
		free(b->base);
		return;
	}
	/* under COMPRESS, what arrives is compressed: it waits in zlib->raw */
	buf *in = c->zlib != NULL ? &c->zlib->raw : &c->in;
	if (c->tls == NULL) {
		buf_append(in, b->base, (size_t)nread);
		free(b->base);
	} else {
		buf net;
		buf_init(&net);
		enum tls_feed_result r = tls_conn_feed(c->tls, b->base, (size_t)nread, in, &net);
		free(b->base);
		conn_write_raw(c, &net);
		buf_deinit(&net);
		const char *svc = c->server->ops->log_svc;
		if (r == TLS_FEED_ERROR) {
			log_event(LOG_INFO, svc, "event=tls_failed sid=%s peer=%s error=\"%s\"", c->id,
				  c->peer, tls_conn_error(c->tls));
			conn_close(c, "tls-error");
			return;
		}
		tls_conn_log_handshake(c->tls, svc, c->id);
		if (r == TLS_FEED_CLOSED) {
			conn_close(c, "eof");
			return;
		}
	}
	uv_timer_again(&c->idle);
	conn_process(c);
}

static void conn_idle_cb(uv_timer_t *timer)
{
	struct conn *c = timer->data;
	if (!c->closed)
		c->server->ops->idle(c);
}

static void conn_idle_start(struct conn *c, uint64_t ms)
{
	if (!c->closed)
		uv_timer_start(&c->idle, conn_idle_cb, ms, ms);
}

void conn_authenticated(struct conn *c)
{
	conn_idle_start(c, c->server->set.idle_timeout_ms);
}

/* ---- TLS and credentials ---------------------------------------------- */

void conn_start_tls(struct conn *c)
{
	conn_flush(c);
	c->tls = tls_conn_new_server(c->server->set.access.tls);
	if (c->in.len > 0) {
		log_event(LOG_WARN, c->server->ops->log_svc,
			  "event=starttls_pipelined sid=%s peer=%s dropped=%zu", c->id, c->peer,
			  c->in.len);
		buf_reset(&c->in);
	}
}

const char *conn_starttls_refusal(const struct conn *c)
{
	if (c->server->set.access.tls == NULL)
		return "TLS is not available";
	if (c->tls != NULL)
		return "TLS is already active";
	if (c->zlib != NULL)
		return "TLS cannot start under compression";
	return NULL;
}

int conn_start_compress(struct conn *c, const char **error_r)
{
	if (c->zlib != NULL) {
		*error_r = "Compression is already active";
		return -1;
	}
	conn_flush(c); /* the engine's OK, uncompressed */
	struct conn_zlib *z = xcalloc(1, sizeof(*z));
	if (inflateInit2(&z->in, -15) != Z_OK) {
		free(z);
		*error_r = "Compression is not available now";
		return -1;
	}
	if (deflateInit2(&z->out, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8,
			 Z_DEFAULT_STRATEGY) != Z_OK) {
		inflateEnd(&z->in);
		free(z);
		*error_r = "Compression is not available now";
		return -1;
	}
	buf_init(&z->raw);
	c->zlib = z;
	/* what the client sent after its command is compressed already */
	if (c->in.len > 0) {
		buf_append(&z->raw, c->in.data, c->in.len);
		buf_reset(&c->in);
		int produced;
		if (conn_zlib_inflate(c, c->server->set.max_input, &produced) < 0)
			conn_close(c, "inflate-error");
	}
	log_event(LOG_INFO, c->ops->log_svc, "event=compress sid=%s algorithm=deflate", c->id);
	return 0;
}

int conn_compress_active(const struct conn *c)
{
	return c->zlib != NULL;
}

int conn_tls_active(const struct conn *c)
{
	return c->tls != NULL && tls_conn_handshake_done(c->tls);
}

int conn_credentials_allowed(const struct conn *c)
{
	return conn_tls_active(c) || (c->server->set.access.allow_plaintext_login &&
				      cidr_is_loopback_text(c->peer_ip));
}

static void conn_penalty_cb(uv_timer_t *t)
{
	struct conn_penalty *p = t->data;
	struct conn *c = p->c;
	c->penalty = NULL;
	if (!c->closed)
		p->fn(c, p->arg);
	conn_unref(c);
	uv_close((uv_handle_t *)&p->timer, conn_penalty_close_cb);
}

void conn_after_penalty(struct conn *c, void (*fn)(struct conn *c, void *arg), void *arg)
{
	const struct conn_access *a = &c->server->set.access;
	unsigned ms = a->auth_delay_ms != NULL ? a->auth_delay_ms(a->guard_arg, c->peer_ip) : 0;
	if (ms == 0) {
		fn(c, arg);
		return;
	}
	struct conn_penalty *p = xcalloc(1, sizeof *p);
	p->c = c;
	p->fn = fn;
	p->arg = arg;
	c->penalty = p;
	conn_ref(c);
	uv_timer_init(c->server->loop, &p->timer);
	p->timer.data = p;
	uv_timer_start(&p->timer, conn_penalty_cb, ms, 0);
}

int conn_auth_failed(struct conn *c)
{
	const struct conn_settings *set = &c->server->set;
	c->auth_failures++;
	log_event(LOG_INFO, c->ops->log_svc, "event=login_failed sid=%s peer=%s failures=%u", c->id,
		  c->peer, c->auth_failures);
	if (set->access.auth_failed != NULL)
		set->access.auth_failed(set->access.guard_arg, c->peer_ip);
	return c->auth_failures >= set->max_auth_failures;
}

int conn_command_ended(struct conn *c, int bad)
{
	if (!bad) {
		c->bad_count = 0;
		return 0;
	}
	if (++c->bad_count < c->server->set.max_bad_commands)
		return 0;
	log_event(LOG_INFO, c->ops->log_svc, "event=too_many_bad sid=%s peer=%s", c->id, c->peer);
	return 1;
}

const char *conn_log_svc(const struct conn *c)
{
	return c->ops->log_svc;
}

/* ---- the listener ----------------------------------------------------- */

static void conn_peer_name(struct conn *c)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	char host[48] = "?";
	int port = 0;
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
			uv_ip6_name(a, host, sizeof(host));
			port = ntohs(a->sin6_port);
		} else {
			struct sockaddr_in *a = (struct sockaddr_in *)&ss;
			uv_ip4_name(a, host, sizeof(host));
			port = ntohs(a->sin_port);
		}
	}
	snprintf(c->peer, sizeof(c->peer), "%s:%d", host, port);
	snprintf(c->peer_ip, sizeof(c->peer_ip), "%s", host);
}

/* Why c is turned away (a session cap, or the guard's block), or NULL.
 * Trusted networks are exempt from the caps. */
static const char *conn_server_refusal(const struct conn_server *server, const struct conn *c)
{
	const struct conn_access *a = &server->set.access;
	if (!cidr_match_text(a->trusted, c->peer_ip)) {
		if (server->n_conns > server->set.max_sessions)
			return "max-sessions";
		unsigned same = 0;
		for (const struct conn *o = server->conns; o != NULL; o = o->next)
			same += !o->closed && strcmp(o->peer_ip, c->peer_ip) == 0;
		if (same > server->set.max_sessions_per_ip)
			return "max-sessions-per-ip";
	}
	if (a->ip_refused != NULL && a->ip_refused(a->guard_arg, c->peer_ip))
		return "blocked";
	return NULL;
}

static void conn_server_connection_cb(uv_stream_t *listener, int status)
{
	struct conn_server *server = listener->data;
	const char *svc = server->ops->log_svc;
	if (status < 0) {
		log_event(LOG_WARN, svc, "event=accept_error error=%s", uv_err_name(status));
		return;
	}
	struct conn *c = xcalloc(1, server->ops->session_size);
	c->server = server;
	c->owner = server;
	server->n_alive++;
	c->ops = server->ops;
	c->refcount = 1; /* dropped when the handles are closed */
	uv_tcp_init(server->loop, &c->tcp);
	uv_timer_init(server->loop, &c->idle);
	c->tcp.data = c;
	c->idle.data = c;
	c->handles_open = 2;
	c->next = server->conns;
	if (server->conns != NULL)
		server->conns->prev = c;
	server->conns = c;
	server->n_conns++;
	buf_init(&c->in);
	buf_init(&c->out);
	util_random_hex(c->id, 6);
	if (uv_accept(listener, (uv_stream_t *)&c->tcp) < 0) {
		conn_close(c, "accept-failed");
		return;
	}
	/* replies go out when written: a client that pipelines (or a tagged
	 * OK after untagged data) must not wait for its delayed ACK */
	uv_tcp_nodelay(&c->tcp, 1);
	conn_peer_name(c);
	log_event(LOG_INFO, svc, "event=connect sid=%s peer=%s", c->id, c->peer);
	const char *refused = conn_server_refusal(server, c);
	if (refused != NULL) {
		if (server->set.access.implicit_tls) { /* no handshake for a client turned away */
			conn_close(c, refused);
		} else {
			conn_append(c, server->ops->refused_reply, strlen(server->ops->refused_reply));
			conn_close_after_write(c, refused);
		}
		return;
	}
	if (server->set.access.tls != NULL && server->set.access.implicit_tls)
		c->tls = tls_conn_new_server(server->set.access.tls); /* the greeting waits */
	server->ops->accepted(c);
	conn_flush(c);
	if (c->closed)
		return;
	conn_idle_start(c, server->set.preauth_timeout_ms);
	if (uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb) == 0)
		c->reading = 1;
	else
		conn_close(c, "read-failed");
}

static void conn_server_listener_close_cb(uv_handle_t *handle)
{
	struct conn_server *server = handle->data;
	server->listener_closed = 1;
	conn_server_free_if_done(server);
}

int conn_server_start(uv_loop_t *loop, const struct conn_settings *set,
		      const struct conn_ops *ops, void *ctx, conn_server **server_r,
		      const char **error_r)
{
	struct sockaddr_storage addr;
	if (uv_ip4_addr(set->host, set->port, (struct sockaddr_in *)&addr) != 0 &&
	    uv_ip6_addr(set->host, set->port, (struct sockaddr_in6 *)&addr) != 0) {
		*error_r = "listen address is not an IP literal";
		return -1;
	}
	struct conn_server *server = xcalloc(1, sizeof(*server));
	server->loop = loop;
	server->set = *set;
	server->host = xstrdup(set->host);
	server->set.host = server->host;
	server->ops = ops;
	server->ctx = ctx;
	struct conn_settings *ss = &server->set;
	if (ss->idle_timeout_ms < 1000)
		ss->idle_timeout_ms = 1000;
	if (ss->preauth_timeout_ms < 1000 || ss->preauth_timeout_ms > ss->idle_timeout_ms)
		ss->preauth_timeout_ms = ss->idle_timeout_ms;
	if (ss->max_sessions == 0)
		ss->max_sessions = 1;
	if (ss->max_sessions_per_ip == 0)
		ss->max_sessions_per_ip = 1;
	if (ss->max_bad_commands == 0)
		ss->max_bad_commands = 1;
	if (ss->max_auth_failures == 0)
		ss->max_auth_failures = 1;
	uv_tcp_init(loop, &server->listener);
	server->listener.data = server;
	int ret = uv_tcp_bind(&server->listener, (const struct sockaddr *)&addr, 0);
	if (ret == 0)
		ret = uv_listen((uv_stream_t *)&server->listener, 128, conn_server_connection_cb);
	if (ret < 0) {
		*error_r = ret == UV_EADDRINUSE ? "listen address in use" : "cannot listen";
		/* freed by the close callback, on the caller's next loop run;
		 * ctx is not the server's to hand back */
		server->stopping = 1;
		server->ops = &conn_ops_none;
		uv_close((uv_handle_t *)&server->listener, conn_server_listener_close_cb);
		return -1;
	}
	int len = sizeof(addr);
	uv_tcp_getsockname(&server->listener, (struct sockaddr *)&addr, &len);
	server->port = ntohs(((struct sockaddr_in *)&addr)->sin_port);
	log_event(LOG_INFO, ops->log_svc, "event=listen host=%s port=%d tls=%s plaintext_login=%s",
		  server->host, server->port,
		  set->access.tls == NULL	 ? "off"
		  : set->access.implicit_tls ? "implicit"
					     : "starttls",
		  set->access.allow_plaintext_login ? "allowed-loopback-dev-mode" : "disabled");
	*server_r = server;
	return 0;
}

int conn_server_port(const conn_server *server)
{
	return server->port;
}

unsigned conn_server_count(const conn_server *server)
{
	return server->n_conns;
}

void *conn_server_ctx(const conn_server *server)
{
	return server->ctx;
}

void conn_server_stop(conn_server **serverp)
{
	struct conn_server *server = *serverp;
	if (server == NULL)
		return;
	*serverp = NULL;
	server->stopping = 1;
	uv_close((uv_handle_t *)&server->listener, conn_server_listener_close_cb);
	const char *bye = server->ops->shutdown_reply;
	for (struct conn *c = server->conns; c != NULL; c = c->next) {
		if (!c->closed && bye != NULL) {
			/* best effort: never wait for a client that does not read */
			buf net;
			buf_init(&net);
			if (conn_encode(c, bye, strlen(bye), &net) == 0 && c->tls != NULL)
				tls_conn_close_notify(c->tls, &net);
			uv_buf_t b = uv_buf_init((char *)net.data, (unsigned)net.len);
			if (net.len > 0)
				uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
			buf_deinit(&net);
		}
		conn_close(c, "server-stop");
	}
}
