/* mailstore.h: mailboxes with IMAP semantics on one LevelDB directory.
 *
 * A mailstore owns one LevelDB database. Users own mailboxes; mailboxes hold
 * messages addressed by UID. The promises kept here:
 *   - UIDs of a mailbox strictly increase and are never reused, also after an
 *     expunge and across close/reopen (uidnext is persisted with every write);
 *   - UIDVALIDITY is fixed when the mailbox is created and never changes; it is
 *     derived from the wall clock (seconds) and forced above every value this
 *     store handed out before, so a re-created mailbox never repeats one;
 *   - MODSEQ (RFC 7162) of a mailbox only grows: every command that changes
 *     something takes highest_modseq + 1 for everything it changes;
 *   - every write is ONE LevelDB WriteBatch written with sync=true, so a crash
 *     leaves all of an operation or none of it, and a return of MAIL_OK means
 *     the change is on disk; a body is appended to a segment file and
 *     fdatasync'd before the batch that points at it (a crash in between
 *     leaves unreferenced bytes only);
 *   - the user is part of every key: no call made for user A can read,
 *     write or learn of user B's data (B's mailboxes are simply NOT_FOUND).
 *
 * Key schema (all keys start with the schema version byte 0x01; integers are
 * big-endian so that LevelDB's bytewise order is numeric order; <user> and
 * <name> never contain NUL, so the NUL after them ends them unambiguously):
 *
 *   01 'C'                                 -> counters
 *        value: 01 | next_mailbox_id u64 | last_uidvalidity u32
 *   01 'M' <user> 00 <mailbox name>        -> mailbox record
 *        value: 01 | mailbox_id u64 | uidvalidity u32 | uidnext u32
 *                  | highest_modseq u64 | exists u32
 *                  | unseen u32 | deleted u32 | size u64 | attrs u32
 *                  | expunge_floor u64 | n_tombstones u32
 *                  | n_keywords u16 | n_keywords x (len u16 | bytes)
 *        The counters (messages without \Seen, with \Deleted, the sum of
 *        sizes), the special use (attrs: MAILSTORE_MBOX_SENT...), the
 *        keywords ever set in the mailbox (sorted, at most
 *        limits.max_mailbox_keywords: its FLAGS), and the tombstone
 *        bookkeeping are kept by every batch that changes a message. A
 *        value of the first 29 bytes only is the record of the versions
 *        before (read with its counters recounted from its messages,
 *        rewritten whole by the next write; its expunge floor is its
 *        highest_modseq).
 *   01 'I' <user> 00 <mailbox_id u64> <uid u32>   -> message meta
 *        value: 01 | size u64 | internal_date i64 (ms) | modseq u64
 *                  | n_flags u16 | n_flags x (len u16 | bytes)
 *   01 'P' <user> 00 <mailbox_id u64> <uid u32>   -> where the message's
 *        body is: value 01 | segment u32 | offset u64 | length u64
 *                  | crc32 u32
 *        or, for a body of at most limits.body_inline_max bytes, the
 *        body itself: value 02 | crc32 u32 | the bytes (no segment record)
 *        The body is the record at offset of <dir>/bodies/<segment as 8
 *        hex>.seg: magic "MBD1" | length u64 | crc32 u32 | the bytes
 *        (store-node/bodystore.h). A fetch checks magic, length and CRC: a
 *        mismatch is MAIL_ERR_INTERNAL (logged event=body_corrupt), never
 *        wrong bytes. Written in the batch of the delivery, deleted with
 *        the message. Node-local: exported as a 'B' pair (below).
 *   01 'B' <user> 00 <mailbox_id u64> <uid u32>   -> message body (raw
 *        bytes, no version byte): what versions before the segment files
 *        wrote, and the form bodies take in snapshot chunks. Still read
 *        (fetch falls back to it when there is no 'P') and deleted by
 *        EXPUNGE; never written by this version (no migration: old bodies
 *        stay in LevelDB until expunged; a snapshot install puts them into
 *        segments, so replicas rebuilt from a snapshot hold none).
 *   01 'D' <user> 00 <delivery_id>         -> delivery record (idempotency)
 *        value: 01 | mailbox_id u64 | uid u32 | uidvalidity u32
 *   01 'X' <user> 00 <time_ms u64> <delivery_id>  -> age of a delivery
 *        record (written in its batch; time: the write's "now"), value: 01
 *   01 'Z' <user> 00 <mailbox_id u64> <uid u32>   -> the message is flagged
 *        \Deleted (written in the batch that sets or clears the flag,
 *        deleted with the message), value: 01. EXPUNGE reads these, never
 *        the whole mailbox. Derived from 'I': never exported.
 *   01 'N' <user> 00 <mailbox_id u64> <modseq u64> <uid u32> -> 01: the
 *        modseq index (RFC 7162): every message under its modseq, moved
 *        in the batch that changes it, so "changed since M" reads what
 *        changed only. Derived from 'I': never exported.
 *   01 'W' <user> 00 <mailbox_id u64> <uid u32>   -> 01: the message has
 *        no \Seen (the first unseen uid is one seek). Derived from 'I':
 *        never exported.
 *   01 'T' <user> 00 <mailbox_id u64> <modseq u64> <uid u32> -> 01: an
 *        expunge tombstone (written by the batch that expunges or MOVEs
 *        the message). At most limits.max_tombstones per mailbox: the
 *        oldest go first and raise the mailbox's expunge_floor to their
 *        modseq (an expunge of more messages than the bound at once keeps
 *        none of its own and raises the floor to its modseq).
 *        mailstore_changes() is exact for a MODSEQ >= the floor, and for
 *        an older one lists every absent uid instead (expunged_exact = 0).
 *        Exported.
 *   01 'E' <user> 00 <mailbox_id u64> <uid u32>   -> the message's
 *        structure record (store-structure.h: ENVELOPE, BODYSTRUCTURE,
 *        BODY, the part table), written in the batch of the delivery,
 *        APPEND or COPY, deleted with the message. Exported.
 *   01 'U' <user> 00 <mailbox name>        -> 01: a subscription (RFC 3501
 *        6.3.6; the name need not exist). Exported.
 *   01 'G' <user> 00 <mailbox_id u64>      -> 01: a deleted mailbox whose
 *        keys ('I','P','B','Z','W','N','T','E' of that id) wait for their
 *        purge (bounded steps: mailstore_maintain, each delete). Node-
 *        local, never exported; the export skips the keys of such ids.
 *   01 'V'                                 -> data level of this store, per
 *        node, never exported: value 01 | level u8 (1: every 'D' has its
 *        'X'; 2: every message flagged \Deleted has its 'Z'; 3: every
 *        message has its 'N' and 'W' records, every mailbox record its
 *        counters)
 *   01 'A' <partition u32>                 -> applied index of a replicated
 *        partition (mailstore_apply_begin) value: 01 | index u64
 *   01 'R' <segment u32> <offset u64>      -> reverse index of the body
 *        record at that place: value 01 | its 'P' key. Written and deleted
 *        with the pointer, so collecting a segment reads that segment's
 *        records only, never all messages.
 *   01 'S' <segment u32>                   -> live bytes of a segment: value
 *        01 | bytes u64 | records u64 (what 'P' pointers reference, record
 *        headers included), updated in every batch that puts or deletes a
 *        pointer into it; absent = nothing live.
 *        'R' and 'S' are per node, derived, never exported (like 'Z').
 *
 * Body segments: appended to, never overwritten (the current one is
 * preallocated with zeros, which appends overwrite); a new one when the
 * current would pass limits.body_segment_size. A sealed segment whose live bytes
 * fall under limits.body_collect_live_pct % of its size is collected in
 * steps of at most limits.body_collect_step bytes, run after deliveries and
 * expunges (and by mailstore_maintain): its live bodies are appended to the
 * current segment, their pointers rewritten (one sync batch per step), and
 * the file deleted once no reverse record of it is left; a segment with
 * nothing live is deleted at once. No file is deleted while a snapshot
 * export is open (its view may point into it). On open, sealed files that
 * nothing references (a crash) are deleted and appending resumes at the
 * real end of the highest segment: bytes a crash left behind the last
 * durable record are never served (no pointer) and never overwritten.
 * Compatibility: snapshot chunks keep their format, so replicas of the
 * previous version install from this one and the other way round; but a
 * binary of the previous version opening this store cannot read the bodies
 * delivered by this one (no 'B' key: fetch fails INTERNAL), so a downgrade
 * needs the partitions re-installed from a snapshot.
 *
 * The first byte of every value is the value's own format version (01).
 * Mailbox ids come from the counter and are never reused. Delivery records
 * outlive an expunge on purpose: a late retry of an expunged delivery is
 * still a duplicate and must not bring the message back. They do not
 * outlive limits.delivery_keep_ms: each delivery of a user drops at most
 * 4 of that user's records older than that (oldest first, found through
 * the 'X' records by one seek, never by a scan), in its own batch, so the
 * records a store holds are those of one keep period, not of every
 * delivery ever made. A store opened by this version for the first time
 * dates its existing delivery records "now", indexes its messages
 * flagged \Deleted, writes every message's 'N' and 'W' records and every
 * mailbox record's counters (one pass at open each, logged
 * event=schema_upgrade; the expunges before it are unknown: the expunge
 * floor is the mailbox's highest modseq then);
 * records a previous version writes after that (a downgrade) are kept
 * forever, as that version did, and flags it sets are not indexed (run
 * the upgrade again by deleting the 'V' key).
 *
 * Mailbox names: "" and any case of "INBOX" mean "INBOX", and any case of
 * an "INBOX/" prefix is stored "INBOX/". Other names are
 * 1..max_mailbox_name bytes of printable ASCII or UTF-8 (no control bytes,
 * no '*' or '%', no leading/trailing '/', no "//"); '/' separates levels.
 * INBOX is created implicitly on a user's first call that names a mailbox
 * (deliver, list, select, status, append...), with Sent, Drafts, Trash,
 * Junk and Archive (their special use) and their subscriptions, in one
 * batch; other mailboxes are made with mailstore_mailbox_create().
 *
 * Flags: system flags (\Seen \Answered \Flagged \Deleted \Draft) are matched
 * case-insensitively and stored in that spelling; \Recent is session state
 * and silently dropped; any other backslash flag is MAIL_ERR_PARAMS. Keywords
 * are atoms (printable ASCII, none of ( ) { % * " \ ] or space), compared
 * case-sensitively. Stored flags are sorted (strcmp) and deduplicated.
 *
 * Threading: every call is synchronous and blocks on disk (a sync write is
 * ~0.25 ms on the development machines; a delivery makes two: its body's
 * segment, then the batch; deliver and expunge may add a collection step
 * of at most limits.body_collect_step bytes). A mailstore is thread-safe: one
 * internal mutex serialises operations (reads included, so a select sees a
 * consistent mailbox).
 *
 * Returns: enum mail_error (lib/mail-error.h); MAIL_OK = 0.
 */
