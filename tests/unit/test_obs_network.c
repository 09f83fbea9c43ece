/* Network observer: classification, refusal/timeout windows, retransmit bursts, RTT baselines. */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>

#include "agent/observer/network.h"
#include "obs_capture.h"

static struct tapio_settings settings;
static struct network_observer *obs;

static void setup(void)
{
	capture_reset();
	settings_defaults(&settings);
	settings.conn_refused_window_ms = 1000;
	settings.conn_refused_min_count = 1;
	settings.retransmit_window_ms = 1000;
	settings.retransmit_burst_threshold = 3;
	settings.rtt_spike_ratio = 2.0;
	settings.rtt_absolute_ms = 500;
	settings.rtt_baseline_samples = 5;
	settings.rtt_baseline_max_ms = 100;
	obs = network_observer_new(&settings, &test_ctx);
	cr_assert_not_null(obs);
}

static void teardown(void)
{
	network_observer_free(obs);
	obs = NULL;
	capture_reset();
}

static void set_v4(__u8 addr[16], const char *ip)
{
	memset(addr, 0, 16);
	cr_assert_eq(inet_pton(AF_INET, ip, addr), 1);
}

static struct tapio_net_event net_ev(uint32_t kind, uint64_t ts, const char *dst, uint16_t dport)
{
	struct tapio_net_event e;

	memset(&e, 0, sizeof(e));
	e.config_generation = 7;
	e.ts_ns = ts;
	e.kind = kind;
	e.pid = 1234;
	e.tid = 1235;
	e.family = AF_INET;
	e.sport = 40000;
	e.dport = dport;
	set_v4(e.saddr, "10.0.0.1");
	set_v4(e.daddr, dst);
	memcpy(e.comm, "curl", 5);
	if (kind == TAPIO_NET_CONNECT_FAIL) {
		e.old_state = 2; /* SYN_SENT */
		e.new_state = 7; /* CLOSE */
	}
	return e;
}

static struct tapio_net_event refused(uint64_t ts, const char *dst, uint16_t dport)
{
	struct tapio_net_event e = net_ev(TAPIO_NET_CONNECT_FAIL, ts, dst, dport);

	e.rst_seen = 1;
	e.sk_err = ECONNREFUSED;
	return e;
}

static struct tapio_net_event timed_out(uint64_t ts, const char *dst, uint16_t dport, int err)
{
	struct tapio_net_event e = net_ev(TAPIO_NET_CONNECT_FAIL, ts, dst, dport);

	e.sk_err = err;
	return e;
}

static struct tapio_net_event rtt(uint64_t ts, uint32_t srtt_us)
{
	struct tapio_net_event e = net_ev(TAPIO_NET_RTT_SAMPLE, ts, "10.0.0.9", 8080);

	e.srtt_us = srtt_us;
	e.old_state = 1;
	e.new_state = 1;
	return e;
}

static void feed(const struct tapio_net_event *e)
{
	cr_assert_eq(network_observer_handle(obs, e, sizeof(*e)), 0);
}

TestSuite(network, .init = setup, .fini = teardown, .timeout = 10);

/* ---- pure classification ---- */

Test(network, classify_connect_outcomes)
{
	const struct tapio_net_event *p = NULL;
	struct tapio_net_event e = refused(T0, "10.0.0.5", 443);

	cr_assert_eq(network_classify(&e, sizeof(e), &p), NETWORK_REFUSED);
	cr_assert_eq(p, &e);

	/* ECONNREFUSED alone (RST raced the tracepoint) is a refusal */
	e.rst_seen = 0;
	cr_assert_eq(network_classify(&e, sizeof(e), NULL), NETWORK_REFUSED);

	/* a RST wins over any other errno: never a timeout */
	e.rst_seen = 1;
	e.sk_err = ETIMEDOUT;
	cr_assert_eq(network_classify(&e, sizeof(e), NULL), NETWORK_REFUSED);

	e = timed_out(T0, "10.0.0.5", 443, ETIMEDOUT);
	cr_assert_eq(network_classify(&e, sizeof(e), NULL), NETWORK_TIMEOUT);
	e.sk_err = EHOSTUNREACH;
	cr_assert_eq(network_classify(&e, sizeof(e), NULL), NETWORK_TIMEOUT);
	e.sk_err = ENETUNREACH;
	cr_assert_eq(network_classify(&e, sizeof(e), NULL), NETWORK_TIMEOUT);

	/* the application gave up: no error, no RST */
	e.sk_err = 0;
	cr_assert_eq(network_classify(&e, sizeof(e), NULL), NETWORK_NONE);
}

