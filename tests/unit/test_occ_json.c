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

/*
 * ---- the reference: the writer as it was before it was made fast (commit 068ba60), kept
 * verbatim but for its names, to hold the fast one to byte identity ----
 */

struct ref_jw {
	char *buf;
	size_t len; /* capacity, NUL included */
	size_t pos;
	bool full;
};

static void ref_jw_raw(struct ref_jw *w, const char *s, size_t n)
{
	if (w->full)
		return;
	if (w->pos + n >= w->len) {
		w->full = true;
		return;
	}
	memcpy(w->buf + w->pos, s, n);
	w->pos += n;
}

static void ref_jw_lit(struct ref_jw *w, const char *s)
{
	ref_jw_raw(w, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 when s[0] starts none. */
static size_t ref_utf8_seq_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t need;
	unsigned char lo = 0x80, hi = 0xbf;

	if (c >= 0xc2 && c <= 0xdf)
		need = 2;
	else if (c >= 0xe0 && c <= 0xef)
		need = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		need = 4;
	else
		return 0;
	/* the second byte's range rules out overlongs, surrogates and > U+10FFFF */
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (n < need || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < need; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return need;
}

/* Writes a JSON string from at most max bytes of s (a fixed char array, maybe unterminated). */
static void ref_jw_str(struct ref_jw *w, const char *s, size_t max)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strnlen(s, max), i = 0, run = 0;

	ref_jw_raw(w, "\"", 1);
	while (i < n) {
		unsigned char c = p[i];
		char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
		size_t seq;

		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
			run++;
			i++;
			continue;
		}
		if (c >= 0x80 && (seq = ref_utf8_seq_len(p + i, n - i)) > 0) {
			run += seq;
			i += seq;
			continue;
		}
		/* flush the printable run, then the escape */
		ref_jw_raw(w, (const char *)p + i - run, run);
		run = 0;
		if (c == '"' || c == '\\') {
			esc[1] = (char)c;
			ref_jw_raw(w, esc, 2);
		} else if (c >= 0x80) {
			/* a byte outside valid UTF-8 → U+F7XX, mapped back by the parser */
			esc[2] = 'f';
			esc[3] = '7';
			ref_jw_raw(w, esc, 6);
		} else {
			ref_jw_raw(w, esc, 6); /* control characters and DEL */
		}
		i++;
	}
	ref_jw_raw(w, (const char *)p + i - run, run);
	ref_jw_raw(w, "\"", 1);
}

#define REF_JW_STR(w, field) ref_jw_str(w, field, sizeof(field))

static void ref_jw_key(struct ref_jw *w, const char *key)
{
	ref_jw_raw(w, ",\"", 2);
	ref_jw_lit(w, key);
	ref_jw_raw(w, "\":", 2);
}

static void ref_jw_kstr(struct ref_jw *w, const char *key, const char *s, size_t max)
{
	ref_jw_key(w, key);
	ref_jw_str(w, s, max);
}

/* Decimal digits of v into the end of tmp[24]; returns the first digit (no printf: hot path). */
static char *ref_u64_digits(uint64_t v, char tmp[24])
{
	char *p = tmp + 24;

	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return p;
}

static void ref_jw_u64(struct ref_jw *w, uint64_t v)
{
	char tmp[24];
	char *p = ref_u64_digits(v, tmp);

	ref_jw_raw(w, p, (size_t)(tmp + 24 - p));
}

static void ref_jw_ku64(struct ref_jw *w, const char *key, uint64_t v)
{
	ref_jw_key(w, key);
	ref_jw_u64(w, v);
}

static void ref_jw_ki64(struct ref_jw *w, const char *key, int64_t v)
{
	ref_jw_key(w, key);
	if (v < 0) {
		ref_jw_raw(w, "-", 1);
		ref_jw_u64(w, (uint64_t)0 - (uint64_t)v);
	} else {
		ref_jw_u64(w, (uint64_t)v);
	}
}

