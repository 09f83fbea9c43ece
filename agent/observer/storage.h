/* Storage observer: failed and slow block requests, collapsed per device. */
#ifndef TAPIO_OBS_STORAGE_H
#define TAPIO_OBS_STORAGE_H

#include <stdbool.h>

#include "ebpf/headers/storage.h"
#include "agent/observer/observer.h"

enum storage_verdict {
	STORAGE_MALFORMED = -1,
	STORAGE_NONE = 0,	  /* completed without error, faster than the warning threshold */
	STORAGE_IO_ERROR,	  /* blk_status_t != 0: io_error, critical */
	STORAGE_LATENCY_WARNING,  /* latency >= storage_warning_ms */
	STORAGE_LATENCY_CRITICAL, /* latency >= storage_critical_ms */
};

/* Pure: what is this record? Validates size; thresholds come from s. */
enum storage_verdict storage_classify(const void *data, size_t len, const struct tapio_settings *s,
				      const struct tapio_storage_event **ev);

/* Pure: negative errno for a kernel blk_status_t (block/blk-core.c blk_errors[]); 0 stays 0,
 * a value that is already a negative errno is kept, unknown statuses map to -EIO. */
int storage_errno_from_blk_status(int32_t status);

/* Pure: name of the request opcode in cmd_flags ("read", "write", …, "op_<n>"); writes at
 * most len bytes into buf and returns buf. */
const char *storage_opcode_name(uint32_t cmd_flags, char *buf, size_t len);

/*
 * Pure: fills *occ for a judged fact (verdict > STORAGE_NONE) from the record ev (the worst
 * one of a window); count/first/last (mono ns) describe collapsed repeats (count 0 = single).
 */
void storage_build_occurrence(const struct tapio_storage_event *ev, enum storage_verdict verdict,
			      uint32_t count, uint64_t first_mono_ns, uint64_t last_mono_ns,
			      const struct observer_ctx *ctx, struct tapio_occurrence *occ);

struct storage_observer;

/* Returns a new observer (owned by the caller, release with _free), or NULL (ENOMEM). */
struct storage_observer *storage_observer_new(const struct tapio_settings *s,
					      const struct observer_ctx *ctx);
void storage_observer_free(struct storage_observer *o);
/* Applies new settings; pending windows keep their counts. */
void storage_observer_set_settings(struct storage_observer *o, const struct tapio_settings *s);
/* Consumes one raw record. Returns 0, or -EINVAL when malformed (counted). */
int storage_observer_handle(struct storage_observer *o, const void *data, size_t len);
/* Emits the windows (per device, type and severity) that closed by now_mono_ns. */
void storage_observer_tick(struct storage_observer *o, uint64_t now_mono_ns);
/* Emits everything pending (shutdown). */
void storage_observer_flush(struct storage_observer *o);

#endif
