/*
 * One segment file of the controller store: its header, its records ([u32 length][u32 crc]
 * [20-byte meta][24-byte batch identity on the first record of a batch][payload]; format 1,
 * still read, had a 40-byte meta with the identity on every record), and the per-segment index (time range, counts, sessions, sparse
 * blocks, per-node posting lists). Byte-by-byte layout: docs/storage-format.md. Knows nothing about directories of
 * segments, commits or threads; controller/store.c does.
 */
#ifndef TAPIO_CONTROLLER_SEGMENT_H
#define TAPIO_CONTROLLER_SEGMENT_H

#include <endian.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/occurrence.h"

#define SEG_VERSION	   2u /* segments written; format 1 is still read */
#define SEG_HEADER_SIZE	   64u
#define SEG_REC_PREFIX	   8u  /* u32 length + u32 crc */
#define SEG_META_SIZE	   20u /* fixed meta: ts, type, severity, flags, 0, node_id, batch_back */
#define SEG_IDENT_SIZE	   24u /* agent_key, session_id, sequence (SEG_FLAG_IDENT records) */
#define SEG_META_SIZE_V1   40u /* format 1: the meta with the identity, on every record */
#define SEG_REC_OVERHEAD   (SEG_REC_PREFIX + SEG_META_SIZE)
#define SEG_REC_MAX_LEN	   (16u << 20) /* max meta + payload of one record */
#define SEG_FLAG_BATCH_END 0x01u       /* last record of one store_append_batch() call */
#define SEG_FLAG_IDENT	   0x02u       /* the record carries its batch identity (see below) */
#define SEG_SPARSE_EVERY   4096u       /* default records per sparse index block */
#define SEG_IDX_VERSION	   2u	       /* .idx format: 2 added the per-node posting lists */
#define SEG_IDX_POSTINGS   0x01u       /* .idx flags: posting lists present */

/* What the store indexes about a record; the payload itself is opaque bytes. */
struct store_record_meta {
	uint64_t timestamp_ns; /* UTC ns of the occurrence */
	uint8_t type;	       /* enum tapio_occ_type, < TAPIO_OCC__COUNT */
	uint8_t severity;      /* enum tapio_severity, < TAPIO_SEV__COUNT */
	uint32_t node_id;      /* from store_node_intern() */
	uint64_t agent_key;    /* batch identity (dedupe): agent, session, sequence */
	uint64_t session_id;
	uint64_t sequence;
};

/* Little-endian helpers (the on-disk byte order). */
/* Inline: every record's prefix and meta go through these on the ingest and query paths. */
static inline void seg_put_u32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
}

static inline void seg_put_u64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, sizeof(v));
}

static inline uint32_t seg_get_u32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static inline uint64_t seg_get_u64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}
/* CRC-32 (IEEE, the same value as zlib's crc32; computed by libdeflate) of len bytes. */
uint32_t seg_crc32(const void *buf, size_t len);

/* Segment file name for an id: "seg-%020llu.tseg" / ".idx". buf needs 40 bytes. */
void seg_file_name(char *buf, size_t len, uint64_t id, const char *ext);

void seg_header_encode(uint8_t out[SEG_HEADER_SIZE], uint64_t segment_id, uint64_t created_ns);
/* Returns 0 and the fields (version 1 or 2), or -EBADMSG (bad magic, version or checksum). */
int seg_header_decode(const uint8_t in[SEG_HEADER_SIZE], uint64_t *segment_id, uint64_t *created_ns,
		      uint32_t *version);

/*
 * On-disk size (format 2) of a record carrying `payload_len` bytes, with its batch identity
 * when ident (SEG_FLAG_IDENT).
 */
static inline size_t seg_record_size(size_t payload_len, bool ident)
{
	return SEG_REC_OVERHEAD + (ident ? SEG_IDENT_SIZE : 0) + payload_len;
}

/*
 * Writes one format-2 record (seg_record_size(len, flags & SEG_FLAG_IDENT) bytes) to out.
 * The batch identity of m is written only with SEG_FLAG_IDENT; back is the distance in bytes
 * back to the record of this batch that carries it (0 for that record itself). Never fails.
 */
void seg_record_encode(uint8_t *out, const struct store_record_meta *m, uint8_t flags,
		       uint32_t back, const void *payload, size_t len);
/*
 * The same in two steps, so the CRC can be computed off the event loop: _nocrc writes the
 * record with a zero CRC, seg_record_set_crc(rec) fills it in (before the record is written).
 */
void seg_record_encode_nocrc(uint8_t *out, const struct store_record_meta *m, uint8_t flags,
			     uint32_t back, const void *payload, size_t len);
void seg_record_set_crc(uint8_t *rec);

