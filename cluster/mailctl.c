/* mailctl: the admin CLI (tenants and users in the etcd directory).
 *
 *   mailctl [--etcd URL] [--etcd-ca FILE] [--etcd-cert FILE --etcd-key FILE]
 *           [--etcd-user NAME --etcd-password-file FILE] [--verbose] COMMAND ...
 *
 * Where etcd is and as whom: mailctl-conf.c (the options, $MAIL_ETCD, the
 * settings file $MAIL_ETCD_CONF or ./state/mailctl.conf, the defaults).
 *
 * Passwords come from standard input (first line); on a terminal they are
 * prompted for twice without echo. Exit codes: 0 ok, 1 usage or invalid
 * argument, 2 not found, 3 already exists, 4 etcd (or, for mailctl queue,
 * a queue node) unreachable, 5 other.
 *
 * The library logs (key=value lines on stderr) are for daemons; mailctl
 * hides them unless --verbose and prints one clear line per error instead.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "directory.h"
#include "mailctl-private.h"
#include "mail-error.h"
#include "xalloc.h"

#define MAILCTL_PASSWORD_MAX 1024

static const char mailctl_usage_text[] =
	"usage: mailctl [ETCD OPTIONS] [NODE OPTIONS] [--verbose] COMMAND\n"
	"\n"
	"commands:\n"
	"  tenant add DOMAIN      add a hosted domain\n"
	"  tenant list            list hosted domains\n"
	"  tenant set DOMAIN [--outbound-per-hour N] [--delay-warning on|off]\n"
	"                         a tenant's settings: messages to outside recipients\n"
	"                         each user may submit per hour (0: no limit; at most\n"
	"                         1000000; over it 451 4.7.1), a \"delayed\" DSN after\n"
	"                         4 h; frontends see a change within 30 s\n"
	"  tenant set DOMAIN KEY=VALUE...\n"
	"                         inbound policies (docs/inbound.md): spf=off|record|\n"
	"                         reject, dmarc=off|record|enforce, ptr=record|reject|\n"
	"                         greylist, greylisting=on|off, greylist_delay=SECONDS,\n"
	"                         dnsbl=ZONE,ZONE, rhsbl=ZONE,ZONE, spam=on|off,\n"
	"                         postmaster=ADDRESS (also outbound_per_hour=N,\n"
	"                         delay_warning=on|off, max_users=N (0: no limit),\n"
	"                         suspended=on|off, quota_storage=SIZE,\n"
	"                         quota_messages=N, tenant_outbound_per_hour=N:\n"
	"                         all users together, per frontend; 0: no limit)\n"
	"  tenant show DOMAIN [--json]\n"
	"                         a tenant's settings\n"
	"  alias add ALIAS TARGET...\n"
	"                         mail to ALIAS (local@domain; @domain: the catch-all)\n"
	"                         goes to each TARGET (ours or outside: forwarded)\n"
	"  alias list DOMAIN [--json]\n"
	"                         a tenant's aliases: ALIAS TARGET,TARGET...\n"
	"  alias del ALIAS [TARGET]\n"
	"                         remove one target, or the whole alias\n"
	"  domain alias add ALIAS_DOMAIN TARGET_DOMAIN\n"
	"                         every address of ALIAS_DOMAIN is the same address\n"
	"                         of the tenant TARGET_DOMAIN\n"
	"  domain alias list [--json] | domain alias del ALIAS_DOMAIN\n"
	"  tenant suspend DOMAIN | tenant resume DOMAIN\n"
	"                         suspended: no login or submission, mail to it\n"
	"                         deferred (450 4.2.1) until resumed\n"
	"  tenant del DOMAIN [--purge]\n"
	"                         remove a tenant and its aliases; refused while it\n"
	"                         has users, unless --purge (deletes them, erasing\n"
	"                         their mail, with progress)\n"
	"  tenant list --json     tenants with their user counts, as JSON\n"
	"  user add ADDRESS       add a user (password from stdin)\n"
	"  user list DOMAIN [--json]\n"
	"                         list a domain's users (and their state)\n"
	"  user show ADDRESS [--json]\n"
	"                         a user's state and creation time\n"
	"  user passwd ADDRESS    set a user's password (from stdin)\n"
	"  user disable ADDRESS | user enable ADDRESS\n"
	"                         disabled: no login, mail to it refused (550 5.2.1)\n"
	"  user app-password add ADDRESS --name NAME\n"
	"                         a generated password for one device or program\n"
	"                         (IMAP, POP3, SMTP AUTH; not SCRAM), printed once\n"
	"  user app-password list ADDRESS [--json] | revoke ADDRESS ID|NAME\n"
	"  user del ADDRESS       delete a user and erase its mailbox (needs the\n"
	"                         node certificate: the store erases it)\n"
	"  quota set ADDRESS|DOMAIN [--storage SIZE] [--messages N]\n"
	"                         a user's or a tenant's quota (either flag alone\n"
	"                         too); SIZE in bytes or with K, M, G, T (1024-based);\n"
	"                         0 or unlimited removes that limit (docs/operations.md)\n"
	"  quota show ADDRESS|DOMAIN [--json]\n"
	"                         limits and usage (bytes, messages); for a domain the\n"
	"                         tenant's limits and the sum over its users\n"
	"  node list [--role R]   cluster nodes: role, id, address, alive|dead, draining,\n"
	"                         partitions led (primaries) and held (replicas)\n"
	"  node drain ID [--role R] [--no-wait] [--timeout S]\n"
	"                         mark a node draining; the controller moves its\n"
	"                         partitions away; prints progress every second until\n"
	"                         none are left (--no-wait: return at once)\n"
	"  node remove ID [--role R] [--force]\n"
	"                         delete a node's record; refused (exit 5) while it\n"
	"                         still holds partitions, unless --force\n"
	"  partitions [--role R] [--watch [SECONDS]]\n"
	"                         the partition map: epoch, primary, replicas, in-sync\n"
	"                         set and replication lag (entries behind the primary,\n"
	"                         0 in sync, ? unknown) per partition, and a\n"
	"                         summary per role; --watch reprints the partitions\n"
	"                         not in sync and the summary every SECONDS (default\n"
	"                         2) until all are in sync\n"
	"  status [--json] [--watch [SECONDS]]\n"
	"                         the cluster on one screen: nodes (alive, partitions\n"
	"                         led and held, worst lag), unhealthy partitions, the\n"
	"                         queue (messages by state, oldest), users per tenant;\n"
	"                         exit 5: a partition has no live primary, 4: etcd, a\n"
	"                         node or the queue unreachable; --watch reprints\n"
	"                         every SECONDS (default 2) until ^C (docs/status.md)\n"
	"  block list [--json]    addresses blocked on every frontend (auth failures,\n"
	"                         or an operator)\n"
	"  block add IP [--ttl S] block IP on every frontend (S seconds; 0: until removed)\n"
	"  block remove IP        lift a block\n"
	"  tls set DOMAIN --cert FILE --key FILE\n"
	"                         the certificate frontends serve for DOMAIN and its\n"
	"                         subdomains (SNI); loaded without a restart\n"
	"  tls list [--json]      domains with a certificate: subject, expiry\n"
	"  tls remove DOMAIN      back to the default certificate\n"
	"  dkim generate DOMAIN [--selector S] [--algorithm A]\n"
	"                         a new DKIM key for a tenant domain (A: rsa-sha256,\n"
	"                         the default, or ed25519-sha256; S: sYYYYMMDD); prints\n"
	"                         its DNS TXT record. Active unless the domain has an\n"
	"                         active key of that algorithm\n"
	"  dkim list [DOMAIN] [--json]\n"
	"                         domain, selector, algorithm, created, active\n"
	"  dkim rotate DOMAIN [--algorithm A]\n"
	"                         a new key under a new selector, active at once; the\n"
	"                         old one stays inactive until removed (no --algorithm:\n"
	"                         every algorithm with an active key)\n"
	"  dkim activate DOMAIN SELECTOR\n"
	"                         make a stored key the active one of its algorithm\n"
	"  dkim txt DOMAIN [SELECTOR]\n"
	"                         the DNS TXT records of the domain's keys\n"
	"  dkim remove DOMAIN SELECTOR\n"
	"                         delete a key\n"
	"  dns DOMAIN [--json]    the records DOMAIN must publish, zone-file form: MX,\n"
	"                         SPF, DKIM, DMARC (required); SRV (RFC 6186/8314),\n"
	"                         autoconfig, MTA-STS, TLS-RPT (optional)\n"
	"  dns check DOMAIN [--dns HOST[:PORT]] [--json]\n"
	"                         look each up: OK, MISSING, WRONG or ERROR and the\n"
	"                         expected value; exit 5 when a required one is\n"
	"                         missing or wrong, 4 when a lookup failed\n"
	"  dns platform set KEY=VALUE... | dns platform show [--json]\n"
	"                         the platform's names the records point at (mx=HOST\n"
	"                         first; docs/dns.md lists the keys)\n"
	"  relay set [--tenant DOMAIN] URL [--user USER]\n"
	"                         send remote mail (of DOMAIN's users) through URL\n"
	"                         (smtp://, smtp+starttls://, smtps:// HOST[:PORT]);\n"
	"                         --user: AUTH over TLS, password from stdin\n"
	"  relay show [--json]    the relays (never the password)\n"
	"  relay remove [--tenant DOMAIN]\n"
	"  transport set DOMAIN URL\n"
	"                         mail for DOMAIN goes to URL, not DOMAIN's MX\n"
	"  transport list [--json] | transport remove DOMAIN\n"
	"  tls-policy set DOMAIN none|may|encrypt|verify\n"
	"                         TLS toward DOMAIN's MXs (default may: STARTTLS when\n"
	"                         offered); tls-policy list [--json] | remove DOMAIN\n"
	"  queue list [--domain D] [--state deferred|active|held] [--limit N] [--json]\n"
	"                         queued messages on every alive queue node: id, state,\n"
	"                         age, size, attempts, next attempt, sender, pending\n"
	"                         recipients' domains, last error\n"
	"  queue show QID [--json]\n"
	"                         envelope, each recipient's state and last reply, next\n"
	"                         attempt (exit 2: no such message)\n"
	"  queue retry QID|--all|--domain D\n"
	"                         attempt now\n"
	"  queue hold QID | queue release QID\n"
	"                         no attempt until released; release: attempt now\n"
	"  queue delete QID [--bounce]\n"
	"                         drop it; --bounce: a DSN \"failed\" to the sender for\n"
	"                         each recipient not yet delivered\n"
	"  queue stats [--json]   counts by state, an age histogram, top destination\n"
	"                         domains\n"
	"\n"
	"etcd options (each also a line \"NAME = VALUE\" of the settings file):\n"
	"  --etcd URL             etcd's client URL(s), comma-separated\n"
	"  --etcd-ca FILE         CA of etcd's certificate (https)\n"
	"  --etcd-cert FILE       client certificate (PEM), with --etcd-key FILE\n"
	"  --etcd-user NAME       etcd user, with --etcd-password-file FILE (its first\n"
	"                         line is the password)\n"
	"node options (mailctl queue; also settings-file lines; none: plaintext RPC):\n"
	"  --node-cert FILE --node-key FILE --cluster-ca FILE\n"
	"                         mutual TLS to the queue nodes: a certificate with\n"
	"                         role admin (cluster/dev-ca DIR node NAME admin)\n"
	"etcd: the options, else $MAIL_ETCD (URL), else the settings file\n"
	"($MAIL_ETCD_CONF, else ./state/mailctl.conf, written by cluster/local up),\n"
	"else " MAILCTL_DEFAULT_ETCD "\n"
	"passwords: the first line of standard input (prompted twice on a terminal)\n"
	"exit codes: 0 ok, 1 usage, 2 not found, 3 already exists, 4 etcd unreachable\n"
	"(queue: or a queue node), 5 other\n";

void mailctl_fail(mailctl *ctl, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("mailctl: ", ctl->err);
	vfprintf(ctl->err, fmt, ap);
	fputc('\n', ctl->err);
	va_end(ap);
}

/* After a call failed as unavailable or refused: ask etcd once more what
 * is wrong with reaching it (TLS, our certificate, the user or password),
 * and print that as the one line. Returns 1 when it printed, 0 when etcd
 * takes us (the failure was about the command itself). */
