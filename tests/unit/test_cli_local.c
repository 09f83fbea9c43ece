/*
 * `tapio` against local data dirs: status, recent, health, agents, query in human and --json
 * form, checked against brute-force counts of the fixture; usage and data-dir errors.
 */
#include <criterion/criterion.h>
#include <jansson.h>

#include "cli_harness.h"

static struct fixture fx;

static void setup(void)
{
	unsetenv("TAPIO_DATA_DIR");
	fixture_build(&fx, 300);
}

static void teardown(void)
{
	fixture_remove(&fx);
}

TestSuite(cli_local, .init = setup, .fini = teardown, .timeout = 60);

static json_t *parse(const char *s)
{
	json_error_t e;
	json_t *j = json_loads(s, 0, &e);

	cr_assert_not_null(j, "invalid JSON (%s): %s", e.text, s);
	return j;
}

static size_t brute(uint64_t max_age_s, int type, int sev, const char *node)
{
	size_t n = 0;

	for (size_t i = 0; i < fx.n; i++) {
		const struct tapio_occurrence *o = &fx.occ[i];

		if (max_age_s && fx.off_s[i] >= max_age_s)
			continue;
		if ((type >= 0 && (int)o->type != type) || (sev >= 0 && (int)o->severity != sev) ||
		    (node && strcmp(node, o->node)))
			continue;
		n++;
	}
	return n;
}

Test(cli_local, status_json_counts_match_fixture)
{
	const char *args[] = {"--data-dir", fx.dir, "status", "--json", NULL};
	struct buf out, err;
	json_t *j, *bt, *bs;
	char first[40], last[40];

	cr_assert_eq(run_tapio(args, NULL, &out, &err), 0, "stderr: %s", err.p);
	j = parse(out.p);
	cr_expect_eq(json_integer_value(json_object_get(j, "occurrences")), (json_int_t)fx.n);
	cr_expect_eq(json_integer_value(json_object_get(j, "files")), 3);
	cr_expect_eq(json_integer_value(json_object_get(j, "malformed")), 1);
	cr_expect_eq(json_integer_value(json_object_get(j, "torn")), 1);
	clock_format_rfc3339(fx.occ[0].timestamp_ns, first, sizeof(first));
	clock_format_rfc3339(fx.occ[fx.n - 1].timestamp_ns, last, sizeof(last));
	cr_expect_str_eq(json_string_value(json_object_get(j, "first")), first);
	cr_expect_str_eq(json_string_value(json_object_get(j, "last")), last);
	cr_expect(json_real_value(json_object_get(j, "newest_age_s")) >=
		  (double)fx.off_s[fx.n - 1]);
	bt = json_object_get(j, "by_type");
	bs = json_object_get(j, "by_severity");
	for (int t = 0; t < TAPIO_OCC__COUNT; t++)
		cr_expect_eq(json_integer_value(json_object_get(bt, tapio_occ_type_name(t))),
			     (json_int_t)brute(0, t, -1, NULL), "type %s", tapio_occ_type_name(t));
	for (int s = 0; s < TAPIO_SEV__COUNT; s++)
		cr_expect_eq(json_integer_value(json_object_get(bs, tapio_severity_name(s))),
			     (json_int_t)brute(0, -1, s, NULL), "severity %s",
			     tapio_severity_name(s));
	/* the malformed line is reported once, with file:line */
	cr_expect_eq(count_lines(err.p), 1, "stderr: %s", err.p);
	cr_expect_not_null(strstr(err.p, "occurrences.jsonl.1:3:"), "stderr: %s", err.p);
	json_decref(j);
}

/* Column starts of a header word must equal the start of that column in every row. */
static void expect_aligned(const char *text, const char *hdr_line_start, const char *col)
{
	const char *h = strstr(text, hdr_line_start), *line;
	size_t col_at, rows = 0;

	cr_assert_not_null(h, "no header '%s' in:\n%s", hdr_line_start, text);
	col_at = (size_t)(strstr(h, col) - h);
	for (line = strchr(h, '\n') + 1; *line && *line != '\n'; line = strchr(line, '\n') + 1) {
		const char *eol = strchr(line, '\n');

		cr_assert((size_t)(eol - line) > col_at, "short row: %.*s", (int)(eol - line),
			  line);
		cr_expect(line[col_at - 1] == ' ' && line[col_at] != ' ',
			  "column %s misaligned in row: %.*s", col, (int)(eol - line), line);
		rows++;
		if (!eol[1])
			break;
	}
	cr_expect(rows > 0);
}

