/*
 * Microbenchmark of the per-record userspace path: classify + build_occurrence +
 * occ_json_write, N records per observer. Prints "<observer> ns_per_record=<x>" lines
 * (scripts/bench-agent.sh parses them). Usage: bench_classify [N]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/observer/container.h"
#include "agent/observer/network.h"
#include "agent/observer/node.h"
#include "agent/observer/storage.h"
#include "common/occ_json.h"

static uint64_t sink_bytes; /* keeps the work observable so nothing is optimised away */

static void on_emit(void *c, const struct tapio_occurrence *occ)
{
	(void)c;
	(void)occ;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void consume(const struct tapio_occurrence *occ)
{
	char buf[TAPIO_OCC_JSON_MAX];
	ssize_t n = occ_json_write(occ, buf, sizeof(buf));

	if (n < 0) {
		fprintf(stderr, "occ_json_write: %s\n", strerror((int)-n));
		exit(1);
	}
	sink_bytes += (uint64_t)n;
}

static void report(const char *name, uint64_t n, uint64_t t0, uint64_t t1)
{
	printf("%s ns_per_record=%.1f\n", name, (double)(t1 - t0) / (double)n);
}

static void bench_network(uint64_t n, const struct observer_ctx *ctx)
{
	struct tapio_net_event e;
	struct tapio_occurrence occ;
	uint64_t t0;

	memset(&e, 0, sizeof(e));
	e.kind = TAPIO_NET_CONNECT_FAIL;
	e.family = AF_INET;
	e.rst_seen = 1;
	e.sk_err = ECONNREFUSED;
	e.old_state = 2;
	e.new_state = 7;
	e.pid = 1234;
	e.sport = 40000;
	e.dport = 443;
	inet_pton(AF_INET, "10.0.0.1", e.saddr);
	inet_pton(AF_INET, "10.0.0.5", e.daddr);
	memcpy(e.comm, "curl", 5);
	t0 = now_ns();
	for (uint64_t i = 0; i < n; i++) {
		const struct tapio_net_event *ev;

		e.ts_ns = i;
		if (network_classify(&e, sizeof(e), &ev) != NETWORK_REFUSED)
			exit(1);
		network_build_occurrence(ev, TAPIO_OCC_CONNECTION_REFUSED, 0, 0, 0, 0, 0, ctx,
					 &occ);
		consume(&occ);
	}
	report("network", n, t0, now_ns());
}

static void bench_container(uint64_t n, const struct observer_ctx *ctx,
			    const struct tapio_settings *s)
{
	struct tapio_container_event e;
	struct tapio_occurrence occ;
	uint64_t t0;

	memset(&e, 0, sizeof(e));
	e.kind = TAPIO_CT_EXIT;
	e.exit_code = 9;
	e.pid = 1234;
	e.tid = 1234;
	memcpy(e.comm, "stress", 7);
	strcpy(e.cgroup_path, "/kubepods/burstable/pod1234/abcdef");
	t0 = now_ns();
	for (uint64_t i = 0; i < n; i++) {
		const struct tapio_container_event *ev;
		enum container_verdict v;

		e.ts_ns = i;
		v = container_classify(&e, sizeof(e), s, &ev);
		if (v != CONTAINER_EXIT_SIGNAL)
			exit(1);
		container_build_occurrence(ev, v, ctx, &occ);
		consume(&occ);
	}
	report("container", n, t0, now_ns());
}

static void bench_storage(uint64_t n, const struct observer_ctx *ctx,
			  const struct tapio_settings *s)
{
	struct tapio_storage_event e;
	struct tapio_occurrence occ;
	uint64_t t0;

	memset(&e, 0, sizeof(e));
	e.latency_ns = 250000000;
	e.dev = (8u << 20) | 16;
	e.bytes = 4096;
	e.sector = 2048;
	e.pid = 321;
	memcpy(e.comm, "postgres", 9);
	t0 = now_ns();
	for (uint64_t i = 0; i < n; i++) {
		const struct tapio_storage_event *ev;
		enum storage_verdict v;

		e.ts_ns = i;
		v = storage_classify(&e, sizeof(e), s, &ev);
		if (v != STORAGE_LATENCY_CRITICAL)
			exit(1);
		storage_build_occurrence(ev, v, 0, 0, 0, ctx, &occ);
		consume(&occ);
	}
	report("storage", n, t0, now_ns());
}

static void bench_node(uint64_t n, const struct observer_ctx *ctx, const struct tapio_settings *s)
{
	struct node_counters prev = {
	    .valid = TAPIO_PMC_CYCLES | TAPIO_PMC_INSTRUCTIONS | TAPIO_PMC_STALLS, .primed = true};
	struct tapio_node_event e;
	struct tapio_occurrence occ;
	uint64_t t0;

	memset(&e, 0, sizeof(e));
	e.valid = prev.valid;
	t0 = now_ns();
	for (uint64_t i = 0; i < n; i++) {
		const struct tapio_node_event *ev;
		struct node_judgement j;

		e.ts_ns = i;
		e.cycles = prev.cycles + 1000;
		e.instructions = prev.instructions + 500;
		e.stall_cycles = prev.stall_cycles + 450;
		if (node_classify(&e, sizeof(e), &ev) != NODE_SAMPLE ||
		    node_judge(&prev, ev, s, &j) != NODE_JUDGED || !j.stall)
			exit(1);
		node_build_occurrence(ev, TAPIO_OCC_CPU_STALL, &j, ctx, &occ);
		consume(&occ);
		prev.cycles = e.cycles;
		prev.instructions = e.instructions;
		prev.stall_cycles = e.stall_cycles;
	}
	report("node", n, t0, now_ns());
}

int main(int argc, char **argv)
{
	uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 2000000;
	struct observer_stats stats = {0};
	struct clock_map clock = {0};
	struct tapio_settings s;
	struct observer_ctx ctx = {
	    .node = "bench-node",
	    .cluster = "bench",
	    .clock = &clock,
	    .emit = on_emit,
	    .stats = &stats,
	};

	if (n == 0)
		n = 1;
	if (clock_map_sync(&clock) < 0)
		return 1;
	settings_defaults(&s);
	bench_network(n, &ctx);
	bench_container(n, &ctx, &s);
	bench_storage(n, &ctx, &s);
	bench_node(n, &ctx, &s);
	fprintf(stderr, "records=%llu json_bytes=%llu\n", (unsigned long long)n,
		(unsigned long long)sink_bytes);
	return 0;
}
