#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/occurrence.h"
#include "common/ulid.h"

struct expected_row {
	const char *type;
	enum tapio_observer observer;
	enum tapio_severity severity;
	enum tapio_outcome outcome;
	const char *code;
};

/* SPEC §3, transcribed independently of occurrence.c */
static const struct expected_row spec[TAPIO_OCC__COUNT] = {
    {"kernel.network.connection_refused", TAPIO_OBS_NETWORK, TAPIO_SEV_WARNING, TAPIO_OUT_FAILURE,
     "CONNECTION_REFUSED"},
    {"kernel.network.connection_timeout", TAPIO_OBS_NETWORK, TAPIO_SEV_ERROR, TAPIO_OUT_TIMEOUT,
     "SYN_TIMEOUT"},
    {"kernel.network.retransmit_spike", TAPIO_OBS_NETWORK, TAPIO_SEV_WARNING, TAPIO_OUT_FAILURE,
     "RETRANSMIT"},
    {"kernel.network.rtt_degradation", TAPIO_OBS_NETWORK, TAPIO_SEV_WARNING, TAPIO_OUT_IN_PROGRESS,
     "RTT_SPIKE"},
    {"kernel.container.oom_kill", TAPIO_OBS_CONTAINER, TAPIO_SEV_CRITICAL, TAPIO_OUT_FAILURE,
     "OOM_KILL"},
    {"kernel.container.abnormal_exit", TAPIO_OBS_CONTAINER, TAPIO_SEV_WARNING, TAPIO_OUT_FAILURE,
     "ABNORMAL_EXIT"},
    {"kernel.storage.io_error", TAPIO_OBS_STORAGE, TAPIO_SEV_CRITICAL, TAPIO_OUT_FAILURE,
     "IO_ERROR"},
    {"kernel.storage.latency_spike", TAPIO_OBS_STORAGE, TAPIO_SEV_WARNING, TAPIO_OUT_IN_PROGRESS,
     "LATENCY_SPIKE"},
    {"kernel.node.cpu_stall", TAPIO_OBS_NODE, TAPIO_SEV_CRITICAL, TAPIO_OUT_IN_PROGRESS,
     "CPU_STALL"},
    {"kernel.node.memory_pressure", TAPIO_OBS_NODE, TAPIO_SEV_WARNING, TAPIO_OUT_IN_PROGRESS,
     "MEMORY_PRESSURE"},
    {"kernel.node.ipc_degradation", TAPIO_OBS_NODE, TAPIO_SEV_WARNING, TAPIO_OUT_IN_PROGRESS,
     "IPC_DEGRADATION"},
};

Test(occurrence, catalogue_matches_spec, .timeout = 5)
{
	for (int i = 0; i < TAPIO_OCC__COUNT; i++) {
		const struct tapio_catalogue_entry *c = &tapio_catalogue[i];
		char prefix[64];

		cr_assert_not_null(c->type, "row %d", i);
		cr_assert_str_eq(c->type, spec[i].type);
		cr_assert_eq(c->observer, spec[i].observer, "%s observer", c->type);
		cr_assert_eq(c->severity, spec[i].severity, "%s severity", c->type);
		cr_assert_eq(c->outcome, spec[i].outcome, "%s outcome", c->type);
		cr_assert_str_eq(c->error_code, spec[i].code);
		cr_assert_eq(c->error_code_len, strlen(spec[i].code), "%s", spec[i].code);
		/* the type string names its observer */
		snprintf(prefix, sizeof(prefix), "kernel.%s.", tapio_observer_name(c->observer));
		cr_assert(strncmp(c->type, prefix, strlen(prefix)) == 0, "%s", c->type);
		cr_assert_str_eq(tapio_occ_type_name((enum tapio_occ_type)i), c->type);
		cr_assert_eq(tapio_occ_type_parse(c->type), i);
	}
}

Test(occurrence, names_round_trip, .timeout = 5)
{
	for (int i = 0; i < TAPIO_SEV__COUNT; i++)
		cr_assert_eq(tapio_severity_parse(tapio_severity_name((enum tapio_severity)i)), i);
	for (int i = 0; i < TAPIO_OUT__COUNT; i++)
		cr_assert_eq(tapio_outcome_parse(tapio_outcome_name((enum tapio_outcome)i)), i);
	for (int i = 0; i < TAPIO_OBS__COUNT; i++)
		cr_assert_eq(tapio_observer_parse(tapio_observer_name((enum tapio_observer)i)), i);
	cr_assert_str_eq(tapio_severity_name(TAPIO_SEV_CRITICAL), "critical");
	cr_assert_str_eq(tapio_outcome_name(TAPIO_OUT_IN_PROGRESS), "in_progress");
	cr_assert_str_eq(tapio_observer_name(TAPIO_OBS_STORAGE), "storage");
}

