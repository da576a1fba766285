/* imap-backend-store.c: struct imap_backend over the auth pool and the
 * store client (imap-backend-store.h).
 *
 * Each call copies its callback into a small heap context, converts the
 * protobuf response into the engine's plain structs, and frees the context
 * after the callback. Contexts never point back at the backend object, so
 * calls still pending after it is destroyed complete safely (the watch
 * groups are the one exception, and they are detached at destroy).
 *
 * Calls made of several store calls (open, changes, fetch_meta) keep their
 * state in their context and issue the next page from the previous one's
 * callback: a 1,000,000-message mailbox is a few dozen short store calls,
 * none with an answer near the RPC frame limit.
 */
#include "imap-backend-store.h"
#include "auth-pool.h"
#include "quota-client.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mail-error.h"
#include "util.h"
#include "sasl.h"
#include "xalloc.h"

#include <openssl/crypto.h>

/* The store's attribute bits are imap-backend.h's (store.proto says so). */
_Static_assert(IMAP_MBOX_SUBSCRIBED == 0x0001u && IMAP_MBOX_NONEXISTENT == 0x0002u &&
		       IMAP_MBOX_SENT == 0x0100u && IMAP_MBOX_ARCHIVE == 0x1000u,
	       "store.proto MailboxInfo.attrs uses the IMAP_MBOX_* bits");

#define WATCH_GROUP_BUCKETS 4096
/* After a WATCH that failed for good (the store client's deadline passed,
 * retries included): the next one, with the last modseq seen. */
#define WATCH_RETRY_MS 1000u
/* After NOT_FOUND (the mailbox went): sessions are told once, then the
 * group looks again this much later (it may come back). */
#define WATCH_GONE_RETRY_MS 5000u
/* After a WATCH answered with a change: the next one goes out this much
 * later. A change is told at once when the mailbox was quiet, and a busy
 * mailbox's changes (a session's own STORE, APPEND, EXPUNGE, each of which
 * answers the call) are told together, at most this late: two calls
 * (the answer and the next WATCH) per this many ms and mailbox instead of
 * two per change. Nothing is lost meanwhile: the next call carries the
 * modseq told, and the store answers it at once when it is behind. */
#define WATCH_REPOLL_MS 50u

struct watch_group;

struct imap_store_backend {
	auth_pool *auth;
	store_client *sc;
	quota_client *quota;       /* NULL: no quotas */
	uv_loop_t *loop;
	struct watch_group *groups[WATCH_GROUP_BUCKETS];
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
	info->modseq = m->modseq;
}

static struct imap_msg_info *imap_store_msg_infos(Store__MessageInfo **msgs, size_t n)
{
	struct imap_msg_info *infos = xcalloc(n + 1, sizeof(*infos));
	for (size_t i = 0; i < n; i++)
		imap_store_msg_info(msgs[i], &infos[i]);
	return infos;
}

/* box (views into m, valid while m is) from a MailboxInfo. */
static void imap_store_box(const Store__MailboxInfo *m, struct imap_mailbox_info *box)
{
	memset(box, 0, sizeof(*box));
	box->name = m->name == NULL || m->name[0] == '\0' ? "INBOX" : m->name;
	box->uidvalidity = m->uidvalidity;
	box->uidnext = m->uidnext;
	box->exists = m->exists;
	box->highest_modseq = m->highest_modseq;
	box->unseen = m->unseen;
	box->deleted = m->deleted;
	box->size = m->size;
	box->attrs = m->attrs;
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
			imap_store_box(m, &boxes[n++]);
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
	req.subscriptions = 1;   /* the NONEXISTENT subscribed names too */
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
		struct imap_mailbox_info box;
		imap_store_box(r->mailbox, &box);
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
		cb(status, NULL, 0, 0, c->arg);
	} else {
		const Store__ExpungeResponse *r = (const Store__ExpungeResponse *)resp;
		cb(MAIL_OK, r->expunged_uids, r->n_expunged_uids, r->highest_modseq, c->arg);
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

/* ---- issue 9: mailboxes ------------------------------------------------- */

static void imap_store_status_only_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	(void)resp;
	struct imap_store_call *c = arg;
	imap_backend_status_cb *cb = c->cb;
	cb(status, c->arg);
	free(c);
}

static void imap_store_create(void *ctx, const char *user, const char *mailbox,
			      unsigned special_use, imap_backend_status_cb *cb, void *arg)
{
	struct imap_store_backend *b = ctx;
	Store__CreateMailboxRequest req = STORE__CREATE_MAILBOX_REQUEST__INIT;
	req.user = (char *)user;
	req.mailbox = (char *)mailbox;
	req.special_use = special_use;
	store_client_mailbox_create(b->sc, &req, imap_store_status_only_cb,
				    imap_store_call_new(cb, arg));
}

static void imap_store_delete_mailbox(void *ctx, const char *user, const char *mailbox,
				      imap_backend_status_cb *cb, void *arg)
{
	struct imap_store_backend *b = ctx;
	Store__DeleteMailboxRequest req = STORE__DELETE_MAILBOX_REQUEST__INIT;
	req.user = (char *)user;
	req.mailbox = (char *)mailbox;
	store_client_mailbox_delete(b->sc, &req, imap_store_status_only_cb,
				    imap_store_call_new(cb, arg));
}

static void imap_store_rename(void *ctx, const char *user, const char *from, const char *to,
			      imap_backend_status_cb *cb, void *arg)
{
	struct imap_store_backend *b = ctx;
	Store__RenameMailboxRequest req = STORE__RENAME_MAILBOX_REQUEST__INIT;
	req.user = (char *)user;
	req.from = (char *)from;
	req.to = (char *)to;
	store_client_mailbox_rename(b->sc, &req, imap_store_status_only_cb,
				    imap_store_call_new(cb, arg));
}

static void imap_store_subscribe(void *ctx, const char *user, const char *mailbox, int on,
				 imap_backend_status_cb *cb, void *arg)
{
	struct imap_store_backend *b = ctx;
	Store__SubscribeRequest req = STORE__SUBSCRIBE_REQUEST__INIT;
	req.user = (char *)user;
	req.mailbox = (char *)mailbox;
	req.on = on != 0;
	store_client_subscribe(b->sc, &req, imap_store_status_only_cb,
			       imap_store_call_new(cb, arg));
}

static void imap_store_status_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	struct imap_store_call *c = arg;
	imap_backend_mailbox_cb *cb = c->cb;
	const Store__MailboxResponse *r = (const Store__MailboxResponse *)resp;
	if (status == MAIL_OK && r->mailbox == NULL)
		status = MAIL_ERR_INTERNAL;
	if (status != MAIL_OK) {
		cb(status, NULL, c->arg);
	} else {
		struct imap_mailbox_info box;
		imap_store_box(r->mailbox, &box);
		cb(MAIL_OK, &box, c->arg);
	}
	free(c);
}