#ifndef MAIL_MAILSTORE_H
#define MAIL_MAILSTORE_H

#include "buf.h"
#include "search-key.h"

#include <stddef.h>
#include <stdint.h>

#define MAILSTORE_KEY_VERSION 0x01
#define MAILSTORE_INBOX "INBOX"

/* Every limit of the store; mailstore_limits_default() fills the defaults. */
struct mailstore_limits {
	/* Largest body accepted by deliver (TOO_BIG above). Default 64 MiB,
	 * min 1, keep below RPC_FRAME_MAX. */
	uint64_t max_message_size;
	/* Most flags one message may carry (LIMIT above). Default 64. */
	unsigned max_flags;
	/* Longest flag in bytes (LIMIT above). Default 128, max 65535. */
	unsigned max_flag_len;
	/* Longest mailbox name in bytes (PARAMS above). Default 255. */
	unsigned max_mailbox_name;
	/* Longest user name in bytes (PARAMS above). Default 254 (RFC 5321). */
	unsigned max_user_len;
	/* Longest delivery id in bytes (PARAMS above). Default 255. */
	unsigned max_delivery_id;
	/* How long a delivery record (the idempotency of a delivery id) is
	 * kept, in ms of the writes' clock (the entry's when replicated). A
	 * retry of the same delivery id within it is a duplicate; after it the
	 * id may be delivered again. It must cover the longest a queue may
	 * hold a recipient that reached the store before it retries it, and
	 * the frontend's resend window (queue_client_content_id, 10 min).
	 * Must be the same on every store node (replicas drop records at the
	 * same entry). 0 = keep forever. Default 7 days, longer than the
	 * 4-5 days after which RFC 5321 4.5.4.1 lets a sender give up. */
	uint64_t delivery_keep_ms;
	/* Bodies live in segment files (<dir>/bodies, see the key schema);
	 * a new segment starts when the current one would pass this many
	 * bytes (a bigger body gets one of its own). Default 64 MiB, min 4096,
	 * max 1 TiB. Per node: replicas need not agree. */
	uint64_t body_segment_size;
	/* A sealed segment whose live bytes (what pointers still reference)
	 * fall under this percentage of its size is collected: its live
	 * bodies are copied to the current segment, then it is deleted. A
	 * segment with nothing live is deleted at once, whatever this says.
	 * Default 50, min 0 (collect nothing but empty segments), max 90. */
	unsigned body_collect_live_pct;
	/* Most body bytes one collection step copies (one fdatasync and one
	 * sync batch per step; a body bigger than this moves alone). A step
	 * runs after each deliver or expunge while a segment is to be
	 * collected, and in mailstore_maintain(). Default 1 MiB, min 1. */
	uint64_t body_collect_step;
	/* Segment files kept open for reads (least recently used closed
	 * first; the one being appended to has its own descriptor). Default
	 * 64, min 1. */
	unsigned body_open_segments;
	/* A body of at most this many bytes is kept in its LevelDB record
	 * instead of a segment file: written (and made durable) with the
	 * delivery's batch, so a small delivery or APPEND costs no segment
	 * fdatasync of its own, at the price of LevelDB compaction copying it
	 * a few times. Default 16 KiB (most mail without attachments), 0 =
	 * every body in segments, max 1 MiB. Per node: replicas need not
	 * agree. */
	size_t body_inline_max;

