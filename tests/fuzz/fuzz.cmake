# Fuzzing of the wire decoder. The harness target needs clang (TAPIO_FUZZ=ON and CC=clang);
# the smoke test always runs: scripts/fuzz.sh builds the harness with clang on its own.
if(TAPIO_FUZZ AND CMAKE_C_COMPILER_ID STREQUAL "Clang")
	add_executable(fuzz_codec fuzz/fuzz_codec.c
		${PROJECT_SOURCE_DIR}/common/codec.c
		${PROJECT_SOURCE_DIR}/common/occ_proto.c
		${PROJECT_SOURCE_DIR}/common/occurrence.c
		${PROJECT_SOURCE_DIR}/common/ulid.c)
	set_target_properties(fuzz_codec PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
	target_include_directories(fuzz_codec PRIVATE ${PROJECT_SOURCE_DIR})
	target_compile_options(fuzz_codec PRIVATE -fsanitize=fuzzer,address,undefined
		-fno-sanitize-recover=undefined -fno-omit-frame-pointer)
	target_link_options(fuzz_codec PRIVATE -fsanitize=fuzzer,address,undefined)
	find_package(Threads REQUIRED)
	target_link_libraries(fuzz_codec PRIVATE tapio_proto Threads::Threads)
endif()

add_test(NAME fuzz_codec_smoke COMMAND ${PROJECT_SOURCE_DIR}/scripts/fuzz.sh 50)
set_tests_properties(fuzz_codec_smoke PROPERTIES TIMEOUT 90 LABELS fuzz SKIP_RETURN_CODE 77)
