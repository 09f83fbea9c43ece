/* Node observer: PMC deltas per CPU, resets, thresholds; PSI parsing and memory pressure. */
#include <errno.h>

#include "agent/observer/node.h"
#include "obs_capture.h"

static struct tapio_settings settings;
static struct node_observer *obs;

#define ALL_PMC (TAPIO_PMC_CYCLES | TAPIO_PMC_INSTRUCTIONS | TAPIO_PMC_STALLS)

static void setup(void)
{
	capture_reset();
	settings_defaults(&settings);
	settings.pmc_stall_warning_pct = 20;
	settings.pmc_stall_critical_pct = 40;
	settings.pmc_ipc_min = 1.0;
	settings.memory_pressure_pct = 10;
	obs = node_observer_new(&settings, &test_ctx);
	cr_assert_not_null(obs);
}

static void teardown(void)
{
	node_observer_free(obs);
	obs = NULL;
	capture_reset();
}

static struct tapio_node_event sample(uint32_t cpu, uint64_t ts, uint64_t cycles, uint64_t instr,
				      uint64_t stalls)
{
	struct tapio_node_event e;

	memset(&e, 0, sizeof(e));
	e.config_generation = 5;
	e.ts_ns = ts;
	e.cpu = cpu;
	e.cycles = cycles;
	e.instructions = instr;
	e.stall_cycles = stalls;
	e.valid = ALL_PMC;
	return e;
}

static void feed(const struct tapio_node_event *e)
{
	cr_assert_eq(node_observer_handle(obs, e, sizeof(*e)), 0);
}

TestSuite(node, .init = setup, .fini = teardown, .timeout = 10);

Test(node, classify)
{
	struct tapio_node_event e = sample(1023, T0, 1, 1, 1);
	unsigned char big[sizeof(e) + 1];

	cr_assert_eq(node_classify(&e, sizeof(e), NULL), NODE_SAMPLE);
	cr_assert_eq(node_classify(&e, sizeof(e) - 1, NULL), NODE_MALFORMED);
	cr_assert_eq(node_classify(NULL, sizeof(e), NULL), NODE_MALFORMED);
	memset(big, 0, sizeof(big));
	memcpy(big, &e, sizeof(e));
	cr_assert_eq(node_classify(big, sizeof(big), NULL), NODE_MALFORMED);
	e.cpu = NODE_MAX_CPUS;
	cr_assert_eq(node_classify(&e, sizeof(e), NULL), NODE_MALFORMED);
}

Test(node, first_sample_only_primes)
{
	struct tapio_node_event e = sample(0, T0, 1000000, 100, 900000);

	feed(&e);
	cr_assert_eq(cap.n, 0);
	cr_assert_eq(stats.records, 1);
}

Test(node, ipc_from_deltas_not_cumulative)
{
	/* cumulative IPC would be 5500/2000 = 2.75 (fine); the interval's is 500/1000 = 0.5 */
	struct tapio_node_event a = sample(2, T0, 1000, 5000, 0);
	struct tapio_node_event b = sample(2, T0 + SEC, 2000, 5500, 50);

	feed(&a);
	feed(&b);
	cr_assert_eq(cap.n, 1);
	const struct tapio_occurrence *o = &cap.occ[0];

	assert_valid(o);
	cr_assert_eq(o->type, TAPIO_OCC_IPC_DEGRADATION);
	cr_assert_eq(o->severity, TAPIO_SEV_WARNING);
	cr_assert_eq(o->outcome, TAPIO_OUT_IN_PROGRESS);
	cr_assert_eq(o->timestamp_ns, wall(T0 + SEC));
	cr_assert_eq(o->config_generation, 5);
	cr_assert_eq(o->count, 0);
	cr_assert_eq(o->data.node.cpu, 2);
	cr_assert_eq(o->data.node.cycles, 1000);
	cr_assert_eq(o->data.node.instructions, 500);
	cr_assert_eq(o->data.node.stall_cycles, 50);
	cr_assert_float_eq(o->data.node.ipc, 0.5, 1e-12);
	cr_assert_float_eq(o->data.node.stall_pct, 5.0, 1e-12);
	cr_assert_str_eq(o->error_message,
			 "cpu 2 ran 0.50 instructions per cycle over 1000 cycles");
}

