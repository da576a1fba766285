/* etcd.c: synchronous etcd v3 client over the JSON gateway (see etcd.h).
 *
 * Gateway quirks handled here (DEPS-FACTS section 2): keys and values are
 * base64; int64 fields arrive as JSON strings; default-valued fields are
 * omitted (no "kvs" when nothing matched, no "succeeded" on a failed txn, no
 * "type" on PUT watch events, no "TTL" when a kept-alive lease has expired);
 * field names are case-sensitive ("TTL", "ID").
 */
#include "etcd-private.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "buf.h"
#include "log.h"
#include "mail-error.h"
#include "util.h"
#include "xalloc.h"

#define ETCD_CONNECT_TIMEOUT_MS 1000L
#define ETCD_REQUEST_TIMEOUT_MS 3000L
/* An authentication makes etcd check a bcrypt hash (cost 10, etcd's
 * default: 50-300 ms of its CPU, more when several daemons start at once on
 * a busy machine): it gets longer than a plain request, still bounded. */
#define ETCD_AUTH_TIMEOUT_MS 10000L
/* The largest response body we accept (etcd's own request limit is 1.5 MiB;
 * a range page of 500 keys stays far below this). */
#define ETCD_RESPONSE_MAX (64u * 1024u * 1024u)
/* The longest single line on a watch stream (one revision's events). */
#define ETCD_WATCH_LINE_MAX (16u * 1024u * 1024u)
#define ETCD_RANGE_PAGE 500
/* The longest password file line we read. */
#define ETCD_PASSWORD_MAX 1024
/* After etcd refused our user or password, calls fail at once for this
 * long before we ask again: each try costs etcd a bcrypt check (~50-300
 * ms of its CPU), and a daemon with a wrong password calls often. */
#define ETCD_AUTH_BACKOFF_MS 5000u

/* gRPC status codes that etcd puts in {"error":..., "code":N}. */
#define GRPC_OUT_OF_RANGE 11
#define GRPC_NOT_FOUND 5
#define GRPC_UNAVAILABLE 14
#define GRPC_DEADLINE 4
#define GRPC_PERMISSION_DENIED 7
#define GRPC_UNAUTHENTICATED 16

#define ETCD_AUTH_PATH "/v3/auth/authenticate"

/* Internal result (never returned by the public calls): etcd did not take
 * our token (unknown, expired, or missing while auth is on). The caller
 * authenticates again and repeats the request once. */
#define ETCD__REAUTH (-2)
/* Internal result: etcd refused the request because its users or roles
 * changed after it checked our token ("revision of auth store is old"):
 * nothing was applied and the token is still good; send it again. */
#define ETCD__RETRY (-3)
#define ETCD_STALE_AUTH_RETRIES 10
#define ETCD_STALE_AUTH_WAIT_NS (20 * 1000 * 1000L)

struct etcd_tokens {
	pthread_mutex_t mu;
	char *token;        /* NULL: none yet; "": etcd's auth is off */
	uint64_t gen;       /* bumped whenever token changes (0: never set) */
	uint64_t authentications; /* atomic */
	uint64_t refused_until;   /* monotonic ms: etcd refused us, wait */
	char refused[512];        /* what it said then (c->error) */
};

struct etcd_client {
	CURL *curl;
	struct curl_slist *headers;
	etcd_conf *conf;          /* our copy */
	etcd_tokens *tokens;      /* conf->tokens, or own_tokens */
	etcd_tokens *own_tokens;
	uint64_t token_gen;       /* tokens->gen of the token in headers; 0: none */
	int auth_was_off;         /* etcd's auth was off when we authenticated:
				   * our requests carry no token */
	char *url;        /* the endpoint in use: one of urls[] */
	char **urls;      /* every endpoint of the cluster, in the given order */
	size_t n_urls;
	size_t current;   /* index of url in urls[] */
	buf resp;
	char errbuf[CURL_ERROR_SIZE];
	char error[512];  /* etcd_client_last_error() */
	char said[256];   /* etcd's message in the last error answer */

	/* watch state, valid during etcd_watch() */
	etcd_watch_cb *watch_cb;
	void *watch_arg;
	const int *watch_stop;
	int watch_result; /* -1 while running, else a mail_error, ETCD__REAUTH or
			   * ETCD__RETRY */
	int watch_created; /* etcd confirmed the watch */
	uint64_t watch_deadline; /* monotonic ms for that; 0: none */
	etcd_stats *stats; /* borrowed; NULL: not counted */
};

uint64_t etcd_stats_writes(const etcd_stats *stats)
{
	return __atomic_load_n(&stats->writes, __ATOMIC_RELAXED);
}

void etcd_client_set_stats(etcd_client *c, etcd_stats *stats)
{
	c->stats = stats;
}

/* One more revision made by c (a pool thread and the loop may count at
 * once: atomic). */
static void etcd__count_write(etcd_client *c)
{
	if (c->stats != NULL)
		__atomic_fetch_add(&c->stats->writes, 1, __ATOMIC_RELAXED);
}

/* ---- base64 ------------------------------------------------------------ */

static char *etcd__b64_encode(const void *data, size_t len)
{
	char *out = xmalloc(4 * ((len + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}

/* Returns a NUL-terminated heap copy of the decoded bytes, or NULL. */
static char *etcd__b64_decode(const char *s, size_t *len_r)
{
	size_t n = strlen(s);
	if (n % 4 != 0)
		return NULL;
	char *out = xmalloc(n / 4 * 3 + 1);
	int got = n == 0 ? 0 : EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)s,
					      (int)n);
	if (got < 0) {
		free(out);
		return NULL;
	}
	/* EVP_DecodeBlock counts the padding as zero bytes: take them off. */
	size_t len = (size_t)got;
	for (size_t i = n; i > 0 && s[i - 1] == '=' && len > 0; i--)
		len--;
	out[len] = '\0';
	*len_r = len;
	return out;
}

static json_t *etcd__b64_json(const void *data, size_t len)
{
	char *s = etcd__b64_encode(data, len);
	json_t *j = json_string(s);
	free(s);
	return j;
}

/* "prefix" -> the smallest key greater than every key starting with it. */
static char *etcd__prefix_end(const char *prefix, size_t *len_r)
{
	size_t len = strlen(prefix);
	char *end = xstrndup(prefix, len);
	while (len > 0) {
		unsigned char c = (unsigned char)end[len - 1];
		if (c < 0xff) {
			end[len - 1] = (char)(c + 1);
			break;
		}
		len--;
	}
	if (len == 0) {
		/* every key: etcd's convention is range_end = "\0" */
		end[0] = '\0';
		len = 1;
	}
	*len_r = len;
	return end;
}

/* ---- JSON helpers ------------------------------------------------------ */

/* An int64 field that may be a string (the gateway's way), a number, or
 * absent (= 0). */
static int64_t etcd__i64(const json_t *obj, const char *name)
{
	json_t *v = json_object_get(obj, name);
	if (json_is_string(v))
		return strtoll(json_string_value(v), NULL, 10);
	if (json_is_integer(v))
		return json_integer_value(v);
	return 0;
}

static json_t *etcd__i64_json(int64_t v)
{
	char tmp[32];
	snprintf(tmp, sizeof tmp, "%lld", (long long)v);
	return json_string(tmp);
}

/* Decode a {"key":..,"value":..,...} object into kv. Returns 0 or -1. */
static int etcd__kv_parse(const json_t *j, etcd_kv *kv)
{
	const char *k = json_string_value(json_object_get(j, "key"));
	const char *v = json_string_value(json_object_get(j, "value"));
	size_t klen;
	memset(kv, 0, sizeof *kv);
	if (k == NULL || (kv->key = etcd__b64_decode(k, &klen)) == NULL)
		return -1;
	kv->value = etcd__b64_decode(v != NULL ? v : "", &kv->value_len);
	if (kv->value == NULL) {
		free(kv->key);
		kv->key = NULL;
		return -1;
	}
	kv->create_revision = etcd__i64(j, "create_revision");
	kv->mod_revision = etcd__i64(j, "mod_revision");
	kv->lease = etcd__i64(j, "lease");
	return 0;
}

void etcd_kvs_free(etcd_kv *kvs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(kvs[i].key);
		free(kvs[i].value);
	}
	free(kvs);
}

