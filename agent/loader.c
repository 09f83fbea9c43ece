/*
 * Loads the embedded BPF skeletons, attaches what this kernel allows, and owns their ring
 * buffers, config carriers and kernel counters. See loader.h.
 */
#include "agent/loader.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "agent/pmc.h"
#include "common/log.h"

#include "container.skel.h"
#include "network.skel.h"
#include "node.skel.h"
#include "storage.skel.h"

#define TAG "loader"

/* Sentinel a sample callback returns once the budget is spent (libbpf keeps the position). */
#define BUDGET_SPENT (-ECANCELED)

struct loader_obj {
	struct loader *owner;
	enum tapio_observer obs;
	void *skel;
	struct bpf_object *obj; /* borrowed from skel */
	void (*destroy)(void *skel);
	struct bpf_map *cfg_map;
	struct bpf_map *counters_map;
	struct bpf_link **links;
	size_t nlinks, links_cap;
	struct ring_buffer *rb;
	int ring_fd;
	int budget, handled; /* valid during one loader_consume() */
	struct loader_status status;
};

struct loader {
	struct loader_obj o[TAPIO_OBS__COUNT];
	loader_record_fn on_record;
	void *ctx;
	struct pmc *pmc;
	int ncpus;
};

const char *observer_state_name(enum observer_state s)
{
	switch (s) {
	case OBSERVER_RUNNING:
		return "running";
	case OBSERVER_DEGRADED:
		return "degraded";
	case OBSERVER_DISABLED:
		return "disabled";
	case OBSERVER_UNSUPPORTED:
		return "unsupported";
	case OBSERVER_FAILED:
		return "failed";
	}
	return "unknown";
}

/* libbpf's own messages go through log.h: warnings at warn, the chatter at debug. */
static int on_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char buf[512];
	size_t n;

	if (level == LIBBPF_WARN ? log_get_level() > LOG_WARN : log_get_level() > LOG_DEBUG)
		return 0;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n && buf[n - 1] == '\n')
		buf[--n] = '\0';
	log_msg(level == LIBBPF_WARN ? LOG_WARN : LOG_DEBUG, "libbpf", "%s", buf);
	return 0;
}

/* ---- skeleton glue: the only per-observer code ---- */

static struct bpf_object *open_network(void **skel)
{
	struct network_bpf *s = network_bpf__open();

	*skel = s;
	return s ? s->obj : NULL;
}

static void destroy_network(void *s)
{
	network_bpf__destroy(s);
}

static struct bpf_object *open_container(void **skel)
{
	struct container_bpf *s = container_bpf__open();
	long page = sysconf(_SC_PAGESIZE);

	*skel = s;
	if (!s)
		return NULL;
	/* rss and memcg page counters are in pages; the program converts with this */
	s->rodata->page_size = page > 0 ? (uint64_t)page : 4096;
	return s->obj;
}

static void destroy_container(void *s)
{
	container_bpf__destroy(s);
}

static struct bpf_object *open_storage(void **skel)
{
	struct storage_bpf *s = storage_bpf__open();

	*skel = s;
	return s ? s->obj : NULL;
}

static void destroy_storage(void *s)
{
	storage_bpf__destroy(s);
}

static struct bpf_object *open_node(void **skel)
{
	struct node_bpf *s = node_bpf__open();

	*skel = s;
	return s ? s->obj : NULL;
}

static void destroy_node(void *s)
{
	node_bpf__destroy(s);
}

static const struct {
	struct bpf_object *(*open)(void **skel);
	void (*destroy)(void *skel);
} skel_ops[TAPIO_OBS__COUNT] = {
    [TAPIO_OBS_NETWORK] = {open_network, destroy_network},
    [TAPIO_OBS_CONTAINER] = {open_container, destroy_container},
    [TAPIO_OBS_STORAGE] = {open_storage, destroy_storage},
    [TAPIO_OBS_NODE] = {open_node, destroy_node},
};