static int mailctl_etcd_diagnose(mailctl *ctl)
{
	etcd_client *c = etcd_client_create(&ctl->etcd);
	const char *error;
	int err = etcd_client_check(c, &error);
	if (err != MAIL_OK) {
		if (err == MAIL_ERR_UNAVAILABLE)
			mailctl_fail(ctl, "etcd unreachable at %s (%s)", ctl->etcd.url, error);
		else
			mailctl_fail(ctl, "etcd: %s", error);
	}
	etcd_client_destroy(&c);
	return err != MAIL_OK;
}

/* Map a directory error to an exit code, printing what went wrong. */
int mailctl_error(mailctl *ctl, int err, const char *what, const char *name)
{
	switch (err) {
	case MAIL_OK:
		return MAILCTL_OK;
	case MAIL_ERR_NOT_FOUND:
		mailctl_fail(ctl, "%s %s: not found", what, name);
		return MAILCTL_NOT_FOUND;
	case MAIL_ERR_EXISTS:
		mailctl_fail(ctl, "%s %s: already exists", what, name);
		return MAILCTL_EXISTS;
	case MAIL_ERR_PARAMS:
		mailctl_fail(ctl, "%s %s: invalid", what, name);
		return MAILCTL_USAGE;
	case MAIL_ERR_UNAVAILABLE:
		if (!mailctl_etcd_diagnose(ctl))
			mailctl_fail(ctl, "etcd unreachable at %s", ctl->etcd.url);
		return MAILCTL_UNREACHABLE;
	case MAIL_ERR_PERM:
		if (!mailctl_etcd_diagnose(ctl))
			mailctl_fail(ctl, "%s %s: etcd refused it (permission denied to etcd "
				     "user %s)", what, name,
				     ctl->etcd.user != NULL ? ctl->etcd.user : "(none)");
		return MAILCTL_OTHER;
	default:
		mailctl_fail(ctl, "%s %s: %s", what, name, mail_error_info(err)->name);
		return MAILCTL_OTHER;
	}
}

