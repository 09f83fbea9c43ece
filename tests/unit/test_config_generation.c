/* config_generation: monotonic across restarts, bumps only on a new content hash, atomic. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/config_generation.h"

static char dir[64];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/tapio-gen-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void file_path(char *buf, size_t len, const char *suffix)
{
	snprintf(buf, len, "%s/config-generation%s", dir, suffix);
}

static void teardown(void)
{
	char p[128];

	file_path(p, sizeof(p), "");
	unlink(p);
	file_path(p, sizeof(p), ".tmp");
	unlink(p);
	rmdir(dir);
}

TestSuite(config_generation, .init = setup, .fini = teardown, .timeout = 10);

static void write_file(const char *suffix, const char *text)
{
	char p[128];
	FILE *f;

	file_path(p, sizeof(p), suffix);
	f = fopen(p, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
}

static const char *hash_a =
    "sha256:1111111111111111111111111111111111111111111111111111111111111111";
static const char *hash_b =
    "sha256:2222222222222222222222222222222222222222222222222222222222222222";

Test(config_generation, fresh_dir_is_generation_zero)
{
	struct config_generation_store st;

	memset(&st, 0x5a, sizeof(st));
	cr_assert_eq(config_generation_load(dir, &st), 0);
	cr_assert_eq(st.generation, 0);
	cr_assert_str_eq(st.hash, "");
}

Test(config_generation, bumps_only_on_a_different_hash)
{
	uint64_t gen = 0;

	cr_assert_eq(config_generation_next(dir, hash_a, &gen), 1);
	cr_assert_eq(gen, 1);
	cr_assert_eq(config_generation_next(dir, hash_a, &gen), 0);
	cr_assert_eq(gen, 1);
	cr_assert_eq(config_generation_next(dir, hash_b, &gen), 1);
	cr_assert_eq(gen, 2);
	/* going back to an earlier content is still a change for the agents */
	cr_assert_eq(config_generation_next(dir, hash_a, &gen), 1);
	cr_assert_eq(gen, 3);
	cr_assert_eq(config_generation_next(dir, hash_a, &gen), 0);
	cr_assert_eq(gen, 3);
}

Test(config_generation, survives_a_restart)
{
	struct config_generation_store st;
	uint64_t gen = 0;
	char p[128], text[256];
	FILE *f;
	size_t n;

	cr_assert_eq(config_generation_next(dir, hash_a, &gen), 1);
	cr_assert_eq(config_generation_next(dir, hash_b, &gen), 1);
	cr_assert_eq(gen, 2);

	/* a "restart": nothing but the directory is shared with the previous run */
	cr_assert_eq(config_generation_load(dir, &st), 0);
	cr_assert_eq(st.generation, 2);
	cr_assert_str_eq(st.hash, hash_b);
	cr_assert_eq(config_generation_next(dir, hash_b, &gen), 0);
	cr_assert_eq(gen, 2);

	/* the file is readable by an operator */
	file_path(p, sizeof(p), "");
	f = fopen(p, "r");
	cr_assert_not_null(f);
	n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = 0;
	cr_assert_str_eq(text,
			 "tapio-config-generation 1\ngeneration 2\nhash "
			 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
			 "\n");
}

Test(config_generation, bump_keeps_the_hash_and_grows)
{
	struct config_generation_store st;
	uint64_t gen = 0;

	cr_assert_eq(config_generation_bump(dir, &gen), 0);
	cr_assert_eq(gen, 1);
	cr_assert_eq(config_generation_next(dir, hash_a, &gen), 1);
	cr_assert_eq(gen, 2);
	cr_assert_eq(config_generation_bump(dir, &gen), 0);
	cr_assert_eq(gen, 3);
	cr_assert_eq(config_generation_load(dir, &st), 0);
	cr_assert_eq(st.generation, 3);
	cr_assert_str_eq(st.hash, hash_a);
	/* the same hash after a forced bump does not bump again */
	cr_assert_eq(config_generation_next(dir, hash_a, &gen), 0);
	cr_assert_eq(gen, 3);
}

Test(config_generation, leftover_tmp_from_a_crash_is_ignored)
{
	struct config_generation_store st;
	struct stat sb;
	uint64_t gen = 0;
	char p[128];

	cr_assert_eq(config_generation_next(dir, hash_a, &gen), 1);
	/* a crash between writing the .tmp and the rename left a torn new version behind */
	write_file(".tmp", "tapio-config-generation 1\ngenera");
	cr_assert_eq(config_generation_load(dir, &st), 0);
	cr_assert_eq(st.generation, 1);
	cr_assert_str_eq(st.hash, hash_a);
	cr_assert_eq(config_generation_next(dir, hash_b, &gen), 1);
	cr_assert_eq(gen, 2);
	file_path(p, sizeof(p), ".tmp");
	cr_assert_eq(stat(p, &sb), -1, "the .tmp file should have been renamed");
	cr_assert_eq(config_generation_load(dir, &st), 0);
	cr_assert_eq(st.generation, 2);
	cr_assert_str_eq(st.hash, hash_b);
}

Test(config_generation, refuses_a_malformed_file_and_keeps_it)
{
	static const char *const bad[] = {
	    "",
	    "garbage\n",
	    "tapio-config-generation 1\ngeneration x\nhash \n",
	    "tapio-config-generation 1\ngeneration -1\nhash \n",
	    "tapio-config-generation 1\ngeneration 3\nhash sha256:zz\n",
	    "tapio-config-generation 1\ngeneration 3\nhash \nextra\n",
	    "tapio-config-generation 2\ngeneration 3\nhash \n",
	};
	struct config_generation_store st;
	uint64_t gen = 42;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_file("", bad[i]);
		cr_assert_eq(config_generation_load(dir, &st), -EINVAL, "accepted case %zu", i);
		cr_assert_eq(config_generation_next(dir, hash_a, &gen), -EINVAL);
		cr_assert_eq(config_generation_bump(dir, &gen), -EINVAL);
		cr_assert_eq(gen, 42, "gen written on failure");
	}
	write_file("", "tapio-config-generation 1\ngeneration 7\nhash \n");
	cr_assert_eq(config_generation_load(dir, &st), 0);
	cr_assert_eq(st.generation, 7);
	cr_assert_eq(config_generation_next(dir, hash_a, &gen), 1);
	cr_assert_eq(gen, 8);
}

Test(config_generation, refuses_a_malformed_hash)
{
	uint64_t gen = 42;

	cr_assert_eq(config_generation_next(dir, "sha256:abc", &gen), -EINVAL);
	cr_assert_eq(config_generation_next(dir, NULL, &gen), -EINVAL);
	cr_assert_eq(gen, 42);
}

Test(config_generation, missing_directory_is_an_error)
{
	char missing[128];
	uint64_t gen = 42;

	snprintf(missing, sizeof(missing), "%s/nope", dir);
	cr_assert_eq(config_generation_next(missing, hash_a, &gen), -ENOENT);
	cr_assert_eq(gen, 42);
}
