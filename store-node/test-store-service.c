/* test-store-service.c: the "store" RPC service served in-process on a
 * free 127.0.0.1 port, called through a real rpc_client. */
#include "store-service.h"

#include "search-key.h"
#include "store-structure.h"
#include "util.h"
#include "mail-error.h"
#include "rpc.h"
#include "store.pb-c.h"
#include "test-pb-util.h"
#include "test-util.h"
#include "xalloc.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"

#define WAIT_MS 5000

struct fixture {
	uv_loop_t loop;
	char *dir;
	mailstore *store;
	store_service *service;
	rpc_client *client;
	int port;
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof *f);
	uv_loop_init(&f->loop);
	f->dir = test_tmpdir_create("store-service");
	const char *error = NULL;
	assert_int_equal(mailstore_open(f->dir, NULL, &f->store, &error), MAIL_OK);
	assert_int_equal(store_service_create(&f->loop, f->store, &f->service), 0);
	assert_int_equal(store_service_listen(f->service, "127.0.0.1", 0, &f->port, &error), 0);
	assert_true(f->port > 0);
	assert_int_equal(rpc_client_create(&f->loop, "store", "127.0.0.1", f->port, &f->client),
			 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	rpc_client_destroy(&f->client);
	store_service_destroy(&f->service);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	mailstore_close(&f->store);
	test_tmpdir_remove(&f->dir);
	free(f);
	return 0;
}

static void call(struct fixture *f, uint16_t method, const ProtobufCMessage *req,
		 const ProtobufCMessageDescriptor *resp_desc, struct test_result *r)
{
	test_result_reset(r);
	rpc_client_call(f->client, method, req, resp_desc, 0, test_result_cb, r);
	test_result_wait(&f->loop, r, WAIT_MS);
}

