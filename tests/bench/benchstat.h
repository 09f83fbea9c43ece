/*
 * Sampling and reporting shared by the query benchmarks (httpbench.c, querybench.c), so the
 * HTTP, in-process and SQLite figures of scripts/bench-query.sh are taken the same way:
 * warm-up, N timed runs, nearest-rank p50/p99, and a time budget per query.
 */
#ifndef TAPIO_TESTS_BENCH_BENCHSTAT_H
#define TAPIO_TESTS_BENCH_BENCHSTAT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Time budget per query (seconds): stop sampling early (at least 3 samples) past it. */
static double bench_budget_s = 30;

static inline uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * CPU time of the calling thread: what one in-process run cost, whatever else the machine
 * runs meanwhile (wall-clock percentiles on shared cores include waiting to be scheduled).
 */
static inline uint64_t bench_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline bool bench_over_budget(uint64_t start, int done)
{
	return done >= 3 && (double)(bench_now_ns() - start) / 1e9 > bench_budget_s;
}

/* Warm-up stops after the first run once a quarter of the budget is spent. */
static inline bool bench_warm_enough(uint64_t start, int done)
{
	return done >= 1 && (double)(bench_now_ns() - start) / 1e9 > bench_budget_s / 4;
}

static inline int bench_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of n sorted samples. */
static inline double bench_pct_ms(const uint64_t *v, size_t n, double p)
{
	size_t k = (size_t)(p * (double)n + 0.999999);

	if (k == 0)
		k = 1;
	if (k > n)
		k = n;
	return (double)v[k - 1] / 1e6;
}

/*
 * Prints "<kind> <name> p50_ms=… p99_ms=… max_ms=… n=… bytes=…" from the wall-clock samples
 * v, and " cpu_p50_ms=… cpu_p99_ms=…" from the thread CPU time samples cpu when given
 * (in-process runs). Sorts both.
 */
static inline void bench_report(const char *kind, const char *name, uint64_t *v, uint64_t *cpu,
				size_t n, size_t bytes)
{
	qsort(v, n, sizeof(*v), bench_cmp_u64);
	printf("%s %s p50_ms=%.3f p99_ms=%.3f max_ms=%.3f n=%zu bytes=%zu", kind, name,
	       bench_pct_ms(v, n, 0.50), bench_pct_ms(v, n, 0.99), (double)v[n - 1] / 1e6, n,
	       bytes);
	if (cpu) {
		qsort(cpu, n, sizeof(*cpu), bench_cmp_u64);
		printf(" cpu_p50_ms=%.3f cpu_p99_ms=%.3f", bench_pct_ms(cpu, n, 0.50),
		       bench_pct_ms(cpu, n, 0.99));
	}
	printf("\n");
	fflush(stdout);
}

/* next_cursor of an occurrences page (JSON) into cur; empty when null or absent. */
static inline void bench_next_cursor(const char *body, char *cur, size_t len)
{
	const char *p = strstr(body, "\"next_cursor\":\"");

	cur[0] = 0;
	if (!p)
		return;
	p += 15;
	size_t n = strcspn(p, "\"");
	if (n >= len)
		n = len - 1;
	memcpy(cur, p, n);
	cur[n] = 0;
}

/* Writes len bytes of body to dir/<index>.body (for comparing outputs). Returns 0 or -1. */
static inline int bench_save_body(const char *dir, int index, const char *body, size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%d.body", dir, index);
	f = fopen(path, "w");
	if (!f || fwrite(body, 1, len, f) != len) {
		fprintf(stderr, "bench: write %s failed\n", path);
		if (f)
			fclose(f);
		return -1;
	}
	return fclose(f) == 0 ? 0 : -1;
}

#endif
