/*
 * Contract of common/occ_wire (the controller's EventBatch fast path): on realistic batches it
 * takes every frame and gives exactly what the generic path gives (codec decoder + protobuf-c +
 * occ_from_proto: the same structs byte for byte, validity, slices and memory accounting); on
 * anything non-canonical it declines or still agrees (tests/fuzz/occ_wire_diff.c is the oracle,
 * shared with the differential fuzzer).
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/codec.h"
#include "common/occ_proto.h"
#include "common/occ_wire.h"
#include "tests/fuzz/occ_wire_diff.h"
#include "tests/wire_writer.h"
#include "tools/occgen.h"

#define ULID "01JDQ4Z8X9K3M5N7P9R1T3V5W7"

/* Appends occ packed as a tapio.v1.Occurrence (protobuf-c's own encoding). */
static void w_occurrence(struct wbuf *w, const struct tapio_occurrence *occ)
{
	Tapio__V1__Occurrence msg;
	struct occ_proto_scratch scratch;
	uint8_t buf[4096];

	occ_to_proto(occ, &msg, &scratch);
	cr_assert_leq(tapio__v1__occurrence__get_packed_size(&msg), sizeof(buf));
	w_raw(w, buf, tapio__v1__occurrence__pack(&msg, buf));
}

/* Wraps occurrence bytes (each element of occs, lens) into a Frame{EventBatch} payload. */
static void w_frame(struct wbuf *out, const struct wbuf *body)
{
	w_field_bytes(out, 4, body->b, body->n);
}

/* Runs the oracle on a payload and returns whether the fast path took it. */
static bool agree(const uint8_t *p, size_t len, const char *what)
{
	bool took = false;
	const char *why = occ_wire_diff(p, len, &took);

	cr_assert_null(why, "%s: %s", what, why);
	return took;
}

/* A frame of occurrences from occgen, packed by protobuf-c as an agent packs it. */
static void realistic_frame(struct wbuf *out, struct occgen *g, size_t n, uint64_t seq)
{
	struct wbuf body = {0}, one = {0};
	struct tapio_occurrence occ;

	w_field_varint(&body, 1, 0x1234567890abcdefull);
	w_field_varint(&body, 2, seq);
	for (size_t i = 0; i < n; i++) {
		occgen_fill(g, &occ, (uint32_t)(seq * 131 + i), "prod-eu");
		snprintf(occ.node, sizeof(occ.node), "node-%03zu", i % 7);
		one.n = 0;
		w_occurrence(&one, &occ);
		w_field_bytes(&body, 3, one.b, one.n);
	}
	w_frame(out, &body);
	w_free(&body);
	w_free(&one);
}

Test(occ_wire, realistic_batches_decode_exactly_as_the_generic_path, .timeout = 60)
{
	/* sizes around protobuf-c's scan slabs (16, 48, 112, …) and the agent's default 512 */
	static const size_t sizes[] = {0,  1,  2,  11,	14,  15,  16,  17,
				       47, 48, 49, 111, 112, 113, 512, 2000};
	struct occgen g;
	size_t total = 0;

	occgen_seed(&g, 42);
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		for (uint64_t round = 1; round <= 3; round++) {
			struct wbuf f = {0};
			char what[64];

			realistic_frame(&f, &g, sizes[s], round);
			snprintf(what, sizeof(what), "%zu occurrences, round %llu", sizes[s],
				 (unsigned long long)round);
			cr_assert(agree(f.b, f.n, what), "%s: fast path declined", what);
			total += sizes[s];
			w_free(&f);
		}
	}
	cr_log_info("%zu realistic occurrences: fast == generic", total);
}

/*
 * Check mode compares an occurrence's Context with the one before it and reuses that one's
 * outcome when the bytes are equal: runs of one Context, changes to another of the same
 * length, back again, Contexts of 1-16, 17-32 and more bytes, without a node, with an empty
 * cluster. Each frame must be taken and summarised exactly as the generic path decodes it.
 */
