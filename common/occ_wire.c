/*
 * EventBatch frames straight from the wire into struct tapio_occurrence (see occ_wire.h).
 *
 * Table-driven: each message the fast path reads is a table indexed by key (field number and
 * wire type, as the key byte(s) on the wire say) that gives the field's kind (its conversion)
 * and where its value goes in struct tapio_occurrence, so the per-observer facts are data, not
 * code, and a wrong wire type is simply a key with no entry. The conversions are
 * those of protobuf-c 1.4 unpack followed by occ_from_proto (common/occ_proto.c); whatever
 * either could treat in more than one way (a repeated field, a truncating varint, a NUL inside
 * a string, …) is declined instead, so an accepted frame has one meaning only.
 */
#include "common/occ_wire.h"

#include <stdbool.h>
#include <string.h>

#include "common/codec.h"
#include "common/ulid.h"
#include "tapio.pb-c.h"

#define OCC_SOURCE "tapio" /* the one non-empty Occurrence.source occ_from_proto accepts */

/*
 * protobuf-c 1.4 records each field it scans in a 32-byte ScannedMember: 16 on the stack,
 * then in allocated slabs of 32, 64, … members. Only EventBatch has more than 16 fields in
 * the canonical shape; the slabs count against the unpack budget like any allocation (the
 * tests compare the total with what the codec's allocator really counted).
 */
#define PB_SCANNED_MEMBER 32u
#define PB_STACK_MEMBERS  16u

enum kind {
	K_NONE = 0, /* no such key in this message: declined (unknown fields, wrong wire types) */
	K_U32,	    /* uint32 varint */
	K_S32,	    /* sint32 varint (zigzag) */
	K_U64,	    /* uint64 varint */
	K_BOOL,	    /* bool varint */
	K_PORT,	    /* uint32 varint that must fit a port */
	K_FAMILY,   /* uint32 varint that must be 0, 4 or 6 */
	K_ENUM,	    /* enum varint 1..arg, stored as value - 1 */
	K_FIX64,    /* fixed64 or double: 8 bytes copied as they are */
	K_STR,	    /* string copied into a char[size] */
	K_ID,	    /* Occurrence.id: a K_STR the check mode remembers */
	K_NODE,	    /* Context.node: a K_STR the check mode remembers */
	K_SOURCE,   /* Occurrence.source: empty or "tapio" */
	K_VERSION,  /* Occurrence.protocol_version: empty or "1.…" */
	K_CODE,	    /* OccurrenceError.code: empty or the type's catalogue code */
	K_ERROR,    /* Occurrence.error */
	K_CONTEXT,  /* Occurrence.context */
	K_DATA,	    /* one member of the Occurrence.data oneof; arg = its observer */
};

/* One entry of a message table, at its key: field number << 3 | wire type. */
struct field {
	uint8_t kind;
	uint8_t arg;   /* K_ENUM: number of values; K_DATA: observer */
	uint8_t bit;   /* its bit in the message's seen mask: the field number (data: 31) */
	uint16_t off;  /* where the value goes in struct tapio_occurrence */
	uint16_t size; /* bytes it takes there (K_STR: the array, NUL included) */
};

struct message {
	const struct field *fields; /* indexed by key */
	uint16_t n_keys;	    /* highest key + 1 */
	uint16_t pb_size;	    /* sizeof the protobuf-c struct unpack allocates for it */
};

#define WT_VARINT 0
#define WT_FIX64  1
#define WT_LEN	  2
#define SEEN_DATA 31 /* the data oneof: one bit for all its members */

/* A member of struct tapio_occurrence, its offset, and its size checked at compile time. */
#define MEMBER(m) (((struct tapio_occurrence *)0)->m)
#define AT(m)	  ((uint16_t)offsetof(struct tapio_occurrence, m))
#define SIZED(m, n) \
	((uint16_t)(sizeof(MEMBER(m)) + 0 * sizeof(char[sizeof(MEMBER(m)) == (n) ? 1 : -1])))