/* ---- tokens and the conf ----------------------------------------------- */

etcd_tokens *etcd_tokens_create(void)
{
	etcd_tokens *t = xcalloc(1, sizeof *t);
	pthread_mutex_init(&t->mu, NULL);
	return t;
}

void etcd_tokens_destroy(etcd_tokens **tp)
{
	etcd_tokens *t = *tp;
	if (t == NULL)
		return;
	*tp = NULL;
	if (t->token != NULL)
		xfree_secret(t->token, strlen(t->token));
	pthread_mutex_destroy(&t->mu);
	free(t);
}

uint64_t etcd_tokens_authentications(const etcd_tokens *t)
{
	return __atomic_load_n(&t->authentications, __ATOMIC_RELAXED);
}

etcd_conf *etcd_conf_dup(const etcd_conf *conf)
{
	if (conf == NULL)
		return NULL;
	const char *const in[] = { conf->url, conf->ca_file, conf->cert_file, conf->key_file,
				   conf->user, conf->password };
	size_t n = sizeof in / sizeof in[0], len = sizeof(etcd_conf);
	for (size_t k = 0; k < n; k++)
		len += in[k] != NULL ? strlen(in[k]) + 1 : 0;
	/* the struct, then its strings */
	etcd_conf *out = xcalloc(1, len);
	char *w = (char *)(out + 1);
	const char **fields[] = { &out->url, &out->ca_file, &out->cert_file, &out->key_file,
				  &out->user, &out->password };
	for (size_t k = 0; k < n; k++) {
		if (in[k] == NULL)
			continue;
		size_t l = strlen(in[k]) + 1;
		memcpy(w, in[k], l);
		*fields[k] = w;
		w += l;
	}
	out->tokens = conf->tokens;
	return out;
}

void etcd_conf_free(etcd_conf **confp)
{
	etcd_conf *conf = *confp;
	if (conf == NULL)
		return;
	*confp = NULL;
	size_t len = sizeof *conf;
	const char *const in[] = { conf->url, conf->ca_file, conf->cert_file, conf->key_file,
				   conf->user, conf->password };
	for (size_t k = 0; k < sizeof in / sizeof in[0]; k++)
		len += in[k] != NULL ? strlen(in[k]) + 1 : 0;
	xfree_secret(conf, len);
}

int etcd_conf_read_password(const char *path, char **password_r, const char **error_r)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		if (fd >= 0)
			close(fd);
		*error_r = "cannot open the etcd password file";
		return -1;
	}
	if ((st.st_mode & S_IROTH) != 0) {
		close(fd);
		*error_r = "the etcd password file is readable by others (chmod 600 it)";
		return -1;
	}
	char *pw = xmalloc(ETCD_PASSWORD_MAX + 1);
	size_t len = 0;
	ssize_t n;
	while (len < ETCD_PASSWORD_MAX &&
	       (n = read(fd, pw + len, ETCD_PASSWORD_MAX - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	size_t line = 0;
	while (line < len && pw[line] != '\n' && pw[line] != '\r')
		line++;
	if (line == 0 || line == ETCD_PASSWORD_MAX) {
		xfree_secret(pw, ETCD_PASSWORD_MAX + 1);
		*error_r = line == 0 ? "the etcd password file is empty"
				     : "the etcd password is too long";
		return -1;
	}
	char *out = xstrndup(pw, line);
	xfree_secret(pw, ETCD_PASSWORD_MAX + 1);
	*password_r = out;
	return 0;
}

/* ---- the client and one request --------------------------------------- */

static size_t etcd__write_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
	etcd_client *c = arg;
	size_t n = size * nmemb;
	if (c->resp.len + n > ETCD_RESPONSE_MAX)
		return 0; /* curl fails the transfer with CURLE_WRITE_ERROR */
	buf_append(&c->resp, ptr, n);
	return n;
}

/* The request headers: JSON, and our token when we have one. */
static void etcd__set_headers(etcd_client *c, const char *token)
{
	curl_slist_free_all(c->headers);
	c->headers = curl_slist_append(NULL, "Content-Type: application/json");
	if (token != NULL && token[0] != '\0') {
		/* etcd's gateway wants the bare token: "Bearer ..." is a 401 */
		char *h = xasprintf("Authorization: %s", token);
		c->headers = curl_slist_append(c->headers, h);
		xfree_secret(h, strlen(h));
	}
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, c->headers);
}