/*
 * Shortest of %.15g/%.16g/%.17g that reads back as the same double, so values stay
 * readable ("ipc":1.25) and still round-trip. -0 is written as 0 (JSON "-0" would read back
 * as the integer 0 and break write→parse→write identity); NaN/Inf, which JSON cannot hold,
 * as null.
 */
static void ref_jw_kdbl(struct ref_jw *w, const char *key, double v)
{
	char tmp[32];
	int n = 0;

	ref_jw_key(w, key);
	if (!isfinite(v)) {
		ref_jw_lit(w, "null");
		return;
	}
	if (v == 0)
		v = 0;
	for (int prec = 15; prec <= 17; prec++) {
		n = snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
		if (strtod(tmp, NULL) == v)
			break;
	}
	ref_jw_raw(w, tmp, (size_t)n);
}

static void ref_jw_ktime(struct ref_jw *w, const char *key, uint64_t ns)
{
	char tmp[40];
	int n = clock_format_rfc3339(ns, tmp, sizeof(tmp));

	ref_jw_key(w, key);
	ref_jw_raw(w, "\"", 1);
	ref_jw_raw(w, tmp, n > 0 ? (size_t)n : 0);
	ref_jw_raw(w, "\"", 1);
}

static const char *ref_family_name(uint8_t family)
{
	return family == 4 ? "ipv4" : family == 6 ? "ipv6" : "unknown";
}

static void ref_write_network(struct ref_jw *w, const struct tapio_occurrence *occ)
{
	const struct tapio_occ_network *n = &occ->data.network;

	ref_jw_ku64(w, "pid", n->pid);
	ref_jw_kstr(w, "comm", n->comm, sizeof(n->comm));
	ref_jw_kstr(w, "src_ip", n->src_ip, sizeof(n->src_ip));
	ref_jw_kstr(w, "dst_ip", n->dst_ip, sizeof(n->dst_ip));
	ref_jw_ku64(w, "src_port", n->src_port);
	ref_jw_ku64(w, "dst_port", n->dst_port);
	ref_jw_key(w, "family");
	ref_jw_raw(w, "\"", 1);
	ref_jw_lit(w, ref_family_name(n->family));
	ref_jw_raw(w, "\"", 1);
	ref_jw_kstr(w, "protocol", "tcp", 4);
	if (n->old_state[0])
		ref_jw_kstr(w, "old_state", n->old_state, sizeof(n->old_state));
	if (n->new_state[0])
		ref_jw_kstr(w, "new_state", n->new_state, sizeof(n->new_state));
	ref_jw_ku64(w, "total_retrans", n->total_retrans);
	ref_jw_ku64(w, "snd_cwnd", n->snd_cwnd);
	if (occ->type == TAPIO_OCC_RTT_DEGRADATION) {
		ref_jw_kdbl(w, "baseline_ms", n->baseline_ms);
		ref_jw_kdbl(w, "current_ms", n->current_ms);
	}
}

static void ref_write_container(struct ref_jw *w, const struct tapio_occurrence *occ)
{
	const struct tapio_occ_container *c = &occ->data.container;

	ref_jw_ku64(w, "pid", c->pid);
	ref_jw_ku64(w, "tid", c->tid);
	ref_jw_kstr(w, "comm", c->comm, sizeof(c->comm));
	ref_jw_ki64(w, "exit_code", c->exit_code);
	ref_jw_ki64(w, "signal", c->signal);
	ref_jw_key(w, "core_dumped");
	ref_jw_lit(w, c->core_dumped ? "true" : "false");
	ref_jw_ku64(w, "cgroup_id", c->cgroup_id);
	ref_jw_kstr(w, "cgroup_path", c->cgroup_path, sizeof(c->cgroup_path));
	ref_jw_ku64(w, "memory_usage_bytes", c->memory_usage_bytes);
	ref_jw_ku64(w, "memory_limit_bytes", c->memory_limit_bytes);
	ref_jw_ku64(w, "rss_bytes", c->rss_bytes);
}

