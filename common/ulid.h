/* ULID ids (26 chars Crockford base32: 48-bit ms timestamp + 80 random bits), monotonic
 * within one millisecond in one process. */
#ifndef TAPIO_ULID_H
#define TAPIO_ULID_H

#include <stdbool.h>
#include <stdint.h>

/* Writes 26 chars + NUL into out for time `wall_ms`. Thread-safe. Never fails. */
void ulid_generate(uint64_t wall_ms, char out[27]);
/* Returns 0 if s is a well-formed ULID (26 Crockford chars, first <= '7'), else -EINVAL. */
int ulid_validate(const char *s);
/* Whether c is a Crockford base32 digit (either case, no I, L, O, U) as ulid_validate reads them. */
bool ulid_is_digit(char c);
/* Extracts the ms timestamp of a valid ULID; returns 0 or -EINVAL. */
int ulid_time_ms(const char *s, uint64_t *wall_ms);

#endif
