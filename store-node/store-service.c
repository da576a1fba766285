/* store-service.c: store.proto's methods, answered from a mailstore.
 *
 * The mailstore is called synchronously on the loop thread. A LevelDB sync
 * write costs ~0.25 ms on the development machines, so one node serves a few
 * thousand writes a second this way; moving the calls to uv_queue_work (the
 * mailstore is thread-safe already) is the next step when that is too few,
 * and it would let LevelDB group-commit concurrent writes.
 */
#include "store-service.h"

#include "mailsearch.h"
#include "store-search.h"
#include "store-structure.h"

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

/* A held WATCH call (watch_*, below). */
struct store_watch {
	struct store_watch *next, *prev;   /* in its bucket */
	rpc_call *call;
	char *user;
	char *mailbox;                     /* stored name */
	uint64_t modseq;
	uint64_t deadline;                 /* util_now_mono_ms() */
};

#define WATCH_BUCKETS 1024

struct store_service {
	uv_loop_t *loop;
	mailstore *store;
	rpc_server *server;
	repl_host *parts;          /* NULL: standalone, no replication */
	/* held WATCH calls by hash of user; n_watches of them */
	struct store_watch *watches[WATCH_BUCKETS];
	size_t n_watches;
	uv_timer_t watch_timer;
	uint32_t watch_hold_ms;
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
	pb->unseen = info->unseen;
	pb->deleted = info->deleted;
	pb->size = info->size;
	pb->attrs = info->attrs;
	pb->keywords = info->keywords;
	pb->n_keywords = info->n_keywords;
}

/* A repeated UidRange field over ranges (borrowed): free with
 * pb_ranges_free(). */
struct pb_ranges {
	Store__UidRange *pbs;
	Store__UidRange **ptrs;
};

static void ranges_to_pb(const struct search_uid_range *r, size_t n, struct pb_ranges *out)
{
	out->pbs = n > 0 ? xcalloc(n, sizeof *out->pbs) : NULL;
	out->ptrs = n > 0 ? xcalloc(n, sizeof *out->ptrs) : NULL;
	for (size_t i = 0; i < n; i++) {
		store__uid_range__init(&out->pbs[i]);
		out->pbs[i].first = r[i].first;
		out->pbs[i].last = r[i].last;
		out->ptrs[i] = &out->pbs[i];
	}
}

static void pb_ranges_free(struct pb_ranges *r)
{
	free(r->ptrs);
	free(r->pbs);
}

/* Ranges from a request (heap, caller frees); NULL when n is 0. */
static struct search_uid_range *ranges_from_pb(Store__UidRange **pb, size_t n)
{
	struct search_uid_range *r = n > 0 ? xcalloc(n, sizeof *r) : NULL;
	for (size_t i = 0; i < n; i++) {
		r[i].first = pb[i] != NULL ? pb[i]->first : 0;
		r[i].last = pb[i] != NULL ? pb[i]->last : 0;
	}
	return r;
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
	struct mailstore_msg_in msg = {
		.body = req->body.data, .body_len = req->body.len,
		.internal_date = req->internal_date, .flags = (const char *const *)req->flags,
		.n_flags = req->n_flags,
		.structure = req->structure.len > 0 ? req->structure.data : NULL,
		.structure_len = req->structure.len,
		.inbox_fallback = req->mailbox_fallback,
	};
	struct mailstore_quota q = { req->quota_storage, req->quota_messages };
	mailstore_quota_begin(store, &q);
	int ret = mailstore_deliver_msg(store, req->user, req->mailbox, req->delivery_id, &msg,
					&res);
	mailstore_quota_begin(store, NULL);
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
	/* LSUB / LIST (SUBSCRIBED): the subscribed names that are no
	 * mailbox, as NONEXISTENT entries (both lists are sorted) */
	char **subs = NULL;
	size_t n_subs = 0, n_ghosts = 0;
	if (req->subscriptions &&
	    mailstore_subscriptions(store, req->user, &subs, &n_subs) != MAIL_OK) {
		mailstore_mailbox_infos_free(boxes, n);
		return MAIL_ERR_INTERNAL;
	}
	Store__MailboxInfo *pbs = xcalloc(n + n_subs + 1, sizeof *pbs);
	Store__MailboxInfo **ptrs = xcalloc(n + n_subs + 1, sizeof *ptrs);
	size_t o = 0, b = 0;
	for (size_t i = 0; i < n_subs; i++) {
		while (b < n && strcmp(boxes[b].name, subs[i]) < 0)
			b++;
		if (b < n && strcmp(boxes[b].name, subs[i]) == 0)
			continue;
		store__mailbox_info__init(&pbs[o]);
		pbs[o].name = subs[i];
		pbs[o].attrs = MAILSTORE_MBOX_SUBSCRIBED | MAILSTORE_MBOX_NONEXISTENT;
		ptrs[o] = &pbs[o];
		o++;
		n_ghosts++;
	}
	for (size_t i = 0; i < n; i++) {
		mailbox_info_to_pb(&boxes[i], &pbs[o]);
		ptrs[o] = &pbs[o];
		o++;
	}
	Store__ListResponse resp = STORE__LIST_RESPONSE__INIT;
	resp.mailboxes = ptrs;
	resp.n_mailboxes = o;
	pack_to(MAIL_OK, &resp.base, out);
	free(ptrs);
	free(pbs);
	mailstore_names_free(subs, n_subs);
	mailstore_mailbox_infos_free(boxes, n);
	(void)n_ghosts;
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
	mailstore_last_modseq_reset(store);
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
	resp.highest_modseq = mailstore_last_modseq(store);
	pack_to(MAIL_OK, &resp.base, out);
	free(uids);
	return MAIL_OK;
}

/* ---- issue 9 ---------------------------------------------------------------- */

