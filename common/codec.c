/*
 * Length-prefixed framing of tapio.v1.Frame messages (see codec.h). The decoder trusts no
 * byte from the peer: a length prefix is checked against max_frame before the buffer grows,
 * and the buffer never exceeds max_frame + 4 bytes.
 */
#include "common/codec.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Buffer size before any length prefix asked for more: room for many small frames. */
#define CODEC_BASE_CAP 4096u

const char *codec_error_name(int err)
{
	switch (err) {
	case 0:
		return "OK";
	case CODEC_ERR_FRAME_EMPTY:
		return "FRAME_EMPTY";
	case CODEC_ERR_FRAME_TOO_LARGE:
		return "FRAME_TOO_LARGE";
	case CODEC_ERR_MALFORMED:
		return "MALFORMED";
	case CODEC_ERR_WIRE_VERSION:
		return "WIRE_VERSION";
	case CODEC_ERR_NOMEM:
		return "NOMEM";
	case CODEC_ERR_FRAME_TOO_COMPLEX:
		return "FRAME_TOO_COMPLEX";
	default:
		return "INTERNAL";
	}
}

Tapio__V1__ErrorCode codec_error_to_proto(int err)
{
	switch (err) {
	case CODEC_ERR_FRAME_EMPTY:
	case CODEC_ERR_MALFORMED:
		return TAPIO__V1__ERROR_CODE__ERROR_CODE_MALFORMED;
	case CODEC_ERR_FRAME_TOO_LARGE:
	case CODEC_ERR_FRAME_TOO_COMPLEX:
		return TAPIO__V1__ERROR_CODE__ERROR_CODE_FRAME_TOO_LARGE;
	case CODEC_ERR_WIRE_VERSION:
		return TAPIO__V1__ERROR_CODE__ERROR_CODE_WIRE_VERSION;
	default:
		return TAPIO__V1__ERROR_CODE__ERROR_CODE_INTERNAL;
	}
}

const char *codec_error_code_name(Tapio__V1__ErrorCode code)
{
	switch (code) {
	case TAPIO__V1__ERROR_CODE__ERROR_CODE_WIRE_VERSION:
		return "WIRE_VERSION";
	case TAPIO__V1__ERROR_CODE__ERROR_CODE_FRAME_TOO_LARGE:
		return "FRAME_TOO_LARGE";
	case TAPIO__V1__ERROR_CODE__ERROR_CODE_MALFORMED:
		return "MALFORMED";
	case TAPIO__V1__ERROR_CODE__ERROR_CODE_UNEXPECTED_MESSAGE:
		return "UNEXPECTED_MESSAGE";
	case TAPIO__V1__ERROR_CODE__ERROR_CODE_SEQUENCE:
		return "SEQUENCE";
	case TAPIO__V1__ERROR_CODE__ERROR_CODE_AUTH:
		return "AUTH";
	case TAPIO__V1__ERROR_CODE__ERROR_CODE_OVERLOADED:
		return "OVERLOADED";
	case TAPIO__V1__ERROR_CODE__ERROR_CODE_INTERNAL:
		return "INTERNAL";
	default:
		return "UNSPECIFIED";
	}
}

