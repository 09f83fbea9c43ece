/*
 * The controller's embedded store (SPEC §6): a directory of append-only segment files with
 * per-record length + CRC, group commit, rotation by size and age, retention by bytes and
 * age, a small index per sealed segment, crash recovery and batch dedupe across restarts.
 * Records are opaque bytes plus the metadata the store indexes (struct store_record_meta).
 * On-disk format: docs/storage-format.md.
 *
 * Threading: every function is called from one thread (the controller's loop thread). The
 * only work done elsewhere is the write + fsync of store_commit_async(), which runs in the
 * libuv thread pool; the store synchronises that internally.
 */
#ifndef TAPIO_CONTROLLER_STORE_H
#define TAPIO_CONTROLLER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "segment.h"

enum store_fsync {
	STORE_FSYNC_ALWAYS = 0, /* fdatasync at every commit: acknowledged = on disk (default) */
	STORE_FSYNC_INTERVAL,	/* at most one fdatasync per fsync_interval_ms; a commit is
				   durable against process crashes, not power loss, in between */
	STORE_FSYNC_NEVER,	/* never fsync (tests, benchmarks, throwaway data) */
};

struct store_options {
	const char *dir;	    /* created if missing (parent must exist) */
	uint64_t segment_max_bytes; /* 0 → 64 MiB: seal at the first commit past this size */
	uint64_t segment_max_age_s; /* 0 → 3600: seal at the first commit/maintain past this */
	uint64_t retention_bytes;   /* 0 → 10 GiB of segment files */
	uint64_t retention_age_s;   /* 0 → 7 days, judged by a segment's newest record */
	enum store_fsync fsync;
	uint32_t fsync_interval_ms; /* STORE_FSYNC_INTERVAL only; 0 → 1000 */
	uint32_t sparse_every;	    /* records per sparse index block; 0 → 4096 */
	/*
	 * Page cache kept for the newest bytes of the store; older segment pages are dropped
	 * (POSIX_FADV_DONTNEED) once durable. 0 → 256 MiB; STORE_CACHE_KEEP_ALL → never dropped.
	 */
	uint64_t cache_keep_bytes;
	/*
	 * Write commit groups through the page cache instead of with direct I/O (O_DIRECT, the
	 * default where the file system allows it: no page-cache copy, no pages to hand back).
	 */
	bool buffered_writes;
	/* wall clock in UTC ns (segment ages, retention); NULL → clock_wall_ns() */
	uint64_t (*now_ns)(void *clock_ctx);
	void *clock_ctx;
};

#define STORE_CACHE_KEEP_ALL UINT64_MAX

/* Fills *o with the defaults above (dir = NULL). */
void store_options_defaults(struct store_options *o);

struct store;

/*
 * Opens (creating if needed) the store in o->dir and recovers it: the active segment's torn
 * or corrupt tail (and any half-written batch) is truncated and logged, missing or corrupt
 * sealed-segment indexes are rebuilt by scanning, the dedupe watermarks are rebuilt from the
 * indexes, retention is applied. Takes an exclusive flock on <dir>/LOCK.
 * Returns 0 and *out (free with store_close), or -errno (-EBUSY: another process has it,
 * -EBADMSG: an unreadable segment header or node table).
 */
int store_open(const struct store_options *o, struct store **out);

/*
 * Closes the store. Appends not yet committed are discarded (commit first for a clean
 * shutdown). Returns 0, or -EBUSY (and closes nothing) while a store_commit_async() is in
 * flight: let the loop run its callback first. NULL-safe.
 */
int store_close(struct store *s);

/*
 * Interns a node name (1..255 bytes) and returns its id in *id; the table is persisted
 * (atomically, before the records that use it) at the next commit. Returns 0, -EINVAL or
 * -ENOMEM.
 */
int store_node_intern(struct store *s, const char *name, uint32_t *id);
/* Looks a node name up without interning it: true and *id when known. */
bool store_node_find(const struct store *s, const char *name, uint32_t *id);
/* Name for an id, or NULL when unknown. Owned by the store, valid until store_close. */
const char *store_node_name(const struct store *s, uint32_t id);
/* Number of interned node names (ids are 0 .. count-1). */
uint32_t store_node_count(const struct store *s);

