/* The stdout sink: JSON lines to fd 1 (a pipe, a terminal or a file) through a bounded queue. */
#include <errno.h>
#include <stdlib.h>

#include "agent/sink/sink_writer.h"

struct stdout_sink {
	struct sink_writer w; /* first: the sink is the writer is the stdout_sink */
	int fd;
};

static void stdout_write_fn(struct sink_writer *w, const char *buf, size_t len,
			    struct sink_write_result *res)
{
	struct stdout_sink *s = (struct stdout_sink *)w;
	size_t done = 0;

	while (done < len) {
		ssize_t n = sink_write_full(s->fd, buf + done, len - done);
		if (n < 0) {
			res->errors++;
			res->last_error = (int)n;
			break;
		}
		done += (size_t)n;
	}
	res->bytes = done;
	/* complete lines in the written prefix */
	for (size_t i = 0; i < done; i++)
		if (buf[i] == '\n')
			res->lines++;
}

static void stdout_release(struct sink_writer *w)
{
	sink_writer_fini(w);
	free(w);
}

static const struct sink_ops stdout_ops = {
    .name = "stdout",
    .write = sink_writer_write,
    .flush = sink_writer_flush,
    .close = sink_writer_close,
};

struct sink *sink_stdout_new(uv_loop_t *loop, int fd, size_t queue_bytes)
{
	struct stdout_sink *s = calloc(1, sizeof(*s));

	if (!s) {
		errno = ENOMEM;
		return NULL;
	}
	if (queue_bytes == 0)
		queue_bytes = SINK_STDOUT_QUEUE_BYTES;
	if (sink_writer_init(&s->w, loop, &stdout_ops, queue_bytes, stdout_write_fn,
			     stdout_release) < 0) {
		free(s);
		errno = ENOMEM;
		return NULL;
	}
	s->fd = fd;
	return &s->w.sink;
}
