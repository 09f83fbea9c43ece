/*
 * What every observer shares. Each observer (network.c, container.c, storage.c, node.c)
 * has two layers:
 *  - pure functions: `<name>_classify()` decides what one raw record is (a fact kind, a
 *    non-anomaly, or malformed) and `<name>_build_occurrence()` turns a judged fact into an
 *    occurrence. No I/O, no clocks, no globals: unit-tested with synthetic records.
 *  - a small stateful `struct <name>_observer` (windows, dedupe, baselines, per-CPU
 *    previous counters) driven by the loop: handle(record), tick(now), flush().
 * Occurrences leave through observer_ctx.emit; counters live in struct observer_stats.
 */
#ifndef TAPIO_OBSERVER_H
#define TAPIO_OBSERVER_H

#include <stddef.h>
#include <stdint.h>

#include "common/clock.h"
#include "common/occurrence.h"
#include "common/settings.h"

struct observer_stats {
	uint64_t records;	    /* records consumed from the ring buffer */
	uint64_t malformed;	    /* short / unknown-kind records, dropped */
	uint64_t correlation_drops; /* state tables full: a fact could not be tracked */
	uint64_t anomalies[TAPIO_OCC__COUNT];
	uint64_t suppressed; /* facts judged but collapsed into another occurrence */
};

typedef void (*observer_emit_fn)(void *emit_ctx, const struct tapio_occurrence *occ);

struct observer_ctx {
	const char *node;    /* never NULL */
	const char *cluster; /* may be "" */
	struct clock_map *clock;
	observer_emit_fn emit;
	void *emit_ctx;
	struct observer_stats *stats;
};

/* Observer-independent helpers (observer.c). */

/* Emits occ through ctx and counts it. */
void observer_emit(const struct observer_ctx *ctx, const struct tapio_occurrence *occ);

/* Copies a kernel comm (maybe not NUL-terminated) into dst[16], always terminated. */
void observer_copy_comm(char dst[TAPIO_OCC_COMM_LEN], const char *src);

#endif
