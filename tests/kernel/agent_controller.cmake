# The agent's controller mode end to end: the real tapio-agent (root, real BPF) against the
# real tapio-controller over loopback (skips say why).
if(TAPIO_HAVE_BPF AND TARGET tapio-controller)
	tapio_add_test(test_agent_controller
		SOURCES kernel/test_agent_controller.c kernel/agent_harness.c
		LIBS PkgConfig::JANSSON tapio_common tapio_proto
		LABELS kernel
		TIMEOUT 900)
	add_dependencies(test_agent_controller tapio-agent tapio-controller)
endif()
