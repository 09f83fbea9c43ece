# Benchmark tools (not tests): used by scripts/bench-*.sh.
add_executable(tapio-connstorm bench/connstorm.c)
set_target_properties(tapio-connstorm PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
find_package(Threads REQUIRED)
add_executable(tapio-rawbaseline bench/rawbaseline.c)
target_link_libraries(tapio-rawbaseline PRIVATE Threads::Threads)
set_target_properties(tapio-rawbaseline PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
