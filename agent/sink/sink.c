/* The bounded double buffer and single in-flight threadpool write shared by the sinks. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/sink/sink_writer.h"
#include "common/log.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

int sink_writer_init(struct sink_writer *w, uv_loop_t *loop, const struct sink_ops *ops, size_t cap,
		     sink_write_fn write_fn, sink_release_fn release_fn)
{
	memset(w, 0, sizeof(*w));
	w->sink.ops = ops;
	w->loop = loop;
	w->cap = cap;
	w->write_fn = write_fn;
	w->release_fn = release_fn;
	w->pend = malloc(cap);
	w->fly = malloc(cap);
	if (!w->pend || !w->fly) {
		sink_writer_fini(w);
		return -ENOMEM;
	}
	return 0;
}

void sink_writer_fini(struct sink_writer *w)
{
	free(w->pend);
	free(w->fly);
	w->pend = NULL;
	w->fly = NULL;
}

ssize_t sink_write_full(int fd, const char *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = write(fd, buf + done, len - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		done += (size_t)n;
	}
	return (ssize_t)done;
}

static void on_work(uv_work_t *req)
{
	struct sink_writer *w = container_of(req, struct sink_writer, work);

	memset(&w->res, 0, sizeof(w->res));
	w->write_fn(w, w->fly, w->fly_len, &w->res);
}

static void start_write(struct sink_writer *w);

static void finish_close(struct sink_writer *w)
{
	sink_closed_fn cb = w->closed_cb;
	void *arg = w->closed_arg;
	struct sink_counters final = w->sink.counters;

	w->release_fn(w); /* frees w */
	if (cb)
		cb(arg, &final);
}

static void on_work_done(uv_work_t *req, int status)
{
	struct sink_writer *w = container_of(req, struct sink_writer, work);

	w->busy = false;
	if (status < 0) { /* cancelled: nothing was written */
		w->sink.counters.drops += w->fly_lines;
	} else {
		uint64_t ok = w->res.lines > w->fly_lines ? w->fly_lines : w->res.lines;
		w->sink.counters.writes += ok;
		w->sink.counters.drops += w->fly_lines - ok;
		w->sink.counters.bytes += w->res.bytes;
		w->sink.counters.errors += w->res.errors;
		w->sink.counters.rotations += w->res.rotations;
		if (w->res.last_error)
			LOG_RATELIMITED(LOG_WARN, "sink",
					"%s sink: write failed: %s (%llu lines dropped)",
					w->sink.ops->name, strerror(-w->res.last_error),
					(unsigned long long)(w->fly_lines - ok));
	}
	w->fly_len = 0;
	w->fly_lines = 0;
	if (w->pend_len > 0) {
		start_write(w);
		return;
	}
	if (w->closing)
		finish_close(w);
}

static void start_write(struct sink_writer *w)
{
	char *tmp;
	int rc;

	if (w->busy || w->pend_len == 0)
		return;
	tmp = w->fly;
	w->fly = w->pend;
	w->fly_len = w->pend_len;
	w->fly_lines = w->pend_lines;
	w->pend = tmp;
	w->pend_len = 0;
	w->pend_lines = 0;
	w->busy = true;
	rc = uv_queue_work(w->loop, &w->work, on_work, on_work_done);
	if (rc < 0) {
		w->busy = false;
		w->sink.counters.drops += w->fly_lines;
		w->sink.counters.errors++;
		w->fly_len = 0;
		w->fly_lines = 0;
		LOG_RATELIMITED(LOG_ERROR, "sink", "%s sink: uv_queue_work: %s", w->sink.ops->name,
				uv_strerror(rc));
	}
}

int sink_writer_write(struct sink *s, const char *line, size_t len)
{
	struct sink_writer *w = (struct sink_writer *)s;

	if (w->closing || w->pend_len + len + 1 > w->cap) {
		s->counters.drops++;
		return -ENOBUFS;
	}
	memcpy(w->pend + w->pend_len, line, len);
	w->pend[w->pend_len + len] = '\n';
	w->pend_len += len + 1;
	w->pend_lines++;
	start_write(w);
	return 0;
}

void sink_writer_flush(struct sink *s)
{
	start_write((struct sink_writer *)s);
}

void sink_writer_close(struct sink *s, sink_closed_fn cb, void *arg)
{
	struct sink_writer *w = (struct sink_writer *)s;

	w->closing = true;
	w->closed_cb = cb;
	w->closed_arg = arg;
	start_write(w);
	if (!w->busy)
		finish_close(w);
}
