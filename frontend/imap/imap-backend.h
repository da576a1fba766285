/* imap-backend.h: what the IMAP engine needs from the rest of the platform.
 *
 * The engine (imap-server.h) never talks to the directory or to store nodes
 * itself: it calls these functions, each of which completes once through
 * its callback. Two implementations exist: imap-backend-store.c (the
 * directory and store_client, used by the daemon) and the in-memory backend
 * of the tests (imap-memory-backend.h).
 *
 * Rules every implementation keeps:
 *   - Called on the loop thread only; the callback runs on the loop thread,
 *     exactly once, and never before the call has returned (the engine is
 *     not re-entered from inside a call).
 *   - Arguments are borrowed for the duration of the call only (copy what
 *     must outlive it). Data given to a callback is valid during the
 *     callback only.
 *   - status is an enum mail_error (lib/mail-error.h); results are
 *     meaningful only when status == MAIL_OK.
 *   - user is the normalised address returned by authenticate; each call
 *     acts on that user's data alone (tenant isolation is the backend's
 *     promise, the engine only ever passes the authenticated user).
 */
#ifndef MAIL_IMAP_BACKEND_H
#define MAIL_IMAP_BACKEND_H

#include <stddef.h>
#include <stdint.h>

struct imap_mailbox_info {
	const char *name; /* "INBOX", "Archive/2026", ... ('/' separates levels) */
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint32_t exists;
};

struct imap_msg_info {
	uint32_t uid;
	uint64_t size;            /* bytes of the message (RFC822.SIZE) */
	int64_t internal_date_ms; /* ms since the epoch */
	const char *const *flags; /* "\\Seen", "$Label1", ... */
	size_t n_flags;
};

enum imap_flag_mode {
	IMAP_FLAGS_SET = 0,
	IMAP_FLAGS_ADD = 1,
	IMAP_FLAGS_REMOVE = 2,
};

/* user: the canonical (normalised) user name on MAIL_OK. MAIL_ERR_PERM means
 * wrong user or password (indistinguishable). */
typedef void imap_backend_auth_cb(int status, const char *user, void *arg);
struct sasl_scram_keys;
/* user: canonical, keys: the stored SCRAM-SHA-256 keys, on MAIL_OK.
 * MAIL_ERR_PERM: no such user (or no keys). */
typedef void imap_backend_scram_cb(int status, const char *user,
				   const struct sasl_scram_keys *keys, void *arg);
typedef void imap_backend_list_cb(int status, const struct imap_mailbox_info *boxes,
				  size_t n_boxes, void *arg);
/* msgs in ascending UID order. */
typedef void imap_backend_select_cb(int status, const struct imap_mailbox_info *box,
				    const struct imap_msg_info *msgs, size_t n_msgs, void *arg);
typedef void imap_backend_fetch_cb(int status, const struct imap_msg_info *info,
				   const uint8_t *body, size_t body_len, void *arg);
/* msgs: the messages changed, with their flags after the change. */
typedef void imap_backend_flags_cb(int status, const struct imap_msg_info *msgs,
				   size_t n_msgs, void *arg);
/* uids: expunged, ascending. */
typedef void imap_backend_expunge_cb(int status, const uint32_t *uids, size_t n_uids,
				     void *arg);

struct imap_backend {
	/* Check a login. password is wiped by the engine after the call
	 * returns: copy it if needed later (and wipe the copy). */
	void (*authenticate)(void *ctx, const char *user, const char *password,
			     imap_backend_auth_cb *cb, void *arg);
	/* Optional (NULL: SCRAM-SHA-256 is not offered): a user's SCRAM keys. */
	void (*scram_keys)(void *ctx, const char *user, imap_backend_scram_cb *cb, void *arg);
	void (*list)(void *ctx, const char *user, imap_backend_list_cb *cb, void *arg);
	void (*select)(void *ctx, const char *user, const char *mailbox,
		       imap_backend_select_cb *cb, void *arg);
	void (*fetch)(void *ctx, const char *user, const char *mailbox, uint32_t uid,
		      imap_backend_fetch_cb *cb, void *arg);
	void (*store_flags)(void *ctx, const char *user, const char *mailbox,
			    const uint32_t *uids, size_t n_uids, enum imap_flag_mode mode,
			    const char *const *flags, size_t n_flags, imap_backend_flags_cb *cb,
			    void *arg);
	/* Remove the \Deleted messages of the mailbox: all of them when
	 * n_uids is 0, else only those among uids (UID EXPUNGE, RFC 4315;
	 * POP3's UPDATE, which leaves other sessions' \Deleted alone). */
	void (*expunge)(void *ctx, const char *user, const char *mailbox, const uint32_t *uids,
			size_t n_uids, imap_backend_expunge_cb *cb, void *arg);
};

#endif
