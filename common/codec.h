/*
 * Wire framing (SPEC §5, docs/protocol.md): every frame is a 4-byte big-endian length
 * followed by that many bytes of one packed tapio.v1.Frame. All framing in Tapio goes through
 * this module, which checks the length against a maximum before it allocates anything.
 */
#ifndef TAPIO_CODEC_H
#define TAPIO_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tapio.pb-c.h"

#define CODEC_WIRE_VERSION	1u /* tapio.v1.WireVersion.WIRE_VERSION_CURRENT */
#define CODEC_HEADER_LEN	4u
#define CODEC_MAX_FRAME_LIMIT	0x7fffffffu /* largest max_frame a decoder accepts */
#define CODEC_DEFAULT_MAX_FRAME (4u << 20)  /* 4 MiB of payload */
/*
 * Memory one frame may decode to: CODEC_UNPACK_FACTOR times its payload plus a fixed slack.
 * Real frames need well under half of it (tests measure it); a hostile one is refused with
 * CODEC_ERR_FRAME_TOO_COMPLEX instead of costing a multiple of max_frame.
 */
#define CODEC_UNPACK_FACTOR 16u
#define CODEC_UNPACK_SLACK  (64u << 10)

/* The memory budget of one frame of `payload` bytes (see above). */
static inline size_t codec_unpack_budget(size_t payload)
{
	return payload * CODEC_UNPACK_FACTOR + CODEC_UNPACK_SLACK;
}

/*
 * Machine-readable decoder/handshake errors. All negative and outside the errno range, so
 * they never collide with a -errno returned by the same functions. Each maps to one
 * tapio.v1.ErrorCode (codec_error_to_proto) for the Error frame sent to the peer.
 */
enum codec_error {
	CODEC_ERR_FRAME_EMPTY = -4096,	   /* length prefix 0 → MALFORMED */
	CODEC_ERR_FRAME_TOO_LARGE = -4095, /* length prefix > max_frame → FRAME_TOO_LARGE */
	CODEC_ERR_MALFORMED = -4094,	   /* payload is not a valid Frame → MALFORMED */
	CODEC_ERR_WIRE_VERSION = -4093,	   /* Hello/Welcome with another wire version */
	CODEC_ERR_NOMEM = -4092,	   /* allocation failed → INTERNAL */
	/* payload would decode to more memory than the unpack budget → FRAME_TOO_LARGE */
	CODEC_ERR_FRAME_TOO_COMPLEX = -4091,
};

/* "FRAME_TOO_LARGE", …; for -errno values strerror-like names are not given: "INTERNAL". */
const char *codec_error_name(int err);

/* Maps a codec_error (or any other negative value → INTERNAL) to the wire error code. */
Tapio__V1__ErrorCode codec_error_to_proto(int err);

/* Name of a wire error code ("WIRE_VERSION", …), "UNSPECIFIED" for unknown values. */
const char *codec_error_code_name(Tapio__V1__ErrorCode code);

/* Name of the message a frame carries ("hello", "event_batch", …), "none" when unset. */
const char *codec_frame_kind(const Tapio__V1__Frame *f);

/* ---- encoding ---------------------------------------------------------------------------- */

/* Bytes the encoded frame takes on the wire (header included). */
size_t codec_frame_size(const Tapio__V1__Frame *f);

/*
 * Encodes header + f into buf[0..cap). Returns the number of bytes written, -ENOSPC when cap
 * is too small (buf untouched beyond cap), or -EMSGSIZE when the payload cannot be framed
 * (over CODEC_MAX_FRAME_LIMIT). f is only read; its fields may be borrowed.
 */
ssize_t codec_encode_frame(const Tapio__V1__Frame *f, uint8_t *buf, size_t cap);

/* A growable byte buffer owned by the caller: codec_buf_init / codec_buf_fini. */
struct codec_buf {
	uint8_t *data;
	size_t len; /* bytes in use */
	size_t cap; /* bytes allocated */
};

void codec_buf_init(struct codec_buf *b);
/* Releases the storage; the buffer is empty and reusable afterwards. NULL-safe. */
void codec_buf_fini(struct codec_buf *b);
/* Drops the first n bytes (e.g. what a write sent); n > len empties the buffer. */
void codec_buf_consume(struct codec_buf *b, size_t n);

/*
 * Appends one encoded frame to b, growing it as needed. Returns the number of bytes appended,
 * -ENOMEM (b unchanged) or -EMSGSIZE as codec_encode_frame.
 */
ssize_t codec_buf_append_frame(struct codec_buf *b, const Tapio__V1__Frame *f);

/* ---- decoding ---------------------------------------------------------------------------- */

/*
 * Incremental decoder for one byte stream (one per connection; embed it, init/fini).
 * Bytes go in with codec_decoder_feed in reads of any size; frames come out with
 * codec_decoder_next. The decoder never holds more than max_frame + 4 bytes, and grows its
 * buffer beyond a small base only once a length prefix has been checked against max_frame.
 * After an error the stream is out of sync: every later call returns the same error.
 */
