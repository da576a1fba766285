/* test-smtpc.c: the reply parser (whole and byte by byte) and the client
 * session against real servers on 127.0.0.1: Postfix's smtp-sink and
 * tests/support/smtp_sink.py (scripted faults, STARTTLS, AUTH), each
 * started by the test and stopped by its PID. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "etcd-fixture.h" /* mailtest_free_port, mailtest_tmpdir, ... */
#include "smtpc-reply.h"
#include "smtpc.h"
#include "tls.h"

#define PYTHON "/usr/bin/python3"
#define SINK_PY MAIL_SOURCE_DIR "/tests/support/smtp_sink.py"
#define POSTFIX_SINK "/usr/sbin/smtp-sink"

/* ---- the reply parser ---------------------------------------------------- */

/* Parse s whole or byte by byte; replies into out as "code|enh|text;". */
static int parse_all(const char *s, size_t chunk, const struct smtpc_reply_limits *lim,
		     char *out, size_t outsz)
{
	smtpc_reply_parser p;
	smtpc_reply_parser_init(&p, lim);
	size_t len = strlen(s), pos = 0, ol = 0;
	out[0] = '\0';
	int rc = 0;
	while (pos < len && rc == 0) {
		size_t end = pos + chunk < len ? pos + chunk : len;
		while (pos < end) {
			size_t used;
			struct smtpc_reply r;
			const char *err;
			int x = smtpc_reply_parser_feed(&p, (const uint8_t *)s + pos, end - pos, &used,
							&r, &err);
			pos += used;
			if (x < 0) {
				rc = -1;
				break;
			}
			if (x == 0)
				break;
			ol += (size_t)snprintf(out + ol, outsz - ol, "%d|%s|%s;", r.code, r.enh, r.text);
		}
	}
	smtpc_reply_parser_deinit(&p);
	return rc;
}

static void check_parse(const char *in, int want_rc, const char *want)
{
	char a[4096], b[4096];
	int ra = parse_all(in, 1u << 20, NULL, a, sizeof a);
	int rb = parse_all(in, 1, NULL, b, sizeof b);
	assert_int_equal(ra, want_rc);
	assert_int_equal(rb, want_rc);
	assert_string_equal(a, b);
	if (want != NULL)
		assert_string_equal(a, want);
}

static void test_reply_parser(void **state)
{
	(void)state;
	check_parse("220 mx ESMTP\r\n", 0, "220||mx ESMTP;");
	check_parse("250-a\r\n250-b\r\n250 c\r\n", 0, "250||a\nb\nc;");
	check_parse("550-5.1.1 no\r\n550 5.1.1 such user\r\n", 0, "550|5.1.1|no\nsuch user;");
	check_parse("550 2.0.0 x\r\n", 0, "550||2.0.0 x;"); /* class mismatch: text */
	check_parse("250\r\n354 go\n", 0, "250||;354||go;");  /* bare code, bare LF */
	check_parse("250-a\r\n251 b\r\n", -1, NULL);          /* code changed */
	check_parse("2x0 a\r\n", -1, NULL);
	check_parse("250_a\r\n", -1, NULL);
	check_parse("250 a\rb\r\n", -1, NULL);
	check_parse("699 a\r\n", -1, NULL);
	/* limits: a line too long, too many lines, too many bytes */
	struct smtpc_reply_limits lim = {.max_line = 64, .max_lines = 3, .max_bytes = 512};
	char big[200], out[1024];
	memset(big, 'a', sizeof big);
	memcpy(big, "250 ", 4);
	memcpy(big + sizeof big - 3, "\r\n", 3);
	assert_int_equal(parse_all(big, 1, &lim, out, sizeof out), -1);
	assert_int_equal(parse_all("250-a\r\n250-a\r\n250-a\r\n250 a\r\n", 1, &lim, out, sizeof out),
			 -1);
	assert_int_equal(parse_all("250-a\r\n250-a\r\n250 a\r\n", 1, &lim, out, sizeof out), 0);
}

static void test_caps(void **state)
{
	(void)state;
	const char *t = "mx.example\nPIPELINING\nSIZE 1000\n8bitmime\nSMTPUTF8\nSTARTTLS\n"
			"AUTH CRAM-MD5 LOGIN\nAUTH=PLAIN\nENHANCEDSTATUSCODES\nDSN\nX-FOO";
	struct smtpc_reply r = {.code = 250, .text = t, .text_len = strlen(t), .lines = 11};
	struct smtpc_caps c;
	smtpc_caps_parse(&r, &c);
	assert_int_equal(c.flags, SMTPC_CAP_PIPELINING | SMTPC_CAP_SIZE | SMTPC_CAP_8BITMIME |
					  SMTPC_CAP_SMTPUTF8 | SMTPC_CAP_STARTTLS | SMTPC_CAP_AUTH |
					  SMTPC_CAP_ENHANCEDSTATUSCODES | SMTPC_CAP_DSN);
	assert_int_equal(c.size_max, 1000);
	assert_int_equal(c.auth, SMTPC_AUTH_PLAIN | SMTPC_AUTH_LOGIN);
	const char *t2 = "mx.example\nSIZE\nSIZE 99999999999999999999999";
	struct smtpc_reply r2 = {.code = 250, .text = t2, .text_len = strlen(t2), .lines = 3};
	smtpc_caps_parse(&r2, &c);
	assert_int_equal(c.flags, SMTPC_CAP_SIZE);
	assert_true(c.size_max == UINT64_MAX);
}

/* ---- servers -------------------------------------------------------------- */

