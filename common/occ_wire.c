/*
 * EventBatch frames straight from the wire into struct tapio_occurrence (see occ_wire.h).
 *
 * Table-driven: each message the fast path reads is a table indexed by field number that says
 * the field's kind (which fixes its wire type and its conversion) and where its value goes in
 * struct tapio_occurrence, so the per-observer facts are data, not code. The conversions are
 * those of protobuf-c 1.4 unpack followed by occ_from_proto (common/occ_proto.c); whatever
 * either could treat in more than one way (a repeated field, a truncating varint, a NUL inside
 * a string, …) is declined instead, so an accepted frame has one meaning only.
 */
#include "common/occ_wire.h"

#include <stdbool.h>
#include <string.h>

#include "common/codec.h"
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
	K_NONE = 0, /* no such field in this message: declined (unknown fields, number 0) */
	K_U32,	    /* uint32 varint */
	K_S32,	    /* sint32 varint (zigzag) */
	K_U64,	    /* uint64 varint */
	K_BOOL,	    /* bool varint */
	K_FIX64,    /* fixed64 or double: 8 bytes copied as they are */
	K_STR,	    /* string copied into a char[size] */
	K_PORT,	    /* uint32 varint that must fit a port */
	K_FAMILY,   /* uint32 varint that must be 0, 4 or 6 */
	K_ENUM,	    /* enum varint 1..arg, stored as value - 1 */
	K_SOURCE,   /* Occurrence.source: empty or "tapio" */
	K_VERSION,  /* Occurrence.protocol_version: empty or "1.…" */
	K_CODE,	    /* OccurrenceError.code: empty or the type's catalogue code */
	K_ERROR,    /* Occurrence.error */
	K_CONTEXT,  /* Occurrence.context */
	K_DATA,	    /* one member of the Occurrence.data oneof; arg = its observer */
	K__COUNT,
};

/* The wire type each kind must arrive with. */
static const uint8_t wire_type[K__COUNT] = {
    [K_U32] = 0,     [K_S32] = 0,  [K_U64] = 0,	   [K_BOOL] = 0,    [K_FIX64] = 1,
    [K_STR] = 2,     [K_PORT] = 0, [K_FAMILY] = 0, [K_ENUM] = 0,    [K_SOURCE] = 2,
    [K_VERSION] = 2, [K_CODE] = 2, [K_ERROR] = 2,  [K_CONTEXT] = 2, [K_DATA] = 2,
};

struct field {
	uint8_t kind;
	uint8_t arg;   /* K_ENUM: number of values; K_DATA: observer */
	uint16_t off;  /* where the value goes in struct tapio_occurrence */
	uint16_t size; /* bytes it takes there (K_STR: the array, NUL included) */
};

struct message {
	const struct field *fields; /* indexed by field number */
	uint8_t n_fields;	    /* highest field number + 1 */
	uint16_t pb_size;	    /* sizeof the protobuf-c struct unpack allocates for it */
};

/* A member of struct tapio_occurrence, its offset, and its size checked at compile time. */
#define MEMBER(m) (((struct tapio_occurrence *)0)->m)
#define AT(m)	  ((uint16_t)offsetof(struct tapio_occurrence, m))
#define SIZED(m, n) \
	((uint16_t)(sizeof(MEMBER(m)) + 0 * sizeof(char[sizeof(MEMBER(m)) == (n) ? 1 : -1])))
#define U32(m)                               \
	{                                    \
		K_U32, 0, AT(m), SIZED(m, 4) \
	}
#define S32(m)                               \
	{                                    \
		K_S32, 0, AT(m), SIZED(m, 4) \
	}
#define U64(m)                               \
	{                                    \
		K_U64, 0, AT(m), SIZED(m, 8) \
	}
#define BOOL(m)                                          \
	{                                                \
		K_BOOL, 0, AT(m), SIZED(m, sizeof(bool)) \
	}
#define FIX64(m)                               \
	{                                      \
		K_FIX64, 0, AT(m), SIZED(m, 8) \
	}
#define STR(m)                                               \
	{                                                    \
		K_STR, 0, AT(m), (uint16_t)sizeof(MEMBER(m)) \
	}
#define PORT(m)                               \
	{                                     \
		K_PORT, 0, AT(m), SIZED(m, 2) \
	}
#define FAMILY(m)                               \
	{                                       \
		K_FAMILY, 0, AT(m), SIZED(m, 1) \
	}
#define ENUM(m, n)                                        \
	{                                                 \
		K_ENUM, (n), AT(m), SIZED(m, sizeof(int)) \
	}
