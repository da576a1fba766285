/* smtpc.h: one outbound SMTP client session on a libuv loop (library
 * mailsmtpc; RFC 5321, 3207 STARTTLS, 4954 AUTH, 2920 PIPELINING, 1870
 * SIZE, 6152 8BITMIME, 6531 SMTPUTF8, 3461 DSN). docs/smtp-client.md has
 * the state machine, the policies and the classification.
 *
 * The caller resolves (lib/dns) and picks the address; a session connects
 * to it, reads the greeting, says EHLO (HELO when EHLO gets a 5xx), does
 * STARTTLS per policy and EHLO again, AUTH when credentials are given, and
 * then runs transactions, one at a time, until the caller quits:
 *
 *   smtpc_create(loop, &set, &cbs, ctx, &c);
 *   smtpc_connect(c, addr);            ... ready_cb(c)
 *   smtpc_send(c, &msg);               ... done_cb(c, &msg)
 *   smtpc_send(c, &msg2);              ... done_cb(c, &msg2)
 *   smtpc_quit(c);                     ... closed_cb(c, result OK)
 *   smtpc_destroy(&c);
 *
 * Callbacks never run inside the call that caused them (smtpc_send's
 * local refusals are delivered from the loop too). closed_cb runs once,
 * when the session is over for any reason (QUIT done, connection error,
 * timeout, TLS failure, a reply that ends the session); when a transaction
 * was in progress, its done_cb runs first, with every recipient that has
 * no answer yet marked temporary with the session's reason. Inside any
 * callback the caller may call smtpc_send (if the session is idle),
 * smtpc_quit or smtpc_destroy.
 *
 * Classification: a reply 4xx is SMTPC_TEMP, 5xx SMTPC_PERM; everything
 * that is not a reply (connect refused or timed out, a timeout, a dropped
 * connection, TLS failure, a protocol error, policy) is SMTPC_TEMP, except
 * the local refusals of a message (8-bit to a server without 8BITMIME,
 * SMTPUTF8 to one without SMTPUTF8, larger than the server's SIZE), which
 * are SMTPC_PERM for that message only. AUTH failures are SMTPC_TEMP
 * whatever the code (a wrong password is ours to fix, mail waits).
 *
 * Loop thread only. No global state.
 */
#ifndef MAIL_SMTPC_H
#define MAIL_SMTPC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>

#include "smtpc-reply.h"
#include "tls.h"

typedef struct smtpc smtpc;

/* ---- settings ----------------------------------------------------------- */

enum smtpc_tls_policy {
	SMTPC_TLS_NONE = 0, /* never STARTTLS */
	SMTPC_TLS_MAY,      /* STARTTLS when offered (unverified); plaintext only
			       when it is not offered; a failed handshake fails
			       the session (temporary), never falls back */
	SMTPC_TLS_ENCRYPT,  /* STARTTLS required (unverified), else temporary */
	SMTPC_TLS_VERIFY,   /* STARTTLS required and the certificate verified
			       against the CA file for tls_host, else temporary */
};

/* RFC 5321 4.5.3.2 defaults, milliseconds. */
#define SMTPC_DEFAULT_CONNECT_MS (30u * 1000)
#define SMTPC_DEFAULT_GREETING_MS (5u * 60 * 1000)
#define SMTPC_DEFAULT_EHLO_MS (5u * 60 * 1000)      /* EHLO, HELO, STARTTLS, AUTH, RSET */
#define SMTPC_DEFAULT_TLS_MS (60u * 1000)           /* the TLS handshake */
#define SMTPC_DEFAULT_MAIL_MS (5u * 60 * 1000)
#define SMTPC_DEFAULT_RCPT_MS (5u * 60 * 1000)
#define SMTPC_DEFAULT_DATA_INIT_MS (2u * 60 * 1000)
#define SMTPC_DEFAULT_DATA_BLOCK_MS (3u * 60 * 1000) /* each block written */
#define SMTPC_DEFAULT_DATA_FINAL_MS (10u * 60 * 1000)
#define SMTPC_DEFAULT_QUIT_MS (10u * 1000)