Test(occ_wire, repeated_contexts_are_summarised_as_parsed, .timeout = 30)
{
	static const char *const clusters[] = {"", "c", "prod-eu", "a-much-longer-cluster-name",
					       "cluster-name-long-enough-for-memcmp-path-0123"};
	static const char *const nodes[] = {"node-a", "node-b", "", "n", "node-a-long-name-xyz"};
	struct occgen g;
	size_t frames = 0;

	occgen_seed(&g, 11);
	for (size_t c = 0; c < sizeof(clusters) / sizeof(clusters[0]); c++) {
		for (unsigned pattern = 0; pattern < 6; pattern++) {
			struct wbuf body = {0}, one = {0}, f = {0};
			struct tapio_occurrence occ;

			w_field_varint(&body, 1, 5);
			w_field_varint(&body, 2, pattern + 1);
			for (uint32_t i = 0; i < 40; i++) {
				/* runs of 1..6 of one node, the nodes taken in turn */
				size_t k = (i / (pattern + 1) + pattern) % 5;

				occgen_fill(&g, &occ, i, clusters[c]);
				snprintf(occ.node, sizeof(occ.node), "%s", nodes[k]);
				one.n = 0;
				w_occurrence(&one, &occ);
				w_field_bytes(&body, 3, one.b, one.n);
			}
			w_frame(&f, &body);
			cr_assert(agree(f.b, f.n, "repeated contexts"), "declined");
			frames++;
			w_free(&body);
			w_free(&one);
			w_free(&f);
		}
	}
	/* the same length as the Context before it, but a NUL in its last byte: declined */
	for (size_t len = 1; len <= 40; len++) {
		struct wbuf body = {0}, one = {0}, ctx = {0}, f = {0};
		struct occ_proto_scratch scratch;
		struct tapio_occurrence occ;
		Tapio__V1__Occurrence msg;
		uint8_t buf[4096];
		char node[64];

		memset(node, 'n', len);
		w_field_varint(&body, 1, 6);
		w_field_varint(&body, 2, len);
		for (uint32_t i = 0; i < 3; i++) {
			occgen_fill(&g, &occ, i, "prod-eu");
			occ_to_proto(&occ, &msg, &scratch);
			msg.context = NULL; /* packed by hand below, after the data member */
			size_t n = tapio__v1__occurrence__pack(&msg, buf);
			ctx.n = 0;
			w_field_bytes(&ctx, 1, "prod-eu", 7);
			node[len - 1] = i == 2 ? '\0' : 'n';
			w_field_bytes(&ctx, 2, node, len);
			one.n = 0;
			w_raw(&one, buf, n);
			w_field_bytes(&one, 9, ctx.b, ctx.n);
			w_field_bytes(&body, 3, one.b, one.n);
		}
		w_frame(&f, &body);
		cr_assert_not(agree(f.b, f.n, "a NUL in an equal-length context"), "taken");
		w_free(&body);
		w_free(&one);
		w_free(&ctx);
		w_free(&f);
	}
	cr_log_info("%zu frames of repeated and changing contexts: check == generic", frames);
}

/* tools/loadgen's packing until 2026-11-26: the Context appended after the data member. */
Test(occ_wire, loadgen_field_order_is_taken, .timeout = 30)
{
	struct wbuf body = {0}, one = {0}, ctx = {0}, f = {0};
	struct occ_proto_scratch scratch;
	struct tapio_occurrence occ;
	Tapio__V1__Occurrence msg;
	uint8_t buf[4096];
	struct occgen g;

	occgen_seed(&g, 7);
	w_field_varint(&body, 1, 9);
	w_field_varint(&body, 2, 1);
	w_field_bytes(&ctx, 1, "prod", 4);
	w_field_bytes(&ctx, 2, "node-7", 6);
	for (uint32_t i = 0; i < 3 * TAPIO_OCC__COUNT; i++) {
		occgen_fill(&g, &occ, i, "");
		occ_to_proto(&occ, &msg, &scratch);
		msg.context = NULL;
		one.n = 0;
		w_raw(&one, buf, tapio__v1__occurrence__pack(&msg, buf));
		w_field_bytes(&one, 9, ctx.b, ctx.n);
		w_field_bytes(&body, 3, one.b, one.n);
	}
	w_frame(&f, &body);
	cr_assert(agree(f.b, f.n, "loadgen order"));
	w_free(&body);
	w_free(&one);
	w_free(&ctx);
	w_free(&f);
}

/* The fields of a message p[0..len): where each starts, and (at [n]) the end. */
static size_t split_fields(const uint8_t *p, size_t len, size_t *at, size_t max)
{
	size_t n = 0, i = 0;

	while (i < len) {
		uint64_t key = 0, v = 0;
		int sh = 0;

		cr_assert_lt(n, max);
		at[n++] = i;
		do
			key |= (uint64_t)(p[i] & 0x7f) << sh, sh += 7;
		while (p[i++] & 0x80);
		switch (key & 7) {
		case 0:
			while (p[i++] & 0x80)
				;
			break;
		case 1:
			i += 8;
			break;
		case 2:
			sh = 0;
			do
				v |= (uint64_t)(p[i] & 0x7f) << sh, sh += 7;
			while (p[i++] & 0x80);
			i += v;
			break;
		default:
			cr_assert_fail("wire type %u", (unsigned)(key & 7));
		}
	}
	at[n] = len;
	return n;
}

/* Field k of p as split_fields found it. */
static void w_field_at(struct wbuf *w, const uint8_t *p, const size_t *at, size_t k)
{
	w_raw(w, p + at[k], at[k + 1] - at[k]);
}

/*
 * The decoder reads fields in field-number order first (the ordered pass) and whatever is out
 * of that order in general: fields in any order still decode exactly as the generic path does,
 * and a field repeated after the ordered pass took it is still declined.
 */
