/* pop3-parser.c: the POP3 command-line parser (pop3-parser.h). */
#include "pop3-parser.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "xalloc.h"

enum pop3_parser_state {
	POP3_PARSER_LINE = 0,    /* storing the current line */
	POP3_PARSER_DISCARD = 1, /* dropping the rest of a too-long line */
};

struct pop3_parser {
	struct pop3_parser_limits limits;
	enum pop3_parser_state state;
	int sasl;
	buf line;      /* the current line's bytes before its LF */
	buf fields;    /* the last command's rest, split into arguments */
	struct pop3_command cmd;
};

void pop3_parser_limits_default(struct pop3_parser_limits *limits)
{
	limits->max_line = POP3_PARSER_MAX_LINE;
	limits->max_auth_line = POP3_PARSER_MAX_AUTH_LINE;
	limits->max_args = POP3_PARSER_MAX_ARGS;
}

pop3_parser *pop3_parser_create(const struct pop3_parser_limits *limits)
{
	struct pop3_parser *p = xcalloc(1, sizeof(*p));
	p->limits = *limits;
	if (p->limits.max_line < POP3_PARSER_MIN_LINE)
		p->limits.max_line = POP3_PARSER_MIN_LINE;
	if (p->limits.max_auth_line < p->limits.max_line)
		p->limits.max_auth_line = p->limits.max_line;
	if (p->limits.max_args < 1)
		p->limits.max_args = 1;
	if (p->limits.max_args > POP3_PARSER_ARGS_MAX)
		p->limits.max_args = POP3_PARSER_ARGS_MAX;
	buf_init(&p->line);
	buf_init(&p->fields);
	return p;
}

void pop3_parser_destroy(pop3_parser **pp)
{
	struct pop3_parser *p = *pp;
	if (p == NULL)
		return;
	*pp = NULL;
	/* a SASL line may have held credentials */
	if (p->line.data != NULL)
		memset(p->line.data, 0, p->line.cap);
	if (p->fields.data != NULL)
		memset(p->fields.data, 0, p->fields.cap);
	buf_deinit(&p->line);
	buf_deinit(&p->fields);
	free(p);
}

void pop3_parser_set_sasl(pop3_parser *p, int on)
{
	p->sasl = on != 0;
}

/* The octets the current line may hold before its LF: the limit less the
 * LF (the CR, when sent, is stored and stripped at the end). A command
 * line that starts with "AUTH " gets the longer limit once that is known
 * (max_line leaves room for the 5 bytes). */
static size_t pop3_parser_room(const struct pop3_parser *p)
{
	if (p->sasl)
		return p->limits.max_auth_line - 1;
	if (p->line.len >= 5 && strncasecmp((const char *)p->line.data, "AUTH ", 5) == 0)
		return p->limits.max_auth_line - 1;
	return p->limits.max_line - 1;
}

/* Split the stored line (NUL-terminated, without its line end) into
 * p->cmd. 1, or -1 with *error_r. */
static int pop3_parser_command(struct pop3_parser *p, const char **error_r)
{
	struct pop3_command *cmd = &p->cmd;
	const char *line = (const char *)p->line.data;
	size_t len = p->line.len - 1; /* without the NUL */

	memset(cmd, 0, sizeof(*cmd));
	cmd->line = line;
	cmd->line_len = len;
	cmd->rest = "";
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];
		if (c < 0x20 || c == 0x7f) {
			*error_r = "Invalid characters in the command";
			return -1;
		}
	}
	if (p->sasl)
		return 1;
	if (len == 0) {
		*error_r = "Empty command";
		return -1;
	}
	size_t k = 0;
	while (k < len && line[k] != ' ') {
		char c = line[k];
		if (k == 4 || !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))) {
			*error_r = "Unknown command";
			return -1;
		}
		cmd->name[k] = (char)(c >= 'a' ? c - 'a' + 'A' : c);
		k++;
	}
	if (k == 0) {
		*error_r = "Unknown command";
		return -1;
	}
	cmd->rest = k < len ? line + k + 1 : "";
	buf_reset(&p->fields);
	buf_append(&p->fields, cmd->rest, strlen(cmd->rest) + 1);
	char *f = (char *)p->fields.data;
	for (;;) {
		while (*f == ' ')
			f++;
		if (*f == '\0')
			break;
		if (cmd->n_args == p->limits.max_args) {
			*error_r = "Too many arguments";
			return -1;
		}
		cmd->args[cmd->n_args++] = f;
		while (*f != ' ' && *f != '\0')
			f++;
		if (*f == ' ')
			*f++ = '\0';
	}
	return 1;
}

int pop3_parser_feed(pop3_parser *p, const uint8_t *data, size_t len, size_t *used_r,
		     struct pop3_command **cmd_r, const char **error_r)
{
	size_t off = 0;
	*cmd_r = NULL;
	*error_r = NULL;
	while (off < len) {
		const uint8_t *nl = memchr(data + off, '\n', len - off);
		size_t chunk = nl != NULL ? (size_t)(nl - (data + off)) : len - off;
		if (p->state == POP3_PARSER_DISCARD) {
			off += chunk;
			if (nl != NULL) {
				off++;
				p->state = POP3_PARSER_LINE;
			}
			continue;
		}
		/* store what fits; the room may grow once "AUTH " is known */
		size_t take = 0;
		while (take < chunk) {
			size_t room = pop3_parser_room(p);
			size_t fits = room > p->line.len ? room - p->line.len : 0;
			if (fits == 0)
				break;
			size_t n = chunk - take < fits ? chunk - take : fits;
			buf_append(&p->line, data + off + take, n);
			take += n;
		}
		off += take;
		if (take < chunk) {
			buf_reset(&p->line);
			p->state = POP3_PARSER_DISCARD;
			*used_r = off;
			*error_r = "Line too long";
			return POP3_PARSE_ERROR;
		}
		if (nl == NULL)
			break;
		off++; /* the LF */
		if (p->line.len > 0 && p->line.data[p->line.len - 1] == '\r')
			p->line.len--;
		buf_append(&p->line, "", 1);
		int ret = pop3_parser_command(p, error_r);
		/* the line's bytes stay valid for the caller until the next
		 * call; the next line starts from an empty buffer */
		p->line.len = 0;
		*used_r = off;
		if (ret < 0)
			return POP3_PARSE_ERROR;
		*cmd_r = &p->cmd;
		return POP3_PARSE_COMMAND;
	}
	*used_r = off;
	return POP3_PARSE_NEED_MORE;
}