Test(network, classify_other_kinds)
{
	struct tapio_net_event e = net_ev(TAPIO_NET_RETRANSMIT, T0, "10.0.0.5", 443);

	cr_assert_eq(network_classify(&e, sizeof(e), NULL), NETWORK_RETRANSMIT);
	e = rtt(T0, 1000);
	cr_assert_eq(network_classify(&e, sizeof(e), NULL), NETWORK_RTT_SAMPLE);
}

Test(network, classify_malformed)
{
	struct tapio_net_event e = refused(T0, "10.0.0.5", 443);
	unsigned char big[sizeof(e) + 8];

	cr_assert_eq(network_classify(&e, sizeof(e) - 1, NULL), NETWORK_MALFORMED);
	cr_assert_eq(network_classify(&e, 0, NULL), NETWORK_MALFORMED);
	cr_assert_eq(network_classify(NULL, sizeof(e), NULL), NETWORK_MALFORMED);
	memset(big, 0, sizeof(big));
	memcpy(big, &e, sizeof(e));
	cr_assert_eq(network_classify(big, sizeof(big), NULL), NETWORK_MALFORMED);
	e.kind = 0;
	cr_assert_eq(network_classify(&e, sizeof(e), NULL), NETWORK_MALFORMED);
	e.kind = 99;
	cr_assert_eq(network_classify(&e, sizeof(e), NULL), NETWORK_MALFORMED);
	e = refused(T0, "10.0.0.5", 443);
	e.family = 1; /* AF_UNIX: not a TCP record */
	cr_assert_eq(network_classify(&e, sizeof(e), NULL), NETWORK_MALFORMED);
}

Test(network, tcp_state_names)
{
	cr_assert_str_eq(network_tcp_state_name(1), "ESTABLISHED");
	cr_assert_str_eq(network_tcp_state_name(2), "SYN_SENT");
	cr_assert_str_eq(network_tcp_state_name(7), "CLOSE");
	cr_assert_str_eq(network_tcp_state_name(10), "LISTEN");
	cr_assert_str_eq(network_tcp_state_name(12), "NEW_SYN_RECV");
	cr_assert_str_eq(network_tcp_state_name(0), "UNKNOWN");
	cr_assert_str_eq(network_tcp_state_name(200), "UNKNOWN");
}

Test(network, build_occurrence_fields_ipv4)
{
	struct tapio_net_event e = refused(T0, "10.0.0.5", 443);
	struct tapio_occurrence occ;

	network_build_occurrence(&e, TAPIO_OCC_CONNECTION_REFUSED, 0, 0, 0, 0, 0, &test_ctx, &occ);
	assert_valid(&occ);
	cr_assert_eq(occ.type, TAPIO_OCC_CONNECTION_REFUSED);
	cr_assert_eq(occ.severity, TAPIO_SEV_WARNING);
	cr_assert_eq(occ.outcome, TAPIO_OUT_FAILURE);
	cr_assert_eq(occ.timestamp_ns, wall(T0));
	cr_assert_eq(occ.config_generation, 7);
	cr_assert_eq(occ.count, 0);
	cr_assert_eq(occ.data.network.pid, 1234);
	cr_assert_str_eq(occ.data.network.comm, "curl");
	cr_assert_str_eq(occ.data.network.src_ip, "10.0.0.1");
	cr_assert_str_eq(occ.data.network.dst_ip, "10.0.0.5");
	cr_assert_eq(occ.data.network.src_port, 40000);
	cr_assert_eq(occ.data.network.dst_port, 443);
	cr_assert_eq(occ.data.network.family, 4);
	cr_assert_str_eq(occ.data.network.old_state, "SYN_SENT");
	cr_assert_str_eq(occ.data.network.new_state, "CLOSE");
	cr_assert_str_eq(occ.error_message, "connect to 10.0.0.5:443 refused");
}

