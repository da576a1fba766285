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

#include "search-key.h"

#include <stddef.h>
#include <stdint.h>

/* Mailbox attributes (imap_mailbox_info.attrs). */
#define IMAP_MBOX_SUBSCRIBED 0x0001u  /* on the user's subscription list */
#define IMAP_MBOX_NONEXISTENT 0x0002u /* subscribed, but no such mailbox
				       * (only list() reports these; every
				       * count is 0) */
/* SPECIAL-USE (RFC 6154): at most one per mailbox. */
#define IMAP_MBOX_SENT 0x0100u
#define IMAP_MBOX_DRAFTS 0x0200u
#define IMAP_MBOX_TRASH 0x0400u
#define IMAP_MBOX_JUNK 0x0800u
#define IMAP_MBOX_ARCHIVE 0x1000u
#define IMAP_MBOX_SPECIAL_MASK 0x1f00u

struct imap_mailbox_info {
	const char *name; /* "INBOX", "Archive/2026", ... ('/' separates levels;
			   * UTF-8: the engine converts to and from modified
			   * UTF-7 unless the client ENABLEd UTF8=ACCEPT) */
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint32_t exists;
	uint64_t highest_modseq;
	uint32_t unseen;   /* messages without \Seen */
	uint32_t deleted;  /* messages with \Deleted (STATUS DELETED) */
	uint64_t size;     /* sum of the messages' sizes (STATUS SIZE) */
	unsigned attrs;    /* IMAP_MBOX_* */
};

/* A message's metadata as fetch_meta gives it. The strings are computed
 * once on the store, at delivery or APPEND (lib/mime): FETCH never parses
 * a message on the frontend. */
struct imap_msg_meta {
	uint32_t uid;
	uint64_t size;
	int64_t internal_date_ms;
	uint64_t modseq;
	const char *const *flags;
	size_t n_flags;
	/* only when asked for (IMAP_META_STRUCTURE), else NULL/0: */
	const char *envelope;      /* "(date subject from ...)" as FETCH ENVELOPE */
	const char *bodystructure; /* as FETCH BODYSTRUCTURE (extensible) */
	const char *body;          /* as FETCH BODY (non-extensible) */
	const uint8_t *parts;      /* the part table (lib/mime/mime.h
				    * mime_parts_decode) for sections */
	size_t parts_len;
	/* when asked for (IMAP_META_CONTENT) and small enough: the whole
	 * message (content_len == size), else NULL */
	const uint8_t *content;
	size_t content_len;
};
#define IMAP_META_FLAGS 0x01u     /* uid, size, date, modseq, flags (always) */
#define IMAP_META_STRUCTURE 0x02u /* envelope, bodystructure, body, parts */
/* the messages' bytes as well, while they come to at most
 * IMAP_META_CONTENT_MAX per call (the others: fetch_range) */
#define IMAP_META_CONTENT 0x04u
#define IMAP_META_CONTENT_MAX (64u * 1024u)

/* One message of an APPEND (MULTIAPPEND gives several). */
struct imap_append_msg {
	const uint8_t *data;
	size_t len;
	const char *const *flags;
	size_t n_flags;
	int64_t internal_date_ms; /* 0: now */
};

/* What changed in a mailbox since a MODSEQ (RFC 7162), for NOOP, IDLE,
 * the end of other commands, and SELECT (QRESYNC). */
struct imap_changes {
	uint64_t highest_modseq;   /* of the mailbox now */
	uint32_t uidnext;
	uint32_t exists;
	/* uids >= known_uidnext now present (new messages), ascending */
	const struct search_uid_range *added;
	size_t n_added;
	/* uids below known_uidnext expunged after since_modseq, ascending */
	const struct search_uid_range *expunged;
	size_t n_expunged;
	/* 0: the store no longer knows every expunge that old (its record
	 * of expunges starts later): expunged lists every uid below
	 * known_uidnext that is absent now, which may include uids the
	 * caller never had (it must ignore those). */
	int expunged_exact;
	/* messages below known_uidnext whose modseq > since_modseq, with
	 * their flags now, ascending uid */
	const struct imap_msg_meta *changed;
	size_t n_changed;
};