static void test_deliver_select_fetch(void **state)
{
	struct fixture *f = *state;
	static const char body[] = "Subject: t\r\n\r\nhello\r\n";
	char *flags[] = { "\\Seen" };
	Store__DeliverRequest dreq = STORE__DELIVER_REQUEST__INIT;
	dreq.user = "alice@example.org";
	dreq.delivery_id = "Q1/0";
	dreq.body.data = (uint8_t *)body;
	dreq.body.len = sizeof body - 1;
	dreq.internal_date = 1700000000000;
	dreq.flags = flags;
	dreq.n_flags = 1;
	struct test_result r = { 0 };
	call(f, STORE__METHOD__DELIVER, &dreq.base, &store__deliver_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_OK);
	const Store__DeliverResponse *dresp = (const Store__DeliverResponse *)r.resp;
	assert_int_equal(dresp->uid, 1);
	assert_false(dresp->duplicate);
	uint32_t uidvalidity = dresp->uidvalidity;
	assert_true(uidvalidity > 0);

	/* the same delivery again is a duplicate */
	call(f, STORE__METHOD__DELIVER, &dreq.base, &store__deliver_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_OK);
	dresp = (const Store__DeliverResponse *)r.resp;
	assert_int_equal(dresp->uid, 1);
	assert_true(dresp->duplicate);

	Store__SelectRequest sreq = STORE__SELECT_REQUEST__INIT;
	sreq.user = "alice@example.org";
	sreq.mailbox = "INBOX";
	call(f, STORE__METHOD__SELECT, &sreq.base, &store__select_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_OK);
	const Store__SelectResponse *sresp = (const Store__SelectResponse *)r.resp;
	assert_non_null(sresp->mailbox);
	assert_string_equal(sresp->mailbox->name, "INBOX");
	assert_int_equal(sresp->mailbox->exists, 1);
	assert_int_equal(sresp->mailbox->uidvalidity, uidvalidity);
	assert_int_equal(sresp->mailbox->uidnext, 2);
	assert_int_equal(sresp->n_messages, 1);
	assert_int_equal(sresp->messages[0]->uid, 1);
	assert_int_equal(sresp->messages[0]->size, sizeof body - 1);
	assert_int_equal(sresp->messages[0]->n_flags, 1);
	assert_string_equal(sresp->messages[0]->flags[0], "\\Seen");

	Store__FetchRequest freq = STORE__FETCH_REQUEST__INIT;
	freq.user = "alice@example.org";
	freq.mailbox = "";
	freq.uid = 1;
	call(f, STORE__METHOD__FETCH, &freq.base, &store__fetch_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_OK);
	const Store__FetchResponse *fresp = (const Store__FetchResponse *)r.resp;
	assert_int_equal(fresp->body.len, sizeof body - 1);
	assert_memory_equal(fresp->body.data, body, sizeof body - 1);
	assert_int_equal(fresp->info->internal_date, 1700000000000);

	/* another user cannot fetch it */
	freq.user = "mallory@example.net";
	call(f, STORE__METHOD__FETCH, &freq.base, &store__fetch_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_ERR_NOT_FOUND);
	assert_null(r.resp);

	/* flags + expunge through the wire */
	uint32_t uids[] = { 1 };
	char *del[] = { "\\Deleted" };
	Store__StoreFlagsRequest qreq = STORE__STORE_FLAGS_REQUEST__INIT;
	qreq.user = "alice@example.org";
	qreq.mailbox = "";
	qreq.uids = uids;
	qreq.n_uids = 1;
	qreq.mode = STORE__FLAG_MODE__FLAGS_ADD;
	qreq.flags = del;
	qreq.n_flags = 1;
	call(f, STORE__METHOD__STORE_FLAGS, &qreq.base, &store__store_flags_response__descriptor,
	     &r);
	assert_int_equal(r.status, MAIL_OK);
	const Store__StoreFlagsResponse *qresp = (const Store__StoreFlagsResponse *)r.resp;
	assert_int_equal(qresp->n_messages, 1);
	assert_int_equal(qresp->messages[0]->n_flags, 2);

	Store__ExpungeRequest ereq = STORE__EXPUNGE_REQUEST__INIT;
	ereq.user = "alice@example.org";
	ereq.mailbox = "";
	call(f, STORE__METHOD__EXPUNGE, &ereq.base, &store__expunge_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_OK);
	const Store__ExpungeResponse *eresp = (const Store__ExpungeResponse *)r.resp;
	assert_int_equal(eresp->n_expunged_uids, 1);
	assert_int_equal(eresp->expunged_uids[0], 1);

	Store__ListRequest lreq = STORE__LIST_REQUEST__INIT;
	lreq.user = "alice@example.org";
	call(f, STORE__METHOD__LIST, &lreq.base, &store__list_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_OK);
	const Store__ListResponse *lresp = (const Store__ListResponse *)r.resp;
	/* INBOX (index 2: Archive, Drafts, INBOX, ...) and the special-use
	 * mailboxes of a new user */
	assert_int_equal(lresp->n_mailboxes, 6);
	assert_string_equal(lresp->mailboxes[2]->name, "INBOX");
	assert_int_equal(lresp->mailboxes[2]->exists, 0);
	assert_int_equal(lresp->mailboxes[2]->uidnext, 2);
	test_result_reset(&r);
}

static void test_errors(void **state)
{
	struct fixture *f = *state;
	struct test_result r = { 0 };

	/* a FetchRequest sent as DELIVER: field 3 arrives as a varint where
	 * DeliverRequest wants a string, so the payload does not unpack */
	Store__FetchRequest bad = STORE__FETCH_REQUEST__INIT;
	bad.user = "alice@example.org";
	bad.uid = 7;
	call(f, STORE__METHOD__DELIVER, &bad.base, &store__deliver_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_ERR_PARAMS);
	assert_null(r.resp);

	/* unknown method */
	Store__ListRequest lreq = STORE__LIST_REQUEST__INIT;
	lreq.user = "alice@example.org";
	call(f, 999, &lreq.base, &store__list_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_ERR_BAD_METHOD);

	/* empty user */
	lreq.user = "";
	call(f, STORE__METHOD__LIST, &lreq.base, &store__list_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_ERR_PARAMS);

	/* unknown mailbox */
	Store__SelectRequest sreq = STORE__SELECT_REQUEST__INIT;
	sreq.user = "alice@example.org";
	sreq.mailbox = "Nowhere";
	call(f, STORE__METHOD__SELECT, &sreq.base, &store__select_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_ERR_NOT_FOUND);

	/* bad flag mode */
	Store__StoreFlagsRequest qreq = STORE__STORE_FLAGS_REQUEST__INIT;
	qreq.user = "alice@example.org";
	qreq.mode = 42;
	call(f, STORE__METHOD__STORE_FLAGS, &qreq.base, &store__store_flags_response__descriptor,
	     &r);
	assert_int_equal(r.status, MAIL_ERR_PARAMS);

	/* the connection still works after all that */
	lreq.user = "alice@example.org";
	call(f, STORE__METHOD__LIST, &lreq.base, &store__list_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_OK);
	test_result_reset(&r);
}

