/* rspamd.c: the client (rspamd.h): libcurl's multi interface on a libuv
 * loop, the request queue, and delivery of results.
 *
 * A check is in one of three lists of its client (loop thread only):
 *
 *   queued    waiting for a request slot (max_inflight), in order;
 *   inflight  its easy handle is in curl's multi handle;
 *   ready     its outcome is known (answered, failed, refused at once);
 *             it waits for the ready timer to run its callback.
 *
 * Every callback runs from one place, rspamd__ready_cb (a 0 ms timer):
 * never inside rspamd_check_start(), never inside a libcurl callback or
 * curl_multi_socket_action() (where removing a handle or destroying the
 * client would pull the multi handle from under libcurl). A callback may
 * start, cancel or destroy anything: the ready pass re-reads the list
 * after each one, stops when the client was destroyed, and takes only the
 * checks that were ready when it began (a callback that keeps starting
 * checks that are refused at once cannot hold the loop).
 *
 * libcurl and libuv (curl's "multi-uv" pattern): libcurl says which
 * sockets it waits on (CURLMOPT_SOCKETFUNCTION: a uv_poll_t each, made on
 * the first call for a socket and closed on CURL_POLL_REMOVE, before
 * libcurl closes the descriptor, so a descriptor number reused at once
 * gets a fresh watcher) and when to call it back
 * (CURLMOPT_TIMERFUNCTION: one uv_timer_t). Each poll or timer event
 * calls curl_multi_socket_action(), then reads curl's finished transfers
 * and moves them to ready.
 *
 * Memory: a check is freed when its callback returns or it is cancelled;
 * checks hold no libuv handle, so destroy frees them at once. The client
 * holds two timers and one poll per socket; it is freed in the close
 * callback of the last one, after destroy.
 */
#include "rspamd.h"

#include "log.h"
#include "util.h"
#include "xalloc.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

/* A queued check with less than this left is not sent: the request could
 * not even connect in time. */
#define RSPAMD__SEND_MIN_MS 5u

enum rspamd__state { RSPAMD__QUEUED, RSPAMD__INFLIGHT, RSPAMD__READY };

struct rspamd_check {
	rspamd_client *c;
	enum rspamd__state state;
	rspamd_cb *cb;
	void *arg;
	const void *msg; /* borrowed */
	size_t len;
	struct curl_slist *headers;
	char *queue_id; /* for log lines ("-" when none) */
	uint64_t start_ms, deadline_ms;
	uint64_t seq; /* when it became ready */
	CURL *easy;   /* INFLIGHT */
	buf resp;
	int resp_over;
	char curl_error[CURL_ERROR_SIZE];
	/* READY */
	enum rspamd_status status;
	int timed_out;
	struct rspamd_parsed *parsed; /* RSPAMD_OK */
	char problem[256];
	rspamd_check *prev, *next;
};

struct rspamd__list {
	rspamd_check *head, *tail;
	unsigned count;
};

/* A socket libcurl waits on. */
struct rspamd__sock {
	rspamd_client *c;
	curl_socket_t fd;
	uv_poll_t poll;
	int closing;
	struct rspamd__sock *prev, *next; /* in c->socks */
};

struct rspamd_client {
	uv_loop_t *loop;
	CURLM *multi;
	char *url; /* base + "/checkv2" */
	unsigned timeout_ms, max_inflight, queue_max;
	size_t max_message_bytes, max_response_bytes;
	struct rspamd__list queued, inflight, ready;
	uint64_t ready_seq;
	uv_timer_t curl_timer;  /* libcurl's timeout */
	uv_timer_t ready_timer; /* runs the ready callbacks */
	struct rspamd__sock *socks;
	unsigned handles; /* our libuv handles not yet closed */
	int delivering;   /* inside rspamd__ready_cb */
	int destroyed;    /* rspamd_client_destroy was called */
	int torn_down;    /* checks freed, curl gone, handles closing */
	struct rspamd_stats stats;
};

static void rspamd__list_append(struct rspamd__list *l, rspamd_check *chk)
{
	chk->prev = l->tail;
	chk->next = NULL;
	if (l->tail != NULL)
		l->tail->next = chk;
	else
		l->head = chk;
	l->tail = chk;
	l->count++;
}

