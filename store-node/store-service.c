/* store-service.c: store.proto's methods, answered from a mailstore.
 *
 * The mailstore is called synchronously on the loop thread. A LevelDB sync
 * write costs ~0.25 ms on the development machines, so one node serves a few
 * thousand writes a second this way; moving the calls to uv_queue_work (the
 * mailstore is thread-safe already) is the next step when that is too few,
 * and it would let LevelDB group-commit concurrent writes.
 */
#include "store-service.h"

#include "log.h"
#include "mail-error.h"
#include "rpc.h"
#include "store.pb-c.h"
#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

#define LOG_SVC "store"

struct store_service {
	mailstore *store;
	rpc_server *server;
};

static void message_info_to_pb(const struct mailstore_message_info *mi, Store__MessageInfo *pb)
{
	store__message_info__init(pb);
	pb->uid = mi->uid;
	pb->flags = mi->flags;
	pb->n_flags = mi->n_flags;
	pb->size = mi->size;
	pb->internal_date = mi->internal_date;
	pb->modseq = mi->modseq;
}

static void mailbox_info_to_pb(const struct mailstore_mailbox_info *info, Store__MailboxInfo *pb)
{
	store__mailbox_info__init(pb);
	pb->name = info->name;
	pb->uidvalidity = info->uidvalidity;
	pb->uidnext = info->uidnext;
	pb->exists = info->exists;
	pb->highest_modseq = info->highest_modseq;
}

static void handle_deliver(rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	store_service *svc = ctx;
	const Store__DeliverRequest *req = (const Store__DeliverRequest *)msg;
	struct mailstore_deliver_result res;
	int ret = mailstore_deliver(svc->store, req->user, req->mailbox, req->delivery_id,
				    req->body.data, req->body.len, req->internal_date,
				    (const char *const *)req->flags, req->n_flags, &res);
	char qid[300], quser[300];
	log_quote(qid, sizeof qid, req->delivery_id, strlen(req->delivery_id));
	log_quote(quser, sizeof quser, req->user, strlen(req->user));
	if (ret != MAIL_OK) {
		log_event(LOG_WARN, LOG_SVC,
			  "event=deliver_failed delivery_id=%s user=%s size=%zu status=%s", qid,
			  quser, req->body.len, mail_error_info(ret)->name);
		rpc_call_reply(call, ret, NULL);
		return;
	}
	log_event(LOG_INFO, LOG_SVC, "event=delivered delivery_id=%s user=%s uid=%u duplicate=%d",
		  qid, quser, res.uid, res.duplicate);
	Store__DeliverResponse resp = STORE__DELIVER_RESPONSE__INIT;
	resp.uid = res.uid;
	resp.uidvalidity = res.uidvalidity;
	resp.duplicate = res.duplicate != 0;
	rpc_call_reply(call, MAIL_OK, &resp.base);
}

static void handle_list(rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	store_service *svc = ctx;
	const Store__ListRequest *req = (const Store__ListRequest *)msg;
	struct mailstore_mailbox_info *boxes;
	size_t n;
	int ret = mailstore_list(svc->store, req->user, &boxes, &n);
	if (ret != MAIL_OK) {
		rpc_call_reply(call, ret, NULL);
		return;
	}
	Store__MailboxInfo *pbs = n > 0 ? xcalloc(n, sizeof *pbs) : NULL;
	Store__MailboxInfo **ptrs = n > 0 ? xcalloc(n, sizeof *ptrs) : NULL;
	for (size_t i = 0; i < n; i++) {
		mailbox_info_to_pb(&boxes[i], &pbs[i]);
		ptrs[i] = &pbs[i];
	}
	Store__ListResponse resp = STORE__LIST_RESPONSE__INIT;
	resp.mailboxes = ptrs;
	resp.n_mailboxes = n;
	rpc_call_reply(call, MAIL_OK, &resp.base);
	free(ptrs);
	free(pbs);
	mailstore_mailbox_infos_free(boxes, n);
}

static void handle_select(rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	store_service *svc = ctx;
	const Store__SelectRequest *req = (const Store__SelectRequest *)msg;
	struct mailstore_mailbox_info info;
	struct mailstore_message_info *msgs;
	size_t n;
	int ret = mailstore_select(svc->store, req->user, req->mailbox, &info, &msgs, &n);
	if (ret != MAIL_OK) {
		rpc_call_reply(call, ret, NULL);
		return;
	}
	Store__MailboxInfo box;
	mailbox_info_to_pb(&info, &box);
	Store__MessageInfo *pbs = n > 0 ? xcalloc(n, sizeof *pbs) : NULL;
	Store__MessageInfo **ptrs = n > 0 ? xcalloc(n, sizeof *ptrs) : NULL;
	for (size_t i = 0; i < n; i++) {
		message_info_to_pb(&msgs[i], &pbs[i]);
		ptrs[i] = &pbs[i];
	}
	Store__SelectResponse resp = STORE__SELECT_RESPONSE__INIT;
	resp.mailbox = &box;
	resp.messages = ptrs;
	resp.n_messages = n;
	rpc_call_reply(call, MAIL_OK, &resp.base);
	free(ptrs);
	free(pbs);
	mailstore_message_infos_free(msgs, n);
	mailstore_mailbox_info_free(&info);
}