#define MESSAGE(fields, pb)                                                                 \
	{                                                                                   \
		fields, (uint8_t)(sizeof(fields) / sizeof(fields[0])), (uint16_t)sizeof(pb) \
	}

/* tapio.v1.NetworkData … NodeData (proto/tapio.proto), field by field. */
static const struct field network_fields[] = {
    [1] = U32(data.network.pid),	   [2] = STR(data.network.comm),
    [3] = STR(data.network.src_ip),	   [4] = STR(data.network.dst_ip),
    [5] = PORT(data.network.src_port),	   [6] = PORT(data.network.dst_port),
    [7] = FAMILY(data.network.family),	   [8] = STR(data.network.old_state),
    [9] = STR(data.network.new_state),	   [10] = U32(data.network.total_retrans),
    [11] = U32(data.network.snd_cwnd),	   [12] = FIX64(data.network.baseline_ms),
    [13] = FIX64(data.network.current_ms),
};

static const struct field container_fields[] = {
    [1] = U32(data.container.pid),
    [2] = U32(data.container.tid),
    [3] = STR(data.container.comm),
    [4] = S32(data.container.exit_code),
    [5] = S32(data.container.signal),
    [6] = BOOL(data.container.core_dumped),
    [7] = U64(data.container.cgroup_id),
    [8] = STR(data.container.cgroup_path),
    [9] = U64(data.container.memory_usage_bytes),
    [10] = U64(data.container.memory_limit_bytes),
    [11] = U64(data.container.rss_bytes),
};

static const struct field storage_fields[] = {
    [1] = U32(data.storage.pid),	[2] = STR(data.storage.comm),
    [3] = U32(data.storage.dev_major),	[4] = U32(data.storage.dev_minor),
    [5] = U64(data.storage.sector),	[6] = U32(data.storage.bytes),
    [7] = STR(data.storage.opcode),	[8] = FIX64(data.storage.latency_ms),
    [9] = S32(data.storage.error_code),
};

static const struct field node_fields[] = {
    [1] = S32(data.node.cpu),
    [2] = U64(data.node.cycles),
    [3] = U64(data.node.instructions),
    [4] = U64(data.node.stall_cycles),
    [5] = FIX64(data.node.ipc),
    [6] = FIX64(data.node.stall_pct),
    [7] = FIX64(data.node.memory_some_avg10),
    [8] = FIX64(data.node.memory_full_avg10),
};

static const struct message data_msgs[TAPIO_OBS__COUNT] = {
    [TAPIO_OBS_NETWORK] = MESSAGE(network_fields, Tapio__V1__NetworkData),
    [TAPIO_OBS_CONTAINER] = MESSAGE(container_fields, Tapio__V1__ContainerData),
    [TAPIO_OBS_STORAGE] = MESSAGE(storage_fields, Tapio__V1__StorageData),
    [TAPIO_OBS_NODE] = MESSAGE(node_fields, Tapio__V1__NodeData),
};

static const struct field error_fields[] = {
    [1] = {K_CODE, 0, 0, 0},
    [2] = STR(error_message),
};

static const struct field context_fields[] = {
    [1] = STR(cluster),
    [2] = STR(node),
};

static const struct message error_msg = MESSAGE(error_fields, Tapio__V1__OccurrenceError);
static const struct message context_msg = MESSAGE(context_fields, Tapio__V1__Context);

static const struct field occurrence_fields[] = {
    [1] = STR(id),
    [2] = FIX64(timestamp_ns),
    [3] = {K_SOURCE, 0, 0, 0},
    [4] = ENUM(type, TAPIO_OCC__COUNT),
    [5] = ENUM(severity, TAPIO_SEV__COUNT),
    [6] = ENUM(outcome, TAPIO_OUT__COUNT),
    [7] = {K_VERSION, 0, 0, 0},
    [8] = {K_ERROR, 0, 0, 0},
    [9] = {K_CONTEXT, 0, 0, 0},
    [10] = U64(config_generation),
    [11] = U32(count),
    [12] = FIX64(first_seen_ns),
    [13] = FIX64(last_seen_ns),
    [20] = {K_DATA, TAPIO_OBS_NETWORK, 0, 0},
    [21] = {K_DATA, TAPIO_OBS_CONTAINER, 0, 0},
    [22] = {K_DATA, TAPIO_OBS_STORAGE, 0, 0},
    [23] = {K_DATA, TAPIO_OBS_NODE, 0, 0},
};

