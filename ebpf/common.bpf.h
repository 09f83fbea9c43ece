/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Shared by every <observer>.bpf.c: the config carrier, the per-CPU kernel counters and the
 * helpers that read them. Include after vmlinux.h and the libbpf headers.
 */
#ifndef TAPIO_COMMON_BPF_H
#define TAPIO_COMMON_BPF_H

#include "ebpf/headers/tapio_config.h"

/* One entry, written by userspace; programs copy it to the stack once per invocation. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tapio_config);
} tapio_config_map SEC(".maps");

/* enum tapio_kcounter, per CPU: no atomics on the hot path; userspace sums the CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TAPIO_KC__COUNT);
	__type(key, __u32);
	__type(value, __u64);
} tapio_counters SEC(".maps");

static __always_inline void tapio_count(__u32 which)
{
	__u64 *v = bpf_map_lookup_elem(&tapio_counters, &which);

	if (v)
		*v += 1;
}

/*
 * Copies the carrier into *cfg. Returns true only when the config is of this ABI and the
 * `flag` bit (any of the bits when several are given) is set: all-zero is inert.
 */
static __always_inline bool tapio_config_load(struct tapio_config *cfg, __u64 flag)
{
	__u32 zero = 0;
	struct tapio_config *c = bpf_map_lookup_elem(&tapio_config_map, &zero);

	if (!c)
		return false;
	__builtin_memcpy(cfg, c, sizeof(*cfg));
	if (cfg->abi_version != TAPIO_ABI_VERSION)
		return false;
	return (cfg->flags & flag) != 0;
}

/* Reserves and zeroes one `type` record; counts a lost record when the ring is full. */
#define tapio_reserve(ring, type)                                      \
	({                                                             \
		type *_e = bpf_ringbuf_reserve(ring, sizeof(type), 0); \
		if (_e)                                                \
			__builtin_memset(_e, 0, sizeof(type));         \
		else                                                   \
			tapio_count(TAPIO_KC_RINGBUF_LOST);            \
		_e;                                                    \
	})

/*
 * Submits a reserved record, waking the reader only once TAPIO_WAKEUP_BYTES are waiting. A
 * wakeup per record costs the agent more than classifying the record; the agent also drains
 * every ring on its 100 ms tick, so a trickle is never held back longer than that.
 */
#define TAPIO_WAKEUP_BYTES (8 * 1024)

static __always_inline void tapio_submit(void *ring, void *record)
{
	__u64 flags = bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) >= TAPIO_WAKEUP_BYTES
			  ? BPF_RB_FORCE_WAKEUP
			  : BPF_RB_NO_WAKEUP;

	bpf_ringbuf_submit(record, flags);
}

#endif
