/* Contract of common/occ_proto: lossless C <-> protobuf conversion and validation on input. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/codec.h"
#include "common/occ_proto.h"

/* Every field set to a non-default value (strings filled to their longest). */
static void full_occurrence(struct tapio_occurrence *o, enum tapio_occ_type type)
{
	memset(o, 0, sizeof(*o));
	memcpy(o->id, "01JDQ4Z8X9K3M5N7P9R1T3V5W7", TAPIO_ULID_LEN);
	o->timestamp_ns = 1764077000123456789ull + type;
	o->type = type;
	o->severity = TAPIO_SEV_CRITICAL;
	o->outcome = TAPIO_OUT_IN_PROGRESS;
	memset(o->error_message, 'm', sizeof(o->error_message) - 1);
	memset(o->cluster, 'c', sizeof(o->cluster) - 1);
	snprintf(o->node, sizeof(o->node), "node-%d", type);
	o->config_generation = 0xfedcba9876543210ull;
	o->count = 17;
	o->first_seen_ns = 1764077000000000001ull;
	o->last_seen_ns = 1764077009999999999ull;

	switch (tapio_catalogue[type].observer) {
	case TAPIO_OBS_NETWORK: {
		struct tapio_occ_network *n = &o->data.network;

		n->pid = 4242;
		memset(n->comm, 'k', sizeof(n->comm) - 1);
		strcpy(n->src_ip, "2001:db8:85a3:1234:5678:8a2e:370:7334");
		strcpy(n->dst_ip, "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255");
		n->src_port = 65535;
		n->dst_port = 443;
		n->family = 6;
		strcpy(n->old_state, "SYN_SENT");
		strcpy(n->new_state, "CLOSE");
		n->total_retrans = 9;
		n->snd_cwnd = 10;
		n->baseline_ms = 12.5;
		n->current_ms = 601.25;
		break;
	}
	case TAPIO_OBS_CONTAINER: {
		struct tapio_occ_container *c = &o->data.container;

		c->pid = 1;
		c->tid = 4000000;
		strcpy(c->comm, "java");
		c->exit_code = -1;
		c->signal = 9;
		c->core_dumped = true;
		c->cgroup_id = 123456789;
		memset(c->cgroup_path, '/', sizeof(c->cgroup_path) - 1);
		c->memory_usage_bytes = 1ull << 40;
		c->memory_limit_bytes = (1ull << 40) + 1;
		c->rss_bytes = UINT64_MAX;
		break;
	}
	case TAPIO_OBS_STORAGE: {
		struct tapio_occ_storage *s = &o->data.storage;

		s->pid = 77;
		strcpy(s->comm, "postgres");
		s->dev_major = 259;
		s->dev_minor = 3;
		s->sector = 0x123456789aull;
		s->bytes = 1048576;
		strcpy(s->opcode, "discard");
		s->latency_ms = 250.75;
		s->error_code = -5;
		break;
	}
	case TAPIO_OBS_NODE: {
		struct tapio_occ_node *n = &o->data.node;

		n->cpu = -1;
		n->cycles = UINT64_MAX - 1;
		n->instructions = 1000000007;
		n->stall_cycles = 600000000;
		n->ipc = 0.37;
		n->stall_pct = 43.5;
		n->memory_some_avg10 = 12.25;
		n->memory_full_avg10 = 3.5;
		break;
	}
	default:
		break;
	}
}

/* C → proto → framed bytes → proto → C for a batch of occurrences. */
static void roundtrip(const struct tapio_occurrence *in, size_t n, struct tapio_occurrence *out)
{
	Tapio__V1__Occurrence msgs[TAPIO_OCC__COUNT], *ptrs[TAPIO_OCC__COUNT];
	struct occ_proto_scratch scratch[TAPIO_OCC__COUNT];
	Tapio__V1__EventBatch batch = TAPIO__V1__EVENT_BATCH__INIT;
	Tapio__V1__Frame frame = TAPIO__V1__FRAME__INIT;
	struct codec_buf b;
	struct codec_decoder d;
	Tapio__V1__Frame *f;
	char err[128];

	cr_assert_leq(n, TAPIO_OCC__COUNT);
	for (size_t i = 0; i < n; i++) {
		occ_to_proto(&in[i], &msgs[i], &scratch[i]);
		ptrs[i] = &msgs[i];
	}
	batch.session_id = 1;
	batch.sequence = 1;
	batch.n_occurrences = n;
	batch.occurrences = ptrs;
	frame.msg_case = TAPIO__V1__FRAME__MSG_EVENT_BATCH;
	frame.event_batch = &batch;

	codec_buf_init(&b);
	cr_assert_gt(codec_buf_append_frame(&b, &frame), 0);
	codec_decoder_init(&d, 0);
	cr_assert_eq(codec_decoder_feed(&d, b.data, b.len), (ssize_t)b.len);
	cr_assert_eq(codec_decoder_next(&d, &f), 1);
	cr_assert_eq(f->event_batch->n_occurrences, n);
	for (size_t i = 0; i < n; i++) {
		int rc = occ_from_proto(f->event_batch->occurrences[i], &out[i], err, sizeof(err));

		cr_assert_eq(rc, 0, "%s: %s", tapio_occ_type_name(in[i].type), err);
	}
	tapio__v1__frame__free_unpacked(f, NULL);
	codec_decoder_fini(&d);
	codec_buf_fini(&b);
}

