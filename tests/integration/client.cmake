# Controller client and spool (tapio_client: no BPF, runs anywhere).
tapio_add_test(test_spool SOURCES unit/test_spool.c LIBS tapio_client TIMEOUT 60)
tapio_add_test(test_client SOURCES integration/test_client.c LIBS tapio_client tapio_sink_controller TIMEOUT 120
	LABELS integration)
# tapio-loadgen against the real tapio-controller process (both built first).
if(TARGET tapio-controller AND TARGET tapio-loadgen)
	tapio_add_test(test_loadgen SOURCES integration/test_loadgen.c LIBS tapio_controller_lib PkgConfig::JANSSON
		TIMEOUT 300 LABELS integration)
	add_dependencies(test_loadgen tapio-controller tapio-loadgen)
endif()
