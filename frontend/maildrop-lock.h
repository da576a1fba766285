/* maildrop-lock.h: POP3's cluster-wide maildrop lock.
 *
 * RFC 1939 8: once a POP3 session is authenticated the server "acquires an
 * exclusive-access lock on the maildrop", so that two POP3 clients of one
 * user never both download and delete. A lock is the etcd key
 *     /mail/v1/locks/pop3/<user>    value: the holder ("<frontend> <session>")
 * created only if absent (a transaction), under ONE lease per frontend that
 * this module keeps alive every ttl/3 seconds. It is released by deleting
 * the key (QUIT, disconnect) and, when the frontend dies, by etcd: the
 * lease runs out ttl seconds later and takes every lock of that frontend
 * with it. IMAP sessions never take it (as in Dovecot, the lock is between
 * POP3 sessions; IMAP and POP3 may share a mailbox).
 *
 * If the lease is found expired (etcd was unreachable for longer than the
 * ttl), a new one is granted and every lock still held here is created
 * again under it; a lock another frontend took meanwhile is lost (logged
 * event=pop3_lock_lost; the session goes on, its QUIT still expunges only
 * its own DELE'd messages).
 *
 * Without etcd (settings.etcd NULL: tests, a single frontend) the locks
 * are a table in this process.
 *
 * Threading: every call on the loop thread. etcd is spoken to by one pool
 * job at a time, with one etcd client (one connection) reused for every
 * job: operations queued meanwhile go in the next job, in order.
 */
#ifndef MAIL_MAILDROP_LOCK_H
#define MAIL_MAILDROP_LOCK_H

#include "etcd.h"

#include <uv.h>

#define MAILDROP_LOCK_PREFIX "/mail/v1/locks/pop3/"
#define MAILDROP_LOCK_TTL_S 30

struct maildrop_locks_settings {
	const etcd_conf *etcd;    /* copied; NULL: locks in this process only */
	struct etcd_stats *stats; /* borrowed, may be NULL */
	const char *holder;       /* this frontend's name (copied), in the value */
	unsigned ttl_s;           /* the lease; 0: MAILDROP_LOCK_TTL_S; min 2 */
};

typedef struct maildrop_locks maildrop_locks;

maildrop_locks *maildrop_locks_start(uv_loop_t *loop, const struct maildrop_locks_settings *set);
/* Revoke the lease (every lock of this frontend goes at once) and free
 * everything once the last job has returned; pending acquires are answered
 * MAIL_ERR_UNAVAILABLE first. Run the loop afterwards. NULLs *locks. */
void maildrop_locks_stop(maildrop_locks **locks);

/* status: MAIL_OK the lock is held (release it later); MAIL_ERR_EXISTS
 * another session holds it (here or on another frontend); MAIL_ERR_UNAVAILABLE
 * etcd could not be asked (the caller decides: POP3 goes on without it).
 * Called once, from the loop, never from inside maildrop_lock_acquire(). */
typedef void maildrop_lock_cb(int status, void *arg);

/* Take user's lock for session (the session's id, for the value). */
void maildrop_lock_acquire(maildrop_locks *locks, const char *user, const char *session,
			   maildrop_lock_cb *cb, void *arg);
/* Give back a lock acquire() answered MAIL_OK for. */
void maildrop_lock_release(maildrop_locks *locks, const char *user);

/* Locks held by this frontend now. */
size_t maildrop_locks_held(const maildrop_locks *locks);

#endif
