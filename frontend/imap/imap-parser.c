/* imap-parser.c: the incremental IMAP command parser (see imap-parser.h).
 *
 * One byte-level state machine. Bytes of a command line are counted against
 * max_line as they are consumed (before anything is stored); literal bytes
 * are counted against max_literal when the literal header has been read and
 * copied in bulk. Errors never stop the parser: the message is kept, the
 * state becomes SKIP_LINE and the error is reported once the LF that ends
 * the bad command has been consumed, so replies keep the order of commands.
 *
 * Two ways to drop the rest of a command:
 *   - SKIP_LINE (after a syntax error): bytes up to LF are dropped, but a
 *     line that ends in a "{n+}" header is followed by n literal bytes
 *     that are skipped too (the client sends them regardless, RFC 7888);
 *   - discard mode (after a refused non-synchronising literal): the
 *     machine keeps parsing so that later literals are found, but nothing
 *     is stored; the end of the command goes through SKIP_LINE, which
 *     reports the error (or nothing, when silent: the caller answered).
 */
#include "imap-parser.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "xalloc.h"

enum imap_parser_state {
	IMAP_PARSER_STATE_TAG,
	IMAP_PARSER_STATE_NAME,
	IMAP_PARSER_STATE_ARGS,
	IMAP_PARSER_STATE_LINE_LF,      /* CR seen at the end of the command */
	IMAP_PARSER_STATE_ATOM,
	IMAP_PARSER_STATE_QUOTED,
	IMAP_PARSER_STATE_QUOTED_ESCAPE,
	IMAP_PARSER_STATE_LITERAL_SIZE, /* digits after '{' */
	IMAP_PARSER_STATE_LITERAL_END,  /* '+' seen, '}' expected */
	IMAP_PARSER_STATE_LITERAL_CR,   /* '}' seen, CRLF expected */
	IMAP_PARSER_STATE_LITERAL_LF,
	IMAP_PARSER_STATE_LITERAL_DATA,
	IMAP_PARSER_STATE_SKIP_LITERAL, /* a {n+} in a skipped line: drop n bytes */
	IMAP_PARSER_STATE_SKIP_LINE,    /* after an error: drop through LF */
	IMAP_PARSER_STATE_TILDE,        /* '~' read: literal8 or an atom */
	IMAP_PARSER_STATE_LITERAL_DECIDE, /* IMAP_PARSE_LITERAL reported */
	IMAP_PARSER_STATE_SKIP_LITERAL_ARG, /* discard mode: drop n bytes, go on */
};

/* The last bytes of a skipped line, enough for "{9999999999+}\r". */
#define IMAP_PARSER_TAIL 16u
/* An accepted literal's buffer grows by doubling from this, never past
 * the literal's size: memory follows the bytes that arrived. */
#define IMAP_PARSER_LITERAL_STEP (64u * 1024u)

/* Literal sizes are read up to this many digits (more is "too large"). */
#define IMAP_PARSER_LITERAL_DIGITS_MAX 10u

struct imap_parser {
	struct imap_parser_limits limits;
	enum imap_parser_state state;
	struct imap_command cmd;
	int cmd_out;                 /* cmd was handed out: clear it first */
	buf token;                   /* bytes of the tag/name/atom/string being read */
	struct imap_arg_list *stack[IMAP_PARSER_DEPTH_MAX + 1];
	unsigned depth;              /* open lists; stack[0] = &cmd.args */
	unsigned bracket;            /* '[' nesting inside the current atom */
	size_t line_len;             /* non-literal bytes of this command */
	size_t literal_total;        /* literal bytes of this command */
	size_t n_args;
	uint64_t literal_size;
	unsigned literal_digits;
	int literal_plus;
	uint64_t skip_left;
	const char *error;           /* reported when SKIP_LINE reaches LF */
	int literal8;                /* the literal being read is ~{n} */
	int literal_big;             /* accepted over the limits (see above) */
	int discard;                 /* the rest of the command is dropped */
	int silent;                  /* ... and no event comes for it */
	uint8_t tail[IMAP_PARSER_TAIL];
	size_t tail_len;
};

