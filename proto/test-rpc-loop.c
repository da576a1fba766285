/* Integration tests for the RPC layer (rpc.h): a real server and real
 * clients over loopback TCP, all in one uv loop. Hostile peers are raw TCP
 * connections in the same loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "buf.h"
#include "rpc-frame.h"
#include "rpc.h"
#include "store.pb-c.h"
#include "tls.h"
#include "util.h"
#include "xalloc.h"

/* Behaviour of the test FETCH handler, chosen by the requested uid. */
#define UID_NOT_FOUND 9999u   /* replies MAIL_ERR_NOT_FOUND */
#define UID_PARK 8888u        /* never replies until the test says so */
#define UID_BIG 100000u        /* and above: replies at once with BIG_BODY bytes */
#define BIG_BODY (32u * 1024u)
#define N_PIPELINED 200

#define MAX_PARKED 16

struct fx {
	uv_loop_t loop;
	rpc_server *server;
	int port;
	rpc_client *client;
	rpc_call *parked[MAX_PARKED];
	int n_parked;
	int handled;               /* handler invocations */
	int delayed_open;          /* delay timers not yet closed */
};

struct delayed {
	uv_timer_t timer;
	rpc_call *call;
	uint32_t uid;
	struct fx *fx;
};

static void fetch_reply(rpc_call *call, uint32_t uid)
{
	char body[32];
	int n = snprintf(body, sizeof body, "body-%u", uid);
	Store__MessageInfo info = STORE__MESSAGE_INFO__INIT;
	info.uid = uid;
	Store__FetchResponse resp = STORE__FETCH_RESPONSE__INIT;
	resp.info = &info;
	resp.body.data = (uint8_t *)body;
	resp.body.len = (size_t)n;
	rpc_call_reply(call, MAIL_OK, &resp.base);
}

static void delayed_close_cb(uv_handle_t *h)
{
	struct delayed *d = h->data;
	d->fx->delayed_open--;
	free(d);
}

static void delayed_cb(uv_timer_t *t)
{
	struct delayed *d = t->data;
	fetch_reply(d->call, d->uid);
	uv_close((uv_handle_t *)t, delayed_close_cb);
}

static void fetch_handler(rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	struct fx *fx = ctx;
	const Store__FetchRequest *req = (const Store__FetchRequest *)msg;
	fx->handled++;
	assert_true(rpc_call_deadline(call) > util_now_mono_ms());
	assert_non_null(strstr(rpc_call_peer(call), "127.0.0.1:"));
	if (req->uid >= UID_BIG) {
		uint8_t *body = xcalloc(1, BIG_BODY);
		Store__FetchResponse resp = STORE__FETCH_RESPONSE__INIT;
		resp.body.data = body;
		resp.body.len = BIG_BODY;
		rpc_call_reply(call, MAIL_OK, &resp.base);
		free(body);
	} else if (req->uid == UID_NOT_FOUND) {
		rpc_call_reply(call, MAIL_ERR_NOT_FOUND, NULL);
	} else if (req->uid == UID_PARK) {
		assert_true(fx->n_parked < MAX_PARKED);
		fx->parked[fx->n_parked++] = call;
	} else if (req->uid % 3 == 0) {
		/* answer later, so replies go out in another order */
		struct delayed *d = xcalloc(1, sizeof *d);
		d->call = call;
		d->uid = req->uid;
		d->fx = fx;
		uv_timer_init(&fx->loop, &d->timer);
		d->timer.data = d;
		fx->delayed_open++;
		uv_timer_start(&d->timer, delayed_cb, (N_PIPELINED - req->uid) % 23, 0);
	} else {
		fetch_reply(call, req->uid);
	}
}

static void list_handler(rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	(void)ctx;
	const Store__ListRequest *req = (const Store__ListRequest *)msg;
	Store__MailboxInfo mb = STORE__MAILBOX_INFO__INIT;
	mb.name = req->user;
	mb.uidvalidity = 42;
	Store__MailboxInfo *mbs[1] = { &mb };
	Store__ListResponse resp = STORE__LIST_RESPONSE__INIT;
	resp.n_mailboxes = 1;
	resp.mailboxes = mbs;
	/* packed here: the reply goes as those bytes (rpc_call_reply_packed),
	 * which list_cb reads back as the message */
	size_t len = protobuf_c_message_get_packed_size(&resp.base);
	uint8_t *packed = xmalloc(len + 1);
	protobuf_c_message_pack(&resp.base, packed);
	rpc_call_reply_packed(call, MAIL_OK, packed, len);
	free(packed);
}

static const rpc_method methods[] = {
	{ STORE__METHOD__FETCH, "fetch", &store__fetch_request__descriptor, fetch_handler,
	  RPC_ROLE_FRONTEND | RPC_ROLES_NODES },
	/* 0: the nodes only (with TLS) */
	{ STORE__METHOD__LIST, "list", &store__list_request__descriptor, list_handler, 0 },
};

/* ---- loop helpers ---- */

static void tick_cb(uv_timer_t *t)
{
	(void)t;
}

/* Run the loop until *flag becomes true (or want reached); fail after ms. */
static void run_until(struct fx *fx, const int *counter, int want, uint64_t ms)
{
	uv_timer_t tick;
	uv_timer_init(&fx->loop, &tick);
	uv_timer_start(&tick, tick_cb, 5, 5);
	uint64_t end = util_now_mono_ms() + ms;
	while (*counter < want && util_now_mono_ms() < end)
		uv_run(&fx->loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&tick, NULL);
	uv_run(&fx->loop, UV_RUN_NOWAIT);
	assert_true(*counter >= want);
}

/* Run for ms regardless. */
static void run_for(struct fx *fx, uint64_t ms)
{
	int never = 0;
	uv_timer_t tick;
	uv_timer_init(&fx->loop, &tick);
	uv_timer_start(&tick, tick_cb, 5, 5);
	uint64_t end = util_now_mono_ms() + ms;
	while (!never && util_now_mono_ms() < end)
		uv_run(&fx->loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&tick, NULL);
	uv_run(&fx->loop, UV_RUN_NOWAIT);
}

