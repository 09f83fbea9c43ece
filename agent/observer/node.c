/* Node observer: PMC deltas per CPU (stalls, IPC) and PSI memory pressure. */
#include "agent/observer/node.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum node_verdict node_classify(const void *data, size_t len, const struct tapio_node_event **ev)
{
	const struct tapio_node_event *e = data;

	if (!data || len != sizeof(*e) || e->cpu >= NODE_MAX_CPUS)
		return NODE_MALFORMED;
	if (ev)
		*ev = e;
	return NODE_SAMPLE;
}

enum node_outcome node_judge(const struct node_counters *prev, const struct tapio_node_event *ev,
			     const struct tapio_settings *s, struct node_judgement *j)
{
	uint32_t both = prev->valid & ev->valid;

	memset(j, 0, sizeof(*j));
	if (!prev->primed)
		return NODE_PRIMED;
	if (((both & TAPIO_PMC_CYCLES) && ev->cycles < prev->cycles) ||
	    ((both & TAPIO_PMC_INSTRUCTIONS) && ev->instructions < prev->instructions) ||
	    ((both & TAPIO_PMC_STALLS) && ev->stall_cycles < prev->stall_cycles))
		return NODE_RESET;
	if (!(both & TAPIO_PMC_CYCLES))
		return NODE_IDLE;
	j->cycles = ev->cycles - prev->cycles;
	if (j->cycles == 0)
		return NODE_IDLE;
	if (both & TAPIO_PMC_INSTRUCTIONS) {
		j->instructions = ev->instructions - prev->instructions;
		j->have_ipc = true;
		j->ipc = (double)j->instructions / (double)j->cycles;
		j->ipc_low = s->pmc_ipc_min > 0 && j->ipc < s->pmc_ipc_min;
	}
	if (both & TAPIO_PMC_STALLS) {
		j->stall_cycles = ev->stall_cycles - prev->stall_cycles;
		j->have_stall = true;
		j->stall_pct = 100.0 * (double)j->stall_cycles / (double)j->cycles;
		if (s->pmc_stall_critical_pct > 0 && j->stall_pct >= s->pmc_stall_critical_pct) {
			j->stall = true;
			j->stall_severity = TAPIO_SEV_CRITICAL;
		} else if (s->pmc_stall_warning_pct > 0 &&
			   j->stall_pct >= s->pmc_stall_warning_pct) {
			j->stall = true;
			j->stall_severity = TAPIO_SEV_WARNING;
		}
	}
	return NODE_JUDGED;
}

void node_build_occurrence(const struct tapio_node_event *ev, enum tapio_occ_type type,
			   const struct node_judgement *j, const struct observer_ctx *ctx,
			   struct tapio_occurrence *occ)
{
	struct tapio_occ_node *n;

	occurrence_init(occ, type, clock_map_to_wall(ctx->clock, ev->ts_ns), ctx->node,
			ctx->cluster);
	occ->config_generation = ev->config_generation;
	n = &occ->data.node;
	n->cpu = (int32_t)ev->cpu;
	n->cycles = j->cycles;
	n->instructions = j->instructions;
	n->stall_cycles = j->stall_cycles;
	n->ipc = j->ipc;
	n->stall_pct = j->stall_pct;
	if (type == TAPIO_OCC_CPU_STALL) {
		occ->severity = j->stall_severity;
		observer_message(occ, "cpu %u stalled %.1f%% of %llu cycles", ev->cpu, j->stall_pct,
				 (unsigned long long)j->cycles);
	} else {
		observer_message(occ, "cpu %u ran %.2f instructions per cycle over %llu cycles",
				 ev->cpu, j->ipc, (unsigned long long)j->cycles);
	}
}

/* Parses "avg10=<number>" among the fields of one PSI line (after "some "/"full "). */
static int parse_avg10(const char *line, double *out)
{
	const char *p = strstr(line, "avg10=");
	char *end;
	double v;

	if (!p || (p != line && p[-1] != ' '))
		return -EINVAL;
	p += strlen("avg10=");
	errno = 0;
	v = strtod(p, &end);
	if (end == p || errno != 0 || (*end != ' ' && *end != '\0') || !isfinite(v) || v < 0 ||
	    v > 100)
		return -EINVAL;
	if (!strstr(line, "total="))
		return -EINVAL;
	*out = v;
	return 0;
}

