/* Observer-independent helpers: emission + counting, comm copies, the bounded state table. */
#include "agent/observer/observer.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void observer_emit(const struct observer_ctx *ctx, const struct tapio_occurrence *occ)
{
	if ((unsigned)occ->type < TAPIO_OCC__COUNT)
		ctx->stats->anomalies[occ->type]++;
	if (ctx->emit)
		ctx->emit(ctx->emit_ctx, occ);
}

void observer_copy_comm(char dst[TAPIO_OCC_COMM_LEN], const char *src)
{
	size_t n = strnlen(src, TAPIO_OCC_COMM_LEN - 1);

	memcpy(dst, src, n);
	memset(dst + n, 0, TAPIO_OCC_COMM_LEN - n);
}

void observer_message(struct tapio_occurrence *occ, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(occ->error_message, sizeof(occ->error_message), fmt, ap);
	va_end(ap);
}

/* Slot layout: [uint32 used][uint32 hash][key, padded to 8][value]. */
#define SLOT_HDR 8

static uint32_t key_hash(const void *key, size_t len)
{
	const unsigned char *p = key;
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a, then a final avalanche */

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return (uint32_t)h;
}

static unsigned char *slot_ptr(const struct obs_table *t, uint32_t i)
{
	return t->slots + (size_t)i * t->slot_len;
}

static uint32_t *slot_used(unsigned char *slot)
{
	return (uint32_t *)slot;
}

static uint32_t *slot_hash(unsigned char *slot)
{
	return (uint32_t *)(slot + 4);
}

static void *slot_key(unsigned char *slot)
{
	return slot + SLOT_HDR;
}

static void *slot_val(const struct obs_table *t, unsigned char *slot)
{
	return slot + SLOT_HDR + t->key_space;
}

int obs_table_init(struct obs_table *t, uint32_t n_slots, size_t key_len, size_t val_len)
{
	memset(t, 0, sizeof(*t));
	if (n_slots < 4 || (n_slots & (n_slots - 1)) != 0 || key_len == 0)
		return -EINVAL;
	t->key_len = key_len;
	t->key_space = (key_len + 7) & ~(size_t)7;
	t->val_len = val_len;
	t->slot_len = SLOT_HDR + t->key_space + ((val_len + 7) & ~(size_t)7);
	t->slots = calloc(n_slots, t->slot_len);
	if (!t->slots)
		return -ENOMEM;
	t->n_slots = n_slots;
	t->max_entries = n_slots / 4 * 3;
	return 0;
}

void obs_table_fini(struct obs_table *t)
{
	free(t->slots);
	t->slots = NULL;
	t->n_slots = 0;
	t->n_entries = 0;
}

/* Returns the slot index holding key, or -1. */
static int64_t find_index(const struct obs_table *t, const void *key)
{
	uint32_t mask = t->n_slots - 1;
	uint32_t h = key_hash(key, t->key_len);

	for (uint32_t i = h & mask, n = 0; n < t->n_slots; i = (i + 1) & mask, n++) {
		unsigned char *s = slot_ptr(t, i);

		if (!*slot_used(s))
			return -1;
		if (*slot_hash(s) == h && memcmp(slot_key(s), key, t->key_len) == 0)
			return i;
	}
	return -1;
}

void *obs_table_find(const struct obs_table *t, const void *key)
{
	int64_t i = t->n_slots ? find_index(t, key) : -1;

	return i < 0 ? NULL : slot_val(t, slot_ptr(t, (uint32_t)i));
}

int obs_table_remove(struct obs_table *t, const void *key)
{
	int64_t i = t->n_slots ? find_index(t, key) : -1;

	if (i < 0)
		return -ENOENT;
	obs_table_remove_at(t, (uint32_t)i);
	return 0;
}

void *obs_table_insert(struct obs_table *t, const void *key)
{
	uint32_t mask = t->n_slots - 1;
	uint32_t h = key_hash(key, t->key_len);
	uint32_t i = h & mask;

	if (t->n_entries >= t->max_entries)
		return NULL;
	while (*slot_used(slot_ptr(t, i)))
		i = (i + 1) & mask;
	unsigned char *s = slot_ptr(t, i);

	memset(s, 0, t->slot_len);
	*slot_used(s) = 1;
	*slot_hash(s) = h;
	memcpy(slot_key(s), key, t->key_len);
	t->n_entries++;
	return slot_val(t, s);
}

void *obs_table_at(const struct obs_table *t, uint32_t i, const void **key)
{
	unsigned char *s;

	if (i >= t->n_slots)
		return NULL;
	s = slot_ptr(t, i);
	if (!*slot_used(s))
		return NULL;
	if (key)
		*key = slot_key(s);
	return slot_val(t, s);
}

void obs_table_remove_at(struct obs_table *t, uint32_t i)
{
	uint32_t mask = t->n_slots - 1;
	uint32_t hole = i;
	uint32_t j = i;

	if (i >= t->n_slots || !*slot_used(slot_ptr(t, i)))
		return;
	/* Backward-shift deletion: move every later entry of the chain whose home slot is not
	 * between the hole and its position into the hole, so lookups never stop early. */
	for (;;) {
		j = (j + 1) & mask;
		unsigned char *s = slot_ptr(t, j);

		if (!*slot_used(s))
			break;
		uint32_t home = *slot_hash(s) & mask;
		bool movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);

		if (movable) {
			memcpy(slot_ptr(t, hole), s, t->slot_len);
			hole = j;
		}
	}
	memset(slot_ptr(t, hole), 0, t->slot_len);
	t->n_entries--;
}

void obs_table_clear(struct obs_table *t)
{
	if (t->slots)
		memset(t->slots, 0, (size_t)t->n_slots * t->slot_len);
	t->n_entries = 0;
}