Test(network, build_occurrence_ipv6_and_unterminated_comm)
{
	struct tapio_net_event e = timed_out(T0, "10.0.0.5", 443, ETIMEDOUT);
	struct tapio_occurrence occ;

	e.family = AF_INET6;
	cr_assert_eq(inet_pton(AF_INET6, "fd00::1", e.saddr), 1);
	cr_assert_eq(inet_pton(AF_INET6, "fd00::5", e.daddr), 1);
	memset(e.comm, 'x', sizeof(e.comm)); /* the kernel's comm may fill all 16 bytes */
	network_build_occurrence(&e, TAPIO_OCC_CONNECTION_TIMEOUT, 0, 0, 0, 0, 0, &test_ctx, &occ);
	assert_valid(&occ);
	cr_assert_eq(occ.severity, TAPIO_SEV_ERROR);
	cr_assert_eq(occ.outcome, TAPIO_OUT_TIMEOUT);
	cr_assert_eq(occ.data.network.family, 6);
	cr_assert_str_eq(occ.data.network.src_ip, "fd00::1");
	cr_assert_str_eq(occ.data.network.dst_ip, "fd00::5");
	cr_assert_str_eq(occ.data.network.comm, "xxxxxxxxxxxxxxx");
	cr_assert_str_eq(occ.error_message,
			 "connect to [fd00::5]:443 failed without reply (ETIMEDOUT)");
}

/* ---- refusal / timeout windows ---- */

Test(network, single_refusal_emitted_when_window_closes)
{
	struct tapio_net_event e = refused(T0, "10.0.0.5", 443);
	const struct tapio_occurrence *o;

	feed(&e);
	cr_assert_eq(cap.n, 0);
	network_observer_tick(obs, T0 + 999 * MS);
	cr_assert_eq(cap.n, 0, "window still open");
	network_observer_tick(obs, T0 + 1000 * MS);
	cr_assert_eq(cap.n, 1);
	o = &cap.occ[0];
	assert_valid(o);
	cr_assert_eq(o->type, TAPIO_OCC_CONNECTION_REFUSED);
	cr_assert_eq(o->count, 1);
	cr_assert_eq(o->first_seen_ns, wall(T0));
	cr_assert_eq(o->last_seen_ns, wall(T0));
	cr_assert_eq(o->timestamp_ns, wall(T0));
	cr_assert_str_eq(o->error_message, "connect to 10.0.0.5:443 refused");
	cr_assert_eq(stats.records, 1);
	cr_assert_eq(stats.anomalies[TAPIO_OCC_CONNECTION_REFUSED], 1);
	network_observer_tick(obs, T0 + 5000 * MS);
	network_observer_flush(obs);
	cr_assert_eq(cap.n, 1, "a closed window is emitted once");
}

Test(network, five_refusals_collapse_into_one)
{
	for (int i = 0; i < 5; i++) {
		struct tapio_net_event e = refused(T0 + (uint64_t)i * 100 * MS, "10.0.0.5", 443);

		e.pid = 1234 + (uint32_t)i; /* facts come from the first record */
		feed(&e);
	}
	network_observer_tick(obs, T0 + 1000 * MS);
	cr_assert_eq(cap.n, 1);
	assert_valid(&cap.occ[0]);
	cr_assert_eq(cap.occ[0].count, 5);
	cr_assert_eq(cap.occ[0].first_seen_ns, wall(T0));
	cr_assert_eq(cap.occ[0].last_seen_ns, wall(T0 + 400 * MS));
	cr_assert_eq(cap.occ[0].data.network.pid, 1234);
	cr_assert_str_eq(cap.occ[0].error_message, "connect to 10.0.0.5:443 refused 5 times");
	cr_assert_eq(stats.records, 5);
	cr_assert_eq(stats.suppressed, 4);
	cr_assert_eq(stats.anomalies[TAPIO_OCC_CONNECTION_REFUSED], 1);
	cr_assert_eq(stats.anomalies[TAPIO_OCC_CONNECTION_TIMEOUT], 0);
}

