/*
 * The agent's controller client (SPEC §4/§5, docs/agent-controller.md): one outbound TCP
 * session to tapio-controller on the caller's libuv loop. Occurrences are batched in memory,
 * sealed batches get per-session sequence numbers, are kept in a bounded memory queue and an
 * optional on-disk spool, sent in order and released when the controller acknowledges them.
 * Reconnects with exponential backoff and full jitter; resends every unacknowledged batch with
 * its original (session, sequence). Nothing on the submit path blocks or does I/O.
 */
#ifndef TAPIO_CLIENT_H
#define TAPIO_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common/occurrence.h"
#include "tapio.pb-c.h"

#define CLIENT_DEFAULT_HEARTBEAT_MS 10000u
#define CLIENT_DEFAULT_BATCH_MAX    512u
#define CLIENT_DEFAULT_BATCH_MAX_MS 200u
#define CLIENT_DEFAULT_QUEUE_BYTES  (8ull << 20)
#define CLIENT_DEFAULT_SPOOL_BYTES  (256ull << 20)
#define CLIENT_BACKOFF_MIN_MS	    250u
#define CLIENT_BACKOFF_MAX_MS	    30000u
#define CLIENT_HANDSHAKE_TIMEOUT_MS 10000u
#define CLIENT_MAX_LABELS	    16
#define CLIENT_MAX_CAPABILITIES	    16
#define CLIENT_MAX_DEGRADED	    8
#define CLIENT_MAX_PACKED_BYTES	    (64u << 10) /* one pre-packed occurrence */
#define CLIENT_PACKED_SEAL_BYTES    (1u << 20)	/* a pre-packed batch is sealed past this */

struct client;

/* What the agent reports in each heartbeat (mirrors tapio.v1.Counters / ObserverState). */
struct client_observer_state {
	const char *name; /* "network", … (NULL ends the list early) */
	Tapio__V1__ObserverStatus state;
	const char *reason;
};

struct client_heartbeat {
	uint64_t events;
	uint64_t anomalies[TAPIO_OCC__COUNT];
	uint64_t lost;
	uint64_t malformed;
	uint64_t correlation_drops;
	uint64_t sink_writes;
	uint64_t sink_drops;
	struct client_observer_state observers[TAPIO_OBS__COUNT];
	const char *degraded[CLIENT_MAX_DEGRADED]; /* NULL-terminated when fewer */
};

/* The client's own counters (client_counters). Drops are in occurrences. */
struct client_stats {
	uint64_t submitted; /* occurrences accepted by client_submit */
	uint64_t batches_sealed;
	uint64_t batches_sent;	 /* frames written (first sends and resends) */
	uint64_t batches_resent; /* sends of a sequence already sent before */
	uint64_t batches_acked;
	uint64_t occurrences_acked;
	uint64_t dropped_queue;	      /* lost: memory bound exceeded with no spool */
	uint64_t dropped_spool;	      /* lost: spool bound exceeded */
	uint64_t dropped_closing;     /* lost: submitted after client_close started */
	uint64_t dropped_spool_error; /* lost: spool append failed and memory bound exceeded */
	uint64_t send_failures;	      /* connects/writes that failed */
	uint64_t connects;	      /* sessions welcomed */
	uint64_t reconnects;	      /* connection attempts after the first */
	uint64_t errors_received;     /* Error frames from the controller */
	uint64_t tls_failures;	      /* TLS handshakes or sessions that failed */
	uint64_t configs_applied;
	uint64_t configs_rejected;
	uint64_t queue_depth; /* unacknowledged batches (memory + spool) */
	uint64_t queue_bytes; /* bytes of batches held in memory */
	uint64_t spool_bytes;
	uint64_t spool_repaired_bytes;
	uint64_t next_sequence;
	uint64_t acked_sequence;
	bool connected; /* welcomed and not disconnected */
};

/*
 * Called for ConfigPush frames. Return 0 to accept (the client answers ConfigApplied and uses
 * generation/hash in later Hello/Heartbeat frames) or a negative value with a reason in
 * reason[0..len) to reject (ConfigRejected).
 */
typedef int (*client_config_fn)(void *arg, const Tapio__V1__ConfigPush *push, char *reason,
				size_t len);
/* Fills *hb for the next heartbeat (zeroed before the call). */
typedef void (*client_counters_fn)(void *arg, struct client_heartbeat *hb);
/* Batch events, for tools (loadgen's acked log): sealed, acknowledged, dropped (lost). */
typedef void (*client_batch_fn)(void *arg, uint64_t seq, uint32_t count);
typedef void (*client_closed_fn)(void *arg);

