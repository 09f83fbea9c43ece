/* Network observer: SYN_SENT outcomes, retransmit bursts, RTT degradation. */
#ifndef TAPIO_OBS_NETWORK_H
#define TAPIO_OBS_NETWORK_H

#include <stdbool.h>

#include "ebpf/headers/network.h"
#include "agent/observer/observer.h"

enum network_verdict {
	NETWORK_MALFORMED = -1,
	NETWORK_NONE = 0,   /* not an anomaly (e.g. SYN_SENT→CLOSE by the application) */
	NETWORK_REFUSED,    /* RST in SYN_SENT / ECONNREFUSED */
	NETWORK_TIMEOUT,    /* SYN_SENT→CLOSE without a RST: ETIMEDOUT or ICMP soft error */
	NETWORK_RETRANSMIT, /* one retransmit: feeds the burst window */
	NETWORK_RTT_SAMPLE, /* one RTT sample: feeds the baseline */
};

/* Pure: what is this record? Validates size and kind; *ev points into data on success. */
enum network_verdict network_classify(const void *data, size_t len,
				      const struct tapio_net_event **ev);

/*
 * Pure: fills *occ for a judged fact. `type` is one of the network occurrence types;
 * count/first/last (mono ns) describe collapsed repeats (count 0 = single fact);
 * baseline_ms/current_ms are used for rtt_degradation only.
 */
void network_build_occurrence(const struct tapio_net_event *ev, enum tapio_occ_type type,
			      uint32_t count, uint64_t first_mono_ns, uint64_t last_mono_ns,
			      double baseline_ms, double current_ms, const struct observer_ctx *ctx,
			      struct tapio_occurrence *occ);

/* Kernel TCP state name ("ESTABLISHED", "SYN_SENT", …, "CLOSE"), "UNKNOWN" for numbers the
 * kernel does not define. Static string, never NULL. */
const char *network_tcp_state_name(unsigned state);

/* One rtt_degradation per endpoint at most every 10 s; endpoints idle 10 min are evicted. */
#define NETWORK_RTT_COOLDOWN_NS (10ull * 1000000000ull)
#define NETWORK_RTT_IDLE_NS	(600ull * 1000000000ull)
#define NETWORK_RTT_EWMA_SHIFT	3 /* alpha = 1/8, as the kernel's own srtt */

struct network_observer;

struct network_observer *network_observer_new(const struct tapio_settings *s,
					      const struct observer_ctx *ctx);
void network_observer_free(struct network_observer *o);
/* Applies new settings (runtime config); pending windows keep their counts. */
void network_observer_set_settings(struct network_observer *o, const struct tapio_settings *s);
/* Consumes one raw record. Returns 0, or -EINVAL when malformed (counted). */
int network_observer_handle(struct network_observer *o, const void *data, size_t len);
/* Emits windows that closed before now_mono_ns; evicts idle state. */
void network_observer_tick(struct network_observer *o, uint64_t now_mono_ns);
/* Emits everything pending (shutdown). */
void network_observer_flush(struct network_observer *o);

#endif