void imap_parser_limits_default(struct imap_parser_limits *limits, int authenticated)
{
	if (authenticated) {
		limits->max_line = IMAP_PARSER_AUTH_MAX_LINE;
		limits->max_literal = IMAP_PARSER_AUTH_MAX_LITERAL;
		limits->max_args = IMAP_PARSER_AUTH_MAX_ARGS;
		limits->max_depth = IMAP_PARSER_AUTH_MAX_DEPTH;
	} else {
		limits->max_line = IMAP_PARSER_PREAUTH_MAX_LINE;
		limits->max_literal = IMAP_PARSER_PREAUTH_MAX_LITERAL;
		limits->max_args = IMAP_PARSER_PREAUTH_MAX_ARGS;
		limits->max_depth = IMAP_PARSER_PREAUTH_MAX_DEPTH;
	}
}

int imap_arg_get_astring(const struct imap_arg *arg, const char **s_r)
{
	if (arg->type != IMAP_ARG_ATOM && arg->type != IMAP_ARG_QUOTED &&
	    arg->type != IMAP_ARG_LITERAL)
		return 0;
	if (s_r != NULL)
		*s_r = arg->str;
	return 1;
}

int imap_arg_get_atom(const struct imap_arg *arg, const char **s_r)
{
	if (arg->type != IMAP_ARG_ATOM)
		return 0;
	if (s_r != NULL)
		*s_r = arg->str;
	return 1;
}

/* ---- command memory -------------------------------------------------- */

static void imap_arg_list_free(struct imap_arg_list *list)
{
	for (size_t i = 0; i < list->count; i++) {
		struct imap_arg *arg = &list->args[i];
		/* wiped: it may be a password; an accepted large literal (a
		 * message of APPEND) cannot be one: not worth the time */
		if (arg->str != NULL && arg->len > IMAP_PARSER_AUTH_MAX_LITERAL)
			free(arg->str);
		else if (arg->str != NULL)
			xfree_secret(arg->str, arg->len);
		if (arg->list != NULL) {
			imap_arg_list_free(arg->list);
			free(arg->list);
		}
	}
	free(list->args);
	memset(list, 0, sizeof(*list));
}

static void imap_command_clear(struct imap_command *cmd)
{
	free(cmd->tag);
	free(cmd->name);
	cmd->tag = NULL;
	cmd->name = NULL;
	imap_arg_list_free(&cmd->args);
}

static struct imap_arg *imap_arg_list_add(struct imap_arg_list *list, enum imap_arg_type type)
{
	if (list->count == list->cap) {
		list->cap = list->cap == 0 ? 8 : list->cap * 2;
		list->args = xrealloc(list->args, list->cap * sizeof(*list->args));
	}
	struct imap_arg *arg = &list->args[list->count++];
	memset(arg, 0, sizeof(*arg));
	arg->type = type;
	return arg;
}

/* ---- parser object --------------------------------------------------- */

static void imap_parser_clamp(struct imap_parser_limits *l)
{
	if (l->max_line < 64)
		l->max_line = 64;
	if (l->max_depth > IMAP_PARSER_DEPTH_MAX)
		l->max_depth = IMAP_PARSER_DEPTH_MAX;
}

imap_parser *imap_parser_create(const struct imap_parser_limits *limits)
{
	imap_parser *p = xcalloc(1, sizeof(*p));
	p->limits = *limits;
	imap_parser_clamp(&p->limits);
	buf_init(&p->token);
	p->stack[0] = &p->cmd.args;
	p->state = IMAP_PARSER_STATE_TAG;
	return p;
}

void imap_parser_destroy(imap_parser **parser)
{
	imap_parser *p = *parser;
	if (p == NULL)
		return;
	imap_command_clear(&p->cmd);
	if (p->token.data != NULL)
		memset(p->token.data, 0, p->token.cap);
	buf_deinit(&p->token);
	free(p);
	*parser = NULL;
}

