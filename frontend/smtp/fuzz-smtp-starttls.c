/* fuzz-smtp-starttls.c: STARTTLS with pipelined bytes (libFuzzer).
 *
 * The input is what a client (or a man in the middle) sends: plaintext
 * SMTP up to a STARTTLS command, bytes pipelined after it, then the bytes
 * of the "handshake" and whatever follows (split at the first 0xFF 0x00
 * pair into the pipelined flight and the TLS flight). The harness does
 * what the engine does (smtp-server.c): it parses commands until
 * STARTTLS, drops the rest of that flight, then feeds the TLS flight to a
 * server tls_conn (lib/tls.h) in chunks and parses whatever plaintext
 * comes out with a fresh parser. Checked: nothing crashes or leaks, no
 * plaintext comes out of a TLS layer whose handshake is not done, and a
 * command pipelined after STARTTLS never reaches the second parser.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "smtp-parser.h"
#include "tls.h"

/* A throwaway self-signed P-256 certificate (CN=fuzz), fuzzing only. */
static const char fuzz_cert[] =
	"-----BEGIN CERTIFICATE-----\n"
	"MIIBdTCCARugAwIBAgIUWksBHMSDTFn4aATTWtIVb9zSvnQwCgYIKoZIzj0EAwIw\n"
	"DzENMAsGA1UEAwwEZnV6ejAgFw0yNjEyMDIwNTAxMjlaGA8yMTI2MTEwODA1MDEy\n"
	"OVowDzENMAsGA1UEAwwEZnV6ejBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABKWG\n"
	"2aYrv5W9kJgLpcZn1X83XlU8w5o9LgBs+SVNALwYlb2OoB560NyDWyR4L8GfHeqD\n"
	"lE5fi1DZ6tx0e0bpkGWjUzBRMB0GA1UdDgQWBBR5o5vUV2GXSzEzPYzcyxDFif66\n"
	"pzAfBgNVHSMEGDAWgBR5o5vUV2GXSzEzPYzcyxDFif66pzAPBgNVHRMBAf8EBTAD\n"
	"AQH/MAoGCCqGSM49BAMCA0gAMEUCIDq1G8osd7KY8TAg5k5a5Aa49rgrdcaeedmj\n"
	"e+nzmVgJAiEAnDvZFM0XdAaj9RM9nGRD9CSPG+6/AzPML3PC5zE/NyQ=\n"
	"-----END CERTIFICATE-----\n";
static const char fuzz_key[] =
	"-----BEGIN PRIVATE KEY-----\n"
	"MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgMoWwqms8R0tHfiD2\n"
	"BYjeOlhweQw8urD7WODqPWwqBDShRANCAASlhtmmK7+VvZCYC6XGZ9V/N15VPMOa\n"
	"PS4AbPklTQC8GJW9jqAeetDcg1skeC/Bnx3qg5ROX4tQ2ercdHtG6ZBl\n"
	"-----END PRIVATE KEY-----\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

/* Parse every command in [p, p+n); 1 when STARTTLS was seen (*used: the
 * bytes up to and including it). */
static int parse_until_starttls(smtp_command_parser *parser, const uint8_t *p, size_t n,
				size_t *used_r)
{
	size_t off = 0;
	while (off < n) {
		struct smtp_command cmd;
		size_t used = 0;
		int ret = smtp_command_parser_feed(parser, p + off, n - off, &used, &cmd);
		off += used;
		if (ret > 0 && cmd.kind == SMTP_CMD_STARTTLS) {
			*used_r = off;
			return 1;
		}
		if (used == 0)
			break;
	}
	*used_r = off;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	if (len < 2)
		return 0;
	size_t chunk = (size_t)(data[0] % 64) + 1;
	data++;
	len--;
	const uint8_t *split = NULL;
	for (size_t i = 0; i + 1 < len; i++) {
		if (data[i] == 0xff && data[i + 1] == 0x00) {
			split = data + i;
			break;
		}
	}
	size_t plain_len = split != NULL ? (size_t)(split - data) : len;
	const uint8_t *tls_bytes = split != NULL ? split + 2 : data + len;
	size_t tls_len = (size_t)(data + len - tls_bytes);

	struct smtp_limits limits;
	smtp_limits_init_default(&limits);
	smtp_command_parser parser;
	smtp_command_parser_init(&parser, &limits);
	size_t used = 0;
	int starttls = parse_until_starttls(&parser, data, plain_len, &used);
	smtp_command_parser_deinit(&parser);
	if (!starttls)
		return 0;
	/* what followed STARTTLS in its flight is dropped: never parsed */

	tls_server *srv = NULL;
	const char *error = NULL;
	if (tls_server_create_pem(fuzz_cert, sizeof fuzz_cert - 1, fuzz_key, sizeof fuzz_key - 1,
				  &srv, &error) < 0)
		abort();
	tls_conn *c = tls_conn_new_server(srv);
	smtp_command_parser_init(&parser, &limits);
	buf plain, net;
	buf_init(&plain);
	buf_init(&net);
	for (size_t off = 0; off < tls_len;) {
		size_t n = tls_len - off < chunk ? tls_len - off : chunk;
		enum tls_feed_result r = tls_conn_feed(c, tls_bytes + off, n, &plain, &net);
		off += n;
		buf_reset(&net);
		if (plain.len > 0 && !tls_conn_handshake_done(c))
			abort(); /* plaintext before the handshake: an injection */
		size_t parsed = 0;
		parse_until_starttls(&parser, plain.data, plain.len, &parsed);
		buf_consume(&plain, parsed);
		if (r != TLS_FEED_OK)
			break;
	}
	smtp_command_parser_deinit(&parser);
	buf_deinit(&plain);
	buf_deinit(&net);
	tls_conn_free(&c);
	tls_server_destroy(&srv);
	return 0;
}
