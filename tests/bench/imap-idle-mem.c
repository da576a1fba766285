/* imap-idle-mem.c: what an IMAP session costs a server in memory (a
 * benchmark, not a test; never run by ctest).
 *
 *   imap-idle-mem --port PORT --pid PID [--pid PID...] [--host 127.0.0.1]
 *                 (--users FILE | --user-pattern P --password PW [--user-count 1])
 *                 [--connections 10000] [--parallel 100] [--mailbox INBOX]
 *                 [--mode idle|select] [--settle 10] [--tls [--cafile CA]]
 *
 * Reads the memory of the server's processes (each --pid and every process
 * under it, found again at each reading: Dovecot forks imap processes as
 * sessions come) from /proc/PID/smaps_rollup: Rss, Pss and Private
 * (Private_Clean + Private_Dirty), summed. Then opens --connections
 * connections, at most --parallel of them being set up at once, each doing
 * LOGIN, SELECT mailbox and (--mode idle, the default) IDLE up to the
 * server's "+ idling"; --mode select stops after SELECT (a logged-in
 * session with a selected mailbox). When all are up it waits --settle
 * seconds (Dovecot moves an IDLE session to imap-hibernate after
 * imap_hibernate_timeout), reads the memory again, and prints both
 * readings, the difference and the difference per open session. Then it
 * closes every connection, waits 3 s, and prints a third reading.
 *
 * Connections that fail (refused, BYE, NO, BAD) are counted and printed
 * with the first answer of each kind; the per-session figure divides by
 * the sessions that were open at the second reading. The process's own
 * file-descriptor limit is raised to what --connections needs (the hard
 * limit too, as root). Exit 0 after a run, 2 on bad options, 1 when no
 * session got up.
 */
#include "imap-client.h"
#include "xalloc.h"

#include <ctype.h>
#include <dirent.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define MAX_PIDS 16

enum sess_state { S_NEW, S_CONNECTING, S_LOGIN, S_SELECT, S_IDLE_WAIT, S_UP, S_FAILED };

struct sess {
	struct tool *tool;
	struct imapc_conn *conn;
	enum sess_state state;
	unsigned idx;
};

struct tool {
	const char *host;
	int port;
	bool tls;
	const char *cafile;
	const char *users_file, *user_pattern, *password;
	unsigned user_count;
	char **user, **pass;
	unsigned n_users;
	unsigned connections, parallel;
	const char *mailbox;
	bool idle;
	double settle;
	int pids[MAX_PIDS];
	unsigned n_pids;

	uv_loop_t *loop;
	struct imapc_shared shared;
	struct imapc_settings conn_set;
	SSL_CTX *ssl_ctx;
	struct sockaddr_in addr;
	struct sess *sess;
	unsigned next;        /* the next session to start */
	unsigned in_setup;    /* sessions connecting/logging in */
	unsigned up;          /* sessions in IDLE (or selected) */
	unsigned failed;
	unsigned closed_while_up;
	char first_error[200];
	uv_timer_t settle_timer;
	uint64_t t_start;
};

struct mem {
	long long rss, pss, priv;  /* KiB */
	unsigned procs;
};

/* ---- /proc ------------------------------------------------------------------ */

