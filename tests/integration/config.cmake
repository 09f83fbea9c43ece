# Config distribution against the real tapio-controller (--profile, reloads, pushes).
tapio_add_test(test_config_push SOURCES integration/test_config_push.c
	LIBS tapio_controller_lib PkgConfig::JANSSON TIMEOUT 300 LABELS integration)
add_dependencies(test_config_push tapio-controller)
# Config distribution logic and the agent's persisted applied config (no BPF, no network).
tapio_add_test(test_config_dist SOURCES unit/test_config_dist.c
	LIBS tapio_controller_lib tapio_agent_core TIMEOUT 120)
