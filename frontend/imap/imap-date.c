/* imap-date.c: see imap-date.h. */
#include "imap-date.h"

#include <strings.h>

static int imap_date_digits(const char *s, size_t n, int *v_r)
{
	int v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*v_r = v;
	return 0;
}

/* Days from 1970-01-01 to y-m-d of the proleptic Gregorian calendar
 * (H. Hinnant's days_from_civil). */
static int64_t imap_date_days(int y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int imap_date_month_days(int y, int m)
{
	static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return 29;
	return days[m - 1];
}

int imap_date_time_parse(const char *str, size_t len, int64_t *ms_r)
{
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	int day, mon = 0, year, hh, mm, ss, zh, zm;
	size_t i = 0;

	/* day: " d", "dd" or "d" */
	if (len >= 2 && str[0] == ' ') {
		if (imap_date_digits(str + 1, 1, &day) < 0)
			return -1;
		i = 2;
	} else if (len >= 2 && str[1] == '-') {
		if (imap_date_digits(str, 1, &day) < 0)
			return -1;
		i = 1;
	} else if (len >= 2 && imap_date_digits(str, 2, &day) == 0) {
		i = 2;
	} else {
		return -1;
	}
	/* "-Mon-yyyy hh:mm:ss +zzzz" is 24 bytes */
	if (len - i != 24 || str[i] != '-' || str[i + 4] != '-' || str[i + 9] != ' ' ||
	    str[i + 12] != ':' || str[i + 15] != ':' || str[i + 18] != ' ' ||
	    (str[i + 19] != '+' && str[i + 19] != '-'))
		return -1;
	for (int k = 0; k < 12; k++) {
		if (strncasecmp(str + i + 1, months + 3 * k, 3) == 0)
			mon = k + 1;
	}
	if (mon == 0 || imap_date_digits(str + i + 5, 4, &year) < 0 ||
	    imap_date_digits(str + i + 10, 2, &hh) < 0 ||
	    imap_date_digits(str + i + 13, 2, &mm) < 0 ||
	    imap_date_digits(str + i + 16, 2, &ss) < 0 ||
	    imap_date_digits(str + i + 20, 2, &zh) < 0 || imap_date_digits(str + i + 22, 2, &zm) < 0)
		return -1;
	if (year < 1000 || day < 1 || day > imap_date_month_days(year, mon) || hh > 23 || mm > 59 ||
	    ss > 60 || zh > 23 || zm > 59)
		return -1;
	if (ss == 60)
		ss = 59;
	int64_t zone = (int64_t)(zh * 60 + zm) * 60;
	if (str[i + 19] == '-')
		zone = -zone;
	int64_t t = imap_date_days(year, mon, day) * 86400 + hh * 3600 + mm * 60 + ss - zone;
	*ms_r = t * 1000;
	return 0;
}
