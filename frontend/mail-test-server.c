/* mail-test-server: the IMAP and POP3 engines over one in-memory backend,
 * for client tests (test-imap-imaplib.py, test-pop3-poplib.py) and manual
 * poking. Development tool only.
 *
 *   mail-test-server [--body-budget BYTES] [--tls CERT KEY] PORT USER PASSWORD
 *                    [MESSAGE-FILE...]
 *
 * Listens for IMAP on 127.0.0.1:PORT (0 = any free port) and for POP3 on
 * a free port, with plaintext logins allowed (loopback development mode),
 * loads each MESSAGE-FILE into the user's INBOX, prints "port=N" (IMAP)
 * and "pop3port=N" on stdout once listening, and exits cleanly on SIGTERM
 * or SIGINT. With --tls, those ports offer STARTTLS/STLS and refuse
 * credentials before it, and two more listeners speak TLS from the first
 * byte: IMAPS, printed first as "tlsport=N", and POP3S, printed last as
 * "pop3sport=N". */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budget.h"
#include "imap-memory-backend.h"
#include "imap-server.h"
#include "pop3-server.h"
#include "tls.h"
#include "xalloc.h"

struct tool {
	imap_server *server;
	imap_server *tls_server;
	pop3_server *pop3;
	pop3_server *pop3s;
	uv_signal_t sigterm;
	uv_signal_t sigint;
};

static void tool_signal_cb(uv_signal_t *handle, int signum)
{
	struct tool *t = handle->data;
	(void)signum;
	imap_server_stop(&t->server);
	imap_server_stop(&t->tls_server);
	pop3_server_stop(&t->pop3);
	pop3_server_stop(&t->pop3s);
	uv_close((uv_handle_t *)&t->sigterm, NULL);
	uv_close((uv_handle_t *)&t->sigint, NULL);
}

static int tool_load(imap_memory_backend *mb, const char *user, const char *path)
{
	FILE *fp = fopen(path, "rb");
	if (fp == NULL)
		return -1;
	char *data = NULL;
	size_t len = 0, cap = 0;
	for (;;) {
		if (len == cap) {
			cap = cap == 0 ? 65536 : cap * 2;
			data = xrealloc(data, cap);
		}
		size_t n = fread(data + len, 1, cap - len, fp);
		if (n == 0)
			break;
		len += n;
	}
	fclose(fp);
	imap_memory_backend_add_message(mb, user, "INBOX", data, len, "", 1700000000000LL);
	free(data);
	return 0;
}

int main(int argc, char **argv)
{
	struct imap_settings set;
	struct tool t = { 0 };
	const char *error;

	tls_server *tls = NULL;
	struct mem_budget budget = { 0 };
	if (argc >= 3 && strcmp(argv[1], "--body-budget") == 0) {
		budget.limit = (size_t)strtoull(argv[2], NULL, 10);
		argv += 2;
		argc -= 2;
	}
	if (argc >= 4 && strcmp(argv[1], "--tls") == 0) {
		struct tls_server_settings ts = { argv[2], argv[3], 0 };
		if (tls_server_create(&ts, &tls, &error) < 0) {
			fprintf(stderr, "%s\n", error);
			return 1;
		}
		argv += 3;
		argc -= 3;
	}
	if (argc < 4) {
		fprintf(stderr, "usage: %s [--tls CERT KEY] PORT USER PASSWORD [MESSAGE-FILE...]\n",
			argv[0]);
		return 2;
	}
	uv_loop_t *loop = uv_default_loop();
	imap_memory_backend *mb = imap_memory_backend_create(loop);
	imap_memory_backend_add_user(mb, argv[2], argv[3]);
	for (int i = 4; i < argc; i++) {
		if (tool_load(mb, argv[2], argv[i]) < 0) {
			fprintf(stderr, "cannot read %s\n", argv[i]);
			return 1;
		}
	}
	imap_settings_init(&set);
	set.conn.port = atoi(argv[1]);
	set.conn.access.allow_plaintext_login = tls == NULL;
	set.conn.access.tls = tls;
	if (budget.limit > 0)
		set.conn.access.body_budget = &budget;
	int ret = imap_server_start(loop, &set, &imap_memory_backend_vfuncs, mb, &t.server, &error);
	if (ret == 0 && tls != NULL) {
		set.conn.port = 0;
		set.conn.access.implicit_tls = 1;
		ret = imap_server_start(loop, &set, &imap_memory_backend_vfuncs, mb, &t.tls_server,
					&error);
	}
	struct pop3_settings pop3;
	pop3_settings_init(&pop3);
	pop3.conn.port = 0;
	pop3.conn.access = set.conn.access;
	pop3.conn.access.implicit_tls = 0;
	if (ret == 0)
		ret = pop3_server_start(loop, &pop3, &imap_memory_backend_vfuncs, mb, &t.pop3, &error);
	if (ret == 0 && tls != NULL) {
		pop3.conn.access.implicit_tls = 1;
		ret = pop3_server_start(loop, &pop3, &imap_memory_backend_vfuncs, mb, &t.pop3s, &error);
	}
	if (ret < 0) {
		fprintf(stderr, "%s\n", error);
		return 1;
	}
	if (t.tls_server != NULL)
		printf("tlsport=%d\n", imap_server_port(t.tls_server));
	uv_signal_init(loop, &t.sigterm);
	uv_signal_init(loop, &t.sigint);
	t.sigterm.data = &t;
	t.sigint.data = &t;
	uv_signal_start(&t.sigterm, tool_signal_cb, SIGTERM);
	uv_signal_start(&t.sigint, tool_signal_cb, SIGINT);
	printf("port=%d\npop3port=%d\n", imap_server_port(t.server), pop3_server_port(t.pop3));
	if (t.pop3s != NULL)
		printf("pop3sport=%d\n", pop3_server_port(t.pop3s));
	fflush(stdout);
	uv_run(loop, UV_RUN_DEFAULT);
	imap_memory_backend_destroy(&mb);
	tls_server_destroy(&tls);
	return uv_loop_close(loop) == 0 ? 0 : 1;
}