/* ---- passwords ------------------------------------------------------------ */

/* Read one line from fd 0 into a fresh heap string (newline stripped), or
 * NULL at EOF/error or over the limit. Byte by byte so nothing past the
 * line is consumed. */
static char *mailctl_read_line(size_t *cap_r)
{
	size_t cap = MAILCTL_PASSWORD_MAX + 2, len = 0;
	char *line = xmalloc(cap);
	for (;;) {
		char c;
		ssize_t n = read(STDIN_FILENO, &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || c == '\n')
			break;
		if (len == cap - 1) {
			xfree_secret(line, cap);
			return NULL;
		}
		line[len++] = c;
	}
	if (len > 0 && line[len - 1] == '\r')
		len--;
	line[len] = '\0';
	*cap_r = cap;
	return line;
}

static char *mailctl_prompt(mailctl *ctl, const char *prompt, size_t *cap_r)
{
	struct termios old, quiet;
	fputs(prompt, ctl->err);
	fflush(ctl->err);
	int restore = tcgetattr(STDIN_FILENO, &old) == 0;
	if (restore) {
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		quiet.c_lflag |= ECHONL;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	}
	char *line = mailctl_read_line(cap_r);
	if (restore)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	return line;
}

/* The new password (caller wipes with xfree_secret(p, *cap_r)), or NULL
 * after printing why. */
