/*
 * `tapio mcp`: a read-only Model Context Protocol server on stdio. JSON-RPC 2.0, one message
 * per line in each direction; stdout carries only protocol messages. Tools answer from the
 * same sources as the CLI commands (docs/cli.md "mcp").
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/cli.h"
#include "common/clock.h"

#define MCP_PROTOCOL_VERSION "2024-11-05"
#define MCP_PARSE_ERROR	     -32700
#define MCP_INVALID_REQUEST  -32600
#define MCP_METHOD_NOT_FOUND -32601
#define MCP_INVALID_PARAMS   -32602
#define MCP_MAX_LINE	     (1u << 20)
#define MCP_WATCH_MAX_S	     30
#define MCP_LIMIT_MAX	     1000

static void send_msg(json_t *msg)
{
	char *s = json_dumps(msg, JSON_COMPACT | JSON_PRESERVE_ORDER);

	if (s) {
		fputs(s, stdout);
		fputc('\n', stdout);
		fflush(stdout);
	}
	free(s);
	json_decref(msg);
}

static void send_error(json_t *id, int code, const char *message)
{
	json_t *m = json_object(), *e = json_object();

	json_object_set_new(m, "jsonrpc", json_string("2.0"));
	json_object_set(m, "id", id ? id : json_null());
	json_object_set_new(e, "code", json_integer(code));
	json_object_set_new(e, "message", json_string(message));
	json_object_set_new(m, "error", e);
	send_msg(m);
}

static void send_result(json_t *id, json_t *result)
{
	json_t *m = json_object();

	json_object_set_new(m, "jsonrpc", json_string("2.0"));
	json_object_set(m, "id", id);
	json_object_set_new(m, "result", result);
	send_msg(m);
}

/* A tool's answer: its JSON document as one text content item. */
static json_t *tool_result(json_t *doc, bool is_error)
{
	json_t *r = json_object(), *content = json_array(), *item = json_object();
	char *s = json_is_string(doc) ? strdup(json_string_value(doc))
				      : json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);

	json_object_set_new(item, "type", json_string("text"));
	json_object_set_new(item, "text", json_string(s ? s : ""));
	json_array_append_new(content, item);
	json_object_set_new(r, "content", content);
	json_object_set_new(r, "isError", json_boolean(is_error));
	free(s);
	json_decref(doc);
	return r;
}

static json_t *prop(const char *type, const char *desc)
{
	return json_pack("{s:s, s:s}", "type", type, "description", desc);
}

static json_t *tool_def(const char *name, const char *desc, json_t *props)
{
	return json_pack("{s:s, s:s, s:{s:s, s:o, s:b}}", "name", name, "description", desc,
			 "inputSchema", "type", "object", "properties", props,
			 "additionalProperties", 0);
}

static json_t *tools_list(void)
{
	json_t *tools = json_array();

	json_array_append_new(
	    tools,
	    tool_def(
		"recent_anomalies",
		"Recent kernel occurrences (failures the kernel saw), newest first.",
		json_pack("{s:o, s:o, s:o, s:o, s:o}", "since",
			  prop("string", "15m, 24h, 7d or RFC 3339 (default 1h)"), "type",
			  prop("string", "occurrence type, e.g. "
					 "kernel.network.connection_refused or oom_kill"),
			  "node", prop("string", "node name"), "severity",
			  prop("string", "minimum severity: debug|info|warning|error|critical"),
			  "limit", prop("integer", "1..1000 (default 50)"))));
	json_array_append_new(
	    tools,
	    tool_def("node_health",
		     "Per-observer counts, last seen, most frequent type and key, and "
		     "a verdict (ok, degraded, critical).",
		     json_pack("{s:o, s:o, s:o}", "observer",
			       prop("string", "network|container|storage|node (default all)"),
			       "since", prop("string", "window, e.g. 15m, 1h (default 1h)"), "node",
			       prop("string", "node name"))));
	json_array_append_new(
	    tools,
	    tool_def("watch_snapshot",
		     "Waits up to `seconds` for new occurrences and returns them (returns "
		     "early once some arrive).",
		     json_pack("{s:o, s:o, s:o}", "seconds", prop("number", "0..30 (default 5)"),
			       "type", prop("string", "occurrence type filter"), "node",
			       prop("string", "node name filter"))));
	json_array_append_new(tools,
			      tool_def("ping",
				       "Checks that the data source (data dir or controller) "
				       "answers.",
				       json_object()));
	return json_pack("{s:o}", "tools", tools);
}

