# Observers: classification and state machines on synthetic records (no BPF, no libuv).
tapio_add_test(test_obs_network SOURCES unit/test_obs_network.c LIBS tapio_observers m)
tapio_add_test(test_obs_container SOURCES unit/test_obs_container.c LIBS tapio_observers)
tapio_add_test(test_obs_storage SOURCES unit/test_obs_storage.c LIBS tapio_observers)
tapio_add_test(test_obs_node SOURCES unit/test_obs_node.c LIBS tapio_observers)

# Not a test: times classify + build_occurrence + occ_json_write per observer
# (used by scripts/bench-agent.sh).
add_executable(bench_classify unit/bench_classify.c)
target_link_libraries(bench_classify PRIVATE tapio_observers)
