/* Contract tests of controller/segment.c: byte layout, CRC, index images, recovery scan. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "controller/segment.h"

TestSuite(segment, .timeout = 30);

Test(segment, crc32_is_ieee)
{
	cr_assert_eq(seg_crc32("123456789", 9), 0xCBF43926u);
	cr_assert_eq(seg_crc32("", 0), 0);
}

Test(segment, little_endian_helpers)
{
	uint8_t b[8];
	seg_put_u32(b, 0x11223344u);
	cr_assert(b[0] == 0x44 && b[1] == 0x33 && b[2] == 0x22 && b[3] == 0x11);
	cr_assert_eq(seg_get_u32(b), 0x11223344u);
	seg_put_u64(b, 0x0102030405060708ull);
	cr_assert(b[0] == 0x08 && b[7] == 0x01);
	cr_assert_eq(seg_get_u64(b), 0x0102030405060708ull);
}

Test(segment, header_round_trip_and_damage)
{
	uint8_t h[SEG_HEADER_SIZE];
	uint64_t id, created;
	uint32_t version;
	seg_header_encode(h, 42, 1234567890123ull);
	cr_assert(memcmp(h, "TAPIOSEG", 8) == 0);
	cr_assert_eq(seg_get_u32(h + 8), SEG_VERSION);
	cr_assert_eq(seg_header_decode(h, &id, &created, &version), 0);
	cr_assert_eq(id, 42);
	cr_assert_eq(created, 1234567890123ull);
	cr_assert_eq(version, 2);
	/* format 1 is still read; an unknown one is not */
	seg_put_u32(h + 8, 1);
	seg_put_u32(h + 60, seg_crc32(h, 60));
	cr_assert_eq(seg_header_decode(h, &id, &created, &version), 0);
	cr_assert_eq(version, 1);
	seg_put_u32(h + 8, 3);
	seg_put_u32(h + 60, seg_crc32(h, 60));
	cr_assert_eq(seg_header_decode(h, &id, &created, &version), -EBADMSG);
	seg_header_encode(h, 42, 1234567890123ull);
	h[20] ^= 1;
	cr_assert_eq(seg_header_decode(h, &id, &created, &version), -EBADMSG);
}

static const struct store_record_meta layout_meta = {.timestamp_ns = 0x1122334455667788ull,
						     .type = 4,
						     .severity = 3,
						     .node_id = 0xabcdef01u,
						     .agent_key = 1,
						     .session_id = 2,
						     .sequence = 3};

/* A batch's first record: the fixed meta, then the identity, then the payload. */
Test(segment, record_layout_with_identity)
{
	const struct store_record_meta m = layout_meta;
	uint8_t out[SEG_REC_OVERHEAD + SEG_IDENT_SIZE + 5];
	struct seg_head h;
	cr_assert_eq(seg_record_size(5, true), sizeof(out));
	seg_record_encode(out, &m, SEG_FLAG_IDENT, 0, "hello", 5);
	cr_assert_eq(seg_get_u32(out), SEG_META_SIZE + SEG_IDENT_SIZE + 5,
		     "length covers meta, identity and payload");
	cr_assert_eq(seg_get_u32(out + 4), seg_crc32(out + 8, SEG_META_SIZE + SEG_IDENT_SIZE + 5));
	cr_assert_eq(seg_get_u64(out + 8), m.timestamp_ns);
	cr_assert_eq(out[16], 4);
	cr_assert_eq(out[17], 3);
	cr_assert_eq(out[18], SEG_FLAG_IDENT);
	cr_assert_eq(out[19], 0);
	cr_assert_eq(seg_get_u32(out + 20), 0xabcdef01u);
	cr_assert_eq(seg_get_u32(out + 24), 0, "back: the identity is this record's");
	cr_assert_eq(seg_get_u64(out + 28), 1);
	cr_assert_eq(seg_get_u64(out + 36), 2);
	cr_assert_eq(seg_get_u64(out + 44), 3);
	cr_assert(memcmp(out + 52, "hello", 5) == 0);
	/* the fixed part first: the identity needs more bytes */
	cr_assert_eq(seg_head_decode(out, SEG_REC_OVERHEAD, 2, &h),
		     (int)(SEG_REC_OVERHEAD + SEG_IDENT_SIZE));
	cr_assert_eq(seg_head_decode(out, SEG_REC_OVERHEAD + SEG_IDENT_SIZE, 2, &h), 0);
	cr_assert_eq(h.len, SEG_META_SIZE + SEG_IDENT_SIZE + 5);
	cr_assert_eq(h.meta_len, SEG_META_SIZE + SEG_IDENT_SIZE);
	cr_assert_eq(h.flags, SEG_FLAG_IDENT);
	cr_assert_eq(h.back, 0);
	cr_assert_eq(h.m.timestamp_ns, m.timestamp_ns);
	cr_assert_eq(h.m.type, m.type);
	cr_assert_eq(h.m.severity, m.severity);
	cr_assert_eq(h.m.node_id, m.node_id);
	cr_assert_eq(h.m.agent_key, m.agent_key);
	cr_assert_eq(h.m.session_id, m.session_id);
	cr_assert_eq(h.m.sequence, m.sequence);
}