Test(network, two_destinations_two_occurrences)
{
	struct tapio_net_event a = refused(T0, "10.0.0.5", 443);
	struct tapio_net_event b = refused(T0 + 1 * MS, "10.0.0.6", 443);
	struct tapio_net_event c = refused(T0 + 2 * MS, "10.0.0.5", 80);

	feed(&a);
	feed(&b);
	feed(&a);
	feed(&c);
	network_observer_flush(obs);
	cr_assert_eq(cap.n, 3);
	assert_all_valid();
	for (size_t i = 0; i < cap.n; i++) {
		const struct tapio_occ_network *n = &cap.occ[i].data.network;

		if (strcmp(n->dst_ip, "10.0.0.5") == 0 && n->dst_port == 443)
			cr_assert_eq(cap.occ[i].count, 2);
		else
			cr_assert_eq(cap.occ[i].count, 1);
	}
}

Test(network, min_count_suppresses_small_windows)
{
	settings.conn_refused_min_count = 3;
	network_observer_set_settings(obs, &settings);
	for (int i = 0; i < 2; i++) {
		struct tapio_net_event e = refused(T0 + (uint64_t)i * MS, "10.0.0.5", 443);

		feed(&e);
	}
	network_observer_tick(obs, T0 + 2 * SEC);
	cr_assert_eq(cap.n, 0);
	cr_assert_eq(stats.suppressed, 2);

	for (int i = 0; i < 3; i++) {
		struct tapio_net_event e =
		    refused(T0 + 10 * SEC + (uint64_t)i * MS, "10.0.0.5", 443);

		feed(&e);
	}
	network_observer_tick(obs, T0 + 12 * SEC);
	cr_assert_eq(cap.n, 1);
	cr_assert_eq(cap.occ[0].count, 3);
}

Test(network, refusal_never_yields_timeout)
{
	struct tapio_net_event e = refused(T0, "10.0.0.5", 443);

	e.sk_err = ETIMEDOUT; /* RST seen: refusal whatever sk_err says */
	feed(&e);
	network_observer_flush(obs);
	cr_assert_eq(cap.n, 1);
	cr_assert_eq(cap.occ[0].type, TAPIO_OCC_CONNECTION_REFUSED);
	cr_assert_eq(stats.anomalies[TAPIO_OCC_CONNECTION_TIMEOUT], 0);
}

Test(network, timeouts_collapse_separately)
{
	struct tapio_net_event r = refused(T0, "10.0.0.5", 443);

	feed(&r);
	feed(&r);
	for (int i = 0; i < 3; i++) {
		struct tapio_net_event t =
		    timed_out(T0 + (uint64_t)i * MS, "10.0.0.5", 443, i ? EHOSTUNREACH : ETIMEDOUT);

		feed(&t);
	}
	network_observer_tick(obs, T0 + SEC);
	cr_assert_eq(cap.n, 2);
	assert_all_valid();
	cr_assert_eq(count_type(TAPIO_OCC_CONNECTION_REFUSED), 1);
	cr_assert_eq(count_type(TAPIO_OCC_CONNECTION_TIMEOUT), 1);
	for (size_t i = 0; i < cap.n; i++) {
		if (cap.occ[i].type == TAPIO_OCC_CONNECTION_TIMEOUT) {
			cr_assert_eq(cap.occ[i].count, 3);
			cr_assert_eq(cap.occ[i].severity, TAPIO_SEV_ERROR);
			cr_assert_eq(cap.occ[i].last_seen_ns, wall(T0 + 2 * MS));
			cr_assert_str_eq(cap.occ[i].error_message,
					 "connect to 10.0.0.5:443 failed without reply 3 times "
					 "(ETIMEDOUT)");
		} else {
			cr_assert_eq(cap.occ[i].count, 2);
		}
	}
}

Test(network, app_closed_connect_is_not_an_anomaly)
{
	struct tapio_net_event e = timed_out(T0, "10.0.0.5", 443, 0);

	feed(&e);
	network_observer_flush(obs);
	cr_assert_eq(cap.n, 0);
	cr_assert_eq(stats.records, 1);
	cr_assert_eq(stats.malformed, 0);
}

