/*
 * Runs the real tapio-agent binary for end-to-end tests: starts it with a config file,
 * waits for its "ready" log line, collects the JSON lines it prints on stdout (parsed with
 * jansson) and stops it with SIGTERM, returning its exit status.
 */
#ifndef TAPIO_TEST_AGENT_HARNESS_H
#define TAPIO_TEST_AGENT_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>

#define HARNESS_MAX_OCC 16384

struct agent_proc {
	pid_t pid;
	int out_fd;
	char dir[128];	   /* temp dir: config, stderr log */
	char errpath[192]; /* the agent's stderr */
	char *buf;	   /* partial stdout line */
	size_t len, cap;
	json_t *occ[HARNESS_MAX_OCC];
	size_t n_occ;
	size_t bad_lines; /* stdout lines that were not JSON objects */
};

/*
 * Returns NULL (and sets *why) when this machine cannot run real-kernel tests: not root,
 * no BTF, or the agent binary was not built.
 */
bool harness_kernel_ok(const char **why);

/* Starts the agent with `config_yaml` (may be NULL) and extra argv (NULL-terminated list,
 * may be NULL); waits up to 30 s for "ready". Returns 0 or -errno; on failure the agent's
 * stderr is printed. */
int harness_start(struct agent_proc *a, const char *config_yaml, const char *const *extra_args);

/* Reads stdout for up to timeout_ms, parsing every complete line into a->occ. */
void harness_pump(struct agent_proc *a, int timeout_ms);

typedef bool (*harness_match_fn)(json_t *occ, const void *arg);

/* Pumps until an occurrence matching fn exists (returns it, borrowed) or timeout (NULL). */
json_t *harness_wait_for(struct agent_proc *a, harness_match_fn fn, const void *arg,
			 int timeout_ms);

/* Counts collected occurrences matching fn. */
size_t harness_count(struct agent_proc *a, harness_match_fn fn, const void *arg);

/* SIGTERM, drain stdout to EOF, reap. Returns the exit status (0..255), 128+sig when killed,
 * or -1 on wait failure. Frees everything. */
int harness_stop(struct agent_proc *a);

/* Like harness_stop, but keeps the collected occurrences (a->occ, a->n_occ) and the agent's
 * log for inspection; release them with harness_release. */
int harness_stop_keep(struct agent_proc *a);

/* Frees the occurrences and buffers harness_stop_keep left. */
void harness_release(struct agent_proc *a);

/* Matches on type and an integer data field: {"type": t, "key": k, "value": v} (key NULL =
 * any). */
struct match_int {
	const char *type;
	const char *key;
	long long value;
};
bool harness_match_type_int(json_t *occ, const void *arg);

/* Helpers for reading an occurrence. */
long long occ_data_int(json_t *occ, const char *key);
const char *occ_data_str(json_t *occ, const char *key);
const char *occ_str(json_t *occ, const char *key);

/* Prints the agent's stderr log (for failing tests). */
void harness_dump_log(struct agent_proc *a);

#endif
