/* Storage observer: errno mapping, opcodes, thresholds, dedupe per device/type/severity. */
#include <errno.h>

#include "agent/observer/storage.h"
#include "obs_capture.h"

static struct tapio_settings settings;
static struct storage_observer *obs;

#define DEV(ma, mi) (((uint32_t)(ma) << 20) | (uint32_t)(mi))

static void setup(void)
{
	capture_reset();
	settings_defaults(&settings);
	settings.storage_warning_ms = 50;
	settings.storage_critical_ms = 200;
	settings.storage_window_ms = 1000;
	obs = storage_observer_new(&settings, &test_ctx);
	cr_assert_not_null(obs);
}

static void teardown(void)
{
	storage_observer_free(obs);
	obs = NULL;
	capture_reset();
}

static struct tapio_storage_event st_ev(uint64_t ts, uint64_t latency_ms, int32_t error)
{
	struct tapio_storage_event e;

	memset(&e, 0, sizeof(e));
	e.config_generation = 11;
	e.ts_ns = ts;
	e.latency_ns = latency_ms * MS;
	e.sector = 2048;
	e.bytes = 4096;
	e.dev = DEV(8, 16);
	e.pid = 321;
	e.cmd_flags = 0; /* read */
	e.error = error;
	memcpy(e.comm, "postgres", 9);
	return e;
}

static void feed(const struct tapio_storage_event *e)
{
	cr_assert_eq(storage_observer_handle(obs, e, sizeof(*e)), 0);
}

TestSuite(storage, .init = setup, .fini = teardown, .timeout = 10);

Test(storage, classify_thresholds)
{
	struct tapio_storage_event e = st_ev(T0, 10, 0);
	const struct tapio_storage_event *p = NULL;

	cr_assert_eq(storage_classify(&e, sizeof(e), &settings, &p), STORAGE_NONE);
	cr_assert_eq(p, &e);
	e.latency_ns = 50 * MS - 1;
	cr_assert_eq(storage_classify(&e, sizeof(e), &settings, NULL), STORAGE_NONE);
	e.latency_ns = 50 * MS;
	cr_assert_eq(storage_classify(&e, sizeof(e), &settings, NULL), STORAGE_LATENCY_WARNING);
	e.latency_ns = 199 * MS;
	cr_assert_eq(storage_classify(&e, sizeof(e), &settings, NULL), STORAGE_LATENCY_WARNING);
	e.latency_ns = 200 * MS;
	cr_assert_eq(storage_classify(&e, sizeof(e), &settings, NULL), STORAGE_LATENCY_CRITICAL);
	/* an error wins over latency, fast or slow */
	e = st_ev(T0, 1, 10);
	cr_assert_eq(storage_classify(&e, sizeof(e), &settings, NULL), STORAGE_IO_ERROR);
	e.latency_ns = 900 * MS;
	cr_assert_eq(storage_classify(&e, sizeof(e), &settings, NULL), STORAGE_IO_ERROR);
}

Test(storage, classify_malformed)
{
	struct tapio_storage_event e = st_ev(T0, 300, 0);
	unsigned char big[sizeof(e) * 2];

	cr_assert_eq(storage_classify(&e, sizeof(e) - 8, &settings, NULL), STORAGE_MALFORMED);
	cr_assert_eq(storage_classify(NULL, sizeof(e), &settings, NULL), STORAGE_MALFORMED);
	memset(big, 0, sizeof(big));
	memcpy(big, &e, sizeof(e));
	cr_assert_eq(storage_classify(big, sizeof(big), &settings, NULL), STORAGE_MALFORMED);
}

Test(storage, blk_status_errno_table)
{
	cr_assert_eq(storage_errno_from_blk_status(0), 0);
	cr_assert_eq(storage_errno_from_blk_status(1), -EOPNOTSUPP);
	cr_assert_eq(storage_errno_from_blk_status(2), -ETIMEDOUT);
	cr_assert_eq(storage_errno_from_blk_status(3), -ENOSPC);
	cr_assert_eq(storage_errno_from_blk_status(4), -ENOLINK);
	cr_assert_eq(storage_errno_from_blk_status(5), -EREMOTEIO);
	cr_assert_eq(storage_errno_from_blk_status(6), -EBADE);
	cr_assert_eq(storage_errno_from_blk_status(7), -ENODATA);
	cr_assert_eq(storage_errno_from_blk_status(8), -EILSEQ);
	cr_assert_eq(storage_errno_from_blk_status(9), -ENOMEM);
	cr_assert_eq(storage_errno_from_blk_status(10), -EIO);
	cr_assert_eq(storage_errno_from_blk_status(12), -EAGAIN);
	cr_assert_eq(storage_errno_from_blk_status(13), -EBUSY);
	cr_assert_eq(storage_errno_from_blk_status(16), -ENODEV);
	cr_assert_eq(storage_errno_from_blk_status(17), -ETIME);
	cr_assert_eq(storage_errno_from_blk_status(200), -EIO, "unknown status");
	cr_assert_eq(storage_errno_from_blk_status(-EIO), -EIO, "already an errno");
}