Test(network, late_record_closes_previous_window)
{
	struct tapio_net_event a = refused(T0, "10.0.0.5", 443);
	struct tapio_net_event b = refused(T0 + 1500 * MS, "10.0.0.5", 443);

	feed(&a);
	feed(&b); /* no tick in between: the first window is closed by this record */
	cr_assert_eq(cap.n, 1);
	cr_assert_eq(cap.occ[0].count, 1);
	cr_assert_eq(cap.occ[0].first_seen_ns, wall(T0));
	network_observer_flush(obs);
	cr_assert_eq(cap.n, 2);
	cr_assert_eq(cap.occ[1].first_seen_ns, wall(T0 + 1500 * MS));
	assert_all_valid();
}

Test(network, zero_window_reports_each_fact)
{
	struct tapio_net_event e = refused(T0, "10.0.0.5", 443);

	settings.conn_refused_window_ms = 0;
	network_observer_set_settings(obs, &settings);
	feed(&e);
	feed(&e);
	cr_assert_eq(cap.n, 2);
	cr_assert_eq(cap.occ[0].count, 1);
	assert_all_valid();
}

Test(network, settings_change_keeps_pending_window)
{
	struct tapio_net_event e = refused(T0, "10.0.0.5", 443);

	feed(&e);
	feed(&e);
	settings.retransmit_burst_threshold = 10;
	network_observer_set_settings(obs, &settings);
	network_observer_tick(obs, T0 + SEC);
	cr_assert_eq(cap.n, 1);
	cr_assert_eq(cap.occ[0].count, 2);
}

Test(network, table_full_emits_uncollapsed, .timeout = 30)
{
	char ip[32];
	uint32_t filled = 0;

	/* distinct destinations until the table refuses one */
	for (uint32_t i = 0; i < OBS_TABLE_SLOTS && stats.correlation_drops == 0; i++) {
		struct tapio_net_event e;

		snprintf(ip, sizeof(ip), "10.1.%u.%u", i / 250, i % 250 + 1);
		e = refused(T0, ip, 443);
		feed(&e);
		if (stats.correlation_drops == 0)
			filled++;
	}
	cr_assert_eq(stats.correlation_drops, 1);
	cr_assert_eq(filled, OBS_TABLE_SLOTS / 4 * 3);
	cr_assert_eq(cap.n, 1, "the untracked fact is emitted at once");
	assert_valid(&cap.occ[0]);
	cr_assert_eq(cap.occ[0].count, 1);
	cr_assert_eq(cap.occ[0].first_seen_ns, wall(T0));
	network_observer_flush(obs);
	cr_assert_eq(cap.n, filled + 1, "nothing lost");
	cr_assert_eq(stats.anomalies[TAPIO_OCC_CONNECTION_REFUSED], filled + 1);

	/* the table is usable again after the windows closed */
	struct tapio_net_event again = refused(T0 + 5 * SEC, "10.9.9.9", 443);

	feed(&again);
	cr_assert_eq(stats.correlation_drops, 1);
}

Test(network, malformed_records_are_counted)
{
	struct tapio_net_event e = refused(T0, "10.0.0.5", 443);
	unsigned char big[sizeof(e) + 1] = {0};

	cr_assert_eq(network_observer_handle(obs, &e, 10), -EINVAL);
	cr_assert_eq(network_observer_handle(obs, big, sizeof(big)), -EINVAL);
	e.kind = 42;
	cr_assert_eq(network_observer_handle(obs, &e, sizeof(e)), -EINVAL);
	cr_assert_eq(stats.records, 3);
	cr_assert_eq(stats.malformed, 3);
	network_observer_flush(obs);
	cr_assert_eq(cap.n, 0);
}

/* ---- retransmit bursts ---- */

static struct tapio_net_event retrans(uint64_t ts, uint32_t total, uint32_t cwnd)
{
	struct tapio_net_event e = net_ev(TAPIO_NET_RETRANSMIT, ts, "10.0.0.5", 443);

	e.total_retrans = total;
	e.snd_cwnd = cwnd;
	e.old_state = 1;
	e.new_state = 1;
	return e;
}

