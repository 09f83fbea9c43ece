/*
 * C model <-> tapio.v1 protobuf messages (see occ_proto.h). Proto enum numbers are the C
 * enum values + 1, so that 0 stays "unspecified" on the wire.
 */
#include "common/occ_proto.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define OCC_SOURCE	     "tapio"
#define OCC_PROTOCOL_VERSION "1.0"

_Static_assert(TAPIO__V1__OCCURRENCE_TYPE__OCCURRENCE_TYPE_CONNECTION_REFUSED ==
		   TAPIO_OCC_CONNECTION_REFUSED + 1,
	       "type numbering");
_Static_assert(TAPIO__V1__OCCURRENCE_TYPE__OCCURRENCE_TYPE_IPC_DEGRADATION ==
		   TAPIO_OCC_IPC_DEGRADATION + 1,
	       "type numbering");
_Static_assert(TAPIO_OCC__COUNT == 11, "a new occurrence type needs a tapio.proto enum value");
_Static_assert(TAPIO__V1__SEVERITY__SEVERITY_CRITICAL == TAPIO_SEV_CRITICAL + 1, "severity");
_Static_assert(TAPIO_SEV__COUNT == 5, "a new severity needs a tapio.proto enum value");
_Static_assert(TAPIO__V1__OUTCOME__OUTCOME_UNKNOWN == TAPIO_OUT_UNKNOWN + 1, "outcome");
_Static_assert(TAPIO_OUT__COUNT == 5, "a new outcome needs a tapio.proto enum value");

