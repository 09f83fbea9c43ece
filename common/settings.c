/*
 * Observer settings: documented defaults, range checks that name the YAML key, and the
 * compilation to the kernel carrier. Ranges are listed in docs/configuration.md.
 */
#include "settings.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void settings_defaults(struct tapio_settings *s)
{
	memset(s, 0, sizeof(*s));
	s->network_enabled = true;
	s->container_enabled = true;
	s->storage_enabled = true;
	s->node_enabled = true;

	s->conn_refused_window_ms = 1000;
	s->conn_refused_min_count = 1;
	s->retransmit_window_ms = 1000;
	s->retransmit_burst_threshold = 3;
	s->rtt_spike_ratio = 2.0;
	s->rtt_absolute_ms = 500;
	s->rtt_baseline_samples = 5;
	s->rtt_baseline_max_ms = 100;
	s->rtt_sample_interval_ms = 100;

	s->n_ignored_exit_codes = 0;

	s->storage_warning_ms = 50;
	s->storage_critical_ms = 200;
	s->storage_window_ms = 1000;

	s->pmc_interval_ms = 1000;
	s->pmc_stall_warning_pct = 20.0;
	s->pmc_stall_critical_pct = 40.0;
	s->pmc_ipc_min = 1.0;
	s->memory_pressure_pct = 10.0;
}

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt,
						      ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

struct u32_range {
	const char *key;
	size_t offset;
	uint32_t min, max;
};

struct dbl_range {
	const char *key;
	size_t offset;
	double min, max;
};

#define U32(key, field, lo, hi)                                     \
	{                                                           \
		key, offsetof(struct tapio_settings, field), lo, hi \
	}
#define DBL(key, field, lo, hi)                                     \
	{                                                           \
		key, offsetof(struct tapio_settings, field), lo, hi \
	}

/* Windows and intervals: 1 ms .. 1 hour. A zero window would collapse nothing and a zero
 * interval would spin, so both are refused. */
static const struct u32_range u32_ranges[] = {
    U32("network.conn_refused_window_ms", conn_refused_window_ms, 1, 3600000),
    U32("network.conn_refused_min_count", conn_refused_min_count, 1, 1000000),
    U32("network.retransmit_window_ms", retransmit_window_ms, 1, 3600000),
    U32("network.retransmit_burst_threshold", retransmit_burst_threshold, 1, 1000000),
    U32("network.rtt_absolute_ms", rtt_absolute_ms, 1, 600000),
    U32("network.rtt_baseline_samples", rtt_baseline_samples, 1, 10000),
    U32("network.rtt_baseline_max_ms", rtt_baseline_max_ms, 1, 600000),
    U32("network.rtt_sample_interval_ms", rtt_sample_interval_ms, 1, 3600000),
    U32("storage.warning_ms", storage_warning_ms, 1, 3600000),
    U32("storage.critical_ms", storage_critical_ms, 1, 3600000),
    U32("storage.window_ms", storage_window_ms, 1, 3600000),
    U32("node.pmc_interval_ms", pmc_interval_ms, 10, 3600000),
};

static const struct dbl_range dbl_ranges[] = {
    DBL("network.rtt_spike_ratio", rtt_spike_ratio, 1.0, 100.0),
    DBL("node.stall_warning_pct", pmc_stall_warning_pct, 0.0, 100.0),
    DBL("node.stall_critical_pct", pmc_stall_critical_pct, 0.0, 100.0),
    DBL("node.ipc_min", pmc_ipc_min, 0.0, 16.0),
    DBL("node.memory_pressure_pct", memory_pressure_pct, 0.0, 100.0),
};

int settings_validate(const struct tapio_settings *s, char *err, size_t errlen)
{
	const char *base = (const char *)s;

	for (size_t i = 0; i < sizeof(u32_ranges) / sizeof(u32_ranges[0]); i++) {
		const struct u32_range *r = &u32_ranges[i];
		uint32_t v;

		memcpy(&v, base + r->offset, sizeof(v));
		if (v < r->min || v > r->max)
			return fail(err, errlen, "%s: %u out of range %u..%u", r->key, v, r->min,
				    r->max);
	}
	for (size_t i = 0; i < sizeof(dbl_ranges) / sizeof(dbl_ranges[0]); i++) {
		const struct dbl_range *r = &dbl_ranges[i];
		double v;

		memcpy(&v, base + r->offset, sizeof(v));
		/* written as a negation so NaN fails too */
		if (!(v >= r->min && v <= r->max))
			return fail(err, errlen, "%s: %g out of range %g..%g", r->key, v, r->min,
				    r->max);
	}

	if (s->storage_critical_ms < s->storage_warning_ms)
		return fail(err, errlen, "storage.critical_ms: %u is below storage.warning_ms %u",
			    s->storage_critical_ms, s->storage_warning_ms);
	if (s->pmc_stall_critical_pct < s->pmc_stall_warning_pct)
		return fail(err, errlen,
			    "node.stall_critical_pct: %g is below node.stall_warning_pct %g",
			    s->pmc_stall_critical_pct, s->pmc_stall_warning_pct);

	if (s->n_ignored_exit_codes > TAPIO_MAX_IGNORED_EXIT_CODES)
		return fail(err, errlen, "container.ignored_exit_codes: %u entries, at most %d",
			    s->n_ignored_exit_codes, TAPIO_MAX_IGNORED_EXIT_CODES);
	for (uint32_t i = 0; i < s->n_ignored_exit_codes; i++) {
		int32_t c = s->ignored_exit_codes[i];

		if (c < 0 || c > 255)
			return fail(err, errlen,
				    "container.ignored_exit_codes[%u]: %d out of range 0..255", i,
				    c);
		for (uint32_t j = 0; j < i; j++)
			if (s->ignored_exit_codes[j] == c)
				return fail(err, errlen,
					    "container.ignored_exit_codes[%u]: %d is a duplicate",
					    i, c);
	}
	return 0;
}

void settings_compile(const struct tapio_settings *s, uint64_t generation, struct tapio_config *out)
{
	uint32_t n;

	memset(out, 0, sizeof(*out));
	out->abi_version = TAPIO_ABI_VERSION;
	out->generation = generation;
	if (s->network_enabled)
		out->flags |= TAPIO_F_NET_CONNECT | TAPIO_F_NET_RETRANS | TAPIO_F_NET_RTT;
	if (s->container_enabled)
		out->flags |= TAPIO_F_CT_OOM | TAPIO_F_CT_EXIT;
	if (s->storage_enabled)
		out->flags |= TAPIO_F_ST_LATENCY | TAPIO_F_ST_ERROR;
	if (s->node_enabled)
		out->flags |= TAPIO_F_NODE_PMC;
	out->rtt_sample_interval_ns = (uint64_t)s->rtt_sample_interval_ms * 1000000ull;
	/* the kernel drops what userspace would never report: below the warning threshold */
	out->storage_latency_min_ns = (uint64_t)s->storage_warning_ms * 1000000ull;
	n = s->n_ignored_exit_codes;
	if (n > TAPIO_MAX_IGNORED_EXIT_CODES)
		n = TAPIO_MAX_IGNORED_EXIT_CODES;
	out->n_ignored_exit_codes = n;
	for (uint32_t i = 0; i < n; i++)
		out->ignored_exit_codes[i] = s->ignored_exit_codes[i];
}
