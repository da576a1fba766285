/* directory-apppw.c: a user's app passwords (directory.h; mailctl user
 * app-password; docs/operations.md "App passwords").
 *
 * In the user record: "app_passwords":[{"id":"k7h3","name":"phone",
 * "hash":"<64 hex>","created":<ms>}, ...]. A password is made here, never
 * chosen: 16 characters of an alphabet without look-alikes (32 symbols,
 * 80 random bits) in four groups, "k7h3-m9x2-b8dw-q4zt"; its first group
 * is its id. Stored as BLAKE2b-256 of a fixed context and the password: a
 * slow hash protects what people choose, and 80 random bits need none, so
 * a client that logs in every minute costs no argon2id.
 */
#include "directory-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "log.h"
#include "mail-error.h"
#include "util.h"
#include "xalloc.h"

static const char apppw_alphabet[] = "abcdefghijkmnpqrstuvwxyz23456789";
static const char apppw_context[] = "mail app password v1";

int directory_app_password_shaped(const char *pw)
{
	if (strlen(pw) != DIRECTORY_APP_PASSWORD_LEN)
		return 0;
	for (size_t i = 0; i < DIRECTORY_APP_PASSWORD_LEN; i++) {
		if (i % 5 == 4) {
			if (pw[i] != '-')
				return 0;
		} else if (strchr(apppw_alphabet, pw[i]) == NULL || pw[i] == '\0') {
			return 0;
		}
	}
	return 1;
}

/* hex BLAKE2b-256(context || pw) into out[65] */
static void apppw_hash(const char *pw, char out[65])
{
	uint8_t h[32];
	crypto_generichash_state st;
	crypto_generichash_init(&st, NULL, 0, sizeof h);
	crypto_generichash_update(&st, (const uint8_t *)apppw_context, sizeof apppw_context - 1);
	crypto_generichash_update(&st, (const uint8_t *)pw, strlen(pw));
	crypto_generichash_final(&st, h, sizeof h);
	sodium_bin2hex(out, 65, h, sizeof h);
	sodium_memzero(h, sizeof h);
}

int directory__app_password_check(json_t *record, const char *pw, int *matched_r)
{
	*matched_r = 0;
	if (!directory_app_password_shaped(pw))
		return 0;
	json_t *list = json_object_get(record, "app_passwords"), *e;
	size_t i;
	json_array_foreach(list, i, e)
	{
		const char *id = json_string_value(json_object_get(e, "id"));
		const char *hash = json_string_value(json_object_get(e, "hash"));
		if (id == NULL || hash == NULL || strlen(hash) != 64 || strncmp(id, pw, 4) != 0)
			continue;
		char want[65];
		apppw_hash(pw, want);
		*matched_r = sodium_memcmp(want, hash, 64) == 0;
		sodium_memzero(want, sizeof want);
		return 1;
	}
	return 0;
}

struct apppw_add {
	const char *name;
	char *pw;            /* out: DIRECTORY_APP_PASSWORD_LEN + 1 */
	char id[5];
};

static int apppw_add_fn(json_t *record, void *arg)
{
	struct apppw_add *a = arg;
	json_t *list = json_object_get(record, "app_passwords"), *e;
	if (!json_is_array(list)) {
		list = json_array();
		json_object_set_new(record, "app_passwords", list);
	}
	if (json_array_size(list) >= DIRECTORY_APP_PASSWORDS_MAX)
		return MAIL_ERR_LIMIT;
	size_t i;
	json_array_foreach(list, i, e)
	{
		const char *n = json_string_value(json_object_get(e, "name"));
		if (n != NULL && strcmp(n, a->name) == 0)
			return MAIL_ERR_EXISTS;
	}
	for (;;) {
		uint8_t r[16];
		randombytes_buf(r, sizeof r);
		for (size_t k = 0, o = 0; k < 16; k++) {
			if (k > 0 && k % 4 == 0)
				a->pw[o++] = '-';
			a->pw[o++] = apppw_alphabet[r[k] % 32];
		}
		sodium_memzero(r, sizeof r);
		a->pw[DIRECTORY_APP_PASSWORD_LEN] = '\0';
		int clash = 0;
		json_array_foreach(list, i, e)
		{
			const char *id = json_string_value(json_object_get(e, "id"));
			clash |= id != NULL && strncmp(id, a->pw, 4) == 0;
		}
		if (!clash)
			break;
	}
	memcpy(a->id, a->pw, 4);
	a->id[4] = '\0';
	char hash[65];
	apppw_hash(a->pw, hash);
	json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:I}", "id", a->id, "name",
					      a->name, "hash", hash,
					      "created", (json_int_t)util_now_wall_ms()));
	return MAIL_OK;
}

