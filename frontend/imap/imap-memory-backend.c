/* imap-memory-backend.c: see imap-memory-backend.h. */
#include "imap-memory-backend-private.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "mail-error.h"
#include "sasl.h"
#include "xalloc.h"

/* ---- data ------------------------------------------------------------ */

struct mem_box *mem_box_find(imap_memory_backend *mb, const char *user, const char *name,
			     int create)
{
	for (struct mem_box *b = mb->boxes; b != NULL; b = b->next) {
		if (strcmp(b->user, user) == 0 && strcmp(b->name, name) == 0)
			return b;
	}
	if (!create)
		return NULL;
	struct mem_box *b = xcalloc(1, sizeof(*b));
	b->user = xstrdup(user);
	b->name = xstrdup(name);
	b->uidvalidity = 1700000000u;
	b->uidnext = 1;
	b->next = mb->boxes;
	mb->boxes = b;
	return b;
}

struct mem_msg *mem_msg_find(struct mem_box *b, uint32_t uid)
{
	for (size_t i = 0; i < b->n_msgs; i++) {
		if (b->msgs[i].uid == uid)
			return &b->msgs[i];
	}
	return NULL;
}

int mem_msg_flag_index(const struct mem_msg *m, const char *flag)
{
	for (size_t i = 0; i < m->n_flags; i++) {
		if (strcasecmp(m->flags[i], flag) == 0)
			return (int)i;
	}
	return -1;
}

void mem_msg_flag_add(struct mem_msg *m, const char *flag)
{
	if (mem_msg_flag_index(m, flag) >= 0)
		return;
	m->flags = xrealloc(m->flags, (m->n_flags + 1) * sizeof(*m->flags));
	m->flags[m->n_flags++] = xstrdup(flag);
}

static void mem_msg_flag_remove(struct mem_msg *m, const char *flag)
{
	int i = mem_msg_flag_index(m, flag);
	if (i < 0)
		return;
	free(m->flags[i]);
	m->flags[i] = m->flags[--m->n_flags];
}

void mem_msg_free(struct mem_msg *m)
{
	for (size_t i = 0; i < m->n_flags; i++)
		free(m->flags[i]);
	free(m->flags);
	free(m->body);
	mime_result_free(&m->mime);
}

uint64_t mem_box_bump(struct mem_box *b)
{
	b->notify = 1;
	return ++b->highest_modseq;
}

void mem_box_log_expunge(struct mem_box *b, uint32_t uid, uint64_t modseq)
{
	if (b->n_expunged == b->expunged_cap) {
		b->expunged_cap = b->expunged_cap == 0 ? 16 : b->expunged_cap * 2;
		b->expunged = xrealloc(b->expunged, b->expunged_cap * sizeof(*b->expunged));
	}
	b->expunged[b->n_expunged++] = (struct mem_expunged){ uid, modseq };
}

void mem_msg_info(const struct mem_msg *m, struct imap_msg_info *info)
{
	info->uid = m->uid;
	info->size = m->len;
	info->internal_date_ms = m->date;
	info->flags = (const char *const *)m->flags;
	info->n_flags = m->n_flags;
	info->modseq = m->modseq;
}

static struct mem_sub *mem_sub_find(imap_memory_backend *mb, const char *user, const char *name)
{
	for (struct mem_sub *x = mb->subs; x != NULL; x = x->next) {
		if (strcmp(x->user, user) == 0 && strcmp(x->name, name) == 0)
			return x;
	}
	return NULL;
}

/* Every field of imap_mailbox_info for b (name borrowed from b). */
static void mem_box_info(imap_memory_backend *mb, const struct mem_box *b,
			 struct imap_mailbox_info *info)
{
	memset(info, 0, sizeof(*info));
	info->name = b->name;
	info->uidvalidity = b->uidvalidity;
	info->uidnext = b->uidnext;
	info->exists = (uint32_t)b->n_msgs;
	info->highest_modseq = b->highest_modseq;
	for (size_t i = 0; i < b->n_msgs; i++) {
		const struct mem_msg *m = &b->msgs[i];
		if (mem_msg_flag_index(m, "\\Seen") < 0)
			info->unseen++;
		if (mem_msg_flag_index(m, "\\Deleted") >= 0)
			info->deleted++;
		info->size += m->len;
	}
	info->attrs = b->special_use;
	if (mem_sub_find(mb, b->user, b->name) != NULL)
		info->attrs |= IMAP_MBOX_SUBSCRIBED;
}

