/* imap-cmd-mbox.c: the mailbox commands of the authenticated state:
 * CREATE, DELETE, RENAME (RFC 3501 6.3.3-5, RFC 9051 response codes),
 * CREATE-SPECIAL-USE (RFC 6154), SUBSCRIBE, UNSUBSCRIBE, LSUB (RFC 3501
 * 6.3.6-9), LIST with LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819)
 * and SPECIAL-USE (RFC 6154), STATUS (with STATUS=SIZE RFC 8438,
 * DELETED RFC 9051, HIGHESTMODSEQ RFC 7162, APPENDLIMIT RFC 7889),
 * NAMESPACE (RFC 2342) and CHECK.
 *
 * Names go through imap-mbox-name.c (modified UTF-7 or UTF-8 on the wire,
 * UTF-8 for the backend). Each command makes one backend call and ends in
 * its callback.
 */
#include "imap-server-private.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap-list-match.h"
#include "imap-utf7.h"
#include "log.h"
#include "mail-error.h"
#include "xalloc.h"

/* Most patterns in one LIST (RFC 5258 "mbox-or-pat" list): each costs a
 * match per mailbox. */
#define IMAP_LIST_PATTERNS_MAX 32u

/* A completion for the calls that only succeed or fail. */
typedef void imap_mbox_done_fn(struct imap_session *s, int status);

/* The per-command state of CREATE, DELETE, RENAME, (UN)SUBSCRIBE, STATUS. */
struct imap_mbox_cmd {
	char *name;
	char *to;            /* RENAME */
	unsigned items;      /* STATUS */
	const char *op;      /* for the log: "create", "delete", ... */
	imap_mbox_done_fn *done;
};

static void imap_mbox_cmd_free(void *ctx)
{
	struct imap_mbox_cmd *c = ctx;
	free(c->name);
	free(c->to);
	free(c);
}

static struct imap_mbox_cmd *imap_mbox_cmd_new(struct imap_session *s, char *name)
{
	struct imap_mbox_cmd *c = xcalloc(1, sizeof(*c));
	c->name = name;
	s->cmd_ctx = c;
	s->cmd_ctx_free = imap_mbox_cmd_free;
	return c;
}

static void imap_mbox_status_cb(int status, void *arg)
{
	struct imap_session *s = arg;
	if (conn_is_closed(&s->conn)) {
		conn_unref(&s->conn);
		return;
	}
	struct imap_mbox_cmd *c = s->cmd_ctx;
	/* names are the user's data: not logged */
	log_event(LOG_INFO, "imap", "event=mailbox sid=%s op=%s status=%s", s->conn.id, c->op,
		  mail_error_info(status)->name);
	c->done(s, status);
	conn_process(&s->conn);
	conn_unref(&s->conn);
}

/* Is child below parent ("a/b" below "a")? */
static int imap_name_below(const char *child, const char *parent)
{
	size_t n = strlen(parent);
	return strncmp(child, parent, n) == 0 && child[n] == '/';
}

/* ---- CREATE ---------------------------------------------------------- */

/* RFC 6154 use-attr -> IMAP_MBOX_* bit (0: not one we keep). */
static unsigned imap_special_use_parse(const char *attr)
{
	static const struct {
		const char *name;
		unsigned bit;
	} uses[] = {
		{ "\\Sent", IMAP_MBOX_SENT },   { "\\Drafts", IMAP_MBOX_DRAFTS },
		{ "\\Trash", IMAP_MBOX_TRASH }, { "\\Junk", IMAP_MBOX_JUNK },
		{ "\\Archive", IMAP_MBOX_ARCHIVE },
	};
	for (size_t i = 0; i < sizeof(uses) / sizeof(uses[0]); i++) {
		if (strcasecmp(attr, uses[i].name) == 0)
			return uses[i].bit;
	}
	return 0;
}

static const char *imap_special_use_name(unsigned attrs)
{
	switch (attrs & IMAP_MBOX_SPECIAL_MASK) {
	case IMAP_MBOX_SENT:
		return "\\Sent";
	case IMAP_MBOX_DRAFTS:
		return "\\Drafts";
	case IMAP_MBOX_TRASH:
		return "\\Trash";
	case IMAP_MBOX_JUNK:
		return "\\Junk";
	case IMAP_MBOX_ARCHIVE:
		return "\\Archive";
	}
	return NULL;
}

static void imap_create_done(struct imap_session *s, int status)
{
	if (status == MAIL_OK)
		imap_cmd_done(s, "OK", NULL, "Create completed");
	else
		imap_cmd_fail(s, status);
}

/* The CREATE parameters (RFC 4466 create-param): "(USE (\Sent))" only.
 * Returns 0 with *use_r, or -1 once the command is ended. */
