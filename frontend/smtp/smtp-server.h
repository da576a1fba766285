/* smtp-server.h: the SMTP protocol engine on libuv (library mailsmtp).
 *
 * The engine owns everything about the protocol: listening, the greeting,
 * the command state machine (HELO before MAIL before RCPT before DATA),
 * pipelining (RFC 2920: queued commands run in order, one at a time, their
 * replies are written in order and batched), limits (line length, recipients,
 * message size, errors per session, idle timeout), DATA streaming with
 * dot-unstuffing, and every reply that is not about the mail itself.
 *
 * A service (the MX, later submission) gives it meaning through struct
 * smtp_server_callbacks. The MAIL, RCPT and DATA callbacks are asynchronous:
 * the engine stops reading commands of that session until the service calls
 * smtp_session_complete() with the reply, and writes that reply only then.
 * This is how "250 only after the queue made the message durable" holds:
 * nothing but the service's completion can produce the DATA reply.
 *
 * Threads: everything here runs on the loop thread given to
 * smtp_server_start(), including smtp_session_complete() (from a
 * uv_queue_work after-work callback, say, never from the work function).
 *
 * TLS (lib/tls.h): with settings.tls set, STARTTLS is advertised and
 * works (RFC 3207): its 220 goes out in plaintext, any bytes the client
 * pipelined after the command are dropped (logged
 * event=starttls_pipelined), and the session starts over (HELO/EHLO
 * again; the EHLO after it no longer offers STARTTLS; a second STARTTLS
 * gets 503). With implicit_tls as well (submissions, RFC 8314) the
 * handshake comes first and the greeting follows it. Without settings.tls
 * STARTTLS is 502 and not advertised.
 */
#ifndef MAIL_SMTP_SERVER_H
#define MAIL_SMTP_SERVER_H

#include "smtp-parser.h"

#include <stddef.h>
#include <uv.h>

#define SMTP_DEFAULT_IDLE_TIMEOUT_MS 300000u /* RFC 5321 4.5.3.2.7: 5 minutes */
#define SMTP_DEFAULT_MAX_ERRORS 10u
/* Input kept while a command waits for its callback; above it the engine
 * stops reading from that client (pipelined input is bounded). */
#define SMTP_DEFAULT_MAX_PENDING_INPUT (64u * 1024)
/* Abuse limits (docs/security.md, "Limits"). */
#define SMTP_DEFAULT_MAX_SESSIONS 1000u      /* per listener; over: 421 4.7.0 */
#define SMTP_DEFAULT_MAX_SESSIONS_PER_IP 20u /* per client address and listener */
#define SMTP_DEFAULT_DATA_TIMEOUT_MS 600000u /* the whole DATA phase: 10 min */
#define SMTP_DEFAULT_DATA_MIN_RATE 1024u     /* bytes/s over DATA, checked after */
#define SMTP_DEFAULT_DATA_RATE_GRACE_MS 30000u /* ... its first 30 s */
/* Replies queued to a client that does not read before the engine stops
 * reading (and so answering) that client. */
#define SMTP_DEFAULT_MAX_OUTPUT (256u * 1024)

struct sasl_scram_keys;

/* AUTH (RFC 4954) asks the service for credentials, see on_auth. */
enum smtp_auth_kind {
	SMTP_AUTH_PASSWORD = 0, /* PLAIN, LOGIN: is password right for user? */
	SMTP_AUTH_SCRAM_KEYS,   /* SCRAM-SHA-256: the stored keys of user */
};

struct smtp_auth_request {
	enum smtp_auth_kind kind;
	const char *user;       /* as the client gave it */
	const char *password;   /* SMTP_AUTH_PASSWORD only */
};

