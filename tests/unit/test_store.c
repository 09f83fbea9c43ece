/* Contract tests of controller/store.c on a real filesystem under /tmp. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "store_testlib.h"

static char *dir;

static void setup(void)
{
	dir = t_mkdtemp();
	t_fake_now = T_BASE_NS;
	t_rng_state = 88172645463325252ull;
}

static void teardown(void)
{
	t_rm_rf(dir);
	free(dir);
}

static struct store *open_store(const struct store_options *o)
{
	struct store *s = NULL;
	int err = store_open(o, &s);
	cr_assert_eq(err, 0, "store_open: %s", strerror(-err));
	return s;
}

/* Interns nodes n0..n4 into nodes[]. */
static void intern_five(struct store *s, uint32_t nodes[5])
{
	for (int i = 0; i < 5; i++) {
		char nm[8];
		snprintf(nm, sizeof(nm), "n%d", i);
		store_node_intern(s, nm, &nodes[i]);
	}
}

/* Small segments (20,000 B, a sparse entry every 16 records) and nodes n0..n4 interned. */
static struct store *open_five_nodes(struct store_options *o, uint32_t nodes[5])
{
	t_options(o, dir);
	o->segment_max_bytes = 20000;
	o->sparse_every = 16;
	struct store *s = open_store(o);
	intern_five(s, nodes);
	return s;
}

static void seg_path(char *buf, size_t len, uint64_t id, const char *ext)
{
	char name[64];
	seg_file_name(name, sizeof(name), id, ext);
	snprintf(buf, len, "%s/%s", dir, name);
}

static off_t file_size(const char *path)
{
	struct stat st;
	cr_assert_eq(stat(path, &st), 0, "stat %s", path);
	return st.st_size;
}

TestSuite(store, .init = setup, .fini = teardown, .timeout = 60);

Test(store, append_commit_reopen_round_trip)
{
	struct store_options o;
	struct t_list model = {0};
	t_options(&o, dir);
	struct store *s = open_store(&o);
	uint32_t nodes[3];
	cr_assert_eq(store_node_intern(s, "node-a", &nodes[0]), 0);
	cr_assert_eq(store_node_intern(s, "node-b", &nodes[1]), 0);
	cr_assert_eq(store_node_intern(s, "node-c", &nodes[2]), 0);
	uint32_t again;
	cr_assert_eq(store_node_intern(s, "node-b", &again), 0);
	cr_assert_eq(again, nodes[1]);
	cr_assert_eq(store_node_intern(s, "", &again), -EINVAL);

	for (uint64_t seq = 1; seq <= 20; seq++)
		cr_assert_eq(t_append(s, &model, 7, 1, seq, 1 + seq % 5, nodes, 3,
				      T_BASE_NS - 3600 * T_SEC + seq * T_SEC),
			     0);
	cr_assert_eq(store_appended_ticket(s), 20);
	cr_assert_eq(store_durable_ticket(s), 0);
	struct t_list before = t_scan_all(s);
	cr_assert_eq(before.n, 0, "uncommitted records must not be visible");
	cr_assert_eq(store_commit(s), 0);
	cr_assert_eq(store_durable_ticket(s), 20);
	struct t_list got = t_scan_all(s);
	t_assert_same(&model, &got);
	cr_assert_eq(store_close(s), 0);

	s = open_store(&o);
	struct t_list got2 = t_scan_all(s);
	t_assert_same(&model, &got2);
	cr_assert_eq(store_node_count(s), 3);
	cr_assert_str_eq(store_node_name(s, nodes[0]), "node-a");
	cr_assert_str_eq(store_node_name(s, nodes[2]), "node-c");
	cr_assert_null(store_node_name(s, 3));
	struct store_stats st;
	store_stats(s, &st);
	cr_assert_eq(st.records, model.n);
	cr_assert_eq(st.recovery_truncations, 0);
	/* a second open of the same directory is refused while the first holds it */
	struct store *s2 = NULL;
	cr_assert_eq(store_open(&o, &s2), -EBUSY);
	cr_assert_eq(store_close(s), 0);
	t_list_free(&model);
	t_list_free(&before);
	t_list_free(&got);
	t_list_free(&got2);
}

Test(store, rejects_invalid_records)
{
	struct store_options o;
	t_options(&o, dir);
	struct store *s = open_store(&o);
	struct store_record_meta m = {.timestamp_ns = T_BASE_NS, .type = TAPIO_OCC__COUNT};
	const void *rec[1] = {"x"};
	size_t len[1] = {1};
	cr_assert_eq(store_append_batch(s, &m, rec, len, 1), -EINVAL);
	m.type = 0;
	m.severity = TAPIO_SEV__COUNT;
	cr_assert_eq(store_append_batch(s, &m, rec, len, 1), -EINVAL);
	m.severity = 0;
	cr_assert_eq(store_append_batch(s, &m, rec, len, 0), -EINVAL);
	cr_assert_eq(store_append_batch(s, &m, rec, len, 1), 0);
	store_close(s);
}

static size_t count_files(const char *ext)
{
	size_t n = 0;
	for (uint64_t id = 1; id < 4096; id++) {
		char p[4200];
		struct stat st;
		seg_path(p, sizeof(p), id, ext);
		if (stat(p, &st) == 0)
			n++;
	}
	return n;
}

Test(store, rotation_by_size_seals_with_index)
{
	struct store_options o;
	struct t_list model = {0};
	uint32_t node = 0;
	t_options(&o, dir);
	o.segment_max_bytes = 8192;
	struct store *s = open_store(&o);
	cr_assert_eq(store_node_intern(s, "n", &node), 0);
	for (uint64_t seq = 1; seq <= 60; seq++) {
		cr_assert_eq(t_append(s, &model, 1, 1, seq, 4, &node, 1, T_BASE_NS + seq), 0);
		cr_assert_eq(store_commit(s), 0);
	}
	struct store_stats st;
	store_stats(s, &st);
	cr_assert_gt(st.rotations, 3);
	cr_assert_eq(st.segments, st.rotations + 1);
	cr_assert_eq(count_files("tseg"), st.segments);
	cr_assert_eq(count_files("idx"), st.rotations, "every sealed segment has an index");
	uint64_t ids[64];
	size_t n = store_segment_ids(s, ids, 64);
	for (size_t i = 0; i + 1 < n; i++) {
		char p[4200];
		seg_path(p, sizeof(p), ids[i], "tseg");
		/* sealed at the first commit past the limit: never more than one batch past it */
		cr_assert_geq(file_size(p), 8192);
		cr_assert_lt((size_t)file_size(p), 8192 + 4 * seg_record_size(400, true));
	}
	struct t_list got = t_scan_all(s);
	t_assert_same(&model, &got);
	store_close(s);
	s = open_store(&o);
	struct t_list got2 = t_scan_all(s);
	t_assert_same(&model, &got2);
	store_stats(s, &st);
	cr_assert_eq(st.index_rebuilds, 0, "valid indexes are trusted");
	store_close(s);
	t_list_free(&model);
	t_list_free(&got);
	t_list_free(&got2);
}

static uint64_t allocated(const char *path)
{
	struct stat st;
	cr_assert_eq(stat(path, &st), 0, "stat %s", path);
	return (uint64_t)st.st_blocks * 512;
}

/*
 * The active segment's blocks are reserved up to segment_max_bytes without changing its size
 * (what recovery and readers go by); the reserve past the last record is released when the
 * segment is sealed and when the store closes, and taken again when it reopens.
 */
Test(store, active_segment_preallocated_and_released)
{
	struct store_options o;
	struct t_list model = {0};
	uint32_t node = 0;
	char p1[4200], p2[4200];
	t_options(&o, dir);
	o.segment_max_bytes = 4u << 20;
	struct store *s = open_store(&o);
	cr_assert_eq(store_node_intern(s, "n", &node), 0);
	seg_path(p1, sizeof(p1), 1, "tseg");
	cr_assert_eq(t_append(s, &model, 1, 1, 1, 4, &node, 1, T_BASE_NS), 0);
	cr_assert_eq(store_commit(s), 0);
	struct store_stats st = {0};
	store_stats(s, &st);
	off_t size = (off_t)st.bytes; /* a direct write's last block is padded until closed */
	cr_assert_lt(size, 8192);
	cr_assert_geq(file_size(p1), size);
	cr_assert_geq(allocated(p1), 4u << 20, "the segment's blocks are reserved");
	cr_assert_eq(store_close(s), 0);
	cr_assert_eq(file_size(p1), size, "closing keeps every record, and only them");
	cr_assert_lt(allocated(p1), (uint64_t)size + 65536, "closing releases the reserve");

	s = open_store(&o);
	cr_assert_geq(allocated(p1), 4u << 20, "reopened: the active segment is reserved again");
	t_assert_holds(s, &model);
	/* fill it past the limit: sealed at the next commit, its reserve released */
	st.rotations = 0;
	for (uint64_t seq = 2; st.rotations == 0 && seq < 100000; seq++) {
		cr_assert_eq(t_append(s, &model, 1, 1, seq, 64, &node, 1, T_BASE_NS + seq), 0);
		cr_assert_eq(store_commit(s), 0);
		store_stats(s, &st);
	}
	cr_assert_eq(st.rotations, 1);
	cr_assert_geq(file_size(p1), 4 << 20);
	cr_assert_lt(allocated(p1), (uint64_t)file_size(p1) + 65536, "sealed: reserve released");
	seg_path(p2, sizeof(p2), 2, "tseg");
	cr_assert_geq(allocated(p2), 4u << 20, "the next segment is reserved");
	t_assert_holds(s, &model);
	store_close(s);
	t_list_free(&model);
}

/* Pages of path in [from, to) that are in the page cache, out of those in the range. */
static size_t resident_pages(const char *path, off_t from, off_t to, size_t *pages)
{
	long pg = sysconf(_SC_PAGESIZE);
	int fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0, "open %s", path);
	from = from / pg * pg;
	size_t len = (size_t)(to - from), n = (len + (size_t)pg - 1) / (size_t)pg, in = 0;
	void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, from);
	cr_assert_neq(m, MAP_FAILED);
	unsigned char *vec = malloc(n);
	cr_assert_eq(mincore(m, len, vec), 0);
	for (size_t i = 0; i < n; i++)
		in += vec[i] & 1;
	free(vec);
	munmap(m, len);
	close(fd);
	*pages = n;
	return in;
}

/*
 * With a sync policy, durable pages older than the newest cache_keep_bytes are handed back to
 * the kernel (in steps of 8 MiB), across segments; the newest stay cached; and nothing is lost.
 */