static int imap_create_params(struct imap_session *s, const struct imap_arg *arg, unsigned *use_r)
{
	const struct imap_arg_list *l = arg->list;
	*use_r = 0;
	for (size_t i = 0; i < l->count; i += 2) {
		const char *pname;
		if (!imap_arg_get_atom(&l->args[i], &pname) || i + 1 >= l->count ||
		    strcasecmp(pname, "USE") != 0 || l->args[i + 1].type != IMAP_ARG_LIST) {
			imap_cmd_done(s, "BAD", NULL, "Unknown CREATE parameter");
			return -1;
		}
		const struct imap_arg_list *uses = l->args[i + 1].list;
		for (size_t k = 0; k < uses->count; k++) {
			const char *attr;
			if (!imap_arg_get_atom(&uses->args[k], &attr) || attr[0] != '\\') {
				imap_cmd_done(s, "BAD", NULL, "Invalid special-use attribute");
				return -1;
			}
			unsigned bit = imap_special_use_parse(attr);
			if (bit == 0) {
				imap_cmd_done(s, "NO", "USEATTR",
					      "Special-use attribute not supported");
				return -1;
			}
			if (*use_r != 0 && *use_r != bit) {
				imap_cmd_done(s, "NO", "USEATTR",
					      "One special-use attribute per mailbox");
				return -1;
			}
			*use_r = bit;
		}
	}
	return 0;
}

void imap_cmd_create(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	char *name;
	unsigned use = 0;
	if (n_args < 1 || n_args > 2 || (n_args == 2 && args[1].type != IMAP_ARG_LIST)) {
		imap_cmd_done(s, "BAD", NULL, "CREATE needs a mailbox name");
		return;
	}
	if (n_args == 2 && imap_create_params(s, &args[1], &use) < 0)
		return;
	if (imap_cmd_mailbox_arg(s, &args[0], IMAP_NAME_CREATE, &name) < 0)
		return;
	if (strcmp(name, "INBOX") == 0) {
		free(name);
		imap_cmd_done(s, "NO", "ALREADYEXISTS", "INBOX always exists");
		return;
	}
	struct imap_mbox_cmd *c = imap_mbox_cmd_new(s, name);
	c->done = imap_create_done;
	c->op = "create";
	conn_ref(&s->conn);
	s->server->backend->create(s->server->backend_ctx, s->user, name, use,
				   imap_mbox_status_cb, s);
}

/* ---- DELETE ---------------------------------------------------------- */

static int imap_session_selected_within(const struct imap_session *s, const char *name)
{
	return s->mailbox != NULL &&
	       (strcmp(s->mailbox, name) == 0 || imap_name_below(s->mailbox, name));
}

static void imap_delete_done(struct imap_session *s, int status)
{
	struct imap_mbox_cmd *c = s->cmd_ctx;
	if (status == MAIL_OK) {
		/* RFC 9051 6.3.4: the selected mailbox may be deleted; it
		 * is unselected then */
		if (s->state == IMAP_STATE_SELECTED && imap_session_selected_within(s, c->name))
			imap_session_mailbox_clear(s);
		imap_cmd_done(s, "OK", NULL, "Delete completed");
	} else if (status == MAIL_ERR_EXISTS) {
		imap_cmd_done(s, "NO", "HASCHILDREN", "Mailbox has children, delete them first");
	} else if (status == MAIL_ERR_PERM) {
		imap_cmd_done(s, "NO", "CANNOT", "Mailbox cannot be deleted");
	} else {
		imap_cmd_fail(s, status);
	}
}

void imap_cmd_delete(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	char *name;
	if (n_args != 1) {
		imap_cmd_done(s, "BAD", NULL, "DELETE needs a mailbox name");
		return;
	}
	if (imap_cmd_mailbox_arg(s, &args[0], 0, &name) < 0)
		return;
	if (strcmp(name, "INBOX") == 0) {
		free(name);
		imap_cmd_done(s, "NO", "CANNOT", "INBOX cannot be deleted");
		return;
	}
	struct imap_mbox_cmd *c = imap_mbox_cmd_new(s, name);
	c->done = imap_delete_done;
	c->op = "delete";
	conn_ref(&s->conn);
	s->server->backend->delete_mailbox(s->server->backend_ctx, s->user, name,
					   imap_mbox_status_cb, s);
}

/* ---- RENAME ---------------------------------------------------------- */

static void imap_rename_done(struct imap_session *s, int status)
{
	struct imap_mbox_cmd *c = s->cmd_ctx;
	if (status != MAIL_OK) {
		imap_cmd_fail(s, status);
		return;
	}
	/* the selected mailbox (or one of its parents) was renamed: the
	 * session follows it (INBOX stays INBOX) */
	if (strcmp(c->name, "INBOX") != 0 && imap_session_selected_within(s, c->name)) {
		char *moved = xasprintf("%s%s", c->to, s->mailbox + strlen(c->name));
		free(s->mailbox);
		s->mailbox = moved;
	}
	imap_cmd_done(s, "OK", NULL, "Rename completed");
}

