/* Tests of srs.h: the format pinned by vectors computed outside this code
 * (Python's hmac and base64), round trips, case changes on the way back,
 * the day window and its wrap at 1024, tampering, SRS1 chains over three
 * forwarders with secrets of their own, secret rotation, the null
 * sender, and every limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <ctype.h>

#include "srs.h"

#define DAY 86400
/* day 19000 (2022-01-08): 19000 mod 1024 = 568 = 17 * 32 + 24: "RY" */
#define NOW ((int64_t)19000 * DAY + 4321)

static struct srs *make(const char *const *secrets, size_t n, unsigned max_age)
{
	struct srs_settings set = { .secrets = secrets, .nsecrets = n, .max_age_days = max_age };
	struct srs *srs = NULL;
	const char *error = NULL;
	if (srs_create(&set, &srs, &error) < 0)
		fail_msg("srs_create: %s", error);
	return srs;
}

static struct srs *make1(const char *secret)
{
	const char *const secrets[] = { secret };
	return make(secrets, 1, 0);
}

static void expect_forward(const struct srs *srs, const char *sender, const char *ours,
			   int64_t now, const char *want)
{
	char out[SRS_ADDRESS_MAX + 1];
	int r = srs_forward(srs, sender, ours, now, out, sizeof out);
	if (r != 1 || strcmp(out, want) != 0)
		fail_msg("forward(%s) = %d \"%s\", want \"%s\"", sender, r, out, want);
}

static void expect_reverse(const struct srs *srs, const char *address, int64_t now,
			   int want_r, const char *want)
{
	char out[SRS_ADDRESS_MAX + 1];
	memset(out, 'x', sizeof out);
	int r = srs_reverse(srs, address, now, out, sizeof out);
	if (r != want_r || strcmp(out, want_r == 1 ? want : "") != 0)
		fail_msg("reverse(%s) = %d (%s) \"%s\", want %d (%s) \"%s\"", address, r,
			 srs_error_name(r), out, want_r, srs_error_name(want_r),
			 want_r == 1 ? want : "");
}

/* forward, then reverse: the sender comes back byte for byte */
static void round_trip(const struct srs *srs, const char *sender, int64_t now)
{
	char fwd[SRS_ADDRESS_MAX + 1];
	int r = srs_forward(srs, sender, "fwd.example.net", now, fwd, sizeof fwd);
	if (r != 1)
		fail_msg("forward(%s) = %s", sender, srs_error_name(r));
	expect_reverse(srs, fwd, now, 1, sender);
}

static void test_format(void **state)
{
	(void)state;
	struct srs *srs = make1("s3cret");
	/* vectors: base64(HMAC-SHA256("s3cret", "ryexample.orgalice"))[:4] */
	expect_forward(srs, "alice@example.org", "fwd.example.net", NOW,
		       "SRS0=xl0J=RY=example.org=alice@fwd.example.net");
	/* case kept in the address, not in the hash input */
	expect_forward(srs, "Alice.Smith@Example.ORG", "fwd.example.net", NOW,
		       "SRS0=H19x=RY=Example.ORG=Alice.Smith@fwd.example.net");
	/* the day changes at midnight UTC, not at NOW's second */
	char a[SRS_ADDRESS_MAX + 1], b[SRS_ADDRESS_MAX + 1];
	assert_int_equal(srs_forward(srs, "a@b.c", "f.d", (int64_t)19000 * DAY, a, sizeof a), 1);
	assert_int_equal(srs_forward(srs, "a@b.c", "f.d", (int64_t)19001 * DAY - 1, b, sizeof b), 1);
	assert_string_equal(a, b);
	assert_int_equal(srs_forward(srs, "a@b.c", "f.d", (int64_t)19001 * DAY, b, sizeof b), 1);
	assert_memory_equal(b + 10, "RZ=", 3);
	/* day 0 and days before the epoch */
	assert_int_equal(srs_forward(srs, "a@b.c", "f.d", 0, a, sizeof a), 1);
	assert_memory_equal(a + 10, "AA=", 3);
	assert_int_equal(srs_forward(srs, "a@b.c", "f.d", -1, a, sizeof a), 1);
	assert_memory_equal(a + 10, "77=", 3); /* day -1 = 1023 */
	srs_destroy(&srs);
	assert_null(srs);
	srs_destroy(&srs);
}

