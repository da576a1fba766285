/* imap-login.c: password checks and SASL exchanges over a struct
 * imap_backend (imap-login.h).
 *
 * Every path ends in imap_login_finish(), whose call to done is the last
 * thing it does: done may free the login. Backend callbacks get the login
 * as their argument; it is alive for them because the engine frees a
 * login only from done or when the session goes, and a pending call holds
 * a reference on the connection.
 */
#include "imap-login.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "log.h"
#include "mail-error.h"
#include "xalloc.h"

struct imap_login {
	struct conn *c;
	const struct imap_login_backend *lb;
	imap_login_done_cb *done;
	sasl_server *sasl;
	enum sasl_step lookup;       /* CHECK_PASSWORD or NEED_SCRAM */
	char *user, *password;       /* a password login held back by a penalty */
	char *canon;                 /* the backend's name for the user */
	int reading;                 /* a challenge is out */
	int final;                   /* SCRAM's server-final is out */
};

static void imap_login_secret_free(char **secret)
{
	if (*secret != NULL) {
		OPENSSL_cleanse(*secret, strlen(*secret));
		free(*secret);
		*secret = NULL;
	}
}

imap_login *imap_login_create(struct conn *c, const struct imap_login_backend *lb,
			      imap_login_done_cb *done)
{
	struct imap_login *l = xcalloc(1, sizeof(*l));
	l->c = c;
	l->lb = lb;
	l->done = done;
	return l;
}

void imap_login_free(imap_login **loginp)
{
	struct imap_login *l = *loginp;
	if (l == NULL)
		return;
	*loginp = NULL;
	sasl_server_free(&l->sasl);
	imap_login_secret_free(&l->password);
	free(l->user);
	free(l->canon);
	free(l);
}

int imap_login_reading(const imap_login *l)
{
	return l->reading;
}

int imap_login_mech_offered(const struct imap_login_backend *lb, enum sasl_mech mech)
{
	return mech < SASL_MECH_COUNT_ &&
	       (mech != SASL_MECH_SCRAM_SHA_256 || lb->backend->scram_keys != NULL);
}

const char *imap_login_mechs(const struct imap_login_backend *lb)
{
	return lb->backend->scram_keys != NULL ? "PLAIN LOGIN SCRAM-SHA-256" : "PLAIN LOGIN";
}

/* The outcome. user is copied first: done may free the login (and with it
 * l->canon) before it is done with the name. */
static void imap_login_finish(struct imap_login *l, int status, const char *user,
			      const char *text)
{
	char *name = status == MAIL_OK && user != NULL ? xstrdup(user) : NULL;
	struct conn *c = l->c;
	imap_login_done_cb *done = l->done;
	char quoted[128];
	l->reading = 0;
	if (name != NULL)
		log_event(LOG_INFO, conn_log_svc(c), "event=login sid=%s user=%s", c->id,
			  log_quote(quoted, sizeof(quoted), name, strlen(name)));
	else if (status != MAIL_ERR_PERM && status != MAIL_ERR_PARAMS)
		log_event(LOG_WARN, conn_log_svc(c), "event=login_error sid=%s error=%s", c->id,
			  mail_error_info(status)->name);
	done(c, status, name, text);
	free(name);
}

static void imap_login_set_canon(struct imap_login *l, const char *user)
{
	free(l->canon);
	l->canon = user != NULL ? xstrdup(user) : NULL;
}

/* ---- a password ---------------------------------------------------------- */

static void imap_login_password_cb(int status, const char *user, void *arg)
{
	struct imap_login *l = arg;
	struct conn *c = l->c;
	if (!conn_is_closed(c))
		imap_login_finish(l, status, user, NULL);
	conn_unref(c);
}

static void imap_login_password_check(struct conn *c, void *arg)
{
	struct imap_login *l = arg;
	const struct imap_login_backend *lb = l->lb;
	conn_ref(c);
	lb->backend->authenticate(lb->backend_ctx, l->user, l->password, imap_login_password_cb,
				  l);
	imap_login_secret_free(&l->password);
}

void imap_login_password(imap_login *l, const char *user, const char *password)
{
	free(l->user);
	l->user = xstrdup(user);
	imap_login_secret_free(&l->password);
	l->password = xstrdup(password);
	conn_after_penalty(l->c, imap_login_password_check, l);
}

/* ---- SASL ------------------------------------------------------------------ */

static void imap_login_next(struct imap_login *l, enum sasl_step step, buf *out);

/* "+ <base64>" and wait for the client's line. */
static void imap_login_challenge(struct imap_login *l, const buf *out)
{
	buf b64;
	buf_init(&b64);
	sasl_b64_encode(out->data, out->len, &b64);
	conn_append(l->c, "+ ", 2);
	conn_append(l->c, b64.data, b64.len);
	conn_append(l->c, "\r\n", 2);
	buf_deinit(&b64);
	l->reading = 1;
	conn_flush(l->c);
}

