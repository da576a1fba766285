/* queue-client.h: how frontends hand mail to the queue tier (public contract).
 *
 * queue_client_enqueue() routes by the request's queue_id on the queue ring,
 * sends the message and calls back once: MAIL_OK only after the queue node
 * has written it durably (that callback is what lets SMTP answer 250).
 * Temporary failures are retried, after router_refresh(), until the deadline;
 * then the callback gets the last error (the SMTP side answers 451).
 * A retried enqueue carries the same queue id, so the queue stores it once.
 *
 * Loop thread only. The request is packed before the call returns; the
 * caller keeps ownership.
 */
#ifndef MAIL_QUEUE_CLIENT_H
#define MAIL_QUEUE_CLIENT_H

#include "queue-id.h"
#include "queue.pb-c.h"
#include "router.h"
#include "tls.h"

#include <stddef.h>

#include <uv.h>

#define QUEUE_CLIENT_DEADLINE_MS 15000u

typedef struct queue_client queue_client;

/* router is borrowed and must outlive the client. */
queue_client *queue_client_create(uv_loop_t *loop, router *router);
/* Mutual TLS to the queue nodes (this process presents its node certificate
 * and verifies theirs against the cluster CA: lib/daemon-tls.h). Call it
 * right after create, before the first call; tls is borrowed and must
 * outlive the client. Without it: plaintext (loopback development). */
void queue_client_set_tls(queue_client *client, tls_client *tls);
void queue_client_destroy(queue_client **client);
/* Enqueues whose callback has not run yet. */
size_t queue_client_pending(const queue_client *client);

typedef void queue_client_cb(int status, const char *queue_id, void *arg);

/* Generate a fresh queue id (24 hex chars) into out (>= 25 bytes). */
void queue_client_new_id(char *out);

/* How long a resent message counts as the same one (queue_client_content_id). */
#define QUEUE_CLIENT_RESEND_WINDOW_MS (10u * 60u * 1000u)

/* The queue id of a message, from its content (24 hex chars into out, >= 25
 * bytes): SHA-256 of the envelope (sender, recipients in order), the body
 * and the QUEUE_CLIENT_RESEND_WINDOW_MS window of now_ms. An SMTP client
 * that sends the same message again because it never saw our reply (the
 * connection died after DATA, or it got 451 while the write's outcome was
 * unknown: RFC 1047) gets the same queue id, which the queue stores once
 * and whose deliveries the store recognises: no second copy. The price:
 * byte-identical messages (same headers, Date and Message-ID included)
 * from one sender to the same recipients within one window are one
 * message. Pure. */
void queue_client_content_id(char *out, const char *mail_from, char *const *rcpts,
			     size_t n_rcpts, const uint8_t *body, size_t body_len,
			     int64_t now_ms);

void queue_client_enqueue(queue_client *c, const Queue__EnqueueRequest *req,
			  queue_client_cb *cb, void *arg);

#endif
