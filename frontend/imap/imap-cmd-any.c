/* imap-cmd-any.c: CAPABILITY, NOOP, LOGOUT, STARTTLS, LOGIN and AUTHENTICATE. */
#include "imap-server-private.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "log.h"
#include "mail-error.h"
#include "sasl.h"
#include "tls.h"
#include "xalloc.h"

void imap_cmd_capability(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	(void)args;
	if (n_args != 0) {
		imap_cmd_done(s, "BAD", NULL, "CAPABILITY takes no arguments");
		return;
	}
	char *cap = imap_session_capability(s);
	imap_session_printf(s, "* CAPABILITY %s\r\n", cap);
	free(cap);
	imap_cmd_done(s, "OK", NULL, "Capability completed");
}

void imap_cmd_noop(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	(void)args;
	if (n_args != 0) {
		imap_cmd_done(s, "BAD", NULL, "NOOP takes no arguments");
		return;
	}
	imap_cmd_done(s, "OK", NULL, "NOOP completed");
}

void imap_cmd_logout(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	(void)args;
	if (n_args != 0) {
		imap_cmd_done(s, "BAD", NULL, "LOGOUT takes no arguments");
		return;
	}
	imap_session_printf(s, "* BYE Logging out\r\n");
	imap_cmd_done(s, "OK", NULL, "Logout completed");
	imap_session_close_after_write(s, "logout");
}

/* RFC 3501 6.2.1. The OK goes out in plaintext; whatever the client sent
 * after the command is dropped (a man in the middle could have put it
 * there), and the TLS layer takes over. The session is still not
 * authenticated; a CAPABILITY now answers without STARTTLS and
 * LOGINDISABLED. */
void imap_cmd_starttls(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	(void)args;
	if (n_args != 0) {
		imap_cmd_done(s, "BAD", NULL, "STARTTLS takes no arguments");
		return;
	}
	if (s->server->set.tls == NULL) {
		imap_cmd_done(s, "BAD", NULL, "TLS is not available");
		return;
	}
	if (s->tls != NULL) {
		imap_cmd_done(s, "BAD", NULL, "TLS is already active");
		return;
	}
	imap_cmd_done(s, "OK", NULL, "Begin TLS negotiation now");
	imap_session_flush(s);
	s->tls = tls_conn_new_server(s->server->set.tls);
	s->discard_input = 1;
}

/* The outcome of LOGIN or AUTHENTICATE: MAIL_OK (user: canonical),
 * MAIL_ERR_PERM (bad credentials), else a temporary failure. */
static void imap_login_result(struct imap_session *s, int status, const char *user)
{
	char quoted[128];
	sasl_server_free(&s->sasl);
	s->auth_reading = 0;
	s->auth_final = 0;
	if (status == MAIL_OK) {
		s->user = xstrdup(user);
		s->state = IMAP_STATE_AUTH;
		imap_parser_set_limits(s->parser, &s->server->set.limits_auth);
		imap_session_authenticated(s);
		log_event(LOG_INFO, "imap", "event=login sid=%s user=%s", s->id,
			  log_quote(quoted, sizeof(quoted), user, strlen(user)));
		char *cap = imap_session_capability(s);
		char *code = xasprintf("CAPABILITY %s", cap);
		imap_cmd_done(s, "OK", code, "Logged in");
		free(code);
		free(cap);
	} else if (status == MAIL_ERR_PERM) {
		s->auth_failures++;
		log_event(LOG_INFO, "imap", "event=login_failed sid=%s peer=%s failures=%u", s->id,
			  s->peer, s->auth_failures);
		if (s->server->set.auth_failed != NULL)
			s->server->set.auth_failed(s->server->set.guard_arg, s->peer_ip);
		imap_cmd_done(s, "NO", "AUTHENTICATIONFAILED", "Authentication failed");
		if (s->auth_failures >= s->server->set.max_auth_failures)
			imap_session_bye(s, "Too many authentication failures", "auth-failures");
	} else {
		log_event(LOG_WARN, "imap", "event=login_error sid=%s error=%s", s->id,
			  mail_error_info(status)->name);
		imap_cmd_done(s, "NO", "UNAVAILABLE", "Temporary authentication failure");
	}
	imap_session_resume(s);
}

