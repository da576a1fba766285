/* search-key.h: an IMAP search program (RFC 3501 6.4.4, RFC 9051 6.4.4,
 * RFC 7162 MODSEQ) as a plain tree, shared by the IMAP engine (which
 * parses SEARCH, SORT and THREAD into it), the store backend (which sends
 * it to a store node as store.proto's SearchKey) and the store node (which
 * evaluates it: store-node/mailsearch.h).
 *
 * The engine resolves everything that is session state before the program
 * leaves it: sequence sets become UID ranges, \Recent and NEW match
 * nothing (this server has no \Recent, as RFC 9051 allows), OLD matches
 * everything, $ (SEARCHRES) is expanded. So a program means the same
 * thing on any node, for any session.
 *
 * Ownership: a tree is built and freed by whoever made it; strings and
 * arrays are borrowed by every reader for the duration of a call.
 * Strings are UTF-8 (CHARSET US-ASCII and UTF-8 are accepted; the engine
 * refuses others with [BADCHARSET]).
 */
#ifndef MAIL_SEARCH_KEY_H
#define MAIL_SEARCH_KEY_H

#include <stddef.h>
#include <stdint.h>

struct search_uid_range {
	uint32_t first, last; /* first <= last */
};

enum search_op {
	SEARCH_ALL = 0,      /* every message */
	SEARCH_NONE,         /* no message (RECENT, NEW) */
	SEARCH_AND,          /* every child matches (n_children >= 1) */
	SEARCH_OR,           /* one of the children (n_children == 2) */
	SEARCH_NOT,          /* the child does not (n_children == 1) */
	SEARCH_UID,          /* uid within ranges (sequence sets become this) */
	SEARCH_FLAG,         /* has flag str ("\\Seen", "$Label1"); keywords exact */
	SEARCH_HEADER,       /* header field str (case-insensitive name) whose
			      * decoded value contains str2 (case-insensitive
			      * substring; "" matches any message that has the
			      * field). FROM/TO/CC/BCC/SUBJECT are this. */
	SEARCH_BODY,         /* decoded text of the body contains str */
	SEARCH_TEXT,         /* decoded header or body text contains str */
	SEARCH_BEFORE,       /* internal date's day (UTC) < day num */
	SEARCH_ON,           /* == */
	SEARCH_SINCE,        /* >= */
	SEARCH_SENTBEFORE,   /* the Date: header's day (its own zone) < num */
	SEARCH_SENTON,
	SEARCH_SENTSINCE,
	SEARCH_LARGER,       /* size > num */
	SEARCH_SMALLER,      /* size < num */
	SEARCH_MODSEQ,       /* modseq >= num (RFC 7162) */
	SEARCH_OLDER,        /* internal date older than num seconds (RFC 5032) */
	SEARCH_YOUNGER,      /* internal date within the last num seconds */
};

/* Days are days since 1970-01-01 (day 0), e.g. "1-Feb-1994" -> 8797. */
struct search_key {
	enum search_op op;
	const char *str;    /* FLAG: the flag; HEADER: field name; BODY, TEXT: needle */
	const char *str2;   /* HEADER: needle */
	uint64_t num;       /* dates (days), sizes, modseq, seconds */
	const struct search_uid_range *ranges; /* UID: ascending, disjoint */
	size_t n_ranges;
	const struct search_key *children;
	size_t n_children;
};

/* SORT criteria (RFC 5256, RFC 5957 DISPLAYFROM/DISPLAYTO). Ties are
 * broken by UID ascending, as RFC 5256 says (by sequence number). */
enum search_sort_key {
	SEARCH_SORT_ARRIVAL = 1, /* internal date */
	SEARCH_SORT_CC,          /* first Cc mailbox's local part */
	SEARCH_SORT_DATE,        /* Date: header (internal date when absent) */
	SEARCH_SORT_FROM,        /* first From mailbox's local part */
	SEARCH_SORT_SIZE,
	SEARCH_SORT_SUBJECT,     /* base subject (RFC 5256 2.1) */
	SEARCH_SORT_TO,
	SEARCH_SORT_DISPLAYFROM, /* display name, else address (RFC 5957) */
	SEARCH_SORT_DISPLAYTO,
};
struct search_sort {
	enum search_sort_key key;
	int reverse;
};

enum search_thread_alg {
	SEARCH_THREAD_ORDEREDSUBJECT = 1,
	SEARCH_THREAD_REFERENCES = 2,
};

#endif
