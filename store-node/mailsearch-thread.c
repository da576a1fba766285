/* mailsearch-thread.c: THREAD=ORDEREDSUBJECT and THREAD=REFERENCES
 * (RFC 5256 section 3), and the fields they need from a message.
 *
 * The REFERENCES tree lives in one array of nodes linked by index (parent,
 * first and last child, previous and next sibling), so links are made and
 * broken in O(1) and the array can grow. Node 0 is the root of step 2.
 * Every walk over the tree is iterative (threads can be as deep as the
 * mailbox is long); the only upward walk is the loop check of step 1.
 */
#include "mailsearch-private.h"

#include "util.h"
#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

#define NONE UINT32_MAX
#define ROOT 0u

/* ---- fields of one message ---------------------------------------------------- */

struct first_value {
	buf *out;
	int seen;
};

static int first_value_cb(void *arg, const char *name, const char *text, size_t len)
{
	(void)name;
	struct first_value *fv = arg;
	size_t n = len;
	if (n > MAILSEARCH_HEADER_MAX)
		n = mailsearch__utf8_cut(text, MAILSEARCH_HEADER_MAX);
	buf_append(fv->out, text, n);
	fv->seen = 1;
	return 1;
}

/* The first field `name`: 1 and its value in out, 0 none, -1 unreadable. */
static int header_first(const struct mailsearch_msg *msg, const char *name, buf *out)
{
	struct first_value fv = {.out = out, .seen = 0};
	if (msg->header == NULL || msg->header(msg->ctx, name, first_value_cb, &fv) < 0)
		return -1;
	return fv.seen;
}

/* Append the last `keep` valid ids of value (all when fewer), separated by
 * spaces; or only the first one when first_only. */
static void ids_append(const char *value, size_t len, int first_only, buf *out)
{
	char id[MAILSEARCH_MSGID_MAX + 1];
	size_t id_len, pos = 0, total = 0;
	while (mailsearch__msgid_next(value, len, &pos, id, &id_len))
		total++;
	size_t skip = total > MAILSEARCH_REFS_MAX ? total - MAILSEARCH_REFS_MAX : 0;
	if (first_only)
		skip = 0;
	pos = 0;
	for (size_t i = 0; mailsearch__msgid_next(value, len, &pos, id, &id_len); i++) {
		if (i < skip)
			continue;
		if (out->len > 0)
			buf_append(out, " ", 1);
		buf_append(out, id, id_len);
		if (first_only)
			break;
	}
}

int mailsearch_thread_fields_get(const struct mailsearch_msg *msg, enum search_thread_alg alg,
				 struct mailsearch_thread_msg *t_r)
{
	memset(t_r, 0, sizeof(*t_r));
	t_r->uid = msg->uid;
	t_r->sent_ms = msg->internal_date_ms;
	buf value, subject, ids[3];
	buf_init(&value);
	buf_init(&subject);
	for (int i = 0; i < 3; i++)
		buf_init(&ids[i]);
	int r = header_first(msg, "Date", &value);
	if (r > 0)
		mailsearch_date_parse(mailsearch__buf_text(&value), value.len, &t_r->sent_ms, NULL);
	if (r >= 0) {
		buf_reset(&value);
		r = header_first(msg, "Subject", &value);
		if (r > 0) {
			mailsearch_base_subject(mailsearch__buf_text(&value), value.len, &subject,
						&t_r->is_reply);
			if (subject.len > MAILSEARCH_SORT_TEXT_MAX)
				subject.len = mailsearch__utf8_cut(mailsearch__buf_text(&subject),
								   MAILSEARCH_SORT_TEXT_MAX);
		}
	}
	static const char *const id_fields[3] = {"Message-ID", "In-Reply-To", "References"};
	int has[3] = {0, 0, 0};
	for (int i = 0; i < 3 && r >= 0 && alg == SEARCH_THREAD_REFERENCES; i++) {
		buf_reset(&value);
		r = header_first(msg, id_fields[i], &value);
		if (r > 0) {
			ids_append(mailsearch__buf_text(&value), value.len, i < 2, &ids[i]);
			has[i] = 1;
		}
	}
	if (r < 0) {
		t_r->sent_ms = msg->internal_date_ms;
		t_r->is_reply = 0;
		buf_reset(&subject);
		has[0] = has[1] = has[2] = 0;
	}
	/* one allocation: subject, then the three id strings */
	size_t total = subject.len + 1;
	for (int i = 0; i < 3; i++)
		total += ids[i].len + 1;
	char *p = xmalloc(total);
	t_r->strings_ = p;
	if (subject.len > 0)
		memcpy(p, subject.data, subject.len);
	p[subject.len] = '\0';
	t_r->base_subject = p;
	p += subject.len + 1;
	const char **dst[3] = {&t_r->message_id, &t_r->in_reply_to, &t_r->references};
	for (int i = 0; i < 3; i++) {
		if (ids[i].len > 0)
			memcpy(p, ids[i].data, ids[i].len);
		p[ids[i].len] = '\0';
		*dst[i] = has[i] ? p : NULL;
		p += ids[i].len + 1;
		buf_deinit(&ids[i]);
	}
	buf_deinit(&value);
	buf_deinit(&subject);
	return r < 0 ? -1 : 0;
}