static void ref_write_storage(struct ref_jw *w, const struct tapio_occurrence *occ)
{
	const struct tapio_occ_storage *s = &occ->data.storage;

	ref_jw_ku64(w, "pid", s->pid);
	ref_jw_kstr(w, "comm", s->comm, sizeof(s->comm));
	ref_jw_ku64(w, "dev_major", s->dev_major);
	ref_jw_ku64(w, "dev_minor", s->dev_minor);
	ref_jw_ku64(w, "sector", s->sector);
	ref_jw_ku64(w, "bytes", s->bytes);
	ref_jw_kstr(w, "opcode", s->opcode, sizeof(s->opcode));
	ref_jw_kdbl(w, "latency_ms", s->latency_ms);
	ref_jw_ki64(w, "error_code", s->error_code);
}

static void ref_write_node(struct ref_jw *w, const struct tapio_occurrence *occ)
{
	const struct tapio_occ_node *n = &occ->data.node;

	ref_jw_ki64(w, "cpu", n->cpu);
	if (occ->type == TAPIO_OCC_MEMORY_PRESSURE) {
		ref_jw_kdbl(w, "memory_some_avg10", n->memory_some_avg10);
		ref_jw_kdbl(w, "memory_full_avg10", n->memory_full_avg10);
		return;
	}
	ref_jw_ku64(w, "cycles", n->cycles);
	ref_jw_ku64(w, "instructions", n->instructions);
	ref_jw_ku64(w, "stall_cycles", n->stall_cycles);
	ref_jw_kdbl(w, "ipc", n->ipc);
	ref_jw_kdbl(w, "stall_pct", n->stall_pct);
}

static ssize_t ref_occ_json_write(const struct tapio_occurrence *occ, char *buf, size_t len)
{
	struct ref_jw w = {.buf = buf, .len = len};
	const struct tapio_catalogue_entry *cat;

	if (len > 0)
		buf[0] = '\0';
	if ((unsigned)occ->type >= TAPIO_OCC__COUNT)
		return -EINVAL;
	cat = &tapio_catalogue[occ->type];

	ref_jw_lit(&w, "{\"id\":");
	REF_JW_STR(&w, occ->id);
	ref_jw_ktime(&w, "timestamp", occ->timestamp_ns);
	ref_jw_lit(&w, ",\"source\":\"tapio\",\"type\":\"");
	ref_jw_lit(&w, cat->type);
	ref_jw_lit(&w, "\",\"severity\":\"");
	ref_jw_lit(&w, tapio_severity_name(occ->severity));
	ref_jw_lit(&w, "\",\"outcome\":\"");
	ref_jw_lit(&w, tapio_outcome_name(occ->outcome));
	ref_jw_lit(&w, "\",\"protocol_version\":\"1.0\",\"error\":{\"code\":\"");
	ref_jw_lit(&w, cat->error_code);
	ref_jw_lit(&w, "\",\"message\":");
	REF_JW_STR(&w, occ->error_message);
	ref_jw_lit(&w, "},\"context\":{\"cluster\":");
	REF_JW_STR(&w, occ->cluster);
	ref_jw_lit(&w, ",\"node\":");
	REF_JW_STR(&w, occ->node);
	ref_jw_lit(&w, "},\"data\":{\"config_generation\":");
	ref_jw_u64(&w, occ->config_generation);
	switch (cat->observer) {
	case TAPIO_OBS_NETWORK:
		ref_write_network(&w, occ);
		break;
	case TAPIO_OBS_CONTAINER:
		ref_write_container(&w, occ);
		break;
	case TAPIO_OBS_STORAGE:
		ref_write_storage(&w, occ);
		break;
	case TAPIO_OBS_NODE:
	default:
		ref_write_node(&w, occ);
		break;
	}
	if (occ->count > 0) {
		ref_jw_ku64(&w, "count", occ->count);
		ref_jw_ktime(&w, "first_seen", occ->first_seen_ns);
		ref_jw_ktime(&w, "last_seen", occ->last_seen_ns);
	}
	ref_jw_lit(&w, "}}");
	if (w.full) {
		if (len > 0)
			buf[0] = '\0';
		return -ENOSPC;
	}
	buf[w.pos] = '\0';
	return (ssize_t)w.pos;
}

