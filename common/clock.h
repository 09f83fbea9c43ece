/*
 * Kernel clock → wall time. BPF stamps records with bpf_ktime_get_ns() (CLOCK_MONOTONIC);
 * occurrences carry UTC. The offset is sampled (realtime - monotonic, bracketed to keep the
 * error small) at start and re-sampled periodically so NTP steps are followed.
 */
#ifndef TAPIO_CLOCK_H
#define TAPIO_CLOCK_H

#include <stddef.h>
#include <stdint.h>

struct clock_map {
	int64_t wall_minus_mono_ns;
};

/* Samples the current offset into *m. Returns 0 or -errno from clock_gettime. */
int clock_map_sync(struct clock_map *m);
/* Maps a CLOCK_MONOTONIC ns value to UTC ns since the epoch. */
uint64_t clock_map_to_wall(const struct clock_map *m, uint64_t mono_ns);

uint64_t clock_mono_ns(void);
uint64_t clock_wall_ns(void);

/*
 * Formats UTC ns as RFC 3339 with nanoseconds: "2026-11-25T13:23:12.123456789Z" (30 chars +
 * NUL). Returns 30, -ENOSPC if buf is too small (needs 31 bytes), or -ERANGE past year 9999.
 */
int clock_format_rfc3339(uint64_t wall_ns, char *buf, size_t len);
/*
 * Parses RFC 3339 (fraction optional, 'Z' or ±hh:mm offset). Returns 0 and *wall_ns, or
 * -EINVAL.
 */
int clock_parse_rfc3339(const char *s, uint64_t *wall_ns);

#endif
