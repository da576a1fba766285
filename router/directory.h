/* directory.h: the tenant directory in etcd (public contract).
 *
 *   /mail/v1/tenants/<domain>           {"created":<ms>, "outbound_per_hour":N,
 *                                        "delay_warning":bool, "spf":"record", ...
 *                                        (directory_tenant_settings)}
 *   /mail/v1/users/<domain>/<local>     {"hash":"$argon2id$...","created":<ms>,
 *                                        "scram":{"salt":b64,"i":4096,
 *                                                 "stored":b64,"server":b64},
 *                                        "state":"disabled"|"deleting" (absent:
 *                                        active),
 *                                        "quota":{"storage":N,"messages":N}
 *                                        (absent: no limit; issue 12)}
 *
 * Domains and addresses are normalised (lowercase, util_address_normalize())
 * before use. Passwords are stored only as argon2id hashes from libsodium's
 * crypto_pwhash_str (interactive limits) and as SCRAM-SHA-256 StoredKey and
 * ServerKey (RFC 5802, lib/sasl.h: a random 16-byte salt per password,
 * SASL_SCRAM_ITERATIONS); plaintext is wiped after use. Records written
 * before SCRAM have no "scram" object until the next passwd.
 *
 * A tenant record's settings are optional fields (absent: the default);
 * readers ignore fields they do not know, and writers keep them, so a
 * record written by a newer mailctl still reads here and survives a set.
 *
 * Every call may block on etcd (and, for passwords, on ~100 ms of
 * hashing), even with the cache (directory_cache_start()): daemons call
 * them from the libuv thread pool, never from the loop thread.
 * A directory object is thread-safe (an internal mutex serialises its
 * etcd handle).
 *
 * Returns: enum mail_error values (lib/mail-error.h), 0 = MAIL_OK;
 * MAIL_ERR_UNAVAILABLE when etcd cannot be reached.
 */
#ifndef MAIL_DIRECTORY_H
#define MAIL_DIRECTORY_H

#include <stddef.h>
#include <stdint.h>

struct sasl_scram_keys;
typedef struct directory directory;

struct etcd_conf;
/* A directory on etcd (conf: how to reach it and as whom; copied). */
directory *directory_create(const struct etcd_conf *etcd);
void directory_destroy(directory **dir);
/* Count this directory's etcd writes in stats (etcd.h; borrowed, must
 * outlive dir; NULL: not counted). Call before any other use. */
struct etcd_stats;
void directory_set_etcd_stats(directory *dir, struct etcd_stats *stats);

/* Keep the directory in memory (router/directory-cache.h): lookups
 * (tenants, users, aliases, domain aliases, authentication) read the copy
 * an etcd watch keeps current, and etcd itself only while the copy is not
 * live (loading, or a watch lost or lagging: then reads go to etcd until
 * it is loaded again). A negative answer from the copy (no such user or
 * alias, a refused password, a disabled user, a suspended tenant) is read
 * again from etcd before it is given, so a change made a moment ago is
 * never refused; a positive one may be as old as the watch's delay (a few
 * ms; about two check intervals when a watch stalls on a change of the
 * number of keys, one resync interval when it stalls on a change of an
 * existing key). Writes always go to etcd. For daemons on the hot path
 * (frontends); mailctl does not use it. check_ms: the revision check's
 * interval (0: 1000); resync_ms: the full reload's (0: 5 min). Call once,
 * before the directory is shared. */
void directory_cache_start(directory *dir, unsigned check_ms, unsigned resync_ms);
struct directory_cache_stats {
	int live;            /* the copy is used */
	uint64_t keys;       /* keys held */
	uint64_t hits;       /* reads answered from the copy */
	uint64_t fallbacks;  /* reads sent to etcd while not live */
	uint64_t confirms;   /* negative answers read again from etcd */
	uint64_t loads;      /* full loads (the first included) */
	uint64_t lags;       /* revision checks that found a stalled watch */
	uint64_t watch_lost; /* watches that ended unasked */
};
/* 0 with *st filled, or -1 when the directory has no cache. */
int directory_cache_stats(directory *dir, struct directory_cache_stats *st);

