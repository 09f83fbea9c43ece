/* Container observer: decodes exit codes and OOM victims into occurrences. */
#include "agent/observer/container.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct container_exit container_decode_exit(int32_t raw)
{
	struct container_exit x = {
	    .status = (raw >> 8) & 0xff,
	    .signal = raw & 0x7f,
	    .core_dumped = (raw & 0x80) != 0,
	};
	return x;
}

static bool exit_code_ignored(const struct tapio_settings *s, int32_t status)
{
	uint32_t n = s->n_ignored_exit_codes;

	if (n > TAPIO_MAX_IGNORED_EXIT_CODES)
		n = TAPIO_MAX_IGNORED_EXIT_CODES;
	for (uint32_t i = 0; i < n; i++)
		if (s->ignored_exit_codes[i] == status)
			return true;
	return false;
}

enum container_verdict container_classify(const void *data, size_t len,
					  const struct tapio_settings *s,
					  const struct tapio_container_event **ev)
{
	const struct tapio_container_event *e = data;
	struct container_exit x;

	if (!data || len != sizeof(*e))
		return CONTAINER_MALFORMED;
	if (ev)
		*ev = e;
	switch (e->kind) {
	case TAPIO_CT_OOM_VICTIM:
		return CONTAINER_OOM_KILL;
	case TAPIO_CT_EXIT:
		x = container_decode_exit(e->exit_code);
		if (x.signal != 0)
			return CONTAINER_EXIT_SIGNAL;
		if (x.status == 0 || exit_code_ignored(s, x.status))
			return CONTAINER_NONE;
		return CONTAINER_EXIT_STATUS;
	default:
		return CONTAINER_MALFORMED;
	}
}

/* Copies a fixed-size kernel string that may lack its NUL. */
static void copy_bounded(char *dst, size_t dst_len, const char *src, size_t src_len)
{
	size_t n = strnlen(src, src_len < dst_len ? src_len : dst_len - 1);

	if (n >= dst_len)
		n = dst_len - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

void container_build_occurrence(const struct tapio_container_event *ev,
				enum container_verdict verdict, const struct observer_ctx *ctx,
				struct tapio_occurrence *occ)
{
	enum tapio_occ_type type =
	    verdict == CONTAINER_OOM_KILL ? TAPIO_OCC_OOM_KILL : TAPIO_OCC_ABNORMAL_EXIT;
	struct container_exit x = container_decode_exit(ev->exit_code);
	struct tapio_occ_container *c;

	occurrence_init(occ, type, clock_map_to_wall(ctx->clock, ev->ts_ns), ctx->node,
			ctx->cluster);
	occ->config_generation = ev->config_generation;
	c = &occ->data.container;
	c->pid = ev->pid;
	c->tid = ev->tid;
	observer_copy_comm(c->comm, ev->comm);
	c->cgroup_id = ev->cgroup_id;
	copy_bounded(c->cgroup_path, sizeof(c->cgroup_path), ev->cgroup_path,
		     sizeof(ev->cgroup_path));
	c->memory_usage_bytes = ev->memory_usage_bytes;
	c->memory_limit_bytes = ev->memory_limit_bytes;

	switch (verdict) {
	case CONTAINER_OOM_KILL:
		c->rss_bytes = ev->rss_bytes;
		observer_message(occ, "OOM killer chose process %u (%s) in %s", ev->pid, c->comm,
				 c->cgroup_path[0] ? c->cgroup_path : "/");
		break;
	case CONTAINER_EXIT_SIGNAL: {
		const char *abbrev = sigabbrev_np(x.signal);

		occ->severity = TAPIO_SEV_ERROR;
		c->exit_code = x.status;
		c->signal = x.signal;
		c->core_dumped = x.core_dumped;
		observer_message(occ, "process %u (%s) killed by signal %d%s%s%s%s", ev->pid,
				 c->comm, x.signal, abbrev ? " (SIG" : "", abbrev ? abbrev : "",
				 abbrev ? ")" : "", x.core_dumped ? ", core dumped" : "");
		break;
	}
	case CONTAINER_EXIT_STATUS:
	default:
		occ->severity = TAPIO_SEV_WARNING;
		c->exit_code = x.status;
		observer_message(occ, "process %u (%s) exited with status %d", ev->pid, c->comm,
				 x.status);
		break;
	}
}

struct container_observer {
	struct tapio_settings settings;
	struct observer_ctx ctx;
};

struct container_observer *container_observer_new(const struct tapio_settings *s,
						  const struct observer_ctx *ctx)
{
	struct container_observer *o = calloc(1, sizeof(*o));

	if (!o)
		return NULL;
	o->settings = *s;
	o->ctx = *ctx;
	return o;
}

void container_observer_free(struct container_observer *o)
{
	free(o);
}

void container_observer_set_settings(struct container_observer *o, const struct tapio_settings *s)
{
	o->settings = *s;
}

int container_observer_handle(struct container_observer *o, const void *data, size_t len)
{
	const struct tapio_container_event *ev = NULL;
	enum container_verdict v = container_classify(data, len, &o->settings, &ev);
	struct tapio_occurrence occ;

	o->ctx.stats->records++;
	if (v == CONTAINER_MALFORMED) {
		o->ctx.stats->malformed++;
		return -EINVAL;
	}
	if (v == CONTAINER_NONE)
		return 0;
	container_build_occurrence(ev, v, &o->ctx, &occ);
	observer_emit(&o->ctx, &occ);
	return 0;
}

void container_observer_tick(struct container_observer *o, uint64_t now_mono_ns)
{
	(void)o;
	(void)now_mono_ns;
}

void container_observer_flush(struct container_observer *o)
{
	(void)o;
}