struct sink {
	pid_t pid;
	int port;
	char *dir;
	char out[512];
};

/* The sinks running now, so that a failed assertion (which leaves the
 * test by longjmp) still stops them in teardown: smtp-sink drops its
 * privileges, which clears PR_SET_PDEATHSIG, so it would outlive us. */
#define LIVE_SINKS 4
static struct sink live_sinks[LIVE_SINKS]; /* copies: a test's own is on
					      its stack, gone after longjmp */

static void live_add(const struct sink *s)
{
	for (size_t i = 0; i < LIVE_SINKS; i++) {
		if (live_sinks[i].pid == 0) {
			live_sinks[i] = *s;
			return;
		}
	}
	fail_msg("too many sinks");
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static pid_t spawn(const char *path, const char *const *argv)
{
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGTERM, SIG_DFL);
	int null = open("/dev/null", O_RDWR);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
	}
	execv(path, (char *const *)argv);
	_exit(127);
}

static int tcp_probe(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int r = connect(fd, (struct sockaddr *)&sin, sizeof sin);
	close(fd);
	return r;
}

/* smtp_sink.py with args (NULL-terminated). */
static void sink_py_start(struct sink *s, const char *const *args)
{
	memset(s, 0, sizeof *s);
	s->dir = mailtest_tmpdir("smtpc-sink");
	assert_non_null(s->dir);
	char portf[512];
	snprintf(portf, sizeof portf, "%s/port", s->dir);
	snprintf(s->out, sizeof s->out, "%s/out.jsonl", s->dir);
	const char *argv[64] = {PYTHON, SINK_PY, "--port-file", portf, "--out", s->out};
	size_t n = 6;
	for (size_t i = 0; args != NULL && args[i] != NULL && n < 62; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	s->pid = spawn(PYTHON, argv);
	assert_true(s->pid > 0);
	live_add(s);
	long deadline = now_ms() + 10000;
	while (s->port == 0) {
		FILE *f = fopen(portf, "r");
		if (f != NULL) {
			if (fscanf(f, "%d", &s->port) != 1)
				s->port = 0;
			fclose(f);
		}
		if (s->port == 0) {
			assert_true(now_ms() < deadline);
			assert_int_equal(waitpid(s->pid, NULL, WNOHANG), 0);
			mailtest_sleep_ms(20);
		}
	}
}

/* Postfix's smtp-sink with args; each transaction dumped into dir/d.* */
static void sink_postfix_start(struct sink *s, const char *const *args)
{
	memset(s, 0, sizeof *s);
	s->dir = mailtest_tmpdir("smtpc-pfsink");
	assert_non_null(s->dir);
	chmod(s->dir, 0777); /* smtp-sink writes its dumps as nobody */
	snprintf(s->out, sizeof s->out, "%s/d.", s->dir);
	for (int attempt = 0; attempt < 5; attempt++) {
		s->port = mailtest_free_port();
		char hp[64];
		snprintf(hp, sizeof hp, "127.0.0.1:%d", s->port);
		const char *argv[32] = {POSTFIX_SINK, "-u", "nobody", "-d", s->out};
		size_t n = 5;
		for (size_t i = 0; args != NULL && args[i] != NULL && n < 28; i++)
			argv[n++] = args[i];
		argv[n++] = hp;
		argv[n++] = "16";
		argv[n] = NULL;
		s->pid = spawn(POSTFIX_SINK, argv);
		assert_true(s->pid > 0);
		long deadline = now_ms() + 5000;
		while (tcp_probe(s->port) != 0 && now_ms() < deadline &&
		       waitpid(s->pid, NULL, WNOHANG) == 0)
			mailtest_sleep_ms(20);
		if (tcp_probe(s->port) == 0) {
			live_add(s);
			return;
		}
		kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
	}
	fail_msg("smtp-sink did not start: is Debian's postfix installed (" POSTFIX_SINK ")?");
}

static void sink_stop(struct sink *s)
{
	for (size_t i = 0; i < LIVE_SINKS; i++)
		if (s != &live_sinks[i] && live_sinks[i].pid == s->pid)
			memset(&live_sinks[i], 0, sizeof live_sinks[i]);
	if (s->pid > 0) {
		kill(s->pid, SIGTERM);
		long deadline = now_ms() + 5000;
		while (waitpid(s->pid, NULL, WNOHANG) == 0) {
			if (now_ms() > deadline) {
				kill(s->pid, SIGKILL);
				waitpid(s->pid, NULL, 0);
				break;
			}
			mailtest_sleep_ms(20);
		}
		s->pid = 0;
	}
	if (s->dir != NULL) {
		mailtest_rmrf(s->dir);
		free(s->dir);
		s->dir = NULL;
	}
}

static int teardown_sinks(void **state)
{
	(void)state;
	for (size_t i = 0; i < LIVE_SINKS; i++)
		if (live_sinks[i].pid != 0) {
			sink_stop(&live_sinks[i]);
			memset(&live_sinks[i], 0, sizeof live_sinks[i]);
		}
	return 0;
}

/* A whole file, NUL-terminated (caller frees); "" when missing. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return strdup("");
	buf b;
	buf_init(&b);
	char tmp[4096];
	size_t n;
	while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
		buf_append(&b, tmp, n);
	fclose(f);
	buf_append(&b, "", 1);
	size_t len;
	return (char *)buf_steal(&b, &len);
}

/* Every dump file of a Postfix sink, concatenated. */
static char *slurp_pf(const struct sink *s)
{
	buf b;
	buf_init(&b);
	DIR *d = opendir(s->dir);
	struct dirent *e;
	while (d != NULL && (e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, "d.", 2) != 0)
			continue;
		char p[1024];
		snprintf(p, sizeof p, "%s/%s", s->dir, e->d_name);
		char *t = slurp(p);
		buf_append_str(&b, t);
		free(t);
	}
	if (d != NULL)
		closedir(d);
	buf_append(&b, "", 1);
	size_t len;
	return (char *)buf_steal(&b, &len);
}

