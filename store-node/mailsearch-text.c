/* mailsearch-text.c: the text building blocks of mailsearch: UTF-8
 * decoding and simple case folding, the streaming substring matcher,
 * RFC 5322 dates, RFC 5256 base subjects, the first address of an
 * address list, message-ids. Every function works on a bounded string the
 * caller already holds (header values are cut to MAILSEARCH_HEADER_MAX by
 * the callers), or, for the matcher, on a stream fed in pieces.
 */
#include "mailsearch-private.h"

#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

/* ---- case folding ----------------------------------------------------------- */

/* Upper case at even code points, lower case at the next odd one. */
static uint32_t fold_even(uint32_t c)
{
	return (c & 1u) ? c : c + 1;
}

/* Upper case at odd code points, lower case at the next even one. */
static uint32_t fold_odd(uint32_t c)
{
	return (c & 1u) ? c + 1 : c;
}

static uint32_t fold_latin_ext(uint32_t c)
{
	/* Latin Extended-A (U+0100..U+017F) */
	if (c < 0x180) {
		if (c == 0x130 || c == 0x131 || c == 0x138 || c == 0x149)
			return c; /* dotted I, dotless i, kra, 'n: no simple fold */
		if (c == 0x178)
			return 0xff;
		if (c == 0x17f)
			return 's';
		if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e))
			return fold_odd(c);
		return fold_even(c);
	}
	/* Latin Extended-B: the regular runs and the digraphs */
	if (c == 0x1c4 || c == 0x1c5)
		return 0x1c6;
	if (c == 0x1c7 || c == 0x1c8)
		return 0x1c9;
	if (c == 0x1ca || c == 0x1cb)
		return 0x1cc;
	if (c == 0x1f1 || c == 0x1f2)
		return 0x1f3;
	if (c >= 0x1cd && c <= 0x1dc)
		return fold_odd(c);
	if ((c >= 0x1de && c <= 0x1ef) || (c >= 0x1f8 && c <= 0x21f) || (c >= 0x222 && c <= 0x233) ||
	    (c >= 0x246 && c <= 0x24f) || c == 0x1f4)
		return fold_even(c);
	return c;
}

static uint32_t fold_greek(uint32_t c)
{
	if (c >= 0x391 && c <= 0x3ab && c != 0x3a2)
		return c + 0x20;
	switch (c) {
	case 0x345: return 0x3b9;
	case 0x376: return 0x377;
	case 0x37f: return 0x3f3;
	case 0x386: return 0x3ac;
	case 0x388: case 0x389: case 0x38a: return c + 0x25;
	case 0x38c: return 0x3cc;
	case 0x38e: return 0x3cd;
	case 0x38f: return 0x3ce;
	case 0x3c2: return 0x3c3; /* final sigma */
	case 0x3cf: return 0x3d7;
	case 0x3d0: return 0x3b2;
	case 0x3d1: return 0x3b8;
	case 0x3d5: return 0x3c6;
	case 0x3d6: return 0x3c0;
	case 0x3f0: return 0x3ba;
	case 0x3f1: return 0x3c1;
	case 0x3f4: return 0x3b8;
	case 0x3f5: return 0x3b5;
	case 0x3f7: return 0x3f8;
	case 0x3f9: return 0x3f2;
	case 0x3fa: return 0x3fb;
	case 0x3fd: case 0x3fe: case 0x3ff: return c - 0x82;
	default: break;
	}
	if ((c >= 0x370 && c <= 0x373) || (c >= 0x3d8 && c <= 0x3ef))
		return fold_even(c);
	return c;
}

static uint32_t fold_cyrillic(uint32_t c)
{
	if (c <= 0x40f)
		return c + 0x50;
	if (c <= 0x42f)
		return c + 0x20;
	if (c == 0x4c0)
		return 0x4cf;
	if (c >= 0x4c1 && c <= 0x4ce)
		return fold_odd(c);
	if ((c >= 0x460 && c <= 0x481) || (c >= 0x48a && c <= 0x4bf) || (c >= 0x4d0 && c <= 0x52f))
		return fold_even(c);
	return c;
}

uint32_t mailsearch__fold(uint32_t c)
{
	if (c < 0x80)
		return (c >= 'A' && c <= 'Z') ? c + 0x20 : c;
	if (c < 0x100) {
		if (c >= 0xc0 && c <= 0xde && c != 0xd7)
			return c + 0x20;
		return c == 0xb5 ? 0x3bc : c; /* micro sign -> mu */
	}
	if (c < 0x250)
		return fold_latin_ext(c);
	if (c < 0x345)
		return c;
	if (c < 0x400)
		return fold_greek(c);
	if (c < 0x530)
		return fold_cyrillic(c);
	if (c >= 0x531 && c <= 0x556)
		return c + 0x30; /* Armenian */
	if (c >= 0x1e00 && c <= 0x1eff) {
		if (c == 0x1e9b)
			return 0x1e61;
		if (c == 0x1e9e)
			return 0xdf; /* capital sharp s */
		if (c <= 0x1e95 || c >= 0x1ea0)
			return fold_even(c);
		return c;
	}
	switch (c) {
	case 0x2126: return 0x3c9; /* ohm */
	case 0x212a: return 'k';   /* kelvin */
	case 0x212b: return 0xe5;  /* angstrom */
	default: break;
	}
	if (c >= 0xff21 && c <= 0xff3a)
		return c + 0x20; /* fullwidth A-Z */
	return c;
}

