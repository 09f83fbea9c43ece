# Benchmark tools (not tests): used by scripts/bench-*.sh.
add_executable(tapio-connstorm bench/connstorm.c)
set_target_properties(tapio-connstorm PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
