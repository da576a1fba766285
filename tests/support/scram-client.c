/* scram-client.c: a SCRAM-SHA-256 client for tests (see scram-client.h). */
#include "scram-client.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "xalloc.h"

#define SCRAM_LEN 32
#define SCRAM_SALT_MAX 64

/* Base64 of n bytes as a heap string. */
static char *scram_b64(const unsigned char *in, size_t n)
{
	char *out = xmalloc(4 * ((n + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	return out;
}

/* The value of attribute name in a SCRAM message ("r" of "r=x,s=y") as a
 * heap string, or NULL. */
static char *scram_attr(const char *msg, char name)
{
	for (const char *p = msg; *p != '\0'; p += strcspn(p, ",")) {
		if (*p == ',')
			p++;
		if (p[0] == name && p[1] == '=')
			return xstrndup(p + 2, strcspn(p + 2, ","));
	}
	return NULL;
}

/* The salt of server-first, decoded; its length or -1. */
static int scram_salt(const char *salt_b64, unsigned char salt[SCRAM_SALT_MAX])
{
	size_t len = strlen(salt_b64);
	if (len == 0 || len % 4 != 0 || len / 4 * 3 > SCRAM_SALT_MAX)
		return -1;
	int n = EVP_DecodeBlock(salt, (const unsigned char *)salt_b64, (int)len);
	/* EVP_DecodeBlock counts the padding as zero bytes */
	for (size_t i = len; n > 0 && salt_b64[i - 1] == '='; i--)
		n--;
	return n > 0 ? n : -1;
}

int mailtest_scram_client_final(const char *password, const char *gs2_header,
				const char *client_first_bare, const char *server_first,
				char **client_final_r, char **server_final_r)
{
	char *cnonce = scram_attr(client_first_bare, 'r');
	char *nonce = scram_attr(server_first, 'r');
	char *salt_b64 = scram_attr(server_first, 's');
	char *iter = scram_attr(server_first, 'i');
	unsigned char salt[SCRAM_SALT_MAX];
	int salt_len = salt_b64 != NULL ? scram_salt(salt_b64, salt) : -1;
	int iterations = iter != NULL ? atoi(iter) : 0;
	int ok = cnonce != NULL && nonce != NULL && salt_len > 0 && iterations > 0 &&
		 strlen(nonce) > strlen(cnonce) && strncmp(nonce, cnonce, strlen(cnonce)) == 0;
	if (ok) {
		unsigned char salted[SCRAM_LEN], client_key[SCRAM_LEN], stored_key[SCRAM_LEN];
		unsigned char server_key[SCRAM_LEN], signature[SCRAM_LEN], proof[SCRAM_LEN];
		unsigned len;
		PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, salt_len, iterations,
				  EVP_sha256(), SCRAM_LEN, salted);
		HMAC(EVP_sha256(), salted, SCRAM_LEN, (const unsigned char *)"Client Key", 10,
		     client_key, &len);
		SHA256(client_key, SCRAM_LEN, stored_key);
		HMAC(EVP_sha256(), salted, SCRAM_LEN, (const unsigned char *)"Server Key", 10,
		     server_key, &len);

		char *cbind = scram_b64((const unsigned char *)gs2_header, strlen(gs2_header));
		char *without_proof = xasprintf("c=%s,r=%s", cbind, nonce);
		char *auth = xasprintf("%s,%s,%s", client_first_bare, server_first, without_proof);
		HMAC(EVP_sha256(), stored_key, SCRAM_LEN, (const unsigned char *)auth,
		     strlen(auth), signature, &len);
		for (int i = 0; i < SCRAM_LEN; i++)
			proof[i] = client_key[i] ^ signature[i];
		char *proof_b64 = scram_b64(proof, SCRAM_LEN);
		*client_final_r = xasprintf("%s,p=%s", without_proof, proof_b64);

		HMAC(EVP_sha256(), server_key, SCRAM_LEN, (const unsigned char *)auth,
		     strlen(auth), signature, &len);
		char *signature_b64 = scram_b64(signature, SCRAM_LEN);
		*server_final_r = xasprintf("v=%s", signature_b64);
		free(signature_b64);
		free(proof_b64);
		free(auth);
		free(without_proof);
		free(cbind);
	}
	free(iter);
	free(salt_b64);
	free(nonce);
	free(cnonce);
	return ok ? 0 : -1;
}
