/* tls.h: TLS for our listeners on memory BIOs (OpenSSL 3), transport-free.
 *
 * tls_server is a listener's server side: TLS 1.2 and 1.3 only, a default
 * certificate, certificates per tenant domain chosen by SNI, and stateless
 * session tickets. Everything in it can change while connections run:
 *   - tls_server_load_default() and tls_server_set_domain() build and check
 *     a new certificate context first and swap it in only when it is good
 *     (a bad file never takes a working certificate away); connections
 *     already up keep the context they began with;
 *   - SNI: a server name matches domain D when it is D or ends in ".D"
 *     (mail.example.com matches example.com); the longest match wins; no
 *     name or no match gets the default certificate;
 *   - tickets: keys are derived from a shared secret and the time period
 *     (HKDF-SHA256, period ticket_period_s), so every frontend given the
 *     same secret issues and accepts the same tickets, with no coordination:
 *     any frontend resumes a session another began. A ticket is accepted
 *     for TLS_TICKET_PERIODS_ACCEPTED periods (re-issued when not from the
 *     current one); keys rotate when the period turns. Without a secret,
 *     a random one (this process only). There is no server-side session
 *     cache.
 *
 * tls_conn is one connection's engine: bytes from the network go in with
 * tls_conn_feed(), plaintext comes out, and whatever TLS wants to send is
 * appended to a buffer the caller writes to the socket. It never touches a
 * socket, so the protocol servers, the tests and the fuzz targets drive it
 * the same way.
 *
 * tls_client is the client side of cluster connections (mutual TLS between
 * nodes): it trusts one CA file and presents a certificate of its own.
 * A tls_server can likewise require a client certificate from that CA
 * (tls_server_require_client_cert). The peer's role is read from its
 * certificate: a SAN URI "mail-role:<role>" (cluster/dev-ca node NAME ROLE
 * issues such certificates), see tls_conn_peer_role().
 *
 * Loop thread only (a tls_server is used by the connections of one loop).
 */
#ifndef MAIL_TLS_H
#define MAIL_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define TLS_TICKET_PERIOD_S_DEFAULT 3600u
#define TLS_TICKET_PERIODS_ACCEPTED 3u
#define TLS_TICKET_SECRET_MIN 16u

typedef struct tls_server tls_server;
typedef struct tls_conn tls_conn;
typedef struct tls_client tls_client;

/* The URI prefix of the SAN naming a node's role. */
#define TLS_ROLE_URI_PREFIX "mail-role:"
#define TLS_ROLE_MAX 31u

struct tls_server_settings {
	const char *cert_file;       /* PEM: certificate, then its chain */
	const char *key_file;        /* PEM private key */
	unsigned ticket_period_s;    /* 0: TLS_TICKET_PERIOD_S_DEFAULT */
};

/* A server with the default certificate of settings. Returns 0, or -1 with
 * *error_r (static text; details logged). */
int tls_server_create(const struct tls_server_settings *set, tls_server **srv_r,
		      const char **error_r);
/* The same from PEM text in memory (tests, fuzz targets). */
int tls_server_create_pem(const char *cert, size_t cert_len, const char *key, size_t key_len,
			  tls_server **srv_r, const char **error_r);
void tls_server_destroy(tls_server **srv);

/* Replace the default certificate from files (a reload). 0, or -1 with
 * *error_r and the old certificate still in use. */
int tls_server_load_default(tls_server *srv, const char *cert_file, const char *key_file,
			    const char **error_r);
/* Set (cert_pem != NULL) or remove (cert_pem == NULL) the certificate of a
 * domain (lower-case, no trailing dot). 0, or -1 with *error_r. */
int tls_server_set_domain(tls_server *srv, const char *domain, const char *cert_pem,
			  size_t cert_len, const char *key_pem, size_t key_len,
			  const char **error_r);
/* Require every client to present a certificate that chains to the CA(s)
 * in ca_file (SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT): a client
 * without one fails the handshake. Applies to connections made after the
 * call, whatever certificate SNI picks. 0, or -1 with *error_r. */