static void imap_store_status(void *ctx, const char *user, const char *mailbox,
			      imap_backend_mailbox_cb *cb, void *arg)
{
	struct imap_store_backend *b = ctx;
	Store__StatusRequest req = STORE__STATUS_REQUEST__INIT;
	req.user = (char *)user;
	req.mailbox = (char *)mailbox;
	store_client_status(b->sc, &req, imap_store_status_cb, imap_store_call_new(cb, arg));
}

/* ---- uid ranges ----------------------------------------------------------- */

struct ranges {
	struct search_uid_range *r;
	size_t n, cap;
};

static void ranges_add(struct ranges *rs, uint32_t first, uint32_t last)
{
	if (rs->n == rs->cap) {
		rs->cap = rs->cap > 0 ? rs->cap * 2 : 16;
		rs->r = xrealloc(rs->r, rs->cap * sizeof(*rs->r));
	}
	rs->r[rs->n++] = (struct search_uid_range){ first, last };
}

static int range_cmp(const void *a, const void *b)
{
	const struct search_uid_range *x = a, *y = b;
	return x->first < y->first ? -1 : x->first > y->first;
}

/* Sort and merge overlapping or adjacent ranges, in place. */
static void ranges_normalize(struct ranges *rs)
{
	if (rs->n < 2)
		return;
	/* pages arrive ascending: sort only what is not (a 1,000,000-range
	 * SELECT spent most of its frontend CPU in this qsort) */
	size_t i0 = 1;
	while (i0 < rs->n && rs->r[i0 - 1].first <= rs->r[i0].first)
		i0++;
	if (i0 < rs->n)
		qsort(rs->r, rs->n, sizeof(*rs->r), range_cmp);
	size_t o = 0;
	for (size_t i = 1; i < rs->n; i++) {
		struct search_uid_range *last = &rs->r[o];
		if (rs->r[i].first <= last->last ||
		    (last->last != UINT32_MAX && rs->r[i].first == last->last + 1)) {
			if (rs->r[i].last > last->last)
				last->last = rs->r[i].last;
		} else {
			rs->r[++o] = rs->r[i];
		}
	}
	rs->n = o + 1;
}

static int ranges_contain(const struct ranges *rs, uint32_t uid)
{
	size_t lo = 0, hi = rs->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (uid < rs->r[mid].first)
			hi = mid;
		else if (uid > rs->r[mid].last)
			lo = mid + 1;
		else
			return 1;
	}
	return 0;
}

/* A repeated UidRange for a request (views into r): free with free(). */
static Store__UidRange **ranges_pb(const struct search_uid_range *r, size_t n,
				   Store__UidRange **pbs_r)
{
	Store__UidRange *pbs = xcalloc(n + 1, sizeof(*pbs));
	Store__UidRange **ptrs = xcalloc(n + 1, sizeof(*ptrs));
	for (size_t i = 0; i < n; i++) {
		store__uid_range__init(&pbs[i]);
		pbs[i].first = r[i].first;
		pbs[i].last = r[i].last;
		ptrs[i] = &pbs[i];
	}
	*pbs_r = pbs;
	return ptrs;
}

/* ---- open (SELECT in pages) ------------------------------------------------ */

struct imap_store_open {
	store_client *sc;
	imap_backend_open_cb *cb;
	void *arg;
	char *user;
	char *mailbox;
	Store__MailboxInfo *box;     /* the first page's, unpacked copy */
	uint32_t first_unseen;
	struct ranges uids;
};

static void imap_store_open_page(struct imap_store_open *o, uint32_t after_uid);

static void imap_store_open_free(struct imap_store_open *o)
{
	if (o->box != NULL)
		protobuf_c_message_free_unpacked(&o->box->base, NULL);
	free(o->uids.r);
	free(o->user);
	free(o->mailbox);
	free(o);
}

static void imap_store_open_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	struct imap_store_open *o = arg;
	const Store__OpenResponse *r = (const Store__OpenResponse *)resp;
	if (status == MAIL_OK && o->box == NULL) {
		if (r->mailbox == NULL) {
			status = MAIL_ERR_INTERNAL;
		} else {
			/* kept across pages: a copy of the first page's mailbox */
			size_t len = protobuf_c_message_get_packed_size(&r->mailbox->base);
			uint8_t *p = xmalloc(len + 1);
			protobuf_c_message_pack(&r->mailbox->base, p);
			o->box = (Store__MailboxInfo *)protobuf_c_message_unpack(
				&store__mailbox_info__descriptor, NULL, len, p);
			free(p);
			o->first_unseen = r->first_unseen_uid;
			if (o->box == NULL)
				status = MAIL_ERR_INTERNAL;
		}
	}
	if (status != MAIL_OK) {
		o->cb(status, NULL, NULL, 0, NULL, 0, 0, o->arg);
		imap_store_open_free(o);
		return;
	}
	for (size_t i = 0; i < r->n_uids; i++)
		if (r->uids[i] != NULL && r->uids[i]->first <= r->uids[i]->last)
			ranges_add(&o->uids, r->uids[i]->first, r->uids[i]->last);
	if (r->next_after_uid != 0) {
		imap_store_open_page(o, r->next_after_uid);
		return;
	}
	ranges_normalize(&o->uids);
	struct imap_mailbox_info box;
	imap_store_box(o->box, &box);
	/* the pages are not one snapshot: EXISTS is what was gathered (an
	 * expunge between two pages shows in changes() later, for a uid the
	 * session never had) */
	uint64_t count = 0;
	for (size_t i = 0; i < o->uids.n; i++)
		count += (uint64_t)o->uids.r[i].last - o->uids.r[i].first + 1;
	box.exists = (uint32_t)count;
	o->cb(MAIL_OK, &box, o->uids.r, o->uids.n, (const char *const *)o->box->keywords,
	      o->box->n_keywords, o->first_unseen, o->arg);
	imap_store_open_free(o);
}

static void imap_store_open_page(struct imap_store_open *o, uint32_t after_uid)
{
	Store__OpenRequest req = STORE__OPEN_REQUEST__INIT;
	req.user = o->user;
	req.mailbox = o->mailbox;
	req.after_uid = after_uid;
	/* later pages stop at the first page's uidnext: newer messages come
	 * through changes() */
	req.below_uid = o->box != NULL ? o->box->uidnext : 0;
	store_client_open(o->sc, &req, imap_store_open_cb, o);
}

static void imap_store_open(void *ctx, const char *user, const char *mailbox,
			    imap_backend_open_cb *cb, void *arg)
{
	struct imap_store_backend *b = ctx;
	struct imap_store_open *o = xcalloc(1, sizeof(*o));
	o->sc = b->sc;
	o->cb = cb;
	o->arg = arg;
	o->user = xstrdup(user);
	o->mailbox = xstrdup(mailbox);
	imap_store_open_page(o, 0);
}