void mailsearch_thread_fields_deinit(struct mailsearch_thread_msg *t)
{
	free(t->strings_);
	memset(t, 0, sizeof(*t));
}

/* ---- sorting helpers ------------------------------------------------------------ */

/* A sort key: sent date, then uid (the sequence order). */
struct date_key {
	int64_t sent;
	uint32_t uid;
	uint32_t item;
};

static int date_key_cmp(const void *pa, const void *pb)
{
	const struct date_key *a = pa, *b = pb;
	if (a->sent != b->sent)
		return a->sent < b->sent ? -1 : 1;
	if (a->uid != b->uid)
		return a->uid < b->uid ? -1 : 1;
	return a->item < b->item ? -1 : a->item > b->item;
}

/* ---- the result syntax ------------------------------------------------------------ */

static void append_uid(buf *out, uint32_t uid)
{
	buf_printf(out, "%u", uid);
}

/* ---- ORDEREDSUBJECT ------------------------------------------------------------- */

struct os_ctx {
	const struct mailsearch_thread_msg *msgs;
};

static int os_cmp(const void *pa, const void *pb, void *arg)
{
	const struct os_ctx *ctx = arg;
	const struct mailsearch_thread_msg *a = &ctx->msgs[*(const size_t *)pa];
	const struct mailsearch_thread_msg *b = &ctx->msgs[*(const size_t *)pb];
	int c = mailsearch__casemap_cmp(a->base_subject, b->base_subject);
	if (c != 0)
		return c;
	if (a->sent_ms != b->sent_ms)
		return a->sent_ms < b->sent_ms ? -1 : 1;
	return a->uid < b->uid ? -1 : a->uid > b->uid;
}

/* RFC 5256: sort by base subject, then sent date; split by subject; order
 * the threads by their first message's sent date. The first message is
 * the parent of all the others, which are siblings. */
static void thread_orderedsubject(const struct mailsearch_thread_msg *msgs, size_t n, buf *out)
{
	size_t *idx = xmalloc(n * sizeof(*idx));
	for (size_t i = 0; i < n; i++)
		idx[i] = i;
	struct os_ctx ctx = {.msgs = msgs};
	qsort_r(idx, n, sizeof(*idx), os_cmp, &ctx);
	/* threads: start offsets into idx */
	struct date_key *threads = xmalloc(n * sizeof(*threads));
	size_t n_threads = 0;
	for (size_t i = 0; i < n; i++) {
		if (i == 0 || !mailsearch__casemap_eq(msgs[idx[i - 1]].base_subject,
						      msgs[idx[i]].base_subject)) {
			const struct mailsearch_thread_msg *m = &msgs[idx[i]];
			threads[n_threads].sent = m->sent_ms;
			threads[n_threads].uid = m->uid;
			threads[n_threads].item = (uint32_t)i;
			n_threads++;
		}
	}
	qsort(threads, n_threads, sizeof(*threads), date_key_cmp);
	for (size_t t = 0; t < n_threads; t++) {
		size_t start = threads[t].item, end = start + 1;
		while (end < n && mailsearch__casemap_eq(msgs[idx[start]].base_subject,
							 msgs[idx[end]].base_subject))
			end++;
		buf_append(out, "(", 1);
		append_uid(out, msgs[idx[start]].uid);
		if (end - start == 2) {
			buf_append(out, " ", 1);
			append_uid(out, msgs[idx[start + 1]].uid);
		} else if (end - start > 2) {
			buf_append(out, " ", 1);
			for (size_t i = start + 1; i < end; i++) {
				buf_append(out, "(", 1);
				append_uid(out, msgs[idx[i]].uid);
				buf_append(out, ")", 1);
			}
		}
		buf_append(out, ")", 1);
	}
	free(threads);
	free(idx);
}

