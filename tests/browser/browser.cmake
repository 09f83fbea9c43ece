# Real-browser test of the dashboard page served at GET / by tapio-controller --http:
# tests/browser/run.sh installs chromium (apt-get) and playwright-core (npm ci) when missing,
# starts the controller and tapio-loadgen from this build and drives the page in chromium.
# Label "browser" so it can be selected (ctest -L browser) or left out (ctest -LE browser).
add_test(NAME test_dashboard_browser
	COMMAND ${CMAKE_CURRENT_LIST_DIR}/run.sh)
set_tests_properties(test_dashboard_browser PROPERTIES
	TIMEOUT 600
	LABELS "browser"
	ENVIRONMENT "TAPIO_BIN_DIR=${CMAKE_BINARY_DIR}/bin")
# No REQUIRED_FILES: missing binaries must fail loudly in run.sh, not turn into "Not Run".