imap_memory_backend *imap_memory_backend_create(uv_loop_t *loop)
{
	imap_memory_backend *mb = xcalloc(1, sizeof(*mb));
	mb->loop = loop;
	mb->meta_page = 100;
	mb->next_uidvalidity = 1700000100u;
	return mb;
}

void imap_memory_backend_destroy(imap_memory_backend **mbp)
{
	imap_memory_backend *mb = *mbp;
	if (mb == NULL)
		return;
	while (mb->users != NULL) {
		struct mem_user *u = mb->users;
		mb->users = u->next;
		free(u->user);
		free(u->password);
		free(u);
	}
	while (mb->boxes != NULL) {
		struct mem_box *b = mb->boxes;
		mb->boxes = b->next;
		for (size_t i = 0; i < b->n_msgs; i++)
			mem_msg_free(&b->msgs[i]);
		free(b->msgs);
		free(b->expunged);
		free(b->user);
		free(b->name);
		free(b);
	}
	while (mb->watches != NULL) {
		struct imap_backend_watch *w = mb->watches;
		mb->watches = w->next;
		free(w->user);
		free(w->mailbox);
		free(w);
	}
	free(mb->last_search);
	while (mb->subs != NULL) {
		struct mem_sub *sub = mb->subs;
		mb->subs = sub->next;
		free(sub->user);
		free(sub->name);
		free(sub);
	}
	free(mb);
	*mbp = NULL;
}

void imap_memory_backend_set_delay(imap_memory_backend *mb, uint64_t delay_ms)
{
	mb->delay_ms = delay_ms;
}

void imap_memory_backend_set_quota(imap_memory_backend *mb, const struct imap_quota *q)
{
	memset(&mb->quota, 0, sizeof mb->quota);
	if (q != NULL)
		mb->quota = *q;
}

void imap_memory_backend_set_failure(imap_memory_backend *mb, int err)
{
	mb->failure = err;
}

void imap_memory_backend_set_max_message_size(imap_memory_backend *mb, size_t max)
{
	mb->max_message_size = max;
}

int imap_memory_backend_message(imap_memory_backend *mb, const char *user, const char *mailbox,
				uint32_t uid, const void **data_r, size_t *len_r,
				int64_t *internal_date_ms_r)
{
	struct mem_box *b = mem_box_find(mb, user, mailbox, 0);
	struct mem_msg *m = b == NULL ? NULL : mem_msg_find(b, uid);
	if (m == NULL)
		return -1;
	*data_r = m->body;
	*len_r = m->len;
	*internal_date_ms_r = m->date;
	return 0;
}

uint32_t imap_memory_backend_uidvalidity(imap_memory_backend *mb, const char *user,
					 const char *mailbox)
{
	struct mem_box *b = mem_box_find(mb, user, mailbox, 0);
	return b == NULL ? 0 : b->uidvalidity;
}

void imap_memory_backend_add_user(imap_memory_backend *mb, const char *user,
				  const char *password)
{
	struct mem_user *u = xcalloc(1, sizeof(*u));
	u->user = xstrdup(user);
	u->password = xstrdup(password);
	u->next = mb->users;
	mb->users = u;
}

uint32_t imap_memory_backend_add_message(imap_memory_backend *mb, const char *user,
					 const char *mailbox, const void *body, size_t len,
					 const char *flags, int64_t internal_date_ms)
{
	struct mem_box *b = mem_box_find(mb, user, mailbox, 1);
	if (b->n_msgs == b->cap) {
		b->cap = b->cap == 0 ? 8 : b->cap * 2;
		b->msgs = xrealloc(b->msgs, b->cap * sizeof(*b->msgs));
	}
	struct mem_msg *m = &b->msgs[b->n_msgs++];
	memset(m, 0, sizeof(*m));
	m->uid = b->uidnext++;
	m->modseq = mem_box_bump(b);
	m->body = xmalloc(len > 0 ? len : 1);
	memcpy(m->body, body, len);
	m->len = len;
	m->date = internal_date_ms;
	char *copy = xstrdup(flags != NULL ? flags : ""), *save = NULL;
	for (char *f = strtok_r(copy, " ", &save); f != NULL; f = strtok_r(NULL, " ", &save))
		mem_msg_flag_add(m, f);
	free(copy);
	return m->uid;
}

int imap_memory_backend_count(imap_memory_backend *mb, const char *user, const char *mailbox)
{
	struct mem_box *b = mem_box_find(mb, user, mailbox, 0);
	return b == NULL ? -1 : (int)b->n_msgs;
}