Test(node, stall_warning_and_critical)
{
	struct tapio_node_event a = sample(0, T0, 0, 0, 0);
	struct tapio_node_event b = sample(0, T0 + SEC, 1000, 2000, 300);     /* 30 % */
	struct tapio_node_event c = sample(0, T0 + 2 * SEC, 2000, 4000, 750); /* 45 % */

	feed(&a);
	feed(&b);
	cr_assert_eq(cap.n, 1);
	assert_valid(&cap.occ[0]);
	cr_assert_eq(cap.occ[0].type, TAPIO_OCC_CPU_STALL);
	cr_assert_eq(cap.occ[0].severity, TAPIO_SEV_WARNING);
	cr_assert_float_eq(cap.occ[0].data.node.stall_pct, 30.0, 1e-9);
	cr_assert_eq(cap.occ[0].data.node.stall_cycles, 300);
	cr_assert_float_eq(cap.occ[0].data.node.ipc, 2.0, 1e-9);
	cr_assert_str_eq(cap.occ[0].error_message, "cpu 0 stalled 30.0% of 1000 cycles");
	feed(&c);
	cr_assert_eq(cap.n, 2);
	assert_valid(&cap.occ[1]);
	cr_assert_eq(cap.occ[1].severity, TAPIO_SEV_CRITICAL);
	cr_assert_float_eq(cap.occ[1].data.node.stall_pct, 45.0, 1e-9);
	cr_assert_eq(stats.anomalies[TAPIO_OCC_CPU_STALL], 2);
	cr_assert_eq(stats.anomalies[TAPIO_OCC_IPC_DEGRADATION], 0);
}

Test(node, stall_and_low_ipc_together)
{
	struct tapio_node_event a = sample(1, T0, 0, 0, 0);
	struct tapio_node_event b = sample(1, T0 + SEC, 1000, 300, 500);

	feed(&a);
	feed(&b);
	cr_assert_eq(cap.n, 2);
	assert_all_valid();
	cr_assert_eq(count_type(TAPIO_OCC_CPU_STALL), 1);
	cr_assert_eq(count_type(TAPIO_OCC_IPC_DEGRADATION), 1);
}

Test(node, normal_pmc_is_not_an_anomaly)
{
	struct tapio_node_event a = sample(0, T0, 1000, 1000, 10);
	struct tapio_node_event b = sample(0, T0 + SEC, 2001000, 4001000, 100010); /* ipc 2, 5 % */
	struct tapio_node_event c = b;

	c.ts_ns += SEC; /* idle CPU: no cycles counted */
	feed(&a);
	feed(&b);
	feed(&c);
	cr_assert_eq(cap.n, 0);
}

Test(node, counter_reset_reprimes)
{
	struct tapio_node_event a = sample(0, T0, 5000000, 9000000, 0);
	struct tapio_node_event b = sample(0, T0 + SEC, 1000, 100, 0); /* reset: went backwards */
	struct tapio_node_event c = sample(0, T0 + 2 * SEC, 2000, 600, 0);

	feed(&a);
	feed(&b);
	cr_assert_eq(cap.n, 0, "no judgement across a reset");
	cr_assert_eq(stats.counter_resets, 1);
	feed(&c);
	cr_assert_eq(cap.n, 1, "the next interval is judged against the reset value");
	cr_assert_eq(cap.occ[0].data.node.cycles, 1000);
	cr_assert_eq(cap.occ[0].data.node.instructions, 500);
}

Test(node, invalid_counters_are_not_judged)
{
	struct tapio_node_event a = sample(0, T0, 0, 0, 0);
	struct tapio_node_event b = sample(0, T0 + SEC, 1000, 100, 900);

	a.valid = TAPIO_PMC_CYCLES; /* no instructions or stalls at the start of the interval */
	feed(&a);
	feed(&b);
	cr_assert_eq(cap.n, 0);

	/* cycles unreadable: nothing at all, even with instructions and stalls */
	struct tapio_node_event c = sample(0, T0 + 2 * SEC, 2000, 200, 1800);

	c.valid = TAPIO_PMC_INSTRUCTIONS | TAPIO_PMC_STALLS;
	feed(&c);
	cr_assert_eq(cap.n, 0);

	/* stalls unreadable at the end: IPC judged, stall not */
	struct node_judgement j;
	struct node_counters prev = {.valid = ALL_PMC, .primed = true};

	b.valid = TAPIO_PMC_CYCLES | TAPIO_PMC_INSTRUCTIONS;
	cr_assert_eq(node_judge(&prev, &b, &settings, &j), NODE_JUDGED);
	cr_assert(j.have_ipc);
	cr_assert(j.ipc_low);
	cr_assert_not(j.have_stall);
	cr_assert_not(j.stall);
}