/* A later record of the batch: no identity, a link back to the record that has it. */
Test(segment, record_layout_without_identity)
{
	const struct store_record_meta m = layout_meta;
	uint8_t out[SEG_REC_OVERHEAD + 5];
	struct seg_head h;
	cr_assert_eq(seg_record_size(5, false), sizeof(out));
	seg_record_encode(out, &m, SEG_FLAG_BATCH_END, 777, "hello", 5);
	cr_assert_eq(seg_get_u32(out), SEG_META_SIZE + 5);
	cr_assert_eq(seg_get_u32(out + 4), seg_crc32(out + 8, SEG_META_SIZE + 5));
	cr_assert_eq(seg_get_u32(out + 24), 777);
	cr_assert(memcmp(out + 28, "hello", 5) == 0);
	cr_assert_eq(seg_head_decode(out, sizeof(out), 2, &h), 0);
	cr_assert_eq(h.meta_len, SEG_META_SIZE);
	cr_assert_eq(h.flags, SEG_FLAG_BATCH_END);
	cr_assert_eq(h.back, 777);
	cr_assert_eq(h.m.node_id, m.node_id);
	cr_assert_eq(h.m.agent_key, 0, "identity left for the reader to resolve");
	/* a length that cannot hold the meta is refused */
	seg_put_u32(out, SEG_META_SIZE - 1);
	cr_assert_eq(seg_head_decode(out, sizeof(out), 2, &h), -1);
}

/* Format 1 (written by earlier versions): the 40-byte meta with the identity, every record. */
Test(segment, format_1_records_decode)
{
	uint8_t out[SEG_REC_PREFIX + SEG_META_SIZE_V1 + 5] = {0};
	struct seg_head h;
	seg_put_u32(out, SEG_META_SIZE_V1 + 5);
	seg_put_u64(out + 8, 99);
	out[16] = 2;
	out[17] = 1;
	out[18] = SEG_FLAG_BATCH_END;
	seg_put_u32(out + 20, 7);
	seg_put_u64(out + 24, 11);
	seg_put_u64(out + 32, 12);
	seg_put_u64(out + 40, 13);
	memcpy(out + 48, "hello", 5);
	cr_assert_eq(seg_head_decode(out, SEG_REC_OVERHEAD, 1, &h),
		     (int)(SEG_REC_PREFIX + SEG_META_SIZE_V1));
	cr_assert_eq(seg_head_decode(out, sizeof(out), 1, &h), 0);
	cr_assert_eq(h.meta_len, SEG_META_SIZE_V1);
	cr_assert_eq(h.flags, SEG_FLAG_BATCH_END | SEG_FLAG_IDENT);
	cr_assert_eq(h.m.timestamp_ns, 99);
	cr_assert_eq(h.m.node_id, 7);
	cr_assert_eq(h.m.agent_key, 11);
	cr_assert_eq(h.m.session_id, 12);
	cr_assert_eq(h.m.sequence, 13);
}