Test(occurrence, names_out_of_range, .timeout = 5)
{
	cr_assert_str_eq(tapio_severity_name((enum tapio_severity)99), "unknown");
	cr_assert_str_eq(tapio_severity_name((enum tapio_severity) - 1), "unknown");
	cr_assert_str_eq(tapio_outcome_name((enum tapio_outcome)TAPIO_OUT__COUNT), "unknown");
	cr_assert_str_eq(tapio_observer_name((enum tapio_observer)7), "unknown");
	cr_assert_str_eq(tapio_occ_type_name((enum tapio_occ_type)TAPIO_OCC__COUNT), "unknown");
	cr_assert_eq(tapio_occ_type_parse("kernel.network.nope"), -1);
	cr_assert_eq(tapio_occ_type_parse(NULL), -1);
	cr_assert_eq(tapio_severity_parse("WARNING"), -1);
	cr_assert_eq(tapio_outcome_parse(""), -1);
	cr_assert_eq(tapio_observer_parse("net"), -1);
}

Test(occurrence, init_sets_defaults_and_id, .timeout = 5)
{
	struct tapio_occurrence occ;
	uint64_t ts = 1795613992123456789ull, ms;
	char err[128];

	memset(&occ, 0xa5, sizeof(occ));
	occurrence_init(&occ, TAPIO_OCC_CONNECTION_TIMEOUT, ts, "node-1", "prod");
	cr_assert_eq(occ.type, TAPIO_OCC_CONNECTION_TIMEOUT);
	cr_assert_eq(occ.severity, TAPIO_SEV_ERROR);
	cr_assert_eq(occ.outcome, TAPIO_OUT_TIMEOUT);
	cr_assert_eq(occ.timestamp_ns, ts);
	cr_assert_str_eq(occ.node, "node-1");
	cr_assert_str_eq(occ.cluster, "prod");
	cr_assert_eq(occ.count, 0);
	cr_assert_eq(occ.data.network.pid, 0);
	cr_assert_str_eq(occ.error_message, "");
	cr_assert_eq(strlen(occ.id), TAPIO_ULID_LEN);
	cr_assert_eq(ulid_time_ms(occ.id, &ms), 0);
	cr_assert_eq(ms, ts / 1000000);
	cr_assert_eq(occurrence_validate(&occ, err, sizeof(err)), 0, "%s", err);
}

Test(occurrence, init_truncates_and_accepts_null, .timeout = 5)
{
	struct tapio_occurrence occ;
	char longname[200];

	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	occurrence_init(&occ, TAPIO_OCC_OOM_KILL, 1, longname, NULL);
	cr_assert_eq(strlen(occ.node), TAPIO_NAME_LEN - 1);
	cr_assert_str_eq(occ.cluster, "");
	cr_assert_eq(occ.severity, TAPIO_SEV_CRITICAL);
}

Test(occurrence, validate_rejects_broken, .timeout = 5)
{
	struct tapio_occurrence base, occ;
	char err[128];

	occurrence_init(&base, TAPIO_OCC_IO_ERROR, 1795613992000000000ull, "n", "");
	cr_assert_eq(occurrence_validate(&base, err, sizeof(err)), 0);

	occ = base;
	occ.type = TAPIO_OCC__COUNT;
	cr_assert_eq(occurrence_validate(&occ, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "type"), "%s", err);

	occ = base;
	occ.severity = (enum tapio_severity) - 1;
	cr_assert_eq(occurrence_validate(&occ, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "severity"), "%s", err);

	occ = base;
	occ.outcome = TAPIO_OUT__COUNT;
	cr_assert_eq(occurrence_validate(&occ, err, sizeof(err)), -EINVAL);

	occ = base;
	occ.id[5] = 'U'; /* not Crockford */
	cr_assert_eq(occurrence_validate(&occ, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "id"), "%s", err);

	occ = base;
	occ.node[0] = '\0';
	cr_assert_eq(occurrence_validate(&occ, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "node"), "%s", err);

	occ = base;
	occ.count = 3;
	cr_assert_eq(occurrence_validate(&occ, err, sizeof(err)), -EINVAL);
	occ.first_seen_ns = 10;
	occ.last_seen_ns = 5;
	cr_assert_eq(occurrence_validate(&occ, err, sizeof(err)), -EINVAL);
	occ.last_seen_ns = 20;
	cr_assert_eq(occurrence_validate(&occ, err, sizeof(err)), 0, "%s", err);

	occ = base;
	occ.last_seen_ns = 20;
	cr_assert_eq(occurrence_validate(&occ, err, sizeof(err)), -EINVAL);

	occ = base;
	memset(occ.data.storage.comm, 'x', sizeof(occ.data.storage.comm));
	cr_assert_eq(occurrence_validate(&occ, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "unterminated"), "%s", err);

	occ = base;
	memset(occ.error_message, 'x', sizeof(occ.error_message));
	cr_assert_eq(occurrence_validate(&occ, err, sizeof(err)), -EINVAL);

	occ = base;
	occ.timestamp_ns = 0;
	cr_assert_eq(occurrence_validate(&occ, NULL, 0), -EINVAL);
}
