/* libFuzzer target: lib/spf's reading of DNS answers, and what libspf2
 * makes of SPF records nobody here controls, DNS-free.
 *
 * The first input byte picks the mode:
 *
 *   even: the rest is a DNS message given to spf__dns_read() (the one
 *         parser of network bytes in lib/spf) as the answer to a query of
 *         the type the second byte picks (A, AAAA, MX, PTR, TXT). Checked:
 *         a record set always comes back; its herrno is one of the four
 *         libspf2 reads; NETDB_SUCCESS has records and NO_DATA none; every
 *         TXT, MX and PTR value is a C string within the buffer libspf2
 *         sized for it (a TXT shorter than the message, a name than
 *         NS_MAXDNAME); the TTL within the cap.
 *   odd:  the second byte picks the client (IPv4 or IPv6) and the
 *         identity; the rest is up to four TXT records, one per line: those
 *         of fuzz.test (the domain checked), i1.fuzz.test, i2.fuzz.test and
 *         i3.fuzz.test (for include: and redirect=), beside fixed A, AAAA,
 *         MX and PTR records. The check runs through our limits layer over
 *         libspf2's SPF_dns_zone (no network), then its texts are built.
 *         Checked: a status of the enum; terms and voids within the limits
 *         (one over, when that ended it); a problem exactly for the error
 *         results; Received-SPF and the A-R fragment printable ASCII (and
 *         TAB in folding), CRLF TAB between lines, lines within 998
 *         bytes, ending CRLF.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spf-private.h"

#include <spf2/spf_dns_zone.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                               \
	do {                                                                                   \
		if (!(x))                                                                      \
			__builtin_trap();                                                      \
	} while (0)

static void fuzz_read(const uint8_t *data, size_t size)
{
	static const ns_type types[] = { ns_t_a, ns_t_aaaa, ns_t_mx, ns_t_ptr, ns_t_txt };
	if (size < 1)
		return;
	ns_type type = types[data[0] % 5];
	SPF_dns_rr_t *rr = spf__dns_read(NULL, "fuzz.test", type, data + 1, (int)(size - 1), 600);
	CHECK(rr != NULL);
	CHECK(rr->herrno == NETDB_SUCCESS || rr->herrno == HOST_NOT_FOUND ||
	      rr->herrno == NO_DATA || rr->herrno == TRY_AGAIN);
	CHECK((rr->herrno == NETDB_SUCCESS) == (rr->num_rr > 0));
	CHECK(rr->ttl >= 0 && rr->ttl <= 600);
	for (int i = 0; i < rr->num_rr; i++) {
		CHECK(rr->rr[i] != NULL);
		if (type == ns_t_txt || type == ns_t_mx || type == ns_t_ptr) {
			const char *s = rr->rr[i]->txt; /* the union's char views */
			CHECK(memchr(s, '\0', rr->rr_buf_len[i]) != NULL);
			/* a TXT value is shorter than the message; a name may
			 * be longer (compression), never over NS_MAXDNAME */
			CHECK(strlen(s) < (type == ns_t_txt ? size : NS_MAXDNAME));
		}
	}
	SPF_dns_rr_free(rr);
}

/* A header field's lines: printable ASCII or TAB, CRLF TAB between them,
 * at most 998 bytes each, CRLF at the end. */
static void check_field(const char *f)
{
	size_t len = strlen(f), line = 0;
	CHECK(len >= 2 && f[len - 2] == '\r' && f[len - 1] == '\n');
	for (size_t i = 0; i + 2 < len; i++) {
		if (f[i] == '\r') {
			CHECK(f[i + 1] == '\n' && f[i + 2] == '\t');
			i++;
			line = 0;
			continue;
		}
		CHECK((f[i] >= ' ' && f[i] < 0x7f) || f[i] == '\t');
		CHECK(++line <= 998);
	}
}

