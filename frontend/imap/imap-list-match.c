/* imap-list-match.c: see imap-list-match.h.
 *
 * Dynamic programming over one row of the name: row[j] is 1 when the
 * pattern read so far matches name[0..j). Consecutive '*' and '%' are
 * folded ('**' is '*', '%*' and '*%' are '*', '%%' is '%') so that a
 * pattern of wildcards costs one row each.
 */
#include "imap-list-match.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "xalloc.h"

static int imap_list_char_eq(char pc, char nc, int icase)
{
	if (!icase)
		return pc == nc;
	if (pc >= 'a' && pc <= 'z')
		pc = (char)(pc - 'a' + 'A');
	if (nc >= 'a' && nc <= 'z')
		nc = (char)(nc - 'a' + 'A');
	return pc == nc;
}

int imap_list_match(const char *pattern, const char *name)
{
	size_t k = strlen(name);
	/* the first level "INBOX" of a name is compared without case */
	size_t icase_len = strncasecmp(name, "INBOX", 5) == 0 &&
					   (name[5] == '\0' || name[5] == '/')
				   ? 5
				   : 0;
	uint8_t small[2][256];
	uint8_t *row, *next;
	if (k + 1 <= sizeof(small[0])) {
		row = small[0];
		next = small[1];
	} else {
		row = xmalloc(k + 1);
		next = xmalloc(k + 1);
	}
	memset(row, 0, k + 1);
	row[0] = 1;
	for (const char *p = pattern; *p != '\0'; p++) {
		char pc = *p;
		if (pc == '*' || pc == '%') {
			/* fold a run of wildcards: '*' if any of them is */
			while (p[1] == '*' || p[1] == '%') {
				if (p[1] == '*')
					pc = '*';
				p++;
			}
			next[0] = row[0];
			for (size_t j = 1; j <= k; j++)
				next[j] = row[j] ||
					  (next[j - 1] && (pc == '*' || name[j - 1] != '/'));
		} else {
			next[0] = 0;
			for (size_t j = 1; j <= k; j++)
				next[j] = row[j - 1] &&
					  imap_list_char_eq(pc, name[j - 1], j - 1 < icase_len);
		}
		uint8_t *t = row;
		row = next;
		next = t;
	}
	int matched = row[k];
	if (row != small[0] && row != small[1]) {
		free(row);
		free(next);
	}
	return matched;
}
