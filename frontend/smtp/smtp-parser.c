/* smtp-parser.c: SMTP command lines and the DATA phase, incrementally. */
#include "smtp-parser.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

/* How a command's argument is checked. */
enum smtp__syntax {
	SMTP__SYN_NONE,     /* no argument allowed */
	SMTP__SYN_ANY,      /* optional free text */
	SMTP__SYN_REQUIRED, /* required free text */
	SMTP__SYN_DOMAIN,   /* EHLO/HELO */
	SMTP__SYN_MAIL,
	SMTP__SYN_RCPT,
};

struct smtp__verb {
	const char *name;
	enum smtp__syntax syntax;
	const char *usage; /* 501 text when the syntax does not match */
};

static const struct smtp__verb verbs[SMTP_CMD_COUNT_] = {
	[SMTP_CMD_UNKNOWN] = { "UNKNOWN", SMTP__SYN_ANY, NULL },
	[SMTP_CMD_EHLO] = { "EHLO", SMTP__SYN_DOMAIN, "Syntax: EHLO hostname" },
	[SMTP_CMD_HELO] = { "HELO", SMTP__SYN_DOMAIN, "Syntax: HELO hostname" },
	[SMTP_CMD_MAIL] = { "MAIL", SMTP__SYN_MAIL, "Syntax: MAIL FROM:<address>" },
	[SMTP_CMD_RCPT] = { "RCPT", SMTP__SYN_RCPT, "Syntax: RCPT TO:<address>" },
	[SMTP_CMD_DATA] = { "DATA", SMTP__SYN_NONE, "Syntax: DATA" },
	[SMTP_CMD_RSET] = { "RSET", SMTP__SYN_NONE, "Syntax: RSET" },
	[SMTP_CMD_NOOP] = { "NOOP", SMTP__SYN_ANY, NULL },
	[SMTP_CMD_QUIT] = { "QUIT", SMTP__SYN_NONE, "Syntax: QUIT" },
	[SMTP_CMD_VRFY] = { "VRFY", SMTP__SYN_REQUIRED, "Syntax: VRFY address" },
	[SMTP_CMD_EXPN] = { "EXPN", SMTP__SYN_REQUIRED, "Syntax: EXPN list" },
	[SMTP_CMD_HELP] = { "HELP", SMTP__SYN_ANY, NULL },
	[SMTP_CMD_STARTTLS] = { "STARTTLS", SMTP__SYN_NONE, "Syntax: STARTTLS" },
	[SMTP_CMD_AUTH] = { "AUTH", SMTP__SYN_REQUIRED,
			    "Syntax: AUTH mechanism [initial-response]" },
};

void smtp_limits_init_default(struct smtp_limits *l)
{
	l->max_line = SMTP_DEFAULT_MAX_LINE;
	l->max_recipients = SMTP_DEFAULT_MAX_RECIPIENTS;
	l->max_message_size = SMTP_DEFAULT_MAX_MESSAGE_SIZE;
}

const char *smtp_command_name(enum smtp_command_kind kind)
{
	if ((unsigned)kind >= SMTP_CMD_COUNT_)
		return verbs[SMTP_CMD_UNKNOWN].name;
	return verbs[kind].name;
}

void smtp_command_parser_init(smtp_command_parser *p, const struct smtp_limits *limits)
{
	memset(p, 0, sizeof *p);
	p->limits = *limits;
	if (p->limits.max_line < SMTP_MIN_MAX_LINE)
		p->limits.max_line = SMTP_MIN_MAX_LINE;
	p->state = SMTP_COMMAND_PARSER_LINE;
	buf_init(&p->line);
}

void smtp_command_parser_deinit(smtp_command_parser *p)
{
	buf_deinit(&p->line);
}

void smtp_command_parser_set_flags(smtp_command_parser *p, unsigned flags)
{
	p->flags = flags;
}

static int smtp__error(struct smtp_command *cmd, int code, const char *enh, const char *text)
{
	cmd->error.code = code;
	cmd->error.enh = enh;
	cmd->error.text = text;
	return -1;
}