static int proc_ppid(int pid)
{
	char path[64], line[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	size_t n = fread(line, 1, sizeof(line) - 1, f);
	fclose(f);
	line[n] = '\0';
	char *p = strrchr(line, ')');
	int ppid = -1;
	if (p != NULL)
		sscanf(p + 2, "%*c %d", &ppid);
	return ppid;
}

static void mem_add_pid(struct mem *m, int pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return;
	m->procs++;
	while (fgets(line, sizeof(line), f) != NULL) {
		long long v;
		if (sscanf(line, "Rss: %lld", &v) == 1)
			m->rss += v;
		else if (sscanf(line, "Pss: %lld", &v) == 1)
			m->pss += v;
		else if (sscanf(line, "Private_Clean: %lld", &v) == 1 ||
			 sscanf(line, "Private_Dirty: %lld", &v) == 1)
			m->priv += v;
	}
	fclose(f);
}

/* The memory of the --pid processes and everything under them. */
static struct mem mem_read(const struct tool *t)
{
	struct mem m = {0};
	/* every process with its parent, then a walk from the roots */
	size_t cap = 1024, n = 0;
	int *pid = xmalloc(cap * sizeof(int)), *ppid = xmalloc(cap * sizeof(int));
	DIR *d = opendir("/proc");
	struct dirent *e;
	while (d != NULL && (e = readdir(d)) != NULL) {
		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		if (n == cap) {
			cap *= 2;
			pid = xrealloc(pid, cap * sizeof(int));
			ppid = xrealloc(ppid, cap * sizeof(int));
		}
		pid[n] = atoi(e->d_name);
		ppid[n] = proc_ppid(pid[n]);
		n++;
	}
	if (d != NULL)
		closedir(d);
	int *todo = xmalloc((n + MAX_PIDS) * sizeof(int));
	size_t ntodo = 0;
	for (unsigned i = 0; i < t->n_pids; i++)
		todo[ntodo++] = t->pids[i];
	while (ntodo > 0) {
		int p = todo[--ntodo];
		mem_add_pid(&m, p);
		for (size_t i = 0; i < n; i++)
			if (ppid[i] == p)
				todo[ntodo++] = pid[i];
	}
	free(todo);
	free(pid);
	free(ppid);
	return m;
}

static void mem_print(const char *label, const struct mem *m)
{
	printf("%-28s %6u procs  Rss %9.1f MiB  Pss %9.1f MiB  Private %9.1f MiB\n", label,
	       m->procs, m->rss / 1024.0, m->pss / 1024.0, m->priv / 1024.0);
}

/* ---- sessions ---------------------------------------------------------------- */

static void tool_fill(struct tool *t);

static void tool_error(struct tool *t, const char *text)
{
	if (t->first_error[0] == '\0')
		snprintf(t->first_error, sizeof(t->first_error), "%s", text);
}

static void sess_fail(struct sess *s, const char *text)
{
	struct tool *t = s->tool;
	if (s->state == S_UP) {
		t->up--;
		t->closed_while_up++;
	} else if (s->state != S_FAILED) {
		t->in_setup--;
	}
	if (s->state != S_FAILED)
		t->failed++;
	s->state = S_FAILED;
	tool_error(t, text);
	imapc_conn_destroy(&s->conn);
	tool_fill(t);
}

static void sess_up(struct sess *s)
{
	struct tool *t = s->tool;
	s->state = S_UP;
	t->in_setup--;
	t->up++;
	if ((t->up + t->failed) % 1000 == 0) {
		printf("  %u sessions up (%u failed), %.1f s\n", t->up, t->failed,
		       (uv_hrtime() - t->t_start) / 1e9);
		fflush(stdout);
	}
	tool_fill(t);
}

static void quote(char *out, size_t size, const char *s)
{
	size_t o = 0;
	out[o++] = '"';
	for (; *s != '\0' && o + 3 < size; s++) {
		if (*s == '"' || *s == '\\')
			out[o++] = '\\';
		out[o++] = *s;
	}
	out[o++] = '"';
	out[o] = '\0';
}

static void sess_on_ready(struct imapc_conn *c, enum imapc_status st, const char *text)
{
	struct sess *s = imapc_conn_context(c);
	struct tool *t = s->tool;
	if (st != IMAPC_OK) {
		sess_fail(s, text);
		return;
	}
	unsigned u = s->idx % t->n_users;
	char user[600], pass[600], line[1300];
	quote(user, sizeof(user), t->user[u]);
	quote(pass, sizeof(pass), t->pass[u]);
	snprintf(line, sizeof(line), "LOGIN %s %s", user, pass);
	s->state = S_LOGIN;
	imapc_conn_command(c, line, NULL, 0);
}

static void sess_on_done(struct imapc_conn *c, enum imapc_status st, const char *text)
{
	struct sess *s = imapc_conn_context(c);
	struct tool *t = s->tool;
	if (st != IMAPC_OK) {
		sess_fail(s, text);
		return;
	}
	if (s->state == S_LOGIN) {
		char box[300], line[320];
		quote(box, sizeof(box), t->mailbox);
		snprintf(line, sizeof(line), "SELECT %s", box);
		s->state = S_SELECT;
		imapc_conn_command(c, line, NULL, 0);
	} else if (s->state == S_SELECT) {
		if (!t->idle) {
			sess_up(s);
			return;
		}
		s->state = S_IDLE_WAIT;
		imapc_conn_command(c, "IDLE", NULL, 0);
	} else {
		/* IDLE ended by the server (a tagged answer without DONE) */
		sess_fail(s, text);
	}
}

static void sess_on_continue(struct imapc_conn *c, const char *text)
{
	struct sess *s = imapc_conn_context(c);
	(void)text;
	if (s->state == S_IDLE_WAIT)
		sess_up(s);
}

static void sess_on_closed(struct imapc_conn *c, enum imapc_status st, const char *text)
{
	struct sess *s = imapc_conn_context(c);
	(void)st;
	sess_fail(s, text);
}

static const struct imapc_callbacks sess_callbacks = {
	.on_ready = sess_on_ready,
	.on_done = sess_on_done,
	.on_continue = sess_on_continue,
	.on_closed = sess_on_closed,
};

static void settle_cb(uv_timer_t *timer)
{
	uv_stop(timer->loop);
}

/* Start sessions while fewer than --parallel are being set up; when all
 * are up or failed, start the settle timer. */
static void tool_fill(struct tool *t)
{
	while (t->next < t->connections && t->in_setup < t->parallel) {
		struct sess *s = &t->sess[t->next];
		s->tool = t;
		s->idx = t->next++;
		s->conn = imapc_conn_create(t->loop, &t->shared, &t->conn_set, &sess_callbacks, s);
		s->state = S_CONNECTING;
		t->in_setup++;
		int r = imapc_conn_connect(s->conn, (const struct sockaddr *)&t->addr);
		if (r < 0)
			sess_fail(s, uv_strerror(r));
	}
	if (t->next == t->connections && t->in_setup == 0 &&
	    !uv_is_active((uv_handle_t *)&t->settle_timer)) {
		printf("  all started: %u up, %u failed, %.1f s; settling %.0f s\n", t->up,
		       t->failed, (uv_hrtime() - t->t_start) / 1e9, t->settle);
		fflush(stdout);
		uv_timer_start(&t->settle_timer, settle_cb, (uint64_t)(t->settle * 1000), 0);
	}
}

/* ---- options ---------------------------------------------------------------- */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: imap-idle-mem --port PORT --pid PID [--pid PID...] [--host 127.0.0.1]\n"
		"         (--users FILE | --user-pattern 'user%%d@domain' --password PW\n"
		"          [--user-count 1])\n"
		"         [--connections 10000] [--parallel 100] [--mailbox INBOX]\n"
		"         [--mode idle|select] [--settle 10] [--tls [--cafile CA]]\n");
}