Test(occ_proto, every_type_roundtrips_field_by_field, .timeout = 10)
{
	struct tapio_occurrence in[TAPIO_OCC__COUNT], out[TAPIO_OCC__COUNT];

	for (int t = 0; t < TAPIO_OCC__COUNT; t++)
		full_occurrence(&in[t], (enum tapio_occ_type)t);
	roundtrip(in, TAPIO_OCC__COUNT, out);
	for (int t = 0; t < TAPIO_OCC__COUNT; t++) {
		cr_assert_eq(out[t].type, in[t].type);
		cr_assert_str_eq(out[t].node, in[t].node);
		cr_assert_eq(memcmp(&in[t], &out[t], sizeof(in[t])), 0,
			     "%s differs after round trip", tapio_occ_type_name(in[t].type));
	}
	cr_assert_str_eq(out[TAPIO_OCC_CONNECTION_REFUSED].data.network.dst_ip,
			 "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255");
	cr_assert_eq(out[TAPIO_OCC_OOM_KILL].data.container.rss_bytes, UINT64_MAX);
	cr_assert_eq(out[TAPIO_OCC_IO_ERROR].data.storage.error_code, -5);
	cr_assert_eq(out[TAPIO_OCC_CPU_STALL].data.node.cpu, -1);
}

Test(occ_proto, zero_values_roundtrip, .timeout = 10)
{
	struct tapio_occurrence in, out;

	memset(&in, 0, sizeof(in));
	in.type = TAPIO_OCC_CONNECTION_REFUSED;
	roundtrip(&in, 1, &out);
	cr_assert_eq(memcmp(&in, &out, sizeof(in)), 0);
}

Test(occ_proto, outgoing_message_carries_catalogue_constants, .timeout = 10)
{
	struct tapio_occurrence o;
	struct occ_proto_scratch s;
	Tapio__V1__Occurrence m;

	full_occurrence(&o, TAPIO_OCC_OOM_KILL);
	occ_to_proto(&o, &m, &s);
	cr_assert_str_eq(m.source, "tapio");
	cr_assert_str_eq(m.protocol_version, "1.0");
	cr_assert_str_eq(m.error->code, "OOM_KILL");
	cr_assert_eq(m.type, TAPIO__V1__OCCURRENCE_TYPE__OCCURRENCE_TYPE_OOM_KILL);
	cr_assert_eq(m.severity, TAPIO__V1__SEVERITY__SEVERITY_CRITICAL);
	cr_assert_eq(m.outcome, TAPIO__V1__OUTCOME__OUTCOME_IN_PROGRESS);
	cr_assert_eq(m.data_case, TAPIO__V1__OCCURRENCE__DATA_CONTAINER);
	cr_assert_eq((const void *)m.context->node, (const void *)o.node, "strings are borrowed");
}

/* Converts o, lets `mutate` damage the message, and expects occ_from_proto to refuse it. */
static void expect_refused(enum tapio_occ_type type, void (*mutate)(Tapio__V1__Occurrence *),
			   const char *reason_part)
{
	struct tapio_occurrence o, out;
	struct occ_proto_scratch s;
	Tapio__V1__Occurrence m;
	char err[160] = "";

	full_occurrence(&o, type);
	occ_to_proto(&o, &m, &s);
	mutate(&m);
	cr_assert_eq(occ_from_proto(&m, &out, err, sizeof(err)), -EINVAL, "accepted: %s",
		     reason_part);
	cr_assert(strstr(err, reason_part) != NULL, "reason \"%s\" lacks \"%s\"", err, reason_part);
}

static char long_comm[] = "abcdefghijklmnopq"; /* 17 chars: one more than fits */
static char long_id[] = "01JDQ4Z8X9K3M5N7P9R1T3V5W7X";

