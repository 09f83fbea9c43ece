/* The on-disk spool of sealed batches: segments of length+CRC records, recovery, bounds. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "agent/client/spool.h"
#include "common/log.h"

#define TAG "spool"

struct seg_rec {
	uint64_t seq;
	uint64_t off;
	uint32_t count;
	uint32_t len;
};

struct seg {
	uint64_t first_seq;
	uint64_t bytes;
	struct seg_rec *recs;
	size_t n, cap;
};

struct spool {
	char *dir;
	uint64_t max_bytes;
	uint64_t segment_bytes;
	int fsync;
	uint64_t session;
	uint64_t acked;
	uint64_t last_seq;
	uint64_t total;
	uint64_t repaired;
	struct seg *segs; /* oldest first; the last one is appended to when cur_fd >= 0 */
	size_t nsegs, segcap;
	int cur_fd;
	int dirty;
	struct spool_record *recovered;
	size_t nrecovered;
};

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

static uint32_t record_crc(const uint8_t *hdr, const uint8_t *payload, uint32_t len)
{
	uLong crc = crc32(0L, Z_NULL, 0);

	crc = crc32(crc, hdr + 8, SPOOL_RECORD_HEADER - 8);
	if (len)
		crc = crc32(crc, payload, len);
	return (uint32_t)crc;
}

void spool_record_header(uint8_t hdr[SPOOL_RECORD_HEADER], uint64_t seq, uint32_t count,
			 const uint8_t *payload, uint32_t len)
{
	put_le32(hdr, len);
	put_le64(hdr + 8, seq);
	put_le32(hdr + 16, count);
	put_le32(hdr + 20, 0);
	put_le32(hdr + 4, record_crc(hdr, payload, len));
}