int node_parse_psi(const char *text, size_t len, double *some_avg10, double *full_avg10)
{
	char buf[512];
	char *line, *save = NULL;
	bool have_some = false, have_full = false;
	double some = 0, full = 0;

	if (!text || len == 0 || len >= sizeof(buf) || memchr(text, '\0', len))
		return -EINVAL;
	memcpy(buf, text, len);
	buf[len] = '\0';
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "some ", 5) == 0 && !have_some) {
			if (parse_avg10(line + 5, &some) < 0)
				return -EINVAL;
			have_some = true;
		} else if (strncmp(line, "full ", 5) == 0 && !have_full) {
			if (parse_avg10(line + 5, &full) < 0)
				return -EINVAL;
			have_full = true;
		} else {
			return -EINVAL;
		}
	}
	if (!have_some)
		return -EINVAL;
	*some_avg10 = some;
	*full_avg10 = full;
	return 0;
}

void node_build_pressure_occurrence(double some_avg10, double full_avg10, uint64_t generation,
				    uint64_t now_mono_ns, const struct observer_ctx *ctx,
				    struct tapio_occurrence *occ)
{
	occurrence_init(occ, TAPIO_OCC_MEMORY_PRESSURE, clock_map_to_wall(ctx->clock, now_mono_ns),
			ctx->node, ctx->cluster);
	occ->config_generation = generation;
	occ->data.node.cpu = -1;
	occ->data.node.memory_some_avg10 = some_avg10;
	occ->data.node.memory_full_avg10 = full_avg10;
	observer_message(occ, "memory pressure some avg10 %.2f%%, full avg10 %.2f%%", some_avg10,
			 full_avg10);
}

struct node_observer {
	struct tapio_settings settings;
	struct observer_ctx ctx;
	uint64_t generation;
	bool psi_above;
	uint64_t psi_last_emit_ns;
	struct node_counters cpus[NODE_MAX_CPUS];
};

struct node_observer *node_observer_new(const struct tapio_settings *s,
					const struct observer_ctx *ctx)
{
	struct node_observer *o = calloc(1, sizeof(*o));

	if (!o)
		return NULL;
	o->settings = *s;
	o->ctx = *ctx;
	return o;
}

void node_observer_free(struct node_observer *o)
{
	free(o);
}

void node_observer_set_settings(struct node_observer *o, const struct tapio_settings *s)
{
	o->settings = *s;
}

void node_observer_set_generation(struct node_observer *o, uint64_t generation)
{
	o->generation = generation;
}

int node_observer_handle(struct node_observer *o, const void *data, size_t len)
{
	const struct tapio_node_event *ev = NULL;
	struct tapio_occurrence occ;
	struct node_judgement j;
	struct node_counters *prev;
	enum node_outcome out;

	o->ctx.stats->records++;
	if (node_classify(data, len, &ev) == NODE_MALFORMED) {
		o->ctx.stats->malformed++;
		return -EINVAL;
	}
	o->generation = ev->config_generation;
	prev = &o->cpus[ev->cpu];
	out = node_judge(prev, ev, &o->settings, &j);
	/* every sample becomes the base of the next interval, whatever it showed */
	prev->cycles = ev->cycles;
	prev->instructions = ev->instructions;
	prev->stall_cycles = ev->stall_cycles;
	prev->valid = ev->valid;
	prev->primed = true;
	if (out == NODE_RESET)
		o->ctx.stats->counter_resets++;
	if (out != NODE_JUDGED)
		return 0;
	if (j.stall) {
		node_build_occurrence(ev, TAPIO_OCC_CPU_STALL, &j, &o->ctx, &occ);
		observer_emit(&o->ctx, &occ);
	}
	if (j.ipc_low) {
		node_build_occurrence(ev, TAPIO_OCC_IPC_DEGRADATION, &j, &o->ctx, &occ);
		observer_emit(&o->ctx, &occ);
	}
	return 0;
}

int node_observer_psi(struct node_observer *o, const char *text, size_t len, uint64_t now_mono_ns)
{
	struct tapio_occurrence occ;
	double some, full;

	if (node_parse_psi(text, len, &some, &full) < 0) {
		o->ctx.stats->malformed++;
		return -EINVAL;
	}
	if (o->settings.memory_pressure_pct <= 0 || some < o->settings.memory_pressure_pct) {
		o->psi_above = false;
		return 0;
	}
	if (o->psi_above && now_mono_ns < o->psi_last_emit_ns + NODE_PSI_REPEAT_NS) {
		o->ctx.stats->suppressed++;
		return 0;
	}
	o->psi_above = true;
	o->psi_last_emit_ns = now_mono_ns;
	node_build_pressure_occurrence(some, full, o->generation, now_mono_ns, &o->ctx, &occ);
	observer_emit(&o->ctx, &occ);
	return 0;
}

void node_observer_tick(struct node_observer *o, uint64_t now_mono_ns)
{
	(void)o;
	(void)now_mono_ns;
}

void node_observer_flush(struct node_observer *o)
{
	(void)o;
}