	/* ---- issue 9: mailbox operations, sync, append, copy ---- */
	/* Mailboxes one user may have (LIMIT above; INBOX and its
	 * special-use mailboxes are created whatever this says). Default
	 * 1000. */
	unsigned max_mailboxes;
	/* Names one user may be subscribed to (LIMIT above). Default 1000. */
	unsigned max_subscriptions;
	/* Distinct keywords one mailbox may hold (its FLAGS and
	 * PERMANENTFLAGS): a STORE, APPEND or COPY that would add one more is
	 * LIMIT; a delivery drops the keywords that do not fit instead.
	 * Default 128, max 1024. */
	unsigned max_mailbox_keywords;
	/* Expunge tombstones ('T') kept per mailbox, for "what was expunged
	 * since MODSEQ" (mailstore_changes). Past it the oldest go and the
	 * mailbox's expunge floor rises: an older MODSEQ then gets the
	 * inexact answer (expunged_exact = 0). Default 65536 (about 2.5 MiB a
	 * mailbox at most), min 0 (keep none). */
	uint32_t max_tombstones;
	/* Messages one APPEND may carry (LIMIT above). Default 1000. */
	unsigned max_append_messages;
	/* Bytes one APPEND may carry in all (LIMIT above; each message is
	 * also held to max_message_size, TOO_BIG). Default 64 MiB: a request
	 * must fit an RPC frame. */
	uint64_t max_append_bytes;
	/* Messages one COPY or MOVE may take (LIMIT above: it is one atomic
	 * batch). Default 10000. */
	unsigned max_copy_messages;
	/* Body bytes one COPY or MOVE may copy (LIMIT above). Default 256 MiB. */
	uint64_t max_copy_bytes;
	/* Keys one page of mailstore_uids / mailstore_changes /
	 * mailstore_fetch_meta may visit: the bound of the work one call does
	 * under the store lock. Default 20000 (a few ms). */
	unsigned page_scan_keys;
	/* Messages one page of mailstore_fetch_meta may return, and bytes of
	 * metadata (structure records included) it stops after. Defaults
	 * 1000 and 4 MiB. */
	unsigned page_max_messages;
	uint64_t page_max_bytes;
	/* Keys one purge step of a deleted mailbox deletes (one sync batch;
	 * mailstore_maintain and each mailbox delete run steps). Default
	 * 5000. */
	unsigned purge_step_keys;
};

#define MAILSTORE_DELIVERY_KEEP_DEFAULT_MS (7ull * 24 * 3600 * 1000)

void mailstore_limits_default(struct mailstore_limits *limits_r);

enum mailstore_flag_mode {
	MAILSTORE_FLAGS_SET = 0,
	MAILSTORE_FLAGS_ADD = 1,
	MAILSTORE_FLAGS_REMOVE = 2,
};

/* Mailbox attributes (mailstore_mailbox_info.attrs): the same bits as
 * frontend/imap/imap-backend.h's IMAP_MBOX_*. A mailbox has at most one
 * special use (RFC 6154). */
#define MAILSTORE_MBOX_SUBSCRIBED 0x0001u
#define MAILSTORE_MBOX_NONEXISTENT 0x0002u /* only store-service's LIST */
#define MAILSTORE_MBOX_SENT 0x0100u
#define MAILSTORE_MBOX_DRAFTS 0x0200u
#define MAILSTORE_MBOX_TRASH 0x0400u
#define MAILSTORE_MBOX_JUNK 0x0800u
#define MAILSTORE_MBOX_ARCHIVE 0x1000u
#define MAILSTORE_MBOX_SPECIAL_MASK 0x1f00u