Test(store, page_cache_behind_the_window_is_dropped, .timeout = 120)
{
	struct store_options o;
	struct t_list model = {0};
	uint32_t node = 0;
	char p1[4200], p2[4200], plast[4200];
	t_options(&o, dir);
	o.fsync = STORE_FSYNC_ALWAYS;
	o.segment_max_bytes = 6u << 20;
	o.cache_keep_bytes = 4u << 20;
	o.buffered_writes = true; /* direct writes fill no page cache (the next test) */
	struct store *s = open_store(&o);
	cr_assert_eq(store_node_intern(s, "n", &node), 0);
	struct store_stats st = {0};
	/* six segments of ~6 MiB: the first two lie behind the window and one drop step */
	for (uint64_t seq = 1; st.rotations < 5; seq++) {
		cr_assert_eq(t_append(s, &model, 1, 1, seq, 64, &node, 1, T_BASE_NS + seq), 0);
		cr_assert_eq(store_commit(s), 0);
		store_stats(s, &st);
	}
	seg_path(p1, sizeof(p1), 1, "tseg");
	seg_path(p2, sizeof(p2), 2, "tseg");
	seg_path(plast, sizeof(plast), 6, "tseg");
	size_t n, in = resident_pages(p1, 0, file_size(p1), &n);
	cr_assert_lt(in, n / 10, "segment 1 lies wholly behind the window: %zu of %zu cached", in,
		     n);
	in = resident_pages(p2, 0, file_size(p2), &n);
	cr_assert_lt(in, n / 10, "segment 2 too: %zu of %zu cached", in, n);
	seg_path(plast, sizeof(plast), 5, "tseg");
	off_t end = file_size(plast);
	in = resident_pages(plast, end - (1 << 20), end, &n);
	cr_assert_eq(in, n, "the newest sealed MiB stays cached: %zu of %zu", in, n);
	struct t_list got = t_scan_all(s);
	t_assert_same(&model, &got);
	store_close(s);
	t_list_free(&model);
	t_list_free(&got);
}

/*
 * Direct writes (the default) go around the page cache: a store written through several
 * segments, in commit groups of every size and so at every offset within a block, leaves
 * next to none of its pages cached, pads each write's last block (cut off when sealed), and
 * reads back record for record, before and after reopening.
 */
Test(store, direct_writes_fill_no_page_cache, .timeout = 120)
{
	struct store_options o;
	struct t_list model = {0};
	uint32_t node = 0;
	char p1[4200], pa[4200];
	t_options(&o, dir);
	o.fsync = STORE_FSYNC_ALWAYS;
	o.segment_max_bytes = 2u << 20;
	struct store *s = open_store(&o);
	cr_assert_eq(store_node_intern(s, "n", &node), 0);
	struct store_stats st = {0};
	store_stats(s, &st);
	cr_assert(st.direct_io, "the test directory's file system takes O_DIRECT");
	for (uint64_t seq = 1; st.rotations < 2; seq++) {
		for (uint64_t b = 0; b < seq % 7; b++) /* 0 to 6 batches per group */
			cr_assert_eq(t_append(s, &model, 1, 1, seq * 8 + b, 1 + (seq + b) % 9,
					      &node, 1, T_BASE_NS + seq),
				     0);
		cr_assert_eq(store_commit(s), 0);
		store_stats(s, &st);
		seg_path(pa, sizeof(pa), st.active_segment_id, "tseg");
		off_t size = file_size(pa);
		if (size > 64) { /* written to: padded to whole blocks */
			cr_assert_eq(size % 4096, 0, "the active segment ends on a block: %lld",
				     (long long)size);
		}
	}
	seg_path(p1, sizeof(p1), 1, "tseg");
	cr_assert_neq(file_size(p1) % 4096, 0, "sealed: the padding is cut off");
	struct statfs sf;
	cr_assert_eq(statfs(dir, &sf), 0);
	if (sf.f_type != TMPFS_MAGIC) { /* tmpfs takes O_DIRECT, but its files are page cache */
		size_t n, in = resident_pages(p1, 0, file_size(p1), &n);
		cr_assert_lt(in, n / 10, "direct writes cached %zu of %zu pages", in, n);
	}
	t_assert_holds(s, &model);
	store_close(s);
	s = open_store(&o);
	store_stats(s, &st);
	cr_assert_eq(st.recovery_truncations, 0);
	t_assert_holds(s, &model);
	store_close(s);
	t_list_free(&model);
}

/*
 * A crash leaves the zero padding of the last direct write's block after the last record:
 * recovery cuts it off quietly (it is no torn tail) and every record is there. The crash is
 * the file as it was before store_close trimmed it.
 */
Test(store, crash_padding_after_direct_write_is_not_a_torn_tail)
{
	struct store_options o;
	struct t_list model = {0};
	uint32_t node = 0;
	char p1[4200];
	t_options(&o, dir);
	o.fsync = STORE_FSYNC_ALWAYS;
	struct store *s = open_store(&o);
	cr_assert_eq(store_node_intern(s, "n", &node), 0);
	for (uint64_t seq = 1; seq <= 3; seq++)
		cr_assert_eq(t_append(s, &model, 1, 1, seq, 5, &node, 1, T_BASE_NS), 0);
	cr_assert_eq(store_commit(s), 0);
	struct store_stats st = {0};
	store_stats(s, &st);
	cr_assert(st.direct_io);
	seg_path(p1, sizeof(p1), 1, "tseg");
	off_t size = file_size(p1);
	cr_assert_eq(size % 4096, 0);
	cr_assert_gt(size, (off_t)st.bytes, "a padded last block");
	uint8_t *image = malloc((size_t)size);
	int fd = open(p1, O_RDONLY);
	cr_assert_eq(pread(fd, image, (size_t)size, 0), size);
	close(fd);
	store_close(s);
	fd = open(p1, O_WRONLY | O_TRUNC);
	cr_assert_eq(write(fd, image, (size_t)size), size);
	close(fd);
	free(image);

	s = open_store(&o);
	struct store_stats st2 = {0};
	store_stats(s, &st2);
	cr_assert_eq(st2.recovery_truncations, 0, "padding is not a torn tail");
	cr_assert_eq(st2.bytes, st.bytes);
	cr_assert_eq(file_size(p1), (off_t)st.bytes, "the padding is cut off");
	t_assert_holds(s, &model);
	store_close(s);
	t_list_free(&model);
}

Test(store, rotation_by_age)
{
	struct store_options o;
	uint32_t node = 0;
	t_options(&o, dir);
	o.segment_max_age_s = 10;
	struct store *s = open_store(&o);
	cr_assert_eq(t_append(s, NULL, 1, 1, 1, 2, &node, 1, T_BASE_NS), 0);
	cr_assert_eq(store_commit(s), 0);
	struct store_stats st;
	store_stats(s, &st);
	cr_assert_eq(st.rotations, 0);
	t_fake_now += 9 * T_SEC;
	cr_assert_eq(store_maintain(s), 0);
	store_stats(s, &st);
	cr_assert_eq(st.rotations, 0, "younger than the max age");
	t_fake_now += 2 * T_SEC;
	cr_assert_eq(store_maintain(s), 0);
	store_stats(s, &st);
	cr_assert_eq(st.rotations, 1, "idle store rotates by age via store_maintain");
	cr_assert_eq(st.segments, 2);
	/* an empty active segment is never sealed, however old */
	t_fake_now += 100 * T_SEC;
	cr_assert_eq(store_maintain(s), 0);
	store_stats(s, &st);
	cr_assert_eq(st.rotations, 1);
	cr_assert_eq(t_append(s, NULL, 1, 1, 2, 2, &node, 1, T_BASE_NS), 0);
	cr_assert_eq(store_commit(s), 0);
	store_stats(s, &st);
	cr_assert_eq(st.rotations, 2, "a commit into an old segment seals it");
	store_close(s);
}

Test(store, retention_by_bytes_deletes_oldest)
{
	struct store_options o;
	struct t_list model = {0};
	uint32_t node = 0;
	t_options(&o, dir);
	o.segment_max_bytes = 4096;
	o.retention_bytes = 20000;
	struct store *s = open_store(&o);
	for (uint64_t seq = 1; seq <= 100; seq++) {
		cr_assert_eq(t_append(s, &model, 1, 1, seq, 3, &node, 1, T_BASE_NS), 0);
		cr_assert_eq(store_commit(s), 0);
	}
	struct store_stats st;
	store_stats(s, &st);
	cr_assert_gt(st.deleted_segments, 0);
	cr_assert_leq(st.bytes, 20000 + 4096 + 3 * seg_record_size(400, true));
	uint64_t ids[256];
	size_t n = store_segment_ids(s, ids, 256);
	cr_assert_eq(n, st.segments);
	cr_assert_eq(ids[0], st.deleted_segments + 1, "the oldest segments went first");
	char p[4200];
	seg_path(p, sizeof(p), 1, "tseg");
	cr_assert_neq(access(p, F_OK), 0);
	seg_path(p, sizeof(p), 1, "idx");
	cr_assert_neq(access(p, F_OK), 0);
	/* what is left is exactly the newest suffix of what was appended */
	struct t_list got = t_scan_all(s);
	cr_assert_eq(got.n, st.records);
	struct t_list suffix = {.v = model.v + (model.n - got.n), .n = got.n};
	t_assert_same(&suffix, &got);
	store_close(s);
	t_list_free(&model);
	t_list_free(&got);
}

Test(store, retention_by_age)
{
	struct store_options o;
	uint32_t node = 0;
	t_options(&o, dir);
	o.segment_max_age_s = 60;
	o.retention_age_s = 3600;
	struct store *s = open_store(&o);
	/* old segment: records one day old */
	cr_assert_eq(t_append(s, NULL, 1, 1, 1, 5, &node, 1, T_BASE_NS - 86400 * T_SEC), 0);
	cr_assert_eq(store_commit(s), 0);
	t_fake_now += 61 * T_SEC;
	cr_assert_eq(store_maintain(s), 0); /* seals segment 1 ... */
	struct store_stats st;
	store_stats(s, &st);
	cr_assert_eq(st.rotations, 1);
	cr_assert_eq(st.deleted_segments, 1, "... whose newest record is past retention");
	cr_assert_eq(st.records, 0);
	/* fresh records are kept */
	cr_assert_eq(t_append(s, NULL, 1, 1, 2, 5, &node, 1, t_fake_now), 0);
	cr_assert_eq(store_commit(s), 0);
	t_fake_now += 61 * T_SEC;
	cr_assert_eq(store_maintain(s), 0);
	store_stats(s, &st);
	cr_assert_eq(st.deleted_segments, 1);
	cr_assert_eq(st.records, 5);
	/* until they age out too, also across a reopen */
	store_close(s);
	t_fake_now += 3600 * T_SEC;
	s = open_store(&o);
	store_stats(s, &st);
	cr_assert_eq(st.records, 0);
	cr_assert_eq(st.deleted_segments, 1);
	/* the dedupe watermark of deleted data is gone with it (documented) */
	cr_assert_not(store_batch_seen(s, 1, 1, 2));
	store_close(s);
}

