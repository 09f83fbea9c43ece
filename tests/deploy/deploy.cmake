# Deployment checks, offline (no cluster, no systemd as PID 1 needed):
# - test_deploy_k8s: every manifest under deploy/kubernetes parsed and validated against the
#   Kubernetes schema with kubernetes-models (npm, pinned in package-lock.json), unknown fields
#   refused, kustomization.yaml complete, plus a negative self-test (broken copies must fail).
# - test_deploy_systemd: deploy/systemd units checked with `systemd-analyze verify` against the
#   binaries of this build, plus a negative self-test.
# Label "deploy" (ctest -L deploy).
add_test(NAME test_deploy_k8s COMMAND ${CMAKE_CURRENT_LIST_DIR}/run-k8s.sh)
set_tests_properties(test_deploy_k8s PROPERTIES TIMEOUT 300 LABELS "deploy")