/* Argument helpers: return 0, or -1 with msg set (→ -32602). */
static int arg_string(json_t *args, const char *key, const char **out, char *msg, size_t len)
{
	json_t *v = json_object_get(args, key);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v)) {
		snprintf(msg, len, "argument '%s' must be a string", key);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

static int check_keys(json_t *args, const char *const *allowed, char *msg, size_t len)
{
	const char *k;
	json_t *v;

	json_object_foreach(args, k, v)
	{
		bool ok = false;

		for (size_t i = 0; allowed[i]; i++)
			ok |= !strcmp(k, allowed[i]);
		if (!ok) {
			snprintf(msg, len, "unknown argument '%s'", k);
			return -1;
		}
	}
	return 0;
}

static int parse_common(json_t *args, struct occ_filter *f, uint64_t now, bool window,
			uint64_t *window_ns, char *msg, size_t len)
{
	const char *since = NULL, *type = NULL, *sev = NULL;

	if (arg_string(args, "since", &since, msg, len) ||
	    arg_string(args, "type", &type, msg, len) ||
	    arg_string(args, "node", &f->node, msg, len) ||
	    arg_string(args, "severity", &sev, msg, len))
		return -1;
	if (since && window) {
		if (source_parse_duration(since, window_ns) != 0 || !*window_ns) {
			snprintf(msg, len, "invalid since '%s' (expected a duration such as 1h)",
				 since);
			return -1;
		}
	} else if (since && source_parse_time(since, now, &f->since_ns) != 0) {
		snprintf(msg, len, "invalid since '%s' (expected 15m, 24h, 7d or RFC 3339)", since);
		return -1;
	}
	if (type) {
		f->type = tapio_occ_type_parse(type);
		for (int i = 0; f->type < 0 && i < TAPIO_OCC__COUNT; i++) {
			const char *dot = strrchr(tapio_occ_type_name(i), '.');

			if (dot && !strcmp(dot + 1, type))
				f->type = i;
		}
		if (f->type < 0) {
			snprintf(msg, len, "unknown type '%s'", type);
			return -1;
		}
	}
	if (sev && (f->severity = tapio_severity_parse(sev)) < 0) {
		snprintf(msg, len, "invalid severity '%s'", sev);
		return -1;
	}
	return 0;
}

/* Returns 1 with a one-line reason in err when dir is not a readable directory. */
static int data_dir_error(const char *dir, char *err, size_t len)
{
	struct stat sb;
	int e = stat(dir, &sb) != 0 ? errno : (S_ISDIR(sb.st_mode) ? 0 : ENOTDIR);

	if (e)
		snprintf(err, len, "data dir %s: %s", dir, strerror(e));
	return e != 0;
}

static json_t *occ_array(const struct occ_list *l, bool newest_first)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < l->n; i++) {
		const struct tapio_occurrence *o = &l->v[newest_first ? l->n - 1 - i : i];
		json_t *j = occ_to_json(o);

		if (j)
			json_array_append_new(arr, j);
	}
	return arr;
}

static json_t *run_recent(const struct cli_ctx *ctx, json_t *args, char *msg, size_t len)
{
	static const char *const allowed[] = {"since", "type", "node", "severity", "limit", NULL};
	struct occ_filter f;
	struct occ_list l = {0};
	json_t *lim = json_object_get(args, "limit");
	char err[1024];
	json_t *doc;

	occ_filter_init(&f);
	f.since_ns = ctx->now_ns - 3600ULL * 1000000000ULL;
	f.limit = 50;
	if (check_keys(args, allowed, msg, len) ||
	    parse_common(args, &f, ctx->now_ns, false, NULL, msg, len))
		return NULL;
	if (lim && !json_is_null(lim)) {
		if (!json_is_integer(lim) || json_integer_value(lim) < 1 ||
		    json_integer_value(lim) > MCP_LIMIT_MAX) {
			snprintf(msg, len, "argument 'limit' must be an integer 1..%d",
				 MCP_LIMIT_MAX);
			return NULL;
		}
		f.limit = (size_t)json_integer_value(lim);
	}
	if (cli_load(ctx, &f, &l, err, sizeof(err)) != 0)
		return tool_result(json_string(err), true);
	if (l.n > f.limit) {
		memmove(l.v, l.v + (l.n - f.limit), f.limit * sizeof(l.v[0]));
		l.n = f.limit;
	}
	doc = json_object();
	json_object_set_new(doc, "count", json_integer((json_int_t)l.n));
	json_object_set_new(doc, "occurrences", occ_array(&l, true));
	occ_list_fini(&l);
	return tool_result(doc, false);
}

