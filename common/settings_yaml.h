/*
 * Observer settings from YAML (libyaml document API), shared by the agent's local config
 * file and the controller's profiles. Closed schema: unknown keys, duplicate keys, wrong
 * types and out-of-range values are rejected with "file:line:col: message naming the key".
 */
#ifndef TAPIO_SETTINGS_YAML_H
#define TAPIO_SETTINGS_YAML_H

#include <stddef.h>
#include <stdint.h>

#include <yaml.h>

#include "common/settings.h"

/*
 * Applies the observer sections (`network`, `container`, `storage`, `node`) found in
 * `mapping` onto *s (keys not present keep their value), then runs settings_validate().
 * Any other key is an error. Returns 0, or -EINVAL with "label:line:col: message" in err;
 * *s may be partly updated on failure.
 */
int settings_yaml_apply(const char *file_label, yaml_document_t *doc, yaml_node_t *mapping,
			struct tapio_settings *s, char *err, size_t errlen);

/*
 * Like settings_yaml_apply, but top-level keys listed in `extra_keys` (NULL-terminated, may
 * be NULL) are skipped instead of rejected: the caller handles them.
 */
int settings_yaml_apply_ex(const char *file_label, yaml_document_t *doc, yaml_node_t *mapping,
			   const char *const *extra_keys, struct tapio_settings *s, char *err,
			   size_t errlen);

/*
 * Loads one YAML document from path into *doc (caller calls yaml_document_delete on
 * success). Returns 0, or -errno / -EINVAL with "path:line:col: …" in err.
 */
int settings_yaml_load_document(const char *path, yaml_document_t *doc, char *err, size_t errlen);

/*
 * Reads path (a mapping of observer sections, or empty) and applies it onto *s, which the
 * caller initialises (normally settings_defaults). Returns 0 or -errno/-EINVAL with err.
 */
int settings_yaml_load_file(const char *path, struct tapio_settings *s, char *err, size_t errlen);

/*
 * The i-th accepted observer key as "section.key" (e.g. "storage.warning_ms"), or NULL past
 * the end. Lets tests and docs check they list exactly what the parser accepts.
 */
const char *settings_yaml_key(size_t i);

/* Helpers for callers with their own keys. All return 0 or -EINVAL with a located err. */

/* Formats "label:line:col: " + message for node into err; returns -EINVAL. */
int settings_yaml_error(char *err, size_t errlen, const char *label, const yaml_node_t *node,
			const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* A plain (unquoted) integer scalar within [min, max]. */
int settings_yaml_uint(const char *label, const yaml_node_t *node, const char *key, uint64_t min,
		       uint64_t max, uint64_t *out, char *err, size_t errlen);
/* Any scalar as a string of at most outlen-1 bytes. */
int settings_yaml_string(const char *label, const yaml_node_t *node, const char *key, char *out,
			 size_t outlen, char *err, size_t errlen);

#endif
