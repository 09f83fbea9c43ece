#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <string.h>

#include "common/settings.h"

Test(settings, defaults_match_spec, .timeout = 5)
{
	struct tapio_settings s;
	char err[160];

	memset(&s, 0x5a, sizeof(s));
	settings_defaults(&s);
	cr_assert(s.network_enabled && s.container_enabled && s.storage_enabled && s.node_enabled);
	cr_assert_eq(s.conn_refused_window_ms, 1000);
	cr_assert_eq(s.conn_refused_min_count, 1);
	cr_assert_eq(s.retransmit_window_ms, 1000);
	cr_assert_eq(s.retransmit_burst_threshold, 3);
	cr_assert_float_eq(s.rtt_spike_ratio, 2.0, 1e-12);
	cr_assert_eq(s.rtt_absolute_ms, 500);
	cr_assert_eq(s.rtt_baseline_samples, 5);
	cr_assert_eq(s.rtt_baseline_max_ms, 100);
	cr_assert_eq(s.rtt_sample_interval_ms, 100);
	cr_assert_eq(s.n_ignored_exit_codes, 0);
	for (int i = 0; i < TAPIO_MAX_IGNORED_EXIT_CODES; i++)
		cr_assert_eq(s.ignored_exit_codes[i], 0);
	cr_assert_eq(s.storage_warning_ms, 50);
	cr_assert_eq(s.storage_critical_ms, 200);
	cr_assert_eq(s.storage_window_ms, 1000);
	cr_assert_eq(s.pmc_interval_ms, 1000);
	cr_assert_float_eq(s.pmc_stall_warning_pct, 20.0, 1e-12);
	cr_assert_float_eq(s.pmc_stall_critical_pct, 40.0, 1e-12);
	cr_assert_float_eq(s.pmc_ipc_min, 1.0, 1e-12);
	cr_assert_float_eq(s.memory_pressure_pct, 10.0, 1e-12);
	cr_assert_eq(settings_validate(&s, err, sizeof(err)), 0, "%s", err);
}

struct bad_case {
	const char *key; /* expected at the start of the message */
	void (*mutate)(struct tapio_settings *s);
};

#define MUT(name, body)                            \
	static void name(struct tapio_settings *s) \
	{                                          \
		body;                              \
	}

MUT(zero_refused_window, s->conn_refused_window_ms = 0)
MUT(huge_refused_window, s->conn_refused_window_ms = 3600001)
MUT(zero_min_count, s->conn_refused_min_count = 0)
MUT(zero_retrans_window, s->retransmit_window_ms = 0)
MUT(zero_burst, s->retransmit_burst_threshold = 0)
MUT(low_ratio, s->rtt_spike_ratio = 0.99)
MUT(high_ratio, s->rtt_spike_ratio = 100.5)
MUT(nan_ratio, s->rtt_spike_ratio = NAN)
MUT(zero_abs, s->rtt_absolute_ms = 0)
MUT(zero_samples, s->rtt_baseline_samples = 0)
MUT(zero_baseline_max, s->rtt_baseline_max_ms = 0)
MUT(zero_sample_interval, s->rtt_sample_interval_ms = 0)
MUT(zero_storage_warning, s->storage_warning_ms = 0)
MUT(critical_below_warning, s->storage_critical_ms = 40)
MUT(zero_storage_window, s->storage_window_ms = 0)
MUT(fast_pmc, s->pmc_interval_ms = 9)
MUT(negative_stall, s->pmc_stall_warning_pct = -1)
MUT(stall_over_100, s->pmc_stall_critical_pct = 100.1)
MUT(stall_order, {
	s->pmc_stall_warning_pct = 50;
	s->pmc_stall_critical_pct = 30;
})
MUT(ipc_nan, s->pmc_ipc_min = NAN)
MUT(ipc_high, s->pmc_ipc_min = 17)
MUT(psi_high, s->memory_pressure_pct = 101)
MUT(too_many_codes, s->n_ignored_exit_codes = TAPIO_MAX_IGNORED_EXIT_CODES + 1)
MUT(code_negative, {
	s->n_ignored_exit_codes = 2;
	s->ignored_exit_codes[0] = 1;
	s->ignored_exit_codes[1] = -1;
})
MUT(code_256, {
	s->n_ignored_exit_codes = 1;
	s->ignored_exit_codes[0] = 256;
})
MUT(code_dup, {
	s->n_ignored_exit_codes = 3;
	s->ignored_exit_codes[0] = 1;
	s->ignored_exit_codes[1] = 143;
	s->ignored_exit_codes[2] = 1;
})