Test(cli_local, status_human_is_aligned)
{
	const char *args[] = {"status", NULL};
	struct buf out, err;
	char want[64];

	setenv("TAPIO_DATA_DIR", fx.dir, 1); /* the environment default */
	cr_assert_eq(run_tapio(args, NULL, &out, &err), 0, "stderr: %s", err.p);
	unsetenv("TAPIO_DATA_DIR");
	snprintf(want, sizeof(want), "occurrences    %zu\n", fx.n);
	cr_expect_not_null(strstr(out.p, want), "%s", out.p);
	expect_aligned(out.p, "TYPE ", "COUNT");
	expect_aligned(out.p, "SEVERITY ", "COUNT");
}

Test(cli_local, recent_json_newest_first_with_default_limit)
{
	const char *args[] = {"--json", "recent", "--data-dir", fx.dir, NULL};
	struct buf out, err;
	char *line, *save = NULL;
	size_t i = 0;

	cr_assert_eq(run_tapio(args, NULL, &out, &err), 0, "stderr: %s", err.p);
	cr_assert_eq(count_lines(out.p), 50);
	for (line = strtok_r(out.p, "\n", &save); line; line = strtok_r(NULL, "\n", &save), i++) {
		struct tapio_occurrence o;
		char why[128];

		cr_assert_eq(occ_json_parse(line, strlen(line), &o, why, sizeof(why)), 0, "%s",
			     why);
		cr_expect_str_eq(o.id, fx.occ[fx.n - 1 - i].id);
	}
}

static size_t recent_count(const char *const *args)
{
	struct buf out, err;

	cr_assert_eq(run_tapio(args, NULL, &out, &err), 0, "stderr: %s", err.p);
	return count_lines(out.p);
}

Test(cli_local, recent_filters_and_times)
{
	char rfc[40];
	const char *a1[] = {"--data-dir", fx.dir,    "--json", "recent", "--since",
			    "15m",	  "--limit", "0",      NULL};
	const char *a2[] = {"--data-dir", fx.dir,     "--json",	 "recent", "--since=24h",
			    "--type",	  "oom_kill", "--limit", "0",	   NULL};
	const char *a3[] = {"--data-dir", fx.dir,     "--json",	 "recent", "--node", "node-b",
			    "--severity", "critical", "--limit", "1000",   NULL};
	const char *a4[] = {"--data-dir", fx.dir, "--json", "recent",
			    "--since",	  rfc,	  "--type", "kernel.network.connection_refused",
			    "--limit",	  "0",	  NULL};
	const char *a5[] = {"--data-dir", fx.dir, "--json",  "recent", "--until", "1h",
			    "--since",	  "7d",	  "--limit", "0",      NULL};
	const char *a6[] = {"--data-dir", fx.dir, "--json", "recent", "--limit", "7", NULL};
	const char *a7[] = {"--data-dir", fx.dir,    "--json", "recent", "--severity",
			    "error",	  "--limit", "0",      NULL};

	cr_expect_eq(recent_count(a1), brute(900, -1, -1, NULL));
	cr_expect_eq(recent_count(a2), brute(86400, TAPIO_OCC_OOM_KILL, -1, NULL));
	cr_expect_eq(recent_count(a3), brute(0, -1, TAPIO_SEV_CRITICAL, "node-b"));
	clock_format_rfc3339(fx.now_ns - 3600 * S_NS, rfc, sizeof(rfc));
	cr_expect_eq(recent_count(a4), brute(3600, TAPIO_OCC_CONNECTION_REFUSED, -1, NULL));
	cr_expect_eq(recent_count(a5), brute(0, -1, -1, NULL) - brute(3600, -1, -1, NULL));
	cr_expect_eq(recent_count(a6), 7);
	/* --severity is a minimum: error and critical */
	cr_expect_eq(recent_count(a7),
		     brute(0, -1, TAPIO_SEV_ERROR, NULL) + brute(0, -1, TAPIO_SEV_CRITICAL, NULL));
	cr_expect(brute(900, -1, -1, NULL) > 0 && brute(86400, TAPIO_OCC_OOM_KILL, -1, NULL) > 0);
}

Test(cli_local, recent_human_is_aligned)
{
	const char *args[] = {"--data-dir", fx.dir, "recent", "--limit", "40", NULL};
	struct buf out, err;

	cr_assert_eq(run_tapio(args, NULL, &out, &err), 0, "stderr: %s", err.p);
	cr_expect_eq(count_lines(out.p), 41);
	cr_expect_eq(strncmp(out.p, "TIME ", 5), 0, "%s", out.p);
	expect_aligned(out.p, "TIME ", "SEVERITY");
	expect_aligned(out.p, "TIME ", "TYPE");
	expect_aligned(out.p, "TIME ", "NODE");
	expect_aligned(out.p, "TIME ", "DETAIL");
}