/* The old writer's double text (ref_jw_kdbl without the key). */
static int ref_double(double v, char tmp[32])
{
	int n = 0;

	if (!isfinite(v))
		return snprintf(tmp, 32, "null");
	if (v == 0)
		v = 0;
	for (int prec = 15; prec <= 17; prec++) {
		n = snprintf(tmp, 32, "%.*g", prec, v);
		if (strtod(tmp, NULL) == v)
			break;
	}
	return n;
}

/* xorshift64*: reproducible without touching rand()'s state */
static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rnd_state ^= rnd_state >> 12;
	rnd_state ^= rnd_state << 25;
	rnd_state ^= rnd_state >> 27;
	return rnd_state * 0x2545f4914f6cdd1dull;
}

static uint64_t rnd_below(uint64_t n)
{
	return rnd() % n;
}

static double bits_double(uint64_t b)
{
	double v;

	memcpy(&v, &b, sizeof(v));
	return v;
}

static uint64_t in_range, exact_taken;

/* v as the writer writes it and as the reference does: the same bytes, or the test fails. */
static void check_double(double v)
{
	char want[32], got[40], exact[40];
	int nw = ref_double(v, want), ng, ne;

	memset(got, 'x', sizeof(got));
	ng = occ_json_format_double(v, got);
	cr_assert(ng == nw && memcmp(got, want, (size_t)nw) == 0,
		  "%a (%.17g): \"%.*s\", reference \"%s\"", v, v, ng, got, want);
	ne = occ_json_format_double_exact(v, exact);
	if (ne > 0) {
		cr_assert(ne == nw && memcmp(exact, want, (size_t)nw) == 0,
			  "%a (%.17g): exact \"%.*s\", reference \"%s\"", v, v, ne, exact, want);
		cr_assert_leq(ne, 24);
	}
	if (v == 0 || (fabs(v) >= 1e-4 && fabs(v) < 1e15)) {
		in_range++;
		exact_taken += ne > 0;
	} else {
		cr_assert_eq(ne, 0, "%a (%.17g) should be declined", v, v);
	}
}