/* ---- running a session ----------------------------------------------------- */

struct run {
	uv_loop_t loop;
	struct smtpc_message **msgs;
	size_t nmsg, next;
	int ready, done, closed;
	int destroy_in_done;
	smtpc *c;
	struct smtpc_result why;
};

static void run_ready(smtpc *c, void *ctx)
{
	struct run *r = ctx;
	r->ready++;
	const char *err;
	if (r->next < r->nmsg)
		assert_int_equal(smtpc_send(c, r->msgs[r->next++], &err), 0);
	else
		smtpc_quit(c);
}

static void run_done(smtpc *c, struct smtpc_message *msg, void *ctx)
{
	(void)msg;
	struct run *r = ctx;
	r->done++;
	if (r->destroy_in_done) {
		smtpc_destroy(&r->c);
		return;
	}
	const char *err;
	if (r->next < r->nmsg && smtpc_idle(c))
		assert_int_equal(smtpc_send(c, r->msgs[r->next++], &err), 0);
	else
		smtpc_quit(c);
}

static void run_closed(smtpc *c, const struct smtpc_result *why, void *ctx)
{
	(void)c;
	struct run *r = ctx;
	r->closed++;
	r->why = *why;
}

static struct smtpc_settings base_settings(void)
{
	struct smtpc_settings set = {.helo_name = "client.test", .log_id = "t1"};
	set.timeouts.greeting_ms = 3000;
	set.timeouts.ehlo_ms = 3000;
	set.timeouts.tls_ms = 3000;
	set.timeouts.mail_ms = 3000;
	set.timeouts.rcpt_ms = 3000;
	set.timeouts.data_init_ms = 3000;
	set.timeouts.data_block_ms = 3000;
	set.timeouts.data_final_ms = 3000;
	set.timeouts.quit_ms = 3000;
	return set;
}

static void run_session(const struct smtpc_settings *set, int port, struct smtpc_message **msgs,
			size_t nmsg, struct run *r)
{
	memset(r, 0, sizeof *r);
	r->msgs = msgs;
	r->nmsg = nmsg;
	assert_int_equal(uv_loop_init(&r->loop), 0);
	struct smtpc_callbacks cbs = {.ready_cb = run_ready, .done_cb = run_done,
				      .closed_cb = run_closed};
	const char *err;
	assert_int_equal(smtpc_create(&r->loop, set, &cbs, r, &r->c, &err), 0);
	struct sockaddr_in sin;
	uv_ip4_addr("127.0.0.1", port, &sin);
	assert_int_equal(smtpc_connect(r->c, (struct sockaddr *)&sin, &err), 0);
	long deadline = now_ms() + 30000;
	while (r->closed == 0 && r->c != NULL && now_ms() < deadline)
		uv_run(&r->loop, UV_RUN_ONCE);
	smtpc_destroy(&r->c);
	uv_run(&r->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&r->loop), 0);
}

static void msg_init(struct smtpc_message *m, struct smtpc_rcpt *rcpts, size_t n,
		     const char *body)
{
	memset(m, 0, sizeof *m);
	m->mail_from = "sender@client.test";
	m->rcpts = rcpts;
	m->rcpt_count = n;
	m->body = (const uint8_t *)body;
	m->body_len = strlen(body);
}

static const char *BODY =
	"Subject: test\r\n\r\nline one\r\n.leading dot\r\n..two dots\r\nbare lf\nend";

/* ---- against Postfix's smtp-sink ------------------------------------------ */

static void test_postfix_pipelining_two_messages(void **state)
{
	(void)state;
	struct sink s;
	sink_postfix_start(&s, NULL);
	struct smtpc_rcpt r1[3] = {{.addr = "a@x.test"}, {.addr = "b@x.test"}, {.addr = "c@x.test"}};
	struct smtpc_rcpt r2[1] = {{.addr = "d@x.test"}};
	struct smtpc_message m1, m2;
	msg_init(&m1, r1, 3, BODY);
	msg_init(&m2, r2, 1, "Subject: two\r\n\r\nsecond\r\n");
	struct smtpc_message *msgs[] = {&m1, &m2};
	struct smtpc_settings set = base_settings();
	struct run r;
	run_session(&set, s.port, msgs, 2, &r);
	assert_int_equal(r.done, 2);
	assert_int_equal(r.ready, 1);
	assert_int_equal(r.why.status, SMTPC_OK);
	assert_int_equal(m1.result.status, SMTPC_OK);
	assert_int_equal(m1.result.code, 250);
	for (int i = 0; i < 3; i++)
		assert_int_equal(r1[i].result.code, 250);
	assert_int_equal(m2.result.status, SMTPC_OK);
	char *dump = slurp_pf(&s);
	/* dot-stuffing undone by the server: the lines arrive intact */
	/* (smtp-sink writes its dumps with LF line ends) */
	assert_non_null(strstr(dump, "\nline one\n.leading dot\n..two dots\nbare lf\nend\n"));
	assert_non_null(strstr(dump, "second"));
	free(dump);
	sink_stop(&s);
}

