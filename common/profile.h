/*
 * Evidence profiles (SPEC §6): the operator's YAML that says how every agent's observers are
 * tuned, with per-node overrides. Loaded and fully validated once (closed schema, located
 * errors), then resolved per agent into a struct tapio_settings and hashed.
 *
 *   version: 1
 *   name: production
 *   defaults: {storage: {warning_ms: 50}}
 *   overrides:
 *     - match: {node: "db-*", labels: {role: ingest}}
 *       storage: {warning_ms: 20}
 *
 * A loaded profile is immutable, so one thread may resolve while another loads its
 * replacement; the caller swaps pointers and frees the old one.
 */
#ifndef TAPIO_PROFILE_H
#define TAPIO_PROFILE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/config_hash.h"
#include "common/settings.h"

#define PROFILE_VERSION	      1
#define PROFILE_MAX_OVERRIDES 256
#define PROFILE_MAX_LABELS    32  /* per match */
#define PROFILE_MAX_STRING    253 /* node glob, label key or value, name */

/* One agent label (Hello.labels); strings are borrowed. */
struct profile_label {
	const char *key;
	const char *value;
};

struct profile;

/*
 * Parses and validates the profile at path. On success *out owns a new profile (free with
 * profile_free). Returns 0, -errno when the file cannot be read, or -EINVAL with
 * "path:line:col: message naming the key" in err (keys like overrides[1].storage.warning_ms).
 * Every override is checked on top of defaults, and every pair of overrides that can match
 * the same agent is checked together, so profile_resolve() always yields valid settings.
 */
int profile_load_file(const char *path, struct profile **out, char *err, size_t errlen);

/* Like profile_load_file, for len bytes of YAML at text; label replaces the path in errors. */
int profile_load_string(const char *label, const char *text, size_t len, struct profile **out,
			char *err, size_t errlen);

/* Releases p; NULL is fine. */
void profile_free(struct profile *p);

/* The `name:` label, "" when absent. Owned by p. */
const char *profile_name(const struct profile *p);

/* Number of entries in `overrides:`. */
size_t profile_override_count(const struct profile *p);

/*
 * The content hash of the whole profile ("sha256:<hex>", owned by p): defaults as resolved
 * values, then each override's match and the settings it sets, in order. Comments,
 * formatting, key order, label order, `name:` and values spelled at their default in
 * `defaults:` do not change it; any change in what some agent would resolve to does. Feed
 * it to config_generation_next().
 */
const char *profile_content_hash(const struct profile *p);

/*
 * True when override i applies to an agent with this node name (NULL matches no node glob)
 * and labels: the node glob matches (fnmatch, no flags) and every listed label is present
 * with an equal value. False for i out of range.
 */
bool profile_override_matches(const struct profile *p, size_t i, const char *node,
			      const struct profile_label *labels, size_t n_labels);

/*
 * Writes the settings for one agent into *out: defaults, then every matching override in
 * file order (later wins, key by key). Returns the number of overrides applied. Never fails;
 * the result always passes settings_validate().
 */
size_t profile_resolve(const struct profile *p, const char *node,
		       const struct profile_label *labels, size_t n_labels,
		       struct tapio_settings *out);

/*
 * profile_resolve + config_hash_settings: the hash an agent reports in ConfigApplied once it
 * runs these settings. Returns 0 or -ENOMEM.
 */
int profile_hash_for(const struct profile *p, const char *node, const struct profile_label *labels,
		     size_t n_labels, char out[CONFIG_HASH_LEN]);

#endif
