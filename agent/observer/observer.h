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

#include <stdbool.h>
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
	uint64_t suppressed;	 /* facts judged but collapsed into another occurrence */
	uint64_t counter_resets; /* node: a cumulative PMC counter went backwards (re-primed) */
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

/* Formats occ->error_message (a factual one-line statement), truncating to fit. */
void observer_message(struct tapio_occurrence *occ, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Bounded state table shared by the stateful observers: open addressing with linear
 * probing over a fixed number of slots (power of two), at most 3/4 of them used so probes
 * stay short. Keys are fixed-size byte strings compared with memcmp (zero the padding);
 * values are fixed-size, zeroed on insert. No allocation after obs_table_init().
 */
#define OBS_TABLE_SLOTS 4096u

struct obs_table {
	unsigned char *slots;
	uint32_t n_slots;     /* power of two */
	uint32_t max_entries; /* n_slots * 3 / 4 */
	uint32_t n_entries;
	size_t key_len;
	size_t key_space; /* key_len rounded up to 8 */
	size_t val_len;
	size_t slot_len;
};

/* Allocates the slots. Returns 0, or -EINVAL (n_slots not a power of two) / -ENOMEM. */
int obs_table_init(struct obs_table *t, uint32_t n_slots, size_t key_len, size_t val_len);
/* Releases the slots; safe on a zeroed or already finished table. */
void obs_table_fini(struct obs_table *t);
/* Returns the value stored under key, or NULL. The pointer is valid until the next
 * insert or remove. */
void *obs_table_find(const struct obs_table *t, const void *key);
/* Inserts key (which must not be present) and returns its zeroed value, or NULL when the
 * table is full. */
void *obs_table_insert(struct obs_table *t, const void *key);
/* Returns the value in slot i (and its key through *key when non-NULL), NULL when empty. */
void *obs_table_at(const struct obs_table *t, uint32_t i, const void **key);
/*
 * Empties slot i, shifting later entries of the probe chain back. While iterating slots in
 * ascending order, re-examine slot i after a removal (an entry may have moved into it);
 * an entry may be visited twice, never skipped.
 */
void obs_table_remove_at(struct obs_table *t, uint32_t i);
/* Removes key if present. Returns 0, or -ENOENT. */
int obs_table_remove(struct obs_table *t, const void *key);
/* Empties the table. */
void obs_table_clear(struct obs_table *t);

#endif
