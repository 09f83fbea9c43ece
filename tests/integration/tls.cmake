# Transport security (docs/security.md): the TLS module over memory BIOs and a libuv
# socketpair, then tapio-controller and tapio-loadgen over TLS, mTLS, tokens and refusals.
tapio_add_test(test_tls_unit SOURCES unit/test_tls.c LIBS tapio_common PkgConfig::LIBUV
	TIMEOUT 120 LABELS unit)
tapio_add_test(test_tls SOURCES integration/test_tls.c LIBS tapio_client tapio_agent_core
	PkgConfig::LIBUV TIMEOUT 600 LABELS integration)
add_dependencies(test_tls tapio-controller)