static json_t *run_health(const struct cli_ctx *ctx, json_t *args, char *msg, size_t len)
{
	static const char *const allowed[] = {"observer", "since", "node", NULL};
	uint64_t window = 3600ULL * 1000000000ULL, span;
	const char *obs = NULL;
	struct occ_filter f;
	struct occ_list l = {0};
	int observer = -1;
	char err[1024];
	json_t *doc;

	occ_filter_init(&f);
	if (check_keys(args, allowed, msg, len) || arg_string(args, "observer", &obs, msg, len) ||
	    parse_common(args, &f, ctx->now_ns, true, &window, msg, len))
		return NULL;
	if (obs && (observer = tapio_observer_parse(obs)) < 0) {
		snprintf(msg, len, "unknown observer '%s'", obs);
		return NULL;
	}
	span = window > 900ULL * 1000000000ULL ? window : 900ULL * 1000000000ULL;
	f.since_ns = ctx->now_ns > span ? ctx->now_ns - span : 1;
	if (cli_load(ctx, &f, &l, err, sizeof(err)) != 0)
		return tool_result(json_string(err), true);
	doc = health_compute(&l, observer, ctx->now_ns, window);
	occ_list_fini(&l);
	return tool_result(doc, false);
}

static void collect(const struct tapio_occurrence *o, void *arg)
{
	struct occ_list *l = arg;

	if (l->n < MCP_LIMIT_MAX)
		occ_list_push(l, o);
}

static json_t *run_watch(const struct cli_ctx *ctx, json_t *args, char *msg, size_t len)
{
	static const char *const allowed[] = {"seconds", "type", "node", NULL};
	json_t *sec = json_object_get(args, "seconds"), *doc;
	struct occ_filter f;
	struct occ_list got = {0}, l = {0};
	double seconds = 5;
	uint64_t deadline, start = ctx->now_ns;
	char err[1024];
	struct tail t;
	size_t i, k;

	occ_filter_init(&f);
	if (check_keys(args, allowed, msg, len) ||
	    parse_common(args, &f, ctx->now_ns, false, NULL, msg, len))
		return NULL;
	if (sec && !json_is_null(sec)) {
		if (!json_is_number(sec) || json_number_value(sec) < 0 ||
		    json_number_value(sec) > MCP_WATCH_MAX_S) {
			snprintf(msg, len, "argument 'seconds' must be a number 0..%d",
				 MCP_WATCH_MAX_S);
			return NULL;
		}
		seconds = json_number_value(sec);
	}
	deadline = clock_mono_ns() + (uint64_t)(seconds * 1e9);
	if (!ctx->controller) {
		if (data_dir_error(ctx->data_dir, err, sizeof(err)))
			return tool_result(json_string(err), true);
		tail_init(&t, ctx->data_dir);
		tail_start(&t, false);
	}
	for (;;) {
		struct timespec ts = {0, 200 * 1000000L};

		if (ctx->controller) {
			struct occ_filter cf = f;

			cf.since_ns = start;
			occ_list_fini(&l);
			if (controller_fetch(ctx->controller, &cf, &l, err, sizeof(err)) != 0) {
				occ_list_fini(&got);
				return tool_result(json_string(err), true);
			}
			for (i = 0; i < l.n; i++)
				collect(&l.v[i], &got);
		} else {
			tail_poll(&t, collect, &got);
			for (i = k = 0; i < got.n; i++) { /* filters apply to what the tail saw */
				if (occ_filter_match(&f, &got.v[i]))
					got.v[k++] = got.v[i];
			}
			got.n = k;
		}
		if (got.n || clock_mono_ns() >= deadline)
			break;
		nanosleep(&ts, NULL);
	}
	if (!ctx->controller)
		tail_fini(&t);
	occ_list_fini(&l);
	doc = json_object();
	json_object_set_new(doc, "count", json_integer((json_int_t)got.n));
	json_object_set_new(doc, "occurrences", occ_array(&got, false));
	occ_list_fini(&got);
	return tool_result(doc, false);
}

static json_t *run_ping(const struct cli_ctx *ctx, json_t *args, char *msg, size_t len)
{
	static const char *const allowed[] = {NULL};
	json_t *doc;
	char err[1024];

	if (check_keys(args, allowed, msg, len))
		return NULL;
	if (ctx->controller) {
		json_t *st = controller_get_json(ctx->controller, "/v1/status", err, sizeof(err));

		if (!st)
			return tool_result(json_string(err), true);
		json_decref(st);
	} else {
		if (data_dir_error(ctx->data_dir, err, sizeof(err)))
			return tool_result(json_string(err), true);
	}
	doc = json_object();
	json_object_set_new(doc, "ok", json_true());
	json_object_set_new(doc, "source", json_string(ctx->controller ? "controller" : "local"));
	json_object_set_new(doc, "target",
			    json_string(ctx->controller ? ctx->controller : ctx->data_dir));
	return tool_result(doc, false);
}

