/* dkim-verify.c: the verifier and its jobs: loop, thread pool and DNS
 * around the steps of dkim-verify-run.c (dkim-verify.h).
 *
 * A job is in one phase at a time:
 *   HEADER  on the pool: dkim__run_header();
 *   KEYS    on the loop: its lookups in flight (pending counts them);
 *   BODY    on the pool: dkim__run_body();
 *   EARLY   on the pool doing nothing: an answer known at start (too
 *           big), delivered from the loop like any other.
 * in_pool says a uv_work_t is queued or running. The pool side reads the
 * message only inside its read guard (guard_lock + cancelled), so
 * cancelling is: take the lock, set cancelled, drop the lock; from then on
 * the pool side reads nothing, and its completion frees the job on the
 * loop (dropped: no callback). A job in KEYS is freed at once after its
 * lookups are withdrawn.
 *
 * Each job holds a reference on its verifier: libopendkim's DKIM_LIB is
 * closed only after the last job that may use it has completed.
 */
#include "dkim-verify.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth-results.h"
#include "dkim-verify-private.h"
#include "log.h"
#include "mail-error.h"
#include "xalloc.h"

enum dkim__phase { DKIM__EARLY, DKIM__HEADER, DKIM__KEYS, DKIM__BODY };

struct dkim_verifier {
	uv_loop_t *loop;
	dns_resolver *resolver;
	struct dkim_verify_settings set;
	DKIM_LIB *lib;
	unsigned refs; /* the owner's, and one per job */
	dkim_verify_job *jobs;
};

struct dkim_verify_job {
	dkim_verifier *v;
	uv_work_t work;
	enum dkim__phase phase;
	int in_pool;
	int dropped; /* cancelled: freed by its completion, no callback */
	pthread_mutex_t guard_lock;
	int cancelled; /* under guard_lock */
	size_t pending;
	dkim_verify_cb *cb;
	void *arg;
	struct dkim__run run;
	dkim_verify_job *prev, *next;
};

struct dkim_verify_settings dkim_verify_settings_default(void)
{
	return (struct dkim_verify_settings){
		.max_signatures = DKIM_VERIFY_SIGS_DEFAULT,
		.max_message_bytes = DKIM_VERIFY_MESSAGE_DEFAULT,
		.max_header_fields = DKIM_VERIFY_FIELDS_DEFAULT,
		.min_rsa_bits = DKIM_VERIFY_RSA_BITS_DEFAULT,
		.partial_body_policy = 0,
	};
}

int dkim_verifier_create(uv_loop_t *loop, dns_resolver *resolver,
			 const struct dkim_verify_settings *settings, dkim_verifier **verifier_r,
			 const char **error_r)
{
	*verifier_r = NULL;
	struct dkim_verify_settings set =
		settings != NULL ? *settings : dkim_verify_settings_default();
	if (set.max_signatures < DKIM_VERIFY_SIGS_MIN ||
	    set.max_signatures > DKIM_VERIFY_SIGS_MAX) {
		*error_r = "max_signatures out of range (1..64)";
		return MAIL_ERR_PARAMS;
	}
	if (set.max_message_bytes < DKIM_VERIFY_MESSAGE_MIN ||
	    set.max_message_bytes > DKIM_VERIFY_MESSAGE_MAX) {
		*error_r = "max_message_bytes out of range (1 KiB..1 GiB)";
		return MAIL_ERR_PARAMS;
	}
	if (set.max_header_fields < DKIM_VERIFY_FIELDS_MIN ||
	    set.max_header_fields > DKIM_VERIFY_FIELDS_MAX) {
		*error_r = "max_header_fields out of range (16..100000)";
		return MAIL_ERR_PARAMS;
	}
	if (set.min_rsa_bits < DKIM_VERIFY_RSA_BITS_MIN ||
	    set.min_rsa_bits > DKIM_VERIFY_RSA_BITS_MAX) {
		*error_r = "min_rsa_bits out of range (1024..4096)";
		return MAIL_ERR_PARAMS;
	}
	dkim_verifier *v = xcalloc(1, sizeof *v);
	v->set = set;
	v->lib = dkim__lib_new(&v->set); /* reads v->set for its life */
	if (v->lib == NULL) {
		free(v);
		*error_r = "libopendkim cannot be set up (or lacks SHA-256 or Ed25519)";
		return MAIL_ERR_INTERNAL;
	}
	v->loop = loop;
	v->resolver = resolver;
	v->refs = 1;
	*verifier_r = v;
	return MAIL_OK;
}

