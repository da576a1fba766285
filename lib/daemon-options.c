/* daemon-options.c: daemon-options.h. Rows are found by a linear walk of
 * the groups (a daemon has a few dozen options at most); the settings are
 * written through each row's offset, so the field's type must be the one
 * its kind names (daemon-options.h). */
#include "daemon-options.h"

#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int daemon_options_parse_uint(const char *s, unsigned min, unsigned max, unsigned *value_r)
{
	uint64_t v;
	if (daemon_options_parse_u64(s, min, max, &v) < 0)
		return -1;
	*value_r = (unsigned)v;
	return 0;
}

int daemon_options_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *value_r)
{
	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*value_r = (uint64_t)v;
	return 0;
}

int daemon_listen_parse(const char *s, struct daemon_listen *listen_r, const char **error_r)
{
	const char *colon = strrchr(s, ':');
	if (colon == NULL || colon == s) {
		*error_r = "expected host:port";
		return -1;
	}
	const char *host = s;
	size_t host_len = (size_t)(colon - s);
	if (host[0] == '[') {
		if (host_len < 3 || host[host_len - 1] != ']') {
			*error_r = "bad [v6] address";
			return -1;
		}
		host++;
		host_len -= 2;
	}
	if (host_len > DAEMON_LISTEN_HOST_MAX) {
		*error_r = "host too long";
		return -1;
	}
	unsigned port;
	if (daemon_options_parse_uint(colon + 1, 0, 65535, &port) < 0) {
		*error_r = "port must be 0..65535";
		return -1;
	}
	memcpy(listen_r->host, host, host_len);
	listen_r->host[host_len] = '\0';
	listen_r->port = (int)port;
	listen_r->text = s;
	return 0;
}

int daemon_address_parse(const char *s, struct daemon_listen *listen_r, const char **error_r)
{
	struct sockaddr_storage ss;
	if (util_ipport_parse(s, &ss, error_r) < 0)
		return -1;
	/* util_ipport_parse took it apart: the host is what is left of the
	 * last ':', without the [] of a v6 literal */
	return daemon_listen_parse(s, listen_r, error_r);
}

