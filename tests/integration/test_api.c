/*
 * The HTTP query API (docs/api.md) of the real tapio-controller, fed by the real
 * tapio-loadgen, queried over plain sockets by a small HTTP/1.1 client: every endpoint's
 * fields, filters equal to a brute-force filter of everything, pagination under concurrent
 * ingest compared with --dump, summaries equal to raw counts, ndjson, every error path,
 * Prometheus text and the dashboard page.
 */
#include <jansson.h>
#include <regex.h>
#include <strings.h>

#include "controller_harness.h"

#define LOADGEN_BIN TAPIO_BIN_DIR "/tapio-loadgen"

/* ---- controller with the API ----------------------------------------------------------- */

/* The controllers a test started; the fini kills what a failed assertion left running. */
static struct ctl ctl_a, ctl_b;

static void kill_leftovers(void)
{
	struct ctl *all[] = {&ctl_a, &ctl_b};

	for (size_t i = 0; i < 2; i++)
		if (all[i]->pid > 0) {
			kill(all[i]->pid, SIGKILL);
			waitpid(all[i]->pid, NULL, 0);
			all[i]->pid = 0;
		}
}

static int http_port_from_log(struct ctl *c)
{
	static const char tag[] = "http API listening on 127.0.0.1:";
	char *l = ctl_read_log(c), *p = strstr(l, tag);
	int port = p ? atoi(p + strlen(tag)) : 0;

	free(l);
	cr_assert_gt(port, 0, "no http API line in the controller log");
	return port;
}

static int start_api(struct ctl *c, const char *name)
{
	ctl_mkroot(c, name);
	ctl_start(c, "--http", "127.0.0.1:0", "--fsync", "never", "--heartbeat-interval", "1s",
		  "--idle-timeout", "10s", NULL);
	return http_port_from_log(c);
}

static void stop_api(struct ctl *c)
{
	int st = ctl_stop(c, SIGTERM);

	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "controller exit status %d", st);
	cr_assert(ctl_log_has(c, "http API stopped"), "http API did not log its stop");
	cr_assert(ctl_log_has(c, "stopped cleanly"), "uv_loop_close failed (handles left open)");
}

/* ---- tapio-loadgen ------------------------------------------------------------------------ */