static void dkim__unref(dkim_verifier *v)
{
	if (--v->refs > 0)
		return;
	dkim_close(v->lib);
	free(v);
}

static void dkim__unlink(dkim_verify_job *j)
{
	dkim_verifier *v = j->v;
	if (j->prev != NULL)
		j->prev->next = j->next;
	else if (v->jobs == j)
		v->jobs = j->next;
	if (j->next != NULL)
		j->next->prev = j->prev;
	j->prev = j->next = NULL;
}

static void dkim__free(dkim_verify_job *j)
{
	dkim_verifier *v = j->v;
	dkim__run_clear(&j->run);
	pthread_mutex_destroy(&j->guard_lock);
	free(j);
	dkim__unref(v);
}

void dkim_verifier_destroy(dkim_verifier **verifier)
{
	dkim_verifier *v = *verifier;
	if (v == NULL)
		return;
	while (v->jobs != NULL) {
		dkim_verify_job *j = v->jobs;
		dkim_verify_cancel(&j);
	}
	*verifier = NULL;
	dkim__unref(v);
}

/* ---- the read guard (pool side) ----------------------------------------------------- */

static int dkim__guard_begin(void *guard)
{
	dkim_verify_job *j = guard;
	pthread_mutex_lock(&j->guard_lock);
	if (j->cancelled) {
		pthread_mutex_unlock(&j->guard_lock);
		return 0;
	}
	return 1;
}

static void dkim__guard_end(void *guard)
{
	dkim_verify_job *j = guard;
	pthread_mutex_unlock(&j->guard_lock);
}

/* ---- phases --------------------------------------------------------------------------- */

static void dkim__work_cb(uv_work_t *w)
{
	dkim_verify_job *j = w->data;
	if (j->phase == DKIM__HEADER)
		dkim__run_header(&j->run);
	else if (j->phase == DKIM__BODY)
		dkim__run_body(&j->run);
}

static void dkim__after_cb(uv_work_t *w, int status);

static void dkim__queue(dkim_verify_job *j, enum dkim__phase phase)
{
	j->phase = phase;
	j->in_pool = 1;
	uv_queue_work(j->v->loop, &j->work, dkim__work_cb, dkim__after_cb);
}

/* Deliver the answer and free the job. The callback may destroy the
 * verifier: the job is unlinked first and holds its reference until
 * freed. */
static void dkim__finish(dkim_verify_job *j)
{
	struct dkim__run *r = &j->run;
	dkim__unlink(j);
	if (r->status != MAIL_OK) {
		if (r->status == MAIL_ERR_INTERNAL)
			log_event(LOG_ERROR, "dkim", "event=dkim_verify_failed id=%s error=\"%s\"",
				  r->id, r->error != NULL ? r->error : "?");
		j->cb(r->status, NULL, j->arg);
		dkim__free(j);
		return;
	}
	struct dkim_verify_sig *sigs = NULL;
	if (r->n_slots > 0)
		sigs = xcalloc(r->n_slots, sizeof *sigs);
	for (size_t k = 0; k < r->n_slots; k++)
		sigs[k] = r->slots[k].out;
	struct dkim_verify_result res = { .sigs = sigs, .count = r->n_slots,
					  .unchecked = r->unchecked };
	j->cb(MAIL_OK, &res, j->arg);
	free(sigs);
	dkim__free(j);
}

static void dkim__txt_cb(enum dns_status status, const struct dns_txt_result *result, void *arg)
{
	struct dkim__lookup *lk = arg;
	dkim_verify_job *j = lk->owner;
	lk->req = NULL;
	dkim__lookup_answer(lk, status, result);
	if (--j->pending > 0)
		return;
	dkim__run_keys(&j->run);
	if (dkim__run_needs_body(&j->run))
		dkim__queue(j, DKIM__BODY);
	else
		dkim__finish(j);
}

