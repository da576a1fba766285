/* mailctl-security.c: `mailctl block ...` and `mailctl tls ...`.
 *
 *   block list                 blocked addresses: IP, reason, by, seconds left
 *   block add IP [--ttl S]     block IP on every frontend (S = 0: until removed)
 *   block remove IP
 *   tls set DOMAIN --cert FILE --key FILE   the certificate frontends serve
 *                              for DOMAIN and its subdomains (SNI)
 *   tls list                   domains, subject, expiry
 *   tls remove DOMAIN
 *
 * Keys (docs/security.md): /mail/v1/blocks/<ip> (frontend/auth-guard.h)
 * and /mail/v1/tls/certs/<domain> {"cert":PEM,"key":PEM,"at":ms}.
 */
#include "mailctl-private.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "security-keys.h"
#include "etcd.h"
#include "mail-error.h"
#include "util.h"
#include "xalloc.h"

#define MAILCTL_PEM_MAX (1u << 20)

/* ---- shared ---------------------------------------------------------------- */

int mailctl_remove_key(mailctl *ctl, etcd_client *c, const char *prefix, const char *name,
		       const char *what, const char *done)
{
	char key[320];
	snprintf(key, sizeof key, "%s%s", prefix, name);
	char *value = NULL;
	size_t len = 0;
	int err = etcd_kv_get(c, key, &value, &len, NULL, NULL);
	free(value);
	if (err == MAIL_OK)
		err = etcd_kv_delete(c, key);
	if (err != MAIL_OK)
		return mailctl_error(ctl, err, what, name);
	printf(done, name);
	return MAILCTL_OK;
}

/* ---- block ----------------------------------------------------------------- */

static int mailctl_ip_valid(const char *ip)
{
	unsigned char tmp[16];
	return inet_pton(AF_INET, ip, tmp) == 1 || inet_pton(AF_INET6, ip, tmp) == 1;
}

/* Print v as indented JSON (consumed). An exit code. */
static int mailctl_sec_json(json_t *v)
{
	int ok = json_dumpf(v, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) == 0;
	json_decref(v);
	putchar('\n');
	return ok && fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
}

static int mailctl_block_list(mailctl *ctl, etcd_client *c, int json)
{
	etcd_kv *kvs = NULL;
	size_t n = 0;
	int err = etcd_kv_range_prefix(c, BLOCK_KEY_PREFIX, 0, &kvs, &n, NULL);
	if (err != MAIL_OK)
		return mailctl_error(ctl, err, "block", "list");
	json_t *a = json ? json_array() : NULL;
	if (!json)
		printf("%-40s %-14s %-14s %s\n", "ADDRESS", "REASON", "BY", "SINCE");
	for (size_t k = 0; k < n; k++) {
		json_t *j = json_loadb(kvs[k].value, kvs[k].value_len, 0, NULL);
		const char *reason = json_string_value(json_object_get(j, "reason"));
		const char *by = json_string_value(json_object_get(j, "by"));
		json_int_t at = json_integer_value(json_object_get(j, "at"));
		if (json) {
			json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:I, s:b}", "address",
							   kvs[k].key + strlen(BLOCK_KEY_PREFIX),
							   "reason", reason ? reason : "?", "by",
							   by ? by : "?",
							   "at_ms", at, "lease", kvs[k].lease != 0));
			json_decref(j);
			continue;
		}
		long ago = at > 0 ? (long)((util_now_wall_ms() - at) / 1000) : -1;
		char since[32] = "-";
		if (ago >= 0)
			snprintf(since, sizeof since, "%lds ago", ago);
		printf("%-40s %-14s %-14s %s\n", kvs[k].key + strlen(BLOCK_KEY_PREFIX),
		       reason ? reason : "?", by ? by : "?", since);
		json_decref(j);
	}
	etcd_kvs_free(kvs, n);
	if (json)
		return mailctl_sec_json(json_pack("{s:o}", "blocks", a));
	return fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
}