/* ---- UTF-8 decoding --------------------------------------------------------- */

/* Push one byte; writes 0..4 code points to out and returns how many. An
 * invalid sequence gives one raw code point per byte of its maximal valid
 * prefix, then the offending byte starts afresh. */
static inline size_t utf8_push(struct mailsearch__utf8 *d, uint8_t b, uint32_t *out)
{
	size_t n_out = 0;
	if (d->n_pend > 0) {
		uint8_t lead = d->pend[0];
		uint8_t lo = 0x80, hi = 0xbf;
		if (d->n_pend == 1) {
			if (lead == 0xe0)
				lo = 0xa0;
			else if (lead == 0xed)
				hi = 0x9f;
			else if (lead == 0xf0)
				lo = 0x90;
			else if (lead == 0xf4)
				hi = 0x8f;
		}
		if (b >= lo && b <= hi) {
			size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
			d->pend[d->n_pend++] = b;
			if (d->n_pend < need)
				return 0;
			uint32_t cp;
			if (need == 2)
				cp = (uint32_t)(lead & 0x1f) << 6 | (d->pend[1] & 0x3f);
			else if (need == 3)
				cp = (uint32_t)(lead & 0x0f) << 12 | (uint32_t)(d->pend[1] & 0x3f) << 6 |
				     (d->pend[2] & 0x3f);
			else
				cp = (uint32_t)(lead & 0x07) << 18 | (uint32_t)(d->pend[1] & 0x3f) << 12 |
				     (uint32_t)(d->pend[2] & 0x3f) << 6 | (d->pend[3] & 0x3f);
			d->n_pend = 0;
			out[0] = cp;
			return 1;
		}
		for (size_t i = 0; i < d->n_pend; i++)
			out[n_out++] = MAILSEARCH__RAW_BYTE + d->pend[i];
		d->n_pend = 0;
	}
	if (b < 0x80) {
		out[n_out++] = b;
	} else if (b >= 0xc2 && b <= 0xf4) {
		d->pend[0] = b;
		d->n_pend = 1;
	} else {
		out[n_out++] = MAILSEARCH__RAW_BYTE + b;
	}
	return n_out;
}

/* End of input: the pending bytes become raw code points. */
static size_t utf8_flush(struct mailsearch__utf8 *d, uint32_t *out)
{
	size_t n = d->n_pend;
	for (size_t i = 0; i < n; i++)
		out[i] = MAILSEARCH__RAW_BYTE + d->pend[i];
	d->n_pend = 0;
	return n;
}

size_t mailsearch__utf8_cut(const char *s, size_t n)
{
	const uint8_t *u = (const uint8_t *)s;
	size_t i = n, back = 0;
	while (i > 0 && back < 3 && (u[i] & 0xc0) == 0x80) {
		i--;
		back++;
	}
	if (back > 0 && u[i] >= 0xc2 && u[i] <= 0xf4)
		return i;
	return n;
}

/* ---- needles and the streaming matcher -------------------------------------- */

void mailsearch__needle_init(struct mailsearch__needle *nd, const char *text, size_t len)
{
	/* at most one code point per byte */
	nd->cp = xmalloc((len + 1) * sizeof(*nd->cp));
	nd->fail = xmalloc((len + 1) * sizeof(*nd->fail));
	nd->n = 0;
	struct mailsearch__utf8 d = {.n_pend = 0};
	uint32_t tmp[4];
	for (size_t i = 0; i < len; i++) {
		size_t k = utf8_push(&d, (uint8_t)text[i], tmp);
		for (size_t j = 0; j < k; j++)
			nd->cp[nd->n++] = mailsearch__fold(tmp[j]);
	}
	size_t k = utf8_flush(&d, tmp);
	for (size_t j = 0; j < k; j++)
		nd->cp[nd->n++] = mailsearch__fold(tmp[j]);
	memset(nd->start, 0, sizeof(nd->start));
	memset(nd->start + 0x80, 1, 0x80);
	if (nd->n > 0 && nd->cp[0] < 0x80) {
		uint32_t c = nd->cp[0];
		nd->start[c] = 1;
		if (c >= 'a' && c <= 'z')
			nd->start[c - 0x20] = 1;
	}
	/* KMP: fail[i] = length of the longest proper prefix of cp[0..i]
	 * that is also its suffix */
	if (nd->n > 0)
		nd->fail[0] = 0;
	uint32_t k2 = 0;
	for (size_t i = 1; i < nd->n; i++) {
		while (k2 > 0 && nd->cp[i] != nd->cp[k2])
			k2 = nd->fail[k2 - 1];
		if (nd->cp[i] == nd->cp[k2])
			k2++;
		nd->fail[i] = k2;
	}
}

