/*
 * The controller's ingest server (SPEC §6, docs/controller.md): one libuv TCP listener,
 * one small struct per agent connection, the session protocol (controller/session.h) on top
 * of the frame codec, batches appended to the store and acknowledged only after the group
 * commit that made them durable, the registry kept up to date, explicit backpressure and
 * timeouts. Never trusts a byte from the peer: every bad frame gets an Error, a counter by
 * code and a disconnect.
 *
 * Memory per idle connection is one struct conn (under 1 KB) plus the registry entry: reads
 * land in one loop-wide buffer (libuv reads are synchronous inside the callback and the
 * decoder copies what it keeps), and a connection's decoder buffer is released whenever it
 * holds no partial frame.
 *
 * Threading: loop thread only.
 */
#ifndef TAPIO_CONTROLLER_INGEST_H
#define TAPIO_CONTROLLER_INGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "common/codec.h"
#include "common/tls.h"
#include "controller/aggregate.h"
#include "controller/registry.h"
#include "controller/store.h"

#define INGEST_READ_BUF (64u << 10)
/*
 * Bytes read per loop iteration, over all connections: past it the rest wait for the next
 * iteration (still ready: nothing is lost), so the loop gets back to the thread pool's commit
 * notifications within a few milliseconds however many connections have data.
 */
#define INGEST_ITER_BYTES	  (1u << 20)
#define INGEST_ERROR_CODES	  9 /* Tapio__V1__ErrorCode values 0..8 */
#define INGEST_DEFAULT_PORT	  7070
#define INGEST_DEFAULT_BACKLOG	  1024
#define INGEST_DEFAULT_HELLO_MS	  10000
#define INGEST_DEFAULT_IDLE_MS	  90000
#define INGEST_DEFAULT_HB_MS	  20000
#define INGEST_DEFAULT_MAX_OUT	  (256u << 10)
#define INGEST_DEFAULT_HIGH_WATER (32ull << 20)
#define INGEST_DEFAULT_LOW_WATER  (8ull << 20)

struct ingest_options {
	const char *host;		/* listen address (IPv4 or IPv6 literal) */
	int port;			/* 0 → an ephemeral port (see ingest_port) */
	int backlog;			/* 0 → INGEST_DEFAULT_BACKLOG */
	uint32_t max_frame;		/* 0 → CODEC_DEFAULT_MAX_FRAME */
	uint32_t hello_timeout_ms;	/* 0 → INGEST_DEFAULT_HELLO_MS */
	uint32_t idle_timeout_ms;	/* 0 → INGEST_DEFAULT_IDLE_MS */
	uint32_t heartbeat_interval_ms; /* sent in Welcome; 0 → INGEST_DEFAULT_HB_MS */
	size_t max_output_bytes;	/* unsent output cap per connection; 0 → default */
	uint64_t high_water_bytes;	/* pause batch readers above this many undurable bytes */
	uint64_t low_water_bytes;	/* resume them below this */
	const char *controller_id;	/* Welcome.controller_id (copied) */
	const char *token;		/* required Hello.token; NULL/"" → none (copied) */
	struct tls_ctx *tls; /* server context: TLS on every connection; NULL → plaintext.
			      * Borrowed: must outlive the ingest (docs/security.md) */
};

/* Fills *o with the defaults (host 127.0.0.1, port 7070). */
void ingest_options_defaults(struct ingest_options *o);

struct ingest_stats {
	uint64_t accepted, closed, current; /* connections */
	uint64_t accept_errors;
	uint64_t frames_in, frames_out, bytes_in, bytes_out;
	uint64_t hellos, heartbeats, batches, occurrences, acks;
	uint64_t duplicates, gaps, gap_sequences, regressions, invalid_occurrences;
	uint64_t config_applied, config_rejected;
	uint64_t errors_sent[INGEST_ERROR_CODES]; /* Error frames sent, by wire code */
	uint64_t peer_errors;			  /* Error frames received from agents */
	uint64_t hello_timeouts, idle_timeouts, output_overflows, superseded;
	uint64_t commits, commit_failures;
	uint64_t backpressure_events; /* times reading was paused for the store */
	uint64_t appended_bytes, durable_bytes;
	bool backpressure;			/* batch readers are paused right now */
	uint64_t tls_handshakes;		/* completed TLS handshakes */
	uint64_t tls_handshake_failures;	/* refused or broken handshakes */
	uint64_t tls_failures[TLS_FAIL__COUNT]; /* handshake failures by reason */
	uint64_t tls_errors;			/* TLS failures after the handshake */
};

