#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/clock.h"
#include "common/occ_json.h"
#include "common/occurrence.h"

/* quote, backslash, newline, SOH, then a byte that is not UTF-8 (→ U+F7FF) */
static const char HOSTILE_COMM[] = "q\"b\\\n\x01\xff";
static const char HOSTILE_COMM_JSON[] = "q\"b\\\n\x01\xef\x9f\xbf";
/* valid UTF-8 (é, 日) kept; lone surrogate, overlong and truncated sequences escaped */
static const char HOSTILE_PATH[] = "/k8s/\xc3\xa9\xe6\x97\xa5/\xed\xa0\x80/\xc0\xaf/\xe2\x82";
static const char HOSTILE_PATH_JSON[] = "/k8s/\xc3\xa9\xe6\x97\xa5/"
					"\xef\x9f\xad\xef\x9e\xa0\xef\x9e\x80/"
					"\xef\x9f\x80\xef\x9e\xaf/\xef\x9f\xa2\xef\x9e\x82";
static const char HOSTILE_MSG[] = "tab\there \"quoted\" \x7f del\r\n";

static const uint64_t TS = 1795613992123456789ull;

static void fill(struct tapio_occurrence *occ, enum tapio_occ_type type)
{
	occurrence_init(occ, type, TS, "node-\"1\"", "prod\n");
	snprintf(occ->error_message, sizeof(occ->error_message), "%s", HOSTILE_MSG);
	occ->config_generation = 9007199254740993ull; /* > 2^53: must stay exact */
	switch (tapio_catalogue[type].observer) {
	case TAPIO_OBS_NETWORK: {
		struct tapio_occ_network *n = &occ->data.network;

		n->pid = 4294967295u;
		snprintf(n->comm, sizeof(n->comm), "%s", HOSTILE_COMM);
		snprintf(n->src_ip, sizeof(n->src_ip), "fd00::1");
		snprintf(n->dst_ip, sizeof(n->dst_ip), "2001:db8::ffff:10.0.0.1");
		n->src_port = 65535;
		n->dst_port = 443;
		n->family = 6;
		if (type == TAPIO_OCC_CONNECTION_REFUSED || type == TAPIO_OCC_CONNECTION_TIMEOUT) {
			snprintf(n->old_state, sizeof(n->old_state), "SYN_SENT");
			snprintf(n->new_state, sizeof(n->new_state), "CLOSE");
		}
		n->total_retrans = 17;
		n->snd_cwnd = 10;
		if (type == TAPIO_OCC_RTT_DEGRADATION) {
			n->baseline_ms = 0.1;
			n->current_ms = 523.4567890123;
		}
		break;
	}
	case TAPIO_OBS_CONTAINER: {
		struct tapio_occ_container *c = &occ->data.container;

		c->pid = 1234;
		c->tid = 1240;
		snprintf(c->comm, sizeof(c->comm), "%s", HOSTILE_COMM);
		c->exit_code = type == TAPIO_OCC_OOM_KILL ? -1 : 137;
		c->signal = 9;
		c->core_dumped = true;
		c->cgroup_id = 9223372036854775807ull;
		snprintf(c->cgroup_path, sizeof(c->cgroup_path), "%s", HOSTILE_PATH);
		c->memory_usage_bytes = 268435456;
		c->memory_limit_bytes = 268435456;
		c->rss_bytes = 260000768;
		break;
	}
	case TAPIO_OBS_STORAGE: {
		struct tapio_occ_storage *s = &occ->data.storage;

		s->pid = 77;
		snprintf(s->comm, sizeof(s->comm), "%s", HOSTILE_COMM);
		s->dev_major = 259;
		s->dev_minor = 1;
		s->sector = 123456789012ull;
		s->bytes = 4096;
		snprintf(s->opcode, sizeof(s->opcode), "write");
		s->latency_ms = 250.125;
		s->error_code = type == TAPIO_OCC_IO_ERROR ? -5 : 0;
		break;
	}
	case TAPIO_OBS_NODE:
	default: {
		struct tapio_occ_node *n = &occ->data.node;

		if (type == TAPIO_OCC_MEMORY_PRESSURE) {
			n->cpu = -1;
			n->memory_some_avg10 = 12.34;
			n->memory_full_avg10 = 1e-9;
		} else {
			n->cpu = 3;
			n->cycles = 18446744073709551ull;
			n->instructions = 9000000000ull;
			n->stall_cycles = 4000000000ull;
			n->ipc = 1.0 / 3.0;
			n->stall_pct = 45.5;
		}
		break;
	}
	}
	occ->count = 5;
	occ->first_seen_ns = TS - 999999999;
	occ->last_seen_ns = TS;
}