char *mailctl_password(mailctl *ctl, size_t *cap_r)
{
	char *pw;
	if (isatty(STDIN_FILENO)) {
		size_t cap2;
		pw = mailctl_prompt(ctl, "New password: ", cap_r);
		char *again = pw != NULL ? mailctl_prompt(ctl, "Retype password: ", &cap2) : NULL;
		if (pw != NULL && (again == NULL || strcmp(pw, again) != 0)) {
			mailctl_fail(ctl, "passwords do not match");
			xfree_secret(pw, *cap_r);
			pw = NULL;
		}
		if (again != NULL)
			xfree_secret(again, cap2);
		if (pw == NULL)
			return NULL;
	} else {
		pw = mailctl_read_line(cap_r);
	}
	if (pw == NULL) {
		mailctl_fail(ctl, "password too long (at most %d bytes)", MAILCTL_PASSWORD_MAX);
		return NULL;
	}
	if (pw[0] == '\0') {
		mailctl_fail(ctl, "empty password (give it on standard input)");
		xfree_secret(pw, *cap_r);
		return NULL;
	}
	return pw;
}

/* ---- commands ---------------------------------------------------------------- */

static int mailctl_print_list(mailctl *ctl, int err, char **names, size_t n, const char *what,
			      const char *name)
{
	if (err != MAIL_OK)
		return mailctl_error(ctl, err, what, name);
	for (size_t i = 0; i < n; i++) {
		puts(names[i]);
		free(names[i]);
	}
	free(names);
	return fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
}

