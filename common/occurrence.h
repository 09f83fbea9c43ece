/*
 * The occurrence model (SPEC §3): one named piece of evidence. Fixed-size, no heap: an
 * occurrence can be copied with `=`, queued by value and encoded without allocation.
 */
#ifndef TAPIO_OCCURRENCE_H
#define TAPIO_OCCURRENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TAPIO_ULID_LEN	     26
#define TAPIO_NAME_LEN	     64 /* node, cluster names */
#define TAPIO_MESSAGE_LEN    160
#define TAPIO_OCC_COMM_LEN   16
#define TAPIO_OCC_CGROUP_LEN 128
#define TAPIO_IP_STR_LEN     46 /* INET6_ADDRSTRLEN */

enum tapio_observer {
	TAPIO_OBS_NETWORK = 0,
	TAPIO_OBS_CONTAINER,
	TAPIO_OBS_STORAGE,
	TAPIO_OBS_NODE,
	TAPIO_OBS__COUNT,
};

/* Catalogue order; stable within a wire version (used as array indexes for counters). */
enum tapio_occ_type {
	TAPIO_OCC_CONNECTION_REFUSED = 0,
	TAPIO_OCC_CONNECTION_TIMEOUT,
	TAPIO_OCC_RETRANSMIT_SPIKE,
	TAPIO_OCC_RTT_DEGRADATION,
	TAPIO_OCC_OOM_KILL,
	TAPIO_OCC_ABNORMAL_EXIT,
	TAPIO_OCC_IO_ERROR,
	TAPIO_OCC_LATENCY_SPIKE,
	TAPIO_OCC_CPU_STALL,
	TAPIO_OCC_MEMORY_PRESSURE,
	TAPIO_OCC_IPC_DEGRADATION,
	TAPIO_OCC__COUNT,
};

enum tapio_severity {
	TAPIO_SEV_DEBUG = 0,
	TAPIO_SEV_INFO,
	TAPIO_SEV_WARNING,
	TAPIO_SEV_ERROR,
	TAPIO_SEV_CRITICAL,
	TAPIO_SEV__COUNT,
};

enum tapio_outcome {
	TAPIO_OUT_SUCCESS = 0,
	TAPIO_OUT_FAILURE,
	TAPIO_OUT_TIMEOUT,
	TAPIO_OUT_IN_PROGRESS,
	TAPIO_OUT_UNKNOWN,
	TAPIO_OUT__COUNT,
};

struct tapio_occ_network {
	uint32_t pid;
	char comm[TAPIO_OCC_COMM_LEN];
	char src_ip[TAPIO_IP_STR_LEN];
	char dst_ip[TAPIO_IP_STR_LEN];
	uint16_t src_port;
	uint16_t dst_port;
	uint8_t family;	    /* 4 or 6 → "ipv4" / "ipv6" */
	char old_state[16]; /* "SYN_SENT", … ("" when not a state fact) */
	char new_state[16];
	uint32_t total_retrans;
	uint32_t snd_cwnd;
	double baseline_ms; /* rtt_degradation only (0 otherwise) */
	double current_ms;
};

struct tapio_occ_container {
	uint32_t pid;
	uint32_t tid;
	char comm[TAPIO_OCC_COMM_LEN];
	int32_t exit_code; /* decoded exit status (0..255), 0 when killed by a signal */
	int32_t signal;	   /* 0 when none */
	bool core_dumped;
	uint64_t cgroup_id;
	char cgroup_path[TAPIO_OCC_CGROUP_LEN];
	uint64_t memory_usage_bytes;
	uint64_t memory_limit_bytes; /* 0 = unlimited/unknown */
	uint64_t rss_bytes;	     /* oom_kill victim resident bytes */
};

struct tapio_occ_storage {
	uint32_t pid;
	char comm[TAPIO_OCC_COMM_LEN];
	uint32_t dev_major;
	uint32_t dev_minor;
	uint64_t sector;
	uint32_t bytes;
	char opcode[16]; /* "read", "write", "flush", "discard", … */
	double latency_ms;
	int32_t error_code; /* negative errno mapped from blk_status_t, 0 = none */
};

struct tapio_occ_node {
	int32_t cpu; /* -1 for node-wide facts (memory pressure) */
	uint64_t cycles;
	uint64_t instructions;
	uint64_t stall_cycles;
	double ipc;
	double stall_pct;
	double memory_some_avg10; /* memory_pressure: PSI "some" avg10 percent */
	double memory_full_avg10;
};

struct tapio_occurrence {
	char id[TAPIO_ULID_LEN + 1];
	uint64_t timestamp_ns; /* UTC, nanoseconds since the Unix epoch */
	enum tapio_occ_type type;
	enum tapio_severity severity;
	enum tapio_outcome outcome;
	char error_message[TAPIO_MESSAGE_LEN]; /* error.code comes from the catalogue */
	char cluster[TAPIO_NAME_LEN];
	char node[TAPIO_NAME_LEN];
	uint64_t config_generation;
	/* repeats collapsed into this occurrence; count == 0 means "not a collapsed one" */
	uint32_t count;
	uint64_t first_seen_ns; /* UTC ns */
	uint64_t last_seen_ns;
	union {
		struct tapio_occ_network network;
		struct tapio_occ_container container;
		struct tapio_occ_storage storage;
		struct tapio_occ_node node;
	} data; /* which member: tapio_catalogue[type].observer */
};

/* One catalogue row (SPEC §3). */
struct tapio_catalogue_entry {
	const char *type; /* "kernel.network.connection_refused" */
	enum tapio_observer observer;
	enum tapio_severity severity; /* default; abnormal_exit and latency_spike vary */
	enum tapio_outcome outcome;
	const char *error_code;	      /* "CONNECTION_REFUSED" */
	unsigned char error_code_len; /* strlen(error_code) */
};

extern const struct tapio_catalogue_entry tapio_catalogue[TAPIO_OCC__COUNT];

/* Names; all return static strings, never NULL ("unknown" for out-of-range values). */
const char *tapio_observer_name(enum tapio_observer o);
const char *tapio_severity_name(enum tapio_severity s);
const char *tapio_outcome_name(enum tapio_outcome o);
const char *tapio_occ_type_name(enum tapio_occ_type t);

/* Reverse lookups: return the enum value, or -1 when the name is unknown. */
int tapio_occ_type_parse(const char *name);
int tapio_severity_parse(const char *name);
int tapio_outcome_parse(const char *name);
int tapio_observer_parse(const char *name);

/*
 * Starts an occurrence of `type`: zeroes *occ, assigns a fresh ULID for `timestamp_ns`,
 * copies severity/outcome defaults from the catalogue and the node/cluster names
 * (truncated to fit; NULL means empty). Never fails.
 */
void occurrence_init(struct tapio_occurrence *occ, enum tapio_occ_type type, uint64_t timestamp_ns,
		     const char *node, const char *cluster);

/*
 * Checks the invariants an emitted occurrence must hold (valid enums, 26-char id, node set,
 * count/first/last consistency). Returns 0, or -EINVAL with a reason in err.
 */
int occurrence_validate(const struct tapio_occurrence *occ, char *err, size_t errlen);

#endif