/*
 * Parameters (including the leading context pointer) each tp_btf program reads: a kernel
 * whose tracepoint has fewer (older prototypes) cannot run the program.
 */
static const struct {
	const char *tp;
	unsigned nargs;
} tp_nargs[] = {
    {"inet_sock_set_state", 4}, {"tcp_receive_reset", 2},  {"tcp_retransmit_skb", 3},
    {"tcp_probe", 3},		{"sched_process_exit", 3}, {"mark_victim", 3},
    {"block_rq_issue", 2},	{"block_rq_complete", 4},
};

/* 0 when vmlinux BTF has btf_trace_<tp> with enough parameters, else -ENOENT/-EINVAL. */
static int tracepoint_usable(const struct btf *vmlinux, const char *tp)
{
	const struct btf_type *t;
	char name[128];
	unsigned need = 0;
	size_t i;
	int id;

	snprintf(name, sizeof(name), "btf_trace_%s", tp);
	id = btf__find_by_name_kind(vmlinux, name, BTF_KIND_TYPEDEF);
	if (id < 0)
		return -ENOENT;
	for (i = 0; i < sizeof(tp_nargs) / sizeof(tp_nargs[0]); i++)
		if (!strcmp(tp_nargs[i].tp, tp))
			need = tp_nargs[i].nargs;
	t = btf__type_by_id(vmlinux, id);
	t = t ? btf__type_by_id(vmlinux, t->type) : NULL; /* pointer */
	t = t && btf_is_ptr(t) ? btf__type_by_id(vmlinux, t->type) : NULL;
	if (!t || !btf_is_func_proto(t))
		return -EINVAL;
	return btf_vlen(t) >= need ? 0 : -EINVAL;
}

