/*
 * The store owns a directory of segments: recovery at open, group commit (sync or in the
 * libuv thread pool), rotation, retention, the node-name table, dedupe watermarks and scans.
 *
 * Threads: the loop thread owns the pending group, node table and session watermarks. A
 * commit (store_commit, or the pool worker of store_commit_async) owns the active segment's
 * fd and write offset and is the only mutator of the segment list; it publishes index
 * updates, rotations and deletions under `lock`, which scans and stats also hold.
 */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"

#define TAG "store"

#define NODES_FILE     "nodes.tbl"
#define NODES_MAX_NAME 255u
#define NS_PER_S       1000000000ull

static const char nodes_magic[8] = {'T', 'A', 'P', 'I', 'O', 'N', 'O', 'D'};
#define NODES_VERSION 1u /* nodes.tbl format (docs/storage-format.md) */

struct store_segment {
	uint64_t id;
	uint32_t version; /* segment format (segment.h): 1 or SEG_VERSION */
	bool sealed;
	uint64_t size; /* durable end of data */
	struct seg_index idx;
	/*
	 * Read-only mapping of the file for scans, made by the first scan that reads the
	 * segment (under `lock`) and unmapped when the segment is freed (retention, close).
	 * Only [0, size) is ever read through it: for the active segment map_len runs past
	 * the end of the file, so commits need no remap until size passes map_len.
	 */
	const uint8_t *map;
	size_t map_len;
	uint64_t last_off; /* offset of the last record; 0 = not known yet */
	/*
	 * Fine index (memory only, 8 B per FINE_EVERY records): fine[j] is the offset of record
	 * j * fine_every, 0 while not known. Noted by commits as they append and by every walk
	 * of a whole sparse block (the aggregate rebuild at open walks them all), so a scan
	 * starting at a cursor inside a block walks one sub-block to reach it, not the block.
	 */
	uint64_t *fine;
	size_t cap_fine;
};

struct sess_entry {
	uint64_t agent_key, session_id;
	uint64_t appended; /* highest sequence appended or durable */
	uint64_t durable;  /* highest durable sequence */
	uint8_t used, has_durable;
};

struct waiter {
	store_commit_cb cb;
	void *ctx;
};

struct waiter_list {
	struct waiter *w;
	size_t n, cap;
};

struct buf {
	uint8_t *p;
	size_t len, cap;
};

/*
 * Direct I/O (docs/storage-format.md, "Commit and durability") moves whole blocks: file
 * offsets, lengths and buffer addresses are multiples of DIO_ALIGN (the file system's block
 * size on the reference machine; also a multiple of every logical block size in use), and a
 * group is written in pieces of DIO_CHUNK.
 */
#define DIO_ALIGN 4096u
#define DIO_CHUNK (1u << 20)

/*
 * A commit group's records. For direct I/O the buffer mirrors the file's block layout: `p`
 * sits `phase` bytes past the aligned `mem`, where `phase` is the offset within its block at
 * which the group is expected to land in the segment. The bytes before `p` then take the rest
 * of that block (the segment's last partial block, already on disk), the bytes after the
 * group the padding up to the next block boundary, and the whole span is written from
 * aligned memory to aligned file offsets without a copy.
 */
struct group_buf {
	uint8_t *mem; /* huge-page aligned mapping of map_len = cap + 2 * DIO_ALIGN bytes */
	uint8_t *p;   /* mem + phase */
	size_t len, cap, phase, map_len;
};

/* A store thread (direct writer, sealer) and the lock and condition its state is under. */
struct worker {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool started, stop;
};

/* A pending record as the index update needs it. */
struct pend_rec {
	struct store_record_meta m;
	uint32_t size; /* the whole record's, prefix included */
};

struct store {
	struct store_options opt;
	char *dir;
	int dirfd;
	int lockfd;
	pthread_mutex_t lock;

	/* segment list: sorted by id, the last one is the active (unsealed) segment */
	struct store_segment **segs;
	size_t n_segs, cap_segs;
	int active_fd;
	/*
	 * Commit thread: the active segment opened with O_DIRECT (-1: writes go through the page
	 * cache, by option or because the file system refused O_DIRECT), and its last partial
	 * block's bytes, which the next group's first block repeats.
	 */
	int direct_fd;
	bool direct_refused;
	uint8_t tail_blk[DIO_ALIGN];
	/*
	 * The direct writer thread: writes the in-flight group's blocks as the commit thread
	 * releases them with their CRCs filled in, so the CRCs of the next piece are computed
	 * while the disk takes this one. Fields under dw.w.mu.
	 */
	struct {
		struct worker w;
		int fd, err;
		const uint8_t *base; /* the group's first block, written at file_off */
		uint64_t file_off;
		size_t ready, done; /* bytes released, bytes written: DIO_ALIGN multiples */
	} dw;
	/*
	 * The sealer thread: writes sealed segments' index files (encode, write, fsync, rename,
	 * directory fsync: ≈ 10 ms a segment) off the commit path. Fields under sl.w.mu.
	 */
	struct {
		struct worker w;
		struct store_segment **q; /* oldest first */
		size_t n, cap;
		struct store_segment *busy; /* q[0] while its file is being written */
	} sl;

	/*
	 * loop thread: the group being built, its session watermarks (struct sess_mark) and each
	 * record's meta and size (struct pend_rec: the index update reads these, not the records)
	 */
	struct group_buf pending;
	struct buf pending_marks, pending_recs;
	uint64_t appended_ticket;

	/* the group being committed */
	struct group_buf inflight;
	struct buf inflight_marks, inflight_recs;
	struct buf inflight_nodes; /* node table image to persist first (len 0: none) */
	uint32_t inflight_node_count;
	uint64_t inflight_ticket;
	uint64_t durable_ticket;
	int failed; /* sticky -errno after a failed write/fsync */
	uint64_t last_fsync_ns;
	bool unsynced; /* STORE_FSYNC_INTERVAL: written data waiting for its fsync */
	/*
	 * Records written and synced but not yet in the active segment's index (struct pend_rec
	 * from unindexed_pos on; they follow its `size`). The commit thread indexes them while
	 * the direct writer writes the next group; whoever needs the index first does it
	 * instead: a scan, a seal, close, or the loop when no next commit started
	 * (publish_locked). Under `lock`.
	 */
	struct buf unindexed;
	size_t unindexed_pos;
	/* the active segment's end of written records: `size` plus the unindexed records */
	uint64_t write_end;
	/* commit thread: page cache before (drop_id, drop_off) was dropped (cache_trim) */
	uint64_t drop_id, drop_off;

	/* node table (loop thread) */
	char **nodes;
	uint32_t n_nodes, cap_nodes;
	uint32_t nodes_durable;
	uint32_t *node_slots; /* open addressing: id + 1, 0 = empty */
	size_t node_slot_cap;

	/* dedupe watermarks (loop thread) */
	struct sess_entry *sess;
	size_t sess_cap, sess_used;

	/* async commit */
	uv_work_t work;
	bool in_flight;
	int work_status;
	uv_loop_t *loop;
	struct waiter_list cur_waiters, next_waiters;

	struct store_stats st; /* counters under `lock` */
};

static uint64_t now_ns(const struct store *s)
{
	return s->opt.now_ns ? s->opt.now_ns(s->opt.clock_ctx) : clock_wall_ns();
}

void store_options_defaults(struct store_options *o)
{
	memset(o, 0, sizeof(*o));
	o->segment_max_bytes = 64ull << 20;
	o->segment_max_age_s = 3600;
	o->retention_bytes = 10ull << 30;
	o->retention_age_s = 7ull * 24 * 3600;
	o->fsync = STORE_FSYNC_ALWAYS;
	o->fsync_interval_ms = 1000;
	o->sparse_every = SEG_SPARSE_EVERY;
	o->cache_keep_bytes = 256ull << 20;
}

void store_query_init(struct store_query *q)
{
	memset(q, 0, sizeof(*q));
	q->node_id = -1;
}

/* Room for `extra` more bytes: the capacity doubled from 64 KiB until they fit. */
static int buf_reserve(struct buf *b, size_t extra)
{
	if (b->len + extra <= b->cap)
		return 0;
	size_t ncap = b->cap ? b->cap : 65536;
	while (ncap < b->len + extra)
		ncap *= 2;
	uint8_t *p = realloc(b->p, ncap);
	if (!p)
		return -ENOMEM;
	b->p = p;
	b->cap = ncap;
	return 0;
}

/*
 * Group buffers are anonymous mappings: GROUP_RESERVE bytes of address space (or more, for a
 * larger group) reserved at once and backed as the loop first writes into them, by
 * transparent huge pages where the kernel allows (fewer TLB misses, cheaper page pinning for
 * direct writes). A group that outgrows its mapping moves to one four times as large. Why not
 * a buffer grown by doubling: each doubling faulted in a fresh buffer and copied the group
 * over, ≈ 190 MiB of fresh memory for two buffers that hold ≈ 35 MiB each under the ingest
 * bench, and on the reference VM, where a fresh page is expensive, that took 3-4 % of a 10 s
 * run's CPU (docs/benchmarks.md).
 */
#define GROUP_RESERVE (256u << 20)
#define HUGE_ALIGN    (2u << 20)

static void group_free(struct group_buf *g)
{
	if (g->mem)
		munmap(g->mem, g->map_len);
}