static ssize_t read_full(int fd, void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, off + (off_t)done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

static int write_full(int fd, const void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = write(fd, (const char *)buf + done, len - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		done += (size_t)n;
	}
	return 0;
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int ret = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

int spool_scan_file(const char *path, int truncate, struct spool_scan *scan)
{
	uint8_t hdr[SPOOL_RECORD_HEADER];
	uint8_t *payload = NULL;
	size_t payload_cap = 0, cap = 0;
	struct stat st;
	uint64_t off = 0;
	int ret = 0;
	int fd;

	memset(scan, 0, sizeof(*scan));
	fd = open(path, (truncate ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto out;
	}
	scan->file_bytes = (uint64_t)st.st_size;
	while (off + SPOOL_RECORD_HEADER <= scan->file_bytes) {
		ssize_t n = read_full(fd, hdr, sizeof(hdr), (off_t)off);
		uint32_t len;

		if (n < 0) {
			ret = (int)n;
			goto out;
		}
		if ((size_t)n < sizeof(hdr))
			break;
		len = get_le32(hdr);
		if (len > SPOOL_MAX_RECORD) {
			scan->corrupt = 1;
			break;
		}
		if (off + SPOOL_RECORD_HEADER + len > scan->file_bytes)
			break; /* torn: payload incomplete */
		if (len > payload_cap) {
			uint8_t *p = realloc(payload, len);
			if (!p) {
				ret = -ENOMEM;
				goto out;
			}
			payload = p;
			payload_cap = len;
		}
		n = read_full(fd, payload, len, (off_t)(off + SPOOL_RECORD_HEADER));
		if (n < 0) {
			ret = (int)n;
			goto out;
		}
		if ((size_t)n < len)
			break;
		if (record_crc(hdr, payload, len) != get_le32(hdr + 4)) {
			scan->corrupt = 1;
			break;
		}
		if (scan->nrecords == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			struct spool_record *r = realloc(scan->records, ncap * sizeof(*r));
			if (!r) {
				ret = -ENOMEM;
				goto out;
			}
			scan->records = r;
			cap = ncap;
		}
		scan->records[scan->nrecords++] = (struct spool_record){
		    .seq = get_le64(hdr + 8), .count = get_le32(hdr + 16), .len = len};
		off += SPOOL_RECORD_HEADER + len;
	}
	scan->valid_bytes = off;
	if (truncate && scan->valid_bytes < scan->file_bytes) {
		if (ftruncate(fd, (off_t)scan->valid_bytes) < 0 || fsync(fd) < 0) {
			ret = -errno;
			goto out;
		}
	}
out:
	if (ret < 0) {
		free(scan->records);
		scan->records = NULL;
		scan->nrecords = 0;
	}
	free(payload);
	close(fd);
	return ret;
}

int spool_write_u64_file(const char *dir, const char *name, uint64_t value)
{
	char path[4096], tmp[4096];
	uint8_t buf[12];
	int fd, ret = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s/%s.tmp", dir, name);
	put_le64(buf, value);
	put_le32(buf + 8, (uint32_t)crc32(crc32(0L, Z_NULL, 0), buf, 8));
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	ret = write_full(fd, buf, sizeof(buf));
	if (ret == 0 && fsync(fd) < 0)
		ret = -errno;
	close(fd);
	if (ret == 0 && rename(tmp, path) < 0)
		ret = -errno;
	if (ret == 0)
		ret = fsync_dir(dir);
	if (ret < 0)
		unlink(tmp);
	return ret;
}

int spool_read_u64_file(const char *dir, const char *name, uint64_t *value)
{
	char path[4096];
	uint8_t buf[13];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read_full(fd, buf, sizeof(buf), 0);
	close(fd);
	if (n < 0)
		return (int)n;
	if (n != 12 || get_le32(buf + 8) != (uint32_t)crc32(crc32(0L, Z_NULL, 0), buf, 8))
		return -EBADMSG;
	*value = get_le64(buf);
	return 0;
}

static void seg_path(const struct spool *s, uint64_t first_seq, char *buf, size_t len)
{
	snprintf(buf, len, "%s/seg-%020" PRIu64 ".spool", s->dir, first_seq);
}

static struct seg *seg_push(struct spool *s, uint64_t first_seq)
{
	struct seg *g;

	if (s->nsegs == s->segcap) {
		size_t ncap = s->segcap ? s->segcap * 2 : 16;
		struct seg *p = realloc(s->segs, ncap * sizeof(*p));
		if (!p)
			return NULL;
		s->segs = p;
		s->segcap = ncap;
	}
	g = &s->segs[s->nsegs++];
	memset(g, 0, sizeof(*g));
	g->first_seq = first_seq;
	return g;
}

static int seg_add(struct seg *g, const struct seg_rec *r)
{
	if (g->n == g->cap) {
		size_t ncap = g->cap ? g->cap * 2 : 64;
		struct seg_rec *p = realloc(g->recs, ncap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		g->recs = p;
		g->cap = ncap;
	}
	g->recs[g->n++] = *r;
	return 0;
}

static uint64_t seg_last_seq(const struct seg *g)
{
	return g->n ? g->recs[g->n - 1].seq : 0;
}

/* Deletes the oldest segment, counting what it held above the acked marker into ev. */
static void drop_oldest(struct spool *s, struct spool_evicted *ev)
{
	struct seg *g = &s->segs[0];
	char path[4096];

	if (s->nsegs == 1 && s->cur_fd >= 0) {
		close(s->cur_fd);
		s->cur_fd = -1;
	}
	seg_path(s, g->first_seq, path, sizeof(path));
	if (unlink(path) < 0 && errno != ENOENT)
		log_warn(TAG, "unlink %s: %s", path, strerror(errno));
	for (size_t i = 0; ev && i < g->n; i++) {
		if (g->recs[i].seq <= s->acked)
			continue;
		ev->batches++;
		ev->occurrences += g->recs[i].count;
		ev->hi_seq = g->recs[i].seq;
	}
	s->total -= g->bytes;
	free(g->recs);
	memmove(s->segs, s->segs + 1, (s->nsegs - 1) * sizeof(*g));
	s->nsegs--;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int recover_segments(struct spool *s, char *err, size_t errlen)
{
	uint64_t *firsts = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int ret = 0;
	DIR *d = opendir(s->dir);

	if (!d) {
		snprintf(err, errlen, "opendir %s: %s", s->dir, strerror(errno));
		return -errno;
	}
	while ((de = readdir(d))) {
		unsigned long long first;
		char tail[16];

		if (sscanf(de->d_name, "seg-%20llu.%15s", &first, tail) != 2 ||
		    strcmp(tail, "spool") != 0)
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			uint64_t *p = realloc(firsts, ncap * sizeof(*p));
			if (!p) {
				ret = -ENOMEM;
				goto out;
			}
			firsts = p;
			cap = ncap;
		}
		firsts[n++] = first;
	}
	if (n)
		qsort(firsts, n, sizeof(*firsts), cmp_u64);
	for (size_t i = 0; i < n; i++) {
		struct spool_scan sc;
		char path[4096];
		struct seg *g;
		uint64_t off = 0;

		seg_path(s, firsts[i], path, sizeof(path));
		ret = spool_scan_file(path, 1, &sc);
		if (ret < 0) {
			snprintf(err, errlen, "recover %s: %s", path, strerror(-ret));
			goto out;
		}
		if (sc.valid_bytes < sc.file_bytes) {
			log_warn(TAG, "%s: cut %" PRIu64 " bytes of %s tail at offset %" PRIu64,
				 path, sc.file_bytes - sc.valid_bytes,
				 sc.corrupt ? "corrupt" : "torn", sc.valid_bytes);
			s->repaired += sc.file_bytes - sc.valid_bytes;
		}
		if (sc.nrecords == 0) {
			unlink(path);
			free(sc.records);
			continue;
		}
		g = seg_push(s, firsts[i]);
		if (!g) {
			free(sc.records);
			ret = -ENOMEM;
			goto out;
		}
		for (size_t k = 0; k < sc.nrecords; k++) {
			struct seg_rec r = {.seq = sc.records[k].seq,
					    .off = off,
					    .count = sc.records[k].count,
					    .len = sc.records[k].len};
			if (r.seq <= s->last_seq) {
				log_warn(TAG,
					 "%s: sequence %" PRIu64 " out of order, ignoring rest",
					 path, r.seq);
				break;
			}
			if (seg_add(g, &r) < 0) {
				free(sc.records);
				ret = -ENOMEM;
				goto out;
			}
			s->last_seq = r.seq;
			off += SPOOL_RECORD_HEADER + r.len;
		}
		g->bytes = sc.valid_bytes;
		s->total += g->bytes;
		free(sc.records);
	}
out:
	free(firsts);
	closedir(d);
	return ret;
}

static void drop_acked_segments(struct spool *s)
{
	while (s->nsegs > 0 && seg_last_seq(&s->segs[0]) <= s->acked)
		drop_oldest(s, NULL);
}

static int collect_recovered(struct spool *s)
{
	size_t n = 0;

	for (size_t i = 0; i < s->nsegs; i++)
		n += s->segs[i].n;
	s->recovered = calloc(n ? n : 1, sizeof(*s->recovered));
	if (!s->recovered)
		return -ENOMEM;
	for (size_t i = 0; i < s->nsegs; i++)
		for (size_t k = 0; k < s->segs[i].n; k++) {
			const struct seg_rec *r = &s->segs[i].recs[k];
			if (r->seq > s->acked)
				s->recovered[s->nrecovered++] =
				    (struct spool_record){r->seq, r->count, r->len};
		}
	return 0;
}

int spool_open(const struct spool_options *o, struct spool **out, char *err, size_t errlen)
{
	struct spool *s;
	int ret;

	*out = NULL;
	if (!o->dir || !*o->dir) {
		snprintf(err, errlen, "spool directory not set");
		return -EINVAL;
	}
	if (mkdir(o->dir, 0700) < 0 && errno != EEXIST) {
		ret = -errno;
		snprintf(err, errlen, "mkdir %s: %s", o->dir, strerror(errno));
		return ret;
	}
	s = calloc(1, sizeof(*s));
	if (!s || !(s->dir = strdup(o->dir))) {
		free(s);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	s->cur_fd = -1;
	s->fsync = o->fsync;
	s->max_bytes = o->max_bytes ? o->max_bytes : SPOOL_DEFAULT_MAX_BYTES;
	s->segment_bytes = o->segment_bytes;
	if (!s->segment_bytes) {
		s->segment_bytes = s->max_bytes / 8;
		if (s->segment_bytes > SPOOL_DEFAULT_SEGMENT)
			s->segment_bytes = SPOOL_DEFAULT_SEGMENT;
		if (s->segment_bytes == 0)
			s->segment_bytes = 1;
	}

	ret = spool_read_u64_file(s->dir, SPOOL_SESSION_FILE, &s->session);
	if (ret < 0 || s->session == 0) {
		if (ret != -ENOENT && ret < 0)
			log_warn(TAG, "%s/%s unreadable (%s): starting a new session", s->dir,
				 SPOOL_SESSION_FILE, strerror(-ret));
		do {
			if (getrandom(&s->session, sizeof(s->session), 0) != sizeof(s->session)) {
				ret = -errno;
				snprintf(err, errlen, "getrandom: %s", strerror(errno));
				goto fail;
			}
		} while (s->session == 0);
		ret = spool_write_u64_file(s->dir, SPOOL_SESSION_FILE, s->session);
		if (ret < 0) {
			snprintf(err, errlen, "write %s/%s: %s", s->dir, SPOOL_SESSION_FILE,
				 strerror(-ret));
			goto fail;
		}
	}
	ret = spool_read_u64_file(s->dir, SPOOL_ACKED_FILE, &s->acked);
	if (ret == -EBADMSG)
		log_warn(TAG, "%s/%s corrupt: treating every spooled batch as unacknowledged",
			 s->dir, SPOOL_ACKED_FILE);
	if (ret < 0)
		s->acked = 0;
	ret = recover_segments(s, err, errlen);
	if (ret < 0)
		goto fail;
	if (s->acked > s->last_seq)
		s->last_seq = s->acked;
	drop_acked_segments(s);
	ret = collect_recovered(s);
	if (ret < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	log_info(TAG,
		 "%s: session %016" PRIx64 ", %zu unacknowledged batches (%" PRIu64
		 " bytes), acked up to %" PRIu64,
		 s->dir, s->session, s->nrecovered, s->total, s->acked);
	*out = s;
	return 0;
fail:
	spool_close(s);
	return ret;
}

void spool_close(struct spool *s)
{
	if (!s)
		return;
	if (s->cur_fd >= 0) {
		if (s->dirty)
			fdatasync(s->cur_fd);
		close(s->cur_fd);
	}
	for (size_t i = 0; i < s->nsegs; i++)
		free(s->segs[i].recs);
	free(s->segs);
	free(s->recovered);
	free(s->dir);
	free(s);
}

uint64_t spool_session_id(const struct spool *s)
{
	return s->session;
}

uint64_t spool_acked(const struct spool *s)
{
	return s->acked;
}

uint64_t spool_last_seq(const struct spool *s)
{
	return s->last_seq;
}

uint64_t spool_bytes(const struct spool *s)
{
	return s->total;
}

uint64_t spool_repaired_bytes(const struct spool *s)
{
	return s->repaired;
}

const struct spool_record *spool_recovered(const struct spool *s, size_t *n)
{
	*n = s->nrecovered;
	return s->recovered;
}

static int open_new_segment(struct spool *s, uint64_t first_seq)
{
	char path[4096];
	struct seg *g;
	int fd;

	seg_path(s, first_seq, path, sizeof(path));
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	g = seg_push(s, first_seq);
	if (!g) {
		close(fd);
		unlink(path);
		return -ENOMEM;
	}
	s->cur_fd = fd;
	return fsync_dir(s->dir);
}

int spool_append(struct spool *s, uint64_t seq, uint32_t count, const uint8_t *payload,
		 uint32_t len, struct spool_evicted *ev)
{
	uint8_t hdr[SPOOL_RECORD_HEADER];
	struct seg *g;
	struct seg_rec r;
	int ret;

	if (seq <= s->last_seq)
		return -EINVAL;
	if (s->cur_fd >= 0 && s->nsegs > 0 && s->segs[s->nsegs - 1].bytes >= s->segment_bytes) {
		if (s->dirty && s->fsync)
			fdatasync(s->cur_fd);
		close(s->cur_fd);
		s->cur_fd = -1;
		s->dirty = 0;
	}
	if (s->cur_fd < 0) {
		ret = open_new_segment(s, seq);
		if (ret < 0)
			return ret;
	}
	g = &s->segs[s->nsegs - 1];
	spool_record_header(hdr, seq, count, payload, len);
	ret = write_full(s->cur_fd, hdr, sizeof(hdr));
	if (ret == 0)
		ret = write_full(s->cur_fd, payload, len);
	if (ret < 0) {
		/* cut the partial record so the file stays a valid prefix */
		if (ftruncate(s->cur_fd, (off_t)g->bytes) < 0)
			log_warn(TAG, "ftruncate after failed append: %s", strerror(errno));
		return ret;
	}
	r = (struct seg_rec){.seq = seq, .off = g->bytes, .count = count, .len = len};
	ret = seg_add(g, &r);
	if (ret < 0)
		return ret;
	g->bytes += SPOOL_RECORD_HEADER + len;
	s->total += SPOOL_RECORD_HEADER + len;
	s->last_seq = seq;
	s->dirty = 1;
	while (s->total > s->max_bytes && s->nsegs > 1)
		drop_oldest(s, ev);
	return 0;
}

int spool_sync(struct spool *s)
{
	if (s->cur_fd < 0 || !s->dirty || !s->fsync)
		return 0;
	s->dirty = 0;
	return fdatasync(s->cur_fd) < 0 ? -errno : 0;
}

int spool_ack(struct spool *s, uint64_t seq)
{
	int ret;

	if (seq <= s->acked)
		return 0;
	s->acked = seq;
	ret = spool_write_u64_file(s->dir, SPOOL_ACKED_FILE, seq);
	drop_acked_segments(s);
	return ret;
}

ssize_t spool_read(struct spool *s, uint64_t from_seq, uint64_t to_seq, size_t max_bytes,
		   spool_read_fn fn, void *arg)
{
	uint8_t *buf = NULL;
	size_t bufcap = 0, used = 0;
	ssize_t nread = 0;

	for (size_t i = 0; i < s->nsegs; i++) {
		struct seg *g = &s->segs[i];
		char path[4096];
		int fd = -1;

		if (g->n == 0 || seg_last_seq(g) < from_seq || g->recs[0].seq > to_seq)
			continue;
		seg_path(s, g->first_seq, path, sizeof(path));
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			nread = -errno;
			goto out;
		}
		for (size_t k = 0; k < g->n; k++) {
			const struct seg_rec *r = &g->recs[k];
			struct spool_record rec = {r->seq, r->count, r->len};
			ssize_t n;

			if (r->seq < from_seq)
				continue;
			if (r->seq > to_seq || (nread > 0 && used + r->len > max_bytes)) {
				close(fd);
				goto out;
			}
			if (SPOOL_RECORD_HEADER + r->len > bufcap) {
				uint8_t *p = realloc(buf, SPOOL_RECORD_HEADER + r->len);
				if (!p) {
					close(fd);
					nread = -ENOMEM;
					goto out;
				}
				buf = p;
				bufcap = SPOOL_RECORD_HEADER + r->len;
			}
			n = read_full(fd, buf, SPOOL_RECORD_HEADER + r->len, (off_t)r->off);
			if (n < 0 || (size_t)n != SPOOL_RECORD_HEADER + r->len) {
				close(fd);
				nread = n < 0 ? n : -EIO;
				goto out;
			}
			/* the file may have changed under us since recovery: check again */
			if (get_le32(buf) != r->len || get_le64(buf + 8) != r->seq ||
			    record_crc(buf, buf + SPOOL_RECORD_HEADER, r->len) !=
				get_le32(buf + 4)) {
				log_error(TAG, "%s: record %" PRIu64 " fails its CRC", path,
					  r->seq);
				close(fd);
				nread = -EBADMSG;
				goto out;
			}
			fn(arg, &rec, buf + SPOOL_RECORD_HEADER);
			used += r->len;
			nread++;
		}
		close(fd);
	}
out:
	free(buf);
	return nread;
}
