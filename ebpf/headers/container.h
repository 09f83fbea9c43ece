/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Container observer record (process exits and OOM victims), shared verbatim. */
#ifndef TAPIO_CONTAINER_H
#define TAPIO_CONTAINER_H

#include "tapio_types.h"

enum tapio_ct_kind {
	TAPIO_CT_EXIT = 1,	 /* a whole process (thread group) exited abnormally */
	TAPIO_CT_OOM_VICTIM = 2, /* the OOM killer marked this task as its victim */
};

#define TAPIO_CGROUP_PATH_LEN 128

struct tapio_container_event {
	__u64 config_generation;
	__u64 ts_ns;	 /* CLOCK_MONOTONIC */
	__u64 cgroup_id; /* kernfs id of the task's memory cgroup (its inode in cgroupfs) */
	__u64 memory_usage_bytes; /* memory cgroup usage at the event */
	__u64 memory_limit_bytes; /* memory cgroup limit; 0 when unlimited or unknown */
	__u64 rss_bytes;	  /* OOM victim: anon + file + shmem resident bytes */
	__u32 kind;		  /* enum tapio_ct_kind */
	__u32 pid;		  /* tgid */
	__u32 tid;
	__u32 ppid;
	__s32 exit_code; /* raw task->exit_code: (status << 8) | 0x80 core | signal */
	__u32 uid;
	char comm[TAPIO_COMM_LEN];
	/* memory cgroup path relative to the hierarchy root, "/" for the root; a leading
	 * "..." marks a path truncated on the left */
	char cgroup_path[TAPIO_CGROUP_PATH_LEN];
};

TAPIO_STATIC_ASSERT(sizeof(struct tapio_container_event) == 216, "tapio_container_event ABI size");
TAPIO_STATIC_ASSERT(TAPIO_OFFSETOF(struct tapio_container_event, kind) == 48, "kind offset");
TAPIO_STATIC_ASSERT(TAPIO_OFFSETOF(struct tapio_container_event, exit_code) == 64,
		    "exit_code offset");
TAPIO_STATIC_ASSERT(TAPIO_OFFSETOF(struct tapio_container_event, comm) == 72, "comm offset");
TAPIO_STATIC_ASSERT(TAPIO_OFFSETOF(struct tapio_container_event, cgroup_path) == 88,
		    "cgroup_path offset");

#endif
