# Deployment checks, offline (no cluster, no running systemd needed). Label "deploy"
# (ctest -L deploy). Each prints "N passed, N failed" and has a negative self-test, so a
# check that stopped checking fails instead of passing.
# - test_deploy_k8s: every manifest under deploy/kubernetes parsed and validated against the
#   Kubernetes schema with kubernetes-models (npm, pinned in package-lock.json), unknown fields
#   refused, cross-references and kustomization.yaml checked; broken copies must fail.
# - test_deploy_systemd: deploy/systemd units through `systemd-analyze verify` (against this
#   build's binaries; any warning fails) and `systemd-analyze security --offline` (exposure
#   ceilings); broken copies must fail.
# - test_deploy_flags: every flag the units and manifests pass is in the binary's --help.
# - test_deploy_agent_config: deploy/config/agent.yaml is accepted by this build's agent.
# No REQUIRED_FILES: missing binaries or tools must fail loudly, not turn into "Not Run".
add_test(NAME test_deploy_k8s COMMAND ${CMAKE_CURRENT_LIST_DIR}/run-k8s.sh)
add_test(NAME test_deploy_systemd COMMAND ${CMAKE_CURRENT_LIST_DIR}/verify-systemd.sh)
add_test(NAME test_deploy_systemd_selftest
	COMMAND ${CMAKE_CURRENT_LIST_DIR}/verify-systemd.sh --self-test)
add_test(NAME test_deploy_flags COMMAND ${CMAKE_CURRENT_LIST_DIR}/check-flags.sh)
add_test(NAME test_deploy_agent_config COMMAND ${CMAKE_CURRENT_LIST_DIR}/check-agent-config.sh)
set_tests_properties(test_deploy_k8s test_deploy_systemd test_deploy_systemd_selftest
	test_deploy_flags test_deploy_agent_config PROPERTIES
	TIMEOUT 300
	LABELS "deploy"
	ENVIRONMENT "TAPIO_BIN_DIR=${CMAKE_BINARY_DIR}/bin")
