/*
 * Canonical settings encoding and SHA-256 (OpenSSL EVP). The encoding reads fields, never raw
 * struct memory, so padding and unused exit-code slots cannot leak into the hash.
 */
#include "config_hash.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

/* A new field in struct tapio_settings must be added to the table below (and to the hash). */
_Static_assert(sizeof(struct tapio_settings) == 136,
	       "struct tapio_settings changed: update fields[] in config_hash.c");

#define F(key, kind, member)                                       \
	{                                                          \
		key, kind, offsetof(struct tapio_settings, member) \
	}

static const struct config_field fields[] = {
    F("network.enabled", CONFIG_FIELD_BOOL, network_enabled),
    F("network.conn_refused_window_ms", CONFIG_FIELD_U32, conn_refused_window_ms),
    F("network.conn_refused_min_count", CONFIG_FIELD_U32, conn_refused_min_count),
    F("network.retransmit_window_ms", CONFIG_FIELD_U32, retransmit_window_ms),
    F("network.retransmit_burst_threshold", CONFIG_FIELD_U32, retransmit_burst_threshold),
    F("network.rtt_spike_ratio", CONFIG_FIELD_DOUBLE, rtt_spike_ratio),
    F("network.rtt_absolute_ms", CONFIG_FIELD_U32, rtt_absolute_ms),
    F("network.rtt_baseline_samples", CONFIG_FIELD_U32, rtt_baseline_samples),
    F("network.rtt_baseline_max_ms", CONFIG_FIELD_U32, rtt_baseline_max_ms),
    F("network.rtt_sample_interval_ms", CONFIG_FIELD_U32, rtt_sample_interval_ms),
    F("container.enabled", CONFIG_FIELD_BOOL, container_enabled),
    F("container.ignored_exit_codes", CONFIG_FIELD_EXIT_CODES, ignored_exit_codes),
    F("storage.enabled", CONFIG_FIELD_BOOL, storage_enabled),
    F("storage.warning_ms", CONFIG_FIELD_U32, storage_warning_ms),
    F("storage.critical_ms", CONFIG_FIELD_U32, storage_critical_ms),
    F("storage.window_ms", CONFIG_FIELD_U32, storage_window_ms),
    F("node.enabled", CONFIG_FIELD_BOOL, node_enabled),
    F("node.pmc_interval_ms", CONFIG_FIELD_U32, pmc_interval_ms),
    F("node.stall_warning_pct", CONFIG_FIELD_DOUBLE, pmc_stall_warning_pct),
    F("node.stall_critical_pct", CONFIG_FIELD_DOUBLE, pmc_stall_critical_pct),
    F("node.ipc_min", CONFIG_FIELD_DOUBLE, pmc_ipc_min),
    F("node.memory_pressure_pct", CONFIG_FIELD_DOUBLE, memory_pressure_pct),
};

#define N_FIELDS (sizeof(fields) / sizeof(fields[0]))

/* profiles keep the keys an override sets in a 64-bit mask */
_Static_assert(N_FIELDS <= 64, "too many settings for a uint64_t key mask");

static const uint8_t magic[8] = {'T', 'P', 'S', 'E', 'T', 0, 0, 1};

size_t config_hash_field_count(void)
{
	return N_FIELDS;
}

const struct config_field *config_hash_field(size_t i)
{
	return i < N_FIELDS ? &fields[i] : NULL;
}

int config_hash_field_index(const char *key)
{
	for (size_t i = 0; i < N_FIELDS; i++)
		if (strcmp(fields[i].key, key) == 0)
			return (int)i;
	return -1;
}

static size_t field_size(enum config_field_kind kind)
{
	switch (kind) {
	case CONFIG_FIELD_BOOL:
		return sizeof(bool);
	case CONFIG_FIELD_U32:
		return sizeof(uint32_t);
	case CONFIG_FIELD_DOUBLE:
		return sizeof(double);
	case CONFIG_FIELD_EXIT_CODES:
		return sizeof(((struct tapio_settings *)0)->ignored_exit_codes);
	}
	return 0;
}

void config_hash_field_copy(size_t i, struct tapio_settings *dst, const struct tapio_settings *src)
{
	if (i >= N_FIELDS)
		return;
	memcpy((char *)dst + fields[i].offset, (const char *)src + fields[i].offset,
	       field_size(fields[i].kind));
	if (fields[i].kind == CONFIG_FIELD_EXIT_CODES)
		dst->n_ignored_exit_codes = src->n_ignored_exit_codes;
}

