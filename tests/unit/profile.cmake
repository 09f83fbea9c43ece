# Unit tests of evidence profiles, config hashes and the persistent config generation.
foreach(t profile config_hash config_generation)
	tapio_add_test(test_${t} SOURCES unit/test_${t}.c LIBS tapio_common LABELS unit TIMEOUT 60)
endforeach()
