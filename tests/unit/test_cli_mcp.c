/*
 * `tapio mcp`: scripted JSON-RPC sessions over pipes to the real process. Every response's
 * id, result and error are checked; notifications get no reply; bad input never kills it.
 */
#include <criterion/criterion.h>
#include <jansson.h>

#include "cli_harness.h"

static struct fixture fx;

static void setup(void)
{
	unsetenv("TAPIO_DATA_DIR");
	fixture_build(&fx, 120);
}

static void teardown(void)
{
	fixture_remove(&fx);
}

TestSuite(cli_mcp, .init = setup, .fini = teardown, .timeout = 60);

static json_t *parse(const char *s)
{
	json_error_t e;
	json_t *j = json_loads(s, 0, &e);

	cr_assert_not_null(j, "invalid JSON (%s): %s", e.text, s);
	return j;
}

/* The JSON document inside a tool result's single text item. */
static json_t *tool_doc(json_t *resp, bool want_error)
{
	json_t *r = json_object_get(resp, "result"), *c = json_object_get(r, "content");
	json_t *item = json_array_get(c, 0);

	cr_assert_not_null(r, "no result: %s", json_dumps(resp, 0));
	cr_assert_eq(json_array_size(c), 1);
	cr_expect_str_eq(json_string_value(json_object_get(item, "type")), "text");
	cr_expect_eq(json_is_true(json_object_get(r, "isError")), want_error);
	if (want_error)
		return json_incref(json_object_get(item, "text"));
	return parse(json_string_value(json_object_get(item, "text")));
}

static void expect_error(json_t *resp, json_int_t id, int code)
{
	json_t *e = json_object_get(resp, "error");

	if (id < 0)
		cr_expect(json_is_null(json_object_get(resp, "id")), "id must be null");
	else
		cr_expect_eq(json_integer_value(json_object_get(resp, "id")), id);
	cr_assert_not_null(e, "no error in response %" JSON_INTEGER_FORMAT, id);
	cr_expect_eq(json_integer_value(json_object_get(e, "code")), code);
	cr_expect(json_is_string(json_object_get(e, "message")));
	cr_expect_null(json_object_get(resp, "result"));
}

/* Concatenates a NULL-terminated list of lines; the caller frees. */
static char *join(const char *const *lines)
{
	struct buf b = {0};

	for (size_t i = 0; lines[i]; i++)
		buf_add(&b, lines[i], strlen(lines[i]));
	return b.p;
}

#define REQ(id, method, params) \
	"{\"jsonrpc\":\"2.0\",\"id\":" #id ",\"method\":\"" method "\",\"params\":" params "}\n"

