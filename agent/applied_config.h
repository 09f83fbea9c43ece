/*
 * The agent's last config applied from a controller push (SPEC §4): kept on disk as
 * <data-dir>/applied-config so that an agent restarted while the controller is unreachable
 * comes back with the settings and generation it last ran, instead of its local file's.
 *
 * Format (text, one field per line):
 *   tapio-applied-config 1
 *   generation N
 *   hash sha256:<hex>
 *   settings <hex of the packed tapio.v1.Settings>
 * Written as .tmp, fsynced, renamed, directory fsynced: a crash leaves the old or the new file.
 */
#ifndef TAPIO_AGENT_APPLIED_CONFIG_H
#define TAPIO_AGENT_APPLIED_CONFIG_H

#include <stdint.h>

#include "common/config_hash.h"
#include "common/settings.h"

#define APPLIED_CONFIG_FILE "applied-config"

/*
 * Persists settings s at generation (> 0) with their hash into <dir>/applied-config. Blocking
 * (fsync): call it off the loop thread. Returns 0 or -errno (-EINVAL for generation 0 or a
 * malformed hash).
 */
int applied_config_save(const char *dir, const struct tapio_settings *s, uint64_t generation,
			const char *hash);

/*
 * Reads <dir>/applied-config into *s, *generation and hash. Returns 0, -ENOENT when there is
 * none, -EINVAL for a malformed file (bad header, settings that fail settings_validate, or a
 * hash that is not the settings' hash), or -errno from reading.
 */
int applied_config_load(const char *dir, struct tapio_settings *s, uint64_t *generation,
			char hash[CONFIG_HASH_LEN]);

#endif
