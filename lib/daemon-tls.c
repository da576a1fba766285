/* daemon-tls.c: daemon-tls.h. */
#include "daemon-tls.h"

#include <stddef.h>

/* Offsets are within struct daemon_tls_settings. */
#define TLSOPT(field) offsetof(struct daemon_tls_settings, field)

const struct daemon_option daemon_tls_options[] = {
	{ .name = "node-cert", .kind = DAEMON_OPTION_STRING, .offset = TLSOPT(cert_file),
	  .value_name = "FILE",
	  .help = "node certificate (PEM, role in SAN mail-role:ROLE): mutual TLS on RPC" },
	{ .name = "node-key", .kind = DAEMON_OPTION_STRING, .offset = TLSOPT(key_file),
	  .value_name = "FILE", .help = "its private key (PEM)" },
	{ .name = "cluster-ca", .kind = DAEMON_OPTION_STRING, .offset = TLSOPT(ca_file),
	  .value_name = "FILE", .help = "the cluster CA (PEM) every RPC peer must chain to" },
	{ .name = NULL },
};

int daemon_tls_enabled(const struct daemon_tls_settings *set)
{
	return set->cert_file != NULL && set->key_file != NULL && set->ca_file != NULL;
}

int daemon_tls_check(const struct daemon_tls_settings *set, const char **error_r)
{
	int given = (set->cert_file != NULL) + (set->key_file != NULL) + (set->ca_file != NULL);
	if (given != 0 && given != 3) {
		*error_r = "--node-cert, --node-key and --cluster-ca go together (all three or none)";
		return -1;
	}
	return 0;
}

int daemon_tls_init(const struct daemon_tls_settings *set, int with_server,
		    struct daemon_tls *tls_r, const char **error_r)
{
	*tls_r = (struct daemon_tls){ NULL, NULL };
	if (!daemon_tls_enabled(set))
		return 0;
	struct tls_client_settings cs = { set->ca_file, set->cert_file, set->key_file };
	if (tls_client_create(&cs, &tls_r->client, error_r) < 0)
		return -1;
	if (!with_server)
		return 0;
	struct tls_server_settings ss = { set->cert_file, set->key_file, 0 };
	if (tls_server_create(&ss, &tls_r->server, error_r) < 0 ||
	    tls_server_require_client_cert(tls_r->server, set->ca_file, error_r) < 0) {
		daemon_tls_deinit(tls_r);
		return -1;
	}
	return 0;
}

void daemon_tls_deinit(struct daemon_tls *tls)
{
	tls_server_destroy(&tls->server);
	tls_client_destroy(&tls->client);
}
