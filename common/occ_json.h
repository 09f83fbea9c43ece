/* JSON encoding of occurrences: one object per line, keys as documented in
 * docs/occurrences.md. Hand-written for speed (no allocation); tests parse it back with
 * jansson. */
#ifndef TAPIO_OCC_JSON_H
#define TAPIO_OCC_JSON_H

#include <stddef.h>
#include <sys/types.h>

#include "occurrence.h"

/*
 * Writes occ as one JSON object (no newline) into buf. Returns the length (excluding the
 * NUL, which is always written when len > 0), -ENOSPC when buf is too small, or -EINVAL
 * when occ->type is outside the catalogue. TAPIO_OCC_JSON_MAX bytes are always enough, even
 * when every string byte needs a 6-byte escape. The output is always valid UTF-8 JSON:
 * control characters become \u00XX, and a byte that is not part of valid UTF-8 becomes the
 * private-use code point U+F7XX (XX = the byte), which occ_json_parse turns back into the
 * byte, so hostile kernel strings (comm) survive a round trip exactly.
 */
#define TAPIO_OCC_JSON_MAX 4096
ssize_t occ_json_write(const struct tapio_occurrence *occ, char *buf, size_t len);

/*
 * Parses one JSON object produced by occ_json_write (or an equivalent one) back into *occ.
 * Returns 0, or -EINVAL with a reason in err (unknown type, missing field, bad value).
 */
int occ_json_parse(const char *json, size_t len, struct tapio_occurrence *occ, char *err,
		   size_t errlen);

#endif
