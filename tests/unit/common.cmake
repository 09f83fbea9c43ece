# Unit tests of the common library core (paths relative to tests/).
foreach(t occurrence ulid clock log occ_json settings)
	tapio_add_test(test_${t} SOURCES unit/test_${t}.c LIBS tapio_common PkgConfig::JANSSON
		LABELS unit)
endforeach()