Test(storage, opcode_names)
{
	char b[16];

	cr_assert_str_eq(storage_opcode_name(0, b, sizeof(b)), "read");
	cr_assert_str_eq(storage_opcode_name(1 | (1u << 11), b, sizeof(b)), "write");
	cr_assert_str_eq(storage_opcode_name(2, b, sizeof(b)), "flush");
	cr_assert_str_eq(storage_opcode_name(3, b, sizeof(b)), "discard");
	cr_assert_str_eq(storage_opcode_name(5, b, sizeof(b)), "secure_erase");
	cr_assert_str_eq(storage_opcode_name(9, b, sizeof(b)), "write_zeroes");
	cr_assert_str_eq(storage_opcode_name(13, b, sizeof(b)), "zone_append");
	cr_assert_str_eq(storage_opcode_name(17, b, sizeof(b)), "zone_reset_all");
	cr_assert_str_eq(storage_opcode_name(34, b, sizeof(b)), "drv_in");
	cr_assert_str_eq(storage_opcode_name(35, b, sizeof(b)), "drv_out");
	cr_assert_str_eq(storage_opcode_name(4, b, sizeof(b)), "op_4");
	cr_assert_str_eq(storage_opcode_name(200, b, sizeof(b)), "op_200");
}

Test(storage, io_error_occurrence)
{
	struct tapio_storage_event e = st_ev(T0, 3, 10);

	e.cmd_flags = 1;
	feed(&e);
	cr_assert_eq(cap.n, 0, "windowed");
	storage_observer_tick(obs, T0 + SEC);
	cr_assert_eq(cap.n, 1);
	const struct tapio_occurrence *o = &cap.occ[0];

	assert_valid(o);
	cr_assert_eq(o->type, TAPIO_OCC_IO_ERROR);
	cr_assert_eq(o->severity, TAPIO_SEV_CRITICAL);
	cr_assert_eq(o->outcome, TAPIO_OUT_FAILURE);
	cr_assert_eq(o->config_generation, 11);
	cr_assert_eq(o->count, 1);
	cr_assert_eq(o->first_seen_ns, wall(T0));
	cr_assert_eq(o->last_seen_ns, wall(T0));
	cr_assert_eq(o->data.storage.pid, 321);
	cr_assert_str_eq(o->data.storage.comm, "postgres");
	cr_assert_eq(o->data.storage.dev_major, 8);
	cr_assert_eq(o->data.storage.dev_minor, 16);
	cr_assert_eq(o->data.storage.sector, 2048);
	cr_assert_eq(o->data.storage.bytes, 4096);
	cr_assert_str_eq(o->data.storage.opcode, "write");
	cr_assert_float_eq(o->data.storage.latency_ms, 3.0, 1e-9);
	cr_assert_eq(o->data.storage.error_code, -EIO);
	cr_assert_str_eq(o->error_message,
			 "write of 4096 bytes at sector 2048 on 8:16 failed: EIO");
}

Test(storage, latency_spike_severities)
{
	struct tapio_storage_event w = st_ev(T0, 60, 0);
	struct tapio_storage_event c = st_ev(T0, 250, 0);

	feed(&w);
	feed(&c);
	storage_observer_flush(obs);
	cr_assert_eq(cap.n, 2, "warning and critical are separate windows");
	assert_all_valid();
	for (size_t i = 0; i < cap.n; i++) {
		const struct tapio_occurrence *o = &cap.occ[i];

		cr_assert_eq(o->type, TAPIO_OCC_LATENCY_SPIKE);
		cr_assert_eq(o->outcome, TAPIO_OUT_IN_PROGRESS);
		cr_assert_eq(o->data.storage.error_code, 0);
		if (o->severity == TAPIO_SEV_WARNING) {
			cr_assert_float_eq(o->data.storage.latency_ms, 60.0, 1e-9);
			cr_assert_str_eq(o->error_message,
					 "read of 4096 bytes at sector 2048 on 8:16 took 60.0 ms");
		} else {
			cr_assert_eq(o->severity, TAPIO_SEV_CRITICAL);
			cr_assert_float_eq(o->data.storage.latency_ms, 250.0, 1e-9);
		}
	}
}