/*
 * Appends one batch of n records (records i: meta[i], rec[i], len[i]) to the pending group;
 * nothing is durable until a commit. All records of a batch become durable together or not
 * at all. Records should share the batch identity (agent_key, session_id, sequence); the
 * batch's sequence raises that session's dedupe watermark at once.
 * Returns 0, -EINVAL (n == 0, type/severity out of range, record too large, batch over
 * 4 GiB), -ENOMEM, or the
 * sticky error of an earlier failed commit.
 */
int store_append_batch(struct store *s, const struct store_record_meta *meta,
		       const void *const *rec, const size_t *len, size_t n);

/*
 * Tickets: every successful store_append_batch() gets the next ticket number (1, 2, …,
 * restarting at 1 with each store_open). A batch is durable once store_durable_ticket() >=
 * its ticket. store_appended_ticket() right after an append is that batch's ticket.
 */
uint64_t store_appended_ticket(const struct store *s);
uint64_t store_durable_ticket(const struct store *s);

/*
 * Group commit: writes everything appended so far, fsyncs per policy, then seals the active
 * segment if it is over its size/age limit and applies retention. Returns 0 (every appended
 * ticket is durable) or -errno. A write or fsync failure is sticky: later appends and commits
 * return it (the page cache state is unknown after a failed fsync); reopen to recover.
 * -EBUSY while a store_commit_async() is in flight.
 */
int store_commit(struct store *s);

/*
 * cb(s, status, durable_ticket, ctx): status 0 and every batch with ticket <= durable_ticket
 * is durable, or -errno (sticky failure).
 */
typedef void (*store_commit_cb)(struct store *s, int status, uint64_t durable_ticket, void *ctx);

/*
 * Asynchronous group commit on `loop`: the write + fsync (+ rotation/retention) run in the
 * thread pool. At most one commit is in flight; a request made while one runs joins the next
 * group, which starts as soon as the current one finishes (appends made meanwhile go there).
 * cb is always called later from the loop, never from inside this call. Returns 0, or the
 * sticky error (cb is then not called).
 */
int store_commit_async(struct store *s, uv_loop_t *loop, store_commit_cb cb, void *ctx);

/* True while an asynchronous commit is in flight. */
bool store_commit_busy(const struct store *s);

/*
 * Dedupe: true when batch (agent_key, session_id, sequence) was already appended (in this
 * process) or is durable (from any earlier run, within retention), i.e. sequence is at or
 * below that session's watermark.
 */
bool store_batch_seen(const struct store *s, uint64_t agent_key, uint64_t session_id,
		      uint64_t sequence);
/*
 * Highest durable sequence of a session (what to Ack after a reconnect). Returns true and
 * *seq when the session has durable data.
 */
bool store_session_durable(const struct store *s, uint64_t agent_key, uint64_t session_id,
			   uint64_t *seq);

/*
 * Applies age-based rotation and retention without a commit, and under STORE_FSYNC_INTERVAL
 * fsyncs data still waiting for it (call from a timer, e.g. every second, so an idle store
 * still ages out and syncs). Returns 0, -EBUSY while an async commit is in flight, or -errno
 * (sticky, like a failed commit).
 */
int store_maintain(struct store *s);

/* A stable position of a record: segment id + byte offset of its record in that segment. */
struct store_pos {
	uint64_t segment_id;
	uint64_t offset;
};

enum store_order { STORE_OLDEST_FIRST = 0, STORE_NEWEST_FIRST };

struct store_query {
	uint64_t since_ns;	/* inclusive */
	uint64_t until_ns;	/* exclusive; 0 → no upper bound */
	uint32_t type_mask;	/* bit (1 << type); 0 → all types */
	uint32_t severity_mask; /* bit (1 << severity); 0 → all */
	int64_t node_id;	/* < 0 → any node */
	enum store_order order; /* storage (arrival) order or its reverse */
	size_t limit;		/* 0 → no limit */
	bool has_cursor;	/* continue strictly after (oldest-first) / before (newest-first) */
	struct store_pos cursor;
	bool meta_only; /* cb gets data = NULL, len = 0 (payloads not read or checked) */
	/*
	 * Bound on the work of one call: records examined (a record header read from a
	 * segment, or a posting-list entry checked in memory). 0 → no bound. When reached the
	 * scan stops and store_scan_bounded() says where to resume.
	 */
	uint64_t max_examined;
};