/* clang-format off */
#define ENTRY(num, wt, kind, arg, bit, off, size) [(num) << 3 | (wt)] = {kind, arg, bit, off, size}
#define U32(num, m)	   ENTRY(num, WT_VARINT, K_U32, 0, num, AT(m), SIZED(m, 4))
#define S32(num, m)	   ENTRY(num, WT_VARINT, K_S32, 0, num, AT(m), SIZED(m, 4))
#define U64(num, m)	   ENTRY(num, WT_VARINT, K_U64, 0, num, AT(m), SIZED(m, 8))
#define BOOL(num, m)	   ENTRY(num, WT_VARINT, K_BOOL, 0, num, AT(m), SIZED(m, sizeof(bool)))
#define PORT(num, m)	   ENTRY(num, WT_VARINT, K_PORT, 0, num, AT(m), SIZED(m, 2))
#define FAMILY(num, m)	   ENTRY(num, WT_VARINT, K_FAMILY, 0, num, AT(m), SIZED(m, 1))
#define ENUM(num, m, n)	   ENTRY(num, WT_VARINT, K_ENUM, n, num, AT(m), SIZED(m, sizeof(int)))
#define FIX64(num, m)	   ENTRY(num, WT_FIX64, K_FIX64, 0, num, AT(m), SIZED(m, 8))
#define STR(num, m)	   ENTRY(num, WT_LEN, K_STR, 0, num, AT(m), sizeof(MEMBER(m)))
#define NAMED(num, kind, m) ENTRY(num, WT_LEN, kind, 0, num, AT(m), sizeof(MEMBER(m)))
#define CHECKED(num, kind) ENTRY(num, WT_LEN, kind, 0, num, 0, 0)
#define DATA(num, obs)	   ENTRY(num, WT_LEN, K_DATA, obs, SEEN_DATA, 0, 0)
#define MESSAGE(fields, pb) {fields, sizeof(fields) / sizeof(fields[0]), sizeof(pb)}
/* clang-format on */

/* tapio.v1.NetworkData … NodeData (proto/tapio.proto), field by field. */
static const struct field network_fields[] = {
    U32(1, data.network.pid),		STR(2, data.network.comm),
    STR(3, data.network.src_ip),	STR(4, data.network.dst_ip),
    PORT(5, data.network.src_port),	PORT(6, data.network.dst_port),
    FAMILY(7, data.network.family),	STR(8, data.network.old_state),
    STR(9, data.network.new_state),	U32(10, data.network.total_retrans),
    U32(11, data.network.snd_cwnd),	FIX64(12, data.network.baseline_ms),
    FIX64(13, data.network.current_ms),
};

static const struct field container_fields[] = {
    U32(1, data.container.pid),
    U32(2, data.container.tid),
    STR(3, data.container.comm),
    S32(4, data.container.exit_code),
    S32(5, data.container.signal),
    BOOL(6, data.container.core_dumped),
    U64(7, data.container.cgroup_id),
    STR(8, data.container.cgroup_path),
    U64(9, data.container.memory_usage_bytes),
    U64(10, data.container.memory_limit_bytes),
    U64(11, data.container.rss_bytes),
};

static const struct field storage_fields[] = {
    U32(1, data.storage.pid),	     STR(2, data.storage.comm),
    U32(3, data.storage.dev_major),  U32(4, data.storage.dev_minor),
    U64(5, data.storage.sector),     U32(6, data.storage.bytes),
    STR(7, data.storage.opcode),     FIX64(8, data.storage.latency_ms),
    S32(9, data.storage.error_code),
};

static const struct field node_fields[] = {
    S32(1, data.node.cpu),
    U64(2, data.node.cycles),
    U64(3, data.node.instructions),
    U64(4, data.node.stall_cycles),
    FIX64(5, data.node.ipc),
    FIX64(6, data.node.stall_pct),
    FIX64(7, data.node.memory_some_avg10),
    FIX64(8, data.node.memory_full_avg10),
};

static const struct message data_msgs[TAPIO_OBS__COUNT] = {
    [TAPIO_OBS_NETWORK] = MESSAGE(network_fields, Tapio__V1__NetworkData),
    [TAPIO_OBS_CONTAINER] = MESSAGE(container_fields, Tapio__V1__ContainerData),
    [TAPIO_OBS_STORAGE] = MESSAGE(storage_fields, Tapio__V1__StorageData),
    [TAPIO_OBS_NODE] = MESSAGE(node_fields, Tapio__V1__NodeData),
};

static const struct field error_fields[] = {
    CHECKED(1, K_CODE),
    STR(2, error_message),
};

static const struct field context_fields[] = {
    STR(1, cluster),
    NAMED(2, K_NODE, node),
};

static const struct message error_msg = MESSAGE(error_fields, Tapio__V1__OccurrenceError);
static const struct message context_msg = MESSAGE(context_fields, Tapio__V1__Context);

static const struct field occurrence_fields[] = {
    NAMED(1, K_ID, id),
    FIX64(2, timestamp_ns),
    CHECKED(3, K_SOURCE),
    ENUM(4, type, TAPIO_OCC__COUNT),
    ENUM(5, severity, TAPIO_SEV__COUNT),
    ENUM(6, outcome, TAPIO_OUT__COUNT),
    CHECKED(7, K_VERSION),
    CHECKED(8, K_ERROR),
    CHECKED(9, K_CONTEXT),
    U64(10, config_generation),
    U32(11, count),
    FIX64(12, first_seen_ns),
    FIX64(13, last_seen_ns),
    DATA(20, TAPIO_OBS_NETWORK),
    DATA(21, TAPIO_OBS_CONTAINER),
    DATA(22, TAPIO_OBS_STORAGE),
    DATA(23, TAPIO_OBS_NODE),
};

