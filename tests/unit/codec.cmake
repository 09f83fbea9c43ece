# Wire protocol: framing codec and C <-> protobuf conversions.
tapio_add_test(test_codec SOURCES unit/test_codec.c LIBS tapio_common tapio_proto TIMEOUT 120)
tapio_add_test(test_occ_proto SOURCES unit/test_occ_proto.c LIBS tapio_common tapio_proto)
# The controller's EventBatch fast path against the generic decoder (the oracle is shared with
# tests/fuzz/fuzz_occ_wire.c).
tapio_add_test(test_occ_wire SOURCES unit/test_occ_wire.c fuzz/occ_wire_diff.c
	LIBS tapio_common tapio_proto tapio_occgen m TIMEOUT 240)
