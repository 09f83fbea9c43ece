/* Opens the node observer's perf events: hardware counters and software timers, per CPU. */
#include "agent/pmc.h"

#include <errno.h>
#include <linux/perf_event.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <bpf/libbpf.h>

struct pmc {
	int ncpus;
	int *fds[PMC__COUNT];
	int *timers;
};

static const struct {
	const char *name;
	uint64_t config;
} counters[PMC__COUNT] = {
    [PMC_CYCLES] = {"cycles", PERF_COUNT_HW_CPU_CYCLES},
    [PMC_INSTRUCTIONS] = {"instructions", PERF_COUNT_HW_INSTRUCTIONS},
    [PMC_STALLS] = {"stalled-cycles-backend", PERF_COUNT_HW_STALLED_CYCLES_BACKEND},
};

static int perf_open(uint32_t type, uint64_t config, uint64_t period, int cpu)
{
	struct perf_event_attr attr;
	long fd;

	memset(&attr, 0, sizeof(attr));
	attr.size = sizeof(attr);
	attr.type = type;
	attr.config = config;
	attr.sample_period = period;
	/* timers stay disabled until a BPF program is attached (libbpf enables them) */
	attr.disabled = period != 0;
	fd = syscall(SYS_perf_event_open, &attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC);
	return fd < 0 ? -errno : (int)fd;
}

enum observer_state pmc_state_from_errno(int err, char *reason, size_t len)
{
	if (err < 0)
		err = -err;
	switch (err) {
	case 0:
		if (len)
			reason[0] = '\0';
		return OBSERVER_RUNNING;
	case ENOENT:
	case EOPNOTSUPP:
	case ENODEV:
	case EINVAL:
		snprintf(reason, len, "no hardware PMU: perf_event_open(cycles): %s",
			 strerror(err));
		return OBSERVER_UNSUPPORTED;
	default:
		snprintf(reason, len, "perf_event_open(cycles): %s", strerror(err));
		return OBSERVER_FAILED;
	}
}

static int *fd_array(int n)
{
	int *a = malloc(sizeof(*a) * (size_t)n);
	int i;

	if (a)
		for (i = 0; i < n; i++)
			a[i] = -1;
	return a;
}

struct pmc *pmc_new(uint32_t interval_ms, enum observer_state *state, char *reason, size_t len)
{
	uint64_t period = (uint64_t)(interval_ms ? interval_ms : 1000) * 1000000ull;
	bool stalls_missing = false;
	struct pmc *p;
	int cpu, c, fd, online = 0;

	p = calloc(1, sizeof(*p));
	if (!p)
		goto nomem;
	p->ncpus = libbpf_num_possible_cpus();
	if (p->ncpus <= 0) {
		*state = OBSERVER_FAILED;
		snprintf(reason, len, "cannot count CPUs: %s", strerror(-p->ncpus));
		goto fail;
	}
	for (c = 0; c < PMC__COUNT; c++)
		if (!(p->fds[c] = fd_array(p->ncpus)))
			goto nomem;
	if (!(p->timers = fd_array(p->ncpus)))
		goto nomem;

	for (cpu = 0; cpu < p->ncpus; cpu++) {
		fd = perf_open(PERF_TYPE_HARDWARE, counters[PMC_CYCLES].config, 0, cpu);
		if (fd == -ENODEV && cpu > 0)
			continue; /* offline CPU */
		if (fd < 0) {
			*state = pmc_state_from_errno(fd, reason, len);
			goto fail;
		}
		p->fds[PMC_CYCLES][cpu] = fd;
		fd = perf_open(PERF_TYPE_HARDWARE, counters[PMC_INSTRUCTIONS].config, 0, cpu);
		if (fd < 0) {
			*state = pmc_state_from_errno(fd, reason, len);
			if (*state == OBSERVER_UNSUPPORTED)
				snprintf(reason, len,
					 "no usable PMU: perf_event_open(instructions): %s",
					 strerror(-fd));
			goto fail;
		}
		p->fds[PMC_INSTRUCTIONS][cpu] = fd;
		fd = perf_open(PERF_TYPE_HARDWARE, counters[PMC_STALLS].config, 0, cpu);
		if (fd < 0)
			stalls_missing = true;
		else
			p->fds[PMC_STALLS][cpu] = fd;
		fd = perf_open(PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK, period, cpu);
		if (fd < 0) {
			*state = OBSERVER_FAILED;
			snprintf(reason, len, "perf_event_open(cpu-clock, cpu %d): %s", cpu,
				 strerror(-fd));
			goto fail;
		}
		p->timers[cpu] = fd;
		online++;
	}
	if (online == 0) {
		*state = OBSERVER_UNSUPPORTED;
		snprintf(reason, len, "no online CPU accepted a hardware counter");
		goto fail;
	}
	if (stalls_missing) {
		*state = OBSERVER_DEGRADED;
		snprintf(reason, len, "stalled-cycles-backend not counted by this CPU");
	} else {
		*state = OBSERVER_RUNNING;
		if (len)
			reason[0] = '\0';
	}
	return p;

nomem:
	*state = OBSERVER_FAILED;
	snprintf(reason, len, "out of memory");
fail:
	pmc_free(p);
	return NULL;
}

void pmc_free(struct pmc *p)
{
	int c, cpu;

	if (!p)
		return;
	for (c = 0; c < PMC__COUNT; c++) {
		for (cpu = 0; p->fds[c] && cpu < p->ncpus; cpu++)
			if (p->fds[c][cpu] >= 0)
				close(p->fds[c][cpu]);
		free(p->fds[c]);
	}
	for (cpu = 0; p->timers && cpu < p->ncpus; cpu++)
		if (p->timers[cpu] >= 0)
			close(p->timers[cpu]);
	free(p->timers);
	free(p);
}

int pmc_ncpus(const struct pmc *p)
{
	return p->ncpus;
}

int pmc_counter_fd(const struct pmc *p, enum pmc_counter c, int cpu)
{
	if (c < 0 || c >= PMC__COUNT || cpu < 0 || cpu >= p->ncpus)
		return -1;
	return p->fds[c][cpu];
}

int pmc_take_timer_fd(struct pmc *p, int cpu)
{
	int fd;

	if (cpu < 0 || cpu >= p->ncpus)
		return -1;
	fd = p->timers[cpu];
	p->timers[cpu] = -1;
	return fd;
}