static void test_postfix_mail_rejected(void **state)
{
	(void)state;
	struct sink s;
	const char *args[] = {"-f", "MAIL", NULL};
	sink_postfix_start(&s, args);
	struct smtpc_rcpt r1[2] = {{.addr = "a@x.test"}, {.addr = "b@x.test"}};
	struct smtpc_message m1;
	msg_init(&m1, r1, 2, BODY);
	struct smtpc_message *msgs[] = {&m1};
	struct smtpc_settings set = base_settings();
	struct run r;
	run_session(&set, s.port, msgs, 1, &r);
	assert_int_equal(r.done, 1);
	assert_int_equal(m1.result.status, SMTPC_PERM);
	assert_int_equal(m1.result.stage, SMTPC_STAGE_MAIL);
	assert_int_equal(m1.result.code / 100, 5);
	assert_int_equal(r1[1].result.status, SMTPC_PERM);
	assert_int_equal(r.why.status, SMTPC_OK); /* RSET, QUIT: a clean end */
	sink_stop(&s);
}

static void test_postfix_no_8bitmime(void **state)
{
	(void)state;
	struct sink s;
	const char *args[] = {"-8", NULL};
	sink_postfix_start(&s, args);
	struct smtpc_rcpt r1[1] = {{.addr = "a@x.test"}};
	struct smtpc_rcpt r2[1] = {{.addr = "b@x.test"}};
	struct smtpc_message m1, m2;
	msg_init(&m1, r1, 1, "Subject: caf\xc3\xa9\r\n\r\n8 bit\r\n");
	m1.eight_bit = 1;
	msg_init(&m2, r2, 1, "Subject: plain\r\n\r\nascii\r\n");
	struct smtpc_message *msgs[] = {&m1, &m2};
	struct smtpc_settings set = base_settings();
	struct run r;
	run_session(&set, s.port, msgs, 2, &r);
	assert_int_equal(r.done, 2);
	assert_int_equal(m1.result.status, SMTPC_PERM);
	assert_int_equal(m1.result.code, 0);
	assert_string_equal(m1.result.enh, "5.6.3");
	assert_int_equal(m2.result.status, SMTPC_OK); /* the session goes on */
	sink_stop(&s);
}

/* ---- against smtp_sink.py ------------------------------------------------- */

static void test_py_per_recipient(void **state)
{
	(void)state;
	struct sink s;
	const char *args[] = {"--size", "1000000", "--rcpt-reply", "t@x.test=451 4.2.0 later",
			      "--rcpt-reply", "p@x.test=550 5.1.1 no such user", NULL};
	sink_py_start(&s, args);
	struct smtpc_rcpt r1[3] = {{.addr = "t@x.test"},
				   {.addr = "ok@x.test", .dsn_params = "NOTIFY=SUCCESS,FAILURE"},
				   {.addr = "p@x.test"}};
	struct smtpc_message m1;
	msg_init(&m1, r1, 3, BODY);
	m1.dsn_params = "RET=HDRS ENVID=abc";
	struct smtpc_message *msgs[] = {&m1};
	struct smtpc_settings set = base_settings();
	struct run r;
	run_session(&set, s.port, msgs, 1, &r);
	assert_int_equal(r.done, 1);
	assert_int_equal(m1.result.status, SMTPC_OK);
	assert_int_equal(r1[0].result.status, SMTPC_TEMP);
	assert_int_equal(r1[0].result.code, 451);
	assert_string_equal(r1[0].result.enh, "4.2.0");
	assert_string_equal(r1[0].result.text, "later");
	assert_int_equal(r1[1].result.status, SMTPC_OK);
	assert_int_equal(r1[1].result.stage, SMTPC_STAGE_DATA_FINAL);
	assert_int_equal(r1[2].result.status, SMTPC_PERM);
	assert_string_equal(r1[2].result.enh, "5.1.1");
	char *out = slurp(s.out);
	assert_non_null(strstr(out, "\"rcpts\": [\"<ok@x.test> NOTIFY=SUCCESS,FAILURE\"]"));
	assert_non_null(strstr(out, "RET=HDRS ENVID=abc"));
	assert_non_null(strstr(out, "SIZE="));
	free(out);
	sink_stop(&s);
}

static void test_py_all_rcpts_fail_rset(void **state)
{
	(void)state;
	struct sink s;
	const char *args[] = {"--no-pipelining", "--rcpt-reply", "a@x.test=550 5.1.1 no",
			      "--rcpt-reply", "b@x.test=452 4.5.3 too many", NULL};
	sink_py_start(&s, args);
	struct smtpc_rcpt r1[2] = {{.addr = "a@x.test"}, {.addr = "b@x.test"}};
	struct smtpc_message m1;
	msg_init(&m1, r1, 2, BODY);
	struct smtpc_message *msgs[] = {&m1};
	struct smtpc_settings set = base_settings();
	struct run r;
	run_session(&set, s.port, msgs, 1, &r);
	assert_int_equal(m1.result.status, SMTPC_TEMP);
	assert_int_equal(m1.result.stage, SMTPC_STAGE_RCPT);
	char path[600];
	snprintf(path, sizeof path, "%s.cmds", s.out);
	char *cmds = slurp(path);
	assert_non_null(strstr(cmds, "RSET\n"));
	assert_null(strstr(cmds, "DATA\n"));
	free(cmds);
	sink_stop(&s);
}