Test(cli_mcp, scripted_session)
{
	const char *args[] = {"mcp", "--data-dir", fx.dir, NULL};
	const char *const lines[] = {
	    REQ(1, "initialize",
		"{\"protocolVersion\":\"2024-11-05\",\"capabilities\":{},"
		"\"clientInfo\":{\"name\":\"t\",\"version\":\"1\"}}"),
	    "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n",
	    REQ(2, "tools/list", "{}"),
	    REQ(3, "tools/call",
		"{\"name\":\"recent_anomalies\",\"arguments\":{\"since\":\"24h\",\"limit\":5}}"),
	    REQ(4, "tools/call",
		"{\"name\":\"node_health\",\"arguments\":{\"observer\":\"network\"}}"),
	    REQ(5, "tools/call", "{\"name\":\"watch_snapshot\",\"arguments\":{\"seconds\":0.3}}"),
	    REQ(6, "tools/call", "{\"name\":\"ping\",\"arguments\":{}}"),
	    "{this is not json\n",
	    REQ(7, "resources/list", "{}"),
	    REQ(8, "tools/call", "{\"name\":\"recent_anomalies\",\"arguments\":{\"limit\":\"x\"}}"),
	    REQ(9, "tools/call", "{\"name\":\"rm_rf\",\"arguments\":{}}"),
	    REQ(10, "tools/call",
		"{\"name\":\"node_health\",\"arguments\":{\"observer\":\"gpu\"}}"),
	    REQ(11, "tools/call", "{\"name\":\"recent_anomalies\",\"arguments\":[1]}"),
	    REQ(12, "ping", "{}"),
	    "[1,2]\n",
	    "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{}}\n",
	    REQ(13, "tools/call",
		"{\"name\":\"recent_anomalies\",\"arguments\":{\"type\":\"oom_kill\","
		"\"since\":\"7d\",\"limit\":1000}}"),
	    NULL,
	};
	char *script = join(lines);
	struct buf out, err;
	json_t *r[32] = {0}, *doc, *tools;
	char *line, *save = NULL;
	size_t n = 0, i, want;
	json_t *it;

	cr_assert_eq(run_tapio(args, script, &out, &err), 0, "stderr: %s", err.p);
	buf_free(&(struct buf){.p = script});
	for (line = strtok_r(out.p, "\n", &save); line && n < 32;
	     line = strtok_r(NULL, "\n", &save))
		r[n++] = parse(line);
	cr_assert_eq(n, 15, "responses: %zu\n%s", n, out.p);
	for (i = 0; i < n; i++)
		cr_expect_str_eq(json_string_value(json_object_get(r[i], "jsonrpc")), "2.0");

	/* initialize */
	cr_expect_eq(json_integer_value(json_object_get(r[0], "id")), 1);
	doc = json_object_get(r[0], "result");
	cr_expect_str_eq(json_string_value(json_object_get(doc, "protocolVersion")), "2024-11-05");
	cr_expect_str_eq(
	    json_string_value(json_object_get(json_object_get(doc, "serverInfo"), "name")),
	    "tapio");
	cr_expect(json_is_object(json_object_get(json_object_get(doc, "capabilities"), "tools")));

	/* tools/list (the notification in between got no reply) */
	cr_expect_eq(json_integer_value(json_object_get(r[1], "id")), 2);
	tools = json_object_get(json_object_get(r[1], "result"), "tools");
	cr_assert_eq(json_array_size(tools), 4);
	json_array_foreach(tools, i, it)
	{
		const char *names[] = {"recent_anomalies", "node_health", "watch_snapshot", "ping"};

		cr_expect_str_eq(json_string_value(json_object_get(it, "name")), names[i]);
		cr_expect_str_eq(
		    json_string_value(json_object_get(json_object_get(it, "inputSchema"), "type")),
		    "object");
	}

	/* recent_anomalies: newest 5 of the last 24 h */
	cr_expect_eq(json_integer_value(json_object_get(r[2], "id")), 3);
	doc = tool_doc(r[2], false);
	want = 0;
	for (i = 0; i < fx.n; i++)
		want += fx.off_s[i] < 86400;
	cr_expect_eq(json_integer_value(json_object_get(doc, "count")), want < 5 ? want : 5);
	cr_expect_str_eq(json_string_value(json_object_get(
			     json_array_get(json_object_get(doc, "occurrences"), 0), "id")),
			 fx.occ[fx.n - 1].id);
	json_decref(doc);

	/* node_health for one observer */
	cr_expect_eq(json_integer_value(json_object_get(r[3], "id")), 4);
	doc = tool_doc(r[3], false);
	cr_expect_eq(json_array_size(json_object_get(doc, "observers")), 1);
	cr_expect_str_eq(json_string_value(json_object_get(
			     json_array_get(json_object_get(doc, "observers"), 0), "observer")),
			 "network");
	cr_expect(json_is_string(json_object_get(doc, "verdict")));
	json_decref(doc);

	/* watch_snapshot with nothing new */
	cr_expect_eq(json_integer_value(json_object_get(r[4], "id")), 5);
	doc = tool_doc(r[4], false);
	cr_expect_eq(json_integer_value(json_object_get(doc, "count")), 0);
	json_decref(doc);

	/* ping tool */
	cr_expect_eq(json_integer_value(json_object_get(r[5], "id")), 6);
	doc = tool_doc(r[5], false);
	cr_expect(json_is_true(json_object_get(doc, "ok")));
	json_decref(doc);

	expect_error(r[6], -1, -32700);	 /* malformed JSON */
	expect_error(r[7], 7, -32601);	 /* unknown method */
	expect_error(r[8], 8, -32602);	 /* limit of the wrong type */
	expect_error(r[9], 9, -32602);	 /* unknown tool */
	expect_error(r[10], 10, -32602); /* unknown observer */
	expect_error(r[11], 11, -32602); /* arguments not an object */
	cr_expect_eq(json_integer_value(json_object_get(r[12], "id")), 12);
	cr_expect(json_is_object(json_object_get(r[12], "result")));
	expect_error(r[13], -1, -32600); /* a batch array: not a request object */

	/* after all that, still answering: type filter by short name */
	cr_expect_eq(json_integer_value(json_object_get(r[14], "id")), 13);
	doc = tool_doc(r[14], false);
	want = 0;
	for (i = 0; i < fx.n; i++)
		want += fx.off_s[i] < 7 * 86400 && fx.occ[i].type == TAPIO_OCC_OOM_KILL;
	cr_expect_eq(json_integer_value(json_object_get(doc, "count")), want);
	json_array_foreach(json_object_get(doc, "occurrences"), i, it)
	{
		cr_expect_str_eq(json_string_value(json_object_get(it, "type")),
				 "kernel.container.oom_kill");
	}
	json_decref(doc);
	for (i = 0; i < n; i++)
		json_decref(r[i]);
}

