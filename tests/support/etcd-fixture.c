/* etcd-fixture.c: a real etcd for integration tests (see etcd-fixture.h). */
#include "etcd-fixture.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAILTEST_ETCD_BIN "/usr/bin/etcd"
#define MAILTEST_ETCDCTL_BIN "/usr/bin/etcdctl"
#define MAILTEST_CURL_BIN "/usr/bin/curl"
#define MAILTEST_DEV_CA MAIL_SOURCE_DIR "/cluster/dev-ca"
#define MAILTEST_ETCD_QUOTA "268435456"
#define MAILTEST_ETCD_READY_MS 10000
#define MAILTEST_ETCD_STOP_MS 5000
#define MAILTEST_ETCD_ATTEMPTS 3

struct mailtest_etcd {
	pid_t pid;
	int client_port;
	int peer_port;
	int tls;
	char *dir;
	char url[64];
	char tls_dir[512];
	char ca[600], cert[600], key[600];
	etcd_conf conf;
};

void mailtest_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static long mailtest__now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* 1 when port can be bound on 127.0.0.1 now. */
static int port_bindable(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return 0;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int ok = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
	close(fd);
	return ok;
}

/* A port free now, in 10000-19999: below the kernel's ephemeral range, so
 * a process binding port 0 meanwhile (another test, an RPC client) cannot
 * take it before etcd binds it; and apart from cluster/local.py's range
 * (20000-31999). */
int mailtest_free_port(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	unsigned seed = (unsigned)getpid() * 2654435761u ^ (unsigned)ts.tv_nsec;
	for (int i = 0; i < 200; i++) {
		int port = 10000 + (int)(rand_r(&seed) % 10000);
		if (port_bindable(port))
			return port;
	}
	return -1;
}

char *mailtest_tmpdir(const char *prefix)
{
	char *path;
	if (asprintf(&path, "/tmp/%s.XXXXXX", prefix) < 0)
		return NULL;
	if (mkdtemp(path) == NULL) {
		free(path);
		return NULL;
	}
	return path;
}

static int mailtest__rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

