/* Container observer: exit code decoding, ignored codes, OOM victims. */
#include <errno.h>

#include "agent/observer/container.h"
#include "obs_capture.h"

static struct tapio_settings settings;
static struct container_observer *obs;

static void setup(void)
{
	capture_reset();
	settings_defaults(&settings);
	settings.n_ignored_exit_codes = 2;
	settings.ignored_exit_codes[0] = 1;
	settings.ignored_exit_codes[1] = 130;
	obs = container_observer_new(&settings, &test_ctx);
	cr_assert_not_null(obs);
}

static void teardown(void)
{
	container_observer_free(obs);
	obs = NULL;
	capture_reset();
}

static struct tapio_container_event ct_ev(uint32_t kind, int32_t exit_code)
{
	struct tapio_container_event e;

	memset(&e, 0, sizeof(e));
	e.config_generation = 3;
	e.ts_ns = T0;
	e.kind = kind;
	e.pid = 1234;
	e.tid = 1236;
	e.ppid = 1;
	e.exit_code = exit_code;
	e.cgroup_id = 4242;
	e.memory_usage_bytes = 64ull << 20;
	e.memory_limit_bytes = 64ull << 20;
	e.rss_bytes = 60ull << 20;
	memcpy(e.comm, "stress", 7);
	strcpy(e.cgroup_path, "/tapio-test");
	return e;
}

TestSuite(container, .init = setup, .fini = teardown, .timeout = 10);

Test(container, decode_exit)
{
	struct container_exit x = container_decode_exit(9);

	cr_assert_eq(x.signal, 9);
	cr_assert_eq(x.status, 0);
	cr_assert_not(x.core_dumped);
	x = container_decode_exit(11 | 0x80);
	cr_assert_eq(x.signal, 11);
	cr_assert(x.core_dumped);
	x = container_decode_exit(3 << 8);
	cr_assert_eq(x.signal, 0);
	cr_assert_eq(x.status, 3);
	x = container_decode_exit(255 << 8);
	cr_assert_eq(x.status, 255);
}

Test(container, classify_exits)
{
	struct tapio_container_event e = ct_ev(TAPIO_CT_EXIT, 9);
	const struct tapio_container_event *p = NULL;

	cr_assert_eq(container_classify(&e, sizeof(e), &settings, &p), CONTAINER_EXIT_SIGNAL);
	cr_assert_eq(p, &e);
	e.exit_code = 3 << 8;
	cr_assert_eq(container_classify(&e, sizeof(e), &settings, NULL), CONTAINER_EXIT_STATUS);
	e.exit_code = 0; /* clean exit: the kernel filters it too, userspace does not trust that */
	cr_assert_eq(container_classify(&e, sizeof(e), &settings, NULL), CONTAINER_NONE);
	e.exit_code = 1 << 8; /* ignored */
	cr_assert_eq(container_classify(&e, sizeof(e), &settings, NULL), CONTAINER_NONE);
	e.exit_code = 130 << 8;
	cr_assert_eq(container_classify(&e, sizeof(e), &settings, NULL), CONTAINER_NONE);
	e.exit_code = 2 << 8;
	cr_assert_eq(container_classify(&e, sizeof(e), &settings, NULL), CONTAINER_EXIT_STATUS);
	/* an ignored status never hides a signal */
	e.exit_code = (1 << 8) | 15;
	cr_assert_eq(container_classify(&e, sizeof(e), &settings, NULL), CONTAINER_EXIT_SIGNAL);
	e = ct_ev(TAPIO_CT_OOM_VICTIM, 0);
	cr_assert_eq(container_classify(&e, sizeof(e), &settings, NULL), CONTAINER_OOM_KILL);
}

Test(container, classify_malformed)
{
	struct tapio_container_event e = ct_ev(TAPIO_CT_EXIT, 9);
	unsigned char big[sizeof(e) + 4];

	cr_assert_eq(container_classify(&e, sizeof(e) - 1, &settings, NULL), CONTAINER_MALFORMED);
	cr_assert_eq(container_classify(NULL, 0, &settings, NULL), CONTAINER_MALFORMED);
	memset(big, 0, sizeof(big));
	memcpy(big, &e, sizeof(e));
	cr_assert_eq(container_classify(big, sizeof(big), &settings, NULL), CONTAINER_MALFORMED);
	e.kind = 0;
	cr_assert_eq(container_classify(&e, sizeof(e), &settings, NULL), CONTAINER_MALFORMED);
	e.kind = 3;
	cr_assert_eq(container_classify(&e, sizeof(e), &settings, NULL), CONTAINER_MALFORMED);
}

Test(container, killed_by_signal_occurrence)
{
	struct tapio_container_event e = ct_ev(TAPIO_CT_EXIT, 9);

	cr_assert_eq(container_observer_handle(obs, &e, sizeof(e)), 0);
	cr_assert_eq(cap.n, 1);
	const struct tapio_occurrence *o = &cap.occ[0];

	assert_valid(o);
	cr_assert_eq(o->type, TAPIO_OCC_ABNORMAL_EXIT);
	cr_assert_eq(o->severity, TAPIO_SEV_ERROR);
	cr_assert_eq(o->outcome, TAPIO_OUT_FAILURE);
	cr_assert_eq(o->timestamp_ns, wall(T0));
	cr_assert_eq(o->config_generation, 3);
	cr_assert_eq(o->count, 0);
	cr_assert_eq(o->data.container.pid, 1234);
	cr_assert_eq(o->data.container.tid, 1236);
	cr_assert_str_eq(o->data.container.comm, "stress");
	cr_assert_eq(o->data.container.exit_code, 0);
	cr_assert_eq(o->data.container.signal, 9);
	cr_assert_not(o->data.container.core_dumped);
	cr_assert_eq(o->data.container.cgroup_id, 4242);
	cr_assert_str_eq(o->data.container.cgroup_path, "/tapio-test");
	cr_assert_str_eq(o->error_message, "process 1234 (stress) killed by signal 9 (SIGKILL)");
	cr_assert_eq(stats.anomalies[TAPIO_OCC_ABNORMAL_EXIT], 1);
	cr_assert_eq(stats.records, 1);
}

