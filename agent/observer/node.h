/* Node observer: per-CPU stall and IPC from PMC deltas, memory pressure from PSI. */
#ifndef TAPIO_OBS_NODE_H
#define TAPIO_OBS_NODE_H

#include <stdbool.h>

#include "ebpf/headers/node.h"
#include "agent/observer/observer.h"

#define NODE_MAX_CPUS 1024
/* While memory pressure stays above the threshold it is re-reported at most this often. */
#define NODE_PSI_REPEAT_NS (60ull * 1000000000ull)

enum node_verdict {
	NODE_MALFORMED = -1,
	NODE_SAMPLE = 0, /* a well-formed cumulative counter sample */
};

/* Pure: validates size and cpu (< NODE_MAX_CPUS); *ev points into data on success. */
enum node_verdict node_classify(const void *data, size_t len, const struct tapio_node_event **ev);

/* The previous cumulative values of one CPU. */
struct node_counters {
	uint64_t cycles;
	uint64_t instructions;
	uint64_t stall_cycles;
	uint32_t valid; /* TAPIO_PMC_* */
	bool primed;
};

enum node_outcome {
	NODE_PRIMED = 0, /* first sample of the CPU: nothing to compare with */
	NODE_RESET,	 /* a counter went backwards (reset/wrap): re-primed */
	NODE_IDLE,	 /* no cycles counted in the interval (or cycles not readable) */
	NODE_JUDGED,	 /* deltas computed; see the flags */
};

/* One interval of one CPU. */
struct node_judgement {
	uint64_t cycles; /* deltas over the interval */
	uint64_t instructions;
	uint64_t stall_cycles;
	bool have_ipc; /* cycles and instructions readable at both ends */
	bool have_stall;
	double ipc;
	double stall_pct;
	bool stall; /* stall_pct >= pmc_stall_warning_pct */
	enum tapio_severity stall_severity;
	bool ipc_low; /* ipc < pmc_ipc_min */
};

/*
 * Pure: compares a sample with the CPU's previous values (prev may be unprimed) and judges
 * the interval. Does not update prev.
 */
enum node_outcome node_judge(const struct node_counters *prev, const struct tapio_node_event *ev,
			     const struct tapio_settings *s, struct node_judgement *j);

/* Pure: fills *occ for cpu_stall (severity from j) or ipc_degradation. */
void node_build_occurrence(const struct tapio_node_event *ev, enum tapio_occ_type type,
			   const struct node_judgement *j, const struct observer_ctx *ctx,
			   struct tapio_occurrence *occ);

/*
 * Pure: parses /proc/pressure/memory content ("some avg10=… avg60=… avg300=… total=…\n
 * full …"). `text` need not be NUL-terminated. The "some" line is required; a missing
 * "full" line gives 0. Returns 0, or -EINVAL for anything else.
 */
int node_parse_psi(const char *text, size_t len, double *some_avg10, double *full_avg10);

/* Pure: fills *occ for memory_pressure (cpu = -1) observed at now_mono_ns. */
void node_build_pressure_occurrence(double some_avg10, double full_avg10, uint64_t generation,
				    uint64_t now_mono_ns, const struct observer_ctx *ctx,
				    struct tapio_occurrence *occ);

struct node_observer;

/* Returns a new observer (owned by the caller, release with _free), or NULL (ENOMEM). */
struct node_observer *node_observer_new(const struct tapio_settings *s,
					const struct observer_ctx *ctx);
void node_observer_free(struct node_observer *o);
void node_observer_set_settings(struct node_observer *o, const struct tapio_settings *s);
/* config_generation stamped on memory_pressure (PMC samples carry their own); the latest
 * PMC sample's generation is also remembered. */
void node_observer_set_generation(struct node_observer *o, uint64_t generation);
/* Consumes one raw PMC sample. Returns 0, or -EINVAL when malformed (counted). */
int node_observer_handle(struct node_observer *o, const void *data, size_t len);
/*
 * Judges one read of /proc/pressure/memory: emits memory_pressure on the rising edge above
 * memory_pressure_pct and then at most every NODE_PSI_REPEAT_NS while it stays above.
 * Returns 0, or -EINVAL when the text does not parse (counted as malformed).
 */
int node_observer_psi(struct node_observer *o, const char *text, size_t len, uint64_t now_mono_ns);
/* Nothing is windowed here; present so the loop drives every observer alike. */
void node_observer_tick(struct node_observer *o, uint64_t now_mono_ns);
void node_observer_flush(struct node_observer *o);

#endif