static void test_py_greeting_4xx(void **state)
{
	(void)state;
	struct sink s;
	const char *args[] = {"--greeting", "450 4.3.2 not now", NULL};
	sink_py_start(&s, args);
	struct smtpc_settings set = base_settings();
	struct run r;
	run_session(&set, s.port, NULL, 0, &r);
	assert_int_equal(r.ready, 0);
	assert_int_equal(r.why.status, SMTPC_TEMP);
	assert_int_equal(r.why.stage, SMTPC_STAGE_GREETING);
	assert_int_equal(r.why.code, 450);
	sink_stop(&s);
}

static void test_py_drop_in_data(void **state)
{
	(void)state;
	struct sink s;
	const char *args[] = {"--drop-in-data", "20", NULL};
	sink_py_start(&s, args);
	struct smtpc_rcpt r1[2] = {{.addr = "a@x.test"}, {.addr = "b@x.test"}};
	struct smtpc_message m1;
	msg_init(&m1, r1, 2, BODY);
	struct smtpc_message *msgs[] = {&m1};
	struct smtpc_settings set = base_settings();
	struct run r;
	run_session(&set, s.port, msgs, 1, &r);
	assert_int_equal(r.done, 1);
	assert_int_equal(m1.result.status, SMTPC_TEMP);
	assert_int_equal(r1[0].result.status, SMTPC_TEMP);
	assert_int_equal(r1[1].result.status, SMTPC_TEMP);
	assert_int_equal(r.why.status, SMTPC_TEMP);
	sink_stop(&s);
}

static void test_py_stall_timeout(void **state)
{
	(void)state;
	struct sink s;
	const char *args[] = {"--stall-at", "final", NULL};
	sink_py_start(&s, args);
	struct smtpc_rcpt r1[1] = {{.addr = "a@x.test"}};
	struct smtpc_message m1;
	msg_init(&m1, r1, 1, BODY);
	struct smtpc_message *msgs[] = {&m1};
	struct smtpc_settings set = base_settings();
	set.timeouts.data_final_ms = 300;
	struct run r;
	long t0 = now_ms();
	run_session(&set, s.port, msgs, 1, &r);
	assert_true(now_ms() - t0 < 3000);
	assert_int_equal(m1.result.status, SMTPC_TEMP);
	assert_int_equal(m1.result.stage, SMTPC_STAGE_DATA_FINAL);
	assert_string_equal(m1.result.enh, "4.4.2");
	sink_stop(&s);

	/* a server that never greets */
	const char *gargs[] = {"--stall-at", "greeting", NULL};
	sink_py_start(&s, gargs);
	set.timeouts.greeting_ms = 300;
	t0 = now_ms();
	run_session(&set, s.port, msgs, 1, &r);
	assert_true(now_ms() - t0 < 3000);
	assert_int_equal(r.ready, 0);
	assert_int_equal(r.why.status, SMTPC_TEMP);
	assert_int_equal(r.why.stage, SMTPC_STAGE_GREETING);
	sink_stop(&s);
}

/* TLS material: a self-signed cert for localhost and another unrelated one */
struct certs {
	char *dir;
	char cert[512], key[512], other[512], otherkey[512];
};

static void certs_make(struct certs *c)
{
	c->dir = mailtest_tmpdir("smtpc-certs");
	assert_non_null(c->dir);
	snprintf(c->cert, sizeof c->cert, "%s/cert.pem", c->dir);
	snprintf(c->key, sizeof c->key, "%s/key.pem", c->dir);
	snprintf(c->other, sizeof c->other, "%s/other.pem", c->dir);
	snprintf(c->otherkey, sizeof c->otherkey, "%s/otherkey.pem", c->dir);
	char cmd[2048];
	for (int i = 0; i < 2; i++) {
		snprintf(cmd, sizeof cmd,
			 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
			 "-keyout %s -out %s -days 2 -subj /CN=localhost "
			 "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 >/dev/null 2>&1",
			 i == 0 ? c->key : c->otherkey, i == 0 ? c->cert : c->other);
		assert_int_equal(system(cmd), 0);
	}
}

static void certs_free(struct certs *c)
{
	mailtest_rmrf(c->dir);
	free(c->dir);
}

static tls_client *client_tls(const char *ca_file)
{
	struct tls_client_settings ts = {.ca_file = ca_file};
	tls_client *cli;
	const char *err;
	if (ca_file == NULL)
		assert_int_equal(tls_client_create_unverified(&cli, &err), 0);
	else
		assert_int_equal(tls_client_create(&ts, &cli, &err), 0);
	return cli;
}

/* One message over a session with policy pol, tls client cli, AUTH user. */
static void tls_run(struct sink *s, enum smtpc_tls_policy pol, tls_client *cli, const char *user,
		    const char *pass, struct run *r, struct smtpc_message *m,
		    struct smtpc_rcpt *rc)
{
	rc[0] = (struct smtpc_rcpt){.addr = "a@x.test"};
	msg_init(m, rc, 1, BODY);
	struct smtpc_message *msgs[] = {m};
	struct smtpc_settings set = base_settings();
	set.tls = pol;
	set.tls_client = cli;
	set.tls_host = "localhost";
	set.auth_user = user;
	set.auth_pass = pass;
	run_session(&set, s->port, msgs, 1, r);
}