Test(occ_wire, fields_in_any_order_are_taken, .timeout = 60)
{
	struct occgen g;
	size_t taken = 0;

	occgen_seed(&g, 11);
	for (uint32_t i = 0; i < 8 * TAPIO_OCC__COUNT; i++) {
		struct wbuf one = {0}, body = {0}, f = {0}, sub = {0};
		struct tapio_occurrence occ;
		size_t at[64], sat[64], n, rot;

		occgen_fill(&g, &occ, i, "prod");
		w_occurrence(&one, &occ);
		n = split_fields(one.b, one.n, at, 63);
		cr_assert_gt(n, 3);
		/* variant 0: reversed; 1: rotated; 2: in order with every sub-message reversed */
		for (int variant = 0; variant < 3; variant++) {
			struct wbuf occb = {0};

			rot = 1 + i % (n - 1);
			for (size_t k = 0; k < n; k++) {
				size_t j = variant == 0	  ? n - 1 - k
					   : variant == 1 ? (k + rot) % n
							  : k;
				const uint8_t *fp = one.b + at[j];
				size_t flen = at[j + 1] - at[j], hdr = 0, m;

				if (variant != 2 || (fp[0] & 7) != 2 || fp[0] == (1 << 3 | 2) ||
				    fp[0] == (3 << 3 | 2) || fp[0] == (7 << 3 | 2)) {
					w_field_at(&occb, one.b, at, j);
					continue;
				}
				/* a sub-message: its key and length, then its fields reversed */
				while (fp[hdr++] & 0x80)
					;
				while (fp[hdr++] & 0x80)
					;
				m = split_fields(fp + hdr, flen - hdr, sat, 63);
				sub.n = 0;
				for (size_t q = m; q-- > 0;)
					w_field_at(&sub, fp + hdr, sat, q);
				cr_assert_eq(sub.n, flen - hdr);
				w_raw(&occb, fp, hdr);
				w_raw(&occb, sub.b, sub.n);
			}
			cr_assert_eq(occb.n, one.n);
			body.n = f.n = 0;
			w_field_varint(&body, 1, 42);
			w_field_varint(&body, 2, i + 1);
			w_field_bytes(&body, 3, occb.b, occb.n);
			w_frame(&f, &body);
			cr_assert(agree(f.b, f.n, "reordered fields"), "occurrence %u variant %d",
				  i, variant);
			taken++;
			/* the timestamp (field 2, taken by the ordered pass) again at the end */
			w_field_fixed64(&occb, 2, 7);
			body.n = f.n = 0;
			w_field_varint(&body, 2, i + 1);
			w_field_bytes(&body, 3, occb.b, occb.n);
			w_frame(&f, &body);
			cr_assert_not(agree(f.b, f.n, "repeated field"), "occurrence %u", i);
			w_free(&occb);
		}
		w_free(&one);
		w_free(&body);
		w_free(&f);
		w_free(&sub);
	}
	cr_log_info("%zu reordered occurrences taken", taken);
}

/* Every field of every observer at an extreme value. */
static void extreme(struct tapio_occurrence *o, enum tapio_occ_type t, int variant)
{
	memset(o, 0, sizeof(*o));
	o->type = t;
	o->severity = variant ? TAPIO_SEV_CRITICAL : TAPIO_SEV_DEBUG;
	o->outcome = variant ? TAPIO_OUT_UNKNOWN : TAPIO_OUT_SUCCESS;
	memcpy(o->id, ULID, TAPIO_ULID_LEN);
	o->timestamp_ns = variant ? UINT64_MAX : 1;
	memset(o->error_message, variant ? '~' : 'm', sizeof(o->error_message) - 1);
	memset(o->cluster, 'c', sizeof(o->cluster) - 1);
	memset(o->node, variant ? 0xff : 'n', sizeof(o->node) - 1); /* not UTF-8: bytes */
	o->config_generation = variant ? UINT64_MAX : 0;
	o->count = variant ? UINT32_MAX : 1;
	o->first_seen_ns = variant ? 1 : 0;
	o->last_seen_ns = variant ? UINT64_MAX : 0;
	switch (tapio_catalogue[t].observer) {
	case TAPIO_OBS_NETWORK:
		o->data.network.pid = UINT32_MAX;
		memset(o->data.network.comm, 'x', sizeof(o->data.network.comm) - 1);
		memset(o->data.network.src_ip, '1', sizeof(o->data.network.src_ip) - 1);
		memset(o->data.network.dst_ip, '2', sizeof(o->data.network.dst_ip) - 1);
		o->data.network.src_port = UINT16_MAX;
		o->data.network.dst_port = variant ? 1 : UINT16_MAX;
		o->data.network.family = variant ? 6 : 4;
		memset(o->data.network.old_state, 'o', sizeof(o->data.network.old_state) - 1);
		memset(o->data.network.new_state, 'n', sizeof(o->data.network.new_state) - 1);
		o->data.network.total_retrans = UINT32_MAX;
		o->data.network.snd_cwnd = UINT32_MAX - 1;
		o->data.network.baseline_ms = variant ? NAN : -0.0;
		o->data.network.current_ms = variant ? INFINITY : 1e308;
		break;
	case TAPIO_OBS_CONTAINER:
		o->data.container.pid = UINT32_MAX;
		o->data.container.tid = 1;
		memset(o->data.container.comm, 'y', sizeof(o->data.container.comm) - 1);
		o->data.container.exit_code = variant ? INT32_MIN : INT32_MAX;
		o->data.container.signal = -1;
		o->data.container.core_dumped = variant;
		o->data.container.cgroup_id = UINT64_MAX;
		memset(o->data.container.cgroup_path, '/',
		       sizeof(o->data.container.cgroup_path) - 1);
		o->data.container.memory_usage_bytes = UINT64_MAX;
		o->data.container.memory_limit_bytes = 1;
		o->data.container.rss_bytes = UINT64_MAX - 1;
		break;
	case TAPIO_OBS_STORAGE:
		o->data.storage.pid = UINT32_MAX;
		memset(o->data.storage.comm, 'z', sizeof(o->data.storage.comm) - 1);
		o->data.storage.dev_major = UINT32_MAX;
		o->data.storage.dev_minor = UINT32_MAX;
		o->data.storage.sector = UINT64_MAX;
		o->data.storage.bytes = UINT32_MAX;
		memset(o->data.storage.opcode, 'w', sizeof(o->data.storage.opcode) - 1);
		o->data.storage.latency_ms = variant ? -INFINITY : 5e-324;
		o->data.storage.error_code = variant ? INT32_MIN : -5;
		break;
	default:
		o->data.node.cpu = variant ? -1 : INT32_MAX;
		o->data.node.cycles = UINT64_MAX;
		o->data.node.instructions = UINT64_MAX - 1;
		o->data.node.stall_cycles = 1ull << 63;
		o->data.node.ipc = variant ? NAN : 0.5;
		o->data.node.stall_pct = 100.0;
		o->data.node.memory_some_avg10 = -1.5;
		o->data.node.memory_full_avg10 = 1e-300;
		break;
	}
}