etcd_client *etcd_client_create(const etcd_conf *conf)
{
	etcd_client *c = xcalloc(1, sizeof *c);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	c->curl = curl_easy_init();
	if (c->curl == NULL)
		abort();
	c->conf = etcd_conf_dup(conf);
	c->tokens = conf->tokens;
	if (c->tokens == NULL)
		c->tokens = c->own_tokens = etcd_tokens_create();
	/* "https://a:1,https://b:2": every member of the etcd cluster, so the
	 * client moves to another member when the one in use is down */
	const char *p = conf->url != NULL ? conf->url : "";
	do {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		while (len > 0 && p[len - 1] == '/')
			len--;
		if (len > 0) {
			c->urls = xrealloc(c->urls, (c->n_urls + 1) * sizeof *c->urls);
			c->urls[c->n_urls++] = xstrndup(p, len);
		}
		p = comma ? comma + 1 : NULL;
	} while (p != NULL);
	if (c->n_urls == 0) {
		c->urls = xmalloc(sizeof *c->urls);
		c->urls[c->n_urls++] = xstrdup("http://127.0.0.1:2379");
	}
	c->url = c->urls[0];
	buf_init(&c->resp);
	etcd__set_headers(c, NULL);
	curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, ETCD_CONNECT_TIMEOUT_MS);
	curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, ETCD_REQUEST_TIMEOUT_MS);
	curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->curl, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, c->errbuf);
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, etcd__write_cb);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, c);
	/* TLS: verify etcd's certificate (peer and name: on by default) with
	 * our CA; present our client certificate */
	if (c->conf->ca_file != NULL)
		curl_easy_setopt(c->curl, CURLOPT_CAINFO, c->conf->ca_file);
	if (c->conf->cert_file != NULL) {
		curl_easy_setopt(c->curl, CURLOPT_SSLCERT, c->conf->cert_file);
		curl_easy_setopt(c->curl, CURLOPT_SSLCERTTYPE, "PEM");
		curl_easy_setopt(c->curl, CURLOPT_SSLKEY, c->conf->key_file != NULL
							  ? c->conf->key_file
							  : c->conf->cert_file);
		curl_easy_setopt(c->curl, CURLOPT_SSLKEYTYPE, "PEM");
	}
	return c;
}

void etcd_client_destroy(etcd_client **client)
{
	etcd_client *c = *client;
	if (c == NULL)
		return;
	*client = NULL;
	curl_easy_cleanup(c->curl);
	curl_slist_free_all(c->headers);
	buf_deinit(&c->resp);
	for (size_t i = 0; i < c->n_urls; i++)
		free(c->urls[i]);
	free(c->urls);
	etcd_conf_free(&c->conf);
	etcd_tokens_destroy(&c->own_tokens);
	free(c);
	curl_global_cleanup();
}

const char *etcd_client_last_error(const etcd_client *c)
{
	return c->error;
}

/* Log a failure of path and keep it as the client's last error line. */
static void etcd__fail(etcd_client *c, const char *path, const char *what, const char *detail)
{
	char q[256];
	log_quote(q, sizeof q, detail, strlen(detail));
	log_event(LOG_WARN, "etcd", "event=etcd_error op=%s what=%s detail=%s", path, what, q);
	if (c != NULL)
		snprintf(c->error, sizeof c->error, "%s%s: %s", c->url, path, detail);
}

/* The text of an {"error":..., "code":N} body, or "(no message)". */
static const char *etcd__error_text(const json_t *body)
{
	const char *msg = json_string_value(json_object_get(body, "error"));
	if (msg == NULL)
		msg = json_string_value(json_object_get(body, "message"));
	return msg != NULL ? msg : "(no message)";
}

/* 1 when etcd's message or watch cancel reason says it did not take our
 * token: unknown or expired (etcd restarted), or none while auth is on. */
static int etcd__token_refused(const char *msg)
{
	return strstr(msg, "invalid auth token") != NULL ||
	       strstr(msg, "user name is empty") != NULL;
}

/* 1 when etcd refused a request because its users or roles changed while
 * it was in flight (cluster/local adding the users of nodes that start
 * after us, an operator granting a role): the token is good. */
static int etcd__auth_changed(const char *msg)
{
	return strstr(msg, "revision of auth store is old") != NULL;
}

static void etcd__log_refused(const char *path, const char *msg)
{
	char q[256];
	log_quote(q, sizeof q, msg, strlen(msg));
	log_event(LOG_INFO, "etcd", "event=etcd_token_refused op=%s detail=%s", path, q);
}

/* Map an {"error":..., "code":N} body (HTTP status status) to mail_error,
 * or ETCD__REAUTH / ETCD__RETRY. */
static int etcd__error_of(etcd_client *c, const char *path, long status, const json_t *body)
{
	const char *msg = etcd__error_text(body);
	int64_t code = etcd__i64(body, "code");
	if (c != NULL)
		snprintf(c->said, sizeof c->said, "%s", msg);
	if (etcd__auth_changed(msg))
		return ETCD__RETRY;
	if (code == GRPC_UNAUTHENTICATED || etcd__token_refused(msg)) {
		if (c != NULL && c->conf->user != NULL) {
			etcd__log_refused(path, msg);
			return ETCD__REAUTH;
		}
		etcd__fail(c, path, "auth", "etcd wants a user and password (--etcd-user)");
		return MAIL_ERR_PERM;
	}
	if (code == GRPC_PERMISSION_DENIED && c != NULL && c->auth_was_off) {
		/* auth went on since (etcd answers some calls without a token
		 * "permission denied" rather than "user name is empty") */
		etcd__log_refused(path, msg);
		return ETCD__REAUTH;
	}
	if (code == GRPC_PERMISSION_DENIED) {
		char detail[160];
		if (c != NULL && c->conf->user != NULL)
			snprintf(detail, sizeof detail, "permission denied to etcd user \"%s\"",
				 c->conf->user);
		else
			snprintf(detail, sizeof detail, "permission denied: etcd wants a user and "
							"password (--etcd-user)");
		etcd__fail(c, path, "perm", detail);
		return MAIL_ERR_PERM;
	}
	if (strcmp(path, ETCD_AUTH_PATH) != 0) /* etcd__authenticate says it better */
		etcd__fail(c, path, "status", msg);
	if (code == GRPC_NOT_FOUND || code == GRPC_OUT_OF_RANGE)
		return MAIL_ERR_NOT_FOUND;
	if (code == GRPC_UNAVAILABLE || code == GRPC_DEADLINE || status >= 500)
		return MAIL_ERR_UNAVAILABLE;
	return MAIL_ERR_PARAMS;
}

/* Log a transport failure, with a hint at the usual TLS mismatches: plain
 * http to an https-only etcd, or no client certificate where etcd asks
 * for one (it fails the handshake, or resets the connection). */
static void etcd__transport_failed(etcd_client *c, const char *path, CURLcode rc)
{
	const char *why = c->errbuf[0] != '\0' ? c->errbuf : curl_easy_strerror(rc);
	const char *hint = "";
	int https = strncmp(c->url, "https:", 6) == 0;
	if (!https && rc == CURLE_GOT_NOTHING)
		hint = " (is etcd serving https only? use an https:// URL)";
	else if (https && c->conf->cert_file == NULL && rc != CURLE_COULDNT_CONNECT &&
		 rc != CURLE_OPERATION_TIMEDOUT)
		hint = " (etcd may want a client certificate: --etcd-cert, --etcd-key)";
	char detail[CURL_ERROR_SIZE + 96];
	snprintf(detail, sizeof detail, "%s%s", why, hint);
	etcd__fail(c, path, "transport", detail);
}