/* Recount every segment from its raw records and compare with the store's index. */
static void check_indexes(struct store *s)
{
	struct t_list all = {0};
	struct store_query q;
	store_query_init(&q);
	cr_assert_geq(store_scan(s, &q, t_collect, &all), 0);
	uint64_t ids[256];
	size_t n = store_segment_ids(s, ids, 256);
	for (size_t i = 0; i < n; i++) {
		struct seg_index idx;
		cr_assert_eq(store_segment_index(s, ids[i], &idx), 0);
		uint64_t by_type[TAPIO_OCC__COUNT] = {0}, by_sev[TAPIO_SEV__COUNT] = {0};
		uint64_t records = 0, min_ts = UINT64_MAX, max_ts = 0, nodes[8] = {0};
		uint64_t max_seq = 0;
		for (size_t k = 0; k < all.n; k++) {
			if (all.v[k].pos.segment_id != ids[i])
				continue;
			const struct store_record_meta *m = &all.v[k].m;
			records++;
			by_type[m->type]++;
			by_sev[m->severity]++;
			nodes[m->node_id]++;
			min_ts = m->timestamp_ns < min_ts ? m->timestamp_ns : min_ts;
			max_ts = m->timestamp_ns > max_ts ? m->timestamp_ns : max_ts;
			max_seq = m->sequence > max_seq ? m->sequence : max_seq;
		}
		cr_assert_eq(idx.records, records, "segment %llu", (unsigned long long)ids[i]);
		if (records) {
			cr_assert_eq(idx.min_ts, min_ts);
			cr_assert_eq(idx.max_ts, max_ts);
			cr_assert_eq(idx.n_sessions, 1);
			cr_assert_eq(idx.sessions[0].max_sequence, max_seq);
		}
		for (unsigned t = 0; t < TAPIO_OCC__COUNT; t++)
			cr_assert_eq(idx.by_type[t], by_type[t]);
		for (unsigned v = 0; v < TAPIO_SEV__COUNT; v++)
			cr_assert_eq(idx.by_severity[v], by_sev[v]);
		for (uint32_t nd = 0; nd < 8; nd++)
			cr_assert_eq(seg_index_node_count(&idx, nd), nodes[nd]);
		uint64_t expect_blocks = (records + idx.sparse_every - 1) / idx.sparse_every;
		cr_assert_eq(idx.n_sparse, expect_blocks);
		/* posting lists: each node's records, ascending, with their type and severity */
		cr_assert(idx.has_postings);
		for (size_t j = 0; j < idx.n_nodes; j++) {
			const struct seg_node_count *nd = &idx.nodes[j];
			uint64_t k = 0;
			for (size_t a = 0; a < all.n; a++) {
				const struct t_rec *rc = &all.v[a];
				if (rc->pos.segment_id != ids[i] || rc->m.node_id != nd->node_id)
					continue;
				cr_assert_lt(k, nd->count);
				cr_assert_eq(nd->post_off[k], rc->pos.offset);
				cr_assert_eq(nd->post_ts[k],
					     seg_post_pack(rc->m.type, rc->m.severity));
				k++;
			}
			cr_assert_eq(k, nd->count);
		}

		/* the sealed index on disk says the same as the one in memory */
		if (i + 1 < n) {
			store_index_files_wait(s); /* written by the sealer thread */
			char name[64];
			uint8_t *img;
			size_t len;
			struct seg_index disk;
			int dfd = open(dir, O_RDONLY | O_DIRECTORY);
			seg_file_name(name, sizeof(name), ids[i], "idx");
			cr_assert_eq(seg_read_file(dfd, name, 1 << 26, &img, &len), 0);
			close(dfd);
			cr_assert_eq(seg_index_decode(img, len, &disk), 0);
			cr_assert_eq(disk.records, idx.records);
			cr_assert_eq(disk.file_size, idx.file_size);
			cr_assert(memcmp(disk.by_type, idx.by_type, sizeof(idx.by_type)) == 0);
			cr_assert_eq(disk.n_nodes, idx.n_nodes);
			cr_assert(disk.has_postings);
			for (size_t j = 0; j < idx.n_nodes; j++) {
				const struct seg_node_count *a = &disk.nodes[j], *b = &idx.nodes[j];
				cr_assert_eq(a->count, b->count);
				cr_assert(memcmp(a->post_off, b->post_off,
						 b->count * sizeof(*b->post_off)) == 0);
				cr_assert(memcmp(a->post_ts, b->post_ts, b->count) == 0);
			}
			cr_assert_eq(disk.n_sparse, idx.n_sparse);
			for (size_t b = 0; b < idx.n_sparse; b++) {
				cr_assert_eq(disk.sparse[b].offset, idx.sparse[b].offset);
				cr_assert_eq(disk.sparse[b].min_ts, idx.sparse[b].min_ts);
			}
			seg_index_fini(&disk);
			free(img);
		}
		seg_index_fini(&idx);
	}
	t_list_free(&all);
}

Test(store, index_equals_recount)
{
	struct store_options o;
	uint32_t nodes[4];
	t_options(&o, dir);
	o.segment_max_bytes = 16384;
	o.sparse_every = 8;
	struct store *s = open_store(&o);
	store_node_intern(s, "a", &nodes[0]);
	store_node_intern(s, "b", &nodes[1]);
	store_node_intern(s, "c", &nodes[2]);
	store_node_intern(s, "d", &nodes[3]);
	for (uint64_t seq = 1; seq <= 80; seq++) {
		cr_assert_eq(t_append(s, NULL, 3, 9, seq, 1 + t_rand() % 7, nodes, 4,
				      T_BASE_NS - 600 * T_SEC + seq * T_SEC),
			     0);
		if (seq % 3 == 0)
			cr_assert_eq(store_commit(s), 0);
	}
	cr_assert_eq(store_commit(s), 0);
	check_indexes(s);
	store_close(s);
	s = open_store(&o);
	check_indexes(s);
	store_close(s);
}

/* ---- scans against a brute-force filter ---- */

static bool brute_match(const struct store_query *q, const struct store_record_meta *m)
{
	uint64_t until = q->until_ns ? q->until_ns : UINT64_MAX;
	return m->timestamp_ns >= q->since_ns && m->timestamp_ns < until &&
	       (!q->type_mask || (q->type_mask >> m->type) & 1) &&
	       (!q->severity_mask || (q->severity_mask >> m->severity) & 1) &&
	       (q->node_id < 0 || m->node_id == (uint32_t)q->node_id);
}

static struct t_list brute(const struct t_list *model, const struct store_query *q)
{
	struct t_list out = {0};
	for (size_t k = 0; k < model->n; k++) {
		size_t i = q->order == STORE_OLDEST_FIRST ? k : model->n - 1 - k;
		if (brute_match(q, &model->v[i].m))
			t_list_push(&out, &model->v[i].m, model->v[i].data, model->v[i].len,
				    model->v[i].pos);
		if (q->limit && out.n == q->limit)
			break;
	}
	return out;
}

static void check_query(struct store *s, const struct t_list *model, struct store_query *q)
{
	/* whole result */
	struct t_list exp = brute(model, q), got = {0};
	long n = store_scan(s, q, t_collect, &got);
	cr_assert_eq(n, (long)got.n);
	t_assert_same(&exp, &got);
	t_list_free(&got);
	t_list_free(&exp);

	/* paginated with a cursor: same records, no gaps, no repeats */
	if (q->limit)
		return;
	struct t_list all = brute(model, q), pages = {0};
	struct store_query pq = *q;
	pq.limit = 7;
	for (int guard = 0; guard < 10000; guard++) {
		struct t_list page = {0};
		long pn = store_scan(s, &pq, t_collect, &page);
		cr_assert_geq(pn, 0);
		cr_assert_leq(pn, 7);
		for (size_t i = 0; i < page.n; i++)
			t_list_push(&pages, &page.v[i].m, page.v[i].data, page.v[i].len,
				    page.v[i].pos);
		if (page.n > 0) {
			pq.has_cursor = true;
			pq.cursor = page.v[page.n - 1].pos;
		}
		size_t pn_sz = page.n;
		t_list_free(&page);
		if (pn_sz < 7)
			break;
	}
	t_assert_same(&all, &pages);
	for (size_t i = 1; i < pages.n; i++) {
		const struct store_pos *a = &pages.v[i - 1].pos, *b = &pages.v[i].pos;
		bool ordered = a->segment_id < b->segment_id ||
			       (a->segment_id == b->segment_id && a->offset < b->offset);
		if (q->order == STORE_NEWEST_FIRST)
			ordered = a->segment_id > b->segment_id ||
				  (a->segment_id == b->segment_id && a->offset > b->offset);
		cr_assert(ordered, "positions strictly ordered at %zu", i);
	}
	t_list_free(&all);
	t_list_free(&pages);
}

Test(store, scan_filters_equal_brute_force, .timeout = 120)
{
	struct store_options o;
	struct t_list model = {0};
	uint32_t nodes[3];
	t_options(&o, dir);
	o.segment_max_bytes = 20000;
	o.sparse_every = 16;
	struct store *s = open_store(&o);
	store_node_intern(s, "a", &nodes[0]);
	store_node_intern(s, "b", &nodes[1]);
	store_node_intern(s, "c", &nodes[2]);
	/* node "c" only appears in the second half: early segments are skipped by index */
	for (uint64_t seq = 1; seq <= 120; seq++) {
		size_t nn = seq > 60 ? 3 : 2;
		cr_assert_eq(t_append(s, &model, 5, 5, seq, 1 + t_rand() % 6, nodes, nn,
				      T_BASE_NS - 7200 * T_SEC + seq * 30 * T_SEC),
			     0);
		if (seq % 4 == 0)
			cr_assert_eq(store_commit(s), 0);
	}
	cr_assert_eq(store_commit(s), 0);
	struct store_stats st;
	store_stats(s, &st);
	cr_assert_gt(st.segments, 3);

	uint64_t t0 = T_BASE_NS - 7200 * T_SEC;
	struct {
		uint64_t since, until;
		uint32_t types, sevs;
		int64_t node;
		size_t limit;
	} cases[] = {
	    {0, 0, 0, 0, -1, 0},
	    {t0 + 600 * T_SEC, t0 + 1800 * T_SEC, 0, 0, -1, 0},
	    {t0 + 3000 * T_SEC, 0, 0, 0, -1, 0},
	    {0, t0 + 100 * T_SEC, 0, 0, -1, 0},
	    {0, 0, 1u << TAPIO_OCC_OOM_KILL, 0, -1, 0},
	    {0, 0, (1u << 0) | (1u << 5) | (1u << 10), 0, -1, 0},
	    {0, 0, 0, 1u << TAPIO_SEV_CRITICAL, -1, 0},
	    {0, 0, 0, 0, 2, 0},
	    {0, 0, 0, 0, 7, 0},
	    {t0 + 900 * T_SEC, t0 + 2700 * T_SEC, 0x3f, 0x6, 1, 0},
	    {0, 0, 0, 0, -1, 13},
	    {t0 + 300 * T_SEC, 0, 1u << 3, 0, -1, 5},
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		for (int dir_i = 0; dir_i < 2; dir_i++) {
			struct store_query q;
			store_query_init(&q);
			q.since_ns = cases[c].since;
			q.until_ns = cases[c].until;
			q.type_mask = cases[c].types;
			q.severity_mask = cases[c].sevs;
			q.node_id = cases[c].node;
			q.limit = cases[c].limit;
			q.order = dir_i ? STORE_NEWEST_FIRST : STORE_OLDEST_FIRST;
			check_query(s, &model, &q);
		}
	}
	/* the indexes did their job: whole segments and sparse blocks were skipped */
	store_stats(s, &st);
	cr_assert_gt(st.scan_segments_skipped, 0, "node/time filters skip segments");
	cr_assert_gt(st.scan_blocks_skipped, 0, "time filters skip sparse blocks");
	/* meta-only scans deliver the same metadata without payloads */
	struct store_query q;
	store_query_init(&q);
	q.meta_only = true;
	struct t_list metas = {0};
	cr_assert_eq(store_scan(s, &q, t_collect, &metas), (long)model.n);
	for (size_t i = 0; i < model.n; i++) {
		cr_assert_eq(metas.v[i].len, 0);
		cr_assert_eq(metas.v[i].m.timestamp_ns, model.v[i].m.timestamp_ns);
	}
	t_list_free(&metas);
	store_close(s);
	t_list_free(&model);
}