/* Fills *q with: everything, oldest first, no limit, no cursor, node_id = -1. */
void store_query_init(struct store_query *q);

/* Return non-zero to stop the scan. data is valid only during the call. */
typedef int (*store_scan_cb)(void *ctx, const struct store_record_meta *m, const void *data,
			     size_t len, struct store_pos pos);

/*
 * Calls cb for every durable record matching q, in q->order, skipping segments and sparse
 * blocks whose index rules them out. cb may call store_stats and the loop-thread getters
 * (store_batch_seen, store_node_name, …), but not store_scan/commit/maintain/close.
 * Returns the number of records delivered (>= 0) or -errno.
 */
long store_scan(struct store *s, const struct store_query *q, store_scan_cb cb, void *ctx);

struct store_scan_info {
	uint64_t examined; /* record headers read + posting entries checked by this call */
	bool truncated;	   /* stopped by q->max_examined before the end of the data */
	/*
	 * truncated: the position to pass as q->cursor to continue (everything before it in
	 * scan order has been examined; it is not necessarily a delivered record).
	 */
	struct store_pos resume;
};

/*
 * store_scan that also fills *info (which may be NULL). With a node filter, a segment's
 * posting list for that node is walked instead of its records, so only records whose node,
 * type, severity and sparse block time range match are read.
 */
long store_scan_bounded(struct store *s, const struct store_query *q, store_scan_cb cb, void *ctx,
			struct store_scan_info *info);

/*
 * Position of the newest durable record (the last one in storage order): what a
 * newest-first scan would deliver first, without scanning. Returns true and *pos, or false
 * when the store holds no record. Loop thread.
 */
bool store_last_pos(struct store *s, struct store_pos *pos);

struct store_stats {
	uint64_t segments;		     /* including the active one */
	uint64_t bytes;			     /* durable bytes of all segment files */
	uint64_t records;		     /* durable records */
	uint64_t oldest_ts_ns, newest_ts_ns; /* 0 when empty */
	uint64_t commits;
	uint64_t fsyncs;
	uint64_t rotations;
	uint64_t recovery_truncations; /* segments whose tail was cut at open */
	uint64_t recovery_truncated_bytes;
	uint64_t index_rebuilds;	/* sealed indexes rebuilt at open */
	uint64_t index_writes;		/* index files of sealed segments written (sealer) */
	uint64_t deleted_segments;	/* by retention */
	uint64_t pending_bytes;		/* appended, not yet committed */
	uint64_t corrupt_reads;		/* records that failed their CRC during a scan */
	uint64_t scan_segments_skipped; /* segments a scan ruled out by their index */
	uint64_t scan_blocks_skipped;	/* sparse blocks a scan ruled out by time range */
	uint64_t scan_records_read;	/* record headers scans read from segment files */
	uint64_t scan_postings_checked; /* posting-list entries node-filtered scans checked */
	uint64_t scan_truncated;	/* scans stopped by store_query.max_examined */
	uint64_t active_segment_id;
	bool direct_io; /* commit groups written with O_DIRECT (false: through the page cache) */
};

/* Fills *st. Never fails. */
void store_stats(struct store *s, struct store_stats *st);

/*
 * Copy of a segment's index (active or sealed) for inspection; caller seg_index_fini()s it.
 * Returns 0, -ENOENT (no such segment) or -ENOMEM.
 */
int store_segment_index(struct store *s, uint64_t segment_id, struct seg_index *out);
/*
 * Waits until the index file of every sealed segment is written (the sealer thread writes
 * them in the background; store_close waits too). For readers of the .idx files of an open
 * store (tests, tools).
 */
void store_index_files_wait(struct store *s);
/* Ids of retained segments, oldest first, into ids[max]; returns how many exist. */
size_t store_segment_ids(struct store *s, uint64_t *ids, size_t max);

#endif
