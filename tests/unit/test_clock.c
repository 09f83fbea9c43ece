#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"

#define NS 1000000000ull

static void assert_format(uint64_t ns, const char *want)
{
	char buf[40];
	uint64_t back = 0;

	cr_assert_eq(clock_format_rfc3339(ns, buf, sizeof(buf)), 30, "%s", buf);
	cr_assert_str_eq(buf, want);
	cr_assert_eq(clock_parse_rfc3339(buf, &back), 0, "%s", buf);
	cr_assert_eq(back, ns, "%s", buf);
}

Test(clock, format_known_values, .timeout = 5)
{
	assert_format(0, "1970-01-01T00:00:00.000000000Z");
	assert_format(1795613992123456789ull, "2026-11-25T13:39:52.123456789Z");
	/* leap days */
	assert_format(951782400ull * NS, "2000-02-29T00:00:00.000000000Z");
	assert_format(1709164800ull * NS + 1, "2024-02-29T00:00:00.000000001Z");
	assert_format(4107542399ull * NS + 999999999, "2100-02-28T23:59:59.999999999Z");
	assert_format(4107542400ull * NS, "2100-03-01T00:00:00.000000000Z");
	/* last second of a year */
	assert_format(1767225599ull * NS, "2025-12-31T23:59:59.000000000Z");
}

Test(clock, format_needs_31_bytes, .timeout = 5)
{
	char buf[31];

	cr_assert_eq(clock_format_rfc3339(1, buf, 30), -ENOSPC);
	cr_assert_eq(clock_format_rfc3339(1, buf, 31), 30);
}

Test(clock, format_matches_gmtime, .timeout = 10)
{
	/* every ~37 hours over 60 years against libc's gmtime_r (TZ-independent) */
	for (uint64_t s = 0; s < 1900000000ull; s += 133337) {
		char want[64], got[40], frac[16];
		struct tm tm;
		time_t t = (time_t)s;

		gmtime_r(&t, &tm);
		strftime(want, sizeof(want), "%Y-%m-%dT%H:%M:%S", &tm);
		snprintf(frac, sizeof(frac), ".%09lluZ", (unsigned long long)(s % 1000));
		strcat(want, frac);
		clock_format_rfc3339(s * NS + s % 1000, got, sizeof(got));
		cr_assert_str_eq(got, want);
	}
}

static uint64_t parse_ok(const char *s)
{
	uint64_t v = 0;

	cr_assert_eq(clock_parse_rfc3339(s, &v), 0, "rejected %s", s);
	return v;
}

Test(clock, parse_fractions_and_offsets, .timeout = 5)
{
	uint64_t base = 1795613992ull * NS; /* 2026-11-25T13:39:52Z */

	cr_assert_eq(parse_ok("2026-11-25T13:39:52Z"), base);
	cr_assert_eq(parse_ok("2026-11-25T13:39:52.1Z"), base + 100000000);
	cr_assert_eq(parse_ok("2026-11-25T13:39:52.123Z"), base + 123000000);
	cr_assert_eq(parse_ok("2026-11-25T13:39:52.123456Z"), base + 123456000);
	cr_assert_eq(parse_ok("2026-11-25T13:39:52.000000007Z"), base + 7);
	cr_assert_eq(parse_ok("2026-11-25t13:39:52z"), base);
	cr_assert_eq(parse_ok("2026-11-25T15:39:52+02:00"), base);
	cr_assert_eq(parse_ok("2026-11-25T09:09:52.5-04:30"), base + 500000000);
	cr_assert_eq(parse_ok("2026-11-26T03:39:52+14:00"), base);
	cr_assert_eq(parse_ok("2026-11-25T13:39:52-00:00"), base);
	/* an offset that crosses a leap day */
	cr_assert_eq(parse_ok("2024-02-28T23:30:00-01:00"), 1709166600ull * NS);
	cr_assert_eq(parse_ok("2024-02-29T00:30:00Z"), 1709166600ull * NS);
}