static void fuzz_eval(const uint8_t *data, size_t size)
{
	if (size < 1)
		return;
	char *text = malloc(size);
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';

	SPF_dns_server_t *zone = SPF_dns_zone_new(NULL, "fuzz", 0);
	CHECK(zone != NULL);
	static const char *const owners[] = { "fuzz.test", "i1.fuzz.test", "i2.fuzz.test",
					      "i3.fuzz.test" };
	char *line = text;
	for (size_t i = 0; i < 4 && line != NULL; i++) {
		char *nl = strchr(line, '\n');
		if (nl != NULL)
			*nl = '\0';
		SPF_dns_zone_add_str(zone, owners[i], ns_t_txt, NETDB_SUCCESS, line);
		line = nl != NULL ? nl + 1 : NULL;
	}
	SPF_dns_zone_add_str(zone, "fuzz.test", ns_t_a, NETDB_SUCCESS, "192.0.2.1");
	SPF_dns_zone_add_str(zone, "fuzz.test", ns_t_aaaa, NETDB_SUCCESS, "2001:db8::1");
	SPF_dns_zone_add_str(zone, "fuzz.test", ns_t_mx, NETDB_SUCCESS, "10 mx.fuzz.test");
	SPF_dns_zone_add_str(zone, "mx.fuzz.test", ns_t_a, NETDB_SUCCESS, "192.0.2.2");
	SPF_dns_zone_add_str(zone, "1.2.0.192.in-addr.arpa", ns_t_ptr, NETDB_SUCCESS,
			     "fuzz.test");
	SPF_dns_zone_add_str(zone, "void.fuzz.test", ns_t_a, NO_DATA, NULL);

	struct spf__input in;
	memset(&in, 0, sizeof in);
	char helo[] = "helo.fuzz.test", from[] = "user@fuzz.test",
	     sender_helo[] = "postmaster@helo.fuzz.test", dom[] = "fuzz.test",
	     dom_helo[] = "helo.fuzz.test", id[] = "F", empty[] = "";
	if (data[0] & 2) {
		in.family = AF_INET6;
		inet_pton(AF_INET6, "2001:db8::1", &in.ip6);
		inet_ntop(AF_INET6, &in.ip6, in.ip, sizeof in.ip);
	} else {
		in.family = AF_INET;
		inet_pton(AF_INET, "192.0.2.1", &in.ip4);
		inet_ntop(AF_INET, &in.ip4, in.ip, sizeof in.ip);
	}
	in.helo = helo;
	in.id = id;
	if (data[0] & 4) { /* the null sender: HELO (helo.fuzz.test has no record) */
		in.identity = SPF_IDENTITY_HELO;
		in.mail_from = empty;
		in.sender = sender_helo;
		in.domain = dom_helo;
	} else {
		in.identity = SPF_IDENTITY_MAILFROM;
		in.mail_from = from;
		in.sender = from;
		in.domain = dom;
	}

	struct spf__limits lim = { SPF_CHECK_DNS_TERMS_DEFAULT, SPF_CHECK_VOID_LOOKUPS_DEFAULT };
	struct spf__eval ev;
	struct spf__outcome out;
	spf__eval_init(&ev, zone, &lim, 0, NULL, NULL);
	spf__evaluate(&ev, "mx.fuzz.test", &in, &out);
	spf__eval_deinit(&ev);

	CHECK(out.status <= SPF_PERMERROR);
	CHECK(out.terms <= lim.terms_max && out.voids <= lim.voids_max + 1);
	CHECK((out.problem[0] != '\0') ==
	      (out.status == SPF_TEMPERROR || out.status == SPF_PERMERROR));
	struct spf__texts t;
	spf__texts_build(&in, &out, "mx.fuzz.test", &t);
	check_field(t.received_spf);
	CHECK(strncmp(t.auth_results, "spf=", 4) == 0);
	for (const char *p = t.auth_results; *p != '\0'; p++)
		CHECK(*p > ' ' - 1 && *p < 0x7f);
	for (const char *p = t.comment; *p != '\0'; p++)
		CHECK(*p >= ' ' && *p < 0x7f);
	spf__texts_free(&t);
	SPF_dns_free(zone);
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (data[0] & 1)
		fuzz_eval(data + 1, size - 1);
	else
		fuzz_read(data + 1, size - 1);
	return 0;
}
