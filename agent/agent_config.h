/*
 * tapio-agent configuration: built-in defaults < environment (TAPIO_NODE_NAME,
 * TAPIO_AGENT_ID) < YAML file (--config) < command-line flags.
 */
#ifndef TAPIO_AGENT_CONFIG_H
#define TAPIO_AGENT_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/occurrence.h"
#include "common/settings.h"

#define AGENT_SINK_STDOUT (1u << 0)
#define AGENT_SINK_FILE	  (1u << 1)

#define AGENT_DEFAULT_DATA_DIR	     "/var/lib/tapio"
#define AGENT_DEFAULT_STATS_INTERVAL 60
#define AGENT_ID_LEN		     64

struct agent_config {
	unsigned sinks; /* AGENT_SINK_* */
	char data_dir[PATH_MAX];
	char node_name[TAPIO_NAME_LEN];
	char cluster[TAPIO_NAME_LEN];
	char agent_id[AGENT_ID_LEN];
	bool agent_id_generated;    /* no flag, file key or $TAPIO_AGENT_ID gave one */
	char config_file[PATH_MAX]; /* "" when none */
	int log_level;		    /* enum log_level */
	uint32_t stats_interval_s;  /* 0 = no stats line */
	uint64_t file_max_bytes;
	uint32_t file_max_files;
	struct tapio_settings settings;
	/* the command line, kept so SIGHUP can re-read the file with the same flags on top */
	int argc;
	char **argv;
};

enum agent_config_result {
	AGENT_CONFIG_RUN = 0,
	AGENT_CONFIG_EXIT = 1, /* --help or --version was printed: exit 0 */
};

/*
 * Builds *c from defaults, environment, the --config file and argv (argv[0] is skipped).
 * Prints --help/--version text to `out`. Returns AGENT_CONFIG_RUN, AGENT_CONFIG_EXIT, or
 * -EINVAL with one line (no program prefix, no newline) in err, e.g.
 * "unknown option '--foo' (see --help)"; the caller prints "tapio-agent: <err>", exits 2.
 */
int agent_config_parse(int argc, char **argv, struct agent_config *c, FILE *out, char *err,
		       size_t errlen);

/*
 * Applies the YAML file at path onto *c (agent keys and observer sections). Returns 0 or
 * -errno/-EINVAL with "path:line:col: message" in err.
 */
int agent_config_load_file(const char *path, struct agent_config *c, char *err, size_t errlen);

/*
 * Keeps a generated agent id stable across restarts: when c->agent_id_generated and the data
 * dir exists, reuses <data_dir>/agent-id if it holds a valid id, else stores the generated
 * one there (tmp file + rename). An explicit id is never stored or replaced. Returns 1 when
 * an id was reused, 0 when stored or nothing to do, -errno when the dir was unusable
 * (the generated id stays; callers log it).
 */
int agent_config_persist_id(struct agent_config *c);

/* Writes the --help text. */
void agent_config_usage(FILE *out);

#endif
