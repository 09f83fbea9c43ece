// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Node observer: a per-CPU software timer (perf CPU_CLOCK) fires this program, which reads
 * the CPU's hardware counters and emits their cumulative values. Userspace classifies the
 * per-interval deltas.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "ebpf/common.bpf.h"
#include "ebpf/headers/node.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} events SEC(".maps");

/* One hardware perf event fd per CPU each; libbpf sizes them to the number of CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
} cycles SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
} instructions SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
} stalls SEC(".maps");

static __always_inline bool read_counter(void *map, __u64 *out)
{
	struct bpf_perf_event_value v = {};

	if (bpf_perf_event_read_value(map, BPF_F_CURRENT_CPU, &v, sizeof(v)))
		return false;
	*out = v.counter;
	return true;
}

SEC("perf_event")
int handle_pmc_tick(struct bpf_perf_event_data *ctx)
{
	struct tapio_config cfg;
	struct tapio_node_event *e;

	if (!tapio_config_load(&cfg, TAPIO_F_NODE_PMC))
		return 0;
	e = tapio_reserve(&events, struct tapio_node_event);
	if (!e)
		return 0;
	e->config_generation = cfg.generation;
	e->ts_ns = bpf_ktime_get_ns();
	e->cpu = bpf_get_smp_processor_id();
	if (read_counter(&cycles, &e->cycles))
		e->valid |= TAPIO_PMC_CYCLES;
	if (read_counter(&instructions, &e->instructions))
		e->valid |= TAPIO_PMC_INSTRUCTIONS;
	if (read_counter(&stalls, &e->stall_cycles))
		e->valid |= TAPIO_PMC_STALLS;
	if (!e->valid) {
		bpf_ringbuf_discard(e, 0); /* nothing was measured: no record */
		return 0;
	}
	tapio_submit(&events, e);
	return 0;
}