int imap_memory_backend_has_flag(imap_memory_backend *mb, const char *user,
				 const char *mailbox, uint32_t uid, const char *flag)
{
	struct mem_box *b = mem_box_find(mb, user, mailbox, 0);
	struct mem_msg *m = b == NULL ? NULL : mem_msg_find(b, uid);
	if (m == NULL)
		return -1;
	return mem_msg_flag_index(m, flag) >= 0;
}

/* ---- deferred operations --------------------------------------------- */

static void mem_op_free_cb(uv_handle_t *handle)
{
	struct mem_op *op = handle->data;
	free(op->user);
	free(op->mailbox);
	if (op->password != NULL)
		xfree_secret(op->password, strlen(op->password));
	free(op->uids);
	for (size_t i = 0; i < op->n_flags; i++)
		free(op->flags[i]);
	free(op->flags);
	free(op->to);
	for (size_t i = 0; i < op->n_msgs; i++) {
		free((void *)op->msgs[i].data);
		for (size_t f = 0; f < op->msgs[i].n_flags; f++)
			free((void *)op->msgs[i].flags[f]);
		free((void *)op->msgs[i].flags);
	}
	free(op->msgs);
	mem_op_free_extra(op);
	free(op);
}

/* 1 when uid is among op's uids, or op has none (all). */
static int mem_op_has_uid(const struct mem_op *op, uint32_t uid)
{
	for (size_t i = 0; i < op->n_uids; i++) {
		if (op->uids[i] == uid)
			return 1;
	}
	return op->n_uids == 0;
}