/* Results. Owned by the caller; free with the matching *_free(). */
struct mailstore_mailbox_info {
	char *name;
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint32_t exists;
	uint64_t highest_modseq;
	uint32_t unseen;       /* messages without \Seen */
	uint32_t deleted;      /* messages with \Deleted */
	uint64_t size;         /* sum of the messages' sizes */
	unsigned attrs;        /* MAILSTORE_MBOX_* (SUBSCRIBED from list) */
	char **keywords;       /* every keyword of the mailbox, sorted (status,
				* uids); NULL otherwise */
	size_t n_keywords;
};

struct mailstore_message_info {
	uint32_t uid;
	char **flags;          /* sorted, n_flags strings */
	size_t n_flags;
	uint64_t size;
	int64_t internal_date; /* ms since the epoch */
	uint64_t modseq;
};

struct mailstore_deliver_result {
	uint32_t uid;
	uint32_t uidvalidity;
	int duplicate;         /* 1: delivery_id was seen; uid is the original */
};

typedef struct mailstore mailstore;

/* Open (creating if missing) the LevelDB directory dir. limits may be NULL
 * (defaults); it is copied. Returns MAIL_OK and *store_r, or
 * MAIL_ERR_INTERNAL with *error_r (static text; the LevelDB detail is
 * logged), e.g. when another process holds the directory. */
int mailstore_open(const char *dir, const struct mailstore_limits *limits,
		   mailstore **store_r, const char **error_r);
/* Close and free. NULLs *store. No call may be running. */
void mailstore_close(mailstore **store);

/* Store body as a new message of user's mailbox ("" = INBOX, created if
 * missing; any other mailbox must exist: NOT_FOUND). delivery_id is the
 * idempotency key: if it was delivered before (to any mailbox of user)
 * within limits.delivery_keep_ms, the original uid/uidvalidity come back
 * with duplicate = 1 and nothing is written. A delivery that writes also
 * drops up to 4 of user's delivery records older than that (same batch). An empty delivery_id disables the check. internal_date is ms
 * since the epoch, 0 meaning now. flags may be NULL when
 * n_flags is 0. Errors: PARAMS (bad user, mailbox, flag or delivery id),
 * TOO_BIG (body over max_message_size), LIMIT (too many or too long flags),
 * NOT_FOUND, INTERNAL (disk). */
int mailstore_deliver(mailstore *store, const char *user, const char *mailbox,
		      const char *delivery_id, const void *body, size_t body_len,
		      int64_t internal_date, const char *const *flags, size_t n_flags,
		      struct mailstore_deliver_result *result_r);

/* mailstore_deliver with the message as a struct mailstore_msg_in (its
 * structure record computed on the primary, or NULL: computed here).
 * PARAMS also for a structure record that does not decode. */
struct mailstore_msg_in;
int mailstore_deliver_msg(mailstore *store, const char *user, const char *mailbox,
			  const char *delivery_id, const struct mailstore_msg_in *msg,
			  struct mailstore_deliver_result *result_r);

/* Create an empty mailbox with special_use (one MAILSTORE_MBOX_* special
 * use bit, or 0), and its missing parents (RFC 3501 6.3.3), in one batch.
 * EXISTS if it is there already (INBOX included); PARAMS for a bad name or
 * more than one special-use bit; LIMIT past max_mailboxes. Creating INBOX
 * (explicitly or on first use) also creates Sent, Drafts, Trash, Junk and
 * Archive with their special use (those not there yet) and subscribes
 * INBOX and them, in the same batch. */
int mailstore_mailbox_create(mailstore *store, const char *user, const char *mailbox,
			     unsigned special_use, struct mailstore_mailbox_info *info_r);
/* Delete a mailbox: NOT_FOUND when absent, PERM for INBOX, EXISTS when it
 * has children (they go first). Its record goes in one batch; its
 * messages' keys (and bodies, which become garbage like an expunge's) are
 * purged afterwards in steps of limits.purge_step_keys (one step at once,
 * the rest by mailstore_maintain), invisible meanwhile: the mailbox id is
 * never reused. Its subscription stays (RFC 3501 6.3.4). */
int mailstore_mailbox_delete(mailstore *store, const char *user, const char *mailbox);
/* What mailstore_user_purge erased. */
struct mailstore_purge_stats {
	uint32_t mailboxes;
	uint64_t messages;
	uint64_t bytes;
};
/* Erase everything of user (a deleted account: `mailctl user del`): every
 * mailbox, INBOX included, with its messages, the subscriptions and the
 * delivery records, in one batch (the messages' keys go in the bounded
 * purge steps of deleted mailboxes, as after DELETE). A user created
 * again later starts empty, with new UIDVALIDITYs. MAIL_OK with *stats_r
 * (zeros when user had nothing), MAIL_ERR_PARAMS for an invalid user. */
int mailstore_user_purge(mailstore *store, const char *user,
			 struct mailstore_purge_stats *stats_r);
/* Rename from (and its children: from/...) to `to` (and to/...), creating
 * to's missing parents; one batch whatever the number of messages (they
 * are keyed by mailbox id). NOT_FOUND when from is absent, EXISTS when a
 * target name exists, PARAMS for a bad name or to under from. Each renamed
 * mailbox gets a new UIDVALIDITY (a client that cached another mailbox of
 * that name must not trust its uids); subscriptions of the renamed names
 * follow them. Renaming INBOX (RFC 3501 6.3.5) moves INBOX's messages to a
 * new mailbox `to` (new UIDVALIDITY) and leaves INBOX in place, empty,
 * with its UIDVALIDITY and uidnext (its old uids are never reused), its
 * children untouched; INBOX's expunge floor rises (a client that knew its
 * messages gets expunged_exact = 0 from mailstore_changes). */
int mailstore_mailbox_rename(mailstore *store, const char *user, const char *from,
			     const char *to);
/* Subscribe (on = 1) or unsubscribe user to mailbox (which need not
 * exist). Idempotent. PARAMS for a bad name, LIMIT past
 * max_subscriptions. */
int mailstore_subscribe(mailstore *store, const char *user, const char *mailbox, int on);
/* User's subscribed names, sorted (strcmp); free with
 * mailstore_names_free(). */