/* ---- REFERENCES: the tree ----------------------------------------------------------- */

struct tnode {
	uint32_t parent, first, last, prev, next;
	uint32_t msg;  /* index into msgs, NONE for a dummy */
	uint32_t dead; /* removed by pruning or merging */
};

/* message-id -> node, open addressing */
struct id_slot {
	uint64_t hash;
	uint32_t off, len; /* the id in the arena */
	uint32_t node;     /* NONE: empty slot */
};

struct tree {
	const struct mailsearch_thread_msg *msgs;
	struct tnode *nodes;
	uint32_t n_nodes, cap_nodes;
	struct id_slot *slots;
	size_t n_slots, used_slots;
	buf arena; /* the ids */
};

static uint32_t node_new(struct tree *t, uint32_t msg)
{
	if (t->n_nodes == t->cap_nodes) {
		t->cap_nodes = t->cap_nodes ? t->cap_nodes * 2 : 64;
		t->nodes = xrealloc(t->nodes, (size_t)t->cap_nodes * sizeof(*t->nodes));
	}
	struct tnode *nd = &t->nodes[t->n_nodes];
	nd->parent = nd->first = nd->last = nd->prev = nd->next = NONE;
	nd->msg = msg;
	nd->dead = 0;
	return t->n_nodes++;
}

static int is_dummy(const struct tree *t, uint32_t x)
{
	return t->nodes[x].msg == NONE;
}

static void unlink_node(struct tree *t, uint32_t x)
{
	struct tnode *nd = &t->nodes[x];
	if (nd->parent == NONE)
		return;
	struct tnode *p = &t->nodes[nd->parent];
	if (nd->prev != NONE)
		t->nodes[nd->prev].next = nd->next;
	else
		p->first = nd->next;
	if (nd->next != NONE)
		t->nodes[nd->next].prev = nd->prev;
	else
		p->last = nd->prev;
	nd->parent = nd->prev = nd->next = NONE;
}

/* Make x the last child of p (x has no parent). */
static void append_child(struct tree *t, uint32_t p, uint32_t x)
{
	struct tnode *nd = &t->nodes[x], *pn = &t->nodes[p];
	nd->parent = p;
	nd->next = NONE;
	nd->prev = pn->last;
	if (pn->last != NONE)
		t->nodes[pn->last].next = x;
	else
		pn->first = x;
	pn->last = x;
}

/* Put x (no parent) just before sibling `before`. */
static void insert_before(struct tree *t, uint32_t before, uint32_t x)
{
	struct tnode *b = &t->nodes[before], *nd = &t->nodes[x];
	nd->parent = b->parent;
	nd->next = before;
	nd->prev = b->prev;
	if (b->prev != NONE)
		t->nodes[b->prev].next = x;
	else
		t->nodes[b->parent].first = x;
	b->prev = x;
}

static uint32_t n_children(const struct tree *t, uint32_t x, uint32_t stop_at)
{
	uint32_t n = 0;
	for (uint32_t c = t->nodes[x].first; c != NONE && n < stop_at; c = t->nodes[c].next)
		n++;
	return n;
}

/* Would making a the parent of b make a loop (a is b or below b)? */
static int would_loop(const struct tree *t, uint32_t a, uint32_t b)
{
	if (a == b)
		return 1;
	if (t->nodes[b].first == NONE)
		return 0; /* b has no descendants */
	for (uint32_t x = t->nodes[a].parent; x != NONE; x = t->nodes[x].parent)
		if (x == b)
			return 1;
	return 0;
}

