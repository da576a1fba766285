/* smtpc-url.h: a next hop for outbound mail, as operators write it
 * (`mailctl relay set`, `mailctl transport set`; docs/outbound.md):
 *
 *   smtp://HOST[:PORT]           plaintext or opportunistic STARTTLS, 25
 *   smtp+starttls://HOST[:PORT]  STARTTLS required, 587
 *   smtps://HOST[:PORT]          TLS from the first byte, 465
 *
 * HOST is a DNS name, an IPv4 address or an [IPv6] literal. Nothing else:
 * no user info (credentials are given apart, never in a URL that is
 * printed), no path, query or fragment. Pure, any thread.
 */
#ifndef MAIL_SMTPC_URL_H
#define MAIL_SMTPC_URL_H

#include <stddef.h>

enum smtpc_url_scheme {
	SMTPC_URL_SMTP = 0,
	SMTPC_URL_SMTP_STARTTLS,
	SMTPC_URL_SMTPS,
};

#define SMTPC_URL_HOST_MAX 253

struct smtpc_url {
	enum smtpc_url_scheme scheme;
	char host[SMTPC_URL_HOST_MAX + 1]; /* without the brackets of an IPv6 literal */
	int host_is_ip;                    /* an address literal, not a name to resolve */
	unsigned port;                     /* given, or the scheme's */
};

/* Parse url into *out: 0, or -1 with *error_r (static text). */
int smtpc_url_parse(const char *url, struct smtpc_url *out, const char **error_r);
/* The URL again, normalised (scheme lower case, port always written) into
 * buf (size >= SMTPC_URL_HOST_MAX + 32). */
void smtpc_url_format(const struct smtpc_url *u, char *buf, size_t size);

#endif