void imap_cmd_rename(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	char *from, *to;
	if (n_args != 2) {
		imap_cmd_done(s, "BAD", NULL, "RENAME needs two mailbox names");
		return;
	}
	if (imap_cmd_mailbox_arg(s, &args[0], 0, &from) < 0)
		return;
	if (imap_cmd_mailbox_arg(s, &args[1], IMAP_NAME_CREATE, &to) < 0) {
		free(from);
		return;
	}
	const char *code = NULL, *text = NULL;
	if (strcmp(to, "INBOX") == 0 || strcmp(from, to) == 0) {
		code = "ALREADYEXISTS";
		text = "Mailbox already exists";
	} else if (imap_name_below(to, from)) {
		code = "CANNOT";
		text = "Cannot rename a mailbox below itself";
	}
	if (code != NULL) {
		free(from);
		free(to);
		imap_cmd_done(s, "NO", code, text);
		return;
	}
	struct imap_mbox_cmd *c = imap_mbox_cmd_new(s, from);
	c->to = to;
	c->done = imap_rename_done;
	c->op = "rename";
	conn_ref(&s->conn);
	s->server->backend->rename(s->server->backend_ctx, s->user, from, to,
				   imap_mbox_status_cb, s);
}

/* ---- SUBSCRIBE / UNSUBSCRIBE ---------------------------------------- */

static void imap_subscribe_done(struct imap_session *s, int status)
{
	if (status == MAIL_OK)
		imap_cmd_done(s, "OK", NULL, "Subscription updated");
	else
		imap_cmd_fail(s, status);
}

static void imap_cmd_subscribe_common(struct imap_session *s, const struct imap_arg *args,
				      size_t n_args, int on)
{
	char *name;
	if (n_args != 1) {
		imap_cmd_done(s, "BAD", NULL, "Missing mailbox name");
		return;
	}
	if (imap_cmd_mailbox_arg(s, &args[0], 0, &name) < 0)
		return;
	struct imap_mbox_cmd *c = imap_mbox_cmd_new(s, name);
	c->done = imap_subscribe_done;
	c->op = on ? "subscribe" : "unsubscribe";
	conn_ref(&s->conn);
	s->server->backend->subscribe(s->server->backend_ctx, s->user, name, on,
				      imap_mbox_status_cb, s);
}

void imap_cmd_subscribe(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	imap_cmd_subscribe_common(s, args, n_args, 1);
}

void imap_cmd_unsubscribe(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	imap_cmd_subscribe_common(s, args, n_args, 0);
}

/* ---- STATUS ---------------------------------------------------------- */

#define IMAP_STATUS_MESSAGES 0x001u
#define IMAP_STATUS_RECENT 0x002u
#define IMAP_STATUS_UIDNEXT 0x004u
#define IMAP_STATUS_UIDVALIDITY 0x008u
#define IMAP_STATUS_UNSEEN 0x010u
#define IMAP_STATUS_DELETED 0x020u
#define IMAP_STATUS_SIZE 0x040u
#define IMAP_STATUS_HIGHESTMODSEQ 0x080u
#define IMAP_STATUS_APPENDLIMIT 0x100u

static const struct {
	const char *name;
	unsigned bit;
} imap_status_items[] = {
	{ "MESSAGES", IMAP_STATUS_MESSAGES },
	{ "RECENT", IMAP_STATUS_RECENT },
	{ "UIDNEXT", IMAP_STATUS_UIDNEXT },
	{ "UIDVALIDITY", IMAP_STATUS_UIDVALIDITY },
	{ "UNSEEN", IMAP_STATUS_UNSEEN },
	{ "DELETED", IMAP_STATUS_DELETED },
	{ "SIZE", IMAP_STATUS_SIZE },
	{ "HIGHESTMODSEQ", IMAP_STATUS_HIGHESTMODSEQ },
	{ "APPENDLIMIT", IMAP_STATUS_APPENDLIMIT },
};

/* The status-att list "(MESSAGES UNSEEN ...)". Returns 0 with *items_r,
 * or -1 (the command is ended with BAD). */
