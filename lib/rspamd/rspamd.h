/* rspamd.h: spam verdicts from rspamd over its HTTP protocol, for the MX,
 * on a libuv loop (public contract; library `mailrspamd`).
 *
 * Decision: rspamd's own protocol (POST /checkv2: the message as the body,
 * the SMTP envelope as request headers, a JSON answer) with libcurl's
 * multi interface driven by the loop: curl_multi_socket_action() with a
 * uv_poll_t per socket curl watches and one uv_timer_t for curl's timeout
 * (curl's "multi-uv" pattern). Nothing blocks the loop; libcurl brings
 * HTTP/1.1 framing, chunked bodies, https if the URL says so, and its
 * threaded resolver if the URL holds a name. Not milter: rspamd's milter
 * speaks through its proxy worker and would give us a second protocol
 * engine to keep; the HTTP answer carries everything the MX needs.
 *
 * One check:
 *
 *   rspamd_check_start()  the message and envelope; the request's header
 *                         values are copied at once (made safe, below),
 *                         the message is borrowed until the callback;
 *   (queue)               at most max_inflight requests at once; up to
 *                         queue_max more wait, in order; one more is BUSY;
 *   POST /checkv2         on a new connection (rspamd closes each one);
 *   callback              on the loop, exactly once, never inside
 *                         rspamd_check_start(): OK with rspamd's verdict,
 *                         or why there is none.
 *
 * timeout_ms counts from rspamd_check_start(), queueing included: a check
 * still queued at its deadline is answered UNAVAILABLE ("timed out in the
 * queue") when the queue moves, which is by its deadline (every request
 * ahead of it ends by its own, earlier, deadline).
 *
 * What the MX does with a result is one table, rspamd_result_reply():
 * reject 550 5.7.1, soft reject 451 4.7.1, add header (and rewrite
 * subject) X-Spam headers and Junk, rspamd unavailable or busy: the
 * message passes (or 451 4.7.1 when fail-closed), too big: passes
 * unchecked. The library logs one line per check that got no verdict
 * (event=rspamd_unavailable, rspamd_busy, rspamd_skipped, with the queue
 * id) and counts every outcome (rspamd_client_stats) for metrics; the
 * verdict itself goes into the MX's own line.
 *
 * Request headers (rspamd's names): IP (only a valid IPv4/IPv6 literal),
 * Helo, From ("<>" for the null reverse-path), Rcpt (one per recipient,
 * at most RSPAMD_RCPTS_MAX), Queue-Id, Hostname, User; NULL or "" fields
 * are not sent. Their values come from the network: every byte below 0x20
 * and DEL becomes '?', so no CR or LF can end a header and start another;
 * values are cut at RSPAMD_HEADER_VALUE_MAX bytes.
 *
 * Threads: a client lives on one loop; every call here is made on that
 * loop's thread, and callbacks run there. Several clients may share a
 * loop. No global state (libcurl's global init is reference-counted).
 */
#ifndef MAIL_RSPAMD_H
#define MAIL_RSPAMD_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "buf.h"
#include "rspamd-response.h"

/* ---- settings (every row: default, min, max; 0 takes the default) ---- */

struct rspamd_settings {
	/* The normal worker's base URL, "http://HOST:PORT" (or https); a
	 * trailing '/' is dropped and "/checkv2" appended. NULL: the
	 * default. Copied. */
	const char *url;
#define RSPAMD_URL_DEFAULT "http://127.0.0.1:11333"
#define RSPAMD_URL_LEN_MAX 1024u
	/* From rspamd_check_start() to the callback, queueing included;
	 * after it: UNAVAILABLE ("timed out"). rspamd's own task timeout is
	 * 8 s by default: this lets its verdict come first. */
	unsigned timeout_ms;
#define RSPAMD_TIMEOUT_MS_DEFAULT 10000u
#define RSPAMD_TIMEOUT_MS_MIN 50u
#define RSPAMD_TIMEOUT_MS_MAX 600000u
	/* Requests at once (each holds a connection and a socket). */
	unsigned max_inflight;
#define RSPAMD_MAX_INFLIGHT_DEFAULT 64u
#define RSPAMD_MAX_INFLIGHT_MIN 1u
#define RSPAMD_MAX_INFLIGHT_MAX 4096u
	/* Checks waiting for a request slot; one more is BUSY at once. */
	unsigned queue_max;
#define RSPAMD_QUEUE_MAX_DEFAULT 1024u
#define RSPAMD_QUEUE_MAX_MIN 1u
#define RSPAMD_QUEUE_MAX_MAX 1000000u
	/* Larger messages are not sent: SKIPPED (rspamd's own limit,
	 * max_message, is 50 MB). */
	size_t max_message_bytes;
#define RSPAMD_MAX_MESSAGE_BYTES_DEFAULT ((size_t)32 * 1024 * 1024)
#define RSPAMD_MAX_MESSAGE_BYTES_MIN ((size_t)1024)
#define RSPAMD_MAX_MESSAGE_BYTES_MAX ((size_t)1024 * 1024 * 1024)
	/* A longer answer is abandoned: UNAVAILABLE. rspamd's are a few KiB. */
	size_t max_response_bytes;
#define RSPAMD_MAX_RESPONSE_BYTES_DEFAULT ((size_t)256 * 1024)
#define RSPAMD_MAX_RESPONSE_BYTES_MIN ((size_t)4096)
#define RSPAMD_MAX_RESPONSE_BYTES_MAX ((size_t)RSPAMD_RESPONSE_BYTES_MAX)
};

