/* The occurrence catalogue (SPEC §3), enum names and the invariants of an emitted occurrence. */
#include "occurrence.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ulid.h"

/* an error code and its length, which the ingest fast path compares received codes with */
#define CODE(s) s, sizeof(s) - 1

const struct tapio_catalogue_entry tapio_catalogue[TAPIO_OCC__COUNT] = {
    [TAPIO_OCC_CONNECTION_REFUSED] = {"kernel.network.connection_refused", TAPIO_OBS_NETWORK,
				      TAPIO_SEV_WARNING, TAPIO_OUT_FAILURE,
				      CODE("CONNECTION_REFUSED")},
    [TAPIO_OCC_CONNECTION_TIMEOUT] = {"kernel.network.connection_timeout", TAPIO_OBS_NETWORK,
				      TAPIO_SEV_ERROR, TAPIO_OUT_TIMEOUT, CODE("SYN_TIMEOUT")},
    [TAPIO_OCC_RETRANSMIT_SPIKE] = {"kernel.network.retransmit_spike", TAPIO_OBS_NETWORK,
				    TAPIO_SEV_WARNING, TAPIO_OUT_FAILURE, CODE("RETRANSMIT")},
    [TAPIO_OCC_RTT_DEGRADATION] = {"kernel.network.rtt_degradation", TAPIO_OBS_NETWORK,
				   TAPIO_SEV_WARNING, TAPIO_OUT_IN_PROGRESS, CODE("RTT_SPIKE")},
    [TAPIO_OCC_OOM_KILL] = {"kernel.container.oom_kill", TAPIO_OBS_CONTAINER, TAPIO_SEV_CRITICAL,
			    TAPIO_OUT_FAILURE, CODE("OOM_KILL")},
    /* default for an exit code only; the classifier raises it to error for a signal */
    [TAPIO_OCC_ABNORMAL_EXIT] = {"kernel.container.abnormal_exit", TAPIO_OBS_CONTAINER,
				 TAPIO_SEV_WARNING, TAPIO_OUT_FAILURE, CODE("ABNORMAL_EXIT")},
    [TAPIO_OCC_IO_ERROR] = {"kernel.storage.io_error", TAPIO_OBS_STORAGE, TAPIO_SEV_CRITICAL,
			    TAPIO_OUT_FAILURE, CODE("IO_ERROR")},
    /* default for the warning threshold; the classifier raises it past the critical one */
    [TAPIO_OCC_LATENCY_SPIKE] = {"kernel.storage.latency_spike", TAPIO_OBS_STORAGE,
				 TAPIO_SEV_WARNING, TAPIO_OUT_IN_PROGRESS, CODE("LATENCY_SPIKE")},
    [TAPIO_OCC_CPU_STALL] = {"kernel.node.cpu_stall", TAPIO_OBS_NODE, TAPIO_SEV_CRITICAL,
			     TAPIO_OUT_IN_PROGRESS, CODE("CPU_STALL")},
    [TAPIO_OCC_MEMORY_PRESSURE] = {"kernel.node.memory_pressure", TAPIO_OBS_NODE, TAPIO_SEV_WARNING,
				   TAPIO_OUT_IN_PROGRESS, CODE("MEMORY_PRESSURE")},
    [TAPIO_OCC_IPC_DEGRADATION] = {"kernel.node.ipc_degradation", TAPIO_OBS_NODE, TAPIO_SEV_WARNING,
				   TAPIO_OUT_IN_PROGRESS, CODE("IPC_DEGRADATION")},
};
#undef CODE

static const char *const observer_names[TAPIO_OBS__COUNT] = {
    [TAPIO_OBS_NETWORK] = "network",
    [TAPIO_OBS_CONTAINER] = "container",
    [TAPIO_OBS_STORAGE] = "storage",
    [TAPIO_OBS_NODE] = "node",
};

static const char *const severity_names[TAPIO_SEV__COUNT] = {
    [TAPIO_SEV_DEBUG] = "debug", [TAPIO_SEV_INFO] = "info",	    [TAPIO_SEV_WARNING] = "warning",
    [TAPIO_SEV_ERROR] = "error", [TAPIO_SEV_CRITICAL] = "critical",
};

static const char *const outcome_names[TAPIO_OUT__COUNT] = {
    [TAPIO_OUT_SUCCESS] = "success", [TAPIO_OUT_FAILURE] = "failure",
    [TAPIO_OUT_TIMEOUT] = "timeout", [TAPIO_OUT_IN_PROGRESS] = "in_progress",
    [TAPIO_OUT_UNKNOWN] = "unknown",
};

/* Enums may hold any int after a bad cast or decode; compare as unsigned to catch < 0. */
const char *tapio_observer_name(enum tapio_observer o)
{
	return (unsigned)o < TAPIO_OBS__COUNT ? observer_names[o] : "unknown";
}

const char *tapio_severity_name(enum tapio_severity s)
{
	return (unsigned)s < TAPIO_SEV__COUNT ? severity_names[s] : "unknown";
}

