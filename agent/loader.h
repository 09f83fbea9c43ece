/*
 * Loads the four embedded BPF objects (skeletons), attaches what this kernel allows, owns
 * their ring buffers, config carriers and kernel counters. A program that cannot attach is
 * disabled before load and reported; the other observers keep running.
 */
#ifndef TAPIO_LOADER_H
#define TAPIO_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/occurrence.h"
#include "ebpf/headers/tapio_config.h"

enum observer_state {
	OBSERVER_RUNNING = 0,
	OBSERVER_DEGRADED,    /* running, but some programs could not attach (reason says which) */
	OBSERVER_DISABLED,    /* switched off by config (programs stay attached, inert) */
	OBSERVER_UNSUPPORTED, /* this kernel/hardware cannot provide it (e.g. no PMU) */
	OBSERVER_FAILED,      /* load/attach failed; reason says why */
};

const char *observer_state_name(enum observer_state s); /* "running", … */

struct loader_status {
	enum observer_state state;
	char reason[192]; /* "" when running */
	unsigned programs_attached;
	unsigned programs_total;
};

/* Called for every ring-buffer record, in the loop thread, from loader_consume(). */
typedef void (*loader_record_fn)(void *ctx, enum tapio_observer obs, const void *data, size_t len);

struct loader;

/*
 * Opens, loads and attaches every observer's object and writes `cfg` into every carrier.
 * Never fails for one observer alone (see loader_get_status); returns NULL with -errno in
 * *err only when nothing could be loaded at all (no BTF, no privileges, …) and a message in
 * errbuf. `pmc_interval_ms` sets the node observer's sampling period.
 */
struct loader *loader_new(const struct tapio_config *cfg, uint32_t pmc_interval_ms,
			  loader_record_fn on_record, void *ctx, int *err, char *errbuf,
			  size_t errlen);
void loader_free(struct loader *l);

const struct loader_status *loader_get_status(const struct loader *l, enum tapio_observer obs);

/* The ring buffer's pollable fd (the BPF map fd), or -1 when the observer is not running. */
int loader_ring_fd(const struct loader *l, enum tapio_observer obs);

/*
 * Consumes at most `budget` records of one observer's ring buffer, calling on_record for
 * each. Returns the number consumed (== budget means more may be waiting), or -errno.
 */
int loader_consume(struct loader *l, enum tapio_observer obs, int budget);

/* Writes cfg into every object's carrier (no reload, no re-attach). Returns 0 or -errno. */
int loader_apply_config(struct loader *l, const struct tapio_config *cfg);

/* Sums one observer's per-CPU kernel counters (enum tapio_kcounter). Returns 0 or -errno. */
int loader_kcounters(const struct loader *l, enum tapio_observer obs,
		     uint64_t out[TAPIO_KC__COUNT]);

#endif