/* A record's header, decoded (seg_head_decode). */
struct seg_head {
	uint32_t len;	   /* bytes after the prefix: meta (+ identity) + payload */
	uint32_t crc;	   /* of those bytes */
	uint32_t meta_len; /* bytes before the payload (prefix not counted) */
	uint32_t back;	   /* distance back to the record carrying the identity (0: this one) */
	uint8_t flags;	   /* SEG_FLAG_*; SEG_FLAG_IDENT set on every format-1 record */
	/* identity zero unless flags has SEG_FLAG_IDENT (seg_head_identity copies it in) */
	struct store_record_meta m;
};

/* Bytes of a record's start that seg_head_decode needs (prefix + meta, identity included). */
static inline size_t seg_head_need(uint32_t version, uint8_t flags)
{
	if (version == 1)
		return SEG_REC_PREFIX + SEG_META_SIZE_V1;
	return SEG_REC_OVERHEAD + (flags & SEG_FLAG_IDENT ? SEG_IDENT_SIZE : 0);
}

/*
 * Decodes the header of a record of a format-`version` segment from p, of which `avail`
 * bytes are readable: first call with at least SEG_REC_OVERHEAD bytes; when it returns a
 * larger need (seg_head_need), call again with that many. Returns 0, that need (> avail), or
 * -1 when the record's length cannot hold its meta (or exceeds SEG_REC_MAX_LEN).
 */
int seg_head_decode(const uint8_t *p, size_t avail, uint32_t version, struct seg_head *h);

enum seg_check {
	SEG_REC_OK = 0,
	SEG_REC_SHORT_PREFIX, /* fewer than 8 bytes left */
	SEG_REC_BAD_LENGTH,   /* length shorter than the meta or past SEG_REC_MAX_LEN */
	SEG_REC_SHORT,	      /* record runs past the end of the data */
	SEG_REC_BAD_CRC,
	SEG_REC_BAD_META,	  /* type or severity out of range, or a bad batch identity link */
	SEG_REC_INCOMPLETE_BATCH, /* valid records, but their batch's last record is missing */
};
const char *seg_check_name(enum seg_check c);

/*
 * One node's records in a segment. Posting lists: post_off[i] is the file offset of the
 * node's i-th record (ascending), post_ts[i] its (type << 4) | severity, so a node filter
 * finds its records, with type and severity, without reading the segment.
 */
struct seg_node_count {
	uint32_t node_id;
	uint64_t count;
	uint32_t *post_off; /* count entries while the index has postings, else NULL */
	uint8_t *post_ts;
	size_t cap_post;
};

static inline uint8_t seg_post_pack(uint8_t type, uint8_t severity)
{
	return (uint8_t)((type << 4) | (severity & 0x0f));
}

struct seg_session {
	uint64_t agent_key;
	uint64_t session_id;
	uint64_t max_sequence;
};

/* One sparse block: records [k * sparse_every, (k + 1) * sparse_every) start at offset. */
struct seg_sparse {
	uint64_t offset;
	uint64_t min_ts;
	uint64_t max_ts;
};

/*
 * In-memory index of one segment; the same structure describes the active segment (kept up
 * to date at each commit) and a sealed one (loaded from its .idx file).
 */
struct seg_index {
	uint64_t segment_id;
	uint64_t created_ns;
	uint64_t file_size; /* end of the last record */
	uint64_t records;
	uint64_t min_ts; /* UINT64_MAX / 0 while empty */
	uint64_t max_ts;
	uint64_t by_type[TAPIO_OCC__COUNT];
	uint64_t by_severity[TAPIO_SEV__COUNT];
	uint32_t sparse_every;
	/*
	 * Posting lists kept (offsets fit in u32). Cleared for good, and the lists freed, when
	 * a record starts past 4 GiB; scans then fall back to the sparse blocks.
	 */
	bool has_postings;
	struct seg_node_count *nodes; /* sorted by node_id */
	size_t n_nodes, cap_nodes;
	struct seg_session *sessions; /* sorted by (agent_key, session_id) */
	size_t n_sessions, cap_sessions;
	struct seg_sparse *sparse;
	size_t n_sparse, cap_sparse;
	/* nodes[] and sessions[] entries of the last record added (a lookup hint, checked) */
	size_t hint_node, hint_session;
};

void seg_index_init(struct seg_index *idx, uint64_t segment_id, uint64_t created_ns,
		    uint32_t sparse_every);
void seg_index_fini(struct seg_index *idx);
/* Accounts one record at `offset` of `size` bytes. Returns 0 or -ENOMEM. */
int seg_index_add(struct seg_index *idx, const struct store_record_meta *m, uint64_t offset,
		  uint64_t size);
