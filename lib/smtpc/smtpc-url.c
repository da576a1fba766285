/* smtpc-url.c: next-hop URLs (smtpc-url.h). */
#include "smtpc-url.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

static const struct {
	const char *prefix;
	enum smtpc_url_scheme scheme;
	unsigned port;
} schemes[] = {
	{ "smtp+starttls://", SMTPC_URL_SMTP_STARTTLS, 587 },
	{ "smtps://", SMTPC_URL_SMTPS, 465 },
	{ "smtp://", SMTPC_URL_SMTP, 25 },
};

int smtpc_url_parse(const char *url, struct smtpc_url *out, const char **error_r)
{
	memset(out, 0, sizeof *out);
	const char *p = NULL;
	for (size_t i = 0; i < sizeof schemes / sizeof schemes[0] && p == NULL; i++) {
		size_t n = strlen(schemes[i].prefix);
		if (strncasecmp(url, schemes[i].prefix, n) == 0) {
			p = url + n;
			out->scheme = schemes[i].scheme;
			out->port = schemes[i].port;
		}
	}
	if (p == NULL) {
		*error_r = "the URL must start with smtp://, smtp+starttls:// or smtps://";
		return -1;
	}
	if (strchr(p, '@') != NULL) {
		*error_r = "no credentials in the URL (give them apart)";
		return -1;
	}
	const char *host = p, *host_end;
	if (*p == '[') {
		host = p + 1;
		host_end = strchr(host, ']');
		if (host_end == NULL) {
			*error_r = "an IPv6 address needs its closing ]";
			return -1;
		}
		p = host_end + 1;
		out->host_is_ip = 1;
	} else {
		host_end = p + strcspn(p, ":/?#");
		p = host_end;
	}
	size_t hlen = (size_t)(host_end - host);
	if (hlen == 0 || hlen > SMTPC_URL_HOST_MAX) {
		*error_r = "the URL names no host (or one too long)";
		return -1;
	}
	memcpy(out->host, host, hlen);
	out->host[hlen] = '\0';
	unsigned char tmp[16];
	if (out->host_is_ip) {
		if (inet_pton(AF_INET6, out->host, tmp) != 1) {
			*error_r = "not an IPv6 address between [ ]";
			return -1;
		}
	} else if (inet_pton(AF_INET, out->host, tmp) == 1) {
		out->host_is_ip = 1;
	} else if (!util_domain_valid(out->host)) {
		*error_r = "the host is not a domain name or an address";
		return -1;
	}
	if (*p == ':') {
		char *end;
		unsigned long port = strtoul(p + 1, &end, 10);
		if (end == p + 1 || port == 0 || port > 65535 || end - (p + 1) > 5) {
			*error_r = "the port must be a number in 1..65535";
			return -1;
		}
		out->port = (unsigned)port;
		p = end;
	}
	if (*p == '/' && p[1] == '\0')
		p++;   /* a trailing slash is harmless */
	if (*p != '\0') {
		*error_r = "nothing may follow the host and port";
		return -1;
	}
	return 0;
}

void smtpc_url_format(const struct smtpc_url *u, char *buf, size_t size)
{
	const char *scheme = u->scheme == SMTPC_URL_SMTPS ? "smtps"
			     : u->scheme == SMTPC_URL_SMTP_STARTTLS ? "smtp+starttls"
								    : "smtp";
	int v6 = strchr(u->host, ':') != NULL;
	snprintf(buf, size, "%s://%s%s%s:%u", scheme, v6 ? "[" : "", u->host, v6 ? "]" : "",
		 u->port);
}
