/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Storage observer record: one completed block request that was slow or failed. */
#ifndef TAPIO_STORAGE_H
#define TAPIO_STORAGE_H

#include "tapio_types.h"

struct tapio_storage_event {
	__u64 config_generation;
	__u64 ts_ns;	  /* completion, CLOCK_MONOTONIC */
	__u64 latency_ns; /* issue -> completion */
	__u64 sector;
	__u32 bytes;
	__u32 dev;	 /* kernel dev_t: major << 20 | minor */
	__u32 pid;	 /* tgid that was current at issue (may be a kworker) */
	__u32 cmd_flags; /* rq->cmd_flags; opcode = cmd_flags & 0xff */
	__s32 error;	 /* blk_status_t at completion, 0 = ok */
	__u32 _pad;
	char comm[TAPIO_COMM_LEN];
};

TAPIO_STATIC_ASSERT(sizeof(struct tapio_storage_event) == 72, "tapio_storage_event ABI size");
TAPIO_STATIC_ASSERT(TAPIO_OFFSETOF(struct tapio_storage_event, bytes) == 32, "bytes offset");
TAPIO_STATIC_ASSERT(TAPIO_OFFSETOF(struct tapio_storage_event, error) == 48, "error offset");
TAPIO_STATIC_ASSERT(TAPIO_OFFSETOF(struct tapio_storage_event, comm) == 56, "comm offset");

#endif