static int imap_status_items_parse(struct imap_session *s, const struct imap_arg *arg,
				   unsigned *items_r)
{
	*items_r = 0;
	if (arg->type != IMAP_ARG_LIST || arg->list->count == 0) {
		imap_cmd_done(s, "BAD", NULL, "STATUS needs a list of items");
		return -1;
	}
	for (size_t i = 0; i < arg->list->count; i++) {
		const char *item;
		unsigned bit = 0;
		if (imap_arg_get_atom(&arg->list->args[i], &item)) {
			for (size_t k = 0; k < sizeof(imap_status_items) / sizeof(imap_status_items[0]);
			     k++) {
				if (strcasecmp(item, imap_status_items[k].name) == 0)
					bit = imap_status_items[k].bit;
			}
		}
		if (bit == 0) {
			imap_cmd_done(s, "BAD", NULL, "Unknown STATUS item");
			return -1;
		}
		*items_r |= bit;
	}
	/* RFC 7162 3.1: STATUS HIGHESTMODSEQ is a CONDSTORE enabling command */
	if ((*items_r & IMAP_STATUS_HIGHESTMODSEQ) != 0)
		s->enabled |= IMAP_ENABLED_CONDSTORE;
	/* RFC 9051 has no RECENT: after ENABLE IMAP4rev2 it is not sent */
	if ((s->enabled & IMAP_ENABLED_IMAP4REV2) != 0)
		*items_r &= ~IMAP_STATUS_RECENT;
	return 0;
}

/* Can name be shown to this client? A backend name that is not valid
 * UTF-8 (never written by us) is left out of answers and logged. */
static int imap_name_showable(const struct imap_session *s, const char *name)
{
	buf b;
	buf_init(&b);
	int ok = imap_mailbox_name_encode(s, name, &b) == 0;
	buf_deinit(&b);
	if (!ok)
		log_event(LOG_WARN, "imap", "event=bad_mailbox_name sid=%s", s->conn.id);
	return ok;
}

/* "* STATUS name (ITEM n ...)\r\n" (name showable). */
static void imap_status_reply(struct imap_session *s, const struct imap_mailbox_info *box,
			      const char *name, unsigned items)
{
	conn_append(&s->conn, "* STATUS ", 9);
	imap_session_append_mailbox(s, name);
	buf b;
	buf_init(&b);
	if (items & IMAP_STATUS_MESSAGES)
		buf_printf(&b, " MESSAGES %u", box->exists);
	if (items & IMAP_STATUS_RECENT)
		buf_printf(&b, " RECENT 0");
	if (items & IMAP_STATUS_UIDNEXT)
		buf_printf(&b, " UIDNEXT %u", box->uidnext);
	if (items & IMAP_STATUS_UIDVALIDITY)
		buf_printf(&b, " UIDVALIDITY %u", box->uidvalidity);
	if (items & IMAP_STATUS_UNSEEN)
		buf_printf(&b, " UNSEEN %u", box->unseen);
	if (items & IMAP_STATUS_DELETED)
		buf_printf(&b, " DELETED %u", box->deleted);
	if (items & IMAP_STATUS_SIZE)
		buf_printf(&b, " SIZE %llu", (unsigned long long)box->size);
	if (items & IMAP_STATUS_HIGHESTMODSEQ)
		buf_printf(&b, " HIGHESTMODSEQ %llu", (unsigned long long)box->highest_modseq);
	if (items & IMAP_STATUS_APPENDLIMIT) {
		uint64_t limit = s->server->set.append_limit;
		if (limit == 0)
			buf_printf(&b, " APPENDLIMIT NIL");
		else
			buf_printf(&b, " APPENDLIMIT %llu", (unsigned long long)limit);
	}
	conn_printf(&s->conn, " (%s)\r\n", b.len > 0 ? (const char *)b.data + 1 : "");
	buf_deinit(&b);
}

static void imap_cmd_status_cb(int status, const struct imap_mailbox_info *box, void *arg)
{
	struct imap_session *s = arg;
	if (conn_is_closed(&s->conn)) {
		conn_unref(&s->conn);
		return;
	}
	struct imap_mbox_cmd *c = s->cmd_ctx;
	if (status != MAIL_OK) {
		imap_cmd_fail(s, status);
	} else {
		/* c->name came from the client, so it can be shown */
		imap_status_reply(s, box, c->name, c->items);
		imap_cmd_done(s, "OK", NULL, "Status completed");
	}
	conn_process(&s->conn);
	conn_unref(&s->conn);
}

void imap_cmd_status(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	char *name;
	unsigned items;
	if (n_args != 2) {
		imap_cmd_done(s, "BAD", NULL, "STATUS needs a mailbox name and a list of items");
		return;
	}
	if (imap_status_items_parse(s, &args[1], &items) < 0)
		return;
	if (imap_cmd_mailbox_arg(s, &args[0], 0, &name) < 0)
		return;
	struct imap_mbox_cmd *c = imap_mbox_cmd_new(s, name);
	c->items = items;
	conn_ref(&s->conn);
	s->server->backend->status(s->server->backend_ctx, s->user, name, imap_cmd_status_cb, s);
}

/* ---- NAMESPACE / CHECK ---------------------------------------------- */