Test(occ_wire, every_field_at_extreme_values, .timeout = 30)
{
	for (int t = 0; t < TAPIO_OCC__COUNT; t++) {
		for (int variant = 0; variant < 2; variant++) {
			struct wbuf body = {0}, one = {0}, f = {0};
			struct tapio_occurrence occ;
			char what[64];

			extreme(&occ, (enum tapio_occ_type)t, variant);
			w_field_varint(&body, 1, UINT64_MAX);
			w_field_varint(&body, 2, UINT64_MAX);
			w_occurrence(&one, &occ);
			w_field_bytes(&body, 3, one.b, one.n);
			w_frame(&f, &body);
			snprintf(what, sizeof(what), "%s variant %d", tapio_occ_type_name(occ.type),
				 variant);
			cr_assert(agree(f.b, f.n, what), "%s: fast path declined", what);
			w_free(&body);
			w_free(&one);
			w_free(&f);
		}
	}
}

/*
 * The frame of one occurrence of type t (network: connection_refused) whose top-level bytes
 * are those of a valid occurrence without the parts in `omit`, followed by `extra`.
 */
#define OMIT_CONTEXT   1
#define OMIT_DATA      2
#define OMIT_ERROR     4
#define OMIT_CONSTANTS 8 /* source, protocol_version */

static void crafted(struct wbuf *f, enum tapio_occ_type t, int omit, const struct wbuf *extra)
{
	struct wbuf body = {0}, one = {0};
	struct tapio_occurrence occ;
	Tapio__V1__Occurrence msg;
	struct occ_proto_scratch scratch;
	uint8_t buf[4096];

	extreme(&occ, t, 0);
	snprintf(occ.node, sizeof(occ.node), "node-a");
	occ_to_proto(&occ, &msg, &scratch);
	if (omit & OMIT_CONTEXT)
		msg.context = NULL;
	if (omit & OMIT_ERROR)
		msg.error = NULL;
	if (omit & OMIT_DATA)
		msg.data_case = TAPIO__V1__OCCURRENCE__DATA__NOT_SET;
	if (omit & OMIT_CONSTANTS)
		msg.source = msg.protocol_version = "";
	w_raw(&one, buf, tapio__v1__occurrence__pack(&msg, buf));
	if (extra)
		w_raw(&one, extra->b, extra->n);
	w_field_varint(&body, 1, 5);
	w_field_varint(&body, 2, 6);
	w_field_bytes(&body, 3, one.b, one.n);
	f->n = 0;
	w_frame(f, &body);
	w_free(&body);
	w_free(&one);
}

/* Runs one crafted occurrence; expect: 1 the fast path must take it, 0 it must decline. */
static void expect(const char *what, enum tapio_occ_type t, int omit, const struct wbuf *extra,
		   int want)
{
	struct wbuf f = {0};

	crafted(&f, t, omit, extra);
	cr_assert_eq(agree(f.b, f.n, what), want, "%s: fast path %s", what,
		     want ? "declined" : "took it");
	w_free(&f);
}

/*
 * A string with a NUL byte anywhere is declined (copy_str would cut it there), whatever its
 * length: the check reads short strings with overlapping loads, so every length up to 24
 * and every NUL position is tried, in Context.cluster (the same frame without the NUL is
 * taken).
 */
Test(occ_wire, a_nul_anywhere_in_a_string_is_declined, .timeout = 30)
{
	for (size_t len = 1; len <= 24; len++) {
		for (size_t at = 0; at <= len; at++) { /* at == len: no NUL */
			struct wbuf ctx = {0}, extra = {0}, f = {0};
			char cluster[32], what[64];

			memset(cluster, 'c', len);
			if (at < len)
				cluster[at] = '\0';
			w_field_bytes(&ctx, 1, cluster, len);
			w_field_bytes(&ctx, 2, "node-a", 6);
			w_field_bytes(&extra, 9, ctx.b, ctx.n);
			crafted(&f, TAPIO_OCC_CONNECTION_REFUSED, OMIT_CONTEXT, &extra);
			snprintf(what, sizeof(what), "cluster of %zu bytes, NUL at %zu", len, at);
			cr_assert_eq(agree(f.b, f.n, what), at == len, "%s", what);
			w_free(&ctx);
			w_free(&extra);
			w_free(&f);
		}
	}
}

/* Bytes appended to a crafted occurrence, and what the fast path must do with them. */
struct raw_case {
	const char *what;
	enum tapio_occ_type type;
	int omit;
	const char *bytes; /* keys and values as they go on the wire */
	size_t len;
	int want; /* 1 the fast path takes it (and agrees), 0 it declines */
};

