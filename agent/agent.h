/*
 * The agent runtime: one libuv loop that polls every observer's ring buffer, drives the
 * observers' clocks, encodes occurrences once and hands them to every sink, logs counters,
 * and shuts down cleanly on SIGINT/SIGTERM.
 */
#ifndef TAPIO_AGENT_H
#define TAPIO_AGENT_H

#include <stddef.h>
#include <stdint.h>

#include "agent/agent_config.h"
#include "agent/client/client.h"
#include "common/config_hash.h"
#include "agent/loader.h"
#include "agent/sink/sink.h"
#include "common/occurrence.h"

#define AGENT_MAX_SINKS	      4
#define AGENT_CONSUME_BUDGET  512 /* records per observer per poll callback */
#define AGENT_TICK_MS	      100 /* windows, ring drain for batched wakeups */
#define AGENT_CLOCK_RESYNC_MS 60000
#define AGENT_PSI_EVERY_TICKS 10 /* /proc/pressure/memory once a second */
#define AGENT_PSI_PATH	      "/proc/pressure/memory"

/* Everything a stats line or a future heartbeat reports. */
struct agent_counters {
	uint64_t events[TAPIO_OBS__COUNT]; /* ring-buffer records consumed per observer */
	uint64_t anomalies[TAPIO_OCC__COUNT];
	uint64_t suppressed;
	uint64_t malformed;
	uint64_t correlation_drops;
	uint64_t kernel[TAPIO_OBS__COUNT][TAPIO_KC__COUNT]; /* lost, map full, correlation miss */
	uint64_t encode_errors; /* occurrences that could not be encoded (never expected) */
	uint64_t occurrences;	/* occurrences handed to the sinks */
	unsigned n_sinks;
	const char *sink_names[AGENT_MAX_SINKS];
	struct sink_counters sinks[AGENT_MAX_SINKS];
	/* controller sink: the client's counters (zero without one, frozen once it closed) */
	bool has_controller;
	struct client_stats controller;
	uint64_t
	    controller_dropped; /* occurrences the client dropped (every cause), via on_dropped */
	uint64_t controller_acked; /* occurrences the controller acknowledged, via on_acked */
	uint64_t config_generation;
	char config_hash[CONFIG_HASH_LEN]; /* "sha256:<hex>" of the settings in effect */
};

struct agent;

/*
 * Builds the agent from a parsed config: syncs the clock, compiles the settings (config
 * generation 1), loads the BPF programs, creates observers and sinks. Returns NULL with one
 * line in err (e.g. "cannot load BPF programs: Operation not permitted (run as root …)").
 * The caller owns the result (agent_free).
 */
struct agent *agent_new(const struct agent_config *cfg, char *err, size_t errlen);

/*
 * Starts polling and runs the loop until SIGINT/SIGTERM, then drains the rings, flushes
 * observers and sinks and closes every handle. Returns 0 after a clean shutdown, or -EBUSY
 * when uv_loop_close() failed (a handle was left open; logged), or -errno from libuv setup.
 */
int agent_run(struct agent *a);

/*
 * Applies observer settings at `generation` (SIGHUP reload and controller ConfigPush both come
 * here): compiles them into the kernel carriers (no reload or re-attach), hands them to every
 * observer and reports generation/hash to the controller client. `hash` is "sha256:<hex>" of
 * the settings (NULL: computed here). The settings must be valid (settings_validate). Returns 0,
 * or -errno with the reason in err; on failure the running configuration stays.
 */
int agent_apply_settings(struct agent *a, const struct tapio_settings *s, uint64_t generation,
			 const char *hash, char *err, size_t errlen);

/* Asks the loop to shut down as SIGTERM would (thread-unsafe: call from the loop thread). */
void agent_stop(struct agent *a);

/* Copies the current counters (kernel counters read now). */
void agent_counters_snapshot(struct agent *a, struct agent_counters *out);

/* Frees an agent whose loop has ended (or never ran). NULL-safe. */
void agent_free(struct agent *a);

#endif
