# Controller client and spool (tapio_client: no BPF, runs anywhere).
tapio_add_test(test_spool SOURCES unit/test_spool.c LIBS tapio_client TIMEOUT 60)
tapio_add_test(test_client SOURCES integration/test_client.c LIBS tapio_client tapio_sink_controller TIMEOUT 120
	LABELS integration)