/* RFC 5322 atext. */
static int smtp__is_atext(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return 1;
	return c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static int smtp__is_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* An address literal "[...]" of len bytes: IPv4, or "IPv6:" + IPv6. */
static int smtp__address_literal_valid(const char *s, size_t len)
{
	char tmp[64];
	unsigned char addr[16];
	if (len < 3 || s[0] != '[' || s[len - 1] != ']' || len - 2 >= sizeof tmp)
		return 0;
	memcpy(tmp, s + 1, len - 2);
	tmp[len - 2] = '\0';
	if (strncasecmp(tmp, "IPv6:", 5) == 0)
		return inet_pton(AF_INET6, tmp + 5, addr) == 1;
	return inet_pton(AF_INET, tmp, addr) == 1;
}

/* A domain as clients really send it in EHLO and paths: labels of letters,
 * digits, '-' and '_' (seen from Windows hosts), no empty label, at most
 * 253 octets; or an address literal. */
static int smtp__domain_valid(const char *s, size_t len)
{
	if (len > 0 && s[0] == '[')
		return smtp__address_literal_valid(s, len);
	if (len == 0 || len > 253)
		return 0;
	size_t label = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
		} else if (smtp__is_alnum(c) || c == '-' || c == '_') {
			if (++label > 63)
				return 0;
		} else {
			return 0;
		}
	}
	return label > 0;
}

/* Parse a path at s (s[0] must be '<'). On success returns 0, sets *end_r to
 * the index just past '>', *box_r / *box_len_r to the mailbox. */
static int smtp__path_parse(char *s, size_t len, int allow_empty, size_t *end_r,
			    char **box_r, size_t *box_len_r)
{
	size_t i = 1;
	if (len < 2 || s[0] != '<')
		return -1;
	if (s[1] == '>') {
		if (!allow_empty)
			return -1;
		*end_r = 2;
		*box_r = s + 1;
		*box_len_r = 0;
		return 0;
	}
	if (s[i] == '@') {
		/* A source route "@a,@b:" must be accepted and ignored
		 * (RFC 5321 4.1.1.3 / C). */
		while (i < len && s[i] != ':' && s[i] != '>')
			i++;
		if (i >= len || s[i] != ':')
			return -1;
		i++;
	}
	size_t box = i;
	if (i < len && s[i] == '"') {
		i++;
		while (i < len && s[i] != '"') {
			if (s[i] == '\\')
				i++;
			i++;
		}
		if (i >= len)
			return -1;
		i++; /* closing quote */
	} else {
		size_t start = i;
		while (i < len && (smtp__is_atext((unsigned char)s[i]) || s[i] == '.'))
			i++;
		if (i == start)
			return -1;
	}
	if (i >= len)
		return -1;
	if (s[i] == '@') {
		i++;
		size_t dom = i;
		if (i < len && s[i] == '[') {
			while (i < len && s[i] != ']')
				i++;
			if (i < len)
				i++;
		} else {
			while (i < len && s[i] != '>')
				i++;
		}
		if (!smtp__domain_valid(s + dom, i - dom))
			return -1;
	} else if (!(i - box == 10 && strncasecmp(s + box, "postmaster", 10) == 0)) {
		/* Only <postmaster> may go without a domain (RFC 5321 4.5.1). */
		return -1;
	}
	if (i >= len || s[i] != '>' || i - box > SMTP_MAX_PATH - 2)
		return -1;
	*end_r = i + 1;
	*box_r = s + box;
	*box_len_r = i - box;
	return 0;
}