/* ---- APPEND, COPY ------------------------------------------------------------ */

static void imap_store_append_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	struct imap_store_call *c = arg;
	imap_backend_append_cb *cb = c->cb;
	if (status != MAIL_OK) {
		cb(status, 0, NULL, 0, 0, c->arg);
	} else {
		const Store__AppendResponse *r = (const Store__AppendResponse *)resp;
		cb(MAIL_OK, r->uidvalidity, r->uids, r->n_uids, r->highest_modseq, c->arg);
	}
	free(c);
}

/* ---- quotas (issue 12) ------------------------------------------------------
 * APPEND and COPY of a user with a limit first ask its usage (quota-client.h),
 * refuse at once what would pass its own or its tenant's limit (NO
 * [OVERQUOTA]), and hand the store the limits that apply
 * (quota_view_effective), which it checks again atomically with the write.
 * The request is packed while the quota is read (the engine's arguments
 * are borrowed for the call only). A MOVE changes no usage: no check. */

struct imap_store_quota_write {
	store_client *sc;
	quota_client *qc;
	int copy;                  /* CopyRequest, else AppendRequest */
	uint8_t *packed;
	size_t len;
	uint64_t bytes, messages;  /* what it adds (COPY: 1, 1: "at or over") */
	void *cb;
	void *arg;
};

static void imap_store_append_cb(int status, const ProtobufCMessage *resp, void *arg);
static void imap_store_copy_cb(int status, const ProtobufCMessage *resp, void *arg);

static void imap_store_quota_write_cb(int status, const struct quota_view *v, void *arg)
{
	struct imap_store_quota_write *w = arg;
	struct directory_quota eff = { 0, 0 };
	if (status == MAIL_OK && quota_view_over(v, w->bytes, w->messages)) {
		quota_client_refused(w->qc, QUOTA_WHERE_APPEND);
		struct imap_store_call *c = imap_store_call_new(w->cb, w->arg);
		if (w->copy)
			imap_store_copy_cb(MAIL_ERR_QUOTA, NULL, c);
		else
			imap_store_append_cb(MAIL_ERR_QUOTA, NULL, c);
		free(w->packed);
		free(w);
		return;
	}
	if (status == MAIL_OK)
		quota_view_effective(v, &eff);
	/* a directory error: the write goes without limits (never refused
	 * for an outage) */
	struct imap_store_call *c = imap_store_call_new(w->cb, w->arg);
	if (w->copy) {
		Store__CopyRequest *r = store__copy_request__unpack(NULL, w->len, w->packed);
		r->quota_storage = eff.storage;
		r->quota_messages = eff.messages;
		store_client_copy(w->sc, r, imap_store_copy_cb, c);
		store__copy_request__free_unpacked(r, NULL);
	} else {
		Store__AppendRequest *r = store__append_request__unpack(NULL, w->len, w->packed);
		r->quota_storage = eff.storage;
		r->quota_messages = eff.messages;
		store_client_append(w->sc, r, imap_store_append_cb, c);
		store__append_request__free_unpacked(r, NULL);
	}
	free(w->packed);
	free(w);
}

/* Start the quota read before the write req (packed now). */
static void imap_store_quota_write(struct imap_store_backend *b, const char *user,
				   const ProtobufCMessage *req, int copy, uint64_t bytes,
				   uint64_t messages, void *cb, void *arg)
{
	struct imap_store_quota_write *w = xcalloc(1, sizeof(*w));
	w->sc = b->sc;
	w->qc = b->quota;
	w->copy = copy;
	w->len = protobuf_c_message_get_packed_size(req);
	w->packed = xmalloc(w->len + 1);
	protobuf_c_message_pack(req, w->packed);
	w->bytes = bytes;
	w->messages = messages;
	w->cb = cb;
	w->arg = arg;
	quota_client_get(b->quota, user, NULL, NULL, imap_store_quota_write_cb, w);
}

static void imap_store_quota_cb(int status, const struct quota_view *v, void *arg)
{
	struct imap_store_call *c = arg;
	imap_backend_quota_cb *cb = c->cb;
	struct imap_quota q = { 0 };
	if (status == MAIL_ERR_NOT_FOUND)
		status = MAIL_OK;   /* a user gone meanwhile: nothing limited */
	if (status == MAIL_OK && v->user_known) {
		struct directory_quota eff;
		quota_view_effective(v, &eff);
		q.has_storage = eff.storage > 0;
		q.has_messages = eff.messages > 0;
		q.storage_limit = eff.storage;
		q.messages_limit = eff.messages;
		q.storage_used = v->user.bytes;
		q.messages_used = v->user.messages;
	}
	cb(status, &q, c->arg);
	free(c);
}

struct imap_store_noquota {
	uv_work_t work;
	imap_backend_quota_cb *cb;
	void *arg;
};

static void imap_store_noquota_work(uv_work_t *w)
{
	(void)w;
}

static void imap_store_noquota_done(uv_work_t *w, int status)
{
	(void)status;
	struct imap_store_noquota *nq = w->data;
	struct imap_quota none = { 0 };
	nq->cb(MAIL_OK, &none, nq->arg);
	free(nq);
}

static void imap_store_quota(void *ctx, const char *user, imap_backend_quota_cb *cb, void *arg)
{
	struct imap_store_backend *b = ctx;
	if (b->quota == NULL) {
		/* no quotas: answered from the loop, never from inside the
		 * call (imap-backend.h) */
		struct imap_store_noquota *nq = xcalloc(1, sizeof(*nq));
		nq->work.data = nq;
		nq->cb = cb;
		nq->arg = arg;
		if (uv_queue_work(b->loop, &nq->work, imap_store_noquota_work,
				  imap_store_noquota_done) < 0)
			imap_store_noquota_done(&nq->work, 0);
		return;
	}
	quota_client_get(b->quota, user, NULL, NULL, imap_store_quota_cb,
			 imap_store_call_new(cb, arg));
}

void imap_store_backend_set_quota(imap_store_backend *b, quota_client *qc)
{
	b->quota = qc;
}