static void expect_usage_error(const char *const *args, int code, const char *needle)
{
	struct buf out, err;

	cr_assert_eq(run_tapio(args, NULL, &out, &err), code, "stderr: %s", err.p);
	cr_expect_eq(out.len, 0, "stdout: %s", out.p);
	cr_expect_eq(count_lines(err.p), 1, "stderr: %s", err.p);
	cr_expect_eq(strncmp(err.p, "tapio: ", 7), 0, "stderr: %s", err.p);
	cr_expect_not_null(strstr(err.p, needle), "stderr: %s", err.p);
}

Test(cli_local, usage_errors_exit_2_with_one_line)
{
	const char *a1[] = {"--data-dir", fx.dir, "recent", "--frobnicate", NULL};
	const char *a2[] = {"--data-dir", fx.dir, "explode", NULL};
	const char *a3[] = {"--data-dir", fx.dir, "recent", "--by", "type", NULL};
	const char *a4[] = {"--data-dir", fx.dir, "recent", "--since", "yesterday", NULL};
	const char *a5[] = {"--data-dir", fx.dir, "recent", "--type", "kernel.nope", NULL};
	const char *a6[] = {"--data-dir", fx.dir, "query", NULL};
	const char *a7[] = {"--data-dir", fx.dir, "health", "gpu", NULL};
	const char *a8[] = {"--data-dir", fx.dir, NULL};
	const char *a9[] = {"--data-dir", fx.dir, "recent", "--limit", NULL};

	expect_usage_error(a1, 2, "unknown option '--frobnicate'");
	expect_usage_error(a2, 2, "unknown command 'explode'");
	expect_usage_error(a3, 2, "'--by' does not apply to 'recent'");
	expect_usage_error(a4, 2, "invalid --since 'yesterday'");
	expect_usage_error(a5, 2, "unknown occurrence type");
	expect_usage_error(a6, 2, "--by");
	expect_usage_error(a7, 2, "unknown observer 'gpu'");
	expect_usage_error(a8, 2, "no command");
	expect_usage_error(a9, 2, "needs a value");
}

Test(cli_local, missing_data_dir_exits_1_with_one_line)
{
	const char *cmds[] = {"status", "recent", "health", "agents", "watch"};

	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		const char *args[] = {"--data-dir", "/nonexistent/tapio", cmds[i], NULL};

		expect_usage_error(args, 1, "/nonexistent/tapio: No such file or directory");
	}
}

Test(cli_local, help_and_version)
{
	const char *a1[] = {"--help", NULL}, *a2[] = {"--version", NULL};
	struct buf out, err;

	cr_assert_eq(run_tapio(a1, NULL, &out, &err), 0);
	cr_expect_not_null(strstr(out.p, "usage: tapio"));
	cr_assert_eq(run_tapio(a2, NULL, &out, &err), 0);
	cr_expect_eq(strncmp(out.p, "tapio ", 6), 0);
}

/* The documented verdict rules, applied to the fixture by brute force. */
static const char *brute_verdict(enum tapio_observer obs, size_t *total)
{
	size_t crit15 = 0, err = 0, warn = 0;

	*total = 0;
	for (size_t i = 0; i < fx.n; i++) {
		const struct tapio_occurrence *o = &fx.occ[i];

		if (tapio_catalogue[o->type].observer != obs)
			continue;
		if (o->severity == TAPIO_SEV_CRITICAL && fx.off_s[i] < 900)
			crit15++;
		if (fx.off_s[i] >= 3600)
			continue;
		(*total)++;
		err += o->severity >= TAPIO_SEV_ERROR;
		warn += o->severity == TAPIO_SEV_WARNING;
	}
	return crit15 ? "critical" : (err || warn >= 10) ? "degraded" : "ok";
}