static json_t *obj_get(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	cr_assert_not_null(v, "missing key %s", key);
	return v;
}

static void expect_str(json_t *o, const char *key, const char *want)
{
	json_t *v = obj_get(o, key);

	cr_assert(json_is_string(v), "%s not a string", key);
	cr_assert_eq(json_string_length(v), strlen(want), "%s length", key);
	cr_assert(memcmp(json_string_value(v), want, strlen(want)) == 0, "%s = '%s'", key,
		  json_string_value(v));
}

static void expect_int(json_t *o, const char *key, long long want)
{
	json_t *v = obj_get(o, key);

	cr_assert(json_is_integer(v), "%s not an integer", key);
	cr_assert_eq(json_integer_value(v), want, "%s = %lld, want %lld", key,
		     (long long)json_integer_value(v), want);
}

static void expect_dbl(json_t *o, const char *key, double want)
{
	json_t *v = obj_get(o, key);

	cr_assert(json_is_number(v), "%s not a number", key);
	cr_assert(json_number_value(v) == want, "%s = %.17g, want %.17g", key, json_number_value(v),
		  want);
}

static void expect_time(json_t *o, const char *key, uint64_t ns)
{
	char buf[40];

	clock_format_rfc3339(ns, buf, sizeof(buf));
	expect_str(o, key, buf);
}

static void expect_keys(json_t *o, const char *const *keys)
{
	size_t n = 0;

	for (; keys[n]; n++)
		obj_get(o, keys[n]);
	cr_assert_eq(json_object_size(o), n, "object has %zu keys, expected %zu",
		     json_object_size(o), n);
}

