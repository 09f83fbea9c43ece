# Real-kernel tests of the BPF loader (root + BTF; each test skips with its reason otherwise)
# and the PMC probe.
if(TAPIO_HAVE_BPF)
	tapio_add_test(test_loader SOURCES kernel/test_loader.c LIBS tapio_loader LABELS kernel
		TIMEOUT 240)
	tapio_add_test(test_pmc SOURCES unit/test_pmc.c LIBS tapio_loader LABELS unit TIMEOUT 60)
endif()
