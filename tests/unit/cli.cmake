# The `tapio` CLI, exercised as a real process (TAPIO_BIN_DIR/tapio) against fixture data dirs,
# an in-test HTTP server and scripted MCP sessions.
find_package(Threads REQUIRED)
foreach(t cli_local cli_watch cli_controller cli_mcp)
	if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_${t}.c)
		tapio_add_test(test_${t} SOURCES unit/test_${t}.c
			LIBS tapio_common PkgConfig::JANSSON Threads::Threads LABELS unit TIMEOUT 300)
		add_dependencies(test_${t} tapio)
	endif()
endforeach()