static void etcd__prepare(etcd_client *c, const char *path, const char *body, size_t len)
{
	char *url = xasprintf("%s%s", c->url, path);
	curl_easy_setopt(c->curl, CURLOPT_URL, url);
	free(url);
	curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE, (long)len);
	curl_easy_setopt(c->curl, CURLOPT_COPYPOSTFIELDS, body);
	buf_reset(&c->resp);
	c->errbuf[0] = '\0';
}

/* Use the next endpoint from now on (after a transport failure). */
static void etcd__rotate(etcd_client *c)
{
	c->current = (c->current + 1) % c->n_urls;
	c->url = c->urls[c->current];
}

/* POST body to path; on MAIL_OK *resp_r is the parsed response body
 * (caller decrefs). A transport failure moves on to the next endpoint and
 * retries there, once per endpoint: requests are retried only when they
 * never reached a server or got no answer, and every write we make is
 * either idempotent (put) or a compare-and-swap that a repeat reports as a
 * conflict. ETCD__REAUTH when etcd did not take our token. */
static int etcd__call_once(etcd_client *c, const char *path, const char *body,
			   json_t **resp_r)
{
	CURLcode rc = CURLE_OK;
	for (size_t attempt = 0; attempt < c->n_urls; attempt++) {
		etcd__prepare(c, path, body, strlen(body));
		rc = curl_easy_perform(c->curl);
		if (rc == CURLE_OK)
			break;
		etcd__transport_failed(c, path, rc);
		etcd__rotate(c);
	}
	if (rc != CURLE_OK)
		return MAIL_ERR_UNAVAILABLE;
	long status = 0;
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
	json_error_t jerr;
	json_t *resp = json_loadb((const char *)c->resp.data, c->resp.len,
				 JSON_DISABLE_EOF_CHECK, &jerr);
	if (status != 200) {
		/* a non-JSON answer is not etcd's (a proxy, another server):
		 * for us etcd is unreachable */
		int err = resp != NULL ? etcd__error_of(c, path, status, resp)
				       : MAIL_ERR_UNAVAILABLE;
		if (resp == NULL)
			etcd__fail(c, path, "status", "non-JSON error body");
		json_decref(resp);
		return err;
	}
	if (!json_is_object(resp)) {
		etcd__fail(c, path, "parse", resp == NULL ? jerr.text : "not an object");
		json_decref(resp);
		return MAIL_ERR_INTERNAL;
	}
	if (json_object_get(resp, "error") != NULL) {
		/* streaming endpoints (keepalive) report errors with status 200 */
		json_t *e = json_object_get(resp, "error");
		int err = etcd__error_of(c, path, status, json_is_object(e) ? e : resp);
		json_decref(resp);
		return err;
	}
	*resp_r = resp;
	return MAIL_OK;
}

/* POST /v3/auth/authenticate as the conf's user. MAIL_OK with *token_r
 * (heap; "" when etcd's auth is off: no header then), or an error. */
static int etcd__authenticate(etcd_client *c, char **token_r)
{
	static const char path[] = ETCD_AUTH_PATH;
	json_t *req = json_pack("{s:s,s:s}", "name", c->conf->user, "password",
				c->conf->password != NULL ? c->conf->password : "");
	char *body = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	json_t *resp = NULL;
	etcd__set_headers(c, NULL); /* an old token has no business here */
	c->token_gen = 0;
	curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, ETCD_AUTH_TIMEOUT_MS);
	int err = etcd__call_once(c, path, body, &resp);
	curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, ETCD_REQUEST_TIMEOUT_MS);
	xfree_secret(body, strlen(body));
	if (err == MAIL_OK) {
		const char *token = json_string_value(json_object_get(resp, "token"));
		if (token == NULL || token[0] == '\0') {
			etcd__fail(c, path, "parse", "no token in etcd's answer");
			err = MAIL_ERR_INTERNAL;
		} else {
			*token_r = xstrdup(token);
		}
		json_decref(resp);
		return err;
	}
	if (err == ETCD__RETRY)
		err = MAIL_ERR_UNAVAILABLE; /* users changed meanwhile: next call */
	if (err == MAIL_ERR_UNAVAILABLE || err == MAIL_ERR_INTERNAL)
		return err;
	/* the answer was an error, logged as such; say what it means */
	const char *said = c->said;
	if (strstr(said, "authentication is not enabled") != NULL) {
		*token_r = xstrdup("");
		return MAIL_OK;
	}
	char detail[384];
	if (strstr(said, "authentication failed") != NULL)
		snprintf(detail, sizeof detail,
			 "etcd refused user \"%s\" (wrong user name or password)", c->conf->user);
	else
		snprintf(detail, sizeof detail, "etcd refused to authenticate user \"%s\": %s",
			 c->conf->user, said);
	etcd__fail(c, path, "auth", detail);
	return MAIL_ERR_PERM;
}

/* Make c's headers carry the shared token, authenticating first when there
 * is none yet, when force is set, or when refused_gen (0: none) is the
 * generation of the token etcd just refused and no other client has
 * replaced it meanwhile. One authentication at a time per etcd_tokens: the
 * others wait for it and take its token. Returns MAIL_OK or the
 * authentication's error. */
static int etcd__auth(etcd_client *c, uint64_t refused_gen, int force)
{
	if (c->conf->user == NULL)
		return MAIL_OK;
	etcd_tokens *t = c->tokens;
	int err = MAIL_OK;
	pthread_mutex_lock(&t->mu);
	int need = force || t->token == NULL || (refused_gen != 0 && t->gen == refused_gen);
	if (need && util_now_mono_ms() < t->refused_until) {
		/* refused a moment ago: say so again without asking etcd */
		snprintf(c->error, sizeof c->error, "%s", t->refused);
		err = MAIL_ERR_PERM;
	} else if (need) {
		char *token = NULL;
		err = etcd__authenticate(c, &token);
		__atomic_fetch_add(&t->authentications, 1, __ATOMIC_RELAXED);
		if (err == MAIL_ERR_PERM) {
			t->refused_until = util_now_mono_ms() + ETCD_AUTH_BACKOFF_MS;
			snprintf(t->refused, sizeof t->refused, "%s", c->error);
		}
		if (err == MAIL_OK) {
			t->refused_until = 0;
			if (t->token != NULL)
				xfree_secret(t->token, strlen(t->token));
			t->token = token;
			t->gen++;
			log_event(LOG_INFO, "etcd", "event=etcd_authenticated user=%s auth=%s",
				  c->conf->user, token[0] != '\0' ? "on" : "off");
		}
	}
	if (err == MAIL_OK && c->token_gen != t->gen) {
		etcd__set_headers(c, t->token);
		c->token_gen = t->gen;
		c->auth_was_off = t->token[0] == '\0';
	}
	pthread_mutex_unlock(&t->mu);
	return err;
}