static void type_zero(Tapio__V1__Occurrence *m)
{
	m->type = TAPIO__V1__OCCURRENCE_TYPE__OCCURRENCE_TYPE_UNSPECIFIED;
}
static void type_future(Tapio__V1__Occurrence *m)
{
	m->type = (Tapio__V1__OccurrenceType)12;
}
static void severity_zero(Tapio__V1__Occurrence *m)
{
	m->severity = TAPIO__V1__SEVERITY__SEVERITY_UNSPECIFIED;
}
static void severity_big(Tapio__V1__Occurrence *m)
{
	m->severity = (Tapio__V1__Severity)6;
}
static void outcome_bad(Tapio__V1__Occurrence *m)
{
	m->outcome = (Tapio__V1__Outcome)-3;
}
static void comm_long(Tapio__V1__Occurrence *m)
{
	m->network->comm = long_comm;
}
static void id_long(Tapio__V1__Occurrence *m)
{
	m->id = long_id;
}
static void data_wrong(Tapio__V1__Occurrence *m)
{
	static Tapio__V1__NodeData node = TAPIO__V1__NODE_DATA__INIT;

	m->data_case = TAPIO__V1__OCCURRENCE__DATA_NODE;
	m->node = &node;
}
static void data_missing(Tapio__V1__Occurrence *m)
{
	m->data_case = TAPIO__V1__OCCURRENCE__DATA__NOT_SET;
}
static void source_wrong(Tapio__V1__Occurrence *m)
{
	m->source = "other";
}
static void code_wrong(Tapio__V1__Occurrence *m)
{
	m->error->code = "OOM_KILL";
}
static void version_wrong(Tapio__V1__Occurrence *m)
{
	m->protocol_version = "2.0";
}
static void family_bad(Tapio__V1__Occurrence *m)
{
	m->network->family = 5;
}
static void port_bad(Tapio__V1__Occurrence *m)
{
	m->network->dst_port = 70000;
}
static void cgroup_long(Tapio__V1__Occurrence *m)
{
	static char path[TAPIO_OCC_CGROUP_LEN + 1];

	memset(path, 'p', TAPIO_OCC_CGROUP_LEN);
	m->container->cgroup_path = path;
}
static void node_long(Tapio__V1__Occurrence *m)
{
	static char name[TAPIO_NAME_LEN + 1];

	memset(name, 'n', TAPIO_NAME_LEN);
	m->context->node = name;
}

Test(occ_proto, hostile_occurrences_refused, .timeout = 10)
{
	expect_refused(TAPIO_OCC_CONNECTION_REFUSED, type_zero, "type");
	expect_refused(TAPIO_OCC_CONNECTION_REFUSED, type_future, "type");
	expect_refused(TAPIO_OCC_CONNECTION_REFUSED, severity_zero, "severity");
	expect_refused(TAPIO_OCC_CONNECTION_REFUSED, severity_big, "severity");
	expect_refused(TAPIO_OCC_CONNECTION_REFUSED, outcome_bad, "outcome");
	expect_refused(TAPIO_OCC_CONNECTION_TIMEOUT, comm_long, "data.comm");
	expect_refused(TAPIO_OCC_CONNECTION_TIMEOUT, id_long, "id");
	expect_refused(TAPIO_OCC_RETRANSMIT_SPIKE, data_wrong, "data");
	expect_refused(TAPIO_OCC_IO_ERROR, data_missing, "data");
	expect_refused(TAPIO_OCC_CPU_STALL, source_wrong, "source");
	expect_refused(TAPIO_OCC_CPU_STALL, code_wrong, "error.code");
	expect_refused(TAPIO_OCC_CPU_STALL, version_wrong, "protocol_version");
	expect_refused(TAPIO_OCC_RTT_DEGRADATION, family_bad, "family");
	expect_refused(TAPIO_OCC_RTT_DEGRADATION, port_bad, "port");
	expect_refused(TAPIO_OCC_OOM_KILL, cgroup_long, "data.cgroup_path");
	expect_refused(TAPIO_OCC_MEMORY_PRESSURE, node_long, "context.node");
}