/* MAIL_ERR_PARAMS for an invalid domain, MAIL_ERR_EXISTS if present. */
int directory_tenant_add(directory *dir, const char *domain);
/* Sorted domains; the caller frees each string and the array. */
int directory_tenant_list(directory *dir, char ***domains_r, size_t *n_r);
/* MAIL_OK if the domain is a tenant, MAIL_ERR_NOT_FOUND if not. */
int directory_tenant_exists(directory *dir, const char *domain);
/* Remove a tenant with no user left: its record, its aliases and the
 * domain aliases naming it (*aliases_r: how many of both went, may be
 * NULL). MAIL_ERR_NOT_FOUND, MAIL_ERR_EXISTS while it has users (mailctl
 * tenant del --purge deletes them first). */
int directory_tenant_del(directory *dir, const char *domain, size_t *aliases_r);

/* A tenant's settings (docs/rate-limits.md, docs/dsn.md, docs/inbound.md). */
#define DIRECTORY_OUTBOUND_PER_HOUR_MAX 1000000u
/* SPF of inbound mail: not checked, recorded in Authentication-Results
 * (default), or a hard fail refused with 550 5.7.23. */
enum directory_spf_policy { DIRECTORY_SPF_RECORD = 0, DIRECTORY_SPF_OFF, DIRECTORY_SPF_REJECT };
/* DMARC of inbound mail: not checked, recorded (default), or enforced
 * (p=reject: 550 5.7.1 at the end of DATA; p=quarantine: into Junk). */
enum directory_dmarc_policy {
	DIRECTORY_DMARC_RECORD = 0,
	DIRECTORY_DMARC_OFF,
	DIRECTORY_DMARC_ENFORCE,
};
/* A client without PTR or forward-confirmed reverse DNS: recorded only
 * (default), refused (550 5.7.25), or greylisted. */
