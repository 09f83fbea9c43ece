/* The logger: one line per message to stderr, "<RFC 3339 ms> <level> [tag] message". */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "clock.h"

static volatile enum log_level min_level = LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(enum log_level level)
{
	if ((unsigned)level <= LOG_ERROR)
		min_level = level;
}

enum log_level log_get_level(void)
{
	return min_level;
}

int log_level_parse(const char *name)
{
	if (!name)
		return -1;
	for (int i = 0; i <= LOG_ERROR; i++)
		if (strcmp(level_names[i], name) == 0)
			return i;
	return -1;
}

void log_msg(enum log_level level, const char *tag, const char *fmt, ...)
{
	char ts[32], line[1024];
	va_list ap;
	int n;

	if ((unsigned)level > LOG_ERROR || level < min_level)
		return;
	/* "….123456789Z" → keep milliseconds: cut after 3 fraction digits, re-add 'Z' */
	if (clock_format_rfc3339(clock_wall_ns(), ts, sizeof(ts)) > 0) {
		ts[23] = 'Z';
		ts[24] = '\0';
	} else {
		ts[0] = '\0';
	}
	n = snprintf(line, sizeof(line), "%s %-5s [%s] ", ts, level_names[level], tag ? tag : "-");
	if (n < 0)
		return;
	if ((size_t)n < sizeof(line)) {
		va_start(ap, fmt);
		vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
		va_end(ap);
	}
	/* one stdio call per line so concurrent writers do not interleave mid-line */
	n = (int)strlen(line);
	if (n > 0 && line[n - 1] == '\n')
		line[--n] = '\0';
	fprintf(stderr, "%s\n", line);
}

int log_ratelimit_ok(struct log_ratelimit *rl, uint32_t interval_ms, uint32_t burst)
{
	uint64_t now_ms = clock_mono_ns() / 1000000;

	if (rl->window_start_ms == 0 || now_ms - rl->window_start_ms >= interval_ms) {
		if (rl->suppressed)
			log_msg(LOG_WARN, "log", "%u messages suppressed by rate limit",
				rl->suppressed);
		rl->window_start_ms = now_ms ? now_ms : 1;
		rl->printed = 0;
		rl->suppressed = 0;
	}
	if (rl->printed < burst) {
		rl->printed++;
		return 1;
	}
	rl->suppressed++;
	return 0;
}