static const struct message occurrence_msg = MESSAGE(occurrence_fields, Tapio__V1__Occurrence);

_Static_assert(sizeof(occurrence_fields) / sizeof(occurrence_fields[0]) < 256,
	       "keys of the Occurrence fields take at most two bytes on the wire");
_Static_assert(TAPIO__V1__OCCURRENCE__DATA_NETWORK == 20 && TAPIO__V1__OCCURRENCE__DATA_NODE == 23,
	       "Occurrence.data field numbers");
_Static_assert(TAPIO__V1__FRAME__MSG_EVENT_BATCH == 4, "Frame.event_batch field number");

#define SEEN_ENUMS ((1u << 4) | (1u << 5) | (1u << 6)) /* type, severity, outcome */

/*
 * One occurrence being decoded. In check mode (occ_wire_iter_check) strings are checked where
 * they lie instead of copied, and base is scratch that only the scalars the check reads are
 * zeroed in.
 */
struct occ_state {
	uint8_t *base; /* the struct tapio_occurrence */
	size_t mem;    /* bytes protobuf-c would have allocated so far */
	int observer;  /* the data member seen, -1 for none */
	bool check;
	const uint8_t *code, *id, *node;
	size_t code_len, id_len, node_len;
	struct occ_wire_iter *it; /* check mode: its Context cache */
};

/* A value varint: at most 10 bytes, and no bits beyond 64 (protobuf-c would drop them). */
static inline int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	const uint8_t *start = *p, *q = *p;

	if (q < end && !(q[0] & 0x80)) {
		*v = q[0];
		*p = q + 1;
		return 0;
	}
	/* two and three bytes (pids, sizes, lengths) without the loop */
	if (end - q >= 2 && !(q[1] & 0x80)) {
		*v = (q[0] & 0x7fu) | (uint64_t)q[1] << 7;
		*p = q + 2;
		return 0;
	}
	if (end - q >= 3 && !(q[2] & 0x80)) { /* q[1] has its high bit: see above */
		*v = (q[0] & 0x7fu) | (uint64_t)(q[1] & 0x7f) << 7 | (uint64_t)q[2] << 14;
		*p = q + 3;
		return 0;
	}
	if (codec_wire_varint(p, end, v) < 0)
		return -1;
	return *p - start == 10 && (*p)[-1] > 1 ? -1 : 0;
}

/* A varint of a 32-bit field: wider values are refused (protobuf-c would keep the low bits). */
static inline int read_u32(const uint8_t **p, const uint8_t *end, uint32_t *u32)
{
	uint64_t v;

	if (read_varint(p, end, &v) < 0 || v > UINT32_MAX)
		return -1;
	*u32 = (uint32_t)v;
	return 0;
}

/* A length prefix: protobuf-c reads at most 5 bytes; the value must fit what is left. */
static inline int read_len(const uint8_t **p, const uint8_t *end, size_t *len)
{
	const uint8_t *start = *p;
	uint64_t v;

	if (*p < end && !(**p & 0x80)) {
		v = *(*p)++;
	} else if (codec_wire_varint(p, end, &v) < 0 || *p - start > 5) {
		return -1;
	}
	if (v > (uint64_t)(end - *p))
		return -1;
	*len = (size_t)v;
	return 0;
}

static inline uint64_t load64(const uint8_t *p)
{
	uint64_t w;

	memcpy(&w, p, sizeof(w));
	return w;
}

/* Nonzero when a byte of w is zero. */
static inline uint64_t zero_byte(uint64_t w)
{
	return (w - 0x0101010101010101ull) & ~w & 0x8080808080808080ull;
}

/* Nonzero when a byte of the 32-bit w is zero. */
static inline uint32_t zero_byte32(uint32_t w)
{
	return (w - 0x01010101u) & ~w & 0x80808080u;
}

/*
 * Whether s[0..len) holds a NUL byte. Under 8 bytes with two overlapping loads or three byte
 * tests (no loop: many strings here are that short), from 8 a word at a time, the last word
 * overlapping; nothing outside s[0..len) is read.
 */
static inline bool has_nul(const uint8_t *s, size_t len)
{
	uint32_t a, b;

	if (len < 4) /* bytes 0, len / 2 and len - 1 are every byte of 1..3 */
		return len && (!s[0] || !s[len / 2] || !s[len - 1]);
	if (len < 8) {
		memcpy(&a, s, 4);
		memcpy(&b, s + len - 4, 4);
		return (zero_byte32(a) | zero_byte32(b)) != 0;
	}
	for (size_t i = 0; i + 8 < len; i += 8)
		if (zero_byte(load64(s + i)))
			return true;
	return zero_byte(load64(s + len - 8)) != 0;
}