static void rspamd__list_remove(struct rspamd__list *l, rspamd_check *chk)
{
	if (chk->prev != NULL)
		chk->prev->next = chk->next;
	else
		l->head = chk->next;
	if (chk->next != NULL)
		chk->next->prev = chk->prev;
	else
		l->tail = chk->prev;
	chk->prev = chk->next = NULL;
	l->count--;
}

static struct rspamd__list *rspamd__list_of(rspamd_client *c, const rspamd_check *chk)
{
	switch (chk->state) {
	case RSPAMD__QUEUED:
		return &c->queued;
	case RSPAMD__INFLIGHT:
		return &c->inflight;
	case RSPAMD__READY:
		break;
	}
	return &c->ready;
}

/* ---- checks ---- */

/* The request off curl (loop, outside libcurl's callbacks). */
static void rspamd__easy_release(rspamd_check *chk)
{
	if (chk->easy == NULL)
		return;
	curl_multi_remove_handle(chk->c->multi, chk->easy);
	curl_easy_cleanup(chk->easy);
	chk->easy = NULL;
}

static void rspamd__check_free(rspamd_check *chk)
{
	rspamd__easy_release(chk);
	curl_slist_free_all(chk->headers);
	buf_deinit(&chk->resp);
	free(chk->parsed);
	free(chk->queue_id);
	free(chk);
}

static void rspamd__ready_cb(uv_timer_t *timer);

static void rspamd__ready_start(rspamd_client *c)
{
	if (uv_timer_start(&c->ready_timer, rspamd__ready_cb, 0, 0) < 0)
		abort(); /* only for a closing handle: our bug */
}

/* chk leaves its list and joins ready with an outcome; the ready timer
 * runs its callback on a later loop turn. */
static void rspamd__make_ready(rspamd_check *chk, enum rspamd_status status)
{
	rspamd_client *c = chk->c;
	rspamd__list_remove(rspamd__list_of(c, chk), chk);
	chk->state = RSPAMD__READY;
	chk->status = status;
	chk->seq = ++c->ready_seq;
	rspamd__list_append(&c->ready, chk);
	if (!uv_is_active((uv_handle_t *)&c->ready_timer))
		rspamd__ready_start(c);
}

/* ---- sending ---- */

static size_t rspamd__write_cb(char *data, size_t size, size_t nmemb, void *arg)
{
	rspamd_check *chk = arg;
	size_t n = size * nmemb;
	/* the limit before the append: a long answer is dropped, not kept */
	if (n > chk->c->max_response_bytes - chk->resp.len) {
		chk->resp_over = 1;
		return 0; /* CURLE_WRITE_ERROR */
	}
	buf_append(&chk->resp, data, n);
	return n;
}

/* Put chk's request on curl with timeout_ms left; on failure chk is
 * ready, UNAVAILABLE. */
static void rspamd__send(rspamd_check *chk, uint64_t left_ms)
{
	rspamd_client *c = chk->c;
	rspamd__list_remove(rspamd__list_of(c, chk), chk);
	chk->state = RSPAMD__INFLIGHT;
	rspamd__list_append(&c->inflight, chk);

	CURL *e = curl_easy_init();
	if (e == NULL) {
		snprintf(chk->problem, sizeof chk->problem, "curl_easy_init failed");
		rspamd__make_ready(chk, RSPAMD_UNAVAILABLE);
		return;
	}
	chk->easy = e;
	/* CURLOPT_POSTFIELDS borrows: the message is not copied */
	static const char empty[] = "";
	int bad = 0;
	bad |= curl_easy_setopt(e, CURLOPT_URL, c->url) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, chk->len > 0 ? chk->msg : empty) !=
	       CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)chk->len) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, chk->headers) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)left_ms) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, rspamd__write_cb) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, chk) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_PRIVATE, chk) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, chk->curl_error) != CURLE_OK;
	/* a Content-Length over the limit fails before the body is read */
	bad |= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_response_bytes) !=
	       CURLE_OK;
	/* no signals in a daemon (timeouts would use SIGALRM otherwise) */
	bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
	/* never through an http_proxy of the environment, never elsewhere
	 * by a redirect: the message goes to the configured URL only */
	bad |= curl_easy_setopt(e, CURLOPT_PROXY, "") != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
	CURLMcode mc = bad ? CURLM_OK : curl_multi_add_handle(c->multi, e);
	if (bad || mc != CURLM_OK) {
		/* never in the multi handle: no removal */
		curl_easy_cleanup(e);
		chk->easy = NULL;
		snprintf(chk->problem, sizeof chk->problem, "%s%s",
			 bad ? "curl_easy_setopt failed" : "curl_multi_add_handle: ",
			 bad ? "" : curl_multi_strerror(mc));
		rspamd__make_ready(chk, RSPAMD_UNAVAILABLE);
	}
}