static void check_json_fields(const struct tapio_occurrence *occ, json_t *root)
{
	static const char *const top[] = {
	    "id",    "timestamp", "source", "type", "severity", "outcome", "protocol_version",
	    "error", "context",	  "data",   NULL};
	static const char *const net[] = {
	    "config_generation", "pid",	     "comm",	   "src_ip",	"dst_ip",
	    "src_port",		 "dst_port", "family",	   "protocol",	"total_retrans",
	    "snd_cwnd",		 "count",    "first_seen", "last_seen", NULL};
	static const char *const net_state[] = {
	    "config_generation", "pid",	   "comm",	 "src_ip",    "dst_ip",	   "src_port",
	    "dst_port",		 "family", "protocol",	 "old_state", "new_state", "total_retrans",
	    "snd_cwnd",		 "count",  "first_seen", "last_seen", NULL};
	static const char *const net_rtt[] = {
	    "config_generation", "pid",	   "comm",	 "src_ip",	  "dst_ip",   "src_port",
	    "dst_port",		 "family", "protocol",	 "total_retrans", "snd_cwnd", "baseline_ms",
	    "current_ms",	 "count",  "first_seen", "last_seen",	  NULL};
	static const char *const ct[] = {"config_generation",
					 "pid",
					 "tid",
					 "comm",
					 "exit_code",
					 "signal",
					 "core_dumped",
					 "cgroup_id",
					 "cgroup_path",
					 "memory_usage_bytes",
					 "memory_limit_bytes",
					 "rss_bytes",
					 "count",
					 "first_seen",
					 "last_seen",
					 NULL};
	static const char *const st[] = {"config_generation", "pid",	    "comm",  "dev_major",
					 "dev_minor",	      "sector",	    "bytes", "opcode",
					 "latency_ms",	      "error_code", "count", "first_seen",
					 "last_seen",	      NULL};
	static const char *const pmc[] = {
	    "config_generation", "cpu",	      "cycles",	   "instructions",
	    "stall_cycles",	 "ipc",	      "stall_pct", "count",
	    "first_seen",	 "last_seen", NULL};
	static const char *const psi[] = {"config_generation", "cpu",	"memory_some_avg10",
					  "memory_full_avg10", "count", "first_seen",
					  "last_seen",	       NULL};
	const struct tapio_catalogue_entry *cat = &tapio_catalogue[occ->type];
	json_t *err, *ctx, *d;
	char ts[40];

	expect_keys(root, top);
	expect_str(root, "id", occ->id);
	clock_format_rfc3339(occ->timestamp_ns, ts, sizeof(ts));
	expect_str(root, "timestamp", ts);
	expect_str(root, "source", "tapio");
	expect_str(root, "type", cat->type);
	expect_str(root, "severity", tapio_severity_name(occ->severity));
	expect_str(root, "outcome", tapio_outcome_name(occ->outcome));
	expect_str(root, "protocol_version", "1.0");
	err = obj_get(root, "error");
	expect_str(err, "code", cat->error_code);
	expect_str(err, "message", HOSTILE_MSG);
	cr_assert_eq(json_object_size(err), 2);
	ctx = obj_get(root, "context");
	expect_str(ctx, "cluster", "prod\n");
	expect_str(ctx, "node", "node-\"1\"");
	cr_assert_eq(json_object_size(ctx), 2);

	d = obj_get(root, "data");
	expect_int(d, "config_generation", (long long)occ->config_generation);
	expect_int(d, "count", occ->count);
	expect_time(d, "first_seen", occ->first_seen_ns);
	expect_time(d, "last_seen", occ->last_seen_ns);
	switch (cat->observer) {
	case TAPIO_OBS_NETWORK: {
		const struct tapio_occ_network *n = &occ->data.network;

		expect_keys(d, occ->type == TAPIO_OCC_RTT_DEGRADATION ? net_rtt
			       : n->old_state[0]		      ? net_state
								      : net);
		expect_int(d, "pid", n->pid);
		expect_str(d, "comm", HOSTILE_COMM_JSON);
		expect_str(d, "src_ip", n->src_ip);
		expect_str(d, "dst_ip", n->dst_ip);
		expect_int(d, "src_port", n->src_port);
		expect_int(d, "dst_port", n->dst_port);
		expect_str(d, "family", "ipv6");
		expect_str(d, "protocol", "tcp");
		if (n->old_state[0]) {
			expect_str(d, "old_state", n->old_state);
			expect_str(d, "new_state", n->new_state);
		}
		expect_int(d, "total_retrans", n->total_retrans);
		expect_int(d, "snd_cwnd", n->snd_cwnd);
		if (occ->type == TAPIO_OCC_RTT_DEGRADATION) {
			expect_dbl(d, "baseline_ms", n->baseline_ms);
			expect_dbl(d, "current_ms", n->current_ms);
		}
		break;
	}
	case TAPIO_OBS_CONTAINER: {
		const struct tapio_occ_container *c = &occ->data.container;

		expect_keys(d, ct);
		expect_int(d, "pid", c->pid);
		expect_int(d, "tid", c->tid);
		expect_str(d, "comm", HOSTILE_COMM_JSON);
		expect_int(d, "exit_code", c->exit_code);
		expect_int(d, "signal", c->signal);
		cr_assert(json_is_true(obj_get(d, "core_dumped")));
		expect_int(d, "cgroup_id", (long long)c->cgroup_id);
		expect_str(d, "cgroup_path", HOSTILE_PATH_JSON);
		expect_int(d, "memory_usage_bytes", (long long)c->memory_usage_bytes);
		expect_int(d, "memory_limit_bytes", (long long)c->memory_limit_bytes);
		expect_int(d, "rss_bytes", (long long)c->rss_bytes);
		break;
	}
	case TAPIO_OBS_STORAGE: {
		const struct tapio_occ_storage *s = &occ->data.storage;

		expect_keys(d, st);
		expect_int(d, "pid", s->pid);
		expect_str(d, "comm", HOSTILE_COMM_JSON);
		expect_int(d, "dev_major", s->dev_major);
		expect_int(d, "dev_minor", s->dev_minor);
		expect_int(d, "sector", (long long)s->sector);
		expect_int(d, "bytes", s->bytes);
		expect_str(d, "opcode", s->opcode);
		expect_dbl(d, "latency_ms", s->latency_ms);
		expect_int(d, "error_code", s->error_code);
		break;
	}
	case TAPIO_OBS_NODE:
	default: {
		const struct tapio_occ_node *n = &occ->data.node;

		expect_int(d, "cpu", n->cpu);
		if (occ->type == TAPIO_OCC_MEMORY_PRESSURE) {
			expect_keys(d, psi);
			expect_dbl(d, "memory_some_avg10", n->memory_some_avg10);
			expect_dbl(d, "memory_full_avg10", n->memory_full_avg10);
		} else {
			expect_keys(d, pmc);
			expect_int(d, "cycles", (long long)n->cycles);
			expect_int(d, "instructions", (long long)n->instructions);
			expect_int(d, "stall_cycles", (long long)n->stall_cycles);
			expect_dbl(d, "ipc", n->ipc);
			expect_dbl(d, "stall_pct", n->stall_pct);
		}
		break;
	}
	}
}

