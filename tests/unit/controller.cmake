# Controller unit tests (store, segment format, aggregation).
tapio_add_test(test_segment SOURCES unit/test_segment.c LIBS tapio_controller_lib)
tapio_add_test(test_store SOURCES unit/test_store.c LIBS tapio_controller_lib PkgConfig::LIBUV)
tapio_add_test(test_aggregate SOURCES unit/test_aggregate.c LIBS tapio_controller_lib)
