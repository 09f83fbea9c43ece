/*
 * `tapio --controller URL`: the client side of the controller's query API, pinned against a
 * loopback HTTP server thread serving canned JSON (docs/cli.md "controller mode").
 */
#include <criterion/criterion.h>
#include <jansson.h>

#include "cli_harness.h"

static struct http_server srv;
static char url[64];
static char page1[4096 * 3], page2[4096 * 2];
static struct tapio_occurrence occ[3];

#define STATUS_BODY                                                                        \
	"{\"role\":\"controller\",\"agents_connected\":2,\"occurrences\":1234,\"store\":{" \
	"\"segments\":3}}"
#define AGENTS_BODY                                                                        \
	"{\"agents\":[{\"node\":\"worker-1\",\"agent_id\":\"01HAAAAAAAAAAAAAAAAAAAAAAA\"," \
	"\"connected\":true,\"last_heartbeat_age_s\":3,\"counters\":{\"events\":1},"       \
	"\"observers\":[{\"name\":\"network\",\"state\":\"running\"}]},"                   \
	"{\"node\":\"worker-22\",\"agent_id\":\"01HBBBBBBBBBBBBBBBBBBBBBBB\","             \
	"\"connected\":false,\"last_heartbeat_age_s\":120}]}"
#define SUMMARY_BODY                                                                          \
	"{\"by\":\"type\",\"bucket_s\":60,\"groups\":{\"kernel.network.connection_refused\":" \
	"[{\"t\":\"2026-11-25T13:00:00Z\",\"count\":4},{\"t\":\"2026-11-25T13:01:00Z\","      \
	"\"count\":1}],\"kernel.storage.io_error\":[{\"t\":\"2026-11-25T13:01:00Z\","         \
	"\"count\":2}]}}"
#define ERROR_BODY "{\"error\":{\"code\":\"BAD_QUERY\",\"message\":\"type is not allowed here\"}}"

static struct http_route routes[] = {
    {"/v1/status", NULL, 200, STATUS_BODY},
    {"/v1/agents", NULL, 200, AGENTS_BODY},
    {"/v1/occurrences", "type=kernel.storage.io_error", 400, ERROR_BODY},
    {"/v1/occurrences", "cursor=c2", 200, page2},
    {"/v1/occurrences", NULL, 200, page1},
    {"/v1/summary", NULL, 200, SUMMARY_BODY},
    {"/garbage", NULL, 200, "not json"},
};

static void setup(void)
{
	char j[3][TAPIO_OCC_JSON_MAX];

	unsetenv("TAPIO_DATA_DIR");
	for (int i = 0; i < 3; i++) {
		fx_occ(&occ[i], 0, clock_wall_ns() - (uint64_t)(100 - i * 10) * S_NS);
		snprintf(occ[i].node, sizeof(occ[i].node), "worker-1");
		cr_assert_gt(occ_json_write(&occ[i], j[i], sizeof(j[i])), 0);
	}
	/* newest first, as the controller answers */
	snprintf(page1, sizeof(page1), "{\"occurrences\":[%s,%s],\"next_cursor\":\"c2\"}", j[2],
		 j[1]);
	snprintf(page2, sizeof(page2), "{\"occurrences\":[%s],\"next_cursor\":null}", j[0]);
	http_start(&srv, routes, sizeof(routes) / sizeof(routes[0]));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", srv.port);
}

static void teardown(void)
{
	http_stop(&srv);
}

TestSuite(cli_controller, .init = setup, .fini = teardown, .timeout = 60);

static json_t *parse(const char *s)
{
	json_error_t e;
	json_t *j = json_loads(s, 0, &e);

	cr_assert_not_null(j, "invalid JSON (%s): %s", e.text, s);
	return j;
}

Test(cli_controller, recent_sends_filters_and_follows_cursor)
{
	const char *args[] = {"--controller", url,	  "--json",	"recent",
			      "--since",      "15m",	  "--type",	"connection_refused",
			      "--node",	      "worker-1", "--severity", "warning",
			      "--limit",      "10",	  NULL};
	struct buf out, err;
	char *line, *save = NULL;
	int i = 2;

	cr_assert_eq(run_tapio(args, NULL, &out, &err), 0, "stderr: %s", err.p);
	cr_assert_eq(count_lines(out.p), 3, "%s", out.p);
	for (line = strtok_r(out.p, "\n", &save); line; line = strtok_r(NULL, "\n", &save), i--) {
		struct tapio_occurrence o;
		char why[128];

		cr_assert_eq(occ_json_parse(line, strlen(line), &o, why, sizeof(why)), 0, "%s",
			     why);
		cr_expect_str_eq(o.id, occ[i].id);
	}
	cr_assert_eq(srv.nrequests, 2);
	cr_expect_eq(strncmp(srv.requests[0], "/v1/occurrences?since=20", 24), 0, "%s",
		     srv.requests[0]);
	cr_expect_not_null(strstr(srv.requests[0], "&type=kernel.network.connection_refused&"
						   "node=worker-1&severity=warning&limit=10"),
			   "%s", srv.requests[0]);
	cr_expect_null(strstr(srv.requests[0], "cursor="), "%s", srv.requests[0]);
	cr_expect_not_null(strstr(srv.requests[1], "&limit=8&cursor=c2"), "%s", srv.requests[1]);
}