/*
 * Copies the string s[0..len) to dst unless it holds a NUL byte (copy_str would cut it short
 * there): returns -1 then. A word at a time, the last word overlapping the one before, so
 * nothing outside s[0..len) is read and nothing outside dst[0..len) is written.
 */
static inline int copy_text(uint8_t *dst, const uint8_t *s, size_t len)
{
	uint64_t w;

	if (len < 8) {
		for (size_t i = 0; i < len; i++) {
			if (!s[i])
				return -1;
			dst[i] = s[i];
		}
		return 0;
	}
	for (size_t i = 0; i + 8 < len; i += 8) {
		w = load64(s + i);
		if (zero_byte(w))
			return -1;
		memcpy(dst + i, &w, sizeof(w));
	}
	w = load64(s + len - 8);
	if (zero_byte(w))
		return -1;
	memcpy(dst + len - 8, &w, sizeof(w));
	return 0;
}

/* A string occ_from_proto only checks (source, protocol_version, error.code). */
static inline __attribute__((always_inline)) int
check_text(struct occ_state *st, const struct field *f, const uint8_t *s, size_t len)
{
	switch (f->kind) {
	case K_SOURCE: /* equal to "tapio": no NUL either */
		return len == 0 || (len == sizeof(OCC_SOURCE) - 1 &&
				    !memcmp(s, OCC_SOURCE, sizeof(OCC_SOURCE) - 1))
			   ? 0
			   : -1;
	case K_VERSION:
		if (len == 0)
			return 0;
		if (len < 2 || s[0] != '1' || s[1] != '.')
			return -1;
		return has_nul(s, len) ? -1 : 0;
	default: /* K_CODE: compared with the catalogue once the type is known */
		st->code = s;
		st->code_len = len;
		return 0;
	}
}

static int parse_sub(struct occ_state *st, const struct message *m, const uint8_t *p,
		     const uint8_t *end);
static int parse_context(struct occ_state *st, const uint8_t *p, const uint8_t *end);

/*
 * Occurrence.context p[0..len) in check mode: when its bytes equal the last Context checked
 * in this batch (an agent names the same cluster and node in every occurrence) its outcome
 * is that one's: the same mem, the node at the same place in it. Otherwise it is parsed and
 * becomes the one remembered.
 */
static int check_context(struct occ_state *st, const uint8_t *p, size_t len)
{
	struct occ_wire_iter *it = st->it;
	size_t mem = st->mem;

	if (it->ctx && len == it->ctx_len &&
	    (len <= 16	 ? occ_bytes_equal(p, it->ctx, len)
	     : len <= 32 ? occ_bytes_equal(p, it->ctx, 16) &&
			       occ_bytes_equal(p + len - 16, it->ctx + len - 16, 16)
			 : memcmp(p, it->ctx, len) == 0)) {
		st->mem += it->ctx_mem;
		if (it->ctx_node_off != SIZE_MAX) {
			st->node = p + it->ctx_node_off;
			st->node_len = it->ctx_node_len;
		}
		return 0;
	}
	if (parse_context(st, p, p + len) < 0)
		return -1;
	it->ctx = p;
	it->ctx_len = len;
	it->ctx_mem = st->mem - mem;
	it->ctx_node_off = st->node ? (size_t)(st->node - p) : SIZE_MAX;
	it->ctx_node_len = st->node_len;
	return 0;
}

/*
 * Takes one field of message m whose key (field number and wire type) was just read, its
 * value at *pp: the field must be known, arrive with its wire type and not have been seen
 * before (one member for the data oneof); converts it and stores it, or parses the
 * sub-message. Inlined where key is a constant (the ordered passes below), so the kind's
 * switch folds away there; the general loop (parse_rest) has one real switch.
 */
