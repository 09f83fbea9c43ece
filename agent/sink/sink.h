/*
 * Sinks: where encoded occurrences (one JSON object per line) go. The agent encodes each
 * occurrence once and hands the line to every sink. A sink never blocks the loop: it copies
 * the line into a bounded in-memory buffer and writes it off the loop thread (libuv's
 * threadpool), with at most one write in flight. When the buffer is full the line is dropped
 * and counted.
 */
#ifndef TAPIO_SINK_H
#define TAPIO_SINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct sink_counters {
	uint64_t writes; /* lines written completely to the destination */
	uint64_t drops;	 /* lines dropped: buffer full, write error, or closing */
	uint64_t bytes;	 /* bytes written, newlines included */
	uint64_t errors; /* failed write/rotate system calls */
	uint64_t rotations;
	uint64_t repaired_bytes; /* bytes cut from a torn tail at start (file sink) */
};

struct sink;
/* Called once a sink has written everything and freed itself, with its final counters. */
typedef void (*sink_closed_fn)(void *arg, const struct sink_counters *final);

struct sink_ops {
	const char *name;
	/*
	 * Queues one line (without its trailing '\n'; the sink adds it). Returns 0, or
	 * -ENOBUFS when the buffer is full or the sink is closing (the line is dropped and
	 * counted). Never blocks.
	 */
	int (*write)(struct sink *s, const char *line, size_t len);
	/* Starts writing what is buffered now, if no write is in flight. Never blocks. */
	void (*flush)(struct sink *s);
	/*
	 * Writes everything still buffered, releases the destination and frees the sink;
	 * then calls cb(arg, final counters) from the loop thread (possibly before close returns when nothing
	 * was pending). The sink must not be used after close.
	 */
	void (*close)(struct sink *s, sink_closed_fn cb, void *arg);
};

struct sink {
	const struct sink_ops *ops;
	struct sink_counters counters;
};

static inline int sink_write(struct sink *s, const char *line, size_t len)
{
	return s->ops->write(s, line, len);
}

static inline void sink_flush(struct sink *s)
{
	s->ops->flush(s);
}

static inline void sink_close(struct sink *s, sink_closed_fn cb, void *arg)
{
	s->ops->close(s, cb, arg);
}

#define SINK_STDOUT_QUEUE_BYTES (4u << 20)
#define SINK_FILE_BUFFER_BYTES	(4u << 20)
#define SINK_FILE_MAX_BYTES	(16u << 20)
#define SINK_FILE_MAX_FILES	5
#define SINK_FILE_MIN_MAX_BYTES 4096
#define SINK_FILE_CURRENT	"occurrences.jsonl"

/*
 * JSON lines to `fd` (normally 1) through a bounded queue of `queue_bytes`. Works for
 * pipes, terminals and regular files. The fd is not closed by close(). Returns NULL with
 * errno set (ENOMEM).
 */
struct sink *sink_stdout_new(uv_loop_t *loop, int fd, size_t queue_bytes);

struct sink_file_options {
	const char *dir;     /* created (one level) if missing */
	uint64_t max_bytes;  /* rotate before a write would make the current file larger */
	uint32_t max_files;  /* files kept, the current one included (>= 2) */
	size_t buffer_bytes; /* bound of the in-memory buffer; 0 = SINK_FILE_BUFFER_BYTES */
};

/*
 * Rotating JSON-lines files: <dir>/occurrences.jsonl (current), .1 (newest rotated) …
 * .<max_files-1> (oldest). Opens the current file at once and, if it ends with a partial
 * line (crash mid-write), truncates it to the last '\n' and logs how many bytes were cut.
 * Returns NULL with a message in err on failure (cannot create dir, open, …).
 */
struct sink *sink_file_new(uv_loop_t *loop, const struct sink_file_options *o, char *err,
			   size_t errlen);

#endif
