/*
 * Config distribution (SPEC §6, docs/controller.md "Configuration"): the controller's active
 * evidence profile, its persisted config generation, reloads (SIGHUP, or a change of the file
 * seen by a watch on its directory, debounced) and the ConfigPush every connected agent gets:
 * the settings resolved for that agent's node name and Hello labels. Tracks per agent what it
 * should run (registry expected_*) against what it reported (ConfigApplied), which is the
 * convergence view of GET /v1/config.
 *
 * Without a profile nothing is pushed: agents keep their local config.
 *
 * Threading: loop thread, except the reload's file read and generation fsync, which run in
 * the libuv thread pool (uv_queue_work) on a profile object nobody else sees yet.
 */
#ifndef TAPIO_CONTROLLER_CONFIG_DIST_H
#define TAPIO_CONTROLLER_CONFIG_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>
#include <uv.h>

#include "common/config_hash.h"
#include "common/profile.h"
#include "common/settings.h"
#include "controller/registry.h"
#include "tapio.pb-c.h"

#define CONFIG_DIST_DEBOUNCE_MS 200 /* file events closer than this make one reload */
#define CONFIG_DIST_MSG_LEN	512

/* What one agent gets: its resolved settings, their hash, and the compiled carrier. */
struct config_dist_push {
	struct tapio_settings settings;
	struct tapio_config config;
	char hash[CONFIG_HASH_LEN];
	size_t overrides_applied;
};

/*
 * Resolves profile p for an agent with this node name (NULL: matches no node glob) and
 * labels, compiles it at `generation` into *out. Returns 0 or -ENOMEM (hashing failed).
 */
int config_dist_resolve(const struct profile *p, uint64_t generation, const char *node,
			const struct profile_label *labels, size_t n_labels,
			struct config_dist_push *out);

/*
 * config_dist_resolve for a registry agent (its node and Hello labels). Returns 0 or -ENOMEM.
 */
int config_dist_resolve_agent(const struct profile *p, uint64_t generation,
			      const struct registry_agent *a, struct config_dist_push *out);

/*
 * Fills *f (a Frame carrying *cp, both initialised here) with the ConfigPush of *push. The
 * frame borrows from push and cp: they must outlive every use of f. Never fails.
 */
void config_dist_frame(const struct config_dist_push *push, Tapio__V1__ConfigPush *cp,
		       Tapio__V1__Settings *settings, Tapio__V1__Frame *f);

/*
 * --check-profile: loads path, prints "profile PATH: ok" and a summary (name, overrides,
 * content hash, the settings hash of an agent no override matches) to out. Returns 0, or 1
 * after printing the located error (path:line:col: …) to errf.
 */
int config_dist_check_file(const char *path, FILE *out, FILE *errf);

/* Sends one frame to a connected agent; returns 0 or a negative value (not connected, …). */
typedef int (*config_dist_send_fn)(void *ctx, struct registry_agent *a, const Tapio__V1__Frame *f);

enum config_dist_result {
	CONFIG_DIST_NONE = 0,  /* no reload yet */
	CONFIG_DIST_LOADED,    /* a new content hash was loaded and pushed */
	CONFIG_DIST_UNCHANGED, /* the file was read, same content hash: nothing pushed */
	CONFIG_DIST_FAILED,    /* the file was refused; the running profile stays */
};

const char *config_dist_result_name(enum config_dist_result r);

struct config_dist {
	uv_loop_t *loop;
	struct registry *registry;
	config_dist_send_fn send;
	void *send_ctx;
	char *path, *dir, *base, *data_dir;
	struct profile *profile; /* NULL: no --profile, nothing is pushed */
	uint64_t generation;
	char content_hash[CONFIG_HASH_LEN];
	uint64_t loaded_ns; /* when the running profile took effect (wall clock) */

	/* reloads */
	enum config_dist_result last_result;
	char last_message[CONFIG_DIST_MSG_LEN];
	uint64_t last_reload_ns;
	uint64_t reloads, reload_failures;
	uint64_t pushes, push_failures;

	/* handles (only with a profile) */
	uv_fs_event_t watch;
	uv_timer_t debounce;
	uv_signal_t sighup;
	uv_work_t work;
	bool watching, handles_open, closing, work_inflight, reload_again;
	int open_handles;
	/* the reload in flight (owned by the work request until after_work) */
	struct profile *next_profile;
	int next_rc;
	uint64_t next_generation;
	int next_gen_rc;
	char next_err[CONFIG_DIST_MSG_LEN];
	uint64_t reload_started_ns;
};

/*
 * Prepares *d. With profile_path NULL the distribution is inactive (only a SIGHUP handler that
 * logs "nothing to reload", so systemctl reload never kills the controller; nothing pushed;
 * config_dist_json still reports convergence of what agents run). Otherwise loads
 * the profile (synchronously: before the controller serves anything), takes its generation
 * with config_generation_next(data_dir, …), and starts the SIGHUP handler and the directory
 * watch. Returns 0, or -errno / -EINVAL with the reason (path:line:col for a bad profile) in
 * err; on failure nothing needs closing.
 */
int config_dist_init(struct config_dist *d, uv_loop_t *loop, const char *profile_path,
		     const char *data_dir, struct registry *r, config_dist_send_fn send,
		     void *send_ctx, char *err, size_t errlen);

/* Starts a reload now (what SIGHUP does); coalesces with one in flight. No-op when inactive. */
void config_dist_reload(struct config_dist *d);

/*
 * Pushes the current config to agent a (after its Welcome). Records what it expects a to
 * run. No-op when inactive. Returns 0 or the send's negative value.
 */
int config_dist_push_agent(struct config_dist *d, struct registry_agent *a, uint64_t now_ns);

/* Pushes to every connected agent; returns how many pushes were queued. */
size_t config_dist_push_all(struct config_dist *d, uint64_t now_ns);

/* Closes the handles (the loop then ends); a reload in flight finishes and is discarded. */
void config_dist_close(struct config_dist *d);

/* After the loop ended: frees the profile and strings. NULL-safe. */
void config_dist_fini(struct config_dist *d);

/*
 * GET /v1/config body: profile (path, name, overrides, content hash, loaded_at) or null,
 * generation, last reload (result, message, at), counters, and convergence over connected
 * agents (agents per applied hash, the lagging ones with expected vs applied). New reference
 * or NULL on allocation failure.
 */
json_t *config_dist_json(const struct config_dist *d, uint64_t now_ns);

/*
 * True when a is connected and an expected hash is recorded for it that differs from the
 * hash it last reported as applied.
 */
bool config_dist_agent_lags(const struct registry_agent *a);

#endif