/* protobuf-c string fields are `char *` even on messages we only read: borrow explicitly. */
static char *borrow(const char *s)
{
	return (char *)s;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* Copies src into dst[size]; refuses (never truncates) what does not fit. */
static int copy_str(char *dst, size_t size, const char *src, const char *field, char *err,
		    size_t errlen)
{
	size_t n;

	if (!src)
		src = "";
	n = strnlen(src, size);
	if (n >= size)
		return fail(err, errlen, "%s longer than %zu bytes", field, size - 1);
	memcpy(dst, src, n + 1);
	return 0;
}

#define COPY(dst, src, field)                                                        \
	do {                                                                         \
		int rc_ = copy_str((dst), sizeof(dst), (src), (field), err, errlen); \
		if (rc_)                                                             \
			return rc_;                                                  \
	} while (0)

/* ---- occurrence -------------------------------------------------------------------------- */

static void network_to_proto(const struct tapio_occ_network *n, Tapio__V1__NetworkData *m)
{
	tapio__v1__network_data__init(m);
	m->pid = n->pid;
	m->comm = borrow(n->comm);
	m->src_ip = borrow(n->src_ip);
	m->dst_ip = borrow(n->dst_ip);
	m->src_port = n->src_port;
	m->dst_port = n->dst_port;
	m->family = n->family;
	m->old_state = borrow(n->old_state);
	m->new_state = borrow(n->new_state);
	m->total_retrans = n->total_retrans;
	m->snd_cwnd = n->snd_cwnd;
	m->baseline_ms = n->baseline_ms;
	m->current_ms = n->current_ms;
}

static void container_to_proto(const struct tapio_occ_container *c, Tapio__V1__ContainerData *m)
{
	tapio__v1__container_data__init(m);
	m->pid = c->pid;
	m->tid = c->tid;
	m->comm = borrow(c->comm);
	m->exit_code = c->exit_code;
	m->signal = c->signal;
	m->core_dumped = c->core_dumped;
	m->cgroup_id = c->cgroup_id;
	m->cgroup_path = borrow(c->cgroup_path);
	m->memory_usage_bytes = c->memory_usage_bytes;
	m->memory_limit_bytes = c->memory_limit_bytes;
	m->rss_bytes = c->rss_bytes;
}

static void storage_to_proto(const struct tapio_occ_storage *s, Tapio__V1__StorageData *m)
{
	tapio__v1__storage_data__init(m);
	m->pid = s->pid;
	m->comm = borrow(s->comm);
	m->dev_major = s->dev_major;
	m->dev_minor = s->dev_minor;
	m->sector = s->sector;
	m->bytes = s->bytes;
	m->opcode = borrow(s->opcode);
	m->latency_ms = s->latency_ms;
	m->error_code = s->error_code;
}

static void node_to_proto(const struct tapio_occ_node *n, Tapio__V1__NodeData *m)
{
	tapio__v1__node_data__init(m);
	m->cpu = n->cpu;
	m->cycles = n->cycles;
	m->instructions = n->instructions;
	m->stall_cycles = n->stall_cycles;
	m->ipc = n->ipc;
	m->stall_pct = n->stall_pct;
	m->memory_some_avg10 = n->memory_some_avg10;
	m->memory_full_avg10 = n->memory_full_avg10;
}

void occ_to_proto(const struct tapio_occurrence *occ, Tapio__V1__Occurrence *msg,
		  struct occ_proto_scratch *scratch)
{
	bool known = (unsigned)occ->type < TAPIO_OCC__COUNT;

	tapio__v1__occurrence__init(msg);
	tapio__v1__occurrence_error__init(&scratch->error);
	tapio__v1__context__init(&scratch->context);

	msg->id = borrow(occ->id);
	msg->timestamp_ns = occ->timestamp_ns;
	msg->source = borrow(OCC_SOURCE);
	msg->type = known ? (Tapio__V1__OccurrenceType)(occ->type + 1)
			  : TAPIO__V1__OCCURRENCE_TYPE__OCCURRENCE_TYPE_UNSPECIFIED;
	msg->severity = (unsigned)occ->severity < TAPIO_SEV__COUNT
			    ? (Tapio__V1__Severity)(occ->severity + 1)
			    : TAPIO__V1__SEVERITY__SEVERITY_UNSPECIFIED;
	msg->outcome = (unsigned)occ->outcome < TAPIO_OUT__COUNT
			   ? (Tapio__V1__Outcome)(occ->outcome + 1)
			   : TAPIO__V1__OUTCOME__OUTCOME_UNSPECIFIED;
	msg->protocol_version = borrow(OCC_PROTOCOL_VERSION);

	scratch->error.code = borrow(known ? tapio_catalogue[occ->type].error_code : "");
	scratch->error.message = borrow(occ->error_message);
	msg->error = &scratch->error;
	scratch->context.cluster = borrow(occ->cluster);
	scratch->context.node = borrow(occ->node);
	msg->context = &scratch->context;

	msg->config_generation = occ->config_generation;
	msg->count = occ->count;
	msg->first_seen_ns = occ->first_seen_ns;
	msg->last_seen_ns = occ->last_seen_ns;

	if (!known)
		return;
	switch (tapio_catalogue[occ->type].observer) {
	case TAPIO_OBS_NETWORK:
		network_to_proto(&occ->data.network, &scratch->data.network);
		msg->data_case = TAPIO__V1__OCCURRENCE__DATA_NETWORK;
		msg->network = &scratch->data.network;
		break;
	case TAPIO_OBS_CONTAINER:
		container_to_proto(&occ->data.container, &scratch->data.container);
		msg->data_case = TAPIO__V1__OCCURRENCE__DATA_CONTAINER;
		msg->container = &scratch->data.container;
		break;
	case TAPIO_OBS_STORAGE:
		storage_to_proto(&occ->data.storage, &scratch->data.storage);
		msg->data_case = TAPIO__V1__OCCURRENCE__DATA_STORAGE;
		msg->storage = &scratch->data.storage;
		break;
	case TAPIO_OBS_NODE:
		node_to_proto(&occ->data.node, &scratch->data.node);
		msg->data_case = TAPIO__V1__OCCURRENCE__DATA_NODE;
		msg->node = &scratch->data.node;
		break;
	default:
		break;
	}
}

static int network_from_proto(const Tapio__V1__NetworkData *m, struct tapio_occ_network *n,
			      char *err, size_t errlen)
{
	if (m->src_port > UINT16_MAX || m->dst_port > UINT16_MAX)
		return fail(err, errlen, "data.src_port/dst_port above 65535");
	if (m->family != 0 && m->family != 4 && m->family != 6)
		return fail(err, errlen, "data.family %u is neither 4 nor 6", m->family);
	n->pid = m->pid;
	COPY(n->comm, m->comm, "data.comm");
	COPY(n->src_ip, m->src_ip, "data.src_ip");
	COPY(n->dst_ip, m->dst_ip, "data.dst_ip");
	n->src_port = (uint16_t)m->src_port;
	n->dst_port = (uint16_t)m->dst_port;
	n->family = (uint8_t)m->family;
	COPY(n->old_state, m->old_state, "data.old_state");
	COPY(n->new_state, m->new_state, "data.new_state");
	n->total_retrans = m->total_retrans;
	n->snd_cwnd = m->snd_cwnd;
	n->baseline_ms = m->baseline_ms;
	n->current_ms = m->current_ms;
	return 0;
}

static int container_from_proto(const Tapio__V1__ContainerData *m, struct tapio_occ_container *c,
				char *err, size_t errlen)
{
	c->pid = m->pid;
	c->tid = m->tid;
	COPY(c->comm, m->comm, "data.comm");
	c->exit_code = m->exit_code;
	c->signal = m->signal;
	c->core_dumped = m->core_dumped;
	c->cgroup_id = m->cgroup_id;
	COPY(c->cgroup_path, m->cgroup_path, "data.cgroup_path");
	c->memory_usage_bytes = m->memory_usage_bytes;
	c->memory_limit_bytes = m->memory_limit_bytes;
	c->rss_bytes = m->rss_bytes;
	return 0;
}

static int storage_from_proto(const Tapio__V1__StorageData *m, struct tapio_occ_storage *s,
			      char *err, size_t errlen)
{
	s->pid = m->pid;
	COPY(s->comm, m->comm, "data.comm");
	s->dev_major = m->dev_major;
	s->dev_minor = m->dev_minor;
	s->sector = m->sector;
	s->bytes = m->bytes;
	COPY(s->opcode, m->opcode, "data.opcode");
	s->latency_ms = m->latency_ms;
	s->error_code = m->error_code;
	return 0;
}

static void node_from_proto(const Tapio__V1__NodeData *m, struct tapio_occ_node *n)
{
	n->cpu = m->cpu;
	n->cycles = m->cycles;
	n->instructions = m->instructions;
	n->stall_cycles = m->stall_cycles;
	n->ipc = m->ipc;
	n->stall_pct = m->stall_pct;
	n->memory_some_avg10 = m->memory_some_avg10;
	n->memory_full_avg10 = m->memory_full_avg10;
}

static int data_from_proto(const Tapio__V1__Occurrence *msg, struct tapio_occurrence *occ,
			   char *err, size_t errlen)
{
	enum tapio_observer obs = tapio_catalogue[occ->type].observer;

	switch (msg->data_case) {
	case TAPIO__V1__OCCURRENCE__DATA_NETWORK:
		if (obs != TAPIO_OBS_NETWORK || !msg->network)
			break;
		return network_from_proto(msg->network, &occ->data.network, err, errlen);
	case TAPIO__V1__OCCURRENCE__DATA_CONTAINER:
		if (obs != TAPIO_OBS_CONTAINER || !msg->container)
			break;
		return container_from_proto(msg->container, &occ->data.container, err, errlen);
	case TAPIO__V1__OCCURRENCE__DATA_STORAGE:
		if (obs != TAPIO_OBS_STORAGE || !msg->storage)
			break;
		return storage_from_proto(msg->storage, &occ->data.storage, err, errlen);
	case TAPIO__V1__OCCURRENCE__DATA_NODE:
		if (obs != TAPIO_OBS_NODE || !msg->node)
			break;
		node_from_proto(msg->node, &occ->data.node);
		return 0;
	default:
		break;
	}
	return fail(err, errlen, "data does not hold %s facts for %s", tapio_observer_name(obs),
		    tapio_occ_type_name(occ->type));
}

int occ_from_proto(const Tapio__V1__Occurrence *msg, struct tapio_occurrence *occ, char *err,
		   size_t errlen)
{
	const char *code;

	memset(occ, 0, sizeof(*occ));
	if ((int)msg->type < 1 || (int)msg->type > (int)TAPIO_OCC__COUNT)
		return fail(err, errlen, "unknown type %d", (int)msg->type);
	if ((int)msg->severity < 1 || (int)msg->severity > (int)TAPIO_SEV__COUNT)
		return fail(err, errlen, "unknown severity %d", (int)msg->severity);
	if ((int)msg->outcome < 1 || (int)msg->outcome > (int)TAPIO_OUT__COUNT)
		return fail(err, errlen, "unknown outcome %d", (int)msg->outcome);
	occ->type = (enum tapio_occ_type)(msg->type - 1);
	occ->severity = (enum tapio_severity)(msg->severity - 1);
	occ->outcome = (enum tapio_outcome)(msg->outcome - 1);

	if (msg->source && msg->source[0] && strcmp(msg->source, OCC_SOURCE) != 0)
		return fail(err, errlen, "source is not \"%s\"", OCC_SOURCE);
	if (msg->protocol_version && msg->protocol_version[0] &&
	    strncmp(msg->protocol_version, "1.", 2) != 0)
		return fail(err, errlen, "unsupported protocol_version");

	COPY(occ->id, msg->id, "id");
	occ->timestamp_ns = msg->timestamp_ns;
	if (msg->error) {
		code = msg->error->code;
		if (code && code[0] && strcmp(code, tapio_catalogue[occ->type].error_code) != 0)
			return fail(err, errlen, "error.code does not match %s",
				    tapio_occ_type_name(occ->type));
		COPY(occ->error_message, msg->error->message, "error.message");
	}
	if (msg->context) {
		COPY(occ->cluster, msg->context->cluster, "context.cluster");
		COPY(occ->node, msg->context->node, "context.node");
	}
	occ->config_generation = msg->config_generation;
	occ->count = msg->count;
	occ->first_seen_ns = msg->first_seen_ns;
	occ->last_seen_ns = msg->last_seen_ns;
	return data_from_proto(msg, occ, err, errlen);
}

/* ---- settings and config ----------------------------------------------------------------- */

void settings_to_proto(const struct tapio_settings *s, Tapio__V1__Settings *msg)
{
	tapio__v1__settings__init(msg);
	msg->network_enabled = s->network_enabled;
	msg->container_enabled = s->container_enabled;
	msg->storage_enabled = s->storage_enabled;
	msg->node_enabled = s->node_enabled;
	msg->conn_refused_window_ms = s->conn_refused_window_ms;
	msg->conn_refused_min_count = s->conn_refused_min_count;
	msg->retransmit_window_ms = s->retransmit_window_ms;
	msg->retransmit_burst_threshold = s->retransmit_burst_threshold;
	msg->rtt_spike_ratio = s->rtt_spike_ratio;
	msg->rtt_absolute_ms = s->rtt_absolute_ms;
	msg->rtt_baseline_samples = s->rtt_baseline_samples;
	msg->rtt_baseline_max_ms = s->rtt_baseline_max_ms;
	msg->rtt_sample_interval_ms = s->rtt_sample_interval_ms;
	msg->n_ignored_exit_codes = s->n_ignored_exit_codes < TAPIO_MAX_IGNORED_EXIT_CODES
					? s->n_ignored_exit_codes
					: TAPIO_MAX_IGNORED_EXIT_CODES;
	msg->ignored_exit_codes = (int32_t *)s->ignored_exit_codes;
	msg->storage_warning_ms = s->storage_warning_ms;
	msg->storage_critical_ms = s->storage_critical_ms;
	msg->storage_window_ms = s->storage_window_ms;
	msg->pmc_interval_ms = s->pmc_interval_ms;
	msg->pmc_stall_warning_pct = s->pmc_stall_warning_pct;
	msg->pmc_stall_critical_pct = s->pmc_stall_critical_pct;
	msg->pmc_ipc_min = s->pmc_ipc_min;
	msg->memory_pressure_pct = s->memory_pressure_pct;
}

int settings_from_proto(const Tapio__V1__Settings *msg, struct tapio_settings *s, char *err,
			size_t errlen)
{
	if (msg->n_ignored_exit_codes > TAPIO_MAX_IGNORED_EXIT_CODES)
		return fail(err, errlen, "ignored_exit_codes holds %zu codes, at most %d allowed",
			    msg->n_ignored_exit_codes, TAPIO_MAX_IGNORED_EXIT_CODES);
	memset(s, 0, sizeof(*s));
	s->network_enabled = msg->network_enabled;
	s->container_enabled = msg->container_enabled;
	s->storage_enabled = msg->storage_enabled;
	s->node_enabled = msg->node_enabled;
	s->conn_refused_window_ms = msg->conn_refused_window_ms;
	s->conn_refused_min_count = msg->conn_refused_min_count;
	s->retransmit_window_ms = msg->retransmit_window_ms;
	s->retransmit_burst_threshold = msg->retransmit_burst_threshold;
	s->rtt_spike_ratio = msg->rtt_spike_ratio;
	s->rtt_absolute_ms = msg->rtt_absolute_ms;
	s->rtt_baseline_samples = msg->rtt_baseline_samples;
	s->rtt_baseline_max_ms = msg->rtt_baseline_max_ms;
	s->rtt_sample_interval_ms = msg->rtt_sample_interval_ms;
	s->n_ignored_exit_codes = (uint32_t)msg->n_ignored_exit_codes;
	for (size_t i = 0; i < msg->n_ignored_exit_codes; i++)
		s->ignored_exit_codes[i] = msg->ignored_exit_codes[i];
	s->storage_warning_ms = msg->storage_warning_ms;
	s->storage_critical_ms = msg->storage_critical_ms;
	s->storage_window_ms = msg->storage_window_ms;
	s->pmc_interval_ms = msg->pmc_interval_ms;
	s->pmc_stall_warning_pct = msg->pmc_stall_warning_pct;
	s->pmc_stall_critical_pct = msg->pmc_stall_critical_pct;
	s->pmc_ipc_min = msg->pmc_ipc_min;
	s->memory_pressure_pct = msg->memory_pressure_pct;
	return 0;
}

int config_from_proto(const Tapio__V1__ConfigPush *push, struct tapio_config *out, char *err,
		      size_t errlen)
{
	struct tapio_config c;

	if (push->config.len != sizeof(c) || !push->config.data)
		return fail(err, errlen, "config is %zu bytes, expected %zu", push->config.len,
			    sizeof(c));
	memcpy(&c, push->config.data, sizeof(c));
	if (c.abi_version != TAPIO_ABI_VERSION)
		return fail(err, errlen, "config abi_version %u, expected %u", c.abi_version,
			    TAPIO_ABI_VERSION);
	if (c.generation != push->generation)
		return fail(err, errlen, "config generation %llu differs from push generation %llu",
			    (unsigned long long)c.generation, (unsigned long long)push->generation);
	*out = c;
	return 0;
}
