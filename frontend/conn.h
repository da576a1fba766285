/* conn.h: the connection layer the frontend's IMAP and POP3 engines share
 * (library `mailconn`).
 *
 * A conn_server is one listener and the client connections it accepted. It
 * names the peer, turns away clients over the session caps (in all, and per
 * client address; trusted networks exempt) or on the guard's block list,
 * runs TLS (from the first byte on an implicit-TLS listener, or from
 * conn_start_tls(), which drops what the client pipelined after its
 * STARTTLS/STLS), buffers input (reading pauses while max_input bytes wait
 * unprocessed) and output (written through TLS when it is on), keeps the
 * idle timer (restarted by input, and by output the client reads: a long
 * download is not idleness), holds authentication attempts back by the
 * guard's penalty, compresses both directions once the engine asks
 * (conn_start_compress: COMPRESS=DEFLATE, RFC 4978; above TLS, below the
 * protocol), and closes. The protocol engine gives it meaning through struct conn_ops
 * and never touches a socket.
 *
 * A connection is a struct conn embedded as the FIRST member of the
 * engine's session struct: the server allocates ops->session_size zeroed
 * bytes per connection, so the engine converts between the two with a cast.
 *
 * Lifetime: a connection is freed once its handles are closed AND every
 * reference is dropped (conn_ref/conn_unref: an engine takes one for each
 * call that completes later, e.g. a backend call). Such a completion must
 * check conn_is_closed() first and then only finish and unref. Just before
 * the memory goes, ops->destroy releases the engine's part. After
 * conn_server_stop(), when the listener and the last connection are gone,
 * ops->server_done(ctx) lets the engine free its server.
 *
 * Loop thread only.
 */
#ifndef MAIL_CONN_H
#define MAIL_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "buf.h"

struct cidr_list;
struct conn_zlib;
struct mem_budget;
struct tls_server;
struct tls_conn;

/* The longest line of a SASL exchange (RFC 4954 4, RFC 4959: 12288
 * octets), without its CRLF. */
#define CONN_AUTH_LINE_MAX 12288u

/* What the IMAP and POP3 listeners of a frontend share: TLS, the policy on
 * credentials, trusted networks, the auth guard's hooks and the body
 * budget. Nothing here is owned; all must outlive the server. */
struct conn_access {
	/* NULL: no TLS. Else STARTTLS/STLS is offered, or with implicit_tls
	 * the whole connection is TLS (RFC 8314). */
	struct tls_server *tls;
	int implicit_tls;
	/* Credentials over a connection without TLS: 0 (the default)
	 * refuses them; 1 allows them from loopback peers only (the
	 * development mode, logged at start). */
	int allow_plaintext_login;
	/* exempt from the session caps (NULL: none) */
	const struct cidr_list *trusted;
	/* SASL: the secret that keys unknown users' fake SCRAM salts, >= 16
	 * bytes, the same on every frontend. */
	const uint8_t *sasl_secret;
	size_t sasl_secret_len;
	/* Large message bodies held by sessions count against this budget
	 * (shared by the frontend's sessions; NULL: none). */
	struct mem_budget *body_budget;
	/* The auth guard (frontend/auth-guard.h), all optional: how long to
	 * hold an attempt from ip back, a failed attempt, and whether ip is
	 * refused at connect. */
	unsigned (*auth_delay_ms)(void *arg, const char *ip);
	void (*auth_failed)(void *arg, const char *ip);
	int (*ip_refused)(void *arg, const char *ip);
	void *guard_arg;
};

typedef struct conn_server conn_server;
struct conn_penalty;

struct conn {
	/* Read-only for the engine. */
	conn_server *server;          /* NULL once the handles are closed */
	conn_server *owner;           /* until freed: the server outlives it */
	char id[13];                  /* session id in the logs */
	char peer[64];                /* "ip:port" */
	char peer_ip[48];
	struct tls_conn *tls;         /* the TLS layer, once started */
	int closed;                   /* no more input, replies or callbacks */
	/* The engine consumes from in (plaintext received, not yet used) and
	 * appends to out (use conn_append/conn_printf). */
	buf in;
	buf out;

