/* router-private.h: etcd key layout shared by router.c and member.c. */
#ifndef MAIL_ROUTER_PRIVATE_H
#define MAIL_ROUTER_PRIVATE_H

#include "router.h"

#define ROUTER_KEY_ROOT "/mail/v1/"
#define ROUTER_KEY_NODES ROUTER_KEY_ROOT "nodes/"
#define ROUTER_KEY_ALIVE ROUTER_KEY_ROOT "alive/"
#define ROUTER_KEY_RING ROUTER_KEY_ROOT "ring/"
/* The router watches [alive/, ring0): alive/, nodes/ and ring/ sort in that
 * order, and the directory's tenants/ and users/ sort after (not watched). */
#define ROUTER_WATCH_END ROUTER_KEY_ROOT "ring0"

/* Parse a role name ("queue", "store") at s, ending at '\0' or '/'.
 * Returns the role and sets *rest_r past the name (and the '/', if any),
 * or -1. */
int router__role_parse(const char *s, const char **rest_r);

#endif
