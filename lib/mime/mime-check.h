/* mime-check.h: a syntax check of the IMAP text lib/mime produces, shared
 * by test-mime.c and fuzz-mime.c (static functions; not part of the
 * library).
 *
 * mime_check_sexp(): s (len bytes) is exactly one parenthesised list of
 * NIL, numbers, quoted strings (only \" and \\ escaped, no CR, LF or
 * 8-bit inside) and literals {n}\r\n + n bytes (no NUL), items separated
 * by one space except right after "(" and before ")" and between two
 * lists ("((...)(...))" as RFC 3501 writes body parts and addresses).
 */
#ifndef MAIL_MIME_CHECK_H
#define MAIL_MIME_CHECK_H

#include <stddef.h>
#include <stdint.h>

static int mime_check_item(const uint8_t *s, size_t len, size_t *pos, int depth)
{
	size_t p = *pos;
	if (p >= len || depth > 200)
		return 0;
	if (s[p] == '(') {
		p++;
		int first = 1, prev_list = 0;
		while (p < len && s[p] != ')') {
			if (!first) {
				if (s[p] == ' ')
					p++;
				else if (!(prev_list && s[p] == '('))
					return 0;
			}
			prev_list = p < len && s[p] == '(';
			if (!mime_check_item(s, len, &p, depth + 1))
				return 0;
			first = 0;
		}
		if (p >= len || first)
			return 0; /* unterminated, or "()" */
		*pos = p + 1;
		return 1;
	}
	if (s[p] == '"') {
		p++;
		while (p < len && s[p] != '"') {
			if (s[p] == '\\') {
				if (p + 1 >= len || (s[p + 1] != '"' && s[p + 1] != '\\'))
					return 0;
				p++;
			} else if (s[p] == '\r' || s[p] == '\n' || s[p] >= 0x80 || s[p] == 0) {
				return 0;
			}
			p++;
		}
		if (p >= len)
			return 0;
		*pos = p + 1;
		return 1;
	}
	if (s[p] == '{') {
		size_t n = 0;
		p++;
		if (p >= len || s[p] < '0' || s[p] > '9')
			return 0;
		while (p < len && s[p] >= '0' && s[p] <= '9') {
			n = n * 10 + (size_t)(s[p] - '0');
			if (n > len)
				return 0;
			p++;
		}
		if (p + 3 > len || s[p] != '}' || s[p + 1] != '\r' || s[p + 2] != '\n')
			return 0;
		p += 3;
		if (len - p < n)
			return 0;
		for (size_t i = 0; i < n; i++)
			if (s[p + i] == 0)
				return 0;
		*pos = p + n;
		return 1;
	}
	if (len - p >= 3 && s[p] == 'N' && s[p + 1] == 'I' && s[p + 2] == 'L') {
		*pos = p + 3;
		return 1;
	}
	if (s[p] >= '0' && s[p] <= '9') {
		while (p < len && s[p] >= '0' && s[p] <= '9')
			p++;
		*pos = p;
		return 1;
	}
	return 0;
}

static int mime_check_sexp(const char *s, size_t len)
{
	size_t pos = 0;
	const uint8_t *u = (const uint8_t *)s;
	if (len == 0 || u[0] != '(')
		return 0;
	return mime_check_item(u, len, &pos, 0) && pos == len;
}

#endif