static const struct message occurrence_msg = MESSAGE(occurrence_fields, Tapio__V1__Occurrence);

_Static_assert(sizeof(occurrence_fields) / sizeof(occurrence_fields[0]) < 32,
	       "field numbers index a 32-bit seen mask");
_Static_assert(TAPIO__V1__OCCURRENCE__DATA_NETWORK == 20 && TAPIO__V1__OCCURRENCE__DATA_NODE == 23,
	       "Occurrence.data field numbers");
_Static_assert(TAPIO__V1__FRAME__MSG_EVENT_BATCH == 4, "Frame.event_batch field number");

#define SEEN_DATA  (1u << 31) /* the data oneof: one bit for all its members */
#define SEEN_ENUMS ((1u << 4) | (1u << 5) | (1u << 6)) /* type, severity, outcome */

/* One occurrence being decoded. */
struct occ_state {
	uint8_t *base; /* the struct tapio_occurrence */
	size_t mem;    /* bytes protobuf-c would have allocated so far */
	int observer;  /* the data member seen, -1 for none */
	const uint8_t *code;
	size_t code_len;
};

/* A value varint: at most 10 bytes, and no bits beyond 64 (protobuf-c would drop them). */
static inline int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	const uint8_t *start = *p;

	if (*p < end && !(**p & 0x80)) {
		*v = *(*p)++;
		return 0;
	}
	if (codec_wire_varint(p, end, v) < 0)
		return -1;
	return *p - start == 10 && (*p)[-1] > 1 ? -1 : 0;
}

/* A length prefix: protobuf-c reads at most 5 bytes; the value must fit what is left. */
static inline int read_len(const uint8_t **p, const uint8_t *end, size_t *len)
{
	const uint8_t *start = *p;
	uint64_t v;

	if (codec_wire_varint(p, end, &v) < 0 || *p - start > 5 || v > (uint64_t)(end - *p))
		return -1;
	*len = (size_t)v;
	return 0;
}

static bool has_nul(const uint8_t *s, size_t len)
{
	return len && memchr(s, 0, len) != NULL;
}

static int parse_message(struct occ_state *st, const struct message *m, const uint8_t *p,
			 const uint8_t *end, uint32_t *seen_out);

/* Converts one field's value; val/len are a length-delimited value, v any other. */
static int convert(struct occ_state *st, const struct field *f, uint64_t v, const uint8_t *val,
		   size_t len)
{
	uint8_t *dst = st->base + f->off;
	uint32_t u32 = (uint32_t)v;
	int32_t s32;
	uint16_t u16;
	uint8_t u8;
	bool b;

	if (wire_type[f->kind] == 2) {
		if (f->kind == K_ERROR)
			return parse_message(st, &error_msg, val, val + len, NULL);
		if (f->kind == K_CONTEXT)
			return parse_message(st, &context_msg, val, val + len, NULL);
		if (f->kind == K_DATA) {
			st->observer = f->arg;
			return parse_message(st, &data_msgs[f->arg], val, val + len, NULL);
		}
		if (has_nul(val, len))
			return -1; /* copy_str would cut it short */
		st->mem += len + 1;
	} else if (wire_type[f->kind] == 0 && f->kind != K_U64 && f->kind != K_BOOL &&
		   v > UINT32_MAX) {
		return -1; /* protobuf-c would keep the low 32 bits */
	}
	switch (f->kind) {
	case K_U32:
		memcpy(dst, &u32, sizeof(u32));
		return 0;
	case K_S32:
		s32 = (int32_t)((u32 >> 1) ^ (0u - (u32 & 1)));
		memcpy(dst, &s32, sizeof(s32));
		return 0;
	case K_U64:
	case K_FIX64:
		memcpy(dst, &v, sizeof(v));
		return 0;
	case K_BOOL:
		b = v != 0;
		memcpy(dst, &b, sizeof(b));
		return 0;
	case K_PORT:
		if (v > UINT16_MAX)
			return -1;
		u16 = (uint16_t)v;
		memcpy(dst, &u16, sizeof(u16));
		return 0;
	case K_FAMILY:
		if (v != 0 && v != 4 && v != 6)
			return -1;
		u8 = (uint8_t)v;
		memcpy(dst, &u8, sizeof(u8));
		return 0;
	case K_ENUM:
		if (v < 1 || v > f->arg)
			return -1;
		s32 = (int32_t)v - 1;
		memcpy(dst, &s32, sizeof(s32));
		return 0;
	case K_STR:
		if (len >= f->size)
			return -1;
		memcpy(dst, val, len); /* the rest is already zero */
		return 0;
	case K_SOURCE:
		return len == 0 || (len == sizeof(OCC_SOURCE) - 1 && !memcmp(val, OCC_SOURCE, len))
			   ? 0
			   : -1;
	case K_VERSION:
		return len == 0 || (len >= 2 && val[0] == '1' && val[1] == '.') ? 0 : -1;
	case K_CODE:
		st->code = val;
		st->code_len = len;
		return 0;
	default:
		return -1;
	}
}

