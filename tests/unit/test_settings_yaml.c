/* settings_yaml: closed schema, located errors, full valid files. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/settings_yaml.h"

static char path[64];

static const char *write_yaml(const char *text)
{
	int fd;

	snprintf(path, sizeof(path), "/tmp/tapio-yaml-XXXXXX");
	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static void cleanup(void)
{
	if (path[0])
		unlink(path);
	path[0] = 0;
}

TestSuite(settings_yaml, .fini = cleanup, .timeout = 10);

struct bad_case {
	const char *yaml;
	const char *where; /* ":line:col: " expected right after the path */
	const char *msg;   /* expected rest of the message */
};

static const struct bad_case bad_cases[] = {
    {"storage:\n  warnign_ms: 10\n", ":2:3: ", "unknown key 'storage.warnign_ms'"},
    {"network: {}\nbogus: 1\n", ":2:1: ", "unknown key 'bogus'"},
    {"network:\n  conn_refused_window_ms: abc\n",
     ":2:27: ", "network.conn_refused_window_ms: expected a non-negative integer, got 'abc'"},
    {"network:\n  conn_refused_min_count: 1.5\n",
     ":2:27: ", "network.conn_refused_min_count: expected a non-negative integer, got '1.5'"},
    {"node:\n  enabled: yes\n", ":2:12: ", "node.enabled: expected true or false, got 'yes'"},
    {"storage:\n  warning_ms: \"50\"\n",
     ":2:15: ", "storage.warning_ms: expected a non-negative integer, got '50'"},
    {"storage:\n  warning_ms: -5\n",
     ":2:15: ", "storage.warning_ms: expected a non-negative integer, got '-5'"},
    {"storage:\n  warning_ms: 99999999999\n",
     ":2:15: ", "storage.warning_ms: 99999999999 out of range 0..4294967295"},
    {"storage:\n  window_ms: [1]\n",
     ":2:14: ", "storage.window_ms: expected a non-negative integer, got a list"},
    {"network:\n  rtt_spike_ratio: nan\n",
     ":2:20: ", "network.rtt_spike_ratio: expected a number, got 'nan'"},
    {"storage: 5\n", ":1:10: ", "storage: expected a mapping, got '5'"},
    {"storage:\n  warning_ms: 10\n  warning_ms: 20\n",
     ":3:3: ", "duplicate key 'storage.warning_ms'"},
    {"node: {}\nnode: {}\n", ":2:1: ", "duplicate key 'node'"},
    /* ranges and contradictions come from settings_validate, located by key */
    {"storage:\n  warning_ms: 0\n", ":2:15: ", "storage.warning_ms: 0 out of range 1..3600000"},
    {"node:\n  pmc_interval_ms: 5\n",
     ":2:20: ", "node.pmc_interval_ms: 5 out of range 10..3600000"},
    {"network:\n  rtt_spike_ratio: 0.5\n",
     ":2:20: ", "network.rtt_spike_ratio: 0.5 out of range 1..100"},
    {"storage:\n  warning_ms: 300\n  critical_ms: 100\n",
     ":3:16: ", "storage.critical_ms: 100 is below storage.warning_ms 300"},
    {"storage:\n  warning_ms: 300\n",
     ":2:15: ", "storage.critical_ms: 200 is below storage.warning_ms 300"},
    {"node:\n  stall_critical_pct: 10\n",
     ":2:23: ", "node.stall_critical_pct: 10 is below node.stall_warning_pct 20"},
    {"container:\n  ignored_exit_codes: [1, 300]\n",
     ":2:27: ", "container.ignored_exit_codes[1]: 300 out of range 0..255"},
    {"container:\n  ignored_exit_codes: [1, 2, 1]\n",
     ":2:30: ", "container.ignored_exit_codes[2]: 1 is a duplicate"},
    {"container:\n  ignored_exit_codes: [1, 2, 3, 4, 5, 6, 7, 8, 9]\n",
     ":2:48: ", "container.ignored_exit_codes: more than 8 entries"},
    {"container:\n  ignored_exit_codes: 3\n",
     ":2:23: ", "container.ignored_exit_codes: expected a list of integers, got '3'"},
    {"- storage\n", ":1:1: ", "expected a mapping of sections, got a list"},
};

Test(settings_yaml, rejects_bad_files_with_line_col_and_key)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		struct tapio_settings s;
		char err[256] = "", want[512];
		const char *p = write_yaml(bad_cases[i].yaml);

		settings_defaults(&s);
		cr_expect_eq(settings_yaml_load_file(p, &s, err, sizeof(err)), -EINVAL,
			     "case %zu accepted", i);
		snprintf(want, sizeof(want), "%s%s%s", p, bad_cases[i].where, bad_cases[i].msg);
		cr_expect_str_eq(err, want, "case %zu", i);
		cleanup();
	}
}