Test(cli_controller, error_envelope_is_one_line_exit_1)
{
	const char *args[] = {"--controller", url, "recent", "--type", "io_error", NULL};
	struct buf out, err;

	cr_assert_eq(run_tapio(args, NULL, &out, &err), 1);
	cr_expect_str_eq(err.p, "tapio: controller: BAD_QUERY: type is not allowed here\n");
	cr_expect_eq(out.len, 0);
}

Test(cli_controller, unreachable_and_bad_url)
{
	const char *a1[] = {"--controller", "http://127.0.0.1:1", "status", NULL};
	const char *a2[] = {"--controller", "ftp://x", "status", NULL};
	const char *a3[] = {"--controller", url, "--data-dir", "/tmp", "status", NULL};
	struct buf out, err;

	cr_assert_eq(run_tapio(a1, NULL, &out, &err), 1);
	cr_expect_eq(count_lines(err.p), 1, "%s", err.p);
	cr_expect_eq(strncmp(err.p, "tapio: controller http://127.0.0.1:1/v1/status: ", 48), 0,
		     "%s", err.p);
	cr_assert_eq(run_tapio(a2, NULL, &out, &err), 2);
	cr_expect_eq(count_lines(err.p), 1, "%s", err.p);
	cr_assert_eq(run_tapio(a3, NULL, &out, &err), 2);
	cr_expect_eq(count_lines(err.p), 1, "%s", err.p);
}

Test(cli_controller, status_and_agents)
{
	const char *a1[] = {"--controller", url, "--json", "status", NULL};
	const char *a2[] = {"--controller", url, "status", NULL};
	const char *a3[] = {"--controller", url, "agents", NULL};
	const char *a4[] = {"--controller", url, "agents", "--json", NULL};
	const char *agents_hdr =
	    "node       agent_id                    version  connected  heartbeat_age_s  config  converged\n";
	struct buf out, err;
	json_t *got, *want;

	cr_assert_eq(run_tapio(a1, NULL, &out, &err), 0, "stderr: %s", err.p);
	got = parse(out.p);
	want = parse(STATUS_BODY);
	cr_expect(json_equal(got, want), "%s", out.p);
	json_decref(got);
	json_decref(want);
	cr_assert_eq(run_tapio(a2, NULL, &out, &err), 0, "stderr: %s", err.p);
	cr_expect_not_null(strstr(out.p, "agents_connected  2\n"), "%s", out.p);
	cr_expect_not_null(strstr(out.p, "store             {\"segments\":3}\n"), "%s", out.p);
	cr_assert_eq(run_tapio(a3, NULL, &out, &err), 0, "stderr: %s", err.p);
	cr_expect_eq(strncmp(out.p, agents_hdr, strlen(agents_hdr)), 0, "%s", out.p);
	cr_expect_not_null(
	    strstr(
		out.p,
		"worker-22  01HBBBBBBBBBBBBBBBBBBBBBBB  -        no         120.0            -       -\n"),
	    "%s", out.p);
	cr_assert_eq(run_tapio(a4, NULL, &out, &err), 0, "stderr: %s", err.p);
	got = parse(out.p);
	want = parse(AGENTS_BODY);
	cr_expect(json_equal(got, want), "%s", out.p);
	json_decref(got);
	json_decref(want);
}

Test(cli_controller, query_passes_by_bucket_since)
{
	const char *a1[] = {"--controller", url,  "--json",  "query", "--by", "type",
			    "--bucket",	    "1m", "--since", "1h",    NULL};
	const char *a2[] = {"--controller", url, "query", "--by", "type", NULL};
	struct buf out, err;
	json_t *got, *want;

	cr_assert_eq(run_tapio(a1, NULL, &out, &err), 0, "stderr: %s", err.p);
	got = parse(out.p);
	want = parse(SUMMARY_BODY);
	cr_expect(json_equal(got, want), "%s", out.p);
	json_decref(got);
	json_decref(want);
	cr_assert_eq(srv.nrequests, 1);
	cr_expect_eq(strncmp(srv.requests[0], "/v1/summary?by=type&bucket=1m&since=20", 38), 0,
		     "%s", srv.requests[0]);
	cr_assert_eq(run_tapio(a2, NULL, &out, &err), 0, "stderr: %s", err.p);
	cr_expect_not_null(strstr(out.p, "kernel.storage.io_error            2026-11-25T13:01:00Z  "
					 "2\n"),
			   "%s", out.p);
	cr_expect_not_null(strstr(srv.requests[1], "bucket=1h&"), "%s", srv.requests[1]);
}