#define NET TAPIO_OCC_CONNECTION_REFUSED
#define OOM TAPIO_OCC_OOM_KILL
#define RAW(what, type, omit, bytes, want)                       \
	{                                                        \
		what, type, omit, bytes, sizeof(bytes) - 1, want \
	}

static const struct raw_case raw_cases[] = {
    RAW("baseline", NET, 0, "", 1),
    /* duplicates: protobuf-c keeps the last scalar or string and merges sub-messages */
    RAW("timestamp twice", NET, 0, "\x11\x4d\0\0\0\0\0\0\0", 0),
    RAW("id twice", NET, 0, "\x0a\x1a" ULID, 0),
    RAW("context twice", NET, 0, "\x4a\x00", 0),
    RAW("type twice", NET, 0, "\x20\x01", 0),
    /* the data oneof: twice, two members, missing, the wrong observer's */
    RAW("network data twice", NET, 0, "\xa2\x01\x00", 0),
    RAW("network and node data", NET, 0, "\xba\x01\x00", 0),
    RAW("no data", NET, OMIT_DATA, "", 0),
    RAW("node data for a network type", NET, OMIT_DATA, "\xba\x01\x00", 0),
    RAW("node data for cpu_stall", TAPIO_OCC_CPU_STALL, OMIT_DATA, "\xba\x01\x00", 1),
    /* unknown fields, field number 0, wrong wire types, a group */
    RAW("unknown field 14", NET, 0, "\x70\x01", 0),
    RAW("field number 0", NET, 0, "\x00\x01", 0),
    RAW("unknown field 1000", NET, 0, "\xc0\x3e\x01", 0),
    RAW("config_generation length-delimited", NET, 0, "\x52\x01\x01", 0),
    RAW("first_seen_ns as a varint", NET, 0, "\x60\x05", 0),
    RAW("config_generation as fixed32", NET, 0, "\x55\x01\x00\x00\x00", 0),
    RAW("a group", NET, 0, "\x53", 0),
    /* varints (config_generation, absent from the baseline) */
    RAW("truncated varint", NET, 0, "\x50\x81", 0),
    RAW("11-byte varint", NET, 0, "\x50\x81\x80\x80\x80\x80\x80\x80\x80\x80\x80\x00", 0),
    RAW("varint over 64 bits", NET, 0, "\x50\x81\x80\x80\x80\x80\x80\x80\x80\x80\x7f", 0),
    RAW("10-byte varint 2^63 + 1", NET, 0, "\x50\x81\x80\x80\x80\x80\x80\x80\x80\x80\x01", 1),
    RAW("non-minimal varint", NET, 0, "\x50\x85\x80\x80\x00", 1),
    RAW("non-minimal key, wrong wire type", NET, 0, "\xd2\x00\x00", 0),
    RAW("non-minimal two-byte key", NET, 0, "\xd0\x00\x07", 1),
    RAW("three-byte key", NET, 0, "\xd0\x80\x00\x07", 0),
    RAW("pid over 32 bits", NET, OMIT_DATA, "\xa2\x01\x06\x08\x81\x80\x80\x80\x10", 0),
    RAW("pid 2^32 - 1", NET, OMIT_DATA, "\xa2\x01\x06\x08\xff\xff\xff\xff\x0f", 1),
    /* length prefixes (context) */
    RAW("5-byte length prefix", NET, OMIT_CONTEXT, "\x4a\x80\x80\x80\x80\x00", 1),
    RAW("6-byte length prefix", NET, OMIT_CONTEXT, "\x4a\x80\x80\x80\x80\x80\x00", 0),
    RAW("length past the occurrence", NET, OMIT_CONTEXT, "\x4a\x05\x12", 0),
    /* strings and the constants occ_from_proto checks */
    RAW("NUL inside node", NET, OMIT_CONTEXT, "\x4a\x07\x12\x05no\0de", 0),
    RAW("error.code of another type", NET, OMIT_ERROR, "\x42\x0a\x0a\x08OOM_KILL", 0),
    RAW("error.code of its type", OOM, OMIT_ERROR, "\x42\x0a\x0a\x08OOM_KILL", 1),
    RAW("error.code with a NUL", OOM, OMIT_ERROR, "\x42\x0c\x0a\x0aOOM_KILL\0x", 0),
    RAW("no error, no context", NET, OMIT_ERROR | OMIT_CONTEXT, "", 1),
    /* data values occ_from_proto refuses */
    RAW("src_port 65536", NET, OMIT_DATA, "\xa2\x01\x04\x28\x80\x80\x04", 0),
    RAW("family 5", NET, OMIT_DATA, "\xa2\x01\x02\x38\x05", 0),
    RAW("unknown field in data", NET, OMIT_DATA, "\xa2\x01\x03\x98\x06\x05", 0),
    RAW("core_dumped length-delimited", OOM, OMIT_DATA, "\xaa\x01\x03\x32\x01\x01", 0),
};

