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
/*
 * Whether the 26 characters s[0..26) (no NUL needed after them) are a well-formed ULID, as
 * ulid_validate judges a string of exactly those characters: for ids inside a received
 * frame. Two 16-byte vector compares on x86-64, a table loop elsewhere.
 */
#define TAPIO_ULID_CHARS 26
bool ulid_valid26(const char s[TAPIO_ULID_CHARS]);
/* Extracts the ms timestamp of a valid ULID; returns 0 or -EINVAL. */
int ulid_time_ms(const char *s, uint64_t *wall_ms);

#endif