Test(occ_json, doubles_match_the_printf_reference, .timeout = 120)
{
	static const double edges[] = {0.0,
				       -0.0,
				       1e-4,
				       -1e-4,
				       0.0001000000000000001,
				       9.99e14,
				       999999999999999.0,
				       999999999999999.9,
				       99999999999999.99,
				       9999999999999.999,
				       0.1 + 0.2,
				       0.1,
				       0.5,
				       1.5,
				       2.5,
				       1234567890123.125,
				       1234567890123.375,
				       123456789012.0625,
				       0.30000000000000004,
				       1.0 / 3.0,
				       2.0 / 3.0,
				       100,
				       1e14,
				       1e15,
				       1e-5,
				       5e-324,
				       2.2250738585072014e-308,
				       1.7976931348623157e308,
				       1e300,
				       -7.5,
				       -523.4567890123,
				       9007199254740993.0,
				       4503599627370496.5,
				       NAN,
				       -NAN,
				       INFINITY,
				       -INFINITY};

	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
		check_double(edges[i]);
		check_double(nextafter(edges[i], INFINITY));
		check_double(nextafter(edges[i], -INFINITY));
	}
	/* powers of two and ten and their neighbours (where the binade is uneven) */
	for (int e = -20; e <= 55; e++) {
		check_double(ldexp(1, e));
		check_double(nextafter(ldexp(1, e), 0));
		check_double(-nextafter(ldexp(1, e), INFINITY));
	}
	for (int e = -6; e <= 16; e++) {
		double p = pow(10, e);

		check_double(p);
		check_double(nextafter(p, 0));
		check_double(nextafter(p, INFINITY));
	}
	for (int i = 0; i < 300000; i++) {
		uint64_t cycles = 1000000000ull + rnd_below(1000000000);
		int k = (int)rnd_below(7);
		double p10 = pow(10, k);
		double m = (double)rnd_below(1000000000000000ull) / pow(10, (double)rnd_below(16));

		/* any bit pattern: every exponent, NaNs, infinities, subnormals */
		check_double(bits_double(rnd()));
		/* log-uniform over the exact path's range and a little beyond */
		check_double((rnd() & 1 ? -1 : 1) * pow(10, -5 + 21.0 * (double)rnd() / 0x1p64));
		/* decimals with 1–6 places, as people (and /proc) write them */
		check_double((double)(int64_t)rnd_below(1000000000000ull) / p10);
		check_double(-(double)rnd_below(10000000) / p10);
		check_double(floor(m));
		/* what the observers compute (tools/occgen.c, agent/observer/node.c) */
		check_double((double)(cycles / (1 + rnd_below(4))) / (double)cycles);
		check_double((double)rnd_below(cycles) / (double)cycles);
		check_double(100.0 * (double)(cycles / (2 + rnd_below(3))) / (double)cycles);
		check_double(10.0 + (double)rnd_below(900) / 10.0);
		check_double((10.0 + (double)rnd_below(900) / 10.0) / 2);
		check_double((double)rnd_below(30000) / 10.0);
		check_double((1.0 + (double)rnd_below(40)) * (2.0 + (double)rnd_below(8)));
		check_double((double)rnd_below(1000000) / 1e6 * (double)rnd_below(1000));
		/* exact ties at 15 and 16 digits: binary fractions with many digits */
		check_double((double)rnd_below(1ull << 40) / 1024.0);
		check_double((double)rnd_below(1ull << 52) /
			     (double)(1ull << (10 + rnd_below(40))));
	}
	/* the exact path takes (nearly) every value in its range: declines are for %g's e-form */
	cr_assert_geq(exact_taken, in_range - in_range / 100000, "%llu of %llu",
		      (unsigned long long)exact_taken, (unsigned long long)in_range);
}

/* A random string for a char[size]: plain runs, escapes, UTF-8 good and bad, maybe no NUL. */
static void rnd_text(char *dst, size_t size)
{
	static const char *const pieces[] = {
	    "a",
	    "node-0042",
	    "The quick brown fox ",
	    "\"",
	    "\\",
	    "\n",
	    "\x01",
	    "\x1f",
	    "\x7f",
	    "\xc3\xa9",
	    "\xe6\x97\xa5",
	    "\xf0\x9f\x98\x80",
	    "\xed\xa0\x80",
	    "\xc0\xaf",
	    "\xe2\x82",
	    "\xff",
	    "\x80",
	    "\xf4\x90\x80\x80",
	    "/kubepods/burstable/pod",
	    " ",
	    "~",
	    "\xef\x9f\xbf",
	};
	size_t n = 0, want = rnd_below(size + 1); /* == size: the whole array, no NUL */

	while (n < want) {
		const char *p = pieces[rnd_below(sizeof(pieces) / sizeof(pieces[0]))];
		size_t len = strlen(p);

		if (rnd_below(4) == 0) { /* often long plain runs, to cross word boundaries */
			p = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_.:/";
			len = 1 + rnd_below(strlen(p));
		}
		if (len > want - n)
			len = want - n;
		memcpy(dst + n, p, len);
		n += len;
	}
	if (n < size)
		dst[n] = '\0';
	/* garbage after the NUL must not be read into the output */
	for (size_t i = n + 1; i < size; i++)
		dst[i] = (char)rnd();
}

static double rnd_double(void)
{
	switch (rnd_below(5)) {
	case 0:
		return bits_double(rnd());
	case 1:
		return (double)rnd_below(1000000) / 1000.0;
	case 2:
		return (double)rnd_below(1000000000) / (double)(1 + rnd_below(1000000000));
	case 3:
		return -(double)rnd_below(100);
	default:
		return 100.0 * (double)rnd_below(1000) / 1000.0;
	}
}

