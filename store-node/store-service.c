/* store-service.c: store.proto's methods, answered from a mailstore.
 *
 * The mailstore is called synchronously on the loop thread. A LevelDB sync
 * write costs ~0.25 ms on the development machines, so one node serves a few
 * thousand writes a second this way; moving the calls to uv_queue_work (the
 * mailstore is thread-safe already) is the next step when that is too few,
 * and it would let LevelDB group-commit concurrent writes.
 */
#include "store-service.h"

#include "buf.h"
#include "log.h"
#include "mail-error.h"
#include "rpc.h"
#include "repl-host.h"
#include "store.pb-c.h"
#include "util.h"
#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

#define LOG_SVC "store"

struct store_service {
	mailstore *store;
	rpc_server *server;
	repl_host *parts;          /* NULL: standalone, no replication */
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

/* A repeated MessageInfo field built from mailstore infos. The pb structs
 * borrow the infos' strings: free this before the infos. */
struct pb_message_infos {
	Store__MessageInfo *pbs;
	Store__MessageInfo **ptrs;
};

static void message_infos_to_pb(const struct mailstore_message_info *msgs, size_t n,
				struct pb_message_infos *out)
{
	out->pbs = n > 0 ? xcalloc(n, sizeof *out->pbs) : NULL;
	out->ptrs = n > 0 ? xcalloc(n, sizeof *out->ptrs) : NULL;
	for (size_t i = 0; i < n; i++) {
		message_info_to_pb(&msgs[i], &out->pbs[i]);
		out->ptrs[i] = &out->pbs[i];
	}
}

static void pb_message_infos_free(struct pb_message_infos *infos)
{
	free(infos->ptrs);
	free(infos->pbs);
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

/* Pack resp (when status is MAIL_OK) into out. */
static int pack_to(int status, const ProtobufCMessage *resp, buf *out)
{
	if (status != MAIL_OK)
		return status;
	size_t len = protobuf_c_message_get_packed_size(resp);
	buf_reserve(out, len);
	protobuf_c_message_pack(resp, out->data + out->len);
	out->len += len;
	return MAIL_OK;
}

/* ---- executing one request against the mailstore ----------------------- *
 * Each returns the status and packs the response into out (MAIL_OK only).
 * The same code answers a direct request and applies a replicated entry. */

static int exec_deliver(mailstore *store, const Store__DeliverRequest *req, buf *out)
{
	struct mailstore_deliver_result res;
	int ret = mailstore_deliver(store, req->user, req->mailbox, req->delivery_id,
				    req->body.data, req->body.len, req->internal_date,
				    (const char *const *)req->flags, req->n_flags, &res);
	char qid[300], quser[300];
	log_quote(qid, sizeof qid, req->delivery_id, strlen(req->delivery_id));
	log_quote(quser, sizeof quser, req->user, strlen(req->user));
	if (ret != MAIL_OK) {
		log_event(LOG_WARN, LOG_SVC,
			  "event=deliver_failed delivery_id=%s user=%s size=%zu status=%s", qid,
			  quser, req->body.len, mail_error_info(ret)->name);
		return ret;
	}
	log_event(LOG_INFO, LOG_SVC, "event=delivered delivery_id=%s user=%s uid=%u duplicate=%d",
		  qid, quser, res.uid, res.duplicate);
	Store__DeliverResponse resp = STORE__DELIVER_RESPONSE__INIT;
	resp.uid = res.uid;
	resp.uidvalidity = res.uidvalidity;
	resp.duplicate = res.duplicate != 0;
	return pack_to(MAIL_OK, &resp.base, out);
}

static int exec_list(mailstore *store, const Store__ListRequest *req, buf *out)
{
	struct mailstore_mailbox_info *boxes;
	size_t n;
	int ret = mailstore_list(store, req->user, &boxes, &n);
	if (ret != MAIL_OK)
		return ret;
	Store__MailboxInfo *pbs = n > 0 ? xcalloc(n, sizeof *pbs) : NULL;
	Store__MailboxInfo **ptrs = n > 0 ? xcalloc(n, sizeof *ptrs) : NULL;
	for (size_t i = 0; i < n; i++) {
		mailbox_info_to_pb(&boxes[i], &pbs[i]);
		ptrs[i] = &pbs[i];
	}
	Store__ListResponse resp = STORE__LIST_RESPONSE__INIT;
	resp.mailboxes = ptrs;
	resp.n_mailboxes = n;
	pack_to(MAIL_OK, &resp.base, out);
	free(ptrs);
	free(pbs);
	mailstore_mailbox_infos_free(boxes, n);
	return MAIL_OK;
}

static int exec_select(mailstore *store, const Store__SelectRequest *req, buf *out)
{
	struct mailstore_mailbox_info info;
	struct mailstore_message_info *msgs;
	size_t n;
	int ret = mailstore_select(store, req->user, req->mailbox, &info, &msgs, &n);
	if (ret != MAIL_OK)
		return ret;
	Store__MailboxInfo box;
	mailbox_info_to_pb(&info, &box);
	struct pb_message_infos infos;
	message_infos_to_pb(msgs, n, &infos);
	Store__SelectResponse resp = STORE__SELECT_RESPONSE__INIT;
	resp.mailbox = &box;
	resp.messages = infos.ptrs;
	resp.n_messages = n;
	pack_to(MAIL_OK, &resp.base, out);
	pb_message_infos_free(&infos);
	mailstore_message_infos_free(msgs, n);
	mailstore_mailbox_info_free(&info);
	return MAIL_OK;
}

static int exec_fetch(mailstore *store, const Store__FetchRequest *req, buf *out)
{
	struct mailstore_message_info info;
	void *body;
	size_t len;
	int ret = mailstore_fetch(store, req->user, req->mailbox, req->uid, &info, &body, &len);
	if (ret != MAIL_OK)
		return ret;
	Store__MessageInfo pbinfo;
	message_info_to_pb(&info, &pbinfo);
	Store__FetchResponse resp = STORE__FETCH_RESPONSE__INIT;
	resp.info = &pbinfo;
	resp.body.data = body;
	resp.body.len = len;
	pack_to(MAIL_OK, &resp.base, out);
	free(body);
	mailstore_message_info_free(&info);
	return MAIL_OK;
}

static int exec_store_flags(mailstore *store, const Store__StoreFlagsRequest *req, buf *out)
{
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
		return MAIL_ERR_PARAMS;
	}
	struct mailstore_message_info *msgs;
	size_t n;
	int ret = mailstore_store_flags(store, req->user, req->mailbox, req->uids, req->n_uids,
					mode, (const char *const *)req->flags, req->n_flags, &msgs,
					&n);
	if (ret != MAIL_OK)
		return ret;
	struct pb_message_infos infos;
	message_infos_to_pb(msgs, n, &infos);
	Store__StoreFlagsResponse resp = STORE__STORE_FLAGS_RESPONSE__INIT;
	resp.messages = infos.ptrs;
	resp.n_messages = n;
	pack_to(MAIL_OK, &resp.base, out);
	pb_message_infos_free(&infos);
	mailstore_message_infos_free(msgs, n);
	return MAIL_OK;
}

static int exec_expunge(mailstore *store, const Store__ExpungeRequest *req, buf *out)
{
	uint32_t *uids;
	size_t n;
	int ret = mailstore_expunge(store, req->user, req->mailbox, req->uids, req->n_uids, &uids,
				    &n);
	if (ret != MAIL_OK)
		return ret;
	if (n > 0) {
		char quser[300];
		log_event(LOG_INFO, LOG_SVC, "event=expunged user=%s count=%zu",
			  log_quote(quser, sizeof quser, req->user, strlen(req->user)), n);
	}
	Store__ExpungeResponse resp = STORE__EXPUNGE_RESPONSE__INIT;
	resp.expunged_uids = uids;
	resp.n_expunged_uids = n;
	pack_to(MAIL_OK, &resp.base, out);
	free(uids);
	return MAIL_OK;
}

/* One method's request/response types and executor. */
struct store_op {
	uint16_t method;
	const ProtobufCMessageDescriptor *request;
	const ProtobufCMessageDescriptor *response;
	int (*exec)(mailstore *store, const ProtobufCMessage *req, buf *out);
	int write;               /* replicated through the log */
};

#define STORE_EXEC(fn, type) \
	static int fn##_any(mailstore *s, const ProtobufCMessage *m, buf *out) \
	{ \
		return fn(s, (const type *)m, out); \
	}
STORE_EXEC(exec_deliver, Store__DeliverRequest)
STORE_EXEC(exec_list, Store__ListRequest)
STORE_EXEC(exec_select, Store__SelectRequest)
STORE_EXEC(exec_fetch, Store__FetchRequest)
STORE_EXEC(exec_store_flags, Store__StoreFlagsRequest)
STORE_EXEC(exec_expunge, Store__ExpungeRequest)

/* STORE_OP_INBOX: a ListRequest whose apply creates INBOX (a read that
 * would create it on the primary alone would make replicas diverge). */
static const struct store_op store_ops[] = {
	{ STORE__METHOD__DELIVER, &store__deliver_request__descriptor,
	  &store__deliver_response__descriptor, exec_deliver_any, 1 },
	{ STORE__METHOD__LIST, &store__list_request__descriptor,
	  &store__list_response__descriptor, exec_list_any, 0 },
	{ STORE__METHOD__SELECT, &store__select_request__descriptor,
	  &store__select_response__descriptor, exec_select_any, 0 },
	{ STORE__METHOD__FETCH, &store__fetch_request__descriptor,
	  &store__fetch_response__descriptor, exec_fetch_any, 0 },
	{ STORE__METHOD__STORE_FLAGS, &store__store_flags_request__descriptor,
	  &store__store_flags_response__descriptor, exec_store_flags_any, 1 },
	{ STORE__METHOD__EXPUNGE, &store__expunge_request__descriptor,
	  &store__expunge_response__descriptor, exec_expunge_any, 1 },
	{ STORE_OP_INBOX, &store__list_request__descriptor, &store__list_response__descriptor,
	  exec_list_any, 1 },
};

static const struct store_op *store_op_find(uint16_t method)
{
	for (size_t i = 0; i < sizeof store_ops / sizeof store_ops[0]; i++)
		if (store_ops[i].method == method)
			return &store_ops[i];
	return NULL;
}

/* Reply with status and a packed response of type desc. */
static void reply_packed(rpc_call *call, int status, const ProtobufCMessageDescriptor *desc,
			 const uint8_t *data, size_t len)
{
	if (status != MAIL_OK) {
		rpc_call_reply(call, status, NULL);
		return;
	}
	ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, len, data);
	if (m == NULL) {
		rpc_call_reply(call, MAIL_ERR_INTERNAL, NULL);
		return;
	}
	rpc_call_reply(call, MAIL_OK, m);
	protobuf_c_message_free_unpacked(m, NULL);
}