struct smtp_server_settings {
	const char *host;          /* IP literal to listen on ("127.0.0.1", "::") */
	int port;                  /* 0: any free port, see smtp_server_port() */
	const char *hostname;      /* greeting and EHLO name */
	const char *log_svc;       /* svc= of the log lines, e.g. "smtp-mx" */
	struct smtp_limits limits; /* see smtp-parser.h */
	unsigned idle_timeout_ms;  /* no complete input for this long -> 421 4.4.2 */
	unsigned max_errors;       /* this many 4xx/5xx replies -> 421 4.7.0, close */
	size_t max_pending_input;  /* see SMTP_DEFAULT_MAX_PENDING_INPUT */
	struct tls_server *tls;    /* NULL: no TLS (not owned: outlive the server) */
	int implicit_tls;          /* 1: TLS from the first byte (port 465) */
	unsigned max_sessions;     /* 0: SMTP_DEFAULT_MAX_SESSIONS */
	unsigned max_sessions_per_ip; /* 0: SMTP_DEFAULT_MAX_SESSIONS_PER_IP */
	/* Clients exempt from the two caps (not owned; NULL: none). */
	const struct cidr_list *trusted;
	unsigned data_timeout_ms;  /* 0: SMTP_DEFAULT_DATA_TIMEOUT_MS; over: 451 4.4.2, close */
	unsigned data_min_rate;    /* 0: SMTP_DEFAULT_DATA_MIN_RATE; under: 451 4.4.2, close */
	unsigned data_rate_grace_ms; /* 0: SMTP_DEFAULT_DATA_RATE_GRACE_MS */
	size_t max_output;         /* 0: SMTP_DEFAULT_MAX_OUTPUT */
	/* Message bodies held by all sessions sharing it (not owned; NULL:
	 * unlimited). A message that does not fit is read to its end without
	 * being kept and answered 451 4.3.1. */
	struct mem_budget *budget;
	/* AUTH: the SASL mechanisms offered, bits (1u << enum sasl_mech);
	 * 0 = no AUTH (the MX). Credentials are taken only over TLS, or from a
	 * loopback peer when plaintext_auth is set (development mode);
	 * elsewhere AUTH gets 530 5.7.0 and is not advertised. */
	unsigned auth_mechs;
	int plaintext_auth;
	int auth_required;         /* MAIL before AUTH: 530 5.7.0 (submission) */
	const uint8_t *sasl_secret; /* >= 16 bytes, shared by the frontends */
	size_t sasl_secret_len;
	/* Optional: a blocked client address (frontend/auth-guard.h) gets
	 * 421 4.7.1 at connect (or a plain close on implicit TLS). */
	int (*ip_refused)(void *arg, const char *ip);
	void *guard_arg;
	/* 1 (default): advertise DSN (RFC 3461) in EHLO and take RET=/ENVID=
	 * on MAIL, NOTIFY=/ORCPT= on RCPT (bad values: 501 5.5.4, see
	 * docs/dsn.md); they reach on_mail/on_rcpt/on_data. 0: not
	 * advertised, and those parameters are 555 5.5.4. */
	int dsn;
};

/* Defaults: host 127.0.0.1, port 2525, hostname "localhost", log_svc "smtp",
 * smtp_limits_init_default(), dsn 1, and the SMTP_DEFAULT_* values above. */
void smtp_server_settings_init_default(struct smtp_server_settings *set);

typedef struct smtp_server smtp_server;
typedef struct smtp_session smtp_session;

/* The transaction handed to on_data. Everything is owned by the session and
 * valid until smtp_session_complete() for that DATA. */
struct smtp_transaction {
	const char *mail_from;   /* reverse-path mailbox as given, "" for <> */
	struct smtp_mail_params params; /* MAIL's, DSN's RET/ENVID in params.dsn */
	const char *const *rcpts; /* accepted forward-paths, as given */
	/* per rcpts index: that RCPT's parameters (DSN's NOTIFY/ORCPT; zero
	 * when none were given) */
	const struct smtp_rcpt_params *rcpt_params;
	size_t n_rcpts;
	const uint8_t *body;     /* the message, dot-unstuffed, as received */
	size_t body_len;
};

/* Every callback gets ctx as given to smtp_server_start(). Strings passed to
 * callbacks are valid only during the call (copy what you keep).
 *
 * on_mail, on_rcpt and on_data MUST lead to exactly one
 * smtp_session_complete() call on that session, now or later, even when the
 * client has gone meanwhile (the session object stays valid until then).
 * A NULL on_mail / on_rcpt accepts with 250. on_data is required. */
