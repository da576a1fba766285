/* queue-client.c: queue_client_enqueue(), a typed wrapper over
 * routed-client.h (routing by queue id on the queue ring, retries, the
 * deadline). A retry carries the same queue id, so the queue stores the
 * message once. */
#include "queue-client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "log.h"
#include "mail-error.h"
#include "routed-client.h"
#include "util.h"
#include "xalloc.h"

struct queue_client {
	routed_client *rc;
};

/* One enqueue: the caller's callback and the id it reports. */
struct qc_op {
	queue_client_cb *cb;
	void *arg;
	char qid[QUEUE_ID_MAX + 1];
};

queue_client *queue_client_create(uv_loop_t *loop, router *router)
{
	queue_client *c = xcalloc(1, sizeof *c);
	c->rc = routed_client_create(loop, router, ROUTER_ROLE_QUEUE, "queue",
				     QUEUE_CLIENT_DEADLINE_MS);
	return c;
}

void queue_client_set_tls(queue_client *c, tls_client *tls)
{
	routed_client_set_tls(c->rc, tls);
}

void queue_client_new_id(char *out)
{
	util_random_hex(out, 12);
}

void queue_client_content_id(char *out, const char *mail_from, char *const *rcpts,
			     size_t n_rcpts, const uint8_t *body, size_t body_len,
			     int64_t now_ms)
{
	static const char hex[] = "0123456789abcdef";
	uint8_t window[8];
	uint64_t w = (uint64_t)(now_ms > 0 ? now_ms : 0) / QUEUE_CLIENT_RESEND_WINDOW_MS;
	for (int i = 0; i < 8; i++)
		window[i] = (uint8_t)(w >> (56 - 8 * i));
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (md == NULL)
		abort();
	/* fields separated by NUL, which no address contains */
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	EVP_DigestUpdate(md, "mail-qid-1", 11);
	EVP_DigestUpdate(md, window, sizeof window);
	EVP_DigestUpdate(md, mail_from, strlen(mail_from) + 1);
	for (size_t i = 0; i < n_rcpts; i++)
		EVP_DigestUpdate(md, rcpts[i], strlen(rcpts[i]) + 1);
	EVP_DigestUpdate(md, body, body_len);
	uint8_t digest[EVP_MAX_MD_SIZE];
	unsigned len = 0;
	EVP_DigestFinal_ex(md, digest, &len);
	EVP_MD_CTX_free(md);
	for (int i = 0; i < 12; i++) {
		out[2 * i] = hex[digest[i] >> 4];
		out[2 * i + 1] = hex[digest[i] & 15];
	}
	out[24] = '\0';
}

static void qc__done_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	(void)resp;
	struct qc_op *op = arg;
	if (status != MAIL_OK)
		log_event(LOG_WARN, "queue-client", "event=enqueue_failed qid=%s status=%s",
			  op->qid, mail_error_info(status)->name);
	op->cb(status, op->qid, op->arg);
	free(op);
}

void queue_client_enqueue(queue_client *c, const Queue__EnqueueRequest *req,
			  queue_client_cb *cb, void *arg)
{
	struct qc_op *op = xcalloc(1, sizeof *op);
	op->cb = cb;
	op->arg = arg;
	/* the service refuses an invalid id (PARAMS); the copy here is only
	 * for the callback */
	snprintf(op->qid, sizeof op->qid, "%s", req->queue_id);
	routed_client_call(c->rc, req->queue_id, QUEUE__METHOD__ENQUEUE, &req->base,
			   &queue__enqueue_response__descriptor, qc__done_cb, op);
}

size_t queue_client_pending(const queue_client *client)
{
	return routed_client_pending(client->rc);
}

void queue_client_destroy(queue_client **client)
{
	queue_client *c = *client;
	if (c == NULL)
		return;
	*client = NULL;
	/* pending calls come back UNAVAILABLE from inside this call */
	routed_client_destroy(&c->rc);
	free(c);
}
