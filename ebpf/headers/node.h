/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Node observer record: cumulative per-CPU counter values; userspace classifies deltas. */
#ifndef TAPIO_NODE_H
#define TAPIO_NODE_H

#include "tapio_types.h"

#define TAPIO_PMC_CYCLES       (1u << 0)
#define TAPIO_PMC_INSTRUCTIONS (1u << 1)
#define TAPIO_PMC_STALLS       (1u << 2)

struct tapio_node_event {
	__u64 config_generation;
	__u64 ts_ns; /* CLOCK_MONOTONIC */
	__u64 cycles;
	__u64 instructions;
	__u64 stall_cycles; /* stalled-cycles-backend */
	__u32 cpu;
	__u32 valid; /* TAPIO_PMC_* bits of the counters that were read */
};

TAPIO_STATIC_ASSERT(sizeof(struct tapio_node_event) == 48, "tapio_node_event ABI size");
TAPIO_STATIC_ASSERT(TAPIO_OFFSETOF(struct tapio_node_event, cycles) == 16, "cycles offset");
TAPIO_STATIC_ASSERT(TAPIO_OFFSETOF(struct tapio_node_event, cpu) == 40, "cpu offset");

#endif