/* Print v as indented JSON (consumed). An exit code. */
static int mailctl_print_json(json_t *v)
{
	int ok = json_dumpf(v, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) == 0;
	json_decref(v);
	putchar('\n');
	return ok && fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
}

/* `tenant show DOMAIN [--json]`: the settings, defaults included. */
static int mailctl_tenant_show(mailctl *ctl, const char *domain, int json)
{
	struct directory_tenant_settings ts;
	int err = directory_tenant_settings_get(ctl->dir, domain, &ts);
	if (err != MAIL_OK)
		return mailctl_error(ctl, err, "tenant", domain);
	char created[32] = "-";
	time_t t = (time_t)(ts.created_ms / 1000);
	struct tm tm;
	if (ts.created_ms > 0 && gmtime_r(&t, &tm) != NULL)
		strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
	/* the name as stored: lower case (a valid domain is short) */
	char name[256];
	snprintf(name, sizeof name, "%s", domain);
	for (char *p = name; *p != '\0'; p++)
		*p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
	char *kv = directory_tenant_settings_format(&ts);
	if (json) {
		json_t *j = json_pack("{s:s,s:I}", "domain", name, "created",
				      (json_int_t)ts.created_ms);
		char *text = directory_tenant_settings_json(&ts);
		json_t *all = json_loads(text, 0, NULL);
		free(text);
		json_object_update(j, all);
		json_decref(all);
		json_dumpf(j, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(j);
	} else {
		char limit[32] = "unlimited";
		if (ts.outbound_per_hour > 0)
			snprintf(limit, sizeof limit, "%u per hour", ts.outbound_per_hour);
		printf("tenant             %s\n", name);
		printf("created            %s\n", created);
		printf("outbound-per-hour  %s\n", limit);
		printf("delay-warning      %s\n", ts.delay_warning ? "on" : "off");
		/* every setting as `tenant set` takes it */
		for (char *line = kv, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
			*nl = '\0';
			char *eq = strchr(line, '=');
			printf("%-18.*s %s\n", (int)(eq - line), line, eq + 1);
		}
	}
	free(kv);
	return fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
}

/* `tenant set DOMAIN [--outbound-per-hour N] [--delay-warning on|off]`
 * (argv[0] is DOMAIN): the options given, no others, then the result as
 * `tenant show` prints it. */
static int mailctl_tenant_set(mailctl *ctl, int argc, char **argv)
{
	struct directory_tenant_settings ts = { 0 };
	unsigned fields = 0;
	for (int i = 1; i < argc; i += 2) {
		if (strncmp(argv[i], "--", 2) != 0) {
			/* KEY=VALUE, one word */
			const char *why;
			if (directory_tenant_setting_parse(argv[i], &ts, &fields, &why) < 0) {
				mailctl_fail(ctl, "%s: %s (see `mailctl help`)", argv[i], why);
				return MAILCTL_USAGE;
			}
			i--;
			continue;
		}
		if (i + 1 >= argc)
			return -1;
		const char *v = argv[i + 1];
		if (strcmp(argv[i], "--outbound-per-hour") == 0) {
			char *end;
			errno = 0;
			unsigned long n = strtoul(v, &end, 10);
			if (v[0] < '0' || v[0] > '9' || *end != '\0' || errno != 0 ||
			    n > DIRECTORY_OUTBOUND_PER_HOUR_MAX) {
				mailctl_fail(ctl, "--outbound-per-hour takes 0 (no limit) to %u",
					     DIRECTORY_OUTBOUND_PER_HOUR_MAX);
				return MAILCTL_USAGE;
			}
			ts.outbound_per_hour = (unsigned)n;
			fields |= DIRECTORY_TENANT_OUTBOUND_PER_HOUR;
		} else if (strcmp(argv[i], "--delay-warning") == 0) {
			if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0) {
				mailctl_fail(ctl, "--delay-warning takes on or off");
				return MAILCTL_USAGE;
			}
			ts.delay_warning = strcmp(v, "on") == 0;
			fields |= DIRECTORY_TENANT_DELAY_WARNING;
		} else {
			return -1;
		}
	}
	if (fields == 0)
		return -1;
	int err = directory_tenant_settings_set(ctl->dir, argv[0], &ts, fields);
	if (err != MAIL_OK)
		return mailctl_error(ctl, err, "tenant", argv[0]);
	return mailctl_tenant_show(ctl, argv[0], 0);
}