static int load_users(struct tool *t)
{
	if (t->users_file != NULL) {
		FILE *f = fopen(t->users_file, "r");
		if (f == NULL) {
			perror(t->users_file);
			return -1;
		}
		char line[1024];
		while (fgets(line, sizeof(line), f) != NULL) {
			line[strcspn(line, "\r\n")] = '\0';
			char *sep = line + strcspn(line, " \t:");
			if (line[0] == '#' || line[0] == '\0' || *sep == '\0')
				continue;
			*sep = '\0';
			t->user = xrealloc(t->user, (t->n_users + 1) * sizeof(char *));
			t->pass = xrealloc(t->pass, (t->n_users + 1) * sizeof(char *));
			t->user[t->n_users] = xstrdup(line);
			t->pass[t->n_users] = xstrdup(sep + 1);
			t->n_users++;
		}
		fclose(f);
	} else {
		unsigned n = t->user_count ? t->user_count : 1;
		t->user = xcalloc(n, sizeof(char *));
		t->pass = xcalloc(n, sizeof(char *));
		for (unsigned i = 0; i < n; i++) {
			char name[512];
			snprintf(name, sizeof(name), t->user_pattern, (int)(i + 1));
			t->user[i] = xstrdup(name);
			t->pass[i] = xstrdup(t->password);
		}
		t->n_users = n;
	}
	return t->n_users > 0 ? 0 : -1;
}

/* Raise this process's descriptor limit to what n connections need. */
static void raise_fd_limit(unsigned n)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)n + 256;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur >= want)
		return;
	if (rl.rlim_max < want) {
		struct rlimit hard = {want, want};
		if (setrlimit(RLIMIT_NOFILE, &hard) == 0)
			return;
		fprintf(stderr, "imap-idle-mem: the fd limit is %llu (hard); %llu needed: "
				"run as root or raise it (ulimit -Hn)\n",
			(unsigned long long)rl.rlim_max, (unsigned long long)want);
		want = rl.rlim_max;
	}
	rl.rlim_cur = want;
	setrlimit(RLIMIT_NOFILE, &rl);
}