static int options__error(char *error_r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int options__error(char *error_r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(error_r, DAEMON_OPTIONS_ERROR_MAX, fmt, ap);
	va_end(ap);
	return -1;
}

static void *options__field(const struct daemon_option_group *g, const struct daemon_option *row,
			    void *settings)
{
	return (char *)settings + g->offset + row->offset;
}

static const struct daemon_option_default *options__override(const struct daemon_option_group *g,
							     const char *name)
{
	for (const struct daemon_option_default *d = g->defaults; d != NULL && d->name != NULL; d++) {
		if (strcmp(d->name, name) == 0)
			return d;
	}
	return NULL;
}

/* The row's default for this daemon: the group's override, else its own. */
static void options__default(const struct daemon_option_group *g, const struct daemon_option *row,
			     uint64_t *def_r, const char **text_r)
{
	const struct daemon_option_default *d = options__override(g, row->name);
	*def_r = d != NULL ? d->def : row->def;
	*text_r = d != NULL ? d->def_text : row->def_text;
}

static int options__set(const struct daemon_option *row, void *field, const char *value,
			char *error_r)
{
	uint64_t v;
	const char *why;
	switch (row->kind) {
	case DAEMON_OPTION_UINT:
	case DAEMON_OPTION_U64:
		if (daemon_options_parse_u64(value, row->min, row->max, &v) < 0)
			return options__error(error_r,
					      "--%s must be a number in %" PRIu64 "..%" PRIu64
					      ", not \"%s\"",
					      row->name, row->min, row->max, value);
		if (row->kind == DAEMON_OPTION_UINT)
			*(unsigned *)field = (unsigned)v;
		else
			*(uint64_t *)field = v;
		return 0;
	case DAEMON_OPTION_STRING:
		if (*value == '\0')
			return options__error(error_r, "--%s must not be empty", row->name);
		*(const char **)field = value;
		return 0;
	case DAEMON_OPTION_LISTEN:
		if (daemon_listen_parse(value, field, &why) < 0)
			return options__error(error_r,
					      "--%s must be HOST:PORT or [V6]:PORT with a port in "
					      "0..65535, not \"%s\" (%s)",
					      row->name, value, why);
		return 0;
	case DAEMON_OPTION_ADDRESS:
		if (daemon_address_parse(value, field, &why) < 0)
			return options__error(error_r,
					      "--%s must be IPv4:PORT or [IPv6]:PORT (an IP address, "
					      "a port in 1..65535), not \"%s\" (%s)",
					      row->name, value, why);
		return 0;
	case DAEMON_OPTION_FLAG:
		*(int *)field = 1;
		return 0;
	}
	return options__error(error_r, "--%s: unknown kind", row->name);
}

/* A row without help or a value name, or whose default is outside its
 * range, is a table error: every daemon refuses to start with it. */
static int options__set_default(const struct daemon_option_group *g,
				const struct daemon_option *row, void *field, char *error_r)
{
	uint64_t def;
	const char *text;
	options__default(g, row, &def, &text);
	int numeric = row->kind == DAEMON_OPTION_UINT || row->kind == DAEMON_OPTION_U64;
	if (row->help == NULL || (row->kind != DAEMON_OPTION_FLAG && row->value_name == NULL) ||
	    (row->kind == DAEMON_OPTION_FLAG && row->env != NULL) ||
	    (numeric && (row->min > row->max || def < row->min || def > row->max)) ||
	    (row->kind == DAEMON_OPTION_UINT && row->max > UINT_MAX))
		return options__error(error_r, "the table row of --%s is incomplete or its "
					       "default is outside its range", row->name);
	switch (row->kind) {
	case DAEMON_OPTION_UINT:
		*(unsigned *)field = (unsigned)def;
		return 0;
	case DAEMON_OPTION_U64:
		*(uint64_t *)field = def;
		return 0;
	case DAEMON_OPTION_STRING:
		*(const char **)field = text;
		return 0;
	case DAEMON_OPTION_LISTEN:
	case DAEMON_OPTION_ADDRESS:
		memset(field, 0, sizeof(struct daemon_listen));
		return text != NULL ? options__set(row, field, text, error_r) : 0;
	case DAEMON_OPTION_FLAG:
		*(int *)field = 0;
		return 0;
	}
	return 0;
}

/* The value of variable name in envp, or NULL (unset or empty). */
static const char *options__getenv(char *const *envp, const char *name)
{
	size_t len = strlen(name);
	for (char *const *e = envp; e != NULL && *e != NULL; e++) {
		if (strncmp(*e, name, len) == 0 && (*e)[len] == '=')
			return (*e)[len + 1] != '\0' ? *e + len + 1 : NULL;
	}
	return NULL;
}

/* Every row that names a variable set in envp: its value, as from argv;
 * a bad one names the variable too. */
static int options__apply_env(const struct daemon_option_group *groups, void *settings,
			      char *const *envp, char *error_r)
{
	for (const struct daemon_option_group *g = groups; g->rows != NULL; g++) {
		for (const struct daemon_option *row = g->rows; row->name != NULL; row++) {
			const char *value = row->env != NULL ? options__getenv(envp, row->env) : NULL;
			if (value == NULL)
				continue;
			if (options__set(row, options__field(g, row, settings), value, error_r) < 0) {
				size_t len = strlen(error_r);
				snprintf(error_r + len, DAEMON_OPTIONS_ERROR_MAX - len,
					 " (from the environment: %s)", row->env);
				return -1;
			}
		}
	}
	return 0;
}

/* Every row of every group to its default; a default naming no row of its
 * group is a table error. */
static int options__apply_defaults(const struct daemon_option_group *groups, void *settings,
				   char *error_r)
{
	for (const struct daemon_option_group *g = groups; g->rows != NULL; g++) {
		for (const struct daemon_option *row = g->rows; row->name != NULL; row++) {
			if (options__set_default(g, row, options__field(g, row, settings),
						 error_r) < 0)
				return -1;
		}
		for (const struct daemon_option_default *d = g->defaults; d != NULL && d->name != NULL;
		     d++) {
			const struct daemon_option *row = g->rows;
			while (row->name != NULL && strcmp(row->name, d->name) != 0)
				row++;
			if (row->name == NULL)
				return options__error(error_r, "a default for --%s, which no table has",
						      d->name);
		}
	}
	return 0;
}

static int options__find(const struct daemon_option_group *groups, const char *name, size_t len,
			 const struct daemon_option_group **group_r, const struct daemon_option **row_r)
{
	for (const struct daemon_option_group *g = groups; g->rows != NULL; g++) {
		for (const struct daemon_option *row = g->rows; row->name != NULL; row++) {
			if (strlen(row->name) == len && memcmp(row->name, name, len) == 0) {
				*group_r = g;
				*row_r = row;
				return 0;
			}
		}
	}
	return -1;
}

/* A required row (STRING or LISTEN, no default) is set once its field is. */
static int options__check_required(const struct daemon_option_group *groups, void *settings,
				   char *error_r)
{
	for (const struct daemon_option_group *g = groups; g->rows != NULL; g++) {
		for (const struct daemon_option *row = g->rows; row->name != NULL; row++) {
			if (!row->required)
				continue;
			const void *field = options__field(g, row, settings);
			int listen = row->kind == DAEMON_OPTION_LISTEN ||
				     row->kind == DAEMON_OPTION_ADDRESS;
			const char *set = listen ? ((const struct daemon_listen *)field)->text
						  : *(const char *const *)field;
			if (set == NULL)
				return options__error(error_r, "--%s %s is required", row->name,
						      row->value_name);
		}
	}
	return 0;
}

int daemon_options_parse(const struct daemon_option_group *groups, void *settings, int argc,
			 char *const *argv, char error_r[DAEMON_OPTIONS_ERROR_MAX])
{
	return daemon_options_parse_env(groups, settings, argc, argv, NULL, error_r);
}

int daemon_options_parse_env(const struct daemon_option_group *groups, void *settings, int argc,
			     char *const *argv, char *const *envp,
			     char error_r[DAEMON_OPTIONS_ERROR_MAX])
{
	if (options__apply_defaults(groups, settings, error_r) < 0)
		return -1;
	/* a bad value in the environment fails the parse after argv, so
	 * that --help still works (error_r keeps its line until then) */
	int env_bad = options__apply_env(groups, settings, envp, error_r) < 0;
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)
			return 1;
		if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0')
			return options__error(error_r, "unexpected argument \"%s\"", arg);
		const char *name = arg + 2;
		const char *eq = strchr(name, '=');
		size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
		const struct daemon_option_group *g;
		const struct daemon_option *row;
		if (options__find(groups, name, len, &g, &row) < 0)
			return options__error(error_r, "unknown option \"--%.*s\"", (int)len, name);
		const char *value = NULL;
		if (eq != NULL)
			value = eq + 1;
		else if (row->kind != DAEMON_OPTION_FLAG && i + 1 < argc)
			value = argv[++i];
		if (row->kind == DAEMON_OPTION_FLAG && value != NULL)
			return options__error(error_r, "--%s takes no value", row->name);
		if (row->kind != DAEMON_OPTION_FLAG && value == NULL)
			return options__error(error_r, "--%s needs a value (%s)", row->name,
					      row->value_name);
		if (options__set(row, options__field(g, row, settings), value, error_r) < 0)
			return -1;
	}
	if (env_bad)
		return -1;
	return options__check_required(groups, settings, error_r);
}