void mailsearch__needle_deinit(struct mailsearch__needle *nd)
{
	free(nd->cp);
	free(nd->fail);
	nd->cp = nd->fail = NULL;
	nd->n = 0;
}

void mailsearch__scan_init(struct mailsearch__scan *sc,
			   const struct mailsearch__needle *const *needles, size_t n,
			   size_t *state, uint8_t *found)
{
	sc->needles = needles;
	sc->state = state;
	sc->found = found;
	sc->n = n;
	sc->n_found = 0;
	sc->dec.n_pend = 0;
	sc->idle = 1;
	if (n == 1)
		memcpy(sc->start, needles[0]->start, sizeof(sc->start));
	else
		memset(sc->start, 0, sizeof(sc->start));
	for (size_t i = 0; i < n; i++) {
		state[i] = 0;
		found[i] = needles[i]->n == 0; /* "" is in every text */
		sc->n_found += found[i];
		for (size_t b = 0; n > 1 && b < 0x80; b++)
			sc->start[b] |= needles[i]->start[b];
	}
	if (n > 1)
		memset(sc->start + 0x80, 1, 0x80);
}

/* One folded code point through every needle not found yet. */
static void scan_cp(struct mailsearch__scan *sc, uint32_t c)
{
	size_t partial = 0;
	for (size_t i = 0; i < sc->n; i++) {
		if (sc->found[i])
			continue;
		const struct mailsearch__needle *nd = sc->needles[i];
		size_t st = sc->state[i];
		while (st > 0 && nd->cp[st] != c)
			st = nd->fail[st - 1];
		if (nd->cp[st] == c)
			st++;
		if (st == nd->n) {
			sc->found[i] = 1;
			sc->n_found++;
			st = 0;
		}
		sc->state[i] = st;
		partial |= st;
	}
	sc->idle = partial == 0;
}

/* ASCII folding table: the common case of the body loop. */
static uint32_t fold_ascii(uint8_t b)
{
	return (b >= 'A' && b <= 'Z') ? (uint32_t)b + 0x20 : b;
}

/* One KMP step of a needle in state *st over folded code point c;
 * 1 when the needle is complete. */
static inline int kmp_step(const struct mailsearch__needle *nd, size_t *st, uint32_t c)
{
	size_t s = *st;
	while (s > 0 && nd->cp[s] != c)
		s = nd->fail[s - 1];
	if (nd->cp[s] == c)
		s++;
	*st = s;
	return s == nd->n;
}

/* The common case, one needle (every header search, most body passes):
 * the steps of the general loop with the state in locals. */
static int scan_feed_one(struct mailsearch__scan *sc, const uint8_t *u, size_t len)
{
	const struct mailsearch__needle *nd = sc->needles[0];
	size_t st = sc->state[0];
	uint32_t tmp[4];
	for (size_t i = 0; i < len; i++) {
		if (sc->dec.n_pend == 0) {
			if (st == 0) {
				while (i < len && !nd->start[u[i]])
					i++;
				if (i == len)
					break;
			}
			if (u[i] < 0x80) {
				if (kmp_step(nd, &st, fold_ascii(u[i])))
					goto found;
				continue;
			}
		}
		size_t k = utf8_push(&sc->dec, u[i], tmp);
		for (size_t j = 0; j < k; j++)
			if (kmp_step(nd, &st, mailsearch__fold(tmp[j])))
				goto found;
	}
	sc->state[0] = st;
	sc->idle = st == 0;
	return 0;
found:
	sc->found[0] = 1;
	sc->n_found = 1;
	sc->state[0] = 0;
	sc->idle = 1;
	return 1;
}

int mailsearch__scan_feed(struct mailsearch__scan *sc, const char *text, size_t len)
{
	const uint8_t *u = (const uint8_t *)text;
	uint32_t tmp[4];
	if (sc->n == 1 && sc->n_found == 0)
		return scan_feed_one(sc, u, len);
	for (size_t i = 0; i < len && sc->n_found < sc->n; i++) {
		if (sc->idle && sc->dec.n_pend == 0) {
			/* nothing started: skip what cannot start a match (such
			 * bytes fold to code points no needle begins with) */
			while (i < len && !sc->start[u[i]])
				i++;
			if (i == len)
				break;
		}
		if (u[i] < 0x80 && sc->dec.n_pend == 0) {
			scan_cp(sc, fold_ascii(u[i]));
			continue;
		}
		size_t k = utf8_push(&sc->dec, u[i], tmp);
		for (size_t j = 0; j < k; j++)
			scan_cp(sc, mailsearch__fold(tmp[j]));
	}
	return sc->n_found == sc->n;
}

