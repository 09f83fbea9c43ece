# test_packages: cpack -G DEB, then install the three packages with apt-get into a fresh
# debootstrapped Debian 12 root and check them (tests/packaging/test-debs.sh, which also
# checks deploy/docker/Dockerfile.* against the packages). Needs root and the Debian mirror:
# not root = skipped (77) with a reason; root without the mirror = failure.
# Label "packaging": ctest -L packaging runs it, ctest -LE packaging leaves it out.
add_test(NAME test_packages
	COMMAND ${CMAKE_CURRENT_LIST_DIR}/test-debs.sh ${CMAKE_BINARY_DIR} ${PROJECT_SOURCE_DIR})
set_tests_properties(test_packages PROPERTIES
	TIMEOUT 1200
	LABELS "packaging"
	SKIP_RETURN_CODE 77
	RUN_SERIAL TRUE) # cpack's preinstall step builds the tree; keep it off concurrent builds
