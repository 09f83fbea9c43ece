/*
 * The file sink: rotating JSON-lines files under a data dir. The current file is
 * occurrences.jsonl; rotation renames .N-1 → .N … current → .1 and opens a fresh current
 * file. Writes and renames run on a threadpool thread, one at a time, always between
 * complete lines, so a reader never sees a line split across files or a rotated file that
 * ends mid-line.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/sink/sink_writer.h"
#include "common/log.h"

struct file_sink {
	struct sink_writer w; /* first */
	char dir[PATH_MAX];
	char current[PATH_MAX];
	uint64_t max_bytes;
	uint32_t max_files;
	int fd;		   /* -1 after a failed reopen; retried on the next write */
	uint64_t cur_size; /* touched only by the thread owning the write */
};

static void rotated_name(const struct file_sink *f, uint32_t n, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s.%u", f->dir, SINK_FILE_CURRENT, n);
}

static int open_current(struct file_sink *f)
{
	struct stat st;
	int fd = open(f->current, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	f->fd = fd;
	f->cur_size = (uint64_t)st.st_size;
	return 0;
}

/* Shifts .N-1 → .N … current → .1 and opens a new current file. Returns 0 or -errno. */
static int rotate(struct file_sink *f)
{
	char from[PATH_MAX + 32], to[PATH_MAX + 32];

	if (f->fd >= 0) {
		close(f->fd);
		f->fd = -1;
	}
	for (uint32_t n = f->max_files - 1; n > 1; n--) {
		rotated_name(f, n - 1, from, sizeof(from));
		rotated_name(f, n, to, sizeof(to));
		if (rename(from, to) < 0 && errno != ENOENT)
			return -errno;
	}
	rotated_name(f, 1, to, sizeof(to));
	if (rename(f->current, to) < 0 && errno != ENOENT)
		return -errno;
	return open_current(f);
}

/*
 * Writes complete lines. A write that fails after part of the data reached the file (disk
 * full, file size limit) is cut back to the last complete line, so the file never keeps a
 * torn line; the lines that did land are counted. Returns 0 or -errno.
 */
static int write_lines(struct file_sink *f, const char *buf, size_t len,
		       struct sink_write_result *res)
{
	size_t done = 0, keep = 0;
	int rc;

	while (done < len) {
		ssize_t n = write(f->fd, buf + done, len - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		done += (size_t)n;
	}
	if (done == len)
		return 0;
	rc = -errno;
	for (size_t i = done; i > 0; i--) {
		if (buf[i - 1] == '\n') {
			keep = i;
			break;
		}
	}
	for (size_t i = 0; i < keep; i++)
		if (buf[i] == '\n')
			res->lines++;
	res->bytes += keep;
	if (done > keep && ftruncate(f->fd, (off_t)(f->cur_size + keep)) < 0)
		rc = -errno;
	f->cur_size += keep;
	return rc;
}

static void file_write_fn(struct sink_writer *w, const char *buf, size_t len,
			  struct sink_write_result *res)
{
	struct file_sink *f = (struct file_sink *)w;
	size_t pos = 0;
	int rc;

	while (pos < len) {
		size_t group = 0, group_lines = 0;
		ssize_t n;

		if (f->fd < 0 && (rc = open_current(f)) < 0)
			goto fail;
		/* Take whole lines while they fit in the current file (at least one line). */
		while (pos + group < len) {
			const char *nl = memchr(buf + pos + group, '\n', len - pos - group);
			size_t l = (size_t)(nl - (buf + pos + group)) + 1;
			if ((group > 0 || f->cur_size > 0) &&
			    f->cur_size + group + l > f->max_bytes)
				break;
			group += l;
			group_lines++;
		}
		if (group == 0) {
			if ((rc = rotate(f)) < 0)
				goto fail;
			res->rotations++;
			continue;
		}
		n = write_lines(f, buf + pos, group, res);
		if (n < 0) {
			rc = (int)n;
			goto fail;
		}
		f->cur_size += group;
		res->bytes += group;
		res->lines += group_lines;
		pos += group;
	}
	return;
fail:
	res->errors++;
	res->last_error = rc;
}

static void file_release(struct sink_writer *w)
{
	struct file_sink *f = (struct file_sink *)w;

	if (f->fd >= 0)
		close(f->fd);
	sink_writer_fini(w);
	free(f);
}

/* Truncates a torn tail (crash mid-write) to the last '\n'. Returns bytes cut or -errno. */
static int64_t repair_tail(int fd, uint64_t size)
{
	char buf[4096];
	uint64_t end = size;

	while (end > 0) {
		size_t chunk = end > sizeof(buf) ? sizeof(buf) : (size_t)end;
		ssize_t n = pread(fd, buf, chunk, (off_t)(end - chunk));
		if (n < 0)
			return -errno;
		if ((size_t)n != chunk)
			return -EIO;
		for (size_t i = chunk; i > 0; i--) {
			if (buf[i - 1] == '\n') {
				uint64_t keep = end - chunk + i;
				if (keep == size)
					return 0;
				if (ftruncate(fd, (off_t)keep) < 0)
					return -errno;
				return (int64_t)(size - keep);
			}
		}
		end -= chunk;
	}
	if (size > 0 && ftruncate(fd, 0) < 0)
		return -errno;
	return (int64_t)size;
}

static const struct sink_ops file_ops = {
    .name = "file",
    .write = sink_writer_write,
    .flush = sink_writer_flush,
    .close = sink_writer_close,
};

struct sink *sink_file_new(uv_loop_t *loop, const struct sink_file_options *o, char *err,
			   size_t errlen)
{
	struct file_sink *f;
	int rc, fd;
	struct stat st;
	int64_t cut;

	if (o->max_files < 2 || o->max_bytes < SINK_FILE_MIN_MAX_BYTES) {
		snprintf(err, errlen, "file sink: max_files must be >= 2 and max_bytes >= %u",
			 SINK_FILE_MIN_MAX_BYTES);
		return NULL;
	}
	if (strlen(o->dir) + sizeof(SINK_FILE_CURRENT) + 16 > PATH_MAX) {
		snprintf(err, errlen, "file sink: data dir path too long");
		return NULL;
	}
	if (mkdir(o->dir, 0750) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "file sink: mkdir %s: %s", o->dir, strerror(errno));
		return NULL;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		snprintf(err, errlen, "file sink: out of memory");
		return NULL;
	}
	f->fd = -1;
	snprintf(f->dir, sizeof(f->dir), "%s", o->dir);
	snprintf(f->current, sizeof(f->current), "%s/%s", o->dir, SINK_FILE_CURRENT);
	f->max_bytes = o->max_bytes;
	f->max_files = o->max_files;

	/* Repair with a read-write fd, then reopen for appending. */
	fd = open(f->current, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0 || fstat(fd, &st) < 0) {
		snprintf(err, errlen, "file sink: open %s: %s", f->current, strerror(errno));
		goto fail;
	}
	cut = repair_tail(fd, (uint64_t)st.st_size);
	close(fd);
	fd = -1;
	if (cut < 0) {
		snprintf(err, errlen, "file sink: repairing %s: %s", f->current,
			 strerror((int)-cut));
		goto fail;
	}
	if (cut > 0)
		log_warn("sink",
			 "file sink: %s ended with a partial line (crash?); truncated %lld bytes",
			 f->current, (long long)cut);
	rc = open_current(f);
	if (rc < 0) {
		snprintf(err, errlen, "file sink: open %s: %s", f->current, strerror(-rc));
		goto fail;
	}
	if (sink_writer_init(&f->w, loop, &file_ops,
			     o->buffer_bytes ? o->buffer_bytes : SINK_FILE_BUFFER_BYTES,
			     file_write_fn, file_release) < 0) {
		snprintf(err, errlen, "file sink: out of memory");
		goto fail;
	}
	f->w.sink.counters.repaired_bytes = (uint64_t)cut;
	return &f->w.sink;
fail:
	if (fd >= 0)
		close(fd);
	if (f->fd >= 0)
		close(f->fd);
	free(f);
	return NULL;
}