/* SIZE= and BODY= of MAIL FROM: 1 taken, 0 not ours, -1 bad value. */
static int smtp__mail_param_parse(const char *key, size_t key_len, const char *val,
				  size_t val_len, struct smtp_command *cmd)
{
	if (key_len == 4 && strncasecmp(key, "SIZE", 4) == 0) {
		uint64_t v = 0;
		if (val == NULL || val_len > 19)
			return smtp__error(cmd, 501, "5.5.4", "Invalid SIZE parameter");
		for (size_t k = 0; k < val_len; k++) {
			if (val[k] < '0' || val[k] > '9')
				return smtp__error(cmd, 501, "5.5.4", "Invalid SIZE parameter");
			v = v * 10 + (uint64_t)(val[k] - '0');
		}
		cmd->params.has_size = 1;
		cmd->params.size = v;
		return 1;
	}
	if (key_len == 4 && strncasecmp(key, "BODY", 4) == 0) {
		if (val != NULL && val_len == 4 && strncasecmp(val, "7BIT", 4) == 0)
			cmd->params.body = SMTP_BODY_7BIT;
		else if (val != NULL && val_len == 8 && strncasecmp(val, "8BITMIME", 8) == 0)
			cmd->params.body = SMTP_BODY_8BITMIME;
		else
			return smtp__error(cmd, 501, "5.5.4", "Invalid BODY parameter");
		return 1;
	}
	return 0;
}

/* Parse ESMTP parameters "KEY[=VALUE] ..." of len bytes at s. Each word
 * goes to the parameters of its command (MAIL: SIZE, BODY, then DSN's RET
 * and ENVID; RCPT: DSN's NOTIFY and ORCPT); one nobody takes is 555. */
static int smtp__params_parse(const char *s, size_t len, enum smtp_command_kind kind,
			      unsigned flags, struct smtp_command *cmd)
{
	size_t i = 0;
	while (i < len) {
		while (i < len && s[i] == ' ')
			i++;
		if (i >= len)
			break;
		size_t key = i;
		while (i < len &&
		       (smtp__is_alnum((unsigned char)s[i]) || (s[i] == '-' && i > key)))
			i++;
		size_t key_len = i - key;
		const char *val = NULL;
		size_t val_len = 0;
		if (i < len && s[i] == '=') {
			val = s + ++i;
			while (i < len && s[i] != ' ' && s[i] != '=')
				i++;
			val_len = (size_t)(s + i - val);
		}
		if (key_len == 0 || (i < len && s[i] != ' ') || (val != NULL && val_len == 0))
			return smtp__error(cmd, 501, "5.5.4", "Syntax error in parameters");
		int ret = 0;
		const char *why = NULL;
		if (kind == SMTP_CMD_MAIL) {
			ret = smtp__mail_param_parse(s + key, key_len, val, val_len, cmd);
			if (ret < 0)
				return ret;
			if (ret == 0 && (flags & SMTP_PARSER_DSN))
				/* no SMTPUTF8 yet (8-bit bytes are refused above):
				 * no DSN_PARSE_SMTPUTF8 */
				ret = dsn_mail_param_parse(&cmd->params.dsn, s + key, key_len,
							   val, val_len, 0, &why);
		} else if (flags & SMTP_PARSER_DSN) {
			ret = dsn_rcpt_param_parse(&cmd->rcpt_params.dsn, s + key, key_len, val,
						   val_len, 0, &why);
		}
		if (ret < 0)
			return smtp__error(cmd, 501, "5.5.4", why);
		if (ret == 0)
			return smtp__error(cmd, 555, "5.5.4", "Unsupported parameter");
	}
	return 1;
}

