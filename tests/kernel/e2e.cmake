# Real-kernel end-to-end tests: the real tapio-agent process (needs root; skips say why).
if(TAPIO_HAVE_BPF)
	tapio_add_test(test_agent_e2e
		SOURCES kernel/test_agent_e2e.c kernel/agent_harness.c
		LIBS PkgConfig::JANSSON
		LABELS kernel
		TIMEOUT 900)
	add_dependencies(test_agent_e2e tapio-agent)
endif()