/* A huge-page aligned anonymous mapping of len bytes (a multiple of HUGE_ALIGN), or NULL. */
static uint8_t *group_map(size_t len)
{
	uint8_t *raw = mmap(NULL, len + HUGE_ALIGN, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (raw == MAP_FAILED)
		return NULL;
	uint8_t *mem =
	    (uint8_t *)(((uintptr_t)raw + HUGE_ALIGN - 1) & ~(uintptr_t)(HUGE_ALIGN - 1));
	size_t lead = (size_t)(mem - raw);
	if (lead)
		munmap(raw, lead);
	munmap(mem + len, HUGE_ALIGN - lead);
	(void)madvise(mem, len, MADV_HUGEPAGE); /* advice */
	return mem;
}

/* Makes room for `extra` more bytes after len, keeping the buffer's phase. */
static int group_reserve(struct group_buf *g, size_t extra)
{
	if (g->len + extra <= g->cap)
		return 0;
	size_t need = g->len + extra + 2 * DIO_ALIGN;
	size_t len = g->map_len ? 4 * g->map_len : GROUP_RESERVE;
	while (len < need)
		len *= 2;
	uint8_t *mem = group_map(len);
	if (!mem) { /* address space limits: exactly what is needed */
		len = (need + HUGE_ALIGN - 1) / HUGE_ALIGN * HUGE_ALIGN;
		if (!(mem = group_map(len)))
			return -ENOMEM;
	}
	if (g->len)
		memcpy(mem + g->phase, g->p, g->len);
	group_free(g);
	g->mem = mem;
	g->map_len = len;
	g->p = g->mem + g->phase;
	g->cap = len - 2 * DIO_ALIGN;
	return 0;
}

/* An empty group expected to land at `offset` of the file (the phase of direct writes). */
static void group_expect(struct group_buf *g, uint64_t offset)
{
	g->phase = offset % DIO_ALIGN;
	g->p = g->mem ? g->mem + g->phase : NULL;
}

static uint64_t hash64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

static uint64_t hash_str(const char *str)
{
	uint64_t h = 1469598103934665603ull;
	for (; *str; str++)
		h = (h ^ (uint8_t)*str) * 1099511628211ull;
	return h;
}

/* ---- session watermarks ---- */

static struct sess_entry *sess_find(const struct store *s, uint64_t agent, uint64_t session)
{
	if (!s->sess_cap)
		return NULL;
	size_t mask = s->sess_cap - 1;
	for (size_t i = hash64(agent * 31 + session) & mask;; i = (i + 1) & mask) {
		struct sess_entry *e = &s->sess[i];
		if (!e->used)
			return NULL;
		if (e->agent_key == agent && e->session_id == session)
			return e;
	}
}

static int sess_grow(struct store *s)
{
	size_t ncap = s->sess_cap ? s->sess_cap * 2 : 64;
	struct sess_entry *n = calloc(ncap, sizeof(*n));
	if (!n)
		return -ENOMEM;
	for (size_t j = 0; j < s->sess_cap; j++) {
		struct sess_entry *e = &s->sess[j];
		if (!e->used)
			continue;
		size_t i = hash64(e->agent_key * 31 + e->session_id) & (ncap - 1);
		while (n[i].used)
			i = (i + 1) & (ncap - 1);
		n[i] = *e;
	}
	free(s->sess);
	s->sess = n;
	s->sess_cap = ncap;
	return 0;
}

static struct sess_entry *sess_get(struct store *s, uint64_t agent, uint64_t session)
{
	struct sess_entry *e = sess_find(s, agent, session);
	if (e)
		return e;
	if ((s->sess_used + 1) * 2 > s->sess_cap && sess_grow(s))
		return NULL;
	size_t mask = s->sess_cap - 1;
	size_t i = hash64(agent * 31 + session) & mask;
	while (s->sess[i].used)
		i = (i + 1) & mask;
	e = &s->sess[i];
	memset(e, 0, sizeof(*e));
	e->used = 1;
	e->agent_key = agent;
	e->session_id = session;
	s->sess_used++;
	return e;
}

/* One (agent, session, sequence) a group appended: published as durable when it commits. */
struct sess_mark {
	uint64_t agent, session, seq;
};

static bool same_session(const struct store_record_meta *a, const struct store_record_meta *b)
{
	return a->agent_key == b->agent_key && a->session_id == b->session_id;
}

static int sess_note(struct store *s, uint64_t agent, uint64_t session, uint64_t seq, bool durable)
{
	struct sess_entry *e = sess_get(s, agent, session);
	if (!e)
		return -ENOMEM;
	if (seq > e->appended)
		e->appended = seq;
	if (durable && (!e->has_durable || seq > e->durable)) {
		e->durable = seq;
		e->has_durable = 1;
	}
	return 0;
}

bool store_batch_seen(const struct store *s, uint64_t agent_key, uint64_t session_id,
		      uint64_t sequence)
{
	const struct sess_entry *e = sess_find(s, agent_key, session_id);
	return e && sequence <= e->appended;
}

bool store_session_durable(const struct store *s, uint64_t agent_key, uint64_t session_id,
			   uint64_t *seq)
{
	const struct sess_entry *e = sess_find(s, agent_key, session_id);
	if (!e || !e->has_durable)
		return false;
	*seq = e->durable;
	return true;
}

/* ---- node table ---- */

static int node_slots_rebuild(struct store *s, size_t cap)
{
	uint32_t *slots = calloc(cap, sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	for (uint32_t id = 0; id < s->n_nodes; id++) {
		size_t i = hash_str(s->nodes[id]) & (cap - 1);
		while (slots[i])
			i = (i + 1) & (cap - 1);
		slots[i] = id + 1;
	}
	free(s->node_slots);
	s->node_slots = slots;
	s->node_slot_cap = cap;
	return 0;
}

static int node_add(struct store *s, const char *name, size_t len, uint32_t *id)
{
	if (s->n_nodes == s->cap_nodes) {
		uint32_t ncap = s->cap_nodes ? s->cap_nodes * 2 : 16;
		char **n = realloc(s->nodes, ncap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		s->nodes = n;
		s->cap_nodes = ncap;
	}
	if ((s->n_nodes + 1) * 2 > s->node_slot_cap) {
		int err = node_slots_rebuild(s, s->node_slot_cap ? s->node_slot_cap * 2 : 64);
		if (err)
			return err;
	}
	char *copy = strndup(name, len);
	if (!copy)
		return -ENOMEM;
	uint32_t nid = s->n_nodes++;
	s->nodes[nid] = copy;
	size_t i = hash_str(copy) & (s->node_slot_cap - 1);
	while (s->node_slots[i])
		i = (i + 1) & (s->node_slot_cap - 1);
	s->node_slots[i] = nid + 1;
	*id = nid;
	return 0;
}

int store_node_intern(struct store *s, const char *name, uint32_t *id)
{
	size_t len = name ? strlen(name) : 0;
	if (len == 0 || len > NODES_MAX_NAME)
		return -EINVAL;
	if (store_node_find(s, name, id))
		return 0;
	return node_add(s, name, len, id);
}

bool store_node_find(const struct store *s, const char *name, uint32_t *id)
{
	if (!s->node_slot_cap)
		return false;
	size_t mask = s->node_slot_cap - 1;
	for (size_t i = hash_str(name) & mask; s->node_slots[i]; i = (i + 1) & mask) {
		if (strcmp(s->nodes[s->node_slots[i] - 1], name) == 0) {
			*id = s->node_slots[i] - 1;
			return true;
		}
	}
	return false;
}

const char *store_node_name(const struct store *s, uint32_t id)
{
	return id < s->n_nodes ? s->nodes[id] : NULL;
}

uint32_t store_node_count(const struct store *s)
{
	return s->n_nodes;
}

/* nodes.tbl: magic, u32 version, u32 count, count × (u16 len, bytes), u32 crc of all before */
static int nodes_encode(const struct store *s, struct buf *b)
{
	size_t n = 16 + 4;
	for (uint32_t i = 0; i < s->n_nodes; i++)
		n += 2 + strlen(s->nodes[i]);
	b->len = 0;
	if (buf_reserve(b, n))
		return -ENOMEM;
	uint8_t *p = b->p;
	memcpy(p, nodes_magic, 8);
	seg_put_u32(p + 8, NODES_VERSION);
	seg_put_u32(p + 12, s->n_nodes);
	p += 16;
	for (uint32_t i = 0; i < s->n_nodes; i++) {
		size_t l = strlen(s->nodes[i]);
		p[0] = (uint8_t)l;
		p[1] = (uint8_t)(l >> 8);
		memcpy(p + 2, s->nodes[i], l);
		p += 2 + l;
	}
	seg_put_u32(p, seg_crc32(b->p, n - 4));
	b->len = n;
	return 0;
}

static int nodes_load(struct store *s)
{
	uint8_t *b = NULL;
	size_t len = 0;
	int err = seg_read_file(s->dirfd, NODES_FILE, 64u << 20, &b, &len);
	if (err == -ENOENT)
		return 0;
	if (err) {
		log_error(TAG, "read %s/%s: %s", s->dir, NODES_FILE, strerror(-err));
		return err;
	}
	err = -EBADMSG;
	if (len < 20 || memcmp(b, nodes_magic, 8) != 0 || seg_get_u32(b + 8) != NODES_VERSION ||
	    seg_get_u32(b + len - 4) != seg_crc32(b, len - 4))
		goto bad;
	uint32_t count = seg_get_u32(b + 12);
	size_t off = 16;
	for (uint32_t i = 0; i < count; i++) {
		if (off + 2 > len - 4)
			goto bad;
		size_t l = b[off] | ((size_t)b[off + 1] << 8);
		if (l == 0 || l > NODES_MAX_NAME || off + 2 + l > len - 4 ||
		    memchr(b + off + 2, 0, l))
			goto bad;
		uint32_t id;
		err = node_add(s, (const char *)b + off + 2, l, &id);
		if (err)
			goto out;
		off += 2 + l;
	}
	if (off != len - 4)
		goto bad;
	s->nodes_durable = s->n_nodes;
	err = 0;
	goto out;
bad:
	log_error(TAG, "%s/%s is corrupt (bad magic, version, length or CRC)", s->dir, NODES_FILE);
out:
	free(b);
	return err;
}

/* ---- segments ---- */

static int segs_push(struct store *s, struct store_segment *seg)
{
	if (s->n_segs == s->cap_segs) {
		size_t ncap = s->cap_segs ? s->cap_segs * 2 : 16;
		struct store_segment **n = realloc(s->segs, ncap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		s->segs = n;
		s->cap_segs = ncap;
	}
	s->segs[s->n_segs++] = seg;
	return 0;
}

static void seg_free(struct store_segment *seg)
{
	if (!seg)
		return;
	seg_unmap(seg->map, seg->map_len);
	free(seg->fine);
	seg_index_fini(&seg->idx);
	free(seg);
}

static struct store_segment *active_seg(const struct store *s)
{
	return s->n_segs ? s->segs[s->n_segs - 1] : NULL;
}

/* Records per fine sub-block (a cursor inside a sparse block walks at most this many). */
#define FINE_EVERY 64u

/* ---- fine index: one offset every fine_every records (in memory only) ---- */

/* Records per fine sub-block: a divisor of sparse_every, at most FINE_EVERY when possible. */
static uint32_t fine_every_of(uint32_t sparse_every)
{
	uint32_t f = sparse_every;

	while (f > FINE_EVERY && f % 2 == 0)
		f /= 2;
	return f;
}

/* The fine entries of block b: the first one's index and how many the block has now. */
static void fine_span(const struct store_segment *seg, size_t b, size_t *first, size_t *count)
{
	uint32_t every = seg->idx.sparse_every, f = fine_every_of(every);
	uint64_t start = (uint64_t)b * every, in_blk = seg->idx.records - start;

	if (in_blk > every)
		in_blk = every;
	*first = (size_t)(start / f);
	*count = (size_t)((in_blk + f - 1) / f);
}

/* Notes that the fine entry i is the record at off (best effort: no memory, no entry). */
static void fine_note(struct store_segment *seg, size_t i, uint64_t off)
{
	if (i >= seg->cap_fine) {
		size_t ncap = seg->cap_fine ? seg->cap_fine * 2 : 64;
		while (ncap <= i)
			ncap *= 2;
		uint64_t *n = realloc(seg->fine, ncap * sizeof(*n));
		if (!n)
			return;
		memset(n + seg->cap_fine, 0, (ncap - seg->cap_fine) * sizeof(*n));
		seg->fine = n;
		seg->cap_fine = ncap;
	}
	seg->fine[i] = off;
}

/* Every entry of the block is known (0 marks an entry not noted yet: no record starts there). */
static bool fine_ready(const struct store_segment *seg, size_t first, size_t count)
{
	if (count < 2 || first + count > seg->cap_fine)
		return false; /* one sub-block: the block itself */
	for (size_t i = first; i < first + count; i++)
		if (!seg->fine[i])
			return false;
	return true;
}

/* Records written but not yet indexed (lock held, or the only thread touching the store). */
static size_t unindexed_count(const struct store *s)
{
	return s->unindexed.len / sizeof(struct pend_rec) - s->unindexed_pos;
}

/*
 * Adds the unindexed records to the active segment's index, which makes them visible to
 * scans and counts (lock held). On -ENOMEM the ones indexed so far stay indexed and the rest
 * wait for the next call.
 */
static int publish_locked(struct store *s)
{
	const struct pend_rec *pr = (const struct pend_rec *)(const void *)s->unindexed.p;
	size_t n = s->unindexed.len / sizeof(*pr), i = s->unindexed_pos;

	if (i == n)
		return 0; /* nothing to do: and nothing written, which other threads may be reading */
	struct store_segment *act = active_seg(s);
	uint64_t off = act->size, fine_every = fine_every_of(act->idx.sparse_every);
	/* the next record that gets a fine entry, and that entry's number */
	uint64_t fine_k = (act->idx.records + fine_every - 1) / fine_every;
	uint64_t fine_at = fine_k * fine_every;
	int err = 0;

	for (; i < n; i++) {
		uint64_t nth = act->idx.records;
		if (seg_index_add(&act->idx, &pr[i].m, off, pr[i].size)) {
			err = -ENOMEM;
			break;
		}
		if (nth == fine_at) {
			fine_note(act, fine_k++, off);
			fine_at += fine_every;
		}
		act->last_off = off;
		off += pr[i].size;
	}
	act->size = off;
	s->unindexed_pos = i;
	if (i == n)
		s->unindexed.len = s->unindexed_pos = 0;
	return err;
}

static int publish(struct store *s)
{
	pthread_mutex_lock(&s->lock);
	int err = publish_locked(s);
	pthread_mutex_unlock(&s->lock);
	if (err)
		log_error(TAG, "index update: out of memory");
	return err;
}

static bool do_sync(const struct store *s)
{
	return s->opt.fsync != STORE_FSYNC_NEVER;
}

/*
 * Creates segment `id` (header written to a .tmp, fsynced, renamed, directory fsynced) and
 * opens it read-write. Returns the fd or -errno.
 */
static int segment_create(struct store *s, uint64_t id, uint64_t created_ns)
{
	char name[64];
	uint8_t hdr[SEG_HEADER_SIZE];
	seg_file_name(name, sizeof(name), id, "tseg");
	seg_header_encode(hdr, id, created_ns);
	int err = seg_write_file_atomic(s->dirfd, name, hdr, sizeof(hdr), do_sync(s));
	if (err) {
		log_error(TAG, "create segment %s/%s: %s", s->dir, name, strerror(-err));
		return err;
	}
	int fd = openat(s->dirfd, name, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		log_error(TAG, "open %s/%s: %s", s->dir, name, strerror(-err));
		return err;
	}
	return fd;
}

/*
 * Reserves the active segment's blocks up to segment_max_bytes (at most PREALLOC_MAX) without
 * changing its size, so appends do not allocate block by block: the kernel's page-cache write
 * path is the commit thread's largest cost. Best effort (a file system without fallocate, a
 * full disk: appends allocate as they go). The reserve past the last record is released when
 * the segment is sealed or the store closed (segment_trim); the file's size, which recovery
 * and readers go by, is never changed by it.
 */
#define PREALLOC_MAX (256ull << 20)

static void segment_prealloc(struct store *s, int fd, uint64_t from)
{
	uint64_t want =
	    s->opt.segment_max_bytes < PREALLOC_MAX ? s->opt.segment_max_bytes : PREALLOC_MAX;

	if (want > from && fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)from, (off_t)(want - from)))
		log_debug(TAG, "preallocate segment: %s (appends allocate as they go)",
			  strerror(errno));
}

static void *direct_writer_main(void *arg)
{
	struct store *s = arg;

	pthread_mutex_lock(&s->dw.w.mu);
	for (;;) {
		while (!s->dw.w.stop && (s->dw.err || s->dw.done == s->dw.ready))
			pthread_cond_wait(&s->dw.w.cv, &s->dw.w.mu);
		if (s->dw.w.stop)
			break;
		size_t off = s->dw.done, len = s->dw.ready - off;
		const uint8_t *p = s->dw.base + off;
		off_t at = (off_t)(s->dw.file_off + off);
		int fd = s->dw.fd;

		pthread_mutex_unlock(&s->dw.w.mu);
		ssize_t w = pwrite(fd, p, len < DIO_CHUNK ? len : DIO_CHUNK, at);
		int err = w < 0 ? errno : 0;
		pthread_mutex_lock(&s->dw.w.mu);
		if (err == EINTR)
			continue;
		if (err)
			s->dw.err = -err;
		else if (w == 0 || w % DIO_ALIGN) /* a short direct write: the disk is full */
			s->dw.err = -ENOSPC;
		else
			s->dw.done += (size_t)w;
		pthread_cond_broadcast(&s->dw.w.cv);
	}
	pthread_mutex_unlock(&s->dw.w.mu);
	return NULL;
}

/* Lets the direct writer write the group's bytes up to `ready`. */
static void direct_release(struct store *s, size_t ready)
{
	pthread_mutex_lock(&s->dw.w.mu);
	s->dw.ready = ready;
	pthread_cond_broadcast(&s->dw.w.cv);
	pthread_mutex_unlock(&s->dw.w.mu);
}

/* Waits until everything released is written or a write failed; returns 0 or -errno. */
static int direct_wait(struct store *s)
{
	pthread_mutex_lock(&s->dw.w.mu);
	while (!s->dw.err && s->dw.done < s->dw.ready)
		pthread_cond_wait(&s->dw.w.cv, &s->dw.w.mu);
	int err = s->dw.err;
	s->dw.err = 0;
	s->dw.ready = s->dw.done = 0;
	pthread_mutex_unlock(&s->dw.w.mu);
	return err;
}

/* Starts w's thread unless it runs; returns 0 or an errno. */
static int worker_start(struct worker *w, void *(*fn)(void *), struct store *s)
{
	int err = w->started ? 0 : pthread_create(&w->thread, NULL, fn, s);

	w->started = w->started || !err;
	return err;
}

/* Tells w's thread to stop (it finishes what it must first) and waits for it. */
static void worker_stop(struct worker *w)
{
	if (!w->started)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	w->started = false;
}

/*
 * Opens active segment `id` for direct writes as s->direct_fd, closing the previous one.
 * Nothing to do when writes go through the page cache by option, or the file system refused
 * O_DIRECT before: that is logged once and the store works the same, at more CPU per byte.
 */
static void direct_open(struct store *s, uint64_t id)
{
	char name[64];

	if (s->direct_fd >= 0)
		close(s->direct_fd);
	s->direct_fd = -1;
	if (s->opt.buffered_writes || s->direct_refused)
		return;
	seg_file_name(name, sizeof(name), id, "tseg");
	s->direct_fd = openat(s->dirfd, name, O_WRONLY | O_DIRECT | O_CLOEXEC);
	int err = s->direct_fd < 0 ? errno : 0;
	if (!err)
		err = worker_start(&s->dw.w, direct_writer_main, s);
	if (err) {
		if (s->direct_fd >= 0)
			close(s->direct_fd);
		s->direct_fd = -1;
		s->direct_refused = true;
		log_info(TAG, "%s: no direct I/O (%s); writing through the page cache", s->dir,
			 strerror(err));
	}
	pthread_mutex_lock(&s->lock);
	s->st.direct_io = s->direct_fd >= 0;
	pthread_mutex_unlock(&s->lock);
}

/* Reads the active segment's last partial block into tail_blk (direct writes repeat it). */
static int tail_load(struct store *s, const struct store_segment *act)
{
	size_t head = (size_t)(s->write_end % DIO_ALIGN);

	if (s->direct_fd < 0 || !head)
		return 0;
	if (pread(s->active_fd, s->tail_blk, head, (off_t)(s->write_end - head)) != (ssize_t)head) {
		log_error(TAG, "read the tail of segment %" PRIu64 ": %s", act->id,
			  strerror(errno ? errno : EIO));
		return errno ? -errno : -EIO;
	}
	return 0;
}

/* Releases the preallocated blocks past the active segment's last record. */
static void segment_trim(struct store *s)
{
	struct store_segment *act = active_seg(s);

	if (act && s->active_fd >= 0 && !s->failed && ftruncate(s->active_fd, (off_t)s->write_end))
		log_warn(TAG, "release preallocated space of segment %" PRIu64 ": %s", act->id,
			 strerror(errno));
}

/* Starts a new active segment after the current last one (caller holds no lock). */
static int segment_start_next(struct store *s)
{
	struct store_segment *last = active_seg(s);
	uint64_t id = last ? last->id + 1 : 1, created = now_ns(s);
	struct store_segment *seg = calloc(1, sizeof(*seg));
	if (!seg)
		return -ENOMEM;
	int fd = segment_create(s, id, created);
	if (fd < 0) {
		free(seg);
		return fd;
	}
	segment_prealloc(s, fd, SEG_HEADER_SIZE);
	seg_header_encode(s->tail_blk, id, created); /* the first block's start */
	seg->id = id;
	seg->version = SEG_VERSION;
	seg->size = SEG_HEADER_SIZE;
	seg_index_init(&seg->idx, id, created, s->opt.sparse_every);
	s->write_end = SEG_HEADER_SIZE;
	pthread_mutex_lock(&s->lock);
	int err = segs_push(s, seg);
	int old_fd = s->active_fd;
	if (!err)
		s->active_fd = fd;
	pthread_mutex_unlock(&s->lock);
	if (err) {
		close(fd);
		seg_free(seg);
		return err;
	}
	if (old_fd >= 0)
		close(old_fd);
	direct_open(s, id);
	return 0;
}

/* Writes seg's index file (seg is sealed: its index no longer changes). */
static int index_write(struct store *s, struct store_segment *seg)
{
	char name[64];
	uint8_t *img = NULL;
	size_t len = 0;
	int err = seg_index_encode(&seg->idx, &img, &len);

	if (!err) {
		seg_file_name(name, sizeof(name), seg->id, "idx");
		err = seg_write_file_atomic(s->dirfd, name, img, len, do_sync(s));
		free(img);
	}
	if (err) {
		log_error(TAG, "write index of segment %" PRIu64 " in %s: %s", seg->id, s->dir,
			  strerror(-err));
		return err;
	}
	pthread_mutex_lock(&s->lock);
	s->st.index_writes++;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/*
 * A sealed segment's data is durable before its index file is written, and an index file
 * only saves the scan that rebuilds it at open (a sealed segment without one is scanned,
 * checked and re-indexed there, as after a crash). So the sealer writes them in the
 * background; retention deleting a segment first waits for its index file or takes it off
 * the queue (sealer_forget), and closing waits for all of them.
 */
static void *sealer_main(void *arg)
{
	struct store *s = arg;

	pthread_mutex_lock(&s->sl.w.mu);
	for (;;) {
		while (!s->sl.n && !s->sl.w.stop)
			pthread_cond_wait(&s->sl.w.cv, &s->sl.w.mu);
		if (!s->sl.n)
			break; /* stopping, nothing left */
		struct store_segment *seg = s->sl.busy = s->sl.q[0];
		pthread_mutex_unlock(&s->sl.w.mu);
		(void)index_write(s, seg); /* a failure is logged; open rebuilds the index */
		pthread_mutex_lock(&s->sl.w.mu);
		memmove(s->sl.q, s->sl.q + 1, --s->sl.n * sizeof(*s->sl.q));
		s->sl.busy = NULL;
		pthread_cond_broadcast(&s->sl.w.cv);
	}
	pthread_mutex_unlock(&s->sl.w.mu);
	return NULL;
}

/* Queues seg's index file for the sealer; -errno when it cannot (the caller writes it). */
static int sealer_push(struct store *s, struct store_segment *seg)
{
	int err = 0;

	pthread_mutex_lock(&s->sl.w.mu);
	err = -worker_start(&s->sl.w, sealer_main, s);
	if (!err && s->sl.n == s->sl.cap) {
		size_t cap = s->sl.cap ? 2 * s->sl.cap : 8;
		struct store_segment **q = realloc(s->sl.q, cap * sizeof(*q));
		if (q) {
			s->sl.q = q;
			s->sl.cap = cap;
		} else {
			err = -ENOMEM;
		}
	}
	if (!err) {
		s->sl.q[s->sl.n++] = seg;
		pthread_cond_broadcast(&s->sl.w.cv);
	}
	pthread_mutex_unlock(&s->sl.w.mu);
	return err;
}

/*
 * Before retention deletes seg: waits if the sealer is writing its index file, and takes it
 * off the queue otherwise (a deleted segment needs none).
 */
static void sealer_forget(struct store *s, const struct store_segment *seg)
{
	pthread_mutex_lock(&s->sl.w.mu);
	while (s->sl.busy == seg)
		pthread_cond_wait(&s->sl.w.cv, &s->sl.w.mu);
	for (size_t i = 0; i < s->sl.n; i++) {
		if (s->sl.q[i] == seg) {
			memmove(s->sl.q + i, s->sl.q + i + 1, (s->sl.n - i - 1) * sizeof(*s->sl.q));
			s->sl.n--;
			pthread_cond_broadcast(&s->sl.w.cv); /* store_index_files_wait */
			break;
		}
	}
	pthread_mutex_unlock(&s->sl.w.mu);
}

void store_index_files_wait(struct store *s)
{
	pthread_mutex_lock(&s->sl.w.mu);
	while (s->sl.n) /* the sealer broadcasts after each file */
		pthread_cond_wait(&s->sl.w.cv, &s->sl.w.mu);
	pthread_mutex_unlock(&s->sl.w.mu);
}

/*
 * Seals the active segment (its data synced, its preallocated blocks released), queues its
 * index file for the sealer, then opens the next one.
 */
static int segment_seal_active(struct store *s)
{
	struct store_segment *seg = active_seg(s);
	int perr = publish(s);

	if (perr)
		return perr;
	if (do_sync(s) && fdatasync(s->active_fd) != 0) {
		int err = -errno;
		log_error(TAG, "fdatasync segment %" PRIu64 ": %s", seg->id, strerror(-err));
		return err;
	}
	segment_trim(s);
	pthread_mutex_lock(&s->lock);
	seg->idx.file_size = seg->size;
	seg->sealed = true;
	s->st.rotations++;
	pthread_mutex_unlock(&s->lock);
	if (sealer_push(s, seg) != 0) {
		int err = index_write(s, seg);
		if (err)
			return err;
	}
	log_info(TAG, "sealed segment %" PRIu64 " (%" PRIu64 " records, %" PRIu64 " bytes)",
		 seg->id, seg->idx.records, seg->size);
	return segment_start_next(s);
}

static void segment_unlink(struct store *s, uint64_t id)
{
	char name[64];
	seg_file_name(name, sizeof(name), id, "tseg");
	if (unlinkat(s->dirfd, name, 0) != 0 && errno != ENOENT)
		log_warn(TAG, "unlink %s/%s: %s", s->dir, name, strerror(errno));
	seg_file_name(name, sizeof(name), id, "idx");
	if (unlinkat(s->dirfd, name, 0) != 0 && errno != ENOENT)
		log_warn(TAG, "unlink %s/%s: %s", s->dir, name, strerror(errno));
}

/* Whether the active segment, at `size` bytes and `records` records, is due to be sealed. */
static bool seal_due(const struct store *s, const struct store_segment *act, uint64_t size,
		     uint64_t records, uint64_t now)
{
	return records > 0 && (size >= s->opt.segment_max_bytes ||
			       now >= act->idx.created_ns + s->opt.segment_max_age_s * NS_PER_S);
}

/* Rotation (size/age) and retention (bytes/age). Runs on the committing thread. */
static int housekeeping(struct store *s)
{
	struct store_segment *act = active_seg(s);
	uint64_t now = now_ns(s);
	int err = 0;

	pthread_mutex_lock(&s->lock);
	uint64_t records = act->idx.records + unindexed_count(s);
	pthread_mutex_unlock(&s->lock);
	if (seal_due(s, act, s->write_end, records, now)) {
		err = segment_seal_active(s);
		if (err)
			return err;
	}

	uint64_t total = 0, age = s->opt.retention_age_s * NS_PER_S;
	uint64_t cutoff = now > age ? now - age : 0;
	struct store_segment **victims = NULL;
	size_t n_victims = 0;

	pthread_mutex_lock(&s->lock); /* a scan may be indexing records of the active segment */
	for (size_t i = 0; i < s->n_segs; i++)
		total += s->segs[i]->size;
	size_t keep = 0;
	for (size_t i = 0; i < s->n_segs; i++) {
		struct store_segment *seg = s->segs[i];
		uint64_t newest = seg->idx.records ? seg->idx.max_ts : seg->idx.created_ns;
		bool drop = seg->sealed && (total > s->opt.retention_bytes || newest < cutoff);
		if (drop) {
			struct store_segment **v = realloc(victims, (n_victims + 1) * sizeof(*v));
			if (!v) {
				drop = false;
				err = -ENOMEM;
			} else {
				victims = v;
				victims[n_victims++] = seg;
				total -= seg->size;
				s->st.deleted_segments++;
			}
		}
		if (!drop)
			s->segs[keep++] = seg;
	}
	s->n_segs = keep;
	pthread_mutex_unlock(&s->lock);

	for (size_t i = 0; i < n_victims; i++) {
		log_info(TAG, "retention: deleting segment %" PRIu64 " (%" PRIu64 " bytes)",
			 victims[i]->id, victims[i]->size);
		sealer_forget(s, victims[i]);
		segment_unlink(s, victims[i]->id);
		seg_free(victims[i]);
	}
	if (n_victims && do_sync(s))
		fsync(s->dirfd);
	free(victims);
	return err;
}

/* ---- commit ---- */

/*
 * A commit group is written in pieces of at most this size. Measured on the reference machine
 * (ext4, kernel 6.18, tests/bench/pwritebench.c): one pwrite of a 32 MiB group costs 320-790
 * MB/s of CPU in the kernel's page-cache copy, the same bytes in 64 KiB pwrites 1.9-2.8 GB/s;
 * the syscalls saved by larger writes are noise next to that.
 */
#define WRITE_CHUNK (64u << 10)

/*
 * With an fsync policy, writeback of a group starts every WRITEBACK_EVERY bytes while the
 * rest is still being written (sync_file_range, as RocksDB's bytes_per_sync), so the
 * fdatasync at the end waits for the last piece only, not for the whole group.
 */
#define WRITEBACK_EVERY (1u << 20)

/*
 * Writes p[0..len) at off. *unstarted: where the bytes written but not yet given to writeback
 * begin, carried from call to call.
 */
static int pwrite_all(int fd, const uint8_t *p, size_t len, uint64_t off, bool writeback,
		      uint64_t *unstarted)
{
	while (len > 0) {
		if (writeback && off - *unstarted >= WRITEBACK_EVERY) {
			/* best effort: fdatasync still writes whatever this did not */
			(void)sync_file_range(fd, (off_t)*unstarted, (off_t)(off - *unstarted),
					      SYNC_FILE_RANGE_WRITE);
			*unstarted = off;
		}
		ssize_t n = pwrite(fd, p, len < WRITE_CHUNK ? len : WRITE_CHUNK, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/*
 * The group's records are CRC'd and written a slice of this many bytes at a time, so the
 * write copies each slice from the cache the CRC just brought it into, instead of reading the
 * whole group from memory twice.
 */
#define CRC_SLICE (256u << 10)

/*
 * Page-cache writes: fills in the CRC of every record of the group (appended without it,
 * which keeps the CRC off the loop) and writes the group at the end of the active segment.
 */
static int write_group_buffered(struct store *s)
{
	const struct pend_rec *pr = (const struct pend_rec *)(const void *)s->inflight_recs.p;
	size_t n = s->inflight_recs.len / sizeof(*pr), r = 0, pos = 0;
	uint64_t unstarted = s->write_end;
	bool writeback = s->opt.fsync != STORE_FSYNC_NEVER;

	while (pos < s->inflight.len) {
		size_t from = pos;

		while (r < n && (pos == from || pos - from < CRC_SLICE)) {
			seg_record_set_crc(s->inflight.p + pos);
			pos += pr[r++].size;
		}
		if (pos == from) /* records and their sizes disagree: never */
			return -EIO;
		int err = pwrite_all(s->active_fd, s->inflight.p + from, pos - from,
				     s->write_end + from, writeback, &unstarted);
		if (err)
			return err;
	}
	return 0;
}

/*
 * Direct writes: the blocks from the one holding the segment's end to the one holding the
 * group's last byte, straight from the group's buffer. The first block repeats the bytes
 * already on disk (tail_blk), so what was acknowledged is rewritten with the same bytes; the
 * last is padded with zeros, which the next group overwrites and sealing (or recovery, after a
 * crash) cuts off. No page cache is filled, copied or handed back. The records' CRCs are filled
 * in a DIO_CHUNK at a time, each piece released to the direct writer once its CRCs are in;
 * while the writer takes the last pieces, the previous group goes into the index.
 */
static int write_group_direct(struct store *s)
{
	struct group_buf *g = &s->inflight;
	const struct pend_rec *pr = (const struct pend_rec *)(const void *)s->inflight_recs.p;
	size_t n = s->inflight_recs.len / sizeof(*pr), head = (size_t)(s->write_end % DIO_ALIGN);

	if (g->phase != head) { /* expected elsewhere: a seal commit_begin did not foresee */
		memmove(g->mem + head, g->p, g->len);
		group_expect(g, head);
	}
	memcpy(g->mem, s->tail_blk, head);
	size_t total = head + g->len, padded = (total + DIO_ALIGN - 1) / DIO_ALIGN * DIO_ALIGN;
	memset(g->mem + total, 0, padded - total);
	pthread_mutex_lock(&s->dw.w.mu);
	s->dw.fd = s->direct_fd;
	s->dw.base = g->mem;
	s->dw.file_off = s->write_end - head;
	pthread_mutex_unlock(&s->dw.w.mu);
	/* end: the buffer offset up to which every record has its CRC */
	for (size_t r = 0, end = head, released = 0; r < n;) {
		seg_record_set_crc(g->mem + end);
		end += pr[r++].size;
		if (end - released >= DIO_CHUNK + DIO_ALIGN || r == n) {
			released = r == n ? padded : end / DIO_ALIGN * DIO_ALIGN;
			direct_release(s, released);
		}
	}
	(void)publish(s); /* a failure is returned by commit_io's call */
	int err = direct_wait(s);
	if (!err)
		memcpy(s->tail_blk, g->mem + total - total % DIO_ALIGN, total % DIO_ALIGN);
	return err;
}

/* Writes the in-flight group at the end of the active segment. */
static int write_group(struct store *s, const struct store_segment *act)
{
	if (s->direct_fd >= 0) {
		int err = write_group_direct(s);
		if (err != -EINVAL)
			return err;
		/* a file system that opens O_DIRECT files but refuses their writes */
		log_warn(TAG, "%s: direct write refused (%s); writing through the page cache",
			 s->dir, strerror(-err));
		s->direct_refused = true;
		direct_open(s, act->id);
	}
	return write_group_buffered(s);
}

/*
 * Drops the page cache of durable segment bytes older than the newest cache_keep_bytes, in
 * steps of at least CACHE_DROP_STEP. Why: on the reference machine (a VM) a page-cache page
 * the kernel has to take fresh is several times dearer to fill than one just given back, so
 * an append-only store that lets its written pages pile up pays about three times the CPU
 * per byte in the write's copy (tests/bench/pwritebench.c with and without KEEP,
 * docs/storage-format.md); it also keeps a busy store from pushing everything else out of
 * memory. Queries read the newest data (the dashboard's view) from cache; older pages come
 * back from disk when read, and pages a reader has mapped are not dropped. Runs on the
 * committing thread after a sync, so the pages are clean; errors are ignored (it is advice).
 */
#define CACHE_DROP_STEP (8ull << 20)

static void drop_range(struct store *s, const struct store_segment *seg, uint64_t from, uint64_t to)
{
	char name[64];
	int fd = seg == active_seg(s) ? s->active_fd : -1;

	if (to <= from)
		return;
	if (fd < 0) {
		seg_file_name(name, sizeof(name), seg->id, "tseg");
		fd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return;
	}
	(void)posix_fadvise(fd, (off_t)from, (off_t)(to - from), POSIX_FADV_DONTNEED);
	if (fd != s->active_fd)
		close(fd);
}

/* The part of segs[i] between the drop cursor and the window's start (segs[w] at w_off). */
static void trim_span(const struct store *s, size_t i, size_t w, uint64_t w_off, uint64_t *from,
		      uint64_t *to)
{
	const struct store_segment *seg = s->segs[i];

	*from = seg->id < s->drop_id ? seg->size : seg->id == s->drop_id ? s->drop_off : 0;
	*to = i == w ? w_off : seg->size;
}

static void cache_trim(struct store *s)
{
	uint64_t keep = s->opt.cache_keep_bytes, behind = 0, due = 0, from, to;
	size_t w = s->n_segs;

	if (keep == STORE_CACHE_KEEP_ALL || w == 0)
		return;
	/* the window's start: segment w, offset w_off */
	while (w > 0 && behind + s->segs[w - 1]->size < keep)
		behind += s->segs[--w]->size;
	if (w == 0)
		return;
	w--;
	uint64_t w_off = s->segs[w]->size - (keep - behind);
	for (size_t i = 0; i <= w; i++) {
		trim_span(s, i, w, w_off, &from, &to);
		due += to > from ? to - from : 0;
	}
	if (due < CACHE_DROP_STEP)
		return;
	for (size_t i = 0; i <= w; i++) {
		trim_span(s, i, w, w_off, &from, &to);
		drop_range(s, s->segs[i], from, to);
	}
	s->drop_id = s->segs[w]->id;
	s->drop_off = w_off;
}

/* The I/O half of a commit: safe to run in the thread pool. */
static int commit_io(struct store *s)
{
	struct store_segment *act = active_seg(s);
	int err;

	if (s->inflight_nodes.len) {
		err = seg_write_file_atomic(s->dirfd, NODES_FILE, s->inflight_nodes.p,
					    s->inflight_nodes.len, do_sync(s));
		if (err) {
			log_error(TAG, "write %s/%s: %s", s->dir, NODES_FILE, strerror(-err));
			return err;
		}
	}
	if (s->inflight.len) {
		err = write_group(s, act);
		if (err) {
			log_error(TAG, "write segment %" PRIu64 ": %s", act->id, strerror(-err));
			if (ftruncate(s->active_fd, (off_t)s->write_end) != 0)
				log_error(TAG, "ftruncate segment %" PRIu64 ": %s", act->id,
					  strerror(errno));
			return err;
		}
		bool sync = s->opt.fsync == STORE_FSYNC_ALWAYS;
		uint64_t now = clock_mono_ns();
		if (s->opt.fsync == STORE_FSYNC_INTERVAL &&
		    now - s->last_fsync_ns >= (uint64_t)s->opt.fsync_interval_ms * 1000000ull)
			sync = true;
		if (sync) {
			if (fdatasync(s->active_fd) != 0) {
				err = -errno;
				log_error(TAG, "fdatasync segment %" PRIu64 ": %s", act->id,
					  strerror(-err));
				return err;
			}
			s->last_fsync_ns = now;
		}
		s->unsynced = !sync;
		/*
		 * The group is on disk: it waits for the index (publish_locked) with the records
		 * before it indexed, normally while the next group is being written.
		 */
		pthread_mutex_lock(&s->lock);
		if (sync)
			s->st.fsyncs++;
		err = publish_locked(s);
		if (!err) {
			struct buf t = s->unindexed;
			s->unindexed = s->inflight_recs;
			s->inflight_recs = t;
		}
		pthread_mutex_unlock(&s->lock);
		if (err) {
			log_error(TAG, "index update: out of memory");
			return err;
		}
		s->write_end += s->inflight.len;
		if (sync) {
			pthread_mutex_lock(&s->lock); /* segment sizes: see housekeeping */
			cache_trim(s);
			pthread_mutex_unlock(&s->lock);
		}
	}
	pthread_mutex_lock(&s->lock);
	s->st.commits++;
	pthread_mutex_unlock(&s->lock);
	return housekeeping(s);
}

/* Moves the pending group (and a dirty node table) to the in-flight slot. */
static int commit_begin(struct store *s)
{
	s->inflight_nodes.len = 0;
	if (s->n_nodes > s->nodes_durable) {
		int err = nodes_encode(s, &s->inflight_nodes);
		if (err)
			return err;
	}
	s->inflight_node_count = s->n_nodes;
	struct group_buf g = s->inflight;
	s->inflight = s->pending;
	s->pending = g;
	s->pending.len = 0;
	/* where the next group will start: after this one, or in a new segment */
	const struct store_segment *act = active_seg(s);
	uint64_t next = s->write_end + s->inflight.len;
	pthread_mutex_lock(&s->lock);
	uint64_t records = act->idx.records + unindexed_count(s);
	pthread_mutex_unlock(&s->lock);
	if (seal_due(s, act, next, records + s->pending_recs.len / sizeof(struct pend_rec),
		     now_ns(s)))
		next = SEG_HEADER_SIZE;
	group_expect(&s->pending, next);
	struct buf t = s->inflight_marks;
	s->inflight_marks = s->pending_marks;
	s->pending_marks = t;
	s->pending_marks.len = 0;
	t = s->inflight_recs;
	s->inflight_recs = s->pending_recs;
	s->pending_recs = t;
	s->pending_recs.len = 0;
	s->inflight_ticket = s->appended_ticket;
	return 0;
}

/* Loop-thread half: publish watermarks and tickets. */
static void commit_finish(struct store *s, int status)
{
	if (status) {
		if (!s->failed)
			s->failed = status;
		return;
	}
	/* one mark per batch (not per record), recorded by store_append_batch */
	const struct sess_mark *mk = (const struct sess_mark *)(const void *)s->inflight_marks.p;
	for (size_t i = 0; i < s->inflight_marks.len / sizeof(*mk); i++)
		sess_note(s, mk[i].agent, mk[i].session, mk[i].seq, true);
	s->inflight.len = 0;
	s->inflight_marks.len = 0;
	s->inflight_recs.len = 0;
	s->durable_ticket = s->inflight_ticket;
	s->nodes_durable = s->inflight_node_count;
}

int store_commit(struct store *s)
{
	if (s->in_flight)
		return -EBUSY;
	if (s->failed)
		return s->failed;
	int err = commit_begin(s);
	if (err)
		return err;
	err = commit_io(s);
	if (!err)
		err = publish(s);
	commit_finish(s, err);
	return err;
}

int store_maintain(struct store *s)
{
	if (s->in_flight)
		return -EBUSY;
	if (s->failed)
		return s->failed;
	int err = 0;
	if (s->unsynced && s->opt.fsync == STORE_FSYNC_INTERVAL) {
		/* an idle interval-policy store still reaches the disk within the interval */
		if (fdatasync(s->active_fd) != 0) {
			err = -errno;
			log_error(TAG, "fdatasync segment %" PRIu64 ": %s", active_seg(s)->id,
				  strerror(-err));
		} else {
			s->unsynced = false;
			s->last_fsync_ns = clock_mono_ns();
			pthread_mutex_lock(&s->lock);
			s->st.fsyncs++;
			pthread_mutex_unlock(&s->lock);
		}
	}
	if (!err)
		err = housekeeping(s);
	if (err)
		s->failed = err;
	return err;
}

static int waiter_add(struct waiter_list *l, store_commit_cb cb, void *ctx)
{
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 8;
		struct waiter *w = realloc(l->w, ncap * sizeof(*w));
		if (!w)
			return -ENOMEM;
		l->w = w;
		l->cap = ncap;
	}
	l->w[l->n++] = (struct waiter){.cb = cb, .ctx = ctx};
	return 0;
}

static void on_commit_work(uv_work_t *req)
{
	struct store *s = req->data;
	s->work_status = commit_io(s);
}

static void start_async(struct store *s);

static void on_commit_done(uv_work_t *req, int status)
{
	struct store *s = req->data;
	int err = status ? status : s->work_status;
	commit_finish(s, err);
	s->in_flight = false;

	struct waiter_list done = s->cur_waiters;
	s->cur_waiters = (struct waiter_list){0};
	if (s->next_waiters.n && !s->failed)
		start_async(s);
	uint64_t durable = s->durable_ticket;
	for (size_t i = 0; i < done.n; i++)
		done.w[i].cb(s, err, durable, done.w[i].ctx);
	free(done.w);
	/* a failure also fails everyone queued behind it */
	if (s->failed && !s->in_flight && s->next_waiters.n) {
		struct waiter_list next = s->next_waiters;
		s->next_waiters = (struct waiter_list){0};
		for (size_t i = 0; i < next.n; i++)
			next.w[i].cb(s, s->failed, durable, next.w[i].ctx);
		free(next.w);
	}
	/* no next commit to index this group while it writes: index it now (a failure is
	 * retried by the next commit, which fails with it) */
	if (!s->in_flight && !s->failed)
		(void)publish(s);
}

static void start_async(struct store *s)
{
	int err = commit_begin(s);
	s->cur_waiters = s->next_waiters;
	s->next_waiters = (struct waiter_list){0};
	s->in_flight = true;
	s->work.data = s;
	if (!err)
		err = uv_queue_work(s->loop, &s->work, on_commit_work, on_commit_done);
	if (err) {
		log_error(TAG, "start async commit: %s", strerror(-err));
		s->in_flight = false;
		s->failed = err;
		/* the waiters go back to the queue; they are failed by the caller */
		s->next_waiters = s->cur_waiters;
		s->cur_waiters = (struct waiter_list){0};
	}
}

int store_commit_async(struct store *s, uv_loop_t *loop, store_commit_cb cb, void *ctx)
{
	if (s->failed)
		return s->failed;
	int err = waiter_add(&s->next_waiters, cb, ctx);
	if (err)
		return err;
	s->loop = loop;
	if (!s->in_flight) {
		start_async(s);
		if (s->failed) {
			/* never call cb from inside this call: drop the queued waiter */
			s->next_waiters.n = 0;
			return s->failed;
		}
	}
	return 0;
}

bool store_commit_busy(const struct store *s)
{
	return s->in_flight;
}

/* ---- append ---- */

/*
 * Whether record i of a batch carries its identity (SEG_FLAG_IDENT): the first one, and any
 * whose agent, session or sequence differs from the record before it.
 */
static inline bool new_identity(const struct store_record_meta *meta, size_t i)
{
	return i == 0 || !same_session(&meta[i], &meta[i - 1]) ||
	       meta[i].sequence != meta[i - 1].sequence;
}

int store_append_batch(struct store *s, const struct store_record_meta *meta,
		       const void *const *rec, const size_t *len, size_t n)
{
	if (s->failed)
		return s->failed;
	if (n == 0)
		return -EINVAL;
	/* the records that carry an identity start its runs: one watermark mark per run */
	size_t total = 0, runs = 0;
	for (size_t i = 0; i < n; i++) {
		if (meta[i].type >= TAPIO_OCC__COUNT || meta[i].severity >= TAPIO_SEV__COUNT ||
		    len[i] > SEG_REC_MAX_LEN - SEG_META_SIZE - SEG_IDENT_SIZE ||
		    (len[i] && !rec[i]))
			return -EINVAL;
		runs += new_identity(meta, i);
		total += seg_record_size(len[i], false);
	}
	total += runs * SEG_IDENT_SIZE;
	if (total > UINT32_MAX)
		return -EINVAL; /* identity links (seg_head.back) are u32 */
	if (group_reserve(&s->pending, total))
		return -ENOMEM;
	/* reserve watermark entries first so nothing below can fail half-way */
	for (size_t i = 0; i < n; i++)
		if ((i == 0 || !same_session(&meta[i], &meta[i - 1])) &&
		    !sess_get(s, meta[i].agent_key, meta[i].session_id))
			return -ENOMEM;
	if (buf_reserve(&s->pending_marks, runs * sizeof(struct sess_mark)) ||
	    buf_reserve(&s->pending_recs, n * sizeof(struct pend_rec)))
		return -ENOMEM;
	size_t ident_at = 0; /* where in pending the identity in force was written */
	bool ident = true;   /* record 0 starts a run */
	for (size_t i = 0; i < n; i++) {
		bool next = i + 1 < n && new_identity(meta, i + 1);
		/* the CRC is filled in by commit_io, in the thread pool for async commits */
		struct pend_rec pr = {.m = meta[i],
				      .size = (uint32_t)seg_record_size(len[i], ident)};
		uint8_t flags =
		    (i == n - 1 ? SEG_FLAG_BATCH_END : 0) | (ident ? SEG_FLAG_IDENT : 0);

		if (ident)
			ident_at = s->pending.len;
		/* within this batch: at most total bytes back, which fits u32 (checked above) */
		seg_record_encode_nocrc(s->pending.p + s->pending.len, &meta[i], flags,
					(uint32_t)(s->pending.len - ident_at), rec[i], len[i]);
		s->pending.len += pr.size;
		memcpy(s->pending_recs.p + s->pending_recs.len, &pr, sizeof(pr));
		s->pending_recs.len += sizeof(pr);
		/* the run's last record: note its batch once (almost always the whole batch) */
		if (i == n - 1 || next) {
			struct sess_mark mk = {meta[i].agent_key, meta[i].session_id,
					       meta[i].sequence};

			sess_note(s, mk.agent, mk.session, mk.seq, false);
			memcpy(s->pending_marks.p + s->pending_marks.len, &mk, sizeof(mk));
			s->pending_marks.len += sizeof(mk);
		}
		ident = next;
	}
	s->appended_ticket++;
	return 0;
}

uint64_t store_appended_ticket(const struct store *s)
{
	return s->appended_ticket;
}

uint64_t store_durable_ticket(const struct store *s)
{
	return s->durable_ticket;
}

/* ---- open / recover ---- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int list_dir(struct store *s, uint64_t **ids_out, size_t *n_out)
{
	int fd = dup(s->dirfd);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		int err = -errno;
		close(fd);
		return err;
	}
	rewinddir(d);
	uint64_t *ids = NULL;
	size_t n = 0, cap = 0;
	int err = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		unsigned long long id;
		char ext[8];
		size_t l = strlen(de->d_name);
		if (l > 4 && strcmp(de->d_name + l - 4, ".tmp") == 0) {
			log_info(TAG, "removing leftover %s/%s", s->dir, de->d_name);
			unlinkat(s->dirfd, de->d_name, 0);
			continue;
		}
		if (sscanf(de->d_name, "seg-%20llu.%7s", &id, ext) != 2 || strcmp(ext, "tseg"))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			uint64_t *nids = realloc(ids, cap * sizeof(*nids));
			if (!nids) {
				err = -ENOMEM;
				break;
			}
			ids = nids;
		}
		ids[n++] = id;
	}
	closedir(d);
	if (err) {
		free(ids);
		return err;
	}
	if (n)
		qsort(ids, n, sizeof(*ids), cmp_u64);
	*ids_out = ids;
	*n_out = n;
	return 0;
}

/* Removes .idx files whose segment is gone (retention crashed between the two unlinks). */
static void remove_orphan_indexes(struct store *s, const uint64_t *ids, size_t n)
{
	int fd = dup(s->dirfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	rewinddir(d);
	struct dirent *de;
	while ((de = readdir(d))) {
		unsigned long long id;
		char ext[8];
		if (sscanf(de->d_name, "seg-%20llu.%7s", &id, ext) != 2 || strcmp(ext, "idx"))
			continue;
		uint64_t key = id;
		if (!n || !bsearch(&key, ids, n, sizeof(*ids), cmp_u64)) {
			log_info(TAG, "removing orphan index %s/%s", s->dir, de->d_name);
			unlinkat(s->dirfd, de->d_name, 0);
		}
	}
	closedir(d);
}

/*
 * Whether [from, size) is the zero padding of a direct write's last block: what a crash
 * leaves after the last group (sealing and closing cut it off), not a torn tail.
 */
static bool block_padding(int fd, uint64_t from, uint64_t size)
{
	uint8_t blk[DIO_ALIGN];

	if (size % DIO_ALIGN || size - from >= DIO_ALIGN ||
	    pread(fd, blk, size - from, (off_t)from) != (ssize_t)(size - from))
		return false;
	for (size_t i = 0; i < size - from; i++)
		if (blk[i])
			return false;
	return true;
}

/*
 * Loads segment `id`: trusts a valid index whose size matches the file (sealed), else scans
 * and truncates (recovery). is_last: an index-less last segment stays active.
 */

static int load_segment(struct store *s, uint64_t id, bool is_last, int *active_fd)
{
	char name[64], iname[64];
	uint8_t hdr[SEG_HEADER_SIZE];
	uint64_t hid, created;
	uint32_t version;
	struct stat st;
	int err = 0;

	seg_file_name(name, sizeof(name), id, "tseg");
	seg_file_name(iname, sizeof(iname), id, "idx");
	int fd = openat(s->dirfd, name, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		log_error(TAG, "open %s/%s: %s", s->dir, name, strerror(-err));
		return err;
	}
	if (fstat(fd, &st) != 0) {
		err = -errno;
		goto out;
	}
	if (st.st_size < (off_t)SEG_HEADER_SIZE && is_last) {
		/* created but never completed (cannot happen with tmp+rename; be forgiving) */
		log_warn(TAG, "removing headerless segment %s/%s (%lld bytes)", s->dir, name,
			 (long long)st.st_size);
		close(fd);
		unlinkat(s->dirfd, name, 0);
		unlinkat(s->dirfd, iname, 0);
		return 0;
	}
	if (pread(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr) ||
	    seg_header_decode(hdr, &hid, &created, &version) != 0 || hid != id) {
		log_error(TAG, "segment %s/%s has a bad header", s->dir, name);
		err = -EBADMSG;
		goto out;
	}
	struct store_segment *seg = calloc(1, sizeof(*seg));
	if (!seg) {
		err = -ENOMEM;
		goto out;
	}
	seg->id = id;
	seg->version = version;
	if (is_last && version != SEG_VERSION) {
		/* records are appended in the current format only: an older active segment is
		 * sealed (its index written below) and a new one started */
		log_info(TAG, "sealing segment %s/%s of format %u; new data goes to format %u",
			 s->dir, name, version, SEG_VERSION);
		is_last = false;
	}

	uint8_t *img = NULL;
	size_t ilen = 0;
	int ierr = seg_read_file(s->dirfd, iname, 256u << 20, &img, &ilen);
	if (!ierr) {
		ierr = seg_index_decode(img, ilen, &seg->idx);
		free(img);
		if (!ierr &&
		    (seg->idx.segment_id != id || seg->idx.file_size != (uint64_t)st.st_size)) {
			seg_index_fini(&seg->idx);
			ierr = -EBADMSG;
		}
	}
	if (!ierr) {
		seg->sealed = true;
		seg->size = (uint64_t)st.st_size;
		goto push;
	}
	if (ierr != -ENOENT)
		log_warn(TAG, "index %s/%s unusable (%s): rebuilding from the segment", s->dir,
			 iname, strerror(-ierr));

	seg_index_init(&seg->idx, id, created, s->opt.sparse_every);
	uint64_t good_end;
	enum seg_check why;
	err = seg_recover_scan(fd, version, (uint64_t)st.st_size, &seg->idx, &good_end, &why);
	if (err) {
		log_error(TAG, "scan %s/%s: %s", s->dir, name, strerror(-err));
		seg_free(seg);
		goto out;
	}
	bool padding =
	    good_end < (uint64_t)st.st_size && block_padding(fd, good_end, (uint64_t)st.st_size);
	if (padding) {
		log_debug(TAG, "segment %s/%s: cut %" PRIu64 " bytes of block padding", s->dir,
			  name, (uint64_t)st.st_size - good_end);
		if (ftruncate(fd, (off_t)good_end) != 0) {
			err = -errno;
			log_error(TAG, "truncate %s/%s: %s", s->dir, name, strerror(-err));
			seg_free(seg);
			goto out;
		}
	} else if (good_end < (uint64_t)st.st_size) {
		log_warn(TAG,
			 "recovery: segment %s/%s truncated at offset %" PRIu64 ", cut %" PRIu64
			 " bytes (%s)",
			 s->dir, name, good_end, (uint64_t)st.st_size - good_end,
			 seg_check_name(why));
		if (ftruncate(fd, (off_t)good_end) != 0 || (do_sync(s) && fsync(fd) != 0)) {
			err = -errno;
			log_error(TAG, "truncate %s/%s: %s", s->dir, name, strerror(-err));
			seg_free(seg);
			goto out;
		}
		s->st.recovery_truncations++;
		s->st.recovery_truncated_bytes += (uint64_t)st.st_size - good_end;
	}
	seg->size = good_end;
	seg->idx.file_size = good_end;
	if (!is_last || ierr != -ENOENT) {
		/* a sealed segment (or one whose index existed): re-seal with a fresh index */
		uint8_t *out_img = NULL;
		size_t out_len = 0;
		err = seg_index_encode(&seg->idx, &out_img, &out_len);
		if (!err)
			err = seg_write_file_atomic(s->dirfd, iname, out_img, out_len, do_sync(s));
		free(out_img);
		if (err) {
			log_error(TAG, "write index %s/%s: %s", s->dir, iname, strerror(-err));
			seg_free(seg);
			goto out;
		}
		seg->sealed = true;
		s->st.index_rebuilds++;
	}
push:
	err = segs_push(s, seg);
	if (err) {
		seg_free(seg);
		goto out;
	}
	if (!seg->sealed) {
		*active_fd = fd;
		fd = -1;
	}
out:
	if (fd >= 0)
		close(fd);
	return err;
}

int store_open(const struct store_options *o, struct store **out)
{
	struct store *s = calloc(1, sizeof(*s));
	uint64_t *ids = NULL;
	size_t n_ids = 0;
	int err;

	if (!s)
		return -ENOMEM;
	if (!o || !o->dir) {
		free(s);
		return -EINVAL;
	}
	store_options_defaults(&s->opt);
	struct store_options def = s->opt;
	s->opt = *o;
	if (!s->opt.segment_max_bytes)
		s->opt.segment_max_bytes = def.segment_max_bytes;
	if (!s->opt.segment_max_age_s)
		s->opt.segment_max_age_s = def.segment_max_age_s;
	if (!s->opt.retention_bytes)
		s->opt.retention_bytes = def.retention_bytes;
	if (!s->opt.retention_age_s)
		s->opt.retention_age_s = def.retention_age_s;
	if (!s->opt.fsync_interval_ms)
		s->opt.fsync_interval_ms = def.fsync_interval_ms;
	if (!s->opt.sparse_every)
		s->opt.sparse_every = def.sparse_every;
	if (!s->opt.cache_keep_bytes)
		s->opt.cache_keep_bytes = def.cache_keep_bytes;
	s->dirfd = s->lockfd = s->active_fd = s->direct_fd = -1;
	/* recursive: a scan callback may call store_stats (the scan holds the lock) */
	pthread_mutexattr_t attr;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&s->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	pthread_mutex_init(&s->dw.w.mu, NULL);
	pthread_cond_init(&s->dw.w.cv, NULL);
	pthread_mutex_init(&s->sl.w.mu, NULL);
	pthread_cond_init(&s->sl.w.cv, NULL);
	s->dir = strdup(o->dir);
	s->opt.dir = s->dir;
	if (!s->dir) {
		err = -ENOMEM;
		goto fail;
	}
	if (mkdir(s->dir, 0755) != 0 && errno != EEXIST) {
		err = -errno;
		log_error(TAG, "mkdir %s: %s", s->dir, strerror(-err));
		goto fail;
	}
	s->dirfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->dirfd < 0) {
		err = -errno;
		log_error(TAG, "open %s: %s", s->dir, strerror(-err));
		goto fail;
	}
	s->lockfd = openat(s->dirfd, "LOCK", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (s->lockfd < 0 || flock(s->lockfd, LOCK_EX | LOCK_NB) != 0) {
		err = errno == EWOULDBLOCK ? -EBUSY : -errno;
		log_error(TAG, "lock %s/LOCK: %s", s->dir, strerror(-err));
		goto fail;
	}
	err = nodes_load(s);
	if (err)
		goto fail;
	err = list_dir(s, &ids, &n_ids);
	if (err)
		goto fail;
	remove_orphan_indexes(s, ids, n_ids);
	for (size_t i = 0; i < n_ids; i++) {
		err = load_segment(s, ids[i], i + 1 == n_ids, &s->active_fd);
		if (err)
			goto fail;
	}
	if (!s->n_segs || active_seg(s)->sealed) {
		err = segment_start_next(s);
		if (err)
			goto fail;
	} else {
		s->write_end = active_seg(s)->size;
		segment_prealloc(s, s->active_fd, s->write_end);
		direct_open(s, active_seg(s)->id);
		err = tail_load(s, active_seg(s));
		if (err)
			goto fail;
	}
	err = housekeeping(s);
	if (err)
		goto fail;
	group_expect(&s->pending, active_seg(s)->size);
	/* dedupe watermarks from what is retained (the index session tables) */
	for (size_t i = 0; i < s->n_segs; i++) {
		const struct seg_index *idx = &s->segs[i]->idx;
		for (size_t j = 0; j < idx->n_sessions; j++) {
			err = sess_note(s, idx->sessions[j].agent_key, idx->sessions[j].session_id,
					idx->sessions[j].max_sequence, true);
			if (err)
				goto fail;
		}
	}
	free(ids);
	log_info(TAG, "opened %s: %zu segments, active %" PRIu64 ", %u nodes", s->dir, s->n_segs,
		 active_seg(s)->id, s->n_nodes);
	*out = s;
	return 0;
fail:
	free(ids);
	store_close(s);
	return err;
}

int store_close(struct store *s)
{
	if (!s)
		return 0;
	if (s->in_flight) {
		log_error(TAG, "store_close while an async commit is in flight");
		return -EBUSY;
	}
	(void)publish(s); /* what is left unindexed is indexed again at open */
	segment_trim(s);
	worker_stop(&s->dw.w);
	worker_stop(&s->sl.w); /* after every queued index file is written */
	for (size_t i = 0; i < s->n_segs; i++)
		seg_free(s->segs[i]);
	free(s->segs);
	if (s->active_fd >= 0)
		close(s->active_fd);
	if (s->direct_fd >= 0)
		close(s->direct_fd);
	if (s->lockfd >= 0)
		close(s->lockfd);
	if (s->dirfd >= 0)
		close(s->dirfd);
	for (uint32_t i = 0; i < s->n_nodes; i++)
		free(s->nodes[i]);
	free(s->nodes);
	free(s->node_slots);
	free(s->sess);
	group_free(&s->pending);
	group_free(&s->inflight);
	free(s->pending_marks.p);
	free(s->inflight_marks.p);
	free(s->pending_recs.p);
	free(s->inflight_recs.p);
	free(s->unindexed.p);
	free(s->inflight_nodes.p);
	free(s->cur_waiters.w);
	free(s->next_waiters.w);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->dw.w.mu);
	pthread_cond_destroy(&s->dw.w.cv);
	pthread_mutex_destroy(&s->sl.w.mu);
	pthread_cond_destroy(&s->sl.w.cv);
	free(s->sl.q);
	free(s->dir);
	free(s);
	return 0;
}

/* ---- scan ---- */

/*
 * Reader window for posting-list walks when a segment could not be mapped (the fallback):
 * a node's records are usually far apart, and one window holds a typical record.
 */
#define POSTING_READ_WINDOW 512u
/* Address space reserved beyond segment_max_bytes when mapping the active segment. */
#define ACTIVE_MAP_SLACK (16u << 20)

struct scan_state {
	const struct store_query *q;
	uint64_t until;
	store_scan_cb cb;
	void *ctx;
	long delivered;
	bool stop;
	uint64_t *offs; /* newest-first: matching offsets of one segment */
	size_t n_offs, cap_offs;
	uint64_t examined;     /* toward q->max_examined */
	bool truncated;	       /* stopped by q->max_examined */
	struct store_pos last; /* everything up to here (in scan order) has been examined */
	/* the batch identity read last (resolve_identity): segment, offset of its record */
	uint64_t ident_seg, ident_off;
	struct store_record_meta ident;
};

/* True (and the scan stops) once q->max_examined records have been examined. */
static bool budget_spent(struct store *s, struct scan_state *ss)
{
	if (!ss->q->max_examined || ss->examined < ss->q->max_examined)
		return false;
	ss->truncated = true;
	ss->stop = true;
	s->st.scan_truncated++;
	return true;
}

static bool meta_matches(const struct store_query *q, uint64_t until,
			 const struct store_record_meta *m)
{
	if (m->timestamp_ns < q->since_ns || m->timestamp_ns >= until)
		return false;
	if (q->type_mask && !(q->type_mask & (1u << m->type)))
		return false;
	if (q->severity_mask && !(q->severity_mask & (1u << m->severity)))
		return false;
	if (q->node_id >= 0 && (int64_t)m->node_id != q->node_id)
		return false;
	return true;
}

/* Counts and logs (rate-limited) a corrupt record a scan skips. */
static void corrupt_skipped(struct store *s, uint64_t seg_id, uint64_t off, const char *why)
{
	s->st.corrupt_reads++;
	LOG_RATELIMITED(LOG_ERROR, TAG, "segment %" PRIu64 " offset %" PRIu64 ": %s, skipped",
			seg_id, off, why);
}

/*
 * Reads and decodes the header of the record at off of seg into *h (its batch identity only
 * if the record carries it). Returns 0, 1 when the record's length is corrupt, or -errno.
 */
static int read_head(struct seg_reader *r, const struct store_segment *seg, uint64_t off,
		     bool backward, struct seg_head *h)
{
	size_t have = seg_head_need(seg->version, 0);
	for (;;) {
		const uint8_t *p;
		int err = seg_reader_get(r, off, have, backward, &p);
		if (err)
			return err;
		int need = seg_head_decode(p, have, seg->version, h);
		if (need <= 0)
			return need < 0 ? 1 : 0;
		have = (size_t)need; /* the identity follows the meta */
	}
}

/*
 * Completes h (the record at off) with its batch identity, read from the record h->back
 * bytes before it (format 2 writes it on a batch's first record only); the last one read is
 * kept, so a batch's records cost one read of it. Returns 0, 1 when the link is corrupt, or
 * -errno.
 */
static int resolve_identity(struct scan_state *ss, struct seg_reader *r,
			    const struct store_segment *seg, uint64_t off, struct seg_head *h)
{
	if (h->flags & SEG_FLAG_IDENT)
		return 0;
	if (h->back == 0 || h->back > off - SEG_HEADER_SIZE)
		return 1;
	uint64_t at = off - h->back;
	if (ss->ident_seg != seg->id || ss->ident_off != at) {
		struct seg_head id;
		int err = read_head(r, seg, at, true, &id);
		if (err)
			return err;
		if (!(id.flags & SEG_FLAG_IDENT))
			return 1;
		ss->ident_seg = seg->id;
		ss->ident_off = at;
		ss->ident = id.m;
	}
	h->m.agent_key = ss->ident.agent_key;
	h->m.session_id = ss->ident.session_id;
	h->m.sequence = ss->ident.sequence;
	return 0;
}

/*
 * Reads and delivers the record at off (known: its decoded header, or NULL). Returns 0, or
 * -errno for a read failure.
 */
static int deliver(struct store *s, struct scan_state *ss, struct seg_reader *r,
		   const struct store_segment *seg, uint64_t off, bool backward,
		   const struct seg_head *known)
{
	const uint8_t *p;
	struct seg_head h;
	int err = 0;
	if (known)
		h = *known; /* the caller decoded this header already */
	else
		err = read_head(r, seg, off, backward, &h);
	if (err == 0)
		err = resolve_identity(ss, r, seg, off, &h);
	if (err > 0) {
		corrupt_skipped(s, seg->id, off, "bad record header");
		return 0;
	}
	if (err)
		return err;
	const void *data = NULL;
	size_t dlen = 0;
	if (!ss->q->meta_only) {
		err = seg_reader_get(r, off, SEG_REC_PREFIX + h.len, backward, &p);
		if (err)
			return err;
		if (seg_crc32(p + SEG_REC_PREFIX, h.len) != h.crc) {
			corrupt_skipped(s, seg->id, off, "CRC mismatch");
			return 0;
		}
		data = p + SEG_REC_PREFIX + h.meta_len;
		dlen = h.len - h.meta_len;
	}
	ss->delivered++;
	if (ss->cb(ss->ctx, &h.m, data, dlen, (struct store_pos){seg->id, off}) ||
	    (ss->q->limit && (size_t)ss->delivered >= ss->q->limit))
		ss->stop = true;
	return 0;
}

/* Index of the sparse block holding the record at off (blocks ascend by offset). */
static size_t block_of(const struct seg_index *idx, uint64_t off)
{
	size_t lo = 0, hi = idx->n_sparse;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (idx->sparse[mid].offset <= off)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/* First posting index whose offset is >= off. */
static size_t posting_lower_bound(const struct seg_node_count *nd, uint64_t off)
{
	size_t lo = 0, hi = nd->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (nd->post_off[mid] < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * Node-filtered scan of one segment through its posting list for q->node_id: type and
 * severity come from the list, time from the sparse block a record lies in, and only
 * records passing both are read (their header is then checked exactly). Records in (lo, hi).
 */
static int scan_postings(struct store *s, struct scan_state *ss, struct store_segment *seg,
			 struct seg_reader *r, uint64_t lo, uint64_t hi)
{
	const struct store_query *q = ss->q;
	const struct seg_index *idx = &seg->idx;
	const struct seg_node_count *nd = seg_index_node(idx, (uint32_t)q->node_id);
	bool fwd = q->order == STORE_OLDEST_FIRST;
	int err = 0;

	if (!nd || !idx->n_sparse)
		return 0;
	size_t first = posting_lower_bound(nd, lo), end = posting_lower_bound(nd, hi);
	for (size_t k = 0; first < end && k < end - first && !ss->stop; k++) {
		size_t i = fwd ? first + k : end - 1 - k;
		uint64_t off = nd->post_off[i];
		uint8_t ts = nd->post_ts[i];
		if (budget_spent(s, ss))
			break;
		ss->examined++;
		s->st.scan_postings_checked++;
		ss->last = (struct store_pos){seg->id, off};
		if ((q->type_mask && !(q->type_mask & (1u << (ts >> 4)))) ||
		    (q->severity_mask && !(q->severity_mask & (1u << (ts & 0x0f)))))
			continue;
		const struct seg_sparse *blk = &idx->sparse[block_of(idx, off)];
		if (blk->max_ts < q->since_ns || blk->min_ts >= ss->until)
			continue;
		struct seg_head h;
		err = read_head(r, seg, off, !fwd, &h);
		if (err < 0)
			return err;
		s->st.scan_records_read++;
		if (err) {
			corrupt_skipped(s, seg->id, off, "bad record length");
			continue;
		}
		if (!meta_matches(q, ss->until, &h.m))
			continue; /* outside the time range (or an index that disagrees) */
		err = deliver(s, ss, r, seg, off, !fwd, &h);
		if (err)
			return err;
	}
	return 0;
}

/*
 * Walks the records in [from, to) forward: a sparse block or one fine sub-block of it.
 * Oldest-first delivers matches as it goes; newest-first collects them and delivers them
 * reversed, and stops walking at the cursor (hi). fill != SIZE_MAX: from is a block's start
 * and fill its first fine entry, noted (with the following ones) on the way. Returns 0, 1
 * when a corrupt record length ends the segment's walk (counted and logged), or -errno.
 */
static int walk_range(struct store *s, struct scan_state *ss, struct store_segment *seg,
		      struct seg_reader *r, uint64_t from, uint64_t to, uint64_t lo, uint64_t hi,
		      size_t fill)
{
	const struct store_query *q = ss->q;
	bool fwd = q->order == STORE_OLDEST_FIRST;
	uint32_t f = fine_every_of(seg->idx.sparse_every);
	uint64_t end = to;
	size_t i = 0;
	int err;

	ss->n_offs = 0;
	if (!fwd && budget_spent(s, ss))
		return 0;
	/* newest-first: records at or past the cursor need not be walked, unless noting */
	if (!fwd && end > hi && fill == SIZE_MAX)
		end = hi;
	for (uint64_t off = from; off < end && !ss->stop; i++) {
		struct seg_head h;
		if (fwd && off >= lo && budget_spent(s, ss))
			break;
		err = read_head(r, seg, off, false, &h);
		if (err < 0)
			return err;
		if (err) {
			s->st.corrupt_reads++;
			log_error(TAG,
				  "segment %" PRIu64 " offset %" PRIu64
				  ": bad record length, rest of segment skipped",
				  seg->id, off);
			return 1;
		}
		if (fill != SIZE_MAX && i % f == 0)
			fine_note(seg, fill + i / f, off);
		s->st.scan_records_read++;
		/* only records past the cursor count, so every call makes progress */
		ss->examined += off >= lo && off < hi;
		if (off >= lo && off < hi && meta_matches(q, ss->until, &h.m)) {
			if (fwd) {
				err = deliver(s, ss, r, seg, off, false, &h);
				if (err)
					return err;
			} else {
				if (ss->n_offs == ss->cap_offs) {
					size_t nc = ss->cap_offs ? ss->cap_offs * 2 : 256;
					uint64_t *no = realloc(ss->offs, nc * sizeof(*no));
					if (!no)
						return -ENOMEM;
					ss->offs = no;
					ss->cap_offs = nc;
				}
				ss->offs[ss->n_offs++] = off;
			}
		}
		if (fwd && off >= lo)
			ss->last = (struct store_pos){seg->id, off};
		off += SEG_REC_PREFIX + h.len;
	}
	for (size_t k = ss->n_offs; k > 0 && !ss->stop; k--) {
		err = deliver(s, ss, r, seg, ss->offs[k - 1], true, NULL);
		if (err)
			return err;
	}
	if (!fwd)
		ss->last = (struct store_pos){seg->id, from};
	return 0;
}

/*
 * Maps seg for reading [0, seg->size) if it is not mapped yet, or (active segment) its
 * mapping no longer covers size. Caller holds `lock`. Returns 0 or -errno (the caller then
 * reads with pread).
 *
 * Safe because nothing shrinks a segment under a mapping: sealed segments are immutable, the
 * store owns its directory (flock on LOCK), recovery truncates only in store_open before any
 * scan maps anything, and a failed commit truncates the active segment back to `size`, the
 * end of the data scans read. A file truncated underneath by someone else would raise
 * SIGBUS; that is outside the contract (docs/storage-format.md, "Reads").
 */
static int seg_mapping(struct store *s, struct store_segment *seg)
{
	char name[64];
	const uint8_t *map;
	int fd, err;

	if (seg->map && seg->size <= seg->map_len)
		return 0;
	size_t len = (size_t)seg->size;
	if (!seg->sealed) {
		/* room to grow: remapped only when a commit group overshoots it */
		len = (size_t)s->opt.segment_max_bytes + ACTIVE_MAP_SLACK;
		while (len < seg->size)
			len *= 2;
	}
	if (seg->sealed) {
		seg_file_name(name, sizeof(name), seg->id, "tseg");
		fd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
	} else {
		fd = s->active_fd;
	}
	err = seg_map(fd, len, &map);
	if (seg->sealed)
		close(fd);
	if (err)
		return err;
	seg_unmap(seg->map, seg->map_len);
	seg->map = map;
	seg->map_len = len;
	return 0;
}

static int scan_segment(struct store *s, struct scan_state *ss, struct store_segment *seg)
{
	const struct store_query *q = ss->q;
	bool fwd = q->order == STORE_OLDEST_FIRST;
	const struct seg_index *idx = &seg->idx;
	char name[64];
	int fd = -1, err = 0;
	struct seg_reader r = {0};

	if (!seg_index_may_match(idx, q->since_ns, ss->until, q->type_mask, q->severity_mask,
				 q->node_id)) {
		s->st.scan_segments_skipped += idx->records > 0;
		return 0;
	}
	/* cursor bounds within this segment: records in (lo, hi) are eligible */
	uint64_t lo = 0, hi = UINT64_MAX;
	if (q->has_cursor && q->cursor.segment_id == seg->id) {
		if (fwd)
			lo = q->cursor.offset + 1;
		else
			hi = q->cursor.offset;
	}
	bool postings = q->node_id >= 0 && idx->has_postings;
	/*
	 * Records are read through the segment's mapping, without copies. Header-only scans
	 * (meta_only: the aggregate rebuild at start reads every header of the store) stream
	 * through a pread buffer instead, so they do not map the whole store into the
	 * controller's resident set (docs/storage-format.md, "Reads").
	 */
	err = q->meta_only ? -EINVAL : seg_mapping(s, seg);
	if (!err) {
		seg_reader_init_map(&r, seg->map, seg->size);
	} else {
		if (!q->meta_only)
			LOG_RATELIMITED(LOG_WARN, TAG,
					"mmap segment %" PRIu64 ": %s; reading with pread", seg->id,
					strerror(-err));
		if (seg->sealed) {
			seg_file_name(name, sizeof(name), seg->id, "tseg");
			fd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				return -errno;
		}
		err = seg_reader_init(&r, seg->sealed ? fd : s->active_fd, seg->size,
				      postings ? POSTING_READ_WINDOW : 0);
		if (err)
			goto out;
	}
	if (postings) {
		err = scan_postings(s, ss, seg, &r, lo, hi);
		goto out;
	}
	/*
	 * Blocks in scan order; newest-first walks blocks backwards, collecting one block's
	 * matches forward and delivering them reversed, so a limited "latest N" query only
	 * reads the tail of a segment. A block whose fine index is complete is walked in its
	 * sub-blocks the same way, so a cursor inside it costs at most fine_every records of
	 * walking to reach. The work bound is checked per record oldest-first and per block
	 * (sub-block) newest-first (one is only resumable once it is done).
	 */
	for (size_t k = 0; k < idx->n_sparse && !ss->stop; k++) {
		size_t b = fwd ? k : idx->n_sparse - 1 - k;
		const struct seg_sparse *blk = &idx->sparse[b];
		uint64_t end = b + 1 < idx->n_sparse ? idx->sparse[b + 1].offset : seg->size;
		size_t first, count;

		if (end <= lo || blk->offset >= hi)
			continue; /* outside the cursor's side */
		if (blk->max_ts < q->since_ns || blk->min_ts >= ss->until) {
			s->st.scan_blocks_skipped++;
			continue;
		}
		fine_span(seg, b, &first, &count);
		if (!fine_ready(seg, first, count)) {
			/* the whole block, noting its fine index on the way */
			err = walk_range(s, ss, seg, &r, blk->offset, end, lo, hi, first);
			if (err)
				break;
			continue;
		}
		for (size_t j = 0; j < count && !ss->stop; j++) {
			size_t u = fwd ? j : count - 1 - j;
			uint64_t from = seg->fine[first + u],
				 to = u + 1 < count ? seg->fine[first + u + 1] : end;

			if (to <= lo || from >= hi)
				continue;
			err = walk_range(s, ss, seg, &r, from, to, lo, hi, SIZE_MAX);
			if (err)
				break;
		}
		if (err)
			break;
	}
	if (err > 0)
		err = 0; /* a corrupt record length ended the walk of this segment (logged) */
out:
	seg_reader_fini(&r);
	if (fd >= 0)
		close(fd);
	return err;
}

long store_scan_bounded(struct store *s, const struct store_query *q, store_scan_cb cb, void *ctx,
			struct store_scan_info *info)
{
	struct scan_state ss = {.q = q, .cb = cb, .ctx = ctx};
	bool fwd = q->order == STORE_OLDEST_FIRST;
	int err = 0;

	ss.until = q->until_ns ? q->until_ns : UINT64_MAX;
	if (q->has_cursor)
		ss.last = q->cursor;
	pthread_mutex_lock(&s->lock);
	(void)publish_locked(s); /* everything durable is visible; a failure is retried */
	for (size_t k = 0; k < s->n_segs && !ss.stop; k++) {
		struct store_segment *seg = s->segs[fwd ? k : s->n_segs - 1 - k];
		if (q->has_cursor &&
		    (fwd ? seg->id < q->cursor.segment_id : seg->id > q->cursor.segment_id))
			continue;
		err = scan_segment(s, &ss, seg);
		if (err) {
			log_error(TAG, "scan segment %" PRIu64 ": %s", seg->id, strerror(-err));
			break;
		}
	}
	pthread_mutex_unlock(&s->lock);
	free(ss.offs);
	if (info) {
		info->examined = ss.examined;
		info->truncated = ss.truncated;
		info->resume = ss.last;
	}
	return err ? err : ss.delivered;
}

long store_scan(struct store *s, const struct store_query *q, store_scan_cb cb, void *ctx)
{
	return store_scan_bounded(s, q, cb, ctx, NULL);
}

static int on_last(void *ctx, const struct store_record_meta *m, const void *data, size_t len,
		   struct store_pos pos)
{
	*(struct store_pos *)ctx = pos;
	return 1;
}

bool store_last_pos(struct store *s, struct store_pos *pos)
{
	bool found = false;

	pthread_mutex_lock(&s->lock);
	(void)publish_locked(s);
	for (size_t k = s->n_segs; k > 0 && !found; k--) {
		struct store_segment *seg = s->segs[k - 1];
		const struct seg_index *idx = &seg->idx;

		if (!idx->records)
			continue;
		/* not known yet (a segment loaded at open): the largest posting offset */
		for (size_t i = 0; !seg->last_off && idx->has_postings && i < idx->n_nodes; i++)
			if (idx->nodes[i].count &&
			    idx->nodes[i].post_off[idx->nodes[i].count - 1] > seg->last_off)
				seg->last_off = idx->nodes[i].post_off[idx->nodes[i].count - 1];
		if (!seg->last_off) {
			/* no posting lists (a segment past 4 GiB): its last record by a scan */
			struct store_query q;
			struct store_pos p = {0};

			store_query_init(&q);
			q.order = STORE_NEWEST_FIRST;
			q.meta_only = true;
			q.limit = 1;
			q.has_cursor = true;
			q.cursor = (struct store_pos){seg->id, UINT64_MAX};
			if (store_scan(s, &q, on_last, &p) > 0 && p.segment_id == seg->id)
				seg->last_off = p.offset;
		}
		if (seg->last_off) {
			*pos = (struct store_pos){seg->id, seg->last_off};
			found = true;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return found;
}

/* ---- inspection ---- */

void store_stats(struct store *s, struct store_stats *st)
{
	pthread_mutex_lock(&s->lock);
	*st = s->st;
	st->segments = s->n_segs;
	st->bytes = st->records = st->oldest_ts_ns = st->newest_ts_ns = 0;
	uint64_t oldest = UINT64_MAX;
	for (size_t i = 0; i < s->n_segs; i++) {
		const struct store_segment *seg = s->segs[i];
		st->bytes += seg->size;
		st->records += seg->idx.records;
		if (seg->idx.records && seg->idx.min_ts < oldest)
			oldest = seg->idx.min_ts;
		if (seg->idx.records && seg->idx.max_ts > st->newest_ts_ns)
			st->newest_ts_ns = seg->idx.max_ts;
	}
	st->oldest_ts_ns = oldest == UINT64_MAX ? 0 : oldest;
	st->active_segment_id = s->n_segs ? active_seg(s)->id : 0;
	pthread_mutex_unlock(&s->lock);
	st->pending_bytes = s->pending.len;
}

int store_segment_index(struct store *s, uint64_t segment_id, struct seg_index *out)
{
	int err = -ENOENT;
	pthread_mutex_lock(&s->lock);
	(void)publish_locked(s);
	for (size_t i = 0; i < s->n_segs; i++) {
		if (s->segs[i]->id == segment_id) {
			err = seg_index_copy(&s->segs[i]->idx, out);
			break;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return err;
}

size_t store_segment_ids(struct store *s, uint64_t *ids, size_t max)
{
	pthread_mutex_lock(&s->lock);
	size_t n = s->n_segs;
	for (size_t i = 0; i < n && i < max; i++)
		ids[i] = s->segs[i]->id;
	pthread_mutex_unlock(&s->lock);
	return n;
}
