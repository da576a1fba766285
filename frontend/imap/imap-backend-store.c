/* imap-backend-store.c: struct imap_backend over the auth pool and the
 * store client (imap-backend-store.h).
 *
 * Each call copies its callback into a small heap context, converts the
 * protobuf response into the engine's plain structs, and frees the context
 * after the callback. Contexts never point back at the backend object, so
 * calls still pending after it is destroyed complete safely.
 */
#include "imap-backend-store.h"
#include "auth-pool.h"

#include <stdlib.h>
#include <string.h>

#include "mail-error.h"
#include "util.h"
#include "sasl.h"
#include "xalloc.h"

#include <openssl/crypto.h>

struct imap_store_backend {
	auth_pool *auth;
	store_client *sc;
};

/* ---- authenticate (the auth pool: threads of its own, a cache) --------- */

struct imap_store_auth {
	imap_backend_auth_cb *cb;
	void *arg;
};

static void imap_store_auth_cb(int status, const char *user, const struct sasl_scram_keys *keys,
			       void *arg)
{
	(void)keys;
	struct imap_store_auth *a = arg;
	a->cb(status, user, a->arg);
	free(a);
}

static void imap_store_authenticate(void *ctx, const char *user, const char *password,
				    imap_backend_auth_cb *cb, void *arg)
{
	struct imap_store_backend *b = ctx;
	struct imap_store_auth *a = xcalloc(1, sizeof(*a));
	a->cb = cb;
	a->arg = arg;
	auth_pool_password(b->auth, user, password, imap_store_auth_cb, a);
}

static void imap_store_scram_keys(void *ctx, const char *user, imap_backend_scram_cb *cb,
				  void *arg)
{
	struct imap_store_backend *b = ctx;
	auth_pool_scram(b->auth, user, cb, arg);
}

/* ---- store calls ----------------------------------------------------- */

struct imap_store_call {
	void *cb;
	void *arg;
};

static struct imap_store_call *imap_store_call_new(void *cb, void *arg)
{
	struct imap_store_call *c = xcalloc(1, sizeof(*c));
	c->cb = cb;
	c->arg = arg;
	return c;
}

static void imap_store_msg_info(const Store__MessageInfo *m, struct imap_msg_info *info)
{
	memset(info, 0, sizeof(*info));
	if (m == NULL)
		return;
	info->uid = m->uid;
	info->size = m->size;
	info->internal_date_ms = m->internal_date;
	info->flags = (const char *const *)m->flags;
	info->n_flags = m->n_flags;
}

static struct imap_msg_info *imap_store_msg_infos(Store__MessageInfo **msgs, size_t n)
{
	struct imap_msg_info *infos = xcalloc(n + 1, sizeof(*infos));
	for (size_t i = 0; i < n; i++)
		imap_store_msg_info(msgs[i], &infos[i]);
	return infos;
}

static void imap_store_list_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	struct imap_store_call *c = arg;
	imap_backend_list_cb *cb = c->cb;
	if (status != MAIL_OK) {
		cb(status, NULL, 0, c->arg);
	} else {
		const Store__ListResponse *r = (const Store__ListResponse *)resp;
		struct imap_mailbox_info *boxes = xcalloc(r->n_mailboxes + 1, sizeof(*boxes));
		size_t n = 0;
		for (size_t i = 0; i < r->n_mailboxes; i++) {
			const Store__MailboxInfo *m = r->mailboxes[i];
			if (m == NULL || m->name == NULL)
				continue;
			boxes[n].name = m->name[0] == '\0' ? "INBOX" : m->name;
			boxes[n].uidvalidity = m->uidvalidity;
			boxes[n].uidnext = m->uidnext;
			boxes[n].exists = m->exists;
			n++;
		}
		cb(MAIL_OK, boxes, n, c->arg);
		free(boxes);
	}
	free(c);
}

static void imap_store_list(void *ctx, const char *user, imap_backend_list_cb *cb, void *arg)
{
	struct imap_store_backend *b = ctx;
	Store__ListRequest req = STORE__LIST_REQUEST__INIT;
	req.user = (char *)user;
	store_client_list(b->sc, &req, imap_store_list_cb, imap_store_call_new(cb, arg));
}

static void imap_store_select_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	struct imap_store_call *c = arg;
	imap_backend_select_cb *cb = c->cb;
	const Store__SelectResponse *r = (const Store__SelectResponse *)resp;
	if (status == MAIL_OK && r->mailbox == NULL)
		status = MAIL_ERR_INTERNAL;
	if (status != MAIL_OK) {
		cb(status, NULL, NULL, 0, c->arg);
	} else {
		struct imap_mailbox_info box = { .name = r->mailbox->name,
						 .uidvalidity = r->mailbox->uidvalidity,
						 .uidnext = r->mailbox->uidnext,
						 .exists = r->mailbox->exists };
		struct imap_msg_info *msgs = imap_store_msg_infos(r->messages, r->n_messages);
		cb(MAIL_OK, &box, msgs, r->n_messages, c->arg);
		free(msgs);
	}
	free(c);
}