static void imap_store_append(void *ctx, const char *user, const char *mailbox,
			      const struct imap_append_msg *msgs, size_t n,
			      imap_backend_append_cb *cb, void *arg)
{
	struct imap_store_backend *b = ctx;
	Store__AppendMessage *am = xcalloc(n + 1, sizeof(*am));
	Store__AppendMessage **ptrs = xcalloc(n + 1, sizeof(*ptrs));
	for (size_t i = 0; i < n; i++) {
		store__append_message__init(&am[i]);
		am[i].body = (ProtobufCBinaryData){ msgs[i].len, (uint8_t *)msgs[i].data };
		am[i].flags = (char **)msgs[i].flags;
		am[i].n_flags = msgs[i].n_flags;
		am[i].internal_date = msgs[i].internal_date_ms;
		ptrs[i] = &am[i];
	}
	Store__AppendRequest req = STORE__APPEND_REQUEST__INIT;
	req.user = (char *)user;
	req.mailbox = (char *)mailbox;
	req.messages = ptrs;
	req.n_messages = n;
	uint64_t bytes = 0;
	for (size_t i = 0; i < n; i++)
		bytes += msgs[i].len;
	if (b->quota != NULL)
		imap_store_quota_write(b, user, &req.base, 0, bytes, n, (void *)cb, arg);
	else
		store_client_append(b->sc, &req, imap_store_append_cb,
				    imap_store_call_new(cb, arg));
	free(ptrs);
	free(am);
}

static void imap_store_copy_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	struct imap_store_call *c = arg;
	imap_backend_copy_cb *cb = c->cb;
	const Store__CopyResponse *r = (const Store__CopyResponse *)resp;
	if (status == MAIL_OK && r->n_src_uids != r->n_dst_uids)
		status = MAIL_ERR_INTERNAL;
	if (status != MAIL_OK)
		cb(status, 0, NULL, NULL, 0, c->arg);
	else
		cb(MAIL_OK, r->dst_uidvalidity, r->src_uids, r->dst_uids, r->n_src_uids, c->arg);
	free(c);
}

static void imap_store_copy(void *ctx, const char *user, const char *from,
			    const struct search_uid_range *uids, size_t n_ranges, const char *to,
			    int move, imap_backend_copy_cb *cb, void *arg)
{
	struct imap_store_backend *b = ctx;
	Store__UidRange *pbs;
	Store__UidRange **ptrs = ranges_pb(uids, n_ranges, &pbs);
	Store__CopyRequest req = STORE__COPY_REQUEST__INIT;
	req.user = (char *)user;
	req.from = (char *)from;
	req.to = (char *)to;
	req.uids = ptrs;
	req.n_uids = n_ranges;
	req.move = move != 0;
	if (b->quota != NULL && !move)
		imap_store_quota_write(b, user, &req.base, 1, 1, 1, (void *)cb, arg);
	else
		store_client_copy(b->sc, &req, imap_store_copy_cb, imap_store_call_new(cb, arg));
	free(ptrs);
	free(pbs);
}

/* ---- fetch_meta (a callback per page) -------------------------------------------- */

struct imap_store_meta {
	store_client *sc;
	imap_backend_meta_cb *cb;
	void *arg;
	char *user;
	char *mailbox;
	struct search_uid_range *ranges;
	size_t n_ranges;
	int structure;
	int content;
	uint64_t changed_since;
};

static void imap_store_meta_page(struct imap_store_meta *m, uint32_t after_uid);

static void imap_store_meta_free(struct imap_store_meta *m)
{
	free(m->ranges);
	free(m->user);
	free(m->mailbox);
	free(m);
}

/* A NUL-terminated copy of bytes (the engine's strings), or NULL. */
static char *bytes_str(const ProtobufCBinaryData *d, int want)
{
	if (!want)
		return NULL;
	return xstrndup(d->data != NULL ? (const char *)d->data : "", d->len);
}

static void imap_store_meta_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	struct imap_store_meta *m = arg;
	if (status != MAIL_OK) {
		m->cb(status, NULL, 0, 0, m->arg);
		imap_store_meta_free(m);
		return;
	}
	const Store__FetchMetaResponse *r = (const Store__FetchMetaResponse *)resp;
	size_t n = r->n_messages;
	struct imap_msg_meta *metas = xcalloc(n + 1, sizeof(*metas));
	char **strs = xcalloc(3 * n + 1, sizeof(*strs));
	for (size_t i = 0; i < n; i++) {
		const Store__MessageMeta *mm = r->messages[i];
		if (mm == NULL || mm->info == NULL)
			continue;
		struct imap_msg_meta *o = &metas[i];
		o->uid = mm->info->uid;
		o->size = mm->info->size;
		o->internal_date_ms = mm->info->internal_date;
		o->modseq = mm->info->modseq;
		o->flags = (const char *const *)mm->info->flags;
		o->n_flags = mm->info->n_flags;
		if (m->structure) {
			o->envelope = strs[3 * i] = bytes_str(&mm->envelope, 1);
			o->bodystructure = strs[3 * i + 1] = bytes_str(&mm->bodystructure, 1);
			o->body = strs[3 * i + 2] = bytes_str(&mm->body, 1);
			o->parts = mm->parts.data;
			o->parts_len = mm->parts.len;
		}
		if (m->content && mm->has_content && mm->content.len == o->size) {
			o->content = mm->content.data != NULL ? mm->content.data : (const uint8_t *)"";
			o->content_len = mm->content.len;
		}
	}
	int more = r->next_after_uid != 0;
	m->cb(MAIL_OK, metas, n, more, m->arg);
	for (size_t i = 0; i < 3 * n; i++)
		free(strs[i]);
	free(strs);
	free(metas);
	if (more)
		imap_store_meta_page(m, r->next_after_uid);
	else
		imap_store_meta_free(m);
}

static void imap_store_meta_page(struct imap_store_meta *m, uint32_t after_uid)
{
	Store__UidRange *pbs;
	Store__UidRange **ptrs = ranges_pb(m->ranges, m->n_ranges, &pbs);
	Store__FetchMetaRequest req = STORE__FETCH_META_REQUEST__INIT;
	req.user = m->user;
	req.mailbox = m->mailbox;
	req.uids = ptrs;
	req.n_uids = m->n_ranges;
	req.structure = m->structure;
	req.content_max = m->content ? IMAP_META_CONTENT_MAX : 0;
	req.changed_since = m->changed_since;
	req.after_uid = after_uid;
	store_client_fetch_meta(m->sc, &req, imap_store_meta_cb, m);
	free(ptrs);
	free(pbs);
}

static void imap_store_fetch_meta(void *ctx, const char *user, const char *mailbox,
				  const struct search_uid_range *uids, size_t n_ranges,
				  unsigned what, uint64_t changed_since, imap_backend_meta_cb *cb,
				  void *arg)
{
	struct imap_store_backend *b = ctx;
	struct imap_store_meta *m = xcalloc(1, sizeof(*m));
	m->sc = b->sc;
	m->cb = cb;
	m->arg = arg;
	m->user = xstrdup(user);
	m->mailbox = xstrdup(mailbox);
	m->ranges = xcalloc(n_ranges + 1, sizeof(*m->ranges));
	memcpy(m->ranges, uids, n_ranges * sizeof(*uids));
	m->n_ranges = n_ranges;
	m->structure = (what & IMAP_META_STRUCTURE) != 0;
	m->content = (what & IMAP_META_CONTENT) != 0;
	m->changed_since = changed_since;
	imap_store_meta_page(m, 0);
}