static void test_py_tls_policies(void **state)
{
	(void)state;
	struct certs c;
	certs_make(&c);
	tls_client *opp = client_tls(NULL), *ver_ok = client_tls(c.cert),
		   *ver_bad = client_tls(c.other);
	struct sink s;
	const char *args[] = {"--starttls", "--cert", c.cert, "--key", c.key, NULL};
	sink_py_start(&s, args);
	struct run r;
	struct smtpc_message m;
	struct smtpc_rcpt rc[1];

	/* may: self-signed is fine */
	tls_run(&s, SMTPC_TLS_MAY, opp, NULL, NULL, &r, &m, rc);
	assert_int_equal(m.result.status, SMTPC_OK);
	char *out = slurp(s.out);
	assert_non_null(strstr(out, "\"tls\": true"));
	free(out);
	/* verify against the right CA passes, against another fails (temp) */
	tls_run(&s, SMTPC_TLS_VERIFY, ver_ok, NULL, NULL, &r, &m, rc);
	assert_int_equal(m.result.status, SMTPC_OK);
	tls_run(&s, SMTPC_TLS_VERIFY, ver_bad, NULL, NULL, &r, &m, rc);
	assert_int_equal(r.ready, 0);
	assert_int_equal(r.why.status, SMTPC_TEMP);
	assert_int_equal(r.why.stage, SMTPC_STAGE_STARTTLS);
	sink_stop(&s);

	/* no STARTTLS offered: encrypt fails (temp), may goes plaintext */
	sink_py_start(&s, NULL);
	tls_run(&s, SMTPC_TLS_ENCRYPT, opp, NULL, NULL, &r, &m, rc);
	assert_int_equal(r.ready, 0);
	assert_int_equal(r.why.status, SMTPC_TEMP);
	assert_string_equal(r.why.enh, "4.7.4");
	tls_run(&s, SMTPC_TLS_MAY, opp, NULL, NULL, &r, &m, rc);
	assert_int_equal(m.result.status, SMTPC_OK);
	sink_stop(&s);

	/* offered but broken: never plaintext after it */
	const char *bargs[] = {"--starttls", "--broken-tls", NULL};
	sink_py_start(&s, bargs);
	tls_run(&s, SMTPC_TLS_MAY, opp, NULL, NULL, &r, &m, rc);
	assert_int_equal(r.ready, 0);
	assert_int_equal(r.why.status, SMTPC_TEMP);
	assert_int_equal(r.why.stage, SMTPC_STAGE_STARTTLS);
	char path[600];
	snprintf(path, sizeof path, "%s.cmds", s.out);
	char *cmds = slurp(path);
	assert_null(strstr(cmds, "MAIL"));
	assert_int_equal(r.done, 0);
	free(cmds);
	sink_stop(&s);

	/* plaintext injected after the 220 to STARTTLS: refused */
	const char *iargs[] = {"--starttls", "--tls-inject", "--cert", c.cert, "--key", c.key, NULL};
	sink_py_start(&s, iargs);
	tls_run(&s, SMTPC_TLS_MAY, opp, NULL, NULL, &r, &m, rc);
	assert_int_equal(r.ready, 0);
	assert_int_equal(r.why.status, SMTPC_TEMP);
	assert_int_equal(r.why.stage, SMTPC_STAGE_STARTTLS);
	assert_string_equal(r.why.text, "plaintext after the STARTTLS reply");
	sink_stop(&s);

	tls_client_destroy(&opp);
	tls_client_destroy(&ver_ok);
	tls_client_destroy(&ver_bad);
	certs_free(&c);
}

/* smtps (RFC 8314 implicit TLS): the handshake before the greeting, AUTH
 * inside it, no STARTTLS; a plaintext server fails at the handshake
 * (temporary), never plaintext; implicit TLS with policy MAY is refused. */
static void test_py_implicit_tls(void **state)
{
	(void)state;
	struct certs c;
	certs_make(&c);
	tls_client *opp = client_tls(NULL);
	struct sink s;
	struct run r;
	struct smtpc_message m;
	struct smtpc_rcpt rc[1];
	const char *args[] = {"--implicit-tls", "--cert", c.cert, "--key", c.key, "--auth",
			      "user:pw", NULL};
	sink_py_start(&s, args);
	rc[0] = (struct smtpc_rcpt){.addr = "a@x.test"};
	msg_init(&m, rc, 1, BODY);
	struct smtpc_message *msgs[] = {&m};
	struct smtpc_settings set = base_settings();
	set.tls = SMTPC_TLS_ENCRYPT;
	set.tls_client = opp;
	set.tls_host = "localhost";
	set.implicit_tls = 1;
	set.auth_user = "user";
	set.auth_pass = "pw";
	run_session(&set, s.port, msgs, 1, &r);
	assert_int_equal(m.result.status, SMTPC_OK);
	char *out = slurp(s.out);
	assert_non_null(strstr(out, "\"tls\": true"));
	assert_non_null(strstr(out, "\"auth\": \"user\""));
	free(out);
	char path[600];
	snprintf(path, sizeof path, "%s.cmds", s.out);
	char *cmds = slurp(path);
	assert_null(strstr(cmds, "STARTTLS"));
	free(cmds);
	sink_stop(&s);

	/* a plaintext server: the handshake fails, nothing is sent */
	sink_py_start(&s, NULL);
	msg_init(&m, rc, 1, BODY);
	run_session(&set, s.port, msgs, 1, &r);
	assert_int_equal(r.ready, 0);
	assert_int_equal(r.why.status, SMTPC_TEMP);
	assert_int_equal(r.why.stage, SMTPC_STAGE_STARTTLS);
	sink_stop(&s);

	smtpc *bad;
	const char *err;
	struct smtpc_callbacks cbs = {0};
	set.tls = SMTPC_TLS_MAY;
	assert_int_equal(smtpc_create(uv_default_loop(), &set, &cbs, NULL, &bad, &err), -1);
	tls_client_destroy(&opp);
	certs_free(&c);
}