int mailsearch__scan_end(struct mailsearch__scan *sc)
{
	uint32_t tmp[4];
	size_t k = utf8_flush(&sc->dec, tmp);
	for (size_t j = 0; j < k; j++)
		scan_cp(sc, mailsearch__fold(tmp[j]));
	for (size_t i = 0; i < sc->n; i++)
		sc->state[i] = 0;
	sc->idle = 1;
	return sc->n_found == sc->n;
}

/* ---- i;ascii-casemap -------------------------------------------------------- */

static int ascii_upper(int c)
{
	return (c >= 'a' && c <= 'z') ? c - 0x20 : c;
}

int mailsearch__casemap_cmp(const char *a, const char *b)
{
	const uint8_t *x = (const uint8_t *)a, *y = (const uint8_t *)b;
	for (;; x++, y++) {
		int cx = ascii_upper(*x), cy = ascii_upper(*y);
		if (cx != cy)
			return cx < cy ? -1 : 1;
		if (cx == 0)
			return 0;
	}
}

int mailsearch__casemap_eq(const char *a, const char *b)
{
	return mailsearch__casemap_cmp(a, b) == 0;
}

/* ASCII case-insensitive prefix test on a counted string. */
static int has_prefix_ci(const char *s, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);
	if (len < n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (ascii_upper((uint8_t)s[i]) != ascii_upper((uint8_t)prefix[i]))
			return 0;
	return 1;
}

/* ---- dates (RFC 5322 3.3 and 4.3) ------------------------------------------- */

#define DATE_COMMENT_DEPTH 16

struct date_lex {
	const char *s;
	size_t i, n;
};

static int is_wsp_or_nl(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Skip whitespace and (nested) comments. -1 when comments nest deeper
 * than DATE_COMMENT_DEPTH; an unclosed comment runs to the end. */
static int date_skip_cfws(struct date_lex *lx)
{
	while (lx->i < lx->n) {
		char c = lx->s[lx->i];
		if (is_wsp_or_nl(c)) {
			lx->i++;
			continue;
		}
		if (c != '(')
			return 0;
		int depth = 0;
		while (lx->i < lx->n) {
			c = lx->s[lx->i++];
			if (c == '\\' && lx->i < lx->n) {
				lx->i++;
			} else if (c == '(') {
				if (++depth > DATE_COMMENT_DEPTH)
					return -1;
			} else if (c == ')') {
				if (--depth == 0)
					break;
			}
		}
	}
	return 0;
}

/* A run of digits (at most max of them, else -1); *digits_r its length. */
static int date_number(struct date_lex *lx, size_t max, int *value_r, size_t *digits_r)
{
	size_t start = lx->i;
	int v = 0;
	while (lx->i < lx->n && is_digit(lx->s[lx->i])) {
		if (lx->i - start >= max)
			return -1;
		v = v * 10 + (lx->s[lx->i] - '0');
		lx->i++;
	}
	if (lx->i == start)
		return -1;
	*value_r = v;
	*digits_r = lx->i - start;
	return 0;
}

/* A run of letters: its start and length (0 when none). */
static size_t date_word(struct date_lex *lx, const char **w_r)
{
	size_t start = lx->i;
	while (lx->i < lx->n && is_alpha(lx->s[lx->i]))
		lx->i++;
	*w_r = lx->s + start;
	return lx->i - start;
}

static int date_accept(struct date_lex *lx, char c)
{
	if (lx->i < lx->n && lx->s[lx->i] == c) {
		lx->i++;
		return 1;
	}
	return 0;
}

static const char *const date_months[12] = {"jan", "feb", "mar", "apr", "may", "jun",
					    "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const date_months_long[12] = {
	"january", "february", "march",     "april",   "may",      "june",
	"july",    "august",   "september", "october", "november", "december"};
static const char *const date_days[7] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};
static const char *const date_days_long[7] = {"monday", "tuesday",  "wednesday", "thursday",
					      "friday", "saturday", "sunday"};

static int word_is(const char *w, size_t n, const char *name)
{
	return strlen(name) == n && has_prefix_ci(w, n, name);
}

/* Month 1..12 from "Feb", "february", "Sept"; 0 when not a month. */
static int date_month(const char *w, size_t n)
{
	for (int m = 0; m < 12; m++)
		if (word_is(w, n, date_months[m]) || word_is(w, n, date_months_long[m]))
			return m + 1;
	if (word_is(w, n, "sept"))
		return 9;
	return 0;
}

static int date_weekday(const char *w, size_t n)
{
	for (int d = 0; d < 7; d++)
		if (word_is(w, n, date_days[d]) || word_is(w, n, date_days_long[d]))
			return 1;
	return 0;
}

/* Offset in minutes east of UTC of a named zone (RFC 5322 4.3: UT, GMT,
 * the US zones; military letters and unknown names count as -0000). */
