/* daemon-options.h: a daemon's command line as a table (public contract).
 *
 * Every option is one row: long name, kind, the field its value goes to
 * (an offset into a settings struct), the accepted range, the default and
 * one line of help. A daemon's command line is a list of groups of rows:
 * shared tables (daemon-main.h: every daemon; daemon-node.h: the
 * partitioned nodes) and its own, each with the offset of the struct its
 * rows fill within the daemon's settings struct. From that one description
 *   daemon_options_parse()  fills the settings: every row's default first,
 *                           then a row's environment variable, if it has
 *                           one and it is set, then argv ("--name VALUE"
 *                           or "--name=VALUE");
 *   daemon_options_usage()  prints --help: each option with its value,
 *                           help, range and default.
 * Names are matched exactly (no abbreviations); an option given twice keeps
 * the last value. A row without help, or whose default is outside its
 * range, fails every parse (the daemon does not start). Tables are const
 * data; nothing here keeps state.
 */
#ifndef MAIL_DAEMON_OPTIONS_H
#define MAIL_DAEMON_OPTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* What a row parses and the type of the field it fills. */
enum daemon_option_kind {
	DAEMON_OPTION_UINT,   /* unsigned: a decimal in [min, max] */
	DAEMON_OPTION_U64,    /* uint64_t: a decimal in [min, max] */
	DAEMON_OPTION_STRING, /* const char *: non-empty, borrowed from argv or the row */
	DAEMON_OPTION_LISTEN, /* struct daemon_listen: HOST:PORT or [V6]:PORT */
	DAEMON_OPTION_FLAG,   /* int: 1 when given (takes no value), else 0 */
	DAEMON_OPTION_ADDRESS, /* struct daemon_listen: IPv4:PORT or [IPv6]:PORT, an IP
				* literal (no name) and a port in 1..65535 */
};

struct daemon_option {
	const char *name;             /* without the leading "--"; NULL ends a table */
	enum daemon_option_kind kind;
	size_t offset;                /* of the field in the group's struct */
	const char *value_name;       /* its value in --help ("N", "URL"); not FLAG */
	uint64_t min, max;            /* UINT, U64: the accepted range */
	uint64_t def;                 /* UINT, U64: the default */
	const char *def_text;         /* STRING, LISTEN: the default; NULL = none */
	int required;                 /* STRING, LISTEN: 1 = no default, must be given */
	const char *help;             /* one line */
	/* Optional: an environment variable ("MAIL_DNS") whose value, when
	 * set and not empty, stands in for the default (argv still wins),
	 * checked as a value from argv is. Not for FLAG rows. */
	const char *env;
};

/* A daemon's own default for one row of a shared table (a node role's log
 * bounds, say): it replaces the row's def / def_text for that daemon, in
 * parsing and in --help alike. */
struct daemon_option_default {
	const char *name;             /* a row of the group; NULL ends the list */
	uint64_t def;
	const char *def_text;
};

struct daemon_option_group {
	const struct daemon_option *rows;   /* NULL ends the list of groups */
	size_t offset;                      /* of the rows' struct in the settings */
	const struct daemon_option_default *defaults; /* NULL: the rows' own */
};

/* A parsed listen address. */
#define DAEMON_LISTEN_HOST_MAX 255
struct daemon_listen {
	const char *text;                        /* as given (borrowed); NULL: not set */
	char host[DAEMON_LISTEN_HOST_MAX + 1];   /* a v6 literal without its [] */
	int port;                                /* 0..65535; 0 picks a free port */
};

/* Room for daemon_options_parse()'s error line. */
#define DAEMON_OPTIONS_ERROR_MAX 512

/* Fill settings from the groups' defaults, then from the environment envp
 * ("NAME=VALUE" strings, NULL-terminated, as environ; NULL: none) for the
 * rows that name a variable, then from argv[1..argc-1]. Returns 0 when
 * filled; 1 when --help (or -h) was given (the rest of argv is not looked
 * at); -1 with one line in error_r naming the option (and the variable,
 * for a bad value from the environment) and what it accepts (unknown
 * option, missing or bad value, a required option not given, an argument
 * that is no option). STRING values point into argv or envp, which must
 * outlive the settings. Pure (no I/O; the environment is what envp says). */
int daemon_options_parse_env(const struct daemon_option_group *groups, void *settings, int argc,
			     char *const *argv, char *const *envp,
			     char error_r[DAEMON_OPTIONS_ERROR_MAX]);
/* daemon_options_parse_env() without an environment. */
int daemon_options_parse(const struct daemon_option_group *groups, void *settings, int argc,
			 char *const *argv, char error_r[DAEMON_OPTIONS_ERROR_MAX]);

/* Print --help to out: "usage: prog" with the required options, summary,
 * then every option (and --help) with its help line and, beneath, its
 * range, its default or that it is required, and the environment variable
 * that may give it. */
void daemon_options_usage(FILE *out, const char *prog, const char *summary,
			  const struct daemon_option_group *groups);

/* Parse a decimal in [min, max]. Returns 0, or -1. */
int daemon_options_parse_uint(const char *s, unsigned min, unsigned max, unsigned *value_r);
/* Parse a decimal in [min, max] into 64 bits. Returns 0, or -1. */
int daemon_options_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *value_r);
/* Parse a listen address "host:port" or "[v6]:port", port 0..65535, into
 * *listen_r (text = s, borrowed). Returns 0, or -1 with *error_r (static
 * text). */
int daemon_listen_parse(const char *s, struct daemon_listen *listen_r, const char **error_r);
/* Parse an ADDRESS row's value, "A.B.C.D:PORT" or "[V6]:PORT" (an IP
 * literal, port 1..65535: util_ipport_parse), into *listen_r (text = s,
 * borrowed). Returns 0, or -1 with *error_r (static text). */
int daemon_address_parse(const char *s, struct daemon_listen *listen_r, const char **error_r);

#endif