static int pack_mailbox(const struct mailstore_mailbox_info *info, buf *out)
{
	Store__MailboxInfo box;
	mailbox_info_to_pb(info, &box);
	Store__MailboxResponse resp = STORE__MAILBOX_RESPONSE__INIT;
	resp.mailbox = &box;
	return pack_to(MAIL_OK, &resp.base, out);
}

static int pack_empty(buf *out)
{
	Store__EmptyResponse resp = STORE__EMPTY_RESPONSE__INIT;
	return pack_to(MAIL_OK, &resp.base, out);
}

static int exec_mailbox_create(mailstore *store, const Store__CreateMailboxRequest *req,
			       buf *out)
{
	struct mailstore_mailbox_info info;
	int ret = mailstore_mailbox_create(store, req->user, req->mailbox, req->special_use, &info);
	if (ret != MAIL_OK)
		return ret;
	pack_mailbox(&info, out);
	mailstore_mailbox_info_free(&info);
	return MAIL_OK;
}

static int exec_mailbox_delete(mailstore *store, const Store__DeleteMailboxRequest *req,
			       buf *out)
{
	int ret = mailstore_mailbox_delete(store, req->user, req->mailbox);
	return ret == MAIL_OK ? pack_empty(out) : ret;
}

static int exec_user_purge(mailstore *store, const Store__UserPurgeRequest *req, buf *out)
{
	struct mailstore_purge_stats st;
	int ret = mailstore_user_purge(store, req->user, &st);
	if (ret != MAIL_OK)
		return ret;
	Store__UserPurgeResponse resp = STORE__USER_PURGE_RESPONSE__INIT;
	resp.mailboxes = st.mailboxes;
	resp.messages = st.messages;
	resp.bytes = st.bytes;
	return pack_to(MAIL_OK, &resp.base, out);
}

static int exec_mailbox_rename(mailstore *store, const Store__RenameMailboxRequest *req,
			       buf *out)
{
	int ret = mailstore_mailbox_rename(store, req->user, req->from, req->to);
	return ret == MAIL_OK ? pack_empty(out) : ret;
}

static int exec_subscribe(mailstore *store, const Store__SubscribeRequest *req, buf *out)
{
	int ret = mailstore_subscribe(store, req->user, req->mailbox, req->on);
	return ret == MAIL_OK ? pack_empty(out) : ret;
}

static int exec_status(mailstore *store, const Store__StatusRequest *req, buf *out)
{
	struct mailstore_mailbox_info info;
	int ret = mailstore_status(store, req->user, req->mailbox, &info);
	if (ret != MAIL_OK)
		return ret;
	pack_mailbox(&info, out);
	mailstore_mailbox_info_free(&info);
	return MAIL_OK;
}

static int exec_open(mailstore *store, const Store__OpenRequest *req, buf *out)
{
	struct search_uid_range *r;
	size_t n;
	uint32_t next, unseen;
	struct mailstore_mailbox_info info;
	int ret = mailstore_uids(store, req->user, req->mailbox, req->after_uid, req->below_uid,
				 &r, &n, &next, &unseen, &info);
	if (ret != MAIL_OK)
		return ret;
	Store__OpenResponse resp = STORE__OPEN_RESPONSE__INIT;
	Store__MailboxInfo box;
	if (req->after_uid == 0) {
		mailbox_info_to_pb(&info, &box);
		resp.mailbox = &box;
	}
	struct pb_ranges pr;
	ranges_to_pb(r, n, &pr);
	resp.uids = pr.ptrs;
	resp.n_uids = n;
	resp.next_after_uid = next;
	resp.first_unseen_uid = unseen;
	pack_to(MAIL_OK, &resp.base, out);
	pb_ranges_free(&pr);
	free(r);
	mailstore_mailbox_info_free(&info);
	return MAIL_OK;
}

static int exec_append(mailstore *store, const Store__AppendRequest *req, buf *out)
{
	size_t n = req->n_messages;
	struct mailstore_msg_in *msgs = n > 0 ? xcalloc(n, sizeof *msgs) : NULL;
	for (size_t i = 0; i < n; i++) {
		const Store__AppendMessage *m = req->messages[i];
		if (m == NULL)
			continue;
		msgs[i] = (struct mailstore_msg_in){
			.body = m->body.data, .body_len = m->body.len,
			.internal_date = m->internal_date, .flags = (const char *const *)m->flags,
			.n_flags = m->n_flags,
			.structure = m->structure.len > 0 ? m->structure.data : NULL,
			.structure_len = m->structure.len,
		};
	}
	uint32_t uidvalidity, *uids;
	struct mailstore_quota q = { req->quota_storage, req->quota_messages };
	mailstore_quota_begin(store, &q);
	mailstore_last_modseq_reset(store);
	int ret = mailstore_append(store, req->user, req->mailbox, msgs, n, &uidvalidity, &uids);
	mailstore_quota_begin(store, NULL);
	free(msgs);
	if (ret != MAIL_OK)
		return ret;
	Store__AppendResponse resp = STORE__APPEND_RESPONSE__INIT;
	resp.uidvalidity = uidvalidity;
	resp.uids = uids;
	resp.n_uids = n;
	resp.highest_modseq = mailstore_last_modseq(store);
	pack_to(MAIL_OK, &resp.base, out);
	free(uids);
	return MAIL_OK;
}

static int exec_copy(mailstore *store, const Store__CopyRequest *req, buf *out)
{
	struct search_uid_range *r = ranges_from_pb(req->uids, req->n_uids);
	uint32_t uidvalidity, *src, *dst;
	size_t n;
	struct mailstore_quota q = { req->quota_storage, req->quota_messages };
	mailstore_quota_begin(store, &q);
	int ret = mailstore_copy(store, req->user, req->from, r, req->n_uids, req->to, req->move,
				 &uidvalidity, &src, &dst, &n);
	mailstore_quota_begin(store, NULL);
	free(r);
	if (ret != MAIL_OK)
		return ret;
	Store__CopyResponse resp = STORE__COPY_RESPONSE__INIT;
	resp.dst_uidvalidity = uidvalidity;
	resp.src_uids = src;
	resp.n_src_uids = n;
	resp.dst_uids = dst;
	resp.n_dst_uids = n;
	pack_to(MAIL_OK, &resp.base, out);
	free(src);
	free(dst);
	return MAIL_OK;
}