static int mailctl_block_add(mailctl *ctl, etcd_client *c, const char *ip, long ttl)
{
	char key[128];
	snprintf(key, sizeof key, BLOCK_KEY_PREFIX "%s", ip);
	int64_t lease = 0;
	int err = MAIL_OK;
	if (ttl > 0)
		err = etcd_lease_grant(c, (int)ttl, &lease);
	json_t *v = json_pack("{s:s,s:s,s:I}", "reason", "operator", "by", "mailctl", "at",
			      (json_int_t)util_now_wall_ms());
	char *text = json_dumps(v, JSON_COMPACT);
	json_decref(v);
	if (err == MAIL_OK)
		err = etcd_kv_put(c, key, text, strlen(text), lease);
	free(text);
	if (err != MAIL_OK)
		return mailctl_error(ctl, err, "block", ip);
	printf("blocked %s %s\n", ip, ttl > 0 ? "(with a lease)" : "(until removed)");
	return MAILCTL_OK;
}

static int mailctl_block(mailctl *ctl, etcd_client *c, int argc, char **argv)
{
	if (argc == 1 && strcmp(argv[0], "list") == 0)
		return mailctl_block_list(ctl, c, 0);
	if (argc == 2 && strcmp(argv[0], "list") == 0 && strcmp(argv[1], "--json") == 0)
		return mailctl_block_list(ctl, c, 1);
	if ((argc == 2 || argc == 4) && strcmp(argv[0], "add") == 0) {
		long ttl = 0;
		if (argc == 4) {
			char *end;
			if (strcmp(argv[2], "--ttl") != 0)
				return -1;
			ttl = strtol(argv[3], &end, 10);
			if (*end != '\0' || ttl < 0 || ttl > 365L * 86400) {
				mailctl_fail(ctl, "--ttl takes seconds, 0..31536000");
				return MAILCTL_USAGE;
			}
		}
		if (!mailctl_ip_valid(argv[1])) {
			mailctl_fail(ctl, "%s is not an IP address", argv[1]);
			return MAILCTL_USAGE;
		}
		return mailctl_block_add(ctl, c, argv[1], ttl);
	}
	if (argc == 2 && strcmp(argv[0], "remove") == 0)
		return mailctl_remove_key(ctl, c, BLOCK_KEY_PREFIX, argv[1], "block",
					  "unblocked %s\n");
	return -1;
}

/* ---- tls ----------------------------------------------------------------------- */

static char *mailctl_slurp(mailctl *ctl, const char *path, size_t *len_r)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		mailctl_fail(ctl, "cannot read %s", path);
		return NULL;
	}
	char *data = xmalloc(MAILCTL_PEM_MAX + 1);
	size_t n = fread(data, 1, MAILCTL_PEM_MAX + 1, f);
	fclose(f);
	if (n > MAILCTL_PEM_MAX) {
		mailctl_fail(ctl, "%s is too large", path);
		free(data);
		return NULL;
	}
	data[n] = '\0';
	*len_r = n;
	return data;
}

/* The certificate's subject CN and notAfter as text (for list). */
static void mailctl_cert_info(const char *pem, size_t len, char *cn, size_t cn_size,
			      char *until, size_t until_size)
{
	snprintf(cn, cn_size, "?");
	snprintf(until, until_size, "?");
	BIO *b = BIO_new_mem_buf(pem, (int)len);
	X509 *x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	if (x != NULL) {
		X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn,
					  (int)cn_size);
		BIO *o = BIO_new(BIO_s_mem());
		ASN1_TIME_print(o, X509_get0_notAfter(x));
		int n = BIO_read(o, until, (int)until_size - 1);
		until[n > 0 ? n : 0] = '\0';
		BIO_free(o);
	}
	X509_free(x);
	BIO_free(b);
}

/* 0 when key_pem is the private key of the first certificate in cert_pem. */
static int mailctl_pair_ok(const char *cert, size_t cl, const char *key, size_t kl)
{
	BIO *cb = BIO_new_mem_buf(cert, (int)cl);
	BIO *kb = BIO_new_mem_buf(key, (int)kl);
	X509 *x = PEM_read_bio_X509(cb, NULL, NULL, NULL);
	EVP_PKEY *k = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
	int ok = x != NULL && k != NULL && X509_check_private_key(x, k) == 1;
	X509_free(x);
	EVP_PKEY_free(k);
	BIO_free(cb);
	BIO_free(kb);
	return ok ? 0 : -1;
}