static void imap_cmd_login_cb(int status, const char *user, void *arg)
{
	struct imap_session *s = arg;
	if (!imap_session_is_closed(s))
		imap_login_result(s, status, user);
	imap_session_unref(s);
}

static void imap_login_check(struct imap_session *s)
{
	char *user = s->login_user, *password = s->login_password;
	s->login_user = s->login_password = NULL;
	imap_session_ref(s);
	s->server->backend->authenticate(s->server->backend_ctx, user, password,
					 imap_cmd_login_cb, s);
	OPENSSL_cleanse(password, strlen(password));
	free(password);
	free(user);
}

void imap_cmd_login(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	const char *user, *password;

	if (n_args != 2 || !imap_arg_get_astring(&args[0], &user) ||
	    !imap_arg_get_astring(&args[1], &password)) {
		imap_cmd_done(s, "BAD", NULL, "LOGIN needs a user name and a password");
		return;
	}
	if (!imap_session_login_allowed(s)) {
		imap_cmd_done(s, "NO", "PRIVACYREQUIRED",
			      "Plaintext authentication disallowed on non-secure connection");
		return;
	}
	if (strlen(user) != args[0].len || strlen(password) != args[1].len) {
		imap_cmd_done(s, "NO", "AUTHENTICATIONFAILED", "Authentication failed");
		return;
	}
	s->login_user = xstrdup(user);
	s->login_password = xstrdup(password);
	imap_session_after_penalty(s, imap_login_check);
}

/* ---- AUTHENTICATE (RFC 3501 6.2.2, SASL-IR RFC 4959) ------------------ */

static void imap_auth_next(struct imap_session *s, enum sasl_step step, buf *out);

/* "+ <base64>" and wait for the client's line. */
static void imap_auth_challenge(struct imap_session *s, const buf *out)
{
	buf b64;
	buf_init(&b64);
	sasl_b64_encode(out->data, out->len, &b64);
	imap_session_append(s, "+ ", 2);
	imap_session_append(s, b64.data, b64.len);
	imap_session_append(s, "\r\n", 2);
	buf_deinit(&b64);
	s->auth_reading = 1;
	imap_session_flush(s);
}

static void imap_auth_password_cb(int status, const char *user, void *arg)
{
	struct imap_session *s = arg;
	if (!imap_session_is_closed(s)) {
		if (status == MAIL_OK || status == MAIL_ERR_PERM) {
			free(s->auth_canon);
			s->auth_canon = user != NULL ? xstrdup(user) : NULL;
			buf out;
			buf_init(&out);
			imap_auth_next(s, sasl_server_checked(s->sasl, status == MAIL_OK), &out);
			buf_deinit(&out);
		} else {
			imap_login_result(s, status, NULL);
		}
	}
	imap_session_unref(s);
}

static void imap_auth_scram_cb(int status, const char *user, const struct sasl_scram_keys *keys,
			       void *arg)
{
	struct imap_session *s = arg;
	if (!imap_session_is_closed(s)) {
		buf out;
		buf_init(&out);
		if (status == MAIL_OK && keys != NULL) {
			free(s->auth_canon);
			s->auth_canon = xstrdup(user);
			imap_auth_next(s, sasl_server_scram_keys(s->sasl, keys, &out), &out);
		} else if (status == MAIL_ERR_PERM) {
			imap_auth_next(s, sasl_server_scram_unknown(s->sasl, &out), &out);
		} else {
			imap_login_result(s, status, NULL);
		}
		buf_deinit(&out);
	}
	imap_session_unref(s);
}

static void imap_auth_lookup(struct imap_session *s)
{
	const struct imap_server *srv = s->server;
	imap_session_ref(s);
	if (sasl_server_password(s->sasl)[0] != '\0' || srv->backend->scram_keys == NULL)
		srv->backend->authenticate(srv->backend_ctx, sasl_server_user(s->sasl),
					   sasl_server_password(s->sasl), imap_auth_password_cb, s);
	else
		srv->backend->scram_keys(srv->backend_ctx, sasl_server_user(s->sasl),
					 imap_auth_scram_cb, s);
}

