/*
 * Helpers shared by the controller store tests: temp dirs, a fake clock, and a model of
 * every record appended (to compare scans against a brute-force filter).
 */
#ifndef TAPIO_TESTS_STORE_TESTLIB_H
#define TAPIO_TESTS_STORE_TESTLIB_H

#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "controller/store.h"

#define T_BASE_NS 1790000000000000000ull /* 2026-09-21, a fixed "now" for fake clocks */
#define T_SEC	  1000000000ull

static uint64_t t_fake_now = T_BASE_NS;

static inline uint64_t t_clock(void *ctx)
{
	(void)ctx;
	return t_fake_now;
}

static inline int t_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static inline void t_rm_rf(const char *dir)
{
	nftw(dir, t_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static inline char *t_mkdtemp(void)
{
	char *d = strdup("/tmp/tapio-store-test.XXXXXX");
	cr_assert_not_null(mkdtemp(d));
	return d;
}

static inline void t_options(struct store_options *o, const char *dir)
{
	store_options_defaults(o);
	o->dir = dir;
	o->fsync = STORE_FSYNC_NEVER; /* most tests: durability is tested by the crash test */
	o->now_ns = t_clock;
}

static uint64_t t_rng_state = 88172645463325252ull;

static inline uint64_t t_rand(void)
{
	t_rng_state ^= t_rng_state << 13;
	t_rng_state ^= t_rng_state >> 7;
	t_rng_state ^= t_rng_state << 17;
	return t_rng_state;
}

struct t_rec {
	struct store_record_meta m;
	uint8_t *data;
	size_t len;
	struct store_pos pos;
};

struct t_list {
	struct t_rec *v;
	size_t n, cap;
};

static inline void t_list_push(struct t_list *l, const struct store_record_meta *m,
			       const void *data, size_t len, struct store_pos pos)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->v = realloc(l->v, l->cap * sizeof(*l->v));
		cr_assert_not_null(l->v);
	}
	struct t_rec *r = &l->v[l->n++];
	r->m = *m;
	r->len = len;
	r->data = malloc(len ? len : 1);
	if (len)
		memcpy(r->data, data, len);
	r->pos = pos;
}

static inline void t_list_free(struct t_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].data);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static inline int t_collect(void *ctx, const struct store_record_meta *m, const void *data,
			    size_t len, struct store_pos pos)
{
	t_list_push(ctx, m, data, len, pos);
	return 0;
}

/*
 * Appends one batch of k records with identity (agent, session, seq) and pseudo-random
 * type/severity/node/timestamp/payload; mirrors them into model.
 */
static inline int t_append(struct store *s, struct t_list *model, uint64_t agent, uint64_t session,
			   uint64_t seq, size_t k, const uint32_t *nodes, size_t n_nodes,
			   uint64_t ts_base)
{
	struct store_record_meta meta[64];
	const void *rec[64];
	size_t len[64];
	uint8_t bufs[64][400];

	cr_assert(k > 0 && k <= 64);
	for (size_t i = 0; i < k; i++) {
		meta[i] = (struct store_record_meta){
		    .timestamp_ns = ts_base + t_rand() % (10 * T_SEC),
		    .type = (uint8_t)(t_rand() % TAPIO_OCC__COUNT),
		    .severity = (uint8_t)(t_rand() % TAPIO_SEV__COUNT),
		    .node_id = nodes[t_rand() % n_nodes],
		    .agent_key = agent,
		    .session_id = session,
		    .sequence = seq,
		};
		len[i] = 1 + t_rand() % 399;
		for (size_t j = 0; j < len[i]; j++)
			bufs[i][j] = (uint8_t)(t_rand() >> 11);
		rec[i] = bufs[i];
	}
	int err = store_append_batch(s, meta, rec, len, k);
	if (!err && model)
		for (size_t i = 0; i < k; i++)
			t_list_push(model, &meta[i], rec[i], len[i], (struct store_pos){0, 0});
	return err;
}

static inline void t_assert_same_rec(const struct t_rec *a, const struct t_rec *b, size_t i)
{
	cr_assert_eq(a->m.timestamp_ns, b->m.timestamp_ns, "record %zu: timestamp", i);
	cr_assert_eq(a->m.type, b->m.type, "record %zu: type", i);
	cr_assert_eq(a->m.severity, b->m.severity, "record %zu: severity", i);
	cr_assert_eq(a->m.node_id, b->m.node_id, "record %zu: node", i);
	cr_assert_eq(a->m.agent_key, b->m.agent_key, "record %zu: agent", i);
	cr_assert_eq(a->m.session_id, b->m.session_id, "record %zu: session", i);
	cr_assert_eq(a->m.sequence, b->m.sequence, "record %zu: sequence", i);
	cr_assert_eq(a->len, b->len, "record %zu: length %zu vs %zu", i, a->len, b->len);
	cr_assert(memcmp(a->data, b->data, a->len) == 0, "record %zu: payload differs", i);
}

/* got must equal exp (in order). */
static inline void t_assert_same(const struct t_list *exp, const struct t_list *got)
{
	cr_assert_eq(exp->n, got->n, "expected %zu records, got %zu", exp->n, got->n);
	for (size_t i = 0; i < exp->n; i++)
		t_assert_same_rec(&exp->v[i], &got->v[i], i);
}

static inline struct t_list t_scan_all(struct store *s)
{
	struct store_query q;
	struct t_list got = {0};
	store_query_init(&q);
	long n = store_scan(s, &q, t_collect, &got);
	cr_assert_eq(n, (long)got.n, "scan returned %ld", n);
	return got;
}

/* Scans all of s and asserts it holds exactly the records of model, in order. */
static inline void t_assert_holds(struct store *s, const struct t_list *model)
{
	struct t_list got = t_scan_all(s);
	t_assert_same(model, &got);
	t_list_free(&got);
}

#endif