static inline __attribute__((always_inline)) int take(struct occ_state *st, const struct message *m,
						      uint32_t key, const uint8_t **pp,
						      const uint8_t *end, uint32_t *seen)
{
	const uint8_t *p = *pp;
	const struct message *sub;
	const struct field *f;
	uint32_t u32;
	int32_t s32;
	uint16_t u16;
	uint8_t u8, *dst;
	size_t len;
	uint64_t v;
	bool b;

	if (key >= m->n_keys)
		return -1;
	f = &m->fields[key];
	if (*seen & (1u << f->bit))
		return -1;
	*seen |= 1u << f->bit;
	dst = st->base + f->off;
	switch (f->kind) {
	case K_U32:
		if (read_u32(&p, end, &u32) < 0)
			return -1;
		memcpy(dst, &u32, sizeof(u32));
		goto done;
	case K_S32:
		if (read_u32(&p, end, &u32) < 0)
			return -1;
		s32 = (int32_t)((u32 >> 1) ^ (0u - (u32 & 1)));
		memcpy(dst, &s32, sizeof(s32));
		goto done;
	case K_ENUM:
		if (read_u32(&p, end, &u32) < 0 || u32 < 1 || u32 > f->arg)
			return -1;
		s32 = (int32_t)u32 - 1;
		memcpy(dst, &s32, sizeof(s32));
		goto done;
	case K_PORT:
		if (read_u32(&p, end, &u32) < 0 || u32 > UINT16_MAX)
			return -1;
		u16 = (uint16_t)u32;
		memcpy(dst, &u16, sizeof(u16));
		goto done;
	case K_FAMILY:
		if (read_u32(&p, end, &u32) < 0 || (u32 != 0 && u32 != 4 && u32 != 6))
			return -1;
		u8 = (uint8_t)u32;
		memcpy(dst, &u8, sizeof(u8));
		goto done;
	case K_U64:
		if (read_varint(&p, end, &v) < 0)
			return -1;
		memcpy(dst, &v, sizeof(v));
		goto done;
	case K_BOOL:
		if (read_varint(&p, end, &v) < 0)
			return -1;
		b = v != 0;
		memcpy(dst, &b, sizeof(b));
		goto done;
	case K_FIX64: /* little-endian host, as protobuf-c assumes */
		if (end - p < 8)
			return -1;
		memcpy(dst, p, 8);
		p += 8;
		goto done;
	case K_NONE:
		return -1;
	default:
		break;
	}
	if (read_len(&p, end, &len) < 0)
		return -1;
	switch (f->kind) {
	case K_STR:
	case K_ID:
	case K_NODE:
		if (len >= f->size)
			return -1;
		if (!st->check) {
			if (copy_text(dst, p, len) < 0)
				return -1;
		} else if (has_nul(p, len)) {
			return -1;
		} else if (f->kind == K_ID) {
			st->id = p;
			st->id_len = len;
		} else if (f->kind == K_NODE) {
			st->node = p;
			st->node_len = len;
		}
		st->mem += len + 1;
		break;
	case K_ERROR:
	case K_CONTEXT:
	case K_DATA:
		sub = f->kind == K_ERROR     ? &error_msg
		      : f->kind == K_CONTEXT ? &context_msg
					     : &data_msgs[f->arg];
		if (f->kind == K_DATA)
			st->observer = f->arg;
		st->mem += sub->pb_size;
		if (f->kind == K_CONTEXT && st->it) {
			if (check_context(st, p, len) < 0)
				return -1;
		} else if (parse_sub(st, sub, p, p + len) < 0) {
			return -1;
		}
		break;
	default:
		if (check_text(st, f, p, len) < 0)
			return -1;
		st->mem += len + 1;
		break;
	}
	p += len;
done:
	*pp = p;
	return 0;
}

/*
 * The fields of m from p to end in any order (each once), after the ordered pass took those
 * before p (their bits in seen). Returns 0 and the fields seen (a bit per field number) in
 * *seen_out, or -1.
 */
static __attribute__((noinline)) int parse_rest(struct occ_state *st, const struct message *m,
						const uint8_t *p, const uint8_t *end, uint32_t seen,
						uint32_t *seen_out)
{
	while (p < end) {
		uint32_t key = *p++;

		if (key & 0x80) { /* field numbers 16..23: a two-byte key */
			if (p == end || (*p & 0x80))
				return -1;
			key = (key & 0x7f) | (uint32_t)*p++ << 7;
		}
		if (take(st, m, key, &p, end, &seen) < 0)
			return -1;
	}
	*seen_out = seen;
	return 0;
}

/*
 * The ordered pass: encoders write fields in field-number order (protobuf-c and every other
 * encoder we know do), so each message is first read as a straight line of "is the next key
 * field N?" tests, one site per field with the field's conversion inlined, which the CPU
 * predicts far better than one table dispatch for every field of every message. Whatever is
 * left when the line ends (a field out of order, unknown, repeated) goes to parse_rest, which
 * judges it exactly as if the whole message had been read there: the ordered pass only takes
 * a prefix of the fields, each with the same take().
 */
#define KEY1(num, wt) ((uint32_t)(num) << 3 | (wt))
#define ORDERED(m, num, wt)                                                    \
	do {                                                                   \
		if (p < end && *p == KEY1(num, wt)) {                          \
			p++;                                                   \
			if (take(st, &(m), KEY1(num, wt), &p, end, &seen) < 0) \
				return -1;                                     \
		}                                                              \
	} while (0)
