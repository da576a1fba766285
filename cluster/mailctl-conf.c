/* mailctl-conf.c: where mailctl finds etcd and its credentials.
 *
 * Precedence, highest first, per setting:
 *   1. the command line (--etcd, --etcd-ca, --etcd-cert, --etcd-key,
 *      --etcd-user, --etcd-password-file; --node-cert, --node-key,
 *      --cluster-ca: mutual TLS to the nodes, for mailctl queue);
 *   2. $MAIL_ETCD (the URL only);
 *   3. a settings file: $MAIL_ETCD_CONF, else ./state/mailctl.conf when it
 *      exists (what `cluster/local up` writes, so mailctl run from the
 *      checkout reaches the local cluster with no flags);
 *   4. the default URL, no TLS files, no user.
 * The settings file has one "name = value" per line, the names of the
 * options without "--" ("etcd = https://127.0.0.1:23790"); "#" starts a
 * comment line. A relative path in it is taken from the file's directory.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "etcd.h"
#include "mailctl-private.h"
#include "xalloc.h"

#define MAILCTL_CONF_LOCAL "state/mailctl.conf"
#define MAILCTL_CONF_LINE_MAX 4096

/* The settings, by option name; index i is field i of mailctl_etcd_opts. */
static const char *const conf_names[MAILCTL_ETCD_OPTS] = {
	"etcd", "etcd-ca", "etcd-cert", "etcd-key", "etcd-user", "etcd-password-file",
	"node-cert", "node-key", "cluster-ca",
};

int mailctl_conf_option(struct mailctl_etcd_opts *opts, const char *name, const char *value)
{
	for (int i = 0; i < MAILCTL_ETCD_OPTS; i++) {
		if (strcmp(conf_names[i], name) == 0) {
			opts->v[i] = value;
			return 0;
		}
	}
	return -1;
}

static char *conf_trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' ||
			 s[n - 1] == '\r'))
		s[--n] = '\0';
	return s;
}

/* A path of the file at dir (the file's directory, with its '/'). */
static char *conf_path(const char *dir, size_t dir_len, const char *name, const char *value)
{
	int is_path = strcmp(name, "etcd") != 0 && strcmp(name, "etcd-user") != 0;
	if (!is_path || value[0] == '/' || dir_len == 0)
		return xstrdup(value);
	return xasprintf("%.*s%s", (int)dir_len, dir, value);
}

/* Read the settings file into file_opts (values owned by ctl). Returns 0,
 * or -1 after printing why. A missing default file is no error. */
static int conf_read(mailctl *ctl, const char *path, int must_exist,
		     struct mailctl_etcd_opts *file_opts)
{
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		if (!must_exist && errno == ENOENT)
			return 0;
		mailctl_fail(ctl, "cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	const char *slash = strrchr(path, '/');
	size_t dir_len = slash != NULL ? (size_t)(slash - path) + 1 : 0;
	char line[MAILCTL_CONF_LINE_MAX];
	int ret = 0;
	for (int lineno = 1; fgets(line, sizeof line, f) != NULL; lineno++) {
		char *s = conf_trim(line);
		if (*s == '\0' || *s == '#')
			continue;
		char *eq = strchr(s, '=');
		if (eq == NULL) {
			mailctl_fail(ctl, "%s:%d: expected name = value", path, lineno);
			ret = -1;
			break;
		}
		*eq = '\0';
		char *name = conf_trim(s), *value = conf_trim(eq + 1);
		char *v = conf_path(path, dir_len, name, value);
		if (*value == '\0' || mailctl_conf_option(file_opts, name, v) < 0) {
			mailctl_fail(ctl, "%s:%d: %s \"%s\"", path, lineno,
				     *value == '\0' ? "empty value for" : "unknown setting", name);
			free(v);
			ret = -1;
			break;
		}
		ctl->owned = xrealloc(ctl->owned, (ctl->n_owned + 1) * sizeof *ctl->owned);
		ctl->owned[ctl->n_owned++] = v;
	}
	fclose(f);
	return ret;
}

int mailctl_conf_load(mailctl *ctl, const struct mailctl_etcd_opts *cli)
{
	struct mailctl_etcd_opts file = { { NULL } };
	const char *path = getenv("MAIL_ETCD_CONF");
	int must_exist = path != NULL && path[0] != '\0';
	if (conf_read(ctl, must_exist ? path : MAILCTL_CONF_LOCAL, must_exist, &file) < 0)
		return -1;
	const char *env_url = getenv("MAIL_ETCD");
	if (env_url != NULL && env_url[0] != '\0')
		file.v[0] = env_url;
	const char *v[MAILCTL_ETCD_OPTS];
	for (int i = 0; i < MAILCTL_ETCD_OPTS; i++)
		v[i] = cli->v[i] != NULL ? cli->v[i] : file.v[i];
	if (v[0] == NULL)
		v[0] = MAILCTL_DEFAULT_ETCD;
	if ((v[2] == NULL) != (v[3] == NULL)) {
		mailctl_fail(ctl, "--etcd-cert and --etcd-key go together");
		return -1;
	}
	if ((v[4] == NULL) != (v[5] == NULL)) {
		mailctl_fail(ctl, "--etcd-user and --etcd-password-file go together");
		return -1;
	}
	if ((v[6] == NULL) != (v[7] == NULL) || (v[6] == NULL) != (v[8] == NULL)) {
		mailctl_fail(ctl, "--node-cert, --node-key and --cluster-ca go together");
		return -1;
	}
	ctl->node_cert = v[6];
	ctl->node_key = v[7];
	ctl->cluster_ca = v[8];
	const char *error;
	if (v[4] != NULL && etcd_conf_read_password(v[5], &ctl->etcd_password, &error) < 0) {
		mailctl_fail(ctl, "%s: %s", v[5], error);
		return -1;
	}
	ctl->etcd_tokens = etcd_tokens_create();
	ctl->etcd = (etcd_conf){
		.url = v[0], .ca_file = v[1], .cert_file = v[2], .key_file = v[3], .user = v[4],
		.password = ctl->etcd_password, .tokens = ctl->etcd_tokens,
	};
	return 0;
}

void mailctl_conf_free(mailctl *ctl)
{
	for (size_t i = 0; i < ctl->n_owned; i++)
		free(ctl->owned[i]);
	free(ctl->owned);
	ctl->owned = NULL;
	ctl->n_owned = 0;
	etcd_tokens_destroy(&ctl->etcd_tokens);
	if (ctl->etcd_password != NULL)
		xfree_secret(ctl->etcd_password, strlen(ctl->etcd_password));
	ctl->etcd_password = NULL;
}
