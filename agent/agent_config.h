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
#include "common/tls.h"

#define AGENT_SINK_STDOUT     (1u << 0)
#define AGENT_SINK_FILE	      (1u << 1)
#define AGENT_SINK_CONTROLLER (1u << 2)
#define AGENT_SINKS_JSON      (AGENT_SINK_STDOUT | AGENT_SINK_FILE)

#define AGENT_DEFAULT_DATA_DIR	     "/var/lib/tapio"
#define AGENT_DEFAULT_STATS_INTERVAL 60
#define AGENT_ID_LEN		     64
#define AGENT_CONTROLLER_LEN	     300 /* "HOST:PORT" or "[v6]:PORT" */
#define AGENT_DEFAULT_HEARTBEAT	     10	 /* seconds */
#define AGENT_DEFAULT_SPOOL_BYTES    (256ull << 20)
#define AGENT_DEFAULT_QUEUE_BYTES    (8ull << 20)
#define AGENT_MIN_SPOOL_BYTES	     (64ull << 10)
#define AGENT_MIN_QUEUE_BYTES	     (64ull << 10)
#define AGENT_SPOOL_SUBDIR	     "spool"

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
	/* controller sink (AGENT_SINK_CONTROLLER) */
	char controller[AGENT_CONTROLLER_LEN]; /* "HOST:PORT"; "" when none */
	uint32_t heartbeat_interval_s;
	char spool_dir[PATH_MAX]; /* "" = <data_dir>/spool */
	uint64_t spool_max_bytes;
	uint64_t queue_max_bytes;
	/* transport security (docs/security.md): "" = off */
	char tls_ca[PATH_MAX];	 /* CA bundle verifying the controller; set → TLS */
	char tls_cert[PATH_MAX]; /* client certificate (mTLS), with tls_key */
	char tls_key[PATH_MAX];
	char tls_server_name[256];     /* "" → the controller address's host */
	char token[TLS_TOKEN_MAX + 1]; /* Hello.token (never logged) */
	char token_file[PATH_MAX];     /* read into token after parsing */
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
 * The controller sink without an address is such an error.
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

/* The spool directory in effect: spool_dir, else <data_dir>/spool. Writes into buf. */
const char *agent_config_spool_dir(const struct agent_config *c, char *buf, size_t len);

/* Writes the --help text. */
void agent_config_usage(FILE *out);

#endif
