/*
 * The correctness oracle of the EventBatch fast path (common/occ_wire.h), shared by the unit
 * test (tests/unit/test_occ_wire.c) and the differential fuzzer (tests/fuzz/fuzz_occ_wire.c):
 * one frame payload decoded by the fast path and by the generic path (codec decoder +
 * occ_from_proto + occurrence_validate), compared.
 */
#ifndef TAPIO_TESTS_OCC_WIRE_DIFF_H
#define TAPIO_TESTS_OCC_WIRE_DIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Decodes payload[0..len) (one Frame payload, 1..CODEC_MAX_FRAME_LIMIT bytes) both ways. The
 * fast path may decline; when it accepts, the generic path must decode the same frame
 * (EventBatch, no unknown fields, the same memory accounting, session_id and sequence) and
 * agree on every occurrence: occ_from_proto succeeds and gives a struct identical to the fast
 * one byte for byte, occurrence_validate gives the same verdict, and the fast path's slices are
 * those codec_batch_occurrences cuts. The check mode (occ_wire_iter_check) must take exactly
 * the frames the decoder takes, with the same slices and accounting, and summarise every
 * occurrence as its decoded struct and occurrence_validate say. Returns NULL when all that holds (*fast_took says
 * whether the fast path accepted), else a static description of the first difference.
 */
const char *occ_wire_diff(const uint8_t *payload, size_t len, bool *fast_took);

#endif