static int date_named_zone(const char *w, size_t n)
{
	static const struct {
		const char *name;
		int minutes;
	} zones[] = {{"ut", 0},         {"utc", 0},        {"gmt", 0},        {"z", 0},
		     {"est", -5 * 60},  {"edt", -4 * 60},  {"cst", -6 * 60},  {"cdt", -5 * 60},
		     {"mst", -7 * 60},  {"mdt", -6 * 60},  {"pst", -8 * 60},  {"pdt", -7 * 60}};
	for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++)
		if (word_is(w, n, zones[i].name))
			return zones[i].minutes;
	return 0;
}

/* "+hhmm", "-hhmm" or "+hh:mm": -1 when not one, else 0 with *min_r. */
static int date_numeric_zone(struct date_lex *lx, int *min_r)
{
	if (lx->i >= lx->n || (lx->s[lx->i] != '+' && lx->s[lx->i] != '-'))
		return -1;
	int sign = lx->s[lx->i] == '-' ? -1 : 1;
	size_t save = lx->i++;
	int hh, mm;
	size_t d;
	if (date_number(lx, 4, &hh, &d) < 0)
		goto bad;
	if (d == 4) {
		mm = hh % 100;
		hh /= 100;
	} else if (d == 2 && date_accept(lx, ':')) {
		if (date_number(lx, 2, &mm, &d) < 0 || d != 2)
			goto bad;
	} else {
		goto bad;
	}
	if (mm > 59)
		goto bad;
	*min_r = sign * (hh * 60 + mm);
	return 0;
bad:
	lx->i = save;
	return -1;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
	static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return 29;
	return dm[m - 1];
}

/* hh ":" mm [":" ss], CFWS allowed around the colons (obs-time). */
static int date_time(struct date_lex *lx, int *h, int *mi, int *sec)
{
	size_t d;
	if (date_number(lx, 2, h, &d) < 0)
		return -1;
	if (date_skip_cfws(lx) < 0 || !date_accept(lx, ':') || date_skip_cfws(lx) < 0)
		return -1;
	if (date_number(lx, 2, mi, &d) < 0)
		return -1;
	*sec = 0;
	size_t save = lx->i;
	if (date_skip_cfws(lx) < 0)
		return -1;
	if (date_accept(lx, ':')) {
		if (date_skip_cfws(lx) < 0 || date_number(lx, 2, sec, &d) < 0)
			return -1;
	} else {
		lx->i = save;
	}
	if (*h > 23 || *mi > 59 || *sec > 60)
		return -1;
	return 0;
}

/* The zone after the time: numeric, named, named then numeric ("GMT+0100"
 * uses the number), or nothing (UTC). Anything after it is ignored. */
static int date_zone(struct date_lex *lx, int *zone_r)
{
	*zone_r = 0;
	if (date_skip_cfws(lx) < 0)
		return -1;
	if (date_numeric_zone(lx, zone_r) == 0)
		return 0;
	const char *w;
	size_t n = date_word(lx, &w);
	if (n == 0)
		return 0;
	*zone_r = date_named_zone(w, n);
	int num;
	if (date_numeric_zone(lx, &num) == 0)
		*zone_r = num;
	return 0;
}

static int date_year(int y, size_t digits)
{
	if (digits == 2)
		return y < 50 ? 2000 + y : 1900 + y;
	if (digits == 3)
		return 1900 + y;
	return y;
}

int mailsearch_date_parse(const char *s, size_t len, int64_t *utc_ms_r, int64_t *day_r)
{
	if (len == 0 || len > MAILSEARCH_DATE_MAX)
		return -1;
	struct date_lex lx = {.s = s, .i = 0, .n = len};
	int day = 0, month = 0, year = 0, h = 0, mi = 0, sec = 0, zone = 0;
	size_t digits;
	const char *w;
	size_t wn;

	if (date_skip_cfws(&lx) < 0)
		return -1;
	size_t save = lx.i;
	wn = date_word(&lx, &w);
	if (wn > 0 && date_weekday(w, wn)) {
		if (date_skip_cfws(&lx) < 0)
			return -1;
		date_accept(&lx, ',');
		if (date_skip_cfws(&lx) < 0)
			return -1;
	} else {
		lx.i = save;
	}

	save = lx.i;
	wn = date_word(&lx, &w);
	if (wn > 0) {
		/* asctime: month day time year, in UTC */
		month = date_month(w, wn);
		if (month == 0 || date_skip_cfws(&lx) < 0 || date_number(&lx, 2, &day, &digits) < 0)
			return -1;
		if (date_skip_cfws(&lx) < 0 || date_time(&lx, &h, &mi, &sec) < 0)
			return -1;
		if (date_skip_cfws(&lx) < 0 || date_number(&lx, 4, &year, &digits) < 0)
			return -1;
		year = date_year(year, digits);
	} else {
		lx.i = save;
		/* day month year: whitespace or '-' between them */
		if (date_number(&lx, 2, &day, &digits) < 0)
			return -1;
		if (date_skip_cfws(&lx) < 0)
			return -1;
		if (date_accept(&lx, '-') && date_skip_cfws(&lx) < 0)
			return -1;
		wn = date_word(&lx, &w);
		month = date_month(w, wn);
		if (month == 0 || date_skip_cfws(&lx) < 0)
			return -1;
		if (date_accept(&lx, '-') && date_skip_cfws(&lx) < 0)
			return -1;
		if (date_number(&lx, 4, &year, &digits) < 0)
			return -1;
		year = date_year(year, digits);
		if (date_skip_cfws(&lx) < 0)
			return -1;
		/* a date without a time (seen in the wild): midnight, UTC */
		if (lx.i < lx.n && is_digit(lx.s[lx.i])) {
			if (date_time(&lx, &h, &mi, &sec) < 0 || date_zone(&lx, &zone) < 0)
				return -1;
		}
	}
	if (year < 1900 || year > 9999 || day < 1 || day > days_in_month(year, month))
		return -1;
	int64_t days = days_from_civil(year, month, day);
	if (day_r != NULL)
		*day_r = days;
	if (utc_ms_r != NULL) {
		int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec - (int64_t)zone * 60;
		*utc_ms_r = secs * 1000;
	}
	return 0;
}