/* ---- issue 9 ------------------------------------------------------------------ */

static void deliver(struct fixture *f, const char *user, const char *body, const char *flag)
{
	char *flags[1] = { (char *)flag };
	Store__DeliverRequest req = STORE__DELIVER_REQUEST__INIT;
	req.user = (char *)user;
	req.delivery_id = "";
	req.body.data = (uint8_t *)body;
	req.body.len = strlen(body);
	req.flags = flags;
	req.n_flags = flag != NULL ? 1 : 0;
	struct test_result r = { 0 };
	call(f, STORE__METHOD__DELIVER, &req.base, &store__deliver_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_OK);
	test_result_reset(&r);
}

static void test_mailbox_methods(void **state)
{
	struct fixture *f = *state;
	struct test_result r = { 0 };
	Store__CreateMailboxRequest creq = STORE__CREATE_MAILBOX_REQUEST__INIT;
	creq.user = "alice@example.org";
	creq.mailbox = "Projects/Old";
	creq.special_use = 0x1000;   /* \Archive */
	call(f, STORE__METHOD__MAILBOX_CREATE, &creq.base, &store__mailbox_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_OK);
	const Store__MailboxResponse *mr = (const Store__MailboxResponse *)r.resp;
	assert_string_equal(mr->mailbox->name, "Projects/Old");
	assert_int_equal(mr->mailbox->attrs, 0x1000);
	call(f, STORE__METHOD__MAILBOX_CREATE, &creq.base, &store__mailbox_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_ERR_EXISTS);

	Store__SubscribeRequest sub = STORE__SUBSCRIBE_REQUEST__INIT;
	sub.user = "alice@example.org";
	sub.mailbox = "Gone/Away";
	sub.on = 1;
	call(f, STORE__METHOD__SUBSCRIBE, &sub.base, &store__empty_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_OK);

	/* LIST with subscriptions: the NONEXISTENT one too */
	Store__ListRequest lreq = STORE__LIST_REQUEST__INIT;
	lreq.user = "alice@example.org";
	lreq.subscriptions = 1;
	call(f, STORE__METHOD__LIST, &lreq.base, &store__list_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_OK);
	const Store__ListResponse *lr = (const Store__ListResponse *)r.resp;
	int ghost = 0, inbox = 0, projects = 0;
	for (size_t i = 0; i < lr->n_mailboxes; i++) {
		const Store__MailboxInfo *b = lr->mailboxes[i];
		if (strcmp(b->name, "Gone/Away") == 0)
			ghost = b->attrs == (MAILSTORE_MBOX_SUBSCRIBED | MAILSTORE_MBOX_NONEXISTENT);
		if (strcmp(b->name, "INBOX") == 0)
			inbox = (b->attrs & MAILSTORE_MBOX_SUBSCRIBED) != 0;
		if (strcmp(b->name, "Projects") == 0)
			projects = 1;
	}
	assert_true(ghost);
	assert_true(inbox);
	assert_true(projects);
	/* without: only mailboxes */
	lreq.subscriptions = 0;
	call(f, STORE__METHOD__LIST, &lreq.base, &store__list_response__descriptor, &r);
	lr = (const Store__ListResponse *)r.resp;
	for (size_t i = 0; i < lr->n_mailboxes; i++)
		assert_string_not_equal(lr->mailboxes[i]->name, "Gone/Away");

	Store__RenameMailboxRequest rreq = STORE__RENAME_MAILBOX_REQUEST__INIT;
	rreq.user = "alice@example.org";
	rreq.from = "Projects";
	rreq.to = "Done";
	call(f, STORE__METHOD__MAILBOX_RENAME, &rreq.base, &store__empty_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_OK);
	Store__StatusRequest st = STORE__STATUS_REQUEST__INIT;
	st.user = "alice@example.org";
	st.mailbox = "Done/Old";
	call(f, STORE__METHOD__STATUS, &st.base, &store__mailbox_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_OK);
	/* another user learns nothing of it */
	st.user = "mallory@example.net";
	call(f, STORE__METHOD__STATUS, &st.base, &store__mailbox_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_ERR_NOT_FOUND);

	Store__DeleteMailboxRequest dreq = STORE__DELETE_MAILBOX_REQUEST__INIT;
	dreq.user = "alice@example.org";
	dreq.mailbox = "Done";
	call(f, STORE__METHOD__MAILBOX_DELETE, &dreq.base, &store__empty_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_ERR_EXISTS);
	dreq.mailbox = "INBOX";
	call(f, STORE__METHOD__MAILBOX_DELETE, &dreq.base, &store__empty_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_ERR_PERM);
	dreq.mailbox = "Done/Old";
	call(f, STORE__METHOD__MAILBOX_DELETE, &dreq.base, &store__empty_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_OK);
	test_result_reset(&r);
}