/* FETCH_META's content_max is capped here (one page's bytes). */
#define STORE_CONTENT_MAX (1024u * 1024u)

static int exec_fetch_meta(mailstore *store, const Store__FetchMetaRequest *req, buf *out)
{
	struct search_uid_range *r = ranges_from_pb(req->uids, req->n_uids);
	struct mailstore_meta *msgs;
	size_t n;
	uint32_t next;
	int ret = mailstore_fetch_meta(store, req->user, req->mailbox, r, req->n_uids,
				       req->changed_since, req->structure, req->after_uid, &msgs,
				       &n, &next);
	free(r);
	if (ret != MAIL_OK)
		return ret;
	Store__MessageInfo *infos = n > 0 ? xcalloc(n, sizeof *infos) : NULL;
	Store__MessageMeta *metas = n > 0 ? xcalloc(n, sizeof *metas) : NULL;
	Store__MessageMeta **ptrs = n > 0 ? xcalloc(n, sizeof *ptrs) : NULL;
	/* the bytes too, when asked: an optimisation, so a failure only
	 * leaves the messages without them (FETCH_RANGE reads them then) */
	if (req->content_max > 0)
		(void)mailstore_fetch_meta_content(store, req->user, req->mailbox, msgs, n,
						   req->content_max < STORE_CONTENT_MAX
							   ? req->content_max
							   : STORE_CONTENT_MAX);
	for (size_t i = 0; i < n && ret == MAIL_OK; i++) {
		store__message_meta__init(&metas[i]);
		message_info_to_pb(&msgs[i].info, &infos[i]);
		metas[i].info = &infos[i];
		ptrs[i] = &metas[i];
		if (msgs[i].content != NULL) {
			metas[i].has_content = 1;
			metas[i].content = (ProtobufCBinaryData){ msgs[i].content_len,
								  msgs[i].content };
		}
		if (msgs[i].structure == NULL)
			continue;
		struct store_structure st;
		if (store_structure_decode(msgs[i].structure, msgs[i].structure_len, &st) < 0) {
			ret = MAIL_ERR_INTERNAL;   /* validated when stored: never */
			break;
		}
		metas[i].envelope = (ProtobufCBinaryData){ st.envelope_len, (uint8_t *)st.envelope };
		metas[i].bodystructure =
			(ProtobufCBinaryData){ st.bodystructure_len, (uint8_t *)st.bodystructure };
		metas[i].body = (ProtobufCBinaryData){ st.body_len, (uint8_t *)st.body };
		metas[i].parts = (ProtobufCBinaryData){ st.parts_len, (uint8_t *)st.parts };
	}
	if (ret == MAIL_OK) {
		Store__FetchMetaResponse resp = STORE__FETCH_META_RESPONSE__INIT;
		resp.messages = ptrs;
		resp.n_messages = n;
		resp.next_after_uid = next;
		pack_to(MAIL_OK, &resp.base, out);
	}
	free(ptrs);
	free(metas);
	free(infos);
	mailstore_metas_free(msgs, n);
	return ret;
}

static int exec_fetch_range(mailstore *store, const Store__FetchRangeRequest *req, buf *out)
{
	struct mailstore_message_info info;
	void *body;
	size_t len;
	uint64_t total;
	int ret = mailstore_fetch_range(store, req->user, req->mailbox, req->uid, req->offset,
					req->length, &info, &body, &len, &total);
	if (ret != MAIL_OK)
		return ret;
	Store__MessageInfo pbinfo;
	message_info_to_pb(&info, &pbinfo);
	Store__FetchRangeResponse resp = STORE__FETCH_RANGE_RESPONSE__INIT;
	resp.info = &pbinfo;
	resp.body.data = body;
	resp.body.len = len;
	resp.total = total;
	pack_to(MAIL_OK, &resp.base, out);
	free(body);
	mailstore_message_info_free(&info);
	return MAIL_OK;
}

static int exec_changes(mailstore *store, const Store__ChangesRequest *req, buf *out)
{
	if (req->phase > MAILSTORE_CHANGES_DONE)
		return MAIL_ERR_PARAMS;
	struct mailstore_changes_cursor cur = { (uint8_t)req->phase, req->after_modseq,
						req->after_uid };
	struct mailstore_changes ch;
	int ret = mailstore_changes(store, req->user, req->mailbox, req->since_modseq,
				    req->known_uidnext, &cur, &ch);
	if (ret != MAIL_OK)
		return ret;
	Store__ChangesResponse resp = STORE__CHANGES_RESPONSE__INIT;
	resp.highest_modseq = ch.highest_modseq;
	resp.uidnext = ch.uidnext;
	resp.exists = ch.exists;
	resp.expunged_exact = ch.expunged_exact != 0;
	struct pb_ranges added, expunged;
	ranges_to_pb(ch.added, ch.n_added, &added);
	ranges_to_pb(ch.expunged, ch.n_expunged, &expunged);
	resp.added = added.ptrs;
	resp.n_added = ch.n_added;
	resp.expunged = expunged.ptrs;
	resp.n_expunged = ch.n_expunged;
	struct pb_message_infos changed;
	message_infos_to_pb(ch.changed, ch.n_changed, &changed);
	resp.changed = changed.ptrs;
	resp.n_changed = ch.n_changed;
	resp.phase = cur.phase;
	resp.after_modseq = cur.after_modseq;
	resp.after_uid = cur.after_uid;
	pack_to(MAIL_OK, &resp.base, out);
	pb_message_infos_free(&changed);
	pb_ranges_free(&added);
	pb_ranges_free(&expunged);
	mailstore_changes_free(&ch);
	return MAIL_OK;
}

