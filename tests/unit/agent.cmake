# Agent runtime: sinks and configuration (tapio_agent_core, no BPF needed).
find_package(Threads REQUIRED)
tapio_add_test(test_sink_file SOURCES unit/test_sink_file.c LIBS tapio_agent_core Threads::Threads)
tapio_add_test(test_agent_config SOURCES unit/test_agent_config.c LIBS tapio_agent_core)
tapio_add_test(test_settings_yaml SOURCES unit/test_settings_yaml.c LIBS tapio_common PkgConfig::YAML)
if(TAPIO_HAVE_BPF)
	# The real tapio-agent process (needs root; skips say why).
	tapio_add_test(test_agent_run SOURCES unit/test_agent_run.c)
	add_dependencies(test_agent_run tapio-agent)
endif()