void imap_cmd_namespace(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	(void)args;
	if (n_args != 0) {
		imap_cmd_done(s, "BAD", NULL, "NAMESPACE takes no arguments");
		return;
	}
	/* RFC 2342: one personal namespace, no shared or other users' */
	conn_printf(&s->conn, "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
	imap_cmd_done(s, "OK", NULL, "Namespace completed");
}

/* RFC 3501 6.4.1: without housekeeping of its own, CHECK is NOOP (which
 * reports the selected mailbox's pending changes). */
void imap_cmd_check(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	if (n_args != 0) {
		imap_cmd_done(s, "BAD", NULL, "CHECK takes no arguments");
		return;
	}
	imap_cmd_noop(s, args, n_args);
}

/* ---- LIST / LSUB ----------------------------------------------------- */

/* Selection options (RFC 5258 3.1, RFC 6154 5.1). */
#define IMAP_LIST_SEL_SUBSCRIBED 0x01u
#define IMAP_LIST_SEL_REMOTE 0x02u
#define IMAP_LIST_SEL_RECURSIVEMATCH 0x04u
#define IMAP_LIST_SEL_SPECIAL_USE 0x08u
/* Return options (RFC 5258 3.2, RFC 5819, RFC 6154 5.2). */
#define IMAP_LIST_RET_SUBSCRIBED 0x01u
#define IMAP_LIST_RET_CHILDREN 0x02u
#define IMAP_LIST_RET_SPECIAL_USE 0x04u
#define IMAP_LIST_RET_STATUS 0x08u

struct imap_list_cmd {
	int lsub;            /* LSUB (RFC 3501 6.3.9) rather than LIST */
	int extended;        /* LIST-EXTENDED syntax used, or IMAP4rev2 */
	unsigned sel;        /* IMAP_LIST_SEL_* */
	unsigned ret;        /* IMAP_LIST_RET_* */
	unsigned status;     /* IMAP_STATUS_* of RETURN (STATUS (...)) */
	char **patterns;     /* UTF-8, reference joined */
	size_t n_patterns;
};

static void imap_list_cmd_free(void *ctx)
{
	struct imap_list_cmd *l = ctx;
	for (size_t i = 0; i < l->n_patterns; i++)
		free(l->patterns[i]);
	free(l->patterns);
	free(l);
}

/* One name of the hierarchy: a mailbox, a subscription, or a parent
 * level that is neither. */
struct imap_list_node {
	const char *name;                     /* UTF-8 */
	char *owned;                          /* for parent levels */
	const struct imap_mailbox_info *info; /* NULL: a parent level only */
	int exists;                           /* a mailbox (selectable) */
	int subscribed;
	unsigned special;                     /* IMAP_MBOX_SPECIAL_MASK bits */
	int has_children;                     /* a mailbox below it exists */
	int matches;                          /* some pattern matches it */
	int qualifies;                        /* meets the selection */
	size_t end;                           /* index past its descendants */
};

/* Order names so that a name's descendants follow it directly: '/' sorts
 * before every other byte ("a", "a/b", "a-b"). */
static int imap_list_node_cmp(const void *a, const void *b)
{
	const struct imap_list_node *x = a, *y = b;
	const unsigned char *p = (const unsigned char *)x->name;
	const unsigned char *q = (const unsigned char *)y->name;
	while (*p != '\0' && *p == *q) {
		p++;
		q++;
	}
	unsigned cp = *p == '/' ? 1u : *p, cq = *q == '/' ? 1u : *q;
	if (cp != cq)
		return cp < cq ? -1 : 1;
	/* the same name: the one with mailbox data first */
	return (x->info == NULL) - (y->info == NULL);
}

/* The nodes of boxes: every name, INBOX, and every parent level. */
static struct imap_list_node *imap_list_nodes(const struct imap_mailbox_info *boxes, size_t n,
					      size_t *n_r)
{
	size_t cap = n + 1, count = 0;
	for (size_t i = 0; i < n; i++) {
		for (const char *p = boxes[i].name; *p != '\0'; p++)
			cap += *p == '/';
	}
	struct imap_list_node *nodes = xcalloc(cap, sizeof(*nodes));
	static const struct imap_mailbox_info inbox = { .name = "INBOX" };
	int inbox_seen = 0;
	for (size_t i = 0; i < n; i++) {
		nodes[count].name = boxes[i].name;
		nodes[count++].info = &boxes[i];
		inbox_seen |= strcmp(boxes[i].name, "INBOX") == 0;
		for (const char *p = strchr(boxes[i].name, '/'); p != NULL; p = strchr(p + 1, '/')) {
			char *parent = xstrndup(boxes[i].name, (size_t)(p - boxes[i].name));
			nodes[count].name = parent;
			nodes[count++].owned = parent;
		}
	}
	if (!inbox_seen) {
		nodes[count].name = inbox.name;
		nodes[count++].info = &inbox;
	}
	qsort(nodes, count, sizeof(*nodes), imap_list_node_cmp);
	size_t out = 0;
	for (size_t i = 0; i < count; i++) {
		if (out > 0 && strcmp(nodes[out - 1].name, nodes[i].name) == 0) {
			free(nodes[i].owned); /* a duplicate parent level */
			continue;
		}
		nodes[out++] = nodes[i];
	}
	for (size_t i = 0; i < out; i++) {
		struct imap_list_node *nd = &nodes[i];
		if (nd->info != NULL) {
			nd->exists = (nd->info->attrs & IMAP_MBOX_NONEXISTENT) == 0;
			nd->subscribed = (nd->info->attrs & IMAP_MBOX_SUBSCRIBED) != 0;
			nd->special = nd->exists ? nd->info->attrs & IMAP_MBOX_SPECIAL_MASK : 0;
		}
	}
	for (size_t i = 0; i < out; i++) {
		size_t j = i + 1;
		while (j < out && imap_name_below(nodes[j].name, nodes[i].name)) {
			nodes[i].has_children |= nodes[j].exists;
			j++;
		}
		nodes[i].end = j;
	}
	*n_r = out;
	return nodes;
}

static void imap_list_nodes_free(struct imap_list_node *nodes, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(nodes[i].owned);
	free(nodes);
}

static int imap_list_qualifies(const struct imap_list_cmd *l, const struct imap_list_node *nd)
{
	if (l->lsub)
		return nd->subscribed;
	if ((l->sel & (IMAP_LIST_SEL_SUBSCRIBED | IMAP_LIST_SEL_SPECIAL_USE)) == 0)
		return nd->exists;
	if ((l->sel & IMAP_LIST_SEL_SUBSCRIBED) != 0 && !nd->subscribed)
		return 0;
	if ((l->sel & IMAP_LIST_SEL_SPECIAL_USE) != 0 && nd->special == 0)
		return 0;
	return 1;
}

static void imap_list_reply(struct imap_session *s, const struct imap_list_cmd *l,
			    const struct imap_list_node *nd, int childinfo)
{
	if (!imap_name_showable(s, nd->name))
		return;
	buf attrs;
	buf_init(&attrs);
	if (l->lsub) {
		if (!nd->qualifies)
			buf_append_str(&attrs, " \\Noselect");
	} else {
		if (!nd->exists)
			buf_append_str(&attrs, l->extended ? " \\NonExistent" : " \\Noselect");
		/* CHILDREN (RFC 3348) is advertised: always, not only on
		 * RETURN (CHILDREN) */
		buf_append_str(&attrs, nd->has_children ? " \\HasChildren" : " \\HasNoChildren");
		if (nd->subscribed &&
		    ((l->ret & IMAP_LIST_RET_SUBSCRIBED) || (l->sel & IMAP_LIST_SEL_SUBSCRIBED)))
			buf_append_str(&attrs, " \\Subscribed");
		/* RFC 6154 2: special-use attributes in every LIST */
		const char *use = imap_special_use_name(nd->special);
		if (use != NULL)
			buf_printf(&attrs, " %s", use);
	}
	buf_append(&attrs, "", 1);
	conn_printf(&s->conn, "* %s (%s) \"/\" ", l->lsub ? "LSUB" : "LIST",
		    attrs.len > 1 ? (const char *)attrs.data + 1 : "");
	buf_deinit(&attrs);
	imap_session_append_mailbox(s, nd->name);
	if (childinfo) {
		conn_printf(&s->conn, " (\"CHILDINFO\" (%s%s%s))",
			    (l->sel & IMAP_LIST_SEL_SUBSCRIBED) ? "\"SUBSCRIBED\"" : "",
			    (l->sel & IMAP_LIST_SEL_SUBSCRIBED) && (l->sel & IMAP_LIST_SEL_SPECIAL_USE)
				    ? " "
				    : "",
			    (l->sel & IMAP_LIST_SEL_SPECIAL_USE) ? "\"SPECIAL-USE\"" : "");
	}
	conn_append(&s->conn, "\r\n", 2);
	if ((l->ret & IMAP_LIST_RET_STATUS) != 0 && nd->exists && nd->info != NULL)
		imap_status_reply(s, nd->info, nd->name, l->status);
}

/* Answer for each node: it is listed when a pattern matches it and it
 * meets the selection, or (LIST without selection options, LSUB, and
 * RECURSIVEMATCH) when a descendant that no pattern matches meets it:
 * RFC 3501's "%" parents (\Noselect) and RFC 5258's CHILDINFO. */
static void imap_list_answer(struct imap_session *s, const struct imap_list_cmd *l,
			     struct imap_list_node *nodes, size_t n)
{
	int parents = l->lsub || (l->sel & IMAP_LIST_SEL_RECURSIVEMATCH) != 0 ||
		      (l->sel & (IMAP_LIST_SEL_SUBSCRIBED | IMAP_LIST_SEL_SPECIAL_USE)) == 0;
	for (size_t i = 0; i < n; i++) {
		struct imap_list_node *nd = &nodes[i];
		nd->qualifies = imap_list_qualifies(l, nd);
		for (size_t p = 0; p < l->n_patterns && !nd->matches; p++)
			nd->matches = imap_list_match(l->patterns[p], nd->name);
	}
	/* INBOX first, as clients expect; then in hierarchy order */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < n; i++) {
			struct imap_list_node *nd = &nodes[i];
			if ((strcmp(nd->name, "INBOX") == 0) != (pass == 0) || !nd->matches)
				continue;
			int below = 0;
			for (size_t j = i + 1; parents && j < nd->end && !below; j++)
				below = nodes[j].qualifies && !nodes[j].matches;
			if (nd->qualifies || below)
				imap_list_reply(s, l, nd,
						below && (l->sel & IMAP_LIST_SEL_RECURSIVEMATCH) != 0);
		}
	}
}