/* ---- node posting lists and the work bound ---- */

static void build_nodes_store(struct store *s, struct t_list *model, const uint32_t *nodes,
			      size_t n_nodes, uint64_t batches, uint64_t t0)
{
	for (uint64_t seq = 1; seq <= batches; seq++) {
		cr_assert_eq(t_append(s, model, 5, 5, seq, 1 + t_rand() % 6, nodes, n_nodes,
				      t0 + seq * 30 * T_SEC),
			     0);
		if (seq % 4 == 0)
			cr_assert_eq(store_commit(s), 0);
	}
	cr_assert_eq(store_commit(s), 0);
}

static void check_node_cases(struct store *s, const struct t_list *model, uint64_t t0)
{
	struct {
		uint64_t since, until;
		uint32_t types, sevs;
		size_t limit;
	} cases[] = {
	    {0, 0, 0, 0, 0},
	    {0, 0, 1u << TAPIO_OCC_OOM_KILL, 0, 0},
	    {0, 0, (1u << 1) | (1u << 4) | (1u << 9), 0, 0},
	    {0, 0, 0, 1u << TAPIO_SEV_CRITICAL, 0},
	    {t0 + 900 * T_SEC, t0 + 3000 * T_SEC, 0, 0, 0},
	    {t0 + 1200 * T_SEC, 0, 0x7f, 0x1c, 0},
	    {0, t0 + 2000 * T_SEC, 0x3f0, 0x3, 0},
	    {0, 0, 0, 0, 5},
	    {t0 + 1500 * T_SEC, 0, 1u << 2, 0, 3},
	};
	for (int64_t node = 0; node < 7; node++) /* nodes 0..4 exist, 5 and 6 do not */
		for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++)
			for (int d = 0; d < 2; d++) {
				struct store_query q;
				store_query_init(&q);
				q.since_ns = cases[c].since;
				q.until_ns = cases[c].until;
				q.type_mask = cases[c].types;
				q.severity_mask = cases[c].sevs;
				q.limit = cases[c].limit;
				q.node_id = node;
				q.order = d ? STORE_NEWEST_FIRST : STORE_OLDEST_FIRST;
				check_query(s, model, &q);
			}
}

Test(store, node_postings_scan_equals_brute_force, .timeout = 120)
{
	struct store_options o;
	struct t_list model = {0};
	uint32_t nodes[5];
	uint64_t t0 = T_BASE_NS - 7200 * T_SEC;
	struct store *s = open_five_nodes(&o, nodes);
	build_nodes_store(s, &model, nodes, 5, 200, t0);
	struct store_stats st;
	store_stats(s, &st);
	cr_assert_gt(st.segments, 3, "sealed segments and an active one");
	check_indexes(s);
	check_node_cases(s, &model, t0);
	store_stats(s, &st);
	cr_assert_gt(st.scan_postings_checked, 0, "node filters walk the posting lists");

	/* after reopen: sealed postings come from the .idx files, the active one's by scan */
	store_close(s);
	s = open_store(&o);
	store_stats(s, &st);
	cr_assert_eq(st.index_rebuilds, 0);
	check_indexes(s);
	check_node_cases(s, &model, t0);
	/* the active segment keeps its postings up to date as records are appended */
	build_nodes_store(s, &model, nodes, 5, 12, t0 + 7000 * T_SEC);
	check_indexes(s);
	check_node_cases(s, &model, t0);
	store_close(s);
	t_list_free(&model);
}

Test(store, node_filter_reads_only_matching_records, .timeout = 120)
{
	struct store_options o;
	uint32_t nodes[20];
	t_options(&o, dir);
	struct store *s = open_store(&o);
	for (int i = 0; i < 20; i++) {
		char nm[8];
		snprintf(nm, sizeof(nm), "n%d", i);
		store_node_intern(s, nm, &nodes[i]);
	}
	struct t_list model = {0};
	for (uint64_t seq = 1; seq <= 1000; seq++) {
		cr_assert_eq(t_append(s, &model, 1, 1, seq, 32, nodes, 20, T_BASE_NS + seq), 0);
		if (seq % 50 == 0)
			cr_assert_eq(store_commit(s), 0);
	}
	uint64_t total = model.n, node3_type2 = 0;
	for (size_t i = 0; i < model.n; i++)
		node3_type2 += model.v[i].m.node_id == 3 && model.v[i].m.type == 2;

	struct store_stats a, b;
	struct store_query q;
	struct t_list got = {0};
	store_query_init(&q);
	q.order = STORE_NEWEST_FIRST;
	q.limit = 10;
	q.type_mask = 1u << 2;
	store_stats(s, &a);
	cr_assert_eq(store_scan(s, &q, t_collect, &got), 10);
	store_stats(s, &b);
	uint64_t without = b.scan_records_read - a.scan_records_read;
	t_list_free(&got);

	q.node_id = 3;
	store_stats(s, &a);
	cr_assert_eq(store_scan(s, &q, t_collect, &got), 10);
	store_stats(s, &b);
	uint64_t with = b.scan_records_read - a.scan_records_read;
	t_list_free(&got);
	cr_assert_eq(with, 10, "a first page reads `limit` records, read %llu",
		     (unsigned long long)with);
	cr_assert_geq(without, 10 * with, "node filter: %llu vs %llu records read",
		      (unsigned long long)with, (unsigned long long)without);

	/* a whole node-filtered scan reads exactly the node's matching records */
	q.limit = 0;
	store_stats(s, &a);
	cr_assert_eq(store_scan(s, &q, t_collect, &got), (long)node3_type2);
	store_stats(s, &b);
	cr_assert_eq(b.scan_records_read - a.scan_records_read, node3_type2);
	cr_assert_lt(b.scan_postings_checked - a.scan_postings_checked, total / 10);
	t_list_free(&got);
	store_close(s);
	t_list_free(&model);
}

/* Pages of `limit` under a work bound, resuming like the API: union == brute force. */
static void check_bounded(struct store *s, const struct t_list *model, struct store_query q,
			  uint64_t bound, uint32_t sparse_every)
{
	struct t_list exp = brute(model, &q), all = {0};
	bool truncated_once = false;
	q.max_examined = bound;
	q.limit = 7;
	for (int guard = 0; guard < 100000; guard++) {
		struct t_list page = {0};
		struct store_scan_info info;
		long n = store_scan_bounded(s, &q, t_collect, &page, &info);
		cr_assert_geq(n, 0);
		cr_assert_leq(info.examined,
			      bound + (q.order == STORE_NEWEST_FIRST ? sparse_every : 0),
			      "examined %llu", (unsigned long long)info.examined);
		for (size_t i = 0; i < page.n; i++)
			t_list_push(&all, &page.v[i].m, page.v[i].data, page.v[i].len,
				    page.v[i].pos);
		truncated_once |= info.truncated;
		q.has_cursor = true;
		if (page.n == 7)
			q.cursor = page.v[6].pos;
		else if (info.truncated)
			q.cursor = info.resume;
		else
			guard = 100000;
		t_list_free(&page);
	}
	t_assert_same(&exp, &all);
	cr_assert(truncated_once, "the bound was reached at least once");
	t_list_free(&exp);
	t_list_free(&all);
}

Test(store, scan_work_bound_resumes_without_gaps, .timeout = 120)
{
	struct store_options o;
	struct t_list model = {0};
	uint32_t nodes[5];
	uint64_t t0 = T_BASE_NS - 7200 * T_SEC;
	struct store *s = open_five_nodes(&o, nodes);
	build_nodes_store(s, &model, nodes, 5, 200, t0);
	for (int d = 0; d < 2; d++) {
		struct store_query q;
		store_query_init(&q);
		q.order = d ? STORE_NEWEST_FIRST : STORE_OLDEST_FIRST;
		q.type_mask = 1u << TAPIO_OCC_OOM_KILL;
		check_bounded(s, &model, q, 25, o.sparse_every);
		q.node_id = 2;
		check_bounded(s, &model, q, 3, o.sparse_every);
		q.type_mask = 0;
		q.since_ns = t0 + 1000 * T_SEC;
		check_bounded(s, &model, q, 5, o.sparse_every);
	}
	struct store_stats st;
	store_stats(s, &st);
	cr_assert_gt(st.scan_truncated, 0);
	store_close(s);
	t_list_free(&model);
}

Test(store, old_index_version_is_rebuilt)
{
	struct store_options o;
	struct t_list model = {0};
	uint32_t nodes[3] = {0, 1, 2};
	t_options(&o, dir);
	o.segment_max_bytes = 8192;
	struct store *s = open_store(&o);
	build_nodes_store(s, &model, nodes, 3, 40, T_BASE_NS);
	store_close(s);
	/* turn segment 1's index into a well-formed version-1 image (no postings flag) */
	char p[4200];
	seg_path(p, sizeof(p), 1, "idx");
	int fd = open(p, O_RDWR);
	off_t len = file_size(p);
	uint8_t *img = malloc((size_t)len);
	cr_assert_eq(pread(fd, img, (size_t)len, 0), len);
	seg_put_u32(img + 8, 1);
	seg_put_u32(img + 12, 0);
	seg_put_u32(img + len - 4, seg_crc32(img, (size_t)len - 4));
	cr_assert_eq(pwrite(fd, img, (size_t)len, 0), len);
	close(fd);
	free(img);
	s = open_store(&o);
	struct store_stats st;
	store_stats(s, &st);
	cr_assert_eq(st.index_rebuilds, 1, "an old index version is rebuilt by scanning");
	check_indexes(s);
	check_node_cases(s, &model, T_BASE_NS);
	store_close(s);
	t_list_free(&model);
}

/* One record in segment format 1 (the 40-byte meta with the identity); returns its size. */
static size_t v1_record(uint8_t *out, const struct t_rec *r, uint8_t flags)
{
	uint8_t *meta = out + SEG_REC_PREFIX;
	seg_put_u32(out, (uint32_t)(SEG_META_SIZE_V1 + r->len));
	seg_put_u64(meta, r->m.timestamp_ns);
	meta[8] = r->m.type;
	meta[9] = r->m.severity;
	meta[10] = flags;
	meta[11] = 0;
	seg_put_u32(meta + 12, r->m.node_id);
	seg_put_u64(meta + 16, r->m.agent_key);
	seg_put_u64(meta + 24, r->m.session_id);
	seg_put_u64(meta + 32, r->m.sequence);
	memcpy(meta + SEG_META_SIZE_V1, r->data, r->len);
	seg_put_u32(out + 4, seg_crc32(meta, SEG_META_SIZE_V1 + r->len));
	return SEG_REC_PREFIX + SEG_META_SIZE_V1 + r->len;
}

/*
 * A data directory written by an earlier version (format-1 active segment): every record is
 * read back with its identity, the dedupe watermarks come from it, the old segment is sealed
 * and new records go to a new format-2 segment.
 */