/* Send queued checks while there are slots. A check whose deadline has
 * (nearly) passed in the queue is answered instead. */
static void rspamd__pump(rspamd_client *c)
{
	/* destroyed from a callback, torn down when it returns: nothing new
	 * goes out */
	if (c->destroyed)
		return;
	while (c->inflight.count < c->max_inflight && c->queued.head != NULL) {
		rspamd_check *chk = c->queued.head;
		uint64_t now = util_now_mono_ms();
		if (now + RSPAMD__SEND_MIN_MS > chk->deadline_ms) {
			snprintf(chk->problem, sizeof chk->problem,
				 "timed out in the queue after %u ms", c->timeout_ms);
			chk->timed_out = 1;
			rspamd__make_ready(chk, RSPAMD_UNAVAILABLE);
			continue;
		}
		rspamd__send(chk, chk->deadline_ms - now);
	}
}

/* ---- finished transfers ---- */

/* The outcome of chk's transfer (res from libcurl); chk becomes ready. */
static void rspamd__finished(rspamd_check *chk, CURLcode res)
{
	rspamd_client *c = chk->c;
	long code = 0;
	curl_easy_getinfo(chk->easy, CURLINFO_RESPONSE_CODE, &code);
	/* the connection goes now, not when the callback has run */
	rspamd__easy_release(chk);
	enum rspamd_status status = RSPAMD_UNAVAILABLE;
	if (res == CURLE_OPERATION_TIMEDOUT) {
		chk->timed_out = 1;
		snprintf(chk->problem, sizeof chk->problem, "timed out after %u ms",
			 c->timeout_ms);
	} else if (chk->resp_over || res == CURLE_FILESIZE_EXCEEDED) {
		snprintf(chk->problem, sizeof chk->problem, "answer over %zu bytes",
			 c->max_response_bytes);
	} else if (res != CURLE_OK) {
		/* cut: curl's texts are short; the buffer says the host */
		snprintf(chk->problem, sizeof chk->problem, "%.60s%s%.180s",
			 curl_easy_strerror(res), chk->curl_error[0] != '\0' ? ": " : "",
			 chk->curl_error);
	} else {
		struct rspamd_parsed *p = xmalloc(sizeof *p);
		/* an empty answer has no buffer at all */
		const char *body = chk->resp.data != NULL ? (const char *)chk->resp.data : "";
		int r = rspamd_parse_response(body, chk->resp.len, p);
		if (code != 200) {
			/* rspamd's error answers are JSON too: say what it said */
			static const char said[] = "rspamd error: ";
			const char *what = r < 0 && strncmp(p->error, said, sizeof said - 1) == 0
						   ? p->error + sizeof said - 1
						   : NULL;
			snprintf(chk->problem, sizeof chk->problem, "HTTP %ld%s%s", code,
				 what != NULL ? ": " : "", what != NULL ? what : "");
			free(p);
		} else if (r < 0) {
			snprintf(chk->problem, sizeof chk->problem, "bad answer: %s", p->error);
			free(p);
		} else {
			chk->parsed = p;
			status = RSPAMD_OK;
		}
	}
	buf_deinit(&chk->resp);
	buf_init(&chk->resp);
	rspamd__make_ready(chk, status);
}

/* Read libcurl's finished transfers (after curl_multi_socket_action
 * returned: removing handles is allowed here), then refill the slots. */
static void rspamd__collect(rspamd_client *c)
{
	CURLMsg *msg;
	int left;
	while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		char *priv = NULL;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
		rspamd__finished((rspamd_check *)priv, msg->data.result);
	}
	rspamd__pump(c);
}

/* ---- libcurl on libuv ---- */

static void rspamd__handle_closed(rspamd_client *c)
{
	if (--c->handles == 0 && c->torn_down) {
		free(c->url);
		free(c);
		curl_global_cleanup();
	}
}

static void rspamd__sock_close_cb(uv_handle_t *handle)
{
	struct rspamd__sock *s = handle->data;
	rspamd_client *c = s->c;
	free(s);
	rspamd__handle_closed(c);
}

