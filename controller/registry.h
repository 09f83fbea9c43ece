/*
 * The controller's registry (SPEC §6): every agent that ever said Hello to this process, what
 * it reported in its last heartbeat, which config it runs, and per session the sequence
 * accounting (gaps, duplicates, regressions). Agents that disconnect stay known, marked
 * disconnected. Rendered as JSON (jansson) for the status output and the HTTP API.
 *
 * Threading: loop thread only. Agent pointers stay valid until registry_fini(); session
 * pointers only until the next registry_session() call on the same agent (old sessions are
 * evicted), so look them up by id instead of keeping them.
 */
#ifndef TAPIO_CONTROLLER_REGISTRY_H
#define TAPIO_CONTROLLER_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/occurrence.h"
#include "controller/session.h"
#include "tapio.pb-c.h"

#define REGISTRY_MAX_SESSIONS  8     /* per agent; the least recently active is evicted */
#define REGISTRY_MAX_OBSERVERS 8     /* observer states kept from a heartbeat */
#define REGISTRY_MAX_LIST      16    /* labels, capabilities, degraded reasons kept */
#define REGISTRY_MAX_STR       128   /* longer strings from agents are truncated */
#define REGISTRY_MAX_AGENTS    65536 /* default bound on known agents */

struct registry_session {
	struct registry_session *next;
	uint64_t session_id;
	uint64_t last_sequence;	   /* highest sequence accepted (0 = none) */
	uint64_t durable_sequence; /* highest sequence acknowledged as durable */
	uint64_t batches;	   /* batches accepted (not duplicates) */
	uint64_t occurrences;	   /* occurrences stored */
	uint64_t gaps;		   /* batches that skipped sequences */
	uint64_t gap_sequences;	   /* sequences skipped in total */
	uint64_t duplicates;	   /* resends recognised and not stored again */
	uint64_t regressions;	   /* sequences at or below last that the store never saw */
	uint64_t started_ns;
	uint64_t last_active_ns;
};

/* Agent counters from the last heartbeat (tapio.v1.Counters). */
struct registry_counters {
	uint64_t events, lost, malformed, correlation_drops, sink_writes, sink_drops;
	uint64_t send_failures, queue_depth, queue_drops, spool_bytes, spool_drops;
	uint64_t anomalies[TAPIO_OCC__COUNT];
};

struct registry_observer {
	char name[16];
	int state; /* Tapio__V1__ObserverStatus */
	char reason[128];
};

struct registry_pair {
	char *key;
	char *value; /* NULL for plain lists */
};

struct registry_agent {
	char *id;
	uint64_t key; /* registry_agent_key(id): the store's agent_key */
	char *node, *cluster, *version, *kernel, *arch;
	char remote[64]; /* peer address of the current/last connection */
	struct registry_pair labels[REGISTRY_MAX_LIST];
	size_t n_labels;
	struct registry_pair capabilities[REGISTRY_MAX_LIST];
	size_t n_capabilities;

	bool connected;
	void *owner;	   /* opaque: the ingest connection serving it now (NULL when none) */
	uint64_t connects; /* Hellos accepted */
	uint64_t first_seen_ns, connected_since_ns, disconnected_ns;
	uint64_t last_seen_ns; /* last frame of any kind */

	bool have_heartbeat;
	uint64_t last_heartbeat_ns; /* controller clock */
	uint64_t heartbeats;
	uint64_t uptime_ms;
	struct registry_counters counters;
	struct registry_observer observers[REGISTRY_MAX_OBSERVERS];
	size_t n_observers;
	struct registry_pair degraded[REGISTRY_MAX_LIST];
	size_t n_degraded;

	uint64_t config_generation;
	char config_hash[80];
	uint64_t rejected_generation; /* 0 = no rejection reported */
	char rejected_reason[160];
	uint64_t config_applied_ns; /* last ConfigApplied (controller clock), 0 = none */
	/* what config distribution pushed last (controller/config_dist.h); "" = nothing */
	uint64_t expected_generation;
	char expected_hash[80];
	uint64_t config_pushed_ns;

	/* totals over all sessions of this process */
	uint64_t batches, occurrences, duplicates, gaps, gap_sequences, regressions;
	uint64_t invalid_occurrences; /* refused by validation, dropped and counted */

	struct registry_session *sessions;
	size_t n_sessions;
};

