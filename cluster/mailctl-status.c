/* mailctl-status.c: `mailctl status`, the cluster on one screen (issue 12
 * item 6; being written). */
#include "mailctl-private.h"

int mailctl_status(mailctl *ctl, int argc, char **argv)
{
	(void)ctl;
	(void)argc;
	(void)argv;
	return -1;
}