int tls_server_require_client_cert(tls_server *srv, const char *ca_file, const char **error_r);
/* Domains with a certificate now. */
size_t tls_server_domain_count(const tls_server *srv);
/* The shared ticket secret (at least TLS_TICKET_SECRET_MIN bytes). */
int tls_server_set_ticket_secret(tls_server *srv, const void *secret, size_t len);
/* For tests: the clock the ticket periods are cut from (seconds; 0 =
 * the wall clock). */
void tls_server_set_clock(tls_server *srv, uint64_t now_s);

/* ---- the client side ---------------------------------------------------- */

struct tls_client_settings {
	const char *ca_file;         /* PEM: the CA(s) a server must chain to */
	const char *cert_file;       /* PEM: our certificate; NULL = present none */
	const char *key_file;        /* PEM private key of cert_file */
};

/* TLS 1.2+ client that verifies the server's certificate against ca_file
 * and the name given to tls_conn_new_client(). Returns 0, or -1 with
 * *error_r (static text; details logged). */
int tls_client_create(const struct tls_client_settings *set, tls_client **cli_r,
		      const char **error_r);
/* A TLS 1.2+ client that does NOT verify the server's certificate:
 * opportunistic TLS, for outbound SMTP's "may" and "encrypt" policies
 * (lib/smtpc), where it only protects against passive eavesdroppers.
 * No certificate of our own. Returns 0, or -1 with *error_r. */
int tls_client_create_unverified(tls_client **cli_r, const char **error_r);
/* Connections made from cli keep their own reference: destroy any time. */
void tls_client_destroy(tls_client **cli);

/* ---- one connection ---------------------------------------------------- */

enum tls_feed_result {
	TLS_FEED_OK = 0,      /* go on */
	TLS_FEED_CLOSED = 1,  /* the peer sent close_notify: no more input */
	TLS_FEED_ERROR = -1,  /* fatal (handshake failure, bad record): close */
};

tls_conn *tls_conn_new_server(tls_server *srv);
/* A client connection to host: a DNS name (sent as SNI and matched against
 * the certificate's DNS names) or an IP literal (matched against its IP
 * SANs). The client speaks first: call tls_conn_feed(c, NULL, 0, ...) once
 * to get the ClientHello into net_out. */
tls_conn *tls_conn_new_client(tls_client *cli, const char *host);
void tls_conn_free(tls_conn **c);

/* Bytes read from the network. Plaintext is appended to plain_out (at most
 * as much as came in, plus what OpenSSL had buffered); bytes to send to
 * net_out. */
enum tls_feed_result tls_conn_feed(tls_conn *c, const void *data, size_t len, buf *plain_out,
				   buf *net_out);
/* Plaintext to send: the records go to net_out. Before the handshake is
 * done the plaintext is held and sent as soon as it is. 0, or -1. */
int tls_conn_write(tls_conn *c, const void *data, size_t len, buf *net_out);
/* A close_notify to net_out (best effort). */
void tls_conn_close_notify(tls_conn *c, buf *net_out);

int tls_conn_handshake_done(const tls_conn *c);
/* 1 when this session was resumed (ticket). */
int tls_conn_resumed(const tls_conn *c);
/* "TLSv1.3", cipher name, SNI host ("" when none): static or owned by c. */
const char *tls_conn_version(const tls_conn *c);
const char *tls_conn_cipher(const tls_conn *c);
const char *tls_conn_sni(const tls_conn *c);
/* Once the handshake is done: the role named by the peer's verified
 * certificate (its SAN URI TLS_ROLE_URI_PREFIX<role>), "" when it has no
 * verified certificate or names no role. Owned by c. */
const char *tls_conn_peer_role(const tls_conn *c);
/* Log event=tls (version, cipher, resumed, SNI) under svc and sid, once,
 * as soon as the handshake is done; later calls do nothing. */
void tls_conn_log_handshake(tls_conn *c, const char *svc, const char *sid);
/* Why the last feed failed ("" when it did not). */
const char *tls_conn_error(const tls_conn *c);

#endif