static void mem_op_run(struct mem_op *op)
{
	imap_memory_backend *mb = op->mb;
	int fail = mb->failure;
	struct mem_box *b = NULL;

	if (op->mailbox != NULL)
		b = mem_box_find(mb, op->user, op->mailbox, strcmp(op->mailbox, "INBOX") == 0);
	switch (op->kind) {
	case MEM_AUTH: {
		imap_backend_auth_cb *cb = op->cb;
		if (fail != MAIL_OK) {
			cb(fail, NULL, op->arg);
			return;
		}
		for (struct mem_user *u = mb->users; u != NULL; u = u->next) {
			if (strcasecmp(u->user, op->user) == 0 &&
			    strcmp(u->password, op->password) == 0) {
				cb(MAIL_OK, u->user, op->arg);
				return;
			}
		}
		cb(MAIL_ERR_PERM, NULL, op->arg);
		return;
	}
	case MEM_SCRAM: {
		imap_backend_scram_cb *cb = op->cb;
		for (struct mem_user *u = mb->users; fail == MAIL_OK && u != NULL; u = u->next) {
			if (strcasecmp(u->user, op->user) != 0)
				continue;
			/* keys as a directory would store them (fixed salt) */
			struct sasl_scram_keys keys;
			static const uint8_t salt[] = "memory backend..";
			sasl_scram_keys_derive(u->password, strlen(u->password), salt, 16,
					       SASL_SCRAM_ITERATIONS, &keys);
			cb(MAIL_OK, u->user, &keys, op->arg);
			return;
		}
		cb(fail != MAIL_OK ? fail : MAIL_ERR_PERM, NULL, NULL, op->arg);
		return;
	}
	case MEM_LIST: {
		imap_backend_list_cb *cb = op->cb;
		if (fail != MAIL_OK) {
			cb(fail, NULL, 0, op->arg);
			return;
		}
		(void)mem_box_find(mb, op->user, "INBOX", 1); /* INBOX always exists */
		size_t n = 0;
		for (struct mem_box *x = mb->boxes; x != NULL; x = x->next)
			n++;
		for (struct mem_sub *x = mb->subs; x != NULL; x = x->next)
			n++;
		struct imap_mailbox_info *infos = xcalloc(n + 1, sizeof(*infos));
		n = 0;
		for (struct mem_box *x = mb->boxes; x != NULL; x = x->next) {
			if (strcmp(x->user, op->user) == 0)
				mem_box_info(mb, x, &infos[n++]);
		}
		/* subscriptions to names that do not exist (RFC 5258 \NonExistent) */
		for (struct mem_sub *x = mb->subs; x != NULL; x = x->next) {
			if (strcmp(x->user, op->user) != 0 ||
			    mem_box_find(mb, op->user, x->name, 0) != NULL)
				continue;
			infos[n].name = x->name;
			infos[n].attrs = IMAP_MBOX_SUBSCRIBED | IMAP_MBOX_NONEXISTENT;
			n++;
		}
		cb(MAIL_OK, infos, n, op->arg);
		free(infos);
		return;
	}
	case MEM_SELECT: {
		imap_backend_select_cb *cb = op->cb;
		if (fail != MAIL_OK || b == NULL) {
			cb(fail != MAIL_OK ? fail : MAIL_ERR_NOT_FOUND, NULL, NULL, 0, op->arg);
			return;
		}
		struct imap_mailbox_info box = { .name = b->name,
						 .uidvalidity = b->uidvalidity,
						 .uidnext = b->uidnext,
						 .exists = (uint32_t)b->n_msgs };
		struct imap_msg_info *msgs = xcalloc(b->n_msgs + 1, sizeof(*msgs));
		for (size_t i = 0; i < b->n_msgs; i++)
			mem_msg_info(&b->msgs[i], &msgs[i]);
		cb(MAIL_OK, &box, msgs, b->n_msgs, op->arg);
		free(msgs);
		return;
	}
	case MEM_FETCH: {
		imap_backend_fetch_cb *cb = op->cb;
		struct mem_msg *m = b == NULL ? NULL : mem_msg_find(b, op->uid);
		if (fail != MAIL_OK || m == NULL) {
			cb(fail != MAIL_OK ? fail : MAIL_ERR_NOT_FOUND, NULL, NULL, 0, op->arg);
			return;
		}
		struct imap_msg_info info;
		mem_msg_info(m, &info);
		cb(MAIL_OK, &info, m->body, m->len, op->arg);
		return;
	}
	case MEM_STORE: {
		imap_backend_flags_cb *cb = op->cb;
		if (fail != MAIL_OK || b == NULL) {
			cb(fail != MAIL_OK ? fail : MAIL_ERR_NOT_FOUND, NULL, 0, op->arg);
			return;
		}
		struct imap_msg_info *infos = xcalloc(op->n_uids + 1, sizeof(*infos));
		size_t n = 0;
		uint64_t modseq = op->n_uids > 0 ? mem_box_bump(b) : 0;
		for (size_t i = 0; i < op->n_uids; i++) {
			struct mem_msg *m = mem_msg_find(b, op->uids[i]);
			if (m == NULL)
				continue;
			m->modseq = modseq;
			if (op->mode == IMAP_FLAGS_SET) {
				while (m->n_flags > 0)
					mem_msg_flag_remove(m, m->flags[0]);
			}
			for (size_t f = 0; f < op->n_flags; f++) {
				if (op->mode == IMAP_FLAGS_REMOVE)
					mem_msg_flag_remove(m, op->flags[f]);
				else
					mem_msg_flag_add(m, op->flags[f]);
			}
			mem_msg_info(m, &infos[n++]);
		}
		cb(MAIL_OK, infos, n, op->arg);
		free(infos);
		return;
	}
	case MEM_CALL:
		op->run(op);
		return;
	case MEM_EXPUNGE: {
		imap_backend_expunge_cb *cb = op->cb;
		if (fail != MAIL_OK || b == NULL) {
			cb(fail != MAIL_OK ? fail : MAIL_ERR_NOT_FOUND, NULL, 0, 0, op->arg);
			return;
		}
		uint32_t *uids = xcalloc(b->n_msgs + 1, sizeof(*uids));
		size_t n = 0, out = 0;
		uint64_t modseq = 0;
		for (size_t i = 0; i < b->n_msgs; i++) {
			if (mem_msg_flag_index(&b->msgs[i], "\\Deleted") >= 0 &&
			    mem_op_has_uid(op, b->msgs[i].uid)) {
				if (modseq == 0)
					modseq = mem_box_bump(b);
				mem_box_log_expunge(b, b->msgs[i].uid, modseq);
				uids[n++] = b->msgs[i].uid;
				mem_msg_free(&b->msgs[i]);
			} else {
				b->msgs[out++] = b->msgs[i];
			}
		}
		b->n_msgs = out;
		cb(MAIL_OK, uids, n, 0, op->arg);
		free(uids);
		return;
	}
	}
}

static void mem_op_timer_cb(uv_timer_t *timer)
{
	struct mem_op *op = timer->data;
	if (op->run != NULL)
		op->run(op);
	else
		mem_op_run(op);
	mem_notify_flush(op->mb);
	uv_close((uv_handle_t *)&op->timer, mem_op_free_cb);
}