static void imap_cmd_list_cb(int status, const struct imap_mailbox_info *boxes, size_t n,
			     void *arg)
{
	struct imap_session *s = arg;
	if (conn_is_closed(&s->conn)) {
		conn_unref(&s->conn);
		return;
	}
	struct imap_list_cmd *l = s->cmd_ctx;
	if (status != MAIL_OK) {
		imap_cmd_fail(s, status);
	} else {
		size_t n_nodes;
		struct imap_list_node *nodes = imap_list_nodes(boxes, n, &n_nodes);
		imap_list_answer(s, l, nodes, n_nodes);
		imap_list_nodes_free(nodes, n_nodes);
		imap_cmd_done(s, "OK", NULL, l->lsub ? "Lsub completed" : "List completed");
	}
	conn_process(&s->conn);
	conn_unref(&s->conn);
}

/* The option atoms of a LIST-EXTENDED list. Returns 0, or -1 once the
 * command is ended. */
static int imap_list_options(struct imap_session *s, struct imap_list_cmd *l,
			     const struct imap_arg *arg, int ret)
{
	const struct imap_arg_list *opts = arg->list;
	for (size_t i = 0; i < opts->count; i++) {
		const char *o;
		if (!imap_arg_get_atom(&opts->args[i], &o)) {
			imap_cmd_done(s, "BAD", NULL, "Invalid LIST option");
			return -1;
		}
		if (!ret && strcasecmp(o, "SUBSCRIBED") == 0) {
			l->sel |= IMAP_LIST_SEL_SUBSCRIBED;
		} else if (!ret && strcasecmp(o, "REMOTE") == 0) {
			l->sel |= IMAP_LIST_SEL_REMOTE; /* no remote mailboxes here */
		} else if (!ret && strcasecmp(o, "RECURSIVEMATCH") == 0) {
			l->sel |= IMAP_LIST_SEL_RECURSIVEMATCH;
		} else if (!ret && strcasecmp(o, "SPECIAL-USE") == 0) {
			l->sel |= IMAP_LIST_SEL_SPECIAL_USE;
		} else if (ret && strcasecmp(o, "SUBSCRIBED") == 0) {
			l->ret |= IMAP_LIST_RET_SUBSCRIBED;
		} else if (ret && strcasecmp(o, "CHILDREN") == 0) {
			l->ret |= IMAP_LIST_RET_CHILDREN;
		} else if (ret && strcasecmp(o, "SPECIAL-USE") == 0) {
			l->ret |= IMAP_LIST_RET_SPECIAL_USE;
		} else if (ret && strcasecmp(o, "STATUS") == 0 && i + 1 < opts->count &&
			   (l->ret & IMAP_LIST_RET_STATUS) == 0) {
			if (imap_status_items_parse(s, &opts->args[++i], &l->status) < 0)
				return -1;
			l->ret |= IMAP_LIST_RET_STATUS;
		} else {
			imap_cmd_done(s, "BAD", NULL, "Unknown LIST option");
			return -1;
		}
	}
	return 0;
}