struct imap_msg_info {
	uint32_t uid;
	uint64_t size;            /* bytes of the message (RFC822.SIZE) */
	int64_t internal_date_ms; /* ms since the epoch */
	const char *const *flags; /* "\\Seen", "$Label1", ... */
	size_t n_flags;
	uint64_t modseq;          /* its MODSEQ when the backend tells it, else 0 */
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
/* uids: expunged, ascending. highest_modseq: the mailbox's right after
 * this expunge (0: not known, or nothing expunged). */
typedef void imap_backend_expunge_cb(int status, const uint32_t *uids, size_t n_uids,
				     uint64_t highest_modseq, void *arg);
/* For calls that only succeed or fail (CREATE, DELETE, RENAME, SUBSCRIBE). */
typedef void imap_backend_status_cb(int status, void *arg);
/* STATUS of one mailbox. */
typedef void imap_backend_mailbox_cb(int status, const struct imap_mailbox_info *box,
				     void *arg);
/* SELECT without the whole index: the uids as ascending disjoint ranges,
 * the keywords used in the mailbox, the uid of the first message without
 * \Seen (0: none). The backend gathers every page of a large mailbox
 * before it calls back (never one RPC answer over the frame limit). */
typedef void imap_backend_open_cb(int status, const struct imap_mailbox_info *box,
				  const struct search_uid_range *uids, size_t n_ranges,
				  const char *const *keywords, size_t n_keywords,
				  uint32_t first_unseen_uid, void *arg);
/* APPEND: uids[i] is the uid of message i, all in uidvalidity;
 * highest_modseq: the mailbox's right after this append (0: not known). */
typedef void imap_backend_append_cb(int status, uint32_t uidvalidity, const uint32_t *uids,
				    size_t n_uids, uint64_t highest_modseq, void *arg);
/* COPY and MOVE: src_uids[i] became dst_uids[i] (ascending src order) in a
 * mailbox of dst_uidvalidity; uids that did not exist are left out. */
typedef void imap_backend_copy_cb(int status, uint32_t dst_uidvalidity,
				  const uint32_t *src_uids, const uint32_t *dst_uids,
				  size_t n, void *arg);
/* fetch_meta: called once per page, in ascending uid order, with more = 1
 * on every page but the last; after a page with status != MAIL_OK
 * nothing more comes. Uids that do not exist are left out. */
typedef void imap_backend_meta_cb(int status, const struct imap_msg_meta *msgs, size_t n,
				  int more, void *arg);
/* SEARCH: matching uids ascending; highest_modseq: the highest modseq
 * among them (for RFC 7162's "(MODSEQ n)"), 0 when none. */
typedef void imap_backend_search_cb(int status, const uint32_t *uids, size_t n,
				    uint64_t highest_modseq, void *arg);
/* SORT: uids in sort order. */
typedef void imap_backend_sort_cb(int status, const uint32_t *uids, size_t n, void *arg);
/* THREAD: the thread list in RFC 5256's syntax with uids, e.g.
 * "(1 2)(3 (4)(5))"; "" when nothing matches. */
typedef void imap_backend_thread_cb(int status, const char *threads, void *arg);
typedef void imap_backend_changes_cb(int status, const struct imap_changes *changes,
				     void *arg);
/* A watched mailbox changed: its highest modseq is now at least
 * highest_modseq (call changes() for what). May be called any number of
 * times until unwatch(); never from inside watch() or unwatch(). */
typedef void imap_backend_watch_cb(uint64_t highest_modseq, void *arg);
typedef struct imap_backend_watch imap_backend_watch;
/* QUOTA (RFC 9208; issue 12): the user's one quota root "". has_*: a
 * limit of that resource applies (else the field is not reported);
 * *_limit is the limit that applies to this user (its own, tightened by
 * what its tenant has left), *_used its usage in octets and messages. */
struct imap_quota {
	int has_storage, has_messages;
	uint64_t storage_used, storage_limit;    /* octets */
	uint64_t messages_used, messages_limit;
};
typedef void imap_backend_quota_cb(int status, const struct imap_quota *quota, void *arg);

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

	/* ---- the rest of RFC 3501/9051 and its extensions (issue 9) ----
	 * Every call below is required of a backend the IMAP engine serves.
	 * Mailbox names are UTF-8, '/' separated; "INBOX" in any case is
	 * INBOX. */

