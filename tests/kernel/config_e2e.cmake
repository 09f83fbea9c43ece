# Remote configuration on the real kernel: real tapio-agent + real tapio-controller --profile
# (needs root; skips say why).
if(TAPIO_HAVE_BPF AND TARGET tapio-controller)
	tapio_add_test(test_config_e2e
		SOURCES kernel/test_config_e2e.c kernel/agent_harness.c
		LIBS PkgConfig::JANSSON
		LABELS kernel
		TIMEOUT 600)
	add_dependencies(test_config_e2e tapio-agent tapio-controller)
endif()