#define OPTIONS__HELP_COLUMN 24

static void options__usage_row(FILE *out, const struct daemon_option_group *g,
			       const struct daemon_option *row)
{
	char head[128];
	if (row->kind == DAEMON_OPTION_FLAG)
		snprintf(head, sizeof head, "--%s", row->name);
	else
		snprintf(head, sizeof head, "--%s %s", row->name, row->value_name);
	fprintf(out, "  %-*s %s\n", OPTIONS__HELP_COLUMN, head, row->help);
	uint64_t def;
	const char *text;
	options__default(g, row, &def, &text);
	if (row->required)
		fprintf(out, "  %-*s required\n", OPTIONS__HELP_COLUMN, "");
	else if (row->kind == DAEMON_OPTION_UINT || row->kind == DAEMON_OPTION_U64)
		fprintf(out, "  %-*s %" PRIu64 "..%" PRIu64 ", default %" PRIu64 "\n",
			OPTIONS__HELP_COLUMN, "", row->min, row->max, def);
	else if (row->kind != DAEMON_OPTION_FLAG && text != NULL)
		fprintf(out, "  %-*s default %s\n", OPTIONS__HELP_COLUMN, "", text);
	if (row->env != NULL)
		fprintf(out, "  %-*s environment: %s\n", OPTIONS__HELP_COLUMN, "", row->env);
}

void daemon_options_usage(FILE *out, const char *prog, const char *summary,
			  const struct daemon_option_group *groups)
{
	fprintf(out, "usage: %s", prog);
	for (const struct daemon_option_group *g = groups; g->rows != NULL; g++) {
		for (const struct daemon_option *row = g->rows; row->name != NULL; row++) {
			if (row->required)
				fprintf(out, " --%s %s", row->name, row->value_name);
		}
	}
	fprintf(out, " [OPTION...]\n\n%s\n\noptions:\n", summary);
	for (const struct daemon_option_group *g = groups; g->rows != NULL; g++) {
		for (const struct daemon_option *row = g->rows; row->name != NULL; row++)
			options__usage_row(out, g, row);
	}
	fprintf(out, "  %-*s print this help and exit\n", OPTIONS__HELP_COLUMN, "--help");
}
