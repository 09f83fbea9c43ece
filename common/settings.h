/*
 * Runtime knobs of every observer (SPEC §2), as userspace sees them, plus their compilation
 * to the kernel ABI carrier `struct tapio_config`. Shared by the agent (local config file)
 * and the controller (profiles).
 */
#ifndef TAPIO_SETTINGS_H
#define TAPIO_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ebpf/headers/tapio_config.h"

struct tapio_settings {
	/* observers */
	bool network_enabled;
	bool container_enabled;
	bool storage_enabled;
	bool node_enabled;

	/* network */
	uint32_t conn_refused_window_ms; /* collapse refusals to one destination, default 1000 */
	uint32_t conn_refused_min_count; /* refusals needed in a window to report, default 1 */
	uint32_t retransmit_window_ms;	 /* burst window per connection, default 1000 */
	uint32_t retransmit_burst_threshold; /* retransmits in a window that make a spike, 3 */
	double rtt_spike_ratio;		     /* current >= ratio * baseline, default 2.0 */
	uint32_t rtt_absolute_ms;	     /* or current >= this, default 500 */
	uint32_t rtt_baseline_samples;	     /* samples before a baseline is trusted, default 5 */
	uint32_t rtt_baseline_max_ms;	     /* baselines above this are not trusted, default 100 */
	uint32_t rtt_sample_interval_ms;     /* kernel spacing of samples per socket, default 100 */

	/* container */
	uint32_t n_ignored_exit_codes;
	int32_t ignored_exit_codes[TAPIO_MAX_IGNORED_EXIT_CODES];

	/* storage */
	uint32_t storage_warning_ms;  /* default 50 */
	uint32_t storage_critical_ms; /* default 200 */
	uint32_t storage_window_ms;   /* collapse repeats per device and type, default 1000 */

	/* node */
	uint32_t pmc_interval_ms;      /* sampling interval, default 1000 */
	double pmc_stall_warning_pct;  /* default 20 */
	double pmc_stall_critical_pct; /* default 40 */
	double pmc_ipc_min;	       /* default 1.0 */
	double memory_pressure_pct;    /* PSI memory "some" avg10 threshold, default 10 */
};

/* Fills *s with the documented defaults. */
void settings_defaults(struct tapio_settings *s);

/*
 * Checks ranges and contradictions (critical below warning, …). Returns 0, or -EINVAL with
 * a message naming the offending key (the YAML key name) in err.
 */
int settings_validate(const struct tapio_settings *s, char *err, size_t errlen);

/* Compiles *s into the kernel carrier for `generation`. Never fails; *out is fully written. */
void settings_compile(const struct tapio_settings *s, uint64_t generation,
		      struct tapio_config *out);

#endif