/* Request header values are cut at this many bytes; recipients past
 * RSPAMD_RCPTS_MAX are not sent (the MX accepts far fewer). */
#define RSPAMD_HEADER_VALUE_MAX 1024u
#define RSPAMD_RCPTS_MAX 1000u

/* The defaults above, as a struct to start from. */
struct rspamd_settings rspamd_settings_default(void);

/* ---- results ---- */

enum rspamd_status {
	RSPAMD_OK = 0,      /* rspamd's verdict is in action */
	RSPAMD_UNAVAILABLE, /* no verdict: connect failure, timeout, an HTTP
			     * status other than 200, an answer that is not
			     * rspamd's JSON or is over max_response_bytes */
	RSPAMD_SKIPPED,     /* not sent: over max_message_bytes */
	RSPAMD_BUSY,        /* not sent: the queue was full */
};

/* "ok", "unavailable", "skipped", "busy" (never NULL). */
const char *rspamd_status_name(enum rspamd_status status);

/* Strings are NUL-terminated, owned by the client and valid until the
 * callback returns: copy what you keep. */
struct rspamd_result {
	enum rspamd_status status;
	/* RSPAMD_OK: rspamd's action; otherwise NO_ACTION. */
	enum rspamd_action action;
	double score, required_score; /* 0 unless OK */
	/* "GTUBE(0.00),HFILTER_HOSTNAME_UNKNOWN(2.50),..." highest score
	 * first, at most RSPAMD_SYMBOLS_LEN_MAX bytes, [A-Za-z0-9_.-(),]
	 * only; "" unless OK. For X-Spam-Symbols and logs. */
	const char *symbols;
	/* rspamd's smtp_message ("Gtube pattern"), for logs; NULL if none. */
	const char *message;
	/* REWRITE_SUBJECT: the new Subject (UTF-8, no control bytes); NULL
	 * otherwise. */
	const char *subject;
	/* Not OK: why, one line of printable ASCII ("timed out after 10000
	 * ms", "HTTP 500: invalid command", "Couldn't connect to server:
	 * ..."); NULL when OK. For logs. */
	const char *problem;
	unsigned elapsed_ms; /* from rspamd_check_start() */
};

/* The result is never NULL (a destroyed client calls nothing). */
typedef void rspamd_cb(const struct rspamd_result *result, void *arg);

typedef struct rspamd_client rspamd_client;
typedef struct rspamd_check rspamd_check;

/* ---- the client ---- */

/* A client on loop. settings (copied; NULL: the defaults): fields left 0
 * take their default, others must be in range; url must be http:// or
 * https:// and printable ASCII. Returns 0 and *c_r, or -1 with a static
 * line in *error_r. Loop thread only. */
int rspamd_client_create(uv_loop_t *loop, const struct rspamd_settings *settings,
			 rspamd_client **c_r, const char **error_r);

/* Destroy *c and NULL it; NULL is fine. With checks in flight or queued:
 * they are dropped, no callback is called after this (so each caller
 * frees what its arg holds itself), and every rspamd_check handle becomes
 * invalid. Connections close now; the client's memory goes once its
 * libuv handles have closed: keep running the loop. May be called from a
 * callback. Loop thread only. */
void rspamd_client_destroy(rspamd_client **c);