struct codec_decoder {
	uint8_t *buf;
	size_t cap;		  /* bytes allocated */
	size_t len;		  /* bytes held (from buf[0]) */
	size_t start;		  /* first byte not yet consumed by _next */
	uint32_t max_frame;	  /* largest accepted payload */
	int error;		  /* sticky codec_error, 0 while healthy */
	uint64_t frames;	  /* frames returned so far */
	size_t last_unpack_bytes; /* memory the last unpacked frame took (budget accounting) */
	/*
	 * The packed payload of the frame _next returned last, and how many unknown fields were
	 * dropped from it. The bytes are the decoder's own: valid until the next _feed or _fini.
	 */
	const uint8_t *last_payload;
	size_t last_payload_len;
	size_t last_unknown_fields;
};

/*
 * Prepares d for payloads of at most max_frame bytes (1..CODEC_MAX_FRAME_LIMIT; 0 means
 * CODEC_DEFAULT_MAX_FRAME). Allocates nothing. Returns 0 or -EINVAL.
 */
int codec_decoder_init(struct codec_decoder *d, uint32_t max_frame);

/* Frees the buffer. NULL-safe; d may be re-initialised afterwards. */
void codec_decoder_fini(struct codec_decoder *d);

/*
 * Copies as many of data[0..len) as the decoder can hold right now and returns that count
 * (0 only when len is 0 or a complete frame is waiting for _next), or a negative
 * codec_error. Callers loop: feed, drain _next until it returns 0, feed the rest.
 */
ssize_t codec_decoder_feed(struct codec_decoder *d, const uint8_t *data, size_t len);

/*
 * Returns 1 and a frame in *out, 0 when more bytes are needed, or a negative codec_error.
 * The caller owns *out and must release it with tapio__v1__frame__free_unpacked(*out, NULL).
 * A frame may carry no known message (msg_case NOT_SET: a newer peer's message); the session
 * layer answers it with UNEXPECTED_MESSAGE. Unknown fields are ignored: they are dropped from
 * the frame and every sub-message, so a returned frame re-encodes to what we understood.
 */
int codec_decoder_next(struct codec_decoder *d, Tapio__V1__Frame **out);

/*
 * The payload of the next complete frame, not decoded: returns 1 with *payload and *len (the
 * decoder's own bytes, valid until the next _feed, _next, _consume or _fini), 0 when more
 * bytes are needed, or a negative codec_error (sticky, as _next). A caller that decodes the
 * payload itself (occ_wire.h) then calls codec_decoder_consume; otherwise _next decodes it.
 */
int codec_decoder_peek(struct codec_decoder *d, const uint8_t **payload, size_t *len);

/*
 * Consumes the frame _peek returned, as _next does once it has unpacked a frame: counts it,
 * sets last_payload/last_payload_len (valid until the next _feed or _fini), last_unpack_bytes
 * to unpack_bytes (what protobuf-c would have allocated) and last_unknown_fields to 0. Call it
 * only after a _peek that returned 1.
 */
void codec_decoder_consume(struct codec_decoder *d, size_t unpack_bytes);

/*
 * A bump allocator to decode frames into: one malloc per chunk instead of one per field and
 * string, and no free at all per frame. Frames decoded with codec_decoder_next_arena live in
 * the arena until codec_arena_reset(), which keeps one chunk big enough for the last frame
 * (at most 8 MiB) so a steady stream of frames allocates nothing. Zero-initialise or init.
 */
struct codec_arena_chunk;
struct codec_arena {
	struct codec_arena_chunk *head;
	size_t chunks;
	size_t used; /* bytes handed out since the last reset */
};

void codec_arena_init(struct codec_arena *a);
void *codec_arena_alloc(struct codec_arena *a, size_t size); /* 16-byte aligned, or NULL */
void codec_arena_reset(struct codec_arena *a);
void codec_arena_fini(struct codec_arena *a);

/*
 * codec_decoder_next, allocating the frame in `a` (same budget, same errors). The caller
 * must not free_unpacked the frame: it is valid until codec_arena_reset(a) or _fini(a).
 */
int codec_decoder_next_arena(struct codec_decoder *d, struct codec_arena *a,
			     Tapio__V1__Frame **out);

/*
 * Slices a packed Frame payload holding one EventBatch into the exact wire bytes of each
 * EventBatch.occurrences element (every one a packed tapio.v1.Occurrence, in order):
 * ptr[i]/len[i] point into payload. Only the plain shape is sliced: a Frame whose only field
 * is event_batch (once) and a batch with nothing but session_id, sequence and occurrences;
 * anything else (merged or repeated fields, unknown fields, more than max elements) returns
 * -1 and the caller uses the unpacked messages instead. Returns the element count otherwise.
 * Bounds-checked on every byte; allocates nothing.
 */
ssize_t codec_batch_occurrences(const uint8_t *payload, size_t len, const uint8_t **ptr,
				size_t *lens, size_t max);

/*
 * Reads one protobuf varint at *p (below end): at most 10 bytes, as protobuf-c reads them.
 * Returns 0 and advances *p, or -1 (truncated or longer than 10 bytes). Inline: the batch
 * fast path (occ_wire.c) reads a few dozen per occurrence.
 */
static inline int codec_wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t x = 0;

	for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;

		x |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = x;
			return 0;
		}
	}
	return -1;
}

/* Bytes held and not yet returned as frames. */
size_t codec_decoder_pending(const struct codec_decoder *d);

/* ---- handshake --------------------------------------------------------------------------- */

/* Returns 0 when the peer speaks CODEC_WIRE_VERSION, else CODEC_ERR_WIRE_VERSION. */
int codec_check_hello(const Tapio__V1__Hello *hello);
int codec_check_welcome(const Tapio__V1__Welcome *welcome);

#endif