int mailstore_subscriptions(mailstore *store, const char *user, char ***names_r, size_t *n_r);
void mailstore_names_free(char **names, size_t n);
/* One mailbox's record (every field, keywords included). NOT_FOUND when
 * absent (INBOX is created on first use). */
int mailstore_status(mailstore *store, const char *user, const char *mailbox,
		     struct mailstore_mailbox_info *info_r);

/* Every mailbox of user, sorted by name; INBOX always among them (created
 * if missing). attrs carry the special use and SUBSCRIBED; keywords are
 * not filled. *boxes_r is freed with mailstore_mailbox_infos_free(). */
int mailstore_list(mailstore *store, const char *user,
		   struct mailstore_mailbox_info **boxes_r, size_t *n_r);

/* The mailbox (info_r) and all its messages ascending by uid (msgs_r, free
 * with mailstore_message_infos_free(); NULL when empty). NOT_FOUND for an
 * unknown mailbox (INBOX is created if missing). */
int mailstore_select(mailstore *store, const char *user, const char *mailbox,
		     struct mailstore_mailbox_info *info_r,
		     struct mailstore_message_info **msgs_r, size_t *n_r);

/* One message: its info and a heap copy of its body (caller frees).
 * NOT_FOUND for an unknown mailbox or uid. */
int mailstore_fetch(mailstore *store, const char *user, const char *mailbox, uint32_t uid,
		    struct mailstore_message_info *info_r, void **body_r, size_t *body_len_r);

/* Change the flags of the listed uids (any order, duplicates allowed; uids
 * that do not exist are ignored, as IMAP STORE does). Messages whose flags
 * really change get the mailbox's next modseq (one value for the whole
 * call); the others keep theirs. Returns the infos after the change of
 * every existing listed uid, ascending. LIMIT if a result would exceed
 * max_flags (nothing is written then). */
int mailstore_store_flags(mailstore *store, const char *user, const char *mailbox,
			  const uint32_t *uids, size_t n_uids, enum mailstore_flag_mode mode,
			  const char *const *flags, size_t n_flags,
			  struct mailstore_message_info **msgs_r, size_t *n_r);

/* Remove messages that carry \Deleted: all of them when n_uids is 0, else
 * only those among uids (UID EXPUNGE). *uids_r gets the expunged uids
 * ascending (caller frees; NULL when none). Expunging bumps highest_modseq.
 * The bodies' bytes become garbage in their segments (collected later);
 * the call may run one collection step after its batch. */
int mailstore_expunge(mailstore *store, const char *user, const char *mailbox,
		      const uint32_t *uids, size_t n_uids, uint32_t **uids_r, size_t *n_r);

/* ---- SELECT, fetch and sync in pages (issue 9) ----
 * A large mailbox is read in pages, each a short scan under the store lock
 * (at most limits.page_scan_keys keys visited), so that a 1,000,000-message
 * mailbox never makes one long call nor one oversized answer. Pages are
 * not one snapshot: the mailbox may change between two; each call says
 * how to go on. */

/* One page of the mailbox's uids: ascending disjoint ranges of the uids
 * in (after_uid, below_uid) (below_uid 0: no bound), at most
 * limits.page_scan_keys messages. *next_after_r: give it as after_uid for
 * the next page, 0 when this was the last. The first page (after_uid 0)
 * also fills info_r (every field, keywords included) and
 * *first_unseen_r (the lowest uid without \Seen, 0: none; an index read,
 * never a scan); later pages leave info_r zeroed. NOT_FOUND when the
 * mailbox is absent (INBOX is created on first use). Free *ranges_r. */
int mailstore_uids(mailstore *store, const char *user, const char *mailbox, uint32_t after_uid,
		   uint32_t below_uid, struct search_uid_range **ranges_r, size_t *n_r,
		   uint32_t *next_after_r, uint32_t *first_unseen_r,
		   struct mailstore_mailbox_info *info_r);

/* A message as fetch_meta returns it: its meta and, when asked, its
 * structure record (store-structure.h: ENVELOPE, BODYSTRUCTURE, BODY, the
 * part table). */
struct mailstore_meta {
	struct mailstore_message_info info;
	uint8_t *structure;   /* heap, NULL when not asked */
	size_t structure_len;
	uint8_t *content;     /* heap, the whole body (mailstore_fetch_meta_content) */
	size_t content_len;
};
/* The messages whose uid is in ranges (ascending, disjoint), above
 * after_uid, with modseq > changed_since (0: all): ascending uid, at most
 * limits.page_max_messages of them and about limits.page_max_bytes, after
 * at most limits.page_scan_keys keys visited. with_structure adds each
 * one's structure record (a message stored before the records existed
 * gets one computed from its body, not stored). *next_after_r: the
 * after_uid of the next page, 0 when done (a page may be empty and not
 * the last). With changed_since > 0 and few changes (no more than a page)
 * the modseq index answers in one page, never a scan. NOT_FOUND for an
 * unknown mailbox. Free with mailstore_metas_free(). */
int mailstore_fetch_meta(mailstore *store, const char *user, const char *mailbox,
			 const struct search_uid_range *ranges, size_t n_ranges,
			 uint64_t changed_since, int with_structure, uint32_t after_uid,
			 struct mailstore_meta **msgs_r, size_t *n_r, uint32_t *next_after_r);
void mailstore_metas_free(struct mailstore_meta *msgs, size_t n);
/* The bodies of msgs (as fetch_meta returned them, of that mailbox) into
 * their content, in order, while they fit in budget bytes in all: one
 * read each, the metas not read again. A message too large for what is
 * left, expunged meanwhile or whose body cannot be read (logged) keeps
 * content NULL: the caller reads it otherwise and meets the error there.
 * MAIL_OK, NOT_FOUND (the mailbox), PARAMS or INTERNAL. */
int mailstore_fetch_meta_content(mailstore *store, const char *user, const char *mailbox,
				 struct mailstore_meta *msgs, size_t n, uint64_t budget);

/* Bytes [offset, offset + length) of a message's body (length 0: to the
 * end; clipped to it), its info, and *total_r the whole body's length.
 * The whole body is read (its CRC covers all of it). NOT_FOUND for an
 * unknown mailbox or uid. */
