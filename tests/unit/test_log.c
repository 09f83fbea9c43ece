#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"

Test(log, level_parse_and_set, .timeout = 5)
{
	cr_assert_eq(log_level_parse("debug"), LOG_DEBUG);
	cr_assert_eq(log_level_parse("info"), LOG_INFO);
	cr_assert_eq(log_level_parse("warn"), LOG_WARN);
	cr_assert_eq(log_level_parse("error"), LOG_ERROR);
	cr_assert_eq(log_level_parse("Info"), -1);
	cr_assert_eq(log_level_parse("warning"), -1);
	cr_assert_eq(log_level_parse(NULL), -1);
	cr_assert_eq(log_get_level(), LOG_INFO, "default is info");
	log_set_level(LOG_ERROR);
	cr_assert_eq(log_get_level(), LOG_ERROR);
	log_set_level((enum log_level)42); /* ignored */
	cr_assert_eq(log_get_level(), LOG_ERROR);
}

static void read_stderr(char *buf, size_t len)
{
	FILE *f;
	size_t n;

	fflush(stderr);
	f = cr_get_redirected_stderr();
	n = fread(buf, 1, len - 1, f);
	buf[n] = '\0';
}

Test(log, line_format_and_filter, .init = cr_redirect_stderr, .timeout = 5)
{
	char out[1024], ts[32], level[8], tag[32], rest[64];
	unsigned y, mo, d, h, mi, s, ms;
	uint64_t parsed;

	log_debug("agent", "hidden %d", 1);
	log_info("agent", "started %s v%d", "x", 2);
	log_set_level(LOG_WARN);
	log_info("agent", "hidden too");
	log_warn("sink", "multi\n");
	log_error("store", "%s", "boom");
	read_stderr(out, sizeof(out));

	cr_assert_null(strstr(out, "hidden"), "%s", out);
	/* "2026-11-25T13:23:12.123Z info  [agent] started x v2" */
	cr_assert_eq(sscanf(out, "%31s %7s [%31[^]]] %63[^\n]", ts, level, tag, rest), 4, "%s",
		     out);
	cr_assert_eq(sscanf(ts, "%4u-%2u-%2uT%2u:%2u:%2u.%3uZ", &y, &mo, &d, &h, &mi, &s, &ms), 7,
		     "%s", ts);
	cr_assert_eq(strlen(ts), 24, "%s", ts);
	cr_assert_eq(clock_parse_rfc3339(ts, &parsed), 0, "%s", ts);
	cr_assert_lt(clock_wall_ns() - parsed, 5000000000ull);
	cr_assert_str_eq(level, "info");
	cr_assert_str_eq(tag, "agent");
	cr_assert_str_eq(rest, "started x v2");
	cr_assert_not_null(strstr(out, " info  [agent] started x v2\n"), "%s", out);
	/* a trailing newline in the message does not make an empty line */
	cr_assert_not_null(strstr(out, " warn  [sink] multi\n2"), "%s", out);
	cr_assert_not_null(strstr(out, " error [store] boom\n"), "%s", out);
}

Test(log, ratelimit_burst_then_window, .init = cr_redirect_stderr, .timeout = 5)
{
	struct log_ratelimit rl = {0};
	int ok = 0;
	char out[512];

	for (int i = 0; i < 10; i++)
		ok += log_ratelimit_ok(&rl, 100, 3);
	cr_assert_eq(ok, 3);
	cr_assert_eq(rl.suppressed, 7);
	usleep(120000);
	cr_assert_eq(log_ratelimit_ok(&rl, 100, 3), 1, "a new window allows again");
	cr_assert_eq(rl.suppressed, 0);
	read_stderr(out, sizeof(out));
	cr_assert_not_null(strstr(out, "7 messages suppressed"), "%s", out);
}
