/* profile: closed schema with located errors, resolution per agent, content hashes. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config_generation.h"
#include "common/profile.h"
#include "common/settings_yaml.h"

TestSuite(profile, .timeout = 20);

static struct profile *load_ok(const char *yaml)
{
	struct profile *p = NULL;
	char err[512] = "";
	int rc = profile_load_string("p.yaml", yaml, strlen(yaml), &p, err, sizeof(err));

	cr_assert_eq(rc, 0, "refused: %s\n--- yaml ---\n%s", err, yaml);
	cr_assert_not_null(p);
	return p;
}

struct bad_case {
	const char *yaml;
	const char *want; /* exact message after "p.yaml" */
};

static const struct bad_case bad_cases[] = {
    /* unknown keys */
    {"version: 1\nbogus: 2\n", ":2:1: unknown key 'bogus'"},
    {"version: 1\ndefaults:\n  netwrk: {}\n", ":3:3: unknown key 'defaults.netwrk'"},
    {"version: 1\ndefaults:\n  storage:\n    warnign_ms: 10\n",
     ":4:5: unknown key 'defaults.storage.warnign_ms'"},
    {"version: 1\noverrides:\n  - match: {node: a}\n    storage: {warnign_ms: 1}\n",
     ":4:15: unknown key 'overrides[0].storage.warnign_ms'"},
    {"version: 1\noverrides:\n  - match: {node: a}\n    stor: {}\n",
     ":4:5: unknown key 'overrides[0].stor'"},
    {"version: 1\noverrides:\n  - match: {nodes: a}\n    storage: {warning_ms: 1}\n",
     ":3:13: unknown key 'overrides[0].match.nodes'"},
    /* wrong types */
    {"version: 1\ndefaults:\n  network: {enabled: yes}\n",
     ":3:22: defaults.network.enabled: expected true or false, got 'yes'"},
    {"version: 1\noverrides:\n  - match: {node: a}\n    storage: {window_ms: [1]}\n",
     ":4:26: overrides[0].storage.window_ms: expected a non-negative integer, got a list"},
    {"version: 1\ndefaults: [1]\n", ":2:11: defaults: expected a mapping of sections, got a list"},
    {"version: 1\nname: [a]\n", ":2:7: name: expected a string, got a list"},
    {"version: 1\noverrides: {a: 1}\n", ":2:12: overrides: expected a list, got a mapping"},
    {"version: 1\noverrides:\n  - 5\n",
     ":3:5: overrides[0]: expected a mapping with match and observer sections, got a scalar"},
    {"- 1\n", ":1:1: expected a mapping with version, defaults and overrides, got a list"},
    /* out of range */
    {"version: 1\ndefaults:\n  node:\n    pmc_interval_ms: 5\n",
     ":4:22: defaults.node.pmc_interval_ms: 5 out of range 10..3600000"},
    {"version: 1\noverrides:\n  - match: {labels: {role: db}}\n"
     "    network: {rtt_spike_ratio: 0.5}\n",
     ":4:32: overrides[0].network.rtt_spike_ratio: 0.5 out of range 1..100"},
    {"version: 1\noverrides:\n  - match: {node: a}\n    container: {ignored_exit_codes: [1, 300]}\n",
     ":4:41: overrides[0].container.ignored_exit_codes[1]: 300 out of range 0..255"},
    /* contradictions */
    {"version: 1\ndefaults:\n  storage:\n    warning_ms: 300\n",
     ":4:17: storage.critical_ms: 200 is below defaults.storage.warning_ms 300"},
    {"version: 1\ndefaults:\n  storage: {warning_ms: 50, critical_ms: 200}\noverrides:\n"
     "  - match: {node: \"db-*\"}\n    storage: {critical_ms: 20}\n",
     ":6:28: overrides[0].storage.critical_ms: 20 is below defaults.storage.warning_ms 50"},
    {"version: 1\noverrides:\n  - match: {node: a}\n    node: {stall_warning_pct: 50}\n",
     ":4:31: node.stall_critical_pct: 40 is below overrides[0].node.stall_warning_pct 50"},
    /* each override is fine on defaults, but both can match one agent */
    {"version: 1\noverrides:\n  - match: {node: \"db-*\"}\n    storage: {warning_ms: 150}\n"
     "  - match: {labels: {role: ingest}}\n    storage: {critical_ms: 100}\n",
     ":6:28: overrides[1].storage.critical_ms: 100 is below overrides[0].storage.warning_ms 150 "
     "(overrides[0] and overrides[1] can match the same agent)"},
    {"version: 1\noverrides:\n  - match: {node: db-1}\n    storage: {critical_ms: 100}\n"
     "  - match: {node: \"db-?\"}\n    storage: {warning_ms: 150}\n",
     ":6:27: overrides[0].storage.critical_ms: 100 is below overrides[1].storage.warning_ms 150 "
     "(overrides[0] and overrides[1] can match the same agent)"},
    /* version */
    {"version: 2\n", ":1:10: version: 2 is not supported (expected 1)"},
    {"version: one\n", ":1:10: version: expected a non-negative integer, got 'one'"},
    {"version: \"1\"\n", ":1:10: version: expected a non-negative integer, got '1'"},
    {"name: x\n", ":1:1: missing required key 'version'"},
    {"", ":1:1: missing required key 'version'"},
    {"# only a comment\n", ":1:1: missing required key 'version'"},
    /* match */
    {"version: 1\noverrides:\n  - match: {}\n    storage: {warning_ms: 10}\n",
     ":3:12: overrides[0].match: empty match (settings for every agent belong in defaults)"},
    {"version: 1\noverrides:\n  - match:\n    storage: {warning_ms: 10}\n",
     ":3:11: overrides[0].match: empty match (settings for every agent belong in defaults)"},
    {"version: 1\noverrides:\n  - storage: {warning_ms: 10}\n",
     ":3:5: overrides[0]: missing required key 'match' (settings for every agent belong in "
     "defaults)"},
    {"version: 1\noverrides:\n  - match: {node: [a, b]}\n",
     ":3:19: overrides[0].match.node: expected a string (a shell glob), got a list"},
    {"version: 1\noverrides:\n  - match: {node: {a: b}}\n",
     ":3:19: overrides[0].match.node: expected a string (a shell glob), got a mapping"},
    {"version: 1\noverrides:\n  - match: {node: \"\"}\n", ":3:19: overrides[0].match.node: empty"},
    {"version: 1\noverrides:\n  - match: {labels: [a]}\n",
     ":3:21: overrides[0].match.labels: expected a mapping of label: value, got a list"},
    {"version: 1\noverrides:\n  - match: {labels: {}}\n",
     ":3:21: overrides[0].match.labels: no labels (leave labels out instead)"},
    {"version: 1\noverrides:\n  - match: {labels: {role: [x]}}\n",
     ":3:28: overrides[0].match.labels.role: expected a string, got a list"},
    {"version: 1\noverrides:\n  - match: {node: a}\n  - match: 7\n",
     ":4:12: overrides[1].match: expected a mapping with node and/or labels, got a scalar"},
    /* duplicates */
    {"version: 1\nversion: 1\n", ":2:1: duplicate key 'version'"},
    {"version: 1\ndefaults:\n  storage: {warning_ms: 10, warning_ms: 20}\n",
     ":3:29: duplicate key 'defaults.storage.warning_ms'"},
    {"version: 1\ndefaults:\n  node: {}\n  node: {}\n", ":4:3: duplicate key 'defaults.node'"},
    {"version: 1\noverrides:\n  - match: {labels: {role: a, role: b}}\n",
     ":3:31: duplicate key 'overrides[0].match.labels.role'"},
    {"version: 1\noverrides:\n  - match: {node: a}\n    storage: {}\n    storage: {}\n",
     ":5:5: duplicate key 'overrides[0].storage'"},
    {"version: 1\noverrides:\n  - match: {node: a}\n    match: {node: b}\n",
     ":4:5: duplicate key 'overrides[0].match'"},
    {"version: 1\noverrides:\n  - match: {node: a, node: b}\n",
     ":3:22: duplicate key 'overrides[0].match.node'"},
};