/* Remembers which peers were told about recently (one log line per peer and reason). */
#define INGEST_PEER_LOG_SLOTS 64
struct ingest_peer_log {
	uint32_t addr_hash;
	uint8_t reason;
	uint64_t at_ms;
};

struct conn;

/*
 * What append_batch needs of an occurrence the fast path checked (drain_fast): the fast path
 * never builds the occurrence's struct (occ_wire_iter_check), and keeps this much of each.
 */
struct ingest_fast_occ {
	uint64_t timestamp_ns;
	uint32_t node_run; /* index into sc_nodes */
	uint8_t type, severity;
	bool valid; /* occurrence_validate would accept it (occ_wire_iter_check) */
};

struct ingest {
	uv_loop_t *loop;
	struct ingest_options opt;
	char *controller_id, *token, *host;
	struct store *store;
	struct registry *registry;
	struct aggregate *aggregate; /* may be NULL */
	uv_tcp_t server;
	uv_timer_t sweep;
	uv_prepare_t iter;   /* resets iter_bytes before each poll */
	uint64_t iter_bytes; /* read in this loop iteration (INGEST_ITER_BYTES) */
	int port;	     /* bound port */
	bool listening, stopping, closing_handles;
	int handles_open;	  /* server + sweep timer + iter */
	struct conn *conns;	  /* every open connection */
	struct conn *ack_waiters; /* connections waiting for a commit to Ack */
	uint8_t *rbuf;		  /* the loop-wide read buffer */
	uint8_t *tbuf;		  /* the loop-wide decrypted-read buffer (TLS only) */
	struct ingest_peer_log peer_log[INGEST_PEER_LOG_SLOTS];
	bool commit_inflight;
	uint64_t commit_mark_ticket, commit_mark_bytes;
	struct ingest_stats stats;
	struct codec_arena arena; /* every frame is decoded here; reset once it is handled */
	/* append_batch scratch, reused by every batch (grows to the largest batch) */
	struct store_record_meta *sc_meta;
	const void **sc_rec;
	size_t *sc_len, *sc_off, sc_cap;
	const uint8_t **sc_wire; /* each occurrence's received bytes (codec_batch_occurrences) */
	size_t *sc_wire_len;
	struct ingest_fast_occ *sc_fast;  /* the fast path's summary of each occurrence */
	char (*sc_nodes)[TAPIO_NAME_LEN]; /* its node names, one per run of equal ones */
	uint8_t *sc_bytes;
	size_t sc_bytes_cap;
	size_t pack_bound; /* largest packed occurrence (see occ_pack_bound) */
	void (*on_stopped)(struct ingest *in, void *ctx);
	void *stopped_ctx;
	/* called right after an agent's Welcome was queued (config distribution pushes there) */
	void (*on_welcome)(struct ingest *in, struct registry_agent *a, void *ctx);
	void *welcome_ctx;
};

/*
 * Prepares *in on loop over an open store and registry (both outlive *in; aggregate may be
 * NULL), binds and listens. Returns 0, or -errno (-EADDRINUSE, -EINVAL for a bad host, …);
 * on failure every handle is already closed once the loop runs (call uv_run to drain).
 */
int ingest_start(struct ingest *in, uv_loop_t *loop, const struct ingest_options *o,
		 struct store *store, struct registry *registry, struct aggregate *aggregate);

/* The port actually bound (useful with port 0). */
int ingest_port(const struct ingest *in);

/*
 * Graceful stop: stops accepting and reading, waits for the commit in flight (and commits
 * what was appended, acknowledging it), then closes every connection and handle and calls
 * cb(in, ctx) from the loop. Idempotent; cb may be NULL.
 */
void ingest_stop(struct ingest *in, void (*cb)(struct ingest *in, void *ctx), void *ctx);

/* Frees what ingest_start allocated; call after the stop callback ran. NULL-safe. */
void ingest_fini(struct ingest *in);

/*
 * Queues frame f to the connection now serving agent a (controller-to-agent messages such as
 * ConfigPush). Returns 0, -ENOTCONN when a has no established connection, or -EPIPE when the
 * connection was closed (output overflow, encoding failure).
 */
int ingest_send_agent(struct ingest *in, struct registry_agent *a, const Tapio__V1__Frame *f);

/* Counters so far (live view, owned by in). */
const struct ingest_stats *ingest_get_stats(const struct ingest *in);

/* Counters as a JSON object (new reference, NULL on allocation failure). */
json_t *ingest_stats_json(const struct ingest *in);

#endif
