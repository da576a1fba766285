/* srs.c: SRS0/SRS1 addresses (srs.h): their fields, the hash, the day.
 *
 * Every input is a C string read at most SRS_ADDRESS_MAX + 1 bytes far
 * (strnlen), cut into spans (pointer, length) that point into it; nothing
 * is copied until the result is written, and the result's length is
 * known, and checked against SRS_ADDRESS_MAX and the caller's buffer,
 * before the first byte goes out. No allocation after srs_create().
 */
#include "srs.h"

#include "xalloc.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <stdlib.h>
#include <string.h>

struct srs {
	unsigned max_age_days;
	size_t nsecrets;
	char *secrets[SRS_SECRETS_MAX];
	size_t secret_lens[SRS_SECRETS_MAX];
};

/* A piece of an input (not NUL-terminated). */
struct srs__span {
	const char *p;
	size_t len;
};

/* The day counter wraps at 1024 = 32 * 32: two base32 characters. */
#define SRS__DAY_SLOTS 1024
#define SRS__SECONDS_PER_DAY 86400
static const char srs__base32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
static const char srs__base64[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/* What may follow the SRS0/SRS1 tag (libsrs2's SRS_IS_SEP). */
static const char srs__seps[] = "=+-";

const char *srs_error_name(int ret)
{
	switch (ret) {
	case 0:
	case 1:
		return "ok";
	case SRS_ERR_MALFORMED:
		return "malformed";
	case SRS_ERR_HASH:
		return "bad_hash";
	case SRS_ERR_EXPIRED:
		return "expired";
	case SRS_ERR_TOO_LONG:
		return "too_long";
	case SRS_ERR_SPACE:
		return "space";
	}
	return "unknown";
}

/* ---- characters ---- */

/* ASCII only: the locale must not change a hash. */
static char srs__lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* RFC 5322 atext, a dot, or a byte of UTF-8 (RFC 6531 atext). */
static int srs__local_char(unsigned char c)
{
	if (c >= 0x80)
		return 1;
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~.", c) != NULL;
}

static int srs__local_ok(struct srs__span s)
{
	if (s.len == 0)
		return 0;
	for (size_t i = 0; i < s.len; i++) {
		if (!srs__local_char((unsigned char)s.p[i]))
			return 0;
	}
	return 1;
}

/* A DNS name as RFC 5321 writes a Domain: labels of 1..63 letters,
 * digits, '-' or '_', at most 253 bytes, no trailing dot. It never holds
 * '=', which is what lets an SRS0 local part be cut at its '='s. */
static int srs__domain_ok(struct srs__span s)
{
	if (s.len == 0 || s.len > 253)
		return 0;
	size_t label = 0;
	for (size_t i = 0; i < s.len; i++) {
		char c = s.p[i];
		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
			continue;
		}
		int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			 (c >= '0' && c <= '9') || c == '-' || c == '_';
		if (!ok || ++label > 63)
			return 0;
	}
	return label > 0;
}

/* local starts with "SRS<digit>" (any case), a separator and at least
 * one byte more: with nothing after the separator it is no SRS address
 * (and forward wraps it as an ordinary local part). */
static int srs__tagged(struct srs__span local, char digit)
{
	return local.len >= 6 && srs__lower(local.p[0]) == 's' && srs__lower(local.p[1]) == 'r' &&
	       srs__lower(local.p[2]) == 's' && local.p[3] == digit &&
	       strchr(srs__seps, local.p[4]) != NULL;
}

/* The next '='-terminated field of s from *pos: the span before it, *pos
 * moved past it. Returns 0 when s has no more '='. */
static int srs__field(struct srs__span s, size_t *pos, struct srs__span *field_r)
{
	const char *eq = memchr(s.p + *pos, '=', s.len - *pos);
	if (eq == NULL)
		return 0;
	field_r->p = s.p + *pos;
	field_r->len = (size_t)(eq - field_r->p);
	*pos = (size_t)(eq - s.p) + 1;
	return 1;
}

/* An SRS1 local part, "SRS1" sep HASH "=" HOP "=" REST: REST is what
 * followed "SRS0" at the first hop, its separator first. Returns 1 when
 * local has that shape (any hash length: forward meets other forwarders'
 * hashes; reverse checks its own length), with a DNS name for HOP. */
