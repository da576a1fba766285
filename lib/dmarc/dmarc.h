/* dmarc.h: DMARC (RFC 7489) for received mail; library `maildmarc`
 * (libopendmarc 1.4.2 under it, lookups through lib/dns).
 *
 * Given the RFC5322.From domain, the SPF result and the domain SPF checked,
 * and the DKIM results (d= and pass/fail of each signature), a check
 *
 *   1. fetches the policy record, TXT _dmarc.<From domain>, with
 *      dns_resolve_txt() on the loop; when there is none (NXDOMAIN, NODATA,
 *      or no record starting "v=DMARC1"), TXT _dmarc.<organizational
 *      domain> (RFC 7489 6.6.3), if that is another domain;
 *   2. hands the one record found to libopendmarc
 *      (opendmarc_policy_store_dmarc: no DNS inside libopendmarc), which
 *      parses it; p, sp, adkim, aspf and pct are read back from it;
 *   3. decides alignment and the policy itself (see "libopendmarc" below),
 *      and answers with a struct dmarc_outcome.
 *
 * The organizational domain is the Public Suffix List's answer (the list
 * libopendmarc loads, DMARC_PSL_DEFAULT), lowercase: the registrable
 * domain, one label below the longest public suffix. A name under no
 * listed suffix (".test", ".internal", a typo) gets the list's default
 * rule "*" (RFC 7489 3.2 uses the PSL algorithm, whose default rule is
 * "*"): its last two labels. libopendmarc itself answers "" there, so
 * without that rule news.example.test would never find example.test's
 * record.
 *
 * Results (RFC 7489, RFC 8601 2.7.2):
 *   pass       an SPF pass or a DKIM pass aligned with the From domain;
 *   fail       a record applies and nothing aligned passed;
 *   none       no policy record (also: more than one at a name, which
 *              RFC 7489 6.6.3 says ends policy discovery);
 *   temperror  the record lookup failed temporarily, or nothing aligned
 *              passed while an SPF or DKIM check that would have aligned
 *              failed temporarily: ask again later, never reject (answer
 *              4xx when enforcing);
 *   permerror  a record that cannot be parsed (a bad p, sp, adkim, aspf,
 *              pct or v=), longer than max_record_bytes, or holding a
 *              NUL; or a From domain that cannot be one.
 * The disposition (what to do with the message) is none unless the result
 * is fail; then it is the policy, p for the From domain's own record,
 * sp (when given, else p) for a record found at the organizational domain
 * of a subdomain, made one step milder (reject -> quarantine -> none) for
 * the messages that pct= leaves out: each fail is in the sample with
 * probability pct/100 (RFC 7489 6.6.4), drawn from the checker's random
 * source.
 *
 * Alignment (RFC 7489 3.1): relaxed: the two domains have the same
 * organizational domain; strict: they are equal. Case-insensitive; one
 * trailing dot ignored.
 *
 * libopendmarc 1.4.2, why only part of it is used (the tests show each):
 *   - opendmarc_get_policy_to_enforce() finds strict alignment (adkim=s,
 *     aspf=s) aligned when the other domain is a subdomain of the From
 *     domain, and relaxed alignment with any parent of the From domain,
 *     public suffixes included (d=com aligns with example.com);
 *   - it ignores pct (a pct=0 record still says QUARANTINE) and temporary
 *     errors; it applies sp whenever an organizational domain was given;
 *   - a record with a bad sp/adkim/pct still yields p (only the store's
 *     status says so), "pct=abc" reads as pct=0, and "p=r" as reject;
 *   - its organizational domain lookup is case-sensitive and has no
 *     default rule (see above);
 *   - opendmarc_policy_library_init() succeeds on a PSL file it cannot
 *     open (checked here first).
 * So: the record is parsed by libopendmarc, and any status but OK is a
 * permerror; pct must be digits (checked here); alignment and the policy
 * are decided here, from libopendmarc's values and its PSL.
 *
 * libopendmarc keeps one PSL for the whole process
 * (opendmarc_policy_library_init: a global). dmarc_checker_create() loads
 * it on the first checker and every later checker must name the same file;
 * the last destroy frees it. That global is guarded by a mutex; everything
 * else belongs to each checker.
 *
 * Threads: a checker lives on one libuv loop; every call, and every
 * callback, on that loop's thread. The evaluation (parsing, PSL lookups)
 * takes microseconds and runs on the loop.
 */