Test(cli_controller, query_filters_are_local_only)
{
	const char *args[] = {"--controller", url,	"query",    "--by",
			      "node",	      "--type", "oom_kill", NULL};
	struct buf out, err;

	cr_assert_eq(run_tapio(args, NULL, &out, &err), 2);
	cr_expect_eq(count_lines(err.p), 1, "%s", err.p);
	cr_expect_eq(srv.nrequests, 0);
}

Test(cli_controller, health_from_controller_occurrences)
{
	const char *args[] = {"--controller", url, "--json", "health", "network", NULL};
	struct buf out, err;
	json_t *j, *o;

	cr_assert_eq(run_tapio(args, NULL, &out, &err), 0, "stderr: %s", err.p);
	j = parse(out.p);
	o = json_array_get(json_object_get(j, "observers"), 0);
	cr_expect_eq(json_integer_value(json_object_get(o, "total")), 3);
	cr_expect_str_eq(json_string_value(json_object_get(json_object_get(o, "top"), "type")),
			 "kernel.network.connection_refused");
	cr_expect_str_eq(json_string_value(json_object_get(j, "verdict")), "ok");
	json_decref(j);
}

Test(cli_controller, invalid_json_response)
{
	const char *args[] = {"--controller", url, "status", NULL};
	struct http_route bad[] = {{"/v1/status", NULL, 200, "<html>"}};
	struct buf out, err;

	http_stop(&srv);
	http_start(&srv, bad, 1);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", srv.port);
	cr_assert_eq(run_tapio(args, NULL, &out, &err), 1);
	cr_expect_eq(count_lines(err.p), 1, "%s", err.p);
	cr_expect_not_null(strstr(err.p, "tapio: controller: invalid JSON in the response to "
					 "/v1/status"),
			   "%s", err.p);
}

Test(cli_controller, watch_polls_and_prints_each_occurrence_once)
{
	const char *args[] = {"--controller", url, "--json", "watch", NULL};
	struct buf out = {0}, err = {0};
	struct proc p;

	proc_spawn(&p, args);
	usleep(2500 * 1000); /* at least two polls of the same three occurrences */
	kill(p.pid, SIGINT);
	cr_assert_eq(proc_finish(&p, &out, &err, 5000), 0, "stderr: %s", err.p);
	cr_expect_eq(count_lines(out.p), 3, "%s", out.p);
	cr_expect_geq(srv.nrequests, 4, "polls: %zu", srv.nrequests);
	cr_expect_not_null(strstr(srv.requests[0], "/v1/occurrences?since=20"), "%s",
			   srv.requests[0]);
}

Test(cli_controller, mcp_tools_against_the_controller)
{
	const char *args[] = {"mcp", "--controller", url, NULL};
	const char *script =
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":"
	    "\"recent_anomalies\",\"arguments\":{\"limit\":2}}}\n"
	    "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":"
	    "\"recent_anomalies\",\"arguments\":{\"type\":\"io_error\"}}}\n"
	    "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":"
	    "\"ping\"}}\n";
	struct buf out, err;
	char *l1, *l2, *l3, *save = NULL;
	json_t *r, *res, *doc;

	cr_assert_eq(run_tapio(args, script, &out, &err), 0, "stderr: %s", err.p);
	l1 = strtok_r(out.p, "\n", &save);
	l2 = strtok_r(NULL, "\n", &save);
	l3 = strtok_r(NULL, "\n", &save);
	cr_assert(l1 && l2 && l3, "%s", out.p);

	r = parse(l1);
	res = json_object_get(r, "result");
	cr_expect(json_is_false(json_object_get(res, "isError")));
	doc = parse(json_string_value(
	    json_object_get(json_array_get(json_object_get(res, "content"), 0), "text")));
	cr_expect_eq(json_integer_value(json_object_get(doc, "count")), 2);
	cr_expect_str_eq(json_string_value(json_object_get(
			     json_array_get(json_object_get(doc, "occurrences"), 0), "id")),
			 occ[2].id);
	json_decref(doc);
	json_decref(r);

	r = parse(l2);
	res = json_object_get(r, "result");
	cr_expect(json_is_true(json_object_get(res, "isError")), "%s", l2);
	cr_expect_str_eq(json_string_value(json_object_get(
			     json_array_get(json_object_get(res, "content"), 0), "text")),
			 "controller: BAD_QUERY: type is not allowed here");
	json_decref(r);

	r = parse(l3);
	cr_expect(json_is_false(json_object_get(json_object_get(r, "result"), "isError")), "%s",
		  l3);
	json_decref(r);
	cr_expect_not_null(strstr(srv.requests[0], "limit=2"), "%s", srv.requests[0]);
}
