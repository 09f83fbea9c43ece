/*
 * Hardware performance counters for the node observer: per CPU, cycles, instructions and
 * stalled-cycles-backend (read by the BPF program through PERF_EVENT_ARRAY maps), plus one
 * software CPU_CLOCK timer per CPU that fires the program every interval.
 * Machines without a hardware PMU (most VMs) make the observer UNSUPPORTED, never "running".
 */
#ifndef TAPIO_PMC_H
#define TAPIO_PMC_H

#include <stddef.h>
#include <stdint.h>

#include "agent/loader.h"

enum pmc_counter {
	PMC_CYCLES = 0,
	PMC_INSTRUCTIONS,
	PMC_STALLS, /* stalled-cycles-backend: optional, many CPUs lack it */
	PMC__COUNT,
};

struct pmc;

/*
 * Maps perf_event_open(cycles)'s errno (positive or negative; 0 = success) to the node
 * observer's state and writes a one-line reason into `reason` ("" when running).
 * ENOENT, EOPNOTSUPP, ENODEV, EINVAL: no usable hardware PMU -> OBSERVER_UNSUPPORTED.
 * EACCES, EPERM and anything else -> OBSERVER_FAILED. Pure; never fails.
 */
enum observer_state pmc_state_from_errno(int err, char *reason, size_t len);

/*
 * Opens the counters and timers on every online CPU. Returns the set (caller owns it, free
 * with pmc_free) with *state RUNNING, or DEGRADED when the optional stall counter is missing;
 * returns NULL with *state UNSUPPORTED/FAILED and a reason when the PMU is unusable.
 */
struct pmc *pmc_new(uint32_t interval_ms, enum observer_state *state, char *reason, size_t len);
void pmc_free(struct pmc *p);

/* Number of CPU slots (possible CPUs); fds of offline CPUs are -1. */
int pmc_ncpus(const struct pmc *p);
/* The counter's perf fd on `cpu`, or -1. Still owned by the pmc. */
int pmc_counter_fd(const struct pmc *p, enum pmc_counter c, int cpu);
/* Hands the timer fd of `cpu` over to the caller (e.g. a bpf_link that closes it); -1 if none. */
int pmc_take_timer_fd(struct pmc *p, int cpu);

#endif