static void rnd_occurrence(struct tapio_occurrence *occ)
{
	enum tapio_occ_type t = (enum tapio_occ_type)rnd_below(TAPIO_OCC__COUNT);

	memset(occ, 0, sizeof(*occ));
	occurrence_init(occ, t, rnd(), "n", "c");
	occ->severity = (enum tapio_severity)rnd_below(TAPIO_SEV__COUNT + 1);
	occ->outcome = (enum tapio_outcome)rnd_below(TAPIO_OUT__COUNT + 1);
	if (rnd_below(4) == 0)
		rnd_text(occ->id, sizeof(occ->id));
	rnd_text(occ->error_message, sizeof(occ->error_message));
	rnd_text(occ->cluster, sizeof(occ->cluster));
	rnd_text(occ->node, sizeof(occ->node));
	occ->config_generation = rnd() >> rnd_below(64);
	if (rnd_below(2)) {
		occ->count = (uint32_t)rnd();
		occ->first_seen_ns = rnd_below(2) ? occ->timestamp_ns : rnd();
		occ->last_seen_ns = occ->first_seen_ns + rnd_below(1000000000000ull);
	}
	switch (tapio_catalogue[t].observer) {
	case TAPIO_OBS_NETWORK: {
		struct tapio_occ_network *n = &occ->data.network;

		n->pid = (uint32_t)rnd();
		rnd_text(n->comm, sizeof(n->comm));
		rnd_text(n->src_ip, sizeof(n->src_ip));
		rnd_text(n->dst_ip, sizeof(n->dst_ip));
		n->src_port = (uint16_t)rnd();
		n->dst_port = (uint16_t)rnd();
		n->family = (uint8_t)(rnd_below(3) == 0 ? rnd() : rnd_below(2) ? 4 : 6);
		rnd_text(n->old_state, sizeof(n->old_state));
		rnd_text(n->new_state, sizeof(n->new_state));
		n->total_retrans = (uint32_t)rnd();
		n->snd_cwnd = (uint32_t)(rnd() >> rnd_below(64));
		n->baseline_ms = rnd_double();
		n->current_ms = rnd_double();
		break;
	}
	case TAPIO_OBS_CONTAINER: {
		struct tapio_occ_container *c = &occ->data.container;

		c->pid = (uint32_t)rnd();
		c->tid = (uint32_t)rnd();
		rnd_text(c->comm, sizeof(c->comm));
		c->exit_code = (int32_t)rnd();
		c->signal = (int32_t)(rnd() >> rnd_below(64));
		c->core_dumped = rnd_below(2);
		c->cgroup_id = rnd();
		rnd_text(c->cgroup_path, sizeof(c->cgroup_path));
		c->memory_usage_bytes = rnd() >> rnd_below(64);
		c->memory_limit_bytes = rnd();
		c->rss_bytes = rnd() >> rnd_below(64);
		break;
	}
	case TAPIO_OBS_STORAGE: {
		struct tapio_occ_storage *s = &occ->data.storage;

		s->pid = (uint32_t)rnd();
		rnd_text(s->comm, sizeof(s->comm));
		s->dev_major = (uint32_t)rnd();
		s->dev_minor = (uint32_t)(rnd() >> rnd_below(64));
		s->sector = rnd();
		s->bytes = (uint32_t)rnd();
		rnd_text(s->opcode, sizeof(s->opcode));
		s->latency_ms = rnd_double();
		s->error_code = -(int32_t)rnd_below(200);
		break;
	}
	default: {
		struct tapio_occ_node *n = &occ->data.node;

		n->cpu = rnd_below(2) ? -1 : (int32_t)rnd();
		n->cycles = rnd();
		n->instructions = rnd() >> rnd_below(64);
		n->stall_cycles = rnd();
		n->ipc = rnd_double();
		n->stall_pct = rnd_double();
		n->memory_some_avg10 = rnd_double();
		n->memory_full_avg10 = rnd_double();
		break;
	}
	}
}