void imap_parser_set_limits(imap_parser *parser, const struct imap_parser_limits *limits)
{
	parser->limits = *limits;
	imap_parser_clamp(&parser->limits);
}

int imap_parser_is_idle(const imap_parser *parser)
{
	return parser->state == IMAP_PARSER_STATE_TAG && parser->token.len == 0;
}

/* Back to "between commands"; keeps cmd (it may be handed out). */
static void imap_parser_reset(imap_parser *p)
{
	p->state = IMAP_PARSER_STATE_TAG;
	if (p->token.len > 0)
		memset(p->token.data, 0, p->token.len);
	buf_reset(&p->token);
	p->depth = 0;
	p->bracket = 0;
	p->line_len = 0;
	p->literal_total = 0;
	p->n_args = 0;
	p->error = NULL;
	p->literal_big = 0;
	p->discard = 0;
	p->silent = 0;
	p->tail_len = 0;
}

static void imap_parser_fail(imap_parser *p, const char *error)
{
	imap_arg_list_free(&p->cmd.args);
	p->depth = 0;
	if (p->error == NULL && !p->silent)
		p->error = error; /* the first error of the command is told */
	p->state = IMAP_PARSER_STATE_SKIP_LINE;
	p->tail_len = 0;
}

/* Drop the rest of the command (its args are freed; the machine goes on
 * parsing to find its end and its literals). */
static void imap_parser_discard(imap_parser *p, const char *error, int silent)
{
	imap_arg_list_free(&p->cmd.args);
	p->discard = 1;
	p->silent |= silent;
	if (p->error == NULL && !p->silent)
		p->error = error;
}

/* NUL-terminated copy of the token, then empty the token. */
static char *imap_parser_token_take(imap_parser *p, size_t *len_r)
{
	char *s = xmalloc(p->token.len + 1);
	if (p->token.len > 0)
		memcpy(s, p->token.data, p->token.len);
	s[p->token.len] = '\0';
	if (len_r != NULL)
		*len_r = p->token.len;
	if (p->token.len > 0)
		memset(p->token.data, 0, p->token.len);
	buf_reset(&p->token);
	return s;
}

/* Count one more argument; fails the command past max_args. */
static int imap_parser_arg_count(imap_parser *p)
{
	if (p->n_args >= p->limits.max_args) {
		imap_parser_fail(p, "Too many arguments");
		return -1;
	}
	p->n_args++;
	return 0;
}

static void imap_parser_arg_finish(imap_parser *p, enum imap_arg_type type)
{
	if (p->discard) {
		if (p->token.len > 0)
			memset(p->token.data, 0, p->token.len);
		buf_reset(&p->token);
		p->literal_big = 0;
		return;
	}
	struct imap_arg *arg = imap_arg_list_add(p->stack[p->depth], type);
	if (type == IMAP_ARG_LITERAL)
		arg->literal8 = p->literal8;
	if (p->literal_big && p->token.len > 0) {
		/* a large literal keeps its buffer (NUL-terminated by
		 * buf_append), no copy */
		arg->len = p->token.len;
		arg->str = (char *)p->token.data;
		buf_init(&p->token);
	} else {
		arg->str = imap_parser_token_take(p, &arg->len);
	}
	p->literal_big = 0;
}

/* Room for n more bytes of an accepted large literal: doubling, from
 * IMAP_PARSER_LITERAL_STEP, never past the literal's size. */
static void imap_parser_literal_reserve(imap_parser *p, size_t n)
{
	buf *t = &p->token;
	size_t need = t->len + n + 1;
	if (t->cap >= need)
		return;
	size_t cap = t->cap * 2;
	if (cap < IMAP_PARSER_LITERAL_STEP)
		cap = IMAP_PARSER_LITERAL_STEP;
	if (cap < need)
		cap = need;
	size_t whole = t->len + (size_t)p->skip_left + 1;
	if (cap > whole)
		cap = whole;
	t->data = xrealloc(t->data, cap);
	t->cap = cap;
}