static void test_round_trips(void **state)
{
	(void)state;
	struct srs *srs = make1("s3cret");
	static const char *const senders[] = {
		"alice@example.org",
		"Alice.Smith+tag@Example.ORG",
		"a=b==c@x.y",                /* '=' in the local part */
		"!#$%&'*+-/=?^_`{|}~@x.y",  /* all of atext */
		"\xc3\xa9l\xc3\xa8ve@exemple.fr", /* UTF-8 (SMTPUTF8) */
		"SRS0=@x.y",                 /* a tag with nothing after it */
		"srs1=a=b@x.y",              /* SRS1-tagged, not SRS1's shape */
		"SRS2=x=y@x.y",
		"bounce@_dmarc.sub-1.example.org",
		"a@b",
	};
	for (size_t i = 0; i < sizeof senders / sizeof senders[0]; i++) {
		round_trip(srs, senders[i], NOW);
		round_trip(srs, senders[i], 0);
		round_trip(srs, senders[i], (int64_t)1023 * DAY);
	}
	srs_destroy(&srs);
}

static void test_case_changes(void **state)
{
	(void)state;
	struct srs *srs = make1("s3cret");
	char fwd[SRS_ADDRESS_MAX + 1], low[SRS_ADDRESS_MAX + 1], up[SRS_ADDRESS_MAX + 1];
	assert_int_equal(srs_forward(srs, "Alice.Smith@Example.ORG", "Fwd.Example.NET", NOW, fwd,
				     sizeof fwd),
			 1);
	for (size_t i = 0; i <= strlen(fwd); i++) {
		low[i] = (char)tolower((unsigned char)fwd[i]);
		up[i] = (char)toupper((unsigned char)fwd[i]);
	}
	/* an MTA that lowercased (or uppercased) the whole address: still
	 * ours, and the sender comes back as the bounce names it */
	expect_reverse(srs, low, NOW, 1, "alice.smith@example.org");
	expect_reverse(srs, up, NOW, 1, "ALICE.SMITH@EXAMPLE.ORG");
	/* the tag's case too, on SRS1 */
	assert_int_equal(srs_forward(srs, "SRS0=xl0J=RY=example.org=alice@hop1.example", "f.d", NOW,
				     fwd, sizeof fwd),
			 1);
	for (size_t i = 0; i <= strlen(fwd); i++)
		low[i] = (char)tolower((unsigned char)fwd[i]);
	expect_reverse(srs, low, NOW, 1, "SRS0=xl0j=ry=example.org=alice@hop1.example");
	srs_destroy(&srs);
}

static void test_expiry(void **state)
{
	(void)state;
	struct srs *srs = make1("s3cret");
	char fwd[SRS_ADDRESS_MAX + 1];
	assert_int_equal(srs_forward(srs, "alice@example.org", "f.d", NOW, fwd, sizeof fwd), 1);
	expect_reverse(srs, fwd, NOW, 1, "alice@example.org");
	expect_reverse(srs, fwd, NOW + 21 * DAY, 1, "alice@example.org");
	expect_reverse(srs, fwd, NOW + 22 * DAY, SRS_ERR_EXPIRED, NULL);
	/* "tomorrow" by another node's clock reads as 1023 days old */
	expect_reverse(srs, fwd, NOW - DAY, SRS_ERR_EXPIRED, NULL);
	/* 1024 days on, the counter has wrapped: the day cannot tell (that is
	 * the scheme: the hash and the 21 days keep the window small) */
	expect_reverse(srs, fwd, NOW + 1024 * DAY, 1, "alice@example.org");
	/* across the wrap: signed on day 1023, read on day 1024 + 5 */
	assert_int_equal(srs_forward(srs, "alice@example.org", "f.d", (int64_t)1023 * DAY, fwd,
				     sizeof fwd),
			 1);
	expect_reverse(srs, fwd, (int64_t)(1024 + 5) * DAY, 1, "alice@example.org");
	expect_reverse(srs, fwd, (int64_t)(1024 + 22) * DAY, SRS_ERR_EXPIRED, NULL);
	srs_destroy(&srs);

	/* a shorter window */
	const char *const secrets[] = { "s3cret" };
	srs = make(secrets, 1, 3);
	assert_int_equal(srs_forward(srs, "alice@example.org", "f.d", NOW, fwd, sizeof fwd), 1);
	expect_reverse(srs, fwd, NOW + 3 * DAY, 1, "alice@example.org");
	expect_reverse(srs, fwd, NOW + 4 * DAY, SRS_ERR_EXPIRED, NULL);
	srs_destroy(&srs);
}