static void server_start_limits(struct fx *fx, int port, const struct rpc_server_limits *lim)
{
	const char *error = NULL;
	rpc_server_create(&fx->loop, "store", methods, 2, fx, &fx->server);
	if (lim != NULL)
		rpc_server_set_limits(fx->server, lim);
	int r = rpc_server_listen(fx->server, "127.0.0.1", port, &fx->port, &error);
	if (r < 0)
		fail_msg("listen: %s", error);
	assert_true(fx->port > 0);
}

static void server_start(struct fx *fx, int port)
{
	server_start_limits(fx, port, NULL);
}

static int setup(void **state)
{
	struct fx *fx = xcalloc(1, sizeof *fx);
	uv_loop_init(&fx->loop);
	server_start(fx, 0);
	rpc_client_create(&fx->loop, "store", "127.0.0.1", fx->port, &fx->client);
	*state = fx;
	return 0;
}

static void reply_parked(struct fx *fx)
{
	for (int i = 0; i < fx->n_parked; i++)
		rpc_call_reply(fx->parked[i], MAIL_ERR_TEMP, NULL);
	fx->n_parked = 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;
	reply_parked(fx);
	while (fx->delayed_open > 0)
		uv_run(&fx->loop, UV_RUN_ONCE);
	rpc_client_destroy(&fx->client);
	rpc_server_destroy(&fx->server);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	/* every handle was closed and freed */
	assert_int_equal(uv_loop_close(&fx->loop), 0);
	free(fx);
	return 0;
}

/* ---- call results ---- */

struct result {
	int calls;                 /* callbacks seen */
	int status[N_PIPELINED + 1];
	uint32_t order[N_PIPELINED + 1];
	int bad;                   /* responses not matching their request */
};

struct call_arg {
	struct result *res;
	uint32_t uid;
};

static void fetch_cb(int status, const ProtobufCMessage *msg, void *arg)
{
	struct call_arg *a = arg;
	struct result *res = a->res;
	if (res->calls <= N_PIPELINED) {
		res->status[res->calls] = status;
		res->order[res->calls] = a->uid;
	}
	res->calls++;
	if (status == MAIL_OK) {
		const Store__FetchResponse *resp = (const Store__FetchResponse *)msg;
		char body[32];
		int n = snprintf(body, sizeof body, "body-%u", a->uid);
		if (resp == NULL || resp->info == NULL || resp->info->uid != a->uid ||
		    resp->body.len != (size_t)n || memcmp(resp->body.data, body, (size_t)n) != 0)
			res->bad++;
	} else if (msg != NULL) {
		res->bad++;
	}
	free(a);
}

static void fetch(rpc_client *client, struct result *res, uint32_t uid, uint32_t deadline_ms)
{
	struct call_arg *a = xcalloc(1, sizeof *a);
	a->res = res;
	a->uid = uid;
	Store__FetchRequest req = STORE__FETCH_REQUEST__INIT;
	req.user = "alice@example.com";
	req.mailbox = "INBOX";
	req.uid = uid;
	int before = res->calls;
	rpc_client_call(client, STORE__METHOD__FETCH, &req.base,
			&store__fetch_response__descriptor, deadline_ms, fetch_cb, a);
	/* never called from inside rpc_client_call() */
	assert_int_equal(res->calls, before);
}

/* ---- tests ---- */

static void test_pipelined(void **state)
{
	struct fx *fx = *state;
	struct result res = { 0 };
	for (uint32_t uid = 1; uid <= N_PIPELINED; uid++)
		fetch(fx->client, &res, uid, 5000);
	run_until(fx, &res.calls, N_PIPELINED, 10000);
	assert_int_equal(res.bad, 0);
	int inversions = 0;
	for (int i = 0; i < N_PIPELINED; i++) {
		assert_int_equal(res.status[i], MAIL_OK);
		if (i > 0 && res.order[i] < res.order[i - 1])
			inversions++;
	}
	assert_true(inversions > 0);   /* replies did come back out of order */
	assert_int_equal(fx->handled, N_PIPELINED);

	struct rpc_counters sc, cc;
	rpc_server_counters(fx->server, &sc);
	rpc_client_counters(fx->client, &cc);
	assert_int_equal(sc.connections, 1);   /* all on one connection */
	assert_int_equal(cc.connections, 1);
	assert_int_equal(sc.calls_by_status[MAIL_OK], N_PIPELINED);
	assert_int_equal(cc.calls_by_status[MAIL_OK], N_PIPELINED);
	assert_int_equal(sc.frames_in, N_PIPELINED + 1);   /* + HELLO */
	assert_int_equal(cc.frames_in, N_PIPELINED + 1);
	assert_int_equal(sc.bad_frames, 0);
}

static void list_cb(int status, const ProtobufCMessage *msg, void *arg)
{
	int *calls = arg;
	assert_int_equal(status, MAIL_OK);
	const Store__ListResponse *resp = (const Store__ListResponse *)msg;
	assert_int_equal(resp->n_mailboxes, 1);
	assert_string_equal(resp->mailboxes[0]->name, "bob@example.com");
	assert_int_equal(resp->mailboxes[0]->uidvalidity, 42);
	(*calls)++;
}