Test(store, format_1_segment_is_read_and_sealed)
{
	struct store_options o;
	struct t_list model = {0};
	uint32_t nodes[3] = {0, 1, 2};
	t_options(&o, dir);
	struct store *s = open_store(&o);
	for (uint64_t seq = 1; seq <= 6; seq++)
		cr_assert_eq(t_append(s, &model, 4, 2, seq, 1 + seq % 4, nodes, 3, T_BASE_NS), 0);
	cr_assert_eq(store_commit(s), 0);
	store_close(s);
	/* rewrite segment 1 in format 1, record for record */
	char p[4200];
	seg_path(p, sizeof(p), 1, "tseg");
	uint8_t *img =
	    malloc(SEG_HEADER_SIZE + model.n * (SEG_REC_PREFIX + SEG_META_SIZE_V1 + 400));
	int fd = open(p, O_RDWR);
	cr_assert_eq(pread(fd, img, SEG_HEADER_SIZE, 0), SEG_HEADER_SIZE);
	seg_put_u32(img + 8, 1);
	seg_put_u32(img + 60, seg_crc32(img, 60));
	size_t off = SEG_HEADER_SIZE;
	for (size_t i = 0; i < model.n; i++) {
		bool end = i + 1 == model.n || model.v[i + 1].m.sequence != model.v[i].m.sequence;
		off += v1_record(img + off, &model.v[i], end ? SEG_FLAG_BATCH_END : 0);
	}
	cr_assert_eq(ftruncate(fd, 0), 0);
	cr_assert_eq(pwrite(fd, img, off, 0), (ssize_t)off);
	close(fd);
	free(img);

	s = open_store(&o);
	struct t_list got = t_scan_all(s);
	t_assert_same(&model, &got);
	t_list_free(&got);
	cr_assert(store_batch_seen(s, 4, 2, 6), "watermark from the format-1 records");
	cr_assert_not(store_batch_seen(s, 4, 2, 7));
	seg_path(p, sizeof(p), 1, "idx");
	cr_assert_eq(access(p, F_OK), 0, "the format-1 segment is sealed");
	cr_assert_eq(file_size(p) > 0, true);
	uint64_t ids[4];
	cr_assert_eq(store_segment_ids(s, ids, 4), 2);
	cr_assert_eq(ids[1], 2, "new records go to a new segment");
	for (uint64_t seq = 7; seq <= 9; seq++)
		cr_assert_eq(t_append(s, &model, 4, 2, seq, 3, nodes, 3, T_BASE_NS), 0);
	cr_assert_eq(store_commit(s), 0);
	store_close(s);
	uint8_t hdr[SEG_HEADER_SIZE];
	uint64_t id, created;
	uint32_t version;
	seg_path(p, sizeof(p), 2, "tseg");
	fd = open(p, O_RDONLY);
	cr_assert_eq(pread(fd, hdr, sizeof(hdr), 0), (ssize_t)sizeof(hdr));
	close(fd);
	cr_assert_eq(seg_header_decode(hdr, &id, &created, &version), 0);
	cr_assert_eq(version, SEG_VERSION);

	s = open_store(&o);
	got = t_scan_all(s);
	t_assert_same(&model, &got);
	check_indexes(s);
	store_close(s);
	t_list_free(&got);
	t_list_free(&model);
}

/*
 * One append whose records name three identities (two sessions, two sequences): each run
 * carries its own identity, every record reads back with its own, after a reopen too (the
 * recovery scan follows the links), and each run raises its own watermark.
 */
Test(store, batch_of_several_identities_round_trips)
{
	struct store_options o;
	struct t_list model = {0}, got;
	struct store_record_meta meta[7];
	const void *rec[7];
	size_t len[7];
	char payload[7][16];
	const uint64_t sess[7] = {1, 1, 1, 2, 2, 1, 1}, seq[7] = {5, 5, 6, 9, 9, 7, 7};

	t_options(&o, dir);
	struct store *s = open_store(&o);
	for (size_t i = 0; i < 7; i++) {
		meta[i] = (struct store_record_meta){.timestamp_ns = T_BASE_NS + i,
						     .type = (uint8_t)i,
						     .severity = 1,
						     .agent_key = 3,
						     .session_id = sess[i],
						     .sequence = seq[i]};
		len[i] = (size_t)snprintf(payload[i], sizeof(payload[i]), "rec-%zu", i);
		rec[i] = payload[i];
		t_list_push(&model, &meta[i], rec[i], len[i], (struct store_pos){0, 0});
	}
	cr_assert_eq(store_append_batch(s, meta, rec, len, 7), 0);
	cr_assert_eq(store_commit(s), 0);
	got = t_scan_all(s);
	t_assert_same(&model, &got);
	t_list_free(&got);
	store_close(s);

	s = open_store(&o); /* the active segment is scanned and its links checked */
	struct store_stats st;
	store_stats(s, &st);
	cr_assert_eq(st.recovery_truncations, 0);
	got = t_scan_all(s);
	t_assert_same(&model, &got);
	cr_assert(store_batch_seen(s, 3, 1, 7));
	cr_assert_not(store_batch_seen(s, 3, 1, 8));
	cr_assert(store_batch_seen(s, 3, 2, 9));
	cr_assert_not(store_batch_seen(s, 3, 2, 10));
	store_close(s);
	t_list_free(&got);
	t_list_free(&model);
}

static struct store *cb_store;

static int stop_after_three(void *ctx, const struct store_record_meta *m, const void *data,
			    size_t len, struct store_pos pos)
{
	(void)m;
	(void)data;
	(void)len;
	(void)pos;
	struct store_stats st;
	store_stats(cb_store, &st); /* allowed from a scan callback */
	cr_assert_eq(st.records, 10);
	return ++*(int *)ctx == 3;
}

Test(store, scan_callback_stops)
{
	struct store_options o;
	uint32_t node = 0;
	t_options(&o, dir);
	struct store *s = open_store(&o);
	cr_assert_eq(t_append(s, NULL, 1, 1, 1, 10, &node, 1, T_BASE_NS), 0);
	cr_assert_eq(store_commit(s), 0);
	struct store_query q;
	store_query_init(&q);
	int calls = 0;
	cb_store = s;
	cr_assert_eq(store_scan(s, &q, stop_after_three, &calls), 3);
	cr_assert_eq(calls, 3);
	store_close(s);
}

/* ---- recovery ---- */

/* Builds a store with `batches` single-record batches (seq 1..batches), committed, closed. */
static struct t_list build_committed(size_t batches)
{
	struct store_options o;
	struct t_list model = {0};
	uint32_t node = 0;
	t_options(&o, dir);
	struct store *s = open_store(&o);
	for (uint64_t seq = 1; seq <= batches; seq++) {
		cr_assert_eq(t_append(s, &model, 1, 1, seq, 1, &node, 1, T_BASE_NS), 0);
		cr_assert_eq(store_commit(s), 0);
	}
	cr_assert_eq(store_close(s), 0);
	return model;
}

static void check_recovered_seq(struct t_list *model, size_t keep, uint64_t last_seq,
				uint64_t cut_bytes)
{
	struct store_options o;
	t_options(&o, dir);
	struct store *s = open_store(&o);
	struct store_stats st;
	store_stats(s, &st);
	cr_assert_eq(st.recovery_truncations, 1, "the tail cut is reported");
	if (cut_bytes)
		cr_assert_eq(st.recovery_truncated_bytes, cut_bytes);
	struct t_list got = t_scan_all(s);
	struct t_list prefix = {.v = model->v, .n = keep};
	t_assert_same(&prefix, &got);
	cr_assert(store_batch_seen(s, 1, 1, last_seq));
	cr_assert_not(store_batch_seen(s, 1, 1, last_seq + 1));
	/* the store keeps working after recovery, and the next open finds nothing to cut */
	uint32_t node = 0;
	cr_assert_eq(t_append(s, NULL, 1, 1, last_seq + 1, 1, &node, 1, T_BASE_NS), 0);
	cr_assert_eq(store_commit(s), 0);
	store_close(s);
	s = open_store(&o);
	store_stats(s, &st);
	cr_assert_eq(st.recovery_truncations, 0);
	cr_assert_eq(st.records, keep + 1);
	store_close(s);
	t_list_free(&got);
}

static void check_recovered(struct t_list *model, size_t keep, uint64_t cut_bytes)
{
	check_recovered_seq(model, keep, keep, cut_bytes);
}

Test(store, recovery_flipped_byte_in_last_record)
{
	struct t_list model = build_committed(10);
	char p[4200];
	seg_path(p, sizeof(p), 1, "tseg");
	off_t size = file_size(p);
	size_t last = seg_record_size(model.v[9].len, true); /* a batch of one */
	int fd = open(p, O_RDWR);
	uint8_t b;
	off_t at = size - 2; /* inside the last record's payload */
	cr_assert_eq(pread(fd, &b, 1, at), 1);
	b ^= 0x40;
	cr_assert_eq(pwrite(fd, &b, 1, at), 1);
	close(fd);
	check_recovered(&model, 9, last);
	t_list_free(&model);
}

Test(store, recovery_truncated_mid_record)
{
	struct t_list model = build_committed(10);
	char p[4200];
	seg_path(p, sizeof(p), 1, "tseg");
	off_t size = file_size(p);
	size_t last = seg_record_size(model.v[9].len, true); /* a batch of one */
	cr_assert_eq(truncate(p, size - (off_t)last / 2), 0);
	check_recovered(&model, 9, last - last / 2);
	t_list_free(&model);
}

Test(store, recovery_garbage_appended)
{
	struct t_list model = build_committed(10);
	char p[4200];
	seg_path(p, sizeof(p), 1, "tseg");
	int fd = open(p, O_WRONLY | O_APPEND);
	uint8_t junk[333];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 37 + 1);
	cr_assert_eq(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	close(fd);
	check_recovered(&model, 10, sizeof(junk));
	t_list_free(&model);
}

Test(store, recovery_drops_half_written_batch_whole)
{
	struct store_options o;
	struct t_list model = {0};
	uint32_t node = 0;
	t_options(&o, dir);
	struct store *s = open_store(&o);
	cr_assert_eq(t_append(s, &model, 1, 1, 1, 3, &node, 1, T_BASE_NS), 0);
	cr_assert_eq(t_append(s, &model, 1, 1, 2, 4, &node, 1, T_BASE_NS), 0);
	cr_assert_eq(store_commit(s), 0);
	store_close(s);
	/* cut inside the last record of batch 2: its first three records are intact */
	char p[4200];
	seg_path(p, sizeof(p), 1, "tseg");
	off_t size = file_size(p);
	cr_assert_eq(truncate(p, size - 5), 0);
	uint64_t batch2 = 0;
	for (size_t i = 3; i < 7; i++)
		batch2 +=
		    seg_record_size(model.v[i].len, i == 3); /* its first carries the identity */
	check_recovered_seq(&model, 3, 1, batch2 - 5);
	t_list_free(&model);
}

Test(store, corrupt_index_is_rebuilt)
{
	struct store_options o;
	struct t_list model = {0};
	uint32_t node = 0;
	t_options(&o, dir);
	o.segment_max_bytes = 4096;
	struct store *s = open_store(&o);
	for (uint64_t seq = 1; seq <= 30; seq++) {
		cr_assert_eq(t_append(s, &model, 1, 1, seq, 2, &node, 1, T_BASE_NS + seq), 0);
		cr_assert_eq(store_commit(s), 0);
	}
	store_close(s);
	char p[4200];
	seg_path(p, sizeof(p), 1, "idx");
	int fd = open(p, O_RDWR);
	uint8_t b = 0x5a;
	cr_assert_eq(pwrite(fd, &b, 1, 50), 1);
	close(fd);
	seg_path(p, sizeof(p), 2, "idx");
	cr_assert_eq(unlink(p), 0);
	s = open_store(&o);
	struct store_stats st;
	store_stats(s, &st);
	cr_assert_eq(st.index_rebuilds, 2, "corrupt and missing indexes are rebuilt");
	cr_assert_eq(st.recovery_truncations, 0);
	cr_assert(access(p, F_OK) == 0, "the missing index was rewritten");
	struct t_list got = t_scan_all(s);
	t_assert_same(&model, &got);
	check_indexes(s);
	store_close(s);
	s = open_store(&o);
	store_stats(s, &st);
	cr_assert_eq(st.index_rebuilds, 0);
	store_close(s);
	t_list_free(&got);
	t_list_free(&model);
}

