/* pop3-cmd-auth.c: CAPA, STLS, USER, PASS, AUTH and QUIT of the
 * AUTHORIZATION state, and opening the maildrop after a login. */
#include "pop3-server-private.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mail-error.h"
#include "maildrop-lock.h"
#include "sasl.h"
#include "xalloc.h"

/* RFC 2449 5. USER, SASL and STLS only where they can be used now: before
 * login, and USER/SASL only where credentials are allowed (over TLS, or
 * the loopback development mode), so a client that reads CAPA does STLS
 * first. */
void pop3_cmd_capa(struct pop3_session *s, const struct pop3_command *cmd)
{
	(void)cmd;
	const struct pop3_settings *set = &s->server->set;
	int authorization = s->state == POP3_STATE_AUTHORIZATION;
	conn_printf(&s->conn, "+OK Capability list follows\r\n");
	for (size_t i = 0; i < pop3_commands_count; i++) {
		const struct pop3_command_def *def = &pop3_commands[i];
		if (def->capa == NULL)
			continue;
		if ((def->flags & POP3_CMD_CREDENTIALS) &&
		    (!authorization || !conn_credentials_allowed(&s->conn)))
			continue;
		if (def->func == pop3_cmd_stls &&
		    (!authorization || set->conn.access.tls == NULL || s->conn.tls != NULL))
			continue;
		if (def->func == pop3_cmd_auth)
			conn_printf(&s->conn, "SASL %s\r\n", imap_login_mechs(&s->server->login));
		else
			conn_printf(&s->conn, "%s\r\n", def->capa);
	}
	conn_printf(&s->conn, "RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n");
	if (set->implementation != NULL)
		conn_printf(&s->conn, "IMPLEMENTATION %s\r\n", set->implementation);
	conn_printf(&s->conn, ".\r\n");
	pop3_cmd_finish(s);
}

/* RFC 2595 4. The +OK goes out in plaintext; whatever the client sent
 * after STLS is dropped (a man in the middle could have put it there);
 * the session stays in AUTHORIZATION and CAPA now offers USER and SASL. */
void pop3_cmd_stls(struct pop3_session *s, const struct pop3_command *cmd)
{
	(void)cmd;
	const char *refusal = conn_starttls_refusal(&s->conn);
	if (refusal != NULL) {
		pop3_cmd_err(s, NULL, refusal);
		return;
	}
	pop3_cmd_ok(s, "Begin TLS negotiation now");
	conn_start_tls(&s->conn);
}

void pop3_cmd_quit_authorization(struct pop3_session *s, const struct pop3_command *cmd)
{
	(void)cmd;
	pop3_cmd_ok(s, "Logging out");
	conn_close_after_write(&s->conn, "quit");
}

/* ---- opening the maildrop --------------------------------------------- */

void pop3_session_maildrop_clear(struct pop3_session *s)
{
	free(s->msgs);
	s->msgs = NULL;
	s->n_msgs = 0;
}

static int pop3_msg_uid_cmp(const void *a, const void *b)
{
	const struct pop3_msg *x = a, *y = b;
	return x->uid < y->uid ? -1 : x->uid > y->uid ? 1 : 0;
}

static int pop3_msg_info_seen(const struct imap_msg_info *m)
{
	for (size_t i = 0; i < m->n_flags; i++) {
		if (strcmp(m->flags[i], "\\Seen") == 0)
			return 1;
	}
	return 0;
}

static void pop3_select_cb(int status, const struct imap_mailbox_info *box,
			   const struct imap_msg_info *msgs, size_t n_msgs, void *arg)
{
	struct pop3_session *s = arg;
	if (conn_is_closed(&s->conn)) {
		conn_unref(&s->conn);
		return;
	}
	if (status != MAIL_OK) {
		log_event(LOG_WARN, POP3_LOG_SVC, "event=maildrop_error sid=%s error=%s",
			  s->conn.id, mail_error_info(status)->name);
		free(s->user);
		s->user = NULL;
		pop3_session_unlock(s);
		pop3_cmd_err(s, "SYS/TEMP", "Unable to open the maildrop, try again later");
	} else {
		uint64_t octets = 0;
		s->msgs = xcalloc(n_msgs > 0 ? n_msgs : 1, sizeof(*s->msgs));
		s->n_msgs = n_msgs;
		for (size_t i = 0; i < n_msgs; i++) {
			s->msgs[i].uid = msgs[i].uid;
			s->msgs[i].size = msgs[i].size;
			s->msgs[i].seen = (uint8_t)pop3_msg_info_seen(&msgs[i]);
			octets += msgs[i].size;
		}
		qsort(s->msgs, s->n_msgs, sizeof(*s->msgs), pop3_msg_uid_cmp);
		s->uidvalidity = box->uidvalidity;
		s->state = POP3_STATE_TRANSACTION;
		conn_authenticated(&s->conn);
		log_event(LOG_INFO, POP3_LOG_SVC, "event=maildrop sid=%s messages=%zu octets=%llu",
			  s->conn.id, s->n_msgs, (unsigned long long)octets);
		pop3_cmd_ok(s, "Logged in, maildrop has %zu messages (%llu octets)", s->n_msgs,
			    (unsigned long long)octets);
	}
	conn_process(&s->conn);
	conn_unref(&s->conn);
}