struct mem_op *mem_op_new(void *ctx, enum mem_op_kind kind, const char *user,
			  const char *mailbox, void *cb, void *arg)
{
	struct mem_op *op = xcalloc(1, sizeof(*op));
	op->mb = ctx;
	op->kind = kind;
	op->user = xstrdup(user);
	op->mailbox = mailbox != NULL ? xstrdup(mailbox) : NULL;
	op->cb = cb;
	op->arg = arg;
	return op;
}

void mem_op_start(struct mem_op *op)
{
	uv_timer_init(op->mb->loop, &op->timer);
	op->timer.data = op;
	uv_timer_start(&op->timer, mem_op_timer_cb, op->mb->delay_ms, 0);
}

static void mem_authenticate(void *ctx, const char *user, const char *password,
			     imap_backend_auth_cb *cb, void *arg)
{
	struct mem_op *op = mem_op_new(ctx, MEM_AUTH, user, NULL, cb, arg);
	op->password = xstrdup(password);
	mem_op_start(op);
}

static void mem_scram_keys(void *ctx, const char *user, imap_backend_scram_cb *cb, void *arg)
{
	mem_op_start(mem_op_new(ctx, MEM_SCRAM, user, NULL, (void *)cb, arg));
}

static void mem_list(void *ctx, const char *user, imap_backend_list_cb *cb, void *arg)
{
	mem_op_start(mem_op_new(ctx, MEM_LIST, user, NULL, cb, arg));
}

static void mem_select(void *ctx, const char *user, const char *mailbox,
		       imap_backend_select_cb *cb, void *arg)
{
	mem_op_start(mem_op_new(ctx, MEM_SELECT, user, mailbox, cb, arg));
}

static void mem_fetch(void *ctx, const char *user, const char *mailbox, uint32_t uid,
		      imap_backend_fetch_cb *cb, void *arg)
{
	struct mem_op *op = mem_op_new(ctx, MEM_FETCH, user, mailbox, cb, arg);
	op->uid = uid;
	mem_op_start(op);
}

static void mem_op_set_uids(struct mem_op *op, const uint32_t *uids, size_t n_uids)
{
	op->uids = xcalloc(n_uids + 1, sizeof(*op->uids));
	if (n_uids > 0)
		memcpy(op->uids, uids, n_uids * sizeof(*uids));
	op->n_uids = n_uids;
}

static void mem_store_flags(void *ctx, const char *user, const char *mailbox,
			    const uint32_t *uids, size_t n_uids, enum imap_flag_mode mode,
			    const char *const *flags, size_t n_flags, imap_backend_flags_cb *cb,
			    void *arg)
{
	struct mem_op *op = mem_op_new(ctx, MEM_STORE, user, mailbox, cb, arg);
	mem_op_set_uids(op, uids, n_uids);
	op->mode = mode;
	op->flags = xcalloc(n_flags + 1, sizeof(*op->flags));
	for (size_t i = 0; i < n_flags; i++)
		op->flags[i] = xstrdup(flags[i]);
	op->n_flags = n_flags;
	mem_op_start(op);
}

static void mem_expunge(void *ctx, const char *user, const char *mailbox, const uint32_t *uids,
			size_t n_uids, imap_backend_expunge_cb *cb, void *arg)
{
	struct mem_op *op = mem_op_new(ctx, MEM_EXPUNGE, user, mailbox, cb, arg);
	mem_op_set_uids(op, uids, n_uids);
	mem_op_start(op);
}

/* ---- mailbox-level calls (CREATE, DELETE, RENAME, SUBSCRIBE, STATUS,
 * APPEND): each runs as a MEM_CALL op ---------------------------------- */

static int mem_name_is_inbox(const char *name)
{
	return strcmp(name, "INBOX") == 0;
}

/* Is child below parent ("a/b" below "a")? */
static int mem_name_below(const char *child, const char *parent)
{
	size_t n = strlen(parent);
	return strncmp(child, parent, n) == 0 && child[n] == '/';
}

static struct mem_box *mem_box_new(imap_memory_backend *mb, const char *user, const char *name)
{
	struct mem_box *b = mem_box_find(mb, user, name, 1);
	b->uidvalidity = mb->next_uidvalidity++;
	return b;
}

