/*
 * The controller's fast path for EventBatch frames: parses a packed tapio.v1.Frame holding one
 * EventBatch straight from the wire into struct tapio_occurrence, without protobuf-c, without
 * allocating, and with exactly the result the generic path (codec_decoder_next_arena, which
 * unpacks with protobuf-c and strips unknown fields, then occ_from_proto) would have.
 *
 * It only takes the canonical shape: a Frame whose one field is event_batch; a batch of
 * session_id, sequence (each at most once) and occurrences; occurrences and their
 * sub-messages with known fields only, each at most once, with the expected wire type, one
 * `data` member, varints that fit their field, strings without NUL bytes that fit their C
 * field, and every value occ_from_proto accepts; and a frame whose protobuf-c unpack would
 * stay within the codec's memory budget. Anything else is declined, never rejected: the
 * caller hands the frame to the generic path, whose errors, counters and Error frames then
 * apply unchanged. See docs/controller.md (Ingest fast path) and tests/unit/test_occ_wire.c.
 */
#ifndef TAPIO_OCC_WIRE_H
#define TAPIO_OCC_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/occurrence.h"

/*
 * a[0..n) == b[0..n), inlined for the short strings the fast path compares (error codes, node
 * names): two overlapping loads per operand, nothing read outside either range; memcmp past
 * 16 bytes.
 */
static inline bool occ_bytes_equal(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;
	uint64_t x0, x1, y0, y1;
	uint32_t u0, u1, v0, v1;

	if (n >= 8 && n <= 16) {
		memcpy(&x0, x, 8);
		memcpy(&x1, x + n - 8, 8);
		memcpy(&y0, y, 8);
		memcpy(&y1, y + n - 8, 8);
		return ((x0 ^ y0) | (x1 ^ y1)) == 0;
	}
	if (n >= 4 && n < 8) {
		memcpy(&u0, x, 4);
		memcpy(&u1, x + n - 4, 4);
		memcpy(&v0, y, 4);
		memcpy(&v1, y + n - 4, 4);
		return ((u0 ^ v0) | (u1 ^ v1)) == 0;
	}
	if (n < 4) {
		for (size_t i = 0; i < n; i++)
			if (x[i] != y[i])
				return false;
		return true;
	}
	return memcmp(x, y, n) == 0;
}

struct occ_wire_batch {
	uint64_t session_id;
	uint64_t sequence;
	size_t n;	     /* occurrences in the batch */
	size_t unpack_bytes; /* what protobuf-c would allocate for the frame (set by _decode) */
	const uint8_t *body; /* the EventBatch message's bytes, inside the payload */
	size_t body_len;
};

/*
 * Step 1: checks that payload[0..len) is a Frame whose only field is one event_batch, and a
 * batch whose fields are session_id and sequence (each at most once, varints) and
 * occurrences (length-delimited); fills *b (not unpack_bytes). Returns 0, or -1 when the
 * frame is anything else (the caller decodes it generically). Reads only the batch's top
 * level: the caller sizes its arrays for b->n before step 2.
 */
int occ_wire_batch_scan(const uint8_t *payload, size_t len, struct occ_wire_batch *b);

/*
 * Step 2: decodes every occurrence of b (scanned above) into occ[0..b->n), each zeroed first
 * and filled exactly as occ_from_proto fills it, and sets wire[i]/wire_len[i] to the bytes of
 * occurrence i as received (inside the payload, as codec_batch_occurrences slices them) and
 * b->unpack_bytes. Returns 0, or -1 when any occurrence is not canonical, occ_from_proto would
 * refuse it, or the frame's protobuf-c unpack would need more than budget bytes
 * (codec_unpack_budget); then the arrays hold garbage and the caller decodes the frame
 * generically. occurrence_validate() is still the caller's job, as on the generic path.
 */
int occ_wire_batch_decode(struct occ_wire_batch *b, size_t budget, struct tapio_occurrence *occ,
			  const uint8_t **wire, size_t *wire_len);

/*
 * Step 2 one occurrence at a time, so the caller can use each while it is still in the cache
 * (the batch decoder above is these in a loop): after occ_wire_iter_init, every
 * occ_wire_iter_next decodes the next occurrence into *occ (zeroed first) and its received
 * bytes into *wire and *wire_len and returns 1; after the last one it checks the whole frame, sets
 * b->unpack_bytes and returns 0. -1 at any step means the frame is declined, as above.
 */
struct occ_wire_iter {
	const uint8_t *p, *end;
	size_t i, members, mem;
	/*
	 * Check mode: the last Context checked (its bytes in the frame, what it added to mem
	 * beyond its struct, where its node is in it: SIZE_MAX for none). An agent's
	 * occurrences carry the same Context, which is then compared instead of parsed again.
	 */
	const uint8_t *ctx;
	size_t ctx_len, ctx_mem, ctx_node_off, ctx_node_len;
};

void occ_wire_iter_init(struct occ_wire_iter *it, const struct occ_wire_batch *b);
int occ_wire_iter_next(struct occ_wire_iter *it, struct occ_wire_batch *b, size_t budget,
		       struct tapio_occurrence *occ, const uint8_t **wire, size_t *wire_len);

/*
 * What a caller that stores the received bytes needs of one occurrence: its summary.
 * node points at context.node's bytes inside the frame (no NUL after them).
 */
struct occ_wire_summary {
	uint64_t timestamp_ns;
	const uint8_t *node;
	uint8_t node_len; /* < TAPIO_NAME_LEN; 0 when the occurrence names no node */
	uint8_t type, severity;
	bool valid; /* occurrence_validate() accepts the occurrence */
};
/*
 * occ_wire_iter_next in check mode: takes and declines exactly the frames and occurrences
 * _next does, but checks each occurrence where it lies in the frame instead of building its
 * struct, and gives its summary: its validity exactly as occurrence_validate() judges the
 * struct _next would have built (tests/fuzz/occ_wire_diff.c holds it to that).
 */
int occ_wire_iter_check(struct occ_wire_iter *it, struct occ_wire_batch *b, size_t budget,
			struct occ_wire_summary *s, const uint8_t **wire, size_t *wire_len);

/*
 * One packed tapio.v1.Occurrence p[0..len) (as the store keeps it) into *occ, zeroed first and
 * filled exactly as protobuf-c unpack + occ_from_proto would fill it, under the same canonical
 * shape rules as the batch decoder (without a memory budget: the caller bounds len). Returns 0,
 * or -1 (declined: not canonical, or occ_from_proto would refuse it); then *occ holds garbage
 * and the caller decodes the bytes generically. occurrence_validate() stays the caller's job.
 */
int occ_wire_decode_occurrence(const uint8_t *p, size_t len, struct tapio_occurrence *occ);

#endif