/* With several members, a member that answers "unavailable" (no leader
 * during an election, a member cut off from the others) or cannot be
 * reached is not the cluster's last word: try the others, for up to
 * ETCD_FAILOVER_MS (a few election timeouts), before reporting
 * MAIL_ERR_UNAVAILABLE. A single endpoint fails at once. A refused token
 * (etcd restarted, or it expired) is replaced once per call; a request
 * refused because etcd's users or roles changed meanwhile is sent again
 * (up to ETCD_STALE_AUTH_RETRIES times: etcd applied nothing of it). */
#define ETCD_FAILOVER_MS 4000u

static int etcd__call(etcd_client *c, const char *path, json_t *req, json_t **resp_r)
{
	char *body = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	uint64_t deadline = util_now_mono_ms() + ETCD_FAILOVER_MS;
	int reauthed = 0, stale = 0;
	int r;
	for (;;) {
		r = etcd__auth(c, 0, 0);
		if (r == MAIL_OK)
			r = etcd__call_once(c, path, body, resp_r);
		if (r == ETCD__RETRY && stale++ < ETCD_STALE_AUTH_RETRIES) {
			struct timespec ts = { 0, ETCD_STALE_AUTH_WAIT_NS };
			nanosleep(&ts, NULL);
			continue;
		}
		if (r == ETCD__RETRY) {
			etcd__fail(c, path, "auth", "etcd's users and roles keep changing");
			r = MAIL_ERR_UNAVAILABLE;
		}
		if (r == ETCD__REAUTH && !reauthed) {
			reauthed = 1;
			r = etcd__auth(c, c->token_gen, 0);
			if (r == MAIL_OK)
				continue;
		}
		if (r == ETCD__REAUTH) {
			etcd__fail(c, path, "auth", "etcd refused a fresh token");
			r = MAIL_ERR_PERM;
		}
		if (r != MAIL_ERR_UNAVAILABLE || c->n_urls < 2 || util_now_mono_ms() >= deadline)
			break;
		etcd__rotate(c);
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	free(body);
	if (r == MAIL_OK)
		c->error[0] = '\0';
	return r;
}

int etcd_client_check(etcd_client *c, const char **error_r)
{
	int err;
	if (c->conf->user != NULL) {
		/* a fresh authentication proves the password, whatever the
		 * shared token says */
		err = etcd__auth(c, 0, 1);
		for (size_t k = 1; err == MAIL_ERR_UNAVAILABLE && k < c->n_urls; k++) {
			etcd__rotate(c);
			err = etcd__auth(c, 0, 1);
		}
	} else {
		etcd_member_status st;
		err = etcd_maintenance_status(c, &st);
	}
	*error_r = c->error;
	return err;
}

/* ---- KV ------------------------------------------------------------------ */

int etcd_kv_put(etcd_client *c, const char *key, const void *value, size_t len, int64_t lease)
{
	json_t *req = json_object();
	json_object_set_new(req, "key", etcd__b64_json(key, strlen(key)));
	json_object_set_new(req, "value", etcd__b64_json(value, len));
	if (lease != 0)
		json_object_set_new(req, "lease", etcd__i64_json(lease));
	json_t *resp;
	int err = etcd__call(c, "/v3/kv/put", req, &resp);
	if (err == MAIL_OK) {
		json_decref(resp);
		etcd__count_write(c);
	}
	return err;
}

int etcd_kv_get(etcd_client *c, const char *key, char **value_r, size_t *len_r,
		int64_t *mod_revision_r, int64_t *create_revision_r)
{
	json_t *req = json_object();
	json_object_set_new(req, "key", etcd__b64_json(key, strlen(key)));
	json_t *resp;
	int err = etcd__call(c, "/v3/kv/range", req, &resp);
	if (err != MAIL_OK)
		return err;
	json_t *kvs = json_object_get(resp, "kvs");
	if (json_array_size(kvs) == 0) {
		json_decref(resp);
		return MAIL_ERR_NOT_FOUND;
	}
	etcd_kv kv;
	if (etcd__kv_parse(json_array_get(kvs, 0), &kv) < 0) {
		json_decref(resp);
		etcd__fail(c, "/v3/kv/range", "parse", "bad kv");
		return MAIL_ERR_INTERNAL;
	}
	json_decref(resp);
	free(kv.key);
	*value_r = kv.value;
	if (len_r != NULL)
		*len_r = kv.value_len;
	if (mod_revision_r != NULL)
		*mod_revision_r = kv.mod_revision;
	if (create_revision_r != NULL)
		*create_revision_r = kv.create_revision;
	return MAIL_OK;
}

int etcd_kv_range_prefix(etcd_client *c, const char *prefix, int64_t at_revision,
			 etcd_kv **kvs_r, size_t *n_r, int64_t *revision_r)
{
	size_t end_len;
	char *end = etcd__prefix_end(prefix, &end_len);
	/* the next page starts just after the last key seen: key + "\0" */
	char *start = xstrdup(prefix);
	size_t start_len = strlen(prefix);
	etcd_kv *kvs = NULL;
	size_t n = 0, cap = 0;
	int64_t revision = at_revision;
	int err = MAIL_OK;

	for (;;) {
		json_t *req = json_object();
		json_object_set_new(req, "key", etcd__b64_json(start, start_len));
		json_object_set_new(req, "range_end", etcd__b64_json(end, end_len));
		json_object_set_new(req, "limit", etcd__i64_json(ETCD_RANGE_PAGE));
		if (revision != 0)
			json_object_set_new(req, "revision", etcd__i64_json(revision));
		json_t *resp;
		err = etcd__call(c, "/v3/kv/range", req, &resp);
		if (err != MAIL_OK)
			break;
		if (revision == 0)
			revision = etcd__i64(json_object_get(resp, "header"), "revision");
		json_t *page = json_object_get(resp, "kvs");
		size_t i;
		json_t *item;
		json_array_foreach(page, i, item) {
			if (n == cap) {
				cap = cap == 0 ? 16 : cap * 2;
				kvs = xrealloc(kvs, cap * sizeof *kvs);
			}
			if (etcd__kv_parse(item, &kvs[n]) < 0) {
				err = MAIL_ERR_INTERNAL;
				break;
			}
			n++;
		}
		int more = json_is_true(json_object_get(resp, "more")) &&
			   json_array_size(page) > 0;
		json_decref(resp);
		if (err != MAIL_OK || !more)
			break;
		free(start);
		start_len = strlen(kvs[n - 1].key) + 1;
		start = xmalloc(start_len + 1);
		memcpy(start, kvs[n - 1].key, start_len); /* includes the NUL */
	}
	free(start);
	free(end);
	if (err != MAIL_OK) {
		if (err == MAIL_ERR_INTERNAL)
			etcd__fail(c, "/v3/kv/range", "parse", "bad kv");
		etcd_kvs_free(kvs, n);
		return err;
	}
	*kvs_r = kvs;
	*n_r = n;
	if (revision_r != NULL)
		*revision_r = revision;
	return MAIL_OK;
}

int etcd_kv_prefix_counts(etcd_client *c, const char *const *prefixes, size_t n,
			  int64_t *count_r, int64_t *revision_r)
{
	json_t *ops = json_array();
	for (size_t i = 0; i < n; i++) {
		size_t end_len;
		char *end = etcd__prefix_end(prefixes[i], &end_len);
		json_t *r = json_object();
		json_object_set_new(r, "key", etcd__b64_json(prefixes[i], strlen(prefixes[i])));
		json_object_set_new(r, "range_end", etcd__b64_json(end, end_len));
		json_object_set_new(r, "count_only", json_true());
		json_t *op = json_object();
		json_object_set_new(op, "request_range", r);
		json_array_append_new(ops, op);
		free(end);
	}
	json_t *req = json_object();
	json_object_set_new(req, "success", ops);
	json_t *resp;
	int err = etcd__call(c, "/v3/kv/txn", req, &resp);
	if (err != MAIL_OK)
		return err;
	json_t *rs = json_object_get(resp, "responses");
	if (!json_is_true(json_object_get(resp, "succeeded")) || json_array_size(rs) != n) {
		json_decref(resp);
		etcd__fail(c, "/v3/kv/txn", "parse", "bad counts");
		return MAIL_ERR_INTERNAL;
	}
	/* a zero count is absent from the gateway's JSON: etcd__i64 says 0 */
	for (size_t i = 0; i < n; i++)
		count_r[i] = etcd__i64(json_object_get(json_array_get(rs, i), "response_range"),
				       "count");
	if (revision_r != NULL)
		*revision_r = etcd__i64(json_object_get(resp, "header"), "revision");
	json_decref(resp);
	return MAIL_OK;
}

static int etcd__delete(etcd_client *c, const char *key, int prefix, int64_t *deleted_r)
{
	json_t *req = json_object();
	json_object_set_new(req, "key", etcd__b64_json(key, strlen(key)));
	if (prefix) {
		size_t end_len;
		char *end = etcd__prefix_end(key, &end_len);
		json_object_set_new(req, "range_end", etcd__b64_json(end, end_len));
		free(end);
	}
	json_t *resp;
	int err = etcd__call(c, "/v3/kv/deleterange", req, &resp);
	if (err != MAIL_OK)
		return err;
	int64_t deleted = etcd__i64(resp, "deleted");
	json_decref(resp);
	if (deleted > 0)
		etcd__count_write(c);
	if (deleted_r != NULL)
		*deleted_r = deleted;
	return MAIL_OK;
}

int etcd_kv_delete(etcd_client *c, const char *key)
{
	int64_t deleted = 0;
	int err = etcd__delete(c, key, 0, &deleted);
	if (err == MAIL_OK && deleted == 0)
		return MAIL_ERR_NOT_FOUND;
	return err;
}

int etcd_kv_delete_prefix(etcd_client *c, const char *prefix, int64_t *deleted_r)
{
	return etcd__delete(c, prefix, 1, deleted_r);
}

/* One txn: if key's mod_revision == mod_revision then put key = value. A
 * key that does not exist has mod_revision 0, so 0 means "create". */
static int etcd__txn_put(etcd_client *c, const char *key, const void *value, size_t len,
			 int64_t mod_revision, int64_t lease, int64_t *new_revision_r)
{
	json_t *cmp = json_object();
	json_object_set_new(cmp, "target", json_string("MOD"));
	json_object_set_new(cmp, "result", json_string("EQUAL"));
	json_object_set_new(cmp, "key", etcd__b64_json(key, strlen(key)));
	json_object_set_new(cmp, "mod_revision", etcd__i64_json(mod_revision));

	json_t *put = json_object();
	json_object_set_new(put, "key", etcd__b64_json(key, strlen(key)));
	json_object_set_new(put, "value", etcd__b64_json(value, len));
	if (lease != 0)
		json_object_set_new(put, "lease", etcd__i64_json(lease));
	json_t *op = json_object();
	json_object_set_new(op, "request_put", put);

	json_t *req = json_object();
	json_object_set_new(req, "compare", json_pack("[o]", cmp));
	json_object_set_new(req, "success", json_pack("[o]", op));
	json_t *resp;
	int err = etcd__call(c, "/v3/kv/txn", req, &resp);
	if (err != MAIL_OK)
		return err;
	/* a failed txn has no "succeeded" field at all */
	int ok = json_is_true(json_object_get(resp, "succeeded"));
	if (ok)
		etcd__count_write(c);
	if (ok && new_revision_r != NULL)
		*new_revision_r = etcd__i64(json_object_get(resp, "header"), "revision");
	json_decref(resp);
	return ok ? MAIL_OK : MAIL_ERR_EXISTS;
}

int etcd_kv_create(etcd_client *c, const char *key, const void *value, size_t len, int64_t lease)
{
	return etcd__txn_put(c, key, value, len, 0, lease, NULL);
}

int etcd_kv_put_if_mod(etcd_client *c, const char *key, const void *value, size_t len,
		       int64_t mod_revision, int64_t *new_revision_r)
{
	return etcd__txn_put(c, key, value, len, mod_revision, 0, new_revision_r);
}

/* ---- leases ------------------------------------------------------------- */

int etcd_lease_grant(etcd_client *c, int ttl_s, int64_t *id_r)
{
	json_t *req = json_object();
	json_object_set_new(req, "TTL", etcd__i64_json(ttl_s));
	json_t *resp;
	int err = etcd__call(c, "/v3/lease/grant", req, &resp);
	if (err != MAIL_OK)
		return err;
	int64_t id = etcd__i64(resp, "ID");
	json_decref(resp);
	if (id == 0) {
		etcd__fail(c, "/v3/lease/grant", "parse", "no lease ID");
		return MAIL_ERR_INTERNAL;
	}
	*id_r = id;
	return MAIL_OK;
}

int etcd_lease_keepalive(etcd_client *c, int64_t id, int64_t *ttl_r)
{
	json_t *req = json_object();
	json_object_set_new(req, "ID", etcd__i64_json(id));
	json_t *resp;
	int err = etcd__call(c, "/v3/lease/keepalive", req, &resp);
	if (err != MAIL_OK)
		return err;
	/* one {"result":{...}} line; an expired lease has no TTL (= 0) */
	int64_t ttl = etcd__i64(json_object_get(resp, "result"), "TTL");
	json_decref(resp);
	*ttl_r = ttl > 0 ? ttl : 0;
	return MAIL_OK;
}

int etcd_lease_revoke(etcd_client *c, int64_t id)
{
	json_t *req = json_object();
	json_object_set_new(req, "ID", etcd__i64_json(id));
	json_t *resp;
	int err = etcd__call(c, "/v3/lease/revoke", req, &resp);
	if (err == MAIL_OK)
		json_decref(resp);
	return err;
}

/* ---- maintenance ---------------------------------------------------------- */

int etcd_maintenance_status(etcd_client *c, etcd_member_status *status_r)
{
	json_t *resp;
	int err = etcd__call(c, "/v3/maintenance/status", json_object(), &resp);
	if (err != MAIL_OK)
		return err;
	/* int64 fields as strings; a field at its default (0) is omitted */
	*status_r = (etcd_member_status){
		.revision = etcd__i64(json_object_get(resp, "header"), "revision"),
		.db_size = etcd__i64(resp, "dbSize"),
		.db_size_in_use = etcd__i64(resp, "dbSizeInUse"),
		.raft_index = etcd__i64(resp, "raftIndex"),
	};
	json_decref(resp);
	return MAIL_OK;
}

/* ---- watch ---------------------------------------------------------------- */

/* What a watch canceled for reason why means: ETCD__REAUTH (our token was
 * refused), MAIL_ERR_PERM (our user may not read the range, or we have no
 * user and etcd wants one) or MAIL_ERR_NOT_FOUND (compacted, or another
 * reason). */
static int etcd__watch_canceled(etcd_client *c, const char *why)
{
	if (etcd__auth_changed(why))
		return ETCD__RETRY;
	if (etcd__token_refused(why) || strstr(why, "Unauthenticated") != NULL) {
		if (c->conf->user != NULL) {
			etcd__log_refused("/v3/watch", why);
			return ETCD__REAUTH;
		}
		etcd__fail(c, "/v3/watch", "auth", "etcd wants a user and password (--etcd-user)");
		return MAIL_ERR_PERM;
	}
	int denied = strstr(why, "PermissionDenied") != NULL ||
		     strstr(why, "permission denied") != NULL;
	if (denied && c->auth_was_off) {
		etcd__log_refused("/v3/watch", why); /* auth went on since */
		return ETCD__REAUTH;
	}
	if (denied) {
		char detail[160];
		snprintf(detail, sizeof detail, "permission denied to etcd user \"%s\"",
			 c->conf->user != NULL ? c->conf->user : "");
		etcd__fail(c, "/v3/watch", "perm", detail);
		return MAIL_ERR_PERM;
	}
	etcd__fail(c, "/v3/watch", "canceled", why);
	return MAIL_ERR_NOT_FOUND;
}

/* Handle one line of the watch stream. Returns 0 to go on, or sets
 * c->watch_result and returns -1 to end the stream. */
static int etcd__watch_line(etcd_client *c, const char *line, size_t len)
{
	json_error_t jerr;
	json_t *msg = json_loadb(line, len, JSON_DISABLE_EOF_CHECK, &jerr);
	if (!json_is_object(msg)) {
		etcd__fail(c, "/v3/watch", "parse", msg == NULL ? jerr.text : "not an object");
		json_decref(msg);
		c->watch_result = MAIL_ERR_UNAVAILABLE;
		return -1;
	}
	json_t *result = json_object_get(msg, "result");
	if (result == NULL) {
		json_t *e = json_object_get(msg, "error");
		c->watch_result = etcd__error_of(c, "/v3/watch", 200, json_is_object(e) ? e : msg);
		if (c->watch_result == MAIL_ERR_PARAMS)
			c->watch_result = MAIL_ERR_UNAVAILABLE;
		json_decref(msg);
		return -1;
	}
	if (json_is_true(json_object_get(result, "canceled"))) {
		/* etcd cancels a watch it cannot serve and keeps the stream
		 * open: end it here, or we would wait on it forever */
		const char *why = json_string_value(json_object_get(result, "cancel_reason"));
		if (why == NULL)
			why = "compacted";
		c->watch_result = etcd__watch_canceled(c, why);
		json_decref(msg);
		return -1;
	}
	if (json_is_true(json_object_get(result, "created")))
		c->watch_created = 1;
	size_t i;
	json_t *ev;
	json_array_foreach(json_object_get(result, "events"), i, ev) {
		etcd_kv kv;
		if (etcd__kv_parse(json_object_get(ev, "kv"), &kv) < 0) {
			etcd__fail(c, "/v3/watch", "parse", "bad event");
			c->watch_result = MAIL_ERR_UNAVAILABLE;
			json_decref(msg);
			return -1;
		}
		const char *type = json_string_value(json_object_get(ev, "type"));
		etcd_event event = {
			.type = type != NULL && strcmp(type, "DELETE") == 0 ? ETCD_EVENT_DELETE
									  : ETCD_EVENT_PUT,
			.key = kv.key,
			.value = kv.value,
			.value_len = kv.value_len,
			.mod_revision = kv.mod_revision,
		};
		int stop = c->watch_cb(&event, c->watch_arg);
		free(kv.key);
		free(kv.value);
		if (stop) {
			c->watch_result = MAIL_OK;
			json_decref(msg);
			return -1;
		}
	}
	json_decref(msg);
	return 0;
}

static size_t etcd__watch_write_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
	etcd_client *c = arg;
	size_t n = size * nmemb;
	/* lines may span chunks: buffer until '\n' */
	for (size_t off = 0; off < n;) {
		const char *nl = memchr(ptr + off, '\n', n - off);
		size_t take = nl != NULL ? (size_t)(nl - (ptr + off)) : n - off;
		if (c->resp.len + take > ETCD_WATCH_LINE_MAX) {
			etcd__fail(c, "/v3/watch", "limit", "watch line too long");
			c->watch_result = MAIL_ERR_UNAVAILABLE;
			return 0;
		}
		buf_append(&c->resp, ptr + off, take);
		off += take;
		if (nl == NULL)
			break;
		off++; /* the '\n' */
		int r = c->resp.len == 0 ? 0
			: etcd__watch_line(c, (const char *)c->resp.data, c->resp.len);
		buf_reset(&c->resp);
		if (r < 0)
			return 0;
	}
	return n;
}