Test(settings_yaml, syntax_error_is_located)
{
	struct tapio_settings s;
	char err[256] = "";
	const char *p = write_yaml("storage:\n  warning_ms: [1\n");

	settings_defaults(&s);
	cr_assert_eq(settings_yaml_load_file(p, &s, err, sizeof(err)), -EINVAL);
	cr_assert(strncmp(err, p, strlen(p)) == 0, "%s", err);
	cr_assert(strstr(err, "YAML syntax error") != NULL, "%s", err);
}

Test(settings_yaml, missing_file_names_path_and_errno)
{
	struct tapio_settings s;
	char err[256] = "";

	settings_defaults(&s);
	cr_assert_eq(settings_yaml_load_file("/nonexistent/x.yaml", &s, err, sizeof(err)), -ENOENT);
	cr_assert_str_eq(err, "/nonexistent/x.yaml: No such file or directory");
}

Test(settings_yaml, empty_file_keeps_defaults)
{
	struct tapio_settings s, d;
	char err[256] = "";

	settings_defaults(&s);
	settings_defaults(&d);
	cr_assert_eq(settings_yaml_load_file(write_yaml(""), &s, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(memcmp(&s, &d, sizeof(s)), 0);
}

Test(settings_yaml, full_valid_file)
{
	struct tapio_settings s;
	char err[256] = "";
	const char *p = write_yaml("# every key\n"
				   "network:\n"
				   "  enabled: false\n"
				   "  conn_refused_window_ms: 2000\n"
				   "  conn_refused_min_count: 3\n"
				   "  retransmit_window_ms: 1500\n"
				   "  retransmit_burst_threshold: 7\n"
				   "  rtt_spike_ratio: 2.5\n"
				   "  rtt_absolute_ms: 800\n"
				   "  rtt_baseline_samples: 9\n"
				   "  rtt_baseline_max_ms: 150\n"
				   "  rtt_sample_interval_ms: 250\n"
				   "container:\n"
				   "  enabled: true\n"
				   "  ignored_exit_codes: [1, 143]\n"
				   "storage:\n"
				   "  enabled: false\n"
				   "  warning_ms: 80\n"
				   "  critical_ms: 400\n"
				   "  window_ms: 5000\n"
				   "node:\n"
				   "  enabled: true\n"
				   "  pmc_interval_ms: 2000\n"
				   "  stall_warning_pct: 25\n"
				   "  stall_critical_pct: 45.5\n"
				   "  ipc_min: 0.8\n"
				   "  memory_pressure_pct: 15\n");

	settings_defaults(&s);
	cr_assert_eq(settings_yaml_load_file(p, &s, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(s.network_enabled, false);
	cr_assert_eq(s.conn_refused_window_ms, 2000);
	cr_assert_eq(s.conn_refused_min_count, 3);
	cr_assert_eq(s.retransmit_window_ms, 1500);
	cr_assert_eq(s.retransmit_burst_threshold, 7);
	cr_assert_float_eq(s.rtt_spike_ratio, 2.5, 1e-9);
	cr_assert_eq(s.rtt_absolute_ms, 800);
	cr_assert_eq(s.rtt_baseline_samples, 9);
	cr_assert_eq(s.rtt_baseline_max_ms, 150);
	cr_assert_eq(s.rtt_sample_interval_ms, 250);
	cr_assert_eq(s.container_enabled, true);
	cr_assert_eq(s.n_ignored_exit_codes, 2);
	cr_assert_eq(s.ignored_exit_codes[0], 1);
	cr_assert_eq(s.ignored_exit_codes[1], 143);
	cr_assert_eq(s.storage_enabled, false);
	cr_assert_eq(s.storage_warning_ms, 80);
	cr_assert_eq(s.storage_critical_ms, 400);
	cr_assert_eq(s.storage_window_ms, 5000);
	cr_assert_eq(s.node_enabled, true);
	cr_assert_eq(s.pmc_interval_ms, 2000);
	cr_assert_float_eq(s.pmc_stall_warning_pct, 25.0, 1e-9);
	cr_assert_float_eq(s.pmc_stall_critical_pct, 45.5, 1e-9);
	cr_assert_float_eq(s.pmc_ipc_min, 0.8, 1e-9);
	cr_assert_float_eq(s.memory_pressure_pct, 15.0, 1e-9);
}

Test(settings_yaml, partial_file_keeps_other_defaults)
{
	struct tapio_settings s;
	char err[256] = "";

	settings_defaults(&s);
	cr_assert_eq(settings_yaml_load_file(write_yaml("storage:\n  critical_ms: 500\nnode:\n"),
					     &s, err, sizeof(err)),
		     0, "%s", err);
	cr_assert_eq(s.storage_critical_ms, 500);
	cr_assert_eq(s.storage_warning_ms, 50);
	cr_assert_eq(s.conn_refused_window_ms, 1000);
}

Test(settings_yaml, apply_works_on_a_nested_mapping_and_skips_extra_keys)
{
	yaml_document_t doc;
	yaml_node_t *root, *profile = NULL;
	struct tapio_settings s;
	char err[256] = "";
	const char *const extra[] = {"name", NULL};
	const char *p = write_yaml("profile:\n"
				   "  name: prod\n"
				   "  storage:\n"
				   "    warning_ms: 70\n"
				   "  network:\n"
				   "    bogus: 1\n");

	cr_assert_eq(settings_yaml_load_document(p, &doc, err, sizeof(err)), 0, "%s", err);
	root = yaml_document_get_root_node(&doc);
	profile = yaml_document_get_node(&doc, root->data.mapping.pairs.start->value);
	settings_defaults(&s);
	cr_assert_eq(settings_yaml_apply("prod.yaml", &doc, profile, &s, err, sizeof(err)),
		     -EINVAL);
	cr_assert_str_eq(err, "prod.yaml:2:3: unknown key 'name'");
	settings_defaults(&s);
	cr_assert_eq(
	    settings_yaml_apply_ex("prod.yaml", &doc, profile, extra, &s, err, sizeof(err)),
	    -EINVAL);
	cr_assert_str_eq(err, "prod.yaml:6:5: unknown key 'network.bogus'");
	cr_assert_eq(s.storage_warning_ms, 70);
	yaml_document_delete(&doc);
}

/* docs/configuration.md "Observer settings" lists exactly the keys the parser accepts, and
 * each documented default loads. */
Test(settings_yaml, documentation_lists_exactly_the_accepted_keys)
{
	FILE *f = fopen(TAPIO_SOURCE_DIR "/docs/configuration.md", "r");
	char line[1024], documented[64][128];
	size_t n_doc = 0;

	if (!f)
		cr_skip_test("docs/configuration.md not found under " TAPIO_SOURCE_DIR);
	while (fgets(line, sizeof(line), f) && n_doc < 64) {
		char key[128], section[64], name[64], value[128], yaml[300];
		char *p, *q, *dot;
		struct tapio_settings s;
		char err[256];

		if (strncmp(line, "| `", 3) != 0)
			continue;
		p = line + 3;
		q = strchr(p, '`');
		if (!q || (size_t)(q - p) >= sizeof(key))
			continue;
		memcpy(key, p, (size_t)(q - p));
		key[q - p] = 0;
		dot = strchr(key, '.');
		if (!dot)
			continue;
		snprintf(documented[n_doc++], sizeof(documented[0]), "%s", key);
		snprintf(section, sizeof(section), "%.*s", (int)(dot - key), key);
		snprintf(name, sizeof(name), "%s", dot + 1);
		/* third column: the default, maybe in backticks */
		p = strchr(q, '|');
		p = p ? strchr(p + 1, '|') : NULL;
		cr_assert_not_null(p, "row without a default column: %s", line);
		p++;
		while (*p == ' ' || *p == '`')
			p++;
		q = strchr(p, '|');
		cr_assert_not_null(q);
		while (q > p && (q[-1] == ' ' || q[-1] == '`'))
			q--;
		snprintf(value, sizeof(value), "%.*s", (int)(q - p), p);
		snprintf(yaml, sizeof(yaml), "%s:\n  %s: %s\n", section, name, value);
		settings_defaults(&s);
		cr_expect_eq(settings_yaml_load_file(write_yaml(yaml), &s, err, sizeof(err)), 0,
			     "documented %s = %s does not load: %s", key, value, err);
		cleanup();
	}
	fclose(f);
	cr_assert_gt(n_doc, 0, "no keys found in docs/configuration.md");
	for (size_t i = 0; settings_yaml_key(i); i++) {
		bool found = false;
		for (size_t j = 0; j < n_doc; j++)
			found = found || strcmp(documented[j], settings_yaml_key(i)) == 0;
		cr_expect(found, "accepted key %s is not documented", settings_yaml_key(i));
	}
	for (size_t j = 0; j < n_doc; j++) {
		bool found = false;
		for (size_t i = 0; settings_yaml_key(i); i++)
			found = found || strcmp(documented[j], settings_yaml_key(i)) == 0;
		cr_expect(found, "documented key %s is not accepted", documented[j]);
	}
}