Test(cli_local, health_json_matches_rules)
{
	const char *args[] = {"--data-dir", fx.dir, "--json", "health", NULL};
	const char *order[] = {"ok", "degraded", "critical"};
	const char *keys[] = {"destination", "comm", "device", "cpu"};
	struct buf out, err;
	json_t *j, *arr, *it;
	size_t i, worst = 0;

	cr_assert_eq(run_tapio(args, NULL, &out, &err), 0, "stderr: %s", err.p);
	j = parse(out.p);
	cr_expect_eq(json_integer_value(json_object_get(j, "window_s")), 3600);
	arr = json_object_get(j, "observers");
	cr_assert_eq(json_array_size(arr), 4);
	json_array_foreach(arr, i, it)
	{
		size_t total, maxc = 0;
		const char *v = brute_verdict((enum tapio_observer)i, &total);
		json_t *top = json_object_get(it, "top"), *counts = json_object_get(it, "counts");

		cr_expect_str_eq(json_string_value(json_object_get(it, "observer")),
				 tapio_observer_name(i));
		cr_expect_str_eq(json_string_value(json_object_get(it, "verdict")), v, "%s",
				 tapio_observer_name(i));
		cr_expect_eq(json_integer_value(json_object_get(it, "total")), (json_int_t)total);
		for (int t = 0; t < TAPIO_OCC__COUNT; t++) {
			size_t c = 0;

			if (tapio_catalogue[t].observer != i)
				continue;
			for (size_t k = 0; k < fx.n; k++)
				c += fx.occ[k].type == (enum tapio_occ_type)t && fx.off_s[k] < 3600;
			cr_expect_eq(
			    json_integer_value(json_object_get(counts, tapio_occ_type_name(t))),
			    (json_int_t)c);
			if (c > maxc)
				maxc = c;
		}
		if (total) {
			cr_assert_not_null(top);
			cr_expect_eq(json_integer_value(json_object_get(top, "count")),
				     (json_int_t)maxc);
			cr_expect_str_eq(json_string_value(json_object_get(top, "key")), keys[i]);
		}
		for (size_t k = 0; k < 3; k++) {
			if (!strcmp(order[k], v) && k > worst)
				worst = k;
		}
	}
	cr_expect_str_eq(json_string_value(json_object_get(j, "verdict")), order[worst]);
	json_decref(j);
}

/* Small hand-made dirs pin each verdict rule. */
static const char *verdict_of(const int *types, const int *sevs, const uint64_t *ages, size_t n)
{
	static char v[32];
	struct fixture d;
	struct buf out, err;
	FILE *f;
	json_t *j;

	fixture_empty(&d);
	f = fx_open(&d, "occurrences.jsonl", "w");
	for (size_t i = 0; i < n; i++) {
		struct tapio_occurrence o;

		fx_occ(&o, types[i], d.now_ns - ages[i] * S_NS);
		o.severity = (enum tapio_severity)sevs[i];
		write_line(f, &o);
	}
	fclose(f);
	{
		const char *args[] = {"--data-dir", d.dir, "--json", "health", "storage", NULL};

		cr_assert_eq(run_tapio(args, NULL, &out, &err), 0, "stderr: %s", err.p);
	}
	j = parse(out.p);
	cr_expect_eq(json_array_size(json_object_get(j, "observers")), 1);
	snprintf(v, sizeof(v), "%s", json_string_value(json_object_get(j, "verdict")));
	json_decref(j);
	fixture_remove(&d);
	return v;
}

Test(cli_local, health_verdict_rules)
{
	int io = TAPIO_OCC_IO_ERROR, lat = TAPIO_OCC_LATENCY_SPIKE;
	int t1[] = {io}, s1[] = {TAPIO_SEV_CRITICAL};
	uint64_t age_recent[] = {60}, age_30m[] = {1800};
	int t9[9], s9[9], t10[10], s10[10];
	uint64_t a9[9], a10[10];

	cr_expect_str_eq(verdict_of(NULL, NULL, NULL, 0), "ok");
	cr_expect_str_eq(verdict_of(t1, s1, age_recent, 1), "critical");
	cr_expect_str_eq(verdict_of(t1, s1, age_30m, 1), "degraded");
	for (int i = 0; i < 10; i++) {
		t10[i] = lat;
		s10[i] = TAPIO_SEV_WARNING;
		a10[i] = 100 + (uint64_t)i * 60;
		if (i < 9) {
			t9[i] = lat;
			s9[i] = TAPIO_SEV_WARNING;
			a9[i] = a10[i];
		}
	}
	cr_expect_str_eq(verdict_of(t9, s9, a9, 9), "ok");
	cr_expect_str_eq(verdict_of(t10, s10, a10, 10), "degraded");
	{
		int te[] = {lat}, se[] = {TAPIO_SEV_ERROR};

		cr_expect_str_eq(verdict_of(te, se, age_30m, 1), "degraded");
	}
}

