/* Unit tests for lib/tls: a real OpenSSL client (memory BIOs, verifying
 * the development CA made by cluster/dev-ca) against tls_conn: handshake
 * and data, TLS 1.1 refused, SNI certificates, tickets shared by two
 * servers with one secret, rotation, certificate reload. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "buf.h"
#include "tls.h"

struct fixture {
	char dir[64];
	char path[5][160];
};

enum { P_CA, P_CERT, P_KEY, P_DOM_CERT, P_DOM_KEY };

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/test-tls-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	char cmd[512];
	snprintf(cmd, sizeof cmd,
		 "%s/cluster/dev-ca %s && %s/cluster/dev-ca %s server example.com "
		 "DNS:example.com,DNS:*.example.com",
		 MAIL_SOURCE_DIR, f->dir, MAIL_SOURCE_DIR, f->dir);
	if (system(cmd) != 0)
		return -1;
	const char *names[] = { "ca.pem", "frontend.pem", "frontend.key", "example.com.pem",
				"example.com.key" };
	for (int i = 0; i < 5; i++)
		snprintf(f->path[i], sizeof f->path[i], "%s/%s", f->dir, names[i]);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static tls_server *server_new(const struct fixture *f)
{
	struct tls_server_settings set = { f->path[P_CERT], f->path[P_KEY], 0 };
	tls_server *srv = NULL;
	const char *err = NULL;
	assert_int_equal(tls_server_create(&set, &srv, &err), 0);
	return srv;
}

/* ---- a client on memory BIOs ------------------------------------------- */

struct client {
	SSL_CTX *ctx;
	SSL *ssl;
	BIO *rbio, *wbio;
};

static void client_init(struct client *c, const struct fixture *f, const char *sni,
			int max_version, SSL_SESSION *resume)
{
	c->ctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_load_verify_locations(c->ctx, f->path[P_CA], NULL);
	SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_min_proto_version(c->ctx, TLS1_VERSION);
	SSL_CTX_set_security_level(c->ctx, 0); /* allow offering TLS 1.1 */
	if (max_version)
		SSL_CTX_set_max_proto_version(c->ctx, max_version);
	c->ssl = SSL_new(c->ctx);
	c->rbio = BIO_new(BIO_s_mem());
	c->wbio = BIO_new(BIO_s_mem());
	BIO_set_mem_eof_return(c->rbio, -1);
	SSL_set_bio(c->ssl, c->rbio, c->wbio);
	SSL_set_connect_state(c->ssl);
	if (sni != NULL) {
		SSL_set_tlsext_host_name(c->ssl, sni);
		SSL_set1_host(c->ssl, sni);
	}
	if (resume != NULL)
		SSL_set_session(c->ssl, resume);
}

static void client_deinit(struct client *c)
{
	SSL_free(c->ssl);
	SSL_CTX_free(c->ctx);
}

/* Move bytes both ways until neither side has anything to say. Returns the
 * server's last feed result. */
static enum tls_feed_result pump(struct client *c, tls_conn *s, buf *plain)
{
	enum tls_feed_result r = TLS_FEED_OK;
	for (int round = 0; round < 20; round++) {
		SSL_do_handshake(c->ssl);
		char tmp[65536];
		int n = BIO_read(c->wbio, tmp, sizeof tmp);
		buf net;
		buf_init(&net);
		if (n > 0)
			r = tls_conn_feed(s, tmp, (size_t)n, plain, &net);
		if (net.len > 0)
			BIO_write(c->rbio, net.data, (int)net.len);
		int idle = n <= 0 && net.len == 0;
		buf_deinit(&net);
		if (r == TLS_FEED_ERROR || idle)
			break;
	}
	return r;
}