/* reference + pattern, decoded; *pattern_r NULL when it is "" (the
 * hierarchy delimiter request). Returns 0, or -1 once the command is
 * ended. */
static int imap_list_pattern(struct imap_session *s, const char *ref, size_t ref_len,
			     const struct imap_arg *arg, char **pattern_r)
{
	const char *pat, *error = NULL;
	*pattern_r = NULL;
	if (!imap_arg_get_astring(arg, &pat) || strlen(pat) != arg->len) {
		imap_cmd_done(s, "BAD", NULL, "Invalid mailbox pattern");
		return -1;
	}
	if (arg->len == 0)
		return 0;
	if (ref_len + arg->len > IMAP_LIST_PATTERN_MAX) {
		imap_cmd_done(s, "BAD", NULL, "LIST pattern too long");
		return -1;
	}
	buf raw, out;
	buf_init(&raw);
	buf_init(&out);
	/* a pattern that starts at the root ignores the reference */
	if (pat[0] != '/')
		buf_append(&raw, ref, ref_len);
	buf_append(&raw, pat, arg->len);
	int ok;
	if (imap_session_utf8_names(s)) {
		ok = imap_utf8_valid((const char *)raw.data, raw.len);
		error = "Mailbox pattern is not valid UTF-8";
		buf_append(&out, raw.data, raw.len);
	} else {
		ok = imap_utf7_to_utf8((const char *)raw.data, raw.len, &out, &error) == 0;
	}
	buf_deinit(&raw);
	if (!ok) {
		buf_deinit(&out);
		imap_cmd_done(s, "BAD", NULL, error);
		return -1;
	}
	buf_append(&out, "", 1);
	*pattern_r = (char *)buf_steal(&out, NULL);
	return 0;
}