#ifndef MAIL_DMARC_H
#define MAIL_DMARC_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "dns.h"

#define DMARC_PSL_DEFAULT "/usr/share/publicsuffix/public_suffix_list.dat"
#define DMARC_DOMAIN_MAX 253u

/* ---- settings (every row: default, min, max) ------------------------------- */

struct dmarc_settings {
	/* The Public Suffix List (Mozilla format). NULL: DMARC_PSL_DEFAULT.
	 * Copied. */
	const char *psl_path;
	/* Longest policy record handed to libopendmarc, in bytes; a longer
	 * one is a permerror (libopendmarc copies records into an 8 KiB
	 * buffer). Default 2048, 64..4096. */
	size_t max_record_bytes;
	/* Seed of the pct= sampling. 0 (default): from the system's CSPRNG.
	 * Tests give one to repeat a sequence. */
	uint64_t seed;
};

#define DMARC_RECORD_MAX_DEFAULT 2048u
#define DMARC_RECORD_MAX_MIN 64u
#define DMARC_RECORD_MAX_MAX 4096u

/* The defaults above. */
struct dmarc_settings dmarc_settings_default(void);

/* ---- inputs ------------------------------------------------------------------ */

/* An SPF or DKIM result as DMARC needs it. For SPF: pass; fail and softfail
 * are FAIL; neutral and none are NONE; temperror; permerror. */
enum dmarc_auth {
	DMARC_AUTH_NONE = 0,
	DMARC_AUTH_PASS,
	DMARC_AUTH_FAIL,
	DMARC_AUTH_TEMPERROR,
	DMARC_AUTH_PERMERROR,
};

/* One DKIM signature's result: its d= and what verifying it gave
 * (dkim-verify.h: pass -> PASS, fail -> FAIL, temperror -> TEMPERROR,
 * permerror -> PERMERROR, policy and neutral -> NONE). */
struct dmarc_dkim {
	const char *domain;
	enum dmarc_auth result;
};

/* Most DKIM results a request may carry. */
#define DMARC_DKIM_MAX 16u

/* What one message gives. Everything is borrowed during
 * dmarc_check_start() / dmarc_evaluate() only (copied there). */
struct dmarc_request {
	/* The RFC5322.From domain (the caller picks it from the one From
	 * field). */
	const char *from_domain;
	/* The SPF result and the domain it is for (the MAIL FROM domain, or
	 * the HELO name when MAIL FROM was empty); spf_domain NULL or ""
	 * when there is none. */
	enum dmarc_auth spf;
	const char *spf_domain;
	/* The DKIM results, at most DMARC_DKIM_MAX (more: the first ones). */
	const struct dmarc_dkim *dkim;
	size_t n_dkim;
};

/* ---- the outcome ---------------------------------------------------------------- */

enum dmarc_result {
	DMARC_RESULT_NONE = 0,
	DMARC_RESULT_PASS,
	DMARC_RESULT_FAIL,
	DMARC_RESULT_TEMPERROR,
	DMARC_RESULT_PERMERROR,
};

/* A policy, and what to do with a message. */
enum dmarc_disp {
	DMARC_DISP_NONE = 0,
	DMARC_DISP_QUARANTINE,
	DMARC_DISP_REJECT,
};

