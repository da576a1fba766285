/* imap-cmd-any.c: CAPABILITY, NOOP, LOGOUT, STARTTLS and LOGIN. */
#include "imap-server-private.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mail-error.h"
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

static void imap_cmd_login_cb(int status, const char *user, void *arg)
{
	struct imap_session *s = arg;
	char quoted[128];

	if (imap_session_is_closed(s)) {
		imap_session_unref(s);
		return;
	}
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
		imap_cmd_done(s, "NO", "AUTHENTICATIONFAILED", "Authentication failed");
		if (s->auth_failures >= s->server->set.max_auth_failures)
			imap_session_bye(s, "Too many authentication failures", "auth-failures");
	} else {
		log_event(LOG_WARN, "imap", "event=login_error sid=%s error=%s", s->id,
			  mail_error_info(status)->name);
		imap_cmd_fail(s, status);
	}
	imap_session_resume(s);
	imap_session_unref(s);
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
	imap_session_ref(s);
	s->server->backend->authenticate(s->server->backend_ctx, user, password,
					 imap_cmd_login_cb, s);
}
