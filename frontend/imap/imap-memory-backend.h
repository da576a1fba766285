/* imap-memory-backend.h: an in-memory struct imap_backend for tests and for
 * the imap-test-server tool (library `mailimaptest`, never linked into a
 * daemon).
 *
 * Users, mailboxes and messages live in process memory. Every call
 * completes from a uv timer on the given loop (after `delay_ms`, default 0)
 * so callbacks never run inside the call, like the real backend. Loop
 * thread only.
 */
#ifndef MAIL_IMAP_MEMORY_BACKEND_H
#define MAIL_IMAP_MEMORY_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "imap-backend.h"

typedef struct imap_memory_backend imap_memory_backend;

/* The function table to pass to imap_server_start() with the object. */
extern const struct imap_backend imap_memory_backend_vfuncs;

imap_memory_backend *imap_memory_backend_create(uv_loop_t *loop);
/* Frees everything. Call once no call is pending (after the loop ran out).
 * NULLs *mb. */
void imap_memory_backend_destroy(imap_memory_backend **mb);

/* Delay before each callback (tests of pending calls). */
void imap_memory_backend_set_delay(imap_memory_backend *mb, uint64_t delay_ms);
/* Make every call after this one fail with err (MAIL_OK to stop). */
void imap_memory_backend_set_failure(imap_memory_backend *mb, int err);
/* What quota() reports for every user (RFC 9208 tests): a copy of q,
 * NULL for none (the default: nothing limited). Usage is as given, not
 * computed from the messages. */
void imap_memory_backend_set_quota(imap_memory_backend *mb, const struct imap_quota *q);
/* APPEND of a message over max bytes fails with MAIL_ERR_TOO_BIG (and
 * nothing of that APPEND is stored); 0 (the default): no limit. */
void imap_memory_backend_set_max_message_size(imap_memory_backend *mb, size_t max);

void imap_memory_backend_add_user(imap_memory_backend *mb, const char *user,
				  const char *password);
/* Add a message (flags: space-separated, may be ""); creates the mailbox.
 * Returns its UID. */
uint32_t imap_memory_backend_add_message(imap_memory_backend *mb, const char *user,
					 const char *mailbox, const void *body, size_t len,
					 const char *flags, int64_t internal_date_ms);
/* Messages in a mailbox (-1 if none), and whether uid has flag (1/0/-1). */
int imap_memory_backend_count(imap_memory_backend *mb, const char *user, const char *mailbox);
int imap_memory_backend_has_flag(imap_memory_backend *mb, const char *user,
				 const char *mailbox, uint32_t uid, const char *flag);
/* A message's bytes and internal date (borrowed until the next change).
 * Returns 0, or -1 when there is no such message. */
int imap_memory_backend_message(imap_memory_backend *mb, const char *user, const char *mailbox,
				uint32_t uid, const void **data_r, size_t *len_r,
				int64_t *internal_date_ms_r);
/* A mailbox's UIDVALIDITY, 0 when it does not exist. */
uint32_t imap_memory_backend_uidvalidity(imap_memory_backend *mb, const char *user,
					 const char *mailbox);

/* Mailbox-level calls (create, delete_mailbox, rename, subscribe, status,
 * append) keep imap-backend.h's rules: CREATE makes missing parents,
 * DELETE refuses INBOX (PERM) and a mailbox with children (EXISTS),
 * RENAME moves children and subscriptions along (INBOX: its messages
 * only), each new mailbox gets a new UIDVALIDITY, list() reports every
 * field of imap_mailbox_info and the subscriptions to names that do not
 * exist, APPEND is all or nothing. */

/* The next calls of the engine's commands (issue 9). */
/* The last search program search/sort/thread received, as text: "(AND
 * (FLAG \\Seen) (UID 1:3) ...)" (tests of the SEARCH parser); NULL if none.
 * Valid until the next search. */
const char *imap_memory_backend_last_search(imap_memory_backend *mb);
/* Forget every expunge so far: changes() since an older modseq then says
 * expunged_exact = 0 (a resynchronisation). */
void imap_memory_backend_forget_expunges(imap_memory_backend *mb);
/* fetch_meta's page size (default 100). */
void imap_memory_backend_set_meta_page(imap_memory_backend *mb, size_t n);

#endif