/* ---- REFERENCES: the id table ---------------------------------------------------- */

static struct id_slot *id_find(struct tree *t, const char *id, size_t len, uint64_t h)
{
	size_t mask = t->n_slots - 1;
	for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
		struct id_slot *s = &t->slots[i];
		if (s->node == NONE)
			return s;
		if (s->hash == h && s->len == len && memcmp(t->arena.data + s->off, id, len) == 0)
			return s;
	}
}

static void id_grow(struct tree *t)
{
	size_t old_n = t->n_slots;
	struct id_slot *old = t->slots;
	t->n_slots = old_n ? old_n * 2 : 1024;
	t->slots = xmalloc(t->n_slots * sizeof(*t->slots));
	for (size_t i = 0; i < t->n_slots; i++)
		t->slots[i].node = NONE;
	for (size_t i = 0; i < old_n; i++) {
		if (old[i].node == NONE)
			continue;
		size_t mask = t->n_slots - 1, j = (size_t)old[i].hash & mask;
		while (t->slots[j].node != NONE)
			j = (j + 1) & mask;
		t->slots[j] = old[i];
	}
	free(old);
}

/* The slot of id (empty when unknown, ready to be filled by id_set). */
static struct id_slot *id_lookup(struct tree *t, const char *id, size_t len)
{
	if ((t->used_slots + 1) * 2 > t->n_slots)
		id_grow(t);
	return id_find(t, id, len, util_hash64(id, len));
}

static void id_set(struct tree *t, struct id_slot *s, const char *id, size_t len, uint32_t node)
{
	s->hash = util_hash64(id, len);
	s->off = (uint32_t)t->arena.len;
	s->len = (uint32_t)len;
	s->node = node;
	buf_append(&t->arena, id, len);
	t->used_slots++;
}

/* The node of a referenced id: the message that has it, else a dummy
 * (created now, and used for every later reference to it). */
static uint32_t id_node(struct tree *t, const char *id, size_t len)
{
	struct id_slot *s = id_lookup(t, id, len);
	if (s->node != NONE)
		return s->node;
	uint32_t x = node_new(t, NONE);
	id_set(t, s, id, len, x);
	return x;
}

/* ---- REFERENCES: the steps ------------------------------------------------------- */

#define ID_ROOM (MAILSEARCH_MSGID_MAX + 1)

/* Step 1 for message m: its own node, then the links of its references. */
static void thread_link_message(struct tree *t, uint32_t m, char *refs)
{
	const struct mailsearch_thread_msg *msg = &t->msgs[m];
	char id[ID_ROOM];
	size_t id_len, pos = 0;
	uint32_t me = NONE;
	/* the Message-ID: unique ones only; a missing, invalid or duplicate
	 * one gets a node of its own that nothing can reference */
	if (msg->message_id != NULL &&
	    mailsearch__msgid_next(msg->message_id, strlen(msg->message_id), &pos, id, &id_len)) {
		struct id_slot *s = id_lookup(t, id, id_len);
		if (s->node == NONE) {
			me = node_new(t, m);
			id_set(t, s, id, id_len, me);
		} else if (is_dummy(t, s->node)) {
			me = s->node;
			t->nodes[me].msg = m;
		}
	}
	if (me == NONE)
		me = node_new(t, m);

	/* the references: References (its last MAILSEARCH_REFS_MAX valid
	 * ids), else the first valid id of In-Reply-To */
	size_t n_refs = 0, lens[MAILSEARCH_REFS_MAX];
	if (msg->references != NULL) {
		const char *v = msg->references;
		size_t vlen = strnlen(v, MAILSEARCH_HEADER_MAX), total = 0;
		pos = 0;
		while (mailsearch__msgid_next(v, vlen, &pos, id, &id_len))
			total++;
		size_t skip = total > MAILSEARCH_REFS_MAX ? total - MAILSEARCH_REFS_MAX : 0;
		pos = 0;
		for (size_t i = 0; mailsearch__msgid_next(v, vlen, &pos, id, &id_len); i++) {
			if (i < skip)
				continue;
			memcpy(refs + n_refs * ID_ROOM, id, id_len);
			lens[n_refs++] = id_len;
		}
	}
	if (n_refs == 0 && msg->in_reply_to != NULL) {
		const char *v = msg->in_reply_to;
		pos = 0;
		if (mailsearch__msgid_next(v, strnlen(v, MAILSEARCH_HEADER_MAX), &pos, refs, &id_len))
			lens[n_refs++] = id_len;
	}

	/* (1A) link each reference to the next, never changing an existing
	 * parent and never making a loop */
	uint32_t prev = NONE;
	for (size_t i = 0; i < n_refs; i++) {
		uint32_t x = id_node(t, refs + i * ID_ROOM, lens[i]);
		if (prev != NONE && t->nodes[x].parent == NONE && !would_loop(t, prev, x))
			append_child(t, prev, x);
		prev = x;
	}
	/* (1B) the last reference is the parent: break an older link (a
	 * truncated References made it), then link unless it loops */
	if (t->nodes[me].parent != NONE && t->nodes[me].parent != prev)
		unlink_node(t, me);
	if (prev != NONE && t->nodes[me].parent == NONE && !would_loop(t, prev, me))
		append_child(t, prev, me);
}