const char *codec_frame_kind(const Tapio__V1__Frame *f)
{
	switch (f->msg_case) {
	case TAPIO__V1__FRAME__MSG_HELLO:
		return "hello";
	case TAPIO__V1__FRAME__MSG_WELCOME:
		return "welcome";
	case TAPIO__V1__FRAME__MSG_HEARTBEAT:
		return "heartbeat";
	case TAPIO__V1__FRAME__MSG_EVENT_BATCH:
		return "event_batch";
	case TAPIO__V1__FRAME__MSG_ACK:
		return "ack";
	case TAPIO__V1__FRAME__MSG_CONFIG_PUSH:
		return "config_push";
	case TAPIO__V1__FRAME__MSG_CONFIG_APPLIED:
		return "config_applied";
	case TAPIO__V1__FRAME__MSG_CONFIG_REJECTED:
		return "config_rejected";
	case TAPIO__V1__FRAME__MSG_ERROR:
		return "error";
	default:
		return "none";
	}
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* ---- encoding ---------------------------------------------------------------------------- */

size_t codec_frame_size(const Tapio__V1__Frame *f)
{
	return CODEC_HEADER_LEN + tapio__v1__frame__get_packed_size(f);
}

ssize_t codec_encode_frame(const Tapio__V1__Frame *f, uint8_t *buf, size_t cap)
{
	size_t payload = tapio__v1__frame__get_packed_size(f);

	/* An empty Frame would go out as length 0, which every receiver rejects. */
	if (payload == 0)
		return -EINVAL;
	if (payload > CODEC_MAX_FRAME_LIMIT)
		return -EMSGSIZE;
	if (cap < CODEC_HEADER_LEN + payload)
		return -ENOSPC;
	put_be32(buf, (uint32_t)payload);
	tapio__v1__frame__pack(f, buf + CODEC_HEADER_LEN);
	return (ssize_t)(CODEC_HEADER_LEN + payload);
}

void codec_buf_init(struct codec_buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void codec_buf_fini(struct codec_buf *b)
{
	if (!b)
		return;
	free(b->data);
	codec_buf_init(b);
}

void codec_buf_consume(struct codec_buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

ssize_t codec_buf_append_frame(struct codec_buf *b, const Tapio__V1__Frame *f)
{
	size_t need = codec_frame_size(f);

	if (need - CODEC_HEADER_LEN > CODEC_MAX_FRAME_LIMIT)
		return -EMSGSIZE;
	if (b->cap - b->len < need) {
		size_t cap = b->cap ? b->cap : 256;
		uint8_t *p;

		while (cap - b->len < need)
			cap *= 2;
		p = realloc(b->data, cap);
		if (!p)
			return -ENOMEM;
		b->data = p;
		b->cap = cap;
	}
	ssize_t n = codec_encode_frame(f, b->data + b->len, b->cap - b->len);
	if (n > 0)
		b->len += (size_t)n;
	return n;
}

/* ---- decoding ---------------------------------------------------------------------------- */

int codec_decoder_init(struct codec_decoder *d, uint32_t max_frame)
{
	if (max_frame == 0)
		max_frame = CODEC_DEFAULT_MAX_FRAME;
	if (max_frame > CODEC_MAX_FRAME_LIMIT)
		return -EINVAL;
	memset(d, 0, sizeof(*d));
	d->max_frame = max_frame;
	return 0;
}

void codec_decoder_fini(struct codec_decoder *d)
{
	if (!d)
		return;
	free(d->buf);
	d->buf = NULL;
	d->cap = d->len = d->start = 0;
}

size_t codec_decoder_pending(const struct codec_decoder *d)
{
	return d->len - d->start;
}

static size_t base_cap(const struct codec_decoder *d)
{
	size_t limit = (size_t)d->max_frame + CODEC_HEADER_LEN;

	return limit < CODEC_BASE_CAP ? limit : CODEC_BASE_CAP;
}

static int fail(struct codec_decoder *d, int err)
{
	d->error = err;
	return err;
}

/*
 * Bytes the frame at buf[start] needs in total (header + payload), or 4 while its header is
 * incomplete. A bad length prefix poisons the decoder.
 */
static int frame_need(struct codec_decoder *d, size_t *need)
{
	uint32_t n;

	if (d->len - d->start < CODEC_HEADER_LEN) {
		*need = CODEC_HEADER_LEN;
		return 0;
	}
	n = get_be32(d->buf + d->start);
	if (n == 0)
		return fail(d, CODEC_ERR_FRAME_EMPTY);
	if (n > d->max_frame)
		return fail(d, CODEC_ERR_FRAME_TOO_LARGE);
	*need = CODEC_HEADER_LEN + (size_t)n;
	return 0;
}

/* Moves unconsumed bytes to the front; gives back a grown buffer once it is mostly idle. */
static void compact(struct codec_decoder *d)
{
	size_t held = d->len - d->start;

	if (d->start > 0) {
		memmove(d->buf, d->buf + d->start, held);
		d->len = held;
		d->start = 0;
	}
	if (d->cap > base_cap(d) && held <= base_cap(d)) {
		uint8_t *p = realloc(d->buf, base_cap(d));

		if (p) {
			d->buf = p;
			d->cap = base_cap(d);
		}
	}
}

ssize_t codec_decoder_feed(struct codec_decoder *d, const uint8_t *data, size_t len)
{
	size_t taken = 0;

	if (d->error)
		return d->error;
	compact(d);
	while (taken < len) {
		size_t need, want, room, n;
		int err = frame_need(d, &need);

		if (err)
			return err;
		want = need > base_cap(d) ? need : base_cap(d);
		if (d->cap < want) {
			uint8_t *p = realloc(d->buf, want);

			if (!p)
				return fail(d, CODEC_ERR_NOMEM);
			d->buf = p;
			d->cap = want;
		}
		room = d->cap - d->len;
		if (room == 0)
			break;
		n = len - taken < room ? len - taken : room;
		memcpy(d->buf + d->len, data + taken, n);
		d->len += n;
		taken += n;
	}
	return (ssize_t)taken;
}

/*
 * protobuf-c allocator that refuses to allocate more than a budget while one frame is
 * unpacked. Frames are small on the wire but may decode to much more (two bytes per empty
 * repeated sub-message become a struct and a pointer each); the budget keeps a hostile frame
 * from costing more than CODEC_UNPACK_FACTOR times its size. It allocates with malloc, so the
 * result is released by free_unpacked(f, NULL) like any frame.
 */
struct unpack_budget {
	size_t left;
	size_t used;
	bool exhausted;
	struct codec_arena *arena; /* allocate here instead of malloc (codec_decoder_next_arena) */
};

static void *budget_alloc(void *data, size_t size)
{
	struct unpack_budget *b = data;

	if (size > b->left) {
		b->exhausted = true;
		return NULL;
	}
	b->left -= size;
	b->used += size;
	return b->arena ? codec_arena_alloc(b->arena, size) : malloc(size);
}

static void budget_free(void *data, void *p)
{
	struct unpack_budget *b = data;

	if (!b->arena)
		free(p);
}

/* ---- arena ------------------------------------------------------------------------------- */

#define ARENA_ALIGN	16u
#define ARENA_MIN_CHUNK (64u << 10)
#define ARENA_KEEP_MAX	(8u << 20) /* a reset keeps at most this much for the next frame */

struct codec_arena_chunk {
	struct codec_arena_chunk *next;
	size_t cap, used;
	_Alignas(ARENA_ALIGN) uint8_t data[];
};

void codec_arena_init(struct codec_arena *a)
{
	memset(a, 0, sizeof(*a));
}

void *codec_arena_alloc(struct codec_arena *a, size_t size)
{
	struct codec_arena_chunk *c = a->head;

	size = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
	if (!c || c->cap - c->used < size) {
		size_t cap = size > ARENA_MIN_CHUNK ? size : ARENA_MIN_CHUNK;

		if (c && cap < c->cap * 2)
			cap = c->cap * 2;
		c = malloc(sizeof(*c) + cap);
		if (!c)
			return NULL;
		c->cap = cap;
		c->used = 0;
		c->next = a->head;
		a->head = c;
		a->chunks++;
	}
	c->used += size;
	a->used += size;
	return c->data + c->used - size;
}

void codec_arena_reset(struct codec_arena *a)
{
	struct codec_arena_chunk *c = a->head;
	size_t want = a->used;

	if (!c)
		return;
	if (a->chunks == 1 && c->cap <= ARENA_KEEP_MAX) {
		c->used = 0; /* the steady state: one chunk held the whole frame */
		a->used = 0;
		return;
	}
	/* several chunks (or one too big to keep): next time one chunk fits the whole frame */
	codec_arena_fini(a);
	if (want > ARENA_KEEP_MAX)
		return;
	if (want < ARENA_MIN_CHUNK)
		want = ARENA_MIN_CHUNK;
	c = malloc(sizeof(*c) + want);
	if (!c)
		return;
	c->cap = want;
	c->used = 0;
	c->next = NULL;
	a->head = c;
	a->chunks = 1;
}

void codec_arena_fini(struct codec_arena *a)
{
	struct codec_arena_chunk *c = a->head;

	while (c) {
		struct codec_arena_chunk *next = c->next;

		free(c);
		c = next;
	}
	a->head = NULL;
	a->chunks = 0;
	a->used = 0;
}

/*
 * Drops the unknown fields protobuf-c keeps, in m and every sub-message. "Ignored" then
 * really means ignored: nothing we did not understand is stored or forwarded, and a
 * re-encoded frame always decodes again (protobuf-c 1.4 keeps e.g. a field number 0 written
 * as a two-byte tag, which it then writes as a one-byte tag that its own parser refuses).
 */
static size_t strip_unknown(ProtobufCMessage *m, bool owned)
{
	const ProtobufCMessageDescriptor *desc = m->descriptor;
	size_t stripped = m->n_unknown_fields;

	for (unsigned i = 0; owned && i < m->n_unknown_fields; i++)
		free(m->unknown_fields[i].data);
	if (owned)
		free(m->unknown_fields);
	m->unknown_fields = NULL;
	m->n_unknown_fields = 0;

	for (unsigned i = 0; i < desc->n_fields; i++) {
		const ProtobufCFieldDescriptor *fd = &desc->fields[i];
		char *base = (char *)m;

		if (fd->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(size_t *)(base + fd->quantifier_offset);
			ProtobufCMessage **arr = *(ProtobufCMessage ***)(base + fd->offset);

			for (size_t j = 0; j < n; j++)
				if (arr[j])
					stripped += strip_unknown(arr[j], owned);
			continue;
		}
		if ((fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
		    *(uint32_t *)(base + fd->quantifier_offset) != fd->id)
			continue;
		ProtobufCMessage *sub = *(ProtobufCMessage **)(base + fd->offset);
		if (sub)
			stripped += strip_unknown(sub, owned);
	}
	return stripped;
}

int codec_decoder_peek(struct codec_decoder *d, const uint8_t **payload, size_t *len)
{
	size_t need;
	int err;

	if (d->error)
		return d->error;
	err = frame_need(d, &need);
	if (err)
		return err;
	if (d->len - d->start < need)
		return 0;
	*payload = d->buf + d->start + CODEC_HEADER_LEN;
	*len = need - CODEC_HEADER_LEN;
	return 1;
}

void codec_decoder_consume(struct codec_decoder *d, size_t unpack_bytes)
{
	size_t payload = (size_t)get_be32(d->buf + d->start);

	d->last_unpack_bytes = unpack_bytes;
	d->last_unknown_fields = 0;
	d->last_payload = d->buf + d->start + CODEC_HEADER_LEN;
	d->last_payload_len = payload;
	d->start += CODEC_HEADER_LEN + payload;
	if (d->start == d->len)
		d->start = d->len = 0;
	d->frames++;
}

static int decoder_next(struct codec_decoder *d, struct codec_arena *arena, Tapio__V1__Frame **out)
{
	struct unpack_budget budget = {.arena = arena};
	ProtobufCAllocator alloc = {budget_alloc, budget_free, &budget};
	const uint8_t *payload = NULL;
	Tapio__V1__Frame *f;
	size_t len = 0;
	int r;

	*out = NULL;
	r = codec_decoder_peek(d, &payload, &len);
	if (r <= 0)
		return r;
	budget.left = codec_unpack_budget(len);
	f = tapio__v1__frame__unpack(&alloc, len, payload);
	d->last_unpack_bytes = budget.used;
	if (!f)
		return fail(d,
			    budget.exhausted ? CODEC_ERR_FRAME_TOO_COMPLEX : CODEC_ERR_MALFORMED);
	codec_decoder_consume(d, budget.used);
	d->last_unknown_fields = strip_unknown(&f->base, arena == NULL);
	*out = f;
	return 1;
}

int codec_decoder_next(struct codec_decoder *d, Tapio__V1__Frame **out)
{
	return decoder_next(d, NULL, out);
}

int codec_decoder_next_arena(struct codec_decoder *d, struct codec_arena *a, Tapio__V1__Frame **out)
{
	return decoder_next(d, a, out);
}

/* ---- slicing a batch ---------------------------------------------------------------------- */

/*
 * Reads one field header at *p: its number, wire type and, for length-delimited fields, the
 * value's bytes; other values are skipped (varint, fixed64, fixed32). Returns 0 or -1.
 */
static int wire_field(const uint8_t **p, const uint8_t *end, uint32_t *num, unsigned *type,
		      const uint8_t **val, size_t *vlen)
{
	uint64_t key, n;

	if (codec_wire_varint(p, end, &key) < 0 || (key >> 3) == 0 || (key >> 3) > UINT32_MAX)
		return -1;
	*num = (uint32_t)(key >> 3);
	*type = (unsigned)(key & 7);
	*val = *p;
	switch (*type) {
	case 0:
		if (codec_wire_varint(p, end, &n) < 0)
			return -1;
		break;
	case 1:
	case 5:
		n = *type == 1 ? 8 : 4;
		if ((size_t)(end - *p) < n)
			return -1;
		*p += n;
		break;
	case 2:
		if (codec_wire_varint(p, end, &n) < 0 || n > (uint64_t)(end - *p))
			return -1;
		*val = *p;
		*p += n;
		break;
	default:
		return -1;
	}
	*vlen = (size_t)(*p - *val);
	return 0;
}

ssize_t codec_batch_occurrences(const uint8_t *payload, size_t len, const uint8_t **ptr,
				size_t *lens, size_t max)
{
	const uint8_t *p = payload, *end = payload + len, *batch = NULL, *val;
	size_t blen = 0, vlen, n = 0;
	uint32_t num;
	unsigned type;

	while (p < end) {
		if (wire_field(&p, end, &num, &type, &val, &vlen) < 0 ||
		    num != TAPIO__V1__FRAME__MSG_EVENT_BATCH || type != 2 || batch)
			return -1;
		batch = val;
		blen = vlen;
	}
	if (!batch)
		return -1;
	p = batch;
	end = batch + blen;
	while (p < end) {
		if (wire_field(&p, end, &num, &type, &val, &vlen) < 0)
			return -1;
		if ((num == 1 || num == 2) && type == 0)
			continue;
		if (num != 3 || type != 2 || n == max)
			return -1;
		ptr[n] = val;
		lens[n] = vlen;
		n++;
	}
	return (ssize_t)n;
}

/* ---- handshake --------------------------------------------------------------------------- */

int codec_check_hello(const Tapio__V1__Hello *hello)
{
	return hello->wire_version == CODEC_WIRE_VERSION ? 0 : CODEC_ERR_WIRE_VERSION;
}

int codec_check_welcome(const Tapio__V1__Welcome *welcome)
{
	return welcome->wire_version == CODEC_WIRE_VERSION ? 0 : CODEC_ERR_WIRE_VERSION;
}