static void dkim__after_cb(uv_work_t *w, int status)
{
	(void)status; /* never uv_cancel()ed */
	dkim_verify_job *j = w->data;
	j->in_pool = 0;
	if (j->dropped) {
		dkim__free(j);
		return;
	}
	struct dkim__run *r = &j->run;
	if (j->phase != DKIM__HEADER || r->status != MAIL_OK) {
		dkim__finish(j);
		return;
	}
	dkim__run_plan(r);
	if (r->n_lookups == 0) {
		/* nothing to look up: every signature is decided (or none) */
		if (dkim__run_needs_body(r))
			dkim__queue(j, DKIM__BODY);
		else
			dkim__finish(j);
		return;
	}
	j->phase = DKIM__KEYS;
	j->pending = r->n_lookups;
	for (size_t i = 0; i < r->n_lookups; i++) {
		r->lookups[i].owner = j;
		r->lookups[i].req = dns_resolve_txt(j->v->resolver, r->lookups[i].name,
						    dkim__txt_cb, &r->lookups[i]);
	}
}

dkim_verify_job *dkim_verify_start(dkim_verifier *v, const void *msg, size_t len,
				   const char *id, dkim_verify_cb *cb, void *arg)
{
	dkim_verify_job *j = xcalloc(1, sizeof *j);
	j->v = v;
	j->work.data = j;
	j->cb = cb;
	j->arg = arg;
	pthread_mutex_init(&j->guard_lock, NULL);
	dkim__run_init(&j->run, v->lib, &v->set, msg, len, id);
	j->run.read_begin = dkim__guard_begin;
	j->run.read_end = dkim__guard_end;
	j->run.guard = j;
	v->refs++;
	j->next = v->jobs;
	if (v->jobs != NULL)
		v->jobs->prev = j;
	v->jobs = j;
	if (len > v->set.max_message_bytes) {
		j->run.status = MAIL_ERR_TOO_BIG;
		j->run.error = "message too big to verify";
		dkim__queue(j, DKIM__EARLY);
	} else {
		dkim__queue(j, DKIM__HEADER);
	}
	return j;
}

void dkim_verify_cancel(dkim_verify_job **job)
{
	dkim_verify_job *j = *job;
	if (j == NULL)
		return;
	*job = NULL;
	dkim__unlink(j);
	if (j->in_pool) {
		pthread_mutex_lock(&j->guard_lock);
		j->cancelled = 1;
		pthread_mutex_unlock(&j->guard_lock);
		j->dropped = 1;
		return;
	}
	for (size_t i = 0; i < j->run.n_lookups; i++)
		dns_request_cancel(&j->run.lookups[i].req);
	dkim__free(j);
}

/* ---- Authentication-Results ------------------------------------------------------------- */

void dkim_verify_sig_authres(const struct dkim_verify_sig *sig, struct authres_method *m,
			     char *comment_buf, size_t comment_size)
{
	memset(m, 0, sizeof *m);
	m->method = "dkim";
	comment_buf[0] = '\0';
	if (sig == NULL) {
		m->result = "none";
		return;
	}
	m->result = dkim_verify_status_name(sig->status);
	if (sig->reason != DKIM_VERIFY_OK)
		snprintf(comment_buf, comment_size, "%s", dkim_verify_reason_text(sig->reason));
	else if (sig->unsigned_bytes > 0)
		snprintf(comment_buf, comment_size, "l=%zd, %llu body bytes unsigned", sig->length,
			 (unsigned long long)sig->unsigned_bytes);
	if (comment_buf[0] != '\0')
		m->comment = comment_buf;
	m->props[0] = (struct authres_prop){ "header", "d", sig->domain };
	m->props[1] = (struct authres_prop){ "header", "i", sig->identity };
	m->props[2] = (struct authres_prop){ "header", "s", sig->selector };
	m->props[3] = (struct authres_prop){ "header", "a", sig->algorithm };
	m->props[4] = (struct authres_prop){ "header", "b", sig->b };
	m->n_props = 5;
}