int main(int argc, char **argv)
{
	static struct tool t;  /* large (the shared buffers): not on the stack */
	t.host = "127.0.0.1";
	t.connections = 10000;
	t.parallel = 100;
	t.mailbox = "INBOX";
	t.idle = true;
	t.settle = 10;
	static const struct option longopts[] = {
		{"host", 1, NULL, 'h'}, {"port", 1, NULL, 'p'}, {"pid", 1, NULL, 'P'},
		{"users", 1, NULL, 'u'}, {"user-pattern", 1, NULL, 'U'},
		{"password", 1, NULL, 'W'}, {"user-count", 1, NULL, 'n'},
		{"connections", 1, NULL, 'c'}, {"parallel", 1, NULL, 'j'},
		{"mailbox", 1, NULL, 'm'}, {"mode", 1, NULL, 'M'}, {"settle", 1, NULL, 's'},
		{"tls", 0, NULL, 't'}, {"cafile", 1, NULL, 'C'}, {"help", 0, NULL, 'H'},
		{NULL, 0, NULL, 0},
	};
	int o;
	while ((o = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (o) {
		case 'h': t.host = optarg; break;
		case 'p': t.port = atoi(optarg); break;
		case 'P':
			if (t.n_pids == MAX_PIDS || atoi(optarg) <= 0) {
				fprintf(stderr, "imap-idle-mem: --pid: at most %d positive PIDs\n",
					MAX_PIDS);
				return 2;
			}
			t.pids[t.n_pids++] = atoi(optarg);
			break;
		case 'u': t.users_file = optarg; break;
		case 'U': t.user_pattern = optarg; break;
		case 'W': t.password = optarg; break;
		case 'n': t.user_count = (unsigned)atoi(optarg); break;
		case 'c': t.connections = (unsigned)atoi(optarg); break;
		case 'j': t.parallel = (unsigned)atoi(optarg); break;
		case 'm': t.mailbox = optarg; break;
		case 'M':
			if (strcmp(optarg, "idle") == 0)
				t.idle = true;
			else if (strcmp(optarg, "select") == 0)
				t.idle = false;
			else {
				fprintf(stderr, "imap-idle-mem: --mode idle or select\n");
				return 2;
			}
			break;
		case 's': t.settle = atof(optarg); break;
		case 't': t.tls = true; break;
		case 'C': t.cafile = optarg; break;
		case 'H': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (t.port <= 0 || t.port > 65535 || t.n_pids == 0 || t.connections == 0 ||
	    t.parallel == 0 || t.settle < 0 ||
	    (t.users_file == NULL && (t.user_pattern == NULL || t.password == NULL))) {
		usage(stderr);
		return 2;
	}
	if (uv_ip4_addr(t.host, t.port, &t.addr) != 0) {
		fprintf(stderr, "imap-idle-mem: --host must be an IPv4 address\n");
		return 2;
	}
	if (load_users(&t) < 0)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit(t.connections);
	if (t.tls) {
		t.ssl_ctx = SSL_CTX_new(TLS_client_method());
		if (t.cafile != NULL && SSL_CTX_load_verify_locations(t.ssl_ctx, t.cafile, NULL) == 1)
			SSL_CTX_set_verify(t.ssl_ctx, SSL_VERIFY_PEER, NULL);
		t.conn_set.ssl_ctx = t.ssl_ctx;
		t.conn_set.sni = "localhost";
	}
	t.loop = uv_default_loop();
	t.sess = xcalloc(t.connections, sizeof(*t.sess));
	uv_timer_init(t.loop, &t.settle_timer);

	struct mem before = mem_read(&t);
	printf("imap-idle-mem: %s:%d%s, %u connections (%u at once), mode %s, mailbox %s, "
	       "%u user(s)\n", t.host, t.port, t.tls ? " TLS" : "", t.connections, t.parallel,
	       t.idle ? "idle" : "select", t.mailbox, t.n_users);
	mem_print("before:", &before);
	fflush(stdout);
	t.t_start = uv_hrtime();
	tool_fill(&t);
	uv_run(t.loop, UV_RUN_DEFAULT);  /* until settle_cb */

	struct mem during = mem_read(&t);
	unsigned up = t.up;
	mem_print("with the sessions:", &during);
	printf("sessions open: %u (failed %u, closed by the server while up %u)\n", up, t.failed,
	       t.closed_while_up);
	if (t.first_error[0] != '\0')
		printf("first failure: %s\n", t.first_error);
	if (up > 0) {
		printf("per session: Rss %.1f KiB  Pss %.1f KiB  Private %.1f KiB\n",
		       (double)(during.rss - before.rss) / up, (double)(during.pss - before.pss) / up,
		       (double)(during.priv - before.priv) / up);
		printf("result sessions=%u rss_kib=%.2f pss_kib=%.2f private_kib=%.2f\n", up,
		       (double)(during.rss - before.rss) / up, (double)(during.pss - before.pss) / up,
		       (double)(during.priv - before.priv) / up);
	}
	fflush(stdout);
	for (unsigned i = 0; i < t.next; i++)
		imapc_conn_destroy(&t.sess[i].conn);
	uv_close((uv_handle_t *)&t.settle_timer, NULL);
	uv_run(t.loop, UV_RUN_DEFAULT);
	sleep(3);
	struct mem after = mem_read(&t);
	mem_print("3 s after closing them:", &after);
	uv_loop_close(t.loop);
	free(t.sess);
	for (unsigned i = 0; i < t.n_users; i++) {
		free(t.user[i]);
		free(t.pass[i]);
	}
	free(t.user);
	free(t.pass);
	if (t.ssl_ctx != NULL)
		SSL_CTX_free(t.ssl_ctx);
	return up > 0 ? 0 : 1;
}