/* ---- character classes ----------------------------------------------- */

static int imap_is_atom_char(uint8_t c)
{
	if (c <= 0x20 || c >= 0x7f)
		return 0;
	return c != '(' && c != ')' && c != '{' && c != '"';
}

static int imap_is_tag_char(uint8_t c)
{
	return imap_is_atom_char(c) && c != '+' && c != '%' && c != '*' && c != '\\';
}

static int imap_is_name_char(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_';
}

/* ---- the state machine ----------------------------------------------- */

static int imap_parser_command_end(imap_parser *p, struct imap_command **cmd_r)
{
	if (p->depth > 0) {
		imap_parser_fail(p, "Missing ')'");
		return 0;
	}
	if (p->discard) {
		/* SKIP_LINE takes the LF and reports the error (if any) */
		p->state = IMAP_PARSER_STATE_SKIP_LINE;
		p->tail_len = 0;
		return 0;
	}
	imap_parser_reset(p);
	p->cmd_out = 1;
	*cmd_r = &p->cmd;
	return 1;
}

static void imap_parser_atom_finish(imap_parser *p)
{
	enum imap_arg_type type = IMAP_ARG_ATOM;
	if (p->token.len == 3 && strncasecmp((const char *)p->token.data, "NIL", 3) == 0)
		type = IMAP_ARG_NIL;
	imap_parser_arg_finish(p, type);
	p->bracket = 0;
	p->state = IMAP_PARSER_STATE_ARGS;
}

/* Skip the literal's bytes and go on discarding the command. */
static void imap_parser_skip_literal_arg(imap_parser *p)
{
	p->skip_left = p->literal_size;
	p->state = p->literal_size > 0 ? IMAP_PARSER_STATE_SKIP_LITERAL_ARG
				       : IMAP_PARSER_STATE_ARGS;
}

/* The literal header ended (its LF consumed). Returns IMAP_PARSE_* when an
 * event must be reported now, or IMAP_PARSE_NEED_MORE to go on. With
 * IMAP_PARSE_ERROR, p->error is set (NULL: end the command silently). */
static int imap_parser_literal_start(imap_parser *p)
{
	if (p->discard) {
		if (p->literal_plus) {
			imap_parser_skip_literal_arg(p);
			return IMAP_PARSE_NEED_MORE;
		}
		/* the client waits for "+": the command ends here */
		return IMAP_PARSE_ERROR;
	}
	if (p->literal_size > p->limits.max_literal ||
	    p->literal_total + p->literal_size > p->limits.max_literal ||
	    (p->literal_plus && p->limits.max_nonsync_literal != 0 &&
	     p->literal_size > p->limits.max_nonsync_literal)) {
		if (p->limits.literal_events) {
			p->state = IMAP_PARSER_STATE_LITERAL_DECIDE;
			return IMAP_PARSE_LITERAL;
		}
		if (!p->literal_plus) {
			/* The client waits for "+" and will not send the bytes. */
			p->error = "Literal too large";
			imap_arg_list_free(&p->cmd.args);
			return IMAP_PARSE_ERROR;
		}
		imap_parser_discard(p, "Literal too large", 0);
		imap_parser_skip_literal_arg(p);
		return IMAP_PARSE_NEED_MORE;
	}
	p->literal_total += p->literal_size;
	p->skip_left = p->literal_size;
	if (p->literal_size == 0) {
		imap_parser_arg_finish(p, IMAP_ARG_LITERAL);
		p->state = IMAP_PARSER_STATE_ARGS;
	} else {
		p->state = IMAP_PARSER_STATE_LITERAL_DATA;
	}
	return p->literal_plus ? IMAP_PARSE_NEED_MORE : IMAP_PARSE_CONTINUATION;
}

/* One byte in a line state. Returns 1 when the byte was consumed, 0 when it
 * must be looked at again in the new state, or 2 when it was consumed and
 * ended the command (*cmd_r set). */