static int mailctl_tls_set(mailctl *ctl, etcd_client *c, const char *domain, const char *cert_path,
			   const char *key_path)
{
	if (!util_domain_valid(domain)) {
		mailctl_fail(ctl, "%s is not a domain", domain);
		return MAILCTL_USAGE;
	}
	size_t cl = 0, kl = 0;
	char *cert = mailctl_slurp(ctl, cert_path, &cl);
	char *key = cert != NULL ? mailctl_slurp(ctl, key_path, &kl) : NULL;
	if (key == NULL) {
		free(cert);
		return MAILCTL_OTHER;
	}
	int rc = MAILCTL_OK;
	if (mailctl_pair_ok(cert, cl, key, kl) < 0) {
		mailctl_fail(ctl, "%s is not the key of the certificate in %s", key_path, cert_path);
		rc = MAILCTL_USAGE;
	} else {
		json_t *v = json_pack("{s:s,s:s,s:I}", "cert", cert, "key", key, "at",
				      (json_int_t)util_now_wall_ms());
		char *text = json_dumps(v, JSON_COMPACT);
		json_decref(v);
		char k[320];
		snprintf(k, sizeof k, TLS_CERT_KEY_PREFIX "%s", domain);
		int err = etcd_kv_put(c, k, text, strlen(text), 0);
		free(text);
		if (err != MAIL_OK)
			rc = mailctl_error(ctl, err, "tls", domain);
		else
			printf("tls %s: certificate set (frontends load it within seconds)\n", domain);
	}
	free(cert);
	free(key);
	return rc;
}

static int mailctl_tls_list(mailctl *ctl, etcd_client *c, int json)
{
	etcd_kv *kvs = NULL;
	size_t n = 0;
	int err = etcd_kv_range_prefix(c, TLS_CERT_KEY_PREFIX, 0, &kvs, &n, NULL);
	if (err != MAIL_OK)
		return mailctl_error(ctl, err, "tls", "list");
	json_t *a = json ? json_array() : NULL;
	if (!json)
		printf("%-32s %-32s %s\n", "DOMAIN", "SUBJECT CN", "NOT AFTER");
	for (size_t k = 0; k < n; k++) {
		json_t *j = json_loadb(kvs[k].value, kvs[k].value_len, 0, NULL);
		const char *cert = json_string_value(json_object_get(j, "cert"));
		char cn[128], until[64];
		mailctl_cert_info(cert ? cert : "", cert ? strlen(cert) : 0, cn, sizeof cn, until,
				  sizeof until);
		if (json)
			json_array_append_new(a, json_pack("{s:s, s:s, s:s}", "domain",
							   kvs[k].key + strlen(TLS_CERT_KEY_PREFIX),
							   "subject_cn", cn, "not_after", until));
		else
			printf("%-32s %-32s %s\n", kvs[k].key + strlen(TLS_CERT_KEY_PREFIX), cn,
			       until);
		json_decref(j);
	}
	etcd_kvs_free(kvs, n);
	if (json)
		return mailctl_sec_json(json_pack("{s:o}", "certificates", a));
	return fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
}

static int mailctl_tls(mailctl *ctl, etcd_client *c, int argc, char **argv)
{
	if (argc == 1 && strcmp(argv[0], "list") == 0)
		return mailctl_tls_list(ctl, c, 0);
	if (argc == 2 && strcmp(argv[0], "list") == 0 && strcmp(argv[1], "--json") == 0)
		return mailctl_tls_list(ctl, c, 1);
	if (argc == 6 && strcmp(argv[0], "set") == 0) {
		const char *cert = NULL, *key = NULL;
		for (int i = 2; i + 1 < argc; i += 2) {
			if (strcmp(argv[i], "--cert") == 0)
				cert = argv[i + 1];
			else if (strcmp(argv[i], "--key") == 0)
				key = argv[i + 1];
		}
		if (cert == NULL || key == NULL)
			return -1;
		return mailctl_tls_set(ctl, c, argv[1], cert, key);
	}
	if (argc == 2 && strcmp(argv[0], "remove") == 0)
		return mailctl_remove_key(ctl, c, TLS_CERT_KEY_PREFIX, argv[1], "tls",
					  "tls %s: certificate removed\n");
	return -1;
}

int mailctl_security(mailctl *ctl, int argc, char **argv)
{
	etcd_client *c = etcd_client_create(&ctl->etcd);
	int rc = strcmp(argv[0], "block") == 0 ? mailctl_block(ctl, c, argc - 1, argv + 1)
					       : mailctl_tls(ctl, c, argc - 1, argv + 1);
	etcd_client_destroy(&c);
	return rc;
}