static void imap_auth_next(struct imap_session *s, enum sasl_step step, buf *out)
{
	switch (step) {
	case SASL_STEP_CHALLENGE:
		imap_auth_challenge(s, out);
		return;
	case SASL_STEP_CHECK_PASSWORD:
	case SASL_STEP_NEED_SCRAM:
		imap_session_after_penalty(s, imap_auth_lookup);
		return;
	case SASL_STEP_DONE:
		if (out->len > 0) {
			s->auth_final = 1; /* SCRAM's server-final, then an empty line */
			imap_auth_challenge(s, out);
			return;
		}
		imap_login_result(s, MAIL_OK, s->auth_canon != NULL ? s->auth_canon
								    : sasl_server_user(s->sasl));
		return;
	case SASL_STEP_FAIL:
		if (sasl_server_error_is_syntax(s->sasl)) {
			sasl_server_free(&s->sasl);
			imap_cmd_done(s, "BAD", NULL, "Invalid SASL response");
			imap_session_resume(s);
		} else {
			imap_login_result(s, MAIL_ERR_PERM, NULL);
		}
		return;
	}
}

void imap_auth_line(struct imap_session *s, const char *line, size_t len)
{
	if (len == 1 && line[0] == '*') {
		sasl_server_free(&s->sasl);
		imap_cmd_done(s, "BAD", NULL, "Authentication cancelled");
		imap_session_resume(s);
		return;
	}
	if (s->auth_final) {
		imap_login_result(s, len == 0 ? MAIL_OK : MAIL_ERR_PERM, s->auth_canon);
		return;
	}
	buf in, out;
	buf_init(&in);
	buf_init(&out);
	if (sasl_b64_decode(line, len, SASL_MAX_RESPONSE, &in) < 0) {
		sasl_server_free(&s->sasl);
		imap_cmd_done(s, "BAD", NULL, "Invalid base64 in the SASL response");
		imap_session_resume(s);
	} else {
		imap_auth_next(s, sasl_server_step(s->sasl, in.data, in.len, 1, &out), &out);
	}
	OPENSSL_cleanse(in.data, in.len);
	buf_deinit(&in);
	buf_deinit(&out);
}

void imap_cmd_authenticate(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	const char *name, *ir = NULL;
	enum sasl_mech mech;
	if (n_args < 1 || n_args > 2 || !imap_arg_get_atom(&args[0], &name) ||
	    (n_args == 2 && !imap_arg_get_atom(&args[1], &ir))) {
		imap_cmd_done(s, "BAD", NULL, "AUTHENTICATE needs a mechanism");
		return;
	}
	if (sasl_mech_parse(name, &mech) < 0 ||
	    (mech == SASL_MECH_SCRAM_SHA_256 && s->server->backend->scram_keys == NULL)) {
		imap_cmd_done(s, "NO", NULL, "Unsupported authentication mechanism");
		return;
	}
	if (!imap_session_login_allowed(s)) {
		imap_cmd_done(s, "NO", "PRIVACYREQUIRED",
			      "Plaintext authentication disallowed on non-secure connection");
		return;
	}
	buf in, out;
	buf_init(&in);
	buf_init(&out);
	if (ir != NULL && sasl_b64_decode(ir, strlen(ir), SASL_MAX_RESPONSE, &in) < 0) {
		imap_cmd_done(s, "BAD", NULL, "Invalid base64 in the initial response");
	} else {
		s->sasl = sasl_server_new(mech, s->server->set.sasl_secret,
					  s->server->set.sasl_secret_len);
		free(s->auth_canon);
		s->auth_canon = NULL;
		imap_auth_next(s, sasl_server_step(s->sasl, in.data, in.len, ir != NULL, &out),
			       &out);
	}
	buf_deinit(&in);
	buf_deinit(&out);
}