static int imap_parser_byte(imap_parser *p, uint8_t c, struct imap_command **cmd_r)
{
	switch (p->state) {
	case IMAP_PARSER_STATE_TAG:
		if (p->token.len == 0 && (c == '\r' || c == '\n')) {
			p->line_len = 0; /* empty line: ignored */
			return 1;
		}
		if (imap_is_tag_char(c)) {
			buf_append(&p->token, &c, 1);
			return 1;
		}
		if (c == ' ' && p->token.len > 0) {
			p->cmd.tag = imap_parser_token_take(p, NULL);
			p->state = IMAP_PARSER_STATE_NAME;
			return 1;
		}
		if ((c == '\r' || c == '\n') && p->token.len > 0) {
			p->cmd.tag = imap_parser_token_take(p, NULL);
			imap_parser_fail(p, "Missing command name");
			return 0;
		}
		imap_parser_fail(p, "Invalid tag");
		return 0;
	case IMAP_PARSER_STATE_NAME:
		if (imap_is_name_char(c)) {
			if (c >= 'a' && c <= 'z')
				c = (uint8_t)(c - 'a' + 'A');
			buf_append(&p->token, &c, 1);
			return 1;
		}
		if (c == ' ' || c == '\r' || c == '\n') {
			if (p->token.len == 0) {
				imap_parser_fail(p, "Missing command name");
				return 0;
			}
			p->cmd.name = imap_parser_token_take(p, NULL);
			p->state = IMAP_PARSER_STATE_ARGS;
			return c == ' ' ? 1 : 0;
		}
		imap_parser_fail(p, "Invalid command name");
		return 0;
	case IMAP_PARSER_STATE_ARGS:
		switch (c) {
		case ' ':
			return 1;
		case '\r':
			p->state = IMAP_PARSER_STATE_LINE_LF;
			return 1;
		case '\n':
			return imap_parser_command_end(p, cmd_r) ? 2 : 0;
		case '(':
			if (p->depth >= p->limits.max_depth) {
				imap_parser_fail(p, "Too deeply nested lists");
				return 0;
			}
			if (imap_parser_arg_count(p) < 0)
				return 0;
			if (p->discard) {
				p->stack[++p->depth] = NULL;
				return 1;
			}
			struct imap_arg *arg;
			arg = imap_arg_list_add(p->stack[p->depth], IMAP_ARG_LIST);
			arg->list = xcalloc(1, sizeof(*arg->list));
			p->stack[++p->depth] = arg->list;
			return 1;
		case ')':
			if (p->depth == 0) {
				imap_parser_fail(p, "Unexpected ')'");
				return 0;
			}
			p->depth--;
			return 1;
		case '"':
			if (imap_parser_arg_count(p) < 0)
				return 0;
			p->state = IMAP_PARSER_STATE_QUOTED;
			return 1;
		case '{':
			if (imap_parser_arg_count(p) < 0)
				return 0;
			p->literal_size = 0;
			p->literal_digits = 0;
			p->literal_plus = 0;
			p->literal8 = 0;
			p->state = IMAP_PARSER_STATE_LITERAL_SIZE;
			return 1;
		case '~':
			p->state = IMAP_PARSER_STATE_TILDE;
			return 1;
		default:
			if (!imap_is_atom_char(c) && !(c >= 0x80 && p->limits.atom_utf8)) {
				imap_parser_fail(p, "Invalid characters in command");
				return 0;
			}
			if (imap_parser_arg_count(p) < 0)
				return 0;
			p->bracket = 0;
			p->state = IMAP_PARSER_STATE_ATOM;
			return 0;
		}
	case IMAP_PARSER_STATE_TILDE:
		if (imap_parser_arg_count(p) < 0)
			return 0;
		if (c == '{') {
			p->literal_size = 0;
			p->literal_digits = 0;
			p->literal_plus = 0;
			p->literal8 = 1;
			p->state = IMAP_PARSER_STATE_LITERAL_SIZE;
			return 1;
		}
		/* an atom that starts with '~' ("~peter/mail") */
		buf_append(&p->token, "~", 1);
		p->bracket = 0;
		p->state = IMAP_PARSER_STATE_ATOM;
		return 0;
	case IMAP_PARSER_STATE_LINE_LF:
		if (c != '\n') {
			imap_parser_fail(p, "CR without LF");
			return 0;
		}
		return imap_parser_command_end(p, cmd_r) ? 2 : 0;
	case IMAP_PARSER_STATE_ATOM:
		if (c == '[') {
			if (p->bracket >= p->limits.max_depth) {
				imap_parser_fail(p, "Too deeply nested brackets");
				return 0;
			}
			p->bracket++;
		} else if (c == ']' && p->bracket > 0) {
			p->bracket--;
		} else if (p->bracket > 0 && (c == ' ' || c == '(' || c == ')')) {
			/* inside a section: BODY[HEADER.FIELDS (FROM TO)] */
		} else if (c == ' ' || c == '\r' || c == '\n' || c == '(' || c == ')') {
			imap_parser_atom_finish(p);
			return 0;
		} else if (!imap_is_atom_char(c) && !(c >= 0x80 && p->limits.atom_utf8)) {
			imap_parser_fail(p, "Invalid characters in atom");
			return 0;
		}
		buf_append(&p->token, &c, 1);
		return 1;
	case IMAP_PARSER_STATE_QUOTED:
		if (c == '"') {
			imap_parser_arg_finish(p, IMAP_ARG_QUOTED);
			p->state = IMAP_PARSER_STATE_ARGS;
		} else if (c == '\\') {
			p->state = IMAP_PARSER_STATE_QUOTED_ESCAPE;
		} else if (c == '\r' || c == '\n') {
			imap_parser_fail(p, "Missing '\"'");
			return 0;
		} else if (c == '\0') {
			imap_parser_fail(p, "NUL in quoted string");
			return 0;
		} else {
			buf_append(&p->token, &c, 1);
		}
		return 1;
	case IMAP_PARSER_STATE_QUOTED_ESCAPE:
		if (c != '\\' && c != '"') {
			imap_parser_fail(p, "Invalid escape in quoted string");
			return 0;
		}
		buf_append(&p->token, &c, 1);
		p->state = IMAP_PARSER_STATE_QUOTED;
		return 1;
	case IMAP_PARSER_STATE_LITERAL_SIZE:
		if (c >= '0' && c <= '9') {
			if (p->literal_digits >= IMAP_PARSER_LITERAL_DIGITS_MAX) {
				imap_parser_fail(p, "Literal too large");
				return 0;
			}
			p->literal_digits++;
			p->literal_size = p->literal_size * 10 + (uint64_t)(c - '0');
			return 1;
		}
		if (p->literal_digits > 0 && (c == '+' || c == '}')) {
			p->literal_plus = c == '+';
			p->state = c == '+' ? IMAP_PARSER_STATE_LITERAL_END
					    : IMAP_PARSER_STATE_LITERAL_CR;
			return 1;
		}
		imap_parser_fail(p, "Invalid literal size");
		return 0;
	case IMAP_PARSER_STATE_LITERAL_END:
		if (c != '}') {
			imap_parser_fail(p, "Invalid literal size");
			return 0;
		}
		p->state = IMAP_PARSER_STATE_LITERAL_CR;
		return 1;
	case IMAP_PARSER_STATE_LITERAL_CR:
		if (c == '\r') {
			p->state = IMAP_PARSER_STATE_LITERAL_LF;
			return 1;
		}
		/* a bare LF is accepted too */
		/* fall through */
	case IMAP_PARSER_STATE_LITERAL_LF:
		if (c != '\n') {
			imap_parser_fail(p, "Missing CRLF after literal size");
			return 0;
		}
		return 1; /* the caller starts the literal */
	case IMAP_PARSER_STATE_LITERAL_DATA:
	case IMAP_PARSER_STATE_SKIP_LITERAL:
	case IMAP_PARSER_STATE_SKIP_LINE:
	case IMAP_PARSER_STATE_LITERAL_DECIDE:
	case IMAP_PARSER_STATE_SKIP_LITERAL_ARG:
		break;
	}
	return 1;
}