int mailstore_fetch_range(mailstore *store, const char *user, const char *mailbox,
			  uint32_t uid, uint64_t offset, uint64_t length,
			  struct mailstore_message_info *info_r, void **body_r, size_t *len_r,
			  uint64_t *total_r);

/* What changed in a mailbox since since_modseq (RFC 7162), as frontend/
 * imap/imap-backend.h's struct imap_changes says, in pages. A call walks
 * three phases in order, from *cursor (zeroed: the start), and stops after
 * limits.page_scan_keys keys visited:
 *   1. changed: the modseq index after since_modseq, uids below
 *      known_uidnext (their flags now);
 *   2. expunged: when since_modseq >= the mailbox's expunge floor, the
 *      tombstones after since_modseq (expunged_exact = 1), else every uid
 *      below known_uidnext not present now (a scan of the mailbox's uids,
 *      expunged_exact = 0);
 *   3. added: the uids >= known_uidnext.
 * *cursor is advanced; cursor->phase == MAILSTORE_CHANGES_DONE after the
 * last page. highest_modseq, uidnext and exists are the mailbox's at this
 * page. Between pages the mailbox may change: a later page may report a
 * message changed in an earlier one again, or expunged. NOT_FOUND for an
 * unknown mailbox. Free with mailstore_changes_free(). */
#define MAILSTORE_CHANGES_DONE 4
struct mailstore_changes_cursor {
	uint8_t phase;        /* 0: start, 1..3 the phase, DONE */
	uint64_t after_modseq;
	uint32_t after_uid;
};
struct mailstore_changes {
	uint64_t highest_modseq;
	uint32_t uidnext;
	uint32_t exists;
	struct search_uid_range *added;
	size_t n_added;
	struct search_uid_range *expunged;
	size_t n_expunged;
	int expunged_exact;
	struct mailstore_message_info *changed;
	size_t n_changed;
};
int mailstore_changes(mailstore *store, const char *user, const char *mailbox,
		      uint64_t since_modseq, uint32_t known_uidnext,
		      struct mailstore_changes_cursor *cursor, struct mailstore_changes *out);
void mailstore_changes_free(struct mailstore_changes *changes);

/* ---- APPEND, COPY, MOVE (issue 9) ---- */

/* One message to store. structure: its structure record as
 * store-structure.h encodes it (computed on the primary and carried in
 * the replicated entry, so every replica stores the same bytes), or NULL
 * to compute it here from body. */
struct mailstore_msg_in {
	const void *body;
	size_t body_len;
	int64_t internal_date;      /* ms since the epoch, 0: now */
	const char *const *flags;
	size_t n_flags;
	const void *structure;
	size_t structure_len;
	/* deliver: a mailbox that does not exist means INBOX (a subaddress
	 * folder, a Junk the user deleted) instead of NOT_FOUND */
	int inbox_fallback;
};
/* APPEND (RFC 3502 MULTIAPPEND: n > 1, all or nothing, one batch): the
 * messages get consecutive uids, *uids_r (heap, n of them) in
 * *uidvalidity_r. NOT_FOUND when the mailbox is absent (INBOX is created
 * on first use); TOO_BIG when one body passes max_message_size (the
 * APPENDLIMIT); LIMIT past max_append_messages or max_append_bytes, too
 * many flags or keywords; PARAMS for a bad flag or structure record. */
int mailstore_append(mailstore *store, const char *user, const char *mailbox,
		     const struct mailstore_msg_in *msgs, size_t n, uint32_t *uidvalidity_r,
		     uint32_t **uids_r);
/* COPY (move = 0) or MOVE (move = 1) of the messages of `from` whose uids
 * are in ranges (ascending, disjoint) to `to`: new uids in `to`, flags,
 * internal dates and structure records copied, bodies copied into the
 * segment files; MOVE expunges them from `from` in the same batch (with
 * tombstones). (*src_uids_r)[i] became (*dst_uids_r)[i] (heap, *n_r each,
 * ascending src; uids that did not exist are left out; NULL when none).
 * NOT_FOUND when either mailbox is absent; LIMIT past max_copy_messages or
 * max_copy_bytes, or when `to`'s keywords would pass their bound; PARAMS
 * for a MOVE into the same mailbox. */
int mailstore_copy(mailstore *store, const char *user, const char *from,
		   const struct search_uid_range *ranges, size_t n_ranges, const char *to, int move,
		   uint32_t *dst_uidvalidity_r, uint32_t **src_uids_r, uint32_t **dst_uids_r,
		   size_t *n_r);

/* ---- change notifications (store-service.c's WATCH) ---- */
struct mailstore_change {
	const char *user;
	const char *mailbox;      /* stored name */
	uint64_t highest_modseq;  /* the mailbox's now */
	int gone;                 /* deleted or renamed away */
};
/* Called after every operation that committed a change to a mailbox,
 * once per changed mailbox, on the thread that made the call, outside the
 * store lock (it may call the store). change is valid during the call. */
typedef void mailstore_change_cb(const struct mailstore_change *change, void *arg);
/* Set (or clear, cb NULL) the change callback. Before any other call. */
void mailstore_set_change_cb(mailstore *store, mailstore_change_cb *cb, void *arg);
/* The stored name of mailbox (as change callbacks give it: "INBOX" for
 * any case of it, "INBOX/..." for its children) into out (reset first,
 * NUL-terminated). 0, or -1 when the name is not valid. */
int mailstore_mailbox_canon(mailstore *store, const char *mailbox, buf *out);
/* The highest modseq the last write left in the mailbox it changed, for
 * the write's answer: 0 after mailstore_last_modseq_reset() until a write
 * changes a mailbox. Loop thread (as the writes). */
void mailstore_last_modseq_reset(mailstore *store);
uint64_t mailstore_last_modseq(const mailstore *store);
/* The mailbox's highest modseq, read only (never creates INBOX): MAIL_OK,
 * NOT_FOUND, PARAMS or INTERNAL. */
