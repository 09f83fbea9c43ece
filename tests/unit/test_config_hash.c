/* config_hash: canonical settings encoding, SHA-256 text form, field table. */
#include <criterion/criterion.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "common/config_hash.h"
#include "common/settings_yaml.h"

TestSuite(config_hash, .timeout = 10);

Test(config_hash, sha256_known_answer)
{
	char out[CONFIG_HASH_LEN];

	cr_assert_eq(config_hash_bytes("abc", 3, out), 0);
	cr_assert_str_eq(out,
			 "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	cr_assert(config_hash_valid(out));
}

Test(config_hash, valid_rejects_bad_forms)
{
	const char *good =
	    "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
	const char *bad[] = {
	    "",
	    "sha256:",
	    "sha1:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
	    "sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
	    "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a",
	    "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad0",
	    "sha256:ga7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
	};

	cr_assert(config_hash_valid(good));
	cr_assert_not(config_hash_valid(NULL));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_not(config_hash_valid(bad[i]), "accepted '%s'", bad[i]);
}

/* The hash must cover exactly what the YAML parser accepts, no more, no less. */
Test(config_hash, fields_match_the_yaml_schema)
{
	size_t n = 0;

	while (settings_yaml_key(n))
		n++;
	cr_assert_eq(config_hash_field_count(), n);
	for (size_t i = 0; i < n; i++) {
		int idx = config_hash_field_index(settings_yaml_key(i));
		cr_assert_geq(idx, 0, "%s missing from the hash", settings_yaml_key(i));
		cr_assert_str_eq(config_hash_field((size_t)idx)->key, settings_yaml_key(i));
	}
	cr_assert_null(config_hash_field(n));
	cr_assert_eq(config_hash_field_index("storage.nope"), -1);
}

Test(config_hash, encoding_has_fixed_size_and_magic)
{
	uint8_t buf[CONFIG_HASH_SETTINGS_BYTES + 16];
	struct tapio_settings s;

	settings_defaults(&s);
	memset(buf, 0xAA, sizeof(buf));
	config_hash_encode(&s, buf);
	cr_assert_eq(memcmp(buf, "TPSET\0\0\1", 8), 0);
	for (size_t i = CONFIG_HASH_SETTINGS_BYTES; i < sizeof(buf); i++)
		cr_assert_eq(buf[i], 0xAA, "wrote past the encoding at %zu", i);
	/* network.enabled is the first field: one byte, 1 */
	cr_assert_eq(buf[8], 1);
	/* network.conn_refused_window_ms = 1000 little-endian */
	cr_assert_eq(buf[9], 0xe8);
	cr_assert_eq(buf[10], 0x03);
	cr_assert_eq(buf[11], 0);
	cr_assert_eq(buf[12], 0);
}

static void hash_of(const struct tapio_settings *s, char out[CONFIG_HASH_LEN])
{
	cr_assert_eq(config_hash_settings(s, out), 0);
	cr_assert(config_hash_valid(out), "bad hash '%s'", out);
}

Test(config_hash, padding_and_unused_slots_do_not_matter)
{
	struct tapio_settings a, b;
	char ha[CONFIG_HASH_LEN], hb[CONFIG_HASH_LEN];

	settings_defaults(&a);
	memset(&b, 0xA5, sizeof(b)); /* garbage in padding and in unused exit-code slots */
	for (size_t i = 0; i < config_hash_field_count(); i++)
		config_hash_field_copy(i, &b, &a);
	b.n_ignored_exit_codes = 0;
	hash_of(&a, ha);
	hash_of(&b, hb);
	cr_assert_str_eq(ha, hb);
}

Test(config_hash, exit_codes_are_a_set_and_negative_zero_is_zero)
{
	struct tapio_settings a, b;
	char ha[CONFIG_HASH_LEN], hb[CONFIG_HASH_LEN];

	settings_defaults(&a);
	settings_defaults(&b);
	a.n_ignored_exit_codes = 3;
	a.ignored_exit_codes[0] = 143;
	a.ignored_exit_codes[1] = 1;
	a.ignored_exit_codes[2] = 2;
	b.n_ignored_exit_codes = 3;
	b.ignored_exit_codes[0] = 2;
	b.ignored_exit_codes[1] = 143;
	b.ignored_exit_codes[2] = 1;
	a.pmc_stall_warning_pct = 0.0;
	b.pmc_stall_warning_pct = -0.0;
	hash_of(&a, ha);
	hash_of(&b, hb);
	cr_assert_str_eq(ha, hb);
	for (size_t i = 0; i < config_hash_field_count(); i++)
		cr_assert(config_hash_field_equal(i, &a, &b), "%s differs",
			  config_hash_field(i)->key);
}

/* Mutations written against struct tapio_settings directly, not through the hash's table. */
static void m_net(struct tapio_settings *s)
{
	s->network_enabled = false;
}
static void m_ct(struct tapio_settings *s)
{
	s->container_enabled = false;
}
static void m_st(struct tapio_settings *s)
{
	s->storage_enabled = false;
}
static void m_node(struct tapio_settings *s)
{
	s->node_enabled = false;
}
static void m_crw(struct tapio_settings *s)
{
	s->conn_refused_window_ms++;
}
static void m_crm(struct tapio_settings *s)
{
	s->conn_refused_min_count++;
}
static void m_rtw(struct tapio_settings *s)
{
	s->retransmit_window_ms++;
}
static void m_rtb(struct tapio_settings *s)
{
	s->retransmit_burst_threshold++;
}
static void m_ratio(struct tapio_settings *s)
{
	s->rtt_spike_ratio += 0.001;
}
static void m_rtta(struct tapio_settings *s)
{
	s->rtt_absolute_ms++;
}
static void m_rbs(struct tapio_settings *s)
{
	s->rtt_baseline_samples++;
}
static void m_rbm(struct tapio_settings *s)
{
	s->rtt_baseline_max_ms++;
}
static void m_rsi(struct tapio_settings *s)
{
	s->rtt_sample_interval_ms++;
}
static void m_codes_add(struct tapio_settings *s)
{
	s->ignored_exit_codes[s->n_ignored_exit_codes++] = 143;
}
static void m_codes_zero(struct tapio_settings *s)
{
	s->ignored_exit_codes[s->n_ignored_exit_codes++] = 0; /* 0 is a code, not padding */
}
static void m_sw(struct tapio_settings *s)
{
	s->storage_warning_ms++;
}
static void m_sc(struct tapio_settings *s)
{
	s->storage_critical_ms++;
}
static void m_swin(struct tapio_settings *s)
{
	s->storage_window_ms++;
}
static void m_pmc(struct tapio_settings *s)
{
	s->pmc_interval_ms++;
}
static void m_psw(struct tapio_settings *s)
{
	s->pmc_stall_warning_pct += 0.5;
}
static void m_psc(struct tapio_settings *s)
{
	s->pmc_stall_critical_pct += 0.5;
}
static void m_ipc(struct tapio_settings *s)
{
	s->pmc_ipc_min += 0.25;
}
static void m_mem(struct tapio_settings *s)
{
	s->memory_pressure_pct += 1.0;
}

static void (*const mutations[])(struct tapio_settings *) = {
    m_net,   m_ct,   m_st,  m_node, m_crw, m_crm,	m_rtw,	      m_rtb,
    m_ratio, m_rtta, m_rbs, m_rbm,  m_rsi, m_sw,	m_sc,	      m_swin,
    m_pmc,   m_psw,  m_psc, m_ipc,  m_mem, m_codes_add, m_codes_zero,
};

#define N_MUT (sizeof(mutations) / sizeof(mutations[0]))

Test(config_hash, every_single_value_change_changes_the_hash)
{
	char hashes[N_MUT + 1][CONFIG_HASH_LEN];
	struct tapio_settings base;

	/* one mutation per member of struct tapio_settings (exit codes twice: count and value) */
	cr_assert_eq(N_MUT, config_hash_field_count() + 1);
	settings_defaults(&base);
	hash_of(&base, hashes[N_MUT]);
	for (size_t i = 0; i < N_MUT; i++) {
		struct tapio_settings s = base;
		size_t differing = 0;

		mutations[i](&s);
		cr_assert_eq(settings_validate(&s, NULL, 0), 0, "mutation %zu is invalid", i);
		hash_of(&s, hashes[i]);
		for (size_t f = 0; f < config_hash_field_count(); f++)
			differing += !config_hash_field_equal(f, &base, &s);
		cr_assert_eq(differing, 1, "mutation %zu changed %zu fields", i, differing);
	}
	for (size_t i = 0; i <= N_MUT; i++)
		for (size_t j = 0; j < i; j++)
			cr_assert_str_neq(hashes[i], hashes[j], "mutations %zu and %zu collide", i,
					  j);
}

Test(config_hash, field_copy_moves_one_setting)
{
	struct tapio_settings a, b;
	int idx = config_hash_field_index("container.ignored_exit_codes");

	settings_defaults(&a);
	settings_defaults(&b);
	b.n_ignored_exit_codes = 2;
	b.ignored_exit_codes[0] = 7;
	b.ignored_exit_codes[1] = 9;
	b.storage_warning_ms = 77;
	cr_assert_geq(idx, 0);
	config_hash_field_copy((size_t)idx, &a, &b);
	cr_assert_eq(a.n_ignored_exit_codes, 2);
	cr_assert_eq(a.ignored_exit_codes[1], 9);
	cr_assert_eq(a.storage_warning_ms, 50);
	config_hash_field_copy((size_t)config_hash_field_index("storage.warning_ms"), &a, &b);
	cr_assert_eq(a.storage_warning_ms, 77);
}
