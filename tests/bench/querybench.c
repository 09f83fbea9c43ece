/*
 * querybench: the controller's query engine in-process, for scripts/bench-query.sh.
 *
 *   querybench --data-dir DIR [-n N] [--warmup W] [--deep K] [--budget S] [--save DIR] PATH...
 *     opens the store in DIR (give it a copy: store_open takes the directory's lock, may
 *     recover, seal or apply retention) and rebuilds the aggregate, like tapio-controller at
 *     start; then for each PATH ("/v1/occurrences?type=…") W untimed and N timed calls of
 *     api_handle(), the function the HTTP server calls, so the body is byte for byte the
 *     API's; each timed call includes freeing the response. Prints
 *     "inproc <name> p50_ms=… p99_ms=… max_ms=… n=… bytes=…" like httpbench. --deep K first
 *     follows next_cursor K pages from PATH (untimed), then times page K+1 with that cursor.
 *     --save DIR writes the last timed body of the i-th PATH to DIR/i.body.
 *   querybench --data-dir DIR --duration S PATH...
 *     calls the PATHs round-robin for S seconds (for perf record), prints the count.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "benchstat.h"
#include "common/clock.h"
#include "common/log.h"
#include "controller/aggregate.h"
#include "controller/api.h"
#include "controller/controller.h"

/* One API call: path split at '?', the response left in *rs (caller finis it). */
static void call(struct controller *c, const char *target, struct api_response *rs)
{
	const char *q = strchr(target, '?');
	struct api_request rq = {
	    .path = target,
	    .path_len = q ? (size_t)(q - target) : strlen(target),
	    .query = q ? q + 1 : NULL,
	    .query_len = q ? strlen(q + 1) : 0,
	};

	api_handle(c, &rq, rs);
}

static int call_ok(struct controller *c, const char *target, struct api_response *rs)
{
	call(c, target, rs);
	if (rs->status != 200) {
		fprintf(stderr, "querybench: %s: status %d: %.300s\n", target, rs->status,
			rs->body ? rs->body : "");
		api_response_fini(rs);
		return -1;
	}
	return 0;
}

static int bench_path(struct controller *c, const char *path, int index, int n, int warmup,
		      int deep, const char *save)
{
	char target[8192], cur[256];
	uint64_t *v = calloc((size_t)n, sizeof(*v)), *cpu = calloc((size_t)n, sizeof(*cpu));
	struct api_response rs;
	size_t bytes = 0;
	int done = 0;

	if (!v || !cpu)
		goto fail;
	snprintf(target, sizeof(target), "%s", path);
	for (int i = 0; i < deep; i++) {
		if (call_ok(c, target, &rs) < 0)
			goto fail;
		bench_next_cursor(rs.body, cur, sizeof(cur));
		api_response_fini(&rs);
		if (!cur[0]) {
			fprintf(stderr, "querybench: %s: no next_cursor after page %d\n", path,
				i + 1);
			goto fail;
		}
		snprintf(target, sizeof(target), "%s%scursor=%s", path,
			 strchr(path, '?') ? "&" : "?", cur);
	}
	uint64_t start = bench_now_ns();
	for (int i = 0; i < warmup && !bench_warm_enough(start, i); i++) {
		if (call_ok(c, target, &rs) < 0)
			goto fail;
		api_response_fini(&rs);
	}
	struct store_stats st0, st1;
	struct rusage ru0, ru1;
	store_stats(c->store, &st0);
	getrusage(RUSAGE_THREAD, &ru0);
	for (start = bench_now_ns(); done < n && !bench_over_budget(start, done); done++) {
		uint64_t t0 = bench_now_ns(), c0 = bench_cpu_ns();
		if (call_ok(c, target, &rs) < 0)
			goto fail;
		bytes = rs.len;
		bool last = done + 1 == n || bench_over_budget(start, done + 1);
		if (!last)
			api_response_fini(&rs);
		v[done] = bench_now_ns() - t0;
		cpu[done] = bench_cpu_ns() - c0;
		if (last) {
			/* the last run: keep the body (to save it) outside the timed part */
			int r = save ? bench_save_body(save, index, rs.body, rs.len) : 0;

			api_response_fini(&rs);
			if (r < 0)
				goto fail;
		}
	}
	store_stats(c->store, &st1);
	getrusage(RUSAGE_THREAD, &ru1);
	char name[600];
	snprintf(name, sizeof(name), "%s%s", deep > 0 ? "deep:" : "", path);
	bench_report("inproc", name, v, cpu, (size_t)done, bytes);
	/* the store's work per call: record headers read, posting entries checked */
	printf("inproc-work %s records_read=%.1f postings_checked=%.1f page_faults=%.1f\n", name,
	       (double)(st1.scan_records_read - st0.scan_records_read) / done,
	       (double)(st1.scan_postings_checked - st0.scan_postings_checked) / done,
	       (double)(ru1.ru_minflt - ru0.ru_minflt + ru1.ru_majflt - ru0.ru_majflt) / done);
	free(v);
	free(cpu);
	return 0;
fail:
	free(v);
	free(cpu);
	return -1;
}