Test(cli_mcp, watch_snapshot_returns_new_occurrences)
{
	const char *args[] = {"mcp", "--data-dir", fx.dir, NULL};
	const char *ping = REQ(0, "ping", "{}");
	const char *req = REQ(1, "tools/call",
			      "{\"name\":\"watch_snapshot\",\"arguments\":"
			      "{\"seconds\":10}}");
	struct buf carry = {0}, out = {0}, err = {0};
	char line[TAPIO_OCC_JSON_MAX * 4];
	struct tapio_occurrence o;
	struct proc p;
	uint64_t t0;
	json_t *resp, *doc;
	FILE *f;

	proc_spawn(&p, args);
	cr_assert_eq(write(p.in, ping, strlen(ping)), (ssize_t)strlen(ping));
	cr_assert(read_line(p.out, &carry, line, sizeof(line), 10000), "no ping response");
	cr_assert_eq(write(p.in, req, strlen(req)), (ssize_t)strlen(req));
	usleep(500 * 1000);
	t0 = clock_mono_ns();
	fx_occ(&o, 4, clock_wall_ns());
	f = fx_open(&fx, "occurrences.jsonl", "a");
	fputc('\n', f); /* ends the fixture's torn line (it becomes one malformed line) */
	write_line(f, &o);
	fclose(f);
	cr_assert(read_line(p.out, &carry, line, sizeof(line), 8000), "no response");
	cr_expect_lt(clock_mono_ns() - t0, 5 * S_NS, "returned late, not on arrival");
	resp = parse(line);
	doc = tool_doc(resp, false);
	cr_assert_eq(json_integer_value(json_object_get(doc, "count")), 1, "%s", line);
	cr_expect_str_eq(json_string_value(json_object_get(
			     json_array_get(json_object_get(doc, "occurrences"), 0), "id")),
			 o.id);
	json_decref(doc);
	json_decref(resp);
	cr_expect_eq(proc_finish(&p, &out, &err, 5000), 0);
}

Test(cli_mcp, tool_errors_are_results_not_crashes)
{
	const char *args[] = {"mcp", "--data-dir", "/nonexistent/tapio", NULL};
	const char *const lines[] = {
	    REQ(1, "tools/call", "{\"name\":\"recent_anomalies\"}"),
	    REQ(2, "tools/call", "{\"name\":\"ping\"}"),
	    REQ(3, "tools/call", "{\"name\":\"watch_snapshot\",\"arguments\":{\"seconds\":99}}"),
	    REQ(4, "tools/call", "{}"),
	    "{\"jsonrpc\":\"1.0\",\"id\":5,\"method\":\"ping\"}\n",
	    "{\"jsonrpc\":\"2.0\",\"id\":{\"x\":1},\"method\":\"ping\"}\n",
	    "\n",
	    "null\n",
	    NULL,
	};
	char *script = join(lines);
	struct buf out, err;
	json_t *r[16] = {0}, *doc;
	char *line, *save = NULL;
	size_t n = 0;

	cr_assert_eq(run_tapio(args, script, &out, &err), 0, "stderr: %s", err.p);
	buf_free(&(struct buf){.p = script});
	for (line = strtok_r(out.p, "\n", &save); line && n < 16;
	     line = strtok_r(NULL, "\n", &save))
		r[n++] = parse(line);
	cr_assert_eq(n, 7, "%s", out.p);
	doc = tool_doc(r[0], true);
	cr_expect_not_null(strstr(json_string_value(doc), "/nonexistent/tapio"));
	json_decref(doc);
	doc = tool_doc(r[1], true);
	json_decref(doc);
	expect_error(r[2], 3, -32602);
	expect_error(r[3], 4, -32602);
	expect_error(r[4], 5, -32600);
	expect_error(r[5], -1, -32600);
	expect_error(r[6], -1, -32600);
	for (size_t i = 0; i < n; i++)
		json_decref(r[i]);
}