static void fill_index(struct seg_index *idx, size_t n)
{
	uint64_t off = SEG_HEADER_SIZE;
	for (size_t i = 0; i < n; i++) {
		struct store_record_meta m = {.timestamp_ns = 1000 + (i * 7919) % 500,
					      .type = (uint8_t)(i % TAPIO_OCC__COUNT),
					      .severity = (uint8_t)(i % TAPIO_SEV__COUNT),
					      .node_id = (uint32_t)(i % 13) * 3,
					      .agent_key = i % 3,
					      .session_id = 1,
					      .sequence = i};
		cr_assert_eq(seg_index_add(idx, &m, off, 100), 0);
		off += 100;
	}
}

Test(segment, index_counts_and_image_round_trip)
{
	struct seg_index idx, back;
	seg_index_init(&idx, 7, 99, 10);
	fill_index(&idx, 95);
	cr_assert_eq(idx.records, 95);
	cr_assert_eq(idx.n_sparse, 10);
	cr_assert_eq(idx.sparse[1].offset, SEG_HEADER_SIZE + 10 * 100);
	cr_assert_eq(idx.n_nodes, 13);
	cr_assert_eq(idx.n_sessions, 3);
	cr_assert_eq(idx.file_size, SEG_HEADER_SIZE + 95 * 100);
	uint64_t sum = 0;
	for (unsigned t = 0; t < TAPIO_OCC__COUNT; t++)
		sum += idx.by_type[t];
	cr_assert_eq(sum, 95);
	cr_assert_eq(seg_index_node_count(&idx, 0), 8); /* i % 13 == 0 for i in 0..94 */
	cr_assert_eq(seg_index_node_count(&idx, 1), 0);

	cr_assert(seg_index_may_match(&idx, 0, UINT64_MAX, 0, 0, -1));
	cr_assert_not(seg_index_may_match(&idx, 2000, UINT64_MAX, 0, 0, -1));
	cr_assert_not(seg_index_may_match(&idx, 0, idx.min_ts, 0, 0, -1));
	cr_assert_not(seg_index_may_match(&idx, 0, UINT64_MAX, 0, 0, 1), "node 1 absent");
	cr_assert(seg_index_may_match(&idx, 0, UINT64_MAX, 0, 0, 3));

	uint8_t *img;
	size_t len;
	cr_assert_eq(seg_index_encode(&idx, &img, &len), 0);
	cr_assert(memcmp(img, "TAPIOIDX", 8) == 0);
	cr_assert_eq(seg_index_decode(img, len, &back), 0);
	cr_assert_eq(back.segment_id, 7);
	cr_assert_eq(back.created_ns, 99);
	cr_assert_eq(back.records, idx.records);
	cr_assert_eq(back.min_ts, idx.min_ts);
	cr_assert_eq(back.max_ts, idx.max_ts);
	cr_assert(memcmp(back.by_type, idx.by_type, sizeof(idx.by_type)) == 0);
	cr_assert(memcmp(back.by_severity, idx.by_severity, sizeof(idx.by_severity)) == 0);
	cr_assert_eq(back.n_nodes, idx.n_nodes);
	cr_assert(back.has_postings);
	for (size_t i = 0; i < idx.n_nodes; i++) {
		const struct seg_node_count *a = &back.nodes[i], *b = &idx.nodes[i];
		cr_assert_eq(a->node_id, b->node_id);
		cr_assert_eq(a->count, b->count);
		cr_assert(memcmp(a->post_off, b->post_off, b->count * sizeof(*b->post_off)) == 0);
		cr_assert(memcmp(a->post_ts, b->post_ts, b->count) == 0);
	}
	/* node 3·k holds records i ≡ k (mod 13) at 64 + 100·i, with i's type and severity */
	const struct seg_node_count *n6 = seg_index_node(&back, 6);
	cr_assert_not_null(n6);
	cr_assert_eq(n6->count, 8); /* i = 2, 15, …, 93 */
	for (uint64_t k = 0; k < n6->count; k++) {
		size_t i = 2 + 13 * k;
		cr_assert_eq(n6->post_off[k], SEG_HEADER_SIZE + 100 * i);
		cr_assert_eq(n6->post_ts[k],
			     seg_post_pack(i % TAPIO_OCC__COUNT, i % TAPIO_SEV__COUNT));
	}
	cr_assert_null(seg_index_node(&back, 1));
	cr_assert(memcmp(back.sessions, idx.sessions, idx.n_sessions * sizeof(*idx.sessions)) == 0);
	cr_assert(memcmp(back.sparse, idx.sparse, idx.n_sparse * sizeof(*idx.sparse)) == 0);
	seg_index_fini(&back);

	/* any flipped byte or truncation is refused */
	for (size_t i = 0; i < len; i += 13) {
		img[i] ^= 0x10;
		cr_assert_eq(seg_index_decode(img, len, &back), -EBADMSG, "flip at %zu", i);
		img[i] ^= 0x10;
	}
	cr_assert_eq(seg_index_decode(img, len - 1, &back), -EBADMSG);
	free(img);
	seg_index_fini(&idx);
}