Test(network, retransmits_under_threshold_are_suppressed)
{
	struct tapio_net_event a = retrans(T0, 1, 10);
	struct tapio_net_event b = retrans(T0 + 100 * MS, 2, 5);

	feed(&a);
	feed(&b);
	network_observer_tick(obs, T0 + SEC);
	cr_assert_eq(cap.n, 0);
	cr_assert_eq(stats.suppressed, 2);
}

Test(network, retransmit_burst_over_threshold)
{
	for (uint32_t i = 0; i < 4; i++) {
		struct tapio_net_event e = retrans(T0 + i * 50 * MS, 10 + i, 20 >> i);

		if (i > 0)
			e.pid = 0; /* softirq context: pid unknown, first record's facts stay */
		feed(&e);
	}
	network_observer_tick(obs, T0 + SEC);
	cr_assert_eq(cap.n, 1);
	const struct tapio_occurrence *o = &cap.occ[0];

	assert_valid(o);
	cr_assert_eq(o->type, TAPIO_OCC_RETRANSMIT_SPIKE);
	cr_assert_eq(o->severity, TAPIO_SEV_WARNING);
	cr_assert_eq(o->count, 4);
	cr_assert_eq(o->first_seen_ns, wall(T0));
	cr_assert_eq(o->last_seen_ns, wall(T0 + 150 * MS));
	cr_assert_eq(o->data.network.pid, 1234);
	cr_assert_eq(o->data.network.total_retrans, 13, "counters of the last record");
	cr_assert_eq(o->data.network.snd_cwnd, 2);
	cr_assert_str_eq(o->data.network.old_state, "");
	cr_assert_str_eq(o->error_message, "4 retransmits on 10.0.0.1:40000 -> 10.0.0.5:443");
	cr_assert_eq(stats.suppressed, 3);
}

Test(network, retransmits_are_per_connection)
{
	for (uint32_t i = 0; i < 3; i++) {
		struct tapio_net_event a = retrans(T0 + i * MS, i, 10);
		struct tapio_net_event b = retrans(T0 + i * MS, i, 10);

		b.sport = 40001;
		feed(&a);
		if (i < 2)
			feed(&b);
	}
	network_observer_flush(obs);
	cr_assert_eq(cap.n, 1, "only the connection with 3 retransmits spikes");
	cr_assert_eq(cap.occ[0].data.network.src_port, 40000);
}

Test(network, retransmit_windows_split_in_time)
{
	/* 2 + 2 retransmits in two windows: never a burst of 3 within one window */
	uint64_t ts[] = {T0, T0 + 500 * MS, T0 + 1100 * MS, T0 + 1200 * MS};

	for (size_t i = 0; i < 4; i++) {
		struct tapio_net_event e = retrans(ts[i], (uint32_t)i, 10);

		feed(&e);
	}
	network_observer_flush(obs);
	cr_assert_eq(cap.n, 0);
	cr_assert_eq(stats.suppressed, 4);
}

/* ---- RTT baselines ---- */

Test(network, rtt_baseline_stabilises_and_spike_fires_once)
{
	uint64_t t = T0;

	for (int i = 0; i < 10; i++, t += 100 * MS) {
		struct tapio_net_event e = rtt(t, 20000); /* 20 ms */

		feed(&e);
	}
	cr_assert_eq(cap.n, 0);
	struct tapio_net_event spike = rtt(t, 60000); /* 3x */

	feed(&spike);
	cr_assert_eq(cap.n, 1);
	const struct tapio_occurrence *o = &cap.occ[0];

	assert_valid(o);
	cr_assert_eq(o->type, TAPIO_OCC_RTT_DEGRADATION);
	cr_assert_eq(o->outcome, TAPIO_OUT_IN_PROGRESS);
	cr_assert_eq(o->count, 0);
	cr_assert_eq(o->timestamp_ns, wall(t));
	cr_assert_float_eq(o->data.network.baseline_ms, 20.0, 1e-9);
	cr_assert_float_eq(o->data.network.current_ms, 60.0, 1e-9);
	cr_assert_str_eq(o->data.network.dst_ip, "10.0.0.9");
	cr_assert_eq(o->data.network.dst_port, 8080);
	cr_assert_str_eq(o->error_message, "rtt to 10.0.0.9:8080 is 60.0 ms, baseline 20.0 ms");

	/* more spikes inside the 10 s cooldown: suppressed, and they do not move the baseline */
	for (int i = 0; i < 20; i++) {
		t += 100 * MS;
		spike = rtt(t, 60000);
		feed(&spike);
	}
	cr_assert_eq(cap.n, 1);
	cr_assert_eq(stats.suppressed, 20);

	/* after the cooldown the same degradation is reported again, against the old baseline */
	t += NETWORK_RTT_COOLDOWN_NS;
	spike = rtt(t, 60000);
	feed(&spike);
	cr_assert_eq(cap.n, 2);
	cr_assert_float_eq(cap.occ[1].data.network.baseline_ms, 20.0, 1e-9);
	cr_assert_eq(stats.anomalies[TAPIO_OCC_RTT_DEGRADATION], 2);
}