static void test_append_open_meta_changes(void **state)
{
	struct fixture *f = *state;
	struct test_result r = { 0 };
	const char *u = "bob@example.org";
	deliver(f, u, "Subject: first\r\n\r\none\r\n", "\\Seen");
	Store__StatusRequest st = STORE__STATUS_REQUEST__INIT;
	st.user = (char *)u;
	st.mailbox = "INBOX";
	call(f, STORE__METHOD__STATUS, &st.base, &store__mailbox_response__descriptor, &r);
	uint64_t m0 = ((const Store__MailboxResponse *)r.resp)->mailbox->highest_modseq;

	/* APPEND of two messages to Drafts (a new user's special-use box) */
	static const char b1[] = "Subject: draft one\r\nFrom: Bob <bob@example.org>\r\n\r\nd1\r\n";
	char *kw[] = { "$Draftish" };
	Store__AppendMessage am[2] = { STORE__APPEND_MESSAGE__INIT, STORE__APPEND_MESSAGE__INIT };
	am[0].body = (ProtobufCBinaryData){ sizeof b1 - 1, (uint8_t *)b1 };
	am[0].flags = kw;
	am[0].n_flags = 1;
	am[1].body = (ProtobufCBinaryData){ 4, (uint8_t *)"x\r\n\r" };
	Store__AppendMessage *amp[2] = { &am[0], &am[1] };
	Store__AppendRequest areq = STORE__APPEND_REQUEST__INIT;
	areq.user = (char *)u;
	areq.mailbox = "Drafts";
	areq.messages = amp;
	areq.n_messages = 2;
	call(f, STORE__METHOD__APPEND, &areq.base, &store__append_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_OK);
	const Store__AppendResponse *ar = (const Store__AppendResponse *)r.resp;
	assert_int_equal(ar->n_uids, 2);
	assert_int_equal(ar->uids[0], 1);
	assert_true(ar->uidvalidity > 0);
	areq.mailbox = "Nowhere";
	call(f, STORE__METHOD__APPEND, &areq.base, &store__append_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_ERR_NOT_FOUND);

	/* COPY Drafts 1:2 to INBOX */
	Store__UidRange all = STORE__UID_RANGE__INIT;
	all.first = 1;
	all.last = 0xffffffff;
	Store__UidRange *allp = &all;
	Store__CopyRequest cp = STORE__COPY_REQUEST__INIT;
	cp.user = (char *)u;
	cp.from = "Drafts";
	cp.to = "INBOX";
	cp.uids = &allp;
	cp.n_uids = 1;
	call(f, STORE__METHOD__COPY, &cp.base, &store__copy_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_OK);
	const Store__CopyResponse *cr = (const Store__CopyResponse *)r.resp;
	assert_int_equal(cr->n_src_uids, 2);
	assert_int_equal(cr->dst_uids[0], 2);
	assert_int_equal(cr->dst_uids[1], 3);

	/* OPEN: the uids, first unseen, keywords */
	Store__OpenRequest oreq = STORE__OPEN_REQUEST__INIT;
	oreq.user = (char *)u;
	oreq.mailbox = "INBOX";
	call(f, STORE__METHOD__OPEN, &oreq.base, &store__open_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_OK);
	const Store__OpenResponse *orr = (const Store__OpenResponse *)r.resp;
	assert_non_null(orr->mailbox);
	assert_int_equal(orr->mailbox->exists, 3);
	assert_int_equal(orr->mailbox->unseen, 2);
	assert_int_equal(orr->mailbox->n_keywords, 1);
	assert_string_equal(orr->mailbox->keywords[0], "$Draftish");
	assert_int_equal(orr->n_uids, 1);
	assert_int_equal(orr->uids[0]->first, 1);
	assert_int_equal(orr->uids[0]->last, 3);
	assert_int_equal(orr->first_unseen_uid, 2);
	assert_int_equal(orr->next_after_uid, 0);

	/* FETCH_META with structure: the ENVELOPE computed at APPEND */
	Store__FetchMetaRequest fm = STORE__FETCH_META_REQUEST__INIT;
	fm.user = (char *)u;
	fm.mailbox = "INBOX";
	fm.uids = &allp;
	fm.n_uids = 1;
	fm.structure = 1;
	call(f, STORE__METHOD__FETCH_META, &fm.base, &store__fetch_meta_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_OK);
	const Store__FetchMetaResponse *fr = (const Store__FetchMetaResponse *)r.resp;
	assert_int_equal(fr->n_messages, 3);
	assert_int_equal(fr->messages[1]->info->uid, 2);
	assert_non_null(memmem(fr->messages[1]->envelope.data, fr->messages[1]->envelope.len,
			       "\"draft one\"", 11));
	assert_true(fr->messages[1]->bodystructure.len > 0);
	assert_true(fr->messages[1]->parts.len > 0);

	/* FETCH_RANGE */
	Store__FetchRangeRequest rr = STORE__FETCH_RANGE_REQUEST__INIT;
	rr.user = (char *)u;
	rr.mailbox = "INBOX";
	rr.uid = 2;
	rr.offset = 9;
	rr.length = 9;
	call(f, STORE__METHOD__FETCH_RANGE, &rr.base, &store__fetch_range_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_OK);
	const Store__FetchRangeResponse *frr = (const Store__FetchRangeResponse *)r.resp;
	assert_int_equal(frr->total, sizeof b1 - 1);
	assert_int_equal(frr->body.len, 9);
	assert_memory_equal(frr->body.data, "draft one", 9);

	/* CHANGES since m0 with known_uidnext 2: the two copies are new */
	Store__ChangesRequest ch = STORE__CHANGES_REQUEST__INIT;
	ch.user = (char *)u;
	ch.mailbox = "INBOX";
	ch.since_modseq = m0;
	ch.known_uidnext = 2;
	call(f, STORE__METHOD__CHANGES, &ch.base, &store__changes_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_OK);
	const Store__ChangesResponse *chr = (const Store__ChangesResponse *)r.resp;
	assert_int_equal(chr->phase, MAILSTORE_CHANGES_DONE);
	assert_int_equal(chr->n_added, 1);
	assert_int_equal(chr->added[0]->first, 2);
	assert_int_equal(chr->added[0]->last, 3);
	assert_true(chr->expunged_exact);
	ch.phase = 9;
	call(f, STORE__METHOD__CHANGES, &ch.base, &store__changes_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_ERR_PARAMS);
	test_result_reset(&r);
}

