# Query API: params unit tests, and the HTTP API of the real tapio-controller fed by the real
# tapio-loadgen (both from TAPIO_BIN_DIR).
tapio_add_test(test_api_params SOURCES unit/test_api_params.c LIBS tapio_controller_lib
	TIMEOUT 60)
tapio_add_test(test_api SOURCES integration/test_api.c LIBS tapio_controller_lib
	PkgConfig::JANSSON TIMEOUT 600 LABELS integration)
add_dependencies(test_api tapio-controller tapio-loadgen)