/*
 * Records arrive in runs of one node and session (a batch), and new nodes and sessions appear
 * in the middle, shifting the sorted tables under the lookup hints: every count, posting list,
 * session watermark and sparse block must still equal a recount of what was added.
 */
Test(segment, index_runs_and_insertions_match_a_recount)
{
	enum { N = 20000, NODES = 40, SESSIONS = 30 };
	static struct store_record_meta recs[N];
	uint64_t state = 0x9e3779b97f4a7c15ull, seq_max[SESSIONS] = {0};
	struct seg_index idx;
	size_t i = 0;

	seg_index_init(&idx, 1, 1, 7);
	while (i < N) {
		state = state * 6364136223846793005ull + 1442695040888963407ull;
		/* descending ids first, so each new one is inserted before the hinted entry */
		uint32_t node = (uint32_t)(NODES - 1 - (state >> 33) % (1 + i * NODES / N)) * 5;
		uint64_t sess = (state >> 20) % (1 + i * SESSIONS / N);
		size_t run = 1 + (state >> 45) % 300;

		for (size_t k = 0; k < run && i < N; k++, i++) {
			recs[i] = (struct store_record_meta){
			    .timestamp_ns = 1000 + (i * 7919) % 100000,
			    .type = (uint8_t)(i % TAPIO_OCC__COUNT),
			    .severity = (uint8_t)((i / 3) % TAPIO_SEV__COUNT),
			    .node_id = node,
			    .agent_key = SESSIONS - sess,
			    .session_id = sess * 7,
			    .sequence = i / 10};
			cr_assert_eq(seg_index_add(&idx, &recs[i], SEG_HEADER_SIZE + 64 * i, 64),
				     0);
		}
	}
	cr_assert_eq(idx.records, N);
	cr_assert_eq(idx.n_sparse, (N + 6) / 7);
	for (size_t b = 0; b < idx.n_sparse; b++)
		cr_assert_eq(idx.sparse[b].offset, SEG_HEADER_SIZE + 64 * 7 * b);
	size_t nodes_seen = 0;
	for (uint32_t nd = 0; nd < NODES * 5; nd++) {
		const struct seg_node_count *c = seg_index_node(&idx, nd);
		uint64_t k = 0;

		for (size_t r = 0; r < N; r++) {
			if (recs[r].node_id != nd)
				continue;
			cr_assert_not_null(c, "node %u", nd);
			cr_assert_lt(k, c->count);
			cr_assert_eq(c->post_off[k], SEG_HEADER_SIZE + 64 * r, "node %u #%llu", nd,
				     (unsigned long long)k);
			cr_assert_eq(c->post_ts[k], seg_post_pack(recs[r].type, recs[r].severity));
			k++;
		}
		if (k) {
			cr_assert_eq(c->count, k);
			nodes_seen++;
		}
	}
	cr_assert_eq(idx.n_nodes, nodes_seen);
	for (size_t r = 0; r < N; r++) {
		uint64_t sess = recs[r].session_id / 7;
		if (recs[r].sequence > seq_max[sess])
			seq_max[sess] = recs[r].sequence;
	}
	for (size_t j = 0; j < idx.n_sessions; j++) {
		const struct seg_session *ss = &idx.sessions[j];
		cr_assert_eq(ss->agent_key, SESSIONS - ss->session_id / 7);
		cr_assert_eq(ss->max_sequence, seq_max[ss->session_id / 7]);
		if (j)
			cr_assert(ss->agent_key > ss[-1].agent_key ||
				      (ss->agent_key == ss[-1].agent_key &&
				       ss->session_id > ss[-1].session_id),
				  "sessions sorted");
	}
	cr_assert_gt(idx.n_sessions, SESSIONS / 2);
	cr_assert_gt(idx.n_nodes, NODES / 2);
	seg_index_fini(&idx);
}