/* field numbers 16..23: the key is two bytes, the low 7 bits with the top bit set, then 1 */
#define ORDERED2(m, num, wt)                                                                \
	do {                                                                                \
		if (end - p >= 2 && p[0] == (uint8_t)(KEY1(num, wt) | 0x80) && p[1] == 1) { \
			p += 2;                                                             \
			if (take(st, &(m), KEY1(num, wt), &p, end, &seen) < 0)              \
				return -1;                                                  \
		}                                                                           \
	} while (0)
#define REST(m) (p == end ? 0 : parse_rest(st, &(m), p, end, seen, &seen))

static int parse_error(struct occ_state *st, const uint8_t *p, const uint8_t *end)
{
	uint32_t seen = 0;

	ORDERED(error_msg, 1, WT_LEN);
	ORDERED(error_msg, 2, WT_LEN);
	return REST(error_msg);
}

static int parse_context(struct occ_state *st, const uint8_t *p, const uint8_t *end)
{
	uint32_t seen = 0;

	ORDERED(context_msg, 1, WT_LEN);
	ORDERED(context_msg, 2, WT_LEN);
	return REST(context_msg);
}

static int parse_network(struct occ_state *st, const uint8_t *p, const uint8_t *end)
{
	const struct message m = data_msgs[TAPIO_OBS_NETWORK];
	uint32_t seen = 0;

	ORDERED(m, 1, WT_VARINT);
	ORDERED(m, 2, WT_LEN);
	ORDERED(m, 3, WT_LEN);
	ORDERED(m, 4, WT_LEN);
	ORDERED(m, 5, WT_VARINT);
	ORDERED(m, 6, WT_VARINT);
	ORDERED(m, 7, WT_VARINT);
	ORDERED(m, 8, WT_LEN);
	ORDERED(m, 9, WT_LEN);
	ORDERED(m, 10, WT_VARINT);
	ORDERED(m, 11, WT_VARINT);
	ORDERED(m, 12, WT_FIX64);
	ORDERED(m, 13, WT_FIX64);
	return REST(m);
}

static int parse_container(struct occ_state *st, const uint8_t *p, const uint8_t *end)
{
	const struct message m = data_msgs[TAPIO_OBS_CONTAINER];
	uint32_t seen = 0;

	ORDERED(m, 1, WT_VARINT);
	ORDERED(m, 2, WT_VARINT);
	ORDERED(m, 3, WT_LEN);
	ORDERED(m, 4, WT_VARINT);
	ORDERED(m, 5, WT_VARINT);
	ORDERED(m, 6, WT_VARINT);
	ORDERED(m, 7, WT_VARINT);
	ORDERED(m, 8, WT_LEN);
	ORDERED(m, 9, WT_VARINT);
	ORDERED(m, 10, WT_VARINT);
	ORDERED(m, 11, WT_VARINT);
	return REST(m);
}

static int parse_storage(struct occ_state *st, const uint8_t *p, const uint8_t *end)
{
	const struct message m = data_msgs[TAPIO_OBS_STORAGE];
	uint32_t seen = 0;

	ORDERED(m, 1, WT_VARINT);
	ORDERED(m, 2, WT_LEN);
	ORDERED(m, 3, WT_VARINT);
	ORDERED(m, 4, WT_VARINT);
	ORDERED(m, 5, WT_VARINT);
	ORDERED(m, 6, WT_VARINT);
	ORDERED(m, 7, WT_LEN);
	ORDERED(m, 8, WT_FIX64);
	ORDERED(m, 9, WT_VARINT);
	return REST(m);
}

static int parse_node(struct occ_state *st, const uint8_t *p, const uint8_t *end)
{
	const struct message m = data_msgs[TAPIO_OBS_NODE];
	uint32_t seen = 0;

	ORDERED(m, 1, WT_VARINT);
	ORDERED(m, 2, WT_VARINT);
	ORDERED(m, 3, WT_VARINT);
	ORDERED(m, 4, WT_VARINT);
	ORDERED(m, 5, WT_FIX64);
	ORDERED(m, 6, WT_FIX64);
	ORDERED(m, 7, WT_FIX64);
	ORDERED(m, 8, WT_FIX64);
	return REST(m);
}

/* A sub-message of the Occurrence: the error, the context or one member of the data oneof. */
static int parse_sub(struct occ_state *st, const struct message *m, const uint8_t *p,
		     const uint8_t *end)
{
	if (m == &context_msg)
		return parse_context(st, p, end);
	if (m == &error_msg)
		return parse_error(st, p, end);
	if (m == &data_msgs[TAPIO_OBS_NETWORK])
		return parse_network(st, p, end);
	if (m == &data_msgs[TAPIO_OBS_CONTAINER])
		return parse_container(st, p, end);
	if (m == &data_msgs[TAPIO_OBS_STORAGE])
		return parse_storage(st, p, end);
	return parse_node(st, p, end);
}