static void test_tampering(void **state)
{
	(void)state;
	struct srs *srs = make1("s3cret");
	const char *good = "SRS0=xl0J=RY=example.org=alice@fwd.example.net";
	expect_reverse(srs, good, NOW, 1, "alice@example.org");
	/* each field changed: the hash no longer matches */
	expect_reverse(srs, "SRS0=xl0K=RY=example.org=alice@fwd.example.net", NOW, SRS_ERR_HASH,
		       NULL);
	expect_reverse(srs, "SRS0=xl0J=RZ=example.org=alice@fwd.example.net", NOW + DAY,
		       SRS_ERR_HASH, NULL);
	expect_reverse(srs, "SRS0=xl0J=RY=example.com=alice@fwd.example.net", NOW, SRS_ERR_HASH,
		       NULL);
	expect_reverse(srs, "SRS0=xl0J=RY=example.org=mallory@fwd.example.net", NOW,
		       SRS_ERR_HASH, NULL);
	expect_reverse(srs, "SRS0=xl0J=RY=example.org=alice2@fwd.example.net", NOW, SRS_ERR_HASH,
		       NULL);
	/* another secret's address */
	struct srs *other = make1("other");
	expect_reverse(other, good, NOW, SRS_ERR_HASH, NULL);
	srs_destroy(&other);
	/* the domain after '@' is the caller's business; none at all is fine */
	expect_reverse(srs, "SRS0=xl0J=RY=example.org=alice@elsewhere.test", NOW, 1,
		       "alice@example.org");
	expect_reverse(srs, "SRS0=xl0J=RY=example.org=alice", NOW, 1, "alice@example.org");
	/* libsrs2's other separators after the tag */
	expect_reverse(srs, "SRS0+xl0J=RY=example.org=alice@x.y", NOW, 1, "alice@example.org");
	expect_reverse(srs, "SRS0-xl0J=RY=example.org=alice@x.y", NOW, 1, "alice@example.org");
	srs_destroy(&srs);
}

static void test_malformed(void **state)
{
	(void)state;
	struct srs *srs = make1("s3cret");
	static const char *const malformed[] = {
		"SRS0=xl0J@x.y",                          /* fields missing */
		"SRS0=xl0J=RY@x.y",
		"SRS0=xl0J=RY=example.org@x.y",
		"SRS0=xl0J=RY=example.org=@x.y",          /* empty local part */
		"SRS0==RY=example.org=alice@x.y",         /* empty hash */
		"SRS0=xl0=RY=example.org=alice@x.y",      /* short hash */
		"SRS0=xl0JJ=RY=example.org=alice@x.y",    /* long hash */
		"SRS0=xl0J=R1=example.org=alice@x.y",     /* '1' is no base32 */
		"SRS0=xl0J=RYY=example.org=alice@x.y",
		"SRS0=xl0J==example.org=alice@x.y",
		"SRS0=xl0J=RY==alice@x.y",                /* empty domain */
		"SRS0=xl0J=RY=exa..mple.org=alice@x.y",
		"SRS0=xl0J=RY=example.org.=alice@x.y",
		"SRS0=xl0J=RY=exam!ple.org=alice@x.y",
		"SRS0=xl0J=RY=example.org=al ice@x.y",    /* no atext */
		"SRS0=xl0J=RY=example.org=al\"ice@x.y",
		"SRS0=xl0J=RY=example.org=al\r\nice@x.y",
		"SRS1=abcd@x.y",
		"SRS1=abcd=hop.example@x.y",
		"SRS1=abcd=hop.example=@x.y",
		"SRS1=abcd=hop.example=x@x.y",             /* rest without a separator */
		"SRS1=abcd=hop.example==@x.y",             /* separator alone */
		"SRS1=abc=hop.example==a@x.y",
		"SRS1=abcd=hop!.example==a@x.y",
		"SRS1==hop.example==a@x.y",
	};
	for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++)
		expect_reverse(srs, malformed[i], NOW, SRS_ERR_MALFORMED, NULL);
	static const char *const not_srs[] = {
		"alice@example.org", "", "@", "SRS0@x.y", "SRS0=@x.y", "SRS2=a=b=c=d@x.y",
		"SRSO=a=b=c=d@x.y", "SRS0*xl0J=RY=example.org=alice@x.y", "xSRS0=a=b=c=d@x.y",
		"SRS", "SRS0=", "SRS1=",
	};
	for (size_t i = 0; i < sizeof not_srs / sizeof not_srs[0]; i++)
		expect_reverse(srs, not_srs[i], NOW, 0, NULL);
	srs_destroy(&srs);
}