Test(occ_proto, out_of_range_c_enums_never_reach_the_wire, .timeout = 10)
{
	struct tapio_occurrence o, out;
	struct occ_proto_scratch s;
	Tapio__V1__Occurrence m;
	char err[128];

	full_occurrence(&o, TAPIO_OCC_OOM_KILL);
	o.type = TAPIO_OCC__COUNT;
	o.severity = TAPIO_SEV__COUNT;
	occ_to_proto(&o, &m, &s);
	cr_assert_eq(m.type, TAPIO__V1__OCCURRENCE_TYPE__OCCURRENCE_TYPE_UNSPECIFIED);
	cr_assert_eq(m.severity, TAPIO__V1__SEVERITY__SEVERITY_UNSPECIFIED);
	cr_assert_eq(m.data_case, TAPIO__V1__OCCURRENCE__DATA__NOT_SET);
	cr_assert_eq(occ_from_proto(&m, &out, err, sizeof(err)), -EINVAL);
}

Test(occ_proto, settings_roundtrip, .timeout = 10)
{
	struct tapio_settings in, out;
	Tapio__V1__Settings m;
	Tapio__V1__Settings *back;
	uint8_t buf[512];
	size_t n;
	char err[128];

	memset(&in, 0, sizeof(in));
	settings_defaults(&in);
	in.container_enabled = !in.container_enabled;
	in.conn_refused_window_ms = 2500;
	in.conn_refused_min_count = 3;
	in.retransmit_window_ms = 1500;
	in.retransmit_burst_threshold = 7;
	in.rtt_spike_ratio = 3.25;
	in.rtt_absolute_ms = 900;
	in.rtt_baseline_samples = 11;
	in.rtt_baseline_max_ms = 150;
	in.rtt_sample_interval_ms = 250;
	in.n_ignored_exit_codes = TAPIO_MAX_IGNORED_EXIT_CODES;
	for (int i = 0; i < TAPIO_MAX_IGNORED_EXIT_CODES; i++)
		in.ignored_exit_codes[i] = i * 31 - 1;
	in.storage_warning_ms = 60;
	in.storage_critical_ms = 300;
	in.storage_window_ms = 4000;
	in.pmc_interval_ms = 2000;
	in.pmc_stall_warning_pct = 25.5;
	in.pmc_stall_critical_pct = 45.5;
	in.pmc_ipc_min = 0.75;
	in.memory_pressure_pct = 15.0;

	settings_to_proto(&in, &m);
	n = tapio__v1__settings__pack(&m, buf);
	cr_assert_leq(n, sizeof(buf));
	back = tapio__v1__settings__unpack(NULL, n, buf);
	cr_assert_not_null(back);
	memset(&out, 0xa5, sizeof(out));
	cr_assert_eq(settings_from_proto(back, &out, err, sizeof(err)), 0, "%s", err);
	tapio__v1__settings__free_unpacked(back, NULL);
	cr_assert_eq(memcmp(&in, &out, sizeof(in)), 0, "settings differ after round trip");
}

Test(occ_proto, settings_too_many_exit_codes_refused, .timeout = 10)
{
	Tapio__V1__Settings m = TAPIO__V1__SETTINGS__INIT;
	int32_t codes[TAPIO_MAX_IGNORED_EXIT_CODES + 1] = {0};
	struct tapio_settings s;
	char err[128] = "";

	m.n_ignored_exit_codes = TAPIO_MAX_IGNORED_EXIT_CODES + 1;
	m.ignored_exit_codes = codes;
	cr_assert_eq(settings_from_proto(&m, &s, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "ignored_exit_codes") != NULL, "%s", err);
}

Test(occ_proto, config_bytes_checked, .timeout = 10)
{
	Tapio__V1__ConfigPush p = TAPIO__V1__CONFIG_PUSH__INIT;
	struct tapio_config c, out;
	char err[128];

	memset(&c, 0, sizeof(c));
	c.abi_version = TAPIO_ABI_VERSION;
	c.generation = 42;
	c.flags = TAPIO_F_NET_CONNECT | TAPIO_F_CT_OOM;
	c.n_ignored_exit_codes = 1;
	c.ignored_exit_codes[0] = 143;
	p.generation = 42;
	p.config.data = (uint8_t *)&c;
	p.config.len = sizeof(c);
	cr_assert_eq(config_from_proto(&p, &out, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(memcmp(&c, &out, sizeof(c)), 0);

	p.config.len = sizeof(c) - 1;
	cr_assert_eq(config_from_proto(&p, &out, err, sizeof(err)), -EINVAL);
	p.config.len = sizeof(c);
	p.generation = 43;
	cr_assert_eq(config_from_proto(&p, &out, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "generation") != NULL, "%s", err);
	p.generation = 42;
	c.abi_version = TAPIO_ABI_VERSION + 1;
	cr_assert_eq(config_from_proto(&p, &out, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "abi_version") != NULL, "%s", err);
}
