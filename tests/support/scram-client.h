/* scram-client.h: the client side of SCRAM-SHA-256 (RFC 5802, RFC 7677)
 * for tests (library `mailtestsupport`, tests only).
 *
 * Written apart from lib/sasl.c, on OpenSSL's own base64, so that a test
 * checks the server against an independent client:
 *
 *   "n,," "n=user,r=<cnonce>"  -> server-first
 *   mailtest_scram_client_final("pencil", "n,,", "n=user,r=<cnonce>",
 *                               server_first, &final, &expect);
 *   final                      -> DONE with expect ("v=...") in out
 */
#ifndef MAIL_TEST_SCRAM_CLIENT_H
#define MAIL_TEST_SCRAM_CLIENT_H

/* From the server-first message and the password: the client-final
 * message to send (*client_final_r) and the server-final message the
 * server must answer (*server_final_r), heap strings the caller frees.
 * gs2_header ("n,,", "y,a=u,") and client_first_bare ("n=user,r=...")
 * are what the client sent first. 0, or -1 when server_first is
 * malformed or its nonce does not extend the client's. */
int mailtest_scram_client_final(const char *password, const char *gs2_header,
				const char *client_first_bare, const char *server_first,
				char **client_final_r, char **server_final_r);

#endif