/* Handshake, then a line each way. Returns 1 when resumed. */
static int talk(const struct fixture *f, tls_server *srv, const char *sni,
		SSL_SESSION **session_r, SSL_SESSION *resume, const char *want_cn)
{
	struct client c;
	client_init(&c, f, sni, 0, resume);
	tls_conn *s = tls_conn_new_server(srv);
	buf plain, net;
	buf_init(&plain);
	buf_init(&net);
	assert_int_equal(tls_conn_write(s, "220 hello\r\n", 11, &net), 0); /* held */
	assert_int_equal(net.len, 0);
	assert_int_equal(pump(&c, s, &plain), TLS_FEED_OK);
	assert_true(tls_conn_handshake_done(s));
	assert_int_equal(SSL_get_verify_result(c.ssl), X509_V_OK);
	if (want_cn != NULL) {
		X509 *peer = SSL_get1_peer_certificate(c.ssl);
		char cn[128] = "";
		X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn,
					  sizeof cn);
		assert_string_equal(cn, want_cn);
		X509_free(peer);
	}
	char line[64] = "";
	int n = SSL_read(c.ssl, line, sizeof line - 1);
	assert_int_equal(n, 11);
	assert_string_equal(line, "220 hello\r\n");
	assert_int_equal(SSL_write(c.ssl, "EHLO x\r\n", 8), 8);
	assert_int_equal(pump(&c, s, &plain), TLS_FEED_OK);
	assert_int_equal(plain.len, 8);
	assert_memory_equal(plain.data, "EHLO x\r\n", 8);
	int resumed = tls_conn_resumed(s);
	assert_int_equal(resumed, SSL_session_reused(c.ssl));
	if (session_r != NULL) {
		SSL_read(c.ssl, line, sizeof line); /* takes the TLS 1.3 ticket */
		*session_r = SSL_get1_session(c.ssl);
	}
	/* close_notify ends the server's input */
	SSL_shutdown(c.ssl);
	char tmp[4096];
	int m = BIO_read(c.wbio, tmp, sizeof tmp);
	assert_true(m > 0);
	assert_int_equal(tls_conn_feed(s, tmp, (size_t)m, &plain, &net), TLS_FEED_CLOSED);
	buf_deinit(&plain);
	buf_deinit(&net);
	tls_conn_free(&s);
	client_deinit(&c);
	return resumed;
}

static void test_handshake_and_data(void **state)
{
	struct fixture *f = *state;
	tls_server *srv = server_new(f);
	assert_int_equal(talk(f, srv, "localhost", NULL, NULL, "localhost"), 0);
	assert_int_equal(talk(f, srv, NULL, NULL, NULL, "localhost"), 0);
	tls_server_destroy(&srv);
}

static void test_old_versions_refused(void **state)
{
	struct fixture *f = *state;
	tls_server *srv = server_new(f);
	struct client c;
	client_init(&c, f, "localhost", TLS1_1_VERSION, NULL);
	tls_conn *s = tls_conn_new_server(srv);
	buf plain;
	buf_init(&plain);
	assert_int_equal(pump(&c, s, &plain), TLS_FEED_ERROR);
	assert_false(tls_conn_handshake_done(s));
	assert_true(strlen(tls_conn_error(s)) > 0);
	/* and garbage is an error, not a crash */
	tls_conn *g = tls_conn_new_server(srv);
	buf net;
	buf_init(&net);
	assert_int_equal(tls_conn_feed(g, "EHLO x\r\n\r\n\r\n", 12, &plain, &net),
			 TLS_FEED_ERROR);
	buf_deinit(&net);
	tls_conn_free(&g);
	buf_deinit(&plain);
	tls_conn_free(&s);
	client_deinit(&c);
	tls_server_destroy(&srv);
}

static char *slurp(const char *path, size_t *len_r)
{
	FILE *fp = fopen(path, "rb");
	assert_non_null(fp);
	char *data = calloc(1, 65536);
	*len_r = fread(data, 1, 65535, fp);
	fclose(fp);
	return data;
}

static void test_sni(void **state)
{
	struct fixture *f = *state;
	tls_server *srv = server_new(f);
	size_t cl, kl;
	char *cert = slurp(f->path[P_DOM_CERT], &cl);
	char *key = slurp(f->path[P_DOM_KEY], &kl);
	const char *err = NULL;
	/* a key that does not match is refused, and nothing changes */
	size_t fkl;
	char *other_key = slurp(f->path[P_KEY], &fkl);
	assert_int_equal(tls_server_set_domain(srv, "example.com", cert, cl, other_key, fkl, &err),
			 -1);
	assert_int_equal(tls_server_domain_count(srv), 0);
	assert_int_equal(tls_server_set_domain(srv, "example.com", cert, cl, key, kl, &err), 0);
	assert_int_equal(tls_server_domain_count(srv), 1);
	talk(f, srv, "example.com", NULL, NULL, "example.com");
	talk(f, srv, "mail.example.com", NULL, NULL, "example.com");
	talk(f, srv, "localhost", NULL, NULL, "localhost");
	/* "notexample.com" is no subdomain of example.com: the default (the
	 * client then refuses the name, so only the server side is looked at) */
	assert_int_equal(tls_server_set_domain(srv, "example.com", NULL, 0, NULL, 0, &err), 0);
	assert_int_equal(tls_server_domain_count(srv), 0);
	talk(f, srv, "localhost", NULL, NULL, "localhost");
	free(cert);
	free(key);
	free(other_key);
	tls_server_destroy(&srv);
}