const char *tapio_outcome_name(enum tapio_outcome o)
{
	return (unsigned)o < TAPIO_OUT__COUNT ? outcome_names[o] : "unknown";
}

const char *tapio_occ_type_name(enum tapio_occ_type t)
{
	return (unsigned)t < TAPIO_OCC__COUNT ? tapio_catalogue[t].type : "unknown";
}

static int lookup(const char *const *names, int n, const char *name)
{
	if (!name)
		return -1;
	for (int i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return i;
	return -1;
}

int tapio_occ_type_parse(const char *name)
{
	if (!name)
		return -1;
	for (int i = 0; i < TAPIO_OCC__COUNT; i++)
		if (strcmp(tapio_catalogue[i].type, name) == 0)
			return i;
	return -1;
}

int tapio_severity_parse(const char *name)
{
	return lookup(severity_names, TAPIO_SEV__COUNT, name);
}

int tapio_outcome_parse(const char *name)
{
	return lookup(outcome_names, TAPIO_OUT__COUNT, name);
}

int tapio_observer_parse(const char *name)
{
	return lookup(observer_names, TAPIO_OBS__COUNT, name);
}

static void copy_name(char *dst, size_t len, const char *src)
{
	if (!src) {
		dst[0] = '\0';
		return;
	}
	snprintf(dst, len, "%s", src);
}

void occurrence_init(struct tapio_occurrence *occ, enum tapio_occ_type type, uint64_t timestamp_ns,
		     const char *node, const char *cluster)
{
	memset(occ, 0, sizeof(*occ));
	occ->type = type;
	occ->timestamp_ns = timestamp_ns;
	ulid_generate(timestamp_ns / 1000000, occ->id);
	if ((unsigned)type < TAPIO_OCC__COUNT) {
		occ->severity = tapio_catalogue[type].severity;
		occ->outcome = tapio_catalogue[type].outcome;
	} else {
		occ->severity = TAPIO_SEV_INFO;
		occ->outcome = TAPIO_OUT_UNKNOWN;
	}
	copy_name(occ->node, sizeof(occ->node), node);
	copy_name(occ->cluster, sizeof(occ->cluster), cluster);
}

static bool terminated(const char *s, size_t len)
{
	/* a string shorter than its (zeroed) array ends in a NUL: no search needed then */
	return s[len - 1] == '\0' || memchr(s, '\0', len) != NULL;
}

/* The data strings of the member the type selects must be NUL-terminated in their arrays. */
static bool data_strings_terminated(const struct tapio_occurrence *occ)
{
	const struct tapio_occ_network *n = &occ->data.network;
	const struct tapio_occ_container *c = &occ->data.container;
	const struct tapio_occ_storage *st = &occ->data.storage;

	switch (tapio_catalogue[occ->type].observer) {
	case TAPIO_OBS_NETWORK:
		return terminated(n->comm, sizeof(n->comm)) &&
		       terminated(n->src_ip, sizeof(n->src_ip)) &&
		       terminated(n->dst_ip, sizeof(n->dst_ip)) &&
		       terminated(n->old_state, sizeof(n->old_state)) &&
		       terminated(n->new_state, sizeof(n->new_state));
	case TAPIO_OBS_CONTAINER:
		return terminated(c->comm, sizeof(c->comm)) &&
		       terminated(c->cgroup_path, sizeof(c->cgroup_path));
	case TAPIO_OBS_STORAGE:
		return terminated(st->comm, sizeof(st->comm)) &&
		       terminated(st->opcode, sizeof(st->opcode));
	default:
		return true;
	}
}

int occurrence_validate(const struct tapio_occurrence *occ, char *err, size_t errlen)
{
	const char *why = NULL;

	if ((unsigned)occ->type >= TAPIO_OCC__COUNT)
		why = "type out of range";
	else if ((unsigned)occ->severity >= TAPIO_SEV__COUNT)
		why = "severity out of range";
	else if ((unsigned)occ->outcome >= TAPIO_OUT__COUNT)
		why = "outcome out of range";
	else if (!terminated(occ->id, sizeof(occ->id)) || ulid_validate(occ->id) != 0)
		why = "id is not a 26-char ULID";
	else if (occ->timestamp_ns == 0)
		why = "timestamp not set";
	else if (!terminated(occ->node, sizeof(occ->node)) || occ->node[0] == '\0')
		why = "context.node not set";
	else if (!terminated(occ->cluster, sizeof(occ->cluster)) ||
		 !terminated(occ->error_message, sizeof(occ->error_message)))
		why = "unterminated string";
	else if (!data_strings_terminated(occ))
		why = "unterminated data string";
	else if (occ->count == 0 && (occ->first_seen_ns || occ->last_seen_ns))
		why = "first_seen/last_seen set without count";
	else if (occ->count > 0 && (occ->first_seen_ns == 0 || occ->last_seen_ns == 0))
		why = "count set without first_seen/last_seen";
	else if (occ->count > 0 && occ->first_seen_ns > occ->last_seen_ns)
		why = "first_seen after last_seen";

	if (!why)
		return 0;
	if (err && errlen)
		snprintf(err, errlen, "%s", why);
	return -EINVAL;
}