Test(clock, parse_rejects_garbage, .timeout = 5)
{
	static const char *bad[] = {
	    "",
	    "garbage",
	    "2026-11-25",
	    "2026-11-25T13:39:52",	       /* no zone */
	    "2026-11-25 10:19:52Z",	       /* space */
	    "2026-11-25T13:39:52.Z",	       /* empty fraction */
	    "2026-11-25T13:39:52.1234567890Z", /* 10 digits */
	    "2026-13-01T00:00:00Z",	       /* month */
	    "2026-00-01T00:00:00Z",
	    "2026-11-31T00:00:00Z", /* 30 days */
	    "2025-02-29T00:00:00Z", /* not a leap year */
	    "2100-02-29T00:00:00Z", /* century, not leap */
	    "2026-11-25T24:00:00Z",
	    "2026-11-25T10:60:00Z",
	    "2026-11-25T10:19:60Z",
	    "2026-11-25T13:39:52+0200",
	    "2026-11-25T13:39:52+02",
	    "2026-11-25T13:39:52+24:00",
	    "2026-11-25T13:39:52Zjunk",
	    "2026-11-25T13:39:52.12a3Z",
	    "1969-12-31T23:59:59Z", /* before the epoch */
	    "1970-01-01T00:30:00+01:00",
	    "+026-11-25T10:19:52Z",
	    "2026-1a-25T10:19:52Z",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t v = 42;

		cr_assert_eq(clock_parse_rfc3339(bad[i], &v), -EINVAL, "accepted '%s'", bad[i]);
		cr_assert_eq(v, 42);
	}
	cr_assert_eq(clock_parse_rfc3339(NULL, NULL), -EINVAL);
}

Test(clock, parse_accepts_leap_days, .timeout = 5)
{
	parse_ok("2000-02-29T00:00:00Z");
	parse_ok("2024-02-29T23:59:59.999999999Z");
	parse_ok("2400-02-29T00:00:00Z");
}

Test(clock, map_tracks_realtime, .timeout = 5)
{
	struct clock_map m;
	struct timespec ts;
	uint64_t wall, mapped, diff;

	cr_assert_eq(clock_map_sync(&m), 0);
	for (int i = 0; i < 5; i++) {
		mapped = clock_map_to_wall(&m, clock_mono_ns());
		clock_gettime(CLOCK_REALTIME, &ts);
		wall = (uint64_t)ts.tv_sec * NS + (uint64_t)ts.tv_nsec;
		diff = wall > mapped ? wall - mapped : mapped - wall;
		cr_assert_lt(diff, 50000000ull, "mapped now is %llu ns off realtime",
			     (unsigned long long)diff);
	}
	/* monotonic mapping: later mono → later wall */
	cr_assert_lt(clock_map_to_wall(&m, 1000), clock_map_to_wall(&m, 2000));
	cr_assert_eq(clock_map_to_wall(&m, 2000) - clock_map_to_wall(&m, 1000), 1000);
}

Test(clock, now_functions, .timeout = 5)
{
	uint64_t a = clock_mono_ns(), b = clock_mono_ns();
	uint64_t w = clock_wall_ns();

	cr_assert_leq(a, b);
	cr_assert_gt(w, 1700000000ull * NS); /* after 2023 */
}

/* The format as snprintf + gmtime_r would write it (the reference for the cached one). */
static void ref_format(uint64_t ns, char out[64])
{
	struct tm tm;
	time_t t = (time_t)(ns / NS);

	gmtime_r(&t, &tm);
	snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%09lluZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned long long)(ns % NS));
}

Test(clock, format_cached_date_matches_reference, .timeout = 20)
{
	uint64_t x = 0x9e3779b97f4a7c15ull, ns = 1795613992123456789ull;

	/* runs within a day (the cached date), across midnights, and jumps between days */
	for (int i = 0; i < 400000; i++) {
		char want[64], got[40];

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		switch (x % 4) {
		case 0:
			ns = x % (253402300799ull * NS); /* anywhere up to 9999-12-31 */
			break;
		case 1:
			ns += x % NS;
			break;
		case 2:
			ns = (ns / (86400 * NS) + 1) * 86400 * NS - 1 + x % 3; /* around midnight */
			break;
		default:
			ns -= x % (3600 * NS) < ns ? x % (3600 * NS) : 0;
			break;
		}
		ref_format(ns, want);
		cr_assert_eq(clock_format_rfc3339(ns, got, sizeof(got)), 30);
		cr_assert_str_eq(got, want, "%llu", (unsigned long long)ns);
	}
	/* the largest input is in range (year 2554) */
	{
		char want[64], got[40];

		ref_format(UINT64_MAX, want);
		cr_assert_eq(clock_format_rfc3339(UINT64_MAX, got, sizeof(got)), 30);
		cr_assert_str_eq(got, want);
	}
}