struct client_options {
	const char *host; /* controller host name or address */
	uint16_t port;
	const char *agent_id;
	const char *node;
	const char *cluster;
	const char *version;				   /* NULL = TAPIO_VERSION */
	const char *capabilities[CLIENT_MAX_CAPABILITIES]; /* NULL-terminated when fewer */
	const char *label_keys[CLIENT_MAX_LABELS];
	const char *label_values[CLIENT_MAX_LABELS];
	const char *token; /* Hello.token (never logged) */
	/* TLS (docs/security.md): tls_ca set → TLS 1.3 verifying the controller against it */
	const char *tls_ca;
	const char *tls_cert; /* client certificate for mTLS (with tls_key) */
	const char *tls_key;
	const char *tls_server_name;	/* name the certificate must carry; NULL → host */
	uint32_t heartbeat_interval_ms; /* 0 = default; Welcome may override */
	uint32_t batch_max;		/* 0 = default */
	uint32_t batch_max_ms;		/* 0 = default */
	uint64_t queue_max_bytes;	/* 0 = default */
	const char *spool_dir;		/* NULL = memory only */
	uint64_t spool_max_bytes;	/* 0 = default */
	uint64_t spool_segment_bytes;	/* 0 = spool default */
	bool spool_fsync;
	uint32_t backoff_min_ms; /* 0 = CLIENT_BACKOFF_MIN_MS (tests use smaller) */
	uint32_t backoff_max_ms; /* 0 = CLIENT_BACKOFF_MAX_MS */
	client_counters_fn counters;
	client_config_fn on_config;
	client_batch_fn on_sealed;
	client_batch_fn on_acked;
	client_batch_fn on_dropped;
	void *arg; /* passed to every callback */
};

/*
 * Creates a client on loop. Strings in o are copied. With spool_dir the spool is opened and
 * recovered here (blocking, before the caller's loop serves anything): its session id and
 * unacknowledged batches are adopted. Returns NULL with a message in err.
 */
struct client *client_new(uv_loop_t *loop, const struct client_options *o, char *err,
			  size_t errlen);

/* Starts connecting. Returns 0 or -errno. */
int client_start(struct client *c);

/*
 * Adds one occurrence (copied) to the open batch. Never blocks, never does I/O. Returns 0,
 * or -ESHUTDOWN when the client is closing (the occurrence is dropped and counted).
 */
int client_submit(struct client *c, const struct tapio_occurrence *occ);

/*
 * Adds one occurrence that is already a packed tapio.v1.Occurrence (bytes[0..len), copied)
 * to the open batch: the batch frame is then built by concatenating such bytes, with no
 * conversion or packing per occurrence (loadgen; a sender that keeps occurrences packed).
 * The bytes are not checked here: the controller validates every occurrence and drops (and
 * counts) invalid ones. A struct and a pre-packed occurrence never share a batch (switching
 * kinds seals the open batch first), so submit order is kept. Never blocks, never does I/O.
 * Returns 0, -EINVAL (len 0 or over CLIENT_MAX_PACKED_BYTES), -ENOMEM (dropped and counted)
 * or -ESHUTDOWN as client_submit.
 */
int client_submit_packed(struct client *c, const uint8_t *bytes, size_t len);

/*
 * client_submit_packed without the copy: reserves len bytes for one pre-packed occurrence at
 * the end of the open batch (the batch frame is built in place) and points *out at them. The
 * caller writes exactly len bytes there, then calls client_packed_commit() before any other
 * call on c; until then the occurrence is not part of the batch (a reservation that is not
 * committed is simply overwritten by the next one). Returns 0 or what client_submit_packed
 * would return, with the same drop accounting; *out is set only on success.
 */
int client_packed_reserve(struct client *c, size_t len, uint8_t **out);

/* Adds the reserved occurrence to the open batch (and seals it when full), as submitted. */
void client_packed_commit(struct client *c);

/* Seals the open batch now (if any). */
void client_flush(struct client *c);

/* Config generation/hash reported in Hello and Heartbeat frames (hash copied). */
void client_set_config(struct client *c, uint64_t generation, const char *hash);

uint64_t client_session_id(const struct client *c);
void client_counters(const struct client *c, struct client_stats *out);
/* client_counters' queue_bytes alone (bytes of batches held in memory), for a sender's pacing. */
uint64_t client_queue_bytes(const struct client *c);

/*
 * Seals the open batch, waits for pending spool writes, closes the connection and every
 * handle, frees the client, then calls cb(arg) on the loop. Batches not yet acknowledged stay
 * in the spool (when there is one). The client must not be used after this call.
 */
void client_close(struct client *c, client_closed_fn cb, void *arg);

/* Parses "HOST:PORT" or "[v6]:PORT". Returns 0 or -EINVAL. */
int client_parse_endpoint(const char *s, char *host, size_t hostlen, uint16_t *port);

#endif