Test(node, judge_is_pure)
{
	struct node_counters prev = {.primed = false};
	struct tapio_node_event e = sample(0, T0, 1000, 100, 900);
	struct node_judgement j;

	cr_assert_eq(node_judge(&prev, &e, &settings, &j), NODE_PRIMED);
	prev = (struct node_counters){
	    .cycles = 0, .instructions = 0, .stall_cycles = 0, .valid = ALL_PMC, .primed = true};
	cr_assert_eq(node_judge(&prev, &e, &settings, &j), NODE_JUDGED);
	cr_assert_eq(j.cycles, 1000);
	cr_assert(j.have_ipc);
	cr_assert(j.have_stall);
	cr_assert(j.ipc_low);
	cr_assert(j.stall);
	cr_assert_eq(j.stall_severity, TAPIO_SEV_CRITICAL);
	prev.cycles = 1000;
	cr_assert_eq(node_judge(&prev, &e, &settings, &j), NODE_IDLE);
	prev.cycles = 2000;
	cr_assert_eq(node_judge(&prev, &e, &settings, &j), NODE_RESET);
}

Test(node, cpus_are_independent)
{
	struct tapio_node_event a0 = sample(0, T0, 1000, 1000, 0);
	struct tapio_node_event a1 = sample(1, T0, 50000, 50000, 0);
	struct tapio_node_event b0 = sample(0, T0 + SEC, 2000, 3000, 0);
	struct tapio_node_event b1 = sample(1, T0 + SEC, 51000, 50200, 0);

	feed(&a0);
	feed(&a1);
	feed(&b0);
	feed(&b1);
	cr_assert_eq(cap.n, 1);
	cr_assert_eq(cap.occ[0].data.node.cpu, 1);
	cr_assert_float_eq(cap.occ[0].data.node.ipc, 0.2, 1e-12);
}

Test(node, malformed_records_are_counted)
{
	struct tapio_node_event e = sample(4096, T0, 1, 1, 1);

	cr_assert_eq(node_observer_handle(obs, &e, sizeof(e)), -EINVAL);
	e.cpu = 0;
	cr_assert_eq(node_observer_handle(obs, &e, 12), -EINVAL);
	cr_assert_eq(stats.records, 2);
	cr_assert_eq(stats.malformed, 2);
}

/* ---- PSI ---- */

static const char psi_text[] = "some avg10=12.50 avg60=3.00 avg300=1.00 total=123456\n"
			       "full avg10=4.25 avg60=1.00 avg300=0.50 total=65432\n";

Test(node, psi_parse_valid)
{
	double some = -1, full = -1;

	cr_assert_eq(node_parse_psi(psi_text, strlen(psi_text), &some, &full), 0);
	cr_assert_float_eq(some, 12.5, 1e-12);
	cr_assert_float_eq(full, 4.25, 1e-12);

	const char only_some[] = "some avg10=0.00 avg60=0.00 avg300=0.00 total=0";

	cr_assert_eq(node_parse_psi(only_some, strlen(only_some), &some, &full), 0);
	cr_assert_float_eq(some, 0.0, 1e-12);
	cr_assert_float_eq(full, 0.0, 1e-12);
}

