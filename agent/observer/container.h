/* Container observer: abnormal process exits and OOM kills. */
#ifndef TAPIO_OBS_CONTAINER_H
#define TAPIO_OBS_CONTAINER_H

#include <stdbool.h>

#include "ebpf/headers/container.h"
#include "agent/observer/observer.h"

enum container_verdict {
	CONTAINER_MALFORMED = -1,
	CONTAINER_NONE = 0,    /* clean exit, or an exit status the operator ignores */
	CONTAINER_EXIT_SIGNAL, /* killed by a signal: abnormal_exit, severity error */
	CONTAINER_EXIT_STATUS, /* non-zero exit status: abnormal_exit, severity warning */
	CONTAINER_OOM_KILL,    /* chosen by the OOM killer: oom_kill, critical */
};

/* A raw task->exit_code split into its parts. */
struct container_exit {
	int32_t status;	  /* (code >> 8) & 0xff, 0 when killed by a signal */
	int32_t signal;	  /* code & 0x7f */
	bool core_dumped; /* code & 0x80 */
};

/* Pure: splits a raw exit code. */
struct container_exit container_decode_exit(int32_t raw);

/*
 * Pure: what is this record? Validates size and kind; `s` supplies the ignored exit codes
 * (the kernel filters them too, but userspace does not trust it). *ev points into data on
 * success.
 */
enum container_verdict container_classify(const void *data, size_t len,
					  const struct tapio_settings *s,
					  const struct tapio_container_event **ev);

/* Pure: fills *occ for a judged fact (verdict > CONTAINER_NONE). */
void container_build_occurrence(const struct tapio_container_event *ev,
				enum container_verdict verdict, const struct observer_ctx *ctx,
				struct tapio_occurrence *occ);

struct container_observer;

/* Returns a new observer (owned by the caller, release with _free), or NULL (ENOMEM). */
struct container_observer *container_observer_new(const struct tapio_settings *s,
						  const struct observer_ctx *ctx);
void container_observer_free(struct container_observer *o);
void container_observer_set_settings(struct container_observer *o, const struct tapio_settings *s);
/* Consumes one raw record; every death is its own occurrence (no dedupe). Returns 0, or
 * -EINVAL when malformed (counted). */
int container_observer_handle(struct container_observer *o, const void *data, size_t len);
/* Nothing is windowed here; present so the loop drives every observer alike. */
void container_observer_tick(struct container_observer *o, uint64_t now_mono_ns);
void container_observer_flush(struct container_observer *o);

#endif