static void pop3_open_maildrop(struct pop3_session *s)
{
	s->server->backend->select(s->server->backend_ctx, s->user, POP3_MAILBOX, pop3_select_cb,
				   s);
}

/* The maildrop lock (RFC 1939 8), taken before the maildrop is read. */
static void pop3_lock_cb(int status, void *arg)
{
	struct pop3_session *s = arg;
	if (status == MAIL_OK)   /* released at the end, closed or not */
		s->lock_user = xstrdup(s->user);
	if (conn_is_closed(&s->conn)) {
		conn_unref(&s->conn);
		return;
	}
	if (status == MAIL_ERR_EXISTS) {
		log_event(LOG_INFO, POP3_LOG_SVC, "event=maildrop_in_use sid=%s", s->conn.id);
		free(s->user);
		s->user = NULL;
		pop3_cmd_err(s, "IN-USE", "Maildrop is locked by another POP3 session");
		conn_process(&s->conn);
		conn_unref(&s->conn);
		return;
	}
	/* MAIL_ERR_UNAVAILABLE: logged by the lock; serve without it */
	pop3_open_maildrop(s);
}

/* The outcome of PASS or AUTH (imap-login.h). */
static void pop3_login_done(struct conn *c, int status, const char *user, const char *text)
{
	struct pop3_session *s = (struct pop3_session *)c;
	imap_login_free(&s->login);
	if (status == MAIL_OK) {
		free(s->user);
		s->user = xstrdup(user);
		conn_ref(c);
		if (s->server->set.locks != NULL)
			maildrop_lock_acquire(s->server->set.locks, s->user, c->id, pop3_lock_cb, s);
		else
			pop3_open_maildrop(s);
		return;
	}
	free(s->user);
	s->user = NULL;
	if (status == MAIL_ERR_PARAMS) {
		pop3_cmd_bad(s, text);
	} else if (status == MAIL_ERR_PERM) {
		int last = conn_auth_failed(c);
		pop3_cmd_err(s, "AUTH", "Authentication failed");
		if (last)
			conn_close_after_write(c, "auth-failures");
	} else {
		pop3_cmd_err(s, "SYS/TEMP", "Temporary authentication failure");
	}
	conn_process(c);
}

/* ---- USER / PASS (RFC 1939 7) ---------------------------------------- */

void pop3_cmd_user(struct pop3_session *s, const struct pop3_command *cmd)
{
	free(s->user);
	s->user = xstrdup(cmd->args[0]);
	pop3_cmd_ok(s, "Send PASS");
}

void pop3_cmd_pass(struct pop3_session *s, const struct pop3_command *cmd)
{
	if (s->user == NULL) {
		pop3_cmd_bad(s, "No USER given");
		return;
	}
	s->login = imap_login_create(&s->conn, &s->server->login, pop3_login_done);
	imap_login_password(s->login, s->user, cmd->rest);
}

/* ---- AUTH (RFC 5034) ------------------------------------------------- */

void pop3_cmd_auth(struct pop3_session *s, const struct pop3_command *cmd)
{
	enum sasl_mech mech;
	if (cmd->n_args == 0) {
		/* the mechanism list some clients ask for this way (a form from
		 * before RFC 5034; CAPA's SASL line is the standard one) */
		char mechs[64], *save = NULL;
		snprintf(mechs, sizeof(mechs), "%s", imap_login_mechs(&s->server->login));
		conn_printf(&s->conn, "+OK\r\n");
		for (char *m = strtok_r(mechs, " ", &save); m != NULL; m = strtok_r(NULL, " ", &save))
			conn_printf(&s->conn, "%s\r\n", m);
		conn_printf(&s->conn, ".\r\n");
		pop3_cmd_finish(s);
		return;
	}
	if (sasl_mech_parse(cmd->args[0], &mech) < 0 ||
	    !imap_login_mech_offered(&s->server->login, mech)) {
		pop3_cmd_err(s, NULL, "Unsupported authentication mechanism");
		return;
	}
	free(s->user);
	s->user = NULL;
	s->login = imap_login_create(&s->conn, &s->server->login, pop3_login_done);
	imap_login_sasl(s->login, mech, cmd->n_args == 2 ? cmd->args[1] : NULL);
}