/* The nodes of the tree under `top`, top included, level by level: every
 * parent before its children, so walking the list backwards visits every
 * node after all of its descendants. list has room for every node.
 * Returns the count. */
static size_t parents_first(const struct tree *t, uint32_t top, uint32_t *list)
{
	size_t n = 0;
	list[n++] = top;
	for (size_t i = 0; i < n; i++)
		for (uint32_t c = t->nodes[list[i]].first; c != NONE; c = t->nodes[c].next)
			list[n++] = c;
	return n;
}

/* (3) Remove dummies, children first: a childless dummy goes; a dummy with
 * children gives them to its parent, except at the root where it keeps
 * them unless it has only one. */
static void thread_prune(struct tree *t, uint32_t *list)
{
	size_t n = parents_first(t, ROOT, list);
	for (size_t i = n; i-- > 1;) {
		uint32_t x = list[i];
		if (!is_dummy(t, x))
			continue;
		struct tnode *nd = &t->nodes[x];
		if (nd->first == NONE) {
			unlink_node(t, x);
			nd->dead = 1;
			continue;
		}
		if (nd->parent == ROOT && n_children(t, x, 2) > 1)
			continue;
		while (nd->first != NONE) {
			uint32_t c = nd->first;
			unlink_node(t, c);
			insert_before(t, x, c);
		}
		unlink_node(t, x);
		nd->dead = 1;
	}
}

/* The sort key of a node: its message's, or for a dummy its first
 * child's (children are sorted first). */
static void node_key(const struct tree *t, uint32_t x, struct date_key *k)
{
	uint32_t y = x;
	while (y != NONE && is_dummy(t, y))
		y = t->nodes[y].first;
	if (y == NONE) {
		k->sent = INT64_MAX;
		k->uid = UINT32_MAX;
	} else {
		k->sent = t->msgs[t->nodes[y].msg].sent_ms;
		k->uid = t->msgs[t->nodes[y].msg].uid;
	}
	k->item = x;
}

/* Sort the children of p by sent date (keys: scratch of room for them). */
static void sort_children(struct tree *t, uint32_t p, struct date_key *keys)
{
	size_t n = 0;
	for (uint32_t c = t->nodes[p].first; c != NONE; c = t->nodes[c].next)
		node_key(t, c, &keys[n++]);
	if (n < 2)
		return;
	qsort(keys, n, sizeof(*keys), date_key_cmp);
	struct tnode *pn = &t->nodes[p];
	pn->first = pn->last = NONE;
	for (size_t i = 0; i < n; i++) {
		t->nodes[keys[i].item].parent = NONE;
		append_child(t, p, keys[i].item);
	}
}

/* The thread subject of a root child: its own, or its first child's. */
static const struct mailsearch_thread_msg *thread_head(const struct tree *t, uint32_t x)
{
	uint32_t y = x;
	while (y != NONE && is_dummy(t, y))
		y = t->nodes[y].first;
	return y == NONE ? NULL : &t->msgs[t->nodes[y].msg];
}

