/* store-structure.h: a message's structure record, computed once when the
 * message is stored (delivery, APPEND) and kept beside its metadata ('E'
 * records, mailstore.h), so that FETCH ENVELOPE, BODYSTRUCTURE, BODY and
 * numbered sections never parse the message again.
 *
 * Record (version STORE_STRUCTURE_VERSION; big-endian lengths):
 *   version u8 | envelope_len u32 | envelope | bodystructure_len u32 |
 *   bodystructure | body_len u32 | body | parts_len u32 | parts
 * envelope, bodystructure and body are the IMAP strings of FETCH ENVELOPE,
 * BODYSTRUCTURE and BODY (no NUL inside); parts is the part table of
 * lib/mime/mime.h (mime_parts_decode), opaque here.
 *
 * The computation is this file's only: store_structure_compute() is the
 * one function to change when the analyser changes. Where it runs: on the
 * primary, into the replicated entry (store-service.c), so every replica
 * stores the same bytes whatever analyser version it runs; a direct
 * mailstore caller without one gets it computed by the mailstore.
 *
 * Pure functions, any thread.
 */
#ifndef MAIL_STORE_STRUCTURE_H
#define MAIL_STORE_STRUCTURE_H

#include "buf.h"

#include <stddef.h>
#include <stdint.h>

#define STORE_STRUCTURE_VERSION 0x01
/* Largest record accepted from an entry or a snapshot (PARAMS above). */
#define STORE_STRUCTURE_MAX (1024u * 1024u)

/* A decoded record: views into the bytes given to decode. The strings are
 * not NUL-terminated. */
struct store_structure {
	const char *envelope;
	size_t envelope_len;
	const char *bodystructure;
	size_t bodystructure_len;
	const char *body;
	size_t body_len;
	const uint8_t *parts;
	size_t parts_len;
};

/* Append the record of message (len bytes, the raw message) to out:
 * lib/mime's mime_analyze() with its default limits. Never fails: a
 * message that does not parse gets a degraded structure (mime.h). */
void store_structure_compute(const void *message, size_t len, buf *out);
/* Decode a record: 0, or -1 when p is not exactly one record of this
 * version (a NUL inside a string included) or longer than
 * STORE_STRUCTURE_MAX. */
int store_structure_decode(const void *p, size_t len, struct store_structure *st_r);
/* Append a record of the given parts to out (tests, and compute). */
void store_structure_encode(buf *out, const struct store_structure *st);

#endif