/* Log payload: version 1 | method u16 BE | primary's wall clock ms i64 BE |
 * the packed request. */
#define STORE_ENTRY_HEAD 11

int store_service_apply(mailstore *store, uint32_t partition, uint64_t index,
			const uint8_t *payload, size_t len, buf *out)
{
	if (len < STORE_ENTRY_HEAD || payload[0] != 1)
		return MAIL_ERR_PARAMS;
	uint16_t method = (uint16_t)(payload[1] << 8 | payload[2]);
	uint64_t ts = 0;
	for (int i = 0; i < 8; i++)
		ts = ts << 8 | payload[3 + i];
	const struct store_op *op = store_op_find(method);
	if (op == NULL || !op->write)
		return MAIL_ERR_PARAMS;
	ProtobufCMessage *req = protobuf_c_message_unpack(op->request, NULL,
							  len - STORE_ENTRY_HEAD,
							  payload + STORE_ENTRY_HEAD);
	if (req == NULL)
		return MAIL_ERR_PARAMS;
	struct mailstore_apply a = { partition, index, (int64_t)ts };
	mailstore_apply_begin(store, &a);
	int ret = op->exec(store, req, out);
	mailstore_apply_begin(store, NULL);
	protobuf_c_message_free_unpacked(req, NULL);
	return ret;
}

