// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Container observer: abnormal exits of whole processes and OOM-killer victims, each with the
 * task's memory cgroup (id, path, usage, limit). Clean exits never leave the kernel.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "ebpf/common.bpf.h"
#include "ebpf/headers/container.h"

#define SIGNAL_GROUP_EXIT 0x00000004 /* include/linux/sched/signal.h */
#define LONG_MAX_U64	  0x7fffffffffffffffULL
#define PATH_MAX_DEPTH	  8
#define SCRATCH_LEN	  512 /* >= 255 (offset mask) + 256 (one name) */

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by the loader from sysconf(_SC_PAGESIZE) before load. */
const volatile __u64 page_size = 4096;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

/* Per-CPU scratch space to assemble a cgroup path before copying its tail into the record. */
struct path_scratch {
	char buf[SCRATCH_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct path_scratch);
} path_scratch SEC(".maps");

/*
 * Kernel-version differences, handled here only:
 * - v6.2 ("mm: convert mm's rss stats into percpu_counter") turned mm->rss_stat from
 *   struct mm_rss_stat { atomic_long_t count[]; } into struct percpu_counter rss_stat[];
 * - v6.15 ("kernfs: Use RCU to access kernfs_node::parent") renamed kernfs_node::parent to
 *   __parent.
 */
struct percpu_counter___new {
	s64 count;
} __attribute__((preserve_access_index));

struct mm_struct___new {
	struct percpu_counter___new rss_stat[4];
} __attribute__((preserve_access_index));

struct mm_rss_stat___old {
	atomic_long_t count[4];
} __attribute__((preserve_access_index));

struct mm_struct___old {
	struct mm_rss_stat___old rss_stat;
} __attribute__((preserve_access_index));

struct kernfs_node___new {
	struct kernfs_node *__parent;
} __attribute__((preserve_access_index));

struct kernfs_node___old {
	struct kernfs_node *parent;
} __attribute__((preserve_access_index));

/*
 * One mm counter, percpu_counter_read_positive()-style as get_mm_counter() reports it. The
 * index must be a literal: CO-RE relocates member offsets, not array strides of local types.
 */
#define RSS_COUNTER(mm, idx)                                                 \
	({                                                                   \
		struct mm_struct___new *_n = (void *)(mm);                   \
		struct mm_struct___old *_o = (void *)(mm);                   \
		__s64 _v = 0;                                                \
		if (bpf_core_field_exists(_n->rss_stat))                     \
			_v = BPF_CORE_READ(_n, rss_stat[idx].count);         \
		else                                                         \
			_v = BPF_CORE_READ(_o, rss_stat.count[idx].counter); \
		_v > 0 ? (__u64)_v : 0;                                      \
	})

static __always_inline __u64 task_rss_bytes(struct task_struct *task)
{
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	__u64 pages;

	if (!mm)
		return 0;
	/* MM_* indexes have been stable since v4.5 (MM_SHMEMPAGES = 3) */
	pages = RSS_COUNTER(mm, MM_FILEPAGES);
	pages += RSS_COUNTER(mm, MM_ANONPAGES);
	pages += RSS_COUNTER(mm, MM_SHMEMPAGES);
	return pages * page_size;
}

static __always_inline struct kernfs_node *kn_parent(struct kernfs_node *kn)
{
	struct kernfs_node___new *n = (void *)kn;
	struct kernfs_node___old *o = (void *)kn;

	if (bpf_core_field_exists(n->__parent))
		return BPF_CORE_READ(n, __parent);
	return BPF_CORE_READ(o, parent);
}

/*
 * Writes the path of `kn` below the hierarchy root into out ("/a/b/c", "/" for the root).
 * Deeper than PATH_MAX_DEPTH levels or longer than the buffer: the leaf end is kept and the
 * path starts with "...".
 */
static __always_inline void cgroup_path(struct kernfs_node *kn, char *out)
{
	struct kernfs_node *chain[PATH_MAX_DEPTH] = {};
	struct path_scratch *s;
	__u32 zero = 0, pos = 0, n = 0, sz, off;
	bool cut = false;
	long len;
	int i;

	for (i = 0; i < PATH_MAX_DEPTH + 1; i++) {
		struct kernfs_node *parent;

		if (!kn)
			break;
		parent = kn_parent(kn);
		if (!parent)
			break; /* kn is the hierarchy root: not part of the path */
		if (i == PATH_MAX_DEPTH) {
			cut = true;
			break;
		}
		chain[i] = kn;
		n++;
		kn = parent;
	}
	if (n == 0) {
		out[0] = '/';
		return;
	}
	s = bpf_map_lookup_elem(&path_scratch, &zero);
	if (!s)
		return;
	for (i = PATH_MAX_DEPTH - 1; i >= 0; i--) {
		const char *name;

		if ((__u32)i >= n)
			continue;
		name = BPF_CORE_READ(chain[i], name);
		s->buf[pos & 255] = '/';
		pos++;
		len = bpf_probe_read_kernel_str(&s->buf[pos & 255], 256, name);
		if (len > 1)
			pos += len - 1;
		if (pos > 255) {
			cut = true;
			break;
		}
	}
	if (pos > 255)
		pos = 255;
	if (!cut && pos < TAPIO_CGROUP_PATH_LEN) {
		sz = pos;
		barrier_var(sz); /* keep the mask: the verifier needs sz <= 127 */
		sz &= TAPIO_CGROUP_PATH_LEN - 1;
		bpf_probe_read_kernel(out, sz, s->buf);
		return;
	}
	/* keep the leaf: "..." + the last LEN - 4 characters (and the NUL of the zeroed record) */
	out[0] = '.';
	out[1] = '.';
	out[2] = '.';
	if (pos < TAPIO_CGROUP_PATH_LEN - 4) {
		/* cut by depth only: the whole assembled tail fits */
		sz = pos;
		barrier_var(sz);
		sz &= TAPIO_CGROUP_PATH_LEN - 1;
		if (sz > TAPIO_CGROUP_PATH_LEN - 4)
			sz = TAPIO_CGROUP_PATH_LEN - 4;
		bpf_probe_read_kernel(out + 3, sz, s->buf);
		return;
	}
	off = pos - (TAPIO_CGROUP_PATH_LEN - 4);
	barrier_var(off);
	off &= 255;
	bpf_probe_read_kernel(out + 3, TAPIO_CGROUP_PATH_LEN - 4, &s->buf[off]);
}