/* ---- base subject (RFC 5256 2.1) -------------------------------------------- */

/* subj-blob at s[i..end): "[" *BLOBCHAR "]" *WSP. Its length, 0 if none.
 * BLOBCHAR is any byte but the brackets (8-bit bytes too: the subject is
 * UTF-8 here). The text is whitespace-normalised: WSP is ' '. */
static size_t subj_blob(const char *s, size_t i, size_t end)
{
	if (i >= end || s[i] != '[')
		return 0;
	size_t j = i + 1;
	while (j < end && s[j] != '[' && s[j] != ']')
		j++;
	if (j >= end || s[j] != ']')
		return 0;
	j++;
	while (j < end && s[j] == ' ')
		j++;
	return j - i;
}

/* subj-leader's first alternative at s[i..end): *subj-blob subj-refwd,
 * subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":". Its length, 0
 * if none. */
static size_t subj_refwd_leader(const char *s, size_t i, size_t end)
{
	size_t j = i, k;
	while ((k = subj_blob(s, j, end)) > 0)
		j += k;
	if (has_prefix_ci(s + j, end - j, "re"))
		j += 2;
	else if (has_prefix_ci(s + j, end - j, "fwd"))
		j += 3;
	else if (has_prefix_ci(s + j, end - j, "fw"))
		j += 2;
	else
		return 0;
	while (j < end && s[j] == ' ')
		j++;
	j += subj_blob(s, j, end);
	if (j >= end || s[j] != ':')
		return 0;
	return j + 1 - i;
}

void mailsearch_base_subject(const char *subject, size_t len, buf *out, int *is_reply_r)
{
	/* (1) tabs and line breaks to spaces, runs of spaces to one; the
	 * decoding of encoded words is the caller's */
	char *s = xmalloc(len + 1);
	size_t n = 0;
	if (len == 0)
		subject = ""; /* may be NULL when empty */
	for (size_t i = 0; i < len; i++) {
		char c = subject[i];
		if (is_wsp_or_nl(c)) {
			if (n > 0 && s[n - 1] == ' ')
				continue;
			c = ' ';
		}
		s[n++] = c;
	}
	size_t start = 0, end = n;
	int reply = 0;
	for (;;) {
		/* (2) trailing subj-trailer: "(fwd)" / WSP, as long as any */
		for (;;) {
			if (end > start && s[end - 1] == ' ') {
				end--;
			} else if (end - start >= 5 && has_prefix_ci(s + end - 5, 5, "(fwd)")) {
				end -= 5;
				reply = 1;
			} else {
				break;
			}
		}
		/* (3)-(5): leaders, then one blob that leaves a non-empty
		 * subj-base, again until neither applies */
		for (;;) {
			int changed = 0;
			for (;;) {
				size_t k;
				if (start < end && s[start] == ' ') {
					start++;
				} else if ((k = subj_refwd_leader(s, start, end)) > 0) {
					start += k;
					reply = 1;
				} else {
					break;
				}
				changed = 1;
			}
			size_t k = subj_blob(s, start, end);
			if (k > 0 && start + k < end) {
				start += k;
				changed = 1;
			}
			if (!changed)
				break;
		}
		/* (6) "[fwd:" ... "]" around the rest: unwrap, back to (2) */
		if (end - start >= 6 && has_prefix_ci(s + start, end - start, "[fwd:") &&
		    s[end - 1] == ']') {
			start += 5;
			end -= 1;
			reply = 1;
			continue;
		}
		break;
	}
	buf_append(out, s + start, end - start);
	free(s);
	if (is_reply_r != NULL)
		*is_reply_r = reply;
}

/* ---- addresses -------------------------------------------------------------- */

#define ADDR_COMMENT_DEPTH 16

enum addr_tok { ADDR_END, ADDR_WORD, ADDR_QUOTED, ADDR_SPECIAL };