void etcd__watch_begin(etcd_client *c, etcd_watch_cb *cb, void *arg)
{
	buf_reset(&c->resp);
	c->watch_cb = cb;
	c->watch_arg = arg;
	c->watch_stop = NULL;
	c->watch_result = -1;
	c->watch_created = 0;
	c->watch_deadline = 0;
}

int etcd__watch_feed(etcd_client *c, const char *data, size_t n, int *result_r)
{
	if (etcd__watch_write_cb((char *)data, 1, n, c) == n)
		return 1;
	*result_r = c->watch_result;
	return 0;
}

static int etcd__xferinfo_cb(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
			     curl_off_t ulnow)
{
	(void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
	etcd_client *c = arg;
	if (c->watch_stop != NULL && __atomic_load_n(c->watch_stop, __ATOMIC_ACQUIRE)) {
		c->watch_result = MAIL_OK;
		return 1;
	}
	if (!c->watch_created && c->watch_deadline != 0 &&
	    util_now_mono_ms() >= c->watch_deadline) {
		/* a watch etcd never confirmed (a token from another etcd can
		 * leave a request hanging): give up as for a timeout */
		etcd__fail(c, "/v3/watch", "timeout", "etcd did not confirm the watch");
		c->watch_result = MAIL_ERR_UNAVAILABLE;
		return 1;
	}
	return 0;
}

/* One watch stream; ETCD__REAUTH when etcd refused the token. */
static int etcd__watch_once(etcd_client *c, const char *body, etcd_watch_cb *cb, void *arg,
			    const int *stop)
{
	int err = etcd__auth(c, 0, 0);
	if (err != MAIL_OK)
		return err;
	etcd__prepare(c, "/v3/watch", body, strlen(body));
	etcd__watch_begin(c, cb, arg);
	c->watch_stop = stop;
	c->watch_deadline = util_now_mono_ms() + ETCD_REQUEST_TIMEOUT_MS;
	/* a watch is a long-lived stream: no overall timeout; the progress
	 * callback polls the stop flag and the deadline of the first answer */
	curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, 0L);
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, etcd__watch_write_cb);
	curl_easy_setopt(c->curl, CURLOPT_XFERINFOFUNCTION, etcd__xferinfo_cb);
	curl_easy_setopt(c->curl, CURLOPT_XFERINFODATA, c);
	curl_easy_setopt(c->curl, CURLOPT_NOPROGRESS, 0L);

	CURLcode rc = curl_easy_perform(c->curl);

	curl_easy_setopt(c->curl, CURLOPT_NOPROGRESS, 1L);
	curl_easy_setopt(c->curl, CURLOPT_XFERINFOFUNCTION, NULL);
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, etcd__write_cb);
	curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, ETCD_REQUEST_TIMEOUT_MS);
	buf_reset(&c->resp);

	if (c->watch_result != -1)
		return c->watch_result; /* ended by us: stop flag, callback, cancel */
	long status = 0;
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
	if (rc != CURLE_OK) {
		etcd__transport_failed(c, "/v3/watch", rc);
		etcd__rotate(c); /* the caller re-watches: on another member */
	} else {
		etcd__fail(c, "/v3/watch", "closed", status == 200 ? "stream ended" : "bad status");
	}
	return MAIL_ERR_UNAVAILABLE;
}

