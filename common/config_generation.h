/*
 * The controller's config generation: a counter that only grows, across restarts, and moves
 * when (and only when) the effective profile content changes. Persisted with its content hash
 * in <dir>/config-generation (written as .tmp, fsync, rename, fsync of the directory).
 */
#ifndef TAPIO_CONFIG_GENERATION_H
#define TAPIO_CONFIG_GENERATION_H

#include <stdint.h>

#include "common/config_hash.h"

#define CONFIG_GENERATION_FILE "config-generation"

struct config_generation_store {
	uint64_t generation;	    /* 0 = nothing published yet */
	char hash[CONFIG_HASH_LEN]; /* content hash of that generation, "" when none */
};

/*
 * Reads <dir>/config-generation into *out. A missing file is generation 0 with an empty hash
 * (a leftover .tmp from a crash is ignored). Returns 0, -EINVAL for a malformed file, or
 * -errno from open/read.
 */
int config_generation_load(const char *dir, struct config_generation_store *out);

/*
 * Writes *st to <dir>/config-generation atomically and durably. Returns 0 or -errno
 * (-EINVAL for a hash that is neither empty nor "sha256:<hex>").
 */
int config_generation_save(const char *dir, const struct config_generation_store *st);

/*
 * Increments the stored generation (keeping its hash), persists it and sets *gen to the new
 * value. Returns 0 or -errno; on failure the stored file is unchanged.
 */
int config_generation_bump(const char *dir, uint64_t *gen);

/*
 * The generation for content_hash ("sha256:<hex>", normally profile_content_hash()): the
 * stored one when the stored hash is equal, else stored + 1, persisted together with the new
 * hash before returning. Returns 1 when it bumped, 0 when unchanged, or -errno (-EINVAL for a
 * malformed hash or file); *gen is set on success only.
 */
int config_generation_next(const char *dir, const char *content_hash, uint64_t *gen);

#endif
