/* imap-memory-backend-private.h: what the memory backend's two files
 * share (imap-memory-backend.c: users, LIST, SELECT, FETCH, STORE,
 * EXPUNGE; imap-memory-backend-msg.c: open, fetch_meta, fetch_range,
 * copy, changes, watch, search, sort, thread). Tests only. */
#ifndef MAIL_IMAP_MEMORY_BACKEND_PRIVATE_H
#define MAIL_IMAP_MEMORY_BACKEND_PRIVATE_H

#include "imap-memory-backend.h"
#include "mime.h"

struct mem_key;

struct mem_msg {
	uint32_t uid;
	uint8_t *body;
	size_t len;
	char **flags;
	size_t n_flags;
	int64_t date;
	uint64_t modseq;
	struct mime_result *mime;  /* ENVELOPE, BODYSTRUCTURE, part table:
				    * computed when first asked for */
};

/* An expunge remembered for changes() (RFC 7162 VANISHED). */
struct mem_expunged {
	uint32_t uid;
	uint64_t modseq;
};

struct mem_box {
	struct mem_box *next;
	char *user;
	char *name;
	uint32_t uidvalidity;
	uint32_t uidnext;
	struct mem_msg *msgs;
	size_t n_msgs;
	size_t cap;
	uint64_t highest_modseq;
	struct mem_expunged *expunged; /* ascending modseq */
	size_t n_expunged, expunged_cap;
	uint64_t expunge_log_start;    /* expunges up to here are forgotten */
	int notify;                    /* changed: tell the watchers */
	unsigned special_use;          /* IMAP_MBOX_* special-use bit, or 0 */
};

/* A subscription (RFC 3501 6.3.6): a name, whether or not it exists. */
struct mem_sub {
	struct mem_sub *next;
	char *user;
	char *name;
};

/* A watch (imap-backend.h) on one user's mailbox. */
struct imap_backend_watch {
	struct imap_backend_watch *next;
	uint64_t id;
	char *user;
	char *mailbox;
	imap_backend_watch_cb *cb;
	void *arg;
};

struct mem_user {
	struct mem_user *next;
	char *user;
	char *password;
};

struct imap_memory_backend {
	uv_loop_t *loop;
	uint64_t delay_ms;
	int failure;
	struct mem_user *users;
	struct mem_box *boxes;
	struct imap_backend_watch *watches;
	uint64_t watch_ids;
	size_t meta_page;              /* fetch_meta's page size */
	char *last_search;             /* the last search program, as text */
	struct mem_sub *subs;
	uint32_t next_uidvalidity; /* of the next mailbox made by CREATE */
	size_t max_message_size;   /* APPEND: TOO_BIG above (0: none) */
	struct imap_quota quota;   /* what quota() reports */
};

enum mem_op_kind { MEM_AUTH, MEM_SCRAM, MEM_LIST, MEM_SELECT, MEM_FETCH, MEM_STORE,
		   MEM_EXPUNGE, MEM_CALL };

struct mem_op;
/* MEM_CALL: the operation is op->run (the mailbox- and message-level
 * calls of issue 9). */
typedef void mem_op_run_fn(struct mem_op *op);

struct mem_op {
	uv_timer_t timer;
	struct imap_memory_backend *mb;
	enum mem_op_kind kind;
	char *user;
	char *mailbox;
	char *password;
	uint32_t uid;
	uint32_t *uids;
	size_t n_uids;
	enum imap_flag_mode mode;
	char **flags;
	size_t n_flags;
	void *cb;
	void *arg;
	/* MEM_CALL */
	mem_op_run_fn *run;
	char *to;                     /* RENAME's new name, COPY's destination */
	unsigned special_use;         /* CREATE */
	int on;                       /* SUBSCRIBE 1, UNSUBSCRIBE 0 */
	struct imap_append_msg *msgs; /* APPEND: copies (data, flags) */
	size_t n_msgs;
	struct search_uid_range *ranges;
	size_t n_ranges;
	int move;
	unsigned what;
	uint64_t since;
	uint32_t known_uidnext;
	uint64_t offset, length;
	struct mem_key *key;           /* a copy of the search program */
	struct search_sort *sort;
	size_t n_sort;
	enum search_thread_alg alg;
};


/* imap-memory-backend.c */
struct mem_box *mem_box_find(imap_memory_backend *mb, const char *user, const char *name,
			     int create);
struct mem_msg *mem_msg_find(struct mem_box *b, uint32_t uid);
int mem_msg_flag_index(const struct mem_msg *m, const char *flag);
void mem_msg_flag_add(struct mem_msg *m, const char *flag);
void mem_msg_free(struct mem_msg *m);
void mem_msg_info(const struct mem_msg *m, struct imap_msg_info *info);
struct mem_op *mem_op_new(void *ctx, enum mem_op_kind kind, const char *user,
			  const char *mailbox, void *cb, void *arg);
void mem_op_start(struct mem_op *op);
/* A change to b: a new modseq (returned), the watchers told after the
 * running call. */
uint64_t mem_box_bump(struct mem_box *b);
/* Remember uid expunged at modseq (changes()). */
void mem_box_log_expunge(struct mem_box *b, uint32_t uid, uint64_t modseq);

/* imap-memory-backend-msg.c */
/* Tell the watchers of every changed mailbox (on the loop thread). */
void mem_notify_flush(imap_memory_backend *mb);
void mem_op_free_extra(struct mem_op *op);
/* the backend calls (see imap-backend.h) */
void mem_open(void *ctx, const char *user, const char *mailbox, imap_backend_open_cb *cb,
	      void *arg);
void mem_fetch_meta(void *ctx, const char *user, const char *mailbox,
		    const struct search_uid_range *uids, size_t n_ranges, unsigned what,
		    uint64_t changed_since, imap_backend_meta_cb *cb, void *arg);
void mem_fetch_range(void *ctx, const char *user, const char *mailbox, uint32_t uid,
		     uint64_t offset, uint64_t length, imap_backend_fetch_cb *cb, void *arg);
void mem_copy(void *ctx, const char *user, const char *from, const struct search_uid_range *uids,
	      size_t n_ranges, const char *to, int move, imap_backend_copy_cb *cb, void *arg);
void mem_search(void *ctx, const char *user, const char *mailbox, const struct search_key *key,
		imap_backend_search_cb *cb, void *arg);
void mem_sort(void *ctx, const char *user, const char *mailbox, const struct search_sort *crit,
	      size_t n_crit, const struct search_key *key, imap_backend_sort_cb *cb, void *arg);
void mem_thread(void *ctx, const char *user, const char *mailbox, enum search_thread_alg alg,
		const struct search_key *key, imap_backend_thread_cb *cb, void *arg);
void mem_changes(void *ctx, const char *user, const char *mailbox, uint64_t since_modseq,
		 uint32_t known_uidnext, imap_backend_changes_cb *cb, void *arg);
imap_backend_watch *mem_watch(void *ctx, const char *user, const char *mailbox,
			      uint64_t modseq, imap_backend_watch_cb *cb, void *arg);
void mem_unwatch(void *ctx, imap_backend_watch *w);

#endif