/* subject -> root child, open addressing on i;ascii-casemap */
struct subj_slot {
	const char *subject;
	uint32_t node;
};

static uint64_t casemap_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s != '\0'; s++) {
		uint8_t c = (uint8_t)*s;
		if (c >= 'a' && c <= 'z')
			c -= 0x20;
		h = (h ^ c) * 1099511628211ull;
	}
	return h;
}

static struct subj_slot *subj_find(struct subj_slot *slots, size_t n_slots, const char *subject)
{
	size_t mask = n_slots - 1;
	for (size_t i = (size_t)casemap_hash(subject) & mask;; i = (i + 1) & mask) {
		if (slots[i].subject == NULL || mailsearch__casemap_eq(slots[i].subject, subject))
			return &slots[i];
	}
}

static int node_is_reply(const struct tree *t, uint32_t x)
{
	return !is_dummy(t, x) && t->msgs[t->nodes[x].msg].is_reply;
}

/* Make every child of `from` a child of `to`. */
static void move_children(struct tree *t, uint32_t from, uint32_t to)
{
	while (t->nodes[from].first != NONE) {
		uint32_t c = t->nodes[from].first;
		unlink_node(t, c);
		append_child(t, to, c);
	}
}

/* (5) Gather the threads under the root that share a base subject. */
static void thread_group_subjects(struct tree *t, uint32_t *list)
{
	size_t n = 0;
	for (uint32_t c = t->nodes[ROOT].first; c != NONE; c = t->nodes[c].next)
		list[n++] = c;
	size_t n_slots = 16;
	while (n_slots < n * 2)
		n_slots *= 2;
	struct subj_slot *slots = xcalloc(n_slots, sizeof(*slots));
	/* (B) one message per subject: a dummy wins over a message, a
	 * message that is not a reply over one that is */
	for (size_t i = 0; i < n; i++) {
		const struct mailsearch_thread_msg *head = thread_head(t, list[i]);
		if (head == NULL || head->base_subject[0] == '\0')
			continue;
		struct subj_slot *s = subj_find(slots, n_slots, head->base_subject);
		if (s->subject == NULL) {
			s->subject = head->base_subject;
			s->node = list[i];
		} else if (!is_dummy(t, s->node) &&
			   (is_dummy(t, list[i]) ||
			    (node_is_reply(t, s->node) && !node_is_reply(t, list[i])))) {
			s->node = list[i];
		}
	}
	/* (C) merge each thread into the one of the table */
	for (size_t i = 0; i < n; i++) {
		uint32_t cur = list[i];
		if (t->nodes[cur].parent != ROOT)
			continue; /* moved under a new dummy by an earlier merge */
		const struct mailsearch_thread_msg *head = thread_head(t, cur);
		if (head == NULL || head->base_subject[0] == '\0')
			continue;
		struct subj_slot *s = subj_find(slots, n_slots, head->base_subject);
		uint32_t tab = s->node;
		if (tab == cur)
			continue;
		if (is_dummy(t, tab) && is_dummy(t, cur)) {
			move_children(t, cur, tab);
			unlink_node(t, cur);
			t->nodes[cur].dead = 1;
		} else if (is_dummy(t, tab) ||
			   (node_is_reply(t, cur) && !node_is_reply(t, tab))) {
			unlink_node(t, cur);
			append_child(t, tab, cur);
		} else {
			uint32_t d = node_new(t, NONE);
			insert_before(t, tab, d);
			unlink_node(t, tab);
			unlink_node(t, cur);
			append_child(t, d, tab);
			append_child(t, d, cur);
			s->node = d;
		}
	}
	free(slots);
}

/* Append the threads under the root in RFC 5256's syntax. Iterative: a
 * stack of sibling lists still to print; finishing one closes the
 * parenthesis of the list that holds it. */
struct print_frame {
	uint32_t next; /* the next node to print as "(...)" */
	int single;    /* print only that one (a top-level thread) */
	int close;     /* emit ")" when done */
};