static void rspamd__sock_close(rspamd_client *c, struct rspamd__sock *s)
{
	if (s->closing)
		return;
	s->closing = 1;
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		c->socks = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	uv_poll_stop(&s->poll);
	uv_close((uv_handle_t *)&s->poll, rspamd__sock_close_cb);
}

static void rspamd__poll_cb(uv_poll_t *poll, int status, int events)
{
	struct rspamd__sock *s = poll->data;
	rspamd_client *c = s->c;
	int flags = 0;
	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	int running;
	/* s may be closed inside (CURL_POLL_REMOVE): its memory stays until
	 * its close callback, on a later turn */
	curl_multi_socket_action(c->multi, s->fd, flags, &running);
	rspamd__collect(c);
}

static int rspamd__socket_cb(CURL *easy, curl_socket_t fd, int what, void *arg, void *sockp)
{
	(void)easy;
	rspamd_client *c = arg;
	struct rspamd__sock *s = sockp;
	if (what == CURL_POLL_REMOVE) {
		if (s != NULL) {
			rspamd__sock_close(c, s);
			curl_multi_assign(c->multi, fd, NULL);
		}
		return 0;
	}
	if (s == NULL) {
		s = xcalloc(1, sizeof *s);
		s->c = c;
		s->fd = fd;
		/* the previous watcher of a reused descriptor number was
		 * stopped at its CURL_POLL_REMOVE: this cannot fail but for
		 * a bug of ours */
		if (uv_poll_init_socket(c->loop, &s->poll, fd) < 0)
			abort();
		s->poll.data = s;
		c->handles++;
		s->next = c->socks;
		if (c->socks != NULL)
			c->socks->prev = s;
		c->socks = s;
		curl_multi_assign(c->multi, fd, s);
	}
	int events = 0;
	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
		events |= UV_READABLE;
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
		events |= UV_WRITABLE;
	uv_poll_start(&s->poll, events, rspamd__poll_cb);
	return 0;
}

static void rspamd__curl_timer_cb(uv_timer_t *timer)
{
	rspamd_client *c = timer->data;
	int running;
	curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	rspamd__collect(c);
}

/* libcurl's one timeout: -1 none, 0 "call me as soon as possible" (a 0 ms
 * timer: never a call of curl_multi_socket_action from in here). */
static int rspamd__timer_fn(CURLM *multi, long timeout_ms, void *arg)
{
	(void)multi;
	rspamd_client *c = arg;
	if (c->torn_down)
		return 0;
	if (timeout_ms < 0)
		uv_timer_stop(&c->curl_timer);
	else
		uv_timer_start(&c->curl_timer, rspamd__curl_timer_cb, (uint64_t)timeout_ms, 0);
	return 0;
}

/* ---- delivery ---- */

static void rspamd__teardown(rspamd_client *c);

static void rspamd__deliver(rspamd_check *chk)
{
	rspamd_client *c = chk->c;
	uint64_t elapsed = util_now_mono_ms() - chk->start_ms;
	struct rspamd_result r = {
		.status = chk->status,
		.action = RSPAMD_ACTION_NO_ACTION,
		.symbols = "",
		.elapsed_ms = elapsed > 0xffffffffu ? 0xffffffffu : (unsigned)elapsed,
	};
	char qid[80], problem[300];
	log_quote(qid, sizeof qid, chk->queue_id, strlen(chk->queue_id));
	switch (chk->status) {
	case RSPAMD_OK:
		r.action = chk->parsed->action;
		r.score = chk->parsed->score;
		r.required_score = chk->parsed->required_score;
		r.symbols = chk->parsed->symbols;
		r.message = chk->parsed->message[0] != '\0' ? chk->parsed->message : NULL;
		if (r.action == RSPAMD_ACTION_REWRITE_SUBJECT && chk->parsed->subject[0] != '\0')
			r.subject = chk->parsed->subject;
		c->stats.ok++;
		break;
	case RSPAMD_UNAVAILABLE:
		r.problem = chk->problem;
		c->stats.unavailable++;
		if (chk->timed_out)
			c->stats.timeouts++;
		log_event(LOG_WARN, "rspamd", "event=rspamd_unavailable qid=%s ms=%u problem=%s",
			  qid, r.elapsed_ms,
			  log_quote(problem, sizeof problem, chk->problem, strlen(chk->problem)));
		break;
	case RSPAMD_SKIPPED:
		r.problem = chk->problem;
		c->stats.skipped++;
		log_event(LOG_INFO, "rspamd", "event=rspamd_skipped qid=%s size=%zu max=%zu", qid,
			  chk->len, c->max_message_bytes);
		break;
	case RSPAMD_BUSY:
		r.problem = chk->problem;
		c->stats.busy++;
		log_event(LOG_WARN, "rspamd", "event=rspamd_busy qid=%s inflight=%u queued=%u", qid,
			  c->inflight.count, c->queued.count);
		break;
	}
	chk->cb(&r, chk->arg);
}