/* MAIL FROM:<path> params / RCPT TO:<path> params; rest is after the verb. */
static int smtp__mail_rcpt_parse(char *rest, size_t len, enum smtp_command_kind kind,
				 unsigned flags, struct smtp_command *cmd)
{
	const char *prefix = kind == SMTP_CMD_MAIL ? "FROM:" : "TO:";
	size_t plen = strlen(prefix);
	if (len < plen || strncasecmp(rest, prefix, plen) != 0)
		return smtp__error(cmd, 501, "5.5.4", verbs[kind].usage);
	size_t i = plen;
	while (i < len && rest[i] == ' ') /* lenient: "MAIL FROM: <a@b>" */
		i++;
	if (i >= len || rest[i] != '<')
		return smtp__error(cmd, 501, "5.5.4", verbs[kind].usage);
	size_t end, box_len;
	char *box;
	if (smtp__path_parse(rest + i, len - i, kind == SMTP_CMD_MAIL, &end, &box, &box_len) < 0) {
		if (kind == SMTP_CMD_MAIL)
			return smtp__error(cmd, 501, "5.1.7", "Bad sender address syntax");
		return smtp__error(cmd, 501, "5.1.3", "Bad recipient address syntax");
	}
	i += end;
	if (i < len && rest[i] != ' ')
		return smtp__error(cmd, 501, "5.5.4", verbs[kind].usage);
	int ret = smtp__params_parse(rest + i, len - i, kind, flags, cmd);
	if (ret < 0)
		return ret;
	box[box_len] = '\0'; /* overwrites '>' (or the first byte after '<') */
	cmd->arg = box;
	return 1;
}

/* Parse one complete line (terminator removed) of len bytes in line[]. */
static int smtp__line_parse(char *line, size_t len, unsigned flags, struct smtp_command *cmd)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];
		if (c < 0x20 || c >= 0x7f)
			return smtp__error(cmd, 501, "5.5.2", "Invalid character in command");
	}
	while (len > 0 && line[len - 1] == ' ')
		len--;
	line[len] = '\0';
	size_t vlen = 0;
	while (vlen < len && line[vlen] != ' ')
		vlen++;
	if (vlen == 0)
		return smtp__error(cmd, 500, "5.5.2", "Error: bad syntax");
	for (int k = SMTP_CMD_UNKNOWN + 1; k < SMTP_CMD_COUNT_; k++) {
		if (strlen(verbs[k].name) == vlen && strncasecmp(line, verbs[k].name, vlen) == 0) {
			cmd->kind = (enum smtp_command_kind)k;
			break;
		}
	}
	if (cmd->kind == SMTP_CMD_UNKNOWN)
		return smtp__error(cmd, 500, "5.5.2", "Error: command not recognized");
	const struct smtp__verb *v = &verbs[cmd->kind];
	char *rest = line + vlen;
	while (*rest == ' ')
		rest++;
	size_t rest_len = len - (size_t)(rest - line);
	switch (v->syntax) {
	case SMTP__SYN_NONE:
		if (rest_len > 0)
			return smtp__error(cmd, 501, "5.5.4", v->usage);
		return 1;
	case SMTP__SYN_REQUIRED:
		if (rest_len == 0)
			return smtp__error(cmd, 501, "5.5.4", v->usage);
		/* fall through */
	case SMTP__SYN_ANY:
		cmd->arg = rest;
		return 1;
	case SMTP__SYN_DOMAIN:
		if (rest_len == 0 || memchr(rest, ' ', rest_len) != NULL)
			return smtp__error(cmd, 501, "5.5.4", v->usage);
		if (!smtp__domain_valid(rest, rest_len))
			return smtp__error(cmd, 501, "5.5.4", "Invalid domain name");
		cmd->arg = rest;
		return 1;
	case SMTP__SYN_MAIL:
	case SMTP__SYN_RCPT:
		return smtp__mail_rcpt_parse(rest, rest_len, cmd->kind, flags, cmd);
	}
	return smtp__error(cmd, 500, "5.5.2", "Error: bad syntax");
}