static int mailctl_tenant(mailctl *ctl, int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[0], "set") == 0)
		return mailctl_tenant_set(ctl, argc - 1, argv + 1);
	if (argc == 2 && strcmp(argv[0], "show") == 0)
		return mailctl_tenant_show(ctl, argv[1], 0);
	if (argc == 3 && strcmp(argv[0], "show") == 0 && strcmp(argv[2], "--json") == 0)
		return mailctl_tenant_show(ctl, argv[1], 1);
	if (argc == 2 && strcmp(argv[0], "add") == 0)
		return mailctl_error(ctl, directory_tenant_add(ctl->dir, argv[1]), "tenant",
				     argv[1]);
	if (argc == 1 && strcmp(argv[0], "list") == 0) {
		char **names = NULL;
		size_t n = 0;
		int err = directory_tenant_list(ctl->dir, &names, &n);
		return mailctl_print_list(ctl, err, names, n, "tenant", "list");
	}
	return mailctl_tenant_lifecycle(ctl, argc, argv);
}

/* `alias add ALIAS TARGET...`, `alias list DOMAIN`, `alias del ALIAS [TARGET]` */
static int mailctl_alias(mailctl *ctl, int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[0], "add") == 0)
		return mailctl_error(ctl,
				     directory_alias_add(ctl->dir, argv[1],
							 (const char *const *)argv + 2,
							 (size_t)argc - 2),
				     "alias", argv[1]);
	if ((argc == 2 || argc == 3) && strcmp(argv[0], "del") == 0)
		return mailctl_error(ctl,
				     directory_alias_del(ctl->dir, argv[1], argc == 3 ? argv[2] : NULL),
				     "alias", argv[1]);
	int json = argc == 3 && strcmp(argv[2], "--json") == 0;
	if ((argc == 2 || json) && strcmp(argv[0], "list") == 0) {
		struct directory_alias *a;
		size_t n;
		int err = directory_alias_list(ctl->dir, argv[1], &a, &n);
		if (err != MAIL_OK)
			return mailctl_error(ctl, err, "tenant", argv[1]);
		if (json) {
			json_t *arr = json_array();
			for (size_t i = 0; i < n; i++) {
				json_t *t = json_array();
				for (size_t k = 0; k < a[i].n_targets; k++)
					json_array_append_new(t, json_string(a[i].targets[k]));
				json_array_append_new(arr, json_pack("{s:s, s:o}", "alias",
								     a[i].alias, "targets", t));
			}
			directory_aliases_free(a, n);
			return mailctl_print_json(json_pack("{s:s, s:o}", "tenant", argv[1],
							    "aliases", arr));
		}
		for (size_t i = 0; i < n; i++) {
			printf("%s", a[i].alias);
			for (size_t t = 0; t < a[i].n_targets; t++)
				printf("%s%s", t == 0 ? " " : ",", a[i].targets[t]);
			putchar('\n');
		}
		directory_aliases_free(a, n);
		return fflush(stdout) == 0 ? MAILCTL_OK : MAILCTL_OTHER;
	}
	return -1;
}

