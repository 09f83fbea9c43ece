/*
 * One logger for every component: levels, a component tag, timestamps, to stderr.
 * Never log per event on a hot path: count, and use LOG_RATELIMITED.
 */
#ifndef TAPIO_LOG_H
#define TAPIO_LOG_H

#include <stdint.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Sets the minimum level printed (default LOG_INFO). */
void log_set_level(enum log_level level);
/* Parses "debug|info|warn|error"; returns the level or -1. */
int log_level_parse(const char *name);
enum log_level log_get_level(void);

/* Prints "2026-11-25T13:23:12.123Z info  [tag] message\n" to stderr. */
void log_msg(enum log_level level, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(tag, ...) log_msg(LOG_DEBUG, tag, __VA_ARGS__)
#define log_info(tag, ...)  log_msg(LOG_INFO, tag, __VA_ARGS__)
#define log_warn(tag, ...)  log_msg(LOG_WARN, tag, __VA_ARGS__)
#define log_error(tag, ...) log_msg(LOG_ERROR, tag, __VA_ARGS__)

/*
 * Rate limiter: at most `burst` messages per `interval_ms`; returns 1 when this message may
 * be printed. Keep one `struct log_ratelimit` (zero-initialised) per call site.
 */
struct log_ratelimit {
	uint64_t window_start_ms;
	uint32_t printed;
	uint32_t suppressed;
};
int log_ratelimit_ok(struct log_ratelimit *rl, uint32_t interval_ms, uint32_t burst);

#define LOG_RATELIMITED(level, tag, ...)                  \
	do {                                              \
		static struct log_ratelimit _rl;          \
		if (log_ratelimit_ok(&_rl, 5000, 5))      \
			log_msg(level, tag, __VA_ARGS__); \
	} while (0)

#endif
