/*
 * Differential libFuzzer harness for the controller's EventBatch fast path (common/occ_wire):
 * the input is one frame payload; the fast path must decline it or agree with the generic path
 * (codec decoder + protobuf-c + occ_from_proto) on everything: accept decision, memory
 * accounting, batch numbers, every occurrence byte for byte, validity and slices
 * (occ_wire_diff.c). Run by tests/fuzz/run_fuzzer.sh fuzz_occ_wire (ctest fuzz_occ_wire_smoke).
 *
 * Built with -DFUZZ_OCC_WIRE_SEEDS it is instead a small program that writes a seed corpus of
 * realistic batches (tools/occgen: every type, protobuf-c's packing and loadgen's) into argv[1].
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "occ_wire_diff.h"

#ifndef FUZZ_OCC_WIRE_SEEDS

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *why;
	bool took;

	if (size == 0)
		return 0;
	why = occ_wire_diff(data, size, &took);
	if (why) {
		fprintf(stderr, "fuzz_occ_wire: fast path and generic path differ: %s\n", why);
		__builtin_trap();
	}
	return 0;
}

#else /* FUZZ_OCC_WIRE_SEEDS */

#include "common/occ_proto.h"
#include "tools/occgen.h"

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
	do {
		*p++ = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
	return p;
}

/*
 * A Frame{EventBatch} of n occgen occurrences into out (room for 64 KiB); `loadgen` packs the
 * Context after the data member as tools/loadgen does. Returns the payload length.
 */
static size_t batch(uint8_t *out, struct occgen *g, uint32_t n, uint32_t first, bool loadgen)
{
	static uint8_t body[60000];
	uint8_t *p = body, *o = out;

	p = put_varint(p, 1 << 3 | 0);
	p = put_varint(p, 77);
	p = put_varint(p, 2 << 3 | 0);
	p = put_varint(p, first + 1);
	for (uint32_t i = 0; i < n; i++) {
		struct tapio_occurrence occ;
		struct occ_proto_scratch scratch;
		Tapio__V1__Occurrence msg;
		uint8_t one[4096];
		size_t len;

		occgen_fill(g, &occ, first + i, "prod");
		snprintf(occ.node, sizeof(occ.node), "node-%u", i % 3);
		occ_to_proto(&occ, &msg, &scratch);
		if (loadgen)
			msg.context = NULL;
		len = tapio__v1__occurrence__pack(&msg, one);
		if (loadgen) {
			one[len++] = 9 << 3 | 2;
			one[len++] = 8;
			memcpy(one + len, "\x12\x06node-1", 8);
			len += 8;
		}
		p = put_varint(p, 3 << 3 | 2);
		p = put_varint(p, len);
		memcpy(p, one, len);
		p += len;
	}
	o = put_varint(o, 4 << 3 | 2);
	o = put_varint(o, (uint64_t)(p - body));
	memcpy(o, body, (size_t)(p - body));
	return (size_t)(o - out) + (size_t)(p - body);
}

int main(int argc, char **argv)
{
	static const uint32_t sizes[] = {1, 2, 3, 11, 17};
	static uint8_t out[65536];
	struct occgen g;
	int rc = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	occgen_seed(&g, 1);
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]) && rc == 0; s++) {
		for (int loadgen = 0; loadgen < 2 && rc == 0; loadgen++) {
			size_t len = batch(out, &g, sizes[s], (uint32_t)s * 5, loadgen);
			char path[4096];
			FILE *fp;

			snprintf(path, sizeof(path), "%s/seed-batch-%u%s", argv[1], sizes[s],
				 loadgen ? "-loadgen" : "");
			fp = fopen(path, "wb");
			if (!fp) {
				perror(path);
				return 1;
			}
			fwrite(out, 1, len, fp);
			rc = fclose(fp);
		}
	}
	return rc ? 1 : 0;
}

#endif