struct dmarc_outcome {
	enum dmarc_result result;
	/* What to do: the applied policy after pct (DMARC_DISP_NONE unless
	 * result is FAIL). */
	enum dmarc_disp disposition;
	/* The policy the record asks for here (p, or sp as said at the top),
	 * before pct; DMARC_DISP_NONE without a record. */
	enum dmarc_disp policy;
	int policy_is_sp;  /* policy came from sp= */
	int pct;           /* the record's pct (100 when absent); -1 without a parsed record */
	int sampled_out;   /* a fail that pct left out: disposition is milder */
	int dkim_aligned;  /* an aligned DKIM pass */
	int spf_aligned;   /* an aligned SPF pass */
	char adkim, aspf;  /* 'r' or 's' as the record says ('r' default); 0 without */
	/* The From domain (lowercase, for header.from), where the record was
	 * found ("" without one), and the From domain's organizational
	 * domain. */
	char from_domain[DMARC_DOMAIN_MAX + 1];
	char record_domain[DMARC_DOMAIN_MAX + 1];
	char org_domain[DMARC_DOMAIN_MAX + 1];
	/* Why, in a few words, for logs and the Authentication-Results
	 * comment (static): "aligned dkim pass", "no aligned pass", "no
	 * record", "dns temporary failure", "record syntax", ... */
	const char *reason;
};

/* "none", "pass", "fail", "temperror", "permerror" (RFC 8601 2.7.2). */
const char *dmarc_result_name(enum dmarc_result result);
/* "none", "quarantine", "reject". */
const char *dmarc_disp_name(enum dmarc_disp disp);

/* ---- the checker -------------------------------------------------------------- */

typedef struct dmarc_checker dmarc_checker;
typedef struct dmarc_check dmarc_check;

/* A checker on loop asking resolver (borrowed: it must outlive the
 * checker; destroy the checker first) with settings (NULL: the defaults).
 * The first checker of the process reads the PSL file (a blocking read of
 * ~230 KB: create checkers at start, not per message). MAIL_OK and
 * *checker_r; MAIL_ERR_PARAMS with *error_r (static) for a setting out of
 * range, or a psl_path other than the one loaded; MAIL_ERR_INTERNAL when
 * the PSL cannot be read. Loop thread. */
int dmarc_checker_create(uv_loop_t *loop, dns_resolver *resolver,
			 const struct dmarc_settings *settings, dmarc_checker **checker_r,
			 const char **error_r);

/* Destroy *checker and NULL it; NULL is fine. Checks still running are
 * cancelled: their callbacks never run. Loop thread. */
void dmarc_checker_destroy(dmarc_checker **checker);

/* The end of a check: outcome is borrowed, valid during the call. Runs on
 * the loop, never inside dmarc_check_start(). The check handle is invalid
 * from now on. */
typedef void dmarc_check_cb(const struct dmarc_outcome *outcome, void *arg);

/* Start checking req (copied). cb runs exactly once, later, unless the
 * check is cancelled or the checker destroyed first. Returns the check
 * (never NULL). Loop thread. */
dmarc_check *dmarc_check_start(dmarc_checker *checker, const struct dmarc_request *req,
			       dmarc_check_cb *cb, void *arg);

/* Withdraw a check and NULL *check (NULL is fine): its callback never
 * runs. Only before its callback started. Loop thread. */
void dmarc_check_cancel(dmarc_check **check);

/* The evaluation without DNS, for a record the caller already has (a
 * cache; tests): record[0..len) found at record_domain (the From domain
 * itself, or its organizational domain: then sp applies). record NULL:
 * no record (result none). Fills *out. Draws from the checker's random
 * source when pct < 100. Loop thread (any thread when the checker is not
 * used elsewhere at the same time). */
void dmarc_evaluate(dmarc_checker *checker, const struct dmarc_request *req,
		    const char *record, size_t len, const char *record_domain,
		    struct dmarc_outcome *out);

/* The organizational domain of domain (as at the top) into
 * out[DMARC_DOMAIN_MAX + 1], lowercase. 0, or -1 when domain is no domain
 * name (empty, too long, empty labels). Needs a checker to exist (the PSL
 * is loaded). */
int dmarc_org_domain(const char *domain, char *out);

/* ---- Authentication-Results ------------------------------------------------------ */

struct authres_method;
/* outcome as the dmarc method of an Authentication-Results field
 * (auth-results.h): dmarc=<result> (p=<policy> dis=<disposition>)
 * header.from=<from domain>. comment_buf[64] holds the comment; m points
 * into it and into outcome: compose while both live. */
void dmarc_outcome_authres(const struct dmarc_outcome *outcome, struct authres_method *m,
			   char *comment_buf, size_t comment_size);

#endif