Test(occ_wire, non_canonical_occurrences_are_declined, .timeout = 30)
{
	struct wbuf x = {0}, sub = {0};
	char node[TAPIO_NAME_LEN];

	for (size_t i = 0; i < sizeof(raw_cases) / sizeof(raw_cases[0]); i++) {
		const struct raw_case *c = &raw_cases[i];

		x.n = 0;
		w_raw(&x, c->bytes, c->len);
		expect(c->what, c->type, c->omit, &x, c->want);
	}
	/* a string that fills its field (63 bytes and the NUL) and one byte more */
	memset(node, 'n', sizeof(node));
	for (size_t len = TAPIO_NAME_LEN - 1; len <= TAPIO_NAME_LEN; len++) {
		sub.n = x.n = 0;
		w_field_bytes(&sub, 2, node, len);
		w_field_bytes(&x, 9, sub.b, sub.n);
		expect(len < TAPIO_NAME_LEN ? "node of 63 bytes" : "node of 64 bytes", NET,
		       OMIT_CONTEXT, &x, len < TAPIO_NAME_LEN);
	}
	static const struct {
		uint32_t field;
		const char *value;
		int want;
	} consts[] = {
	    {3, "tapio", 1}, {3, "", 1}, {3, "tapio2", 0}, {3, "Tapio", 0}, {7, "1.0", 1},
	    {7, "1.9x", 1},  {7, "", 1}, {7, "2.0", 0},	   {7, "1", 0},	    {7, "1,0", 0},
	};
	for (size_t i = 0; i < sizeof(consts) / sizeof(consts[0]); i++) {
		char what[64];

		x.n = 0;
		w_field_bytes(&x, consts[i].field, consts[i].value, strlen(consts[i].value));
		snprintf(what, sizeof(what), "field %u \"%s\"", consts[i].field, consts[i].value);
		expect(what, NET, OMIT_CONSTANTS, &x, consts[i].want);
	}
	w_free(&x);
	w_free(&sub);
}

/* One occurrence written field by field (type/severity/outcome/id/timestamp/node/data). */
static void w_minimal(struct wbuf *w, uint64_t type, uint64_t sev, uint64_t out, const char *id)
{
	struct wbuf ctx = {0};

	if (id)
		w_field_bytes(w, 1, id, strlen(id));
	w_field_fixed64(w, 2, 1764077000000000000ull);
	if (type != UINT64_MAX)
		w_field_varint(w, 4, type);
	if (sev != UINT64_MAX)
		w_field_varint(w, 5, sev);
	if (out != UINT64_MAX)
		w_field_varint(w, 6, out);
	w_field_bytes(&ctx, 2, "n", 1);
	w_field_bytes(w, 9, ctx.b, ctx.n);
	w_field_bytes(w, 23, NULL, 0); /* NodeData: type 9..11 */
	w_free(&ctx);
}

static bool minimal_frame(uint64_t type, uint64_t sev, uint64_t out, const char *id)
{
	struct wbuf one = {0}, body = {0}, f = {0};
	bool took;

	w_minimal(&one, type, sev, out, id);
	w_field_varint(&body, 2, 1);
	w_field_bytes(&body, 3, one.b, one.n);
	w_frame(&f, &body);
	took = agree(f.b, f.n, "minimal");
	w_free(&one);
	w_free(&body);
	w_free(&f);
	return took;
}

Test(occ_wire, enums_and_ids, .timeout = 30)
{
	cr_assert(minimal_frame(9, 3, 2, ULID));
	cr_assert_not(minimal_frame(UINT64_MAX, 3, 2, ULID), "type missing");
	cr_assert_not(minimal_frame(0, 3, 2, ULID), "type 0");
	cr_assert_not(minimal_frame(12, 3, 2, ULID), "type 12");
	cr_assert_not(minimal_frame(9, 6, 2, ULID), "severity 6");
	cr_assert_not(minimal_frame(9, 3, 0, ULID), "outcome 0");
	cr_assert_not(minimal_frame((1ull << 32) + 9, 3, 2, ULID), "type over 32 bits");
	cr_assert_not(minimal_frame(UINT64_MAX - 1, 3, 2, ULID), "negative type");
	/* a bad ULID is taken: occurrence_validate refuses it on both paths alike */
	cr_assert(minimal_frame(9, 3, 2, "not-a-ulid"));
	cr_assert(minimal_frame(9, 3, 2, NULL));
}