static void imap_store_fetch_range_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	struct imap_store_call *c = arg;
	imap_backend_fetch_cb *cb = c->cb;
	if (status != MAIL_OK) {
		cb(status, NULL, NULL, 0, c->arg);
	} else {
		const Store__FetchRangeResponse *r = (const Store__FetchRangeResponse *)resp;
		struct imap_msg_info info;
		imap_store_msg_info(r->info, &info);
		cb(MAIL_OK, &info, r->body.data != NULL ? r->body.data : (const uint8_t *)"",
		   r->body.len, c->arg);
	}
	free(c);
}

static void imap_store_fetch_range(void *ctx, const char *user, const char *mailbox,
				   uint32_t uid, uint64_t offset, uint64_t length,
				   imap_backend_fetch_cb *cb, void *arg)
{
	struct imap_store_backend *b = ctx;
	Store__FetchRangeRequest req = STORE__FETCH_RANGE_REQUEST__INIT;
	req.user = (char *)user;
	req.mailbox = (char *)mailbox;
	req.uid = uid;
	req.offset = offset;
	req.length = length;
	store_client_fetch_range(b->sc, &req, imap_store_fetch_range_cb,
				 imap_store_call_new(cb, arg));
}

/* ---- changes (gathered over pages) ------------------------------------------------ */

/* A changed message kept across pages (its flags copied). */
struct changed_msg {
	uint32_t uid;
	uint64_t size;
	int64_t internal_date_ms;
	uint64_t modseq;
	char **flags;
	size_t n_flags;
};

struct imap_store_changes {
	store_client *sc;
	imap_backend_changes_cb *cb;
	void *arg;
	char *user;
	char *mailbox;
	uint64_t since;
	uint32_t known_uidnext;
	struct ranges added, expunged;
	int exact;
	uint64_t highest_modseq;
	uint32_t uidnext, exists;
	struct changed_msg *changed;
	size_t n_changed, cap_changed;
};

static void changed_free(struct changed_msg *c)
{
	for (size_t i = 0; i < c->n_flags; i++)
		free(c->flags[i]);
	free(c->flags);
}

static void imap_store_changes_free(struct imap_store_changes *ch)
{
	for (size_t i = 0; i < ch->n_changed; i++)
		changed_free(&ch->changed[i]);
	free(ch->changed);
	free(ch->added.r);
	free(ch->expunged.r);
	free(ch->user);
	free(ch->mailbox);
	free(ch);
}

static int changed_cmp(const void *a, const void *b)
{
	const struct changed_msg *x = a, *y = b;
	if (x->uid != y->uid)
		return x->uid < y->uid ? -1 : 1;
	return x->modseq < y->modseq ? -1 : x->modseq > y->modseq;
}

static void imap_store_changes_page(struct imap_store_changes *ch, uint32_t phase,
				    uint64_t after_modseq, uint32_t after_uid);

/* Every page is in: one imap_changes. A message seen in two pages keeps
 * its latest state; one expunged meanwhile is only in expunged. */
static void imap_store_changes_done(struct imap_store_changes *ch)
{
	ranges_normalize(&ch->added);
	ranges_normalize(&ch->expunged);
	if (ch->n_changed > 1) /* changed is NULL when nothing changed */
		qsort(ch->changed, ch->n_changed, sizeof(*ch->changed), changed_cmp);
	struct imap_msg_meta *metas = xcalloc(ch->n_changed + 1, sizeof(*metas));
	size_t n = 0;
	for (size_t i = 0; i < ch->n_changed; i++) {
		const struct changed_msg *c = &ch->changed[i];
		if (i + 1 < ch->n_changed && ch->changed[i + 1].uid == c->uid)
			continue;   /* a later state of it follows */
		if (ranges_contain(&ch->expunged, c->uid))
			continue;
		metas[n++] = (struct imap_msg_meta){
			.uid = c->uid, .size = c->size, .internal_date_ms = c->internal_date_ms,
			.modseq = c->modseq, .flags = (const char *const *)c->flags,
			.n_flags = c->n_flags,
		};
	}
	struct imap_changes out = {
		.highest_modseq = ch->highest_modseq, .uidnext = ch->uidnext, .exists = ch->exists,
		.added = ch->added.r, .n_added = ch->added.n,
		.expunged = ch->expunged.r, .n_expunged = ch->expunged.n,
		.expunged_exact = ch->exact, .changed = metas, .n_changed = n,
	};
	ch->cb(MAIL_OK, &out, ch->arg);
	free(metas);
	imap_store_changes_free(ch);
}

static void imap_store_changes_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	struct imap_store_changes *ch = arg;
	if (status != MAIL_OK) {
		ch->cb(status, NULL, ch->arg);
		imap_store_changes_free(ch);
		return;
	}
	const Store__ChangesResponse *r = (const Store__ChangesResponse *)resp;
	ch->highest_modseq = r->highest_modseq;
	ch->uidnext = r->uidnext;
	ch->exists = r->exists;
	ch->exact = r->expunged_exact;
	for (size_t i = 0; i < r->n_added; i++)
		if (r->added[i] != NULL && r->added[i]->first <= r->added[i]->last)
			ranges_add(&ch->added, r->added[i]->first, r->added[i]->last);
	for (size_t i = 0; i < r->n_expunged; i++)
		if (r->expunged[i] != NULL && r->expunged[i]->first <= r->expunged[i]->last)
			ranges_add(&ch->expunged, r->expunged[i]->first, r->expunged[i]->last);
	for (size_t i = 0; i < r->n_changed; i++) {
		const Store__MessageInfo *m = r->changed[i];
		if (m == NULL)
			continue;
		if (ch->n_changed == ch->cap_changed) {
			ch->cap_changed = ch->cap_changed > 0 ? ch->cap_changed * 2 : 16;
			ch->changed = xrealloc(ch->changed, ch->cap_changed * sizeof(*ch->changed));
		}
		struct changed_msg *c = &ch->changed[ch->n_changed++];
		*c = (struct changed_msg){ .uid = m->uid, .size = m->size,
					   .internal_date_ms = m->internal_date,
					   .modseq = m->modseq };
		c->flags = xcalloc(m->n_flags + 1, sizeof(*c->flags));
		for (size_t j = 0; j < m->n_flags; j++)
			c->flags[c->n_flags++] = xstrdup(m->flags[j]);
	}
	if (r->phase >= 4) {
		imap_store_changes_done(ch);
		return;
	}
	imap_store_changes_page(ch, r->phase, r->after_modseq, r->after_uid);
}