static void handle_fetch(rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	store_service *svc = ctx;
	const Store__FetchRequest *req = (const Store__FetchRequest *)msg;
	struct mailstore_message_info info;
	void *body;
	size_t len;
	int ret = mailstore_fetch(svc->store, req->user, req->mailbox, req->uid, &info, &body,
				  &len);
	if (ret != MAIL_OK) {
		rpc_call_reply(call, ret, NULL);
		return;
	}
	Store__MessageInfo pbinfo;
	message_info_to_pb(&info, &pbinfo);
	Store__FetchResponse resp = STORE__FETCH_RESPONSE__INIT;
	resp.info = &pbinfo;
	resp.body.data = body;
	resp.body.len = len;
	rpc_call_reply(call, MAIL_OK, &resp.base);
	free(body);
	mailstore_message_info_free(&info);
}

static void handle_store_flags(rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	store_service *svc = ctx;
	const Store__StoreFlagsRequest *req = (const Store__StoreFlagsRequest *)msg;
	enum mailstore_flag_mode mode;
	switch (req->mode) {
	case STORE__FLAG_MODE__FLAGS_SET:
		mode = MAILSTORE_FLAGS_SET;
		break;
	case STORE__FLAG_MODE__FLAGS_ADD:
		mode = MAILSTORE_FLAGS_ADD;
		break;
	case STORE__FLAG_MODE__FLAGS_REMOVE:
		mode = MAILSTORE_FLAGS_REMOVE;
		break;
	default:
		rpc_call_reply(call, MAIL_ERR_PARAMS, NULL);
		return;
	}
	struct mailstore_message_info *msgs;
	size_t n;
	int ret = mailstore_store_flags(svc->store, req->user, req->mailbox, req->uids,
					req->n_uids, mode, (const char *const *)req->flags,
					req->n_flags, &msgs, &n);
	if (ret != MAIL_OK) {
		rpc_call_reply(call, ret, NULL);
		return;
	}
	Store__MessageInfo *pbs = n > 0 ? xcalloc(n, sizeof *pbs) : NULL;
	Store__MessageInfo **ptrs = n > 0 ? xcalloc(n, sizeof *ptrs) : NULL;
	for (size_t i = 0; i < n; i++) {
		message_info_to_pb(&msgs[i], &pbs[i]);
		ptrs[i] = &pbs[i];
	}
	Store__StoreFlagsResponse resp = STORE__STORE_FLAGS_RESPONSE__INIT;
	resp.messages = ptrs;
	resp.n_messages = n;
	rpc_call_reply(call, MAIL_OK, &resp.base);
	free(ptrs);
	free(pbs);
	mailstore_message_infos_free(msgs, n);
}

static void handle_expunge(rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	store_service *svc = ctx;
	const Store__ExpungeRequest *req = (const Store__ExpungeRequest *)msg;
	uint32_t *uids;
	size_t n;
	int ret = mailstore_expunge(svc->store, req->user, req->mailbox, req->uids, req->n_uids,
				    &uids, &n);
	if (ret != MAIL_OK) {
		rpc_call_reply(call, ret, NULL);
		return;
	}
	if (n > 0) {
		char quser[300];
		log_event(LOG_INFO, LOG_SVC, "event=expunged user=%s count=%zu",
			  log_quote(quser, sizeof quser, req->user, strlen(req->user)), n);
	}
	Store__ExpungeResponse resp = STORE__EXPUNGE_RESPONSE__INIT;
	resp.expunged_uids = uids;
	resp.n_expunged_uids = n;
	rpc_call_reply(call, MAIL_OK, &resp.base);
	free(uids);
}

static const rpc_method store_methods[] = {
	{ STORE__METHOD__DELIVER, "deliver", &store__deliver_request__descriptor, handle_deliver },
	{ STORE__METHOD__LIST, "list", &store__list_request__descriptor, handle_list },
	{ STORE__METHOD__SELECT, "select", &store__select_request__descriptor, handle_select },
	{ STORE__METHOD__FETCH, "fetch", &store__fetch_request__descriptor, handle_fetch },
	{ STORE__METHOD__STORE_FLAGS, "store_flags", &store__store_flags_request__descriptor,
	  handle_store_flags },
	{ STORE__METHOD__EXPUNGE, "expunge", &store__expunge_request__descriptor, handle_expunge },
};

int store_service_create(uv_loop_t *loop, mailstore *store, store_service **service_r)
{
	store_service *svc = xcalloc(1, sizeof *svc);
	svc->store = store;
	rpc_server_create(loop, STORE_SERVICE_NAME, store_methods,
			  sizeof store_methods / sizeof *store_methods, svc, &svc->server);
	*service_r = svc;
	return 0;
}

int store_service_listen(store_service *svc, const char *host, int port, int *port_r,
			 const char **error_r)
{
	return rpc_server_listen(svc->server, host, port, port_r, error_r);
}

void store_service_destroy(store_service **service)
{
	store_service *svc = *service;
	if (svc == NULL)
		return;
	*service = NULL;
	rpc_server_destroy(&svc->server);
	free(svc);
}

void store_service_counters(const store_service *service, struct rpc_counters *counters_r)
{
	rpc_server_counters(service->server, counters_r);
}