/* Keep the last IMAP_PARSER_TAIL bytes of a skipped line. */
static void imap_parser_tail_add(imap_parser *p, const uint8_t *d, size_t n)
{
	if (n >= IMAP_PARSER_TAIL) {
		memcpy(p->tail, d + n - IMAP_PARSER_TAIL, IMAP_PARSER_TAIL);
		p->tail_len = IMAP_PARSER_TAIL;
		return;
	}
	if (p->tail_len + n > IMAP_PARSER_TAIL) {
		size_t drop = p->tail_len + n - IMAP_PARSER_TAIL;
		memmove(p->tail, p->tail + drop, p->tail_len - drop);
		p->tail_len -= drop;
	}
	memcpy(p->tail + p->tail_len, d, n);
	p->tail_len += n;
}

/* Does the skipped line end in "{n+}" (before its LF, maybe a CR)? Then
 * n literal bytes follow (RFC 7888 3). Returns 1 with *n_r, or 0. */
static int imap_parser_tail_literal(const imap_parser *p, uint64_t *n_r)
{
	size_t end = p->tail_len;
	if (end > 0 && p->tail[end - 1] == '\r')
		end--;
	if (end < 4 || p->tail[end - 1] != '}' || p->tail[end - 2] != '+')
		return 0;
	size_t k = end - 2, digits = 0;
	uint64_t n = 0, scale = 1;
	while (k > 0 && p->tail[k - 1] >= '0' && p->tail[k - 1] <= '9' &&
	       digits < IMAP_PARSER_LITERAL_DIGITS_MAX) {
		n += (uint64_t)(p->tail[k - 1] - '0') * scale;
		scale *= 10;
		digits++;
		k--;
	}
	if (digits == 0 || k == 0 || p->tail[k - 1] != '{')
		return 0;
	*n_r = n;
	return 1;
}