	/* Internal to conn.c. */
	const struct conn_ops *ops;
	struct conn *prev, *next;
	uv_tcp_t tcp;
	uv_timer_t idle;
	uv_shutdown_t shutdown_req;
	unsigned refcount;
	unsigned handles_open;
	int handles_closing;
	int reading;
	struct conn_penalty *penalty;
	unsigned bad_count;
	unsigned auth_failures;
	struct conn_zlib *zlib;       /* COMPRESS=DEFLATE, once started */
};

struct conn_ops {
	const char *log_svc;             /* "imap", "pop3": svc= in the logs */
	size_t session_size;             /* >= sizeof(struct conn) */
	/* Accepted and under the caps: queue the greeting (flushed after). */
	void (*accepted)(struct conn *c);
	/* New input is in c->in: consume what can be handled now. */
	void (*input)(struct conn *c);
	/* Optional: a write completed and less than max_output / 2 waits
	 * for the client (resume output held back for it). */
	void (*drained)(struct conn *c);
	/* The idle timer fired (the engine says goodbye and closes). */
	void (*idle)(struct conn *c);
	/* The last reference is gone: free the engine's part of the session
	 * (not the session itself). */
	void (*destroy)(struct conn *c);
	/* After conn_server_stop(): the listener and the last connection are
	 * gone; the engine may free ctx. */
	void (*server_done)(void *ctx);
	/* Sent (plaintext listeners only) to a client turned away at
	 * connect, and best effort to every open session at stop (CRLF
	 * included). */
	const char *refused_reply;
	const char *shutdown_reply;
};

/* A listener's settings, embedded in each engine's settings (the engine
 * fills its own defaults). */
struct conn_settings {
	const char *host;             /* an IP literal; copied by start */
	int port;                     /* 0: any free port */
	struct conn_access access;
	uint64_t idle_timeout_ms;     /* >= 1000 (raised) */
	uint64_t preauth_timeout_ms;  /* the idle timeout until conn_authenticated();
				       * 1000..idle_timeout_ms, else idle_timeout_ms */
	unsigned max_sessions;        /* >= 1; over it: refused_reply, then close */
	unsigned max_sessions_per_ip; /* >= 1; the same per client address */
	size_t max_input;             /* unprocessed input before reading pauses */
	size_t max_output;            /* see ops->drained */
	unsigned max_bad_commands;    /* >= 1: invalid commands in a row, then the
				       * engine closes (conn_command_ended) */
	unsigned max_auth_failures;   /* >= 1: failed logins in a session, then the
				       * engine closes (conn_auth_failed) */
};

/* Bind and listen. ops and ctx are borrowed and must outlive the server.
 * Returns 0, or -1 with *error_r (static text; ctx stays the caller's). */
int conn_server_start(uv_loop_t *loop, const struct conn_settings *set,
		      const struct conn_ops *ops, void *ctx, conn_server **server_r,
		      const char **error_r);
/* The port bound; the connections open (handles not yet closed). */
int conn_server_port(const conn_server *server);
unsigned conn_server_count(const conn_server *server);
/* The ctx given to conn_server_start. */
void *conn_server_ctx(const conn_server *server);
/* Stop listening, write shutdown_reply to each open session (best effort,
 * never waiting for a client that does not read) and close them. Memory
 * goes in close callbacks: run the loop until it has no more handles
 * (ops->server_done marks the end). NULLs *server. */
void conn_server_stop(conn_server **server);

void conn_ref(struct conn *c);
void conn_unref(struct conn *c);
int conn_is_closed(const struct conn *c);

