# tapio-controller: session/registry unit tests and loopback integration tests against the
# real controller process (TAPIO_BIN_DIR/tapio-controller).
tapio_add_test(test_session SOURCES unit/test_session.c LIBS tapio_controller_lib TIMEOUT 60)
tapio_add_test(test_registry SOURCES unit/test_registry.c LIBS tapio_controller_lib TIMEOUT 60)
tapio_add_test(test_ingest SOURCES integration/test_ingest.c LIBS tapio_controller_lib
	TIMEOUT 600 LABELS integration)
tapio_add_test(test_hostile SOURCES integration/test_hostile.c LIBS tapio_controller_lib
	TIMEOUT 600 LABELS integration)
add_dependencies(test_ingest tapio-controller)
add_dependencies(test_hostile tapio-controller)
# The agent's controller client against the real controller (needs tapio_client, H8's target).
if(TARGET tapio_client)
	tapio_add_test(test_interop SOURCES integration/test_interop.c
		LIBS tapio_client tapio_controller_lib TIMEOUT 300 LABELS integration)
	add_dependencies(test_interop tapio-controller)
endif()
