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

static const char digits2[200] = "00010203040506070809101112131415161718192021222324252627282930"
				 "31323334353637383940414243444546474849505152535455565758596061"
				 "62636465666768697071727374757677787980818283848586878889909192"
				 "93949596979899";

/* Writes v (0..99) as two digits. */
static inline void put2(char *p, unsigned v)
{
	memcpy(p, digits2 + 2 * v, 2);
}

/*
 * The last day formatted, per thread: the timestamps of a page (and the three of one
 * occurrence) mostly share their date, and the calendar conversion costs more than the rest.
 */
static _Thread_local struct {
	uint64_t day;
	char text[11]; /* "YYYY-MM-DDT" */
	bool valid;
} date_cache;

/* Hand-rolled instead of snprintf: this runs for every occurrence written as JSON. */
int clock_format_rfc3339(uint64_t wall_ns, char *buf, size_t len)
{
	uint64_t secs = wall_ns / NSEC_PER_SEC, day = secs / 86400;
	uint32_t nsec = (uint32_t)(wall_ns % NSEC_PER_SEC);
	uint32_t sod = (uint32_t)(secs % 86400), lo;

	if (len < 31)
		return -ENOSPC;
	if (!date_cache.valid || date_cache.day != day) {
		int64_t y;
		unsigned mo, d;

		civil_from_days((int64_t)day, &y, &mo, &d);
		if (y < 0 || y > 9999)
			return -ERANGE;
		put2(date_cache.text, (unsigned)(y / 100));
		put2(date_cache.text + 2, (unsigned)(y % 100));
		date_cache.text[4] = '-';
		put2(date_cache.text + 5, mo);
		date_cache.text[7] = '-';
		put2(date_cache.text + 8, d);
		date_cache.text[10] = 'T';
		date_cache.day = day;
		date_cache.valid = true;
	}
	memcpy(buf, date_cache.text, 11);
	put2(buf + 11, sod / 3600);
	buf[13] = ':';
	put2(buf + 14, sod / 60 % 60);
	buf[16] = ':';
	put2(buf + 17, sod % 60);
	buf[19] = '.';
	buf[20] = (char)('0' + nsec / 100000000);
	lo = nsec % 100000000;
	put2(buf + 21, lo / 1000000);
	put2(buf + 23, lo / 10000 % 100);
	put2(buf + 25, lo / 100 % 100);
	put2(buf + 27, lo % 100);
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