static void test_two_methods_and_errors(void **state)
{
	struct fx *fx = *state;
	int calls = 0;
	Store__ListRequest lreq = STORE__LIST_REQUEST__INIT;
	lreq.user = "bob@example.com";
	rpc_client_call(fx->client, STORE__METHOD__LIST, &lreq.base,
			&store__list_response__descriptor, 0, list_cb, &calls);

	struct result res = { 0 };
	fetch(fx->client, &res, UID_NOT_FOUND, 0);
	run_until(fx, &res.calls, 1, 5000);
	assert_int_equal(res.status[0], MAIL_ERR_NOT_FOUND);
	assert_int_equal(res.bad, 0);   /* no message with an error status */
	run_until(fx, &calls, 1, 5000);

	/* an unknown method: the server says so, the handler is not called */
	struct call_arg *a = xcalloc(1, sizeof *a);
	a->res = &res;
	Store__FetchRequest req = STORE__FETCH_REQUEST__INIT;
	int handled = fx->handled;
	rpc_client_call(fx->client, 77, &req.base, &store__fetch_response__descriptor, 0,
			fetch_cb, a);
	run_until(fx, &res.calls, 2, 5000);
	assert_int_equal(res.status[1], MAIL_ERR_BAD_METHOD);

	/* a payload that is not a FetchRequest (field 1 must be a string, a
	 * DeliverResponse has a varint there): MAIL_ERR_PARAMS, no handler */
	Store__DeliverResponse wrong = STORE__DELIVER_RESPONSE__INIT;
	wrong.uid = 5;
	a = xcalloc(1, sizeof *a);
	a->res = &res;
	rpc_client_call(fx->client, STORE__METHOD__FETCH, &wrong.base,
			&store__fetch_response__descriptor, 0, fetch_cb, a);
	run_until(fx, &res.calls, 3, 5000);
	assert_int_equal(res.status[2], MAIL_ERR_PARAMS);
	assert_int_equal(fx->handled, handled);

	struct rpc_counters sc;
	rpc_server_counters(fx->server, &sc);
	assert_int_equal(sc.calls_by_status[MAIL_ERR_BAD_METHOD], 1);
	assert_int_equal(sc.calls_by_status[MAIL_ERR_PARAMS], 1);
	assert_int_equal(sc.calls_by_status[MAIL_ERR_NOT_FOUND], 1);
	assert_int_equal(sc.bad_frames, 0);   /* none of that closes the connection */
	assert_int_equal(sc.connections, 1);
}

static void test_deadline(void **state)
{
	struct fx *fx = *state;
	struct result res = { 0 };
	uint64_t t0 = util_now_mono_ms();
	fetch(fx->client, &res, UID_PARK, 150);
	fetch(fx->client, &res, 1, 5000);
	run_until(fx, &res.calls, 2, 5000);
	uint64_t took = util_now_mono_ms() - t0;
	assert_int_equal(res.status[0], MAIL_OK);   /* uid 1 first */
	assert_int_equal(res.status[1], MAIL_ERR_DEADLINE);
	assert_true(took >= 145);
	assert_true(took < 2000);
	assert_int_equal(fx->n_parked, 1);
	/* the late reply is dropped on the floor; the connection still works */
	reply_parked(fx);
	fetch(fx->client, &res, 2, 5000);
	run_until(fx, &res.calls, 3, 5000);
	assert_int_equal(res.status[2], MAIL_OK);
	assert_int_equal(res.calls, 3);
	assert_int_equal(res.bad, 0);
}

static void test_server_restart(void **state)
{
	struct fx *fx = *state;
	struct result res = { 0 };
	/* warm the connection up */
	fetch(fx->client, &res, 1, 5000);
	run_until(fx, &res.calls, 1, 5000);
	for (int i = 0; i < 3; i++)
		fetch(fx->client, &res, UID_PARK, 5000);
	run_until(fx, &fx->n_parked, 3, 5000);

	int port = fx->port;
	rpc_server_destroy(&fx->server);
	run_until(fx, &res.calls, 4, 5000);
	for (int i = 1; i < 4; i++)
		assert_int_equal(res.status[i], MAIL_ERR_UNAVAILABLE);
	/* handlers reply after the server is gone: dropped, no crash */
	reply_parked(fx);
	run_for(fx, 20);

	/* nobody listening: the call fails (connection refused) */
	fetch(fx->client, &res, 2, 5000);
	run_until(fx, &res.calls, 5, 5000);
	assert_int_equal(res.status[4], MAIL_ERR_UNAVAILABLE);

	/* the server comes back on the same port: after the backoff the next
	 * call connects again and succeeds */
	server_start(fx, port);
	assert_int_equal(fx->port, port);
	run_for(fx, 250);
	fetch(fx->client, &res, 3, 5000);
	run_until(fx, &res.calls, 6, 5000);
	assert_int_equal(res.status[5], MAIL_OK);
	assert_int_equal(res.bad, 0);
}

static void test_backoff(void **state)
{
	struct fx *fx = *state;
	struct result res = { 0 };
	int port = fx->port;
	rpc_server_destroy(&fx->server);
	run_for(fx, 10);
	/* refused, and a call made right after fails at once (backoff) */
	fetch(fx->client, &res, 1, 5000);
	run_until(fx, &res.calls, 1, 5000);
	uint64_t t0 = util_now_mono_ms();
	server_start(fx, port);
	fetch(fx->client, &res, 2, 5000);
	run_until(fx, &res.calls, 2, 5000);
	assert_int_equal(res.status[0], MAIL_ERR_UNAVAILABLE);
	assert_int_equal(res.status[1], MAIL_ERR_UNAVAILABLE);
	assert_true(util_now_mono_ms() - t0 < 90);
	assert_int_equal(fx->handled, 0);
}

/* ---- a raw TCP peer ---- */

struct raw {
	uv_tcp_t tcp;
	uv_connect_t creq;
	uv_write_t wreq;
	buf out;
	buf in;
	int connected;
	int written;
	int eof;
	int closed;
	int no_read;
};

static void raw_alloc_cb(uv_handle_t *h, size_t n, uv_buf_t *b)
{
	(void)h;
	b->base = xmalloc(n);
	b->len = n;
}

static void raw_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct raw *r = s->data;
	if (n < 0)
		r->eof = 1;
	else
		buf_append(&r->in, b->base, (size_t)n);
	free(b->base);
}

static void raw_connect_cb(uv_connect_t *req, int status)
{
	struct raw *r = req->data;
	assert_int_equal(status, 0);
	r->connected = 1;
	if (!r->no_read)
		uv_read_start((uv_stream_t *)&r->tcp, raw_alloc_cb, raw_read_cb);
}

/* Connect; read everything that comes unless no_read. */
static void raw_open_opts(struct fx *fx, struct raw *r, int no_read)
{
	struct sockaddr_in sin;
	memset(r, 0, sizeof *r);
	r->no_read = no_read;
	buf_init(&r->out);
	buf_init(&r->in);
	uv_ip4_addr("127.0.0.1", fx->port, &sin);
	uv_tcp_init(&fx->loop, &r->tcp);
	r->tcp.data = r;
	r->creq.data = r;
	uv_tcp_connect(&r->creq, &r->tcp, (struct sockaddr *)&sin, raw_connect_cb);
	run_until(fx, &r->connected, 1, 5000);
}

