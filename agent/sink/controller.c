/* The controller sink: sink_ops over the controller client. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/sink/controller.h"
#include "common/log.h"
#include "common/occ_json.h"

#define TAG "sink.controller"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

struct sink_controller {
	struct sink sink;
	struct client *client;
	bool closing;
	sink_closed_fn closed_cb;
	void *closed_arg;
};

int sink_controller_submit(struct sink *s, const struct tapio_occurrence *occ)
{
	struct sink_controller *sc = container_of(s, struct sink_controller, sink);

	if (sc->closing || client_submit(sc->client, occ) < 0) {
		s->counters.drops++;
		return -ENOBUFS;
	}
	s->counters.writes++;
	return 0;
}

static int controller_write(struct sink *s, const char *line, size_t len)
{
	struct tapio_occurrence occ;
	char err[160];

	if (occ_json_parse(line, len, &occ, err, sizeof(err)) < 0) {
		s->counters.drops++;
		s->counters.errors++;
		LOG_RATELIMITED(LOG_ERROR, TAG, "occ_json_parse: %s", err);
		return -EINVAL;
	}
	if (sink_controller_submit(s, &occ) < 0)
		return -ENOBUFS;
	s->counters.bytes += len + 1;
	return 0;
}

static void controller_flush(struct sink *s)
{
	struct sink_controller *sc = container_of(s, struct sink_controller, sink);

	if (!sc->closing)
		client_flush(sc->client);
}

static void on_client_closed(void *arg)
{
	struct sink_controller *sc = arg;
	struct sink_counters final = sc->sink.counters;
	sink_closed_fn cb = sc->closed_cb;
	void *cb_arg = sc->closed_arg;

	free(sc);
	if (cb)
		cb(cb_arg, &final);
}

static void controller_close(struct sink *s, sink_closed_fn cb, void *arg)
{
	struct sink_controller *sc = container_of(s, struct sink_controller, sink);

	if (sc->closing)
		return;
	sc->closing = true;
	sc->closed_cb = cb;
	sc->closed_arg = arg;
	client_close(sc->client, on_client_closed, sc);
}

static const struct sink_ops controller_ops = {
    .name = "controller",
    .write = controller_write,
    .flush = controller_flush,
    .close = controller_close,
};

struct sink *sink_controller_new(uv_loop_t *loop, const struct client_options *o, char *err,
				 size_t errlen)
{
	struct sink_controller *sc = calloc(1, sizeof(*sc));
	int ret;

	if (!sc) {
		snprintf(err, errlen, "controller sink: out of memory");
		return NULL;
	}
	sc->sink.ops = &controller_ops;
	sc->client = client_new(loop, o, err, errlen);
	if (!sc->client) {
		free(sc);
		return NULL;
	}
	ret = client_start(sc->client);
	if (ret < 0) {
		snprintf(err, errlen, "controller client start: %s", strerror(-ret));
		client_close(sc->client, NULL, NULL);
		free(sc);
		return NULL;
	}
	return &sc->sink;
}

struct client *sink_controller_client(struct sink *s)
{
	return container_of(s, struct sink_controller, sink)->client;
}