	/* CREATE. special_use: one IMAP_MBOX_* special-use bit or 0 (RFC
	 * 6154 CREATE-SPECIAL-USE). EXISTS when it exists. Missing parents
	 * are created too, as RFC 3501 6.3.3 says a server SHOULD. */
	void (*create)(void *ctx, const char *user, const char *mailbox, unsigned special_use,
		       imap_backend_status_cb *cb, void *arg);
	/* DELETE: NOT_FOUND when absent; PERM for INBOX; EXISTS when it has
	 * children (the engine answers NO [HASCHILDREN], RFC 9051 7.1: the
	 * children must go first, as Dovecot does). */
	void (*delete_mailbox)(void *ctx, const char *user, const char *mailbox,
			       imap_backend_status_cb *cb, void *arg);
	/* RENAME, children included. Renaming INBOX moves its messages to
	 * a new mailbox `to` and leaves INBOX empty (RFC 3501 6.3.5). */
	void (*rename)(void *ctx, const char *user, const char *from, const char *to,
		       imap_backend_status_cb *cb, void *arg);
	/* SUBSCRIBE (on = 1) / UNSUBSCRIBE (on = 0). Subscribing to a name
	 * that does not exist is allowed (RFC 3501 6.3.6). */
	void (*subscribe)(void *ctx, const char *user, const char *mailbox, int on,
			  imap_backend_status_cb *cb, void *arg);
	/* STATUS of one mailbox (every field of imap_mailbox_info). */
	void (*status)(void *ctx, const char *user, const char *mailbox,
		       imap_backend_mailbox_cb *cb, void *arg);
	/* SELECT/EXAMINE, compactly (see imap_backend_open_cb). */
	void (*open)(void *ctx, const char *user, const char *mailbox, imap_backend_open_cb *cb,
		     void *arg);
	/* APPEND (MULTIAPPEND: n > 1, all or nothing). TOO_BIG over the
	 * APPENDLIMIT, NOT_FOUND (the engine says [TRYCREATE]) when the
	 * mailbox does not exist. */
	void (*append)(void *ctx, const char *user, const char *mailbox,
		       const struct imap_append_msg *msgs, size_t n, imap_backend_append_cb *cb,
		       void *arg);
	/* COPY (move = 0) or MOVE (move = 1: copied and expunged from
	 * `from` in one atomic step) of the uids (ascending ranges). */
	void (*copy)(void *ctx, const char *user, const char *from,
		     const struct search_uid_range *uids, size_t n_ranges, const char *to, int move,
		     imap_backend_copy_cb *cb, void *arg);
	/* Metadata of the uids in ranges (what = IMAP_META_*); only those
	 * with modseq > changed_since (0: all; CHANGEDSINCE, RFC 7162). */
	void (*fetch_meta)(void *ctx, const char *user, const char *mailbox,
			   const struct search_uid_range *uids, size_t n_ranges, unsigned what,
			   uint64_t changed_since, imap_backend_meta_cb *cb, void *arg);
	/* Bytes [offset, offset + length) of a message's body (length 0: to
	 * the end); info as fetch gives it. For sections and partials
	 * without pulling the whole message. */
	void (*fetch_range)(void *ctx, const char *user, const char *mailbox, uint32_t uid,
			    uint64_t offset, uint64_t length, imap_backend_fetch_cb *cb,
			    void *arg);
	/* SEARCH, SORT, THREAD: evaluated where the messages are (the store
	 * node), never by pulling bodies to the frontend. */
	void (*search)(void *ctx, const char *user, const char *mailbox,
		       const struct search_key *key, imap_backend_search_cb *cb, void *arg);
	void (*sort)(void *ctx, const char *user, const char *mailbox,
		     const struct search_sort *crit, size_t n_crit, const struct search_key *key,
		     imap_backend_sort_cb *cb, void *arg);
	void (*thread)(void *ctx, const char *user, const char *mailbox,
		       enum search_thread_alg alg, const struct search_key *key,
		       imap_backend_thread_cb *cb, void *arg);
	/* What changed since since_modseq (see struct imap_changes). */
	void (*changes)(void *ctx, const char *user, const char *mailbox, uint64_t since_modseq,
			uint32_t known_uidnext, imap_backend_changes_cb *cb, void *arg);
	/* Be told when the mailbox's highest modseq passes modseq, from any
	 * frontend or the queue (a delivery, flags, expunge, append...),
	 * within a second. Sessions of one frontend watching the same
	 * mailbox share one subscription to the store. The handle is valid
	 * until unwatch(). */
	imap_backend_watch *(*watch)(void *ctx, const char *user, const char *mailbox,
				     uint64_t modseq, imap_backend_watch_cb *cb, void *arg);
	void (*unwatch)(void *ctx, imap_backend_watch *w);
	/* Optional (NULL: no quota, GETQUOTAROOT names no root): the user's
	 * quota and usage (RFC 9208). APPEND and COPY of a backend with
	 * quotas fail MAIL_ERR_QUOTA (NO [OVERQUOTA]) past it; deleting never
	 * does. */
	void (*quota)(void *ctx, const char *user, imap_backend_quota_cb *cb, void *arg);
};

#endif