Test(occ_wire, batch_and_frame_shapes, .timeout = 30)
{
	struct wbuf one = {0}, body = {0}, f = {0};
	struct occgen g;
	struct tapio_occurrence occ;

	occgen_seed(&g, 3);
	occgen_fill(&g, &occ, 0, "c");
	w_occurrence(&one, &occ);

#define CASE(want, what, ...)                                                       \
	do {                                                                        \
		body.n = f.n = 0;                                                   \
		__VA_ARGS__;                                                        \
		cr_assert_eq(agree(f.b, f.n, what), want, "%s: fast path %s", what, \
			     want ? "declined" : "took it");                        \
	} while (0)

	CASE(1, "plain", w_field_varint(&body, 1, 1); w_field_varint(&body, 2, 2);
	     w_field_bytes(&body, 3, one.b, one.n); w_frame(&f, &body));
	CASE(1, "fields after occurrences", w_field_bytes(&body, 3, one.b, one.n);
	     w_field_varint(&body, 2, 2); w_field_varint(&body, 1, 1); w_frame(&f, &body));
	CASE(1, "empty batch", w_frame(&f, &body));
	CASE(0, "sequence twice", w_field_varint(&body, 2, 1); w_field_varint(&body, 2, 2);
	     w_field_bytes(&body, 3, one.b, one.n); w_frame(&f, &body));
	CASE(0, "session_id twice", w_field_varint(&body, 1, 1); w_field_varint(&body, 1, 1);
	     w_frame(&f, &body));
	CASE(0, "session_id length-delimited (packed)", w_field_bytes(&body, 1, "\x01", 1);
	     w_frame(&f, &body));
	CASE(0, "occurrences as a varint (unpacked scalar)", w_field_varint(&body, 3, 1);
	     w_frame(&f, &body));
	CASE(0, "unknown batch field", w_field_varint(&body, 4, 1); w_frame(&f, &body));
	CASE(0, "event_batch twice", w_field_bytes(&body, 3, one.b, one.n); w_frame(&f, &body);
	     w_frame(&f, &body));
	CASE(0, "hello and event_batch", w_field_bytes(&body, 3, one.b, one.n);
	     w_field_bytes(&f, 1, NULL, 0); w_frame(&f, &body));
	CASE(0, "unknown frame field", w_field_bytes(&body, 3, one.b, one.n); w_frame(&f, &body);
	     w_field_varint(&f, 10, 1));
	CASE(0, "a heartbeat", w_field_bytes(&f, 3, NULL, 0));
	CASE(0, "batch length past the payload", w_field_bytes(&body, 3, one.b, one.n);
	     w_frame(&f, &body); f.n--);
#undef CASE
	w_free(&one);
	w_free(&body);
	w_free(&f);
}

/* Every truncation and every single-byte change of a small mixed batch: decline or agree. */
Test(occ_wire, mutations_decline_or_agree, .timeout = 120)
{
	struct wbuf body = {0}, one = {0}, f = {0};
	struct tapio_occurrence occ;
	struct occgen g;
	size_t took = 0, runs = 0;
	uint8_t *m;

	occgen_seed(&g, 11);
	w_field_varint(&body, 1, 300);
	w_field_varint(&body, 2, 70000);
	for (uint32_t t = 0; t < TAPIO_OCC__COUNT; t += 4) { /* network, container, storage */
		occgen_fill(&g, &occ, t, "c");
		one.n = 0;
		w_occurrence(&one, &occ);
		w_field_bytes(&body, 3, one.b, one.n);
	}
	w_frame(&f, &body);
	m = malloc(f.n);
	cr_assert_not_null(m);
	for (size_t cut = 0; cut <= f.n; cut++) {
		took += agree(f.b, cut, "truncated");
		runs++;
	}
	for (size_t at = 0; at < f.n; at++) {
		for (unsigned v = 0; v < 256; v += (at % 3) + 1) {
			memcpy(m, f.b, f.n);
			m[at] = (uint8_t)v;
			took += agree(m, f.n, "mutated");
			runs++;
		}
	}
	cr_log_info("%zu of %zu truncated/mutated frames taken by the fast path", took, runs);
	cr_assert_gt(took, f.n, "mutations inside string bytes keep the frame canonical");
	free(m);
	w_free(&body);
	w_free(&one);
	w_free(&f);
}

/* A frame the generic path refuses for its memory budget is declined, not taken. */
Test(occ_wire, over_budget_frames_are_declined, .timeout = 60)
{
	struct wbuf one = {0}, body = {0}, f = {0};
	struct occ_wire_batch b;
	struct codec_decoder d;
	Tapio__V1__Frame *frame;
	uint8_t *buf;
	bool took;

	/* valid-looking occurrences of 10 bytes each decode to ~25 times their size */
	w_field_varint(&one, 4, 9);
	w_field_varint(&one, 5, 1);
	w_field_varint(&one, 6, 1);
	w_field_bytes(&one, 23, NULL, 0);
	for (int i = 0; i < 100000; i++)
		w_field_bytes(&body, 3, one.b, one.n);
	w_frame(&f, &body);
	cr_assert_null(occ_wire_diff(f.b, f.n, &took));
	cr_assert_not(took);
	cr_assert_eq(occ_wire_batch_scan(f.b, f.n, &b), 0, "the shape is fine");
	cr_assert_eq(b.n, 100000);

	buf = malloc(f.n + CODEC_HEADER_LEN);
	cr_assert_not_null(buf);
	buf[0] = (uint8_t)(f.n >> 24);
	buf[1] = (uint8_t)(f.n >> 16);
	buf[2] = (uint8_t)(f.n >> 8);
	buf[3] = (uint8_t)f.n;
	memcpy(buf + CODEC_HEADER_LEN, f.b, f.n);
	codec_decoder_init(&d, 0);
	cr_assert_eq(codec_decoder_feed(&d, buf, f.n + CODEC_HEADER_LEN),
		     (ssize_t)(f.n + CODEC_HEADER_LEN));
	cr_assert_eq(codec_decoder_next(&d, &frame), CODEC_ERR_FRAME_TOO_COMPLEX);
	codec_decoder_fini(&d);
	free(buf);
	w_free(&one);
	w_free(&body);
	w_free(&f);
}