static void test_py_auth(void **state)
{
	(void)state;
	struct certs c;
	certs_make(&c);
	tls_client *opp = client_tls(NULL);
	struct sink s;
	struct run r;
	struct smtpc_message m;
	struct smtpc_rcpt rc[1];

	/* PLAIN over TLS */
	const char *args[] = {"--starttls", "--cert", c.cert, "--key", c.key, "--auth",
			      "user:sec ret", NULL};
	sink_py_start(&s, args);
	tls_run(&s, SMTPC_TLS_ENCRYPT, opp, "user", "sec ret", &r, &m, rc);
	assert_int_equal(m.result.status, SMTPC_OK);
	char *out = slurp(s.out);
	assert_non_null(strstr(out, "\"auth\": \"user\""));
	free(out);
	/* a wrong password: temporary, no mail sent */
	tls_run(&s, SMTPC_TLS_ENCRYPT, opp, "user", "wrong", &r, &m, rc);
	assert_int_equal(r.ready, 0);
	assert_int_equal(r.why.status, SMTPC_TEMP);
	assert_int_equal(r.why.stage, SMTPC_STAGE_AUTH);
	assert_int_equal(r.why.code, 535);
	sink_stop(&s);

	/* AUTH offered in plaintext, policy none: the client refuses */
	const char *pargs[] = {"--auth", "user:pw", "--auth-plaintext", NULL};
	sink_py_start(&s, pargs);
	tls_run(&s, SMTPC_TLS_NONE, NULL, "user", "pw", &r, &m, rc);
	assert_int_equal(r.ready, 0);
	assert_int_equal(r.why.status, SMTPC_TEMP);
	assert_int_equal(r.why.stage, SMTPC_STAGE_AUTH);
	char path[600];
	snprintf(path, sizeof path, "%s.cmds", s.out);
	char *cmds = slurp(path);
	assert_null(strstr(cmds, "AUTH"));
	free(cmds);
	sink_stop(&s);

	tls_client_destroy(&opp);
	certs_free(&c);
}

static void test_py_auth_login(void **state)
{
	(void)state;
	struct certs c;
	certs_make(&c);
	tls_client *opp = client_tls(NULL);
	struct sink s;
	struct run r;
	struct smtpc_message m;
	struct smtpc_rcpt rc[1];
	/* a server that offers only LOGIN */
	const char *args[] = {"--starttls", "--cert", c.cert, "--key", c.key, "--auth",
			      "u:p", "--auth-mechs", "LOGIN", NULL};
	sink_py_start(&s, args);
	tls_run(&s, SMTPC_TLS_MAY, opp, "u", "p", &r, &m, rc);
	assert_int_equal(m.result.status, SMTPC_OK);
	char *out = slurp(s.out);
	assert_non_null(strstr(out, "\"auth\": \"u\""));
	free(out);
	char path[600];
	snprintf(path, sizeof path, "%s.cmds", s.out);
	char *cmds = slurp(path);
	assert_non_null(strstr(cmds, "AUTH LOGIN\n"));
	free(cmds);
	sink_stop(&s);
	tls_client_destroy(&opp);
	certs_free(&c);
}

static void test_py_smtputf8(void **state)
{
	(void)state;
	struct sink s;
	struct run r;
	struct smtpc_rcpt r1[1] = {{.addr = "j\xc3\xb6rg@x.test"}};
	struct smtpc_message m1;
	/* offered: MAIL carries SMTPUTF8 and BODY=8BITMIME */
	sink_py_start(&s, NULL);
	msg_init(&m1, r1, 1, "Subject: gr\xc3\xbc\xc3\x9f\x65\r\n\r\nx\r\n");
	m1.smtputf8 = 1;
	m1.eight_bit = 1;
	struct smtpc_message *msgs[] = {&m1};
	struct smtpc_settings set = base_settings();
	run_session(&set, s.port, msgs, 1, &r);
	assert_int_equal(m1.result.status, SMTPC_OK);
	char *out = slurp(s.out);
	assert_non_null(strstr(out, "BODY=8BITMIME SMTPUTF8"));
	free(out);
	sink_stop(&s);
	/* not offered: a permanent failure of that message, with the reason */
	const char *args[] = {"--no-smtputf8", NULL};
	sink_py_start(&s, args);
	run_session(&set, s.port, msgs, 1, &r);
	assert_int_equal(m1.result.status, SMTPC_PERM);
	assert_string_equal(m1.result.enh, "5.6.7");
	assert_int_equal(r1[0].result.status, SMTPC_PERM);
	assert_int_equal(r.why.status, SMTPC_OK);
	sink_stop(&s);
}

static void test_py_helo_fallback(void **state)
{
	(void)state;
	struct sink s;
	const char *args[] = {"--ehlo-reply", "502 5.5.1 no EHLO here", NULL};
	sink_py_start(&s, args);
	struct smtpc_rcpt r1[2] = {{.addr = "a@x.test"}, {.addr = "b@x.test"}};
	struct smtpc_message m1;
	msg_init(&m1, r1, 2, BODY);
	struct smtpc_message *msgs[] = {&m1};
	struct smtpc_settings set = base_settings();
	struct run r;
	run_session(&set, s.port, msgs, 1, &r);
	assert_int_equal(m1.result.status, SMTPC_OK);
	char path[600];
	snprintf(path, sizeof path, "%s.cmds", s.out);
	char *cmds = slurp(path);
	/* HELO, no extensions: no SIZE, one command at a time */
	assert_non_null(strstr(cmds, "EHLO client.test\nHELO client.test\n"
				     "MAIL FROM:<sender@client.test>\n"));
	free(cmds);
	sink_stop(&s);
}