Test(storage, fast_io_is_not_an_anomaly)
{
	struct tapio_storage_event e = st_ev(T0, 2, 0);

	feed(&e);
	storage_observer_flush(obs);
	cr_assert_eq(cap.n, 0);
	cr_assert_eq(stats.records, 1);
}

Test(storage, repeats_collapse_with_worst_facts)
{
	uint64_t lat[] = {60, 180, 90};

	for (uint32_t i = 0; i < 3; i++) {
		struct tapio_storage_event e = st_ev(T0 + i * 100 * MS, lat[i], 0);

		e.pid = 100 + i;
		e.sector = 1000 * i;
		feed(&e);
	}
	storage_observer_tick(obs, T0 + 999 * MS);
	cr_assert_eq(cap.n, 0);
	storage_observer_tick(obs, T0 + 1000 * MS);
	cr_assert_eq(cap.n, 1);
	const struct tapio_occurrence *o = &cap.occ[0];

	assert_valid(o);
	cr_assert_eq(o->count, 3);
	cr_assert_eq(o->timestamp_ns, wall(T0));
	cr_assert_eq(o->first_seen_ns, wall(T0));
	cr_assert_eq(o->last_seen_ns, wall(T0 + 200 * MS));
	cr_assert_eq(o->data.storage.pid, 101, "facts of the slowest request");
	cr_assert_eq(o->data.storage.sector, 1000);
	cr_assert_float_eq(o->data.storage.latency_ms, 180.0, 1e-9);
	cr_assert_eq(stats.suppressed, 2);
	cr_assert_eq(stats.anomalies[TAPIO_OCC_LATENCY_SPIKE], 1);
}

Test(storage, devices_and_types_are_separate)
{
	struct tapio_storage_event a = st_ev(T0, 60, 0);
	struct tapio_storage_event b = st_ev(T0, 60, 0);
	struct tapio_storage_event c = st_ev(T0, 60, 10);

	b.dev = DEV(259, 0);
	feed(&a);
	feed(&b);
	feed(&c);
	feed(&a);
	storage_observer_flush(obs);
	cr_assert_eq(cap.n, 3);
	assert_all_valid();
	cr_assert_eq(count_type(TAPIO_OCC_IO_ERROR), 1);
	cr_assert_eq(count_type(TAPIO_OCC_LATENCY_SPIKE), 2);
	for (size_t i = 0; i < cap.n; i++)
		if (cap.occ[i].data.storage.dev_major == 259)
			cr_assert_eq(cap.occ[i].data.storage.dev_minor, 0);
}

Test(storage, late_record_closes_previous_window)
{
	struct tapio_storage_event a = st_ev(T0, 60, 0);
	struct tapio_storage_event b = st_ev(T0 + 2 * SEC, 70, 0);

	feed(&a);
	feed(&b);
	cr_assert_eq(cap.n, 1);
	cr_assert_float_eq(cap.occ[0].data.storage.latency_ms, 60.0, 1e-9);
	storage_observer_flush(obs);
	cr_assert_eq(cap.n, 2);
	cr_assert_eq(cap.occ[1].first_seen_ns, wall(T0 + 2 * SEC));
}

Test(storage, table_full_emits_uncollapsed, .timeout = 30)
{
	uint32_t filled = 0;

	for (uint32_t i = 0; i < OBS_TABLE_SLOTS && stats.correlation_drops == 0; i++) {
		struct tapio_storage_event e = st_ev(T0, 300, 0);

		e.dev = DEV(8, i);
		feed(&e);
		if (stats.correlation_drops == 0)
			filled++;
	}
	cr_assert_eq(filled, OBS_TABLE_SLOTS / 4 * 3);
	cr_assert_eq(stats.correlation_drops, 1);
	cr_assert_eq(cap.n, 1);
	assert_valid(&cap.occ[0]);
	cr_assert_eq(cap.occ[0].count, 1);
	cr_assert_eq(cap.occ[0].data.storage.dev_minor, filled);
	storage_observer_flush(obs);
	cr_assert_eq(cap.n, filled + 1);
}

Test(storage, malformed_records_are_counted)
{
	struct tapio_storage_event e = st_ev(T0, 300, 0);

	cr_assert_eq(storage_observer_handle(obs, &e, sizeof(e) + 1), -EINVAL);
	cr_assert_eq(storage_observer_handle(obs, &e, 4), -EINVAL);
	cr_assert_eq(stats.records, 2);
	cr_assert_eq(stats.malformed, 2);
	storage_observer_flush(obs);
	cr_assert_eq(cap.n, 0);
}