/*
 * Parses one message of table m from p[0..end) into st. Every field must be known, arrive
 * with its wire type and appear once (one member for the data oneof). Returns 0 and the
 * fields seen (a bit per field number) in *seen_out (may be NULL), or -1.
 */
static int parse_message(struct occ_state *st, const struct message *m, const uint8_t *p,
			 const uint8_t *end, uint32_t *seen_out)
{
	uint32_t seen = 0;

	st->mem += m->pb_size;
	while (p < end) {
		const uint8_t *val = NULL;
		const struct field *f;
		uint32_t key = *p++, bit;
		size_t len = 0;
		uint64_t v = 0;

		if (key & 0x80) { /* field numbers 16..23: a two-byte key */
			if (p == end || (*p & 0x80))
				return -1;
			key = (key & 0x7f) | (uint32_t)*p++ << 7;
		}
		if ((key >> 3) >= m->n_fields)
			return -1;
		f = &m->fields[key >> 3];
		if (f->kind == K_NONE || (key & 7) != wire_type[f->kind])
			return -1;
		bit = f->kind == K_DATA ? SEEN_DATA : 1u << (key >> 3);
		if (seen & bit)
			return -1;
		seen |= bit;
		switch (key & 7) {
		case 0:
			if (read_varint(&p, end, &v) < 0)
				return -1;
			break;
		case 1:
			if (end - p < 8)
				return -1;
			memcpy(&v, p, 8); /* little-endian host, as protobuf-c assumes */
			p += 8;
			break;
		default:
			if (read_len(&p, end, &len) < 0)
				return -1;
			val = p;
			p += len;
			break;
		}
		if (convert(st, f, v, val, len) < 0)
			return -1;
	}
	if (seen_out)
		*seen_out = seen;
	return 0;
}

/* One Occurrence (its bytes p[0..end)) into *occ, with occ_from_proto's checks. */
static int decode_occurrence(struct occ_state *st, struct tapio_occurrence *occ, const uint8_t *p,
			     const uint8_t *end)
{
	const char *code;
	uint32_t seen;

	memset(occ, 0, sizeof(*occ));
	st->base = (uint8_t *)occ;
	st->observer = -1;
	st->code = NULL;
	st->code_len = 0;
	if (parse_message(st, &occurrence_msg, p, end, &seen) < 0)
		return -1;
	/* type, severity and outcome 0 (unspecified) are refused */
	if ((seen & SEEN_ENUMS) != SEEN_ENUMS)
		return -1;
	if (st->observer != (int)tapio_catalogue[occ->type].observer)
		return -1;
	code = tapio_catalogue[occ->type].error_code;
	if (st->code_len && (st->code_len != strlen(code) || memcmp(st->code, code, st->code_len)))
		return -1;
	return 0;
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

int occ_wire_batch_decode(struct occ_wire_batch *b, size_t budget, struct tapio_occurrence *occ,
			  const uint8_t **wire, size_t *wire_len)
{
	const uint8_t *p = b->body, *end = b->body + b->body_len;
	struct occ_state st = {0};
	size_t i = 0, members = 0;

	st.mem = sizeof(Tapio__V1__Frame) + sizeof(Tapio__V1__EventBatch);
	if (b->n)
		st.mem += b->n * sizeof(Tapio__V1__Occurrence *);
	while (p < end) {
		uint8_t key = *p++;
		uint64_t v;
		size_t n;

		members++;
		if (key != (3 << 3 | 2)) {
			if (read_varint(&p, end, &v) < 0) /* scanned already: cannot fail */
				return -1;
			continue;
		}
		if (read_len(&p, end, &n) < 0 || i == b->n ||
		    decode_occurrence(&st, &occ[i], p, p + n) < 0)
			return -1;
		wire[i] = p;
		wire_len[i] = n;
		i++;
		p += n;
		if (st.mem > budget)
			return -1;
	}
	st.mem += slab_bytes(members);
	if (i != b->n || st.mem > budget)
		return -1;
	b->unpack_bytes = st.mem;
	return 0;
}