static void reason_append(struct loader_status *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void reason_append(struct loader_status *st, const char *fmt, ...)
{
	size_t used = strlen(st->reason);
	va_list ap;

	if (used >= sizeof(st->reason) - 1)
		return;
	if (used)
		used += (size_t)snprintf(st->reason + used, sizeof(st->reason) - used, "; ");
	if (used >= sizeof(st->reason) - 1)
		return;
	va_start(ap, fmt);
	vsnprintf(st->reason + used, sizeof(st->reason) - used, fmt, ap);
	va_end(ap);
}

static int links_push(struct loader_obj *o, struct bpf_link *link)
{
	struct bpf_link **n;

	if (o->nlinks == o->links_cap) {
		size_t cap = o->links_cap ? o->links_cap * 2 : 8;

		n = realloc(o->links, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		o->links = n;
		o->links_cap = cap;
	}
	o->links[o->nlinks++] = link;
	return 0;
}

static void obj_fini(struct loader_obj *o)
{
	size_t i;

	ring_buffer__free(o->rb);
	o->rb = NULL;
	for (i = 0; i < o->nlinks; i++)
		bpf_link__destroy(o->links[i]);
	free(o->links);
	o->links = NULL;
	o->nlinks = o->links_cap = 0;
	if (o->skel)
		o->destroy(o->skel);
	o->skel = NULL;
	o->obj = NULL;
	o->ring_fd = -1;
}

static void set_failed(struct loader_obj *o, const char *what, int err)
{
	o->status.state = OBSERVER_FAILED;
	o->status.programs_attached = 0;
	snprintf(o->status.reason, sizeof(o->status.reason), "%s: %s", what, strerror(-err));
	log_warn(TAG, "%s observer failed: %s", tapio_observer_name(o->obs), o->status.reason);
	obj_fini(o);
}

static int on_sample(void *ctx, void *data, size_t size)
{
	struct loader_obj *o = ctx;

	o->owner->on_record(o->owner->ctx, o->obs, data, size);
	if (++o->handled >= o->budget)
		return BUDGET_SPENT;
	return 0;
}

static int write_config(struct loader_obj *o, const struct tapio_config *cfg)
{
	uint32_t zero = 0;

	return bpf_map__update_elem(o->cfg_map, &zero, sizeof(zero), cfg, sizeof(*cfg), BPF_ANY);
}

/* Everything after attach: carrier, counters and ring buffer. */
static int obj_finish(struct loader_obj *o, const struct tapio_config *cfg)
{
	struct bpf_map *events;
	int err;

	o->cfg_map = bpf_object__find_map_by_name(o->obj, "tapio_config_map");
	o->counters_map = bpf_object__find_map_by_name(o->obj, "tapio_counters");
	events = bpf_object__find_map_by_name(o->obj, "events");
	if (!o->cfg_map || !o->counters_map || !events) {
		set_failed(o, "object lacks tapio_config_map/tapio_counters/events", -ENOENT);
		return -ENOENT;
	}
	err = write_config(o, cfg);
	if (err) {
		set_failed(o, "write tapio_config_map", err);
		return err;
	}
	o->ring_fd = bpf_map__fd(events);
	o->rb = ring_buffer__new(o->ring_fd, on_sample, o, NULL);
	if (!o->rb) {
		err = -errno;
		set_failed(o, "ring_buffer__new", err);
		return err;
	}
	return 0;
}

/* Open, check hooks against vmlinux BTF, load, attach each tp_btf program individually. */
static int load_tracing(struct loader_obj *o, const struct btf *vmlinux,
			const struct tapio_config *cfg)
{
	struct bpf_program *prog;
	struct bpf_link *link;
	int err;

	o->obj = skel_ops[o->obs].open(&o->skel);
	if (!o->obj) {
		err = -errno;
		set_failed(o, "open BPF object", err ? err : -EINVAL);
		return err ? err : -EINVAL;
	}
	bpf_object__for_each_program(prog, o->obj)
	{
		const char *sec = bpf_program__section_name(prog);
		const char *tp = strncmp(sec, "tp_btf/", 7) ? NULL : sec + 7;

		o->status.programs_total++;
		if (tp && tracepoint_usable(vmlinux, tp) < 0) {
			bpf_program__set_autoload(prog, false);
			reason_append(&o->status, "%s: hook missing in this kernel", tp);
			log_warn(TAG, "%s: tracepoint %s missing or older prototype: disabled",
				 tapio_observer_name(o->obs), tp);
		}
	}
	err = bpf_object__load(o->obj);
	if (err) {
		set_failed(o, "load BPF object", err);
		return err;
	}
	bpf_object__for_each_program(prog, o->obj)
	{
		if (!bpf_program__autoload(prog))
			continue;
		link = bpf_program__attach(prog);
		if (!link) {
			err = -errno;
			reason_append(&o->status, "%s: attach failed: %s", bpf_program__name(prog),
				      strerror(-err));
			log_warn(TAG, "%s: attach %s: %s", tapio_observer_name(o->obs),
				 bpf_program__name(prog), strerror(-err));
			continue;
		}
		if (links_push(o, link)) {
			bpf_link__destroy(link);
			set_failed(o, "attach", -ENOMEM);
			return -ENOMEM;
		}
		o->status.programs_attached++;
	}
	if (o->status.programs_attached == 0) {
		o->status.state = OBSERVER_FAILED;
		obj_fini(o);
		return -ENOENT;
	}
	o->status.state = o->status.programs_attached < o->status.programs_total ? OBSERVER_DEGRADED
										 : OBSERVER_RUNNING;
	return obj_finish(o, cfg);
}

/* The node observer runs only where the PMU is usable: timers fire, counters are read. */
static int load_node(struct loader *l, struct loader_obj *o, uint32_t interval_ms,
		     const struct tapio_config *cfg)
{
	static const char *const array_names[PMC__COUNT] = {
	    [PMC_CYCLES] = "cycles",
	    [PMC_INSTRUCTIONS] = "instructions",
	    [PMC_STALLS] = "stalls",
	};
	struct node_bpf *skel;
	enum observer_state pmc_state;
	unsigned cpus_ok = 0, cpus_bad = 0;
	int err, cpu, c, fd;

	o->status.programs_total = 1;
	l->pmc = pmc_new(interval_ms, &pmc_state, o->status.reason, sizeof(o->status.reason));
	if (!l->pmc) {
		o->status.state = pmc_state;
		log_info(TAG, "node observer %s: %s", observer_state_name(pmc_state),
			 o->status.reason);
		return pmc_state == OBSERVER_UNSUPPORTED ? 0 : -EIO;
	}
	o->obj = skel_ops[o->obs].open(&o->skel);
	if (!o->obj) {
		err = errno ? -errno : -EINVAL;
		set_failed(o, "open BPF object", err);
		return err;
	}
	err = bpf_object__load(o->obj);
	if (err) {
		set_failed(o, "load BPF object", err);
		return err;
	}
	skel = o->skel;
	for (cpu = 0; cpu < pmc_ncpus(l->pmc); cpu++) {
		for (c = 0; c < PMC__COUNT; c++) {
			struct bpf_map *m = bpf_object__find_map_by_name(o->obj, array_names[c]);
			uint32_t key = (uint32_t)cpu;

			fd = pmc_counter_fd(l->pmc, c, cpu);
			if (fd < 0 || !m)
				continue;
			if (bpf_map__update_elem(m, &key, sizeof(key), &fd, sizeof(fd), BPF_ANY))
				log_warn(TAG, "node: perf array %s cpu %d: %s", array_names[c], cpu,
					 strerror(errno));
		}
		fd = pmc_take_timer_fd(l->pmc, cpu);
		if (fd < 0)
			continue;
		/* the link owns the timer fd from here on and closes it */
		struct bpf_link *link =
		    bpf_program__attach_perf_event(skel->progs.handle_pmc_tick, fd);
		if (!link || links_push(o, link)) {
			if (link)
				bpf_link__destroy(link);
			else
				close(fd);
			cpus_bad++;
			continue;
		}
		cpus_ok++;
	}
	if (!cpus_ok) {
		set_failed(o, "attach perf_event timers", -ENODEV);
		return -ENODEV;
	}
	o->status.programs_attached = 1;
	if (pmc_state == OBSERVER_DEGRADED || cpus_bad) {
		o->status.state = OBSERVER_DEGRADED;
		if (cpus_bad)
			reason_append(&o->status, "timer attach failed on %u CPUs", cpus_bad);
	} else {
		o->status.state = OBSERVER_RUNNING;
	}
	return obj_finish(o, cfg);
}

struct loader *loader_new(const struct tapio_config *cfg, uint32_t pmc_interval_ms,
			  loader_record_fn on_record, void *ctx, int *err, char *errbuf,
			  size_t errlen)
{
	struct btf *vmlinux;
	struct loader *l;
	int i, rc, first_err = 0;
	bool any = false;

	libbpf_set_print(on_libbpf_print);
	l = calloc(1, sizeof(*l));
	if (!l) {
		*err = -ENOMEM;
		snprintf(errbuf, errlen, "out of memory");
		return NULL;
	}
	l->on_record = on_record;
	l->ctx = ctx;
	for (i = 0; i < TAPIO_OBS__COUNT; i++) {
		l->o[i].owner = l;
		l->o[i].obs = (enum tapio_observer)i;
		l->o[i].destroy = skel_ops[i].destroy;
		l->o[i].ring_fd = -1;
		l->o[i].status.state = OBSERVER_FAILED;
	}
	l->ncpus = libbpf_num_possible_cpus();
	if (l->ncpus <= 0) {
		*err = l->ncpus ? l->ncpus : -EINVAL;
		snprintf(errbuf, errlen, "libbpf_num_possible_cpus: %s", strerror(-*err));
		goto fail;
	}
	vmlinux = btf__load_vmlinux_btf();
	if (!vmlinux) {
		*err = -errno;
		snprintf(errbuf, errlen,
			 "kernel BTF unavailable (/sys/kernel/btf/vmlinux): %s; needs a kernel "
			 "built with CONFIG_DEBUG_INFO_BTF",
			 strerror(errno));
		goto fail;
	}
	for (i = TAPIO_OBS_NETWORK; i <= TAPIO_OBS_STORAGE; i++) {
		rc = load_tracing(&l->o[i], vmlinux, cfg);
		if (rc == 0)
			any = true;
		else if (!first_err)
			first_err = rc;
	}
	btf__free(vmlinux);
	if (!any) {
		*err = first_err ? first_err : -ENOENT;
		snprintf(errbuf, errlen, "no BPF observer could be loaded: network: %s",
			 l->o[TAPIO_OBS_NETWORK].status.reason);
		goto fail;
	}
	load_node(l, &l->o[TAPIO_OBS_NODE], pmc_interval_ms, cfg);
	for (i = 0; i < TAPIO_OBS__COUNT; i++)
		log_info(TAG, "%s observer %s (%u/%u programs)%s%s",
			 tapio_observer_name((enum tapio_observer)i),
			 observer_state_name(l->o[i].status.state),
			 l->o[i].status.programs_attached, l->o[i].status.programs_total,
			 l->o[i].status.reason[0] ? ": " : "", l->o[i].status.reason);
	*err = 0;
	return l;

fail:
	loader_free(l);
	return NULL;
}

void loader_free(struct loader *l)
{
	int i;

	if (!l)
		return;
	for (i = 0; i < TAPIO_OBS__COUNT; i++)
		obj_fini(&l->o[i]);
	pmc_free(l->pmc);
	free(l);
}

static bool obs_valid(enum tapio_observer obs)
{
	return (int)obs >= 0 && obs < TAPIO_OBS__COUNT;
}

const struct loader_status *loader_get_status(const struct loader *l, enum tapio_observer obs)
{
	if (!l || !obs_valid(obs))
		return NULL;
	return &l->o[obs].status;
}

int loader_ring_fd(const struct loader *l, enum tapio_observer obs)
{
	if (!l || !obs_valid(obs) || !l->o[obs].rb)
		return -1;
	return l->o[obs].ring_fd;
}

int loader_consume(struct loader *l, enum tapio_observer obs, int budget)
{
	struct loader_obj *o;
	int rc;

	if (!l || !obs_valid(obs))
		return -EINVAL;
	o = &l->o[obs];
	if (!o->rb)
		return -ENODEV;
	if (budget <= 0)
		return 0;
	o->budget = budget;
	o->handled = 0;
	rc = ring_buffer__consume(o->rb);
	if (rc < 0 && rc != BUDGET_SPENT)
		return rc;
	return o->handled;
}

int loader_apply_config(struct loader *l, const struct tapio_config *cfg)
{
	int i, rc, first = 0;

	if (!l || !cfg)
		return -EINVAL;
	for (i = 0; i < TAPIO_OBS__COUNT; i++) {
		if (!l->o[i].obj || !l->o[i].cfg_map)
			continue;
		rc = write_config(&l->o[i], cfg);
		if (rc && !first)
			first = rc;
	}
	return first;
}

int loader_kcounters(const struct loader *l, enum tapio_observer obs, uint64_t out[TAPIO_KC__COUNT])
{
	const struct loader_obj *o;
	uint64_t *vals;
	uint32_t k;
	int cpu, rc = 0;

	if (!l || !obs_valid(obs))
		return -EINVAL;
	memset(out, 0, sizeof(uint64_t) * TAPIO_KC__COUNT);
	o = &l->o[obs];
	if (!o->counters_map)
		return -ENODEV;
	vals = calloc((size_t)l->ncpus, sizeof(*vals));
	if (!vals)
		return -ENOMEM;
	for (k = 0; k < TAPIO_KC__COUNT; k++) {
		rc = bpf_map__lookup_elem(o->counters_map, &k, sizeof(k), vals,
					  sizeof(*vals) * (size_t)l->ncpus, 0);
		if (rc)
			break;
		for (cpu = 0; cpu < l->ncpus; cpu++)
			out[k] += vals[cpu];
	}
	free(vals);
	return rc;
}