static void test_srs1_chain(void **state)
{
	(void)state;
	struct srs *hop1 = make1("s3cret"), *hop2 = make1("hop2secret"),
		   *hop3 = make1("hop3secret");
	char a1[SRS_ADDRESS_MAX + 1], a2[SRS_ADDRESS_MAX + 1], a3[SRS_ADDRESS_MAX + 1];
	assert_int_equal(srs_forward(hop1, "alice@example.org", "fwd1.example.net", NOW, a1,
				     sizeof a1),
			 1);
	assert_string_equal(a1, "SRS0=xl0J=RY=example.org=alice@fwd1.example.net");
	/* the second hop: SRS1 over the first hop and its SRS0 part; the
	 * vector: base64(HMAC-SHA256("hop2secret",
	 * "fwd1.example.net=xl0j=ry=example.org=alice"))[:4] */
	assert_int_equal(srs_forward(hop2, a1, "fwd2.example.net", NOW, a2, sizeof a2), 1);
	assert_string_equal(a2,
			    "SRS1=I+tB=fwd1.example.net==xl0J=RY=example.org=alice@fwd2.example.net");
	/* the third: still the first hop, a hash of its own */
	assert_int_equal(srs_forward(hop3, a2, "fwd3.example.net", NOW + DAY, a3, sizeof a3), 1);
	assert_memory_equal(a3, "SRS1=", 5);
	assert_string_equal(a3 + 9, "=fwd1.example.net==xl0J=RY=example.org=alice@fwd3.example.net");
	/* a bounce at the third hop goes straight to the first */
	expect_reverse(hop3, a3, NOW + 30 * DAY, 1, a1); /* SRS1 carries no day */
	expect_reverse(hop2, a2, NOW, 1, a1);
	expect_reverse(hop2, a3, NOW, SRS_ERR_HASH, NULL);
	expect_reverse(hop1, a1, NOW + 2 * DAY, 1, "alice@example.org");
	/* tampered SRS1 */
	char bad[SRS_ADDRESS_MAX + 1];
	snprintf(bad, sizeof bad, "SRS1=I+tB=fwd9.example.net==xl0J=RY=example.org=alice@x.y");
	expect_reverse(hop2, bad, NOW, SRS_ERR_HASH, NULL);
	snprintf(bad, sizeof bad, "SRS1=I+tB=fwd1.example.net==xl0J=RY=example.org=bob@x.y");
	expect_reverse(hop2, bad, NOW, SRS_ERR_HASH, NULL);
	/* another forwarder's '+' separator survives the chain */
	assert_int_equal(srs_forward(hop2, "SRS0+abcd=RY=example.org=alice@other.example", "f.d",
				     NOW, a2, sizeof a2),
			 1);
	assert_memory_equal(a2 + 9, "=other.example=+abcd=RY=", 24);
	expect_reverse(hop2, a2, NOW, 1, "SRS0+abcd=RY=example.org=alice@other.example");
	srs_destroy(&hop1);
	srs_destroy(&hop2);
	srs_destroy(&hop3);
}

static void test_rotation(void **state)
{
	(void)state;
	const char *const old_secrets[] = { "old" };
	const char *const both[] = { "new", "old" };
	const char *const new_only[] = { "new" };
	struct srs *old = make(old_secrets, 1, 0), *rot = make(both, 2, 0),
		   *fresh = make(new_only, 1, 0);
	char by_old[SRS_ADDRESS_MAX + 1], by_rot[SRS_ADDRESS_MAX + 1];
	assert_int_equal(srs_forward(old, "alice@example.org", "f.d", NOW, by_old, sizeof by_old),
			 1);
	assert_int_equal(srs_forward(rot, "alice@example.org", "f.d", NOW, by_rot, sizeof by_rot),
			 1);
	assert_string_not_equal(by_old, by_rot); /* the first secret signs */
	expect_reverse(rot, by_old, NOW, 1, "alice@example.org");
	expect_reverse(rot, by_rot, NOW, 1, "alice@example.org");
	expect_reverse(fresh, by_rot, NOW, 1, "alice@example.org");
	expect_reverse(fresh, by_old, NOW, SRS_ERR_HASH, NULL);
	expect_reverse(old, by_rot, NOW, SRS_ERR_HASH, NULL);
	srs_destroy(&old);
	srs_destroy(&rot);
	srs_destroy(&fresh);
}

