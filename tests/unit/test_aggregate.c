/* Contract tests of controller/aggregate.c: sums equal a brute-force recount, rebuild. */
#include <criterion/criterion.h>
#include <errno.h>

#include "controller/aggregate.h"
#include "store_testlib.h"

TestSuite(aggregate, .timeout = 60);

struct row {
	uint64_t bucket;
	uint32_t key;
	uint64_t count;
};

struct rows {
	struct row v[20000];
	size_t n;
};

static int collect_row(void *ctx, uint64_t bucket, uint32_t key, uint64_t count)
{
	struct rows *r = ctx;
	cr_assert_lt(r->n, 20000);
	if (r->n) {
		const struct row *p = &r->v[r->n - 1];
		cr_assert(p->bucket < bucket || (p->bucket == bucket && p->key < key),
			  "rows ordered by bucket then key");
	}
	r->v[r->n++] = (struct row){bucket, key, count};
	return 0;
}

static uint32_t key_of(const struct store_record_meta *m, enum aggregate_by by)
{
	return by == AGG_BY_TYPE ? m->type : by == AGG_BY_NODE ? m->node_id : m->severity;
}

/* Brute force: for every (bucket, key) compare against the rows. */
static void check_against(const struct rows *got, const struct store_record_meta *ms, size_t n,
			  enum aggregate_by by, uint64_t since, uint64_t until, uint32_t bucket_s)
{
	uint64_t width = (uint64_t)bucket_s * T_SEC;
	uint64_t total = 0;
	for (size_t i = 0; i < got->n; i++) {
		uint64_t count = 0;
		for (size_t k = 0; k < n; k++) {
			uint64_t minute_start = ms[k].timestamp_ns / AGG_BUCKET_NS * AGG_BUCKET_NS;
			if (minute_start < since || (until && minute_start >= until))
				continue;
			if (minute_start / width * width == got->v[i].bucket &&
			    key_of(&ms[k], by) == got->v[i].key)
				count++;
		}
		cr_assert_eq(got->v[i].count, count, "bucket %llu key %u",
			     (unsigned long long)got->v[i].bucket, got->v[i].key);
		total += count;
	}
	/* and nothing is missing: the rows add up to every record in range */
	uint64_t in_range = 0;
	for (size_t k = 0; k < n; k++) {
		uint64_t minute_start = ms[k].timestamp_ns / AGG_BUCKET_NS * AGG_BUCKET_NS;
		in_range += minute_start >= since && (!until || minute_start < until);
	}
	cr_assert_eq(total, in_range);
}

static struct store_record_meta *random_metas(size_t n, uint64_t start, uint64_t span)
{
	struct store_record_meta *ms = calloc(n, sizeof(*ms));
	for (size_t i = 0; i < n; i++)
		ms[i] =
		    (struct store_record_meta){.timestamp_ns = start + t_rand() % span,
					       .type = (uint8_t)(t_rand() % TAPIO_OCC__COUNT),
					       .severity = (uint8_t)(t_rand() % TAPIO_SEV__COUNT),
					       .node_id = (uint32_t)(t_rand() % 6)};
	return ms;
}

static void check_all(struct aggregate *a, const struct store_record_meta *ms, size_t n,
		      uint64_t start)
{
	static struct rows r;
	uint32_t widths[] = {60, 300, 3600};
	uint64_t ranges[][2] = {
	    {0, 0}, {start + 600 * T_SEC, start + 5400 * T_SEC}, {start + 61 * T_SEC, 0}};
	for (int by = AGG_BY_TYPE; by <= AGG_BY_SEVERITY; by++)
		for (size_t w = 0; w < 3; w++)
			for (size_t q = 0; q < 3; q++) {
				r.n = 0;
				cr_assert_eq(aggregate_query(a, by, ranges[q][0], ranges[q][1],
							     widths[w], collect_row, &r),
					     0);
				check_against(&r, ms, n, by, ranges[q][0], ranges[q][1], widths[w]);
			}
}

Test(aggregate, equals_brute_force_recount)
{
	struct aggregate *a = aggregate_new();
	size_t n = 3000;
	uint64_t start = T_BASE_NS - 7200 * T_SEC;
	struct store_record_meta *ms = random_metas(n, start, 7200 * T_SEC);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(aggregate_add(a, &ms[i]), 0);
	check_all(a, ms, n, start);
	struct rows r = {0};
	cr_assert_eq(aggregate_query(a, AGG_BY_TYPE, 0, 0, 90, collect_row, &r), -EINVAL);
	cr_assert_eq(aggregate_query(a, AGG_BY_TYPE, 0, 0, 0, collect_row, &r), -EINVAL);
	struct store_record_meta bad = {.type = TAPIO_OCC__COUNT};
	cr_assert_eq(aggregate_add(a, &bad), -EINVAL);
	free(ms);
	aggregate_free(a);
}