/*
 * Parses one Occurrence p[0..end) and its sub-messages into st: every field must be known,
 * arrive with its wire type and appear once per message (one member for the data oneof).
 * Returns 0 and the Occurrence's fields seen (a bit per field number) in *seen_out, or -1.
 */
static int parse_occurrence(struct occ_state *st, const uint8_t *p, const uint8_t *end,
			    uint32_t *seen_out)
{
	uint32_t seen = 0;

	st->mem += occurrence_msg.pb_size;
	ORDERED(occurrence_msg, 1, WT_LEN);
	ORDERED(occurrence_msg, 2, WT_FIX64);
	ORDERED(occurrence_msg, 3, WT_LEN);
	ORDERED(occurrence_msg, 4, WT_VARINT);
	ORDERED(occurrence_msg, 5, WT_VARINT);
	ORDERED(occurrence_msg, 6, WT_VARINT);
	ORDERED(occurrence_msg, 7, WT_LEN);
	ORDERED(occurrence_msg, 8, WT_LEN);
	ORDERED(occurrence_msg, 9, WT_LEN);
	ORDERED(occurrence_msg, 10, WT_VARINT);
	ORDERED(occurrence_msg, 11, WT_VARINT);
	ORDERED(occurrence_msg, 12, WT_FIX64);
	ORDERED(occurrence_msg, 13, WT_FIX64);
	ORDERED2(occurrence_msg, 20, WT_LEN);
	ORDERED2(occurrence_msg, 21, WT_LEN);
	ORDERED2(occurrence_msg, 22, WT_LEN);
	ORDERED2(occurrence_msg, 23, WT_LEN);
	if (REST(occurrence_msg) < 0)
		return -1;
	*seen_out = seen;
	return 0;
}

/*
 * One Occurrence (its bytes p[0..end)) into *occ, with occ_from_proto's checks: zeroed by the
 * caller, or in check mode scratch whose timestamp, count, first_seen and last_seen are zeroed
 * here (the only members the check reads that a message may leave out).
 */
static int decode_occurrence(struct occ_state *st, struct tapio_occurrence *occ, const uint8_t *p,
			     const uint8_t *end)
{
	const struct tapio_catalogue_entry *cat;
	uint32_t seen;

	st->base = (uint8_t *)occ;
	st->observer = -1;
	st->code = st->id = st->node = NULL;
	st->code_len = st->id_len = st->node_len = 0;
	if (st->check) {
		occ->timestamp_ns = 0;
		occ->count = 0;
		occ->first_seen_ns = occ->last_seen_ns = 0;
	}
	if (parse_occurrence(st, p, end, &seen) < 0)
		return -1;
	/* type, severity and outcome 0 (unspecified) are refused */
	if ((seen & SEEN_ENUMS) != SEEN_ENUMS)
		return -1;
	cat = &tapio_catalogue[occ->type];
	if (st->observer != (int)cat->observer)
		return -1;
	if (st->code_len && (st->code_len != cat->error_code_len ||
			     !occ_bytes_equal(st->code, cat->error_code, st->code_len)))
		return -1;
	return 0;
}

/*
 * occurrence_validate() of the occurrence check mode just parsed (st, the scalars in *occ),
 * without the struct: what the parse itself guarantees (enums in range, every string
 * NUL-free and shorter than its array) is not checked again.
 */
static bool check_valid(const struct occ_state *st, const struct tapio_occurrence *occ)
{
	if (st->id_len != TAPIO_ULID_CHARS || !ulid_valid26((const char *)st->id))
		return false;
	if (occ->timestamp_ns == 0 || st->node_len == 0)
		return false;
	if (occ->count == 0)
		return !occ->first_seen_ns && !occ->last_seen_ns;
	return occ->first_seen_ns && occ->last_seen_ns && occ->first_seen_ns <= occ->last_seen_ns;
}

/*
 * Zeroes *occ with the C library's memset: with the size a constant the compiler inlines it
 * as `rep stos`, which costs about a fifth of the whole decode at this size; the library's
 * picks the CPU's vector stores at run time.
 */
static inline void zero_occurrence(struct tapio_occurrence *occ)
{
	volatile size_t n = sizeof(*occ);

	memset(occ, 0, n);
}

/* What protobuf-c allocates for the ScannedMember slabs of a message with `members` fields. */
static size_t slab_bytes(size_t members)
{
	size_t bytes = 0, cap = PB_STACK_MEMBERS;

	for (unsigned k = 1; members > cap; k++) {
		bytes += (size_t)PB_SCANNED_MEMBER * PB_STACK_MEMBERS << k;
		cap += (size_t)PB_STACK_MEMBERS << k;
	}
	return bytes;
}