Test(store, dedupe_across_reopen)
{
	struct store_options o;
	uint32_t node = 0;
	t_options(&o, dir);
	o.segment_max_bytes = 2048;
	struct store *s = open_store(&o);
	for (uint64_t seq = 1; seq <= 12; seq++) {
		cr_assert_eq(t_append(s, NULL, 42, 7, seq, 2, &node, 1, T_BASE_NS), 0);
		cr_assert_eq(store_commit(s), 0);
	}
	cr_assert_eq(t_append(s, NULL, 42, 8, 1, 1, &node, 1, T_BASE_NS), 0);
	cr_assert_eq(store_commit(s), 0);
	/* appended, not committed */
	cr_assert_eq(t_append(s, NULL, 42, 7, 13, 2, &node, 1, T_BASE_NS), 0);
	cr_assert(store_batch_seen(s, 42, 7, 13), "appended batches are already seen");
	uint64_t seq = 0;
	cr_assert(store_session_durable(s, 42, 7, &seq));
	cr_assert_eq(seq, 12);
	store_close(s);

	s = open_store(&o);
	for (uint64_t q = 1; q <= 12; q++)
		cr_assert(store_batch_seen(s, 42, 7, q), "committed seq %llu",
			  (unsigned long long)q);
	cr_assert_not(store_batch_seen(s, 42, 7, 13), "uncommitted batch was lost, not seen");
	cr_assert(store_batch_seen(s, 42, 8, 1));
	cr_assert_not(store_batch_seen(s, 42, 8, 2));
	cr_assert_not(store_batch_seen(s, 43, 7, 1), "other agent");
	cr_assert(store_session_durable(s, 42, 7, &seq));
	cr_assert_eq(seq, 12);
	store_close(s);
}

/* ---- crash: SIGKILL a committing child at a random moment ---- */

Test(store, crash_keeps_every_committed_batch_once, .timeout = 120)
{
	int pipefd[2];
	cr_assert_eq(pipe(pipefd), 0);
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	srand((unsigned)ts.tv_nsec);
	uint64_t committed_max = 0;

	for (int round = 0; round < 3; round++) {
		pid_t pid = fork();
		cr_assert_geq(pid, 0);
		if (pid == 0) {
			close(pipefd[0]);
			struct store_options o;
			t_options(&o, dir);
			o.fsync = STORE_FSYNC_ALWAYS;
			o.segment_max_bytes = 65536; /* rotations happen during the run too */
			struct store *s;
			if (store_open(&o, &s))
				_exit(2);
			uint32_t node;
			store_node_intern(s, "crash-node", &node);
			uint64_t seq = committed_max;
			for (;;) {
				seq++;
				if (t_append(s, NULL, 9, 9, seq, 1 + seq % 5, &node, 1, T_BASE_NS))
					_exit(3);
				if (store_commit(s))
					_exit(4);
				if (write(pipefd[1], &seq, sizeof(seq)) != sizeof(seq))
					_exit(5);
			}
		}
		usleep(50000 + (useconds_t)(rand() % 250000));
		kill(pid, SIGKILL);
		int status;
		waitpid(pid, &status, 0);
		cr_assert(WIFSIGNALED(status), "child exited by itself: %d", WEXITSTATUS(status));
		/* drain what the child reported as committed */
		int fl = fcntl(pipefd[0], F_GETFL);
		fcntl(pipefd[0], F_SETFL, fl | O_NONBLOCK);
		uint64_t v;
		while (read(pipefd[0], &v, sizeof(v)) == sizeof(v))
			committed_max = v;
		cr_assert_gt(committed_max, 0, "child committed nothing before the kill");

		struct store_options o;
		t_options(&o, dir);
		o.fsync = STORE_FSYNC_ALWAYS;
		o.segment_max_bytes = 65536;
		struct store *s = open_store(&o);
		struct t_list got = t_scan_all(s);
		/* count records per sequence: each committed batch present exactly once, whole */
		uint64_t max_seen = 0;
		size_t *counts = calloc(committed_max + 2, sizeof(*counts));
		for (size_t i = 0; i < got.n; i++) {
			uint64_t q = got.v[i].m.sequence;
			if (q > max_seen)
				max_seen = q;
			if (q <= committed_max)
				counts[q]++;
		}
		for (uint64_t q = 1; q <= committed_max; q++)
			cr_assert_eq(counts[q], 1 + q % 5, "round %d seq %llu: %zu records", round,
				     (unsigned long long)q, counts[q]);
		/* at most the one batch in flight at the kill may also be there (not acked) */
		cr_assert_leq(max_seen, committed_max + 1);
		committed_max = max_seen;
		cr_assert(store_batch_seen(s, 9, 9, committed_max));
		free(counts);
		t_list_free(&got);
		store_close(s);
	}
	close(pipefd[0]);
	close(pipefd[1]);
}

/* ---- async commit on a real loop ---- */

struct async_ctx {
	struct store *s;
	uv_loop_t *loop;
	int calls;
	uint64_t tickets[8];
	int status[8];
	uint64_t appended_during;
	uint32_t node;
};

static void on_committed(struct store *s, int status, uint64_t durable, void *ctx)
{
	struct async_ctx *a = ctx;
	cr_assert_eq(s, a->s);
	a->status[a->calls] = status;
	a->tickets[a->calls] = durable;
	a->calls++;
	cr_assert_eq(store_durable_ticket(s), durable);
}

Test(store, commit_async_on_uv_loop)
{
	struct store_options o;
	struct t_list model = {0};
	uv_loop_t loop;
	t_options(&o, dir);
	o.fsync = STORE_FSYNC_ALWAYS;
	o.segment_max_bytes = 4096; /* rotation inside the worker too */
	struct store *s = open_store(&o);
	struct async_ctx a = {.s = s, .loop = &loop};
	cr_assert_eq(uv_loop_init(&loop), 0);
	store_node_intern(s, "async", &a.node);

	cr_assert_eq(t_append(s, &model, 1, 1, 1, 3, &a.node, 1, T_BASE_NS), 0);
	cr_assert_eq(t_append(s, &model, 1, 1, 2, 3, &a.node, 1, T_BASE_NS), 0);
	cr_assert_eq(store_commit_async(s, &loop, on_committed, &a), 0);
	cr_assert(store_commit_busy(s));
	cr_assert_eq(a.calls, 0, "the callback never runs inside the call");
	cr_assert_eq(store_commit(s), -EBUSY);
	cr_assert_eq(store_close(s), -EBUSY);
	/* appended while the first group is in flight: goes to the next group */
	cr_assert_eq(t_append(s, &model, 1, 1, 3, 3, &a.node, 1, T_BASE_NS), 0);
	cr_assert_eq(store_commit_async(s, &loop, on_committed, &a), 0);
	cr_assert_eq(t_append(s, &model, 1, 1, 4, 3, &a.node, 1, T_BASE_NS), 0);
	cr_assert_eq(store_commit_async(s, &loop, on_committed, &a), 0);
	cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	cr_assert_eq(a.calls, 3);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(a.status[i], 0);
	cr_assert_eq(a.tickets[0], 2, "first group: the two batches appended before it");
	cr_assert_eq(a.tickets[1], 4, "queued requests share the next group");
	cr_assert_eq(a.tickets[2], 4);
	cr_assert_not(store_commit_busy(s));
	struct store_stats st;
	store_stats(s, &st); /* does not index: the completion of the last commit did */
	cr_assert_eq(st.records, model.n, "no next commit: the last group indexed at completion");
	struct t_list got = t_scan_all(s);
	t_assert_same(&model, &got);
	store_stats(s, &st);
	cr_assert_eq(st.commits, 2, "two groups, not three commits");
	cr_assert_eq(st.fsyncs, 2);
	cr_assert_eq(store_close(s), 0);
	cr_assert_eq(uv_loop_close(&loop), 0);

	s = open_store(&o);
	struct t_list got2 = t_scan_all(s);
	t_assert_same(&model, &got2);
	store_close(s);
	t_list_free(&got);
	t_list_free(&got2);
	t_list_free(&model);
}

/*
 * A chain of async commits as ingest runs them: each callback appends the next batch and
 * starts its commit, so a group's records are indexed while the next group is written
 * (storage-format.md, "Indexing"). A scan in the callback of the commit that made ticket T
 * durable, before the next commit starts, sees exactly the records appended up to T; after it
 * started, the same or, if the next group is durable by then, exactly that group more: never
 * a part of a group, never anything not yet durable. Rotations happen in the chain too.
 */
struct chain_ctx {
	uv_loop_t *loop;
	struct t_list model;
	size_t at_ticket[64]; /* model size when ticket i was appended */
	uint64_t seq, rounds;
	uint32_t node;
};

static void on_chained(struct store *s, int status, uint64_t durable, void *ctx)
{
	struct chain_ctx *c = ctx;
	bool scan_first = c->seq % 2, scanned = false, next_started = false;
	struct t_list got = {0};

	cr_assert_eq(status, 0);
	cr_assert_lt(durable, 64);
	if (c->seq < c->rounds) {
		if (scan_first) {
			got = t_scan_all(s);
			scanned = true;
		}
		c->seq++;
		cr_assert_eq(
		    t_append(s, &c->model, 1, 1, c->seq, 1 + c->seq % 40, &c->node, 1, T_BASE_NS),
		    0);
		c->at_ticket[store_appended_ticket(s)] = c->model.n;
		cr_assert_eq(store_commit_async(s, c->loop, on_chained, c), 0);
		cr_assert(store_commit_busy(s));
		next_started = true;
	}
	if (!scanned)
		got = t_scan_all(s); /* the next group is being written meanwhile */
	size_t want = c->at_ticket[durable];
	if (!scanned && next_started && got.n == c->at_ticket[durable + 1])
		want = got.n; /* the next group became durable before the scan */
	cr_assert_eq(got.n, want, "ticket %llu: %zu visible, %zu durable",
		     (unsigned long long)durable, got.n, want);
	struct t_list durable_model = c->model;
	durable_model.n = want;
	t_assert_same(&durable_model, &got);
	t_list_free(&got);
}

Test(store, durable_groups_are_visible_while_the_next_is_written)
{
	struct store_options o;
	uv_loop_t loop;
	struct store_stats st;

	t_options(&o, dir);
	o.fsync = STORE_FSYNC_ALWAYS;
	o.segment_max_bytes = 16384; /* a seal every few commits */
	struct store *s = open_store(&o);
	struct chain_ctx c = {.loop = &loop, .rounds = 60};
	cr_assert_eq(uv_loop_init(&loop), 0);
	store_node_intern(s, "chain", &c.node);
	c.seq = 1;
	cr_assert_eq(t_append(s, &c.model, 1, 1, 1, 3, &c.node, 1, T_BASE_NS), 0);
	c.at_ticket[store_appended_ticket(s)] = c.model.n;
	cr_assert_eq(store_commit_async(s, &loop, on_chained, &c), 0);
	cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	cr_assert_eq(c.seq, c.rounds);
	store_stats(s, &st);
	cr_assert_eq(st.records, c.model.n);
	cr_assert_geq(st.rotations, 5);
	cr_assert_eq(store_close(s), 0);
	cr_assert_eq(uv_loop_close(&loop), 0);

	s = open_store(&o);
	t_assert_holds(s, &c.model);
	store_close(s);
	t_list_free(&c.model);
}