struct registry {
	struct registry_agent **agents;
	size_t n_agents, cap_agents;
	size_t connected;
	size_t max_agents; /* registry_init sets REGISTRY_MAX_AGENTS */
	/* a connected agent silent for longer is "stale" in the JSON; 0 → never (ingest sets
	 * 3 heartbeat intervals) */
	uint64_t stale_after_ns;
	uint64_t evicted; /* disconnected agents forgotten to stay under max_agents */
};

/* Empty registry bounded to REGISTRY_MAX_AGENTS known agents (change r->max_agents). */
void registry_init(struct registry *r);
/* Frees every agent and session. NULL-safe. */
void registry_fini(struct registry *r);

/* 64-bit FNV-1a of the agent id: the store's agent_key (stable across restarts). */
uint64_t registry_agent_key(const char *agent_id);

/* The agent with this id, or NULL. */
struct registry_agent *registry_find(const struct registry *r, const char *agent_id);

/*
 * Registers an accepted Hello: creates the agent or refreshes its identity (node, version,
 * kernel, arch, labels, capabilities, config; strings cut at REGISTRY_MAX_STR bytes), marks it
 * connected at now_ns from `remote`. A new agent beyond max_agents evicts the disconnected
 * agent seen least recently. Returns 0 and *out (owned by the registry), -ENOSPC when every
 * known agent is connected and the registry is full, or -ENOMEM.
 */
int registry_hello(struct registry *r, const Tapio__V1__Hello *h, const char *remote,
		   uint64_t now_ns, struct registry_agent **out);

/* Marks a connected agent disconnected at now_ns; a no-op when it already is. */
void registry_disconnect(struct registry *r, struct registry_agent *a, uint64_t now_ns);

/* Copies a heartbeat's counters, observer states, config and degraded reasons. 0 or -ENOMEM. */
int registry_heartbeat(struct registry_agent *a, const Tapio__V1__Heartbeat *hb, uint64_t now_ns);

/* ConfigApplied: the applied generation and hash, stamped config_applied_ns (wall clock). */
void registry_config_applied(struct registry_agent *a, uint64_t generation, const char *hash);
/* A ConfigPush was queued for a at now_ns: what it is expected to run from now on. */
void registry_config_expected(struct registry_agent *a, uint64_t generation, const char *hash,
			      uint64_t now_ns);
void registry_config_rejected(struct registry_agent *a, uint64_t generation, const char *reason);

/* The session with this id, or NULL. */
struct registry_session *registry_session_find(struct registry_agent *a, uint64_t session_id);

/*
 * The session with this id, created when missing with last_sequence = durable_sequence =
 * `durable` (what the store already holds). Creating may evict the least recently active
 * session beyond REGISTRY_MAX_SESSIONS. Returns NULL only on allocation failure.
 */
struct registry_session *registry_session(struct registry_agent *a, uint64_t session_id,
					  uint64_t durable, uint64_t now_ns);

/*
 * Accounts one batch of `occurrences` stored occurrences classified as k: NEXT/GAP/
 * REGRESSION raise last_sequence (never lower it) and count; GAP adds sequence - last - 1
 * to gap_sequences; DUPLICATE only counts.
 */
void registry_session_batch(struct registry_agent *a, struct registry_session *s,
			    enum session_seq k, uint64_t sequence, uint64_t occurrences,
			    uint64_t now_ns);

/* Records that `sequence` was acknowledged as durable (keeps the maximum). */
void registry_session_acked(struct registry_session *s, uint64_t sequence);

size_t registry_known(const struct registry *r);
size_t registry_connected(const struct registry *r);

/*
 * JSON renderings (new references, caller json_decref()s; NULL on allocation failure).
 * registry_to_json: {"known":N,"connected":N,"agents":[…]}, agents sorted by id.
 * Times are RFC 3339 strings; "last_heartbeat_age_s" and "stale" (connected, but no frame for
 * stale_after_ns) are computed against now_ns.
 */
json_t *registry_agent_to_json(const struct registry_agent *a, uint64_t now_ns);
/* registry_agent_to_json with the registry's staleness rule. */
json_t *registry_agent_json(const struct registry *r, const struct registry_agent *a,
			    uint64_t now_ns);
/* Whether a is connected but silent for longer than r->stale_after_ns at now_ns. */
bool registry_agent_stale(const struct registry *r, const struct registry_agent *a,
			  uint64_t now_ns);
json_t *registry_to_json(const struct registry *r, uint64_t now_ns);

#endif