static void raw_open(struct fx *fx, struct raw *r)
{
	raw_open_opts(fx, r, 0);
}

static void raw_write_cb(uv_write_t *req, int status)
{
	struct raw *r = req->data;
	(void)status;
	r->written++;
}

/* Send what was appended to r->out and wait until written. */
static void raw_send(struct fx *fx, struct raw *r)
{
	uv_buf_t b = uv_buf_init((char *)r->out.data, (unsigned int)r->out.len);
	r->wreq.data = r;
	int want = r->written + 1;
	uv_write(&r->wreq, (uv_stream_t *)&r->tcp, &b, 1, raw_write_cb);
	run_until(fx, &r->written, want, 5000);
	buf_reset(&r->out);
}

static void raw_close_cb(uv_handle_t *h)
{
	struct raw *r = h->data;
	r->closed = 1;
}

static void raw_close(struct fx *fx, struct raw *r)
{
	uv_close((uv_handle_t *)&r->tcp, raw_close_cb);
	run_until(fx, &r->closed, 1, 5000);
	buf_deinit(&r->out);
	buf_deinit(&r->in);
}

static void test_raw_garbage_payload(void **state)
{
	struct fx *fx = *state;
	struct raw r;
	raw_open(fx, &r);
	rpc_hello_encode(&r.out, "store", RPC_PROTO_MAJOR, RPC_PROTO_MINOR);
	static const uint8_t junk[] = { 0xff, 0xff, 0xff, 0xff, 0x0f };
	struct rpc_frame f = {
		.kind = RPC_KIND_REQUEST,
		.method = STORE__METHOD__FETCH,
		.request_id = 77,
		.deadline_ms = 1000,
		.payload = junk,
		.payload_len = sizeof junk,
	};
	rpc_frame_encode(&r.out, &f);
	raw_send(fx, &r);
	/* expect the server's HELLO then a PARAMS response for id 77 */
	struct rpc_frame_decoder dec;
	rpc_frame_decoder_init(&dec, NULL);
	int got = 0;
	struct rpc_frame resp = { 0 };
	size_t off = 0;
	uint64_t end = util_now_mono_ms() + 5000;
	while (got < 2 && util_now_mono_ms() < end) {
		run_for(fx, 5);
		int rr = 1;
		while (rr == 1 && got < 2 && off < r.in.len) {
			size_t used;
			const char *err;
			rr = rpc_frame_decoder_feed(&dec, r.in.data + off, r.in.len - off, &used,
						    &resp, &err);
			off += used;
			assert_true(rr >= 0);
			got += rr;
			if (got == 1 && rr == 1)
				assert_int_equal(resp.kind, RPC_KIND_HELLO);
		}
	}
	assert_int_equal(got, 2);
	assert_int_equal(resp.kind, RPC_KIND_RESPONSE);
	assert_true(resp.request_id == 77);
	assert_int_equal(resp.status, MAIL_ERR_PARAMS);
	assert_int_equal(resp.payload_len, 0);
	assert_int_equal(fx->handled, 0);
	assert_int_equal(r.eof, 0);   /* a bad payload does not close the connection */
	rpc_frame_decoder_deinit(&dec);
	raw_close(fx, &r);
}

static void test_raw_bad_frame(void **state)
{
	struct fx *fx = *state;
	struct result res = { 0 };
	/* a working client connection first */
	fetch(fx->client, &res, 1, 5000);
	run_until(fx, &res.calls, 1, 5000);

	struct raw r;
	raw_open(fx, &r);
	rpc_hello_encode(&r.out, "store", RPC_PROTO_MAJOR, RPC_PROTO_MINOR);
	struct rpc_frame f = { .kind = RPC_KIND_REQUEST, .method = 4, .request_id = 1 };
	rpc_frame_encode(&r.out, &f);
	r.out.data[r.out.len - 20] = 9;   /* the second frame's version byte */
	raw_send(fx, &r);
	run_until(fx, &r.eof, 1, 5000);
	raw_close(fx, &r);

	/* an oversize length before HELLO: refused from the length alone */
	raw_open(fx, &r);
	static const uint8_t big[] = { 0x00, 0x01, 0x00, 0x00 };
	buf_append(&r.out, big, sizeof big);
	raw_send(fx, &r);
	run_until(fx, &r.eof, 1, 5000);
	raw_close(fx, &r);

	/* a request before any HELLO */
	raw_open(fx, &r);
	rpc_frame_encode(&r.out, &f);
	raw_send(fx, &r);
	run_until(fx, &r.eof, 1, 5000);
	raw_close(fx, &r);

	struct rpc_counters sc;
	rpc_server_counters(fx->server, &sc);
	assert_int_equal(sc.bad_frames, 3);

	/* the other connection did not notice */
	fetch(fx->client, &res, 2, 5000);
	run_until(fx, &res.calls, 2, 5000);
	assert_int_equal(res.status[0], MAIL_OK);
	assert_int_equal(res.status[1], MAIL_OK);
	struct rpc_counters cc;
	rpc_client_counters(fx->client, &cc);
	assert_int_equal(cc.connections, 1);
}

