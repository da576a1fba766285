/* rpc-call.c: one RPC call to one node, for the security tests
 * (tests/e2e_node_tls.py). Not installed.
 *
 *   rpc-call --connect IP:PORT --method NAME [--cluster-ca FILE
 *            [--node-cert FILE --node-key FILE]] [--deadline-ms N]
 *
 * NAME is one of the table below (service and method of our RPC); the
 * request is the method's message with every field at its default, so a
 * call that passes the transport and the role check gets whatever the
 * handler says of an empty request. With --cluster-ca the call goes over
 * TLS, verifying the node's certificate against that CA and the IP, and
 * presents --node-cert when given (without it: no client certificate).
 *
 * stdout: one line, "status=<name>" (lib/mail-error.h names: ok, perm,
 * unavailable...). Exit 0 when the call got an answer or failed (the
 * status says which), 2 on bad options or files. Logs go to stderr.
 */
#include "daemon-options.h"
#include "mail-error.h"
#include "queue.pb-c.h"
#include "repl.pb-c.h"
#include "rpc.h"
#include "store.pb-c.h"
#include "tls.h"
#include "xalloc.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct call_method {
	const char *name;
	const char *service;
	uint16_t id;
	const ProtobufCMessageDescriptor *request;
	const ProtobufCMessageDescriptor *response;
};

static const struct call_method call_methods[] = {
	{ "append_entries", "repl", REPL__METHOD__APPEND_ENTRIES, &repl__append_request__descriptor,
	  &repl__append_response__descriptor },
	{ "install_snapshot", "repl", REPL__METHOD__INSTALL_SNAPSHOT,
	  &repl__snapshot_request__descriptor, &repl__snapshot_response__descriptor },
	{ "deliver", "store", STORE__METHOD__DELIVER, &store__deliver_request__descriptor,
	  &store__deliver_response__descriptor },
	{ "list", "store", STORE__METHOD__LIST, &store__list_request__descriptor,
	  &store__list_response__descriptor },
	{ "enqueue", "queue", QUEUE__METHOD__ENQUEUE, &queue__enqueue_request__descriptor,
	  &queue__enqueue_response__descriptor },
};

struct call_settings {
	struct daemon_listen connect;
	const struct call_method *method;
	const char *ca_file, *cert_file, *key_file;
	unsigned deadline_ms;
};

struct call_state {
	int done;
	int status;
};

static void usage(FILE *out)
{
	fprintf(out, "usage: rpc-call --connect IP:PORT --method NAME [--cluster-ca FILE\n"
		     "                [--node-cert FILE --node-key FILE]] [--deadline-ms N]\n"
		     "NAME:");
	for (size_t i = 0; i < sizeof call_methods / sizeof call_methods[0]; i++)
		fprintf(out, " %s", call_methods[i].name);
	fprintf(out, "\n");
}

static const struct call_method *call_method_find(const char *name)
{
	for (size_t i = 0; i < sizeof call_methods / sizeof call_methods[0]; i++)
		if (strcmp(call_methods[i].name, name) == 0)
			return &call_methods[i];
	return NULL;
}

static int settings_parse(int argc, char **argv, struct call_settings *set)
{
	static const struct option opts[] = {
		{ "connect", required_argument, NULL, 'c' },
		{ "method", required_argument, NULL, 'm' },
		{ "cluster-ca", required_argument, NULL, 'a' },
		{ "node-cert", required_argument, NULL, 'C' },
		{ "node-key", required_argument, NULL, 'K' },
		{ "deadline-ms", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	*set = (struct call_settings){ .deadline_ms = 5000 };
	const char *why;
	int c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (daemon_listen_parse(optarg, &set->connect, &why) < 0)
				return -1;
			break;
		case 'm':
			if ((set->method = call_method_find(optarg)) == NULL)
				return -1;
			break;
		case 'a': set->ca_file = optarg; break;
		case 'C': set->cert_file = optarg; break;
		case 'K': set->key_file = optarg; break;
		case 'd':
			if (daemon_options_parse_uint(optarg, 1, 600000, &set->deadline_ms) < 0)
				return -1;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			return -1;
		}
	}
	if (optind != argc || set->connect.text == NULL || set->method == NULL ||
	    (set->cert_file == NULL) != (set->key_file == NULL) ||
	    (set->cert_file != NULL && set->ca_file == NULL))
		return -1;
	return 0;
}

static void call_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	(void)resp;
	struct call_state *st = arg;
	st->done = 1;
	st->status = status;
}

int main(int argc, char **argv)
{
	struct call_settings set;
	if (settings_parse(argc, argv, &set) < 0) {
		usage(stderr);
		return 2;
	}
	tls_client *tls = NULL;
	const char *error;
	if (set.ca_file != NULL) {
		struct tls_client_settings ts = { set.ca_file, set.cert_file, set.key_file };
		if (tls_client_create(&ts, &tls, &error) < 0) {
			fprintf(stderr, "rpc-call: %s\n", error);
			return 2;
		}
	}
	uv_loop_t loop;
	uv_loop_init(&loop);
	rpc_client *client;
	rpc_client_create(&loop, set.method->service, set.connect.host, set.connect.port, &client);
	if (tls != NULL)
		rpc_client_set_tls(client, tls);
	/* every field at its default */
	ProtobufCMessage *req = xcalloc(1, set.method->request->sizeof_message);
	protobuf_c_message_init(set.method->request, req);
	struct call_state st = { 0, MAIL_ERR_INTERNAL };
	rpc_client_call(client, set.method->id, req, set.method->response, set.deadline_ms,
			call_cb, &st);
	while (!st.done)
		uv_run(&loop, UV_RUN_ONCE);
	printf("status=%s\n", mail_error_info(st.status)->name);
	rpc_client_destroy(&client);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	free(req);
	tls_client_destroy(&tls);
	return 0;
}