/* The parents of name that do not exist yet ("a", "a/b" of "a/b/c"). */
static void mem_box_make_parents(imap_memory_backend *mb, const char *user, const char *name)
{
	char *copy = xstrdup(name);
	for (char *p = strchr(copy, '/'); p != NULL; p = strchr(p + 1, '/')) {
		*p = '\0';
		if (mem_box_find(mb, user, copy, 0) == NULL)
			mem_box_new(mb, user, copy);
		*p = '/';
	}
	free(copy);
}

static void mem_run_create(struct mem_op *op)
{
	imap_memory_backend *mb = op->mb;
	imap_backend_status_cb *cb = op->cb;
	int status = mb->failure;
	if (status == MAIL_OK) {
		if (mem_name_is_inbox(op->mailbox) ||
		    mem_box_find(mb, op->user, op->mailbox, 0) != NULL) {
			status = MAIL_ERR_EXISTS;
		} else {
			mem_box_make_parents(mb, op->user, op->mailbox);
			mem_box_new(mb, op->user, op->mailbox)->special_use = op->special_use;
		}
	}
	cb(status, op->arg);
}

static void mem_box_free(struct mem_box *b)
{
	for (size_t i = 0; i < b->n_msgs; i++)
		mem_msg_free(&b->msgs[i]);
	free(b->msgs);
	free(b->user);
	free(b->name);
	free(b);
}

static void mem_run_delete(struct mem_op *op)
{
	imap_memory_backend *mb = op->mb;
	imap_backend_status_cb *cb = op->cb;
	int status = mb->failure;
	struct mem_box *b = mem_box_find(mb, op->user, op->mailbox, 0);
	if (status != MAIL_OK) {
	} else if (mem_name_is_inbox(op->mailbox)) {
		status = MAIL_ERR_PERM;
	} else if (b == NULL) {
		status = MAIL_ERR_NOT_FOUND;
	} else {
		for (struct mem_box *x = mb->boxes; x != NULL; x = x->next) {
			if (strcmp(x->user, op->user) == 0 && mem_name_below(x->name, op->mailbox))
				status = MAIL_ERR_EXISTS; /* children first */
		}
	}
	if (status == MAIL_OK) {
		for (struct mem_box **pp = &mb->boxes; *pp != NULL; pp = &(*pp)->next) {
			if (*pp == b) {
				*pp = b->next;
				break;
			}
		}
		mem_box_free(b);
	}
	cb(status, op->arg);
}

/* from + rest of old, where old is from or below it. */
static char *mem_name_moved(const char *old, const char *from, const char *to)
{
	return xasprintf("%s%s", to, old + strlen(from));
}

static void mem_run_rename(struct mem_op *op)
{
	imap_memory_backend *mb = op->mb;
	imap_backend_status_cb *cb = op->cb;
	int status = mb->failure;
	const char *from = op->mailbox, *to = op->to;
	struct mem_box *b = mem_box_find(mb, op->user, from, mem_name_is_inbox(from));
	if (status != MAIL_OK) {
	} else if (b == NULL) {
		status = MAIL_ERR_NOT_FOUND;
	} else if (mem_name_is_inbox(to) || mem_box_find(mb, op->user, to, 0) != NULL) {
		status = MAIL_ERR_EXISTS;
	} else if (mem_name_below(to, from)) {
		status = MAIL_ERR_PERM;
	}
	if (status != MAIL_OK) {
		cb(status, op->arg);
		return;
	}
	mem_box_make_parents(mb, op->user, to);
	if (mem_name_is_inbox(from)) {
		/* RFC 3501 6.3.5: the messages move to a new mailbox, INBOX
		 * stays (empty), its children stay where they are */
		struct mem_box *nb = mem_box_new(mb, op->user, to);
		nb->msgs = b->msgs;
		nb->n_msgs = b->n_msgs;
		nb->cap = b->cap;
		nb->uidnext = b->uidnext;
		b->msgs = NULL;
		b->n_msgs = 0;
		b->cap = 0;
		cb(MAIL_OK, op->arg);
		return;
	}
	for (struct mem_box *x = mb->boxes; x != NULL; x = x->next) {
		if (strcmp(x->user, op->user) != 0 ||
		    (strcmp(x->name, from) != 0 && !mem_name_below(x->name, from)))
			continue;
		char *name = mem_name_moved(x->name, from, to);
		free(x->name);
		x->name = name;
	}
	/* subscriptions follow the mailboxes (as users expect) */
	for (struct mem_sub *x = mb->subs; x != NULL; x = x->next) {
		if (strcmp(x->user, op->user) != 0 ||
		    (strcmp(x->name, from) != 0 && !mem_name_below(x->name, from)))
			continue;
		char *name = mem_name_moved(x->name, from, to);
		free(x->name);
		x->name = name;
	}
	cb(MAIL_OK, op->arg);
}