int occ_wire_batch_scan(const uint8_t *payload, size_t len, struct occ_wire_batch *b)
{
	const uint8_t *p = payload, *end = payload + len;
	uint32_t seen = 0;
	size_t blen;

	memset(b, 0, sizeof(*b));
	/* Frame: field 4 (event_batch), length-delimited, and nothing after it */
	if (len < 2 || *p++ != (4 << 3 | 2) || read_len(&p, end, &blen) < 0 ||
	    blen != (size_t)(end - p))
		return -1;
	b->body = p;
	b->body_len = blen;
	while (p < end) {
		uint8_t key = *p++;
		uint64_t v;
		size_t n;

		switch (key) {
		case 1 << 3 | 0: /* session_id */
		case 2 << 3 | 0: /* sequence */
			if ((seen & (1u << (key >> 3))) || read_varint(&p, end, &v) < 0)
				return -1;
			seen |= 1u << (key >> 3);
			if (key >> 3 == 1)
				b->session_id = v;
			else
				b->sequence = v;
			break;
		case 3 << 3 | 2: /* occurrences */
			if (read_len(&p, end, &n) < 0)
				return -1;
			p += n;
			b->n++;
			break;
		default:
			return -1;
		}
	}
	return 0;
}

void occ_wire_iter_init(struct occ_wire_iter *it, const struct occ_wire_batch *b)
{
	it->p = b->body;
	it->end = b->body + b->body_len;
	it->i = 0;
	it->members = 0;
	it->mem = sizeof(Tapio__V1__Frame) + sizeof(Tapio__V1__EventBatch) +
		  b->n * sizeof(Tapio__V1__Occurrence *);
	it->ctx = NULL;
	it->ctx_len = it->ctx_mem = it->ctx_node_off = it->ctx_node_len = 0;
}

/* One step of the iterator, in st's mode: see occ_wire_iter_next. */
static inline __attribute__((always_inline)) int
iter_step(struct occ_wire_iter *it, struct occ_wire_batch *b, size_t budget, struct occ_state *st,
	  struct tapio_occurrence *occ, const uint8_t **wire, size_t *wire_len)
{
	st->mem = it->mem;
	while (it->p < it->end) {
		uint8_t key = *it->p++;
		uint64_t v;
		size_t n;

		it->members++;
		if (key != (3 << 3 | 2)) {
			if (read_varint(&it->p, it->end, &v) < 0) /* scanned already: cannot fail */
				return -1;
			continue;
		}
		if (read_len(&it->p, it->end, &n) < 0 || it->i == b->n)
			return -1;
		if (!st->check)
			zero_occurrence(occ);
		if (decode_occurrence(st, occ, it->p, it->p + n) < 0)
			return -1;
		*wire = it->p;
		*wire_len = n;
		it->i++;
		it->p += n;
		it->mem = st->mem;
		return st->mem > budget ? -1 : 1;
	}
	it->mem += slab_bytes(it->members);
	if (it->i != b->n || it->mem > budget)
		return -1;
	b->unpack_bytes = it->mem;
	return 0;
}

int occ_wire_iter_next(struct occ_wire_iter *it, struct occ_wire_batch *b, size_t budget,
		       struct tapio_occurrence *occ, const uint8_t **wire, size_t *wire_len)
{
	struct occ_state st = {.check = false};

	return iter_step(it, b, budget, &st, occ, wire, wire_len);
}

int occ_wire_iter_check(struct occ_wire_iter *it, struct occ_wire_batch *b, size_t budget,
			struct occ_wire_summary *s, const uint8_t **wire, size_t *wire_len)
{
	struct occ_state st = {.check = true, .it = it};
	struct tapio_occurrence scratch; /* scalars only: never read but for check_valid's */
	int r = iter_step(it, b, budget, &st, &scratch, wire, wire_len);

	if (r != 1)
		return r;
	s->timestamp_ns = scratch.timestamp_ns;
	s->type = (uint8_t)scratch.type;
	s->severity = (uint8_t)scratch.severity;
	s->node = st.node;
	s->node_len = (uint8_t)st.node_len;
	s->valid = check_valid(&st, &scratch);
	return 1;
}

int occ_wire_batch_decode(struct occ_wire_batch *b, size_t budget, struct tapio_occurrence *occ,
			  const uint8_t **wire, size_t *wire_len)
{
	struct occ_wire_iter it;
	size_t i = 0;
	int r;

	occ_wire_iter_init(&it, b);
	/* the scan counted b->n occurrences: next never returns more */
	while ((r = occ_wire_iter_next(&it, b, budget, &occ[i], &wire[i], &wire_len[i])) == 1)
		i++;
	return r;
}

int occ_wire_decode_occurrence(const uint8_t *p, size_t len, struct tapio_occurrence *occ)
{
	struct occ_state st = {0};

	zero_occurrence(occ);
	return decode_occurrence(&st, occ, p, p + len);
}
