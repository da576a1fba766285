/* mailctl-dns.c: `mailctl dns DOMAIN` and `mailctl dns check DOMAIN`
 * (issue 12 item 2). Placeholder: being written. */
#include "mailctl-private.h"

int mailctl_dns(mailctl *ctl, int argc, char **argv)
{
	(void)ctl;
	(void)argc;
	(void)argv;
	return -1;
}