struct addr_lex {
	const char *s;
	size_t i, n;
	/* the last token */
	enum addr_tok tok;
	char special;
	const char *text; /* word: the source; quoted: inside the quotes */
	size_t text_len;
	int ws_before; /* whitespace or a comment came before it */
	/* the first comment seen (the display name of "a@b (Ann)") */
	const char *comment;
	size_t comment_len;
};

static int addr_is_special(char c)
{
	return c == '<' || c == '>' || c == '@' || c == ',' || c == ':' || c == ';' || c == '.' ||
	       c == '"' || c == '(' || c == ')' || c == '[' || c == ']' || c == '\\';
}

static void addr_next(struct addr_lex *lx)
{
	lx->ws_before = 0;
	for (;;) {
		while (lx->i < lx->n && is_wsp_or_nl(lx->s[lx->i])) {
			lx->i++;
			lx->ws_before = 1;
		}
		if (lx->i >= lx->n || lx->s[lx->i] != '(')
			break;
		/* a comment: nested, bounded; keep the first one's text */
		size_t start = ++lx->i;
		int depth = 1;
		while (lx->i < lx->n && depth > 0) {
			char c = lx->s[lx->i++];
			if (c == '\\' && lx->i < lx->n)
				lx->i++;
			else if (c == '(' && depth < ADDR_COMMENT_DEPTH)
				depth++;
			else if (c == ')')
				depth--;
		}
		size_t stop = depth == 0 ? lx->i - 1 : lx->i;
		if (lx->comment == NULL && stop > start) {
			lx->comment = lx->s + start;
			lx->comment_len = stop - start;
		}
		lx->ws_before = 1;
	}
	if (lx->i >= lx->n) {
		lx->tok = ADDR_END;
		return;
	}
	char c = lx->s[lx->i];
	if (c == '"') {
		size_t start = ++lx->i;
		while (lx->i < lx->n && lx->s[lx->i] != '"') {
			if (lx->s[lx->i] == '\\' && lx->i + 1 < lx->n)
				lx->i++;
			lx->i++;
		}
		lx->tok = ADDR_QUOTED;
		lx->text = lx->s + start;
		lx->text_len = lx->i - start;
		if (lx->i < lx->n)
			lx->i++;
		return;
	}
	if (addr_is_special(c)) {
		lx->tok = ADDR_SPECIAL;
		lx->special = c;
		lx->i++;
		return;
	}
	size_t start = lx->i;
	while (lx->i < lx->n && !addr_is_special(lx->s[lx->i]) && !is_wsp_or_nl(lx->s[lx->i]))
		lx->i++;
	lx->tok = ADDR_WORD;
	lx->text = lx->s + start;
	lx->text_len = lx->i - start;
}

/* Append to b, never past MAILSEARCH_SORT_TEXT_MAX bytes in all, cutting
 * at a UTF-8 boundary; quoted-pair backslashes dropped when unquote. */
static void addr_append(buf *b, const char *s, size_t len, int unquote)
{
	for (size_t i = 0; i < len; i++) {
		if (unquote && s[i] == '\\' && i + 1 < len)
			i++;
		if (b->len >= MAILSEARCH_SORT_TEXT_MAX)
			break;
		/* do not start a multi-byte sequence that cannot fit */
		uint8_t c = (uint8_t)s[i];
		size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
		if (b->len + need > MAILSEARCH_SORT_TEXT_MAX)
			break;
		buf_append(b, s + i, 1);
	}
}

static void addr_append_token(buf *b, const struct addr_lex *lx)
{
	if (lx->tok == ADDR_SPECIAL)
		addr_append(b, &lx->special, 1, 0);
	else
		addr_append(b, lx->text, lx->text_len, lx->tok == ADDR_QUOTED);
}

/* The collapsed text of a comment: whitespace runs to one space, ends
 * trimmed. */
static void addr_append_collapsed(buf *b, const char *s, size_t len)
{
	int space = 0;
	for (size_t i = 0; i < len; i++) {
		if (is_wsp_or_nl(s[i])) {
			space = 1;
			continue;
		}
		if (space && b->len > 0)
			addr_append(b, " ", 1, 0);
		space = 0;
		addr_append(b, s + i, 1, 0);
	}
}