Test(occ_json, every_type_hostile_strings, .timeout = 10)
{
	for (int t = 0; t < TAPIO_OCC__COUNT; t++) {
		struct tapio_occurrence occ, back;
		char buf[TAPIO_OCC_JSON_MAX], buf2[TAPIO_OCC_JSON_MAX], err[256];
		json_error_t jerr;
		json_t *root;
		ssize_t n, n2;

		fill(&occ, (enum tapio_occ_type)t);
		n = occ_json_write(&occ, buf, sizeof(buf));
		cr_assert_gt(n, 0, "type %d: %zd", t, n);
		cr_assert_eq((size_t)n, strlen(buf));
		cr_assert_null(memchr(buf, '\n', (size_t)n), "one line");

		/* jansson accepts it (it rejects invalid UTF-8) and sees every field */
		root = json_loadb(buf, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
		cr_assert_not_null(root, "%s: %s\n%s", tapio_catalogue[t].type, jerr.text, buf);
		check_json_fields(&occ, root);
		json_decref(root);

		/* parse restores every byte of the struct ... */
		cr_assert_eq(occ_json_parse(buf, (size_t)n, &back, err, sizeof(err)), 0, "%s: %s",
			     tapio_catalogue[t].type, err);
		cr_assert(memcmp(&occ, &back, sizeof(occ)) == 0, "%s: struct differs after parse",
			  tapio_catalogue[t].type);
		/* ... and writing it again gives the same bytes */
		n2 = occ_json_write(&back, buf2, sizeof(buf2));
		cr_assert_eq(n2, n);
		cr_assert_str_eq(buf2, buf);
	}
}

Test(occ_json, optional_keys_absent, .timeout = 5)
{
	struct tapio_occurrence occ, back;
	char buf[TAPIO_OCC_JSON_MAX], err[256];
	json_t *root, *d;

	occurrence_init(&occ, TAPIO_OCC_RETRANSMIT_SPIKE, TS, "n1", NULL);
	occ.data.network.family = 4;
	occ.data.network.baseline_ms = 7; /* not an rtt_degradation: not written */
	cr_assert_gt(occ_json_write(&occ, buf, sizeof(buf)), 0);
	root = json_loads(buf, 0, NULL);
	cr_assert_not_null(root);
	d = json_object_get(root, "data");
	cr_assert_null(json_object_get(d, "count"));
	cr_assert_null(json_object_get(d, "first_seen"));
	cr_assert_null(json_object_get(d, "old_state"));
	cr_assert_null(json_object_get(d, "new_state"));
	cr_assert_null(json_object_get(d, "baseline_ms"));
	cr_assert_str_eq(json_string_value(json_object_get(d, "family")), "ipv4");
	cr_assert_eq(json_integer_value(json_object_get(d, "config_generation")), 0);
	cr_assert_str_eq(
	    json_string_value(json_object_get(json_object_get(root, "context"), "cluster")), "");
	json_decref(root);
	cr_assert_eq(occ_json_parse(buf, strlen(buf), &back, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(back.count, 0);
	cr_assert_eq(back.data.network.family, 4);
	cr_assert_eq(back.data.network.baseline_ms, 0);
}

Test(occ_json, doubles_round_trip, .timeout = 10)
{
	static const double vals[] = {0.1,
				      1.0 / 3.0,
				      2.0,
				      1e-300,
				      1e300,
				      123456789.125,
				      -7.5,
				      5e-324,
				      1.7976931348623157e308,
				      100,
				      0.30000000000000004,
				      12.34,
				      1e17,
				      -0.0};
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		struct tapio_occurrence occ, back;
		char buf[TAPIO_OCC_JSON_MAX], buf2[TAPIO_OCC_JSON_MAX], err[256];

		occurrence_init(&occ, TAPIO_OCC_LATENCY_SPIKE, TS, "n1", "c");
		occ.data.storage.latency_ms = vals[i];
		cr_assert_gt(occ_json_write(&occ, buf, sizeof(buf)), 0);
		cr_assert_eq(occ_json_parse(buf, strlen(buf), &back, err, sizeof(err)), 0, "%s",
			     err);
		cr_assert(back.data.storage.latency_ms == vals[i], "%.17g -> %.17g", vals[i],
			  back.data.storage.latency_ms);
		cr_assert_gt(occ_json_write(&back, buf2, sizeof(buf2)), 0);
		cr_assert_str_eq(buf2, buf);
	}
}

Test(occ_json, short_numbers_for_humans, .timeout = 5)
{
	struct tapio_occurrence occ;
	char buf[TAPIO_OCC_JSON_MAX];

	occurrence_init(&occ, TAPIO_OCC_IPC_DEGRADATION, TS, "n1", "c");
	occ.data.node.ipc = 0.1;
	occ.data.node.stall_pct = 2.0;
	cr_assert_gt(occ_json_write(&occ, buf, sizeof(buf)), 0);
	cr_assert_not_null(strstr(buf, "\"ipc\":0.1,"), "%s", buf);
	cr_assert_not_null(strstr(buf, "\"stall_pct\":2"), "%s", buf);
}

Test(occ_json, non_finite_doubles_become_null, .timeout = 5)
{
	struct tapio_occurrence occ, back;
	char buf[TAPIO_OCC_JSON_MAX], buf2[TAPIO_OCC_JSON_MAX], err[256];

	occurrence_init(&occ, TAPIO_OCC_RTT_DEGRADATION, TS, "n1", "c");
	occ.data.network.family = 4;
	occ.data.network.baseline_ms = NAN;
	occ.data.network.current_ms = INFINITY;
	cr_assert_gt(occ_json_write(&occ, buf, sizeof(buf)), 0);
	cr_assert_not_null(strstr(buf, "\"baseline_ms\":null,\"current_ms\":null"), "%s", buf);
	cr_assert_eq(occ_json_parse(buf, strlen(buf), &back, err, sizeof(err)), 0, "%s", err);
	cr_assert(isnan(back.data.network.baseline_ms));
	cr_assert_gt(occ_json_write(&back, buf2, sizeof(buf2)), 0);
	cr_assert_str_eq(buf2, buf);
}

Test(occ_json, worst_case_fits_and_enospc, .timeout = 10)
{
	struct tapio_occurrence occ, back;
	static char buf[TAPIO_OCC_JSON_MAX], small[TAPIO_OCC_JSON_MAX];
	char err[256];
	json_error_t jerr;
	json_t *root;
	ssize_t n;

	/* every string byte needs a 6-byte escape, every number at its widest */
	fill(&occ, TAPIO_OCC_OOM_KILL);
	memset(occ.error_message, 0x01, sizeof(occ.error_message) - 1);
	memset(occ.cluster, 0xfe, sizeof(occ.cluster) - 1);
	memset(occ.node, '"', sizeof(occ.node) - 1);
	memset(occ.data.container.comm, 0x80, sizeof(occ.data.container.comm) - 1);
	memset(occ.data.container.cgroup_path, 0x1f, sizeof(occ.data.container.cgroup_path) - 1);
	occ.config_generation = UINT64_MAX;
	occ.data.container.exit_code = INT32_MIN;
	occ.data.container.signal = INT32_MIN;
	occ.data.container.cgroup_id = UINT64_MAX;
	occ.data.container.memory_usage_bytes = UINT64_MAX;
	occ.data.container.memory_limit_bytes = UINT64_MAX;
	occ.data.container.rss_bytes = UINT64_MAX;
	occ.count = UINT32_MAX;
	occ.timestamp_ns = occ.first_seen_ns = occ.last_seen_ns = UINT64_MAX;
	n = occ_json_write(&occ, buf, sizeof(buf));
	cr_assert_gt(n, 0);
	cr_assert_lt(n, TAPIO_OCC_JSON_MAX);
	/* valid JSON even at its worst (numbers beyond int64 read as reals) */
	root = json_loads(buf, JSON_DECODE_INT_AS_REAL | JSON_REJECT_DUPLICATES, &jerr);
	cr_assert_not_null(root, "%s\n%s", jerr.text, buf);
	json_decref(root);
	/* uint64 beyond int64 is written exactly but jansson cannot read it back */
	cr_assert_eq(occ_json_parse(buf, (size_t)n, &back, err, sizeof(err)), -EINVAL);

	for (size_t len = 0; len <= (size_t)n; len++) {
		memset(small, 'x', sizeof(small));
		cr_assert_eq(occ_json_write(&occ, small, len), -ENOSPC, "len %zu", len);
		if (len > 0)
			cr_assert_eq(small[0], '\0', "len %zu leaves an empty string", len);
		cr_assert_eq(small[len], 'x', "wrote past len %zu", len);
	}
	cr_assert_eq(occ_json_write(&occ, small, (size_t)n + 1), n);
}

Test(occ_json, invalid_type_rejected_by_writer, .timeout = 5)
{
	struct tapio_occurrence occ;
	char buf[64];

	occurrence_init(&occ, TAPIO_OCC_IO_ERROR, TS, "n", "c");
	occ.type = TAPIO_OCC__COUNT;
	cr_assert_eq(occ_json_write(&occ, buf, sizeof(buf)), -EINVAL);
}

/* Replaces the first occurrence of `from` in the writer's output by `to` and parses it. */
static void expect_reject(enum tapio_occ_type type, const char *from, const char *to,
			  const char *want_in_err)
{
	struct tapio_occurrence occ, back;
	char buf[TAPIO_OCC_JSON_MAX], edited[TAPIO_OCC_JSON_MAX * 2], err[256] = "";
	const char *at;

	fill(&occ, type);
	cr_assert_gt(occ_json_write(&occ, buf, sizeof(buf)), 0);
	at = strstr(buf, from);
	cr_assert_not_null(at, "'%s' not in %s", from, buf);
	snprintf(edited, sizeof(edited), "%.*s%s%s", (int)(at - buf), buf, to, at + strlen(from));
	memset(&back, 0x33, sizeof(back));
	cr_assert_eq(occ_json_parse(edited, strlen(edited), &back, err, sizeof(err)), -EINVAL,
		     "accepted: %s", edited);
	cr_assert_not_null(strstr(err, want_in_err), "error '%s' does not mention '%s'", err,
			   want_in_err);
	cr_assert_eq(back.type, 0, "failed parse leaves a zeroed occurrence");
}

Test(occ_json, parse_rejects_with_key_names, .timeout = 10)
{
	expect_reject(TAPIO_OCC_IO_ERROR, "kernel.storage.io_error", "kernel.storage.melted",
		      "type");
	expect_reject(TAPIO_OCC_IO_ERROR, "\"pid\":77", "\"pxd\":77", "data.pid");
	expect_reject(TAPIO_OCC_IO_ERROR, "\"pid\":77", "\"pid\":\"77\"", "data.pid");
	expect_reject(TAPIO_OCC_IO_ERROR, "\"pid\":77", "\"pid\":-1", "data.pid");
	expect_reject(TAPIO_OCC_IO_ERROR, "\"pid\":77", "\"pid\":4294967296", "data.pid");
	expect_reject(TAPIO_OCC_IO_ERROR, "\"pid\":77", "\"pid\":7.5", "data.pid");
	expect_reject(TAPIO_OCC_IO_ERROR, "\"latency_ms\":250.125", "\"latency_ms\":\"slow\"",
		      "data.latency_ms");
	expect_reject(TAPIO_OCC_IO_ERROR, "\"opcode\":\"write\"", "\"opcode\":[]", "data.opcode");
	expect_reject(TAPIO_OCC_IO_ERROR, "\"opcode\":\"write\"",
		      "\"opcode\":\"writewritewritewrite\"", "data.opcode");
	expect_reject(TAPIO_OCC_IO_ERROR, "\"id\":", "\"ix\":", "id");
	expect_reject(TAPIO_OCC_IO_ERROR, "\"id\":\"", "\"id\":\"U", "id");
	expect_reject(TAPIO_OCC_IO_ERROR, "\"timestamp\":\"2026", "\"timestamp\":\"x2026",
		      "timestamp");
	expect_reject(TAPIO_OCC_IO_ERROR, "\"source\":\"tapio\"", "\"source\":\"other\"", "source");
	expect_reject(TAPIO_OCC_IO_ERROR, "\"severity\":\"critical\"", "\"severity\":\"bad\"",
		      "severity");
	expect_reject(TAPIO_OCC_IO_ERROR, "\"outcome\":\"failure\"", "\"outcome\":3", "outcome");
	expect_reject(TAPIO_OCC_IO_ERROR, "\"protocol_version\":\"1.0\"",
		      "\"protocol_version\":\"2.0\"", "protocol_version");
	expect_reject(TAPIO_OCC_IO_ERROR, "\"code\":\"IO_ERROR\"", "\"code\":\"OOM_KILL\"",
		      "error.code");
	expect_reject(TAPIO_OCC_IO_ERROR, "\"error\":{", "\"error\":[{", "JSON");
	expect_reject(TAPIO_OCC_IO_ERROR, "\"context\":{\"cluster\"", "\"context\":{\"clxster\"",
		      "context.cluster");
	expect_reject(TAPIO_OCC_IO_ERROR, "\"data\":{", "\"data\":7,\"x\":{", "data");
	expect_reject(TAPIO_OCC_IO_ERROR, "\"count\":5", "\"count\":0", "data.count");
	expect_reject(TAPIO_OCC_IO_ERROR, "\"count\":5", "\"cxunt\":5", "data.count");
	expect_reject(TAPIO_OCC_IO_ERROR, "\"first_seen\":", "\"first_xeen\":", "data.first_seen");
	expect_reject(TAPIO_OCC_OOM_KILL, "\"core_dumped\":true", "\"core_dumped\":1",
		      "data.core_dumped");
	expect_reject(TAPIO_OCC_OOM_KILL, "\"exit_code\":-1", "\"exit_code\":2147483648",
		      "data.exit_code");
	expect_reject(TAPIO_OCC_CONNECTION_REFUSED, "\"family\":\"ipv6\"", "\"family\":\"ipx\"",
		      "data.family");
	expect_reject(TAPIO_OCC_CONNECTION_REFUSED, "\"protocol\":\"tcp\"", "\"protocol\":\"udp\"",
		      "data.protocol");
	expect_reject(TAPIO_OCC_CONNECTION_REFUSED, "\"src_port\":65535", "\"src_port\":65536",
		      "data.src_port");
	expect_reject(TAPIO_OCC_RTT_DEGRADATION,
		      "\"current_ms\":", "\"currentms\":", "data.current_ms");
	expect_reject(TAPIO_OCC_MEMORY_PRESSURE,
		      "\"memory_full_avg10\":", "\"memory_full\":", "data.memory_full_avg10");
	expect_reject(TAPIO_OCC_CPU_STALL, "\"stall_cycles\":", "\"stall\":", "data.stall_cycles");
	/* duplicate keys are refused, not last-one-wins */
	expect_reject(TAPIO_OCC_IO_ERROR, "\"pid\":77", "\"pid\":77,\"pid\":78", "JSON");
}

Test(occ_json, parse_rejects_non_objects, .timeout = 5)
{
	struct tapio_occurrence occ;
	char err[256];

	cr_assert_eq(occ_json_parse("", 0, &occ, err, sizeof(err)), -EINVAL);
	cr_assert_eq(occ_json_parse("[1]", 3, &occ, err, sizeof(err)), -EINVAL);
	cr_assert_not_null(strstr(err, "object"), "%s", err);
	cr_assert_eq(occ_json_parse("{\"id\":", 6, &occ, err, sizeof(err)), -EINVAL);
	cr_assert_not_null(strstr(err, "invalid JSON"), "%s", err);
	cr_assert_eq(occ_json_parse("{}", 2, &occ, NULL, 0), -EINVAL);
}

Test(occ_json, escapes_every_control_char, .timeout = 5)
{
	struct tapio_occurrence occ, back;
	char buf[TAPIO_OCC_JSON_MAX], err[256];

	occurrence_init(&occ, TAPIO_OCC_ABNORMAL_EXIT, TS, "n", "c");
	for (int i = 1; i < 32; i++)
		occ.error_message[i - 1] = (char)i;
	occ.error_message[31] = 0x7f;
	cr_assert_gt(occ_json_write(&occ, buf, sizeof(buf)), 0);
	for (const char *p = buf; *p; p++)
		cr_assert((unsigned char)*p >= 0x20, "raw control byte 0x%02x in output", *p);
	cr_assert_not_null(strstr(buf, "\\u0001\\u0002"), "%s", buf);
	cr_assert_not_null(strstr(buf, "\\u001f\\u007f"), "%s", buf);
	cr_assert_eq(occ_json_parse(buf, strlen(buf), &back, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(back.error_message, occ.error_message);
}