/* Memory cgroup facts of `task`, through the memory css: the same for cgroup v1 and v2. */
static __always_inline void fill_memcg(struct tapio_container_event *e, struct task_struct *task)
{
	int id = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
	struct cgroup_subsys_state *css = NULL;
	struct css_set *cset = BPF_CORE_READ(task, cgroups);
	struct mem_cgroup *memcg;
	struct kernfs_node *kn;
	__u64 usage, max;

	if (!cset || id < 0 || id >= 16)
		return;
	bpf_core_read(&css, sizeof(css), &cset->subsys[id]);
	if (!css)
		return;
	memcg = (struct mem_cgroup *)css; /* css is mem_cgroup's first member */
	usage = BPF_CORE_READ(memcg, memory.usage.counter);
	max = BPF_CORE_READ(memcg, memory.max);
	e->memory_usage_bytes = usage * page_size;
	/* PAGE_COUNTER_MAX is LONG_MAX / PAGE_SIZE: "max" means no limit */
	if (page_size && max < LONG_MAX_U64 / page_size)
		e->memory_limit_bytes = max * page_size;
	kn = BPF_CORE_READ(css, cgroup, kn);
	if (!kn)
		return;
	e->cgroup_id = BPF_CORE_READ(kn, id);
	cgroup_path(kn, e->cgroup_path);
}

static __always_inline void fill_task(struct tapio_container_event *e, struct task_struct *task)
{
	e->pid = BPF_CORE_READ(task, tgid);
	e->tid = BPF_CORE_READ(task, pid);
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->uid = BPF_CORE_READ(task, real_cred, uid.val);
	BPF_CORE_READ_STR_INTO(&e->comm, task, comm);
	fill_memcg(e, task);
}

static __always_inline bool exit_ignored(const struct tapio_config *cfg, int code)
{
	int status = (code >> 8) & 0xff;
	__u32 i;

	if (code & 0x7f)
		return false; /* killed by a signal: always reported */
	for (i = 0; i < TAPIO_MAX_IGNORED_EXIT_CODES; i++) {
		if (i >= cfg->n_ignored_exit_codes)
			break;
		if (cfg->ignored_exit_codes[i] == status)
			return true;
	}
	return false;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(handle_sched_process_exit, struct task_struct *p, bool group_dead)
{
	struct tapio_config cfg;
	struct tapio_container_event *e;
	struct signal_struct *sig;
	int code;

	if (!tapio_config_load(&cfg, TAPIO_F_CT_EXIT))
		return 0;
	if (!group_dead)
		return 0; /* a thread, not the whole process */
	/*
	 * do_group_exit() records the group's status in signal->group_exit_code and sets
	 * SIGNAL_GROUP_EXIT; the last thread may have been zapped by it. Otherwise (every
	 * thread left on its own) the last thread's exit_code is the process's status.
	 */
	sig = BPF_CORE_READ(p, signal);
	if (BPF_CORE_READ(sig, flags) & SIGNAL_GROUP_EXIT)
		code = BPF_CORE_READ(sig, group_exit_code);
	else
		code = BPF_CORE_READ(p, exit_code);
	if (code == 0 || exit_ignored(&cfg, code))
		return 0;

	e = tapio_reserve(&events, struct tapio_container_event);
	if (!e)
		return 0;
	e->config_generation = cfg.generation;
	e->ts_ns = bpf_ktime_get_ns();
	e->kind = TAPIO_CT_EXIT;
	e->exit_code = code;
	fill_task(e, p);
	tapio_submit(&events, e);
	return 0;
}

SEC("tp_btf/mark_victim")
int BPF_PROG(handle_mark_victim, struct task_struct *task, uid_t uid)
{
	struct tapio_config cfg;
	struct tapio_container_event *e;

	if (!tapio_config_load(&cfg, TAPIO_F_CT_OOM))
		return 0;
	e = tapio_reserve(&events, struct tapio_container_event);
	if (!e)
		return 0;
	e->config_generation = cfg.generation;
	e->ts_ns = bpf_ktime_get_ns();
	e->kind = TAPIO_CT_OOM_VICTIM;
	fill_task(e, task);
	e->uid = uid;
	e->rss_bytes = task_rss_bytes(task);
	tapio_submit(&events, e);
	return 0;
}
