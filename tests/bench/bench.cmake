# Benchmark tools (not tests): used by scripts/bench-*.sh.
add_executable(tapio-connstorm bench/connstorm.c)
set_target_properties(tapio-connstorm PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
find_package(Threads REQUIRED)
add_executable(tapio-rawbaseline bench/rawbaseline.c)
target_link_libraries(tapio-rawbaseline PRIVATE Threads::Threads)
set_target_properties(tapio-rawbaseline PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
# Query latency client (scripts/bench-query.sh): keep-alive HTTP, and the SQLite baseline.
add_executable(tapio-httpbench bench/httpbench.c)
set_target_properties(tapio-httpbench PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
pkg_check_modules(HB_SQLITE3 IMPORTED_TARGET sqlite3)
if(HB_SQLITE3_FOUND)
	target_compile_definitions(tapio-httpbench PRIVATE TAPIO_HAVE_SQLITE=1)
	target_link_libraries(tapio-httpbench PRIVATE PkgConfig::HB_SQLITE3)
endif()
# The query engine in-process (scripts/bench-query.sh): api_handle() on a store opened here.
add_executable(tapio-querybench bench/querybench.c)
target_link_libraries(tapio-querybench PRIVATE tapio_controller_lib)
set_target_properties(tapio-querybench PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
# Page-cache write cost by pwrite size (why controller/store.c writes 64 KiB pieces).
add_executable(tapio-pwritebench bench/pwritebench.c)
set_target_properties(tapio-pwritebench PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
# The EventBatch check per occurrence beside protobuf-c + occ_from_proto (docs/controller.md).
add_executable(tapio-wirebench bench/wirebench.c)
target_link_libraries(tapio-wirebench PRIVATE tapio_occgen tapio_common)
set_target_properties(tapio-wirebench PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
