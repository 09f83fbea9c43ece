/*
 * tapio-controller as a library: one libuv loop tying together the store, the aggregate, the
 * registry and the ingest server, plus signals, the periodic stats line and store
 * maintenance (docs/controller.md). main.c only parses flags and calls controller_run() or
 * controller_dump().
 */
#ifndef TAPIO_CONTROLLER_CONTROLLER_H
#define TAPIO_CONTROLLER_CONTROLLER_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "controller/aggregate.h"
#include "controller/config_dist.h"
#include "controller/http.h"
#include "controller/ingest.h"
#include "controller/registry.h"
#include "controller/store.h"

struct controller_options {
	struct ingest_options ingest;
	struct store_options store;    /* store.dir = the data directory */
	uint32_t stats_interval_ms;    /* periodic stats log line; 0 → 60000 */
	uint32_t maintain_interval_ms; /* store_maintain cadence; 0 → 10000 */
	struct http_options http;      /* query API (docs/api.md) */
	const char *profile_path;      /* --profile: evidence profile to distribute; NULL = none */
	/* ingest TLS (docs/security.md): cert_file set → TLS 1.3, client_ca_file → mTLS */
	struct tls_server_options tls;
	bool plaintext; /* --plaintext: plaintext ingest on purpose, no warning */
};

/* Fills *o with every default (ingest_options_defaults, store_options_defaults, …). */
void controller_options_defaults(struct controller_options *o);

struct controller {
	uv_loop_t *loop;
	struct controller_options opt;
	struct store *store;
	struct aggregate *aggregate;
	struct registry registry;
	struct ingest ingest;
	bool ingest_started;
	struct http http;	   /* query API server */
	struct config_dist config; /* profile, generation, pushes (controller/config_dist.h) */
	uv_signal_t sigint, sigterm, sigusr1;
	uv_timer_t stats_timer, maintain_timer;
	bool handles_inited, stopping;
	uint64_t started_ns;
	struct tls_ctx *tls; /* ingest server context, NULL when plaintext */
};

/*
 * Opens the store, rebuilds the aggregate, starts listening and arms signals and timers on
 * loop. Returns 0, or -errno (store_open's or the listener's); on failure run the loop until
 * it ends and then call controller_close().
 */
int controller_open(struct controller *c, uv_loop_t *loop, const struct controller_options *o);

/* Graceful stop (what SIGINT/SIGTERM do): see ingest_stop; the loop then ends. Idempotent. */
void controller_stop(struct controller *c);

/* After the loop ended: closes the store, frees everything. Returns 0 or store_close's -errno. */
int controller_close(struct controller *c);

/* {"controller":{…},"ingest":{…},"store":{…},"registry":{…}}; new reference or NULL. */
json_t *controller_status_json(struct controller *c);

/*
 * The whole process: raises RLIMIT_NOFILE, runs the controller on its own loop until SIGINT
 * or SIGTERM, logs "tapio-controller ready: listening on HOST:PORT, data in DIR" once
 * listening. Returns 0 on a clean stop (uv_loop_close() returned 0), 1 otherwise.
 */
int controller_run(const struct controller_options *o);

struct dump_options {
	const char *dir;
	bool json;	   /* JSON lines instead of the aligned table */
	uint64_t since_ns; /* 0 → from the beginning */
	int type;	   /* enum tapio_occ_type, -1 → all */
	size_t limit;	   /* 0 → all */
};

/*
 * The --dump inspector: opens the store in dir (recovering it, read-mostly), prints matching
 * occurrences oldest first to stdout (JSON lines via occ_json_write, or a table) and then a
 * summary (segments, records, time range, counts by type; on stderr with --json so stdout
 * stays pure JSON lines). Starts no server. Returns 0, or 1 after printing one error line.
 */
int controller_dump(const struct dump_options *o);

#endif