static void test_wrong_service(void **state)
{
	struct fx *fx = *state;
	/* a raw peer saying it wants "queue" is disconnected */
	struct raw r;
	raw_open(fx, &r);
	rpc_hello_encode(&r.out, "queue", RPC_PROTO_MAJOR, RPC_PROTO_MINOR);
	raw_send(fx, &r);
	run_until(fx, &r.eof, 1, 5000);
	assert_int_equal(r.in.len, 0);   /* no HELLO back */
	raw_close(fx, &r);

	/* a wrong major too */
	raw_open(fx, &r);
	rpc_hello_encode(&r.out, "store", RPC_PROTO_MAJOR + 1, 0);
	raw_send(fx, &r);
	run_until(fx, &r.eof, 1, 5000);
	raw_close(fx, &r);

	/* and an rpc client of the wrong service gets MAIL_ERR_UNAVAILABLE */
	rpc_client *qc;
	rpc_client_create(&fx->loop, "queue", "127.0.0.1", fx->port, &qc);
	struct result res = { 0 };
	fetch(qc, &res, 1, 5000);
	run_until(fx, &res.calls, 1, 5000);
	assert_int_equal(res.status[0], MAIL_ERR_UNAVAILABLE);
	assert_int_equal(fx->handled, 0);
	rpc_client_destroy(&qc);
	assert_null(qc);

	struct rpc_counters sc;
	rpc_server_counters(fx->server, &sc);
	assert_int_equal(sc.bad_frames, 3);
}

/* A second service's LIST: answers with its own ctx (a name) as the
 * mailbox, so the test sees which service served the call. */
static void named_list_handler(rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	(void)msg;
	Store__MailboxInfo mb = STORE__MAILBOX_INFO__INIT;
	mb.name = ctx;
	Store__MailboxInfo *mbs[1] = { &mb };
	Store__ListResponse resp = STORE__LIST_RESPONSE__INIT;
	resp.n_mailboxes = 1;
	resp.mailboxes = mbs;
	/* packed here: the reply goes as those bytes (rpc_call_reply_packed),
	 * which list_cb reads back as the message */
	size_t len = protobuf_c_message_get_packed_size(&resp.base);
	uint8_t *packed = xmalloc(len + 1);
	protobuf_c_message_pack(&resp.base, packed);
	rpc_call_reply_packed(call, MAIL_OK, packed, len);
	free(packed);
}

static const rpc_method queue_methods[] = {
	{ STORE__METHOD__LIST, "list", &store__list_request__descriptor, named_list_handler, 0 },
};

struct named_result {
	int calls;
	int status;
	char name[32];
};

static void named_list_cb(int status, const ProtobufCMessage *msg, void *arg)
{
	struct named_result *r = arg;
	r->status = status;
	if (status == MAIL_OK) {
		const Store__ListResponse *resp = (const Store__ListResponse *)msg;
		assert_int_equal(resp->n_mailboxes, 1);
		snprintf(r->name, sizeof r->name, "%s", resp->mailboxes[0]->name);
	}
	r->calls++;
}

/* One listener serves "store" and "queue": the HELLO picks the service,
 * each connection reaches only its own service's methods; a service name
 * served by none is still refused, and adding a name twice is refused. */
static void test_two_services(void **state)
{
	struct fx *fx = *state;
	char qname[] = "queue-service";
	assert_int_equal(rpc_server_add_service(fx->server, "queue", queue_methods, 1, qname),
			 0);
	assert_int_equal(rpc_server_add_service(fx->server, "queue", queue_methods, 1, qname),
			 -1);
	assert_int_equal(rpc_server_add_service(fx->server, "store", queue_methods, 1, qname),
			 -1);
	rpc_client *qc;
	rpc_client_create(&fx->loop, "queue", "127.0.0.1", fx->port, &qc);
	struct named_result qr = { 0 }, sr = { 0 };
	Store__ListRequest lreq = STORE__LIST_REQUEST__INIT;
	lreq.user = "bob@example.com";
	rpc_client_call(qc, STORE__METHOD__LIST, &lreq.base, &store__list_response__descriptor,
			0, named_list_cb, &qr);
	rpc_client_call(fx->client, STORE__METHOD__LIST, &lreq.base,
			&store__list_response__descriptor, 0, named_list_cb, &sr);
	run_until(fx, &qr.calls, 1, 5000);
	run_until(fx, &sr.calls, 1, 5000);
	assert_int_equal(qr.status, MAIL_OK);
	assert_string_equal(qr.name, "queue-service");
	assert_int_equal(sr.status, MAIL_OK);
	assert_string_equal(sr.name, "bob@example.com");   /* the store's handler */

	/* FETCH exists on "store" only: BAD_METHOD through "queue". */
	struct result res = { 0 };
	fetch(qc, &res, 1, 5000);
	run_until(fx, &res.calls, 1, 5000);
	assert_int_equal(res.status[0], MAIL_ERR_BAD_METHOD);
	assert_int_equal(fx->handled, 0);

	rpc_client *xc;
	rpc_client_create(&fx->loop, "other", "127.0.0.1", fx->port, &xc);
	struct named_result xr = { 0 };
	rpc_client_call(xc, STORE__METHOD__LIST, &lreq.base, &store__list_response__descriptor,
			0, named_list_cb, &xr);
	run_until(fx, &xr.calls, 1, 5000);
	assert_int_equal(xr.status, MAIL_ERR_UNAVAILABLE);
	rpc_client_destroy(&xc);
	rpc_client_destroy(&qc);
	struct rpc_counters sc;
	rpc_server_counters(fx->server, &sc);
	assert_int_equal(sc.connections, 3);
	assert_int_equal(sc.bad_frames, 1);
}

