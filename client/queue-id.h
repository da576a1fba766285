/* queue-id.h: the queue id, as the queue service's contract defines it
 * (public). A queue id is 1..QUEUE_ID_MAX characters of [0-9a-zA-Z]: the
 * client makes them (queue_client_new_id, queue_client_content_id: 24 hex
 * characters), the queue service refuses any other, and the queue store
 * keys its records by them. Constants only: the queue node's storage code
 * includes it without the client library.
 */
#ifndef MAIL_QUEUE_ID_H
#define MAIL_QUEUE_ID_H

#define QUEUE_ID_MAX 64

#endif