/* `domain alias add ALIAS_DOMAIN TARGET_DOMAIN`, `domain alias list`,
 * `domain alias del ALIAS_DOMAIN` */
static int mailctl_domain(mailctl *ctl, int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[0], "alias") != 0)
		return -1;
	if (argc == 4 && strcmp(argv[1], "add") == 0)
		return mailctl_error(ctl, directory_domain_alias_add(ctl->dir, argv[2], argv[3]),
				     "domain", argv[2]);
	if (argc == 3 && strcmp(argv[1], "del") == 0)
		return mailctl_error(ctl, directory_domain_alias_del(ctl->dir, argv[2]),
				     "domain alias", argv[2]);
	if (argc == 2 && strcmp(argv[1], "list") == 0) {
		char **lines = NULL;
		size_t n = 0;
		int err = directory_domain_alias_list(ctl->dir, &lines, &n);
		return mailctl_print_list(ctl, err, lines, n, "domain alias", "list");
	}
	if (argc == 3 && strcmp(argv[1], "list") == 0 && strcmp(argv[2], "--json") == 0) {
		char **lines = NULL;
		size_t n = 0;
		int err = directory_domain_alias_list(ctl->dir, &lines, &n);
		if (err != MAIL_OK)
			return mailctl_error(ctl, err, "domain alias", "list");
		json_t *arr = json_array();
		for (size_t i = 0; i < n; i++) {
			char *sp = strchr(lines[i], ' '); /* "ALIAS TARGET" */
			if (sp != NULL) {
				*sp = '\0';
				json_array_append_new(arr, json_pack("{s:s, s:s}", "alias", lines[i],
								     "target", sp + 1));
			}
			free(lines[i]);
		}
		free(lines);
		return mailctl_print_json(json_pack("{s:o}", "domain_aliases", arr));
	}
	return -1;
}

/* "--NAME VALUE" or "--NAME=VALUE" of an etcd or node TLS option at
 * argv[*i] into opts (*i moves past the value). Returns 0, or -1 when it
 * is not one. */