int smtp_command_parser_feed(smtp_command_parser *p, const uint8_t *data, size_t len,
			     size_t *consumed_r, struct smtp_command *cmd_r)
{
	memset(cmd_r, 0, sizeof *cmd_r);
	const uint8_t *lf = memchr(data, '\n', len);
	size_t take = lf != NULL ? (size_t)(lf - data) : len; /* bytes before LF */
	*consumed_r = lf != NULL ? take + 1 : len;

	if (p->state == SMTP_COMMAND_PARSER_LINE) {
		/* The stored line plus its LF must fit in max_line. */
		if (p->line.len + take + 1 > p->limits.max_line) {
			p->state = SMTP_COMMAND_PARSER_DISCARD;
			buf_reset(&p->line);
		} else {
			buf_append(&p->line, data, take);
		}
	}
	if (lf == NULL)
		return 0;
	if (p->state == SMTP_COMMAND_PARSER_DISCARD) {
		p->state = SMTP_COMMAND_PARSER_LINE;
		return smtp__error(cmd_r, 500, "5.5.6", "Line too long");
	}
	size_t n = p->line.len;
	if (n > 0 && p->line.data[n - 1] == '\r')
		n--;
	/* Room for the NUL: the line holds at most max_line - 1 bytes. */
	buf_reserve(&p->line, 1);
	int ret = smtp__line_parse((char *)p->line.data, n, p->flags, cmd_r);
	/* The strings in cmd_r stay valid: reset only drops the length. */
	p->line.len = 0;
	return ret;
}

void smtp_data_reader_init(smtp_data_reader *r, size_t max_size)
{
	memset(r, 0, sizeof *r);
	r->max_size = max_size;
	r->state = SMTP_DATA_BOL;
	buf_init(&r->body);
}

void smtp_data_reader_deinit(smtp_data_reader *r)
{
	buf_deinit(&r->body);
}

void smtp_data_reader_reset(smtp_data_reader *r)
{
	size_t max = r->max_size;
	buf_deinit(&r->body);
	smtp_data_reader_init(r, max);
}

void smtp_data_reader_drop(smtp_data_reader *r)
{
	r->dropped = 1;
	buf_deinit(&r->body);
	buf_init(&r->body);
}

/* Store n message bytes, or only count them once over the limit. */
static void smtp__data_store(smtp_data_reader *r, const uint8_t *d, size_t n)
{
	if (!r->too_big && n > r->max_size - r->size) {
		r->too_big = 1;
		buf_deinit(&r->body);
		buf_init(&r->body);
	}
	r->size += n;
	if (!r->too_big && !r->dropped)
		buf_append(&r->body, d, n);
}

int smtp_data_reader_feed(smtp_data_reader *r, const uint8_t *data, size_t len,
			  size_t *consumed_r)
{
	static const uint8_t cr = '\r';
	size_t i = 0;
	while (i < len && r->state != SMTP_DATA_DONE) {
		uint8_t c = data[i];
		switch (r->state) {
		case SMTP_DATA_BOL:
			if (c == '.') {
				r->state = SMTP_DATA_DOT;
				i++;
			} else {
				r->state = SMTP_DATA_TEXT;
			}
			break;
		case SMTP_DATA_DOT:
			if (c == '\r') {
				r->state = SMTP_DATA_DOT_CR;
				i++;
			} else {
				/* The leading dot was stuffing: drop it. */
				r->state = SMTP_DATA_TEXT;
			}
			break;
		case SMTP_DATA_DOT_CR:
			if (c == '\n') {
				r->state = SMTP_DATA_DONE;
				i++;
			} else {
				/* "." CR x: the dot was stuffing, the CR is data. */
				smtp__data_store(r, &cr, 1);
				r->state = SMTP_DATA_CR;
			}
			break;
		case SMTP_DATA_TEXT: {
			const uint8_t *p = memchr(data + i, '\r', len - i);
			size_t run = p != NULL ? (size_t)(p - (data + i)) + 1 : len - i;
			smtp__data_store(r, data + i, run);
			i += run;
			if (p != NULL)
				r->state = SMTP_DATA_CR;
			break;
		}
		case SMTP_DATA_CR:
			smtp__data_store(r, &c, 1);
			i++;
			if (c == '\n')
				r->state = SMTP_DATA_BOL;
			else if (c != '\r')
				r->state = SMTP_DATA_TEXT;
			break;
		case SMTP_DATA_DONE:
			break;
		}
	}
	*consumed_r = i;
	return r->state == SMTP_DATA_DONE ? 1 : 0;
}