static void imap_store_changes_page(struct imap_store_changes *ch, uint32_t phase,
				    uint64_t after_modseq, uint32_t after_uid)
{
	Store__ChangesRequest req = STORE__CHANGES_REQUEST__INIT;
	req.user = ch->user;
	req.mailbox = ch->mailbox;
	req.since_modseq = ch->since;
	req.known_uidnext = ch->known_uidnext;
	req.phase = phase;
	req.after_modseq = after_modseq;
	req.after_uid = after_uid;
	store_client_changes(ch->sc, &req, imap_store_changes_cb, ch);
}

static void imap_store_changes(void *ctx, const char *user, const char *mailbox,
			       uint64_t since_modseq, uint32_t known_uidnext,
			       imap_backend_changes_cb *cb, void *arg)
{
	struct imap_store_backend *b = ctx;
	struct imap_store_changes *ch = xcalloc(1, sizeof(*ch));
	ch->sc = b->sc;
	ch->cb = cb;
	ch->arg = arg;
	ch->user = xstrdup(user);
	ch->mailbox = xstrdup(mailbox);
	ch->since = since_modseq;
	ch->known_uidnext = known_uidnext;
	imap_store_changes_page(ch, 0, 0, 0);
}

/* ---- SEARCH, SORT, THREAD --------------------------------------------------------
 * Evaluated on the store node (store.proto SEARCH/SORT/THREAD): the
 * program crosses as a SearchKey tree; SEARCH comes back in pages, whose
 * uids are gathered before the callback. */

/* The SearchKey tree of key: every node in one array (freed with free()),
 * the strings borrowed from key. */
struct pb_key {
	Store__SearchKey *nodes;
	Store__SearchKey **ptrs;   /* children arrays */
	Store__UidRange *ranges;
	Store__UidRange **rptrs;
	size_t n, n_ptrs, n_ranges;
};

static void pb_key_count(const struct search_key *k, size_t *nodes, size_t *ranges)
{
	(*nodes)++;
	*ranges += k->n_ranges;
	for (size_t i = 0; i < k->n_children; i++)
		pb_key_count(&k->children[i], nodes, ranges);
}

static void pb_key_fill(struct pb_key *pk, const struct search_key *k, Store__SearchKey *out)
{
	store__search_key__init(out);
	out->op = (uint32_t)k->op;
	out->num = k->num;
	if (k->str != NULL) {
		out->has_str = 1;
		out->str = (ProtobufCBinaryData){ strlen(k->str), (uint8_t *)k->str };
	}
	if (k->str2 != NULL) {
		out->has_str2 = 1;
		out->str2 = (ProtobufCBinaryData){ strlen(k->str2), (uint8_t *)k->str2 };
	}
	if (k->n_ranges > 0) {
		out->ranges = pk->rptrs + pk->n_ranges;
		out->n_ranges = k->n_ranges;
		for (size_t i = 0; i < k->n_ranges; i++) {
			Store__UidRange *r = &pk->ranges[pk->n_ranges];
			store__uid_range__init(r);
			r->first = k->ranges[i].first;
			r->last = k->ranges[i].last;
			pk->rptrs[pk->n_ranges++] = r;
		}
	}
	if (k->n_children > 0) {
		Store__SearchKey **children = pk->ptrs + pk->n_ptrs;
		pk->n_ptrs += k->n_children;
		out->children = children;
		out->n_children = k->n_children;
		for (size_t i = 0; i < k->n_children; i++) {
			Store__SearchKey *c = &pk->nodes[pk->n++];
			children[i] = c;
			pb_key_fill(pk, &k->children[i], c);
		}
	}
}

static Store__SearchKey *pb_key_build(const struct search_key *k, struct pb_key *pk)
{
	size_t nodes = 0, ranges = 0;
	pb_key_count(k, &nodes, &ranges);
	pk->nodes = xcalloc(nodes, sizeof(*pk->nodes));
	pk->ptrs = xcalloc(nodes, sizeof(*pk->ptrs));
	pk->ranges = xcalloc(ranges + 1, sizeof(*pk->ranges));
	pk->rptrs = xcalloc(ranges + 1, sizeof(*pk->rptrs));
	pk->n = 1;
	pk->n_ptrs = pk->n_ranges = 0;
	pb_key_fill(pk, k, &pk->nodes[0]);
	return &pk->nodes[0];
}

static void pb_key_free(struct pb_key *pk)
{
	free(pk->nodes);
	free(pk->ptrs);
	free(pk->ranges);
	free(pk->rptrs);
}

struct imap_store_search {
	store_client *sc;
	imap_backend_search_cb *cb;
	void *arg;
	char *user;
	char *mailbox;
	/* the request, packed once and unpacked for each page */
	uint8_t *packed;
	size_t packed_len;
	uint32_t *uids;
	size_t n, cap;
	uint64_t highest_modseq;
};

static void imap_store_search_page(struct imap_store_search *q, uint32_t after_uid);

static void imap_store_search_free(struct imap_store_search *q)
{
	free(q->packed);
	free(q->uids);
	free(q->user);
	free(q->mailbox);
	free(q);
}

static void imap_store_search_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	struct imap_store_search *q = arg;
	if (status != MAIL_OK) {
		q->cb(status, NULL, 0, 0, q->arg);
		imap_store_search_free(q);
		return;
	}
	const Store__SearchResponse *r = (const Store__SearchResponse *)resp;
	if (q->n + r->n_uids > q->cap) {
		q->cap = (q->n + r->n_uids) * 2;
		q->uids = xrealloc(q->uids, q->cap * sizeof(*q->uids));
	}
	for (size_t i = 0; i < r->n_uids; i++)
		if (q->n == 0 || r->uids[i] > q->uids[q->n - 1])
			q->uids[q->n++] = r->uids[i];
	if (r->highest_modseq > q->highest_modseq)
		q->highest_modseq = r->highest_modseq;
	if (r->next_after_uid != 0) {
		imap_store_search_page(q, r->next_after_uid);
		return;
	}
	q->cb(MAIL_OK, q->uids, q->n, q->highest_modseq, q->arg);
	imap_store_search_free(q);
}