enum directory_ptr_policy { DIRECTORY_PTR_RECORD = 0, DIRECTORY_PTR_REJECT, DIRECTORY_PTR_GREYLIST };
#define DIRECTORY_GREYLIST_DELAY_DEFAULT 300u
#define DIRECTORY_GREYLIST_DELAY_MIN 1u
#define DIRECTORY_GREYLIST_DELAY_MAX 86400u
/* dnsbl=: comma-separated DNS zones, at most this many and this long. */
#define DIRECTORY_DNSBL_ZONES_MAX 8u
#define DIRECTORY_DNSBL_MAX 512u
#define DIRECTORY_ADDRESS_MAX 320u
struct directory_tenant_settings {
	/* Messages with at least one recipient outside our tenants that one
	 * authenticated user may submit per sliding hour; 0: no limit, else
	 * 1..DIRECTORY_OUTBOUND_PER_HOUR_MAX. Default 0. */
	unsigned outbound_per_hour;
	/* 1: a "delayed" DSN once a submitted message is still undelivered
	 * after the delay-warning time (EnqueueRequest.delay_warning). Default 0. */
	int delay_warning;
	/* When the tenant was added (ms since the epoch; 0 if unknown). Read
	 * only: _set ignores it. */
	int64_t created_ms;
	/* Inbound trust (docs/inbound.md); every default is the zero value. */
	enum directory_spf_policy spf;       /* spf=off|record|reject */
	enum directory_dmarc_policy dmarc;   /* dmarc=off|record|enforce */
	enum directory_ptr_policy ptr;       /* ptr=record|reject|greylist */
	int greylisting;                     /* greylisting=on|off (default off) */
	unsigned greylist_delay;             /* greylist_delay=SECONDS; 0 reads as the default */
	char dnsbl[DIRECTORY_DNSBL_MAX + 1]; /* dnsbl=ZONE,ZONE (DNSBL of the client) */
	char rhsbl[DIRECTORY_DNSBL_MAX + 1]; /* rhsbl=ZONE,ZONE (of the sender's domain) */
	int spam;                            /* spam=on|off: rspamd's verdict (default on:
					      * it applies when the frontends run --rspamd) */
	/* postmaster=ADDRESS: where postmaster@<tenant> goes when no user or
	 * alias of that name exists; "" (default): the tenant's first user. */
	char postmaster[DIRECTORY_ADDRESS_MAX + 1];
	/* suspended=on|off (mailctl tenant suspend|resume): its users cannot
	 * log in or submit, and mail to it is deferred (450 4.2.1) until it
	 * is resumed. Default off. */
	int suspended;
	/* max_users=N: users the tenant may have (user add refuses past it:
	 * MAIL_ERR_LIMIT); 0 (default): no limit; at most
	 * DIRECTORY_MAX_USERS_MAX. */
	unsigned max_users;
	/* issue 12, the tenant's quota (docs/operations.md, "Quotas"): the
	 * sum of its users' usage may not pass them. quota_storage=SIZE
	 * (octets; K/M/G/T suffixes, 1024-based; 0 or "unlimited": none),
	 * quota_messages=N (0: none). Default none. */
	uint64_t quota_storage;
	unsigned quota_messages;
	/* tenant_outbound_per_hour=N: messages to outside recipients that all
	 * of the tenant's users together may submit per sliding hour, counted
	 * per frontend process (N frontends: up to N x this); 0 (default): no
	 * limit, else 1..DIRECTORY_TENANT_OUTBOUND_PER_HOUR_MAX. */
	unsigned tenant_outbound_per_hour;
};
#define DIRECTORY_MAX_USERS_MAX 10000000u
#define DIRECTORY_TENANT_OUTBOUND_PER_HOUR_MAX 100000000u
/* The largest storage quota (1 EiB): past it a SIZE is refused. */
#define DIRECTORY_QUOTA_STORAGE_MAX (1ull << 60)
#define DIRECTORY_QUOTA_MESSAGES_MAX 4294967295u
/* Which fields directory_tenant_settings_set() writes. */
enum directory_tenant_field {
	DIRECTORY_TENANT_OUTBOUND_PER_HOUR = 1u << 0,
	DIRECTORY_TENANT_DELAY_WARNING = 1u << 1,
	DIRECTORY_TENANT_SPF = 1u << 2,
	DIRECTORY_TENANT_DMARC = 1u << 3,
	DIRECTORY_TENANT_PTR = 1u << 4,
	DIRECTORY_TENANT_GREYLISTING = 1u << 5,
	DIRECTORY_TENANT_GREYLIST_DELAY = 1u << 6,
	DIRECTORY_TENANT_DNSBL = 1u << 7,
	DIRECTORY_TENANT_RHSBL = 1u << 8,
	DIRECTORY_TENANT_SPAM = 1u << 9,
	DIRECTORY_TENANT_POSTMASTER = 1u << 10,
	DIRECTORY_TENANT_SUSPENDED = 1u << 11,
	DIRECTORY_TENANT_MAX_USERS = 1u << 12,
	DIRECTORY_TENANT_QUOTA_STORAGE = 1u << 13,
	DIRECTORY_TENANT_QUOTA_MESSAGES = 1u << 14,
	DIRECTORY_TENANT_OUTBOUND_TENANT = 1u << 15,
};
/* A SIZE of `mailctl quota set --storage` and quota_storage=: decimal
 * octets, or with a K, M, G or T suffix (any case, 1024-based: 10M is
 * 10485760), or "unlimited" (= 0, no limit); at most
 * DIRECTORY_QUOTA_STORAGE_MAX. 0 with *bytes_r, or -1. */
int directory_size_parse(const char *text, uint64_t *bytes_r);
/* One "KEY=VALUE" of `mailctl tenant set` into *settings, its field bit
 * into *fields: outbound_per_hour=N, delay_warning=on|off, spf=, dmarc=,
 * ptr=, greylisting=, greylist_delay=, dnsbl=, rhsbl=, spam=, postmaster=
 * (docs/inbound.md). 0, or -1 with *error_r (static) naming what is
 * wrong. */
int directory_tenant_setting_parse(const char *kv, struct directory_tenant_settings *settings,
				   unsigned *fields, const char **error_r);
/* The settings as "key=value" lines, every key, defaults included (what
 * `mailctl tenant show` prints), appended to out (a NUL-terminated heap
 * string the caller frees). */
char *directory_tenant_settings_format(const struct directory_tenant_settings *settings);
/* The settings as a JSON object text, every key (what `mailctl tenant show
 * --json` prints beside the domain); the caller frees it. */
