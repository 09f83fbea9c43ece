// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Storage observer: block requests that completed with an error or slower than
 * cfg.storage_latency_min_ns. Issue facts are kept per request until its completion.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "ebpf/common.bpf.h"
#include "ebpf/headers/storage.h"

#define ST_FLAGS (TAPIO_F_ST_LATENCY | TAPIO_F_ST_ERROR)

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

struct issue {
	__u64 ts_ns;
	__u64 sector;
	__u32 bytes;
	__u32 dev;
	__u32 pid;
	__u32 cmd_flags;
	char comm[TAPIO_COMM_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u64); /* struct request * */
	__type(value, struct issue);
} inflight SEC(".maps");

/* v5.16 ("block: remove rq->rq_disk") moved the disk to rq->q->disk. */
struct request___old {
	struct gendisk *rq_disk;
} __attribute__((preserve_access_index));

static __always_inline __u32 rq_dev(struct request *rq)
{
	struct request___old *old = (void *)rq;
	struct block_device *part = BPF_CORE_READ(rq, part);
	struct gendisk *disk;

	if (part)
		return BPF_CORE_READ(part, bd_dev);
	if (bpf_core_field_exists(old->rq_disk))
		disk = BPF_CORE_READ(old, rq_disk);
	else
		disk = BPF_CORE_READ(rq, q, disk);
	if (!disk)
		return 0;
	/* MKDEV(): the kernel's internal dev_t, major << 20 | minor */
	return ((__u32)BPF_CORE_READ(disk, major) << 20) | (__u32)BPF_CORE_READ(disk, first_minor);
}

SEC("tp_btf/block_rq_issue")
int BPF_PROG(handle_block_rq_issue, struct request *rq)
{
	struct tapio_config cfg;
	struct issue is = {};
	__u64 key = (__u64)rq;

	if (!tapio_config_load(&cfg, ST_FLAGS))
		return 0;
	is.ts_ns = bpf_ktime_get_ns();
	is.sector = BPF_CORE_READ(rq, __sector);
	is.bytes = BPF_CORE_READ(rq, __data_len);
	is.dev = rq_dev(rq);
	is.pid = bpf_get_current_pid_tgid() >> 32;
	is.cmd_flags = BPF_CORE_READ(rq, cmd_flags);
	bpf_get_current_comm(is.comm, sizeof(is.comm));
	if (bpf_map_update_elem(&inflight, &key, &is, BPF_ANY))
		tapio_count(TAPIO_KC_MAP_FULL);
	return 0;
}

SEC("tp_btf/block_rq_complete")
int BPF_PROG(handle_block_rq_complete, struct request *rq, blk_status_t error,
	     unsigned int nr_bytes)
{
	struct tapio_config cfg;
	struct tapio_storage_event *e;
	struct issue *found, is;
	__u64 key = (__u64)rq;
	__u64 now, latency;
	bool slow, failed;

	if (!tapio_config_load(&cfg, ST_FLAGS)) {
		/* turned off meanwhile: still forget the request so the map cannot fill up */
		bpf_map_delete_elem(&inflight, &key);
		return 0;
	}
	found = bpf_map_lookup_elem(&inflight, &key);
	if (!found) {
		tapio_count(TAPIO_KC_CORRELATION_MISS);
		return 0;
	}
	is = *found;
	bpf_map_delete_elem(&inflight, &key);

	now = bpf_ktime_get_ns();
	latency = now - is.ts_ns;
	slow = (cfg.flags & TAPIO_F_ST_LATENCY) && latency >= cfg.storage_latency_min_ns;
	failed = (cfg.flags & TAPIO_F_ST_ERROR) && error != 0;
	if (!slow && !failed)
		return 0;

	e = tapio_reserve(&events, struct tapio_storage_event);
	if (!e)
		return 0;
	e->config_generation = cfg.generation;
	e->ts_ns = now;
	e->latency_ns = latency;
	e->sector = is.sector;
	e->bytes = is.bytes;
	e->dev = is.dev;
	e->pid = is.pid;
	e->cmd_flags = is.cmd_flags;
	e->error = error;
	__builtin_memcpy(e->comm, is.comm, sizeof(e->comm));
	tapio_submit(&events, e);
	return 0;
}