static int hammer(struct controller *c, char **paths, int npaths, double seconds)
{
	uint64_t end = bench_now_ns() + (uint64_t)(seconds * 1e9), count = 0;
	struct api_response rs;

	while (bench_now_ns() < end) {
		if (call_ok(c, paths[count % (uint64_t)npaths], &rs) < 0)
			return -1;
		api_response_fini(&rs);
		count++;
	}
	printf("hammer calls=%llu seconds=%.1f per_s=%.0f\n", (unsigned long long)count, seconds,
	       (double)count / seconds);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"data-dir", required_argument, NULL, 'd'}, {"n", required_argument, NULL, 'n'},
	    {"warmup", required_argument, NULL, 'w'},	{"deep", required_argument, NULL, 'k'},
	    {"budget", required_argument, NULL, 'B'},	{"save", required_argument, NULL, 's'},
	    {"duration", required_argument, NULL, 'D'}, {NULL, 0, NULL, 0},
	};
	const char *dir = NULL, *save = NULL;
	int n = 100, warmup = 5, deep = 0, ch, rc = 1;
	double duration = 0;
	struct controller c;
	uint64_t t0;

	while ((ch = getopt_long(argc, argv, "n:", lo, NULL)) != -1) {
		switch (ch) {
		case 'd':
			dir = optarg;
			break;
		case 'n':
			n = atoi(optarg);
			break;
		case 'w':
			warmup = atoi(optarg);
			break;
		case 'k':
			deep = atoi(optarg);
			break;
		case 'B':
			bench_budget_s = atof(optarg);
			break;
		case 's':
			save = optarg;
			break;
		case 'D':
			duration = atof(optarg);
			break;
		default:
			fprintf(stderr, "usage: see the comment at the top of querybench.c\n");
			return 2;
		}
	}
	if (!dir || optind >= argc) {
		fprintf(stderr, "querybench: needs --data-dir and at least one PATH\n");
		return 2;
	}
	if (n < 1)
		n = 1;
	log_set_level(LOG_WARN);
	/* what controller_open does for queries, without listeners: store + aggregate */
	memset(&c, 0, sizeof(c));
	controller_options_defaults(&c.opt);
	c.opt.store.dir = dir;
	c.opt.store.fsync = STORE_FSYNC_NEVER; /* nothing is written but sealing at open */
	c.started_ns = clock_wall_ns();
	t0 = bench_now_ns();
	int r = store_open(&c.opt.store, &c.store);
	if (r < 0) {
		fprintf(stderr, "querybench: store_open %s: %s\n", dir, strerror(-r));
		return 1;
	}
	c.aggregate = aggregate_new();
	if (!c.aggregate || (r = aggregate_rebuild(c.aggregate, c.store, clock_wall_ns())) < 0) {
		fprintf(stderr, "querybench: aggregate_rebuild: %s\n", strerror(r ? -r : ENOMEM));
		goto out;
	}
	fprintf(stderr, "querybench: store open and aggregate rebuilt in %.0f ms\n",
		(double)(bench_now_ns() - t0) / 1e6);
	if (duration > 0) {
		rc = hammer(&c, argv + optind, argc - optind, duration) < 0;
		goto out;
	}
	rc = 0;
	for (int i = optind; i < argc && !rc; i++)
		rc = bench_path(&c, argv[i], i - optind, n, warmup, deep, save) < 0;
out:
	aggregate_free(c.aggregate);
	if (store_close(c.store) < 0)
		rc = 1;
	return rc;
}