static void test_client_destroy_in_flight(void **state)
{
	struct fx *fx = *state;
	struct result res = { 0 };
	for (int i = 0; i < 3; i++)
		fetch(fx->client, &res, UID_PARK, 5000);
	run_until(fx, &fx->n_parked, 3, 5000);
	/* callbacks run from inside destroy */
	rpc_client_destroy(&fx->client);
	assert_int_equal(res.calls, 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(res.status[i], MAIL_ERR_UNAVAILABLE);
	run_for(fx, 20);
	reply_parked(fx);   /* the server side connection is gone: dropped */
	run_for(fx, 20);
	/* and a fresh client works */
	rpc_client_create(&fx->loop, "store", "127.0.0.1", fx->port, &fx->client);
	fetch(fx->client, &res, 5, 5000);
	run_until(fx, &res.calls, 4, 5000);
	assert_int_equal(res.status[3], MAIL_OK);
}

struct destroy_arg {
	rpc_client **client;
	int calls;
	int status[4];
};

static void destroying_cb(int status, const ProtobufCMessage *msg, void *arg)
{
	struct destroy_arg *d = arg;
	(void)msg;
	d->status[d->calls++] = status;
	/* the first answer destroys the client: the others are answered from
	 * inside rpc_client_destroy(), once each */
	if (d->calls == 1)
		rpc_client_destroy(d->client);
}

static void test_destroy_from_callback(void **state)
{
	struct fx *fx = *state;
	struct destroy_arg d = { .client = &fx->client };
	static const uint32_t uids[] = { UID_NOT_FOUND, 1, 2, UID_PARK };
	for (int i = 0; i < 4; i++) {
		Store__FetchRequest req = STORE__FETCH_REQUEST__INIT;
		req.uid = uids[i];
		rpc_client_call(fx->client, STORE__METHOD__FETCH, &req.base,
				&store__fetch_response__descriptor, 5000, destroying_cb, &d);
	}
	run_until(fx, &d.calls, 4, 5000);
	assert_null(fx->client);
	assert_int_equal(d.status[0], MAIL_ERR_NOT_FOUND);
	assert_int_equal(d.status[3], MAIL_ERR_UNAVAILABLE);
	run_for(fx, 20);
	assert_int_equal(d.calls, 4);
}

static void test_pool(void **state)
{
	struct fx *fx = *state;
	rpc_pool *pool = rpc_pool_create(&fx->loop, "store");
	rpc_client *a = rpc_pool_get(pool, "127.0.0.1", fx->port);
	rpc_client *b = rpc_pool_get(pool, "127.0.0.1", fx->port);
	rpc_client *c = rpc_pool_get(pool, "127.0.0.1", 1);
	assert_ptr_equal(a, b);
	assert_ptr_not_equal(a, c);
	struct result res = { 0 };
	fetch(a, &res, 1, 5000);
	fetch(c, &res, 2, 5000);   /* port 1: nobody there */
	run_until(fx, &res.calls, 2, 5000);
	int ok = res.status[0] == MAIL_OK ? 0 : 1;
	assert_int_equal(res.status[ok], MAIL_OK);
	assert_int_equal(res.status[1 - ok], MAIL_ERR_UNAVAILABLE);
	rpc_pool_destroy(&pool);
	assert_null(pool);
}

/* ---- limits (rpc_server_limits) ---- */

/* Send HELLO and wait for the server's. */
static void raw_hello(struct fx *fx, struct raw *r)
{
	rpc_hello_encode(&r->out, "store", RPC_PROTO_MAJOR, RPC_PROTO_MINOR);
	raw_send(fx, r);
	uint64_t end = util_now_mono_ms() + 5000;
	while (r->in.len == 0 && !r->eof && util_now_mono_ms() < end)
		run_for(fx, 5);
	assert_true(r->in.len > 0);
}

/* Over max_connections a connection is closed at accept, before any byte;
 * a closed one frees its slot. */
static void test_max_connections(void **state)
{
	struct fx *fx = *state;
	struct rpc_server_limits lim = RPC_SERVER_LIMITS_DEFAULT;
	lim.max_connections = 2;
	rpc_server_set_limits(fx->server, &lim);
	struct result res = { 0 };
	fetch(fx->client, &res, 1, 5000);
	run_until(fx, &res.calls, 1, 5000);
	assert_int_equal(res.status[0], MAIL_OK);

	struct raw a, b;
	raw_open(fx, &a);
	raw_hello(fx, &a);
	raw_open(fx, &b);
	rpc_hello_encode(&b.out, "store", RPC_PROTO_MAJOR, RPC_PROTO_MINOR);
	raw_send(fx, &b);
	run_until(fx, &b.eof, 1, 5000);
	assert_int_equal(b.in.len, 0);
	raw_close(fx, &b);
	struct rpc_counters sc;
	rpc_server_counters(fx->server, &sc);
	assert_int_equal(sc.refused, 1);
	assert_int_equal(sc.connections, 2);

	raw_close(fx, &a);
	run_for(fx, 50);
	raw_open(fx, &b);
	raw_hello(fx, &b);
	assert_int_equal(b.eof, 0);
	raw_close(fx, &b);
	/* the first client never noticed */
	fetch(fx->client, &res, 2, 5000);
	run_until(fx, &res.calls, 2, 5000);
	assert_int_equal(res.status[1], MAIL_OK);
	rpc_server_counters(fx->server, &sc);
	assert_int_equal(sc.refused, 1);
	assert_int_equal(sc.bad_frames, 0);
}

/* A connection with nothing in flight is closed after idle_timeout_ms; one
 * with a call in flight is not; the client reconnects on its next call. */
static void test_idle_timeout(void **state)
{
	struct fx *fx = *state;
	int port = fx->port;
	rpc_server_destroy(&fx->server);
	run_for(fx, 10);
	struct rpc_server_limits lim = RPC_SERVER_LIMITS_DEFAULT;
	lim.idle_timeout_ms = 100;
	server_start_limits(fx, port, &lim);

	struct result res = { 0 };
	fetch(fx->client, &res, UID_PARK, 5000);
	run_until(fx, &fx->n_parked, 1, 5000);

	struct raw r;
	raw_open(fx, &r);
	raw_hello(fx, &r);
	uint64_t t0 = util_now_mono_ms();
	run_until(fx, &r.eof, 1, 2000);
	uint64_t took = util_now_mono_ms() - t0;
	assert_true(took >= 90);
	assert_true(took < 1000);
	raw_close(fx, &r);

	run_for(fx, 300);   /* the parked call keeps its connection */
	struct rpc_counters sc;
	rpc_server_counters(fx->server, &sc);
	assert_int_equal(sc.idle_closed, 1);
	reply_parked(fx);
	run_until(fx, &res.calls, 1, 5000);
	assert_int_equal(res.status[0], MAIL_ERR_TEMP);

	/* now idle: closed; the next call connects again */
	run_for(fx, 300);
	rpc_server_counters(fx->server, &sc);
	assert_int_equal(sc.idle_closed, 2);
	fetch(fx->client, &res, 1, 5000);
	run_until(fx, &res.calls, 2, 5000);
	assert_int_equal(res.status[1], MAIL_OK);
	rpc_server_counters(fx->server, &sc);
	assert_int_equal(sc.connections, 3);
	assert_int_equal(sc.bad_frames, 0);
}

/* At max_inflight unanswered calls the server stops taking requests from
 * that connection; each batch of replies lets the next batch in. */
static void test_max_inflight(void **state)
{
	struct fx *fx = *state;
	struct rpc_server_limits lim = RPC_SERVER_LIMITS_DEFAULT;
	lim.max_inflight = 4;
	rpc_server_set_limits(fx->server, &lim);
	struct result res = { 0 };
	for (int i = 0; i < 10; i++)
		fetch(fx->client, &res, UID_PARK, 5000);
	for (int batch = 0; batch < 2; batch++) {
		run_until(fx, &fx->n_parked, 4, 5000);
		run_for(fx, 50);
		assert_int_equal(fx->n_parked, 4);   /* no more than the bound */
		assert_int_equal(fx->handled, 4 * (batch + 1));
		reply_parked(fx);
	}
	run_until(fx, &fx->n_parked, 2, 5000);
	reply_parked(fx);
	run_until(fx, &res.calls, 10, 5000);
	for (int i = 0; i < 10; i++)
		assert_int_equal(res.status[i], MAIL_ERR_TEMP);
	struct rpc_counters sc;
	rpc_server_counters(fx->server, &sc);
	assert_true(sc.read_pauses >= 1);
	assert_int_equal(sc.connections, 1);
}

/* Decode frames from r->in (consuming them); count responses, and those
 * with MAIL_OK. */
static void raw_drain_responses(struct rpc_frame_decoder *dec, struct raw *r, int *got,
				int *ok)
{
	size_t off = 0;
	while (off < r->in.len) {
		struct rpc_frame f;
		size_t used;
		const char *err;
		int rr = rpc_frame_decoder_feed(dec, r->in.data + off, r->in.len - off, &used, &f,
						&err);
		off += used;
		assert_true(rr >= 0);
		if (rr == 0)
			break;
		if (f.kind != RPC_KIND_RESPONSE)
			continue;
		(*got)++;
		if (f.status == MAIL_OK && f.payload_len > BIG_BODY)
			(*ok)++;
	}
	buf_consume(&r->in, off);
}

#define N_FLOOD 600

/* A peer pipelining requests without reading replies: the server's queue
 * of replies stays within max_out_bytes (+ one reply), it stops reading,
 * and once the peer reads, every request is answered. */
static void test_max_out_bytes(void **state)
{
	struct fx *fx = *state;
	const size_t bound = 256u * 1024u;
	struct rpc_server_limits lim = RPC_SERVER_LIMITS_DEFAULT;
	lim.max_out_bytes = bound;
	rpc_server_set_limits(fx->server, &lim);

	struct raw r;
	raw_open_opts(fx, &r, 1);
	/* a small receive window: autotuning would let the kernel take MBs */
	int rcv = 64 * 1024;
	uv_recv_buffer_size((uv_handle_t *)&r.tcp, &rcv);
	rpc_hello_encode(&r.out, "store", RPC_PROTO_MAJOR, RPC_PROTO_MINOR);
	for (uint32_t i = 0; i < N_FLOOD; i++) {
		uint8_t payload[16];
		Store__FetchRequest req = STORE__FETCH_REQUEST__INIT;
		req.uid = UID_BIG + i;
		size_t n = protobuf_c_message_pack(&req.base, payload);
		struct rpc_frame f = {
			.kind = RPC_KIND_REQUEST,
			.method = STORE__METHOD__FETCH,
			.request_id = i + 1,
			.deadline_ms = 30000,
			.payload = payload,
			.payload_len = n,
		};
		rpc_frame_encode(&r.out, &f);
	}
	/* no waiting for the write: the server may never take all of it */
	uv_buf_t b = uv_buf_init((char *)r.out.data, (unsigned int)r.out.len);
	r.wreq.data = &r;
	uv_write(&r.wreq, (uv_stream_t *)&r.tcp, &b, 1, raw_write_cb);
	run_for(fx, 500);

	struct rpc_counters sc;
	rpc_server_counters(fx->server, &sc);
	assert_true(sc.read_pauses >= 1);
	assert_true(sc.out_peak_bytes >= bound);
	assert_true(sc.out_peak_bytes <= bound + BIG_BODY + 64);
	assert_true(fx->handled < N_FLOOD);
	int handled = fx->handled;
	run_for(fx, 200);
	assert_int_equal(fx->handled, handled);   /* still paused */

	/* the peer reads: everything is answered, the bound still holds */
	uv_read_start((uv_stream_t *)&r.tcp, raw_alloc_cb, raw_read_cb);
	struct rpc_frame_decoder dec;
	rpc_frame_decoder_init(&dec, NULL);
	int got = 0, ok = 0;
	uint64_t end = util_now_mono_ms() + 20000;
	while (got < N_FLOOD && !r.eof && util_now_mono_ms() < end) {
		run_for(fx, 5);
		raw_drain_responses(&dec, &r, &got, &ok);
	}
	assert_int_equal(got, N_FLOOD);
	assert_int_equal(ok, N_FLOOD);
	assert_int_equal(fx->handled, N_FLOOD);
	assert_int_equal(r.written, 1);
	rpc_server_counters(fx->server, &sc);
	assert_true(sc.out_peak_bytes <= bound + BIG_BODY + 64);
	assert_int_equal(sc.bad_frames, 0);
	rpc_frame_decoder_deinit(&dec);
	raw_close(fx, &r);
}

/* ---- mutual TLS and roles ---- */

struct tls_fx {
	char dir[64];
	tls_server *srv;
	tls_client *frontend, *queue, *anon;
};

static void tls_fx_path(const struct tls_fx *t, char *out, size_t size, const char *name)
{
	snprintf(out, size, "%s/%s", t->dir, name);
}

static void tls_fx_init(struct tls_fx *t)
{
	memset(t, 0, sizeof *t);
	snprintf(t->dir, sizeof t->dir, "/tmp/test-rpc-tls-XXXXXX");
	assert_non_null(mkdtemp(t->dir));
	char cmd[512];
	snprintf(cmd, sizeof cmd,
		 "%s/cluster/dev-ca %s node store-1 store && %s/cluster/dev-ca %s node fe-1 frontend"
		 " && %s/cluster/dev-ca %s node queue-1 queue", MAIL_SOURCE_DIR, t->dir,
		 MAIL_SOURCE_DIR, t->dir, MAIL_SOURCE_DIR, t->dir);
	assert_int_equal(system(cmd), 0);
	char ca[128], cert[128], key[128];
	const char *err = NULL;
	tls_fx_path(t, ca, sizeof ca, "ca.pem");
	tls_fx_path(t, cert, sizeof cert, "store-1.pem");
	tls_fx_path(t, key, sizeof key, "store-1.key");
	struct tls_server_settings ss = { cert, key, 0 };
	assert_int_equal(tls_server_create(&ss, &t->srv, &err), 0);
	assert_int_equal(tls_server_require_client_cert(t->srv, ca, &err), 0);
	static const char *const names[] = { "fe-1", "queue-1" };
	tls_client **clis[] = { &t->frontend, &t->queue };
	for (int i = 0; i < 2; i++) {
		char n[64];
		snprintf(n, sizeof n, "%s.pem", names[i]);
		tls_fx_path(t, cert, sizeof cert, n);
		snprintf(n, sizeof n, "%s.key", names[i]);
		tls_fx_path(t, key, sizeof key, n);
		struct tls_client_settings cs = { ca, cert, key };
		assert_int_equal(tls_client_create(&cs, clis[i], &err), 0);
	}
	struct tls_client_settings anon = { ca, NULL, NULL };
	assert_int_equal(tls_client_create(&anon, &t->anon, &err), 0);
}

static void tls_fx_deinit(struct tls_fx *t)
{
	tls_client_destroy(&t->frontend);
	tls_client_destroy(&t->queue);
	tls_client_destroy(&t->anon);
	tls_server_destroy(&t->srv);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", t->dir);
	assert_int_equal(system(cmd), 0);
}

static rpc_client *tls_client_for(struct fx *fx, tls_client *tls)
{
	rpc_client *c;
	rpc_client_create(&fx->loop, "store", "127.0.0.1", fx->port, &c);
	rpc_client_set_tls(c, tls);
	return c;
}

/* A frontend certificate may call what allows frontends and gets
 * MAIL_ERR_PERM for the rest; a queue certificate calls the nodes' method;
 * a client without a certificate, or speaking plaintext, is refused before
 * any request is read. */
static void test_tls_roles(void **state)
{
	struct fx *fx = *state;
	struct tls_fx t;
	tls_fx_init(&t);
	rpc_server_destroy(&fx->server);
	run_for(fx, 10);
	rpc_server_create(&fx->loop, "store", methods, 2, fx, &fx->server);
	rpc_server_set_tls(fx->server, t.srv);
	const char *error = NULL;
	assert_int_equal(rpc_server_listen(fx->server, "127.0.0.1", 0, &fx->port, &error), 0);

	rpc_client *fe = tls_client_for(fx, t.frontend);
	struct result res = { 0 };
	fetch(fe, &res, 1, 5000);
	run_until(fx, &res.calls, 1, 5000);
	assert_int_equal(res.status[0], MAIL_OK);
	assert_int_equal(res.bad, 0);
	Store__ListRequest lreq = STORE__LIST_REQUEST__INIT;
	lreq.user = "bob@example.com";
	struct named_result fr = { 0 }, qr = { 0 }, ar = { 0 };
	rpc_client_call(fe, STORE__METHOD__LIST, &lreq.base, &store__list_response__descriptor, 0,
			named_list_cb, &fr);
	run_until(fx, &fr.calls, 1, 5000);
	assert_int_equal(fr.status, MAIL_ERR_PERM);

	rpc_client *qc = tls_client_for(fx, t.queue);
	rpc_client_call(qc, STORE__METHOD__LIST, &lreq.base, &store__list_response__descriptor, 0,
			named_list_cb, &qr);
	run_until(fx, &qr.calls, 1, 5000);
	assert_int_equal(qr.status, MAIL_OK);
	assert_string_equal(qr.name, "bob@example.com");

	/* no certificate: the handshake fails, nothing is handled */
	int handled = fx->handled;
	rpc_client *ac = tls_client_for(fx, t.anon);
	rpc_client_call(ac, STORE__METHOD__LIST, &lreq.base, &store__list_response__descriptor, 0,
			named_list_cb, &ar);
	struct result ares = { 0 };
	fetch(ac, &ares, 2, 5000);
	run_until(fx, &ar.calls, 1, 5000);
	run_until(fx, &ares.calls, 1, 5000);
	assert_int_equal(ar.status, MAIL_ERR_UNAVAILABLE);
	assert_int_equal(ares.status[0], MAIL_ERR_UNAVAILABLE);
	assert_int_equal(fx->handled, handled);

	/* plaintext: closed, never a HELLO back */
	struct raw r;
	raw_open(fx, &r);
	rpc_hello_encode(&r.out, "store", RPC_PROTO_MAJOR, RPC_PROTO_MINOR);
	raw_send(fx, &r);
	run_until(fx, &r.eof, 1, 5000);
	raw_close(fx, &r);

	struct rpc_counters sc;
	rpc_server_counters(fx->server, &sc);
	assert_int_equal(sc.calls_by_status[MAIL_ERR_PERM], 1);
	assert_int_equal(sc.calls_by_status[MAIL_OK], 2);
	rpc_client_destroy(&fe);
	rpc_client_destroy(&qc);
	rpc_client_destroy(&ac);
	rpc_server_destroy(&fx->server);
	run_for(fx, 20);
	tls_fx_deinit(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_pipelined, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_methods_and_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deadline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_server_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backoff, setup, teardown),
		cmocka_unit_test_setup_teardown(test_raw_garbage_payload, setup, teardown),
		cmocka_unit_test_setup_teardown(test_raw_bad_frame, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_service, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_services, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_destroy_in_flight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_destroy_from_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pool, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_connections, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_inflight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_out_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tls_roles, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
