/* PMC: errno -> observer state mapping, and the real probe on this machine. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "agent/pmc.h"

Test(pmc, no_pmu_errnos_are_unsupported, .timeout = 10)
{
	static const int errs[] = {ENOENT, EOPNOTSUPP, ENODEV, EINVAL};
	char reason[192];
	size_t i;

	for (i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		cr_expect_eq(pmc_state_from_errno(errs[i], reason, sizeof(reason)),
			     OBSERVER_UNSUPPORTED, "errno %d", errs[i]);
		cr_expect(strncmp(reason, "no hardware PMU: perf_event_open(cycles): ", 42) == 0,
			  "reason: %s", reason);
		cr_expect(strstr(reason, strerror(errs[i])) != NULL, "reason: %s", reason);
		/* negative errno is accepted too */
		cr_expect_eq(pmc_state_from_errno(-errs[i], reason, sizeof(reason)),
			     OBSERVER_UNSUPPORTED);
	}
	pmc_state_from_errno(ENOENT, reason, sizeof(reason));
	cr_expect_str_eq(reason,
			 "no hardware PMU: perf_event_open(cycles): No such file or directory");
}

Test(pmc, permission_errnos_are_failures, .timeout = 10)
{
	char reason[192];

	cr_expect_eq(pmc_state_from_errno(EACCES, reason, sizeof(reason)), OBSERVER_FAILED);
	cr_expect_str_eq(reason, "perf_event_open(cycles): Permission denied");
	cr_expect_eq(pmc_state_from_errno(-EPERM, reason, sizeof(reason)), OBSERVER_FAILED);
	cr_expect(strstr(reason, "Operation not permitted") != NULL, "reason: %s", reason);
	cr_expect_eq(pmc_state_from_errno(EMFILE, reason, sizeof(reason)), OBSERVER_FAILED);
}

Test(pmc, success_is_running_with_empty_reason, .timeout = 10)
{
	char reason[16] = "stale";

	cr_expect_eq(pmc_state_from_errno(0, reason, sizeof(reason)), OBSERVER_RUNNING);
	cr_expect_str_eq(reason, "");
}

Test(pmc, reason_is_truncated_not_overflowed, .timeout = 10)
{
	char reason[24];

	memset(reason, 'x', sizeof(reason));
	pmc_state_from_errno(ENOENT, reason, 8);
	cr_expect_eq(strlen(reason), 7);
	cr_expect_eq(reason[8], 'x');
}

/*
 * The real probe: on a machine without a hardware PMU (this development VM) the node observer
 * must come out UNSUPPORTED with the reason, never "running" with nothing behind it.
 */
Test(pmc, real_probe_matches_this_machine, .timeout = 30)
{
	enum observer_state st = OBSERVER_RUNNING;
	char reason[192] = "";
	struct pmc *p = pmc_new(1000, &st, reason, sizeof(reason));
	bool has_pmu = access("/sys/bus/event_source/devices/cpu/type", F_OK) == 0 ||
		       access("/sys/bus/event_source/devices/cpu_core/type", F_OK) == 0;

	if (p) {
		cr_expect(has_pmu, "counters opened without a PMU in sysfs");
		cr_expect(st == OBSERVER_RUNNING || st == OBSERVER_DEGRADED, "state %d", st);
		cr_expect(pmc_ncpus(p) > 0);
		cr_expect(pmc_counter_fd(p, PMC_CYCLES, 0) >= 0);
		pmc_free(p);
		return;
	}
	cr_assert(st == OBSERVER_UNSUPPORTED || st == OBSERVER_FAILED, "state %d", st);
	cr_expect(reason[0] != '\0');
	if (!has_pmu) {
		cr_expect_eq(st, OBSERVER_UNSUPPORTED, "reason: %s", reason);
		cr_expect(strstr(reason, "no hardware PMU") != NULL, "reason: %s", reason);
	}
}