/* ---- handlers -------------------------------------------------------- */

/* One request waiting for its log entry to commit. */
struct store_wait {
	store_service *svc;
	rpc_call *call;
	const struct store_op *op;      /* the method called */
	const ProtobufCMessage *req;    /* valid until the reply */
	int then_read;                  /* an INBOX entry before a read */
};

static void serve_read(store_service *svc, rpc_call *call, const struct store_op *op,
		       const ProtobufCMessage *req)
{
	buf out;
	buf_init(&out);
	int status = op->exec(svc->store, req, &out);
	reply_packed(call, status, op->response, out.data, out.len);
	buf_deinit(&out);
}

static void committed_cb(int status, int op_status, const uint8_t *resp, size_t len, void *arg)
{
	struct store_wait *w = arg;
	if (status != MAIL_OK)
		rpc_call_reply(w->call, status, NULL);
	else if (w->then_read)
		serve_read(w->svc, w->call, w->op, w->req);
	else
		reply_packed(w->call, op_status, w->op->response, resp, len);
	free(w);
}

static int propose(store_service *svc, uint32_t partition, uint16_t method,
		   const ProtobufCMessage *req, struct store_wait *w)
{
	buf e;
	buf_init(&e);
	size_t len = protobuf_c_message_get_packed_size(req);
	buf_reserve(&e, STORE_ENTRY_HEAD + len);
	uint64_t ts = (uint64_t)util_now_wall_ms();
	e.data[0] = 1;
	e.data[1] = (uint8_t)(method >> 8);
	e.data[2] = (uint8_t)method;
	for (int i = 0; i < 8; i++)
		e.data[3 + i] = (uint8_t)(ts >> (56 - 8 * i));
	protobuf_c_message_pack(req, e.data + STORE_ENTRY_HEAD);
	e.len = STORE_ENTRY_HEAD + len;
	int ret = repl_host_propose(svc->parts, partition, e.data, e.len, committed_cb, w);
	buf_deinit(&e);
	return ret;
}