struct smtpc_timeouts {
	unsigned connect_ms, greeting_ms, ehlo_ms, tls_ms, mail_ms, rcpt_ms, data_init_ms,
		data_block_ms, data_final_ms, quit_ms;
};

/* Defaults of struct smtpc_limits. */
#define SMTPC_DEFAULT_MAX_RCPTS 1000u        /* recipients per smtpc_send */
#define SMTPC_DEFAULT_DATA_BLOCK (16u * 1024) /* body octets per DATA write */
#define SMTPC_MAX_PARAMS 1024u               /* octets of a caller's ESMTP params */

struct smtpc_limits {
	struct smtpc_reply_limits reply; /* each reply: 2048/line, 100 lines, 64 KiB */
	size_t max_rcpts;                /* recipients per message; 1000 */
	size_t data_block;               /* body octets per write (the data block
					    timeout runs per block); 16 KiB */
};

struct smtpc_settings {
	const char *helo_name;       /* our EHLO name (required) */
	enum smtpc_tls_policy tls;
	/* MAY/ENCRYPT: a tls_client_create_unverified() one; VERIFY: one that verifies
	 * (tls.h). Borrowed: must live until smtpc_connect returned (each
	 * connection keeps its own reference). NULL with NONE. */
	tls_client *tls_client;
	const char *tls_host;        /* SNI, and the name VERIFY checks; copied */
	/* TLS from the first byte (smtps, port 465; RFC 8314), before the
	 * greeting; policy ENCRYPT or VERIFY (then no STARTTLS). */
	int implicit_tls;
	/* AUTH (smarthosts): both or neither; copied, wiped on destroy.
	 * Sent only over TLS: without TLS the session fails (temporary). */
	const char *auth_user;
	const char *auth_pass;
	struct smtpc_timeouts timeouts; /* zero fields: the defaults */
	struct smtpc_limits limits;     /* zero fields: the defaults */
	const char *log_id;          /* leads our log lines (sid=); copied */
};

/* Fill t and l with the defaults. */
void smtpc_timeouts_init_default(struct smtpc_timeouts *t);
void smtpc_limits_init_default(struct smtpc_limits *l);

/* ---- results -------------------------------------------------------------- */

enum smtpc_status { SMTPC_OK = 0, SMTPC_TEMP = 1, SMTPC_PERM = 2 };

/* Where a result came from. */
enum smtpc_stage {
	SMTPC_STAGE_NONE = 0,
	SMTPC_STAGE_CONNECT,
	SMTPC_STAGE_GREETING,
	SMTPC_STAGE_EHLO,      /* EHLO or HELO */
	SMTPC_STAGE_STARTTLS,  /* the command or the handshake */
	SMTPC_STAGE_AUTH,
	SMTPC_STAGE_MAIL,      /* MAIL, or a local refusal of the message */
	SMTPC_STAGE_RCPT,
	SMTPC_STAGE_DATA,      /* DATA command or the body */
	SMTPC_STAGE_DATA_FINAL,
	SMTPC_STAGE_RSET,
	SMTPC_STAGE_QUIT,
	SMTPC_STAGE_IDLE,      /* between transactions */
};

#define SMTPC_TEXT_MAX 512u

struct smtpc_result {
	enum smtpc_status status;
	enum smtpc_stage stage;
	int code;                 /* the server's reply code; 0: no reply (our reason) */
	char enh[SMTPC_ENH_MAX];  /* the reply's enhanced code, or ours; "" */
	char text[SMTPC_TEXT_MAX];/* reply text (lines joined by ' ', truncated),
				     or our reason */
};

/* The name of a stage / status, for logs. */
const char *smtpc_stage_name(enum smtpc_stage stage);
const char *smtpc_status_name(enum smtpc_status status);