Test(store, fsync_policies_count_fsyncs)
{
	struct store_options o;
	uint32_t node = 0;
	t_options(&o, dir);
	o.fsync = STORE_FSYNC_INTERVAL;
	o.fsync_interval_ms = 60000;
	struct store *s = open_store(&o);
	for (uint64_t seq = 1; seq <= 5; seq++) {
		cr_assert_eq(t_append(s, NULL, 1, 1, seq, 1, &node, 1, T_BASE_NS), 0);
		cr_assert_eq(store_commit(s), 0);
	}
	struct store_stats st;
	store_stats(s, &st);
	cr_assert_eq(st.commits, 5);
	cr_assert_eq(st.fsyncs, 1, "interval policy: one fsync per interval");
	cr_assert_eq(store_maintain(s), 0);
	store_stats(s, &st);
	cr_assert_eq(st.fsyncs, 2, "maintain syncs what the interval left unsynced");
	cr_assert_eq(store_maintain(s), 0);
	store_stats(s, &st);
	cr_assert_eq(st.fsyncs, 2, "nothing left to sync");
	store_close(s);
	o.fsync = STORE_FSYNC_ALWAYS;
	s = open_store(&o);
	for (uint64_t seq = 6; seq <= 8; seq++) {
		cr_assert_eq(t_append(s, NULL, 1, 1, seq, 1, &node, 1, T_BASE_NS), 0);
		cr_assert_eq(store_commit(s), 0);
	}
	store_stats(s, &st);
	cr_assert_eq(st.fsyncs, 3);
	cr_assert_eq(st.records, 8);
	store_close(s);
}

/* ---- write failures are sticky, reported, and leave the disk consistent ---- */

#include <sys/resource.h>

static void limit_file_size(rlim_t bytes)
{
	struct rlimit rl;
	cr_assert_eq(getrlimit(RLIMIT_FSIZE, &rl), 0);
	rl.rlim_cur = bytes;
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

static void on_failed_commit(struct store *s, int status, uint64_t durable, void *ctx)
{
	(void)s;
	struct async_ctx *a = ctx;
	a->status[a->calls] = status;
	a->tickets[a->calls] = durable;
	a->calls++;
}

Test(store, write_failure_is_sticky_and_recoverable)
{
	struct store_options o;
	struct t_list model = {0};
	uint32_t node = 0;
	t_options(&o, dir);
	signal(SIGXFSZ, SIG_IGN);
	struct store *s = open_store(&o);
	cr_assert_eq(t_append(s, &model, 1, 1, 1, 5, &node, 1, T_BASE_NS), 0);
	cr_assert_eq(store_commit(s), 0);
	struct store_stats st;
	store_stats(s, &st);
	limit_file_size(st.bytes + 100); /* the next group cannot be written whole */
	cr_assert_eq(t_append(s, NULL, 1, 1, 2, 20, &node, 1, T_BASE_NS), 0);
	cr_assert_eq(store_commit(s), -EFBIG);
	cr_assert_eq(store_durable_ticket(s), 1);
	cr_assert_eq(t_append(s, NULL, 1, 1, 3, 1, &node, 1, T_BASE_NS), -EFBIG, "sticky");
	cr_assert_eq(store_commit(s), -EFBIG);
	uv_loop_t loop;
	cr_assert_eq(uv_loop_init(&loop), 0);
	cr_assert_eq(store_commit_async(s, &loop, on_failed_commit, NULL), -EFBIG);
	cr_assert_eq(uv_loop_close(&loop), 0);
	store_close(s);
	limit_file_size(RLIM_INFINITY);

	s = open_store(&o);
	store_stats(s, &st);
	cr_assert_eq(st.recovery_truncations, 0, "the partial write was undone at failure");
	struct t_list got = t_scan_all(s);
	t_assert_same(&model, &got);
	cr_assert(store_batch_seen(s, 1, 1, 1));
	cr_assert_not(store_batch_seen(s, 1, 1, 2), "the failed batch is accepted again");
	t_list_free(&got);

	/* the async path reports the failure to the in-flight and the queued waiters */
	store_stats(s, &st);
	limit_file_size(st.bytes + 100);
	struct async_ctx a = {.s = s};
	cr_assert_eq(uv_loop_init(&loop), 0);
	cr_assert_eq(t_append(s, NULL, 1, 1, 2, 20, &node, 1, T_BASE_NS), 0);
	cr_assert_eq(store_commit_async(s, &loop, on_failed_commit, &a), 0);
	cr_assert_eq(t_append(s, NULL, 1, 1, 3, 1, &node, 1, T_BASE_NS), 0);
	cr_assert_eq(store_commit_async(s, &loop, on_failed_commit, &a), 0);
	cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	cr_assert_eq(a.calls, 2);
	cr_assert_eq(a.status[0], -EFBIG);
	cr_assert_eq(a.status[1], -EFBIG);
	cr_assert_eq(a.tickets[0], 0, "nothing became durable (tickets restart per open)");
	cr_assert_eq(store_close(s), 0);
	cr_assert_eq(uv_loop_close(&loop), 0);
	limit_file_size(RLIM_INFINITY);
	t_list_free(&model);
}

Test(store, default_sparse_blocks_at_scale, .timeout = 120)
{
	struct store_options o;
	struct t_list model = {0};
	uint32_t nodes[2] = {0, 1};
	t_options(&o, dir);
	struct store *s = open_store(&o);
	for (uint64_t seq = 1; seq <= 200; seq++) {
		cr_assert_eq(t_append(s, &model, 2, 2, seq, 50, nodes, 2,
				      T_BASE_NS - 86400 * T_SEC + seq * 60 * T_SEC),
			     0);
		if (seq % 10 == 0)
			cr_assert_eq(store_commit(s), 0);
	}
	struct seg_index idx;
	cr_assert_eq(store_segment_index(s, 1, &idx), 0);
	cr_assert_eq(idx.records, 10000);
	cr_assert_eq(idx.sparse_every, SEG_SPARSE_EVERY);
	cr_assert_eq(idx.n_sparse, 3);
	seg_index_fini(&idx);
	/* "latest 5" and "latest 5 of node 1" */
	for (int node = -1; node <= 1; node += 2) {
		struct store_query q;
		store_query_init(&q);
		q.order = STORE_NEWEST_FIRST;
		q.limit = 5;
		q.node_id = node;
		check_query(s, &model, &q);
		q.limit = 0;
		q.since_ns = T_BASE_NS - 86400 * T_SEC + 150 * 60 * T_SEC;
		check_query(s, &model, &q);
	}
	store_close(s);
	t_list_free(&model);
}

/* ---- mapped reads, the fine index, the newest position ---- */

/* The model with every record's position, from one full oldest-first scan. */
static void fill_positions(struct store *s, struct t_list *model)
{
	struct t_list all = t_scan_all(s);
	cr_assert_eq(all.n, model->n);
	for (size_t i = 0; i < all.n; i++)
		model->v[i].pos = all.v[i].pos;
	t_list_free(&all);
}

/* Whether this process maps a file whose path ends in `name`. */
static bool mapped(const char *name)
{
	char line[4600];
	bool found = false;
	FILE *f = fopen("/proc/self/maps", "r");
	cr_assert_not_null(f);
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, name) != NULL;
	fclose(f);
	return found;
}

Test(store, mapped_reads_span_sealed_and_active_segments, .timeout = 120)
{
	struct store_options o;
	struct t_list model = {0};
	uint32_t nodes[5];
	uint64_t t0 = T_BASE_NS - 7200 * T_SEC;
	struct store *s = open_five_nodes(&o, nodes);
	build_nodes_store(s, &model, nodes, 5, 120, t0);
	/* a small commit that leaves records in the active segment */
	cr_assert_eq(t_append(s, &model, 5, 5, 121, 2, nodes, 5, t0 + 4000 * T_SEC), 0);
	cr_assert_eq(store_commit(s), 0);
	struct store_stats st;
	store_stats(s, &st);
	cr_assert_gt(st.segments, 3);
	check_node_cases(s, &model, t0);
	/* scans mapped every segment with records, the active one included */
	char name[64];
	seg_file_name(name, sizeof(name), 1, "tseg");
	cr_assert(mapped(name), "sealed segment 1 is mapped after a scan");
	seg_file_name(name, sizeof(name), st.active_segment_id, "tseg");
	cr_assert(mapped(name), "the active segment is mapped after a scan");
	/* the active segment grows under its mapping: new records are read through it */
	build_nodes_store(s, &model, nodes, 5, 10, t0 + 6000 * T_SEC);
	check_node_cases(s, &model, t0);
	struct t_list got = t_scan_all(s);
	t_assert_same(&model, &got);
	t_list_free(&got);
	store_stats(s, &st);
	cr_assert_eq(st.corrupt_reads, 0);
	store_close(s);
	seg_file_name(name, sizeof(name), 1, "tseg");
	cr_assert(!mapped(name), "store_close unmaps the segments");
	t_list_free(&model);
}

Test(store, segment_remapped_when_it_outgrows_its_mapping, .timeout = 120)
{
	struct store_options o;
	struct t_list model = {0};
	uint32_t node = 0;
	t_options(&o, dir);
	o.segment_max_bytes = 4096; /* the active mapping reserves 4 KiB + 16 MiB */
	struct store *s = open_store(&o);
	cr_assert_eq(t_append(s, &model, 1, 1, 1, 3, &node, 1, T_BASE_NS), 0);
	cr_assert_eq(store_commit(s), 0);
	struct t_list got = t_scan_all(s); /* maps the (then small) active segment */
	t_assert_same(&model, &got);
	t_list_free(&got);
	/* one commit group of 18 MiB: past the reservation, the next scan remaps */
	static uint8_t big[1u << 20];
	struct store_record_meta meta[18];
	const void *rec[18];
	size_t len[18];
	for (size_t i = 0; i < 18; i++) {
		meta[i] = (struct store_record_meta){.timestamp_ns = T_BASE_NS + i,
						     .type = 1,
						     .severity = 2,
						     .agent_key = 1,
						     .session_id = 1,
						     .sequence = 2};
		rec[i] = big;
		len[i] = sizeof(big);
	}
	/* one record at a time so each has its own fill byte (same batch identity) */
	for (size_t i = 0; i < 18; i++) {
		memset(big, (int)i + 1, sizeof(big));
		cr_assert_eq(store_append_batch(s, &meta[i], &rec[i], &len[i], 1), 0);
		t_list_push(&model, &meta[i], big, sizeof(big), (struct store_pos){0, 0});
	}
	struct store_stats st;
	store_stats(s, &st);
	uint64_t active = st.active_segment_id;
	cr_assert_eq(store_commit(s), 0); /* also seals it: the size limit is long past */
	/* mapped while small, now 18 MiB: the next scan maps it again, whole */
	got = t_scan_all(s);
	t_assert_same(&model, &got);
	t_list_free(&got);
	store_stats(s, &st);
	cr_assert_neq(st.active_segment_id, active, "sealed after the big group");
	cr_assert_eq(st.corrupt_reads, 0);
	store_close(s);
	t_list_free(&model);
}

