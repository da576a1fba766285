/* imap-cmd-any.c: CAPABILITY, NOOP, LOGOUT, STARTTLS, LOGIN, AUTHENTICATE,
 * ID (RFC 2971), ENABLE (RFC 5161) and COMPRESS (RFC 4978). */
#include "imap-server-private.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
	/* NOOP is the client's poll (RFC 3501 6.1.2): it asks the store,
	 * whatever the watch has told so far (the watch tells a busy
	 * mailbox's changes up to WATCH_REPOLL_MS late) */
	imap_session_mailbox_touched(s);
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

/* ---- ID (RFC 2971) --------------------------------------------------- */

/* RFC 2971 3.3: at most 30 pairs, fields of 30 octets, values of 1024. */
#define IMAP_ID_PAIRS_MAX 30u
#define IMAP_ID_FIELD_MAX 30u
#define IMAP_ID_VALUE_MAX 1024u
/* Logged per value (the rest is cut). */
#define IMAP_ID_LOG_VALUE_MAX 64u

/* A log-safe copy of s[0..len): printable ASCII other than '"' and '\',
 * each other byte as '?', at most max bytes. */
static void imap_id_log_value(buf *b, const char *s, size_t len, size_t max)
{
	for (size_t i = 0; i < len && i < max; i++) {
		char c = s[i];
		if (c < 0x20 || c > 0x7e || c == '"' || c == '\\')
			c = '?';
		buf_append(b, &c, 1);
	}
}

void imap_cmd_id(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	if (n_args != 1 || (args[0].type != IMAP_ARG_NIL && args[0].type != IMAP_ARG_LIST)) {
		imap_cmd_done(s, "BAD", NULL, "ID needs NIL or a list of field-value pairs");
		return;
	}
	buf log;
	buf_init(&log);
	if (args[0].type == IMAP_ARG_LIST) {
		const struct imap_arg_list *l = args[0].list;
		if (l->count % 2 != 0 || l->count / 2 > IMAP_ID_PAIRS_MAX) {
			buf_deinit(&log);
			imap_cmd_done(s, "BAD", NULL, "Invalid ID list");
			return;
		}
		for (size_t i = 0; i < l->count; i += 2) {
			const struct imap_arg *f = &l->args[i], *v = &l->args[i + 1];
			const char *field, *value = NULL;
			if (!imap_arg_get_astring(f, &field) || f->len == 0 ||
			    f->len > IMAP_ID_FIELD_MAX ||
			    (v->type != IMAP_ARG_NIL && !imap_arg_get_astring(v, &value)) ||
			    (value != NULL && v->len > IMAP_ID_VALUE_MAX)) {
				buf_deinit(&log);
				imap_cmd_done(s, "BAD", NULL, "Invalid ID field or value");
				return;
			}
			buf_append(&log, " id_", 4);
			for (size_t k = 0; k < f->len; k++) {
				char c = field[k];
				c = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
				if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
					c = '_';
				buf_append(&log, &c, 1);
			}
			buf_append(&log, "=\"", 2);
			if (value != NULL)
				imap_id_log_value(&log, value, v->len, IMAP_ID_LOG_VALUE_MAX);
			buf_append(&log, "\"", 1);
		}
	}
	buf_append(&log, "", 1);
	log_event(LOG_INFO, "imap", "event=client_id sid=%s%s", s->conn.id, (const char *)log.data);
	buf_deinit(&log);
	conn_printf(&s->conn, "* ID (\"name\" \"%s\" \"version\" \"%s\")\r\n", IMAP_SERVER_NAME,
		    IMAP_SERVER_VERSION);
	imap_cmd_done(s, "OK", NULL, "ID completed");
}

/* ---- ENABLE (RFC 5161) ----------------------------------------------- */

void imap_cmd_enable(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	if (n_args == 0) {
		imap_cmd_done(s, "BAD", NULL, "ENABLE needs capability names");
		return;
	}
	for (size_t i = 0; i < n_args; i++) {
		if (!imap_arg_get_atom(&args[i], NULL)) {
			imap_cmd_done(s, "BAD", NULL, "ENABLE takes capability names");
			return;
		}
	}
	buf reply;
	buf_init(&reply);
	buf_append_str(&reply, "* ENABLED");
	for (size_t i = 0; i < n_args; i++) {
		/* names not advertised, or not ENABLE-able, are ignored */
		const struct imap_capability_def *cap = imap_capability_find(args[i].str);
		if (cap == NULL || cap->enable == 0 || (cap->enable & ~s->enabled) == 0)
			continue;
		s->enabled |= cap->enable;
		buf_printf(&reply, " %s", cap->name);
	}
	buf_append(&reply, "\r\n", 2);
	conn_append(&s->conn, reply.data, reply.len);
	buf_deinit(&reply);
	if (imap_session_utf8_names(s)) {
		/* names may now come as UTF-8 atoms too */
		struct imap_parser_limits limits = s->server->set.limits_auth;
		limits.atom_utf8 = 1;
		imap_parser_set_limits(s->parser, &limits);
	}
	log_event(LOG_INFO, "imap", "event=enable sid=%s enabled=0x%x", s->conn.id, s->enabled);
	imap_cmd_done(s, "OK", NULL, "Enabled");
}

/* ---- COMPRESS (RFC 4978) --------------------------------------------- */

/* After the tagged OK, both directions are deflated (conn.h): the OK is
 * the last reply sent uncompressed, and what the client sent after the
 * command is read as compressed data. Only after authentication (the
 * command table), so that nothing secret shares a compression context
 * with what an attacker controls before login. */
void imap_cmd_compress(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	const char *alg;
	if (n_args != 1 || !imap_arg_get_atom(&args[0], &alg) || strcasecmp(alg, "DEFLATE") != 0) {
		imap_cmd_done(s, "BAD", NULL, "COMPRESS supports DEFLATE only");
		return;
	}
	if (conn_compress_active(&s->conn)) {
		imap_cmd_done(s, "NO", "COMPRESSIONACTIVE", "DEFLATE is active already");
		return;
	}
	const char *error;
	imap_cmd_done(s, "OK", NULL, "DEFLATE active");
	if (conn_start_compress(&s->conn, &error) < 0) {
		/* the OK is out: the client compresses now, we cannot follow */
		log_event(LOG_WARN, "imap", "event=compress_failed sid=%s error=\"%s\"", s->conn.id,
			  error);
		conn_close(&s->conn, "compress-failed");
	}
}