Test(container, core_dump_is_reported)
{
	struct tapio_container_event e = ct_ev(TAPIO_CT_EXIT, 11 | 0x80);

	cr_assert_eq(container_observer_handle(obs, &e, sizeof(e)), 0);
	cr_assert_eq(cap.n, 1);
	cr_assert_eq(cap.occ[0].data.container.signal, 11);
	cr_assert(cap.occ[0].data.container.core_dumped);
	cr_assert_str_eq(cap.occ[0].error_message,
			 "process 1234 (stress) killed by signal 11 (SIGSEGV), core dumped");
}

Test(container, exit_status_occurrence)
{
	struct tapio_container_event e = ct_ev(TAPIO_CT_EXIT, 3 << 8);

	cr_assert_eq(container_observer_handle(obs, &e, sizeof(e)), 0);
	cr_assert_eq(cap.n, 1);
	assert_valid(&cap.occ[0]);
	cr_assert_eq(cap.occ[0].severity, TAPIO_SEV_WARNING);
	cr_assert_eq(cap.occ[0].data.container.exit_code, 3);
	cr_assert_eq(cap.occ[0].data.container.signal, 0);
	cr_assert_str_eq(cap.occ[0].error_message, "process 1234 (stress) exited with status 3");
}

Test(container, clean_and_ignored_exits_emit_nothing)
{
	struct tapio_container_event e = ct_ev(TAPIO_CT_EXIT, 0);

	cr_assert_eq(container_observer_handle(obs, &e, sizeof(e)), 0);
	e.exit_code = 1 << 8;
	cr_assert_eq(container_observer_handle(obs, &e, sizeof(e)), 0);
	container_observer_tick(obs, T0 + SEC);
	container_observer_flush(obs);
	cr_assert_eq(cap.n, 0);
	cr_assert_eq(stats.records, 2);

	/* runtime config: the operator stops ignoring 1 */
	settings.n_ignored_exit_codes = 0;
	container_observer_set_settings(obs, &settings);
	cr_assert_eq(container_observer_handle(obs, &e, sizeof(e)), 0);
	cr_assert_eq(cap.n, 1);
}

Test(container, oom_kill_occurrence)
{
	struct tapio_container_event e = ct_ev(TAPIO_CT_OOM_VICTIM, 0);

	cr_assert_eq(container_observer_handle(obs, &e, sizeof(e)), 0);
	cr_assert_eq(cap.n, 1);
	const struct tapio_occurrence *o = &cap.occ[0];

	assert_valid(o);
	cr_assert_eq(o->type, TAPIO_OCC_OOM_KILL);
	cr_assert_eq(o->severity, TAPIO_SEV_CRITICAL);
	cr_assert_eq(o->outcome, TAPIO_OUT_FAILURE);
	cr_assert_eq(o->data.container.pid, 1234);
	cr_assert_eq(o->data.container.tid, 1236);
	cr_assert_str_eq(o->data.container.comm, "stress");
	cr_assert_eq(o->data.container.cgroup_id, 4242);
	cr_assert_str_eq(o->data.container.cgroup_path, "/tapio-test");
	cr_assert_eq(o->data.container.memory_usage_bytes, 64ull << 20);
	cr_assert_eq(o->data.container.memory_limit_bytes, 64ull << 20);
	cr_assert_eq(o->data.container.rss_bytes, 60ull << 20);
	cr_assert_eq(o->data.container.signal, 0);
	cr_assert_str_eq(o->error_message, "OOM killer chose process 1234 (stress) in /tapio-test");
	cr_assert_eq(stats.anomalies[TAPIO_OCC_OOM_KILL], 1);
}

Test(container, every_death_is_its_own_fact)
{
	struct tapio_container_event e = ct_ev(TAPIO_CT_OOM_VICTIM, 0);

	for (int i = 0; i < 3; i++)
		cr_assert_eq(container_observer_handle(obs, &e, sizeof(e)), 0);
	cr_assert_eq(cap.n, 3);
	cr_assert_eq(stats.suppressed, 0);
	cr_assert_str_neq(cap.occ[0].id, cap.occ[1].id);
}

Test(container, unterminated_kernel_strings_are_bounded)
{
	struct tapio_container_event e = ct_ev(TAPIO_CT_OOM_VICTIM, 0);

	memset(e.comm, 'c', sizeof(e.comm));
	memset(e.cgroup_path, 'p', sizeof(e.cgroup_path));
	cr_assert_eq(container_observer_handle(obs, &e, sizeof(e)), 0);
	cr_assert_eq(cap.n, 1);
	assert_valid(&cap.occ[0]);
	cr_assert_eq(strlen(cap.occ[0].data.container.comm), TAPIO_OCC_COMM_LEN - 1);
	cr_assert_eq(strlen(cap.occ[0].data.container.cgroup_path), TAPIO_OCC_CGROUP_LEN - 1);
}

Test(container, malformed_records_are_counted)
{
	struct tapio_container_event e = ct_ev(TAPIO_CT_EXIT, 9);

	cr_assert_eq(container_observer_handle(obs, &e, 8), -EINVAL);
	e.kind = 77;
	cr_assert_eq(container_observer_handle(obs, &e, sizeof(e)), -EINVAL);
	cr_assert_eq(stats.records, 2);
	cr_assert_eq(stats.malformed, 2);
	cr_assert_eq(cap.n, 0);
}