Test(occ_json, writer_matches_the_reference_byte_for_byte, .timeout = 120)
{
	static char got[TAPIO_OCC_JSON_MAX + 64], want[TAPIO_OCC_JSON_MAX + 64];

	for (int i = 0; i < 200000; i++) {
		struct tapio_occurrence occ;
		size_t len = i % 4 ? TAPIO_OCC_JSON_MAX : rnd_below(TAPIO_OCC_JSON_MAX + 64);
		ssize_t ng, nw;

		rnd_occurrence(&occ);
		memset(got, 'x', sizeof(got));
		memset(want, 'x', sizeof(want));
		ng = occ_json_write(&occ, got, len);
		nw = ref_occ_json_write(&occ, want, len);
		cr_assert_eq(ng, nw, "case %d (len %zu): %zd, reference %zd\n%s", i, len, ng, nw,
			     want);
		if (ng < 0) {
			/* a failed write leaves "" and (unlike the old one) nothing else */
			cr_assert(len == 0 || got[0] == '\0', "case %d (len %zu)", i, len);
			for (size_t k = len ? 1 : 0; k < sizeof(got); k++)
				cr_assert_eq(got[k], 'x', "case %d (len %zu): byte %zu written", i,
					     len, k);
			continue;
		}
		/* the text and its NUL; scratch bytes may follow, but never past len */
		cr_assert(memcmp(got, want, (size_t)nw + 1) == 0, "case %d (len %zu):\n%s\n%s", i,
			  len, got, want);
		for (size_t k = len; k < sizeof(got); k++)
			cr_assert_eq(got[k], 'x', "case %d (len %zu): byte %zu written", i, len, k);
	}
}

Test(occ_json, every_observer_at_its_worst_fits, .timeout = 10)
{
	static char buf[TAPIO_OCC_JSON_MAX], want[TAPIO_OCC_JSON_MAX];

	for (int t = 0; t < TAPIO_OCC__COUNT; t++) {
		struct tapio_occurrence occ;
		ssize_t n;

		fill(&occ, (enum tapio_occ_type)t);
		/* every string byte a 6-byte escape, no NUL, every number at its widest */
		memset(occ.id, 0x01, sizeof(occ.id));
		memset(occ.error_message, 0x01, sizeof(occ.error_message));
		memset(occ.cluster, 0xfe, sizeof(occ.cluster));
		memset(occ.node, 0x80, sizeof(occ.node));
		memset(&occ.data, 0xff, sizeof(occ.data));
		switch (tapio_catalogue[t].observer) {
		case TAPIO_OBS_NETWORK:
			occ.data.network.baseline_ms = -0x1.fffffffffffffp-1000;
			occ.data.network.current_ms = -2.2250738585072014e-308;
			break;
		case TAPIO_OBS_STORAGE:
			occ.data.storage.latency_ms = -0x1.fffffffffffffp-1000;
			occ.data.storage.error_code = INT32_MIN;
			break;
		case TAPIO_OBS_CONTAINER:
			occ.data.container.exit_code = occ.data.container.signal = INT32_MIN;
			occ.data.container.core_dumped = true; /* a bool holds 0 or 1, not 0xff */
			break;
		default:
			occ.data.node.cpu = INT32_MIN;
			occ.data.node.ipc = occ.data.node.stall_pct = -0x1.fffffffffffffp-1000;
			occ.data.node.memory_some_avg10 = -0x1.fffffffffffffp-1000;
			occ.data.node.memory_full_avg10 = -0x1.fffffffffffffp-1000;
			break;
		}
		occ.config_generation = UINT64_MAX;
		occ.count = UINT32_MAX;
		occ.timestamp_ns = occ.first_seen_ns = occ.last_seen_ns = UINT64_MAX;
		n = occ_json_write(&occ, buf, sizeof(buf));
		cr_assert_gt(n, 0, "%s: %zd", tapio_catalogue[t].type, n);
		cr_assert_eq(ref_occ_json_write(&occ, want, sizeof(want)), n);
		cr_assert_str_eq(buf, want);
	}
}
