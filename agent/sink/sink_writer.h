/*
 * Shared machinery of the stdout and file sinks: a bounded double buffer of complete lines
 * and one write in flight on libuv's threadpool. The loop thread appends to `pend`; when no
 * write is in flight the buffers are swapped and `fly` is handed to the owner's `write_fn`,
 * which runs on a threadpool thread and is the only code touching the destination while the
 * write is in flight.
 */
#ifndef TAPIO_SINK_WRITER_H
#define TAPIO_SINK_WRITER_H

#include "agent/sink/sink.h"

struct sink_writer;

/* What one threadpool write achieved; filled by write_fn. */
struct sink_write_result {
	uint64_t lines; /* complete lines written */
	uint64_t bytes;
	uint64_t errors;
	uint64_t rotations;
	int last_error; /* -errno of the last failure, 0 if none */
};

/* Runs on a threadpool thread: writes buf (complete lines) and fills *res. */
typedef void (*sink_write_fn)(struct sink_writer *w, const char *buf, size_t len,
			      struct sink_write_result *res);
/* Runs on the loop thread once everything is written: releases and frees the owner. */
typedef void (*sink_release_fn)(struct sink_writer *w);

struct sink_writer {
	struct sink sink;
	uv_loop_t *loop;
	uv_work_t work;
	char *pend;
	char *fly;
	size_t pend_len;
	size_t fly_len;
	size_t cap;
	uint64_t pend_lines;
	uint64_t fly_lines;
	bool busy;
	bool closing;
	sink_write_fn write_fn;
	sink_release_fn release_fn;
	sink_closed_fn closed_cb;
	void *closed_arg;
	struct sink_write_result res;
};

/* Allocates both buffers of `cap` bytes. Returns 0 or -ENOMEM. */
int sink_writer_init(struct sink_writer *w, uv_loop_t *loop, const struct sink_ops *ops, size_t cap,
		     sink_write_fn write_fn, sink_release_fn release_fn);
/* Frees the buffers (the release_fn calls it). */
void sink_writer_fini(struct sink_writer *w);

/* The sink_ops entry points shared by both sinks. */
int sink_writer_write(struct sink *s, const char *line, size_t len);
void sink_writer_flush(struct sink *s);
void sink_writer_close(struct sink *s, sink_closed_fn cb, void *arg);

/* write(2) until done, retrying EINTR and short writes. Returns bytes written or -errno. */
ssize_t sink_write_full(int fd, const char *buf, size_t len);

#endif
