/* tls-certs.h: keeps a frontend's certificates current without a restart.
 *
 * Every TLS_CERTS_POLL_MS it
 *   - reads /mail/v1/tls/certs/ (mailctl tls set|remove) on the thread
 *     pool and hands what changed (by mod revision) to
 *     tls_server_set_domain(): a new or replaced domain certificate, or a
 *     removed one;
 *   - looks at the default certificate's files and reloads them when their
 *     modification time or size changed (tls_server_load_default(): a bad
 *     pair is logged and the old certificate stays).
 * Loop thread only.
 */
#ifndef MAIL_TLS_CERTS_H
#define MAIL_TLS_CERTS_H

#include <uv.h>

#include "tls.h"

#define TLS_CERTS_POLL_MS 5000u

struct etcd_conf;
struct etcd_stats;
typedef struct tls_certs tls_certs;

/* etcd NULL: files only. etcd and the strings are copied; tls is borrowed. */
tls_certs *tls_certs_start(uv_loop_t *loop, tls_server *tls, const struct etcd_conf *etcd,
			   struct etcd_stats *stats, const char *cert_file, const char *key_file);
/* Stop; memory goes once the pool's job is done (keep running the loop). */
void tls_certs_stop(tls_certs **certs);
/* Domains with a certificate as last applied (tests, logs). */
size_t tls_certs_domains(const tls_certs *certs);

#endif