struct rspamd_request {
	/* The message as received (header and body, CRLF or LF), borrowed
	 * until the callback runs or the check is cancelled. */
	const void *msg;
	size_t len;
	/* The SMTP client's address as text ("192.0.2.1", "2001:db8::1");
	 * anything else is not sent. */
	const char *client_ip;
	const char *helo;      /* the HELO/EHLO argument */
	const char *mail_from; /* the reverse-path without <>; "" for <> */
	const char *const *rcpts; /* forward-paths without <> */
	size_t n_rcpts;
	const char *queue_id;  /* also names the check in log lines */
	const char *hostname;  /* the client's verified PTR name, NULL if none:
				* rspamd then scores RDNS_NONE */
	const char *user;      /* the authenticated user, NULL if none */
};

/* Start a check of req (every string copied, msg borrowed). cb runs once,
 * on the loop, never inside this call (a check refused at once, BUSY or
 * SKIPPED, is answered on a later loop turn). arg is the caller's.
 * Returns the check (never NULL), valid until its callback starts. Loop
 * thread only; not after rspamd_client_destroy(). */
rspamd_check *rspamd_check_start(rspamd_client *c, const struct rspamd_request *req,
				 rspamd_cb *cb, void *arg);

/* Withdraw a check and NULL *chk; NULL is fine. Its callback is then never
 * called, its request (if sent) is abandoned, and msg is free to go. Only
 * a check whose callback has not started may be cancelled. */
void rspamd_check_cancel(rspamd_check **chk);

/* Counters since create (metrics, tests). checks = ok + unavailable +
 * skipped + busy + cancelled + (queued + inflight + answered but not yet
 * delivered). */
struct rspamd_stats {
	uint64_t checks;      /* rspamd_check_start calls */
	uint64_t ok;          /* callbacks with a verdict */
	uint64_t unavailable; /* callbacks without one */
	uint64_t timeouts;    /*   of them, timed out (in the queue or not) */
	uint64_t skipped;     /* callbacks: over max_message_bytes */
	uint64_t busy;        /* callbacks: the queue was full */
	uint64_t cancelled;   /* rspamd_check_cancel calls */
	unsigned inflight;    /* now: requests sent */
	unsigned queued;      /* now: checks waiting */
};
void rspamd_client_stats(const rspamd_client *c, struct rspamd_stats *stats_r);

/* ---- what a result means for the message ---- */

/* The X-Spam fields of a message rspamd let through, appended to out:
 *
 *   X-Spam-Flag: YES\r\n           (YES for add header, rewrite subject
 *                                    and reject; NO otherwise)
 *   X-Spam-Score: 7.20 / 15.00\r\n
 *   X-Spam-Action: add header\r\n
 *   X-Spam-Symbols: A(2.50),B(1.00),\r\n\tC(0.30)\r\n
 *
 * The symbols line is folded (CRLF TAB after a comma) before 78 bytes
 * and omitted when there are none; only [A-Za-z0-9_.-(),] of r->symbols
 * are copied, at most RSPAMD_SYMBOLS_LEN_MAX bytes, so every line stays
 * far under 998 bytes whatever r holds. Returns 0, or -1 (nothing
 * appended) when r->status is not RSPAMD_OK. */
int rspamd_spam_headers(const struct rspamd_result *r, buf *out);

/* What the MX does with a result: one row per outcome. */
struct rspamd_reply {
	/* 0: take the message; else refuse it at end of DATA with this
	 * code, enhanced code and text (fixed, safe to show the client). */
	int smtp_code;
	const char *smtp_enh;
	const char *text;
	unsigned flags;
#define RSPAMD_REPLY_HEADERS 0x1u  /* add rspamd_spam_headers() */
#define RSPAMD_REPLY_JUNK 0x2u     /* deliver into the Junk mailbox */
#define RSPAMD_REPLY_SUBJECT 0x4u  /* replace Subject with r->subject */
#define RSPAMD_REPLY_GREYLIST 0x8u /* rspamd asks for greylisting: the
				    * MX's own greylist decides */
#define RSPAMD_REPLY_UNCHECKED 0x10u /* no verdict (unavailable, busy,
				      * skipped): taken unchecked */
};

/*   OK no action        take
 *   OK greylist         take, GREYLIST
 *   OK add header       take, HEADERS JUNK
 *   OK rewrite subject  take, HEADERS JUNK SUBJECT (when r->subject)
 *   OK soft reject      451 4.7.1 "Try again later"
 *   OK reject           550 5.7.1 "Message rejected as spam"
 *   UNAVAILABLE, BUSY   take, UNCHECKED; fail_closed: 451 4.7.1
 *                       "Spam filter unavailable, try again later"
 *   SKIPPED             take, UNCHECKED (too big to scan: policy for
 *                       size is the MX's message size limit)
 * Never NULL; static. */
const struct rspamd_reply *rspamd_result_reply(const struct rspamd_result *r, int fail_closed);

#endif