/* Records in runs of one minute and node (as batches arrive), new nodes appearing mid-run. */
Test(aggregate, runs_of_one_minute_and_node_equal_recount)
{
	struct aggregate *a = aggregate_new();
	size_t n = 6000, i = 0;
	uint64_t start = T_BASE_NS - 7200 * T_SEC;
	struct store_record_meta *ms = calloc(n, sizeof(*ms));
	while (i < n) {
		uint64_t minute = start / AGG_BUCKET_NS + t_rand() % 120;
		/* descending ids: each new node is inserted before the hinted entry */
		uint32_t node = (uint32_t)(30 - t_rand() % (1 + i * 30 / n));
		for (size_t run = 1 + t_rand() % 200; run > 0 && i < n; run--, i++)
			ms[i] = (struct store_record_meta){
			    .timestamp_ns = minute * AGG_BUCKET_NS + t_rand() % AGG_BUCKET_NS,
			    .type = (uint8_t)(t_rand() % TAPIO_OCC__COUNT),
			    .severity = (uint8_t)(t_rand() % TAPIO_SEV__COUNT),
			    .node_id = node};
	}
	for (i = 0; i < n; i++)
		cr_assert_eq(aggregate_add(a, &ms[i]), 0);
	cr_assert_eq(aggregate_dropped(a), 0);
	check_all(a, ms, n, start);
	/*
	 * a reset (as a rebuild does), then the same records newest first, so the first one is in
	 * the minute of the last add: nothing may land in a cleared bucket
	 */
	aggregate_reset(a);
	for (i = n; i-- > 0;)
		cr_assert_eq(aggregate_add(a, &ms[i]), 0);
	check_all(a, ms, n, start);
	free(ms);
	aggregate_free(a);
}

Test(aggregate, ring_keeps_seven_days)
{
	struct aggregate *a = aggregate_new();
	struct store_record_meta m = {.timestamp_ns = T_BASE_NS, .type = 1, .severity = 2};
	cr_assert_eq(aggregate_add(a, &m), 0);
	/* exactly 7 days later: same ring slot, recycles it */
	struct store_record_meta later = m;
	later.timestamp_ns += (uint64_t)AGG_BUCKETS * AGG_BUCKET_NS;
	cr_assert_eq(aggregate_add(a, &later), 0);
	/* the older minute can no longer be counted */
	cr_assert_eq(aggregate_add(a, &m), 0);
	cr_assert_eq(aggregate_dropped(a), 1);
	struct rows *r = calloc(1, sizeof(*r));
	cr_assert_eq(aggregate_query(a, AGG_BY_TYPE, 0, 0, 60, collect_row, r), 0);
	cr_assert_eq(r->n, 1);
	cr_assert_eq(r->v[0].bucket, later.timestamp_ns / AGG_BUCKET_NS * AGG_BUCKET_NS);
	cr_assert_eq(r->v[0].count, 1);
	free(r);
	aggregate_free(a);
	aggregate_free(NULL);
}

Test(aggregate, rebuild_from_store_is_identical)
{
	char *dir = t_mkdtemp();
	struct store_options o;
	t_options(&o, dir);
	o.segment_max_bytes = 8192;
	struct store *s;
	cr_assert_eq(store_open(&o, &s), 0);
	uint32_t nodes[6];
	char name[16];
	for (int i = 0; i < 6; i++) {
		snprintf(name, sizeof(name), "node-%d", i);
		cr_assert_eq(store_node_intern(s, name, &nodes[i]), 0);
	}
	struct aggregate *live = aggregate_new();
	struct t_list model = {0};
	uint64_t start = T_BASE_NS - 5000 * T_SEC;
	for (uint64_t seq = 1; seq <= 150; seq++) {
		size_t before = model.n;
		cr_assert_eq(
		    t_append(s, &model, 1, 1, seq, 1 + seq % 9, nodes, 6, start + seq * 30 * T_SEC),
		    0);
		for (size_t i = before; i < model.n; i++)
			cr_assert_eq(aggregate_add(live, &model.v[i].m), 0);
		cr_assert_eq(store_commit(s), 0);
	}
	/* one record older than 7 days is in the store but outside the aggregation window */
	struct store_record_meta old = {.timestamp_ns = T_BASE_NS - 8 * 86400 * T_SEC,
					.type = 0,
					.agent_key = 1,
					.session_id = 1,
					.sequence = 151};
	const void *rec[1] = {"x"};
	size_t len[1] = {1};
	cr_assert_eq(store_append_batch(s, &old, rec, len, 1), 0);
	cr_assert_eq(store_commit(s), 0);
	store_close(s);
	cr_assert_eq(store_open(&o, &s), 0);

	struct aggregate *rebuilt = aggregate_new();
	cr_assert_eq(aggregate_rebuild(rebuilt, s, t_fake_now), 0);
	struct store_record_meta *ms = calloc(model.n, sizeof(*ms));
	for (size_t i = 0; i < model.n; i++)
		ms[i] = model.v[i].m;
	check_all(rebuilt, ms, model.n, start);
	static struct rows r1, r2;
	for (int by = AGG_BY_TYPE; by <= AGG_BY_SEVERITY; by++) {
		r1.n = r2.n = 0;
		cr_assert_eq(aggregate_query(live, by, 0, 0, 300, collect_row, &r1), 0);
		cr_assert_eq(aggregate_query(rebuilt, by, 0, 0, 300, collect_row, &r2), 0);
		cr_assert_eq(r1.n, r2.n);
		cr_assert(memcmp(r1.v, r2.v, r1.n * sizeof(r1.v[0])) == 0);
	}
	free(ms);
	aggregate_free(live);
	aggregate_free(rebuilt);
	store_close(s);
	t_list_free(&model);
	t_rm_rf(dir);
	free(dir);
}