static void mem_run_subscribe(struct mem_op *op)
{
	imap_memory_backend *mb = op->mb;
	imap_backend_status_cb *cb = op->cb;
	int status = mb->failure;
	struct mem_sub *sub = mem_sub_find(mb, op->user, op->mailbox);
	if (status != MAIL_OK) {
	} else if (op->on && sub == NULL) {
		sub = xcalloc(1, sizeof(*sub));
		sub->user = xstrdup(op->user);
		sub->name = xstrdup(op->mailbox);
		sub->next = mb->subs;
		mb->subs = sub;
	} else if (!op->on && sub == NULL) {
		status = MAIL_ERR_NOT_FOUND;
	} else if (!op->on) {
		for (struct mem_sub **pp = &mb->subs; *pp != NULL; pp = &(*pp)->next) {
			if (*pp == sub) {
				*pp = sub->next;
				break;
			}
		}
		free(sub->user);
		free(sub->name);
		free(sub);
	}
	cb(status, op->arg);
}

static void mem_run_status(struct mem_op *op)
{
	imap_memory_backend *mb = op->mb;
	imap_backend_mailbox_cb *cb = op->cb;
	struct mem_box *b = mem_box_find(mb, op->user, op->mailbox, mem_name_is_inbox(op->mailbox));
	if (mb->failure != MAIL_OK || b == NULL) {
		cb(mb->failure != MAIL_OK ? mb->failure : MAIL_ERR_NOT_FOUND, NULL, op->arg);
		return;
	}
	struct imap_mailbox_info info;
	mem_box_info(mb, b, &info);
	cb(MAIL_OK, &info, op->arg);
}

/* A change other sessions must learn of (APPEND). The selected-state
 * side of the engine watches mailboxes through watch()/changes(); this
 * is where the in-memory backend bumps the mailbox's modseq and tells
 * its watchers once it has them. */
static void mem_box_changed(imap_memory_backend *mb, struct mem_box *b)
{
	(void)mb;
	/* a new modseq for the messages just added (modseq 0); the
	 * watchers hear of it after the call (mem_notify_flush) */
	uint64_t modseq = mem_box_bump(b);
	for (size_t i = 0; i < b->n_msgs; i++) {
		if (b->msgs[i].modseq == 0)
			b->msgs[i].modseq = modseq;
	}
}

static void mem_run_append(struct mem_op *op)
{
	imap_memory_backend *mb = op->mb;
	imap_backend_append_cb *cb = op->cb;
	struct mem_box *b = mem_box_find(mb, op->user, op->mailbox, mem_name_is_inbox(op->mailbox));
	if (mb->failure != MAIL_OK || b == NULL) {
		cb(mb->failure != MAIL_OK ? mb->failure : MAIL_ERR_NOT_FOUND, 0, NULL, 0, 0, op->arg);
		return;
	}
	if (mb->max_message_size != 0) {
		for (size_t i = 0; i < op->n_msgs; i++) {
			if (op->msgs[i].len > mb->max_message_size) {
				/* all or nothing (RFC 3502) */
				cb(MAIL_ERR_TOO_BIG, 0, NULL, 0, 0, op->arg);
				return;
			}
		}
	}
	uint32_t *uids = xcalloc(op->n_msgs + 1, sizeof(*uids));
	int64_t now = (int64_t)time(NULL) * 1000;
	for (size_t i = 0; i < op->n_msgs; i++) {
		const struct imap_append_msg *am = &op->msgs[i];
		if (b->n_msgs == b->cap) {
			b->cap = b->cap == 0 ? 8 : b->cap * 2;
			b->msgs = xrealloc(b->msgs, b->cap * sizeof(*b->msgs));
		}
		struct mem_msg *m = &b->msgs[b->n_msgs++];
		memset(m, 0, sizeof(*m));
		m->uid = b->uidnext++;
		m->body = xmalloc(am->len > 0 ? am->len : 1);
		if (am->len > 0)
			memcpy(m->body, am->data, am->len);
		m->len = am->len;
		m->date = am->internal_date_ms != 0 ? am->internal_date_ms : now;
		for (size_t f = 0; f < am->n_flags; f++)
			mem_msg_flag_add(m, am->flags[f]);
		uids[i] = m->uid;
	}
	mem_box_changed(mb, b);
	cb(MAIL_OK, b->uidvalidity, uids, op->n_msgs, 0, op->arg);
	free(uids);
}