int etcd_watch(etcd_client *c, const char *key, const char *range_end, int64_t start_revision,
	       etcd_watch_cb *cb, void *arg, const int *stop)
{
	json_t *create = json_object();
	json_object_set_new(create, "key", etcd__b64_json(key, strlen(key)));
	size_t end_len;
	char *end = range_end != NULL ? xstrdup(range_end) : etcd__prefix_end(key, &end_len);
	if (range_end != NULL)
		end_len = strlen(end);
	json_object_set_new(create, "range_end", etcd__b64_json(end, end_len));
	free(end);
	if (start_revision > 0)
		json_object_set_new(create, "start_revision", etcd__i64_json(start_revision));
	json_t *req = json_object();
	json_object_set_new(req, "create_request", create);
	char *body = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	/* a canceled watch delivered nothing: start it again (with a fresh
	 * token when etcd refused ours) */
	int err = etcd__watch_once(c, body, cb, arg, stop);
	for (int stale = 0; err == ETCD__RETRY && stale < ETCD_STALE_AUTH_RETRIES; stale++) {
		struct timespec ts = { 0, ETCD_STALE_AUTH_WAIT_NS };
		nanosleep(&ts, NULL);
		err = etcd__watch_once(c, body, cb, arg, stop);
	}
	if (err == ETCD__REAUTH) {
		err = etcd__auth(c, c->token_gen, 0);
		if (err == MAIL_OK)
			err = etcd__watch_once(c, body, cb, arg, stop);
	}
	if (err == ETCD__REAUTH) {
		etcd__fail(c, "/v3/watch", "auth", "etcd refused a fresh token");
		err = MAIL_ERR_PERM;
	} else if (err == ETCD__RETRY) {
		etcd__fail(c, "/v3/watch", "auth", "etcd's users and roles keep changing");
		err = MAIL_ERR_UNAVAILABLE;
	}
	free(body);
	return err;
}

