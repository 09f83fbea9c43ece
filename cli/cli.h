/*
 * Shared pieces of the `tapio` CLI: the invocation context every command receives, the
 * commands themselves and the health computation that `tapio health` and `tapio mcp` share.
 */
#ifndef TAPIO_CLI_H
#define TAPIO_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "cli/source.h"

/* Exit statuses (docs/cli.md). */
#define CLI_EXIT_OK    0
#define CLI_EXIT_FAIL  1
#define CLI_EXIT_USAGE 2

struct cli_ctx {
	const char *data_dir;	/* local mode (used when controller is NULL) */
	const char *controller; /* base URL, e.g. http://127.0.0.1:7070 */
	bool json;
	uint64_t now_ns; /* wall clock at start; relative times are resolved against it */
};

/* Options of one command, already parsed by main.c. */
struct cli_opts {
	struct occ_filter filter;
	const char *positional; /* health: observer name */
	const char *by;		/* query: type|node|severity */
	uint64_t bucket_ns;	/* query */
	uint64_t window_ns;	/* health window */
};

/* Each command returns an exit status and prints its own one-line error. */
int cmd_status(const struct cli_ctx *ctx, const struct cli_opts *o);
int cmd_recent(const struct cli_ctx *ctx, const struct cli_opts *o);
int cmd_watch(const struct cli_ctx *ctx, const struct cli_opts *o);
int cmd_agents(const struct cli_ctx *ctx, const struct cli_opts *o);
int cmd_query(const struct cli_ctx *ctx, const struct cli_opts *o);
int cmd_health(const struct cli_ctx *ctx, const struct cli_opts *o);
/* Runs the MCP server on stdin/stdout until EOF. Returns an exit status. */
int cmd_mcp(const struct cli_ctx *ctx);

/* Prints "tapio: <message>\n" on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Loads the occurrences a command works on: from the data dir (all of them, then filtered)
 * or from the controller (filtered there, paginated up to filter->limit, 0 = no limit).
 * Returns 0, or -1 after writing a one-line reason into err.
 */
int cli_load(const struct cli_ctx *ctx, const struct occ_filter *f, struct occ_list *out, char *err,
	     size_t errlen);

/*
 * Health (docs/cli.md "health"): per observer counts by type in [now - window, now], last
 * seen, most frequent type and its top key, and a verdict. `observer` is -1 for all four.
 * Returns a new JSON object owned by the caller.
 */
json_t *health_compute(const struct occ_list *occs, int observer, uint64_t now_ns,
		       uint64_t window_ns);
/* Prints a health_compute() object as aligned text. */
void health_print(const json_t *health);

/* Renders one occurrence's most telling facts ("10.0.0.9:8080 curl pid 42") into buf. */
void occ_detail(const struct tapio_occurrence *o, char *buf, size_t len);
/* Converts an occurrence to a jansson object (occ_json_write layout). NULL on failure. */
json_t *occ_to_json(const struct tapio_occurrence *o);

#endif