/* Every request's first field is the user (the routing key). */
static void handle_any(rpc_call *call, const struct store_op *op, const char *user,
		       const ProtobufCMessage *req, store_service *svc)
{
	if (svc->parts == NULL) {
		serve_read(svc, call, op, req);   /* standalone: no log */
		return;
	}
	uint32_t partition;
	int ret = repl_host_primary_of(svc->parts, user, strlen(user), !op->write, &partition);
	if (ret != MAIL_OK) {
		rpc_call_reply(call, ret, NULL);
		return;
	}
	struct store_wait *w = xcalloc(1, sizeof *w);
	*w = (struct store_wait){ svc, call, op, req, 0 };
	if (op->write) {
		ret = propose(svc, partition, op->method, req, w);
	} else {
		int exists = 1;
		if (op->method != STORE__METHOD__FETCH &&
		    mailstore_mailbox_exists(svc->store, user, MAILSTORE_INBOX, &exists) != MAIL_OK)
			exists = 1;   /* a bad user: the read says so */
		if (exists) {
			free(w);
			serve_read(svc, call, op, req);
			return;
		}
		/* INBOX is created through the log, then the read runs. */
		Store__ListRequest lreq = STORE__LIST_REQUEST__INIT;
		lreq.user = (char *)user;
		w->then_read = 1;
		ret = propose(svc, partition, STORE_OP_INBOX, &lreq.base, w);
	}
	if (ret != MAIL_OK) {
		free(w);
		rpc_call_reply(call, ret, NULL);
	}
}

#define STORE_HANDLER(name, method, type) \
	static void name(rpc_call *call, const ProtobufCMessage *msg, void *ctx) \
	{ \
		handle_any(call, store_op_find(method), ((const type *)msg)->user, msg, ctx); \
	}
STORE_HANDLER(handle_deliver, STORE__METHOD__DELIVER, Store__DeliverRequest)
STORE_HANDLER(handle_list, STORE__METHOD__LIST, Store__ListRequest)
STORE_HANDLER(handle_select, STORE__METHOD__SELECT, Store__SelectRequest)
STORE_HANDLER(handle_fetch, STORE__METHOD__FETCH, Store__FetchRequest)
STORE_HANDLER(handle_store_flags, STORE__METHOD__STORE_FLAGS, Store__StoreFlagsRequest)
STORE_HANDLER(handle_expunge, STORE__METHOD__EXPUNGE, Store__ExpungeRequest)