static void test_tickets_shared(void **state)
{
	struct fixture *f = *state;
	tls_server *a = server_new(f), *b = server_new(f), *other = server_new(f);
	const char secret[] = "0123456789abcdef0123456789abcdef";
	assert_int_equal(tls_server_set_ticket_secret(a, secret, 32), 0);
	assert_int_equal(tls_server_set_ticket_secret(b, secret, 32), 0);
	assert_int_equal(tls_server_set_ticket_secret(a, "short", 5), -1);
	uint64_t t0 = 1800000000;
	tls_server_set_clock(a, t0);
	tls_server_set_clock(b, t0);
	tls_server_set_clock(other, t0);
	SSL_SESSION *sess = NULL;
	assert_int_equal(talk(f, a, "localhost", &sess, NULL, NULL), 0);
	assert_non_null(sess);
	/* b never saw the session: it resumes from the ticket alone */
	assert_int_equal(talk(f, b, "localhost", NULL, sess, NULL), 1);
	/* a server with another secret cannot */
	assert_int_equal(talk(f, other, "localhost", NULL, sess, NULL), 0);
	/* one period later the key is still accepted ... */
	tls_server_set_clock(b, t0 + TLS_TICKET_PERIOD_S_DEFAULT);
	assert_int_equal(talk(f, b, "localhost", NULL, sess, NULL), 1);
	/* ... after TLS_TICKET_PERIODS_ACCEPTED it is not */
	tls_server_set_clock(b, t0 + TLS_TICKET_PERIODS_ACCEPTED * TLS_TICKET_PERIOD_S_DEFAULT);
	assert_int_equal(talk(f, b, "localhost", NULL, sess, NULL), 0);
	SSL_SESSION_free(sess);
	tls_server_destroy(&a);
	tls_server_destroy(&b);
	tls_server_destroy(&other);
}

static void test_reload(void **state)
{
	struct fixture *f = *state;
	tls_server *srv = server_new(f);
	const char *err = NULL;
	/* a missing file or a mismatched pair keeps the working certificate */
	assert_int_equal(tls_server_load_default(srv, "/nonexistent.pem", f->path[P_KEY], &err),
			 -1);
	assert_int_equal(tls_server_load_default(srv, f->path[P_DOM_CERT], f->path[P_KEY], &err),
			 -1);
	talk(f, srv, "localhost", NULL, NULL, "localhost");
	/* a good pair replaces it for new connections */
	assert_int_equal(tls_server_load_default(srv, f->path[P_DOM_CERT], f->path[P_DOM_KEY],
						 &err), 0);
	talk(f, srv, "example.com", NULL, NULL, "example.com");
	tls_server_destroy(&srv);
}

/* ---- mutual TLS: tls_client against a server requiring certificates ---- */

/* Pump between two tls_conns until both are quiet. Returns the server's
 * last result (the client's in *cr). */
static enum tls_feed_result pump2(tls_conn *cl, tls_conn *sv, enum tls_feed_result *cr)
{
	buf to_s, to_c, plain;
	buf_init(&to_s);
	buf_init(&to_c);
	buf_init(&plain);
	enum tls_feed_result sr = TLS_FEED_OK;
	*cr = tls_conn_feed(cl, NULL, 0, &plain, &to_s);
	for (int round = 0; round < 20 && (to_s.len > 0 || to_c.len > 0); round++) {
		if (to_s.len > 0) {
			buf in = to_s;
			buf_init(&to_s);
			sr = tls_conn_feed(sv, in.data, in.len, &plain, &to_c);
			buf_deinit(&in);
		}
		if (to_c.len > 0 && *cr != TLS_FEED_ERROR) {
			buf in = to_c;
			buf_init(&to_c);
			*cr = tls_conn_feed(cl, in.data, in.len, &plain, &to_s);
			buf_deinit(&in);
		} else {
			buf_reset(&to_c);
		}
		if (sr == TLS_FEED_ERROR)
			break;
	}
	buf_deinit(&to_s);
	buf_deinit(&to_c);
	buf_deinit(&plain);
	return sr;
}

static void node_cert(const struct fixture *f, const char *name, const char *role)
{
	char cmd[512];
	snprintf(cmd, sizeof cmd, "%s/cluster/dev-ca %s node %s %s", MAIL_SOURCE_DIR, f->dir,
		 name, role);
	assert_int_equal(system(cmd), 0);
}

