/* daemon-tls.h: mutual TLS between cluster processes, as daemon options
 * (public contract).
 *
 * Every daemon that speaks RPC (store-node, queue-node, the frontend) lists
 * daemon_tls_options among its option groups: --node-cert, --node-key and
 * --cluster-ca, all three or none (daemon_tls_check). With them,
 * daemon_tls_init() builds
 *   - the server side of the node's RPC listener: its certificate, and a
 *     client certificate required from every peer, chaining to the cluster
 *     CA (a peer without one fails the handshake);
 *   - the client side of every RPC client the daemon makes: the same
 *     certificate presented, the server verified against the cluster CA
 *     and the address dialled.
 * The role a peer may play is in its certificate (SAN URI mail-role:ROLE,
 * lib/tls.h); which roles may call which method is each RPC method table's
 * business (proto/rpc.h). docs/security.md, "Cluster RPC".
 *
 * Loop thread only; nothing here is global.
 */
#ifndef MAIL_DAEMON_TLS_H
#define MAIL_DAEMON_TLS_H

#include "daemon-options.h"
#include "tls.h"

struct daemon_tls_settings {
	const char *cert_file;  /* --node-cert: this process's certificate (PEM) */
	const char *key_file;   /* --node-key: its private key (PEM) */
	const char *ca_file;    /* --cluster-ca: the cluster CA (PEM) */
};

/* --node-cert --node-key --cluster-ca (rows of struct daemon_tls_settings). */
extern const struct daemon_option daemon_tls_options[];

/* 1 when the three options were given, else 0. */
int daemon_tls_enabled(const struct daemon_tls_settings *set);
/* For a daemon's check: the three options together or not at all. Returns
 * 0, or -1 with *error_r (static text naming them). */
int daemon_tls_check(const struct daemon_tls_settings *set, const char **error_r);

/* What daemon_tls_init() builds; NULL members when node TLS is off. The
 * daemon's context owns it: deinit after the loop has ended (RPC servers
 * borrow the server side until their connections are closed). */
struct daemon_tls {
	tls_server *server;   /* for rpc_server_set_tls(); NULL unless with_server */
	tls_client *client;   /* for rpc_client_set_tls(), rpc_pool_set_tls() */
};

/* Build the client side and, with with_server = 1, the server side, from
 * set; nothing (both NULL, returns 0) when node TLS is off. A file that
 * cannot be read or a key that is not the certificate's: -1 with *error_r
 * (static text; the details logged), and nothing kept. */
int daemon_tls_init(const struct daemon_tls_settings *set, int with_server,
		    struct daemon_tls *tls_r, const char **error_r);
void daemon_tls_deinit(struct daemon_tls *tls);

#endif