/* Re-seals an index image after an edit, so only the structural checks can refuse it. */
static void reseal(uint8_t *img, size_t len)
{
	seg_put_u32(img + len - 4, seg_crc32(img, len - 4));
}

Test(segment, index_postings_checked_structurally)
{
	struct seg_index idx, back;
	seg_index_init(&idx, 7, 99, 10);
	fill_index(&idx, 40);
	uint8_t *img;
	size_t len;
	cr_assert_eq(seg_index_encode(&idx, &img, &len), 0);
	cr_assert_eq(seg_get_u32(img + 8), SEG_IDX_VERSION);
	cr_assert_eq(seg_get_u32(img + 12), SEG_IDX_POSTINGS);
	/* postings: 5 bytes a record, after the sparse blocks, before the CRC */
	size_t post = len - 4 - 5 * 40;
	uint8_t *first_ts = img + post + 4 * idx.nodes[0].count; /* node 0's first (type|sev) */

	uint8_t save = *first_ts;
	*first_ts = (uint8_t)(TAPIO_OCC__COUNT << 4);
	reseal(img, len);
	cr_assert_eq(seg_index_decode(img, len, &back), -EBADMSG, "type out of range");
	*first_ts = save;

	uint32_t o0 = seg_get_u32(img + post), o1 = seg_get_u32(img + post + 4);
	seg_put_u32(img + post, o1);
	seg_put_u32(img + post + 4, o0);
	reseal(img, len);
	cr_assert_eq(seg_index_decode(img, len, &back), -EBADMSG, "offsets not ascending");
	seg_put_u32(img + post, o0);
	seg_put_u32(img + post + 4, o1);

	seg_put_u32(img + post, (uint32_t)idx.file_size);
	reseal(img, len);
	cr_assert_eq(seg_index_decode(img, len, &back), -EBADMSG, "offset past the data");
	seg_put_u32(img + post, o0);

	seg_put_u32(img + 8, 1);
	reseal(img, len);
	cr_assert_eq(seg_index_decode(img, len, &back), -EBADMSG, "version 1 is rebuilt");
	seg_put_u32(img + 8, SEG_IDX_VERSION);
	reseal(img, len);
	cr_assert_eq(seg_index_decode(img, len, &back), 0);
	seg_index_fini(&back);
	free(img);

	/* a record past 4 GiB drops the postings; the image says so and still round-trips */
	struct store_record_meta m = {.timestamp_ns = 5, .type = 1, .severity = 1, .node_id = 3};
	cr_assert_eq(seg_index_add(&idx, &m, 5ull << 30, 100), 0);
	cr_assert_not(idx.has_postings);
	cr_assert_eq(seg_index_node_count(&idx, 3), 4); /* i = 1, 14, 27 + this one */
	cr_assert_eq(seg_index_encode(&idx, &img, &len), 0);
	cr_assert_eq(seg_get_u32(img + 12), 0);
	cr_assert_eq(seg_index_decode(img, len, &back), 0);
	cr_assert_not(back.has_postings);
	cr_assert_eq(back.records, 41);
	cr_assert_null(back.nodes[0].post_off);
	seg_index_fini(&back);
	free(img);
	seg_index_fini(&idx);
}

static int make_file(const uint8_t *buf, size_t len)
{
	char path[] = "/tmp/tapio-seg-test.XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	unlink(path);
	cr_assert_eq(write(fd, buf, len), (ssize_t)len);
	return fd;
}

/* header + records for batches of sizes `batches` (format 2: each batch's first record
 * carries the identity, agent 9 session 8 sequence b + 1) */