static int mailctl_etcd_arg(struct mailctl_etcd_opts *opts, int argc, char **argv, int *i)
{
	const char *a = argv[*i];
	if (strncmp(a, "--", 2) != 0)
		return -1;
	const char *eq = strchr(a, '=');
	char name[32];
	snprintf(name, sizeof name, "%.*s", eq != NULL ? (int)(eq - a - 2) : (int)strlen(a + 2),
		 a + 2);
	if (eq == NULL && *i + 1 >= argc)
		return -1;
	if (mailctl_conf_option(opts, name, eq != NULL ? eq + 1 : argv[*i + 1]) < 0)
		return -1;
	*i += eq == NULL;
	return 0;
}

int main(int argc, char **argv)
{
	mailctl ctl = { .err = stderr };
	struct mailctl_etcd_opts opts = { { NULL } };
	int verbose = 0, i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			fputs(mailctl_usage_text, stdout);
			return MAILCTL_OK;
		} else if (mailctl_etcd_arg(&opts, argc, argv, &i) == 0) {
			/* an etcd option and its value: taken */
		} else if (strcmp(a, "--verbose") == 0 || strcmp(a, "-v") == 0) {
			verbose = 1;
		} else {
			fprintf(stderr, "mailctl: unknown option %s\n%s", a, mailctl_usage_text);
			return MAILCTL_USAGE;
		}
	}
	argc -= i;
	argv += i;
	if (argc < 1) {
		fputs(mailctl_usage_text, stderr);
		return MAILCTL_USAGE;
	}

	if (!verbose) {
		/* keep our own stderr, send the library's log lines away */
		int fd = dup(STDERR_FILENO);
		int null = open("/dev/null", O_WRONLY);
		FILE *err = fd >= 0 ? fdopen(fd, "w") : NULL;
		if (err != NULL && null >= 0) {
			setvbuf(err, NULL, _IOLBF, 0);
			ctl.err = err;
			dup2(null, STDERR_FILENO);
		}
		if (null >= 0)
			close(null);
	}

	if (mailctl_conf_load(&ctl, &opts) < 0) {
		mailctl_conf_free(&ctl);
		return MAILCTL_USAGE;
	}
	ctl.dir = directory_create(&ctl.etcd);
	int rc = -1;
	if (strcmp(argv[0], "tenant") == 0)
		rc = mailctl_tenant(&ctl, argc - 1, argv + 1);
	else if (strcmp(argv[0], "alias") == 0)
		rc = mailctl_alias(&ctl, argc - 1, argv + 1);
	else if (strcmp(argv[0], "domain") == 0)
		rc = mailctl_domain(&ctl, argc - 1, argv + 1);
	else if (strcmp(argv[0], "user") == 0)
		rc = mailctl_users(&ctl, argc, argv);
	else if (strcmp(argv[0], "node") == 0 || strcmp(argv[0], "partitions") == 0)
		rc = mailctl_cluster(&ctl, argc, argv);
	else if (strcmp(argv[0], "block") == 0 || strcmp(argv[0], "tls") == 0)
		rc = mailctl_security(&ctl, argc, argv);
	else if (strcmp(argv[0], "dkim") == 0)
		rc = mailctl_dkim(&ctl, argc, argv);
	else if (strcmp(argv[0], "dns") == 0)
		rc = mailctl_dns(&ctl, argc, argv);
	else if (strcmp(argv[0], "relay") == 0 || strcmp(argv[0], "transport") == 0 ||
		 strcmp(argv[0], "tls-policy") == 0)
		rc = mailctl_outbound(&ctl, argc, argv);
	else if (strcmp(argv[0], "queue") == 0)
		rc = mailctl_queue(&ctl, argc, argv);
	else if (strcmp(argv[0], "status") == 0)
		rc = mailctl_status(&ctl, argc, argv);
	else if (strcmp(argv[0], "quota") == 0)
		rc = mailctl_quota(&ctl, argc, argv);
	directory_destroy(&ctl.dir);
	mailctl_conf_free(&ctl);
	if (rc < 0) {
		fputs(mailctl_usage_text, ctl.err);
		rc = MAILCTL_USAGE;
	}
	if (ctl.err != stderr)
		fclose(ctl.err);
	return rc;
}