static int srs__srs1_split(struct srs__span local, struct srs__span *hash_r,
			   struct srs__span *hop_r, struct srs__span *rest_r)
{
	size_t pos = 5;
	if (!srs__field(local, &pos, hash_r) || hash_r->len == 0 ||
	    !srs__field(local, &pos, hop_r) || !srs__domain_ok(*hop_r))
		return 0;
	*rest_r = (struct srs__span){ local.p + pos, local.len - pos };
	return rest_r->len >= 2 && strchr(srs__seps, rest_r->p[0]) != NULL;
}

/* ---- day and hash ---- */

/* Days since the epoch mod 1024 (the floor for times before it). */
static unsigned srs__day(int64_t now_s)
{
	int64_t d = now_s / SRS__SECONDS_PER_DAY;
	if (now_s % SRS__SECONDS_PER_DAY < 0)
		d--;
	return (unsigned)(((d % SRS__DAY_SLOTS) + SRS__DAY_SLOTS) % SRS__DAY_SLOTS);
}

static void srs__stamp_encode(unsigned day, char out[SRS_STAMP_LEN])
{
	out[0] = srs__base32[(day >> 5) & 31];
	out[1] = srs__base32[day & 31];
}

static int srs__base32_value(char c)
{
	c = srs__lower(c);
	if (c >= 'a' && c <= 'z')
		return c - 'a';
	if (c >= '2' && c <= '7')
		return c - '2' + 26;
	return -1;
}

/* Returns the day of a TT field, or -1 when it is not two base32
 * characters. */
static int srs__stamp_decode(struct srs__span s)
{
	if (s.len != SRS_STAMP_LEN)
		return -1;
	int hi = srs__base32_value(s.p[0]), lo = srs__base32_value(s.p[1]);
	return hi < 0 || lo < 0 ? -1 : hi * 32 + lo;
}

/* The first SRS_HASH_LEN base64 characters of HMAC-SHA256(secret,
 * lowercase(parts joined)). 4 base64 characters are the digest's first 3
 * bytes, so only those are encoded. */
static void srs__hash(const struct srs *srs, size_t secret, const struct srs__span *parts,
		      size_t nparts, char out[SRS_HASH_LEN])
{
	/* every part lies within one input of at most SRS_ADDRESS_MAX bytes,
	 * besides a TT of our own */
	char data[SRS_ADDRESS_MAX + SRS_STAMP_LEN];
	size_t len = 0;
	for (size_t i = 0; i < nparts; i++) {
		if (parts[i].len > sizeof data - len)
			abort(); /* cannot happen: the spans are bounded above */
		for (size_t j = 0; j < parts[i].len; j++)
			data[len++] = srs__lower(parts[i].p[j]);
	}
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned md_len = 0;
	if (HMAC(EVP_sha256(), srs->secrets[secret], (int)srs->secret_lens[secret],
		 (const unsigned char *)data, len, md, &md_len) == NULL ||
	    md_len < 3)
		abort(); /* OpenSSL without SHA-256: nothing can be signed */
	uint32_t v = (uint32_t)md[0] << 16 | (uint32_t)md[1] << 8 | md[2];
	out[0] = srs__base64[(v >> 18) & 63];
	out[1] = srs__base64[(v >> 12) & 63];
	out[2] = srs__base64[(v >> 6) & 63];
	out[3] = srs__base64[v & 63];
}

/* Does some secret make hash (case-insensitively: some MTAs lowercase
 * the local part of the bounce's recipient)? Each comparison reads every
 * character, so its time says nothing of where a guess went wrong. */
static int srs__hash_ok(const struct srs *srs, struct srs__span hash,
			const struct srs__span *parts, size_t nparts)
{
	if (hash.len != SRS_HASH_LEN)
		return 0;
	for (size_t s = 0; s < srs->nsecrets; s++) {
		char want[SRS_HASH_LEN];
		srs__hash(srs, s, parts, nparts, want);
		unsigned diff = 0;
		for (size_t i = 0; i < SRS_HASH_LEN; i++)
			diff |= (unsigned char)(srs__lower(want[i]) ^ srs__lower(hash.p[i]));
		if (diff == 0)
			return 1;
	}
	return 0;
}

/* ---- output ---- */

/* parts joined into out: SRS_ERR_TOO_LONG over SRS_ADDRESS_MAX,
 * SRS_ERR_SPACE when out cannot hold them and the NUL, else 1. */