static void mem_call(void *ctx, mem_op_run_fn *run, const char *user, const char *mailbox,
		     void *cb, void *arg, struct mem_op **op_r)
{
	struct mem_op *op = mem_op_new(ctx, MEM_CALL, user, mailbox, cb, arg);
	op->run = run;
	*op_r = op;
}

static void mem_create(void *ctx, const char *user, const char *mailbox, unsigned special_use,
		       imap_backend_status_cb *cb, void *arg)
{
	struct mem_op *op;
	mem_call(ctx, mem_run_create, user, mailbox, cb, arg, &op);
	op->special_use = special_use;
	mem_op_start(op);
}

static void mem_delete_mailbox(void *ctx, const char *user, const char *mailbox,
			       imap_backend_status_cb *cb, void *arg)
{
	struct mem_op *op;
	mem_call(ctx, mem_run_delete, user, mailbox, cb, arg, &op);
	mem_op_start(op);
}

static void mem_rename(void *ctx, const char *user, const char *from, const char *to,
		       imap_backend_status_cb *cb, void *arg)
{
	struct mem_op *op;
	mem_call(ctx, mem_run_rename, user, from, cb, arg, &op);
	op->to = xstrdup(to);
	mem_op_start(op);
}

static void mem_subscribe(void *ctx, const char *user, const char *mailbox, int on,
			  imap_backend_status_cb *cb, void *arg)
{
	struct mem_op *op;
	mem_call(ctx, mem_run_subscribe, user, mailbox, cb, arg, &op);
	op->on = on;
	mem_op_start(op);
}

static void mem_run_quota(struct mem_op *op)
{
	imap_backend_quota_cb *cb = op->cb;
	cb(op->mb->failure, &op->mb->quota, op->arg);
}

static void mem_quota(void *ctx, const char *user, imap_backend_quota_cb *cb, void *arg)
{
	struct mem_op *op;
	mem_call(ctx, mem_run_quota, user, NULL, cb, arg, &op);
	mem_op_start(op);
}

static void mem_status(void *ctx, const char *user, const char *mailbox,
		       imap_backend_mailbox_cb *cb, void *arg)
{
	struct mem_op *op;
	mem_call(ctx, mem_run_status, user, mailbox, cb, arg, &op);
	mem_op_start(op);
}

static void mem_append(void *ctx, const char *user, const char *mailbox,
		       const struct imap_append_msg *msgs, size_t n, imap_backend_append_cb *cb,
		       void *arg)
{
	struct mem_op *op;
	mem_call(ctx, mem_run_append, user, mailbox, cb, arg, &op);
	op->msgs = xcalloc(n + 1, sizeof(*op->msgs));
	op->n_msgs = n;
	for (size_t i = 0; i < n; i++) {
		struct imap_append_msg *m = &op->msgs[i];
		uint8_t *data = xmalloc(msgs[i].len > 0 ? msgs[i].len : 1);
		if (msgs[i].len > 0)
			memcpy(data, msgs[i].data, msgs[i].len);
		m->data = data;
		m->len = msgs[i].len;
		m->internal_date_ms = msgs[i].internal_date_ms;
		const char **flags = xcalloc(msgs[i].n_flags + 1, sizeof(*flags));
		for (size_t f = 0; f < msgs[i].n_flags; f++)
			flags[f] = xstrdup(msgs[i].flags[f]);
		m->flags = flags;
		m->n_flags = msgs[i].n_flags;
	}
	mem_op_start(op);
}

const struct imap_backend imap_memory_backend_vfuncs = {
	.authenticate = mem_authenticate,
	.scram_keys = mem_scram_keys,
	.list = mem_list,
	.select = mem_select,
	.fetch = mem_fetch,
	.store_flags = mem_store_flags,
	.expunge = mem_expunge,
	.open = mem_open,
	.fetch_meta = mem_fetch_meta,
	.fetch_range = mem_fetch_range,
	.copy = mem_copy,
	.search = mem_search,
	.sort = mem_sort,
	.thread = mem_thread,
	.changes = mem_changes,
	.watch = mem_watch,
	.unwatch = mem_unwatch,
	.create = mem_create,
	.delete_mailbox = mem_delete_mailbox,
	.rename = mem_rename,
	.subscribe = mem_subscribe,
	.status = mem_status,
	.quota = mem_quota,
	.append = mem_append,
};