int mailsearch__address_first(const char *s, size_t len, buf *mailbox, buf *host, buf *display)
{
	struct addr_lex lx = {.s = s, .i = 0, .n = len, .comment = NULL};
	buf phrase, local;
	buf_init(&phrase);
	buf_init(&local);
	int found = 0;
	addr_next(&lx);
	while (lx.tok != ADDR_END && !found) {
		buf_reset(&phrase);
		buf_reset(&local);
		lx.comment = NULL;
		/* the words before '<', ':', '@', ',', ';' */
		while (lx.tok == ADDR_WORD || lx.tok == ADDR_QUOTED ||
		       (lx.tok == ADDR_SPECIAL && (lx.special == '.' || lx.special == '\\' ||
						   lx.special == ')' || lx.special == '>' ||
						   lx.special == '[' || lx.special == ']'))) {
			if (lx.ws_before && phrase.len > 0)
				addr_append(&phrase, " ", 1, 0);
			addr_append_token(&phrase, &lx);
			addr_append_token(&local, &lx);
			addr_next(&lx);
		}
		if (lx.tok == ADDR_SPECIAL && lx.special == '<') {
			/* name-addr: [phrase] "<" [route ":"] local "@" domain ">" */
			addr_next(&lx);
			if (lx.tok == ADDR_SPECIAL && lx.special == '@') {
				while (lx.tok != ADDR_END && !(lx.tok == ADDR_SPECIAL &&
							       (lx.special == ':' || lx.special == '>')))
					addr_next(&lx);
				if (lx.tok == ADDR_SPECIAL && lx.special == ':')
					addr_next(&lx);
			}
			while (lx.tok != ADDR_END &&
			       !(lx.tok == ADDR_SPECIAL && (lx.special == '@' || lx.special == '>'))) {
				addr_append_token(mailbox, &lx);
				addr_next(&lx);
			}
			if (lx.tok == ADDR_SPECIAL && lx.special == '@') {
				addr_next(&lx);
				while (lx.tok != ADDR_END &&
				       !(lx.tok == ADDR_SPECIAL && lx.special == '>')) {
					addr_append_token(host, &lx);
					addr_next(&lx);
				}
			}
			buf_append(display, phrase.data, phrase.len);
			found = 1;
		} else if (lx.tok == ADDR_SPECIAL && lx.special == ':') {
			/* a group: its name is what IMAP shows first */
			buf_append(mailbox, phrase.data, phrase.len);
			buf_append(display, phrase.data, phrase.len);
			found = phrase.len > 0;
			addr_next(&lx);
		} else if (lx.tok == ADDR_SPECIAL && lx.special == '@') {
			/* addr-spec, maybe with "(display name)" */
			buf_append(mailbox, local.data, local.len);
			addr_next(&lx);
			while (lx.tok == ADDR_WORD || lx.tok == ADDR_QUOTED ||
			       (lx.tok == ADDR_SPECIAL &&
				(lx.special == '.' || lx.special == '[' || lx.special == ']'))) {
				if (lx.ws_before && lx.tok != ADDR_SPECIAL && host->len > 0)
					break; /* "a@b c": c is not the domain */
				addr_append_token(host, &lx);
				addr_next(&lx);
			}
			if (lx.comment != NULL)
				addr_append_collapsed(display, lx.comment, lx.comment_len);
			found = 1;
		} else if (local.len > 0) {
			/* a bare word: "undisclosed", "postmaster" */
			buf_append(mailbox, local.data, local.len);
			found = 1;
		} else {
			addr_next(&lx); /* an empty element, ',' or stray ';' */
		}
	}
	buf_deinit(&phrase);
	buf_deinit(&local);
	return found;
}

/* ---- message-ids ------------------------------------------------------------ */

int mailsearch__msgid_next(const char *s, size_t len, size_t *pos, char *out, size_t *out_len)
{
	size_t i = *pos;
	while (i < len) {
		char c = s[i];
		if (c == '(') {
			/* a comment outside an id: skip it (it may hold "<x@y>") */
			int depth = 0;
			while (i < len) {
				c = s[i++];
				if (c == '\\' && i < len)
					i++;
				else if (c == '(' && depth < ADDR_COMMENT_DEPTH)
					depth++;
				else if (c == ')' && --depth == 0)
					break;
			}
			continue;
		}
		if (c != '<') {
			i++;
			continue;
		}
		/* "<" ... ">": copy without folding whitespace */
		size_t j = i + 1, n = 0;
		int quoted = 0, too_long = 0, at = -1, restart = 0;
		out[n++] = '<';
		for (; j < len; j++) {
			c = s[j];
			if (!quoted && c == '<') {
				restart = 1;
				break;
			}
			if (!quoted && c == '>')
				break;
			if (!quoted && is_wsp_or_nl(c))
				continue;
			if (c == '"')
				quoted = !quoted;
			if (quoted && c == '\\' && j + 1 < len) {
				if (n + 2 < MAILSEARCH_MSGID_MAX) {
					out[n++] = c;
					out[n++] = s[j + 1];
				} else {
					too_long = 1;
				}
				j++;
				continue;
			}
			if (!quoted && c == '@')
				at = (int)n;
			if (n + 1 < MAILSEARCH_MSGID_MAX)
				out[n++] = c;
			else
				too_long = 1;
		}
		if (restart) {
			i = j;
			continue;
		}
		if (j >= len)
			break; /* no closing '>' */
		i = j + 1;
		if (too_long || at <= 1 || (size_t)at + 1 >= n)
			continue; /* empty left or right, no '@', too long */
		out[n++] = '>';
		out[n] = '\0';
		*out_len = n;
		*pos = i;
		return 1;
	}
	*pos = len;
	return 0;
}