Test(profile, every_validation_rule_is_located_and_names_the_key)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];
		struct profile *p = (struct profile *)1;
		char err[512] = "", want[512];
		int rc =
		    profile_load_string("p.yaml", c->yaml, strlen(c->yaml), &p, err, sizeof(err));

		snprintf(want, sizeof(want), "p.yaml%s", c->want);
		cr_expect_eq(rc, -EINVAL, "case %zu accepted:\n%s", i, c->yaml);
		cr_expect_null(p, "case %zu left *out set", i);
		cr_expect_str_eq(err, want, "case %zu:\n%s", i, c->yaml);
	}
}

Test(profile, yaml_syntax_error_is_located)
{
	const char *yaml = "version: 1\ndefaults:\n  network: {enabled: true\n";
	struct profile *p = NULL;
	char err[512] = "";

	cr_assert_eq(profile_load_string("p.yaml", yaml, strlen(yaml), &p, err, sizeof(err)),
		     -EINVAL);
	cr_assert_null(p);
	cr_assert(strncmp(err, "p.yaml:4:1: YAML syntax error: ", 31) == 0, "got '%s'", err);
}

Test(profile, file_errors_carry_the_path)
{
	char path[] = "/tmp/tapio-profile-XXXXXX";
	const char *yaml = "version: 1\ndefaults:\n  storage: {warning_ms: 0}\n";
	struct profile *p = NULL;
	char err[512] = "", want[600];
	int fd = mkstemp(path);

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
	close(fd);
	cr_assert_eq(profile_load_file(path, &p, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want),
		 "%s:3:25: defaults.storage.warning_ms: 0 out of range 1..3600000", path);
	cr_assert_str_eq(err, want);
	unlink(path);
	cr_assert_eq(profile_load_file(path, &p, err, sizeof(err)), -ENOENT);
	cr_assert_null(p);
}