void imap_parser_literal_get(const imap_parser *p, struct imap_parser_literal *lit_r)
{
	lit_r->size = p->literal_size;
	lit_r->nonsync = p->literal_plus;
	lit_r->literal8 = p->literal8;
}

void imap_parser_literal_accept(imap_parser *p)
{
	if (p->state != IMAP_PARSER_STATE_LITERAL_DECIDE)
		return;
	p->literal_big = 1;
	p->skip_left = p->literal_size;
	if (p->literal_size == 0) {
		imap_parser_arg_finish(p, IMAP_ARG_LITERAL);
		p->state = IMAP_PARSER_STATE_ARGS;
	} else {
		p->state = IMAP_PARSER_STATE_LITERAL_DATA;
	}
}

void imap_parser_literal_refuse(imap_parser *p)
{
	if (p->state != IMAP_PARSER_STATE_LITERAL_DECIDE)
		return;
	if (!p->literal_plus) {
		/* the client sends nothing more of this command */
		imap_command_clear(&p->cmd);
		imap_parser_reset(p);
		return;
	}
	imap_parser_discard(p, NULL, 1);
	imap_parser_skip_literal_arg(p);
}

int imap_parser_feed(imap_parser *p, const uint8_t *data, size_t len, size_t *consumed_r,
		     struct imap_command **cmd_r, const char **error_r)
{
	size_t i = 0;

