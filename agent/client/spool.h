/*
 * The agent's on-disk spool of sealed event batches (docs/agent-controller.md). A directory:
 *
 *   session              8-byte session id + CRC (written .tmp, fsync, rename, fsync dir)
 *   acked                8-byte "acked up to" sequence + CRC (same procedure)
 *   seg-<first seq>.spool segment files of records, oldest first
 *
 * One record = 24-byte header (u32 payload length, u32 CRC-32 of everything after it,
 * u64 sequence, u32 occurrence count, u32 reserved) + payload (the encoded wire frame of the
 * batch), little-endian. Recovery truncates a torn or corrupt tail and logs what it cut.
 *
 * Every function here does blocking file I/O: the client calls them from libuv's threadpool
 * (one job at a time), or before its loop runs. A struct spool is not thread-safe.
 */
#ifndef TAPIO_SPOOL_H
#define TAPIO_SPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SPOOL_RECORD_HEADER	24u
#define SPOOL_MAX_RECORD	(64u << 20) /* refuse larger payload lengths at recovery */
#define SPOOL_DEFAULT_MAX_BYTES (256ull << 20)
#define SPOOL_DEFAULT_SEGMENT	(4ull << 20)
#define SPOOL_SESSION_FILE	"session"
#define SPOOL_ACKED_FILE	"acked"

/* One record as recovery or a read sees it. */
struct spool_record {
	uint64_t seq;
	uint32_t count; /* occurrences in the batch */
	uint32_t len;	/* payload bytes */
};

/* What recovering one segment file found (spool_scan_file). */
struct spool_scan {
	struct spool_record *records; /* valid records in file order (malloc'd, caller frees) */
	size_t nrecords;
	uint64_t valid_bytes; /* length of the valid prefix */
	uint64_t file_bytes;  /* length before truncation */
	int corrupt;	      /* 1 when the tail was cut because of a bad length or CRC */
};

/*
 * Reads the segment at `path` and fills *scan with its valid prefix: a record is valid when
 * its header is complete, its length <= SPOOL_MAX_RECORD, its payload complete and its CRC
 * matches. With truncate != 0 the file is cut to valid_bytes (and fsynced) when longer.
 * Returns 0 or -errno (scan->records is NULL on failure).
 */
int spool_scan_file(const char *path, int truncate, struct spool_scan *scan);

/* Encodes a record header for payload[0..len) into hdr. Pure. */
void spool_record_header(uint8_t hdr[SPOOL_RECORD_HEADER], uint64_t seq, uint32_t count,
			 const uint8_t *payload, uint32_t len);

/* Writes 8 bytes + CRC atomically as dir/name (.tmp, fsync, rename, fsync dir). 0 / -errno. */
int spool_write_u64_file(const char *dir, const char *name, uint64_t value);
/* Reads such a file. Returns 0, -ENOENT when absent, -EBADMSG when corrupt, or -errno. */
int spool_read_u64_file(const char *dir, const char *name, uint64_t *value);

struct spool_options {
	const char *dir;	/* created (one level) when missing */
	uint64_t max_bytes;	/* bound of all segment bytes; 0 = SPOOL_DEFAULT_MAX_BYTES */
	uint64_t segment_bytes; /* rotate past this size; 0 = min(4 MiB, max_bytes / 8) */
	int fsync;		/* fdatasync after each spool_append_batch call */
};

/* Batches that fell out of the spool because of the byte bound (oldest first). */
struct spool_evicted {
	uint64_t batches;
	uint64_t occurrences; /* only records above the acked marker count */
	uint64_t hi_seq;      /* highest evicted sequence, 0 = none */
};

struct spool;

/*
 * Opens (creating) the spool directory and recovers it: reads or creates the session id,
 * reads the acked marker, scans every segment (cutting torn tails, logging them), deletes
 * segments whose batches are all acked. Returns 0 and *out, or -errno with a message in err.
 */
int spool_open(const struct spool_options *o, struct spool **out, char *err, size_t errlen);
/* Flushes and closes. NULL-safe. */
void spool_close(struct spool *s);

uint64_t spool_session_id(const struct spool *s);
uint64_t spool_acked(const struct spool *s);
/* Highest sequence ever written (recovered or appended), 0 when none. */
uint64_t spool_last_seq(const struct spool *s);
/* Bytes of all segments. */
uint64_t spool_bytes(const struct spool *s);
/* Bytes cut from torn tails during recovery. */
uint64_t spool_repaired_bytes(const struct spool *s);

/*
 * The unacknowledged records recovered at open (seq > acked), oldest first. Valid until the
 * next call that changes the spool.
 */
const struct spool_record *spool_recovered(const struct spool *s, size_t *n);

/*
 * Appends one batch (sequence must be above every sequence in the spool). Rotates the
 * segment when it is full, then drops oldest segments while the total is over max_bytes
 * (never the segment just written), accumulating into *ev. Returns 0 or -errno (the record is
 * then not in the spool).
 */
int spool_append(struct spool *s, uint64_t seq, uint32_t count, const uint8_t *payload,
		 uint32_t len, struct spool_evicted *ev);
/* fdatasync of the current segment when the spool was opened with fsync. 0 or -errno. */
int spool_sync(struct spool *s);

/*
 * Records that everything up to seq is acknowledged: rewrites the acked marker and deletes
 * segments holding only acknowledged batches. Returns 0 or -errno.
 */
int spool_ack(struct spool *s, uint64_t seq);

/*
 * Reads records with from_seq <= seq <= to_seq in order, stopping after max_bytes of payload
 * (at least one record is read). Calls fn(arg, record, payload) for each; the payload is only
 * valid during the call. Returns the number of records read or -errno.
 */
typedef void (*spool_read_fn)(void *arg, const struct spool_record *rec, const uint8_t *payload);
ssize_t spool_read(struct spool *s, uint64_t from_seq, uint64_t to_seq, size_t max_bytes,
		   spool_read_fn fn, void *arg);

#endif