static int srs__emit(char *out, size_t size, const struct srs__span *parts, size_t nparts)
{
	size_t total = 0;
	for (size_t i = 0; i < nparts; i++)
		total += parts[i].len; /* each part at most an input: no overflow */
	if (total > SRS_ADDRESS_MAX)
		return SRS_ERR_TOO_LONG;
	if (total >= size)
		return SRS_ERR_SPACE;
	size_t o = 0;
	for (size_t i = 0; i < nparts; i++) {
		memcpy(out + o, parts[i].p, parts[i].len);
		o += parts[i].len;
	}
	out[o] = '\0';
	return 1;
}

#define SRS__LIT(s) ((struct srs__span){ (s), sizeof(s) - 1 })
#define SRS__N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- the object ---- */

int srs_create(const struct srs_settings *settings, struct srs **srs_r, const char **error_r)
{
	*srs_r = NULL;
	if (settings->nsecrets == 0 || settings->secrets == NULL) {
		*error_r = "srs: no secret";
		return -1;
	}
	if (settings->nsecrets > SRS_SECRETS_MAX) {
		*error_r = "srs: more than 8 secrets";
		return -1;
	}
	for (size_t i = 0; i < settings->nsecrets; i++) {
		const char *s = settings->secrets[i];
		if (s == NULL || s[0] == '\0' || strnlen(s, SRS_SECRET_MAX + 1) > SRS_SECRET_MAX) {
			*error_r = "srs: a secret is empty or longer than 1024 bytes";
			return -1;
		}
	}
	unsigned age = settings->max_age_days != 0 ? settings->max_age_days
						   : SRS_MAX_AGE_DAYS_DEFAULT;
	if (age < SRS_MAX_AGE_DAYS_MIN || age > SRS_MAX_AGE_DAYS_MAX) {
		*error_r = "srs: max_age_days out of 1..365";
		return -1;
	}
	struct srs *srs = xcalloc(1, sizeof *srs);
	srs->max_age_days = age;
	srs->nsecrets = settings->nsecrets;
	for (size_t i = 0; i < srs->nsecrets; i++) {
		srs->secret_lens[i] = strlen(settings->secrets[i]);
		srs->secrets[i] = xstrndup(settings->secrets[i], srs->secret_lens[i]);
	}
	*srs_r = srs;
	return 0;
}

void srs_destroy(struct srs **srsp)
{
	struct srs *srs = *srsp;
	if (srs == NULL)
		return;
	*srsp = NULL;
	for (size_t i = 0; i < srs->nsecrets; i++)
		xfree_secret(srs->secrets[i], srs->secret_lens[i]);
	free(srs);
}

/* ---- forward ---- */

int srs_forward(const struct srs *srs, const char *sender, const char *our_domain, int64_t now_s,
		char *out, size_t size)
{
	if (size > 0)
		out[0] = '\0';
	size_t len = strnlen(sender, SRS_ADDRESS_MAX + 1);
	if (len == 0 || (len == 2 && sender[0] == '<' && sender[1] == '>'))
		return 0;
	if (len > SRS_ADDRESS_MAX)
		return SRS_ERR_TOO_LONG;
	struct srs__span ours = { our_domain, strnlen(our_domain, SRS_ADDRESS_MAX + 1) };
	const char *at = memrchr(sender, '@', len);
	if (at == NULL || !srs__domain_ok(ours))
		return SRS_ERR_MALFORMED;
	struct srs__span local = { sender, (size_t)(at - sender) };
	struct srs__span domain = { at + 1, len - local.len - 1 };
	if (!srs__local_ok(local) || !srs__domain_ok(domain))
		return SRS_ERR_MALFORMED;

	char hash[SRS_HASH_LEN];
	struct srs__span old_hash, hop, rest;
	int srs1 = srs__tagged(local, '1') && srs__srs1_split(local, &old_hash, &hop, &rest);
	if (!srs1 && srs__tagged(local, '0')) {
		/* we are the second hop: the first one's address rides along */
		hop = domain;
		rest = (struct srs__span){ local.p + 4, local.len - 4 };
		srs1 = 1;
	}
	if (srs1) {
		const struct srs__span hashed[] = { hop, rest };
		srs__hash(srs, 0, hashed, SRS__N(hashed), hash);
		const struct srs__span parts[] = { SRS__LIT("SRS1="), { hash, SRS_HASH_LEN },
						   SRS__LIT("="), hop, SRS__LIT("="), rest,
						   SRS__LIT("@"), ours };
		return srs__emit(out, size, parts, SRS__N(parts));
	}

	char stamp[SRS_STAMP_LEN];
	srs__stamp_encode(srs__day(now_s), stamp);
	const struct srs__span hashed[] = { { stamp, SRS_STAMP_LEN }, domain, local };
	srs__hash(srs, 0, hashed, SRS__N(hashed), hash);
	const struct srs__span parts[] = { SRS__LIT("SRS0="), { hash, SRS_HASH_LEN },
					   SRS__LIT("="), { stamp, SRS_STAMP_LEN },
					   SRS__LIT("="), domain, SRS__LIT("="), local,
					   SRS__LIT("@"), ours };
	return srs__emit(out, size, parts, SRS__N(parts));
}