/* Run the callbacks of the checks that were ready when this turn began. */
static void rspamd__ready_cb(uv_timer_t *timer)
{
	rspamd_client *c = timer->data;
	uint64_t last = c->ready_seq;
	c->delivering = 1;
	while (!c->destroyed && c->ready.head != NULL && c->ready.head->seq <= last) {
		rspamd_check *chk = c->ready.head;
		rspamd__list_remove(&c->ready, chk);
		rspamd__deliver(chk);
		rspamd__check_free(chk);
	}
	c->delivering = 0;
	if (c->destroyed) {
		rspamd__teardown(c);
		return;
	}
	if (c->ready.head != NULL)
		rspamd__ready_start(c);
}

/* ---- rspamd_check_start ---- */

/* "Name: value" into *l: bytes below 0x20 and DEL become '?' (no CR or LF
 * can start another header), cut at RSPAMD_HEADER_VALUE_MAX. An empty
 * value is not sent (curl would read "Name:" as "remove Name"). */
static void rspamd__header(struct curl_slist **l, const char *name, const char *value)
{
	if (value == NULL || value[0] == '\0')
		return;
	size_t nlen = strlen(name), vlen = strnlen(value, RSPAMD_HEADER_VALUE_MAX);
	char *line = xmalloc(nlen + 2 + vlen + 1);
	memcpy(line, name, nlen);
	memcpy(line + nlen, ": ", 2);
	char *v = line + nlen + 2;
	for (size_t i = 0; i < vlen; i++) {
		unsigned char ch = (unsigned char)value[i];
		v[i] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
	}
	v[vlen] = '\0';
	struct curl_slist *n = curl_slist_append(*l, line);
	free(line);
	if (n == NULL)
		abort(); /* out of memory: as xmalloc */
	*l = n;
}

static struct curl_slist *rspamd__headers(const struct rspamd_request *req)
{
	struct curl_slist *l = NULL;
	/* the address only as a literal we parsed */
	unsigned char addr[sizeof(struct in6_addr)];
	if (req->client_ip != NULL && (inet_pton(AF_INET, req->client_ip, addr) == 1 ||
				       inet_pton(AF_INET6, req->client_ip, addr) == 1))
		rspamd__header(&l, "IP", req->client_ip);
	rspamd__header(&l, "Helo", req->helo);
	if (req->mail_from != NULL)
		rspamd__header(&l, "From", req->mail_from[0] != '\0' ? req->mail_from : "<>");
	for (size_t i = 0; i < req->n_rcpts && i < RSPAMD_RCPTS_MAX; i++)
		rspamd__header(&l, "Rcpt", req->rcpts[i]);
	rspamd__header(&l, "Queue-Id", req->queue_id);
	rspamd__header(&l, "Hostname", req->hostname);
	rspamd__header(&l, "User", req->user);
	/* what curl would add on its own: a form Content-Type (the body is
	 * a message), "Expect: 100-continue" for large bodies (a round trip
	 * rspamd does not need) */
	static const char *const removed[] = { "Content-Type:", "Expect:" };
	for (size_t i = 0; i < 2; i++) {
		struct curl_slist *n = curl_slist_append(l, removed[i]);
		if (n == NULL)
			abort(); /* out of memory: as xmalloc */
		l = n;
	}
	return l;
}