struct smtp_server_callbacks {
	/* Optional, synchronous: a client connected (greeting not sent yet). */
	void (*on_connect)(smtp_session *s, void *ctx);
	/* Optional, synchronous: the connection is closing. A callback may
	 * still be pending; it must still be completed. */
	void (*on_disconnect)(smtp_session *s, void *ctx);
	/* MAIL FROM passed the engine's checks (sequence, SIZE limit). */
	void (*on_mail)(smtp_session *s, const char *from,
			const struct smtp_mail_params *params, void *ctx);
	/* RCPT TO passed the engine's checks (sequence, recipient limit). A
	 * 2xx completion adds rcpt and its params (copied) to the
	 * transaction. */
	void (*on_rcpt)(smtp_session *s, const char *rcpt, const struct smtp_rcpt_params *params,
			void *ctx);
	/* The message was received in full and within the size limit. The
	 * transaction ends with the completion, whatever its code. */
	void (*on_data)(smtp_session *s, const struct smtp_transaction *t, void *ctx);
	/* AUTH needs credentials checked or looked up (required when
	 * auth_mechs is set). Must lead to exactly one
	 * smtp_session_auth_complete(). */
	void (*on_auth)(smtp_session *s, const struct smtp_auth_request *req, void *ctx);
	/* Optional, synchronous: an AUTH exchange ended (ok 1 or 0; user as
	 * given, "" when unknown). For penalties and logs. */
	void (*on_auth_result)(smtp_session *s, const char *user, int ok, void *ctx);
};

/* Listen on settings->host:port. settings and callbacks are copied (strings
 * too). Returns 0 with *server_r, or -1 with *error_r (static text). */
int smtp_server_start(uv_loop_t *loop, const struct smtp_server_settings *settings,
		      const struct smtp_server_callbacks *callbacks, void *ctx,
		      smtp_server **server_r, const char **error_r);
/* The port actually bound (useful with port 0). */
int smtp_server_port(const smtp_server *server);
/* Stop listening, say 421 4.3.2 to every client and close them; a
 * session waiting on a callback gets the reply of that command first
 * (smtp_session_complete), then the 421. NULLs *server. The memory goes
 * once every handle has closed and every pending callback has been
 * completed: keep running the loop after this. No new callback except
 * on_disconnect fires after stop. */
void smtp_server_stop(smtp_server **server);

/* Complete the pending on_mail / on_rcpt / on_data of s with a reply:
 * code (250, 451, 550, ...), enhanced code ("2.1.0"; NULL for none) and a
 * one-line text (control characters are replaced by spaces). All strings
 * are copied. If the client has gone, the reply is dropped and this may
 * free s: do not touch s after the call. Loop thread only. */
void smtp_session_complete(smtp_session *s, int code, const char *enh, const char *text);

/* Complete on_auth. status: MAIL_OK (password right / keys found),
 * MAIL_ERR_PERM (wrong password / no such user: 535 5.7.8, SCRAM then
 * goes on with fake keys and fails at its end), anything else a
 * temporary failure (454 4.7.0). keys: for SMTP_AUTH_SCRAM_KEYS with
 * MAIL_OK (copied). Same rules as smtp_session_complete(). */
void smtp_session_auth_complete(smtp_session *s, int status,
				const struct sasl_scram_keys *keys);

/* Accessors; the strings are owned by the session and stay valid while it
 * is (until the callback in progress returns, or up to completion). */
const char *smtp_session_id(const smtp_session *s);      /* 16 hex chars */
const char *smtp_session_peer_ip(const smtp_session *s); /* "127.0.0.1" */
const char *smtp_session_helo(const smtp_session *s);    /* "" before HELO */
/* One pointer of the callbacks' own per session (NULL at first); the
 * engine never looks at it. Free what it points to by on_disconnect at
 * the latest, minding callbacks still pending. */
void smtp_session_set_data(smtp_session *s, void *data);
void *smtp_session_data(const smtp_session *s);
/* 1 once the connection is closing or closed (a completion is dropped). */
int smtp_session_is_closed(const smtp_session *s);
/* 1 when the session runs over TLS (the handshake is done). */
int smtp_session_tls(const smtp_session *s);
/* The authenticated user (as the client gave it), or NULL. */
const char *smtp_session_user(const smtp_session *s);

#endif
