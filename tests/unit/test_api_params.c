/* params: query-string parsing of the HTTP query API (docs/api.md), hostile inputs included. */
#include <criterion/criterion.h>
#include <string.h>

#include "common/clock.h"
#include "controller/params.h"

#define NOW   1795004402000000000ull /* 2026-11-18T12:20:02Z */
#define SEC   1000000000ull
#define QS(s) (s), strlen(s)

static struct occ_params occ_ok(const char *q)
{
	struct occ_params p;
	struct params_error e;

	cr_assert_eq(params_parse_occurrences(QS(q), NOW, &p, &e), 0, "%s: %s", q, e.message);
	return p;
}

static struct params_error occ_bad(const char *q, enum params_status want, const char *names)
{
	struct occ_params p;
	struct params_error e;

	cr_assert_eq(params_parse_occurrences(QS(q), NOW, &p, &e), -EINVAL, "%s accepted", q);
	cr_assert_eq(e.status, want, "%s: status %d (%s)", q, e.status, e.message);
	cr_assert(strstr(e.message, names), "%s: message '%s' does not name '%s'", q, e.message,
		  names);
	return e;
}

Test(params, unescape, .timeout = 10)
{
	char out[8];

	cr_assert_eq(params_unescape(QS("%41b+c"), out, sizeof(out)), 4);
	cr_assert_str_eq(out, "Ab c");
	cr_assert_eq(params_unescape(QS("%2c%2C"), out, sizeof(out)), 2);
	cr_assert_str_eq(out, ",,");
	cr_assert_eq(params_unescape(QS("%4"), out, sizeof(out)), -1);
	cr_assert_eq(params_unescape(QS("%"), out, sizeof(out)), -1);
	cr_assert_eq(params_unescape(QS("%zz"), out, sizeof(out)), -1);
	cr_assert_eq(params_unescape(QS("a%00b"), out, sizeof(out)), -1, "embedded NUL");
	cr_assert_eq(params_unescape(QS("12345678"), out, sizeof(out)), -1, "does not fit");
	cr_assert_eq(params_unescape(QS("1234567"), out, sizeof(out)), 7);
}