int directory_app_password_add(directory *dir, const char *address, const char *name,
			       char pw_r[DIRECTORY_APP_PASSWORD_LEN + 1], char id_r[5])
{
	size_t nlen = strlen(name);
	if (nlen == 0 || nlen > DIRECTORY_APP_PASSWORD_NAME_MAX)
		return MAIL_ERR_PARAMS;
	for (size_t i = 0; i < nlen; i++)
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
			return MAIL_ERR_PARAMS;
	char *addr = util_address_normalize(address, strlen(address));
	if (addr == NULL)
		return MAIL_ERR_NOT_FOUND;
	struct apppw_add a = { .name = name, .pw = pw_r };
	int err = directory__user_update(dir, addr, apppw_add_fn, &a, 0);
	if (err == MAIL_OK) {
		memcpy(id_r, a.id, 5);
		log_event(LOG_INFO, "directory", "event=app_password_added user=%s id=%s", addr,
			  a.id);
	} else {
		sodium_memzero(pw_r, DIRECTORY_APP_PASSWORD_LEN + 1);
	}
	free(addr);
	return err;
}

struct apppw_revoke {
	const char *which;   /* id or name */
	char id[5];
};

static int apppw_revoke_fn(json_t *record, void *arg)
{
	struct apppw_revoke *r = arg;
	json_t *list = json_object_get(record, "app_passwords"), *e;
	size_t i;
	json_array_foreach(list, i, e)
	{
		const char *id = json_string_value(json_object_get(e, "id"));
		const char *n = json_string_value(json_object_get(e, "name"));
		if ((id != NULL && strcmp(id, r->which) == 0) ||
		    (n != NULL && strcmp(n, r->which) == 0)) {
			snprintf(r->id, sizeof r->id, "%s", id != NULL ? id : "?");
			json_array_remove(list, i);
			return MAIL_OK;
		}
	}
	return MAIL_ERR_NOT_FOUND;
}

int directory_app_password_revoke(directory *dir, const char *address, const char *id_or_name)
{
	char *addr = util_address_normalize(address, strlen(address));
	if (addr == NULL)
		return MAIL_ERR_NOT_FOUND;
	struct apppw_revoke r = { .which = id_or_name };
	int err = directory__user_update(dir, addr, apppw_revoke_fn, &r, 0);
	if (err == MAIL_OK)
		log_event(LOG_INFO, "directory", "event=app_password_revoked user=%s id=%s", addr,
			  r.id);
	free(addr);
	return err;
}

int directory_app_password_list(directory *dir, const char *address,
				struct directory_app_password **list_r, size_t *n_r)
{
	*list_r = NULL;
	*n_r = 0;
	char *addr = util_address_normalize(address, strlen(address));
	if (addr == NULL)
		return MAIL_ERR_NOT_FOUND;
	char *key = directory__user_key(addr);
	char *value = NULL;
	size_t len = 0;
	int err = directory__get(dir, key, &value, &len, NULL);
	free(key);
	free(addr);
	if (err != MAIL_OK)
		return err;
	json_t *j = json_loadb(value, len, 0, NULL);
	free(value);
	json_t *list = json_object_get(j, "app_passwords"), *e;
	size_t n = json_array_size(list), i;
	struct directory_app_password *out = xcalloc(n + 1, sizeof *out);
	size_t k = 0;
	json_array_foreach(list, i, e)
	{
		const char *id = json_string_value(json_object_get(e, "id"));
		const char *name = json_string_value(json_object_get(e, "name"));
		json_t *c = json_object_get(e, "created");
		if (id == NULL || name == NULL)
			continue;
		snprintf(out[k].id, sizeof out[k].id, "%s", id);
		snprintf(out[k].name, sizeof out[k].name, "%s", name);
		out[k].created_ms = json_is_integer(c) ? json_integer_value(c) : 0;
		k++;
	}
	json_decref(j);
	*list_r = out;
	*n_r = k;
	return MAIL_OK;
}