/* A held WATCH: woken by a delivery, answered at the hold time, at once
 * for an old modseq, NOT_FOUND for a mailbox that goes. */
static void test_watch(void **state)
{
	struct fixture *f = *state;
	const char *u = "carol@example.org";
	deliver(f, u, "m1\r\n", NULL);
	struct test_result st = { 0 };
	Store__StatusRequest sreq = STORE__STATUS_REQUEST__INIT;
	sreq.user = (char *)u;
	sreq.mailbox = "INBOX";
	call(f, STORE__METHOD__STATUS, &sreq.base, &store__mailbox_response__descriptor, &st);
	uint64_t m0 = ((const Store__MailboxResponse *)st.resp)->mailbox->highest_modseq;
	test_result_reset(&st);

	Store__WatchRequest w = STORE__WATCH_REQUEST__INIT;
	w.user = (char *)u;
	w.mailbox = "inbox";
	w.modseq = m0;
	struct test_result r = { 0 };
	rpc_client_call(f->client, STORE__METHOD__WATCH, &w.base, &store__watch_response__descriptor,
			0, test_result_cb, &r);
	/* held: nothing comes while nothing changes */
	uint64_t until = util_now_mono_ms() + 300;
	while (util_now_mono_ms() < until)
		uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_false(r.done);
	assert_int_equal(store_service_watches(f->service), 1);
	uint64_t t0 = util_now_mono_ms();
	deliver(f, u, "m2\r\n", NULL);
	test_result_wait(&f->loop, &r, WAIT_MS);
	uint64_t waited = util_now_mono_ms() - t0;
	assert_int_equal(r.status, MAIL_OK);
	assert_true(((const Store__WatchResponse *)r.resp)->highest_modseq > m0);
	assert_true(waited < 1000);
	printf("watch woken %llu ms after the delivery was sent\n", (unsigned long long)waited);
	assert_int_equal(store_service_watches(f->service), 0);
	uint64_t m1 = ((const Store__WatchResponse *)r.resp)->highest_modseq;
	test_result_reset(&r);

	/* an old modseq: at once */
	w.modseq = m0;
	rpc_client_call(f->client, STORE__METHOD__WATCH, &w.base, &store__watch_response__descriptor,
			0, test_result_cb, &r);
	test_result_wait(&f->loop, &r, WAIT_MS);
	assert_int_equal(r.status, MAIL_OK);
	assert_int_equal(((const Store__WatchResponse *)r.resp)->highest_modseq, m1);
	test_result_reset(&r);

	/* the hold time passes: the current value */
	store_service_set_watch_hold(f->service, 200);
	w.modseq = m1;
	rpc_client_call(f->client, STORE__METHOD__WATCH, &w.base, &store__watch_response__descriptor,
			0, test_result_cb, &r);
	test_result_wait(&f->loop, &r, WAIT_MS);
	assert_int_equal(r.status, MAIL_OK);
	assert_int_equal(((const Store__WatchResponse *)r.resp)->highest_modseq, m1);
	test_result_reset(&r);
	store_service_set_watch_hold(f->service, 0);

	/* unknown mailbox, another user's */
	w.mailbox = "Nowhere";
	rpc_client_call(f->client, STORE__METHOD__WATCH, &w.base, &store__watch_response__descriptor,
			0, test_result_cb, &r);
	test_result_wait(&f->loop, &r, WAIT_MS);
	assert_int_equal(r.status, MAIL_ERR_NOT_FOUND);
	test_result_reset(&r);

	/* a watched mailbox deleted: NOT_FOUND */
	Store__CreateMailboxRequest creq = STORE__CREATE_MAILBOX_REQUEST__INIT;
	creq.user = (char *)u;
	creq.mailbox = "Temp";
	call(f, STORE__METHOD__MAILBOX_CREATE, &creq.base, &store__mailbox_response__descriptor, &st);
	uint64_t mt = ((const Store__MailboxResponse *)st.resp)->mailbox->highest_modseq;
	test_result_reset(&st);
	w.mailbox = "Temp";
	w.modseq = mt;
	rpc_client_call(f->client, STORE__METHOD__WATCH, &w.base, &store__watch_response__descriptor,
			0, test_result_cb, &r);
	until = util_now_mono_ms() + 100;
	while (util_now_mono_ms() < until)
		uv_run(&f->loop, UV_RUN_NOWAIT);
	Store__DeleteMailboxRequest dreq = STORE__DELETE_MAILBOX_REQUEST__INIT;
	dreq.user = (char *)u;
	dreq.mailbox = "Temp";
	call(f, STORE__METHOD__MAILBOX_DELETE, &dreq.base, &store__empty_response__descriptor, &st);
	assert_int_equal(st.status, MAIL_OK);
	test_result_reset(&st);
	test_result_wait(&f->loop, &r, WAIT_MS);
	assert_int_equal(r.status, MAIL_ERR_NOT_FOUND);
	test_result_reset(&r);

	/* held at shutdown: the teardown's destroy answers it */
	w.mailbox = "INBOX";
	w.modseq = m1;
	rpc_client_call(f->client, STORE__METHOD__WATCH, &w.base, &store__watch_response__descriptor,
			0, test_result_cb, &r);
	until = util_now_mono_ms() + 100;
	while (util_now_mono_ms() < until)
		uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(store_service_watches(f->service), 1);
	store_service_destroy(&f->service);
	test_result_wait(&f->loop, &r, WAIT_MS);
	assert_int_not_equal(r.status, MAIL_OK);
	test_result_reset(&r);
}