static void test_null_sender(void **state)
{
	(void)state;
	struct srs *srs = make1("s3cret");
	char out[SRS_ADDRESS_MAX + 1] = "junk";
	assert_int_equal(srs_forward(srs, "", "f.d", NOW, out, sizeof out), 0);
	assert_string_equal(out, "");
	strcpy(out, "junk");
	assert_int_equal(srs_forward(srs, "<>", "f.d", NOW, out, sizeof out), 0);
	assert_string_equal(out, "");
	srs_destroy(&srs);
}

static void test_forward_refuses(void **state)
{
	(void)state;
	struct srs *srs = make1("s3cret");
	static const char *const bad[] = {
		"alice", "@example.org", "alice@", "\"a b\"@example.org", "a\\b@example.org",
		"a b@example.org", "alice@[192.0.2.1]", "alice@exa..mple.org", "alice@example.org.",
		"alice@.example.org", "alice@exa mple.org", "alice@example.org\r\nRCPT",
		"a(b)@example.org", "a,b@example.org", "a@b@example.org",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char out[SRS_ADDRESS_MAX + 1] = "junk";
		int r = srs_forward(srs, bad[i], "f.d", NOW, out, sizeof out);
		if (r != SRS_ERR_MALFORMED || out[0] != '\0')
			fail_msg("forward(%s) = %d \"%s\"", bad[i], r, out);
	}
	static const char *const bad_ours[] = { "", "f..d", "f.d.", "[127.0.0.1]", "f d" };
	for (size_t i = 0; i < sizeof bad_ours / sizeof bad_ours[0]; i++) {
		char out[SRS_ADDRESS_MAX + 1];
		assert_int_equal(srs_forward(srs, "a@b.c", bad_ours[i], NOW, out, sizeof out),
				 SRS_ERR_MALFORMED);
	}
	srs_destroy(&srs);
}

static void test_limits(void **state)
{
	(void)state;
	struct srs *srs = make1("s3cret");
	char in[1024], out[SRS_ADDRESS_MAX + 1];
	/* a sender of 320 bytes is read, of 321 not (whatever follows) */
	memset(in, 'a', sizeof in);
	memcpy(in + 300, "@example.org", 12);
	in[321] = '\0';
	assert_int_equal(srs_forward(srs, in, "f.d", NOW, out, sizeof out), SRS_ERR_TOO_LONG);
	/* 320 bytes are read, but the result would be longer */
	memset(in, 'a', sizeof in);
	memcpy(in + 308, "@example.org", 12);
	in[320] = '\0';
	assert_int_equal(srs_forward(srs, in, "f.d", NOW, out, sizeof out), SRS_ERR_TOO_LONG);
	/* the result's limit: SRS0 adds 5 + 4 + 1 + 2 + 1 + 1 bytes and
	 * replaces the domain after '@' by ours */
	char sender[400];
	size_t local = SRS_ADDRESS_MAX - 14 - 2 * strlen("b.c") - 1;
	memset(sender, 'l', local);
	snprintf(sender + local, sizeof sender - local, "@b.c");
	assert_int_equal(srs_forward(srs, sender, "b.c", NOW, out, sizeof out), 1);
	assert_int_equal(strlen(out), SRS_ADDRESS_MAX);
	expect_reverse(srs, out, NOW, 1, sender);
	assert_int_equal(srs_forward(srs, sender, "bb.c", NOW, out, sizeof out), SRS_ERR_TOO_LONG);
	/* the caller's buffer: exactly enough, one short, none */
	char small[64];
	const char *want = "SRS0=xl0J=RY=example.org=alice@fwd.example.net";
	size_t need = strlen(want) + 1;
	assert_int_equal(srs_forward(srs, "alice@example.org", "fwd.example.net", NOW, small, need),
			 1);
	assert_string_equal(small, want);
	strcpy(small, "junk");
	assert_int_equal(srs_forward(srs, "alice@example.org", "fwd.example.net", NOW, small,
				     need - 1),
			 SRS_ERR_SPACE);
	assert_string_equal(small, "");
	assert_int_equal(srs_forward(srs, "alice@example.org", "fwd.example.net", NOW, NULL, 0),
			 SRS_ERR_SPACE);
	assert_int_equal(srs_reverse(srs, want, NOW, small, 18), 1);
	assert_string_equal(small, "alice@example.org");
	assert_int_equal(srs_reverse(srs, want, NOW, small, 17), SRS_ERR_SPACE);
	assert_int_equal(srs_reverse(srs, want, NOW, NULL, 0), SRS_ERR_SPACE);
	/* reverse reads at most 321 bytes of anything */
	memset(in, 'a', sizeof in);
	memcpy(in, "SRS0=", 5);
	in[sizeof in - 1] = '\0';
	assert_int_equal(srs_reverse(srs, in, NOW, out, sizeof out), SRS_ERR_TOO_LONG);
	in[0] = 'x';
	assert_int_equal(srs_reverse(srs, in, NOW, out, sizeof out), SRS_ERR_TOO_LONG);
	in[SRS_ADDRESS_MAX] = '\0';
	assert_int_equal(srs_reverse(srs, in, NOW, out, sizeof out), 0);
	/* a domain of 254 bytes, labels of 64 */
	char dom[300];
	memset(dom, 'd', sizeof dom);
	for (size_t i = 63; i < 254; i += 64)
		dom[i] = '.';
	dom[254] = '\0';
	snprintf(in, sizeof in, "a@%s", dom);
	assert_int_equal(srs_forward(srs, in, "f.d", NOW, out, sizeof out), SRS_ERR_MALFORMED);
	dom[253] = '\0';
	snprintf(in, sizeof in, "a@%s", dom);
	assert_int_equal(srs_forward(srs, in, "f.d", NOW, out, sizeof out), 1);
	expect_reverse(srs, out, NOW, 1, in);
	assert_int_equal(srs_forward(srs, "a@b.c", dom, NOW, out, sizeof out), 1);
	memset(dom, 'd', 64);
	dom[64] = '\0';
	snprintf(in, sizeof in, "a@%s.c", dom);
	assert_int_equal(srs_forward(srs, in, "f.d", NOW, out, sizeof out), SRS_ERR_MALFORMED);
	srs_destroy(&srs);
}