static void imap_cmd_list_common(struct imap_session *s, const struct imap_arg *args,
				 size_t n_args, int lsub)
{
	struct imap_list_cmd *l = xcalloc(1, sizeof(*l));
	s->cmd_ctx = l;
	s->cmd_ctx_free = imap_list_cmd_free;
	l->lsub = lsub;
	l->extended = !lsub && (s->enabled & IMAP_ENABLED_IMAP4REV2) != 0;
	size_t i = 0;
	if (!lsub && n_args > 0 && args[0].type == IMAP_ARG_LIST) {
		l->extended = 1;
		if (imap_list_options(s, l, &args[0], 0) < 0)
			return;
		i++;
	}
	const char *ref;
	if (n_args < i + 2 || !imap_arg_get_astring(&args[i], &ref) ||
	    strlen(ref) != args[i].len) {
		imap_cmd_done(s, "BAD", NULL,
			      lsub ? "LSUB needs a reference and a mailbox pattern"
				   : "LIST needs a reference and a mailbox pattern");
		return;
	}
	size_t ref_len = args[i].len;
	const struct imap_arg *pats = &args[i + 1];
	size_t n_pats = 1;
	if (!lsub && pats->type == IMAP_ARG_LIST) {
		l->extended = 1;
		n_pats = pats->list->count;
		pats = pats->list->args;
		if (n_pats == 0 || n_pats > IMAP_LIST_PATTERNS_MAX) {
			imap_cmd_done(s, "BAD", NULL, "Invalid list of mailbox patterns");
			return;
		}
	}
	i += 2;
	if (!lsub && i + 2 == n_args) {
		const char *kw;
		if (!imap_arg_get_atom(&args[i], &kw) || strcasecmp(kw, "RETURN") != 0 ||
		    args[i + 1].type != IMAP_ARG_LIST) {
			imap_cmd_done(s, "BAD", NULL, "Invalid LIST return options");
			return;
		}
		l->extended = 1;
		if (imap_list_options(s, l, &args[i + 1], 1) < 0)
			return;
		i += 2;
	}
	if (i != n_args) {
		imap_cmd_done(s, "BAD", NULL, "Too many LIST arguments");
		return;
	}
	/* RFC 5258 3.1: RECURSIVEMATCH needs another selection option */
	if ((l->sel & IMAP_LIST_SEL_RECURSIVEMATCH) != 0 &&
	    (l->sel & (IMAP_LIST_SEL_SUBSCRIBED | IMAP_LIST_SEL_SPECIAL_USE)) == 0) {
		imap_cmd_done(s, "BAD", NULL, "RECURSIVEMATCH needs another selection option");
		return;
	}
	l->patterns = xcalloc(n_pats, sizeof(*l->patterns));
	int delimiter = 0;
	for (size_t p = 0; p < n_pats; p++) {
		char *pattern;
		if (imap_list_pattern(s, ref, ref_len, &pats[p], &pattern) < 0)
			return;
		if (pattern == NULL)
			delimiter = 1;
		else
			l->patterns[l->n_patterns++] = pattern;
	}
	if (l->n_patterns == 0) {
		/* RFC 3501 6.3.8: "" asks for the delimiter and the root */
		if (delimiter)
			conn_printf(&s->conn, "* %s (\\Noselect) \"/\" \"\"\r\n",
				    lsub ? "LSUB" : "LIST");
		imap_cmd_done(s, "OK", NULL, lsub ? "Lsub completed" : "List completed");
		return;
	}
	conn_ref(&s->conn);
	s->server->backend->list(s->server->backend_ctx, s->user, imap_cmd_list_cb, s);
}

void imap_cmd_list(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	imap_cmd_list_common(s, args, n_args, 0);
}

void imap_cmd_lsub(struct imap_session *s, const struct imap_arg *args, size_t n_args)
{
	imap_cmd_list_common(s, args, n_args, 1);
}