char *directory_tenant_settings_json(const struct directory_tenant_settings *settings);
/* The names of the policy values, for logs and show. */
const char *directory_spf_policy_name(enum directory_spf_policy p);
const char *directory_dmarc_policy_name(enum directory_dmarc_policy p);
const char *directory_ptr_policy_name(enum directory_ptr_policy p);
/* The settings of tenant domain into *settings_r: defaults for absent
 * fields; a field of the wrong type or out of range is logged
 * (event=tenant_setting_bad) and read as its default. MAIL_OK;
 * MAIL_ERR_NOT_FOUND for an invalid or unknown domain; MAIL_ERR_INTERNAL
 * when the record is not a JSON object (logged). */
int directory_tenant_settings_get(directory *dir, const char *domain,
				  struct directory_tenant_settings *settings_r);
/* Write the fields of settings named in fields (enum directory_tenant_field
 * bits) into the tenant's record, keeping every other field (a
 * compare-and-swap: a concurrent writer's change is not lost). MAIL_OK;
 * MAIL_ERR_PARAMS for a value out of range or no fields;
 * MAIL_ERR_NOT_FOUND for an invalid or unknown domain; MAIL_ERR_TEMP when
 * the record kept changing under us. */
int directory_tenant_settings_set(directory *dir, const char *domain,
				  const struct directory_tenant_settings *settings,
				  unsigned fields);

/* MAIL_ERR_PARAMS (bad address or empty password), MAIL_ERR_NOT_FOUND (no
 * such tenant), MAIL_ERR_EXISTS (duplicate user), MAIL_ERR_LIMIT (the
 * tenant's max_users reached). Stores the argon2id
 * hash and the SCRAM keys. */
int directory_user_add(directory *dir, const char *address, const char *password);
/* MAIL_ERR_NOT_FOUND when the user does not exist. Replaces the hash and
 * the SCRAM keys (a new salt), keeping "created". */
int directory_user_passwd(directory *dir, const char *address, const char *password);
int directory_user_del(directory *dir, const char *address);

/* A user's state (mailctl user disable|enable|del): a disabled user cannot
 * log in (every mechanism) and mail to it is refused (550 5.2.1); a user
 * being deleted (its mailbox being erased) is disabled too. */
enum directory_user_state {
	DIRECTORY_USER_ACTIVE = 0,
	DIRECTORY_USER_DISABLED,
	DIRECTORY_USER_DELETING,
};
const char *directory_user_state_name(enum directory_user_state st);
/* A quota (issue 12): 0 = no limit of that kind. */
struct directory_quota {
	uint64_t storage;                 /* octets */
	uint64_t messages;
};
struct directory_user_info {
	int64_t created_ms;               /* 0 if unknown */
	enum directory_user_state state;
	int scram;                        /* SCRAM keys stored */
	/* the record's "quota":{"storage":N,"messages":N} (absent: zeros) */
	struct directory_quota quota;
};
/* Which limits directory_user_quota_set() writes. */
#define DIRECTORY_QUOTA_STORAGE 1u
#define DIRECTORY_QUOTA_MESSAGES 2u
/* Set the user's quota fields named by `fields` (a compare-and-swap of the
 * record, other fields kept; a limit of 0 removes it). MAIL_ERR_NOT_FOUND
 * for an unknown user. */
int directory_user_quota_set(directory *dir, const char *address,
			     const struct directory_quota *quota, unsigned fields);
/* The limits that apply to address: its own (*user_r) and its tenant's
 * (*tenant_r); a message is refused when either would be passed. Two
 * etcd reads. MAIL_OK, MAIL_ERR_NOT_FOUND (no such user), or
 * MAIL_ERR_UNAVAILABLE / INTERNAL. */
int directory_quota_get(directory *dir, const char *address, struct directory_quota *user_r,
			struct directory_quota *tenant_r);
/* MAIL_OK with *info_r, MAIL_ERR_NOT_FOUND, MAIL_ERR_INTERNAL (a bad
 * record). */