Test(cli_local, health_human_and_observer)
{
	const char *args[] = {"--data-dir", fx.dir, "health", "network", "--since", "24h", NULL};
	struct buf out, err;

	cr_assert_eq(run_tapio(args, NULL, &out, &err), 0, "stderr: %s", err.p);
	cr_expect_eq(strncmp(out.p, "verdict: ", 9), 0, "%s", out.p);
	cr_expect_not_null(strstr(out.p, "window 86400s"), "%s", out.p);
	cr_expect_not_null(strstr(out.p, "destination 10.0.0."), "%s", out.p);
	cr_expect_null(strstr(out.p, "\nstorage"), "%s", out.p);
	expect_aligned(out.p, "OBSERVER  ", "VERDICT");
	expect_aligned(out.p, "OBSERVER  ", "TOP KEY");
}

Test(cli_local, agents_lists_nodes)
{
	const char *a1[] = {"--data-dir", fx.dir, "agents", "--json", NULL};
	const char *a2[] = {"--data-dir", fx.dir, "agents", NULL};
	struct buf out, err;
	json_t *j, *it;
	size_t i;

	cr_assert_eq(run_tapio(a1, NULL, &out, &err), 0, "stderr: %s", err.p);
	j = parse(out.p);
	cr_assert_eq(json_array_size(json_object_get(j, "agents")), 2);
	json_array_foreach(json_object_get(j, "agents"), i, it)
	{
		const char *node = json_string_value(json_object_get(it, "node"));

		cr_expect_eq(json_integer_value(json_object_get(it, "occurrences")),
			     (json_int_t)brute(0, -1, -1, node), "%s", node);
	}
	json_decref(j);
	cr_assert_eq(run_tapio(a2, NULL, &out, &err), 0, "stderr: %s", err.p);
	cr_expect_not_null(strstr(out.p, "node-a"));
	expect_aligned(out.p, "NODE ", "OCCURRENCES");
}

Test(cli_local, query_counts_per_bucket)
{
	const char *a1[] = {"--data-dir", fx.dir, "--json", "query", "--by", "type", NULL};
	const char *a2[] = {"--data-dir", fx.dir, "--json",  "query", "--by", "node",
			    "--bucket",	  "1m",	  "--since", "15m",   NULL};
	const char *a3[] = {"--data-dir", fx.dir, "query", "--by", "severity", NULL};
	struct buf out, err;
	const char *k;
	json_t *j, *arr, *it;
	size_t i, sum = 0;

	cr_assert_eq(run_tapio(a1, NULL, &out, &err), 0, "stderr: %s", err.p);
	j = parse(out.p);
	cr_expect_str_eq(json_string_value(json_object_get(j, "by")), "type");
	cr_expect_eq(json_integer_value(json_object_get(j, "bucket_s")), 3600);
	json_object_foreach(json_object_get(j, "groups"), k, arr)
	{
		size_t gsum = 0;
		uint64_t prev = 0;

		json_array_foreach(arr, i, it)
		{
			uint64_t t;

			cr_assert_eq(
			    clock_parse_rfc3339(json_string_value(json_object_get(it, "t")), &t),
			    0);
			cr_expect_eq(t % (3600 * S_NS), 0);
			cr_expect_gt(t, prev);
			prev = t;
			gsum += (size_t)json_integer_value(json_object_get(it, "count"));
		}
		cr_expect_eq(gsum, brute(86400, tapio_occ_type_parse(k), -1, NULL), "%s", k);
		sum += gsum;
	}
	cr_expect_eq(sum, brute(86400, -1, -1, NULL));
	json_decref(j);

	cr_assert_eq(run_tapio(a2, NULL, &out, &err), 0, "stderr: %s", err.p);
	j = parse(out.p);
	cr_expect_eq(json_integer_value(json_object_get(j, "bucket_s")), 60);
	sum = 0;
	json_object_foreach(json_object_get(j, "groups"), k, arr)
	{
		json_array_foreach(arr, i, it)
		{
			sum += (size_t)json_integer_value(json_object_get(it, "count"));
		}
		cr_expect(!strcmp(k, "node-a") || !strcmp(k, "node-b"), "%s", k);
	}
	cr_expect_eq(sum, brute(900, -1, -1, NULL));
	json_decref(j);

	cr_assert_eq(run_tapio(a3, NULL, &out, &err), 0, "stderr: %s", err.p);
	expect_aligned(out.p, "GROUP ", "BUCKET");
	expect_aligned(out.p, "GROUP ", "COUNT");
}