static void thread_print(const struct tree *t, buf *out, struct print_frame *stack)
{
	for (uint32_t top = t->nodes[ROOT].first; top != NONE; top = t->nodes[top].next) {
		size_t sp = 0;
		stack[sp++] = (struct print_frame){.next = top, .single = 1, .close = 0};
		while (sp > 0) {
			struct print_frame *fr = &stack[sp - 1];
			if (fr->next == NONE) {
				if (fr->close)
					buf_append(out, ")", 1);
				sp--;
				continue;
			}
			uint32_t x = fr->next;
			fr->next = fr->single ? NONE : t->nodes[x].next;
			/* a dummy with one child stands for that child (pruning
			 * leaves none, but never print "((n))") */
			while (is_dummy(t, x) && n_children(t, x, 2) == 1)
				x = t->nodes[x].first;
			if (is_dummy(t, x) && t->nodes[x].first == NONE)
				continue;
			buf_append(out, "(", 1);
			if (!is_dummy(t, x)) {
				append_uid(out, t->msgs[t->nodes[x].msg].uid);
				while (n_children(t, x, 2) == 1 && !is_dummy(t, t->nodes[x].first)) {
					x = t->nodes[x].first;
					buf_append(out, " ", 1);
					append_uid(out, t->msgs[t->nodes[x].msg].uid);
				}
				if (t->nodes[x].first == NONE) {
					buf_append(out, ")", 1);
					continue;
				}
				buf_append(out, " ", 1);
			}
			stack[sp++] = (struct print_frame){
				.next = t->nodes[x].first, .single = 0, .close = 1};
		}
	}
}

static void thread_references(const struct mailsearch_thread_msg *msgs, size_t n, buf *out)
{
	struct tree t = {.msgs = msgs};
	buf_init(&t.arena);
	id_grow(&t);
	node_new(&t, NONE); /* the root */
	char *refs = xmalloc((size_t)MAILSEARCH_REFS_MAX * ID_ROOM);

	/* (1) links from Message-ID, References and In-Reply-To */
	for (size_t m = 0; m < n; m++)
		thread_link_message(&t, (uint32_t)m, refs);
	free(refs);

	/* (2) every node without a parent under the root */
	for (uint32_t x = 1; x < t.n_nodes; x++)
		if (t.nodes[x].parent == NONE)
			append_child(&t, ROOT, x);

	/* room for every node, plus the dummies step 5 may add (at most one
	 * per root child) */
	size_t room = (size_t)t.n_nodes * 2;
	uint32_t *list = xmalloc(room * sizeof(*list));
	struct date_key *keys = xmalloc(room * sizeof(*keys));

	/* (3) prune dummies */
	thread_prune(&t, list);

	/* (4) sort the top level by sent date (a dummy by its first child,
	 * once its children are sorted) */
	for (uint32_t c = t.nodes[ROOT].first; c != NONE; c = t.nodes[c].next)
		if (is_dummy(&t, c))
			sort_children(&t, c, keys);
	sort_children(&t, ROOT, keys);

	/* (5) group by subject */
	thread_group_subjects(&t, list);

	/* (6) sort every set of siblings, the deepest first */
	size_t n_list = parents_first(&t, ROOT, list);
	for (size_t i = n_list; i-- > 0;)
		if (t.nodes[list[i]].first != NONE)
			sort_children(&t, list[i], keys);

	struct print_frame *stack = xmalloc(room * sizeof(*stack));
	thread_print(&t, out, stack);
	free(stack);
	free(keys);
	free(list);
	free(t.nodes);
	free(t.slots);
	buf_deinit(&t.arena);
}

int mailsearch_thread(enum search_thread_alg alg, const struct mailsearch_thread_msg *msgs,
		      size_t n, buf *out)
{
	if (alg != SEARCH_THREAD_ORDEREDSUBJECT && alg != SEARCH_THREAD_REFERENCES)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (msgs[i].base_subject == NULL || (i > 0 && msgs[i].uid <= msgs[i - 1].uid))
			return -1;
	if (n > (size_t)UINT32_MAX / 4)
		return -1;
	if (n == 0)
		return 0;
	if (alg == SEARCH_THREAD_ORDEREDSUBJECT)
		thread_orderedsubject(msgs, n, out);
	else
		thread_references(msgs, n, out);
	return 0;
}