static void handle_call(const struct cli_ctx *base, json_t *id, json_t *params)
{
	struct cli_ctx ctx = *base;
	json_t *name = json_object_get(params, "name"),
	       *args = json_object_get(params, "arguments");
	json_t *empty = NULL, *res = NULL;
	char msg[512] = "invalid params";
	const char *n;

	if (!json_is_string(name)) {
		send_error(id, MCP_INVALID_PARAMS, "params.name must be a string");
		return;
	}
	if (args && !json_is_null(args) && !json_is_object(args)) {
		send_error(id, MCP_INVALID_PARAMS, "params.arguments must be an object");
		return;
	}
	if (!args || json_is_null(args))
		args = empty = json_object();
	ctx.now_ns = clock_wall_ns();
	n = json_string_value(name);
	if (!strcmp(n, "recent_anomalies"))
		res = run_recent(&ctx, args, msg, sizeof(msg));
	else if (!strcmp(n, "node_health"))
		res = run_health(&ctx, args, msg, sizeof(msg));
	else if (!strcmp(n, "watch_snapshot"))
		res = run_watch(&ctx, args, msg, sizeof(msg));
	else if (!strcmp(n, "ping"))
		res = run_ping(&ctx, args, msg, sizeof(msg));
	else
		snprintf(msg, sizeof(msg), "unknown tool '%s'", n);
	if (res)
		send_result(id, res);
	else
		send_error(id, MCP_INVALID_PARAMS, msg);
	json_decref(empty);
}

static void handle(const struct cli_ctx *ctx, json_t *req)
{
	json_t *id = json_object_get(req, "id"), *method = json_object_get(req, "method");
	json_t *params = json_object_get(req, "params");
	const char *m;

	if (!json_is_object(req)) {
		send_error(NULL, MCP_INVALID_REQUEST, "Invalid Request: expected an object");
		return;
	}
	if (id && !json_is_string(id) && !json_is_integer(id) && !json_is_null(id)) {
		send_error(NULL, MCP_INVALID_REQUEST, "Invalid Request: bad id");
		return;
	}
	if (!json_is_string(json_object_get(req, "jsonrpc")) ||
	    strcmp(json_string_value(json_object_get(req, "jsonrpc")), "2.0") != 0 ||
	    !json_is_string(method)) {
		if (id)
			send_error(id, MCP_INVALID_REQUEST,
				   "Invalid Request: needs jsonrpc \"2.0\" and a method");
		return;
	}
	m = json_string_value(method);
	if (!id)
		return; /* a notification (notifications/initialized, …): never answered */
	if (params && !json_is_object(params)) {
		send_error(id, MCP_INVALID_PARAMS, "params must be an object");
		return;
	}
	if (!strcmp(m, "initialize")) {
		send_result(id, json_pack("{s:s, s:{s:{s:b}}, s:{s:s, s:s}, s:s}",
					  "protocolVersion", MCP_PROTOCOL_VERSION, "capabilities",
					  "tools", "listChanged", 0, "serverInfo", "name", "tapio",
					  "version", TAPIO_VERSION, "instructions",
					  "Read-only access to Tapio kernel occurrences (facts the "
					  "kernel saw: refused connections, OOM kills, I/O errors, "
					  "CPU stalls)."));
	} else if (!strcmp(m, "ping")) {
		send_result(id, json_object());
	} else if (!strcmp(m, "tools/list")) {
		send_result(id, tools_list());
	} else if (!strcmp(m, "tools/call")) {
		handle_call(ctx, id, params);
	} else {
		char msg[256];

		snprintf(msg, sizeof(msg), "Method not found: %.200s", m);
		send_error(id, MCP_METHOD_NOT_FOUND, msg);
	}
}

int cmd_mcp(const struct cli_ctx *ctx)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;

	while ((len = getline(&line, &cap, stdin)) >= 0) {
		json_error_t jerr;
		json_t *req;

		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (len == 0)
			continue;
		if ((size_t)len > MCP_MAX_LINE) {
			send_error(NULL, MCP_PARSE_ERROR, "Parse error: message too long");
			continue;
		}
		req =
		    json_loadb(line, (size_t)len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
		if (!req) {
			char msg[256];

			snprintf(msg, sizeof(msg), "Parse error: %s", jerr.text);
			send_error(NULL, MCP_PARSE_ERROR, msg);
			continue;
		}
		handle(ctx, req);
		json_decref(req);
	}
	free(line);
	return CLI_EXIT_OK;
}