static size_t build_segment(uint8_t *buf, const size_t *batches, size_t nb, size_t *ends)
{
	size_t off = SEG_HEADER_SIZE;
	uint64_t seq = 0;
	seg_header_encode(buf, 1, 5);
	for (size_t b = 0; b < nb; b++) {
		size_t first = off;
		seq++;
		for (size_t i = 0; i < batches[b]; i++) {
			struct store_record_meta m = {.timestamp_ns = 100 + seq,
						      .type = 1,
						      .severity = 2,
						      .agent_key = 9,
						      .session_id = 8,
						      .sequence = seq};
			char payload[32];
			size_t pl = (size_t)snprintf(payload, sizeof(payload), "rec-%zu-%zu", b, i);
			uint8_t flags = (i + 1 == batches[b] ? SEG_FLAG_BATCH_END : 0) |
					(i == 0 ? SEG_FLAG_IDENT : 0);
			seg_record_encode(buf + off, &m, flags, (uint32_t)(off - first), payload,
					  pl);
			off += seg_record_size(pl, i == 0);
		}
		ends[b] = off;
	}
	return off;
}

/*
 * Recovers buf[0..len) as a format-2 segment file: valid data must end at want_end for the
 * reason want_why. Returns the records indexed; *idx stays for more checks when idx_out.
 */
static uint64_t expect_recover(const uint8_t *buf, size_t len, uint64_t want_end,
			       enum seg_check want_why, struct seg_index *idx_out)
{
	struct seg_index idx;
	uint64_t good, records;
	enum seg_check why;
	int fd = make_file(buf, len);

	seg_index_init(&idx, 1, 5, 0);
	cr_assert_eq(seg_recover_scan(fd, 2, len, &idx, &good, &why), 0);
	cr_assert_eq(good, want_end, "valid data ends at %llu, want %llu", (unsigned long long)good,
		     (unsigned long long)want_end);
	cr_assert_eq(why, want_why, "%s, want %s", seg_check_name(why), seg_check_name(want_why));
	close(fd);
	records = idx.records;
	if (idx_out)
		*idx_out = idx;
	else
		seg_index_fini(&idx);
	return records;
}

/* Re-CRCs the record at rec after a test edited it, so only the edit is wrong. */
static void recrc(uint8_t *rec)
{
	seg_put_u32(rec + 4, seg_crc32(rec + SEG_REC_PREFIX, seg_get_u32(rec)));
}

Test(segment, recover_scan_finds_each_problem)
{
	uint8_t buf[8192], bad[8192];
	size_t batches[] = {2, 1, 3}, ends[3];
	size_t len = build_segment(buf, batches, 3, ends);
	struct seg_index idx;

	cr_assert_eq(expect_recover(buf, len, len, SEG_REC_OK, &idx), 6);
	/* every record got its batch's identity: one session, its last batch's sequence */
	cr_assert_eq(idx.n_sessions, 1);
	cr_assert_eq(idx.sessions[0].agent_key, 9);
	cr_assert_eq(idx.sessions[0].session_id, 8);
	cr_assert_eq(idx.sessions[0].max_sequence, 3);
	seg_index_fini(&idx);

	/* a record whose identity link misses its batch's first record: the batch is cut */
	memcpy(bad, buf, len);
	uint8_t *second = bad + ends[1] + seg_record_size(strlen("rec-2-0"), true);
	seg_put_u32(second + SEG_REC_PREFIX + 16, seg_get_u32(second + SEG_REC_PREFIX + 16) + 1);
	recrc(second);
	expect_recover(bad, len, ends[1], SEG_REC_BAD_META, NULL);

	/* a batch whose first record lost its identity flag */
	memcpy(bad, buf, len);
	bad[ends[0] + SEG_REC_PREFIX + 10] &= (uint8_t)~SEG_FLAG_IDENT;
	recrc(bad + ends[0]);
	expect_recover(bad, len, ends[0], SEG_REC_BAD_META, NULL);

	/* torn in the middle of batch 3: batch 3 vanishes whole */
	cr_assert_eq(expect_recover(buf, ends[2] - 3, ends[1], SEG_REC_SHORT, NULL), 3);

	/* corrupted byte in batch 2 */
	memcpy(bad, buf, len);
	bad[ends[0] + 20] ^= 0xff;
	expect_recover(bad, len, ends[0], SEG_REC_BAD_CRC, NULL);

	/* absurd length */
	memcpy(bad, buf, len);
	seg_put_u32(bad + ends[1], 0xffffffffu);
	expect_recover(bad, len, ends[1], SEG_REC_BAD_LENGTH, NULL);

	/* a few trailing bytes (torn prefix) */
	memcpy(bad, buf, len);
	memset(bad + len, 0, 5);
	expect_recover(bad, len + 5, len, SEG_REC_SHORT_PREFIX, NULL);

	/* valid records but no batch end at the tail */
	size_t nb[] = {2, 2};
	size_t e2[2];
	size_t l2 = build_segment(buf, nb, 2, e2);
	uint8_t *last = buf + e2[1] - seg_record_size(strlen("rec-1-1"), false);
	last[SEG_REC_PREFIX + 10] = 0; /* clear BATCH_END ... */
	recrc(last);		       /* ... and keep the record valid */
	expect_recover(buf, l2, e2[0], SEG_REC_INCOMPLETE_BATCH, NULL);
}

