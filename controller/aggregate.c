/* Minute-bucket counters in a ring: add, range queries summed into larger buckets, rebuild. */
#include "aggregate.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct agg_node {
	uint32_t node_id;
	uint64_t count;
};

struct agg_bucket {
	uint64_t minute; /* minutes since the epoch */
	bool used;
	uint64_t by_type[TAPIO_OCC__COUNT];
	uint64_t by_severity[TAPIO_SEV__COUNT];
	struct agg_node *nodes; /* sorted by node_id */
	uint32_t n_nodes, cap_nodes;
};

struct aggregate {
	struct agg_bucket *ring; /* AGG_BUCKETS slots, slot = minute % AGG_BUCKETS */
	uint64_t dropped;
	/*
	 * The bucket and node entry of the last record added: records come in runs of one
	 * minute and node (a batch), so most adds skip the division and the node search.
	 * Valid by construction: a bucket changes minute only in aggregate_add, which then
	 * points the hint at it, and aggregate_reset clears the hint; the node entry is checked.
	 */
	struct agg_bucket *hint;
	uint64_t hint_start_ns; /* the hinted minute's first ns */
	uint32_t hint_node;
};

struct aggregate *aggregate_new(void)
{
	struct aggregate *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->ring = calloc(AGG_BUCKETS, sizeof(*a->ring));
	if (!a->ring) {
		free(a);
		return NULL;
	}
	return a;
}

static void bucket_clear(struct agg_bucket *b)
{
	struct agg_node *nodes = b->nodes;
	uint32_t cap = b->cap_nodes;
	memset(b, 0, sizeof(*b));
	b->nodes = nodes; /* keep the allocation for the slot's next minute */
	b->cap_nodes = cap;
}

void aggregate_reset(struct aggregate *a)
{
	for (uint32_t i = 0; i < AGG_BUCKETS; i++)
		bucket_clear(&a->ring[i]);
	a->dropped = 0;
	a->hint = NULL;
}

void aggregate_free(struct aggregate *a)
{
	if (!a)
		return;
	for (uint32_t i = 0; i < AGG_BUCKETS; i++)
		free(a->ring[i].nodes);
	free(a->ring);
	free(a);
}

uint64_t aggregate_dropped(const struct aggregate *a)
{
	return a->dropped;
}

static int bucket_add_node(struct agg_bucket *b, uint32_t node_id, uint32_t *pos)
{
	uint32_t lo = 0, hi = b->n_nodes;

	if (*pos < hi && b->nodes[*pos].node_id == node_id) {
		b->nodes[*pos].count++;
		return 0;
	}
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (b->nodes[mid].node_id < node_id)
			lo = mid + 1;
		else
			hi = mid;
	}
	*pos = lo;
	if (lo < b->n_nodes && b->nodes[lo].node_id == node_id) {
		b->nodes[lo].count++;
		return 0;
	}
	if (b->n_nodes == b->cap_nodes) {
		uint32_t ncap = b->cap_nodes ? b->cap_nodes * 2 : 8;
		struct agg_node *n = realloc(b->nodes, ncap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		b->nodes = n;
		b->cap_nodes = ncap;
	}
	memmove(&b->nodes[lo + 1], &b->nodes[lo], (b->n_nodes - lo) * sizeof(*b->nodes));
	b->nodes[lo] = (struct agg_node){.node_id = node_id, .count = 1};
	b->n_nodes++;
	return 0;
}

int aggregate_add(struct aggregate *a, const struct store_record_meta *m)
{
	if (m->type >= TAPIO_OCC__COUNT || m->severity >= TAPIO_SEV__COUNT)
		return -EINVAL;
	struct agg_bucket *b = a->hint;
	if (!b || m->timestamp_ns - a->hint_start_ns >= AGG_BUCKET_NS) {
		uint64_t minute = m->timestamp_ns / AGG_BUCKET_NS;
		b = &a->ring[minute % AGG_BUCKETS];
		if (b->used && b->minute > minute) {
			a->dropped++;
			return 0;
		}
		if (!b->used || b->minute < minute) {
			bucket_clear(b);
			b->used = true;
			b->minute = minute;
		}
		a->hint = b;
		a->hint_start_ns = minute * AGG_BUCKET_NS;
	}
	int err = bucket_add_node(b, m->node_id, &a->hint_node);
	if (err)
		return err;
	b->by_type[m->type]++;
	b->by_severity[m->severity]++;
	return 0;
}