/* Count of records for node_id in this segment (0 when none). */
uint64_t seg_index_node_count(const struct seg_index *idx, uint32_t node_id);
/* The entry of node_id (with its posting list), or NULL when the node has no records here. */
const struct seg_node_count *seg_index_node(const struct seg_index *idx, uint32_t node_id);
/* Deep copy of src into *dst (posting lists included). Returns 0 or -ENOMEM. */
int seg_index_copy(const struct seg_index *src, struct seg_index *dst);
/*
 * Whether a record with ts in [since, until), type in type_mask (bit per type; 0 = all),
 * severity in sev_mask (0 = all) and node_id (< 0 = any) may be in this segment.
 */
bool seg_index_may_match(const struct seg_index *idx, uint64_t since, uint64_t until,
			 uint32_t type_mask, uint32_t sev_mask, int64_t node_id);

/*
 * Serialises the index into a malloc'd buffer (*out, *len; caller frees). Returns 0 or
 * -ENOMEM.
 */
int seg_index_encode(const struct seg_index *idx, uint8_t **out, size_t *len);
/* Parses an index file image into *idx (initialised here). Returns 0, -EBADMSG or -ENOMEM. */
int seg_index_decode(const uint8_t *buf, size_t len, struct seg_index *idx);

/*
 * Writes `name` in dirfd atomically: name.tmp, write, fsync (if sync), rename, fsync the
 * directory (if sync). Returns 0 or -errno; on failure the tmp file is removed.
 */
int seg_write_file_atomic(int dirfd, const char *name, const void *buf, size_t len, bool sync);
/* Reads a whole file (at most max bytes) into a malloc'd buffer. Returns 0 or -errno. */
int seg_read_file(int dirfd, const char *name, size_t max, uint8_t **out, size_t *len);

/*
 * Read-only shared mapping of the first `len` bytes of fd (len > 0; it may run past the end
 * of the file, which is only safe as long as nothing past the file's end is touched: an
 * access beyond EOF raises SIGBUS). The mapping outlives fd. Returns 0 and *out, or -errno.
 */
int seg_map(int fd, size_t len, const uint8_t **out);
/* Unmaps what seg_map returned (same len). NULL-safe. */
void seg_unmap(const uint8_t *map, size_t len);

/*
 * Reader over [0, end) of a segment. Mapped (seg_reader_init_map): a read is a pointer into
 * the mapping, nothing is copied. Otherwise (seg_reader_init): buffered preads, cap bytes per
 * refill, so sequential scans read in large chunks instead of one syscall per record.
 */
struct seg_reader {
	int fd;
	const uint8_t *map; /* non-NULL: [0, end) is mapped and readable */
	uint64_t end;
	uint8_t *buf;
	size_t cap;
	uint64_t buf_off;
	size_t buf_len;
};
int seg_reader_init(struct seg_reader *r, int fd, uint64_t end, size_t cap);
/* Reader over a mapping (from seg_map) of at least end bytes. Never fails. */
void seg_reader_init_map(struct seg_reader *r, const uint8_t *map, uint64_t end);
void seg_reader_fini(struct seg_reader *r);
/* The pread half of seg_reader_get (a refill); call seg_reader_get. */
int seg_reader_fill(struct seg_reader *r, uint64_t off, size_t len, bool backward,
		    const uint8_t **p);

/*
 * Points *p at len bytes at file offset off (valid until the next call, or as long as the
 * mapping for a mapped reader). backward = true positions a refill window so that it ends at
 * off + len (for reverse scans). Returns 0, -ENODATA when [off, off + len) passes end, or
 * -errno. Inline: scans call it once or twice per record.
 */
static inline int seg_reader_get(struct seg_reader *r, uint64_t off, size_t len, bool backward,
				 const uint8_t **p)
{
	if (off > r->end || len > r->end - off)
		return -ENODATA;
	if (r->map) {
		*p = r->map + off;
		return 0;
	}
	if (off >= r->buf_off && off + len <= r->buf_off + r->buf_len) {
		*p = r->buf + (off - r->buf_off);
		return 0;
	}
	return seg_reader_fill(r, off, len, backward, p);
}

/*
 * Validates every record of a segment from SEG_HEADER_SIZE to file_size, building *idx
 * (initialised by the caller) over the valid prefix that ends with a complete batch.
 * Returns 0 and *good_end (where valid data ends; == file_size when nothing is wrong) and
 * *why (the first problem found, SEG_REC_OK when none), or -errno on I/O failure.
 */
int seg_recover_scan(int fd, uint32_t version, uint64_t file_size, struct seg_index *idx,
		     uint64_t *good_end, enum seg_check *why);

#endif