static void test_settings(void **state)
{
	(void)state;
	char long_secret[SRS_SECRET_MAX + 2];
	memset(long_secret, 's', sizeof long_secret);
	long_secret[SRS_SECRET_MAX + 1] = '\0';
	const char *const nine[] = { "1", "2", "3", "4", "5", "6", "7", "8", "9" };
	const char *const empty[] = { "ok", "" };
	const char *const null[] = { NULL };
	const char *const too_long[] = { long_secret };
	const char *const one[] = { "ok" };
	const struct srs_settings bad[] = {
		{ .secrets = NULL, .nsecrets = 0 },
		{ .secrets = one, .nsecrets = 0 },
		{ .secrets = nine, .nsecrets = 9 },
		{ .secrets = empty, .nsecrets = 2 },
		{ .secrets = null, .nsecrets = 1 },
		{ .secrets = too_long, .nsecrets = 1 },
		{ .secrets = one, .nsecrets = 1, .max_age_days = 366 },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct srs *srs = (struct srs *)1;
		const char *error = NULL;
		assert_int_equal(srs_create(&bad[i], &srs, &error), -1);
		assert_null(srs);
		assert_non_null(error);
	}
	long_secret[SRS_SECRET_MAX] = '\0';
	struct srs *srs = make(too_long, 1, SRS_MAX_AGE_DAYS_MAX);
	srs_destroy(&srs);
	srs = make(nine, 8, 1);
	srs_destroy(&srs);
	assert_string_equal(srs_error_name(1), "ok");
	assert_string_equal(srs_error_name(SRS_ERR_HASH), "bad_hash");
	assert_string_equal(srs_error_name(SRS_ERR_EXPIRED), "expired");
	assert_string_equal(srs_error_name(-99), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format),       cmocka_unit_test(test_round_trips),
		cmocka_unit_test(test_case_changes), cmocka_unit_test(test_expiry),
		cmocka_unit_test(test_tampering),    cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_srs1_chain),   cmocka_unit_test(test_rotation),
		cmocka_unit_test(test_null_sender),  cmocka_unit_test(test_forward_refuses),
		cmocka_unit_test(test_limits),       cmocka_unit_test(test_settings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