/* A DELIVER entry made on a primary carries the structure record: every
 * replica applying it stores those bytes (not its own analysis). */
static void test_apply_structure(void **state)
{
	struct fixture *f = *state;
	buf st;
	buf_init(&st);
	struct store_structure given = { .envelope = "(\"given\")", .envelope_len = 9,
					 .bodystructure = "(b)", .bodystructure_len = 3 };
	store_structure_encode(&st, &given);
	Store__DeliverRequest req = STORE__DELIVER_REQUEST__INIT;
	req.user = "dan@example.org";
	req.delivery_id = "q/1";
	req.body = (ProtobufCBinaryData){ 9, (uint8_t *)"Subject: real\r\n" };
	req.internal_date = 1700000000000;
	req.structure = (ProtobufCBinaryData){ st.len, st.data };
	size_t len = protobuf_c_message_get_packed_size(&req.base);
	uint8_t *entry = xmalloc(11 + len);
	entry[0] = 1;
	entry[1] = 0;
	entry[2] = STORE__METHOD__DELIVER;
	uint64_t ts = 1700000000000;
	for (int i = 0; i < 8; i++)
		entry[3 + i] = (uint8_t)(ts >> (56 - 8 * i));
	protobuf_c_message_pack(&req.base, entry + 11);
	buf out;
	buf_init(&out);
	assert_int_equal(store_service_apply(f->store, 0, 1, entry, 11 + len, &out), MAIL_OK);
	buf_deinit(&out);
	free(entry);
	struct search_uid_range all = { 1, 1 };
	struct mailstore_meta *m;
	size_t n;
	uint32_t after;
	assert_int_equal(mailstore_fetch_meta(f->store, "dan@example.org", "", &all, 1, 0, 1, 0, &m,
					      &n, &after),
			 MAIL_OK);
	assert_int_equal(n, 1);
	assert_int_equal(m[0].structure_len, st.len);
	assert_memory_equal(m[0].structure, st.data, st.len);
	mailstore_metas_free(m, n);
	buf_deinit(&st);
}