rspamd_check *rspamd_check_start(rspamd_client *c, const struct rspamd_request *req,
				 rspamd_cb *cb, void *arg)
{
	if (c->destroyed)
		abort(); /* after destroy: the caller's bug */
	if (req->msg == NULL && req->len > 0)
		abort(); /* the caller's bug: libcurl would read NULL */
	rspamd_check *chk = xcalloc(1, sizeof *chk);
	chk->c = c;
	chk->cb = cb;
	chk->arg = arg;
	chk->msg = req->msg;
	chk->len = req->len;
	chk->start_ms = util_now_mono_ms();
	chk->deadline_ms = chk->start_ms + c->timeout_ms;
	chk->queue_id = xstrdup(req->queue_id != NULL && req->queue_id[0] != '\0'
					? req->queue_id
					: "-");
	buf_init(&chk->resp);
	c->stats.checks++;
	/* joins queued first: every path below moves it from a list */
	chk->state = RSPAMD__QUEUED;
	rspamd__list_append(&c->queued, chk);

	if (req->len > c->max_message_bytes) {
		snprintf(chk->problem, sizeof chk->problem, "message of %zu bytes over %zu",
			 req->len, c->max_message_bytes);
		rspamd__make_ready(chk, RSPAMD_SKIPPED);
		return chk;
	}
	if (c->queued.count > c->queue_max) {
		snprintf(chk->problem, sizeof chk->problem, "busy: %u checks waiting",
			 c->queue_max);
		rspamd__make_ready(chk, RSPAMD_BUSY);
		return chk;
	}
	chk->headers = rspamd__headers(req);
	/* in order: it goes now only when nothing waits before it */
	if (c->queued.head == chk)
		rspamd__pump(c);
	return chk;
}

void rspamd_check_cancel(rspamd_check **chkp)
{
	rspamd_check *chk = *chkp;
	if (chk == NULL)
		return;
	*chkp = NULL;
	rspamd_client *c = chk->c;
	int was_inflight = chk->state == RSPAMD__INFLIGHT;
	rspamd__list_remove(rspamd__list_of(c, chk), chk);
	c->stats.cancelled++;
	rspamd__check_free(chk);
	if (was_inflight)
		rspamd__pump(c);
}

/* ---- the client ---- */

/* A numeric setting: 0 takes def, else it must lie in [min, max]. */
struct rspamd__row {
	size_t off, size;
	unsigned long long def, min, max;
	const char *error;
};

static const struct rspamd__row rspamd__rows[] = {
#define RSPAMD__ROW(field, NAME)                                                                 \
	{ offsetof(struct rspamd_settings, field), sizeof(((struct rspamd_settings *)0)->field), \
	  RSPAMD_##NAME##_DEFAULT, RSPAMD_##NAME##_MIN, RSPAMD_##NAME##_MAX,                     \
	  "rspamd " #field " out of range" }
	RSPAMD__ROW(timeout_ms, TIMEOUT_MS),
	RSPAMD__ROW(max_inflight, MAX_INFLIGHT),
	RSPAMD__ROW(queue_max, QUEUE_MAX),
	RSPAMD__ROW(max_message_bytes, MAX_MESSAGE_BYTES),
	RSPAMD__ROW(max_response_bytes, MAX_RESPONSE_BYTES),
#undef RSPAMD__ROW
};

static int rspamd__settings_check(struct rspamd_settings *s, const char **error_r)
{
	for (size_t i = 0; i < sizeof rspamd__rows / sizeof rspamd__rows[0]; i++) {
		const struct rspamd__row *row = &rspamd__rows[i];
		char *p = (char *)s + row->off;
		unsigned long long v;
		if (row->size == sizeof(unsigned)) {
			unsigned u;
			memcpy(&u, p, sizeof u);
			v = u;
		} else {
			size_t z;
			memcpy(&z, p, sizeof z);
			v = z;
		}
		if (v == 0)
			v = row->def;
		if (v < row->min || v > row->max) {
			*error_r = row->error;
			return -1;
		}
		if (row->size == sizeof(unsigned)) {
			unsigned u = (unsigned)v;
			memcpy(p, &u, sizeof u);
		} else {
			size_t z = (size_t)v;
			memcpy(p, &z, sizeof z);
		}
	}
	return 0;
}

struct rspamd_settings rspamd_settings_default(void)
{
	struct rspamd_settings s = {
		.url = RSPAMD_URL_DEFAULT,
		.timeout_ms = RSPAMD_TIMEOUT_MS_DEFAULT,
		.max_inflight = RSPAMD_MAX_INFLIGHT_DEFAULT,
		.queue_max = RSPAMD_QUEUE_MAX_DEFAULT,
		.max_message_bytes = RSPAMD_MAX_MESSAGE_BYTES_DEFAULT,
		.max_response_bytes = RSPAMD_MAX_RESPONSE_BYTES_DEFAULT,
	};
	return s;
}

/* base + "/checkv2", or NULL with *error_r. */
static char *rspamd__url(const char *base, const char **error_r)
{
	size_t len = strlen(base);
	if (strncmp(base, "http://", 7) != 0 && strncmp(base, "https://", 8) != 0) {
		*error_r = "rspamd url: not http:// or https://";
		return NULL;
	}
	if (len > RSPAMD_URL_LEN_MAX) {
		*error_r = "rspamd url: too long";
		return NULL;
	}
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)base[i] <= 0x20 || (unsigned char)base[i] >= 0x7f) {
			*error_r = "rspamd url: not printable ASCII";
			return NULL;
		}
	}
	while (len > 0 && base[len - 1] == '/')
		len--;
	size_t scheme = base[4] == 's' ? 8 : 7;
	if (len <= scheme) {
		*error_r = "rspamd url: no host";
		return NULL;
	}
	return xasprintf("%.*s/checkv2", (int)len, base);
}