/* ---- the client pool (etcd.h) ------------------------------------------ */

struct etcd_pool {
	pthread_mutex_t lock;
	etcd_conf *conf;
	etcd_stats *stats;
	unsigned keep;
	etcd_client **idle;
	size_t n_idle;
};

etcd_pool *etcd_pool_create(const etcd_conf *conf, etcd_stats *stats, unsigned keep)
{
	etcd_pool *p = xcalloc(1, sizeof *p);
	pthread_mutex_init(&p->lock, NULL);
	p->conf = etcd_conf_dup(conf);
	p->stats = stats;
	p->keep = keep > 0 ? keep : 1;
	p->idle = xcalloc(p->keep, sizeof *p->idle);
	return p;
}

void etcd_pool_destroy(etcd_pool **pool)
{
	etcd_pool *p = *pool;
	if (p == NULL)
		return;
	*pool = NULL;
	for (size_t i = 0; i < p->n_idle; i++)
		etcd_client_destroy(&p->idle[i]);
	free(p->idle);
	etcd_conf_free(&p->conf);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

etcd_client *etcd_pool_take(etcd_pool *p)
{
	etcd_client *c = NULL;
	pthread_mutex_lock(&p->lock);
	if (p->n_idle > 0)
		c = p->idle[--p->n_idle];
	pthread_mutex_unlock(&p->lock);
	if (c == NULL) {
		c = etcd_client_create(p->conf);
		etcd_client_set_stats(c, p->stats);
	}
	return c;
}

void etcd_pool_give(etcd_pool *p, etcd_client **c)
{
	etcd_client *client = *c;
	*c = NULL;
	if (client == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	if (p->n_idle < p->keep) {
		p->idle[p->n_idle++] = client;
		client = NULL;
	}
	pthread_mutex_unlock(&p->lock);
	etcd_client_destroy(&client);
}