/* SEARCH, SORT and THREAD on the store: decoded headers and bodies, the
 * thread pool, refused programs. */
static void test_search_sort_thread(void **state)
{
	struct fixture *f = *state;
	const char *u = "erin@example.org";
	/* 1: a base64 body; 2: an encoded subject, a reply to 1; 3: seen */
	deliver(f, u,
		"Message-ID: <a@x>\r\nSubject: Budget\r\nFrom: Zed <zed@x.org>\r\n"
		"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n"
		"\r\nbGEgY2Fmw6kgZXN0IGZyb2lk\r\n",
		NULL);
	deliver(f, u,
		"Message-ID: <b@x>\r\nIn-Reply-To: <a@x>\r\nReferences: <a@x>\r\n"
		"Subject: =?utf-8?q?Re=3A_Budget_=C3=A9t=C3=A9?=\r\nFrom: Amy <amy@x.org>\r\n"
		"Date: Tue, 2 Jan 2024 10:00:00 +0000\r\n\r\nok\r\n",
		NULL);
	deliver(f, u,
		"Message-ID: <c@x>\r\nSubject: Another\r\nFrom: Bob <bob@x.org>\r\n"
		"Date: Wed, 3 Jan 2024 10:00:00 +0000\r\n\r\nnothing here\r\n",
		"\\Seen");
	struct test_result r = { 0 };
	Store__SearchKey k = STORE__SEARCH_KEY__INIT;
	Store__SearchRequest sr = STORE__SEARCH_REQUEST__INIT;
	sr.user = (char *)u;
	sr.mailbox = "INBOX";
	sr.key = &k;

	/* BODY on decoded text (base64, UTF-8) */
	k.op = SEARCH_BODY;
	k.has_str = 1;
	k.str = (ProtobufCBinaryData){ 5, (uint8_t *)"CAFÉ" + 0 };
	k.str.len = strlen("CAFÉ");
	call(f, STORE__METHOD__SEARCH, &sr.base, &store__search_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_OK);
	const Store__SearchResponse *res = (const Store__SearchResponse *)r.resp;
	assert_int_equal(res->n_uids, 1);
	assert_int_equal(res->uids[0], 1);
	assert_true(res->highest_modseq > 0);
	assert_int_equal(res->next_after_uid, 0);

	/* SUBJECT on the RFC 2047-decoded value */
	k.op = SEARCH_HEADER;
	k.str = (ProtobufCBinaryData){ 7, (uint8_t *)"Subject" };
	k.has_str2 = 1;
	k.str2 = (ProtobufCBinaryData){ strlen("été"), (uint8_t *)"été" };
	call(f, STORE__METHOD__SEARCH, &sr.base, &store__search_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_OK);
	res = (const Store__SearchResponse *)r.resp;
	assert_int_equal(res->n_uids, 1);
	assert_int_equal(res->uids[0], 2);

	/* NOT FLAG \Seen */
	Store__SearchKey child = STORE__SEARCH_KEY__INIT;
	child.op = SEARCH_FLAG;
	child.has_str = 1;
	child.str = (ProtobufCBinaryData){ 5, (uint8_t *)"\\Seen" };
	Store__SearchKey *children[2] = { &child, &child };
	Store__SearchKey not = STORE__SEARCH_KEY__INIT;
	not.op = SEARCH_NOT;
	not.children = children;
	not.n_children = 1;
	sr.key = &not;
	call(f, STORE__METHOD__SEARCH, &sr.base, &store__search_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_OK);
	res = (const Store__SearchResponse *)r.resp;
	assert_int_equal(res->n_uids, 2);
	/* a NOT of two children: refused */
	not.n_children = 2;
	call(f, STORE__METHOD__SEARCH, &sr.base, &store__search_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_ERR_PARAMS);
	/* deeper than the bound: refused before anything is built */
	enum { DEEP = 150 };
	Store__SearchKey *deep = xcalloc(DEEP, sizeof *deep);
	Store__SearchKey **dptr = xcalloc(DEEP, sizeof *dptr);
	for (int i = 0; i < DEEP; i++) {
		store__search_key__init(&deep[i]);
		deep[i].op = i + 1 < DEEP ? SEARCH_NOT : SEARCH_ALL;
		if (i + 1 < DEEP) {
			dptr[i] = &deep[i + 1];
			deep[i].children = &dptr[i];
			deep[i].n_children = 1;
		}
	}
	sr.key = &deep[0];
	call(f, STORE__METHOD__SEARCH, &sr.base, &store__search_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_ERR_PARAMS);
	free(deep);
	free(dptr);
	/* another user's mailbox: not found */
	Store__SearchKey all = STORE__SEARCH_KEY__INIT;
	all.op = SEARCH_ALL;
	sr.key = &all;
	sr.user = "nobody@example.net";
	sr.mailbox = "Archive2";
	call(f, STORE__METHOD__SEARCH, &sr.base, &store__search_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_ERR_NOT_FOUND);

	/* SORT (FROM): Amy, Bob, Zed */
	Store__SortCriterion c1 = STORE__SORT_CRITERION__INIT;
	c1.key = SEARCH_SORT_FROM;
	Store__SortCriterion *cp = &c1;
	Store__SortRequest so = STORE__SORT_REQUEST__INIT;
	so.user = (char *)u;
	so.mailbox = "INBOX";
	so.criteria = &cp;
	so.n_criteria = 1;
	so.key = &all;
	call(f, STORE__METHOD__SORT, &so.base, &store__sort_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_OK);
	const Store__SortResponse *sres = (const Store__SortResponse *)r.resp;
	assert_int_equal(sres->n_uids, 3);
	assert_int_equal(sres->uids[0], 2);
	assert_int_equal(sres->uids[1], 3);
	assert_int_equal(sres->uids[2], 1);
	c1.key = 99;
	call(f, STORE__METHOD__SORT, &so.base, &store__sort_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_ERR_PARAMS);

	/* THREAD REFERENCES: 2 answers 1 */
	Store__ThreadRequest th = STORE__THREAD_REQUEST__INIT;
	th.user = (char *)u;
	th.mailbox = "INBOX";
	th.algorithm = SEARCH_THREAD_REFERENCES;
	th.key = &all;
	call(f, STORE__METHOD__THREAD, &th.base, &store__thread_response__descriptor, &r);
	assert_int_equal(r.status, MAIL_OK);
	const Store__ThreadResponse *tres = (const Store__ThreadResponse *)r.resp;
	char threads[64];
	snprintf(threads, sizeof threads, "%.*s", (int)tres->threads.len, tres->threads.data);
	assert_string_equal(threads, "(1 2)(3)");
	test_result_reset(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_deliver_select_fetch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mailbox_methods, setup, teardown),
		cmocka_unit_test_setup_teardown(test_append_open_meta_changes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_apply_structure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_search_sort_thread, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