static void imap_store_search_page(struct imap_store_search *q, uint32_t after_uid)
{
	Store__SearchRequest *req = (Store__SearchRequest *)protobuf_c_message_unpack(
		&store__search_request__descriptor, NULL, q->packed_len, q->packed);
	if (req == NULL)
		abort();   /* packed by us: never */
	req->after_uid = after_uid;
	store_client_search(q->sc, req, imap_store_search_cb, q);
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void imap_store_search(void *ctx, const char *user, const char *mailbox,
			      const struct search_key *key, imap_backend_search_cb *cb, void *arg)
{
	struct imap_store_backend *b = ctx;
	struct imap_store_search *q = xcalloc(1, sizeof(*q));
	q->sc = b->sc;
	q->cb = cb;
	q->arg = arg;
	struct pb_key pk;
	Store__SearchRequest req = STORE__SEARCH_REQUEST__INIT;
	req.user = (char *)user;
	req.mailbox = (char *)mailbox;
	req.key = pb_key_build(key, &pk);
	q->packed_len = protobuf_c_message_get_packed_size(&req.base);
	q->packed = xmalloc(q->packed_len + 1);
	protobuf_c_message_pack(&req.base, q->packed);
	pb_key_free(&pk);
	imap_store_search_page(q, 0);
}

static void imap_store_sort_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	struct imap_store_call *c = arg;
	imap_backend_sort_cb *cb = c->cb;
	if (status != MAIL_OK) {
		cb(status, NULL, 0, c->arg);
	} else {
		const Store__SortResponse *r = (const Store__SortResponse *)resp;
		cb(MAIL_OK, r->uids, r->n_uids, c->arg);
	}
	free(c);
}

static void imap_store_sort(void *ctx, const char *user, const char *mailbox,
			    const struct search_sort *crit, size_t n_crit,
			    const struct search_key *key, imap_backend_sort_cb *cb, void *arg)
{
	struct imap_store_backend *b = ctx;
	Store__SortCriterion *sc = xcalloc(n_crit + 1, sizeof(*sc));
	Store__SortCriterion **scp = xcalloc(n_crit + 1, sizeof(*scp));
	for (size_t i = 0; i < n_crit; i++) {
		store__sort_criterion__init(&sc[i]);
		sc[i].key = (uint32_t)crit[i].key;
		sc[i].reverse = crit[i].reverse != 0;
		scp[i] = &sc[i];
	}
	struct pb_key pk;
	Store__SortRequest req = STORE__SORT_REQUEST__INIT;
	req.user = (char *)user;
	req.mailbox = (char *)mailbox;
	req.criteria = scp;
	req.n_criteria = n_crit;
	req.key = pb_key_build(key, &pk);
	store_client_sort(b->sc, &req, imap_store_sort_cb, imap_store_call_new(cb, arg));
	pb_key_free(&pk);
	free(scp);
	free(sc);
}

static void imap_store_thread_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	struct imap_store_call *c = arg;
	imap_backend_thread_cb *cb = c->cb;
	if (status != MAIL_OK) {
		cb(status, NULL, c->arg);
	} else {
		const Store__ThreadResponse *r = (const Store__ThreadResponse *)resp;
		char *threads = xstrndup(r->threads.data != NULL ? (const char *)r->threads.data : "",
					 r->threads.len);
		cb(MAIL_OK, threads, c->arg);
		free(threads);
	}
	free(c);
}

static void imap_store_thread(void *ctx, const char *user, const char *mailbox,
			      enum search_thread_alg alg, const struct search_key *key,
			      imap_backend_thread_cb *cb, void *arg)
{
	struct imap_store_backend *b = ctx;
	struct pb_key pk;
	Store__ThreadRequest req = STORE__THREAD_REQUEST__INIT;
	req.user = (char *)user;
	req.mailbox = (char *)mailbox;
	req.algorithm = (uint32_t)alg;
	req.key = pb_key_build(key, &pk);
	store_client_thread(b->sc, &req, imap_store_thread_cb, imap_store_call_new(cb, arg));
	pb_key_free(&pk);
}

/* ---- watch: one long poll per (user, mailbox), shared --------------------------------
 * A group holds the sessions (watchers) of this frontend that watch one
 * mailbox, and at most one WATCH call to the store for all of them, asked
 * with the highest modseq the group knows. Each answer above it is told to
 * every watcher that has not seen it, and the next call goes out
 * WATCH_REPOLL_MS later with the new value (at once after an answer
 * without a change); a call that failed for good (the client's deadline,
 * retries through a failover included) goes out again after
 * WATCH_RETRY_MS with the same value, so no change is lost: the sessions
 * then ask changes() for what. A watcher whose modseq is below what the
 * group knows is told from the group's timer (never inside watch()). The
 * group lives while it has watchers or a call out. */

struct imap_backend_watch {
	struct imap_backend_watch *next, *prev;
	struct watch_group *g;
	imap_backend_watch_cb *cb;
	void *arg;
	uint64_t modseq;   /* the last value this watcher was told (or gave) */
	int gone;          /* unwatched while its group was telling */
};

struct watch_group {
	struct watch_group *next;      /* in its bucket */
	struct imap_store_backend *b;  /* NULL once the backend is gone */
	store_client *sc;
	char *user;
	char *mailbox;                 /* INBOX's spelling normalised */
	uint64_t modseq;               /* the highest the group knows */
	struct imap_backend_watch *watchers;
	int in_flight;                 /* a WATCH call is out */
	int telling;                   /* inside watch_group_tell() */
	int closing;                   /* the timer is being closed */
	uv_timer_t timer;              /* retries and late telling */
};

/* INBOX in any case (and its children's prefix) as the store names it. */
static char *watch_mailbox_name(const char *mailbox)
{
	if (mailbox[0] == '\0' || strcasecmp(mailbox, "INBOX") == 0)
		return xstrdup("INBOX");
	if (strncasecmp(mailbox, "INBOX/", 6) == 0)
		return xasprintf("INBOX/%s", mailbox + 6);
	return xstrdup(mailbox);
}

static size_t watch_bucket(const char *user, const char *mailbox)
{
	return (util_hash64(user, strlen(user)) ^ util_hash64(mailbox, strlen(mailbox))) %
	       WATCH_GROUP_BUCKETS;
}

static void watch_group_closed(uv_handle_t *h)
{
	struct watch_group *g = h->data;
	free(g->user);
	free(g->mailbox);
	free(g);
}

/* Free g if nothing needs it any more (unlinked from the backend). */
static void watch_group_maybe_free(struct watch_group *g)
{
	if (g->watchers != NULL || g->in_flight || g->telling || g->closing)
		return;
	if (g->b != NULL) {
		struct watch_group **p = &g->b->groups[watch_bucket(g->user, g->mailbox)];
		while (*p != NULL && *p != g)
			p = &(*p)->next;
		if (*p == g)
			*p = g->next;
		g->b = NULL;
	}
	g->closing = 1;
	uv_timer_stop(&g->timer);
	uv_close((uv_handle_t *)&g->timer, watch_group_closed);
}

/* Tell every watcher below g->modseq. Callbacks may unwatch (any
 * watcher) or watch (a new one, told later by the timer). */
