/* greylist-key.c: a triplet's name from client, sender and recipient
 * (greylist-private.h; the rules are in greylist.h, "The triplet").
 *
 * Everything here works on bounded stack copies: the inputs come from
 * the SMTP parser, which already bounds them, but the bounds are checked
 * again before a byte is copied (GREYLIST_ADDRESS_MAX).
 */
#include "greylist-private.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "util.h"

/* Lowercase ASCII; other bytes (UTF-8 of SMTPUTF8 addresses) as they are. */
static char greylist__lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* A "word" byte of Perl's \b (postgrey's rule): ASCII letters, digits and
 * '_'; bytes of multi-byte UTF-8 count as letters, so a digit run that
 * touches a non-ASCII letter is kept. */
static int greylist__word(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c >= 0x80;
}

/* Lowercased copy of s into out (max + 1 bytes). The length, or -1 when s
 * is longer than max or holds a control character. */
static int greylist__lower_copy(const char *s, char *out, size_t max)
{
	size_t len = strnlen(s, max + 1);
	if (len > max)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f)
			return -1;
		out[i] = greylist__lower(s[i]);
	}
	out[len] = '\0';
	return (int)len;
}

int greylist__net(const char *client_ip, char net_r[GREYLIST__NET_MAX])
{
	if (client_ip == NULL || strnlen(client_ip, INET6_ADDRSTRLEN) >= INET6_ADDRSTRLEN)
		return -1;
	uint8_t v4[4];
	struct in6_addr a6;
	if (inet_pton(AF_INET, client_ip, v4) == 1) {
		/* below */
	} else if (inet_pton(AF_INET6, client_ip, &a6) == 1) {
		if (IN6_IS_ADDR_V4MAPPED(&a6)) {
			/* a dual-stack listener's IPv4 peer: the same /24 as
			 * when it comes in over an IPv4 socket */
			memcpy(v4, &a6.s6_addr[12], sizeof v4);
		} else {
			/* /64: one end site's subnet; a host picks any of its
			 * 2^64 addresses (privacy addresses change daily) */
			memset(&a6.s6_addr[8], 0, 8);
			char text[INET6_ADDRSTRLEN];
			if (inet_ntop(AF_INET6, &a6, text, sizeof text) == NULL)
				return -1;
			snprintf(net_r, GREYLIST__NET_MAX, "%s/64", text);
			return 0;
		}
	} else {
		return -1;
	}
	snprintf(net_r, GREYLIST__NET_MAX, "%u.%u.%u.0/24", v4[0], v4[1], v4[2]);
	return 0;
}

int greylist__sender_normalize(const char *sender, char out_r[GREYLIST_ADDRESS_MAX + 1])
{
	char low[GREYLIST_ADDRESS_MAX + 1];
	int n = greylist__lower_copy(sender, low, GREYLIST_ADDRESS_MAX);
	if (n < 0)
		return -1;
	size_t len = (size_t)n;
	const char *at = memrchr(low, '@', len);
	const char *local = low;
	size_t local_len = at != NULL ? (size_t)(at - low) : len;
	const char *rest = low + local_len; /* "@domain", or "" */

	/* BATV (draft-levine-smtp-batv): "prvs=TAG=local", the tag changes
	 * with every message */
	static const char batv[] = "prvs=";
	const size_t batv_len = sizeof batv - 1;
	if (local_len > batv_len && memcmp(local, batv, batv_len) == 0) {
		const char *eq = memchr(local + batv_len, '=', local_len - batv_len);
		if (eq != NULL && eq + 1 < local + local_len) {
			local_len -= (size_t)(eq + 1 - local);
			local = eq + 1;
		}
	}
	/* "+extension": VERP and per-message return paths */
	const char *plus = memchr(local, '+', local_len);
	if (plus != NULL && plus > local)
		local_len = (size_t)(plus - local);

	/* lone digit runs (postgrey's s/\b\d+\b/#/g): bounce ids, list
	 * message numbers */
	size_t o = 0;
	for (size_t i = 0; i < local_len;) {
		unsigned char c = (unsigned char)local[i];
		if (c >= '0' && c <= '9' && (i == 0 || !greylist__word((unsigned char)local[i - 1]))) {
			size_t j = i;
			while (j < local_len && local[j] >= '0' && local[j] <= '9')
				j++;
			if (j == local_len || !greylist__word((unsigned char)local[j])) {
				out_r[o++] = '#';
				i = j;
				continue;
			}
		}
		out_r[o++] = local[i++];
	}
	/* never longer than the input: o <= local_len <= len */
	size_t rest_len = len - (size_t)(rest - low);
	memcpy(out_r + o, rest, rest_len);
	out_r[o + rest_len] = '\0';
	return 0;
}

int greylist__triplet(const char *client_ip, const char *sender, const char *rcpt,
		      uint8_t digest_r[GREYLIST__DIGEST_LEN],
		      char hex_r[GREYLIST_TRIPLET_HEX_LEN + 1])
{
	char net[GREYLIST__NET_MAX];
	char from[GREYLIST_ADDRESS_MAX + 1];
	char to[GREYLIST_ADDRESS_MAX + 1];
	if (sender == NULL || rcpt == NULL || greylist__net(client_ip, net) < 0 ||
	    greylist__sender_normalize(sender, from) < 0)
		return -1;
	int to_len = greylist__lower_copy(rcpt, to, GREYLIST_ADDRESS_MAX);
	if (to_len <= 0)
		return -1;

	/* net NUL sender NUL rcpt: the NULs cannot occur in the parts, so
	 * no two triplets share an input */
	crypto_hash_sha256_state st;
	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, (const unsigned char *)net, strlen(net) + 1);
	crypto_hash_sha256_update(&st, (const unsigned char *)from, strlen(from) + 1);
	crypto_hash_sha256_update(&st, (const unsigned char *)to, (size_t)to_len);
	crypto_hash_sha256_final(&st, digest_r);
	sodium_bin2hex(hex_r, GREYLIST_TRIPLET_HEX_LEN + 1, digest_r, GREYLIST__DIGEST_LEN);
	return 0;
}

int greylist__domain(const char *domain, char out_r[GREYLIST__DOMAIN_MAX + 1],
		     uint8_t digest_r[GREYLIST__DIGEST_LEN])
{
	if (domain == NULL || greylist__lower_copy(domain, out_r, GREYLIST__DOMAIN_MAX) <= 0 ||
	    !util_domain_valid(out_r))
		return -1;
	static const char tag[] = "\0domain"; /* with its own NUL: "\0domain\0" */
	crypto_hash_sha256_state st;
	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, (const unsigned char *)tag, sizeof tag);
	crypto_hash_sha256_update(&st, (const unsigned char *)out_r, strlen(out_r));
	crypto_hash_sha256_final(&st, digest_r);
	return 0;
}