void conn_append(struct conn *c, const void *data, size_t len);
void conn_printf(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hand c->out to the socket (through TLS when on). */
void conn_flush(struct conn *c);
/* Bytes handed to the socket and not yet written, plus c->out. */
size_t conn_output_pending(const struct conn *c);
/* For a long answer, between its parts: flush once 16 KiB (or half of
 * max_output) of output waits (less stays in c->out for the next flush:
 * conn_process, or the next call here), then 1 when the answer should
 * pause: c is closed, or more than max_output waits for the client
 * (ops->drained tells when to go on); 0 to go on now. */
int conn_flush_must_wait(struct conn *c);
/* Run ops->input on what waits in c->in, flush, and pause or resume
 * reading by max_input. The engine calls it when it can go on after an
 * asynchronous completion; reads call it too. */
void conn_process(struct conn *c);

/* Close now; replies not yet written are dropped. reason goes to the log. */
void conn_close(struct conn *c, const char *reason);
/* Write what is queued, then close (no more input meanwhile). */
void conn_close_after_write(struct conn *c, const char *reason);
/* Logged in: idle_timeout_ms instead of preauth_timeout_ms from now on. */
void conn_authenticated(struct conn *c);

/* STARTTLS/STLS: flush the plaintext reply, start TLS, and drop what the
 * client sent after the command (a man in the middle could have put it
 * there: RFC 3207 4.2, RFC 2595 3.1). Call with c->in holding exactly
 * the bytes after the command's line. The server must have TLS. */
void conn_start_tls(struct conn *c);
/* Why STARTTLS/STLS cannot start on c now ("TLS is not available",
 * "TLS is already active": static text for the client), or NULL. */
const char *conn_starttls_refusal(const struct conn *c);
/* 1 once a TLS handshake is done on c. */
int conn_tls_active(const struct conn *c);
/* 1 when credentials may be sent: over TLS, or from loopback in the
 * development mode (access.allow_plaintext_login). */
int conn_credentials_allowed(const struct conn *c);

/* COMPRESS=DEFLATE (RFC 4978): raw deflate (no zlib header, window bits
 * 15) both ways from now on, above TLS when TLS is on. What is queued in
 * c->out is written uncompressed first (the engine's tagged OK); the
 * bytes of c->in (what the client sent after its command) are taken as
 * compressed. Each flush is a Z_SYNC_FLUSH, so every reply reaches the
 * client whole. Inflated input is bounded like plaintext: at most about
 * max_input bytes wait in c->in and as many compressed bytes before
 * reading pauses, so a small stream that inflates to gigabytes (a bomb)
 * costs CPU in slices, never memory. A stream that is not valid deflate
 * closes the connection (reason "inflate-error"). Costs about 300 KiB per
 * connection (zlib's window and hash tables). Returns 0, or -1 with
 * *error_r (static text: compression already on, or no memory). After
 * it, STARTTLS is refused. */
int conn_start_compress(struct conn *c, const char **error_r);
/* 1 once conn_start_compress() succeeded on c. */
int conn_compress_active(const struct conn *c);

/* Run fn(c, arg) after the guard's penalty for c's address (now when
 * none). fn is not called if c closes first (the engine frees arg then). */
void conn_after_penalty(struct conn *c, void (*fn)(struct conn *c, void *arg), void *arg);
/* A failed login on c: counted, logged (event=login_failed) and told to
 * the guard. Returns 1 when it was the max_auth_failures-th (the engine
 * answers, then closes), else 0. */
int conn_auth_failed(struct conn *c);
/* A command of c ended, invalid (bad: the engine's BAD or counted -ERR) or
 * not. Returns 1 when max_bad_commands invalid ones came in a row (logged
 * event=too_many_bad; the engine closes), else 0. */
int conn_command_ended(struct conn *c, int bad);
/* The log's svc of c's listener ("imap", "pop3"). */
const char *conn_log_svc(const struct conn *c);

#endif