int directory_user_info(directory *dir, const char *address, struct directory_user_info *info_r);
/* Set the state (a compare-and-swap of the record, other fields kept).
 * MAIL_ERR_NOT_FOUND when the user does not exist. */
int directory_user_state_set(directory *dir, const char *address,
			     enum directory_user_state state);
/* May this user log in now (it exists, is active, its tenant is not
 * suspended)? MAIL_OK or MAIL_ERR_PERM, or MAIL_ERR_UNAVAILABLE. Two
 * reads, no hashing: what a login answered from a cache asks. */
int directory_user_active(directory *dir, const char *address);
/* Sorted full addresses of the tenant's users; MAIL_ERR_NOT_FOUND for an
 * unknown tenant. The caller frees each string and the array. */
int directory_user_list(directory *dir, const char *domain, char ***addresses_r, size_t *n_r);
/* Does this (normalised) address name an existing user? MAIL_OK or
 * MAIL_ERR_NOT_FOUND. */
int directory_user_exists(directory *dir, const char *address);
/* ---- app passwords (mailctl user app-password; docs/operations.md) ----------
 *
 * Generated, never chosen: "k7h3-m9x2-b8dw-q4zt" (80 random bits; the
 * first group is its id), shown once, valid wherever a password is (IMAP
 * LOGIN and AUTHENTICATE PLAIN, POP3, SMTP AUTH PLAIN/LOGIN) but SCRAM,
 * whose keys come from the account password. Stored as BLAKE2b of the
 * password: checking one costs no argon2id. */
#define DIRECTORY_APP_PASSWORD_LEN 19u
#define DIRECTORY_APP_PASSWORDS_MAX 20u
#define DIRECTORY_APP_PASSWORD_NAME_MAX 64u
struct directory_app_password {
	char id[5];
	char name[DIRECTORY_APP_PASSWORD_NAME_MAX + 1];
	int64_t created_ms;
};
/* A new app password called name (1..64 printable bytes, unique per user)
 * into pw_r, its id into id_r. MAIL_ERR_NOT_FOUND, MAIL_ERR_EXISTS (the
 * name), MAIL_ERR_LIMIT (DIRECTORY_APP_PASSWORDS_MAX), MAIL_ERR_PARAMS. */
int directory_app_password_add(directory *dir, const char *address, const char *name,
			       char pw_r[DIRECTORY_APP_PASSWORD_LEN + 1], char id_r[5]);
/* Revoke by id or name: MAIL_ERR_NOT_FOUND when neither names one. */
int directory_app_password_revoke(directory *dir, const char *address, const char *id_or_name);
/* The user's app passwords (never their secrets); free *list_r. */
int directory_app_password_list(directory *dir, const char *address,
				struct directory_app_password **list_r, size_t *n_r);
/* 1 when pw has an app password's shape (not whether it is one). */
int directory_app_password_shaped(const char *pw);

/* MAIL_OK when the password (the account's, or one of its app passwords)
 * matches, MAIL_ERR_PERM when the user does not
 * exist, the password is wrong, the user is disabled or its tenant
 * suspended (indistinguishable on purpose; the log says which). */
int directory_authenticate(directory *dir, const char *address, const char *password);
/* The user's stored SCRAM-SHA-256 keys into *keys_r (struct of lib/sasl.h,
 * for sasl_server_scram_keys()). MAIL_OK; MAIL_ERR_NOT_FOUND for an invalid
 * address, an unknown user, or a user without SCRAM keys (added before
 * they were stored: the next directory_user_passwd() adds them); either
 * way the caller goes on with sasl_server_scram_unknown(), so a client
 * cannot tell. A disabled user, or one of a suspended tenant, has none
 * (NOT_FOUND). MAIL_ERR_INTERNAL for a malformed record (logged). */
int directory_user_scram(directory *dir, const char *address, struct sasl_scram_keys *keys_r);


/* ---- addresses a tenant receives on (docs/inbound.md) ------------------------
 *
 *   /mail/v1/aliases/<domain>/<local>   {"targets":["a@x","b@y",...]}
 *   /mail/v1/aliases/<domain>/@         the domain's catch-all
 *   /mail/v1/domain-aliases/<alias>     {"target":"<tenant domain>"}
 *
 * An alias with several targets is a list. Targets are local addresses
 * (resolved again: an alias may name an alias) or outside addresses
 * (forwarded, the envelope sender rewritten with SRS by the frontend). */
