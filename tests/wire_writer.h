/*
 * A byte buffer to write protobuf fields into by hand (tests and benchmark tools that build
 * frames field by field, in orders and shapes an encoder would not produce).
 */
#ifndef TAPIO_TESTS_WIRE_WRITER_H
#define TAPIO_TESTS_WIRE_WRITER_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct wbuf {
	uint8_t *b;
	size_t n, cap;
};

static inline void w_raw(struct wbuf *w, const void *p, size_t len)
{
	if (w->n + len > w->cap) {
		w->cap = (w->n + len) * 2 + 256;
		w->b = realloc(w->b, w->cap);
		if (!w->b)
			abort();
	}
	if (len)
		memcpy(w->b + w->n, p, len);
	w->n += len;
}

static inline void w_varint(struct wbuf *w, uint64_t v)
{
	uint8_t b[10];
	size_t n = 0;

	do {
		b[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
	w_raw(w, b, n);
}

static inline void w_key(struct wbuf *w, uint32_t num, unsigned wt)
{
	w_varint(w, (uint64_t)num << 3 | wt);
}

static inline void w_field_varint(struct wbuf *w, uint32_t num, uint64_t v)
{
	w_key(w, num, 0);
	w_varint(w, v);
}

static inline void w_field_bytes(struct wbuf *w, uint32_t num, const void *p, size_t len)
{
	w_key(w, num, 2);
	w_varint(w, len);
	w_raw(w, p, len);
}

static inline void w_field_fixed64(struct wbuf *w, uint32_t num, uint64_t v)
{
	w_key(w, num, 1);
	w_raw(w, &v, 8);
}

static inline void w_free(struct wbuf *w)
{
	free(w->b);
	memset(w, 0, sizeof(*w));
}

#endif
