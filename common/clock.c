/* CLOCK_MONOTONIC → UTC mapping and RFC 3339 with nanoseconds, independent of TZ. */
#include "clock.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define NSEC_PER_SEC 1000000000ull

static int read_ns(clockid_t id, uint64_t *out)
{
	struct timespec ts;

	if (clock_gettime(id, &ts) != 0)
		return -errno;
	*out = (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
	return 0;
}

uint64_t clock_mono_ns(void)
{
	uint64_t v = 0;

	read_ns(CLOCK_MONOTONIC, &v);
	return v;
}

uint64_t clock_wall_ns(void)
{
	uint64_t v = 0;

	read_ns(CLOCK_REALTIME, &v);
	return v;
}

int clock_map_sync(struct clock_map *m)
{
	/*
	 * mono1, wall, mono2: the wall reading happened somewhere between the two monotonic
	 * ones, so the midpoint is off by at most half the window. A preemption inflates the
	 * window; of three tries keep the tightest.
	 */
	uint64_t best_window = UINT64_MAX;
	int64_t best = 0;

	for (int i = 0; i < 3; i++) {
		uint64_t m1 = 0, w = 0, m2 = 0;
		int err;

		if ((err = read_ns(CLOCK_MONOTONIC, &m1)) || (err = read_ns(CLOCK_REALTIME, &w)) ||
		    (err = read_ns(CLOCK_MONOTONIC, &m2)))
			return err;
		if (m2 - m1 < best_window) {
			best_window = m2 - m1;
			best = (int64_t)(w - (m1 + (m2 - m1) / 2));
		}
	}
	m->wall_minus_mono_ns = best;
	return 0;
}

uint64_t clock_map_to_wall(const struct clock_map *m, uint64_t mono_ns)
{
	return (uint64_t)((int64_t)mono_ns + m->wall_minus_mono_ns);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	const int64_t era = (y >= 0 ? y : y - 399) / 400;
	const unsigned yoe = (unsigned)(y - era * 400);
	const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	z += 719468;
	const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	const unsigned doe = (unsigned)(z - era * 146097);
	const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	const unsigned mp = (5 * doy + 2) / 153;

	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* Writes v as exactly `width` decimal digits (zero-padded; higher digits are dropped). */
static void put_digits(char *p, uint64_t v, int width)
{
	for (int i = width - 1; i >= 0; i--) {
		p[i] = (char)('0' + v % 10);
		v /= 10;
	}
}

/* Hand-rolled instead of snprintf: this runs for every occurrence written as JSON. */
int clock_format_rfc3339(uint64_t wall_ns, char *buf, size_t len)
{
	uint64_t secs = wall_ns / NSEC_PER_SEC;
	uint32_t nsec = (uint32_t)(wall_ns % NSEC_PER_SEC);
	uint32_t sod = (uint32_t)(secs % 86400);
	int64_t y;
	unsigned mo, d;

	if (len < 31)
		return -ENOSPC;
	civil_from_days((int64_t)(secs / 86400), &y, &mo, &d);
	if (y < 0 || y > 9999)
		return -ERANGE;
	put_digits(buf, (uint64_t)y, 4);
	buf[4] = '-';
	put_digits(buf + 5, mo, 2);
	buf[7] = '-';
	put_digits(buf + 8, d, 2);
	buf[10] = 'T';
	put_digits(buf + 11, sod / 3600, 2);
	buf[13] = ':';
	put_digits(buf + 14, sod / 60 % 60, 2);
	buf[16] = ':';
	put_digits(buf + 17, sod % 60, 2);
	buf[19] = '.';
	put_digits(buf + 20, nsec, 9);
	buf[29] = 'Z';
	buf[30] = '\0';
	return 30;
}

static bool digits(const char *s, int n, unsigned *out)
{
	unsigned v = 0;

	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*out = v;
	return true;
}

static bool leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int clock_parse_rfc3339(const char *s, uint64_t *wall_ns)
{
	static const unsigned mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	unsigned y, mo, d, h, mi, se, frac = 0, oh = 0, om = 0;
	int64_t offset_s = 0, total_s;
	const char *p;

	if (!s || strlen(s) < 20)
		return -EINVAL;
	if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
	    !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2, &h) ||
	    s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &se))
		return -EINVAL;
	if (mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || se > 59)
		return -EINVAL;
	if (d > mdays[mo - 1] + (mo == 2 && leap(y)))
		return -EINVAL;

	p = s + 19;
	if (*p == '.') {
		int n = 0;

		p++;
		while (p[n] >= '0' && p[n] <= '9')
			n++;
		if (n < 1 || n > 9)
			return -EINVAL;
		digits(p, n, &frac);
		for (int i = n; i < 9; i++)
			frac *= 10;
		p += n;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om) || oh > 23 ||
		    om > 59)
			return -EINVAL;
		offset_s = ((int64_t)oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
		p += 6;
	} else {
		return -EINVAL;
	}
	if (*p != '\0')
		return -EINVAL;

	total_s = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - offset_s;
	if (total_s < 0 || (uint64_t)total_s > UINT64_MAX / NSEC_PER_SEC - 1)
		return -EINVAL;
	*wall_ns = (uint64_t)total_s * NSEC_PER_SEC + frac;
	return 0;
}