Test(node, psi_parse_garbage)
{
	double some = 0, full = 0;
	const char *bad[] = {
	    "",
	    "garbage",
	    "full avg10=1.00 avg60=0.00 avg300=0.00 total=1\n", /* no "some" */
	    "some avg10=abc avg60=0.00 avg300=0.00 total=1\n",
	    "some avg10= avg60=0.00 avg300=0.00 total=1\n",
	    "some avg10=1.0x avg60=0.00 avg300=0.00 total=1\n",
	    "some avg10=101.00 avg60=0.00 avg300=0.00 total=1\n",
	    "some avg10=-1.00 avg60=0.00 avg300=0.00 total=1\n",
	    "some avg10=nan avg60=0.00 avg300=0.00 total=1\n",
	    "some avg60=1.00 avg300=0.00 total=1\n",
	    "some xavg10=1.00 total=1\n",
	    "some avg10=1.00 avg60=0.00 avg300=0.00\n", /* truncated: no total */
	    "some avg10=1.00 avg60=0.00 avg300=0.00 total=1\nwhat is this\n",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(node_parse_psi(bad[i], strlen(bad[i]), &some, &full), -EINVAL,
			     "accepted: %s", bad[i]);
	cr_assert_eq(node_parse_psi(NULL, 10, &some, &full), -EINVAL);

	char nul[] = "some avg10=1.00 avg60=0.00 avg300=0.00 total=1\n";

	nul[5] = '\0';
	cr_assert_eq(node_parse_psi(nul, sizeof(nul) - 1, &some, &full), -EINVAL);

	char big[1024];

	memset(big, ' ', sizeof(big));
	memcpy(big, psi_text, strlen(psi_text));
	cr_assert_eq(node_parse_psi(big, sizeof(big), &some, &full), -EINVAL);
}

static const char *psi_with(double some)
{
	static char buf[128];

	snprintf(buf, sizeof(buf),
		 "some avg10=%.2f avg60=1.00 avg300=1.00 total=99\n"
		 "full avg10=1.50 avg60=0.10 avg300=0.00 total=9\n",
		 some);
	return buf;
}

Test(node, memory_pressure_rising_edge_and_repeat)
{
	const char *t;

	node_observer_set_generation(obs, 9);
	t = psi_with(5.0);
	cr_assert_eq(node_observer_psi(obs, t, strlen(t), T0), 0);
	cr_assert_eq(cap.n, 0, "below the threshold");

	t = psi_with(12.5);
	cr_assert_eq(node_observer_psi(obs, t, strlen(t), T0 + SEC), 0);
	cr_assert_eq(cap.n, 1, "rising edge");
	const struct tapio_occurrence *o = &cap.occ[0];

	assert_valid(o);
	cr_assert_eq(o->type, TAPIO_OCC_MEMORY_PRESSURE);
	cr_assert_eq(o->severity, TAPIO_SEV_WARNING);
	cr_assert_eq(o->outcome, TAPIO_OUT_IN_PROGRESS);
	cr_assert_eq(o->timestamp_ns, wall(T0 + SEC));
	cr_assert_eq(o->config_generation, 9);
	cr_assert_eq(o->data.node.cpu, -1);
	cr_assert_float_eq(o->data.node.memory_some_avg10, 12.5, 1e-12);
	cr_assert_float_eq(o->data.node.memory_full_avg10, 1.5, 1e-12);
	cr_assert_str_eq(o->error_message, "memory pressure some avg10 12.50%, full avg10 1.50%");

	/* still above: quiet until 60 s after the last report */
	cr_assert_eq(node_observer_psi(obs, t, strlen(t), T0 + 31 * SEC), 0);
	cr_assert_eq(node_observer_psi(obs, t, strlen(t), T0 + 60 * SEC), 0);
	cr_assert_eq(cap.n, 1);
	cr_assert_eq(stats.suppressed, 2);
	cr_assert_eq(node_observer_psi(obs, t, strlen(t), T0 + 61 * SEC), 0);
	cr_assert_eq(cap.n, 2);

	/* falls below, rises again: reported at once */
	t = psi_with(2.0);
	cr_assert_eq(node_observer_psi(obs, t, strlen(t), T0 + 62 * SEC), 0);
	t = psi_with(30.0);
	cr_assert_eq(node_observer_psi(obs, t, strlen(t), T0 + 63 * SEC), 0);
	cr_assert_eq(cap.n, 3);
	cr_assert_eq(stats.anomalies[TAPIO_OCC_MEMORY_PRESSURE], 3);
}

Test(node, memory_pressure_generation_follows_pmc_records)
{
	struct tapio_node_event e = sample(0, T0, 1, 1, 1);
	const char *t = psi_with(50.0);

	e.config_generation = 17;
	feed(&e);
	cr_assert_eq(node_observer_psi(obs, t, strlen(t), T0), 0);
	cr_assert_eq(cap.n, 1);
	cr_assert_eq(cap.occ[0].config_generation, 17);
}

Test(node, psi_garbage_is_counted)
{
	cr_assert_eq(node_observer_psi(obs, "nonsense", 8, T0), -EINVAL);
	cr_assert_eq(stats.malformed, 1);
	cr_assert_eq(cap.n, 0);
}