/* peek + consume leave the decoder exactly as _next would have. */
Test(occ_wire, decoder_peek_and_consume, .timeout = 10)
{
	struct wbuf f = {0}, stream = {0};
	struct codec_decoder d;
	struct occgen g;
	const uint8_t *payload;
	Tapio__V1__Frame *frame;
	size_t len;

	occgen_seed(&g, 5);
	realistic_frame(&f, &g, 3, 1);
	for (int i = 0; i < 2; i++) {
		uint8_t hdr[4] = {(uint8_t)(f.n >> 24), (uint8_t)(f.n >> 16), (uint8_t)(f.n >> 8),
				  (uint8_t)f.n};

		w_raw(&stream, hdr, 4);
		w_raw(&stream, f.b, f.n);
	}
	codec_decoder_init(&d, 0);
	cr_assert_eq(codec_decoder_peek(&d, &payload, &len), 0);
	cr_assert_eq(codec_decoder_feed(&d, stream.b, stream.n), (ssize_t)stream.n);
	cr_assert_eq(codec_decoder_peek(&d, &payload, &len), 1);
	cr_assert_eq(len, f.n);
	cr_assert_eq(memcmp(payload, f.b, f.n), 0);
	cr_assert_eq(codec_decoder_peek(&d, &payload, &len), 1, "peek consumes nothing");
	codec_decoder_consume(&d, 1234);
	cr_assert_eq(d.frames, 1);
	cr_assert_eq(d.last_payload, payload);
	cr_assert_eq(d.last_payload_len, f.n);
	cr_assert_eq(d.last_unpack_bytes, 1234);
	cr_assert_eq(d.last_unknown_fields, 0);
	cr_assert_eq(codec_decoder_pending(&d), f.n + 4);
	cr_assert_eq(codec_decoder_next(&d, &frame), 1, "the second frame follows");
	cr_assert_eq(frame->msg_case, TAPIO__V1__FRAME__MSG_EVENT_BATCH);
	cr_assert_eq(frame->event_batch->n_occurrences, 3);
	tapio__v1__frame__free_unpacked(frame, NULL);
	cr_assert_eq(codec_decoder_pending(&d), 0);
	codec_decoder_fini(&d);
	w_free(&f);
	w_free(&stream);
}

/*
 * occ_wire_decode_occurrence (one stored occurrence, as the query API reads it): whatever the
 * batch decoder takes as the one occurrence of a frame, it takes with the same struct, and what
 * the batch decoder declines it declines.
 */
static void same_as_batch(const uint8_t *p, size_t len, const char *what)
{
	struct wbuf body = {0}, f = {0};
	struct occ_wire_batch b;
	struct tapio_occurrence one, batch;
	const uint8_t *wire;
	size_t wire_len;
	int r1, rb;

	w_field_bytes(&body, 3, p, len);
	w_frame(&f, &body);
	rb = occ_wire_batch_scan(f.b, f.n, &b) == 0 && b.n == 1 &&
		     occ_wire_batch_decode(&b, SIZE_MAX, &batch, &wire, &wire_len) == 0
		 ? 0
		 : -1;
	r1 = occ_wire_decode_occurrence(p, len, &one);
	cr_assert_eq(r1, rb, "%s: single %d, batch %d", what, r1, rb);
	if (r1 == 0)
		cr_assert(memcmp(&one, &batch, sizeof(one)) == 0, "%s: structs differ", what);
	w_free(&body);
	w_free(&f);
}

Test(occ_wire, single_occurrence_decodes_as_in_a_batch, .timeout = 60)
{
	struct occgen g;
	struct wbuf one = {0};
	struct tapio_occurrence occ;
	uint64_t x = 7;
	size_t taken = 0;

	occgen_seed(&g, 7);
	for (uint32_t i = 0; i < 20000; i++) {
		char what[64];

		occgen_fill(&g, &occ, i, "prod-eu");
		one.n = 0;
		w_occurrence(&one, &occ);
		snprintf(what, sizeof(what), "occurrence %u", i);
		same_as_batch(one.b, one.n, what);
		{
			struct tapio_occurrence back;

			cr_assert_eq(occ_wire_decode_occurrence(one.b, one.n, &back), 0, "%s",
				     what);
			taken++;
		}
		/* and mutated: flipped bytes, truncations */
		for (int m = 0; m < 4; m++) {
			uint8_t copy[4096];
			size_t n = one.n;

			memcpy(copy, one.b, n);
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			if (m == 0)
				n = (size_t)(x % (n + 1));
			else
				copy[x % n] ^= (uint8_t)(1u << (x >> 32) % 8);
			snprintf(what, sizeof(what), "occurrence %u, mutation %d", i, m);
			same_as_batch(copy, n, what);
		}
	}
	w_free(&one);
	cr_log_info("%zu occurrences taken one at a time", taken);
}

/* The inlined short compare agrees with memcmp at every length and every differing byte. */
Test(occ_wire, bytes_equal_agrees_with_memcmp, .timeout = 10)
{
	for (size_t n = 0; n <= 40; n++) {
		/* exact-size heap copies: ASan sees any read past either range */
		unsigned char *a = malloc(n + 1), *b = malloc(n + 1);

		cr_assert(a && b);
		for (size_t i = 0; i < n; i++)
			a[i] = b[i] = (unsigned char)(i * 29 + n);
		cr_assert(occ_bytes_equal(a, b, n), "equal, n %zu", n);
		for (size_t at = 0; at < n; at++) {
			b[at] ^= 0x10;
			cr_assert_not(occ_bytes_equal(a, b, n), "differs at %zu of %zu", at, n);
			b[at] ^= 0x10;
		}
		free(a);
		free(b);
	}
}