/* A body of many blocks: lines with leading dots, bare LF, bare CR, CRLF,
 * no final line end. What the server stores after unstuffing must be the
 * body with every line end made CRLF and a final CRLF. */
static void test_py_large_body(void **state)
{
	(void)state;
	buf body, want;
	buf_init(&body);
	buf_init(&want);
	for (int i = 0; i < 20000; i++) {
		static const char *const ends[] = {"\r\n", "\n", "\r"};
		buf_printf(&body, "%s%d line%s", i % 3 == 0 ? "." : (i % 5 == 0 ? ".." : ""), i,
			   i == 19999 ? "" : ends[i % 3]);
		buf_printf(&want, "%s%d line\r\n", i % 3 == 0 ? "." : (i % 5 == 0 ? ".." : ""), i);
	}
	struct sink s;
	sink_py_start(&s, NULL);
	struct smtpc_rcpt r1[1] = {{.addr = "a@x.test"}};
	struct smtpc_message m1;
	memset(&m1, 0, sizeof m1);
	m1.mail_from = "";
	m1.rcpts = r1;
	m1.rcpt_count = 1;
	m1.body = body.data;
	m1.body_len = body.len;
	struct smtpc_message *msgs[] = {&m1};
	struct smtpc_settings set = base_settings();
	set.limits.data_block = 4096;
	struct run r;
	run_session(&set, s.port, msgs, 1, &r);
	assert_int_equal(m1.result.status, SMTPC_OK);
	char path[600];
	snprintf(path, sizeof path, "%s.1.eml", s.out);
	char *got = slurp(path);
	assert_int_equal(strlen(got), want.len);
	assert_memory_equal(got, want.data, want.len);
	free(got);
	buf_deinit(&body);
	buf_deinit(&want);
	sink_stop(&s);
}

static void test_connect_refused_and_destroy(void **state)
{
	(void)state;
	int port = mailtest_free_port();
	struct smtpc_settings set = base_settings();
	struct run r;
	run_session(&set, port, NULL, 0, &r);
	assert_int_equal(r.closed, 1);
	assert_int_equal(r.why.status, SMTPC_TEMP);
	assert_int_equal(r.why.stage, SMTPC_STAGE_CONNECT);

	/* destroy inside done_cb, and destroy while connecting */
	struct sink s;
	sink_py_start(&s, NULL);
	struct smtpc_rcpt r1[1] = {{.addr = "a@x.test"}};
	struct smtpc_message m1;
	msg_init(&m1, r1, 1, BODY);
	struct smtpc_message *msgs[] = {&m1};
	memset(&r, 0, sizeof r);
	r.msgs = msgs;
	r.nmsg = 1;
	r.destroy_in_done = 1;
	assert_int_equal(uv_loop_init(&r.loop), 0);
	struct smtpc_callbacks cbs = {.ready_cb = run_ready, .done_cb = run_done,
				      .closed_cb = run_closed};
	const char *err;
	assert_int_equal(smtpc_create(&r.loop, &set, &cbs, &r, &r.c, &err), 0);
	struct sockaddr_in sin;
	uv_ip4_addr("127.0.0.1", s.port, &sin);
	assert_int_equal(smtpc_connect(r.c, (struct sockaddr *)&sin, &err), 0);
	uv_run(&r.loop, UV_RUN_DEFAULT);
	assert_int_equal(r.done, 1);
	assert_int_equal(r.closed, 0);
	assert_null(r.c);
	smtpc *c2;
	assert_int_equal(smtpc_create(&r.loop, &set, &cbs, &r, &c2, &err), 0);
	assert_int_equal(smtpc_connect(c2, (struct sockaddr *)&sin, &err), 0);
	smtpc_destroy(&c2);
	uv_run(&r.loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&r.loop), 0);
	sink_stop(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reply_parser),
		cmocka_unit_test(test_caps),
		cmocka_unit_test_teardown(test_postfix_pipelining_two_messages, teardown_sinks),
		cmocka_unit_test_teardown(test_postfix_mail_rejected, teardown_sinks),
		cmocka_unit_test_teardown(test_postfix_no_8bitmime, teardown_sinks),
		cmocka_unit_test_teardown(test_py_per_recipient, teardown_sinks),
		cmocka_unit_test_teardown(test_py_all_rcpts_fail_rset, teardown_sinks),
		cmocka_unit_test_teardown(test_py_greeting_4xx, teardown_sinks),
		cmocka_unit_test_teardown(test_py_drop_in_data, teardown_sinks),
		cmocka_unit_test_teardown(test_py_stall_timeout, teardown_sinks),
		cmocka_unit_test_teardown(test_py_tls_policies, teardown_sinks),
		cmocka_unit_test_teardown(test_py_auth, teardown_sinks),
		cmocka_unit_test_teardown(test_py_implicit_tls, teardown_sinks),
		cmocka_unit_test_teardown(test_py_auth_login, teardown_sinks),
		cmocka_unit_test_teardown(test_py_smtputf8, teardown_sinks),
		cmocka_unit_test_teardown(test_py_helo_fallback, teardown_sinks),
		cmocka_unit_test_teardown(test_py_large_body, teardown_sinks),
		cmocka_unit_test_teardown(test_connect_refused_and_destroy, teardown_sinks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
