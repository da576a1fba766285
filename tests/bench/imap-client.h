/* imap-client.h: the client side of IMAP for the benchmarks (imap-load,
 * imap-idle-mem). Benchmarks only: nothing here is linked into a daemon.
 *
 * Two layers:
 *  - imapc_reader: an incremental, bounded reader of server responses. It
 *    splits the byte stream into responses (a line, plus the literals it
 *    announces with {N}, plus the rest of the line after each literal) and
 *    hands each one over as its text with the literals' bytes left out
 *    (their sizes are counted). Limits: imapc_limits, checked before a byte
 *    is kept. Fuzzed by fuzz-imapc-reader.c.
 *  - imapc_conn: one connection on a libuv loop (plaintext, or implicit TLS
 *    when the settings carry an SSL_CTX), one command in flight at a time
 *    (no pipelining). APPEND's synchronizing literal is sent after the
 *    server's continuation; any other continuation ("+ idling") goes to
 *    on_continue.
 *
 * Everything runs on the loop's thread. No global state: a connection's
 * read buffer lives in the imapc_shared the caller passes in (one per loop).
 */
#ifndef MAIL_BENCH_IMAP_CLIENT_H
#define MAIL_BENCH_IMAP_CLIENT_H

#include "buf.h"

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* ---- the response reader ------------------------------------------------ */

#define IMAPC_DEFAULT_MAX_LINE (64u * 1024u)                /* text of one response */
#define IMAPC_DEFAULT_MAX_LITERAL (256ull * 1024u * 1024u)  /* one literal's size */

struct imapc_limits {
	size_t max_line;       /* bytes of response text kept (literals excluded) */
	uint64_t max_literal;  /* largest {N} accepted */
};

enum imapc_reader_state {
	IMAPC_READ_LINE,     /* collecting text up to CRLF */
	IMAPC_READ_LITERAL,  /* skipping the bytes of a literal */
	IMAPC_READ_FAILED,   /* a limit was passed; nothing more is read */
};

struct imapc_reader {
	struct imapc_limits limits;
	enum imapc_reader_state state;
	buf text;               /* the response so far, literals left out */
	size_t scan;            /* where to look for the next LF in text */
	uint64_t literal_left;  /* bytes of the current literal still to skip */
	uint64_t literal_bytes; /* literal bytes of the current response */
	bool complete;          /* text holds a whole response (returned last time) */
};

/* One response: text without its final CRLF (literal contents left out,
 * the {N} announcements kept), and how many literal bytes it carried.
 * Valid until the next imapc_reader_read(). */
struct imapc_response {
	const char *text;
	size_t len;
	uint64_t literal_bytes;
};

/* limits: NULL for the defaults. */
void imapc_reader_init(struct imapc_reader *r, const struct imapc_limits *limits);
void imapc_reader_deinit(struct imapc_reader *r);
/* Consume bytes of data (len of them) until a response is complete.
 * Returns 1 with *resp_r set (*used_r bytes consumed; call again with the
 * rest), 0 when all of data was consumed and no response is complete yet,
 * -1 with *error_r (a static string) when a limit was passed (the reader
 * then fails every call). */
int imapc_reader_read(struct imapc_reader *r, const uint8_t *data, size_t len,
		      size_t *used_r, struct imapc_response *resp_r, const char **error_r);

/* ---- a connection ------------------------------------------------------- */

#define IMAPC_READ_BUF_SIZE (64u * 1024u)

/* What a loop's connections share: one read buffer (a read callback uses it
 * and is done with it before the next read). Embedded; one per loop. */
struct imapc_shared {
	uint8_t rbuf[IMAPC_READ_BUF_SIZE];
	uint8_t plain[IMAPC_READ_BUF_SIZE];
};

enum imapc_status {
	IMAPC_OK,
	IMAPC_NO,
	IMAPC_BAD,
	IMAPC_BYE,    /* the server closed the connection (BYE or EOF) */
	IMAPC_ERROR,  /* a network, TLS or protocol error */
};

struct imapc_conn;

struct imapc_callbacks {
	/* The greeting arrived (IMAPC_OK for "* OK"/"* PREAUTH"), or the
	 * connection failed before it (text says why). */
	void (*on_ready)(struct imapc_conn *c, enum imapc_status st, const char *text);
	/* The tagged answer of the command in flight (text: the whole line
	 * after the tag), or IMAPC_BYE/IMAPC_ERROR when the connection ended
	 * while it was in flight. */
	void (*on_done)(struct imapc_conn *c, enum imapc_status st, const char *text);
	/* An untagged response ("* ..."), while a command is in flight or not.
	 * Optional. */
	void (*on_untagged)(struct imapc_conn *c, const struct imapc_response *resp);
	/* A continuation request not consumed by an APPEND literal (IDLE's
	 * "+ idling"). Optional. */
	void (*on_continue)(struct imapc_conn *c, const char *text);
	/* The connection ended with no command in flight (after the greeting).
	 * Optional. */
	void (*on_closed)(struct imapc_conn *c, enum imapc_status st, const char *text);
};

struct imapc_settings {
	struct imapc_limits limits;  /* zeroes: the defaults */
	SSL_CTX *ssl_ctx;            /* implicit TLS when not NULL (not owned) */
	const char *sni;             /* server name for TLS, or NULL */
};

/* A new connection (not yet connected). ctx is the caller's, returned by
 * imapc_conn_context(). shared must outlive the connection. */
struct imapc_conn *imapc_conn_create(uv_loop_t *loop, struct imapc_shared *shared,
				     const struct imapc_settings *set,
				     const struct imapc_callbacks *cb, void *ctx);
void *imapc_conn_context(const struct imapc_conn *c);
/* Connect to addr; on_ready follows. Returns 0, or < 0 (a libuv error)
 * when the connect could not even start (on_ready is then not called). */
int imapc_conn_connect(struct imapc_conn *c, const struct sockaddr *addr);
/* Send "TAG line CRLF" (the tag is generated). With literal != NULL, line
 * must end with "{literal_len}"; the literal and a CRLF are sent once the
 * server asks for them. One command at a time: returns -1 while another is
 * in flight or the connection is not ready, else 0; on_done follows. */
int imapc_conn_command(struct imapc_conn *c, const char *line, const void *literal,
		       size_t literal_len);
/* Send bytes as they are (IDLE's "DONE\r\n"). Returns 0 or -1 (not open). */
int imapc_conn_send_raw(struct imapc_conn *c, const char *data, size_t len);
/* Close the connection and free it once libuv is done with it; no callback
 * of c is called after this. */
void imapc_conn_destroy(struct imapc_conn **c);
/* Whether a command is in flight. */
bool imapc_conn_busy(const struct imapc_conn *c);

/* Parse "* N WORD" (EXISTS, EXPUNGE, RECENT, FETCH); returns true with
 * *n_r when resp is such a response naming word (case-insensitive). */
bool imapc_untagged_number(const struct imapc_response *resp, const char *word,
			   uint64_t *n_r);

#endif
