# Fuzzing. The harness targets need clang (TAPIO_FUZZ=ON and CC=clang); the smoke tests always
# run: scripts/fuzz.sh builds the wire-decoder harness with clang on its own, and
# fuzz/run_fuzzer.sh configures a clang build of this tree with TAPIO_FUZZ=ON for the others
# (each NAME with a NAME_seeds target that writes its seed corpus).
if(TAPIO_FUZZ AND CMAKE_C_COMPILER_ID STREQUAL "Clang")
	find_package(Threads REQUIRED)
	# tapio_add_fuzzer(NAME SOURCES...): sources compiled into the target (instrumented), with
	# libFuzzer, ASan and UBSan.
	function(tapio_add_fuzzer name)
		add_executable(${name} ${ARGN})
		set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
		target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR})
		target_compile_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined
			-fno-sanitize-recover=undefined -fno-omit-frame-pointer)
		target_link_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
		target_link_libraries(${name} PRIVATE tapio_proto Threads::Threads m)
	endfunction()

	set(TAPIO_FUZZ_CODEC_SRCS
		${PROJECT_SOURCE_DIR}/common/codec.c
		${PROJECT_SOURCE_DIR}/common/occ_proto.c
		${PROJECT_SOURCE_DIR}/common/occurrence.c
		${PROJECT_SOURCE_DIR}/common/ulid.c)
	tapio_add_fuzzer(fuzz_codec fuzz/fuzz_codec.c ${TAPIO_FUZZ_CODEC_SRCS})

	# The EventBatch fast path against the generic path, and its seed writer (no sanitizers).
	set(TAPIO_FUZZ_OCC_WIRE_SRCS fuzz/occ_wire_diff.c ${PROJECT_SOURCE_DIR}/common/occ_wire.c
		${TAPIO_FUZZ_CODEC_SRCS})
	tapio_add_fuzzer(fuzz_occ_wire fuzz/fuzz_occ_wire.c ${TAPIO_FUZZ_OCC_WIRE_SRCS})
	add_executable(fuzz_occ_wire_seeds fuzz/fuzz_occ_wire.c ${TAPIO_FUZZ_OCC_WIRE_SRCS}
		${PROJECT_SOURCE_DIR}/tools/occgen.c ${PROJECT_SOURCE_DIR}/common/clock.c)
	set_target_properties(fuzz_occ_wire_seeds PROPERTIES
		RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
	target_compile_definitions(fuzz_occ_wire_seeds PRIVATE FUZZ_OCC_WIRE_SEEDS)
	target_include_directories(fuzz_occ_wire_seeds PRIVATE ${PROJECT_SOURCE_DIR})
	target_link_libraries(fuzz_occ_wire_seeds PRIVATE tapio_proto Threads::Threads m)
endif()

add_test(NAME fuzz_codec_smoke COMMAND ${PROJECT_SOURCE_DIR}/scripts/fuzz.sh 50)
set_tests_properties(fuzz_codec_smoke PROPERTIES TIMEOUT 90 LABELS fuzz SKIP_RETURN_CODE 77)
add_test(NAME fuzz_occ_wire_smoke
	COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/run_fuzzer.sh fuzz_occ_wire 30)
set_tests_properties(fuzz_occ_wire_smoke PROPERTIES TIMEOUT 300 LABELS fuzz SKIP_RETURN_CODE 77)