static void test_mutual(void **state)
{
	struct fixture *f = *state;
	node_cert(f, "store-1", "store");
	node_cert(f, "fe-1", "frontend");
	char cert[200], key[200], fcert[200], fkey[200];
	snprintf(cert, sizeof cert, "%s/store-1.pem", f->dir);
	snprintf(key, sizeof key, "%s/store-1.key", f->dir);
	snprintf(fcert, sizeof fcert, "%s/fe-1.pem", f->dir);
	snprintf(fkey, sizeof fkey, "%s/fe-1.key", f->dir);
	struct tls_server_settings ss = { cert, key, 0 };
	tls_server *srv = NULL;
	const char *err = NULL;
	assert_int_equal(tls_server_create(&ss, &srv, &err), 0);
	assert_int_equal(tls_server_require_client_cert(srv, f->path[P_CA], &err), 0);

	/* a frontend certificate: both verified, the role read */
	struct tls_client_settings cs = { f->path[P_CA], fcert, fkey };
	tls_client *cli = NULL;
	assert_int_equal(tls_client_create(&cs, &cli, &err), 0);
	enum tls_feed_result cr;
	tls_conn *c = tls_conn_new_client(cli, "127.0.0.1");
	tls_conn *s = tls_conn_new_server(srv);
	assert_int_equal(pump2(c, s, &cr), TLS_FEED_OK);
	assert_int_equal(cr, TLS_FEED_OK);
	assert_true(tls_conn_handshake_done(s));
	assert_true(tls_conn_handshake_done(c));
	assert_string_equal(tls_conn_peer_role(s), "frontend");
	assert_string_equal(tls_conn_peer_role(c), "store");
	tls_conn_free(&c);
	tls_conn_free(&s);
	/* by name too */
	c = tls_conn_new_client(cli, "store-1");
	s = tls_conn_new_server(srv);
	assert_int_equal(pump2(c, s, &cr), TLS_FEED_OK);
	assert_true(tls_conn_handshake_done(c));
	tls_conn_free(&c);
	tls_conn_free(&s);
	/* a name the certificate does not carry: the client refuses */
	c = tls_conn_new_client(cli, "queue-9");
	s = tls_conn_new_server(srv);
	pump2(c, s, &cr);
	assert_int_equal(cr, TLS_FEED_ERROR);
	assert_false(tls_conn_handshake_done(s));
	tls_conn_free(&c);
	tls_conn_free(&s);
	tls_client_destroy(&cli);
	assert_null(cli);

	/* no client certificate: the server refuses the handshake */
	struct tls_client_settings anon = { f->path[P_CA], NULL, NULL };
	assert_int_equal(tls_client_create(&anon, &cli, &err), 0);
	c = tls_conn_new_client(cli, "127.0.0.1");
	s = tls_conn_new_server(srv);
	assert_int_equal(pump2(c, s, &cr), TLS_FEED_ERROR);
	assert_false(tls_conn_handshake_done(s));
	assert_string_equal(tls_conn_peer_role(s), "");
	tls_conn_free(&c);
	tls_conn_free(&s);
	tls_client_destroy(&cli);

	/* a certificate from another CA: refused too */
	char other[200], cmd[600];
	snprintf(other, sizeof other, "%s/other", f->dir);
	snprintf(cmd, sizeof cmd, "%s/cluster/dev-ca %s node x-1 store", MAIL_SOURCE_DIR, other);
	assert_int_equal(system(cmd), 0);
	char ocert[240], okey[240];
	snprintf(ocert, sizeof ocert, "%s/x-1.pem", other);
	snprintf(okey, sizeof okey, "%s/x-1.key", other);
	struct tls_client_settings alien = { f->path[P_CA], ocert, okey };
	assert_int_equal(tls_client_create(&alien, &cli, &err), 0);
	c = tls_conn_new_client(cli, "127.0.0.1");
	s = tls_conn_new_server(srv);
	assert_int_equal(pump2(c, s, &cr), TLS_FEED_ERROR);
	assert_false(tls_conn_handshake_done(s));
	tls_conn_free(&c);
	tls_conn_free(&s);
	tls_client_destroy(&cli);

	/* a server without the requirement: no role, but it works */
	tls_server_destroy(&srv);
	assert_int_equal(tls_server_create(&ss, &srv, &err), 0);
	assert_int_equal(tls_client_create(&anon, &cli, &err), 0);
	c = tls_conn_new_client(cli, "localhost");
	s = tls_conn_new_server(srv);
	assert_int_equal(pump2(c, s, &cr), TLS_FEED_OK);
	assert_true(tls_conn_handshake_done(s));
	assert_string_equal(tls_conn_peer_role(s), "");
	tls_conn_free(&c);
	tls_conn_free(&s);
	tls_client_destroy(&cli);
	tls_server_destroy(&srv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_handshake_and_data),
		cmocka_unit_test(test_old_versions_refused),
		cmocka_unit_test(test_sni),
		cmocka_unit_test(test_tickets_shared),
		cmocka_unit_test(test_reload),
		cmocka_unit_test(test_mutual),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