struct agg_out {
	uint64_t bucket;
	uint32_t key;
	uint64_t count;
};

struct out_list {
	struct agg_out *v;
	size_t n, cap;
};

static int out_push(struct out_list *l, uint64_t bucket, uint32_t key, uint64_t count)
{
	if (!count)
		return 0;
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 256;
		struct agg_out *v = realloc(l->v, ncap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = ncap;
	}
	l->v[l->n++] = (struct agg_out){.bucket = bucket, .key = key, .count = count};
	return 0;
}

static int out_cmp(const void *x, const void *y)
{
	const struct agg_out *a = x, *b = y;
	if (a->bucket != b->bucket)
		return a->bucket < b->bucket ? -1 : 1;
	if (a->key != b->key)
		return a->key < b->key ? -1 : 1;
	return 0;
}

int aggregate_query(const struct aggregate *a, enum aggregate_by by, uint64_t since_ns,
		    uint64_t until_ns, uint32_t bucket_s, aggregate_cb cb, void *ctx)
{
	if (bucket_s == 0 || bucket_s % 60 != 0 || by > AGG_BY_SEVERITY)
		return -EINVAL;
	uint64_t until = until_ns ? until_ns : UINT64_MAX;
	uint64_t width = (uint64_t)bucket_s * 1000000000ull;
	struct out_list l = {0};
	int err = 0;

	for (uint32_t i = 0; i < AGG_BUCKETS && !err; i++) {
		const struct agg_bucket *b = &a->ring[i];
		if (!b->used)
			continue;
		uint64_t start = b->minute * AGG_BUCKET_NS;
		if (start < since_ns || start >= until)
			continue;
		uint64_t ob = start / width * width;
		switch (by) {
		case AGG_BY_TYPE:
			for (uint32_t t = 0; t < TAPIO_OCC__COUNT && !err; t++)
				err = out_push(&l, ob, t, b->by_type[t]);
			break;
		case AGG_BY_SEVERITY:
			for (uint32_t s = 0; s < TAPIO_SEV__COUNT && !err; s++)
				err = out_push(&l, ob, s, b->by_severity[s]);
			break;
		case AGG_BY_NODE:
			for (uint32_t n = 0; n < b->n_nodes && !err; n++)
				err = out_push(&l, ob, b->nodes[n].node_id, b->nodes[n].count);
			break;
		}
	}
	if (err)
		goto out;
	if (l.n)
		qsort(l.v, l.n, sizeof(*l.v), out_cmp);
	for (size_t i = 0; i < l.n;) {
		size_t j = i + 1;
		uint64_t sum = l.v[i].count;
		while (j < l.n && l.v[j].bucket == l.v[i].bucket && l.v[j].key == l.v[i].key)
			sum += l.v[j++].count;
		if (cb(ctx, l.v[i].bucket, l.v[i].key, sum))
			break;
		i = j;
	}
out:
	free(l.v);
	return err;
}

static int on_rebuild_record(void *ctx, const struct store_record_meta *m, const void *data,
			     size_t len, struct store_pos pos)
{
	(void)data;
	(void)len;
	(void)pos;
	struct aggregate *a = ctx;
	/* records were validated when stored; a failure here is memory: stop the scan */
	return aggregate_add(a, m) == -ENOMEM;
}

int aggregate_rebuild(struct aggregate *a, struct store *s, uint64_t now_ns)
{
	struct store_query q;
	uint64_t window = (uint64_t)AGG_BUCKETS * AGG_BUCKET_NS;

	aggregate_reset(a);
	store_query_init(&q);
	q.since_ns = now_ns > window ? now_ns - window : 0;
	q.meta_only = true;
	long n = store_scan(s, &q, on_rebuild_record, a);
	return n < 0 ? (int)n : 0;
}