int mailstore_highest_modseq(mailstore *store, const char *user, const char *mailbox,
			     uint64_t *modseq_r);

/* ---- quotas (issue 12) ----
 * A user's usage is the sum of the counters of the user's mailbox records
 * ('M': exists and size), which every write batch already keeps exact
 * (deliver, APPEND, COPY, MOVE, EXPUNGE, DELETE of a mailbox, user purge),
 * which every replica computes alike from the replicated entries, which
 * survive a restart and travel in snapshots (legacy records are recounted
 * on read, as everywhere). Reading it is one seek and a walk of the user's
 * mailbox records (at most limits.max_mailboxes, usually a handful): no
 * separate counter that could drift, no periodic scan. Messages flagged
 * \Deleted count until they are expunged (RFC 9208 5.1). */
struct mailstore_usage {
	uint64_t bytes;      /* sum of the messages' sizes (octets) */
	uint64_t messages;   /* number of messages */
};
/* user's usage into *usage_r (zeros for a user without mailboxes; never
 * creates INBOX). MAIL_OK, PARAMS (bad user) or INTERNAL. Any thread. */
int mailstore_usage(mailstore *store, const char *user, struct mailstore_usage *usage_r);

/* A user's limits: 0 = no limit of that kind. */
struct mailstore_quota {
	uint64_t storage;    /* octets */
	uint64_t messages;
};
/* Until the next call with NULL: deliver, APPEND and COPY (not MOVE, which
 * does not change a user's usage) refuse with MAIL_ERR_QUOTA, writing
 * nothing, when the user's usage plus what they add would pass quota (a
 * duplicate delivery is still answered as a duplicate). The check and the
 * write are one step under the store lock; when the limits come from a
 * replicated entry (store-service.c) every replica decides alike.
 * Deletions are never checked. As mailstore_apply_begin, the caller
 * serialises this with its calls on the store. */
void mailstore_quota_begin(mailstore *store, const struct mailstore_quota *quota);

/* ---- replication (replication/repl-host.c, store-service.c) ----
 * A replicated log applies the same entries on every replica; the store must
 * then compute the same state everywhere and record how far it got. */
struct mailstore_apply {
	uint32_t partition;  /* partition of the entry */
	uint64_t index;      /* its log index */
	int64_t now_ms;      /* the primary's wall clock when it proposed it */
};
/* Until the next call with NULL: every write batch also stores
 * apply->index as partition's applied index (same batch, same sync), and
 * "now" (UIDVALIDITY of a new mailbox: exactly now_ms / 1000; an internal
 * date of 0) is apply->now_ms, so that applying is deterministic. The
 * caller serialises this with every other call on the store. */
void mailstore_apply_begin(mailstore *store, const struct mailstore_apply *apply);
/* Deferred apply syncs (the replication's apply barrier, repl.h
 * repl_settings.apply_barrier): with on = 1, the batches written while
 * applying are not synced one by one (a body's segment still is, before
 * the batch that points at it); mailstore_apply_barrier() makes all of
 * them durable at once. Default off: every batch synced. */
void mailstore_apply_defer_sync(mailstore *store, int on);
/* Make every batch written so far durable: an fdatasync of every LevelDB
 * log file of the directory (the batches are in the kernel once written;
 * LevelDB does not sync the log it leaves when it switches memtables, so
 * syncing the current log alone would not cover a batch written before a
 * switch). No LevelDB write: writes made by other threads meanwhile do not
 * wait for it. Nothing to do when nothing was written unsynced. MAIL_OK
 * or INTERNAL (logged). Any thread. */
int mailstore_apply_barrier(mailstore *store);
/* The stored applied index of partition (0 when none) into *index_r. */
int mailstore_applied_index(mailstore *store, uint32_t partition, uint64_t *index_r);
/* *exists_r = 1 if user's mailbox exists (never creates INBOX). Returns
 * MAIL_OK, PARAMS or INTERNAL. */
int mailstore_mailbox_exists(mailstore *store, const char *user, const char *mailbox,
			     int *exists_r);

/* ---- body segments (see the key schema) ---- */

/* One collection step (limits.body_collect_step bytes at most): for an
 * idle store, or a caller that wants space back now (the write path runs
 * steps by itself). *more_r = 1 when another step may have work. Returns
 * MAIL_OK or INTERNAL (logged; no body is lost: a step that fails leaves
 * its segment as it was). */
int mailstore_maintain(mailstore *store, int *more_r);

struct mailstore_body_stats {
	uint32_t segments;    /* segment files */
	uint32_t current;     /* the segment appended to (0: none yet) */
	uint64_t disk_bytes;  /* their sizes */
	uint64_t live_bytes;  /* what pointers reference (headers included) */
	uint64_t collected;   /* segments deleted since open */
	uint64_t moved_bytes; /* bytes copied by collection since open */
};
void mailstore_body_stats(mailstore *store, struct mailstore_body_stats *stats_r);

