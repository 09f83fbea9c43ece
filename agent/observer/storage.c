/* Storage observer: judges block completions and collapses repeats per device. */
#include "agent/observer/storage.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_PER_MS 1000000ull

enum storage_verdict storage_classify(const void *data, size_t len, const struct tapio_settings *s,
				      const struct tapio_storage_event **ev)
{
	const struct tapio_storage_event *e = data;

	if (!data || len != sizeof(*e))
		return STORAGE_MALFORMED;
	if (ev)
		*ev = e;
	if (e->error != 0)
		return STORAGE_IO_ERROR;
	if (e->latency_ns >= (uint64_t)s->storage_critical_ms * NS_PER_MS)
		return STORAGE_LATENCY_CRITICAL;
	if (e->latency_ns >= (uint64_t)s->storage_warning_ms * NS_PER_MS)
		return STORAGE_LATENCY_WARNING;
	return STORAGE_NONE;
}

/* include/linux/blk_types.h status numbers -> block/blk-core.c blk_errors[] (6.x). */
static const int blk_status_errno[] = {
    [0] = 0,
    [1] = -EOPNOTSUPP,	  /* BLK_STS_NOTSUPP */
    [2] = -ETIMEDOUT,	  /* BLK_STS_TIMEOUT */
    [3] = -ENOSPC,	  /* BLK_STS_NOSPC */
    [4] = -ENOLINK,	  /* BLK_STS_TRANSPORT */
    [5] = -EREMOTEIO,	  /* BLK_STS_TARGET */
    [6] = -EBADE,	  /* BLK_STS_RESV_CONFLICT (BLK_STS_NEXUS before 6.5) */
    [7] = -ENODATA,	  /* BLK_STS_MEDIUM */
    [8] = -EILSEQ,	  /* BLK_STS_PROTECTION */
    [9] = -ENOMEM,	  /* BLK_STS_RESOURCE */
    [10] = -EIO,	  /* BLK_STS_IOERR */
    [11] = -EREMCHG,	  /* BLK_STS_DM_REQUEUE */
    [12] = -EAGAIN,	  /* BLK_STS_AGAIN */
    [13] = -EBUSY,	  /* BLK_STS_DEV_RESOURCE */
    [14] = -ETOOMANYREFS, /* BLK_STS_ZONE_OPEN_RESOURCE */
    [15] = -EOVERFLOW,	  /* BLK_STS_ZONE_ACTIVE_RESOURCE */
    [16] = -ENODEV,	  /* BLK_STS_OFFLINE */
    [17] = -ETIME,	  /* BLK_STS_DURATION_LIMIT */
    [18] = -EIO,	  /* unassigned */
    [19] = -EINVAL,	  /* BLK_STS_INVAL (6.11+) */
};

int storage_errno_from_blk_status(int32_t status)
{
	if (status == 0)
		return 0;
	if (status < 0 && status > -4096)
		return status; /* already an errno (the classic tracepoint's encoding) */
	if (status > 0 && (size_t)status < sizeof(blk_status_errno) / sizeof(blk_status_errno[0]))
		return blk_status_errno[status];
	return -EIO;
}

/* include/linux/blk_types.h enum req_op */
static const char *const req_op_names[] = {
    [0] = "read",	  [1] = "write",	[2] = "flush",	     [3] = "discard",
    [5] = "secure_erase", [9] = "write_zeroes", [10] = "zone_open",  [11] = "zone_close",
    [12] = "zone_finish", [13] = "zone_append", [15] = "zone_reset", [17] = "zone_reset_all",
    [34] = "drv_in",	  [35] = "drv_out",
};

const char *storage_opcode_name(uint32_t cmd_flags, char *buf, size_t len)
{
	uint32_t op = cmd_flags & 0xff;

	if (op < sizeof(req_op_names) / sizeof(req_op_names[0]) && req_op_names[op])
		snprintf(buf, len, "%s", req_op_names[op]);
	else
		snprintf(buf, len, "op_%u", op);
	return buf;
}

void storage_build_occurrence(const struct tapio_storage_event *ev, enum storage_verdict verdict,
			      uint32_t count, uint64_t first_mono_ns, uint64_t last_mono_ns,
			      const struct observer_ctx *ctx, struct tapio_occurrence *occ)
{
	enum tapio_occ_type type =
	    verdict == STORAGE_IO_ERROR ? TAPIO_OCC_IO_ERROR : TAPIO_OCC_LATENCY_SPIKE;
	uint64_t ts = count ? first_mono_ns : ev->ts_ns;
	struct tapio_occ_storage *st;

	occurrence_init(occ, type, clock_map_to_wall(ctx->clock, ts), ctx->node, ctx->cluster);
	occ->config_generation = ev->config_generation;
	if (count) {
		occ->count = count;
		occ->first_seen_ns = clock_map_to_wall(ctx->clock, first_mono_ns);
		occ->last_seen_ns = clock_map_to_wall(ctx->clock, last_mono_ns);
	}
	st = &occ->data.storage;
	st->pid = ev->pid;
	observer_copy_comm(st->comm, ev->comm);
	st->dev_major = ev->dev >> 20;
	st->dev_minor = ev->dev & 0xfffff;
	st->sector = ev->sector;
	st->bytes = ev->bytes;
	storage_opcode_name(ev->cmd_flags, st->opcode, sizeof(st->opcode));
	st->latency_ms = (double)ev->latency_ns / 1e6;
	st->error_code = storage_errno_from_blk_status(ev->error);

	if (verdict == STORAGE_IO_ERROR) {
		const char *name = strerrorname_np(-st->error_code);

		occ->severity = TAPIO_SEV_CRITICAL;
		observer_message(occ, "%s of %u bytes at sector %llu on %u:%u failed: %s",
				 st->opcode, st->bytes, (unsigned long long)st->sector,
				 st->dev_major, st->dev_minor, name ? name : "EIO");
	} else {
		occ->severity =
		    verdict == STORAGE_LATENCY_CRITICAL ? TAPIO_SEV_CRITICAL : TAPIO_SEV_WARNING;
		observer_message(occ, "%s of %u bytes at sector %llu on %u:%u took %.1f ms",
				 st->opcode, st->bytes, (unsigned long long)st->sector,
				 st->dev_major, st->dev_minor, st->latency_ms);
	}
}