Test(profile, overrides_that_cannot_meet_are_not_combined)
{
	/* the same contradiction as above, but no agent can match both overrides */
	static const char *const ok[] = {
	    "version: 1\noverrides:\n  - match: {node: db-1}\n    storage: {warning_ms: 150}\n"
	    "  - match: {node: db-2}\n    storage: {critical_ms: 100}\n",
	    "version: 1\noverrides:\n  - match: {node: db-1}\n    storage: {warning_ms: 150}\n"
	    "  - match: {node: \"web-*\"}\n    storage: {critical_ms: 100}\n",
	    "version: 1\noverrides:\n  - match: {labels: {role: a}}\n    storage: {warning_ms: 150}\n"
	    "  - match: {labels: {role: b}}\n    storage: {critical_ms: 100}\n",
	    /* later wins: the second override fixes what it would break */
	    "version: 1\noverrides:\n  - match: {node: \"db-*\"}\n    storage: {warning_ms: 150}\n"
	    "  - match: {labels: {role: x}}\n    storage: {warning_ms: 10, critical_ms: 100}\n",
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		profile_free(load_ok(ok[i]));
}

static const char *const resolve_yaml = "version: 1\n"
					"name: prod\n"
					"defaults:\n"
					"  storage: {warning_ms: 40, critical_ms: 150}\n"
					"overrides:\n"
					"  - match: {node: \"db-*\"}\n"
					"    storage: {warning_ms: 20, critical_ms: 100}\n"
					"  - match: {labels: {role: ingest}}\n"
					"    network: {enabled: false}\n"
					"    storage: {warning_ms: 30}\n"
					"  - match: {labels: {role: ingest, zone: a}}\n"
					"    node: {pmc_interval_ms: 5000}\n";

static void expect_defaults_plus(const struct tapio_settings *s, uint32_t warn, uint32_t crit,
				 bool net, uint32_t pmc)
{
	struct tapio_settings want;

	settings_defaults(&want);
	want.storage_warning_ms = warn;
	want.storage_critical_ms = crit;
	want.network_enabled = net;
	want.pmc_interval_ms = pmc;
	for (size_t f = 0; f < config_hash_field_count(); f++)
		cr_assert(config_hash_field_equal(f, s, &want), "%s differs",
			  config_hash_field(f)->key);
	cr_assert_eq(settings_validate(s, NULL, 0), 0);
}

Test(profile, resolve_defaults_glob_labels_and_order)
{
	struct profile *p = load_ok(resolve_yaml);
	struct profile_label ingest[] = {{"zone", "b"}, {"role", "ingest"}};
	struct profile_label ingest_a[] = {{"role", "ingest"}, {"zone", "a"}};
	struct profile_label other[] = {{"role", "other"}};
	struct tapio_settings s;

	cr_assert_str_eq(profile_name(p), "prod");
	cr_assert_eq(profile_override_count(p), 3);

	/* defaults only */
	cr_assert_eq(profile_resolve(p, "web-1", NULL, 0, &s), 0);
	expect_defaults_plus(&s, 40, 150, true, 1000);
	/* node glob */
	cr_assert_eq(profile_resolve(p, "db-1", other, 1, &s), 1);
	expect_defaults_plus(&s, 20, 100, true, 1000);
	cr_assert(profile_override_matches(p, 0, "db-1", NULL, 0));
	cr_assert_not(profile_override_matches(p, 0, "xdb-1", NULL, 0));
	cr_assert_not(profile_override_matches(p, 0, NULL, NULL, 0));
	/* label: only the keys it sets, the rest from defaults */
	cr_assert_eq(profile_resolve(p, "web-1", ingest, 2, &s), 1);
	expect_defaults_plus(&s, 30, 150, false, 1000);
	/* every listed label must be equal */
	cr_assert_not(profile_override_matches(p, 2, "web-1", ingest, 2));
	cr_assert(profile_override_matches(p, 2, "web-1", ingest_a, 2));
	cr_assert_not(profile_override_matches(p, 3, "web-1", ingest_a, 2));
	/* all three, in file order: warning from [1] wins over [0], critical stays from [0] */
	cr_assert_eq(profile_resolve(p, "db-7", ingest_a, 2, &s), 3);
	expect_defaults_plus(&s, 30, 100, false, 5000);
	/* no match: no node name, unrelated labels */
	cr_assert_eq(profile_resolve(p, NULL, other, 1, &s), 0);
	expect_defaults_plus(&s, 40, 150, true, 1000);
	profile_free(p);
}

Test(profile, hash_for_is_the_hash_of_the_resolved_settings)
{
	struct profile *p = load_ok(resolve_yaml);
	struct profile_label ingest[] = {{"role", "ingest"}};
	char a[CONFIG_HASH_LEN], b[CONFIG_HASH_LEN], c[CONFIG_HASH_LEN];
	struct tapio_settings s;

	profile_resolve(p, "db-1", ingest, 1, &s);
	cr_assert_eq(config_hash_settings(&s, a), 0);
	cr_assert_eq(profile_hash_for(p, "db-1", ingest, 1, b), 0);
	cr_assert_str_eq(a, b);
	cr_assert_eq(profile_hash_for(p, "web-1", NULL, 0, c), 0);
	cr_assert_str_neq(b, c);
	profile_free(p);
}

/* The same profile as resolve_yaml, spelled differently. */
static const char *const same_as_resolve[] = {
    /* flow style, reordered keys and labels, comments, explicit defaults, another name */
    "# production profile\n"
    "overrides: [{storage: {critical_ms: 100, warning_ms: 20}, match: {node: \"db-*\"}},\n"
    "  {storage: {warning_ms: 30}, network: {enabled: false}, match: {labels: {role: ingest}}},\n"
    "  {node: {pmc_interval_ms: 5000}, match: {labels: {zone: a, role: ingest}}}]\n"
    "defaults: {storage: {critical_ms: 150, warning_ms: 40}, network: {enabled: true,\n"
    "  rtt_spike_ratio: 2}, container: {ignored_exit_codes: []}}  # explicit defaults\n"
    "version: 1\n"
    "name: renamed\n",
    /* block style everywhere, the match written after the settings */
    "version: 1\n"
    "defaults:\n"
    "  node:\n"
    "    enabled: true\n"
    "    stall_critical_pct: 40.0\n"
    "  storage:\n"
    "    critical_ms: 150\n"
    "    warning_ms: 40\n"
    "overrides:\n"
    "  - storage:\n"
    "      warning_ms: 20\n"
    "      critical_ms: 100\n"
    "    match:\n"
    "      node: 'db-*'\n"
    "  - match:\n"
    "      labels:\n"
    "        role: ingest\n"
    "    network:\n"
    "      enabled: false\n"
    "    storage:\n"
    "      warning_ms: 30\n"
    "  - match:\n"
    "      labels:\n"
    "        zone: \"a\"\n"
    "        role: ingest\n"
    "    node:\n"
    "      pmc_interval_ms: 5000\n",
};

Test(profile, reformatting_does_not_change_any_hash)
{
	struct profile *base = load_ok(resolve_yaml);
	struct profile_label labels[] = {{"role", "ingest"}, {"zone", "a"}};
	const char *nodes[] = {"db-1", "web-1", NULL};

	for (size_t i = 0; i < sizeof(same_as_resolve) / sizeof(same_as_resolve[0]); i++) {
		struct profile *p = load_ok(same_as_resolve[i]);

		cr_assert_str_eq(profile_content_hash(p), profile_content_hash(base),
				 "spelling %zu changed the content hash", i);
		for (size_t n = 0; n < 3; n++)
			for (size_t nl = 0; nl <= 2; nl++) {
				char a[CONFIG_HASH_LEN], b[CONFIG_HASH_LEN];
				cr_assert_eq(profile_hash_for(p, nodes[n], labels, nl, a), 0);
				cr_assert_eq(profile_hash_for(base, nodes[n], labels, nl, b), 0);
				cr_assert_str_eq(a, b, "spelling %zu, node %zu, %zu labels", i, n,
						 nl);
			}
		profile_free(p);
	}
	profile_free(base);
}

/* One changed value per observer key (valid on top of the defaults). */
static const struct {
	const char *key;
	const char *value;
} changes[] = {
    {"network.enabled", "false"},
    {"network.conn_refused_window_ms", "1001"},
    {"network.conn_refused_min_count", "2"},
    {"network.retransmit_window_ms", "999"},
    {"network.retransmit_burst_threshold", "4"},
    {"network.rtt_spike_ratio", "2.5"},
    {"network.rtt_absolute_ms", "501"},
    {"network.rtt_baseline_samples", "6"},
    {"network.rtt_baseline_max_ms", "101"},
    {"network.rtt_sample_interval_ms", "99"},
    {"container.enabled", "false"},
    {"container.ignored_exit_codes", "[143]"},
    {"storage.enabled", "false"},
    {"storage.warning_ms", "51"},
    {"storage.critical_ms", "201"},
    {"storage.window_ms", "1001"},
    {"node.enabled", "false"},
    {"node.pmc_interval_ms", "1001"},
    {"node.stall_warning_pct", "20.5"},
    {"node.stall_critical_pct", "40.5"},
    {"node.ipc_min", "0.9"},
    {"node.memory_pressure_pct", "11"},
};

#define N_CHANGES (sizeof(changes) / sizeof(changes[0]))

static void yaml_setting(char *buf, size_t len, const char *head, const char *key,
			 const char *value, const char *indent)
{
	const char *dot = strchr(key, '.');

	snprintf(buf, len, "%s%s%.*s:\n%s  %s: %s\n", head, indent, (int)(dot - key), key, indent,
		 dot + 1, value);
}

Test(profile, every_single_value_change_changes_the_hashes)
{
	char content[N_CHANGES + 1][CONFIG_HASH_LEN], agent[N_CHANGES + 1][CONFIG_HASH_LEN];
	struct profile *base = load_ok("version: 1\n");
	struct tapio_settings defaults;
	size_t n_keys = 0;

	while (settings_yaml_key(n_keys))
		n_keys++;
	cr_assert_eq(N_CHANGES, n_keys, "a key was added: add it to changes[]");
	settings_defaults(&defaults);
	snprintf(content[N_CHANGES], CONFIG_HASH_LEN, "%s", profile_content_hash(base));
	cr_assert_eq(profile_hash_for(base, "n", NULL, 0, agent[N_CHANGES]), 0);
	for (size_t i = 0; i < N_CHANGES; i++) {
		struct tapio_settings s;
		char yaml[256];
		struct profile *p;
		int idx = config_hash_field_index(changes[i].key);

		cr_assert_geq(idx, 0, "%s", changes[i].key);
		yaml_setting(yaml, sizeof(yaml), "version: 1\ndefaults:\n", changes[i].key,
			     changes[i].value, "  ");
		p = load_ok(yaml);
		snprintf(content[i], CONFIG_HASH_LEN, "%s", profile_content_hash(p));
		cr_assert_eq(profile_hash_for(p, "n", NULL, 0, agent[i]), 0);
		profile_resolve(p, "n", NULL, 0, &s);
		for (size_t f = 0; f < config_hash_field_count(); f++)
			cr_assert_eq(config_hash_field_equal(f, &s, &defaults), f != (size_t)idx,
				     "%s: field %s", changes[i].key, config_hash_field(f)->key);
		profile_free(p);
	}
	for (size_t i = 0; i <= N_CHANGES; i++)
		for (size_t j = 0; j < i; j++) {
			cr_assert_str_neq(content[i], content[j], "content %zu vs %zu", i, j);
			cr_assert_str_neq(agent[i], agent[j], "agent %zu vs %zu", i, j);
		}
	profile_free(base);
}

Test(profile, every_single_override_change_changes_the_content_hash)
{
	static const char *const variants[] = {
	    /* base */
	    "version: 1\noverrides:\n  - match: {node: \"db-*\", labels: {role: x}}\n"
	    "    storage: {warning_ms: 20}\n",
	    /* another glob */
	    "version: 1\noverrides:\n  - match: {node: \"db-1*\", labels: {role: x}}\n"
	    "    storage: {warning_ms: 20}\n",
	    /* another label value */
	    "version: 1\noverrides:\n  - match: {node: \"db-*\", labels: {role: y}}\n"
	    "    storage: {warning_ms: 20}\n",
	    /* another label key */
	    "version: 1\noverrides:\n  - match: {node: \"db-*\", labels: {tier: x}}\n"
	    "    storage: {warning_ms: 20}\n",
	    /* one more label */
	    "version: 1\noverrides:\n  - match: {node: \"db-*\", labels: {role: x, a: b}}\n"
	    "    storage: {warning_ms: 20}\n",
	    /* no glob */
	    "version: 1\noverrides:\n  - match: {labels: {role: x}}\n"
	    "    storage: {warning_ms: 20}\n",
	    /* another value */
	    "version: 1\noverrides:\n  - match: {node: \"db-*\", labels: {role: x}}\n"
	    "    storage: {warning_ms: 21}\n",
	    /* the same value under another key */
	    "version: 1\noverrides:\n  - match: {node: \"db-*\", labels: {role: x}}\n"
	    "    storage: {window_ms: 20}\n",
	    /* an explicit default in an override is a setting: it beats earlier overrides */
	    "version: 1\noverrides:\n  - match: {node: \"db-*\", labels: {role: x}}\n"
	    "    storage: {warning_ms: 20, window_ms: 1000}\n",
	    /* a second override */
	    "version: 1\noverrides:\n  - match: {node: \"db-*\", labels: {role: x}}\n"
	    "    storage: {warning_ms: 20}\n  - match: {node: z}\n    storage: {}\n",
	    /* the same two, swapped */
	    "version: 1\noverrides:\n  - match: {node: z}\n    storage: {}\n"
	    "  - match: {node: \"db-*\", labels: {role: x}}\n    storage: {warning_ms: 20}\n",
	};
	enum { N = sizeof(variants) / sizeof(variants[0]) };
	char hashes[N][CONFIG_HASH_LEN];

	for (size_t i = 0; i < N; i++) {
		struct profile *p = load_ok(variants[i]);
		snprintf(hashes[i], CONFIG_HASH_LEN, "%s", profile_content_hash(p));
		cr_assert(config_hash_valid(hashes[i]));
		profile_free(p);
	}
	for (size_t i = 0; i < N; i++)
		for (size_t j = 0; j < i; j++)
			cr_assert_str_neq(hashes[i], hashes[j], "variants %zu and %zu", i, j);
}

Test(profile, generation_follows_content_not_formatting)
{
	char dir[] = "/tmp/tapio-profile-gen-XXXXXX", path[128];
	struct profile *a = load_ok(resolve_yaml);
	struct profile *a2 = load_ok(same_as_resolve[0]);
	struct profile *b = load_ok("version: 1\n");
	uint64_t gen = 0;

	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(config_generation_next(dir, profile_content_hash(a), &gen), 1);
	cr_assert_eq(gen, 1);
	cr_assert_eq(config_generation_next(dir, profile_content_hash(a2), &gen), 0);
	cr_assert_eq(gen, 1);
	cr_assert_eq(config_generation_next(dir, profile_content_hash(b), &gen), 1);
	cr_assert_eq(gen, 2);
	profile_free(a);
	profile_free(a2);
	profile_free(b);
	snprintf(path, sizeof(path), "%s/config-generation", dir);
	unlink(path);
	rmdir(dir);
}

Test(profile, default_yaml_resolves_to_the_built_in_defaults)
{
	const char *path = TAPIO_SOURCE_DIR "/deploy/profiles/default.yaml";
	struct tapio_settings s, d;
	struct profile *p = NULL, *empty = load_ok("version: 1\n");
	char err[512] = "", text[8192];
	char hs[CONFIG_HASH_LEN], hd[CONFIG_HASH_LEN];
	FILE *f;
	size_t len;

	cr_assert_eq(profile_load_file(path, &p, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(profile_override_count(p), 0);
	cr_assert_eq(profile_resolve(p, "any", NULL, 0, &s), 0);
	settings_defaults(&d);
	cr_assert_eq(config_hash_settings(&s, hs), 0);
	cr_assert_eq(config_hash_settings(&d, hd), 0);
	cr_assert_str_eq(hs, hd);
	for (size_t i = 0; i < config_hash_field_count(); i++)
		cr_assert(config_hash_field_equal(i, &s, &d), "%s", config_hash_field(i)->key);
	/* spelling every default out is the same content as spelling none */
	cr_assert_str_eq(profile_content_hash(p), profile_content_hash(empty));

	/* every key appears explicitly, under its section */
	f = fopen(path, "r");
	cr_assert_not_null(f);
	len = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[len] = 0;
	for (size_t i = 0; settings_yaml_key(i); i++) {
		const char *key = settings_yaml_key(i), *dot = strchr(key, '.'), *sec;
		char sec_line[64], key_line[96];

		snprintf(sec_line, sizeof(sec_line), "\n  %.*s:\n", (int)(dot - key), key);
		snprintf(key_line, sizeof(key_line), "\n    %s:", dot + 1);
		sec = strstr(text, sec_line);
		cr_assert_not_null(sec, "section of %s missing", key);
		cr_assert_not_null(strstr(sec, key_line), "%s missing", key);
	}
	profile_free(p);
	profile_free(empty);
}

Test(profile, example_overrides_yaml_loads_and_matches)
{
	const char *path = TAPIO_SOURCE_DIR "/deploy/profiles/example-overrides.yaml";
	struct profile_label ingest[] = {{"role", "ingest"}};
	struct tapio_settings s;
	struct profile *p = NULL;
	char err[512] = "";

	cr_assert_eq(profile_load_file(path, &p, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(profile_name(p), "production");
	cr_assert_eq(profile_override_count(p), 3);
	cr_assert_eq(profile_resolve(p, "web-1", NULL, 0, &s), 0);
	cr_assert_eq(s.n_ignored_exit_codes, 1);
	cr_assert_eq(s.ignored_exit_codes[0], 143);
	cr_assert_eq(profile_resolve(p, "db-3", NULL, 0, &s), 1);
	cr_assert_eq(s.storage_warning_ms, 20);
	cr_assert_eq(s.storage_critical_ms, 100);
	cr_assert(s.network_enabled);
	cr_assert_eq(profile_resolve(p, "web-1", ingest, 1, &s), 1);
	cr_assert_not(s.network_enabled);
	cr_assert_eq(s.pmc_interval_ms, 5000);
	cr_assert_eq(s.storage_warning_ms, 50);
	cr_assert_eq(profile_resolve(p, "db-7", ingest, 1, &s), 3);
	cr_assert_eq(s.storage_warning_ms, 20);
	cr_assert_eq(s.storage_critical_ms, 150);
	cr_assert_not(s.network_enabled);
	profile_free(p);
}

Test(profile, free_is_null_safe)
{
	profile_free(NULL);
}