/* With TLS (rpc.h), who calls what: Deliver comes from queue nodes (local
 * delivery) and admin tools, never from a frontend (mail enters through the
 * queue) nor from another store (stores replicate through "repl"); the
 * mailbox methods from frontends (IMAP) and admin tools. docs/security.md
 * has the whole table. */
#define STORE_DELIVER_ROLES (RPC_ROLE_QUEUE | RPC_ROLE_ADMIN)
#define STORE_MAILBOX_ROLES (RPC_ROLE_FRONTEND | RPC_ROLE_ADMIN)
static const rpc_method store_methods[] = {
	{ STORE__METHOD__DELIVER, "deliver", &store__deliver_request__descriptor, handle_deliver,
	  STORE_DELIVER_ROLES },
	{ STORE__METHOD__LIST, "list", &store__list_request__descriptor, handle_list,
	  STORE_MAILBOX_ROLES },
	{ STORE__METHOD__SELECT, "select", &store__select_request__descriptor, handle_select,
	  STORE_MAILBOX_ROLES },
	{ STORE__METHOD__FETCH, "fetch", &store__fetch_request__descriptor, handle_fetch,
	  STORE_MAILBOX_ROLES },
	{ STORE__METHOD__STORE_FLAGS, "store_flags", &store__store_flags_request__descriptor,
	  handle_store_flags, STORE_MAILBOX_ROLES },
	{ STORE__METHOD__EXPUNGE, "expunge", &store__expunge_request__descriptor, handle_expunge,
	  STORE_MAILBOX_ROLES },
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

void store_service_set_partitions(store_service *service, repl_host *parts)
{
	service->parts = parts;
}

rpc_server *store_service_server(store_service *service)
{
	return service->server;
}

void store_service_counters(const store_service *service, struct rpc_counters *counters_r)
{
	rpc_server_counters(service->server, counters_r);
}

static int repl_apply(void *owner, uint32_t partition, uint64_t index, const uint8_t *payload,
		      size_t len, buf *resp)
{
	return store_service_apply(owner, partition, index, payload, len, resp);
}

static int repl_applied_index(void *owner, uint32_t partition, uint64_t *index_r)
{
	return mailstore_applied_index(owner, partition, index_r);
}

static int repl_snapshot_open(void *owner, uint32_t partition, uint32_t n_partitions,
			      void **snap_r)
{
	uint64_t applied;
	mailstore_snapshot *snap;
	if (mailstore_snapshot_open(owner, partition, n_partitions, &snap, &applied) != MAIL_OK)
		return -1;
	*snap_r = snap;
	return 0;
}

static int repl_snapshot_next(void *snap, buf *out, size_t max_bytes)
{
	int ret = mailstore_snapshot_next(snap, out, max_bytes);
	return ret < 0 ? -1 : ret;
}

static void repl_snapshot_close(void *snap)
{
	mailstore_snapshot *s = snap;
	mailstore_snapshot_close(&s);
}

static int repl_snapshot_install(void *owner, uint32_t partition, uint32_t n_partitions,
				 int first, int last, const uint8_t *chunk, size_t len,
				 uint64_t index)
{
	int ret = MAIL_OK;
	if (first)
		ret = mailstore_snapshot_install_begin(owner, partition, n_partitions);
	if (ret == MAIL_OK && len > 0)
		ret = mailstore_snapshot_install_chunk(owner, partition, n_partitions, chunk, len);
	if (ret == MAIL_OK && last)
		ret = mailstore_snapshot_install_end(owner, partition, index);
	return ret == MAIL_OK ? 0 : -1;
}

const struct repl_host_ops *store_service_repl_ops(void)
{
	static const struct repl_host_ops ops = {
		repl_apply, repl_applied_index, NULL,
		repl_snapshot_open, repl_snapshot_next, repl_snapshot_close, repl_snapshot_install,
	};
	return &ops;
}
