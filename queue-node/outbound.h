/* outbound.h: one message's remote recipients to their next hops (issue 10;
 * docs/outbound.md "Delivery").
 *
 * The queue primary gives outbound_deliver() a message and its remote
 * recipients that are not done; this module finds each recipient's next
 * hop, talks SMTP (lib/smtpc) and gives every recipient a result. It keeps
 * no state about messages between calls (the caller records outcomes in
 * the replicated log), only a pool of open sessions per destination.
 *
 * Routing, per recipient, first match wins (queue-config.h):
 *   a transport for the recipient's domain, the relay of the sender's
 *   tenant, the cluster's relay (each a URL: smtp:// opportunistic TLS,
 *   smtp+starttls:// TLS required; AUTH with the relay's credentials, over
 *   TLS only), else the recipient domain's MX (lib/dns): preference order,
 *   random among equal ones, implicit MX, each host's addresses in order,
 *   on port settings.mx_port. A null MX fails at once (5.1.10), a domain
 *   that does not exist too (5.1.2); a DNS failure defers (4.4.3).
 * Recipients with the same route share one transaction (at most
 * SMTPC_DEFAULT_MAX_RCPTS; more go in further transactions).
 *
 * Fallback: a connection refused or timed out, a TLS failure, or any
 * failure before the server answered MAIL FROM with 2xx (greeting, EHLO,
 * AUTH, MAIL 4xx) moves to the next address, then the next MX; when none
 * is left the recipients are deferred with the last reason. After MAIL is
 * accepted each recipient keeps its own answer: a 550 fails that one, a
 * 4xx defers it, the others are unaffected.
 *
 * Sessions: per destination (address, port, TLS policy, AUTH user) at most
 * max_conns sessions; a session that ends a transaction idle goes back to
 * the pool and carries the next message to that destination (up to
 * max_msgs_per_conn), and is closed after idle_ms without use.
 *
 * Loop thread only. No global state.
 */
#ifndef MAIL_QUEUE_OUTBOUND_H
#define MAIL_QUEUE_OUTBOUND_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "dns.h"
#include "smtpc.h"

#include "smtpc-url.h"

/* Every field: default, min, max. */
struct outbound_settings {
	const char *helo_name;       /* our EHLO name; required (copied) */
	unsigned mx_port;            /* remote MXs' port: 25, 1..65535 (--smtp-out-port) */
	unsigned max_conns;          /* sessions per destination: 4, 1..100 */
	unsigned max_msgs_per_conn;  /* messages per session: 100, 1..10000 */
	unsigned idle_ms;            /* an idle session is closed after: 5000, 0..600000 */
	enum smtpc_tls_policy tls;   /* toward MXs: SMTPC_TLS_MAY */
	struct smtpc_timeouts timeouts; /* zero fields: lib/smtpc's (RFC 5321) */
};

#define OUTBOUND_MAX_CONNS_DEFAULT 4u
#define OUTBOUND_MAX_CONNS_MAX 100u
#define OUTBOUND_MSGS_PER_CONN_DEFAULT 100u
#define OUTBOUND_MSGS_PER_CONN_MAX 10000u
#define OUTBOUND_IDLE_MS_DEFAULT 5000u
#define OUTBOUND_IDLE_MS_MAX 600000u

void outbound_settings_default(struct outbound_settings *set);

#define OUTBOUND_MTA_MAX 300u

struct outbound_rcpt {
	const char *addr;            /* in: the recipient */
	const char *dsn_params;      /* in: "NOTIFY=... ORCPT=..." or NULL */
	/* out: OK, TEMP or PERM with the reply or our reason */
	struct smtpc_result result;
	char remote_mta[OUTBOUND_MTA_MAX]; /* out: the host that answered; "" none */
};

struct outbound_msg {
	const char *queue_id;        /* for log lines */
	const char *mail_from;       /* "" null sender */
	const char *mail_params;     /* "RET=... ENVID=..." or NULL */
	const char *sender_domain;   /* whose tenant relay applies; "" none */
	const uint8_t *body;
	size_t body_len;
	int eight_bit, smtputf8;
	struct outbound_rcpt *rcpts;
	size_t n_rcpts;              /* at least 1 */
};

typedef struct outbound outbound;
typedef struct outbound_job outbound_job;

/* A next hop other than the MX (a transport or a relay). */
#define OUTBOUND_USER_MAX 256u
#define OUTBOUND_SECRET_MAX 1025u
struct outbound_route {
	struct smtpc_url url;
	char user[OUTBOUND_USER_MAX];       /* "" no AUTH */
	char password[OUTBOUND_SECRET_MAX]; /* wiped after use */
	const char *rule;                   /* "transport", "tenant_relay", "relay" (static) */
};
/* The route of rcpt_domain for mail of sender_domain: 1 with *r, 0 when
 * the MX applies, -1 when it cannot be known yet (the settings are not
 * loaded: the recipients are deferred, 4.3.0). Called on the loop, must
 * not block (queue-config.h's cache). */
typedef int outbound_route_fn(void *arg, const char *sender_domain, const char *rcpt_domain,
			      struct outbound_route *r);

/* Every recipient of msg has its result. */
typedef void outbound_done_cb(struct outbound_msg *msg, void *arg);

/* The TLS policy toward rcpt_domain's MXs (an enum smtpc_tls_policy), or
 * -1 for settings.tls. Same arg as the route. */
typedef int outbound_policy_fn(void *arg, const char *rcpt_domain);

/* resolver is borrowed and must outlive ob; route (NULL: MX only) and
 * policy (NULL: settings.tls everywhere) with their arg too. Returns 0, or
 * -1 with *error_r. */
int outbound_create(uv_loop_t *loop, const struct outbound_settings *set,
		    dns_resolver *resolver, outbound_route_fn *route, outbound_policy_fn *policy,
		    void *route_arg, outbound **ob_r, const char **error_r);
/* Close every session (those carrying a message end it deferred: their
 * jobs' callbacks run first, from inside this call). Run the loop once
 * more afterwards. NULLs *ob. */
void outbound_destroy(outbound **ob);

/* Deliver msg (borrowed, with everything it points to, until cb). cb runs
 * once, later, from the loop. Returns the job (for outbound_job_cancel). */
outbound_job *outbound_deliver(outbound *ob, struct outbound_msg *msg, outbound_done_cb *cb,
			       void *arg);
/* Stop caring about a job: its callback never runs; its sessions are
 * closed. NULLs *job. */
void outbound_job_cancel(outbound_job **job);

/* Sessions open now (busy and idle), for tests and metrics. */
size_t outbound_sessions(const outbound *ob);

#endif
