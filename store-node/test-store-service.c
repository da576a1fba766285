/* test-store-service.c: the "store" RPC service served in-process on a
 * free 127.0.0.1 port, called through a real rpc_client. */
#include "store-service.h"

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_deliver_select_fetch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