#define DIRECTORY_ALIAS_TARGETS_MAX 1000u  /* targets of one alias, and of one expansion */
#define DIRECTORY_ALIAS_DEPTH_MAX 8u       /* aliases through aliases */

/* Add targets to alias ("local@domain", or "@domain" for the catch-all;
 * domain a tenant or one of its domain aliases' names is refused: aliases
 * live on the tenant). Targets already there are kept once. MAIL_OK;
 * MAIL_ERR_PARAMS (a bad address, no targets, over the maximum);
 * MAIL_ERR_NOT_FOUND (domain is not a tenant). */
int directory_alias_add(directory *dir, const char *alias, const char *const *targets,
			size_t n);
/* Remove target from alias, or (target NULL) the whole alias; an alias
 * left without targets goes. MAIL_ERR_NOT_FOUND when there was nothing to
 * remove. */
int directory_alias_del(directory *dir, const char *alias, const char *target);
struct directory_alias {
	char *alias;     /* "local@domain" or "@domain" */
	char **targets;
	size_t n_targets;
};
/* The tenant's aliases, sorted (catch-all first). Free with
 * directory_aliases_free(). MAIL_ERR_NOT_FOUND for an unknown tenant. */
int directory_alias_list(directory *dir, const char *domain, struct directory_alias **aliases_r,
			 size_t *n_r);
void directory_aliases_free(struct directory_alias *aliases, size_t n);

/* alias_domain (not a tenant) becomes another name of target_domain (a
 * tenant): x@alias_domain is x@target_domain. MAIL_ERR_EXISTS when
 * alias_domain is a tenant or already an alias; MAIL_ERR_NOT_FOUND when
 * target_domain is no tenant; MAIL_ERR_PARAMS for a bad domain. */
int directory_domain_alias_add(directory *dir, const char *alias_domain,
			       const char *target_domain);
int directory_domain_alias_del(directory *dir, const char *alias_domain);
/* "alias target" lines, sorted; the caller frees each and the array. */
int directory_domain_alias_list(directory *dir, char ***lines_r, size_t *n_r);

/* Where mail to one recipient goes. */
struct directory_route {
	char *address;  /* a user of ours (normalised), or an outside address */
	int external;   /* outside our tenants: forwarded */
	char *folder;   /* the subaddress' folder ("tag" of user+tag), or NULL */
	/* a user of ours: its own quota as its record says (issue 12) */
	struct directory_quota quota;
};
struct directory_rcpt {
	/* The tenant the address belongs to (after a domain alias), or NULL
	 * when the domain is none of ours. */
	char *tenant;
	struct directory_tenant_settings settings; /* of tenant */
	struct directory_route *routes;
	size_t n_routes;
	int via_alias;  /* reached through an alias, list, catch-all or postmaster */
};
/* Resolve a recipient: domain aliases, the user itself, an alias of that
 * name, user+tag (the user or alias "user", folder "tag"), postmaster
 * (postmaster=, else the tenant's first user), the catch-all; aliases
 * expanded through aliases (at most DIRECTORY_ALIAS_DEPTH_MAX deep and
 * DIRECTORY_ALIAS_TARGETS_MAX routes, duplicates once). address
 * "postmaster" without a domain is the postmaster of default_domain
 * (NULL: none, not found). MAIL_OK with at least one route;
 * MAIL_ERR_NOT_FOUND: r->tenant NULL (not our domain) or set (no such
 * address); MAIL_ERR_PERM: the address is a disabled user (550 5.2.1; an
 * alias's disabled target is skipped); MAIL_ERR_TEMP: the tenant is
 * suspended (450 4.2.1); MAIL_ERR_LIMIT: an alias loop or too many routes;
 * MAIL_ERR_UNAVAILABLE. Free r with directory_rcpt_free() whatever the
 * result. */
int directory_rcpt_resolve(directory *dir, const char *address, const char *default_domain,
			   struct directory_rcpt *r);
void directory_rcpt_free(struct directory_rcpt *r);

#endif