Test(store, retention_unmaps_a_mapped_segment)
{
	struct store_options o;
	struct t_list model = {0};
	uint32_t node = 0;
	t_options(&o, dir);
	o.segment_max_bytes = 4096;
	o.retention_bytes = 5 * 4096;
	struct store *s = open_store(&o);
	for (uint64_t seq = 1; seq <= 20; seq++) {
		cr_assert_eq(t_append(s, NULL, 1, 1, seq, 8, &node, 1, T_BASE_NS + seq), 0);
		cr_assert_eq(store_commit(s), 0);
		if (seq == 6) {
			/* map everything there is, then let retention take the oldest */
			struct t_list got = t_scan_all(s);
			cr_assert_gt(got.n, 0);
			t_list_free(&got);
		}
	}
	struct store_stats st;
	store_stats(s, &st);
	cr_assert_gt(st.deleted_segments, 0);
	char name[64];
	seg_file_name(name, sizeof(name), 1, "tseg");
	cr_assert(!mapped(name), "segment 1 is deleted and unmapped");
	/* what is left still reads (through new or kept mappings) */
	struct t_list got = t_scan_all(s);
	cr_assert_gt(got.n, 0);
	for (size_t i = 0; i < got.n; i++)
		cr_assert_gt(got.v[i].pos.segment_id, 1);
	t_list_free(&got);
	store_stats(s, &st);
	cr_assert_eq(st.corrupt_reads, 0);
	store_close(s);
	t_list_free(&model);
}

/* Flips one byte at offset `at` of segment `id` (the store may have it mapped). */
static void flip_byte(uint64_t id, off_t at)
{
	char p[4200];
	uint8_t b;
	seg_path(p, sizeof(p), id, "tseg");
	int fd = open(p, O_RDWR);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, &b, 1, at), 1);
	b ^= 0x5a;
	cr_assert_eq(pwrite(fd, &b, 1, at), 1);
	close(fd);
}

Test(store, corrupt_record_in_mapped_sealed_segment_is_skipped, .timeout = 60)
{
	struct store_options o;
	struct t_list model = {0};
	uint32_t nodes[2];
	t_options(&o, dir);
	o.segment_max_bytes = 8192;
	struct store *s = open_store(&o);
	store_node_intern(s, "a", &nodes[0]);
	store_node_intern(s, "b", &nodes[1]);
	for (uint64_t seq = 1; seq <= 30; seq++) {
		cr_assert_eq(t_append(s, &model, 1, 1, seq, 4, nodes, 2, T_BASE_NS + seq), 0);
		cr_assert_eq(store_commit(s), 0);
	}
	fill_positions(s, &model); /* also maps every segment */
	/* a payload byte of segment 1's third record: the scan sees it through the mapping */
	const struct t_rec *victim = NULL;
	for (size_t i = 0, n1 = 0; i < model.n && !victim; i++)
		if (model.v[i].pos.segment_id == 1 && ++n1 == 3)
			victim = &model.v[i];
	cr_assert_not_null(victim);
	flip_byte(1, (off_t)(victim->pos.offset + SEG_REC_OVERHEAD + victim->len / 2));
	for (int pass = 0; pass < 2; pass++) {
		struct store_stats a, b;
		struct store_query q;
		struct t_list got = {0};
		store_query_init(&q);
		q.order = STORE_NEWEST_FIRST;
		if (pass)
			q.node_id = victim->m.node_id; /* through the posting list */
		store_stats(s, &a);
		long n = store_scan(s, &q, t_collect, &got);
		store_stats(s, &b);
		cr_assert_eq(b.corrupt_reads - a.corrupt_reads, 1, "pass %d: counted once", pass);
		size_t expect = 0;
		for (size_t i = 0; i < model.n; i++)
			expect += q.node_id < 0 || model.v[i].m.node_id == (uint32_t)q.node_id;
		cr_assert_eq(n, (long)expect - 1, "pass %d: only the corrupt record is missing",
			     pass);
		for (size_t i = 0; i < got.n; i++)
			cr_assert(got.v[i].pos.segment_id != 1 ||
				      got.v[i].pos.offset != victim->pos.offset,
				  "the corrupt record is not delivered");
		t_list_free(&got);
	}
	/* a bad length in a posting-list read: that record is skipped, the rest delivered */
	flip_byte(1, (off_t)victim->pos.offset + 3); /* the length's high byte */
	struct store_query q;
	struct t_list got = {0};
	struct store_stats a, b;
	store_query_init(&q);
	q.node_id = victim->m.node_id;
	store_stats(s, &a);
	long n = store_scan(s, &q, t_collect, &got);
	store_stats(s, &b);
	cr_assert_geq(n, 1);
	cr_assert_eq(b.corrupt_reads - a.corrupt_reads, 1);
	t_list_free(&got);
	store_close(s);
	t_list_free(&model);
}

/* Records read by one call of q (and the page it returns in *got). */
static uint64_t records_read(struct store *s, const struct store_query *q, struct t_list *got)
{
	struct store_stats a, b;
	store_stats(s, &a);
	long n = store_scan(s, q, t_collect, got);
	cr_assert_geq(n, 0);
	store_stats(s, &b);
	return b.scan_records_read - a.scan_records_read;
}

Test(store, fine_index_bounds_the_walk_to_a_cursor, .timeout = 120)
{
	struct store_options o;
	struct t_list model = {0};
	uint32_t nodes[3] = {0, 1, 2};
	t_options(&o, dir);
	o.sparse_every = 1024; /* sub-blocks of 64 records */
	struct store *s = open_store(&o);
	for (uint64_t seq = 1; seq <= 400; seq++) {
		cr_assert_eq(t_append(s, &model, 1, 1, seq, 10, nodes, 3, T_BASE_NS + seq), 0);
		if (seq % 7 == 0)
			cr_assert_eq(store_commit(s), 0);
	}
	cr_assert_eq(store_commit(s), 0);
	fill_positions(s, &model); /* commits noted the fine index; this walks it all anyway */
	/* a cursor in the middle of a sparse block: a page walks a sub-block or two, not 1024 */
	for (int d = 0; d < 2; d++) {
		struct store_query q;
		store_query_init(&q);
		q.order = d ? STORE_NEWEST_FIRST : STORE_OLDEST_FIRST;
		q.limit = 10;
		q.has_cursor = true;
		q.cursor = model.v[1024 * 2 + 500].pos;
		struct t_list got = {0};
		uint64_t read = records_read(s, &q, &got);
		cr_assert_eq(got.n, 10);
		for (size_t i = 0; i < 10; i++) {
			size_t k = d ? 1024 * 2 + 500 - 1 - i : 1024 * 2 + 500 + 1 + i;
			t_assert_same_rec(&model.v[k], &got.v[i], i);
		}
		cr_assert_leq(read, 2 * 64 + 10, "%s: read %llu records to reach the cursor",
			      d ? "newest-first" : "oldest-first", (unsigned long long)read);
		t_list_free(&got);
	}
	/* pagination over everything stays exact, both ways, before and after a reopen */
	for (int round = 0; round < 2; round++) {
		for (int d = 0; d < 2; d++) {
			struct store_query q;
			store_query_init(&q);
			q.order = d ? STORE_NEWEST_FIRST : STORE_OLDEST_FIRST;
			check_query(s, &model, &q);
			q.type_mask = 1u << 3;
			check_query(s, &model, &q);
		}
		store_close(s);
		s = open_store(&o);
	}
	/* after a reopen the fine index is noted again by the first walk of each block */
	struct store_query q;
	store_query_init(&q);
	q.order = STORE_NEWEST_FIRST;
	q.limit = 10;
	q.has_cursor = true;
	q.cursor = model.v[1024 + 300].pos;
	struct t_list got = {0};
	records_read(s, &q, &got); /* walks the whole block once */
	t_list_free(&got);
	q.cursor = model.v[1024 + 200].pos;
	cr_assert_leq(records_read(s, &q, &got), 2 * 64 + 10);
	cr_assert_eq(got.n, 10);
	t_assert_same_rec(&model.v[1024 + 199], &got.v[0], 0);
	t_list_free(&got);
	store_close(s);
	t_list_free(&model);
}

Test(store, work_bound_with_fine_index_resumes_without_gaps, .timeout = 120)
{
	struct store_options o;
	struct t_list model = {0};
	uint32_t nodes[5];
	uint64_t t0 = T_BASE_NS - 7200 * T_SEC;
	t_options(&o, dir);
	o.segment_max_bytes = 60000;
	o.sparse_every = 256; /* sub-blocks of 64 */
	struct store *s = open_store(&o);
	intern_five(s, nodes);
	build_nodes_store(s, &model, nodes, 5, 400, t0);
	for (int d = 0; d < 2; d++) {
		struct store_query q;
		store_query_init(&q);
		q.order = d ? STORE_NEWEST_FIRST : STORE_OLDEST_FIRST;
		q.type_mask = 1u << TAPIO_OCC_OOM_KILL;
		check_bounded(s, &model, q, 25, 64);
		q.type_mask = 0;
		q.since_ns = t0 + 1000 * T_SEC;
		check_bounded(s, &model, q, 40, 64);
	}
	store_close(s);
	t_list_free(&model);
}

Test(store, last_pos_is_the_newest_record)
{
	struct store_options o;
	struct t_list model = {0};
	uint32_t node = 0;
	struct store_pos pos;
	t_options(&o, dir);
	o.segment_max_bytes = 4096;
	struct store *s = open_store(&o);
	cr_assert(!store_last_pos(s, &pos), "empty store");
	for (uint64_t seq = 1; seq <= 12; seq++) {
		cr_assert_eq(t_append(s, &model, 1, 1, seq, 5, &node, 1, T_BASE_NS + seq), 0);
		cr_assert_eq(store_commit(s), 0);
		fill_positions(s, &model);
		cr_assert(store_last_pos(s, &pos));
		struct store_pos want = model.v[model.n - 1].pos;
		cr_assert(pos.segment_id == want.segment_id && pos.offset == want.offset,
			  "after commit %llu", (unsigned long long)seq);
	}
	/* the last commit sealed the active segment: the newest record is in a sealed one */
	struct store_stats st;
	store_stats(s, &st);
	cr_assert_gt(st.rotations, 0);
	store_close(s);
	s = open_store(&o); /* from the posting lists of what was loaded */
	cr_assert(store_last_pos(s, &pos));
	cr_assert(pos.segment_id == model.v[model.n - 1].pos.segment_id &&
		  pos.offset == model.v[model.n - 1].pos.offset);
	store_close(s);
	t_list_free(&model);
}

Test(store, node_find_does_not_intern)
{
	struct store_options o;
	uint32_t a, id;
	t_options(&o, dir);
	struct store *s = open_store(&o);
	cr_assert(!store_node_find(s, "node-a", &id), "empty table");
	cr_assert_eq(store_node_intern(s, "node-a", &a), 0);
	cr_assert(store_node_find(s, "node-a", &id));
	cr_assert_eq(id, a);
	cr_assert(!store_node_find(s, "node-b", &id));
	cr_assert_eq(store_node_count(s), 1, "find interns nothing");
	store_close(s);
}