struct window_key {
	uint32_t dev;
	uint32_t verdict; /* encodes type and severity */
};

struct window {
	struct tapio_storage_event worst; /* highest latency of the window */
	uint32_t count;
	uint64_t first_ns;
	uint64_t last_ns;
};

struct storage_observer {
	struct tapio_settings settings;
	struct observer_ctx ctx;
	struct obs_table windows;
};

struct storage_observer *storage_observer_new(const struct tapio_settings *s,
					      const struct observer_ctx *ctx)
{
	struct storage_observer *o = calloc(1, sizeof(*o));

	if (!o)
		return NULL;
	o->settings = *s;
	o->ctx = *ctx;
	if (obs_table_init(&o->windows, OBS_TABLE_SLOTS, sizeof(struct window_key),
			   sizeof(struct window)) < 0) {
		free(o);
		return NULL;
	}
	return o;
}

void storage_observer_free(struct storage_observer *o)
{
	if (!o)
		return;
	obs_table_fini(&o->windows);
	free(o);
}

void storage_observer_set_settings(struct storage_observer *o, const struct tapio_settings *s)
{
	o->settings = *s;
}

static void close_window(struct storage_observer *o, enum storage_verdict v, const struct window *w)
{
	struct tapio_occurrence occ;

	o->ctx.stats->suppressed += w->count - 1;
	storage_build_occurrence(&w->worst, v, w->count, w->first_ns, w->last_ns, &o->ctx, &occ);
	observer_emit(&o->ctx, &occ);
}

static void window_start(struct window *w, const struct tapio_storage_event *ev)
{
	w->worst = *ev;
	w->count = 1;
	w->first_ns = ev->ts_ns;
	w->last_ns = ev->ts_ns;
}

int storage_observer_handle(struct storage_observer *o, const void *data, size_t len)
{
	uint64_t window_ns = (uint64_t)o->settings.storage_window_ms * NS_PER_MS;
	const struct tapio_storage_event *ev = NULL;
	enum storage_verdict v = storage_classify(data, len, &o->settings, &ev);
	struct tapio_occurrence occ;
	struct window_key key;
	struct window *w;

	o->ctx.stats->records++;
	if (v == STORAGE_MALFORMED) {
		o->ctx.stats->malformed++;
		return -EINVAL;
	}
	if (v == STORAGE_NONE)
		return 0;

	memset(&key, 0, sizeof(key));
	key.dev = ev->dev;
	key.verdict = (uint32_t)v;
	w = obs_table_find(&o->windows, &key);
	if (w && ev->ts_ns >= w->first_ns + window_ns) {
		close_window(o, v, w);
		window_start(w, ev);
	} else if (w) {
		w->count++;
		if (ev->latency_ns > w->worst.latency_ns)
			w->worst = *ev;
		if (ev->ts_ns < w->first_ns)
			w->first_ns = ev->ts_ns;
		if (ev->ts_ns > w->last_ns)
			w->last_ns = ev->ts_ns;
	} else {
		w = obs_table_insert(&o->windows, &key);
		if (!w) {
			/* Table full: report the fact on its own rather than lose it. */
			o->ctx.stats->correlation_drops++;
			storage_build_occurrence(ev, v, 1, ev->ts_ns, ev->ts_ns, &o->ctx, &occ);
			observer_emit(&o->ctx, &occ);
			return 0;
		}
		window_start(w, ev);
	}
	if (window_ns == 0) {
		close_window(o, v, w);
		obs_table_remove(&o->windows, &key);
	}
	return 0;
}

static void close_windows(struct storage_observer *o, uint64_t now_mono_ns, bool all)
{
	uint64_t window_ns = (uint64_t)o->settings.storage_window_ms * NS_PER_MS;

	for (uint32_t i = 0; i < o->windows.n_slots;) {
		const void *k;
		struct window *w = obs_table_at(&o->windows, i, &k);

		if (w && (all || now_mono_ns >= w->first_ns + window_ns)) {
			const struct window_key *wk = k;

			close_window(o, (enum storage_verdict)wk->verdict, w);
			obs_table_remove_at(&o->windows, i);
			continue;
		}
		i++;
	}
}

void storage_observer_tick(struct storage_observer *o, uint64_t now_mono_ns)
{
	close_windows(o, now_mono_ns, false);
}

void storage_observer_flush(struct storage_observer *o)
{
	close_windows(o, 0, true);
}