static void imap_login_sasl_password_cb(int status, const char *user, void *arg)
{
	struct imap_login *l = arg;
	struct conn *c = l->c;
	if (!conn_is_closed(c)) {
		if (status == MAIL_OK || status == MAIL_ERR_PERM) {
			imap_login_set_canon(l, user);
			buf out;
			buf_init(&out);
			imap_login_next(l, sasl_server_checked(l->sasl, status == MAIL_OK), &out);
			buf_deinit(&out);
		} else {
			imap_login_finish(l, status, NULL, NULL);
		}
	}
	conn_unref(c);
}

static void imap_login_scram_cb(int status, const char *user,
				const struct sasl_scram_keys *keys, void *arg)
{
	struct imap_login *l = arg;
	struct conn *c = l->c;
	if (!conn_is_closed(c)) {
		buf out;
		buf_init(&out);
		if (status == MAIL_OK && keys != NULL) {
			imap_login_set_canon(l, user);
			imap_login_next(l, sasl_server_scram_keys(l->sasl, keys, &out), &out);
		} else if (status == MAIL_ERR_PERM) {
			imap_login_next(l, sasl_server_scram_unknown(l->sasl, &out), &out);
		} else {
			imap_login_finish(l, status, NULL, NULL);
		}
		buf_deinit(&out);
	}
	conn_unref(c);
}

static void imap_login_lookup(struct conn *c, void *arg)
{
	struct imap_login *l = arg;
	const struct imap_login_backend *lb = l->lb;
	conn_ref(c);
	if (l->lookup == SASL_STEP_CHECK_PASSWORD)
		lb->backend->authenticate(lb->backend_ctx, sasl_server_user(l->sasl),
					  sasl_server_password(l->sasl),
					  imap_login_sasl_password_cb, l);
	else
		lb->backend->scram_keys(lb->backend_ctx, sasl_server_user(l->sasl),
					imap_login_scram_cb, l);
}

static void imap_login_next(struct imap_login *l, enum sasl_step step, buf *out)
{
	switch (step) {
	case SASL_STEP_CHALLENGE:
		imap_login_challenge(l, out);
		return;
	case SASL_STEP_CHECK_PASSWORD:
	case SASL_STEP_NEED_SCRAM:
		l->lookup = step;
		conn_after_penalty(l->c, imap_login_lookup, l);
		return;
	case SASL_STEP_DONE:
		if (out->len > 0) {
			l->final = 1; /* SCRAM's server-final, then an empty line */
			imap_login_challenge(l, out);
			return;
		}
		imap_login_finish(l, MAIL_OK,
				  l->canon != NULL ? l->canon : sasl_server_user(l->sasl), NULL);
		return;
	case SASL_STEP_FAIL:
		if (sasl_server_error_is_syntax(l->sasl))
			imap_login_finish(l, MAIL_ERR_PARAMS, NULL, "Invalid SASL response");
		else
			imap_login_finish(l, MAIL_ERR_PERM, NULL, NULL);
		return;
	}
}

void imap_login_line(imap_login *l, const char *line, size_t len)
{
	l->reading = 0;
	if (len == 1 && line[0] == '*') {
		imap_login_finish(l, MAIL_ERR_PARAMS, NULL, "Authentication cancelled");
		return;
	}
	if (l->final) {
		imap_login_finish(l, len == 0 ? MAIL_OK : MAIL_ERR_PERM, l->canon, NULL);
		return;
	}
	buf in, out;
	buf_init(&in);
	buf_init(&out);
	if (sasl_b64_decode(line, len, SASL_MAX_RESPONSE, &in) < 0)
		imap_login_finish(l, MAIL_ERR_PARAMS, NULL, "Invalid base64 in the SASL response");
	else
		imap_login_next(l, sasl_server_step(l->sasl, in.data, in.len, 1, &out), &out);
	OPENSSL_cleanse(in.data, in.len);
	buf_deinit(&in);
	buf_deinit(&out);
}

void imap_login_sasl(imap_login *l, enum sasl_mech mech, const char *ir)
{
	buf in, out;
	buf_init(&in);
	buf_init(&out);
	if (ir != NULL && sasl_b64_decode(ir, strlen(ir), SASL_MAX_RESPONSE, &in) < 0) {
		imap_login_finish(l, MAIL_ERR_PARAMS, NULL, "Invalid base64 in the initial response");
	} else {
		sasl_server_free(&l->sasl);
		l->sasl = sasl_server_new(mech, l->lb->sasl_secret, l->lb->sasl_secret_len);
		imap_login_set_canon(l, NULL);
		l->final = 0;
		imap_login_next(l, sasl_server_step(l->sasl, in.data, in.len, ir != NULL, &out),
				&out);
	}
	OPENSSL_cleanse(in.data, in.len);
	buf_deinit(&in);
	buf_deinit(&out);
}