static pid_t loadgen_spawn(struct ctl *c, int agents, int rate, int duration, const char *out)
{
	char port[16], a[16], r[16], d[16];
	pid_t pid;

	snprintf(port, sizeof(port), "127.0.0.1:%d", c->port);
	snprintf(a, sizeof(a), "%d", agents);
	snprintf(r, sizeof(r), "%d", rate);
	snprintf(d, sizeof(d), "%d", duration);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int null = open("/dev/null", O_WRONLY);

		dup2(fd, 1);
		dup2(null, 2);
		execl(LOADGEN_BIN, LOADGEN_BIN, "--controller", port, "--agents", a, "--rate", r,
		      "--duration", d, "--json-summary", (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Waits for loadgen and returns its acknowledged occurrence count. */
static long loadgen_wait(pid_t pid, const char *out)
{
	json_error_t jerr;
	json_t *j;
	long acked;
	int st;

	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "tapio-loadgen failed: %d", st);
	j = json_load_file(out, 0, &jerr);
	cr_assert_not_null(j, "loadgen summary: %s", jerr.text);
	acked = (long)json_integer_value(json_object_get(j, "acked"));
	cr_assert_eq(json_integer_value(json_object_get(j, "dropped")), 0);
	json_decref(j);
	return acked;
}

/* ---- a small HTTP/1.1 client ---------------------------------------------------------------- */

struct resp {
	int status;
	char head[8192];
	char *body;
	size_t len;
};

static void resp_free(struct resp *r)
{
	free(r->body);
	r->body = NULL;
}

static void http_req(int port, const char *method, const char *target, const char *headers,
		     struct resp *r)
{
	char req[8192];
	size_t cap = 1 << 16, got = 0;
	char *buf = malloc(cap), *sep;
	int fd = cli_connect(port), n;

	n = snprintf(req, sizeof(req),
		     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s\r\n", method,
		     target, headers ? headers : "");
	cr_assert_lt((size_t)n, sizeof(req));
	cr_assert_eq(cli_send_raw(fd, req, (size_t)n), 0);
	for (;;) {
		ssize_t k;

		if (got + 1 >= cap)
			buf = realloc(buf, cap *= 2);
		k = recv(fd, buf + got, cap - got - 1, 0);
		if (k < 0 && errno == EINTR)
			continue;
		cr_assert_geq(k, 0, "recv %s: %s", target, strerror(errno));
		if (k == 0)
			break;
		got += (size_t)k;
	}
	close(fd);
	buf[got] = '\0';
	sep = strstr(buf, "\r\n\r\n");
	cr_assert_not_null(sep, "no header end in the response to %s", target);
	cr_assert_lt((size_t)(sep - buf), sizeof(r->head));
	memcpy(r->head, buf, (size_t)(sep - buf));
	r->head[sep - buf] = '\0';
	cr_assert_eq(sscanf(buf, "HTTP/1.1 %d", &r->status), 1, "status line: %.40s", buf);
	r->len = got - (size_t)(sep + 4 - buf);
	r->body = malloc(r->len + 1);
	memcpy(r->body, sep + 4, r->len);
	r->body[r->len] = '\0';
	free(buf);
}

/* Value of header name (case-insensitive) into out; false when absent. */
static bool resp_header(const struct resp *r, const char *name, char *out, size_t cap)
{
	const char *p = strstr(r->head, "\r\n");
	size_t nl = strlen(name);

	while (p) {
		p += 2;
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			const char *v = p + nl + 1, *e = strstr(v, "\r\n");
			size_t len;

			while (*v == ' ')
				v++;
			len = e ? (size_t)(e - v) : strlen(v);
			if (len >= cap)
				len = cap - 1;
			memcpy(out, v, len);
			out[len] = '\0';
			return true;
		}
		p = strstr(p, "\r\n");
	}
	return false;
}

static json_t *get_json(int port, const char *target, int want_status)
{
	struct resp r;
	json_error_t jerr;
	char ct[128];
	json_t *j;

	http_req(port, "GET", target, NULL, &r);
	cr_assert_eq(r.status, want_status, "GET %s: %d %s", target, r.status, r.body);
	cr_assert(resp_header(&r, "content-type", ct, sizeof(ct)));
	cr_assert_str_eq(ct, "application/json; charset=utf-8", "GET %s", target);
	j = json_loadb(r.body, r.len, 0, &jerr);
	cr_assert_not_null(j, "GET %s: not JSON (%s): %s", target, jerr.text, r.body);
	resp_free(&r);
	return j;
}

/* Asserts the error envelope: exactly {"error":{"code":code,"message":"…names…"}}. */
static void expect_error(int port, const char *method, const char *target, int status,
			 const char *code, const char *names)
{
	json_error_t jerr;
	struct resp r;
	json_t *j, *e;

	http_req(port, method, target, NULL, &r);
	cr_assert_eq(r.status, status, "%s %s: %d %s", method, target, r.status, r.body);
	j = json_loadb(r.body, r.len, 0, &jerr);
	cr_assert_not_null(j, "%s %s: not JSON: %s", method, target, r.body);
	cr_assert_eq(json_object_size(j), 1);
	e = json_object_get(j, "error");
	cr_assert(json_is_object(e) && json_object_size(e) == 2, "%s", r.body);
	cr_assert_str_eq(json_string_value(json_object_get(e, "code")), code, "%s %s", method,
			 target);
	cr_assert(strstr(json_string_value(json_object_get(e, "message")), names),
		  "%s %s: message does not name '%s': %s", method, target, names, r.body);
	json_decref(j);
	resp_free(&r);
}

/* ---- occurrences ------------------------------------------------------------------------- */

/*
 * Pages through /v1/occurrences?<query>&limit=<limit> until next_cursor is null; returns
 * every occurrence in order (new reference). pause_us between pages.
 */
static json_t *fetch_all(int port, const char *query, int limit, useconds_t pause_us, int *pages)
{
	json_t *all = json_array();
	char cursor[256] = "";

	*pages = 0;
	for (int guard = 0; guard < 100000; guard++) {
		char target[1024];
		json_t *page, *occ, *next;

		snprintf(target, sizeof(target), "/v1/occurrences?%s%slimit=%d%s%s", query,
			 query[0] ? "&" : "", limit, cursor[0] ? "&cursor=" : "", cursor);
		page = get_json(port, target, 200);
		cr_assert_eq(json_object_size(page), 2, "only occurrences and next_cursor");
		occ = json_object_get(page, "occurrences");
		next = json_object_get(page, "next_cursor");
		cr_assert(json_is_array(occ));
		cr_assert_leq(json_array_size(occ), (size_t)limit);
		json_array_extend(all, occ);
		(*pages)++;
		if (json_is_null(next)) {
			json_decref(page);
			return all;
		}
		cr_assert(json_is_string(next));
		cr_assert_eq(json_array_size(occ), (size_t)limit, "a short page with a cursor");
		snprintf(cursor, sizeof(cursor), "%s", json_string_value(next));
		json_decref(page);
		if (pause_us)
			usleep(pause_us);
	}
	cr_assert_fail("pagination does not end");
	return NULL;
}

struct filter {
	uint32_t type_mask;
	int min_sev;
	const char *node;
	uint64_t since, until;
};

static uint64_t occ_ts(json_t *o)
{
	uint64_t ns = 0;

	cr_assert_eq(clock_parse_rfc3339(json_string_value(json_object_get(o, "timestamp")), &ns),
		     0);
	return ns;
}

static bool matches(json_t *o, const struct filter *f)
{
	int t = tapio_occ_type_parse(json_string_value(json_object_get(o, "type")));
	int s = tapio_severity_parse(json_string_value(json_object_get(o, "severity")));
	const char *node =
	    json_string_value(json_object_get(json_object_get(o, "context"), "node"));
	uint64_t ts = occ_ts(o);

	cr_assert(t >= 0 && s >= 0 && node);
	if (f->type_mask && !(f->type_mask & (1u << t)))
		return false;
	if (f->min_sev >= 0 && s < f->min_sev)
		return false;
	if (f->node && strcmp(node, f->node) != 0)
		return false;
	if (ts < f->since || (f->until && ts >= f->until))
		return false;
	return true;
}

static const char *id_of(json_t *o)
{
	return json_string_value(json_object_get(o, "id"));
}

static void expect_filter(int port, json_t *all, const char *query, const struct filter *f,
			  size_t *nonempty)
{
	int pages;
	json_t *got = fetch_all(port, query, 37, 0, &pages);
	size_t k = 0, i;
	json_t *o;

	json_array_foreach(all, i, o)
	{
		if (!matches(o, f))
			continue;
		cr_assert_lt(k, json_array_size(got), "%s: missing %s", query, id_of(o));
		cr_assert_str_eq(id_of(json_array_get(got, k)), id_of(o), "%s: item %zu", query, k);
		k++;
	}
	cr_assert_eq(k, json_array_size(got), "%s: %zu extra occurrences", query,
		     json_array_size(got) - k);
	if (k)
		(*nonempty)++;
	json_decref(got);
}

/* The ids --dump prints (storage order, oldest first), after the controller stopped. */
static json_t *dump_ids(const struct ctl *c)
{
	char cmd[800], line[8192];
	json_t *ids = json_array();
	FILE *p;

	snprintf(cmd, sizeof(cmd), "%s --dump '%s' --json 2>/dev/null", CTL_BIN, c->data);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	while (fgets(line, sizeof(line), p)) {
		json_t *o = json_loads(line, 0, NULL);

		cr_assert_not_null(o, "--dump line is not JSON: %s", line);
		json_array_append(ids, json_object_get(o, "id"));
		json_decref(o);
	}
	cr_assert_eq(WEXITSTATUS(pclose(p)), 0);
	return ids;
}

/* ---- tests -------------------------------------------------------------------------------- */

Test(api, status_agents_filters_summary_metrics_dashboard, .fini = kill_leftovers, .timeout = 240)
{
	struct ctl *c = &ctl_a;
	int port = start_api(c, "api-queries");
	char out[1024], target[512], t1[40], t2[40];
	json_t *j, *all, *o;
	long acked;
	int pages;
	size_t i, nonempty = 0;

	snprintf(out, sizeof(out), "%s/loadgen.json", c->dir);
	acked = loadgen_wait(loadgen_spawn(c, 4, 2000, 3, out), out);
	cr_assert_gt(acked, 1000);

	/* status */
	j = get_json(port, "/v1/status", 200);
	{
		const char *keys[] = {"controller_id", "version", "wire_version", "started_at",
				      "uptime_s",      "listen",  "http",	  "store",
				      "ingest",	       "agents"};
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
			cr_assert_not_null(json_object_get(j, keys[k]), "status.%s", keys[k]);
		cr_assert_eq(json_object_size(j), sizeof(keys) / sizeof(keys[0]));
		cr_assert_str_eq(json_string_value(json_object_get(j, "version")), TAPIO_VERSION);
		cr_assert_eq(json_integer_value(json_object_get(j, "wire_version")), 1);
		snprintf(target, sizeof(target), "127.0.0.1:%d", port);
		cr_assert_str_eq(json_string_value(json_object_get(j, "http")), target);
		snprintf(target, sizeof(target), "127.0.0.1:%d", c->port);
		cr_assert_str_eq(json_string_value(json_object_get(j, "listen")), target);
		json_t *st = json_object_get(j, "store"), *in = json_object_get(j, "ingest");
		cr_assert_eq(json_integer_value(json_object_get(st, "records")), acked);
		cr_assert_str_eq(json_string_value(json_object_get(st, "dir")), c->data);
		cr_assert_str_eq(json_string_value(json_object_get(st, "fsync")), "never");
		cr_assert(json_is_string(json_object_get(st, "oldest")));
		cr_assert(json_is_string(json_object_get(st, "newest")));
		cr_assert_eq(json_integer_value(json_object_get(in, "occurrences")), acked);
		cr_assert_gt(json_integer_value(json_object_get(in, "frames")), 0);
		cr_assert_gt(json_integer_value(json_object_get(in, "bytes")), 0);
		cr_assert(json_is_real(json_object_get(in, "occurrences_per_s")));
		cr_assert(json_is_object(json_object_get(in, "errors")));
		cr_assert_eq(
		    json_integer_value(json_object_get(json_object_get(j, "agents"), "known")), 4);
	}
	json_decref(j);

	/* agents */
	j = get_json(port, "/v1/agents", 200);
	cr_assert_eq(json_object_size(j), 1);
	cr_assert_eq(json_array_size(json_object_get(j, "agents")), 4);
	json_array_foreach(json_object_get(j, "agents"), i, o)
	{
		cr_assert(json_is_string(json_object_get(o, "agent_id")));
		cr_assert(json_is_string(json_object_get(o, "node")));
		cr_assert(json_is_boolean(json_object_get(o, "connected")));
		cr_assert(json_is_array(json_object_get(o, "observers")));
		cr_assert(json_is_object(json_object_get(o, "config")));
		cr_assert_eq(json_array_size(json_object_get(o, "sessions")), 1);
		cr_assert_null(json_object_get(o, "id"), "renamed to agent_id");
	}
	json_t *agents = json_deep_copy(json_object_get(j, "agents"));
	json_decref(j);

	/* everything, newest first, across pages; equals the stored records */
	all = fetch_all(port, "", 1000, 0, &pages);
	cr_assert_eq(json_array_size(all), (size_t)acked);
	cr_assert_geq(pages, 2);
	for (i = 1; i < json_array_size(all); i++)
		cr_assert_geq(occ_ts(json_array_get(all, i - 1)) + 2000000000ull,
			      occ_ts(json_array_get(all, i)), "roughly newest first");

	/* filters equal a brute-force filter of everything */
	uint64_t lo = occ_ts(json_array_get(all, json_array_size(all) - 1));
	uint64_t hi = occ_ts(json_array_get(all, 0));
	uint64_t mid1 = lo + (hi - lo) / 3, mid2 = lo + 2 * (hi - lo) / 3;
	clock_format_rfc3339(mid1, t1, sizeof(t1));
	clock_format_rfc3339(mid2, t2, sizeof(t2));
	const char *node1 = json_string_value(json_object_get(json_array_get(agents, 1), "node"));
	struct {
		char q[400];
		struct filter f;
	} cases[8];
	size_t nc = 0;
#define CASE(fm, ...)                                                        \
	do {                                                                 \
		snprintf(cases[nc].q, sizeof(cases[nc].q), fm, __VA_ARGS__); \
		cases[nc].f = (struct filter){.min_sev = -1};                \
		nc++;                                                        \
	} while (0)
	CASE("type=%s", "kernel.storage.latency_spike");
	cases[nc - 1].f.type_mask = 1u << TAPIO_OCC_LATENCY_SPIKE;
	CASE("type=%s,%s", "kernel.network.connection_refused", "kernel.container.abnormal_exit");
	cases[nc - 1].f.type_mask =
	    (1u << TAPIO_OCC_CONNECTION_REFUSED) | (1u << TAPIO_OCC_ABNORMAL_EXIT);
	CASE("node=%s", node1);
	cases[nc - 1].f.node = node1;
	CASE("severity=%s", "error");
	cases[nc - 1].f.min_sev = TAPIO_SEV_ERROR;
	CASE("severity=%s&node=%s", "critical", node1);
	cases[nc - 1].f.min_sev = TAPIO_SEV_CRITICAL;
	cases[nc - 1].f.node = node1;
	CASE("since=%s&until=%s", t1, t2);
	cases[nc - 1].f.since = mid1;
	cases[nc - 1].f.until = mid2;
	CASE("since=%s&type=%s", "1h", "kernel.storage.latency_spike");
	cases[nc - 1].f.type_mask = 1u << TAPIO_OCC_LATENCY_SPIKE;
	CASE("until=%s&severity=%s", t1, "warning");
	cases[nc - 1].f.until = mid1;
	cases[nc - 1].f.min_sev = TAPIO_SEV_WARNING;
	for (size_t k = 0; k < nc; k++)
		expect_filter(port, all, cases[k].q, &cases[k].f, &nonempty);
	cr_assert_geq(nonempty, 6, "the filters should select something");
	{
		struct filter none = {.min_sev = -1, .node = "no-such-node"};
		expect_filter(port, all, "node=no-such-node", &none, &nonempty);
		struct filter old = {.min_sev = -1, .until = lo - 3600000000000ull};
		expect_filter(port, all, "until=2020-01-01T00:00:00Z", &old, &nonempty);
	}

	/* summaries equal raw counts */
	const char *bys[] = {"type", "node", "severity"};
	for (size_t b = 0; b < 3; b++) {
		json_t *groups, *arr;
		const char *key;
		json_int_t total = 0;

		snprintf(target, sizeof(target), "/v1/summary?by=%s&since=1h&bucket=1m", bys[b]);
		j = get_json(port, target, 200);
		cr_assert_str_eq(json_string_value(json_object_get(j, "by")), bys[b]);
		cr_assert_eq(json_integer_value(json_object_get(j, "bucket_s")), 60);
		groups = json_object_get(j, "groups");
		json_object_foreach(groups, key, arr)
		{
			json_int_t raw = 0, sum = 0;
			size_t x;
			json_t *e;

			json_array_foreach(arr, x, e)
			{
				uint64_t t;
				cr_assert_gt(json_integer_value(json_object_get(e, "count")), 0);
				cr_assert_eq(clock_parse_rfc3339(
						 json_string_value(json_object_get(e, "t")), &t),
					     0);
				cr_assert_eq(t % 60000000000ull, 0, "bucket on a minute");
				sum += json_integer_value(json_object_get(e, "count"));
			}
			json_array_foreach(all, x, e)
			{
				const char *v =
				    b == 0   ? json_string_value(json_object_get(e, "type"))
				    : b == 1 ? json_string_value(json_object_get(
						   json_object_get(e, "context"), "node"))
					     : json_string_value(json_object_get(e, "severity"));
				if (strcmp(v, key) == 0)
					raw++;
			}
			cr_assert_eq(sum, raw, "summary by %s: %s: %lld vs raw %lld", bys[b], key,
				     (long long)sum, (long long)raw);
			total += sum;
		}
		cr_assert_eq(total, acked, "summary by %s covers every record", bys[b]);
		json_decref(j);
	}
	j = get_json(port, "/v1/summary?by=type&since=1h&bucket=24h", 200);
	{
		const char *key;
		json_t *arr;
		json_int_t total = 0;
		json_object_foreach(json_object_get(j, "groups"), key, arr)
		{
			size_t x;
			json_t *e;
			json_array_foreach(arr, x, e) total +=
			    json_integer_value(json_object_get(e, "count"));
		}
		cr_assert_eq(total, acked);
	}
	json_decref(j);

	/* ndjson: lines, content type, cursor header continuing where the lines stop */
	{
		struct resp r;
		char ct[128], cur[256];
		size_t lines = 0;

		http_req(port, "GET", "/v1/occurrences?limit=25",
			 "Accept: application/x-ndjson\r\n", &r);
		cr_assert_eq(r.status, 200);
		cr_assert(resp_header(&r, "content-type", ct, sizeof(ct)));
		cr_assert_str_eq(ct, "application/x-ndjson");
		cr_assert(resp_header(&r, "x-tapio-next-cursor", cur, sizeof(cur)));
		for (char *line = r.body, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
			json_t *x = json_loadb(line, (size_t)(nl - line), 0, NULL);
			cr_assert_not_null(x, "ndjson line %zu", lines);
			cr_assert_str_eq(id_of(x), id_of(json_array_get(all, lines)));
			json_decref(x);
			lines++;
		}
		cr_assert_eq(lines, 25);
		cr_assert_eq(r.body[r.len - 1], '\n');
		resp_free(&r);
		snprintf(target, sizeof(target), "/v1/occurrences?limit=5&cursor=%s", cur);
		j = get_json(port, target, 200);
		cr_assert_str_eq(id_of(json_array_get(json_object_get(j, "occurrences"), 0)),
				 id_of(json_array_get(all, 25)));
		json_decref(j);
		/* the last page carries no cursor header */
		char t3[40];
		clock_format_rfc3339(occ_ts(json_array_get(all, 500)), t3, sizeof(t3));
		snprintf(target, sizeof(target), "/v1/occurrences?limit=1000&since=%s", t3);
		http_req(port, "GET", target, "Accept: application/x-ndjson\r\n", &r);
		cr_assert_eq(r.status, 200);
		cr_assert_not(resp_header(&r, "x-tapio-next-cursor", cur, sizeof(cur)));
		resp_free(&r);
	}

	/* /metrics: Prometheus text, controller counters and fleet counters by node */
	{
		struct resp r;
		regex_t sample, comment;
		char ct[128], want[256];
		size_t samples = 0;

		cr_assert_eq(regcomp(&sample,
				     "^[a-zA-Z_:][a-zA-Z0-9_:]*(\\{([a-zA-Z_][a-zA-Z0-9_]*=\""
				     "([^\"\\\\]|\\\\[\\\\\"n])*\",?)*\\})? [0-9.eE+-]+$",
				     REG_EXTENDED | REG_NOSUB),
			     0);
		cr_assert_eq(
		    regcomp(&comment,
			    "^# (HELP [a-zA-Z_:][a-zA-Z0-9_:]* .+|TYPE [a-zA-Z_:][a-zA-Z0-9_:]* "
			    "(counter|gauge))$",
			    REG_EXTENDED | REG_NOSUB),
		    0);
		http_req(port, "GET", "/metrics", NULL, &r);
		cr_assert_eq(r.status, 200);
		cr_assert(resp_header(&r, "content-type", ct, sizeof(ct)));
		cr_assert(strncmp(ct, "text/plain; version=0.0.4", 25) == 0, "%s", ct);
		cr_assert_eq(r.body[r.len - 1], '\n');
		for (char *line = r.body, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
			*nl = '\0';
			if (line[0] == '#')
				cr_assert_eq(regexec(&comment, line, 0, NULL, 0), 0, "bad: %s",
					     line);
			else {
				cr_assert_eq(regexec(&sample, line, 0, NULL, 0), 0, "bad: %s",
					     line);
				samples++;
			}
			*nl = '\n';
		}
		cr_assert_gt(samples, 20);
		snprintf(want, sizeof(want), "\ntapio_ingest_occurrences_total %ld\n", acked);
		cr_assert(strstr(r.body, want), "%s", want);
		snprintf(want, sizeof(want), "\ntapio_store_records %ld\n", acked);
		cr_assert(strstr(r.body, want), "%s", want);
		cr_assert(strstr(r.body, "\ntapio_ingest_errors_total{code=\"MALFORMED\"} 0\n"));
		/* the data directory is on ext4 here: segments are written with O_DIRECT */
		cr_assert(strstr(r.body, "\ntapio_store_direct_io 1\n"));
		cr_assert(strstr(r.body, "\ntapio_agents_known 4\n"));
		size_t heartbeats = 0;
		json_array_foreach(agents, i, o)
		{
			json_t *cn = json_object_get(o, "counters");
			snprintf(want, sizeof(want),
				 "\ntapio_agent_connected{node=\"%s\",agent=\"%s\"} ",
				 json_string_value(json_object_get(o, "node")),
				 json_string_value(json_object_get(o, "agent_id")));
			cr_assert(strstr(r.body, want), "%s", want);
			if (json_is_null(cn))
				continue;
			heartbeats++;
			snprintf(want, sizeof(want),
				 "\ntapio_agent_events_total{node=\"%s\",agent=\"%s\"} %lld\n",
				 json_string_value(json_object_get(o, "node")),
				 json_string_value(json_object_get(o, "agent_id")),
				 (long long)json_integer_value(json_object_get(cn, "events")));
			cr_assert(strstr(r.body, want), "%s", want);
		}
		cr_assert_gt(heartbeats, 0, "loadgen agents sent no heartbeat in 3 s at 1 s");
		regfree(&sample);
		regfree(&comment);
		resp_free(&r);
	}

	/* the dashboard */
	{
		struct resp r;
		char ct[128];

		http_req(port, "GET", "/", NULL, &r);
		cr_assert_eq(r.status, 200);
		cr_assert(resp_header(&r, "content-type", ct, sizeof(ct)));
		cr_assert_str_eq(ct, "text/html; charset=utf-8");
		cr_assert(strstr(r.body, "<title>Tapio</title>"), "no page title");
		resp_free(&r);
		/* HEAD: headers only */
		http_req(port, "HEAD", "/v1/status", NULL, &r);
		cr_assert_eq(r.status, 200);
		cr_assert_eq(r.len, 0);
		resp_free(&r);
	}

	json_decref(agents);
	json_decref(all);
	stop_api(c);
	cr_assert_eq(ctl_dump_count(c, NULL), acked);
	ctl_rmroot(c);
}

Test(api, pagination_is_stable_under_concurrent_ingest, .fini = kill_leftovers, .timeout = 240)
{
	struct ctl *c = &ctl_a;
	int port = start_api(c, "api-pages");
	char out[1024];
	pid_t lg;
	json_t *got, *ids, *st;
	long acked, records_at_start = 0, records_after;
	int pages;

	snprintf(out, sizeof(out), "%s/loadgen.json", c->dir);
	lg = loadgen_spawn(c, 4, 3000, 6, out);
	/* wait for some data, then page through while ingest goes on */
	for (int i = 0; i < 500 && records_at_start < 2000; i++) {
		usleep(10000);
		st = get_json(port, "/v1/status", 200);
		records_at_start = (long)json_integer_value(
		    json_object_get(json_object_get(st, "store"), "records"));
		json_decref(st);
	}
	cr_assert_geq(records_at_start, 2000);
	got = fetch_all(port, "", 50, 20000, &pages);
	st = get_json(port, "/v1/status", 200);
	records_after =
	    (long)json_integer_value(json_object_get(json_object_get(st, "store"), "records"));
	/* the rate covers recent polling while loadgen sends about 3000/s */
	double rate =
	    json_real_value(json_object_get(json_object_get(st, "ingest"), "occurrences_per_s"));
	cr_assert(rate > 300 && rate < 30000, "occurrences_per_s %.1f", rate);
	json_decref(st);
	cr_assert_gt(records_after, (long)json_array_size(got),
		     "ingest went on while paging (%ld records, %zu paged)", records_after,
		     json_array_size(got));
	cr_assert_geq(pages, 40);
	acked = loadgen_wait(lg, out);
	stop_api(c);

	/*
	 * The pages hold exactly the records stored up to the first page's bound, newest first:
	 * the dump's prefix ending at the first page's first id, reversed. No gap, no repeat.
	 */
	ids = dump_ids(c);
	cr_assert_eq(json_array_size(ids), (size_t)acked);
	const char *first = id_of(json_array_get(got, 0));
	size_t upper = SIZE_MAX;
	for (size_t i = 0; i < json_array_size(ids); i++)
		if (strcmp(json_string_value(json_array_get(ids, i)), first) == 0)
			upper = i;
	cr_assert_neq(upper, SIZE_MAX, "first paged id not in the dump");
	cr_assert_eq(json_array_size(got), upper + 1, "paged %zu, stored up to the bound %zu",
		     json_array_size(got), upper + 1);
	for (size_t k = 0; k <= upper; k++)
		cr_assert_str_eq(id_of(json_array_get(got, k)),
				 json_string_value(json_array_get(ids, upper - k)), "page item %zu",
				 k);
	cr_assert_lt(upper + 1, json_array_size(ids), "records arrived after the bound");
	json_decref(ids);
	json_decref(got);
	ctl_rmroot(c);
}

Test(api, every_error_path_uses_the_envelope, .fini = kill_leftovers, .timeout = 120)
{
	struct ctl *c = &ctl_a;
	int port = start_api(c, "api-errors");
	char out[1024], target[512], cur[256];
	json_t *j;

	snprintf(out, sizeof(out), "%s/loadgen.json", c->dir);
	cr_assert_gt(loadgen_wait(loadgen_spawn(c, 1, 500, 1, out), out), 10);

	expect_error(port, "GET", "/v1/occurrences?foo=1", 400, "BAD_PARAMETER", "'foo'");
	expect_error(port, "GET", "/v1/occurrences?limit=5&limit=6", 400, "BAD_PARAMETER",
		     "'limit'");
	expect_error(port, "GET", "/v1/occurrences?since=yesterday", 400, "BAD_PARAMETER",
		     "'since'");
	expect_error(port, "GET", "/v1/occurrences?until=2026-02-30T00:00:00Z", 400,
		     "BAD_PARAMETER", "'until'");
	expect_error(port, "GET", "/v1/occurrences?since=1h&until=2h", 400, "BAD_PARAMETER",
		     "'since'");
	expect_error(port, "GET", "/v1/occurrences?limit=0", 400, "BAD_PARAMETER", "'limit'");
	expect_error(port, "GET", "/v1/occurrences?limit=1001", 400, "BAD_PARAMETER", "'limit'");
	expect_error(port, "GET", "/v1/occurrences?limit=ten", 400, "BAD_PARAMETER", "'limit'");
	expect_error(port, "GET", "/v1/occurrences?type=kernel.fs.nope", 400, "BAD_PARAMETER",
		     "'type'");
	expect_error(port, "GET", "/v1/occurrences?severity=loud", 400, "BAD_PARAMETER",
		     "'severity'");
	expect_error(port, "GET", "/v1/occurrences?cursor=not-a-cursor", 400, "BAD_CURSOR",
		     "'cursor'");
	expect_error(port, "GET", "/v1/summary", 400, "BAD_PARAMETER", "'by'");
	expect_error(port, "GET", "/v1/summary?by=type&bucket=90s", 400, "BAD_PARAMETER",
		     "'bucket'");
	expect_error(port, "GET", "/v1/status?verbose=1", 400, "BAD_PARAMETER", "'verbose'");
	expect_error(port, "GET", "/metrics?x=1", 400, "BAD_PARAMETER", "'x'");
	expect_error(port, "GET", "/v1/nope", 404, "NOT_FOUND", "/v1/nope");
	expect_error(port, "GET", "/v1/status/", 404, "NOT_FOUND", "/v1/status/");
	expect_error(port, "POST", "/v1/status", 405, "METHOD_NOT_ALLOWED", "POST");
	expect_error(port, "DELETE", "/v1/occurrences", 405, "METHOD_NOT_ALLOWED", "DELETE");
	expect_error(port, "PUT", "/nope", 405, "METHOD_NOT_ALLOWED", "PUT");

	/* a real cursor, replayed against other filters or tampered with */
	j = get_json(port, "/v1/occurrences?limit=2&severity=debug", 200);
	cr_assert(json_is_string(json_object_get(j, "next_cursor")));
	snprintf(cur, sizeof(cur), "%s", json_string_value(json_object_get(j, "next_cursor")));
	json_decref(j);
	snprintf(target, sizeof(target), "/v1/occurrences?limit=2&severity=debug&cursor=%s", cur);
	json_decref(get_json(port, target, 200));
	snprintf(target, sizeof(target), "/v1/occurrences?limit=2&severity=info&cursor=%s", cur);
	expect_error(port, "GET", target, 400, "BAD_CURSOR", "another query");
	cur[5] = cur[5] == 'A' ? 'B' : 'A';
	snprintf(target, sizeof(target), "/v1/occurrences?limit=2&severity=debug&cursor=%s", cur);
	expect_error(port, "GET", target, 400, "BAD_CURSOR", "'cursor'");

	/* a request target over the limit and raw garbage do not hurt the server */
	{
		char *big = malloc(12000);
		memcpy(big, "/v1/occurrences?node=", 21);
		memset(big + 21, 'a', 11000);
		big[11021] = '\0';
		int fd = cli_connect(port);
		char req[12200], buf[512];
		int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", big);
		cr_assert_eq(cli_send_raw(fd, req, (size_t)n), 0);
		ssize_t k = recv(fd, buf, sizeof(buf) - 1, 0);
		cr_assert_gt(k, 0);
		buf[k] = '\0';
		cr_assert(strncmp(buf, "HTTP/1.1 4", 10) == 0, "%s", buf);
		close(fd);
		free(big);
		fd = cli_connect(port);
		cr_assert_eq(cli_send_raw(fd, "\x16\x03\x01garbage\r\n\r\n", 14), 0);
		k = recv(fd, buf, sizeof(buf) - 1, 0);
		close(fd);
	}
	json_decref(get_json(port, "/v1/status", 200));
	stop_api(c);
	ctl_rmroot(c);
}

Test(api, http_address_in_use_is_fatal_only_when_given, .fini = kill_leftovers, .timeout = 60)
{
	struct ctl *c = &ctl_a, *d = &ctl_b;
	int port = start_api(c, "api-busy-a");
	char addr[64];

	ctl_mkroot(d, "api-busy-b");
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	{
		/* the explicit address is taken: the second controller refuses to start */
		const char *argv[] = {CTL_BIN, "--listen", "127.0.0.1:0", "--data-dir",
				      d->data, "--http",   addr,	  NULL};
		char cmd[2048];
		snprintf(cmd, sizeof(cmd), "%s %s %s %s %s %s %s 2>'%s'", argv[0], argv[1], argv[2],
			 argv[3], argv[4], argv[5], argv[6], d->log);
		int st = system(cmd);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %d", st);
		cr_assert(ctl_log_has(d, "http API on 127.0.0.1:"), "no error line");
	}
	/* --http off: no API, the controller runs */
	ctl_start(d, "--http", "off", NULL);
	cr_assert(ctl_log_has(d, "http API disabled"));
	cr_assert_eq(ctl_stop(d, SIGTERM), 0);
	stop_api(c);
	ctl_rmroot(c);
	ctl_rmroot(d);
}

/*
 * Keep-alive: two pipelined requests on one connection both get answers; a connection left
 * open (idle, and one with half a request) does not hold up a clean stop.
 */
Test(api, keep_alive_and_stop_with_connections_open, .fini = kill_leftovers, .timeout = 60)
{
	struct ctl *c = &ctl_a;
	int port = start_api(c, "api-keepalive");
	static const char two[] = "GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n"
				  "GET /v1/agents HTTP/1.1\r\nHost: x\r\n\r\n";
	char buf[16384];
	size_t got = 0;
	int idle = cli_connect(port), half = cli_connect(port);

	cr_assert_eq(cli_send_raw(idle, two, sizeof(two) - 1), 0);
	while (got < sizeof(buf) - 1) {
		ssize_t k = recv(idle, buf + got, sizeof(buf) - 1 - got, 0);

		cr_assert_gt(k, 0, "connection closed or timed out after %zu bytes", got);
		got += (size_t)k;
		buf[got] = '\0';
		if (strstr(buf, "{\"agents\":[]}"))
			break;
	}
	cr_assert(strncmp(buf, "HTTP/1.1 200", 12) == 0);
	cr_assert(strstr(buf, "\"controller_id\""), "first response missing");
	cr_assert(strstr(strstr(buf, "\"controller_id\""), "HTTP/1.1 200"), "second status line");
	cr_assert_eq(cli_send_raw(half, "GET /v1/sta", 11), 0);
	usleep(100000);
	uint64_t t0 = clock_mono_ns();
	stop_api(c);
	cr_assert_lt(clock_mono_ns() - t0, 3000000000ull, "stop waited for idle connections");
	close(idle);
	close(half);
	ctl_rmroot(c);
}

/* Past HTTP_MAX_CONNECTIONS (256) open connections, new ones are closed at once; the API
 * keeps answering once some are gone. */
Test(api, connection_cap, .fini = kill_leftovers, .timeout = 60)
{
	struct ctl *c = &ctl_a;
	int port, fds[300], closed = 0;

	raise_nofile(4096);
	port = start_api(c, "api-cap");
	for (int i = 0; i < 300; i++)
		fds[i] = cli_connect(port);
	usleep(300000);
	for (int i = 0; i < 300; i++) {
		char b;
		struct timeval tv = {.tv_usec = 200000};

		setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		if (i >= 250 && recv(fds[i], &b, 1, 0) == 0)
			closed++;
	}
	cr_assert_geq(closed, 300 - 256, "only %d of the connections past the cap were closed",
		      closed);
	for (int i = 0; i < 300; i++)
		close(fds[i]);
	usleep(200000);
	json_decref(get_json(port, "/v1/status", 200));
	stop_api(c);
	cr_assert(ctl_log_has(c, "(44 connections refused over the cap)"), "refusals not counted");
	ctl_rmroot(c);
}