/* ---- reverse ---- */

/* SRS0 sep HHHH "=" TT "=" DOMAIN "=" LOCAL: the original LOCAL@DOMAIN.
 * LOCAL may hold '=' (it is the rest); DOMAIN cannot. */
static int srs__reverse0(const struct srs *srs, struct srs__span local, int64_t now_s, char *out,
			 size_t size)
{
	struct srs__span hash, stamp, domain;
	size_t pos = 5;
	if (!srs__field(local, &pos, &hash) || !srs__field(local, &pos, &stamp) ||
	    !srs__field(local, &pos, &domain))
		return SRS_ERR_MALFORMED;
	struct srs__span user = { local.p + pos, local.len - pos };
	int then = srs__stamp_decode(stamp);
	if (hash.len != SRS_HASH_LEN || then < 0 || !srs__domain_ok(domain) || user.len == 0)
		return SRS_ERR_MALFORMED;
	const struct srs__span hashed[] = { stamp, domain, user };
	if (!srs__hash_ok(srs, hash, hashed, SRS__N(hashed)))
		return SRS_ERR_HASH;
	/* days since signing, mod 1024: a stamp from "tomorrow" (another
	 * node's clock) reads as 1023 days old, as in libsrs2 */
	unsigned age = (srs__day(now_s) + SRS__DAY_SLOTS - (unsigned)then) % SRS__DAY_SLOTS;
	if (age > srs->max_age_days)
		return SRS_ERR_EXPIRED;
	const struct srs__span parts[] = { user, SRS__LIT("@"), domain };
	return srs__emit(out, size, parts, SRS__N(parts));
}

/* SRS1 sep GGGG "=" HOP "=" REST: "SRS0" REST "@" HOP, the first hop's
 * address (which checks its own day). */
static int srs__reverse1(const struct srs *srs, struct srs__span local, char *out, size_t size)
{
	struct srs__span hash, hop, rest;
	if (!srs__srs1_split(local, &hash, &hop, &rest) || hash.len != SRS_HASH_LEN)
		return SRS_ERR_MALFORMED;
	const struct srs__span hashed[] = { hop, rest };
	if (!srs__hash_ok(srs, hash, hashed, SRS__N(hashed)))
		return SRS_ERR_HASH;
	const struct srs__span parts[] = { SRS__LIT("SRS0"), rest, SRS__LIT("@"), hop };
	return srs__emit(out, size, parts, SRS__N(parts));
}

int srs_reverse(const struct srs *srs, const char *address, int64_t now_s, char *out,
		size_t size)
{
	if (size > 0)
		out[0] = '\0';
	size_t len = strnlen(address, SRS_ADDRESS_MAX + 1);
	if (len > SRS_ADDRESS_MAX)
		return SRS_ERR_TOO_LONG;
	const char *at = memrchr(address, '@', len);
	struct srs__span local = { address, at != NULL ? (size_t)(at - address) : len };
	int srs0 = srs__tagged(local, '0'), srs1 = srs__tagged(local, '1');
	if (!srs0 && !srs1)
		return 0;
	/* only what forward writes: no byte of the result can be one a
	 * later SMTP command or header would trip over */
	if (!srs__local_ok(local))
		return SRS_ERR_MALFORMED;
	return srs0 ? srs__reverse0(srs, local, now_s, out, size)
		    : srs__reverse1(srs, local, out, size);
}
