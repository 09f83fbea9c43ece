/*
 * Realistic synthetic occurrences (every type, plausible facts, severities per the catalogue)
 * shared by tapio-loadgen and tapio-storegen, from a small xorshift generator: the same seed
 * gives the same sequence.
 */
#ifndef TAPIO_TOOLS_OCCGEN_H
#define TAPIO_TOOLS_OCCGEN_H

#include <stdint.h>

#include "common/occurrence.h"

struct occgen {
	uint64_t rng;
};

void occgen_seed(struct occgen *g, uint64_t seed);

/* The next 64 random bits (xorshift64*; inline: loadgen draws one per occurrence). */
static inline uint64_t occgen_rnd(struct occgen *g)
{
	g->rng ^= g->rng >> 12;
	g->rng ^= g->rng << 25;
	g->rng ^= g->rng >> 27;
	return g->rng * 0x2545F4914F6CDD1Dull;
}

/* Uniform-ish in [0, n); n > 0. */
uint32_t occgen_below(struct occgen *g, uint32_t n);
/*
 * Fills *o with occurrence number i: type i % TAPIO_OCC__COUNT, node "node" (callers set the
 * real node), the given cluster, timestamps of now (collapsed repeats get first/last seen).
 */
void occgen_fill(struct occgen *g, struct tapio_occurrence *o, uint32_t i, const char *cluster);

#endif
