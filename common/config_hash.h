/*
 * Content hashes of observer settings: a canonical, fixed-order binary encoding of
 * struct tapio_settings (independent of YAML spelling, key order, padding bytes and the order
 * of ignored exit codes) and its SHA-256 as "sha256:<64 lowercase hex>". The same settings
 * give the same hash on every host, so controller and agent can compare them.
 */
#ifndef TAPIO_CONFIG_HASH_H
#define TAPIO_CONFIG_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/settings.h"

/* "sha256:" + 64 hex digits + NUL. */
#define CONFIG_HASH_LEN 72

/* Bytes of config_hash_encode()'s output. */
#define CONFIG_HASH_SETTINGS_BYTES 136

enum config_field_kind {
	CONFIG_FIELD_BOOL,
	CONFIG_FIELD_U32,
	CONFIG_FIELD_DOUBLE,
	CONFIG_FIELD_EXIT_CODES, /* n_ignored_exit_codes + ignored_exit_codes, one key */
};

/* One YAML-visible setting: its "section.key" name and where it lives in the struct. */
struct config_field {
	const char *key;
	enum config_field_kind kind;
	size_t offset;
};

/* Number of settings (22); the canonical encoding lists them in index order. */
size_t config_hash_field_count(void);

/* The i-th setting, or NULL past the end. */
const struct config_field *config_hash_field(size_t i);

/* Index of the setting named "section.key", or -1. */
int config_hash_field_index(const char *key);

/* Copies setting i (for exit codes: the count and the list) from *src to *dst. */
void config_hash_field_copy(size_t i, struct tapio_settings *dst, const struct tapio_settings *src);

/* True when setting i has the same value in *a and *b (exit codes compared as sets). */
bool config_hash_field_equal(size_t i, const struct tapio_settings *a,
			     const struct tapio_settings *b);

/*
 * Writes the canonical encoding of *s into buf (CONFIG_HASH_SETTINGS_BYTES bytes): the magic
 * "TPSET\0\0\1", then each setting in field order, little-endian (bool one byte, u32 four,
 * double eight with -0 as +0), ignored exit codes as a u32 count and 8 sorted i32 slots padded
 * with zero. Never fails.
 */
void config_hash_encode(const struct tapio_settings *s, uint8_t buf[CONFIG_HASH_SETTINGS_BYTES]);

/* "sha256:<hex>" of len bytes at data into out. Returns 0, or -ENOMEM if OpenSSL fails. */
int config_hash_bytes(const void *data, size_t len, char out[CONFIG_HASH_LEN]);

/* "sha256:<hex>" of config_hash_encode(s) into out. Returns 0 or -ENOMEM. */
int config_hash_settings(const struct tapio_settings *s, char out[CONFIG_HASH_LEN]);

/* True when s is "sha256:" followed by exactly 64 lowercase hex digits. */
bool config_hash_valid(const char *s);

#endif
