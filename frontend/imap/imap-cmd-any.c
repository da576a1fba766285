/* imap-cmd-any.c: CAPABILITY, NOOP, LOGOUT, STARTTLS, LOGIN and AUTHENTICATE. */
#include "imap-server-private.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mail-error.h"
#include "sasl.h"
#include "xalloc.h"

void imap_cmd_capability(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	(void)args;
	if (n_args != 0) {
		imap_cmd_done(s, "BAD", NULL, "CAPABILITY takes no arguments");
		return;
	}
	char *cap = imap_session_capability(s);
	conn_printf(&s->conn, "* CAPABILITY %s\r\n", cap);
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
	conn_printf(&s->conn, "* BYE Logging out\r\n");
	imap_cmd_done(s, "OK", NULL, "Logout completed");
	conn_close_after_write(&s->conn, "logout");
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
	const char *refusal = conn_starttls_refusal(&s->conn);
	if (refusal != NULL) {
		imap_cmd_done(s, "BAD", NULL, refusal);
		return;
	}
	imap_cmd_done(s, "OK", NULL, "Begin TLS negotiation now");
	conn_start_tls(&s->conn);
}

/* The outcome of LOGIN or AUTHENTICATE (imap-login.h). */
static void imap_login_done(struct conn *c, int status, const char *user, const char *text)
{
	struct imap_session *s = (struct imap_session *)c;
	imap_login_free(&s->login);
	if (status == MAIL_OK) {
		s->user = xstrdup(user);
		s->state = IMAP_STATE_AUTH;
		imap_session_authenticated(s);
		char *cap = imap_session_capability(s);
		char *code = xasprintf("CAPABILITY %s", cap);
		imap_cmd_done(s, "OK", code, "Logged in");
		free(code);
		free(cap);
	} else if (status == MAIL_ERR_PARAMS) {
		imap_cmd_done(s, "BAD", NULL, text);
	} else if (status == MAIL_ERR_PERM) {
		int last = conn_auth_failed(&s->conn);
		imap_cmd_done(s, "NO", "AUTHENTICATIONFAILED", "Authentication failed");
		if (last)
			imap_session_bye(s, "Too many authentication failures", "auth-failures");
	} else {
		imap_cmd_done(s, "NO", "UNAVAILABLE", "Temporary authentication failure");
	}
	conn_process(&s->conn);
}

void imap_cmd_login(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	const char *user, *password;

	if (n_args != 2 || !imap_arg_get_astring(&args[0], &user) ||
	    !imap_arg_get_astring(&args[1], &password)) {
		imap_cmd_done(s, "BAD", NULL, "LOGIN needs a user name and a password");
		return;
	}
	if (!conn_credentials_allowed(&s->conn)) {
		imap_cmd_done(s, "NO", "PRIVACYREQUIRED",
			      "Plaintext authentication disallowed on non-secure connection");
		return;
	}
	if (strlen(user) != args[0].len || strlen(password) != args[1].len) {
		imap_cmd_done(s, "NO", "AUTHENTICATIONFAILED", "Authentication failed");
		return;
	}
	s->login = imap_login_create(&s->conn, &s->server->login, imap_login_done);
	imap_login_password(s->login, user, password);
}

/* RFC 3501 6.2.2, SASL-IR RFC 4959: the exchange is imap-login.h's. */
void imap_cmd_authenticate(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	const char *name, *ir = NULL;
	enum sasl_mech mech;
	if (n_args < 1 || n_args > 2 || !imap_arg_get_atom(&args[0], &name) ||
	    (n_args == 2 && !imap_arg_get_atom(&args[1], &ir))) {
		imap_cmd_done(s, "BAD", NULL, "AUTHENTICATE needs a mechanism");
		return;
	}
	if (sasl_mech_parse(name, &mech) < 0 || !imap_login_mech_offered(&s->server->login, mech)) {
		imap_cmd_done(s, "NO", NULL, "Unsupported authentication mechanism");
		return;
	}
	if (!conn_credentials_allowed(&s->conn)) {
		imap_cmd_done(s, "NO", "PRIVACYREQUIRED",
			      "Plaintext authentication disallowed on non-secure connection");
		return;
	}
	s->login = imap_login_create(&s->conn, &s->server->login, imap_login_done);
	imap_login_sasl(s->login, mech, ir);
}
