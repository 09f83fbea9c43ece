/* Test helpers shared by the observer tests: a capturing emit callback, a fixed clock map and
 * an observer_ctx wired to both. Header-only (static), included by one test file each. */
#ifndef TAPIO_TEST_OBS_CAPTURE_H
#define TAPIO_TEST_OBS_CAPTURE_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/observer/observer.h"

/* wall = mono + this (2023-11-14T22:13:20Z at mono 0) */
#define TEST_WALL_OFFSET 1700000000000000000ll
#define MS		 1000000ull
#define SEC		 1000000000ull
#define T0		 (1000 * SEC) /* a plausible monotonic time */

struct capture {
	struct tapio_occurrence *occ;
	size_t n;
	size_t cap;
};

static struct capture cap;
static struct observer_stats stats;
static struct clock_map test_clock = {.wall_minus_mono_ns = TEST_WALL_OFFSET};

static void on_capture(void *c, const struct tapio_occurrence *occ)
{
	struct capture *k = c;

	if (k->n == k->cap) {
		k->cap = k->cap ? k->cap * 2 : 64;
		k->occ = realloc(k->occ, k->cap * sizeof(*k->occ));
		cr_assert_not_null(k->occ);
	}
	k->occ[k->n++] = *occ;
}

static struct observer_ctx test_ctx = {
    .node = "node-a",
    .cluster = "prod",
    .clock = &test_clock,
    .emit = on_capture,
    .emit_ctx = &cap,
    .stats = &stats,
};

static inline uint64_t wall(uint64_t mono)
{
	return (uint64_t)((int64_t)mono + TEST_WALL_OFFSET);
}

static inline void capture_reset(void)
{
	free(cap.occ);
	memset(&cap, 0, sizeof(cap));
	memset(&stats, 0, sizeof(stats));
}

/* Every emitted occurrence must satisfy the model's invariants and carry the context. */
static inline void assert_valid(const struct tapio_occurrence *o)
{
	char err[128] = "";

	cr_assert_eq(occurrence_validate(o, err, sizeof(err)), 0, "invalid occurrence: %s", err);
	cr_assert_str_eq(o->node, "node-a");
	cr_assert_str_eq(o->cluster, "prod");
	cr_assert_eq(strlen(o->id), 26);
}

static inline void assert_all_valid(void)
{
	for (size_t i = 0; i < cap.n; i++)
		assert_valid(&cap.occ[i]);
}

static inline size_t count_type(enum tapio_occ_type t)
{
	size_t n = 0;

	for (size_t i = 0; i < cap.n; i++)
		n += cap.occ[i].type == t;
	return n;
}

#endif