/* ---- partition snapshots (log compaction, replica catch-up) ----
 * A replica too far behind gets the partition's state instead of the log.
 * The bytes are produced and read only here; the replicated log carries
 * them as opaque chunks.
 *
 * What a partition is on this store: every 'M', 'I', 'B', 'P', 'D', 'X',
 * 'T', 'E' and 'U' key of a user with util_hash64(user) % n_partitions ==
 * partition (the same function as router_partition_of()), plus its 'A'
 * key (the keys of a deleted mailbox waiting for its purge are left out).
 * A 'P' pointer is exported as the 'B' pair of the previous versions (the
 * key with kind 'B', the body bytes read from its segment as the value; a
 * CRC mismatch fails the export), so chunks carry bodies, never node-local
 * pointers. The
 * 'C' counters and the 'V' level are per node and are never exported, nor
 * are the 'Z', 'W' and 'N' records (the installer writes them for the 'I'
 * keys it takes), nor the 'G' records, nor the segment records 'R' and
 * 'S'. (Issue 9: a store of the version before the 'T', 'E' and 'U' kinds
 * and the longer 'M' value refuses chunks carrying them: during a rolling
 * upgrade a new primary cannot install a snapshot on an old replica,
 * which catches up once upgraded; a new replica installs an old
 * exporter's chunks, its short 'M' records recounted on first use. An old
 * binary that opens a store of this one reads the longer 'M' values but
 * rewrites them short: this version recounts such records, but the 'N',
 * 'W' and 'T' records of what the old binary changed are stale until the
 * 'V' key is deleted and the upgrade runs again.) (A store of the
 * version before 'X' refuses chunks with 'X' keys: during a rolling
 * upgrade a new primary cannot install a snapshot on an old replica; the
 * replica catches up once upgraded. The other way round works: a new
 * replica dates the delivery records of an old exporter at install_end.)
 *
 * Chunk format (version MAILSTORE_SNAPSHOT_VERSION):
 *   version u8 | pair*      pair = key_len u32 | key | value_len u32 | value
 * Lengths are big-endian; a key is a complete store key as in the schema
 * above (01 kind <user> 00 ...), the value its stored value as is. A key is
 * at most MAILSTORE_SNAPSHOT_KEY_MAX bytes. The applied index is NOT in the
 * chunks: it travels beside them (mailstore_snapshot_open's *applied_r,
 * given back to mailstore_snapshot_install_end). That way no chunk can make
 * a half-installed partition look applied.
 *
 * Cost: export and install_begin walk the keys of every user of the store
 * once per kind (one seek per user of another partition, which skips all of
 * that user's keys), and read every key and value of the partition. */
#define MAILSTORE_SNAPSHOT_VERSION 0x01
#define MAILSTORE_SNAPSHOT_KEY_MAX 1024

typedef struct mailstore_snapshot mailstore_snapshot;

/* A consistent view (a LevelDB snapshot taken between two operations) of
 * every key of partition, and *applied_r = the partition's applied index in
 * that view (0 when none). Writes made after this call are not in the
 * export. The snapshot holds no store lock: export runs beside normal
 * traffic (but LevelDB keeps the files it reads until it is closed). Free
 * it with mailstore_snapshot_close() before mailstore_close(store).
 * Returns MAIL_OK, PARAMS (n_partitions == 0 or partition >=
 * n_partitions) or INTERNAL (disk, corrupt 'A' record). */
int mailstore_snapshot_open(mailstore *store, uint32_t partition, uint32_t n_partitions,
			    mailstore_snapshot **snap_r, uint64_t *applied_r);
/* Append the next chunk to out (the caller owns out): its version byte and
 * the next pairs, at most max_bytes in all unless one pair alone is bigger
 * (then that pair alone). Returns 1 when a chunk was appended, 0 when the
 * export is complete (nothing appended; an empty partition gives no chunk
 * at all), -MAIL_ERR_INTERNAL on a read error or a corrupt key (logged;
 * the export must be abandoned). One thread at a time per snapshot; any
 * thread. */
int mailstore_snapshot_next(mailstore_snapshot *snap, buf *out, size_t max_bytes);
/* Release the view. NULLs *snap; NULL is allowed. */
void mailstore_snapshot_close(mailstore_snapshot **snap);

/* Install, on a replica, a partition exported elsewhere:
 *   install_begin, install_chunk for every chunk in order, install_end.
 * The caller must not write to the partition between begin and end (no
 * apply of its entries); other partitions are served as usual. A crash at
 * any point before end leaves applied index 0 (never a half-installed
 * partition that claims to be applied): start again with begin.
 *
 * install_begin: drop every key of the partition (all 'M','I','B','P','D',
 * 'X','Z','W','N','T','E','U','G' keys of its users, and its 'A' key, so
 * its applied index reads 0)
 * in ONE sync batch; the bodies of its pointers become garbage in their
 * segments (live bytes and reverse records go in the same batch), which
 * collection reclaims. The 'C' counters stay. Returns MAIL_OK, PARAMS or
 * INTERNAL. */
int mailstore_snapshot_install_begin(mailstore *store, uint32_t partition,
				     uint32_t n_partitions);
/* Validate and write one chunk (data is only read during the call; it
 * comes from the network): the version byte must be
 * MAILSTORE_SNAPSHOT_VERSION, every length must stay inside the chunk, every
 * key must be an 'M','I','B','D','X','T','E' or 'U' key of a valid user of
 * this partition (valid mailbox name, uid, modseq, delivery id) and every
 * value must parse exactly as its kind (flags and keywords canonical and
 * within this store's limits, counters within exists, at most one special
 * use, a structure record that decodes), and no message may have two
 * bodies in one chunk. Anything else is
 * MAIL_ERR_PARAMS (logged) and nothing of the chunk is written. Otherwise
 * the bodies ('B' pairs) are appended to the segment files (made durable
 * first), and their 'P' pointers (replacing any pointer or 'B' body at
 * that key), the other pairs, the 'N', 'W' and (when \Deleted) 'Z' records
 * of each 'I', and the 'C' counters go in ONE sync batch;
 * the counters are raised above every imported mailbox id and
 * UIDVALIDITY, so a mailbox created later on this node never reuses one
 * (a replicated create takes its UIDVALIDITY from the entry's clock
 * instead: mailstore_apply_begin). Returns MAIL_OK, PARAMS or INTERNAL. */
int mailstore_snapshot_install_chunk(mailstore *store, uint32_t partition,
				     uint32_t n_partitions, const uint8_t *data, size_t len);
/* Store applied as the partition's applied index (sync): the install is
 * complete. When the chunks carried delivery records but no 'X' records
 * (an exporter of the previous version), the records get 'X' records
 * dated now first (one pass over the node's 'D' keys). Returns MAIL_OK or
 * INTERNAL. */
int mailstore_snapshot_install_end(mailstore *store, uint32_t partition, uint64_t applied);

void mailstore_mailbox_info_free(struct mailstore_mailbox_info *info);
void mailstore_mailbox_infos_free(struct mailstore_mailbox_info *boxes, size_t n);
void mailstore_message_info_free(struct mailstore_message_info *info);
void mailstore_message_infos_free(struct mailstore_message_info *msgs, size_t n);

#endif
