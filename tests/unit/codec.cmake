# Wire protocol: framing codec and C <-> protobuf conversions.
tapio_add_test(test_codec SOURCES unit/test_codec.c LIBS tapio_common tapio_proto TIMEOUT 120)
tapio_add_test(test_occ_proto SOURCES unit/test_occ_proto.c LIBS tapio_common tapio_proto)