static void watch_group_tell(struct watch_group *g)
{
	g->telling = 1;
	uint64_t now = g->modseq;
	for (struct imap_backend_watch *w = g->watchers; w != NULL; w = w->next) {
		if (w->gone || w->modseq >= now)
			continue;
		w->modseq = now;
		w->cb(now, w->arg);
	}
	g->telling = 0;
	/* the watchers unwatched meanwhile go now */
	struct imap_backend_watch **p = &g->watchers;
	while (*p != NULL) {
		struct imap_backend_watch *w = *p;
		if (w->gone) {
			*p = w->next;
			if (w->next != NULL)
				w->next->prev = w->prev;
			free(w);
		} else {
			p = &w->next;
		}
	}
}

static void watch_group_poll(struct watch_group *g);
static void watch_group_timer_cb(uv_timer_t *t);

static void watch_group_poll_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	struct watch_group *g = arg;
	g->in_flight = 0;
	if (g->watchers == NULL || g->b == NULL) {
		watch_group_maybe_free(g);
		return;
	}
	if (status == MAIL_OK) {
		uint64_t m = ((const Store__WatchResponse *)resp)->highest_modseq;
		if (m > g->modseq) {
			g->modseq = m;
			watch_group_tell(g);
			if (g->watchers != NULL)
				uv_timer_start(&g->timer, watch_group_timer_cb, WATCH_REPOLL_MS, 0);
		} else if (g->watchers != NULL) {
			watch_group_poll(g);   /* the hold ran out: nothing new */
		}
	} else if (status == MAIL_ERR_NOT_FOUND) {
		/* the mailbox went: the sessions find out through changes();
		 * the group looks again later (it may be created again) */
		g->modseq++;
		watch_group_tell(g);
		if (g->watchers != NULL)
			uv_timer_start(&g->timer, watch_group_timer_cb, WATCH_GONE_RETRY_MS, 0);
	} else if (g->watchers != NULL) {
		/* the store client gave up (its deadline, retries included):
		 * again later, with the same modseq */
		uv_timer_start(&g->timer, watch_group_timer_cb, WATCH_RETRY_MS, 0);
	}
	watch_group_maybe_free(g);
}

static void watch_group_poll(struct watch_group *g)
{
	if (g->in_flight || g->b == NULL)
		return;
	g->in_flight = 1;
	Store__WatchRequest req = STORE__WATCH_REQUEST__INIT;
	req.user = g->user;
	req.mailbox = g->mailbox;
	req.modseq = g->modseq;
	store_client_watch(g->sc, &req, watch_group_poll_cb, g);
}

/* The group's timer: tell the watchers behind, and make sure a call is
 * out. */
static void watch_group_timer_cb(uv_timer_t *t)
{
	struct watch_group *g = t->data;
	watch_group_tell(g);
	if (g->watchers != NULL)
		watch_group_poll(g);
	watch_group_maybe_free(g);
}

static imap_backend_watch *imap_store_watch(void *ctx, const char *user, const char *mailbox,
					    uint64_t modseq, imap_backend_watch_cb *cb, void *arg)
{
	struct imap_store_backend *b = ctx;
	char *name = watch_mailbox_name(mailbox);
	struct watch_group *g = b->groups[watch_bucket(user, name)];
	while (g != NULL && (strcmp(g->user, user) != 0 || strcmp(g->mailbox, name) != 0))
		g = g->next;
	if (g == NULL) {
		g = xcalloc(1, sizeof(*g));
		g->b = b;
		g->sc = b->sc;
		g->user = xstrdup(user);
		g->mailbox = name;
		name = NULL;
		g->modseq = modseq;
		uv_timer_init(b->loop, &g->timer);
		g->timer.data = g;
		size_t bucket = watch_bucket(g->user, g->mailbox);
		g->next = b->groups[bucket];
		b->groups[bucket] = g;
	}
	free(name);
	struct imap_backend_watch *w = xcalloc(1, sizeof(*w));
	w->g = g;
	w->cb = cb;
	w->arg = arg;
	w->modseq = modseq;
	w->next = g->watchers;
	if (g->watchers != NULL)
		g->watchers->prev = w;
	g->watchers = w;
	if (modseq > g->modseq && !g->in_flight)
		g->modseq = modseq;
	if (modseq < g->modseq || !g->in_flight)
		uv_timer_start(&g->timer, watch_group_timer_cb, 0, 0);
	return w;
}

static void imap_store_unwatch(void *ctx, imap_backend_watch *w)
{
	(void)ctx;
	if (w == NULL)
		return;
	struct watch_group *g = w->g;
	if (g->telling) {
		w->gone = 1;
		return;
	}
	if (w->prev != NULL)
		w->prev->next = w->next;
	else
		g->watchers = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	free(w);
	watch_group_maybe_free(g);
}

size_t imap_store_backend_watch_groups(const imap_store_backend *b)
{
	size_t n = 0;
	for (size_t i = 0; i < WATCH_GROUP_BUCKETS; i++)
		for (const struct watch_group *g = b->groups[i]; g != NULL; g = g->next)
			n++;
	return n;
}

const struct imap_backend imap_store_backend_vfuncs = {
	.authenticate = imap_store_authenticate,
	.scram_keys = imap_store_scram_keys,
	.list = imap_store_list,
	.select = imap_store_select,
	.fetch = imap_store_fetch,
	.store_flags = imap_store_store_flags,
	.expunge = imap_store_expunge,
	.create = imap_store_create,
	.delete_mailbox = imap_store_delete_mailbox,
	.rename = imap_store_rename,
	.subscribe = imap_store_subscribe,
	.status = imap_store_status,
	.open = imap_store_open,
	.append = imap_store_append,
	.copy = imap_store_copy,
	.fetch_meta = imap_store_fetch_meta,
	.fetch_range = imap_store_fetch_range,
	.search = imap_store_search,
	.sort = imap_store_sort,
	.thread = imap_store_thread,
	.changes = imap_store_changes,
	.watch = imap_store_watch,
	.unwatch = imap_store_unwatch,
	.quota = imap_store_quota,
};

imap_store_backend *imap_store_backend_create(struct auth_pool *auth, store_client *sc)
{
	struct imap_store_backend *b = xcalloc(1, sizeof(*b));
	b->auth = auth;
	b->sc = sc;
	b->loop = store_client_loop(sc);
	return b;
}

void imap_store_backend_destroy(imap_store_backend **bp)
{
	struct imap_store_backend *b = *bp;
	if (b == NULL)
		return;
	*bp = NULL;
	/* groups with a call out are freed by its callback; the others now */
	for (size_t i = 0; i < WATCH_GROUP_BUCKETS; i++) {
		struct watch_group *g = b->groups[i];
		while (g != NULL) {
			struct watch_group *next = g->next;
			g->b = NULL;
			while (g->watchers != NULL) {
				struct imap_backend_watch *w = g->watchers;
				g->watchers = w->next;
				free(w);
			}
			watch_group_maybe_free(g);
			g = next;
		}
	}
	free(b);
}
