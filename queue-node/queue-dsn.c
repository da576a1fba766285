/* queue-dsn.c: the DSN fields of a queued envelope (queue-dsn.h). */
#include "queue-dsn.h"

#include <stdio.h>
#include <string.h>

#include "log.h"

void queue_dsn_mail(const Queue__EnqueueRequest *env, struct dsn_mail_params *p)
{
	dsn_mail_params_init(p);
	if (env->ret == QUEUE__DSN_RET__RET_FULL)
		p->ret = DSN_RET_FULL;
	else if (env->ret == QUEUE__DSN_RET__RET_HDRS)
		p->ret = DSN_RET_HDRS;
	if (env->envid != NULL && env->envid[0] != '\0' &&
	    strlen(env->envid) <= DSN_ENVID_MAX) {
		p->has_envid = 1;
		strcpy(p->envid, env->envid);
	}
}

/* An ORCPT addr-type as lib/dsn keeps it: lower case, rfc822 and utf-8
 * understood. */
static enum dsn_addr_type queue_dsn__kind(const char *type)
{
	if (strcmp(type, "rfc822") == 0)
		return DSN_ADDR_RFC822;
	if (strcmp(type, "utf-8") == 0)
		return DSN_ADDR_UTF8;
	return DSN_ADDR_OTHER;
}

void queue_dsn_rcpt(const Queue__EnqueueRequest *env, size_t i, struct dsn_rcpt_params *p)
{
	dsn_rcpt_params_init(p);
	if (i < env->n_notify)
		p->notify = env->notify[i] & (DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE |
					      DSN_NOTIFY_DELAY | DSN_NOTIFY_NEVER);
	if (i >= env->n_orcpt || env->orcpt[i] == NULL)
		return;
	const Queue__Orcpt *o = env->orcpt[i];
	if (o->addr_type == NULL || o->addr == NULL || o->addr_type[0] == '\0' ||
	    o->addr[0] == '\0' || strlen(o->addr_type) > DSN_ADDR_TYPE_MAX ||
	    strlen(o->addr) > DSN_ORCPT_MAX)
		return;
	p->orcpt.kind = queue_dsn__kind(o->addr_type);
	strcpy(p->orcpt.type, o->addr_type);
	strcpy(p->orcpt.addr, o->addr);
}

/* No control characters (C0, DEL): the text goes into header fields. */
static int queue_dsn__clean(const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return 0;
	}
	return 1;
}

int queue_dsn_check(const Queue__EnqueueRequest *env, const char **why_r)
{
	if (env->ret != QUEUE__DSN_RET__RET_UNSPECIFIED && env->ret != QUEUE__DSN_RET__RET_FULL &&
	    env->ret != QUEUE__DSN_RET__RET_HDRS) {
		*why_r = "bad DSN RET";
		return -1;
	}
	if (env->envid != NULL &&
	    (strlen(env->envid) > DSN_ENVID_MAX || !queue_dsn__clean(env->envid))) {
		*why_r = "bad DSN ENVID";
		return -1;
	}
	if (env->n_notify != 0 && env->n_notify != env->n_rcpt_to) {
		*why_r = "DSN NOTIFY not one per recipient";
		return -1;
	}
	for (size_t i = 0; i < env->n_notify; i++) {
		uint32_t n = env->notify[i];
		if ((n & ~(uint32_t)(DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE | DSN_NOTIFY_DELAY |
				     DSN_NOTIFY_NEVER)) != 0 ||
		    ((n & DSN_NOTIFY_NEVER) && n != DSN_NOTIFY_NEVER)) {
			*why_r = "bad DSN NOTIFY";
			return -1;
		}
	}
	if (env->n_orcpt != 0 && env->n_orcpt != env->n_rcpt_to) {
		*why_r = "DSN ORCPT not one per recipient";
		return -1;
	}
	for (size_t i = 0; i < env->n_orcpt; i++) {
		const Queue__Orcpt *o = env->orcpt[i];
		const char *type = o != NULL && o->addr_type != NULL ? o->addr_type : "";
		const char *addr = o != NULL && o->addr != NULL ? o->addr : "";
		if ((type[0] == '\0') != (addr[0] == '\0') || strlen(type) > DSN_ADDR_TYPE_MAX ||
		    strlen(addr) > DSN_ORCPT_MAX || !queue_dsn__clean(type) ||
		    strchr(type, '\t') != NULL || strchr(addr, '\t') != NULL ||
		    !queue_dsn__clean(addr)) {
			*why_r = "bad DSN ORCPT";
			return -1;
		}
	}
	return 0;
}

const char *queue_dsn_log_fields(const Queue__EnqueueRequest *env, char *out, size_t size)
{
	size_t n = 0, notify = 0, orcpt = 0;
	out[0] = '\0';
	for (size_t i = 0; i < env->n_notify; i++)
		notify += env->notify[i] != 0;
	for (size_t i = 0; i < env->n_orcpt; i++)
		orcpt += env->orcpt[i] != NULL && env->orcpt[i]->addr_type != NULL &&
			 env->orcpt[i]->addr_type[0] != '\0';
	if (env->ret == QUEUE__DSN_RET__RET_FULL || env->ret == QUEUE__DSN_RET__RET_HDRS)
		n += (size_t)snprintf(out + n, n < size ? size - n : 0, " ret=%s",
				      env->ret == QUEUE__DSN_RET__RET_FULL ? "full" : "hdrs");
	if (env->envid != NULL && env->envid[0] != '\0') {
		char q[2 * DSN_ENVID_MAX + 8];
		n += (size_t)snprintf(out + n, n < size ? size - n : 0, " envid=%s",
				      log_quote(q, sizeof q, env->envid, strlen(env->envid)));
	}
	if (notify > 0)
		n += (size_t)snprintf(out + n, n < size ? size - n : 0, " notify=%zu", notify);
	if (orcpt > 0)
		snprintf(out + n, n < size ? size - n : 0, " orcpt=%zu", orcpt);
	return out;
}