	*cmd_r = NULL;
	*error_r = NULL;
	if (p->cmd_out) {
		imap_command_clear(&p->cmd);
		p->cmd_out = 0;
	}
	if (p->state == IMAP_PARSER_STATE_LITERAL_DECIDE)
		imap_parser_literal_refuse(p); /* the caller did not decide */
	while (i < len) {
		if (p->state == IMAP_PARSER_STATE_LITERAL_DATA) {
			size_t n = len - i;
			if (n > p->skip_left)
				n = (size_t)p->skip_left;
			if (p->literal_big)
				imap_parser_literal_reserve(p, n);
			buf_append(&p->token, data + i, n);
			i += n;
			p->skip_left -= n;
			if (p->skip_left == 0) {
				imap_parser_arg_finish(p, IMAP_ARG_LITERAL);
				p->state = IMAP_PARSER_STATE_ARGS;
			}
			continue;
		}
		if (p->state == IMAP_PARSER_STATE_SKIP_LITERAL) {
			size_t n = len - i;
			if (n > p->skip_left)
				n = (size_t)p->skip_left;
			i += n;
			p->skip_left -= n;
			if (p->skip_left == 0) {
				p->state = IMAP_PARSER_STATE_SKIP_LINE;
				p->line_len = 0;
			}
			continue;
		}
		if (p->state == IMAP_PARSER_STATE_SKIP_LITERAL_ARG) {
			size_t n = len - i;
			if (n > p->skip_left)
				n = (size_t)p->skip_left;
			i += n;
			p->skip_left -= n;
			if (p->skip_left == 0)
				p->state = IMAP_PARSER_STATE_ARGS;
			continue;
		}
		if (p->state == IMAP_PARSER_STATE_SKIP_LINE) {
			const uint8_t *lf = memchr(data + i, '\n', len - i);
			size_t end = lf != NULL ? (size_t)(lf - data) : len;
			imap_parser_tail_add(p, data + i, end - i);
			if (lf == NULL) {
				i = len;
				continue;
			}
			i = end + 1;
			uint64_t skip;
			if (imap_parser_tail_literal(p, &skip)) {
				p->tail_len = 0;
				p->skip_left = skip;
				if (skip > 0)
					p->state = IMAP_PARSER_STATE_SKIP_LITERAL;
				continue;
			}
			if (p->silent || p->error == NULL) {
				/* answered by the caller already */
				imap_command_clear(&p->cmd);
				imap_parser_reset(p);
				*consumed_r = i;
				return IMAP_PARSE_DROPPED;
			}
			*error_r = p->error;
			imap_parser_reset(p);
			p->cmd_out = 1;
			*cmd_r = &p->cmd;
			*consumed_r = i;
			return IMAP_PARSE_ERROR;
		}

		uint8_t c = data[i];
		if (c != '\n' && p->line_len >= p->limits.max_line) {
			imap_parser_fail(p, "Line too long");
			continue;
		}
		enum imap_parser_state before = p->state;
		int ret = imap_parser_byte(p, c, cmd_r);
		if (ret == 0)
			continue;
		i++;
		if (p->state != IMAP_PARSER_STATE_TAG || before != IMAP_PARSER_STATE_TAG ||
		    p->token.len > 0)
			p->line_len++;
		if (ret == 2) {
			*consumed_r = i;
			return IMAP_PARSE_COMMAND;
		}
		if ((before == IMAP_PARSER_STATE_LITERAL_CR ||
		     before == IMAP_PARSER_STATE_LITERAL_LF) && c == '\n' &&
		    p->state == before) {
			int ev = imap_parser_literal_start(p);
			if (ev == IMAP_PARSE_ERROR && (p->silent || p->error == NULL)) {
				imap_command_clear(&p->cmd);
				imap_parser_reset(p);
				*consumed_r = i;
				return IMAP_PARSE_DROPPED;
			}
			if (ev == IMAP_PARSE_ERROR) {
				*error_r = p->error;
				*cmd_r = &p->cmd;
				imap_parser_reset(p);
				p->cmd_out = 1;
			}
			if (ev == IMAP_PARSE_LITERAL)
				*cmd_r = &p->cmd;
			if (ev != IMAP_PARSE_NEED_MORE) {
				*consumed_r = i;
				return ev;
			}
		}
	}
	*consumed_r = i;
	return IMAP_PARSE_NEED_MORE;
}