Test(network, rtt_baseline_is_an_ewma)
{
	uint32_t samples[] = {10000, 20000, 20000, 20000, 20000};
	double expect = 10000;
	uint64_t t = T0;

	for (size_t i = 0; i < 5; i++, t += MS) {
		struct tapio_net_event e = rtt(t, samples[i]);

		feed(&e);
		if (i > 0)
			expect += (samples[i] - expect) / 8.0;
	}
	/* trusted now (5 samples): a sample at exactly ratio x baseline is a spike */
	struct tapio_net_event s = rtt(t, (uint32_t)ceil(2.0 * expect));

	feed(&s);
	cr_assert_eq(cap.n, 1);
	cr_assert_float_eq(cap.occ[0].data.network.baseline_ms, expect / 1000.0, 1e-9);
}

Test(network, rtt_untrusted_before_enough_samples)
{
	uint64_t t = T0;

	for (int i = 0; i < 4; i++, t += MS) {
		struct tapio_net_event e = rtt(t, 20000);

		feed(&e);
	}
	/* 4 samples < rtt_baseline_samples: a 3x sample is not judged against it */
	struct tapio_net_event e = rtt(t, 60000);

	feed(&e);
	cr_assert_eq(cap.n, 0);
}

Test(network, rtt_baseline_over_max_not_trusted_but_absolute_fires)
{
	uint64_t t = T0;

	for (int i = 0; i < 10; i++, t += MS) {
		struct tapio_net_event e = rtt(t, 150000); /* 150 ms > rtt_baseline_max_ms */

		feed(&e);
	}
	struct tapio_net_event e = rtt(t, 400000); /* 2.7x but baseline untrusted */

	feed(&e);
	cr_assert_eq(cap.n, 0);
	t += MS;
	e = rtt(t, 600000); /* >= rtt_absolute_ms */
	feed(&e);
	cr_assert_eq(cap.n, 1);
	assert_valid(&cap.occ[0]);
	cr_assert_float_eq(cap.occ[0].data.network.current_ms, 600.0, 1e-9);
	/* baseline: 9 samples of 150 ms folded with the 400 ms one */
	double expect = 150000 + (400000 - 150000) / 8.0;

	cr_assert_float_eq(cap.occ[0].data.network.baseline_ms, expect / 1000.0, 1e-9);
}

Test(network, rtt_endpoints_are_independent_and_evicted_when_idle)
{
	uint64_t t = T0;

	for (int i = 0; i < 5; i++, t += MS) {
		struct tapio_net_event e = rtt(t, 20000);

		feed(&e);
	}
	/* another port of the same host has no baseline yet */
	struct tapio_net_event other = rtt(t, 60000);

	other.dport = 9090;
	feed(&other);
	cr_assert_eq(cap.n, 0);

	/* idle for 10 minutes: the baseline is forgotten */
	network_observer_tick(obs, t + NETWORK_RTT_IDLE_NS);
	struct tapio_net_event late = rtt(t + NETWORK_RTT_IDLE_NS + SEC, 60000);

	feed(&late);
	cr_assert_eq(cap.n, 0, "no baseline after eviction");
}