int rspamd_client_create(uv_loop_t *loop, const struct rspamd_settings *settings,
			 rspamd_client **c_r, const char **error_r)
{
	*c_r = NULL;
	struct rspamd_settings s = settings != NULL ? *settings : rspamd_settings_default();
	if (rspamd__settings_check(&s, error_r) < 0)
		return -1;
	char *url = rspamd__url(s.url != NULL ? s.url : RSPAMD_URL_DEFAULT, error_r);
	if (url == NULL)
		return -1;
	/* reference-counted and thread-safe in libcurl >= 7.84 */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		free(url);
		*error_r = "rspamd: curl_global_init failed";
		return -1;
	}
	CURLM *multi = curl_multi_init();
	if (multi == NULL) {
		free(url);
		curl_global_cleanup();
		*error_r = "rspamd: curl_multi_init failed";
		return -1;
	}
	rspamd_client *c = xcalloc(1, sizeof *c);
	c->loop = loop;
	c->multi = multi;
	c->url = url;
	c->timeout_ms = s.timeout_ms;
	c->max_inflight = s.max_inflight;
	c->queue_max = s.queue_max;
	c->max_message_bytes = s.max_message_bytes;
	c->max_response_bytes = s.max_response_bytes;
	uv_timer_init(loop, &c->curl_timer);
	uv_timer_init(loop, &c->ready_timer);
	c->curl_timer.data = c;
	c->ready_timer.data = c;
	c->handles = 2;
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, rspamd__socket_cb);
	curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, rspamd__timer_fn);
	curl_multi_setopt(multi, CURLMOPT_TIMERDATA, c);
	/* rspamd closes every connection after its answer ("Connection:
	 * close"), so the cache would hold nothing; one per slot at most */
	curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)s.max_inflight);
	*c_r = c;
	return 0;
}

static void rspamd__timer_close_cb(uv_handle_t *handle)
{
	rspamd__handle_closed(handle->data);
}

/* Free every check, let libcurl go, close our handles. No callback runs
 * from here on; the client is freed by the last close callback. */
static void rspamd__teardown(rspamd_client *c)
{
	struct rspamd__list *lists[] = { &c->queued, &c->inflight, &c->ready };
	for (size_t i = 0; i < 3; i++) {
		while (lists[i]->head != NULL) {
			rspamd_check *chk = lists[i]->head;
			rspamd__list_remove(lists[i], chk);
			rspamd__check_free(chk);
		}
	}
	/* removing the handles above may have called rspamd__timer_fn:
	 * from here on it does nothing */
	c->torn_down = 1;
	/* closes the connections libcurl kept; their CURL_POLL_REMOVE
	 * closes our watchers */
	curl_multi_cleanup(c->multi);
	c->multi = NULL;
	/* anything libcurl did not say REMOVE for */
	while (c->socks != NULL)
		rspamd__sock_close(c, c->socks);
	uv_close((uv_handle_t *)&c->curl_timer, rspamd__timer_close_cb);
	uv_close((uv_handle_t *)&c->ready_timer, rspamd__timer_close_cb);
}

void rspamd_client_destroy(rspamd_client **cp)
{
	rspamd_client *c = *cp;
	if (c == NULL)
		return;
	*cp = NULL;
	if (c->destroyed)
		return;
	c->destroyed = 1;
	/* inside a callback: rspamd__ready_cb tears down when it returns */
	if (!c->delivering)
		rspamd__teardown(c);
}

void rspamd_client_stats(const rspamd_client *c, struct rspamd_stats *stats_r)
{
	*stats_r = c->stats;
	stats_r->inflight = c->inflight.count;
	stats_r->queued = c->queued.count;
}