static int cmp_i32(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;

	return (x > y) - (x < y);
}

/* The exit codes as a set: count clamped to the array, sorted, unused slots zero. */
static uint32_t sorted_codes(const struct tapio_settings *s,
			     int32_t out[TAPIO_MAX_IGNORED_EXIT_CODES])
{
	uint32_t n = s->n_ignored_exit_codes;

	if (n > TAPIO_MAX_IGNORED_EXIT_CODES)
		n = TAPIO_MAX_IGNORED_EXIT_CODES;
	memset(out, 0, sizeof(int32_t) * TAPIO_MAX_IGNORED_EXIT_CODES);
	memcpy(out, s->ignored_exit_codes, n * sizeof(int32_t));
	qsort(out, n, sizeof(int32_t), cmp_i32);
	return n;
}

static uint8_t *put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		*p++ = (uint8_t)(v >> (8 * i));
	return p;
}

static uint8_t *put_f64(uint8_t *p, double d)
{
	uint64_t bits;

	if (d == 0.0)
		d = 0.0; /* -0 and +0 are the same setting */
	memcpy(&bits, &d, sizeof(bits));
	for (int i = 0; i < 8; i++)
		*p++ = (uint8_t)(bits >> (8 * i));
	return p;
}

static uint8_t *put_field(uint8_t *p, const struct config_field *f, const struct tapio_settings *s)
{
	const char *src = (const char *)s + f->offset;

	switch (f->kind) {
	case CONFIG_FIELD_BOOL: {
		bool b;
		memcpy(&b, src, sizeof(b));
		*p++ = b ? 1 : 0;
		return p;
	}
	case CONFIG_FIELD_U32: {
		uint32_t v;
		memcpy(&v, src, sizeof(v));
		return put_u32(p, v);
	}
	case CONFIG_FIELD_DOUBLE: {
		double d;
		memcpy(&d, src, sizeof(d));
		return put_f64(p, d);
	}
	case CONFIG_FIELD_EXIT_CODES: {
		int32_t codes[TAPIO_MAX_IGNORED_EXIT_CODES];
		uint32_t n = sorted_codes(s, codes);
		p = put_u32(p, n);
		for (int i = 0; i < TAPIO_MAX_IGNORED_EXIT_CODES; i++)
			p = put_u32(p, (uint32_t)codes[i]);
		return p;
	}
	}
	return p;
}

bool config_hash_field_equal(size_t i, const struct tapio_settings *a,
			     const struct tapio_settings *b)
{
	uint8_t ea[4 + 4 * TAPIO_MAX_IGNORED_EXIT_CODES], eb[sizeof(ea)];
	uint8_t *pa, *pb;

	if (i >= N_FIELDS)
		return false;
	pa = put_field(ea, &fields[i], a);
	pb = put_field(eb, &fields[i], b);
	return pa - ea == pb - eb && memcmp(ea, eb, (size_t)(pa - ea)) == 0;
}

void config_hash_encode(const struct tapio_settings *s, uint8_t buf[CONFIG_HASH_SETTINGS_BYTES])
{
	uint8_t *p = buf;

	memcpy(p, magic, sizeof(magic));
	p += sizeof(magic);
	for (size_t i = 0; i < N_FIELDS; i++)
		p = put_field(p, &fields[i], s);
}

int config_hash_bytes(const void *data, size_t len, char out[CONFIG_HASH_LEN])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32) {
		out[0] = 0;
		return -ENOMEM;
	}
	memcpy(out, "sha256:", 7);
	for (unsigned int i = 0; i < mdlen; i++) {
		out[7 + 2 * i] = hex[md[i] >> 4];
		out[8 + 2 * i] = hex[md[i] & 15];
	}
	out[7 + 2 * mdlen] = 0;
	return 0;
}

int config_hash_settings(const struct tapio_settings *s, char out[CONFIG_HASH_LEN])
{
	uint8_t buf[CONFIG_HASH_SETTINGS_BYTES];

	config_hash_encode(s, buf);
	return config_hash_bytes(buf, sizeof(buf), out);
}

bool config_hash_valid(const char *s)
{
	if (!s || strncmp(s, "sha256:", 7) != 0)
		return false;
	for (int i = 0; i < 64; i++) {
		char c = s[7 + i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return s[71] == 0;
}