static void imap_store_select(void *ctx, const char *user, const char *mailbox,
			      imap_backend_select_cb *cb, void *arg)
{
	struct imap_store_backend *b = ctx;
	Store__SelectRequest req = STORE__SELECT_REQUEST__INIT;
	req.user = (char *)user;
	req.mailbox = (char *)mailbox;
	store_client_select(b->sc, &req, imap_store_select_cb, imap_store_call_new(cb, arg));
}

static void imap_store_fetch_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	struct imap_store_call *c = arg;
	imap_backend_fetch_cb *cb = c->cb;
	if (status != MAIL_OK) {
		cb(status, NULL, NULL, 0, c->arg);
	} else {
		const Store__FetchResponse *r = (const Store__FetchResponse *)resp;
		struct imap_msg_info info;
		imap_store_msg_info(r->info, &info);
		cb(MAIL_OK, &info, r->body.data != NULL ? r->body.data : (const uint8_t *)"",
		   r->body.len, c->arg);
	}
	free(c);
}

static void imap_store_fetch(void *ctx, const char *user, const char *mailbox, uint32_t uid,
			     imap_backend_fetch_cb *cb, void *arg)
{
	struct imap_store_backend *b = ctx;
	Store__FetchRequest req = STORE__FETCH_REQUEST__INIT;
	req.user = (char *)user;
	req.mailbox = (char *)mailbox;
	req.uid = uid;
	store_client_fetch(b->sc, &req, imap_store_fetch_cb, imap_store_call_new(cb, arg));
}

static void imap_store_flags_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	struct imap_store_call *c = arg;
	imap_backend_flags_cb *cb = c->cb;
	if (status != MAIL_OK) {
		cb(status, NULL, 0, c->arg);
	} else {
		const Store__StoreFlagsResponse *r = (const Store__StoreFlagsResponse *)resp;
		struct imap_msg_info *msgs = imap_store_msg_infos(r->messages, r->n_messages);
		cb(MAIL_OK, msgs, r->n_messages, c->arg);
		free(msgs);
	}
	free(c);
}

static void imap_store_store_flags(void *ctx, const char *user, const char *mailbox,
				   const uint32_t *uids, size_t n_uids, enum imap_flag_mode mode,
				   const char *const *flags, size_t n_flags,
				   imap_backend_flags_cb *cb, void *arg)
{
	static const Store__FlagMode modes[] = {
		[IMAP_FLAGS_SET] = STORE__FLAG_MODE__FLAGS_SET,
		[IMAP_FLAGS_ADD] = STORE__FLAG_MODE__FLAGS_ADD,
		[IMAP_FLAGS_REMOVE] = STORE__FLAG_MODE__FLAGS_REMOVE,
	};
	struct imap_store_backend *b = ctx;
	Store__StoreFlagsRequest req = STORE__STORE_FLAGS_REQUEST__INIT;
	req.user = (char *)user;
	req.mailbox = (char *)mailbox;
	req.uids = (uint32_t *)uids;
	req.n_uids = n_uids;
	req.mode = modes[mode];
	req.flags = (char **)flags;
	req.n_flags = n_flags;
	store_client_store_flags(b->sc, &req, imap_store_flags_cb,
				 imap_store_call_new(cb, arg));
}

static void imap_store_expunge_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	struct imap_store_call *c = arg;
	imap_backend_expunge_cb *cb = c->cb;
	if (status != MAIL_OK) {
		cb(status, NULL, 0, c->arg);
	} else {
		const Store__ExpungeResponse *r = (const Store__ExpungeResponse *)resp;
		cb(MAIL_OK, r->expunged_uids, r->n_expunged_uids, c->arg);
	}
	free(c);
}

static void imap_store_expunge(void *ctx, const char *user, const char *mailbox,
			       const uint32_t *uids, size_t n_uids, imap_backend_expunge_cb *cb,
			       void *arg)
{
	struct imap_store_backend *b = ctx;
	Store__ExpungeRequest req = STORE__EXPUNGE_REQUEST__INIT;
	req.user = (char *)user;
	req.mailbox = (char *)mailbox;
	req.uids = (uint32_t *)uids;
	req.n_uids = n_uids;
	store_client_expunge(b->sc, &req, imap_store_expunge_cb, imap_store_call_new(cb, arg));
}

const struct imap_backend imap_store_backend_vfuncs = {
	.authenticate = imap_store_authenticate,
	.scram_keys = imap_store_scram_keys,
	.list = imap_store_list,
	.select = imap_store_select,
	.fetch = imap_store_fetch,
	.store_flags = imap_store_store_flags,
	.expunge = imap_store_expunge,
};

imap_store_backend *imap_store_backend_create(struct auth_pool *auth, store_client *sc)
{
	struct imap_store_backend *b = xcalloc(1, sizeof(*b));
	b->auth = auth;
	b->sc = sc;
	return b;
}

void imap_store_backend_destroy(imap_store_backend **b)
{
	free(*b);
	*b = NULL;
}