int mailtest_rmrf(const char *path)
{
	return nftw(path, mailtest__rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* GET url/health; 1 when it answers {"health":"true"}. A raw HTTP/1.0
 * request keeps this library free of libcurl. */
static int mailtest__healthy(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return 0;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct timeval tv = { 1, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	int ok = 0;
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
		static const char req[] = "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
		char resp[1024];
		size_t got = 0;
		if (write(fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1)) {
			ssize_t n;
			while (got < sizeof resp - 1 &&
			       (n = read(fd, resp + got, sizeof resp - 1 - got)) > 0)
				got += (size_t)n;
		}
		resp[got] = '\0';
		ok = strstr(resp, "\"health\":\"true\"") != NULL;
	}
	close(fd);
	return ok;
}

/* With TLS: curl (the CLI) GETs /health with the client certificate. */
static int mailtest__healthy_tls(const mailtest_etcd *e)
{
	int fds[2];
	if (pipe(fds) < 0)
		return 0;
	char url[96];
	snprintf(url, sizeof url, "%s/health", e->url);
	pid_t pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return 0;
	}
	if (pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		close(fds[0]);
		close(fds[1]);
		int devnull = open("/dev/null", O_RDWR);
		if (devnull >= 0)
			dup2(devnull, STDERR_FILENO);
		execl(MAILTEST_CURL_BIN, "curl", "-s", "-m", "1", "--cacert", e->ca, "--cert",
		      e->cert, "--key", e->key, url, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	char resp[256];
	size_t got = 0;
	ssize_t n;
	while (got < sizeof resp - 1 &&
	       ((n = read(fds[0], resp + got, sizeof resp - 1 - got)) > 0 ||
		(n < 0 && errno == EINTR)))
		got += n > 0 ? (size_t)n : 0;
	resp[got] = '\0';
	close(fds[0]);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	return strstr(resp, "\"health\":\"true\"") != NULL;
}

static void mailtest__kill(mailtest_etcd *e)
{
	if (e->pid <= 0)
		return;
	kill(e->pid, SIGTERM);
	long deadline = mailtest__now_ms() + MAILTEST_ETCD_STOP_MS;
	for (;;) {
		pid_t r = waitpid(e->pid, NULL, WNOHANG);
		if (r == e->pid || (r < 0 && errno != EINTR))
			break;
		if (mailtest__now_ms() > deadline) {
			kill(e->pid, SIGKILL);
			waitpid(e->pid, NULL, 0);
			break;
		}
		mailtest_sleep_ms(20);
	}
	e->pid = 0;
}

/* Start etcd on e's ports and data dir and wait until it is healthy: 0,
 * or -1 (stopped again). */
static int mailtest__spawn(mailtest_etcd *e)
{
	const char *scheme = e->tls ? "https" : "http";
	char client[64], peer[64], cluster[96], data[512];
	snprintf(client, sizeof client, "%s://127.0.0.1:%d", scheme, e->client_port);
	snprintf(peer, sizeof peer, "http://127.0.0.1:%d", e->peer_port);
	snprintf(cluster, sizeof cluster, "t=%s", peer);
	snprintf(data, sizeof data, "%s/data", e->dir);
	snprintf(e->url, sizeof e->url, "%s", client);
	char srv_cert[600], srv_key[600];
	snprintf(srv_cert, sizeof srv_cert, "%s/etcd-server.pem", e->tls_dir);
	snprintf(srv_key, sizeof srv_key, "%s/etcd-server.key", e->tls_dir);

	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		/* child: quiet etcd down to errors, keep stderr for those */
		int devnull = open("/dev/null", O_RDWR);
		if (devnull >= 0) {
			dup2(devnull, STDIN_FILENO);
			dup2(devnull, STDOUT_FILENO);
		}
		const char *argv[48] = {
			"etcd", "--name", "t", "--data-dir", data, "--logger", "zap",
			"--log-level", "error", "--listen-client-urls", client,
			"--advertise-client-urls", client, "--listen-peer-urls", peer,
			"--initial-advertise-peer-urls", peer, "--initial-cluster", cluster,
			"--initial-cluster-state", "new",
			/* as every etcd we start: compaction and a quota
			 * (docs/deploy.md); tests stay far below 256 MiB */
			"--auto-compaction-mode", "periodic", "--auto-compaction-retention",
			"5m", "--quota-backend-bytes", MAILTEST_ETCD_QUOTA,
		};
		int n = 0;
		while (argv[n] != NULL)
			n++;
		if (e->tls) {
			const char *more[] = { "--cert-file", srv_cert, "--key-file", srv_key,
					       "--trusted-ca-file", e->ca, "--client-cert-auth",
					       NULL };
			for (int k = 0; more[k] != NULL; k++)
				argv[n++] = more[k];
		}
		argv[n] = NULL;
		execv(MAILTEST_ETCD_BIN, (char *const *)argv);
		_exit(127);
	}
	e->pid = pid;
	long deadline = mailtest__now_ms() + MAILTEST_ETCD_READY_MS;
	while (mailtest__now_ms() < deadline) {
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			/* exited: most likely a port got taken meanwhile */
			e->pid = 0;
			break;
		}
		if (e->tls ? mailtest__healthy_tls(e) : mailtest__healthy(e->client_port))
			return 0;
		mailtest_sleep_ms(50);
	}
	fprintf(stderr, "etcd-fixture: etcd on port %d did not become healthy\n",
		e->client_port);
	mailtest__kill(e);
	return -1;
}

/* One attempt on fresh ports: 0 when healthy, -1 otherwise (cleaned). */
static int mailtest__try_start(mailtest_etcd *e)
{
	e->client_port = mailtest_free_port();
	e->peer_port = mailtest_free_port();
	if (e->client_port < 0 || e->peer_port < 0 || e->client_port == e->peer_port)
		return -1;
	if (mailtest__spawn(e) == 0)
		return 0;
	char data[512];
	snprintf(data, sizeof data, "%s/data", e->dir);
	mailtest_rmrf(data);
	return -1;
}

/* cluster/dev-ca DIR ARGS...: 0 when it succeeded. */
static int mailtest__dev_ca(const char *dir, const char *a1, const char *a2, const char *a3)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		execl("/bin/sh", "sh", MAILTEST_DEV_CA, dir, a1, a2, a3, (char *)NULL);
		_exit(127);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static int mailtest__start(mailtest_etcd **etcd_r, int tls)
{
	if (access(MAILTEST_ETCD_BIN, X_OK) != 0) {
		fprintf(stderr, "etcd-fixture: %s not found\n", MAILTEST_ETCD_BIN);
		return -1;
	}
	mailtest_etcd *e = calloc(1, sizeof *e);
	if (e == NULL)
		return -1;
	e->tls = tls;
	e->dir = mailtest_tmpdir("mailtest-etcd");
	if (e->dir == NULL) {
		free(e);
		return -1;
	}
	snprintf(e->tls_dir, sizeof e->tls_dir, "%s/tls", e->dir);
	snprintf(e->ca, sizeof e->ca, "%s/ca.pem", e->tls_dir);
	snprintf(e->cert, sizeof e->cert, "%s/client.pem", e->tls_dir);
	snprintf(e->key, sizeof e->key, "%s/client.key", e->tls_dir);
	if (tls && (mailtest__dev_ca(e->tls_dir, "server", "etcd-server",
				     "DNS:localhost,IP:127.0.0.1") < 0 ||
		    mailtest__dev_ca(e->tls_dir, "etcd-client", "client", NULL) < 0)) {
		fprintf(stderr, "etcd-fixture: %s failed\n", MAILTEST_DEV_CA);
		mailtest_rmrf(e->dir);
		free(e->dir);
		free(e);
		return -1;
	}
	for (int i = 0; i < MAILTEST_ETCD_ATTEMPTS; i++) {
		if (mailtest__try_start(e) == 0) {
			e->conf.url = e->url;
			if (tls) {
				e->conf.ca_file = e->ca;
				e->conf.cert_file = e->cert;
				e->conf.key_file = e->key;
			}
			*etcd_r = e;
			return 0;
		}
	}
	mailtest_rmrf(e->dir);
	free(e->dir);
	free(e);
	return -1;
}

int mailtest_etcd_start(mailtest_etcd **etcd_r)
{
	return mailtest__start(etcd_r, 0);
}

int mailtest_etcd_start_tls(mailtest_etcd **etcd_r)
{
	return mailtest__start(etcd_r, 1);
}

int mailtest_etcd_restart(mailtest_etcd *e)
{
	mailtest__kill(e);
	for (int i = 0; i < MAILTEST_ETCD_ATTEMPTS; i++) {
		/* the ports were just released: another try if one is taken */
		if (mailtest__spawn(e) == 0)
			return 0;
	}
	return -1;
}

const etcd_conf *mailtest_etcd_conf(const mailtest_etcd *e)
{
	return &e->conf;
}

const char *mailtest_etcd_file(const mailtest_etcd *e, const char *name, char *buf,
			       size_t size)
{
	snprintf(buf, size, "%s/%s", e->tls_dir, name);
	return buf;
}

int mailtest_etcdctl(const mailtest_etcd *e, const char *user, const char *password, ...)
{
	const char *argv[64];
	int n = 0;
	char endpoints[96], userpw[256];
	snprintf(endpoints, sizeof endpoints, "--endpoints=%s", e->url);
	argv[n++] = "etcdctl";
	argv[n++] = endpoints;
	if (e->tls) {
		argv[n++] = "--cacert";
		argv[n++] = e->ca;
		argv[n++] = "--cert";
		argv[n++] = e->cert;
		argv[n++] = "--key";
		argv[n++] = e->key;
	}
	if (user != NULL) {
		snprintf(userpw, sizeof userpw, "--user=%s:%s", user, password);
		argv[n++] = userpw;
	}
	va_list ap;
	va_start(ap, password);
	const char *a;
	while ((a = va_arg(ap, const char *)) != NULL && n < 63)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDWR);
		if (devnull >= 0)
			dup2(devnull, STDIN_FILENO);
		dup2(STDERR_FILENO, STDOUT_FILENO);
		execv(MAILTEST_ETCDCTL_BIN, (char *const *)argv);
		_exit(127);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

const char *mailtest_etcd_url(const mailtest_etcd *e)
{
	return e->url;
}

int mailtest_etcd_port(const mailtest_etcd *e)
{
	return e->client_port;
}

pid_t mailtest_etcd_pid(const mailtest_etcd *e)
{
	return e->pid;
}

void mailtest_etcd_stop(mailtest_etcd **etcdp)
{
	mailtest_etcd *e = *etcdp;
	if (e == NULL)
		return;
	*etcdp = NULL;
	mailtest__kill(e);
	mailtest_rmrf(e->dir);
	free(e->dir);
	free(e);
}
