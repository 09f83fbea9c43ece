/*
 * In-memory summaries for the query API (SPEC §6): counts by type, node and severity in
 * 1-minute buckets for the last 7 days, a fixed ring of buckets (bounded memory), rebuilt
 * from the store's record metadata at start.
 */
#ifndef TAPIO_CONTROLLER_AGGREGATE_H
#define TAPIO_CONTROLLER_AGGREGATE_H

#include <stdint.h>

#include "store.h"

#define AGG_BUCKET_NS 60000000000ull /* one minute */
#define AGG_BUCKETS   (7u * 24 * 60) /* 7 days of minutes */

enum aggregate_by { AGG_BY_TYPE = 0, AGG_BY_NODE, AGG_BY_SEVERITY };

struct aggregate;

/* Returns a new empty aggregate, or NULL (out of memory). Free with aggregate_free. */
struct aggregate *aggregate_new(void);
void aggregate_free(struct aggregate *a); /* NULL-safe */
/* Forgets every count. */
void aggregate_reset(struct aggregate *a);

/*
 * Counts one record in its minute. A record more than 7 days older than what already
 * occupies its ring slot is dropped and counted (aggregate_dropped); a newer one recycles
 * the slot. Returns 0, -EINVAL (type/severity out of range) or -ENOMEM.
 */
int aggregate_add(struct aggregate *a, const struct store_record_meta *m);
uint64_t aggregate_dropped(const struct aggregate *a);

/* Return non-zero to stop. bucket_start_ns is a multiple of bucket_s seconds. */
typedef int (*aggregate_cb)(void *ctx, uint64_t bucket_start_ns, uint32_t key, uint64_t count);

/*
 * Sums the minutes whose start lies in [since_ns, until_ns) (until 0 → no bound) into
 * buckets of bucket_s seconds (a multiple of 60) aligned to the epoch, and calls cb once
 * per (bucket, key) with a non-zero count, ordered by bucket then key. key is the type,
 * node id or severity value. Returns 0, -EINVAL (bad bucket_s or by) or -ENOMEM.
 */
int aggregate_query(const struct aggregate *a, enum aggregate_by by, uint64_t since_ns,
		    uint64_t until_ns, uint32_t bucket_s, aggregate_cb cb, void *ctx);

/*
 * Resets *a and recounts every retained record of the last 7 days before now_ns from the
 * store's record headers (payloads are not read). Returns 0 or -errno.
 */
int aggregate_rebuild(struct aggregate *a, struct store *s, uint64_t now_ns);

#endif