Test(segment, reader_forward_and_backward)
{
	uint8_t data[10000];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 31);
	int fd = make_file(data, sizeof(data));
	struct seg_reader r;
	const uint8_t *p;
	cr_assert_eq(seg_reader_init(&r, fd, sizeof(data), 1024), 0);
	cr_assert_eq(seg_reader_get(&r, 0, 100, false, &p), 0);
	cr_assert(memcmp(p, data, 100) == 0);
	cr_assert_eq(seg_reader_get(&r, 9000, 1000, true, &p), 0);
	cr_assert(memcmp(p, data + 9000, 1000) == 0);
	cr_assert_eq(seg_reader_get(&r, 8500, 100, true, &p), 0);
	cr_assert(memcmp(p, data + 8500, 100) == 0);
	cr_assert_eq(seg_reader_get(&r, 100, 5000, false, &p), 0, "larger than the buffer");
	cr_assert(memcmp(p, data + 100, 5000) == 0);
	cr_assert_eq(seg_reader_get(&r, 9990, 20, false, &p), -ENODATA);
	seg_reader_fini(&r);
	close(fd);
}

Test(segment, mapped_reader_sees_the_file_and_its_growth)
{
	uint8_t data[10000];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 31);
	int fd = make_file(data, 6000);
	/* mapped past the end of the file, as the store maps its active segment */
	const uint8_t *map = NULL;
	cr_assert_eq(seg_map(fd, 1u << 20, &map), 0);
	struct seg_reader r;
	const uint8_t *p;
	seg_reader_init_map(&r, map, 6000);
	cr_assert_eq(seg_reader_get(&r, 100, 5000, false, &p), 0);
	cr_assert_eq(p, map + 100, "a pointer into the mapping, nothing copied");
	cr_assert(memcmp(p, data + 100, 5000) == 0);
	cr_assert_eq(seg_reader_get(&r, 5990, 20, true, &p), -ENODATA, "past end");
	seg_reader_fini(&r);
	/* the file grows by pwrite (as commits append): the same mapping reads the new bytes */
	cr_assert_eq(pwrite(fd, data + 6000, 4000, 6000), 4000);
	seg_reader_init_map(&r, map, sizeof(data));
	cr_assert_eq(seg_reader_get(&r, 5000, 5000, false, &p), 0);
	cr_assert(memcmp(p, data + 5000, 5000) == 0);
	seg_reader_fini(&r);
	seg_unmap(map, 1u << 20);
	seg_unmap(NULL, 0); /* NULL-safe */
	close(fd);
}

Test(segment, atomic_write_replaces_file)
{
	char dir[] = "/tmp/tapio-seg-atomic.XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	int dfd = open(dir, O_RDONLY | O_DIRECTORY);
	cr_assert_eq(seg_write_file_atomic(dfd, "f", "one", 3, true), 0);
	cr_assert_eq(seg_write_file_atomic(dfd, "f", "second", 6, true), 0);
	uint8_t *b;
	size_t len;
	cr_assert_eq(seg_read_file(dfd, "f", 100, &b, &len), 0);
	cr_assert_eq(len, 6);
	cr_assert(memcmp(b, "second", 6) == 0);
	free(b);
	cr_assert_neq(faccessat(dfd, "f.tmp", F_OK, 0), 0, "no tmp left behind");
	cr_assert_eq(seg_read_file(dfd, "missing", 100, &b, &len), -ENOENT);
	unlinkat(dfd, "f", 0);
	close(dfd);
	rmdir(dir);
}