/* A user's usage (issue 12): read only, never creates INBOX. */
static int exec_usage(mailstore *store, const Store__UsageRequest *req, buf *out)
{
	struct mailstore_usage u;
	int ret = mailstore_usage(store, req->user, &u);
	if (ret != MAIL_OK)
		return ret;
	Store__UsageResponse resp = STORE__USAGE_RESPONSE__INIT;
	resp.bytes = u.bytes;
	resp.messages = u.messages;
	return pack_to(MAIL_OK, &resp.base, out);
}

/* One method's request type and executor (which packs the response). */
struct store_op {
	uint16_t method;
	const ProtobufCMessageDescriptor *request;
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
STORE_EXEC(exec_mailbox_create, Store__CreateMailboxRequest)
STORE_EXEC(exec_mailbox_delete, Store__DeleteMailboxRequest)
STORE_EXEC(exec_mailbox_rename, Store__RenameMailboxRequest)
STORE_EXEC(exec_user_purge, Store__UserPurgeRequest)
STORE_EXEC(exec_subscribe, Store__SubscribeRequest)
STORE_EXEC(exec_status, Store__StatusRequest)
STORE_EXEC(exec_open, Store__OpenRequest)
STORE_EXEC(exec_append, Store__AppendRequest)
STORE_EXEC(exec_copy, Store__CopyRequest)
STORE_EXEC(exec_fetch_meta, Store__FetchMetaRequest)
STORE_EXEC(exec_fetch_range, Store__FetchRangeRequest)
STORE_EXEC(exec_changes, Store__ChangesRequest)
STORE_EXEC(exec_usage, Store__UsageRequest)

/* STORE_OP_INBOX: a ListRequest whose apply creates INBOX (a read that
 * would create it on the primary alone would make replicas diverge). */
static const struct store_op store_ops[] = {
	{ STORE__METHOD__DELIVER, &store__deliver_request__descriptor,
	  exec_deliver_any, 1 },
	{ STORE__METHOD__LIST, &store__list_request__descriptor,
	  exec_list_any, 0 },
	{ STORE__METHOD__SELECT, &store__select_request__descriptor,
	  exec_select_any, 0 },
	{ STORE__METHOD__FETCH, &store__fetch_request__descriptor,
	  exec_fetch_any, 0 },
	{ STORE__METHOD__STORE_FLAGS, &store__store_flags_request__descriptor,
	  exec_store_flags_any, 1 },
	{ STORE__METHOD__EXPUNGE, &store__expunge_request__descriptor,
	  exec_expunge_any, 1 },
	{ STORE_OP_INBOX, &store__list_request__descriptor,
	  exec_list_any, 1 },
	{ STORE__METHOD__MAILBOX_CREATE, &store__create_mailbox_request__descriptor,
	  exec_mailbox_create_any, 1 },
	{ STORE__METHOD__MAILBOX_DELETE, &store__delete_mailbox_request__descriptor,
	  exec_mailbox_delete_any, 1 },
	{ STORE__METHOD__MAILBOX_RENAME, &store__rename_mailbox_request__descriptor,
	  exec_mailbox_rename_any, 1 },
	{ STORE__METHOD__USER_PURGE, &store__user_purge_request__descriptor,
	  exec_user_purge_any, 1 },
	{ STORE__METHOD__SUBSCRIBE, &store__subscribe_request__descriptor,
	  exec_subscribe_any, 1 },
	{ STORE__METHOD__STATUS, &store__status_request__descriptor,
	  exec_status_any, 0 },
	{ STORE__METHOD__OPEN, &store__open_request__descriptor,
	  exec_open_any, 0 },
	{ STORE__METHOD__APPEND, &store__append_request__descriptor,
	  exec_append_any, 1 },
	{ STORE__METHOD__COPY, &store__copy_request__descriptor,
	  exec_copy_any, 1 },
	{ STORE__METHOD__FETCH_META, &store__fetch_meta_request__descriptor,
	  exec_fetch_meta_any, 0 },
	{ STORE__METHOD__FETCH_RANGE, &store__fetch_range_request__descriptor,
	  exec_fetch_range_any, 0 },
	{ STORE__METHOD__CHANGES, &store__changes_request__descriptor,
	  exec_changes_any, 0 },
	{ STORE__METHOD__USAGE, &store__usage_request__descriptor,
	  exec_usage_any, 0 },
};

static const struct store_op *store_op_find(uint16_t method)
{
	for (size_t i = 0; i < sizeof store_ops / sizeof store_ops[0]; i++)
		if (store_ops[i].method == method)
			return &store_ops[i];
	return NULL;
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
	rpc_call_reply_packed(call, status, out.data, out.len);
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
		rpc_call_reply_packed(w->call, op_status, resp, len);
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

/* A write entering the log: a DELIVER or APPEND gets the structure record
 * of each message computed here, on the primary, into the entry (so every
 * replica stores the same bytes whatever analyser version it runs, and
 * only the primary spends the CPU). Other writes go as they came. */
static int propose_write(store_service *svc, uint32_t partition, const struct store_op *op,
			 const ProtobufCMessage *req, struct store_wait *w)
{
	if (op->method == STORE__METHOD__DELIVER) {
		Store__DeliverRequest copy = *(const Store__DeliverRequest *)req;
		buf st;
		buf_init(&st);
		store_structure_compute(copy.body.data, copy.body.len, &st);
		copy.structure = (ProtobufCBinaryData){ st.len, st.data };
		int ret = propose(svc, partition, op->method, &copy.base, w);
		buf_deinit(&st);
		return ret;
	}
	if (op->method == STORE__METHOD__APPEND) {
		Store__AppendRequest copy = *(const Store__AppendRequest *)req;
		size_t n = copy.n_messages;
		Store__AppendMessage *msgs = n > 0 ? xcalloc(n, sizeof *msgs) : NULL;
		Store__AppendMessage **ptrs = n > 0 ? xcalloc(n, sizeof *ptrs) : NULL;
		buf *st = n > 0 ? xcalloc(n, sizeof *st) : NULL;
		for (size_t i = 0; i < n; i++) {
			ptrs[i] = &msgs[i];
			if (copy.messages[i] == NULL) {
				store__append_message__init(&msgs[i]);
				continue;
			}
			msgs[i] = *copy.messages[i];
			buf_init(&st[i]);
			store_structure_compute(msgs[i].body.data, msgs[i].body.len, &st[i]);
			msgs[i].structure = (ProtobufCBinaryData){ st[i].len, st[i].data };
		}
		copy.messages = ptrs;
		int ret = propose(svc, partition, op->method, &copy.base, w);
		for (size_t i = 0; i < n; i++)
			buf_deinit(&st[i]);
		free(st);
		free(ptrs);
		free(msgs);
		return ret;
	}
	return propose(svc, partition, op->method, req, w);
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
		ret = propose_write(svc, partition, op, req, w);
	} else {
		int exists = 1;
		if (op->method != STORE__METHOD__FETCH && op->method != STORE__METHOD__USAGE &&
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
STORE_HANDLER(handle_mailbox_create, STORE__METHOD__MAILBOX_CREATE, Store__CreateMailboxRequest)
STORE_HANDLER(handle_mailbox_delete, STORE__METHOD__MAILBOX_DELETE, Store__DeleteMailboxRequest)
STORE_HANDLER(handle_mailbox_rename, STORE__METHOD__MAILBOX_RENAME, Store__RenameMailboxRequest)
STORE_HANDLER(handle_subscribe, STORE__METHOD__SUBSCRIBE, Store__SubscribeRequest)
STORE_HANDLER(handle_status, STORE__METHOD__STATUS, Store__StatusRequest)
STORE_HANDLER(handle_open, STORE__METHOD__OPEN, Store__OpenRequest)
STORE_HANDLER(handle_append, STORE__METHOD__APPEND, Store__AppendRequest)
STORE_HANDLER(handle_copy, STORE__METHOD__COPY, Store__CopyRequest)
STORE_HANDLER(handle_fetch_meta, STORE__METHOD__FETCH_META, Store__FetchMetaRequest)
STORE_HANDLER(handle_fetch_range, STORE__METHOD__FETCH_RANGE, Store__FetchRangeRequest)
STORE_HANDLER(handle_changes, STORE__METHOD__CHANGES, Store__ChangesRequest)
STORE_HANDLER(handle_user_purge, STORE__METHOD__USER_PURGE, Store__UserPurgeRequest)
STORE_HANDLER(handle_usage, STORE__METHOD__USAGE, Store__UsageRequest)

/* ---- WATCH: long polls answered by the changes they wait for --------------------
 * A held call is answered by the first of: the mailbox's change callback
 * with a modseq above the one asked (right after the apply that made it,
 * on this node: deliveries from the queue, APPEND, flags, expunges from
 * any frontend), its deletion or renaming (NOT_FOUND), the hold time
 * (STORE_WATCH_HOLD_MS, or less when the caller's deadline is nearer: the
 * current modseq), this node no longer being the primary of the user's
 * partition (NOT_PRIMARY: the client retries on the new primary with the
 * same modseq, so no change is lost), or the service's destruction
 * (UNAVAILABLE). The timer that checks the last three ticks every
 * STORE_WATCH_TICK_MS. */

static struct store_watch **watch_bucket(store_service *svc, const char *user)
{
	return &svc->watches[util_hash64(user, strlen(user)) % WATCH_BUCKETS];
}

static void watch_unlink(store_service *svc, struct store_watch *w)
{
	if (w->prev != NULL)
		w->prev->next = w->next;
	else
		*watch_bucket(svc, w->user) = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	svc->n_watches--;
}

/* Answer w (status, and modseq on MAIL_OK) and free it. */
static void watch_answer(store_service *svc, struct store_watch *w, int status, uint64_t modseq)
{
	watch_unlink(svc, w);
	if (status == MAIL_OK) {
		Store__WatchResponse resp = STORE__WATCH_RESPONSE__INIT;
		resp.highest_modseq = modseq;
		rpc_call_reply(w->call, MAIL_OK, &resp.base);
	} else {
		rpc_call_reply(w->call, status, NULL);
	}
	free(w->user);
	free(w->mailbox);
	free(w);
}

/* mailstore_change_cb: wake the calls held for that mailbox. */
static void watch_change_cb(const struct mailstore_change *c, void *arg)
{
	store_service *svc = arg;
	struct store_watch *w = *watch_bucket(svc, c->user);
	while (w != NULL) {
		struct store_watch *next = w->next;
		if (strcmp(w->user, c->user) == 0 && strcmp(w->mailbox, c->mailbox) == 0) {
			if (c->gone)
				watch_answer(svc, w, MAIL_ERR_NOT_FOUND, 0);
			else if (c->highest_modseq > w->modseq)
				watch_answer(svc, w, MAIL_OK, c->highest_modseq);
		}
		w = next;
	}
}

static void watch_tick_cb(uv_timer_t *t)
{
	store_service *svc = t->data;
	uint64_t now = util_now_mono_ms();
	for (size_t b = 0; b < WATCH_BUCKETS; b++) {
		struct store_watch *w = svc->watches[b];
		while (w != NULL) {
			struct store_watch *next = w->next;
			uint32_t partition;
			if (svc->parts != NULL &&
			    repl_host_primary_of(svc->parts, w->user, strlen(w->user), 1,
						 &partition) != MAIL_OK) {
				watch_answer(svc, w, MAIL_ERR_NOT_PRIMARY, 0);
			} else if (now >= w->deadline) {
				uint64_t modseq = 0;
				int ret = mailstore_highest_modseq(svc->store, w->user, w->mailbox,
								   &modseq);
				watch_answer(svc, w, ret, modseq);
			}
			w = next;
		}
	}
}

static void handle_watch(rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	store_service *svc = ctx;
	const Store__WatchRequest *req = (const Store__WatchRequest *)msg;
	if (svc->parts != NULL) {
		uint32_t partition;
		int ret = repl_host_primary_of(svc->parts, req->user, strlen(req->user), 1,
					       &partition);
		if (ret != MAIL_OK) {
			rpc_call_reply(call, ret, NULL);
			return;
		}
	}
	buf name;
	buf_init(&name);
	uint64_t modseq = 0;
	int ret = mailstore_mailbox_canon(svc->store, req->mailbox, &name) < 0
			  ? MAIL_ERR_PARAMS
			  : mailstore_highest_modseq(svc->store, req->user, req->mailbox, &modseq);
	if (ret == MAIL_OK && modseq <= req->modseq && svc->n_watches >= STORE_WATCH_MAX)
		ret = MAIL_ERR_LIMIT;
	if (ret != MAIL_OK || modseq > req->modseq) {
		buf_deinit(&name);
		Store__WatchResponse resp = STORE__WATCH_RESPONSE__INIT;
		resp.highest_modseq = modseq;
		rpc_call_reply(call, ret, ret == MAIL_OK ? &resp.base : NULL);
		return;
	}
	/* held: until a change, or the hold time (never past the caller's
	 * deadline, which it would no longer wait for) */
	uint64_t now = util_now_mono_ms();
	uint64_t deadline = now + svc->watch_hold_ms;
	uint64_t caller = rpc_call_deadline(call);
	if (caller > now + STORE_WATCH_MARGIN_MS && caller - STORE_WATCH_MARGIN_MS < deadline)
		deadline = caller - STORE_WATCH_MARGIN_MS;
	else if (caller <= now + STORE_WATCH_MARGIN_MS)
		deadline = now;
	struct store_watch *w = xcalloc(1, sizeof *w);
	w->call = call;
	w->user = xstrdup(req->user);
	size_t len;
	w->mailbox = (char *)buf_steal(&name, &len);
	w->modseq = req->modseq;
	w->deadline = deadline;
	struct store_watch **head = watch_bucket(svc, w->user);
	w->next = *head;
	if (*head != NULL)
		(*head)->prev = w;
	*head = w;
	svc->n_watches++;
}

size_t store_service_watches(const store_service *svc)
{
	return svc->n_watches;
}

void store_service_set_watch_hold(store_service *svc, uint32_t hold_ms)
{
	svc->watch_hold_ms = hold_ms > 0 ? hold_ms : STORE_WATCH_HOLD_MS;
}

/* ---- SEARCH, SORT, THREAD: on the thread pool ------------------------------------
 * They read many messages: each runs as a uv_work on the libuv thread pool
 * (the mailstore is thread-safe and each of their reads takes its lock
 * for one short call), so the loop goes on serving; store-search.h bounds
 * the work of one call. The request stays valid until the reply (the rpc
 * layer owns it); nothing of the service is used after the work is
 * queued, so it may be destroyed meanwhile. */

/* A search program from the wire: bounded (depth, keys) before anything
 * is built; strings must not hold a NUL. */
struct key_build {
	struct search_key *nodes;   /* MAILSEARCH_MAX_NODES at most */
	size_t n;
	struct search_uid_range *ranges;
	size_t n_ranges, cap_ranges;
	char **strs;
	size_t n_strs;
};

static int key_count(const Store__SearchKey *pb, unsigned depth, size_t *nodes, size_t *ranges)
{
	if (pb == NULL || depth > MAILSEARCH_MAX_DEPTH || ++*nodes > MAILSEARCH_MAX_NODES)
		return -1;
	*ranges += pb->n_ranges;
	for (size_t i = 0; i < pb->n_children; i++)
		if (key_count(pb->children[i], depth + 1, nodes, ranges) < 0)
			return -1;
	return 0;
}

static const char *key_str(struct key_build *kb, const ProtobufCBinaryData *d, int has)
{
	if (!has)
		return NULL;
	if (d->len > 0 && memchr(d->data, '\0', d->len) != NULL)
		return (const char *)-1;
	char *s = xstrndup(d->data != NULL ? (const char *)d->data : "", d->len);
	kb->strs[kb->n_strs++] = s;
	return s;
}

/* Fill *out from pb; its children go to kb->nodes (counted before). */
static int key_fill(struct key_build *kb, const Store__SearchKey *pb, struct search_key *out)
{
	memset(out, 0, sizeof *out);
	out->op = (enum search_op)pb->op;
	out->num = pb->num;
	out->str = key_str(kb, &pb->str, pb->has_str);
	out->str2 = key_str(kb, &pb->str2, pb->has_str2);
	if (out->str == (const char *)-1 || out->str2 == (const char *)-1)
		return -1;
	if (pb->n_ranges > 0) {
		out->ranges = kb->ranges + kb->n_ranges;
		out->n_ranges = pb->n_ranges;
		for (size_t i = 0; i < pb->n_ranges; i++) {
			const Store__UidRange *r = pb->ranges[i];
			kb->ranges[kb->n_ranges++] =
				(struct search_uid_range){ r != NULL ? r->first : 0,
							   r != NULL ? r->last : 0 };
		}
	}
	if (pb->n_children > 0) {
		struct search_key *children = kb->nodes + kb->n;
		kb->n += pb->n_children;
		out->children = children;
		out->n_children = pb->n_children;
		for (size_t i = 0; i < pb->n_children; i++)
			if (key_fill(kb, pb->children[i], &children[i]) < 0)
				return -1;
	}
	return 0;
}

static void key_build_free(struct key_build *kb)
{
	for (size_t i = 0; i < kb->n_strs; i++)
		free(kb->strs[i]);
	free(kb->strs);
	free(kb->nodes);
	free(kb->ranges);
	memset(kb, 0, sizeof *kb);
}

/* The program in kb->nodes[0], or -1 (PARAMS). */
static int key_build(const Store__SearchKey *pb, struct key_build *kb)
{
	memset(kb, 0, sizeof *kb);
	size_t nodes = 0, ranges = 0;
	if (key_count(pb, 1, &nodes, &ranges) < 0)
		return -1;
	kb->nodes = xcalloc(nodes, sizeof *kb->nodes);
	kb->ranges = ranges > 0 ? xcalloc(ranges, sizeof *kb->ranges) : NULL;
	kb->strs = xcalloc(2 * nodes, sizeof *kb->strs);
	kb->n = 1;
	if (key_fill(kb, pb, &kb->nodes[0]) < 0) {
		key_build_free(kb);
		return -1;
	}
	return 0;
}

struct search_work {
	uv_work_t req;
	mailstore *store;
	rpc_call *call;
	uint16_t method;
	const ProtobufCMessage *msg;
	int status;
	buf out;   /* the packed response on MAIL_OK */
};

static void search_work_cb(uv_work_t *req)
{
	struct search_work *w = req->data;
	int64_t now = util_now_wall_ms();
	struct key_build kb;
	w->status = MAIL_OK;
	if (w->method == STORE__METHOD__SEARCH) {
		const Store__SearchRequest *r = (const Store__SearchRequest *)w->msg;
		if (key_build(r->key, &kb) < 0) {
			w->status = MAIL_ERR_PARAMS;
			return;
		}
		uint32_t *uids, next;
		size_t n;
		uint64_t hm;
		w->status = store_search_page(w->store, r->user, r->mailbox, &kb.nodes[0],
					      r->after_uid, now, &uids, &n, &hm, &next);
		key_build_free(&kb);
		if (w->status != MAIL_OK)
			return;
		Store__SearchResponse resp = STORE__SEARCH_RESPONSE__INIT;
		resp.uids = uids;
		resp.n_uids = n;
		resp.highest_modseq = hm;
		resp.next_after_uid = next;
		pack_to(MAIL_OK, &resp.base, &w->out);
		free(uids);
	} else if (w->method == STORE__METHOD__SORT) {
		const Store__SortRequest *r = (const Store__SortRequest *)w->msg;
		if (r->n_criteria == 0 || r->n_criteria > 16 || key_build(r->key, &kb) < 0) {
			w->status = MAIL_ERR_PARAMS;
			return;
		}
		struct search_sort crit[16];
		for (size_t i = 0; i < r->n_criteria; i++) {
			crit[i].key = r->criteria[i] != NULL ? (enum search_sort_key)r->criteria[i]->key
							      : (enum search_sort_key)0;
			crit[i].reverse = r->criteria[i] != NULL && r->criteria[i]->reverse;
			if (crit[i].key < SEARCH_SORT_ARRIVAL || crit[i].key > SEARCH_SORT_DISPLAYTO)
				w->status = MAIL_ERR_PARAMS;
		}
		uint32_t *uids = NULL;
		size_t n = 0;
		if (w->status == MAIL_OK)
			w->status = store_sort(w->store, r->user, r->mailbox, crit, r->n_criteria,
					       &kb.nodes[0], now, &uids, &n);
		key_build_free(&kb);
		if (w->status != MAIL_OK)
			return;
		Store__SortResponse resp = STORE__SORT_RESPONSE__INIT;
		resp.uids = uids;
		resp.n_uids = n;
		pack_to(MAIL_OK, &resp.base, &w->out);
		free(uids);
	} else {
		const Store__ThreadRequest *r = (const Store__ThreadRequest *)w->msg;
		if (key_build(r->key, &kb) < 0) {
			w->status = MAIL_ERR_PARAMS;
			return;
		}
		buf threads;
		buf_init(&threads);
		w->status = store_thread(w->store, r->user, r->mailbox,
					 (enum search_thread_alg)r->algorithm, &kb.nodes[0], now,
					 &threads);
		key_build_free(&kb);
		if (w->status == MAIL_OK) {
			Store__ThreadResponse resp = STORE__THREAD_RESPONSE__INIT;
			resp.threads = (ProtobufCBinaryData){ threads.len, threads.data };
			pack_to(MAIL_OK, &resp.base, &w->out);
		}
		buf_deinit(&threads);
	}
}

static void search_after_cb(uv_work_t *req, int status)
{
	struct search_work *w = req->data;
	rpc_call_reply_packed(w->call, status < 0 ? MAIL_ERR_INTERNAL : w->status, w->out.data,
			      w->out.len);
	buf_deinit(&w->out);
	free(w);
}

static void handle_search_any(rpc_call *call, uint16_t method, const char *user,
			      const ProtobufCMessage *msg, store_service *svc)
{
	if (svc->parts != NULL) {
		uint32_t partition;
		int ret = repl_host_primary_of(svc->parts, user, strlen(user), 1, &partition);
		if (ret != MAIL_OK) {
			rpc_call_reply(call, ret, NULL);
			return;
		}
	}
	struct search_work *w = xcalloc(1, sizeof *w);
	w->req.data = w;
	w->store = svc->store;
	w->call = call;
	w->method = method;
	w->msg = msg;
	buf_init(&w->out);
	if (uv_queue_work(svc->loop, &w->req, search_work_cb, search_after_cb) != 0) {
		free(w);
		rpc_call_reply(call, MAIL_ERR_INTERNAL, NULL);
	}
}

static void handle_search(rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	handle_search_any(call, STORE__METHOD__SEARCH, ((const Store__SearchRequest *)msg)->user,
			  msg, ctx);
}

static void handle_sort(rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	handle_search_any(call, STORE__METHOD__SORT, ((const Store__SortRequest *)msg)->user, msg,
			  ctx);
}

static void handle_thread(rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	handle_search_any(call, STORE__METHOD__THREAD, ((const Store__ThreadRequest *)msg)->user,
			  msg, ctx);
}

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
	{ STORE__METHOD__MAILBOX_CREATE, "mailbox_create",
	  &store__create_mailbox_request__descriptor, handle_mailbox_create, STORE_MAILBOX_ROLES },
	{ STORE__METHOD__MAILBOX_DELETE, "mailbox_delete",
	  &store__delete_mailbox_request__descriptor, handle_mailbox_delete, STORE_MAILBOX_ROLES },
	{ STORE__METHOD__MAILBOX_RENAME, "mailbox_rename",
	  &store__rename_mailbox_request__descriptor, handle_mailbox_rename, STORE_MAILBOX_ROLES },
	{ STORE__METHOD__SUBSCRIBE, "subscribe", &store__subscribe_request__descriptor,
	  handle_subscribe, STORE_MAILBOX_ROLES },
	{ STORE__METHOD__STATUS, "status", &store__status_request__descriptor, handle_status,
	  STORE_MAILBOX_ROLES },
	{ STORE__METHOD__OPEN, "open", &store__open_request__descriptor, handle_open,
	  STORE_MAILBOX_ROLES },
	{ STORE__METHOD__APPEND, "append", &store__append_request__descriptor, handle_append,
	  STORE_MAILBOX_ROLES },
	{ STORE__METHOD__COPY, "copy", &store__copy_request__descriptor, handle_copy,
	  STORE_MAILBOX_ROLES },
	{ STORE__METHOD__FETCH_META, "fetch_meta", &store__fetch_meta_request__descriptor,
	  handle_fetch_meta, STORE_MAILBOX_ROLES },
	{ STORE__METHOD__FETCH_RANGE, "fetch_range", &store__fetch_range_request__descriptor,
	  handle_fetch_range, STORE_MAILBOX_ROLES },
	{ STORE__METHOD__CHANGES, "changes", &store__changes_request__descriptor, handle_changes,
	  STORE_MAILBOX_ROLES },
	/* erasing an account is the operator's, never a frontend's */
	{ STORE__METHOD__USER_PURGE, "user_purge", &store__user_purge_request__descriptor,
	  handle_user_purge, RPC_ROLE_ADMIN },
	/* usage: frontends (RCPT, IMAP QUOTA), queues (before a delivery),
	 * mailctl quota show */
	{ STORE__METHOD__USAGE, "usage", &store__usage_request__descriptor, handle_usage,
	  STORE_MAILBOX_ROLES | RPC_ROLE_QUEUE },
	{ STORE__METHOD__WATCH, "watch", &store__watch_request__descriptor, handle_watch,
	  STORE_MAILBOX_ROLES },
	{ STORE__METHOD__SEARCH, "search", &store__search_request__descriptor, handle_search,
	  STORE_MAILBOX_ROLES },
	{ STORE__METHOD__SORT, "sort", &store__sort_request__descriptor, handle_sort,
	  STORE_MAILBOX_ROLES },
	{ STORE__METHOD__THREAD, "thread", &store__thread_request__descriptor, handle_thread,
	  STORE_MAILBOX_ROLES },
};

int store_service_create(uv_loop_t *loop, mailstore *store, store_service **service_r)
{
	store_service *svc = xcalloc(1, sizeof *svc);
	svc->loop = loop;
	svc->store = store;
	svc->watch_hold_ms = STORE_WATCH_HOLD_MS;
	rpc_server_create(loop, STORE_SERVICE_NAME, store_methods,
			  sizeof store_methods / sizeof *store_methods, svc, &svc->server);
	mailstore_set_change_cb(store, watch_change_cb, svc);
	uv_timer_init(loop, &svc->watch_timer);
	svc->watch_timer.data = svc;
	uv_timer_start(&svc->watch_timer, watch_tick_cb, STORE_WATCH_TICK_MS, STORE_WATCH_TICK_MS);
	*service_r = svc;
	return 0;
}

int store_service_listen(store_service *svc, const char *host, int port, int *port_r,
			 const char **error_r)
{
	return rpc_server_listen(svc->server, host, port, port_r, error_r);
}

/* The timer's handle is inside the service: the service is freed once it
 * is closed. */
static void watch_timer_closed(uv_handle_t *h)
{
	free(h->data);
}

void store_service_destroy(store_service **service)
{
	store_service *svc = *service;
	if (svc == NULL)
		return;
	*service = NULL;
	/* every held call gets its answer before the server goes */
	for (size_t b = 0; b < WATCH_BUCKETS; b++)
		while (svc->watches[b] != NULL)
			watch_answer(svc, svc->watches[b], MAIL_ERR_UNAVAILABLE, 0);
	mailstore_set_change_cb(svc->store, NULL, NULL);
	rpc_server_destroy(&svc->server);
	uv_timer_stop(&svc->watch_timer);
	uv_close((uv_handle_t *)&svc->watch_timer, watch_timer_closed);
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

static int repl_apply_barrier(void *owner)
{
	return mailstore_apply_barrier(owner) == MAIL_OK ? 0 : -1;
}

const struct repl_host_ops *store_service_repl_ops(void)
{
	static const struct repl_host_ops ops = {
		repl_apply, repl_applied_index, NULL,
		repl_snapshot_open, repl_snapshot_next, repl_snapshot_close, repl_snapshot_install,
		repl_apply_barrier,
	};
	return &ops;
}
