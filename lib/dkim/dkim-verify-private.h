/* dkim-verify-private.h: the verification of one message in steps,
 * without threads or DNS (dkim-verify-run.c), for the job plumbing of
 * dkim-verify.c, the tests and the fuzz target. Not installed.
 *
 * The steps, and where dkim-verify.c runs them:
 *   dkim__run_init()     loop      the run over a borrowed message
 *   dkim__run_header()   pool      header fields into libopendkim, eoh,
 *                                  one slot per checked signature
 *   dkim__run_plan()     loop      the key lookups to make (distinct names)
 *   (the caller fills each lookup's status and records)
 *   dkim__run_keys()     loop      slots whose lookup failed are decided
 *   dkim__run_body()     pool      only if dkim__run_needs_body(): body,
 *                                  eom, every slot mapped to a result
 *   dkim__run_clear()    loop      frees it all
 * Each step is called by one thread at a time; the plumbing hands the run
 * between threads through uv_queue_work (which orders the memory).
 */
#ifndef MAIL_DKIM_VERIFY_PRIVATE_H
#define MAIL_DKIM_VERIFY_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

#include <dkim.h>

#include "dkim-verify.h"
#include "dns.h"

/* "<selector>._domainkey.<domain>" and its NUL */
#define DKIM__NAME_MAX (2 * DKIM_DOMAIN_MAX + sizeof "._domainkey." + 1)

/* One key lookup (several signatures may share it). */
struct dkim__lookup {
	char name[DKIM__NAME_MAX]; /* lowercase */
	enum dns_status status;    /* filled by the caller */
	char *record;              /* the record libopendkim gets (heap), or NULL */
	size_t record_len;
	dns_request *req;          /* dkim-verify.c's, while asking */
	void *owner;               /* dkim-verify.c's job */
};

/* One checked signature. */
struct dkim__slot {
	struct dkim_verify_sig out;
	DKIM_SIGINFO *si; /* libopendkim's; NULL when it refused the field */
	int decided;      /* out is final (before dkim__run_body) */
	int lookup;       /* index in lookups, -1 for none */
};

/* Entered before each read of the message, left after: 0 means stop
 * reading (the job was cancelled). NULL: always read. */
typedef int dkim__read_begin_fn(void *guard);
typedef void dkim__read_end_fn(void *guard);

struct dkim__run {
	const struct dkim_verify_settings *set;
	DKIM_LIB *lib;
	const uint8_t *msg;
	size_t len;
	char id[64]; /* libopendkim keeps a pointer to it */
	DKIM *d;
	size_t body_off; /* where the body starts (len: none) */
	struct dkim__slot *slots;
	size_t n_slots;
	size_t unchecked;
	struct dkim__lookup *lookups;
	size_t n_lookups;
	int status;        /* MAIL_OK, or the mail_error of the message */
	const char *error; /* static, with status */
	int stopped;       /* a read guard said stop */
	dkim__read_begin_fn *read_begin;
	dkim__read_end_fn *read_end;
	void *guard;
};

/* A DKIM_LIB set up for verifying with set (borrowed for its life: the
 * key callback reads the settings through each run), or NULL. */
DKIM_LIB *dkim__lib_new(const struct dkim_verify_settings *set);

void dkim__run_init(struct dkim__run *r, DKIM_LIB *lib, const struct dkim_verify_settings *set,
		    const void *msg, size_t len, const char *id);
/* Sets r->status (MAIL_ERR_TOO_BIG/LIMIT/PARAMS/INTERNAL) on failure. */
void dkim__run_header(struct dkim__run *r);
void dkim__run_plan(struct dkim__run *r);
void dkim__run_keys(struct dkim__run *r);
int dkim__run_needs_body(const struct dkim__run *r);
void dkim__run_body(struct dkim__run *r);
void dkim__run_clear(struct dkim__run *r);

/* Store the answer to lk's lookup: status, and the record libopendkim
 * gets out of result (DNS_OK): the first that starts "v=DKIM1", else the
 * first; none (record NULL) when that one is over
 * DKIM_VERIFY_KEY_RECORD_MAX bytes or holds a NUL. */
void dkim__lookup_answer(struct dkim__lookup *lk, enum dns_status status,
			 const struct dns_txt_result *result);

#endif
