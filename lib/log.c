#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void log_event(enum log_level level, const char *svc, const char *fmt, ...)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof line,
			 "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s svc=%s ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
			 tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
			 level_names[level], svc);
	if (n < 0 || (size_t)n >= sizeof line)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", line);
}

const char *log_quote(char *out, size_t outsz, const char *s, size_t len)
{
	if (outsz < 8) {
		if (outsz > 0)
			out[0] = '\0';
		return out;
	}
	int plain = len > 0;
	for (size_t i = 0; i < len && plain; i++)
		plain = s[i] > 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\';
	size_t o = 0;
	if (!plain)
		out[o++] = '"';
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		char tmp[5];
		size_t tl;
		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
			tmp[0] = (char)c;
			tl = 1;
		} else {
			snprintf(tmp, sizeof tmp, "\\x%02x", c);
			tl = 4;
		}
		if (o + tl + 5 > outsz) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		memcpy(out + o, tmp, tl);
		o += tl;
	}
	if (!plain)
		out[o++] = '"';
	out[o] = '\0';
	return out;
}
