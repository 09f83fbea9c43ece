/*
 * tapio: the operator CLI (docs/cli.md). Parses the command line by hand (for the same
 * reasons as tapio-agent: one error shape, no global getopt state) and runs one command.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/clock.h"

enum {
	F_SINCE = 1 << 0,
	F_UNTIL = 1 << 1,
	F_TYPE = 1 << 2,
	F_NODE = 1 << 3,
	F_SEVERITY = 1 << 4,
	F_LIMIT = 1 << 5,
	F_BY = 1 << 6,
	F_BUCKET = 1 << 7,
};

struct command {
	const char *name;
	unsigned flags;
	int (*run)(const struct cli_ctx *ctx, const struct cli_opts *o);
	bool positional;
};

static int run_mcp(const struct cli_ctx *ctx, const struct cli_opts *o)
{
	(void)o;
	return cmd_mcp(ctx);
}

static const struct command commands[] = {
    {"status", 0, cmd_status, false},
    {"watch", F_TYPE | F_NODE | F_SEVERITY, cmd_watch, false},
    {"recent", F_SINCE | F_UNTIL | F_TYPE | F_NODE | F_SEVERITY | F_LIMIT, cmd_recent, false},
    {"health", F_SINCE | F_NODE, cmd_health, true},
    {"agents", 0, cmd_agents, false},
    {"query", F_BY | F_BUCKET | F_SINCE | F_UNTIL | F_TYPE | F_NODE | F_SEVERITY, cmd_query, false},
    {"mcp", 0, run_mcp, false},
};

static const struct {
	const char *name;
	unsigned bit;
} cmd_flags[] = {
    {"--since", F_SINCE},	{"--until", F_UNTIL}, {"--type", F_TYPE}, {"--node", F_NODE},
    {"--severity", F_SEVERITY}, {"--limit", F_LIMIT}, {"--by", F_BY},	  {"--bucket", F_BUCKET},
};

static void usage(FILE *out)
{
	fputs(
	    "usage: tapio [--data-dir DIR | --controller URL] [--json] COMMAND [options]\n"
	    "\n"
	    "commands:\n"
	    "  status                          files/controller, counts, time range, newest age\n"
	    "  watch                           follow new occurrences until Ctrl-C\n"
	    "  recent                          newest occurrences first\n"
	    "  health [OBSERVER]               per-observer summary and verdict\n"
	    "  agents                          nodes seen (local) or the controller's agents\n"
	    "  query --by type|node|severity   counts per group per time bucket\n"
	    "  mcp                             read-only MCP server on stdin/stdout\n"
	    "\n"
	    "options:\n"
	    "  --data-dir DIR      agent data dir (default $TAPIO_DATA_DIR, else /var/lib/tapio)\n"
	    "  --controller URL    query a controller instead (http://HOST:PORT)\n"
	    "  --json              machine output (JSON lines or one JSON object)\n"
	    "  --since T           15m, 24h, 7d or RFC 3339 (recent: all; health: 1h window;\n"
	    "                      query: 24h)\n"
	    "  --until T           upper bound, same forms\n"
	    "  --type T            kernel.network.connection_refused or connection_refused\n"
	    "  --node N            node name\n"
	    "  --severity S        debug|info|warning|error|critical (that severity or worse)\n"
	    "  --limit N           recent: at most N (default 50, 0 = all)\n"
	    "  --bucket D          query: bucket width (default 1h)\n"
	    "  -h, --help          this text\n"
	    "  -V, --version       print the version\n",
	    out);
}

static int parse_type(const char *s)
{
	int t = tapio_occ_type_parse(s);

	if (t >= 0)
		return t;
	for (int i = 0; i < TAPIO_OCC__COUNT; i++) {
		const char *name = tapio_occ_type_name(i), *dot = strrchr(name, '.');

		if (dot && !strcmp(dot + 1, s))
			return i;
	}
	return -1;
}

static int __attribute__((format(printf, 1, 2))) usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("tapio: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (see --help)\n", stderr);
	return CLI_EXIT_USAGE;
}

int main(int argc, char **argv)
{
	const char *vals[8] = {0}; /* by index in cmd_flags */
	const struct command *cmd = NULL;
	struct cli_ctx ctx = {0};
	struct cli_opts o;
	const char *data_dir = NULL, *env;
	unsigned seen = 0;
	int i;

	memset(&o, 0, sizeof(o));
	occ_filter_init(&o.filter);
	ctx.now_ns = clock_wall_ns();
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *val = NULL, *eq;
		char name[64];
		size_t k;

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return CLI_EXIT_OK;
		}
		if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
			printf("tapio %s\n", TAPIO_VERSION);
			return CLI_EXIT_OK;
		}
		if (!strcmp(a, "--json")) {
			ctx.json = true;
			continue;
		}
		if (a[0] != '-' || !strcmp(a, "-")) {
			if (!cmd) {
				for (k = 0; k < sizeof(commands) / sizeof(commands[0]); k++) {
					if (!strcmp(a, commands[k].name))
						cmd = &commands[k];
				}
				if (!cmd)
					return usage_error("unknown command '%s'", a);
			} else if (cmd->positional && !o.positional) {
				o.positional = a;
			} else {
				return usage_error("unexpected argument '%s'", a);
			}
			continue;
		}
		eq = strchr(a, '=');
		snprintf(name, sizeof(name), "%.*s", eq ? (int)(eq - a) : (int)strlen(a), a);
		if (eq) {
			val = eq + 1;
		} else if (i + 1 < argc) {
			val = argv[++i];
		}
		if (!strcmp(name, "--data-dir") || !strcmp(name, "--controller")) {
			if (!val || !*val)
				return usage_error("option '%s' needs a value", name);
			if (name[2] == 'd')
				data_dir = val;
			else
				ctx.controller = val;
			continue;
		}
		for (k = 0; k < sizeof(cmd_flags) / sizeof(cmd_flags[0]); k++) {
			if (!strcmp(name, cmd_flags[k].name))
				break;
		}
		if (k == sizeof(cmd_flags) / sizeof(cmd_flags[0]))
			return usage_error("unknown option '%s'", name);
		if (!val)
			return usage_error("option '%s' needs a value", name);
		vals[k] = val;
		seen |= cmd_flags[k].bit;
	}
	if (!cmd)
		return usage_error("no command given");
	for (size_t k = 0; k < sizeof(cmd_flags) / sizeof(cmd_flags[0]); k++) {
		if ((seen & cmd_flags[k].bit) && !(cmd->flags & cmd_flags[k].bit))
			return usage_error("option '%s' does not apply to '%s'", cmd_flags[k].name,
					   cmd->name);
	}
	if (data_dir && ctx.controller)
		return usage_error("--data-dir and --controller exclude each other");
	env = getenv("TAPIO_DATA_DIR");
	ctx.data_dir = data_dir ? data_dir : (env && *env ? env : "/var/lib/tapio");
	if (ctx.controller && strncmp(ctx.controller, "http://", 7) != 0 &&
	    strncmp(ctx.controller, "https://", 8) != 0)
		return usage_error("invalid controller URL '%s' (expected http://HOST:PORT)",
				   ctx.controller);

	/* defaults per command (docs/cli.md) */
	o.filter.limit = !strcmp(cmd->name, "recent") ? 50 : 0;
	o.window_ns = 3600ULL * 1000000000ULL;
	o.bucket_ns = 3600ULL * 1000000000ULL;
	if (!strcmp(cmd->name, "query"))
		o.filter.since_ns = ctx.now_ns - 86400ULL * 1000000000ULL;
	if (vals[0]) { /* --since */
		if (!strcmp(cmd->name, "health")) {
			if (source_parse_duration(vals[0], &o.window_ns) != 0 || !o.window_ns)
				return usage_error("invalid --since '%s' (expected a duration such "
						   "as 15m, 1h, 7d)",
						   vals[0]);
		} else if (source_parse_time(vals[0], ctx.now_ns, &o.filter.since_ns) != 0) {
			return usage_error("invalid --since '%s' (expected 15m, 24h, 7d or RFC "
					   "3339)",
					   vals[0]);
		}
	}
	if (vals[1] && source_parse_time(vals[1], ctx.now_ns, &o.filter.until_ns) != 0)
		return usage_error("invalid --until '%s' (expected 15m, 24h, 7d or RFC 3339)",
				   vals[1]);
	if (vals[2] && (o.filter.type = parse_type(vals[2])) < 0)
		return usage_error("unknown occurrence type '%s'", vals[2]);
	o.filter.node = vals[3];
	if (vals[4] && (o.filter.severity = tapio_severity_parse(vals[4])) < 0)
		return usage_error("invalid --severity '%s' (expected debug, info, warning, "
				   "error or critical)",
				   vals[4]);
	if (vals[5]) {
		char *end;
		unsigned long long v;

		errno = 0;
		v = strtoull(vals[5], &end, 10);
		if (errno || *end || vals[5][0] == '-' || !vals[5][0] || v > 1000000000ULL)
			return usage_error("invalid --limit '%s'", vals[5]);
		o.filter.limit = (size_t)v;
	}
	if (!strcmp(cmd->name, "query")) {
		if (!vals[6])
			return usage_error("query needs --by type|node|severity");
		if (strcmp(vals[6], "type") && strcmp(vals[6], "node") &&
		    strcmp(vals[6], "severity"))
			return usage_error("invalid --by '%s' (expected type, node or severity)",
					   vals[6]);
		o.by = vals[6];
	}
	if (vals[7] &&
	    (source_parse_duration(vals[7], &o.bucket_ns) != 0 || o.bucket_ns < 1000000000ULL))
		return usage_error("invalid --bucket '%s' (expected 1m, 1h, 1d …, at least 1s)",
				   vals[7]);
	return cmd->run(&ctx, &o);
}
