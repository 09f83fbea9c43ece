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
 * A double as occ_json_write writes it: the shortest of printf's %.15g, %.16g and %.17g that
 * strtod reads back as v, "0" for -0, "null" for NaN and ±Inf. Writes at most 32 bytes at out
 * (maybe a NUL after the text) and returns the text's length; never fails.
 */
int occ_json_format_double(double v, char *out);
/*
 * The exact integer path of occ_json_format_double, without printf or strtod: for 0 and
 * 1e-4 <= |v| < 1e15 writes the same text (at most 24 bytes, no NUL) and returns its length;
 * returns 0 (declined) for anything else, which occ_json_format_double prints with snprintf.
 * Public for the tests that hold it to the printf reference.
 */
int occ_json_format_double_exact(double v, char *out);

/*
 * Parses one JSON object produced by occ_json_write (or an equivalent one) back into *occ.
 * Returns 0, or -EINVAL with a reason in err (unknown type, missing field, bad value).
 */
int occ_json_parse(const char *json, size_t len, struct tapio_occurrence *occ, char *err,
		   size_t errlen);

#endif