Test(params, times, .timeout = 10)
{
	uint64_t ns, want;

	cr_assert_eq(params_parse_time("30s", NOW, &ns), 0);
	cr_assert_eq(ns, NOW - 30 * SEC);
	cr_assert_eq(params_parse_time("15m", NOW, &ns), 0);
	cr_assert_eq(ns, NOW - 900 * SEC);
	cr_assert_eq(params_parse_time("24h", NOW, &ns), 0);
	cr_assert_eq(ns, NOW - 86400 * SEC);
	cr_assert_eq(params_parse_time("7d", NOW, &ns), 0);
	cr_assert_eq(ns, NOW - 7 * 86400 * SEC);
	cr_assert_eq(params_parse_time("2026-11-25T13:40:02.512034817Z", NOW, &ns), 0);
	cr_assert_eq(clock_parse_rfc3339("2026-11-25T13:40:02.512034817Z", &want), 0);
	cr_assert_eq(ns, want);
	cr_assert_eq(params_parse_time("2026-11-25T14:40:02+01:00", NOW, &ns), 0);
	cr_assert_eq(clock_parse_rfc3339("2026-11-25T13:40:02Z", &want), 0);
	cr_assert_eq(ns, want);
	const char *bad[] = {"",
			     "0s",
			     "5",
			     "5x",
			     "-5m",
			     "5ms",
			     "1.5h",
			     "m",
			     "5mm",
			     "5 m",
			     "99999999999999d",
			     "yesterday",
			     "2026-13-01T00:00:00Z",
			     "now",
			     "1e3s"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(params_parse_time(bad[i], NOW, &ns), -EINVAL, "'%s' accepted", bad[i]);
}

Test(params, occurrences_defaults_and_filters, .timeout = 10)
{
	struct occ_params p = occ_ok("");

	cr_assert_eq(p.limit, PARAMS_LIMIT_DEFAULT);
	cr_assert_eq(p.since_ns, 0);
	cr_assert_eq(p.until_ns, 0);
	cr_assert_eq(p.type_mask, 0);
	cr_assert_eq(p.min_severity, -1);
	cr_assert_not(p.has_node);
	cr_assert_not(p.has_cursor);

	p = occ_ok("type=kernel.network.connection_refused,kernel.container.oom_kill&limit=1000"
		   "&severity=warning&node=node%2Da&since=1h&until=2026-11-18T12:00:00Z");
	cr_assert_eq(p.type_mask,
		     (1u << TAPIO_OCC_CONNECTION_REFUSED) | (1u << TAPIO_OCC_OOM_KILL));
	cr_assert_eq(p.limit, 1000);
	cr_assert_eq(p.min_severity, TAPIO_SEV_WARNING);
	cr_assert(p.has_node);
	cr_assert_str_eq(p.node, "node-a");
	cr_assert_eq(p.since_ns, NOW - 3600 * SEC);
	cr_assert_eq(p.until_ns, NOW - 20 * 60 * SEC - 2 * SEC);
	p = occ_ok("limit=1&&");
	cr_assert_eq(p.limit, 1);
	/* the same filters hash the same, other filters differently */
	cr_assert_eq(occ_ok("type=kernel.node.cpu_stall&node=a").query_hash,
		     occ_ok("node=a&type=kernel.node.cpu_stall&limit=5").query_hash);
	cr_assert_neq(occ_ok("node=a").query_hash, occ_ok("node=b").query_hash);
	cr_assert_neq(occ_ok("since=1h").query_hash, occ_ok("until=1h").query_hash);
}

Test(params, occurrences_refusals_name_the_parameter, .timeout = 10)
{
	occ_bad("foo=1", PARAMS_BAD_PARAMETER, "'foo'");
	occ_bad("limit=5&limit=6", PARAMS_BAD_PARAMETER, "'limit'");
	occ_bad("limit=0", PARAMS_BAD_PARAMETER, "'limit'");
	occ_bad("limit=1001", PARAMS_BAD_PARAMETER, "'limit'");
	occ_bad("limit=-1", PARAMS_BAD_PARAMETER, "'limit'");
	occ_bad("limit=10a", PARAMS_BAD_PARAMETER, "'limit'");
	occ_bad("limit=99999999999999999999", PARAMS_BAD_PARAMETER, "'limit'");
	occ_bad("limit=", PARAMS_BAD_PARAMETER, "'limit'");
	occ_bad("limit", PARAMS_BAD_PARAMETER, "'limit'");
	occ_bad("since=yesterday", PARAMS_BAD_PARAMETER, "'since'");
	occ_bad("until=5x", PARAMS_BAD_PARAMETER, "'until'");
	occ_bad("since=1h&until=2h", PARAMS_BAD_PARAMETER, "'since'");
	occ_bad("type=kernel.network.nope", PARAMS_BAD_PARAMETER, "'type'");
	occ_bad("type=kernel.node.cpu_stall,", PARAMS_BAD_PARAMETER, "'type'");
	occ_bad("type=,kernel.node.cpu_stall", PARAMS_BAD_PARAMETER, "'type'");
	occ_bad("severity=loud", PARAMS_BAD_PARAMETER, "'severity'");
	occ_bad("node=%zz", PARAMS_BAD_PARAMETER, "'node'");
	occ_bad("node=0123456789012345678901234567890123456789012345678901234567890123",
		PARAMS_BAD_PARAMETER, "'node'");
	occ_bad("cursor=abc", PARAMS_BAD_CURSOR, "'cursor'");
	occ_bad("%zz=1", PARAMS_BAD_PARAMETER, "malformed");

	char big[PARAMS_MAX_QUERY + 16];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	occ_bad(big, PARAMS_BAD_PARAMETER, "longer");
}

Test(params, cursor_round_trip_and_tamper, .timeout = 10)
{
	struct params_cursor c = {.upper_segment = 7,
				  .upper_offset = 123456,
				  .last_segment = 3,
				  .last_offset = 99,
				  .since_ns = NOW - 3600 * SEC,
				  .until_ns = 0,
				  .query_hash = 0x0123456789abcdefull};
	struct params_cursor d;
	char buf[PARAMS_CURSOR_MAX];
	size_t n = params_cursor_encode(&c, buf, sizeof(buf));

	cr_assert_eq(n, strlen(buf));
	cr_assert_lt(n, PARAMS_CURSOR_MAX);
	cr_assert_eq(
	    strspn(buf, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), n,
	    "URL-safe alphabet only: %s", buf);
	cr_assert_eq(params_cursor_decode(buf, &d), 0);
	cr_assert_eq(memcmp(&c, &d, sizeof(c)), 0);
	for (size_t i = 0; i < n; i++) {
		char t[PARAMS_CURSOR_MAX];

		memcpy(t, buf, n + 1);
		t[i] = t[i] == 'A' ? 'B' : 'A';
		cr_assert_eq(params_cursor_decode(t, &d), -EINVAL, "flipped char %zu accepted", i);
	}
	buf[n - 1] = '\0';
	cr_assert_eq(params_cursor_decode(buf, &d), -EINVAL, "short cursor accepted");
	cr_assert_eq(params_cursor_decode("", &d), -EINVAL);
	/* a last position above the upper bound is not a cursor we made */
	c.last_segment = 8;
	params_cursor_encode(&c, buf, sizeof(buf));
	cr_assert_eq(params_cursor_decode(buf, &d), -EINVAL);
}

Test(params, cursor_belongs_to_its_query, .timeout = 10)
{
	struct occ_params first = occ_ok("type=kernel.node.cpu_stall&since=2h&limit=10");
	struct params_cursor c = {.upper_segment = 2,
				  .upper_offset = 500,
				  .last_segment = 2,
				  .last_offset = 100,
				  .since_ns = first.since_ns,
				  .until_ns = first.until_ns,
				  .query_hash = first.query_hash};
	char buf[PARAMS_CURSOR_MAX], q[512];
	struct occ_params next;

	params_cursor_encode(&c, buf, sizeof(buf));
	snprintf(q, sizeof(q), "type=kernel.node.cpu_stall&since=2h&limit=50&cursor=%s", buf);
	/* a later request resolves "2h" later, but the window stays the first page's */
	struct params_error e;
	cr_assert_eq(params_parse_occurrences(QS(q), NOW + 600 * SEC, &next, &e), 0, "%s",
		     e.message);
	cr_assert(next.has_cursor);
	cr_assert_eq(next.since_ns, first.since_ns);
	cr_assert_eq(next.limit, 50);
	cr_assert_eq(next.cursor.last_offset, 100);
	snprintf(q, sizeof(q), "type=kernel.node.oom_kill&since=2h&cursor=%s", buf);
	occ_bad(q, PARAMS_BAD_PARAMETER, "'type'");
	snprintf(q, sizeof(q), "type=kernel.container.oom_kill&since=2h&cursor=%s", buf);
	occ_bad(q, PARAMS_BAD_CURSOR, "another query");
	snprintf(q, sizeof(q), "type=kernel.node.cpu_stall&cursor=%s", buf);
	occ_bad(q, PARAMS_BAD_CURSOR, "another query");
}

Test(params, summary, .timeout = 10)
{
	struct summary_params s;
	struct params_error e;

	cr_assert_eq(params_parse_summary(QS("by=type"), NOW + 17 * SEC, &s, &e), 0);
	cr_assert_eq(s.by, AGG_BY_TYPE);
	cr_assert_eq(s.bucket_s, 60);
	cr_assert_eq(s.since_ns % (60 * SEC), 0);
	cr_assert_eq(s.until_ns % (60 * SEC), 0);
	cr_assert_leq(s.since_ns, NOW + 17 * SEC - 86400 * SEC);
	cr_assert_gt(s.until_ns, NOW + 17 * SEC, "until widened to the next minute");
	cr_assert_eq(params_parse_summary(QS("bucket=24h&by=node&since=7d&until=1h"), NOW, &s, &e),
		     0);
	cr_assert_eq(s.by, AGG_BY_NODE);
	cr_assert_eq(s.bucket_s, 86400);
	cr_assert_eq(params_parse_summary(QS("by=severity&bucket=5m"), NOW, &s, &e), 0);
	cr_assert_eq(s.by, AGG_BY_SEVERITY);
	cr_assert_eq(s.bucket_s, 300);

	const struct {
		const char *q, *names;
	} bad[] = {
	    {"", "'by'"},
	    {"by=color", "'by'"},
	    {"by=type&by=node", "'by'"},
	    {"by=type&bucket=90s", "'bucket'"},
	    {"by=type&bucket=30s", "'bucket'"},
	    {"by=type&bucket=25h", "'bucket'"},
	    {"by=type&bucket=2d", "'bucket'"},
	    {"by=type&since=soon", "'since'"},
	    {"by=type&since=1h&until=2h", "'since'"},
	    {"by=type&limit=5", "'limit'"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(params_parse_summary(QS(bad[i].q), NOW, &s, &e), -EINVAL, "%s",
			     bad[i].q);
		cr_assert_eq(e.status, PARAMS_BAD_PARAMETER);
		cr_assert(strstr(e.message, bad[i].names), "%s: %s", bad[i].q, e.message);
	}
}

Test(params, none, .timeout = 10)
{
	struct params_error e;

	cr_assert_eq(params_parse_none(NULL, 0, &e), 0);
	cr_assert_eq(params_parse_none(QS(""), &e), 0);
	cr_assert_eq(params_parse_none(QS("verbose=1"), &e), -EINVAL);
	cr_assert_eq(e.status, PARAMS_BAD_PARAMETER);
	cr_assert(strstr(e.message, "'verbose'"));
}

/* Random query strings: every one is either accepted or refused with a status and a message. */
Test(params, random_input_never_crashes, .timeout = 30)
{
	static const char alpha[] = "&=%+,:-._Tz0123456789abcdefsinceuntiltypenodelimitcursorby"
				    "severitybucketkernel\x80\xff";
	uint64_t x = 0x9e3779b97f4a7c15ull;
	char q[300];

	for (int round = 0; round < 20000; round++) {
		size_t n;
		struct occ_params p;
		struct summary_params s;
		struct params_cursor c;
		struct params_error e;
		int r;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		n = x % (sizeof(q) - 1);
		for (size_t i = 0; i < n; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			q[i] = alpha[x % (sizeof(alpha) - 1)];
		}
		q[n] = '\0';
		r = params_parse_occurrences(q, n, NOW, &p, &e);
		cr_assert(r == 0 || (r == -EINVAL && e.status != PARAMS_OK && e.message[0]), "%s",
			  q);
		if (r == 0)
			cr_assert(p.limit >= 1 && p.limit <= PARAMS_LIMIT_MAX);
		r = params_parse_summary(q, n, NOW, &s, &e);
		cr_assert(r == 0 ||
			      (r == -EINVAL && e.status == PARAMS_BAD_PARAMETER && e.message[0]),
			  "%s", q);
		if (r == 0)
			cr_assert(s.since_ns < s.until_ns && s.bucket_s >= 60);
		r = params_cursor_decode(q, &c);
		cr_assert(r == 0 || r == -EINVAL);
	}
}