/* ---- a transaction -------------------------------------------------------- */

struct smtpc_rcpt {
	const char *addr;        /* the mailbox, without < > */
	/* DSN parameters as formatted by lib/dsn ("NOTIFY=... ORCPT=..."),
	 * sent only when the server offers DSN; NULL for none */
	const char *dsn_params;
	struct smtpc_result result; /* set by the session */
};

struct smtpc_message {
	const char *mail_from;   /* "" for the null sender */
	const char *dsn_params;  /* "RET=... ENVID=...", only with DSN; NULL */
	struct smtpc_rcpt *rcpts;
	size_t rcpt_count;       /* 1..limits.max_rcpts */
	/* The message as stored: lines end in CRLF or bare LF (a bare LF or
	 * CR is sent as CRLF), not dot-stuffed (we do it). Borrowed until
	 * done_cb; read in blocks, never copied whole. */
	const uint8_t *body;
	size_t body_len;
	int eight_bit;           /* the body has 8-bit octets: BODY=8BITMIME */
	int smtputf8;            /* UTF-8 in the envelope or headers: SMTPUTF8 */
	/* Set by the session: SMTPC_OK when the final DATA reply was 2xx
	 * (some recipients may still have failed: see each rcpt's result);
	 * else the reply or reason that ended the transaction. */
	struct smtpc_result result;
};

/* ---- the session -------------------------------------------------------- */

struct smtpc_callbacks {
	/* Greeting, EHLO, TLS and AUTH are done: call smtpc_send or
	 * smtpc_quit. Once per session. */
	void (*ready_cb)(smtpc *c, void *ctx);
	/* The transaction of msg is over (msg->result, rcpts[i].result). When
	 * smtpc_idle(c) the next smtpc_send may follow at once. */
	void (*done_cb)(smtpc *c, struct smtpc_message *msg, void *ctx);
	/* The session is over: status OK after QUIT, else why. Once. Only
	 * smtpc_destroy is left to do. */
	void (*closed_cb)(smtpc *c, const struct smtpc_result *why, void *ctx);
};

/* A session on loop. set and cbs are copied. Returns 0, or -1 with
 * *error_r (bad settings). */
int smtpc_create(uv_loop_t *loop, const struct smtpc_settings *set,
		 const struct smtpc_callbacks *cbs, void *ctx, smtpc **c_r, const char **error_r);
/* Connect to addr (IPv4 or IPv6, port set; copied). Once per session.
 * 0, or -1 with *error_r (then no callback will come: destroy). */
int smtpc_connect(smtpc *c, const struct sockaddr *addr, const char **error_r);
/* 1 when ready_cb has run and no transaction is running: smtpc_send may
 * be called. */
int smtpc_idle(const smtpc *c);
/* Start a transaction (when smtpc_idle). msg and what it points to are
 * borrowed until its done_cb. 0, or -1 with *error_r (not idle, no
 * recipients, too many, an address over 256 octets or with < > or a
 * control character, parameters over SMTPC_MAX_PARAMS or with a control
 * character). */
int smtpc_send(smtpc *c, struct smtpc_message *msg, const char **error_r);
/* End the session: QUIT when idle (then closed_cb with SMTPC_OK), else
 * close at once (closed_cb with SMTPC_TEMP, and done_cb first for a
 * transaction in progress). Nothing when already over. */
void smtpc_quit(smtpc *c);
/* Free the session at any time, also inside a callback: no callback runs
 * after it. NULLs *c; NULL is fine. */
void smtpc_destroy(smtpc **c);

/* The server's EHLO capabilities (the last EHLO), whether TLS is up and
 * whether AUTH succeeded. */
const struct smtpc_caps *smtpc_caps(const smtpc *c);
int smtpc_tls_active(const smtpc *c);
int smtpc_authenticated(const smtpc *c);

#endif
