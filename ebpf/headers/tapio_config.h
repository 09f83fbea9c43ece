/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Runtime configuration carrier: every BPF object owns a one-entry ARRAY map
 * `tapio_config_map` holding this struct. Userspace writes it; programs copy it to the
 * stack once per invocation. Config changes never reload or re-attach programs.
 *
 * All-zero is inert: a wrong abi_version or a clear flag bit means the program emits
 * nothing. No flag bit ever means "disable".
 */
#ifndef TAPIO_CONFIG_H
#define TAPIO_CONFIG_H

#include "tapio_types.h"

#define TAPIO_ABI_VERSION 1

/* Each bit enables one fact source; the matching observer is inert without it. */
#define TAPIO_F_NET_CONNECT (1u << 0) /* SYN_SENT -> CLOSE outcomes: refused, timeout */
#define TAPIO_F_NET_RETRANS (1u << 1) /* tcp_retransmit_skb */
#define TAPIO_F_NET_RTT	    (1u << 2) /* smoothed RTT samples of live connections */
#define TAPIO_F_CT_OOM	    (1u << 3) /* oom/mark_victim */
#define TAPIO_F_CT_EXIT	    (1u << 4) /* sched_process_exit of a whole process, abnormal only */
#define TAPIO_F_ST_LATENCY  (1u << 5) /* block completions slower than storage_latency_min_ns */
#define TAPIO_F_ST_ERROR    (1u << 6) /* block completions with an error status */
#define TAPIO_F_NODE_PMC    (1u << 7) /* per-CPU counter samples */

#define TAPIO_MAX_IGNORED_EXIT_CODES 8

struct tapio_config {
	__u32 abi_version; /* must equal TAPIO_ABI_VERSION, else inert */
	__u32 _pad0;
	__u64 generation; /* copied into every event as config_generation */
	__u64 flags;	  /* TAPIO_F_* */
	/* network: minimum spacing of RTT samples from one socket */
	__u64 rtt_sample_interval_ns;
	/* storage: completions faster than this are not reported (errors always are) */
	__u64 storage_latency_min_ns;
	/* container: exit codes (0..255) that are never reported */
	__u32 n_ignored_exit_codes;
	__s32 ignored_exit_codes[TAPIO_MAX_IGNORED_EXIT_CODES];
	__u32 _pad1;
	__u64 _reserved[4]; /* zero; room for additive fields within abi_version 1 */
};

TAPIO_STATIC_ASSERT(sizeof(struct tapio_config) == 112, "tapio_config ABI size");
TAPIO_STATIC_ASSERT(TAPIO_OFFSETOF(struct tapio_config, abi_version) == 0, "abi_version first");
TAPIO_STATIC_ASSERT(TAPIO_OFFSETOF(struct tapio_config, generation) == 8, "generation offset");
TAPIO_STATIC_ASSERT(TAPIO_OFFSETOF(struct tapio_config, flags) == 16, "flags offset");
TAPIO_STATIC_ASSERT(TAPIO_OFFSETOF(struct tapio_config, n_ignored_exit_codes) == 40,
		    "n_ignored_exit_codes offset");

/*
 * Kernel-side counters: every object owns a PERCPU_ARRAY `tapio_counters` indexed by this
 * enum; userspace sums the CPUs and exports them.
 */
enum tapio_kcounter {
	TAPIO_KC_RINGBUF_LOST = 0,     /* bpf_ringbuf_reserve failed: the record was lost */
	TAPIO_KC_MAP_FULL = 1,	       /* a correlation map update failed */
	TAPIO_KC_CORRELATION_MISS = 2, /* an end event found no start (e.g. started before load) */
	TAPIO_KC__COUNT = 3,
};

#endif