static const struct bad_case bad_cases[] = {
    {"network.conn_refused_window_ms", zero_refused_window},
    {"network.conn_refused_window_ms", huge_refused_window},
    {"network.conn_refused_min_count", zero_min_count},
    {"network.retransmit_window_ms", zero_retrans_window},
    {"network.retransmit_burst_threshold", zero_burst},
    {"network.rtt_spike_ratio", low_ratio},
    {"network.rtt_spike_ratio", high_ratio},
    {"network.rtt_spike_ratio", nan_ratio},
    {"network.rtt_absolute_ms", zero_abs},
    {"network.rtt_baseline_samples", zero_samples},
    {"network.rtt_baseline_max_ms", zero_baseline_max},
    {"network.rtt_sample_interval_ms", zero_sample_interval},
    {"storage.warning_ms", zero_storage_warning},
    {"storage.critical_ms", critical_below_warning},
    {"storage.window_ms", zero_storage_window},
    {"node.pmc_interval_ms", fast_pmc},
    {"node.stall_warning_pct", negative_stall},
    {"node.stall_critical_pct", stall_over_100},
    {"node.stall_critical_pct", stall_order},
    {"node.ipc_min", ipc_nan},
    {"node.ipc_min", ipc_high},
    {"node.memory_pressure_pct", psi_high},
    {"container.ignored_exit_codes", too_many_codes},
    {"container.ignored_exit_codes[1]", code_negative},
    {"container.ignored_exit_codes[0]", code_256},
    {"container.ignored_exit_codes[2]", code_dup},
};

Test(settings, validate_names_the_key, .timeout = 5)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		struct tapio_settings s;
		char err[160] = "";

		settings_defaults(&s);
		bad_cases[i].mutate(&s);
		cr_assert_eq(settings_validate(&s, err, sizeof(err)), -EINVAL, "case %zu (%s)", i,
			     bad_cases[i].key);
		cr_assert(strncmp(err, bad_cases[i].key, strlen(bad_cases[i].key)) == 0,
			  "case %zu: '%s' does not start with %s", i, err, bad_cases[i].key);
	}
}

Test(settings, validate_accepts_edges, .timeout = 5)
{
	struct tapio_settings s;
	char err[160];

	settings_defaults(&s);
	s.conn_refused_window_ms = 1;
	s.retransmit_window_ms = 3600000;
	s.rtt_spike_ratio = 1.0;
	s.storage_warning_ms = s.storage_critical_ms = 100; /* equal is fine */
	s.pmc_stall_warning_pct = s.pmc_stall_critical_pct = 100;
	s.pmc_ipc_min = 0;
	s.memory_pressure_pct = 0;
	s.n_ignored_exit_codes = TAPIO_MAX_IGNORED_EXIT_CODES;
	for (int i = 0; i < TAPIO_MAX_IGNORED_EXIT_CODES; i++)
		s.ignored_exit_codes[i] = i == 0 ? 0 : 248 + i;
	cr_assert_eq(settings_validate(&s, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(settings_validate(&s, NULL, 0), 0);
}

Test(settings, compile_defaults, .timeout = 5)
{
	struct tapio_settings s;
	struct tapio_config c;

	settings_defaults(&s);
	memset(&c, 0xff, sizeof(c));
	settings_compile(&s, 42, &c);
	cr_assert_eq(c.abi_version, TAPIO_ABI_VERSION);
	cr_assert_eq(c.generation, 42);
	cr_assert_eq(c.flags, TAPIO_F_NET_CONNECT | TAPIO_F_NET_RETRANS | TAPIO_F_NET_RTT |
				  TAPIO_F_CT_OOM | TAPIO_F_CT_EXIT | TAPIO_F_ST_LATENCY |
				  TAPIO_F_ST_ERROR | TAPIO_F_NODE_PMC);
	cr_assert_eq(c.rtt_sample_interval_ns, 100000000ull);
	cr_assert_eq(c.storage_latency_min_ns, 50000000ull);
	cr_assert_eq(c.n_ignored_exit_codes, 0);
	/* everything else is zero: padding, unused codes, reserved words */
	cr_assert_eq(c._pad0, 0);
	cr_assert_eq(c._pad1, 0);
	for (int i = 0; i < TAPIO_MAX_IGNORED_EXIT_CODES; i++)
		cr_assert_eq(c.ignored_exit_codes[i], 0);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(c._reserved[i], 0);
}

Test(settings, compile_enable_bits_and_codes, .timeout = 5)
{
	struct tapio_settings s;
	struct tapio_config c;

	settings_defaults(&s);
	s.network_enabled = false;
	s.node_enabled = false;
	s.storage_warning_ms = 75;
	s.rtt_sample_interval_ms = 250;
	s.n_ignored_exit_codes = 2;
	s.ignored_exit_codes[0] = 1;
	s.ignored_exit_codes[1] = 143;
	settings_compile(&s, 7, &c);
	cr_assert_eq(c.flags,
		     TAPIO_F_CT_OOM | TAPIO_F_CT_EXIT | TAPIO_F_ST_LATENCY | TAPIO_F_ST_ERROR);
	cr_assert_eq(c.storage_latency_min_ns, 75000000ull);
	cr_assert_eq(c.rtt_sample_interval_ns, 250000000ull);
	cr_assert_eq(c.n_ignored_exit_codes, 2);
	cr_assert_eq(c.ignored_exit_codes[0], 1);
	cr_assert_eq(c.ignored_exit_codes[1], 143);
	cr_assert_eq(c.ignored_exit_codes[2], 0);

	s.container_enabled = false;
	s.storage_enabled = false;
	settings_compile(&s, 8, &c);
	cr_assert_eq(c.flags, 0, "all observers off is inert");
	cr_assert_eq(c.abi_version, TAPIO_ABI_VERSION);

	/* an unvalidated oversize count is clamped, never overruns the carrier */
	s.n_ignored_exit_codes = 1000;
	settings_compile(&s, 9, &c);
	cr_assert_eq(c.n_ignored_exit_codes, TAPIO_MAX_IGNORED_EXIT_CODES);
}
